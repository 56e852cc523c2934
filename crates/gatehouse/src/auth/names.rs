//! The logon names Active Directory can hold, checked before a name is counted
//! by the lockout or sent to the domain controller: a name AD cannot store
//! cannot be anyone's, and refusing it first keeps a client from making
//! gatehouse store (or the DC read) kilobytes per attempt.

/// sAMAccountName, the user part of `DOMAIN\user`: 20 characters in AD (the
/// "pre-Windows 2000" logon name; computer accounts use 16 with the `$`).
pub const MAX_ACCOUNT_CHARS: usize = 20;
/// userPrincipalName: AD's schema bounds it at 1,024.
pub const MAX_UPN_BYTES: usize = 1024;
/// The domain part: a DNS name is at most 255 bytes (a NetBIOS name 15).
pub const MAX_DOMAIN_BYTES: usize = 255;
/// How much of a refused name the log shows.
const SHOWN_CHARS: usize = 32;

/// Checks a name as a client sent it: `domain` and `user` from an NTLM
/// AUTHENTICATE (the user may be a UPN, with or without a domain).
pub fn check_parts(domain: &str, user: &str) -> Result<(), String> {
    if domain.len() > MAX_DOMAIN_BYTES {
        return Err(format!(
            "domain name of {} bytes refused (AD allows {MAX_DOMAIN_BYTES}): {}",
            domain.len(),
            shown(domain)
        ));
    }
    if user.contains('@') {
        if user.len() > MAX_UPN_BYTES {
            return Err(format!(
                "user principal name of {} bytes refused (AD allows {MAX_UPN_BYTES}): {}",
                user.len(),
                shown(user)
            ));
        }
    } else {
        let chars = user.chars().count();
        if chars > MAX_ACCOUNT_CHARS {
            return Err(format!(
                "account name of {chars} characters refused (AD allows {MAX_ACCOUNT_CHARS}): {}",
                shown(user)
            ));
        }
    }
    Ok(())
}

/// Checks a typed name (Basic): `DOMAIN\user`, `user@suffix` or `user`.
pub fn check_typed(typed: &str) -> Result<(), String> {
    match typed.split_once('\\') {
        Some((domain, user)) => check_parts(domain, user),
        None => check_parts("", typed),
    }
}

/// The start of a name for a log line: at most [`SHOWN_CHARS`] characters,
/// control characters as `\u{..}`, and how much was left out.
pub fn shown(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars().take(SHOWN_CHARS) {
        if c.is_control() {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    let rest = name.chars().count().saturating_sub(SHOWN_CHARS);
    if rest > 0 {
        out.push_str(&format!("... ({rest} more characters)"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_ad_can_hold_pass() {
        assert!(check_parts("ADTEST", "bob").is_ok());
        assert!(check_parts("", &"a".repeat(20)).is_ok(), "20 characters is the limit, not past it");
        assert!(check_parts("ADTEST", &"ü".repeat(20)).is_ok(), "characters, not bytes");
        assert!(check_parts("", &format!("{}@ad.test", "b".repeat(1000))).is_ok());
        assert!(check_parts(&"d".repeat(255), "bob").is_ok());
        assert!(check_typed("ADTEST\\bob").is_ok());
        assert!(check_typed("bob@ad.test").is_ok());
        assert!(check_typed("bob").is_ok());
    }

    #[test]
    fn names_past_the_ad_limits_are_refused_with_the_limit_named() {
        let e = check_parts("ADTEST", &"a".repeat(21)).unwrap_err();
        assert!(e.contains("21 characters") && e.contains("AD allows 20"), "{e}");
        let e = check_parts("", &format!("{}@ad.test", "b".repeat(1017))).unwrap_err();
        assert!(e.contains("1025 bytes") && e.contains("AD allows 1024"), "{e}");
        let e = check_parts(&"d".repeat(256), "bob").unwrap_err();
        assert!(e.contains("domain name of 256 bytes"), "{e}");
        assert!(check_typed(&format!("ADTEST\\{}", "a".repeat(21))).is_err());
        assert!(check_typed(&"a".repeat(21)).is_err(), "a bare name is an account name");
        assert!(check_typed(&format!("{}\\bob", "d".repeat(256))).is_err());
    }

    #[test]
    fn a_refused_name_is_shown_short_and_escaped() {
        let e = check_parts("", &format!("x\r\nforged\x1b[31m{}", "a".repeat(20_000))).unwrap_err();
        assert!(e.len() < 200, "{} bytes echoed", e.len());
        assert!(!e.chars().any(char::is_control), "{e:?}");
        assert!(e.contains("x\\u{d}\\u{a}forged\\u{1b}[31m"), "{e}");
        assert!(e.contains("(19982 more characters)"), "{e}");
        assert_eq!(shown("bob"), "bob");
    }
}
