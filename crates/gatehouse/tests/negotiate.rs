//! Negotiate at the edge, against the lab domain: Kerberos from a client with a
//! ticket (curl, and MIT's GSSAPI directly for the hostile cases), NTLM inside
//! SPNEGO from a client that has no KDC (pyspnego), and both reaching the
//! Kerberos-only backend as themselves through one site that offers
//! `Negotiate, NTLM`.
//!
//! Needs the lab running (see lab.rs). Own test binary: it sets KRB5_CONFIG
//! and KRB5CCNAME for the in-process MIT client.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use base64::Engine;
use common::*;
use libgssapi::context::{ClientCtx, CtxFlags};
use libgssapi::credential::{Cred, CredUsage};
use libgssapi::name::Name;
use libgssapi::oid::{GSS_MECH_KRB5, GSS_NT_KRB5_PRINCIPAL};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

fn python() -> String {
    std::env::var("GATEHOUSE_PYTHON").unwrap_or_else(|_| "python3".into())
}

fn client_script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/clients").join(name)
}

/// alice's ticket cache (kinit with her password, as a domain-joined client
/// has at logon), made once for the whole test binary.
fn alice_ccache(env: &LabEnv) -> &'static str {
    static CACHE: OnceLock<(tempfile::TempDir, String)> = OnceLock::new();
    &CACHE
        .get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let cc = kinit(env, dir.path(), "alice", "Alice-Pass1", &[]);
            std::env::set_var("KRB5_CONFIG", &env["KRB5_CONFIG"]);
            std::env::set_var("KRB5CCNAME", &cc);
            (dir, cc)
        })
        .1
}

/// A Kerberos token from alice's cache, as a browser makes it.
fn alice_token(env: &LabEnv, target: &str, bindings: Option<&[u8]>) -> Vec<u8> {
    alice_ccache(env);
    let cred = Cred::acquire(None, None, CredUsage::Initiate, None).unwrap();
    let name = Name::new(target.as_bytes(), Some(GSS_NT_KRB5_PRINCIPAL)).unwrap();
    let mut ctx = ClientCtx::new(Some(cred), name, CtxFlags::GSS_C_MUTUAL_FLAG, Some(GSS_MECH_KRB5));
    ctx.step(None, bindings).unwrap().unwrap().to_vec()
}

/// SPNEGO around a Kerberos token, Windows' way: the MS OID first.
fn spnego_init(krb: &[u8]) -> Vec<u8> {
    spnego::encode_init(&[spnego::MS_KRB5, spnego::KRB5, spnego::NTLMSSP], Some(krb), None)
}

/// gatehouse on a TLS listener (certificate for proxy.ad.test, the lab's
/// acceptor SPN), one site offering `auth`, delegating to the lab's
/// Kerberos-only Apache; `site_extra` goes at the end of the site. Returns
/// gatehouse, the CA file and the port.
fn start(env: &LabEnv, binding: &str, site_extra: &str) -> (Gatehouse, PathBuf, u16) {
    launch(env, binding, site_extra, Launch::default())
}

fn launch(env: &LabEnv, binding: &str, site_extra: &str, how: Launch) -> (Gatehouse, PathBuf, u16) {
    let dir = tempfile::tempdir().unwrap();
    let ca = make_certs(dir.path(), &[("proxy", &["proxy.ad.test"])]);
    let config = Config::new()
        .domain(Domain::lab(env).acceptor_spn("HTTP/proxy.ad.test"))
        .accounts(Accounts::winbind(env))
        .listener(Listener::tls("public", "proxy").channel_binding(binding))
        .site(Site::lab_kcd("intranet", "public", env).auth(&["Negotiate", "NTLM"]).then(site_extra));
    let g = Gatehouse::launch(dir, &config.to_string(), how);
    let port = g.port();
    (g, ca, port)
}

async fn open(ca: &Path, port: u16) -> Conn<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    Conn::open_tls(listen(port), ca, "proxy.ad.test").await
}

fn with_negotiate(token: &[u8]) -> String {
    format!("GET / HTTP/1.1\r\nHost: proxy.ad.test\r\nAuthorization: Negotiate {}\r\n\r\n", B64.encode(token))
}

fn offered(r: &Resp) -> Vec<String> {
    r.headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case("www-authenticate")).map(|(_, v)| v.clone()).collect()
}

/// The last "kerberos counters" line, after a clean stop.
fn counters(mut g: Gatehouse) -> String {
    g.signal("-TERM");
    g.wait_exit(Duration::from_secs(10));
    let log = g.stderr();
    log.lines().rev().find(|l| l.contains("kerberos counters")).unwrap_or_else(|| panic!("no counters:\n{log}")).into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_with_a_kerberos_ticket_reaches_the_backend_with_no_s4u2self() {
    let Some(env) = lab_env() else { return };
    let cc = alice_ccache(&env).to_owned();
    let (g, ca, port) = start(&env, "when-supported", "");
    let out = Command::new("curl")
        .args(["-sS", "-v", "--negotiate", "-u", ":", "--cacert"])
        .arg(&ca)
        .args(["--resolve", &format!("proxy.ad.test:{port}:127.0.0.1"), &format!("https://proxy.ad.test:{port}/")])
        .env("KRB5_CONFIG", &env["KRB5_CONFIG"])
        .env("KRB5CCNAME", &cc)
        .output()
        .unwrap();
    let (body, trace) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "curl failed: {trace}\n{}", g.stderr());
    assert!(body.contains("REMOTE_USER=alice@AD.TEST"), "{body}\n{trace}\n{}", g.stderr());
    // gatehouse's mutual-authentication token came back with the 200 (curl checks it).
    assert!(
        trace.lines().any(|l| l.starts_with("< HTTP/") && l.split_whitespace().nth(2) == Some("200"))
            && trace.to_lowercase().contains("www-authenticate: negotiate "),
        "{trace}"
    );
    let line = counters(g);
    // alice's own ticket was the S4U2Proxy evidence: no protocol transition.
    assert!(line.contains("s4u2self=0") && line.contains("evidence=1"), "{line}");
    assert!(line.contains("tickets_accepted=1") && line.contains("tickets_refused=0"), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ntlm_inside_spnego_from_a_client_without_a_kdc() {
    let Some(env) = lab_env() else { return };
    let (g, ca, port) = start(&env, "required", "");
    for (user, password) in [("bob", "Bob-Pass1"), ("ADTEST\\alice", "Alice-Pass1")] {
        let out = Command::new(python())
            .arg(client_script("pyspnego_negotiate.py"))
            .args([&format!("https://127.0.0.1:{port}/"), user, password])
            .arg(&ca)
            .arg("proxy.ad.test")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{text}\n{}\n{}", String::from_utf8_lossy(&out.stderr), g.stderr());
        let mut lines = text.lines();
        assert_eq!(lines.next(), Some("200"), "{text}\n{}", g.stderr());
        // pyspnego checked gatehouse's mechListMIC before calling it complete.
        assert_eq!(lines.next(), Some("complete"), "{text}");
        let who = user.rsplit('\\').next().unwrap();
        assert!(text.contains(&format!("REMOTE_USER={who}@AD.TEST")), "{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_kerberos_tokens_are_refused_with_the_cause() {
    let Some(env) = lab_env() else { return };
    let (g, ca, port) = start(&env, "when-supported", "");
    let spn = "HTTP/proxy.ad.test@AD.TEST";

    // A good one first: 200, and the final token is an SPNEGO accept-completed.
    let good = spnego_init(&alice_token(&env, spn, None));
    let mut c = open(&ca, port).await;
    c.send(with_negotiate(&good).as_bytes()).await;
    let r = c.response().await;
    assert_eq!(r.status, 200, "{}", g.stderr());
    let fin = B64.decode(r.header("www-authenticate").unwrap().strip_prefix("Negotiate ").unwrap()).unwrap();
    let spnego::ClientToken::Resp(fin) = spnego::parse_client_token(&fin).unwrap() else { panic!() };
    assert_eq!(fin.neg_state, Some(spnego::NegState::AcceptCompleted));
    assert_eq!(fin.supported_mech.unwrap().0, spnego::MS_KRB5, "the client's own OID is echoed");
    assert!(fin.response_token.is_some(), "AP-REP for mutual authentication");

    // A raw Kerberos token (no SPNEGO) is taken too; the answer is then the raw AP-REP.
    let raw = alice_token(&env, spn, None);
    let mut c = open(&ca, port).await;
    c.send(with_negotiate(&raw).as_bytes()).await;
    let r = c.response().await;
    assert_eq!(r.status, 200, "{}", g.stderr());
    let fin = B64.decode(r.header("www-authenticate").unwrap().strip_prefix("Negotiate ").unwrap()).unwrap();
    assert_eq!(&fin[..2], &[0x60, fin[1]], "a framed Kerberos token");
    assert!(spnego::kerberos_ap_req(&fin).is_err(), "an AP-REP, not an AP-REQ");

    // Replayed on another connection.
    let mut c = open(&ca, port).await;
    c.send(with_negotiate(&good).as_bytes()).await;
    assert_eq!(c.response().await.status, 401);
    // Forged: the authenticator's last byte flipped.
    let mut forged = alice_token(&env, spn, None);
    *forged.last_mut().unwrap() ^= 1;
    let mut c = open(&ca, port).await;
    c.send(with_negotiate(&spnego_init(&forged)).as_bytes()).await;
    assert_eq!(c.response().await.status, 401);
    // A ticket for another name of the account (svc-proxy@AD.TEST), raw, without SPNEGO.
    let other = alice_token(&env, "svc-proxy@AD.TEST", None);
    let mut c = open(&ca, port).await;
    c.send(with_negotiate(&other).as_bytes()).await;
    assert_eq!(c.response().await.status, 401);
    // Bindings of another TLS connection.
    let wrong = alice_token(&env, spn, Some(&kcd_bindings(&[7; 32])));
    let mut c = open(&ca, port).await;
    c.send(with_negotiate(&spnego_init(&wrong)).as_bytes()).await;
    assert_eq!(c.response().await.status, 401);
    // Garbage under Negotiate.
    let mut c = open(&ca, port).await;
    c.send(with_negotiate(b"\x60\x03\x06\x01\x00").as_bytes()).await;
    assert_eq!(c.response().await.status, 401);

    let log = g.stderr();
    for cause in [
        "replayed",
        "Decrypt integrity check failed",
        "the ticket is for svc-proxy@AD.TEST, not for HTTP/proxy.ad.test@AD.TEST",
        "Incorrect channel bindings",
        "Negotiate token refused",
    ] {
        assert!(log.contains(cause), "no log line names `{cause}`:\n{log}");
    }
}

fn kcd_bindings(hash: &[u8]) -> Vec<u8> {
    let mut v = b"tls-server-end-point:".to_vec();
    v.extend_from_slice(hash);
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_bindings_required_for_kerberos() {
    let Some(env) = lab_env() else { return };
    let (g, ca, port) = start(&env, "required", "");
    // Unbound: refused under `required`.
    let unbound = spnego_init(&alice_token(&env, "HTTP/proxy.ad.test@AD.TEST", None));
    let mut c = open(&ca, port).await;
    c.send(with_negotiate(&unbound).as_bytes()).await;
    assert_eq!(c.response().await.status, 401);
    assert!(g.stderr().contains("alice@AD.TEST: channel bindings required but not sent"), "{}", g.stderr());
    // Bound to this connection's certificate: accepted.
    let cert = std::fs::read_to_string(g.path("proxy.pem")).unwrap();
    let der = B64.decode(cert.lines().filter(|l| !l.starts_with("-----")).collect::<String>()).unwrap();
    let hash = {
        use sha2::Digest;
        sha2::Sha256::digest(&der).to_vec()
    };
    let bound = spnego_init(&alice_token(&env, "HTTP/proxy.ad.test@AD.TEST", Some(&kcd_bindings(&hash))));
    let mut c = open(&ca, port).await;
    c.send(with_negotiate(&bound).as_bytes()).await;
    let r = c.response().await;
    assert_eq!(r.status, 200, "{}", g.stderr());
    assert!(r.text().contains("REMOTE_USER=alice@AD.TEST"), "{}", r.text());
}

/// The exact `WWW-Authenticate` headers: the site's list, `auth_for` for
/// Communicator, and `negotiate_once` after a failed Kerberos attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offered_schemes_follow_auth_for_and_negotiate_once() {
    let Some(env) = lab_env() else { return };
    let rule = "\n[[site.auth_for]]\nuser_agent = \"*Communicator*\"\nauth = [\"NTLM\"]\n";
    let (g, ca, port) = start(&env, "when-supported", rule);
    let ask = |ua: &str| format!("GET / HTTP/1.1\r\nHost: proxy.ad.test\r\nUser-Agent: {ua}\r\n\r\n");
    let mut c = open(&ca, port).await;
    c.send(ask("Mozilla/5.0").as_bytes()).await;
    assert_eq!(offered(&c.response().await), ["Negotiate", "NTLM"]);
    c.send(ask("Microsoft Office Communicator 2007 R2").as_bytes()).await;
    assert_eq!(offered(&c.response().await), ["NTLM"]);
    // Communicator sending Negotiate anyway is treated as sending nothing.
    let token = spnego_init(&alice_token(&env, "HTTP/proxy.ad.test@AD.TEST", None));
    let req = format!(
        "GET / HTTP/1.1\r\nHost: proxy.ad.test\r\nUser-Agent: Office Communicator\r\nAuthorization: Negotiate {}\r\n\r\n",
        B64.encode(&token)
    );
    c.send(req.as_bytes()).await;
    let r = c.response().await;
    assert_eq!((r.status, offered(&r)), (401, vec!["NTLM".to_string()]));
    // A failed Kerberos attempt: this connection is offered NTLM only from now on.
    let mut c = open(&ca, port).await;
    let mut forged = alice_token(&env, "HTTP/proxy.ad.test@AD.TEST", None);
    *forged.last_mut().unwrap() ^= 1;
    c.send(with_negotiate(&spnego_init(&forged)).as_bytes()).await;
    let r = c.response().await;
    assert_eq!((r.status, offered(&r)), (401, vec!["NTLM".to_string()]));
    c.send(ask("Mozilla/5.0").as_bytes()).await;
    assert_eq!(offered(&c.response().await), ["NTLM"]);
    // ...but a new connection is offered both again.
    let mut c = open(&ca, port).await;
    c.send(ask("Mozilla/5.0").as_bytes()).await;
    assert_eq!(offered(&c.response().await), ["Negotiate", "NTLM"]);
    drop(g);

    // negotiate_once = false: Negotiate stays on offer.
    let (g, ca, port) = start(&env, "when-supported", "negotiate_once = false");
    let mut c = open(&ca, port).await;
    let mut forged = alice_token(&env, "HTTP/proxy.ad.test@AD.TEST", None);
    *forged.last_mut().unwrap() ^= 1;
    c.send(with_negotiate(&spnego_init(&forged)).as_bytes()).await;
    let r = c.response().await;
    assert_eq!((r.status, offered(&r)), (401, vec!["Negotiate".to_string(), "NTLM".to_string()]));
    drop(g);
}

/// NTLM inside SPNEGO with a mechListMIC that does not match the mechanism
/// list (as after a downgrade that removed Kerberos), and without the MIC
/// where it is required (NTLM was not the client's first choice): both 401.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ntlm_inside_spnego_mech_list_mic_is_checked() {
    let Some(env) = lab_env() else { return };
    let (g, ca, port) = start(&env, "when-supported", "");
    let bob = ntlm::client::Client::new("bob", "Bob-Pass1");
    let answer = |r: &Resp| {
        let h = r.header("www-authenticate").expect("a Negotiate answer");
        let t = B64.decode(h.strip_prefix("Negotiate ").unwrap()).unwrap();
        let spnego::ClientToken::Resp(resp) = spnego::parse_client_token(&t).unwrap() else { panic!() };
        resp
    };

    // NTLM first, with a MIC of garbage.
    let mut c = open(&ca, port).await;
    let negotiate = bob.negotiate();
    c.send(with_negotiate(&spnego::encode_init(&[spnego::NTLMSSP], Some(&negotiate), None)).as_bytes()).await;
    let r = c.response().await;
    assert_eq!(r.status, 401);
    let challenge = answer(&r).response_token.expect("a CHALLENGE");
    let auth = bob.authenticate(&negotiate, &challenge);
    c.send(with_negotiate(&spnego::encode_client_resp(Some(&auth), Some(&[1; 16]))).as_bytes()).await;
    assert_eq!(c.response().await.status, 401);
    assert!(g.stderr().contains("mechListMIC does not match"), "{}", g.stderr());

    // NTLM second after an unknown mechanism: gatehouse names NTLM, and then
    // the MIC is required.
    let mut c = open(&ca, port).await;
    let unknown: &[u8] = &[0x2b, 0x06, 0x01, 0x04, 0x01, 0x82, 0x37, 0x02, 0x02, 0x1e]; // NEGOEX
    c.send(with_negotiate(&spnego::encode_init(&[unknown, spnego::NTLMSSP], Some(b"negoex"), None)).as_bytes()).await;
    let r = c.response().await;
    assert_eq!(r.status, 401);
    let named = answer(&r);
    assert_eq!(named.supported_mech.unwrap().0, spnego::NTLMSSP);
    assert_eq!(named.neg_state, Some(spnego::NegState::AcceptIncomplete));
    let negotiate = bob.negotiate();
    c.send(with_negotiate(&spnego::encode_client_resp(Some(&negotiate), None)).as_bytes()).await;
    let r = c.response().await;
    assert_eq!(r.status, 401);
    let challenge = answer(&r).response_token.expect("a CHALLENGE");
    let auth = bob.authenticate(&negotiate, &challenge);
    c.send(with_negotiate(&spnego::encode_client_resp(Some(&auth), None)).as_bytes()).await;
    assert_eq!(c.response().await.status, 401);
    assert!(g.stderr().contains("mechListMIC required but not sent"), "{}", g.stderr());

    // A continuation on a connection with no handshake.
    let mut c = open(&ca, port).await;
    c.send(with_negotiate(&spnego::encode_client_resp(Some(&auth), None)).as_bytes()).await;
    assert_eq!(c.response().await.status, 401);
    assert!(g.stderr().contains("SPNEGO continuation without a handshake"), "{}", g.stderr());
}

/// An expired ticket: the lab's tickets last 10 hours, so gatehouse is run with
/// its clock 11 hours ahead (libfaketime), and alice's ticket is then expired
/// in its eyes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_ticket_is_refused() {
    let Some(env) = lab_env() else { return };
    // gatehouse itself runs with the clock ahead (libfaketime preloaded, no
    // `faketime` wrapper): the process the test spawned is the one it stops.
    let (g, ca, port) = launch(&env, "when-supported", "", Launch::clock_ahead("+11h"));
    let token = spnego_init(&alice_token(&env, "HTTP/proxy.ad.test@AD.TEST", None));
    let mut c = open(&ca, port).await;
    c.send(with_negotiate(&token).as_bytes()).await;
    assert_eq!(c.response().await.status, 401);
    assert!(g.stderr().contains("(Ticket expired)"), "{}", g.stderr());
}

/// `gatehouse doctor` checks that tickets for acceptor_spn open with the
/// keytab: yes for the lab's HTTP/proxy.ad.test, no for another account's SPN.
#[test]
fn doctor_checks_the_acceptor_spn() {
    let Some(env) = lab_env() else { return };
    let doctor = |spn: &str| {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("g.toml");
        std::fs::write(
            &config,
            format!(
                "[domain]\nrealm = \"AD.TEST\"\nnetbios_name = \"ADTEST\"\nkrb5_conf = \"{}\"\nkeytab = \"{}\"\n\
                 service_principal = \"svc-proxy@AD.TEST\"\nacceptor_spn = \"{spn}\"\n\n[accounts]\nsource = \"winbind\"\n\n\
                 [[listener]]\nname = \"l\"\nbind = \"127.0.0.1:1\"\n\n[[site]]\nname = \"s\"\nlistener = \"l\"\n\
                 backend = \"http://127.0.0.1:18080\"\nauth = [\"Negotiate\"]\n",
                env["KRB5_CONFIG"], env["LAB_PROXY_KEYTAB"]
            ),
        )
        .unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_gatehouse")).args(["doctor", "-c"]).arg(&config).output().unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let (ok, text) = doctor("HTTP/proxy.ad.test");
    assert!(
        ok && text.contains("PASS  Negotiate: a ticket for HTTP/proxy.ad.test opens with the keytab's key"),
        "{text}"
    );
    let (ok, text) = doctor("HTTP/backend.ad.test");
    assert!(
        !ok && text.contains("FAIL  Negotiate: clients' tickets for HTTP/backend.ad.test would be refused"),
        "{text}"
    );
}

/// A ticket that is not forwardable cannot be S4U2Proxy evidence: gatehouse
/// falls back to protocol transition, and bob still reaches the backend as bob.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ticket_that_is_not_forwardable_falls_back_to_s4u2self() {
    let Some(env) = lab_env() else { return };
    let dir = tempfile::tempdir().unwrap();
    // -F: a ticket that is not forwardable.
    let cc = kinit(&env, dir.path(), "bob", "Bob-Pass1", &["-F"]);
    let (g, ca, port) = start(&env, "when-supported", "");
    let out = Command::new("curl")
        .args(["-sS", "--negotiate", "-u", ":", "--cacert"])
        .arg(&ca)
        .args(["--resolve", &format!("proxy.ad.test:{port}:127.0.0.1"), &format!("https://proxy.ad.test:{port}/")])
        .env("KRB5_CONFIG", &env["KRB5_CONFIG"])
        .env("KRB5CCNAME", &cc)
        .output()
        .unwrap();
    let body = String::from_utf8_lossy(&out.stdout);
    assert!(body.contains("REMOTE_USER=bob@AD.TEST"), "{body}\n{}", g.stderr());
    let line = counters(g);
    assert!(line.contains("s4u2self=1") && line.contains("tickets_accepted=1"), "{line}");
}
