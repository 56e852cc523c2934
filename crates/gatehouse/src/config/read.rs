//! Reading the TOML file into [`Config`]: each section and key parsed into
//! its type, every problem collected on the way. Checks that span sections
//! (a site's Basic against the listener's TLS and the accounts) run on the
//! result, in `validate.rs`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::reader::{kind, Problem, Problems, Reader, Section, Span};
use super::*;

/// Keys of the tables whose reader may stop before the end (see
/// `Reader::section`).
const LISTENER_KEYS: &[&str] = &["name", "bind", "tls", "channel_binding", "http2"];
const TLS_KEYS: &[&str] = &["cert", "key", "sni", "suite_order"];
const CERT_KEYS: &[&str] = &["cert", "key"];
const ACCOUNTS_KEYS: &[&str] = &["source", "file", "ntlm_auth", "smb_conf", "helpers", "timeout"];

/// Reads and validates the file at `path`.
pub fn load(path: &Path) -> Result<Config, Problems> {
    load_file(path, true)
}

/// As `load`, the keytab's content not judged: for `gatehouse doctor`, which
/// reads it itself and prints the commands that make a new one.
pub fn load_leaving_keytab(path: &Path) -> Result<Config, Problems> {
    load_file(path, false)
}

fn load_file(path: &Path, read_keytab: bool) -> Result<Config, Problems> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Problems(vec![Problem {
            file: path.to_owned(),
            line: 0,
            column: 0,
            key: String::new(),
            message: format!("cannot read configuration: {e}"),
        }])
    })?;
    read_str(path, &text, read_keytab)
}

/// Validates `text` as if read from `path`; relative file names in it are taken
/// relative to the directory of `path`.
#[cfg(test)]
pub fn load_str(path: &Path, text: &str) -> Result<Config, Problems> {
    read_str(path, text, true)
}

fn read_str(path: &Path, text: &str, read_keytab: bool) -> Result<Config, Problems> {
    let mut r = Reader {
        file: path.to_owned(),
        base: path.parent().map(Path::to_owned).unwrap_or_default(),
        text,
        problems: Vec::new(),
        read_keytab,
        idp_names: Vec::new(),
    };
    let (doc, syntax) = DeTable::parse_recoverable(text);
    for e in syntax {
        let span = e.span().unwrap_or(0..0);
        r.problem(span, "", e.message().trim().to_owned());
    }
    let config = r.config(doc.get_ref(), doc.span());
    let mut problems = r.problems;
    if problems.is_empty() {
        return Ok(config);
    }
    problems.sort_by_key(|p| (p.line, p.column));
    problems.dedup();
    Err(Problems(problems))
}

impl<'t> Reader<'t> {
    fn config(&mut self, doc: &DeTable<'_>, span: Span) -> Config {
        let mut root = Section { table: doc, span, path: String::new(), known: Vec::new() };
        let mut config = Config {
            domain: None,
            accounts: None,
            lockout: Lockout::default(),
            basic_cache: Duration::from_secs(120),
            listeners: Vec::new(),
            sites: Vec::new(),
            timeouts: Timeouts::default(),
            limits: Limits::default(),
            log: Log::default(),
            access: super::Access::default(),
            affinity: super::AffinitySettings::default(),
            forms: None,
            control: None,
            admin: None,
            mfa: None,
            idps: Vec::new(),
            left_out: Vec::new(),
            set_by_path: Vec::new(),
        };
        if let Some(v) = root.get("timeouts") {
            if let Some(mut s) = self.section(v, "timeouts".into(), &[]) {
                self.timeouts(&mut s, &mut config.timeouts);
                self.finish(s);
            }
        }
        if let Some(v) = root.get("limits") {
            if let Some(mut s) = self.section(v, "limits".into(), &[]) {
                self.limits(&mut s, &mut config.limits);
                self.finish(s);
            }
        }
        if let Some(v) = root.get("log") {
            if let Some(mut s) = self.section(v, "log".into(), &[]) {
                if let Some((access, _)) = self.string(&mut s, "access") {
                    config.log.access =
                        if access == "-" { access } else { self.file_path(&access).to_string_lossy().into_owned() };
                }
                if let Some((level, span)) = self.string(&mut s, "level") {
                    if tracing_subscriber::EnvFilter::try_new(&level).is_err() {
                        self.problem(
                            span,
                            "log.level",
                            format!("`{level}` is not a log filter (try \"info\" or \"gatehouse=debug\")"),
                        );
                    }
                    config.log.level = level;
                }
                let span = s.get("no_site_summary").map(|v| v.span());
                if let Some(d) = self.duration(&mut s, "no_site_summary") {
                    if d < Duration::from_secs(1) {
                        // The summary loop sleeps this long between lines: zero would spin.
                        let key = s.key_path("no_site_summary");
                        self.problem(span.unwrap_or(0..0), &key, "must be at least 1s".into());
                    } else {
                        config.log.no_site_summary = d;
                    }
                }
                self.finish(s);
            }
        }
        if let Some(v) = root.get("domain") {
            if let Some(mut s) = self.section(v, "domain".into(), &[]) {
                config.domain = self.domain(&mut s);
                self.finish(s);
            }
        }
        if let Some(v) = root.get("accounts") {
            if let Some(mut s) = self.section(v, "accounts".into(), ACCOUNTS_KEYS) {
                config.accounts = self.accounts(&mut s);
                self.finish(s);
            }
        }
        if let Some(v) = root.get("lockout") {
            if let Some(mut s) = self.section(v, "lockout".into(), &[]) {
                if let Some(n) = self.count(&mut s, "max_failures_per_user", 1, 1000) {
                    config.lockout.max_failures_per_user = n as u32;
                }
                if let Some(n) = self.count(&mut s, "max_failures_per_client", 1, 100_000) {
                    config.lockout.max_failures_per_client = n as u32;
                }
                if let Some(d) = self.duration(&mut s, "window") {
                    config.lockout.window = d;
                }
                if let Some(n) = self.count(&mut s, "max_entries", 100, 10_000_000) {
                    config.lockout.max_entries = n;
                }
                if let Some(n) = self.count(&mut s, "ipv4_prefix", 8, 32) {
                    config.lockout.ipv4_prefix = n as u8;
                }
                if let Some(n) = self.count(&mut s, "ipv6_prefix", 32, 128) {
                    config.lockout.ipv6_prefix = n as u8;
                }
                self.finish(s);
            }
        }
        if let Some(v) = root.get("access") {
            if let Some(mut s) = self.section(v, "access".into(), &[]) {
                self.access(&mut s, &mut config.access);
                self.finish(s);
            }
        }
        if let Some(v) = root.get("affinity") {
            if let Some(mut s) = self.section(v, "affinity".into(), &[]) {
                config.affinity = self.affinity_settings(&mut s);
                self.finish(s);
            }
        }
        if let Some(v) = root.get("admin") {
            if let Some(mut s) = self.section(v, "admin".into(), &[]) {
                config.admin = self.admin(&mut s);
                self.finish(s);
            }
        }
        if let Some(v) = root.get("control") {
            if let Some(mut s) = self.section(v, "control".into(), &[]) {
                config.control = self.control(&mut s);
                self.finish(s);
            }
        }
        if let Some(v) = root.get("basic") {
            if let Some(mut s) = self.section(v, "basic".into(), &[]) {
                if let Some(d) = self.duration(&mut s, "cache") {
                    config.basic_cache = d;
                }
                self.finish(s);
            }
        }
        // Before the sites: the Exchange preset offers Forms where it is configured.
        if let Some(v) = root.get("forms") {
            if let Some(mut s) = self.section(v, "forms".into(), &[]) {
                config.forms = self.forms(&mut s);
                self.finish(s);
            }
        }
        if let Some(v) = root.get("mfa") {
            if let Some(mut s) = self.section(v, "mfa".into(), &[]) {
                config.mfa = self.mfa(&mut s);
                self.finish(s);
            }
            if config.forms.is_none() && root.get("forms").is_none() {
                self.problem(
                    v.span(),
                    "mfa",
                    "[mfa] needs [forms]: its key file seals the authenticator apps' secrets".into(),
                );
            }
        }
        // Before the sites, whose `auth` names them.
        for (i, v) in self.array_of_tables(&mut root, "idp") {
            if let Some(mut s) = self.section(v, format!("idp[{i}]"), super::idp::IDP_KEYS) {
                let name = s
                    .table
                    .iter()
                    .find(|(k, _)| k.get_ref().as_ref() == "name")
                    .and_then(|(_, v)| v.get_ref().as_str());
                if let Some(name) = name {
                    if self.idp_names.iter().any(|n| n.eq_ignore_ascii_case(name)) {
                        self.problem(
                            s.span.clone(),
                            &format!("idp[{i}].name"),
                            format!("two [[idp]] are named `{name}`"),
                        );
                    }
                }
                if let Some(idp) = self.idp(&mut s) {
                    if config.idps.len() < 64 {
                        self.idp_names.push(idp.name.clone());
                        config.idps.push(idp);
                    }
                }
                self.finish(s);
            }
        }
        // Names of every listener, valid or not, so that a site naming a broken
        // listener is not reported as naming a missing one.
        let mut listener_names = Vec::new();
        let mut redirects = Vec::new();
        for (i, v) in self.array_of_tables(&mut root, "listener") {
            if let Some(mut s) = self.section(v, format!("listener[{i}]"), LISTENER_KEYS) {
                let name = match s.table.iter().find(|(k, _)| k.get_ref().as_ref() == "name").map(|(_, v)| v) {
                    Some(v) => v.get_ref().as_str().map(str::to_owned),
                    None => None,
                };
                if let Some(name) = name {
                    if listener_names.contains(&name) {
                        self.problem(
                            s.span.clone(),
                            &format!("listener[{i}].name"),
                            format!("two listeners are named `{name}`"),
                        );
                    }
                    listener_names.push(name);
                }
                if let Some(l) = self.listener(&mut s) {
                    if let Some(to) = &l.redirect_to {
                        let span =
                            s.table.iter().find(|(k, _)| k.get_ref().as_ref() == "redirect_to").map(|(_, v)| v.span());
                        redirects.push(super::validate::Redirect {
                            from: l.name.clone(),
                            to: to.clone(),
                            index: i,
                            span: span.unwrap_or(s.span.clone()),
                        });
                    }
                    config.listeners.push(l);
                }
                self.finish(s);
            }
        }
        let mut origins = Vec::new();
        for (i, v) in self.array_of_tables(&mut root, "site") {
            if let Some(mut s) = self.section(v, format!("site[{i}]"), super::preset::EXCEPTION_KEYS) {
                let span = s.span.clone();
                let preset = self.string(&mut s, "preset");
                let path_given = s.table.iter().any(|(k, _)| k.get_ref().as_ref() == "path_prefix");
                let read = self.site(&mut s, &listener_names, preset.is_some());
                let expanded = match (read, preset) {
                    (None, _) => Vec::new(),
                    (Some(site), None) => {
                        self.exceptions_without_preset(&mut s);
                        vec![site]
                    }
                    (Some(site), Some((p, pspan))) if p == "exchange" => {
                        if path_given {
                            self.problem(
                                pspan,
                                &format!("site[{i}].path_prefix"),
                                "a preset publishes its own paths; remove path_prefix".into(),
                            );
                        }
                        self.exchange_preset(&mut s, &site, &mut config)
                    }
                    (Some(site), Some((p, pspan))) => {
                        self.problem(
                            pspan,
                            &format!("site[{i}].preset"),
                            format!("`{p}`: the one preset is \"exchange\""),
                        );
                        vec![site]
                    }
                };
                let hosts = host_spans(&s);
                for site in expanded {
                    origins.push(super::validate::Origin { index: i, span: span.clone(), hosts: hosts.clone() });
                    config.sites.push(site);
                }
                self.finish(s);
            }
        }
        let given = |key: &str| root.table.iter().any(|(k, _)| k.get_ref().as_ref() == key);
        let sections = super::validate::Given {
            accounts: given("accounts"),
            domain: given("domain"),
            forms: given("forms"),
            mfa: given("mfa"),
        };
        super::validate::check(self, &config, &origins, sections);
        super::validate::redirects(self, &config, &origins, &redirects);
        self.finish(root);
        config
    }

    fn array_of_tables<'a, 'i>(
        &mut self,
        root: &mut Section<'a, 'i>,
        key: &'static str,
    ) -> Vec<(usize, &'a Spanned<DeValue<'i>>)> {
        let Some(v) = root.get(key) else {
            return Vec::new();
        };
        match v.get_ref() {
            DeValue::Array(items) => items.iter().enumerate().collect(),
            other => {
                self.problem(v.span(), key, format!("expected [[{key}]] tables, found {}", kind(other)));
                Vec::new()
            }
        }
    }

    fn timeouts(&mut self, s: &mut Section<'_, '_>, t: &mut Timeouts) {
        let fields: [(&'static str, &mut Duration); 7] = [
            ("header_read", &mut t.header_read),
            ("keepalive_idle", &mut t.keepalive_idle),
            ("stream_idle", &mut t.stream_idle),
            ("backend_connect", &mut t.backend_connect),
            ("backend_response", &mut t.backend_response),
            ("backend_idle", &mut t.backend_idle),
            ("shutdown_drain", &mut t.shutdown_drain),
        ];
        for (key, slot) in fields {
            if let Some(d) = self.duration(s, key) {
                *slot = d;
            }
        }
    }

    fn limits(&mut self, s: &mut Section<'_, '_>, l: &mut Limits) {
        if let Some(n) = self.count(s, "max_connections", 1, 1_000_000) {
            l.max_connections = n;
        }
        // hyper's read buffer cannot be smaller than 8 KiB; Kerberos tokens need far more.
        if let Some(n) = self.count(s, "max_header_size", 8192, 1024 * 1024) {
            l.max_header_size = n;
        }
        if let Some(n) = self.count(s, "max_headers", 16, 1000) {
            l.max_headers = n;
        }
        if let Some(n) = self.count(s, "backend_idle_per_key", 0, 10_000) {
            l.backend_idle_per_key = n;
        }
        if let Some(n) = self.count(s, "handshake_body", 0, 16 * 1024 * 1024) {
            l.handshake_body = n;
        }
    }

    fn listener(&mut self, s: &mut Section<'_, '_>) -> Option<Listener> {
        let name = self.required_string(s, "name");
        if let Some((n, span)) = name.as_ref().filter(|(n, _)| n == super::ADMIN_LISTENER) {
            let why = format!("`{n}` is the admin listener's name in logs and settings; choose another");
            self.problem(span.clone(), &s.key_path("name"), why);
        }
        let bind = self.required_string(s, "bind").and_then(|(text, span)| match text.parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                let key = s.key_path("bind");
                self.problem(
                    span,
                    &key,
                    format!("`{text}` is not an address:port such as \"127.0.0.1:8443\" or \"[::]:443\""),
                );
                None
            }
        });
        // Some(None): given but broken, already reported. The keys after it
        // are still read, so that their own mistakes are reported too.
        let tls = s.get("tls").map(|v| {
            let path = s.key_path("tls");
            let mut t = self.section(v, path, TLS_KEYS)?;
            let tls = self.listener_tls(&mut t);
            self.finish(t);
            tls
        });
        let channel_binding = self
            .choice(
                s,
                "channel_binding",
                &[
                    ("when-supported", ntlm::ChannelBindingPolicy::WhenSupported),
                    ("off", ntlm::ChannelBindingPolicy::Off),
                    ("required", ntlm::ChannelBindingPolicy::Required),
                ],
            )
            .unwrap_or(ntlm::ChannelBindingPolicy::WhenSupported);
        let http2 = match (self.bool(s, "http2"), &tls.as_ref().map(|_| ())) {
            (Some(true), None) => {
                let key = s.key_path("http2");
                self.problem(
                    s.span.clone(),
                    &key,
                    "HTTP/2 is offered through TLS (ALPN); this listener has no TLS".into(),
                );
                false
            }
            (Some(h), _) => h,
            (None, t) => t.is_some(),
        };
        let redirect_to = self.string(s, "redirect_to").map(|(to, span)| {
            if tls.is_some() {
                let key = s.key_path("redirect_to");
                self.problem(
                    span,
                    &key,
                    "a TLS listener serves its sites itself; redirect_to belongs on a plain listener \
                     (bind = \"0.0.0.0:80\", no tls) that sends clients to this one"
                        .into(),
                );
            }
            to
        });
        let tls = match tls {
            None => None,
            Some(t) => Some(t?),
        };
        Some(Listener { name: name?.0, bind: bind?, tls, channel_binding, http2, redirect_to })
    }

    fn listener_tls(&mut self, t: &mut Section<'_, '_>) -> Option<ListenerTls> {
        let mut certificates = Vec::new();
        let mut files = Vec::new();
        let mut keys = Vec::new();
        let mut ok = true;
        match self.cert_pair(t) {
            Some((c, f, k)) => {
                certificates.push(c);
                files.push(f);
                keys.push(k);
            }
            None => ok = false,
        }
        if let Some(v) = t.get("sni") {
            let path = t.key_path("sni");
            match v.get_ref() {
                DeValue::Array(items) => {
                    for (i, item) in items.iter().enumerate() {
                        if let Some(mut c) = self.section(item, format!("{path}[{i}]"), CERT_KEYS) {
                            match self.cert_pair(&mut c) {
                                Some((cert, file, key)) => {
                                    certificates.push(cert);
                                    files.push(file);
                                    keys.push(key);
                                }
                                None => ok = false,
                            }
                            self.finish(c);
                        }
                    }
                }
                other => {
                    self.problem(
                        v.span(),
                        &path,
                        format!("expected a list of {{ cert, key }} tables, found {}", kind(other)),
                    );
                    ok = false;
                }
            }
        }
        let aes128_first = match self.choice(t, "suite_order", &[("client", false), ("aes128-first", true)]) {
            Some(first) => first,
            None => {
                ok = false;
                false
            }
        };
        ok.then_some(ListenerTls { certificates, files, keys, aes128_first })
    }

    fn cert_pair(&mut self, t: &mut Section<'_, '_>) -> Option<(Arc<rustls::sign::CertifiedKey>, PathBuf, PathBuf)> {
        let cert = self.required_string(t, "cert");
        let key = self.required_string(t, "key");
        let ((cert, cert_span), (key, key_span)) = (cert?, key?);
        let cert_path = self.file_path(&cert);
        let key_path = self.file_path(&key);
        match crate::pem::load_certified_key(&cert_path, &key_path) {
            Ok(ck) => Some((ck, cert_path, key_path)),
            Err(crate::pem::PemError::Cert(msg)) => {
                self.problem(cert_span, &t.key_path("cert"), format!("{}: {msg}", cert_path.display()));
                None
            }
            Err(crate::pem::PemError::Key(msg)) => {
                self.problem(key_span, &t.key_path("key"), format!("{}: {msg}", key_path.display()));
                None
            }
        }
    }

    /// `preset`: the site is a preset's, which supplies `auth` when absent.
    fn site(&mut self, s: &mut Section<'_, '_>, listeners: &[String], preset: bool) -> Option<Site> {
        let name = self.required_string(s, "name");
        let listener = self.required_string(s, "listener").and_then(|(l, span)| {
            if listeners.contains(&l) {
                Some(l)
            } else {
                let known: Vec<_> = listeners.iter().map(|x| format!("`{x}`")).collect();
                let key = s.key_path("listener");
                self.problem(
                    span,
                    &key,
                    format!(
                        "no listener is named `{l}` (listeners: {})",
                        if known.is_empty() { "none".into() } else { known.join(", ") }
                    ),
                );
                None
            }
        });
        let mut hosts = Vec::new();
        if let Some(list) = self.string_list(s, "hosts") {
            for (h, span) in list {
                let lower = h.to_ascii_lowercase();
                if lower.is_empty() || lower.contains(['/', ' ', ':']) {
                    let key = s.key_path("hosts");
                    self.problem(span, &key, format!("`{h}` is not a host name (no scheme, port or path)"));
                } else {
                    hosts.push(lower);
                }
            }
        }
        let path_prefix = match self.string(s, "path_prefix") {
            None => "/".to_owned(),
            Some((p, span)) => {
                // A prefix is compared with routing paths: one that is not its own
                // routing path (escapes, `;`, `//`) could never match.
                if httpguard::routing_path(p.as_bytes()).ok().as_deref() != Some(p.as_bytes()) {
                    let key = s.key_path("path_prefix");
                    self.problem(
                        span,
                        &key,
                        format!(
                            "`{p}` must be an absolute path such as \"/ews\", as gatehouse routes on it: \
                             no dot segments, escapes, `;`, `//`, trailing dots or spaces, `~` and a digit, \
                             `:$` or `(S(` segments"
                        ),
                    );
                }
                p
            }
        };
        let farm = self.farm(s, preset);
        let host_header = self.string(s, "host_header").map(|(h, _)| h);
        let identity_header =
            self.string(s, "identity_header").and_then(|(h, span)| match http::HeaderName::from_bytes(h.as_bytes()) {
                Ok(n) => Some(n),
                Err(_) => {
                    let key = s.key_path("identity_header");
                    self.problem(span, &key, format!("`{h}` is not a header name"));
                    None
                }
            });
        let stream_idle = self.duration(s, "stream_idle");
        let auth = self.schemes(s, "auth").unwrap_or_default();
        let negotiate_once = self.bool(s, "negotiate_once").unwrap_or(true);
        let websocket = self.bool(s, "websocket").unwrap_or(true);
        let auth_for = self.auth_for(s).unwrap_or_default();
        let delegation = self.delegation(s, !auth.is_empty() || preset);
        let rules = self.rules(s);
        let mfa = match self.string(s, "mfa") {
            Some((v, _)) if v == "required" => true,
            Some((v, _)) if v == "off" => false,
            Some((v, span)) => {
                let key = s.key_path("mfa");
                self.problem(span, &key, format!("`{v}`: mfa is \"required\" or \"off\""));
                false
            }
            None => false,
        };
        let claims = self.claim_rules(s);
        if !claims.is_empty()
            && !auth
                .iter()
                .chain(auth_for.iter().flat_map(|r| r.auth.iter()))
                .any(|x| matches!(x, Scheme::Oidc(_) | Scheme::Bearer(_)))
        {
            let key = s.key_path("require_acr");
            self.problem(
                s.span.clone(),
                &key,
                "require_acr, require_amr and require_group are about a provider's tokens: this site offers no \"OIDC:NAME\" or \"Bearer:NAME\"".into(),
            );
        }
        if !rules.is_empty() && auth.is_empty() && !preset {
            let key = s.key_path("allow");
            self.problem(
                s.span.clone(),
                &key,
                "allow and deny need a signed-in user: this site sets no `auth` (it is anonymous)".into(),
            );
        }
        if matches!(delegation, Delegation::ForwardBasic) && (auth != [Scheme::Basic] || !auth_for.is_empty() || preset)
        {
            let key = s.key_path("delegation");
            self.problem(
                s.span.clone(),
                &key,
                "delegation = \"basic\" forwards the client's password, so the site must offer Basic alone (auth = [\"Basic\"], no auth_for, no preset)".into(),
            );
        }
        if !auth_for.is_empty() && auth.is_empty() {
            let key = s.key_path("auth_for");
            self.problem(s.span.clone(), &key, "auth_for overrides `auth`, which this site does not set".into());
        }
        let name = name?.0;
        Some(Site {
            family: name.clone(),
            name,
            listener: listener?,
            hosts,
            path_prefix,
            farm: farm?,
            host_header,
            identity_header,
            stream_idle,
            auth,
            auth_for,
            negotiate_once,
            delegation,
            websocket,
            rules,
            mfa,
            claims,
        })
    }

    /// `allow` and `deny`: the entries as written; names are resolved to SIDs
    /// after reading (`access::resolve`), SIDs are checked here.
    pub(super) fn rules(&mut self, s: &mut Section<'_, '_>) -> super::Rules {
        let mut rules = super::Rules::default();
        for key in ["allow", "deny"] {
            let Some(list) = self.string_list(s, key) else { continue };
            let path = s.key_path(key);
            if list.is_empty() && key == "allow" {
                let span = s.get(key).map(|v| v.span()).unwrap_or(s.span.clone());
                self.problem(
                    span,
                    &path,
                    "an empty allow would let nobody in; leave it out to let every signed-in user in".into(),
                );
            }
            for (written, span) in list {
                let (line, column) = super::reader::line_col(self.text, span.start);
                let place = format!("{}:{line}:{column}: {path}", self.file.display());
                match super::access::rule_entry(&written) {
                    Ok(who) => {
                        let p = super::Principal { written, place, who };
                        if key == "allow" {
                            rules.allow.push(p)
                        } else {
                            rules.deny.push(p)
                        }
                    }
                    Err(why) => self.problem(span, &path, format!("`{written}`: {why}")),
                }
            }
        }
        rules
    }

    /// `[access]`: refresh, grace, directory, directory_address, directory_timeout.
    fn access(&mut self, s: &mut Section<'_, '_>, a: &mut super::Access) {
        let span = s.get("refresh").map(|v| v.span());
        if let Some(d) = self.duration(s, "refresh") {
            if d < Duration::from_secs(1) {
                // Zero would ask the KDC on every request.
                self.problem(span.unwrap_or(0..0), &s.key_path("refresh"), "must be at least 1s".into());
            } else {
                a.refresh = d;
            }
        }
        if let Some(d) = self.duration(s, "grace") {
            a.grace = d;
        }
        let timeout = self.duration(s, "directory_timeout").unwrap_or(Duration::from_secs(10));
        // An address alone takes the directory's port.
        let address = self.string(s, "directory_address").and_then(|(text, span)| {
            let parsed = match text.parse::<SocketAddr>() {
                Ok(a) => Some((a.ip(), Some(a.port()))),
                Err(_) => text.parse::<std::net::IpAddr>().ok().map(|ip| (ip, None)),
            };
            if parsed.is_none() {
                let key = s.key_path("directory_address");
                self.problem(span, &key, format!("`{text}` is not an IP address (with or without a port)"));
            }
            parsed
        });
        let address_given = s.table.iter().any(|(k, _)| k.get_ref().as_ref() == "directory_address");
        match self.string(s, "directory") {
            Some((url, span)) => match super::access::ldap_url(&url) {
                Ok((host, port)) => {
                    let address = address.map(|(ip, p)| SocketAddr::new(ip, p.unwrap_or(port)));
                    a.directory = Some(super::Directory { host, port, address, timeout });
                }
                Err(why) => self.problem(span, &s.key_path("directory"), format!("`{url}`: {why}")),
            },
            None if address_given => self.problem(
                s.span.clone(),
                &s.key_path("directory_address"),
                "directory_address needs `directory`".into(),
            ),
            None => {}
        }
    }

    /// `delegation`, `backend_spn`, `backend_token`, `send_token`, `delegation_user`.
    fn delegation(&mut self, s: &mut Section<'_, '_>, has_auth: bool) -> Delegation {
        #[derive(Clone, Copy, PartialEq)]
        enum Mode {
            None,
            Kcd,
            ForwardBasic,
        }
        let span = s.table.iter().find(|(k, _)| k.get_ref().as_ref() == "delegation").map(|(_, v)| v.span());
        let Some(mode) =
            self.choice(s, "delegation", &[("none", Mode::None), ("kcd", Mode::Kcd), ("basic", Mode::ForwardBasic)])
        else {
            // Already reported; the keys that go with it are not judged.
            s.known.extend(["backend_spn", "backend_token", "send_token", "delegation_user"]);
            return Delegation::None;
        };
        if mode != Mode::Kcd {
            for key in ["backend_spn", "backend_token", "send_token", "delegation_user"] {
                if let Some(v) = s.get(key) {
                    self.problem(v.span(), &s.key_path(key), "only meaningful with delegation = \"kcd\"".into());
                }
            }
            return if mode == Mode::ForwardBasic { Delegation::ForwardBasic } else { Delegation::None };
        }
        let span = span.unwrap_or(s.span.clone());
        if !has_auth {
            self.problem(
                span.clone(),
                &s.key_path("delegation"),
                "delegation needs an authenticated user: set `auth`".into(),
            );
        }
        let spn = self.string(s, "backend_spn");
        let token =
            self.choice(s, "backend_token", &[("spnego", kcd::Token::Spnego), ("kerberos", kcd::Token::Kerberos)]);
        let send = self.choice(
            s,
            "send_token",
            &[("always", SendToken::Always), ("every-request", SendToken::EveryRequest), ("on-401", SendToken::On401)],
        );
        let user =
            self.choice(s, "delegation_user", &[("account", DelegationUser::Account), ("upn", DelegationUser::Upn)]);
        let Some((spn, spn_span)) = spn else {
            self.problem(
                span,
                &s.key_path("backend_spn"),
                "delegation = \"kcd\" needs backend_spn, e.g. \"HTTP/{backend_host}\"".into(),
            );
            return Delegation::None;
        };
        if let Some(why) = super::farm::spn_problem(&spn) {
            self.problem(spn_span, &s.key_path("backend_spn"), why);
        }
        Delegation::Kcd(Kcd {
            spn,
            token: token.unwrap_or(kcd::Token::Spnego),
            send: send.unwrap_or(SendToken::Always),
            user: user.unwrap_or(DelegationUser::Account),
        })
    }

    /// `auth_for`: None when absent.
    pub(super) fn auth_for(&mut self, s: &mut Section<'_, '_>) -> Option<Vec<AuthRule>> {
        let v = s.get("auth_for")?;
        let path = s.key_path("auth_for");
        let mut auth_for = Vec::new();
        match v.get_ref() {
            DeValue::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    if let Some(mut r) = self.section(item, format!("{path}[{i}]"), &[]) {
                        if let Some(rule) = self.auth_rule(&mut r) {
                            auth_for.push(rule);
                        }
                        self.finish(r);
                    }
                }
            }
            other => self.problem(v.span(), &path, format!("expected [[site.auth_for]] tables, found {}", kind(other))),
        }
        Some(auth_for)
    }

    pub(super) fn schemes(&mut self, s: &mut Section<'_, '_>, key: &'static str) -> Option<Vec<Scheme>> {
        let list = self.string_list(s, key)?;
        let path = s.key_path(key);
        let mut out = Vec::new();
        for (name, span) in list {
            match name.to_ascii_lowercase().as_str() {
                "ntlm" => out.push(Scheme::Ntlm),
                "negotiate" => out.push(Scheme::Negotiate),
                "basic" => out.push(Scheme::Basic),
                "forms" => out.push(Scheme::Forms),
                lower if lower.starts_with("oidc:") || lower.starts_with("bearer:") => {
                    let (kind, idp) = lower.split_once(':').unwrap_or_default();
                    match self.idp_names.iter().position(|n| n.eq_ignore_ascii_case(idp)) {
                        Some(i) if kind == "oidc" => out.push(Scheme::Oidc(i as u8)),
                        Some(i) => out.push(Scheme::Bearer(i as u8)),
                        None => {
                            let known: Vec<_> = self.idp_names.iter().map(|n| format!("`{n}`")).collect();
                            let known = if known.is_empty() { "none".to_owned() } else { known.join(", ") };
                            self.problem(span, &path, format!("`{name}`: no [[idp]] is named `{idp}` (providers: {known})"));
                        }
                    }
                }
                _ => self.problem(
                    span,
                    &path,
                    format!(
                        "`{name}` is not an authentication scheme (Negotiate, NTLM, Basic, Forms, OIDC:NAME, Bearer:NAME)"
                    ),
                ),
            }
        }
        Some(out)
    }

    fn auth_rule(&mut self, r: &mut Section<'_, '_>) -> Option<AuthRule> {
        let user_agent = self.string(r, "user_agent").map(|(u, _)| u);
        let mut client_ip = Vec::new();
        if let Some(list) = self.string_list(r, "client_ip") {
            for (text, span) in list {
                match text.parse::<crate::net::Cidr>() {
                    Ok(c) => client_ip.push(c),
                    Err(_) => {
                        let key = r.key_path("client_ip");
                        self.problem(span, &key, format!("`{text}` is not an address or CIDR such as \"10.0.0.0/8\""));
                    }
                }
            }
        }
        if user_agent.is_none() && client_ip.is_empty() {
            let key = r.key_path("user_agent");
            self.problem(
                r.span.clone(),
                &key,
                "a rule needs user_agent or client_ip (a rule matching everyone belongs in `auth`)".into(),
            );
        }
        let present = r.table.iter().any(|(k, _)| k.get_ref().as_ref() == "auth");
        if !present {
            let key = r.key_path("auth");
            self.problem(r.span.clone(), &key, "missing required key `auth`".into());
        }
        let auth = self.schemes(r, "auth")?;
        if auth.is_empty() {
            let key = r.key_path("auth");
            self.problem(
                r.span.clone(),
                &key,
                "an empty list would let matching clients in anonymously; name at least one scheme".into(),
            );
        }
        Some(AuthRule { user_agent, client_ip, auth })
    }

    fn domain(&mut self, s: &mut Section<'_, '_>) -> Option<Domain> {
        let realm = self.required_string(s, "realm").map(|(r, _)| r.to_ascii_uppercase());
        let netbios = self.required_string(s, "netbios_name").map(|(n, _)| n.to_ascii_uppercase());
        let krb5_conf = self.string(s, "krb5_conf").map(|(p, _)| self.file_path(&p));
        let keytab = self.string(s, "keytab").map(|(p, span)| (self.file_path(&p), span));
        let service_principal = self.string(s, "service_principal").map(|(p, _)| p);
        let acceptor_spn = self.acceptor_spns(s);
        let allow_rc4 = self.bool(s, "allow_rc4").unwrap_or(false);
        let credential_cache_size =
            self.count(s, "credential_cache_size", 10, 10_000_000).unwrap_or(kcd::DEFAULT_CACHE_SIZE);
        let (realm, netbios_name) = (realm?, netbios?);
        if let (Some((path, span)), true) = (&keytab, self.read_keytab) {
            let config = self.file.clone();
            if let Some(msg) = super::files::keytab(path, service_principal.as_deref(), &realm, &config) {
                self.problem(span.clone(), &s.key_path("keytab"), msg);
            }
        }
        let keytab = keytab.map(|(p, _)| p);
        // gatehouse's own host name, from the (first) SPN clients use for it.
        let computer_dns = acceptor_spn
            .first()
            .and_then(|spn| spn.split_once('/'))
            .map(|(_, host)| host.split(['@', ':']).next().unwrap_or(host).to_ascii_lowercase())
            .unwrap_or_else(|| format!("gatehouse.{}", realm.to_ascii_lowercase()));
        let computer_netbios = computer_dns.split('.').next().unwrap_or("GATEHOUSE").to_ascii_uppercase();
        Some(Domain {
            realm,
            netbios_name,
            computer_netbios,
            computer_dns,
            krb5_conf,
            keytab,
            service_principal,
            acceptor_spn,
            allow_rc4,
            credential_cache_size,
        })
    }

    /// `acceptor_spn`: one SPN, or a list of them (mail, autodiscover and any
    /// other published name). Each must be `service/host` with no realm (the
    /// realm is `[domain] realm`): the host is matched against the request's.
    fn acceptor_spns(&mut self, s: &mut Section<'_, '_>) -> Vec<String> {
        let Some(value) = s.get("acceptor_spn") else { return Vec::new() };
        let given = match value.get_ref() {
            DeValue::String(text) => vec![(text.to_string(), value.span())],
            DeValue::Array(_) => self.string_list(s, "acceptor_spn").unwrap_or_default(),
            _ => {
                let key = s.key_path("acceptor_spn");
                let fix = "expected an SPN such as \"HTTP/mail.corp.example\", or a list of them";
                self.problem(value.span(), &key, fix.into());
                return Vec::new();
            }
        };
        if given.is_empty() {
            let key = s.key_path("acceptor_spn");
            let why = "an empty list accepts no Kerberos ticket; name the SPN clients ask for, or remove the key";
            self.problem(value.span(), &key, why.into());
        }
        let mut out: Vec<String> = Vec::new();
        for (spn, span) in given {
            let key = s.key_path("acceptor_spn");
            let host = spn.split_once('/').map(|(_, h)| h);
            if spn.contains('@') || host.is_none_or(|h| h.is_empty() || h.contains('/')) {
                let why = format!(
                    "`{spn}` is not an SPN of the form \"HTTP/mail.corp.example\" (service/host, without @REALM)"
                );
                self.problem(span, &key, why);
            } else if out.iter().any(|o| o.eq_ignore_ascii_case(&spn)) {
                self.problem(span, &key, format!("`{spn}` is listed twice"));
            } else {
                out.push(spn);
            }
        }
        out
    }

    fn accounts(&mut self, s: &mut Section<'_, '_>) -> Option<Accounts> {
        #[derive(Clone, Copy)]
        enum Source {
            File,
            Winbind,
        }
        if s.table.iter().all(|(k, _)| k.get_ref().as_ref() != "source") {
            self.required_string(s, "source");
            return None;
        }
        let source = self.choice(s, "source", &[("file", Source::File), ("winbind", Source::Winbind)])?;
        // Declared known for both sources: a key of the other is a mistake.
        let (others, name) = match source {
            Source::File => (&ACCOUNTS_KEYS[2..], "winbind"),
            Source::Winbind => (&ACCOUNTS_KEYS[1..2], "file"),
        };
        for key in others {
            if let Some(v) = s.table.iter().find(|(k, _)| k.get_ref().as_ref() == *key).map(|(_, v)| v) {
                self.problem(v.span(), &s.key_path(key), format!("only meaningful with source = \"{name}\""));
            }
        }
        match source {
            Source::File => {
                let (name, span) = self.required_string(s, "file")?;
                let path = self.file_path(&name);
                match UserFile::load(&path) {
                    Ok(users) => Some(Accounts::File { path, users: Arc::new(users) }),
                    Err(msg) => {
                        let key = s.key_path("file");
                        self.problem(span, &key, msg);
                        None
                    }
                }
            }
            Source::Winbind => {
                let source_span = s.table.iter().find(|(k, _)| k.get_ref().as_ref() == "source").map(|(_, v)| v.span());
                let (ntlm_auth, span, key) = match self.string(s, "ntlm_auth") {
                    Some((p, span)) => (PathBuf::from(p), Some(span), "ntlm_auth"),
                    None => (PathBuf::from("ntlm_auth"), source_span, "source"),
                };
                if let Some(msg) = super::files::ntlm_auth(&ntlm_auth) {
                    self.problem(span.unwrap_or(s.span.clone()), &s.key_path(key), msg);
                }
                let smb_conf = self.string(s, "smb_conf").map(|(p, _)| self.file_path(&p));
                let helpers = self.count(s, "helpers", 1, 64).unwrap_or(4);
                let timeout = self.duration(s, "timeout").unwrap_or(Duration::from_secs(10));
                Some(Accounts::Winbind { ntlm_auth, smb_conf, helpers, timeout })
            }
        }
    }
}

/// Each string of the table's `hosts`, lower-cased as sites hold them, and
/// where it is written.
fn host_spans(s: &Section<'_, '_>) -> Vec<(String, Span)> {
    let Some(DeValue::Array(items)) =
        s.table.iter().find(|(k, _)| k.get_ref().as_ref() == "hosts").map(|(_, v)| v.get_ref())
    else {
        return Vec::new();
    };
    items.iter().filter_map(|h| Some((h.get_ref().as_str()?.to_ascii_lowercase(), h.span()))).collect()
}

pub(super) fn parse_backend(text: &str) -> Result<Backend, String> {
    let bad =
        || format!("`{text}` is not a backend URL such as \"http://10.0.0.5:80\" or \"https://iis.corp.example\"");
    let uri: http::Uri = text.parse().map_err(|_| bad())?;
    let tls = match uri.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        _ => return Err(bad()),
    };
    let host = uri.host().filter(|h| !h.is_empty()).ok_or_else(bad)?;
    if uri.path_and_query().is_some_and(|p| p.as_str() != "/" && !p.as_str().is_empty()) {
        return Err(format!("`{text}`: a backend URL has no path; requests keep the path the client sent"));
    }
    let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
    let host = host.trim_start_matches('[').trim_end_matches(']').to_owned();
    let origin = format!("{}://{}:{port}", if tls { "https" } else { "http" }, uri.host().unwrap_or_default());
    Ok(Backend {
        origin,
        tls: tls.then(|| BackendTls { server_name: host.clone(), ca: None, verify: true }),
        host,
        port,
    })
}
