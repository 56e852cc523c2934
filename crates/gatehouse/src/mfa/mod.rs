//! Second factors: where they are kept, and the administrator's commands.
//!
//! [`Store`] is the interface: this issue keeps factors in an SQLite file
//! ([`Sqlite`], `[mfa] store`); a shared store for several gatehouse servers
//! implements the same trait later, which is why every call returns a future
//! and may fail with [`Unavailable`]. The store keeps bytes: a TOTP secret
//! arrives sealed ([`seal_secret`], the `[forms]` key file's first key,
//! XChaCha20-Poly1305 bound to the user's name), so neither a copy of the
//! file nor a row moved to another user gives anyone a working secret.
//! Enrolment codes are kept as SHA-256 digests only.
//!
//! The checks behind the sign-in page's protections (lockout, per-address
//! limit) are in `auth::second_factor`; this module knows nothing of them,
//! so a shared store is written against [`Store`] alone.

pub mod command;
mod sqlite;

pub use sqlite::Sqlite;

use std::future::Future;
use std::pin::Pin;

/// What happened at the second step since gatehouse started (`gatehouse mfa
/// counters`): never who, never a code.
#[derive(Default, Debug)]
pub struct Counters {
    pub passed: std::sync::atomic::AtomicU64,
    pub failed: std::sync::atomic::AtomicU64,
    pub enrolled: std::sync::atomic::AtomicU64,
    pub enrol_codes_refused: std::sync::atomic::AtomicU64,
    pub removed: std::sync::atomic::AtomicU64,
    pub resets: std::sync::atomic::AtomicU64,
    pub codes_issued: std::sync::atomic::AtomicU64,
    pub passkey_passed: std::sync::atomic::AtomicU64,
    pub passkey_failed: std::sync::atomic::AtomicU64,
    pub passkey_enrolled: std::sync::atomic::AtomicU64,
    pub renamed: std::sync::atomic::AtomicU64,
}

impl Counters {
    pub fn count(counter: &std::sync::atomic::AtomicU64) {
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// One line per counter, `name<TAB>value`.
    pub fn lines(&self) -> String {
        let get = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
        [
            ("totp_passed", get(&self.passed)),
            ("totp_failed", get(&self.failed)),
            ("totp_enrolled", get(&self.enrolled)),
            ("enrolment_codes_refused", get(&self.enrol_codes_refused)),
            ("factors_removed", get(&self.removed)),
            ("admin_resets", get(&self.resets)),
            ("enrolment_codes_issued", get(&self.codes_issued)),
            ("passkey_passed", get(&self.passkey_passed)),
            ("passkey_failed", get(&self.passkey_failed)),
            ("passkey_enrolled", get(&self.passkey_enrolled)),
            ("factors_renamed", get(&self.renamed)),
        ]
        .iter()
        .map(|(n, v)| format!("{n}\t{v}\n"))
        .collect()
    }
}

/// The store could not be asked or could not write; nothing was changed.
#[derive(Debug, Clone)]
pub struct Unavailable(pub String);

pub type Pending<'a, T> = Pin<Box<dyn Future<Output = Result<T, Unavailable>> + Send + 'a>>;

/// What kind of factor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An authenticator app's codes (RFC 6238).
    Totp,
    /// A WebAuthn credential: a passkey or a security key, with user
    /// verification.
    Passkey,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Totp => "totp",
            Kind::Passkey => "passkey",
        }
    }

    fn parse(s: &str) -> Option<Kind> {
        match s {
            "totp" => Some(Kind::Totp),
            "passkey" => Some(Kind::Passkey),
            _ => None,
        }
    }
}

/// One enrolled factor.
#[derive(Debug, Clone)]
pub struct Factor {
    /// The user's name as it was signed in (`ADTEST\bob`).
    pub user: String,
    pub id: i64,
    pub kind: Kind,
    /// The user's name for it ("phone").
    pub name: String,
    /// The secret ([`seal_secret`]) or the WebAuthn credential (its id,
    /// public key and signature counter, `auth::passkey`), sealed.
    pub sealed: String,
    /// Unix seconds.
    pub created: u64,
    /// When it last passed (Unix seconds).
    pub last_used: Option<u64>,
}

/// Where factors live. Every write is one transaction: it happens whole or
/// not at all, so a failed write never loses a factor that was there.
pub trait Store: Send + Sync {
    /// The factors of users whose names match `who` ([`crate::session::names_match`]).
    fn factors(&self, who: String) -> Pending<'_, Vec<Factor>>;
    /// Adds a factor; its id.
    fn add(&self, user: String, kind: Kind, name: String, sealed: String, now: u64) -> Pending<'_, i64>;
    /// Removes one factor of `user`; whether it was there.
    fn remove(&self, user: String, id: i64) -> Pending<'_, bool>;
    /// Removes every factor, enrolment code and used step of users matching
    /// `who`; how many factors went.
    fn reset(&self, who: String) -> Pending<'_, usize>;
    /// Records that `user`'s code of `step` passed with factor `id`, only if
    /// no code of this step or a later one passed before (checked and
    /// written in one transaction, so two requests with the same code cannot
    /// both pass); whether it was recorded.
    fn use_step(&self, user: String, id: i64, step: u64, now: u64) -> Pending<'_, bool>;
    /// The last step of `user` that passed.
    fn last_step(&self, user: String) -> Pending<'_, Option<u64>>;
    /// Keeps an enrolment code's digest for `user` until `expires`.
    fn issue_code(&self, user: String, digest: [u8; 32], expires: u64) -> Pending<'_, ()>;
    /// Takes an enrolment code: the user it was issued for, if it is known
    /// and not expired at `now`. A taken code is gone (used once).
    fn take_code(&self, digest: [u8; 32], now: u64) -> Pending<'_, Option<String>>;
    /// Adds a WebAuthn credential of `user` (`credential`: its id, unique
    /// among every user's): its factor id, or None when that credential is
    /// already registered (to this user or another).
    fn add_passkey(
        &self,
        user: String,
        name: String,
        credential: Vec<u8>,
        sealed: String,
        now: u64,
    ) -> Pending<'_, Option<i64>>;
    /// Replaces the sealed value of factor `id` of `user` (a passkey's new
    /// signature counter) and records that it passed at `now`; whether it
    /// was there.
    fn update(&self, user: String, id: i64, sealed: String, now: u64) -> Pending<'_, bool>;
    /// Gives factor `id` of `user` a new name; whether it was there.
    fn rename(&self, user: String, id: i64, name: String) -> Pending<'_, bool>;
    /// Records that a WebAuthn ceremony's challenge (its digest) was
    /// answered, good until `expires`: true the first time, false after
    /// (checked and written in one transaction, so a challenge passes once
    /// however many requests carry it). Digests past their end are swept.
    fn use_challenge(&self, digest: [u8; 32], expires: u64, now: u64) -> Pending<'_, bool>;
}

/// What a TOTP secret is sealed for: the kind and the user, so that a
/// sealed secret copied to another user's row does not open.
fn scope(user: &str) -> Vec<u8> {
    format!("gatehouse-mfa|totp|user:{}", user.to_lowercase()).into_bytes()
}

/// Seals a TOTP secret for `user` with the key file's first key.
pub fn seal_secret(keys: &websession::Keys, user: &str, secret: &[u8]) -> Result<String, String> {
    let mut nonce = [0u8; 24];
    getrandom::fill(&mut nonce).map_err(|e| format!("no randomness: {e}"))?;
    Ok(keys.seal(&scope(user), secret, nonce))
}

/// Opens a sealed TOTP secret of `user` with any key of the key file.
pub fn open_secret(keys: &websession::Keys, user: &str, sealed: &str) -> Result<Vec<u8>, websession::Refused> {
    keys.open(&scope(user), sealed)
}

/// What a WebAuthn credential is sealed for. Its public key is no secret,
/// but sealed it cannot be moved to another user's row or changed (a new
/// key, a counter set back) by whoever can write the file.
fn credential_scope(user: &str) -> Vec<u8> {
    format!("gatehouse-mfa|passkey|user:{}", user.to_lowercase()).into_bytes()
}

/// Seals a WebAuthn credential (webauthn-rs's `Passkey` as JSON) for `user`.
pub fn seal_credential(keys: &websession::Keys, user: &str, credential: &[u8]) -> Result<String, String> {
    let mut nonce = [0u8; 24];
    getrandom::fill(&mut nonce).map_err(|e| format!("no randomness: {e}"))?;
    Ok(keys.seal(&credential_scope(user), credential, nonce))
}

/// Opens a sealed WebAuthn credential of `user`.
pub fn open_credential(keys: &websession::Keys, user: &str, sealed: &str) -> Result<Vec<u8>, websession::Refused> {
    keys.open(&credential_scope(user), sealed)
}

/// An enrolment code as the administrator hands it over: 20 base32
/// characters (96 random bits) in groups of five.
pub fn new_code() -> Result<String, String> {
    let mut random = [0u8; 12];
    getrandom::fill(&mut random).map_err(|e| format!("no randomness: {e}"))?;
    let plain = websession::totp::base32(&random);
    let groups: Vec<String> = plain.as_bytes().chunks(5).map(|c| String::from_utf8_lossy(c).into_owned()).collect();
    Ok(groups.join("-"))
}

/// The digest an enrolment code is kept and looked up by: without the dashes
/// and spaces, in upper case, as users retype it.
pub fn code_digest(code: &str) -> [u8; 32] {
    use sha2::Digest;
    let norm: String = code.chars().filter(|c| !matches!(c, '-' | ' ')).map(|c| c.to_ascii_uppercase()).collect();
    sha2::Sha256::digest(norm.as_bytes()).into()
}

/// Why a factor was not removed.
#[derive(Debug, PartialEq, Eq)]
pub enum NotRemoved {
    /// It is the user's last factor, and the session has not passed a second
    /// factor freshly: with a stolen password and a stale session, removing
    /// it would open enrolment to the thief.
    LastNeedsFreshFactor,
    /// No such factor of this user.
    Unknown,
    Unavailable(String),
}

/// Removes factor `id` of `user`; the last one only when `fresh` (the
/// session passed a second factor within the last few minutes).
pub async fn remove_factor(store: &dyn Store, user: &str, id: i64, fresh: bool) -> Result<(), NotRemoved> {
    let unavailable = |e: Unavailable| NotRemoved::Unavailable(e.0);
    let mine: Vec<Factor> = store
        .factors(user.to_owned())
        .await
        .map_err(unavailable)?
        .into_iter()
        .filter(|f| f.user.eq_ignore_ascii_case(user))
        .collect();
    let Some(f) = mine.iter().find(|f| f.id == id) else { return Err(NotRemoved::Unknown) };
    if mine.len() == 1 && !fresh {
        return Err(NotRemoved::LastNeedsFreshFactor);
    }
    match store.remove(f.user.clone(), id).await.map_err(unavailable)? {
        true => Ok(()),
        false => Err(NotRemoved::Unknown),
    }
}

/// Whether `typed` is a live enrolment code issued for `user`; it is used up
/// either way once it matched a code (a code for another user is gone too:
/// it was seen by someone it was not meant for).
pub async fn redeem_code(store: &dyn Store, user: &str, typed: &str, now: u64) -> Result<bool, Unavailable> {
    Ok(store.take_code(code_digest(typed), now).await?.is_some_and(|u| crate::session::names_match(&u, user)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> websession::Keys {
        websession::Keys::parse("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n").unwrap()
    }

    #[test]
    fn sealed_secret_opens_only_for_its_user() {
        let k = keys();
        let sealed = seal_secret(&k, "ADTEST\\bob", b"12345678901234567890").unwrap();
        assert!(!sealed.contains("12345678901234567890"));
        assert_eq!(open_secret(&k, "adtest\\BOB", &sealed).unwrap(), b"12345678901234567890");
        assert_eq!(open_secret(&k, "ADTEST\\alice", &sealed), Err(websession::Refused::Forged));
        let other = websession::Keys::parse("HwECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n").unwrap();
        assert_eq!(open_secret(&other, "ADTEST\\bob", &sealed), Err(websession::Refused::UnknownKey));
    }

    #[test]
    fn the_last_factor_needs_a_fresh_one_and_codes_are_per_user() {
        let dir = tempfile::tempdir().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let s = Sqlite::open(&dir.path().join("mfa.db")).unwrap();
            let bob = "ADTEST\\bob";
            let a = s.add(bob.into(), Kind::Totp, "phone".into(), "x".into(), 1).await.unwrap();
            let b = s.add(bob.into(), Kind::Totp, "tablet".into(), "x".into(), 1).await.unwrap();
            let alice = s.add("ADTEST\\alice".into(), Kind::Totp, "phone".into(), "x".into(), 1).await.unwrap();
            assert_eq!(remove_factor(&s, bob, alice, true).await, Err(NotRemoved::Unknown), "not bob's");
            assert_eq!(remove_factor(&s, bob, a, false).await, Ok(()), "not the last");
            assert_eq!(remove_factor(&s, bob, b, false).await, Err(NotRemoved::LastNeedsFreshFactor));
            assert_eq!(s.factors("bob".into()).await.unwrap().len(), 1, "still there");
            assert_eq!(remove_factor(&s, bob, b, true).await, Ok(()));
            assert!(s.factors("bob".into()).await.unwrap().is_empty());

            s.issue_code(bob.into(), code_digest("AAAAA-BBBBB"), 100).await.unwrap();
            s.issue_code(bob.into(), code_digest("CCCCC-DDDDD"), 100).await.unwrap();
            assert!(!redeem_code(&s, "ADTEST\\alice", "AAAAA-BBBBB", 10).await.unwrap(), "bob's code");
            assert!(!redeem_code(&s, bob, "AAAAA-BBBBB", 10).await.unwrap(), "gone once seen");
            assert!(!redeem_code(&s, bob, "CCCCC-DDDDD", 100).await.unwrap(), "expired");
            // Issued as the administrator typed the name; redeemed by the signed-in user.
            s.issue_code("bob".into(), code_digest("EEEEE-FFFFF"), 100).await.unwrap();
            assert!(redeem_code(&s, bob, "eeeee fffff", 10).await.unwrap());
            assert!(!redeem_code(&s, bob, "EEEEE-FFFFF", 10).await.unwrap(), "once");
        });
    }

    #[test]
    fn codes() {
        let a = new_code().unwrap();
        let b = new_code().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), 23, "{a}");
        assert_eq!(a.split('-').count(), 4, "{a}");
        assert_eq!(code_digest(&a), code_digest(&a.to_lowercase().replace('-', " ")));
        assert_ne!(code_digest(&a), code_digest(&b));
    }
}
