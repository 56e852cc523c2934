//! Sites: which publishing rule a request falls under.
//!
//! A site matches on its listener, on the Host (exact name, or any host when it
//! lists none) and on the longest path prefix. A site naming the host beats a
//! site for any host, whatever the prefixes: a rule written for `mail.example.com`
//! must not be shadowed by a catch-all with a longer prefix.

use std::sync::Arc;

use crate::config::Site;

pub struct Table {
    sites: Vec<Arc<Site>>,
}

impl Table {
    pub fn new(sites: &[Site]) -> Self {
        Table { sites: sites.iter().cloned().map(Arc::new).collect() }
    }

    /// `host` is lower-case without port; `path` comes from
    /// [`httpguard::routing_path`].
    pub fn find(&self, listener: &str, host: Option<&str>, path: &[u8]) -> Option<&Arc<Site>> {
        let mut best: Option<(&Arc<Site>, bool, usize)> = None;
        for site in self.sites.iter().filter(|s| s.listener == listener) {
            let named = !site.hosts.is_empty();
            if named && !host.is_some_and(|h| site.hosts.iter().any(|s| s == h)) {
                continue;
            }
            if !httpguard::prefix_matches(path, site.path_prefix.as_bytes()) {
                continue;
            }
            let rank = (named, site.path_prefix.len());
            if best.is_none_or(|(_, n, l)| rank > (n, l)) {
                best = Some((site, rank.0, rank.1));
            }
        }
        best.map(|(s, _, _)| s)
    }
}

/// Lower-cases a Host value and drops its port (`[::1]:8443` -> `[::1]`).
pub fn host_name(host: &str) -> String {
    let h = host.trim();
    let without_port = if h.starts_with('[') {
        h.find(']').map_or(h, |i| &h[..=i])
    } else {
        h.rsplit_once(':').map_or(h, |(name, _)| name)
    };
    without_port.trim_end_matches('.').to_ascii_lowercase()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn site(name: &str, listener: &str, hosts: &[&str], prefix: &str) -> Site {
        Site {
            name: name.into(),
            listener: listener.into(),
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
            path_prefix: prefix.into(),
            farm: crate::config::Farm::one("http://x:1"),
            family: name.into(),
            host_header: None,
            identity_header: None,
            stream_idle: None,
            auth: Vec::new(),
            auth_for: Vec::new(),
            negotiate_once: true,
            delegation: crate::config::Delegation::None,
            websocket: true,
            rules: Default::default(),
            mfa: false,
            claims: Default::default(),
        }
    }

    #[test]
    fn host_then_longest_prefix() {
        let t = Table::new(&[
            site("any", "l", &[], "/"),
            site("any-ews", "l", &[], "/ews"),
            site("mail", "l", &["mail.test"], "/"),
            site("mail-owa", "l", &["mail.test"], "/owa"),
            site("other-listener", "m", &[], "/"),
        ]);
        let name = |host: Option<&str>, path: &str| t.find("l", host, path.as_bytes()).map(|s| s.name.clone());
        assert_eq!(name(Some("mail.test"), "/owa/x").as_deref(), Some("mail-owa"));
        assert_eq!(name(Some("mail.test"), "/ews/x").as_deref(), Some("mail"));
        assert_eq!(name(Some("other.test"), "/ews/x").as_deref(), Some("any-ews"));
        assert_eq!(name(None, "/").as_deref(), Some("any"));
        assert!(t.find("nope", None, b"/").is_none());
    }

    #[test]
    fn no_match_without_catch_all() {
        let t = Table::new(&[site("mail", "l", &["mail.test"], "/owa")]);
        assert!(t.find("l", Some("mail.test"), b"/ews").is_none());
        assert!(t.find("l", Some("evil.test"), b"/owa").is_none());
    }

    #[test]
    fn host_names() {
        assert_eq!(host_name("Mail.Test:8443"), "mail.test");
        assert_eq!(host_name("[::1]:8443"), "[::1]");
        assert_eq!(host_name("mail.test."), "mail.test");
    }
}
