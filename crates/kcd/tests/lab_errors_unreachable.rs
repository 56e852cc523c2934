//! A domain whose KDC does not answer (krb5.conf points at a closed port):
//! every path says Unreachable, from the krb5 code, although kcd's own words
//! for the step name the keytab. (Own test binary: KRB5_CONFIG is the
//! process's.)

use common::lab_env;
use kcd::{Kind, User};

mod common;

#[test]
fn a_kdc_that_does_not_answer_is_unreachable_on_every_path() {
    let Some(env) = lab_env() else { return };
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let conf = std::fs::read_to_string(&env["KRB5_CONFIG"]).unwrap();
    assert!(conf.contains("kdc = 127.0.0.21:88"), "{conf}");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("krb5.conf");
    std::fs::write(&path, conf.replace("127.0.0.21:88", &closed.to_string())).unwrap();
    std::env::set_var("KRB5_CONFIG", &path);
    std::env::set_var("KRB5CCNAME", "MEMORY:gatehouse-test-empty-default");
    let d = kcd::Delegator::new("svc-proxy@AD.TEST", &env["LAB_PROXY_KEYTAB"], "AD.TEST");
    let bob = User::Account("bob@AD.TEST".into());

    let e = d.check_s4u2self(&bob).unwrap_err();
    assert!(e.to_string().contains("keytab"), "the step's words name the keytab: {e}");
    assert_eq!((e.kind(), e.code_name()), (Kind::Unreachable, "KRB5_KDC_UNREACH"), "{e}");
    assert!(e.is_unreachable() && !e.names_an_account());
    let x = kcd::explain(&e, "svc-proxy@AD.TEST", "", "bob@AD.TEST").unwrap();
    assert_eq!(x.code, "no KDC", "{x:?}");
    assert!(!x.powershell.iter().chain(&x.samba_tool).any(|l| l.contains("ktpass") || l.contains("exportkeytab")));
    assert_eq!(d.users_in_flight(), 0);

    // The failure that answers the next callers keeps its kind.
    let e = d.token(&bob, "HTTP/backend.ad.test", kcd::Token::Spnego, None).unwrap_err();
    assert!(e.to_string().contains("not retried yet"), "{e}");
    assert!(e.is_unreachable(), "{e}");
    assert_eq!(d.check_acceptor("HTTP/proxy.ad.test").unwrap_err().kind(), Kind::Unreachable);

    // A password check: no answer is not a wrong password.
    let e = d.check_password(&bob, "Bob-Pass1", "HTTP/proxy.ad.test").unwrap_err();
    assert!(e.is_unreachable() && !e.names_an_account(), "{e}");
    assert_eq!(d.stats().errors_by_code().get("KRB5_KDC_UNREACH"), Some(&2), "{:?}", d.stats().errors_by_code());
}
