#![no_main]
//! A page's passkey answer as gatehouse reads it (`auth::passkey`): the
//! posted JSON into webauthn-rs's types, then webauthn-rs's checks of a
//! registration (client data JSON, the CBOR attestation object, the
//! authenticator data inside it) against a real challenge state. Nothing may
//! panic or pass.
use libfuzzer_sys::fuzz_target;
use webauthn_rs::prelude::{PublicKeyCredential, RegisterPublicKeyCredential, Url, Uuid, WebauthnBuilder};

fuzz_target!(|data: &[u8]| {
    let origin = Url::parse("https://mail.corp.example").unwrap();
    let webauthn = WebauthnBuilder::new("corp.example", &origin).unwrap().rp_name("fuzz").build().unwrap();
    let (_, state) = webauthn.start_passkey_registration(Uuid::from_bytes([7; 16]), "bob", "bob", None).unwrap();
    if let Ok(answer) = serde_json::from_slice::<RegisterPublicKeyCredential>(data) {
        // The challenge is random: no input can answer it.
        assert!(webauthn.finish_passkey_registration(&answer, &state).is_err());
    }
    let _ = serde_json::from_slice::<PublicKeyCredential>(data);
});
