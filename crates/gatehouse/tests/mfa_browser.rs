//! The second factor in a real browser, against the lab
//! (`tests/clients/browser_mfa.py`: Debian's Chromium, headless, Selenium):
//! bob signs in with his password on an MFA-required site, enrols an
//! authenticator app with an enrolment code issued by `gatehouse mfa
//! issue-code`, reaches the Kerberos-only backend through KCD as himself,
//! signs out, and signs in again with password and code (the enrolling code
//! refused as reused). Codes come from pyotp (in the test virtualenv made by
//! scripts/test.sh). And passkeys (`tests/clients/browser_passkey.py`, with
//! Chromium's virtual WebAuthn authenticator): alice enrols one with an
//! enrolment code, signs in with password and passkey, reaches the backend as
//! herself; replayed, foreign, wrong-RP-id and unverified assertions are
//! refused; she renames it and removes it. Screenshots go to
//! target/tmp/screenshots (and to docs/images with
//! GATEHOUSE_UPDATE_DOCS_IMAGES=1).

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;

use common::*;

/// pyotp's folder: the test virtualenv's site-packages (GATEHOUSE_PYTHON's,
/// or the repository's target/pyvenv), for Debian's python3, which has
/// Debian's selenium.
fn pyotp_path() -> Option<PathBuf> {
    let venv = match std::env::var("GATEHOUSE_PYTHON") {
        Ok(p) => PathBuf::from(p).parent()?.parent()?.to_owned(),
        Err(_) => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/pyvenv"),
    };
    let lib = std::fs::read_dir(venv.join("lib")).ok()?;
    lib.flatten().map(|e| e.path().join("site-packages")).find(|p| p.join("pyotp").is_dir())
}

/// The sign-in page's logo, on the second step's pages too.
const LOGO: &str = r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 64 64" width="64" height="64"><rect width="64" height="64" rx="12" fill="#0b57d0"/><path d="M16 44V24l16-10 16 10v20H38V32H26v12z" fill="#fff"/></svg>"##;

/// Keeps the screenshots under target/tmp/screenshots; copies them over the
/// docs' images only when asked (GATEHOUSE_UPDATE_DOCS_IMAGES=1), so that a
/// test run leaves the checkout as it found it.
fn keep_screenshots(shots: &std::path::Path, names: &[&str]) {
    let kept = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
    std::fs::create_dir_all(&kept).unwrap();
    let docs = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/images");
    let update_docs = std::env::var("GATEHOUSE_UPDATE_DOCS_IMAGES").is_ok_and(|v| v == "1");
    for name in names {
        let shot = shots.join(name);
        let bytes = std::fs::read(&shot).unwrap_or_else(|e| panic!("{}: {e}", shot.display()));
        assert!(bytes.starts_with(b"\x89PNG") && bytes.len() > 5_000, "{name} is not a real screenshot");
        std::fs::write(kept.join(name), &bytes).unwrap();
        if update_docs {
            std::fs::write(docs.join(name), bytes).unwrap();
        }
    }
}

#[test]
fn chromium_enrols_a_passkey_and_signs_in_with_it() {
    let Some(env) = lab_env() else { return };
    for tool in ["/usr/bin/chromium", "/usr/bin/chromedriver"] {
        assert!(std::path::Path::new(tool).exists(), "{tool} is missing: `scripts/install-deps.sh test`");
    }
    let dir = tempfile::tempdir().unwrap();
    // A host name (WebAuthn refuses addresses), mapped to loopback in the browser.
    make_certs(dir.path(), &[("proxy", &["proxy.ad.test"])]);
    let mut key = [0u8; 32];
    getrandom::fill(&mut key).unwrap();
    let keys = dir.path().join("session.keys");
    std::fs::write(&keys, websession::Keys::line(&key)).unwrap();
    std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::write(dir.path().join("logo.svg"), LOGO).unwrap();
    let socket = tempfile::tempdir().unwrap();
    let site = Site::lab_kcd("mail", "public", &env)
        .hosts(&["proxy.ad.test"])
        .auth(&["Forms", "NTLM"])
        .set_str("mfa", "required");
    let config = Config::new()
        .domain(Domain::lab(&env).acceptor_spn("HTTP/proxy.ad.test"))
        .accounts(Accounts::winbind(&env))
        .table(
            "forms",
            "key_file = \"session.keys\"\ntitle = \"AD.TEST mail\"\nlogo = \"logo.svg\"\nattempts_per_minute = 200",
        )
        .table("mfa", "store = \"mfa.db\"\nenrol_networks = [\"10.99.0.0/16\"]\nfresh_for = \"1s\"")
        .table("control", &format!("socket = \"{}/control.sock\"", socket.path().display()))
        .listener(Listener::tls("public", "proxy"))
        .site(site);
    let g = Gatehouse::start_in(dir, &config.to_string());
    let port = g.port();
    let gatehouse = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_gatehouse")).args(args).arg("-c").arg(&g.config).output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let issue = |who: &str| {
        let (ok, text) = gatehouse(&["mfa", "issue-code", who]);
        assert!(ok, "{text}");
        text.lines().next().unwrap().rsplit(' ').next().unwrap().to_owned()
    };
    let (alice_code, bob_code) = (issue("ADTEST\\alice"), issue("ADTEST\\bob"));

    let shots = g.path("screenshots");
    let result = g.path("browser-result.json");
    let spec = serde_json::json!({
        "base": format!("https://proxy.ad.test:{port}"),
        "hosts": ["proxy.ad.test"],
        "port": port,
        "cert": g.path("proxy.pem"),
        "path": "/whoami?from=passkey",
        "user": "alice",
        "password": "Alice-Pass1",
        "expect_user": "alice@AD.TEST",
        "other": "bob",
        "other_password": "Bob-Pass1",
        "expect_other": "bob@AD.TEST",
        "enrolment": alice_code,
        "other_enrolment": bob_code,
        "fresh_for_seconds": 1,
        "shots": shots,
        "result": result,
    });
    let spec_file = g.path("browser-spec.json");
    std::fs::write(&spec_file, spec.to_string()).unwrap();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/clients/browser_passkey.py");
    let out = Command::new("/usr/bin/python3").arg(&script).arg(&spec_file).output().unwrap();
    let said = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    eprintln!("{said}");
    assert!(out.status.success(), "the browser run failed:\n{said}\ngatehouse:\n{}", g.stderr());
    for step in [
        "enrolled a passkey with the enrolment code",
        "only the password is sent to the second step",
        "password and passkey: the backend again",
        "a replayed answer",
        "an old answer under the page's new challenge refused",
        "renamed the passkey",
        "alice's credential on bob's second step refused",
        "bob's own passkey passes",
        "another RP id (evil.ad.test), rightly signed, refused",
        "without user verification (UP only) refused",
        "made on another origin refused",
        "the right RP id, flags and origin passes",
        "stale session and no passkey refused",
        "removing it with the passkey: done",
    ] {
        assert!(said.lines().any(|l| l.starts_with("PASS") && l.contains(step)), "no PASS for {step}:\n{said}");
    }
    // In the store: bob's passkey; alice's is gone. The log names the factor
    // kind and id, never the credential.
    let (ok, list) = gatehouse(&["mfa", "list", "alice"]);
    assert!(ok && list == "0 factors\n", "{list}");
    let (ok, list) = gatehouse(&["mfa", "list", "bob"]);
    assert!(ok && list.starts_with("1 factors\nADTEST\\bob\t") && list.contains("\tpasskey\t"), "{list}");
    let log = g.stderr();
    assert!(!log.contains(&alice_code) && !log.contains(&bob_code), "the enrolment codes are not logged");
    for line in ["second factor enrolled", "second factor passed", "second factor refused", "renamed", "removed"] {
        assert!(log.contains(line), "{line} in {log}");
    }
    assert!(
        log.contains("kind=\"passkey\"") || log.contains("kind=passkey") || log.contains("\"kind\":\"passkey\""),
        "{log}"
    );
    assert!(!log.contains("clientDataJSON") && !log.contains("authenticatorData"), "no credential in the log");
    let access = g.access_log();
    assert!(
        access.iter().any(|r| r["user"] == "ADTEST\\alice" && r["status"] == 200 && r["site"] == "mail"),
        "{access:?}"
    );
    let (ok, counters) = gatehouse(&["mfa", "counters"]);
    assert!(ok, "{counters}");
    // Passed at the second step: alice 3 (sign-in, after the replays,
    // crafted), bob 1 (the removal's passkey is not a second step);
    // enrolled 2; refused: 2 replays, 1 foreign, 3 crafted.
    for line in [
        "passkey_passed\t4\n",
        "passkey_enrolled\t2\n",
        "passkey_failed\t6\n",
        "factors_renamed\t1\n",
        "factors_removed\t1\n",
    ] {
        assert!(counters.contains(line), "{line:?} in {counters}");
    }
    keep_screenshots(
        &shots,
        &["passkey-enrol.png", "passkey-sign-in.png", "passkey-refused.png", "passkey-factors.png"],
    );
}

#[test]
fn chromium_enrols_an_authenticator_app_and_signs_in_with_a_code() {
    let Some(env) = lab_env() else { return };
    for tool in ["/usr/bin/chromium", "/usr/bin/chromedriver"] {
        assert!(std::path::Path::new(tool).exists(), "{tool} is missing: `scripts/install-deps.sh test`");
    }
    let pyotp = pyotp_path().expect("pyotp is not in the test virtualenv: run scripts/test.sh once (it installs it)");
    let dir = tempfile::tempdir().unwrap();
    make_certs(dir.path(), &[("proxy", &["proxy.ad.test"])]);
    let mut key = [0u8; 32];
    getrandom::fill(&mut key).unwrap();
    let keys = dir.path().join("session.keys");
    std::fs::write(&keys, websession::Keys::line(&key)).unwrap();
    std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::write(dir.path().join("logo.svg"), LOGO).unwrap();
    let socket = tempfile::tempdir().unwrap();
    let site = Site::lab_kcd("mail", "public", &env)
        .hosts(&["proxy.ad.test"])
        .auth(&["Forms", "NTLM"])
        .set_str("mfa", "required");
    let config = Config::new()
        .domain(Domain::lab(&env).acceptor_spn("HTTP/proxy.ad.test"))
        .accounts(Accounts::winbind(&env))
        .table(
            "forms",
            "key_file = \"session.keys\"\ntitle = \"AD.TEST mail\"\nlogo = \"logo.svg\"\nattempts_per_minute = 100",
        )
        .table("mfa", "store = \"mfa.db\"\nenrol_networks = [\"10.99.0.0/16\"]")
        .table("control", &format!("socket = \"{}/control.sock\"", socket.path().display()))
        .listener(Listener::tls("public", "proxy"))
        .site(site);
    let g = Gatehouse::start_in(dir, &config.to_string());
    let port = g.port();
    let gatehouse = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_gatehouse")).args(args).arg("-c").arg(&g.config).output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (ok, text) = gatehouse(&["mfa", "issue-code", "ADTEST\\bob"]);
    assert!(ok, "{text}");
    let code = text.lines().next().unwrap().rsplit(' ').next().unwrap().to_owned();

    let shots = g.path("screenshots");
    let result = g.path("browser-result.json");
    let spec = serde_json::json!({
        "base": format!("https://proxy.ad.test:{port}"),
        "hosts": ["proxy.ad.test"],
        "port": port,
        "cert": g.path("proxy.pem"),
        "path": "/whoami?from=browser",
        "user": "bob",
        "password": "Bob-Pass1",
        "expect_user": "bob@AD.TEST",
        "enrolment": code,
        "shots": shots,
        "result": result,
    });
    let spec_file = g.path("browser-spec.json");
    std::fs::write(&spec_file, spec.to_string()).unwrap();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/clients/browser_mfa.py");
    let out = Command::new("/usr/bin/python3").arg(&script).arg(&spec_file).env("PYTHONPATH", &pyotp).output().unwrap();
    let said = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    eprintln!("{said}");
    assert!(out.status.success(), "the browser run failed:\n{said}\ngatehouse:\n{}", g.stderr());
    for step in [
        "asks for an enrolment code",
        "a wrong enrolment code",
        "enrolled with a code from pyotp",
        "the enrolling code again",
        "password and the next code",
    ] {
        assert!(
            said.contains(&format!("PASS {step}")) || said.lines().any(|l| l.starts_with("PASS") && l.contains(step)),
            "no PASS for {step}:\n{said}"
        );
    }
    let flags: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&result).unwrap()).unwrap();
    assert_eq!(flags["cookie_flags"]["secure"], true);
    assert_eq!(flags["cookie_flags"]["httpOnly"], true);
    // The factor is in the store; the log holds neither the code nor the key.
    let (ok, list) = gatehouse(&["mfa", "list", "bob"]);
    assert!(ok && list.starts_with("1 factors\nADTEST\\bob\t") && list.contains("\"bob's phone\""), "{list}");
    let log = g.stderr();
    assert!(!log.contains(&code), "the enrolment code is not logged");
    assert!(log.contains("second factor enrolled") && log.contains("second factor passed"), "{log}");
    let access = g.access_log();
    assert!(
        access.iter().any(|r| r["user"] == "ADTEST\\bob" && r["status"] == 200 && r["site"] == "mail"),
        "{access:?}"
    );

    keep_screenshots(&shots, &["mfa-enrol-code.png", "mfa-enrol-app.png", "mfa-code.png", "mfa-refused.png"]);
}
