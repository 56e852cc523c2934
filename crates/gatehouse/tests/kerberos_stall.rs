//! Forged Kerberos tokens against a gatehouse whose KDC never answers (issue
//! 10, finding 3): the forged requests must get their 401 at once, every other
//! site must keep answering, and no token MIT has not accepted may make
//! gatehouse talk to the KDC. The KDC is ours: a UDP socket and a TCP listener
//! on loopback that record what arrives and never reply. The keytab is made
//! with MIT's `ktutil` (krb5-user); no lab is needed.

mod common;

use std::collections::HashSet;
use std::io::Read;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use common::*;
use testkit::Backend;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;
const REALM: &str = "SILENT.TEST";
const SPN: &str = "HTTP/proxy.silent.test";

/// A KDC that listens and never answers. MIT sends one request several times
/// (UDP retries, then TCP) while it waits; distinct messages are distinct
/// requests.
struct SilentKdc {
    port: u16,
    messages: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl SilentKdc {
    fn start() -> SilentKdc {
        // The same port for both transports, as MIT uses for `kdc = host:port`.
        let (udp, tcp) = loop {
            let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
            if let Ok(tcp) = TcpListener::bind(udp.local_addr().unwrap()) {
                break (udp, tcp);
            }
        };
        let port = udp.local_addr().unwrap().port();
        let messages: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
        let seen = messages.clone();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            while let Ok((n, _)) = udp.recv_from(&mut buf) {
                seen.lock().unwrap().push(buf[..n].to_vec());
            }
        });
        let seen = messages.clone();
        std::thread::spawn(move || {
            for stream in tcp.incoming() {
                let Ok(mut stream) = stream else { continue };
                let seen = seen.clone();
                std::thread::spawn(move || {
                    // A 4-byte length, then the same message as over UDP; the
                    // connection stays open and silent until the client leaves.
                    let mut len = [0u8; 4];
                    if stream.read_exact(&mut len).is_err() {
                        return;
                    }
                    let mut message = vec![0u8; u32::from_be_bytes(len).min(1 << 20) as usize];
                    if stream.read_exact(&mut message).is_ok() {
                        seen.lock().unwrap().push(message);
                    }
                    let _ = stream.read_to_end(&mut Vec::new());
                });
            }
        });
        SilentKdc { port, messages }
    }

    fn requests(&self) -> usize {
        self.messages.lock().unwrap().iter().collect::<HashSet<_>>().len()
    }
}

/// krb5.conf naming only the silent KDC, and a keytab for the service account
/// (first, as AD's keytabs are) and its SPN, made from a password.
fn kerberos_files(dir: &Path, kdc: &SilentKdc) {
    let conf = format!(
        "[libdefaults]\n default_realm = {REALM}\n dns_lookup_kdc = false\n dns_lookup_realm = false\n rdns = false\n\
         [realms]\n {REALM} = {{\n  kdc = 127.0.0.1:{}\n }}\n",
        kdc.port
    );
    std::fs::write(dir.join("krb5.conf"), conf).unwrap();
    let keytab = dir.join("proxy.keytab");
    let script = format!(
        "addent -password -p svc-proxy@{REALM} -k 1 -e aes256-cts-hmac-sha1-96\nSvc-Pass1\n\
         addent -password -p {SPN}@{REALM} -k 1 -e aes256-cts-hmac-sha1-96\nSvc-Pass1\nwkt {}\nquit\n",
        keytab.display()
    );
    let mut ktutil = Command::new("ktutil")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("ktutil (Debian package krb5-user: scripts/install-deps.sh test)");
    use std::io::Write;
    ktutil.stdin.take().unwrap().write_all(script.as_bytes()).unwrap();
    assert!(ktutil.wait().unwrap().success());
    assert!(std::fs::metadata(&keytab).unwrap().len() > 0, "ktutil wrote no keytab");
}

fn config(backend: SocketAddr, keytab: &str) -> String {
    format!(
        r#"
[domain]
realm = "{REALM}"
netbios_name = "SILENT"
krb5_conf = "{{dir}}/krb5.conf"
keytab = "{{dir}}/{keytab}"
service_principal = "svc-proxy@{REALM}"
acceptor_spn = "{SPN}"

[[listener]]
name = "plain"
bind = "127.0.0.1:0"

[[site]]
name = "intranet"
listener = "plain"
hosts = ["intranet.test"]
backend = "http://{backend}"
auth = ["Negotiate"]

[[site]]
name = "public"
listener = "plain"
hosts = ["www.test"]
backend = "http://{backend}"
"#
    )
}

fn tlv(tag: u8, value: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    match value.len() {
        n if n < 0x80 => out.push(n as u8),
        n if n < 0x100 => out.extend([0x81, n as u8]),
        n => out.extend([0x82, (n >> 8) as u8, n as u8]),
    }
    out.extend_from_slice(value);
    out
}

/// A Kerberos initial context token whose AP-REQ names `spn` in `REALM` and
/// carries ciphertext nobody made: it passes gatehouse's own parse, only the
/// keys can refuse it. `n` makes each authenticator unique (no replay).
fn forged_ap_req(spn: &str, n: u32) -> Vec<u8> {
    let enc = |etype: u8, cipher: &[u8]| {
        tlv(
            0x30,
            &[tlv(0xa0, &tlv(0x02, &[etype])), tlv(0xa1, &tlv(0x02, &[1])), tlv(0xa2, &tlv(0x04, cipher))].concat(),
        )
    };
    let components: Vec<u8> = spn.split('/').flat_map(|c| tlv(0x1b, c.as_bytes())).collect();
    let sname = tlv(0x30, &[tlv(0xa0, &tlv(0x02, &[2])), tlv(0xa1, &tlv(0x30, &components))].concat());
    let ticket = tlv(
        0x61,
        &tlv(
            0x30,
            &[
                tlv(0xa0, &tlv(0x02, &[5])),
                tlv(0xa1, &tlv(0x1b, REALM.as_bytes())),
                tlv(0xa2, &sname),
                tlv(0xa3, &enc(18, &[0x5a; 180])),
            ]
            .concat(),
        ),
    );
    let mut authenticator = vec![0xa5; 96];
    authenticator[..4].copy_from_slice(&n.to_be_bytes());
    let ap_req = tlv(
        0x6e,
        &tlv(
            0x30,
            &[
                tlv(0xa0, &tlv(0x02, &[5])),
                tlv(0xa1, &tlv(0x02, &[14])),
                tlv(0xa2, &tlv(0x03, &[0, 0, 0, 0, 0])),
                tlv(0xa3, &ticket),
                tlv(0xa4, &enc(18, &authenticator)),
            ]
            .concat(),
        ),
    );
    tlv(0x60, &[tlv(0x06, spnego::KRB5), vec![0x01, 0x00], ap_req].concat())
}

/// The three shapes a browser's Negotiate token takes: SPNEGO with Kerberos
/// first (the MS OID, or the standard one), or the bare Kerberos token.
fn forged_token(n: u32) -> Vec<u8> {
    let krb = forged_ap_req(SPN, n);
    match n % 3 {
        0 => spnego::encode_init(&[spnego::MS_KRB5, spnego::KRB5, spnego::NTLMSSP], Some(&krb), None),
        1 => spnego::encode_init(&[spnego::KRB5], Some(&krb), None),
        _ => krb,
    }
}

fn negotiate(host: &str, token: &[u8]) -> String {
    format!("GET / HTTP/1.1\r\nHost: {host}\r\nAuthorization: Negotiate {}\r\n\r\n", B64.encode(token))
}

/// One request on a fresh connection, and how long its answer took; None if
/// none came within `within`.
async fn timed(port: u16, raw: String, within: Duration) -> Option<(u16, Duration)> {
    let start = Instant::now();
    let answer = tokio::time::timeout(within, async {
        let mut c = Conn::open(listen(port)).await;
        c.send(raw.as_bytes()).await;
        c.response().await.status
    })
    .await
    .ok()?;
    Some((answer, start.elapsed()))
}

/// gatehouse's threads by name.
fn threads_named(g: &Gatehouse, name: &str) -> usize {
    let pid = g.pid();
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|comm| comm.trim() == name)
        .count()
}

/// KDC requests gatehouse says it started, by whom.
fn kdc_attempts(g: &Gatehouse) -> (usize, usize) {
    let log = g.stderr();
    let attempts: Vec<&str> = log.lines().filter(|l| l.contains("asking the KDC")).collect();
    let background = attempts.iter().filter(|l| l.contains("background")).count();
    (background, attempts.len() - background)
}

/// Sends `forged` forged tokens on as many connections at once and, meanwhile,
/// anonymous requests to the other site one after another; checks both kinds
/// of answer for time and status.
async fn burst(port: u16, forged: u32, first: u32) {
    let attacks: Vec<_> = (first..first + forged)
        .map(|n| tokio::spawn(timed(port, negotiate("intranet.test", &forged_token(n)), Duration::from_secs(5))))
        .collect();
    // Let the forged tokens reach the workers first.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let start = Instant::now();
    let mut anonymous = 0;
    while start.elapsed() < Duration::from_millis(1500) {
        let answer = timed(port, get("www.test", "/"), Duration::from_secs(2)).await;
        let (status, took) = answer.expect("an anonymous request got no answer within 2 s while forged tokens were in");
        assert_eq!(status, 200);
        assert!(took < Duration::from_millis(500), "an anonymous request took {took:?}");
        anonymous += 1;
    }
    assert!(anonymous >= 3, "only {anonymous} anonymous requests in 1.5 s");
    for (n, attack) in attacks.into_iter().enumerate() {
        let answer = attack.await.unwrap();
        let (status, took) = answer.unwrap_or_else(|| panic!("forged token {n} got no answer within 5 s"));
        assert_eq!(status, 401, "forged token {n}");
        assert!(took < Duration::from_secs(1), "forged token {n} took {took:?} to be refused");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forged_tokens_neither_stall_the_workers_nor_reach_the_kdc() {
    let kdc = SilentKdc::start();
    let dir = tempfile::tempdir().unwrap();
    kerberos_files(dir.path(), &kdc);
    let backend = Backend::start().await;
    let g = Gatehouse::start_in(dir, &config(backend.addr, "proxy.keytab"));
    let port = g.port();

    // Two per worker would have stopped every worker until MIT gave up.
    burst(port, 8, 0).await;
    let log = g.stderr();
    assert_eq!(log.matches("Kerberos ticket refused").count(), 8, "{log}");

    // Every request the KDC saw is one gatehouse's credential thread made;
    // none came from a forged token.
    let (background, other) = kdc_attempts(&g);
    assert_eq!(other, 0, "a KDC request not made by the credential thread:\n{log}");
    assert!(
        kdc.requests() <= background,
        "the KDC saw {} requests but gatehouse's thread made {background}:\n{log}",
        kdc.requests()
    );
    // That thread asked at start-up, before any client, and is still waiting
    // for MIT to give up on the silent KDC.
    assert!(kdc.requests() >= 1 && background >= 1, "no start-up request to the KDC:\n{log}");
    assert_eq!(threads_named(&g, "gatehouse-kcd"), 1, "{log}");
    assert!(!log.contains("panicked"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reload_with_a_new_keytab_gets_its_credentials_in_the_background_too() {
    let kdc = SilentKdc::start();
    let dir = tempfile::tempdir().unwrap();
    kerberos_files(dir.path(), &kdc);
    std::fs::copy(dir.path().join("proxy.keytab"), dir.path().join("new.keytab")).unwrap();
    let backend = Backend::start().await;
    let g = Gatehouse::start_in(dir, &config(backend.addr, "proxy.keytab"));
    let port = g.port();
    g.wait_for(|| kdc_attempts(&g).0 >= 1, "the first background attempt");

    let reload_started = Instant::now();
    g.reload(&config(backend.addr, "new.keytab"));
    // The reload itself did not wait for the silent KDC.
    assert!(reload_started.elapsed() < Duration::from_secs(5), "{:?}", reload_started.elapsed());
    g.wait_for(|| kdc_attempts(&g).0 >= 2, "the new delegator's background attempt");
    // The old thread is still inside MIT's call to the silent KDC; the new
    // delegator has its own.
    assert_eq!(threads_named(&g, "gatehouse-kcd"), 2, "{}", g.stderr());

    burst(port, 6, 100).await;
    let (background, other) = kdc_attempts(&g);
    assert_eq!(other, 0, "{}", g.stderr());
    assert!(kdc.requests() <= background, "the KDC saw {} requests, the threads made {background}", kdc.requests());
}

/// The decision for the time before the acceptor has its TGT (KDC down at
/// start, or not asked yet): clients' tickets are accepted with the keytab
/// alone, and delegation for them starts with S4U2Self, exactly as for an
/// NTLM user; once the background thread has the TGT, forwardable tickets are
/// evidence again. Against the lab's KDC (skipped without the lab).
#[test]
fn before_the_acceptor_has_its_tgt_tickets_are_accepted_and_delegation_uses_s4u2self() {
    use libgssapi::context::{ClientCtx, CtxFlags};
    use libgssapi::credential::{Cred, CredUsage};
    use libgssapi::name::Name;
    use libgssapi::oid::{GSS_MECH_KRB5, GSS_NT_KRB5_PRINCIPAL};
    use std::sync::atomic::Ordering::Relaxed;

    let Some(env) = lab_env() else { return };
    let dir = tempfile::tempdir().unwrap();
    let cc = kinit(&env, dir.path(), "alice", "Alice-Pass1", &[]);
    std::env::set_var("KRB5_CONFIG", &env["KRB5_CONFIG"]);
    std::env::set_var("KRB5CCNAME", &cc);
    let token = || {
        let cred = Cred::acquire(None, None, CredUsage::Initiate, None).unwrap();
        let name = Name::new(b"HTTP/proxy.ad.test@AD.TEST", Some(GSS_NT_KRB5_PRINCIPAL)).unwrap();
        let mut ctx = ClientCtx::new(Some(cred), name, CtxFlags::GSS_C_MUTUAL_FLAG, Some(GSS_MECH_KRB5));
        ctx.step(None, None).unwrap().unwrap().to_vec()
    };
    let alice = kcd::User::Account("alice@AD.TEST".into());
    let backend = "HTTP/backend.ad.test";

    // Not started: no TGT for the acceptor, and accepting does not ask for one.
    let d = Arc::new(kcd::Delegator::new("svc-proxy@AD.TEST", &env["LAB_PROXY_KEYTAB"], "AD.TEST"));
    let accepted = d.accept(&token(), "HTTP/proxy.ad.test", None).unwrap();
    assert_eq!(accepted.client, "alice@AD.TEST");
    assert!(!accepted.evidence, "no S4U2Proxy evidence without the acceptor's TGT");
    d.token(&alice, backend, kcd::Token::Spnego, None).expect("delegation by S4U2Self");
    assert_eq!(d.stats().s4u2self.load(Relaxed), 1);

    // Started: the thread gets the TGT, and the next ticket is evidence.
    let d = Arc::new(kcd::Delegator::new("svc-proxy@AD.TEST", &env["LAB_PROXY_KEYTAB"], "AD.TEST"));
    d.start(Duration::from_secs(10)).unwrap();
    let accepted = d.accept(&token(), "HTTP/proxy.ad.test", None).unwrap();
    assert!(accepted.evidence, "a forwardable ticket is evidence once the acceptor has its TGT");
    d.token(&alice, backend, kcd::Token::Spnego, None).expect("delegation with the client's ticket");
    assert_eq!(d.stats().s4u2self.load(Relaxed), 0);
    assert_eq!(d.stats().evidence.load(Relaxed), 1);
}
