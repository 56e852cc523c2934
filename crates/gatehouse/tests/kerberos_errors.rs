//! Kerberos failures through the real binary, against the lab domain: each is
//! answered and explained by its kind (from MIT's codes, never its words).
//! `gatehouse doctor` gives the fix of the cause, not of a word in the
//! message; an unreachable KDC is a 503, never a wrong password.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

use base64::Engine;
use common::*;
use ntlm::client::Client;

/// A krb5.conf like the lab's whose KDC is a port nobody listens on.
fn closed_kdc_conf(env: &HashMap<String, String>, dir: &Path) -> String {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let conf = std::fs::read_to_string(&env["KRB5_CONFIG"]).unwrap();
    assert!(conf.contains("kdc = 127.0.0.21:88"), "{conf}");
    let path = dir.join("closed-krb5.conf");
    std::fs::write(&path, conf.replace("127.0.0.21:88", &closed.to_string())).unwrap();
    path.to_string_lossy().into_owned()
}

/// `gatehouse doctor --user USER` on a Negotiate site that delegates; (passed, stdout).
fn doctor(krb5_conf: &str, keytab: &str, user: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("g.toml");
    std::fs::write(
        &config,
        format!(
            "[domain]\nrealm = \"AD.TEST\"\nnetbios_name = \"ADTEST\"\nkrb5_conf = \"{krb5_conf}\"\nkeytab = \"{keytab}\"\n\
             service_principal = \"svc-proxy@AD.TEST\"\nacceptor_spn = \"HTTP/proxy.ad.test\"\n\n\
             [[listener]]\nname = \"l\"\nbind = \"127.0.0.1:1\"\n\n[[site]]\nname = \"s\"\nlistener = \"l\"\n\
             backend = \"http://127.0.0.1:18080\"\nhost_header = \"backend.ad.test\"\nauth = [\"Negotiate\"]\n\
             delegation = \"kcd\"\nbackend_spn = \"HTTP/backend.ad.test\"\n"
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args(["doctor", "-c"])
        .arg(&config)
        .args(["--user", user])
        .output()
        .unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Every fix line doctor printed that sets an account's password says so.
fn assert_password_resets_are_announced(text: &str) {
    for line in text.lines().filter(|l| l.contains("ktpass") || l.contains("Set-ADAccountPassword")) {
        assert!(line.contains("RESETS"), "a password reset not announced: {line}");
    }
}

/// Issue 12: with no KDC answering, doctor matched "keytab" in gatehouse's own
/// words for the step ("... from the keytab: ...") and offered a new keytab.
#[test]
fn doctor_with_no_kdc_says_no_kdc_and_offers_no_new_keytab() {
    let Some(env) = lab_env() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (ok, text) = doctor(&closed_kdc_conf(&env, dir.path()), &env["LAB_PROXY_KEYTAB"], "bob");
    assert!(!ok, "{text}");
    assert!(text.contains("PASS  keytab"), "the keytab itself is fine: {text}");
    assert!(text.contains("Cannot contact any KDC"), "{text}");
    assert!(text.contains("      no KDC: no domain controller answered"), "{text}");
    assert!(!text.contains("      keytab:") && !text.contains("ktpass") && !text.contains("exportkeytab"), "{text}");
}

/// Issue 12: an empty keytab was "not an MIT keytab (version 0x0502)".
#[test]
fn doctor_says_an_empty_keytab_is_empty() {
    let Some(env) = lab_env() else { return };
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.keytab");
    std::fs::write(&empty, b"").unwrap();
    let (ok, text) = doctor(&env["KRB5_CONFIG"], &empty.to_string_lossy(), "bob");
    assert!(!ok && text.contains("the keytab is empty"), "{text}");
    assert!(!text.contains("not an MIT keytab"), "{text}");
    assert!(text.contains("      keytab: the keytab is missing, empty"), "{text}");
    assert_password_resets_are_announced(&text);
    // A keytab file with the header and no entry is empty too.
    std::fs::write(&empty, [0x05, 0x02]).unwrap();
    let (ok, text) = doctor(&env["KRB5_CONFIG"], &empty.to_string_lossy(), "bob");
    assert!(!ok && text.contains("is empty"), "{text}");
    // Not a keytab at all: said so.
    std::fs::write(&empty, b"garbage").unwrap();
    let (ok, text) = doctor(&env["KRB5_CONFIG"], &empty.to_string_lossy(), "bob");
    assert!(!ok && text.contains("not an MIT keytab"), "{text}");
    // Another account's keytab: no key for svc-proxy.
    let backend = env["LAB_PROXY_KEYTAB"].replace("proxy.keytab", "backend.keytab");
    let (ok, text) = doctor(&env["KRB5_CONFIG"], &backend, "bob");
    assert!(!ok && text.contains("holds no key for svc-proxy@AD.TEST"), "{text}");
}

#[test]
fn doctor_names_an_unknown_user_and_passes_a_known_one() {
    let Some(env) = lab_env() else { return };
    let (ok, text) = doctor(&env["KRB5_CONFIG"], &env["LAB_PROXY_KEYTAB"], "nobody-here");
    assert!(!ok, "{text}");
    assert!(text.contains("FAIL  svc-proxy cannot impersonate nobody-here@AD.TEST"), "{text}");
    assert!(text.contains("      KDC_ERR_C_PRINCIPAL_UNKNOWN (6): the KDC does not know nobody-here"), "{text}");
    let (ok, text) = doctor(&env["KRB5_CONFIG"], &env["LAB_PROXY_KEYTAB"], "bob");
    assert!(ok, "{text}");
    assert!(text.contains("PASS  site s: the backend http://127.0.0.1:18080 accepted the ticket"), "{text}");
}

fn basic_config(env: &HashMap<String, String>, krb5: &str, port: u16) -> String {
    format!(
        "[domain]\nrealm = \"AD.TEST\"\nnetbios_name = \"ADTEST\"\nkrb5_conf = \"{krb5}\"\nkeytab = \"{keytab}\"\n\
         service_principal = \"svc-proxy@AD.TEST\"\nacceptor_spn = \"HTTP/proxy.ad.test\"\n\n\
         [lockout]\nmax_failures_per_user = 2\n\n\
         [[listener]]\nname = \"public\"\nbind = \"127.0.0.1:{port}\"\ntls = {{ cert = \"proxy.pem\", key = \"proxy.key\" }}\n\n\
         [[site]]\nname = \"activesync\"\nlistener = \"public\"\nbackend = \"http://127.0.0.1:18080\"\n\
         host_header = \"backend.ad.test\"\nauth = [\"Basic\"]\ndelegation = \"kcd\"\nbackend_spn = \"HTTP/backend.ad.test\"\n",
        keytab = env["LAB_PROXY_KEYTAB"],
    )
}

/// No KDC answering: Basic is a 503 (the domain is unreachable), never a
/// wrong password, so it counts toward no lockout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_with_no_kdc_is_503_and_locks_nobody_out() {
    let Some(env) = lab_env() else { return };
    let dir = tempfile::tempdir().unwrap();
    let ca = make_certs(dir.path(), &[("proxy", &["proxy.ad.test"])]);
    let krb5 = closed_kdc_conf(&env, dir.path());
    let g = Gatehouse::start_in(dir, &basic_config(&env, &krb5, 0));
    let port = g.port();
    let raw = format!(
        "GET / HTTP/1.1\r\nHost: proxy.ad.test\r\nAuthorization: Basic {}\r\n\r\n",
        base64::engine::general_purpose::STANDARD.encode("bob:Bob-Pass1")
    );
    for _ in 0..3 {
        let mut c = Conn::open_tls(listen(port), &ca, "proxy.ad.test").await;
        c.send(raw.as_bytes()).await;
        let r = c.response().await;
        assert_eq!(r.status, 503, "{}\n{}", r.text(), g.stderr());
    }
    let log = g.stderr();
    assert!(log.contains("bob: cannot check the password"), "{log}");
    assert!(!log.contains("extranet lockout") && !log.contains("Basic logon refused"), "{log}");
}

/// No KDC answering after an NTLM sign-in (checked by the DC through
/// winbind, which needs no KDC): the delegation is a 503 naming the cause.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delegation_with_no_kdc_is_503_with_the_cause() {
    let Some(env) = lab_env() else { return };
    let dir = tempfile::tempdir().unwrap();
    let krb5 = closed_kdc_conf(&env, dir.path());
    let config = kcd_config(
        &env,
        Accounts::winbind(&env),
        kcd_site("http://127.0.0.1:18080", "HTTP/backend.ad.test", "spnego", "always"),
    )
    .to_string()
    .replace(&env["KRB5_CONFIG"], &krb5);
    let g = Gatehouse::start_in(dir, &config);
    let port = g.port();
    let mut c = Conn::open(listen(port)).await;
    let r =
        handshake(&mut c, &Client::new("bob", "Bob-Pass1"), "GET / HTTP/1.1\r\nHost: mail.ad.test", b"", |_| {}).await;
    assert_eq!(r.status, 503, "{}\n{}", r.text(), g.stderr());
    let log = g.stderr();
    assert!(log.contains("Kerberos delegation for bob@AD.TEST to HTTP/backend.ad.test failed"), "{log}");
    assert!(log.contains("no KDC: no domain controller answered"), "{log}");
    assert!(!log.contains("ktpass"), "{log}");
}
