//! Extranet lockout protection: stop asking the domain controller before AD
//! locks a user out.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::Lockout as LockoutConfig;

/// Extranet lockout protection. Counts failed logons per user and per client
/// address in a sliding window; at the limit gatehouse answers 401 itself and
/// stops forwarding guesses to the domain controller, so that an attacker on
/// the internet cannot lock the real user out of AD.
#[derive(Default)]
pub struct Lockout {
    failures: Mutex<HashMap<Key, Vec<Instant>>>,
    window: Mutex<Duration>,
}

#[derive(Hash, PartialEq, Eq, Clone)]
enum Key {
    User(String),
    Client(IpAddr),
}

impl Lockout {
    fn recent(&self, key: &Key, window: Duration) -> usize {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let Some(list) = map.get_mut(key) else { return 0 };
        list.retain(|t| t.elapsed() < window);
        list.len()
    }

    pub fn allowed(&self, user: &str, client: IpAddr, limits: &LockoutConfig) -> Result<(), String> {
        *self.window.lock().unwrap_or_else(|e| e.into_inner()) = limits.window;
        if self.recent(&user_key(user), limits.window) >= limits.max_failures_per_user as usize {
            return Err(format!(
                "extranet lockout: {} failed logons for this user within {:?}",
                limits.max_failures_per_user, limits.window
            ));
        }
        if self.recent(&Key::Client(client), limits.window) >= limits.max_failures_per_client as usize {
            return Err(format!(
                "extranet lockout: {} failed logons from {client} within {:?}",
                limits.max_failures_per_client, limits.window
            ));
        }
        Ok(())
    }

    pub fn failed(&self, user: &str, client: IpAddr) {
        let now = Instant::now();
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        for key in [user_key(user), Key::Client(client)] {
            map.entry(key).or_default().push(now);
        }
    }

    /// AD resets a user's bad-password count on a good logon; so do we.
    pub fn succeeded(&self, user: &str) {
        self.failures.lock().unwrap_or_else(|e| e.into_inner()).remove(&user_key(user));
    }

    /// Forgets old failures; run periodically.
    pub fn sweep(&self) {
        let window = *self.window.lock().unwrap_or_else(|e| e.into_inner());
        self.failures.lock().unwrap_or_else(|e| e.into_inner()).retain(|_, list| {
            list.retain(|t| t.elapsed() < window);
            !list.is_empty()
        });
    }
}

/// The account a logon attempt counts against. The domain a client sends is
/// ignored, and UPN and down-level forms are folded: otherwise an attacker could
/// rotate `ADTEST\bob`, `ad.test\bob`, `\bob` and `bob@ad.test`, each with its
/// own count, while the domain controller counts them all against bob.
fn user_key(user: &str) -> Key {
    let name = user.rsplit('\\').next().unwrap_or(user);
    let name = name.split('@').next().unwrap_or(name);
    Key::User(name.to_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lockout_counts_and_resets() {
        let l = Lockout::default();
        let limits =
            LockoutConfig { max_failures_per_user: 2, max_failures_per_client: 3, window: Duration::from_secs(60) };
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        assert!(l.allowed("ADTEST\\bob", ip, &limits).is_ok());
        l.failed("ADTEST\\bob", ip);
        l.failed("adtest\\BOB", ip);
        assert!(l.allowed("ADTEST\\bob", ip, &limits).is_err(), "user limit");
        assert!(l.allowed("ADTEST\\alice", "192.0.2.2".parse().unwrap(), &limits).is_ok());
        l.failed("ADTEST\\carol", ip);
        assert!(l.allowed("ADTEST\\alice", ip, &limits).is_err(), "client limit");
        l.succeeded("ADTEST\\bob");
        assert!(l.allowed("ADTEST\\bob", "192.0.2.9".parse().unwrap(), &limits).is_ok());
    }

    #[test]
    fn lockout_cannot_be_dodged_by_spelling_the_domain_differently() {
        let l = Lockout::default();
        let limits =
            LockoutConfig { max_failures_per_user: 3, max_failures_per_client: 100, window: Duration::from_secs(60) };
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        l.failed("ADTEST\\bob", ip);
        l.failed("ad.test\\Bob", ip);
        l.failed("\\bob@ad.test", ip);
        for spelling in ["ADTEST\\bob", "OTHER\\BOB", "\\bob", "bob@AD.TEST"] {
            assert!(
                l.allowed(spelling, "192.0.2.2".parse().unwrap(), &limits).is_err(),
                "{spelling} dodged the lockout"
            );
        }
    }
}
