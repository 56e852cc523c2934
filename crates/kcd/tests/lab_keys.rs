//! The acceptor's keys are held in memory (issue 20), against the lab domain:
//! tickets are accepted while the keytab file is gone, a reload that cannot
//! read it keeps the keys in use, and a reload that reads another keytab
//! accepts exactly what that file holds. A ticket whose user already has a
//! delegated credential cached is accepted without building evidence again,
//! unless it is someone else's than the connection had. (Own test binary: it
//! points KRB5CCNAME at the users' caches.)

use std::io::Write;
use std::sync::atomic::Ordering::Relaxed;

use common::lab_env;
use libgssapi::context::{ClientCtx, CtxFlags};
use libgssapi::credential::{Cred, CredUsage};
use libgssapi::name::Name;
use libgssapi::oid::{GSS_MECH_KRB5, GSS_NT_KRB5_PRINCIPAL};

mod common;

const SPN: &str = "HTTP/proxy.ad.test";

/// A fresh AP-REQ from `user`'s cache (MIT's default credential follows
/// KRB5CCNAME when it is used, so it is pointed at the user's each time).
fn client_token(user: &User) -> Vec<u8> {
    std::env::set_var("KRB5CCNAME", &user.0);
    let cred = Cred::acquire(None, None, CredUsage::Initiate, None).unwrap();
    let name = Name::new(b"HTTP/proxy.ad.test@AD.TEST", Some(GSS_NT_KRB5_PRINCIPAL)).unwrap();
    let mut ctx = ClientCtx::new(Some(cred), name, CtxFlags::GSS_C_MUTUAL_FLAG, Some(GSS_MECH_KRB5));
    ctx.step(None, None).unwrap().unwrap().to_vec()
}

/// A user's cache, holding their own TGT.
struct User(String);

/// kinit with the password into a cache of the user's own.
fn sign_in(dir: &std::path::Path, user: &str, password: &str) -> User {
    let ccache = format!("FILE:{}", dir.join(format!("{user}.cc")).display());
    std::env::set_var("KRB5CCNAME", &ccache);
    let mut kinit = std::process::Command::new("kinit")
        .arg(format!("{user}@AD.TEST"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    kinit.stdin.take().unwrap().write_all(format!("{password}\n").as_bytes()).unwrap();
    assert!(kinit.wait().unwrap().success(), "kinit {user} failed");
    User(ccache)
}

#[test]
fn keys_in_memory_replaced_on_reload_and_no_evidence_built_twice() {
    let Some(env) = lab_env() else { return };
    std::env::set_var("KRB5_CONFIG", &env["KRB5_CONFIG"]);
    let dir = tempfile::tempdir().unwrap();
    let alice = sign_in(dir.path(), "alice", "Alice-Pass1");
    let bob = sign_in(dir.path(), "bob", "Bob-Pass1");
    let keytab = dir.path().join("proxy.keytab");
    std::fs::copy(&env["LAB_PROXY_KEYTAB"], &keytab).unwrap();

    let d = std::sync::Arc::new(kcd::Delegator::new("svc-proxy@AD.TEST", keytab.to_str().unwrap(), "AD.TEST"));
    d.start(std::time::Duration::from_secs(10)).unwrap();
    let stats = d.stats();

    // First ticket of alice's: her evidence is kept.
    let a = d.accept_from(&client_token(&alice), SPN, None, None).unwrap();
    assert!(a.evidence, "a forwardable ticket is S4U2Proxy evidence");
    assert_eq!((stats.evidence.load(Relaxed), stats.evidence_skipped.load(Relaxed)), (1, 0));
    // Her next ticket on the same connection: accepted, no evidence built.
    let a = d.accept_from(&client_token(&alice), SPN, None, Some("alice@AD.TEST")).unwrap();
    assert_eq!(a.client, "alice@AD.TEST");
    assert!(!a.evidence && !a.mutual.is_empty());
    assert_eq!((stats.evidence.load(Relaxed), stats.evidence_skipped.load(Relaxed)), (1, 1));
    // bob's ticket where alice was expected: accepted again, with his evidence.
    let b = d.accept_from(&client_token(&bob), SPN, None, Some("alice@AD.TEST")).unwrap();
    assert_eq!(b.client, "bob@AD.TEST");
    assert!(b.evidence, "someone else's ticket still gets evidence");
    assert_eq!((stats.evidence.load(Relaxed), stats.evidence_skipped.load(Relaxed)), (2, 1));
    assert_eq!(stats.s4u2self.load(Relaxed), 0, "no S4U2Self: both came with their own tickets");

    // The file gone: the keys are in memory, tickets are still accepted.
    std::fs::remove_file(&keytab).unwrap();
    assert!(d.accept(&client_token(&alice), SPN, None).is_ok(), "keys read at start, not at each ticket");
    // A reload that cannot read the file keeps the keys in use, and says why.
    let e = d.reload_keytab().unwrap_err();
    assert_eq!(e.kind(), kcd::Kind::Keytab, "{e}");
    assert!(e.to_string().contains("reading the keytab") && e.to_string().contains("proxy.keytab"), "{e}");
    assert!(d.accept(&client_token(&alice), SPN, None).is_ok(), "a failed reload keeps the keys");

    // Another account's keytab read on reload: exactly its keys are accepted,
    // so the proxy's tickets no longer are.
    std::fs::copy(env["LAB_PROXY_KEYTAB"].replace("proxy.keytab", "backend.keytab"), &keytab).unwrap();
    assert!(d.reload_keytab().unwrap() > 0);
    let e = d.accept(&client_token(&alice), SPN, None).unwrap_err();
    assert!(
        e.to_string().contains("HTTP/proxy.ad.test@AD.TEST not found in keytab"),
        "a key no longer in the file is no longer accepted: {e}"
    );

    // The right keytab back, reloaded: accepted, and the accepting credential
    // still has the acceptor's TGT (evidence is built, not skipped, for a
    // user whose credential is not cached: carol has none).
    std::fs::copy(&env["LAB_PROXY_KEYTAB"], &keytab).unwrap();
    assert!(d.reload_keytab().unwrap() > 0);
    let carol = sign_in(dir.path(), "carol", "Carol-Pass1");
    let c = d.accept_from(&client_token(&carol), SPN, None, Some("carol@AD.TEST")).unwrap();
    assert_eq!(c.client, "carol@AD.TEST");
    assert!(c.evidence, "the TGT was kept through the reloads: forwardable tickets are still evidence");
    let a = d.accept_from(&client_token(&alice), SPN, None, Some("alice@AD.TEST")).unwrap();
    assert!(!a.evidence);
    assert_eq!(stats.evidence_skipped.load(Relaxed), 2);
}
