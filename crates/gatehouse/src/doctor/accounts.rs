//! doctor's NTLM side: the `[accounts]` that check NTLM passwords (and Basic
//! ones without a keytab). For winbind: winbindd answers, it reaches a domain
//! controller over NETLOGON, the machine's trust secret is good, and, given a
//! user and a password on standard input, a real NTLMv2 logon through the same
//! `ntlm_auth` helper gatehouse runs (which also proves access to winbind's
//! privileged pipe). For a file: the user is in it, and the password matches.
//!
//! The password is never printed: only the user name and the domain's answer.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use super::Report;
use crate::accounts::{self, CheckError, Winbind};
use crate::config::{Accounts, Config};

/// The user of `--user`, with the password read from standard input when
/// `--password-stdin` was given.
pub struct Logon<'a> {
    pub user: &'a str,
    pub password: Option<&'a str>,
}

pub fn check(config: &Config, logon: Option<&Logon<'_>>, report: &mut Report) {
    let Some(accounts) = &config.accounts else {
        report.warn("no [accounts]: nothing checks NTLM passwords (Negotiate is Kerberos only)");
        return;
    };
    let domain = config.domain.as_ref().map_or("", |d| d.netbios_name.as_str());
    match accounts {
        Accounts::File { path, users } => {
            if users.is_empty() {
                report.fail_with(
                    &format!("[accounts] file {} holds no users: every NTLM logon fails", path.display()),
                    &["add `DOMAIN:user:password` lines (or NT hashes from gatehouse ntlm-hash), then reload"],
                );
                return;
            }
            report.pass(&format!("[accounts] file {} holds {} users", path.display(), users.len()));
            if let Some(logon) = logon {
                file_logon(path, users, domain, logon, report);
            }
        }
        Accounts::Winbind { ntlm_auth, smb_conf, timeout, .. } => {
            let wbinfo = wbinfo_beside(ntlm_auth);
            if !winbind_reachable(&wbinfo, report) {
                return;
            }
            match logon {
                None => report.warn(
                    "give --user NAME --password-stdin for a test logon through ntlm_auth \
                     (it also proves gatehouse's account may use winbind's privileged pipe)",
                ),
                Some(Logon { password: None, user }) => report.warn(&format!(
                    "no test logon for {user}: give the password on standard input with --password-stdin"
                )),
                Some(Logon { user, password: Some(password) }) => {
                    let winbind = Winbind::new(ntlm_auth.clone(), smb_conf.clone(), 1, *timeout);
                    winbind_logon(&winbind, ntlm_auth, domain, user, password, report);
                }
            }
        }
    }
}

/// wbinfo from the directory `ntlm_auth` was given in (Samba installs both
/// together), else from PATH.
fn wbinfo_beside(ntlm_auth: &Path) -> PathBuf {
    let beside = ntlm_auth.parent().filter(|p| !p.as_os_str().is_empty()).map(|p| p.join("wbinfo"));
    beside.filter(|p| p.exists()).unwrap_or_else(|| PathBuf::from("wbinfo"))
}

/// `wbinfo -p`, `--ping-dc`, `-t`, each a line; false when winbindd itself
/// does not answer (nothing after that can work).
fn winbind_reachable(wbinfo: &Path, report: &mut Report) -> bool {
    let run = |arg: &str| -> Result<String, String> {
        let out =
            Command::new(wbinfo).arg(arg).output().map_err(|e| format!("cannot run {}: {e}", wbinfo.display()))?;
        let text = String::from_utf8_lossy(&out.stdout).trim().to_owned() + String::from_utf8_lossy(&out.stderr).trim();
        let text = text.lines().next().unwrap_or("").to_owned();
        if out.status.success() {
            Ok(text)
        } else {
            Err(text)
        }
    };
    match run("-p") {
        Ok(_) => report.pass("winbind answers (wbinfo -p)"),
        Err(why) => {
            report.fail_with(
                &format!("winbind does not answer (wbinfo -p): {why}"),
                &[
                    "start it and start it at boot: systemctl enable --now winbind",
                    "a mistake in smb.conf stops it: testparm -s; journalctl -u winbind",
                ],
            );
            return false;
        }
    }
    match run("--ping-dc") {
        Ok(said) => report.pass(&format!("winbind reaches a domain controller over NETLOGON: {said}")),
        Err(why) => report.fail_with(
            &format!("winbind cannot reach a domain controller (wbinfo --ping-dc): {why}"),
            &[
                "open TCP 135, 445 and 49152-65535 (RPC), TCP/UDP 88 and 389, TCP 464 to every DC",
                "check the join: net ads testjoin; join again: net ads join -U administrator",
            ],
        ),
    }
    match run("-t") {
        Ok(said) => report.pass(&format!("the machine account's trust secret is good (wbinfo -t): {said}")),
        Err(why) => report.fail_with(
            &format!("the machine account's trust secret failed (wbinfo -t): {why}"),
            &["the computer account was reset or deleted in AD: join again: net ads join -U administrator"],
        ),
    }
    true
}

/// An NTLMv2 response to a fresh challenge, made from the password here and
/// checked by the DC through ntlm_auth's `ntlm-server-1`, exactly as a
/// client's response is in service.
fn winbind_logon(
    winbind: &Arc<Winbind>,
    ntlm_auth: &Path,
    domain: &str,
    user: &str,
    password: &str,
    report: &mut Report,
) {
    let (domain, user) = match user.split_once('\\') {
        Some((d, u)) => (d.to_ascii_uppercase(), u.to_owned()),
        // A UPN names its domain itself.
        None if user.contains('@') => (String::new(), user.to_owned()),
        None => (domain.to_owned(), user.to_owned()),
    };
    let who = if domain.is_empty() { user.clone() } else { format!("{domain}\\{user}") };
    let mut challenge = [0u8; 8];
    if getrandom::fill(&mut challenge).is_err() {
        report.fail_with("no random bytes for an NTLM challenge", &[]);
        return;
    }
    let response = ntlm_v2_response(password, &user, &domain, &challenge);
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => return report.fail_with(&format!("cannot start a runtime: {e}"), &[]),
    };
    match runtime.block_on(winbind.check_response(&user, &domain, &challenge, &response)) {
        Ok(_) => report.pass(&format!(
            "NTLM test logon as {who} through {}: the domain controller accepted the password",
            ntlm_auth.display()
        )),
        Err(CheckError::Rejected(why, _)) => report.fail_with(
            &format!("NTLM test logon as {who}: the domain refused it: {why}"),
            &[
                "a wrong password or user name is the user's; a locked account: Unlock-ADAccount -Identity NAME",
                "a disabled or expired account: Get-ADUser NAME -Properties Enabled,AccountExpirationDate",
            ],
        ),
        Err(CheckError::Unavailable(why)) => report.fail_with(
            &format!("NTLM test logon as {who}: {} could not ask the domain: {why}", ntlm_auth.display()),
            &[
                "gatehouse's account needs winbind's privileged pipe: usermod -aG winbindd_priv gatehouse",
                "the pipe's folder must be that group's: ls -ld /var/lib/samba/winbindd_privileged",
                "ntlm_auth comes with Debian's winbind package: apt install winbind",
            ],
        ),
    }
}

/// NTLMv2 (MS-NLMP 3.3.2): NTProofStr and the client's blob, with the
/// current time and a random client challenge.
fn ntlm_v2_response(password: &str, user: &str, domain: &str, server_challenge: &[u8; 8]) -> Vec<u8> {
    let key = ntlm::crypto::ntowf_v2(&ntlm::crypto::nt_hash(password), user, domain);
    let mut client_challenge = [0u8; 8];
    let _ = getrandom::fill(&mut client_challenge);
    let mut blob = vec![1, 1, 0, 0, 0, 0, 0, 0];
    blob.extend_from_slice(&ntlm::FileTime::now().0.to_le_bytes());
    blob.extend_from_slice(&client_challenge);
    blob.extend_from_slice(&[0; 4]);
    let pairs = ntlm::av::AvPairs(vec![(ntlm::av::NB_DOMAIN_NAME, utf16le(domain))]);
    blob.extend_from_slice(&pairs.encode());
    blob.extend_from_slice(&[0; 4]);
    let mut response = ntlm::crypto::nt_proof(&key, server_challenge, &blob).to_vec();
    response.extend_from_slice(&blob);
    response
}

fn utf16le(text: &str) -> Vec<u8> {
    text.encode_utf16().flat_map(u16::to_le_bytes).collect()
}

fn file_logon(path: &Path, users: &crate::config::UserFile, domain: &str, logon: &Logon<'_>, report: &mut Report) {
    let (domain, user) = logon.user.split_once('\\').unwrap_or((domain, logon.user));
    if users.hash(domain, user).is_none() {
        report.fail_with(
            &format!("{domain}\\{user} is not in {}", path.display()),
            &[&format!("add a line `{domain}:{user}:PASSWORD`, or its NT hash: gatehouse ntlm-hash")],
        );
        return;
    }
    report.pass(&format!("{domain}\\{user} is in {}", path.display()));
    let Some(password) = logon.password else { return };
    match accounts::check_file_password(users, domain, user, password) {
        Ok(()) => report.pass(&format!("the password of {domain}\\{user} matches the file's NT hash")),
        Err(CheckError::Rejected(why, _) | CheckError::Unavailable(why)) => report.fail_with(
            &format!("the password of {domain}\\{user} does not match {}: {why}", path.display()),
            &["write the new hash into the file: gatehouse ntlm-hash, then reload (SIGHUP)"],
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The response verifies the way an acceptor verifies it (NTProofStr
    /// over the server challenge and the blob, with NTOWFv2 of the password).
    #[test]
    fn the_test_logon_response_is_ntlmv2_for_that_password() {
        let challenge = [1, 2, 3, 4, 5, 6, 7, 8];
        let r = ntlm_v2_response("Alice-Pass1", "alice", "ADTEST", &challenge);
        let (proof, blob) = r.split_at(16);
        let key = ntlm::crypto::ntowf_v2(&ntlm::crypto::nt_hash("Alice-Pass1"), "alice", "ADTEST");
        assert_eq!(proof, ntlm::crypto::nt_proof(&key, &challenge, blob));
        let wrong = ntlm::crypto::ntowf_v2(&ntlm::crypto::nt_hash("other"), "alice", "ADTEST");
        assert_ne!(proof, ntlm::crypto::nt_proof(&wrong, &challenge, blob));
        assert_eq!(&blob[..2], &[1, 1]);
    }

    #[test]
    fn wbinfo_is_found_beside_ntlm_auth_or_on_the_path() {
        assert_eq!(wbinfo_beside(Path::new("ntlm_auth")), PathBuf::from("wbinfo"));
        assert_eq!(wbinfo_beside(Path::new("/nonexistent/ntlm_auth")), PathBuf::from("wbinfo"));
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("wbinfo"), "").unwrap();
        assert_eq!(wbinfo_beside(&dir.path().join("ntlm_auth")), dir.path().join("wbinfo"));
    }
}
