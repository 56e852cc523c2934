//! Where passwords are checked: a local file of NT hashes, or the domain
//! controller through Samba winbind. NTLM goes to winbind as
//! `ntlm_auth --helper-protocol=ntlm-server-1` (a NETLOGON pass-through that
//! returns the user session key the MIC needs); a Basic password as
//! `--helper-protocol=squid-2.5-basic` (a plaintext logon). Each protocol has
//! its own small pool of helper processes.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use subtle::ConstantTimeEq;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::sync::{mpsc, Mutex, Semaphore};

use ntlm::{AuthenticateReceived, SessionBaseKey};

use crate::config::{Domain, UserFile};

/// What the password check said about the name it was given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Evidence {
    /// The account exists: the accounts source knew it (wrong password,
    /// locked, disabled), or the password was right and a later check failed.
    Account,
    /// Nothing says it exists: "no such user", or an answer that does not tell.
    Unproven,
}

/// Where passwords are checked, ready to use.
pub enum Accounts {
    File(Arc<UserFile>),
    Winbind(Arc<Winbind>),
}

/// Why a password check did not succeed.
#[derive(Debug)]
pub enum CheckError {
    /// Wrong password, unknown user, disabled account: the user's fault (401);
    /// with what the answer says about whether the account exists.
    Rejected(String, Evidence),
    /// The password could not be checked (DC or winbind down): not the user's fault (503).
    Unavailable(String),
}

/// Whose account an NTLM logon names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NtlmAccount {
    /// An account of a domain (upper case; empty when none is known).
    Account { domain: String, user: String },
    /// A `user@suffix` sign-in name with no domain, which only the domain
    /// controller can resolve.
    Upn(String),
}

impl NtlmAccount {
    /// The user's name for the backend and the logs: `DOMAIN\user`, or the UPN.
    pub fn name(&self) -> String {
        match self {
            NtlmAccount::Account { domain, user } => format!("{domain}\\{user}"),
            NtlmAccount::Upn(upn) => upn.clone(),
        }
    }
}

/// The account the file is asked for, Samba's way (`map_user_info`): the
/// domain the client sent, our realm's DNS name counting as our NetBIOS name
/// (macOS sends the DNS name); with no domain, the realm of a `user@REALM`
/// sign-in name (Windows SSPI and gss-ntlmssp send UPNs so), or else our
/// domain. The file holds NetBIOS domains, so `user@` our realm is the line of
/// our domain; any other suffix stays a UPN, found only by a line naming it.
/// The proof is still checked with the names as sent (the client's NTOWFv2
/// covers them).
pub fn file_account(domain: &str, user: &str, ours: Option<&Domain>) -> NtlmAccount {
    let ours_named =
        |d: &str| ours.is_some_and(|o| d.eq_ignore_ascii_case(&o.netbios_name) || d.eq_ignore_ascii_case(&o.realm));
    let netbios = || ours.map_or(String::new(), |o| o.netbios_name.to_uppercase());
    if !domain.is_empty() {
        let domain = if ours_named(domain) { netbios() } else { domain.to_uppercase() };
        return NtlmAccount::Account { domain, user: user.to_owned() };
    }
    match user.rsplit_once('@') {
        Some((account, realm)) if !account.is_empty() && ours.is_some_and(|o| realm.eq_ignore_ascii_case(&o.realm)) => {
            NtlmAccount::Account { domain: netbios(), user: account.to_owned() }
        }
        Some(_) => NtlmAccount::Upn(user.to_owned()),
        None => NtlmAccount::Account { domain: netbios(), user: user.to_owned() },
    }
}

/// The account winbind vouched for. winbind is asked with the names as the
/// client sent them ([`Winbind::check`]), and the domain controller resolves a
/// UPN itself, to whichever account holds it: that need not be the account
/// named like its user part (an explicit UPN `bob@ad.test` may belong to
/// `robert`). So a sign-in name with `@` and no domain stays the UPN, which
/// delegation hands the KDC as an enterprise name and the KDC resolves the
/// same way; anything else is named as for the file.
pub fn winbind_account(domain: &str, user: &str, ours: Option<&Domain>) -> NtlmAccount {
    if domain.is_empty() && user.contains('@') {
        return NtlmAccount::Upn(user.to_owned());
    }
    file_account(domain, user, ours)
}

/// An NTLM response checked against the file's NT hash, for the account
/// [`file_account`] names (or, failing that, a line with the names as sent).
pub fn check_file(
    users: &UserFile,
    received: &AuthenticateReceived,
    ours: Option<&Domain>,
) -> Result<SessionBaseKey, CheckError> {
    let hash = match file_account(&received.domain, &received.user, ours) {
        // Then a line naming the account as sent (`AD.TEST:bob`, `:bob@ad.test`),
        // which the mapping would otherwise have made unreachable.
        NtlmAccount::Account { domain, user } => {
            users.hash(&domain, &user).or_else(|| users.hash(&received.domain, &received.user))
        }
        NtlmAccount::Upn(upn) => users.hash("", &upn),
    };
    match hash {
        Some(hash) => {
            received.verify_with_nt_hash(hash).map_err(|e| CheckError::Rejected(e.cause().into(), Evidence::Account))
        }
        None => {
            // Same work for an unknown user as for a wrong password.
            let _ = received.verify_with_nt_hash(&[0u8; 16]);
            Err(CheckError::Rejected("unknown user".into(), Evidence::Unproven))
        }
    }
}

/// A Basic password checked against the file: its NT hash (MD4 of UTF-16LE)
/// compared in constant time with the stored one. An unknown user costs the
/// same hashing and comparison, against a hash no password has.
pub fn check_file_password(users: &UserFile, domain: &str, user: &str, password: &str) -> Result<(), CheckError> {
    let offered = ntlm::crypto::nt_hash(password);
    match users.hash(domain, user) {
        Some(stored) if bool::from(offered.ct_eq(stored)) => Ok(()),
        Some(_) => Err(CheckError::Rejected("wrong password".into(), Evidence::Account)),
        None => {
            let _ = offered.ct_eq(&[0u8; 16]);
            Err(CheckError::Rejected("unknown user".into(), Evidence::Unproven))
        }
    }
}

/// The domain controller through winbind: one helper pool per protocol.
pub struct Winbind {
    ntlm: Pool,
    basic: Pool,
}

impl Winbind {
    pub fn new(program: PathBuf, smb_conf: Option<PathBuf>, helpers: usize, timeout: Duration) -> Arc<Winbind> {
        let pool = |protocol| Pool {
            program: program.clone(),
            smb_conf: smb_conf.clone(),
            protocol,
            timeout,
            slots: Semaphore::new(helpers),
            max: helpers,
            idle: Mutex::new(Vec::new()),
        };
        Arc::new(Winbind { ntlm: pool(Protocol::Ntlm), basic: pool(Protocol::Basic) })
    }

    /// Helpers checking a password now, and how many may (NTLM and Basic
    /// have a pool each; both counted).
    pub fn busy(&self) -> (usize, usize) {
        let used = |p: &Pool| p.max - p.slots.available_permits().min(p.max);
        (used(&self.ntlm) + used(&self.basic), self.ntlm.max + self.basic.max)
    }

    /// Asks the domain controller to check the response. The user and domain go
    /// base64-encoded (`Key:: value`), so no client-chosen byte can inject a line.
    /// They go as the client sent them, a UPN with an empty domain too: the
    /// client's proof is keyed by exactly those names, and the domain
    /// controller resolves the UPN (see [`winbind_account`]).
    pub async fn check(&self, received: &AuthenticateReceived) -> Result<SessionBaseKey, CheckError> {
        self.check_response(&received.user, &received.domain, &received.server_challenge(), received.nt_response())
            .await
    }

    /// The same check for an NT response computed elsewhere (`gatehouse
    /// doctor`'s test logon makes its own from a password).
    pub async fn check_response(
        &self,
        user: &str,
        domain: &str,
        challenge: &[u8; 8],
        nt_response: &[u8],
    ) -> Result<SessionBaseKey, CheckError> {
        let (lines, _) = self.ntlm.ask(&ntlm_request(user, domain, challenge, nt_response)).await?;
        parse_reply(&lines)
    }

    /// Asks the domain controller to check a Basic password (`name` as the
    /// user typed it or as gatehouse qualified it: `DOMAIN\user`, a UPN).
    /// Both fields go percent-encoded, as squid's protocol has them, so that
    /// no space or newline in them can split or inject a request.
    pub async fn check_password(&self, name: &str, password: &str) -> Result<(), CheckError> {
        let request = format!("{} {}\n", percent_encode(name), percent_encode(password));
        let (lines, status) = self.basic.ask(&request).await?;
        parse_basic_reply(&lines, status.as_deref())
    }
}

#[derive(Clone, Copy)]
enum Protocol {
    /// `ntlm-server-1`: `Key: value` lines ended by `.`.
    Ntlm,
    /// `squid-2.5-basic`: one line, `OK` or `ERR`. The reason for an `ERR` is
    /// only in the debug log (`-d3`, on standard error), read beside it.
    Basic,
}

/// A small pool of `ntlm_auth` helper processes speaking one protocol.
struct Pool {
    program: PathBuf,
    smb_conf: Option<PathBuf>,
    protocol: Protocol,
    timeout: Duration,
    slots: Semaphore,
    /// The slots there are (`helpers`).
    max: usize,
    idle: Mutex<Vec<Helper>>,
}

struct Helper {
    _child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    /// Basic: the NT status lines of the debug log, in order.
    status: Option<mpsc::UnboundedReceiver<String>>,
}

/// How long to wait, after an `ERR`, for its NT status in the debug log
/// (written before the `ERR`, so normally already there).
const STATUS_WAIT: Duration = Duration::from_millis(500);

impl Pool {
    fn spawn(&self) -> Result<Helper, CheckError> {
        let mut cmd = Command::new(&self.program);
        match self.protocol {
            Protocol::Ntlm => cmd.arg("--helper-protocol=ntlm-server-1"),
            Protocol::Basic => cmd.args(["--helper-protocol=squid-2.5-basic", "-d3"]),
        };
        if let Some(conf) = &self.smb_conf {
            cmd.arg(format!("--configfile={}", conf.display()));
        }
        let stderr = match self.protocol {
            Protocol::Ntlm => Stdio::null(),
            Protocol::Basic => Stdio::piped(),
        };
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| CheckError::Unavailable(format!("cannot start {}: {e}", self.program.display())))?;
        let stdin = child.stdin.take().ok_or_else(|| CheckError::Unavailable("ntlm_auth has no stdin".into()))?;
        let stdout = child.stdout.take().ok_or_else(|| CheckError::Unavailable("ntlm_auth has no stdout".into()))?;
        // The debug log is read all the time, not only after an ERR: a helper
        // whose standard error fills up would stop answering.
        let status = child.stderr.take().map(|stderr| {
            let (tx, rx) = mpsc::unbounded_channel();
            tokio::spawn(async move {
                let mut lines = BufReader::new(stderr).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if is_status_line(&line) && tx.send(line).is_err() {
                        break;
                    }
                }
            });
            rx
        });
        Ok(Helper { _child: child, stdin, stdout: BufReader::new(stdout), status })
    }

    /// One request and its reply lines (and, for Basic after an `ERR`, the NT
    /// status the helper logged). A helper that failed or timed out is
    /// dropped (and killed), never reused.
    async fn ask(&self, request: &str) -> Result<(Vec<String>, Option<String>), CheckError> {
        let _slot = self.slots.acquire().await.map_err(|_| CheckError::Unavailable("winbind pool closed".into()))?;
        let helper = self.idle.lock().await.pop();
        let mut helper = match helper {
            Some(h) => h,
            None => self.spawn()?,
        };
        if let Some(status) = helper.status.as_mut() {
            // Lines of earlier answers (a success logs one too).
            while status.try_recv().is_ok() {}
        }
        let protocol = self.protocol;
        let exchange = async {
            helper.stdin.write_all(request.as_bytes()).await?;
            helper.stdin.flush().await?;
            let mut lines = Vec::new();
            loop {
                let mut line = String::new();
                if helper.stdout.read_line(&mut line).await? == 0 {
                    return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "ntlm_auth exited"));
                }
                let line = line.trim_end().to_owned();
                match protocol {
                    Protocol::Basic if line.is_empty() => continue,
                    Protocol::Basic => return Ok(vec![line]),
                    // ntlm_auth may end a reply with more than one "." line; a
                    // leftover one shows up first next time and is skipped.
                    Protocol::Ntlm if line == "." && lines.is_empty() => continue,
                    Protocol::Ntlm if line == "." => return Ok(lines),
                    Protocol::Ntlm => lines.push(line),
                }
            }
        };
        let lines = match tokio::time::timeout(self.timeout, exchange).await {
            Ok(Ok(lines)) => lines,
            Ok(Err(e)) => return Err(CheckError::Unavailable(format!("ntlm_auth: {e}"))),
            Err(_) => {
                return Err(CheckError::Unavailable(format!("ntlm_auth gave no answer within {:?}", self.timeout)))
            }
        };
        let mut status = None;
        if lines.first().is_some_and(|l| l.starts_with("ERR")) {
            if let Some(rx) = helper.status.as_mut() {
                // A success's line may still be arriving late: skip it.
                let failure = async {
                    while let Some(line) = rx.recv().await {
                        if !line.trim_end().ends_with("(0x0)") {
                            return Some(line);
                        }
                    }
                    None
                };
                status = tokio::time::timeout(STATUS_WAIT, failure).await.ok().flatten();
            }
        }
        self.idle.lock().await.push(helper);
        Ok((lines, status))
    }
}

/// One `ntlm-server-1` request: the response and the names it was made for.
fn ntlm_request(user: &str, domain: &str, challenge: &[u8; 8], nt_response: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD;
    format!(
        "Username:: {}\nNT-Domain:: {}\nLANMAN-Challenge: {}\nNT-Response: {}\nRequest-User-Session-Key: Yes\n.\n",
        b64.encode(user.as_bytes()),
        b64.encode(domain.as_bytes()),
        hex(challenge),
        hex(nt_response),
    )
}

/// The debug log's line for a logon's outcome: `NT_STATUS_X: text (0x...)`,
/// `:  (0x0)` for a success, or winbind's own failure.
fn is_status_line(line: &str) -> bool {
    line.contains("NT_STATUS_") || line.contains("winbind reply failed") || line.trim_end().ends_with("(0x0)")
}

/// `%XX` for every byte but letters, digits and a few safe marks, as
/// `rfc1738_unescape` in ntlm_auth undoes it.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.@".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `OK` or `ERR`, with the NT status logged for an `ERR` (if any arrived).
fn parse_basic_reply(lines: &[String], status: Option<&str>) -> Result<(), CheckError> {
    match lines.first().map(|l| l.trim()) {
        Some("OK") => Ok(()),
        Some(l) if l.starts_with("ERR") => match status {
            Some(s) => Err(classify(s.trim().to_owned())),
            None => Err(CheckError::Rejected("rejected".into(), Evidence::Unproven)),
        },
        _ => Err(CheckError::Unavailable(format!("unexpected ntlm_auth reply: {}", lines.join(" | ")))),
    }
}

fn parse_reply(lines: &[String]) -> Result<SessionBaseKey, CheckError> {
    let field = |name: &str| lines.iter().find_map(|l| l.strip_prefix(name)).map(str::trim);
    match field("Authenticated:") {
        Some("Yes") => {
            let key = field("User-Session-Key:")
                .and_then(unhex16)
                .ok_or_else(|| CheckError::Unavailable("the domain controller returned no user session key".into()))?;
            Ok(SessionBaseKey(key))
        }
        Some(_) => Err(classify(field("Authentication-Error:").unwrap_or("rejected").to_owned())),
        None => Err(CheckError::Unavailable(format!("unexpected ntlm_auth reply: {}", lines.join(" | ")))),
    }
}

/// A refusal from the domain: could it not be asked (503), or did it say no
/// (401, with what that says about the account)?
fn classify(why: String) -> CheckError {
    let lower = why.to_ascii_lowercase();
    let unreachable = [
        "logon server",
        "no_logon_servers",
        "winbind",
        "domain controller",
        "cant_access_domain",
        "trust",
        "connection",
    ];
    if unreachable.iter().any(|w| lower.contains(w)) {
        CheckError::Unavailable(why)
    } else {
        let evidence = evidence_of(&lower);
        CheckError::Rejected(why, evidence)
    }
}

/// Whether a refusal from the domain says the account exists. winbind reports
/// the NTSTATUS by name or by its description (the helper protocol gives the
/// description: "The specified account does not exist." for an unknown name
/// from the lab's Samba DC), depending on the version:
/// `NT_STATUS_WRONG_PASSWORD`, "the password is not correct", a locked,
/// disabled or expired account, or logon restrictions all mean an account
/// answered. `NT_STATUS_NO_SUCH_USER` and the generic `NT_STATUS_LOGON_FAILURE`
/// ("unknown user name or bad password", which a DC may give for either) do not.
pub fn evidence_of(lower: &str) -> Evidence {
    let exists = [
        "wrong_password",
        "password is not correct",
        "account_locked_out",
        "locked out",
        "account_disabled",
        "account is disabled",
        "currently disabled",
        "password_expired",
        "password has expired",
        "password_must_change",
        "account_expired",
        "account has expired",
        "account_restriction",
        "invalid_logon_hours",
        "time restrictions",
        "invalid_workstation",
        "source workstation",
        "must be changed",
    ];
    if exists.iter().any(|w| lower.contains(w)) {
        Evidence::Account
    } else {
        Evidence::Unproven
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

fn unhex16(text: &str) -> Option<[u8; 16]> {
    if text.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod capture_tests;

#[cfg(test)]
mod tests {
    use super::*;

    fn domain() -> Domain {
        Domain {
            realm: "AD.TEST".into(),
            netbios_name: "ADTEST".into(),
            computer_netbios: "G".into(),
            computer_dns: "g.ad.test".into(),
            krb5_conf: None,
            keytab: None,
            service_principal: None,
            acceptor_spn: Vec::new(),
            allow_rc4: false,
            credential_cache_size: kcd::DEFAULT_CACHE_SIZE,
        }
    }

    #[test]
    fn ntlm_accounts_samba_style() {
        let d = domain();
        let account = |domain: &str, user: &str| NtlmAccount::Account { domain: domain.into(), user: user.into() };
        for (sent_domain, sent_user, file, winbind) in [
            ("ADTEST", "bob", account("ADTEST", "bob"), account("ADTEST", "bob")),
            ("adtest", "bob", account("ADTEST", "bob"), account("ADTEST", "bob")),
            // macOS Heimdal sends the DNS name.
            ("ad.test", "bob", account("ADTEST", "bob"), account("ADTEST", "bob")),
            ("OTHER", "bob", account("OTHER", "bob"), account("OTHER", "bob")),
            ("", "bob", account("ADTEST", "bob"), account("ADTEST", "bob")),
            // Windows SSPI's and gss-ntlmssp's UPN with no domain: the file
            // holds the account of our domain; winbind's DC resolved the UPN.
            ("", "bob@AD.TEST", account("ADTEST", "bob"), NtlmAccount::Upn("bob@AD.TEST".into())),
            ("", "bob@ad.test", account("ADTEST", "bob"), NtlmAccount::Upn("bob@ad.test".into())),
            (
                "",
                "bob@corp.example",
                NtlmAccount::Upn("bob@corp.example".into()),
                NtlmAccount::Upn("bob@corp.example".into()),
            ),
            ("", "@AD.TEST", NtlmAccount::Upn("@AD.TEST".into()), NtlmAccount::Upn("@AD.TEST".into())),
            // A domain sent is the domain: the `@` is then part of the name.
            (
                "ADTEST",
                "bob@corp.example",
                account("ADTEST", "bob@corp.example"),
                account("ADTEST", "bob@corp.example"),
            ),
        ] {
            assert_eq!(file_account(sent_domain, sent_user, Some(&d)), file, "{sent_domain:?} {sent_user:?}");
            assert_eq!(winbind_account(sent_domain, sent_user, Some(&d)), winbind, "{sent_domain:?} {sent_user:?}");
        }
        assert_eq!(file_account("", "bob@AD.TEST", None), NtlmAccount::Upn("bob@AD.TEST".into()));
        assert_eq!(account("ADTEST", "bob").name(), "ADTEST\\bob");
        assert_eq!(NtlmAccount::Upn("bob@corp.example".into()).name(), "bob@corp.example");
    }

    /// winbind is asked for the names as sent: a UPN with an empty domain goes
    /// as it is (splitting it would ask the DC about a proof over other names).
    #[test]
    fn winbind_is_asked_with_the_names_as_sent() {
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let request = ntlm_request("alice@AD.TEST", "", &[0x11; 8], &[0x22; 44]);
        let lines: Vec<&str> = request.lines().collect();
        assert_eq!(lines[0], format!("Username:: {}", b64("alice@AD.TEST")));
        assert_eq!(lines[1], "NT-Domain:: ");
        assert_eq!(lines[2], "LANMAN-Challenge: 1111111111111111");
        assert_eq!(lines[3], format!("NT-Response: {}", "22".repeat(44)));
        assert_eq!(&lines[4..], ["Request-User-Session-Key: Yes", "."]);
        let request = ntlm_request("bob\nAuthenticated: Yes", "AD\nX", &[0; 8], &[0; 44]);
        assert_eq!(request.lines().count(), 6, "a name cannot add a line: {request}");
    }

    #[test]
    fn winbind_replies() {
        let ok = vec!["Authenticated: Yes".to_string(), "User-Session-Key: 8DE40CCADBC14A82F15CB0AD0DE95CA3".into()];
        assert_eq!(parse_reply(&ok).unwrap().0[0], 0x8d);
        let no = vec!["Authenticated: No".to_string(), "Authentication-Error: the password is not correct.".into()];
        assert!(matches!(parse_reply(&no), Err(CheckError::Rejected(_, Evidence::Account))));
        for (unknown, said) in [
            ("NT_STATUS_NO_SUCH_USER", Evidence::Unproven),
            ("The specified account does not exist.", Evidence::Unproven),
            ("The referenced account is currently locked out and may not be logged on to.", Evidence::Account),
            ("The user's password has expired.", Evidence::Account),
            ("Logon failure: unknown user name or bad password.", Evidence::Unproven),
            ("NT_STATUS_LOGON_FAILURE", Evidence::Unproven),
            ("NT_STATUS_WRONG_PASSWORD", Evidence::Account),
            ("NT_STATUS_ACCOUNT_LOCKED_OUT", Evidence::Account),
            ("NT_STATUS_ACCOUNT_DISABLED", Evidence::Account),
        ] {
            let reply = vec!["Authenticated: No".to_string(), format!("Authentication-Error: {unknown}")];
            assert!(
                matches!(parse_reply(&reply), Err(CheckError::Rejected(_, e)) if e == said),
                "{unknown} should be {said:?}"
            );
        }
        let down = vec!["Authenticated: No".to_string(), "Authentication-Error: Reading winbind reply failed!".into()];
        assert!(matches!(parse_reply(&down), Err(CheckError::Unavailable(_))));
        let missing_key = vec!["Authenticated: Yes".to_string()];
        assert!(matches!(parse_reply(&missing_key), Err(CheckError::Unavailable(_))));
        assert!(matches!(parse_reply(&["garbage".to_string()]), Err(CheckError::Unavailable(_))));
    }

    #[test]
    fn basic_passwords_against_the_file() {
        let f = UserFile::parse("ADTEST:bob:Bob-Pass1\nalice:1000:XXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX:A4F49C406510BDCAB6824EE7C30FD852:[U          ]:LCT-00000000:\n").unwrap();
        assert!(check_file_password(&f, "ADTEST", "BOB", "Bob-Pass1").is_ok());
        assert!(check_file_password(&f, "ANY", "alice", "Password").is_ok(), "smbpasswd lines match any domain");
        for (domain, user, password, evidence) in [
            ("ADTEST", "bob", "Bob-Pass2", Evidence::Account),
            ("ADTEST", "bob", "bob-pass1", Evidence::Account),
            ("OTHER", "bob", "Bob-Pass1", Evidence::Unproven),
            ("ADTEST", "nobody", "Bob-Pass1", Evidence::Unproven),
            // The all-zero hash stands in for unknown users; no password has it.
            ("ADTEST", "nobody", "", Evidence::Unproven),
        ] {
            assert!(
                matches!(check_file_password(&f, domain, user, password), Err(CheckError::Rejected(_, e)) if e == evidence),
                "{domain}\\{user}"
            );
        }
    }

    #[test]
    fn basic_requests_cannot_split_or_inject() {
        assert_eq!(percent_encode("ADTEST\\bob"), "ADTEST%5Cbob");
        assert_eq!(percent_encode("a b\nOK\r%"), "a%20b%0AOK%0D%25");
        assert_eq!(percent_encode("müller@ad.test"), "m%C3%BCller@ad.test");
        let line = format!("{} {}\n", percent_encode("x y"), percent_encode("p w\nalice Alice-Pass1"));
        assert_eq!(line.matches(' ').count(), 1);
        assert_eq!(line.matches('\n').count(), 1);
    }

    #[test]
    fn basic_replies_and_their_status() {
        let one = |l: &str| vec![l.to_string()];
        assert!(parse_basic_reply(&one("OK"), None).is_ok());
        let wrong = "NT_STATUS_WRONG_PASSWORD: When trying to update a password, this return status indicates that the value provided as the current password is not correct. (0xc000006a)";
        assert!(matches!(parse_basic_reply(&one("ERR"), Some(wrong)), Err(CheckError::Rejected(_, Evidence::Account))));
        let unknown = "NT_STATUS_NO_SUCH_USER: The specified account does not exist. (0xc0000064)";
        assert!(matches!(
            parse_basic_reply(&one("ERR"), Some(unknown)),
            Err(CheckError::Rejected(_, Evidence::Unproven))
        ));
        assert!(matches!(parse_basic_reply(&one("ERR"), None), Err(CheckError::Rejected(_, Evidence::Unproven))));
        let down = "Reading winbind reply failed! (0x01)";
        assert!(matches!(parse_basic_reply(&one("ERR"), Some(down)), Err(CheckError::Unavailable(_))));
        assert!(matches!(parse_basic_reply(&one("BH broken"), None), Err(CheckError::Unavailable(_))));
        assert!(matches!(parse_basic_reply(&[], None), Err(CheckError::Unavailable(_))));
        for (line, status) in
            [(wrong, true), (unknown, true), (down, true), (":  (0x0)", true), ("added interface lo", false)]
        {
            assert_eq!(is_status_line(line), status, "{line}");
        }
    }
}
