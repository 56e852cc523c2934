//! Kerberos failures against the lab domain, each with the kind its krb5
//! code gives (never its words), and the user's S4U2Self lock gone after it.

use std::path::Path;
use std::process::{Command, Stdio};

use common::lab_env;
use kcd::{Delegator, Kind, User};

mod common;

fn delegator(env: &std::collections::HashMap<String, String>, keytab: &str) -> Delegator {
    std::env::set_var("KRB5_CONFIG", &env["KRB5_CONFIG"]);
    std::env::set_var("KRB5CCNAME", "MEMORY:gatehouse-test-empty-default");
    Delegator::new("svc-proxy@AD.TEST", keytab, "AD.TEST")
}

/// Issue 11, defect 1: the lock of a user whose S4U2Self failed stayed in
/// the map, one entry per name a client ever tried.
#[test]
fn a_user_the_kdc_does_not_know_leaves_no_lock_behind() {
    let Some(env) = lab_env() else { return };
    let d = std::sync::Arc::new(delegator(&env, &env["LAB_PROXY_KEYTAB"]));
    for i in 0..3 {
        let nobody = User::Account(format!("nobody-{i}@AD.TEST"));
        let e = d.check_s4u2self(&nobody).unwrap_err();
        assert_eq!((e.kind(), e.code_name()), (Kind::ClientUnknown, "KDC_ERR_C_PRINCIPAL_UNKNOWN"), "{e}");
        assert_eq!(d.users_in_flight(), 0, "{nobody}");
    }
    // Callers waiting for the same failing S4U2Self: none of them keeps it.
    let threads: Vec<_> = (0..6)
        .map(|_| {
            let d = d.clone();
            std::thread::spawn(move || {
                d.token(
                    &User::Account("nobody-at-all@AD.TEST".into()),
                    "HTTP/backend.ad.test",
                    kcd::Token::Spnego,
                    None,
                )
                .unwrap_err()
                .kind()
            })
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().unwrap(), Kind::ClientUnknown);
    }
    assert_eq!(d.users_in_flight(), 0);
    assert_eq!(d.stats().errors_by_code().get("KDC_ERR_C_PRINCIPAL_UNKNOWN"), Some(&9));
    // A user who exists is served as before, and leaves no lock either.
    d.check_s4u2self(&User::Account("bob@AD.TEST".into())).unwrap();
    assert_eq!(d.users_in_flight(), 0);
    let x = kcd::explain(
        &d.check_s4u2self(&User::Account("nobody-0@AD.TEST".into())).unwrap_err(),
        "svc-proxy",
        "",
        "nobody-0",
    )
    .unwrap();
    assert_eq!(x.code, "KDC_ERR_C_PRINCIPAL_UNKNOWN (6)");
}

/// A keytab for svc-proxy with a key from a password it does not have.
fn wrong_key_keytab(dir: &Path) -> String {
    let path = dir.join("wrong.keytab");
    let mut ktutil = Command::new("ktutil").stdin(Stdio::piped()).stdout(Stdio::null()).spawn().expect("ktutil");
    use std::io::Write;
    write!(
        ktutil.stdin.take().unwrap(),
        "addent -password -p svc-proxy@AD.TEST -k 9 -e aes256-cts-hmac-sha1-96 -s AD.TESTsvc-proxy\nNot-The-Pass-1\nwkt {}\nquit\n",
        path.display()
    )
    .unwrap();
    assert!(ktutil.wait().unwrap().success());
    assert!(path.exists(), "ktutil wrote no keytab");
    path.to_string_lossy().into_owned()
}

#[test]
fn keytab_problems_are_keytab_errors_and_a_wrong_key_is_preauth_failed() {
    let Some(env) = lab_env() else { return };
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.keytab");
    std::fs::write(&empty, b"").unwrap();
    let bob = User::Account("bob@AD.TEST".into());
    for keytab in [
        empty.to_string_lossy().into_owned(),
        dir.path().join("missing.keytab").to_string_lossy().into_owned(),
        // Another account's keytab: no key for svc-proxy.
        env["LAB_PROXY_KEYTAB"].replace("proxy.keytab", "backend.keytab"),
    ] {
        let d = delegator(&env, &keytab);
        let e = d.check_s4u2self(&bob).unwrap_err();
        assert_eq!(e.kind(), Kind::Keytab, "{keytab}: {e}");
        assert_eq!(kcd::explain(&e, "svc-proxy", "", "bob").unwrap().code, "keytab");
        assert_eq!(d.users_in_flight(), 0);
    }
    let d = delegator(&env, &wrong_key_keytab(dir.path()));
    let e = d.check_s4u2self(&bob).unwrap_err();
    assert_eq!((e.kind(), e.code_name()), (Kind::PreauthFailed, "KDC_ERR_PREAUTH_FAILED"), "{e}");
    let x = kcd::explain(&e, "svc-proxy", "", "bob").unwrap();
    assert!(x.powershell.iter().any(|l| l.contains("ktpass") && l.contains("RESETS svc-proxy's password")), "{x:?}");
    // The real keytab works (and its logon clears the bad attempt on svc-proxy).
    delegator(&env, &env["LAB_PROXY_KEYTAB"]).check_s4u2self(&bob).unwrap();
}
