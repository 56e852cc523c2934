//! Bodies in flight. Both directions stream frame by frame: nothing here buffers
//! more than the frame at hand, so an RPC_IN_DATA channel announcing 1 GiB costs
//! the same memory as a 1 KiB POST.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::sync::Notify;

use crate::backend::{Pool, PoolKey, Sender};
use crate::connection::InFlight;
use crate::telemetry::AccessRecord;

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
}

impl RequestBody {
    /// No body (a request sent again by gatehouse itself).
    pub fn empty(progress: Arc<RequestProgress>) -> Self {
        RequestBody { inner: None, progress }
    }

    pub fn new(inner: Incoming, progress: Arc<RequestProgress>) -> Self {
        if inner.is_end_stream() {
            progress.set_finished();
        }
        RequestBody { inner: Some(inner), progress }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
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
                let refused = std::error::Error::source(&e)
                    .and_then(|s| s.downcast_ref::<std::io::Error>())
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::InvalidData);
                let failure = if refused { BodyFailure::Refused } else { BodyFailure::ClientGone };
                let _ = self.progress.failure.set(failure);
                self.inner = None;
                Poll::Ready(Some(Err(e.into())))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.as_ref().map_or(SizeHint::with_exact(0), Body::size_hint)
    }
}

enum Source {
    Local(Option<Bytes>),
    Backend(Incoming),
}

/// A response on its way to the client. It owns the request's in-flight mark and
/// its access-log record, both of which end when the last byte is handed to the
/// connection (or the client goes away).
pub struct ResponseBody {
    source: Source,
    /// The backend connection, returned to its pool when the body ends well.
    reuse: Option<(Arc<Pool>, PoolKey, Sender)>,
    sent: u64,
    complete: bool,
    _in_flight: Option<InFlight>,
    record: Option<AccessRecord>,
}

impl ResponseBody {
    pub fn local(bytes: Bytes) -> Self {
        Self::new(Source::Local(Some(bytes)))
    }

    pub fn backend(body: Incoming, reuse: (Arc<Pool>, PoolKey, Sender)) -> Self {
        let mut b = Self::new(Source::Backend(body));
        b.reuse = Some(reuse);
        b
    }

    fn new(source: Source) -> Self {
        ResponseBody { source, reuse: None, sent: 0, complete: false, _in_flight: None, record: None }
    }

    /// Attaches what must live until the response is done.
    pub fn finish_with(&mut self, in_flight: InFlight, record: AccessRecord) {
        self._in_flight = Some(in_flight);
        self.record = Some(record);
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = match &mut self.source {
            Source::Local(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Source::Backend(body) => Pin::new(body).poll_frame(cx).map_err(BoxError::from),
        };
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.sent += data.len() as u64;
                }
            }
            Poll::Ready(None) => {
                self.complete = true;
                if let Some((pool, key, sender)) = self.reuse.take() {
                    pool.release(key, sender);
                }
            }
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        match &self.source {
            Source::Local(b) => b.is_none(),
            Source::Backend(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.source {
            Source::Local(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            Source::Backend(b) => b.size_hint(),
        }
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        // A body with nothing in it (HEAD, 204, 304) may never be polled.
        if self.is_end_stream() {
            if let Some((pool, key, sender)) = self.reuse.take() {
                pool.release(key, sender);
            }
        }
        if let Some(record) = self.record.take() {
            let complete = self.complete || self.is_end_stream();
            record.finish(self.sent, complete);
        }
    }
}
