//! The host a request names, in the Host header or the authority of an
//! absolute-form target.
//!
//! Sites are chosen by host, and the host travels on to the backend. A value that
//! two parsers split differently (`other:1@intranet.test`: host `other` to a
//! naive `rsplit(':')`, host `intranet.test` to a URL parser) lets a request be
//! routed as one host and served as another. So only `uri-host [":" port]` is
//! accepted (RFC 9112 section 3.2, RFC 3986 section 3.2.2), narrowed to what
//! names a real server: DNS-style names, dotted-quad IPv4, bracketed IPv6, a
//! port of digits. Everything else is refused, and RFC 9112 says 400.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

/// Longest DNS name (RFC 1035), without the root's trailing dot.
const MAX_NAME: usize = 253;
const MAX_LABEL: usize = 63;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostError {
    Empty,
    /// `user@host`: deprecated by RFC 9110 section 4.2.4, and read differently
    /// by different parsers.
    Userinfo,
    /// A byte no host name has: space, `/`, `,`, `%`, `\`, non-ASCII...
    BadCharacter,
    /// A second `:` outside brackets (`a:b:c`, a bare IPv6 address).
    ExtraColon,
    /// `[` without `]`, or a bracket outside an IP literal.
    UnbalancedBracket,
    /// Between brackets, something other than an IPv6 address (IPvFuture,
    /// zone identifiers).
    BadIpLiteral,
    /// Ends in a number, but is not a dotted-quad IPv4 address: URL parsers
    /// read `1.2.3` or `2130706433` as other addresses, or refuse them.
    BadIpv4,
    /// An empty label (`a..b`, `.a`).
    EmptyLabel,
    TooLong,
    /// Empty, not digits, or above 65535.
    BadPort,
}

impl HostError {
    pub fn cause(&self) -> &'static str {
        match self {
            HostError::Empty => "empty host",
            HostError::Userinfo => "userinfo (user@) in host",
            HostError::BadCharacter => "character not allowed in a host",
            HostError::ExtraColon => "more than one colon outside brackets in host",
            HostError::UnbalancedBracket => "unbalanced bracket in host",
            HostError::BadIpLiteral => "bracketed host is not an IPv6 address",
            HostError::BadIpv4 => "numeric host is not a dotted-quad IPv4 address",
            HostError::EmptyLabel => "empty label in host name",
            HostError::TooLong => "host name too long",
            HostError::BadPort => "bad port in host",
        }
    }
}

impl fmt::Display for HostError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.cause())
    }
}

impl std::error::Error for HostError {}

/// A checked host: `name` is the host as sent (brackets kept for IPv6), without
/// the port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostPort<'a> {
    pub name: &'a str,
    pub port: Option<u16>,
}

/// Checks a Host value or an authority (`host[:port]`).
pub fn parse_host(value: &[u8]) -> Result<HostPort<'_>, HostError> {
    if value.is_empty() {
        return Err(HostError::Empty);
    }
    // Named first: it is the one attack here with a well-known shape.
    if value.contains(&b'@') {
        return Err(HostError::Userinfo);
    }
    let (name, port) = if value[0] == b'[' {
        let close = value.iter().position(|&b| b == b']').ok_or(HostError::UnbalancedBracket)?;
        let literal = &value[1..close];
        // Only hex digits, `:` and `.` make an IPv6 address; checking first keeps
        // a `%` zone or anything else from the standard parser's judgement.
        if !literal.iter().all(|b| b.is_ascii_hexdigit() || *b == b':' || *b == b'.') {
            return Err(HostError::BadIpLiteral);
        }
        let text = std::str::from_utf8(literal).map_err(|_| HostError::BadIpLiteral)?;
        text.parse::<Ipv6Addr>().map_err(|_| HostError::BadIpLiteral)?;
        let rest = &value[close + 1..];
        if rest.contains(&b'[') || rest.contains(&b']') {
            return Err(HostError::UnbalancedBracket);
        }
        let port = match rest {
            [] => None,
            [b':', digits @ ..] => Some(digits),
            _ => return Err(HostError::BadCharacter),
        };
        (&value[..=close], port)
    } else {
        let (name, port) = match value.iter().position(|&b| b == b':') {
            None => (value, None),
            Some(i) => (&value[..i], Some(&value[i + 1..])),
        };
        if value.contains(&b'[') || value.contains(&b']') {
            return Err(HostError::UnbalancedBracket);
        }
        if port.is_some_and(|p| p.contains(&b':')) {
            return Err(HostError::ExtraColon);
        }
        check_name(name)?;
        (name, port)
    };
    let port = port.map(parse_port).transpose()?;
    // Every byte accepted above is ASCII.
    let name = std::str::from_utf8(name).map_err(|_| HostError::BadCharacter)?;
    Ok(HostPort { name, port })
}

/// A reg-name narrowed to DNS's letters, digits, `-`, `.` and `_` (which
/// Windows domains use in SRV-style and NetBIOS-derived names). The other
/// characters RFC 3986 allows (`!$&'()*+,;=` and `%` escapes) name no real
/// server and split differently in list-aware or decoding parsers.
fn check_name(name: &[u8]) -> Result<(), HostError> {
    if name.is_empty() {
        return Err(HostError::Empty);
    }
    if !name.iter().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_')) {
        return Err(HostError::BadCharacter);
    }
    // One trailing dot names the root, as in `mail.test.`.
    let labels = name.strip_suffix(b".").unwrap_or(name);
    if labels.len() > MAX_NAME {
        return Err(HostError::TooLong);
    }
    for label in labels.split(|&b| b == b'.') {
        if label.is_empty() {
            return Err(HostError::EmptyLabel);
        }
        if label.len() > MAX_LABEL {
            return Err(HostError::TooLong);
        }
    }
    let last = labels.rsplit(|&b| b == b'.').next().unwrap_or_default();
    let hex_number =
        last.len() > 2 && last[..2].eq_ignore_ascii_case(b"0x") && last[2..].iter().all(u8::is_ascii_hexdigit);
    if last.iter().all(u8::is_ascii_digit) || hex_number {
        // A name that ends in a number is an address to URL parsers (WHATWG),
        // which read `1.2.3`, `2130706433` or `a.0x7f` as addresses of their
        // own: only a dotted quad is accepted (std refuses leading zeros too).
        let text = std::str::from_utf8(labels).map_err(|_| HostError::BadIpv4)?;
        text.parse::<Ipv4Addr>().map_err(|_| HostError::BadIpv4)?;
    }
    Ok(())
}

/// RFC 3986 allows an empty port; no client sends one, and an authority that
/// ends in `:` is the kind of value two parsers read differently, so it is
/// refused.
fn parse_port(digits: &[u8]) -> Result<u16, HostError> {
    if digits.is_empty() || digits.len() > 5 || !digits.iter().all(u8::is_ascii_digit) {
        return Err(HostError::BadPort);
    }
    let n = digits.iter().fold(0u32, |n, d| n * 10 + u32::from(d - b'0'));
    u16::try_from(n).map_err(|_| HostError::BadPort)
}

/// Fuzzer entry: never panics, and what it accepts has one reading.
pub fn fuzz_one(data: &[u8]) {
    if let Ok(h) = parse_host(data) {
        assert!(!h.name.is_empty());
        assert!(!data.contains(&b'@') && !data.contains(&b',') && !data.contains(&b' ') && !data.contains(&b'/'));
        assert!(data.is_ascii());
        // The name is where the value starts; the port is what follows its `:`.
        assert!(data.starts_with(h.name.as_bytes()));
        let rest = &data[h.name.len()..];
        match h.port {
            None => assert!(rest.is_empty()),
            Some(p) => {
                let digits = std::str::from_utf8(&rest[1..]).unwrap();
                assert!(rest[0] == b':' && digits.parse::<u16>() == Ok(p));
            }
        }
        if let Some(inner) = h.name.strip_prefix('[') {
            assert!(inner.trim_end_matches(']').parse::<Ipv6Addr>().is_ok());
        } else {
            assert!(!h.name.contains(':') && !h.name.contains('[') && !h.name.contains(']'));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hp(name: &str, port: Option<u16>) -> Result<HostPort<'_>, HostError> {
        Ok(HostPort { name, port })
    }

    #[test]
    fn accepts_names_addresses_and_ports() {
        assert_eq!(parse_host(b"intranet.test"), hp("intranet.test", None));
        assert_eq!(parse_host(b"intranet.test:8443"), hp("intranet.test", Some(8443)));
        assert_eq!(parse_host(b"Mail-01.Example_Dom.test."), hp("Mail-01.Example_Dom.test.", None));
        assert_eq!(parse_host(b"127.0.0.1"), hp("127.0.0.1", None));
        assert_eq!(parse_host(b"127.0.0.1:0"), hp("127.0.0.1", Some(0)));
        assert_eq!(parse_host(b"[::1]:80"), hp("[::1]", Some(80)));
        assert_eq!(parse_host(b"[::1]"), hp("[::1]", None));
        assert_eq!(parse_host(b"[2001:db8::ffff:1.2.3.4]:65535"), hp("[2001:db8::ffff:1.2.3.4]", Some(65535)));
        assert_eq!(parse_host(b"a:00080"), hp("a", Some(80)));
        assert_eq!(parse_host(b"4.3.2.1a"), hp("4.3.2.1a", None));
        assert_eq!(parse_host(b"a.0xg"), hp("a.0xg", None));
        let long = format!("{}.{}.{}.{}", "a".repeat(63), "b".repeat(63), "c".repeat(63), "d".repeat(61));
        assert_eq!(long.len(), 253);
        assert!(parse_host(long.as_bytes()).is_ok());
        assert!(parse_host(format!("{long}.").as_bytes()).is_ok());
    }

    #[test]
    fn refuses_everything_else() {
        use HostError::*;
        let too_long = format!("{}.{}.{}.{}", "a".repeat(63), "b".repeat(63), "c".repeat(63), "d".repeat(62));
        let long_label = "a".repeat(64);
        let cases: &[(&[u8], HostError)] = &[
            (b"", Empty),
            (b":80", Empty),
            (b"other:1@intranet.test", Userinfo),
            (b"user@intranet.test", Userinfo),
            (b"@intranet.test", Userinfo),
            (b"[::1]@a", Userinfo),
            (b"a b", BadCharacter),
            (b" a", BadCharacter),
            (b"a/b", BadCharacter),
            (b"a,b", BadCharacter),
            (b"a%2eb", BadCharacter),
            (b"a\\b", BadCharacter),
            (b"a;b", BadCharacter),
            (b"a\x00", BadCharacter),
            ("m\u{fc}ller".as_bytes(), BadCharacter),
            (b"[::1]x", BadCharacter),
            (b"a:b:c", ExtraColon),
            (b"::1", ExtraColon),
            (b"a::80", ExtraColon),
            (b"[::1", UnbalancedBracket),
            (b"::1]", UnbalancedBracket),
            (b"a]", UnbalancedBracket),
            (b"a[b]", UnbalancedBracket),
            (b"[::1]]", UnbalancedBracket),
            (b"[::1]:80]", UnbalancedBracket),
            (b"[fe80::1%25eth0]", BadIpLiteral),
            (b"[v1.x]", BadIpLiteral),
            (b"[not-an-ip]", BadIpLiteral),
            (b"[]", BadIpLiteral),
            (b"[1.2.3.4]", BadIpLiteral),
            (b"[::1::2]", BadIpLiteral),
            (b"256.1.1.1", BadIpv4),
            (b"1.2.3", BadIpv4),
            (b"2130706433", BadIpv4),
            (b"01.2.3.4", BadIpv4),
            (b"1.2.3.4.5", BadIpv4),
            (b"1a.2.3.4", BadIpv4),
            (b"intranet.1", BadIpv4),
            (b"a.0x7f", BadIpv4),
            (b"0X7F000001", BadIpv4),
            (b"a..b", EmptyLabel),
            (b".a", EmptyLabel),
            (b"a..", EmptyLabel),
            (b".", EmptyLabel),
            (too_long.as_bytes(), TooLong),
            (long_label.as_bytes(), TooLong),
            (b"a:", BadPort),
            (b"a:99999", BadPort),
            (b"a:65536", BadPort),
            (b"a:-1", BadPort),
            (b"a:+80", BadPort),
            (b"a:8 0", BadPort),
            (b"a:0x50", BadPort),
            (b"a:000080", BadPort),
            (b"[::1]:", BadPort),
            (b"[::1]:99999", BadPort),
        ];
        for (value, want) in cases {
            assert_eq!(parse_host(value), Err(*want), "{:?}", String::from_utf8_lossy(value));
        }
    }

    #[test]
    fn fuzz_entry_on_generated_hosts() {
        // Pieces of hosts, good and bad, glued at random.
        const PIECES: &[&[u8]] = &[
            b"a", b"Z9", b"-", b"_", b".", b":", b"80", b"65536", b"[", b"]", b"::1", b"@", b",", b" ", b"/", b"%",
            b"1.2.3.4", b"\xff", b"0",
        ];
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut accepted = 0;
        for _ in 0..50_000 {
            let mut data = Vec::new();
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            for _ in 0..(seed % 7) {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                data.extend_from_slice(PIECES[(seed % PIECES.len() as u64) as usize]);
            }
            accepted += usize::from(parse_host(&data).is_ok());
            fuzz_one(&data);
        }
        // The generator must reach the accepting paths too, or the entry's
        // assertions would check nothing.
        assert!(accepted > 1000, "{accepted}");
    }
}
