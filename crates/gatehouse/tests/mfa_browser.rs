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

/// gatehouse over TLS for proxy.ad.test (a host name: WebAuthn refuses
/// addresses; the browser maps it to loopback), one site with `mfa =
/// "required"` (Forms for browsers, NTLM) and KCD to the lab's Kerberos-only
/// backend, `[mfa]` as given, and a control socket for the `mfa` commands.
fn mfa_gatehouse(env: &std::collections::HashMap<String, String>, mfa: &str) -> (Gatehouse, tempfile::TempDir) {
    browser::require_chromium();
    let dir = tempfile::tempdir().unwrap();
    make_certs(dir.path(), &[("proxy", &["proxy.ad.test"])]);
    browser::forms_files(dir.path());
    let socket = tempfile::tempdir().unwrap();
    let site = Site::lab_kcd("mail", "public", env)
        .hosts(&["proxy.ad.test"])
        .auth(&["Forms", "NTLM"])
        .set_str("mfa", "required");
    let config = Config::new()
        .domain(Domain::lab(env).acceptor_spn("HTTP/proxy.ad.test"))
        .accounts(Accounts::winbind(env))
        .table(
            "forms",
            "key_file = \"session.keys\"\ntitle = \"AD.TEST mail\"\nlogo = \"logo.svg\"\nattempts_per_minute = 200",
        )
        .table("mfa", mfa)
        .table("control", &format!("socket = \"{}/control.sock\"", socket.path().display()))
        .listener(Listener::tls("public", "proxy"))
        .site(site);
    (Gatehouse::start_in(dir, &config.to_string()), socket)
}

/// `gatehouse ARGS -c CONFIG`: (succeeded, stdout + stderr).
fn cli(g: &Gatehouse, args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_gatehouse")).args(args).arg("-c").arg(&g.config).output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
}

/// An enrolment code for `who`, issued as the administrator does.
fn enrolment_code(g: &Gatehouse, who: &str) -> String {
    let (ok, text) = cli(g, &["mfa", "issue-code", who]);
    assert!(ok, "{text}");
    text.lines().next().unwrap().rsplit(' ').next().unwrap().to_owned()
}

#[test]
fn chromium_enrols_a_passkey_and_signs_in_with_it() {
    let Some(env) = lab_env() else { return };
    let (g, _socket) =
        mfa_gatehouse(&env, "store = \"mfa.db\"\nenrol_networks = [\"10.99.0.0/16\"]\nfresh_for = \"1s\"");
    let port = g.port();
    let gatehouse = |args: &[&str]| cli(&g, args);
    let (alice_code, bob_code) = (enrolment_code(&g, "ADTEST\\alice"), enrolment_code(&g, "ADTEST\\bob"));

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
    browser::run_page_script(
        &g,
        "browser_passkey.py",
        &spec,
        None,
        &[
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
        ],
    );
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
    g.wait_for_record(|r| r["user"] == "ADTEST\\alice" && r["status"] == 200 && r["site"] == "mail");
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
    browser::keep_screenshots(
        &shots,
        &["passkey-enrol.png", "passkey-sign-in.png", "passkey-refused.png", "passkey-factors.png"],
        "",
    );
}

#[test]
fn chromium_enrols_an_authenticator_app_and_signs_in_with_a_code() {
    let Some(env) = lab_env() else { return };
    let pyotp = pyotp_path().expect("pyotp is not in the test virtualenv: run scripts/test.sh once (it installs it)");
    let (g, _socket) = mfa_gatehouse(&env, "store = \"mfa.db\"\nenrol_networks = [\"10.99.0.0/16\"]");
    let port = g.port();
    let gatehouse = |args: &[&str]| cli(&g, args);
    let code = enrolment_code(&g, "ADTEST\\bob");

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
    browser::run_page_script(
        &g,
        "browser_mfa.py",
        &spec,
        Some(&pyotp),
        &[
            "asks for an enrolment code",
            "a wrong enrolment code",
            "enrolled with a code from pyotp",
            "the enrolling code again",
            "password and the next code",
        ],
    );
    let flags: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&result).unwrap()).unwrap();
    assert_eq!(flags["cookie_flags"]["secure"], true);
    assert_eq!(flags["cookie_flags"]["httpOnly"], true);
    // The factor is in the store; the log holds neither the code nor the key.
    let (ok, list) = gatehouse(&["mfa", "list", "bob"]);
    assert!(ok && list.starts_with("1 factors\nADTEST\\bob\t") && list.contains("\"bob's phone\""), "{list}");
    let log = g.stderr();
    assert!(!log.contains(&code), "the enrolment code is not logged");
    assert!(log.contains("second factor enrolled") && log.contains("second factor passed"), "{log}");
    g.wait_for_record(|r| r["user"] == "ADTEST\\bob" && r["status"] == 200 && r["site"] == "mail");

    browser::keep_screenshots(
        &shots,
        &["mfa-enrol-code.png", "mfa-enrol-app.png", "mfa-code.png", "mfa-refused.png"],
        "",
    );
}
