//! One client connection: the bytes it sends, checked before HTTP sees them; the
//! clocks that decide when it has been quiet too long; and the HTTP/1 server that
//! runs on it.
//!
//! Everything a later issue binds to a connection (the NTLM handshake, the
//! authenticated identity) hangs off [`ConnContext`], which lives exactly as long
//! as the TCP connection.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{ready, Context, Poll, Waker};
use std::time::{Duration, Instant};

use httpguard::{Reject, RequestStream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::server::Shared;
use crate::telemetry;

const READ_CHUNK: usize = 16 * 1024;

/// What every request on this connection may need to know about it.
pub struct ConnContext {
    pub peer: SocketAddr,
    pub listener: Arc<str>,
    pub tls: bool,
    pub activity: Arc<Activity>,
    /// Set when the framing check refused this connection's bytes.
    pub rejected: OnceLock<Reject>,
    /// The worker thread this connection lives on (and whose backend pool it uses).
    pub worker: usize,
    /// NTLM handshake and identity of this connection.
    pub auth: crate::auth::ConnAuth,
    /// MsvAvChannelBindings expected from clients: the `tls-server-end-point`
    /// binding of the certificate this connection presented. None without TLS.
    pub channel_bindings: Option<[u8; 16]>,
    /// The same binding as Kerberos checks it: the application data
    /// `tls-server-end-point:` + certificate hash. None without TLS.
    pub tls_end_point: Option<Arc<[u8]>>,
    /// HTTP/2 (ALPN h2): streams multiplexed, so nothing authenticates the
    /// connection; connection-bound schemes are sent back to HTTP/1.1.
    pub http2: bool,
    /// Unique in the process: names this connection's own backend connections.
    pub id: u64,
    /// Some backend connection carried this client's own credentials (or a
    /// backend's connection-bound challenge) on a site without `auth`: such
    /// connections belong to this client connection alone and close with it.
    pub pinned: std::sync::atomic::AtomicBool,
    /// Closes the connection properly when hyper hands it to an upgrade that
    /// was never answered with a 101 (set by `serve`, which knows the I/O type).
    pub(crate) unswitched: OnceLock<Box<dyn Fn(hyper::upgrade::Upgraded) + Send + Sync>>,
    pub shared: Arc<Shared>,
}

impl ConnContext {
    pub fn next_id() -> u64 {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        NEXT.fetch_add(1, Ordering::Relaxed)
    }
}

impl Drop for ConnContext {
    fn drop(&mut self) {
        if self.pinned.load(Ordering::Relaxed) {
            // A backend logon made through this client connection must not
            // outlive it (IIS would serve it to whoever used the socket next).
            self.shared.pools[self.worker].discard(&crate::backend::Identity::Connection(self.id));
        }
    }
}

/// Clocks of one connection, read by its watchdog.
pub struct Activity {
    epoch: Instant,
    /// Milliseconds since `epoch` of the last byte read or written.
    last_io: AtomicU64,
    /// Milliseconds since `epoch` (plus one) when the current head began; 0 if none.
    head_started: AtomicU64,
    /// Requests between arrival and the end of their response body.
    in_flight: AtomicUsize,
    /// Idle limit while a request is in flight (the site's stream_idle).
    stream_idle_ms: AtomicU64,
    /// Some bytes of a request head have arrived and the rest has not: a head
    /// timeout then owes the client a 408 rather than a silent close.
    partial_head: AtomicBool,
    /// Requests whose response has ended (body sent or abandoned).
    answered: AtomicU64,
    /// What the HTTP side tells the byte guard, which cannot see it in the
    /// bytes it checks.
    guard: Mutex<GuardNews>,
    /// Wakes the watchdog whenever the clock that applies changes (a head starts
    /// or ends, a request starts or ends, a site sets its own stream idle time),
    /// so that the new limit counts at once rather than after the old sleep.
    pub changed: tokio::sync::Notify,
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
            guard: Mutex::new(GuardNews::default()),
            changed: tokio::sync::Notify::new(),
        }
    }

    fn news(&self) -> std::sync::MutexGuard<'_, GuardNews> {
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
    fn owes_408(&self) -> bool {
        self.partial_head.load(Ordering::Relaxed) && self.head_started.load(Ordering::Relaxed) != 0
    }

    fn head_timed_out(&self) {
        let mut news = self.news();
        news.head_timeout = true;
        if let Some(w) = news.reader.take() {
            w.wake();
        }
    }

    fn wake_reader(&self) {
        if let Some(w) = self.news().reader.take() {
            w.wake();
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn touch(&self) {
        self.last_io.store(self.now_ms(), Ordering::Relaxed);
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
        self.changed.notify_one();
        InFlight { activity: self.clone(), response }
    }

    /// The site chose its own idle limit for long-lived streams.
    pub fn set_stream_idle(&self, stream_idle: Duration) {
        self.stream_idle_ms.store(stream_idle.as_millis() as u64, Ordering::Relaxed);
        self.changed.notify_one();
    }

    /// How long until the connection has been quiet too long, or `None` if it
    /// already has, with the reason.
    pub fn remaining(&self, header_read: Duration, keepalive_idle: Duration) -> Result<Duration, &'static str> {
        let now = self.now_ms();
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
        a.touch();
        a.in_flight.fetch_sub(1, Ordering::Relaxed);
        a.changed.notify_one();
        if self.response {
            a.answered.fetch_add(1, Ordering::Release);
            // A refusal may be waiting for the answers to the requests before it.
            a.wake_reader();
        }
    }
}

/// News for the guard's reader, and how to wake it.
#[derive(Default)]
struct GuardNews {
    upgrade: Option<bool>,
    head_timeout: bool,
    /// The guard's reader, parked while it waits for news rather than bytes.
    reader: Option<Waker>,
}

/// The client's byte stream, checked by [`RequestStream`] on the way in.
///
/// Head bytes are held back until the whole head has been validated, so the HTTP
/// server never sees a refused head. A refused head ends the stream (EOF) and the
/// 400 answer is written on shutdown, after any earlier response; a refusal inside
/// a body is an I/O error, which fails that request's body so that the request
/// is never completed towards the backend.
pub struct GuardedIo<S> {
    inner: S,
    ctx: Arc<ConnContext>,
    stream: RequestStream,
    /// Bytes read but not yet handed on: a head (or chunk line) still incomplete,
    /// or checked bytes that did not fit the reader's buffer. The first `accepted`
    /// have passed the check. Empty, and unallocated, between requests: most reads
    /// go straight into hyper's buffer and are checked there.
    held: Vec<u8>,
    accepted: usize,
    eof: bool,
    /// A refusal to send before closing, how much of it is written, and its
    /// access record (written once the answer is: the log never claims an
    /// answer that did not go out).
    answer: Option<(Vec<u8>, usize, Option<telemetry::AccessRecord>)>,
    body_refused: bool,
    /// After a refused head: the requests before it that must be answered
    /// before the connection reads as ended (and the refusal is written).
    answer_after: u64,
    /// Held bytes that have not been checked yet (they arrived while an
    /// upgrade request waited for its answer).
    unchecked: bool,
}

/// The verdict on newly read bytes.
enum Scan {
    /// This many bytes passed; the rest wait for more.
    Accepted(usize),
    /// Refused: hand on `deliver` bytes (earlier requests, or the refused body's
    /// checked part), then stop.
    Refused { deliver: usize },
}

impl<S> GuardedIo<S> {
    pub fn new(inner: S, ctx: Arc<ConnContext>, max_head: usize, max_headers: usize) -> Self {
        GuardedIo {
            inner,
            ctx,
            stream: RequestStream::new(max_head, max_headers),
            held: Vec::new(),
            accepted: 0,
            eof: false,
            answer: None,
            body_refused: false,
            answer_after: 0,
            unchecked: false,
        }
    }

    /// Checks `data`, which follows everything checked so far.
    fn scan(&mut self, data: &[u8]) -> Scan {
        let mut at = 0;
        // Where the current request's head starts within `data`, if it does: a
        // body refused before its head was handed on is refused as a whole, so
        // the backend never even sees the head.
        let mut head_at = None;
        // Requests before the current one: those are answered before a refusal.
        let mut before = self.stream.heads();
        loop {
            if self.stream.at_request_boundary() {
                head_at = Some(at);
                before = self.stream.heads();
            }
            match self.stream.advance(&data[at..]) {
                Ok(0) => break,
                Ok(n) => at += n,
                Err(reject) => return Scan::Refused { deliver: self.refuse(reject, head_at, at, before) },
            }
        }
        let head = &self.ctx.activity.head_started;
        let pending_head = self.stream.at_request_boundary() && at < data.len();
        self.ctx.activity.partial_head.store(pending_head, Ordering::Relaxed);
        if pending_head && head.load(Ordering::Relaxed) == 0 {
            head.store(self.ctx.activity.now_ms() + 1, Ordering::Relaxed);
            self.ctx.activity.changed.notify_one();
        } else if !pending_head && head.swap(0, Ordering::Relaxed) != 0 {
            self.ctx.activity.changed.notify_one();
        }
        Scan::Accepted(at)
    }

    fn refuse(&mut self, reject: Reject, head_at: Option<usize>, at: usize, before: u64) -> usize {
        self.ctx.activity.head_started.store(0, Ordering::Relaxed);
        self.ctx.activity.partial_head.store(false, Ordering::Relaxed);
        let in_head = head_at.is_some();
        let (id, record) = telemetry::refused_framing(&self.ctx, &reject, in_head);
        if in_head {
            self.answer = Some((crate::pages::raw_refusal(reject.status(), reject.cause(), &id), 0, record));
            // Every request before the refused one gets its answer first.
            self.answer_after = before;
        } else {
            self.body_refused = true;
        }
        let _ = self.ctx.rejected.set(reject);
        self.eof = true;
        head_at.unwrap_or(at)
    }

    /// Moves checked bytes from `held` to the reader.
    fn deliver_held(&mut self, out: &mut ReadBuf<'_>) {
        let n = self.accepted.min(out.remaining());
        out.put_slice(&self.held[..n]);
        self.held.drain(..n);
        self.accepted -= n;
        if self.held.is_empty() {
            self.held = Vec::new();
        }
    }
}

impl<S> GuardedIo<S> {
    /// Takes the news the HTTP side left for the guard. Returns true when the
    /// reader must wait for more news before anything else can happen.
    fn take_news(&mut self, cx: &Context<'_>) -> bool {
        let activity = self.ctx.activity.clone();
        let mut news = activity.news();
        if news.head_timeout && !self.eof {
            news.head_timeout = false;
            // The client started a head and never finished it: say so before
            // closing, as any server would (RFC 9110 15.5.9).
            let (id, record) = telemetry::head_timeout(&self.ctx);
            self.answer =
                Some((crate::pages::raw_refusal(408, "request head not received in time", &id), 0, Some(record)));
            self.held = Vec::new();
            self.accepted = 0;
            self.eof = true;
            return false;
        }
        // While an upgrade request waits for its answer nothing is read: what
        // follows it is either the next request or tunnel bytes, and only the
        // answer can tell (the socket's buffer applies back-pressure meanwhile).
        if self.stream.awaiting_upgrade_answer() {
            match news.upgrade.take() {
                Some(switched) => {
                    self.stream.upgrade_answered(switched);
                    self.unchecked = !self.held.is_empty();
                }
                None => {
                    news.reader = Some(cx.waker().clone());
                    return true;
                }
            }
        }
        if self.eof && self.answer.is_some() && activity.answered.load(Ordering::Acquire) < self.answer_after {
            news.reader = Some(cx.waker().clone());
            return true;
        }
        false
    }

    /// Parks the reader so that news (a head timeout) can wake it while the
    /// socket is quiet; only needed while a partial head is held.
    fn park_for_news(&self, cx: &Context<'_>) {
        self.ctx.activity.news().reader = Some(cx.waker().clone());
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for GuardedIo<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, out: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if this.take_news(cx) {
                return Poll::Pending;
            }
            if this.accepted > 0 {
                this.deliver_held(out);
                return Poll::Ready(Ok(()));
            }
            if this.eof {
                if this.body_refused {
                    let cause = this.ctx.rejected.get().map_or("refused", Reject::cause);
                    return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, cause)));
                }
                return Poll::Ready(Ok(()));
            }
            if this.unchecked {
                // Bytes that came in behind an upgrade request, checked now
                // that its answer is known.
                this.unchecked = false;
                let held = std::mem::take(&mut this.held);
                match this.scan(&held) {
                    Scan::Accepted(k) => this.accepted = k,
                    Scan::Refused { deliver } => this.accepted = deliver,
                }
                this.held = held;
                if this.eof {
                    this.held.truncate(this.accepted);
                }
                continue;
            }
            if this.held.is_empty() {
                // Fast path: read into the reader's buffer and check in place.
                let before = out.filled().len();
                ready!(Pin::new(&mut this.inner).poll_read(cx, out))?;
                let n = out.filled().len() - before;
                if n == 0 {
                    this.eof = true;
                    continue;
                }
                this.ctx.activity.touch();
                let (pass, keep_rest) = match this.scan(&out.filled()[before..]) {
                    Scan::Accepted(k) => (k, true),
                    Scan::Refused { deliver } => (deliver, false),
                };
                if keep_rest && pass < n {
                    this.held.extend_from_slice(&out.filled()[before + pass..]);
                }
                out.set_filled(before + pass);
                if pass > 0 {
                    return Poll::Ready(Ok(()));
                }
                // Nothing passed yet (an incomplete head): returning now would
                // read as EOF, so keep reading.
                continue;
            }
            // Slow path: a partial head is held; read more behind it.
            let old = this.held.len();
            this.held.resize(old + READ_CHUNK, 0);
            let mut rb = ReadBuf::new(&mut this.held[old..]);
            let polled = Pin::new(&mut this.inner).poll_read(cx, &mut rb);
            let n = rb.filled().len();
            this.held.truncate(old + n);
            if polled.is_pending() {
                this.park_for_news(cx);
                return Poll::Pending;
            }
            if let Poll::Ready(Err(e)) = polled {
                return Poll::Ready(Err(e));
            }
            if n == 0 {
                // The client left mid-head; the partial head is dropped.
                this.held = Vec::new();
                this.eof = true;
                continue;
            }
            this.ctx.activity.touch();
            let held = std::mem::take(&mut this.held);
            match this.scan(&held) {
                Scan::Accepted(k) => this.accepted = k,
                Scan::Refused { deliver } => this.accepted = deliver,
            }
            this.held = held;
            if this.eof {
                this.held.truncate(this.accepted);
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for GuardedIo<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let n = ready!(Pin::new(&mut self.inner).poll_write(cx, data))?;
        self.ctx.activity.touch();
        Poll::Ready(Ok(n))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let n = ready!(Pin::new(&mut self.inner).poll_write_vectored(cx, bufs))?;
        self.ctx.activity.touch();
        Poll::Ready(Ok(n))
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if let Some((answer, written, record)) = &mut this.answer {
            while *written < answer.len() {
                let n = ready!(Pin::new(&mut this.inner).poll_write(cx, &answer[*written..]))?;
                if n == 0 {
                    break;
                }
                *written += n;
            }
            ready!(Pin::new(&mut this.inner).poll_flush(cx))?;
            if let Some(record) = record.take() {
                record.finish(*written as u64, *written == answer.len());
            }
        }
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

/// Runs HTTP/1 on one client connection until it closes, goes quiet for too
/// long, or the process drains.
pub async fn serve<S>(io: S, ctx: Arc<ConnContext>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let generation = ctx.shared.current();
    let limits = &generation.config.limits;
    let timeouts = generation.config.timeouts.clone();
    let io = GuardedIo::new(io, ctx.clone(), limits.max_header_size, limits.max_headers);
    let _ = ctx.unswitched.set(Box::new(|upgraded| {
        // Ours again: shut it down, which writes any refusal still owed.
        if let Ok(parts) = upgraded.downcast::<hyper_util::rt::TokioIo<GuardedIo<S>>>() {
            let mut io = parts.io.into_inner();
            tokio::spawn(async move {
                use tokio::io::AsyncWriteExt;
                let _ = tokio::time::timeout(Duration::from_secs(5), io.shutdown()).await;
            });
        }
    }));
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(hyper_util::rt::TokioTimer::new())
        // hyper's own header timer also runs while a keep-alive connection is idle;
        // the watchdog below times heads and idle separately instead.
        .header_read_timeout(None)
        .max_buf_size((limits.max_header_size * 2).max(512 * 1024))
        .max_headers(limits.max_headers)
        .half_close(false)
        .keep_alive(true);
    let service_ctx = ctx.clone();
    let service = hyper::service::service_fn(move |req| crate::proxy::handle(req, service_ctx.clone()));
    let conn = builder.serve_connection(hyper_util::rt::TokioIo::new(io), service).with_upgrades();
    tokio::pin!(conn);
    watch(conn, |c| c.graceful_shutdown(), &ctx, &timeouts).await;
}

/// The connection's watchdog, for HTTP/1 and HTTP/2 alike: drives `conn` until
/// it ends, closes it when its clock runs out (head, idle or stream limits),
/// and shuts it down gracefully when the process drains.
async fn watch<F, E>(
    mut conn: Pin<&mut F>,
    graceful_shutdown: impl Fn(Pin<&mut F>),
    ctx: &ConnContext,
    timeouts: &crate::config::Timeouts,
) where
    F: std::future::Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    let mut draining = ctx.shared.draining.clone();
    let mut drain_started = *draining.borrow();
    if drain_started {
        graceful_shutdown(conn.as_mut());
    }
    loop {
        let wait = match ctx.activity.remaining(timeouts.header_read, timeouts.keepalive_idle) {
            Ok(wait) => wait,
            Err(why) => {
                tracing::debug!(client = %ctx.peer, why, "closing connection");
                if ctx.activity.owes_408() {
                    // Half a head arrived: the guard answers 408 and hyper
                    // closes; a client that does not read it is not waited for.
                    ctx.activity.head_timed_out();
                    let _ = tokio::time::timeout(Duration::from_secs(1), conn.as_mut()).await;
                }
                return;
            }
        };
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(client = %ctx.peer, error = %e, "connection ended with an error");
                }
                return;
            }
            _ = tokio::time::sleep(wait) => {}
            _ = ctx.activity.changed.notified() => {}
            _ = draining.changed(), if !drain_started => {
                drain_started = true;
                graceful_shutdown(conn.as_mut());
            }
        }
    }
}

/// hyper offers an upgrade to every HTTP/1.1 request with an `Upgrade` header
/// and, if no 101 took it, hands the connection to that offer when the
/// connection ends. Waiting for it here gives the connection back to its
/// guard, whose shutdown writes the refusal it may still owe.
pub fn close_when_handed_back(ctx: &Arc<ConnContext>, offer: hyper::upgrade::OnUpgrade) {
    let ctx = ctx.clone();
    tokio::spawn(async move {
        if let Ok(upgraded) = offer.await {
            if let Some(close) = ctx.unswitched.get() {
                close(upgraded);
            }
        }
    });
}

/// Counts I/O as activity for the watchdog (HTTP/2 has no framing guard in
/// front: its binary framing is parsed only by the h2 crate, which enforces
/// its own limits).
struct ActivityIo<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S: AsyncRead + Unpin> AsyncRead for ActivityIo<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = ready!(Pin::new(&mut self.inner).poll_read(cx, buf));
        if buf.filled().len() > before {
            self.activity.touch();
        }
        Poll::Ready(r)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for ActivityIo<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let n = ready!(Pin::new(&mut self.inner).poll_write(cx, data))?;
        self.activity.touch();
        Poll::Ready(Ok(n))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Runs HTTP/2 on one client connection, with the same watchdog and drain as
/// HTTP/1 (the head timer does not apply: h2 has no request heads to trickle
/// in before the connection preface, which hyper times itself).
pub async fn serve_h2<S>(io: S, ctx: Arc<ConnContext>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let generation = ctx.shared.current();
    let limits = &generation.config.limits;
    let timeouts = generation.config.timeouts.clone();
    ctx.activity.head_started.store(0, Ordering::Relaxed);
    let io = ActivityIo { inner: io, activity: ctx.activity.clone() };
    let mut builder = hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new());
    builder
        .timer(hyper_util::rt::TokioTimer::new())
        .max_header_list_size(limits.max_header_size as u32)
        .max_concurrent_streams(100);
    let service_ctx = ctx.clone();
    let service = hyper::service::service_fn(move |req| crate::proxy::handle(req, service_ctx.clone()));
    let conn = builder.serve_connection(hyper_util::rt::TokioIo::new(io), service);
    tokio::pin!(conn);
    watch(conn, |c| c.graceful_shutdown(), &ctx, &timeouts).await;
}
