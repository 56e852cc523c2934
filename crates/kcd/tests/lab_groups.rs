//! A user's SID and groups from the PAC, against the lab domain, with
//! accounts of the test's own (created with samba-tool, deleted however the
//! test ends): by S4U2Self for users who signed in without a ticket (NTLM,
//! Basic), and from the user's own ticket (Negotiate). Own test binary: it
//! points KRB5CCNAME at its user's cache.

use std::process::Command;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Barrier};
use std::time::Duration;

use common::lab_env;
use kcd::{Delegator, Kind, LogonInfo, User};
use libgssapi::context::{ClientCtx, CtxFlags};
use libgssapi::credential::{Cred, CredUsage};
use libgssapi::name::Name;
use libgssapi::oid::{GSS_MECH_KRB5, GSS_NT_KRB5_PRINCIPAL};

mod common;

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

/// The objectSid of a user or group, as the directory has it.
fn object_sid(smb: &str, kind: &str, name: &str) -> String {
    let out = samba_tool(smb, &[kind, "show", name, "--attributes=objectSid"]);
    out.lines().find_map(|l| l.strip_prefix("objectSid: ")).unwrap_or_else(|| panic!("{out}")).trim().to_owned()
}

/// The test's own accounts: `outer` holds `inner`, which holds the user;
/// `local` (a domain local group) holds the user directly. All deleted on drop.
struct Accounts {
    smb: String,
    user: String,
    password: String,
    groups: Vec<String>,
}

impl Accounts {
    fn create(smb: &str, tag: &str) -> Accounts {
        let id = format!("{}{tag}", std::process::id() % 100_000);
        let mut a = Accounts {
            smb: smb.to_owned(),
            user: format!("g13u{id}"),
            password: format!("G13-Pass1-{id}"),
            groups: Vec::new(),
        };
        // Registered before creating, so that a half-made set is cleaned up too.
        a.groups = ["in", "out", "loc"].iter().map(|g| format!("g13{g}{id}")).collect();
        samba_tool(smb, &["group", "add", &a.groups[0]]);
        samba_tool(smb, &["group", "add", &a.groups[1]]);
        samba_tool(smb, &["group", "add", &a.groups[2], "--group-scope=Domain"]);
        samba_tool(smb, &["user", "create", &a.user, &a.password]);
        samba_tool(smb, &["group", "addmembers", &a.groups[0], &a.user]);
        samba_tool(smb, &["group", "addmembers", &a.groups[1], &a.groups[0]]);
        samba_tool(smb, &["group", "addmembers", &a.groups[2], &a.user]);
        a
    }

    fn principal(&self) -> String {
        format!("{}@AD.TEST", self.user)
    }
}

impl Drop for Accounts {
    fn drop(&mut self) {
        let _ = Command::new("samba-tool").args(["user", "delete", &self.user, "-s", &self.smb]).output();
        for g in &self.groups {
            let _ = Command::new("samba-tool").args(["group", "delete", g, "-s", &self.smb]).output();
        }
    }
}

fn sids(info: &LogonInfo) -> Vec<String> {
    info.group_sids().iter().map(|g| g.sid.to_string()).collect()
}

fn client_token(cred: &Cred, target: &str) -> Vec<u8> {
    let name = Name::new(target.as_bytes(), Some(GSS_NT_KRB5_PRINCIPAL)).unwrap();
    let mut ctx = ClientCtx::new(Some(cred.clone()), name, CtxFlags::empty(), Some(GSS_MECH_KRB5));
    ctx.step(None, None).unwrap().unwrap().to_vec()
}

#[test]
fn groups_from_s4u2self_and_from_the_users_own_ticket() {
    let Some(env) = lab_env() else { return };
    std::env::set_var("KRB5_CONFIG", &env["KRB5_CONFIG"]);
    let smb = env["SMB_CONF"].clone();
    let accounts = Accounts::create(&smb, "a");
    let user_sid = object_sid(&smb, "user", &accounts.user);
    let [inner, outer, local] = [0, 1, 2].map(|i| object_sid(&smb, "group", &accounts.groups[i]));
    let domain_sid = user_sid.rsplit_once('-').unwrap().0.to_owned();
    let domain_users = format!("{domain_sid}-513");

    let d = Arc::new(Delegator::new("svc-proxy@AD.TEST", &env["LAB_PROXY_KEYTAB"], "AD.TEST"));
    let user = User::Account(accounts.principal());
    let info = d.logon_info(&user).unwrap();
    let by_s4u = sids(&info);
    eprintln!("S4U2Self PAC of {}: {info:#?}\n{by_s4u:#?}", accounts.user);
    assert_eq!(info.account, accounts.user);
    assert_eq!(info.logon_domain, "ADTEST");
    assert_eq!(info.user_sid().to_string(), user_sid);
    assert_eq!(info.domain_sid.to_string(), domain_sid);
    // Global groups: the direct one and, transitively, the one that holds it.
    for (what, sid) in [("Domain Users", &domain_users), ("the inner group", &inner), ("the outer group", &outer)] {
        assert!(by_s4u.contains(sid), "{what} ({sid}) missing from {by_s4u:?}");
    }
    // Samba puts the account domain's domain local groups in GroupIds too
    // (Windows adds them as resource groups of the same domain).
    assert!(by_s4u.contains(&local), "the domain local group ({local}) missing from {by_s4u:?}");
    // Only the KDC's own SIDs besides: the service-asserted identity.
    assert_eq!(info.extra_sids.iter().map(|g| g.sid.to_string()).collect::<Vec<_>>(), ["S-1-18-2"]);
    assert!(info.resource_groups.is_empty());

    // Cached: a second call asks no KDC.
    let s4u_before = d.stats().s4u2self.load(Relaxed);
    assert_eq!(d.logon_info(&user).unwrap(), info);
    assert_eq!(d.stats().logon_lookups.load(Relaxed), 1);
    assert_eq!(d.stats().s4u2self.load(Relaxed), s4u_before);

    // The user's own ticket (Negotiate) carries the same SIDs, read through
    // gss_get_name_attribute.
    let dir = tempfile::tempdir().unwrap();
    let ccache = format!("FILE:{}", dir.path().join("user.cc").display());
    common::kinit(&accounts.principal(), &accounts.password, &ccache);
    std::env::set_var("KRB5CCNAME", &ccache);
    let own = Cred::acquire(None, None, CredUsage::Initiate, None).unwrap();
    let accepted = d.accept(&client_token(&own, "HTTP/proxy.ad.test@AD.TEST"), "HTTP/proxy.ad.test", None).unwrap();
    let logon = accepted.logon.expect("the client's ticket's PAC has logon information");
    assert_eq!(logon.user_sid().to_string(), user_sid);
    let mut from_ticket = sids(&logon);
    let mut from_s4u = by_s4u.clone();
    from_ticket.sort();
    from_s4u.sort();
    eprintln!("own ticket: {from_ticket:?}");
    // The ticket is the user's own logon (asserted identity S-1-18-1), the
    // S4U2Self one the service's (S-1-18-2): otherwise the same.
    let without_assertion =
        |v: &[String]| -> Vec<String> { v.iter().filter(|s| !s.starts_with("S-1-18-")).cloned().collect() };
    assert_eq!(without_assertion(&from_ticket), without_assertion(&from_s4u));
    drop(own);
    std::env::remove_var("KRB5CCNAME");

    // Basic: the password check's ticket is the user's own, with its PAC.
    let basic = d.check_password(&user, &accounts.password, "HTTP/proxy.ad.test").unwrap();
    let logon = basic.logon.expect("the password check's ticket has logon information");
    assert_eq!(logon.user_sid().to_string(), user_sid);
    assert!(sids(&logon).contains(&outer));

    // Removed from the inner group: seen once the refresh time has passed
    // (zero here), with both the inner and the outer group gone.
    let fresh =
        Delegator::new("svc-proxy@AD.TEST", &env["LAB_PROXY_KEYTAB"], "AD.TEST").with_logon_refresh(Duration::ZERO);
    assert!(sids(&fresh.logon_info(&user).unwrap()).contains(&outer));
    samba_tool(&smb, &["group", "removemembers", &accounts.groups[0], &accounts.user]);
    let after = sids(&fresh.logon_info(&user).unwrap());
    assert!(!after.contains(&inner) && !after.contains(&outer), "{after:?}");
    assert!(after.contains(&domain_users));
    assert_eq!(fresh.stats().logon_lookups.load(Relaxed), 2);
    // ... but not by the delegator whose 10 minutes have not passed.
    assert!(sids(&d.logon_info(&user).unwrap()).contains(&outer));

    // Disabled: S4U2Self is refused (Samba says KDC_ERR_POLICY, which is
    // also what a service without protocol transition gets: kind BadOption),
    // and the credential cached for the user by the last lookup is dropped,
    // so that delegation for them asks the KDC too, and fails.
    assert!(fresh.check_s4u2self(&user).is_ok());
    let s4u_before = fresh.stats().s4u2self.load(Relaxed);
    samba_tool(&smb, &["user", "disable", &accounts.user]);
    let e = fresh.logon_info(&user).unwrap_err();
    eprintln!("disabled: {} {e}", e.code_name());
    assert_eq!((e.kind(), e.code_name()), (Kind::BadOption, "KDC_ERR_POLICY"), "{e}");
    let e = fresh.check_s4u2self(&user).unwrap_err();
    assert_eq!(e.kind(), Kind::BadOption, "{e}");
    assert_eq!(fresh.stats().s4u2self.load(Relaxed), s4u_before + 2, "the cached credential was used");
}

/// One S4U2Self for a user however many callers ask at once; a user the
/// domain does not know is an error of its own kind, and leaves no lock.
#[test]
fn one_request_in_flight_per_user() {
    let Some(env) = lab_env() else { return };
    std::env::set_var("KRB5_CONFIG", &env["KRB5_CONFIG"]);
    let smb = env["SMB_CONF"].clone();
    let accounts = Accounts::create(&smb, "b");
    let d = Arc::new(Delegator::new("svc-proxy@AD.TEST", &env["LAB_PROXY_KEYTAB"], "AD.TEST"));
    let user = User::Account(accounts.principal());
    let start = Arc::new(Barrier::new(8));
    let callers: Vec<_> = (0..8)
        .map(|_| {
            let (d, user, start) = (d.clone(), user.clone(), start.clone());
            std::thread::spawn(move || {
                start.wait();
                d.logon_info(&user).map(|i| i.user_sid())
            })
        })
        .collect();
    let answers: Vec<_> = callers.into_iter().map(|c| c.join().unwrap().unwrap()).collect();
    assert!(answers.windows(2).all(|w| w[0] == w[1]));
    assert_eq!(d.stats().logon_lookups.load(Relaxed), 1);
    assert_eq!(d.users_in_flight(), 0);

    let e = d.logon_info(&User::Account("g13-nobody@AD.TEST".into())).unwrap_err();
    eprintln!("unknown: {} {e}", e.code_name());
    assert_eq!(e.kind(), Kind::ClientUnknown, "{e}");
}

/// alice, read only: her SID and groups as the directory lists them
/// (`samba-tool user show alice`, `samba-tool user getgroups alice`).
#[test]
fn alice_as_the_directory_has_her() {
    let Some(env) = lab_env() else { return };
    std::env::set_var("KRB5_CONFIG", &env["KRB5_CONFIG"]);
    let smb = env["SMB_CONF"].clone();
    let d = Delegator::new("svc-proxy@AD.TEST", &env["LAB_PROXY_KEYTAB"], "AD.TEST");
    let info = d.logon_info(&User::Account("alice@AD.TEST".into())).unwrap();
    assert_eq!(info.user_sid().to_string(), object_sid(&smb, "user", "alice"));
    let groups = sids(&info);
    let listed = samba_tool(&smb, &["user", "getgroups", "alice"]);
    let names: Vec<&str> = listed.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    assert!(names.contains(&"Domain Users"), "{listed}");
    for name in names {
        let sid = object_sid(&smb, "group", name);
        assert!(groups.contains(&sid), "alice's group {name} ({sid}) missing from {groups:?}");
    }
}
