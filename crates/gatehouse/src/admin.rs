//! The operators' listener (`[admin]`): `/metrics` for Prometheus,
//! `/healthz` and `/readyz` for load balancers, `/status` for people.
//!
//! Plain HTTP on its own socket, loopback by default, and only for clients
//! in `[admin] allow` (everyone else: 403, and a log line). It shares nothing
//! with the sites' listeners: no site can be reached here, and no admin page
//! on a published host. It reads the process (`Shared`) like the control
//! socket does; the stages never see it.
//!
//! With `[admin.sign_in]`, `/status` alone also asks for a domain sign-in
//! and the access rules there, through the pipeline's own authenticate and
//! authorize stages ([`crate::pipeline::admit`]); `/healthz`, `/readyz`,
//! `/metrics` and the style sheet stay for the networks in `allow` only:
//! load balancers and Prometheus cannot do Negotiate, and what they read
//! names no user.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use askama::Template;
use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::auth::ConnAuth;
use crate::config;
use crate::conn::ConnInfo;
use crate::generation::Generation;
use crate::metrics::Live;
use crate::response_body::ResponseBody;
use crate::shared::Shared;

/// How often the KDC is asked whether it answers (an AS exchange for the
/// service account: cheap for a KDC, and what delegation needs first).
const PROBE_EVERY: Duration = Duration::from_secs(5);
/// A probe older than this says nothing any more (the prober is stuck).
const PROBE_STALE: Duration = Duration::from_secs(60);

/// The admin listener while it runs; dropping it stops it.
pub struct Handle {
    tasks: Vec<tokio::task::JoinHandle<()>>,
    pub settings: config::Admin,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.tasks.iter().for_each(|t| t.abort());
    }
}

/// The domain as the prober last found it.
#[derive(Default)]
pub struct Domain {
    last: Mutex<Option<Probe>>,
}

#[derive(Clone)]
struct Probe {
    at: Instant,
    /// Why the KDC did not answer, with doctor's explanation when kcd has one.
    failed: Option<(String, Option<kcd::Explanation>)>,
    principal: String,
}

pub fn serve(settings: &config::Admin, shared: Arc<Shared>) -> Result<Handle, String> {
    let std_listener = std::net::TcpListener::bind(settings.bind)
        .map_err(|e| format!("[admin] bind {}: cannot listen: {e}", settings.bind))?;
    let addr = std_listener.local_addr().map_err(|e| e.to_string())?;
    std_listener.set_nonblocking(true).map_err(|e| e.to_string())?;
    let tcp = tokio::net::TcpListener::from_std(std_listener).map_err(|e| e.to_string())?;
    tracing::info!(addr = %addr, "admin listener ready (/metrics, /healthz, /readyz, /status)");
    let domain = Arc::new(Domain::default());
    let prober = tokio::spawn(probe_loop(shared.clone(), domain.clone()));
    let allow = settings.allow.clone();
    let status_page = settings.status_page;
    let accept = tokio::spawn(async move {
        loop {
            let Ok((sock, peer)) = tcp.accept().await else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            if !allow.iter().any(|n| n.contains(peer.ip())) {
                tracing::warn!(client = %peer, "admin listener: refused a client outside [admin] allow");
                tokio::spawn(refuse(sock));
                continue;
            }
            let (shared, domain) = (shared.clone(), domain.clone());
            // NTLM signs in the connection: its state lives and dies with it.
            let conn = Arc::new(Conn {
                info: ConnInfo {
                    id: ConnInfo::next_id(),
                    peer,
                    forwarded_for: ConnInfo::forwarded_for(peer),
                    listener: config::ADMIN_LISTENER.into(),
                    tls: false,
                    worker: 0,
                    channel_bindings: None,
                    tls_end_point: None,
                    http2: false,
                },
                auth: ConnAuth::new(false),
            });
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let (shared, domain, conn) = (shared.clone(), domain.clone(), conn.clone());
                    async move { Ok::<_, Infallible>(answer(req, &shared, &domain, &conn, status_page).await) }
                });
                let io = hyper_util::rt::TokioIo::new(sock);
                let conn = hyper::server::conn::http1::Builder::new().serve_connection(io, service);
                // Scrapes are small and quick: a connection that lingers is gone.
                let _ = tokio::time::timeout(Duration::from_secs(30), conn).await;
            });
        }
    });
    Ok(Handle { tasks: vec![accept, prober], settings: settings.clone() })
}

async fn refuse(mut sock: tokio::net::TcpStream) {
    use tokio::io::AsyncWriteExt;
    let body = "403 Forbidden: this address is not in [admin] allow.\n";
    let head = format!(
        "HTTP/1.1 403 Forbidden\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(2), sock.write_all(format!("{head}{body}").as_bytes())).await;
}

/// Asks the KDC every [`PROBE_EVERY`] while the current generation delegates
/// or checks Kerberos tickets (its sites need the domain).
async fn probe_loop(shared: Arc<Shared>, domain: Arc<Domain>) {
    loop {
        if let Some(d) = shared.current().delegator.clone() {
            let principal = d.principal().to_owned();
            let answer = tokio::task::spawn_blocking(move || d.probe()).await;
            let failed = match answer {
                Ok(Ok(())) => None,
                Ok(Err(e)) => {
                    let explained = kcd::explain(&e, &principal, "", "");
                    Some((e.to_string(), explained))
                }
                Err(e) => Some((format!("the probe did not run: {e}"), None)),
            };
            let was_failing = domain.last().is_some_and(|p| p.failed.is_some());
            match &failed {
                Some((why, _)) if !was_failing => tracing::warn!(cause = %why, "readiness: the KDC does not answer"),
                None if was_failing => tracing::info!("readiness: the KDC answers again"),
                _ => {}
            }
            *domain.last.lock().unwrap_or_else(|e| e.into_inner()) =
                Some(Probe { at: Instant::now(), failed, principal });
        } else {
            *domain.last.lock().unwrap_or_else(|e| e.into_inner()) = None;
        }
        tokio::time::sleep(PROBE_EVERY).await;
    }
}

impl Domain {
    fn last(&self) -> Option<Probe> {
        self.last.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

type Body = ResponseBody;

/// One admin connection, as the sign-in stages see it.
struct Conn {
    info: ConnInfo,
    auth: ConnAuth,
}

async fn answer(
    req: Request<Incoming>,
    shared: &Shared,
    domain: &Domain,
    conn: &Conn,
    status_page: bool,
) -> Response<Body> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "405: the admin listener answers GET only.\n".into());
    }
    let generation = shared.current();
    match req.uri().path() {
        "/healthz" => text(StatusCode::OK, "ok\n".into()),
        "/readyz" => {
            let r = readiness(shared, &generation, domain);
            let status = if r.ready() { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
            text(status, r.describe())
        }
        "/metrics" => {
            // Prometheus asks for OpenMetrics; others get the older text format.
            let openmetrics = req
                .headers()
                .get_all(header::ACCEPT)
                .iter()
                .any(|v| v.to_str().is_ok_and(|v| v.contains("application/openmetrics-text")));
            let live = live(shared, &generation, domain).await;
            let text = shared.kept.metrics.scrape(live);
            let (body, content_type) = if openmetrics {
                (text, "application/openmetrics-text; version=1.0.0; charset=utf-8")
            } else {
                (crate::metrics::Metrics::prometheus_text(&text), "text/plain; version=0.0.4; charset=utf-8")
            };
            let mut resp = Response::new(ResponseBody::local(Bytes::from(body)));
            resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
            resp
        }
        "/status" if status_page => match &generation.admin_site {
            None => status(shared, &generation, domain, None).await,
            Some(site) => signed_in_status(req, shared, &generation, domain, conn, site).await,
        },
        "/status.css" if status_page => {
            let mut resp = Response::new(ResponseBody::local(Bytes::from_static(STYLE.as_bytes())));
            resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/css; charset=utf-8"));
            resp
        }
        _ => text(StatusCode::NOT_FOUND, "404: /metrics, /healthz, /readyz, /status\n".into()),
    }
}

/// `/status` behind `[admin.sign_in]`: the page for a signed-in user the
/// rules allow, else the stages' own answer. Each request is in the access
/// log (site `[admin]`), as a site's are: who looked, or why they could not.
async fn signed_in_status(
    req: Request<Incoming>,
    shared: &Shared,
    generation: &Generation,
    domain: &Domain,
    conn: &Conn,
    site: &config::Site,
) -> Response<Body> {
    let log = &shared.access;
    let mut record =
        crate::telemetry::AccessRecord::new(log, &conn.info, log.next_id(), req.method().as_str(), req.uri().path());
    let gate =
        crate::pipeline::Gate { site, generation, info: &conn.info, auth: &conn.auth, signins: &shared.meters.signins };
    let resp = match crate::pipeline::admit(req, gate, &mut record).await {
        Ok((user, final_token)) => {
            let who = format!("{} ({})", user.name, user.scheme.name());
            let mut resp = status(shared, generation, domain, Some(who)).await;
            // Mutual authentication: the handshake's last token goes back.
            if let Some(token) = final_token {
                resp.headers_mut().insert(header::WWW_AUTHENTICATE, token);
            }
            resp
        }
        Err(answered) => answered,
    };
    record.set_status(resp.status().as_u16());
    let size = http_body::Body::size_hint(resp.body()).exact().unwrap_or(0);
    record.finish(size, true);
    resp
}

fn text(status: StatusCode, body: String) -> Response<Body> {
    let mut resp = Response::new(ResponseBody::local(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// What `/readyz` checks, each with its verdict.
struct Readiness {
    checks: Vec<(String, Result<(), String>)>,
}

impl Readiness {
    fn ready(&self) -> bool {
        self.checks.iter().all(|(_, r)| r.is_ok())
    }

    fn describe(&self) -> String {
        let mut out = if self.ready() { "ready\n".to_owned() } else { "not ready\n".to_owned() };
        for (what, r) in &self.checks {
            match r {
                Ok(()) => out.push_str(&format!("ok: {what}\n")),
                Err(why) => out.push_str(&format!("failed: {what}: {why}\n")),
            }
        }
        out
    }
}

fn readiness(shared: &Shared, generation: &Generation, domain: &Domain) -> Readiness {
    // A generation serving is a configuration loaded: a broken file never
    // replaces one.
    let mut checks = vec![("configuration loaded".to_owned(), Ok(()))];
    for l in &generation.config.listeners {
        let bound = match shared.bound(&l.name) {
            Some(_) => Ok(()),
            None => Err(format!("not bound to {}", l.bind)),
        };
        checks.push((format!("listener {}", l.name), bound));
    }
    if generation.delegator.is_some() {
        let needing: Vec<&str> = generation
            .config
            .sites
            .iter()
            .filter(|s| {
                s.kcd().is_some()
                    || s.offers(config::Scheme::Negotiate)
                    || s.offers(config::Scheme::Basic)
                    || !s.rules.is_empty()
            })
            .map(|s| s.name.as_str())
            .chain(generation.admin_site.as_ref().map(|s| s.name.as_str()))
            .collect();
        let verdict = match domain.last() {
            None => Err("not asked yet".to_owned()),
            Some(p) if p.at.elapsed() > PROBE_STALE => Err("the last answer is too old".to_owned()),
            Some(Probe { failed: Some((why, _)), .. }) => Err(why),
            Some(_) => Ok(()),
        };
        checks.push((format!("KDC reachable (sites {})", needing.join(", ")), verdict));
    }
    Readiness { checks }
}

async fn live(shared: &Shared, generation: &Generation, domain: &Domain) -> Live {
    let now = SystemTime::now();
    let credential_cache = generation.delegator.as_ref().map(|d| {
        let c = d.cache_stats();
        (c.entries as u64, c.hits, c.evictions)
    });
    let mut idle = std::collections::BTreeMap::<String, u64>::new();
    for pool in &shared.pools {
        for (origin, n) in pool.idle_by_origin() {
            *idle.entry(origin).or_default() += n as u64;
        }
    }
    let winbind_helpers = match generation.auth.accounts() {
        Some(crate::accounts::Accounts::Winbind(w)) => {
            let (busy, max) = w.busy();
            Some((busy as u64, max as u64))
        }
        _ => None,
    };
    Live {
        credential_cache,
        backend_pool_idle: idle.into_iter().collect(),
        certificate_expiry: certificates(generation, now)
            .into_iter()
            .map(|c| (c.listener, c.name, c.seconds))
            .collect(),
        winbind_helpers,
        sessions: shared.kept.sessions.list(now).await.map_or(0, |l| l.len()) as u64,
        ready: readiness(shared, generation, domain).ready(),
    }
}

struct Certificate {
    listener: String,
    name: String,
    seconds: i64,
}

fn certificates(generation: &Generation, now: SystemTime) -> Vec<Certificate> {
    let now = now.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
    let mut out = Vec::new();
    for l in &generation.config.listeners {
        for ck in l.tls.iter().flat_map(|t| &t.certificates) {
            if let Some((name, not_after)) = crate::tls::expiry(ck) {
                out.push(Certificate { listener: l.name.clone(), name, seconds: not_after - now });
            }
        }
    }
    out
}

// ---- The status page ----

const STYLE: &str = include_str!("../templates/status.css");

/// Nothing runs, nothing loads from elsewhere; the style sheet is ours.
const CSP: &str = "default-src 'none'; style-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

#[derive(Template)]
#[template(path = "status.html")]
struct StatusPage {
    ready: bool,
    checks: Vec<(String, Option<String>)>,
    generated: String,
    sites: Vec<SiteRow>,
    kdc: Option<KdcRow>,
    problems: Vec<ProblemRow>,
    certificates: Vec<CertRow>,
    connections: usize,
    max_connections: usize,
    sessions: usize,
    /// `DOMAIN\user (scheme)` behind `[admin.sign_in]`.
    signed_in: Option<String>,
}

struct SiteRow {
    name: String,
    listener: String,
    hosts: String,
    path: String,
    auth: String,
    delegation: String,
    backends: Vec<BackendRow>,
}

struct BackendRow {
    origin: String,
    state: String,
    up: bool,
    last_answer: String,
}

struct KdcRow {
    principal: String,
    reachable: bool,
    checked: String,
    error: String,
    explained: Option<kcd::Explanation>,
}

struct ProblemRow {
    at: String,
    site: String,
    error: String,
    explained: Option<kcd::Explanation>,
}

struct CertRow {
    listener: String,
    name: String,
    expires: String,
    days: i64,
    /// `ok`, `soon` (under 21 days: certbot renews at 30) or `expired`.
    class: &'static str,
}

async fn status(
    shared: &Shared,
    generation: &Generation,
    domain: &Domain,
    signed_in: Option<String>,
) -> Response<Body> {
    let r = readiness(shared, generation, domain);
    let sites = generation
        .config
        .sites
        .iter()
        .map(|s| {
            let backends = generation.farms.get(&s.name).map_or_else(Vec::new, |farm| {
                farm.members
                    .iter()
                    .map(|m| BackendRow {
                        origin: m.backend.origin.to_string(),
                        state: m.state.describe(m.drain),
                        up: m.state.describe(m.drain).starts_with("up"),
                        last_answer: m.state.last_answer().map_or("no answer yet".into(), |(status, ago)| {
                            format!("{status}, {} ago", humantime::format_duration(Duration::from_secs(ago.as_secs())))
                        }),
                    })
                    .collect()
            });
            SiteRow {
                name: s.name.clone(),
                listener: s.listener.clone(),
                hosts: if s.hosts.is_empty() { "any host".into() } else { s.hosts.join(", ") },
                path: s.path_prefix.clone(),
                auth: if s.auth.is_empty() {
                    "none (pass-through)".into()
                } else {
                    s.auth.iter().map(|a| a.name()).collect::<Vec<_>>().join(", ")
                },
                delegation: s.kcd().map_or("none".into(), |k| format!("KCD to {}", k.spn)),
                backends,
            }
        })
        .collect();
    let kdc = domain.last().map(|p| KdcRow {
        principal: p.principal.clone(),
        reachable: p.failed.is_none(),
        checked: format!("{} ago", humantime::format_duration(Duration::from_secs(p.at.elapsed().as_secs()))),
        error: p.failed.as_ref().map_or(String::new(), |(why, _)| why.clone()),
        explained: p.failed.and_then(|(_, x)| x),
    });
    let problems = shared
        .meters
        .problems
        .recent()
        .into_iter()
        .map(|p| ProblemRow {
            at: humantime::format_rfc3339_seconds(p.at).to_string(),
            site: p.site,
            error: p.error,
            explained: p.explained,
        })
        .collect();
    let certificates = certificates(generation, SystemTime::now())
        .into_iter()
        .map(|c| {
            let expires = SystemTime::now()
                .checked_add(Duration::from_secs(c.seconds.max(0) as u64))
                .map_or("-".into(), |t| humantime::format_rfc3339_seconds(t).to_string());
            let days = c.seconds.div_euclid(86_400);
            let class = if c.seconds <= 0 {
                "expired"
            } else if days < 21 {
                "soon"
            } else {
                "ok"
            };
            CertRow { listener: c.listener, name: c.name, expires, days, class }
        })
        .collect();
    let page = StatusPage {
        ready: r.ready(),
        checks: r.checks.into_iter().map(|(what, v)| (what, v.err())).collect(),
        generated: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        sites,
        kdc,
        problems,
        certificates,
        connections: shared.max_connections - shared.connections.available_permits().min(shared.max_connections),
        max_connections: shared.max_connections,
        sessions: shared.kept.sessions.list(SystemTime::now()).await.map_or(0, |l| l.len()),
        signed_in,
    };
    let html = page.render().unwrap_or_else(|e| format!("status page: {e}"));
    let mut resp = Response::new(ResponseBody::local(Bytes::from(html)));
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    resp
}
