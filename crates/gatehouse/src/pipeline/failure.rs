//! The answers gatehouse gives itself when a request cannot be forwarded, and
//! the log line and access-record error that go with each.

use http::{Response, StatusCode};

use crate::conn::ConnInfo;
use crate::pages;
use crate::response_body::ResponseBody;
use crate::telemetry::AccessRecord;

/// Why a request got an answer from gatehouse instead of from the backend.
#[derive(Debug)]
pub enum Failure {
    BadRequest(String),
    NotFound,
    MethodNotAllowed,
    BadGateway(String),
    GatewayTimeout(String),
    ServiceUnavailable(String),
    /// Every backend of the site is down, ejected or drained (what each is).
    NoBackend(String),
    /// This client connection's own backend logon (a pass-through sign-in)
    /// is on a backend that cannot be reached: the connection closes, and the
    /// client signs in again on a new one, which may go to another backend.
    PinnedGone(String),
    /// No domain controller answered (Kerberos delegation).
    DomainUnreachable(String),
    /// Signed in, but the site is not open to the user (`cause`: the rule,
    /// for the logs only), or (`account`) the domain no longer accepts them.
    Forbidden {
        user: std::sync::Arc<str>,
        cause: String,
        account: bool,
    },
    /// The client left before the exchange ended; nobody reads the answer.
    ClientGone,
    /// HTTP/2 and a connection-bound scheme: the stream is reset.
    Http11Required(&'static str),
}

impl Failure {
    /// [`Failure::respond`], for the admin listener's status page: a user its
    /// rules refuse is told that it is the status page they may not see.
    pub fn respond_on_status_page(self, ctx: &ConnInfo, record: &mut AccessRecord) -> Response<ResponseBody> {
        match self {
            Failure::Forbidden { user, cause, account: false } => {
                let id = record.request_id().to_owned();
                let text = format!(
                    "You are signed in as {}. The status page is open to gatehouse's administrators only \
                     ([admin.sign_in] allow), and this account is not one of them.",
                    pages::escape(&user)
                );
                tracing::info!(request_id = %id, client = %ctx.peer, user = %user, denied = %cause, "access denied");
                record.set_denied(cause);
                pages::page(StatusCode::FORBIDDEN, &id, &text, false)
            }
            other => other.respond(ctx, record),
        }
    }

    pub fn respond(self, ctx: &ConnInfo, record: &mut AccessRecord) -> Response<ResponseBody> {
        let id = record.request_id().to_owned();
        let (status, text, cause, close) = match &self {
            // The causes are our own fixed words, never request data: safe to show.
            Failure::BadRequest(c) => {
                (StatusCode::BAD_REQUEST, format!("The request is malformed: {c}."), c.clone(), true)
            }
            Failure::NotFound => {
                (StatusCode::NOT_FOUND, "No site is published at this address.".into(), "no site matches".into(), false)
            }
            Failure::MethodNotAllowed => {
                (StatusCode::METHOD_NOT_ALLOWED, "This method is not served.".into(), "CONNECT refused".into(), false)
            }
            Failure::BadGateway(c) => (
                StatusCode::BAD_GATEWAY,
                "The published server could not be reached or answered badly.".into(),
                c.clone(),
                false,
            ),
            Failure::NoBackend(c) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "No server of this site is available right now: every one is down or taken out of service. Try again shortly.".into(),
                c.clone(),
                false,
            ),
            Failure::PinnedGone(c) => (
                StatusCode::BAD_GATEWAY,
                "The server this connection signed in to is not available; connect again to sign in to another.".into(),
                format!("the backend of this connection's own logon cannot be reached: {c}"),
                true,
            ),
            Failure::GatewayTimeout(c) => {
                (StatusCode::GATEWAY_TIMEOUT, "The published server did not answer in time.".into(), c.clone(), false)
            }
            Failure::DomainUnreachable(c) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "The domain is unreachable, so you cannot be signed in to this application right now; try again shortly."
                    .into(),
                c.clone(),
                false,
            ),
            Failure::ServiceUnavailable(c) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "The service is unavailable; try again shortly.".into(),
                c.clone(),
                true,
            ),
            // Answered by `handle` with a stream reset; an HTTP/1 request never
            // gets here, but a 505 would be the honest answer if it did.
            Failure::Http11Required(why) => (
                StatusCode::HTTP_VERSION_NOT_SUPPORTED,
                "Sign in over HTTP/1.1.".into(),
                (*why).into(),
                false,
            ),
            Failure::Forbidden { user, cause, account } => {
                // The user's own name, which they typed: escaped. No rule or
                // group name is shown: they are the site's business.
                let who = pages::escape(user);
                let text = if *account {
                    format!("You are signed in as {who}, but the domain no longer accepts this account. Sign in again, or ask your help desk.")
                } else {
                    format!("You are signed in as {who}. This site is not open to your account; if you need it, ask your help desk.")
                };
                tracing::info!(request_id = %id, client = %ctx.peer, user = %user, denied = %cause, "access denied");
                record.set_denied(cause.clone());
                return pages::page(StatusCode::FORBIDDEN, &id, &text, false);
            }
            Failure::ClientGone => {
                tracing::debug!(request_id = %id, client = %ctx.peer, "client closed the connection mid-request");
                record.set_error("client closed the connection");
                // 499 is nginx's "client closed request": only the log sees it.
                let mut r = pages::page(StatusCode::BAD_REQUEST, &id, "Client went away.", true);
                *r.status_mut() = StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST);
                return r;
            }
        };
        if matches!(self, Failure::NotFound) {
            // Scanners ask for `/` and `/healthz` all day: counted by the
            // caller and summed up in one line per period instead.
            tracing::debug!(request_id = %id, client = %ctx.peer, listener = %ctx.listener, status = status.as_u16(), cause = %cause, "request answered by gatehouse");
        } else {
            tracing::warn!(request_id = %id, client = %ctx.peer, listener = %ctx.listener, status = status.as_u16(), cause = %cause, "request answered by gatehouse");
        }
        record.set_error(cause);
        let mut page = pages::page(status, &id, &text, close);
        if matches!(self, Failure::NoBackend(_)) {
            // Health checks bring a backend back within seconds.
            page.headers_mut().insert(http::header::RETRY_AFTER, http::HeaderValue::from_static("10"));
        }
        page
    }
}
