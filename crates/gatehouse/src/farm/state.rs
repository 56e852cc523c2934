//! What gatehouse knows about one backend of one site: whether its checks pass,
//! whether requests have taken it out (passive ejection), whether it is
//! drained, and how many requests it has in flight. Kept across reloads for a
//! backend that stays (the [`Registry`]), so that a reload neither forgets a
//! dead backend nor undrains one.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::config::Health;

/// A backend's identity across reloads, sites and gatehouse processes: a
/// digest of its origin and TLS name, so that a session table entry or a
/// signed cookie names the same server after the file is reordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MemberId(pub u64);

impl MemberId {
    pub fn of(backend: &crate::config::Backend) -> MemberId {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        h.update(backend.origin.as_bytes());
        h.update([0]);
        if let Some(tls) = &backend.tls {
            h.update(tls.server_name.as_bytes());
        }
        let d = h.finalize();
        let mut first = [0u8; 8];
        first.copy_from_slice(&d[..8]);
        MemberId(u64::from_be_bytes(first))
    }
}

/// Milliseconds on the process's monotonic clock.
pub(crate) fn now_ms() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_millis() as u64 + 1
}

/// One backend of one site.
pub struct MemberState {
    pub site: Arc<str>,
    pub origin: Arc<str>,
    in_flight: AtomicUsize,
    /// What the active checks say (true until they say otherwise).
    up: AtomicBool,
    /// Whether any check has answered since the backend was added.
    checked: AtomicBool,
    passes: AtomicU32,
    fails: AtomicU32,
    connect_failures: AtomicU32,
    gateway_errors: AtomicU32,
    /// Until when requests took it out ([`now_ms`]; 0: not ejected).
    ejected_until: AtomicU64,
    /// `gatehouse backend drain` (the configuration's `drain` is the farm's).
    drained: AtomicBool,
    /// The last change and why, for `backend status`.
    last: Mutex<(Instant, String)>,
    /// The status of the last response it gave a client's request, and when
    /// ([`now_ms`]), for the status page; 0 until it answers.
    last_answer: AtomicU64,
}

impl MemberState {
    pub fn new(site: &str, origin: &str) -> MemberState {
        MemberState {
            site: site.into(),
            origin: origin.into(),
            in_flight: AtomicUsize::new(0),
            last_answer: AtomicU64::new(0),
            up: AtomicBool::new(true),
            checked: AtomicBool::new(false),
            passes: AtomicU32::new(0),
            fails: AtomicU32::new(0),
            connect_failures: AtomicU32::new(0),
            gateway_errors: AtomicU32::new(0),
            ejected_until: AtomicU64::new(0),
            drained: AtomicBool::new(false),
            last: Mutex::new((Instant::now(), "added".into())),
        }
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Counts a request in flight until the lease drops.
    pub fn lease(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }

    /// May take requests: its checks pass and requests have not taken it out.
    pub fn healthy(&self) -> bool {
        self.up.load(Ordering::Acquire) && now_ms() >= self.ejected_until.load(Ordering::Acquire)
    }

    pub fn checks_pass(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    pub fn ejected_for(&self) -> Option<Duration> {
        let until = self.ejected_until.load(Ordering::Acquire);
        let now = now_ms();
        (until > now).then(|| Duration::from_millis(until - now))
    }

    pub fn checked(&self) -> bool {
        self.checked.load(Ordering::Acquire)
    }

    pub fn drained(&self) -> bool {
        self.drained.load(Ordering::Acquire)
    }

    /// Sets the drain of `gatehouse backend drain`; true if it changed.
    pub fn set_drained(&self, drained: bool) -> bool {
        let changed = self.drained.swap(drained, Ordering::AcqRel) != drained;
        if changed {
            self.note(if drained { "drained (control socket)" } else { "undrained (control socket)" });
        }
        changed
    }

    pub fn last_change(&self) -> (Duration, String) {
        let last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        (last.0.elapsed(), last.1.clone())
    }

    fn note(&self, why: &str) {
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = (Instant::now(), why.to_owned());
    }

    /// One active check's result. The first result of a new backend decides
    /// at once (it was only assumed up); later ones take `fall` failures in a
    /// row to go down and `rise` passes to come back.
    pub fn check_result(&self, result: Result<(), String>, h: &Health) {
        let first = !self.checked.swap(true, Ordering::AcqRel);
        match result {
            Ok(()) => {
                self.fails.store(0, Ordering::Relaxed);
                let passes = self.passes.fetch_add(1, Ordering::Relaxed) + 1;
                if !self.up.load(Ordering::Acquire) && (first || passes >= h.rise) {
                    self.up.store(true, Ordering::Release);
                    self.note(&format!("up: {passes} checks passed"));
                    tracing::info!(site = %self.site, backend = %self.origin, passes, "backend up: its health checks pass");
                }
            }
            Err(why) => {
                self.passes.store(0, Ordering::Relaxed);
                let fails = self.fails.fetch_add(1, Ordering::Relaxed) + 1;
                if self.up.load(Ordering::Acquire) && (first || fails >= h.fall) {
                    self.up.store(false, Ordering::Release);
                    self.note(&format!("down: {why}"));
                    tracing::warn!(site = %self.site, backend = %self.origin, fails, cause = %why, "backend down: no new requests until its health checks pass");
                } else {
                    tracing::debug!(site = %self.site, backend = %self.origin, fails, cause = %why, "health check failed");
                }
            }
        }
    }

    /// A request could not open a connection to it.
    pub fn connect_failed(&self, why: &str, h: &Health) {
        let n = self.connect_failures.fetch_add(1, Ordering::Relaxed) + 1;
        if h.eject_connect_failures > 0 && n >= h.eject_connect_failures {
            self.connect_failures.store(0, Ordering::Relaxed);
            self.eject(h, &format!("{n} failed connect(s): {why}"));
        }
    }

    pub fn connect_ok(&self) {
        if self.connect_failures.load(Ordering::Relaxed) != 0 {
            self.connect_failures.store(0, Ordering::Relaxed);
        }
    }

    /// The status of an answer; true if it counts against the backend (502,
    /// 503, 504: the server or what is behind it failing, not the
    /// application's own answer, which for EWS is 500 on every SOAP fault).
    /// `others_healthy`: ejecting it would leave the site a backend to use.
    pub fn answered(&self, status: u16, h: &Health, others_healthy: bool) {
        self.last_answer.store((now_ms() << 16) | u64::from(status), Ordering::Relaxed);
        if !matches!(status, 502..=504) {
            if self.gateway_errors.load(Ordering::Relaxed) != 0 {
                self.gateway_errors.store(0, Ordering::Relaxed);
            }
            return;
        }
        let n = self.gateway_errors.fetch_add(1, Ordering::Relaxed) + 1;
        if h.eject_gateway_errors > 0 && n >= h.eject_gateway_errors && others_healthy {
            self.gateway_errors.store(0, Ordering::Relaxed);
            self.eject(h, &format!("{n} answers of 502, 503 or 504 in a row"));
        }
    }

    fn eject(&self, h: &Health, why: &str) {
        let until = now_ms() + h.eject_for.as_millis() as u64;
        let before = self.ejected_until.swap(until, Ordering::AcqRel);
        if before <= now_ms() {
            self.note(&format!("ejected for {}: {why}", humantime::format_duration(h.eject_for)));
            tracing::warn!(site = %self.site, backend = %self.origin, cause = %why, ejected_for = %humantime::format_duration(h.eject_for), "backend ejected: no new requests");
        }
    }

    /// For `backend status`: up, down or ejected, and drained.
    /// The last response's status and how long ago, if it answered yet.
    pub fn last_answer(&self) -> Option<(u16, Duration)> {
        let v = self.last_answer.load(Ordering::Relaxed);
        (v != 0).then(|| ((v & 0xffff) as u16, Duration::from_millis(now_ms().saturating_sub(v >> 16))))
    }

    pub fn describe(&self, drained_by_config: bool) -> String {
        let mut words = vec![if !self.checks_pass() {
            "down".to_owned()
        } else if let Some(left) = self.ejected_for() {
            format!("ejected ({}s left)", left.as_secs())
        } else {
            "up".to_owned()
        }];
        if drained_by_config {
            words.push("drained by the configuration".into());
        } else if self.drained() {
            words.push("drained".into());
        }
        words.push(format!("{} in flight", self.in_flight()));
        let (ago, why) = self.last_change();
        words.push(format!("last change {}s ago: {why}", ago.as_secs()));
        words.join(", ")
    }
}

/// A request in flight on a backend; dropping it counts it off.
pub struct InFlight(Arc<MemberState>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A backend of a site, by the site's name.
type SiteMember = (Arc<str>, MemberId);

/// Farm state that outlives a configuration generation: each (site, backend)'s
/// [`MemberState`], each `[[site]]`'s session table, and the affinity key made
/// at start when the file gives none.
pub struct Registry {
    members: Mutex<HashMap<SiteMember, Arc<MemberState>>>,
    sessions: Mutex<HashMap<Arc<str>, Arc<super::sessions::Sessions>>>,
    pub generated_key: Arc<[u8]>,
}

impl Default for Registry {
    fn default() -> Self {
        let mut key = [0u8; 32];
        // Without randomness there is no key worth signing with: a fixed one
        // would let anyone forge cookies, so this is fatal.
        if let Err(e) = getrandom::fill(&mut key) {
            panic!("no randomness for the affinity key: {e}");
        }
        Registry { members: Mutex::default(), sessions: Mutex::default(), generated_key: Arc::from(key.as_slice()) }
    }
}

impl Registry {
    /// The state of `origin` on `site`, the one it had if it was there before.
    pub fn member(&self, site: &str, id: MemberId, origin: &str) -> Arc<MemberState> {
        let mut members = self.members.lock().unwrap_or_else(|e| e.into_inner());
        members.entry((site.into(), id)).or_insert_with(|| Arc::new(MemberState::new(site, origin))).clone()
    }

    /// The session table of a `[[site]]` (and every site its preset made).
    pub fn sessions(&self, family: &str, settings: &crate::config::AffinitySettings) -> Arc<super::sessions::Sessions> {
        let mut all = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        let table = all
            .entry(family.into())
            .or_insert_with(|| Arc::new(super::sessions::Sessions::new(settings.max_sessions, settings.idle)));
        table.configure(settings.max_sessions, settings.idle);
        table.clone()
    }

    /// Forgets what the serving configuration no longer has.
    pub fn retain(&self, sites: &[(Arc<str>, MemberId)], families: &[Arc<str>]) {
        self.members.lock().unwrap_or_else(|e| e.into_inner()).retain(|k, _| sites.contains(k));
        self.sessions.lock().unwrap_or_else(|e| e.into_inner()).retain(|k, _| families.contains(k));
    }

    /// Drops expired sessions; run periodically.
    pub fn sweep(&self) {
        let tables: Vec<_> = self.sessions.lock().unwrap_or_else(|e| e.into_inner()).values().cloned().collect();
        for t in tables {
            t.sweep();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn health() -> Health {
        let mut h = Health::off();
        h.rise = 2;
        h.fall = 3;
        h.eject_connect_failures = 2;
        h.eject_gateway_errors = 3;
        h.eject_for = Duration::from_secs(60);
        h
    }

    #[test]
    fn the_first_check_decides_then_rise_and_fall_count() {
        let (h, m) = (health(), MemberState::new("s", "http://a:80"));
        assert!(m.healthy(), "assumed up until checked");
        m.check_result(Err("refused".into()), &h);
        assert!(!m.healthy(), "a new backend's first failed check takes it out at once");
        m.check_result(Ok(()), &h);
        assert!(!m.healthy(), "one pass of rise 2");
        m.check_result(Ok(()), &h);
        assert!(m.healthy());
        m.check_result(Err("x".into()), &h);
        m.check_result(Err("x".into()), &h);
        assert!(m.healthy(), "two failures of fall 3");
        m.check_result(Ok(()), &h);
        m.check_result(Err("x".into()), &h);
        m.check_result(Err("x".into()), &h);
        assert!(m.healthy(), "a pass in between starts the count again");
        m.check_result(Err("x".into()), &h);
        assert!(!m.healthy());
        assert!(m.describe(false).starts_with("down"), "{}", m.describe(false));
    }

    #[test]
    fn requests_eject_a_backend_for_a_while() {
        let (h, m) = (health(), MemberState::new("s", "http://a:80"));
        m.connect_failed("refused", &h);
        assert!(m.healthy(), "one of two");
        m.connect_ok();
        m.connect_failed("refused", &h);
        assert!(m.healthy(), "a connect in between starts the count again");
        m.connect_failed("refused", &h);
        assert!(!m.healthy());
        assert!(m.ejected_for().is_some_and(|d| d > Duration::from_secs(50)));
        assert!(m.checks_pass(), "ejection is not a failed check");
    }

    #[test]
    fn only_gateway_errors_in_a_row_count_and_never_the_last_backend() {
        let (h, m) = (health(), MemberState::new("s", "http://a:80"));
        for status in [500, 500, 500, 404, 401] {
            m.answered(status, &h, true);
        }
        assert!(m.healthy(), "application answers (EWS faults are 500) do not count");
        m.answered(503, &h, true);
        m.answered(502, &h, true);
        m.answered(200, &h, true);
        m.answered(503, &h, true);
        m.answered(504, &h, true);
        assert!(m.healthy(), "an answer in between starts again");
        m.answered(503, &h, false);
        assert!(m.healthy(), "never the last healthy backend");
        m.answered(503, &h, true);
        m.answered(503, &h, true);
        m.answered(503, &h, true);
        assert!(!m.healthy());
    }

    #[test]
    fn state_is_kept_per_site_and_backend() {
        let r = Registry::default();
        let b = crate::config::Backend { origin: "http://a:80".into(), tls: None, host: "a".into(), port: 80 };
        let id = MemberId::of(&b);
        let one = r.member("s", id, &b.origin);
        one.set_drained(true);
        assert!(r.member("s", id, &b.origin).drained(), "the same state for the same site and backend");
        assert!(!r.member("t", id, &b.origin).drained(), "another site's is its own");
        r.retain(&[], &[]);
        assert!(!r.member("s", id, &b.origin).drained(), "forgotten once no configuration has it");
        let mut other = b.clone();
        other.origin = "http://b:80".into();
        assert_ne!(MemberId::of(&other), id);
        assert_eq!(r.generated_key.len(), 32);
        assert_ne!(Registry::default().generated_key, r.generated_key, "a fresh key per process");
    }
}
