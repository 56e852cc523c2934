//! `Authorization: Basic` (RFC 7617), over TLS only (the loader refuses it on
//! plain listeners): ActiveSync and scripts send the domain password on every
//! request.
//!
//! The password is checked the Kerberos way: an AS exchange for the user, then
//! a ticket for gatehouse's own SPN accepted with gatehouse's key (so a forged
//! KDC answer cannot pass), through `kcd::Delegator::check_password`. That
//! ticket is, like a Negotiate client's, the evidence for delegation: the
//! password is never sent to the backend. The extranet lockout counts failures
//! as for NTLM, and a checked password is remembered for `[basic] cache` as a
//! salted SHA-256 (compared in constant time), so that a client sending it on
//! every request costs one KDC exchange per period, not per request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{refuse, service_unavailable, Evidence, User, Verdict};
use crate::config::Scheme;
use crate::connection::ConnContext;
use crate::server::Generation;

/// Users whose password was checked recently.
pub struct Remembered {
    salt: [u8; 32],
    users: Mutex<HashMap<String, Entry>>,
}

struct Entry {
    digest: [u8; 32],
    until: Instant,
    user: Arc<User>,
}

const MAX_REMEMBERED: usize = 100_000;

impl Default for Remembered {
    fn default() -> Self {
        let mut salt = [0u8; 32];
        // Without randomness the cache still works; it is only less opaque in
        // a memory dump.
        let _ = getrandom::fill(&mut salt);
        Remembered { salt, users: Mutex::new(HashMap::new()) }
    }
}

impl Remembered {
    fn digest(&self, user: &str, password: &str) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.salt);
        h.update(user.as_bytes());
        h.update([0]);
        h.update(password.as_bytes());
        h.finalize().into()
    }

    fn get(&self, user: &str, password: &str) -> Option<Arc<User>> {
        let key = user.to_lowercase();
        let digest = self.digest(&key, password);
        let users = self.users.lock().unwrap_or_else(|e| e.into_inner());
        let e = users.get(&key).filter(|e| e.until > Instant::now())?;
        bool::from(e.digest.ct_eq(&digest)).then(|| e.user.clone())
    }

    fn put(&self, user: &str, password: &str, checked: Arc<User>, ttl: Duration) {
        if ttl.is_zero() {
            return;
        }
        let key = user.to_lowercase();
        let digest = self.digest(&key, password);
        let mut users = self.users.lock().unwrap_or_else(|e| e.into_inner());
        if users.len() >= MAX_REMEMBERED {
            let now = Instant::now();
            users.retain(|_, e| e.until > now);
        }
        users.insert(key, Entry { digest, until: Instant::now() + ttl, user: checked });
    }

    /// A wrong password for a user forgets the remembered one (it may have been
    /// changed).
    fn forget(&self, user: &str) {
        self.users.lock().unwrap_or_else(|e| e.into_inner()).remove(&user.to_lowercase());
    }
}

/// Whether the KDC's refusal says the account exists: a wrong password, a
/// locked, disabled or expired account, an expired password (by the KDC's
/// error code, see [`kcd::Error::names_an_account`]). An unknown name, or no
/// answer, tells nothing.
fn evidence_of(error: &kcd::Error) -> Evidence {
    if error.names_an_account() {
        Evidence::Account
    } else {
        Evidence::Unproven
    }
}

/// One request with `Authorization: Basic`.
pub async fn check(credentials: &[u8], ctx: &ConnContext, generation: &Generation, schemes: &[Scheme]) -> Verdict {
    let Some((typed, password)) = std::str::from_utf8(credentials).ok().and_then(|c| c.split_once(':')) else {
        return refuse(schemes, "Basic credentials are not UTF-8 `user:password`".into());
    };
    if typed.is_empty() || password.is_empty() || typed.chars().any(char::is_control) {
        return refuse(schemes, "Basic credentials with an empty or unprintable user name or password".into());
    }
    if let Err(why) = super::names::check_typed(typed) {
        return refuse(schemes, format!("Basic logon name: {why}; the domain was not asked"));
    }
    let (Some(delegator), Some(domain)) = (generation.delegator.clone(), generation.config.domain.as_ref()) else {
        return refuse(schemes, "Basic is not configured ([domain] keytab and service_principal)".into());
    };
    let Some(spn) = domain.acceptor_spn.clone() else {
        return refuse(schemes, "Basic is not configured ([domain] acceptor_spn)".into());
    };
    // DOMAIN\user (our domain only), user@upn-suffix, or user.
    let user = match typed.split_once('\\') {
        Some((d, u)) => {
            let ours = d.eq_ignore_ascii_case(&domain.netbios_name) || d.eq_ignore_ascii_case(&domain.realm);
            if !ours || u.is_empty() {
                return refuse(schemes, format!("{typed}: not a user of domain {}", domain.netbios_name));
            }
            kcd::User::Account(format!("{u}@{}", domain.realm))
        }
        // user@ad.test in realm AD.TEST is the account itself (the default UPN);
        // any other suffix goes to the KDC as an enterprise name.
        None if typed.rsplit_once('@').is_some_and(|(u, d)| !u.is_empty() && d.eq_ignore_ascii_case(&domain.realm)) => {
            kcd::User::Account(format!("{}@{}", typed.rsplit_once('@').map_or(typed, |(u, _)| u), domain.realm))
        }
        None if typed.contains('@') => kcd::User::Upn { upn: typed.to_owned(), account: String::new() },
        None => kcd::User::Account(format!("{typed}@{}", domain.realm)),
    };
    let remembered = &ctx.shared.basic;
    if let Some(user) = remembered.get(typed, password) {
        return Verdict::Pass(user, None);
    }
    let lockout = &ctx.shared.lockout;
    if let Err(why) = lockout.allowed(typed, ctx.peer.ip(), &generation.config.lockout) {
        return refuse(schemes, format!("{typed}: {why}; the password was not sent to the domain"));
    }
    let secret = password.to_owned();
    let checked = tokio::task::spawn_blocking(move || delegator.check_password(&user, &secret, &spn)).await;
    let accepted = match checked {
        Ok(Ok(a)) => a,
        Ok(Err(e)) if e.is_unreachable() => {
            return service_unavailable(format!("{typed}: cannot check the password: {e}"));
        }
        Ok(Err(e)) => {
            lockout.failed(typed, ctx.peer.ip(), evidence_of(&e), &generation.config.lockout);
            remembered.forget(typed);
            return refuse(schemes, format!("{typed}: Basic logon refused: {e}"));
        }
        Err(e) => return service_unavailable(format!("{typed}: the password check did not run: {e}")),
    };
    lockout.succeeded(typed, &generation.config.lockout);
    let name = match accepted.client.rsplit_once('@') {
        Some((u, realm)) if realm.eq_ignore_ascii_case(&domain.realm) => format!("{}\\{u}", domain.netbios_name),
        _ => accepted.client.clone(),
    };
    let user = match User::new(name, Scheme::Basic, Some(accepted.client)) {
        Ok(u) => Arc::new(u),
        Err(why) => return refuse(schemes, why),
    };
    remembered.put(typed, password, user.clone(), generation.config.basic_cache);
    Verdict::Pass(user, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kdc_answers_that_name_an_account() {
        use kcd::Kind;
        for (kind, evidence) in [
            (Kind::PreauthFailed, Evidence::Account),
            (Kind::Revoked, Evidence::Account),
            (Kind::KeyExpired, Evidence::Account),
            (Kind::ClientUnknown, Evidence::Unproven),
            (Kind::Unreachable, Evidence::Unproven),
            (Kind::Other, Evidence::Unproven),
        ] {
            // The words are the wrong ones on purpose: only the kind counts.
            let e = kcd::Error::new(kind, "Preauthentication failed; Client not found in Kerberos database");
            assert_eq!(evidence_of(&e), evidence, "{kind}");
        }
    }
}
