//! HTTP to HTTPS (issue 12): a plain listener with `redirect_to` sends every
//! request to the TLS listener and serves nothing else; and requests that
//! match no site are counted into one log line per period instead of a WARN
//! line each.

mod common;

use std::time::Duration;

use common::*;
use testkit::Backend;

/// A TLS listener `public` with a site for `mail.test` in front of `b`, and a
/// plain listener `web` that redirects to it.
fn start(b: &Backend) -> (Gatehouse, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let ca = make_certs(dir.path(), &[("mail", &["mail.test"])]);
    let text = Config::new()
        .listener(Listener::tls("public", "mail"))
        .listener(Listener::plain("web").set("redirect_to", "\"public\""))
        .site(Site::new("mail", "public", &format!("http://{}", b.addr)).hosts(&["mail.test"]).set("auth", "[]"));
    let g = Gatehouse::start_in(dir, &text.to_string());
    (g, ca)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_listener_sends_every_request_to_the_tls_listener() {
    let b = Backend::start().await;
    let (g, ca) = start(&b);
    let (web, tls) = (g.addr_of("web"), g.addr_of("public"));

    // GET and HEAD: 301 to the same host, path and query, on the TLS port
    // (not 443 here, so it is named); two requests on one connection.
    let mut c = Conn::open(web).await;
    c.send(b"GET /owa/?realm=corp&x=%20 HTTP/1.1\r\nHost: Mail.Test:80\r\n\r\n").await;
    let r = c.response().await;
    assert_eq!(r.status, 301, "{}", r.text());
    let expected = format!("https://Mail.Test:{}/owa/?realm=corp&x=%20", tls.port());
    assert_eq!(r.header("location"), Some(expected.as_str()));
    assert!(!r.text().contains("realm=corp"), "the page echoes the request: {}", r.text());
    c.send(b"HEAD /ews/exchange.asmx HTTP/1.1\r\nHost: mail.test\r\n\r\n").await;
    let mut head = Vec::new();
    assert!(c.read_until(b"\r\n\r\n").await);
    head.extend_from_slice(&c.buf);
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 301"), "{head}");
    assert!(head.contains(&format!("https://mail.test:{}/ews/exchange.asmx", tls.port())), "{head}");

    // Any other method: 308, which keeps the method and body; the body is not read.
    let r = request(web, "POST /rpc/rpcproxy.dll HTTP/1.1\r\nHost: mail.test\r\nContent-Length: 5\r\n\r\nhello").await;
    assert_eq!(r.status, 308);
    assert_eq!(r.header("location").unwrap(), format!("https://mail.test:{}/rpc/rpcproxy.dll", tls.port()));
    assert_eq!(r.header("connection"), Some("close"));

    // No valid Host: nowhere to send the client.
    let r = request(web, "GET / HTTP/1.0\r\n\r\n").await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.header("location").is_none());
    let r = request(web, "GET / HTTP/1.1\r\nHost: user@mail.test\r\n\r\n").await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.header("location").is_none());

    // The framing guard is in front of it like any listener: a smuggling
    // shape is refused and the connection closed.
    let mut c = Conn::open(web).await;
    c.send(b"POST / HTTP/1.1\r\nHost: mail.test\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG")
        .await;
    let r = c.response().await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.header("location").is_none());
    assert!(c.closed().await);

    // Nothing reached the backend; following the redirect does.
    assert!(b.seen().is_empty(), "a redirect listener forwarded: {:?}", b.seen().len());
    let mut c = Conn::open_tls(tls, &ca, "mail.test").await;
    c.send(get("mail.test", "/owa/?realm=corp").as_bytes()).await;
    let r = c.response().await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(b.seen().len(), 1);

    // The access log has the redirects, as any answer.
    g.wait_for(|| g.access_log().iter().any(|r| r["listener"] == "public"), "the access records");
    let log = g.access_log();
    let redirected: Vec<_> = log.iter().filter(|r| r["listener"] == "web").collect();
    assert!(redirected.iter().any(|r| r["status"] == 301 && r["path"] == "/owa/"), "{log:?}");
    assert!(redirected.iter().any(|r| r["status"] == 308), "{log:?}");
}

/// `check` passes a redirecting listener and says what it does, and refuses
/// each misuse naming the key and the fix. (A redirect to port 443 leaves the
/// port out: a test cannot bind 443, so `redirect.rs`'s unit tests show it.)
#[test]
fn check_refuses_redirect_misuse() {
    let dir = tempfile::tempdir().unwrap();
    make_certs(dir.path(), &[("mail", &["mail.test"])]);
    let check = |text: &str| {
        let path = dir.path().join("g.toml");
        std::fs::write(&path, text).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_gatehouse"))
            .args(["check", "-c"])
            .arg(&path)
            .output()
            .unwrap();
        (
            out.status.success(),
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
        )
    };
    let tls =
        "[[listener]]\nname = \"public\"\nbind = \"0.0.0.0:443\"\ntls = { cert = \"mail.pem\", key = \"mail.key\" }\n";
    let web = "[[listener]]\nname = \"web\"\nbind = \"0.0.0.0:80\"\nredirect_to = \"public\"\n";

    // The legitimate use: check passes and says what the listener does.
    let (ok, out) = check(&format!("{tls}\n{web}"));
    assert!(ok, "{out}");
    assert!(out.contains("listener web: every request redirected to https on listener public"), "{out}");

    // On the TLS listener itself.
    let (ok, out) = check(&format!("{}redirect_to = \"public\"\n", tls));
    assert!(!ok, "{out}");
    assert!(out.contains("g.toml:5:15: listener[0].redirect_to: a TLS listener serves its sites itself"), "{out}");

    // Naming a listener that does not exist, or one without TLS.
    let (ok, out) = check(&format!("{tls}\n{}", web.replace("\"public\"", "\"pubic\"")));
    assert!(!ok, "{out}");
    assert!(out.contains("listener[1].redirect_to: no listener is named `pubic` (TLS listeners: `public`)"), "{out}");
    let (ok, out) = check(&web.replace("\"public\"", "\"web\""));
    assert!(!ok, "{out}");
    assert!(out.contains("listener[0].redirect_to: listener `web` has no TLS"), "{out}");

    // A site on the redirecting listener could never be reached.
    let site = "[[site]]\nname = \"exchange\"\npreset = \"exchange\"\nlistener = \"web\"\nbackend = \"http://10.0.0.5\"\nauth = [\"Basic\"]\n[accounts]\nsource = \"file\"\nfile = \"users\"\n";
    std::fs::write(dir.path().join("users"), "").unwrap();
    let (ok, out) = check(&format!("{tls}\n{web}\n{site}"));
    assert!(!ok, "{out}");
    let line = "site[0].listener: site `exchange/autodiscover` is on listener `web`, which only redirects to `public`: put the site on `public`";
    assert!(out.contains(line), "{out}");
    assert_eq!(out.matches("which only redirects").count(), 1, "one problem per [[site]] table: {out}");
}

/// Scanners asking for `/` and `/healthz` at hosts nobody publishes: each
/// gets its 404 and its access record, but the operational log gets one
/// line with the count per period, not a WARN line each; other refusals still
/// warn, and a period without such requests writes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_to_no_site_are_counted_in_one_line() {
    let b = Backend::start().await;
    let text = format!(
        "[log]\nno_site_summary = \"2s\"\n\n{}",
        Config::new()
            .listener(Listener::plain("web"))
            .site(Site::new("app", "web", &format!("http://{}", b.addr)).hosts(&["app.test"]).set("auth", "[]"))
    );
    let g = Gatehouse::start(&text);
    let web = g.addr();
    let mut c = Conn::open(web).await;
    for i in 0..50 {
        let (host, path) = if i % 2 == 0 { ("scanner.test", "/") } else { ("10.1.2.3", "/healthz") };
        c.send(get(host, path).as_bytes()).await;
        assert_eq!(c.response().await.status, 404);
    }
    // A request to the site is no such request; a malformed path still warns.
    assert_eq!(request(web, &get("app.test", "/")).await.status, 200);
    assert_eq!(request(web, &get("app.test", "/a/%2e%2e/b")).await.status, 400);

    g.wait_for(|| g.stderr().contains("requests to no site"), "the summary line");
    let stderr = g.stderr();
    let summaries: Vec<&str> = stderr.lines().filter(|l| l.contains("requests to no site")).collect();
    assert_eq!(summaries.len(), 1, "{stderr}");
    assert!(
        summaries[0].contains("requests to no site: 50 in the last 2s") && summaries[0].contains("INFO"),
        "{stderr}"
    );
    let warns: Vec<&str> = stderr.lines().filter(|l| l.contains("WARN")).collect();
    assert!(!warns.iter().any(|l| l.contains("no site matches")), "a WARN line per request: {stderr}");
    assert_eq!(warns.len(), 1, "the 400 still warns, and only it: {stderr}");
    g.wait_for(|| g.access_log().iter().any(|r| r["status"] == 400), "the access records");
    let log = g.access_log();
    assert_eq!(log.iter().filter(|r| r["status"] == 404 && r["error"] == "no site matches").count(), 50, "{log:?}");

    // Nothing more to say: the next periods write no line.
    tokio::time::sleep(Duration::from_millis(4500)).await;
    assert_eq!(g.stderr().matches("requests to no site").count(), 1, "{}", g.stderr());
}
