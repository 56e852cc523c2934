//! Issue 10, findings 4 and 5, through the real binary: the extranet lockout
//! in bounded memory under a flood of failed logons (long names, rotating
//! names, rotating source addresses) while a real user's lockout holds, names
//! AD cannot hold refused before anything is stored, counting per client
//! network, and client values that cannot forge operational log lines.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use crate::common::*;
use base64::Engine;
use ntlm::client::Client;
use testkit::Backend;
use tokio::net::TcpSocket;

const HEAD: &str = "GET /ews HTTP/1.1\r\nHost: a";

/// NTLM against a file of passwords with `lockout` as the `[lockout]` table,
/// one NTLM site on the listener `public`.
fn config(backend: SocketAddr, lockout: &str) -> Config {
    config_with(Domain::new().acceptor_spn("HTTP/proxy.ad.test"), backend, lockout)
}

fn config_with(domain: Domain, backend: SocketAddr, lockout: &str) -> Config {
    Config::new()
        .domain(domain)
        .accounts(Accounts::file("users.ntlm"))
        .table("lockout", lockout)
        .listener(Listener::plain("public"))
        .site(Site::new("ews", "public", &format!("http://{backend}")).auth(&["NTLM"]))
}

fn start(backend: SocketAddr, lockout: &str) -> Gatehouse {
    let dir = tempfile::tempdir().unwrap();
    let twenty = "abcdefghijklmnopqrst";
    std::fs::write(
        dir.path().join("users.ntlm"),
        format!("ADTEST:bob:Bob-Pass1\nADTEST:alice:Alice-Pass1\nADTEST:{twenty}:Twenty-Pass1\n"),
    )
    .unwrap();
    Gatehouse::start_in(dir, &config(backend, lockout).to_string())
}

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

fn client(domain: &str, user: &str, password: &str) -> Client {
    Client { domain: leak(domain.into()), ..Client::new(leak(user.into()), leak(password.into())) }
}

/// A connection to gatehouse from `source` (any 127.0.0.0/8 address on Linux).
async fn open_from(port: u16, source: Option<Ipv4Addr>) -> Conn {
    let Some(source) = source else { return Conn::open(listen(port)).await };
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(IpAddr::V4(source), 0)).unwrap();
    Conn { stream: socket.connect(listen(port)).await.unwrap(), buf: Vec::new() }
}

/// One NTLM logon on a new connection; the status of the last leg.
async fn logon(port: u16, source: Option<Ipv4Addr>, c: &Client) -> u16 {
    let mut conn = open_from(port, source).await;
    handshake(&mut conn, c, HEAD, b"", |_| {}).await.status
}

fn rss_kib(g: &Gatehouse) -> u64 {
    let pid = g.pid();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// The source address of attempt `i`: 127.a.b.c, never 127.0.0.1.
fn rotating(i: u32) -> Ipv4Addr {
    Ipv4Addr::from(0x7f01_0001 + i)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_ad_cannot_hold_are_refused_before_anything_is_stored() {
    let b = Backend::start().await;
    // A per-client limit below the number of refused names sent from here.
    let g = start(b.addr, "max_failures_per_user = 3\nmax_failures_per_client = 3");
    let port = g.port();
    let long = "a".repeat(20_000);
    for (domain, user, cause) in [
        ("ADTEST", "abcdefghijklmnopqrstu".to_string(), "account name of 21 characters refused (AD allows 20)"),
        ("ADTEST", long.clone(), "account name of 20000 characters refused"),
        ("", format!("{}@ad.test", "u".repeat(1017)), "user principal name of 1025 bytes refused (AD allows 1024)"),
        (&"D".repeat(300), "bob".to_string(), "domain name of 300 bytes refused (AD allows 255)"),
    ] {
        assert_eq!(logon(port, None, &client(domain, &user, "x")).await, 401, "{cause}");
        g.wait_for(|| g.stderr().contains(cause), cause);
    }
    let log = g.stderr();
    assert!(log.contains("the domain was not asked"), "{log}");
    assert!(!log.contains(&"a".repeat(100)), "the whole name was echoed");
    assert!(!log.contains(&"D".repeat(100)), "the whole domain was echoed");
    assert!(!log.contains("unknown user"), "a refused name reached the accounts file:\n{log}");
    for _ in 0..3 {
        assert_eq!(logon(port, None, &client("ADTEST", &format!("bob{}", "b".repeat(30)), "x")).await, 401);
    }
    // A name at the limit is a name: it logs on, and a UPN at its limit is checked.
    assert_eq!(logon(port, None, &client("ADTEST", "abcdefghijklmnopqrst", "Twenty-Pass1")).await, 200);
    assert_eq!(logon(port, None, &client("", &format!("{}@ad.test", "u".repeat(1016)), "x")).await, 401);
    g.wait_for(|| g.stderr().contains("uuuu@ad.test: unknown user"), "the 1,024-byte UPN checked");
    // The seven refused names counted for nothing: this client is not at its limit of 3.
    assert_eq!(logon(port, None, &client("ADTEST", "bob", "Bob-Pass1")).await, 200, "{}", g.stderr());
}

/// The attack of the issue: thousands of failed logons with 20,000-character
/// names (the old table kept each, about 22 KiB apiece) and with rotating short
/// names, from rotating addresses. Default lockout settings but for a
/// per-client limit the flood must not hit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_stays_bounded_under_a_flood_of_failed_logons() {
    let b = Backend::start().await;
    let g = Arc::new(start(b.addr, "max_failures_per_user = 3\nmax_failures_per_client = 100000"));
    let port = g.port();
    for _ in 0..3 {
        assert_eq!(logon(port, None, &client("ADTEST", "bob", "guess")).await, 401);
    }
    // Warm up the allocator and the connection machinery before measuring.
    for i in 0..100 {
        assert_eq!(logon(port, Some(rotating(i)), &client("ADTEST", &format!("warm{i}"), "x")).await, 401);
    }
    let before = rss_kib(&g);
    let flood = 1_200u32;
    let tasks: Vec<_> = (0..8u32)
        .map(|t| {
            tokio::spawn(async move {
                for i in (t..flood).step_by(8) {
                    let long = format!("{i:06}{}", "x".repeat(19_994));
                    let short = format!("guess{i}");
                    for (n, user) in [long, short].into_iter().enumerate() {
                        let from = rotating(1000 + 2 * i + n as u32);
                        assert_eq!(logon(port, Some(from), &client("ADTEST", &user, "x")).await, 401);
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let after = rss_kib(&g);
    let grown = after.saturating_sub(before);
    eprintln!("RSS {before} KiB -> {after} KiB after {} failed logons", 2 * flood);
    assert!(grown < 8 * 1024, "the process grew by {grown} KiB over {} failed logons", 2 * flood);
    // bob's lockout held through it all: even his password is not checked.
    assert_eq!(logon(port, None, &client("ADTEST", "bob", "Bob-Pass1")).await, 401);
    assert!(g.stderr().contains("ADTEST\\bob: extranet lockout"), "{}", g.stderr());
    assert_eq!(logon(port, None, &client("ADTEST", "alice", "Alice-Pass1")).await, 200);
}

/// With a small table, a flood of made-up names evicts made-up names (oldest
/// first) and never a real account's count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_unknown_names_evicts_unknown_names_and_never_a_real_account() {
    let b = Backend::start().await;
    let g = start(b.addr, "max_failures_per_user = 3\nmax_failures_per_client = 100000\nmax_entries = 200");
    let port = g.port();
    for user in ["bob", "zed"] {
        for _ in 0..3 {
            assert_eq!(logon(port, None, &client("ADTEST", user, "guess")).await, 401);
        }
    }
    // Both are locked: zed (no such user) as well as bob.
    for user in ["bob", "zed"] {
        assert_eq!(logon(port, None, &client("ADTEST", user, "x")).await, 401);
        assert!(g.stderr().contains(&format!("ADTEST\\{user}: extranet lockout")), "{}", g.stderr());
    }
    for i in 0..1_000u32 {
        assert_eq!(logon(port, Some(rotating(i)), &client("ADTEST", &format!("n{i}"), "x")).await, 401);
    }
    // zed's count made room; bob's did not.
    let checked = |log: &str| log.matches("ADTEST\\zed: unknown user").count();
    let zed_before = checked(&g.stderr());
    assert_eq!(logon(port, None, &client("ADTEST", "zed", "x")).await, 401);
    g.wait_for(|| checked(&g.stderr()) == zed_before + 1, "zed's password checked again after eviction");
    let locked = g.stderr().matches("ADTEST\\bob: extranet lockout").count();
    assert_eq!(logon(port, None, &client("ADTEST", "bob", "Bob-Pass1")).await, 401);
    g.wait_for(|| g.stderr().matches("ADTEST\\bob: extranet lockout").count() == locked + 1, "bob still locked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_counted_per_client_network_as_well_as_per_address() {
    let b = Backend::start().await;
    let g = start(b.addr, "max_failures_per_user = 100\nmax_failures_per_client = 5\nipv4_prefix = 16");
    let port = g.port();
    // Five addresses of 127.9.0.0/16, one failure each: no address is at its limit.
    for i in 1..=5u8 {
        assert_eq!(logon(port, Some(Ipv4Addr::new(127, 9, 0, i)), &client("ADTEST", "bob", "guess")).await, 401);
    }
    // A sixth address of that network is refused without asking, even with a
    // right password; the next network is not.
    assert_eq!(
        logon(port, Some(Ipv4Addr::new(127, 9, 200, 200)), &client("ADTEST", "alice", "Alice-Pass1")).await,
        401
    );
    g.wait_for(
        || g.stderr().contains("extranet lockout: 5 failed logons from network 127.9.0.0/16"),
        "the network's lockout",
    );
    assert_eq!(logon(port, Some(Ipv4Addr::new(127, 10, 0, 1)), &client("ADTEST", "alice", "Alice-Pass1")).await, 200);
    // The address itself is counted too.
    for _ in 0..5 {
        assert_eq!(logon(port, Some(Ipv4Addr::new(127, 11, 0, 1)), &client("ADTEST", "bob", "guess")).await, 401);
    }
    assert_eq!(logon(port, Some(Ipv4Addr::new(127, 11, 0, 1)), &client("ADTEST", "alice", "Alice-Pass1")).await, 401);
    g.wait_for(|| g.stderr().contains("5 failed logons from 127.11.0.1,"), "the address's lockout");
}

/// A Basic site next to the NTLM one, on TLS, whose KDC is a closed port: a
/// Basic name that passes the checks gets a 503 that names it in the log.
/// [`config`] with a domain whose KDC never answers, and a TLS listener `tls`
/// with a Basic site.
fn basic_config(dir: &std::path::Path, backend: SocketAddr) -> String {
    std::fs::write(
        dir.join("krb5.conf"),
        "[libdefaults]\ndefault_realm = AD.TEST\ndns_lookup_kdc = false\n[realms]\nAD.TEST = {\n kdc = 127.0.0.1:9\n}\n",
    )
    .unwrap();
    std::fs::write(dir.join("made-up.keytab"), made_up_keytab("svc-proxy", "AD.TEST")).unwrap();
    let domain =
        Domain::new().kerberos("krb5.conf", "made-up.keytab", "svc-proxy@AD.TEST").acceptor_spn("HTTP/proxy.ad.test");
    config_with(domain, backend, "max_failures_per_user = 100")
        .listener(Listener::tls("tls", "proxy"))
        .site(Site::new("eas", "tls", &format!("http://{backend}")).auth(&["Basic"]))
        .to_string()
}

/// A keytab (MIT format 0x0502) with one made-up AES256 key for `account@realm`:
/// the loader wants a keytab that holds the service principal; no KDC ever
/// sees this key, as the KDC is a closed port.
fn made_up_keytab(account: &str, realm: &str) -> Vec<u8> {
    let mut entry = 1u16.to_be_bytes().to_vec();
    for s in [realm, account] {
        entry.extend((s.len() as u16).to_be_bytes());
        entry.extend(s.as_bytes());
    }
    entry.extend(1u32.to_be_bytes()); // KRB5_NT_PRINCIPAL
    entry.extend(0u32.to_be_bytes());
    entry.push(1);
    entry.extend(18u16.to_be_bytes());
    entry.extend(32u16.to_be_bytes());
    entry.extend([0x5a; 32]);
    let mut kt = vec![0x05, 0x02];
    kt.extend((entry.len() as i32).to_be_bytes());
    kt.extend(entry);
    kt
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_values_cannot_forge_operational_log_lines() {
    let b = Backend::start().await;
    let dir = tempfile::tempdir().unwrap();
    let ca = make_certs(dir.path(), &[("proxy", &["proxy.ad.test"])]);
    std::fs::write(dir.path().join("users.ntlm"), "ADTEST:bob:Bob-Pass1\n").unwrap();
    let text = basic_config(dir.path(), b.addr);
    let g = Gatehouse::start_in(dir, &text);
    let (port, tls_port) = (g.addr_of("public").port(), g.addr_of("tls").port());
    let forged = "2030-01-01T00:00:00.000000Z  INFO gatehouse is serving FORGED";
    let ntlm_names = [
        ("ADTEST", "x\r\nFORGED".to_string()),
        ("ADTEST", format!("\n{}", &forged[..18])),
        ("ADTEST", "bob\x1b[31mred".to_string()),
        ("ADTEST", "c1\u{85}next\u{202e}".to_string()),
        ("AD\r\nFORGED", "bob".to_string()),
        // Past the limits, with the forged line inside: the short echo is escaped too.
        ("ADTEST", format!("y\r\n{forged}\x1b[2J")),
    ];
    for (domain, user) in &ntlm_names {
        assert_eq!(logon(port, None, &client(domain, user, "x")).await, 401, "{user:?}");
    }
    let b64 = base64::engine::general_purpose::STANDARD;
    for user in ["a\r\nFORGED", "ESC\x1b[31m", "mallory\u{202e}gpj.exe", "dom\\\u{2028}FORGED"] {
        let mut c = Conn::open_tls(SocketAddr::from(([127, 0, 0, 1], tls_port)), &ca, "proxy.ad.test").await;
        let auth = b64.encode(format!("{user}:password"));
        c.send(format!("GET / HTTP/1.1\r\nHost: proxy.ad.test\r\nAuthorization: Basic {auth}\r\n\r\n").as_bytes())
            .await;
        let status = c.response().await.status;
        assert!(status == 401 || status == 503, "{user:?}: {status}");
    }
    // Two legs per NTLM logon, one request per Basic one.
    let records = 2 * ntlm_names.len() + 4;
    g.wait_for(|| g.access_log().len() >= records, "the access records");
    let raw = std::fs::read(g.path("stderr.log")).unwrap();
    let log = String::from_utf8_lossy(&raw).into_owned();
    for line in log.lines() {
        assert!(!line.starts_with("FORGED"), "forged line: {line:?}");
        assert!(!line.starts_with("2030-"), "forged line: {line:?}");
        assert!(line.starts_with("20") && line.contains('Z'), "a line that is not a record: {line:?}");
        assert!(!line.chars().any(|c| c.is_control() || ('\u{2028}'..='\u{202e}').contains(&c)), "{line:?}");
    }
    assert!(!raw.contains(&0x1b), "an ESC byte reached the log");
    assert!(!raw.contains(&b'\r'), "a CR reached the log");
    // Still says what happened, with the name escaped.
    assert!(log.contains("ADTEST\\x\\r\\nFORGED: unknown user"), "{log}");
    assert!(log.contains("ADTEST\\bob\\x1b[31mred: unknown user"), "{log}");
    assert!(log.contains("ADTEST\\c1\\u{85}next\\u{202e}: unknown user"), "{log}");
    assert!(log.contains("AD\\r\\nFORGED\\bob"), "{log}");
    assert!(log.contains("account name of"), "{log}");
    assert!(log.contains("unprintable user name"), "{log}");
    assert!(log.contains("mallory\\u{202e}gpj.exe"), "{log}");
    // The access log: one JSON record per line, each request once.
    let text = std::fs::read_to_string(g.path("access.log")).unwrap();
    assert!(text.lines().all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok()), "{text}");
    assert!(text.lines().count() >= records, "{text}");
}
