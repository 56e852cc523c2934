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
use testkit::Backend;

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
        self.config_with("", "", "http://127.0.0.1:9")
    }

    /// With `mfa_extra` in `[mfa]`, `site_extra` in the site, and this backend.
    fn config_with(&self, mfa_extra: &str, site_extra: &str, backend: &str) -> String {
        format!(
            "[accounts]\nsource = \"file\"\nfile = \"users\"\n\n[domain]\nrealm = \"AD.TEST\"\nnetbios_name = \"ADTEST\"\n\n\
             [forms]\nkey_file = \"{}/session.keys\"\nattempts_per_minute = 1000\n\n[lockout]\nmax_failures_per_user = 7\n\n[mfa]\nstore = \"{}\"\nenrol_code_lifetime = \"10m\"\n{mfa_extra}\n\
             [control]\nsocket = \"{}/control.sock\"\n\n\
             [[listener]]\nname = \"public\"\nbind = \"127.0.0.1:0\"\ntls = {{ cert = \"mail.pem\", key = \"mail.key\" }}\n\n\
             [[site]]\nname = \"app\"\nlistener = \"public\"\nhosts = [\"mail.example.com\"]\npath_prefix = \"/\"\n\
             backend = \"{backend}\"\nauth = [\"Forms\", \"Basic\"]\nidentity_header = \"X-Remote-User\"\n{site_extra}\n",
            self.state.path().display(),
            self.store().display(),
            self.socket.path().display()
        )
    }

    fn start(&self) -> Gatehouse {
        self.start_with(&self.config()).0
    }

    /// gatehouse on `config`, and the test CA.
    fn start_with(&self, config: &str) -> (Gatehouse, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let ca = make_certs(dir.path(), &[("mail", &["mail.example.com"])]);
        std::fs::write(dir.path().join("users"), "ADTEST:bob:Bob-Pass1\nADTEST:alice:Alice-Pass1\n").unwrap();
        (Gatehouse::start_in(dir, config), ca)
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
fn check_describes_the_store_and_makes_none() {
    let place = Place::new();
    let dir = tempfile::tempdir().unwrap();
    make_certs(dir.path(), &[("mail", &["mail.example.com"])]);
    std::fs::write(dir.path().join("users"), "ADTEST:bob:Bob-Pass1\n").unwrap();
    let config = dir.path().join("gatehouse.toml");
    std::fs::write(&config, place.config()).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_gatehouse")).args(["check", "-c"]).arg(&config).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("second factor required on no site"), "{stdout}");
    assert!(stdout.contains("passkeys made for each host's own name"), "{stdout}");
    assert!(!place.store().exists(), "check makes no store");
    // A relying party id for passkeys: described; one that does not cover
    // the site's host, refused.
    let with_rp = |id: &str| place.config().replace("[mfa]\n", &format!("[mfa]\npasskey_rp_id = \"{id}\"\n"));
    assert!(with_rp("example.com").contains("passkey_rp_id"), "{}", place.config());
    std::fs::write(&config, with_rp("example.com")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_gatehouse")).args(["check", "-c"]).arg(&config).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("passkeys made for relying party id example.com"), "{stdout}");
    std::fs::write(&config, with_rp("other.example")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_gatehouse")).args(["check", "-c"]).arg(&config).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("is not under [mfa] passkey_rp_id `other.example`"), "{stderr}");
    std::fs::write(&config, with_rp("192.0.2.1")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_gatehouse")).args(["check", "-c"]).arg(&config).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("is not a host name"), "{stderr}");
    std::fs::write(&config, place.config()).unwrap();
    // [mfa] without [forms] is refused.
    let forms =
        format!("[forms]\nkey_file = \"{}/session.keys\"\nattempts_per_minute = 1000\n", place.state.path().display());
    assert!(place.config().contains(&forms));
    let without = place.config().replace(&forms, "");
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

const HOST: &str = "mail.example.com";
const CHROME_ACCEPT: &str = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";

/// A client that keeps cookies as a browser does (one TLS connection per request).
struct Browser {
    addr: std::net::SocketAddr,
    ca: PathBuf,
    jar: std::collections::BTreeMap<String, String>,
}

impl Browser {
    fn new(g: &Gatehouse, ca: &Path) -> Browser {
        Browser { addr: g.addr(), ca: ca.to_owned(), jar: Default::default() }
    }

    async fn send(&mut self, method: &str, path: &str, accept: &str, body: Option<&str>) -> Resp {
        let mut c = Conn::open_tls(self.addr, &self.ca, HOST).await;
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {HOST}:{}\r\nConnection: close\r\nAccept: {accept}\r\n",
            self.addr.port()
        );
        if !self.jar.is_empty() {
            let cookies: Vec<String> = self.jar.iter().map(|(n, v)| format!("{n}={v}")).collect();
            head.push_str(&format!("Cookie: {}\r\n", cookies.join("; ")));
        }
        let body = body.unwrap_or("");
        if method == "POST" {
            head.push_str(&format!(
                "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n",
                body.len()
            ));
        }
        head.push_str("\r\n");
        head.push_str(body);
        c.send(head.as_bytes()).await;
        let r = c.response().await;
        for (n, v) in &r.headers {
            if n.eq_ignore_ascii_case("set-cookie") {
                let (name, value) = v.split(';').next().unwrap().split_once('=').unwrap();
                if value.is_empty() || v.contains("Max-Age=0") {
                    self.jar.remove(name);
                } else {
                    self.jar.insert(name.to_owned(), value.to_owned());
                }
            }
        }
        r
    }

    async fn get(&mut self, path: &str) -> Resp {
        self.send("GET", path, CHROME_ACCEPT, None).await
    }

    async fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> Resp {
        let body: Vec<String> = fields.iter().map(|(n, v)| format!("{n}={}", websession::form::encode(v))).collect();
        self.send("POST", path, CHROME_ACCEPT, Some(&body.join("&"))).await
    }

    /// Posts the form of `page` to `action` with its hidden fields and `fields`.
    async fn submit(&mut self, page: &Resp, action: &str, fields: &[(&str, &str)]) -> Resp {
        let html = page.text();
        let mut all: Vec<(String, String)> = Vec::new();
        for hidden in ["csrf", "return", "sealed", "remove"] {
            if let Some(v) = field(&html, hidden) {
                all.push((hidden.to_owned(), v));
            }
        }
        all.extend(fields.iter().map(|(n, v)| (n.to_string(), v.to_string())));
        let refs: Vec<(&str, &str)> = all.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        self.post(action, &refs).await
    }

    async fn sign_in(&mut self, user: &str, password: &str) -> Resp {
        let page = self.get("/.gatehouse/signin?return=%2Fapp%2F").await;
        assert_eq!(page.status, 200);
        self.submit(&page, "/.gatehouse/signin", &[("username", user), ("password", password)]).await
    }
}

fn field(html: &str, name: &str) -> Option<String> {
    let needle = format!("name=\"{name}\" value=\"");
    let at = html.find(&needle)? + needle.len();
    let raw = &html[at..at + html[at..].find('"')?];
    Some(raw.replace("&#38;", "&").replace("&amp;", "&").replace("&#34;", "\"").replace("&#39;", "'"))
}

/// The key shown on the enrolment page, decoded from base32.
fn secret_of(html: &str) -> Vec<u8> {
    let at = html.find("<code id=\"secret\">").expect("no key on the page") + "<code id=\"secret\">".len();
    let text = &html[at..at + html[at..].find('<').unwrap()];
    let (mut out, mut acc, mut bits) = (Vec::new(), 0u32, 0);
    for c in text.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'2'..=b'7' => c - b'2' + 26,
            _ => panic!("not base32: {text}"),
        };
        acc = (acc << 5) | u32::from(v);
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

fn code_at(secret: &[u8], step_offset: i64) -> String {
    websession::totp::code(secret, (websession::totp::step_at(now()) as i64 + step_offset) as u64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_step_enrolment_with_a_code_and_its_refusals() {
    let place = Place::new();
    let backend = Backend::start().await;
    let config = place.config_with(
        "enrol_networks = [\"10.0.0.0/8\"]\n",
        "mfa = \"required\"\n",
        &format!("http://{}", backend.addr),
    );
    let (g, ca) = place.start_with(&config);
    let mut b = Browser::new(&g, &ca);
    assert_eq!(b.sign_in("bob", "Bob-Pass1").await.status, 303);
    let password_only = b.jar.get("__Host-gatehouse").cloned().unwrap();
    // A password-only session is sent to the second step, not to a new sign-in.
    let r = b.get("/app/").await;
    assert_eq!((r.status, r.header("location")), (303, Some("/.gatehouse/mfa?return=%2Fapp%2F")));
    // A script with the same session gets the other schemes' 401.
    let r = b.send("GET", "/app/", "*/*", None).await;
    assert_eq!(r.status, 401);
    // No factor yet: to enrolment; from outside enrol_networks it needs a code.
    let r = b.get("/.gatehouse/mfa?return=%2Fapp%2F").await;
    assert_eq!((r.status, r.header("location")), (303, Some("/.gatehouse/mfa/enrol?return=%2Fapp%2F")));
    let page = b.get("/.gatehouse/mfa/enrol?return=%2Fapp%2F").await;
    assert_eq!(page.status, 200);
    assert!(page.text().contains("name=\"enrolment\"") && !page.text().contains("id=\"secret\""), "{}", page.text());
    let r = b.submit(&page, "/.gatehouse/mfa/enrol", &[("enrolment", "AAAAA-BBBBB-CCCCC-DDDDD")]).await;
    assert!(
        r.text().contains("That enrolment code is not valid") && !r.text().contains("id=\"secret\""),
        "{}",
        r.text()
    );
    // An expired code (written as the store keeps one) is refused too.
    {
        use sha2::Digest;
        let db = rusqlite::Connection::open(place.store()).unwrap();
        let digest: [u8; 32] = sha2::Sha256::digest(b"EXPIREDEXPIREDEXPIRE").into();
        db.execute(
            "INSERT INTO enrol_code (digest, user, expires) VALUES (?1, 'bob', ?2)",
            rusqlite::params![&digest[..], now() as i64 - 1],
        )
        .unwrap();
    }
    let r = b.submit(&page, "/.gatehouse/mfa/enrol", &[("enrolment", "EXPIR-EDEXP-IREDE-XPIRE")]).await;
    assert!(r.text().contains("That enrolment code is not valid"), "{}", r.text());
    // A code from the administrator opens the app page, once.
    let (ok, text) = gatehouse(&g.config, &["mfa", "issue-code", "bob"]);
    assert!(ok, "{text}");
    let code = text.lines().next().unwrap().rsplit(' ').next().unwrap().to_owned();
    let app = b.submit(&page, "/.gatehouse/mfa/enrol", &[("enrolment", &code)]).await;
    assert_eq!(app.status, 200);
    let html = app.text();
    assert!(html.contains("<svg") && html.contains("id=\"secret\""), "{html}");
    // One script, gatehouse's own, for the passkey button beside the app.
    assert_eq!(html.matches("<script").count(), 1, "{html}");
    assert!(
        html.contains("<script src=\"/.gatehouse/passkey.js\"></script>") && html.contains("data-passkey=\"create\"")
    );
    let csp = app.header("content-security-policy").unwrap();
    assert!(csp.starts_with("default-src 'none'; script-src 'self';"), "{csp}");
    assert!(!csp.contains("unsafe") && !csp.contains("connect-src"), "{csp}");
    let again = b.submit(&page, "/.gatehouse/mfa/enrol", &[("enrolment", &code)]).await;
    assert!(again.text().contains("That enrolment code is not valid"), "a reused code: {}", again.text());
    let secret = secret_of(&html);
    assert_eq!(secret.len(), 20);
    // The app's code proves it; a wrong one adds nothing.
    let r = b.submit(&app, "/.gatehouse/mfa/enrol", &[("name", "phone"), ("code", "000000")]).await;
    assert!(r.text().contains("That code is not right"), "{}", r.text());
    assert_eq!(gatehouse(&g.config, &["mfa", "list", "bob"]).1, "0 factors\n");
    let r = b.submit(&app, "/.gatehouse/mfa/enrol", &[("name", "phone"), ("code", &code_at(&secret, 0))]).await;
    assert_eq!((r.status, r.header("location")), (303, Some("/app/")), "{}", r.text());
    let r = b.get("/app/").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["headers"]["x-remote-user"], "ADTEST\\bob");
    assert!(gatehouse(&g.config, &["mfa", "list", "bob"]).1.contains("\t\"phone\"\t"));
    // The password-only session was replaced, not upgraded.
    b.jar.insert("__Host-gatehouse".into(), password_only);
    assert_eq!(b.get("/app/").await.header("location").map(|l| l.starts_with("/.gatehouse/signin")), Some(true));

    // Next sign-in: the code form; the enrolling code is used up, a code of
    // a step outside the skew is wrong, the next step's passes once.
    let mut c = Browser::new(&g, &ca);
    assert_eq!(c.sign_in("bob", "Bob-Pass1").await.status, 303);
    let form = c.get("/.gatehouse/mfa?return=%2Fapp%2F").await;
    assert!(
        form.text().contains("name=\"code\"") && form.text().contains("Signed in as ADTEST\\bob"),
        "{}",
        form.text()
    );
    let r = c.submit(&form, "/.gatehouse/mfa", &[("code", &code_at(&secret, 0))]).await;
    assert!(r.text().contains("not right, or was already used"), "reused: {}", r.text());
    let r = c.submit(&form, "/.gatehouse/mfa", &[("code", &code_at(&secret, 4))]).await;
    assert!(r.text().contains("not right, or was already used"), "wrong step: {}", r.text());
    let r = c.submit(&form, "/.gatehouse/mfa", &[("code", &code_at(&secret, 1))]).await;
    assert_eq!((r.status, r.header("location")), (303, Some("/app/")), "{}", r.text());
    assert_eq!(c.get("/app/").await.status, 200);
    let (ok, listed) = gatehouse(&g.config, &["sessions", "list"]);
    assert!(ok && listed.matches("\tsecond factor\n").count() == 2 && !listed.contains("password only"), "{listed}");
    // Enrolling another app needs no code now (the session passed), from anywhere.
    let more = c.get("/.gatehouse/mfa/enrol").await;
    assert!(more.text().contains("id=\"secret\""), "{}", more.text());

    // Wrong codes lock the user out ([lockout] max_failures_per_user = 7; a
    // passed second factor reset the count, a good password does not): the
    // right code is then not compared.
    let mut d = Browser::new(&g, &ca);
    assert_eq!(d.sign_in("bob", "Bob-Pass1").await.status, 303);
    let listed = gatehouse(&g.config, &["sessions", "list"]).1;
    assert_eq!(listed.matches("\tpassword only\n").count(), 1, "{listed}");
    let form = d.get("/.gatehouse/mfa").await;
    for _ in 0..4 {
        assert_eq!(d.submit(&form, "/.gatehouse/mfa", &[("code", "123456")]).await.status, 200);
    }
    // Signing in again between guesses does not help.
    assert_eq!(d.sign_in("bob", "Bob-Pass1").await.status, 303);
    let form = d.get("/.gatehouse/mfa").await;
    for _ in 0..3 {
        assert_eq!(d.submit(&form, "/.gatehouse/mfa", &[("code", "123456")]).await.status, 200);
    }
    let r = d.submit(&form, "/.gatehouse/mfa", &[("code", &code_at(&secret, 2))]).await;
    assert_eq!(r.status, 429, "{}", r.text());
    assert!(r.text().contains("Too many wrong codes"), "{}", r.text());
    // Nothing secret in the log.
    let log = g.stderr();
    assert!(!log.contains(&code) && !log.contains(&websession::totp::base32(&secret)), "{log}");
    assert!(log.contains("second factor passed") && log.contains("second factor enrolled"), "{log}");
    // The counters: never who, never a code.
    let (ok, counters) = gatehouse(&g.config, &["mfa", "counters"]);
    assert!(ok, "{counters}");
    for line in [
        "totp_passed\t1\n",
        "totp_failed\t10\n",
        "totp_enrolled\t1\n",
        "enrolment_codes_refused\t3\n",
        "enrolment_codes_issued\t1\n",
        "factors_removed\t0\n",
        "admin_resets\t0\n",
    ] {
        assert!(counters.contains(line), "{line:?} in {counters}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrolment_from_the_networks_and_sites_without_mfa() {
    let place = Place::new();
    let backend = Backend::start().await;
    let config = place.config_with(
        "enrol_networks = [\"127.0.0.0/8\"]\nfresh_for = \"1s\"\n",
        "",
        &format!("http://{}", backend.addr),
    );
    let (g, ca) = place.start_with(&config);
    let mut b = Browser::new(&g, &ca);
    assert_eq!(b.sign_in("alice", "Alice-Pass1").await.status, 303);
    // A site without mfa = "required": the password is enough.
    assert_eq!(b.get("/app/").await.status, 200);
    // From the enrolment networks no code is needed.
    let app = b.get("/.gatehouse/mfa/enrol").await;
    let secret = secret_of(&app.text());
    let r = b.submit(&app, "/.gatehouse/mfa/enrol", &[("name", "tablet"), ("code", &code_at(&secret, 0))]).await;
    assert_eq!(r.status, 303, "{}", r.text());
    // With a factor, a password-only session must pass it before adding another.
    let mut c = Browser::new(&g, &ca);
    assert_eq!(c.sign_in("alice", "Alice-Pass1").await.status, 303);
    let r = c.get("/.gatehouse/mfa/enrol").await;
    assert_eq!(r.header("location"), Some("/.gatehouse/mfa?return=%2F"), "{}", r.text());
    // Her apps: the list needs a passed second factor; the last one goes
    // only with a fresh one (passed within fresh_for, or a code typed now).
    let r = c.get("/.gatehouse/mfa/factors").await;
    assert_eq!(r.header("location"), Some("/.gatehouse/mfa?return=%2F.gatehouse%2Fmfa%2Ffactors"));
    let list = b.get("/.gatehouse/mfa/factors").await;
    assert!(list.text().contains(">tablet</strong> (authenticator app)"), "{}", list.text());
    let id = field(&list.text(), "remove").unwrap();
    // Renamed by its user: a name of 1 to 40 characters, only her own factor.
    let csrf = field(&list.text(), "csrf").unwrap();
    let path = "/.gatehouse/mfa/factors";
    let r = b.post(path, &[("csrf", &csrf), ("rename", &id), ("name", "  ")]).await;
    assert!(r.text().contains("Give the factor a name of 1 to 40 characters."), "{}", r.text());
    let r = b.post(path, &[("csrf", &csrf), ("rename", "999"), ("name", "mine")]).await;
    assert!(r.text().contains("That factor was removed."), "another id: {}", r.text());
    let r = b.post(path, &[("csrf", &csrf), ("rename", &id), ("name", "old tablet")]).await;
    assert!(r.text().contains(">old tablet</strong>"), "{}", r.text());
    assert!(gatehouse(&g.config, &["mfa", "list", "alice"]).1.contains("\"old tablet\""), "renamed in the store");
    let list = b.get("/.gatehouse/mfa/factors").await;
    std::thread::sleep(Duration::from_millis(2100));
    let r = b.submit(&list, "/.gatehouse/mfa/factors", &[]).await;
    assert!(
        r.text().contains("To remove your last second factor, type a current code from the app, or use the passkey."),
        "{}",
        r.text()
    );
    assert!(gatehouse(&g.config, &["mfa", "list", "alice"]).1.starts_with("1 factors\n"), "still there");
    let r = b.submit(&list, "/.gatehouse/mfa/factors", &[("code", "000000")]).await;
    assert!(r.text().contains("not right, or was already used"), "{}", r.text());
    assert!(gatehouse(&g.config, &["mfa", "list", "alice"]).1.starts_with("1 factors\n"), "still there");
    let r = b.submit(&list, "/.gatehouse/mfa/factors", &[("code", &code_at(&secret, 1))]).await;
    assert!(!r.text().contains("<strong>tablet</strong>") && !r.text().contains("id=\"message\""), "{}", r.text());
    assert_eq!(gatehouse(&g.config, &["mfa", "list", "alice"]).1, "0 factors\n");
    assert!(id.parse::<i64>().is_ok(), "{id}");
    // A forged or another user's sealed enrolment form is refused.
    let r = c.post("/.gatehouse/mfa/enrol", &[("sealed", "AAAA"), ("code", "123456")]).await;
    assert_eq!(r.status, 403, "no CSRF token: {}", r.text());
}

#[test]
fn check_warns_where_a_second_factor_site_offers_passwords_alone() {
    let place = Place::new();
    let dir = tempfile::tempdir().unwrap();
    make_certs(dir.path(), &[("mail", &["mail.example.com"])]);
    std::fs::write(dir.path().join("users"), "ADTEST:bob:Bob-Pass1\n").unwrap();
    let config = dir.path().join("gatehouse.toml");
    let run = |text: String| {
        std::fs::write(&config, text).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_gatehouse")).args(["check", "-c"]).arg(&config).output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (ok, out) = run(place.config_with("", "mfa = \"required\"\n", "http://127.0.0.1:9"));
    assert!(ok, "{out}");
    assert!(out.contains("second factor required on site app"), "{out}");
    assert!(
        out.contains(
            "warning: site app requires a second factor, but offers Basic to clients outside [mfa] exempt_networks"
        ),
        "{out}"
    );
    // Basic only for the exempt network: no warning.
    let exempt = place
        .config_with("exempt_networks = [\"10.0.0.0/8\"]\n", "mfa = \"required\"\n", "http://127.0.0.1:9")
        .replace("auth = [\"Forms\", \"Basic\"]", "auth = [\"Forms\"]")
        + "\n[[site.auth_for]]\nclient_ip = [\"10.1.0.0/16\"]\nauth = [\"Basic\", \"Forms\"]\n";
    let (ok, out) = run(exempt);
    assert!(ok && !out.contains("warning: site app"), "{out}");
    // Without Forms, or with a wrong value, it is refused.
    let (ok, out) = run(place
        .config_with("", "mfa = \"required\"\n", "http://127.0.0.1:9")
        .replace("auth = [\"Forms\", \"Basic\"]", "auth = [\"Basic\"]"));
    assert!(!ok && out.contains("only the sign-in page asks for"), "{out}");
    // The Exchange preset: the second factor where it offers Forms (OWA,
    // ECP), a warning for every path that offers passwords alone.
    let base = place.config_with("", "", "http://127.0.0.1:9");
    let site_at = base.find("[[site]]").unwrap();
    let exchange = format!(
        "{}[[site]]\nname = \"mail\"\nlistener = \"public\"\nhosts = [\"mail.example.com\"]\npreset = \"exchange\"\n\
         backend = \"http://127.0.0.1:9\"\nmfa = \"required\"\n",
        &base[..site_at]
    );
    let (ok, out) = run(exchange);
    assert!(ok, "{out}");
    assert!(out.contains("warning: site mail/activesync requires a second factor, but offers Basic"), "{out}");
    assert!(out.contains("warning: site mail/owa requires a second factor, but offers"), "{out}");
    let (ok, out) = run(place.config_with("", "mfa = \"yes\"\n", "http://127.0.0.1:9"));
    assert!(!ok && out.contains("mfa is \"required\" or \"off\""), "{out}");
}

#[test]
fn mfa_added_by_a_reload_fails_closed_until_a_restart() {
    let place = Place::new();
    let with = place.config_with("", "mfa = \"required\"\n", "http://127.0.0.1:9");
    let mfa = format!("[mfa]\nstore = \"{}\"\nenrol_code_lifetime = \"10m\"\n", place.store().display());
    assert!(with.contains(&mfa));
    let without = with.replace(&mfa, "").replace("mfa = \"required\"\n", "");
    let (g, _) = place.start_with(&without);
    g.reload(&with);
    assert!(g.stderr().contains("no store is open: sites with mfa = \"required\" cannot be passed"), "{}", g.stderr());
    assert!(!place.store().exists(), "no store made by a reload");
    stop(g);
}
