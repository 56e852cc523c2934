//! The replay cache for clients' Kerberos authenticators, in memory.
//!
//! MIT's own replay cache is a file (one write per authentication, shared by
//! every process of the user); gatehouse switches it off and keeps this one:
//! the SHA-256 of each accepted authenticator's ciphertext, for as long as the
//! authenticator could still be accepted (its time must be within the 5-minute
//! clock skew of ours, so 10 minutes covers both sides). Entries live in one set
//! per minute; old sets are dropped whole.

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

const BUCKET: Duration = Duration::from_secs(60);
const BUCKETS: usize = 11;
/// At ~100 bytes an entry, about 400 MB at most. Beyond it new logons are
/// refused (fail closed) rather than old entries forgotten early.
const MAX_ENTRIES: usize = 4_000_000;

pub struct Cache {
    inner: Mutex<Inner>,
}

struct Inner {
    /// Newest first: (start of the minute, digests).
    buckets: VecDeque<(Instant, HashSet<[u8; 32]>)>,
    entries: usize,
}

impl Cache {
    pub fn new() -> Cache {
        Cache { inner: Mutex::new(Inner { buckets: VecDeque::new(), entries: 0 }) }
    }

    fn digest(authenticator: &[u8]) -> [u8; 32] {
        Sha256::digest(authenticator).into()
    }

    /// Whether this authenticator was accepted before.
    pub fn seen(&self, authenticator: &[u8]) -> bool {
        let d = Self::digest(authenticator);
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.expire(Instant::now());
        inner.buckets.iter().any(|(_, set)| set.contains(&d))
    }

    /// Records an accepted authenticator; false if it was already there (a
    /// replay that raced the first use) or the cache is full.
    pub fn record(&self, authenticator: &[u8]) -> bool {
        let d = Self::digest(authenticator);
        let now = Instant::now();
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.expire(now);
        if inner.buckets.iter().any(|(_, set)| set.contains(&d)) || inner.entries >= MAX_ENTRIES {
            return false;
        }
        if inner.buckets.front().is_none_or(|(start, _)| now.duration_since(*start) >= BUCKET) {
            inner.buckets.push_front((now, HashSet::new()));
        }
        inner.buckets.front_mut().expect("just ensured").1.insert(d);
        inner.entries += 1;
        true
    }
}

impl Inner {
    fn expire(&mut self, now: Instant) {
        while self.buckets.len() > BUCKETS
            || self.buckets.back().is_some_and(|(start, _)| now.duration_since(*start) > BUCKET * BUCKETS as u32)
        {
            if let Some((_, set)) = self.buckets.pop_back() {
                self.entries -= set.len();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_use_is_a_replay() {
        let c = Cache::new();
        assert!(!c.seen(b"one"));
        assert!(c.record(b"one"));
        assert!(c.seen(b"one"));
        assert!(!c.record(b"one"));
        assert!(!c.seen(b"two"));
        assert!(c.record(b"two"));
    }

    #[test]
    fn old_minutes_are_dropped() {
        let c = Cache::new();
        assert!(c.record(b"old"));
        {
            let mut inner = c.inner.lock().unwrap();
            let start = &mut inner.buckets.front_mut().unwrap().0;
            *start -= BUCKET * (BUCKETS as u32 + 1);
        }
        assert!(!c.seen(b"old"));
        assert_eq!(c.inner.lock().unwrap().entries, 0);
    }
}
