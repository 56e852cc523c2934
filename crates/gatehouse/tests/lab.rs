//! Against the lab domain (`lab/lab.sh`): a real Samba AD DC checks the
//! passwords through winbind, and three independent NTLM clients (curl,
//! pyspnego, Samba's ntlm_auth) sign in through gatehouse.
//!
//! Needs the lab running: without it these tests fail, unless
//! GATEHOUSE_LAB_SKIP=1 says to skip them (see `testkit::lab`).

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;

use common::*;
use ntlm::client::Client;
use testkit::Backend;

fn python() -> String {
    std::env::var("GATEHOUSE_PYTHON").unwrap_or_else(|_| "python3".into())
}

fn client_script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/clients").join(name)
}

/// gatehouse with winbind-checked NTLM sites on a TLS and a plain listener.
/// Returns gatehouse, the CA file, the TLS port and the plain port.
fn start(env: &LabEnv, backend: SocketAddr, binding: &str, max_failures: u32) -> (Gatehouse, PathBuf, u16, u16) {
    let dir = tempfile::tempdir().unwrap();
    let ca = make_certs(dir.path(), &[("mail", &["mail.ad.test"])]);
    let ntlm_site = |name: &str, listener: &str| {
        Site::new(name, listener, &format!("http://{backend}")).auth(&["NTLM"]).identity_header("X-Remote-User")
    };
    let config = Config::new()
        .domain(Domain::new().acceptor_spn("HTTP/proxy.ad.test"))
        .accounts(Accounts::winbind(env))
        .table("lockout", &format!("max_failures_per_user = {max_failures}"))
        .listener(Listener::tls("public", "mail").channel_binding(binding))
        .listener(Listener::plain("plain"))
        .site(ntlm_site("ews", "public"))
        .site(ntlm_site("ews-plain", "plain"));
    let g = Gatehouse::start_in(dir, &config.to_string());
    let (port, plain) = (g.addr_of("public").port(), g.addr_of("plain").port());
    (g, ca, port, plain)
}

fn curl_ntlm(ca: &PathBuf, port: u16, user: &str) -> String {
    let out = Command::new("curl")
        .args(["-sS", "--ntlm", "-u", user, "--cacert"])
        .arg(ca)
        .args(["--resolve", &format!("mail.ad.test:{port}:127.0.0.1"), "-w", "\n%{http_code}"])
        .arg(format!("https://mail.ad.test:{port}/ews/Exchange.asmx"))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_through_winbind_right_and_wrong_password() {
    let Some(env) = lab_env() else { return };
    let b = Backend::start().await;
    let (g, ca, port, _) = start(&env, b.addr, "when-supported", 5);
    let ok = curl_ntlm(&ca, port, "ADTEST\\alice:Alice-Pass1");
    assert!(ok.ends_with("\n200"), "{ok}\n{}", g.stderr());
    assert!(ok.contains(r#""x-remote-user":"ADTEST\\alice""#), "{ok}");
    let bad = curl_ntlm(&ca, port, "ADTEST\\alice:Wrong-Pass1");
    assert!(bad.ends_with("\n401"), "{bad}");
    assert!(g.stderr().contains("ADTEST\\alice"), "{}", g.stderr());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pyspnego_with_channel_bindings() {
    let Some(env) = lab_env() else { return };
    let b = Backend::start().await;
    let run = |ca: &PathBuf, port: u16, cbt: &str| {
        let out = Command::new(python())
            .arg(client_script("pyspnego_ntlm.py"))
            .arg(format!("https://127.0.0.1:{port}/ews/Exchange.asmx"))
            .args(["ADTEST\\bob", "Bob-Pass1"])
            .arg(ca)
            .args(["mail.ad.test", "--cbt", cbt])
            .output()
            .unwrap();
        assert!(out.status.success(), "pyspnego client failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let (g, ca, port, _) = start(&env, b.addr, "required", 50);
    let right = run(&ca, port, "right");
    assert!(right.starts_with("200"), "right binding refused: {right}\n{}", g.stderr());
    assert!(right.contains(r#""x-remote-user":"ADTEST\\bob""#), "{right}");
    assert!(run(&ca, port, "wrong").starts_with("401"), "wrong binding accepted under required");
    assert!(run(&ca, port, "none").starts_with("401"), "missing binding accepted under required");
    let (_g2, ca2, port2, _) = start(&env, b.addr, "when-supported", 50);
    assert!(run(&ca2, port2, "none").starts_with("200"), "missing binding refused under when-supported");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn samba_ntlm_auth_as_the_client() {
    let Some(env) = lab_env() else { return };
    let b = Backend::start().await;
    let (g, _ca, _, plain) = start(&env, b.addr, "when-supported", 5);
    let out = Command::new(python())
        .arg(client_script("ntlm_auth_client.py"))
        .args(["127.0.0.1", &plain.to_string(), "/ews/Exchange.asmx", "bob", "ADTEST", "Bob-Pass1", &env["SMB_CONF"]])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("200"), "{text}\n{}\n{}", String::from_utf8_lossy(&out.stderr), g.stderr());
    assert!(text.contains(r#""x-remote-user":"ADTEST\\bob""#), "{text}");
}

fn bad_password_count(env: &LabEnv, user: &str) -> u32 {
    let out = Command::new("samba-tool")
        .args(["user", "show", user, "-s", &env["SMB_CONF"], "--attributes=badPwdCount"])
        .output()
        .expect("samba-tool");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("badPwdCount:"))
        .map_or(0, |v| v.trim().parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_domain_controller_sees_at_most_the_lockout_limit() {
    let Some(env) = lab_env() else { return };
    let b = Backend::start().await;
    let (g, _ca, _, plain) = start(&env, b.addr, "when-supported", 3);
    // Start from a clean count: unlock carol, then one good logon resets
    // badPwdCount, as in AD (earlier runs of this test count too).
    let smb = &env["SMB_CONF"];
    let _ = Command::new("samba-tool").args(["user", "unlock", "carol", "-s", smb]).output();
    let reset = Command::new("ntlm_auth")
        .args([&format!("--configfile={smb}"), "--username=carol", "--domain=ADTEST", "--password=Carol-Pass1"])
        .output()
        .unwrap();
    assert!(reset.status.success(), "carol cannot log on: {}", String::from_utf8_lossy(&reset.stdout));
    let before = bad_password_count(&env, "carol");
    assert_eq!(before, 0);
    for _ in 0..6 {
        let mut c = Conn::open(listen(plain)).await;
        let r =
            handshake(&mut c, &Client::new("carol", "Guess-Pass9"), "GET /ews HTTP/1.1\r\nHost: a", b"", |_| {}).await;
        assert_eq!(r.status, 401);
    }
    let after = bad_password_count(&env, "carol");
    assert_eq!(after - before, 3, "the DC saw {} bad passwords for 6 attempts", after - before);
    assert!(g.stderr().contains("extranet lockout"));
    assert!(b.seen().is_empty());
}

/// gatehouse signing users in with NTLM (winbind) and reaching the lab's
/// Kerberos-only Apache backend as them (KCD). Returns gatehouse and its port.
fn start_kcd(env: &LabEnv, spn: &str, token: &str) -> (Gatehouse, u16) {
    start_kcd_with(env, spn, token, "always", "http://127.0.0.1:18080")
}

/// [`kcd_config`] with passwords checked by the lab's DC through winbind.
fn winbind_kcd_config(env: &LabEnv, site: Site) -> Config {
    kcd_config(env, Accounts::winbind(env), site)
}

fn start_kcd_with(env: &LabEnv, spn: &str, token: &str, send: &str, backend: &str) -> (Gatehouse, u16) {
    let g = Gatehouse::start(&winbind_kcd_config(env, kcd_site(backend, spn, token, send)).to_string());
    let port = g.port();
    (g, port)
}

async fn sign_in(port: u16, user: &'static str, password: &'static str) -> (Conn, Resp) {
    let mut c = Conn::open(listen(port)).await;
    let r = handshake(&mut c, &Client::new(user, password), "GET /whoami HTTP/1.1\r\nHost: mail.ad.test", b"", |_| {})
        .await;
    (c, r)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ntlm_users_reach_the_kerberos_backend_as_themselves() {
    let Some(env) = lab_env() else { return };
    let (g, port) = start_kcd(&env, "HTTP/{backend_host}", "spnego");
    // {backend_host} is 127.0.0.1 here, which is no SPN: the KDC refuses, 502.
    let (_, r) = sign_in(port, "bob", "Bob-Pass1").await;
    assert_eq!(r.status, 502, "{}", r.text());
    assert!(g.stderr().contains("Kerberos delegation for bob@AD.TEST to HTTP/127.0.0.1"), "{}", g.stderr());
    drop(g);

    let (g, port) = start_kcd(&env, "HTTP/backend.ad.test", "spnego");
    let users = [("alice", "Alice-Pass1"), ("bob", "Bob-Pass1")];
    let mut conns = Vec::new();
    for i in 0..4 {
        let (user, password) = users[i % 2];
        let (c, r) = sign_in(port, user, password).await;
        assert_eq!(r.status, 200, "{}\n{}", r.text(), g.stderr());
        assert!(r.text().contains(&format!("REMOTE_USER={user}@AD.TEST")), "{}", r.text());
        conns.push((user, c));
    }
    // Interleaved requests on authenticated connections: each reaches the
    // Kerberos-only backend as its own user, never as another.
    for round in 0..5 {
        for (user, c) in conns.iter_mut() {
            c.send(format!("GET /r{round} HTTP/1.1\r\nHost: mail.ad.test\r\n\r\n").as_bytes()).await;
            let r = c.response().await;
            assert_eq!(r.status, 200);
            assert!(r.text().contains(&format!("REMOTE_USER={user}@AD.TEST")), "round {round}: {}", r.text());
        }
    }
    // curl over TLS, with the raw Kerberos token variant.
    drop(g);
    let dir = tempfile::tempdir().unwrap();
    let ca = make_certs(dir.path(), &[("mail", &["mail.ad.test"])]);
    let site = kcd_site(&env["LAB_BACKEND"], "HTTP/backend.ad.test", "kerberos", "always");
    let config = Config::new()
        .domain(Domain::lab(&env))
        .accounts(Accounts::winbind(&env))
        .listener(Listener::tls("plain", "mail"))
        .site(site);
    let g = Gatehouse::start_in(dir, &config.to_string());
    let tls_port = g.port();
    for (user, password) in [("bob", "Bob-Pass1"), ("alice", "Alice-Pass1")] {
        let out = Command::new("curl")
            .args(["-sS", "--ntlm", "-u", &format!("ADTEST\\{user}:{password}"), "--cacert"])
            .arg(&ca)
            .args([
                "--resolve",
                &format!("mail.ad.test:{tls_port}:127.0.0.1"),
                &format!("https://mail.ad.test:{tls_port}/"),
            ])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains(&format!("REMOTE_USER={user}@AD.TEST")), "{text}\n{}", g.stderr());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_spn_outside_the_delegation_list_is_refused_with_the_cause() {
    let Some(env) = lab_env() else { return };
    let (g, port) = start_kcd(&env, "HTTP/proxy.ad.test", "spnego");
    let (_, r) = sign_in(port, "alice", "Alice-Pass1").await;
    assert_eq!(r.status, 502);
    let log = g.stderr();
    assert!(log.contains("S4U2Proxy") && log.contains("KDC can't fulfill requested option"), "{log}");
    // ...and says what it means and how to fix it.
    assert!(log.contains("KDC_ERR_BADOPTION") && log.contains("msDS-AllowedToDelegateTo"), "{log}");
    assert!(log.contains("samba-tool delegation add-service svc-proxy HTTP/proxy.ad.test"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_on_401_and_signing_in_again_on_a_fresh_connection() {
    let Some(env) = lab_env() else { return };
    // send_token = "on-401": the Kerberos-only backend asks, gatehouse answers.
    let (g, port) = start_kcd_with(&env, "HTTP/backend.ad.test", "spnego", "on-401", "http://127.0.0.1:18080");
    let (_, r) = sign_in(port, "alice", "Alice-Pass1").await;
    assert_eq!(r.status, 200, "{}\n{}", r.text(), g.stderr());
    assert!(r.text().contains("REMOTE_USER=alice@AD.TEST"), "{}", r.text());
    assert!(g.stderr().contains("backend answered 401; signing in again"), "{}", g.stderr());

    // A backend that answers 401 on an authenticated connection: gatehouse signs
    // in again once, on a fresh connection, then gives up with a 502 that says why.
    let b = Backend::start().await;
    let (g, port) = start_kcd_with(&env, "HTTP/backend.ad.test", "spnego", "always", &format!("http://{}", b.addr));
    let (mut c, r) = sign_in(port, "bob", "Bob-Pass1").await;
    assert_eq!(r.status, 200);
    assert!(b.seen()[0].header("authorization").is_some_and(|a| a.starts_with("Negotiate ")), "{:?}", b.seen());
    assert_eq!(b.connections(), 1);
    c.send(b"GET /status/401 HTTP/1.1\r\nHost: mail.ad.test\r\n\r\n").await;
    let r = c.response().await;
    assert_eq!(r.status, 502, "{}", r.text());
    let tries = b.seen().iter().filter(|s| s.path == "/status/401").count();
    assert_eq!(tries, 2, "one retry, no loop");
    assert_eq!(b.connections(), 2, "the retry went on a fresh connection");
    assert!(g.stderr().contains("rejected the Kerberos ticket"), "{}", g.stderr());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_token_modes_on_the_wire() {
    let Some(env) = lab_env() else { return };
    // What the backend receives, request by request, on one client connection
    // (and so one pooled backend connection).
    let seen_tokens =
        |b: &Backend| -> Vec<bool> { b.seen().iter().map(|s| s.header("authorization").is_some()).collect() };
    for (mode, expected) in [
        ("always", vec![true, false, false]),
        ("every-request", vec![true, true, true]),
        ("on-401", vec![false, false, false]),
    ] {
        let b = Backend::start().await;
        let (_g, port) = start_kcd_with(&env, "HTTP/backend.ad.test", "spnego", mode, &format!("http://{}", b.addr));
        let (mut c, r) = sign_in(port, "bob", "Bob-Pass1").await;
        assert_eq!(r.status, 200);
        for i in 0..2 {
            c.send(format!("GET /again/{i} HTTP/1.1\r\nHost: mail.ad.test\r\n\r\n").as_bytes()).await;
            assert_eq!(c.response().await.status, 200);
        }
        assert_eq!(seen_tokens(&b), expected, "send_token = {mode}");
        assert_eq!(b.connections(), 1, "send_token = {mode}: one pooled backend connection");
    }
}

/// A UPN with an empty domain field, as Windows SSPI and gss-ntlmssp send it
/// (the interop captures 01, 02 and 05): winbind is asked with the names as
/// sent (the client's proof covers them) and the DC resolves the UPN to its
/// account. The user keeps the UPN, since that account need not be the one
/// named like its user part, and delegation asks the KDC for it as an
/// enterprise name, which resolves it the same way: the backend sees alice.
/// Only successful logons: the lab's counts stay as they are.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upn_with_an_empty_domain_reaches_its_account() {
    let Some(env) = lab_env() else { return };
    let site = kcd_site(&env["LAB_BACKEND"], "HTTP/backend.ad.test", "spnego", "every-request");
    let g = Gatehouse::start(&winbind_kcd_config(&env, site).to_string());
    let port = g.port();
    let sign_in_as = |upn: &'static str, password: &'static str| async move {
        let mut client = Client::new(upn, password);
        client.domain = "";
        let mut c = Conn::open(listen(port)).await;
        handshake(&mut c, &client, "GET /whoami HTTP/1.1\r\nHost: mail.ad.test", b"", |_| {}).await
    };
    let r = sign_in_as("alice@AD.TEST", "Alice-Pass1").await;
    assert_eq!(r.status, 200, "{}\n{}", r.text(), g.stderr());
    assert!(r.text().contains("REMOTE_USER=alice\\@AD.TEST@AD.TEST"), "{}", r.text());
    // A limit of Samba's winbind (4.17), not of gatehouse: it routes a logon
    // by its domain, and with none it takes a UPN's suffix for one; a suffix
    // that is no domain's name (carol's corp.example) fails there, before any
    // password is checked (badPwdCount does not move). A client sending
    // ADTEST\carol signs in.
    let r = sign_in_as("carol.jones@corp.example", "Carol-Pass1").await;
    assert_eq!(r.status, 401);
    assert!(g.stderr().contains("carol.jones@corp.example: {Not Enough Quota}"), "{}", g.stderr());
}

/// `delegation_user = "upn"`: carol signs in as ADTEST\carol; the lab gave her
/// the UPN carol.jones@corp.example, which gatehouse reads from the domain and
/// the backend's ticket carries. alice, whose UPN is the default, is unchanged
/// in substance (alice@ad.test).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delegation_by_upn() {
    let Some(env) = lab_env() else { return };
    let site = kcd_site(&env["LAB_BACKEND"], "HTTP/backend.ad.test", "spnego", "every-request");
    let g = Gatehouse::start(&winbind_kcd_config(&env, site.set_str("delegation_user", "upn")).to_string());
    let port = g.port();
    let (_, r) = sign_in(port, "carol", "Carol-Pass1").await;
    assert_eq!(r.status, 200, "{}\n{}", r.text(), g.stderr());
    assert!(r.text().contains("REMOTE_USER=carol.jones\\@corp.example@AD.TEST"), "{}", r.text());
    let (_, r) = sign_in(port, "alice", "Alice-Pass1").await;
    assert!(r.text().contains("REMOTE_USER=alice\\@ad.test@AD.TEST"), "{}", r.text());
}
