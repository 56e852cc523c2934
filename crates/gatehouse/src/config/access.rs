//! The text forms of access rules and of `[access] directory`.

use super::Who;

/// One entry of `allow` or `deny`: a SID (`S-1-5-21-...`), `DOMAIN\name`,
/// `name`, or a UPN (`carol@corp.example`).
pub fn rule_entry(text: &str) -> Result<Who, String> {
    let t = text.trim();
    if t != text || t.is_empty() {
        return Err("a name with no spaces around it, such as \"ADTEST\\\\Finance\"".into());
    }
    if t.len() > 256 || t.chars().any(char::is_control) {
        return Err("not a user or group name".into());
    }
    if t.get(..2).is_some_and(|p| p.eq_ignore_ascii_case("S-")) && t[2..].starts_with(|c: char| c.is_ascii_digit()) {
        return kcd::Sid::parse(t).map(Who::Sid).ok_or_else(|| "not a well-formed SID (S-1-5-21-...)".into());
    }
    let (domain, name) = match t.split_once('\\') {
        Some((d, n)) => (Some(d), n),
        None => (None, t),
    };
    // sAMAccountName's own rule (MS-ADTS): none of these; a UPN has one `@`.
    const NOT_IN_NAMES: &[char] = &['"', '/', '\\', '[', ']', ':', ';', '|', '=', ',', '+', '*', '?', '<', '>'];
    if name.is_empty() || name.contains(NOT_IN_NAMES) || name.matches('@').count() > 1 {
        return Err("not a user or group name (DOMAIN\\name, name or a UPN)".into());
    }
    if let Some(d) = domain {
        if d.is_empty() || d.contains(NOT_IN_NAMES) || d.contains(['@', '.']) || name.contains('@') {
            return Err("the domain part must be the NetBIOS domain name (ADTEST\\name)".into());
        }
    }
    Ok(Who::Name { domain: domain.map(str::to_ascii_uppercase), name: name.to_lowercase() })
}

/// `ldap://host[:port]`: the host names the SPN `ldap/<host>`.
pub fn ldap_url(url: &str) -> Result<(String, u16), String> {
    let Some(rest) = url.strip_prefix("ldap://") else {
        return Err("expected ldap://dc-name (ldaps:// is not supported: the bind is signed by Kerberos)".into());
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) => (h, p.parse::<u16>().ok().filter(|p| *p != 0).ok_or("the port must be 1 to 65535")?),
        None => (rest, 389),
    };
    if host.is_empty() || host.contains(['/', '@', '[', ']', ' ']) || host.parse::<std::net::IpAddr>().is_ok() {
        return Err("the host must be the domain controller's DNS name (its SPN is ldap/<name>), not an address; \
                    set directory_address to connect to an address"
            .into());
    }
    Ok((host.to_ascii_lowercase(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(d: Option<&str>, n: &str) -> Who {
        Who::Name { domain: d.map(Into::into), name: n.into() }
    }

    #[test]
    fn rule_entries() {
        assert_eq!(rule_entry("ADTEST\\Finance").unwrap(), name(Some("ADTEST"), "finance"));
        assert_eq!(rule_entry("adtest\\Alice").unwrap(), name(Some("ADTEST"), "alice"));
        assert_eq!(rule_entry("alice").unwrap(), name(None, "alice"));
        assert_eq!(rule_entry("Carol@Corp.Example").unwrap(), name(None, "carol@corp.example"));
        let sid = "S-1-5-21-1-2-3-1107";
        assert_eq!(rule_entry(sid).unwrap(), Who::Sid(kcd::Sid::parse(sid).unwrap()));
        for bad in [
            "",
            " alice",
            "alice ",
            "S-1-x",
            "S-1-5-21-1-2-3-4-5-6-7-8-9-10-11-12-13-14-15-16",
            "a\\b\\c",
            "\\alice",
            "ADTEST\\",
            "AD.TEST\\alice",
            "ADTEST\\a@b",
            "a@b@c",
            "al*ce",
            "a,b",
            "x\u{1}",
        ] {
            assert!(rule_entry(bad).is_err(), "{bad:?} accepted");
        }
        // A name that merely starts with S- is a name.
        assert_eq!(rule_entry("S-Team").unwrap(), name(None, "s-team"));
    }

    #[test]
    fn directory_urls() {
        assert_eq!(ldap_url("ldap://DC1.ad.test").unwrap(), ("dc1.ad.test".into(), 389));
        assert_eq!(ldap_url("ldap://dc1.ad.test:3268/").unwrap(), ("dc1.ad.test".into(), 3268));
        for bad in [
            "dc1.ad.test",
            "ldaps://dc1",
            "ldap://",
            "ldap://127.0.0.21",
            "ldap://dc1:0",
            "ldap://dc1:x",
            "ldap://u@dc1",
        ] {
            assert!(ldap_url(bad).is_err(), "{bad:?} accepted");
        }
    }
}
