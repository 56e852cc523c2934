//! `[admin]`: the operators' listener (`/metrics`, `/healthz`, `/readyz`,
//! `/status`). Plain HTTP, meant for loopback or a management network: it
//! answers only clients in `allow`, and it is never a site's listener.
//!
//! `[admin.sign_in]` puts the status page (and only it) behind a domain
//! sign-in and access rules, read like a site's: `auth`, `allow`, `deny`.

use std::net::SocketAddr;

use super::reader::{Reader, Section};
use super::{Rules, Scheme, Site};

/// Where Prometheus' own exporters sit (9100 node, 9113 nginx); 9180 is free
/// among the well-known ones.
pub const DEFAULT_BIND: &str = "127.0.0.1:9180";

/// The name the admin listener goes by where a listener's name is asked
/// (its NTLM acceptor settings, logs, the access log); no `[[listener]]` may
/// take it.
pub const LISTENER: &str = "[admin]";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admin {
    pub bind: SocketAddr,
    /// Clients that may ask; everyone else gets 403. Loopback by default.
    pub allow: Vec<crate::net::Cidr>,
    /// Whether `/status` (the HTML page) is served.
    pub status_page: bool,
    /// `[admin.sign_in]`: `/status` only for these users.
    pub sign_in: Option<SignIn>,
}

impl Admin {
    /// What the listener's socket and accept loop are made from. The sign-in
    /// is not: each request reads it from the generation serving, so that a
    /// reload changes who may look without closing anyone's connection.
    pub fn listener(&self) -> (SocketAddr, &[crate::net::Cidr], bool) {
        (self.bind, &self.allow, self.status_page)
    }
}

/// `[admin.sign_in]`: who may see the status page, as a site says who may
/// use it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignIn {
    /// NTLM and Negotiate only (see `read`).
    pub auth: Vec<Scheme>,
    /// `allow` (required) and `deny`; names become SIDs when the
    /// configuration loads, as a site's do.
    pub rules: Rules,
}

impl SignIn {
    /// The internal site that the pipeline's authenticate and authorize
    /// stages run for the status page: the sign-in settings, no backend.
    pub fn site(&self) -> Site {
        Site {
            name: LISTENER.into(),
            listener: LISTENER.into(),
            hosts: Vec::new(),
            path_prefix: "/status".into(),
            farm: super::Farm { members: Vec::new(), health: super::Health::off(), affinity: super::Affinity::None },
            family: LISTENER.into(),
            host_header: None,
            identity_header: None,
            stream_idle: None,
            auth: self.auth.clone(),
            auth_for: Vec::new(),
            negotiate_once: true,
            delegation: super::Delegation::None,
            websocket: false,
            rules: self.rules.clone(),
            mfa: false,
            claims: Default::default(),
        }
    }
}

impl Reader<'_> {
    pub(super) fn admin(&mut self, s: &mut Section<'_, '_>) -> Option<Admin> {
        let bind = match self.string(s, "bind") {
            None => DEFAULT_BIND.parse().ok()?,
            Some((text, span)) => match text.parse::<SocketAddr>() {
                Ok(a) => a,
                Err(_) => {
                    let why = format!("`{text}` is not an address:port such as \"{DEFAULT_BIND}\"");
                    self.problem(span, &s.key_path("bind"), why);
                    return None;
                }
            },
        };
        let allow = match s.get("allow").map(|v| v.span()) {
            None => ["127.0.0.0/8", "::1"].iter().filter_map(|n| n.parse().ok()).collect(),
            Some(span) => {
                let allow = self.networks(s, "allow");
                if allow.is_empty() {
                    let why = "an empty list lets no one ask; leave `allow` out for loopback only".into();
                    self.problem(span, &s.key_path("allow"), why);
                }
                allow
            }
        };
        let status_page = self.bool(s, "status_page").unwrap_or(true);
        let sign_in = match s.get("sign_in") {
            None => None,
            Some(v) => {
                let span = v.span();
                let mut t = self.section(v, s.key_path("sign_in"), &["auth", "allow", "deny"])?;
                let sign_in = self.sign_in(&mut t);
                self.finish(t);
                if !status_page {
                    let why = "sign_in protects the status page, which status_page = false turns off".into();
                    self.problem(span, &s.key_path("sign_in"), why);
                }
                Some(sign_in?)
            }
        };
        Some(Admin { bind, allow, status_page, sign_in })
    }

    fn sign_in(&mut self, s: &mut Section<'_, '_>) -> Option<SignIn> {
        let path = s.key_path("auth");
        let auth = match s.get("auth").map(|v| v.span()) {
            None => {
                self.problem(
                    s.span.clone(),
                    &path,
                    "say how administrators sign in: auth = [\"Negotiate\", \"NTLM\"]".into(),
                );
                None
            }
            Some(span) => {
                let before = self.problems.len();
                let schemes = self.schemes(s, "auth").unwrap_or_default();
                let unreadable = self.problems.len() > before;
                let bad: Vec<&str> = schemes
                    .iter()
                    .filter(|x| !matches!(x, Scheme::Ntlm | Scheme::Negotiate))
                    .map(|x| x.name())
                    .collect();
                if !bad.is_empty() {
                    let why = format!(
                        "{}: the status page takes NTLM and Negotiate only: it is for an administrator's \
                         domain-joined browser on the management network, which signs in without a prompt; \
                         Basic would send a password in clear over the admin listener's plain HTTP, and \
                         Forms, OIDC and Bearer need the sign-in page and TLS of a site",
                        bad.join(", ")
                    );
                    self.problem(span, &path, why);
                    None
                } else if unreadable {
                    // Already reported, name by name.
                    None
                } else if schemes.is_empty() {
                    let why = "an empty list signs nobody in; write auth = [\"Negotiate\", \"NTLM\"], \
                               or remove [admin.sign_in] to leave the page to the networks in allow"
                        .into();
                    self.problem(span, &path, why);
                    None
                } else {
                    Some(schemes)
                }
            }
        };
        let rules = self.rules(s);
        if rules.allow.is_empty() && !s.table.iter().any(|(k, _)| k.get_ref().as_ref() == "allow") {
            let why = "say who may see the status page, e.g. allow = [\"ADTEST\\\\gatehouse-admins\"]: \
                       without it every domain user who can reach the admin listener could"
                .into();
            self.problem(s.span.clone(), &s.key_path("allow"), why);
            return None;
        }
        Some(SignIn { auth: auth?, rules })
    }
}
