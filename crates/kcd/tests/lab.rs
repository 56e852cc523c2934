//! Against the lab domain: svc-proxy impersonates a user and the Kerberos-only
//! Apache backend accepts the token as that user. Needs `lab/lab.sh start`;
//! without it the test fails unless GATEHOUSE_LAB_SKIP=1 (see `testkit::lab`).

use std::io::{Read, Write};

use base64::Engine;
use common::lab_env;

mod common;

fn ask_backend(token: &[u8]) -> String {
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

fn account(user: &str) -> kcd::User {
    kcd::User::Account(format!("{user}@AD.TEST"))
}

fn delegator(env: &std::collections::HashMap<String, String>) -> kcd::Delegator {
    // MIT reads its configuration from the environment; and the default cache
    // is pointed at an empty memory cache so that nothing can fall back to it.
    std::env::set_var("KRB5_CONFIG", &env["KRB5_CONFIG"]);
    std::env::set_var("KRB5CCNAME", "MEMORY:gatehouse-test-empty-default");
    kcd::Delegator::new("svc-proxy@AD.TEST", &env["LAB_PROXY_KEYTAB"], "AD.TEST")
}

/// The lab gives carol the UPN carol.jones@corp.example (not her account name
/// in the realm); alice keeps the default alice@ad.test.
#[test]
fn upn_comes_from_the_pac_and_the_backend_sees_it() {
    let Some(env) = lab_env() else { return };
    let d = delegator(&env);
    assert_eq!(d.upn("carol@AD.TEST").unwrap(), "carol.jones@corp.example");
    assert_eq!(d.upn("alice@AD.TEST").unwrap(), "alice@ad.test");
    // Cached: no second lookup.
    let lookups = d.stats().upn_lookups.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(d.upn("carol@AD.TEST").unwrap(), "carol.jones@corp.example");
    assert_eq!(d.stats().upn_lookups.load(std::sync::atomic::Ordering::Relaxed), lookups);
    let carol = kcd::User::Upn { upn: "carol.jones@corp.example".into(), account: "carol@AD.TEST".into() };
    let token = d.token(&carol, "HTTP/backend.ad.test", kcd::Token::Spnego, None).unwrap();
    let reply = ask_backend(&token);
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(reply.contains("REMOTE_USER=carol.jones\\@corp.example@AD.TEST"), "{reply}");
    // A UPN nobody has is refused by the KDC, and counted by its code.
    let nobody = kcd::User::Upn { upn: "nobody@corp.example".into(), account: "nobody@AD.TEST".into() };
    let e = d.token(&nobody, "HTTP/backend.ad.test", kcd::Token::Spnego, None).unwrap_err();
    eprintln!("refused as expected: {e}");
    assert!(d.upn("nobody-here@AD.TEST").is_err());
    let codes = d.stats().errors_by_code();
    assert_eq!(codes.get("KDC_ERR_C_PRINCIPAL_UNKNOWN"), Some(&2), "{codes:?}");
}

#[test]
fn users_reach_the_kerberos_backend_as_themselves() {
    let Some(env) = lab_env() else { return };
    let d = delegator(&env);
    for (user, kind) in [("bob", kcd::Token::Spnego), ("alice", kcd::Token::Spnego), ("bob", kcd::Token::Kerberos)] {
        let token = d.token(&account(user), "HTTP/backend.ad.test", kind, None).unwrap();
        let reply = ask_backend(&token);
        assert!(reply.starts_with("HTTP/1.1 200"), "{user} {kind:?}: {reply}");
        assert!(reply.contains(&format!("REMOTE_USER={user}@AD.TEST")), "{user} {kind:?}: {reply}");
    }
    // Steady state costs no KDC round trip: one S4U2Self per user and token kind.
    let before = d.stats().s4u2self.load(std::sync::atomic::Ordering::Relaxed);
    for _ in 0..10 {
        let token = d.token(&account("bob"), "HTTP/backend.ad.test", kcd::Token::Spnego, None).unwrap();
        assert!(ask_backend(&token).contains("REMOTE_USER=bob@AD.TEST"));
    }
    assert_eq!(
        d.stats().s4u2self.load(std::sync::atomic::Ordering::Relaxed),
        before,
        "S4U2Self repeated for a cached user"
    );
    assert_eq!(before, 2, "one S4U2Self per user, whatever the token kind");
    // An SPN the account may not delegate to is refused by the KDC, with a reason.
    let e = d.token(&account("bob"), "HTTP/proxy.ad.test", kcd::Token::Spnego, None).unwrap_err();
    assert!(e.to_string().contains("S4U2Proxy"), "{e}");
    assert_eq!((e.kind(), e.code_name()), (kcd::Kind::BadOption, "KDC_ERR_BADOPTION"), "{e}");
    eprintln!("refused as expected: {e}");
    // A user that does not exist cannot be impersonated.
    let e = d.token(&account("nobody-here"), "HTTP/backend.ad.test", kcd::Token::Spnego, None).unwrap_err();
    assert_eq!(e.kind(), kcd::Kind::ClientUnknown, "{e}");
}
