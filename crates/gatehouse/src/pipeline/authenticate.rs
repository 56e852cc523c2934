//! The authenticate stage: who the client is, by the scheme the site offers it
//! (`auth::Authenticator` decides; this stage turns its verdict into the next
//! step or an answer).

use std::sync::Arc;
use std::time::Duration;

use http::header::{self, HeaderValue};
use http::{Request, Response};
use hyper::body::Incoming;

use super::failure::Failure;
use crate::auth::{Asked, Authenticator, ConnAuth, Reason, User, Verdict};
use crate::config::Site;
use crate::conn::ConnInfo;
use crate::metrics::{Cause, SignIns};
use crate::response_body::ResponseBody;
use crate::telemetry::AccessRecord;

/// The outcome: go on (as this user, or anonymously on a site without
/// `auth`), or answer now with this (a challenge, a refusal), see [`answer`].
pub enum SignedIn {
    Anonymous,
    User(Arc<User>, Option<HeaderValue>),
    NotYet(Box<Response<ResponseBody>>, Reason),
}

/// `asked.host`: the host the request was sent to, without its port
/// (Kerberos tickets are accepted only for that name).
pub async fn authenticate(
    asked: Asked<'_>,
    auth: &Authenticator,
    info: &ConnInfo,
    state: &ConnAuth,
    site: &Site,
    record: &mut AccessRecord,
    signins: &SignIns,
) -> Result<SignedIn, Failure> {
    if site.auth.is_empty() {
        return Ok(SignedIn::Anonymous);
    }
    // Credentials in this request: a handshake's last leg or Basic. Without
    // them a request rides on its connection's or cookie's sign-in, which
    // was counted when it happened.
    let sent = sent_scheme(asked.headers);
    match auth.check(asked, info, state, site).await {
        Verdict::Pass(user, token) => {
            if sent.is_some() {
                signins.passed(user.scheme.name());
            }
            record.set_user(&user.name, user.scheme.name());
            Ok(SignedIn::User(user, token))
        }
        Verdict::Answer(resp, reason) => {
            let scheme = sent.unwrap_or("Forms");
            match &reason {
                Reason::Handshake => {}
                Reason::Refused(_, cause) => signins.refused(scheme, *cause),
                Reason::Unavailable(_) => signins.refused(scheme, Cause::Unavailable),
            }
            Ok(SignedIn::NotYet(resp, reason))
        }
        Verdict::Http11Required(why) => Err(Failure::Http11Required(why)),
    }
}

/// The scheme of the request's `Authorization`, among the ones gatehouse
/// knows (a bounded label), if it has one.
fn sent_scheme(headers: &http::HeaderMap) -> Option<&'static str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let word = value.split(' ').next()?;
    ["NTLM", "Negotiate", "Basic"].into_iter().find(|s| s.eq_ignore_ascii_case(word))
}

/// Answers a request that did not pass authentication. The body of a handshake
/// leg is read and thrown away, up to `limits.handshake_body`, so that the
/// connection (and with it the NTLM handshake) stays usable; a larger body, or
/// one still unsent behind `Expect: 100-continue`, closes the connection after
/// the answer.
pub async fn answer(
    req: Request<Incoming>,
    mut resp: Response<ResponseBody>,
    reason: Reason,
    info: &ConnInfo,
    limits: (usize, Duration),
    record: &mut AccessRecord,
) -> Response<ResponseBody> {
    let id = record.request_id().to_owned();
    match reason {
        Reason::Handshake => {}
        Reason::Refused(why, _) => {
            tracing::warn!(request_id = %id, client = %info.peer, listener = %info.listener, cause = %why, "authentication refused");
            record.set_error(why);
        }
        Reason::Unavailable(why) => {
            tracing::error!(request_id = %id, client = %info.peer, listener = %info.listener, cause = %why, "authentication unavailable");
            record.set_error(why);
        }
    }
    let expects_continue =
        req.headers().get(header::EXPECT).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let keep = !expects_continue && drain(req.into_body(), limits.0, limits.1).await;
    if !keep {
        resp.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}

/// Reads and discards a body; true if it ended within `limit` bytes and `time`.
async fn drain(mut body: Incoming, limit: usize, time: Duration) -> bool {
    use http_body_util::BodyExt;
    let read = async {
        let mut seen = 0usize;
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else { return false };
            seen += frame.data_ref().map_or(0, |d| d.len());
            if seen > limit {
                return false;
            }
        }
        true
    };
    tokio::time::timeout(time, read).await.unwrap_or(false)
}
