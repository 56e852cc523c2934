//! The signed affinity cookie (`affinity = "cookie"`): which backend a browser
//! session is on, said by gatehouse and checked by gatehouse.
//!
//! The value is the backend's [`MemberId`] and an HMAC-SHA256 over it and the
//! `[[site]]` it was issued for, truncated to 128 bits, compared in constant
//! time. A client cannot pick a backend by writing a cookie (a drained one, or
//! the same one for every bot of a flood), and a cookie of one site means
//! nothing on another. The key is `[affinity] key_file` (the same file on
//! every gatehouse of an array, as TMG needed shared cookie keys, KB 2592933)
//! or a random key made at start; it is never logged, nor is the cookie.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::state::MemberId;

const MAC_BYTES: usize = 16;

/// Signs and checks one `[[site]]`'s affinity cookies.
pub struct Signer {
    key: std::sync::Arc<[u8]>,
    family: String,
    pub name: String,
    /// `Path` of the cookie: `/` for a preset (all its paths share backends),
    /// else the site's prefix.
    pub path: String,
}

impl Signer {
    pub fn new(key: std::sync::Arc<[u8]>, family: &str, name: &str, path: &str) -> Signer {
        Signer { key, family: family.to_owned(), name: name.to_owned(), path: path.to_owned() }
    }

    fn mac(&self, id: &str) -> Hmac<Sha256> {
        // Any key length is valid for HMAC.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key).unwrap_or_else(|_| unreachable!());
        mac.update(b"gatehouse affinity v1\0");
        mac.update(self.family.as_bytes());
        mac.update(b"\0");
        mac.update(id.as_bytes());
        mac
    }

    /// The cookie's value for `member`.
    pub fn sign(&self, member: MemberId) -> String {
        let id = format!("{:016x}", member.0);
        let tag = self.mac(&id).finalize().into_bytes();
        let hex: String = tag[..MAC_BYTES].iter().map(|b| format!("{b:02x}")).collect();
        format!("{id}.{hex}")
    }

    /// The backend a cookie value names, if gatehouse signed it for this site.
    pub fn verify(&self, value: &str) -> Option<MemberId> {
        let (id, tag) = value.split_once('.')?;
        if id.len() != 16 || tag.len() != 2 * MAC_BYTES {
            return None;
        }
        let member = u64::from_str_radix(id, 16).ok()?;
        let tag = hex(tag)?;
        // verify_truncated_left compares in constant time.
        self.mac(id).verify_truncated_left(&tag).ok()?;
        Some(MemberId(member))
    }

    /// The `Set-Cookie` value for `member`. `Secure` on TLS listeners;
    /// `HttpOnly`: no script needs it; `SameSite=Lax`: sent on top-level
    /// navigation, which is all a browser session needs.
    pub fn set_cookie(&self, member: MemberId, secure: bool) -> String {
        format!(
            "{}={}; Path={}; HttpOnly; SameSite=Lax{}",
            self.name,
            self.sign(member),
            self.path,
            if secure { "; Secure" } else { "" }
        )
    }
}

fn hex(text: &str) -> Option<Vec<u8>> {
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    text.as_bytes().chunks(2).map(|p| Some(digit(*p.first()?)? << 4 | digit(*p.get(1)?)?)).collect()
}

/// The values of cookie `name` in a request's `Cookie` headers.
pub fn cookie_values<'h>(headers: &'h http::HeaderMap, name: &'h str) -> impl Iterator<Item = &'h str> + 'h {
    headers.get_all(http::header::COOKIE).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(';')).filter_map(
        move |pair| {
            let (n, v) = pair.trim().split_once('=')?;
            (n.trim() == name).then(|| v.trim().trim_matches('"'))
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer(family: &str) -> Signer {
        Signer::new(std::sync::Arc::from(&b"0123456789abcdef0123456789abcdef"[..]), family, "gatehouse_backend", "/")
    }

    #[test]
    fn a_signed_cookie_names_its_backend() {
        let s = signer("exchange");
        let v = s.sign(MemberId(0x0123_4567_89ab_cdef));
        assert_eq!(v.len(), 16 + 1 + 32);
        assert_eq!(s.verify(&v), Some(MemberId(0x0123_4567_89ab_cdef)));
        assert_eq!(
            s.set_cookie(MemberId(1), true),
            format!("gatehouse_backend={}; Path=/; HttpOnly; SameSite=Lax; Secure", s.sign(MemberId(1)))
        );
    }

    /// Forgeries: another backend's id under the same tag, a changed tag, a
    /// tag of another site or key, cut or grown values, garbage.
    #[test]
    fn forged_cookies_name_no_backend() {
        let s = signer("exchange");
        let v = s.sign(MemberId(0xabcd_ef01));
        let (id, tag) = v.split_once('.').unwrap();
        assert_eq!(s.verify(&format!("{:016x}.{tag}", 8)), None, "another id, same tag");
        for i in 0..tag.len() {
            let mut t = tag.as_bytes().to_vec();
            t[i] = if t[i] == b'0' { b'1' } else { b'0' };
            assert_eq!(s.verify(&format!("{id}.{}", String::from_utf8(t).unwrap())), None, "tag byte {i}");
        }
        assert_eq!(signer("intranet").verify(&v), None, "signed for another site");
        let other_key = Signer::new(std::sync::Arc::from(&[9u8; 32][..]), "exchange", "gatehouse_backend", "/");
        assert_eq!(other_key.verify(&v), None, "another key");
        for bad in ["", ".", "7", &v[..v.len() - 1], &format!("{v}0"), &format!("{id}.{}", "zz".repeat(16)), "é.é"] {
            assert_eq!(s.verify(bad), None, "{bad:?}");
        }
        assert_eq!(s.verify(&format!("{}.{tag}", id.to_uppercase())), None, "the id is part of what is signed");
    }

    #[test]
    fn cookies_are_found_among_others() {
        let mut h = http::HeaderMap::new();
        h.append(http::header::COOKIE, "a=1; gatehouse_backend=x.y".parse().unwrap());
        h.append(http::header::COOKIE, "gatehouse_backendz=no; b=2".parse().unwrap());
        assert_eq!(cookie_values(&h, "gatehouse_backend").collect::<Vec<_>>(), ["x.y"]);
        assert_eq!(cookie_values(&h, "b").collect::<Vec<_>>(), ["2"]);
    }
}
