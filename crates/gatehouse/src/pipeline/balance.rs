//! The balance stage: which backends of the site's farm a request may go to,
//! and what ties it to one: the client connection's own pass-through logon,
//! an Outlook Anywhere session (the virtual connection cookie in its
//! channel's first PDU, read ahead here), a MAPI session (its `MapiContext`
//! cookie), the client's address, or the signed affinity cookie. After the
//! answer, what the farm learns from it (a new MAPI session, the cookie to set).

use std::net::IpAddr;
use std::time::Duration;

use http::header::{HeaderMap, HeaderValue, SET_COOKIE};
use http::Request;

use super::failure::Failure;
use crate::config::Affinity;
use crate::farm::{self, Farm, Pins, Placement, SessionKey, Unavailable, Wants};
use crate::request_body::RequestBody;

/// What the client connection says about where its requests go.
pub struct Client<'a> {
    pub peer: IpAddr,
    pub tls: bool,
    /// The connection holds a pass-through logon (see `Identity::Connection`).
    pub pinned: bool,
    /// gatehouse signs the request's user in to the backend (its backend
    /// connections carry that logon): the connection's last backend is preferred.
    pub signed_in: bool,
    pub pins: &'a Pins,
}

/// Where `request` may go. `wait`: how long an Outlook Anywhere channel's
/// first PDU may take to follow its head.
pub async fn place(
    farm: &Farm,
    request: &mut Request<RequestBody>,
    client: &Client<'_>,
    wait: Duration,
) -> Result<Placement, Failure> {
    let cookie = match &farm.cookie {
        None => None,
        Some(signer) => {
            let headers = request.headers_mut();
            let named = farm::cookie_values(headers, &signer.name).find_map(|v| signer.verify(v));
            // Ours, forged or not: the backend has no use for it.
            farm::remove_cookie(headers, &signer.name);
            named
        }
    };
    let pinned_to = if client.pinned { client.pins.get(&farm.family) } else { None };
    // A farm of one has nowhere else to send a session.
    let session = match (pinned_to, farm.members.len()) {
        (None, 2..) => session(farm, request, client, wait).await,
        _ => None,
    };
    let prefer = if client.signed_in { client.pins.last(&farm.family) } else { None };
    farm.place(Wants { pinned_to, session, cookie, prefer }).map_err(|u| match u {
        Unavailable::NoBackend(why) => Failure::NoBackend(why),
        Unavailable::PinnedGone(why) => Failure::PinnedGone(why),
    })
}

/// The session a request belongs to, if any.
async fn session(
    farm: &Farm,
    request: &mut Request<RequestBody>,
    client: &Client<'_>,
    wait: Duration,
) -> Option<SessionKey> {
    let method = request.method().clone();
    if farm::rpc_channel(&method).is_some() && !http_body::Body::is_end_stream(request.body()) {
        // An echo request (a body of at most 16 bytes) is no channel.
        let body = request.body_mut();
        let read = tokio::time::timeout(wait, async {
            let mut need = 20;
            loop {
                let have = body.peek(need).await;
                match farm::rpc_session(&method, have) {
                    Err(rpch::Error::Incomplete { need: more }) if have.len() >= need && more > need => need = more,
                    other => return other,
                }
            }
        })
        .await;
        match read {
            Ok(Ok(cookie)) => return Some(SessionKey::Rpc(cookie)),
            Ok(Err(why)) => {
                tracing::debug!(site = %farm.site, method = %method, why = %why, "no Outlook Anywhere session in the body")
            }
            Err(_) => {
                tracing::debug!(site = %farm.site, method = %method, "the channel's first PDU did not come in time")
            }
        }
    }
    if let Some(context) = farm::mapi_context(request.headers()) {
        return Some(SessionKey::Mapi(context));
    }
    (farm.affinity == Affinity::Source).then_some(SessionKey::Source(client.peer))
}

/// What the farm learns from backend `member`'s answer: a MAPI session it
/// started (its `MapiContext`) stays there, and a cookie-affinity client is
/// told (again) which backend it is on.
pub fn settle(farm: &Farm, placement: &Placement, member: usize, headers: &mut HeaderMap, client: &Client<'_>) {
    let Some(m) = farm.members.get(member) else { return };
    if farm.members.len() > 1 {
        if let Some(context) = farm::mapi_context_set(headers) {
            farm.sessions.bind(&SessionKey::Mapi(context), m.id);
        }
    }
    if let Some(signer) = &farm.cookie {
        if placement.cookie != Some(m.id) {
            if let Ok(v) = HeaderValue::from_str(&signer.set_cookie(m.id, client.tls)) {
                headers.append(SET_COOKIE, v);
            }
        }
    }
}
