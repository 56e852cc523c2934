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
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
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
    pub shared: Arc<Shared>,
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
    /// Wakes the watchdog when a head starts, so its shorter clock applies at once.
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
            changed: tokio::sync::Notify::new(),
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn touch(&self) {
        self.last_io.store(self.now_ms(), Ordering::Relaxed);
    }

    /// Marks a request as in flight until the returned guard drops.
    pub fn begin_request(self: &Arc<Self>, stream_idle: Duration) -> InFlight {
        self.stream_idle_ms.store(stream_idle.as_millis() as u64, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }

    /// The site chose its own idle limit for long-lived streams.
    pub fn set_stream_idle(&self, stream_idle: Duration) {
        self.stream_idle_ms.store(stream_idle.as_millis() as u64, Ordering::Relaxed);
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
pub struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
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
    /// Bytes read from the socket and not yet handed on; the first `accepted` of
    /// them have passed the check.
    buf: BytesMut,
    accepted: usize,
    eof: bool,
    /// A refusal to send before closing, and how much of it is written.
    answer: Option<(Vec<u8>, usize)>,
    body_refused: bool,
    /// Where in `buf` the current request's head begins, while none of it has been
    /// handed on. A body refused before its head left is refused as a whole, so
    /// the backend never even sees the head.
    head_at: Option<usize>,
}

impl<S> GuardedIo<S> {
    pub fn new(inner: S, ctx: Arc<ConnContext>, max_head: usize, max_headers: usize) -> Self {
        GuardedIo {
            inner,
            ctx,
            stream: RequestStream::new(max_head, max_headers),
            buf: BytesMut::new(),
            accepted: 0,
            eof: false,
            answer: None,
            body_refused: false,
            head_at: Some(0),
        }
    }

    fn check(&mut self) {
        loop {
            if self.stream.at_request_boundary() {
                self.head_at = Some(self.accepted);
            }
            match self.stream.advance(&self.buf[self.accepted..]) {
                Ok(0) => break,
                Ok(n) => self.accepted += n,
                Err(reject) => {
                    self.refuse(reject);
                    break;
                }
            }
        }
        let head = &self.ctx.activity.head_started;
        let pending_head = self.stream.at_request_boundary() && self.buf.len() > self.accepted;
        if pending_head && head.load(Ordering::Relaxed) == 0 {
            head.store(self.ctx.activity.now_ms() + 1, Ordering::Relaxed);
            self.ctx.activity.changed.notify_one();
        } else if !pending_head {
            head.store(0, Ordering::Relaxed);
        }
    }

    fn refuse(&mut self, reject: Reject) {
        self.ctx.activity.head_started.store(0, Ordering::Relaxed);
        let in_head = self.stream.at_request_boundary() || self.head_at.is_some();
        if let Some(at) = self.head_at {
            self.accepted = at;
        }
        telemetry::refused_framing(&self.ctx, &reject, in_head);
        if in_head {
            self.answer = Some((crate::pages::raw_refusal(reject.status(), reject.cause()), 0));
        } else {
            self.body_refused = true;
        }
        let _ = self.ctx.rejected.set(reject);
        // Nothing after the refused bytes is handed on.
        self.buf.truncate(self.accepted);
        self.eof = true;
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for GuardedIo<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, out: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if this.accepted > 0 {
                let n = this.accepted.min(out.remaining());
                out.put_slice(&this.buf[..n]);
                this.buf.advance(n);
                this.accepted -= n;
                this.head_at = this.head_at.and_then(|at| at.checked_sub(n));
                return Poll::Ready(Ok(()));
            }
            if this.eof {
                if this.body_refused {
                    let cause = this.ctx.rejected.get().map_or("refused", Reject::cause);
                    return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, cause)));
                }
                return Poll::Ready(Ok(()));
            }
            // Read into zeroed spare room: a memset per read keeps `unsafe` out of this
            // crate, and costs little next to the system call.
            let old = this.buf.len();
            this.buf.resize(old + READ_CHUNK, 0);
            let mut rb = ReadBuf::new(&mut this.buf[old..]);
            let polled = Pin::new(&mut this.inner).poll_read(cx, &mut rb);
            let n = rb.filled().len();
            this.buf.truncate(old + n);
            ready!(polled)?;
            if n == 0 {
                this.eof = true;
                // A partial head at EOF is dropped: the client left mid-request.
                this.buf.truncate(this.accepted);
                continue;
            }
            this.ctx.activity.touch();
            this.check();
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for GuardedIo<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let n = ready!(Pin::new(&mut self.inner).poll_write(cx, data))?;
        self.ctx.activity.touch();
        Poll::Ready(Ok(n))
    }

    fn poll_write_vectored(mut self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
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
        if let Some((answer, written)) = &mut this.answer {
            while *written < answer.len() {
                let n = ready!(Pin::new(&mut this.inner).poll_write(cx, &answer[*written..]))?;
                if n == 0 {
                    break;
                }
                *written += n;
            }
            ready!(Pin::new(&mut this.inner).poll_flush(cx))?;
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
    let mut draining = ctx.shared.draining.clone();
    let mut drain_started = *draining.borrow();
    if drain_started {
        conn.as_mut().graceful_shutdown();
    }
    loop {
        let wait = match ctx.activity.remaining(timeouts.header_read, timeouts.keepalive_idle) {
            Ok(wait) => wait,
            Err(why) => {
                tracing::debug!(client = %ctx.peer, why, "closing connection");
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
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}
