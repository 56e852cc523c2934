//! The filter-response stage: the backend's answer as the client gets it, and
//! where its backend connection goes when the body has been read.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use http::header::HeaderValue;
use http::{Response, StatusCode, Version};
use hyper::body::Incoming;

use super::headers;
use crate::backend::{Identity, Pool, PoolKey, Sender};
use crate::conn::ConnInfo;
use crate::response_body::ResponseBody;

/// Where the backend connection goes back to: this worker's pool, under this
/// key, unless the answer makes it this client connection's own (`pinned`).
pub struct GiveBack<'a> {
    pub pool: &'a Arc<Pool>,
    pub key: PoolKey,
    pub info: &'a ConnInfo,
    pub pinned: &'a AtomicBool,
}

/// What the edge's own authentication says about the answer.
pub struct Edge {
    /// The edge authenticated the user.
    pub signed_in: bool,
    /// gatehouse, not the client, signed in to the backend (KCD).
    pub delegated: bool,
    /// The edge's last handshake token, for the client.
    pub final_token: Option<HeaderValue>,
}

/// `lease`: the request's count on its backend, held until the body ends.
pub fn filter(
    resp: Response<Incoming>,
    sender: Sender,
    back: GiveBack<'_>,
    edge: Edge,
    lease: Option<crate::farm::Lease>,
) -> Response<ResponseBody> {
    let GiveBack { pool, mut key, info, pinned } = back;
    let (mut parts, body) = resp.into_parts();
    // An intermediary speaks its own version (RFC 9110 6.2); hyper lowers it
    // for HTTP/1.0 clients.
    if !info.http2 {
        parts.version = Version::HTTP_11;
    } else {
        own_values(&mut parts.headers);
    }
    if key.identity == Identity::Anonymous && headers::binds_connection(&parts.headers) {
        // The backend started a connection-bound handshake on this connection:
        // the next leg, and the logon after it, are this client's alone.
        pinned.store(true, Ordering::Relaxed);
        key.identity = Identity::Connection(info.id);
    }
    let ours = edge.signed_in && parts.status != StatusCode::UNAUTHORIZED;
    headers::to_client(&mut parts.headers, ours && edge.delegated, edge.final_token.filter(|_| ours));
    Response::from_parts(parts, ResponseBody::backend(body, (pool.clone(), key, sender), lease))
}

/// Gives every header value its own allocation. hyper's HTTP/1 client hands
/// out values as slices of the backend connection's 8 KiB read buffer, and
/// HTTP/2's HPACK encoder keeps the values it indexes in the client
/// connection's dynamic table for as long as that connection lives: one such
/// slice kept a whole read buffer per idle HTTP/2 connection (docs/performance.md,
/// "HTTP/2 idle connections: the backend's read buffer"). A copy costs one small
/// allocation per value.
fn own_values(headers: &mut http::HeaderMap) {
    for value in headers.values_mut() {
        let sensitive = value.is_sensitive();
        if let Ok(mut owned) = HeaderValue::from_bytes(value.as_bytes()) {
            owned.set_sensitive(sensitive);
            *value = owned;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    /// The values hyper's client gives share one buffer; after `own_values` the
    /// map keeps none of it, and a sensitive value stays sensitive.
    #[test]
    fn header_values_stop_sharing_the_read_buffer() {
        let read_buffer = Bytes::from(vec![b'v'; 8192]);
        let mut headers = http::HeaderMap::new();
        headers.insert("x-shared", HeaderValue::from_maybe_shared(read_buffer.slice(0..5)).unwrap());
        let mut secret = HeaderValue::from_maybe_shared(read_buffer.slice(5..9)).unwrap();
        secret.set_sensitive(true);
        headers.insert(http::header::SET_COOKIE, secret);
        assert!(!read_buffer.is_unique(), "the test's values must start as slices of the buffer");

        own_values(&mut headers);

        assert!(read_buffer.is_unique(), "a header value still holds the backend's read buffer");
        assert_eq!(headers["x-shared"], "vvvvv");
        assert_eq!(headers[http::header::SET_COOKIE], "vvvv");
        assert!(headers[http::header::SET_COOKIE].is_sensitive());
    }
}
