//! The path a request is routed on.
//!
//! Sites are chosen by path prefix, and sites carry authentication. If the proxy
//! matched on the raw path while the backend reads it differently, `/%65ws` or
//! `/public/../ews` would reach the EWS application through whatever site handles
//! `/`. So the proxy routes on the path as the backend will read it (percent-
//! decoded, repeated slashes folded, compared with Windows' case folding) and
//! refuses the shapes whose meaning differs between servers: dot segments,
//! backslashes, encoded slashes, NUL, double escapes, invalid UTF-8, the names that
//! Windows rewrites (trailing dots and spaces, NTFS streams, 8.3 short names),
//! ASP.NET's cookieless segments and `;` path parameters before the last segment.
//! The request itself is forwarded with its path untouched.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetError {
    /// Not origin-form (`/...`).
    NotAbsolutePath,
    /// `%` not followed by two hex digits.
    BadPercentEncoding,
    /// A `.` or `..` segment, raw or encoded, also once `;` parameters are cut
    /// (`..;` is `..` to Tomcat and Jetty) or trailing spaces dropped.
    DotSegment,
    /// `\`, raw or encoded: IIS treats it as `/`.
    Backslash,
    /// `%2F`: an encoded slash, which servers disagree about.
    EncodedSlash,
    /// NUL or another control character, raw or encoded.
    ControlCharacter,
    /// A `%` left after decoding that a second decoding would change
    /// (`%252e`): IIS refuses these by default (`allowDoubleEscaping=false`), and
    /// a backend that decodes twice reads another path.
    DoubleEncoding,
    /// The decoded path is not UTF-8, overlong forms (`%c0%ae`) included:
    /// lenient decoders read those as `.` or `/`.
    InvalidUtf8,
    /// A segment ending in `.` or space: Windows drops them (`secure.` is
    /// `secure`).
    TrailingDotOrSpace,
    /// An NTFS stream type in a segment (`secure::$INDEX_ALLOCATION` is the
    /// directory `secure`).
    StreamName,
    /// `~` and a digit: the shape of an 8.3 short name (`SECURE~1`).
    ShortName,
    /// `;` before the last segment: Tomcat and Jetty drop path parameters
    /// (`/secure;x/page` is `/secure/page`), IIS keeps them.
    PathParameter,
    /// An ASP.NET cookieless segment (`/(S(x))/secure` is `/secure`).
    CookielessSegment,
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
            TargetError::DoubleEncoding => "double percent-encoding in path",
            TargetError::InvalidUtf8 => "path is not UTF-8 once decoded",
            TargetError::TrailingDotOrSpace => "path segment with a trailing dot or space",
            TargetError::StreamName => "NTFS stream name in path",
            TargetError::ShortName => "8.3 short name in path",
            TargetError::PathParameter => "path parameter (;) before the last segment",
            TargetError::CookielessSegment => "ASP.NET cookieless segment in path",
        }
    }
}

impl fmt::Display for TargetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.cause())
    }
}

impl std::error::Error for TargetError {}

/// Decodes `path` (no query string) into the bytes that routing compares
/// against: valid UTF-8, starting with `/`, with `;` parameters of the last
/// segment cut off (the Tomcat reading; IIS's reading names a file in the same
/// directory, so both readings fall under the same prefixes).
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
    // A raw `%` always starts an escape, so every `%` here was `%25`. Only one
    // that a second pass would decode (`%hh`, IIS's `%uhhhh`) is refused:
    // `100%25.docx` means the same to every server.
    if out.windows(2).enumerate().any(|(k, w)| {
        w[0] == b'%'
            && (w[1] == b'u'
                || w[1] == b'U'
                || (hex(w[1]).is_some() && out.get(k + 2).is_some_and(|&b| hex(b).is_some())))
    }) {
        return Err(TargetError::DoubleEncoding);
    }
    if std::str::from_utf8(&out).is_err() {
        return Err(TargetError::InvalidUtf8);
    }
    let last_start = out.iter().rposition(|&b| b == b'/').map_or(0, |p| p + 1);
    for (start, seg) in segments(&out) {
        if let Some(p) = seg.iter().position(|&b| b == b';') {
            // Tomcat reads the part before `;`, IIS the whole segment: both
            // readings must pass, and only the last segment may differ.
            check_name(&seg[..p])?;
            if start != last_start {
                return Err(TargetError::PathParameter);
            }
        }
        check_name(seg)?;
    }
    if let Some(p) = out[last_start..].iter().position(|&b| b == b';') {
        out.truncate(last_start + p);
    }
    Ok(out)
}

/// `(offset, segment)` for each segment after the leading `/`.
fn segments(path: &[u8]) -> impl Iterator<Item = (usize, &[u8])> {
    let mut start = 1;
    path[1..].split(|&b| b == b'/').map(move |seg| {
        let s = start;
        start += seg.len() + 1;
        (s, seg)
    })
}

/// Refuses a segment name that Windows, IIS or ASP.NET would read as another.
fn check_name(seg: &[u8]) -> Result<(), TargetError> {
    // Windows also reads `.. ` as `..`.
    let trimmed = trim_end_spaces(seg);
    if trimmed == b"." || trimmed == b".." {
        return Err(TargetError::DotSegment);
    }
    if matches!(seg.last(), Some(b'.') | Some(b' ')) {
        return Err(TargetError::TrailingDotOrSpace);
    }
    // `name:$TYPE` and `name:stream:$TYPE` open `name` itself for the index
    // and data types; a trailing `:` is an empty stream name. A named stream
    // without a type (`a.txt:s`) is a stream of a file, never a directory.
    if seg.windows(2).any(|w| w == b":$") || seg.last() == Some(&b':') {
        return Err(TargetError::StreamName);
    }
    if seg.windows(2).any(|w| w[0] == b'~' && w[1].is_ascii_digit()) {
        return Err(TargetError::ShortName);
    }
    // ASP.NET strips `(X(...))` segments (S, A, F, any letter it may add);
    // the shape alone is refused, whatever follows.
    if seg.len() >= 3 && seg[0] == b'(' && seg[1].is_ascii_alphabetic() && seg[2] == b'(' {
        return Err(TargetError::CookielessSegment);
    }
    Ok(())
}

fn trim_end_spaces(mut seg: &[u8]) -> &[u8] {
    while let [rest @ .., b' '] = seg {
        seg = rest;
    }
    seg
}

/// Does `path` (from [`routing_path`]) fall under `prefix`? Compared
/// case-insensitively the way NTFS and IIS compare names (each character's
/// simple upper case, beyond ASCII too), and only at segment boundaries: `/ews`
/// covers `/ews` and `/EWS/x` but not `/ewsx`.
pub fn prefix_matches(path: &[u8], prefix: &[u8]) -> bool {
    let (Ok(path_text), Ok(prefix_text)) = (std::str::from_utf8(path), std::str::from_utf8(prefix)) else {
        return ascii_prefix_matches(path, prefix);
    };
    let mut chars = path_text.char_indices();
    let mut end = 0;
    for want in prefix_text.chars() {
        match chars.next() {
            Some((i, got)) if fold(got) == fold(want) => end = i + got.len_utf8(),
            _ => return false,
        }
    }
    prefix.last() == Some(&b'/') || end == path.len() || path[end] == b'/'
}

fn ascii_prefix_matches(path: &[u8], prefix: &[u8]) -> bool {
    if path.len() < prefix.len() || !path[..prefix.len()].eq_ignore_ascii_case(prefix) {
        return false;
    }
    prefix.last() == Some(&b'/') || path.len() == prefix.len() || path[prefix.len()] == b'/'
}

/// A character's simple (one-to-one) upper case, as NTFS's upcase table has it;
/// characters whose upper case is several (`ß`) stay as they are.
fn fold(c: char) -> char {
    if c.is_ascii() {
        return c.to_ascii_uppercase();
    }
    let mut up = c.to_uppercase();
    match (up.next(), up.next()) {
        (Some(u), None) => u,
        _ => c,
    }
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
        assert!(!p.contains(&b';'), "path parameters are cut or refused");
        let text = std::str::from_utf8(&p).expect("routing paths are UTF-8");
        for seg in text.split('/').skip(1) {
            assert!(seg != "." && seg != "..");
            assert!(!seg.ends_with('.') && !seg.ends_with(' '));
            assert!(!seg.contains(":$") && !seg.ends_with(':'));
            let b = seg.as_bytes();
            assert!(!(b.len() >= 3 && b[0] == b'(' && b[1].is_ascii_alphabetic() && b[2] == b'('));
        }
        assert!(!p.windows(2).any(|w| w[0] == b'~' && w[1].is_ascii_digit()));
        let _ = prefix_matches(&p, b"/ews");
        let _ = prefix_matches(&p, "/Ünicode".as_bytes());
    }
    let _ = prefix_matches(data, data.get(..data.len() / 2).unwrap_or_default());
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
    fn refuses_what_windows_iis_and_java_servers_rewrite() {
        use TargetError::*;
        let cases = [
            ("/x/..;/secure", DotSegment),
            ("/x/..;a=b/secure", DotSegment),
            ("/x/%2e%2e%3b/secure", DotSegment),
            ("/x/.;/secure", DotSegment),
            ("/x/..", DotSegment),
            ("/x/..%20/secure", DotSegment),
            ("/x/.%20/secure", DotSegment),
            ("/x/..;", DotSegment),
            ("/secure;x/page", PathParameter),
            ("/a;/b", PathParameter),
            ("/;x/b", PathParameter),
            ("/secure.", TrailingDotOrSpace),
            ("/secure./x", TrailingDotOrSpace),
            ("/secure%2E", TrailingDotOrSpace),
            ("/secure%20", TrailingDotOrSpace),
            ("/secure%20/x", TrailingDotOrSpace),
            ("/secure...", TrailingDotOrSpace),
            ("/a/b;c.", TrailingDotOrSpace),
            ("/a/b.;c", TrailingDotOrSpace),
            ("/secure::$INDEX_ALLOCATION", StreamName),
            ("/secure:$I30:$INDEX_ALLOCATION/x", StreamName),
            ("/a.aspx::$DATA", StreamName),
            ("/secure%3a%3a%24index_allocation", StreamName),
            ("/secure:", StreamName),
            ("/SECURE~1", ShortName),
            ("/secure~12/x", ShortName),
            ("/PROGRA%7E1", ShortName),
            ("/(S(x))/secure", CookielessSegment),
            ("/(A(x)S(y))/secure", CookielessSegment),
            ("/(f(x))/", CookielessSegment),
            ("/(S(", CookielessSegment),
            ("/%28S%28x%29%29/secure", CookielessSegment),
            ("/x/%c0%ae%c0%ae/secure", InvalidUtf8),
            ("/%c0%af", InvalidUtf8),
            ("/%e0%80%ae", InvalidUtf8),
            ("/%ed%a0%80", InvalidUtf8),
            ("/%f4%90%80%80", InvalidUtf8),
            ("/%ff", InvalidUtf8),
            ("/%c3", InvalidUtf8),
            ("/x/%252e%252e/secure", DoubleEncoding),
            ("/%2573ecure", DoubleEncoding),
            ("/%25%32%65", DoubleEncoding),
            ("/%25u002e", DoubleEncoding),
            ("/%25U002E", DoubleEncoding),
        ];
        for (path, want) in cases {
            assert_eq!(routing_path(path.as_bytes()), Err(want), "{path}");
        }
    }

    #[test]
    fn keeps_what_real_applications_send() {
        assert_eq!(ok("/owa/"), "/owa/");
        assert_eq!(ok("/EWS/Exchange.asmx"), "/EWS/Exchange.asmx");
        assert_eq!(ok("/sites/M%C3%BCller/Shared%20Documents/a.docx"), "/sites/Müller/Shared Documents/a.docx");
        assert_eq!(ok("/sites/Müller"), "/sites/Müller");
        assert_eq!(ok("/100%25.docx"), "/100%.docx");
        assert_eq!(ok("/100%25"), "/100%");
        assert_eq!(ok("/%25zz"), "/%zz");
        assert_eq!(ok("/~user/x"), "/~user/x");
        assert_eq!(ok("/a+b/c(1).txt"), "/a+b/c(1).txt");
        assert_eq!(ok("/_api/web/lists(guid'1')/items(2)"), "/_api/web/lists(guid'1')/items(2)");
        assert_eq!(ok("/a.txt:stream"), "/a.txt:stream");
        assert_eq!(ok("/.hidden/x"), "/.hidden/x");
        assert_eq!(ok("/ a/x"), "/ a/x");
    }

    #[test]
    fn last_segment_parameters_are_cut_for_routing() {
        assert_eq!(ok("/api/v1;x=1"), "/api/v1");
        assert_eq!(ok("/secure;jsessionid=1"), "/secure");
        assert_eq!(ok("/secure/;x"), "/secure/");
        assert_eq!(ok("/;x"), "/");
        assert_eq!(ok("/a%3bb"), "/a");
        assert!(prefix_matches(&routing_path(b"/secure;x").unwrap(), b"/secure"));
    }

    #[test]
    fn prefixes_fold_case_beyond_ascii() {
        assert!(prefix_matches("/ÜNICODE/x".as_bytes(), "/ünicode".as_bytes()));
        assert!(prefix_matches("/ünicode".as_bytes(), "/Ünicode".as_bytes()));
        assert!(prefix_matches("/ΣΕΛΙΔΑ".as_bytes(), "/σελιδα".as_bytes()));
        assert!(!prefix_matches("/ünicodex".as_bytes(), "/Ünicode".as_bytes()));
        assert!(!prefix_matches("/unicode".as_bytes(), "/Ünicode".as_bytes()));
        assert!(!prefix_matches("/Ü".as_bytes(), "/Ünicode".as_bytes()));
        // Upper case of `ß` is two letters; NTFS keeps it as it is.
        assert!(!prefix_matches("/SS".as_bytes(), "/ß".as_bytes()));
        // Not UTF-8 (a prefix from elsewhere): ASCII rules, no panic.
        assert!(prefix_matches(b"/EWS/\xff", b"/ews"));
        assert!(!prefix_matches(b"/\xff", b"/\xfe"));
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
        // Every byte that starts or shapes a refusal, and the hex digits that
        // make escapes of them.
        const ALPHABET: &[u8] = b"/.%2eE5cfF0\\a;:$~1(S) u0AC\xc3\xbc";
        let mut seed: u64 = 12345;
        let (mut accepted, mut distinct) = (0, std::collections::HashSet::new());
        for _ in 0..20_000 {
            let mut data = vec![b'/'];
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            for _ in 0..(seed % 24) {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                data.push(ALPHABET[(seed % ALPHABET.len() as u64) as usize]);
            }
            accepted += usize::from(routing_path(&data).is_ok());
            fuzz_one(&data);
            distinct.insert(data);
        }
        // Both verdicts, on many inputs, or the entry's assertions check nothing.
        assert!(accepted > 500 && distinct.len() > 10_000, "{accepted} accepted, {} distinct", distinct.len());
    }
}
