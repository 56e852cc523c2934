//! KDC failover: krb5.conf lists a KDC that does not answer before the lab's
//! real one. MIT must move on to the next KDC by itself, for the service's TGT,
//! S4U2Self and S4U2Proxy alike. (Own test binary: it changes KRB5_CONFIG and
//! KRB5_TRACE for the whole process.)

use common::lab_env;

mod common;

#[test]
fn a_dead_first_kdc_is_skipped() {
    let Some(env) = lab_env() else { return };
    let dir = tempfile::tempdir().unwrap();
    let conf = std::fs::read_to_string(&env["KRB5_CONFIG"]).unwrap();
    // 127.0.0.22 is loopback with nothing on port 88: connections are refused
    // at once, as with a domain controller that is down.
    assert!(conf.contains("kdc = 127.0.0.21:88"), "{conf}");
    let conf = conf.replace("kdc = 127.0.0.21:88", "kdc = 127.0.0.22:88\n    kdc = 127.0.0.21:88");
    let krb5_conf = dir.path().join("krb5.conf");
    std::fs::write(&krb5_conf, conf).unwrap();
    let trace = dir.path().join("trace");
    std::env::set_var("KRB5_CONFIG", &krb5_conf);
    std::env::set_var("KRB5_TRACE", &trace);
    std::env::set_var("KRB5CCNAME", "MEMORY:gatehouse-test-empty-default");
    let d = kcd::Delegator::new("svc-proxy@AD.TEST", &env["LAB_PROXY_KEYTAB"], "AD.TEST");
    let user = kcd::User::Account("alice@AD.TEST".into());
    d.token(&user, "HTTP/backend.ad.test", kcd::Token::Spnego, None).expect("the second KDC should answer");
    let trace = std::fs::read_to_string(&trace).unwrap();
    let dead = trace.find("127.0.0.22:88").expect("the dead KDC was never tried");
    let live = trace[dead..].find("127.0.0.21:88").expect("the live KDC was not tried after the dead one");
    assert!(trace[dead + live..].contains("Received answer"), "{trace}");
}
