//! A site's backends: `backend` (one) or `backends` (a farm), each with its
//! TLS settings, weight and drain; `[site.health]`; `affinity`; and the
//! process-wide `[affinity]` and `[control]` sections.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use toml::de::DeValue;

use super::reader::{kind, Reader, Section, Span};
use super::{Affinity, AffinitySettings, BackendTls, Check, Control, Farm, Health, Member, Secret, BACKEND_HOST};

const MEMBER_KEYS: &[&str] = &["url", "weight", "tls", "drain"];
const TLS_KEYS: &[&str] = &["server_name", "ca", "verify"];

/// The most backends one site may have.
const MAX_MEMBERS: usize = 64;

/// `backend_tls` or a backend's `tls`: the keys given, each replacing the
/// site's (or the URL's default).
#[derive(Default, Clone)]
struct TlsKeys {
    server_name: Option<String>,
    ca: Option<PathBuf>,
    verify: Option<bool>,
}

impl TlsKeys {
    fn apply(&self, tls: &mut BackendTls) {
        if let Some(n) = &self.server_name {
            tls.server_name = n.clone();
        }
        if let Some(ca) = &self.ca {
            tls.ca = Some(ca.clone());
        }
        if let Some(v) = self.verify {
            tls.verify = v;
        }
    }
}

/// One backend as written: URL, own TLS keys, weight, drain, and where
/// (span and key path, for its problems).
type Written = (String, Option<TlsKeys>, u32, bool, Span, String);

impl Reader<'_> {
    /// `backend` or `backends`, `backend_tls`, `health` and `affinity`.
    /// `preset`: the site is a preset's, whose paths check their own pages.
    pub(super) fn farm(&mut self, s: &mut Section<'_, '_>, preset: bool) -> Option<Farm> {
        let site_tls = match s.get("backend_tls") {
            None => None,
            Some(v) => Some(self.tls_keys(v, s.key_path("backend_tls"))?),
        };
        let single = s.get("backend");
        let many = s.get("backends");
        let written: Vec<Written> = match (single, many) {
            (Some(_), Some(v)) => {
                self.problem(
                    v.span(),
                    &s.key_path("backends"),
                    "give `backend` (one) or `backends` (a farm), not both".into(),
                );
                return None;
            }
            (None, None) => {
                self.problem(
                    s.span.clone(),
                    &s.key_path("backend"),
                    "missing required key `backend` (or `backends` for several)".into(),
                );
                return None;
            }
            (Some(v), None) => match v.get_ref() {
                DeValue::String(url) => vec![(url.to_string(), None, 1, false, v.span(), s.key_path("backend"))],
                other => {
                    let why = format!("expected a URL such as \"https://iis01.corp.example\", found {}", kind(other));
                    self.problem(v.span(), &s.key_path("backend"), why);
                    return None;
                }
            },
            (None, Some(v)) => self.members(v, s.key_path("backends"))?,
        };
        let mut members: Vec<Member> = Vec::new();
        let mut ok = true;
        for (url, tls, weight, drain, span, key) in written {
            let mut backend = match super::read::parse_backend(&url) {
                Ok(b) => b,
                Err(msg) => {
                    self.problem(span, &key, msg);
                    ok = false;
                    continue;
                }
            };
            match backend.tls.as_mut() {
                Some(t) => {
                    for keys in site_tls.iter().chain(tls.iter()) {
                        keys.apply(t);
                    }
                }
                None if tls.is_some() => {
                    self.problem(span, &key, format!("`{url}`: tls needs an https:// backend"));
                    ok = false;
                    continue;
                }
                None => {}
            }
            if members.iter().any(|m| m.backend == backend) {
                self.problem(span, &key, format!("`{url}` is listed twice"));
                ok = false;
                continue;
            }
            members.push(Member { backend, url, weight, drain });
        }
        if site_tls.is_some() && ok && members.iter().all(|m| m.backend.tls.is_none()) {
            let span = s.get("backend_tls").map(|v| v.span()).unwrap_or(s.span.clone());
            self.problem(span, &s.key_path("backend_tls"), "backend_tls needs an https:// backend".into());
        }
        let health = self.health(s, members.len(), preset);
        let affinity = self
            .choice(
                s,
                "affinity",
                &[("none", Affinity::None), ("source", Affinity::Source), ("cookie", Affinity::Cookie)],
            )
            .unwrap_or(Affinity::None);
        (ok && !members.is_empty()).then_some(Farm { members, health: health?, affinity })
    }

    /// `backends = ["https://a", { url = "https://b", weight = 2 }]`.
    fn members(&mut self, v: &toml::Spanned<DeValue<'_>>, path: String) -> Option<Vec<Written>> {
        let DeValue::Array(items) = v.get_ref() else {
            let why = format!("expected a list of backend URLs or {{ url = ... }} tables, found {}", kind(v.get_ref()));
            self.problem(v.span(), &path, why);
            return None;
        };
        if items.is_empty() {
            self.problem(v.span(), &path, "an empty list serves nothing; name at least one backend".into());
            return None;
        }
        if items.len() > MAX_MEMBERS {
            self.problem(v.span(), &path, format!("at most {MAX_MEMBERS} backends per site"));
            return None;
        }
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let key = format!("{path}[{i}]");
            match item.get_ref() {
                DeValue::String(url) => out.push((url.to_string(), None, 1, false, item.span(), key)),
                DeValue::Table(_) => {
                    let mut t = self.section(item, key.clone(), MEMBER_KEYS)?;
                    let url = self.required_string(&mut t, "url");
                    let weight = self.count(&mut t, "weight", 1, 1000).unwrap_or(1) as u32;
                    let drain = self.bool(&mut t, "drain").unwrap_or(false);
                    let tls = match t.get("tls") {
                        None => Some(None),
                        Some(v) => self.tls_keys(v, t.key_path("tls")).map(Some),
                    };
                    self.finish(t);
                    if let (Some((url, span)), Some(tls)) = (url, tls) {
                        out.push((url, tls, weight, drain, span, format!("{key}.url")));
                    }
                }
                other => self.problem(
                    item.span(),
                    &key,
                    format!("expected a backend URL or a {{ url = ... }} table, found {}", kind(other)),
                ),
            }
        }
        Some(out)
    }

    /// `server_name`, `ca` (read and checked now), `verify`.
    fn tls_keys(&mut self, v: &toml::Spanned<DeValue<'_>>, path: String) -> Option<TlsKeys> {
        let mut t = self.section(v, path.clone(), TLS_KEYS)?;
        let server_name = self.string(&mut t, "server_name").map(|(n, _)| n);
        let verify = self.bool(&mut t, "verify");
        let mut ok = true;
        let ca = self.string(&mut t, "ca").map(|(ca, span)| {
            let p = self.file_path(&ca);
            if let Err(msg) = crate::pem::load_ca_bundle(&p) {
                self.problem(span, &format!("{path}.ca"), format!("{}: {msg}", p.display()));
                ok = false;
            }
            p
        });
        self.finish(t);
        ok.then_some(TlsKeys { server_name, ca, verify })
    }

    /// `[site.health]`. A farm of two or more is checked by default (TCP; the
    /// Exchange preset: each path's healthcheck.htm) and ejects a backend that
    /// refuses connections; a farm of one is left alone unless asked.
    fn health(&mut self, s: &mut Section<'_, '_>, members: usize, preset: bool) -> Option<Health> {
        let farm = members >= 2;
        let mut h = Health::off();
        if farm {
            h.check = if preset { preset_page() } else { Check::Tcp };
            h.eject_connect_failures = 1;
            h.eject_gateway_errors = 5;
        }
        let Some(v) = s.get("health") else { return Some(h) };
        let path = s.key_path("health");
        let mut t = self.section(v, path.clone(), &[])?;
        #[derive(Clone, Copy, PartialEq)]
        enum Kind {
            None,
            Tcp,
            Http,
        }
        let given = |t: &Section<'_, '_>, key: &str| t.table.iter().any(|(k, _)| k.get_ref().as_ref() == key);
        let kind = match t.get("check") {
            None => Some(match &h.check {
                Check::None => Kind::None,
                Check::Tcp => Kind::Tcp,
                Check::Http { .. } => Kind::Http,
            }),
            Some(_) => self.choice(&mut t, "check", &[("none", Kind::None), ("tcp", Kind::Tcp), ("http", Kind::Http)]),
        };
        let check_path = self.string(&mut t, "path");
        let status = self.count(&mut t, "status", 100, 599);
        let mut ok = kind.is_some();
        for (key, slot) in [("interval", &mut h.interval), ("timeout", &mut h.timeout), ("eject_for", &mut h.eject_for)]
        {
            let span = t.get(key).map(|v| v.span());
            match self.duration(&mut t, key) {
                Some(d) => *slot = d,
                None if span.is_some() => ok = false,
                None => {}
            }
        }
        for (key, slot, min, max) in [
            ("rise", &mut h.rise, 1, 100),
            ("fall", &mut h.fall, 1, 100),
            ("eject_after_connect_failures", &mut h.eject_connect_failures, 0, 100),
            ("eject_after_gateway_errors", &mut h.eject_gateway_errors, 0, 1000),
        ] {
            let present = given(&t, key);
            match self.count(&mut t, key, min, max) {
                Some(n) => *slot = n as u32,
                None if present => ok = false,
                None => {}
            }
        }
        match kind {
            Some(Kind::None) => {
                h.check = Check::None;
                for key in ["path", "status", "interval", "timeout", "rise", "fall"] {
                    if let Some(v) = t.table.iter().find(|(k, _)| k.get_ref().as_ref() == key).map(|(_, v)| v) {
                        let why = "only meaningful with check = \"tcp\" or \"http\"".to_owned();
                        self.problem(v.span(), &t.key_path(key), why);
                        ok = false;
                    }
                }
            }
            Some(Kind::Tcp) => {
                h.check = Check::Tcp;
                for key in ["path", "status"] {
                    if let Some(v) = t.table.iter().find(|(k, _)| k.get_ref().as_ref() == key).map(|(_, v)| v) {
                        self.problem(v.span(), &t.key_path(key), "only meaningful with check = \"http\"".into());
                        ok = false;
                    }
                }
            }
            Some(Kind::Http) => {
                let status = status.unwrap_or(200) as u16;
                h.check = match (check_path, preset) {
                    (Some((_, span)), true) => {
                        let why = "the Exchange preset checks each path's own healthcheck.htm \
                                   (/owa/healthcheck.htm, /ews/healthcheck.htm, ...); remove path"
                            .to_owned();
                        self.problem(span, &t.key_path("path"), why);
                        ok = false;
                        preset_page()
                    }
                    (None, true) => Check::Http { path: String::new(), status },
                    (None, false) => {
                        let why = "check = \"http\" needs the path to GET, e.g. path = \"/healthz\"".to_owned();
                        self.problem(t.span.clone(), &t.key_path("path"), why);
                        ok = false;
                        Check::None
                    }
                    (Some((p, span)), false) => {
                        let valid = p.starts_with('/') && p.parse::<http::uri::PathAndQuery>().is_ok_and(|q| q == *p);
                        if !valid {
                            let why = format!("`{p}` is not an absolute path such as \"/healthz\"");
                            self.problem(span, &t.key_path("path"), why);
                            ok = false;
                        }
                        Check::Http { path: p, status }
                    }
                };
            }
            None => {}
        }
        if h.timeout >= h.interval && h.check != Check::None {
            let span = t
                .table
                .iter()
                .find(|(k, _)| k.get_ref().as_ref() == "timeout")
                .map_or(t.span.clone(), |(_, v)| v.span());
            let why = format!(
                "timeout ({}) must be shorter than interval ({})",
                humantime::format_duration(h.timeout),
                humantime::format_duration(h.interval)
            );
            self.problem(span, &t.key_path("timeout"), why);
            ok = false;
        }
        self.finish(t);
        ok.then_some(h)
    }

    /// `[affinity]`: cookie, key_file, idle, max_sessions.
    pub(super) fn affinity_settings(&mut self, s: &mut Section<'_, '_>) -> AffinitySettings {
        let mut a = AffinitySettings::default();
        if let Some((name, span)) = self.string(s, "cookie") {
            // RFC 6265: a cookie name is an RFC 9110 token.
            let token =
                !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
            if token {
                a.cookie = name;
            } else {
                self.problem(
                    span,
                    &s.key_path("cookie"),
                    format!("`{name}` is not a cookie name (letters, digits, - _ .)"),
                );
            }
        }
        if let Some((file, span)) = self.string(s, "key_file") {
            let path = self.file_path(&file);
            match read_key(&path) {
                Ok(key) => a.key = Some(key),
                Err(why) => self.problem(span, &s.key_path("key_file"), format!("{}: {why}", path.display())),
            }
        }
        if let Some(d) = self.duration(s, "idle") {
            a.idle = d;
        }
        if let Some(n) = self.count(s, "max_sessions", 100, 10_000_000) {
            a.max_sessions = n;
        }
        a
    }

    /// `[control]`: socket.
    pub(super) fn control(&mut self, s: &mut Section<'_, '_>) -> Option<Control> {
        let (file, span) = self.required_string(s, "socket")?;
        let socket = self.file_path(&file);
        match super::files::control_socket(&socket) {
            None => Some(Control { socket }),
            Some(why) => {
                self.problem(span, &s.key_path("socket"), why);
                None
            }
        }
    }
}

/// The Exchange preset's check, before each path fills in its own page.
fn preset_page() -> Check {
    Check::Http { path: String::new(), status: 200 }
}

/// The affinity cookie's key: at least 32 bytes, readable by its owner alone
/// (anyone who reads it can forge cookies that pick a backend).
fn read_key(path: &std::path::Path) -> Result<Secret, String> {
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(format!(
            "readable by others (mode {:o}): `chmod 600 {}`; anyone who reads the key can forge affinity cookies",
            meta.permissions().mode() & 0o777,
            path.display()
        ));
    }
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    if bytes.len() < 32 {
        return Err(format!(
            "holds {} bytes; the key needs at least 32 random bytes: `head -c 32 /dev/urandom > {}`",
            bytes.len(),
            path.display()
        ));
    }
    if bytes.len() > 1024 {
        return Err("more than 1024 bytes: not a key file".into());
    }
    Ok(Secret(bytes))
}

/// Whether `backend_spn` gives every backend a valid SPN; None if so, else why not.
pub(super) fn spn_problem(spn: &str) -> Option<String> {
    let pattern = spn.replace(BACKEND_HOST, "host");
    let (service, host) = pattern.split_once('/').unwrap_or_default();
    if service.is_empty() || host.is_empty() || pattern.contains(['{', '}']) {
        return Some(format!("`{spn}` is not an SPN such as \"HTTP/iis.corp.example\" or \"HTTP/{BACKEND_HOST}\""));
    }
    None
}
