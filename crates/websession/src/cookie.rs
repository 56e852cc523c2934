//! Reading `Cookie` request headers (RFC 6265 section 5.4's
//! `name=value; name=value`, as browsers send it).

/// More values than this for one name are ignored: a client that sends more
/// is not a browser holding our cookies.
pub const MAX_VALUES: usize = 4;

/// The values of the cookie `name` in these `Cookie` header values, in order
/// (a name can come more than once: a host cookie and a domain cookie, or
/// one planted by a sibling host; the caller tries each). Values keep their
/// bytes; a quoted value loses its quotes. Names compare exactly.
pub fn values<'a>(headers: impl IntoIterator<Item = &'a [u8]>, name: &str) -> Vec<&'a str> {
    let mut out = Vec::new();
    for header in headers {
        let Ok(text) = std::str::from_utf8(header) else { continue };
        for pair in text.split(';') {
            let Some((n, v)) = pair.split_once('=') else { continue };
            if n.trim_matches([' ', '\t']) != name {
                continue;
            }
            let v = v.trim_matches([' ', '\t']);
            let v = v.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(v);
            if out.len() == MAX_VALUES {
                return out;
            }
            out.push(v);
        }
    }
    out
}

/// A `Cookie` header value without the cookies named `names` (gatehouse's
/// own, which the backend must never see); None when nothing is left.
/// Pairs are kept byte for byte, in order.
pub fn without(header: &[u8], names: &[&str]) -> Option<Vec<u8>> {
    let mut out: Vec<u8> = Vec::with_capacity(header.len());
    for pair in header.split(|b| *b == b';') {
        let name = pair.split(|b| *b == b'=').next().unwrap_or(pair);
        let name = name.trim_ascii();
        if names.iter().any(|n| n.as_bytes() == name) || pair.trim_ascii().is_empty() {
            continue;
        }
        if !out.is_empty() {
            out.extend_from_slice(b"; ");
        }
        out.extend_from_slice(pair.trim_ascii());
    }
    (!out.is_empty()).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ours_are_removed() {
        let ours = ["__Host-gh", "__Host-gh-pre"];
        assert_eq!(without(b"a=1; __Host-gh=abc; b=2", &ours).unwrap(), b"a=1; b=2");
        assert_eq!(without(b"__Host-gh=abc;__Host-gh-pre=x", &ours), None);
        assert_eq!(without(b" MapiContext=x ; __Host-gh=\"y\"", &ours).unwrap(), b"MapiContext=x");
        assert_eq!(without(b"__Host-gh-other=1", &ours).unwrap(), b"__Host-gh-other=1", "names compare whole");
        assert_eq!(without(b"junk", &ours).unwrap(), b"junk", "not ours: kept as sent");
        assert_eq!(without(b"", &ours), None);
    }

    #[test]
    fn values_by_name() {
        let h: [&[u8]; 2] = [b"a=1; __Host-gh=abc; b=2", b"__Host-gh=\"def\";c=3"];
        assert_eq!(values(h, "__Host-gh"), ["abc", "def"]);
        assert_eq!(values(h, "a"), ["1"]);
        assert!(values(h, "__host-gh").is_empty(), "names compare exactly");
        assert!(values([b"x".as_slice()], "x").is_empty(), "no =");
        assert_eq!(values([b"x=".as_slice()], "x"), [""]);
        assert_eq!(values([b"x=a=b".as_slice()], "x"), ["a=b"], "the first = splits");
        assert!(values([b"x=\xff".as_slice()], "x").is_empty(), "not UTF-8");
        let many = "x=1; ".repeat(10);
        assert_eq!(values([many.as_bytes()], "x").len(), MAX_VALUES);
    }
}
