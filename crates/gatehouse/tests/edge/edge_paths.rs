//! Paths and hosts that a backend reads differently from a naive router (issue 10,
//! findings 6 and 10): the real binary, an anonymous site on `/`, protected sites
//! behind it, and recording backends that show where each request really went.

use std::net::SocketAddr;

use crate::common::*;
use testkit::Backend;

/// `open` serves `/` for any host; `protected` serves `/secure`, `/Ünicode` and
/// everything for the host `intranet.test`. A request that reaches `open` for a
/// path or host that `protected` covers is a bypass.
struct Edge {
    open: Backend,
    protected: Backend,
    g: Gatehouse,
    addr: SocketAddr,
}

async fn edge() -> Edge {
    let (open, protected) = (Backend::start().await, Backend::start().await);
    let config = format!(
        r#"
[[listener]]
name = "public"
bind = "127.0.0.1:0"

[[site]]
name = "open"
listener = "public"
backend = "http://{open}"

[[site]]
name = "secure"
listener = "public"
path_prefix = "/secure"
backend = "http://{protected}"

[[site]]
name = "unicode"
listener = "public"
path_prefix = "/Ünicode"
backend = "http://{protected}"

[[site]]
name = "intranet"
listener = "public"
hosts = ["intranet.test"]
backend = "http://{protected}"
"#,
        open = open.addr,
        protected = protected.addr,
    );
    let g = Gatehouse::start(&config);
    let addr = g.addr();
    Edge { open, protected, g, addr }
}

impl Edge {
    /// Sends `raw`; returns the status and which backend (if any) saw it.
    async fn send(&self, raw: &str) -> (u16, Option<&'static str>) {
        let (o, p) = (self.open.seen().len(), self.protected.seen().len());
        let r = request(self.addr, raw).await;
        let reached = match (self.open.seen().len() > o, self.protected.seen().len() > p) {
            (false, false) => None,
            (true, false) => Some("open"),
            (false, true) => Some("protected"),
            (true, true) => Some("both"),
        };
        (r.status, reached)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paths_the_backend_reads_as_protected_never_reach_the_open_site() {
    let e = edge().await;
    let attacks = [
        // Tomcat and Jetty: `;` starts path parameters, `..;` is `..`.
        "/x/..;/secure",
        "/x/..;/secure/page.jsp",
        "/x/..;a=b/secure",
        "/x/%2e%2e;/secure",
        "/x/..%3b/secure",
        "/x/%2E%2E%3B/secure",
        "/x/.;/../secure",
        "/secure;jsessionid=1/page.jsp",
        "/SECURE;x/page",
        "/secure%3bx/page",
        // ASP.NET cookieless sessions: the segment is removed before the path is mapped.
        "/(S(x))/secure",
        "/(S(abc123))/secure/page.aspx",
        "/(A(x)S(y)F(z))/secure",
        "/(s(x))/secure",
        "/(F(x))/secure/",
        "/%28S%28x%29%29/secure",
        // Windows drops trailing dots and spaces from each segment.
        "/secure.",
        "/SECURE.",
        "/secure./page",
        "/secure%2e",
        "/secure%2E/page",
        "/secure%20",
        "/secure%20/page",
        "/secure.%20",
        "/secure%20.",
        "/secure...",
        "/x/..%20/secure",
        "/x/.%20./secure",
        // NTFS stream names.
        "/secure::$INDEX_ALLOCATION",
        "/secure::$INDEX_ALLOCATION/page.aspx",
        "/secure::$index_allocation/",
        "/secure:$I30:$INDEX_ALLOCATION/page",
        "/secure::$DATA",
        "/secure%3a%3a%24INDEX_ALLOCATION/x",
        "/secure%3A%3A$INDEX_ALLOCATION",
        "/secure:",
        // 8.3 short names.
        "/SECURE~1",
        "/secure~1/page",
        "/SECURE~2/x",
        "/SECURE%7E1",
        "/SECURE%7e1/x",
        // Overlong UTF-8 for `.` and other invalid UTF-8.
        "/x/%c0%ae%c0%ae/secure",
        "/x/%C0%AE%C0%AE/secure",
        "/x/%e0%80%ae%e0%80%ae/secure",
        "/x/%c0%2e%c0%2e/secure",
        "/%ff/secure",
        "/%ed%a0%80",
        // Double encoding.
        "/x/%252e%252e/secure",
        "/x/%252E%252E/secure",
        "/%2573ecure",
        "/%2553ECURE",
        "/x/%25%32%65%25%32%65/secure",
        "/x/%25u002e%25u002e/secure",
        // Unicode case: NTFS and IIS compare case-insensitively beyond ASCII.
        "/%C3%BCnicode/x",
        "/%C3%9CNICODE",
        // Mixed.
        "/(S(x))/SECURE~1./",
        "/x/..;/(S(a))/secure%20",
    ];
    for path in attacks {
        let (status, reached) = e.send(&get("a", path)).await;
        assert!(
            (status == 400 && reached.is_none()) || reached == Some("protected"),
            "{path}: {status}, reached {reached:?}"
        );
    }
    assert!(e.open.seen().is_empty(), "reached the open site: {:?}", e.open.seen());
    assert!(e.g.stderr().contains("stream name"), "the refusal names its cause:\n{}", e.g.stderr());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_refused_path_shape_names_its_cause() {
    let e = edge().await;
    let cases = [
        ("/x/..;/secure", "dot segment"),
        ("/secure;x/page", "path parameter"),
        ("/(S(x))/secure", "cookieless"),
        ("/secure.", "trailing dot or space"),
        ("/secure%20", "trailing dot or space"),
        ("/secure::$INDEX_ALLOCATION", "stream name"),
        ("/SECURE~1", "short name"),
        ("/x/%c0%ae%c0%ae/secure", "UTF-8"),
        ("/x/%252e%252e/secure", "double"),
    ];
    for (path, cause) in cases {
        let r = request(e.addr, &get("a", path)).await;
        assert_eq!(r.status, 400, "{path}");
        assert!(r.text().contains(cause), "{path}: {}", r.text());
    }
    assert!(e.open.seen().is_empty() && e.protected.seen().is_empty());
    e.g.wait_for(|| e.g.access_log().len() == cases.len(), "an access record per request");
    for (record, (_, cause)) in e.g.access_log().iter().zip(cases) {
        assert_eq!(record["status"], 400, "{record}");
        assert!(record["error"].as_str().is_some_and(|c| c.contains(cause)), "{record}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legitimate_paths_keep_working() {
    let e = edge().await;
    let open = [
        "/owa/",
        "/owa/auth/15.2.1118/themes/resources/favicon.ico",
        "/EWS/Exchange.asmx",
        "/sites/M%C3%BCller/Shared%20Documents/a.docx",
        "/sites/Müller",
        "/a/.well-known/x",
        "/api/v1;x=1",
        "/100%25.docx",
        "/100%25",
        "/~user/x",
        "/a+b/c(1).txt",
        "/_api/web/lists(guid'1')/items(2)",
        "/securex",
        "/x/secure",
        "/x?y=/secure.",
    ];
    for path in open {
        let (status, reached) = e.send(&get("a", path)).await;
        assert_eq!((status, reached), (200, Some("open")), "{path}");
        assert_eq!(e.open.seen().last().unwrap().path, path, "forwarded untouched");
    }
    let protected = ["/secure", "/SECURE/page", "/secure/", "/secure;jsessionid=1", "/%C3%BCnicode", "/Ünicode/x"];
    for path in protected {
        let (status, reached) = e.send(&get("a", path)).await;
        assert_eq!((status, reached), (200, Some("protected")), "{path}");
        assert_eq!(e.protected.seen().last().unwrap().path, path, "forwarded untouched");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_hosts_are_refused_before_any_backend() {
    let e = edge().await;
    let hosts = [
        "other:1@intranet.test",
        "user@intranet.test",
        "@intranet.test",
        "a b",
        "a/b",
        "a:99999",
        "a:65536",
        "a,b",
        "intranet.test, other",
        "[::1",
        "::1]",
        "a:b:c",
        "::1",
        "a:",
        "a:-1",
        "a:+80",
        "a:8 0",
        "[::1]x",
        "[::1]:",
        "[fe80::1%25eth0]",
        "[v1.x]",
        "[not-an-ip]",
        "a%2eb",
        "a..b",
        ".a",
        "a_b\\c",
        "256.1.1.1",
        "1.2.3",
        "",
    ];
    for host in hosts {
        let (status, reached) = e.send(&get(host, "/")).await;
        assert_eq!((status, reached), (400, None), "Host: {host:?}");
        let r = request(e.addr, &get(host, "/")).await;
        assert!(r.text().contains("Host header: "), "gatehouse names the cause for {host:?}: {}", r.text());
    }
    let targets = [
        (
            "GET http://other:1@intranet.test/ HTTP/1.1\r\nHost: intranet.test\r\n\r\n",
            "request target authority: userinfo",
        ),
        (
            "GET http://user@intranet.test/ HTTP/1.1\r\nHost: intranet.test\r\n\r\n",
            "request target authority: userinfo",
        ),
        (
            "GET http://intranet.test:99999/ HTTP/1.1\r\nHost: intranet.test\r\n\r\n",
            "request target authority: bad port",
        ),
        ("GET http://intranet.test/ HTTP/1.1\r\nHost: other:1@intranet.test\r\n\r\n", "Host header: userinfo"),
    ];
    for (raw, cause) in targets {
        let (status, reached) = e.send(raw).await;
        assert_eq!((status, reached), (400, None), "{raw:?}");
        let r = request(e.addr, raw).await;
        assert!(r.text().contains(cause), "{raw:?}: {}", r.text());
    }
    assert!(e.g.stderr().contains("userinfo"), "the refusal names its cause:\n{}", e.g.stderr());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn good_hosts_route_as_before() {
    let e = edge().await;
    let cases = [
        ("intranet.test:8443", "protected"),
        ("INTRANET.test", "protected"),
        ("intranet.test.", "protected"),
        ("[::1]:80", "open"),
        ("[::1]", "open"),
        ("127.0.0.1", "open"),
        ("127.0.0.1:0", "open"),
        ("mail-01.example_dom.test:65535", "open"),
    ];
    for (host, want) in cases {
        let (status, reached) = e.send(&get(host, "/")).await;
        assert_eq!((status, reached), (200, Some(want)), "Host: {host}");
        let seen = if want == "open" { e.open.seen() } else { e.protected.seen() };
        assert_eq!(seen.last().unwrap().header("host"), Some(host), "Host forwarded as sent");
    }
    let (status, reached) = e.send("GET http://intranet.test:8443/x HTTP/1.1\r\nHost: other\r\n\r\n").await;
    assert_eq!((status, reached), (200, Some("protected")), "absolute-form authority routes");
    // HTTP/1.0 may omit Host.
    let (status, reached) = e.send("GET / HTTP/1.0\r\n\r\n").await;
    assert_eq!((status, reached), (200, Some("open")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asterisk_is_for_options_only() {
    let e = edge().await;
    for method in ["GET", "POST", "HEAD", "DELETE", "PROPFIND"] {
        let raw = format!("{method} * HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n");
        let mut c = Conn::open(e.addr).await;
        c.send(raw.as_bytes()).await;
        let r = if method == "HEAD" {
            assert!(c.read_until(b"\r\n\r\n").await);
            let head = String::from_utf8_lossy(&c.buf).into_owned();
            assert!(head.starts_with("HTTP/1.1 400"), "{method} *: {head}");
            continue;
        } else {
            c.response().await
        };
        assert_eq!(r.status, 400, "{method} *");
        assert!(r.text().contains("OPTIONS"), "{method} *: {}", r.text());
    }
    assert!(e.open.seen().is_empty() && e.protected.seen().is_empty());
    // `OPTIONS *` asks about the server as a whole: the site for `/` answers it.
    let (status, reached) = e.send("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert_eq!((status, reached), (200, Some("open")));
    assert_eq!(e.open.seen().last().unwrap().method, "OPTIONS");
    assert_eq!(e.open.seen().last().unwrap().path, "*");
}
