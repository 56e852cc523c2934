//! Service principal names, as gatehouse's configuration gives them
//! (`HTTP/mail.ad.test`) and as MIT needs them (`HTTP/mail.ad.test@AD.TEST`).
//! One function for every path (accepting, delegating, checking a password,
//! `gatehouse doctor`), so that they cannot disagree about which principal a
//! name means.

use crate::error::{Error, Kind};

/// `spn` with its realm: `HTTP/host` gets `@realm`; `HTTP/host@OTHER.REALM`
/// is kept. Refused: anything but `service/host[/more][@REALM]` with no empty
/// part, no second `@`, no backslash (Kerberos's escape character, which no
/// SPN needs), no space or control character.
pub fn qualify_spn(spn: &str, realm: &str) -> Result<String, Error> {
    let bad = |why: &str| Err(Error::new(Kind::BadName, format!("`{}` is not an SPN: {why}", spn.escape_debug())));
    if spn.chars().any(|c| c.is_control() || c.is_whitespace() || c == '\\') {
        return bad("a space, control character or backslash");
    }
    let (name, realm) = match spn.split_once('@') {
        Some((_, r)) if r.contains('@') => return bad("more than one @"),
        Some((n, r)) => (n, r),
        None => (spn, realm),
    };
    if realm.is_empty() || realm.contains('/') {
        return bad("no realm, or a / in the realm");
    }
    let mut parts = name.split('/');
    let service = parts.next().unwrap_or_default();
    let rest: Vec<&str> = parts.collect();
    if service.is_empty() || rest.is_empty() || rest.iter().any(|p| p.is_empty()) {
        return bad("expected service/host, e.g. HTTP/iis.corp.example");
    }
    Ok(format!("{name}@{realm}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_without_realm_gets_ours_and_one_with_a_realm_keeps_it() {
        assert_eq!(qualify_spn("HTTP/iis.corp", "AD.TEST").unwrap(), "HTTP/iis.corp@AD.TEST");
        assert_eq!(qualify_spn("HTTP/iis.corp@CORP.EXAMPLE", "AD.TEST").unwrap(), "HTTP/iis.corp@CORP.EXAMPLE");
        assert_eq!(qualify_spn("ldap/dc.ad.test/ad.test", "AD.TEST").unwrap(), "ldap/dc.ad.test/ad.test@AD.TEST");
    }

    #[test]
    fn names_that_are_not_spns_are_refused_as_bad_names() {
        for spn in [
            "",
            "HTTP",
            "HTTP/",
            "/host",
            "HTTP//host",
            "HTTP/host/",
            "HTTP/host@",
            "@AD.TEST",
            "HTTP/host@A@B",
            "HTTP/host@AD/TEST",
            "HTTP/ho st",
            "HTTP/host\n",
            "HTTP/host\\@AD.TEST",
            "svc-proxy",
        ] {
            let e = qualify_spn(spn, "AD.TEST").unwrap_err();
            assert_eq!(e.kind(), Kind::BadName, "{spn:?}");
        }
        assert_eq!(qualify_spn("HTTP/host", "").unwrap_err().kind(), Kind::BadName);
    }
}
