//! What an administrator does after the first deployment, against the lab:
//! rotating the service account's key (a reload picks up the new keytab, and
//! tickets issued under the old key keep working while the keytab holds it),
//! publishing several names for Kerberos (each ticket accepted only for the
//! host the request was sent to), and `gatehouse doctor` on the NTLM side.
//!
//! Each Kerberos test makes a service account of its own (and deletes it, even
//! when it fails): the lab's svc-proxy and its keytab are shared by every
//! other test.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use common::*;

/// `samba-tool ARGS -s $SMB_CONF`, on the lab DC's own database.
fn samba_tool(env: &LabEnv, args: &[&str]) -> Output {
    Command::new("samba-tool").args(args).args(["-s", &env["SMB_CONF"]]).output().expect("samba-tool")
}

fn ok(out: Output, what: &str) -> String {
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{what}: {text}");
    text
}

/// A service account of the test's own, with SPNs, AES keys only and
/// protocol transition to the lab backend (as the deployment guide sets up
/// svc-gatehouse). Deleted when dropped, whatever the test did.
struct ServiceAccount<'a> {
    env: &'a LabEnv,
    name: String,
}

impl<'a> ServiceAccount<'a> {
    /// A user account alone (password `password(1)`).
    fn user(env: &'a LabEnv, tag: &str) -> ServiceAccount<'a> {
        // Short (sAMAccountName takes 20) and unique across parallel runs.
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().subsec_nanos();
        let name = format!("gh{tag}{:05x}", (nanos ^ std::process::id()) & 0xfffff);
        let account = ServiceAccount { env, name };
        ok(samba_tool(env, &["user", "create", &account.name, &password(1)]), "user create");
        account
    }

    fn create(env: &'a LabEnv, tag: &str, hosts: &[&str]) -> ServiceAccount<'a> {
        let account = ServiceAccount::user(env, tag);
        for host in hosts {
            ok(samba_tool(env, &["spn", "add", &format!("HTTP/{host}"), &account.name]), "spn add");
        }
        ok(samba_tool(env, &["delegation", "for-any-protocol", &account.name, "on"]), "protocol transition");
        ok(samba_tool(env, &["delegation", "add-service", &account.name, "HTTP/backend.ad.test"]), "delegation");
        account.aes_only();
        account
    }

    /// msDS-SupportedEncryptionTypes = 24 (AES), as the guide tells the
    /// administrator to set: AD would otherwise pick RC4 for its tickets.
    fn aes_only(&self) {
        let script = "import sys, ldb\n\
            from samba.param import LoadParm\nfrom samba.samdb import SamDB\nfrom samba.auth import system_session\n\
            lp = LoadParm(); lp.load(sys.argv[1])\n\
            db = SamDB(url=lp.private_path('sam.ldb'), session_info=system_session(), lp=lp)\n\
            dn = db.search(base=db.domain_dn(), expression='(sAMAccountName=%s)' % sys.argv[2], attrs=[])[0].dn\n\
            m = ldb.Message(dn)\n\
            m['e'] = ldb.MessageElement('24', ldb.FLAG_MOD_REPLACE, 'msDS-SupportedEncryptionTypes')\n\
            db.modify(m)\n";
        let out = Command::new("/usr/bin/python3")
            .args(["-c", script, &self.env["SMB_CONF"], &self.name])
            .output()
            .expect("python3");
        ok(out, "msDS-SupportedEncryptionTypes");
    }

    fn principal(&self) -> String {
        format!("{}@AD.TEST", self.name)
    }

    /// The account's keys (its own name and each SPN) at their current
    /// version, added to `keytab` (which samba-tool creates or appends to).
    fn export(&self, keytab: &Path, spns: &[&str]) {
        let file = keytab.to_str().unwrap();
        for principal in std::iter::once(self.name.as_str()).chain(spns.iter().copied()) {
            let out = samba_tool(self.env, &["domain", "exportkeytab", file, &format!("--principal={principal}")]);
            ok(out, "exportkeytab");
        }
    }

    /// A new password: the account's keys get the next key version number.
    fn rotate(&self, round: u32) {
        let new = format!("--newpassword={}", password(round));
        ok(samba_tool(self.env, &["user", "setpassword", &self.name, &new]), "setpassword");
    }
}

impl Drop for ServiceAccount<'_> {
    fn drop(&mut self) {
        let out = samba_tool(self.env, &["user", "delete", &self.name]);
        if !out.status.success() {
            eprintln!("could not delete {}: {}", self.name, String::from_utf8_lossy(&out.stderr));
        }
    }
}

fn password(round: u32) -> String {
    format!("Deploy-{round}-{}-Pass1", std::process::id())
}

/// `kvno SPN` in `ccache`: gets (or finds cached) a service ticket and says
/// its key version number.
fn kvno(env: &LabEnv, ccache: &str, spn: &str) -> u32 {
    let out = Command::new("kvno").arg(spn).env("KRB5_CONFIG", &env["KRB5_CONFIG"]).env("KRB5CCNAME", ccache).output();
    let text = ok(out.expect("kvno (krb5-user)"), "kvno");
    text.rsplit("kvno = ").next().and_then(|n| n.trim().parse().ok()).unwrap_or_else(|| panic!("kvno said: {text}"))
}

/// `curl --negotiate` to https://URL_HOST:port/ (resolved to 127.0.0.1): the
/// SPN it asks for is HTTP/URL_HOST; `host` sets another Host header. The
/// status and body.
fn curl(env: &LabEnv, ccache: &str, ca: &Path, port: u16, url_host: &str, host: Option<&str>) -> (u16, String) {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--negotiate", "-u", ":", "-w", "\n%{http_code}", "--cacert"])
        .arg(ca)
        .args(["--resolve", &format!("{url_host}:{port}:127.0.0.1"), &format!("https://{url_host}:{port}/")])
        .env("KRB5_CONFIG", &env["KRB5_CONFIG"])
        .env("KRB5CCNAME", ccache);
    if let Some(h) = host {
        cmd.args(["-H", &format!("Host: {h}")]);
    }
    let out = cmd.output().expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (code.trim().parse().unwrap_or(0), body.to_owned())
}

/// gatehouse accepting Kerberos as `account` with `keytab`, for `spns`, on a
/// TLS listener whose certificate names `hosts`, delegating to the lab backend.
fn start(env: &LabEnv, account: &ServiceAccount, keytab: &Path, spns: &[&str], hosts: &[&str]) -> (Gatehouse, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let ca = make_certs(dir.path(), &[("edge", hosts)]);
    let config = config(env, account, keytab, spns);
    let g = Gatehouse::start_in(dir, &config);
    (g, ca)
}

fn config(env: &LabEnv, account: &ServiceAccount, keytab: &Path, spns: &[&str]) -> String {
    let domain = Domain::new().kerberos(&env["KRB5_CONFIG"], keytab.to_str().unwrap(), &account.principal());
    // One SPN as a plain string: the form every gatehouse version reads.
    let domain = match spns {
        [one] => domain.acceptor_spn(one),
        many => domain.acceptor_spns(many),
    };
    Config::new()
        .domain(domain)
        .listener(Listener::tls("public", "edge"))
        .site(Site::lab_kcd("mail", "public", env).auth(&["Negotiate"]))
        .to_string()
}

fn sighup(g: &Gatehouse) {
    let before = g.stderr().matches("configuration reloaded").count();
    g.signal("-HUP");
    g.wait_for(|| g.stderr().matches("configuration reloaded").count() > before, "the reload");
}

/// `ktutil addent -password`: AES keys for `principals` at `kvno`, from
/// `password` with `salt` (AD's: the upper-case realm and the account name),
/// written to `to`.
fn keys_from_password(principals: &[&str], kvno: u32, password: &str, salt: &str, to: &Path) {
    let mut script = String::new();
    for p in principals {
        for enctype in ["aes256-cts-hmac-sha1-96", "aes128-cts-hmac-sha1-96"] {
            script.push_str(&format!("addent -password -p {p} -k {kvno} -e {enctype} -s {salt}\n{password}\n"));
        }
    }
    script.push_str(&format!("wkt {}\nquit\n", to.display()));
    ktutil(&script);
}

fn ktutil(script: &str) {
    use std::io::Write;
    let mut k = Command::new("ktutil").stdin(Stdio::piped()).stdout(Stdio::null()).spawn().expect("ktutil");
    k.stdin.take().unwrap().write_all(script.as_bytes()).unwrap();
    assert!(k.wait().unwrap().success(), "ktutil");
}

/// `ktutil`: the keys of every `from` keytab, written to `to` (MIT's way to
/// merge keytabs; krb5-user).
fn merge(from: &[&Path], to: &Path) {
    let mut script = String::new();
    for f in from {
        script.push_str(&format!("rkt {}\n", f.display()));
    }
    script.push_str(&format!("wkt {}\nquit\n", to.display()));
    ktutil(&script);
}

/// Issue 12: the service account's password changes (a new key version), the
/// administrator exports the new keys, merges them into the keytab gatehouse
/// reads (replacing the file whole, as `mv` does), and sends SIGHUP. Until
/// the SIGHUP the new key is unknown (the keys are held in memory, issue 20);
/// after it, new tickets (new kvno) are accepted without a restart; a ticket a client got before the change
/// (old kvno, still in its cache) is accepted too, because the keytab still
/// holds the old key; delegation keeps working for both.
#[test]
fn a_rotated_keytab_is_picked_up_on_reload_and_old_tickets_still_work() {
    let Some(env) = lab_env() else { return };
    let work = tempfile::tempdir().unwrap();
    let account = ServiceAccount::create(&env, "r", &["rot.ad.test"]);
    let spn = "HTTP/rot.ad.test";
    let keytab = work.path().join("gatehouse.keytab");
    account.export(&keytab, &[spn]);
    let (g, ca) = start(&env, &account, &keytab, &[spn], &["rot.ad.test"]);
    let port = g.port();

    let before = tempfile::tempdir().unwrap();
    let old_cc = kinit(&env, before.path(), "alice", "Alice-Pass1", &[]);
    let old_kvno = kvno(&env, &old_cc, spn);
    let (status, body) = curl(&env, &old_cc, &ca, port, "rot.ad.test", None);
    assert_eq!(status, 200, "{body}\n{}", g.stderr());
    assert!(body.contains("REMOTE_USER=alice@AD.TEST"), "{body}");

    // As the guide has it: a new password in the directory, the new keys
    // made on Linux from it with ktutil and the account's salt, merged into
    // the keytab gatehouse reads, the file replaced whole, SIGHUP.
    account.rotate(2);
    let after = tempfile::tempdir().unwrap();
    let new_cc = kinit(&env, after.path(), "alice", "Alice-Pass1", &[]);
    let new_kvno = kvno(&env, &new_cc, spn);
    assert_eq!(new_kvno, old_kvno + 1, "the password change gives the keys a new version");
    let fresh = work.path().join("fresh.keytab");
    let salt = format!("AD.TEST{}", account.name);
    keys_from_password(&[&account.principal(), &format!("{spn}@AD.TEST")], new_kvno, &password(2), &salt, &fresh);
    let merged = work.path().join("merged.keytab");
    merge(&[&keytab, &fresh], &merged);
    std::fs::rename(&merged, &keytab).unwrap();
    // The keys are held in memory (issue 20): until the reload, the new key
    // is not known, and the refusal says so.
    let (status, body) = curl(&env, &new_cc, &ca, port, "rot.ad.test", None);
    assert_eq!(status, 401, "a ticket under the new key before the reload: {body}");
    assert!(g.stderr().contains(&format!("kvno {new_kvno} not found in keytab")), "{}", g.stderr());
    sighup(&g);
    assert!(g.stderr().contains("acceptor keys read from the keytab"), "{}", g.stderr());
    let (status, body) = curl(&env, &new_cc, &ca, port, "rot.ad.test", None);
    assert_eq!(status, 200, "a ticket under the new key: {body}\n{}", g.stderr());
    assert!(body.contains("REMOTE_USER=alice@AD.TEST"), "{body}");

    assert_eq!(kvno(&env, &old_cc, spn), old_kvno, "the old client still holds its old ticket");
    let (status, body) = curl(&env, &old_cc, &ca, port, "rot.ad.test", None);
    assert_eq!(status, 200, "a ticket issued before the rotation: {body}\n{}", g.stderr());
    assert!(body.contains("REMOTE_USER=alice@AD.TEST"), "{body}");
}

/// The mistake the guide warns about: the new keytab copied over the old one
/// (only the new key version). New tickets work; a ticket issued before is
/// refused, and the log says why (the key version is not in the keytab).
#[test]
fn a_keytab_replaced_without_the_old_key_refuses_old_tickets_with_the_cause() {
    let Some(env) = lab_env() else { return };
    let work = tempfile::tempdir().unwrap();
    let account = ServiceAccount::create(&env, "x", &["rotx.ad.test"]);
    let spn = "HTTP/rotx.ad.test";
    let keytab = work.path().join("gatehouse.keytab");
    account.export(&keytab, &[spn]);
    let (g, ca) = start(&env, &account, &keytab, &[spn], &["rotx.ad.test"]);
    let port = g.port();
    let before = tempfile::tempdir().unwrap();
    let old_cc = kinit(&env, before.path(), "alice", "Alice-Pass1", &[]);
    assert_eq!(curl(&env, &old_cc, &ca, port, "rotx.ad.test", None).0, 200, "{}", g.stderr());

    account.rotate(2);
    let fresh = work.path().join("fresh.keytab");
    account.export(&fresh, &[spn]);
    std::fs::rename(&fresh, &keytab).unwrap();
    sighup(&g);

    let after = tempfile::tempdir().unwrap();
    let new_cc = kinit(&env, after.path(), "alice", "Alice-Pass1", &[]);
    assert_eq!(curl(&env, &new_cc, &ca, port, "rotx.ad.test", None).0, 200, "{}", g.stderr());
    let (status, body) = curl(&env, &old_cc, &ca, port, "rotx.ad.test", None);
    assert_eq!(status, 401, "{body}");
    let log = g.stderr();
    let refused = log.lines().rev().find(|l| l.contains("authentication refused")).unwrap_or("");
    assert!(refused.contains("kvno 2 not found in keytab"), "{log}");
}

/// Issue 12: one service account, two published names (mail and
/// autodiscover) in `acceptor_spn`. A ticket for each name is accepted when
/// the request is sent to that name; a ticket for autodiscover sent to mail
/// is refused, and so is a request to a name gatehouse has no SPN for, each
/// with its cause in the log.
#[test]
fn each_ticket_is_accepted_only_for_the_host_it_was_sent_to() {
    let Some(env) = lab_env() else { return };
    let work = tempfile::tempdir().unwrap();
    let account = ServiceAccount::create(&env, "m", &["mail-m.ad.test", "autod-m.ad.test", "other-m.ad.test"]);
    let (mail, autod) = ("HTTP/mail-m.ad.test", "HTTP/autod-m.ad.test");
    let keytab = work.path().join("gatehouse.keytab");
    account.export(&keytab, &[mail, autod, "HTTP/other-m.ad.test"]);
    let hosts = ["mail-m.ad.test", "autod-m.ad.test", "other-m.ad.test"];
    let (g, ca) = start(&env, &account, &keytab, &[mail, autod], &hosts);
    let port = g.port();
    let cc_dir = tempfile::tempdir().unwrap();
    let cc = kinit(&env, cc_dir.path(), "alice", "Alice-Pass1", &[]);

    for host in ["mail-m.ad.test", "autod-m.ad.test"] {
        let (status, body) = curl(&env, &cc, &ca, port, host, None);
        assert_eq!(status, 200, "{host}: {body}\n{}", g.stderr());
        assert!(body.contains("REMOTE_USER=alice@AD.TEST"), "{host}: {body}");
    }
    let refusals = || g.stderr().lines().filter(|l| l.contains("authentication refused")).count();

    // curl asks for a ticket for the URL's host, autodiscover; the request says mail.
    let (status, _) = curl(&env, &cc, &ca, port, "autod-m.ad.test", Some("mail-m.ad.test"));
    assert_eq!(status, 401);
    g.wait_for(|| refusals() >= 1, "the refusal");
    let log = g.stderr();
    assert!(
        log.contains("the ticket is for HTTP/autod-m.ad.test@AD.TEST, not for HTTP/mail-m.ad.test@AD.TEST"),
        "{log}"
    );

    // A name of the account, but not one gatehouse was told to accept.
    let (status, _) = curl(&env, &cc, &ca, port, "other-m.ad.test", None);
    assert_eq!(status, 401);
    g.wait_for(|| refusals() >= 2, "the second refusal");
    let log = g.stderr();
    assert!(log.contains("the request was sent to other-m.ad.test, and no acceptor_spn names it"), "{log}");

    // doctor gets a ticket for each name and opens it with the keytab.
    let (status, out) = doctor(&g.path("gatehouse.toml"), &[], None);
    for spn in [mail, autod] {
        assert!(out.contains(&format!("PASS  Negotiate: a ticket for {spn} opens with the keytab's key")), "{out}");
    }
    assert!(status.success(), "{out}");
}

/// `gatehouse doctor -c FILE ARGS` with `stdin`: its exit status
/// and everything it printed.
fn doctor(file: &Path, args: &[&str], stdin: Option<&str>) -> (std::process::ExitStatus, String) {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args(["doctor", "-c"])
        .arg(file)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("gatehouse doctor");
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).unwrap();
    }
    drop(input);
    let out = child.wait_with_output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status, text)
}

/// A configuration with NTLM only (no Kerberos), passwords checked by `accounts`.
fn ntlm_config(dir: &Path, accounts: Accounts) -> PathBuf {
    let text = Config::new()
        .domain(Domain::new())
        .accounts(accounts)
        .listener(Listener::plain("public"))
        .site(Site::new("mail", "public", "http://127.0.0.1:9").auth(&["NTLM"]))
        .to_string();
    let path = dir.join("gatehouse.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Issue 12: doctor's NTLM side with winbind: winbindd answers, reaches the
/// DC, the trust secret is good, and a test logon with the password from
/// standard input passes through ntlm_auth; a wrong password fails with the
/// domain's cause. The password never appears in doctor's output.
#[test]
fn doctor_checks_winbind_and_a_test_logon_without_printing_the_password() {
    let Some(env) = lab_env() else { return };
    let dir = tempfile::tempdir().unwrap();
    let file = ntlm_config(dir.path(), Accounts::winbind(&env));
    let user = ServiceAccount::user(&env, "d");
    let right = password(1);

    let (status, out) = doctor(&file, &["--user", &user.name, "--password-stdin"], Some(&format!("{right}\n")));
    for line in [
        "PASS  winbind answers (wbinfo -p)",
        "PASS  winbind reaches a domain controller over NETLOGON",
        "PASS  the machine account's trust secret is good (wbinfo -t)",
        &format!("PASS  NTLM test logon as ADTEST\\{}", user.name),
    ] {
        assert!(out.contains(line), "{line}:\n{out}");
    }
    assert!(status.success(), "{out}");
    assert!(!out.contains(&right), "the password was printed:\n{out}");

    let wrong = "Not-The-Pass7";
    let (status, out) = doctor(&file, &["--user", &user.name, "--password-stdin"], Some(wrong));
    let failed = out.lines().find(|l| l.starts_with("FAIL  NTLM test logon")).unwrap_or_else(|| panic!("{out}"));
    assert!(failed.contains("the domain refused it:"), "{out}");
    assert!(failed.to_ascii_lowercase().contains("password"), "the domain's cause: {out}");
    assert!(out.contains("      fix: "), "{out}");
    assert!(!status.success());
    assert!(!out.contains(wrong), "the password was printed:\n{out}");

    // A UPN names its domain itself, as a Windows client's logon by UPN does.
    let upn = format!("{}@ad.test", user.name);
    let (status, out) = doctor(&file, &["--user", &upn, "--password-stdin"], Some(&format!("{right}\n")));
    assert!(out.contains(&format!("PASS  NTLM test logon as {upn}")) && status.success(), "{out}");

    // Without a password: no logon, and doctor says how to ask for one.
    let (status, out) = doctor(&file, &["--user", &user.name], None);
    assert!(out.contains("WARN  no test logon for") && out.contains("--password-stdin"), "{out}");
    assert!(status.success(), "{out}");
}

/// winbindd not answering: the first check fails with the fix, and nothing
/// that needs winbind is tried. The `wbinfo` beside the configured
/// `ntlm_auth` answers as Samba's does when winbindd is stopped (the lab's
/// winbindd must keep running for the other tests).
#[test]
fn doctor_says_when_winbind_does_not_answer() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let stopped = "#!/bin/sh\necho 'failed to call wbcPing: WBC_ERR_WINBIND_NOT_AVAILABLE' >&2\nexit 1\n";
    for tool in ["wbinfo", "ntlm_auth"] {
        std::fs::write(bin.join(tool), stopped).unwrap();
        std::fs::set_permissions(bin.join(tool), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let helper = bin.join("ntlm_auth");
    let file = ntlm_config(dir.path(), Accounts::ntlm_auth(helper.to_str().unwrap(), "5s"));
    let (status, out) = doctor(&file, &["--user", "someone", "--password-stdin"], Some("Some-Pass1\n"));
    assert!(out.contains("FAIL  winbind does not answer (wbinfo -p): failed to call wbcPing"), "{out}");
    assert!(out.contains("fix: start it and start it at boot: systemctl enable --now winbind"), "{out}");
    assert!(!out.contains("--ping-dc") && !out.contains("NTLM test logon"), "{out}");
    assert!(!status.success());
}

/// doctor's NTLM side with `source = "file"`: the user is in the file and the
/// password matches; a wrong one, or a user not in the file, fails. No lab.
#[test]
fn doctor_checks_a_user_and_password_against_the_accounts_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("users.ntlm"), "ADTEST:alice:File-Pass1\n").unwrap();
    let file = ntlm_config(dir.path(), Accounts::file("users.ntlm"));
    let (status, out) = doctor(&file, &["--user", "alice", "--password-stdin"], Some("File-Pass1\n"));
    assert!(out.contains("PASS  [accounts] file") && out.contains("holds 1 users"), "{out}");
    assert!(out.contains("PASS  ADTEST\\alice is in"), "{out}");
    assert!(out.contains("PASS  the password of ADTEST\\alice matches"), "{out}");
    assert!(status.success(), "{out}");
    assert!(!out.contains("File-Pass1"), "{out}");

    let (status, out) = doctor(&file, &["--user", "alice", "--password-stdin"], Some("Wrong-Pass1\n"));
    assert!(out.contains("FAIL  the password of ADTEST\\alice does not match"), "{out}");
    assert!(!status.success() && !out.contains("Wrong-Pass1"), "{out}");

    let (status, out) = doctor(&file, &["--user", "mallory"], None);
    assert!(out.contains("FAIL  ADTEST\\mallory is not in"), "{out}");
    assert!(!status.success());

    // The password only from standard input, and only for a user.
    let (status, out) = doctor(&file, &["--password-stdin"], Some("x\n"));
    assert_eq!(status.code(), Some(2), "{out}");
    assert!(out.contains("--password-stdin needs --user NAME"), "{out}");
}

/// A first keytab that is wrong (keys from another password: AD refuses the
/// TGT), fixed in place, then SIGHUP as the guide says: the acceptor gets its
/// TGT at once, not when the background's backoff next wakes (by then 10 s
/// away, and up to 5 minutes after longer trouble). Tickets open with the
/// fixed keys.
#[test]
fn a_keytab_fixed_in_place_is_tried_again_at_once_on_reload() {
    let Some(env) = lab_env() else { return };
    let work = tempfile::tempdir().unwrap();
    let account = ServiceAccount::create(&env, "f", &["fix.ad.test"]);
    let spn = "HTTP/fix.ad.test";
    let keytab = work.path().join("gatehouse.keytab");
    let salt = format!("AD.TEST{}", account.name);
    let names = [account.principal(), format!("{spn}@AD.TEST")];
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    keys_from_password(&names, 1, "Not-The-Password1", &salt, &keytab);
    let (g, ca) = start(&env, &account, &keytab, &[spn], &["fix.ad.test"]);
    let asked = || g.stderr().matches("asking the KDC for the acceptor's TGT").count();
    // Two failed rounds (at start and 5 s later): the next one is 10 s away.
    g.wait_for(
        || asked() >= 2 && g.stderr().matches("accepting with the keytab alone").count() >= 2,
        "two failed rounds",
    );
    assert!(!g.stderr().contains("the acceptor has its TGT"), "{}", g.stderr());

    let fixed = work.path().join("fixed.keytab");
    account.export(&fixed, &[spn]);
    std::fs::rename(&fixed, &keytab).unwrap();
    sighup(&g);
    let reloaded = std::time::Instant::now();
    while !g.stderr().contains("the acceptor has its TGT") {
        assert!(
            reloaded.elapsed() < std::time::Duration::from_secs(3),
            "no new round within 3 s of the reload:\n{}",
            g.stderr()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let cc_dir = tempfile::tempdir().unwrap();
    let cc = kinit(&env, cc_dir.path(), "alice", "Alice-Pass1", &[]);
    let (status, body) = curl(&env, &cc, &ca, g.port(), "fix.ad.test", None);
    assert_eq!(status, 200, "{body}\n{}", g.stderr());
}

/// The guide's keytab, made on Linux from the password: with AD's salt
/// (realm and the UPN's user part) doctor passes the ticket for the SPN;
/// with the SPN as the salt (what `ktutil` uses for an `HTTP/` name without
/// `-s`, here for every entry) the same password gives keys AD never made,
/// and doctor fails, naming the SPN.
#[test]
fn doctor_tells_a_keytab_with_the_right_salt_from_one_without() {
    let Some(env) = lab_env() else { return };
    let account = ServiceAccount::create(&env, "s", &["salt.ad.test"]);
    let spn = "HTTP/salt.ad.test";
    let names = [account.principal(), format!("{spn}@AD.TEST")];
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let cc_dir = tempfile::tempdir().unwrap();
    let kvno = kvno(&env, &kinit(&env, cc_dir.path(), "alice", "Alice-Pass1", &[]), spn);
    let opened = format!("PASS  Negotiate: a ticket for {spn} opens with the keytab's key");
    for (right, salt) in [(true, format!("AD.TEST{}", account.name)), (false, "AD.TESTHTTPsalt.ad.test".to_string())] {
        let dir = tempfile::tempdir().unwrap();
        make_certs(dir.path(), &[("edge", &["salt.ad.test"])]);
        let keytab = dir.path().join("gatehouse.keytab");
        keys_from_password(&names, kvno, &password(1), &salt, &keytab);
        let file = dir.path().join("gatehouse.toml");
        std::fs::write(&file, config(&env, &account, &keytab, &[spn])).unwrap();
        let (status, out) = doctor(&file, &[], None);
        if right {
            assert!(out.contains(&opened) && status.success(), "salt {salt}: {out}");
        } else {
            let refused = format!("FAIL  Negotiate: clients' tickets for {spn} would be refused");
            assert!(out.contains(&refused), "salt {salt}: {out}");
            assert!(!out.contains(&opened) && !status.success(), "salt {salt}: {out}");
        }
    }
}
