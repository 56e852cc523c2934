//! The NTLMv2 computations of MS-NLMP 3.3.2 and 3.1.5.1.2 (MIC), and the
//! channel-binding hash of RFC 5929 / RFC 2744.

use hmac::{Hmac, Mac};
use md4::{Digest, Md4};
use md5::Md5;
use rc4::{KeyInit, Rc4, StreamCipher};

use crate::wire::utf16le;

type HmacMd5 = Hmac<Md5>;

/// NTOWFv1: MD4 of the UTF-16LE password (the "NT hash").
pub fn nt_hash(password: &str) -> [u8; 16] {
    Md4::digest(utf16le(password)).into()
}

pub fn hmac_md5(key: &[u8], parts: &[&[u8]]) -> [u8; 16] {
    let mut mac = <HmacMd5 as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

/// NTOWFv2 (ResponseKeyNT): keyed by the NT hash over UPPER(user) + domain.
pub fn ntowf_v2(nt_hash: &[u8; 16], user: &str, domain: &str) -> [u8; 16] {
    let text = utf16le(&(user.to_uppercase() + domain));
    hmac_md5(nt_hash, &[&text])
}

/// NTProofStr over the server challenge and the client's blob ("temp").
pub fn nt_proof(response_key: &[u8; 16], server_challenge: &[u8; 8], temp: &[u8]) -> [u8; 16] {
    hmac_md5(response_key, &[server_challenge, temp])
}

pub fn session_base_key(response_key: &[u8; 16], nt_proof: &[u8; 16]) -> [u8; 16] {
    hmac_md5(response_key, &[nt_proof])
}

/// RC4 with a 16-byte key, as used to wrap the exported session key.
pub fn rc4(key: &[u8; 16], data: &[u8; 16]) -> [u8; 16] {
    let mut out = *data;
    let mut cipher = Rc4::<rc4::consts::U16>::new(key.into());
    cipher.apply_keystream(&mut out);
    out
}

/// MIC = HMAC_MD5(ExportedSessionKey, NEGOTIATE || CHALLENGE || AUTHENTICATE),
/// the AUTHENTICATE with its MIC field zeroed by the caller.
pub fn mic(exported_session_key: &[u8; 16], negotiate: &[u8], challenge: &[u8], authenticate: &[u8]) -> [u8; 16] {
    hmac_md5(exported_session_key, &[negotiate, challenge, authenticate])
}

/// MsvAvChannelBindings for TLS: MD5 of a gss_channel_bindings_struct with no
/// addresses and `tls-server-end-point:` + certificate hash as application data.
pub fn tls_channel_bindings(server_end_point_hash: &[u8]) -> [u8; 16] {
    let mut app = b"tls-server-end-point:".to_vec();
    app.extend_from_slice(server_end_point_hash);
    let mut md5 = Md5::new();
    md5.update([0u8; 16]); // initiator and acceptor: address type and length, all zero
    md5.update((app.len() as u32).to_le_bytes());
    md5.update(&app);
    md5.finalize().into()
}
