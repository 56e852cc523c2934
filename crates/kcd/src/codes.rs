//! The krb5 error codes kcd tells apart. For the Kerberos mechanism, MIT's
//! GSSAPI minor status is a krb5 error code: an entry of MIT's com_err table
//! "krb5", whose first 128 entries are the protocol's own error numbers (RFC
//! 4120 section 7.5.9) in order, followed by the library's. `libgssapi-sys`
//! binds only the GSS names, so the values are written here once, by name; a
//! test checks every one against `<krb5/krb5.h>`.
//!
//! (MIT's mechanism glue may renumber a minor status that another mechanism
//! already used; kcd asks for the Kerberos mechanism alone, and a renumbered
//! code would only classify as `Other`, never as a wrong kind.)

/// `ERROR_TABLE_BASE_krb5`.
const BASE: i32 = -1765328384;

macro_rules! codes {
    ($($(#[$doc:meta])* $name:ident = $offset:expr, $display:literal;)*) => {
        $($(#[$doc])* pub const $name: i32 = BASE + $offset;)*
        /// (MIT's name, the name kcd logs) for each code above.
        pub const NAMES: &[(i32, &str, &str)] = &[$(($name, stringify!($name), $display)),*];
    };
}

// Protocol errors are logged by their RFC 4120 names (MIT's without "KRB5"),
// as Windows event logs and AD documentation spell them.
codes! {
    KRB5KDC_ERR_NAME_EXP = 1, "KDC_ERR_NAME_EXP";
    KRB5KDC_ERR_C_PRINCIPAL_UNKNOWN = 6, "KDC_ERR_C_PRINCIPAL_UNKNOWN";
    KRB5KDC_ERR_S_PRINCIPAL_UNKNOWN = 7, "KDC_ERR_S_PRINCIPAL_UNKNOWN";
    KRB5KDC_ERR_PRINCIPAL_NOT_UNIQUE = 8, "KDC_ERR_PRINCIPAL_NOT_UNIQUE";
    KRB5KDC_ERR_POLICY = 12, "KDC_ERR_POLICY";
    KRB5KDC_ERR_BADOPTION = 13, "KDC_ERR_BADOPTION";
    KRB5KDC_ERR_ETYPE_NOSUPP = 14, "KDC_ERR_ETYPE_NOSUPP";
    KRB5KDC_ERR_CLIENT_REVOKED = 18, "KDC_ERR_CLIENT_REVOKED";
    KRB5KDC_ERR_KEY_EXP = 23, "KDC_ERR_KEY_EXPIRED";
    KRB5KDC_ERR_PREAUTH_FAILED = 24, "KDC_ERR_PREAUTH_FAILED";
    KRB5KDC_ERR_SVC_UNAVAILABLE = 29, "KDC_ERR_SVC_UNAVAILABLE";
    KRB5KRB_AP_ERR_BAD_INTEGRITY = 31, "KRB_AP_ERR_BAD_INTEGRITY";
    KRB5KRB_AP_ERR_TKT_EXPIRED = 32, "KRB_AP_ERR_TKT_EXPIRED";
    KRB5KRB_AP_ERR_TKT_NYV = 33, "KRB_AP_ERR_TKT_NYV";
    KRB5KRB_AP_ERR_REPEAT = 34, "KRB_AP_ERR_REPEAT";
    KRB5KRB_AP_ERR_NOT_US = 35, "KRB_AP_ERR_NOT_US";
    KRB5KRB_AP_ERR_BADMATCH = 36, "KRB_AP_ERR_BADMATCH";
    KRB5KRB_AP_ERR_SKEW = 37, "KRB_AP_ERR_SKEW";
    KRB5KRB_AP_ERR_MODIFIED = 41, "KRB_AP_ERR_MODIFIED";
    KRB5KRB_AP_ERR_BADKEYVER = 44, "KRB_AP_ERR_BADKEYVER";
    KRB5KRB_AP_ERR_NOKEY = 45, "KRB_AP_ERR_NOKEY";
    KRB5KRB_ERR_GENERIC = 60, "KRB_ERR_GENERIC";
    KRB5KDC_ERR_WRONG_REALM = 68, "KDC_ERR_WRONG_REALM";
    KRB5_PARSE_ILLCHAR = 133, "KRB5_PARSE_ILLCHAR";
    KRB5_PARSE_MALFORMED = 134, "KRB5_PARSE_MALFORMED";
    KRB5_CONFIG_CANTOPEN = 135, "KRB5_CONFIG_CANTOPEN";
    KRB5_CONFIG_BADFORMAT = 136, "KRB5_CONFIG_BADFORMAT";
    KRB5_CC_NOTFOUND = 141, "KRB5_CC_NOTFOUND";
    KRB5_CC_END = 142, "KRB5_CC_END";
    KRB5KRB_AP_WRONG_PRINC = 144, "KRB5KRB_AP_WRONG_PRINC";
    KRB5_KDCREP_SKEW = 148, "KRB5_KDCREP_SKEW";
    KRB5_PROG_ETYPE_NOSUPP = 150, "KRB5_PROG_ETYPE_NOSUPP";
    KRB5_REALM_UNKNOWN = 154, "KRB5_REALM_UNKNOWN";
    KRB5_KDC_UNREACH = 156, "KRB5_KDC_UNREACH";
    KRB5_RC_REPLAY = 163, "KRB5_RC_REPLAY";
    KRB5_KT_BADNAME = 179, "KRB5_KT_BADNAME";
    KRB5_KT_UNKNOWN_TYPE = 180, "KRB5_KT_UNKNOWN_TYPE";
    KRB5_KT_NOTFOUND = 181, "KRB5_KT_NOTFOUND";
    KRB5_KT_END = 182, "KRB5_KT_END";
    KRB5_KT_IOERR = 184, "KRB5_KT_IOERR";
    KRB5_FCC_NOFILE = 195, "KRB5_FCC_NOFILE";
    KRB5_KEYTAB_BADVNO = 213, "KRB5_KEYTAB_BADVNO";
    KRB5_REALM_CANT_RESOLVE = 220, "KRB5_REALM_CANT_RESOLVE";
    KRB5_CONFIG_NODEFREALM = 224, "KRB5_CONFIG_NODEFREALM";
    KRB5_KT_KVNONOTFOUND = 230, "KRB5_KT_KVNONOTFOUND";
    KRB5_KT_FORMAT = 235, "KRB5_KT_FORMAT";
    KRB5_NOPERM_ETYPE = 236, "KRB5_NOPERM_ETYPE";
    KRB5_CONFIG_ETYPE_NOSUPP = 237, "KRB5_CONFIG_ETYPE_NOSUPP";
    KRB5_EAI_FAIL = 239, "KRB5_EAI_FAIL";
    KRB5_EAI_NODATA = 240, "KRB5_EAI_NODATA";
    KRB5_EAI_NONAME = 241, "KRB5_EAI_NONAME";
    KRB5_EAI_SERVICE = 242, "KRB5_EAI_SERVICE";
}

/// The name kcd logs for a krb5 error code it knows.
pub fn name(code: i32) -> Option<&'static str> {
    NAMES.iter().find(|(c, _, _)| *c == code).map(|(_, _, shown)| *shown)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every value written here is MIT's: read from the installed header.
    #[test]
    fn every_code_is_the_one_in_mit_krb5_h() {
        let header = std::fs::read_to_string("/usr/include/krb5/krb5.h")
            .expect("MIT's krb5.h (libkrb5-dev) is needed to check the codes");
        let value = |name: &str| {
            header.lines().find_map(|l| {
                let mut words = l.split_whitespace();
                (words.next() == Some("#define") && words.next() == Some(name)).then(|| {
                    words.next().unwrap().trim_matches(|c| c == '(' || c == ')' || c == 'L').parse::<i32>().unwrap()
                })
            })
        };
        assert_eq!(value("ERROR_TABLE_BASE_krb5"), Some(BASE));
        for (code, mit, _) in NAMES {
            assert_eq!(value(mit), Some(*code), "{mit}");
        }
    }

    #[test]
    fn names_are_unique_and_protocol_numbers_are_rfc_4120s() {
        for (i, (code, _, shown)) in NAMES.iter().enumerate() {
            assert!(NAMES[..i].iter().all(|(c, _, s)| c != code && s != shown), "{shown}");
        }
        // The protocol's numbers, where RFC 4120 gives them.
        assert_eq!(KRB5KDC_ERR_BADOPTION - BASE, 13);
        assert_eq!(KRB5KRB_AP_ERR_SKEW - BASE, 37);
        assert_eq!(name(KRB5KDC_ERR_BADOPTION), Some("KDC_ERR_BADOPTION"));
        assert_eq!(name(0), None);
    }
}
