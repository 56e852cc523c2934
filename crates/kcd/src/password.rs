//! Changing a user's password through the domain: the Kerberos
//! change-password protocol (RFC 3244) to the realm's kpasswd server, with
//! the user's current password, which works when it has expired or must be
//! changed at next logon. The one unsafe part, MIT's krb5 calls, is in
//! `ffi.rs`.

use crate::error::{Error, Kind};
use crate::User;

/// The domain's answer to a password change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Changed {
    Done,
    /// The current password was right, and the new one was refused (too
    /// short, too simple, used before, changed too recently): RFC 3244's
    /// result code and the domain's words.
    Refused {
        code: i32,
        words: String,
    },
}

/// Changes `user`'s password from `old` to `new`. An error means the change
/// was not asked for: the current password is wrong (`PreauthFailed`), the
/// account is disabled or locked (`Revoked`), no KDC answers
/// (`Unreachable`). Blocks; talks to the KDC and the kpasswd server.
pub fn change_password(user: &User, old: &str, new: &str) -> Result<Changed, Error> {
    let (name, enterprise) = match user {
        User::Account(a) => (a.as_str(), false),
        User::Upn { upn, .. } => (upn.as_str(), true),
    };
    let answer = crate::ffi::change_password(name, enterprise, old, new).map_err(|f| {
        let kind = if f.code == 0 { Kind::BadName } else { crate::error::classify(0, f.code as u32) };
        Error::krb5(kind, f.code, format!("{}: {} (krb5 code {})", f.step, f.message, f.code))
    })?;
    if answer.code == 0 {
        return Ok(Changed::Done);
    }
    let words = match (answer.code_words.trim(), answer.words.trim()) {
        (c, "") => c.to_owned(),
        ("", w) => w.to_owned(),
        (c, w) => format!("{c}: {w}"),
    };
    Ok(Changed::Refused { code: answer.code, words: clean(&words) })
}

/// The server's words as one printable line.
fn clean(words: &str) -> String {
    let one: String = words.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    let one = one.split_whitespace().collect::<Vec<_>>().join(" ");
    if one.is_empty() {
        "the domain gave no reason".to_owned()
    } else {
        one.chars().take(400).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_servers_words_become_one_line() {
        assert_eq!(clean("Password change rejected:\n  too\tshort\0"), "Password change rejected: too short");
        assert_eq!(clean("\n\n"), "the domain gave no reason");
        assert_eq!(clean(&"x".repeat(1000)).len(), 400);
    }

    /// The room `ffi.rs` keeps for a `krb5_creds` holds the installed
    /// krb5.h's structure (a C program compiled against it says its size).
    #[test]
    fn krb5_creds_fits() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("size.c");
        std::fs::write(&src, "#include <krb5.h>\n#include <stdio.h>\nint main(void){printf(\"%zu %zu\", sizeof(krb5_creds), _Alignof(krb5_creds));return 0;}\n").unwrap();
        let exe = dir.path().join("size");
        let built =
            std::process::Command::new("cc").arg(&src).arg("-o").arg(&exe).output().expect("cc (build-essential)");
        assert!(built.status.success(), "{}", String::from_utf8_lossy(&built.stderr));
        let out = std::process::Command::new(&exe).output().unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        let (size, align) = text.split_once(' ').unwrap();
        let (size, align): (usize, usize) = (size.parse().unwrap(), align.parse().unwrap());
        assert!(size <= crate::ffi::CREDS_ROOM && align <= 8, "krb5_creds is {size} bytes aligned {align}");
    }
}
