//! Accepting clients' Kerberos tickets, against the lab domain: alice's own
//! ticket (from kinit with her password, as a domain-joined client has) is
//! accepted for gatehouse's SPN and then serves as the S4U2Proxy evidence, with
//! no S4U2Self. Forged, replayed, misdirected and wrongly bound tokens are
//! refused. (Own test binary: it points KRB5CCNAME at alice's cache.)

use std::io::{Read, Write};
use std::sync::atomic::Ordering::Relaxed;

use common::lab_env;
use libgssapi::context::{ClientCtx, CtxFlags};
use libgssapi::credential::{Cred, CredUsage};
use libgssapi::name::Name;
use libgssapi::oid::{GSS_MECH_KRB5, GSS_NT_KRB5_PRINCIPAL};

mod common;

fn client_token(cred: &Cred, target: &str, bindings: Option<&[u8]>) -> Vec<u8> {
    let name = Name::new(target.as_bytes(), Some(GSS_NT_KRB5_PRINCIPAL)).unwrap();
    let mut ctx = ClientCtx::new(Some(cred.clone()), name, CtxFlags::GSS_C_MUTUAL_FLAG, Some(GSS_MECH_KRB5));
    ctx.step(None, bindings).unwrap().unwrap().to_vec()
}

fn ask_backend(token: &[u8]) -> String {
    use base64::Engine;
    let mut s = std::net::TcpStream::connect("127.0.0.1:18080").unwrap();
    let auth = base64::engine::general_purpose::STANDARD.encode(token);
    write!(
        s,
        "GET / HTTP/1.1\r\nHost: backend.ad.test\r\nAuthorization: Negotiate {auth}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn clients_tickets_accepted_and_used_as_evidence() {
    let Some(env) = lab_env() else { return };
    let dir = tempfile::tempdir().unwrap();
    let ccache = format!("FILE:{}", dir.path().join("alice.cc").display());
    std::env::set_var("KRB5_CONFIG", &env["KRB5_CONFIG"]);
    std::env::set_var("KRB5CCNAME", &ccache);
    common::kinit("alice@AD.TEST", "Alice-Pass1", &ccache);
    let alice = Cred::acquire(None, None, CredUsage::Initiate, None).unwrap();

    let d = std::sync::Arc::new(kcd::Delegator::new("svc-proxy@AD.TEST", &env["LAB_PROXY_KEYTAB"], "AD.TEST"));
    // The acceptor's TGT, which turns forwardable tickets into evidence, comes
    // from the background thread.
    d.start(std::time::Duration::from_secs(10)).unwrap();
    let spn = "HTTP/proxy.ad.test";
    let token = client_token(&alice, "HTTP/proxy.ad.test@AD.TEST", None);
    let accepted = d.accept(&token, spn, None).unwrap();
    assert_eq!(accepted.client, "alice@AD.TEST");
    assert!(accepted.evidence, "a forwardable ticket is S4U2Proxy evidence");
    assert!(!accepted.mutual.is_empty(), "mutual authentication asked, AP-REP expected");
    assert!(!accepted.channel_bound);

    // alice's own ticket is the evidence: the backend sees her, and no S4U2Self was made.
    let user = kcd::User::Account("alice@AD.TEST".into());
    let t = d.token(&user, "HTTP/backend.ad.test", kcd::Token::Spnego, None).unwrap();
    assert!(ask_backend(&t).contains("REMOTE_USER=alice@AD.TEST"));
    assert_eq!(d.stats().s4u2self.load(Relaxed), 0);
    assert_eq!(d.stats().evidence.load(Relaxed), 1);

    // The same token again: a replay.
    let e = d.accept(&token, spn, None).unwrap_err();
    assert!(e.to_string().contains("replayed"), "{e}");
    assert_eq!(e.kind(), kcd::Kind::Replay, "{e}");

    // A forged token: the authenticator's last byte changed.
    let mut forged = client_token(&alice, "HTTP/proxy.ad.test@AD.TEST", None);
    let last = forged.len() - 1;
    forged[last] ^= 1;
    let e = d.accept(&forged, spn, None).unwrap_err();
    eprintln!("forged: {e}");
    assert!(e.to_string().contains("accepting"), "{e}");

    // A ticket for another name of the same account (in the keytab, but not the SPN gatehouse serves).
    let other = client_token(&alice, "svc-proxy@AD.TEST", None);
    let e = d.accept(&other, spn, None).unwrap_err();
    assert!(e.to_string().contains("the ticket is for svc-proxy@AD.TEST"), "{e}");
    assert_eq!(e.kind(), kcd::Kind::WrongPrincipal, "{e}");

    // Channel bindings: matching ones are reported, others refused, absent ones tolerated here
    // (the listener's policy decides whether absence is acceptable).
    let ours = kcd::tls_server_end_point(&[1; 32]);
    let theirs = kcd::tls_server_end_point(&[2; 32]);
    let bound = client_token(&alice, "HTTP/proxy.ad.test@AD.TEST", Some(&ours));
    assert!(d.accept(&bound, spn, Some(&ours)).unwrap().channel_bound);
    let wrong = client_token(&alice, "HTTP/proxy.ad.test@AD.TEST", Some(&theirs));
    let e = d.accept(&wrong, spn, Some(&ours)).unwrap_err();
    eprintln!("wrong bindings: {e}");
    let unbound = client_token(&alice, "HTTP/proxy.ad.test@AD.TEST", None);
    assert!(!d.accept(&unbound, spn, Some(&ours)).unwrap().channel_bound);
    // Not Kerberos at all.
    assert!(d.accept(b"NTLMSSP\0\x01\0\0\0", spn, None).is_err());
    assert_eq!(d.stats().refused.load(Relaxed), 5);
}
