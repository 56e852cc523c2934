//! `Authorization: Basic` (RFC 7617), over TLS only (the loader refuses it on
//! plain listeners): ActiveSync and scripts send the domain password on every
//! request.
//!
//! Where `[domain]` has a keytab, the password is checked the Kerberos way: an
//! AS exchange for the user, then a ticket for gatehouse's own SPN accepted
//! with gatehouse's key (so a forged KDC answer cannot pass), through
//! `kcd::Delegator::check_password`. That ticket is, like a Negotiate
//! client's, the evidence for delegation. Without a keytab, the `[accounts]`
//! NTLM uses check it (the file's NT hash, in constant time, or winbind's
//! plaintext logon), and delegation goes through S4U2Self. Either way the
//! password is never sent to the backend (unless the site forwards Basic).
//! The extranet lockout counts failures as for NTLM, and a checked password
//! is remembered for `[basic] cache` as a salted SHA-256 (compared in constant
//! time), so that a client sending it on every request costs one check per
//! period, not per request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{refuse, refuse_as, service_unavailable, Evidence, User, Verdict};
use super::{Authenticator, Client};
use crate::accounts::Accounts;
use crate::accounts::CheckError;
use crate::config::{Domain, Scheme};

/// Users whose password was checked recently.
pub struct Remembered {
    salt: [u8; 32],
    users: Mutex<HashMap<String, Entry>>,
}

struct Entry {
    digest: [u8; 32],
    until: Instant,
    user: Arc<User>,
}

const MAX_REMEMBERED: usize = 100_000;

impl Default for Remembered {
    fn default() -> Self {
        let mut salt = [0u8; 32];
        // Without randomness the cache still works; it is only less opaque in
        // a memory dump.
        let _ = getrandom::fill(&mut salt);
        Remembered { salt, users: Mutex::new(HashMap::new()) }
    }
}

impl Remembered {
    fn digest(&self, user: &str, password: &str) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.salt);
        h.update(user.as_bytes());
        h.update([0]);
        h.update(password.as_bytes());
        h.finalize().into()
    }

    fn get(&self, user: &str, password: &str) -> Option<Arc<User>> {
        let key = user.to_lowercase();
        let digest = self.digest(&key, password);
        let users = self.users.lock().unwrap_or_else(|e| e.into_inner());
        let e = users.get(&key).filter(|e| e.until > Instant::now())?;
        bool::from(e.digest.ct_eq(&digest)).then(|| e.user.clone())
    }

    fn put(&self, user: &str, password: &str, checked: Arc<User>, ttl: Duration) {
        if ttl.is_zero() {
            return;
        }
        let key = user.to_lowercase();
        let digest = self.digest(&key, password);
        let mut users = self.users.lock().unwrap_or_else(|e| e.into_inner());
        if users.len() >= MAX_REMEMBERED {
            let now = Instant::now();
            users.retain(|_, e| e.until > now);
        }
        users.insert(key, Entry { digest, until: Instant::now() + ttl, user: checked });
    }

    /// A wrong password for a user forgets the remembered one (it may have been
    /// changed).
    fn forget(&self, user: &str) {
        self.users.lock().unwrap_or_else(|e| e.into_inner()).remove(&user.to_lowercase());
    }
}

/// Whether the KDC's refusal says the account exists: a wrong password, a
/// locked, disabled or expired account, an expired password (by the KDC's
/// error code, see [`kcd::Error::names_an_account`]). An unknown name, or no
/// answer, tells nothing.
fn evidence_of(error: &kcd::Error) -> Evidence {
    if error.names_an_account() {
        Evidence::Account
    } else {
        Evidence::Unproven
    }
}

/// A logon name as typed, resolved against `[domain]` (when there is one).
#[derive(Debug, PartialEq, Eq)]
enum Logon {
    /// `DOMAIN\user`, `user@realm` or `user`: an account of `domain` (the
    /// NetBIOS name; empty when nothing says which).
    Account { domain: String, user: String },
    /// `user@suffix` with another suffix than the realm: a UPN, which only the
    /// domain can resolve.
    Upn(String),
}

/// `DOMAIN\user` (our domain only, when `[domain]` says which that is),
/// `user@upn-suffix`, or `user`.
fn logon(typed: &str, domain: Option<&Domain>) -> Result<Logon, String> {
    let netbios = domain.map_or(String::new(), |d| d.netbios_name.clone());
    if let Some((d, u)) = typed.split_once('\\') {
        if u.is_empty() {
            return Err(format!("{typed}: no user name after the domain"));
        }
        return match domain {
            Some(ours) if d.eq_ignore_ascii_case(&ours.netbios_name) || d.eq_ignore_ascii_case(&ours.realm) => {
                Ok(Logon::Account { domain: netbios, user: u.to_owned() })
            }
            Some(ours) => Err(format!("{typed}: not a user of domain {}", ours.netbios_name)),
            None => Ok(Logon::Account { domain: d.to_uppercase(), user: u.to_owned() }),
        };
    }
    match typed.rsplit_once('@') {
        // user@ad.test in realm AD.TEST is the account itself (the default UPN).
        Some((u, d)) if !u.is_empty() && domain.is_some_and(|ours| d.eq_ignore_ascii_case(&ours.realm)) => {
            Ok(Logon::Account { domain: netbios, user: u.to_owned() })
        }
        Some(_) => Ok(Logon::Upn(typed.to_owned())),
        None => Ok(Logon::Account { domain: netbios, user: typed.to_owned() }),
    }
}

/// One request with `Authorization: Basic`.
///
/// Which check runs: the KDC where `[domain]` has a keytab, a service
/// principal and an acceptor SPN (the AS exchange proves the password with
/// gatehouse's own key, and the user's ticket is then the delegation
/// evidence, without S4U2Self); else the `[accounts]` NTLM uses (the file's NT
/// hash, or winbind's plaintext logon), after which KCD goes through
/// S4U2Self as for an NTLM user. Never both: one source of truth per
/// configuration, so that a password cannot pass one and fail the other.
pub async fn check(credentials: &[u8], ctx: Client<'_>, setup: &Authenticator, schemes: &[Scheme]) -> Verdict {
    let Some((typed, password)) = std::str::from_utf8(credentials).ok().and_then(|c| c.split_once(':')) else {
        return refuse(schemes, "Basic credentials are not UTF-8 `user:password`".into());
    };
    let remembered = &setup.basic;
    if let Some(user) = remembered.get(typed, password) {
        return Verdict::Pass(user, None);
    }
    match sign_in(typed, password, ctx.info.peer.ip(), setup, Scheme::Basic).await {
        Ok(user) => {
            remembered.put(typed, password, user.clone(), setup.basic_cache);
            Verdict::Pass(user, None)
        }
        Err(Refusal::Unavailable(why)) => service_unavailable(format!("{typed}: cannot check the password: {why}")),
        Err(refusal) => {
            if refusal.counted() {
                remembered.forget(typed);
            }
            refuse_as(schemes, refusal.describe(typed, "Basic logon"), refusal.cause())
        }
    }
}

/// Why a user name and password did not sign the user in, in the classes a
/// sign-in page tells apart. The text is for the log, never for the page.
#[derive(Debug)]
pub enum Refusal {
    /// A name AD cannot hold, an unprintable one, or another domain's: the
    /// domain was not asked.
    Name(String),
    /// gatehouse's extranet lockout stopped asking the domain for this name
    /// or this client.
    Throttled(String),
    /// Wrong password, or no such user: one answer for both.
    Wrong(String),
    /// The domain says the account is disabled, locked out or expired.
    Revoked(String),
    /// The domain says the password has expired or must change at next logon.
    Expired(String),
    /// Nothing could check it (no KDC, winbind down): nobody's fault.
    Unavailable(String),
}

impl Refusal {
    /// The domain answered, and the lockout counted it.
    fn counted(&self) -> bool {
        matches!(self, Refusal::Wrong(_) | Refusal::Revoked(_) | Refusal::Expired(_))
    }

    /// The class the sign-in counters put it in.
    pub fn cause(&self) -> crate::metrics::Cause {
        use crate::metrics::Cause;
        match self {
            Refusal::Name(_) => Cause::BadMessage,
            Refusal::Throttled(_) => Cause::LockedOut,
            Refusal::Wrong(_) | Refusal::Revoked(_) | Refusal::Expired(_) => Cause::WrongPassword,
            Refusal::Unavailable(_) => Cause::Unavailable,
        }
    }

    /// The log's words, as Basic has always written them.
    pub fn describe(&self, typed: &str, what: &str) -> String {
        match self {
            Refusal::Name(why) => format!("{what} name: {why}; the domain was not asked"),
            Refusal::Throttled(why) => format!("{typed}: {why}; the password was not sent to the domain"),
            Refusal::Wrong(why) | Refusal::Revoked(why) | Refusal::Expired(why) => {
                format!("{typed}: {what} refused: {why}")
            }
            Refusal::Unavailable(why) => format!("{typed}: cannot check the password: {why}"),
        }
    }
}

/// What the domain's refusal of a password says about the account.
fn classify_kdc(e: &kcd::Error) -> fn(String) -> Refusal {
    match e.kind() {
        kcd::Kind::KeyExpired => Refusal::Expired,
        kcd::Kind::Revoked => Refusal::Revoked,
        _ => Refusal::Wrong,
    }
}

/// The same from winbind's NT status (by name or by its description).
fn classify_winbind(why: &str) -> fn(String) -> Refusal {
    let lower = why.to_ascii_lowercase();
    let any = |words: &[&str]| words.iter().any(|w| lower.contains(w));
    if any(&["password_expired", "password has expired", "password_must_change", "must be changed"]) {
        Refusal::Expired
    } else if any(&[
        "account_locked_out",
        "locked out",
        "account_disabled",
        "disabled",
        "account_expired",
        "account has expired",
    ]) {
        Refusal::Revoked
    } else {
        Refusal::Wrong
    }
}

/// A user name and password checked exactly as Basic's are (the KDC, or
/// `[accounts]`; the lockout in front), by the client at `client`: the user
/// signed in under `scheme`, or why not. The password goes nowhere else.
pub async fn sign_in(
    typed: &str,
    password: &str,
    client: std::net::IpAddr,
    setup: &Authenticator,
    scheme: Scheme,
) -> Result<Arc<User>, Refusal> {
    if typed.is_empty() || password.is_empty() || typed.chars().any(char::is_control) {
        return Err(Refusal::Name("an empty or unprintable user name or password".into()));
    }
    super::names::check_typed(typed).map_err(Refusal::Name)?;
    let domain = setup.domain.as_ref();
    let kdc = match (setup.basic_by_kdc, setup.delegator.clone(), domain) {
        // Any of gatehouse's own SPNs proves the KDC's answer: the first.
        (true, Some(delegator), Some(d)) => d.acceptor_spn.first().cloned().map(|spn| (delegator, spn)),
        _ => None,
    };
    if kdc.is_none() && setup.accounts.is_none() {
        return Err(Refusal::Unavailable(
            "passwords are not configured: no [accounts], and no [domain] keytab, service_principal and acceptor_spn"
                .into(),
        ));
    }
    let name = logon(typed, domain).map_err(Refusal::Name)?;
    let lockout = &setup.lockout;
    lockout.allowed(typed, client, &setup.lockout_limits).map_err(Refusal::Throttled)?;
    let checked = match (kdc, domain) {
        (Some((delegator, spn)), Some(domain)) => by_kdc(delegator, spn, domain, name, password).await,
        _ => by_accounts(setup, name, password).await,
    };
    let checked = match checked {
        Ok(who) => who,
        Err((CheckError::Rejected(why, evidence), class)) => {
            lockout.failed(typed, client, evidence, &setup.lockout_limits);
            return Err(class(why));
        }
        Err((CheckError::Unavailable(why), _)) => return Err(Refusal::Unavailable(why)),
    };
    lockout.succeeded(typed, &setup.lockout_limits);
    let user = User::new(checked.name, scheme, checked.principal).map_err(Refusal::Name)?;
    Ok(match (checked.of_domain, domain) {
        // A trusted domain's user is known by the sign-in alone.
        (true, Some(d)) if user.name.split_once('\\').is_none_or(|(n, _)| n.eq_ignore_ascii_case(&d.netbios_name)) => {
            Arc::new(User { logon: checked.logon, ..user.of_domain(&d.realm) })
        }
        _ => Arc::new(user),
    })
}

/// The KDC's name for a typed logon name of our domain, and the KDC it is
/// checked by, where Basic's passwords go to the KDC (else None: an accounts
/// file or winbind, which change no passwords here).
pub(super) fn kdc_user(typed: &str, setup: &Authenticator) -> Result<Option<kcd::User>, Refusal> {
    let (true, Some(domain)) = (setup.basic_by_kdc, setup.domain.as_ref()) else { return Ok(None) };
    if typed.is_empty() || typed.chars().any(char::is_control) {
        return Err(Refusal::Name("an empty or unprintable user name".into()));
    }
    super::names::check_typed(typed).map_err(Refusal::Name)?;
    Ok(Some(match logon(typed, Some(domain)).map_err(Refusal::Name)? {
        Logon::Account { user, .. } => kcd::User::Account(format!("{user}@{}", domain.realm)),
        Logon::Upn(upn) => kcd::User::Upn { upn, account: String::new() },
    }))
}

/// What the KDC's refusal of a password says, for the lockout and the page.
pub(super) fn kdc_refusal(e: &kcd::Error) -> (Evidence, Refusal) {
    (evidence_of(e), classify_kdc(e)(e.to_string()))
}

/// A refused check, with what its refusal means for a sign-in page.
type Failed = (CheckError, fn(String) -> Refusal);

/// The password checked with an AS exchange and a ticket for gatehouse's own
/// SPN; returns `DOMAIN\user` and the Kerberos principal.
async fn by_kdc(
    delegator: Arc<kcd::Delegator>,
    spn: String,
    domain: &Domain,
    name: Logon,
    password: &str,
) -> Result<Checked, Failed> {
    let user = match name {
        Logon::Account { user, .. } => kcd::User::Account(format!("{user}@{}", domain.realm)),
        // Any suffix but the realm's goes to the KDC as an enterprise name.
        Logon::Upn(upn) => kcd::User::Upn { upn, account: String::new() },
    };
    let secret = password.to_owned();
    let accepted = match tokio::task::spawn_blocking(move || delegator.check_password(&user, &secret, &spn)).await {
        Ok(Ok(a)) => a,
        Ok(Err(e)) if e.is_unreachable() => return Err((CheckError::Unavailable(e.to_string()), Refusal::Wrong)),
        Ok(Err(e)) => return Err((CheckError::Rejected(e.to_string(), evidence_of(&e)), classify_kdc(&e))),
        Err(e) => {
            return Err((CheckError::Unavailable(format!("the password check did not run: {e}")), Refusal::Wrong))
        }
    };
    let name = match accepted.client.rsplit_once('@') {
        Some((u, realm)) if realm.eq_ignore_ascii_case(&domain.realm) => format!("{}\\{u}", domain.netbios_name),
        _ => accepted.client.clone(),
    };
    let logon = accepted.logon.map(|i| Arc::new(kcd::Logon::new(i)));
    Ok(Checked { name, principal: Some(accepted.client), logon, of_domain: true })
}

/// Who a Basic password check found.
struct Checked {
    /// `DOMAIN\user`, or as typed for a file's user without a domain.
    name: String,
    /// The Kerberos principal, when the KDC checked the password.
    principal: Option<String>,
    logon: Option<Arc<kcd::Logon>>,
    /// An account of the domain (the KDC or winbind checked it), not a file's.
    of_domain: bool,
}

/// The password checked by `[accounts]`: the file's NT hash, or winbind. No
/// principal: delegation asks for the user's ticket with S4U2Self.
async fn by_accounts(setup: &Authenticator, name: Logon, password: &str) -> Result<Checked, Failed> {
    let qualified = match &name {
        Logon::Account { domain, user } if domain.is_empty() => user.clone(),
        Logon::Account { domain, user } => format!("{domain}\\{user}"),
        Logon::Upn(upn) => upn.clone(),
    };
    let of_domain = match setup.accounts.as_deref() {
        Some(Accounts::File(users)) => {
            let (domain, user) = match &name {
                Logon::Account { domain, user } => (domain.as_str(), user.as_str()),
                Logon::Upn(upn) => ("", upn.as_str()),
            };
            crate::accounts::check_file_password(users, domain, user, password)
                .map_err(|e| (e, Refusal::Wrong as _))?;
            false
        }
        Some(Accounts::Winbind(winbind)) => {
            winbind.check_password(&qualified, password).await.map_err(|e| {
                let class = match &e {
                    CheckError::Rejected(why, _) => classify_winbind(why),
                    CheckError::Unavailable(_) => Refusal::Wrong,
                };
                (e, class)
            })?;
            true
        }
        None => return Err((CheckError::Unavailable("no [accounts] configured".into()), Refusal::Wrong)),
    };
    Ok(Checked { name: qualified, principal: None, logon: None, of_domain })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kdc_answers_that_name_an_account() {
        use kcd::Kind;
        for (kind, evidence) in [
            (Kind::PreauthFailed, Evidence::Account),
            (Kind::Revoked, Evidence::Account),
            (Kind::KeyExpired, Evidence::Account),
            (Kind::ClientUnknown, Evidence::Unproven),
            (Kind::Unreachable, Evidence::Unproven),
            (Kind::Other, Evidence::Unproven),
        ] {
            // The words are the wrong ones on purpose: only the kind counts.
            let e = kcd::Error::new(kind, "Preauthentication failed; Client not found in Kerberos database");
            assert_eq!(evidence_of(&e), evidence, "{kind}");
        }
    }

    #[test]
    fn logon_names() {
        let d = Domain {
            realm: "AD.TEST".into(),
            netbios_name: "ADTEST".into(),
            computer_netbios: "G".into(),
            computer_dns: "g.ad.test".into(),
            krb5_conf: None,
            keytab: None,
            service_principal: None,
            acceptor_spn: Vec::new(),
            allow_rc4: false,
            credential_cache_size: kcd::DEFAULT_CACHE_SIZE,
        };
        let account = |domain: &str, user: &str| Ok(Logon::Account { domain: domain.into(), user: user.into() });
        assert_eq!(logon("ADTEST\\bob", Some(&d)), account("ADTEST", "bob"));
        assert_eq!(logon("adtest\\bob", Some(&d)), account("ADTEST", "bob"));
        assert_eq!(logon("AD.TEST\\bob", Some(&d)), account("ADTEST", "bob"));
        assert_eq!(logon("bob@ad.test", Some(&d)), account("ADTEST", "bob"));
        assert_eq!(logon("bob", Some(&d)), account("ADTEST", "bob"));
        assert_eq!(logon("bob@corp.example", Some(&d)), Ok(Logon::Upn("bob@corp.example".into())));
        assert!(logon("OTHER\\bob", Some(&d)).unwrap_err().contains("not a user of domain ADTEST"));
        assert!(logon("ADTEST\\", Some(&d)).is_err());
        // Without [domain] (file accounts on a Basic-only site) nothing says
        // which domain is ours: the typed one, or none.
        assert_eq!(logon("other\\bob", None), account("OTHER", "bob"));
        assert_eq!(logon("bob", None), account("", "bob"));
        assert_eq!(logon("bob@ad.test", None), Ok(Logon::Upn("bob@ad.test".into())));
    }
}
