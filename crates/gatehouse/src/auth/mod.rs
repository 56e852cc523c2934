//! Authentication at the edge: which schemes a client is offered, and the
//! handshakes that prove who it is.
//!
//! - `ntlm.rs`: NTLM, bare (`WWW-Authenticate: NTLM`) or as a mechanism inside
//!   SPNEGO; connection-bound.
//! - `negotiate.rs`: `Negotiate`: SPNEGO, Kerberos (MIT, through `kcd`), NTLM
//!   inside SPNEGO with its mechListMIC.
//! - `basic.rs`: `Basic`, and the password check the sign-in page shares.
//! - `forms.rs`: `Forms`: browsers with a session cookie, or sent to the
//!   sign-in page; `rate.rs`: sign-in attempts per client address.
//! - `lockout.rs`: extranet lockout protection; `names.rs`: the logon names AD
//!   can hold, checked first; `rules.rs`: `[[site.auth_for]]` matching.
//!
//! NTLM authenticates the TCP connection, not the request: the legs must travel
//! on one connection, and the identity then belongs to that connection and to
//! no other. So the handshake state lives in [`ConnAuth`], inside the
//! connection's context, and dies with it. A Kerberos logon also stays with its
//! connection (as IIS does by default, `authPersistNonNTLM`), and every request
//! that carries a new ticket authenticates again.

mod basic;
pub mod forms;
mod lockout;
mod names;
mod negotiate;
mod ntlm;
pub mod oidc;
pub mod passkey;
mod rate;
mod rules;
pub mod second_factor;

pub use crate::accounts::Evidence;
pub use basic::{Refusal, Remembered as BasicCache};
pub use lockout::Lockout;
pub use rate::Attempts;
pub use rules::glob_match;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Response, StatusCode};

use crate::accounts::Accounts;
use crate::config::{self, Scheme, Site};
use crate::conn::ConnInfo;
use crate::response_body::ResponseBody;

/// Authentication at the edge, as one configuration generation sets it up:
/// everything a scheme may use to decide who a client is, and nothing else
/// (no pools, no access log, no other connection).
pub struct Authenticator {
    /// NTLM acceptor settings by listener name (names, channel-binding policy).
    ntlm: HashMap<String, ::ntlm::AcceptorConfig>,
    /// Where NTLM (and, without a keytab, Basic) passwords are checked.
    accounts: Option<Arc<Accounts>>,
    /// Kerberos: gatehouse's keytab and service account.
    delegator: Option<Arc<kcd::Delegator>>,
    domain: Option<config::Domain>,
    lockout_limits: config::Lockout,
    basic_cache: Duration,
    /// Basic passwords go to the KDC (a keytab is configured), else to `accounts`.
    basic_by_kdc: bool,
    /// Kept across reloads.
    lockout: Arc<Lockout>,
    basic: Arc<BasicCache>,
    /// The sign-in page's sessions, where `[forms]` is configured.
    forms: Option<forms::Forms>,
    /// `[mfa] exempt_networks`.
    mfa_exempt: Vec<crate::net::Cidr>,
    /// `[[idp]]`, in order (`Scheme::Oidc(i)` names `providers[i]`).
    providers: Vec<Arc<crate::oidc::Provider>>,
}

/// The request as the schemes see it.
#[derive(Clone, Copy)]
pub struct Asked<'a> {
    pub headers: &'a HeaderMap,
    pub method: &'a Method,
    /// The target as sent, in origin form (`/owa/?ae=Folder`): where a
    /// browser returns after signing in.
    pub target: &'a str,
    /// The host the request was sent to (Host, or the absolute target's),
    /// without its port; None for an HTTP/1.0 request without one.
    pub host: Option<&'a str>,
}

/// The client connection as a scheme sees it: its fixed facts and its
/// authentication state.
#[derive(Clone, Copy)]
pub struct Client<'a> {
    pub info: &'a ConnInfo,
    pub auth: &'a ConnAuth,
    /// The host the request was sent to (Host, or the absolute target's),
    /// without its port; None for an HTTP/1.0 request without one.
    pub host: Option<&'a str>,
    pub method: &'a Method,
    pub target: &'a str,
}

impl Authenticator {
    pub fn new(
        config: &config::Config,
        ntlm: HashMap<String, ::ntlm::AcceptorConfig>,
        accounts: Option<Arc<Accounts>>,
        delegator: Option<Arc<kcd::Delegator>>,
        lockout: Arc<Lockout>,
        basic: Arc<BasicCache>,
        forms: Option<forms::Forms>,
    ) -> Authenticator {
        Authenticator {
            ntlm,
            accounts,
            delegator,
            domain: config.domain.clone(),
            lockout_limits: config.lockout.clone(),
            basic_cache: config.basic_cache,
            basic_by_kdc: config.basic_by_kdc(),
            lockout,
            basic,
            forms,
            mfa_exempt: config.mfa.as_ref().map(|m| m.exempt_networks.clone()).unwrap_or_default(),
            providers: Vec::new(),
        }
    }

    /// The OpenID Connect providers, `[[idp]]` in order.
    pub fn with_providers(mut self, providers: Vec<Arc<crate::oidc::Provider>>) -> Authenticator {
        self.providers = providers;
        self
    }

    pub fn providers(&self) -> &[Arc<crate::oidc::Provider>] {
        &self.providers
    }

    /// The provider of this name.
    pub fn provider(&self, name: &str) -> Option<&Arc<crate::oidc::Provider>> {
        self.providers.iter().find(|p| p.name().eq_ignore_ascii_case(name))
    }

    /// The extranet lockout and its limits (the second step counts wrong
    /// codes in it).
    pub fn lockout(&self) -> (&Lockout, &config::Lockout) {
        (&self.lockout, &self.lockout_limits)
    }

    /// Decides about a request to a site that requires authentication.
    pub async fn check(&self, asked: Asked<'_>, info: &ConnInfo, auth: &ConnAuth, site: &Site) -> Verdict {
        let ctx = Client { info, auth, host: asked.host, method: asked.method, target: asked.target };
        let verdict = check(asked.headers, ctx, self, site).await;
        // A provider's user on a site with claim rules: checked on every
        // request (one session cookie serves sites with different rules).
        match &verdict {
            Verdict::Pass(user, _) if !site.claims.is_empty() => {
                oidc::check_claims(self, &site.claims, user, asked.headers).unwrap_or(verdict)
            }
            _ => verdict,
        }
    }

    /// Where passwords are checked (for the status page and the metrics).
    pub fn accounts(&self) -> Option<&Accounts> {
        self.accounts.as_deref()
    }

    /// The sign-in page's settings and sessions, where `[forms]` is configured.
    pub fn forms(&self) -> Option<&forms::Forms> {
        self.forms.as_ref()
    }
}

/// An authenticated user, as the backend, the access rules and the logs will
/// know them.
#[derive(Debug, Clone)]
pub struct User {
    /// `DOMAIN\user` (or `user@REALM` for a Kerberos user of another realm).
    pub name: Arc<str>,
    pub scheme: Scheme,
    /// `name` as a header value, made once per logon rather than per request.
    pub header: HeaderValue,
    /// The Kerberos principal (`alice@AD.TEST`) when the user signed in with
    /// Kerberos: delegation then asks for tickets in exactly that name.
    pub principal: Option<Arc<str>>,
    /// The account as the domain's KDC knows it, for what the domain says
    /// about the user later (S4U2Self: groups, account state). None for a
    /// user of an accounts file.
    pub account: Option<kcd::User>,
    /// SID and groups as the domain stated them at sign-in: the verified PAC
    /// of the user's own ticket (Negotiate) or of the password check's
    /// (Basic by the KDC). None for NTLM: the authorize stage asks kcd.
    pub logon: Option<Arc<kcd::Logon>>,
    pub signed_in: SystemTime,
    /// What an OpenID provider said about the sign-in (OIDC, Bearer).
    pub federated: Option<Arc<oidc::Federated>>,
}

impl User {
    pub(crate) fn new(name: String, scheme: Scheme, principal: Option<String>) -> Result<User, String> {
        // UTF-8 names (müller) travel as raw bytes; only control characters cannot.
        let header = HeaderValue::from_bytes(name.as_bytes())
            .map_err(|_| format!("{name}: user name cannot travel in a header"))?;
        Ok(User {
            name: name.into(),
            scheme,
            header,
            principal: principal.map(Into::into),
            account: None,
            logon: None,
            signed_in: SystemTime::now(),
            federated: None,
        })
    }

    /// The user is an account of the domain of `realm` (see [`kcd_user`]).
    fn of_domain(mut self, realm: &str) -> User {
        self.account = Some(kcd_user(&self.name, self.principal.as_deref(), realm));
        self
    }
}

/// How kcd asks for a signed-in user: their exact principal after Kerberos;
/// a sign-in name with `@` is already a UPN (NTLM users may type one); else
/// `account@REALM`. Delegation and the access rules' lookups use the same.
pub fn kcd_user(name: &str, principal: Option<&str>, realm: &str) -> kcd::User {
    let account = name.rsplit('\\').next().unwrap_or(name);
    match principal {
        Some(p) => kcd::User::Account(p.to_owned()),
        None if account.contains('@') => kcd::User::Upn { upn: account.to_owned(), account: account.to_owned() },
        None => kcd::User::Account(format!("{account}@{realm}")),
    }
}

/// Authentication state of one connection.
#[derive(Default)]
pub struct ConnAuth {
    state: Mutex<State>,
    /// A Kerberos attempt failed here: with `negotiate_once`, Negotiate is not
    /// offered again on this connection.
    negotiate_failed: AtomicBool,
    /// HTTP/2: nothing is kept on the connection.
    http2: bool,
    /// The last session cookie of the sign-in page that opened here.
    opened: forms::Opened,
}

#[derive(Default)]
enum State {
    #[default]
    None,
    /// CHALLENGE sent; the AUTHENTICATE must come on this connection.
    Challenged(ntlm::ChallengeSent, Wrap),
    /// SPNEGO: the client's first mechanism was not one gatehouse takes, so it
    /// named NTLM; the client's NTLM NEGOTIATE comes next, and the mechListMIC
    /// is then required (RFC 4178 5).
    NtlmChosen {
        mech_types: Vec<u8>,
    },
    Authenticated(Arc<User>),
}

/// How the NTLM messages of a handshake travel.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Wrap {
    /// Bare, under this scheme name (`NTLM`, or `Negotiate` for clients that
    /// send raw NTLM under it).
    Bare(&'static str),
    /// Inside SPNEGO; `mech_types` is the client's MechTypeList as received, for
    /// the mechListMIC.
    Spnego { mech_types: Vec<u8>, mic_required: bool },
}

impl ConnAuth {
    pub fn new(http2: bool) -> ConnAuth {
        ConnAuth { http2, ..Default::default() }
    }

    fn take(&self) -> State {
        std::mem::take(&mut *self.state.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn set(&self, s: State) {
        // Nothing is kept on an HTTP/2 connection: each stream authenticates.
        if self.http2 && matches!(s, State::Authenticated(_)) {
            return;
        }
        *self.state.lock().unwrap_or_else(|e| e.into_inner()) = s;
    }

    fn user(&self) -> Option<Arc<User>> {
        match &*self.state.lock().unwrap_or_else(|e| e.into_inner()) {
            State::Authenticated(u) => Some(u.clone()),
            _ => None,
        }
    }

    /// The connection's logon, if it is `user`'s, is dropped: the next
    /// request must sign in again.
    pub fn forget(&self, user: &User) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if matches!(&*state, State::Authenticated(u) if u.name == user.name) {
            *state = State::None;
        }
    }

    fn negotiate_failed(&self) -> bool {
        self.negotiate_failed.load(Ordering::Relaxed)
    }

    fn set_negotiate_failed(&self) {
        self.negotiate_failed.store(true, Ordering::Relaxed);
    }
}

/// What the request may do next.
pub enum Verdict {
    /// Forward it as this user; the header, if any, goes on the response as
    /// `WWW-Authenticate` (the final token of the handshake: mutual
    /// authentication, the server's mechListMIC).
    Pass(Arc<User>, Option<HeaderValue>),
    /// Answer with this (a 401 challenge or refusal, or a 503), after draining the body.
    Answer(Box<Response<ResponseBody>>, Reason),
    /// HTTP/2, and the client starts a connection-bound scheme: reset the stream
    /// with HTTP_1_1_REQUIRED so that it retries on HTTP/1.1 (as IIS does).
    Http11Required(&'static str),
}

/// Why a request was answered instead of forwarded: for the logs.
pub enum Reason {
    /// A handshake leg or an offer to authenticate: normal, logged at debug.
    Handshake,
    /// Refused, and why in the classes the sign-in counters tell apart.
    Refused(String, crate::metrics::Cause),
    Unavailable(String),
}

/// The schemes offered to this client on this site: the first matching
/// `[[site.auth_for]]` rule, else the site's list.
pub fn offered<'a>(site: &'a Site, user_agent: Option<&str>, client: IpAddr) -> &'a Vec<Scheme> {
    for rule in &site.auth_for {
        let ua_ok = rule.user_agent.as_deref().is_none_or(|g| user_agent.is_some_and(|ua| glob_match(g, ua)));
        let ip_ok = rule.client_ip.is_empty() || rule.client_ip.iter().any(|c| c.contains(client));
        if ua_ok && ip_ok {
            return &rule.auth;
        }
    }
    &site.auth
}

/// The schemes to offer now: [`offered`], without Negotiate on a connection
/// where Kerberos already failed when the site says `negotiate_once` (browsers
/// otherwise loop or prompt). If Negotiate was all there was, it stays.
fn to_offer(site: &Site, offered: &[Scheme], ctx: Client<'_>) -> Vec<Scheme> {
    if site.negotiate_once && ctx.auth.negotiate_failed() {
        let rest: Vec<Scheme> = offered.iter().copied().filter(|s| *s != Scheme::Negotiate).collect();
        if !rest.is_empty() {
            return rest;
        }
    }
    offered.to_vec()
}

async fn check(headers: &HeaderMap, ctx: Client<'_>, setup: &Authenticator, site: &Site) -> Verdict {
    let offered = offered(site, headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()), ctx.info.peer.ip());
    let schemes = to_offer(site, offered, ctx);
    let authorization = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    if let Some(token) =
        authorization.and_then(|v| v.split_once(' ')).and_then(|(s, t)| s.eq_ignore_ascii_case("bearer").then_some(t))
    {
        // RFC 6750: one provider's tokens per site and client.
        if let Some(i) = offered.iter().find_map(|s| match s {
            Scheme::Bearer(i) => Some(*i),
            _ => None,
        }) {
            let needs_mfa = site.mfa && !setup.mfa_exempt.iter().any(|n| n.contains(ctx.info.peer.ip()));
            return oidc::bearer(token.trim(), ctx, setup, i, needs_mfa).await;
        }
    }
    let credentials = authorization.and_then(|v| {
        let (scheme, rest) = v.split_once(' ')?;
        let scheme = [Scheme::Ntlm, Scheme::Negotiate, Scheme::Basic]
            .into_iter()
            .find(|s| s.name().eq_ignore_ascii_case(scheme))?;
        // A scheme this client was not offered is ignored, as if absent.
        offered.contains(&scheme).then(|| (scheme, rest.trim().to_owned()))
    });
    if ctx.info.http2 {
        if let Some((scheme, token)) = &credentials {
            if let Some(why) = connection_bound(*scheme, token) {
                return Verdict::Http11Required(why);
            }
        }
    }
    let Some((scheme, token)) = credentials else {
        // No (usable) credentials: an authenticated connection carries on, a
        // browser's session cookie signs it in (or it is sent to sign in),
        // anyone else is told what to use.
        if let Some(user) = ctx.auth.user() {
            return Verdict::Pass(user, None);
        }
        // A browser's session cookie is the same for Forms and OIDC; without
        // one it goes to the sign-in page, or to the provider when the site
        // signs browsers in there only.
        let page = if offered.contains(&Scheme::Forms) {
            Some(format!("{}?return={}", forms::SIGN_IN, websession::form::encode(ctx.target)))
        } else {
            offered.iter().find_map(|s| match s {
                Scheme::Oidc(i) => oidc::start_location(setup, *i, ctx.target),
                _ => None,
            })
        };
        if let (Some(page), Some(forms)) = (page, &setup.forms) {
            let needs_mfa = site.mfa && !setup.mfa_exempt.iter().any(|n| n.contains(ctx.info.peer.ip()));
            if let Some(verdict) = forms::judge(forms, headers, ctx, needs_mfa, &page).await {
                return verdict;
            }
        }
        return Verdict::Answer(unauthorized(&schemes, None), Reason::Handshake);
    };
    use base64::Engine;
    let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(token.as_bytes()) else {
        ctx.auth.set(State::None);
        return Verdict::Answer(
            unauthorized(&schemes, None),
            Reason::Refused("Authorization is not base64".into(), crate::metrics::Cause::BadMessage),
        );
    };
    match scheme {
        Scheme::Ntlm => ntlm::leg(&bytes, Wrap::Bare("NTLM"), ctx, setup, &schemes).await,
        Scheme::Basic => basic::check(&bytes, ctx, setup, &schemes).await,
        // Never parsed from `Authorization`: a cookie, or a bearer token, above.
        Scheme::Forms | Scheme::Oidc(_) | Scheme::Bearer(_) => {
            refuse(&schemes, "these credentials come in a cookie or as a bearer token".into())
        }
        Scheme::Negotiate => match negotiate::leg(&bytes, ctx, setup, &schemes).await {
            // Kerberos just failed here: the refusal already offers what is left.
            Verdict::Answer(_, Reason::Refused(why, cause)) if ctx.auth.negotiate_failed() => {
                refuse_as(&to_offer(site, offered, ctx), why, cause)
            }
            v => v,
        },
    }
}

/// Whether these credentials start a connection-bound handshake, which cannot
/// run on HTTP/2's multiplexed streams: NTLM, bare or inside SPNEGO (where the
/// client's first mechanism is not Kerberos, gatehouse would pick NTLM; a
/// NegTokenResp continues such a handshake).
fn connection_bound(scheme: Scheme, token: &str) -> Option<&'static str> {
    use base64::Engine;
    match scheme {
        Scheme::Ntlm => Some("NTLM is connection-bound"),
        Scheme::Basic | Scheme::Forms | Scheme::Oidc(_) | Scheme::Bearer(_) => None,
        Scheme::Negotiate => {
            let bytes = base64::engine::general_purpose::STANDARD.decode(token.as_bytes()).ok()?;
            match spnego::parse_client_token(&bytes).ok()? {
                spnego::ClientToken::RawNtlm => Some("NTLM under Negotiate is connection-bound"),
                spnego::ClientToken::Resp(_) => Some("a SPNEGO continuation is connection-bound"),
                spnego::ClientToken::Init(init) if !init.mech_types[0].is_kerberos() => {
                    Some("NTLM inside SPNEGO is connection-bound")
                }
                _ => None,
            }
        }
    }
}

/// 401 with one `WWW-Authenticate` per offered scheme, or the given challenge.
fn unauthorized(schemes: &[Scheme], challenge: Option<&str>) -> Box<Response<ResponseBody>> {
    let mut resp = Response::new(ResponseBody::local(bytes::Bytes::from_static(
        b"401 Unauthorized: sign in with your domain account.\n",
    )));
    *resp.status_mut() = StatusCode::UNAUTHORIZED;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    match challenge {
        Some(c) => {
            if let Ok(v) = HeaderValue::from_str(c) {
                h.append(header::WWW_AUTHENTICATE, v);
            }
        }
        None => {
            // Forms is a page, not an HTTP authentication scheme.
            for s in schemes.iter().filter(|s| !s.is_browser_sign_in()) {
                h.append(header::WWW_AUTHENTICATE, HeaderValue::from_static(offer(*s)));
            }
        }
    }
    Box::new(resp)
}

/// What a 401 offers for each scheme. Basic needs a realm (RFC 7617); browsers
/// show it in their prompt.
fn offer(scheme: Scheme) -> &'static str {
    match scheme {
        Scheme::Basic => "Basic realm=\"Domain account\", charset=\"UTF-8\"",
        other => other.name(),
    }
}

/// A refusal of a malformed or out-of-order message.
fn refuse(schemes: &[Scheme], why: String) -> Verdict {
    refuse_as(schemes, why, crate::metrics::Cause::BadMessage)
}

fn refuse_as(schemes: &[Scheme], why: String, cause: crate::metrics::Cause) -> Verdict {
    Verdict::Answer(unauthorized(schemes, None), Reason::Refused(why, cause))
}

fn service_unavailable(why: String) -> Verdict {
    let mut resp = Response::new(ResponseBody::local(bytes::Bytes::from_static(
        b"503 Service Unavailable: the domain cannot be reached to check your password; try again shortly.\n",
    )));
    *resp.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("30"));
    Verdict::Answer(Box::new(resp), Reason::Unavailable(why))
}

fn encode(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site(rules: Vec<crate::config::AuthRule>) -> Site {
        Site {
            name: "s".into(),
            listener: "l".into(),
            hosts: vec![],
            path_prefix: "/".into(),
            farm: crate::config::Farm::one("http://x:1"),
            family: "s".into(),
            host_header: None,
            identity_header: None,
            stream_idle: None,
            auth: vec![Scheme::Negotiate, Scheme::Ntlm],
            auth_for: rules,
            negotiate_once: true,
            delegation: crate::config::Delegation::None,
            websocket: true,
            rules: Default::default(),
            mfa: false,
            claims: Default::default(),
        }
    }

    #[test]
    fn first_matching_rule_chooses_the_schemes() {
        use crate::config::AuthRule;
        let s = site(vec![
            AuthRule { user_agent: Some("*Communicator*".into()), client_ip: vec![], auth: vec![Scheme::Ntlm] },
            AuthRule { user_agent: None, client_ip: vec!["10.0.0.0/8".parse().unwrap()], auth: vec![Scheme::Ntlm] },
            AuthRule {
                user_agent: Some("MSRPC".into()),
                client_ip: vec!["192.0.2.0/24".parse().unwrap()],
                auth: vec![Scheme::Ntlm],
            },
        ]);
        // Which list came back tells which rule matched.
        let which = |ua: Option<&str>, ip: &str| {
            let got = offered(&s, ua, ip.parse().unwrap());
            if std::ptr::eq(got, &s.auth) {
                return "site".to_string();
            }
            let i = s.auth_for.iter().position(|r| std::ptr::eq(got, &r.auth)).unwrap();
            format!("rule {i}")
        };
        assert_eq!(which(Some("Microsoft Office Communicator 2007 R2"), "203.0.113.9"), "rule 0");
        assert_eq!(which(Some("Microsoft Office Communicator"), "10.1.1.1"), "rule 0", "first match wins");
        assert_eq!(which(Some("Mozilla/5.0"), "10.1.1.1"), "rule 1");
        assert_eq!(which(Some("MSRPC"), "192.0.2.5"), "rule 2");
        assert_eq!(which(Some("MSRPC"), "203.0.113.9"), "site", "both conditions of a rule must match");
        assert_eq!(which(None, "203.0.113.9"), "site");
    }

    #[test]
    fn connection_bound_schemes_on_http2() {
        use base64::Engine;
        let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        let ntlm_negotiate = b"NTLMSSP\0\x01\0\0\0\x07\x82\x08\xa2";
        assert!(connection_bound(Scheme::Ntlm, &b64(ntlm_negotiate)).is_some());
        assert!(connection_bound(Scheme::Basic, &b64(b"bob:pw")).is_none());
        assert!(connection_bound(Scheme::Negotiate, &b64(ntlm_negotiate)).is_some(), "raw NTLM under Negotiate");
        let ntlm_first = spnego::encode_init(&[spnego::NTLMSSP], Some(ntlm_negotiate), None);
        assert!(connection_bound(Scheme::Negotiate, &b64(&ntlm_first)).is_some(), "NTLM inside SPNEGO");
        let krb_first = spnego::encode_init(&[spnego::MS_KRB5, spnego::NTLMSSP], Some(b"\x60\x00"), None);
        assert!(connection_bound(Scheme::Negotiate, &b64(&krb_first)).is_none(), "Kerberos runs on h2");
        let continuation = spnego::encode_client_resp(Some(b"NTLMSSP\0\x03"), None);
        assert!(connection_bound(Scheme::Negotiate, &b64(&continuation)).is_some());
        // Garbage is not reset: it goes on to be refused with a 401 and a cause.
        assert!(connection_bound(Scheme::Negotiate, "%%%").is_none());
    }
}
