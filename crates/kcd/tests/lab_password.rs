//! Changing a password through the domain (RFC 3244, MIT's
//! krb5_change_password), against the lab, with users of the test's own
//! (created with samba-tool, deleted however the test ends): a password that
//! must change at next logon is refused for sign-in with `KeyExpired`, is
//! changed with the old one, and the new one then works; the domain's policy
//! (too short, the history) comes back in words; a wrong current password
//! and an unknown user are errors of their kinds.

use std::process::Command;

use common::lab_env;
use kcd::{change_password, Changed, Delegator, Kind, User};

mod common;

fn samba_tool(smb: &str, args: &[&str]) -> String {
    let out = Command::new("samba-tool").args(args).args(["-s", smb]).output().expect("samba-tool");
    assert!(
        out.status.success(),
        "samba-tool {}: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

struct Account {
    smb: String,
    name: String,
}

impl Drop for Account {
    fn drop(&mut self) {
        let _ = Command::new("samba-tool").args(["user", "delete", &self.name, "-s", &self.smb]).output();
    }
}

#[test]
fn an_expired_password_is_changed_through_the_domain() {
    let Some(env) = lab_env() else { return };
    std::env::set_var("KRB5_CONFIG", &env["KRB5_CONFIG"]);
    let smb = env["SMB_CONF"].clone();
    let id = std::process::id() % 100_000;
    let a = Account { smb: smb.clone(), name: format!("chpw{id}") };
    let first = format!("Chpw-Pass1-{id}");
    samba_tool(&smb, &["user", "create", &a.name, &first, "--must-change-at-next-login"]);
    let user = User::Account(format!("{}@AD.TEST", a.name));
    let d = Delegator::new("svc-proxy@AD.TEST", &env["LAB_PROXY_KEYTAB"], "AD.TEST");
    let e = d.check_password(&user, &first, "HTTP/proxy.ad.test").unwrap_err();
    assert_eq!(e.kind(), Kind::KeyExpired, "{e}");

    let e = change_password(&user, "Wrong-Pass9", "Chpw-Pass2-new").unwrap_err();
    assert_eq!(e.kind(), Kind::PreauthFailed, "{e}");
    let unknown = User::Account(format!("nosuch{id}@AD.TEST"));
    assert_eq!(change_password(&unknown, "x", "y").unwrap_err().kind(), Kind::ClientUnknown);

    // The domain's rules, in words.
    match change_password(&user, &first, "short").unwrap() {
        Changed::Refused { code, words } => {
            assert_eq!(code, 4, "KRB5_KPASSWD_SOFTERROR: {words}");
            assert!(words.to_lowercase().contains("password"), "{words}");
            eprintln!("policy words: {words}");
        }
        Changed::Done => panic!("a 5-character password was accepted"),
    }
    let second = format!("Chpw-Pass2-{id}");
    assert_eq!(change_password(&user, &first, &second).unwrap(), Changed::Done);
    d.check_password(&user, &second, "HTTP/proxy.ad.test").expect("the new password signs in");
    assert!(d.check_password(&user, &first, "HTTP/proxy.ad.test").is_err(), "the old one no longer does");
}
