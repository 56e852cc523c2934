//! Names and SIDs from the lab DC's directory (`kcd::Directory`), bound as
//! svc-proxy with its keytab and integrity protection, with accounts of the
//! test's own (created with samba-tool, deleted however the test ends); and
//! its failures, against the lab and against local listeners that play a
//! broken or hostile directory.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::lab_env;
use kcd::{Delegator, Directory, EntryKind, Kind, Sid, User};

mod common;

const DC_HOST: &str = "dc1.ad.test";

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

/// An attribute of an object as samba-tool shows it (`kind` user, group, computer).
fn shown(smb: &str, kind: &str, name: &str, attribute: &str) -> Option<String> {
    let out = samba_tool(smb, &[kind, "show", name, &format!("--attributes={attribute}")]);
    let prefix = format!("{attribute}: ");
    out.lines().find_map(|l| l.strip_prefix(&prefix)).map(|v| v.trim().to_owned())
}

/// The test's own user, group and computer; deleted on drop.
struct Accounts {
    smb: String,
    user: String,
    group: String,
    computer: String,
}

impl Accounts {
    fn create(smb: &str, tag: &str) -> Accounts {
        let id = format!("{}{tag}", std::process::id() % 100_000);
        // Registered before creating, so that a half-made set is cleaned up too.
        let a = Accounts {
            smb: smb.to_owned(),
            user: format!("ldaptu{id}"),
            group: format!("ldaptg{id}"),
            computer: format!("ldaptc{id}"),
        };
        samba_tool(smb, &["group", "add", &a.group]);
        samba_tool(smb, &["user", "create", &a.user, &format!("Ldapt-Pass1-{id}")]);
        samba_tool(smb, &["group", "addmembers", &a.group, &a.user]);
        samba_tool(smb, &["computer", "create", &a.computer]);
        a
    }
}

impl Drop for Accounts {
    fn drop(&mut self) {
        for (kind, name) in [("user", &self.user), ("group", &self.group), ("computer", &self.computer)] {
            let _ = Command::new("samba-tool").args([kind, "delete", name, "-s", &self.smb]).output();
        }
    }
}

struct Lab {
    smb: String,
    dc: SocketAddr,
    delegator: Arc<Delegator>,
}

fn lab() -> Option<Lab> {
    let env = lab_env()?;
    std::env::set_var("KRB5_CONFIG", &env["KRB5_CONFIG"]);
    // No default cache to fall back to: the bind must be svc-proxy's own.
    std::env::set_var("KRB5CCNAME", "MEMORY:kcd-lab-directory-empty-default");
    let dc = format!("{}:389", env["LAB_DC_IP"]).parse().unwrap();
    let delegator = Arc::new(Delegator::new(
        &format!("svc-proxy@{}", env["LAB_REALM"]),
        &env["LAB_PROXY_KEYTAB"],
        &env["LAB_REALM"],
    ));
    Some(Lab { smb: env["SMB_CONF"].clone(), dc, delegator })
}

impl Lab {
    fn directory(&self, host: &str, address: SocketAddr, timeout: Duration) -> Directory {
        Directory::new(self.delegator.clone(), host, 389, Some(address), timeout)
    }
}

#[test]
fn names_and_sids_as_the_lab_directory_has_them() {
    let Some(lab) = lab() else { return };
    let accounts = Accounts::create(&lab.smb, "a");
    let dir = lab.directory(DC_HOST, lab.dc, Duration::from_secs(10));
    let user_sid = shown(&lab.smb, "user", &accounts.user, "objectSid").unwrap();
    let group_sid = shown(&lab.smb, "group", &accounts.group, "objectSid").unwrap();
    let computer_sid = shown(&lab.smb, "computer", &accounts.computer, "objectSid").unwrap();
    let user_upn = shown(&lab.smb, "user", &accounts.user, "userPrincipalName").expect("samba-tool gives users a UPN");
    let domain_sid = user_sid.rsplit_once('-').unwrap().0.to_owned();
    let computer_account = format!("{}$", accounts.computer);
    let shouted = accounts.user.to_uppercase();

    let names = [
        accounts.user.as_str(),
        accounts.group.as_str(),
        computer_account.as_str(),
        user_upn.as_str(),
        "Domain Users",
        "ldapt-nobody",
        "nobody@ad.test",
        shouted.as_str(),
    ];
    let found = dir.lookup(&names).unwrap();
    eprintln!("{found:#?}");
    assert_eq!(found.len(), names.len());
    let [Some(user), Some(group), Some(computer), Some(by_upn), Some(users), None, None, Some(by_shout)] =
        found.as_slice()
    else {
        panic!("{found:#?}")
    };
    assert_eq!((user.sid.to_string(), user.account.as_str()), (user_sid.clone(), accounts.user.as_str()));
    assert_eq!((user.kind.clone(), user.disabled), (EntryKind::User, false));
    assert_eq!(user.upn.as_deref(), Some(user_upn.as_str()));
    assert_eq!(user.dn, format!("CN={},CN=Users,DC=ad,DC=test", accounts.user));
    assert_eq!(by_upn, user);
    // AD matches account names case-insensitively and answers with its own spelling.
    assert_eq!(by_shout, user);
    assert_eq!(
        (group.sid.to_string(), group.kind.clone(), group.upn.clone()),
        (group_sid.clone(), EntryKind::Group, None)
    );
    assert!(!group.disabled);
    assert_eq!((computer.sid.to_string(), computer.kind.clone()), (computer_sid.clone(), EntryKind::Computer));
    assert_eq!(computer.account, computer_account);
    // samba-tool creates computer accounts disabled (until a join sets
    // their password): the flag as samba-tool shows it.
    let computer_uac: u32 =
        shown(&lab.smb, "computer", &accounts.computer, "userAccountControl").unwrap().parse().unwrap();
    assert_eq!(computer.disabled, computer_uac & 2 != 0, "userAccountControl {computer_uac}");
    assert_eq!((users.sid.to_string(), users.kind.clone()), (format!("{domain_sid}-513"), EntryKind::Group));

    // Back from SIDs, in the order asked, with None for a SID nobody has.
    let unknown = Sid::parse(&format!("{domain_sid}-999999")).unwrap();
    let sids = [
        Sid::parse(&group_sid).unwrap(),
        unknown,
        Sid::parse(&user_sid).unwrap(),
        Sid::parse(&computer_sid).unwrap(),
        // Everyone: a well-known SID with no directory object.
        Sid::parse("S-1-1-0").unwrap(),
    ];
    let back = dir.by_sid(&sids).unwrap();
    assert_eq!(back, [Some(group.clone()), None, Some(user.clone()), Some(computer.clone()), None]);

    // The SID in the user's PAC is the directory's.
    let info = lab.delegator.logon_info(&User::Account(format!("{}@AD.TEST", accounts.user))).unwrap();
    let from_pac = dir.by_sid(&[info.user_sid()]).unwrap();
    assert_eq!(from_pac, [Some(user.clone())]);
    // And the PAC's groups have names: the test's group among them.
    let groups: Vec<Sid> = info.group_sids().into_iter().map(|g| g.sid).collect();
    let named = dir.by_sid(&groups).unwrap();
    let names: Vec<&str> = named.iter().flatten().map(|e| e.account.as_str()).collect();
    eprintln!("{}'s groups: {names:?}", accounts.user);
    assert!(names.contains(&accounts.group.as_str()) && names.contains(&"Domain Users"), "{names:?}");

    // Disabled in AD: seen at the next lookup.
    samba_tool(&lab.smb, &["user", "disable", &accounts.user]);
    let after = dir.lookup(&[&accounts.user]).unwrap();
    let disabled = after[0].as_ref().unwrap();
    assert!(disabled.disabled, "{disabled:?}");
    assert_eq!(disabled.sid, user.sid);
}

/// A wrong port, an SPN nobody has: errors that name the cause.
#[test]
fn the_lab_refusing_names_the_cause() {
    let Some(lab) = lab() else { return };
    let wrong_port: SocketAddr = SocketAddr::new(lab.dc.ip(), 1);
    let e = lab.directory(DC_HOST, wrong_port, Duration::from_secs(5)).lookup(&["alice"]).unwrap_err();
    eprintln!("wrong port: {e}");
    assert_eq!(e.kind(), Kind::Directory, "{e}");
    assert!(e.to_string().contains(&wrong_port.to_string()), "{e}");
    assert!(e.to_string().to_lowercase().contains("refused"), "{e}");

    let e = lab.directory("ldapt-nosuch.ad.test", lab.dc, Duration::from_secs(5)).lookup(&["alice"]).unwrap_err();
    eprintln!("no such SPN: {} {e}", e.code_name());
    assert_eq!((e.kind(), e.code_name()), (Kind::ServerUnknown, "KDC_ERR_S_PRINCIPAL_UNKNOWN"), "{e}");
    assert!(e.to_string().contains("ldap/ldapt-nosuch.ad.test@AD.TEST"), "{e}");

    // The control: the right address and host work.
    let ok = lab.directory(DC_HOST, lab.dc, Duration::from_secs(5)).lookup(&["alice"]).unwrap();
    assert_eq!(ok[0].as_ref().map(|e| e.account.as_str()), Some("alice"));
}

/// A local listener that plays the directory: `answer` gets each request's
/// bytes and returns what to send back (None: say nothing, keep the
/// connection open).
fn fake_directory(answer: fn(usize, &[u8]) -> Option<Vec<u8>>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let Ok((mut s, _)) = listener.accept() else { return };
        let mut n = 0;
        let mut buf = [0u8; 64 * 1024];
        loop {
            let Ok(len) = s.read(&mut buf) else { return };
            if len == 0 {
                return;
            }
            n += 1;
            match answer(n, &buf[..len]) {
                Some(reply) => {
                    let _ = s.write_all(&reply);
                }
                None => std::thread::sleep(Duration::from_secs(30)),
            }
        }
    });
    addr
}

/// A BindResponse (id 1) with `code` and `diagnostic`, bytes by hand.
fn bind_response(code: u8, diagnostic: &[u8]) -> Vec<u8> {
    let mut result = vec![0x0a, 0x01, code, 0x04, 0x00, 0x04, diagnostic.len() as u8];
    result.extend_from_slice(diagnostic);
    let mut op = vec![0x61, result.len() as u8];
    op.extend(result);
    let mut m = vec![0x30, (op.len() + 3) as u8, 0x02, 0x01, 0x01];
    m.extend(op);
    m
}

#[test]
fn broken_and_hostile_directories_are_refused() {
    let Some(lab) = lab() else { return };
    let timeout = Duration::from_millis(1500);

    // Says nothing: the timeout, not a hang.
    let silent = fake_directory(|_, _| None);
    let started = Instant::now();
    let e = lab.directory(DC_HOST, silent, timeout).lookup(&["alice"]).unwrap_err();
    eprintln!("silent: {e}");
    assert_eq!(e.kind(), Kind::Directory);
    assert!(e.to_string().contains("no answer within 1500 ms") && e.to_string().contains(&silent.to_string()), "{e}");
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());

    // Not LDAP at all.
    let http = fake_directory(|_, _| Some(b"HTTP/1.1 400 Bad Request\r\n\r\n".to_vec()));
    let e = lab.directory(DC_HOST, http, timeout).lookup(&["alice"]).unwrap_err();
    eprintln!("not LDAP: {e}");
    assert_eq!(e.kind(), Kind::Directory);
    assert!(e.to_string().contains("malformed LDAP"), "{e}");

    // Refuses the bind: its result code and words are in the error.
    let refusing = fake_directory(|_, _| Some(bind_response(49, b"80090308: LdapErr: DSID-0C09, data 52e\0")));
    let e = lab.directory(DC_HOST, refusing, timeout).lookup(&["alice"]).unwrap_err();
    eprintln!("refused: {e}");
    assert_eq!(e.kind(), Kind::Directory);
    let text = e.to_string();
    assert!(text.contains("result 49 (invalidCredentials)") && text.contains("data 52e"), "{e}");
    assert!(!text.contains('\0'), "{e:?}");

    // Says "success" at once, before any security layer (or even mutual
    // authentication): an unprotected connection is never used.
    let downgrade = fake_directory(|_, _| Some(bind_response(0, b"")));
    let e = lab.directory(DC_HOST, downgrade, timeout).lookup(&["alice"]).unwrap_err();
    eprintln!("downgrade: {e}");
    assert!(e.to_string().contains("before a security layer was negotiated"), "{e}");

    // Answers "in progress" with a token that is no AP-REP: MIT refuses it.
    let forged = fake_directory(|_, _| {
        let mut m = bind_response(14, b"");
        // serverSaslCreds [7] with four bytes of nothing.
        m.extend([0x87, 0x04, 0x6f, 0x02, 0x30, 0x00]);
        m[1] += 6;
        m[6] += 6;
        Some(m)
    });
    let e = lab.directory(DC_HOST, forged, timeout).lookup(&["alice"]).unwrap_err();
    eprintln!("forged AP-REP: {} {e}", e.code_name());
    assert!(e.to_string().contains("completing the Kerberos bind"), "{e}");
    assert_ne!(e.major(), 0, "a GSS failure: {e}");
}

#[derive(Clone, Copy, Debug)]
enum Meddle {
    /// Everything passed on as it came (the control).
    Nothing,
    /// One byte of the first protected frame changed.
    Flip,
    /// The first protected answer sent twice.
    Replay,
}

/// A man in the middle between gatehouse and the DC: the bind passes
/// untouched (three BindResponses), then it meddles with the first
/// protected bytes from the DC.
fn meddler(dc: SocketAddr, how: Meddle) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let Ok((client, _)) = listener.accept() else { return };
        let server = TcpStream::connect(dc).unwrap();
        let (mut c_in, mut s_out) = (client.try_clone().unwrap(), server.try_clone().unwrap());
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut c_in, &mut s_out);
            let _ = s_out.shutdown(Shutdown::Write);
        });
        let (mut s_in, mut c_out) = (server, client);
        let mut binds = ldap::MessageReader::new(1 << 20);
        let mut seen = 0;
        let mut done = false;
        let mut buf = [0u8; 64 * 1024];
        loop {
            let Ok(n) = s_in.read(&mut buf) else { return };
            if n == 0 {
                let _ = c_out.shutdown(Shutdown::Write);
                return;
            }
            let mut chunk = buf[..n].to_vec();
            if seen < 3 {
                binds.feed(&chunk);
                while let Ok(Some(_)) = binds.next_message() {
                    seen += 1;
                }
            } else if !done {
                done = true;
                match how {
                    Meddle::Nothing => {}
                    // Past the length and the token header: signed bytes.
                    Meddle::Flip => chunk[24.min(n - 1)] ^= 0x01,
                    Meddle::Replay => chunk.extend_from_within(..),
                }
            }
            if c_out.write_all(&chunk).is_err() {
                return;
            }
        }
    });
    addr
}

/// The integrity layer is checked, not just spoken: a changed byte or a
/// replayed answer from the DC ends the lookup with a GSS error.
#[test]
fn answers_changed_or_replayed_on_the_way_are_refused() {
    let Some(lab) = lab() else { return };
    // The meddler itself, meddling with nothing, passes everything.
    let through = meddler(lab.dc, Meddle::Nothing);
    let clean = lab.directory(DC_HOST, through, Duration::from_secs(5)).lookup(&["alice", "bob"]).unwrap();
    assert!(clean.iter().all(Option::is_some), "{clean:?}");
    for (how, kind) in [(Meddle::Flip, Kind::BadToken), (Meddle::Replay, Kind::Replay)] {
        let e =
            lab.directory(DC_HOST, meddler(lab.dc, how), Duration::from_secs(5)).lookup(&["alice", "bob"]).unwrap_err();
        eprintln!("{how:?}: {} {e}", e.code_name());
        assert!(e.to_string().contains("checking the signature of its answer"), "{how:?}: {e}");
        assert_eq!(e.kind(), kind, "{how:?}: {e}");
    }
}
