//! Kerberos for gatehouse's service account, through MIT GSSAPI: accepting
//! clients' tickets at the edge, and Kerberos Constrained Delegation, i.e.
//! tickets for a backend *as a user*, with the service account's own key and no
//! password of the user's.
//!
//! S4U2Self (`gss_acquire_cred_impersonate_name`) gives the service a ticket to
//! itself in the user's name; S4U2Proxy (performed by `gss_init_sec_context` with
//! that impersonated credential) turns it into a ticket for the backend's SPN,
//! if the account may delegate to it. A client that signed in with a
//! forwardable Kerberos ticket needs no S4U2Self: MIT turns the accepted ticket
//! into the S4U2Proxy evidence ([`Delegator::accept`]). This crate drives MIT
//! safely:
//!
//! - the service credentials come from the keytab into memory caches of their
//!   own (`ffi.rs`), never from the process's default cache;
//! - the impersonated credential is checked to hold the Kerberos mechanism and
//!   the user's name (MIT otherwise falls back to the default credential: a
//!   request meant for bob could reach the backend as alice);
//! - accepted tickets are checked for their SPN, and their authenticators kept
//!   in a replay cache in memory;
//! - AES only, unless RC4 is allowed (`enctypes.rs`): for the tickets it
//!   accepts, the session keys it asks the KDC for and the keytab's keys its
//!   TGT comes from.
//!
//! A user may be impersonated by account name (`alice@AD.TEST`) or by UPN, sent
//! as an enterprise name that AD resolves across the forest. The UPN is read
//! from the PAC of an S4U2Self ticket to the service itself ([`Delegator::upn`]):
//! the domain controller is the directory, no LDAP connection is needed.
//!
//! Names for SIDs and SIDs for names come from the directory
//! ([`Directory`], `directory.rs`): LDAP to a domain controller, bound with
//! the same service credential and integrity-protected.
//!
//! GSSAPI calls that may talk to the KDC block: callers run them off their
//! async workers. Accepting a client's ticket is not one of them: the
//! service's own credentials come from the KDC in the background
//! ([`Delegator::start`], `refresh.rs`), never because of a client's token.

#![deny(unsafe_code)]

mod codes;
// Public for the memory simulation (`examples/cache_memory.rs`), which must
// measure this very structure rather than a copy of it.
pub mod cred_cache;
mod directory;
mod enctypes;
mod error;
mod explain;
// The one place with `unsafe` (MIT's C API); every other module may not.
#[allow(unsafe_code)]
mod ffi;
mod gss_checksum;
mod logon;
mod logon_info;
mod observe;
mod pac;
mod password;
mod refresh;
mod replay;
mod spn;

pub use cred_cache::CacheStats;
pub use directory::{Directory, Entry, EntryKind};
pub use error::{Error, Kind};
pub use explain::{advice, explain, Explanation};
pub use ffi::release_free_memory;
/// The GSS checksum reader's fuzz body (`fuzz/fuzz_targets/gss_checksum.rs`).
pub use gss_checksum::fuzz as fuzz_gss_checksum;
pub use logon::Logon;
pub use logon_info::{fuzz_logon_info, parse_logon_info, GroupRid, GroupSid, LogonInfo, LogonInfoError, Sid};
pub use observe::{KdcObserver, KdcRequest};
pub use pac::{parse_upn_dns_info, PacError, UpnDnsInfo};
pub use password::{change_password, Changed};
pub use spn::qualify_spn;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use libgssapi::context::{ClientCtx, CtxFlags};
use libgssapi::credential::{Cred, CredUsage};
use libgssapi::name::Name;
use libgssapi::oid::{OidSet, GSS_MECH_KRB5, GSS_NT_KRB5_PRINCIPAL};

/// Whom to impersonate.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum User {
    /// `alice@AD.TEST`: the account name in the service account's realm.
    Account(String),
    /// The user's UPN (`carol.jones@corp.example`), sent to the KDC as an
    /// enterprise name; `account` is the same user as [`User::Account`], which
    /// the KDC may answer with instead.
    Upn { upn: String, account: String },
}

impl User {
    fn name(&self) -> &str {
        match self {
            User::Account(a) => a,
            User::Upn { upn, .. } => upn,
        }
    }
}

impl fmt::Display for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What the backend expects in `Authorization: Negotiate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Token {
    /// SPNEGO-wrapped (IIS and most servers).
    Spnego,
    /// The raw Kerberos AP-REQ (servers that want no SPNEGO wrapper).
    Kerberos,
}

fn gss(step: &str, e: libgssapi::error::Error) -> Error {
    Error::gss(step, e)
}

/// A client's Kerberos ticket, accepted.
#[derive(Debug, Clone)]
pub struct Accepted {
    /// The client principal, e.g. `alice@AD.TEST`.
    pub client: String,
    /// The AP-REP for mutual authentication, to return to the client.
    pub mutual: Vec<u8>,
    /// The client's authenticator carried channel bindings, and they matched.
    pub channel_bound: bool,
    /// The ticket was forwardable: S4U2Proxy for this user needs no S4U2Self.
    pub evidence: bool,
    /// The user's SID and groups from the ticket's verified PAC. None when the
    /// ticket had no verified PAC or its logon information did not parse
    /// (logged): the caller then asks [`Delegator::logon_info`].
    pub logon: Option<LogonInfo>,
}

/// The service account: accepts clients' tickets, and delegates for users.
///
/// A credential for each user (impersonated by S4U2Self, or the user's own
/// forwardable ticket as evidence) is kept until shortly before it expires: MIT
/// keeps the S4U2Proxy tickets inside it, so in steady state a token costs no
/// KDC round trip. One S4U2Self per user is in flight at a time; concurrent
/// requests for the same user wait for it.
pub struct Delegator {
    principal: String,
    keytab: String,
    realm: String,
    /// The service account's TGT, for S4U2Self. Renewed in the background; the
    /// blocking delegation paths get it themselves when there is none (before
    /// the first round, or after it stopped working).
    service: Mutex<Option<Service>>,
    /// Held while the service's TGT is being asked for (one AS exchange at a
    /// time), with the last failure: callers that waited for a failed attempt
    /// fail with it at once instead of each trying again in turn.
    service_flight: Mutex<Option<(Instant, Error)>>,
    /// For accepting tickets (clients', and our own S4U2Self tickets for their
    /// PAC). Only ever replaced by the background thread (or, with no thread,
    /// read from the keytab alone): the accept path never waits for a KDC.
    acceptor: Mutex<Option<Acceptor>>,
    /// The acceptor's keys, read from the keytab at start and on
    /// [`Delegator::reload_keytab`]: None until a read succeeded (MIT then
    /// reads the file itself, and says what is wrong with it).
    keys: Mutex<Option<Arc<ffi::MemoryKeytab>>>,
    /// The background thread's lifeline: dropped with the delegator, it ends
    /// the thread's wait, and the thread.
    refresher: Mutex<Option<mpsc::Sender<()>>>,
    /// Delegated credentials, bounded (`with_cache_size`), LRU.
    cache: Mutex<cred_cache::Lru<User, Cached>>,
    /// account principal -> (UPN, valid until)
    upns: Mutex<HashMap<String, (String, Instant)>>,
    /// What the domain said about each user's logon (S4U2Self): their
    /// groups, or that it refused them.
    logons: Mutex<HashMap<User, Known>>,
    logon_refresh: Duration,
    /// With no KDC answering, a logon read this long past its refresh time
    /// still stands (the KDC being down must not lock everyone out).
    logon_grace: Duration,
    /// One lock per user while the S4U2Self for their groups is in flight
    /// (not `flights`: that one is taken inside, by `credential`).
    logon_flights: Mutex<HashMap<User, Arc<Mutex<()>>>>,
    /// One lock per user while its S4U2Self is in flight.
    flights: Mutex<HashMap<User, Arc<Mutex<()>>>>,
    replays: replay::Cache,
    /// The encryption types used: AES, and RC4 when allowed.
    enctypes: enctypes::Policy,
    stats: Stats,
    /// Told of each KDC request (gatehouse's metrics), when set.
    observer: Option<Arc<dyn KdcObserver>>,
}

/// The domain's last word on a user's logon.
enum Known {
    Logon(Arc<Logon>),
    /// The KDC refused the user's S4U2Self (disabled, expired, locked out,
    /// deleted); asked again after the refresh time.
    Refused(Error, Instant),
}

struct Service {
    cred: ffi::ServiceCred,
    refresh_at: Instant,
    expires: Instant,
}

#[derive(Clone)]
struct Acceptor {
    cred: Arc<ffi::AcceptorCred>,
    /// Usage "both": MIT turns forwardable tickets into S4U2Proxy evidence.
    both: bool,
    /// For "both": the same keys, accept only, for a client whose delegated
    /// credential is already cached (evidence would be built and thrown away).
    plain: Option<Arc<ffi::AcceptorCred>>,
    /// For "both": the memory cache holding its TGT, so that new keys (a
    /// reload) get a credential with the same TGT and no KDC exchange.
    ccache: Option<String>,
    /// For "both": when the background renews it, and when its TGT is gone.
    refresh_at: Option<Instant>,
    expires: Option<Instant>,
}

impl Acceptor {
    fn plain(cred: Arc<ffi::AcceptorCred>) -> Acceptor {
        Acceptor { cred, both: false, plain: None, ccache: None, refresh_at: None, expires: None }
    }

    fn both_valid(&self, now: Instant) -> bool {
        self.both && self.expires.is_none_or(|e| e > now)
    }
}

/// The credential a ticket is accepted with.
struct Choice {
    cred: Arc<ffi::AcceptorCred>,
    /// When `cred` is the accept-only twin: the "both" credential, for a
    /// ticket that turns out not to be the likely user's.
    both: Option<Arc<ffi::AcceptorCred>>,
    /// `cred` turns a forwardable ticket into S4U2Proxy evidence.
    builds_evidence: bool,
}

struct Cached {
    cred: Cred,
    until: Instant,
    /// From the client's own ticket (no S4U2Self was made).
    evidence: bool,
}

/// Counters for metrics and tests.
#[derive(Default)]
pub struct Stats {
    pub cache_hits: AtomicU64,
    /// Impersonated credentials not in the cache: each costs an S4U2Self.
    pub s4u2self: AtomicU64,
    /// Clients' forwardable tickets kept as S4U2Proxy evidence.
    pub evidence: AtomicU64,
    /// Tickets accepted without building evidence, because the client's
    /// delegated credential was already cached.
    pub evidence_skipped: AtomicU64,
    /// PAC reads for a user's UPN (each needs the user's S4U2Self credential).
    pub upn_lookups: AtomicU64,
    /// PAC reads for a user's groups (each a fresh S4U2Self).
    pub logon_lookups: AtomicU64,
    /// Passwords checked with the KDC (Basic at the edge).
    pub password_checks: AtomicU64,
    /// Clients' tickets accepted on a worker's long-lived krb5 context
    /// (no evidence wanted, the common case: `ffi::accept_quick`), and those
    /// it left to MIT's GSS layer (a refusal, or an unusual token).
    pub quick: AtomicU64,
    pub quick_declined: AtomicU64,
    /// Clients' tickets accepted, and refused.
    pub accepted: AtomicU64,
    pub refused: AtomicU64,
    pub errors: AtomicU64,
    /// Failures by [`Error::code_name`] (`KDC_ERR_BADOPTION`, `KRB5_KDC_UNREACH`).
    errors_by_code: Mutex<BTreeMap<&'static str, u64>>,
}

impl Stats {
    pub fn errors_by_code(&self) -> BTreeMap<&'static str, u64> {
        self.errors_by_code.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn count_error(&self, error: &Error) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let code = error.code_name();
        *self.errors_by_code.lock().unwrap_or_else(|e| e.into_inner()).entry(code).or_default() += 1;
    }
}

/// Renew this long before a credential expires.
const MARGIN: Duration = Duration::from_secs(5 * 60);
/// A failed attempt at the service's TGT answers the callers that arrive
/// within this long after it, without a new AS exchange.
const FAIL_FAST: Duration = Duration::from_secs(5);
const MAX_USERS: usize = 50_000;
/// Users whose delegated credential is kept, unless told otherwise.
pub const DEFAULT_CACHE_SIZE: usize = 50_000;
/// How long a user's groups from S4U2Self are kept, unless told otherwise.
pub const DEFAULT_LOGON_REFRESH: Duration = Duration::from_secs(10 * 60);

static CACHE_SERIAL: AtomicU64 = AtomicU64::new(0);

impl Delegator {
    /// `principal` like `svc-proxy@AD.TEST`; `keytab` a file path. Contacts no KDC.
    pub fn new(principal: &str, keytab: &str, realm: &str) -> Delegator {
        Delegator {
            principal: principal.to_owned(),
            keytab: keytab.to_owned(),
            realm: realm.to_ascii_uppercase(),
            service: Mutex::new(None),
            service_flight: Mutex::new(None),
            acceptor: Mutex::new(None),
            keys: Mutex::new(None),
            refresher: Mutex::new(None),
            cache: Mutex::new(cred_cache::Lru::new(DEFAULT_CACHE_SIZE)),
            upns: Mutex::new(HashMap::new()),
            logons: Mutex::new(HashMap::new()),
            logon_refresh: DEFAULT_LOGON_REFRESH,
            logon_grace: Duration::ZERO,
            logon_flights: Mutex::new(HashMap::new()),
            flights: Mutex::new(HashMap::new()),
            replays: replay::Cache::new(),
            enctypes: enctypes::Policy::default(),
            stats: Stats::default(),
            observer: None,
        }
    }

    /// Whether RC4 (arcfour-hmac) is used as well as AES: tickets encrypted
    /// with it accepted, its session keys asked for and taken, a keytab of RC4
    /// keys only used for the TGT; and what kcd asks the KDC for left to MIT's
    /// defaults. Off by default (AD is disabling RC4); DES and RC4-EXP are
    /// never accepted. Call before [`Delegator::start`].
    pub fn with_rc4(mut self, allow: bool) -> Delegator {
        self.enctypes = enctypes::Policy::new(allow);
        self
    }

    /// How long a user's groups read by [`Delegator::logon_info`] are kept
    /// before the next call asks the KDC again (a user disabled or removed
    /// from a group in AD is seen within this long).
    pub fn with_logon_refresh(mut self, refresh: Duration) -> Delegator {
        self.logon_refresh = refresh;
        self
    }

    /// How long past its refresh time a user's logon still stands when no
    /// KDC answers (default none). A refusal by the KDC is never graced.
    pub fn with_logon_grace(mut self, grace: Duration) -> Delegator {
        self.logon_grace = grace;
        self
    }

    /// Who is told of each KDC request (kind, time taken, error code).
    /// Call before [`Delegator::start`].
    pub fn with_observer(mut self, observer: Arc<dyn KdcObserver>) -> Delegator {
        self.observer = Some(observer);
        self
    }

    /// Whether the KDC answers now: an AS exchange for the service account
    /// into a cache of its own, kept by nobody (the credentials in use are
    /// not touched). For health checks; not counted as a KDC request. Blocks.
    pub fn probe(&self) -> Result<(), Error> {
        self.check_keytab()?;
        let keytab = format!("FILE:{}", self.keytab);
        ffi::acquire_from_keytab(&self.principal, &keytab, &memory_ccache(), self.enctypes.initiator())
            .map(|_| ())
            .map_err(|e| gss("asking the KDC for the service account's TGT", e).behind_keytab())
    }

    pub fn principal(&self) -> &str {
        &self.principal
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// At most `users` delegated credentials are kept (default
    /// [`DEFAULT_CACHE_SIZE`]); the least recently used go first.
    pub fn with_cache_size(self, users: usize) -> Delegator {
        self.set_cache_size(users);
        self
    }

    /// A new bound for a running delegator (a reload); users past it are
    /// evicted at once.
    pub fn set_cache_size(&self, users: usize) {
        lock(&self.cache).set_capacity(users);
    }

    /// The delegated-credential cache: entries, bound, hits, misses, evictions.
    pub fn cache_stats(&self) -> CacheStats {
        lock(&self.cache).stats()
    }

    /// Gets the service's credentials now and keeps them fresh from a thread
    /// of their own: the acceptor credential from the keytab at once (no KDC
    /// needed), then, in the background, the acceptor's TGT (usage "both", for
    /// S4U2Proxy evidence) and the service account's TGT, renewed halfway
    /// through their lifetime and retried with backoff while the KDC fails.
    /// Waits up to `wait` for that first round, so that a gatehouse whose KDC
    /// answers starts with everything in place; a silent KDC delays nothing
    /// longer. Calling it again does nothing.
    pub fn start(self: &Arc<Self>, wait: Duration) -> std::io::Result<()> {
        let mut slot = lock(&self.refresher);
        if slot.is_some() {
            return Ok(());
        }
        if let Err(e) = self.accept_only() {
            tracing::error!(keytab = %self.keytab, "kerberos: cannot accept tickets yet: {e}");
        }
        let (wake, first) = refresh::spawn(self)?;
        *slot = Some(wake);
        drop(slot);
        let _ = first.recv_timeout(wait);
        Ok(())
    }

    /// Asks the background thread for a round now, instead of after its
    /// backoff: for a reload, after which a keytab fixed in place (same
    /// path, new content) should be tried at once rather than in up to five
    /// minutes. A credential that works is not replaced (a round only gets
    /// what is missing or due), and the last failure no longer answers for
    /// the KDC. Does nothing before [`Delegator::start`].
    pub fn retry_now(&self) {
        *lock(&self.service_flight) = None;
        if let Some(wake) = lock(&self.refresher).as_ref() {
            let _ = wake.send(());
        }
    }

    /// One round of the background thread: whatever is missing or due.
    fn refresh_round(&self) -> refresh::Round {
        let now = Instant::now();
        let mut failed = false;
        let current = lock(&self.acceptor).clone();
        if current.as_ref().is_none_or(|a| !a.both || a.refresh_at.is_none_or(|r| r <= now)) {
            tracing::info!(keytab = %self.keytab, by = "background", "kerberos: asking the KDC for the acceptor's TGT");
            let keytab = format!("FILE:{}", self.keytab);
            let keys = self.keys();
            let ccache = memory_ccache();
            let acquired = self.check_keytab().and_then(|()| {
                ffi::acquire_acceptor(keys.clone(), &keytab, &ccache, true, self.enctypes.allowed())
                    .map_err(|e| gss("acquiring the acceptor's TGT (usage both)", e).behind_keytab())
            });
            match acquired {
                Ok(cred) => {
                    let lifetime = ffi::lifetime(&cred);
                    *lock(&self.acceptor) = Some(Acceptor {
                        cred: Arc::new(cred),
                        both: true,
                        plain: self.plain_acceptor(keys),
                        ccache: Some(ccache),
                        refresh_at: lifetime.map(|l| now + refresh::refresh_after(l)),
                        expires: lifetime.map(|l| now + l),
                    });
                    tracing::info!("kerberos: the acceptor has its TGT; forwardable tickets are S4U2Proxy evidence");
                }
                Err(e) => {
                    failed = true;
                    // Until the TGT comes, the keytab alone accepts tickets;
                    // delegation for their users then starts with S4U2Self.
                    if current.as_ref().is_none_or(|a| a.both && !a.both_valid(now)) {
                        let _ = self.accept_only();
                    }
                    tracing::warn!("kerberos: {e}; accepting with the keytab alone, delegation uses S4U2Self");
                }
            }
        }
        let service_due = lock(&self.service).as_ref().is_none_or(|s| s.refresh_at <= now);
        if service_due && self.acquire_service("background", true).is_err() {
            failed = true;
        }
        let acceptor_next = lock(&self.acceptor).as_ref().and_then(|a| a.refresh_at);
        let service_next = lock(&self.service).as_ref().map(|s| s.refresh_at);
        refresh::Round { failed, next: [acceptor_next, service_next].into_iter().flatten().min() }
    }

    /// Installs an accept-only credential from the keytab (a file read; no
    /// KDC) unless a usable one is there.
    fn accept_only(&self) -> Result<Arc<ffi::AcceptorCred>, Error> {
        let cred = Arc::new(self.acquire_plain(self.keys())?);
        let mut slot = lock(&self.acceptor);
        match slot.as_ref() {
            Some(a) if a.both_valid(Instant::now()) => Ok(a.cred.clone()),
            _ => {
                *slot = Some(Acceptor::plain(cred.clone()));
                Ok(cred)
            }
        }
    }

    /// An accept-only credential with `keys` (or, without, the file).
    fn acquire_plain(&self, keys: Option<Arc<ffi::MemoryKeytab>>) -> Result<ffi::AcceptorCred, Error> {
        let keytab = format!("FILE:{}", self.keytab);
        ffi::acquire_acceptor(keys, &keytab, &memory_ccache(), false, self.enctypes.allowed())
            .map_err(|e| gss("acquiring the acceptor credential from the keytab", e).behind_keytab())
    }

    /// The accept-only twin of a "both" credential; none if it cannot be
    /// had (every ticket then goes to the "both" one, as before).
    fn plain_acceptor(&self, keys: Option<Arc<ffi::MemoryKeytab>>) -> Option<Arc<ffi::AcceptorCred>> {
        self.acquire_plain(keys).ok().map(Arc::new)
    }

    /// The acceptor's keys in memory, read from the keytab file the first
    /// time; None while the file cannot be read (the credential then names
    /// the file, and MIT's error says what is wrong with it).
    fn keys(&self) -> Option<Arc<ffi::MemoryKeytab>> {
        let mut slot = lock(&self.keys);
        if slot.is_none() {
            *slot = self.read_keys().ok().map(Arc::new);
        }
        slot.clone()
    }

    fn read_keys(&self) -> Result<ffi::MemoryKeytab, Error> {
        let name =
            format!("MEMORY:gatehouse-kt-{}-{}", std::process::id(), CACHE_SERIAL.fetch_add(1, Ordering::Relaxed));
        ffi::load_keytab(&format!("FILE:{}", self.keytab), &name).map_err(|code| {
            // Small codes are errno values (a missing or unreadable file).
            let why = match codes::name(code) {
                Some(name) => name.to_owned(),
                None if (0..4096).contains(&code) => std::io::Error::from_raw_os_error(code).to_string(),
                None => format!("krb5 error {code}"),
            };
            Error::krb5(Kind::Keytab, code, format!("reading the keytab {}: {why}", self.keytab))
        })
    }

    /// Reads the keytab file again and accepts tickets with exactly the keys
    /// it now holds (for a reload: a rotated key is accepted, a key removed
    /// from the file is no longer). The acceptor's TGT is kept: the new
    /// credential is made with the same memory cache, so no KDC is asked.
    /// On a failure the keys in use stay, and the error says why. Returns
    /// how many keys were read.
    pub fn reload_keytab(&self) -> Result<usize, Error> {
        let keys = Arc::new(self.read_keys()?);
        let entries = keys.entries();
        *lock(&self.keys) = Some(keys.clone());
        let current = lock(&self.acceptor).clone();
        let now = Instant::now();
        let both = current.as_ref().filter(|a| a.both_valid(now)).and_then(|a| {
            let ccache = a.ccache.as_deref()?;
            let keytab = format!("FILE:{}", self.keytab);
            let cred = ffi::acquire_acceptor(Some(keys.clone()), &keytab, ccache, true, self.enctypes.allowed());
            match cred {
                Ok(cred) => {
                    Some(Acceptor { cred: Arc::new(cred), plain: self.plain_acceptor(Some(keys.clone())), ..a.clone() })
                }
                Err(e) => {
                    tracing::warn!("kerberos: the new keys with the acceptor's TGT: {}", gss("acquiring", e));
                    None
                }
            }
        });
        let next = match both {
            Some(a) => a,
            None => {
                let plain = Acceptor::plain(Arc::new(self.acquire_plain(Some(keys))?));
                if current.is_some_and(|a| a.both) {
                    // Its TGT was not reusable: the background gets a new one.
                    self.retry_now();
                }
                plain
            }
        };
        *lock(&self.acceptor) = Some(next);
        tracing::info!(keytab = %self.keytab, keys = entries, "kerberos: acceptor keys read from the keytab");
        Ok(entries)
    }

    /// The credential to accept a token that is probably `likely`'s with: the
    /// accept-only twin when that user's delegated credential is cached (with
    /// the "both" one, for a ticket that turns out to be someone else's),
    /// else [`Delegator::acceptor`].
    fn acceptor_for(&self, likely: Option<&str>) -> Result<Choice, Error> {
        let current = lock(&self.acceptor).clone();
        if let (Some(a), Some(user)) = (current.clone(), likely) {
            if let (true, Some(plain)) = (a.both_valid(Instant::now()), a.plain) {
                if self.has_credential(&User::Account(user.to_owned())) {
                    return Ok(Choice { cred: plain, both: Some(a.cred), builds_evidence: false });
                }
            }
        }
        let builds_evidence = current.is_some_and(|a| a.both);
        Ok(Choice { cred: self.acceptor()?, both: None, builds_evidence })
    }

    /// Whether `user`'s delegated credential is cached and valid (not
    /// counted as a hit: nothing is taken from the cache).
    fn has_credential(&self, user: &User) -> bool {
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache.peek(user).is_some_and(|e| e.until > Instant::now())
    }

    /// The acceptor credential in place. Without one (no background thread, or
    /// a keytab that was unreadable until now) the keytab alone: accepting a
    /// ticket never asks the KDC for anything.
    fn acceptor(&self) -> Result<Arc<ffi::AcceptorCred>, Error> {
        if let Some(a) = lock(&self.acceptor).as_ref() {
            return Ok(a.cred.clone());
        }
        self.accept_only()
    }

    /// The service account's TGT; gets one if there is none (blocks on the
    /// KDC: delegation paths only, on blocking threads).
    fn service(&self) -> Result<ffi::ServiceCred, Error> {
        match self.current_service() {
            Some(c) => Ok(c),
            None => self.acquire_service("delegation", false),
        }
    }

    fn current_service(&self) -> Option<ffi::ServiceCred> {
        let slot = lock(&self.service);
        slot.as_ref().filter(|s| s.expires > Instant::now()).map(|s| s.cred.clone())
    }

    /// One AS exchange for the service account at a time. `renew`: the
    /// background renewing a credential that is still valid (and not
    /// answered by someone else's fresh failure).
    fn acquire_service(&self, by: &'static str, renew: bool) -> Result<ffi::ServiceCred, Error> {
        let mut last_failure = lock(&self.service_flight);
        if !renew {
            if let Some(c) = self.current_service() {
                return Ok(c);
            }
            if let Some((at, why)) = last_failure.as_ref().filter(|(at, _)| at.elapsed() < FAIL_FAST) {
                let ago = at.elapsed().as_secs();
                return Err(why.clone().context(&format!(" (an attempt {ago} s ago; not retried yet)")));
            }
        }
        tracing::info!(principal = %self.principal, by, "kerberos: asking the KDC for the service account's TGT");
        let now = Instant::now();
        let acquired = self.check_keytab().and_then(|()| {
            let keytab = format!("FILE:{}", self.keytab);
            observe::timed(self.observer.as_ref(), KdcRequest::As, || {
                ffi::acquire_from_keytab(&self.principal, &keytab, &memory_ccache(), self.enctypes.initiator())
                    .map_err(|e| gss("acquiring the service credential from the keytab", e).behind_keytab())
            })
        });
        match acquired {
            Ok(cred) => {
                let lifetime = cred.cred().lifetime().unwrap_or(Duration::from_secs(3600));
                let (refresh_at, expires) = (now + refresh::refresh_after(lifetime), now + lifetime);
                *lock(&self.service) = Some(Service { cred: cred.clone(), refresh_at, expires });
                *last_failure = None;
                Ok(cred)
            }
            Err(e) => {
                tracing::warn!(principal = %self.principal, by, "kerberos: {e}");
                *last_failure = Some((Instant::now(), e.clone()));
                Err(e)
            }
        }
    }

    /// Before an AS exchange with the keytab: MIT's request offers whatever
    /// keys the keytab holds for the account, RC4 included, and the KDC may
    /// take them; a keytab with no allowed key is refused here, with the
    /// cause. (A keytab MIT cannot read is left to MIT's own message.)
    fn check_keytab(&self) -> Result<(), Error> {
        match ffi::keytab_enctypes(&format!("FILE:{}", self.keytab), &self.principal) {
            Ok(held) => self.enctypes.check_keytab(&self.principal, &held),
            Err(_) => Ok(()),
        }
    }

    fn counted<T>(&self, result: Result<T, Error>) -> Result<T, Error> {
        if let Err(e) = &result {
            self.stats.count_error(e);
        }
        result
    }

    /// Accepts a client's Kerberos initial context token (RFC 4121 framing, as
    /// inside SPNEGO or bare under `Negotiate`) for `spn` (`HTTP/mail.ad.test`).
    /// `channel_bindings` is the application data of this connection's bindings
    /// (see [`tls_server_end_point`]); a client that sent bindings must match
    /// them, and [`Accepted::channel_bound`] says whether it sent any. Blocks
    /// (MIT may read the keytab).
    pub fn accept(&self, token: &[u8], spn: &str, channel_bindings: Option<&[u8]>) -> Result<Accepted, Error> {
        self.accept_from(token, spn, channel_bindings, None)
    }

    /// [`Delegator::accept`], for a token that is probably `likely`'s (the
    /// principal the connection last authenticated): if that user's delegated
    /// credential is cached, MIT is not asked to build S4U2Proxy evidence
    /// from the ticket (a memory cache and a copy of the ticket, about a
    /// quarter of a ticket's cost), which would be thrown away. A ticket of
    /// someone else is accepted again with evidence: the guess never costs
    /// delegation anything.
    pub fn accept_from(
        &self,
        token: &[u8],
        spn: &str,
        channel_bindings: Option<&[u8]>,
        likely: Option<&str>,
    ) -> Result<Accepted, Error> {
        let result = self.accept_inner(token, spn, channel_bindings, likely);
        let counter = if result.is_ok() { &self.stats.accepted } else { &self.stats.refused };
        counter.fetch_add(1, Ordering::Relaxed);
        result
    }

    fn accept_inner(
        &self,
        token: &[u8],
        spn: &str,
        channel_bindings: Option<&[u8]>,
        likely: Option<&str>,
    ) -> Result<Accepted, Error> {
        let ap_req = spnego::kerberos_ap_req(token)
            .map_err(|e| Error::new(Kind::BadToken, format!("not a Kerberos AP-REQ: {e}")))?;
        let authenticator = ap_req.authenticator;
        // MIT accepts a ticket for any principal in the keytab; gatehouse serves
        // one SPN. (MIT's own report of the target names the credential, not
        // the ticket, when the credential also initiates.)
        let wanted = qualify_spn(spn, &self.realm)?;
        let ticket_for = format!("{}@{}", ap_req.service, ap_req.realm);
        if !same_principal(&ticket_for, &wanted) {
            return Err(Error::new(Kind::WrongPrincipal, format!("the ticket is for {ticket_for}, not for {wanted}")));
        }
        // Before MIT decrypts anything: MIT's own limit (on the acceptor
        // credential) covers the session key and subkey, not the ticket.
        self.enctypes.check_ticket("the client's ticket", ap_req.ticket_enctype)?;
        // Checked before MIT sees the token, and recorded only once MIT accepted
        // it: a forged token cannot block the real one.
        if self.replays.seen(authenticator) {
            return Err(replayed());
        }
        let choice = self.acceptor_for(likely)?;
        let accept = |cred: &ffi::AcceptorCred| {
            ffi::accept(cred, token, channel_bindings, self.enctypes.initiator())
                .map_err(|e| self.mit_refusal(gss("accepting the client's Kerberos ticket", e)))
        };
        // Where no evidence would be built anyway, the worker's long-lived
        // krb5 context accepts the common ticket at a fraction of MIT's GSS
        // call (ffi.rs, "the quick acceptor"); whatever it declines, MIT's
        // GSS layer judges, with its own answer and error.
        let quick = (!choice.builds_evidence)
            .then(|| lock(&self.keys).clone())
            .flatten()
            .and_then(|keys| ffi::accept_quick(&keys, ap_req.message, channel_bindings, self.enctypes.allowed()));
        let mut accepted = match quick {
            Some(accepted) => {
                self.stats.quick.fetch_add(1, Ordering::Relaxed);
                accepted
            }
            None => {
                if !choice.builds_evidence {
                    self.stats.quick_declined.fetch_add(1, Ordering::Relaxed);
                }
                accept(&choice.cred)?
            }
        };
        if let Some(both) = choice.both {
            if likely.is_some_and(|l| same_principal(&accepted.client, l)) {
                self.stats.evidence_skipped.fetch_add(1, Ordering::Relaxed);
            } else {
                // Not who the connection had: accepted again, with evidence
                // (MIT keeps no replay cache; gatehouse records the
                // authenticator below, once).
                accepted = accept(&both)?;
            }
        }
        if !self.replays.record(authenticator) {
            return Err(replayed());
        }
        let evidence = accepted.proxy.is_some();
        if let Some(cred) = accepted.proxy {
            self.keep_evidence(&accepted.client, cred);
        }
        let logon = accepted.logon_info.as_deref().and_then(|buf| match parse_logon_info(buf) {
            Ok(info) => Some(info),
            Err(e) => {
                tracing::warn!(client = %accepted.client, "kerberos: the ticket's PAC is unusable: {e}");
                None
            }
        });
        Ok(Accepted {
            client: accepted.client,
            mutual: accepted.output,
            channel_bound: accepted.flags & ffi::GSS_C_CHANNEL_BOUND_FLAG != 0,
            evidence,
            logon,
        })
    }

    /// The encryption of the ticket inside a token MIT made for us.
    fn check_own_ticket(&self, token: &[u8], what: &str) -> Result<(), Error> {
        let ap_req = spnego::kerberos_ap_req(token)
            .map_err(|e| Error::new(Kind::Other, format!("{what}: MIT's token does not read as an AP-REQ: {e}")))?;
        self.enctypes.check_ticket(what, ap_req.ticket_enctype)
    }

    /// MIT's refusal of a session key or subkey by the acceptor's limit says
    /// only "Encryption type arcfour-hmac not permitted", and the KDC's of a
    /// request limited to AES "KDC has no support for encryption type": said
    /// whose rule it is.
    fn mit_refusal(&self, e: Error) -> Error {
        if e.minor() == codes::KRB5_NOPERM_ETYPE as u32 {
            return e.context(&self.enctypes.after_mit_refusal());
        }
        if e.minor() == codes::KRB5KDC_ERR_ETYPE_NOSUPP as u32 {
            if let Some(more) = self.enctypes.after_kdc_refusal() {
                return e.context(&more);
            }
        }
        e
    }

    /// A client's own ticket, turned by MIT into an S4U2Proxy credential: kept
    /// as this user's credential unless one is already cached.
    fn keep_evidence(&self, client: &str, cred: Cred) {
        let Ok(name) = cred.name().and_then(|n| n.display_name()) else { return };
        if !same_principal(&String::from_utf8_lossy(&name), client) {
            return;
        }
        let user = User::Account(client.to_owned());
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.peek(&user).is_some_and(|e| e.until > Instant::now()) {
            return;
        }
        let until = until(&cred);
        cache.insert(user, Cached { cred, until, evidence: true });
        self.stats.evidence.fetch_add(1, Ordering::Relaxed);
    }

    /// A token for `spn` (e.g. `HTTP/backend.ad.test`) in the name of `user`.
    /// Blocks; may talk to the KDC. `channel_bindings` is the application data
    /// of the channel bindings of the connection the token will travel on (for
    /// TLS: see [`tls_server_end_point`]); Extended Protection on the backend
    /// checks it.
    pub fn token(
        &self,
        user: &User,
        spn: &str,
        kind: Token,
        channel_bindings: Option<&[u8]>,
    ) -> Result<Vec<u8>, Error> {
        self.counted(self.token_inner(user, spn, kind, channel_bindings))
    }

    /// S4U2Self alone (which needs the service account's TGT first): for
    /// `gatehouse doctor`, to tell a broken account from a refused delegation.
    pub fn check_s4u2self(&self, user: &User) -> Result<(), Error> {
        self.counted(self.credential(user).map(|_| ()))
    }

    fn token_inner(
        &self,
        user: &User,
        spn: &str,
        kind: Token,
        channel_bindings: Option<&[u8]>,
    ) -> Result<Vec<u8>, Error> {
        let target = qualify_spn(spn, &self.realm)?;
        let (cred, evidence) = self.credential(user)?;
        let step = |cred: Cred| {
            let target =
                Name::new(target.as_bytes(), Some(GSS_NT_KRB5_PRINCIPAL)).map_err(|e| gss("target name", e))?;
            let mut ctx = ClientCtx::new(Some(cred), target, CtxFlags::empty(), Some(GSS_MECH_KRB5));
            observe::timed(self.observer.as_ref(), KdcRequest::S4u2Proxy, || {
                ctx.step(None, channel_bindings)
                    .map_err(|e| self.mit_refusal(gss("S4U2Proxy (ticket for the backend)", e)))
            })
        };
        let token = match step(cred) {
            Ok(t) => t,
            // A client's ticket that the KDC does not take as evidence (not
            // forwardable for delegation): protocol transition instead.
            Err(_) if evidence => {
                self.cache.lock().unwrap_or_else(|e| e.into_inner()).remove(user);
                let (cred, _) = self.credential(user)?;
                step(cred)?
            }
            Err(e) => return Err(e),
        };
        let token = token.map(|t| t.to_vec()).ok_or_else(no_token)?;
        // The backend's ticket is encrypted with the backend account's key,
        // of the type the KDC chose for it; MIT's limit governs only the
        // session key.
        self.check_own_ticket(&token, &format!("the ticket for {target}"))?;
        Ok(match kind {
            Token::Kerberos => token,
            // Wrapped here rather than by MIT's SPNEGO mechanism, so that one
            // credential per user serves both kinds, whether it came from
            // S4U2Self or from the client's own ticket (krb5 only).
            Token::Spnego => spnego::encode_init(&[spnego::KRB5], Some(&token), None),
        })
    }

    /// The cached credential for `user`, or a new one by S4U2Self. The flag says
    /// whether it is the client's own ticket.
    fn credential(&self, user: &User) -> Result<(Cred, bool), Error> {
        if let Some(found) = self.cached(user) {
            return Ok(found);
        }
        // Dropped after `_turn` (declared before it), on every way out.
        let flight = Flight::join(&self.flights, user);
        let _turn = lock(&flight.turn);
        if let Some(found) = self.cached(user) {
            return Ok(found);
        }
        let cred = self.s4u2self(user);
        if cred.is_err() {
            // A service credential that stopped working (KDC restarted, keys
            // changed) is acquired afresh next time.
            *lock(&self.service) = None;
        }
        let cred = cred?;
        let until = until(&cred);
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache.insert(user.clone(), Cached { cred: cred.clone(), until, evidence: false });
        Ok((cred, false))
    }

    /// Users with an S4U2Self in flight, or waiting for one (for metrics and
    /// tests: after the last request for a user, none of theirs is left).
    pub fn users_in_flight(&self) -> usize {
        lock(&self.flights).len() + lock(&self.logon_flights).len()
    }

    fn cached(&self, user: &User) -> Option<(Cred, bool)> {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let e = cache.get(user, |e| e.until > now)?;
        self.stats.cache_hits.fetch_add(1, Ordering::Relaxed);
        Some((e.cred.clone(), e.evidence))
    }

    fn s4u2self(&self, user: &User) -> Result<Cred, Error> {
        let service = self.service()?;
        self.stats.s4u2self.fetch_add(1, Ordering::Relaxed);
        let enterprise = matches!(user, User::Upn { .. });
        let impersonated = observe::timed(self.observer.as_ref(), KdcRequest::S4u2Self, || {
            ffi::impersonate(&service, user.name(), enterprise)
                .map_err(|e| self.mit_refusal(gss("S4U2Self (impersonating the user)", e)))
        })?;
        // The two guards against MIT's silent fallback to the default credential.
        let has_mech = impersonated
            .mechanisms()
            .and_then(|m| m.contains(GSS_MECH_KRB5))
            .map_err(|e| gss("inspecting the impersonated credential", e))?;
        if !has_mech {
            return Err(Error::new(Kind::WrongCredential, "the impersonated credential lacks the Kerberos mechanism"));
        }
        let cred_name = impersonated
            .name()
            .and_then(|n| n.display_name())
            .map_err(|e| gss("inspecting the impersonated credential", e))?;
        let cred_name = String::from_utf8_lossy(&cred_name);
        // The KDC answers with the enterprise name as asked, or with the
        // account's canonical name.
        if !self.names(&cred_name, user) {
            return Err(Error::new(
                Kind::WrongCredential,
                format!("the impersonated credential is for {cred_name}, not {user}"),
            ));
        }
        Ok(impersonated)
    }

    /// Checks a user's password the Kerberos way (for Basic at the edge): an AS
    /// exchange with the password, then a ticket for `spn` (gatehouse's own
    /// SPN) accepted with gatehouse's keys, so that a forged KDC answer cannot
    /// pass. `user` is `alice@AD.TEST`, or a UPN sent as an enterprise name.
    /// The accepted ticket is, like a Negotiate client's, S4U2Proxy evidence.
    /// Blocks; talks to the KDC.
    pub fn check_password(&self, user: &User, password: &str, spn: &str) -> Result<Accepted, Error> {
        self.stats.password_checks.fetch_add(1, Ordering::Relaxed);
        let name_type = match user {
            User::Account(_) => GSS_NT_KRB5_PRINCIPAL,
            User::Upn { .. } => GSS_KRB5_NT_ENTERPRISE_NAME,
        };
        let name = Name::new(user.name().as_bytes(), Some(name_type)).map_err(|e| gss("user name", e))?;
        let mut mechs = OidSet::new();
        mechs.add(GSS_MECH_KRB5).map_err(|e| gss("mechanism set", e))?;
        // MIT keeps the TGT in a memory cache of the credential's own.
        let cred = observe::timed(self.observer.as_ref(), KdcRequest::As, || {
            Cred::acquire_with_password(Some(&name), password, None, CredUsage::Initiate, Some(&mechs))
                .map_err(|e| gss("checking the password with the KDC", e))
        })?;
        let target = qualify_spn(spn, &self.realm)?;
        let target = Name::new(target.as_bytes(), Some(GSS_NT_KRB5_PRINCIPAL)).map_err(|e| gss("target name", e))?;
        let mut ctx = ClientCtx::new(Some(cred), target, CtxFlags::empty(), Some(GSS_MECH_KRB5));
        let token = ctx
            .step(None, None)
            .map_err(|e| gss("getting a ticket for gatehouse's SPN with the password", e))?
            .ok_or_else(no_token)?;
        self.accept(&token, spn, None)
    }

    /// Asks the KDC for a ticket to `spn` as the service account itself and
    /// accepts it: proves that the SPN belongs to this account and that the
    /// keytab holds its current key (for `gatehouse doctor`). Blocks.
    pub fn check_acceptor(&self, spn: &str) -> Result<(), Error> {
        let target = qualify_spn(spn, &self.realm)?;
        let service = self.service()?;
        let name = Name::new(target.as_bytes(), Some(GSS_NT_KRB5_PRINCIPAL)).map_err(|e| gss("target name", e))?;
        let mut ctx = ClientCtx::new(Some(service.cred().clone()), name, CtxFlags::empty(), Some(GSS_MECH_KRB5));
        let token = ctx
            .step(None, None)
            .map_err(|e| self.mit_refusal(gss("getting a ticket for the acceptor SPN", e)))?
            .ok_or_else(no_token)?;
        self.accept(&token, spn, None).map(|_| ())
    }

    /// The UPN of `account` (`carol@AD.TEST`), as the domain controller put it
    /// in the PAC of an S4U2Self ticket to this service. Cached as long as that
    /// ticket. Blocks; may talk to the KDC.
    pub fn upn(&self, account: &str) -> Result<String, Error> {
        self.counted(self.upn_inner(account))
    }

    fn upn_inner(&self, account: &str) -> Result<String, Error> {
        if let Some((upn, until)) = self.upns.lock().unwrap_or_else(|e| e.into_inner()).get(account) {
            if *until > Instant::now() {
                return Ok(upn.clone());
            }
        }
        let user = User::Account(account.to_owned());
        let (mut impersonated, evidence) = self.credential(&user)?;
        if evidence {
            // A client's own ticket is for our SPN, not for the account name;
            // the PAC is read from an S4U2Self ticket.
            impersonated = self.s4u2self(&user)?;
        }
        self.stats.upn_lookups.fetch_add(1, Ordering::Relaxed);
        let accepted = self.own_pac(&impersonated, &user)?;
        let buffer = accepted.upn_dns_info.ok_or_else(|| {
            Error::new(Kind::Other, format!("the PAC of {account}'s ticket has no verified UPN_DNS_INFO"))
        })?;
        let info = parse_upn_dns_info(&buffer).map_err(|e| Error::new(Kind::Other, format!("{account}'s PAC: {e}")))?;
        let until = until(&impersonated);
        let mut upns = self.upns.lock().unwrap_or_else(|e| e.into_inner());
        if upns.len() >= MAX_USERS {
            let now = Instant::now();
            upns.retain(|_, (_, until)| *until > now);
        }
        upns.insert(account.to_owned(), (info.upn.clone(), until));
        Ok(info.upn)
    }

    /// The S4U2Self ticket in `impersonated` is for this service: presenting
    /// it to ourselves costs no KDC round trip, and our key verifies the PAC
    /// it carries.
    fn own_pac(&self, impersonated: &Cred, user: &User) -> Result<ffi::Accepted, Error> {
        let me = Name::new(self.principal.as_bytes(), Some(GSS_NT_KRB5_PRINCIPAL)).map_err(|e| gss("own name", e))?;
        let mut ctx = ClientCtx::new(Some(impersonated.clone()), me, CtxFlags::empty(), Some(GSS_MECH_KRB5));
        let token = ctx
            .step(None, None)
            .map_err(|e| gss("presenting the S4U2Self ticket to ourselves", e))?
            .ok_or_else(no_token)?;
        // Encrypted with this account's key, of the type its
        // msDS-SupportedEncryptionTypes made the KDC choose.
        self.check_own_ticket(&token, &format!("the S4U2Self ticket for {user}"))?;
        let accepted = ffi::accept(&*self.acceptor()?, &token, None, self.enctypes.initiator())
            .map_err(|e| self.mit_refusal(gss("reading the S4U2Self ticket's PAC", e)))?;
        if !self.names(&accepted.client, user) {
            return Err(Error::new(
                Kind::WrongCredential,
                format!("the S4U2Self ticket names {}, not {user}", accepted.client),
            ));
        }
        Ok(accepted)
    }

    /// Whether a principal name MIT reports is `user`: the account, or for a
    /// UPN the enterprise name as asked or the account it resolved to.
    fn names(&self, principal: &str, user: &User) -> bool {
        match user {
            User::Account(a) => same_principal(principal, a),
            User::Upn { upn, account } => {
                same_principal(principal, &format!("{}@{}", upn.replace('@', "\\@"), self.realm))
                    || same_principal(principal, account)
            }
        }
    }

    /// The user's SID and groups as the domain controller puts them in the
    /// PAC of an S4U2Self ticket to this service: for users who signed in
    /// without a Kerberos ticket of their own (NTLM), and for everyone once
    /// their sign-in is older than the refresh time. Kept for the logon
    /// refresh time ([`Delegator::with_logon_refresh`]); after it, a fresh
    /// S4U2Self, so that a disabled account (the KDC refuses it) or a changed
    /// membership is seen. A refusal is kept as long. One S4U2Self per user
    /// in flight; callers for the same user wait for it and share its answer.
    /// With no KDC answering, the last logon stands until its refresh time
    /// plus the grace ([`Delegator::with_logon_grace`]). Blocks; may talk to
    /// the KDC.
    pub fn logon(&self, user: &User) -> Result<Arc<Logon>, Error> {
        self.counted(self.logon_inner(user))
    }

    /// [`Delegator::logon`]'s logon information alone.
    pub fn logon_info(&self, user: &User) -> Result<LogonInfo, Error> {
        self.logon(user).map(|l| l.info.clone())
    }

    /// What [`Delegator::logon`] would answer without asking the KDC: None
    /// when that needs a KDC round trip (nothing known, or past the refresh
    /// time). Never blocks on the network: for the request path.
    pub fn cached_logon(&self, user: &User) -> Option<Result<Arc<Logon>, Error>> {
        let logons = lock(&self.logons);
        match logons.get(user)? {
            Known::Logon(l) if l.read.elapsed() < self.logon_refresh => Some(Ok(l.clone())),
            Known::Refused(e, at) if at.elapsed() < self.logon_refresh => Some(Err(e.clone())),
            _ => None,
        }
    }

    fn logon_inner(&self, user: &User) -> Result<Arc<Logon>, Error> {
        if let Some(known) = self.cached_logon(user) {
            return known;
        }
        let flight = Flight::join(&self.logon_flights, user);
        let _turn = lock(&flight.turn);
        if let Some(known) = self.cached_logon(user) {
            return known;
        }
        self.stats.logon_lookups.fetch_add(1, Ordering::Relaxed);
        // Always a new S4U2Self, never the cached credential: its PAC is as
        // old as the credential (hours), and the point is to see changes.
        let impersonated = match self.s4u2self(user) {
            Ok(c) => c,
            Err(e) => {
                // The KDC refused this user (Samba answers a disabled
                // account's S4U2Self with KDC_ERR_POLICY, kind BadOption;
                // Windows with KDC_ERR_CLIENT_REVOKED): nothing kept for
                // them may be used either. A KDC that did not answer decides
                // nothing: the last logon stands through the grace, and the
                // service credential is tried afresh.
                if matches!(e.kind(), Kind::Revoked | Kind::ClientUnknown | Kind::BadOption) {
                    self.remember(user, Known::Refused(e.clone(), Instant::now()));
                    lock(&self.cache).remove(user);
                } else {
                    *lock(&self.service) = None;
                    if let Some(Known::Logon(l)) = lock(&self.logons).get(user) {
                        if l.read.elapsed() < self.logon_refresh + self.logon_grace {
                            tracing::warn!(user = %user, error = %e, "the KDC did not answer; the user's last known groups stand for the grace period");
                            return Ok(l.clone());
                        }
                    }
                }
                return Err(e);
            }
        };
        let accepted = self.own_pac(&impersonated, user)?;
        let buffer = accepted.logon_info.ok_or_else(|| {
            Error::new(Kind::Other, format!("the PAC of {user}'s ticket has no verified logon information"))
        })?;
        let info = parse_logon_info(&buffer).map_err(|e| Error::new(Kind::Other, format!("{user}'s PAC: {e}")))?;
        let logon = Arc::new(Logon::new(info));
        self.remember(user, Known::Logon(logon.clone()));
        // The fresh credential serves delegation too, when none is cached.
        let mut cache = lock(&self.cache);
        if cache.peek(user).is_none_or(|e| e.until <= Instant::now()) {
            let until = until(&impersonated);
            cache.insert(user.clone(), Cached { cred: impersonated, until, evidence: false });
        }
        Ok(logon)
    }

    fn remember(&self, user: &User, known: Known) {
        let mut logons = lock(&self.logons);
        if logons.len() >= MAX_USERS {
            let keep = self.logon_refresh + self.logon_grace;
            logons.retain(|_, k| match k {
                Known::Logon(l) => l.read.elapsed() < keep,
                Known::Refused(_, at) => at.elapsed() < keep,
            });
        }
        logons.insert(user.clone(), known);
    }
}

fn replayed() -> Error {
    Error::new(Kind::Replay, "the Kerberos authenticator was replayed (seen before within the clock skew)")
}

fn no_token() -> Error {
    Error::new(Kind::Other, "GSSAPI produced no token")
}

/// A caller's share of a user's S4U2Self lock. The lock's entry leaves the
/// map with its last holder, however that holder leaves (a credential, an
/// error, a panic): an entry left behind would be kept for every user name a
/// client ever tried, and waiters must keep the same lock as the caller in
/// flight, or two S4U2Self for one user would run at once.
struct Flight<'a> {
    flights: &'a Mutex<HashMap<User, Arc<Mutex<()>>>>,
    user: &'a User,
    turn: Arc<Mutex<()>>,
}

impl<'a> Flight<'a> {
    fn join(flights: &'a Mutex<HashMap<User, Arc<Mutex<()>>>>, user: &'a User) -> Flight<'a> {
        let turn = lock(flights).entry(user.clone()).or_default().clone();
        Flight { flights, user, turn }
    }
}

impl Drop for Flight<'_> {
    fn drop(&mut self) {
        let mut flights = lock(self.flights);
        // Shares are only taken with the map locked, so the count is exact:
        // two means the map's and ours.
        let last =
            flights.get(self.user).is_some_and(|t| Arc::ptr_eq(t, &self.turn)) && Arc::strong_count(&self.turn) == 2;
        if last {
            flights.remove(self.user);
        }
    }
}

/// Poisoning is ignored: every critical section leaves its data consistent.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn until(cred: &Cred) -> Instant {
    let lifetime = cred.lifetime().unwrap_or(Duration::from_secs(3600));
    Instant::now() + lifetime.saturating_sub(MARGIN).max(Duration::from_secs(60))
}

/// MEMORY cache names are global in the process: each credential gets its own.
fn memory_ccache() -> String {
    format!("MEMORY:gatehouse-kcd-{}-{}", std::process::id(), CACHE_SERIAL.fetch_add(1, Ordering::Relaxed))
}

/// GSS_KRB5_NT_ENTERPRISE_NAME: 1.2.840.113554.1.2.2.6
const GSS_KRB5_NT_ENTERPRISE_NAME: libgssapi::oid::Oid<'static> =
    libgssapi::oid::Oid::from_slice(&[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x12, 0x01, 0x02, 0x02, 0x06]);

/// The channel-binding application data for a TLS connection (RFC 5929):
/// `tls-server-end-point:` followed by the server certificate's hash.
pub fn tls_server_end_point(certificate_hash: &[u8]) -> Vec<u8> {
    let mut data = b"tls-server-end-point:".to_vec();
    data.extend_from_slice(certificate_hash);
    data
}

/// Principal names compared as Kerberos does in AD: case-insensitively.
fn same_principal(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    use testkit::heap::rss_kib;

    /// `release_free_memory` (glibc's `malloc_trim`): gatehouse's own
    /// allocations are jemalloc's, but the C libraries' (MIT krb5, aws-lc,
    /// SQLite) are glibc's, and so are this test binary's, which has no global
    /// allocator of its own. The shape idle connections leave: 8 KiB blocks
    /// freed among small live ones stay resident until the trim. Measured
    /// alone, in a process of its own (`run_alone`): RSS is the whole process's.
    #[test]
    fn freed_blocks_among_live_ones_leave_glibc_when_trimmed() {
        testkit::heap::run_alone("tests::trim_measured_alone", "KCD_TRIM_ALONE");
    }

    #[test]
    #[ignore = "run alone by freed_blocks_among_live_ones_leave_glibc_when_trimmed"]
    fn trim_measured_alone() {
        if std::env::var_os("KCD_TRIM_ALONE").is_none() {
            return;
        }
        let (buffers, live) = testkit::heap::buffers_among_live_objects();
        let full = rss_kib();
        drop(buffers);
        let freed = rss_kib();
        release_free_memory();
        let trimmed = rss_kib();
        drop(live);
        // 64 MiB of blocks: most of it stays resident after free, and goes with the trim.
        assert!(freed + 16 * 1024 > full, "glibc returned the blocks by itself: {full} -> {freed} KiB");
        assert!(trimmed + 32 * 1024 < freed, "the trim gave back too little: {freed} -> {trimmed} KiB");
    }

    /// The cache's own memory per user (issue 20): users named as the lab's
    /// would be, with a stand-in value of `Cached`'s size (a `Cred` is a
    /// pointer). `BENCH_ONLY=cache bench/run.sh` runs the fuller simulation
    /// (`examples/cache_memory.rs`, entries of a real one's size), and
    /// `BENCH_ONLY=users` the real thing against the lab. Not a check:
    /// prints the curve.
    #[test]
    #[ignore]
    fn cache_memory_curve() {
        type Value = [u8; std::mem::size_of::<Cached>()];
        let mut cache: cred_cache::Lru<User, Value> = cred_cache::Lru::new(10_000_000);
        let base = rss_kib();
        let mut added = 0;
        println!(
            "size_of Cached = {} bytes, User = {} bytes",
            std::mem::size_of::<Cached>(),
            std::mem::size_of::<User>()
        );
        for target in [1_000, 10_000, 100_000, 1_000_000] {
            while added < target {
                cache.insert(User::Account(format!("perfuser{added:07}@AD.TEST")), [0; std::mem::size_of::<Cached>()]);
                added += 1;
            }
            let grown = rss_kib().saturating_sub(base);
            println!("users {target}: RSS +{grown} KiB, {:.0} bytes per user", grown as f64 * 1024.0 / target as f64);
        }
        // A hit at 1,000,000 users.
        let start = Instant::now();
        let n = 1_000_000u64;
        for i in 0..n {
            let key = User::Account(format!("perfuser{:07}@AD.TEST", i % 1_000_000));
            std::hint::black_box(cache.get(&key, |_| true));
        }
        println!("hit (with the key's formatting): {:.0} ns", start.elapsed().as_nanos() as f64 / n as f64);
    }

    /// Issue 11, defect 1: a failed S4U2Self left the user's lock behind, one
    /// entry for every name a client ever tried. Fails without asking any KDC:
    /// the keytab does not exist, so the service account has no TGT.
    #[test]
    fn a_failed_s4u2self_leaves_no_lock_behind() {
        std::env::set_var("KRB5_CONFIG", "/dev/null");
        std::env::set_var("KRB5CCNAME", "MEMORY:kcd-unit-empty-default");
        let d = Delegator::new("svc@NO.REALM", "/nonexistent/kcd-unit.keytab", "NO.REALM");
        for name in ["nobody@NO.REALM", "other@NO.REALM", "nobody@NO.REALM"] {
            let e = d.check_s4u2self(&User::Account(name.into())).unwrap_err();
            assert_ne!(e.kind(), Kind::Unreachable, "{e}");
            assert_eq!(d.users_in_flight(), 0, "after {name}: {e}");
        }
        let e = d.token(&User::Account("x@NO.REALM".into()), "HTTP/b", Token::Spnego, None).unwrap_err();
        assert_eq!(d.users_in_flight(), 0, "{e}");
        assert_eq!(d.stats().errors.load(Ordering::Relaxed), 4);
    }

    #[test]
    fn the_lock_leaves_with_its_last_holder_and_only_then() {
        let flights = Mutex::new(HashMap::new());
        let bob = User::Account("bob@AD.TEST".into());
        let first = Flight::join(&flights, &bob);
        let waiter = Flight::join(&flights, &bob);
        assert!(Arc::ptr_eq(&first.turn, &waiter.turn), "one lock per user");
        drop(first);
        assert_eq!(lock(&flights).len(), 1, "a waiter still needs the same lock");
        let late = Flight::join(&flights, &bob);
        assert!(Arc::ptr_eq(&late.turn, &waiter.turn), "a newcomer queues behind the waiter");
        drop(waiter);
        drop(late);
        assert!(lock(&flights).is_empty());
        // A holder whose entry was replaced (it cannot be, but if it were)
        // does not remove the newer one.
        let stale = Flight::join(&flights, &bob);
        lock(&flights).insert(bob.clone(), Arc::default());
        drop(stale);
        assert_eq!(lock(&flights).len(), 1);
    }

    #[test]
    fn the_lock_leaves_when_its_holder_panics() {
        let flights = Mutex::new(HashMap::new());
        let bob = User::Account("bob@AD.TEST".into());
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let flight = Flight::join(&flights, &bob);
            let _turn = lock(&flight.turn);
            panic!("MIT failed in an unexpected way");
        }));
        assert!(result.is_err());
        assert!(lock(&flights).is_empty());
    }

    /// Accepting needs only the keytab: a missing or empty one is a keytab
    /// error (not "no credentials cache", as MIT words it).
    #[test]
    fn an_acceptor_without_a_usable_keytab_is_a_keytab_error() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.keytab");
        std::fs::write(&empty, b"").unwrap();
        let header_only = dir.path().join("header-only.keytab");
        std::fs::write(&header_only, [0x05, 0x02]).unwrap();
        let garbage = dir.path().join("garbage.keytab");
        std::fs::write(&garbage, b"not a keytab at all").unwrap();
        for keytab in [dir.path().join("missing.keytab"), empty, header_only, garbage] {
            let d = Delegator::new("svc@NO.REALM", &keytab.to_string_lossy(), "NO.REALM");
            let e = d.accept_only().err().unwrap_or_else(|| panic!("{}", keytab.display()));
            eprintln!("{}: {} {e}", keytab.display(), e.code_name());
            assert_eq!(e.kind(), Kind::Keytab, "{}: {e}", keytab.display());
        }
    }

    /// An MIT keytab (format 0x0502) of `(principal, kvno, enctype)` entries,
    /// each with a zero key of 16 bytes.
    fn keytab(entries: &[(&str, u8, u16)]) -> Vec<u8> {
        let mut kt = vec![0x05, 0x02];
        for (principal, kvno, enctype) in entries {
            let (name, realm) = principal.split_once('@').unwrap();
            let parts: Vec<&str> = name.split('/').collect();
            let mut e = (parts.len() as u16).to_be_bytes().to_vec();
            for s in std::iter::once(realm).chain(parts) {
                e.extend_from_slice(&(s.len() as u16).to_be_bytes());
                e.extend_from_slice(s.as_bytes());
            }
            e.extend_from_slice(&1u32.to_be_bytes());
            e.extend_from_slice(&0u32.to_be_bytes());
            e.push(*kvno);
            e.extend_from_slice(&enctype.to_be_bytes());
            e.extend_from_slice(&16u16.to_be_bytes());
            e.extend_from_slice(&[0u8; 16]);
            kt.extend_from_slice(&(e.len() as i32).to_be_bytes());
            kt.extend(e);
        }
        kt
    }

    /// MIT reads the keytab: the newest kvno's key types of the principal
    /// asked for, nobody else's.
    #[test]
    fn the_keytab_key_types_are_mits_reading() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.keytab");
        std::fs::write(
            &path,
            keytab(&[
                ("svc@NO.REALM", 1, 18),
                ("svc@NO.REALM", 2, 23),
                ("svc@NO.REALM", 2, 17),
                ("HTTP/svc.no.realm@NO.REALM", 3, 20),
                ("svc@OTHER.REALM", 5, 19),
            ]),
        )
        .unwrap();
        let name = format!("FILE:{}", path.display());
        assert_eq!(ffi::keytab_enctypes(&name, "svc@NO.REALM"), Ok(vec![23, 17]));
        assert_eq!(ffi::keytab_enctypes(&name, "HTTP/svc.no.realm@NO.REALM"), Ok(vec![20]));
        assert_eq!(ffi::keytab_enctypes(&name, "nobody@NO.REALM"), Ok(vec![]));
        assert!(ffi::keytab_enctypes("FILE:/nonexistent/kcd-unit.keytab", "svc@NO.REALM").is_err());
        std::fs::write(&path, b"not a keytab").unwrap();
        assert!(ffi::keytab_enctypes(&name, "svc@NO.REALM").is_err());
    }

    /// A keytab whose newest keys for the account are all RC4 (or DES) gets
    /// no TGT: refused before MIT's AS exchange (the realm here has no KDC),
    /// unless RC4 is allowed.
    #[test]
    fn no_tgt_from_a_keytab_without_an_aes_key() {
        std::env::set_var("KRB5_CONFIG", "/dev/null");
        std::env::set_var("KRB5CCNAME", "MEMORY:kcd-unit-empty-default");
        let dir = tempfile::tempdir().unwrap();
        let user = User::Account("bob@NO.REALM".into());
        for (entries, refused) in [
            (&[("svc@NO.REALM", 2, 23)][..], true),
            (&[("svc@NO.REALM", 1, 18), ("svc@NO.REALM", 2, 23)], true),
            (&[("svc@NO.REALM", 2, 3), ("svc@NO.REALM", 2, 1)], true),
            (&[("svc@NO.REALM", 2, 23), ("svc@NO.REALM", 2, 18)], false),
            (&[("svc@NO.REALM", 2, 17), ("HTTP/svc@NO.REALM", 2, 23)], false),
        ] {
            let path = dir.path().join("k.keytab");
            std::fs::write(&path, keytab(entries)).unwrap();
            let d = Delegator::new("svc@NO.REALM", &path.to_string_lossy(), "NO.REALM");
            let e = d.check_s4u2self(&user).unwrap_err();
            assert_eq!(e.kind() == Kind::EtypeNoSupp, refused, "{entries:?}: {e}");
            if refused {
                assert!(e.to_string().starts_with("the keytab holds no AES key for svc@NO.REALM, only "), "{e}");
                assert_eq!(e.code_name(), "KRB5_NOPERM_ETYPE");
            }
            let d = Delegator::new("svc@NO.REALM", &path.to_string_lossy(), "NO.REALM").with_rc4(true);
            let e = d.check_s4u2self(&user).unwrap_err();
            let des = entries.iter().all(|(_, _, t)| *t == 1 || *t == 3);
            assert_eq!(e.kind() == Kind::EtypeNoSupp, des, "RC4 allowed, {entries:?}: {e}");
        }
    }

    #[test]
    fn a_bad_spn_is_refused_before_any_kdc_is_asked() {
        let d = Delegator::new("svc@NO.REALM", "/nonexistent/kcd-unit.keytab", "NO.REALM");
        let e = d.token(&User::Account("x@NO.REALM".into()), "HTTP/", Token::Spnego, None).unwrap_err();
        assert_eq!(e.kind(), Kind::BadName, "{e}");
        assert_eq!(d.stats().s4u2self.load(Ordering::Relaxed), 0);
        assert_eq!(d.check_acceptor("not-an-spn").unwrap_err().kind(), Kind::BadName);
        let token = [0u8; 4];
        assert_eq!(d.accept(&token, "HTTP/a", None).unwrap_err().kind(), Kind::BadToken);
    }
}
