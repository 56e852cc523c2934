//! Authentication at the edge: which schemes a client is offered, the
//! connection-bound NTLM handshake, and extranet lockout protection.
//!
//! NTLM authenticates the TCP connection, not the request: the three legs must
//! travel on one connection, and the identity then belongs to that connection
//! and to no other. So the handshake state lives in [`ConnAuth`], inside the
//! connection's context, and dies with it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};

use crate::accounts::CheckError;
use crate::body::ResponseBody;
use crate::config::{Lockout as LockoutConfig, Scheme, Site};
use crate::connection::ConnContext;
use crate::server::Generation;

/// An authenticated user, as the backend and the logs will know them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// `DOMAIN\user`.
    pub name: Arc<str>,
    pub scheme: Scheme,
    /// `name` as a header value, made once per logon rather than per request.
    pub header: HeaderValue,
}

/// Authentication state of one connection.
#[derive(Default)]
pub struct ConnAuth {
    state: Mutex<State>,
}

#[derive(Default)]
enum State {
    #[default]
    None,
    /// CHALLENGE sent; the AUTHENTICATE must come on this connection.
    Challenged(ntlm::ChallengeSent),
    Authenticated(Arc<User>),
}

impl ConnAuth {
    fn take(&self) -> State {
        std::mem::take(&mut *self.state.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn set(&self, s: State) {
        *self.state.lock().unwrap_or_else(|e| e.into_inner()) = s;
    }

    fn user(&self) -> Option<Arc<User>> {
        match &*self.state.lock().unwrap_or_else(|e| e.into_inner()) {
            State::Authenticated(u) => Some(u.clone()),
            _ => None,
        }
    }
}

/// What the request may do next.
pub enum Verdict {
    /// Forward it as this user.
    Pass(Arc<User>),
    /// Answer with this (a 401 challenge or refusal, or a 503), after draining the body.
    Answer(Box<Response<ResponseBody>>, Reason),
}

/// Why a request was answered instead of forwarded: for the logs.
pub enum Reason {
    /// A handshake leg or an offer to authenticate: normal, logged at debug.
    Handshake,
    Refused(String),
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

/// Decides about a request to a site that requires authentication.
pub async fn check<B>(req: &Request<B>, ctx: &ConnContext, generation: &Generation, site: &Site) -> Verdict {
    let schemes = offered(site, req.headers().get(header::USER_AGENT).and_then(|v| v.to_str().ok()), ctx.peer.ip());
    let token = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| {
        let (scheme, rest) = v.split_once(' ')?;
        scheme.eq_ignore_ascii_case("NTLM").then(|| rest.trim().to_owned())
    });
    let token = token.filter(|_| schemes.contains(&Scheme::Ntlm));
    let Some(token) = token else {
        // No (usable) credentials: an authenticated connection carries on,
        // anyone else is told what to use.
        if let Some(user) = ctx.auth.user() {
            return Verdict::Pass(user);
        }
        return Verdict::Answer(unauthorized(schemes, None), Reason::Handshake);
    };
    let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(token.as_bytes()) else {
        ctx.auth.set(State::None);
        return Verdict::Answer(unauthorized(schemes, None), Reason::Refused("Authorization is not base64".into()));
    };
    let Some(ntlm_setup) = generation.ntlm.get(&*ctx.listener) else {
        return Verdict::Answer(
            unauthorized(schemes, None),
            Reason::Refused("NTLM is not configured on this listener".into()),
        );
    };
    match bytes.get(8) {
        Some(1) => {
            // NEGOTIATE: a new handshake, also on a connection that was already
            // authenticated (clients re-authenticate, e.g. before a POST).
            let mut challenge = [0u8; 8];
            if getrandom::fill(&mut challenge).is_err() {
                return Verdict::Answer(
                    unauthorized(schemes, None),
                    Reason::Unavailable("no randomness for a challenge".into()),
                );
            }
            match ntlm::Acceptor::challenge(ntlm_setup, &bytes, challenge, ntlm::FileTime::now()) {
                Ok(sent) => {
                    let reply = format!("NTLM {}", base64::engine::general_purpose::STANDARD.encode(sent.message()));
                    ctx.auth.set(State::Challenged(sent));
                    Verdict::Answer(unauthorized(&[], Some(&reply)), Reason::Handshake)
                }
                Err(e) => {
                    ctx.auth.set(State::None);
                    Verdict::Answer(
                        unauthorized(schemes, None),
                        Reason::Refused(format!("NTLM negotiate refused: {e}")),
                    )
                }
            }
        }
        Some(3) => {
            let State::Challenged(sent) = ctx.auth.take() else {
                return Verdict::Answer(
                    unauthorized(schemes, None),
                    Reason::Refused("NTLM authenticate without a challenge on this connection".into()),
                );
            };
            authenticate(sent, &bytes, ctx, generation, schemes).await
        }
        _ => {
            ctx.auth.set(State::None);
            Verdict::Answer(
                unauthorized(schemes, None),
                Reason::Refused("not an NTLM negotiate or authenticate message".into()),
            )
        }
    }
}

async fn authenticate(
    sent: ntlm::ChallengeSent,
    bytes: &[u8],
    ctx: &ConnContext,
    generation: &Generation,
    schemes: &[Scheme],
) -> Verdict {
    let refuse = |why: String| Verdict::Answer(unauthorized(schemes, None), Reason::Refused(why));
    let received = match sent.read_authenticate(bytes) {
        Ok(r) => r,
        Err(e) => return refuse(format!("NTLM authenticate refused: {e}")),
    };
    let who = format!("{}\\{}", received.domain, received.user);
    let lockout = &ctx.shared.lockout;
    let limits = &generation.config.lockout;
    if let Err(why) = lockout.allowed(&who, ctx.peer.ip(), limits) {
        return refuse(format!("{who}: {why}; the password was not sent to the domain"));
    }
    let checked = match &generation.accounts {
        Some(crate::server::AccountsRuntime::File(users)) => users.check(&received),
        Some(crate::server::AccountsRuntime::Winbind(winbind)) => winbind.check(&received).await,
        None => Err(CheckError::Unavailable("no [accounts] configured".into())),
    };
    let key = match checked {
        Ok(key) => key,
        Err(CheckError::Rejected(why)) => {
            lockout.failed(&who, ctx.peer.ip());
            return refuse(format!("{who}: {why}"));
        }
        Err(CheckError::Unavailable(why)) => {
            return Verdict::Answer(
                service_unavailable(),
                Reason::Unavailable(format!("{who}: cannot check the password: {why}")),
            );
        }
    };
    match received.finish(key, ctx.channel_bindings, ntlm::FileTime::now()) {
        Ok(done) => {
            lockout.succeeded(&who);
            // A client that sent no domain logged on to ours.
            let domain = if done.domain.is_empty() {
                generation.config.domain.as_ref().map_or(String::new(), |d| d.netbios_name.clone())
            } else {
                done.domain.to_uppercase()
            };
            let name = format!("{domain}\\{}", done.user);
            // UTF-8 names (müller) travel as raw bytes; only control characters cannot.
            let Ok(header) = HeaderValue::from_bytes(name.as_bytes()) else {
                return refuse(format!("{name}: user name cannot travel in a header"));
            };
            let user = Arc::new(User { name: name.into(), scheme: Scheme::Ntlm, header });
            ctx.auth.set(State::Authenticated(user.clone()));
            Verdict::Pass(user)
        }
        Err(e) => {
            lockout.failed(&who, ctx.peer.ip());
            refuse(format!("{who}: {e}"))
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
            for s in schemes {
                h.append(header::WWW_AUTHENTICATE, HeaderValue::from_static(s.name()));
            }
        }
    }
    Box::new(resp)
}

fn service_unavailable() -> Box<Response<ResponseBody>> {
    let mut resp = Response::new(ResponseBody::local(bytes::Bytes::from_static(
        b"503 Service Unavailable: the domain cannot be reached to check your password; try again shortly.\n",
    )));
    *resp.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("30"));
    Box::new(resp)
}

/// Extranet lockout protection. Counts failed logons per user and per client
/// address in a sliding window; at the limit gatehouse answers 401 itself and
/// stops forwarding guesses to the domain controller, so that an attacker on
/// the internet cannot lock the real user out of AD.
#[derive(Default)]
pub struct Lockout {
    failures: Mutex<HashMap<Key, Vec<Instant>>>,
    window: Mutex<Duration>,
}

#[derive(Hash, PartialEq, Eq, Clone)]
enum Key {
    User(String),
    Client(IpAddr),
}

impl Lockout {
    fn recent(&self, key: &Key, window: Duration) -> usize {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let Some(list) = map.get_mut(key) else { return 0 };
        list.retain(|t| t.elapsed() < window);
        list.len()
    }

    pub fn allowed(&self, user: &str, client: IpAddr, limits: &LockoutConfig) -> Result<(), String> {
        *self.window.lock().unwrap_or_else(|e| e.into_inner()) = limits.window;
        if self.recent(&user_key(user), limits.window) >= limits.max_failures_per_user as usize {
            return Err(format!(
                "extranet lockout: {} failed logons for this user within {:?}",
                limits.max_failures_per_user, limits.window
            ));
        }
        if self.recent(&Key::Client(client), limits.window) >= limits.max_failures_per_client as usize {
            return Err(format!(
                "extranet lockout: {} failed logons from {client} within {:?}",
                limits.max_failures_per_client, limits.window
            ));
        }
        Ok(())
    }

    pub fn failed(&self, user: &str, client: IpAddr) {
        let now = Instant::now();
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        for key in [user_key(user), Key::Client(client)] {
            map.entry(key).or_default().push(now);
        }
    }

    /// AD resets a user's bad-password count on a good logon; so do we.
    pub fn succeeded(&self, user: &str) {
        self.failures.lock().unwrap_or_else(|e| e.into_inner()).remove(&user_key(user));
    }

    /// Forgets old failures; run periodically.
    pub fn sweep(&self) {
        let window = *self.window.lock().unwrap_or_else(|e| e.into_inner());
        self.failures.lock().unwrap_or_else(|e| e.into_inner()).retain(|_, list| {
            list.retain(|t| t.elapsed() < window);
            !list.is_empty()
        });
    }
}

/// The account a logon attempt counts against. The domain a client sends is
/// ignored, and UPN and down-level forms are folded: otherwise an attacker could
/// rotate `ADTEST\bob`, `ad.test\bob`, `\bob` and `bob@ad.test`, each with its
/// own count, while the domain controller counts them all against bob.
fn user_key(user: &str) -> Key {
    let name = user.rsplit('\\').next().unwrap_or(user);
    let name = name.split('@').next().unwrap_or(name);
    Key::User(name.to_lowercase())
}

/// An address block such as `10.0.0.0/8`, or one address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    prefix: u8,
}

impl FromStr for Cidr {
    type Err = ();

    fn from_str(s: &str) -> Result<Cidr, ()> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a.parse::<IpAddr>().map_err(|_| ())?, Some(p.parse::<u8>().map_err(|_| ())?)),
            None => (s.parse::<IpAddr>().map_err(|_| ())?, None),
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        if prefix > max {
            return Err(());
        }
        Ok(Cidr { net: addr, prefix })
    }
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match (self.net, ip) {
            (IpAddr::V4(_), IpAddr::V6(v6)) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            _ => ip,
        };
        match (self.net, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = if self.prefix == 0 { 0 } else { u32::MAX << (32 - self.prefix) };
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = if self.prefix == 0 { 0 } else { u128::MAX << (128 - self.prefix) };
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

/// `*` and `?` wildcards, ASCII case-insensitive.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == b'?' || p[pi].eq_ignore_ascii_case(&t[ti])) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some(pi);
            pi += 1;
            mark = ti;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("*Communicator*", "Microsoft Office Communicator 2007 R2"));
        assert!(glob_match("*communicator*", "MICROSOFT OFFICE COMMUNICATOR"));
        assert!(!glob_match("*Communicator*", "Mozilla/5.0"));
        assert!(glob_match("MSRPC", "msrpc"));
        assert!(glob_match("Outlook?", "Outlook/"));
        assert!(glob_match("*", ""));
        assert!(!glob_match("a*b", "acd"));
    }

    #[test]
    fn cidrs() {
        let c: Cidr = "10.0.0.0/8".parse().unwrap();
        assert!(c.contains("10.1.2.3".parse().unwrap()));
        assert!(!c.contains("11.0.0.1".parse().unwrap()));
        assert!(c.contains("::ffff:10.0.0.1".parse().unwrap()));
        let one: Cidr = "192.168.1.5".parse().unwrap();
        assert!(one.contains("192.168.1.5".parse().unwrap()) && !one.contains("192.168.1.6".parse().unwrap()));
        let v6: Cidr = "fd00::/8".parse().unwrap();
        assert!(v6.contains("fd12::1".parse().unwrap()));
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!("nonsense".parse::<Cidr>().is_err());
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("8.8.8.8".parse().unwrap()));
    }

    fn site(rules: Vec<crate::config::AuthRule>) -> Site {
        Site {
            name: "s".into(),
            listener: "l".into(),
            hosts: vec![],
            path_prefix: "/".into(),
            backend: crate::config::Backend { origin: "http://x:1".into(), tls: None, host: "x".into(), port: 1 },
            host_header: None,
            identity_header: None,
            stream_idle: None,
            auth: vec![Scheme::Ntlm],
            auth_for: rules,
            delegation: None,
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
            // (Scheme has one variant so far, so the lists are told apart by address.)
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
    fn lockout_counts_and_resets() {
        let l = Lockout::default();
        let limits =
            LockoutConfig { max_failures_per_user: 2, max_failures_per_client: 3, window: Duration::from_secs(60) };
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        assert!(l.allowed("ADTEST\\bob", ip, &limits).is_ok());
        l.failed("ADTEST\\bob", ip);
        l.failed("adtest\\BOB", ip);
        assert!(l.allowed("ADTEST\\bob", ip, &limits).is_err(), "user limit");
        assert!(l.allowed("ADTEST\\alice", "192.0.2.2".parse().unwrap(), &limits).is_ok());
        l.failed("ADTEST\\carol", ip);
        assert!(l.allowed("ADTEST\\alice", ip, &limits).is_err(), "client limit");
        l.succeeded("ADTEST\\bob");
        assert!(l.allowed("ADTEST\\bob", "192.0.2.9".parse().unwrap(), &limits).is_ok());
    }

    #[test]
    fn lockout_cannot_be_dodged_by_spelling_the_domain_differently() {
        let l = Lockout::default();
        let limits =
            LockoutConfig { max_failures_per_user: 3, max_failures_per_client: 100, window: Duration::from_secs(60) };
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        l.failed("ADTEST\\bob", ip);
        l.failed("ad.test\\Bob", ip);
        l.failed("\\bob@ad.test", ip);
        for spelling in ["ADTEST\\bob", "OTHER\\BOB", "\\bob", "bob@AD.TEST"] {
            assert!(
                l.allowed(spelling, "192.0.2.2".parse().unwrap(), &limits).is_err(),
                "{spelling} dodged the lockout"
            );
        }
    }
}
