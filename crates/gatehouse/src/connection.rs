//! One client connection: the state that lives exactly as long as it (its
//! facts, its clocks, its authentication, its own backend connections), the
//! watchdog that closes it when it has been quiet too long, and the HTTP/1 or
//! HTTP/2 server that runs on it. Its bytes pass the framing guard
//! (`guarded_io.rs`) first.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::conn::{Activity, ConnInfo};
use crate::guarded_io::{GuardedIo, ReadReady};
use crate::response_body::ResponseBody;
use crate::shared::Shared;

/// Everything one client connection carries from request to request.
pub struct Connection {
    pub info: Arc<ConnInfo>,
    pub activity: Arc<Activity>,
    /// The connection's authentication (NTLM handshake, logged-on user).
    pub auth: crate::auth::ConnAuth,
    /// Some backend connection carried this client's own credentials (or a
    /// backend's connection-bound challenge) on a site without `auth`: such
    /// connections belong to this client connection alone and close with it.
    pub pinned: AtomicBool,
    /// Which backend of each farm those connections are on: the client's
    /// later requests go there and nowhere else.
    pub pins: crate::farm::Pins,
    /// Closes the connection properly when hyper hands it to an upgrade that
    /// was never answered with a 101 (set by `serve`, which knows the I/O type).
    unswitched: OnceLock<Box<dyn Fn(hyper::upgrade::Upgraded) + Send + Sync>>,
    /// The process, for the request pipeline's entry point only: it takes the
    /// current configuration and this worker's pool from here, and hands each
    /// stage just what it needs.
    pub shared: Arc<Shared>,
}

impl Connection {
    pub fn new(info: ConnInfo, activity: Activity, shared: Arc<Shared>) -> Arc<Connection> {
        Arc::new(Connection {
            auth: crate::auth::ConnAuth::new(info.http2),
            info: Arc::new(info),
            activity: Arc::new(activity),
            pinned: AtomicBool::new(false),
            pins: Default::default(),
            unswitched: OnceLock::new(),
            shared,
        })
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        if self.pinned.load(Ordering::Relaxed) {
            // A backend logon made through this client connection must not
            // outlive it (IIS would serve it to whoever used the socket next).
            self.shared.pools[self.info.worker].discard(&crate::backend::Identity::Connection(self.info.id));
        }
    }
}

/// hyper's default limit of header fields in a request head (its
/// `DEFAULT_MAX_HEADERS`), for which it needs no allocation.
const HYPER_HEADERS: usize = 100;

/// Runs HTTP/1 on one client connection until it closes, goes quiet for too
/// long, or the process drains; `handle` answers each request (the request
/// pipeline, `pipeline::handle`). An idle connection parks: its HTTP server
/// ends (hyper's buffers go with it) and a new one starts when the client
/// sends again (see `conn::PARK_AFTER`).
pub async fn serve<S, H, F>(io: S, ctx: Arc<Connection>, handle: H)
where
    S: AsyncRead + AsyncWrite + ReadReady + Unpin + Send + 'static,
    H: Fn(Request<Incoming>, Arc<Connection>) -> F + Send + Clone + 'static,
    F: Future<Output = Result<Response<ResponseBody>, h2::Error>> + Send + 'static,
{
    let generation = ctx.shared.current();
    let limits = &generation.config.limits;
    let timeouts = generation.config.timeouts.clone();
    let io = SharedIo(Arc::new(Mutex::new(GuardedIo::new(
        io,
        ctx.info.clone(),
        ctx.activity.clone(),
        ctx.shared.access.clone(),
        limits.max_header_size,
        limits.max_headers,
    ))));
    let _ = ctx.unswitched.set(Box::new(|upgraded| {
        // Ours again: shut it down, which writes any refusal still owed.
        if let Ok(parts) = upgraded.downcast::<hyper_util::rt::TokioIo<SharedIo<S>>>() {
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
        .half_close(false)
        .keep_alive(true);
    // The framing guard refuses a head over `max_headers` before hyper parses
    // it, so hyper's own limit only needs to be no lower. Within its default
    // (HYPER_HEADERS) hyper parses into arrays on the stack; given any limit,
    // it allocates two arrays of that many slots for every request.
    if limits.max_headers > HYPER_HEADERS {
        builder.max_headers(limits.max_headers);
    }
    let mut drain = Drain::new(&ctx);
    loop {
        let service_ctx = ctx.clone();
        let handle = handle.clone();
        let service = hyper::service::service_fn(move |req| handle(req, service_ctx.clone()));
        // Boxed, so that a parked connection's task does not keep room for it.
        let mut conn =
            Box::pin(builder.serve_connection(hyper_util::rt::TokioIo::new(io.clone()), service).with_upgrades());
        watch(conn.as_mut(), |c| c.graceful_shutdown(), &ctx, &timeouts, &mut drain).await;
        drop(conn);
        if !io.lock().is_parked() {
            return;
        }
        tracing::debug!(client = %ctx.info.peer, "idle connection parked");
        crate::memory::parked();
        let serve_again = wait_parked(&io, &ctx, &timeouts, &mut drain).await;
        io.lock().unpark();
        if !serve_again {
            // Closed as hyper would have closed it (a TLS close_notify).
            let mut io = io.clone();
            use tokio::io::AsyncWriteExt;
            let _ = tokio::time::timeout(Duration::from_secs(1), io.shutdown()).await;
            return;
        }
    }
}

/// The connection's bytes, shared by the connection and the HTTP server that
/// runs on them, so that they outlive a server that ends on a parked connection.
struct SharedIo<S>(Arc<Mutex<GuardedIo<S>>>);

impl<S> Clone for SharedIo<S> {
    fn clone(&self) -> Self {
        SharedIo(self.0.clone())
    }
}

impl<S> SharedIo<S> {
    fn lock(&self) -> std::sync::MutexGuard<'_, GuardedIo<S>> {
        // Only one task ever uses a connection's bytes at a time; a panic
        // while one did leaves nothing half-changed that another could see.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for SharedIo<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.lock()).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for SharedIo<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.lock()).poll_write(cx, data)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.lock()).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.lock().is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.lock()).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.lock()).poll_shutdown(cx)
    }
}

/// A parked connection waits for the client's next bytes: true to serve them,
/// false when it is to close instead (its idle limit, the process draining).
async fn wait_parked<S: ReadReady>(
    io: &SharedIo<S>,
    ctx: &Connection,
    timeouts: &crate::config::Timeouts,
    drain: &mut Drain,
) -> bool {
    if drain.started {
        return false;
    }
    loop {
        let wait = match ctx.activity.remaining(timeouts.header_read, timeouts.keepalive_idle) {
            Ok(wait) => wait,
            Err(why) => {
                tracing::debug!(client = %ctx.info.peer, why, "closing connection");
                return false;
            }
        };
        tokio::select! {
            ready = std::future::poll_fn(|cx| io.lock().poll_read_ready(cx)) => return ready.is_ok(),
            _ = tokio::time::sleep(wait) => {}
            _ = drain.receiver.changed() => {
                drain.started = true;
                return false;
            }
        }
    }
}

/// Whether the process drains, as one connection has seen it.
struct Drain {
    receiver: tokio::sync::watch::Receiver<bool>,
    started: bool,
}

impl Drain {
    fn new(ctx: &Connection) -> Drain {
        let receiver = ctx.shared.draining.clone();
        let started = *receiver.borrow();
        Drain { receiver, started }
    }
}

/// The connection's watchdog, for HTTP/1 and HTTP/2 alike: drives `conn` until
/// it ends, closes it when its clock runs out (head, idle or stream limits),
/// and shuts it down gracefully when the process drains.
async fn watch<F, E>(
    mut conn: Pin<&mut F>,
    graceful_shutdown: impl Fn(Pin<&mut F>),
    ctx: &Connection,
    timeouts: &crate::config::Timeouts,
    drain: &mut Drain,
) where
    F: std::future::Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    if drain.started {
        graceful_shutdown(conn.as_mut());
    }
    // The idle period whose park time was already reached (by its last byte's
    // time): the server is polled once then, and parks if nothing else is
    // under way; otherwise the next park time is after the next byte.
    let mut park_polled_for = u64::MAX;
    loop {
        ctx.activity.deciding(timeouts.keepalive_idle);
        let now = ctx.activity.now_ms();
        let mut wait = match ctx.activity.remaining_at(now, timeouts.header_read, timeouts.keepalive_idle) {
            Ok(wait) => wait,
            Err(why) => {
                tracing::debug!(client = %ctx.info.peer, why, "closing connection");
                if ctx.activity.owes_408() {
                    // Half a head arrived: the guard answers 408 and hyper
                    // closes; a client that does not read it is not waited for.
                    ctx.activity.head_timed_out();
                    let _ = tokio::time::timeout(Duration::from_secs(1), conn.as_mut()).await;
                }
                return;
            }
        };
        let idle_since = ctx.activity.last_io.load(Ordering::Relaxed);
        if let Some(park) = ctx.activity.park_in_at(now) {
            if idle_since != park_polled_for {
                if park.is_zero() {
                    park_polled_for = idle_since;
                }
                wait = wait.min(park);
            }
        }
        ctx.activity.armed_for(now.saturating_add(wait.as_millis() as u64));
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(client = %ctx.info.peer, error = %e, "connection ended with an error");
                }
                return;
            }
            _ = tokio::time::sleep(wait) => {}
            _ = ctx.activity.changed.notified() => {}
            _ = drain.receiver.changed(), if !drain.started => {
                drain.started = true;
                graceful_shutdown(conn.as_mut());
            }
        }
    }
}

/// hyper offers an upgrade to every HTTP/1.1 request with an `Upgrade` header
/// and, if no 101 took it, hands the connection to that offer when the
/// connection ends. Waiting for it here gives the connection back to its
/// guard, whose shutdown writes the refusal it may still owe.
pub fn close_when_handed_back(ctx: &Arc<Connection>, offer: hyper::upgrade::OnUpgrade) {
    // Parking would end hyper's server and so hand it the connection now.
    ctx.activity.never_park();
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
        let written = Pin::new(&mut self.inner).poll_write(cx, data);
        self.activity.wrote(written)
    }

    /// Passed through: without it h2 writes a frame's head and its payload
    /// in two writes, each its own TLS record and system call
    /// (docs/performance.md, "HTTP/2's writes").
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.activity.wrote(written)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
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
pub async fn serve_h2<S, H, F>(io: S, ctx: Arc<Connection>, handle: H)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    H: Fn(Request<Incoming>, Arc<Connection>) -> F + Send + Clone + 'static,
    F: Future<Output = Result<Response<ResponseBody>, h2::Error>> + Send + 'static,
{
    let generation = ctx.shared.current();
    let limits = &generation.config.limits;
    let timeouts = generation.config.timeouts.clone();
    ctx.activity.head_started.store(0, Ordering::Relaxed);
    ctx.activity.never_park();
    let io = ActivityIo { inner: io, activity: ctx.activity.clone() };
    let mut builder = hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new());
    builder
        .timer(hyper_util::rt::TokioTimer::new())
        .max_header_list_size(limits.max_header_size as u32)
        .max_concurrent_streams(100);
    let service_ctx = ctx.clone();
    let service = hyper::service::service_fn(move |req| handle(req, service_ctx.clone()));
    let conn = builder.serve_connection(hyper_util::rt::TokioIo::new(io), service);
    tokio::pin!(conn);
    let mut drain = Drain::new(&ctx);
    watch(conn, |c| c.graceful_shutdown(), &ctx, &timeouts, &mut drain).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer that counts the calls it gets, as a TLS stream would see them.
    #[derive(Default)]
    struct Counting {
        vectored_calls: usize,
        plain_calls: usize,
        bytes: Vec<u8>,
    }

    impl AsyncWrite for Counting {
        fn poll_write(mut self: Pin<&mut Self>, _: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
            self.plain_calls += 1;
            self.bytes.extend_from_slice(data);
            Poll::Ready(Ok(data.len()))
        }
        fn poll_write_vectored(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            bufs: &[io::IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            self.vectored_calls += 1;
            let mut n = 0;
            for b in bufs {
                self.bytes.extend_from_slice(b);
                n += b.len();
            }
            Poll::Ready(Ok(n))
        }
        fn is_write_vectored(&self) -> bool {
            true
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    /// h2 writes a frame's head and payload as one vectored write only if the
    /// stream under it says it can: one write (one TLS record) reaches the
    /// stream, and the write counts as activity.
    #[test]
    fn http2_writes_stay_vectored_through_the_activity_clock() {
        let activity = Arc::new(Activity::new(std::time::Duration::from_secs(60)));
        activity.last_io.store(u64::MAX, Ordering::Relaxed);
        let mut io = ActivityIo { inner: Counting::default(), activity: activity.clone() };
        assert!(io.is_write_vectored(), "the TLS stream's vectored writes are hidden from h2");
        let (head, payload) = (*b"frame head", [7u8; 1024]);
        let bufs = [io::IoSlice::new(&head), io::IoSlice::new(&payload)];
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        let n = match Pin::new(&mut io).poll_write_vectored(&mut cx, &bufs) {
            Poll::Ready(Ok(n)) => n,
            other => panic!("write did not complete: {other:?}"),
        };
        assert_eq!(n, head.len() + payload.len());
        assert_eq!((io.inner.vectored_calls, io.inner.plain_calls), (1, 0));
        assert_eq!(&io.inner.bytes[..head.len()], &head);
        assert_ne!(activity.last_io.load(Ordering::Relaxed), u64::MAX, "a write must count as activity");
    }
}
