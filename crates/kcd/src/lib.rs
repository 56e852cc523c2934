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
//! Status: the engine and its lab test. The proxy does not use it yet: the
//! per-user credential cache, single flight per user, error translation and
//! `gatehouse doctor` are the rest of the KCD issue.

mod ffi;

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use libgssapi::context::{ClientCtx, CtxFlags};
use libgssapi::credential::{Cred, CredUsage};
use libgssapi::name::Name;
use libgssapi::oid::{OidSet, GSS_MECH_KRB5, GSS_MECH_SPNEGO, GSS_NT_KRB5_PRINCIPAL};

/// What the backend expects in `Authorization: Negotiate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

/// The delegating service account.
pub struct Delegator {
    service: Mutex<Cred>,
    realm: String,
}

static CACHE_SERIAL: AtomicU64 = AtomicU64::new(0);

impl Delegator {
    /// `principal` like `svc-proxy@AD.TEST`; `keytab` a file path.
    pub fn new(principal: &str, keytab: &str, realm: &str) -> Result<Delegator, Error> {
        // MEMORY cache names are global in the process: each service credential gets its own.
        let ccache =
            format!("MEMORY:gatehouse-kcd-{}-{}", std::process::id(), CACHE_SERIAL.fetch_add(1, Ordering::Relaxed));
        let cred = ffi::acquire_from_keytab(principal, &format!("FILE:{keytab}"), &ccache)
            .map_err(|e| gss("acquiring the service credential from the keytab", e))?;
        Ok(Delegator { service: Mutex::new(cred), realm: realm.to_ascii_uppercase() })
    }

    /// A token for `spn` (e.g. `HTTP/backend.ad.test`) in the name of `user`
    /// (`bob@AD.TEST`). Blocks.
    pub fn token(&self, user: &str, spn: &str, kind: Token) -> Result<Vec<u8>, Error> {
        let mech = match kind {
            Token::Spnego => GSS_MECH_SPNEGO,
            Token::Kerberos => GSS_MECH_KRB5,
        };
        let user_name = Name::new(user.as_bytes(), Some(GSS_NT_KRB5_PRINCIPAL)).map_err(|e| gss("user name", e))?;
        let mut mechs = OidSet::new();
        mechs.add(mech).map_err(|e| gss("mechanism set", e))?;
        let impersonated = {
            let service = self.service.lock().unwrap_or_else(|e| e.into_inner());
            service
                .impersonate(&user_name, None, CredUsage::Initiate, Some(&mechs))
                .map_err(|e| gss("S4U2Self (impersonating the user)", e))?
        };
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
        let target = if spn.contains('@') { spn.to_owned() } else { format!("{spn}@{}", self.realm) };
        let target = Name::new(target.as_bytes(), Some(GSS_NT_KRB5_PRINCIPAL)).map_err(|e| gss("target name", e))?;
        let mut ctx = ClientCtx::new(Some(impersonated), target, CtxFlags::empty(), Some(mech));
        let token = ctx.step(None, None).map_err(|e| gss("S4U2Proxy (ticket for the backend)", e))?;
        token.map(|t| t.to_vec()).ok_or_else(|| Error("GSSAPI produced no token".into()))
    }
}

fn same_principal(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}
