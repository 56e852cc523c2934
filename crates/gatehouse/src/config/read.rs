//! Reading the TOML file into [`Config`], collecting every problem on the way.

use std::collections::HashSet;
use std::fmt;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::*;

/// One thing wrong with the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
    /// Dotted key path, e.g. `site[1].backend`; empty for syntax errors.
    pub key: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file.display(), self.line, self.column)?;
        if !self.key.is_empty() {
            write!(f, "{}: ", self.key)?;
        }
        f.write_str(&self.message)
    }
}

/// Everything wrong with the file, in file order.
#[derive(Debug, Clone)]
pub struct Problems(pub Vec<Problem>);

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for p in &self.0 {
            writeln!(f, "{p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Problems {}

/// Reads and validates the file at `path`.
pub fn load(path: &Path) -> Result<Config, Problems> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Problems(vec![Problem {
            file: path.to_owned(),
            line: 0,
            column: 0,
            key: String::new(),
            message: format!("cannot read configuration: {e}"),
        }])
    })?;
    load_str(path, &text)
}

/// Validates `text` as if read from `path`; relative file names in it are taken
/// relative to the directory of `path`.
pub fn load_str(path: &Path, text: &str) -> Result<Config, Problems> {
    let mut r = Reader {
        file: path.to_owned(),
        base: path.parent().map(Path::to_owned).unwrap_or_default(),
        text,
        problems: Vec::new(),
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

type Span = Range<usize>;

struct Reader<'t> {
    file: PathBuf,
    base: PathBuf,
    text: &'t str,
    problems: Vec<Problem>,
}

/// A table being read: remembers which keys were asked for, so that the rest can
/// be reported as unknown.
struct Section<'a, 'i> {
    table: &'a DeTable<'i>,
    span: Span,
    path: String,
    known: Vec<&'static str>,
}

impl<'a, 'i> Section<'a, 'i> {
    fn get(&mut self, key: &'static str) -> Option<&'a Spanned<DeValue<'i>>> {
        self.known.push(key);
        self.table.iter().find(|(k, _)| k.get_ref().as_ref() == key).map(|(_, v)| v)
    }

    fn key_path(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        }
    }
}

impl<'t> Reader<'t> {
    fn problem(&mut self, span: Span, key: &str, message: String) {
        let (line, column) = line_col(self.text, span.start);
        self.problems.push(Problem { file: self.file.clone(), line, column, key: key.to_owned(), message });
    }

    fn section<'a, 'i>(&mut self, value: &'a Spanned<DeValue<'i>>, path: String) -> Option<Section<'a, 'i>> {
        match value.get_ref() {
            DeValue::Table(t) => Some(Section { table: t, span: value.span(), path, known: Vec::new() }),
            other => {
                self.problem(value.span(), &path, format!("expected a table, found {}", kind(other)));
                None
            }
        }
    }

    fn finish(&mut self, s: Section<'_, '_>) {
        for (k, _) in s.table.iter() {
            let name = k.get_ref().as_ref();
            if !s.known.contains(&name) {
                let mut message = format!("unknown key `{name}`");
                if let Some(near) = s.known.iter().find(|known| close(known, name)) {
                    message.push_str(&format!(" (did you mean `{near}`?)"));
                }
                self.problem(k.span(), &s.key_path(name), message);
            }
        }
    }

    fn string(&mut self, s: &mut Section<'_, '_>, key: &'static str) -> Option<(String, Span)> {
        let v = s.get(key)?;
        match v.get_ref() {
            DeValue::String(text) => Some((text.to_string(), v.span())),
            other => {
                let path = s.key_path(key);
                self.problem(v.span(), &path, format!("expected a string, found {}", kind(other)));
                None
            }
        }
    }

    fn required_string(&mut self, s: &mut Section<'_, '_>, key: &'static str) -> Option<(String, Span)> {
        let present = s.table.iter().any(|(k, _)| k.get_ref().as_ref() == key);
        if !present {
            s.known.push(key);
            let path = s.key_path(key);
            self.problem(s.span.clone(), &path, format!("missing required key `{key}`"));
            return None;
        }
        self.string(s, key)
    }

    fn bool(&mut self, s: &mut Section<'_, '_>, key: &'static str) -> Option<bool> {
        let v = s.get(key)?;
        match v.get_ref() {
            DeValue::Boolean(b) => Some(*b),
            other => {
                let path = s.key_path(key);
                self.problem(v.span(), &path, format!("expected true or false, found {}", kind(other)));
                None
            }
        }
    }

    fn count(&mut self, s: &mut Section<'_, '_>, key: &'static str, min: u64, max: u64) -> Option<usize> {
        let v = s.get(key)?;
        let path = s.key_path(key);
        let parsed = match v.get_ref() {
            DeValue::Integer(i) => u64::from_str_radix(i.as_str(), i.radix()).ok(),
            _ => None,
        };
        match parsed {
            Some(n) if (min..=max).contains(&n) => Some(n as usize),
            _ => {
                self.problem(v.span(), &path, format!("expected a whole number from {min} to {max}"));
                None
            }
        }
    }

    /// A duration: a whole number of seconds, or a string such as "90s", "20m", "1h".
    fn duration(&mut self, s: &mut Section<'_, '_>, key: &'static str) -> Option<Duration> {
        let v = s.get(key)?;
        let path = s.key_path(key);
        let parsed = match v.get_ref() {
            DeValue::Integer(i) => u64::from_str_radix(i.as_str(), i.radix()).ok().map(Duration::from_secs),
            DeValue::String(t) => humantime::parse_duration(t).ok(),
            _ => None,
        };
        match parsed {
            Some(d) if !d.is_zero() && d <= Duration::from_secs(30 * 24 * 3600) => Some(d),
            _ => {
                self.problem(
                    v.span(),
                    &path,
                    "expected a duration above zero and at most 30 days: seconds, or a string like \"90s\", \"20m\", \"1h\"".into(),
                );
                None
            }
        }
    }

    fn string_list(&mut self, s: &mut Section<'_, '_>, key: &'static str) -> Option<Vec<(String, Span)>> {
        let v = s.get(key)?;
        let path = s.key_path(key);
        let DeValue::Array(items) = v.get_ref() else {
            self.problem(v.span(), &path, format!("expected a list of strings, found {}", kind(v.get_ref())));
            return None;
        };
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            match item.get_ref() {
                DeValue::String(t) => out.push((t.to_string(), item.span())),
                other => self.problem(
                    item.span(),
                    &format!("{path}[{i}]"),
                    format!("expected a string, found {}", kind(other)),
                ),
            }
        }
        Some(out)
    }

    fn file_path(&self, name: &str) -> PathBuf {
        let p = Path::new(name);
        if p.is_absolute() {
            p.to_owned()
        } else {
            self.base.join(p)
        }
    }

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
        };
        if let Some(v) = root.get("timeouts") {
            if let Some(mut s) = self.section(v, "timeouts".into()) {
                self.timeouts(&mut s, &mut config.timeouts);
                self.finish(s);
            }
        }
        if let Some(v) = root.get("limits") {
            if let Some(mut s) = self.section(v, "limits".into()) {
                self.limits(&mut s, &mut config.limits);
                self.finish(s);
            }
        }
        if let Some(v) = root.get("log") {
            if let Some(mut s) = self.section(v, "log".into()) {
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
                self.finish(s);
            }
        }
        if let Some(v) = root.get("domain") {
            if let Some(mut s) = self.section(v, "domain".into()) {
                config.domain = self.domain(&mut s);
                self.finish(s);
            }
        }
        let mut accounts_span = None;
        if let Some(v) = root.get("accounts") {
            if let Some(mut s) = self.section(v, "accounts".into()) {
                accounts_span = Some(s.span.clone());
                config.accounts = self.accounts(&mut s);
                self.finish(s);
            }
        }
        if let Some(v) = root.get("lockout") {
            if let Some(mut s) = self.section(v, "lockout".into()) {
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
        if let Some(v) = root.get("basic") {
            if let Some(mut s) = self.section(v, "basic".into()) {
                if let Some(d) = self.duration(&mut s, "cache") {
                    config.basic_cache = d;
                }
                self.finish(s);
            }
        }
        // Names of every listener, valid or not, so that a site naming a broken
        // listener is not reported as naming a missing one.
        let mut listener_names = Vec::new();
        for (i, v) in self.array_of_tables(&mut root, "listener") {
            if let Some(mut s) = self.section(v, format!("listener[{i}]")) {
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
                    config.listeners.push(l);
                }
                self.finish(s);
            }
        }
        let mut site_keys = HashSet::new();
        let mut site_names = HashSet::new();
        for (i, v) in self.array_of_tables(&mut root, "site") {
            if let Some(mut s) = self.section(v, format!("site[{i}]")) {
                let span = s.span.clone();
                let preset = self.string(&mut s, "preset");
                let path_given = s.table.iter().any(|(k, _)| k.get_ref().as_ref() == "path_prefix");
                let read = self.site(&mut s, &listener_names, preset.is_some());
                let expanded = match (read, preset) {
                    (None, _) => Vec::new(),
                    (Some(site), None) => vec![site],
                    (Some(site), Some((p, pspan))) if p == "exchange" => {
                        if path_given {
                            self.problem(
                                pspan,
                                &format!("site[{i}].path_prefix"),
                                "a preset publishes its own paths; remove path_prefix".into(),
                            );
                        }
                        super::preset::exchange(&site)
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
                for site in expanded {
                    if !site_names.insert(site.name.clone()) {
                        self.problem(
                            span.clone(),
                            &format!("site[{i}].name"),
                            format!("two sites are named `{}`", site.name),
                        );
                    }
                    let hosts = if site.hosts.is_empty() { vec![String::new()] } else { site.hosts.clone() };
                    for h in hosts {
                        let key = (site.listener.clone(), h.clone(), site.path_prefix.to_ascii_lowercase());
                        if !site_keys.insert(key) {
                            let host = if h.is_empty() { "any host".to_owned() } else { h };
                            self.problem(
                                span.clone(),
                                &format!("site[{i}]"),
                                format!(
                                    "another site on listener `{}` already serves {host} with path_prefix `{}`",
                                    site.listener, site.path_prefix
                                ),
                            );
                        }
                    }
                    config.sites.push(site);
                }
                self.finish(s);
            }
        }
        let needs_ntlm = config
            .sites
            .iter()
            .any(|s| s.auth.contains(&Scheme::Ntlm) || s.auth_for.iter().any(|r| r.auth.contains(&Scheme::Ntlm)));
        if needs_ntlm && config.accounts.is_none() && accounts_span.is_none() {
            self.problem(
                0..0,
                "accounts",
                "a site offers NTLM but there is no [accounts] section saying where passwords are checked".into(),
            );
        }
        if needs_ntlm && config.domain.is_none() && root.table.iter().all(|(k, _)| k.get_ref().as_ref() != "domain") {
            self.problem(
                0..0,
                "domain",
                "a site offers NTLM but there is no [domain] section (netbios_name, realm)".into(),
            );
        }
        let offers =
            |s: &Site, scheme: Scheme| s.auth.contains(&scheme) || s.auth_for.iter().any(|r| r.auth.contains(&scheme));
        // Basic carries the password itself: never over plain HTTP.
        for (i, site) in config.sites.iter().enumerate() {
            let plain = config.listeners.iter().any(|l| l.name == site.listener && l.tls.is_none());
            if offers(site, Scheme::Basic) && plain {
                self.problem(
                    0..0,
                    &format!("site[{i}].auth"),
                    format!(
                        "site `{}` offers Basic on listener `{}`, which has no TLS: the password would travel in clear",
                        site.name, site.listener
                    ),
                );
            }
        }
        let needs_kerberos = config.sites.iter().any(|s| offers(s, Scheme::Negotiate) || offers(s, Scheme::Basic));
        if needs_kerberos {
            match &config.domain {
                Some(d) if d.keytab.is_some() && d.service_principal.is_some() && d.acceptor_spn.is_some() => {}
                _ => self.problem(
                    0..0,
                    "domain",
                    "a site offers Negotiate or Basic but [domain] lacks keytab, service_principal or acceptor_spn \
                     (the SPN clients ask tickets for, and the account that owns it; Basic checks passwords by \
                     asking the KDC for a ticket to it)"
                        .into(),
                ),
            }
        }
        if config.sites.iter().any(|s| s.delegation.is_some()) {
            match &config.domain {
                Some(d) if d.keytab.is_some() && d.service_principal.is_some() => {}
                _ => self.problem(
                    0..0,
                    "domain",
                    "a site delegates (kcd) but [domain] lacks keytab or service_principal".into(),
                ),
            }
        }
        if config.listeners.is_empty() && self.problems.is_empty() {
            self.problem(0..0, "listener", "no [[listener]]: nothing would be served".into());
        }
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
        let tls = match s.get("tls") {
            None => None,
            Some(v) => {
                let path = s.key_path("tls");
                let mut t = self.section(v, path)?;
                let tls = self.listener_tls(&mut t);
                self.finish(t);
                Some(tls?)
            }
        };
        let channel_binding = match self.string(s, "channel_binding") {
            None => ntlm::ChannelBindingPolicy::WhenSupported,
            Some((p, span)) => match p.as_str() {
                "off" => ntlm::ChannelBindingPolicy::Off,
                "when-supported" => ntlm::ChannelBindingPolicy::WhenSupported,
                "required" => ntlm::ChannelBindingPolicy::Required,
                _ => {
                    let key = s.key_path("channel_binding");
                    self.problem(span, &key, format!("`{p}`: expected \"off\", \"when-supported\" or \"required\""));
                    ntlm::ChannelBindingPolicy::WhenSupported
                }
            },
        };
        let http2 = match (self.bool(s, "http2"), &tls) {
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
        Some(Listener { name: name?.0, bind: bind?, tls, channel_binding, http2 })
    }

    fn listener_tls(&mut self, t: &mut Section<'_, '_>) -> Option<ListenerTls> {
        let mut certificates = Vec::new();
        let mut ok = true;
        match self.cert_pair(t) {
            Some(c) => certificates.push(c),
            None => ok = false,
        }
        if let Some(v) = t.get("sni") {
            let path = t.key_path("sni");
            match v.get_ref() {
                DeValue::Array(items) => {
                    for (i, item) in items.iter().enumerate() {
                        if let Some(mut c) = self.section(item, format!("{path}[{i}]")) {
                            match self.cert_pair(&mut c) {
                                Some(cert) => certificates.push(cert),
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
        ok.then_some(ListenerTls { certificates })
    }

    fn cert_pair(&mut self, t: &mut Section<'_, '_>) -> Option<std::sync::Arc<rustls::sign::CertifiedKey>> {
        let cert = self.required_string(t, "cert");
        let key = self.required_string(t, "key");
        let ((cert, cert_span), (key, key_span)) = (cert?, key?);
        let cert_path = self.file_path(&cert);
        let key_path = self.file_path(&key);
        match crate::tls::load_certified_key(&cert_path, &key_path) {
            Ok(ck) => Some(ck),
            Err(crate::tls::PemError::Cert(msg)) => {
                self.problem(cert_span, &t.key_path("cert"), format!("{}: {msg}", cert_path.display()));
                None
            }
            Err(crate::tls::PemError::Key(msg)) => {
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
        let backend = self.required_string(s, "backend").and_then(|(b, span)| match parse_backend(&b) {
            Ok(backend) => Some(backend),
            Err(msg) => {
                let key = s.key_path("backend");
                self.problem(span, &key, msg);
                None
            }
        });
        let mut backend = backend;
        if let Some(v) = s.get("backend_tls") {
            let path = s.key_path("backend_tls");
            if let Some(mut t) = self.section(v, path.clone()) {
                let server_name = self.string(&mut t, "server_name");
                let ca = self.string(&mut t, "ca");
                let verify = self.bool(&mut t, "verify");
                if let Some((ca, span)) = &ca {
                    let p = self.file_path(ca);
                    if let Err(msg) = crate::tls::load_ca_bundle(&p) {
                        self.problem(span.clone(), &format!("{path}.ca"), format!("{}: {msg}", p.display()));
                    }
                }
                match backend.as_mut().map(|b| b.tls.as_mut()) {
                    Some(Some(tls)) => {
                        if let Some((n, _)) = server_name {
                            tls.server_name = n;
                        }
                        tls.ca = ca.map(|(c, _)| self.file_path(&c));
                        tls.verify = verify.unwrap_or(true);
                    }
                    Some(None) => self.problem(t.span.clone(), &path, "backend_tls needs an https:// backend".into()),
                    None => {}
                }
                self.finish(t);
            }
        }
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
        let mut auth_for = Vec::new();
        if let Some(v) = s.get("auth_for") {
            let path = s.key_path("auth_for");
            match v.get_ref() {
                DeValue::Array(items) => {
                    for (i, item) in items.iter().enumerate() {
                        if let Some(mut r) = self.section(item, format!("{path}[{i}]")) {
                            if let Some(rule) = self.auth_rule(&mut r) {
                                auth_for.push(rule);
                            }
                            self.finish(r);
                        }
                    }
                }
                other => {
                    self.problem(v.span(), &path, format!("expected [[site.auth_for]] tables, found {}", kind(other)))
                }
            }
        }
        let forward_basic =
            s.table.iter().any(|(k, v)| k.get_ref().as_ref() == "delegation" && v.get_ref().as_str() == Some("basic"));
        let delegation = self.delegation(s, backend.as_ref(), !auth.is_empty() || preset);
        if forward_basic && (auth != [Scheme::Basic] || !auth_for.is_empty() || preset) {
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
        Some(Site {
            name: name?.0,
            listener: listener?,
            hosts,
            path_prefix,
            backend: backend?,
            host_header,
            identity_header,
            stream_idle,
            auth,
            auth_for,
            negotiate_once,
            delegation,
            forward_basic,
            websocket,
        })
    }

    /// `delegation`, `backend_spn`, `backend_token`, `send_token`, `delegation_user`.
    fn delegation(&mut self, s: &mut Section<'_, '_>, backend: Option<&Backend>, has_auth: bool) -> Option<Delegation> {
        let mode = self.string(s, "delegation");
        let spn = self.string(s, "backend_spn");
        let token = self.string(s, "backend_token");
        let send = self.string(s, "send_token");
        let user = self.string(s, "delegation_user");
        let kcd = match &mode {
            None => false,
            Some((m, _)) if m == "none" => false,
            Some((m, _)) if m == "kcd" => true,
            // Forwarding the client's Basic credentials: no Kerberos involved.
            Some((m, _)) if m == "basic" => false,
            Some((m, span)) => {
                let key = s.key_path("delegation");
                self.problem(span.clone(), &key, format!("`{m}`: expected \"none\", \"kcd\" or \"basic\""));
                return None;
            }
        };
        if !kcd {
            for (v, key) in
                [(&spn, "backend_spn"), (&token, "backend_token"), (&send, "send_token"), (&user, "delegation_user")]
            {
                if let Some((_, span)) = v {
                    self.problem(span.clone(), &s.key_path(key), "only meaningful with delegation = \"kcd\"".into());
                }
            }
            return None;
        }
        let span = mode.map(|m| m.1).unwrap_or(s.span.clone());
        if !has_auth {
            self.problem(
                span.clone(),
                &s.key_path("delegation"),
                "delegation needs an authenticated user: set `auth`".into(),
            );
        }
        let Some((spn, spn_span)) = spn else {
            self.problem(
                span,
                &s.key_path("backend_spn"),
                "delegation = \"kcd\" needs backend_spn, e.g. \"HTTP/{backend_host}\"".into(),
            );
            return None;
        };
        let spn = match backend {
            Some(b) => spn.replace("{backend_host}", &b.host),
            None => spn,
        };
        if !spn.contains('/') || spn.contains('{') {
            self.problem(
                spn_span,
                &s.key_path("backend_spn"),
                format!("`{spn}` is not an SPN such as \"HTTP/iis.corp.example\""),
            );
        }
        let token = match token.as_ref().map(|(t, _)| t.as_str()) {
            None | Some("spnego") => kcd::Token::Spnego,
            Some("kerberos") => kcd::Token::Kerberos,
            Some(other) => {
                let (_, span) = token.clone().unwrap();
                self.problem(
                    span,
                    &s.key_path("backend_token"),
                    format!("`{other}`: expected \"spnego\" or \"kerberos\""),
                );
                kcd::Token::Spnego
            }
        };
        let send = match send.as_ref().map(|(t, _)| t.as_str()) {
            None | Some("always") => SendToken::Always,
            Some("on-401") => SendToken::On401,
            Some("every-request") => SendToken::EveryRequest,
            Some(other) => {
                let (_, span) = send.clone().unwrap();
                self.problem(
                    span,
                    &s.key_path("send_token"),
                    format!("`{other}`: expected \"always\", \"every-request\" or \"on-401\""),
                );
                SendToken::Always
            }
        };
        let user = match user.as_ref().map(|(t, _)| t.as_str()) {
            None | Some("account") => DelegationUser::Account,
            Some("upn") => DelegationUser::Upn,
            Some(other) => {
                let (_, span) = user.clone().unwrap();
                self.problem(
                    span,
                    &s.key_path("delegation_user"),
                    format!("`{other}`: expected \"account\" or \"upn\""),
                );
                DelegationUser::Account
            }
        };
        Some(Delegation { spn, token, send, user })
    }

    fn schemes(&mut self, s: &mut Section<'_, '_>, key: &'static str) -> Option<Vec<Scheme>> {
        let list = self.string_list(s, key)?;
        let path = s.key_path(key);
        let mut out = Vec::new();
        for (name, span) in list {
            match name.to_ascii_lowercase().as_str() {
                "ntlm" => out.push(Scheme::Ntlm),
                "negotiate" => out.push(Scheme::Negotiate),
                "basic" => out.push(Scheme::Basic),
                _ => self.problem(
                    span,
                    &path,
                    format!("`{name}` is not an authentication scheme (Negotiate, NTLM, Basic)"),
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
                match text.parse::<crate::auth::Cidr>() {
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
        let keytab = self.string(s, "keytab").map(|(p, _)| self.file_path(&p));
        let service_principal = self.string(s, "service_principal").map(|(p, _)| p);
        let acceptor_spn = self.string(s, "acceptor_spn").map(|(p, _)| p);
        let (realm, netbios_name) = (realm?, netbios?);
        // gatehouse's own host name, from the SPN clients use for it.
        let computer_dns = acceptor_spn
            .as_deref()
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
        })
    }

    fn accounts(&mut self, s: &mut Section<'_, '_>) -> Option<Accounts> {
        let source = self.required_string(s, "source")?;
        match source.0.as_str() {
            "file" => {
                let (name, span) = self.required_string(s, "file")?;
                let path = self.file_path(&name);
                match crate::accounts::UserFile::load(&path) {
                    Ok(users) => Some(Accounts::File { users: Arc::new(users) }),
                    Err(msg) => {
                        let key = s.key_path("file");
                        self.problem(span, &key, msg);
                        None
                    }
                }
            }
            "winbind" => {
                let ntlm_auth =
                    self.string(s, "ntlm_auth").map_or_else(|| PathBuf::from("ntlm_auth"), |(p, _)| PathBuf::from(p));
                let smb_conf = self.string(s, "smb_conf").map(|(p, _)| self.file_path(&p));
                let helpers = self.count(s, "helpers", 1, 64).unwrap_or(4);
                let timeout = self.duration(s, "timeout").unwrap_or(Duration::from_secs(10));
                Some(Accounts::Winbind { ntlm_auth, smb_conf, helpers, timeout })
            }
            other => {
                let key = s.key_path("source");
                self.problem(source.1, &key, format!("`{other}`: expected \"file\" or \"winbind\""));
                None
            }
        }
    }
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

fn kind(v: &DeValue<'_>) -> &'static str {
    match v {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a date",
        DeValue::Array(_) => "a list",
        DeValue::Table(_) => "a table",
    }
}

/// Same letters but for one edit or a different case: worth a "did you mean".
fn close(a: &str, b: &str) -> bool {
    if a.eq_ignore_ascii_case(b) {
        return true;
    }
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len().abs_diff(b.len()) > 1 {
        return false;
    }
    let prefix = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    let suffix = a.iter().rev().zip(b.iter().rev()).take_while(|(x, y)| x == y).count();
    prefix + suffix + 1 >= a.len().max(b.len())
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}
