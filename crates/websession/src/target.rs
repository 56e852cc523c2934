//! Where to go after sign-in: only ever a path on the host the sign-in page
//! was served on. Everything else (`//evil.example`, `https://evil.example`,
//! `/\evil`, their percent-encoded forms, `javascript:`, a path with a
//! control character) gives None, and the caller sends the browser to the
//! site's root instead. Whether the path is published on this listener is
//! the caller's question (its routing table).

/// Longer return addresses are not followed.
pub const MAX_LEN: usize = 2048;

/// `raw` as the path (and query) to send the browser to on `host` (the
/// request's Host, port included), or None. `raw` is a path (`/owa/?x`), or
/// an `https://` URL whose authority is exactly `host`.
pub fn return_path(raw: &str, host: &str) -> Option<String> {
    if raw.len() > MAX_LEN {
        return None;
    }
    let path = match raw.get(..8) {
        Some(scheme) if scheme.eq_ignore_ascii_case("https://") => {
            let rest = &raw[8..];
            let end = rest.find(['/', '?', '#', '\\']).unwrap_or(rest.len());
            if host.is_empty() || !rest[..end].eq_ignore_ascii_case(host) {
                return None;
            }
            match &rest[end..] {
                "" => "/",
                p => p,
            }
        }
        _ => raw,
    };
    if !path.starts_with('/') || !safe(path) {
        return None;
    }
    // What a browser or a backend may make of it after decoding, up to three
    // layers deep: still a path on this host.
    let mut seen = path.to_owned();
    for _ in 0..3 {
        match percent_decoded(&seen) {
            Some(next) if next == seen => break,
            Some(next) if next.starts_with('/') && safe_decoded(&next) => seen = next,
            _ => return None,
        }
    }
    Some(path.to_owned())
}

/// As sent: visible ASCII only, no backslash, no fragment, not `//`.
fn safe(path: &str) -> bool {
    path.bytes().all(|b| b.is_ascii_graphic() && b != b'\\' && b != b'#') && !path.starts_with("//")
}

/// After decoding: no second slash or backslash at the start, no backslash,
/// control character or text-direction mark anywhere (a path shown in an
/// address bar must read as it goes).
fn safe_decoded(path: &str) -> bool {
    let invisible =
        |c: char| matches!(c, '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{feff}');
    !path.starts_with("//") && !path.chars().any(|c| c == '\\' || c.is_control() || invisible(c))
}

fn percent_decoded(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = |b: Option<&u8>| b.and_then(|b| (*b as char).to_digit(16));
            match (hex(bytes.get(i + 1)), hex(bytes.get(i + 2))) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
                // A lone `%` stays as it is (a browser sends it so).
                _ => out.push(b'%'),
            }
        } else {
            out.push(bytes[i]);
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST: &str = "mail.example.com:8443";

    #[test]
    fn paths_on_this_host_are_followed() {
        for ok in ["/", "/owa/", "/owa/?ae=Folder&t=IPF.Note", "/sites/a%20b/x.aspx", "/%C3%A9t%C3%A9"] {
            assert_eq!(return_path(ok, HOST).as_deref(), Some(ok), "{ok}");
        }
        assert_eq!(return_path("https://mail.example.com:8443/owa/?x=1", HOST).as_deref(), Some("/owa/?x=1"));
        assert_eq!(return_path("HTTPS://MAIL.example.com:8443", HOST).as_deref(), Some("/"));
    }

    #[test]
    fn everything_else_goes_to_the_root() {
        for bad in [
            "//evil.example",
            "//evil.example/owa",
            "///evil.example",
            "/\\evil.example",
            "\\\\evil.example",
            "https://evil.example",
            "https://evil.example/owa",
            "https://mail.example.com:8443.evil.example/",
            "https://mail.example.com:8443@evil.example/",
            "https://mail.example.com/owa",
            "http://mail.example.com:8443/owa",
            "https:/evil.example",
            "https:evil.example",
            "javascript:alert(1)",
            "data:text/html,x",
            "evil.example",
            "owa/",
            "",
            "/%2F%2Fevil.example",
            "/%2fevil.example",
            "/%5Cevil.example",
            "/%5cevil.example",
            "%2F%2Fevil.example",
            "/%252F%252Fevil.example",
            "/%25252F%25252Fevil.example",
            "/%09/evil.example",
            "/\t/evil.example",
            "/ /evil.example",
            "/owa/\r\nSet-Cookie:x=1",
            "/owa/%0d%0aSet-Cookie:x=1",
            "/owa/#frag",
            "/%E2%80%AE",
            "/%ff",
        ] {
            assert_eq!(return_path(bad, HOST), None, "{bad:?}");
        }
        assert_eq!(return_path(&format!("/{}", "a".repeat(MAX_LEN)), HOST), None, "too long");
        assert_eq!(return_path("https:///owa", ""), None, "no host to compare with");
    }
}
