//! The key file and what its keys do: seal session cookies, open them, and
//! make CSRF tokens.
//!
//! A key file holds one or more keys, one per line: 32 random bytes in
//! base64 (`#` starts a comment). The first key seals; every key opens, so a
//! new key put first (and the old one kept below it) rotates keys without
//! signing anyone out, and a key removed from the file refuses every cookie
//! it sealed. Each file key is never used directly: three keys are derived
//! from it with HMAC-SHA256 under fixed labels (the cookie key, the CSRF key
//! and a 4-byte id that names the key in the cookie, so that opening needs
//! no trial decryption).
//!
//! A sealed token is base64url without padding of
//! `version (1) || key id (4) || nonce (24) || XChaCha20-Poly1305(payload) || tag (16)`,
//! with the version, the key id and the caller's scope (the cookie's name and
//! the host or domain it is for) as associated data: a cookie sealed for one
//! host does not open for another. The nonce is 24 random bytes from the
//! caller, which XChaCha's nonce length makes safe to choose at random.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

const VERSION: u8 = 1;
const ID_LEN: usize = 4;
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
const HEAD_LEN: usize = 1 + ID_LEN + NONCE_LEN;
/// A key file with more keys than this is a mistake (each is tried by id only).
pub const MAX_KEYS: usize = 16;
/// Longer tokens are refused before they are decoded: a session cookie is
/// about 130 characters.
pub const MAX_TOKEN: usize = 1024;

/// The keys of one key file, the sealing key first.
pub struct Keys {
    keys: Vec<Key>,
}

struct Key {
    id: [u8; ID_LEN],
    seal: XChaCha20Poly1305,
    csrf: [u8; 32],
}

impl std::fmt::Debug for Keys {
    /// Names the keys by id, never by value.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<String> = self.keys.iter().map(|k| hex(&k.id)).collect();
        write!(f, "Keys {{ ids: {ids:?} }}")
    }
}

/// Why a key file was refused: the line (from 1; 0 for the whole file) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyFileError {
    pub line: usize,
    pub why: String,
}

impl std::fmt::Display for KeyFileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.line {
            0 => f.write_str(&self.why),
            n => write!(f, "line {n}: {}", self.why),
        }
    }
}

/// Why a sealed token did not open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Not base64url, too short or too long, or another version.
    Malformed,
    /// Sealed with a key that is not (or no longer) in the key file.
    UnknownKey,
    /// The tag does not verify: changed, cut, or made for another scope.
    Forged,
    /// It opened, but what it carries is not a ticket of this version.
    BadPayload,
}

impl Refused {
    pub fn as_str(self) -> &'static str {
        match self {
            Refused::Malformed => "malformed",
            Refused::UnknownKey => "sealed with a key not in the key file",
            Refused::Forged => "does not verify (changed, cut, or for another scope)",
            Refused::BadPayload => "not a session ticket",
        }
    }
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

fn derive(key: &[u8; 32], label: &[u8]) -> [u8; 32] {
    let mut mac = <HmacSha256 as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(label);
    mac.finalize().into_bytes().into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Keys {
    /// Reads a key file's text. Every problem names its line; a key's value
    /// is never part of a message.
    pub fn parse(text: &str) -> Result<Keys, KeyFileError> {
        let mut keys: Vec<Key> = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let bad = |why: &str| KeyFileError { line: i + 1, why: why.to_owned() };
            let bytes = STANDARD.decode(line).or_else(|_| URL_SAFE_NO_PAD.decode(line)).map_err(|_| {
                bad("not base64 (one key per line: 32 random bytes in base64, as `gatehouse sessions new-key` prints)")
            })?;
            let key: [u8; 32] = bytes
                .as_slice()
                .try_into()
                .map_err(|_| bad(&format!("a key is 32 bytes; this one is {}", bytes.len())))?;
            if key.iter().all(|b| *b == key[0]) {
                return Err(bad("not a random key (every byte the same)"));
            }
            let made = Key::new(&key);
            if keys.iter().any(|k| k.id == made.id) {
                return Err(bad("the same key is listed twice"));
            }
            if keys.len() == MAX_KEYS {
                return Err(bad(&format!("more than {MAX_KEYS} keys; remove the oldest")));
            }
            keys.push(made);
        }
        if keys.is_empty() {
            return Err(KeyFileError {
                line: 0,
                why: "no key in the file (`gatehouse sessions new-key` prints one)".into(),
            });
        }
        Ok(Keys { keys })
    }

    /// A key file line for 32 random bytes.
    pub fn line(random: &[u8; 32]) -> String {
        STANDARD.encode(random)
    }

    /// The ids of the keys, sealing key first (hex, for logs and `check`).
    pub fn ids(&self) -> Vec<String> {
        self.keys.iter().map(|k| hex(&k.id)).collect()
    }

    /// Seals `payload` for `scope` with the first key.
    pub fn seal(&self, scope: &[u8], payload: &[u8], nonce: [u8; NONCE_LEN]) -> String {
        let key = &self.keys[0];
        let mut head = Vec::with_capacity(HEAD_LEN + payload.len() + TAG_LEN);
        head.push(VERSION);
        head.extend_from_slice(&key.id);
        let aad = associated(&head, scope);
        let sealed = key
            .seal
            .encrypt(XNonce::from_slice(&nonce), Payload { msg: payload, aad: &aad })
            .expect("XChaCha20-Poly1305 seals any payload under 256 GiB");
        head.extend_from_slice(&nonce);
        head.extend_from_slice(&sealed);
        URL_SAFE_NO_PAD.encode(head)
    }

    /// Opens a token sealed for `scope` by any key of the file.
    pub fn open(&self, scope: &[u8], token: &str) -> Result<Vec<u8>, Refused> {
        if token.len() > MAX_TOKEN {
            return Err(Refused::Malformed);
        }
        let bytes = URL_SAFE_NO_PAD.decode(token.as_bytes()).map_err(|_| Refused::Malformed)?;
        if bytes.len() < HEAD_LEN + TAG_LEN || bytes[0] != VERSION {
            return Err(Refused::Malformed);
        }
        let (head, rest) = bytes.split_at(1 + ID_LEN);
        let (nonce, sealed) = rest.split_at(NONCE_LEN);
        let key = self.keys.iter().find(|k| k.id == head[1..]).ok_or(Refused::UnknownKey)?;
        let aad = associated(head, scope);
        key.seal.decrypt(XNonce::from_slice(nonce), Payload { msg: sealed, aad: &aad }).map_err(|_| Refused::Forged)
    }

    /// The CSRF token for a form shown to the holder of the pre-sign-in
    /// cookie `pre`, on `scope` (the host).
    pub fn csrf_token(&self, scope: &[u8], pre: &str) -> String {
        URL_SAFE_NO_PAD.encode(csrf_mac(&self.keys[0].csrf, scope, pre))
    }

    /// Whether `token` was made for `pre` on `scope` by a key of the file,
    /// compared in constant time.
    pub fn csrf_ok(&self, scope: &[u8], pre: &str, token: &str) -> bool {
        if pre.is_empty() || token.len() > 64 {
            return false;
        }
        let Ok(given) = URL_SAFE_NO_PAD.decode(token.as_bytes()) else { return false };
        if given.len() != 32 {
            return false;
        }
        let mut ok = subtle::Choice::from(0);
        for key in &self.keys {
            ok |= csrf_mac(&key.csrf, scope, pre).ct_eq(given.as_slice());
        }
        ok.into()
    }
}

impl Key {
    fn new(key: &[u8; 32]) -> Key {
        let id = derive(key, b"gatehouse key id v1");
        Key {
            id: [id[0], id[1], id[2], id[3]],
            seal: XChaCha20Poly1305::new((&derive(key, b"gatehouse session cookie v1")).into()),
            csrf: derive(key, b"gatehouse csrf token v1"),
        }
    }
}

/// Version and key id, then the scope, length-prefixed so that no two
/// (head, scope) pairs make the same bytes.
fn associated(head: &[u8], scope: &[u8]) -> Vec<u8> {
    let mut aad = Vec::with_capacity(head.len() + 8 + scope.len());
    aad.extend_from_slice(head);
    aad.extend_from_slice(&(scope.len() as u64).to_be_bytes());
    aad.extend_from_slice(scope);
    aad
}

fn csrf_mac(key: &[u8; 32], scope: &[u8], pre: &str) -> [u8; 32] {
    let mut mac = <HmacSha256 as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(&(scope.len() as u64).to_be_bytes());
    mac.update(scope);
    mac.update(pre.as_bytes());
    mac.finalize().into_bytes().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    const K1: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    const K2: &str = "IiMkJSYnKCkqKywtLi8wMTIzNDU2Nzg5Ojs8PT4/QEE=";

    #[test]
    fn the_first_key_seals_and_every_key_opens() {
        let old = Keys::parse(K1).unwrap();
        let rotated = Keys::parse(&format!("# new first\n{K2}\n{K1}  # the old one, until its cookies end\n")).unwrap();
        let sealed_old = old.seal(b"host:mail", b"payload", [7; 24]);
        assert_eq!(rotated.open(b"host:mail", &sealed_old).unwrap(), b"payload");
        let sealed_new = rotated.seal(b"host:mail", b"payload", [8; 24]);
        assert_eq!(old.open(b"host:mail", &sealed_new), Err(Refused::UnknownKey), "K2 is not in the old file");
        // The old key removed: what it sealed no longer opens.
        let only_new = Keys::parse(K2).unwrap();
        assert_eq!(only_new.open(b"host:mail", &sealed_old), Err(Refused::UnknownKey));
        assert_eq!(only_new.open(b"host:mail", &sealed_new).unwrap(), b"payload");
        assert_eq!(rotated.ids().len(), 2);
        assert!(!format!("{rotated:?}").contains("AAEC"), "{rotated:?}");
    }

    #[test]
    fn changed_cut_or_misdirected_tokens_do_not_open() {
        let keys = Keys::parse(K1).unwrap();
        let token = keys.seal(b"host:mail", b"0123456789", [1; 24]);
        assert_eq!(keys.open(b"host:other", &token), Err(Refused::Forged), "another scope");
        let bytes = URL_SAFE_NO_PAD.decode(&token).unwrap();
        for i in 0..bytes.len() {
            for bit in [0x01u8, 0x80] {
                let mut changed = bytes.clone();
                changed[i] ^= bit;
                let t = URL_SAFE_NO_PAD.encode(&changed);
                let r = keys.open(b"host:mail", &t);
                let expected = match i {
                    0 => Refused::Malformed,
                    1..=4 => Refused::UnknownKey,
                    _ => Refused::Forged,
                };
                assert_eq!(r, Err(expected), "byte {i} bit {bit:#x}");
            }
        }
        for cut in 0..token.len() {
            assert!(keys.open(b"host:mail", &token[..cut]).is_err(), "cut at {cut}");
        }
        assert_eq!(keys.open(b"host:mail", &format!("{token}AA")), Err(Refused::Forged), "bytes added");
        assert_eq!(keys.open(b"host:mail", "not/base64+"), Err(Refused::Malformed));
        assert_eq!(keys.open(b"host:mail", &"A".repeat(MAX_TOKEN + 1)), Err(Refused::Malformed));
    }

    #[test]
    fn key_files_are_refused_by_line() {
        let err = |t: &str| Keys::parse(t).unwrap_err();
        assert_eq!(err("").line, 0);
        assert_eq!(err("# only a comment\n\n").line, 0);
        assert_eq!(err(&format!("{K1}\nnot base64!\n")).line, 2);
        let short = STANDARD.encode([5u8; 16]);
        assert!(err(&short).why.contains("32 bytes; this one is 16"), "{:?}", err(&short));
        assert!(err(&STANDARD.encode([0u8; 32])).why.contains("not a random key"));
        assert_eq!(err(&format!("{K1}\n{K1}\n")), KeyFileError { line: 2, why: "the same key is listed twice".into() });
        let key = |i: usize| -> [u8; 32] { std::array::from_fn(|j| (i * 31 + j) as u8) };
        let many: Vec<String> = (0..=MAX_KEYS).map(|i| Keys::line(&key(i))).collect();
        assert!(Keys::parse(&many[..MAX_KEYS].join("\n")).is_ok());
        assert!(err(&many.join("\n")).why.contains("more than 16 keys"));
        // A key's text never appears in a message.
        let e = err(&format!("{}x", &K1[..40]));
        assert!(!e.to_string().contains(&K1[..20]), "{e}");
        // URL-safe base64 without padding is read too.
        assert!(Keys::parse(&URL_SAFE_NO_PAD.encode(STANDARD.decode(K2).unwrap())).is_ok());
    }

    #[test]
    fn csrf_tokens_are_bound_to_the_pre_sign_in_cookie_and_the_host() {
        let keys = Keys::parse(&format!("{K2}\n{K1}")).unwrap();
        let token = keys.csrf_token(b"mail", "pre-cookie-value");
        assert!(keys.csrf_ok(b"mail", "pre-cookie-value", &token));
        assert!(!keys.csrf_ok(b"mail", "another-cookie", &token), "another browser's cookie");
        assert!(!keys.csrf_ok(b"other", "pre-cookie-value", &token), "another host");
        assert!(!keys.csrf_ok(b"mail", "", &token), "no cookie");
        assert!(!keys.csrf_ok(b"mail", "pre-cookie-value", ""), "no token");
        assert!(!keys.csrf_ok(b"mail", "pre-cookie-value", &token[..token.len() - 1]));
        // Made by the old key, still good while it is in the file.
        let old = Keys::parse(K1).unwrap().csrf_token(b"mail", "pre-cookie-value");
        assert!(keys.csrf_ok(b"mail", "pre-cookie-value", &old));
        assert!(!Keys::parse(K2).unwrap().csrf_ok(b"mail", "pre-cookie-value", &old), "its key removed");
    }
}
