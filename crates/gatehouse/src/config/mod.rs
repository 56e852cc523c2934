//! The configuration: one TOML file, validated as a whole before anything serves.
//!
//! `load` never stops at the first problem: it reports every one it finds, each
//! with the file, line, column and key, so that `gatehouse check` can be run once
//! and the file fixed in one pass. The shapes here are the validated ones; the
//! reading lives in `read.rs`.

mod access;
mod admin;
mod farm;
mod files;
mod forms;
mod idp;
mod mfa;
mod names;
mod preset;
mod read;
mod reader;
#[cfg(test)]
pub(crate) mod tests;
mod users;
mod validate;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[cfg(test)]
pub use access::rule_entry;
pub use admin::{Admin, SignIn as AdminSignIn, LISTENER as ADMIN_LISTENER};
pub use forms::Forms;
pub use idp::{ClaimRules, Idp, Mapping};
pub use mfa::Mfa;
#[cfg(test)]
pub use preset::describe as describe_site;
pub use preset::describe_sites;
#[cfg(test)]
pub use read::load_str;
pub use read::{load, load_leaving_keytab};
#[cfg(test)]
pub use reader::{Problem, Problems};
pub use users::UserFile;

#[derive(Debug, Clone)]
pub struct Config {
    pub domain: Option<Domain>,
    pub accounts: Option<Accounts>,
    pub lockout: Lockout,
    /// How long a Basic user's checked password is remembered (0: never).
    pub basic_cache: Duration,
    pub listeners: Vec<Listener>,
    pub sites: Vec<Site>,
    pub timeouts: Timeouts,
    pub limits: Limits,
    pub log: Log,
    pub access: Access,
    /// `[affinity]`: the signed cookie's name and key, the session table's bounds.
    pub affinity: AffinitySettings,
    /// The sign-in page for browsers (the `Forms` scheme), when configured.
    pub forms: Option<Forms>,
    /// `[control]`: the socket `gatehouse backend` and `gatehouse sessions` talk to.
    pub control: Option<Control>,
    /// `[mfa]`: the second factors' store.
    pub mfa: Option<Mfa>,
    /// `[admin]`: the operators' listener (metrics, health, status page).
    pub admin: Option<Admin>,
    /// `[[idp]]`: OpenID Connect providers; `Scheme::Oidc(i)` and
    /// `Scheme::Bearer(i)` index this list.
    pub idps: Vec<Idp>,
    /// Sites a preset would publish and its `exclude` left out, by name
    /// (`exchange/ecp`), for `gatehouse check`.
    pub left_out: Vec<String>,
    /// Per site name, the keys a preset's `[[site.path]]` set, for `gatehouse check`.
    pub set_by_path: Vec<(String, Vec<&'static str>)>,
}

impl Config {
    /// Whether Basic passwords go to the KDC: only where `[domain]` has
    /// everything an AS exchange verified with gatehouse's own key needs. Else
    /// `[accounts]` checks them.
    pub fn basic_by_kdc(&self) -> bool {
        self.domain
            .as_ref()
            .is_some_and(|d| d.keytab.is_some() && d.service_principal.is_some() && !d.acceptor_spn.is_empty())
    }

    /// Where passwords are checked, for `gatehouse check`.
    pub fn describe_passwords(&self) -> String {
        let accounts = match &self.accounts {
            None => "nothing".to_owned(),
            Some(Accounts::File { path, users }) => format!("the file {} ({users:?})", path.display()),
            Some(Accounts::Winbind { .. }) => "the domain, through winbind".to_owned(),
        };
        let basic = if self.basic_by_kdc() { "the KDC (keytab)" } else { &accounts };
        format!("passwords: NTLM checked by {accounts}; Basic by {basic}")
    }
}

#[derive(Debug, Clone)]
pub struct Listener {
    pub name: String,
    pub bind: SocketAddr,
    pub tls: Option<ListenerTls>,
    /// Extended Protection for NTLM on this listener.
    pub channel_binding: ntlm::ChannelBindingPolicy,
    /// Offer HTTP/2 (ALPN `h2`) on this TLS listener.
    pub http2: bool,
    /// A plain listener that serves no site and sends every request to the
    /// TLS listener of this name (TMG's "redirect HTTP to HTTPS").
    pub redirect_to: Option<String>,
}

/// The Windows domain gatehouse speaks for.
#[derive(Debug, Clone)]
pub struct Domain {
    pub realm: String,
    pub netbios_name: String,
    /// gatehouse's own names in NTLM challenges.
    pub computer_netbios: String,
    pub computer_dns: String,
    /// Set as KRB5_CONFIG at start (MIT reads its configuration per process).
    pub krb5_conf: Option<PathBuf>,
    pub keytab: Option<PathBuf>,
    /// The account that delegates, e.g. `svc-proxy@AD.TEST`.
    pub service_principal: Option<String>,
    /// The SPNs clients ask Kerberos tickets for (`HTTP/mail.corp.example`,
    /// `HTTP/autodiscover.corp.example`); their keys are in `keytab`. A ticket
    /// is accepted only for the one naming the host the request was sent to.
    pub acceptor_spn: Vec<String>,
    /// RC4 (arcfour-hmac) tickets, session keys and keytab keys used as well
    /// as AES: only for a domain that cannot issue AES tickets.
    pub allow_rc4: bool,
    /// How many users' delegated credentials are kept at most; the least
    /// recently used are dropped first (and asked for again by S4U2Self).
    pub credential_cache_size: usize,
}

/// Where NTLM passwords, and Basic passwords when there is no keytab, are checked.
#[derive(Debug, Clone)]
pub enum Accounts {
    /// NT hashes from a local file, already read and checked.
    File { path: PathBuf, users: Arc<UserFile> },
    /// The domain controller, through Samba winbind's `ntlm_auth` helper.
    Winbind { ntlm_auth: PathBuf, smb_conf: Option<PathBuf>, helpers: usize, timeout: Duration },
}

/// Extranet lockout protection: stop asking the DC before AD locks a user out.
#[derive(Debug, Clone)]
pub struct Lockout {
    pub max_failures_per_user: u32,
    /// Per client address, and again per client network (`ipv4_prefix`, `ipv6_prefix`).
    pub max_failures_per_client: u32,
    pub window: Duration,
    /// The most counters each of the three tables (accounts, other names,
    /// clients) holds: the bound on the lockout's memory.
    pub max_entries: usize,
    pub ipv4_prefix: u8,
    pub ipv6_prefix: u8,
}

impl Default for Lockout {
    fn default() -> Self {
        Lockout {
            max_failures_per_user: 5,
            max_failures_per_client: 30,
            window: Duration::from_secs(30 * 60),
            max_entries: 100_000,
            ipv4_prefix: 32,
            ipv6_prefix: 64,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Ntlm,
    /// SPNEGO: Kerberos, or NTLM inside SPNEGO.
    Negotiate,
    /// User name and password, over TLS only; checked with the KDC where
    /// `[domain]` has a keytab, else by `[accounts]`.
    Basic,
    /// Browsers: a sign-in page and a session cookie (`[forms]`), over TLS
    /// only; the password checked as Basic's. Never in `WWW-Authenticate`.
    Forms,
    /// `"OIDC:NAME"`: browsers sign in at the provider `idps[i]` and carry
    /// the same session cookie as Forms'. Never in `WWW-Authenticate`.
    Oidc(u8),
    /// `"Bearer:NAME"`: an access token of the provider `idps[i]`.
    Bearer(u8),
}

impl Scheme {
    pub fn name(self) -> &'static str {
        match self {
            Scheme::Ntlm => "NTLM",
            Scheme::Negotiate => "Negotiate",
            Scheme::Basic => "Basic",
            Scheme::Forms => "Forms",
            Scheme::Oidc(_) => "OIDC",
            Scheme::Bearer(_) => "Bearer",
        }
    }

    /// A page and a session cookie, not an HTTP authentication scheme.
    pub fn is_browser_sign_in(self) -> bool {
        matches!(self, Scheme::Forms | Scheme::Oidc(_))
    }
}

/// `[[site.auth_for]]`: the schemes offered to matching clients.
#[derive(Debug, Clone)]
pub struct AuthRule {
    pub user_agent: Option<String>,
    pub client_ip: Vec<crate::net::Cidr>,
    pub auth: Vec<Scheme>,
}

/// Server certificates of one listener. The first is the default (no SNI, or a
/// name no certificate covers); the others are chosen by the names in their
/// subjectAltName.
#[derive(Debug, Clone)]
pub struct ListenerTls {
    pub certificates: Vec<Arc<rustls::sign::CertifiedKey>>,
    /// The file each certificate was read from, for messages.
    pub files: Vec<PathBuf>,
    /// Each certificate's key file (watched with the certificate's).
    pub keys: Vec<PathBuf>,
    /// `suite_order = "aes128-first"`: TLS 1.3's AES-128-GCM chosen over the
    /// client's first choice (docs/design.md, "TLS").
    pub aes128_first: bool,
}

#[derive(Debug, Clone)]
pub struct Site {
    pub name: String,
    pub listener: String,
    /// Lower-case host names without port; empty means any host.
    pub hosts: Vec<String>,
    pub path_prefix: String,
    /// The backends, how they are checked, and how sessions stay on one.
    pub farm: Farm,
    /// The `[[site]]` table the site came from (a preset's expanded sites
    /// share it): backends are drained by it, and affinity is kept per it.
    pub family: String,
    /// Sent as `Host` to the backend instead of the client's.
    pub host_header: Option<String>,
    /// Header that carries the user's identity to the backend. Any copy the client
    /// sends is always removed.
    pub identity_header: Option<http::HeaderName>,
    /// Overrides `[timeouts] stream_idle` for requests on this site.
    pub stream_idle: Option<Duration>,
    /// Schemes offered, in order; empty means anonymous.
    pub auth: Vec<Scheme>,
    pub auth_for: Vec<AuthRule>,
    /// Stop offering Negotiate on a connection where a Kerberos attempt failed.
    pub negotiate_once: bool,
    /// How the backend learns who the user is, beyond `identity_header`.
    pub delegation: Delegation,
    /// WebSocket upgrades are forwarded (after authentication, with their
    /// handshake checked); no other upgrade ever is.
    pub websocket: bool,
    /// Who may use the site (`allow`, `deny`).
    pub rules: Rules,
    /// `mfa = "required"`: a Forms session must also have passed a second
    /// factor, but from `[mfa] exempt_networks`.
    pub mfa: bool,
    /// What an OIDC session or bearer token must show (`require_acr`,
    /// `require_amr`, `require_group`).
    pub claims: ClaimRules,
}

impl Site {
    /// The password-only schemes (NTLM, Negotiate, Basic) this site offers to
    /// some client outside `exempt`: with `mfa = "required"`, those clients
    /// reach the site with a password alone.
    pub fn password_only_outside(&self, exempt: &[crate::net::Cidr]) -> Vec<Scheme> {
        let inside =
            |r: &AuthRule| !r.client_ip.is_empty() && r.client_ip.iter().all(|c| exempt.iter().any(|e| e.covers(c)));
        let mut out = Vec::new();
        let offered = self.auth.iter().chain(self.auth_for.iter().filter(|r| !inside(r)).flat_map(|r| r.auth.iter()));
        for s in offered {
            if !s.is_browser_sign_in() && !matches!(s, Scheme::Bearer(_)) && !out.contains(s) {
                out.push(*s);
            }
        }
        out
    }

    /// Whether any client of this site may be offered `scheme` (by `auth` or
    /// by an `auth_for` rule).
    /// Whether any client of this site is offered OpenID Connect sign-in.
    pub fn offers_oidc(&self) -> bool {
        self.auth.iter().chain(self.auth_for.iter().flat_map(|r| r.auth.iter())).any(|s| matches!(s, Scheme::Oidc(_)))
    }

    /// Whether any client of this site signs in with a page and a session
    /// cookie (Forms or OIDC).
    pub fn offers_browser_sign_in(&self) -> bool {
        self.auth.iter().chain(self.auth_for.iter().flat_map(|r| r.auth.iter())).any(|s| s.is_browser_sign_in())
    }

    pub fn offers(&self, scheme: Scheme) -> bool {
        self.auth.contains(&scheme) || self.auth_for.iter().any(|r| r.auth.contains(&scheme))
    }

    /// The site's Kerberos Constrained Delegation, if it delegates.
    pub fn kcd(&self) -> Option<&Kcd> {
        match &self.delegation {
            Delegation::Kcd(k) => Some(k),
            _ => None,
        }
    }
}

/// `delegation`: one of three, so that no combination of fields can say two.
#[derive(Debug, Clone, Default)]
pub enum Delegation {
    /// `"none"` (the default): the backend sees no credentials.
    #[default]
    None,
    /// `"kcd"`: sign in to the backend as the user (Kerberos Constrained
    /// Delegation).
    Kcd(Kcd),
    /// `"basic"`: the client's `Authorization: Basic` goes on to the backend
    /// (checked at the edge first), for backends that need the password
    /// itself. Only on a site that offers Basic alone.
    ForwardBasic,
}

#[derive(Debug, Clone)]
pub struct Kcd {
    /// The backends' SPN as written: one for the farm (`HTTP/mail.corp.example`,
    /// an alternate service account's), or a pattern, `HTTP/{backend_host}`,
    /// that each backend fills with its own host ([`Kcd::spn_for`]).
    pub spn: String,
    pub token: kcd::Token,
    pub send: SendToken,
    pub user: DelegationUser,
}

impl Kcd {
    /// The SPN of `backend`'s ticket.
    pub fn spn_for(&self, backend: &Backend) -> String {
        self.spn.replace(BACKEND_HOST, &backend.host)
    }
}

/// The pattern in `backend_spn` that each backend's host replaces.
pub const BACKEND_HOST: &str = "{backend_host}";

/// The name the backend ticket is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DelegationUser {
    /// `user@REALM` from the sign-in name `DOMAIN\user`.
    Account,
    /// The user's userPrincipalName, read from the domain controller (the PAC of
    /// an S4U2Self ticket) and sent as an enterprise name.
    Upn,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendToken {
    /// On the first request of every new backend connection: the backend keeps
    /// the authentication on the connection (IIS does).
    Always,
    /// On every request (backends that authenticate each request, such as
    /// Apache mod_auth_gssapi without GssapiConnectionBound).
    EveryRequest,
    /// When the backend answers 401 (bodiless requests; others carry it at once).
    On401,
}

/// Equal only when the origin and every TLS setting are: two sites that reach
/// one origin under different TLS policies get separate connectors and pools.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Backend {
    /// `scheme://host:port`, the pool's notion of "which backend".
    pub origin: String,
    pub tls: Option<BackendTls>,
    pub host: String,
    pub port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BackendTls {
    /// The name checked against the backend's certificate (and sent as SNI).
    pub server_name: String,
    /// PEM bundle of trusted CAs; None uses the system store.
    pub ca: Option<PathBuf>,
    pub verify: bool,
}

/// A site's backends (one is a farm of one), how each is checked, and how a
/// session stays on one of them.
#[derive(Debug, Clone)]
pub struct Farm {
    pub members: Vec<Member>,
    pub health: Health,
    pub affinity: Affinity,
}

impl Farm {
    /// One backend, as `backend = "URL"` reads it.
    #[cfg(test)]
    pub fn one(url: &str) -> Farm {
        let backend = read::parse_backend(url).unwrap_or_else(|e| panic!("{e}"));
        Farm {
            members: vec![Member { backend, url: url.into(), weight: 1, drain: false }],
            health: Health::off(),
            affinity: Affinity::None,
        }
    }
}

/// One backend of a farm.
#[derive(Debug, Clone)]
pub struct Member {
    /// Where it is and how it is reached (origin and TLS settings).
    pub backend: Backend,
    /// The URL as written, for `gatehouse backend drain` and messages.
    pub url: String,
    /// Its share of new requests, relative to the others' (1 to 1000).
    pub weight: u32,
    /// `drain = true`: no new sessions; the ones it has continue.
    pub drain: bool,
}

/// Active checks and passive ejection of a farm's backends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    pub check: Check,
    pub interval: Duration,
    /// Each check's limit; below `interval`.
    pub timeout: Duration,
    /// Passed checks in a row that bring a failed backend back.
    pub rise: u32,
    /// Failed checks in a row that take a backend out.
    pub fall: u32,
    /// Failed connects in a row, on the request path, that take a backend out
    /// for `eject_for` (0: never).
    pub eject_connect_failures: u32,
    /// 502, 503 or 504 answers in a row that take it out for `eject_for` (0: never).
    pub eject_gateway_errors: u32,
    pub eject_for: Duration,
}

impl Health {
    /// A farm of one: nothing to fail over to, so nothing checked or ejected
    /// unless asked; a dead backend is a 502 as before farms.
    pub fn off() -> Health {
        Health {
            check: Check::None,
            interval: Duration::from_secs(5),
            timeout: Duration::from_secs(2),
            rise: 2,
            fall: 3,
            eject_connect_failures: 0,
            eject_gateway_errors: 0,
            eject_for: Duration::from_secs(30),
        }
    }
}

/// How a backend is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    None,
    /// A TCP connect.
    Tcp,
    /// A GET of `path` (over the backend's TLS when it has TLS), answered with
    /// `status`. The Exchange preset's paths each check their own
    /// Managed Availability page (`/owa/healthcheck.htm`).
    Http {
        path: String,
        status: u16,
    },
}

/// What keeps a client's requests on one backend, beyond what the protocols
/// need (Outlook Anywhere's two channels and a MAPI session always stay
/// together, and a pass-through logon stays on its backend connection).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Affinity {
    None,
    /// The client's address (TMG's choice for RPC over HTTP).
    Source,
    /// A cookie gatehouse signs, naming the backend (for browsers).
    Cookie,
}

/// `[affinity]`.
#[derive(Debug, Clone)]
pub struct AffinitySettings {
    /// The signed affinity cookie's name.
    pub cookie: String,
    /// `key_file`: the HMAC key, shared by every gatehouse of an array; None:
    /// a random key made at start.
    pub key: Option<Secret>,
    /// A session (an Outlook Anywhere pair, a MAPI session, a client address)
    /// is forgotten this long after its last request ended.
    pub idle: Duration,
    /// Sessions remembered per `[[site]]`, at most: the bound on the table's memory.
    pub max_sessions: usize,
}

impl Default for AffinitySettings {
    fn default() -> Self {
        AffinitySettings {
            cookie: "gatehouse_backend".into(),
            key: None,
            idle: Duration::from_secs(3600),
            max_sessions: 100_000,
        }
    }
}

/// Key material: its bytes are never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret({} bytes)", self.0.len())
    }
}

/// `[control]`: the running gatehouse's control socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Control {
    pub socket: PathBuf,
}

#[derive(Debug, Clone)]
pub struct Timeouts {
    pub header_read: Duration,
    pub keepalive_idle: Duration,
    pub stream_idle: Duration,
    pub backend_connect: Duration,
    pub backend_response: Duration,
    pub backend_idle: Duration,
    pub shutdown_drain: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            header_read: Duration::from_secs(15),
            keepalive_idle: Duration::from_secs(120),
            stream_idle: Duration::from_secs(20 * 60),
            backend_connect: Duration::from_secs(10),
            backend_response: Duration::from_secs(300),
            backend_idle: Duration::from_secs(60),
            shutdown_drain: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Limits {
    pub max_connections: usize,
    pub max_header_size: usize,
    pub max_headers: usize,
    pub backend_idle_per_key: usize,
    /// Bytes of a request body read and discarded on an authentication leg.
    pub handshake_body: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 10_000,
            max_header_size: 64 * 1024,
            max_headers: 128,
            backend_idle_per_key: 64,
            handshake_body: 64 * 1024,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Log {
    /// `-` for standard output, otherwise a file appended to.
    pub access: String,
    /// tracing filter for the operational log on standard error.
    pub level: String,
    /// Requests that matched no site are counted and logged as one line per
    /// this period (scanners would otherwise write one line each).
    pub no_site_summary: Duration,
}

impl Default for Log {
    fn default() -> Self {
        Log { access: "-".into(), level: "info".into(), no_site_summary: Duration::from_secs(60) }
    }
}

/// `[access]`: how long what the domain says about a user stands, and where
/// the names in `allow` and `deny` are looked up.
#[derive(Debug, Clone)]
pub struct Access {
    /// A user's groups and account state are asked of the domain again after
    /// this long (S4U2Self): a user disabled or removed from a group loses
    /// access within it.
    pub refresh: Duration,
    /// With no KDC answering, the last answer stands this long past `refresh`;
    /// then a site with rules answers 503.
    pub grace: Duration,
    pub directory: Option<Directory>,
}

impl Default for Access {
    fn default() -> Access {
        Access { refresh: Duration::from_secs(10 * 60), grace: Duration::from_secs(60 * 60), directory: None }
    }
}

/// `[access] directory`: a domain controller's LDAP, bound with gatehouse's
/// own Kerberos credential (`ldap/<host>`), for names in rules.
#[derive(Debug, Clone)]
pub struct Directory {
    pub host: String,
    pub port: u16,
    /// `directory_address`: connect here rather than to what `host` resolves to.
    pub address: Option<SocketAddr>,
    pub timeout: Duration,
}

/// A site's `allow` and `deny`. Deny wins; no `allow` lets every signed-in
/// user in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rules {
    pub allow: Vec<Principal>,
    pub deny: Vec<Principal>,
}

impl Rules {
    pub fn is_empty(&self) -> bool {
        self.allow.is_empty() && self.deny.is_empty()
    }

    pub fn principals_mut(&mut self) -> impl Iterator<Item = &mut Principal> {
        self.allow.iter_mut().chain(self.deny.iter_mut())
    }
}

/// One entry of `allow` or `deny`: as written, where, and whom it means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub written: String,
    /// `file:line:column: site[0].allow`, for problems found after reading
    /// (a name the directory does not know).
    pub place: String,
    pub who: Who,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Who {
    /// A SID as written, or what the directory resolved a name to.
    Sid(kcd::Sid),
    /// A name not (yet) resolved: `domain` upper-case when written
    /// (`ADTEST\\Finance`), `name` lower-case (a sAMAccountName or a UPN).
    /// Stays a name only for users and groups of an accounts file.
    Name { domain: Option<String>, name: String },
}
