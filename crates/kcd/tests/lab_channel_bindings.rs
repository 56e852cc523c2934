//! Extended Protection towards the backend: the channel bindings given to
//! `token` travel inside the Kerberos authenticator, and the backend's MIT
//! acceptor (with the lab backend's keytab) accepts the token only with the same
//! bindings. Needs `lab/lab.sh start` (see lab.rs for the skip rule).

mod common;

use libgssapi::context::ServerCtx;
use libgssapi::credential::{Cred, CredUsage};

#[test]
fn the_backend_accepts_only_matching_channel_bindings() {
    let Some(env) = common::lab_env() else { return };
    std::env::set_var("KRB5_CONFIG", &env["KRB5_CONFIG"]);
    std::env::set_var("KRB5CCNAME", "MEMORY:gatehouse-test-cb-empty-default");
    // The acceptor side: the backend's own keytab.
    std::env::set_var("KRB5_KTNAME", format!("FILE:{}/backend.keytab", env["LAB"]));
    let d = kcd::Delegator::new("svc-proxy@AD.TEST", &env["LAB_PROXY_KEYTAB"], "AD.TEST");
    let accept = |token: &[u8], bindings: Option<&[u8]>| {
        let cred = Cred::acquire(None, None, CredUsage::Accept, None).expect("acceptor credential");
        ServerCtx::new(Some(cred)).step(token, bindings)
    };
    let bound = kcd::tls_server_end_point(&[0xab; 32]);
    let other = kcd::tls_server_end_point(&[0xcd; 32]);
    for kind in [kcd::Token::Kerberos, kcd::Token::Spnego] {
        let token =
            d.token(&kcd::User::Account("alice@AD.TEST".into()), "HTTP/backend.ad.test", kind, Some(&bound)).unwrap();
        assert!(accept(&token, Some(&bound)).is_ok(), "{kind:?}: matching bindings refused");
        let token =
            d.token(&kcd::User::Account("alice@AD.TEST".into()), "HTTP/backend.ad.test", kind, Some(&bound)).unwrap();
        assert!(accept(&token, Some(&other)).is_err(), "{kind:?}: bindings of another connection accepted");
    }
}
