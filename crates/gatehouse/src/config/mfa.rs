//! `[mfa]`: where second factors are kept and how long an enrolment code is
//! good. The store itself is opened at start-up (`server::run`), not here:
//! `check` must not create the file.

use std::path::PathBuf;
use std::time::Duration;

use super::reader::{Reader, Section};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mfa {
    /// The SQLite file of factors.
    pub store: PathBuf,
    /// How long `gatehouse mfa issue-code` codes are good.
    pub enrol_code_lifetime: Duration,
    /// Clients here need no second factor on an MFA-required site.
    pub exempt_networks: Vec<crate::net::Cidr>,
    /// Clients here may enrol a first factor without an enrolment code.
    pub enrol_networks: Vec<crate::net::Cidr>,
    /// A second factor passed this recently is fresh enough to remove the
    /// user's last one.
    pub fresh_for: Duration,
    /// The WebAuthn relying party id for passkeys, when it is neither
    /// `[forms] cookie_domain` nor each page's own host.
    pub passkey_rp_id: Option<String>,
}

impl Reader<'_> {
    pub(super) fn mfa(&mut self, s: &mut Section<'_, '_>) -> Option<Mfa> {
        let store = self.required_string(s, "store").and_then(|(name, span)| {
            let path = self.file_path(&name);
            match path.parent() {
                Some(dir) if !dir.as_os_str().is_empty() && !dir.is_dir() => {
                    let why = format!("{}: the folder {} does not exist", path.display(), dir.display());
                    self.problem(span, &s.key_path("store"), why);
                    None
                }
                _ if path.is_dir() => {
                    self.problem(span, &s.key_path("store"), format!("{} is a folder; name a file", path.display()));
                    None
                }
                _ => Some(path),
            }
        });
        let lifetime = self.duration(s, "enrol_code_lifetime").unwrap_or(Duration::from_secs(72 * 3600));
        if lifetime < Duration::from_secs(60) || lifetime > Duration::from_secs(30 * 24 * 3600) {
            self.problem(
                s.span.clone(),
                &s.key_path("enrol_code_lifetime"),
                "an enrolment code is good for 1 minute to 30 days".into(),
            );
        }
        let exempt_networks = self.networks(s, "exempt_networks");
        let enrol_networks = self.networks(s, "enrol_networks");
        let fresh_for = self.duration(s, "fresh_for").unwrap_or(Duration::from_secs(300));
        if fresh_for > Duration::from_secs(3600) {
            self.problem(s.span.clone(), &s.key_path("fresh_for"), "fresh_for is at most 1 hour".into());
        }
        let passkey_rp_id = self.string(s, "passkey_rp_id").and_then(|(d, span)| {
            let d = d.to_ascii_lowercase();
            let label_ok =
                |l: &str| !l.is_empty() && l.len() <= 63 && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
            let numeric = d.rsplit('.').next().is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit()));
            if d.len() > 253 || !d.split('.').all(label_ok) || numeric {
                let why = format!(
                    "`{d}` is not a host name such as \"corp.example\" (WebAuthn's relying party id is a domain: no \
                     address, port or scheme)"
                );
                self.problem(span, &s.key_path("passkey_rp_id"), why);
                return None;
            }
            Some(d)
        });
        Some(Mfa {
            store: store?,
            enrol_code_lifetime: lifetime,
            exempt_networks,
            enrol_networks,
            fresh_for,
            passkey_rp_id,
        })
    }

    pub(super) fn networks(&mut self, s: &mut Section<'_, '_>, key: &'static str) -> Vec<crate::net::Cidr> {
        let mut out = Vec::new();
        for (text, span) in self.string_list(s, key).unwrap_or_default() {
            match text.parse::<crate::net::Cidr>() {
                Ok(c) => out.push(c),
                Err(_) => {
                    let why = format!("`{text}` is not an address or CIDR such as \"10.0.0.0/8\"");
                    self.problem(span, &s.key_path(key), why);
                }
            }
        }
        out
    }
}
