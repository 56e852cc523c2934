//! Kerberos Constrained Delegation: obtain a service ticket for a backend *as a
//! user*, with the service account's own key and no password of the user's.
//!
//! S4U2Self (`gss_acquire_cred_impersonate_name`) gives the service a ticket to
//! itself in the user's name; S4U2Proxy (performed by `gss_init_sec_context` with
//! that impersonated credential) turns it into a ticket for the backend's SPN,
//! if the account may delegate to it. MIT krb5 does both; this crate only drives
//! it safely:
//!
//! - the service credential comes from its keytab into a memory cache of its own
//!   (`ffi.rs`), never from the process's default cache;
//! - the mechanism asked of `init_sec_context` is checked to be in the
//!   impersonated credential (MIT otherwise falls back to the default
//!   credential: a request meant for bob could reach the backend as alice), and
//!   the credential's name is checked to be the user's.
//!
//! GSSAPI calls block (they may talk to the KDC): callers run them off their
//! async workers.
//!
//! Status: used by the proxy for `delegation = "kcd"` sites. Error translation
//! into causes and remedies and `gatehouse doctor` are the rest of the KCD issue.

mod explain;
mod ffi;

pub use explain::{explain, Explanation};

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use libgssapi::context::{ClientCtx, CtxFlags};
use libgssapi::credential::{Cred, CredUsage};
use libgssapi::name::Name;
use libgssapi::oid::{OidSet, GSS_MECH_KRB5, GSS_MECH_SPNEGO, GSS_NT_KRB5_PRINCIPAL};

/// What the backend expects in `Authorization: Negotiate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Token {
    /// SPNEGO-wrapped (IIS and most servers).
    Spnego,
    /// The raw Kerberos AP-REQ (servers that want no SPNEGO wrapper).
    Kerberos,
}

#[derive(Debug)]
pub struct Error(pub String);

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

fn gss(step: &str, e: libgssapi::error::Error) -> Error {
    Error(format!("{step}: {e} (major 0x{:x}, minor {})", e.major.bits(), e.minor))
}

/// The delegating service account, and the users it has impersonated.
///
/// An impersonated credential is kept per user and mechanism until shortly
/// before it expires: MIT keeps the S4U2Proxy tickets inside it, so in steady
/// state a token costs no KDC round trip. One S4U2Self per key is in flight at a
/// time; concurrent requests for the same user wait for it.
pub struct Delegator {
    principal: String,
    keytab: String,
    realm: String,
    /// Acquired on first use (the KDC may be down when gatehouse starts), and again
    /// after a failure.
    service: Mutex<Option<Cred>>,
    cache: Mutex<HashMap<Key, Entry>>,
    /// One lock per key while its S4U2Self is in flight.
    flights: Mutex<HashMap<Key, Arc<Mutex<()>>>>,
    stats: Stats,
}

/// (user principal, token kind)
type Key = (String, Token);

struct Entry {
    cred: Cred,
    until: Instant,
}

/// Counters for metrics and tests.
#[derive(Default)]
pub struct Stats {
    pub cache_hits: AtomicU64,
    pub s4u2self: AtomicU64,
    pub errors: AtomicU64,
}

/// Renew this long before a credential expires.
const MARGIN: Duration = Duration::from_secs(5 * 60);
const MAX_USERS: usize = 50_000;

static CACHE_SERIAL: AtomicU64 = AtomicU64::new(0);

impl Delegator {
    /// `principal` like `svc-proxy@AD.TEST`; `keytab` a file path. Contacts no KDC.
    pub fn new(principal: &str, keytab: &str, realm: &str) -> Delegator {
        Delegator {
            principal: principal.to_owned(),
            keytab: keytab.to_owned(),
            realm: realm.to_ascii_uppercase(),
            service: Mutex::new(None),
            cache: Mutex::new(HashMap::new()),
            flights: Mutex::new(HashMap::new()),
            stats: Stats::default(),
        }
    }

    pub fn principal(&self) -> &str {
        &self.principal
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    fn service(&self) -> Result<Cred, Error> {
        let mut slot = self.service.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        // MEMORY cache names are global in the process: each credential gets its own.
        let ccache =
            format!("MEMORY:gatehouse-kcd-{}-{}", std::process::id(), CACHE_SERIAL.fetch_add(1, Ordering::Relaxed));
        let cred = ffi::acquire_from_keytab(&self.principal, &format!("FILE:{}", self.keytab), &ccache)
            .map_err(|e| gss("acquiring the service credential from the keytab", e))?;
        *slot = Some(cred.clone());
        Ok(cred)
    }

    /// A token for `spn` (e.g. `HTTP/backend.ad.test`) in the name of `user`
    /// (`bob@AD.TEST`). Blocks; may talk to the KDC. `channel_bindings` is the
    /// application data of the channel bindings of the connection the token will
    /// travel on (for TLS: `tls-server-end-point:` and the certificate hash, see
    /// [`tls_server_end_point`]); Extended Protection on the backend checks it.
    pub fn token(&self, user: &str, spn: &str, kind: Token, channel_bindings: Option<&[u8]>) -> Result<Vec<u8>, Error> {
        let result = self.token_inner(user, spn, kind, channel_bindings);
        if result.is_err() {
            self.stats.errors.fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    /// S4U2Self alone (which needs the service account's TGT first): for
    /// `gatehouse doctor`, to tell a broken account from a refused delegation.
    pub fn check_s4u2self(&self, user: &str, kind: Token) -> Result<(), Error> {
        self.impersonated(user, kind).map(|_| ())
    }

    fn token_inner(
        &self,
        user: &str,
        spn: &str,
        kind: Token,
        channel_bindings: Option<&[u8]>,
    ) -> Result<Vec<u8>, Error> {
        let mech = mech(kind);
        let impersonated = self.impersonated(user, kind)?;
        let target = if spn.contains('@') { spn.to_owned() } else { format!("{spn}@{}", self.realm) };
        let target = Name::new(target.as_bytes(), Some(GSS_NT_KRB5_PRINCIPAL)).map_err(|e| gss("target name", e))?;
        let mut ctx = ClientCtx::new(Some(impersonated), target, CtxFlags::empty(), Some(mech));
        let token = ctx.step(None, channel_bindings).map_err(|e| gss("S4U2Proxy (ticket for the backend)", e))?;
        token.map(|t| t.to_vec()).ok_or_else(|| Error("GSSAPI produced no token".into()))
    }

    /// The cached impersonated credential for `user`, or a new one (S4U2Self).
    fn impersonated(&self, user: &str, kind: Token) -> Result<Cred, Error> {
        let key = (user.to_owned(), kind);
        if let Some(cred) = self.cached(&key) {
            return Ok(cred);
        }
        let flight = self.flights.lock().unwrap_or_else(|e| e.into_inner()).entry(key.clone()).or_default().clone();
        let _turn = flight.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(cred) = self.cached(&key) {
            return Ok(cred);
        }
        let cred = self.s4u2self(user, kind);
        if cred.is_err() {
            // A service credential that stopped working (KDC restarted, keys
            // changed) is acquired afresh next time.
            *self.service.lock().unwrap_or_else(|e| e.into_inner()) = None;
        }
        let cred = cred?;
        let lifetime = cred.lifetime().unwrap_or(Duration::from_secs(3600));
        let until = Instant::now() + lifetime.saturating_sub(MARGIN).max(Duration::from_secs(60));
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= MAX_USERS {
            let now = Instant::now();
            cache.retain(|_, e| e.until > now);
        }
        cache.insert(key.clone(), Entry { cred: cred.clone(), until });
        self.flights.lock().unwrap_or_else(|e| e.into_inner()).remove(&key);
        Ok(cred)
    }

    fn cached(&self, key: &Key) -> Option<Cred> {
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        let e = cache.get(key).filter(|e| e.until > Instant::now())?;
        self.stats.cache_hits.fetch_add(1, Ordering::Relaxed);
        Some(e.cred.clone())
    }

    fn s4u2self(&self, user: &str, kind: Token) -> Result<Cred, Error> {
        let mech = mech(kind);
        let service = self.service()?;
        let user_name = Name::new(user.as_bytes(), Some(GSS_NT_KRB5_PRINCIPAL)).map_err(|e| gss("user name", e))?;
        let mut mechs = OidSet::new();
        mechs.add(mech).map_err(|e| gss("mechanism set", e))?;
        self.stats.s4u2self.fetch_add(1, Ordering::Relaxed);
        let impersonated = service
            .impersonate(&user_name, None, CredUsage::Initiate, Some(&mechs))
            .map_err(|e| gss("S4U2Self (impersonating the user)", e))?;
        // The two guards against MIT's silent fallback to the default credential.
        let has_mech = impersonated
            .mechanisms()
            .and_then(|m| m.contains(mech))
            .map_err(|e| gss("inspecting the impersonated credential", e))?;
        if !has_mech {
            return Err(Error("the impersonated credential lacks the requested mechanism".into()));
        }
        let cred_name = impersonated
            .name()
            .and_then(|n| n.display_name())
            .map_err(|e| gss("inspecting the impersonated credential", e))?;
        if !same_principal(&String::from_utf8_lossy(&cred_name), user) {
            return Err(Error(format!(
                "the impersonated credential is for {}, not {user}",
                String::from_utf8_lossy(&cred_name)
            )));
        }
        Ok(impersonated)
    }
}

/// The channel-binding application data for a TLS connection (RFC 5929):
/// `tls-server-end-point:` followed by the server certificate's hash.
pub fn tls_server_end_point(certificate_hash: &[u8]) -> Vec<u8> {
    let mut data = b"tls-server-end-point:".to_vec();
    data.extend_from_slice(certificate_hash);
    data
}

fn mech(kind: Token) -> libgssapi::oid::Oid<'static> {
    match kind {
        Token::Spnego => GSS_MECH_SPNEGO,
        Token::Kerberos => GSS_MECH_KRB5,
    }
}

fn same_principal(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}
