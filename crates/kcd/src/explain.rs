//! KDC errors, as MIT reports them, translated into causes and remedies an
//! Active Directory administrator can act on. ISA and TMG logged the bare
//! error code; the field learned the meanings the hard way.

use crate::error::{Error, Kind};

/// What went wrong and how to fix it, for logs and `gatehouse doctor`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explanation {
    /// The Kerberos error, e.g. `KDC_ERR_BADOPTION (13)`.
    pub code: &'static str,
    pub cause: String,
    /// The fix in Windows PowerShell (ActiveDirectory module).
    pub powershell: Vec<String>,
    /// The same fix with samba-tool, for a Samba domain.
    pub samba_tool: Vec<String>,
}

/// Explains a failure of [`crate::Delegator`], given the service account
/// (`svc-proxy`), the target SPN and the user. By the error's kind alone: the
/// message is for people.
pub fn explain(error: &Error, account: &str, spn: &str, user: &str) -> Option<Explanation> {
    let mut x = advice(error.kind(), account, spn, user)?;
    // The same kind, refused on this side (by kcd or by MIT's limit on the
    // credential) rather than by the KDC: gatehouse's own rule.
    if error.minor() == crate::codes::KRB5_NOPERM_ETYPE as u32 {
        let account = account.split('@').next().unwrap_or(account);
        x.code = "KRB5_NOPERM_ETYPE";
        x.cause = format!(
            "gatehouse uses AES only: a ticket, session key or keytab key (of {account}, of the backend's account or of the client's ticket) is RC4 or DES; \
             give the accounts AES keys and AES in msDS-SupportedEncryptionTypes, or {}",
            crate::enctypes::HATCH
        );
        x.samba_tool.push(format!(
            "samba-tool user show {account} --attributes=msDS-SupportedEncryptionTypes  # 24 = AES128 and AES256"
        ));
    }
    Some(x)
}

/// The cause and fix for a kind of failure (for checks that found it without
/// asking MIT, such as `gatehouse doctor` reading the keytab itself).
pub fn advice(kind: Kind, account: &str, spn: &str, user: &str) -> Option<Explanation> {
    let account = account.split('@').next().unwrap_or(account);
    let user = user.split('@').next().unwrap_or(user);
    Some(match kind {
        Kind::BadOption => Explanation {
            code: "KDC_ERR_BADOPTION (13)",
            cause: format!(
                "the KDC refused to delegate: either {account} may not use protocol transition \
                 (\"trust this user for delegation to specified services only, use any authentication protocol\"), \
                 or {spn} is not in its msDS-AllowedToDelegateTo list, \
                 or {user} is marked sensitive and cannot be delegated (or is in Protected Users)"
            ),
            powershell: vec![
                format!("Set-ADAccountControl -Identity {account} -TrustedToAuthForDelegation $true"),
                format!("Set-ADUser -Identity {account} -Add @{{'msDS-AllowedToDelegateTo'='{spn}'}}"),
                format!(
                    "Get-ADUser {user} -Properties AccountNotDelegated,MemberOf  # AccountNotDelegated must be False"
                ),
            ],
            samba_tool: vec![
                format!("samba-tool delegation for-any-protocol {account} on"),
                format!("samba-tool delegation add-service {account} {spn}"),
                format!("samba-tool user show {user} --attributes=userAccountControl  # no NOT_DELEGATED (0x100000)"),
            ],
        },
        Kind::ServerUnknown => Explanation {
            code: "KDC_ERR_S_PRINCIPAL_UNKNOWN (7)",
            cause: format!("no account has the SPN {spn}, or more than one does"),
            powershell: vec![format!("setspn -Q {spn}"), format!("setspn -S {spn} <backend service account>")],
            samba_tool: vec![
                "samba-tool spn list <backend service account>".to_string(),
                format!("samba-tool spn add {spn} <backend service account>"),
            ],
        },
        Kind::ClientUnknown => Explanation {
            code: "KDC_ERR_C_PRINCIPAL_UNKNOWN (6)",
            cause: format!("the KDC does not know {user} (or {account}) in this realm"),
            powershell: vec![format!("Get-ADUser {user}"), format!("Get-ADUser {account}")],
            samba_tool: vec![format!("samba-tool user show {user}"), format!("samba-tool user show {account}")],
        },
        Kind::Skew => Explanation {
            code: "KRB_AP_ERR_SKEW (37)",
            cause: "this machine's clock and the domain controller's differ by more than 5 minutes".into(),
            powershell: vec!["w32tm /query /status  # on the DC".into()],
            samba_tool: vec![
                "chronyc tracking  # on gatehouse's machine; point it at the DC or the same NTP source".into()
            ],
        },
        Kind::EtypeNoSupp => Explanation {
            code: "KDC_ERR_ETYPE_NOSUPP (14)",
            cause: format!("the keytab and the account {account} share no encryption type gatehouse uses; AES is expected (RC4 is being disabled in AD, and gatehouse refuses it unless [domain] allow_rc4 = true)"),
            powershell: vec![
                format!("Set-ADUser {account} -KerberosEncryptionType AES128,AES256"),
                ktpass(account),
            ],
            samba_tool: vec![exportkeytab(account)],
        },
        Kind::Keytab => Explanation {
            code: "keytab",
            cause: format!("the keytab is missing, empty or unreadable, or holds no key (of the current version) for {account}"),
            powershell: vec![ktpass(account)],
            samba_tool: vec![exportkeytab(account)],
        },
        Kind::PreauthFailed => Explanation {
            code: "KDC_ERR_PREAUTH_FAILED (24)",
            cause: format!("the key was refused: the keytab's key for {account} is out of date (its password or kvno changed) or was made with the wrong salt (AD's is the realm in capitals and the UPN's user part), or the user's password is wrong"),
            powershell: vec![ktpass(account)],
            samba_tool: vec![exportkeytab(account)],
        },
        Kind::Revoked => Explanation {
            code: "KDC_ERR_CLIENT_REVOKED (18)",
            cause: format!("the account {user} (or {account}) is disabled, locked out or expired"),
            powershell: vec![format!("Get-ADUser {user} -Properties Enabled,LockedOut,AccountExpirationDate")],
            samba_tool: vec![format!("samba-tool user show {user} --attributes=userAccountControl,accountExpires,lockoutTime")],
        },
        Kind::KeyExpired => Explanation {
            code: "KDC_ERR_KEY_EXPIRED (23)",
            cause: format!("the password of {user} (or {account}) has expired"),
            powershell: vec![format!("Get-ADUser {user} -Properties PasswordExpired,PasswordLastSet")],
            samba_tool: vec![format!("samba-tool user show {user} --attributes=pwdLastSet,userAccountControl")],
        },
        Kind::Unreachable => Explanation {
            code: "no KDC",
            cause: "no domain controller answered; check krb5.conf's kdc lines, DNS and the network".into(),
            powershell: vec!["nltest /dsgetdc:<domain>".into()],
            samba_tool: vec!["kinit -k -t proxy.keytab <account>  # with the same KRB5_CONFIG".into()],
        },
        Kind::Config => Explanation {
            code: "krb5.conf",
            cause: "krb5.conf cannot be read or names no default_realm; set [domain] krb5_conf to the file gatehouse should use".into(),
            powershell: vec![],
            samba_tool: vec!["KRB5_CONFIG=<that file> kinit -k -t proxy.keytab <account>".into()],
        },
        _ => return None,
    })
}

/// A new AES keytab for the account, the Windows way. ktpass sets the
/// password it is given on the account: said in the fix itself, since every
/// other keytab of the account (another gatehouse, a backup) stops working.
fn ktpass(account: &str) -> String {
    format!("ktpass -princ {account}@REALM -mapuser {account} -crypto AES256-SHA1 -ptype KRB5_NT_PRINCIPAL -pass * -out proxy.keytab  # RESETS {account}'s password: its other keytabs stop working")
}

/// The same from a Samba DC: exports the current keys, changes nothing.
fn exportkeytab(account: &str) -> String {
    format!("samba-tool domain exportkeytab proxy.keytab --principal={account}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codes::*;
    use libgssapi::error::MajorFlags;

    fn failed(step: &str, code: i32) -> Error {
        Error::gss(step, libgssapi::error::Error { major: MajorFlags::GSS_S_FAILURE, minor: code as u32 })
    }

    #[test]
    fn bad_option_names_all_three_causes_and_both_fixes() {
        let e = explain(
            &failed("S4U2Proxy (ticket for the backend)", KRB5KDC_ERR_BADOPTION),
            "svc-proxy@AD.TEST",
            "HTTP/iis.corp",
            "bob@AD.TEST",
        )
        .unwrap();
        assert_eq!(e.code, "KDC_ERR_BADOPTION (13)");
        assert!(
            e.cause.contains("protocol transition")
                && e.cause.contains("msDS-AllowedToDelegateTo")
                && e.cause.contains("sensitive")
        );
        assert!(e.powershell.iter().any(|c| c.contains("TrustedToAuthForDelegation")));
        assert!(e.samba_tool.iter().any(|c| c == "samba-tool delegation add-service svc-proxy HTTP/iis.corp"));
    }

    #[test]
    fn each_known_error_is_recognised_by_its_code() {
        for (code, shown) in [
            (KRB5KDC_ERR_S_PRINCIPAL_UNKNOWN, "KDC_ERR_S_PRINCIPAL_UNKNOWN (7)"),
            (KRB5KDC_ERR_PRINCIPAL_NOT_UNIQUE, "KDC_ERR_S_PRINCIPAL_UNKNOWN (7)"),
            (KRB5KDC_ERR_C_PRINCIPAL_UNKNOWN, "KDC_ERR_C_PRINCIPAL_UNKNOWN (6)"),
            (KRB5KRB_AP_ERR_SKEW, "KRB_AP_ERR_SKEW (37)"),
            (KRB5KDC_ERR_ETYPE_NOSUPP, "KDC_ERR_ETYPE_NOSUPP (14)"),
            (KRB5KDC_ERR_PREAUTH_FAILED, "KDC_ERR_PREAUTH_FAILED (24)"),
            (KRB5KDC_ERR_CLIENT_REVOKED, "KDC_ERR_CLIENT_REVOKED (18)"),
            (KRB5KDC_ERR_KEY_EXP, "KDC_ERR_KEY_EXPIRED (23)"),
            (KRB5_KT_NOTFOUND, "keytab"),
            (KRB5_KT_END, "keytab"),
            (KRB5_KDC_UNREACH, "no KDC"),
            (KRB5_REALM_UNKNOWN, "no KDC"),
            (KRB5_CONFIG_NODEFREALM, "krb5.conf"),
        ] {
            assert_eq!(explain(&failed("a step", code), "svc", "HTTP/x", "u").map(|e| e.code), Some(shown), "{shown}");
        }
        assert_eq!(explain(&failed("a step", 0), "svc", "HTTP/x", "u"), None);
        let refused = failed("accepting the client's Kerberos ticket", KRB5_NOPERM_ETYPE);
        let x = explain(&refused, "svc-proxy@AD.TEST", "HTTP/x", "u").unwrap();
        assert_eq!(x.code, "KRB5_NOPERM_ETYPE");
        assert!(x.cause.contains("RC4") && x.cause.contains("allow_rc4 = true only for a domain"), "{x:?}");
        assert!(x.powershell.iter().any(|l| l.contains("Set-ADUser svc-proxy -KerberosEncryptionType AES128,AES256")));
        assert!(x.samba_tool.iter().any(|l| l.contains("msDS-SupportedEncryptionTypes")));
        assert_eq!(explain(&Error::new(Kind::Replay, "replayed"), "svc", "HTTP/x", "u"), None);
    }

    /// The defect of issue 12: "keytab" in kcd's own words about the step won
    /// over the KDC that never answered, and the fix offered a new keytab.
    #[test]
    fn an_unreachable_kdc_is_explained_as_such_whatever_the_step_says() {
        let e = failed("acquiring the service credential from the keytab", KRB5_KDC_UNREACH);
        let x = explain(&e, "svc-proxy@AD.TEST", "", "").unwrap();
        assert_eq!(x.code, "no KDC");
        assert!(!x.powershell.iter().chain(&x.samba_tool).any(|l| l.contains("ktpass") || l.contains("exportkeytab")));
        // And the words of other causes in a message of another kind change nothing.
        let e = Error::new(Kind::Other, "Preauthentication failed; Cannot contact any KDC; keytab");
        assert_eq!(explain(&e, "svc", "", ""), None);
    }

    #[test]
    fn a_fix_that_resets_a_password_says_so() {
        let kinds = [
            Kind::BadOption,
            Kind::ServerUnknown,
            Kind::ClientUnknown,
            Kind::Skew,
            Kind::EtypeNoSupp,
            Kind::Keytab,
            Kind::PreauthFailed,
            Kind::Revoked,
            Kind::KeyExpired,
            Kind::Unreachable,
            Kind::Config,
        ];
        let mut resets = 0;
        for kind in kinds {
            let x = advice(kind, "svc-proxy@AD.TEST", "HTTP/b", "bob@AD.TEST").unwrap_or_else(|| panic!("{kind}"));
            for line in x.powershell.iter().chain(&x.samba_tool) {
                let sets_password = line.contains("ktpass") || line.contains("Set-ADAccountPassword");
                if sets_password {
                    resets += 1;
                    assert!(line.contains("RESETS svc-proxy's password"), "{kind}: {line}");
                }
                assert!(!line.contains("resetpassword") && !line.contains("setpassword"), "{kind}: {line}");
            }
        }
        assert!(resets >= 3, "the keytab fixes use ktpass");
    }
}
