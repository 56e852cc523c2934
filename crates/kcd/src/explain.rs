//! KDC errors, as MIT reports them, translated into causes and remedies an
//! Active Directory administrator can act on. ISA and TMG logged the bare
//! error code; the field learned the meanings the hard way.

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

/// Explains a failure message from [`crate::Delegator::token`], given the
/// service account (`svc-proxy`), the target SPN and the user.
pub fn explain(message: &str, account: &str, spn: &str, user: &str) -> Option<Explanation> {
    let account = account.split('@').next().unwrap_or(account);
    let user = user.split('@').next().unwrap_or(user);
    let m = message;
    if m.contains("KDC can't fulfill requested option") {
        return Some(Explanation {
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
        });
    }
    if m.contains("Server not found in Kerberos database") {
        return Some(Explanation {
            code: "KDC_ERR_S_PRINCIPAL_UNKNOWN (7)",
            cause: format!("no account has the SPN {spn}, or more than one does"),
            powershell: vec![format!("setspn -Q {spn}"), format!("setspn -S {spn} <backend service account>")],
            samba_tool: vec![
                format!("samba-tool spn list <backend service account>"),
                format!("samba-tool spn add {spn} <backend service account>"),
            ],
        });
    }
    if m.contains("Client not found in Kerberos database") {
        return Some(Explanation {
            code: "KDC_ERR_C_PRINCIPAL_UNKNOWN (6)",
            cause: format!("the KDC does not know {user} (or {account}) in this realm"),
            powershell: vec![format!("Get-ADUser {user}"), format!("Get-ADUser {account}")],
            samba_tool: vec![format!("samba-tool user show {user}"), format!("samba-tool user show {account}")],
        });
    }
    if m.contains("Clock skew too great") {
        return Some(Explanation {
            code: "KRB_AP_ERR_SKEW (37)",
            cause: "this machine's clock and the domain controller's differ by more than 5 minutes".into(),
            powershell: vec!["w32tm /query /status  # on the DC".into()],
            samba_tool: vec![
                "chronyc tracking  # on gatehouse's machine; point it at the DC or the same NTP source".into()
            ],
        });
    }
    if m.contains("encryption type") || m.contains("KDC has no support for") {
        return Some(Explanation {
            code: "KDC_ERR_ETYPE_NOSUPP (14)",
            cause: format!("the keytab and the account {account} share no encryption type; AES is expected (RC4 is being disabled in AD)"),
            powershell: vec![
                format!("Set-ADUser {account} -KerberosEncryptionType AES128,AES256"),
                ktpass(account),
            ],
            samba_tool: vec![exportkeytab(account)],
        });
    }
    if m.contains("No key table entry found") || m.contains("Key table file") || m.contains("keytab") {
        return Some(Explanation {
            code: "keytab",
            cause: format!("the keytab cannot be read or holds no key for {account}"),
            powershell: vec![ktpass(account)],
            samba_tool: vec![exportkeytab(account)],
        });
    }
    if m.contains("Preauthentication failed") || m.contains("Password incorrect") {
        return Some(Explanation {
            code: "KDC_ERR_PREAUTH_FAILED (24)",
            cause: format!("the keytab's key for {account} is out of date (the password or kvno changed)"),
            powershell: vec![ktpass(account)],
            samba_tool: vec![exportkeytab(account)],
        });
    }
    if m.contains("Cannot contact any KDC") || m.contains("Cannot find KDC") {
        return Some(Explanation {
            code: "no KDC",
            cause: "no domain controller answered; check krb5.conf's kdc lines, DNS and the network".into(),
            powershell: vec!["nltest /dsgetdc:<domain>".into()],
            samba_tool: vec!["kinit -k -t proxy.keytab <account>  # with the same KRB5_CONFIG".into()],
        });
    }
    None
}

/// A new AES keytab for the account, the Windows way.
fn ktpass(account: &str) -> String {
    format!("ktpass -princ {account}@REALM -mapuser {account} -crypto AES256-SHA1 -ptype KRB5_NT_PRINCIPAL -pass * -out proxy.keytab")
}

/// The same from a Samba DC.
fn exportkeytab(account: &str) -> String {
    format!("samba-tool domain exportkeytab proxy.keytab --principal={account}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_option_names_all_three_causes_and_both_fixes() {
        let e = explain(
            "S4U2Proxy (ticket for the backend): Unspecified GSS failure.  Minor code may provide more information (KDC can't fulfill requested option)",
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
    fn each_known_error_is_recognised() {
        for (msg, code) in [
            ("Server not found in Kerberos database", "KDC_ERR_S_PRINCIPAL_UNKNOWN (7)"),
            ("Client not found in Kerberos database", "KDC_ERR_C_PRINCIPAL_UNKNOWN (6)"),
            ("Clock skew too great", "KRB_AP_ERR_SKEW (37)"),
            ("KDC has no support for encryption type", "KDC_ERR_ETYPE_NOSUPP (14)"),
            ("Preauthentication failed", "KDC_ERR_PREAUTH_FAILED (24)"),
            ("Cannot contact any KDC for realm 'AD.TEST'", "no KDC"),
        ] {
            assert_eq!(explain(msg, "svc", "HTTP/x", "u").map(|e| e.code), Some(code), "{msg}");
        }
        assert_eq!(explain("something else entirely", "svc", "HTTP/x", "u"), None);
    }
}
