//! The delegated credentials kept, one per user: bounded by a configured
//! number of users (`[domain] credential_cache_size`), the least recently used
//! evicted first when a new user needs room, and every hit, miss and eviction
//! counted for metrics.
//!
//! Before this, the cache grew to a fixed 50,000 users and then dropped only
//! the expired ones: a burst of new users past that kept it over the limit
//! until their credentials expired, with nothing counted. The order is a
//! `BTreeMap` from a use counter to the key (O(log n) per use), which needs
//! no `unsafe` and no new dependency; at 100,000 users a hit costs a few
//! hundred nanoseconds, next to the microseconds of the token it serves.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;

/// What the cache holds and did, since it was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CacheStats {
    /// Users with a credential kept now.
    pub entries: usize,
    /// The most users kept at once.
    pub capacity: usize,
    /// Lookups that found a usable credential.
    pub hits: u64,
    /// Lookups that found none, or an expired one (then dropped).
    pub misses: u64,
    /// Users dropped to make room for another (least recently used first).
    pub evictions: u64,
}

struct Slot<V> {
    value: V,
    used: u64,
}

/// A map bounded to `capacity` keys that evicts the least recently used.
pub struct Lru<K, V> {
    map: HashMap<K, Slot<V>>,
    /// Last use -> key; the first entry is the least recently used.
    order: BTreeMap<u64, K>,
    clock: u64,
    capacity: usize,
    hits: u64,
    misses: u64,
    evictions: u64,
}

impl<K: Hash + Eq + Clone, V> Lru<K, V> {
    pub fn new(capacity: usize) -> Lru<K, V> {
        Lru {
            map: HashMap::new(),
            order: BTreeMap::new(),
            clock: 0,
            capacity: capacity.max(1),
            hits: 0,
            misses: 0,
            evictions: 0,
        }
    }

    /// The value for `key` if `usable` says it still is (a hit, and now the
    /// most recently used); an unusable one is dropped (a miss).
    pub fn get(&mut self, key: &K, usable: impl Fn(&V) -> bool) -> Option<&V> {
        let clock = self.tick();
        let Some(slot) = self.map.get_mut(key) else {
            self.misses += 1;
            return None;
        };
        if !usable(&slot.value) {
            let used = slot.used;
            self.map.remove(key);
            self.order.remove(&used);
            self.misses += 1;
            return None;
        }
        self.order.remove(&slot.used);
        slot.used = clock;
        self.order.insert(clock, key.clone());
        self.hits += 1;
        self.map.get(key).map(|s| &s.value)
    }

    /// The value for `key`, without counting or touching it.
    pub fn peek(&self, key: &K) -> Option<&V> {
        self.map.get(key).map(|s| &s.value)
    }

    /// Keeps `value` for `key` as the most recently used, evicting the least
    /// recently used users while the cache is full.
    pub fn insert(&mut self, key: K, value: V) {
        let clock = self.tick();
        if let Some(old) = self.map.remove(&key) {
            self.order.remove(&old.used);
        }
        while self.map.len() >= self.capacity {
            self.evict_one();
        }
        self.order.insert(clock, key.clone());
        self.map.insert(key, Slot { value, used: clock });
    }

    /// Forgets `key` (a credential found unusable); not an eviction.
    pub fn remove(&mut self, key: &K) {
        if let Some(slot) = self.map.remove(key) {
            self.order.remove(&slot.used);
        }
    }

    /// A new bound (a reload); users past it are evicted now.
    pub fn set_capacity(&mut self, capacity: usize) {
        self.capacity = capacity.max(1);
        while self.map.len() > self.capacity {
            self.evict_one();
        }
    }

    pub fn stats(&self) -> CacheStats {
        CacheStats {
            entries: self.map.len(),
            capacity: self.capacity,
            hits: self.hits,
            misses: self.misses,
            evictions: self.evictions,
        }
    }

    fn evict_one(&mut self) {
        if let Some((_, key)) = self.order.pop_first() {
            self.map.remove(&key);
            self.evictions += 1;
        }
    }

    fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_least_recently_used_goes_first_and_is_counted() {
        let mut c: Lru<String, u32> = Lru::new(2);
        c.insert("alice".into(), 1);
        c.insert("bob".into(), 2);
        // alice used: bob is now the least recently used.
        assert_eq!(c.get(&"alice".into(), |_| true), Some(&1));
        c.insert("carol".into(), 3);
        assert!(c.peek(&"bob".into()).is_none(), "bob evicted");
        assert_eq!(c.peek(&"alice".into()), Some(&1));
        assert_eq!(c.get(&"bob".into(), |_| true), None);
        assert_eq!(c.stats(), CacheStats { entries: 2, capacity: 2, hits: 1, misses: 1, evictions: 1 });
    }

    #[test]
    fn replacing_a_user_evicts_no_one() {
        let mut c: Lru<&str, u32> = Lru::new(2);
        c.insert("alice", 1);
        c.insert("bob", 2);
        c.insert("alice", 3);
        assert_eq!((c.peek(&"alice"), c.peek(&"bob")), (Some(&3), Some(&2)));
        assert_eq!(c.stats().evictions, 0);
        // alice was replaced last, so bob goes first.
        c.insert("carol", 4);
        assert!(c.peek(&"bob").is_none());
    }

    #[test]
    fn an_expired_credential_is_a_miss_and_dropped_not_an_eviction() {
        let mut c: Lru<&str, u32> = Lru::new(4);
        c.insert("alice", 1);
        assert_eq!(c.get(&"alice", |v| *v > 1), None);
        assert!(c.peek(&"alice").is_none());
        assert_eq!(c.stats(), CacheStats { entries: 0, capacity: 4, hits: 0, misses: 1, evictions: 0 });
    }

    #[test]
    fn peek_neither_counts_nor_changes_the_order() {
        let mut c: Lru<&str, u32> = Lru::new(2);
        c.insert("alice", 1);
        c.insert("bob", 2);
        assert_eq!(c.peek(&"alice"), Some(&1));
        c.insert("carol", 3);
        assert!(c.peek(&"alice").is_none(), "peeking did not make alice recent");
        assert_eq!((c.stats().hits, c.stats().misses), (0, 0));
    }

    #[test]
    fn a_smaller_capacity_evicts_at_once_and_the_bound_holds_under_many_users() {
        let mut c: Lru<u32, u32> = Lru::new(1000);
        for i in 0..10_000 {
            c.insert(i, i);
            assert!(c.stats().entries <= 1000);
        }
        assert_eq!(c.stats().evictions, 9000);
        // The last thousand are the ones kept.
        assert!((9000..10_000).all(|i| c.peek(&i).is_some()));
        c.set_capacity(10);
        assert_eq!(c.stats().entries, 10);
        assert_eq!(c.stats().evictions, 9990);
        assert!((9990..10_000).all(|i| c.peek(&i).is_some()));
        assert_eq!(c.map.len(), c.order.len(), "the order and the map agree");
    }
}
