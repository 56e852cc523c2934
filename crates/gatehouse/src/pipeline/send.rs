//! The send stage: a pooled backend connection for the request's identity (or
//! a new one) on the backend the farm gives, a Kerberos ticket where the
//! site's `send_token` wants one, the request, and the response head; with
//! the retries there are: the next backend when one cannot be reached (before
//! any byte of the request went anywhere), a pooled connection the backend
//! had just closed, and one new sign-in when a delegating site's backend
//! answers 401.

use std::sync::OnceLock;
use std::time::Duration;

use http::header::{self, HeaderMap};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use hyper::body::Incoming;

use super::delegate::{self, Kerberos};
use super::failure::Failure;
use crate::auth::User;
use crate::backend::{ConnectError, Identity, Pool, PoolKey, Sender};
use crate::config::{SendToken, Timeouts};
use crate::farm::{Farm, Lease, Placement, SessionKey};
use crate::request_body::{BodyFailure, RequestBody, RequestProgress};

/// The backend end of one request.
pub struct Hop<'a> {
    pub farm: &'a Farm,
    /// Whose backend connections may carry it.
    pub identity: &'a Identity,
    /// The session it belongs to, held on its backend while it is in flight.
    pub session: Option<&'a SessionKey>,
    /// This worker's pool.
    pub pool: &'a Pool,
    pub timeouts: &'a Timeouts,
    /// The framing guard's refusal on the client connection, if any: a body
    /// that failed because of it is the client's fault.
    pub refused: &'a OnceLock<httpguard::Reject>,
    /// Counts connect failures and response times, by the farm's site.
    pub meter: &'a crate::metrics::Backends,
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
    /// The backend that answered: its index in the farm, and the pool key
    /// its connection goes back under.
    pub member: usize,
    pub key: PoolKey,
    /// The request counted in flight there until its response ends.
    pub lease: Option<Lease>,
}

/// Which backend an exchange may use.
enum To<'p> {
    /// What the farm gives, trying the next one when a backend cannot be reached.
    Placed(&'p mut Placement),
    /// This one alone (a sign-in again, on the backend that asked).
    Member(usize),
}

/// Sends `request`; on a delegating site whose backend answers 401 to a ticket
/// it should have taken (an authenticated connection that no longer is, as when
/// an IIS application pool recycles, or `on-401`'s first ask), signs in once
/// more on a fresh connection to the same backend with `replay`, rather than
/// relay the 401. A 401 that remains is the backend refusing gatehouse's
/// ticket: 502, with the SPN.
pub async fn send(
    hop: &Hop<'_>,
    placement: &mut Placement,
    request: Request<RequestBody>,
    progress: &std::sync::Arc<RequestProgress>,
    signing: Option<&Signing<'_>>,
    replay: Option<Replay>,
) -> Result<Sent, Failure> {
    let started = std::time::Instant::now();
    let (mut sent, reused, with_ticket) =
        exchange(hop, To::Placed(placement), request, progress, signing, false).await?;
    hop.meter.answered(&hop.farm.site, started.elapsed());
    let Some(signing) = signing else { return Ok(sent) };
    if sent.response.status() != StatusCode::UNAUTHORIZED {
        return Ok(sent);
    }
    let member = sent.member;
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
        sent = exchange(hop, To::Member(member), request, progress, Some(&fresh), true).await?.0;
    }
    if sent.response.status() == StatusCode::UNAUTHORIZED {
        let m = &hop.farm.members[sent.member];
        return Err(Failure::BadGateway(format!(
            "the backend {} rejected the Kerberos ticket for {} ({}): 401; check the backend's keytab and SPN",
            m.backend.origin,
            signing.user.name,
            m.spn.as_deref().unwrap_or(&signing.kerberos.settings.spn),
        )));
    }
    Ok(sent)
}

/// Sends `request` on a pooled connection for the hop's identity on a backend
/// of `to` (or a new one; always a new one, with a ticket, when `fresh`) and
/// waits for the response head. A backend that cannot be reached hands the
/// request, untouched, to the next one the farm gives (never a pinned
/// request's). With `signing` it adds `Authorization: Negotiate` where
/// `send_token` wants it: on a new connection (`always`), on every request
/// (`every-request`), or on a new connection only for requests with a body
/// (`on-401`: the others wait to be asked). Returns the response, whether the
/// connection was reused, and whether a ticket went with the request.
async fn exchange(
    hop: &Hop<'_>,
    mut to: To<'_>,
    request: Request<RequestBody>,
    progress: &RequestProgress,
    signing: Option<&Signing<'_>>,
    fresh: bool,
) -> Result<(Sent, bool, bool), Failure> {
    let (farm, timeouts) = (hop.farm, hop.timeouts);
    let mut pending = request;
    // Host was left for the backend's own address (an HTTP/1.0 client sent none).
    let own_host = !pending.headers().contains_key(header::HOST);
    let mut member = match &mut to {
        To::Placed(p) => farm.next(p),
        To::Member(i) => Some(*i),
    };
    // The last backend's failure, and in words.
    let mut failed: Option<(Failure, String)> = None;
    loop {
        let Some(i) = member else {
            return Err(match (failed, &to) {
                (Some((_, why)), To::Placed(p)) if p.pinned => Failure::PinnedGone(why),
                // Every backend of a farm tried, none reachable: the site is down.
                (Some((_, why)), To::Placed(_)) if farm.members.len() > 1 => {
                    Failure::NoBackend(format!("{}; the last: {why}", farm.unavailable()))
                }
                (Some((f, _)), _) => f,
                (None, _) => Failure::NoBackend(farm.unavailable()),
            });
        };
        let m = &farm.members[i];
        let key = PoolKey { backend: m.target.pool_id.clone(), identity: hop.identity.clone() };
        let pooled = if fresh { None } else { hop.pool.checkout(&key) };
        let (mut sender, reused) = match pooled {
            Some(s) => (s, true),
            // Boxed, as the ticket below: both are rare next to a pooled
            // request, and their state (a TLS handshake, a ticket request)
            // would otherwise make every request's future kilobytes larger.
            None => match Box::pin(m.target.connect(timeouts.backend_connect)).await {
                Ok(s) => {
                    farm.connected(i);
                    (s, false)
                }
                Err(e) => {
                    let why = format!("{}: {e}", m.backend.origin);
                    farm.connect_failed(i, &e.to_string());
                    hop.meter.connect_failed(&farm.site);
                    member = next_after_failure(farm, &mut to, i, &e.to_string());
                    let failure = match e {
                        ConnectError::Timeout => Failure::GatewayTimeout(why.clone()),
                        _ => Failure::BadGateway(why.clone()),
                    };
                    failed = Some((failure, why));
                    continue;
                }
            },
        };
        if own_host {
            let host = super::headers::value(&format!("{}:{}", m.backend.host, m.backend.port));
            pending.headers_mut().insert(header::HOST, host);
        }
        if let Some(s) = signing {
            let wanted = fresh
                || match s.kerberos.settings.send {
                    SendToken::EveryRequest => true,
                    SendToken::Always => !reused,
                    SendToken::On401 => !reused && !s.bodiless,
                };
            if wanted && !pending.headers().contains_key(header::AUTHORIZATION) {
                let spn = m.spn.as_deref().unwrap_or(&s.kerberos.settings.spn);
                // Extended Protection: the ticket is bound to this TLS connection.
                let token = Box::pin(delegate::token(&s.kerberos, s.user, spn, sender.binding.clone())).await?;
                pending.headers_mut().insert(header::AUTHORIZATION, token);
            }
        }
        let with_ticket = signing.is_some() && pending.headers().contains_key(header::AUTHORIZATION);
        let lease = farm.lease(i, hop.session);
        let answer = tokio::select! {
            r = sender.try_send_request(pending) => r,
            _ = response_deadline(progress, timeouts.backend_response) => {
                return Err(Failure::GatewayTimeout(format!("{}: no response within {:?} of the request", m.backend.origin, timeouts.backend_response)));
            }
        };
        match answer {
            Ok(response) => {
                farm.answered(i, response.status().as_u16());
                return Ok((Sent { response, sender, member: i, key, lease }, reused, with_ticket));
            }
            Err(mut e) => {
                let Some(req) = e.take_message() else {
                    return Err(classify_send_error(hop.refused, progress, e.error()));
                };
                // The request never left: a pooled connection the backend
                // had just closed goes again on a fresh one to the same
                // backend; a fresh connection that closed at once is a
                // backend that cannot take it.
                pending = req;
                drop(lease);
                if own_host {
                    pending.headers_mut().remove(header::HOST);
                }
                if !reused {
                    let why = format!("closed the connection before the request: {}", e.error());
                    member = next_after_failure(farm, &mut to, i, &why);
                    let why = format!("{}: {why}", m.backend.origin);
                    failed = Some((Failure::BadGateway(why.clone()), why));
                }
            }
        }
    }
}

/// After backend `i` could not be reached: the next backend to try, if the
/// request may move (not a pinned one, not a sign-in again), with a log line.
fn next_after_failure(farm: &Farm, to: &mut To<'_>, i: usize, why: &str) -> Option<usize> {
    let To::Placed(p) = to else { return None };
    let next = farm.next(p);
    let origin = &farm.members[i].backend.origin;
    match next.map(|n| &farm.members[n].backend.origin) {
        Some(then) => {
            tracing::warn!(site = %farm.site, backend = %origin, error = %why, next = %then, "cannot reach the backend; the request goes to the next one")
        }
        None => {
            tracing::warn!(site = %farm.site, backend = %origin, error = %why, "cannot reach the backend, and no other can take the request")
        }
    }
    next
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
