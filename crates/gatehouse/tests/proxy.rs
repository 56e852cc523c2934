//! The real gatehouse binary between real clients (raw sockets, curl) and a real
//! backend, on loopback.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;
use testkit::Backend;

fn one_site(backend: SocketAddr, extra: &str) -> String {
    format!(
        r#"
[[listener]]
name = "public"
bind = "127.0.0.1:0"

[[site]]
name = "app"
listener = "public"
backend = "http://{backend}"
{extra}
"#
    )
}

/// A backend, and gatehouse in front of it with one anonymous site; `extra` is
/// appended to the site (or starts new tables).
async fn proxied(extra: &str) -> (Backend, Gatehouse, u16) {
    let b = Backend::start().await;
    let g = Gatehouse::start(&one_site(b.addr, extra));
    let port = g.port();
    (b, g, port)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_by_host_and_longest_prefix() {
    let (a, b, c) = (Backend::start().await, Backend::start().await, Backend::start().await);
    let config = format!(
        r#"
[[listener]]
name = "public"
bind = "127.0.0.1:0"

[[site]]
name = "catch-all"
listener = "public"
backend = "http://{a}"

[[site]]
name = "mail-ews"
listener = "public"
hosts = ["mail.test"]
path_prefix = "/ews"
backend = "http://{b}"

[[site]]
name = "other-owa"
listener = "public"
hosts = ["other.test"]
path_prefix = "/owa"
backend = "http://{c}"
"#,
        a = a.addr,
        b = b.addr,
        c = c.addr
    );
    let g = Gatehouse::start(&config);
    let addr = g.addr();

    assert_eq!(request(addr, &get("mail.test", "/EWS/Exchange.asmx")).await.status, 200);
    assert_eq!(b.seen().last().unwrap().path, "/EWS/Exchange.asmx", "case-insensitive prefix goes to the ews site");
    assert_eq!(request(addr, &get("MAIL.test:443", "/%65ws/x")).await.status, 200);
    assert_eq!(b.seen().len(), 2, "percent-encoded path routes as decoded");
    assert_eq!(request(addr, &get("mail.test", "/ewsx")).await.status, 200);
    assert_eq!(a.seen().last().unwrap().path, "/ewsx", "prefix only at segment boundaries");
    assert_eq!(request(addr, &get("other.test", "/owa/")).await.status, 200);
    assert_eq!(c.seen().len(), 1);
    assert_eq!(request(addr, &get("unknown.test", "/owa/")).await.status, 200);
    assert_eq!(a.seen().len(), 2);
    assert_eq!(b.seen().len(), 2);

    g.wait_for(|| g.access_log().len() == 5, "five access records");
    let log = g.access_log();
    let sites: Vec<_> = log.iter().map(|r| r["site"].as_str().unwrap().to_owned()).collect();
    assert_eq!(sites, ["mail-ews", "mail-ews", "catch-all", "other-owa", "catch-all"]);
    for field in
        ["time", "client", "listener", "method", "path", "status", "bytes_in", "bytes_out", "duration_ms", "request_id"]
    {
        assert!(log[0].get(field).is_some(), "access log lacks {field}: {}", log[0]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_site_is_404_and_ambiguous_paths_are_400() {
    let b = Backend::start().await;
    let config = format!(
        "[[listener]]\nname = \"l\"\nbind = \"127.0.0.1:0\"\n\n[[site]]\nname = \"s\"\nlistener = \"l\"\nhosts = [\"mail.test\"]\npath_prefix = \"/owa\"\nbackend = \"http://{}\"\n",
        b.addr
    );
    let g = Gatehouse::start(&config);
    let port = g.port();
    let r = request(listen(port), &get("mail.test", "/ews")).await;
    assert_eq!(r.status, 404);
    assert!(r.header("x-request-id").is_some());
    assert!(r.text().contains("Request id"));
    for path in ["/owa/../ews", "/owa/%2e%2e/ews", "/owa%5c..%5cews", "/owa/%2f"] {
        let r = request(listen(port), &get("mail.test", path)).await;
        assert_eq!(r.status, 400, "{path}");
    }
    assert!(b.seen().is_empty(), "nothing ambiguous reached the backend");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smuggling_shapes_are_refused_and_closed() {
    let (b, g, port) = proxied("").await;
    let cases: [(&str, &str); 6] = [
        (
            "CL+TE",
            "POST /smuggle HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG",
        ),
        (
            "TE+CL",
            "POST /smuggle HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 6\r\n\r\n0\r\n\r\nG",
        ),
        ("differing CL", "POST /smuggle HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 40\r\n\r\nabc"),
        (
            "bad chunk size",
            "POST /smuggle HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\nhello\r\n0\r\n\r\n",
        ),
        ("obs-fold", "GET /smuggle HTTP/1.1\r\nHost: a\r\nX-Long: a\r\n  continued\r\n\r\n"),
        ("TE not chunked", "POST /smuggle HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"),
    ];
    for (name, raw) in cases {
        let mut c = Conn::open(listen(port)).await;
        c.send(raw.as_bytes()).await;
        let r = c.response().await;
        assert_eq!(r.status, 400, "{name}: {}", r.text());
        assert_eq!(r.header("connection"), Some("close"), "{name}");
        assert!(c.closed().await, "{name}: connection must close");
    }
    // A bad chunk that arrives after the head was already forwarded: the backend
    // sees an unfinished body, never a completed request.
    let mut c = Conn::open(listen(port)).await;
    c.send(b"POST /late HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    c.send(b"zz\r\n").await;
    let r = c.response().await;
    assert_eq!(r.status, 400);
    assert!(c.closed().await);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let seen = b.seen();
    assert!(seen.iter().all(|s| s.path != "/smuggle"), "a refused request reached the backend: {seen:?}");
    assert!(seen.iter().filter(|s| s.path == "/late").all(|s| !s.body_complete), "{seen:?}");
    let log = g.stderr();
    for cause in [
        "Content-Length together with Transfer-Encoding",
        "differing Content-Length values",
        "invalid chunk size",
        "obs-fold",
        "unsupported Transfer-Encoding",
    ] {
        assert!(log.contains(cause), "log does not name `{cause}`:\n{log}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rpc_in_data_streams_a_huge_announced_body_and_ends_early() {
    let (b, g, port) = proxied("").await;
    let mut c = Conn::open(listen(port)).await;
    c.send(b"RPC_IN_DATA /rpc/rpcproxy.dll?mail:6001 HTTP/1.0\r\nHost: mail.test\r\nUser-Agent: MSRPC\r\nConnection: Keep-Alive\r\nContent-Length: 1073741824\r\n\r\n").await;
    let piece = vec![0x05u8; 64 * 1024];
    for _ in 0..64 {
        c.send(&piece).await; // 4 MiB of "PDUs"
    }
    // The backend is still reading: nothing has ended yet.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(b.seen().is_empty(), "backend finished a body that is still streaming");
    drop(c); // the client ends the channel early, as Outlook does

    g.wait_for(|| !b.seen().is_empty(), "the backend to see the channel end");
    let seen = &b.seen()[0];
    assert_eq!(seen.method, "RPC_IN_DATA");
    assert_eq!(seen.header("content-length"), Some("1073741824"));
    assert!(!seen.body_complete);
    assert!(seen.body_bytes >= 4 * 1024 * 1024 - 256 * 1024, "only {} bytes reached the backend", seen.body_bytes);

    g.wait_for(|| !g.access_log().is_empty(), "the access record");
    let rec = &g.access_log()[0];
    assert_eq!(rec["method"], "RPC_IN_DATA");
    assert_eq!(rec["status"], 499, "{rec}");
    assert!(rec["bytes_in"].as_u64().unwrap() >= 4 * 1024 * 1024 - 256 * 1024, "{rec}");
    assert!(!g.stderr().contains("ERROR"), "{}", g.stderr());
    // and the proxy carries on
    assert_eq!(request(listen(port), &get("a", "/after")).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rpc_out_data_response_streams_and_client_may_leave() {
    let (_b, g, port) = proxied("").await;
    let mut c = Conn::open(listen(port)).await;
    c.send(b"RPC_OUT_DATA /bytes/1073741824 HTTP/1.1\r\nHost: mail.test\r\nUser-Agent: MSRPC\r\nContent-Length: 76\r\n\r\n").await;
    c.send(&[0u8; 76]).await;
    let mut got = 0usize;
    let start = Instant::now();
    while got < 8 * 1024 * 1024 {
        use tokio::io::AsyncReadExt;
        let mut buf = vec![0u8; 65536];
        let n = c.stream.read(&mut buf).await.unwrap();
        assert!(n > 0);
        got += n;
        assert!(start.elapsed() < Duration::from_secs(20));
    }
    drop(c);
    g.wait_for(|| !g.access_log().is_empty(), "the access record");
    let rec = &g.access_log()[0];
    assert_eq!(rec["status"], 200);
    assert_eq!(rec["complete"], false);
    assert_eq!(request(listen(port), &get("a", "/after")).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunks_are_flushed_as_they_arrive() {
    let (b, _g, port) = proxied("").await;
    let mut c = Conn::open(listen(port)).await;
    c.send(get("mail.test", "/gated").as_bytes()).await;
    assert!(c.read_until(b"first\n").await, "first chunk did not arrive on its own");
    assert!(!String::from_utf8_lossy(&c.buf).contains("second"));
    b.release();
    assert!(c.read_until(b"second\n").await);
    assert!(c.read_until(b"0\r\n\r\n").await, "chunked response not terminated");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expect_100_continue() {
    let (_b, _g, port) = proxied("").await;
    let mut c = Conn::open(listen(port)).await;
    c.send(b"POST /ews HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 11\r\n\r\n").await;
    let interim = c.response().await;
    assert_eq!(interim.status, 100);
    c.send(b"hello world").await;
    let r = c.response().await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["body_bytes"], 11);
    assert!(r.json()["headers"].get("expect").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http10_keep_alive_reuses_one_backend_connection() {
    let (b, _g, port) = proxied("").await;
    let mut c = Conn::open(listen(port)).await;
    for i in 0..3 {
        c.send(format!("POST /rpc/{i} HTTP/1.0\r\nConnection: Keep-Alive\r\nContent-Length: 4\r\n\r\nping").as_bytes())
            .await;
        let r = c.response().await;
        assert_eq!(r.status, 200);
        assert_eq!(r.version, 0);
        assert_eq!(r.header("connection").map(str::to_ascii_lowercase).as_deref(), Some("keep-alive"));
        assert_eq!(r.json()["body_bytes"], 4);
    }
    assert_eq!(b.connections(), 1, "anonymous requests share a pooled backend connection");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_headers_and_hop_by_hop() {
    let (_b, _g, port) = proxied("identity_header = \"X-Remote-User\"").await;
    let r = request(
        listen(port),
        "GET /x?q=1 HTTP/1.1\r\nHost: Mail.Test\r\nConnection: keep-alive, X-Hop\r\nX-Hop: secret\r\nKeep-Alive: timeout=5\r\nX-Forwarded-For: 6.6.6.6\r\nForwarded: for=6.6.6.6\r\nX-Remote-User: ADTEST\\administrator\r\nX_Remote_User: ADTEST\\administrator\r\nX-End: kept\r\n\r\n",
    )
    .await;
    let h = &r.json()["headers"];
    assert_eq!(h["x-forwarded-for"], "127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(h["x-forwarded-host"], "Mail.Test");
    assert_eq!(h["host"], "Mail.Test", "Host is kept by default");
    assert_eq!(h["x-end"], "kept");
    for gone in ["x-hop", "keep-alive", "forwarded", "x-remote-user", "x_remote_user"] {
        assert!(h.get(gone).is_none(), "{gone} reached the backend: {h}");
    }
    assert_eq!(r.json()["path"], "/x?q=1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_header_override() {
    let (_b, _g, port) = proxied("host_header = \"iis.internal\"").await;
    let r = request(listen(port), &get("mail.test", "/")).await;
    assert_eq!(r.json()["headers"]["host"], "iis.internal");
    assert_eq!(r.json()["headers"]["x-forwarded-host"], "mail.test");
    // Absolute-form target: its authority is the host, whatever Host says.
    let r = request(listen(port), "GET http://owa.test/x HTTP/1.1\r\nHost: mail.test\r\n\r\n").await;
    assert_eq!(r.json()["headers"]["x-forwarded-host"], "owa.test");
    assert_eq!(r.json()["path"], "/x");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_upgrade_passes_through() {
    let (b, _g, port) = proxied("").await;
    let mut c = Conn::open(listen(port)).await;
    c.send(b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n").await;
    let r = c.response().await;
    assert_eq!(r.status, 101);
    assert_eq!(r.header("upgrade"), Some("websocket"));
    c.send(b"raw frames both ways").await;
    assert!(c.read_until(b"raw frames both ways").await);
    assert_eq!(b.seen()[0].header("upgrade"), Some("websocket"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_failures_get_502_and_504_with_request_id() {
    let b = Backend::start().await;
    // Bound, not listening, and held: connecting is refused for the whole test.
    let dead = testkit::net::ClosedPort::new();
    let config = format!(
        r#"
[timeouts]
backend_response = "1s"

[[listener]]
name = "public"
bind = "127.0.0.1:0"

[[site]]
name = "down"
listener = "public"
path_prefix = "/down"
backend = "http://{dead}"

[[site]]
name = "slow"
listener = "public"
backend = "http://{b}"
"#,
        b = b.addr,
        dead = dead.addr
    );
    let g = Gatehouse::start(&config);
    let port = g.port();
    let r = request(listen(port), &get("a", "/down/x")).await;
    assert_eq!(r.status, 502);
    let id = r.header("x-request-id").unwrap().to_owned();
    assert!(r.text().contains(&id));
    let start = Instant::now();
    let r = request(listen(port), &get("a", "/delay/3000")).await;
    assert_eq!(r.status, 504);
    assert!(start.elapsed() < Duration::from_millis(2500));
    let log = g.stderr();
    assert!(log.contains(&id) && log.contains("connect failed"), "{log}");
    assert!(log.contains("no response within"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_head_gets_431() {
    let (_b, _g, port) = proxied("[limits]\nmax_header_size = 16384").await;
    let big = "a".repeat(20_000);
    let mut c = Conn::open(listen(port)).await;
    c.send(format!("GET / HTTP/1.1\r\nHost: a\r\nAuthorization: Negotiate {big}\r\n\r\n").as_bytes()).await;
    assert_eq!(c.response().await.status, 431);
    // A Kerberos-sized header under the limit passes.
    let token = "b".repeat(12_000);
    let r =
        request(listen(port), &format!("GET / HTTP/1.1\r\nHost: a\r\nAuthorization: Negotiate {token}\r\n\r\n")).await;
    assert_eq!(r.status, 200);
}

/// A GET with `n` header fields (Host and n - 1 others).
fn head_of(n: usize) -> String {
    let mut head = String::from("GET / HTTP/1.1\r\nHost: a\r\n");
    for i in 1..n {
        head.push_str(&format!("X-{i}: v\r\n"));
    }
    head + "\r\n"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_headers_is_exact_below_and_above_hypers_own_limit() {
    // hyper is given the limit only above its default of 100 (connection.rs):
    // below it the framing guard alone refuses, above it hyper must not. The
    // test backend is hyper with that default too, and gatehouse adds its
    // X-Forwarded-* fields: past about 96 it is the backend that answers 431,
    // without gatehouse's page.
    let refused = |r: &Resp| r.status == 431 && String::from_utf8_lossy(&r.body).contains("too many header fields");
    for limit in [40, 90, 100, 150] {
        let (b, _g, port) = proxied(&format!("[limits]\nmax_headers = {limit}")).await;
        let r = request(listen(port), &head_of(limit)).await;
        assert!(!refused(&r), "{limit} fields, limit {limit}: {} {:?}", r.status, String::from_utf8_lossy(&r.body));
        if limit <= 90 {
            assert_eq!(r.status, 200, "{limit} fields, limit {limit}");
        } else {
            // Not refused by gatehouse's hyper either (its 431 has no page):
            // the request went on to the backend.
            assert_eq!(b.connections(), 1, "{limit} fields, limit {limit}: {}", r.status);
        }
        let r = request(listen(port), &head_of(limit + 1)).await;
        assert!(refused(&r), "{} fields, limit {limit}: {}", limit + 1, r.status);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_head_is_cut_off_but_idle_keepalive_is_not() {
    let b = Backend::start().await;
    let extra = "[timeouts]\nheader_read = \"1s\"\nkeepalive_idle = \"3s\"";
    let g = Gatehouse::start(&one_site(b.addr, extra));
    let port = g.port();
    // Slowloris: a head that never ends.
    let mut slow = Conn::open(listen(port)).await;
    slow.send(b"GET / HTTP/1.1\r\nHost: a\r\n").await;
    let start = Instant::now();
    // Half a head is owed a 408 before the close (RFC 9110 15.5.9), in the
    // same page format as every other answer from gatehouse.
    let r = slow.response().await;
    assert_eq!(r.status, 408, "{}", r.text());
    assert!(r.text().contains("Request id: "), "{}", r.text());
    assert!(slow.closed().await);
    assert!(start.elapsed() < Duration::from_secs(3));
    // A connection that never sent a byte is closed without an answer.
    let mut silent = Conn::open(listen(port)).await;
    assert!(silent.closed().await);
    // An idle keep-alive connection outlives header_read...
    let mut idle = Conn::open(listen(port)).await;
    idle.send(get("a", "/").as_bytes()).await;
    assert_eq!(idle.response().await.status, 200);
    tokio::time::sleep(Duration::from_millis(1800)).await;
    idle.send(get("a", "/").as_bytes()).await;
    assert_eq!(idle.response().await.status, 200);
    // ...and is closed after keepalive_idle.
    let start = Instant::now();
    assert!(idle.closed().await);
    assert!(start.elapsed() >= Duration::from_secs(2), "closed too early");
}

/// A keep-alive connection quiet for more than a second parks: its HTTP server
/// (and hyper's buffers with it) ends while the socket stays open, and a new
/// one serves the client's next bytes: a request after each park, then two
/// pipelined in one write, on plain HTTP and on TLS. A parked connection still
/// closes at keepalive_idle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_connection_parks_and_is_served_again() {
    let b = Backend::start().await;
    let dir = tempfile::tempdir().unwrap();
    let ca = make_certs(dir.path(), &[("app", &["app.test"])]);
    let config = format!(
        "[timeouts]\nkeepalive_idle = \"4s\"\n\n[[listener]]\nname = \"plain\"\nbind = \"127.0.0.1:0\"\n\n\
         [[listener]]\nname = \"tls\"\nbind = \"127.0.0.1:0\"\nhttp2 = false\ntls = {{ cert = \"app.pem\", key = \"app.key\" }}\n\n\
         [[site]]\nname = \"plain\"\nlistener = \"plain\"\nbackend = \"http://{0}\"\n\n\
         [[site]]\nname = \"tls\"\nlistener = \"tls\"\nbackend = \"http://{0}\"\n",
        b.addr
    );
    let g = Gatehouse::launch(dir, &config, Launch { env: vec![("RUST_LOG", "gatehouse=debug".into())] });
    let parks = |g: &Gatehouse| g.stderr().matches("idle connection parked").count();
    let mut plain = Conn::open(g.addr_of("plain")).await;
    let mut tls = Conn::open_tls(g.addr_of("tls"), &ca, "app.test").await;
    for round in 1..=2 {
        plain.send(get("app.test", "/bytes/7").as_bytes()).await;
        let r = plain.response().await;
        assert_eq!((r.status, r.text().len()), (200, 7), "plain, round {round}");
        tls.send(get("app.test", "/bytes/9").as_bytes()).await;
        let r = tls.response().await;
        assert_eq!((r.status, r.text().len()), (200, 9), "TLS, round {round}");
        // No park while requests keep coming.
        assert_eq!(parks(&g), 2 * (round - 1), "parked too early:\n{}", g.stderr());
        g.wait_for(|| parks(&g) >= 2 * round, "both idle connections parked");
    }
    let two = format!("{}{}", get("app.test", "/bytes/3"), get("app.test", "/bytes/5"));
    plain.send(two.as_bytes()).await;
    tls.send(two.as_bytes()).await;
    for (name, first, second) in
        [("plain", plain.response().await, plain.response().await), ("TLS", tls.response().await, tls.response().await)]
    {
        assert_eq!((first.status, first.text().len()), (200, 3), "{name}, first pipelined");
        assert_eq!((second.status, second.text().len()), (200, 5), "{name}, second pipelined");
    }
    g.wait_for(|| parks(&g) >= 6, "parked again after the pipelined pair");
    // Parked, and still closed at keepalive_idle (4 s after the last byte).
    let start = Instant::now();
    assert!(plain.closed().await, "a parked connection outlived keepalive_idle");
    assert!(tls.closed().await, "a parked TLS connection outlived keepalive_idle");
    assert!(start.elapsed() >= Duration::from_secs(1), "closed too early");
    assert!(!g.stderr().contains("panicked"), "{}", g.stderr());
}

/// TLS 1.3 resumption by stateless session tickets: a client that comes back
/// resumes even after 300 other clients' handshakes, which would have pushed
/// its session out of a session cache (rustls's default keeps 256).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_sessions_resume_from_tickets_after_many_other_handshakes() {
    use rustls::pki_types::pem::PemObject;
    let b = Backend::start().await;
    let dir = tempfile::tempdir().unwrap();
    let ca = make_certs(dir.path(), &[("app", &["app.test"])]);
    let config = format!(
        "[[listener]]\nname = \"tls\"\nbind = \"127.0.0.1:0\"\nhttp2 = false\ntls = {{ cert = \"app.pem\", key = \"app.key\" }}\n\n\
         [[site]]\nname = \"tls\"\nlistener = \"tls\"\nbackend = \"http://{}\"\n",
        b.addr
    );
    let g = Gatehouse::start_in(dir, &config);
    let addr = g.addr_of("tls");
    let client = |resume: bool| {
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls::pki_types::CertificateDer::pem_file_iter(&ca).unwrap() {
            roots.add(cert.unwrap()).unwrap();
        }
        let mut c = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        if !resume {
            c.resumption = rustls::client::Resumption::disabled();
        }
        tokio_rustls::TlsConnector::from(std::sync::Arc::new(c))
    };
    // One request on a new connection; how its handshake went.
    let visit = |connector: tokio_rustls::TlsConnector| async move {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("app.test").unwrap();
        let mut c = Conn { stream: connector.connect(name, tcp).await.unwrap(), buf: Vec::new() };
        c.send(get("app.test", "/bytes/4").as_bytes()).await;
        // The tickets come after the handshake, before the answer.
        assert_eq!(c.response().await.status, 200);
        c.stream.get_ref().1.handshake_kind()
    };
    let returning = client(true);
    assert_eq!(visit(returning.clone()).await, Some(rustls::HandshakeKind::Full));
    assert_eq!(visit(returning.clone()).await, Some(rustls::HandshakeKind::Resumed));
    let others = client(false);
    for _ in 0..300 {
        assert_eq!(visit(others.clone()).await, Some(rustls::HandshakeKind::Full));
    }
    assert_eq!(visit(returning.clone()).await, Some(rustls::HandshakeKind::Resumed), "the ticket no longer resumes");
}

/// `suite_order = "aes128-first"`: a client that offers TLS_AES_256_GCM_SHA384
/// first (rustls, curl, Windows) gets TLS_AES_128_GCM_SHA256; without the key
/// the client's order stands; a client that offers AES-256 alone still gets it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suite_order_aes128_first_overrides_the_clients_order() {
    use rustls::CipherSuite::{TLS13_AES_128_GCM_SHA256 as AES128, TLS13_AES_256_GCM_SHA384 as AES256};
    let b = Backend::start().await;
    let dir = tempfile::tempdir().unwrap();
    let ca = make_certs(dir.path(), &[("app", &["app.test"])]);
    let config = format!(
        "[[listener]]\nname = \"client\"\nbind = \"127.0.0.1:0\"\ntls = {{ cert = \"app.pem\", key = \"app.key\" }}\n\n\
         [[listener]]\nname = \"aes128\"\nbind = \"127.0.0.1:0\"\n\
         tls = {{ cert = \"app.pem\", key = \"app.key\", suite_order = \"aes128-first\" }}\n\n\
         [[site]]\nname = \"a\"\nlistener = \"client\"\nbackend = \"http://{0}\"\n\n\
         [[site]]\nname = \"b\"\nlistener = \"aes128\"\nbackend = \"http://{0}\"\n",
        b.addr
    );
    let g = Gatehouse::start_in(dir, &config);
    // The suite a TLS 1.3 client offering `suites` (in that order) is given.
    let negotiated = |listener: &str, suites: &'static [rustls::CipherSuite]| {
        use rustls::pki_types::pem::PemObject;
        let addr = g.addr_of(listener);
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls::pki_types::CertificateDer::pem_file_iter(&ca).unwrap() {
            roots.add(cert.unwrap()).unwrap();
        }
        async move {
            let mut provider = rustls::crypto::aws_lc_rs::default_provider();
            provider.cipher_suites = suites
                .iter()
                .map(|want| *provider.cipher_suites.iter().find(|s| s.suite() == *want).unwrap())
                .collect();
            let c = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(provider))
                .with_protocol_versions(&[&rustls::version::TLS13])
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth();
            let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            let name = rustls::pki_types::ServerName::try_from("app.test").unwrap();
            let stream = tokio_rustls::TlsConnector::from(std::sync::Arc::new(c)).connect(name, tcp).await.unwrap();
            let mut c = Conn { stream, buf: Vec::new() };
            c.send(get("app.test", "/bytes/4").as_bytes()).await;
            assert_eq!(c.response().await.status, 200);
            c.stream.get_ref().1.negotiated_cipher_suite().map(|s| s.suite())
        }
    };
    assert_eq!(negotiated("client", &[AES256, AES128]).await, Some(AES256), "the client's order, by default");
    assert_eq!(negotiated("aes128", &[AES256, AES128]).await, Some(AES128));
    assert_eq!(negotiated("aes128", &[AES256]).await, Some(AES256), "AES-256 alone is still served");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_limit_answers_503() {
    let (_b, _g, port) = proxied("[limits]\nmax_connections = 2").await;
    // The readiness probe of the harness used a connection; let it go away.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut first = Conn::open(listen(port)).await;
    first.send(get("a", "/").as_bytes()).await;
    assert_eq!(first.response().await.status, 200);
    let mut second = Conn::open(listen(port)).await;
    second.send(get("a", "/").as_bytes()).await;
    assert_eq!(second.response().await.status, 200);
    let mut third = Conn::open(listen(port)).await;
    third.send(get("a", "/").as_bytes()).await;
    let r = third.response().await;
    assert_eq!(r.status, 503);
    drop(first);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(request(listen(port), &get("a", "/")).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reload_keeps_established_connections() {
    let (a, b) = (Backend::start().await, Backend::start().await);
    let g = Gatehouse::start(&one_site(a.addr, ""));
    let port = g.port();
    let mut kept = Conn::open(listen(port)).await;
    kept.send(get("a", "/one").as_bytes()).await;
    assert_eq!(kept.response().await.status, 200);
    assert_eq!(a.seen().len(), 1);

    // A broken file is refused and the old configuration keeps serving.
    std::fs::write(&g.config, "[[listener]]\nname = 1\n").unwrap();
    g.signal("-HUP");
    g.wait_for(|| g.stderr().contains("reload refused"), "the refused reload");
    kept.send(get("a", "/two").as_bytes()).await;
    assert_eq!(kept.response().await.status, 200);
    assert_eq!(a.seen().len(), 2);

    // Same listener, same `bind` (port 0): the socket, and so the port, is kept.
    g.reload(&one_site(b.addr, ""));
    kept.send(get("a", "/three").as_bytes()).await;
    assert_eq!(kept.response().await.status, 200, "the established connection survived the reload");
    assert_eq!(b.seen().len(), 1, "and its next request used the new site");
    assert_eq!(request(listen(port), &get("a", "/four")).await.status, 200);
    assert_eq!(b.seen().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_requests_in_flight() {
    let (b, mut g, port) = proxied("").await;
    let mut c = Conn::open(listen(port)).await;
    c.send(get("a", "/gated").as_bytes()).await;
    assert!(c.read_until(b"first\n").await);
    g.signal("-TERM");
    g.wait_for(|| g.stderr().contains("shutting down"), "shutdown to start");
    assert!(std::net::TcpStream::connect(listen(port)).is_err(), "still accepting after SIGTERM");
    b.release();
    assert!(c.read_until(b"0\r\n\r\n").await, "the in-flight response was cut");
    let status = g.wait_exit(Duration::from_secs(10));
    assert!(status.success());
    assert!(g.stderr().contains("all connections drained"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_two_certificates_chosen_by_sni() {
    let b = Backend::start().await;
    let dir = tempfile::tempdir().unwrap();
    let ca = make_certs(dir.path(), &[("mail", &["mail.test"]), ("sp", &["sharepoint.test", "*.sp.test"])]);
    let config = format!(
        r#"
[[listener]]
name = "public"
bind = "127.0.0.1:0"
tls = {{ cert = "mail.pem", key = "mail.key", sni = [{{ cert = "sp.pem", key = "sp.key" }}] }}

[[site]]
name = "app"
listener = "public"
backend = "http://{}"
"#,
        b.addr
    );
    let g = Gatehouse::start_in(dir, &config);
    let port = g.port();
    let curl = |name: &str| {
        let out = std::process::Command::new("curl")
            .args(["-sS", "--fail", "--cacert"])
            .arg(&ca)
            .args(["--resolve", &format!("{name}:{port}:127.0.0.1"), &format!("https://{name}:{port}/tls")])
            .output()
            .expect("curl is installed");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
        )
    };
    for name in ["mail.test", "sharepoint.test", "team.sp.test"] {
        let (ok, out) = curl(name);
        assert!(ok, "{name}: {out}");
        assert!(out.contains("\"x-forwarded-proto\":\"https\""), "{out}");
    }
    // A name no certificate covers gets the default (mail.test), which curl rejects.
    let (ok, _) = curl("unknown.test");
    assert!(!ok);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_backend_with_ca_and_name_checks() {
    // gatehouse (TLS) in front of gatehouse (TLS) in front of the backend: the
    // inner one is an HTTPS backend with a private CA.
    let b = Backend::start().await;
    let dir = tempfile::tempdir().unwrap();
    let ca = make_certs(dir.path(), &[("inner", &["iis.internal"])]);
    let inner_cfg = format!(
        "[[listener]]\nname = \"i\"\nbind = \"127.0.0.1:0\"\ntls = {{ cert = \"inner.pem\", key = \"inner.key\" }}\n\n[[site]]\nname = \"s\"\nlistener = \"i\"\nbackend = \"http://{}\"\n",
        b.addr
    );
    let inner_g = Gatehouse::start_in(dir, &inner_cfg);
    let inner = inner_g.port();
    let outer_cfg = |tls: &str| {
        format!(
            "[[listener]]\nname = \"o\"\nbind = \"127.0.0.1:0\"\n\n[[site]]\nname = \"s\"\nlistener = \"o\"\nbackend = \"https://127.0.0.1:{inner}\"\nbackend_tls = {tls}\n"
        )
    };
    let good = outer_cfg(&format!("{{ ca = \"{}\", server_name = \"iis.internal\" }}", ca.display()));
    let g = Gatehouse::start(&good);
    let outer = g.port();
    assert_eq!(request(listen(outer), &get("a", "/")).await.status, 200);
    // Wrong expected name: the handshake must fail, 502.
    g.reload(&outer_cfg(&format!("{{ ca = \"{}\", server_name = \"evil.internal\" }}", ca.display())));
    let r = request(listen(outer), &get("a", "/")).await;
    assert_eq!(r.status, 502);
    assert!(g.stderr().contains("TLS handshake failed"), "{}", g.stderr());
}

#[test]
fn check_names_file_line_and_key_for_every_problem() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("broken.toml");
    std::fs::write(
        &file,
        "[[listener]]\nname = \"public\"\nbind = \"localhost\"\ntls = { cert = \"missing.pem\", key = \"missing.key\" }\n\n[[site]]\nname = \"x\"\nlistener = \"nope\"\nbackend = \"http://127.0.0.1:1\"\ncolour = 1\n",
    )
    .unwrap();
    let out =
        std::process::Command::new(env!("CARGO_BIN_EXE_gatehouse")).args(["check", "-c"]).arg(&file).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let f = file.display().to_string();
    for want in [
        format!("{f}:3:8: listener[0].bind:"),
        format!("{f}:4:16: listener[0].tls.cert:"),
        format!("{f}:8:12: site[0].listener: no listener is named `nope`"),
        format!("{f}:10:1: site[0].colour: unknown key"),
    ] {
        assert!(err.contains(&want), "missing `{want}` in:\n{err}");
    }
    let good = dir.path().join("good.toml");
    std::fs::write(&good, "[[listener]]\nname = \"l\"\nbind = \"127.0.0.1:1\"\n").unwrap();
    let out =
        std::process::Command::new(env!("CARGO_BIN_EXE_gatehouse")).args(["check", "-c"]).arg(&good).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_split_into_single_bytes_are_framed_the_same() {
    let (b, _g, port) = proxied("").await;
    let send_bytewise = |raw: &'static [u8]| async move {
        let mut c = Conn::open(listen(port)).await;
        c.stream.set_nodelay(true).unwrap();
        for byte in raw {
            // A refused request is closed on as soon as its head ends.
            if tokio::io::AsyncWriteExt::write_all(&mut c.stream, std::slice::from_ref(byte)).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        c
    };
    let mut c = send_bytewise(b"POST /split HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n").await;
    let r = c.response().await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["body_bytes"], 11);
    let mut c = send_bytewise(
        b"POST /split-bad HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    )
    .await;
    assert_eq!(c.response().await.status, 400);
    assert!(b.seen().iter().all(|s| s.path != "/split-bad"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodiless_responses_keep_the_backend_connection() {
    let (b, _g, port) = proxied("").await;
    let mut c = Conn::open(listen(port)).await;
    c.send(b"HEAD /bytes/100 HTTP/1.1\r\nHost: a\r\n\r\n").await;
    // A HEAD response has a Content-Length but no body: read the head only.
    assert!(c.read_until(b"\r\n\r\n").await);
    let head = String::from_utf8_lossy(&c.buf).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200") && head.contains("content-length: 100"), "{head}");
    c.buf.clear();
    c.send(get("a", "/status/204").as_bytes()).await;
    assert_eq!(c.response().await.status, 204);
    c.send(get("a", "/bytes/10").as_bytes()).await;
    let r = c.response().await;
    assert_eq!(r.body, b"xxxxxxxxxx");
    assert_eq!(b.seen().len(), 3);
    assert_eq!(b.connections(), 1, "HEAD and 204 answers returned their backend connection to the pool");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_that_goes_quiet_is_closed_after_stream_idle() {
    let (b, _g, port) = proxied("stream_idle = \"1s\"").await;
    let mut c = Conn::open(listen(port)).await;
    c.send(get("a", "/gated").as_bytes()).await;
    assert!(c.read_until(b"first\n").await);
    // The backend now sends nothing: after stream_idle the connection goes.
    let start = Instant::now();
    assert!(c.closed().await, "a quiet stream was kept open");
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(800) && took < Duration::from_secs(4), "closed after {took:?}");
    b.release();
}
