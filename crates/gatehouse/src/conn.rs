//! What one client connection knows about itself, and its clocks: a leaf that
//! every stage may read and that reaches nothing else in the process.
//!
//! [`ConnInfo`] is fixed at accept (peer, listener, TLS binding); [`Activity`]
//! changes as bytes move (the watchdog's clocks, the in-flight mark, and what
//! the HTTP side tells the framing guard below it).

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use httpguard::Reject;

/// How long an HTTP/1 keep-alive connection stays idle before it drops its
/// HTTP server (hyper's read and write buffers, its parser state) and waits on
/// the bare socket, to be served again by a new one when the client sends.
/// Long enough that a client sending request after request never pays for the
/// rebuild, short enough that idle connections cost little soon after their
/// last answer (docs/design.md, "Idle connections").
pub const PARK_AFTER: Duration = Duration::from_secs(1);

/// Fixed facts about one client connection.
#[derive(Debug)]
pub struct ConnInfo {
    /// Unique in the process: names this connection's own backend connections.
    pub id: u64,
    pub peer: SocketAddr,
    /// The peer's address as `X-Forwarded-For` carries it: written once per
    /// connection, not once per request.
    pub forwarded_for: http::HeaderValue,
    pub listener: Arc<str>,
    pub tls: bool,
    /// The worker thread this connection lives on (and whose backend pool it uses).
    pub worker: usize,
    /// MsvAvChannelBindings expected from NTLM clients: the `tls-server-end-point`
    /// binding of the certificate this connection presented. None without TLS.
    pub channel_bindings: Option<[u8; 16]>,
    /// The same binding as Kerberos checks it: the application data
    /// `tls-server-end-point:` + certificate hash. None without TLS.
    pub tls_end_point: Option<Arc<[u8]>>,
    /// HTTP/2 (ALPN h2): streams multiplexed, so nothing authenticates the
    /// connection; connection-bound schemes are sent back to HTTP/1.1.
    pub http2: bool,
}

impl ConnInfo {
    pub fn forwarded_for(peer: SocketAddr) -> http::HeaderValue {
        // An address's text is always a valid header value.
        http::HeaderValue::from_str(&peer.ip().to_string())
            .unwrap_or_else(|_| http::HeaderValue::from_static("unknown"))
    }

    pub fn next_id() -> u64 {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        NEXT.fetch_add(1, Ordering::Relaxed)
    }
}

/// Clocks of one connection, read by its watchdog.
pub struct Activity {
    pub(crate) epoch: Instant,
    /// Milliseconds since `epoch` of the last byte read or written.
    pub(crate) last_io: AtomicU64,
    /// Milliseconds since `epoch` (plus one) when the current head began; 0 if none.
    pub(crate) head_started: AtomicU64,
    /// Requests between arrival and the end of their response body.
    pub(crate) in_flight: AtomicUsize,
    /// Idle limit while a request is in flight (the site's stream_idle).
    pub(crate) stream_idle_ms: AtomicU64,
    /// Some bytes of a request head have arrived and the rest has not: a head
    /// timeout then owes the client a 408 rather than a silent close.
    pub(crate) partial_head: AtomicBool,
    /// Requests whose response has ended (body sent or abandoned).
    pub(crate) answered: AtomicU64,
    /// The connection may drop its HTTP state while idle (see [`PARK_AFTER`]).
    /// Off for HTTP/2 and once hyper holds an upgrade offer, which it hands
    /// the connection to when its HTTP server ends.
    pub(crate) parkable: AtomicBool,
    /// What the HTTP side tells the byte guard, which cannot see it in the
    /// bytes it checks.
    guard: Mutex<GuardNews>,
    /// Set when the framing check refused this connection's bytes.
    pub rejected: OnceLock<Reject>,
    /// Wakes the watchdog when the clock that applies changes (a head starts
    /// or ends; a request starts or ends, or a site sets its own stream idle
    /// time, and that brings a limit before [`Activity::armed`]), so that the
    /// new limit counts at once rather than after the old sleep.
    pub changed: tokio::sync::Notify,
    /// When the watchdog looks at the clocks next (milliseconds since `epoch`),
    /// 0 while it is deciding. A change whose limit falls at or after this need
    /// not wake it: it looks again then, and sleeps on to the new limit. Waking
    /// it at every request's start and end cost a task poll, a timer and a
    /// notification each time (issue 20, docs/performance.md).
    armed: AtomicU64,
    /// The watchdog's keep-alive limit in milliseconds (0 until it starts):
    /// the earliest limit the end of a request can bring.
    keepalive_ms: AtomicU64,
}

impl Activity {
    pub fn new(stream_idle: Duration) -> Self {
        Activity {
            epoch: Instant::now(),
            last_io: AtomicU64::new(0),
            // A new connection owes us a head: time it from the accept.
            head_started: AtomicU64::new(1),
            in_flight: AtomicUsize::new(0),
            stream_idle_ms: AtomicU64::new(stream_idle.as_millis() as u64),
            partial_head: AtomicBool::new(false),
            answered: AtomicU64::new(0),
            parkable: AtomicBool::new(true),
            guard: Mutex::new(GuardNews::default()),
            rejected: OnceLock::new(),
            changed: tokio::sync::Notify::new(),
            armed: AtomicU64::new(0),
            keepalive_ms: AtomicU64::new(0),
        }
    }

    pub(crate) fn news(&self) -> std::sync::MutexGuard<'_, GuardNews> {
        self.guard.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The answer to an upgrade request is decided: `switched` when it is a 101.
    /// The guard stops checking the connection's bytes only after this says so.
    pub fn upgrade_answered(&self, switched: bool) {
        let mut news = self.news();
        news.upgrade = Some(switched);
        if let Some(w) = news.reader.take() {
            w.wake();
        }
    }

    /// A head is overdue and some of it has arrived.
    pub(crate) fn owes_408(&self) -> bool {
        self.partial_head.load(Ordering::Relaxed) && self.head_started.load(Ordering::Relaxed) != 0
    }

    pub(crate) fn head_timed_out(&self) {
        let mut news = self.news();
        news.head_timeout = true;
        if let Some(w) = news.reader.take() {
            w.wake();
        }
    }

    pub(crate) fn wake_reader(&self) {
        if let Some(w) = self.news().reader.take() {
            w.wake();
        }
    }

    pub(crate) fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    pub(crate) fn touch(&self) {
        self.last_io.store(self.now_ms(), Ordering::Relaxed);
    }

    /// A write's result, counted as activity when it wrote.
    pub(crate) fn wrote(&self, written: Poll<io::Result<usize>>) -> Poll<io::Result<usize>> {
        if let Poll::Ready(Ok(_)) = written {
            self.touch();
        }
        written
    }

    /// Marks a request as in flight until the returned guard drops, which also
    /// counts its response as given.
    pub fn begin_request(self: &Arc<Self>, stream_idle: Duration) -> InFlight {
        self.begin(stream_idle, true)
    }

    /// Marks an upgraded connection's tunnel as in flight (no response of its own).
    pub fn begin_tunnel(self: &Arc<Self>, stream_idle: Duration) -> InFlight {
        self.begin(stream_idle, false)
    }

    fn begin(self: &Arc<Self>, stream_idle: Duration, response: bool) -> InFlight {
        self.stream_idle_ms.store(stream_idle.as_millis() as u64, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.stream_limit_changed();
        InFlight { activity: self.clone(), response }
    }

    /// The site chose its own idle limit for long-lived streams.
    pub fn set_stream_idle(&self, stream_idle: Duration) {
        self.stream_idle_ms.store(stream_idle.as_millis() as u64, Ordering::Relaxed);
        self.stream_limit_changed();
    }

    /// A request is in flight under the stream idle limit: the only limit this
    /// brings is the stream's, from the last byte.
    fn stream_limit_changed(&self) {
        let due = self.last_io.load(Ordering::Relaxed).saturating_add(self.stream_idle_ms.load(Ordering::Relaxed));
        self.tell_watchdog_if_before(due);
    }

    /// A request ended at `now`: the earliest limit this brings is the keep-alive
    /// limit or, when the connection may park, its park time. (With other
    /// requests still in flight the stream limit applies, which is no earlier.)
    fn request_ended(&self, now: u64) {
        let mut after = self.keepalive_ms.load(Ordering::Relaxed);
        if self.parkable.load(Ordering::Relaxed) {
            after = after.min(PARK_AFTER.as_millis() as u64);
        }
        self.tell_watchdog_if_before(now.saturating_add(after));
    }

    fn tell_watchdog_if_before(&self, due: u64) {
        // Pairs with the fence in `deciding`: either the watchdog reads the
        // state written before this, or this reads the time it armed for.
        std::sync::atomic::fence(Ordering::SeqCst);
        let armed = self.armed.load(Ordering::Relaxed);
        if armed == 0 || due < armed {
            self.changed.notify_one();
        }
    }

    /// The watchdog is about to read the clocks and choose its next sleep;
    /// `keepalive` is its keep-alive limit.
    pub(crate) fn deciding(&self, keepalive: Duration) {
        self.keepalive_ms.store(keepalive.as_millis() as u64, Ordering::Relaxed);
        self.armed.store(0, Ordering::Relaxed);
        std::sync::atomic::fence(Ordering::SeqCst);
    }

    /// The watchdog sleeps until `due` (milliseconds since `epoch`), unless told.
    pub(crate) fn armed_for(&self, due: u64) {
        // 0 means "deciding"; a limit at the epoch itself is already past.
        self.armed.store(due.max(1), Ordering::Relaxed);
    }

    /// The connection may no longer be parked (see [`Activity::parkable`]).
    pub fn never_park(&self) {
        self.parkable.store(false, Ordering::Relaxed);
    }

    /// How long until an idle HTTP/1 connection should give back its HTTP
    /// state: `None` while a request or a head is under way (or never).
    pub(crate) fn park_in(&self) -> Option<Duration> {
        self.park_in_at(self.now_ms())
    }

    /// [`Activity::park_in`], at `now` (milliseconds since `epoch`).
    pub(crate) fn park_in_at(&self, now: u64) -> Option<Duration> {
        if !self.parkable.load(Ordering::Relaxed)
            || self.in_flight.load(Ordering::Relaxed) > 0
            || self.head_started.load(Ordering::Relaxed) != 0
        {
            return None;
        }
        let due = self.last_io.load(Ordering::Relaxed).saturating_add(PARK_AFTER.as_millis() as u64);
        Some(Duration::from_millis(due.saturating_sub(now)))
    }

    /// How long until the connection has been quiet too long, or `None` if it
    /// already has, with the reason.
    pub fn remaining(&self, header_read: Duration, keepalive_idle: Duration) -> Result<Duration, &'static str> {
        self.remaining_at(self.now_ms(), header_read, keepalive_idle)
    }

    /// [`Activity::remaining`], at `now` (milliseconds since `epoch`).
    pub(crate) fn remaining_at(
        &self,
        now: u64,
        header_read: Duration,
        keepalive_idle: Duration,
    ) -> Result<Duration, &'static str> {
        let head = self.head_started.load(Ordering::Relaxed);
        let (since, limit, why) = if head != 0 {
            (head - 1, header_read.as_millis() as u64, "request head not received in time")
        } else if self.in_flight.load(Ordering::Relaxed) > 0 {
            (self.last_io.load(Ordering::Relaxed), self.stream_idle_ms.load(Ordering::Relaxed), "stream idle timeout")
        } else {
            (self.last_io.load(Ordering::Relaxed), keepalive_idle.as_millis() as u64, "keep-alive idle timeout")
        };
        let deadline = since.saturating_add(limit);
        if now >= deadline {
            Err(why)
        } else {
            Ok(Duration::from_millis(deadline - now))
        }
    }
}

/// A request in flight; dropping it ends the request for the connection's clocks.
pub struct InFlight {
    activity: Arc<Activity>,
    response: bool,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let a = &self.activity;
        let now = a.now_ms();
        a.last_io.store(now, Ordering::Relaxed);
        a.in_flight.fetch_sub(1, Ordering::Relaxed);
        a.request_ended(now);
        if self.response {
            a.answered.fetch_add(1, Ordering::Release);
            // A refusal may be waiting for the answers to the requests before it.
            a.wake_reader();
        }
    }
}

/// News for the guard's reader, and how to wake it.
#[derive(Default)]
pub(crate) struct GuardNews {
    pub(crate) upgrade: Option<bool>,
    pub(crate) head_timeout: bool,
    /// The guard's reader, parked while it waits for news rather than bytes.
    pub(crate) reader: Option<Waker>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;

    /// Whether the watchdog was told (a notification is waiting for it).
    fn told(a: &Activity) -> bool {
        let notified = a.changed.notified();
        std::pin::pin!(notified).poll(&mut std::task::Context::from_waker(std::task::Waker::noop())).is_ready()
    }

    /// Arms the watchdog as `connection::watch` does, at `due` milliseconds.
    fn arm(a: &Activity, keepalive: Duration, due: u64) {
        a.deciding(keepalive);
        a.armed_for(due);
    }

    #[test]
    fn the_watchdog_is_told_only_of_limits_before_the_one_it_sleeps_for() {
        let mut activity = Activity::new(Duration::from_secs(1200));
        // A connection some minutes old, so that a last byte can lie well before now.
        activity.epoch =
            activity.epoch.checked_sub(Duration::from_secs(300)).expect("the machine has been up 5 minutes");
        let a = Arc::new(activity);
        assert!(!told(&a));
        // Before the watchdog first decides, every change tells it.
        drop(a.begin_request(Duration::from_secs(1200)));
        assert!(told(&a), "a watchdog that has not armed yet must hear of every change");

        // Idle, armed for the park time: a request under the 20-minute stream
        // limit and its end (keep-alive 120 s, park 1 s after its last byte,
        // no earlier than what the watchdog sleeps for) need not wake it.
        let now = a.now_ms();
        a.last_io.store(now, Ordering::Relaxed);
        arm(&a, Duration::from_secs(120), now + PARK_AFTER.as_millis() as u64);
        let request = a.begin_request(Duration::from_secs(1200));
        assert!(!told(&a), "a later stream limit woke the watchdog");
        drop(request);
        assert!(!told(&a), "a request's end, park time no earlier, woke the watchdog");

        // A stream limit shorter than the sleep tells it.
        arm(&a, Duration::from_secs(120), now + 60_000);
        let request = a.begin_request(Duration::from_millis(10));
        assert!(told(&a), "a stream limit before the watchdog's sleep must wake it");
        a.set_stream_idle(Duration::from_secs(1200));
        assert!(!told(&a));
        a.set_stream_idle(Duration::from_millis(5));
        assert!(told(&a), "a site's shorter stream limit must wake the watchdog");

        // The stream limit counts from the last byte, not from the change: a
        // request quiet for 50 s under a 60 s limit is due in 10 s.
        drop(request);
        let _ = told(&a);
        let now = a.now_ms();
        a.last_io.store(now.saturating_sub(50_000), Ordering::Relaxed);
        arm(&a, Duration::from_secs(120), now + 30_000);
        let request = a.begin_request(Duration::from_secs(60));
        assert!(told(&a), "the stream limit runs from the last byte");

        // Parkable and asleep for longer than the park time (its earlier idle
        // period was already polled for): a request's end brings the park in.
        arm(&a, Duration::from_secs(120), a.now_ms() + 60_000);
        drop(request);
        assert!(told(&a), "the park time after a request must wake a watchdog asleep for longer");
        let request = a.begin_request(Duration::from_secs(1200));
        let _ = told(&a);

        // A connection that may not park (HTTP/2, an upgrade offer) sleeps for
        // the keep-alive limit: a request's end with a short one tells it.
        a.never_park();
        arm(&a, Duration::from_millis(50), now + 60_000);
        drop(request);
        assert!(told(&a), "a keep-alive limit before the watchdog's sleep must wake it");
        arm(&a, Duration::from_secs(120), a.now_ms() + 1);
        drop(a.begin_request(Duration::from_secs(1200)));
        assert!(!told(&a), "keep-alive 120 s after now is after a sleep of 1 ms");

        // While the watchdog decides, it hears of everything.
        a.deciding(Duration::from_secs(120));
        a.set_stream_idle(Duration::from_secs(1200));
        assert!(told(&a), "a change while the watchdog decides must reach it");
    }
}
