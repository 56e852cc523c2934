//! Operating gatehouse (issue 19), through the real binary: the `[admin]`
//! listener (`/metrics` checked by Prometheus' own promtool, `/healthz`,
//! `/readyz`, the status page's headers), certificates renewed in place under
//! an open RPC_IN_DATA stream, the access log reopened on SIGUSR1.

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::*;
use ntlm::client::Client;
use testkit::Backend;

/// The admin listener's address, from its log line.
fn admin_addr(g: &Gatehouse) -> SocketAddr {
    g.wait_for(|| g.stderr().contains("admin listener ready"), "the admin listener");
    let log = g.stderr();
    let line = log.lines().rfind(|l| l.contains("admin listener ready")).unwrap().to_owned();
    line.split_whitespace().find_map(|w| w.strip_prefix("addr=")).unwrap().parse().unwrap()
}

async fn admin_get(addr: SocketAddr, path: &str) -> Resp {
    request(addr, &format!("GET {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n")).await
}

/// The value of the sample `series` (name and labels as written) in a scrape.
fn sample(scrape: &str, series: &str) -> Option<f64> {
    scrape.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

fn config(backend: SocketAddr, admin: &str) -> Config {
    Config::new()
        .domain(Domain::new().acceptor_spn("HTTP/proxy.ad.test"))
        .accounts(Accounts::file("users.ntlm"))
        .table("lockout", "max_failures_per_user = 2")
        .table("admin", admin)
        .listener(Listener::plain("public"))
        .site(Site::new("ews", "public", &format!("http://{backend}")).path_prefix("/ews/").auth(&["NTLM"]))
        .site(Site::new("open", "public", &format!("http://{backend}")))
}

fn start(config: &Config) -> Gatehouse {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("users.ntlm"), "ADTEST:bob:Bob-Pass1\n").unwrap();
    Gatehouse::start_in(dir, &config.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_requests_and_sign_ins_and_pass_promtool() {
    let b = Backend::start().await;
    let g = start(&config(b.addr, "bind = \"127.0.0.1:0\""));
    let admin = admin_addr(&g);
    let public = g.addr_of("public");

    assert_eq!(admin_get(admin, "/healthz").await.status, 200);
    let ready = admin_get(admin, "/readyz").await;
    assert_eq!(ready.status, 200, "{}", ready.text());
    assert!(ready.text().contains("ok: listener public"), "{}", ready.text());

    for _ in 0..3 {
        assert_eq!(request(public, &get("a", "/page")).await.status, 200);
    }
    let head = "GET /ews/x HTTP/1.1\r\nHost: a";
    let mut c = Conn::open(public).await;
    assert_eq!(handshake(&mut c, &Client::new("bob", "Bob-Pass1"), head, b"", |_| {}).await.status, 200);
    // Wrong twice (counted by the lockout), then the lockout stops the third.
    for _ in 0..3 {
        let mut c = Conn::open(public).await;
        assert_eq!(handshake(&mut c, &Client::new("bob", "wrong"), head, b"", |_| {}).await.status, 401);
    }
    g.wait_for(|| g.access_log().len() >= 3 + 2 + 6, "the access records");

    let asked = "GET /metrics HTTP/1.1\r\nHost: a\r\nAccept: application/openmetrics-text; version=1.0.0\r\nConnection: close\r\n\r\n";
    let scrape = request(admin, asked).await;
    assert_eq!(scrape.status, 200);
    assert!(scrape.header("content-type").unwrap().starts_with("application/openmetrics-text"));
    assert!(scrape.text().ends_with("# EOF\n"));
    // Without OpenMetrics in Accept: Prometheus' text format 0.0.4.
    let scrape = admin_get(admin, "/metrics").await;
    assert!(scrape.header("content-type").unwrap().starts_with("text/plain; version=0.0.4"));
    let text = scrape.text();
    let v = |series: &str| sample(&text, series).unwrap_or_else(|| panic!("no {series} in\n{text}"));
    assert_eq!(v("gatehouse_requests_total{site=\"open\",class=\"2xx\"}"), 3.0);
    // One 200 after the handshake; the challenge legs and refusals are 401s.
    assert_eq!(v("gatehouse_requests_total{site=\"ews\",class=\"2xx\"}"), 1.0);
    assert_eq!(v("gatehouse_requests_total{site=\"ews\",class=\"4xx\"}"), 1.0 + 6.0);
    assert_eq!(v("gatehouse_signins_total{scheme=\"NTLM\",outcome=\"success\",cause=\"none\"}"), 1.0);
    assert_eq!(v("gatehouse_signins_total{scheme=\"NTLM\",outcome=\"refused\",cause=\"wrong_password\"}"), 2.0);
    assert_eq!(v("gatehouse_signins_total{scheme=\"NTLM\",outcome=\"refused\",cause=\"locked_out\"}"), 1.0);
    assert_eq!(v("gatehouse_lockout_hits_total{scheme=\"NTLM\"}"), 1.0);
    assert_eq!(v("gatehouse_request_duration_seconds_count{site=\"open\"}"), 3.0);
    assert_eq!(v("gatehouse_backend_response_seconds_count{site=\"open\"}"), 3.0);
    assert_eq!(v("gatehouse_ready"), 1.0);
    // The signed-in connection is still open; this scrape's is the admin
    // listener's, not a site's.
    assert_eq!(v("gatehouse_open_connections{listener=\"public\"}"), 1.0);
    drop(c);
    assert!(!text.contains("bob"), "a user name in the metrics:\n{text}");

    // Prometheus' own parser and linter.
    let file = g.path("scrape.txt");
    std::fs::write(&file, &text).unwrap();
    let out = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::fs::File::open(&file).unwrap())
        .output()
        .expect("promtool (Debian's prometheus package; scripts/install-deps.sh test)");
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "promtool check metrics refused the scrape: {said}\n{text}");
    assert!(said.trim().is_empty(), "promtool's lint: {said}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_paths_add_no_series() {
    let b = Backend::start().await;
    let g = start(&config(b.addr, "bind = \"127.0.0.1:0\""));
    let admin = admin_addr(&g);
    let public = g.addr_of("public");
    let series = |text: &str| text.lines().filter(|l| !l.starts_with('#')).count();
    assert_eq!(request(public, &get("a", "/first")).await.status, 200);
    assert_eq!(request(public, &get("a", "/ews/first")).await.status, 401);
    g.wait_for(|| g.access_log().len() >= 2, "the access records");
    let before = series(&admin_get(admin, "/metrics").await.text());
    let mut c = Conn::open(public).await;
    for i in 0..10_000 {
        let path = if i % 2 == 0 { format!("/p/{i}") } else { format!("/ews/{i}") };
        c.send(format!("GET {path} HTTP/1.1\r\nHost: a\r\n\r\n").as_bytes()).await;
        let r = c.response().await;
        assert!(r.status == 200 || r.status == 401, "{path}: {}", r.status);
    }
    g.wait_for(|| g.access_log().len() >= 10_002, "the access records");
    let text = admin_get(admin, "/metrics").await.text();
    assert_eq!(series(&text), before, "series grew with the paths:\n{text}");
    assert_eq!(sample(&text, "gatehouse_requests_total{site=\"open\",class=\"2xx\"}"), Some(5_001.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_listener_answers_only_its_networks_and_moves_on_reload() {
    let b = Backend::start().await;
    let g = start(&config(b.addr, "bind = \"127.0.0.1:0\""));
    let admin = admin_addr(&g);
    let status = admin_get(admin, "/status").await;
    assert_eq!(status.status, 200);
    let csp = status.header("content-security-policy").unwrap();
    assert!(csp.contains("default-src 'none'") && !csp.contains("unsafe"), "{csp}");
    assert!(status.text().contains("ews") && status.text().contains("ready"), "{}", status.text());
    assert!(!status.text().contains("src=") && !status.text().contains("href=\"http"), "no external resources");
    assert_eq!(admin_get(admin, "/nothing").await.status, 404);
    let post = request(admin, "POST /metrics HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    assert_eq!(post.await.status, 405);
    // The admin listener is not a site: the public listener has no /metrics.
    let r = request(g.addr_of("public"), &get("a", "/metrics")).await;
    assert!(r.header("content-type").is_none_or(|c| !c.contains("openmetrics")), "a site serves the metrics");

    // Loopback is not in the list any more: refused, and said so.
    g.reload(&config(b.addr, "bind = \"127.0.0.1:0\"\nallow = [\"192.0.2.0/24\"]").to_string());
    let moved = admin_addr_after(&g, 2);
    let refused = admin_get(moved, "/metrics").await;
    assert_eq!(refused.status, 403);
    g.wait_for(|| g.stderr().contains("refused a client outside [admin] allow"), "the refusal's log line");
    // Without [admin], nothing listens there.
    g.reload(
        &Config::new()
            .listener(Listener::plain("public"))
            .site(Site::new("open", "public", &format!("http://{}", b.addr)))
            .to_string(),
    );
    let start = Instant::now();
    while std::net::TcpStream::connect(moved).is_ok() {
        assert!(start.elapsed() < Duration::from_secs(5), "the admin listener still answers");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// [`Gatehouse::wait_for`] with room for the certificate watch's period.
fn wait_long(g: &Gatehouse, mut cond: impl FnMut() -> bool, what: &str) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < Duration::from_secs(30), "timed out waiting for {what}:\n{}", g.stderr());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The admin address of the `n`th "admin listener ready" line.
fn admin_addr_after(g: &Gatehouse, n: usize) -> SocketAddr {
    g.wait_for(|| g.stderr().matches("admin listener ready").count() >= n, "the admin listener to move");
    admin_addr(g)
}

/// `gatehouse check --offline` on `text` written to `path`: whether it passed,
/// and what it said (standard error, then standard output).
fn check_offline(path: &std::path::Path, text: &str) -> (bool, String) {
    std::fs::write(path, text).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args(["check", "-c"])
        .arg(path)
        .arg("--offline")
        .output()
        .unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_admin_settings_are_refused_by_check() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("g.toml");
    let base = "[[listener]]\nname = \"p\"\nbind = \"127.0.0.1:0\"\n[[site]]\nname = \"s\"\nlistener = \"p\"\nbackend = \"http://127.0.0.1:1\"\n";
    for (admin, words) in [
        ("bind = \"localhost\"", "admin.bind"),
        ("allow = []", "admin.allow"),
        ("allow = [\"10.0.0.0/33\"]", "admin.allow"),
        ("status_page = \"yes\"", "admin.status_page"),
        ("port = 9180", "admin.port"),
    ] {
        let (passed, said) = check_offline(&path, &format!("[admin]\n{admin}\n{base}"));
        assert!(!passed, "{admin}: accepted\n{said}");
        assert!(said.contains(words), "{admin}: {said}");
    }
    let good = format!("[admin]\nbind = \"127.0.0.1:9180\"\nallow = [\"10.0.0.0/8\", \"::1\"]\n{base}");
    let (passed, said) = check_offline(&path, &good);
    assert!(passed, "{said}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_access_log_is_reopened_on_sigusr1() {
    let b = Backend::start().await;
    let g = start(&config(b.addr, "bind = \"127.0.0.1:0\""));
    let public = g.addr_of("public");
    assert_eq!(request(public, &get("a", "/before")).await.status, 200);
    g.wait_for(|| g.access_log().len() == 1, "the first record");
    // logrotate's move, then its postrotate.
    std::fs::rename(g.path("access.log"), g.path("access.log.1")).unwrap();
    g.signal("-USR1");
    g.wait_for(|| g.stderr().contains("access log reopened"), "the reopen");
    assert_eq!(request(public, &get("a", "/after")).await.status, 200);
    g.wait_for(|| g.access_log().len() == 1, "the record in the new file");
    assert_eq!(g.access_log()[0]["path"], "/after");
    let old = std::fs::read_to_string(g.path("access.log.1")).unwrap();
    assert_eq!(old.lines().count(), 1, "{old}");
    assert!(old.contains("/before"));
}

/// The certificate a new TLS connection to `addr` is shown (DER).
async fn presented(addr: SocketAddr, ca: &std::path::Path) -> Vec<u8> {
    let c = Conn::open_tls(addr, ca, "mail.ad.test").await;
    c.stream.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewed_certificate_serves_new_handshakes_and_the_open_stream_goes_on() {
    let b = Backend::start().await;
    let dir = tempfile::tempdir().unwrap();
    let ca = make_certs(dir.path(), &[("mail", &["mail.ad.test"])]);
    let text = Config::new()
        .listener(Listener::tls("public", "mail"))
        .site(Site::new("rpc", "public", &format!("http://{}", b.addr)).set("stream_idle", "\"1h\""))
        .to_string();
    let g = Gatehouse::start_in(dir, &text);
    let addr = g.addr();
    let old = presented(addr, &ca).await;

    // An Outlook Anywhere IN channel, streaming.
    let mut channel = Conn::open_tls(addr, &ca, "mail.ad.test").await;
    channel.send(b"RPC_IN_DATA /rpc/rpcproxy.dll?mail:6001 HTTP/1.1\r\nHost: mail.ad.test\r\nUser-Agent: MSRPC\r\nContent-Length: 1073741824\r\n\r\n").await;
    let piece = vec![0x05u8; 64 * 1024];
    for _ in 0..16 {
        channel.send(&piece).await;
    }

    // certbot's way: new files beside, then renamed over the old ones (same CA).
    let renewed = tempfile::tempdir().unwrap();
    let new_ca = make_certs(renewed.path(), &[("mail", &["mail.ad.test"])]);
    std::fs::copy(renewed.path().join("mail.key"), g.path("mail.key.new")).unwrap();
    std::fs::copy(renewed.path().join("mail.pem"), g.path("mail.pem.new")).unwrap();
    std::fs::rename(g.path("mail.key.new"), g.path("mail.key")).unwrap();
    std::fs::rename(g.path("mail.pem.new"), g.path("mail.pem")).unwrap();
    wait_long(&g, || g.stderr().contains("configuration reloaded"), "the reload the file change causes");
    assert!(g.stderr().contains("a listener certificate file changed"), "{}", g.stderr());
    let new = presented(addr, &new_ca).await;
    assert_ne!(new, old, "a new handshake still gets the old certificate");

    // The stream opened before goes on: more bytes reach the backend.
    for _ in 0..16 {
        channel.send(&piece).await;
    }
    // Let the bytes through before the client ends the channel.
    tokio::time::sleep(Duration::from_secs(1)).await;
    drop(channel);
    g.wait_for(|| !b.seen().is_empty(), "the backend to see the channel end");
    let seen = &b.seen()[0];
    assert!(seen.body_bytes >= 2 * 1024 * 1024 - 256 * 1024, "only {} bytes reached the backend", seen.body_bytes);

    // A broken file: the reload is refused, the log says why, the renewed
    // certificate keeps serving.
    let reloads = g.stderr().matches("reload refused").count();
    std::fs::write(g.path("mail.pem"), "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n").unwrap();
    wait_long(&g, || g.stderr().matches("reload refused").count() > reloads, "the refused reload");
    let log = g.stderr();
    let why = log.lines().rfind(|l| l.contains("reload refused:")).unwrap_or_default().to_owned();
    assert!(why.contains("mail.pem"), "the log does not say which file: {log}");
    assert_eq!(presented(addr, &new_ca).await, new, "the broken file replaced the certificate");
}

/// A real Prometheus server scraping gatehouse while the lab's clients sign
/// in: NTLM through winbind with KCD to the Kerberos-only backend, Negotiate
/// with a ticket from kinit, a wrong password, a user a rule denies, and a
/// delegation the KDC refuses. The query API shows each count; the status
/// page, in Chromium, shows the refusal explained as `gatehouse doctor` does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_the_lab_sign_ins_and_the_status_page_explains_the_kdc() {
    let Some(env) = lab_env() else { return };
    let dir = tempfile::tempdir().unwrap();
    let ca = make_certs(dir.path(), &[("proxy", &["proxy.ad.test"])]);
    let kcd = |name: &str, spn: &str| {
        Site::new(name, "public", &env["LAB_BACKEND"])
            .host_header("backend.ad.test")
            .delegation("kcd")
            .backend_spn(spn)
            .hosts(&["proxy.ad.test"])
            .auth(&["Negotiate", "NTLM"])
    };
    let config = Config::new()
        .domain(Domain::lab(&env).acceptor_spn("HTTP/proxy.ad.test"))
        .accounts(Accounts::winbind(&env))
        .table("access", &format!("directory = \"ldap://dc1.ad.test\"\ndirectory_address = \"{}\"", env["LAB_DC_IP"]))
        .table("admin", "bind = \"127.0.0.1:0\"")
        .listener(Listener::tls("public", "proxy"))
        .site(kcd("mail", "HTTP/backend.ad.test").deny(&["ADTEST\\bob"]))
        // The SPN is not in svc-proxy's msDS-AllowedToDelegateTo: KDC_ERR_BADOPTION.
        .site(kcd("broken", "HTTP/proxy.ad.test").path_prefix("/broken/"));
    let g = Gatehouse::start_in(dir, &config.to_string());
    let admin = admin_addr(&g);
    let port = g.port();

    // A Prometheus of its own, scraping every second.
    let prom_dir = tempfile::tempdir().unwrap();
    let prom_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    std::fs::write(
        prom_dir.path().join("prometheus.yml"),
        format!("global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: gatehouse\n    static_configs:\n      - targets: [\"{admin}\"]\n"),
    )
    .unwrap();
    let prometheus = testkit::process::Guarded::spawn(
        std::process::Command::new("prometheus")
            .arg(format!("--config.file={}", prom_dir.path().join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", prom_dir.path().join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(prom_dir.path().join("prometheus.log")).unwrap()),
    )
    .expect("prometheus (Debian's prometheus package; scripts/install-deps.sh test)");

    let tls = || async { Conn::open_tls(listen(port), &ca, "proxy.ad.test").await };
    let head = |path: &str| format!("GET {path} HTTP/1.1\r\nHost: proxy.ad.test");
    // NTLM, then KCD to the Kerberos-only Apache.
    let mut c = tls().await;
    let r = handshake(&mut c, &Client::new("alice", "Alice-Pass1"), &head("/"), b"", |_| {}).await;
    assert_eq!(r.status, 200, "{}\n{}", r.text(), g.stderr());
    assert!(r.text().contains("REMOTE_USER=alice@AD.TEST"), "{}", r.text());
    // A wrong password.
    let mut c = tls().await;
    assert_eq!(handshake(&mut c, &Client::new("alice", "Wrong-Pass9"), &head("/"), b"", |_| {}).await.status, 401);
    // A user the site's rule denies.
    let mut c = tls().await;
    assert_eq!(handshake(&mut c, &Client::new("bob", "Bob-Pass1"), &head("/"), b"", |_| {}).await.status, 403);
    // A delegation the KDC refuses.
    let mut c = tls().await;
    let r = handshake(&mut c, &Client::new("alice", "Alice-Pass1"), &head("/broken/x"), b"", |_| {}).await;
    assert_eq!(r.status, 502, "{}", r.text());
    // Negotiate with alice's ticket (curl, as a domain-joined client).
    let kdir = tempfile::tempdir().unwrap();
    let cc = kinit(&env, kdir.path(), "alice", "Alice-Pass1", &[]);
    let out = std::process::Command::new("curl")
        .args(["-sS", "--negotiate", "-u", ":", "--cacert"])
        .arg(&ca)
        .args(["--resolve", &format!("proxy.ad.test:{port}:127.0.0.1"), &format!("https://proxy.ad.test:{port}/")])
        .env("KRB5_CONFIG", &env["KRB5_CONFIG"])
        .env("KRB5CCNAME", &cc)
        .output()
        .unwrap();
    let body = String::from_utf8_lossy(&out.stdout);
    assert!(body.contains("REMOTE_USER=alice@AD.TEST"), "{body}\n{}", g.stderr());

    // What Prometheus scraped, through its query API.
    let expected: &[(&str, f64)] = &[
        ("gatehouse_signins_total{scheme=\"Negotiate\",outcome=\"success\"}", 1.0),
        // alice twice, and bob (whose password was right; the rule refused him).
        ("gatehouse_signins_total{scheme=\"NTLM\",outcome=\"success\"}", 3.0),
        ("gatehouse_signins_total{scheme=\"NTLM\",cause=\"wrong_password\"}", 1.0),
        ("gatehouse_signins_total{scheme=\"NTLM\",cause=\"denied_by_rule\"}", 1.0),
        ("gatehouse_requests_total{site=\"mail\",class=\"2xx\"}", 2.0),
        ("gatehouse_requests_total{site=\"broken\",class=\"5xx\"}", 1.0),
        ("gatehouse_kdc_errors_total{kind=\"s4u2proxy\",code=\"KDC_ERR_BADOPTION\"}", 1.0),
        // alice's delegation and the refused one; her Negotiate request goes
        // on her backend connection, already signed in: no new ticket.
        ("gatehouse_kdc_requests_total{kind=\"s4u2proxy\"}", 2.0),
        ("gatehouse_ready", 1.0),
    ];
    let query = |q: &str| {
        let out = std::process::Command::new("curl")
            .args(["-sS", "-G", &format!("http://127.0.0.1:{prom_port}/api/v1/query"), "--data-urlencode"])
            .arg(format!("query=sum({q})"))
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        v["data"]["result"][0]["value"][1].as_str().and_then(|s| s.parse::<f64>().ok())
    };
    let start = Instant::now();
    loop {
        let got: Vec<(&str, Option<f64>)> = expected.iter().map(|(q, _)| (*q, query(q))).collect();
        if got.iter().zip(expected).all(|((_, v), (_, want))| *v == Some(*want)) {
            break;
        }
        if start.elapsed() > Duration::from_secs(40) {
            let log = std::fs::read_to_string(prom_dir.path().join("prometheus.log")).unwrap_or_default();
            panic!("Prometheus has {got:?}, expected {expected:?}\nprometheus:\n{log}\ngatehouse:\n{}", g.stderr());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(query("gatehouse_kdc_requests_total{kind=\"s4u2self\"}").is_some_and(|n| n >= 1.0));
    assert!(query("gatehouse_certificate_expiry_seconds{listener=\"public\",name=\"proxy.ad.test\"}")
        .is_some_and(|s| s > 86_400.0));
    prometheus.signal("-TERM");

    // The status page, in Chromium: the refusal, explained as doctor does.
    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let shot = shots.join("status-page.png");
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/clients/browser_status.py");
    let out = std::process::Command::new("/usr/bin/python3")
        .arg(&script)
        .arg(format!("http://{admin}/status"))
        .arg(&shot)
        .args(["gatehouse: ready", "KDC_ERR_BADOPTION", "msDS-AllowedToDelegateTo", "site broken", "proxy.ad.test"])
        .output()
        .expect("/usr/bin/python3");
    let said = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the status page in Chromium: {said}");
    let bytes = std::fs::read(&shot).unwrap();
    assert!(bytes.starts_with(b"\x89PNG") && bytes.len() > 5_000, "not a real screenshot");
    if std::env::var("GATEHOUSE_UPDATE_DOCS_IMAGES").is_ok_and(|v| v == "1") {
        let docs = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/images/status-page.png");
        std::fs::write(docs, bytes).unwrap();
    }
}

/// A TCP relay to the lab's KDC that the test can cut: the parallel-safe
/// form of "the KDC is down" (the shared DC keeps running). gatehouse's own
/// krb5.conf names the relay, with `udp_preference_limit = 1` so that MIT
/// asks over TCP, through it. `lab_serial.rs` stops the real DC.
struct KdcRelay {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl KdcRelay {
    async fn start(on: SocketAddr, kdc: SocketAddr) -> KdcRelay {
        let listener = tokio::net::TcpListener::bind(on).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let mut open = tokio::task::JoinSet::new();
            loop {
                let Ok((mut client, _)) = listener.accept().await else { continue };
                open.spawn(async move {
                    if let Ok(mut server) = tokio::net::TcpStream::connect(kdc).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        });
        KdcRelay { addr, task }
    }

    /// Closes the listening socket and every relayed connection.
    fn cut(self) -> SocketAddr {
        self.task.abort();
        self.addr
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_fails_while_the_kdc_cannot_be_reached_and_recovers() {
    let Some(env) = lab_env() else { return };
    let kdc: SocketAddr = format!("{}:88", env["LAB_DC_IP"]).parse().unwrap();
    let relay = KdcRelay::start("127.0.0.1:0".parse().unwrap(), kdc).await;
    let dir = tempfile::tempdir().unwrap();
    let krb5 = dir.path().join("krb5.conf");
    std::fs::write(
        &krb5,
        format!(
            "[libdefaults]\n  default_realm = AD.TEST\n  dns_lookup_kdc = false\n  dns_lookup_realm = false\n  rdns = false\n  \
             udp_preference_limit = 1\n[realms]\n  AD.TEST = {{\n    kdc = {}\n  }}\n[domain_realm]\n  .ad.test = AD.TEST\n",
            relay.addr
        ),
    )
    .unwrap();
    std::fs::write(dir.path().join("users.ntlm"), "ADTEST:alice:Alice-Pass1\n").unwrap();
    let site = kcd_site(&env["LAB_BACKEND"], "HTTP/backend.ad.test", "spnego", "always");
    let config = Config::new()
        .domain(Domain::new().kerberos(krb5.to_str().unwrap(), &env["LAB_PROXY_KEYTAB"], "svc-proxy@AD.TEST"))
        .accounts(Accounts::file("users.ntlm"))
        .table("admin", "bind = \"127.0.0.1:0\"")
        .listener(Listener::plain("plain"))
        .site(site);
    let g = Gatehouse::start_in(dir, &config.to_string());
    let admin = admin_addr(&g);
    let until = |want: u16| async move {
        let start = Instant::now();
        loop {
            let r = admin_get(admin, "/readyz").await;
            if r.status == want {
                return r.text();
            }
            assert!(start.elapsed() < Duration::from_secs(30), "/readyz stayed {}: {}", r.status, r.text());
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    };
    let ready = until(200).await;
    assert!(ready.contains("ok: KDC reachable (sites kerberos-backend)"), "{ready}");

    let at = relay.cut();
    let down = until(503).await;
    assert!(down.contains("failed: KDC reachable (sites kerberos-backend)"), "{down}");
    g.wait_for(|| g.stderr().contains("readiness: the KDC does not answer"), "the outage line");
    let scrape = admin_get(admin, "/metrics").await.text();
    assert_eq!(sample(&scrape, "gatehouse_ready"), Some(0.0), "{scrape}");

    let _relay = KdcRelay::start(at, kdc).await;
    until(200).await;
    g.wait_for(|| g.stderr().contains("readiness: the KDC answers again"), "the recovery line");
}

/// `[admin.sign_in]` with an accounts file: `/status` asks for NTLM and the
/// rule on the file's group; health, readiness and metrics do not.
fn sign_in_config(backend: SocketAddr) -> Config {
    config(backend, "bind = \"127.0.0.1:0\"\n\n[admin.sign_in]\nauth = [\"NTLM\"]\nallow = [\"admins\"]\ndeny = [\"ADTEST\\\\dave\"]")
}

fn start_sign_in(config: &Config) -> Gatehouse {
    let dir = tempfile::tempdir().unwrap();
    let users = "ADTEST:bob:Bob-Pass1\nADTEST:carol:Carol-Pass1\nADTEST:dave:Dave-Pass1\n+admins:bob,dave\n";
    std::fs::write(dir.path().join("users.ntlm"), users).unwrap();
    Gatehouse::start_in(dir, &config.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_behind_sign_in_admits_the_group_and_refuses_the_rest() {
    let b = Backend::start().await;
    let g = start_sign_in(&sign_in_config(b.addr));
    let admin = admin_addr(&g);
    let head = "GET /status HTTP/1.1\r\nHost: admin";

    // No credentials: the challenge, and no page.
    let r = admin_get(admin, "/status").await;
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(r.header("www-authenticate"), Some("NTLM"));
    assert!(!r.text().contains("gatehouse: ready"), "the page without sign-in");
    // Load balancers and Prometheus need none.
    assert_eq!(admin_get(admin, "/healthz").await.status, 200);
    assert_eq!(admin_get(admin, "/readyz").await.status, 200);
    assert_eq!(admin_get(admin, "/metrics").await.status, 200);
    assert_eq!(admin_get(admin, "/status.css").await.status, 200);

    // A member of the group: the page, and the connection stays signed in.
    let mut c = Conn::open(admin).await;
    let r = handshake(&mut c, &Client::new("bob", "Bob-Pass1"), head, b"", |_| {}).await;
    assert_eq!(r.status, 200, "{}\n{}", r.text(), g.stderr());
    assert!(
        r.text().contains("gatehouse: ready") && r.text().contains("Signed in as ADTEST\\bob (NTLM)"),
        "{}",
        r.text()
    );
    assert_eq!(r.header("content-security-policy").map(|c| c.contains("default-src 'none'")), Some(true));
    c.send(format!("{head}\r\n\r\n").as_bytes()).await;
    let again = c.response().await;
    assert_eq!(again.status, 200, "the NTLM sign-in belongs to the connection");
    // And only to that connection.
    assert_eq!(admin_get(admin, "/status").await.status, 401);
    let mut bobs = c;

    // Signed in, but not in the group: 403, naming who is signed in.
    let mut c = Conn::open(admin).await;
    let r = handshake(&mut c, &Client::new("carol", "Carol-Pass1"), head, b"", |_| {}).await;
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(r.text().contains("signed in as ADTEST\\carol") && r.text().contains("status page"), "{}", r.text());
    assert!(!r.text().contains("gatehouse: ready"));
    // In the group, and denied by name: deny wins.
    let mut c = Conn::open(admin).await;
    assert_eq!(handshake(&mut c, &Client::new("dave", "Dave-Pass1"), head, b"", |_| {}).await.status, 403);
    // A wrong password: 401 with the challenge again.
    let mut c = Conn::open(admin).await;
    let r = handshake(&mut c, &Client::new("bob", "Wrong-Pass9"), head, b"", |_| {}).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.header("www-authenticate"), Some("NTLM"));
    // A forged AUTHENTICATE (the first byte of its NTProofStr changed:
    // NtChallengeResponseFields' offset is at byte 24, MS-NLMP 2.2.1.3).
    let mut c = Conn::open(admin).await;
    let r = handshake(&mut c, &Client::new("bob", "Bob-Pass1"), head, b"", |m| {
        let at = u32::from_le_bytes(m[24..28].try_into().unwrap()) as usize;
        m[at] ^= 0x55;
    })
    .await;
    assert_eq!(r.status, 401, "a tampered AUTHENTICATE was accepted");

    // The log names each cause; the access log has each request, site [admin].
    g.wait_for(|| g.stderr().contains("access denied") && g.stderr().contains("not in allow"), "the refusal's line");
    assert!(g.stderr().contains("deny ADTEST\\\\dave") || g.stderr().contains("deny ADTEST\\dave"), "{}", g.stderr());
    g.wait_for(|| g.stderr().contains("authentication refused"), "the wrong password's line");
    let log = g.wait_for_record(|r| r["site"] == "[admin]" && r["status"] == 403 && r["user"] == "ADTEST\\carol");
    assert!(log.iter().any(|r| r["site"] == "[admin]" && r["status"] == 200 && r["user"] == "ADTEST\\bob"));
    assert!(log.iter().any(|r| r["site"] == "[admin]" && r["denied"] == "not in allow"));
    assert!(!std::fs::read_to_string(g.path("access.log")).unwrap().contains("Pass1"), "a password in the log");

    // Counted like any sign-in: bob, carol and dave passed NTLM; two were refused by the rules.
    let text = admin_get(admin, "/metrics").await.text();
    let v = |series: &str| sample(&text, series).unwrap_or_else(|| panic!("no {series} in\n{text}"));
    assert_eq!(v("gatehouse_signins_total{scheme=\"NTLM\",outcome=\"success\",cause=\"none\"}"), 3.0);
    assert_eq!(v("gatehouse_signins_total{scheme=\"NTLM\",outcome=\"refused\",cause=\"denied_by_rule\"}"), 2.0);
    // The wrong password and the forged proof: the domain cannot tell them apart.
    assert_eq!(v("gatehouse_signins_total{scheme=\"NTLM\",outcome=\"refused\",cause=\"wrong_password\"}"), 2.0);

    // A reload that takes bob out of allow: his open, signed-in connection
    // is refused at its next request (the rules are checked on each), and
    // the listener was not restarted for it.
    let reloaded = sign_in_config(b.addr).to_string().replace("allow = [\"admins\"]", "allow = [\"carol\"]");
    assert!(reloaded.contains("allow = [\"carol\"]"));
    g.reload(&reloaded);
    bobs.send(format!("{head}\r\n\r\n").as_bytes()).await;
    let r = bobs.response().await;
    assert_eq!(r.status, 403, "{}\n{}", r.text(), g.stderr());
    assert!(r.text().contains("signed in as ADTEST\\bob"), "{}", r.text());
    let mut c = Conn::open(admin).await;
    let r = handshake(&mut c, &Client::new("carol", "Carol-Pass1"), head, b"", |_| {}).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(g.stderr().matches("admin listener ready").count(), 1, "the admin listener restarted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_admin_sign_in_settings_are_refused_by_check() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("g.toml");
    std::fs::write(dir.path().join("users"), "ADTEST:bob:Bob-Pass1\n+admins:bob\n").unwrap();
    let domain =
        "[domain]\nrealm = \"AD.TEST\"\nnetbios_name = \"ADTEST\"\n[accounts]\nsource = \"file\"\nfile = \"users\"\n";
    let base = "[[listener]]\nname = \"p\"\nbind = \"127.0.0.1:0\"\n[[site]]\nname = \"s\"\nlistener = \"p\"\nbackend = \"http://127.0.0.1:1\"\n";
    let check = |text: String| check_offline(&path, &text);
    for (sign_in, with_domain, words) in [
        ("auth = [\"Basic\"]\nallow = [\"admins\"]", true, "Basic would send a password in clear"),
        ("auth = [\"Forms\"]\nallow = [\"admins\"]", true, "NTLM and Negotiate only"),
        ("auth = [\"NTLM\"]", true, "say who may see the status page"),
        ("auth = [\"NTLM\"]\nallow = [\"admins\"]", false, "add a [domain] section"),
        ("auth = [\"NTLM\"]\nallow = [\"ADTEST\\\\a,b\"]", true, "not a user or group name"),
        ("auth = [\"NTLM\"]\nallow = [\"nobody-here\"]", true, "neither a user nor a group"),
    ] {
        let d = if with_domain { domain } else { "" };
        let (ok, said) = check(format!("{d}[admin]\n[admin.sign_in]\n{sign_in}\n{base}"));
        assert!(!ok, "{sign_in}: accepted\n{said}");
        assert!(said.contains("admin.sign_in") && said.contains(words), "{sign_in}: {said}");
    }
    let (ok, said) =
        check(format!("{domain}[admin]\n[admin.sign_in]\nauth = [\"NTLM\"]\nallow = [\"admins\"]\n{base}"));
    assert!(ok, "{said}");
    assert!(said.contains("admin: /status after sign-in (NTLM) for admins"), "{said}");
}

/// The lab's samba-tool, failing the test with what it said.
fn samba_tool(smb: &str, args: &[&str]) {
    let out = std::process::Command::new("samba-tool").args(args).args(["-s", smb]).output().expect("samba-tool");
    let said = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "samba-tool {}: {said}", args.join(" "));
}

/// An admin group of the test's own with one member, and a user outside it;
/// deleted however the test ends.
struct LabAdmins {
    smb: String,
    group: String,
    member: String,
    outsider: String,
    password: String,
}

impl LabAdmins {
    fn create(env: &LabEnv) -> LabAdmins {
        let id = std::process::id() % 100_000;
        let a = LabAdmins {
            smb: env["SMB_CONF"].clone(),
            group: format!("gadmins{id}"),
            member: format!("admm{id}"),
            outsider: format!("admo{id}"),
            password: format!("Adm-Pass1-{id}"),
        };
        // Left over by a run that was killed: start clean.
        a.delete();
        samba_tool(&a.smb, &["group", "add", &a.group]);
        for u in [&a.member, &a.outsider] {
            samba_tool(&a.smb, &["user", "create", u, &a.password]);
        }
        samba_tool(&a.smb, &["group", "addmembers", &a.group, &a.member]);
        a
    }

    fn delete(&self) {
        for u in [&self.member, &self.outsider] {
            let _ = std::process::Command::new("samba-tool").args(["user", "delete", u, "-s", &self.smb]).output();
        }
        let _ =
            std::process::Command::new("samba-tool").args(["group", "delete", &self.group, "-s", &self.smb]).output();
    }
}

impl Drop for LabAdmins {
    fn drop(&mut self) {
        self.delete();
    }
}

/// `[admin.sign_in]` against the lab domain: the group's name looked up in
/// its LDAP; a member signs in with NTLM (winbind; the test client and curl
/// --ntlm) and with Negotiate (kinit + curl, Kerberos for
/// HTTP/proxy.ad.test) and sees the page; a non-member gets 403 each way; no
/// credentials get 401; health and metrics answer without sign-in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lab_the_status_page_signs_in_an_admin_group_with_ntlm_and_negotiate() {
    let Some(env) = lab_env() else { return };
    let admins = LabAdmins::create(&env);
    let b = Backend::start().await;
    let admin_table = format!(
        "bind = \"127.0.0.1:0\"\n\n[admin.sign_in]\nauth = [\"Negotiate\", \"NTLM\"]\nallow = [\"ADTEST\\\\{}\"]",
        admins.group
    );
    let config = Config::new()
        .domain(Domain::lab(&env).acceptor_spn("HTTP/proxy.ad.test"))
        .accounts(Accounts::winbind(&env))
        .table("access", &format!("directory = \"ldap://dc1.ad.test\"\ndirectory_address = \"{}\"", env["LAB_DC_IP"]))
        .table("admin", &admin_table)
        .listener(Listener::plain("public"))
        .site(Site::new("open", "public", &format!("http://{}", b.addr)));
    let dir = tempfile::tempdir().unwrap();
    let g = Gatehouse::start_in(dir, &config.to_string());
    let admin = admin_addr(&g);
    let head = "GET /status HTTP/1.1\r\nHost: proxy.ad.test";
    // The NTLM test client keeps its names for the process.
    let leak = |s: &str| -> &'static str { Box::leak(s.to_owned().into_boxed_str()) };
    let (member, outsider, password) = (leak(&admins.member), leak(&admins.outsider), leak(&admins.password));

    // No credentials: 401 offering both; health and metrics need none.
    let r = request(admin, &format!("{head}\r\nConnection: close\r\n\r\n")).await;
    assert_eq!(r.status, 401, "{}\n{}", r.text(), g.stderr());
    let offered: Vec<&str> =
        r.headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case("www-authenticate")).map(|(_, v)| v.as_str()).collect();
    assert_eq!(offered, ["Negotiate", "NTLM"]);
    assert_eq!(admin_get(admin, "/healthz").await.status, 200);
    assert_eq!(admin_get(admin, "/metrics").await.status, 200);

    // NTLM through winbind: the member sees the page, the outsider does not.
    let mut c = Conn::open(admin).await;
    let r = handshake(&mut c, &Client::new(member, password), head, b"", |_| {}).await;
    assert_eq!(r.status, 200, "{}\n{}", r.text(), g.stderr());
    assert!(r.text().contains(&format!("Signed in as ADTEST\\{} (NTLM)", admins.member)), "{}", r.text());
    let mut c = Conn::open(admin).await;
    let r = handshake(&mut c, &Client::new(outsider, password), head, b"", |_| {}).await;
    assert_eq!(r.status, 403, "{}\n{}", r.text(), g.stderr());
    assert!(r.text().contains(&format!("signed in as ADTEST\\{}", admins.outsider)), "{}", r.text());
    let mut c = Conn::open(admin).await;
    assert_eq!(handshake(&mut c, &Client::new(member, "Wrong-Pass9"), head, b"", |_| {}).await.status, 401);
    // NTLM from curl, a client of its own.
    let port = admin.port();
    let curl_ntlm = |user: &str| {
        let out = std::process::Command::new("curl")
            .args(["-sS", "--ntlm", "-u", &format!("ADTEST\\{user}:{}", admins.password), "-w", "\n%{http_code}"])
            .args([
                "--resolve",
                &format!("proxy.ad.test:{port}:127.0.0.1"),
                &format!("http://proxy.ad.test:{port}/status"),
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
    };
    let said = curl_ntlm(member);
    assert!(said.ends_with("\n200") && said.contains("(NTLM)"), "{said}\n{}", g.stderr());
    assert!(curl_ntlm(outsider).ends_with("\n403"));

    // Negotiate: Kerberos tickets for HTTP/proxy.ad.test from kinit, by curl.
    let curl = |cc: &str| {
        let out = std::process::Command::new("curl")
            .args(["-sS", "--negotiate", "-u", ":", "-w", "\n%{http_code}"])
            .args([
                "--resolve",
                &format!("proxy.ad.test:{port}:127.0.0.1"),
                &format!("http://proxy.ad.test:{port}/status"),
            ])
            .env("KRB5_CONFIG", &env["KRB5_CONFIG"])
            .env("KRB5CCNAME", cc)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
    };
    let kdir = tempfile::tempdir().unwrap();
    let member_cc = kinit(&env, kdir.path(), &admins.member, &admins.password, &[]);
    let said = curl(&member_cc);
    assert!(said.ends_with("\n200"), "{said}\n{}", g.stderr());
    assert!(said.contains(&format!("Signed in as ADTEST\\{} (Negotiate)", admins.member)), "{said}");
    let odir = tempfile::tempdir().unwrap();
    let outsider_cc = kinit(&env, odir.path(), &admins.outsider, &admins.password, &[]);
    let said = curl(&outsider_cc);
    assert!(said.ends_with("\n403"), "{said}\n{}", g.stderr());

    g.wait_for(|| g.stderr().matches("access denied").count() >= 3, "the refusals' lines");
    let text = admin_get(admin, "/metrics").await.text();
    let v = |series: &str| sample(&text, series).unwrap_or_else(|| panic!("no {series} in\n{text}"));
    // The test client's two and curl's two.
    assert_eq!(v("gatehouse_signins_total{scheme=\"NTLM\",outcome=\"success\",cause=\"none\"}"), 4.0);
    assert_eq!(v("gatehouse_signins_total{scheme=\"NTLM\",outcome=\"refused\",cause=\"wrong_password\"}"), 1.0);
    assert_eq!(v("gatehouse_signins_total{scheme=\"Negotiate\",outcome=\"success\",cause=\"none\"}"), 2.0);
    assert_eq!(v("gatehouse_signins_total{scheme=\"NTLM\",outcome=\"refused\",cause=\"denied_by_rule\"}"), 2.0);
    assert_eq!(v("gatehouse_signins_total{scheme=\"Negotiate\",outcome=\"refused\",cause=\"denied_by_rule\"}"), 1.0);

    // The same two people in Chromium, signed in with their accounts (NTLM:
    // the URL's credentials answer the challenge): the page, and the refusal
    // page a person outside the group sees.
    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/clients/browser_status.py");
    let chromium = |user: &str, shot: &str, words: &[&str]| {
        let shot = shots.join(shot);
        let out = std::process::Command::new("/usr/bin/python3")
            .arg(&script)
            .args(["--sign-in", "proxy.ad.test"])
            .arg(format!("http://ADTEST%5C{user}:{}@proxy.ad.test:{port}/status", admins.password))
            .arg(&shot)
            .args(words)
            .output()
            .expect("/usr/bin/python3");
        let said = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "the status page in Chromium: {said}\n{}", g.stderr());
        let bytes = std::fs::read(&shot).unwrap();
        assert!(bytes.starts_with(b"\x89PNG") && bytes.len() > 5_000, "not a real screenshot");
        bytes
    };
    let member_line = format!("Signed in as ADTEST\\{} (NTLM)", admins.member);
    chromium(&admins.member, "status-page-member.png", &["gatehouse: ready", &member_line]);
    let outsider_line = format!("signed in as ADTEST\\{}", admins.outsider);
    let refused = chromium(&admins.outsider, "status-page-refused.png", &[&outsider_line]);
    if std::env::var("GATEHOUSE_UPDATE_DOCS_IMAGES").is_ok_and(|v| v == "1") {
        let docs = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/images/status-page-refused.png");
        std::fs::write(docs, refused).unwrap();
    }
    drop(admins);
}
