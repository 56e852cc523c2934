//! Files the configuration names that gatehouse only opens later (the keytab
//! when Kerberos starts, `ntlm_auth` at the first NTLM sign-in): checked at
//! load, so that `gatehouse check` finds what would fail at the first user.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// What is wrong with the keytab at `path` for `principal` (the account that
/// delegates), if anything. The acceptor SPN is not required in it: MIT
/// tries every key of the keytab on a ticket whose SPN it does not hold, and
/// the SPN's key is the account's.
pub fn keytab(path: &Path, principal: Option<&str>, realm: &str, config: &Path) -> Option<String> {
    let fix =
        format!("`gatehouse doctor -c {}` prints the commands that export one (samba-tool, ktpass)", config.display());
    let entries = match crate::keytab::read(path) {
        Ok(e) => e,
        Err(e) => return Some(format!("{}: {e}; {fix}", path.display())),
    };
    if entries.is_empty() {
        return Some(format!("{}: the keytab is empty: it holds no keys (a header, no entry); {fix}", path.display()));
    }
    let principal = principal?;
    let wanted = if principal.contains('@') { principal.to_owned() } else { format!("{principal}@{realm}") };
    // AD compares names without case; so does gatehouse, here and in doctor.
    if entries.iter().any(|e| e.principal.eq_ignore_ascii_case(&wanted)) {
        return None;
    }
    let mut held: Vec<&str> = Vec::new();
    for e in &entries {
        if !held.contains(&e.principal.as_str()) {
            held.push(&e.principal);
        }
    }
    Some(format!(
        "{} holds no key for {wanted} (it holds {}): service_principal must be the account the keytab was exported for; {fix}",
        path.display(),
        held.join(", ")
    ))
}

/// What is wrong with `ntlm_auth` as gatehouse will run it: a bare name is
/// looked up in PATH, as the helpers are started.
pub fn ntlm_auth(program: &Path) -> Option<String> {
    const INSTALL: &str =
        "it is Samba's helper, in Debian's winbind package: `apt install winbind` puts it at /usr/bin/ntlm_auth";
    let bare = program.components().count() == 1 && !program.is_absolute();
    let path: PathBuf = if bare {
        let search = std::env::var_os("PATH").unwrap_or_default();
        match std::env::split_paths(&search).map(|dir| dir.join(program)).find(|p| p.is_file()) {
            Some(found) => found,
            None => {
                return Some(format!(
                    "`{}` is not in PATH ({}): {INSTALL}, or set ntlm_auth to its full path",
                    program.display(),
                    search.to_string_lossy()
                ))
            }
        }
    } else {
        program.to_owned()
    };
    match std::fs::metadata(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Some(format!("`{}` does not exist: {INSTALL}", path.display()))
        }
        Err(e) => Some(format!("`{}`: {e}", path.display())),
        Ok(m) if !m.is_file() => Some(format!("`{}` is not a file: {INSTALL}", path.display())),
        Ok(m) if m.permissions().mode() & 0o111 == 0 => Some(format!(
            "`{}` is not executable: `chmod 755 {}`, or point ntlm_auth at Samba's helper",
            path.display(),
            path.display()
        )),
        Ok(_) => None,
    }
}

/// What is wrong with `path` as the control socket, if anything: it must fit
/// in a socket address, and its folder must be one that only its owner (this
/// account, or root) can change, or another local user could put their own
/// socket there, or remove ours.
pub fn control_socket(path: &Path) -> Option<String> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    // sun_path holds 108 bytes with the final NUL.
    if path.as_os_str().len() > 107 {
        return Some(format!("{}: longer than a socket address allows (107 bytes)", path.display()));
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => return Some(format!("{}: no folder", path.display())),
    };
    let meta = match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => m,
        Ok(_) => return Some(format!("{} is not a folder", dir.display())),
        Err(e) => {
            return Some(format!(
                "{}: {e}; create it for the account gatehouse runs as: `install -d -m 0700 {}`",
                dir.display(),
                dir.display()
            ))
        }
    };
    let me = std::fs::metadata("/proc/self").map(|m| m.uid()).ok();
    if meta.uid() != 0 && Some(meta.uid()) != me {
        return Some(format!(
            "{} belongs to another account (uid {}): use a folder of gatehouse's own",
            dir.display(),
            meta.uid()
        ));
    }
    if meta.permissions().mode() & 0o022 != 0 {
        return Some(format!(
            "{} can be written by other accounts (mode {:o}), which could replace the socket: `chmod go-w {}`, or use a folder of gatehouse's own (`install -d -m 0700`)",
            dir.display(),
            meta.permissions().mode() & 0o777,
            dir.display()
        ));
    }
    match std::fs::symlink_metadata(path) {
        Ok(m) if !m.file_type().is_socket() => Some(format!("{} exists and is not a socket", path.display())),
        _ => None,
    }
}
