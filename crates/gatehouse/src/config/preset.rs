//! Publishing presets: one `[[site]]` that expands into the sites a product
//! needs, with the per-path settings the field learned (TMG's publishing
//! wizards, without their defaults' bugs).

use std::time::Duration;

use super::{AuthRule, Scheme, Site};

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

/// One line per site, for `gatehouse check`.
pub fn describe(site: &Site) -> String {
    let names = |schemes: &[Scheme]| schemes.iter().map(|s| s.name()).collect::<Vec<_>>().join(", ");
    let mut line = format!(
        "site {}: {} {} -> {} auth [{}]",
        site.name,
        if site.hosts.is_empty() { "*".to_owned() } else { site.hosts.join("|") },
        site.path_prefix,
        site.backend.origin,
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
    if let Some(d) = site.kcd() {
        line.push_str(&format!("; KCD to {}", d.spn));
    }
    line
}
