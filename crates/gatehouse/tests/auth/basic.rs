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

/// TLS listener `public` on `port` and the exchange preset to `backend`, with
/// `sections` (`[domain]`, `[accounts]`) before them; no keytab anywhere.
fn exchange_without_keytab(port: u16, backend: &str, sections: &str) -> String {
    format!(
        r#"
{sections}

[lockout]
max_failures_per_user = 2

[[listener]]
name = "public"
bind = "127.0.0.1:{port}"
tls = {{ cert = "proxy.pem", key = "proxy.key" }}

[[site]]
name = "exchange"
preset = "exchange"
listener = "public"
hosts = ["proxy.ad.test"]
backend = "{backend}"
identity_header = "X-Remote-User"
"#
    )
}

/// Issue 11, defect 3: `preset = "exchange"` with NTLM accounts from a file and
/// no keytab. `gatehouse check` passes, and ActiveSync's Basic passwords are
/// checked against the file's NT hashes (with the lockout and the cache of
/// the KDC path); the password never reaches the backend.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_from_a_users_file_without_a_keytab() {
    let backend = testkit::Backend::start().await;
    let dir = tempfile::tempdir().unwrap();
    let ca = make_certs(dir.path(), &[("proxy", &["proxy.ad.test"])]);
    std::fs::write(dir.path().join("users.ntlm"), "ADTEST:bob:Bob-Pass1\nADTEST:carol:Carol-Pass1\n").unwrap();
    let port = 0u16;
    let sections = "[domain]\nrealm = \"AD.TEST\"\nnetbios_name = \"ADTEST\"\n\n[accounts]\nsource = \"file\"\nfile = \"users.ntlm\"\n";
    let config = exchange_without_keytab(port, &format!("http://{}", backend.addr), sections);

    // `gatehouse check`, as a new user runs it first.
    let file = dir.path().join("check.toml");
    std::fs::write(&file, &config).unwrap();
    let check = Command::new(env!("CARGO_BIN_EXE_gatehouse")).args(["check", "-c"]).arg(&file).output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&check.stdout), String::from_utf8_lossy(&check.stderr));
    assert!(check.status.success(), "{said}");
    assert!(said.contains("site exchange/activesync") && said.contains("Basic by the file"), "{said}");

    let g = Gatehouse::start_in(dir, &config);
    let port = g.port();
    let r = ask(&ca, port, "GET /Microsoft-Server-ActiveSync HTTP/1.1\r\nHost: proxy.ad.test\r\n\r\n").await;
    assert_eq!(r.status, 401);
    assert_eq!(r.header("www-authenticate"), Some("Basic realm=\"Domain account\", charset=\"UTF-8\""));
    for typed in ["bob", "ADTEST\\bob", "bob@ad.test", "adtest\\BOB"] {
        let r = ask(&ca, port, &basic(typed, "Bob-Pass1")).await;
        assert_eq!(r.status, 200, "{typed}: {}", g.stderr());
    }
    let seen = backend.seen();
    assert_eq!(seen.len(), 4);
    for s in &seen {
        assert_eq!(s.header("x-remote-user").map(|u| u.to_ascii_lowercase()).as_deref(), Some("adtest\\bob"));
        assert_eq!(s.header("authorization"), None, "the password never goes on");
    }
    // Wrong password, wrong case, unknown user, another domain: 401, each
    // with its cause in the log and the password nowhere.
    assert_eq!(ask(&ca, port, &basic("bob", "bob-pass1")).await.status, 401);
    assert_eq!(ask(&ca, port, &basic("nobody", "Bob-Pass1")).await.status, 401);
    assert_eq!(ask(&ca, port, &basic("OTHER\\bob", "Bob-Pass1")).await.status, 401);
    // Right, then wrong twice: the lockout (limit 2) stops even the right one.
    assert_eq!(ask(&ca, port, &basic("carol", "Carol-Pass1")).await.status, 200, "{}", g.stderr());
    assert_eq!(ask(&ca, port, &basic("carol", "Carol-Pass2")).await.status, 401);
    assert_eq!(ask(&ca, port, &basic("carol", "Carol-Pass3")).await.status, 401);
    assert_eq!(ask(&ca, port, &basic("carol", "Carol-Pass1")).await.status, 401);
    assert_eq!(backend.seen().len(), 5, "no refused request reached the backend");
    let log = g.stderr();
    for cause in [
        "bob: Basic logon refused: wrong password",
        "nobody: Basic logon refused: unknown user",
        "OTHER\\bob: not a user of domain ADTEST",
        "carol: extranet lockout",
    ] {
        assert!(log.contains(cause), "no log line names `{cause}`:\n{log}");
    }
    assert!(!log.contains("Pass1") && !log.contains("Pass2") && !log.contains("Pass3"), "{log}");
}

/// Without [accounts] and without a keytab, `gatehouse check` says which site
/// offers Basic and which keys would let it check passwords.
#[test]
fn basic_with_nothing_to_check_it_is_refused_by_check() {
    let dir = tempfile::tempdir().unwrap();
    make_certs(dir.path(), &[("proxy", &["proxy.ad.test"])]);
    let config =
        exchange_without_keytab(0, "http://127.0.0.1:9", "[domain]\nrealm = \"AD.TEST\"\nnetbios_name = \"ADTEST\"\n");
    let file = dir.path().join("g.toml");
    std::fs::write(&file, &config).unwrap();
    let check = Command::new(env!("CARGO_BIN_EXE_gatehouse")).args(["check", "-c"]).arg(&file).output().unwrap();
    let said = String::from_utf8_lossy(&check.stderr);
    assert!(!check.status.success());
    assert!(said.contains("site `exchange/activesync` offers Basic"), "{said}");
    assert!(said.contains("[accounts]") && said.contains("[domain] keytab"), "{said}");
}

/// Basic checked by the lab's domain through winbind (no acceptor SPN, so not
/// the KDC), then KCD to the Kerberos-only backend through S4U2Self, as for an
/// NTLM user.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_through_winbind_then_kcd_by_s4u2self() {
    let Some(env) = lab_env() else { return };
    let dir = tempfile::tempdir().unwrap();
    let ca = make_certs(dir.path(), &[("proxy", &["proxy.ad.test"])]);
    let port = 0u16;
    let config = format!(
        r#"
[domain]
realm = "AD.TEST"
netbios_name = "ADTEST"
krb5_conf = "{krb5}"
keytab = "{keytab}"
service_principal = "svc-proxy@AD.TEST"

[accounts]
source = "winbind"
smb_conf = "{smb_conf}"

[lockout]
max_failures_per_user = 2

[[listener]]
name = "public"
bind = "127.0.0.1:{port}"
tls = {{ cert = "proxy.pem", key = "proxy.key" }}

[[site]]
name = "activesync"
listener = "public"
backend = "http://127.0.0.1:18080"
host_header = "backend.ad.test"
auth = ["Basic"]
delegation = "kcd"
backend_spn = "HTTP/backend.ad.test"
"#,
        krb5 = env["KRB5_CONFIG"],
        keytab = env["LAB_PROXY_KEYTAB"],
        smb_conf = env["SMB_CONF"],
    );
    let g = Gatehouse::start_in(dir, &config);
    let port = g.port();
    for typed in ["alice", "ADTEST\\alice", "alice@ad.test"] {
        let r = ask(&ca, port, &basic(typed, "Alice-Pass1")).await;
        assert_eq!(r.status, 200, "{typed}: {}", g.stderr());
        assert!(r.text().contains("REMOTE_USER=alice@AD.TEST"), "{}", r.text());
    }
    // A name with a space and a newline cannot split the helper's request.
    assert_eq!(ask(&ca, port, &basic("bob", "x\nalice Alice-Pass1")).await.status, 401);
    assert_eq!(ask(&ca, port, &basic("carol", "Carol-Pass2")).await.status, 401);
    assert_eq!(ask(&ca, port, &basic("nosuchuser9", "Whatever-1")).await.status, 401);
    let log = g.stderr();
    assert!(log.contains("carol: Basic logon refused: NT_STATUS_WRONG_PASSWORD"), "{log}");
    assert!(log.contains("nosuchuser9: Basic logon refused"), "{log}");
    assert!(log.contains("bob: Basic logon refused"), "{log}");
    assert!(!log.contains("Carol-Pass") && !log.contains("Alice-Pass"), "{log}");
    let line = counters(g);
    // The KDC never saw a password: the tickets came by S4U2Self.
    assert!(line.contains("password_checks=0") && !line.contains("s4u2self=0"), "{line}");
}
