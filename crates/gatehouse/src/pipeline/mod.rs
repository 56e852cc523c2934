//! One request, through named stages, in the order it travels:
//!
//! 1. [`routing::route`]: the site, as the backend will read the target
//!    (gatehouse's own sign-in pages, [`signin`], are answered before it);
//! 2. [`authenticate::authenticate`]: who the client is (or the next leg of
//!    its handshake, answered at once);
//! 3. [`authorize::authorize`]: whether they may use the site;
//! 4. [`upgrade::websocket_upgrade`]: whether a protocol switch goes on;
//! 5. [`upstream::prepare`]: the backend request and the identity it goes as;
//! 6. [`balance::place`]: which backends of the site's farm it may go to, and
//!    the session that ties it to one;
//! 7. [`send::send`]: a pooled connection on the backend the farm gives (the
//!    next one if it cannot be reached), a Kerberos ticket where needed
//!    ([`delegate`]), the request, and the retry rules;
//! 8. [`response::filter`] (or [`upgrade::switch`]): the answer as the client
//!    gets it, after [`balance::settle`] told the farm what it learnt.
//!
//! [`admit`] runs stages 2 and 3 alone, for the admin listener's status page
//! behind `[admin.sign_in]`.
//!
//! Anything that goes wrong is a [`failure::Failure`], which becomes a page with
//! a request id and a log line naming the cause. Each stage takes only what it
//! needs; [`handle`] alone knows the connection and the process.

mod admit;
mod authenticate;
mod authorize;
mod balance;
mod delegate;
mod failure;
mod headers;
mod response;
mod routing;
mod send;
mod signin;
mod upgrade;
mod upstream;

use std::sync::Arc;

use http::{Request, Response, StatusCode, Version};
use hyper::body::Incoming;

use crate::connection::Connection;
use crate::generation::Generation;
use crate::response_body::ResponseBody;
use crate::telemetry::AccessRecord;
use authenticate::SignedIn;
use failure::Failure;

pub use admit::{admit, Gate};

/// The hyper service: every problem becomes a response, except the one that
/// HTTP/2 says with a stream reset (HTTP_1_1_REQUIRED), which HTTP/1 never sees.
pub async fn handle(mut req: Request<Incoming>, conn: Arc<Connection>) -> Result<Response<ResponseBody>, h2::Error> {
    let generation = conn.shared.current();
    let in_flight = conn.activity.begin_request(generation.config.timeouts.stream_idle);
    let log = &conn.shared.access;
    let mut record = AccessRecord::new(log, &conn.info, log.next_id(), req.method().as_str(), req.uri().path());
    // The framing guard below holds this connection's next bytes until it
    // hears how an upgrade request was answered; it goes opaque only on a 101.
    let upgrade_asked = httpguard::framing::is_upgrade_request(
        req.version() == Version::HTTP_11,
        req.headers().iter().map(|(n, v)| (n.as_str().as_bytes(), v.as_bytes())),
    );
    // hyper offers an upgrade on every HTTP/1.1 request with `Upgrade:`; if it
    // is not taken here, hyper hands the connection to it when the connection
    // ends, which would skip the close that writes a pending refusal.
    let mut on_upgrade = req.extensions_mut().remove::<hyper::upgrade::OnUpgrade>();
    // Boxed: the stages' state is large, and hyper moves the future it is
    // handed; a pointer moves cheaper than kilobytes of state.
    let answer = Box::pin(run(req, &conn, &generation, &mut record, upgrade_asked, &mut on_upgrade)).await;
    if upgrade_asked {
        let switched = matches!(&answer, Ok(r) if r.status() == StatusCode::SWITCHING_PROTOCOLS);
        conn.activity.upgrade_answered(switched);
    }
    if let Some(unswitched) = on_upgrade {
        crate::connection::close_when_handed_back(&conn, unswitched);
    }
    let mut resp = match answer {
        Ok(resp) => resp,
        Err(Failure::Http11Required(why)) => {
            tracing::info!(request_id = %record.request_id(), client = %conn.info.peer, why, "HTTP/2 stream reset with HTTP_1_1_REQUIRED");
            record.set_error(format!("HTTP_1_1_REQUIRED: {why}"));
            record.set_status(0);
            return Err(h2::Error::from(h2::Reason::HTTP_1_1_REQUIRED));
        }
        Err(failure) => {
            if matches!(failure, Failure::NotFound) {
                conn.shared.no_site.count();
            }
            failure.respond(&conn.info, &mut record)
        }
    };
    record.set_status(resp.status().as_u16());
    resp.body_mut().finish_with(in_flight, record);
    Ok(resp)
}

/// The stages, in order.
async fn run(
    mut req: Request<Incoming>,
    conn: &Arc<Connection>,
    generation: &Generation,
    record: &mut AccessRecord,
    upgrade_asked: bool,
    on_upgrade: &mut Option<hyper::upgrade::OnUpgrade>,
) -> Result<Response<ResponseBody>, Failure> {
    let config = &generation.config;
    // gatehouse's own pages, on every published host, before any site.
    // The sign-in pages' state is boxed: it would otherwise size every
    // request's future (measured: 9,560 bytes before, 6,696 after, with the
    // backend connect and the ticket boxed in `send`).
    if signin::reserved(&req) {
        return Box::pin(signin::serve(req, conn, generation, record)).await;
    }
    let routed = routing::route(&req, &conn.info.listener, generation)?;
    let site = &routed.site;
    record.set_site(&site.name);
    if signin::is_logoff(&req, &site.name, generation) {
        return Box::pin(signin::log_off(req, conn, generation, record)).await;
    }
    if let Some(idle) = site.stream_idle {
        conn.activity.set_stream_idle(idle);
    }

    let target = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let host = routed.host_name.as_deref();
    let asked = crate::auth::Asked { headers: req.headers(), method: req.method(), target, host };
    let signins = &conn.shared.meters.signins;
    let (user, final_token) =
        match authenticate::authenticate(asked, &generation.auth, &conn.info, &conn.auth, site, record, signins).await?
        {
            SignedIn::Anonymous => (None, None),
            SignedIn::User(user, token) => (Some(user), token),
            SignedIn::NotYet(resp, reason) => {
                let limits = (config.limits.handshake_body, config.timeouts.header_read);
                return Ok(authenticate::answer(req, *resp, reason, &conn.info, limits, record).await);
            }
        };
    match authorize::authorize(site, user.as_deref(), &generation.access, &conn.auth).await {
        Ok(()) => {}
        // A refusal keeps the connection (and its logon, for the sites the
        // user may use) when the body is small enough to read past.
        Err(refused @ Failure::Forbidden { .. }) => {
            signins.refused(user.as_deref().map_or("-", |u| u.scheme.name()), crate::metrics::Cause::DeniedByRule);
            let resp = refused.respond(&conn.info, record);
            let limits = (config.limits.handshake_body, config.timeouts.header_read);
            let reason = crate::auth::Reason::Handshake;
            return Ok(authenticate::answer(req, resp, reason, &conn.info, limits, record).await);
        }
        Err(other) => return Err(other),
    }
    signin::strip_own_cookies(req.headers_mut());

    // Only now, authenticated and authorized like any other request, may it
    // open a tunnel.
    let switch_to = match upgrade_asked {
        true => upgrade::websocket_upgrade(&req, site)?,
        false => None,
    };
    let admitted = Admitted { routed, user, final_token, switch_to };
    forward(req, admitted, conn, generation, record, on_upgrade).await
}

/// A request that passed the first stages: where it goes, who the edge signed
/// in (and its last handshake token for the client), and the protocol switch
/// it may make.
struct Admitted {
    routed: routing::Routed,
    user: Option<Arc<crate::auth::User>>,
    final_token: Option<http::HeaderValue>,
    switch_to: Option<http::HeaderValue>,
}

/// Prepare, delegate and send, then filter the response (or switch protocols).
async fn forward(
    req: Request<Incoming>,
    admitted: Admitted,
    conn: &Arc<Connection>,
    generation: &Generation,
    record: &mut AccessRecord,
    on_upgrade: &mut Option<hyper::upgrade::OnUpgrade>,
) -> Result<Response<ResponseBody>, Failure> {
    let Admitted { routed, user, final_token, switch_to } = admitted;
    let routed = &routed;
    let (config, site, user) = (&generation.config, &routed.site, user.as_deref());
    let prepared =
        upstream::prepare(req, routed, user, switch_to.as_ref(), &conn.info, &conn.pinned, record.request_id())?;
    record.count_request_body(prepared.progress.clone());
    let realm = config.domain.as_ref().map_or("", |d| d.realm.as_str());
    let signing = match (site.kcd(), user) {
        (Some(settings), Some(user)) => Some(send::Signing {
            kerberos: delegate::Kerberos {
                delegator: generation.delegator.as_ref(),
                realm,
                settings,
                problems: &conn.shared.meters.problems,
                site: &site.name,
            },
            user,
            bodiless: prepared.bodiless,
        }),
        _ => None,
    };
    let farm = &routed.farm;
    let client = balance::Client {
        peer: conn.info.peer.ip(),
        tls: conn.info.tls,
        pinned: conn.pinned.load(std::sync::atomic::Ordering::Relaxed),
        signed_in: signing.is_some(),
        pins: &conn.pins,
    };
    let mut request = prepared.request;
    let mut placement = balance::place(farm, &mut request, &client, config.timeouts.header_read).await?;
    let session = placement.session.take();
    let pool = &conn.shared.pools[conn.info.worker];
    let hop = send::Hop {
        farm,
        identity: &prepared.identity,
        session: session.as_ref(),
        pool,
        timeouts: &config.timeouts,
        refused: &conn.activity.rejected,
        meter: &conn.shared.meters.backends,
    };
    let progress = prepared.progress.clone();
    let mut sent = send::send(&hop, &mut placement, request, &progress, signing.as_ref(), prepared.replay).await?;
    let member = &farm.members[sent.member];
    record.set_backend(&member.state.origin);

    if sent.response.status() == StatusCode::SWITCHING_PROTOCOLS {
        let (Some(token), Some(client_side)) = (switch_to, on_upgrade.take()) else {
            return Err(Failure::BadGateway("backend switched protocols unasked".into()));
        };
        let stream_idle = site.stream_idle.unwrap_or(config.timeouts.stream_idle);
        let idle = config.timeouts.keepalive_idle;
        return upgrade::switch(sent.response, token, client_side, &conn.activity, stream_idle, idle, sent.lease);
    }
    balance::settle(farm, &placement, sent.member, sent.response.headers_mut(), &client);
    let back = response::GiveBack { pool, key: sent.key, info: &conn.info, pinned: &conn.pinned };
    let edge = response::Edge { signed_in: user.is_some(), delegated: signing.is_some(), final_token };
    let response = response::filter(sent.response, sent.sender, back, edge, sent.lease);
    if conn.pinned.load(std::sync::atomic::Ordering::Relaxed) {
        // Its own logon may be on this backend now: its next requests follow.
        conn.pins.set(&farm.family, member.id);
    } else if signing.is_some() {
        conn.pins.set_last(&farm.family, member.id);
    }
    Ok(response)
}
