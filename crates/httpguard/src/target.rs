//! The path a request is routed on.
//!
//! Sites are chosen by path prefix, and later issues attach authentication to
//! sites. If the proxy matched on the raw path while IIS decodes it, `/%65ws` or
//! `/public/../ews` would reach the EWS application through whatever site handles
//! `/`. So the proxy routes on the path as the backend will read it (percent-
//! decoded, repeated slashes folded) and refuses the shapes whose meaning differs
//! between servers: dot segments, backslashes, encoded slashes and NUL. The request
//! itself is forwarded with its path untouched.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetError {
    /// Not origin-form (`/...`).
    NotAbsolutePath,
    /// `%` not followed by two hex digits.
    BadPercentEncoding,
    /// A `.` or `..` segment, raw or encoded.
    DotSegment,
    /// `\`, raw or encoded: IIS treats it as `/`.
    Backslash,
    /// `%2F`: an encoded slash, which servers disagree about.
    EncodedSlash,
    /// NUL or another control character, raw or encoded.
    ControlCharacter,
}

impl TargetError {
    pub fn cause(&self) -> &'static str {
        match self {
            TargetError::NotAbsolutePath => "request target is not an absolute path",
            TargetError::BadPercentEncoding => "bad percent-encoding in path",
            TargetError::DotSegment => "dot segment in path",
            TargetError::Backslash => "backslash in path",
            TargetError::EncodedSlash => "encoded slash in path",
            TargetError::ControlCharacter => "control character in path",
        }
    }
}

impl fmt::Display for TargetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.cause())
    }
}

impl std::error::Error for TargetError {}

/// Decodes `path` (no query string) into the bytes that routing compares against.
pub fn routing_path(path: &[u8]) -> Result<Vec<u8>, TargetError> {
    if path.first() != Some(&b'/') {
        return Err(TargetError::NotAbsolutePath);
    }
    let mut out = Vec::with_capacity(path.len());
    let mut i = 0;
    while i < path.len() {
        let (byte, encoded) = if path[i] == b'%' {
            let (Some(&h), Some(&l)) = (path.get(i + 1), path.get(i + 2)) else {
                return Err(TargetError::BadPercentEncoding);
            };
            let (Some(h), Some(l)) = (hex(h), hex(l)) else {
                return Err(TargetError::BadPercentEncoding);
            };
            i += 3;
            ((h << 4) | l, true)
        } else {
            i += 1;
            (path[i - 1], false)
        };
        match byte {
            b'/' if encoded => return Err(TargetError::EncodedSlash),
            b'\\' => return Err(TargetError::Backslash),
            0..=0x1f | 0x7f => return Err(TargetError::ControlCharacter),
            // Fold `//` into `/`: IIS and most servers do.
            b'/' if out.last() == Some(&b'/') => {}
            _ => out.push(byte),
        }
    }
    if out.split(|&b| b == b'/').any(|seg| seg == b"." || seg == b"..") {
        return Err(TargetError::DotSegment);
    }
    Ok(out)
}

/// Does `path` (from [`routing_path`]) fall under `prefix`? Compared ASCII
/// case-insensitively, as IIS compares paths, and only at segment boundaries:
/// `/ews` covers `/ews` and `/EWS/x` but not `/ewsx`.
pub fn prefix_matches(path: &[u8], prefix: &[u8]) -> bool {
    if path.len() < prefix.len() || !path[..prefix.len()].eq_ignore_ascii_case(prefix) {
        return false;
    }
    prefix.last() == Some(&b'/') || path.len() == prefix.len() || path[prefix.len()] == b'/'
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Fuzzer entry: must never panic, and a decoded path never contains what it refuses.
pub fn fuzz_one(data: &[u8]) {
    if let Ok(p) = routing_path(data) {
        assert!(p.first() == Some(&b'/'));
        assert!(!p.contains(&b'\\') && !p.contains(&0));
        assert!(!p.windows(2).any(|w| w == b"//"));
        let _ = prefix_matches(&p, b"/ews");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(p: &str) -> String {
        String::from_utf8(routing_path(p.as_bytes()).unwrap()).unwrap()
    }

    #[test]
    fn decodes_and_folds() {
        assert_eq!(ok("/%65ws/Exchange.asmx"), "/ews/Exchange.asmx");
        assert_eq!(ok("//ews///x"), "/ews/x");
        assert_eq!(ok("/a%20b"), "/a b");
        assert_eq!(ok("/"), "/");
    }

    #[test]
    fn refuses_ambiguous_paths() {
        let cases = [
            ("/public/../ews", TargetError::DotSegment),
            ("/public/%2e%2e/ews", TargetError::DotSegment),
            ("/./ews", TargetError::DotSegment),
            ("/ews/..", TargetError::DotSegment),
            ("/public\\..\\ews", TargetError::Backslash),
            ("/public%5cews", TargetError::Backslash),
            ("/public%2fews", TargetError::EncodedSlash),
            ("/a%00b", TargetError::ControlCharacter),
            ("/a%zz", TargetError::BadPercentEncoding),
            ("/a%u002e", TargetError::BadPercentEncoding),
            ("/a%4", TargetError::BadPercentEncoding),
            ("ews", TargetError::NotAbsolutePath),
            ("", TargetError::NotAbsolutePath),
        ];
        for (path, want) in cases {
            assert_eq!(routing_path(path.as_bytes()), Err(want), "{path}");
        }
    }

    #[test]
    fn dots_inside_names_are_fine() {
        assert_eq!(ok("/a/.well-known/x..y"), "/a/.well-known/x..y");
    }

    #[test]
    fn prefix_respects_segments_and_case() {
        assert!(prefix_matches(b"/ews", b"/ews"));
        assert!(prefix_matches(b"/EWS/Exchange.asmx", b"/ews"));
        assert!(!prefix_matches(b"/ewsx", b"/ews"));
        assert!(prefix_matches(b"/anything", b"/"));
        assert!(prefix_matches(b"/owa/x", b"/owa/"));
        assert!(!prefix_matches(b"/ow", b"/owa"));
    }

    #[test]
    fn fuzz_entry_on_noise() {
        let mut seed: u64 = 12345;
        for _ in 0..20_000 {
            let mut data = vec![b'/'];
            for _ in 0..(seed % 24) {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                data.push(b"/.%2eE5cfF0\\a"[(seed % 13) as usize]);
            }
            fuzz_one(&data);
        }
    }
}
