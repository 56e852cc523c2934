//! Exchange clients end to end, simulated byte for byte as they talk, through
//! gatehouse published with `preset = "exchange"` (NTLM, Negotiate or Basic at
//! the edge, KCD to the backend) to a Kerberos-only backend that answers like
//! the Exchange services and checks the real Kerberos token with its own
//! keytab (`testkit::exchange`). Needs the lab.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use common::*;
use ntlm::client::Client;
use testkit::config;
use testkit::exchange::{oab_byte, ExchangeBackend, OAB_SIZE};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;
const COMMUNICATOR: &str = "Microsoft Office Communicator 2007 R2 (3.5.6907.0)";
const OUTLOOK: &str = "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.4266; Pro)";

struct Published {
    g: Gatehouse,
    ca: PathBuf,
    port: u16,
    backend: ExchangeBackend,
}

async fn publish(env: &LabEnv) -> Published {
    std::env::set_var("KRB5_CONFIG", &env["KRB5_CONFIG"]);
    let backend =
        ExchangeBackend::start(&format!("{}/backend.keytab", env["LAB"]), "HTTP/backend.ad.test", "AD.TEST").await;
    let dir = tempfile::tempdir().unwrap();
    let ca = make_certs(dir.path(), &[("mail", &["proxy.ad.test"])]);
    let config = Config::new()
        .domain(Domain::lab(env).acceptor_spn("HTTP/proxy.ad.test"))
        .accounts(Accounts::winbind(env))
        // Short, so that the Outlook Anywhere simulation proves /rpc's own long idle time.
        .table("timeouts", "keepalive_idle = \"1s\"")
        .listener(Listener::tls("public", "mail"))
        .site(
            Site::new("exchange", "public", &format!("http://{}", backend.addr))
                .set_str("preset", "exchange")
                .hosts(&["proxy.ad.test"])
                .host_header("backend.ad.test")
                .delegation("kcd")
                .backend_spn("HTTP/backend.ad.test"),
        );
    let g = Gatehouse::start_in(dir, &config.to_string());
    let port = g.port();
    Published { g, ca, port, backend }
}

type Tls = Conn<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;

async fn open(p: &Published) -> Tls {
    Conn::open_tls(listen(p.port), &p.ca, "proxy.ad.test").await
}

fn offered(r: &Resp) -> Vec<String> {
    r.headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case("www-authenticate")).map(|(_, v)| v.clone()).collect()
}

fn now_ms() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis()
}

/// Communicator 2007 R2: Autodiscover then EWS, each POST first sent with
/// `Content-Length: 0` to draw the challenge; NTLM alone offered to it; no
/// second 401 once the connection is authenticated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn communicator_autodiscover_and_ews() {
    let Some(env) = lab_env() else { return };
    let p = publish(&env).await;
    let mut c = open(&p).await;
    let head = |path: &str| {
        format!("POST {path} HTTP/1.1\r\nHost: proxy.ad.test\r\nUser-Agent: {COMMUNICATOR}\r\nContent-Type: text/xml; charset=utf-8")
    };
    // 1: the empty POST that asks for the challenge.
    c.send(format!("{}\r\nContent-Length: 0\r\n\r\n", head("/autodiscover/autodiscover.xml")).as_bytes()).await;
    let r = c.response().await;
    assert_eq!((r.status, offered(&r)), (401, vec!["NTLM".to_string()]), "Communicator is offered NTLM alone");
    // 2 and 3: NEGOTIATE on another empty POST, AUTHENTICATE with the request.
    let request = br#"<?xml version="1.0" encoding="utf-8"?><Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006"><Request><EMailAddress>bob@ad.test</EMailAddress><AcceptableResponseSchema>http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a</AcceptableResponseSchema></Request></Autodiscover>"#;
    let r =
        handshake(&mut c, &Client::new("bob", "Bob-Pass1"), &head("/autodiscover/autodiscover.xml"), request, |_| {})
            .await;
    assert_eq!(r.status, 200, "{}\n{}", r.text(), p.g.stderr());
    assert!(
        r.text().contains(&format!("<User>bob@AD.TEST</User><BodyBytes>{}</BodyBytes>", request.len())),
        "{}",
        r.text()
    );
    // EWS on the same connection: straight through, no 401.
    let soap = br#"<?xml version="1.0" encoding="utf-8"?><soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><GetUserAvailabilityRequest/></soap:Body></soap:Envelope>"#;
    c.send(format!("{}\r\nContent-Length: {}\r\n\r\n", head("/EWS/Exchange.asmx"), soap.len()).as_bytes()).await;
    c.send(soap).await;
    let r = c.response().await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains(&format!("<User>bob@AD.TEST</User><BodyBytes>{}</BodyBytes>", soap.len())));
    // The backend saw the two real requests, whole, as bob, on one Kerberos logon.
    let served = p.backend.served();
    assert_eq!(served.len(), 2, "{served:?}");
    assert!(served.iter().all(|s| s.user == "bob@AD.TEST"));
    assert_eq!((served[0].body_bytes, served[1].body_bytes), (request.len() as u64, soap.len() as u64));
    assert_eq!(served.iter().filter(|s| s.logon).count(), 1, "{served:?}");
}

/// Outlook Anywhere: an OUT and an IN channel of one session, each
/// authenticated on its own HTTP/1.0 keep-alive connection, 1 GiB announced,
/// PDUs streamed through an idle gap longer than the ordinary keep-alive
/// timeout, then closed by the client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outlook_anywhere_channels() {
    let Some(env) = lab_env() else { return };
    let p = publish(&env).await;
    let session = *b"virtual-conn-01!";
    let head = |method: &str| {
        format!("{method} /rpc/rpcproxy.dll?backend.ad.test:6001 HTTP/1.0\r\nHost: proxy.ad.test\r\nUser-Agent: MSRPC\r\nConnection: Keep-Alive\r\nCache-Control: no-cache\r\nPragma: no-cache")
    };
    let bob = Client::new("bob", "Bob-Pass1");
    // Authenticates `c` for `method`: the empty first leg, then the channel's
    // head with the AUTHENTICATE and the 1 GiB announcement, then its first PDU.
    async fn channel(c: &mut Tls, head: &str, client: &Client, announced: u64, first: &[u8]) {
        let negotiate = client.negotiate();
        let r = leg(c, head, &negotiate, b"").await;
        assert_eq!(r.status, 401);
        let auth = client.authenticate(&negotiate, &challenge_of(&r));
        let req = format!("{head}\r\nContent-Length: {announced}\r\nAuthorization: NTLM {}\r\n\r\n", B64.encode(auth));
        c.send(req.as_bytes()).await;
        c.send(first).await;
    }
    // Echo requests first, as Outlook probes the proxy: on its own connection,
    // authenticated, with an empty body; the RPC proxy's answer comes back.
    let mut echo = open(&p).await;
    let r = handshake(&mut echo, &bob, &head("RPC_IN_DATA"), b"", |_| {}).await;
    assert_eq!((r.status, r.body.len()), (200, 20), "{}", p.g.stderr());
    assert!(r.text().is_empty() || r.body[0] == 5, "an RTS PDU");
    drop(echo);
    let mut out = open(&p).await;
    let out_body = rpch::build::conn_a1(&session, b"out-channel-0001"); // 76 bytes, the OUT request's length
    channel(&mut out, &head("RPC_OUT_DATA"), &bob, 76, &out_body).await;
    assert!(out.read_until(b"USER bob@AD.TEST\n").await, "OUT channel: {}", String::from_utf8_lossy(&out.buf));
    // HTTP/1.0 in, HTTP/1.0 out, kept alive, 1 GiB announced.
    let head_text = String::from_utf8_lossy(&out.buf).to_lowercase();
    assert!(head_text.starts_with("http/1.0 200") && head_text.contains("content-length: 1073741824"), "{head_text}");
    let mut inn = open(&p).await;
    let b1 = rpch::build::conn_b1(&session, b"in-channel-00001", b"association-0001");
    channel(&mut inn, &head("RPC_IN_DATA"), &bob, 1 << 30, &b1).await;
    // PDUs both ways: what Outlook writes on IN comes back on OUT, each at once;
    // one gap of 3 s (the keep-alive timeout is 1 s; /rpc's stream idle is long).
    for i in 0..6 {
        if i == 3 {
            tokio::time::sleep(Duration::from_secs(3)).await;
        }
        let pdu = format!("PDU-{i}-{}\n", "x".repeat(1000));
        let sent = Instant::now();
        inn.stream.write_all(pdu.as_bytes()).await.unwrap();
        inn.stream.flush().await.unwrap();
        let got = tokio::time::timeout(Duration::from_secs(2), out.read_until(format!("PDU-{i}-").as_bytes())).await;
        assert!(matches!(got, Ok(true)), "PDU {i} did not come back on the OUT channel:\n{}", p.g.stderr());
        assert!(sent.elapsed() < Duration::from_secs(1), "PDU {i} took {:?}", sent.elapsed());
    }
    // Outlook closes the channels.
    drop(inn);
    drop(out);
    p.g.wait_for(|| p.backend.served().len() >= 3, "the echo and both channels recorded by the backend");
    let served = p.backend.served();
    let methods: Vec<&str> = served.iter().map(|s| s.method.as_str()).collect();
    assert_eq!(methods.iter().filter(|m| **m == "RPC_IN_DATA").count(), 2, "echo and IN channel: {served:?}");
    assert!(methods.contains(&"RPC_OUT_DATA"), "{served:?}");
    assert!(served.iter().all(|s| s.user == "bob@AD.TEST"), "{served:?}");
    let in_bytes = served.iter().filter(|s| s.method == "RPC_IN_DATA").map(|s| s.body_bytes).max().unwrap();
    assert_eq!(in_bytes, 104 + 6 * 1007, "every IN byte reached the backend (CONN/B1 and the PDUs)");
}

/// MAPI over HTTP: Connect (session cookies), Execute with them, and a
/// NotificationWait long poll whose PENDING chunks reach the client within a
/// second of the backend sending them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mapi_over_http() {
    let Some(env) = lab_env() else { return };
    let p = publish(&env).await;
    let mut c = open(&p).await;
    let head = |kind: &str, cookies: &str| {
        format!("POST /mapi/emsmdb/?MailboxId=bob@ad.test HTTP/1.1\r\nHost: proxy.ad.test\r\nUser-Agent: {OUTLOOK}\r\nContent-Type: application/mapi-http\r\nX-RequestType: {kind}\r\nX-ClientInfo: {{2F94A2BF-A2E6-4CCC-BF98-B5F22C542226}}-1\r\nX-RequestId: {{E2EA6C1C-E61B-49E9-9CFB-38184F907552}}:1{cookies}")
    };
    let r = handshake(&mut c, &Client::new("bob", "Bob-Pass1"), &head("Connect", ""), b"connect-request", |_| {}).await;
    assert_eq!(r.status, 200, "{}\n{}", r.text(), p.g.stderr());
    assert_eq!(r.header("x-responsecode"), Some("0"));
    let cookies: Vec<String> = r
        .headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("set-cookie"))
        .map(|(_, v)| v.split(';').next().unwrap().to_owned())
        .collect();
    assert_eq!(cookies.len(), 2, "{:?}", r.headers);
    let cookie = format!("\r\nCookie: {}", cookies.join("; "));
    let body = b"execute-request";
    c.send(format!("{}\r\nContent-Length: {}\r\n\r\n", head("Execute", &cookie), body.len()).as_bytes()).await;
    c.send(body).await;
    let r = c.response().await;
    assert_eq!((r.status, r.header("x-responsecode")), (200, Some("0")), "{}", r.text());
    // The long poll.
    c.send(format!("{}\r\nContent-Length: 0\r\n\r\n", head("NotificationWait", &cookie)).as_bytes()).await;
    let mut seen = Vec::new();
    let mut text = String::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !text.contains("DONE") && Instant::now() < deadline {
        let mut buf = [0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(2), c.stream.read(&mut buf)).await.unwrap().unwrap();
        assert!(n > 0, "connection closed during the long poll");
        let arrived = now_ms();
        text.push_str(&String::from_utf8_lossy(&buf[..n]));
        for line in String::from_utf8_lossy(&buf[..n]).lines() {
            if let Some(ms) = line.strip_prefix("PENDING ") {
                seen.push(arrived - ms.trim().parse::<u128>().unwrap());
            }
        }
    }
    assert!(text.contains("PROCESSING") && text.contains("DONE"), "{text}");
    assert_eq!(seen.len(), 5, "{text}");
    assert!(seen.iter().all(|&delay| delay < 1000), "PENDING delays in ms: {seen:?}");
    assert!(p.backend.served().iter().all(|s| s.user == "bob@AD.TEST"));
}

/// Whether one of the responses in curl's `-D -` output has this status
/// (HTTP/2 or HTTP/1.1: curl takes h2 where gatehouse offers it).
fn has_status(heads: &str, status: u16) -> bool {
    heads.lines().any(|l| l.starts_with("HTTP/") && l.split_whitespace().nth(1) == Some(&status.to_string()))
}

fn curl(p: &Published, env: &LabEnv, cc: Option<&str>, args: &[&str]) -> (String, Vec<u8>) {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "-D", "-", "--cacert"])
        .arg(&p.ca)
        .args(["--resolve", &format!("proxy.ad.test:{}:127.0.0.1", p.port)]);
    cmd.env("KRB5_CONFIG", &env["KRB5_CONFIG"]);
    if let Some(cc) = cc {
        cmd.env("KRB5CCNAME", cc).args(["--negotiate", "-u", ":"]);
    }
    let out = cmd.args(args).output().unwrap();
    assert!(out.status.success(), "curl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    // Headers of every response (401s included), then the body.
    let split = out.stdout.windows(4).rposition(|w| w == b"\r\n\r\n").map_or(0, |i| i + 4);
    (String::from_utf8_lossy(&out.stdout[..split]).into_owned(), out.stdout[split..].to_vec())
}

/// The offline address book, whole and by range, and OWA's browser session,
/// with Kerberos from a domain-joined machine (alice's ticket, curl).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oab_and_owa_with_kerberos() {
    let Some(env) = lab_env() else { return };
    let p = publish(&env).await;
    let dir = tempfile::tempdir().unwrap();
    let cc = kinit(&env, dir.path(), "alice", "Alice-Pass1", &[]);
    let base = format!("https://proxy.ad.test:{}", p.port);
    let (heads, body) =
        curl(&p, &env, Some(&cc), &[&format!("{base}/oab/5f7d0bd2-1d8a-4e0e-8b1a-2f3e5a4f6b7c/data.lzx")]);
    assert!(heads.contains("x-backend-user: alice@AD.TEST"), "{heads}");
    assert_eq!(body.len(), OAB_SIZE);
    assert!(body.iter().enumerate().all(|(i, &b)| b == oab_byte(i)), "OAB bytes differ");
    let (heads, body) = curl(
        &p,
        &env,
        Some(&cc),
        &["-r", "1000-1999", &format!("{base}/oab/5f7d0bd2-1d8a-4e0e-8b1a-2f3e5a4f6b7c/data.lzx")],
    );
    assert!(
        has_status(&heads, 206) && heads.contains(&format!("content-range: bytes 1000-1999/{OAB_SIZE}")),
        "{heads}"
    );
    assert_eq!(body, (1000..2000).map(oab_byte).collect::<Vec<u8>>());
    // OWA: the session cookie from the first page carries the next request.
    let jar = dir.path().join("jar");
    let jar = jar.to_str().unwrap();
    let (_, page) = curl(&p, &env, Some(&cc), &["-c", jar, &format!("{base}/owa/")]);
    assert!(String::from_utf8_lossy(&page).contains("Outlook on the web: alice@AD.TEST"));
    let (heads, body) =
        curl(&p, &env, Some(&cc), &["-b", jar, "-X", "POST", "--data", "{}", &format!("{base}/owa/service.svc")]);
    assert!(has_status(&heads, 200), "{heads}");
    assert!(String::from_utf8_lossy(&body).contains("\"user\":\"alice@AD.TEST\""));
    let (heads, _) = curl(&p, &env, Some(&cc), &["-X", "POST", "--data", "{}", &format!("{base}/owa/service.svc")]);
    assert!(has_status(&heads, 440), "no session cookie, no session: {heads}");
}

/// ActiveSync: Basic over TLS, as phones send it, on every request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn activesync_with_basic() {
    let Some(env) = lab_env() else { return };
    let p = publish(&env).await;
    let base = format!("https://proxy.ad.test:{}", p.port);
    let (heads, _) = curl(&p, &env, None, &["-X", "OPTIONS", &format!("{base}/Microsoft-Server-ActiveSync")]);
    assert!(has_status(&heads, 401) && heads.contains("www-authenticate: Basic realm="), "{heads}");
    let wbxml =
        [0x03u8, 0x01, 0x6a, 0x00, 0x45, 0x5c, 0x4f, 0x50, 0x03, 0x43, 0x6f, 0x6e, 0x74, 0x61, 0x63, 0x74, 0x73];
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), wbxml).unwrap();
    for _ in 0..3 {
        let (heads, body) = curl(
            &p,
            &env,
            None,
            &[
                "--basic",
                "-u",
                "bob@ad.test:Bob-Pass1",
                "-H",
                "MS-ASProtocolVersion: 14.1",
                "-H",
                "Content-Type: application/vnd.ms-sync.wbxml",
                "-A",
                "Apple-iPhone9C1/1402.100",
                "--data-binary",
                &format!("@{}", file.path().display()),
                &format!("{base}/Microsoft-Server-ActiveSync?Cmd=Sync&User=bob&DeviceId=ABC123&DeviceType=iPhone"),
            ],
        );
        assert!(has_status(&heads, 200), "{heads}\n{}", p.g.stderr());
        let text = String::from_utf8_lossy(&body);
        assert!(
            text.contains("\"user\":\"bob@AD.TEST\"") && text.contains(&format!("\"body_bytes\":{}", wbxml.len())),
            "{text}"
        );
    }
}

/// Extended Protection end to end: an HTTPS backend that refuses any ticket not
/// bound to its own TLS connection (as Exchange with Extended Protection
/// "Required" does) accepts the tickets gatehouse sends it; a ticket without
/// bindings is refused by the same backend, so the acceptance means something.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extended_protection_towards_an_https_backend() {
    let Some(env) = lab_env() else { return };
    std::env::set_var("KRB5_CONFIG", &env["KRB5_CONFIG"]);
    std::env::set_var("KRB5CCNAME", "MEMORY:exchange-test-no-default");
    let dir = tempfile::tempdir().unwrap();
    let ca = make_certs(dir.path(), &[("backend", &["backend.ad.test"]), ("mail", &["proxy.ad.test"])]);
    let read = |f: &str| std::fs::read_to_string(dir.path().join(f)).unwrap();
    let backend = ExchangeBackend::start_tls(
        &format!("{}/backend.keytab", env["LAB"]),
        "HTTP/backend.ad.test",
        "AD.TEST",
        &read("backend.pem"),
        &read("backend.key"),
    )
    .await;
    // Unbound ticket, straight to the backend: refused.
    let d = kcd::Delegator::new("svc-proxy@AD.TEST", &env["LAB_PROXY_KEYTAB"], "AD.TEST");
    let unbound =
        d.token(&kcd::User::Account("bob@AD.TEST".into()), "HTTP/backend.ad.test", kcd::Token::Spnego, None).unwrap();
    let mut c = Conn::open_tls(backend.addr, &ca, "backend.ad.test").await;
    c.send(
        format!(
            "GET /ews/exchange.asmx HTTP/1.1\r\nHost: backend.ad.test\r\nAuthorization: Negotiate {}\r\n\r\n",
            B64.encode(&unbound)
        )
        .as_bytes(),
    )
    .await;
    let r = c.response().await;
    assert_eq!(r.status, 401);
    assert!(r.header("x-refused").unwrap_or("").contains("no channel bindings"), "{:?}", r.headers);

    // Through gatehouse, whose tickets carry the bindings of its own TLS connection to the backend.
    let tls = format!(
        "{{ cert = {}, key = {} }}",
        config::quote(&dir.path().join("mail.pem").display().to_string()),
        config::quote(&dir.path().join("mail.key").display().to_string())
    );
    let backend_tls =
        format!("{{ ca = {}, server_name = \"backend.ad.test\" }}", config::quote(&ca.display().to_string()));
    let config = Config::new()
        .domain(Domain::lab(&env))
        .accounts(Accounts::winbind(&env))
        .listener(Listener::plain("public").set("tls", &tls))
        .site(
            Site::new("ews", "public", &format!("https://{}", backend.addr))
                .set("backend_tls", &backend_tls)
                .auth(&["NTLM"])
                .delegation("kcd")
                .backend_spn("HTTP/backend.ad.test"),
        );
    let g = Gatehouse::start(&config.to_string());
    let port = g.port();
    let mut c = Conn::open_tls(listen(port), &ca, "proxy.ad.test").await;
    let r = handshake(
        &mut c,
        &Client::new("bob", "Bob-Pass1"),
        "GET /ews/exchange.asmx HTTP/1.1\r\nHost: proxy.ad.test",
        b"",
        |_| {},
    )
    .await;
    assert_eq!(r.status, 200, "{}\n{}", r.text(), g.stderr());
    assert_eq!(r.header("x-backend-user"), Some("bob@AD.TEST"));
}
