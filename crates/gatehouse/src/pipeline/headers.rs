//! Header policy, as pure functions on `HeaderMap`s: what a client's request
//! may carry to the backend, what gatehouse adds, and what a backend's
//! response may carry back. No I/O and no state, so every rule has a unit test.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

const HOP_BY_HOP: [HeaderName; 7] = [
    header::CONNECTION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
];

/// The headers gatehouse sets itself: whatever the client sent under these
/// names is removed first.
const OURS: [HeaderName; 6] = [
    header::FORWARDED,
    X_FORWARDED_FOR,
    X_FORWARDED_PROTO,
    X_FORWARDED_HOST,
    HeaderName::from_static("x-real-ip"),
    X_REQUEST_ID,
];

// Named once: a `&str` name is parsed and validated again on every use.
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const HTTP2_SETTINGS: HeaderName = HeaderName::from_static("http2-settings");
const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// What the request stage knows that the backend should be told.
pub struct Upstream<'a> {
    /// The client's address, as `X-Forwarded-For` carries it.
    pub forwarded_for: &'a HeaderValue,
    pub https: bool,
    /// The host the client asked for (already checked), for `X-Forwarded-Host`.
    pub client_host: Option<&'a HeaderValue>,
    /// What goes out as `Host`; None: the client sent none (HTTP/1.0) and the
    /// site sets none, so the backend's own address goes, which the send stage
    /// adds once it knows the backend.
    pub host: Option<HeaderValue>,
    pub request_id: &'a str,
    /// The site's identity header and, for a signed-in user, its value.
    pub identity: Option<(&'a HeaderName, Option<&'a HeaderValue>)>,
    /// The client's `Authorization` goes on (sites without `auth`, and
    /// `delegation = "basic"`); otherwise the edge consumed it.
    pub keep_authorization: bool,
    /// The body length hyper framed the request by, if the client sent one.
    pub body_length: Option<u64>,
    /// `websocket` when a checked WebSocket handshake is forwarded.
    pub upgrade: Option<&'a HeaderValue>,
}

/// Turns a client's request headers into the backend's.
pub fn to_backend(headers: &mut HeaderMap, up: &Upstream<'_>) {
    // hyper answers `Expect: 100-continue` itself when the body is first read.
    // h2c is never forwarded: a backend that took it would serve HTTP/2
    // requests that gatehouse never sees.
    strip_hop_by_hop_and(headers, |name| name == header::EXPECT || name == HTTP2_SETTINGS);
    remove_lookalikes_of_our_headers(headers);
    // The length gatehouse framed the body by, in plain decimal: `010` could
    // mean something else to the backend.
    if headers.contains_key(header::CONTENT_LENGTH) {
        match up.body_length {
            Some(n) => {
                headers.insert(header::CONTENT_LENGTH, HeaderValue::from(n));
            }
            None => {
                headers.remove(header::CONTENT_LENGTH);
            }
        }
    }
    if let Some((name, value)) = up.identity {
        remove_lookalikes(headers, name);
        if let Some(v) = value {
            headers.insert(name.clone(), v.clone());
        }
    }
    remove_where(headers, |name| OURS.contains(name) || (!up.keep_authorization && name == header::AUTHORIZATION));
    // The edge trusts nothing the internet says about earlier hops.
    headers.insert(X_FORWARDED_FOR, up.forwarded_for.clone());
    headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(if up.https { "https" } else { "http" }));
    if let Some(h) = up.client_host {
        headers.insert(X_FORWARDED_HOST, h.clone());
    }
    headers.insert(X_REQUEST_ID, value(up.request_id));
    match &up.host {
        Some(h) => {
            headers.insert(header::HOST, h.clone());
        }
        None => {
            headers.remove(header::HOST);
        }
    }
    if let Some(token) = up.upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, token.clone());
    }
}

/// Turns a backend's response headers into the client's. `final_token` is the
/// edge's own last handshake token (mutual authentication, the server's
/// mechListMIC); the backend's answers gatehouse's ticket, not the client's.
pub fn to_client(headers: &mut HeaderMap, delegated: bool, final_token: Option<HeaderValue>) {
    strip_hop_by_hop(headers);
    if delegated {
        headers.remove(header::WWW_AUTHENTICATE);
    }
    if let Some(token) = final_token {
        headers.insert(header::WWW_AUTHENTICATE, token);
    }
}

/// Removes the headers that belong to one hop (RFC 9110 section 7.6.1), including
/// every header the Connection header names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    strip_hop_by_hop_and(headers, |_| false);
}

/// [`strip_hop_by_hop`], and the headers `also` picks, in the same pass.
fn strip_hop_by_hop_and(headers: &mut HeaderMap, also: impl Fn(&HeaderName) -> bool) {
    let doomed: Vec<HeaderName> = {
        // Header names are lower case; the Connection header's tokens may not be.
        let named: Vec<&[u8]> = headers
            .get_all(header::CONNECTION)
            .iter()
            .flat_map(|v| v.as_bytes().split(|&b| b == b','))
            .map(<[u8]>::trim_ascii)
            .collect();
        headers
            .keys()
            .filter(|name| {
                HOP_BY_HOP.contains(name)
                    || *name == KEEP_ALIVE
                    || *name == PROXY_CONNECTION
                    || also(name)
                    || named.iter().any(|token| token.eq_ignore_ascii_case(name.as_str().as_bytes()))
            })
            .cloned()
            .collect()
    };
    for name in doomed {
        headers.remove(name);
    }
}

/// Removes the headers `doomed` picks. One pass over the names a message has:
/// removing each unwanted name in turn hashed every one of them, present or
/// not, a fifth of the header work of a plain proxied GET (callgrind, issue 20).
fn remove_where(headers: &mut HeaderMap, doomed: impl Fn(&HeaderName) -> bool) {
    let found: Vec<HeaderName> = headers.keys().filter(|name| doomed(name)).cloned().collect();
    for name in found {
        headers.remove(name);
    }
}

/// Removes `name` and every header that a backend could read as `name`: IIS and
/// CGI map `X_Remote_User` to the same server variable as `X-Remote-User`, so a
/// client could otherwise smuggle an identity in with underscores.
fn remove_lookalikes(headers: &mut HeaderMap, name: &HeaderName) {
    let same = |other: &HeaderName| {
        let (a, b) = (other.as_str().as_bytes(), name.as_str().as_bytes());
        a.len() == b.len()
            && a.iter().zip(b).all(|(x, y)| x == y || (*x == b'_' && *y == b'-') || (*x == b'-' && *y == b'_'))
    };
    headers.remove(name);
    // Look-alikes are rare: look before allocating.
    if headers.keys().any(same) {
        let doomed: Vec<HeaderName> = headers.keys().filter(|k| same(k)).cloned().collect();
        for k in doomed {
            headers.remove(k);
        }
    }
}

/// Removes client headers that a backend reading `_` as `-` (IIS, CGI) would
/// take for a framing or hop-by-hop header, or for one gatehouse sets itself
/// (`Transfer_Encoding`, `X_Forwarded_For`). Content_Length and
/// Transfer_Encoding never get this far on HTTP/1 (the framing check refuses
/// them); HTTP/2 requests have no such check.
fn remove_lookalikes_of_our_headers(headers: &mut HeaderMap) {
    const GUARDED: [&str; 11] = [
        "content-length",
        "transfer-encoding",
        "keep-alive",
        "proxy-connection",
        "proxy-authorization",
        "http2-settings",
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
        "x-real-ip",
        "x-request-id",
    ];
    // Names with `_` are rare: look before allocating.
    if !headers.keys().any(|k| k.as_str().contains('_')) {
        return;
    }
    let doomed: Vec<HeaderName> = headers
        .keys()
        .filter(|k| k.as_str().contains('_') && GUARDED.contains(&k.as_str().replace('_', "-").as_str()))
        .cloned()
        .collect();
    for k in doomed {
        headers.remove(k);
    }
}

/// Whether a backend's answer starts or keeps a logon bound to its
/// connection: an NTLM or Negotiate challenge, or IIS's `Persistent-Auth`.
pub fn binds_connection(headers: &HeaderMap) -> bool {
    let scheme = |v: &HeaderValue| {
        let v = v.as_bytes();
        let word = v.split(|&b| b == b' ' || b == b',').next().unwrap_or(b"");
        word.eq_ignore_ascii_case(b"ntlm") || word.eq_ignore_ascii_case(b"negotiate")
    };
    headers.get_all(header::WWW_AUTHENTICATE).iter().any(scheme) || headers.contains_key("persistent-auth")
}

pub fn value(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

#[cfg(test)]
mod tests {
    use super::*;

    static PEER: HeaderValue = HeaderValue::from_static("192.0.2.7");

    fn upstream<'a>(host: &'a HeaderValue) -> Upstream<'a> {
        Upstream {
            forwarded_for: &PEER,
            https: true,
            client_host: Some(host),
            host: Some(HeaderValue::from_static("backend:80")),
            request_id: "id1",
            identity: None,
            keep_authorization: false,
            body_length: None,
            upgrade: None,
        }
    }

    #[test]
    fn strips_hop_by_hop_and_connection_named_headers() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, HeaderValue::from_static("keep-alive, X-Secret-Hop"));
        h.insert("x-secret-hop", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(header::TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        h.insert("proxy-connection", HeaderValue::from_static("keep-alive"));
        h.insert(header::PROXY_AUTHORIZATION, HeaderValue::from_static("Basic x"));
        h.insert("x-keep", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1, "{h:?}");
        assert!(h.contains_key("x-keep"));
    }

    #[test]
    fn connection_tokens_name_whole_headers_in_any_case_across_lines() {
        let mut h = HeaderMap::new();
        h.append(header::CONNECTION, HeaderValue::from_static(" X-A ,,x-b\t"));
        h.append(header::CONNECTION, HeaderValue::from_bytes(b"\xffjunk, X-C").unwrap());
        h.append(header::CONNECTION, HeaderValue::from_static("x-d-prefix, x-e-"));
        for n in ["x-a", "x-b", "x-c", "x-d", "x-e", "x-d-prefix-longer"] {
            h.insert(HeaderName::from_static(n), HeaderValue::from_static("1"));
        }
        strip_hop_by_hop(&mut h);
        let mut left: Vec<&str> = h.keys().map(|n| n.as_str()).collect();
        left.sort();
        assert_eq!(left, ["x-d", "x-d-prefix-longer", "x-e"], "a token removes its own header, never a prefix");
    }

    #[test]
    fn a_connection_token_cannot_take_what_gatehouse_sets() {
        let host = HeaderValue::from_static("mail.example");
        let name = HeaderName::from_static("x-remote-user");
        let user = HeaderValue::from_static("ADTEST\\bob");
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("x-remote-user, x-forwarded-for, x-request-id, content-length, host"),
        );
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("4"));
        let mut up = upstream(&host);
        up.identity = Some((&name, Some(&user)));
        up.body_length = Some(4);
        to_backend(&mut h, &up);
        assert!(!h.contains_key(header::CONNECTION));
        assert_eq!(h["x-remote-user"], "ADTEST\\bob");
        assert_eq!(h["x-forwarded-for"], "192.0.2.7");
        assert_eq!(h["x-request-id"], "id1");
        assert_eq!(h["host"], "backend:80");
        // Named by Connection, the client's framing header goes; hyper frames the body itself.
        assert!(!h.contains_key(header::CONTENT_LENGTH));
    }

    #[test]
    fn identity_header_lookalikes_are_removed() {
        let mut h = HeaderMap::new();
        h.insert("x-remote-user", HeaderValue::from_static("a"));
        h.insert("x_remote_user", HeaderValue::from_static("b"));
        h.insert("x_remote-user", HeaderValue::from_static("c"));
        h.insert("x-remote-users", HeaderValue::from_static("keep"));
        remove_lookalikes(&mut h, &HeaderName::from_static("x-remote-user"));
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-remote-users"));
    }

    #[test]
    fn lookalikes_of_framing_and_forwarding_headers_are_removed() {
        let mut h = HeaderMap::new();
        for name in [
            "transfer_encoding",
            "content_length",
            "x_forwarded_for",
            "x-forwarded_host",
            "x_real_ip",
            "keep_alive",
            "x_request_id",
            "proxy_authorization",
        ] {
            h.insert(HeaderName::from_bytes(name.as_bytes()).unwrap(), HeaderValue::from_static("x"));
        }
        h.insert("x_custom_header", HeaderValue::from_static("keep"));
        h.insert("content-type", HeaderValue::from_static("keep"));
        remove_lookalikes_of_our_headers(&mut h);
        assert_eq!(h.len(), 2, "{h:?}");
        assert!(h.contains_key("x_custom_header") && h.contains_key("content-type"));
    }

    #[test]
    fn connection_bound_challenges_are_recognised() {
        let with = |v: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(v));
            binds_connection(&h)
        };
        assert!(with("NTLM"));
        assert!(with("NTLM TlRMTVNTUAACAAAA"));
        assert!(with("negotiate oYG2MIGzoAMKAQ"));
        assert!(!with("Basic realm=\"x\""));
        assert!(!with("Bearer"));
        assert!(!with("NTLMv2"));
        let mut h = HeaderMap::new();
        h.insert("persistent-auth", HeaderValue::from_static("true"));
        assert!(binds_connection(&h));
        assert!(!binds_connection(&HeaderMap::new()));
    }

    #[test]
    fn the_backend_hears_what_gatehouse_saw_not_what_the_client_said() {
        let host = HeaderValue::from_static("mail.example");
        let mut h = HeaderMap::new();
        for (n, v) in [
            ("x-forwarded-for", "10.0.0.1"),
            ("forwarded", "for=10.0.0.1"),
            ("x-real-ip", "10.0.0.1"),
            ("x-request-id", "forged"),
            ("authorization", "NTLM x"),
            ("expect", "100-continue"),
            ("http2-settings", "AAA"),
            ("content-length", "010"),
            ("host", "other"),
        ] {
            h.insert(HeaderName::from_static(n), HeaderValue::from_static(v));
        }
        let mut up = upstream(&host);
        up.body_length = Some(10);
        to_backend(&mut h, &up);
        assert_eq!(h["x-forwarded-for"], "192.0.2.7");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-forwarded-host"], "mail.example");
        assert_eq!(h["x-request-id"], "id1");
        assert_eq!(h["host"], "backend:80");
        assert_eq!(h["content-length"], "10");
        for gone in ["forwarded", "x-real-ip", "authorization", "expect", "http2-settings"] {
            assert!(!h.contains_key(gone), "{gone}");
        }
        let mut h = HeaderMap::new();
        h.insert("authorization", HeaderValue::from_static("NTLM x"));
        up.keep_authorization = true;
        to_backend(&mut h, &up);
        assert_eq!(h["authorization"], "NTLM x", "pass-through sites keep the client's credentials");
    }

    #[test]
    fn the_identity_header_is_ours_alone() {
        let host = HeaderValue::from_static("a");
        let name = HeaderName::from_static("x-remote-user");
        let user = HeaderValue::from_static("ADTEST\\bob");
        let mut h = HeaderMap::new();
        h.insert("x-remote-user", HeaderValue::from_static("ADTEST\\admin"));
        h.insert("x_remote_user", HeaderValue::from_static("ADTEST\\admin"));
        let mut up = upstream(&host);
        up.identity = Some((&name, Some(&user)));
        to_backend(&mut h, &up);
        assert_eq!(h["x-remote-user"], "ADTEST\\bob");
        assert!(!h.contains_key("x_remote_user"));
        let mut h = HeaderMap::new();
        h.insert("x-remote-user", HeaderValue::from_static("ADTEST\\admin"));
        up.identity = Some((&name, None));
        to_backend(&mut h, &up);
        assert!(!h.contains_key("x-remote-user"), "an anonymous request carries no identity");
    }

    #[test]
    fn the_client_gets_the_edges_final_token() {
        let mut h = HeaderMap::new();
        h.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Negotiate backend-token"));
        h.insert(header::CONNECTION, HeaderValue::from_static("close"));
        to_client(&mut h, true, Some(HeaderValue::from_static("Negotiate edge-token")));
        assert_eq!(h[header::WWW_AUTHENTICATE], "Negotiate edge-token");
        assert!(!h.contains_key(header::CONNECTION));
        let mut h = HeaderMap::new();
        h.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("NTLM"));
        to_client(&mut h, false, None);
        assert_eq!(h[header::WWW_AUTHENTICATE], "NTLM", "a pass-through challenge reaches the client");
    }
}
