//! The send stage: a pooled backend connection for the request's identity (or
//! a new one), a Kerberos ticket where the site's `send_token` wants one, the
//! request, and the response head; with the two retries there are: a pooled
//! connection the backend had just closed, and one new sign-in when a
//! delegating site's backend answers 401.

use std::sync::OnceLock;
use std::time::Duration;

use http::header::{self, HeaderMap};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use hyper::body::Incoming;

use super::delegate::{self, Kerberos};
use super::failure::Failure;
use crate::auth::User;
use crate::backend::{ConnectError, Pool, PoolKey, Sender, Target};
use crate::config::{SendToken, Timeouts};
use crate::request_body::{BodyFailure, RequestBody, RequestProgress};

/// The backend end of one request.
pub struct Hop<'a> {
    pub target: &'a Target,
    /// `scheme://host:port`, for the messages.
    pub origin: &'a str,
    /// This worker's pool, and the key (backend, identity) in it.
    pub pool: &'a Pool,
    pub key: &'a PoolKey,
    pub timeouts: &'a Timeouts,
    /// The framing guard's refusal on the client connection, if any: a body
    /// that failed because of it is the client's fault.
    pub refused: &'a OnceLock<httpguard::Reject>,
}

#[derive(Clone, Copy)]
/// Delegation for this request: the site's Kerberos settings, the user, and
/// whether the request has no body (then it may wait for a 401 to get a ticket).
pub struct Signing<'a> {
    pub kerberos: Kerberos<'a>,
    pub user: &'a User,
    pub bodiless: bool,
}

/// A bodiless request, kept so that it can be sent again with a fresh ticket.
pub struct Replay {
    pub method: Method,
    pub uri: Uri,
    pub headers: HeaderMap,
}

pub struct Sent {
    pub response: Response<Incoming>,
    pub sender: Sender,
}

/// Sends `request`; on a delegating site whose backend answers 401 to a ticket
/// it should have taken (an authenticated connection that no longer is, as when
/// an IIS application pool recycles, or `on-401`'s first ask), signs in once
/// more on a fresh connection with `replay`, rather than relay the 401. A 401
/// that remains is the backend refusing gatehouse's ticket: 502, with the SPN.
pub async fn send(
    hop: &Hop<'_>,
    request: Request<RequestBody>,
    progress: &std::sync::Arc<RequestProgress>,
    signing: Option<&Signing<'_>>,
    replay: Option<Replay>,
) -> Result<Sent, Failure> {
    let (mut sent, reused, with_ticket) = exchange(hop, request, progress, signing, false).await?;
    let Some(signing) = signing else { return Ok(sent) };
    if sent.response.status() != StatusCode::UNAUTHORIZED {
        return Ok(sent);
    }
    if let Some(again) = replay.filter(|_| reused || !with_ticket) {
        tracing::info!(user = %signing.user.name, "backend answered 401; signing in again on a fresh connection");
        drop(sent);
        let mut request = Request::new(RequestBody::empty(progress.clone()));
        *request.method_mut() = again.method;
        *request.uri_mut() = again.uri;
        *request.version_mut() = Version::HTTP_11;
        *request.headers_mut() = again.headers;
        request.headers_mut().remove(header::AUTHORIZATION);
        let fresh = Signing { bodiless: true, ..*signing };
        sent = exchange(hop, request, progress, Some(&fresh), true).await?.0;
    }
    if sent.response.status() == StatusCode::UNAUTHORIZED {
        return Err(Failure::BadGateway(format!(
            "the backend {} rejected the Kerberos ticket for {} ({}): 401; check the backend's keytab and SPN",
            hop.origin, signing.user.name, signing.kerberos.settings.spn,
        )));
    }
    Ok(sent)
}

/// Sends `request` on a pooled connection for the hop's key (or a new one;
/// always a new one, with a ticket, when `fresh`) and waits for the response
/// head. With `signing` it adds `Authorization: Negotiate` where `send_token`
/// wants it: on a new connection (`always`), on every request
/// (`every-request`), or on a new connection only for requests with a body
/// (`on-401`: the others wait to be asked). Returns the response, whether the
/// connection was reused, and whether a ticket went with the request.
async fn exchange(
    hop: &Hop<'_>,
    request: Request<RequestBody>,
    progress: &RequestProgress,
    signing: Option<&Signing<'_>>,
    fresh: bool,
) -> Result<(Sent, bool, bool), Failure> {
    let timeouts = hop.timeouts;
    let mut pending = request;
    loop {
        let pooled = if fresh { None } else { hop.pool.checkout(hop.key) };
        let (mut sender, reused) = match pooled {
            Some(s) => (s, true),
            None => {
                let s = hop.target.connect(timeouts.backend_connect).await.map_err(|e| match e {
                    ConnectError::Timeout => Failure::GatewayTimeout(format!("{}: {e}", hop.origin)),
                    e => Failure::BadGateway(format!("{}: {e}", hop.origin)),
                })?;
                (s, false)
            }
        };
        if let Some(s) = signing {
            let wanted = fresh
                || match s.kerberos.settings.send {
                    SendToken::EveryRequest => true,
                    SendToken::Always => !reused,
                    SendToken::On401 => !reused && !s.bodiless,
                };
            if wanted && !pending.headers().contains_key(header::AUTHORIZATION) {
                // Extended Protection: the ticket is bound to this TLS connection.
                let token = delegate::token(&s.kerberos, s.user, sender.binding.clone()).await?;
                pending.headers_mut().insert(header::AUTHORIZATION, token);
            }
        }
        let with_ticket = signing.is_some() && pending.headers().contains_key(header::AUTHORIZATION);
        let answer = tokio::select! {
            r = sender.try_send_request(pending) => r,
            _ = response_deadline(progress, timeouts.backend_response) => {
                return Err(Failure::GatewayTimeout(format!("{}: no response within {:?} of the request", hop.origin, timeouts.backend_response)));
            }
        };
        match answer {
            Ok(response) => return Ok((Sent { response, sender }, reused, with_ticket)),
            Err(mut e) => {
                // A pooled connection the backend had just closed: the request
                // never left, so it can go again on a fresh connection.
                if let Some(req) = e.take_message() {
                    if reused {
                        pending = req;
                        continue;
                    }
                }
                return Err(classify_send_error(hop.refused, progress, e.error()));
            }
        }
    }
}

fn classify_send_error(refused: &OnceLock<httpguard::Reject>, progress: &RequestProgress, e: &hyper::Error) -> Failure {
    if let Some(reject) = refused.get() {
        return Failure::BadRequest(reject.cause().into());
    }
    match progress.failure.get() {
        Some(BodyFailure::Refused) => Failure::BadRequest("request body framing refused".into()),
        Some(BodyFailure::ClientGone) => Failure::ClientGone,
        None => Failure::BadGateway(format!("backend exchange failed: {e}")),
    }
}

/// Resolves `timeout` after the request body has been sent in full: a backend
/// may take as long as it likes while the client is still streaming to it
/// (RPC_IN_DATA answers only when the channel ends).
async fn response_deadline(progress: &RequestProgress, timeout: Duration) {
    progress.finished().await;
    tokio::time::sleep(timeout).await;
}
