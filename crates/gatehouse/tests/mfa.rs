//! The second factors' store with the real binary, without a browser and
//! without the lab: gatehouse restarted keeps every factor; `gatehouse mfa
//! list|reset|issue-code` over the control socket; a store file made
//! read-only refuses a reset with a clear message and loses nothing; a
//! damaged store stops start-up naming the file; `check` says plainly that
//! the sign-in does not ask for a second factor in this build.
//!
//! The second-step and enrolment pages are not in this build, so factors are
//! put into the store here the way the store itself writes them (its schema,
//! made by gatehouse at its first start).

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;

const K1: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

/// A folder of the test's own (the store and the key file outlive one
/// gatehouse process) and its control socket's folder.
struct Place {
    state: tempfile::TempDir,
    socket: tempfile::TempDir,
}

impl Place {
    fn new() -> Place {
        let state = tempfile::tempdir().unwrap();
        let key = state.path().join("session.keys");
        std::fs::write(&key, format!("{K1}\n")).unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        Place { state, socket: tempfile::tempdir().unwrap() }
    }

    fn store(&self) -> PathBuf {
        self.state.path().join("mfa.db")
    }

    fn config(&self) -> String {
        format!(
            "[accounts]\nsource = \"file\"\nfile = \"users\"\n\n[domain]\nrealm = \"AD.TEST\"\nnetbios_name = \"ADTEST\"\n\n\
             [forms]\nkey_file = \"{}/session.keys\"\n\n[mfa]\nstore = \"{}\"\nenrol_code_lifetime = \"10m\"\n\n\
             [control]\nsocket = \"{}/control.sock\"\n\n\
             [[listener]]\nname = \"public\"\nbind = \"127.0.0.1:0\"\ntls = {{ cert = \"mail.pem\", key = \"mail.key\" }}\n\n\
             [[site]]\nname = \"app\"\nlistener = \"public\"\nhosts = [\"mail.example.com\"]\npath_prefix = \"/\"\n\
             backend = \"http://127.0.0.1:9\"\nauth = [\"Forms\", \"Basic\"]\nidentity_header = \"X-Remote-User\"\n",
            self.state.path().display(),
            self.store().display(),
            self.socket.path().display()
        )
    }

    fn start(&self) -> Gatehouse {
        let dir = tempfile::tempdir().unwrap();
        make_certs(dir.path(), &[("mail", &["mail.example.com"])]);
        std::fs::write(dir.path().join("users"), "ADTEST:bob:Bob-Pass1\n").unwrap();
        Gatehouse::start_in(dir, &self.config())
    }
}

fn gatehouse(config: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_gatehouse")).args(args).arg("-c").arg(config).output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
}

/// A factor row as the store writes one.
fn put_factor(store: &Path, user: &str, name: &str) {
    let db = rusqlite::Connection::open(store).unwrap();
    db.execute(
        "INSERT INTO factor (user, kind, name, sealed, created) VALUES (?1, 'totp', ?2, 'sealed-by-test', 1764000000)",
        rusqlite::params![user, name],
    )
    .unwrap();
}

fn stop(mut g: Gatehouse) {
    g.signal("-TERM");
    assert!(g.wait_exit(Duration::from_secs(10)).success(), "{}", g.stderr());
}

#[test]
fn restart_keeps_factors_and_the_commands_work() {
    let place = Place::new();
    let g = place.start();
    assert!(g.stderr().contains("second-factor store open"), "{}", g.stderr());
    let (ok, text) = gatehouse(&g.config, &["mfa", "list", "bob"]);
    assert!(ok && text == "0 factors\n", "{text}");
    stop(g);

    put_factor(&place.store(), "ADTEST\\bob", "phone");
    put_factor(&place.store(), "ADTEST\\alice", "phone");
    let g = place.start();
    let (ok, text) = gatehouse(&g.config, &["mfa", "list", "bob"]);
    assert!(ok && text.starts_with("1 factors\nADTEST\\bob\t1\ttotp\t\"phone\"\tadded 2025-"), "{text}");
    assert!(!text.contains("sealed-by-test"), "never the secret: {text}");
    // An enrolment code: shown once, kept only as a digest.
    let (ok, text) = gatehouse(&g.config, &["mfa", "issue-code", "bob"]);
    assert!(ok && text.starts_with("enrolment code for bob: "), "{text}");
    let code = text.lines().next().unwrap().rsplit(' ').next().unwrap().to_owned();
    assert_eq!(code.len(), 23, "{code}");
    let bytes = std::fs::read(place.store()).unwrap();
    assert!(!bytes.windows(code.len()).any(|w| w == code.as_bytes()), "the code is not in the file");
    assert!(!g.stderr().contains(&code), "the code is not logged");
    assert!(g.stderr().contains("enrolment code issued through the control socket"), "{}", g.stderr());
    // Reset: bob's factors go, alice's stay; across a restart too.
    let (ok, text) = gatehouse(&g.config, &["mfa", "reset", "bob"]);
    assert!(ok && text == "1 factors of bob removed\n", "{text}");
    stop(g);
    let g = place.start();
    assert_eq!(gatehouse(&g.config, &["mfa", "list", "bob"]), (true, "0 factors\n".into()));
    assert!(gatehouse(&g.config, &["mfa", "list", "alice"]).1.starts_with("1 factors\n"));
    // Usage errors.
    assert!(!gatehouse(&g.config, &["mfa", "drop", "bob"]).0);
    assert!(!gatehouse(&g.config, &["mfa", "list"]).0);
    // A reload does not move the store: said in the log, the open one stays.
    let moved = place.config().replace("mfa.db\"", "mfa2.db\"");
    assert_ne!(moved, place.config());
    g.reload(&moved);
    assert!(g.stderr().contains("mfa.store changes only on restart"), "{}", g.stderr());
    assert!(gatehouse(&g.config, &["mfa", "list", "alice"]).1.starts_with("1 factors\n"));
    assert!(!place.state.path().join("mfa2.db").exists());
    stop(g);
}

#[test]
fn a_read_only_store_refuses_changes_with_a_clear_message_and_loses_nothing() {
    let place = Place::new();
    stop(place.start());
    put_factor(&place.store(), "ADTEST\\bob", "phone");
    let g = place.start();
    let undo = ReadOnly::make(&place.store());
    let (ok, text) = gatehouse(&g.config, &["mfa", "reset", "bob"]);
    assert!(!ok, "{text}");
    assert!(
        text.contains(&format!("{}: the file is read-only; nothing was changed", place.store().display())),
        "{text}"
    );
    let (ok, text) = gatehouse(&g.config, &["mfa", "issue-code", "bob"]);
    assert!(!ok && text.contains("read-only") && !text.contains("enrolment code for"), "{text}");
    let (ok, text) = gatehouse(&g.config, &["mfa", "list", "bob"]);
    assert!(ok && text.starts_with("1 factors\n"), "the factor is still there: {text}");
    drop(undo);
    stop(g);
    // Writable again: the same factor, intact.
    let g = place.start();
    assert!(gatehouse(&g.config, &["mfa", "list", "bob"]).1.contains("\t\"phone\"\t"));
    stop(g);
}

#[test]
fn a_damaged_store_stops_start_up_naming_the_file() {
    let place = Place::new();
    std::fs::write(place.store(), b"SQLite format 3\0".iter().chain(&[0xA5u8; 8000]).copied().collect::<Vec<u8>>())
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    make_certs(dir.path(), &[("mail", &["mail.example.com"])]);
    std::fs::write(dir.path().join("users"), "ADTEST:bob:Bob-Pass1\n").unwrap();
    let config = dir.path().join("gatehouse.toml");
    std::fs::write(&config, place.config()).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_gatehouse")).args(["run", "-c"]).arg(&config).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains(&format!("[mfa] store {}: ", place.store().display())), "{stderr}");
    assert!(!stderr.contains("gatehouse is serving"), "{stderr}");
    // The file is left as it was, for whoever repairs it.
    assert_eq!(std::fs::read(place.store()).unwrap().len(), 16 + 8000);
}

#[test]
fn check_says_the_sign_in_does_not_ask_for_a_second_factor() {
    let place = Place::new();
    let dir = tempfile::tempdir().unwrap();
    make_certs(dir.path(), &[("mail", &["mail.example.com"])]);
    std::fs::write(dir.path().join("users"), "ADTEST:bob:Bob-Pass1\n").unwrap();
    let config = dir.path().join("gatehouse.toml");
    std::fs::write(&config, place.config()).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_gatehouse")).args(["check", "-c"]).arg(&config).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("warning: this build does not ask for a second factor at sign-in yet"), "{stdout}");
    assert!(!place.store().exists(), "check makes no store");
    // [mfa] without [forms] is refused.
    let without =
        place.config().replace(&format!("[forms]\nkey_file = \"{}/session.keys\"\n", place.state.path().display()), "");
    let without = without.replace("auth = [\"Forms\", \"Basic\"]", "auth = [\"Basic\"]");
    std::fs::write(&config, without).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_gatehouse")).args(["check", "-c"]).arg(&config).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("[mfa] needs [forms]"), "{stderr}");
}

/// The store made read-only for this process: mode 0400, and for root (whom
/// modes do not stop) the immutable attribute as well.
struct ReadOnly(PathBuf);

impl ReadOnly {
    fn make(path: &Path) -> ReadOnly {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o400)).unwrap();
        if std::fs::OpenOptions::new().append(true).open(path).is_ok() {
            let done = Command::new("chattr").arg("+i").arg(path).status();
            assert!(done.is_ok_and(|s| s.success()), "cannot make {} read-only for root (chattr +i)", path.display());
        }
        assert!(std::fs::OpenOptions::new().append(true).open(path).is_err(), "still writable");
        ReadOnly(path.to_owned())
    }
}

impl Drop for ReadOnly {
    fn drop(&mut self) {
        let _ = Command::new("chattr").arg("-i").arg(&self.0).status();
        let _ = std::fs::set_permissions(&self.0, std::fs::Permissions::from_mode(0o600));
    }
}
