//! Signing in at an OpenID provider in Chromium (Selenium,
//! `tests/clients/browser_oidc.py`), against the lab and the project's
//! oidc-provider: alice signs in at the provider, comes back and reaches the
//! Kerberos-only backend as alice@AD.TEST; logoff ends gatehouse's session
//! and the provider's; a provider user without an AD account gets the page.
//! Screenshots kept in target/tmp/screenshots (copied into docs/images with
//! GATEHOUSE_UPDATE_DOCS_IMAGES=1).

mod common;

use common::idp;
use common::*;

#[test]
fn chromium_signs_in_at_the_provider_reaches_kerberos_and_signs_out_of_both() {
    let Some(env) = lab_env() else { return };
    browser::require_chromium();
    let dir = tempfile::tempdir().unwrap();
    let dir_path = dir.path().to_owned();
    make_certs(dir.path(), &[("proxy", &["proxy.ad.test"])]);
    browser::forms_files(dir.path());
    browser::write_secret(dir.path(), "client.secret", "s3cret\n");
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
    browser::run_page_script(
        &g,
        "browser_oidc.py",
        &spec,
        None,
        &[
            "sent to the provider",
            "backend sees alice@AD.TEST",
            "state cookie cleared",
            "signed out at gatehouse and at the provider",
            "both sessions ended",
            "without a domain account",
        ],
    );
    assert!(g.stderr().contains("no domain account for oidcdave@ad.test"), "{}", g.stderr());

    browser::keep_screenshots(
        &shots,
        &[
            "oidc-provider-login.png",
            "oidc-signed-in.png",
            "oidc-provider-logout.png",
            "oidc-signed-out.png",
            "oidc-no-account.png",
        ],
        "",
    );
}
