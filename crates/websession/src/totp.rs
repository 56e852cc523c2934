//! Time-based one-time codes (RFC 6238 over RFC 4226's HOTP): HMAC-SHA-1,
//! 6 digits, 30-second steps, one step of skew either way, as every
//! authenticator app makes them by default. The caller passes the time and
//! the last step a user's code was accepted for: a code is good once, and a
//! code of an earlier step than the last accepted one is refused too, so a
//! code seen over a shoulder cannot follow the user's own.

use hmac::{Hmac, Mac};
use sha1::Sha1;
use subtle::ConstantTimeEq;

/// Seconds per step.
pub const STEP: u64 = 30;
/// Digits of a code.
pub const DIGITS: u32 = 6;
/// Bytes of a new secret (RFC 4226 recommends 160 bits).
pub const SECRET_LEN: usize = 20;

type HmacSha1 = Hmac<Sha1>;

/// Why a code was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Not six digits (spaces allowed between them).
    Malformed,
    /// No step within the skew makes this code.
    Wrong,
    /// Right, but a code of this step or a later one was already accepted.
    Reused,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Refused::Malformed => "not a six-digit code",
            Refused::Wrong => "wrong code",
            Refused::Reused => "code already used",
        })
    }
}

/// RFC 4226's HOTP value of `counter` with `digits` digits (6 to 9).
pub fn hotp(secret: &[u8], counter: u64, digits: u32) -> u32 {
    let mut mac = <HmacSha1 as Mac>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(&counter.to_be_bytes());
    let h: [u8; 20] = mac.finalize().into_bytes().into();
    // Dynamic truncation: the low nibble of the last byte picks four bytes.
    let at = usize::from(h[19] & 0x0f);
    let bin = u32::from_be_bytes([h[at] & 0x7f, h[at + 1], h[at + 2], h[at + 3]]);
    bin % 10u32.pow(digits.clamp(6, 9))
}

/// The step that Unix time `now` falls in.
pub fn step_at(now: u64) -> u64 {
    now / STEP
}

/// The code for `step`, as the app shows it.
pub fn code(secret: &[u8], step: u64) -> String {
    format!("{:06}", hotp(secret, step, DIGITS))
}

/// The six digits the user typed; spaces and a dash (apps show "123 456")
/// are dropped, anything else is refused.
fn digits(typed: &str) -> Option<[u8; 6]> {
    if typed.len() > 32 {
        return None;
    }
    let mut out = [0u8; 6];
    let mut n = 0;
    for b in typed.bytes() {
        match b {
            b' ' | b'-' => {}
            b'0'..=b'9' if n < 6 => {
                out[n] = b;
                n += 1;
            }
            _ => return None,
        }
    }
    (n == 6).then_some(out)
}

/// Checks `typed` against the steps around `now`; `last` is the step of the
/// user's last accepted code. The step it matched, to be remembered as the
/// new `last`. Every candidate is computed and compared in constant time,
/// so the answer's timing says nothing about which step (or digit) was near.
pub fn verify(secret: &[u8], typed: &str, now: u64, last: Option<u64>) -> Result<u64, Refused> {
    let typed = digits(typed).ok_or(Refused::Malformed)?;
    let current = step_at(now);
    let mut matched: Option<u64> = None;
    for step in [current.saturating_sub(1), current, current.saturating_add(1)] {
        let want = code(secret, step);
        if bool::from(want.as_bytes().ct_eq(&typed)) && matched.is_none() {
            matched = Some(step);
        }
    }
    let step = matched.ok_or(Refused::Wrong)?;
    if last.is_some_and(|l| step <= l) {
        return Err(Refused::Reused);
    }
    Ok(step)
}

/// RFC 4648 base32 without padding, as authenticator apps take a secret.
pub fn base32(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::with_capacity(bytes.len().div_ceil(5) * 8);
    let (mut acc, mut bits) = (0u32, 0u32);
    for &b in bytes {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(ALPHABET[((acc >> bits) & 31) as usize]));
        }
        acc &= (1 << bits) - 1;
    }
    if bits > 0 {
        out.push(char::from(ALPHABET[((acc << (5 - bits)) & 31) as usize]));
    }
    out
}

/// The `otpauth://` address an app reads from a QR code: the issuer and the
/// account as its label, the secret, and the parameters spelled out (they
/// are the defaults, but some apps guess otherwise without them).
pub fn otpauth_uri(issuer: &str, account: &str, secret: &[u8]) -> String {
    let label = format!("{issuer}:{account}");
    format!(
        "otpauth://totp/{}?secret={}&issuer={}&algorithm=SHA1&digits=6&period=30",
        crate::form::encode(&label),
        base32(secret),
        crate::form::encode(issuer)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const RFC_SECRET: &[u8] = b"12345678901234567890";

    #[test]
    fn rfc4226_hotp_vectors() {
        let want = [755224, 287082, 359152, 969429, 338314, 254676, 287922, 162583, 399871, 520489];
        for (counter, w) in want.iter().enumerate() {
            assert_eq!(hotp(RFC_SECRET, counter as u64, 6), *w, "counter {counter}");
        }
    }

    #[test]
    fn rfc6238_sha1_vectors() {
        // RFC 6238 appendix B, SHA-1 rows (8 digits).
        for (t, w) in [
            (59u64, 94287082u32),
            (1111111109, 7081804),
            (1111111111, 14050471),
            (1234567890, 89005924),
            (2000000000, 69279037),
            (20000000000, 65353130),
        ] {
            assert_eq!(hotp(RFC_SECRET, step_at(t), 8), w, "T={t}");
        }
        // The six-digit code is the last six of those digits.
        assert_eq!(code(RFC_SECRET, step_at(59)), "287082");
        assert_eq!(code(RFC_SECRET, step_at(1111111109)), "081804");
    }

    #[test]
    fn skew_of_one_step() {
        let now = 1234567890;
        let s = step_at(now);
        for d in [-1i64, 0, 1] {
            let c = code(RFC_SECRET, (s as i64 + d) as u64);
            assert_eq!(verify(RFC_SECRET, &c, now, None), Ok((s as i64 + d) as u64), "skew {d}");
        }
        for d in [-2i64, 2, 10] {
            let c = code(RFC_SECRET, (s as i64 + d) as u64);
            // Two codes of different steps may collide; skip the rare case.
            if [s - 1, s, s + 1].iter().any(|x| code(RFC_SECRET, *x) == c) {
                continue;
            }
            assert_eq!(verify(RFC_SECRET, &c, now, None), Err(Refused::Wrong), "skew {d}");
        }
    }

    #[test]
    fn each_code_once() {
        let now = 1234567890;
        let s = step_at(now);
        let c = code(RFC_SECRET, s);
        let used = verify(RFC_SECRET, &c, now, None).unwrap();
        assert_eq!(verify(RFC_SECRET, &c, now, Some(used)), Err(Refused::Reused));
        // The previous step's code, still within the skew, is refused after a later one.
        let before = code(RFC_SECRET, s - 1);
        assert_eq!(verify(RFC_SECRET, &before, now, Some(used)), Err(Refused::Reused));
        // The next step's is still good.
        assert_eq!(verify(RFC_SECRET, &code(RFC_SECRET, s + 1), now, Some(used)), Ok(s + 1));
    }

    #[test]
    fn typed_forms() {
        let now = 59;
        assert_eq!(verify(RFC_SECRET, "287 082", now, None), Ok(1));
        assert_eq!(verify(RFC_SECRET, "287-082", now, None), Ok(1));
        for bad in ["", "28708", "2870822", "28708a", "２87082", "287082\n", &"1".repeat(40)] {
            assert_eq!(verify(RFC_SECRET, bad, now, None), Err(Refused::Malformed), "{bad:?}");
        }
        assert_eq!(verify(RFC_SECRET, "000000", now, None), Err(Refused::Wrong));
        // Near time zero the skew does not wrap around.
        assert!(verify(RFC_SECRET, &code(RFC_SECRET, u64::MAX), 0, None).is_err());
    }

    #[test]
    fn base32_rfc4648() {
        for (i, o) in
            [("", ""), ("f", "MY"), ("fo", "MZXQ"), ("foo", "MZXW6"), ("foob", "MZXW6YQ"), ("fooba", "MZXW6YTB")]
        {
            assert_eq!(base32(i.as_bytes()), o);
        }
        assert_eq!(base32(RFC_SECRET), "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
        let uri = otpauth_uri("Contoso Mail", "ADTEST\\bob", RFC_SECRET);
        assert!(uri.starts_with("otpauth://totp/Contoso%20Mail%3AADTEST%5Cbob?secret=GEZDG"), "{uri}");
    }
}
