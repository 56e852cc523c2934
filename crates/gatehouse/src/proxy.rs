//! One request, top to bottom: check the target, find the site, build the
//! backend request, send it on a pooled connection for this identity, stream the
//! answer back.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

use crate::auth::{self, Reason, Verdict};
use crate::backend::{Identity, PoolKey};
use crate::body::{BodyFailure, RequestBody, RequestProgress, ResponseBody};
use crate::config::SendToken;
use crate::connection::{Activity, ConnContext};
use crate::pages;
use crate::route;
use crate::server::Generation;
use crate::telemetry::AccessRecord;

/// The hyper service: every problem becomes a response, except the one that
/// HTTP/2 says with a stream reset (HTTP_1_1_REQUIRED), which HTTP/1 never sees.
pub async fn handle(mut req: Request<Incoming>, ctx: Arc<ConnContext>) -> Result<Response<ResponseBody>, h2::Error> {
    let generation = ctx.shared.current();
    let in_flight = ctx.activity.begin_request(generation.config.timeouts.stream_idle);
    let mut record = AccessRecord::new(&ctx, ctx.shared.ids.next(), req.method().as_str(), req.uri().path());
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
    let answer = forward(req, &ctx, &generation, &mut record, upgrade_asked, &mut on_upgrade).await;
    if upgrade_asked {
        let switched = matches!(&answer, Ok(r) if r.status() == StatusCode::SWITCHING_PROTOCOLS);
        ctx.activity.upgrade_answered(switched);
    }
    if let Some(unswitched) = on_upgrade {
        crate::connection::close_when_handed_back(&ctx, unswitched);
    }
    let mut resp = match answer {
        Ok(resp) => resp,
        Err(Failure::Http11Required(why)) => {
            tracing::info!(request_id = %record.request_id(), client = %ctx.peer, why, "HTTP/2 stream reset with HTTP_1_1_REQUIRED");
            record.set_error(format!("HTTP_1_1_REQUIRED: {why}"));
            record.set_status(0);
            return Err(h2::Error::from(h2::Reason::HTTP_1_1_REQUIRED));
        }
        Err(failure) => failure.respond(&ctx, &mut record),
    };
    record.set_status(resp.status().as_u16());
    resp.body_mut().finish_with(in_flight, record);
    Ok(resp)
}

/// Why a request got an answer from gatehouse instead of from the backend.
#[derive(Debug)]
enum Failure {
    BadRequest(String),
    NotFound,
    MethodNotAllowed,
    BadGateway(String),
    GatewayTimeout(String),
    ServiceUnavailable(String),
    /// No domain controller answered (Kerberos delegation).
    DomainUnreachable(String),
    /// The client left before the exchange ended; nobody reads the answer.
    ClientGone,
    /// HTTP/2 and a connection-bound scheme: the stream is reset.
    Http11Required(&'static str),
}

impl Failure {
    fn respond(self, ctx: &ConnContext, record: &mut AccessRecord) -> Response<ResponseBody> {
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
            Failure::ClientGone => {
                tracing::debug!(request_id = %id, client = %ctx.peer, "client closed the connection mid-request");
                record.set_error("client closed the connection");
                // 499 is nginx's "client closed request": only the log sees it.
                let mut r = pages::page(StatusCode::BAD_REQUEST, &id, "Client went away.", true);
                *r.status_mut() = StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST);
                return r;
            }
        };
        tracing::warn!(request_id = %id, client = %ctx.peer, listener = %ctx.listener, status = status.as_u16(), cause = %cause, "request answered by gatehouse");
        record.set_error(cause);
        pages::page(status, &id, &text, close)
    }
}

async fn forward(
    req: Request<Incoming>,
    ctx: &Arc<ConnContext>,
    generation: &Arc<Generation>,
    record: &mut AccessRecord,
    upgrade_asked: bool,
    on_upgrade: &mut Option<hyper::upgrade::OnUpgrade>,
) -> Result<Response<ResponseBody>, Failure> {
    if req.method() == Method::CONNECT {
        return Err(Failure::MethodNotAllowed);
    }
    let host = request_host(&req)?;
    let path = match req.uri().path() {
        // `OPTIONS *` asks about the server as a whole: the site for `/` answers.
        "*" if req.method() == Method::OPTIONS => b"/".to_vec(),
        "*" => return Err(Failure::BadRequest("the target * is for OPTIONS only".into())),
        p => httpguard::routing_path(p.as_bytes()).map_err(|e| Failure::BadRequest(e.cause().into()))?,
    };
    let site = generation
        .routes
        .find(&ctx.listener, host.as_deref().map(route::host_name).as_deref(), &path)
        .ok_or(Failure::NotFound)?
        .clone();
    record.set_site(&site.name);
    if let Some(idle) = site.stream_idle {
        ctx.activity.set_stream_idle(idle);
    }
    let target = generation
        .backends
        .get(&site.backend)
        .ok_or_else(|| Failure::ServiceUnavailable("backend missing from this configuration".into()))?
        .clone();

    // Authentication, when the site asks for it: the connection's identity, or
    // the next leg of its handshake.
    let mut final_token = None;
    let user = if site.auth.is_empty() {
        None
    } else {
        match auth::check(&req, ctx, generation, &site).await {
            Verdict::Pass(user, token) => {
                record.set_user(&user);
                final_token = token;
                Some(user)
            }
            Verdict::Answer(resp, reason) => return Ok(answer_auth(req, *resp, reason, ctx, generation, record).await),
            Verdict::Http11Required(why) => return Err(Failure::Http11Required(why)),
        }
    };

    // Kerberos Constrained Delegation: `exchange` puts a ticket for the backend,
    // in the user's name, on the requests that need one.
    let bodiless = http_body::Body::is_end_stream(req.body());
    let kcd = match (&site.delegation, &user) {
        (Some(d), Some(u)) => Some((d, u.clone())),
        _ => None,
    };

    // Only now, authenticated like any other request, may it open a tunnel.
    let client_upgrade = match upgrade_asked {
        true => websocket_upgrade(&req, &site)?,
        false => None,
    };
    let (parts, body) = req.into_parts();
    let progress = RequestProgress::new();
    record.count_request_body(progress.clone());

    let mut headers = parts.headers;
    // For an absolute-form target the authority is the host (RFC 9112 3.2.2);
    // a different Host header is ignored.
    let original_host = match &host {
        Some(h) => {
            Some(HeaderValue::from_str(h).map_err(|_| Failure::BadRequest("Host is not a valid header value".into()))?)
        }
        None => None,
    };
    strip_hop_by_hop(&mut headers);
    // hyper answers `Expect: 100-continue` itself when the body is first read.
    headers.remove(header::EXPECT);
    // h2c is never forwarded: a backend that took it would serve HTTP/2
    // requests that gatehouse never sees.
    headers.remove("http2-settings");
    remove_lookalikes_of_our_headers(&mut headers);
    // The length gatehouse framed the body by, in plain decimal: `010` or
    // `5, 5` could mean something else to the backend.
    if headers.contains_key(header::CONTENT_LENGTH) {
        match http_body::Body::size_hint(&body).exact() {
            Some(n) => {
                headers.insert(header::CONTENT_LENGTH, HeaderValue::from(n));
            }
            None => {
                headers.remove(header::CONTENT_LENGTH);
            }
        }
    }
    if let Some(name) = &site.identity_header {
        remove_lookalikes(&mut headers, name);
        if let Some(user) = &user {
            headers.insert(name.clone(), user.header.clone());
        }
    }
    // The edge consumed the client's credentials; they mean nothing to the
    // backend, unless the site forwards Basic (the password, already checked).
    let forwards = site.forward_basic && user.as_ref().is_some_and(|u| u.scheme == crate::config::Scheme::Basic);
    if user.is_some() && !forwards {
        headers.remove(header::AUTHORIZATION);
    }
    for name in OURS {
        headers.remove(name);
    }
    // The edge trusts nothing the internet says about earlier hops.
    headers.insert("x-forwarded-for", value(&ctx.peer.ip().to_string()));
    headers.insert("x-forwarded-proto", HeaderValue::from_static(if ctx.tls { "https" } else { "http" }));
    if let Some(h) = &original_host {
        headers.insert("x-forwarded-host", h.clone());
    }
    headers.insert("x-request-id", value(record.request_id()));
    let host_value = match (&site.host_header, original_host) {
        (Some(h), _) => value(h),
        (None, Some(h)) => h,
        (None, None) => value(&format!("{}:{}", site.backend.host, site.backend.port)),
    };
    headers.insert(header::HOST, host_value);
    if let Some(token) = &client_upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, token.clone());
    }

    let uri: Uri = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .parse()
        .map_err(|_| Failure::BadRequest("bad request target".into()))?;
    // A bodiless request to a delegating site can be sent again with a fresh
    // ticket, should the backend ask (401).
    let replay = kcd.as_ref().filter(|_| bodiless).map(|_| (parts.method.clone(), uri.clone(), headers.clone()));
    let mut out = Request::new(RequestBody::new(body, progress.clone()));
    *out.method_mut() = parts.method;
    *out.uri_mut() = uri;
    *out.version_mut() = Version::HTTP_11;
    *out.headers_mut() = headers;

    // On a site without `auth` the client may log on to the backend itself:
    // from its first credentials on, this client connection has backend
    // connections of its own, never shared with anyone.
    let identity = match &user {
        Some(u) => Identity::User(u.name.clone()),
        None if ctx.pinned.load(Ordering::Relaxed) || out.headers().contains_key(header::AUTHORIZATION) => {
            ctx.pinned.store(true, Ordering::Relaxed);
            Identity::Connection(ctx.id)
        }
        None => Identity::Anonymous,
    };
    let key = PoolKey { backend: target.pool_id.clone(), identity };
    let pool = &ctx.shared.pools[ctx.worker];
    let timeouts = &generation.config.timeouts;
    let delegation = kcd.as_ref().map(|(d, u)| (*d, u, bodiless));
    let (mut resp, mut sender, reused, sent_token) =
        exchange(ctx, generation, &site, &target, &key, out, &progress, delegation, false).await?;

    if resp.status() == StatusCode::UNAUTHORIZED {
        if let (Some((d, u)), Some((method, uri, mut headers))) = (&kcd, replay) {
            // Asked for a ticket (on-401), or an authenticated connection that no
            // longer is (IIS application pool recycled): sign in again, once, on a
            // fresh connection, rather than relay the 401.
            if reused || !sent_token {
                tracing::info!(request_id = %record.request_id(), user = %u.name, "backend answered 401; signing in again on a fresh connection");
                drop(resp);
                headers.remove(header::AUTHORIZATION);
                let mut again = Request::new(RequestBody::empty(progress.clone()));
                *again.method_mut() = method;
                *again.uri_mut() = uri;
                *again.version_mut() = Version::HTTP_11;
                *again.headers_mut() = headers;
                (resp, sender, _, _) =
                    exchange(ctx, generation, &site, &target, &key, again, &progress, Some((d, u, true)), true).await?;
            }
        }
        if kcd.is_some() && resp.status() == StatusCode::UNAUTHORIZED {
            let spn = site.delegation.as_ref().map_or("", |d| d.spn.as_str());
            return Err(Failure::BadGateway(format!(
                "the backend {} rejected the Kerberos ticket for {} ({spn}): 401; check the backend's keytab and SPN",
                site.backend.origin,
                user.as_ref().map_or("?", |u| &u.name),
            )));
        }
    }

    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        let (Some(token), Some(client_side)) = (client_upgrade, on_upgrade.take()) else {
            return Err(Failure::BadGateway("backend switched protocols unasked".into()));
        };
        let to_asked =
            resp.headers().get(header::UPGRADE).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"));
        if !to_asked {
            return Err(Failure::BadGateway("backend switched to a protocol other than WebSocket".into()));
        }
        let backend_side = hyper::upgrade::on(&mut resp);
        let in_flight = ctx.activity.begin_tunnel(site.stream_idle.unwrap_or(timeouts.stream_idle));
        let activity = ctx.activity.clone();
        let idle = timeouts.keepalive_idle;
        tokio::spawn(async move {
            let _in_flight = in_flight;
            tunnel(client_side, backend_side, activity, idle).await;
        });
        let (mut parts, _) = resp.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        parts.headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        parts.headers.insert(header::UPGRADE, token);
        return Ok(Response::from_parts(parts, ResponseBody::local(bytes::Bytes::new())));
    }

    let (mut parts, body) = resp.into_parts();
    // An intermediary speaks its own version (RFC 9110 6.2); hyper lowers it
    // for HTTP/1.0 clients.
    if !ctx.http2 {
        parts.version = Version::HTTP_11;
    }
    let mut key = key;
    if key.identity == Identity::Anonymous && binds_connection(&parts.headers) {
        // The backend started a connection-bound handshake on this connection:
        // the next leg, and the logon after it, are this client's alone.
        ctx.pinned.store(true, Ordering::Relaxed);
        key.identity = Identity::Connection(ctx.id);
    }
    strip_hop_by_hop(&mut parts.headers);
    if user.is_some() && parts.status != StatusCode::UNAUTHORIZED {
        // The backend's own mutual-authentication token answers gatehouse's
        // ticket, not the client's; the client gets the edge's final token.
        if kcd.is_some() {
            parts.headers.remove(header::WWW_AUTHENTICATE);
        }
        if let Some(token) = final_token {
            parts.headers.insert(header::WWW_AUTHENTICATE, token);
        }
    }
    let reuse = (pool.clone(), key, sender);
    Ok(Response::from_parts(parts, ResponseBody::backend(body, reuse)))
}

/// Sends `request` on a pooled connection for `key` (or a new one; always a new
/// one, with a ticket, when `fresh`) and waits for the response head. With
/// `delegation` (the site's settings, the user, whether the request is
/// bodiless) it adds `Authorization: Negotiate` where `send_token` wants it:
/// on a new connection (`always`), on every request (`every-request`), or on a
/// new connection only for requests with a body (`on-401`: the others wait to be
/// asked). Returns the response, the connection, whether it was reused, and
/// whether a ticket went with the request.
#[allow(clippy::too_many_arguments)]
async fn exchange(
    ctx: &ConnContext,
    generation: &Generation,
    site: &crate::config::Site,
    target: &crate::backend::Target,
    key: &PoolKey,
    request: Request<RequestBody>,
    progress: &RequestProgress,
    delegation: Option<(&crate::config::Delegation, &Arc<auth::User>, bool)>,
    fresh: bool,
) -> Result<(Response<Incoming>, crate::backend::Sender, bool, bool), Failure> {
    let timeouts = &generation.config.timeouts;
    let pool = &ctx.shared.pools[ctx.worker];
    let mut pending = request;
    loop {
        let pooled = if fresh { None } else { pool.checkout(key) };
        let (mut sender, reused) = match pooled {
            Some(s) => (s, true),
            None => {
                let s = target.connect(timeouts.backend_connect).await.map_err(|e| match e {
                    crate::backend::ConnectError::Timeout => {
                        Failure::GatewayTimeout(format!("{}: {e}", site.backend.origin))
                    }
                    e => Failure::BadGateway(format!("{}: {e}", site.backend.origin)),
                })?;
                (s, false)
            }
        };
        if let Some((d, user, bodiless)) = delegation {
            let wanted = fresh
                || match d.send {
                    SendToken::EveryRequest => true,
                    SendToken::Always => !reused,
                    SendToken::On401 => !reused && !bodiless,
                };
            if wanted && !pending.headers().contains_key(header::AUTHORIZATION) {
                // Extended Protection: the ticket is bound to this TLS connection.
                let token = delegate(generation, d, user, sender.binding.clone()).await?;
                pending.headers_mut().insert(header::AUTHORIZATION, token);
            }
        }
        let sent_token = delegation.is_some() && pending.headers().contains_key(header::AUTHORIZATION);
        let sent = sender.try_send_request(pending);
        let answer = tokio::select! {
            r = sent => r,
            _ = response_deadline(progress, timeouts.backend_response) => {
                return Err(Failure::GatewayTimeout(format!("{}: no response within {:?} of the request", site.backend.origin, timeouts.backend_response)));
            }
        };
        match answer {
            Ok(resp) => return Ok((resp, sender, reused, sent_token)),
            Err(mut e) => {
                // A pooled connection the backend had just closed: the request
                // never left, so it can go again on a fresh connection.
                if let Some(req) = e.take_message() {
                    if reused {
                        pending = req;
                        continue;
                    }
                }
                return Err(classify_send_error(ctx, progress, e.error()));
            }
        }
    }
}

/// `Authorization: Negotiate` for the site's backend in `user`'s name (S4U2Self
/// then S4U2Proxy, cached per user). The GSSAPI calls block, so they run on a
/// blocking thread.
async fn delegate(
    generation: &Generation,
    d: &crate::config::Delegation,
    user: &auth::User,
    binding: Option<Arc<[u8]>>,
) -> Result<HeaderValue, Failure> {
    let Some(delegator) = generation.delegator.clone() else {
        return Err(Failure::ServiceUnavailable("no delegating account is configured".into()));
    };
    let realm = generation.config.domain.as_ref().map_or(String::new(), |d| d.realm.clone());
    let account = user.name.rsplit('\\').next().unwrap_or(&user.name);
    // A Kerberos user is asked for by their exact principal. A sign-in name
    // with `@` is already a UPN (NTLM users may type one).
    let by_upn = user.principal.is_none() && account.contains('@');
    let principal = match &user.principal {
        Some(p) => p.to_string(),
        None if by_upn => account.to_owned(),
        None => format!("{account}@{realm}"),
    };
    let (spn, kind, mode) = (d.spn.clone(), d.token, d.user);
    let who = principal.clone();
    let target = spn.clone();
    let result = tokio::task::spawn_blocking(move || {
        let user = if by_upn {
            kcd::User::Upn { upn: who.clone(), account: who }
        } else if mode == crate::config::DelegationUser::Upn {
            kcd::User::Upn { upn: delegator.upn(&who)?, account: who }
        } else {
            kcd::User::Account(who)
        };
        delegator.token(&user, &target, kind, binding.as_deref())
    })
    .await
    .map_err(|e| Failure::ServiceUnavailable(format!("delegation did not run: {e}")))?;
    match result {
        Ok(token) => {
            use base64::Engine;
            let value = format!("Negotiate {}", base64::engine::general_purpose::STANDARD.encode(token));
            HeaderValue::from_str(&value).map_err(|_| Failure::BadGateway("unusable Kerberos token".into()))
        }
        Err(e) => {
            let account = generation.delegator.as_ref().map_or("", |d| d.principal());
            let mut cause = format!("Kerberos delegation for {principal} to {spn} failed: {e}");
            if let Some(x) = kcd::explain(&e, account, &spn, &principal) {
                cause.push_str(&format!(
                    "; {}: {}; fix (PowerShell): {}; fix (samba-tool): {}",
                    x.code,
                    x.cause,
                    x.powershell.join(" ; "),
                    x.samba_tool.join(" ; ")
                ));
            }
            if e.is_unreachable() {
                Err(Failure::DomainUnreachable(cause))
            } else {
                Err(Failure::BadGateway(cause))
            }
        }
    }
}

/// Answers a request that did not pass authentication. The body of a handshake
/// leg is read and thrown away, up to `limits.handshake_body`, so that the
/// connection (and with it the NTLM handshake) stays usable; a larger body, or
/// one still unsent behind `Expect: 100-continue`, closes the connection after
/// the answer.
async fn answer_auth(
    req: Request<Incoming>,
    mut resp: Response<ResponseBody>,
    reason: Reason,
    ctx: &ConnContext,
    generation: &Generation,
    record: &mut AccessRecord,
) -> Response<ResponseBody> {
    let id = record.request_id().to_owned();
    match reason {
        Reason::Handshake => {}
        Reason::Refused(why) => {
            tracing::warn!(request_id = %id, client = %ctx.peer, listener = %ctx.listener, cause = %why, "authentication refused");
            record.set_error(why);
        }
        Reason::Unavailable(why) => {
            tracing::error!(request_id = %id, client = %ctx.peer, listener = %ctx.listener, cause = %why, "authentication unavailable");
            record.set_error(why);
        }
    }
    let expects_continue =
        req.headers().get(header::EXPECT).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let keep = !expects_continue
        && drain(req.into_body(), generation.config.limits.handshake_body, generation.config.timeouts.header_read)
            .await;
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

/// The host the client asked for: the authority of an absolute-form target, else
/// the Host header (which HTTP/1.0 clients may omit). Both are checked, even when
/// the authority wins: RFC 9112 section 3.2 answers an invalid Host with 400.
fn request_host(req: &Request<Incoming>) -> Result<Option<String>, Failure> {
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

fn classify_send_error(ctx: &ConnContext, progress: &RequestProgress, e: &hyper::Error) -> Failure {
    if let Some(reject) = ctx.rejected.get() {
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

const HOP_BY_HOP: [HeaderName; 7] = [
    header::CONNECTION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
];

/// Removes the headers that belong to one hop (RFC 9110 section 7.6.1), including
/// every header the Connection header names.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    for name in named.iter().chain(HOP_BY_HOP.iter()) {
        headers.remove(name);
    }
    headers.remove("keep-alive");
    headers.remove("proxy-connection");
}

/// Removes `name` and every header that a backend could read as `name`: IIS and
/// CGI map `X_Remote_User` to the same server variable as `X-Remote-User`, so a
/// client could otherwise smuggle an identity in with underscores.
fn remove_lookalikes(headers: &mut HeaderMap, name: &HeaderName) {
    let same = |other: &HeaderName| {
        let (a, b) = (other.as_str().as_bytes(), name.as_str().as_bytes());
        a.len() == b.len()
            && a.iter().zip(b).all(|(x, y)| x == y || (*x == b'_' && *y == b'-') || (*x == b'-' && *y == b'_'))
    };
    headers.remove(name);
    // Look-alikes are rare: look before allocating.
    if headers.keys().any(same) {
        let doomed: Vec<HeaderName> = headers.keys().filter(|k| same(k)).cloned().collect();
        for k in doomed {
            headers.remove(k);
        }
    }
}

/// The headers gatehouse sets itself: whatever the client sent under these
/// names is removed first.
const OURS: [&str; 6] =
    ["forwarded", "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "x-real-ip", "x-request-id"];

/// Removes client headers that a backend reading `_` as `-` (IIS, CGI) would
/// take for a framing or hop-by-hop header, or for one gatehouse sets itself
/// (`Transfer_Encoding`, `X_Forwarded_For`). Content_Length and
/// Transfer_Encoding never get this far on HTTP/1 (the framing check refuses
/// them); HTTP/2 requests have no such check.
fn remove_lookalikes_of_our_headers(headers: &mut HeaderMap) {
    const GUARDED: [&str; 10] = [
        "content-length",
        "transfer-encoding",
        "keep-alive",
        "proxy-connection",
        "proxy-authorization",
        "http2-settings",
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
        "x-real-ip",
    ];
    // Names with `_` are rare: look before allocating.
    if !headers.keys().any(|k| k.as_str().contains('_')) {
        return;
    }
    let doomed: Vec<HeaderName> = headers
        .keys()
        .filter(|k| k.as_str().contains('_'))
        .filter(|k| {
            let dashed = k.as_str().replace('_', "-");
            GUARDED.contains(&dashed.as_str()) || dashed == "x-request-id"
        })
        .cloned()
        .collect();
    for k in doomed {
        headers.remove(k);
    }
}

/// Whether a backend's answer starts or keeps a logon bound to its
/// connection: an NTLM or Negotiate challenge, or IIS's `Persistent-Auth`.
fn binds_connection(headers: &HeaderMap) -> bool {
    let scheme = |v: &HeaderValue| {
        let v = v.as_bytes();
        let word = v.split(|&b| b == b' ' || b == b',').next().unwrap_or(b"");
        word.eq_ignore_ascii_case(b"ntlm") || word.eq_ignore_ascii_case(b"negotiate")
    };
    headers.get_all(header::WWW_AUTHENTICATE).iter().any(scheme) || headers.contains_key("persistent-auth")
}

/// What to do with an upgrade request (see [`httpguard::framing::is_upgrade_request`]):
/// `Some("websocket")` to forward it as a WebSocket handshake, `None` to serve
/// it as a plain request without upgrading (h2c, any other protocol, or a site
/// with `websocket = false`), or a refusal when it asks for WebSocket with a
/// handshake that RFC 6455 4.1 does not allow.
fn websocket_upgrade<B>(req: &Request<B>, site: &crate::config::Site) -> Result<Option<HeaderValue>, Failure> {
    let asks_websocket = req
        .headers()
        .get_all(header::UPGRADE)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"websocket"));
    if !asks_websocket {
        tracing::debug!(site = %site.name, "upgrade to a protocol other than WebSocket ignored; served as HTTP/1.1");
        return Ok(None);
    }
    if !site.websocket {
        tracing::debug!(site = %site.name, "WebSocket is off for this site; served as HTTP/1.1");
        return Ok(None);
    }
    let bad = |why: &str| Err(Failure::BadRequest(format!("WebSocket handshake refused: {why}")));
    if req.method() != Method::GET {
        return bad("the method must be GET");
    }
    let h = req.headers();
    if h.get_all("sec-websocket-version").iter().count() != 1
        || h.get("sec-websocket-version").map(|v| v.as_bytes()) != Some(b"13")
    {
        return bad("Sec-WebSocket-Version must be 13");
    }
    use base64::Engine;
    let key_ok = h.get_all("sec-websocket-key").iter().count() == 1
        && h.get("sec-websocket-key")
            .and_then(|k| base64::engine::general_purpose::STANDARD.decode(k.as_bytes()).ok())
            .is_some_and(|k| k.len() == 16);
    if !key_ok {
        return bad("Sec-WebSocket-Key must be 16 bytes in base64");
    }
    Ok(Some(HeaderValue::from_static("websocket")))
}

fn value(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

/// Carries bytes both ways after a protocol switch, until either side closes or
/// the tunnel has been quiet for the stream idle time.
async fn tunnel(
    client: hyper::upgrade::OnUpgrade,
    backend: hyper::upgrade::OnUpgrade,
    activity: Arc<Activity>,
    idle: Duration,
) {
    let (client, backend) = match tokio::join!(client, backend) {
        (Ok(c), Ok(b)) => (c, b),
        (c, b) => {
            tracing::debug!(client_ok = c.is_ok(), backend_ok = b.is_ok(), "protocol switch did not complete");
            return;
        }
    };
    let mut client = TokioIo::new(client);
    let mut backend = TokioIo::new(backend);
    let copy = tokio::io::copy_bidirectional(&mut client, &mut backend);
    tokio::pin!(copy);
    loop {
        let wait = match activity.remaining(idle, idle) {
            Ok(d) => d,
            Err(why) => {
                tracing::debug!(why, "closing an upgraded connection");
                return;
            }
        };
        tokio::select! {
            _ = &mut copy => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_hop_by_hop_and_connection_named_headers() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, HeaderValue::from_static("keep-alive, X-Secret-Hop"));
        h.insert("x-secret-hop", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(header::TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        h.insert("proxy-connection", HeaderValue::from_static("keep-alive"));
        h.insert(header::PROXY_AUTHORIZATION, HeaderValue::from_static("Basic x"));
        h.insert("x-keep", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1, "{h:?}");
        assert!(h.contains_key("x-keep"));
    }

    #[test]
    fn identity_header_lookalikes_are_removed() {
        let mut h = HeaderMap::new();
        h.insert("x-remote-user", HeaderValue::from_static("a"));
        h.insert("x_remote_user", HeaderValue::from_static("b"));
        h.insert("x_remote-user", HeaderValue::from_static("c"));
        h.insert("x-remote-users", HeaderValue::from_static("keep"));
        remove_lookalikes(&mut h, &HeaderName::from_static("x-remote-user"));
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-remote-users"));
    }

    #[test]
    fn lookalikes_of_framing_and_forwarding_headers_are_removed() {
        let mut h = HeaderMap::new();
        for name in [
            "transfer_encoding",
            "content_length",
            "x_forwarded_for",
            "x-forwarded_host",
            "x_real_ip",
            "keep_alive",
            "x_request_id",
            "proxy_authorization",
        ] {
            h.insert(HeaderName::from_bytes(name.as_bytes()).unwrap(), HeaderValue::from_static("x"));
        }
        h.insert("x_custom_header", HeaderValue::from_static("keep"));
        h.insert("content-type", HeaderValue::from_static("keep"));
        remove_lookalikes_of_our_headers(&mut h);
        assert_eq!(h.len(), 2, "{h:?}");
        assert!(h.contains_key("x_custom_header") && h.contains_key("content-type"));
    }

    #[test]
    fn connection_bound_challenges_are_recognised() {
        let with = |v: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(v));
            binds_connection(&h)
        };
        assert!(with("NTLM"));
        assert!(with("NTLM TlRMTVNTUAACAAAA"));
        assert!(with("negotiate oYG2MIGzoAMKAQ"));
        assert!(!with("Basic realm=\"x\""));
        assert!(!with("Bearer"));
        assert!(!with("NTLMv2"));
        let mut h = HeaderMap::new();
        h.insert("persistent-auth", HeaderValue::from_static("true"));
        assert!(binds_connection(&h));
        assert!(!binds_connection(&HeaderMap::new()));
    }

    #[test]
    fn websocket_handshake_is_checked() {
        let site = crate::route::tests::site("s", "l", &[], "/");
        let req = |method: &str, headers: &[(&str, &str)]| {
            let mut b = Request::builder().method(method).uri("/ws");
            for (n, v) in headers {
                b = b.header(*n, *v);
            }
            b.body(()).unwrap()
        };
        let good = [
            ("connection", "Upgrade"),
            ("upgrade", "websocket"),
            ("sec-websocket-version", "13"),
            ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ];
        assert_eq!(websocket_upgrade(&req("GET", &good), &site).unwrap().unwrap(), "websocket");
        assert!(matches!(websocket_upgrade(&req("POST", &good), &site), Err(Failure::BadRequest(_))));
        let mut v8 = good;
        v8[2].1 = "8";
        assert!(matches!(websocket_upgrade(&req("GET", &v8), &site), Err(Failure::BadRequest(_))));
        let mut short = good;
        short[3].1 = "c2hvcnQ=";
        assert!(matches!(websocket_upgrade(&req("GET", &short), &site), Err(Failure::BadRequest(_))));
        let nokey = &good[..3];
        assert!(matches!(websocket_upgrade(&req("GET", nokey), &site), Err(Failure::BadRequest(_))));
        let h2c = [
            ("connection", "Upgrade, HTTP2-Settings"),
            ("upgrade", "h2c"),
            ("http2-settings", "AAMAAABkAAQAoAAAAAIAAAAA"),
        ];
        assert!(websocket_upgrade(&req("GET", &h2c), &site).unwrap().is_none(), "h2c is served without upgrading");
        let mut off = site.clone();
        off.websocket = false;
        assert!(websocket_upgrade(&req("GET", &good), &off).unwrap().is_none());
    }
}
