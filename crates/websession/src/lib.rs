//! The parts of a browser sign-in that read what a client sends, with no I/O,
//! no clock and no randomness of their own (the caller passes the time and
//! the nonces), so that each can be tested byte by byte and fuzzed:
//!
//! - [`keys::Keys`]: the key file (several keys: the first seals, all open),
//!   the sealed session cookie (XChaCha20-Poly1305, bound to its scope) and
//!   the CSRF token bound to the pre-sign-in cookie.
//! - [`ticket::Ticket`]: what a session cookie carries (the server-side
//!   session id, when it was issued and when it ends, public computer or not).
//! - [`cookie::values`]: a cookie's values in `Cookie` headers.
//! - [`form::Form`]: an `application/x-www-form-urlencoded` body or query.
//! - [`target::return_path`]: the address to go back to after sign-in, only
//!   ever a path on the same host.
//! - [`accept::wants_html`]: whether a request accepts an HTML page.
//! - [`totp`]: one-time codes of authenticator apps (RFC 6238).
//!
//! No function here panics on any input; `fuzz_one` and the fuzz target in
//! `fuzz/` hold them to it.

#![forbid(unsafe_code)]

pub mod accept;
pub mod cookie;
pub mod form;
pub mod keys;
pub mod target;
pub mod ticket;
pub mod totp;

pub use keys::{KeyFileError, Keys, Refused};
pub use ticket::Ticket;

/// Fuzzer entry: every parser on the same bytes; none may panic, and what
/// they accept keeps its promises.
pub fn fuzz_one(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let _ = cookie::values([data], "__Host-gatehouse");
    if let Ok(form) = form::Form::parse(data) {
        // One value per name: a name given twice is refused, not guessed at.
        let names: Vec<&str> = form.fields().map(|(n, _)| n).collect();
        for (i, n) in names.iter().enumerate() {
            assert!(!names[i + 1..].contains(n), "{n} twice");
            assert!(form.get(n).is_some());
        }
    }
    if let Some(path) = target::return_path(&text, "mail.example.com:8443") {
        assert!(path.starts_with('/') && !path.starts_with("//"), "{path}");
        assert!(!path.contains('\\') && !path.bytes().any(|b| b.is_ascii_control()), "{path}");
    }
    let _ = accept::wants_html(data);
    let keys = keys::Keys::parse("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n").expect("the fuzz key parses");
    if let Ok(payload) = keys.open(b"scope", &text) {
        // Only what was sealed opens: the fuzzer cannot forge a tag.
        let _ = Ticket::decode(&payload);
        panic!("an unsealed token opened: {text:?}");
    }
    let _ = Ticket::decode(data);
    let _ = keys::Keys::parse(&text);
    assert!(!keys.csrf_ok(b"scope", &text, "x"));
    // A code is accepted only for a step within the skew, after the last one.
    if let Ok(step) = totp::verify(b"12345678901234567890", &text, 59, Some(0)) {
        assert!((1..=2).contains(&step), "{step}");
    }
}

#[cfg(test)]
mod tests {
    /// Generated inputs through the fuzz entry, on stable Rust.
    #[test]
    fn generated_inputs_do_not_panic() {
        let pieces: [&[u8]; 22] = [
            b"a=b",
            b"&",
            b"=",
            b"%",
            b"%2",
            b"%zz",
            b"%c3%a9",
            b"%ff",
            b"+",
            b"; ",
            b"__Host-gatehouse=",
            b"\"",
            b"/",
            b"//",
            b"\\",
            b"https://",
            b"mail.example.com:8443",
            b"text/html;q=0",
            b",",
            b"\x00",
            b"\xe2\x80\xae",
            b"AQID",
        ];
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..20_000 {
            let mut input = Vec::new();
            for _ in 0..(seed % 7) {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                input.extend_from_slice(pieces[(seed % pieces.len() as u64) as usize]);
            }
            super::fuzz_one(&input);
        }
    }
}
