//! The lab domain's settings, for the tests that need it: one implementation
//! for every crate's lab tests, in `testkit::lab` (which also says why a lab
//! test without a lab fails unless told to skip).

pub use testkit::lab::lab_env;

/// `kinit PRINCIPAL` with its password into `ccache` (KRB5_CONFIG as the
/// process has it).
#[allow(dead_code)]
pub fn kinit(principal: &str, password: &str, ccache: &str) {
    use std::io::Write;
    let mut kinit = std::process::Command::new("kinit")
        .arg(principal)
        .env("KRB5CCNAME", ccache)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    kinit.stdin.take().unwrap().write_all(format!("{password}\n").as_bytes()).unwrap();
    assert!(kinit.wait().unwrap().success(), "kinit {principal} failed");
}
