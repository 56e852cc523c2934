//! Server-side sessions of browsers signed in on the sign-in page.
//!
//! The cookie carries a sealed ticket (`websession`) naming a session by a
//! random id; the session itself lives here, so that logoff and `gatehouse
//! sessions revoke` end it at once, and a copied cookie is worth nothing
//! afterwards. [`Store`] is the interface: this issue keeps sessions in the
//! process's memory ([`Memory`]); a shared store (Valkey/Redis, PostgreSQL)
//! implements the same trait, which is why every call returns a future and
//! may fail with [`Unavailable`]. The store knows nothing of users beyond a
//! name to revoke by: the record's `user` is whatever the caller keeps
//! (gatehouse's `auth::User`), so this module imports nothing of the crate.

pub mod command;
mod memory;

pub use memory::Memory;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// A session's id: 32 random bytes, never shown, never logged.
pub type Id = [u8; 32];

/// One session.
#[derive(Clone, Debug)]
pub struct Record<U> {
    /// The user's name (`ADTEST\alice`), for revoking and listing.
    pub who: Arc<str>,
    pub user: U,
    pub created: SystemTime,
    /// The absolute end: no use extends it.
    pub ends: SystemTime,
    /// Unused this long, the session ends.
    pub idle: Duration,
    /// Signed in on a public or shared computer (the shorter times).
    pub public: bool,
    /// The session passed a second factor too (Unix seconds when), not only
    /// the password. A session that passes one later is replaced by a new
    /// one (a new id), never changed in place.
    pub second_factor: Option<u64>,
}

/// A session as `gatehouse sessions list` shows it (no id).
#[derive(Clone, Debug)]
pub struct Summary {
    pub who: Arc<str>,
    pub created: SystemTime,
    pub last_used: SystemTime,
    pub ends: SystemTime,
    pub public: bool,
    /// It passed a second factor, not only the password.
    pub second_factor: bool,
}

/// The store could not be asked (a shared store down): nobody's session was
/// judged.
#[derive(Debug, Clone)]
pub struct Unavailable(pub String);

pub type Pending<'a, T> = Pin<Box<dyn Future<Output = Result<T, Unavailable>> + Send + 'a>>;

/// Where sessions live. Implementations bound their memory and never let a
/// session outlive its `ends` or its idle time.
pub trait Store<U>: Send + Sync {
    /// Keeps a new session under `id`.
    fn insert(&self, id: Id, record: Record<U>) -> Pending<'_, ()>;
    /// The session under `id` if it is live at `now`, which counts as a use
    /// (its idle time starts again). An ended session is removed.
    fn touch(&self, id: Id, now: SystemTime) -> Pending<'_, Option<Record<U>>>;
    /// Ends the session under `id`; whether there was one.
    fn remove(&self, id: Id) -> Pending<'_, bool>;
    /// Ends every session of the user `who` (see [`names_match`]); how many.
    fn revoke(&self, who: String) -> Pending<'_, usize>;
    /// Every live session.
    fn list(&self, now: SystemTime) -> Pending<'_, Vec<Summary>>;
    /// Forgets ended sessions (called every few seconds).
    fn sweep(&self, now: SystemTime);
    /// The most sessions kept at once (a new configuration may change it).
    fn set_capacity(&self, max: usize);
}

/// Whether `asked` (as an administrator types it: `ADTEST\alice`, `alice`,
/// `alice@ad.test`) names the session user `who`: the whole name, or, for a
/// name without a domain, the user part of `DOMAIN\user`; without case, as
/// the domain compares names.
pub fn names_match(asked: &str, who: &str) -> bool {
    if asked.eq_ignore_ascii_case(who) {
        return true;
    }
    !asked.contains('\\')
        && !asked.contains('@')
        && who.rsplit_once('\\').is_some_and(|(_, u)| u.eq_ignore_ascii_case(asked))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(names_match("ADTEST\\alice", "ADTEST\\alice"));
        assert!(names_match("adtest\\ALICE", "ADTEST\\alice"));
        assert!(names_match("alice", "ADTEST\\alice"));
        assert!(names_match("carol@corp.example", "carol@corp.example"));
        assert!(!names_match("OTHER\\alice", "ADTEST\\alice"));
        assert!(!names_match("ali", "ADTEST\\alice"));
        assert!(!names_match("alice@ad.test", "ADTEST\\alice"), "a UPN is compared whole");
        assert!(!names_match("", "ADTEST\\alice"));
    }
}
