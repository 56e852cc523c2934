//! Checking and enrolling authenticator-app codes against the store, behind
//! the sign-in page's protections: the per-address attempt limit
//! (`auth/rate.rs`) and the extranet lockout (`auth/lockout.rs`), where a
//! wrong or reused code counts as a wrong password does, per user and per
//! client address.

use std::net::IpAddr;

use websession::totp;

use super::{Attempts, Lockout};
use crate::accounts::Evidence;
use crate::config::Lockout as Limits;
use crate::mfa::{self, Kind, Store};

/// Counts a wrong second factor (code or enrolment code) for `user` from
/// `client`: in the password's lockout (`lockout`, per user and per client,
/// once each), and in the second factor's own (`own`), which a good password
/// does not reset, as it resets the first the way AD does: without it, a
/// thief with the password could sign in again between guesses and never be
/// stopped.
pub fn count_failure(lockout: &Lockout, own: &Lockout, limits: &Limits, user: &str, client: IpAddr) {
    lockout.failed(user, client, Evidence::Account, limits);
    own.failed(user, client, Evidence::Account, limits);
}

/// Whether `user` from `client` may try a second factor now.
pub fn may_try(lockout: &Lockout, own: &Lockout, limits: &Limits, user: &str, client: IpAddr) -> Result<(), String> {
    lockout.allowed(user, client, limits)?;
    own.allowed(user, client, limits)
}

/// The protections a code passes before it is compared.
pub struct Guards<'a> {
    pub lockout: &'a Lockout,
    /// The second factor's own count (see [`count_failure`]).
    pub own: &'a Lockout,
    pub limits: &'a Limits,
    pub attempts: &'a Attempts,
    pub attempts_per_minute: u32,
}

/// Why a code did not pass.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// Too many attempts or failures: nothing was compared.
    Throttled(String),
    /// Not a code of any of the user's apps within the skew (or not six digits).
    Wrong,
    /// Right, but already used (or older than one used).
    Reused,
    /// The user has no authenticator app.
    NoFactor,
    /// The store could not be asked or written; nothing changed.
    Unavailable(String),
}

/// Checks `typed` for `user` from `client` at Unix time `now`; the factor it
/// passed with. Every factor is tried (no early exit on the first match).
pub async fn check(
    store: &dyn Store,
    keys: &websession::Keys,
    guards: &Guards<'_>,
    user: &str,
    client: IpAddr,
    typed: &str,
    now: u64,
) -> Result<i64, Refused> {
    if !guards.attempts.allow(client, guards.attempts_per_minute) {
        return Err(Refused::Throttled("too many attempts from this address".into()));
    }
    may_try(guards.lockout, guards.own, guards.limits, user, client).map_err(Refused::Throttled)?;
    let unavailable = |e: mfa::Unavailable| Refused::Unavailable(e.0);
    let factors: Vec<_> = store
        .factors(user.to_owned())
        .await
        .map_err(unavailable)?
        .into_iter()
        .filter(|f| f.kind == Kind::Totp && f.user.eq_ignore_ascii_case(user))
        .collect();
    if factors.is_empty() {
        return Err(Refused::NoFactor);
    }
    let last = store.last_step(user.to_owned()).await.map_err(unavailable)?;
    let mut passed = None;
    let mut reused = false;
    for f in &factors {
        let Ok(secret) = mfa::open_secret(keys, &f.user, &f.sealed) else {
            // Sealed by a key no longer in the key file: this app cannot pass.
            tracing::warn!(user = %user, factor = f.id, "authenticator app's secret does not open with the key file");
            continue;
        };
        match totp::verify(&secret, typed, now, last) {
            Ok(step) if passed.is_none() => passed = Some((f.id, step)),
            Err(totp::Refused::Reused) => reused = true,
            _ => {}
        }
    }
    let fail = |why: Refused| {
        count_failure(guards.lockout, guards.own, guards.limits, user, client);
        Err(why)
    };
    match passed {
        // The store decides, in one transaction, whether this step is new:
        // two requests with the same code cannot both pass.
        Some((id, step)) => match store.use_step(user.to_owned(), id, step, now).await.map_err(unavailable)? {
            true => {
                guards.own.succeeded(user, guards.limits);
                Ok(id)
            }
            false => fail(Refused::Reused),
        },
        None if reused => fail(Refused::Reused),
        None => fail(Refused::Wrong),
    }
}

/// A name for a factor as users type it: 1 to 40 printable characters.
pub fn factor_name(typed: &str) -> Option<String> {
    let t = typed.trim();
    (!t.is_empty() && t.chars().count() <= 40 && !t.chars().any(char::is_control)).then(|| t.to_owned())
}

/// Enrols an authenticator app for `user` with `secret` (made by the caller
/// and shown on the enrolment page), once the user proved the app has it by
/// typing its current code. The factor's id.
pub async fn enrol(
    store: &dyn Store,
    keys: &websession::Keys,
    user: &str,
    name: &str,
    secret: &[u8],
    typed: &str,
    now: u64,
) -> Result<i64, Refused> {
    let step = totp::verify(secret, typed, now, None).map_err(|_| Refused::Wrong)?;
    let sealed = mfa::seal_secret(keys, user, secret).map_err(Refused::Unavailable)?;
    let unavailable = |e: mfa::Unavailable| Refused::Unavailable(e.0);
    let id = store.add(user.to_owned(), Kind::Totp, name.to_owned(), sealed, now).await.map_err(unavailable)?;
    // The code that enrolled the app does not also pass the second step.
    store.use_step(user.to_owned(), id, step, now).await.map_err(unavailable)?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mfa::Sqlite;

    const SECRET: &[u8] = b"12345678901234567890";
    const BOB: &str = "ADTEST\\bob";
    const NOW: u64 = 1_234_567_890;

    fn keys() -> websession::Keys {
        websession::Keys::parse("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n").unwrap()
    }

    fn limits(max_user: u32) -> Limits {
        Limits { max_failures_per_user: max_user, max_failures_per_client: 1000, ..Limits::default() }
    }

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, last])
    }

    #[test]
    fn codes_pass_once_and_wrong_ones_lock_out() {
        let dir = tempfile::tempdir().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let store = Sqlite::open(&dir.path().join("mfa.db")).unwrap();
            let (k, lockout, attempts, lim) = (keys(), Lockout::default(), Attempts::default(), limits(3));
            let own = Lockout::default();
            let g =
                Guards { lockout: &lockout, own: &own, limits: &lim, attempts: &attempts, attempts_per_minute: 1000 };
            assert_eq!(check(&store, &k, &g, BOB, ip(1), "123456", NOW).await, Err(Refused::NoFactor));
            let step = totp::step_at(NOW);
            // Enrolment needs the app's current code.
            assert_eq!(enrol(&store, &k, BOB, "phone", SECRET, "000000", NOW).await, Err(Refused::Wrong));
            assert!(store.factors(BOB.into()).await.unwrap().is_empty(), "nothing enrolled on a wrong code");
            let id = enrol(&store, &k, BOB, "phone", SECRET, &totp::code(SECRET, step - 1), NOW).await.unwrap();
            // The enrolling code is used up; the current step's passes once.
            let used = totp::code(SECRET, step - 1);
            assert_eq!(check(&store, &k, &g, BOB, ip(1), &used, NOW).await, Err(Refused::Reused));
            let now_code = totp::code(SECRET, step);
            assert_eq!(check(&store, &k, &g, BOB, ip(1), &now_code, NOW).await, Ok(id));
            assert_eq!(check(&store, &k, &g, BOB, ip(1), &now_code, NOW).await, Err(Refused::Reused));
            // A code two steps away (outside the skew) is wrong.
            let far = totp::code(SECRET, step + 3);
            assert_eq!(check(&store, &k, &g, BOB, ip(1), &far, NOW).await, Err(Refused::Wrong));
            // Three failures so far (reused, reused, wrong) on the password's
            // count (the pass reset the second factor's): locked out,
            // and even the right next code is not compared.
            let next = totp::code(SECRET, step + 1);
            assert!(matches!(check(&store, &k, &g, BOB, ip(2), &next, NOW).await, Err(Refused::Throttled(_))));
            // A good password (which resets the password's count) does not
            // reset the second factor's: carol's three wrong codes stay.
            let carol = "ADTEST\\carol";
            enrol(&store, &k, carol, "phone", SECRET, &totp::code(SECRET, step - 1), NOW).await.unwrap();
            for _ in 0..3 {
                assert_eq!(check(&store, &k, &g, carol, ip(5), "000000", NOW).await, Err(Refused::Wrong));
            }
            lockout.succeeded(carol, &lim);
            assert!(matches!(check(&store, &k, &g, carol, ip(5), &next, NOW).await, Err(Refused::Throttled(_))));
            // Another user is not.
            assert_eq!(check(&store, &k, &g, "ADTEST\\alice", ip(2), "123456", NOW).await, Err(Refused::NoFactor));
        });
    }

    #[test]
    fn per_address_limits_and_foreign_secrets() {
        let dir = tempfile::tempdir().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let store = Sqlite::open(&dir.path().join("mfa.db")).unwrap();
            let (k, lockout, attempts, lim) = (keys(), Lockout::default(), Attempts::default(), limits(100));
            let own = Lockout::default();
            let g = Guards { lockout: &lockout, own: &own, limits: &lim, attempts: &attempts, attempts_per_minute: 2 };
            let step = totp::step_at(NOW);
            enrol(&store, &k, BOB, "phone", SECRET, &totp::code(SECRET, step), NOW).await.unwrap();
            assert_eq!(check(&store, &k, &g, BOB, ip(3), "000000", NOW).await, Err(Refused::Wrong));
            assert_eq!(check(&store, &k, &g, BOB, ip(3), "000001", NOW).await, Err(Refused::Wrong));
            let next = totp::code(SECRET, step + 1);
            assert!(matches!(check(&store, &k, &g, BOB, ip(3), &next, NOW).await, Err(Refused::Throttled(_))));
            // Bob's sealed secret copied into alice's row opens for nobody.
            let sealed = store.factors(BOB.into()).await.unwrap().remove(0).sealed;
            store.add("ADTEST\\alice".into(), Kind::Totp, "copied".into(), sealed, NOW).await.unwrap();
            let g = Guards { attempts_per_minute: 100, ..g };
            assert_eq!(check(&store, &k, &g, "ADTEST\\alice", ip(4), &next, NOW).await, Err(Refused::Wrong));
        });
    }

    #[test]
    fn a_wrong_code_counts_once_per_client() {
        let dir = tempfile::tempdir().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let store = Sqlite::open(&dir.path().join("mfa.db")).unwrap();
            let (k, lockout, own, attempts) = (keys(), Lockout::default(), Lockout::default(), Attempts::default());
            let lim = Limits { max_failures_per_user: 100, max_failures_per_client: 2, ..Limits::default() };
            let g =
                Guards { lockout: &lockout, own: &own, limits: &lim, attempts: &attempts, attempts_per_minute: 100 };
            let step = totp::step_at(NOW);
            enrol(&store, &k, BOB, "phone", SECRET, &totp::code(SECRET, step), NOW).await.unwrap();
            assert_eq!(check(&store, &k, &g, BOB, ip(6), "000000", NOW).await, Err(Refused::Wrong));
            assert_eq!(check(&store, &k, &g, BOB, ip(6), "000001", NOW).await, Err(Refused::Wrong), "counted once");
            let next = totp::code(SECRET, step + 1);
            assert!(matches!(check(&store, &k, &g, BOB, ip(6), &next, NOW).await, Err(Refused::Throttled(_))));
        });
    }

    #[test]
    fn factor_names() {
        assert_eq!(factor_name("  phone "), Some("phone".into()));
        assert_eq!(factor_name(""), None);
        assert_eq!(factor_name("a\u{7}b"), None);
        assert_eq!(factor_name(&"x".repeat(41)), None);
    }
}
