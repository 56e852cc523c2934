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
