//! Extranet lockout protection: stop asking the domain controller before AD
//! locks a user out, in memory that no client can grow.
//!
//! Failures are counted per account name, per client address and per client
//! network, the way AD counts bad passwords: a count restarts when `window`
//! has passed since its last failure ("reset account lockout counter after"),
//! so a counter is a number and a time, whatever the number of attempts.
//!
//! Names are kept as a salted digest, never as the text a client sent, and
//! live in one of two tables: **accounts** (names the accounts source said
//! exist, or that logged on) and **other names**. Each table, and the table of
//! client counters, holds at most `max_entries`; when one is full its oldest
//! counter makes room. An unknown name therefore only ever displaces another
//! unknown name: a flood of made-up names cannot reset a real user's count.

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::accounts::Evidence;
use crate::config::Lockout as LockoutConfig;

pub struct Lockout {
    salt: [u8; 32],
    tables: Mutex<Tables>,
}

impl Default for Lockout {
    fn default() -> Self {
        let mut salt = [0u8; 32];
        // Without randomness the digests are still fixed-size; they are only
        // predictable, which matters to no one outside the process.
        let _ = getrandom::fill(&mut salt);
        Lockout { salt, tables: Mutex::new(Tables::default()) }
    }
}

#[derive(Default)]
struct Tables {
    accounts: Table<NameKey>,
    names: Table<NameKey>,
    clients: Table<ClientKey>,
    /// Names that logged on since the process started: their failures count
    /// as an account's even when the domain's answer does not tell.
    logged_on: Fifo<NameKey>,
    window: Duration,
    next_seq: u64,
}

/// The first 16 bytes of SHA-256(salt, folded name).
type NameKey = [u8; 16];

#[derive(Hash, PartialEq, Eq, Clone, Copy, Debug)]
enum ClientKey {
    Address(IpAddr),
    Network(IpAddr, u8),
}

#[derive(Clone, Copy)]
struct Counter {
    failures: u32,
    last: Instant,
    /// Which entry of `Table::order` belongs to this counter.
    seq: u64,
}

/// Counters in the order they were created, for oldest-first eviction.
/// `order` may hold entries of counters removed since (`seq` tells); they
/// are skipped, and compacted away when they outnumber the live ones.
struct Table<K> {
    map: HashMap<K, Counter>,
    order: VecDeque<(K, u64)>,
}

impl<K> Default for Table<K> {
    fn default() -> Self {
        Table { map: HashMap::new(), order: VecDeque::new() }
    }
}

impl<K: Hash + Eq + Copy> Table<K> {
    fn count(&self, key: &K, now: Instant, window: Duration) -> u32 {
        self.map.get(key).filter(|c| now.saturating_duration_since(c.last) < window).map_or(0, |c| c.failures)
    }

    /// One more failure for `key`; a new counter starts at `carried + 1`.
    /// When the table is full, its oldest counter goes first.
    fn bump(&mut self, key: K, carried: u32, now: Instant, window: Duration, cap: usize, seq: &mut u64) {
        if let Some(c) = self.map.get_mut(&key) {
            let expired = now.saturating_duration_since(c.last) >= window;
            c.failures = if expired { 1 } else { c.failures.saturating_add(1) };
            c.last = now;
            return;
        }
        while self.map.len() >= cap.max(1) {
            let Some((old, s)) = self.order.pop_front() else { break };
            if self.map.get(&old).is_some_and(|c| c.seq == s) {
                self.map.remove(&old);
            }
        }
        *seq += 1;
        self.map.insert(key, Counter { failures: carried.saturating_add(1), last: now, seq: *seq });
        self.order.push_back((key, *seq));
        if self.order.len() > 2 * self.map.len() + 1024 {
            self.compact();
        }
    }

    fn take(&mut self, key: &K) -> Option<Counter> {
        self.map.remove(key)
    }

    fn sweep(&mut self, now: Instant, window: Duration) {
        self.map.retain(|_, c| now.saturating_duration_since(c.last) < window);
        self.compact();
    }

    fn compact(&mut self) {
        let map = &self.map;
        self.order.retain(|(k, s)| map.get(k).is_some_and(|c| c.seq == *s));
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.map.len()
    }
}

/// A set that forgets its oldest member when full.
struct Fifo<K> {
    set: HashSet<K>,
    order: VecDeque<K>,
}

impl<K> Default for Fifo<K> {
    fn default() -> Self {
        Fifo { set: HashSet::new(), order: VecDeque::new() }
    }
}

impl<K: Hash + Eq + Copy> Fifo<K> {
    fn insert(&mut self, key: K, cap: usize) {
        if self.set.contains(&key) {
            return;
        }
        while self.set.len() >= cap.max(1) {
            let Some(old) = self.order.pop_front() else { break };
            self.set.remove(&old);
        }
        self.set.insert(key);
        self.order.push_back(key);
    }
}

impl Lockout {
    pub fn allowed(&self, user: &str, client: IpAddr, limits: &LockoutConfig) -> Result<(), String> {
        self.allowed_at(user, client, limits, Instant::now())
    }

    pub fn failed(&self, user: &str, client: IpAddr, evidence: Evidence, limits: &LockoutConfig) {
        self.failed_at(user, client, evidence, limits, Instant::now())
    }

    /// AD resets a user's bad-password count on a good logon; so do we. The
    /// name is remembered as an account's.
    pub fn succeeded(&self, user: &str, limits: &LockoutConfig) {
        let key = self.name_key(user);
        let mut t = self.lock();
        t.accounts.take(&key);
        t.names.take(&key);
        t.logged_on.insert(key, limits.max_entries);
    }

    /// Forgets counters whose window has passed; run periodically.
    pub fn sweep(&self) {
        let now = Instant::now();
        let mut t = self.lock();
        let window = t.window;
        t.accounts.sweep(now, window);
        t.names.sweep(now, window);
        t.clients.sweep(now, window);
    }

    fn allowed_at(&self, user: &str, client: IpAddr, limits: &LockoutConfig, now: Instant) -> Result<(), String> {
        let key = self.name_key(user);
        let mut t = self.lock();
        t.window = limits.window;
        let w = limits.window;
        if t.accounts.count(&key, now, w).max(t.names.count(&key, now, w)) >= limits.max_failures_per_user {
            return Err(format!(
                "extranet lockout: {} failed logons for this user, the last less than {w:?} ago",
                limits.max_failures_per_user
            ));
        }
        for ck in client_keys(client, limits).into_iter().flatten() {
            if t.clients.count(&ck, now, w) >= limits.max_failures_per_client {
                let from = match ck {
                    ClientKey::Address(a) => a.to_string(),
                    ClientKey::Network(n, p) => format!("network {n}/{p}"),
                };
                return Err(format!(
                    "extranet lockout: {} failed logons from {from}, the last less than {w:?} ago",
                    limits.max_failures_per_client
                ));
            }
        }
        Ok(())
    }

    fn failed_at(&self, user: &str, client: IpAddr, evidence: Evidence, limits: &LockoutConfig, now: Instant) {
        let key = self.name_key(user);
        let (w, cap) = (limits.window, limits.max_entries);
        let mut guard = self.lock();
        let t = &mut *guard;
        t.window = w;
        let account =
            evidence == Evidence::Account || t.logged_on.set.contains(&key) || t.accounts.map.contains_key(&key);
        if account {
            // Moving to the accounts table keeps the failures counted so far.
            let carried = t.names.take(&key).filter(|c| now.saturating_duration_since(c.last) < w);
            t.accounts.bump(key, carried.map_or(0, |c| c.failures), now, w, cap, &mut t.next_seq);
        } else {
            t.names.bump(key, 0, now, w, cap, &mut t.next_seq);
        }
        for ck in client_keys(client, limits).into_iter().flatten() {
            t.clients.bump(ck, 0, now, w, cap, &mut t.next_seq);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Tables> {
        self.tables.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The account a logon attempt counts against. The domain a client sends
    /// is ignored, and UPN and down-level forms are folded: otherwise an
    /// attacker could rotate `ADTEST\bob`, `ad.test\bob`, `\bob` and
    /// `bob@ad.test`, each with its own count, while the domain controller
    /// counts them all against bob.
    fn name_key(&self, user: &str) -> NameKey {
        let name = user.rsplit('\\').next().unwrap_or(user);
        let name = name.split('@').next().unwrap_or(name);
        let mut h = Sha256::new();
        h.update(self.salt);
        h.update(name.to_lowercase().as_bytes());
        let digest = h.finalize();
        let mut key = [0u8; 16];
        key.copy_from_slice(&digest[..16]);
        key
    }
}

/// The counters a client's failure goes to: its address, and its network
/// when the configured prefix is shorter than an address. An IPv4 client on a
/// dual-stack listener arrives as `::ffff:a.b.c.d` and is counted as IPv4:
/// otherwise every IPv4 client would share one IPv6 /64.
fn client_keys(client: IpAddr, limits: &LockoutConfig) -> [Option<ClientKey>; 2] {
    let ip = client.to_canonical();
    let network = match ip {
        IpAddr::V4(a) if limits.ipv4_prefix < 32 => {
            let mask = u32::MAX.checked_shl(32 - u32::from(limits.ipv4_prefix)).unwrap_or(0);
            Some(ClientKey::Network(IpAddr::V4((u32::from(a) & mask).into()), limits.ipv4_prefix))
        }
        IpAddr::V6(a) if limits.ipv6_prefix < 128 => {
            let mask = u128::MAX.checked_shl(128 - u32::from(limits.ipv6_prefix)).unwrap_or(0);
            Some(ClientKey::Network(IpAddr::V6((u128::from(a) & mask).into()), limits.ipv6_prefix))
        }
        _ => None,
    };
    [Some(ClientKey::Address(ip)), network]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(per_user: u32, per_client: u32) -> LockoutConfig {
        LockoutConfig {
            max_failures_per_user: per_user,
            max_failures_per_client: per_client,
            window: Duration::from_secs(60),
            ..Default::default()
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn lockout_counts_and_resets() {
        let l = Lockout::default();
        let limits = limits(2, 3);
        let ip1 = ip("192.0.2.1");
        assert!(l.allowed("ADTEST\\bob", ip1, &limits).is_ok());
        l.failed("ADTEST\\bob", ip1, Evidence::Account, &limits);
        l.failed("adtest\\BOB", ip1, Evidence::Account, &limits);
        assert!(l.allowed("ADTEST\\bob", ip1, &limits).is_err(), "user limit");
        assert!(l.allowed("ADTEST\\alice", ip("192.0.2.2"), &limits).is_ok());
        l.failed("ADTEST\\carol", ip1, Evidence::Unproven, &limits);
        assert!(l.allowed("ADTEST\\alice", ip1, &limits).is_err(), "client limit");
        l.succeeded("ADTEST\\bob", &limits);
        assert!(l.allowed("ADTEST\\bob", ip("192.0.2.9"), &limits).is_ok());
    }

    #[test]
    fn lockout_cannot_be_dodged_by_spelling_the_domain_differently() {
        let l = Lockout::default();
        let limits = limits(3, 100);
        let ip1 = ip("192.0.2.1");
        l.failed("ADTEST\\bob", ip1, Evidence::Unproven, &limits);
        l.failed("ad.test\\Bob", ip1, Evidence::Unproven, &limits);
        l.failed("\\bob@ad.test", ip1, Evidence::Account, &limits);
        for spelling in ["ADTEST\\bob", "OTHER\\BOB", "\\bob", "bob@AD.TEST"] {
            assert!(l.allowed(spelling, ip("192.0.2.2"), &limits).is_err(), "{spelling} dodged the lockout");
        }
    }

    #[test]
    fn a_count_restarts_only_after_a_window_without_failures() {
        let l = Lockout::default();
        let limits = limits(3, 100);
        let (t0, ip1) = (Instant::now(), ip("192.0.2.1"));
        let at = |s: u64| t0 + Duration::from_secs(s);
        // Three failures 50 s apart: each within 60 s of the one before, so
        // AD counts three (a sliding window would have forgotten the first).
        for s in [0, 50, 100] {
            l.failed_at("bob", ip1, Evidence::Account, &limits, at(s));
        }
        assert!(l.allowed_at("bob", ip1, &limits, at(159)).is_err());
        assert!(l.allowed_at("bob", ip1, &limits, at(160)).is_ok(), "60 s after the last failure");
        // After the reset, a failure starts again at one.
        l.failed_at("bob", ip1, Evidence::Account, &limits, at(161));
        assert!(l.allowed_at("bob", ip1, &limits, at(162)).is_ok());
    }

    #[test]
    fn a_flood_of_unknown_names_cannot_reset_a_real_users_count() {
        let l = Lockout::default();
        let limits = LockoutConfig { max_entries: 100, ..limits(3, 1_000_000) };
        for _ in 0..3 {
            l.failed("ADTEST\\bob", ip("192.0.2.1"), Evidence::Account, &limits);
        }
        for i in 0..10_000u32 {
            let from = IpAddr::V6(((0x2001_0db8_u128 << 96) | (u128::from(i) << 64) | 1).into());
            l.failed(&format!("ADTEST\\guess{i}"), from, Evidence::Unproven, &limits);
        }
        assert!(l.allowed("ADTEST\\bob", ip("198.51.100.7"), &limits).is_err(), "bob's count was evicted");
        let t = l.lock();
        assert!(t.names.len() <= 100 && t.clients.len() <= 100 && t.accounts.len() <= 100);
        assert!(t.names.order.len() <= 2 * 100 + 1024, "the eviction queue grows: {}", t.names.order.len());
    }

    #[test]
    fn unknown_names_are_evicted_oldest_first() {
        let l = Lockout::default();
        let limits = LockoutConfig { max_entries: 100, ..limits(1, 1_000_000) };
        let c = ip("192.0.2.1");
        for i in 0..150 {
            l.failed(&format!("n{i}"), c, Evidence::Unproven, &limits);
        }
        // n0..n49 made room for n100..n149.
        assert!(l.allowed("n49", c, &limits).is_ok());
        assert!(l.allowed("n50", c, &limits).is_err());
        assert!(l.allowed("n149", c, &limits).is_err());
        // A counter that was bumped again keeps its place: age is its first failure.
        l.failed("n50", c, Evidence::Unproven, &limits);
        l.failed("n150", c, Evidence::Unproven, &limits);
        assert!(l.allowed("n50", c, &limits).is_ok());
        assert!(l.allowed("n51", c, &limits).is_err());
    }

    #[test]
    fn accounts_make_room_only_for_accounts_oldest_first() {
        let l = Lockout::default();
        let limits = LockoutConfig { max_entries: 100, ..limits(1, 1_000_000) };
        let c = ip("192.0.2.1");
        for i in 0..100 {
            l.failed(&format!("a{i}"), c, Evidence::Account, &limits);
        }
        for i in 0..500 {
            l.failed(&format!("u{i}"), c, Evidence::Unproven, &limits);
        }
        assert!((0..100).all(|i| l.allowed(&format!("a{i}"), c, &limits).is_err()), "unknown names evicted an account");
        l.failed("a100", c, Evidence::Account, &limits);
        assert!(l.allowed("a0", c, &limits).is_ok(), "the oldest account made room for a newer one");
        assert!(l.allowed("a1", c, &limits).is_err());
        assert!(l.allowed("a100", c, &limits).is_err());
    }

    #[test]
    fn an_unproven_name_becomes_an_account_with_its_count() {
        let l = Lockout::default();
        let limits = LockoutConfig { max_entries: 100, ..limits(3, 1_000_000) };
        let c = ip("192.0.2.1");
        l.failed("bob", c, Evidence::Unproven, &limits);
        l.failed("bob", c, Evidence::Unproven, &limits);
        l.failed("bob", c, Evidence::Account, &limits);
        for i in 0..1000 {
            l.failed(&format!("u{i}"), c, Evidence::Unproven, &limits);
        }
        assert!(l.allowed("bob", c, &limits).is_err(), "the two unproven failures were lost or bob was evicted");
    }

    #[test]
    fn a_name_that_logged_on_is_an_account_whatever_the_domain_says() {
        let l = Lockout::default();
        let limits = LockoutConfig { max_entries: 100, ..limits(2, 1_000_000) };
        let c = ip("192.0.2.1");
        l.succeeded("ADTEST\\bob", &limits);
        l.failed("bob", c, Evidence::Unproven, &limits);
        l.failed("bob", c, Evidence::Unproven, &limits);
        for i in 0..1000 {
            l.failed(&format!("u{i}"), c, Evidence::Unproven, &limits);
        }
        assert!(l.allowed("bob", c, &limits).is_err());
    }

    #[test]
    fn ipv6_clients_are_counted_per_64_and_per_address() {
        let l = Lockout::default();
        let limits = limits(1000, 3);
        for a in ["2001:db8:1:2::1", "2001:db8:1:2::2", "2001:db8:1:2:ffff:ffff:ffff:ffff"] {
            l.failed("x", ip(a), Evidence::Unproven, &limits);
        }
        let e = l.allowed("y", ip("2001:db8:1:2:abcd::9"), &limits).unwrap_err();
        assert!(e.contains("network 2001:db8:1:2::/64"), "{e}");
        assert!(l.allowed("y", ip("2001:db8:1:3::1"), &limits).is_ok(), "the next /64 is another client");
        // A shorter prefix, configured, takes in more.
        let wide = LockoutConfig { ipv6_prefix: 48, ..limits.clone() };
        let l = Lockout::default();
        for a in ["2001:db8:1:2::1", "2001:db8:1:3::1", "2001:db8:1:ffff::1"] {
            l.failed("x", ip(a), Evidence::Unproven, &wide);
        }
        assert!(l.allowed("y", ip("2001:db8:1:4::1"), &wide).unwrap_err().contains("2001:db8:1::/48"));
        assert!(l.allowed("y", ip("2001:db8:2::1"), &wide).is_ok());
        // /128 is per address alone.
        let exact = LockoutConfig { ipv6_prefix: 128, ..limits.clone() };
        let l = Lockout::default();
        for a in ["2001:db8::1", "2001:db8::2", "2001:db8::3"] {
            l.failed("x", ip(a), Evidence::Unproven, &exact);
        }
        assert!(l.allowed("y", ip("2001:db8::4"), &exact).is_ok());
        assert!(l.allowed("y", ip("2001:db8::5"), &exact).is_ok());
    }

    #[test]
    fn ipv4_clients_are_counted_per_address_unless_a_prefix_is_set() {
        let limits = limits(1000, 2);
        let l = Lockout::default();
        l.failed("x", ip("192.0.2.1"), Evidence::Unproven, &limits);
        l.failed("x", ip("192.0.2.2"), Evidence::Unproven, &limits);
        assert!(l.allowed("y", ip("192.0.2.3"), &limits).is_ok(), "IPv4 is per address by default");
        l.failed("x", ip("192.0.2.1"), Evidence::Unproven, &limits);
        assert!(l.allowed("y", ip("192.0.2.1"), &limits).unwrap_err().contains("from 192.0.2.1,"));
        let per24 = LockoutConfig { ipv4_prefix: 24, ..limits.clone() };
        let l = Lockout::default();
        l.failed("x", ip("192.0.2.1"), Evidence::Unproven, &per24);
        l.failed("x", ip("192.0.2.200"), Evidence::Unproven, &per24);
        assert!(l.allowed("y", ip("192.0.2.3"), &per24).unwrap_err().contains("network 192.0.2.0/24"));
        assert!(l.allowed("y", ip("192.0.3.3"), &per24).is_ok());
    }

    #[test]
    fn an_ipv4_client_on_a_dual_stack_listener_is_counted_as_ipv4() {
        let limits = limits(1000, 2);
        let l = Lockout::default();
        l.failed("x", ip("::ffff:192.0.2.1"), Evidence::Unproven, &limits);
        l.failed("x", ip("::ffff:192.0.2.2"), Evidence::Unproven, &limits);
        assert!(l.allowed("y", ip("::ffff:192.0.2.3"), &limits).is_ok(), "all of IPv4 shared one /64");
        l.failed("x", ip("192.0.2.1"), Evidence::Unproven, &limits);
        assert!(l.allowed("y", ip("::ffff:192.0.2.1"), &limits).is_err(), "mapped and plain are one address");
    }

    #[test]
    fn sweeping_forgets_expired_counters_and_their_queue_entries() {
        let l = Lockout::default();
        let limits = LockoutConfig { window: Duration::from_millis(1), ..limits(3, 3) };
        for i in 0..50 {
            l.failed(&format!("u{i}"), ip("192.0.2.1"), Evidence::Unproven, &limits);
        }
        std::thread::sleep(Duration::from_millis(5));
        l.sweep();
        let t = l.lock();
        assert_eq!((t.names.len(), t.names.order.len(), t.clients.len()), (0, 0, 0));
    }
}
