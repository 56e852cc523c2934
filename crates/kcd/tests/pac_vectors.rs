//! The logon information parser against real Windows PACs: the tickets in the
//! shared interop captures (Kerberos.NET's test data, MIT licence), decrypted
//! at test time by the capture folder's own verifier, so that only the
//! expected values live here. Each vector is also parsed with every byte
//! changed and every truncation.
//!
//! The folder is `../shared/interop-captures` beside the repository (there in
//! CI). Without it these tests say so loudly on standard error and skip, or
//! fail when `GATEHOUSE_CAPTURES_REQUIRED=1` (a checkout whose layout is not
//! CI's must not fail for a folder outside the project).

use std::path::PathBuf;
use std::process::Command;

use kcd::{parse_logon_info, LogonInfo};

fn captures() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/interop-captures");
    if dir.join("verify_krb.py").is_file() {
        return Some(dir);
    }
    let why = format!("the interop captures are not at {}", dir.display());
    if std::env::var("GATEHOUSE_CAPTURES_REQUIRED").is_ok_and(|v| v == "1") {
        panic!("{why} (GATEHOUSE_CAPTURES_REQUIRED=1)");
    }
    eprintln!("\n*** CAPTURE TEST SKIPPED: {why}: the Windows PAC vectors did not run ***\n");
    None
}

/// The logon information buffer of the capture's ticket.
fn logon_info_buffer(dir: &PathBuf, capture: &str) -> Vec<u8> {
    let python = std::env::var("GATEHOUSE_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/pac_from_capture.py");
    let out = Command::new(&python)
        .arg(&script)
        .arg(dir)
        .arg(dir.join(capture))
        .output()
        .unwrap_or_else(|e| panic!("running {python} (set GATEHOUSE_PYTHON to a Python with `cryptography`): {e}"));
    assert!(out.status.success(), "{python} {}: {}", script.display(), String::from_utf8_lossy(&out.stderr));
    let hex = String::from_utf8(out.stdout).unwrap();
    let hex = hex.trim();
    assert!(!hex.is_empty() && !hex.contains('\n'), "one logon information buffer expected: {hex:?}");
    (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect()
}

fn sids(info: &LogonInfo) -> Vec<String> {
    info.group_sids().iter().map(|g| g.sid.to_string()).collect()
}

fn mutations_answer(good: &[u8]) {
    for n in 0..good.len() {
        assert!(parse_logon_info(&good[..n]).is_err(), "truncated to {n} of {} bytes", good.len());
    }
    for i in 0..good.len() {
        for v in [1u8, 0x80, 0xff] {
            let mut b = good.to_vec();
            b[i] ^= v;
            let _ = parse_logon_info(&b);
        }
    }
}

/// Windows 10-era client, RC4 ticket: Administrator of IDENTITYINTERVENTION,
/// with extra SIDs and a resource group (UserFlags 0x220).
#[test]
fn windows_10_administrator() {
    let Some(dir) = captures() else { return };
    let buf = logon_info_buffer(&dir, "09_kerberosnet_win10_spnego_krb5_rc4_pac_cb.json");
    let info = parse_logon_info(&buf).unwrap();
    eprintln!("{info:#?}\n{:#?}", sids(&info));
    assert_eq!(info.account, "Administrator");
    assert_eq!(info.logon_domain, "IDENTITYINTER");
    assert_eq!(info.user_flags, 0x220);
    let domain = info.domain_sid.to_string();
    assert_eq!(info.user_sid().to_string(), format!("{domain}-500"));
    assert_eq!(info.primary_group_sid().to_string(), format!("{domain}-513"));
    assert_eq!(domain, "S-1-5-21-842315761-3748032240-3360761689");
    assert_eq!(info.logon_server, "DC01");
    let d = |rid: u32| format!("{domain}-{rid}");
    // Domain Users, Domain Admins, Group Policy Creator Owners, Enterprise
    // Admins, Schema Admins; then the extra SIDs (claims valid, authentication
    // authority asserted identity), then a domain local group, compressed as a
    // resource group (SE_GROUP_RESOURCE) of the same domain.
    let expected = [d(513), d(512), d(520), d(519), d(518), "S-1-5-21-0-0-0-497".into(), "S-1-18-1".into(), d(572)];
    assert_eq!(sids(&info), expected);
    assert_eq!(info.resource_domain.as_ref().unwrap().to_string(), domain);
    assert_eq!(info.resource_groups[0].attributes, 0x2000_0007);
    mutations_answer(&buf);
}

/// Windows (2009) client, AES256 ticket: user.test of DOMAIN, eleven groups
/// and seven extra SIDs (UserFlags 0x20), no resource groups.
#[test]
fn windows_2009_user() {
    let Some(dir) = captures() else { return };
    let buf = logon_info_buffer(&dir, "10_kerberosnet_spnego_krb5_aes256.json");
    let info = parse_logon_info(&buf).unwrap();
    eprintln!("{info:#?}\n{:#?}", sids(&info));
    assert_eq!(info.account, "user.test");
    assert_eq!(info.full_name, "User Test");
    assert_eq!(info.logon_domain, "DOMAIN");
    assert_eq!(info.user_flags, 0x20);
    let domain = "S-1-5-21-4028881986-3284141023-698984075";
    assert_eq!(info.domain_sid.to_string(), domain);
    assert_eq!(info.user_sid().to_string(), format!("{domain}-1106"));
    assert_eq!(info.logon_server, "WS2008");
    let rids = [513, 514, 1104, 516, 515, 520, 512, 521, 518, 519, 498, 572, 571, 1001, 1000, 517, 1103, 553];
    let expected: Vec<String> = rids.iter().map(|r| format!("{domain}-{r}")).collect();
    assert_eq!(sids(&info), expected);
    // The last seven (domain local groups, as Windows 2008 put them) are extra SIDs.
    assert_eq!(info.extra_sids.len(), 7);
    assert!(info.extra_sids.iter().all(|g| g.attributes == 0x2000_0007));
    mutations_answer(&buf);
}
