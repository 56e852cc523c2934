//! Tests that change the lab domain (stop its DC, switch delegation settings):
//! their own test binary, because every other lab test needs the domain as the
//! lab made it (cargo runs test binaries one after another), and one at a time
//! within it.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use ntlm::client::Client;

fn lab_sh(arg: &str) {
    let script = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../lab/lab.sh");
    let out = Command::new("bash").arg(script).arg(arg).output().unwrap();
    assert!(
        out.status.success(),
        "lab.sh {arg}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn request_as(c: &mut Conn, client: Option<&Client>) -> Resp {
    match client {
        None => {
            c.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").await;
            c.response().await
        }
        Some(client) => handshake(c, client, "GET / HTTP/1.1\r\nHost: a", b"", |_| {}).await,
    }
}

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Passwords from a file, so that a KDC outage is the KDC's alone (winbind
/// would fail first and hide what delegation does).
fn file_kcd_config(env: &LabEnv) -> String {
    let site = kcd_site(&env["LAB_BACKEND"], "HTTP/backend.ad.test", "spnego", "always");
    kcd_config(env, Accounts::file("users.ntlm"), site).to_string()
}

/// Turns protocol transition back on however the test ends.
struct RestoreProtocolTransition(String);

impl Drop for RestoreProtocolTransition {
    fn drop(&mut self) {
        let _ = Command::new("samba-tool")
            .args(["delegation", "for-any-protocol", "svc-proxy", "on", "-s", &self.0])
            .output();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_protocol_transition_the_cause_is_logged_and_doctor_prints_the_fix() {
    let _serial = SERIAL.lock().await;
    let Some(env) = lab_env() else { return };
    let smb = env["SMB_CONF"].clone();
    let off = Command::new("samba-tool")
        .args(["delegation", "for-any-protocol", "svc-proxy", "off", "-s", &smb])
        .output()
        .unwrap();
    assert!(off.status.success());
    let restore = RestoreProtocolTransition(smb);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("users.ntlm"), "ADTEST:carol:Carol-Pass1\n").unwrap();
    let g = Gatehouse::start_in(dir, &file_kcd_config(&env));
    let mut c = Conn::open(g.addr()).await;
    let r = request_as(&mut c, Some(&Client::new("carol", "Carol-Pass1"))).await;
    assert_eq!(r.status, 502, "{}", r.text());
    let log = g.stderr();
    assert!(log.contains("KDC_ERR_BADOPTION") && log.contains("protocol transition"), "{log}");
    assert!(log.contains("TrustedToAuthForDelegation"), "{log}");
    // doctor says the same, with both fixes, and fails.
    let doctor = |user: &str| {
        Command::new(env!("CARGO_BIN_EXE_gatehouse"))
            .args(["doctor", "-c"])
            .arg(&g.config)
            .args(["--user", user])
            .output()
            .unwrap()
    };
    let out = doctor("carol");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("FAIL  site kerberos-backend")
            && text.contains("samba-tool> samba-tool delegation for-any-protocol svc-proxy on"),
        "{text}"
    );
    assert!(
        text.contains("PowerShell> Set-ADAccountControl -Identity svc-proxy -TrustedToAuthForDelegation $true"),
        "{text}"
    );
    drop(restore);
    // With protocol transition back, doctor passes every step.
    let out = doctor("carol");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("PASS  site kerberos-backend: the backend http://127.0.0.1:18080 accepted the ticket (200)"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_users_keep_working_while_the_kdc_is_down_and_new_ones_recover() {
    let _serial = SERIAL.lock().await;
    let Some(env) = lab_env() else { return };
    let dir = tempfile::tempdir().unwrap();
    // Passwords from a file, so that the outage is the KDC's alone (winbind would
    // fail first and hide what delegation does).
    std::fs::write(dir.path().join("users.ntlm"), "ADTEST:alice:Alice-Pass1\nADTEST:bob:Bob-Pass1\n").unwrap();
    let g = Gatehouse::start_in(dir, &file_kcd_config(&env));
    let addr = g.addr();
    let alice = Client::new("alice", "Alice-Pass1");
    let bob = Client::new("bob", "Bob-Pass1");

    let mut a = Conn::open(addr).await;
    let r = request_as(&mut a, Some(&alice)).await;
    assert!(r.text().contains("REMOTE_USER=alice@AD.TEST"), "{}\n{}", r.text(), g.stderr());

    lab_sh("kdc-stop");
    let outcome = async {
        // alice's delegated credential is cached: she keeps working, on her
        // connection and on a new one.
        let r = request_as(&mut a, None).await;
        assert!(
            r.text().contains("REMOTE_USER=alice@AD.TEST"),
            "cached user failed while the KDC was down: {}",
            r.text()
        );
        let mut a2 = Conn::open(addr).await;
        let r = request_as(&mut a2, Some(&alice)).await;
        assert!(r.text().contains("REMOTE_USER=alice@AD.TEST"), "{}", r.text());
        // bob is new: no ticket can be had, and the page says why.
        let mut b = Conn::open(addr).await;
        let r = request_as(&mut b, Some(&bob)).await;
        assert_eq!(r.status, 503, "{}", r.text());
        assert!(r.text().contains("domain is unreachable"), "{}", r.text());
    };
    // Restart the DC whatever happened, so that later tests have their lab.
    let result = tokio::time::timeout(Duration::from_secs(60), outcome).await;
    lab_sh("kdc-start");
    result.expect("the outage checks took too long");

    // The KDC is back: bob gets in, with no restart of gatehouse.
    let start = Instant::now();
    loop {
        let mut b = Conn::open(addr).await;
        let r = request_as(&mut b, Some(&bob)).await;
        if r.text().contains("REMOTE_USER=bob@AD.TEST") {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "bob still fails after the KDC came back: {}\n{}",
            r.text(),
            g.stderr()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(g.stderr().contains("Cannot contact any KDC") || g.stderr().contains("domain"), "{}", g.stderr());
}

/// The objectSid of a lab user, as the directory has it.
fn user_sid(env: &LabEnv, user: &str) -> String {
    let out = Command::new("samba-tool")
        .args(["user", "show", user, "--attributes=objectSid", "-s", &env["SMB_CONF"]])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines().find_map(|l| l.strip_prefix("objectSid: ")).unwrap_or_else(|| panic!("{text}")).trim().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_kdc_down_access_decisions_stand_for_the_grace_period_then_503() {
    let _serial = SERIAL.lock().await;
    let Some(env) = lab_env() else { return };
    let sid = user_sid(&env, "alice");
    let backend = testkit::Backend::start().await;
    let site = |name: &str, prefix: &str| {
        Site::new(name, "plain", &format!("http://{}", backend.addr)).path_prefix(prefix).auth(&["NTLM"])
    };
    let config = Config::new()
        .domain(Domain::lab(&env))
        .accounts(Accounts::winbind(&env))
        .table("access", "refresh = \"2s\"\ngrace = \"6s\"")
        .listener(Listener::plain("plain"))
        .site(site("rules", "/rules").allow(&[&sid]))
        .site(site("open", "/"));
    let g = Gatehouse::start(&config.to_string());
    let alice = Client::new("alice", "Alice-Pass1");
    let mut a = Conn::open(g.addr()).await;
    let signed_in = Instant::now();
    let r = handshake(&mut a, &alice, "GET /rules HTTP/1.1\r\nHost: a", b"", |_| {}).await;
    assert_eq!(r.status, 200, "{}\n{}", r.text(), g.stderr());
    let get = |path: &str| format!("GET {path} HTTP/1.1\r\nHost: a\r\n\r\n");

    lab_sh("kdc-stop");
    let outcome = async {
        // Past the refresh time, within the grace: the last answer stands.
        tokio::time::sleep(Duration::from_secs(3).saturating_sub(signed_in.elapsed())).await;
        a.send(get("/rules").as_bytes()).await;
        let r = a.response().await;
        assert_eq!(r.status, 200, "within the grace period: {}\n{}", r.text(), g.stderr());
        assert!(g.stderr().contains("last known groups stand"), "{}", g.stderr());
        // Past refresh + grace: a site with rules cannot decide (503), one
        // without lets the sign-in stand.
        tokio::time::sleep(Duration::from_secs(9).saturating_sub(signed_in.elapsed())).await;
        a.send(get("/rules").as_bytes()).await;
        let r = a.response().await;
        assert_eq!(r.status, 503, "past the grace period: {}\n{}", r.text(), g.stderr());
        assert!(r.text().contains("domain is unreachable"), "{}", r.text());
        a.send(get("/").as_bytes()).await;
        assert_eq!(a.response().await.status, 200, "a site without rules");
    };
    let result = tokio::time::timeout(Duration::from_secs(60), outcome).await;
    lab_sh("kdc-start");
    result.expect("the outage checks took too long");
}

/// `/readyz` on the admin listener fails while the KDC a delegating site
/// needs is stopped, says why, and recovers when it is back, with no restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_fails_while_the_kdc_is_down_and_recovers() {
    let _serial = SERIAL.lock().await;
    let Some(env) = lab_env() else { return };
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("users.ntlm"), "ADTEST:alice:Alice-Pass1\n").unwrap();
    let site = kcd_site(&env["LAB_BACKEND"], "HTTP/backend.ad.test", "spnego", "always");
    let config = kcd_config(&env, Accounts::file("users.ntlm"), site).table("admin", "bind = \"127.0.0.1:0\"");
    let g = Gatehouse::start_in(dir, &config.to_string());
    g.wait_for(|| g.stderr().contains("admin listener ready"), "the admin listener");
    let log = g.stderr();
    let line = log.lines().find(|l| l.contains("admin listener ready")).unwrap().to_owned();
    let admin: std::net::SocketAddr =
        line.split_whitespace().find_map(|w| w.strip_prefix("addr=")).unwrap().parse().unwrap();
    let readyz = || async {
        let r = request(admin, "GET /readyz HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n").await;
        (r.status, r.text())
    };
    let until = |want: u16, within: Duration| async move {
        let start = Instant::now();
        loop {
            let (status, text) = readyz().await;
            if status == want {
                return text;
            }
            assert!(start.elapsed() < within, "/readyz stayed {status}: {text}");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    };
    let ready = until(200, Duration::from_secs(20)).await;
    assert!(ready.contains("ok: KDC reachable (sites kerberos-backend)"), "{ready}");

    lab_sh("kdc-stop");
    let outcome = async {
        let down = until(503, Duration::from_secs(30)).await;
        assert!(down.contains("failed: KDC reachable"), "{down}");
        down
    };
    let result = tokio::time::timeout(Duration::from_secs(60), outcome).await;
    lab_sh("kdc-start");
    let down = result.expect("/readyz did not fail while the KDC was down");
    assert!(g.stderr().contains("readiness: the KDC does not answer"), "{down}\n{}", g.stderr());

    until(200, Duration::from_secs(60)).await;
    g.wait_for(|| g.stderr().contains("readiness: the KDC answers again"), "the recovery line");
}
