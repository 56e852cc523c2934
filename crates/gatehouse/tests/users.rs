//! Many users at the Kerberos edge (issue 20, goal 5), against the lab:
//! distinct domain users (made by `lab/bulk_users.py`) sign in with NTLM,
//! checked by the lab's DC through winbind, all at once, to a KCD site in
//! front of the lab's Kerberos-only Apache backend. The KDC's side is counted
//! from gatehouse's own `/metrics` (`gatehouse_kdc_requests_total` by kind),
//! so the test reads what an operator would.
//!
//! Needs the lab running: without it these tests fail, unless
//! GATEHOUSE_LAB_SKIP=1 says to skip them (see `testkit::lab`).

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

use common::*;
use ntlm::client::Client;

/// Makes (or finds) the lab users perf00001 .. perf{n} and returns their
/// names and passwords, from the accounts file the script writes.
fn lab_users(env: &LabEnv, dir: &Path, n: usize) -> Vec<(String, String)> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../lab/bulk_users.py");
    let accounts = dir.join("perf-users.ntlm");
    // Debian's python3: python3-samba is installed for it, not for a pyenv.
    let out = Command::new("/usr/bin/python3")
        .arg(script)
        .arg(n.to_string())
        .arg("--accounts")
        .arg(&accounts)
        .env("LAB", &env["LAB"])
        .output()
        .expect("run lab/bulk_users.py");
    assert!(
        out.status.success(),
        "lab/bulk_users.py {n} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&accounts).unwrap();
    let users: Vec<(String, String)> = text
        .lines()
        .map(|l| {
            let mut parts = l.splitn(3, ':');
            assert_eq!(parts.next(), Some("ADTEST"), "{l}");
            (parts.next().unwrap().to_owned(), parts.next().unwrap().to_owned())
        })
        .collect();
    assert_eq!(users.len(), n);
    users
}

/// gatehouse with the lab's domain (`domain_extra` added to `[domain]`),
/// winbind-checked NTLM, a KCD site to the lab's Apache, and an admin
/// listener for `/metrics`.
fn start(env: &LabEnv, domain_extra: Option<&str>) -> Gatehouse {
    let mut domain = Domain::lab(env);
    if let Some(line) = domain_extra {
        let (k, v) = line.split_once(" = ").unwrap();
        domain = domain.set(k, v);
    }
    // A token on every request, so that every request asks the cache (with
    // "always" a request on an authenticated backend connection needs none).
    let site = kcd_site(&env["LAB_BACKEND"], "HTTP/backend.ad.test", "spnego", "every-request");
    let config = Config::new()
        .domain(domain)
        .accounts(Accounts::winbind(env).set("helpers", "8"))
        .table("admin", "bind = \"127.0.0.1:0\"")
        .listener(Listener::plain("plain"))
        .site(site);
    Gatehouse::start(&config.to_string())
}

fn admin_addr(g: &Gatehouse) -> SocketAddr {
    g.wait_for(|| g.stderr().contains("admin listener ready"), "the admin listener");
    let log = g.stderr();
    let line = log.lines().rfind(|l| l.contains("admin listener ready")).unwrap().to_owned();
    line.split_whitespace().find_map(|w| w.strip_prefix("addr=")).unwrap().parse().unwrap()
}

/// The value of `series` (name and labels, as written) in gatehouse's
/// `/metrics`; 0 when the series is not there yet (no such request so far).
async fn metric(g: &Gatehouse, series: &str) -> f64 {
    let r = request(admin_addr(g), "GET /metrics HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n").await;
    assert_eq!(r.status, 200);
    r.text().lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok()).unwrap_or(0.0)
}

const S4U2SELF: &str = "gatehouse_kdc_requests_total{kind=\"s4u2self\"}";
const EVICTIONS: &str = "gatehouse_credential_cache_evictions_total";

/// One visit: a new connection, an NTLM handshake, the Kerberos-only
/// backend's answer. Returns the status and the `REMOTE_USER` it saw.
async fn visit(port: u16, user: &str, password: &str) -> (u16, String) {
    let client =
        Client::new(Box::leak(user.to_owned().into_boxed_str()), Box::leak(password.to_owned().into_boxed_str()));
    let mut c = Conn::open(listen(port)).await;
    let r = handshake(&mut c, &client, "GET /whoami HTTP/1.1\r\nHost: mail.ad.test", b"", |_| {}).await;
    let text = r.text();
    let seen = text.lines().find_map(|l| l.strip_prefix("REMOTE_USER=")).unwrap_or("").to_owned();
    (r.status, seen)
}

/// Every user of `users` visits at once; returns what each saw, in order.
async fn all_at_once(port: u16, users: &[(String, String)]) -> Vec<(u16, String)> {
    let tasks: Vec<_> =
        users.iter().cloned().map(|(u, p)| tokio::spawn(async move { visit(port, &u, &p).await })).collect();
    let mut seen = Vec::new();
    for t in tasks {
        seen.push(t.await.unwrap());
    }
    seen
}

fn assert_each_as_themselves(users: &[(String, String)], seen: &[(u16, String)], g: &Gatehouse, round: &str) {
    for ((user, _), (status, remote)) in users.iter().zip(seen) {
        assert_eq!(*status, 200, "{round}: {user} got {status}\n{}", g.stderr());
        assert_eq!(remote, &format!("{user}@AD.TEST"), "{round}: {user} reached the backend as {remote:?}");
    }
}

/// Fifty distinct users at once: each reaches the backend as themselves, the
/// KDC sees exactly one S4U2Self per user, and a second visit of every user
/// (a new connection, a new NTLM handshake) makes none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_users_at_once_one_s4u2self_each() {
    let Some(env) = lab_env() else { return };
    let dir = tempfile::tempdir().unwrap();
    let users = lab_users(&env, dir.path(), 50);
    let g = start(&env, None);
    let port = g.addr_of("plain").port();
    assert_eq!(metric(&g, S4U2SELF).await, 0.0, "no S4U2Self before anyone signed in");

    let first = all_at_once(port, &users).await;
    assert_each_as_themselves(&users, &first, &g, "first visit");
    assert_eq!(metric(&g, S4U2SELF).await, 50.0, "one S4U2Self per user\n{}", g.stderr());

    let second = all_at_once(port, &users).await;
    assert_each_as_themselves(&users, &second, &g, "second visit");
    assert_eq!(metric(&g, S4U2SELF).await, 50.0, "a second visit made an S4U2Self");
    assert_eq!(metric(&g, EVICTIONS).await, 0.0);

    // A wrong password is refused before the KDC is asked anything.
    let (status, _) = visit(port, &users[0].0, "Wrong-Pass1").await;
    assert_eq!(status, 401);
    assert_eq!(metric(&g, S4U2SELF).await, 50.0);
}

/// `credential_cache_size = 10` with twenty users: ten evictions counted, and
/// an evicted user's next request makes one fresh S4U2Self and reaches the
/// backend as them, while a user still cached makes none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_evicted_user_gets_a_fresh_s4u2self() {
    let Some(env) = lab_env() else { return };
    let dir = tempfile::tempdir().unwrap();
    let users = lab_users(&env, dir.path(), 20);
    let g = start(&env, Some("credential_cache_size = 10"));
    let port = g.addr_of("plain").port();
    // One after the other, so that the least recently used are the first ten.
    for (user, password) in &users {
        let (status, remote) = visit(port, user, password).await;
        assert_eq!((status, remote.as_str()), (200, format!("{user}@AD.TEST").as_str()), "{}", g.stderr());
    }
    assert_eq!(metric(&g, S4U2SELF).await, 20.0);
    assert_eq!(metric(&g, EVICTIONS).await, 10.0, "twenty users in a cache of ten");
    assert_eq!(metric(&g, "gatehouse_credential_cache_entries").await, 10.0);

    // The last user is still cached: no KDC request.
    let (user, password) = &users[19];
    assert_eq!(visit(port, user, password).await, (200, format!("{user}@AD.TEST")));
    assert_eq!(metric(&g, S4U2SELF).await, 20.0, "a cached user made an S4U2Self");

    // The first was evicted: one fresh S4U2Self, and the backend sees them.
    let (user, password) = &users[0];
    assert_eq!(visit(port, user, password).await, (200, format!("{user}@AD.TEST")));
    assert_eq!(metric(&g, S4U2SELF).await, 21.0, "an evicted user's return");
    assert_eq!(metric(&g, EVICTIONS).await, 11.0, "making room for them evicted one more");
    assert_eq!(metric(&g, "gatehouse_credential_cache_entries").await, 10.0);
}

/// lab/bulk_users.py refuses what it cannot make, before it opens the lab's
/// database: no lab is needed for this one.
#[test]
fn bulk_users_refuses_bad_input() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../lab/bulk_users.py");
    for (args, said) in [
        (&["0"][..], "N must be 1 to 99999"),
        (&["100000"][..], "N must be 1 to 99999"),
        (&["3", "--prefix", "a;b"][..], "--prefix must be 1 to 15 ASCII letters"),
        (&["3", "--prefix", "perfperfperfperf"][..], "--prefix must be 1 to 15 ASCII letters"),
        (&["3", "--smb-conf", "/nonexistent/smb.conf"][..], "no lab at"),
    ] {
        let out = Command::new("/usr/bin/python3").arg(&script).args(args).output().expect("run lab/bulk_users.py");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && stderr.contains(said), "{args:?}: {stderr}");
    }
}
