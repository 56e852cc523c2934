//! The client's bytes on HTTP/1, checked by `httpguard`'s framing tracker before
//! hyper sees them (see docs/design.md, "What the edge guarantees").

use std::io;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use httpguard::{Reject, RequestStream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::conn::{Activity, ConnInfo};
use crate::telemetry::{self, AccessLog};

const READ_CHUNK: usize = 16 * 1024;

/// The client's byte stream, checked by [`RequestStream`] on the way in.
///
/// Head bytes are held back until the whole head has been validated, so the HTTP
/// server never sees a refused head. A refused head ends the stream (EOF) and the
/// 400 answer is written on shutdown, after any earlier response; a refusal inside
/// a body is an I/O error, which fails that request's body so that the request
/// is never completed towards the backend.
pub struct GuardedIo<S> {
    inner: S,
    info: Arc<ConnInfo>,
    activity: Arc<Activity>,
    /// For the refusals the guard answers itself.
    log: AccessLog,
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
    /// Everything written has been flushed (hyper flushes after each message):
    /// only then may the connection park.
    flushed: bool,
    /// The connection is parking: the HTTP server was told the stream ended,
    /// and its shutdown leaves the socket open (see `conn::PARK_AFTER`).
    parked: bool,
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
    pub fn new(
        inner: S,
        info: Arc<ConnInfo>,
        activity: Arc<Activity>,
        log: AccessLog,
        max_head: usize,
        max_headers: usize,
    ) -> Self {
        GuardedIo {
            inner,
            info,
            activity,
            log,
            stream: RequestStream::new(max_head, max_headers),
            held: Vec::new(),
            accepted: 0,
            eof: false,
            answer: None,
            body_refused: false,
            answer_after: 0,
            unchecked: false,
            flushed: true,
            parked: false,
        }
    }

    /// True once the HTTP server was sent away from an idle connection.
    pub fn is_parked(&self) -> bool {
        self.parked
    }

    /// A parked connection is served again (or closed: shutdown then reaches
    /// the socket).
    pub fn unpark(&mut self) {
        self.parked = false;
    }

    /// Nothing is under way on the connection, in hyper or in the guard, and it
    /// has been quiet long enough: hyper can be told the stream ended.
    fn may_park(&self) -> bool {
        self.flushed
            && !self.eof
            && self.answer.is_none()
            && self.held.is_empty()
            && self.accepted == 0
            && !self.unchecked
            && self.stream.at_request_boundary()
            && self.activity.park_in() == Some(std::time::Duration::ZERO)
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
        let head = &self.activity.head_started;
        let pending_head = self.stream.at_request_boundary() && at < data.len();
        self.activity.partial_head.store(pending_head, Ordering::Relaxed);
        if pending_head && head.load(Ordering::Relaxed) == 0 {
            head.store(self.activity.now_ms() + 1, Ordering::Relaxed);
            self.activity.changed.notify_one();
        } else if !pending_head && head.swap(0, Ordering::Relaxed) != 0 {
            self.activity.changed.notify_one();
        }
        Scan::Accepted(at)
    }

    fn refuse(&mut self, reject: Reject, head_at: Option<usize>, at: usize, before: u64) -> usize {
        self.activity.head_started.store(0, Ordering::Relaxed);
        self.activity.partial_head.store(false, Ordering::Relaxed);
        let in_head = head_at.is_some();
        let (id, record) = telemetry::refused_framing(&self.log, &self.info, &reject, in_head);
        if in_head {
            self.answer = Some((crate::pages::raw_refusal(reject.status(), reject.cause(), &id), 0, record));
            // Every request before the refused one gets its answer first.
            self.answer_after = before;
        } else {
            self.body_refused = true;
        }
        let _ = self.activity.rejected.set(reject);
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
        let activity = self.activity.clone();
        let mut news = activity.news();
        if news.head_timeout && !self.eof {
            news.head_timeout = false;
            // The client started a head and never finished it: say so before
            // closing, as any server would (RFC 9110 15.5.9).
            let (id, record) = telemetry::head_timeout(&self.log, &self.info);
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
        } else {
            // An answer can only be for the upgrade the guard is waiting on
            // (it reads nothing past one): any other is stale, never kept for
            // a later upgrade request to pick up.
            news.upgrade = None;
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
        self.activity.news().reader = Some(cx.waker().clone());
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
                    let cause = this.activity.rejected.get().map_or("refused", Reject::cause);
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
                match Pin::new(&mut this.inner).poll_read(cx, out) {
                    Poll::Pending if this.may_park() => {
                        // Reads as the client's close: hyper ends its server
                        // and drops its buffers; the socket stays open.
                        this.parked = true;
                        return Poll::Ready(Ok(()));
                    }
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(r) => r?,
                }
                let n = out.filled().len() - before;
                if n == 0 {
                    this.eof = true;
                    continue;
                }
                this.activity.touch();
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
            this.activity.touch();
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
        let written = Pin::new(&mut self.inner).poll_write(cx, data);
        let n = ready!(self.activity.wrote(written))?;
        self.flushed = false;
        Poll::Ready(Ok(n))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        let n = ready!(self.activity.wrote(written))?;
        self.flushed = false;
        Poll::Ready(Ok(n))
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(Pin::new(&mut self.inner).poll_flush(cx))?;
        self.flushed = true;
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.parked {
            // hyper ending its server on a parked connection: the socket is
            // the connection's, which serves it again when the client sends.
            return Poll::Ready(Ok(()));
        }
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

/// Read readiness without reading: a parked connection waits on its socket.
pub trait ReadReady {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
}

impl ReadReady for tokio::net::TcpStream {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        tokio::net::TcpStream::poll_read_ready(self, cx)
    }
}

impl ReadReady for tokio_rustls::server::TlsStream<tokio::net::TcpStream> {
    // rustls has no plaintext waiting when a read came back pending (which is
    // when a connection parks), so new bytes on the socket are all it waits for.
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_ref().0.poll_read_ready(cx)
    }
}

impl<S: ReadReady> GuardedIo<S> {
    pub fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.inner.poll_read_ready(cx)
    }
}
