//! Passkeys and security keys (WebAuthn, through `webauthn-rs`) as a second
//! factor, behind the same protections as an authenticator app's code
//! (`second_factor`): the extranet lockout and the second factor's own count.
//!
//! A ceremony (registration or sign-in) starts with a challenge whose state
//! webauthn-rs must find again at the end. Gatehouse keeps nothing in memory
//! for it: the state travels in the page's form sealed with the key file
//! (`websession::Keys::seal`) under a scope naming the ceremony, the user
//! and the relying party, with the time it was made. It opens only for that
//! user, on that relying party, within [`CEREMONY_LIFE`]; and it is answered
//! once: its digest goes into the store (`Store::use_challenge`, one
//! transaction) before the answer is looked at, so a replayed answer, or a
//! second answer to one challenge, is refused whatever it holds.
//!
//! webauthn-rs checks the rest: the client data's type, challenge and origin
//! (the page's own `https://host:port`), the RP id's hash in the
//! authenticator data, user presence *and* user verification (a PIN or a
//! fingerprint: the `Passkey` flows require it), the signature with the
//! stored public key, that the credential is one of this user's, and the
//! signature counter against the stored one (a counter that goes back means
//! a cloned authenticator: refused).

use std::net::IpAddr;

use sha2::Digest;
use webauthn_rs::prelude::{
    Passkey, PasskeyAuthentication, PasskeyRegistration, PublicKeyCredential, RegisterPublicKeyCredential, Url, Uuid,
    Webauthn, WebauthnBuilder,
};

use super::second_factor::{count_failure, may_try, Guards};
use crate::mfa::{self, Kind, Store};

/// How long a page's ceremony may be answered: long enough to find a
/// security key in a bag, short enough that a page left open is not a
/// challenge for later.
pub const CEREMONY_LIFE: u64 = 600;

/// The largest credential a page may post (JSON); a real one is 1 to 2 KiB.
pub const MAX_CREDENTIAL: usize = 8 * 1024;

/// This host's relying party: its id (a host name, never an address) and
/// the page's origin that the browser must have signed for.
pub struct RelyingParty {
    webauthn: Webauthn,
    pub id: String,
}

impl RelyingParty {
    /// The relying party for pages on `host` (without the port) reached as
    /// `origin_host` (with it): `id` if `host` is `id` or under it, else
    /// None (an IP address, or a host outside `id`: no passkeys there).
    pub fn new(id: &str, host: &str, origin_host: &str, title: &str) -> Option<RelyingParty> {
        let under = host == id || host.strip_suffix(id).is_some_and(|p| p.ends_with('.'));
        if !under || host.parse::<IpAddr>().is_ok() || host.starts_with('[') {
            return None;
        }
        let origin = Url::parse(&format!("https://{origin_host}")).ok()?;
        let webauthn = WebauthnBuilder::new(id, &origin).ok()?.rp_name(title).build().ok()?;
        Some(RelyingParty { webauthn, id: id.to_owned() })
    }
}

/// What a page needs to start a ceremony: the options for
/// `navigator.credentials` (JSON, base64url fields) and the sealed state.
pub struct Ceremony {
    pub options: String,
    pub sealed: String,
}

/// Why a passkey did not pass (or was not added).
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// Too many attempts or failures: nothing was checked.
    Throttled(String),
    /// The page's ceremony is older than [`CEREMONY_LIFE`], or not sealed
    /// for this user and relying party.
    Expired,
    /// This challenge was answered before.
    Replayed,
    /// The answer is not JSON of a credential, or webauthn-rs refused it
    /// (its error: wrong origin, RP id, challenge, signature, another
    /// user's credential, no user verification, counter gone back).
    Invalid(String),
    /// The user has no passkey.
    NoFactor,
    /// The credential is already registered (to this user or another).
    Duplicate,
    Unavailable(String),
}

fn scope(ceremony: &str, user: &str, rp: &str) -> Vec<u8> {
    format!("gatehouse-mfa|passkey-{ceremony}|user:{}|rp:{rp}", user.to_lowercase()).into_bytes()
}

fn seal(keys: &websession::Keys, scope: &[u8], issued: u64, state: &[u8]) -> Result<String, String> {
    let mut payload = issued.to_be_bytes().to_vec();
    payload.extend_from_slice(state);
    let mut nonce = [0u8; 24];
    getrandom::fill(&mut nonce).map_err(|e| format!("no randomness: {e}"))?;
    Ok(keys.seal(scope, &payload, nonce))
}

/// Opens a ceremony's state and takes its challenge (once).
async fn open<T: serde::de::DeserializeOwned>(
    store: &dyn Store,
    keys: &websession::Keys,
    scope: &[u8],
    sealed: &str,
    now: u64,
) -> Result<T, Refused> {
    let payload = keys.open(scope, sealed).map_err(|_| Refused::Expired)?;
    let (issued, state) = payload.split_at_checked(8).ok_or(Refused::Expired)?;
    let issued = u64::from_be_bytes(issued.try_into().map_err(|_| Refused::Expired)?);
    if now.saturating_sub(issued) > CEREMONY_LIFE || issued > now.saturating_add(60) {
        return Err(Refused::Expired);
    }
    let digest: [u8; 32] = sha2::Sha256::digest(sealed.as_bytes()).into();
    let expires = issued.saturating_add(CEREMONY_LIFE + 60);
    if !store.use_challenge(digest, expires, now).await.map_err(|e| Refused::Unavailable(e.0))? {
        return Err(Refused::Replayed);
    }
    serde_json::from_slice(state).map_err(|_| Refused::Expired)
}

/// A posted answer that is not a credential, in words that quote none of it
/// (serde_json's own message may hold a piece of the input, and the log
/// never holds a credential).
fn not_a_credential(e: serde_json::Error) -> Refused {
    Refused::Invalid(format!("not a credential ({:?} error at column {})", e.classify(), e.column()))
}

/// The user handle an authenticator keeps for `user`: derived from the name,
/// so it needs no column and is the same on every gatehouse server.
fn user_handle(user: &str) -> Uuid {
    let d = sha2::Sha256::digest(format!("gatehouse-passkey-user|{}", user.to_lowercase()).as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    Uuid::from_bytes(b)
}

/// The user's passkeys, opened: (factor id, credential). A credential that
/// does not open (sealed for another user, or by a key no longer in the key
/// file) is left out and logged.
pub async fn passkeys_of(
    store: &dyn Store,
    keys: &websession::Keys,
    user: &str,
) -> Result<Vec<(i64, Passkey)>, mfa::Unavailable> {
    let mut out = Vec::new();
    for f in store.factors(user.to_owned()).await? {
        if f.kind != Kind::Passkey || !f.user.eq_ignore_ascii_case(user) {
            continue;
        }
        let opened = mfa::open_credential(keys, &f.user, &f.sealed).ok();
        match opened.and_then(|bytes| serde_json::from_slice::<Passkey>(&bytes).ok()) {
            Some(p) => out.push((f.id, p)),
            None => tracing::warn!(user = %user, factor = f.id, "passkey does not open with the key file"),
        }
    }
    Ok(out)
}

/// Starts a registration for `user`, excluding the credentials they have.
pub fn start_registration(
    rp: &RelyingParty,
    keys: &websession::Keys,
    user: &str,
    have: &[(i64, Passkey)],
    now: u64,
) -> Result<Ceremony, String> {
    let exclude = have.iter().map(|(_, p)| p.cred_id().clone()).collect::<Vec<_>>();
    let (options, state) = rp
        .webauthn
        .start_passkey_registration(user_handle(user), user, user, Some(exclude))
        .map_err(|e| format!("webauthn: {e}"))?;
    let options = serde_json::to_string(&options).map_err(|e| e.to_string())?;
    let state = serde_json::to_vec(&state).map_err(|e| e.to_string())?;
    let sealed = seal(keys, &scope("register", user, &rp.id), now, &state)?;
    Ok(Ceremony { options, sealed })
}

/// Finishes a registration: the new factor's id. Nothing is stored unless
/// webauthn-rs accepted the authenticator's answer to this user's challenge.
#[allow(clippy::too_many_arguments)]
pub async fn finish_registration(
    store: &dyn Store,
    keys: &websession::Keys,
    rp: &RelyingParty,
    user: &str,
    name: &str,
    sealed: &str,
    credential: &str,
    now: u64,
) -> Result<i64, Refused> {
    let state: PasskeyRegistration = open(store, keys, &scope("register", user, &rp.id), sealed, now).await?;
    if credential.len() > MAX_CREDENTIAL {
        return Err(Refused::Invalid("credential too long".into()));
    }
    let answer: RegisterPublicKeyCredential = serde_json::from_str(credential).map_err(not_a_credential)?;
    let passkey =
        rp.webauthn.finish_passkey_registration(&answer, &state).map_err(|e| Refused::Invalid(e.to_string()))?;
    let bytes = serde_json::to_vec(&passkey).map_err(|e| Refused::Unavailable(e.to_string()))?;
    let sealed = mfa::seal_credential(keys, user, &bytes).map_err(Refused::Unavailable)?;
    let id = passkey.cred_id().as_ref().to_vec();
    match store.add_passkey(user.to_owned(), name.to_owned(), id, sealed, now).await {
        Ok(Some(id)) => Ok(id),
        Ok(None) => Err(Refused::Duplicate),
        Err(e) => Err(Refused::Unavailable(e.0)),
    }
}

/// Starts a sign-in with `user`'s passkeys; None when they have none.
pub fn start_sign_in(
    rp: &RelyingParty,
    keys: &websession::Keys,
    user: &str,
    have: &[(i64, Passkey)],
    now: u64,
) -> Result<Option<Ceremony>, String> {
    if have.is_empty() {
        return Ok(None);
    }
    let creds: Vec<Passkey> = have.iter().map(|(_, p)| p.clone()).collect();
    let (options, state) = rp.webauthn.start_passkey_authentication(&creds).map_err(|e| format!("webauthn: {e}"))?;
    let options = serde_json::to_string(&options).map_err(|e| e.to_string())?;
    let state = serde_json::to_vec(&state).map_err(|e| e.to_string())?;
    let sealed = seal(keys, &scope("sign-in", user, &rp.id), now, &state)?;
    Ok(Some(Ceremony { options, sealed }))
}

/// Checks a passkey's answer for `user` from `client`: the factor it passed
/// with. Behind the per-address limit and the lockouts; a refusal counts as
/// a wrong code does. The credential's new signature counter is stored.
#[allow(clippy::too_many_arguments)]
pub async fn check(
    store: &dyn Store,
    keys: &websession::Keys,
    rp: &RelyingParty,
    guards: &Guards<'_>,
    user: &str,
    client: IpAddr,
    sealed: &str,
    credential: &str,
    now: u64,
) -> Result<i64, Refused> {
    if !guards.attempts.allow(client, guards.attempts_per_minute) {
        return Err(Refused::Throttled("too many attempts from this address".into()));
    }
    may_try(guards.lockout, guards.own, guards.limits, user, client).map_err(Refused::Throttled)?;
    let fail = |why: Refused| {
        count_failure(guards.lockout, guards.own, guards.limits, user, client);
        Err(why)
    };
    let have = passkeys_of(store, keys, user).await.map_err(|e| Refused::Unavailable(e.0))?;
    if have.is_empty() {
        return Err(Refused::NoFactor);
    }
    let state: PasskeyAuthentication = match open(store, keys, &scope("sign-in", user, &rp.id), sealed, now).await {
        Ok(s) => s,
        Err(Refused::Unavailable(why)) => return Err(Refused::Unavailable(why)),
        Err(why) => return fail(why),
    };
    if credential.len() > MAX_CREDENTIAL {
        return fail(Refused::Invalid("credential too long".into()));
    }
    let answer: PublicKeyCredential = match serde_json::from_str(credential) {
        Ok(a) => a,
        Err(e) => return fail(not_a_credential(e)),
    };
    let result = match rp.webauthn.finish_passkey_authentication(&answer, &state) {
        Ok(r) => r,
        Err(e) => return fail(Refused::Invalid(e.to_string())),
    };
    // The state held this user's credentials only; find the one that signed
    // among those stored now (it may have been removed meanwhile).
    let Some((id, mut passkey)) = have.into_iter().find(|(_, p)| p.cred_id() == result.cred_id()) else {
        return fail(Refused::Invalid("the credential was removed".into()));
    };
    passkey.update_credential(&result);
    let bytes = serde_json::to_vec(&passkey).map_err(|e| Refused::Unavailable(e.to_string()))?;
    let sealed = mfa::seal_credential(keys, user, &bytes).map_err(Refused::Unavailable)?;
    if !store.update(user.to_owned(), id, sealed, now).await.map_err(|e| Refused::Unavailable(e.0))? {
        return fail(Refused::Invalid("the credential was removed".into()));
    }
    guards.own.succeeded(user, guards.limits);
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mfa::Sqlite;

    fn keys() -> websession::Keys {
        websession::Keys::parse("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n").unwrap()
    }

    #[test]
    fn relying_parties_are_names_covering_the_host() {
        assert!(RelyingParty::new("corp.example", "mail.corp.example", "mail.corp.example:8443", "t").is_some());
        assert!(RelyingParty::new("mail.corp.example", "mail.corp.example", "mail.corp.example", "t").is_some());
        assert!(RelyingParty::new("corp.example", "mail.other.example", "mail.other.example", "t").is_none());
        assert!(
            RelyingParty::new("rp.example", "evilrp.example", "evilrp.example", "t").is_none(),
            "a suffix, not a parent"
        );
        assert!(RelyingParty::new("127.0.0.1", "127.0.0.1", "127.0.0.1:443", "t").is_none(), "an address");
        assert!(RelyingParty::new("[::1]", "[::1]", "[::1]:443", "t").is_none(), "an address");
    }

    /// The ceremony's state opens only for its user and relying party,
    /// within its life, once; none of this needs an authenticator.
    #[test]
    fn ceremonies_are_bound_and_answered_once() {
        let dir = tempfile::tempdir().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let store = Sqlite::open(&dir.path().join("mfa.db")).unwrap();
            let (k, now) = (keys(), 1_764_000_000);
            let rp = RelyingParty::new("corp.example", "mail.corp.example", "mail.corp.example", "t").unwrap();
            let other_rp =
                RelyingParty::new("mail.corp.example", "mail.corp.example", "mail.corp.example", "t").unwrap();
            let bob = "ADTEST\\bob";
            let c = start_registration(&rp, &k, bob, &[], now).unwrap();
            assert!(c.options.contains("\"userVerification\":\"required\""), "{}", c.options);
            assert!(c.options.contains("\"id\":\"corp.example\""), "{}", c.options);
            let s = &store;
            // Another user's, another relying party's, an old one: expired,
            // and none of them used the challenge up.
            let alice = "ADTEST\\alice";
            let r = finish_registration(s, &k, &rp, alice, "key", &c.sealed, "{}", now).await;
            assert_eq!(r, Err(Refused::Expired));
            let r = finish_registration(s, &k, &other_rp, bob, "key", &c.sealed, "{}", now).await;
            assert_eq!(r, Err(Refused::Expired));
            let late = now + CEREMONY_LIFE + 1;
            assert_eq!(finish_registration(s, &k, &rp, bob, "key", &c.sealed, "{}", late).await, Err(Refused::Expired));
            assert_eq!(finish_registration(s, &k, &rp, bob, "key", "garbage", "{}", now).await, Err(Refused::Expired));
            // Bob's, in time: taken, and the answer ("{}") is no credential.
            let r = finish_registration(s, &k, &rp, bob, "key", &c.sealed, "{}", now + 5).await;
            assert!(matches!(r, Err(Refused::Invalid(_))), "{r:?}");
            let r = finish_registration(s, &k, &rp, bob, "key", &c.sealed, "{}", now + 6).await;
            assert_eq!(r, Err(Refused::Replayed), "once");
            assert!(store.factors("bob".into()).await.unwrap().is_empty(), "nothing added");
            // No passkey, no sign-in ceremony.
            assert!(start_sign_in(&rp, &k, bob, &[], now).unwrap().is_none());
        });
    }

    /// The fuzz target's entry (`fuzz/passkey_answer`) on stable: answers
    /// shaped like the page's, with fields of random bytes, cut and
    /// shuffled, against a real registration state. Nothing panics, nothing
    /// is added.
    #[test]
    fn generated_answers_never_pass() {
        let dir = tempfile::tempdir().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let store = Sqlite::open(&dir.path().join("mfa.db")).unwrap();
            let (k, now) = (keys(), 1_764_000_000);
            let rp = RelyingParty::new("corp.example", "mail.corp.example", "mail.corp.example", "t").unwrap();
            let mut seed = 0x2545_f491_4f6c_dd1du64;
            let mut random = |n: usize| {
                (0..n)
                    .map(|_| {
                        seed ^= seed << 13;
                        seed ^= seed >> 7;
                        seed ^= seed << 17;
                        seed as u8
                    })
                    .collect::<Vec<u8>>()
            };
            use base64::Engine;
            let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
            for i in 0..300usize {
                let c = start_registration(&rp, &k, "bob", &[], now).unwrap();
                let (att, client) = (random(i % 200), random(i % 150));
                let answer = format!(
                    r#"{{"id":"{id}","rawId":"{id}","type":"public-key","extensions":{{}},"response":{{"attestationObject":"{}","clientDataJSON":"{}"}}}}"#,
                    b64(&att),
                    b64(&client),
                    id = b64(&random(16)),
                );
                let cut = &answer[..answer.len() - (i % 7)];
                let r = finish_registration(&store, &k, &rp, "bob", "key", &c.sealed, cut, now).await;
                assert!(matches!(r, Err(Refused::Invalid(_))), "{r:?}");
            }
            assert!(store.factors("bob".into()).await.unwrap().is_empty());
        });
    }
}
