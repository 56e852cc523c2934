//! Server farms (issue 15) through the real binary on loopback: requests spread
//! over healthy backends, a killed backend's share moving to the others with
//! no request failing but those already on it, its traffic back when it
//! returns; sessions that stay on one backend (an Outlook Anywhere pair, a
//! MAPI session, the signed cookie, the client's address, a pass-through
//! logon); draining through the control socket with an open channel going on;
//! the 503 page; and, with the lab, the Exchange-like backend's healthcheck
//! pages and KCD through a farm of the lab's Apache.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use testkit::net::{ClosedPort, Relay};
use testkit::Backend;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Checks fast enough for a test: a dead backend is down after 2 failed
/// checks 200 ms apart, back after one that passes.
const FAST: &str =
    r#"health = { check = "tcp", interval = "200ms", timeout = "150ms", fall = 2, rise = 1, eject_for = "1s" }"#;

/// One plain listener `l` and a site `app` with `backends` and the `site` lines.
fn farm(backends: &[String], site: &str, top: &str) -> String {
    let list: Vec<String> = backends.iter().map(|b| format!("\"{b}\"")).collect();
    format!(
        "{top}\n[[listener]]\nname = \"l\"\nbind = \"127.0.0.1:0\"\n\n[[site]]\nname = \"app\"\nlistener = \"l\"\nbackends = [{}]\n{site}\n",
        list.join(", ")
    )
}

fn urls(backends: &[&Backend]) -> Vec<String> {
    backends.iter().map(|b| format!("http://{}", b.addr)).collect()
}

async fn three() -> [Backend; 3] {
    [Backend::start().await, Backend::start().await, Backend::start().await]
}

/// Requests whose `X-Test` header is `tag`, as each backend saw them.
fn tagged(backends: &[&Backend], tag: &str) -> Vec<usize> {
    backends.iter().map(|b| b.seen().iter().filter(|s| s.header("x-test") == Some(tag)).count()).collect()
}

/// A keep-alive HTTP/1.1 client that survives the connection closing: it
/// reconnects and reports status 0 for a request that got no answer.
struct Client {
    addr: SocketAddr,
    conn: Option<TcpStream>,
    buf: Vec<u8>,
}

impl Client {
    fn new(addr: SocketAddr) -> Client {
        Client { addr, conn: None, buf: Vec::new() }
    }

    async fn request(&mut self, raw: &str) -> (u16, Vec<(String, String)>, Vec<u8>) {
        match tokio::time::timeout(Duration::from_secs(10), self.exchange(raw)).await {
            Ok(Some(r)) => r,
            _ => {
                self.conn = None;
                (0, Vec::new(), Vec::new())
            }
        }
    }

    async fn exchange(&mut self, raw: &str) -> Option<(u16, Vec<(String, String)>, Vec<u8>)> {
        if self.conn.is_none() {
            self.conn = Some(TcpStream::connect(self.addr).await.ok()?);
            self.buf.clear();
        }
        let conn = self.conn.as_mut()?;
        if conn.write_all(raw.as_bytes()).await.is_err() {
            self.conn = None;
            return None;
        }
        let result = loop {
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut r = httparse::Response::new(&mut headers);
            if let Ok(httparse::Status::Complete(n)) = r.parse(&self.buf) {
                let status = r.code.unwrap_or(0);
                let headers: Vec<(String, String)> = r
                    .headers
                    .iter()
                    .map(|h| (h.name.to_ascii_lowercase(), String::from_utf8_lossy(h.value).into_owned()))
                    .collect();
                let len: usize =
                    headers.iter().find(|(k, _)| k == "content-length").and_then(|(_, v)| v.parse().ok()).unwrap_or(0);
                while self.buf.len() < n + len {
                    let mut tmp = [0u8; 8192];
                    match conn.read(&mut tmp).await {
                        Ok(0) | Err(_) => return None,
                        Ok(k) => self.buf.extend_from_slice(&tmp[..k]),
                    }
                }
                let body = self.buf[n..n + len].to_vec();
                self.buf.drain(..n + len);
                let close = headers.iter().any(|(k, v)| k == "connection" && v.eq_ignore_ascii_case("close"));
                break Some((status, headers, body, close));
            }
            let mut tmp = [0u8; 8192];
            match conn.read(&mut tmp).await {
                Ok(0) | Err(_) => break None,
                Ok(k) => self.buf.extend_from_slice(&tmp[..k]),
            }
        };
        match result {
            None => {
                self.conn = None;
                None
            }
            Some((status, headers, body, close)) => {
                if close {
                    self.conn = None;
                }
                Some((status, headers, body))
            }
        }
    }
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

fn get_tagged(path: &str, tag: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: app.test\r\nX-Test: {tag}\r\n\r\n")
}

/// Requests spread over the healthy backends by weight; the access log names
/// the backend that answered each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_spread_over_the_backends_by_weight() {
    let [a, b, c] = three().await;
    let mut list = urls(&[&a, &b]);
    list.push(format!("{{ url = \"http://{}\", weight = 2 }}", c.addr));
    let text = format!(
        "\n[[listener]]\nname = \"l\"\nbind = \"127.0.0.1:0\"\n\n[[site]]\nname = \"app\"\nlistener = \"l\"\nbackends = [\"{}\", \"{}\", {}]\n",
        list[0], list[1], list[2]
    );
    let g = Gatehouse::start(&text);
    let addr = g.addr();
    let mut tasks = Vec::new();
    for t in 0..4 {
        tasks.push(tokio::spawn(async move {
            let mut client = Client::new(addr);
            for _ in 0..100 {
                assert_eq!(client.request(&get_tagged("/", &format!("spread-{t}"))).await.0, 200);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let counts: Vec<usize> = [&a, &b, &c].iter().map(|x| x.seen().len()).collect();
    assert_eq!(counts.iter().sum::<usize>(), 400);
    // Weights 1, 1, 2 of 400 sequential-ish requests: 100, 100, 200, give or take the races of four clients.
    assert!((70..=130).contains(&counts[0]) && (70..=130).contains(&counts[1]), "{counts:?}");
    assert!((150..=250).contains(&counts[2]), "{counts:?}");
    g.wait_for(|| g.access_log().len() == 400, "400 access records");
    let logged = g.access_log().iter().filter(|r| r["backend"] == format!("http://{}", c.addr)).count();
    assert_eq!(logged, counts[2], "the access log names the backend of each request");
}

/// One backend killed under load: requests already on it may fail, no other
/// does; it is taken out within the fall threshold (at the first refused
/// connection, even); started again, it gets traffic back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_backend_loses_its_share_and_gets_it_back() {
    let [a, b, c] = three().await;
    let g = Gatehouse::start(&farm(&urls(&[&a, &b, &c]), FAST, ""));
    let addr = g.addr();
    let records: Arc<Mutex<Vec<(Instant, u16)>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut tasks = Vec::new();
    const CLIENTS: usize = 6;
    for t in 0..CLIENTS {
        let (records, stop) = (records.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut client = Client::new(addr);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let started = Instant::now();
                let status = client.request(&get_tagged("/delay/5", &format!("load-{t}"))).await.0;
                records.lock().unwrap().push((started, status));
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(b.seen().len() > 10, "b had its share before: {}", b.seen().len());
    let killed_at = Instant::now();
    b.stop();
    // Out within the fall threshold: 2 checks 200 ms apart, plus a timeout.
    let out = loop {
        let log = g.stderr();
        if log.contains("backend ejected") || log.contains("backend down") {
            break killed_at.elapsed();
        }
        assert!(killed_at.elapsed() < Duration::from_secs(5), "b never taken out:\n{log}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert!(out < Duration::from_millis(2 * 200 + 150 + 300), "taken out after {out:?}");
    let (a_before, c_before) = (a.seen().len(), c.seen().len());
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert!(a.seen().len() > a_before + 20 && c.seen().len() > c_before + 20, "the others took b's share");
    // Back: the same address, a new process.
    let b2 = Backend::start_on(b.addr).await.unwrap();
    let back_at = Instant::now();
    while b2.seen().is_empty() {
        assert!(back_at.elapsed() < Duration::from_secs(5), "b never got traffic back:\n{}", g.stderr());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    assert!(b2.seen().len() > 5, "b is back in the rotation: {}", b2.seen().len());
    let records = records.lock().unwrap();
    let failed: Vec<Duration> =
        records.iter().filter(|(_, s)| *s != 200).map(|(at, _)| at.saturating_duration_since(killed_at)).collect();
    // A request failed only if it was on b when b died: at most one per
    // client, each started before the kill (or within the few milliseconds b
    // took to close its sockets, when its pooled connection still looked open).
    assert!(failed.len() <= CLIENTS, "{} failed: {failed:?}", failed.len());
    assert!(failed.iter().all(|d| *d < Duration::from_millis(50)), "failed after b was gone: {failed:?}");
    let after = records.iter().filter(|(at, _)| *at > killed_at + Duration::from_millis(50)).count();
    assert!(after > 100, "only {after} requests after the kill");
    assert!(g.stderr().contains("backend up"), "the return is logged:\n{}", g.stderr());
}

/// An Outlook Anywhere session's OUT and IN channels (by the virtual
/// connection cookie of their first PDUs) and a MAPI session (by the
/// `MapiContext` its backend set) each stay on one backend, while 100 other
/// sessions spread over all three.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outlook_anywhere_pair_and_a_mapi_session_stay_while_others_spread() {
    let [a, b, c] = three().await;
    let g = Gatehouse::start(&farm(&urls(&[&a, &b, &c]), "", ""));
    let addr = g.addr();
    let all = [&a, &b, &c];
    let session = *b"virtual-conn-01!";
    let mut mapi_cookie = String::new();
    for i in 0..100 {
        // Another session: its own connection.
        let mut other = Client::new(addr);
        assert_eq!(other.request(&get_tagged("/", "other")).await.0, 200);
        if i % 10 == 0 {
            // A channel of the pair, each on a connection of its own, as Outlook opens them.
            let (method, pdu) = if i % 20 == 0 {
                ("RPC_OUT_DATA", rpch::build::conn_a1(&session, &[i as u8; 16]))
            } else {
                ("RPC_IN_DATA", rpch::build::conn_b1(&session, &[i as u8; 16], &[7; 16]))
            };
            let mut conn = TcpStream::connect(addr).await.unwrap();
            let head = format!("{method} /rpc/rpcproxy.dll?mail:6001 HTTP/1.1\r\nHost: app.test\r\nX-Test: pair\r\nContent-Length: {}\r\n\r\n", pdu.len());
            conn.write_all(head.as_bytes()).await.unwrap();
            conn.write_all(&pdu).await.unwrap();
            let mut buf = [0u8; 12];
            conn.read_exact(&mut buf).await.unwrap();
            assert_eq!(&buf, b"HTTP/1.1 200");
        }
        if i % 10 == 5 {
            let mut mapi = Client::new(addr);
            let kind = if mapi_cookie.is_empty() { "Connect" } else { "Execute" };
            let req = format!(
                "POST /mapi/emsmdb/ HTTP/1.1\r\nHost: app.test\r\nX-Test: mapi\r\nX-RequestType: {kind}\r\nContent-Length: 0\r\n{mapi_cookie}\r\n"
            );
            let (status, headers, _) = mapi.request(&req).await;
            assert_eq!(status, 200);
            if let Some(set) = header(&headers, "set-cookie") {
                mapi_cookie = format!("Cookie: {}\r\n", set.split(';').next().unwrap());
            }
        }
    }
    let pair = tagged(&all, "pair");
    assert_eq!(pair.iter().sum::<usize>(), 10);
    assert!(pair.contains(&10), "both channels of the session on one backend: {pair:?}");
    let mapi = tagged(&all, "mapi");
    assert_eq!(mapi.iter().sum::<usize>(), 10);
    assert!(mapi.contains(&10), "the MAPI session on the backend that started it: {mapi:?}");
    let others = tagged(&all, "other");
    assert!(others.iter().all(|n| *n >= 20), "the other sessions spread: {others:?}");
    // The channel PDUs reached the backend whole.
    let rpc = all
        .iter()
        .flat_map(|x| x.seen())
        .filter(|s| s.header("x-test") == Some("pair"))
        .map(|s| s.body_bytes)
        .collect::<Vec<_>>();
    assert!(rpc.iter().all(|n| *n == 76 || *n == 104), "{rpc:?}");
}

/// Garbage where a channel's first PDU belongs is no session, and the request
/// goes on, body intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_channel_bodies_are_forwarded_as_they_are() {
    let [a, b, c] = three().await;
    let g = Gatehouse::start(&farm(&urls(&[&a, &b, &c]), "", ""));
    let mut bodies: Vec<Vec<u8>> =
        vec![b"session-cookie-1-and-more-bytes-here".to_vec(), vec![5, 0, 20, 3, 0x10, 0, 0, 0, 0xff, 0xff]];
    let mut broken = rpch::build::conn_b1(&[1; 16], &[2; 16], &[3; 16]);
    broken[18] = 9; // a command count that does not fit
    bodies.push(broken);
    bodies.push(vec![0u8; 300]);
    for body in &bodies {
        let mut conn = TcpStream::connect(g.addr()).await.unwrap();
        let head = format!(
            "RPC_IN_DATA /rpc/rpcproxy.dll HTTP/1.1\r\nHost: app.test\r\nX-Test: garbage\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        conn.write_all(head.as_bytes()).await.unwrap();
        conn.write_all(body).await.unwrap();
        let mut buf = [0u8; 12];
        conn.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"HTTP/1.1 200");
    }
    let seen: Vec<u64> = [&a, &b, &c].iter().flat_map(|x| x.seen()).map(|s| s.body_bytes).collect();
    let mut want: Vec<u64> = bodies.iter().map(|b| b.len() as u64).collect();
    let mut got = seen.clone();
    want.sort();
    got.sort();
    assert_eq!(got, want, "every byte of every body forwarded");
    assert!(!g.stderr().contains("ERROR"), "{}", g.stderr());
}

/// A pass-through logon (the client's own NTLM to the backend) stays on the
/// backend its connection is bound to: drained, it continues there; dead, the
/// connection gets a 502 and closes, and nothing of it reaches another backend.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pass_through_logon_never_moves() {
    let [a, b, c] = three().await;
    let dir = tempfile::tempdir().unwrap();
    let g = Gatehouse::start_in(
        dir,
        &farm(&urls(&[&a, &b, &c]), "auth = []", "[control]\nsocket = \"{dir}/control.sock\"\n"),
    );
    let addr = g.addr();
    let all = [&a, &b, &c];
    let mut pinned = Client::new(addr);
    // NTLM NEGOTIATE to IIS through gatehouse: from here on the connection's own.
    let negotiate = "GET / HTTP/1.1\r\nHost: app.test\r\nX-Test: pinned\r\nAuthorization: NTLM TlRMTVNTUAABAAAAB4IIogAAAAAAAAAAAAAAAAAAAAAKAGNFAAAADw==\r\n\r\n";
    assert_eq!(pinned.request(negotiate).await.0, 200);
    for _ in 0..20 {
        assert_eq!(pinned.request(&get_tagged("/", "pinned")).await.0, 200);
        assert_eq!(Client::new(addr).request(&get_tagged("/", "free")).await.0, 200);
    }
    let on = tagged(&all, "pinned");
    let home = on.iter().position(|n| *n == 21).unwrap_or_else(|| panic!("the pinned connection moved: {on:?}"));
    assert!(tagged(&all, "free").iter().all(|n| *n > 0), "other connections spread: {:?}", tagged(&all, "free"));
    // Drained: new connections avoid it, the pinned one stays.
    let home_url = format!("http://{}", all[home].addr);
    let drain = backend_command(&g, &["drain", "app", &home_url]);
    assert!(drain.status.success(), "{}", String::from_utf8_lossy(&drain.stdout));
    let free_before = tagged(&all, "free")[home];
    for _ in 0..10 {
        assert_eq!(pinned.request(&get_tagged("/", "pinned")).await.0, 200);
        assert_eq!(Client::new(addr).request(&get_tagged("/", "free")).await.0, 200);
    }
    assert_eq!(tagged(&all, "pinned")[home], 31, "the pinned connection continues on its drained backend");
    assert_eq!(tagged(&all, "free")[home], free_before, "no new connection reached the drained backend");
    // Dead: a 502 that closes the connection; nothing moved elsewhere.
    all[home].stop();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (status, headers, _) = pinned.request(&get_tagged("/", "pinned")).await;
    assert_eq!(status, 502);
    assert_eq!(header(&headers, "connection"), Some("close"));
    let elsewhere: usize = tagged(&all, "pinned").iter().enumerate().filter(|(i, _)| *i != home).map(|(_, n)| n).sum();
    assert_eq!(elsewhere, 0, "a pass-through logon never reached another backend");
    // Its next connection signs in afresh, elsewhere.
    assert_eq!(pinned.request(negotiate).await.0, 200);
}

/// `gatehouse backend ... -c FILE` against the test's gatehouse.
fn backend_command(g: &Gatehouse, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .arg("backend")
        .args(args)
        .arg("-c")
        .arg(&g.config)
        .output()
        .unwrap()
}

/// Draining: new sessions avoid the drained backend while an open RPC channel
/// on it goes on (and its session's other channel still joins it); status
/// shows it, a reload keeps it, undrain gives it new sessions again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_backend_keeps_its_open_channel_and_takes_no_new_sessions() {
    let [a, b] = [Backend::start().await, Backend::start().await];
    let dir = tempfile::tempdir().unwrap();
    let top = "[control]\nsocket = \"{dir}/control.sock\"\n";
    let text = farm(&urls(&[&a, &b]), "", top);
    let g = Gatehouse::start_in(dir, &text);
    let addr = g.addr();
    // An OUT channel held open by the backend (its answer waits for a release).
    let session = *b"virtual-conn-02!";
    let mut out = TcpStream::connect(addr).await.unwrap();
    let a1 = rpch::build::conn_a1(&session, &[1; 16]);
    let head = format!(
        "RPC_OUT_DATA /gated HTTP/1.1\r\nHost: app.test\r\nX-Test: channel\r\nContent-Length: {}\r\n\r\n",
        a1.len()
    );
    out.write_all(head.as_bytes()).await.unwrap();
    out.write_all(&a1).await.unwrap();
    let mut got = Vec::new();
    while !String::from_utf8_lossy(&got).contains("first") {
        let mut tmp = [0u8; 1024];
        let n = out.read(&mut tmp).await.unwrap();
        assert!(n > 0);
        got.extend_from_slice(&tmp[..n]);
    }
    let (home, other) =
        if a.seen().iter().any(|s| s.header("x-test") == Some("channel")) { (&a, &b) } else { (&b, &a) };
    let home_url = format!("http://{}", home.addr);
    let drained = backend_command(&g, &["drain", "app", &home_url]);
    let said = String::from_utf8_lossy(&drained.stdout).into_owned();
    assert!(drained.status.success() && said.contains("drained") && said.contains("1 in flight"), "{said}");
    assert!(g.stderr().contains("backend drained"), "logged:\n{}", g.stderr());
    let status = String::from_utf8_lossy(&backend_command(&g, &["status"]).stdout).into_owned();
    assert!(status.contains(&format!("site app backend {home_url} weight 1: up, drained, 1 in flight")), "{status}");
    // doctor asks the running gatehouse too.
    let doctor = std::process::Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args(["doctor", "-c"])
        .arg(&g.config)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&doctor.stdout);
    assert!(said.contains(&format!("running: site app backend {home_url} weight 1: up, drained")), "{said}");
    // The session's IN channel joins the drained backend; new sessions do not.
    let b1 = rpch::build::conn_b1(&session, &[2; 16], &[3; 16]);
    let mut inn = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "RPC_IN_DATA /rpc/rpcproxy.dll HTTP/1.1\r\nHost: app.test\r\nX-Test: channel\r\nContent-Length: {}\r\n\r\n",
        b1.len()
    );
    inn.write_all(head.as_bytes()).await.unwrap();
    inn.write_all(&b1).await.unwrap();
    let mut buf = [0u8; 12];
    inn.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"HTTP/1.1 200");
    for _ in 0..20 {
        assert_eq!(Client::new(addr).request(&get_tagged("/", "new")).await.0, 200);
    }
    assert_eq!(tagged(&[home], "new"), [0], "no new session on the drained backend");
    assert_eq!(tagged(&[other], "new"), [20]);
    assert_eq!(tagged(&[home], "channel"), [2], "both channels of the session on it");
    // The open channel goes on to its end.
    home.release();
    while !String::from_utf8_lossy(&got).contains("second") {
        let mut tmp = [0u8; 1024];
        let n = out.read(&mut tmp).await.unwrap();
        assert!(n > 0, "the channel was cut: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&tmp[..n]);
    }
    // A reload keeps the drain; undrain gives it new sessions again.
    g.reload(&text);
    let status = String::from_utf8_lossy(&backend_command(&g, &["status"]).stdout).into_owned();
    assert!(status.contains(&format!("{home_url} weight 1: up, drained")), "{status}");
    for _ in 0..10 {
        assert_eq!(Client::new(addr).request(&get_tagged("/", "new")).await.0, 200);
    }
    assert_eq!(tagged(&[home], "new"), [0]);
    let undrain = backend_command(&g, &["undrain", "app", &home.addr.to_string()]);
    assert!(undrain.status.success(), "{}", String::from_utf8_lossy(&undrain.stdout));
    for _ in 0..10 {
        assert_eq!(Client::new(addr).request(&get_tagged("/", "new")).await.0, 200);
    }
    assert!(tagged(&[home], "new")[0] >= 3, "undrained: new sessions again");
    // Names the socket refuses: the answer says why, and the exit code fails.
    for (args, words) in [
        (vec!["drain", "nosuch", "x"], "no site is named `nosuch`"),
        (vec!["drain", "app", "http://10.9.9.9:80"], "has no backend"),
        (vec!["drain", "app", "127.0.0.1"], "names several backends"),
    ] {
        let out = backend_command(&g, &args);
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(!out.status.success() && said.contains(words), "{args:?}: {said}");
    }
    // `drain = true` in the file: check shows it, and undrain cannot undo it.
    let text = text.replace(&format!("\"{home_url}\""), &format!("{{ url = \"{home_url}\", drain = true }}"));
    g.reload(&text);
    let out = backend_command(&g, &["undrain", "app", &home_url]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("drained by the configuration file"), "{out:?}");
    let check = std::process::Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args(["check", "-c"])
        .arg(&g.config)
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&check.stdout);
    assert!(shown.contains(&format!("{home_url} (drained by the configuration)")), "{shown}");
}

/// A channel open on a backend that dies ends for the client (its connection
/// closes), as a network break does, and Outlook reconnects; it does not hang.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_on_a_dying_backend_ends_for_the_client() {
    let [a, b] = [Backend::start().await, Backend::start().await];
    let g = Gatehouse::start(&farm(&urls(&[&a, &b]), "", ""));
    let mut out = TcpStream::connect(g.addr()).await.unwrap();
    let a1 = rpch::build::conn_a1(b"virtual-conn-03!", &[1; 16]);
    let head = format!(
        "RPC_OUT_DATA /gated HTTP/1.1\r\nHost: app.test\r\nX-Test: dying\r\nContent-Length: {}\r\n\r\n",
        a1.len()
    );
    out.write_all(head.as_bytes()).await.unwrap();
    out.write_all(&a1).await.unwrap();
    let mut got = Vec::new();
    while !String::from_utf8_lossy(&got).contains("first") {
        let mut tmp = [0u8; 1024];
        let n = out.read(&mut tmp).await.unwrap();
        assert!(n > 0);
        got.extend_from_slice(&tmp[..n]);
    }
    let home = if tagged(&[&a], "dying")[0] == 1 { &a } else { &b };
    home.stop();
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        let mut tmp = [0u8; 1024];
        loop {
            match out.read(&mut tmp).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the client's channel stayed open after its backend died");
    // The next session goes to the backend that is left.
    assert_eq!(Client::new(g.addr()).request(&get_tagged("/", "after")).await.0, 200);
}

/// The control socket answers its owner only, and only with its own words.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_control_socket_refuses_what_it_does_not_know() {
    let [a, b] = [Backend::start().await, Backend::start().await];
    let dir = tempfile::tempdir().unwrap();
    let g = Gatehouse::start_in(dir, &farm(&urls(&[&a, &b]), "", "[control]\nsocket = \"{dir}/control.sock\"\n"));
    let socket = g.path("control.sock");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777, 0o600);
    for line in ["drain app\n", "reload\n", "status extra\n", &format!("{}\n", "x".repeat(10_000))] {
        let mut s = tokio::net::UnixStream::connect(&socket).await.unwrap();
        s.write_all(line.as_bytes()).await.unwrap();
        let mut answer = String::new();
        match s.read_to_string(&mut answer).await {
            Ok(_) => assert!(answer.starts_with("error:"), "{line:?}: {answer}"),
            // A line past the limit is not read to its end: the socket closes
            // with it unread, which the kernel reports as a reset.
            Err(e) => assert!(line.len() > 4096 && e.kind() == std::io::ErrorKind::ConnectionReset, "{e}"),
        }
    }
    // Without [control], the command says what to add.
    let plain = Gatehouse::start(&farm(&urls(&[&a, &b]), "", ""));
    let out = backend_command(&plain, &["status"]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("no [control] socket"));
}

/// No backend up: a 503 page that says so, with Retry-After, the cause in the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_backend_up_is_a_503_page() {
    let dead = [ClosedPort::new(), ClosedPort::new(), ClosedPort::new()];
    let list: Vec<String> = dead.iter().map(|d| format!("http://{}", d.addr)).collect();
    let g = Gatehouse::start(&farm(&list, FAST, ""));
    for _ in 0..3 {
        let r = request(g.addr(), &get("app.test", "/")).await;
        assert_eq!(r.status, 503, "{}", r.text());
        assert!(r.text().contains("No server of this site is available"), "{}", r.text());
        assert_eq!(r.header("retry-after"), Some("10"));
    }
    g.wait_for(|| g.access_log().len() == 3, "three records");
    let rec = &g.access_log()[2];
    assert!(rec["error"].as_str().unwrap().contains("no backend can take the request"), "{rec}");
    assert!(g.stderr().contains("down") || g.stderr().contains("ejected"), "{}", g.stderr());
}

/// A request goes to another backend only if no byte of it reached one: a
/// backend that takes a request and dies before answering costs that request
/// a 502, and the next backend never sees it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_reached_a_backend_is_never_sent_again() {
    // Takes what it is sent, then closes without an answer.
    let black_hole = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hole = black_hole.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = black_hole.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                let _ = tokio::time::timeout(Duration::from_millis(200), s.read(&mut buf)).await;
            });
        }
    });
    let good = Backend::start().await;
    // Weight 1000 to 1: the first request's first choice is the black hole.
    let text = format!(
        "[[listener]]\nname = \"l\"\nbind = \"127.0.0.1:0\"\n\n[[site]]\nname = \"app\"\nlistener = \"l\"\nbackends = [{{ url = \"http://{hole}\", weight = 1000 }}, \"http://{}\"]\nhealth = {{ check = \"none\" }}\n",
        good.addr
    );
    let g = Gatehouse::start(&text);
    let r = request(g.addr(), "POST /upload HTTP/1.1\r\nHost: app.test\r\nContent-Length: 5\r\n\r\nhello").await;
    assert_eq!(r.status, 502, "{}", r.text());
    assert!(good.seen().is_empty(), "the request was sent a second time: {:?}", good.seen());
    // One that cannot even connect goes on to the next backend.
    let dead = ClosedPort::new();
    let text = format!(
        "[[listener]]\nname = \"l\"\nbind = \"127.0.0.1:0\"\n\n[[site]]\nname = \"app\"\nlistener = \"l\"\nbackends = [{{ url = \"http://{}\", weight = 1000 }}, \"http://{}\"]\nhealth = {{ check = \"none\" }}\n",
        dead.addr, good.addr
    );
    let g = Gatehouse::start(&text);
    let r = request(g.addr(), "POST /upload HTTP/1.1\r\nHost: app.test\r\nContent-Length: 5\r\n\r\nhello").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(good.seen().len(), 1);
    assert_eq!(good.seen()[0].body_bytes, 5, "the body went whole to the next backend");
    assert!(g.stderr().contains("the request goes to the next one"), "{}", g.stderr());
}

/// `affinity = "cookie"`: the signed cookie keeps a browser on its backend
/// across connections; the backend never sees it; a forged one is ignored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_signed_cookie_keeps_a_browser_on_its_backend() {
    let [a, b, c] = three().await;
    let g = Gatehouse::start(&farm(&urls(&[&a, &b, &c]), "affinity = \"cookie\"", ""));
    let all = [&a, &b, &c];
    let (status, headers, _) = Client::new(g.addr()).request(&get_tagged("/", "browser")).await;
    assert_eq!(status, 200);
    let set = header(&headers, "set-cookie").expect("an affinity cookie").to_owned();
    assert!(set.starts_with("gatehouse_backend=") && set.contains("HttpOnly") && set.contains("Path=/"), "{set}");
    let cookie = set.split(';').next().unwrap().to_owned();
    for _ in 0..20 {
        let req = format!("GET / HTTP/1.1\r\nHost: app.test\r\nX-Test: browser\r\nCookie: a=1; {cookie}\r\n\r\n");
        let (status, headers, _) = Client::new(g.addr()).request(&req).await;
        assert_eq!(status, 200);
        assert!(header(&headers, "set-cookie").is_none(), "a valid cookie is not set again");
    }
    let on = tagged(&all, "browser");
    assert!(on.contains(&21), "the browser stayed: {on:?}");
    let sent: Vec<String> =
        all.iter().flat_map(|x| x.seen()).filter_map(|s| s.header("cookie").map(str::to_owned)).collect();
    assert!(sent.iter().all(|c| c == "a=1"), "the backends never see gatehouse's cookie: {sent:?}");
    // Forged: another tag, another id. Ignored, and a real one is set.
    let (name, value) = cookie.split_once('=').unwrap();
    let flipped = format!("{name}={}{}", &value[..value.len() - 1], if value.ends_with('0') { '1' } else { '0' });
    let other_id = format!("{name}=0000000000000001{}", &value[16..]);
    for forged in [flipped, other_id, format!("{name}=garbage")] {
        let req = format!("GET / HTTP/1.1\r\nHost: app.test\r\nX-Test: forged\r\nCookie: {forged}\r\n\r\n");
        let (status, headers, _) = Client::new(g.addr()).request(&req).await;
        assert_eq!(status, 200);
        let new = header(&headers, "set-cookie").unwrap_or_default();
        assert!(new.starts_with("gatehouse_backend=") && !new.contains(&forged), "{forged}: {new}");
    }
    assert!(!g.stderr().contains(value), "the cookie is never logged");
}

/// `affinity = "source"`: one client address, one backend.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_affinity_keeps_an_address_on_one_backend() {
    let [a, b, c] = three().await;
    let g = Gatehouse::start(&farm(&urls(&[&a, &b, &c]), "affinity = \"source\"", ""));
    for _ in 0..30 {
        assert_eq!(Client::new(g.addr()).request(&get_tagged("/", "src")).await.0, 200);
    }
    let on = tagged(&[&a, &b, &c], "src");
    assert!(on.contains(&30), "{on:?}");
}

/// HTTP checks: a backend whose check page fails gets no requests, and gets
/// them back when it passes again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_checks_take_out_and_bring_back() {
    let [a, b] = [Backend::start().await, Backend::start().await];
    let site =
        r#"health = { check = "http", path = "/healthz", interval = "200ms", timeout = "150ms", fall = 1, rise = 2 }"#;
    let g = Gatehouse::start(&farm(&urls(&[&a, &b]), site, ""));
    g.wait_for(
        || a.seen().iter().any(|s| s.path == "/healthz") && b.seen().iter().any(|s| s.path == "/healthz"),
        "checks of both",
    );
    let check = a.seen().into_iter().find(|s| s.path == "/healthz").unwrap();
    assert_eq!(check.header("user-agent"), Some("gatehouse-health-check"));
    a.set_healthy(false);
    g.wait_for(|| g.stderr().contains("backend down"), "a taken out by its check");
    assert!(g.stderr().contains("answered 503 (expected 200)"), "{}", g.stderr());
    for _ in 0..20 {
        assert_eq!(Client::new(g.addr()).request(&get_tagged("/", "while-down")).await.0, 200);
    }
    assert_eq!(tagged(&[&a, &b], "while-down"), [0, 20]);
    a.set_healthy(true);
    g.wait_for(|| g.stderr().contains("backend up"), "a back after rise");
    for _ in 0..20 {
        assert_eq!(Client::new(g.addr()).request(&get_tagged("/", "back")).await.0, 200);
    }
    assert!(tagged(&[&a], "back")[0] >= 5, "{:?}", tagged(&[&a, &b], "back"));
}

/// Lab: the Exchange preset over a farm of two Exchange-like backends. Each
/// path checks its own Managed Availability page; a backend whose OWA is down
/// keeps serving EWS; an Outlook Anywhere session's two channels meet (only
/// possible on one backend); a MAPI session stays where it connected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exchange_preset_over_a_farm_of_two() {
    let Some(env) = lab_env() else { return };
    std::env::set_var("KRB5_CONFIG", &env["KRB5_CONFIG"]);
    let keytab = format!("{}/backend.keytab", env["LAB"]);
    let ex = [
        testkit::exchange::ExchangeBackend::start(&keytab, "HTTP/backend.ad.test", "AD.TEST").await,
        testkit::exchange::ExchangeBackend::start(&keytab, "HTTP/backend.ad.test", "AD.TEST").await,
    ];
    let config = Config::new()
        .domain(Domain::lab(&env).acceptor_spn("HTTP/proxy.ad.test"))
        .accounts(Accounts::winbind(&env))
        .listener(Listener::plain("plain"))
        .site(
            // ActiveSync is Basic, which a plain listener does not offer.
            Site::new("exchange", "plain", "unused")
                .set_str("preset", "exchange")
                .set("exclude", "[\"/Microsoft-Server-ActiveSync\"]")
                .hosts(&["mail.ad.test"])
                .host_header("backend.ad.test")
                .delegation("kcd")
                .backend_spn("HTTP/backend.ad.test")
                .then("health = { check = \"http\", interval = \"300ms\", timeout = \"200ms\", fall = 1, rise = 1 }"),
        );
    let text = config
        .to_string()
        .replace("backend = \"unused\"", &format!("backends = [\"http://{}\", \"http://{}\"]", ex[0].addr, ex[1].addr));
    let g = Gatehouse::start(&text);
    let paths = ["/autodiscover", "/ews", "/rpc", "/mapi", "/oab", "/owa", "/ecp"];
    g.wait_for(
        || {
            ex.iter().all(|e| {
                let checked: Vec<String> = e.health_checks().iter().map(|p| p.to_ascii_lowercase()).collect();
                paths.iter().all(|p| checked.contains(&format!("{p}/healthcheck.htm")))
            })
        },
        "every path's healthcheck.htm checked on both backends",
    );
    let bob = ntlm::client::Client::new("bob", "Bob-Pass1");
    let head = |m: &str, path: &str| format!("{m} {path} HTTP/1.1\r\nHost: mail.ad.test\r\nUser-Agent: test");
    let mut c = Conn::open(g.addr()).await;
    assert_eq!(handshake(&mut c, &bob, &head("GET", "/owa/"), b"", |_| {}).await.status, 200);
    // OWA down on backend 0: OWA goes to 1 alone; EWS still to both.
    ex[0].set_health("/owa", false);
    g.wait_for(
        || g.stderr().contains("site=exchange/owa") && g.stderr().contains("backend down"),
        "exchange/owa down on backend 0",
    );
    let before: Vec<usize> = ex.iter().map(|e| e.served().len()).collect();
    for _ in 0..10 {
        c.send(format!("{}\r\n\r\n", head("GET", "/owa/")).as_bytes()).await;
        assert_eq!(c.response().await.status, 200);
    }
    // EWS from new connections (each signed in where the load is least).
    for _ in 0..6 {
        let mut e = Conn::open(g.addr()).await;
        let r = handshake(&mut e, &bob, &head("POST", "/ews/exchange.asmx"), b"hi", |_| {}).await;
        assert_eq!(r.status, 200);
    }
    let count = |e: &testkit::exchange::ExchangeBackend, skip: usize, p: &str| {
        e.served()[skip..].iter().filter(|s| s.path.starts_with(p)).count()
    };
    assert_eq!(count(&ex[0], before[0], "/owa"), 0, "no OWA on the backend whose OWA is down");
    assert_eq!(count(&ex[1], before[1], "/owa"), 10);
    assert!(count(&ex[0], before[0], "/ews") > 0 && count(&ex[1], before[1], "/ews") > 0, "EWS on both");
    ex[0].set_health("/owa", true);
    g.wait_for(|| g.stderr().contains("site=exchange/owa") && g.stderr().contains("backend up"), "exchange/owa back");

    // Outlook Anywhere: OUT then IN, each on its own authenticated HTTP/1.0
    // connection; what goes into IN comes out of OUT only on one backend.
    let rpc = |m: &str| {
        format!("{m} /rpc/rpcproxy.dll?backend.ad.test:6001 HTTP/1.0\r\nHost: mail.ad.test\r\nUser-Agent: MSRPC\r\nConnection: Keep-Alive")
    };
    async fn channel(c: &mut Conn, head: &str, client: &ntlm::client::Client, announced: u64, first: &[u8]) {
        let negotiate = client.negotiate();
        let r = leg(c, head, &negotiate, b"").await;
        assert_eq!(r.status, 401);
        let auth = client.authenticate(&negotiate, &challenge_of(&r));
        let b64 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, auth);
        c.send(format!("{head}\r\nContent-Length: {announced}\r\nAuthorization: NTLM {b64}\r\n\r\n").as_bytes()).await;
        c.send(first).await;
    }
    let mut sessions = Vec::new();
    for s in 0..4u8 {
        let vc = [s + 1; 16];
        let mut out = Conn::open(g.addr()).await;
        channel(&mut out, &rpc("RPC_OUT_DATA"), &bob, 76, &rpch::build::conn_a1(&vc, &[s + 10; 16])).await;
        assert!(out.read_until(b"USER bob@AD.TEST\n").await, "{}", String::from_utf8_lossy(&out.buf));
        let mut inn = Conn::open(g.addr()).await;
        channel(&mut inn, &rpc("RPC_IN_DATA"), &bob, 1 << 30, &rpch::build::conn_b1(&vc, &[s + 20; 16], &[9; 16]))
            .await;
        inn.send(format!("PDU-of-session-{s}\n").as_bytes()).await;
        let got =
            tokio::time::timeout(Duration::from_secs(5), out.read_until(format!("PDU-of-session-{s}").as_bytes()))
                .await;
        assert!(matches!(got, Ok(true)), "session {s}: the IN channel's bytes did not come out of its OUT channel");
        sessions.push((out, inn));
    }
    let opened: Vec<usize> =
        ex.iter().map(|e| e.served().iter().filter(|s| s.method == "RPC_OUT_DATA").count()).collect();
    assert!(opened.iter().all(|n| *n >= 1), "sessions spread over both backends: {opened:?}");
    drop(sessions);

    // MAPI: Connect, then Execute with its cookies, on fresh connections.
    let mapi = |kind: &str, cookies: &str| {
        format!("POST /mapi/emsmdb/?MailboxId=bob@ad.test HTTP/1.1\r\nHost: mail.ad.test\r\nUser-Agent: test\r\nX-RequestType: {kind}{cookies}")
    };
    let mut m = Conn::open(g.addr()).await;
    let r = handshake(&mut m, &bob, &mapi("Connect", ""), b"connect", |_| {}).await;
    assert_eq!(r.status, 200);
    let cookies: Vec<String> = r
        .headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("set-cookie"))
        .map(|(_, v)| v.split(';').next().unwrap().to_owned())
        .collect();
    let cookie = format!("\r\nCookie: {}", cookies.join("; "));
    let connected =
        ex.iter().position(|e| e.served().iter().any(|s| s.path.starts_with("/mapi") && s.body_bytes == 7)).unwrap();
    for _ in 0..6 {
        let mut e = Conn::open(g.addr()).await;
        let r = handshake(&mut e, &bob, &mapi("Execute", &cookie), b"execute!", |_| {}).await;
        assert_eq!(r.status, 200);
    }
    let executed: Vec<usize> = ex
        .iter()
        .map(|e| e.served().iter().filter(|s| s.path.starts_with("/mapi") && s.body_bytes == 8).count())
        .collect();
    assert_eq!(executed[connected], 6, "the MAPI session stayed on the backend it connected to: {executed:?}");
}

/// Lab: KCD through a farm of the lab's Kerberos-only Apache, reached
/// directly and through a relay on another loopback address (one keytab, one
/// SPN for the farm). Both carry users' tickets; one going down costs no
/// request; doctor checks delegation to each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kcd_through_a_farm_with_one_spn() {
    let Some(env) = lab_env() else { return };
    let apache: SocketAddr = env["LAB_BACKEND"].trim_start_matches("http://").parse().unwrap();
    let relay = Relay::start("127.0.0.2:0".parse().unwrap(), apache).await.unwrap();
    let list = format!("backends = [\"http://{apache}\", \"http://{}\"]", relay.addr);
    let site = Site::lab_kcd("kerberos-farm", "plain", &env).auth(&["NTLM"]).then(FAST);
    let config = kcd_config(&env, Accounts::winbind(&env), site)
        .to_string()
        .replace(&format!("backend = \"{}\"", env["LAB_BACKEND"]), &list);
    let g = Gatehouse::start(&config);
    let bob = ntlm::client::Client::new("bob", "Bob-Pass1");
    let head = "GET / HTTP/1.1\r\nHost: proxy.ad.test";
    // Ten client connections of two requests each: each connection stays on
    // the backend its user was signed in to (one backend logon per client
    // connection); the connections spread.
    let mut conns = Vec::new();
    for _ in 0..10 {
        let mut c = Conn::open(g.addr()).await;
        let r = handshake(&mut c, &bob, head, b"", |_| {}).await;
        assert_eq!(r.status, 200, "{}\n{}", r.text(), g.stderr());
        c.send(format!("{head}\r\n\r\n").as_bytes()).await;
        let r = c.response().await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(r.text().contains("REMOTE_USER=bob@AD.TEST"), "{}", r.text());
        conns.push(c);
    }
    g.wait_for(|| g.access_log().len() >= 20, "the records");
    let log = g.access_log();
    let by = |origin: &str| log.iter().filter(|r| r["backend"] == origin).count();
    let (direct, relayed) = (by(&format!("http://{apache}")), by(&format!("http://{}", relay.addr)));
    assert!(direct >= 4 && relayed >= 4, "both backends took tickets: {direct} direct, {relayed} relayed");
    let mut per_client: std::collections::HashMap<String, std::collections::HashSet<String>> = Default::default();
    for r in log.iter().filter(|r| r["status"] == 200) {
        per_client.entry(r["client"].to_string()).or_default().insert(r["backend"].to_string());
    }
    assert!(per_client.values().all(|b| b.len() == 1), "a connection moved its user between backends: {per_client:?}");
    let mut c = conns.pop().unwrap();
    // The relayed one goes down: no request fails (once its connections have
    // closed: one that dies under a request costs that request, as above).
    relay.stop();
    tokio::time::sleep(Duration::from_millis(200)).await;
    for _ in 0..10 {
        c.send(format!("{head}\r\n\r\n").as_bytes()).await;
        let r = c.response().await;
        assert_eq!(r.status, 200, "{}\n{}", r.text(), g.stderr());
    }
    // doctor checks delegation to each backend of the farm.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args(["doctor", "-c"])
        .arg(&g.config)
        .args(["--user", "bob"])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains(&format!("site kerberos-farm backend http://{apache}: S4U2Self and S4U2Proxy")), "{said}");
    assert!(said.contains(&format!("the backend http://{apache} accepted the ticket")), "{said}");
    assert!(
        said.contains(&format!("cannot ask the backend http://{}", relay.addr)),
        "the stopped one is named: {said}"
    );
}
