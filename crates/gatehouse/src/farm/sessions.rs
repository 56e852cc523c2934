//! The session table of one `[[site]]`: which backend a session is on, for
//! the sessions the protocols or the site tie to one backend (an Outlook
//! Anywhere virtual connection, a MAPI session, a client address).
//!
//! Keys come from clients (or, for MAPI, from the backend's answer), so the
//! table is bounded: at most `max_sessions` entries, each a fixed size, kept as
//! a salted digest (a MAPI session cookie is a credential of sorts, and never
//! sits here in clear). An entry with a request in flight (an open RPC channel)
//! is never evicted; the others leave `idle` after their last request ended,
//! and when the table is full the one idle longest makes room.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::state::{now_ms, MemberId};

/// What identifies a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionKey {
    /// An Outlook Anywhere virtual connection cookie (MS-RPCH).
    Rpc([u8; 16]),
    /// A MAPI over HTTP `MapiContext` cookie value.
    Mapi(Vec<u8>),
    /// A client address (`affinity = "source"`).
    Source(IpAddr),
}

type Digest = [u8; 16];

struct Entry {
    member: MemberId,
    /// Requests holding it (open channels); while any, it cannot leave.
    open: u32,
    /// When it was last released, and its place in `idle` (when `open` is 0).
    last: (u64, u64),
}

struct Table {
    entries: HashMap<Digest, Entry>,
    /// Entries with nothing open, oldest first.
    idle: BTreeMap<(u64, u64), Digest>,
    next: u64,
    max: usize,
    idle_ms: u64,
}

pub struct Sessions {
    table: Mutex<Table>,
    salt: [u8; 16],
}

impl Sessions {
    pub fn new(max: usize, idle: Duration) -> Sessions {
        let mut salt = [0u8; 16];
        let _ = getrandom::fill(&mut salt);
        Sessions {
            table: Mutex::new(Table {
                entries: HashMap::new(),
                idle: BTreeMap::new(),
                next: 0,
                max,
                idle_ms: idle.as_millis() as u64,
            }),
            salt,
        }
    }

    /// New bounds from a reloaded configuration (entries over a lowered
    /// bound leave as new ones come).
    pub fn configure(&self, max: usize, idle: Duration) {
        let mut t = self.lock();
        t.max = max;
        t.idle_ms = idle.as_millis() as u64;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn digest(&self, key: &SessionKey) -> Digest {
        use sha2::Digest as _;
        let mut h = sha2::Sha256::new();
        h.update(self.salt);
        match key {
            SessionKey::Rpc(c) => {
                h.update(b"rpc\0");
                h.update(c);
            }
            SessionKey::Mapi(v) => {
                h.update(b"mapi\0");
                h.update(v);
            }
            SessionKey::Source(ip) => {
                h.update(b"src\0");
                h.update(ip.to_string().as_bytes());
            }
        }
        let mut d = [0u8; 16];
        d.copy_from_slice(&h.finalize()[..16]);
        d
    }

    /// The backend of `key`'s session, if it has one that has not expired.
    pub fn lookup(&self, key: &SessionKey) -> Option<MemberId> {
        let d = self.digest(key);
        let mut t = self.lock();
        let now = now_ms();
        let idle_ms = t.idle_ms;
        let entry = t.entries.get(&d)?;
        if entry.open == 0 && entry.last.0 + idle_ms < now {
            let last = entry.last;
            t.idle.remove(&last);
            t.entries.remove(&d);
            return None;
        }
        Some(entry.member)
    }

    /// Ties `key`'s session to `member` (from now on), without holding it.
    pub fn bind(&self, key: &SessionKey, member: MemberId) {
        let d = self.digest(key);
        let mut t = self.lock();
        t.put(d, member, false);
    }

    /// Ties `key`'s session to `member` and holds it while the returned
    /// guard lives (a request, an open channel).
    pub fn hold(self: &Arc<Self>, key: &SessionKey, member: MemberId) -> Option<Hold> {
        let d = self.digest(key);
        let mut t = self.lock();
        t.put(d, member, true).then(|| Hold { sessions: self.clone(), digest: d })
    }

    fn release(&self, d: &Digest) {
        let mut t = self.lock();
        let now = now_ms();
        let seq = t.next;
        t.next += 1;
        let Some(e) = t.entries.get_mut(d) else { return };
        e.open = e.open.saturating_sub(1);
        if e.open == 0 {
            e.last = (now, seq);
            t.idle.insert((now, seq), *d);
        }
    }

    /// Drops the entries idle for longer than `idle`.
    pub fn sweep(&self) {
        let mut t = self.lock();
        let limit = now_ms().saturating_sub(t.idle_ms);
        while let Some((&(at, seq), &d)) = t.idle.iter().next() {
            if at >= limit {
                break;
            }
            t.idle.remove(&(at, seq));
            t.entries.remove(&d);
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }
}

impl Table {
    /// Inserts or moves an entry; `hold` counts one more open request. False
    /// when the table is full of held entries (the session then goes unbound).
    fn put(&mut self, d: Digest, member: MemberId, hold: bool) -> bool {
        let now = now_ms();
        let seq = self.next;
        self.next += 1;
        if let Some(e) = self.entries.get_mut(&d) {
            e.member = member;
            if e.open == 0 {
                let last = e.last;
                self.idle.remove(&last);
            }
            if hold {
                e.open += 1;
            }
            if e.open == 0 {
                e.last = (now, seq);
                self.idle.insert((now, seq), d);
            }
            return true;
        }
        while self.entries.len() >= self.max {
            let Some((&at, &oldest)) = self.idle.iter().next() else { return false };
            self.idle.remove(&at);
            self.entries.remove(&oldest);
        }
        let open = u32::from(hold);
        self.entries.insert(d, Entry { member, open, last: (now, seq) });
        if open == 0 {
            self.idle.insert((now, seq), d);
        }
        true
    }
}

/// A session held by a request in flight.
pub struct Hold {
    sessions: Arc<Sessions>,
    digest: Digest,
}

impl Drop for Hold {
    fn drop(&mut self) {
        self.sessions.release(&self.digest);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: MemberId = MemberId(1);
    const B: MemberId = MemberId(2);

    #[test]
    fn a_session_finds_its_backend_until_it_expires() {
        let s = Arc::new(Sessions::new(10, Duration::from_millis(30)));
        let k = SessionKey::Rpc(*b"virtual-conn-01!");
        assert_eq!(s.lookup(&k), None);
        let held = s.hold(&k, A).unwrap();
        assert_eq!(s.lookup(&k), Some(A), "the other channel finds it");
        std::thread::sleep(Duration::from_millis(60));
        s.sweep();
        assert_eq!(s.lookup(&k), Some(A), "an open channel keeps it whatever the time");
        drop(held);
        assert_eq!(s.lookup(&k), Some(A), "released just now");
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(s.lookup(&k), None, "expired {:?} after its last request", Duration::from_millis(30));
        s.bind(&SessionKey::Mapi(b"ctx-1".to_vec()), B);
        std::thread::sleep(Duration::from_millis(60));
        s.sweep();
        assert_eq!(s.len(), 0);
    }

    #[test]
    fn kinds_do_not_collide_and_a_session_can_move() {
        let s = Arc::new(Sessions::new(10, Duration::from_secs(60)));
        s.bind(&SessionKey::Mapi(b"0123456789abcdef".to_vec()), A);
        assert_eq!(s.lookup(&SessionKey::Rpc(*b"0123456789abcdef")), None);
        s.bind(&SessionKey::Source("192.0.2.7".parse().unwrap()), A);
        s.bind(&SessionKey::Source("192.0.2.7".parse().unwrap()), B);
        assert_eq!(s.lookup(&SessionKey::Source("192.0.2.7".parse().unwrap())), Some(B));
        assert_eq!(s.len(), 2);
    }

    /// A flood of new sessions cannot grow the table, and cannot push out a
    /// session with a channel open.
    #[test]
    fn the_table_is_bounded_and_open_sessions_stay() {
        let s = Arc::new(Sessions::new(100, Duration::from_secs(3600)));
        let open = SessionKey::Rpc(*b"an-open-session!");
        let _held = s.hold(&open, A).unwrap();
        for i in 0..10_000u32 {
            s.bind(&SessionKey::Mapi(i.to_be_bytes().to_vec()), B);
        }
        assert_eq!(s.len(), 100);
        assert_eq!(s.lookup(&open), Some(A));
        assert_eq!(s.lookup(&SessionKey::Mapi(9_999u32.to_be_bytes().to_vec())), Some(B), "the newest stays");
        assert_eq!(s.lookup(&SessionKey::Mapi(0u32.to_be_bytes().to_vec())), None, "the oldest made room");
        // Full of held sessions: a new one goes unbound rather than evict one.
        let full = Arc::new(Sessions::new(2, Duration::from_secs(3600)));
        let _a = full.hold(&SessionKey::Rpc([1; 16]), A).unwrap();
        let _b = full.hold(&SessionKey::Rpc([2; 16]), A).unwrap();
        assert!(full.hold(&SessionKey::Rpc([3; 16]), B).is_none());
        assert_eq!(full.lookup(&SessionKey::Rpc([1; 16])), Some(A));
    }
}
