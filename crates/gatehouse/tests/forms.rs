//! The sign-in page (`Forms`) without a browser and without the lab: raw
//! HTTP/1.1 over TLS to the real binary, passwords from a users file, a
//! client that keeps cookies as a browser does (and lets the test change
//! them). Session cookies changed, cut, expired, sealed for another host or
//! with a key taken out of the key file; CSRF tokens missing or wrong; every
//! open-redirect shape; a new session id at each sign-in; logoff and a
//! copied cookie; revoking by the control socket; Outlook's and ActiveSync's
//! agents still answered 401; the messages; nothing secret in the logs;
//! `check`'s refusals.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;
use testkit::Backend;

const K1: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const K2: &str = "IiMkJSYnKCkqKywtLi8wMTIzNDU2Nzg5Ojs8PT4/QEE=";
const HOST: &str = "mail.example.com";
const OTHER: &str = "other.example.com";
const CHROME_ACCEPT: &str = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8";
const CHROME_UA: &str =
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";
const OUTLOOK_UA: &str = "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.17928; Pro)";
const ACTIVESYNC_UA: &str = "Apple-iPhone15C2/2103.220";

fn write_keys(dir: &Path, keys: &[&str]) {
    let path = dir.join("session.keys");
    std::fs::write(&path, keys.join("\n") + "\n").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// gatehouse with a users file (alice, bob), `[forms]` with `forms` added
/// (key file `session.keys`), one TLS listener for mail and other.example.com
/// and the sites `sites` (text, after the listener).
struct Setup {
    g: Gatehouse,
    ca: PathBuf,
    backend: Backend,
    /// The configuration as written, for reloads.
    config: String,
}

async fn start(forms: &str, extra: &str, sites: impl Fn(&str) -> String) -> Setup {
    let backend = Backend::start().await;
    let dir = tempfile::tempdir().unwrap();
    let ca = make_certs(dir.path(), &[("mail", &[HOST, OTHER])]);
    write_keys(dir.path(), &[K1]);
    std::fs::write(dir.path().join("users"), "ADTEST:alice:Alice-Pass1\nADTEST:bob:Bob-Pass1\n").unwrap();
    std::fs::write(dir.path().join("logo.svg"), "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 8 8\"/>")
        .unwrap();
    let config = format!(
        "[domain]\nrealm = \"AD.TEST\"\nnetbios_name = \"ADTEST\"\n\n[accounts]\nsource = \"file\"\nfile = \"users\"\n\n\
         [forms]\nkey_file = \"session.keys\"\ntitle = \"Example mail\"\n{forms}\n\n{extra}\n\
         [[listener]]\nname = \"public\"\nbind = \"127.0.0.1:0\"\ntls = {{ cert = \"mail.pem\", key = \"mail.key\" }}\n\n{}",
        sites(&format!("http://{}", backend.addr))
    );
    let g = Gatehouse::start_in(dir, &config);
    Setup { g, ca, backend, config }
}

/// The usual site: `/app` on mail.example.com, Forms for browsers, NTLM and
/// Basic for everyone else.
fn app_site(backend: &str) -> String {
    format!(
        "[[site]]\nname = \"app\"\nlistener = \"public\"\nhosts = [\"{HOST}\"]\npath_prefix = \"/app\"\n\
         backend = \"{backend}\"\nauth = [\"Forms\", \"NTLM\", \"Basic\"]\nidentity_header = \"X-Remote-User\"\n"
    )
}

/// A client that keeps cookies as a browser does: one TLS connection per
/// request, HTTP/1.1, a browser's Accept and User-Agent unless told.
struct Browser {
    addr: SocketAddr,
    ca: PathBuf,
    host: String,
    jar: BTreeMap<String, String>,
    /// Every Set-Cookie line received, as sent.
    set_cookies: Vec<String>,
}

impl Browser {
    fn new(s: &Setup, host: &str) -> Browser {
        Browser { addr: s.g.addr(), ca: s.ca.clone(), host: host.into(), jar: BTreeMap::new(), set_cookies: Vec::new() }
    }

    fn host_header(&self) -> String {
        format!("{}:{}", self.host, self.addr.port())
    }

    async fn send(&mut self, method: &str, path: &str, headers: &[(&str, &str)], body: Option<&str>) -> Resp {
        let mut c = Conn::open_tls(self.addr, &self.ca, &self.host).await;
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n", self.host_header());
        let given = |name: &str| headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name));
        if !given("accept") {
            head.push_str(&format!("Accept: {CHROME_ACCEPT}\r\n"));
        }
        if !given("user-agent") {
            head.push_str(&format!("User-Agent: {CHROME_UA}\r\n"));
        }
        if !self.jar.is_empty() && !given("cookie") {
            let cookies: Vec<String> = self.jar.iter().map(|(n, v)| format!("{n}={v}")).collect();
            head.push_str(&format!("Cookie: {}\r\n", cookies.join("; ")));
        }
        for (n, v) in headers {
            head.push_str(&format!("{n}: {v}\r\n"));
        }
        let body = body.unwrap_or("");
        if method == "POST" {
            if !given("content-type") {
                head.push_str("Content-Type: application/x-www-form-urlencoded\r\n");
            }
            head.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        head.push_str("\r\n");
        head.push_str(body);
        c.send(head.as_bytes()).await;
        let r = c.response().await;
        for (n, v) in &r.headers {
            if n.eq_ignore_ascii_case("set-cookie") {
                self.set_cookies.push(v.clone());
                let pair = v.split(';').next().unwrap();
                let (name, value) = pair.split_once('=').unwrap();
                let gone = value.is_empty() || v.contains("Max-Age=0");
                if gone {
                    self.jar.remove(name);
                } else {
                    self.jar.insert(name.to_owned(), value.to_owned());
                }
            }
        }
        r
    }

    async fn get(&mut self, path: &str) -> Resp {
        self.send("GET", path, &[], None).await
    }

    async fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> Resp {
        let body: Vec<String> = fields.iter().map(|(n, v)| format!("{n}={}", enc(v))).collect();
        self.send("POST", path, &[], Some(&body.join("&"))).await
    }

    /// The sign-in page for `ret`, then its form posted with these fields.
    async fn sign_in_with(&mut self, ret: &str, fields: &[(&str, &str)]) -> Resp {
        let page = self.get(&format!("/.gatehouse/signin?return={}", enc(ret))).await;
        assert_eq!(page.status, 200, "{}", page.text());
        let csrf = field(&page.text(), "csrf");
        let ret_field = field(&page.text(), "return");
        let mut all = vec![("csrf", csrf.as_str()), ("return", ret_field.as_str())];
        all.extend_from_slice(fields);
        self.post("/.gatehouse/signin", &all).await
    }

    async fn sign_in(&mut self, user: &str, password: &str, ret: &str) -> Resp {
        self.sign_in_with(ret, &[("username", user), ("password", password)]).await
    }

    fn cookie(&self, name: &str) -> Option<String> {
        self.jar.get(name).cloned()
    }
}

fn enc(v: &str) -> String {
    v.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The value of a hidden field `name` in a page (HTML-unescaped).
fn field(html: &str, name: &str) -> String {
    let needle = format!("name=\"{name}\" value=\"");
    let at = html.find(&needle).unwrap_or_else(|| panic!("no field {name} in {html}")) + needle.len();
    let raw = &html[at..at + html[at..].find('"').unwrap()];
    raw.replace("&#38;", "&").replace("&amp;", "&").replace("&#34;", "\"").replace("&quot;", "\"").replace("&#39;", "'")
}

fn message(html: &str) -> String {
    let Some(at) = html.find(r#"id="message""#) else { return String::new() };
    let start = at + html[at..].find('>').unwrap() + 1;
    html[start..start + html[start..].find('<').unwrap()].to_owned()
}

/// A ticket sealed by the test with a key of the file, for `host`.
fn forge(key: &str, host: &str, id: [u8; 32], issued: u64, ends: u64) -> String {
    let keys = websession::Keys::parse(key).unwrap();
    let t = websession::Ticket { id, issued, ends, public: false };
    keys.seal(format!("__Host-gatehouse|host:{host}").as_bytes(), &t.encode(), [3; 24])
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

/// Whether a request with `cookie` as the session cookie is signed in:
/// 200 from the backend, or 303 to the sign-in page.
async fn signed_in_with(b: &Browser, cookie: &str) -> bool {
    let mut other = clone_of(b);
    other.jar.clear();
    other.jar.insert("__Host-gatehouse".into(), cookie.into());
    let r = other.get("/app/x").await;
    match r.status {
        200 => true,
        303 => {
            assert!(r.header("location").unwrap().starts_with("/.gatehouse/signin?return="), "{:?}", r.headers);
            false
        }
        s => panic!("status {s}: {}", r.text()),
    }
}

fn clone_of(b: &Browser) -> Browser {
    Browser { addr: b.addr, ca: b.ca.clone(), host: b.host.clone(), jar: b.jar.clone(), set_cookies: Vec::new() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_signs_in_and_returns_where_it_asked() {
    let s = start("", "", app_site).await;
    let mut b = Browser::new(&s, HOST);
    let r = b.get("/app/x?y=1&z=%2F").await;
    assert_eq!(r.status, 303, "{}", r.text());
    assert_eq!(r.header("location"), Some("/.gatehouse/signin?return=%2Fapp%2Fx%3Fy%3D1%26z%3D%252F"));

    let page = b.get(r.header("location").unwrap()).await;
    assert_eq!(page.status, 200);
    assert_eq!(
        page.header("content-security-policy"),
        Some("default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
    );
    assert_eq!(page.header("x-frame-options"), Some("DENY"));
    assert_eq!(page.header("cache-control"), Some("no-store"));
    let pre = b.set_cookies.last().unwrap().clone();
    assert!(
        pre.starts_with("__Host-gatehouse-pre=") && pre.ends_with("; Path=/; Secure; HttpOnly; SameSite=Strict"),
        "{pre}"
    );
    let html = page.text();
    assert_eq!(field(&html, "return"), "/app/x?y=1&z=%2F");
    assert!(
        html.contains(r#"<label for="username">User name</label>"#)
            && html.contains(r#"<label for="password">Password</label>"#)
    );
    assert!(html.contains("This is a public or shared computer") && html.contains("Example mail"));
    assert!(!html.contains("<script") && !html.contains("style=\"") && !html.contains("//"), "{html}");

    let r = b.sign_in("alice", "Alice-Pass1", "/app/x?y=1&z=%2F").await;
    assert_eq!(r.status, 303, "{}", r.text());
    assert_eq!(r.header("location"), Some("/app/x?y=1&z=%2F"));
    let session = b.set_cookies.iter().find(|c| c.starts_with("__Host-gatehouse=")).unwrap().clone();
    assert!(session.contains("; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=86400"), "{session}");
    assert!(!session.contains("Domain="), "a __Host- cookie has no Domain: {session}");
    assert!(b.cookie("__Host-gatehouse-pre").is_none(), "the pre-sign-in cookie is cleared");

    b.jar.insert("MapiContext".into(), "kept".into());
    let r = b.get("/app/x?y=1").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = r.json();
    assert_eq!(seen["headers"]["x-remote-user"], "ADTEST\\alice");
    assert_eq!(seen["headers"]["cookie"], "MapiContext=kept", "gatehouse's cookies never reach the backend");
    s.g.wait_for(|| s.g.access_log().iter().any(|l| l["auth"] == "Forms" && l["status"] == 200), "the access record");
    let log = s.g.access_log();
    let rec = log.iter().find(|l| l["auth"] == "Forms" && l["status"] == 200).unwrap();
    assert_eq!(rec["user"], "ADTEST\\alice");
    assert!(s.g.stderr().contains("signed in on the sign-in page") && s.g.stderr().contains("user=ADTEST\\alice"));
    // The style sheet, from the pages themselves.
    let css = b.get("/.gatehouse/style.css").await;
    assert_eq!((css.status, css.header("content-type")), (200, Some("text/css; charset=utf-8")));
    assert!(s.backend.seen().iter().all(|r| !r.path.contains(".gatehouse")), "the pages never reach a backend");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outlook_activesync_and_scripts_keep_ntlm_and_basic() {
    let s = start("", "", app_site).await;
    let mut b = Browser::new(&s, HOST);
    let offers = |r: &Resp| -> Vec<String> {
        r.headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case("www-authenticate")).map(|(_, v)| v.clone()).collect()
    };
    let expected = ["NTLM", "Basic realm=\"Domain account\", charset=\"UTF-8\""];
    for (what, headers, method) in [
        ("Outlook", vec![("User-Agent", OUTLOOK_UA), ("Accept", "*/*")], "GET"),
        ("ActiveSync", vec![("User-Agent", ACTIVESYNC_UA), ("Accept", "*/*")], "POST"),
        ("curl", vec![("User-Agent", "curl/7.88.1"), ("Accept", "*/*")], "GET"),
        ("a browser's POST", vec![], "POST"),
        ("a browser's PROPFIND", vec![], "PROPFIND"),
    ] {
        let r = b.send(method, "/app/ews/x", &headers, if method == "POST" { Some("") } else { None }).await;
        assert_eq!(r.status, 401, "{what}: {}", r.text());
        assert_eq!(offers(&r), expected, "{what}");
        assert!(r.header("location").is_none(), "{what}");
    }
    // Basic still signs a script in on the same site.
    let basic = format!("Basic {}", b64("alice:Alice-Pass1"));
    let r = b.send("GET", "/app/x", &[("Authorization", &basic), ("Accept", "*/*")], None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["headers"]["x-remote-user"], "ADTEST\\alice");

    // The Exchange preset: browsers of /owa sign in on the page; Outlook's
    // agent on /owa and /ews keeps NTLM; ActiveSync keeps Basic.
    let s = start("", "", |backend| {
        format!("[[site]]\nname = \"exchange\"\npreset = \"exchange\"\nlistener = \"public\"\nhosts = [\"{HOST}\"]\nbackend = \"{backend}\"\n")
    })
    .await;
    let mut b = Browser::new(&s, HOST);
    let r = b.get("/owa/").await;
    assert_eq!((r.status, r.header("location")), (303, Some("/.gatehouse/signin?return=%2Fowa%2F")));
    for path in ["/owa/", "/ews/exchange.asmx"] {
        let r = b.send("GET", path, &[("User-Agent", OUTLOOK_UA)], None).await;
        assert_eq!((r.status, offers(&r)), (401, vec!["NTLM".to_owned()]), "Outlook on {path}");
    }
    let r = b
        .send(
            "POST",
            "/Microsoft-Server-ActiveSync?Cmd=Sync",
            &[("User-Agent", ACTIVESYNC_UA), ("Accept", "*/*")],
            Some(""),
        )
        .await;
    assert_eq!((r.status, offers(&r)), (401, vec![expected[1].to_owned()]), "ActiveSync");
    let r = b.get("/ews/exchange.asmx").await;
    assert_eq!(r.status, 401, "the preset offers Forms on /owa and /ecp only");
    // OWA's logoff link ends gatehouse's session.
    assert_eq!(b.sign_in("bob", "Bob-Pass1", "/owa/").await.status, 303);
    let cookie = b.cookie("__Host-gatehouse").unwrap();
    assert_eq!(b.get("/owa/").await.status, 200);
    let r = b.get("/owa/logoff.owa").await;
    assert_eq!((r.status, r.header("location")), (303, Some("/.gatehouse/signedout")));
    let mut copy = clone_of(&b);
    copy.jar.insert("__Host-gatehouse".into(), cookie);
    assert_eq!(copy.get("/owa/").await.status, 303, "the copied cookie after OWA's logoff");
}

fn b64(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_cut_expired_and_foreign_cookies_are_refused() {
    let s = start("", "", |b| {
        app_site(b) + &app_site(b).replace("name = \"app\"", "name = \"other\"").replace(HOST, OTHER)
    })
    .await;
    let mut b = Browser::new(&s, HOST);
    assert_eq!(b.sign_in("alice", "Alice-Pass1", "/app/").await.status, 303);
    let good = b.cookie("__Host-gatehouse").unwrap();
    assert!(signed_in_with(&b, &good).await);
    // One character changed anywhere, or the cookie cut.
    let flip = |i: usize| {
        let mut bytes = good.clone().into_bytes();
        bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
        String::from_utf8(bytes).unwrap()
    };
    for i in [0, 1, 5, 20, good.len() / 2, good.len() - 1] {
        assert!(!signed_in_with(&b, &flip(i)).await, "changed at {i}");
    }
    for cut in [0, 10, good.len() - 1] {
        assert!(!signed_in_with(&b, &good[..cut]).await, "cut at {cut}");
    }
    assert!(!signed_in_with(&b, &format!("{good}AAAA")).await, "bytes added");
    // Sealed with the right key, but past its end, or naming no session.
    assert!(!signed_in_with(&b, &forge(K1, HOST, [7; 32], now() - 7200, now() - 3600)).await, "expired");
    assert!(!signed_in_with(&b, &forge(K1, HOST, [7; 32], now(), now() + 3600)).await, "no such session");
    // A cookie of the other host (its own __Host- cookie) does not open here.
    let mut o = Browser::new(&s, OTHER);
    assert_eq!(o.sign_in("bob", "Bob-Pass1", "/app/").await.status, 303);
    let theirs = o.cookie("__Host-gatehouse").unwrap();
    assert!(!signed_in_with(&b, &theirs).await, "sealed for other.example.com");
    assert!(signed_in_with(&b, &good).await, "the good cookie still works");
    // The refused cookie is cleared, and a forged one is logged as such.
    let mut t = clone_of(&b);
    t.jar.insert("__Host-gatehouse".into(), flip(30));
    let r = t.get("/app/x").await;
    assert!(
        t.set_cookies.iter().any(|c| c.starts_with("__Host-gatehouse=;") && c.contains("Max-Age=0")),
        "{:?}",
        r.headers
    );
    assert!(s.g.stderr().contains("session cookie does not verify"), "{}", s.g.stderr());
    // Non-browsers with a bad cookie get the other schemes.
    let r = t
        .send("GET", "/app/x", &[("Accept", "*/*"), ("Cookie", &format!("__Host-gatehouse={}", flip(30)))], None)
        .await;
    assert_eq!(r.status, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_time_and_lifetime_end_sessions() {
    let times = "idle = \"3s\"\nlifetime = \"5s\"\npublic_idle = \"1s\"\npublic_lifetime = \"2s\"";
    let s = start(times, "", app_site).await;
    let mut public = Browser::new(&s, HOST);
    let r = public.sign_in_with("/app/", &[("username", "bob"), ("password", "Bob-Pass1"), ("public", "on")]).await;
    assert_eq!(r.status, 303);
    let set = public.set_cookies.iter().find(|c| c.starts_with("__Host-gatehouse=")).unwrap();
    assert!(!set.contains("Max-Age"), "a public computer's cookie ends with the browser: {set}");
    assert_eq!(public.get("/app/").await.status, 200);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(public.get("/app/").await.status, 303, "idle for 1.5 s on a public computer");

    let mut private = Browser::new(&s, HOST);
    assert_eq!(private.sign_in("alice", "Alice-Pass1", "/app/").await.status, 303);
    // Used every second: idle never ends it, the lifetime does.
    let started = std::time::Instant::now();
    let mut last_ok = Duration::ZERO;
    while started.elapsed() < Duration::from_secs(7) {
        if private.get("/app/").await.status == 200 {
            last_ok = started.elapsed();
        } else {
            break;
        }
        tokio::time::sleep(Duration::from_millis(900)).await;
    }
    assert!(
        last_ok >= Duration::from_secs(3) && last_ok < Duration::from_secs(6),
        "last signed-in request at {last_ok:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_taken_out_of_the_key_file_refuses_its_cookies() {
    let s = start("", "", app_site).await;
    let mut b = Browser::new(&s, HOST);
    assert_eq!(b.sign_in("alice", "Alice-Pass1", "/app/").await.status, 303);
    let sealed_by_k1 = b.cookie("__Host-gatehouse").unwrap();
    let config = s.config.clone();
    // Rotation: a new key first, the old one kept: nobody is signed out.
    write_keys(s.g.dir.path(), &[K2, K1]);
    s.g.reload(&config);
    assert!(signed_in_with(&b, &sealed_by_k1).await, "the old key still opens");
    let mut c = Browser::new(&s, HOST);
    assert_eq!(c.sign_in("bob", "Bob-Pass1", "/app/").await.status, 303);
    let sealed_by_k2 = c.cookie("__Host-gatehouse").unwrap();
    // A keep-alive connection that already used the K1 cookie (gatehouse
    // keeps the last cookie that opened on a connection).
    let mut kept = Conn::open_tls(b.addr, &b.ca, HOST).await;
    let keep_alive = format!(
        "GET /app/k HTTP/1.1\r\nHost: {HOST}\r\nAccept: {CHROME_ACCEPT}\r\nCookie: __Host-gatehouse={sealed_by_k1}\r\n\r\n"
    );
    kept.send(keep_alive.as_bytes()).await;
    assert_eq!(kept.response().await.status, 200);
    // The old key removed: what it sealed is refused, on that connection too.
    write_keys(s.g.dir.path(), &[K2]);
    s.g.reload(&config);
    kept.send(keep_alive.as_bytes()).await;
    assert_eq!(kept.response().await.status, 303, "the same connection after the key was removed");
    assert!(!signed_in_with(&b, &sealed_by_k1).await, "sealed with a removed key");
    assert!(signed_in_with(&c, &sealed_by_k2).await);
    assert!(s.g.stderr().contains("session cookie sealed with a key not in the key file"), "{}", s.g.stderr());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn posts_without_the_right_csrf_token_are_refused() {
    let s = start("", "", app_site).await;
    let creds = [("username", "alice"), ("password", "Alice-Pass1"), ("return", "/app/")];
    let mut b = Browser::new(&s, HOST);
    // No pre-sign-in cookie at all (a form on another site posting here).
    let r = b.post("/.gatehouse/signin", &[&creds[..], &[("csrf", "x")]].concat()).await;
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(message(&r.text()).contains("had expired or was not sent by this site"), "{}", r.text());
    // A pre-sign-in cookie, and no token, or another browser's token.
    let mut victim = Browser::new(&s, HOST);
    let page = victim.get("/.gatehouse/signin").await;
    let victims_token = field(&page.text(), "csrf");
    let mut attacker = Browser::new(&s, HOST);
    attacker.get("/.gatehouse/signin").await;
    for (what, token) in
        [("no token", None), ("another browser's token", Some(victims_token.as_str())), ("garbage", Some("AAAA"))]
    {
        let mut fields = creds.to_vec();
        if let Some(t) = token {
            fields.push(("csrf", t));
        }
        let r = attacker.post("/.gatehouse/signin", &fields).await;
        assert_eq!(r.status, 403, "{what}: {}", r.text());
        assert!(attacker.cookie("__Host-gatehouse").is_none(), "{what}: signed in");
    }
    // The password form too.
    let r = attacker
        .post("/.gatehouse/password", &[("username", "alice"), ("old", "a"), ("new", "b"), ("confirm", "b")])
        .await;
    assert_eq!(r.status, 403);
    // Not a form.
    let r = victim.send("POST", "/.gatehouse/signin", &[("Content-Type", "application/json")], Some("{}")).await;
    assert_eq!(r.status, 415);
    for cause in ["no pre-sign-in cookie (CSRF)", "no CSRF token", "wrong CSRF token"] {
        assert!(s.g.stderr().contains(cause), "{cause}: {}", s.g.stderr());
    }
    assert!(s.g.stderr().matches("signed in on the sign-in page").count() == 0);
    // The right token signs in.
    let r = victim.post("/.gatehouse/signin", &[&creds[..], &[("csrf", victims_token.as_str())]].concat()).await;
    assert_eq!(r.status, 303);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn return_addresses_off_this_site_go_to_its_root() {
    let s = start("attempts_per_minute = 1000", "", |b| {
        app_site(b)
            + &format!("[[site]]\nname = \"open\"\nlistener = \"public\"\nhosts = [\"{OTHER}\"]\nbackend = \"{b}\"\nauth = []\n")
    })
    .await;
    let mut b = Browser::new(&s, HOST);
    let port = b.addr.port();
    let bad = [
        "//evil.example".to_owned(),
        "//evil.example/app/".to_owned(),
        "https://evil.example/app/".to_owned(),
        "http://evil.example".to_owned(),
        "/\\evil.example".to_owned(),
        "\\\\evil.example".to_owned(),
        "%2F%2Fevil.example".to_owned(),
        "/%2F%2Fevil.example".to_owned(),
        "/%2fevil.example".to_owned(),
        "/%5Cevil.example".to_owned(),
        "/%255C%255Cevil.example".to_owned(),
        "https:evil.example".to_owned(),
        "javascript:alert(1)".to_owned(),
        format!("https://{HOST}:{port}.evil.example/app/"),
        format!("https://{HOST}:{port}@evil.example/app/"),
        format!("http://{HOST}:{port}/app/"),
        format!("https://{OTHER}:{port}/"),
        "/app/%0d%0aSet-Cookie:x=1".to_owned(),
        "/nothing-here".to_owned(),
        "/.gatehouse/logoff".to_owned(),
        "/app/../.gatehouse/logoff".to_owned(),
    ];
    for ret in &bad {
        let page = b.get(&format!("/.gatehouse/signin?return={}", enc(ret))).await;
        assert_eq!(field(&page.text(), "return"), "/app/", "the page's return for {ret:?}");
        // Posted as is (a crafted form): the answer still goes to the root.
        let csrf = field(&page.text(), "csrf");
        let r = b
            .post(
                "/.gatehouse/signin",
                &[("csrf", &csrf), ("return", ret), ("username", "bob"), ("password", "Bob-Pass1")],
            )
            .await;
        assert_eq!((r.status, r.header("location")), (303, Some("/app/")), "{ret:?}");
    }
    for good in ["/app/", "/app/inbox?folder=a%2Fb", &format!("https://{HOST}:{port}/app/x")] {
        let r = b.sign_in("bob", "Bob-Pass1", good).await;
        let expected = good.strip_prefix(&format!("https://{HOST}:{port}")).unwrap_or(good);
        assert_eq!(r.header("location"), Some(expected), "{good}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_sign_in_makes_a_new_session_and_ends_the_old() {
    let s = start("", "", app_site).await;
    // An attacker's own good session cookie, planted in the victim's browser
    // (fixation): the victim's sign-in replaces it, and it ends.
    let mut attacker = Browser::new(&s, HOST);
    assert_eq!(attacker.sign_in("bob", "Bob-Pass1", "/app/").await.status, 303);
    let planted = attacker.cookie("__Host-gatehouse").unwrap();
    let mut victim = Browser::new(&s, HOST);
    victim.jar.insert("__Host-gatehouse".into(), planted.clone());
    assert_eq!(victim.get("/app/").await.json()["headers"]["x-remote-user"], "ADTEST\\bob");
    let pre = {
        victim.get("/.gatehouse/signin").await;
        victim.cookie("__Host-gatehouse-pre").unwrap()
    };
    assert_eq!(victim.sign_in("alice", "Alice-Pass1", "/app/").await.status, 303);
    let fresh = victim.cookie("__Host-gatehouse").unwrap();
    assert_ne!(fresh, planted);
    assert_ne!(fresh, pre);
    assert_eq!(victim.get("/app/").await.json()["headers"]["x-remote-user"], "ADTEST\\alice");
    assert!(!signed_in_with(&victim, &planted).await, "the replaced session ended");
    assert!(s.g.stderr().contains("replaced=true"), "{}", s.g.stderr());
    // The same user signing in again: again a new id, the old one ends.
    assert_eq!(victim.sign_in("alice", "Alice-Pass1", "/app/").await.status, 303);
    let again = victim.cookie("__Host-gatehouse").unwrap();
    assert_ne!(again, fresh);
    assert!(!signed_in_with(&victim, &fresh).await);
    assert!(signed_in_with(&victim, &again).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logoff_ends_the_session_and_a_copy_of_the_cookie_is_refused() {
    let socket = tempfile::tempdir().unwrap();
    let control = format!("[control]\nsocket = \"{}/control.sock\"\n", socket.path().display());
    let s = start("", &control, app_site).await;
    let mut b = Browser::new(&s, HOST);
    assert_eq!(b.sign_in("alice", "Alice-Pass1", "/app/").await.status, 303);
    let copy = b.cookie("__Host-gatehouse").unwrap();
    // A keep-alive connection whose cookie already opened: it ends with the session.
    let mut kept = Conn::open_tls(b.addr, &b.ca, HOST).await;
    let again = format!(
        "GET /app/k HTTP/1.1\r\nHost: {HOST}\r\nAccept: {CHROME_ACCEPT}\r\nCookie: __Host-gatehouse={copy}\r\n\r\n"
    );
    kept.send(again.as_bytes()).await;
    assert_eq!(kept.response().await.status, 200);
    let r = b.get("/.gatehouse/logoff").await;
    assert_eq!((r.status, r.header("location")), (303, Some("/.gatehouse/signedout")));
    assert!(b.set_cookies.iter().any(|c| c.starts_with("__Host-gatehouse=;") && c.contains("Max-Age=0")));
    assert!(b.cookie("__Host-gatehouse").is_none());
    let out = b.get("/.gatehouse/signedout").await;
    assert_eq!(out.status, 200);
    assert!(out.text().contains("You are signed out") && out.text().contains(r#"href="/.gatehouse/signin""#));
    assert!(!signed_in_with(&b, &copy).await, "a copy of the cookie after logoff");
    kept.send(again.as_bytes()).await;
    assert_eq!(kept.response().await.status, 303, "the kept-alive connection after logoff");
    let r = b.send("GET", "/app/", &[("Accept", "*/*"), ("Cookie", &format!("__Host-gatehouse={copy}"))], None).await;
    assert_eq!(r.status, 401, "a script with the copy");
    assert!(s.g.stderr().contains("signed out client="), "{}", s.g.stderr());

    // Revoked by an administrator, through the control socket.
    let (mut one, mut two) = (Browser::new(&s, HOST), Browser::new(&s, HOST));
    assert_eq!(one.sign_in("ADTEST\\bob", "Bob-Pass1", "/app/").await.status, 303);
    assert_eq!(two.sign_in("bob", "Bob-Pass1", "/app/").await.status, 303);
    let mut alice = Browser::new(&s, HOST);
    assert_eq!(alice.sign_in("alice", "Alice-Pass1", "/app/").await.status, 303);
    let gatehouse = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_gatehouse")).args(args).arg("-c").arg(&s.g.config).output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let mode = std::fs::metadata(socket.path().join("control.sock")).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let (ok, listed) = gatehouse(&["sessions", "list"]);
    assert!(ok && listed.starts_with("3 sessions\n"), "{listed}");
    assert_eq!(listed.matches("ADTEST\\bob\t").count(), 2, "{listed}");
    assert!(!listed.contains(&one.cookie("__Host-gatehouse").unwrap()), "no cookie in the listing");
    let (ok, said) = gatehouse(&["sessions", "revoke", "bob"]);
    assert!(ok && said == "2 sessions of bob ended\n", "{said}");
    assert_eq!(one.get("/app/").await.status, 303);
    assert_eq!(two.get("/app/").await.status, 303);
    assert_eq!(alice.get("/app/").await.status, 200, "another user's session stays");
    let (ok, said) = gatehouse(&["sessions", "revoke", "nobody"]);
    assert!(ok && said.starts_with("0 sessions"), "{said}");
    // Not the owner's account: refused by the kernel's credentials.
    let said = ask_as_nobody(&socket.path().join("control.sock"));
    assert!(said.starts_with("error: not allowed"), "{said}");
    assert!(s.g.stderr().contains("control socket: refused a connection from another account"));
}

/// `sessions\tlist` sent to the socket as the account `nobody`, with the
/// socket and its folder opened to everyone first (as a mistake would): the
/// kernel's peer credentials still keep nobody out.
fn ask_as_nobody(socket: &Path) -> String {
    std::fs::set_permissions(socket.parent().unwrap(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    let script = "import socket,sys\ns=socket.socket(socket.AF_UNIX)\ns.connect(sys.argv[1])\ntry:\n    s.sendall(b'sessions\\tlist\\n')\nexcept BrokenPipeError:\n    pass\nprint(s.recv(4096).decode())";
    let out = Command::new("setpriv")
        .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "/usr/bin/python3", "-c", script])
        .arg(socket)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_messages_never_tell_whether_a_user_exists() {
    let s = start("attempts_per_minute = 20", "[lockout]\nmax_failures_per_user = 2\n", app_site).await;
    let mut b = Browser::new(&s, HOST);
    let strip = |html: String| -> String {
        let csrf = field(&html, "csrf");
        html.replace(&csrf, "TOKEN")
    };
    let wrong = b.sign_in("alice", "not-it", "/app/").await;
    let unknown = b.sign_in("nosuchuser", "not-it", "/app/").await;
    assert_eq!(message(&wrong.text()), "The user name or password is incorrect.");
    assert_eq!(
        strip(wrong.text()).replace("alice", "NAME"),
        strip(unknown.text()).replace("nosuchuser", "NAME"),
        "an unknown user's page is a wrong password's"
    );
    assert_eq!(wrong.status, unknown.status);
    assert!(b.cookie("__Host-gatehouse").is_none());
    // The second failure reaches the limit; then even the right password
    // is not checked, and the page says so.
    b.sign_in("alice", "not-it-either", "/app/").await;
    let locked = b.sign_in("alice", "Alice-Pass1", "/app/").await;
    assert!(
        message(&locked.text())
            .starts_with("Your account is locked out here after too many failed sign-ins. Wait 30 minutes"),
        "{}",
        locked.text()
    );
    assert!(b.cookie("__Host-gatehouse").is_none());
    assert!(s.g.stderr().contains("the password was not sent to the domain"));
    // An unknown name is locked out alike once it has failed as often.
    b.sign_in("nosuchuser", "x", "/app/").await;
    let unknown = b.sign_in("nosuchuser", "x", "/app/").await;
    assert_eq!(message(&unknown.text()), message(&locked.text()));
    // The name typed comes back escaped.
    let r = b.sign_in("\"><b>x</b>", "x", "/app/").await;
    assert!(!r.text().contains("<b>x</b>"), "{}", r.text());

    // Per address: past attempts_per_minute, nothing is checked.
    let s = start("attempts_per_minute = 3", "", app_site).await;
    let mut b = Browser::new(&s, HOST);
    for _ in 0..3 {
        assert_eq!(message(&b.sign_in("bob", "nope", "/app/").await.text()), "The user name or password is incorrect.");
    }
    let r = b.sign_in("alice", "Alice-Pass1", "/app/").await;
    assert_eq!(r.status, 429, "{}", r.text());
    assert!(message(&r.text()).contains("Too many sign-in attempts"));
    assert!(b.cookie("__Host-gatehouse").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_sign_in_covers_the_cookie_domain() {
    let s = start("cookie_domain = \"example.com\"", "", |b| {
        app_site(b) + &app_site(b).replace("name = \"app\"", "name = \"other\"").replace(HOST, OTHER)
    })
    .await;
    let mut b = Browser::new(&s, HOST);
    assert_eq!(b.sign_in("alice", "Alice-Pass1", "/app/").await.status, 303);
    let set = b.set_cookies.iter().find(|c| c.starts_with("__Secure-gatehouse=")).unwrap();
    assert!(set.contains("; Domain=example.com") && set.contains("Secure; HttpOnly; SameSite=Lax"), "{set}");
    // The browser sends a Domain cookie to the other host too.
    let mut other = Browser { host: OTHER.into(), ..clone_of(&b) };
    let r = other.get("/app/y").await;
    assert_eq!(r.status, 200, "no second sign-in: {}", r.text());
    assert_eq!(r.json()["headers"]["x-remote-user"], "ADTEST\\alice");
    assert!(r.json()["headers"]["cookie"].is_null());
    // Logoff on one host ends it on both.
    other.get("/.gatehouse/logoff").await;
    assert_eq!(b.get("/app/").await.status, 303);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_password_cookie_or_token_in_any_log() {
    let s = start("", "", app_site).await;
    let mut b = Browser::new(&s, HOST);
    let secret = "Alice-Pass1";
    b.sign_in("alice", "Wrong-Secret-77", "/app/").await;
    let page = b.get("/.gatehouse/signin").await;
    let csrf = field(&page.text(), "csrf");
    let pre = b.cookie("__Host-gatehouse-pre").unwrap();
    b.post(
        "/.gatehouse/signin",
        &[("csrf", &csrf), ("return", "/app/?q=hidden-query"), ("username", "alice"), ("password", secret)],
    )
    .await;
    let session = b.cookie("__Host-gatehouse").unwrap();
    b.get("/app/?q=hidden-query").await;
    b.get("/.gatehouse/logoff").await;
    s.g.wait_for(|| s.g.access_log().len() >= 6, "the access records");
    let logs = s.g.stderr() + &std::fs::read_to_string(s.g.path("access.log")).unwrap();
    for (what, value) in [
        ("password", secret),
        ("wrong password", "Wrong-Secret-77"),
        ("session cookie", &session),
        ("pre-sign-in cookie", &pre),
        ("CSRF token", &csrf),
        ("query", "hidden-query"),
    ] {
        assert!(!logs.contains(value), "the {what} is in a log:\n{logs}");
    }
}

#[test]
fn check_refuses_what_cannot_work() {
    let dir = tempfile::tempdir().unwrap();
    make_certs(dir.path(), &[("mail", &[HOST, OTHER])]);
    write_keys(dir.path(), &[K1]);
    std::fs::write(dir.path().join("users"), "ADTEST:alice:Alice-Pass1\n").unwrap();
    let base = |forms: &str, listener: &str, site: &str| {
        format!(
            "[domain]\nrealm = \"AD.TEST\"\nnetbios_name = \"ADTEST\"\n[accounts]\nsource = \"file\"\nfile = \"users\"\n{forms}\n\
             [[listener]]\nname = \"public\"\nbind = \"127.0.0.1:0\"\n{listener}\n\
             [[site]]\nname = \"app\"\nlistener = \"public\"\nbackend = \"http://127.0.0.1:9\"\n{site}\n"
        )
    };
    let tls = "tls = { cert = \"mail.pem\", key = \"mail.key\" }";
    let forms = "[forms]\nkey_file = \"session.keys\"";
    let site = "hosts = [\"mail.example.com\"]\nauth = [\"Forms\", \"NTLM\"]";
    let check = |text: &str| {
        let file = dir.path().join("gatehouse.toml");
        std::fs::write(&file, text).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_gatehouse")).args(["check", "-c"]).arg(&file).output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (ok, out) = check(&base(forms, tls, site));
    assert!(ok, "{out}");
    assert!(out.contains("forms: sign-in page \"Sign in\"; a sign-in per host; keys "), "{out}");
    for (what, text, says) in [
        ("a plain listener", base(forms, "", site), "offers Forms on listener `public`, which has no TLS"),
        ("no [forms]", base("", tls, site), "offers Forms but there is no [forms] section"),
        (
            "a cookie domain that misses a host",
            base(&format!("{forms}\ncookie_domain = \"corp.example\""), tls, site),
            "host `mail.example.com` is not under [forms] cookie_domain `corp.example`",
        ),
        (
            "a top-level cookie domain",
            base(&format!("{forms}\ncookie_domain = \"com\""), tls, site),
            "is not a parent domain",
        ),
        ("no key file", base("[forms]\nkey_file = \"nothing.keys\"", tls, site), "nothing.keys: No such file"),
        ("times upside down", base(&format!("{forms}\npublic_idle = \"9h\""), tls, site), "public_idle is longer than"),
        ("an unknown key", base(&format!("{forms}\nkeyfile = \"x\""), tls, site), "unknown key `keyfile`"),
        ("a logo that is no image", base(&format!("{forms}\nlogo = \"users\""), tls, site), "a logo is a .png, .svg"),
    ] {
        let (ok, out) = check(&text);
        assert!(!ok && out.contains(says), "{what}: {out}");
    }
    // A key file others can read would let them sign in as anyone.
    std::fs::set_permissions(dir.path().join("session.keys"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let (ok, out) = check(&base(forms, tls, site));
    assert!(!ok && out.contains("readable or writable by others (mode 644)") && out.contains("chmod 600"), "{out}");
    std::fs::write(dir.path().join("session.keys"), "# no key yet\n").unwrap();
    std::fs::set_permissions(dir.path().join("session.keys"), std::fs::Permissions::from_mode(0o600)).unwrap();
    let (ok, out) = check(&base(forms, tls, site));
    assert!(!ok && out.contains("no key in the file"), "{out}");
    assert!(!out.contains(K1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pages_are_gatehouses_own_and_reserved() {
    let s = start("logo = \"logo.svg\"", "", |b| {
        app_site(b)
            + &format!("[[site]]\nname = \"open\"\nlistener = \"public\"\nhosts = [\"{OTHER}\"]\nbackend = \"{b}\"\nauth = []\n")
    })
    .await;
    let mut b = Browser::new(&s, HOST);
    for path in ["/.gatehouse/signin", "/.GATEHOUSE/SignIn", "/%2egatehouse/signin", "//.gatehouse/signin"] {
        let r = b.get(path).await;
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        assert!(r.text().contains("Sign in"), "{path}");
    }
    let logo = b.get("/.gatehouse/logo").await;
    assert_eq!((logo.status, logo.header("content-type")), (200, Some("image/svg+xml")));
    assert_eq!(
        logo.header("content-security-policy"),
        b.get("/.gatehouse/signin").await.header("content-security-policy")
    );
    assert_eq!(b.get("/.gatehouse/nothing").await.status, 404);
    // Passwords from a users file are not changed on the page, and it says so.
    let page = b.get("/.gatehouse/password?return=%2Fapp%2F").await;
    assert!(page.text().contains(r#"<label for="new">New password</label>"#), "{}", page.text());
    let csrf = field(&page.text(), "csrf");
    let fields = [
        ("csrf", csrf.as_str()),
        ("return", "/app/"),
        ("username", "alice"),
        ("old", "Alice-Pass1"),
        ("new", "Alice-Pass2x"),
        ("confirm", "Alice-Pass2x"),
    ];
    let r = b.post("/.gatehouse/password", &fields).await;
    assert_eq!(
        message(&r.text()),
        "Passwords cannot be changed here. Ask your help desk, or change it on a computer of the domain."
    );
    let r = b.post("/.gatehouse/password", &[&fields[..5], &[("confirm", "other")]].concat()).await;
    assert_eq!(message(&r.text()), "The new passwords are not the same.");
    assert_eq!(b.send("DELETE", "/.gatehouse/signin", &[], None).await.status, 405);
    // A host where no site signs browsers in: the path is still not the backend's.
    let mut o = Browser::new(&s, OTHER);
    assert_eq!(o.get("/.gatehouse/signin").await.status, 404);
    assert_eq!(o.get("/anything").await.status, 200, "the open site itself is served");
    assert!(
        s.backend.seen().iter().all(|r| !r.path.to_ascii_lowercase().contains("gatehouse")),
        "{:?}",
        s.backend.seen().iter().map(|r| r.path.clone()).collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_rules_apply_to_a_session_as_to_any_sign_in() {
    let s = start("", "", |b| app_site(b) + "allow = [\"bob\"]\n").await;
    let mut alice = Browser::new(&s, HOST);
    assert_eq!(alice.sign_in("alice", "Alice-Pass1", "/app/").await.status, 303);
    let r = alice.get("/app/").await;
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(r.text().contains("signed in as ADTEST\\alice"), "{}", r.text());
    let mut bob = Browser::new(&s, HOST);
    assert_eq!(bob.sign_in("bob", "Bob-Pass1", "/app/").await.status, 303);
    assert_eq!(bob.get("/app/").await.status, 200);
    s.g.wait_for(|| s.g.access_log().iter().any(|l| l["status"] == 403 && l["denied"] == "not in allow"), "the denial");
}
