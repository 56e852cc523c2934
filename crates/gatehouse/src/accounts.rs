//! Where NTLM passwords are checked: a local file of NT hashes, or the domain
//! controller through Samba winbind (`ntlm_auth --helper-protocol=ntlm-server-1`,
//! a NETLOGON pass-through that returns the user session key the MIC needs).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::sync::{Mutex, Semaphore};

use ntlm::{AuthenticateReceived, SessionBaseKey};

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

/// NT hashes read from a file: gss-ntlmssp's `DOMAIN:user:password` lines (the
/// password is hashed on load and not kept) and smbpasswd lines
/// (`user:uid:LMHASH:NTHASH:...`).
#[derive(Default)]
pub struct UserFile {
    /// (upper-case domain or "" for any, lower-case user) -> NT hash
    users: HashMap<(String, String), [u8; 16]>,
}

impl std::fmt::Debug for UserFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "UserFile({} users)", self.users.len())
    }
}

impl UserFile {
    pub fn load(path: &Path) -> Result<UserFile, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Self::parse(&text).map_err(|(line, why)| format!("{}:{line}: {why}", path.display()))
    }

    pub fn parse(text: &str) -> Result<UserFile, (usize, String)> {
        let mut users = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim_end_matches('\r');
            if line.trim().is_empty() || line.trim_start().starts_with('#') {
                continue;
            }
            let fields: Vec<&str> = line.split(':').collect();
            let entry =
                if fields.len() >= 6 && fields[3].len() == 32 && fields[3].bytes().all(|b| b.is_ascii_hexdigit()) {
                    // smbpasswd: no domain, so it matches any.
                    let mut hash = [0u8; 16];
                    for (k, byte) in hash.iter_mut().enumerate() {
                        *byte = u8::from_str_radix(&fields[3][2 * k..2 * k + 2], 16)
                            .map_err(|_| (i + 1, "bad NT hash".to_string()))?;
                    }
                    ((String::new(), fields[0].to_lowercase()), hash)
                } else {
                    let mut parts = line.splitn(3, ':');
                    let (Some(domain), Some(user), Some(password)) = (parts.next(), parts.next(), parts.next()) else {
                        return Err((i + 1, "expected DOMAIN:user:password or an smbpasswd line".into()));
                    };
                    if user.is_empty() {
                        return Err((i + 1, "empty user name".into()));
                    }
                    ((domain.to_uppercase(), user.to_lowercase()), ntlm::crypto::nt_hash(password))
                };
            users.insert(entry.0, entry.1);
        }
        Ok(UserFile { users })
    }

    fn hash(&self, domain: &str, user: &str) -> Option<&[u8; 16]> {
        let user = user.to_lowercase();
        self.users.get(&(domain.to_uppercase(), user.clone())).or_else(|| self.users.get(&(String::new(), user)))
    }

    pub fn check(&self, received: &AuthenticateReceived) -> Result<SessionBaseKey, CheckError> {
        match self.hash(&received.domain, &received.user) {
            Some(hash) => received
                .verify_with_nt_hash(hash)
                .map_err(|e| CheckError::Rejected(e.cause().into(), Evidence::Account)),
            None => {
                // Same work for an unknown user as for a wrong password.
                let _ = received.verify_with_nt_hash(&[0u8; 16]);
                Err(CheckError::Rejected("unknown user".into(), Evidence::Unproven))
            }
        }
    }
}

/// A small pool of `ntlm_auth` helper processes.
pub struct Winbind {
    program: PathBuf,
    smb_conf: Option<PathBuf>,
    timeout: Duration,
    slots: Semaphore,
    idle: Mutex<Vec<Helper>>,
}

struct Helper {
    _child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Winbind {
    pub fn new(program: PathBuf, smb_conf: Option<PathBuf>, helpers: usize, timeout: Duration) -> Arc<Winbind> {
        Arc::new(Winbind { program, smb_conf, timeout, slots: Semaphore::new(helpers), idle: Mutex::new(Vec::new()) })
    }

    fn spawn(&self) -> Result<Helper, CheckError> {
        let mut cmd = Command::new(&self.program);
        cmd.arg("--helper-protocol=ntlm-server-1");
        if let Some(conf) = &self.smb_conf {
            cmd.arg(format!("--configfile={}", conf.display()));
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| CheckError::Unavailable(format!("cannot start {}: {e}", self.program.display())))?;
        let stdin = child.stdin.take().ok_or_else(|| CheckError::Unavailable("ntlm_auth has no stdin".into()))?;
        let stdout = child.stdout.take().ok_or_else(|| CheckError::Unavailable("ntlm_auth has no stdout".into()))?;
        Ok(Helper { _child: child, stdin, stdout: BufReader::new(stdout) })
    }

    /// Asks the domain controller to check the response. The user and domain go
    /// base64-encoded (`Key:: value`), so no client-chosen byte can inject a line.
    pub async fn check(&self, received: &AuthenticateReceived) -> Result<SessionBaseKey, CheckError> {
        let _slot = self.slots.acquire().await.map_err(|_| CheckError::Unavailable("winbind pool closed".into()))?;
        let helper = self.idle.lock().await.pop();
        let mut helper = match helper {
            Some(h) => h,
            None => self.spawn()?,
        };
        let b64 = base64::engine::general_purpose::STANDARD;
        let request = format!(
            "Username:: {}\nNT-Domain:: {}\nLANMAN-Challenge: {}\nNT-Response: {}\nRequest-User-Session-Key: Yes\n.\n",
            b64.encode(received.user.as_bytes()),
            b64.encode(received.domain.as_bytes()),
            hex(&received.server_challenge()),
            hex(received.nt_response()),
        );
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
                if line == "." {
                    // ntlm_auth may end a reply with more than one "." line; a
                    // leftover one shows up first next time and is skipped.
                    if lines.is_empty() {
                        continue;
                    }
                    return Ok(lines);
                }
                lines.push(line);
            }
        };
        let lines = match tokio::time::timeout(self.timeout, exchange).await {
            Ok(Ok(lines)) => lines,
            Ok(Err(e)) => return Err(CheckError::Unavailable(format!("ntlm_auth: {e}"))),
            Err(_) => {
                return Err(CheckError::Unavailable(format!("ntlm_auth gave no answer within {:?}", self.timeout)))
            }
        };
        self.idle.lock().await.push(helper);
        parse_reply(&lines)
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
        Some(_) => {
            let why = field("Authentication-Error:").unwrap_or("rejected").to_owned();
            // Errors that say the domain could not be asked, rather than no.
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
                Err(CheckError::Unavailable(why))
            } else {
                let evidence = evidence_of(&lower);
                Err(CheckError::Rejected(why, evidence))
            }
        }
        None => Err(CheckError::Unavailable(format!("unexpected ntlm_auth reply: {}", lines.join(" | ")))),
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
mod tests {
    use super::*;

    #[test]
    fn both_file_formats() {
        let f = UserFile::parse(
            "# comment\nADTEST:bob:Bob-Pass1\n:carol:pass:with:colons\nalice:1000:XXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX:A4F49C406510BDCAB6824EE7C30FD852:[U          ]:LCT-00000000:\n",
        )
        .unwrap();
        assert_eq!(f.hash("adtest", "BOB"), Some(&ntlm::crypto::nt_hash("Bob-Pass1")));
        assert_eq!(f.hash("OTHER", "bob"), None, "a domain-qualified line matches only its domain");
        assert_eq!(f.hash("ANY", "carol"), Some(&ntlm::crypto::nt_hash("pass:with:colons")));
        assert_eq!(f.hash("ADTEST", "alice"), Some(&ntlm::crypto::nt_hash("Password")));
    }

    #[test]
    fn bad_lines_are_reported_with_their_number() {
        assert_eq!(UserFile::parse("ADTEST:bob:x\njunk\n").unwrap_err().0, 2);
        assert_eq!(UserFile::parse("ADTEST::x\n").unwrap_err().0, 1);
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
}
