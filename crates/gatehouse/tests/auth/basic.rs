//! Basic over TLS against the lab domain: the password checked with the KDC
//! (and the answer verified with gatehouse's key), the extranet lockout, the
//! short password cache, and KCD to the Kerberos-only backend with the
//! password never forwarded.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::common::*;
use base64::Engine;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// gatehouse on a TLS listener for proxy.ad.test with an ActiveSync-like site
/// (Basic, KCD to the lab's backend) and a lockout limit of two; `sites` come after.
fn start(env: &LabEnv, sites: &[Site]) -> (Gatehouse, PathBuf, u16) {
    let dir = tempfile::tempdir().unwrap();
    let ca = make_certs(dir.path(), &[("proxy", &["proxy.ad.test"])]);
    let mut config = Config::new()
        .domain(Domain::lab(env).acceptor_spn("HTTP/proxy.ad.test"))
        .table("lockout", "max_failures_per_user = 2")
        .listener(Listener::tls("public", "proxy"))
        .site(Site::lab_kcd("activesync", "public", env).auth(&["Basic"]));
    for site in sites {
        config = config.site(site.clone());
    }
    let g = Gatehouse::start_in(dir, &config.to_string());
    let port = g.port();
    (g, ca, port)
}

fn basic(user: &str, password: &str) -> String {
    format!(
        "GET /Microsoft-Server-ActiveSync HTTP/1.1\r\nHost: proxy.ad.test\r\nAuthorization: Basic {}\r\n\r\n",
        B64.encode(format!("{user}:{password}"))
    )
}

async fn ask(ca: &std::path::Path, port: u16, raw: &str) -> Resp {
    let mut c = Conn::open_tls(listen(port), ca, "proxy.ad.test").await;
    c.send(raw.as_bytes()).await;
    c.response().await
}

fn counters(mut g: Gatehouse) -> String {
    g.signal("-TERM");
    g.wait_exit(Duration::from_secs(10));
    let log = g.stderr();
    log.lines().rev().find(|l| l.contains("kerberos counters")).unwrap_or_else(|| panic!("no counters:\n{log}")).into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_users_reach_the_kerberos_backend_as_themselves() {
    let Some(env) = lab_env() else { return };
    let (g, ca, port) = start(&env, &[]);
    // Offered with a realm.
    let r = ask(&ca, port, "GET / HTTP/1.1\r\nHost: proxy.ad.test\r\n\r\n").await;
    assert_eq!(r.status, 401);
    assert_eq!(r.header("www-authenticate"), Some("Basic realm=\"Domain account\", charset=\"UTF-8\""));
    // curl, as a script or a phone would.
    let out = Command::new("curl")
        .args(["-sS", "--basic", "-u", "alice:Alice-Pass1", "--cacert"])
        .arg(&ca)
        .args(["--resolve", &format!("proxy.ad.test:{port}:127.0.0.1"), &format!("https://proxy.ad.test:{port}/")])
        .output()
        .unwrap();
    let body = String::from_utf8_lossy(&out.stdout);
    assert!(body.contains("REMOTE_USER=alice@AD.TEST"), "{body}\n{}", g.stderr());
    // The down-level form, many times: one KDC check, then the remembered password.
    for _ in 0..5 {
        let r = ask(&ca, port, &basic("ADTEST\\bob", "Bob-Pass1")).await;
        assert_eq!(r.status, 200, "{}", g.stderr());
        assert!(r.text().contains("REMOTE_USER=bob@AD.TEST"), "{}", r.text());
    }
    g.wait_for(
        || g.access_log().iter().any(|l| l["user"] == "ADTEST\\bob" && l["auth"] == "Basic"),
        "bob's Basic requests in the access log",
    );
    let line = counters(g);
    // alice once, bob once; and their own tickets were the delegation evidence.
    assert!(line.contains("password_checks=2") && line.contains("s4u2self=0"), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_passwords_lockout_and_bad_credentials() {
    let Some(env) = lab_env() else { return };
    let (g, ca, port) = start(&env, &[]);
    // Right, then wrong: the remembered password does not let the wrong one in.
    assert_eq!(ask(&ca, port, &basic("carol", "Carol-Pass1")).await.status, 200, "{}", g.stderr());
    assert_eq!(ask(&ca, port, &basic("carol", "Carol-Pass2")).await.status, 401);
    assert!(g.stderr().contains("carol: Basic logon refused"), "{}", g.stderr());
    // A second failure reaches the limit (2): now even the right password is not
    // sent to the domain.
    assert_eq!(ask(&ca, port, &basic("carol", "Guess-Pass3")).await.status, 401);
    assert_eq!(ask(&ca, port, &basic("carol", "Carol-Pass1")).await.status, 401);
    assert!(g.stderr().contains("carol: extranet lockout"), "{}", g.stderr());
    // Malformed credentials.
    let no_colon =
        format!("GET / HTTP/1.1\r\nHost: proxy.ad.test\r\nAuthorization: Basic {}\r\n\r\n", B64.encode("alice"));
    assert_eq!(ask(&ca, port, &no_colon).await.status, 401);
    let not_b64 = "GET / HTTP/1.1\r\nHost: proxy.ad.test\r\nAuthorization: Basic %%%\r\n\r\n";
    assert_eq!(ask(&ca, port, not_b64).await.status, 401);
    assert_eq!(ask(&ca, port, &basic("OTHER\\alice", "Alice-Pass1")).await.status, 401);
    let log = g.stderr();
    for cause in
        ["not UTF-8 `user:password`", "Authorization is not base64", "OTHER\\alice: not a user of domain ADTEST"]
    {
        assert!(log.contains(cause), "no log line names `{cause}`:\n{log}");
    }
    // The password never appears in the logs.
    assert!(!log.contains("Carol-Pass") && !log.contains("Guess-Pass"), "{log}");
}

/// The password goes to the backend only where a site says `delegation =
/// "basic"` (after gatehouse checked it); elsewhere the header is removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_password_is_forwarded_only_when_the_site_says_so() {
    let Some(env) = lab_env() else { return };
    let backend = testkit::Backend::start().await;
    let origin = format!("http://{}", backend.addr);
    let sites = [
        Site::new("forwarding", "public", &origin).path_prefix("/legacy").auth(&["Basic"]).delegation("basic"),
        Site::new("plain-basic", "public", &origin).path_prefix("/other").auth(&["Basic"]),
    ];
    let (g, ca, port) = start(&env, &sites);
    let r = ask(&ca, port, &basic("bob", "Bob-Pass1").replace("/Microsoft-Server-ActiveSync", "/legacy/x")).await;
    assert_eq!(r.status, 200, "{}", g.stderr());
    let r = ask(&ca, port, &basic("bob", "Bob-Pass1").replace("/Microsoft-Server-ActiveSync", "/other/x")).await;
    assert_eq!(r.status, 200, "{}", g.stderr());
    let seen = backend.seen();
    let expected = format!("Basic {}", B64.encode("bob:Bob-Pass1"));
    let legacy = seen.iter().find(|s| s.path == "/legacy/x").expect("the forwarding site's request");
    let other = seen.iter().find(|s| s.path == "/other/x").expect("the other site's request");
    assert_eq!(legacy.header("authorization"), Some(expected.as_str()));
    assert_eq!(other.header("authorization"), None);
}
