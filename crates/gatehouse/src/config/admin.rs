//! `[admin]`: the operators' listener (`/metrics`, `/healthz`, `/readyz`,
//! `/status`). Plain HTTP, meant for loopback or a management network: it
//! answers only clients in `allow`, and it is never a site's listener.

use std::net::SocketAddr;

use super::reader::{Reader, Section};

/// Where Prometheus' own exporters sit (9100 node, 9113 nginx); 9180 is free
/// among the well-known ones.
pub const DEFAULT_BIND: &str = "127.0.0.1:9180";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admin {
    pub bind: SocketAddr,
    /// Clients that may ask; everyone else gets 403. Loopback by default.
    pub allow: Vec<crate::net::Cidr>,
    /// Whether `/status` (the HTML page) is served.
    pub status_page: bool,
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
        Some(Admin { bind, allow, status_page })
    }
}
