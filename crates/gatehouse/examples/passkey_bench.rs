//! Passkey assertion verifications per second on one core, in process
//! (bench/run.sh BENCH_ONLY=passkey, or `cargo run --release -p gatehouse
//! --example passkey_bench N`). What `auth::passkey::check` does per
//! assertion, but for the store: the posted JSON parsed, the page's sealed
//! ceremony opened (XChaCha20-Poly1305), webauthn-rs's checks (client data,
//! authenticator data, the ES256 signature through OpenSSL, the counter), the
//! credential with its new counter sealed again. Not measured: the two SQLite
//! writes (the challenge's single use, the counter) and HTTP.
//!
//! The authenticator is this program: a P-256 key from OpenSSL, a
//! registration with attestation "none" and assertions made as a CTAP2
//! authenticator makes them (user present and verified), accepted by the
//! same webauthn-rs calls gatehouse makes.

use std::time::Instant;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use openssl::bn::BigNumContext;
use openssl::ec::{EcGroup, EcKey};
use openssl::nid::Nid;
use sha2::{Digest, Sha256};
use webauthn_rs::prelude::{Passkey, PasskeyAuthentication, PublicKeyCredential, Url, Uuid, WebauthnBuilder};

const RP: &str = "mail.corp.example";
const ORIGIN: &str = "https://mail.corp.example";

/// CBOR: a byte string, a text string, a map's head, an integer.
fn cbor_head(major: u8, n: usize, out: &mut Vec<u8>) {
    let m = major << 5;
    match n {
        0..=23 => out.push(m | n as u8),
        24..=255 => out.extend([m | 24, n as u8]),
        _ => {
            out.push(m | 25);
            out.extend((n as u16).to_be_bytes());
        }
    }
}

fn cbor_int(v: i64, out: &mut Vec<u8>) {
    if v >= 0 {
        cbor_head(0, v as usize, out)
    } else {
        cbor_head(1, (-1 - v) as usize, out)
    }
}

fn cbor_bytes(b: &[u8], out: &mut Vec<u8>) {
    cbor_head(2, b.len(), out);
    out.extend_from_slice(b);
}

fn cbor_text(t: &str, out: &mut Vec<u8>) {
    cbor_head(3, t.len(), out);
    out.extend_from_slice(t.as_bytes());
}

fn client_data(kind: &str, challenge: &str) -> Vec<u8> {
    format!(r#"{{"type":"{kind}","challenge":"{challenge}","origin":"{ORIGIN}","crossOrigin":false}}"#).into_bytes()
}

fn challenge_of(options: &impl serde::Serialize) -> String {
    let v = serde_json::to_value(options).unwrap();
    v["publicKey"]["challenge"].as_str().unwrap().to_owned()
}

fn main() {
    let n: u64 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(20_000);
    let origin = Url::parse(ORIGIN).unwrap();
    let webauthn = WebauthnBuilder::new(RP, &origin).unwrap().rp_name("bench").build().unwrap();
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
    let key = EcKey::generate(&group).unwrap();
    let mut ctx = BigNumContext::new().unwrap();
    let (mut x, mut y) = (openssl::bn::BigNum::new().unwrap(), openssl::bn::BigNum::new().unwrap());
    key.public_key().affine_coordinates(&group, &mut x, &mut y, &mut ctx).unwrap();
    let pkey = openssl::pkey::PKey::from_ec_key(key).unwrap();
    let cred_id = [0x42u8; 32];
    let rp_hash: [u8; 32] = Sha256::digest(RP.as_bytes()).into();

    // Registration, as an authenticator answers navigator.credentials.create().
    let (ccr, reg_state) = webauthn.start_passkey_registration(Uuid::from_bytes([1; 16]), "bob", "bob", None).unwrap();
    let mut cose = Vec::new();
    cbor_head(5, 5, &mut cose);
    for (k, v) in [(1i64, 2i64), (3, -7), (-1, 1)] {
        cbor_int(k, &mut cose);
        cbor_int(v, &mut cose);
    }
    cbor_int(-2, &mut cose);
    cbor_bytes(&x.to_vec_padded(32).unwrap(), &mut cose);
    cbor_int(-3, &mut cose);
    cbor_bytes(&y.to_vec_padded(32).unwrap(), &mut cose);
    let mut auth = rp_hash.to_vec();
    auth.push(0x45); // user present, user verified, attested credential data
    auth.extend(0u32.to_be_bytes());
    auth.extend([0u8; 16]); // AAGUID
    auth.extend((cred_id.len() as u16).to_be_bytes());
    auth.extend(cred_id);
    auth.extend(&cose);
    let mut att = Vec::new();
    cbor_head(5, 3, &mut att);
    cbor_text("fmt", &mut att);
    cbor_text("none", &mut att);
    cbor_text("attStmt", &mut att);
    cbor_head(5, 0, &mut att);
    cbor_text("authData", &mut att);
    cbor_bytes(&auth, &mut att);
    let answer = serde_json::json!({
        "id": B64.encode(cred_id), "rawId": B64.encode(cred_id), "type": "public-key", "extensions": {},
        "response": {"attestationObject": B64.encode(&att),
                     "clientDataJSON": B64.encode(client_data("webauthn.create", &challenge_of(&ccr)))},
    });
    let reg = serde_json::from_value(answer).unwrap();
    let passkey: Passkey = webauthn.finish_passkey_registration(&reg, &reg_state).expect("registration");

    // One sign-in ceremony, sealed as the page carries it; assertions with a
    // growing counter, as the authenticator makes them.
    let keys = websession::Keys::parse("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n").unwrap();
    let scope = b"gatehouse-mfa|passkey-sign-in|user:bob|rp:mail.corp.example";
    let (rcr, state) = webauthn.start_passkey_authentication(std::slice::from_ref(&passkey)).unwrap();
    let sealed_state = keys.seal(scope, &serde_json::to_vec(&state).unwrap(), [9; 24]);
    let client = client_data("webauthn.get", &challenge_of(&rcr));
    let client_hash: [u8; 32] = Sha256::digest(&client).into();
    let assertion = |count: u32, signing: &openssl::pkey::PKey<openssl::pkey::Private>| {
        let mut auth = rp_hash.to_vec();
        auth.push(0x05); // user present, user verified
        auth.extend(count.to_be_bytes());
        let mut signer = openssl::sign::Signer::new(openssl::hash::MessageDigest::sha256(), signing).unwrap();
        signer.update(&auth).unwrap();
        signer.update(&client_hash).unwrap();
        let sig = signer.sign_to_vec().unwrap();
        serde_json::json!({
            "id": B64.encode(cred_id), "rawId": B64.encode(cred_id), "type": "public-key", "extensions": {},
            "response": {"authenticatorData": B64.encode(&auth), "clientDataJSON": B64.encode(&client),
                         "signature": B64.encode(&sig), "userHandle": null},
        })
        .to_string()
    };
    let assertions: Vec<String> = (1..=1000u32).map(|count| assertion(count, &pkey)).collect();
    // Signed by another key: refused.
    let other = openssl::pkey::PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap();
    let forged = assertion(1, &other);

    for (what, forged_run) in [("good assertion", false), ("bad signature", true)] {
        let start = Instant::now();
        let mut passed = 0u64;
        for i in 0..n {
            let posted = if forged_run { &forged } else { &assertions[(i % 1000) as usize] };
            let opened = keys.open(scope, &sealed_state).unwrap();
            let state: PasskeyAuthentication = serde_json::from_slice(&opened).unwrap();
            let answer: PublicKeyCredential = serde_json::from_str(std::hint::black_box(posted)).unwrap();
            if let Ok(result) = webauthn.finish_passkey_authentication(&answer, &state) {
                let mut updated = passkey.clone();
                updated.update_credential(&result);
                let bytes = serde_json::to_vec(&updated).unwrap();
                std::hint::black_box(keys.seal(b"gatehouse-mfa|passkey|user:bob", &bytes, [3; 24]));
                passed += 1;
            }
        }
        let s = start.elapsed().as_secs_f64();
        println!("{what}: {n} verifications in {s:.3} s = {:.0} per second (passed {passed})", n as f64 / s);
    }
}
