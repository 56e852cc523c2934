//! Signing in at an OpenID provider in Chromium (Selenium,
//! `tests/clients/browser_oidc.py`), against the lab and the project's
//! oidc-provider: alice signs in at the provider, comes back and reaches the
//! Kerberos-only backend as alice@AD.TEST; logoff ends gatehouse's session
//! and the provider's; a provider user without an AD account gets the page.
//! Screenshots kept in target/tmp/screenshots (copied into docs/images with
//! GATEHOUSE_UPDATE_DOCS_IMAGES=1).

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::idp;
use common::*;

#[test]
fn chromium_signs_in_at_the_provider_reaches_kerberos_and_signs_out_of_both() {
    let Some(env) = lab_env() else { return };
    for tool in ["/usr/bin/chromium", "/usr/bin/chromedriver"] {
        assert!(Path::new(tool).exists(), "{tool} is missing: `scripts/install-deps.sh test` installs it");
    }
    let dir = tempfile::tempdir().unwrap();
    let dir_path = dir.path().to_owned();
    let ca = make_certs(dir.path(), &[("proxy", &["proxy.ad.test"])]);
    let _ = ca;
    let mut key = [0u8; 32];
    getrandom::fill(&mut key).unwrap();
    for (name, text) in [("session.keys", websession::Keys::line(&key)), ("client.secret", "s3cret\n".to_owned())] {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let users = serde_json::json!({
        "alice": {"password": "Alice-Pass1", "claims": {"name": "Alice Example", "preferred_username": "alice", "upn": "alice@ad.test"}},
        "oidcdave": {"password": "Dave-Pass1", "claims": {"name": "Dave Nobody", "preferred_username": "oidcdave", "upn": "oidcdave@ad.test"}},
    });
    std::fs::write(dir.path().join("users.json"), users.to_string()).unwrap();
    let idp_port = idp::free_port();
    let config = Config::new()
        .domain(Domain::lab(&env))
        .accounts(Accounts::winbind(&env))
        .table("forms", "key_file = \"session.keys\"\ntitle = \"AD.TEST apps\"")
        .table(
            "idp",
            &format!(
                "name = \"corp\"\nissuer = \"http://127.0.0.1:{idp_port}\"\nclient_id = \"gatehouse\"\n\
                 client_secret_file = \"client.secret\""
            ),
        )
        .listener(Listener::tls("public", "proxy"))
        .site(Site::lab_kcd("apps", "public", &env).hosts(&["proxy.ad.test"]).auth(&["OIDC:corp", "NTLM"]));
    let g = Gatehouse::start_in(dir, &config.to_string().replace("[idp]", "[[idp]]"));
    let port = g.port();
    let base = format!("https://proxy.ad.test:{port}");
    let _p = idp::start(
        &dir_path,
        idp_port,
        &[
            ("REDIRECT_URI", format!("{base}/.gatehouse/oidc/callback")),
            ("POST_LOGOUT_REDIRECT_URI", format!("{base}/.gatehouse/signedout")),
            ("USERS_FILE", dir_path.join("users.json").display().to_string()),
        ],
        dir_path.join("idp.log"),
    );

    let shots = g.path("screenshots");
    let spec = serde_json::json!({
        "base": base,
        "hosts": ["proxy.ad.test"],
        "cert": g.path("proxy.pem"),
        "path": "/whoami?from=oidc-browser",
        "user": "alice",
        "password": "Alice-Pass1",
        "expect_user": "alice@AD.TEST",
        "stranger": {"user": "oidcdave", "password": "Dave-Pass1", "upn": "oidcdave@ad.test"},
        "shots": shots,
    });
    let spec_file = g.path("browser-spec.json");
    std::fs::write(&spec_file, spec.to_string()).unwrap();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/clients/browser_oidc.py");
    let out = Command::new("/usr/bin/python3").arg(&script).arg(&spec_file).output().expect("/usr/bin/python3");
    let said = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    eprintln!("{said}");
    assert!(out.status.success(), "the browser run failed:\n{said}\ngatehouse:\n{}", g.stderr());
    for step in [
        "sent to the provider",
        "backend sees alice@AD.TEST",
        "state cookie cleared",
        "signed out at gatehouse and at the provider",
        "both sessions ended",
        "without a domain account",
    ] {
        assert!(said.lines().any(|l| l.starts_with("PASS") && l.contains(step)), "no PASS for {step}:\n{said}");
    }
    assert!(g.stderr().contains("no domain account for oidcdave@ad.test"), "{}", g.stderr());

    let kept = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
    std::fs::create_dir_all(&kept).unwrap();
    let docs = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/images");
    let update_docs = std::env::var("GATEHOUSE_UPDATE_DOCS_IMAGES").is_ok_and(|v| v == "1");
    for name in [
        "oidc-provider-login.png",
        "oidc-signed-in.png",
        "oidc-provider-logout.png",
        "oidc-signed-out.png",
        "oidc-no-account.png",
    ] {
        let shot = shots.join(name);
        let bytes = std::fs::read(&shot).unwrap_or_else(|e| panic!("{}: {e}", shot.display()));
        assert!(bytes.starts_with(b"\x89PNG") && bytes.len() > 3_000, "{name} is not a real screenshot");
        std::fs::write(kept.join(name), &bytes).unwrap();
        if update_docs {
            std::fs::write(docs.join(name), &bytes).unwrap();
        }
    }
}
