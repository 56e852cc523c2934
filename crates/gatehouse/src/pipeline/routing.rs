//! The route stage: which site a request is for, as the backend will read its
//! target (see `httpguard`), and the farm of backends that site reaches.

use std::sync::Arc;

use http::{header, Method, Request};

use super::failure::Failure;
use crate::config::Site;
use crate::farm::Farm;
use crate::generation::Generation;
use crate::route;

/// Where a request goes.
pub struct Routed {
    pub site: Arc<Site>,
    /// Its backends.
    pub farm: Arc<Farm>,
    /// The host the client asked for, checked (None: an HTTP/1.0 request without one).
    pub host: Option<String>,
    /// The same, lower-case and without its port ([`route::host_name`]).
    pub host_name: Option<String>,
}

pub fn route<B>(req: &Request<B>, listener: &str, generation: &Generation) -> Result<Routed, Failure> {
    if req.method() == Method::CONNECT {
        return Err(Failure::MethodNotAllowed);
    }
    let host = request_host(req)?;
    let path = match req.uri().path() {
        // `OPTIONS *` asks about the server as a whole: the site for `/` answers.
        "*" if req.method() == Method::OPTIONS => b"/".to_vec(),
        "*" => return Err(Failure::BadRequest("the target * is for OPTIONS only".into())),
        p => httpguard::routing_path(p.as_bytes()).map_err(|e| Failure::BadRequest(e.cause().into()))?,
    };
    let host_name = host.as_deref().map(route::host_name);
    let site = generation.routes.find(listener, host_name.as_deref(), &path).ok_or(Failure::NotFound)?.clone();
    let farm = generation
        .farms
        .get(&site.name)
        .ok_or_else(|| Failure::ServiceUnavailable("backend missing from this configuration".into()))?
        .clone();
    Ok(Routed { site, farm, host, host_name })
}

/// The host the client asked for: the authority of an absolute-form target, else
/// the Host header (which HTTP/1.0 clients may omit). Both are checked, even when
/// the authority wins: RFC 9112 section 3.2 answers an invalid Host with 400.
pub(super) fn request_host<B>(req: &Request<B>) -> Result<Option<String>, Failure> {
    let checked = |value: &[u8], what: &str| match httpguard::parse_host(value) {
        Ok(_) => Ok(()),
        Err(e) => Err(Failure::BadRequest(format!("{what}: {}", e.cause()))),
    };
    let header = match req.headers().get(header::HOST) {
        None => None,
        Some(h) => {
            checked(h.as_bytes(), "Host header")?;
            // Checked above: ASCII only.
            h.to_str().ok().map(str::to_owned)
        }
    };
    if let Some(auth) = req.uri().authority() {
        checked(auth.as_str().as_bytes(), "request target authority")?;
        return Ok(Some(auth.as_str().to_owned()));
    }
    Ok(header)
}
