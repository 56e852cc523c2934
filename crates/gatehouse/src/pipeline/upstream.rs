//! The prepare stage: the request as the backend gets it (target in origin
//! form, HTTP/1.1, headers by `headers.rs`'s policy, the body streamed), and
//! the identity whose backend connections may carry it. Which backend of the
//! farm it goes to is the balance stage's.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use http::header::{self, HeaderValue};
use http::{Request, Uri, Version};
use hyper::body::Incoming;

use super::failure::Failure;
use super::headers::{self, Upstream};
use super::routing::Routed;
use super::send::Replay;
use crate::auth::User;
use crate::backend::Identity;
use crate::conn::ConnInfo;
use crate::request_body::{RequestBody, RequestProgress};

pub struct Prepared {
    pub request: Request<RequestBody>,
    /// Whose backend connections may carry it (with the backend, the pool key).
    pub identity: Identity,
    /// For a bodiless request to a delegating site: what to send again with a
    /// fresh ticket should the backend ask (401).
    pub replay: Option<Replay>,
    pub progress: Arc<RequestProgress>,
    pub bodiless: bool,
}

/// `pinned`: this client connection already has backend connections of its
/// own (see `Identity::Connection`).
pub fn prepare(
    req: Request<Incoming>,
    routed: &Routed,
    user: Option<&User>,
    upgrade: Option<&HeaderValue>,
    info: &ConnInfo,
    pinned: &AtomicBool,
    request_id: &str,
) -> Result<Prepared, Failure> {
    let site = &routed.site;
    let bodiless = http_body::Body::is_end_stream(req.body());
    let (parts, body) = req.into_parts();
    let body_length = http_body::Body::size_hint(&body).exact();
    let progress = RequestProgress::new();
    let mut headers = parts.headers;
    let (client_host, host) = hosts(routed)?;
    // The edge consumed the client's credentials; they mean nothing to the
    // backend, unless the site forwards Basic (the password, already checked)
    // or does not authenticate at all (the client logs on to the backend).
    let forwards_basic = matches!(site.delegation, crate::config::Delegation::ForwardBasic)
        && user.is_some_and(|u| u.scheme == crate::config::Scheme::Basic);
    let keep_authorization = user.is_none() || forwards_basic;
    headers::to_backend(
        &mut headers,
        &Upstream {
            forwarded_for: &info.forwarded_for,
            https: info.tls,
            client_host: client_host.as_ref(),
            host,
            request_id,
            identity: site.identity_header.as_ref().map(|n| (n, user.map(|u| &u.header))),
            keep_authorization,
            body_length,
            upgrade,
        },
    );
    let uri: Uri = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .parse()
        .map_err(|_| Failure::BadRequest("bad request target".into()))?;
    let replay = (site.kcd().is_some() && user.is_some() && bodiless).then(|| Replay {
        method: parts.method.clone(),
        uri: uri.clone(),
        headers: headers.clone(),
    });
    let identity = identity(user, &headers, info, pinned);
    let mut request = Request::new(RequestBody::new(body, progress.clone()));
    *request.method_mut() = parts.method;
    *request.uri_mut() = uri;
    *request.version_mut() = Version::HTTP_11;
    *request.headers_mut() = headers;
    Ok(Prepared { request, identity, replay, progress, bodiless })
}

/// The host the client asked for (for `X-Forwarded-Host`), and the `Host` the
/// backend gets: the site's `host_header`, else the client's, else none here
/// (the send stage gives the backend's own address, once it knows which
/// backend). For an absolute-form target the authority is the host
/// (RFC 9112 3.2.2); a different Host header is ignored.
fn hosts(routed: &Routed) -> Result<(Option<HeaderValue>, Option<HeaderValue>), Failure> {
    let site = &routed.site;
    let client_host = match &routed.host {
        Some(h) => {
            Some(HeaderValue::from_str(h).map_err(|_| Failure::BadRequest("Host is not a valid header value".into()))?)
        }
        None => None,
    };
    let host = match (&site.host_header, &client_host) {
        (Some(h), _) => Some(headers::value(h)),
        (None, Some(h)) => Some(h.clone()),
        (None, None) => None,
    };
    Ok((client_host, host))
}

/// Whose backend connections may carry the request. On a site without `auth`
/// the client may log on to the backend itself: from its first credentials on,
/// this client connection has backend connections of its own, never shared.
fn identity(user: Option<&User>, headers: &http::HeaderMap, info: &ConnInfo, pinned: &AtomicBool) -> Identity {
    match user {
        Some(u) => Identity::User(u.name.clone()),
        None if pinned.load(Ordering::Relaxed) || headers.contains_key(header::AUTHORIZATION) => {
            pinned.store(true, Ordering::Relaxed);
            Identity::Connection(info.id)
        }
        None => Identity::Anonymous,
    }
}
