//! The sign-in page in a real browser, against the lab: Debian's Chromium,
//! headless, driven by Selenium and chromedriver (`tests/clients/browser_forms.py`),
//! through gatehouse over TLS with KCD to the lab's Kerberos-only Apache. Users
//! of the test's own (created with samba-tool, deleted however the test ends)
//! for the lockout and the expired password. After the browser: the copied
//! cookie replayed with curl is refused, the DC's badPwdCount stayed under
//! the lockout limit, the changed password works with curl --ntlm, and the
//! screenshots are kept in target/tmp/screenshots (and copied into
//! docs/images with GATEHOUSE_UPDATE_DOCS_IMAGES=1).

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use common::*;

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

struct Users {
    smb: String,
    names: Vec<String>,
}

impl Drop for Users {
    fn drop(&mut self) {
        for u in &self.names {
            let _ = Command::new("samba-tool").args(["user", "delete", u, "-s", &self.smb]).output();
        }
    }
}

fn bad_password_count(smb: &str, user: &str) -> u32 {
    samba_tool(smb, &["user", "show", user, "--attributes=badPwdCount"])
        .lines()
        .find_map(|l| l.strip_prefix("badPwdCount:"))
        .map_or(0, |v| v.trim().parse().unwrap())
}

/// curl to gatehouse with `args`; (status, body).
fn curl(ca: &Path, port: u16, host: &str, path: &str, args: &[&str]) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-sS", "--http1.1", "-w", "\n%{http_code}", "--cacert"])
        .arg(ca)
        .args(args)
        .args(["--resolve", &format!("{host}:{port}:127.0.0.1")])
        .arg(format!("https://{host}:{port}{path}"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_owned())
}

#[test]
fn chromium_signs_in_delegates_signs_out_and_changes_an_expired_password() {
    let Some(env) = lab_env() else { return };
    browser::require_chromium();
    let smb = env["SMB_CONF"].clone();
    let id = std::process::id() % 100_000;
    // Fixed names (this helper's own), so that the screenshots in the docs
    // stay the same from run to run; a leftover of a killed run goes first.
    let (locked, expired) = ("formslocked".to_owned(), "formsexpired".to_owned());
    let users = Users { smb: smb.clone(), names: vec![locked.clone(), expired.clone()] };
    for u in &users.names {
        let _ = Command::new("samba-tool").args(["user", "delete", u, "-s", &smb]).output();
    }
    let (locked_pw, old_pw, new_pw) = (format!("Fbl-Pass1-{id}"), format!("Fbe-Pass1-{id}"), format!("Fbe-Pass2-{id}"));
    samba_tool(&smb, &["user", "create", &locked, &locked_pw]);
    samba_tool(&smb, &["user", "create", &expired, &old_pw, "--must-change-at-next-login"]);

    let dir = tempfile::tempdir().unwrap();
    let ca = make_certs(dir.path(), &[("proxy", &["proxy.ad.test", "apps.ad.test"])]);
    browser::forms_files(dir.path());
    let site =
        |name: &str, host: &str| Site::lab_kcd(name, "public", &env).hosts(&[host]).auth(&["Forms", "NTLM", "Basic"]);
    let config = Config::new()
        .domain(Domain::lab(&env).acceptor_spn("HTTP/proxy.ad.test"))
        .accounts(Accounts::winbind(&env))
        .table(
            "forms",
            "key_file = \"session.keys\"\ntitle = \"AD.TEST mail\"\nlogo = \"logo.svg\"\ncookie_domain = \"ad.test\"\n\
             attempts_per_minute = 100",
        )
        .table("lockout", "max_failures_per_user = 3")
        .listener(Listener::tls("public", "proxy"))
        .site(site("mail", "proxy.ad.test"))
        .site(site("apps", "apps.ad.test"));
    let g = Gatehouse::start_in(dir, &config.to_string());
    let port = g.port();
    let before = bad_password_count(&smb, &locked);

    let shots = g.path("screenshots");
    let result = g.path("browser-result.json");
    let spec = serde_json::json!({
        "base": format!("https://proxy.ad.test:{port}"),
        "second": format!("https://apps.ad.test:{port}"),
        "hosts": ["proxy.ad.test", "apps.ad.test"],
        "port": port,
        "cert": g.path("proxy.pem"),
        "path": "/whoami?from=browser",
        "user": "alice",
        "password": "Alice-Pass1",
        "expect_user": "alice@AD.TEST",
        "cookie": "__Secure-gatehouse",
        "cookie_domain": "ad.test",
        "locked": { "user": locked, "password": locked_pw, "wrong": "Not-It-99", "attempts": 3 },
        "expired": { "user": expired, "old": old_pw, "short": "Ab1", "new": new_pw, "expect_user": format!("{expired}@AD.TEST") },
        "shots": shots,
        "result": result,
    });
    browser::run_page_script(
        &g,
        "browser_forms.py",
        &spec,
        None,
        &[
            "wrong password",
            "keyboard only",
            "without signing in again",
            "signed out",
            "locked out",
            "too short",
            "new password set",
        ],
    );

    // The cookie the browser held, copied before logoff: refused now.
    let copied: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&result).unwrap()).unwrap();
    let cookie = format!("__Secure-gatehouse={}", copied["copied_cookie"].as_str().unwrap());
    let (code, body) = curl(&ca, port, "proxy.ad.test", "/whoami", &["-H", &format!("Cookie: {cookie}")]);
    assert_eq!(code, 401, "the copied cookie after logoff, as a script: {body}");
    let html = ["-H", "Accept: text/html", "-H", &format!("Cookie: {cookie}"), "-o", "/dev/null"];
    assert_eq!(curl(&ca, port, "apps.ad.test", "/whoami", &html).0, 303, "as a browser, on the other site");

    // gatehouse stopped asking the DC at its limit: the DC counted no more.
    let after = bad_password_count(&smb, &locked);
    assert!(after - before <= 3, "badPwdCount went from {before} to {after}, over the limit of 3");
    assert!(after < 10, "the domain's own lockout threshold (10) was reached: {after}");
    // The password changed through the page works for NTLM too.
    let (code, body) =
        curl(&ca, port, "proxy.ad.test", "/whoami", &["--ntlm", "-u", &format!("ADTEST\\{expired}:{new_pw}")]);
    assert_eq!(code, 200, "curl --ntlm with the new password: {body}\n{}", g.stderr());
    assert!(body.contains(&format!("REMOTE_USER={expired}@AD.TEST")), "{body}");
    // The old one no longer signs in with Kerberos (Basic is checked by the
    // KDC here). NTLM may still take it for a while: AD and Samba accept the
    // previous password for network logons for an hour (old password allowed
    // period), which is the domain's rule, not gatehouse's.
    let (code, _) = curl(&ca, port, "proxy.ad.test", "/whoami", &["-u", &format!("{expired}:{old_pw}")]);
    assert_eq!(code, 401, "the old password, checked by the KDC");
    assert!(g.stderr().contains("password changed on the sign-in page"), "{}", g.stderr());

    browser::keep_screenshots(
        &shots,
        &[
            "signin.png",
            "error.png",
            "signedout.png",
            "password.png",
            "password-refused.png",
            "locked.png",
            "signin-narrow.png",
        ],
        "forms-",
    );
    drop(users);
}

/// The sign-in page's answer (status, HTML) for `user` and `password`, with
/// curl keeping the cookies of the form.
fn sign_in_with_curl(ca: &Path, port: u16, jar: &Path, user: &str, password: &str) -> (u16, String) {
    let jar_args = ["-c", jar.to_str().unwrap(), "-b", jar.to_str().unwrap()];
    let (_, page) = curl(ca, port, "proxy.ad.test", "/.gatehouse/signin?return=%2Fwhoami", &jar_args);
    let at = page.find("name=\"csrf\" value=\"").expect("a CSRF field") + 19;
    let csrf = &page[at..at + page[at..].find('"').unwrap()];
    let mut args: Vec<String> = jar_args.iter().map(|s| s.to_string()).collect();
    for (k, v) in [("csrf", csrf), ("return", "/whoami"), ("username", user), ("password", password)] {
        args.push("--data-urlencode".into());
        args.push(format!("{k}={v}"));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    curl(ca, port, "proxy.ad.test", "/.gatehouse/signin", &args)
}

#[test]
fn disabled_expired_and_must_change_accounts_get_their_own_words() {
    let Some(env) = lab_env() else { return };
    let smb = env["SMB_CONF"].clone();
    let id = std::process::id() % 100_000;
    let names: Vec<String> = ["fd", "fx", "fm"].iter().map(|p| format!("{p}{id}")).collect();
    let users = Users { smb: smb.clone(), names: names.clone() };
    let pw = format!("Fw-Pass1-{id}");
    for u in &names {
        samba_tool(&smb, &["user", "create", u, &pw]);
    }
    samba_tool(&smb, &["user", "disable", &names[0]]);
    samba_tool(&smb, &["user", "setexpiry", &names[1], "--days=0"]);
    samba_tool(
        &smb,
        &["user", "setpassword", &names[2], &format!("--newpassword={pw}"), "--must-change-at-next-login"],
    );

    let dir = tempfile::tempdir().unwrap();
    let ca = make_certs(dir.path(), &[("proxy", &["proxy.ad.test"])]);
    let keys = dir.path().join("session.keys");
    let mut key = [0u8; 32];
    getrandom::fill(&mut key).unwrap();
    std::fs::write(&keys, websession::Keys::line(&key)).unwrap();
    std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o600)).unwrap();
    let config = Config::new()
        .domain(Domain::lab(&env).acceptor_spn("HTTP/proxy.ad.test"))
        .table("forms", "key_file = \"session.keys\"")
        .listener(Listener::tls("public", "proxy"))
        .site(Site::lab_kcd("mail", "public", &env).hosts(&["proxy.ad.test"]).auth(&["Forms", "Basic"]));
    let g = Gatehouse::start_in(dir, &config.to_string());
    let port = g.port();
    let jar = g.path("jar");
    let revoked = "Your account is disabled or locked out in the domain. Ask your help desk.";
    for (user, what) in [(&names[0], "disabled"), (&names[1], "expired account")] {
        let (code, html) = sign_in_with_curl(&ca, port, &jar, user, &pw);
        assert_eq!(code, 200, "{what}");
        assert!(html.contains(revoked), "{what}: {html}\n{}", g.stderr());
        assert!(!std::fs::read_to_string(&jar).unwrap().contains("__Host-gatehouse\t"), "{what}: a session");
    }
    let (code, html) = sign_in_with_curl(&ca, port, &jar, &names[2], &pw);
    assert_eq!(code, 200);
    assert!(html.contains("Change your password") && html.contains("must be changed before you can sign in"), "{html}");
    // A wrong password for the same user is only wrong: the page does not
    // say the password expired to someone who does not know it.
    let (_, html) = sign_in_with_curl(&ca, port, &jar, &names[2], "Not-The-Pass-1");
    assert!(html.contains("The user name or password is incorrect."), "{html}");
    // An unknown name reads exactly as a wrong password.
    let (_, unknown) = sign_in_with_curl(&ca, port, &jar, &format!("nosuch{id}"), "Not-The-Pass-1");
    assert!(unknown.contains("The user name or password is incorrect."), "{unknown}");
    let log = g.stderr();
    assert!(log.contains("KDC_ERR_CLIENT_REVOKED") || log.contains("revoked"), "{log}");
    drop(users);
}
