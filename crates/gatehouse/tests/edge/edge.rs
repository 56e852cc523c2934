//! The HTTP edge under attack (issue 10): what an unauthenticated client can do
//! with upgrades, pass-through logons, forwarding headers, TLS settings shared
//! by sites, and the framing corner cases found by independent test suites.
//! Each test sends the attack and checks the legitimate use next to it.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::*;
use ntlm::client::Client;
use testkit::Backend;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const WS: &str = "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
const SMUGGLE: &[u8] =
    b"POST /smuggled HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG";

/// An anonymous site for host `a`, a site for host `secure.test` that signs
/// users in with NTLM (passwords from a file), a site for host `only.test`;
/// all in front of `b`. Other hosts get 404.
fn start(b: SocketAddr, extra: &str) -> (Gatehouse, u16) {
    let backend = format!("http://{b}");
    let site = |name: &str, host: &str| Site::new(name, "l", &backend).hosts(&[host]).path_prefix("/");
    let text = Config::new()
        .domain(Domain::new())
        .accounts(Accounts::file("users.ntlm"))
        .table("timeouts", "header_read = \"1s\"")
        .listener(Listener::plain("l"))
        .site(site("open", "a").then(extra))
        .site(site("secure", "secure.test").auth(&["NTLM"]))
        .site(site("only", "only.test"));
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("users.ntlm"), "ADTEST:bob:Bob-Pass1\n").unwrap();
    let g = Gatehouse::start_in(dir, &text.to_string());
    let port = g.port();
    (g, port)
}

fn paths(b: &Backend) -> Vec<String> {
    b.seen().iter().map(|s| s.path.clone()).collect()
}

/// After an upgrade request that was not answered with a 101, the connection is
/// HTTP/1 like any other: smuggling shapes, oversized and slow heads are
/// refused on it exactly as on a fresh connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_request_answered_without_101_leaves_framing_on() {
    let b = Backend::start().await;
    let (_g, port) = start(b.addr, "");
    // Answered by the backend with 200 (no switch), by gatehouse with 401 and
    // with 404: none of them may switch the guard off.
    let openers = [
        (format!("GET /plain HTTP/1.1\r\nHost: a\r\n{WS}\r\n"), 200),
        (format!("GET /x HTTP/1.1\r\nHost: secure.test\r\n{WS}\r\n"), 401),
        ("GET / HTTP/1.1\r\nHost: nowhere.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n".to_string(), 404),
        ("GET /plain HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n".to_string(), 200),
    ];
    for (opener, status) in &openers {
        // Smuggling on the same connection, in the same segment and after it.
        for together in [true, false] {
            let mut c = Conn::open(listen(port)).await;
            if together {
                c.send(&[opener.as_bytes(), SMUGGLE].concat()).await;
            } else {
                c.send(opener.as_bytes()).await;
            }
            let r = c.response().await;
            assert_eq!(r.status, *status, "{opener}");
            if !together {
                c.send(SMUGGLE).await;
            }
            let r = c.response().await;
            assert_eq!(r.status, 400, "{opener}: {}", r.text());
            assert!(r.text().contains("Content-Length together with Transfer-Encoding"), "{}", r.text());
            assert!(c.closed().await);
        }
        // An oversized head.
        let mut c = Conn::open(listen(port)).await;
        c.send(opener.as_bytes()).await;
        assert_eq!(c.response().await.status, *status);
        let big = "a".repeat(300_000);
        c.send(format!("GET /big HTTP/1.1\r\nHost: a\r\nX-Big: {big}\r\n\r\n").as_bytes()).await;
        assert_eq!(c.response().await.status, 431, "{opener}");
        // A slow head: cut off by header_read (1 s) with a 408.
        let mut c = Conn::open(listen(port)).await;
        c.send(opener.as_bytes()).await;
        assert_eq!(c.response().await.status, *status);
        let started = Instant::now();
        c.send(b"GET /slow HTTP/1.1\r\nHost: a\r\n").await;
        let r = c.response().await;
        assert_eq!(r.status, 408, "{opener}");
        assert!(started.elapsed() < Duration::from_secs(3), "{opener}: {:?}", started.elapsed());
    }
    let seen = paths(&b);
    assert!(!seen.iter().any(|p| p == "/smuggled" || p == "/big" || p == "/slow"), "{seen:?}");
}

/// The legitimate use: a WebSocket through a site that requires sign-in, after
/// the NTLM handshake on the same connection; and one on the anonymous site.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_works_after_sign_in_and_anonymously() {
    let b = Backend::start().await;
    let (_g, port) = start(b.addr, "");
    let mut c = Conn::open(listen(port)).await;
    // Unauthenticated, the upgrade gets a 401 and no tunnel.
    c.send(format!("GET /ws HTTP/1.1\r\nHost: secure.test\r\n{WS}\r\n").as_bytes()).await;
    assert_eq!(c.response().await.status, 401);
    let r =
        handshake(&mut c, &Client::new("bob", "Bob-Pass1"), "GET /hello HTTP/1.1\r\nHost: secure.test", b"", |_| {})
            .await;
    assert_eq!(r.status, 200);
    c.send(format!("GET /ws HTTP/1.1\r\nHost: secure.test\r\n{WS}\r\n").as_bytes()).await;
    let r = c.response().await;
    assert_eq!(r.status, 101);
    assert_eq!(r.header("upgrade"), Some("websocket"));
    // Tunnel bytes are not HTTP and pass unchecked (here: a smuggling shape, echoed).
    c.send(SMUGGLE).await;
    assert!(c.read_until(b"0\r\n\r\nG").await);
    let seen = b.seen();
    let ws: Vec<_> = seen.iter().filter(|s| s.path == "/ws").collect();
    assert_eq!(ws.len(), 1, "only the authenticated upgrade reached the backend: {seen:?}");
    assert_eq!(ws[0].header("upgrade"), Some("websocket"));
    assert!(ws[0].header("authorization").is_none());

    let mut c = Conn::open(listen(port)).await;
    c.send(format!("GET /ws HTTP/1.1\r\nHost: a\r\n{WS}\r\n").as_bytes()).await;
    assert_eq!(c.response().await.status, 101);
    c.send(b"hello").await;
    assert!(c.read_until(b"hello").await);
}

/// h2c is never forwarded: the backend sees a plain HTTP/1.1 request without
/// `Upgrade` or `HTTP2-Settings`, and the connection goes on as HTTP/1.1.
/// Other protocols are treated the same; a WebSocket handshake that RFC 6455
/// does not allow is refused; `websocket = false` turns WebSocket off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_checked_websocket_upgrades_are_forwarded() {
    let b = Backend::start().await;
    let (_g, port) = start(b.addr, "");
    for upgrade in ["h2c", "H2C", "h2c, websocket/13x", "TLS/1.0", "foo"] {
        let mut c = Conn::open(listen(port)).await;
        c.send(format!("GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: {upgrade}\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n").as_bytes()).await;
        let r = c.response().await;
        assert_eq!(r.status, 200, "{upgrade}: the request is served, not switched");
        let seen = b.seen();
        let last = seen.last().unwrap();
        assert!(last.header("upgrade").is_none() && last.header("http2-settings").is_none(), "{upgrade}: {last:?}");
        // The same connection stays HTTP/1.1, framed.
        c.send(get("a", "/after").as_bytes()).await;
        assert_eq!(c.response().await.status, 200);
    }
    let bad = [
        ("POST", "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", "GET"),
        ("GET", "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 8\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", "13"),
        ("GET", "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n", "16 bytes"),
        ("GET", "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: c2hvcnQ=\r\n", "16 bytes"),
    ];
    let before = b.seen().len();
    for (method, headers, cause) in bad {
        let r = request(listen(port), &format!("{method} /ws HTTP/1.1\r\nHost: a\r\n{headers}\r\n")).await;
        assert_eq!(r.status, 400, "{headers}");
        assert!(r.text().contains(cause), "{}", r.text());
    }
    assert_eq!(b.seen().len(), before, "a refused handshake reached the backend");

    let (_g2, port2) = start(b.addr, "websocket = false");
    let mut c = Conn::open(listen(port2)).await;
    c.send(format!("GET /ws HTTP/1.1\r\nHost: a\r\n{WS}\r\n").as_bytes()).await;
    assert_eq!(c.response().await.status, 200, "WebSocket off: served as a plain request");
    assert!(b.seen().last().unwrap().header("upgrade").is_none());
}

/// A backend on raw sockets, for what hyper-based test backends cannot do:
/// answer with an HTTP/1.0 status line, switch to a protocol nobody asked for,
/// or keep a Windows logon on its connection as IIS does.
#[derive(Clone)]
struct Raw {
    addr: SocketAddr,
    /// (connection number, request head) for every request.
    seen: Arc<Mutex<Vec<(usize, String)>>>,
    opened: Arc<AtomicUsize>,
    closed: Arc<AtomicUsize>,
}

#[derive(Clone, Copy)]
enum Mode {
    Http10,
    SwitchToH2c,
    /// `Authorization: NTLM <name>` logs the connection on as `<name>`; every
    /// later request on it is answered as that user; without a logon: 401
    /// with `WWW-Authenticate: NTLM`.
    Iis,
}

impl Raw {
    async fn start(mode: Mode) -> Raw {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let raw = Raw {
            addr: listener.local_addr().unwrap(),
            seen: Arc::default(),
            opened: Arc::default(),
            closed: Arc::default(),
        };
        let r = raw.clone();
        tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                let n = r.opened.fetch_add(1, Ordering::SeqCst);
                let r = r.clone();
                tokio::spawn(async move {
                    r.serve(sock, n, mode).await;
                    r.closed.fetch_add(1, Ordering::SeqCst);
                });
            }
        });
        raw
    }

    async fn serve(&self, mut sock: tokio::net::TcpStream, conn: usize, mode: Mode) {
        let mut buf = Vec::new();
        let mut logon: Option<String> = None;
        loop {
            let end = loop {
                if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    break i + 4;
                }
                let mut tmp = [0u8; 4096];
                match sock.read(&mut tmp).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&tmp[..n]),
                }
            };
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            buf.drain(..end);
            self.seen.lock().unwrap().push((conn, head.clone()));
            let answer = match mode {
                Mode::Http10 => "HTTP/1.0 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok".to_string(),
                Mode::SwitchToH2c => {
                    "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n".to_string()
                }
                Mode::Iis => {
                    let auth = head.lines().find_map(|l| {
                        l.strip_prefix("authorization: NTLM ").or_else(|| l.strip_prefix("Authorization: NTLM "))
                    });
                    if let Some(name) = auth {
                        logon = Some(name.trim().to_string());
                    }
                    match &logon {
                        Some(user) => {
                            let body = format!("user={user}");
                            format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}", body.len())
                        }
                        None => "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: NTLM\r\nContent-Length: 0\r\n\r\n"
                            .to_string(),
                    }
                }
            };
            if sock.write_all(answer.as_bytes()).await.is_err() {
                return;
            }
            if matches!(mode, Mode::SwitchToH2c) {
                let _ = sock.read(&mut [0u8; 64]).await;
                return;
            }
        }
    }
}

/// A site without `auth` where clients log on to IIS themselves (TMG's "no
/// delegation, but client may authenticate directly"): the backend connection
/// that carried one client's logon is that client connection's alone, and
/// closes with it. Before, it went back to the pool all anonymous clients
/// share, and the next anonymous client was served as the first user.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pass_through_logon_is_never_served_to_another_client() {
    let iis = Raw::start(Mode::Iis).await;
    let (_g, port) = start(iis.addr, "");
    // Client A logs on (its credentials pass through to the backend).
    let mut a = Conn::open(listen(port)).await;
    a.send(b"GET /mail HTTP/1.1\r\nHost: a\r\nAuthorization: NTLM alice\r\n\r\n").await;
    let r = a.response().await;
    assert_eq!((r.status, r.text().as_str()), (200, "user=alice"));
    // Client B, with no credentials, on its own connection: never alice's.
    for _ in 0..3 {
        let r = request(listen(port), "GET /mail HTTP/1.1\r\nHost: a\r\n\r\n").await;
        assert_eq!(r.status, 401, "an anonymous client was served as alice: {}", r.text());
        assert_eq!(r.header("www-authenticate"), Some("NTLM"));
    }
    // A's own next request, without credentials, stays on A's logon (as it
    // would talking to IIS directly).
    a.send(b"GET /mail/next HTTP/1.1\r\nHost: a\r\n\r\n").await;
    let r = a.response().await;
    assert_eq!((r.status, r.text().as_str()), (200, "user=alice"));
    let conn_of = |path: &str| iis.seen.lock().unwrap().iter().find(|(_, h)| h.contains(path)).map(|(c, _)| *c);
    assert_eq!(conn_of("/mail/next"), conn_of("authorization: NTLM alice"), "A kept its connection");
    // A's client connection ends: its backend connection ends too.
    let closed_before = iis.closed.load(Ordering::SeqCst);
    drop(a);
    let deadline = Instant::now() + Duration::from_secs(5);
    while iis.closed.load(Ordering::SeqCst) == closed_before && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(iis.closed.load(Ordering::SeqCst) > closed_before, "the logged-on backend connection outlived its client");
}

/// The same for a connection-bound challenge: once the backend answered a
/// client with `WWW-Authenticate: NTLM`, that backend connection carries the
/// client's handshake, and the next leg goes over it, nobody else's request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_challenge_binds_the_backend_connection_to_its_client() {
    let iis = Raw::start(Mode::Iis).await;
    let (_g, port) = start(iis.addr, "");
    let mut c = Conn::open(listen(port)).await;
    c.send(b"GET /start HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert_eq!(c.response().await.status, 401);
    // Someone else meanwhile: a connection of their own.
    assert_eq!(request(listen(port), "GET /other HTTP/1.1\r\nHost: a\r\n\r\n").await.status, 401);
    c.send(b"GET /leg HTTP/1.1\r\nHost: a\r\nAuthorization: NTLM carol\r\n\r\n").await;
    assert_eq!(c.response().await.text(), "user=carol");
    let seen = iis.seen.lock().unwrap().clone();
    let conn = |path: &str| seen.iter().find(|(_, h)| h.starts_with(&format!("GET {path} "))).unwrap().0;
    assert_eq!(conn("/start"), conn("/leg"), "the handshake stayed on one backend connection: {seen:?}");
    assert_ne!(conn("/other"), conn("/start"), "another client used the challenged connection: {seen:?}");
    // And the anonymous pool never sees carol's connection.
    assert_eq!(request(listen(port), "GET /later HTTP/1.1\r\nHost: a\r\n\r\n").await.status, 401);
}

/// `X-Real-IP`, `Forwarded` and `X-Forwarded-*` from the client never reach
/// the backend; neither do `_` spellings that IIS and CGI read as those, or as
/// framing and hop-by-hop headers. `X-Forwarded-For` is the real peer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_forwarding_headers_and_underscore_lookalikes_are_removed() {
    let b = Backend::start().await;
    let (_g, port) = start(b.addr, "");
    let r = request(
        listen(port),
        "GET /h HTTP/1.1\r\nHost: a\r\nX-Real-IP: 10.9.9.9\r\nForwarded: for=10.9.9.9\r\nforwarded: by=x\r\nX-Forwarded-For: 10.9.9.9\r\nX_Forwarded_For: 10.9.9.9\r\nX_Real_IP: 10.9.9.9\r\nX-Real_IP: 10.9.9.9\r\nKeep_Alive: 1\r\nProxy_Connection: x\r\nX_Request_Id: forged\r\nX_Custom: kept\r\n\r\n",
    )
    .await;
    assert_eq!(r.status, 200);
    let seen = b.seen();
    let s = seen.last().unwrap();
    for name in [
        "x-real-ip",
        "forwarded",
        "x_forwarded_for",
        "x_real_ip",
        "x-real_ip",
        "keep_alive",
        "proxy_connection",
        "x_request_id",
    ] {
        assert!(s.header(name).is_none(), "{name} reached the backend: {:?}", s.headers);
    }
    assert_eq!(s.header("x-forwarded-for"), Some("127.0.0.1"));
    assert_ne!(s.header("x-request-id"), Some("forged"));
    assert_eq!(s.header("x_custom"), Some("kept"), "other names with _ pass");
    // The framing look-alikes are refused outright, before any backend.
    for name in ["Transfer_Encoding", "Content_Length", "content_LENGTH"] {
        let r = request(
            listen(port),
            &format!("POST /la HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n{name}: 0\r\n\r\nhello"),
        )
        .await;
        assert_eq!(r.status, 400, "{name}");
    }
    assert!(!paths(&b).iter().any(|p| p == "/la"));
}

/// Two sites with one https:// origin and different `backend_tls`: each gets
/// the TLS settings it asked for, whichever comes first in the file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sites_sharing_an_origin_keep_their_own_tls_settings() {
    let b = Backend::start().await;
    let dir = tempfile::tempdir().unwrap();
    make_certs(dir.path(), &[("inner", &["iis.internal"])]);
    let inner_cfg = format!(
        "[[listener]]\nname = \"i\"\nbind = \"127.0.0.1:0\"\ntls = {{ cert = \"inner.pem\", key = \"inner.key\" }}\n\n[[site]]\nname = \"s\"\nlistener = \"i\"\nbackend = \"http://{}\"\n",
        b.addr
    );
    let inner_g = Gatehouse::start_in(dir, &inner_cfg);
    let inner = inner_g.port();
    for lax_first in [true, false] {
        let lax = format!("[[site]]\nname = \"lax\"\nlistener = \"o\"\npath_prefix = \"/lax\"\nbackend = \"https://127.0.0.1:{inner}\"\nbackend_tls = {{ verify = false }}\n");
        let strict = format!("[[site]]\nname = \"strict\"\nlistener = \"o\"\npath_prefix = \"/strict\"\nbackend = \"https://127.0.0.1:{inner}\"\n");
        let sites = if lax_first { format!("{lax}\n{strict}") } else { format!("{strict}\n{lax}") };
        let cfg = format!("[[listener]]\nname = \"o\"\nbind = \"127.0.0.1:0\"\n\n{sites}");
        let g = Gatehouse::start(&cfg);
        let outer = g.port();
        assert_eq!(request(listen(outer), &get("a", "/lax/x")).await.status, 200, "lax first: {lax_first}");
        let r = request(listen(outer), &get("a", "/strict/x")).await;
        assert_eq!(r.status, 502, "the verifying site used an unverified connection (lax first: {lax_first})");
        assert!(g.stderr().contains("TLS handshake failed"), "{}", g.stderr());
    }
}

/// The corner cases that independent suites found.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_valid_then_invalid_request_gets_both_answers() {
    let b = Backend::start().await;
    let (g, port) = start(b.addr, "");
    let mut c = Conn::open(listen(port)).await;
    c.send(&[get("a", "/first").as_bytes(), b"GET /second HTTP/1.1\r\nHost: a\r\nBad Header: x\r\n\r\n"].concat())
        .await;
    let first = c.response().await;
    assert_eq!(first.status, 200, "the valid request is forwarded and answered");
    let second = c.response().await;
    assert_eq!(second.status, 400, "{}", second.text());
    assert!(c.closed().await);
    assert_eq!(paths(&b), ["/first"]);
    // Both answers are in the access log, in order.
    g.wait_for(|| g.access_log().len() >= 2, "two access records");
    let statuses: Vec<_> = g.access_log().iter().map(|r| r["status"].as_u64().unwrap()).collect();
    assert_eq!(statuses, [200, 400]);
    // Three valid and a refused one behind a slow first answer: all answered, in order.
    let mut c = Conn::open(listen(port)).await;
    let mut batch = get("a", "/delay/300").into_bytes();
    batch.extend_from_slice(get("a", "/two").as_bytes());
    batch.extend_from_slice(get("a", "/three").as_bytes());
    batch.extend_from_slice(SMUGGLE);
    c.send(&batch).await;
    for want in [200, 200, 200, 400] {
        assert_eq!(c.response().await.status, want);
    }
    assert!(c.closed().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_length_is_sent_as_framed_in_plain_decimal() {
    let b = Backend::start().await;
    let (_g, port) = start(b.addr, "");
    for (value, n) in [("010", "10"), ("0000000005", "5"), ("0", "0")] {
        let body = "x".repeat(n.parse().unwrap());
        let r =
            request(listen(port), &format!("POST /cl HTTP/1.1\r\nHost: a\r\nContent-Length: {value}\r\n\r\n{body}"))
                .await;
        assert_eq!(r.status, 200, "{value}");
        let seen = b.seen();
        let s = seen.last().unwrap();
        assert_eq!(s.header("content-length"), Some(n), "{value}: {:?}", s.headers);
        assert_eq!(s.body_bytes, n.parse::<u64>().unwrap());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http10_backend_answer_goes_out_as_http11() {
    let raw = Raw::start(Mode::Http10).await;
    let (_g, port) = start(raw.addr, "");
    let mut c = Conn::open(listen(port)).await;
    c.send(get("a", "/").as_bytes()).await;
    let r = c.response().await;
    assert_eq!((r.status, r.version), (200, 1), "the client got the backend's HTTP/1.0 status line");
    assert_eq!(r.text(), "ok");
    // An HTTP/1.0 client still gets HTTP/1.0.
    let mut c = Conn::open(listen(port)).await;
    c.send(b"GET / HTTP/1.0\r\nHost: a\r\n\r\n").await;
    assert_eq!(c.response().await.version, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_that_switches_to_another_protocol_gets_502() {
    let raw = Raw::start(Mode::SwitchToH2c).await;
    let (_g, port) = start(raw.addr, "");
    let r = request(listen(port), &format!("GET /ws HTTP/1.1\r\nHost: a\r\n{WS}\r\n")).await;
    assert_eq!(r.status, 502, "{}", r.text());
    // And a backend 101 to a request that did not ask is refused too.
    let r = request(listen(port), &get("a", "/plain")).await;
    assert_eq!(r.status, 502, "{}", r.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bare_cr_line_ends_are_refused_at_once() {
    let b = Backend::start().await;
    let (_g, port) = start(b.addr, "");
    for raw in [&b"GET /cr HTTP/1.1\rHost: a\r\r"[..], b"GET /cr HTTP/1.1\r\nHost: a\rX: y\r\n\r\n"] {
        let started = Instant::now();
        let mut c = Conn::open(listen(port)).await;
        c.send(raw).await;
        let r = c.response().await;
        assert_eq!(r.status, 400);
        assert!(r.text().contains("bare CR"), "{}", r.text());
        assert!(started.elapsed() < Duration::from_millis(900), "held {:?}", started.elapsed());
    }
    assert!(paths(&b).is_empty());
}

/// Every answer gatehouse writes itself has one shape: an HTML page with the
/// status, words a help desk can repeat and the request id, whether it comes
/// from the framing check below HTTP or from the proxy above it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gatehouse_answers_in_one_page_format() {
    let b = Backend::start().await;
    let (g, port) = start(b.addr, "");
    let guard = request(listen(port), "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n").await;
    let proxy = request(listen(port), &get("a", "/x/../y")).await;
    let not_found = request(listen(port), &get("nowhere.test", "/")).await;
    assert_eq!(not_found.status, 404);
    for r in [&guard, &proxy, &not_found] {
        assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
        assert_eq!(r.header("cache-control"), Some("no-store"));
        let id = r.header("x-request-id").expect("a request id");
        assert!(r.text().starts_with("<!DOCTYPE html>"), "{}", r.text());
        assert!(r.text().contains(&format!("Request id: {id}")), "{}", r.text());
        // The id finds the log line (requests to no site: the access record,
        // since they are only counted in the operational log).
        if r.status == 404 {
            g.wait_for(|| g.access_log().iter().any(|l| l["request_id"] == id), "the 404's access record");
        } else {
            assert!(g.stderr().contains(id), "{id} not in the log");
        }
    }
}
