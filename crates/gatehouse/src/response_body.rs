//! A response on its way to the client, streamed frame by frame. It carries
//! what must end exactly when the response ends: the request's in-flight mark,
//! its access record, and the backend connection to give back to its pool.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use crate::backend::{Pool, PoolKey, Sender};
use crate::conn::InFlight;
use crate::request_body::BoxError;
use crate::telemetry::AccessRecord;

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
    /// The request counted in flight on its backend (and its session held
    /// there) until the response ends.
    _lease: Option<crate::farm::Lease>,
    sent: u64,
    complete: bool,
    _in_flight: Option<InFlight>,
    record: Option<AccessRecord>,
}

impl ResponseBody {
    pub fn local(bytes: Bytes) -> Self {
        Self::new(Source::Local(Some(bytes)))
    }

    pub fn backend(body: Incoming, reuse: (Arc<Pool>, PoolKey, Sender), lease: Option<crate::farm::Lease>) -> Self {
        let mut b = Self::new(Source::Backend(body));
        b.reuse = Some(reuse);
        b._lease = lease;
        b
    }

    fn new(source: Source) -> Self {
        ResponseBody { source, reuse: None, _lease: None, sent: 0, complete: false, _in_flight: None, record: None }
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
