//! Publishing presets: one `[[site]]` that expands into the sites a product
//! needs, with the per-path settings the field learned (TMG's publishing
//! wizards, without their defaults' bugs).

use std::time::Duration;

use toml::de::DeValue;

use super::reader::{kind, Reader, Section, Span};
use super::{AuthRule, Config, Scheme, Site};

/// A preset site's exceptions: `exclude = ["/ecp"]` leaves paths out,
/// `[[site.path]]` (`prefix` and any of `PATH_KEYS`) sets one path's own.
pub const EXCEPTION_KEYS: &[&str] = &["exclude", "path"];
const PATH_KEYS: &[&str] =
    &["prefix", "auth", "auth_for", "stream_idle", "negotiate_once", "websocket", "allow", "deny"];

/// One `[[site.path]]`: what it sets, None for what the preset decides.
struct PathSettings {
    prefix: String,
    auth: Option<Vec<Scheme>>,
    auth_for: Option<Vec<AuthRule>>,
    stream_idle: Option<Duration>,
    negotiate_once: Option<bool>,
    websocket: Option<bool>,
    /// `allow` and `deny` of this path, replacing the site's (both, even if
    /// only one is written: `/ecp` for admins is its own rule).
    rules: Option<super::Rules>,
}

impl PathSettings {
    /// The keys set, in the order of PATH_KEYS.
    fn apply(self, site: &mut Site) -> Vec<&'static str> {
        let mut set = Vec::new();
        if let Some(a) = self.auth {
            site.auth = a;
            set.push("auth");
        }
        if let Some(a) = self.auth_for {
            site.auth_for = a;
            set.push("auth_for");
        }
        if let Some(d) = self.stream_idle {
            site.stream_idle = Some(d);
            set.push("stream_idle");
        }
        if let Some(b) = self.negotiate_once {
            site.negotiate_once = b;
            set.push("negotiate_once");
        }
        if let Some(b) = self.websocket {
            site.websocket = b;
            set.push("websocket");
        }
        if let Some(r) = self.rules {
            site.rules = r;
            set.push("allow/deny");
        }
        set
    }
}

impl Reader<'_> {
    /// `preset = "exchange"` on `base`, with its exceptions, which are noted
    /// in `config` for `gatehouse check`.
    pub(super) fn exchange_preset(&mut self, s: &mut Section<'_, '_>, base: &Site, config: &mut Config) -> Vec<Site> {
        let mut sites = exchange(base);
        if config.forms.is_some() {
            offer_forms(&mut sites);
        }
        let prefixes: Vec<&str> = EXCHANGE.iter().map(|(_, p)| *p).collect();
        let not_ours = |p: &str| {
            format!(
                "`{p}` is not one of the preset's paths ({}); a path of its own needs a [[site]] of its own",
                prefixes.join(", ")
            )
        };
        // `exchange` returns the sites in the order of EXCHANGE.
        let position = |p: &str| prefixes.iter().position(|ours| ours.eq_ignore_ascii_case(p));
        let mut excluded = Vec::new();
        for (p, span) in self.string_list(s, "exclude").unwrap_or_default() {
            match position(&p) {
                Some(i) => excluded.push(i),
                None => self.problem(span, &s.key_path("exclude"), not_ours(&p)),
            }
        }
        let mut set = Vec::new();
        for (i, settings, span, key) in self.path_settings(s) {
            match position(&settings.prefix) {
                None => self.problem(span, &key, not_ours(&settings.prefix)),
                Some(at) if excluded.contains(&at) => self.problem(
                    span,
                    &key,
                    format!("`{}` is left out by exclude; set it or leave it out", settings.prefix),
                ),
                Some(at) if set.contains(&at) => {
                    self.problem(span, &key, format!("`{}` is set by another [[site.path]]", settings.prefix))
                }
                Some(at) => {
                    set.push(at);
                    let keys = settings.apply(&mut sites[at]);
                    config.set_by_path.push((sites[at].name.clone(), keys));
                    if sites[at].auth.is_empty() && !sites[at].auth_for.is_empty() {
                        let key = format!("{}.path[{i}].auth", s.path);
                        self.problem(
                            span.clone(),
                            &key,
                            "auth_for overrides `auth`, which this path sets empty".into(),
                        );
                    }
                    if sites[at].auth.is_empty() && sites[at].auth_for.is_empty() && sites[at].kcd().is_some() {
                        let key = format!("{}.path[{i}].auth", s.path);
                        self.problem(span, &key, "delegation needs an authenticated user: an empty `auth` would publish this path anonymously".into());
                    }
                }
            }
        }
        let mut kept = Vec::new();
        for (i, site) in sites.into_iter().enumerate() {
            if excluded.contains(&i) {
                config.left_out.push(site.name);
            } else {
                kept.push(site);
            }
        }
        // OWA's own sign-out link ends gatehouse's session, where OWA's
        // browsers sign in with it.
        if let Some(forms) = config.forms.as_mut() {
            for site in kept.iter().filter(|s| s.path_prefix == "/owa" && s.offers(Scheme::Forms)) {
                forms.logoff_paths.push((site.name.clone(), OWA_LOGOFF.to_owned()));
            }
        }
        kept
    }

    /// `exclude` and `[[site.path]]` on a site without a preset.
    pub(super) fn exceptions_without_preset(&mut self, s: &mut Section<'_, '_>) {
        for key in EXCEPTION_KEYS {
            if let Some(v) = s.get(key) {
                self.problem(
                    v.span(),
                    &s.key_path(key),
                    "only with a preset (preset = \"exchange\"): a site of its own publishes its one path_prefix"
                        .into(),
                );
            }
        }
    }

    /// Each `[[site.path]]` read: its index, settings, the span and key of its `prefix`.
    fn path_settings(&mut self, s: &mut Section<'_, '_>) -> Vec<(usize, PathSettings, Span, String)> {
        let Some(v) = s.get("path") else {
            return Vec::new();
        };
        let path = s.key_path("path");
        let DeValue::Array(items) = v.get_ref() else {
            self.problem(v.span(), &path, format!("expected [[site.path]] tables, found {}", kind(v.get_ref())));
            return Vec::new();
        };
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let Some(mut t) = self.section(item, format!("{path}[{i}]"), PATH_KEYS) else {
                continue;
            };
            let prefix = self.required_string(&mut t, "prefix");
            let settings = PathSettings {
                prefix: String::new(),
                auth: self.schemes(&mut t, "auth"),
                auth_for: self.auth_for(&mut t),
                stream_idle: self.duration(&mut t, "stream_idle"),
                negotiate_once: self.bool(&mut t, "negotiate_once"),
                websocket: self.bool(&mut t, "websocket"),
                rules: {
                    let given = t.table.iter().any(|(k, _)| matches!(k.get_ref().as_ref(), "allow" | "deny"));
                    let rules = self.rules(&mut t);
                    given.then_some(rules)
                },
            };
            let key = t.key_path("prefix");
            self.finish(t);
            if let Some((prefix, span)) = prefix {
                out.push((i, PathSettings { prefix, ..settings }, span, key));
            }
        }
        out
    }
}

/// OWA's sign-out link.
pub const OWA_LOGOFF: &str = "/owa/logoff.owa";

/// With `[forms]`, browsers of OWA and the admin center sign in on the page
/// (TMG's forms-based publishing of OWA); Outlook's agents keep their NTLM
/// rule, and the paths no browser opens keep their schemes.
fn offer_forms(sites: &mut [Site]) {
    for site in sites.iter_mut().filter(|s| matches!(s.path_prefix.as_str(), "/owa" | "/ecp")) {
        if !site.auth.contains(&Scheme::Forms) {
            site.auth.insert(0, Scheme::Forms);
        }
    }
}

/// User agents that must be offered NTLM alone: Communicator/Lync prompt when
/// offered Negotiate, Outlook's RPC over HTTP (`MSRPC`) and Outlook's own HTTP
/// stack authenticate with NTLM outside the firewall.
const NTLM_ONLY_AGENTS: [&str; 4] = ["*Communicator*", "*Lync*", "MSRPC", "*Microsoft Outlook*"];

/// Outlook Anywhere channels and MAPI notification waits stay open between
/// keep-alive traffic that comes every 1 to 15 minutes.
const LONG_IDLE: Duration = Duration::from_secs(20 * 60);

/// The Exchange paths, and what differs per path.
const EXCHANGE: [(&str, &str); 8] = [
    ("autodiscover", "/autodiscover"),
    ("ews", "/ews"),
    ("rpc", "/rpc"),
    ("mapi", "/mapi"),
    ("oab", "/oab"),
    ("owa", "/owa"),
    ("ecp", "/ecp"),
    ("activesync", "/Microsoft-Server-ActiveSync"),
];

/// `preset = "exchange"`: the site's listener, hosts, backend, delegation and
/// `auth` (default Negotiate, NTLM) for every Exchange path; NTLM alone for
/// Communicator and Outlook user agents (unless the site has its own
/// `auth_for`); long idle times for /rpc and /mapi; Basic for ActiveSync,
/// whose devices know nothing else.
pub fn exchange(base: &Site) -> Vec<Site> {
    let auth = if base.auth.is_empty() { vec![Scheme::Negotiate, Scheme::Ntlm] } else { base.auth.clone() };
    let auth_for = if base.auth_for.is_empty() {
        NTLM_ONLY_AGENTS
            .iter()
            .map(|ua| AuthRule { user_agent: Some((*ua).into()), client_ip: Vec::new(), auth: vec![Scheme::Ntlm] })
            .collect()
    } else {
        base.auth_for.clone()
    };
    EXCHANGE
        .iter()
        .map(|(name, prefix)| {
            let mut site = base.clone();
            site.name = format!("{}/{name}", base.name);
            site.path_prefix = (*prefix).into();
            // Exchange's Managed Availability answers for each protocol on its
            // own page: a server whose OWA is down still serves EWS.
            if let super::Check::Http { path, .. } = &mut site.farm.health.check {
                if path.is_empty() {
                    *path = format!("{prefix}/healthcheck.htm");
                }
            }
            site.auth = auth.clone();
            site.auth_for = auth_for.clone();
            match *name {
                "rpc" | "mapi" => site.stream_idle = Some(base.stream_idle.unwrap_or(LONG_IDLE).max(LONG_IDLE)),
                "activesync" => {
                    site.auth = vec![Scheme::Basic];
                    site.auth_for = Vec::new();
                }
                _ => {}
            }
            site
        })
        .collect()
}

/// Every site as it will be served, presets expanded, with what a preset's
/// exceptions changed: for `gatehouse check`.
pub fn describe_sites(config: &Config) -> Vec<String> {
    let mut lines: Vec<String> = config
        .sites
        .iter()
        .map(|site| {
            let mut line = describe(site);
            if let Some((_, keys)) = config.set_by_path.iter().find(|(name, _)| *name == site.name) {
                line.push_str(&format!("; set by [[site.path]]: {}", keys.join(", ")));
            }
            line
        })
        .collect();
    lines.extend(config.left_out.iter().map(|name| format!("site {name}: left out (exclude)")));
    lines
}

/// One line per site.
pub fn describe(site: &Site) -> String {
    let names = |schemes: &[Scheme]| schemes.iter().map(|s| s.name()).collect::<Vec<_>>().join(", ");
    let mut line = format!(
        "site {}: {} {} -> {} auth [{}]",
        site.name,
        if site.hosts.is_empty() { "*".to_owned() } else { site.hosts.join("|") },
        site.path_prefix,
        describe_farm(&site.farm),
        names(&site.auth)
    );
    for rule in &site.auth_for {
        line.push_str(&format!(
            "; [{}] for {}",
            names(&rule.auth),
            rule.user_agent.as_deref().map_or("listed addresses".to_owned(), |ua| format!("user agent {ua}"))
        ));
    }
    if let Some(idle) = site.stream_idle {
        line.push_str(&format!("; stream idle {}", humantime::format_duration(idle)));
    }
    let written = |ps: &[super::Principal]| ps.iter().map(|p| p.written.as_str()).collect::<Vec<_>>().join(", ");
    match (site.rules.allow.is_empty(), site.rules.deny.is_empty()) {
        (true, true) if !site.auth.is_empty() => line.push_str("; open to every signed-in user"),
        (true, true) => {}
        (true, false) => line.push_str(&format!("; every signed-in user but deny [{}]", written(&site.rules.deny))),
        (false, true) => line.push_str(&format!("; allow [{}]", written(&site.rules.allow))),
        (false, false) => {
            line.push_str(&format!("; allow [{}] deny [{}]", written(&site.rules.allow), written(&site.rules.deny)))
        }
    }
    if let Some(d) = site.kcd() {
        let mut spns: Vec<String> = site.farm.members.iter().map(|m| d.spn_for(&m.backend)).collect();
        spns.dedup();
        line.push_str(&format!("; KCD to {}", spns.join(", ")));
    }
    line
}

/// `https://exch01:443` for one backend; for a farm, each backend with its
/// weight and drain, then how they are checked and kept.
fn describe_farm(farm: &super::Farm) -> String {
    use super::{Affinity, Check};
    if let [one] = farm.members.as_slice() {
        if farm.health.check == Check::None && !one.drain {
            return one.backend.origin.clone();
        }
    }
    let members: Vec<String> = farm
        .members
        .iter()
        .map(|m| {
            let mut notes = Vec::new();
            if m.weight != 1 {
                notes.push(format!("weight {}", m.weight));
            }
            if m.drain {
                notes.push("drained by the configuration".to_owned());
            }
            if notes.is_empty() {
                m.backend.origin.clone()
            } else {
                format!("{} ({})", m.backend.origin, notes.join(", "))
            }
        })
        .collect();
    let h = &farm.health;
    let every = humantime::format_duration(h.interval);
    let check = match &h.check {
        Check::None => "no health check".to_owned(),
        Check::Tcp => format!("checked by TCP connect every {every} (fall {}, rise {})", h.fall, h.rise),
        Check::Http { path, status } => {
            format!("checked by GET {path} = {status} every {every} (fall {}, rise {})", h.fall, h.rise)
        }
    };
    let affinity = match farm.affinity {
        Affinity::None => "",
        Affinity::Source => "; affinity by client address",
        Affinity::Cookie => "; affinity by signed cookie",
    };
    format!("farm [{}] {check}{affinity}", members.join(", "))
}
