//! The quick acceptor (a worker's long-lived krb5 context, `ffi::accept_quick`)
//! against the lab domain, with MIT's own client: what it accepts, MIT's
//! client takes its AP-REP for; the PAC it reads is the one MIT's GSS layer
//! reads; everything it may not judge (a delegated TGT, wrong channel
//! bindings, a forged token, a client that insists on bindings it did not
//! send) goes to MIT's GSS layer, which refuses or accepts it as before.
//! (Own test binary, one test: it points KRB5CCNAME and KRB5_CONFIG at its own files.)

use std::sync::atomic::Ordering::Relaxed;

use common::lab_env;
use libgssapi::context::{ClientCtx, CtxFlags, SecurityContext};
use libgssapi::credential::{Cred, CredUsage};
use libgssapi::name::Name;
use libgssapi::oid::{GSS_MECH_KRB5, GSS_NT_KRB5_PRINCIPAL};

mod common;

const TARGET: &str = "HTTP/proxy.ad.test@AD.TEST";
const SPN: &str = "HTTP/proxy.ad.test";

fn client(cred: &Cred, flags: CtxFlags) -> ClientCtx {
    let name = Name::new(TARGET.as_bytes(), Some(GSS_NT_KRB5_PRINCIPAL)).unwrap();
    ClientCtx::new(Some(cred.clone()), name, flags, Some(GSS_MECH_KRB5))
}

fn first_token(ctx: &mut ClientCtx, bindings: Option<&[u8]>) -> Vec<u8> {
    ctx.step(None, bindings).unwrap().unwrap().to_vec()
}

fn counts(d: &kcd::Delegator) -> (u64, u64) {
    (d.stats().quick.load(Relaxed), d.stats().quick_declined.load(Relaxed))
}

#[test]
fn the_quick_acceptor_accepts_what_mit_accepts_and_leaves_the_rest_to_it() {
    let Some(env) = lab_env() else { return };
    let dir = tempfile::tempdir().unwrap();
    // The lab's krb5.conf, and a copy whose client asserts MS-KILE's
    // KERB_AP_OPTIONS_CBT in every authenticator (MIT's
    // client_aware_channel_bindings), for the one case that needs it.
    let lab_conf = std::fs::read_to_string(&env["KRB5_CONFIG"]).unwrap();
    assert!(lab_conf.contains("[libdefaults]"), "the lab's krb5.conf has no [libdefaults]");
    let cbt_conf = dir.path().join("krb5-cbt.conf");
    std::fs::write(
        &cbt_conf,
        lab_conf.replace("[libdefaults]", "[libdefaults]\n client_aware_channel_bindings = true"),
    )
    .unwrap();
    std::env::set_var("KRB5_CONFIG", &env["KRB5_CONFIG"]);
    let ccache = format!("FILE:{}", dir.path().join("alice.cc").display());
    std::env::set_var("KRB5CCNAME", &ccache);
    common::kinit("alice@AD.TEST", "Alice-Pass1", &ccache);
    let alice = Cred::acquire(None, None, CredUsage::Initiate, None).unwrap();

    // Accept-only (never started: no TGT), so no ticket would become
    // evidence: every ticket goes to the quick acceptor first.
    let d = kcd::Delegator::new("svc-proxy@AD.TEST", &env["LAB_PROXY_KEYTAB"], "AD.TEST");

    // Mutual authentication: MIT's client takes the quick acceptor's AP-REP.
    let mut ctx = client(&alice, CtxFlags::GSS_C_MUTUAL_FLAG);
    let token = first_token(&mut ctx, None);
    let quick = d.accept(&token, SPN, None).unwrap();
    assert_eq!(counts(&d), (1, 0), "accepted by the quick acceptor");
    assert_eq!(quick.client, "alice@AD.TEST");
    assert!(!quick.evidence && !quick.channel_bound);
    assert!(!quick.mutual.is_empty(), "mutual authentication asked, AP-REP expected");
    assert!(ctx.step(Some(&quick.mutual), None).unwrap().is_none(), "the client wants no further token");
    assert!(ctx.is_complete(), "MIT's client completed its context with the AP-REP");
    let quick_logon = quick.logon.clone().expect("the PAC's logon information, verified");
    assert_eq!(quick_logon.account, "alice");

    // A tampered AP-REP is not taken by the client: the reply is checked.
    let mut ctx = client(&alice, CtxFlags::GSS_C_MUTUAL_FLAG);
    let token = first_token(&mut ctx, None);
    let mut reply = d.accept(&token, SPN, None).unwrap().mutual;
    let last = reply.len() - 1;
    reply[last] ^= 1;
    assert!(ctx.step(Some(&reply), None).is_err(), "a changed AP-REP must not complete the client's context");

    // No mutual authentication asked: no AP-REP.
    let mut ctx = client(&alice, CtxFlags::empty());
    let token = first_token(&mut ctx, None);
    let plain = d.accept(&token, SPN, None).unwrap();
    assert!(plain.mutual.is_empty());
    assert_eq!(counts(&d), (3, 0));

    // A delegated TGT is MIT's to unpack: declined, then accepted by MIT's
    // GSS layer, whose PAC reading is the same as the quick one's.
    let mut ctx = client(&alice, CtxFlags::GSS_C_MUTUAL_FLAG | CtxFlags::GSS_C_DELEG_FLAG);
    let token = first_token(&mut ctx, None);
    let by_gss = d.accept(&token, SPN, None).unwrap();
    assert_eq!(counts(&d), (3, 1), "declined by the quick acceptor, accepted by MIT's GSS layer");
    assert_eq!(by_gss.client, quick.client);
    assert_eq!(by_gss.logon.as_ref(), Some(&quick_logon), "both read the same verified PAC");
    assert!(ctx.step(Some(&by_gss.mutual), None).unwrap().is_none());

    // The same token again: refused as a replay before either acceptor.
    let e = d.accept(&token, SPN, None).unwrap_err();
    assert_eq!(e.kind(), kcd::Kind::Replay, "{e}");
    assert_eq!(counts(&d), (3, 1));

    // Forged: the authenticator's last byte changed. Declined, and refused by MIT.
    let mut ctx = client(&alice, CtxFlags::GSS_C_MUTUAL_FLAG);
    let mut forged = first_token(&mut ctx, None);
    let last = forged.len() - 1;
    forged[last] ^= 1;
    let e = d.accept(&forged, SPN, None).unwrap_err();
    assert!(e.to_string().contains("accepting"), "{e}");
    assert_eq!(counts(&d), (3, 2));

    // Channel bindings: matching ones are bound by the quick acceptor...
    let ours = kcd::tls_server_end_point(&[1; 32]);
    let theirs = kcd::tls_server_end_point(&[2; 32]);
    let mut ctx = client(&alice, CtxFlags::GSS_C_MUTUAL_FLAG);
    let bound = d.accept(&first_token(&mut ctx, Some(&ours)), SPN, Some(&ours)).unwrap();
    assert!(bound.channel_bound);
    assert_eq!(counts(&d), (4, 2));
    // ...others declined and refused by MIT...
    let mut ctx = client(&alice, CtxFlags::GSS_C_MUTUAL_FLAG);
    let e = d.accept(&first_token(&mut ctx, Some(&theirs)), SPN, Some(&ours)).unwrap_err();
    assert_eq!(e.kind(), kcd::Kind::BadBindings, "{e}");
    assert_eq!(counts(&d), (4, 3));
    // ...and none sent is accepted, unbound (the listener's policy decides).
    let mut ctx = client(&alice, CtxFlags::GSS_C_MUTUAL_FLAG);
    let unbound = d.accept(&first_token(&mut ctx, None), SPN, Some(&ours)).unwrap();
    assert!(!unbound.channel_bound);
    assert_eq!(counts(&d), (5, 3));

    // A client that asserts KERB_AP_OPTIONS_CBT but sent no bindings, where
    // the connection has some: declined, and refused by MIT. With no
    // bindings of ours the assertion binds nothing, and the quick acceptor
    // takes the ticket.
    std::env::set_var("KRB5_CONFIG", &cbt_conf);
    let mut ctx = client(&alice, CtxFlags::GSS_C_MUTUAL_FLAG);
    let insisting = first_token(&mut ctx, None);
    let e = d.accept(&insisting, SPN, Some(&ours)).unwrap_err();
    assert_eq!(e.kind(), kcd::Kind::BadBindings, "{e}");
    assert_eq!(counts(&d), (5, 4));
    let mut ctx = client(&alice, CtxFlags::GSS_C_MUTUAL_FLAG);
    let insisting = first_token(&mut ctx, None);
    assert!(d.accept(&insisting, SPN, None).is_ok());
    assert_eq!(counts(&d), (6, 4));
    // ...and with the bindings it asserts, it is bound.
    let mut ctx = client(&alice, CtxFlags::GSS_C_MUTUAL_FLAG);
    assert!(d.accept(&first_token(&mut ctx, Some(&ours)), SPN, Some(&ours)).unwrap().channel_bound);
    assert_eq!(counts(&d), (7, 4));
    std::env::set_var("KRB5_CONFIG", &env["KRB5_CONFIG"]);

    // A reload gives the quick acceptor new keys (a new context on this thread).
    assert!(d.reload_keytab().unwrap() > 0);
    let mut ctx = client(&alice, CtxFlags::GSS_C_MUTUAL_FLAG);
    assert_eq!(d.accept(&first_token(&mut ctx, None), SPN, None).unwrap().client, "alice@AD.TEST");
    assert_eq!(counts(&d), (8, 4));

    // With the acceptor's TGT, the first ticket of a connection builds
    // evidence (MIT's GSS layer); the next, with alice's credential cached,
    // is the quick acceptor's.
    let d = std::sync::Arc::new(kcd::Delegator::new("svc-proxy@AD.TEST", &env["LAB_PROXY_KEYTAB"], "AD.TEST"));
    d.start(std::time::Duration::from_secs(10)).unwrap();
    let mut ctx = client(&alice, CtxFlags::GSS_C_MUTUAL_FLAG);
    let first = d.accept_from(&first_token(&mut ctx, None), SPN, None, None).unwrap();
    assert!(first.evidence);
    assert_eq!(counts(&d), (0, 0), "evidence wanted: not the quick acceptor's");
    let mut ctx = client(&alice, CtxFlags::GSS_C_MUTUAL_FLAG);
    let next = d.accept_from(&first_token(&mut ctx, None), SPN, None, Some("alice@AD.TEST")).unwrap();
    assert_eq!(next.client, "alice@AD.TEST");
    assert!(ctx.step(Some(&next.mutual), None).unwrap().is_none());
    assert_eq!(counts(&d), (1, 0));
    assert_eq!(d.stats().evidence_skipped.load(Relaxed), 1);
}
