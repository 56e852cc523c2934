//! A request body on its way to the backend, streamed frame by frame: nothing
//! here buffers more than the frame at hand, so an RPC_IN_DATA channel
//! announcing 1 GiB costs the same memory as a 1 KiB POST. Its progress (bytes,
//! how it ended) is shared with the access record and the response deadline.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::sync::Notify;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How a request body ended, when it did not end well.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFailure {
    /// The client closed or reset the connection mid-body. Normal for Outlook's
    /// RPC channels, which announce far more than they send.
    ClientGone,
    /// The framing check refused the body (bad chunk size and the like).
    Refused,
}

/// What the proxy learns about a request body while it streams to the backend.
pub struct RequestProgress {
    pub bytes: AtomicU64,
    pub failure: OnceLock<BodyFailure>,
    done: AtomicBool,
    finished: Notify,
}

impl RequestProgress {
    pub fn new() -> Arc<Self> {
        Arc::new(RequestProgress {
            bytes: AtomicU64::new(0),
            failure: OnceLock::new(),
            done: AtomicBool::new(false),
            finished: Notify::new(),
        })
    }

    fn set_finished(&self) {
        self.done.store(true, Ordering::Release);
        self.finished.notify_waiters();
    }

    /// Resolves once the whole body has been read from the client.
    pub async fn finished(&self) {
        loop {
            let notified = self.finished.notified();
            if self.done.load(Ordering::Acquire) {
                return;
            }
            notified.await;
        }
    }
}

/// The client's request body on its way to the backend.
pub struct RequestBody {
    inner: Option<Incoming>,
    progress: Arc<RequestProgress>,
    /// Bytes read ahead ([`RequestBody::peek`]), sent before the rest.
    ahead: Option<Bytes>,
    /// How the body failed while it was read ahead, given after `ahead`.
    failed_ahead: Option<BoxError>,
    /// A trailers frame met while reading ahead, given after `ahead`.
    held: Option<Frame<Bytes>>,
}

impl RequestBody {
    /// No body (a request sent again by gatehouse itself).
    pub fn empty(progress: Arc<RequestProgress>) -> Self {
        RequestBody { inner: None, progress, ahead: None, failed_ahead: None, held: None }
    }

    pub fn new(inner: Incoming, progress: Arc<RequestProgress>) -> Self {
        if inner.is_end_stream() {
            progress.set_finished();
        }
        RequestBody { inner: Some(inner), progress, ahead: None, failed_ahead: None, held: None }
    }

    /// Reads ahead until `at_least` bytes are buffered (or the body ends or
    /// fails), and returns what is buffered; those bytes still go to the
    /// backend first, unchanged. For the few bytes that say where a request
    /// goes (an Outlook Anywhere channel's first PDU). Cancel-safe: a read
    /// cut short by a timeout keeps what arrived.
    pub async fn peek(&mut self, at_least: usize) -> &[u8] {
        while self.ahead.as_ref().map_or(0, Bytes::len) < at_least && self.failed_ahead.is_none() && self.held.is_none()
        {
            let Some(inner) = self.inner.as_mut() else { break };
            match std::future::poll_fn(|cx| Pin::new(&mut *inner).poll_frame(cx)).await {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => {
                        self.ahead = Some(match self.ahead.take() {
                            None => data,
                            Some(before) => [before, data].concat().into(),
                        });
                    }
                    // Trailers: nothing more to read ahead; they follow the data.
                    Err(frame) => self.held = Some(frame),
                },
                None => {
                    self.inner = None;
                    self.progress.set_finished();
                }
                Some(Err(e)) => {
                    let _ = self.progress.failure.set(failure_of(&e));
                    self.inner = None;
                    self.failed_ahead = Some(e.into());
                }
            }
        }
        self.ahead.as_deref().unwrap_or_default()
    }
}

/// A body that failed because the framing guard refused it, or because the
/// client went away.
fn failure_of(e: &hyper::Error) -> BodyFailure {
    let refused = std::error::Error::source(e)
        .and_then(|s| s.downcast_ref::<std::io::Error>())
        .is_some_and(|io| io.kind() == std::io::ErrorKind::InvalidData);
    if refused {
        BodyFailure::Refused
    } else {
        BodyFailure::ClientGone
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(ahead) = self.ahead.take().filter(|b| !b.is_empty()) {
            self.progress.bytes.fetch_add(ahead.len() as u64, Ordering::Relaxed);
            return Poll::Ready(Some(Ok(Frame::data(ahead))));
        }
        if let Some(frame) = self.held.take() {
            return Poll::Ready(Some(Ok(frame)));
        }
        if let Some(e) = self.failed_ahead.take() {
            return Poll::Ready(Some(Err(e)));
        }
        let Some(inner) = self.inner.as_mut() else {
            return Poll::Ready(None);
        };
        match Pin::new(inner).poll_frame(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.progress.bytes.fetch_add(data.len() as u64, Ordering::Relaxed);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(None) => {
                self.inner = None;
                self.progress.set_finished();
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(e))) => {
                let _ = self.progress.failure.set(failure_of(&e));
                self.inner = None;
                Poll::Ready(Some(Err(e.into())))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ahead.as_ref().is_none_or(Bytes::is_empty)
            && self.failed_ahead.is_none()
            && self.held.is_none()
            && self.inner.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        let ahead = self.ahead.as_ref().map_or(0, |b| b.len() as u64);
        let rest = self.inner.as_ref().map_or(SizeHint::with_exact(0), Body::size_hint);
        let mut hint = SizeHint::new();
        hint.set_lower(rest.lower() + ahead);
        if let Some(upper) = rest.upper() {
            hint.set_upper(upper + ahead);
        }
        hint
    }
}
