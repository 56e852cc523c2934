//! One client connection: the state that lives exactly as long as it (its
//! facts, its clocks, its authentication, its own backend connections), the
//! watchdog that closes it when it has been quiet too long, and the HTTP/1 or
//! HTTP/2 server that runs on it. Its bytes pass the framing guard
//! (`guarded_io.rs`) first.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::conn::{Activity, ConnInfo};
use crate::guarded_io::GuardedIo;
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

/// Runs HTTP/1 on one client connection until it closes, goes quiet for too
/// long, or the process drains; `handle` answers each request (the request
/// pipeline, `pipeline::handle`).
pub async fn serve<S, H, F>(io: S, ctx: Arc<Connection>, handle: H)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    H: Fn(Request<Incoming>, Arc<Connection>) -> F + Send + Clone + 'static,
    F: Future<Output = Result<Response<ResponseBody>, h2::Error>> + Send + 'static,
{
    let generation = ctx.shared.current();
    let limits = &generation.config.limits;
    let timeouts = generation.config.timeouts.clone();
    let io = GuardedIo::new(
        io,
        ctx.info.clone(),
        ctx.activity.clone(),
        ctx.shared.access.clone(),
        limits.max_header_size,
        limits.max_headers,
    );
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
    let service = hyper::service::service_fn(move |req| handle(req, service_ctx.clone()));
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
    ctx: &Connection,
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
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(client = %ctx.info.peer, error = %e, "connection ended with an error");
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
pub fn close_when_handed_back(ctx: &Arc<Connection>, offer: hyper::upgrade::OnUpgrade) {
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
    watch(conn, |c| c.graceful_shutdown(), &ctx, &timeouts).await;
}
