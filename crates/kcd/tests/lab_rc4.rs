//! RC4 refused by default, against the lab domain, with accounts of the
//! test's own (created with samba-tool, deleted however the test ends):
//!
//! - `rc4s<id>`: no msDS-SupportedEncryptionTypes, so Samba (like AD before
//!   the 2026 change) encrypts tickets for its SPN with RC4, with AES
//!   session keys: refused by kcd's own check of the ticket, before MIT
//!   decrypts it (Negotiate, Basic, and its own S4U2Self tickets);
//! - `rc4a<id>`: AES and RC4 (0x1C), so its tickets are AES; a client that
//!   asks for an RC4 session key (`kvno -e rc4-hmac`) gets one, and MIT's own
//!   limit on the acceptor credential refuses it;
//! - `rc4a` delegates to `rc4s`'s SPN: the S4U2Proxy ticket is RC4, and is
//!   not handed to that backend;
//! - `rc4r`: RC4 only (0x4): kcd asks the KDC for AES session keys only, so
//!   the KDC refuses S4U2Proxy to it and its own S4U2Self.
//!
//! With RC4 allowed (`[domain] allow_rc4 = true`) each is accepted. And the
//! lab's own service account with a keytab of its RC4 key alone gets no TGT.
//! (Own test binary: it points KRB5CCNAME at alice's cache.)

use std::io::Write;
use std::process::Command;

use common::lab_env;
use kcd::{Delegator, Kind, Token, User};
use libgssapi::context::{ClientCtx, CtxFlags};
use libgssapi::credential::{Cred, CredUsage};
use libgssapi::name::Name;
use libgssapi::oid::{GSS_MECH_KRB5, GSS_NT_KRB5_PRINCIPAL};

mod common;

const HATCH: &str =
    "which gatehouse refuses; set [domain] allow_rc4 = true only for a domain that cannot issue AES tickets";

fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {}: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn samba_tool(smb: &str, args: &[&str]) -> String {
    run("samba-tool", &[args, &["-s", smb]].concat())
}

/// The test's accounts, deleted on drop.
struct Accounts {
    smb: String,
    users: Vec<String>,
}

impl Drop for Accounts {
    fn drop(&mut self) {
        for u in &self.users {
            let _ = Command::new("samba-tool").args(["user", "delete", u, "-s", &self.smb]).output();
        }
    }
}

impl Accounts {
    /// A service account with an SPN `HTTP/<name>.ad.test` and its keytab.
    fn service(&mut self, name: &str, dir: &std::path::Path) -> String {
        self.users.push(name.to_owned());
        samba_tool(&self.smb, &["user", "create", name, &format!("Rc4-Pass1-{name}")]);
        samba_tool(&self.smb, &["spn", "add", &format!("HTTP/{name}.ad.test"), name]);
        let keytab = dir.join(format!("{name}.keytab")).display().to_string();
        for principal in [name.to_owned(), format!("HTTP/{name}.ad.test")] {
            samba_tool(&self.smb, &["domain", "exportkeytab", &keytab, &format!("--principal={principal}")]);
        }
        keytab
    }

    /// msDS-SupportedEncryptionTypes, as the lab script sets it (samba-tool has no command for it).
    fn set_enctypes(&self, name: &str, value: u32) {
        let script = "import sys, ldb\n\
            from samba.param import LoadParm\n\
            from samba.samdb import SamDB\n\
            from samba.auth import system_session\n\
            lp = LoadParm(); lp.load(sys.argv[1])\n\
            db = SamDB(url=lp.private_path('sam.ldb'), session_info=system_session(), lp=lp)\n\
            dn = db.search(base=db.domain_dn(), expression='(sAMAccountName=%s)' % sys.argv[2], attrs=[])[0].dn\n\
            m = ldb.Message(dn)\n\
            m['e'] = ldb.MessageElement(sys.argv[3], ldb.FLAG_MOD_REPLACE, 'msDS-SupportedEncryptionTypes')\n\
            db.modify(m)\n";
        // Debian's python, which has Samba's modules (a python on PATH may not).
        run("/usr/bin/python3", &["-c", script, &self.smb, name, &value.to_string()]);
    }
}

fn kinit(principal: &str, password: &str) {
    let mut kinit = Command::new("kinit")
        .arg(principal)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    kinit.stdin.take().unwrap().write_all(format!("{password}\n").as_bytes()).unwrap();
    assert!(kinit.wait().unwrap().success(), "kinit {principal} failed");
}

fn client_token(cred: &Cred, target: &str) -> Vec<u8> {
    let name = Name::new(target.as_bytes(), Some(GSS_NT_KRB5_PRINCIPAL)).unwrap();
    let mut ctx = ClientCtx::new(Some(cred.clone()), name, CtxFlags::empty(), Some(GSS_MECH_KRB5));
    ctx.step(None, None).unwrap().unwrap().to_vec()
}

/// `(session key, ticket)` enctypes of the cached ticket for `spn`, as klist
/// names them.
fn cached_enctypes(spn: &str) -> String {
    let out = run("klist", &["-e"]);
    let mut lines = out.lines().skip_while(|l| !l.contains(spn));
    lines.nth(1).and_then(|l| l.split("Etype (skey, tkt): ").nth(1)).unwrap_or_else(|| panic!("{out}")).to_owned()
}

#[test]
fn rc4_refused_unless_allowed() {
    let Some(env) = lab_env() else { return };
    std::env::set_var("KRB5_CONFIG", &env["KRB5_CONFIG"]);
    let dir = tempfile::tempdir().unwrap();
    let ccache = format!("FILE:{}", dir.path().join("alice.cc").display());
    std::env::set_var("KRB5CCNAME", &ccache);
    let id = std::process::id() % 100_000;
    let mut accounts = Accounts { smb: env["SMB_CONF"].clone(), users: Vec::new() };
    let (rc4s, rc4a) = (format!("rc4s{id}"), format!("rc4a{id}"));
    let rc4s_keytab = accounts.service(&rc4s, dir.path());
    let rc4a_keytab = accounts.service(&rc4a, dir.path());
    accounts.set_enctypes(&rc4a, 0x1c);
    // rc4a may delegate to rc4s's SPN (protocol transition too).
    samba_tool(&accounts.smb, &["delegation", "for-any-protocol", &rc4a, "on"]);
    samba_tool(&accounts.smb, &["delegation", "add-service", &rc4a, &format!("HTTP/{rc4s}.ad.test")]);
    let (s_spn, a_spn) = (format!("HTTP/{rc4s}.ad.test"), format!("HTTP/{rc4a}.ad.test"));
    let strict = |principal: &str, keytab: &str| Delegator::new(&format!("{principal}@AD.TEST"), keytab, "AD.TEST");
    let allowing = |principal: &str, keytab: &str| strict(principal, keytab).with_rc4(true);

    kinit("alice@AD.TEST", "Alice-Pass1");
    let alice = Cred::acquire(None, None, CredUsage::Initiate, None).unwrap();

    // Negotiate, an RC4 ticket (with an AES session key): refused by kcd.
    let token = client_token(&alice, &format!("{s_spn}@AD.TEST"));
    assert_eq!(cached_enctypes(&s_spn), "aes256-cts-hmac-sha1-96, DEPRECATED:arcfour-hmac ");
    let e = strict(&rc4s, &rc4s_keytab).accept(&token, &s_spn, None).unwrap_err();
    assert_eq!((e.kind(), e.code_name()), (Kind::EtypeNoSupp, "KRB5_NOPERM_ETYPE"), "{e}");
    assert_eq!(e.to_string(), format!("the client's ticket is encrypted with RC4 (arcfour-hmac, enctype 23), {HATCH}"));
    let a = allowing(&rc4s, &rc4s_keytab).accept(&token, &s_spn, None).unwrap();
    assert_eq!(a.client, "alice@AD.TEST");

    // An AES ticket with an RC4 session key: refused by MIT, by the limit on
    // the acceptor credential, after it decrypted the ticket.
    run("kvno", &["-e", "rc4-hmac", &a_spn]);
    assert_eq!(cached_enctypes(&a_spn), "DEPRECATED:arcfour-hmac, aes256-cts-hmac-sha1-96 ");
    let token = client_token(&alice, &format!("{a_spn}@AD.TEST"));
    let e = strict(&rc4a, &rc4a_keytab).accept(&token, &a_spn, None).unwrap_err();
    assert_eq!((e.kind(), e.code_name()), (Kind::EtypeNoSupp, "KRB5_NOPERM_ETYPE"), "{e}");
    let said = e.to_string();
    assert!(said.contains("Encryption type arcfour-hmac not permitted"), "MIT's words: {said}");
    assert!(said.ends_with("(a session key that is not AES: gatehouse refuses RC4; set [domain] allow_rc4 = true only for a domain that cannot issue AES tickets)"), "{said}");
    assert_eq!(allowing(&rc4a, &rc4a_keytab).accept(&token, &a_spn, None).unwrap().client, "alice@AD.TEST");

    // Basic: the password's ticket for gatehouse's own SPN is RC4 too.
    let alice_user = User::Account("alice@AD.TEST".into());
    let e = strict(&rc4s, &rc4s_keytab).check_password(&alice_user, "Alice-Pass1", &s_spn).unwrap_err();
    assert_eq!(e.to_string(), format!("the client's ticket is encrypted with RC4 (arcfour-hmac, enctype 23), {HATCH}"));
    assert_eq!(
        allowing(&rc4s, &rc4s_keytab).check_password(&alice_user, "Alice-Pass1", &s_spn).unwrap().client,
        "alice@AD.TEST"
    );

    // rc4s's own S4U2Self tickets are RC4: its users' groups cannot be read.
    let bob = User::Account("bob@AD.TEST".into());
    let e = strict(&rc4s, &rc4s_keytab).logon(&bob).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("the S4U2Self ticket for bob@AD.TEST is encrypted with RC4 (arcfour-hmac, enctype 23), {HATCH}")
    );
    assert_eq!(allowing(&rc4s, &rc4s_keytab).logon(&bob).unwrap().info.account, "bob");
    // rc4a's are AES.
    assert_eq!(strict(&rc4a, &rc4a_keytab).logon(&bob).unwrap().info.account, "bob");

    // S4U2Proxy to rc4s's SPN: the backend's ticket is RC4; not sent.
    let e = strict(&rc4a, &rc4a_keytab).token(&bob, &s_spn, Token::Kerberos, None).unwrap_err();
    assert_eq!((e.kind(), e.code_name()), (Kind::EtypeNoSupp, "KRB5_NOPERM_ETYPE"), "{e}");
    assert_eq!(
        e.to_string(),
        format!("the ticket for {s_spn}@AD.TEST is encrypted with RC4 (arcfour-hmac, enctype 23), {HATCH}")
    );
    let token = allowing(&rc4a, &rc4a_keytab).token(&bob, &s_spn, Token::Kerberos, None).unwrap();
    assert_eq!(allowing(&rc4s, &rc4s_keytab).accept(&token, &s_spn, None).unwrap().client, "bob@AD.TEST");

    // rc4r takes RC4 only (0x4). What kcd asks the KDC for is AES: S4U2Proxy
    // to it and its own S4U2Self are refused by the KDC (MIT's limit on the
    // impersonated and the service credential), before any RC4 ticket exists.
    let rc4r = format!("rc4r{id}");
    let rc4r_keytab = accounts.service(&rc4r, dir.path());
    accounts.set_enctypes(&rc4r, 0x4);
    samba_tool(&accounts.smb, &["delegation", "add-service", &rc4a, &format!("HTTP/{rc4r}.ad.test")]);
    let r_spn = format!("HTTP/{rc4r}.ad.test");
    let kdc_says = "(gatehouse asked for AES only: the account has no AES keys, or its msDS-SupportedEncryptionTypes leaves AES out; set [domain] allow_rc4 = true only for a domain that cannot issue AES tickets)";
    let e = strict(&rc4a, &rc4a_keytab).token(&bob, &r_spn, Token::Kerberos, None).unwrap_err();
    assert_eq!((e.kind(), e.code_name()), (Kind::EtypeNoSupp, "KDC_ERR_ETYPE_NOSUPP"), "{e}");
    assert!(
        e.to_string().starts_with("S4U2Proxy (ticket for the backend): ") && e.to_string().ends_with(kdc_says),
        "{e}"
    );
    let token = allowing(&rc4a, &rc4a_keytab).token(&bob, &r_spn, Token::Kerberos, None).unwrap();
    assert_eq!(spnego::kerberos_ap_req(&token).unwrap().ticket_enctype, 23);
    let e = strict(&rc4r, &rc4r_keytab).check_s4u2self(&bob).unwrap_err();
    assert_eq!((e.kind(), e.code_name()), (Kind::EtypeNoSupp, "KDC_ERR_ETYPE_NOSUPP"), "{e}");
    assert!(
        e.to_string().starts_with("S4U2Self (impersonating the user): ") && e.to_string().ends_with(kdc_says),
        "{e}"
    );
    allowing(&rc4r, &rc4r_keytab).check_s4u2self(&bob).unwrap();

    // The lab's service account with its RC4 key alone: no AS exchange.
    let rc4_only = dir.path().join("rc4-only.keytab").display().to_string();
    let listed = run("klist", &["-ke", &env["LAB_PROXY_KEYTAB"]]);
    assert!(
        listed.contains("svc-proxy@AD.TEST (DEPRECATED:arcfour-hmac)"),
        "the lab keytab has svc-proxy's RC4 key: {listed}"
    );
    let script = format!(
        "rkt {}\n{}wkt {rc4_only}\nq\n",
        env["LAB_PROXY_KEYTAB"],
        delete_all_but_svc_proxy_rc4(&env["LAB_PROXY_KEYTAB"])
    );
    let mut ktutil =
        Command::new("ktutil").stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::null()).spawn().unwrap();
    ktutil.stdin.take().unwrap().write_all(script.as_bytes()).unwrap();
    assert!(ktutil.wait().unwrap().success());
    let left = run("klist", &["-ke", &rc4_only]);
    assert_eq!(left.lines().filter(|l| l.contains("@AD.TEST")).count(), 1, "{left}");
    let e = strict("svc-proxy", &rc4_only).check_s4u2self(&bob).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("the keytab holds no AES key for svc-proxy@AD.TEST, only RC4 (arcfour-hmac, enctype 23), {HATCH}; export the account's AES keys")
    );
    let explained = kcd::explain(&e, "svc-proxy@AD.TEST", "", "bob@AD.TEST").unwrap();
    assert!(explained.samba_tool.iter().any(|l| l.contains("exportkeytab")), "{explained:?}");
    // With RC4 allowed, MIT asks; Samba answers with the account's AES salt
    // (it has AES keys), which this keytab has no key for.
    let e = allowing("svc-proxy", &rc4_only).check_s4u2self(&bob).unwrap_err();
    assert_eq!(e.kind(), Kind::Keytab, "{e}");
    assert!(e.to_string().contains("No key table entry found for svc-proxy@AD.TEST"), "{e}");
}

/// ktutil commands deleting every entry of `keytab` but svc-proxy's RC4 key,
/// highest slot first (slots move down as entries go).
fn delete_all_but_svc_proxy_rc4(keytab: &str) -> String {
    let listed = run("klist", &["-ke", keytab]);
    let entries: Vec<&str> = listed.lines().filter(|l| l.contains("@AD.TEST")).collect();
    let keep = |l: &str| l.contains(" svc-proxy@AD.TEST ") && l.contains("arcfour-hmac");
    (1..=entries.len()).rev().filter(|&slot| !keep(entries[slot - 1])).map(|slot| format!("delent {slot}\n")).collect()
}
