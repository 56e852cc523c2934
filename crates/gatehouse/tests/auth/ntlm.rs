//! NTLM pre-authentication through the real binary, with passwords from a file:
//! curl as a real client, and a scripted client on raw sockets that builds
//! messages as Windows does and forges them as attackers do.

use std::net::SocketAddr;
use std::time::Duration;

use crate::common::*;
use ntlm::client::Client;
use testkit::Backend;

/// NTLM with passwords from a file, a lockout limit of three, and one NTLM
/// site on `listener` in front of `backend`; `extra` goes at the end of the site.
fn config(listener: Listener, backend: SocketAddr, extra: &str) -> Config {
    Config::new()
        .domain(Domain::new().acceptor_spn("HTTP/proxy.ad.test"))
        .accounts(Accounts::file("users.ntlm"))
        .table("lockout", "max_failures_per_user = 3")
        .listener(listener)
        .site(
            Site::new("ews", "public", &format!("http://{backend}"))
                .auth(&["NTLM"])
                .identity_header("X-Remote-User")
                .then(extra),
        )
}

/// [`config`] on a plain listener.
fn plain(backend: SocketAddr) -> Config {
    config(Listener::plain("public"), backend, "")
}

/// gatehouse on `config`, with bob's and alice's passwords in its folder.
fn start(config: Config) -> Gatehouse {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("users.ntlm"), "ADTEST:bob:Bob-Pass1\nADTEST:alice:Alice-Pass1\n").unwrap();
    Gatehouse::start_in(dir, &config.to_string())
}

/// The same, with a lockout limit that the test will not reach.
fn no_lockout(config: Config) -> Config {
    config.table("lockout", "max_failures_per_user = 100")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_ntlm_over_tls_right_and_wrong_password() {
    let b = Backend::start().await;
    let dir = tempfile::tempdir().unwrap();
    let ca = make_certs(dir.path(), &[("mail", &["mail.ad.test"])]);
    std::fs::write(dir.path().join("users.ntlm"), "ADTEST:bob:Bob-Pass1\n").unwrap();
    let g = Gatehouse::start_in(dir, &config(Listener::tls("public", "mail"), b.addr, "").to_string());
    let port = g.port();
    let curl = |user: &str| {
        let out = std::process::Command::new("curl")
            .args(["-sS", "--ntlm", "-u", user, "--cacert"])
            .arg(&ca)
            .args(["--resolve", &format!("mail.ad.test:{port}:127.0.0.1"), "-w", "\n%{http_code}"])
            .arg(format!("https://mail.ad.test:{port}/ews/Exchange.asmx"))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let ok = curl("ADTEST\\bob:Bob-Pass1");
    assert!(ok.ends_with("\n200"), "{ok}");
    assert!(ok.contains(r#""x-remote-user":"ADTEST\\bob""#), "{ok}");
    assert!(!ok.contains("authorization"), "credentials were forwarded: {ok}");
    let bad = curl("ADTEST\\bob:wrong");
    assert!(bad.ends_with("\n401"), "{bad}");
    g.wait_for(|| g.access_log().iter().any(|r| r["status"] == 200), "the access record");
    let rec = g.access_log().into_iter().find(|r| r["status"] == 200).unwrap();
    assert_eq!(rec["user"], "ADTEST\\bob");
    assert_eq!(rec["auth"], "NTLM");
    assert!(g.stderr().contains("ADTEST\\bob: NTLMv2 proof does not match"), "{}", g.stderr());
    assert_eq!(b.seen().len(), 1, "only the authenticated request reached the backend");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wininet_zero_length_post_sequence() {
    let b = Backend::start().await;
    let g = start(plain(b.addr));
    let port = g.port();
    let mut c = Conn::open(listen(port)).await;
    // 1. No credentials, no body: told to use NTLM.
    c.send(b"POST /ews/Exchange.asmx HTTP/1.1\r\nHost: mail.ad.test\r\nContent-Length: 0\r\n\r\n").await;
    let r = c.response().await;
    assert_eq!(r.status, 401);
    assert_eq!(r.header("www-authenticate"), Some("NTLM"));
    // 2. NEGOTIATE on a zero-length POST: the challenge, never the backend.
    // 3. The full body with the AUTHENTICATE, delivered once.
    let body = b"<soap:Envelope>FindItem</soap:Envelope>";
    let head = "POST /ews/Exchange.asmx HTTP/1.1\r\nHost: mail.ad.test\r\nUser-Agent: Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0)";
    let r = handshake(&mut c, &Client::new("bob", "Bob-Pass1"), head, body, |_| {}).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["body_bytes"], body.len());
    assert_eq!(r.json()["headers"]["x-remote-user"], "ADTEST\\bob");
    let seen = b.seen();
    assert_eq!(seen.len(), 1, "the handshake legs were forwarded: {seen:?}");
    assert_eq!(seen[0].method, "POST");
    // 4. The connection stays authenticated: the next request needs no handshake.
    c.send(b"POST /ews/Exchange.asmx HTTP/1.1\r\nHost: mail.ad.test\r\nContent-Length: 4\r\n\r\nnext").await;
    let r = c.response().await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["headers"]["x-remote-user"], "ADTEST\\bob");
    // ...but a new connection does.
    assert_eq!(request(listen(port), "GET /ews HTTP/1.1\r\nHost: mail.ad.test\r\n\r\n").await.status, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rpc_echo_requests_after_handshake_on_http10_keep_alive() {
    let b = Backend::start().await;
    let g = start(plain(b.addr));
    let port = g.port();
    let mut c = Conn::open(listen(port)).await;
    let head = "RPC_IN_DATA /rpc/rpcproxy.dll?mail.ad.test:6001 HTTP/1.0\r\nConnection: Keep-Alive\r\nUser-Agent: MSRPC\r\nHost: mail.ad.test";
    let client = Client::new("bob", "Bob-Pass1");
    let negotiate = client.negotiate();
    let r = leg(&mut c, head, &negotiate, b"").await;
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("connection").map(str::to_ascii_lowercase).as_deref(),
        Some("keep-alive"),
        "HTTP/1.0 handshake must keep the connection"
    );
    let auth = client.authenticate(&negotiate, &challenge_of(&r));
    let echo = [0x05u8; 16];
    let r = leg(&mut c, head, &auth, &echo).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["body_bytes"], 16);
    assert_eq!(r.json()["method"], "RPC_IN_DATA");
    // Another echo (0 bytes) on the authenticated connection.
    c.send(format!("{head}\r\nContent-Length: 0\r\n\r\n").as_bytes()).await;
    assert_eq!(c.response().await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_bodies_are_drained_up_to_the_bound() {
    let b = Backend::start().await;
    let g = start(plain(b.addr).table("limits", "handshake_body = 4096"));
    let port = g.port();
    let client = Client::new("bob", "Bob-Pass1");
    // A body under the bound on the NEGOTIATE leg: read, dropped, connection kept.
    let mut c = Conn::open(listen(port)).await;
    let head = "POST /ews HTTP/1.1\r\nHost: a";
    let negotiate = client.negotiate();
    let r = leg(&mut c, head, &negotiate, &[b'x'; 1000]).await;
    assert_eq!(r.status, 401);
    assert_ne!(r.header("connection"), Some("close"));
    let auth = client.authenticate(&negotiate, &challenge_of(&r));
    let r = leg(&mut c, head, &auth, b"real body").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["body_bytes"], 9);
    // Over the bound: the 401, then the connection closes.
    let mut c = Conn::open(listen(port)).await;
    let r = leg(&mut c, head, &negotiate, &vec![b'x'; 10_000]).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.header("connection"), Some("close"));
    assert!(c.closed().await);
    assert_eq!(b.seen().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expect_100_continue_without_credentials_gets_401_at_once() {
    let b = Backend::start().await;
    let g = start(plain(b.addr));
    let port = g.port();
    let mut c = Conn::open(listen(port)).await;
    c.send(b"POST /ews HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n").await;
    let r = c.response().await;
    assert_eq!(r.status, 401, "a 100 Continue would invite a body that can only be refused");
    assert!(b.seen().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_authenticate_messages_are_refused() {
    let b = Backend::start().await;
    let g = start(no_lockout(plain(b.addr)));
    let port = g.port();
    let head = "GET /ews HTTP/1.1\r\nHost: a";
    let bob = Client::new("bob", "Bob-Pass1");
    let nt_offset = |m: &Vec<u8>| u32::from_le_bytes(m[24..28].try_into().unwrap()) as usize;
    type Tamper = Box<dyn FnOnce(&mut Vec<u8>)>;
    let cases: Vec<(&str, Client, Tamper)> = vec![
        (
            "garbage proof",
            bob.clone(),
            Box::new(move |m: &mut Vec<u8>| {
                let off = nt_offset(m);
                m[off..off + 16].fill(0x41);
            }),
        ),
        (
            "proof of another user",
            {
                let mut c = Client::new("bob", "Alice-Pass1");
                c.proof_user = "alice";
                c
            },
            Box::new(|_: &mut Vec<u8>| {}),
        ),
        ("stripped MIC", bob.clone(), Box::new(|m: &mut Vec<u8>| m[72..88].fill(0))),
        (
            "tampered flags",
            bob.clone(),
            Box::new(|m: &mut Vec<u8>| {
                let flags =
                    u32::from_le_bytes(m[60..64].try_into().unwrap()) & !(ntlm::flags::SIGN | ntlm::flags::SEAL);
                m[60..64].copy_from_slice(&flags.to_le_bytes());
            }),
        ),
    ];
    for (name, client, tamper) in cases {
        let mut c = Conn::open(listen(port)).await;
        let r = handshake(&mut c, &client, head, b"", tamper).await;
        assert_eq!(r.status, 401, "{name} was accepted");
        // and the connection is not authenticated afterwards
        c.send(b"GET /ews HTTP/1.1\r\nHost: a\r\n\r\n").await;
        assert_eq!(c.response().await.status, 401, "{name}: connection authenticated anyway");
    }
    // Replay: a captured AUTHENTICATE presented on a new connection, after its own NEGOTIATE.
    let mut first = Conn::open(listen(port)).await;
    let negotiate = bob.negotiate();
    let r = leg(&mut first, head, &negotiate, b"").await;
    let captured = bob.authenticate(&negotiate, &challenge_of(&r));
    let mut second = Conn::open(listen(port)).await;
    assert_eq!(leg(&mut second, head, &negotiate, b"").await.status, 401);
    assert_eq!(leg(&mut second, head, &captured, b"").await.status, 401, "replay accepted");
    // ...and without any challenge on that connection.
    let mut third = Conn::open(listen(port)).await;
    assert_eq!(leg(&mut third, head, &captured, b"").await.status, 401);
    assert!(b.seen().is_empty(), "a forged request reached the backend: {:?}", b.seen());
    let log = g.stderr();
    for cause in ["NTLMv2 proof does not match", "MIC does not match", "without a challenge on this connection"] {
        assert!(log.contains(cause), "no log line names `{cause}`:\n{log}");
    }
    // The captured message is still good on its own connection: the refusals above were not luck.
    assert_eq!(leg(&mut first, head, &captured, b"").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_stays_with_its_connection() {
    let b = Backend::start().await;
    let g = start(plain(b.addr));
    let port = g.port();
    let users = [("alice", "Alice-Pass1"), ("bob", "Bob-Pass1")];
    let mut conns = Vec::new();
    for i in 0..8 {
        let (user, password) = users[i % 2];
        let mut c = Conn::open(listen(port)).await;
        let r = handshake(
            &mut c,
            &Client::new(user, password),
            &format!("GET /login/{i} HTTP/1.1\r\nHost: a"),
            b"",
            |_| {},
        )
        .await;
        assert_eq!(r.status, 200);
        conns.push((user, c));
    }
    // Interleave: every connection, round after round, each request on its own.
    for round in 0..10 {
        for (i, (user, c)) in conns.iter_mut().enumerate() {
            c.send(format!("GET /r/{round}/{i} HTTP/1.1\r\nHost: a\r\n\r\n").as_bytes()).await;
            let r = c.response().await;
            assert_eq!(r.status, 200);
            assert_eq!(
                r.json()["headers"]["x-remote-user"],
                format!("ADTEST\\{user}"),
                "round {round}, connection {i}"
            );
        }
    }
    let seen = b.seen();
    assert_eq!(seen.len(), 8 + 80);
    for s in &seen {
        let i: usize = s.path.rsplit('/').next().unwrap().parse().unwrap();
        assert_eq!(s.header("x-remote-user").unwrap(), format!("ADTEST\\{}", users[i % 2].0));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lockout_stops_asking_after_the_limit() {
    let b = Backend::start().await;
    let g = start(plain(b.addr));
    let port = g.port();
    let head = "GET /ews HTTP/1.1\r\nHost: a";
    for _ in 0..6 {
        let mut c = Conn::open(listen(port)).await;
        assert_eq!(handshake(&mut c, &Client::new("bob", "guess"), head, b"", |_| {}).await.status, 401);
    }
    // The right password is refused too while the lockout lasts: nothing reaches the checker.
    let mut c = Conn::open(listen(port)).await;
    assert_eq!(handshake(&mut c, &Client::new("bob", "Bob-Pass1"), head, b"", |_| {}).await.status, 401);
    let log = g.stderr();
    assert_eq!(log.matches("NTLMv2 proof does not match").count(), 3, "passwords checked past the limit:\n{log}");
    assert!(log.contains("extranet lockout"), "{log}");
    // Other users are not affected.
    let mut c = Conn::open(listen(port)).await;
    assert_eq!(handshake(&mut c, &Client::new("alice", "Alice-Pass1"), head, b"", |_| {}).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_binding_policies_over_tls() {
    let b = Backend::start().await;
    let dir = tempfile::tempdir().unwrap();
    let ca = make_certs(dir.path(), &[("mail", &["mail.ad.test"])]);
    // What the client computes from the certificate it received.
    let der = {
        use rustls::pki_types::pem::PemObject;
        rustls::pki_types::CertificateDer::from_pem_file(dir.path().join("mail.pem")).unwrap()
    };
    let right = ntlm::crypto::tls_channel_bindings(&sha256(&der));
    let wrong = ntlm::crypto::tls_channel_bindings(&[0u8; 32]);
    std::fs::write(dir.path().join("users.ntlm"), "ADTEST:bob:Bob-Pass1\n").unwrap();
    let tls = Listener::tls("public", "mail").channel_binding("required");
    let g = Gatehouse::start_in(dir, &no_lockout(config(tls, b.addr, "")).to_string());
    let port = g.port();
    let head = "GET /ews HTTP/1.1\r\nHost: mail.ad.test";
    let attempt = |bindings: Option<[u8; 16]>| {
        let ca = ca.clone();
        async move {
            let mut c = Conn::open_tls(listen(port), &ca, "mail.ad.test").await;
            let mut client = Client::new("bob", "Bob-Pass1");
            client.bindings = bindings;
            handshake(&mut c, &client, head, b"", |_| {}).await.status
        }
    };
    assert_eq!(attempt(Some(right)).await, 200, "right binding refused");
    assert_eq!(attempt(Some(wrong)).await, 401, "wrong binding accepted under required");
    assert_eq!(attempt(None).await, 401, "missing binding accepted under required");
    let text = std::fs::read_to_string(&g.config).unwrap().replace("\"required\"", "\"when-supported\"");
    g.reload(text.split_once("\n\n").unwrap().1);
    assert_eq!(attempt(None).await, 200, "missing binding refused under when-supported");
    assert_eq!(attempt(Some(wrong)).await, 401, "wrong binding accepted under when-supported");
    assert!(g.stderr().contains("channel bindings required but not sent"));
    assert!(g.stderr().contains("channel bindings do not match this TLS connection"));
}

fn sha256(data: &[u8]) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(data).to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_checker_down_is_503_not_a_crash() {
    let b = Backend::start().await;
    // A helper that exits at once: a missing one is refused by the loader.
    let text = plain(b.addr).accounts(Accounts::ntlm_auth("/bin/false", "2s")).to_string();
    let g = Gatehouse::start(&text);
    let port = g.port();
    let mut c = Conn::open(listen(port)).await;
    let r = handshake(&mut c, &Client::new("bob", "Bob-Pass1"), "GET /ews HTTP/1.1\r\nHost: a", b"", |_| {}).await;
    assert_eq!(r.status, 503);
    assert!(r.header("retry-after").is_some());
    assert!(g.stderr().contains("cannot check the password"), "{}", g.stderr());
    assert_eq!(request(listen(port), "GET / HTTP/1.1\r\nHost: a\r\n\r\n").await.status, 401, "still serving");
    let _ = Duration::ZERO;
}

#[test]
fn ntlm_hash_command() {
    use std::io::Write;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .arg("ntlm-hash")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"Password\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    // MS-NLMP 4.2.2.1.2
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "A4F49C406510BDCAB6824EE7C30FD852");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_checker_that_hangs_is_503_within_the_timeout() {
    let b = Backend::start().await;
    let dir = tempfile::tempdir().unwrap();
    // An ntlm_auth that reads the request and never answers.
    let helper = dir.path().join("ntlm_auth");
    std::fs::write(&helper, "#!/bin/sh\nexec sleep 600\n").unwrap();
    std::process::Command::new("chmod").arg("+x").arg(&helper).status().unwrap();
    let text = plain(b.addr).accounts(Accounts::ntlm_auth(&helper.display().to_string(), "1s")).to_string();
    let g = Gatehouse::start_in(dir, &text);
    let port = g.port();
    let start = std::time::Instant::now();
    let mut c = Conn::open(listen(port)).await;
    let r = handshake(&mut c, &Client::new("bob", "Bob-Pass1"), "GET /ews HTTP/1.1\r\nHost: a", b"", |_| {}).await;
    assert_eq!(r.status, 503);
    assert!(start.elapsed() < Duration::from_secs(5), "took {:?}", start.elapsed());
    assert!(g.stderr().contains("gave no answer within"), "{}", g.stderr());
}

/// The logon belongs to the connection, not to the HTTP server on it: after the
/// connection has parked (quiet for more than a second, see `conn::PARK_AFTER`)
/// its next request is still bob's with no new handshake, while a connection of
/// its own still has to authenticate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ntlm_logon_outlives_the_connection_parking() {
    let b = Backend::start().await;
    let g = start(plain(b.addr));
    let port = g.port();
    let mut c = Conn::open(listen(port)).await;
    let head = "GET /ews/first HTTP/1.1\r\nHost: mail.ad.test";
    let r = handshake(&mut c, &Client::new("bob", "Bob-Pass1"), head, b"", |_| {}).await;
    assert_eq!(r.status, 200);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    c.send(b"GET /ews/after HTTP/1.1\r\nHost: mail.ad.test\r\n\r\n").await;
    let r = c.response().await;
    assert_eq!(r.status, 200, "the logon was lost when the connection parked: {}", r.text());
    assert_eq!(r.json()["headers"]["x-remote-user"], "ADTEST\\bob");
    let r = request(listen(port), "GET /ews/other HTTP/1.1\r\nHost: mail.ad.test\r\n\r\n").await;
    assert_eq!(r.status, 401);
}
