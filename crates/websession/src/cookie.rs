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

#[cfg(test)]
mod tests {
    use super::*;

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
