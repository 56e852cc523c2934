//! `idtoken`: checking an OpenID provider's JWT (an ID token, or a bearer access token): the
//! signature with a key of the provider's JWKS, then every claim the token
//! is accepted on.
//!
//! Only RS256, ES256 and EdDSA: `none` and HMAC never (an HS256 token
//! "signed" with the client secret, or with an RSA key's public bytes, is
//! refused before any key is looked at). The header is read here, so that
//! the refusal names the algorithm; the signature and the registered claims
//! are checked by `jsonwebtoken` (ring underneath), the OpenID ones (`azp`,
//! `nonce`, `iat`) here. Every byte of the token is the client's (or the
//! provider's, for an ID token): nothing here panics on any input (fuzzed:
//! `fuzz/fuzz_targets/oidc_token.rs`).

use std::time::Duration;

use base64::Engine;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

/// The most a token may be: Entra's with many groups are a few kilobytes.
pub const MAX_TOKEN: usize = 16 * 1024;

/// A provider's signing keys, as its JWKS document lists them.
#[derive(Default)]
pub struct Keys {
    keys: Vec<Key>,
}

struct Key {
    kid: Option<String>,
    alg: Algorithm,
    key: DecodingKey,
}

impl Keys {
    /// The usable signing keys of a JWKS document: RSA, P-256 and Ed25519
    /// public keys; symmetric keys, encryption keys and keys of other curves
    /// are left out (a JWKS may hold them; none can verify a token here).
    pub fn parse(document: &[u8]) -> Result<Keys, String> {
        let v: Value = serde_json::from_slice(document).map_err(|e| format!("JWKS is not JSON: {e}"))?;
        let list = v.get("keys").and_then(Value::as_array).ok_or("JWKS has no `keys` list")?;
        let mut keys = Vec::new();
        for item in list {
            let Ok(jwk) = serde_json::from_value::<Jwk>(item.clone()) else { continue };
            if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
                continue;
            }
            let alg = match &jwk.algorithm {
                AlgorithmParameters::RSA(_) => Algorithm::RS256,
                AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => Algorithm::ES256,
                AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => Algorithm::EdDSA,
                _ => continue,
            };
            let Ok(key) = DecodingKey::from_jwk(&jwk) else { continue };
            keys.push(Key { kid: jwk.common.key_id.clone(), alg, key });
        }
        Ok(Keys { keys })
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The key for a token's `kid` and algorithm; without a `kid`, the one
    /// key of that algorithm, if there is exactly one.
    fn find(&self, kid: Option<&str>, alg: Algorithm) -> Option<&Key> {
        match kid {
            Some(kid) => self.keys.iter().find(|k| k.alg == alg && k.kid.as_deref() == Some(kid)),
            None => {
                let mut of_alg = self.keys.iter().filter(|k| k.alg == alg);
                let one = of_alg.next()?;
                of_alg.next().is_none().then_some(one)
            }
        }
    }
}

/// What a token must say to be accepted.
pub struct Expect<'a> {
    pub issuer: &'a str,
    /// `aud` holds it: the client id for an ID token, the configured
    /// audience for a bearer token.
    pub audience: &'a str,
    /// An ID token's `azp`, when present, is the client id; and a token for
    /// several audiences must name it.
    pub client_id: Option<&'a str>,
    /// The ID token's `nonce` is the one sent with the authorization request.
    pub nonce: Option<&'a str>,
    pub skew: Duration,
    /// Claims that must be present.
    pub required: &'a [String],
    /// Unix seconds.
    pub now: u64,
}

/// Why a token was refused (for the log; the page says less).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invalid {
    /// Not three base64url parts, or a header that is not JSON.
    Unreadable(String),
    /// `none`, HMAC, or an algorithm gatehouse does not take.
    Algorithm(String),
    /// No key of the provider's has this `kid` (the JWKS may have changed).
    UnknownKey(Option<String>),
    /// The signature does not verify, or a registered claim is wrong.
    Rejected(String),
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Invalid::Unreadable(why) => write!(f, "token unreadable: {why}"),
            Invalid::Algorithm(alg) => {
                write!(f, "token signed with `{alg}`, which is never accepted (RS256, ES256, EdDSA only)")
            }
            Invalid::UnknownKey(Some(kid)) => {
                write!(f, "token signed with a key the provider does not list (kid `{kid}`)")
            }
            Invalid::UnknownKey(None) => write!(f, "token names no kid and the provider has no single key for it"),
            Invalid::Rejected(why) => write!(f, "token refused: {why}"),
        }
    }
}

/// The claims of a token that passed every check.
pub type Claims = Map<String, Value>;

/// The header's `alg` and `kid`, read without trusting anything.
fn header(token: &str) -> Result<(Algorithm, Option<String>), Invalid> {
    if token.len() > MAX_TOKEN {
        return Err(Invalid::Unreadable(format!("longer than {MAX_TOKEN} bytes")));
    }
    let mut parts = token.split('.');
    let (Some(h), Some(_), Some(_), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(Invalid::Unreadable("not three dot-separated parts (an encrypted token?)".into()));
    };
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(h)
        .map_err(|_| Invalid::Unreadable("header is not base64url".into()))?;
    let v: Value = serde_json::from_slice(&bytes).map_err(|_| Invalid::Unreadable("header is not JSON".into()))?;
    let alg = v.get("alg").and_then(Value::as_str).ok_or_else(|| Invalid::Unreadable("header has no alg".into()))?;
    let alg = match alg {
        "RS256" => Algorithm::RS256,
        "ES256" => Algorithm::ES256,
        "EdDSA" => Algorithm::EdDSA,
        other => return Err(Invalid::Algorithm(other.chars().take(20).collect())),
    };
    if v.get("crit").is_some() {
        return Err(Invalid::Unreadable("header has `crit` extensions gatehouse does not understand".into()));
    }
    let kid = match v.get("kid") {
        None => None,
        Some(Value::String(k)) if k.len() <= 256 => Some(k.clone()),
        Some(_) => return Err(Invalid::Unreadable("kid is not a short string".into())),
    };
    Ok((alg, kid))
}

/// The `kid` a token names, if it is one gatehouse would look up.
pub fn kid(token: &str) -> Result<Option<String>, Invalid> {
    header(token).map(|(_, kid)| kid)
}

/// Checks `token` against the provider's `keys` and `expect`.
pub fn check(token: &str, keys: &Keys, expect: &Expect<'_>) -> Result<Claims, Invalid> {
    let (alg, kid) = header(token)?;
    let key = keys.find(kid.as_deref(), alg).ok_or(Invalid::UnknownKey(kid))?;
    let mut v = Validation::new(alg);
    v.algorithms = vec![alg];
    v.leeway = expect.skew.as_secs();
    // Times are checked below against `expect.now` (the caller's clock).
    v.validate_exp = false;
    v.validate_nbf = false;
    v.set_issuer(&[expect.issuer]);
    v.set_audience(&[expect.audience]);
    v.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
    let data = jsonwebtoken::decode::<Claims>(token, &key.key, &v).map_err(|e| Invalid::Rejected(reason(&e)))?;
    let claims = data.claims;
    // What jsonwebtoken does not check: iat not in the future (beyond the
    // skew), azp, nonce, the configured claims.
    let iat =
        claims.get("iat").and_then(Value::as_u64).ok_or_else(|| Invalid::Rejected("iat is not a number".into()))?;
    let skew = expect.skew.as_secs();
    let exp =
        claims.get("exp").and_then(Value::as_u64).ok_or_else(|| Invalid::Rejected("exp is not a number".into()))?;
    if expect.now >= exp.saturating_add(skew) {
        return Err(Invalid::Rejected(format!("expired (exp) {}s ago", expect.now - exp)));
    }
    if let Some(nbf) = claims.get("nbf") {
        let nbf = nbf.as_u64().ok_or_else(|| Invalid::Rejected("nbf is not a number".into()))?;
        if nbf > expect.now + skew {
            return Err(Invalid::Rejected("not valid yet (nbf)".into()));
        }
    }
    if iat > expect.now + skew {
        return Err(Invalid::Rejected(format!("issued {}s in the future (iat)", iat - expect.now)));
    }
    if let Some(client) = expect.client_id {
        let several = matches!(claims.get("aud"), Some(Value::Array(a)) if a.len() > 1);
        match claims.get("azp") {
            Some(Value::String(azp)) if azp == client => {}
            Some(_) => return Err(Invalid::Rejected("azp is another client's".into())),
            None if several => return Err(Invalid::Rejected("several audiences and no azp".into())),
            None => {}
        }
    }
    if let Some(nonce) = expect.nonce {
        use subtle::ConstantTimeEq;
        let got = claims.get("nonce").and_then(Value::as_str).unwrap_or("");
        if !bool::from(got.as_bytes().ct_eq(nonce.as_bytes())) {
            return Err(Invalid::Rejected("nonce is not the one this sign-in sent".into()));
        }
    }
    for c in expect.required {
        if claims.get(c).is_none_or(Value::is_null) {
            return Err(Invalid::Rejected(format!("required claim `{c}` is missing")));
        }
    }
    Ok(claims)
}

fn reason(e: &jsonwebtoken::errors::Error) -> String {
    use jsonwebtoken::errors::ErrorKind as K;
    match e.kind() {
        K::InvalidSignature => "signature does not verify".into(),
        K::ExpiredSignature => "expired (exp)".into(),
        K::ImmatureSignature => "not valid yet (nbf)".into(),
        K::InvalidIssuer => "another issuer (iss)".into(),
        K::InvalidAudience => "for another audience (aud)".into(),
        K::MissingRequiredClaim(c) => format!("claim `{c}` is missing"),
        K::InvalidAlgorithm => "algorithm does not match the key".into(),
        other => format!("{other:?}"),
    }
}

/// A claim as a string; a one-element list counts (AD FS sends some so).
pub fn string_claim<'c>(claims: &'c Claims, name: &str) -> Option<&'c str> {
    match claims.get(name)? {
        Value::String(s) => Some(s),
        Value::Array(a) if a.len() == 1 => a[0].as_str(),
        _ => None,
    }
}

/// A claim as a list of strings (`amr`, `groups`); a single string counts.
pub fn list_claim(claims: &Claims, name: &str) -> Vec<String> {
    match claims.get(name) {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
        _ => Vec::new(),
    }
}

/// For the fuzz target: any bytes as a token, against a fixed key set.
pub fn fuzz(data: &[u8]) {
    let jwks = br#"{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"k","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},{"kty":"EC","crv":"P-256","kid":"e","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}"#;
    let keys = Keys::parse(jwks).unwrap_or_default();
    let _ = Keys::parse(data);
    let token = String::from_utf8_lossy(data);
    let expect = Expect {
        issuer: "https://idp",
        audience: "gatehouse",
        client_id: Some("gatehouse"),
        nonce: Some("n"),
        skew: Duration::from_secs(60),
        required: &[],
        now: 1_700_000_000,
    };
    let _ = check(&token, &keys, &expect);
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header};
    use ring::signature::{Ed25519KeyPair, KeyPair};

    const NOW: u64 = 1_700_000_000;

    /// An Ed25519 key of the test's, its JWKS, and a signer.
    fn key(kid: &str) -> (EncodingKey, String) {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        let x = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(pair.public_key().as_ref());
        let jwks = format!(r#"{{"keys":[{{"kty":"OKP","crv":"Ed25519","kid":"{kid}","x":"{x}","use":"sig"}}]}}"#);
        (EncodingKey::from_ed_der(pkcs8.as_ref()), jwks)
    }

    fn sign(k: &EncodingKey, kid: &str, claims: Value) -> String {
        let mut h = Header::new(Algorithm::EdDSA);
        h.kid = Some(kid.into());
        jsonwebtoken::encode(&h, &claims, k).unwrap()
    }

    fn good() -> Value {
        serde_json::json!({"iss":"https://idp","aud":"gatehouse","sub":"alice","exp":NOW+300,"iat":NOW,"nonce":"n1","upn":"alice@ad.test"})
    }

    fn expect() -> Expect<'static> {
        Expect {
            issuer: "https://idp",
            audience: "gatehouse",
            client_id: Some("gatehouse"),
            nonce: Some("n1"),
            skew: Duration::from_secs(60),
            required: &[],
            now: NOW,
        }
    }

    fn with(change: impl FnOnce(&mut Map<String, Value>)) -> Value {
        let mut v = good();
        change(v.as_object_mut().unwrap());
        v
    }

    #[test]
    fn every_claim_is_checked() {
        let (k, jwks) = key("k1");
        let keys = Keys::parse(jwks.as_bytes()).unwrap();
        let ok = check(&sign(&k, "k1", good()), &keys, &expect()).unwrap();
        assert_eq!(string_claim(&ok, "upn"), Some("alice@ad.test"));
        let refused = |v: Value| check(&sign(&k, "k1", v), &keys, &expect()).unwrap_err().to_string();
        assert!(refused(with(|m| {
            m.insert("aud".into(), "other".into());
        }))
        .contains("aud"));
        assert!(refused(with(|m| {
            m.insert("iss".into(), "https://evil".into());
        }))
        .contains("iss"));
        assert!(refused(with(|m| {
            m.insert("exp".into(), (NOW - 61).into());
        }))
        .contains("exp"));
        assert!(
            check(
                &sign(
                    &k,
                    "k1",
                    with(|m| {
                        m.insert("exp".into(), (NOW - 59).into());
                    })
                ),
                &keys,
                &expect()
            )
            .is_ok(),
            "within the skew"
        );
        assert!(refused(with(|m| {
            m.insert("iat".into(), (NOW + 120).into());
        }))
        .contains("future"));
        assert!(refused(with(|m| {
            m.remove("iat");
        }))
        .contains("iat"));
        assert!(refused(with(|m| {
            m.insert("nonce".into(), "n2".into());
        }))
        .contains("nonce"));
        assert!(refused(with(|m| {
            m.remove("nonce");
        }))
        .contains("nonce"));
        assert!(refused(with(|m| {
            m.insert("azp".into(), "other".into());
        }))
        .contains("azp"));
        assert!(refused(with(|m| {
            m.insert("aud".into(), serde_json::json!(["gatehouse", "x"]));
        }))
        .contains("azp"));
        assert!(check(
            &sign(
                &k,
                "k1",
                with(|m| {
                    m.insert("aud".into(), serde_json::json!(["gatehouse", "x"]));
                    m.insert("azp".into(), "gatehouse".into());
                })
            ),
            &keys,
            &expect()
        )
        .is_ok());
        let required = ["groups".to_owned()];
        let e = Expect { required: &required, ..expect() };
        assert!(check(&sign(&k, "k1", good()), &keys, &e).unwrap_err().to_string().contains("groups"));
    }

    #[test]
    fn forged_tokens_are_refused() {
        let (k, jwks) = key("k1");
        let keys = Keys::parse(jwks.as_bytes()).unwrap();
        let (other, _) = key("k1");
        assert!(
            matches!(check(&sign(&other, "k1", good()), &keys, &expect()), Err(Invalid::Rejected(w)) if w.contains("signature"))
        );
        assert!(matches!(check(&sign(&k, "k2", good()), &keys, &expect()), Err(Invalid::UnknownKey(Some(_)))));
        let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        let body = b64(&good().to_string());
        let none = format!("{}.{body}.", b64(r#"{"alg":"none","kid":"k1"}"#));
        assert_eq!(check(&none, &keys, &expect()), Err(Invalid::Algorithm("none".into())));
        let hs = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &good(), &EncodingKey::from_secret(b"s3cret"))
            .unwrap();
        assert_eq!(check(&hs, &keys, &expect()), Err(Invalid::Algorithm("HS256".into())));
        // The signature part changed by one character.
        let t = sign(&k, "k1", good());
        let mut bad = t.clone().into_bytes();
        let i = bad.len() - 5;
        bad[i] = if bad[i] == b'A' { b'B' } else { b'A' };
        assert!(check(std::str::from_utf8(&bad).unwrap(), &keys, &expect()).is_err());
        for junk in ["", ".", "a.b", "a.b.c.d.e", "%%%.b.c", &"A".repeat(MAX_TOKEN + 1)] {
            assert!(matches!(check(junk, &keys, &expect()), Err(Invalid::Unreadable(_))), "{junk:.20}");
        }
    }

    #[test]
    fn symmetric_and_encryption_keys_are_never_used() {
        let jwks = br#"{"keys":[{"kty":"oct","k":"czNjcmV0","kid":"h"},{"kty":"RSA","use":"enc","kid":"r","n":"sXch","e":"AQAB"}]}"#;
        assert_eq!(Keys::parse(jwks).unwrap().len(), 0);
        assert!(Keys::parse(b"[]").is_err() && Keys::parse(b"{").is_err());
        fuzz(b"eyJhbGciOiJFZERTQSJ9.e30.AAAA");
    }
}
