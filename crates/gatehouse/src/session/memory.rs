//! Sessions in the process's memory: lost on restart (every browser signs in
//! again), not shared between gatehouse instances.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::SystemTime;

use super::{names_match, Id, Pending, Record, Store, Summary};

pub struct Memory<U> {
    sessions: Mutex<HashMap<Id, Entry<U>>>,
    capacity: AtomicUsize,
}

struct Entry<U> {
    record: Record<U>,
    last_used: SystemTime,
}

impl<U> Entry<U> {
    fn live(&self, now: SystemTime) -> bool {
        now < self.record.ends && self.last_used + self.record.idle > now
    }
}

impl<U> Memory<U> {
    pub fn new(capacity: usize) -> Memory<U> {
        Memory { sessions: Mutex::new(HashMap::new()), capacity: AtomicUsize::new(capacity) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Id, Entry<U>>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl<U> Default for Memory<U> {
    fn default() -> Self {
        Memory::new(100_000)
    }
}

impl<U: Clone + Send + Sync + 'static> Store<U> for Memory<U> {
    fn insert(&self, id: Id, record: Record<U>) -> Pending<'_, ()> {
        let mut sessions = self.lock();
        let now = SystemTime::now();
        if sessions.len() >= self.capacity.load(Ordering::Relaxed) {
            sessions.retain(|_, e| e.live(now));
        }
        // Still full of live sessions: the hundredth unused longest makes
        // room, at once, so that a full table costs one pass per hundredth
        // of its size rather than one per sign-in. Sessions exist only after
        // a good password, so this takes a table full of real sign-ins,
        // which `max_sessions` is sized above.
        let capacity = self.capacity.load(Ordering::Relaxed).max(1);
        if sessions.len() >= capacity {
            let mut by_use: Vec<(SystemTime, Id)> = sessions.iter().map(|(id, e)| (e.last_used, *id)).collect();
            let n = (sessions.len() + 1 - capacity).max(capacity / 100).min(by_use.len());
            if n > 0 && n < by_use.len() {
                by_use.select_nth_unstable(n - 1);
            }
            for (_, id) in by_use.iter().take(n) {
                sessions.remove(id);
            }
            tracing::warn!(ended = n, "sessions: max_sessions reached; the sessions unused longest were ended");
        }
        sessions.insert(id, Entry { record, last_used: now });
        Box::pin(async { Ok(()) })
    }

    fn touch(&self, id: Id, now: SystemTime) -> Pending<'_, Option<Record<U>>> {
        let mut sessions = self.lock();
        let found = match sessions.get_mut(&id) {
            Some(e) if e.live(now) => {
                e.last_used = now;
                Some(e.record.clone())
            }
            Some(_) => {
                sessions.remove(&id);
                None
            }
            None => None,
        };
        Box::pin(async { Ok(found) })
    }

    fn remove(&self, id: Id) -> Pending<'_, bool> {
        let removed = self.lock().remove(&id).is_some();
        Box::pin(async move { Ok(removed) })
    }

    fn revoke(&self, who: String) -> Pending<'_, usize> {
        let mut sessions = self.lock();
        let before = sessions.len();
        sessions.retain(|_, e| !names_match(&who, &e.record.who));
        let n = before - sessions.len();
        Box::pin(async move { Ok(n) })
    }

    fn list(&self, now: SystemTime) -> Pending<'_, Vec<Summary>> {
        let mut out: Vec<Summary> = self
            .lock()
            .values()
            .filter(|e| e.live(now))
            .map(|e| Summary {
                who: e.record.who.clone(),
                created: e.record.created,
                last_used: e.last_used,
                ends: e.record.ends,
                public: e.record.public,
                second_factor: e.record.second_factor.is_some(),
            })
            .collect();
        out.sort_by(|a, b| a.who.cmp(&b.who).then(a.created.cmp(&b.created)));
        Box::pin(async { Ok(out) })
    }

    fn sweep(&self, now: SystemTime) {
        self.lock().retain(|_, e| e.live(now));
    }

    fn set_capacity(&self, max: usize) {
        self.capacity.store(max, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn record(who: &str, now: SystemTime, idle: u64, life: u64) -> Record<u32> {
        Record {
            who: who.into(),
            user: 7,
            created: now,
            ends: now + Duration::from_secs(life),
            idle: Duration::from_secs(idle),
            public: false,
            second_factor: None,
        }
    }

    fn run<T>(p: Pending<'_, T>) -> T {
        tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(p).unwrap()
    }

    #[test]
    fn idle_time_restarts_with_each_use_and_the_end_stays() {
        let store = Memory::new(10);
        let t0 = SystemTime::now();
        run(store.insert([1; 32], record("ADTEST\\alice", t0, 60, 100)));
        let at = |s: u64| t0 + Duration::from_secs(s);
        assert!(run(store.touch([1; 32], at(50))).is_some());
        assert!(run(store.touch([1; 32], at(99))).is_some(), "used at 50: idle until 110");
        assert!(run(store.touch([1; 32], at(100))).is_none(), "the absolute end");
        assert!(run(store.touch([1; 32], at(10))).is_none(), "an ended session is gone");
        run(store.insert([2; 32], record("ADTEST\\bob", t0, 60, 1000)));
        assert!(run(store.touch([2; 32], at(61))).is_none(), "idle for 61 s");
        assert!(run(store.touch([3; 32], at(1))).is_none(), "no such session");
    }

    #[test]
    fn remove_revoke_list_and_capacity() {
        let store = Memory::new(3);
        let t0 = SystemTime::now();
        run(store.insert([1; 32], record("ADTEST\\alice", t0, 60, 100)));
        run(store.insert([2; 32], record("ADTEST\\alice", t0, 60, 100)));
        run(store.insert([3; 32], record("ADTEST\\bob", t0, 60, 100)));
        assert_eq!(run(store.list(t0)).len(), 3);
        assert_eq!(run(store.revoke("alice".into())), 2);
        assert!(run(store.touch([1; 32], t0)).is_none() && run(store.touch([2; 32], t0)).is_none());
        assert!(run(store.remove([3; 32])));
        assert!(!run(store.remove([3; 32])));
        // Full: the one unused longest goes (a hundredth of 3, at least one).
        for i in 10..13u8 {
            run(store.insert([i; 32], record("u", t0, 600, 1000)));
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(run(store.touch([10; 32], SystemTime::now())).is_some(), "used last now");
        run(store.insert([13; 32], record("u", t0, 600, 1000)));
        assert!(run(store.touch([11; 32], SystemTime::now())).is_none(), "the one unused longest");
        assert_eq!(run(store.list(SystemTime::now())).len(), 3);
        store.sweep(t0 + Duration::from_secs(2000));
        assert!(run(store.list(t0)).is_empty());
    }

    #[test]
    fn a_full_table_makes_room_a_hundredth_at_a_time() {
        let store = Memory::new(1000);
        let t0 = SystemTime::now();
        for i in 0..1000u32 {
            let mut id = [0u8; 32];
            id[..4].copy_from_slice(&i.to_be_bytes());
            run(store.insert(id, record("u", t0, 600, 1000)));
            // Used in order: 0 is the one unused longest.
            run(store.touch(id, t0 + Duration::from_millis(u64::from(i))));
        }
        run(store.insert([0xff; 32], record("u", t0, 600, 1000)));
        let left = run(store.list(t0 + Duration::from_secs(2))).len();
        assert_eq!(left, 991, "ten made room, the new one came in");
        let id = |i: u32| {
            let mut id = [0u8; 32];
            id[..4].copy_from_slice(&i.to_be_bytes());
            id
        };
        assert!(run(store.touch(id(9), t0 + Duration::from_secs(3))).is_none(), "among the ten unused longest");
        assert!(run(store.touch(id(10), t0 + Duration::from_secs(3))).is_some());
    }
}
