//! Access rules against the lab domain, with users and groups of each test's
//! own (created with samba-tool, deleted however the test ends): members,
//! members of a nested group, non-members and denied users, through NTLM
//! (curl, and gatehouse's test client on a connection kept open), Negotiate
//! (kinit + curl --negotiate) and Basic (curl); names resolved in the lab's
//! LDAP when the configuration loads; users removed from the group or
//! disabled in AD losing access within `[access] refresh`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;
use testkit::Backend;

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

/// The test's own accounts: `sub` is nested in `fin`; `member` is in `fin`,
/// `nested` in `sub`, `contractor` in `fin` and `con`, `outsider` in none.
/// Deleted on drop.
struct Accounts {
    smb: String,
    id: String,
    password: String,
    created_users: Vec<String>,
    created_groups: Vec<String>,
}

impl Accounts {
    fn create(env: &LabEnv, tag: &str) -> Accounts {
        let id = format!("{tag}{}", std::process::id() % 100_000);
        let mut a = Accounts {
            smb: env["SMB_CONF"].clone(),
            password: format!("Acc-Pass1-{id}"),
            id,
            created_users: Vec::new(),
            created_groups: Vec::new(),
        };
        for g in ["fin", "sub", "con"] {
            let name = a.group(g);
            a.created_groups.push(name.clone());
            samba_tool(&a.smb, &["group", "add", &name]);
        }
        for u in ["member", "nested", "contractor", "outsider"] {
            let name = a.user(u);
            a.created_users.push(name.clone());
            samba_tool(&a.smb, &["user", "create", &name, &a.password]);
        }
        samba_tool(&a.smb, &["group", "addmembers", &a.group("sub"), &a.user("nested")]);
        samba_tool(&a.smb, &["group", "addmembers", &a.group("fin"), &a.group("sub")]);
        let fin_members = format!("{},{}", a.user("member"), a.user("contractor"));
        samba_tool(&a.smb, &["group", "addmembers", &a.group("fin"), &fin_members]);
        samba_tool(&a.smb, &["group", "addmembers", &a.group("con"), &a.user("contractor")]);
        a
    }

    /// sAMAccountNames stay under 20 characters.
    fn user(&self, role: &str) -> String {
        format!("a{}{}", &role[..3], self.id)
    }

    fn group(&self, role: &str) -> String {
        format!("g{role}{}", self.id)
    }
}

impl Drop for Accounts {
    fn drop(&mut self) {
        for u in &self.created_users {
            let _ = Command::new("samba-tool").args(["user", "delete", u, "-s", &self.smb]).output();
        }
        for g in &self.created_groups {
            let _ = Command::new("samba-tool").args(["group", "delete", g, "-s", &self.smb]).output();
        }
    }
}

/// gatehouse on a TLS listener for proxy.ad.test: `/fin` open to the `fin`
/// group but not to `con`, `/` to every signed-in user; NTLM (winbind),
/// Negotiate and Basic (KDC); names looked up in the lab's LDAP.
fn config(env: &LabEnv, a: &Accounts, backend: &str, refresh: &str) -> Config {
    let site = |name: &str, prefix: &str| {
        Site::new(name, "public", backend)
            .hosts(&["proxy.ad.test"])
            .path_prefix(prefix)
            .auth(&["Negotiate", "NTLM", "Basic"])
            .identity_header("X-Remote-User")
    };
    Config::new()
        .domain(Domain::lab(env).acceptor_spn("HTTP/proxy.ad.test"))
        .accounts(Accounts_::winbind(env))
        .table(
            "access",
            &format!(
                "refresh = \"{refresh}\"\ngrace = \"30s\"\ndirectory = \"ldap://dc1.ad.test\"\ndirectory_address = \"{}\"",
                env["LAB_DC_IP"]
            ),
        )
        .table("basic", "cache = \"5m\"")
        .listener(Listener::tls("public", "proxy"))
        .site(site("fin", "/fin").allow(&[&format!("ADTEST\\{}", a.group("fin"))]).deny(&[&format!(
            "ADTEST\\{}",
            a.group("con")
        )]))
        .site(site("open", "/"))
}

use testkit::config::Accounts as Accounts_;

fn start(env: &LabEnv, a: &Accounts, backend: &str, refresh: &str) -> (Gatehouse, PathBuf, u16) {
    let dir = tempfile::tempdir().unwrap();
    let ca = make_certs(dir.path(), &[("proxy", &["proxy.ad.test"])]);
    let g = Gatehouse::start_in(dir, &config(env, a, backend, refresh).to_string());
    let port = g.port();
    (g, ca, port)
}

/// Status and body of one curl; `how` the authentication arguments.
fn curl(ca: &Path, port: u16, path: &str, how: &[&str], env: &[(&str, &str)]) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-sS", "-w", "\n%{http_code}", "--cacert"])
        .arg(ca)
        .args(how)
        .args(["--resolve", &format!("proxy.ad.test:{port}:127.0.0.1")])
        .arg(format!("https://proxy.ad.test:{port}{path}"))
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_owned())
}

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_nested_members_and_deny_by_every_scheme() {
    let Some(env) = lab_env() else { return };
    let a = Accounts::create(&env, "m");
    let b = Backend::start().await;
    let (g, ca, port) = start(&env, &a, &format!("http://{}", b.addr), "10m");
    let dir = tempfile::tempdir().unwrap();
    let expected = [("member", 200), ("nested", 200), ("contractor", 403), ("outsider", 403)];
    for (role, status) in expected {
        let user = a.user(role);
        let ntlm_user = format!("ADTEST\\{user}:{}", a.password);
        let (code, body) = curl(&ca, port, "/fin/x", &["--ntlm", "-u", &ntlm_user], &[]);
        assert_eq!(code, status, "NTLM {role}: {body}\n{}", g.stderr());
        let (code, body) = curl(&ca, port, "/fin/x", &["-u", &format!("{user}:{}", a.password)], &[]);
        assert_eq!(code, status, "Basic {role}: {body}\n{}", g.stderr());
        let cc = kinit(&env, dir.path(), &user, &a.password, &[]);
        let krb = [("KRB5_CONFIG", env["KRB5_CONFIG"].as_str()), ("KRB5CCNAME", cc.as_str())];
        let (code, body) = curl(&ca, port, "/fin/x", &["--negotiate", "-u", ":"], &krb);
        assert_eq!(code, status, "Negotiate {role}: {body}\n{}", g.stderr());
        if status == 200 {
            assert!(body.contains(&format!(r#""x-remote-user":"ADTEST\\{user}""#)), "{body}");
        } else {
            // The page names the user, never a group or the rule.
            assert!(body.contains(&format!("signed in as ADTEST\\{user}")), "{body}");
            assert!(!body.contains(&a.group("fin")) && !body.contains(&a.group("con")), "{body}");
        }
        // Every signed-in user may use the site without rules.
        let (code, _) = curl(&ca, port, "/open", &["--ntlm", "-u", &ntlm_user], &[]);
        assert_eq!(code, 200, "NTLM {role} on the open site");
    }
    // The access log says why, with the rule (written in batches).
    g.wait_for(|| g.access_log().iter().filter(|r| r["status"] == 403).count() == 6, "six denials in the access log");
    let log = g.access_log();
    let denied = |user: &str| -> Vec<String> {
        log.iter()
            .filter(|r| r["user"].as_str() == Some(&format!("ADTEST\\{user}")) && r["status"] == 403)
            .map(|r| r["denied"].as_str().unwrap_or("").to_owned())
            .collect()
    };
    let contractor = denied(&a.user("contractor"));
    assert_eq!(contractor.len(), 3, "{log:?}");
    assert!(contractor.iter().all(|d| d.starts_with(&format!("deny ADTEST\\{}", a.group("con")))), "{contractor:?}");
    let outsider = denied(&a.user("outsider"));
    assert!(outsider.len() == 3 && outsider.iter().all(|d| d == "not in allow"), "{outsider:?}");
    assert!(denied(&a.user("member")).is_empty());
    assert!(g.stderr().contains("access denied"), "{}", g.stderr());
}

/// An NTLM handshake on `c` for GET `path`; the answer to the last leg.
async fn ntlm_get(c: &mut Conn<TlsStream>, client: &ntlm::client::Client, path: &str) -> Resp {
    handshake(c, client, &format!("GET {path} HTTP/1.1\r\nHost: proxy.ad.test"), b"", |_| {}).await
}

async fn plain_get(c: &mut Conn<TlsStream>, path: &str) -> Resp {
    c.send(get("proxy.ad.test", path).as_bytes()).await;
    c.response().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_on_one_site_keeps_the_connections_logon_for_the_others() {
    let Some(env) = lab_env() else { return };
    let a = Accounts::create(&env, "k");
    let b = Backend::start().await;
    let (g, ca, port) = start(&env, &a, &format!("http://{}", b.addr), "10m");
    let outsider = ntlm::client::Client::new(leak(a.user("outsider")), leak(a.password.clone()));
    let mut c = Conn::open_tls(listen(port), &ca, "proxy.ad.test").await;
    let r = ntlm_get(&mut c, &outsider, "/fin/").await;
    assert_eq!(r.status, 403, "{}\n{}", r.text(), g.stderr());
    // Same connection, no new handshake: the open site, then /fin again.
    let r = plain_get(&mut c, "/open").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains(&format!("ADTEST\\\\{}", a.user("outsider"))), "{}", r.text());
    assert_eq!(plain_get(&mut c, "/fin/").await.status, 403);
    // A refused POST's small body is read past: the connection stays.
    c.send(b"POST /fin/form HTTP/1.1\r\nHost: proxy.ad.test\r\nContent-Length: 5\r\n\r\nhello").await;
    let r = c.response().await;
    assert_eq!(r.status, 403);
    assert!(r.header("connection").is_none_or(|v| !v.eq_ignore_ascii_case("close")), "{:?}", r.headers);
    assert_eq!(plain_get(&mut c, "/open").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removed_and_disabled_users_lose_access_within_refresh() {
    let Some(env) = lab_env() else { return };
    let a = Accounts::create(&env, "r");
    let b = Backend::start().await;
    let (g, ca, port) = start(&env, &a, &format!("http://{}", b.addr), "2s");
    // Kept-open NTLM connections for the member and the nested member.
    let member = ntlm::client::Client::new(leak(a.user("member")), leak(a.password.clone()));
    let nested = ntlm::client::Client::new(leak(a.user("nested")), leak(a.password.clone()));
    let mut m = Conn::open_tls(listen(port), &ca, "proxy.ad.test").await;
    let mut n = Conn::open_tls(listen(port), &ca, "proxy.ad.test").await;
    assert_eq!(ntlm_get(&mut m, &member, "/fin/").await.status, 200, "{}", g.stderr());
    assert_eq!(ntlm_get(&mut n, &nested, "/fin/").await.status, 200, "{}", g.stderr());
    // Basic, remembered for 5 minutes ([basic] cache): the domain is not
    // asked for the password again, but still for the groups.
    let basic = format!("{}:{}", a.user("member"), a.password);
    assert_eq!(curl(&ca, port, "/fin/", &["-u", &basic], &[]).0, 200);

    samba_tool(&a.smb, &["group", "removemembers", &a.group("fin"), &a.user("member")]);
    samba_tool(&a.smb, &["user", "disable", &a.user("nested")]);
    // Nothing changes before the refresh time (what the domain said stands),
    // and everything within it plus the time a request takes.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let r = plain_get(&mut m, "/fin/").await;
    assert_eq!(r.status, 403, "removed from the group: {}\n{}", r.text(), g.stderr());
    assert_eq!(plain_get(&mut m, "/open").await.status, 200, "the account itself is fine");
    assert_eq!(curl(&ca, port, "/fin/", &["-u", &basic], &[]).0, 403, "remembered Basic password");
    let r = plain_get(&mut n, "/open").await;
    assert_eq!(r.status, 403, "disabled: {}\n{}", r.text(), g.stderr());
    assert!(r.text().contains("no longer accepts this account"), "{}", r.text());
    // The disabled account's logon is gone from its connection.
    assert_eq!(plain_get(&mut n, "/open").await.status, 401);
    // The access log is written in batches.
    let refused = || {
        g.access_log().iter().any(|r| {
            r["status"] == 403 && r["denied"].as_str().is_some_and(|d| d.starts_with("the domain refuses the account"))
        })
    };
    g.wait_for(refused, "the refusal in the access log");
}

#[test]
fn names_are_resolved_when_loading_and_an_unknown_one_fails_check_and_reload() {
    let Some(env) = lab_env() else { return };
    let a = Accounts::create(&env, "n");
    let dir = tempfile::tempdir().unwrap();
    make_certs(dir.path(), &[("proxy", &["proxy.ad.test"])]);
    let good = config(&env, &a, "http://127.0.0.1:9", "10m").to_string();
    let file = dir.path().join("gatehouse.toml");
    std::fs::write(&file, &good).unwrap();
    let check =
        |file: &Path| Command::new(env!("CARGO_BIN_EXE_gatehouse")).args(["check", "-c"]).arg(file).output().unwrap();
    let ok = check(&file);
    let out = String::from_utf8_lossy(&ok.stdout);
    assert!(ok.status.success(), "{out}{}", String::from_utf8_lossy(&ok.stderr));
    assert!(out.contains(&format!("allow [ADTEST\\{}] deny [ADTEST\\{}]", a.group("fin"), a.group("con"))), "{out}");

    let unknown = format!("ADTEST\\\\nosuch{}", a.id);
    let bad = good.replace(&format!("ADTEST\\\\{}\"", a.group("con")), &format!("{unknown}\""));
    assert_ne!(bad, good);
    std::fs::write(&file, &bad).unwrap();
    let failed = check(&file);
    let err = String::from_utf8_lossy(&failed.stderr);
    assert!(!failed.status.success());
    let line = bad.lines().position(|l| l.contains("nosuch")).unwrap() + 1;
    assert!(
        err.contains(&format!("{}:{line}:", file.display())) && err.contains(&format!("`ADTEST\\nosuch{}`", a.id)),
        "{err}"
    );
    assert!(err.contains("is not a user or group of the domain"), "{err}");
    // --offline checks everything else and says the names were not looked up.
    let offline = Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args(["check", "-c"])
        .arg(&file)
        .arg("--offline")
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&offline.stdout);
    assert!(
        offline.status.success() && out.contains("--offline: the names in allow and deny were not looked up"),
        "{out}"
    );

    // A reload that cannot resolve keeps the running configuration.
    let g = Gatehouse::start_in(dir, &good);
    let before = g.stderr().matches("reload refused").count();
    std::fs::write(g.path("gatehouse.toml"), &bad).ok();
    g.signal("-HUP");
    g.wait_for(|| g.stderr().matches("reload refused").count() > before, "the refused reload");
    assert!(g.stderr().contains(&format!("nosuch{}", a.id)), "{}", g.stderr());
}

#[test]
fn doctor_prints_the_users_sid_groups_and_each_sites_decision() {
    let Some(env) = lab_env() else { return };
    let a = Accounts::create(&env, "d");
    let dir = tempfile::tempdir().unwrap();
    make_certs(dir.path(), &[("proxy", &["proxy.ad.test"])]);
    let file = dir.path().join("gatehouse.toml");
    std::fs::write(&file, config(&env, &a, "http://127.0.0.1:9", "10m").to_string()).unwrap();
    let doctor = |user: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_gatehouse"))
            .args(["doctor", "-c"])
            .arg(&file)
            .args(["--user", user])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let nested = doctor(&a.user("nested"));
    let sid_line = nested.lines().find(|l| l.contains(": SID S-1-5-21-")).unwrap_or_else(|| panic!("{nested}"));
    assert!(sid_line.contains(&format!("ADTEST\\{}", a.user("nested"))), "{nested}");
    assert!(sid_line.contains(&format!("UPN {}@", a.user("nested"))) || sid_line.contains("UPN unknown"), "{nested}");
    for g in [a.group("sub"), a.group("fin")] {
        assert!(
            nested
                .lines()
                .any(|l| l.trim_start().starts_with("group S-1-5-21-") && l.ends_with(&format!("ADTEST\\{g}"))),
            "{g}: {nested}"
        );
    }
    assert!(
        nested.contains(&format!(
            "INFO  site fin: ADTEST\\{} may use it (allow ADTEST\\{})",
            a.user("nested"),
            a.group("fin")
        )),
        "{nested}"
    );
    assert!(
        nested.contains(&format!("INFO  site open: ADTEST\\{} may use it (no allow", a.user("nested"))),
        "{nested}"
    );
    let contractor = doctor(&a.user("contractor"));
    assert!(
        contractor.contains(&format!(
            "site fin: ADTEST\\{} is refused (deny ADTEST\\{}",
            a.user("contractor"),
            a.group("con")
        )),
        "{contractor}"
    );
    let outsider = doctor(&a.user("outsider"));
    assert!(outsider.contains("is refused (not in allow)"), "{outsider}");
}
