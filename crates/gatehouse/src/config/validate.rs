//! Checks across sections, run on what `read.rs` parsed: what one site needs
//! from the listener, `[domain]` and `[accounts]`, and what two sites may not
//! share. Each problem names the site as gatehouse knows it (a preset's
//! expanded name, `exchange/activesync`) and the key that fixes it.

use std::collections::HashSet;

use super::reader::{Reader, Span};
use super::{Config, Scheme, Site};

/// Where an (expanded) site came from: its `[[site]]` table.
pub struct Origin {
    /// The table's index among the `[[site]]` tables of the file.
    pub index: usize,
    pub span: Span,
    /// The table's `hosts`, lower-cased, each where it is written.
    pub hosts: Vec<(String, Span)>,
}

/// Which optional sections the file has, read well or not: a broken section
/// was already reported, and is not reported again as missing.
pub struct Given {
    pub accounts: bool,
    pub domain: bool,
    pub forms: bool,
    pub mfa: bool,
}

/// `origins[i]` is where `config.sites[i]` came from.
pub fn check(r: &mut Reader<'_>, config: &Config, origins: &[Origin], given: Given) {
    unique_sites(r, config, origins);
    // A preset's sites share their table's hosts: judged once, by its name.
    for (i, (site, origin)) in config.sites.iter().zip(origins).enumerate() {
        let same_table = |j: usize| origins.get(j).is_some_and(|o| o.index == origin.index);
        if i > 0 && same_table(i - 1) {
            continue;
        }
        let name = match site.name.rsplit_once('/') {
            Some((base, _)) if same_table(i + 1) => base,
            _ => &site.name,
        };
        super::names::check_hosts(r, config, site, origin, name);
    }
    let first = |scheme: Scheme| config.sites.iter().position(|s| s.offers(scheme));
    let site_key = |i: usize| format!("site[{}]", origins[i].index);

    if let Some(i) = first(Scheme::Ntlm) {
        let name = &config.sites[i].name;
        if config.accounts.is_none() && !given.accounts {
            r.problem(
                0..0,
                "accounts",
                format!(
                    "site `{name}` offers NTLM but there is no [accounts] section saying where passwords are checked"
                ),
            );
        }
        if config.domain.is_none() && !given.domain {
            r.problem(
                0..0,
                "domain",
                format!("site `{name}` offers NTLM but there is no [domain] section (netbios_name, realm)"),
            );
        }
    }

    // Basic carries the password itself: never over plain HTTP.
    for (i, site) in config.sites.iter().enumerate() {
        let plain = config.listeners.iter().any(|l| l.name == site.listener && l.tls.is_none());
        if site.offers(Scheme::Basic) && plain {
            r.problem(
                origins[i].span.clone(),
                &format!("{}.auth", site_key(i)),
                format!(
                    "site `{}` offers Basic on listener `{}`, which has no TLS: the password would travel in clear",
                    site.name, site.listener
                ),
            );
        }
    }

    forms(r, config, origins, &given);

    let domain = config.domain.as_ref();
    let acceptor = config.basic_by_kdc();
    // Negotiate carries Kerberos where gatehouse has its keys, and NTLM inside
    // SPNEGO where [accounts] can check it: either will do, but a Kerberos
    // setup begun and not finished is a mistake, not a choice.
    if let Some(i) = first(Scheme::Negotiate) {
        let begun =
            domain.is_some_and(|d| d.keytab.is_some() || d.service_principal.is_some() || !d.acceptor_spn.is_empty());
        if !acceptor && (begun || (config.accounts.is_none() && !given.accounts)) {
            r.problem(
                0..0,
                "domain",
                format!(
                    "site `{}` offers Negotiate but [domain] lacks keytab, service_principal or acceptor_spn \
                     (the SPN clients ask tickets for, and the account that owns it); without all three, and with \
                     [accounts], Negotiate carries NTLM alone",
                    config.sites[i].name
                ),
            );
        }
    }
    // Basic passwords are checked by the KDC where gatehouse has a keytab for
    // its SPN, else by the accounts NTLM uses: one of the two must be there.
    if let Some(i) = first(Scheme::Basic) {
        if !acceptor && config.accounts.is_none() && !given.accounts {
            r.problem(
                origins[i].span.clone(),
                &format!("{}.auth", site_key(i)),
                format!(
                    "site `{}` offers Basic but nothing can check its passwords: add an [accounts] section \
                     (source = \"file\" or \"winbind\"), or set [domain] keytab, service_principal and acceptor_spn \
                     (the KDC then checks them)",
                    config.sites[i].name
                ),
            );
        }
    }

    if let Some(site) = config.sites.iter().find(|s| s.kcd().is_some()) {
        if !domain.is_some_and(|d| d.keytab.is_some() && d.service_principal.is_some()) {
            r.problem(
                0..0,
                "domain",
                format!("site `{}` delegates (kcd) but [domain] lacks keytab or service_principal", site.name),
            );
        }
    }

    admin_sign_in(r, config, &given);

    if config.listeners.is_empty() && r.problems.is_empty() {
        r.problem(0..0, "listener", "no [[listener]]: nothing would be served".into());
    }
}

/// `[admin.sign_in]` signs administrators in with the domain, as a site's
/// NTLM and Negotiate do: it needs what they need.
fn admin_sign_in(r: &mut Reader<'_>, config: &Config, given: &Given) {
    let Some(sign_in) = config.admin.as_ref().and_then(|a| a.sign_in.as_ref()) else { return };
    let key = "admin.sign_in";
    let domain = config.domain.as_ref();
    if domain.is_none() && !given.domain {
        r.problem(
            0..0,
            key,
            "[admin.sign_in] signs administrators in with the domain: add a [domain] section (netbios_name, realm)"
                .into(),
        );
        return;
    }
    if sign_in.auth.contains(&Scheme::Ntlm) && config.accounts.is_none() && !given.accounts {
        r.problem(
            0..0,
            "admin.sign_in.auth",
            "NTLM needs an [accounts] section saying where passwords are checked (source = \"winbind\")".into(),
        );
    }
    if sign_in.auth.contains(&Scheme::Negotiate) && !config.basic_by_kdc() && config.accounts.is_none() {
        r.problem(
            0..0,
            "admin.sign_in.auth",
            "Negotiate needs [domain] keytab, service_principal and acceptor_spn (Kerberos), or [accounts] (NTLM inside it)"
                .into(),
        );
    }
}

/// The sign-in page: on TLS only (it carries the password), with `[forms]`
/// for its keys, something to check passwords with (as for Basic), and, with
/// a `cookie_domain`, hosts the cookie can cover.
fn forms(r: &mut Reader<'_>, config: &Config, origins: &[Origin], given: &Given) {
    let mut told = HashSet::new();
    for (i, site) in config.sites.iter().enumerate() {
        if site.mfa {
            let key = format!("site[{}].mfa", origins[i].index);
            // A provider's sign-in brings its own second factor (`amr`).
            if config.mfa.is_none() && !given.mfa && !site.offers_oidc() {
                let why =
                    format!("site `{}` requires a second factor but there is no [mfa] section (store)", site.name);
                r.problem(origins[i].span.clone(), &key, why);
            }
            // A preset's paths share the table's `mfa`: it applies where the
            // preset offers Forms (OWA, ECP); `check` warns about the others.
            let from_table = |j: usize| origins[j].index == origins[i].index;
            let any_forms = config.sites.iter().enumerate().any(|(j, s)| from_table(j) && s.offers_browser_sign_in());
            let first = config.sites.iter().enumerate().position(|(j, _)| from_table(j)) == Some(i);
            if !any_forms && first {
                let why = format!(
                    "site `{}` requires a second factor, which only the sign-in page asks for (or an OpenID provider): add \"Forms\" or \"OIDC:NAME\" to its auth",
                    site.name
                );
                r.problem(origins[i].span.clone(), &key, why);
            }
        }
        if site.offers_oidc() && !site.offers(Scheme::Forms) && told.insert(origins[i].index) {
            let key = format!("site[{}].auth", origins[i].index);
            if config.listeners.iter().any(|l| l.name == site.listener && l.tls.is_none()) {
                let why = format!(
                    "site `{}` offers OIDC on listener `{}`, which has no TLS: the session cookie would travel in clear",
                    site.name, site.listener
                );
                r.problem(origins[i].span.clone(), &key, why);
            }
            if config.forms.is_none() && !given.forms {
                let why = format!(
                    "site `{}` offers OIDC but there is no [forms] section: its key_file seals the session cookie",
                    site.name
                );
                r.problem(origins[i].span.clone(), &key, why);
            }
            if config.domain.as_ref().is_none_or(|d| d.keytab.is_none() || d.service_principal.is_none())
                && !given.domain
            {
                let why = format!(
                    "site `{}` offers a provider's sign-in, whose users are looked up in the domain: set [domain] keytab and service_principal",
                    site.name
                );
                r.problem(origins[i].span.clone(), &key, why);
            }
        }
        if !site.offers(Scheme::Forms) || !told.insert(origins[i].index) {
            continue;
        }
        let key = format!("site[{}].auth", origins[i].index);
        let span = origins[i].span.clone();
        if config.listeners.iter().any(|l| l.name == site.listener && l.tls.is_none()) {
            let why = format!(
                "site `{}` offers Forms on listener `{}`, which has no TLS: the password and the session cookie would \
                 travel in clear",
                site.name, site.listener
            );
            r.problem(span.clone(), &key, why);
        }
        if config.forms.is_none() && !given.forms {
            let why = format!("site `{}` offers Forms but there is no [forms] section (key_file)", site.name);
            r.problem(span.clone(), &key, why);
        }
        if !config.basic_by_kdc() && config.accounts.is_none() && !given.accounts {
            let why = format!(
                "site `{}` offers Forms but nothing can check its passwords: add an [accounts] section, or set \
                 [domain] keytab, service_principal and acceptor_spn (the KDC then checks them, as for Basic)",
                site.name
            );
            r.problem(span.clone(), &key, why);
        }
        if let Some(rp) = config.mfa.as_ref().and_then(|m| m.passkey_rp_id.as_deref()) {
            let under = |h: &str| h == rp || h.strip_suffix(rp).is_some_and(|p| p.ends_with('.'));
            if let Some(h) = site.hosts.iter().find(|h| !under(h)) {
                let why = format!(
                    "site `{}`: host `{h}` is not under [mfa] passkey_rp_id `{rp}`, so browsers would refuse its \
                     passkeys",
                    site.name
                );
                r.problem(span.clone(), &format!("site[{}].hosts", origins[i].index), why);
            }
        }
        let Some(domain) = config.forms.as_ref().and_then(|f| f.cookie_domain.as_deref()) else { continue };
        let covered = |h: &str| h == domain || h.strip_suffix(domain).is_some_and(|p| p.ends_with('.'));
        if site.hosts.is_empty() {
            let why = format!(
                "site `{}` serves any host, but [forms] cookie_domain `{domain}` covers only its own hosts: list the \
                 site's hosts",
                site.name
            );
            r.problem(span, &format!("site[{}].hosts", origins[i].index), why);
        } else if let Some(h) = site.hosts.iter().find(|h| !covered(h)) {
            let why = format!(
                "site `{}`: host `{h}` is not under [forms] cookie_domain `{domain}`, so browsers would refuse its \
                 session cookie",
                site.name
            );
            r.problem(span, &format!("site[{}].hosts", origins[i].index), why);
        }
    }
}

/// No two sites by one name, and no two serving one host and path prefix on
/// one listener (the second could never be reached).
fn unique_sites(r: &mut Reader<'_>, config: &Config, origins: &[Origin]) {
    let mut names = HashSet::new();
    let mut keys = HashSet::new();
    for (site, origin) in config.sites.iter().zip(origins) {
        if !names.insert(site.name.as_str()) {
            r.problem(
                origin.span.clone(),
                &format!("site[{}].name", origin.index),
                format!("two sites are named `{}`", site.name),
            );
        }
        for host in hosts(site) {
            if !keys.insert((site.listener.as_str(), host, site.path_prefix.to_ascii_lowercase())) {
                let host = if host.is_empty() { "any host" } else { host };
                r.problem(
                    origin.span.clone(),
                    &format!("site[{}]", origin.index),
                    format!(
                        "another site on listener `{}` already serves {host} with path_prefix `{}`",
                        site.listener, site.path_prefix
                    ),
                );
            }
        }
    }
}

/// The site's hosts; "" for a site that serves any.
fn hosts(site: &Site) -> Vec<&str> {
    if site.hosts.is_empty() {
        vec![""]
    } else {
        site.hosts.iter().map(String::as_str).collect()
    }
}

/// A listener's `redirect_to`, where the file says it.
pub struct Redirect {
    pub from: String,
    pub to: String,
    /// The listener's index among the `[[listener]]` tables.
    pub index: usize,
    pub span: Span,
}

/// A redirecting listener sends clients to a TLS listener of this file, and
/// serves no site itself (a site there could never be reached).
pub fn redirects(r: &mut Reader<'_>, config: &Config, origins: &[Origin], redirects: &[Redirect]) {
    for redirect in redirects {
        let key = format!("listener[{}].redirect_to", redirect.index);
        match config.listeners.iter().find(|l| l.name == redirect.to) {
            None => {
                let tls: Vec<_> =
                    config.listeners.iter().filter(|l| l.tls.is_some()).map(|l| format!("`{}`", l.name)).collect();
                r.problem(
                    redirect.span.clone(),
                    &key,
                    format!(
                        "no listener is named `{}` (TLS listeners: {})",
                        redirect.to,
                        if tls.is_empty() { "none".into() } else { tls.join(", ") }
                    ),
                );
            }
            Some(l) if l.tls.is_none() => r.problem(
                redirect.span.clone(),
                &key,
                format!("listener `{}` has no TLS: redirect_to names the TLS listener clients are sent to", l.name),
            ),
            Some(_) => {}
        }
        let mut told = HashSet::new();
        for (site, origin) in config.sites.iter().zip(origins) {
            // A preset's paths come from one table: one problem for it.
            if site.listener == redirect.from && told.insert(origin.index) {
                r.problem(
                    origin.span.clone(),
                    &format!("site[{}].listener", origin.index),
                    format!(
                        "site `{}` is on listener `{}`, which only redirects to `{}`: put the site on `{}`",
                        site.name, redirect.from, redirect.to, redirect.to
                    ),
                );
            }
        }
    }
}
