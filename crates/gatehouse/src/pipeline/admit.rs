//! The authenticate and authorize stages for a page of gatehouse's own that
//! is no site: the admin listener's status page behind `[admin.sign_in]`.
//!
//! The same two stages as a site's request, in the same order, with the same
//! counters, access record and log lines; only what follows differs (no
//! backend: the caller answers with its page). The connection's NTLM state
//! is the caller's, one per connection, as a site's listener keeps it.

use std::sync::Arc;

use http::header::{self, HeaderValue};
use http::{Request, Response};
use hyper::body::Incoming;

use super::authenticate::{self, SignedIn};
use super::authorize;
use super::failure::Failure;
use crate::auth::{Asked, ConnAuth, Reason, User};
use crate::config::Site;
use crate::conn::ConnInfo;
use crate::generation::Generation;
use crate::metrics::{Cause, SignIns};
use crate::response_body::ResponseBody;
use crate::telemetry::AccessRecord;

/// What the two stages need to know about where the request came in.
pub struct Gate<'a> {
    /// The internal site (`Generation::admin_site`): its `auth` and rules.
    pub site: &'a Site,
    pub generation: &'a Generation,
    pub info: &'a ConnInfo,
    /// This connection's authentication state.
    pub auth: &'a ConnAuth,
    pub signins: &'a SignIns,
}

/// The signed-in, allowed user and the last token of their handshake (for
/// `WWW-Authenticate` on the page), or the answer that the request gets
/// instead: a challenge or refusal (401), a user the rules refuse (403), a
/// domain that cannot say (503).
pub async fn admit(
    req: Request<Incoming>,
    gate: Gate<'_>,
    record: &mut AccessRecord,
) -> Result<(Arc<User>, Option<HeaderValue>), Response<ResponseBody>> {
    let Gate { site, generation, info, auth, signins } = gate;
    let config = &generation.config;
    let limits = (config.limits.handshake_body, config.timeouts.header_read);
    record.set_site(&site.name);
    // Kerberos tickets are accepted for the host the request was sent to.
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()))
        .map(crate::route::host_name);
    let target = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let asked = Asked { headers: req.headers(), method: req.method(), target, host: host.as_deref() };
    let (user, final_token) =
        match authenticate::authenticate(asked, &generation.auth, info, auth, site, record, signins).await {
            Ok(SignedIn::User(user, token)) => (user, token),
            Ok(SignedIn::NotYet(resp, reason)) => {
                return Err(authenticate::answer(req, *resp, reason, info, limits, record).await);
            }
            // `[admin.sign_in] auth` is never empty (the configuration says so).
            Ok(SignedIn::Anonymous) => {
                let why = "[admin.sign_in] offers no scheme".to_owned();
                return Err(Failure::ServiceUnavailable(why).respond(info, record));
            }
            Err(failure) => return Err(failure.respond(info, record)),
        };
    match authorize::authorize(site, Some(&user), &generation.access, auth).await {
        Ok(()) => Ok((user, final_token)),
        Err(refused @ Failure::Forbidden { .. }) => {
            signins.refused(user.scheme.name(), Cause::DeniedByRule);
            let resp = refused.respond_on_status_page(info, record);
            Err(authenticate::answer(req, resp, Reason::Handshake, info, limits, record).await)
        }
        Err(other) => Err(other.respond(info, record)),
    }
}
