//! Real clients' NTLM logons (the shared interop captures, replayed through
//! the acceptor with `ntlm`'s test-only `replay` feature) checked against a
//! users file: the sign-in names clients really send reach the file's line
//! for the account, and the user is named after it. The cryptography of each
//! capture is crates/ntlm/tests/captures.rs's; here it is the account.
//!
//! The folder is `../shared/interop-captures` beside the repository. Without
//! it these tests say so loudly on standard error and skip, or fail when
//! `GATEHOUSE_CAPTURES_REQUIRED=1`.

use std::io::Write;
use std::path::PathBuf;

use base64::Engine;

use super::*;

fn captures() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/interop-captures");
    if dir.join("run_checks.py").is_file() {
        return Some(dir);
    }
    let why = format!("the interop captures are not at {}", dir.display());
    if std::env::var("GATEHOUSE_CAPTURES_REQUIRED").is_ok_and(|v| v == "1") {
        panic!("{why} (GATEHOUSE_CAPTURES_REQUIRED=1)");
    }
    let _ = writeln!(
        std::io::stderr().lock(),
        "\n*** CAPTURE TEST SKIPPED: {why}: real clients' sign-in names were not checked against a users file ***\n"
    );
    None
}

fn ours(realm: &str, netbios: &str) -> Domain {
    Domain {
        realm: realm.into(),
        netbios_name: netbios.into(),
        computer_netbios: "GATEHOUSE".into(),
        computer_dns: "gatehouse.example".into(),
        krb5_conf: None,
        keytab: None,
        service_principal: None,
        acceptor_spn: Vec::new(),
        allow_rc4: false,
        credential_cache_size: kcd::DEFAULT_CACHE_SIZE,
    }
}

/// The capture's AUTHENTICATE, read by the acceptor after its NEGOTIATE and
/// CHALLENGE (08 has neither: a NEGOTIATE and a CHALLENGE carrying the
/// captured server challenge stand in; that client sends no MIC over them).
/// Also the client's own timestamp, as the clock (time is the ntlm crate's
/// test, as are channel bindings; this one is about accounts).
fn received(name: &str) -> Option<(AuthenticateReceived, ntlm::FileTime)> {
    let dir = captures()?;
    let j: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join(name)).unwrap()).unwrap();
    let b64 = |key: &str| j[key].as_str().map(|v| base64::engine::general_purpose::STANDARD.decode(v).unwrap());
    let authenticate = b64("authenticate_b64").unwrap();
    let (negotiate, challenge) = match (b64("negotiate_b64"), b64("challenge_b64")) {
        (Some(n), Some(c)) => (n, c),
        _ => {
            let server: Vec<u8> = (0..8)
                .map(|i| {
                    u8::from_str_radix(&j["server_challenge_hex"].as_str().unwrap()[2 * i..2 * i + 2], 16).unwrap()
                })
                .collect();
            let mut challenge = b"NTLMSSP\0\x02\0\0\0\0\0\0\0\x30\0\0\0\0\0\0\0".to_vec();
            challenge.extend_from_slice(&server);
            challenge.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x30, 0, 0, 0]);
            (b"NTLMSSP\0\x01\0\0\0\0\0\0\0".to_vec(), challenge)
        }
    };
    // Channel bindings are not this test's subject either (07 sends them).
    let config =
        ntlm::AcceptorConfig { channel_binding: ntlm::ChannelBindingPolicy::Off, ..ntlm::AcceptorConfig::example() };
    let sent = ntlm::ChallengeSent::replay(&config, &negotiate, &challenge).unwrap();
    let nt_at = u32::from_le_bytes(authenticate[24..28].try_into().unwrap()) as usize;
    let time = u64::from_le_bytes(authenticate[nt_at + 24..nt_at + 32].try_into().unwrap());
    Some((sent.read_authenticate(&authenticate).unwrap(), ntlm::FileTime(time)))
}

/// Accepted with `file` under `domain`, as `name`.
fn reaches(capture: &str, domain: &Domain, file: &str, name: &str) {
    let Some((received, now)) = received(capture) else { return };
    let users = UserFile::parse(file).unwrap();
    let key = check_file(&users, &received, Some(domain)).unwrap_or_else(|e| panic!("{capture}: {e:?}"));
    assert_eq!(file_account(&received.domain, &received.user, Some(domain)).name(), name, "{capture}");
    received.finish(key, None, now).unwrap_or_else(|e| panic!("{capture}: {e}"));
}

fn refused(capture: &str, domain: &Domain, file: &str) -> (String, Evidence) {
    let (received, _) = received(capture).unwrap();
    match check_file(&UserFile::parse(file).unwrap(), &received, Some(domain)) {
        Err(CheckError::Rejected(why, evidence)) => (why, evidence),
        other => panic!("{capture}: {other:?}"),
    }
}

/// Windows 11 24H2, Server 2019 SSPI and gss-ntlmssp sign in as
/// `user@REALM` with an empty domain field: the file's line for the account
/// of our domain answers, and the user is `DOMAIN\user`.
#[test]
fn upn_with_an_empty_domain_reaches_the_account() {
    for (capture, realm, netbios, account, password) in [
        ("01_winrmnet_win11_24h2_ntlm_full.json", "DAN.VMCLOUD", "DAN", "cbatt-adm", "root4EDMZ"),
        ("02_pyspnego_sspi_ws2019_ntlm_raw.json", "DOMAIN.LOCAL", "DOMAIN", "vagrant-domain", "VagrantPass1"),
        ("05_pyspnego_gssntlmssp_spnego_ntlm.json", "DOMAIN.LOCAL", "DOMAIN", "vagrant-domain", "VagrantPass1"),
    ] {
        if captures().is_none() {
            return;
        }
        let d = ours(realm, netbios);
        let line = format!("{netbios}:{account}:{password}\n");
        reaches(capture, &d, &line, &format!("{netbios}\\{account}"));
        // A line for any domain, and one naming the UPN itself, answer too.
        reaches(capture, &d, &format!(":{account}:{password}\n"), &format!("{netbios}\\{account}"));
        reaches(capture, &d, &format!(":{account}@{realm}:{password}\n"), &format!("{netbios}\\{account}"));
        // Another domain's account of that name is not this user's.
        let (why, evidence) = refused(capture, &d, &format!("OTHER:{account}:{password}\n"));
        assert_eq!((why.as_str(), evidence), ("unknown user", Evidence::Unproven), "{capture}");
        // The account with another password: the proof does not match.
        let (why, evidence) = refused(capture, &d, &format!("{netbios}:{account}:not-{password}\n"));
        assert!(why.contains("proof does not match"), "{capture}: {why}");
        assert_eq!(evidence, Evidence::Account);
        // Where the suffix is not our realm, the UPN is only a UPN.
        let elsewhere = ours("ELSEWHERE.TEST", netbios);
        assert_eq!(refused(capture, &elsewhere, &line).0, "unknown user", "{capture}");
    }
}

/// macOS Heimdal names the domain by its DNS name: our realm, so our
/// NetBIOS domain's line.
#[test]
fn macos_heimdal_reaches_the_account() {
    let capture = "04_pyspnego_macos_heimdal_ntlm.json";
    let d = ours("DOMAIN.LOCAL", "DOMAIN");
    reaches(capture, &d, "DOMAIN:vagrant-domain:VagrantPass1\n", "DOMAIN\\vagrant-domain");
    // A file that names the domain as the client did still answers.
    reaches(capture, &d, "DOMAIN.LOCAL:vagrant-domain:VagrantPass1\n", "DOMAIN\\vagrant-domain");
    if captures().is_some() {
        assert_eq!(refused(capture, &d, "OTHER:vagrant-domain:VagrantPass1\n").0, "unknown user");
    }
}

/// NetBIOS `DOMAIN\user` logons (Server 2019 over SMB, Windows 8.1 and 7 over
/// HTTP), and Windows XP, whose proof is over no domain although it names its
/// computer (Samba's rule, in the acceptor): an smbpasswd line (any domain).
#[test]
fn netbios_logons_and_windows_xp_reach_the_account() {
    let d = ours("DOMAIN.LOCAL", "DOMAIN");
    reaches(
        "03_pyspnego_sspi_ws2019_smb_spnego.json",
        &d,
        "DOMAIN:vagrant-domain:VagrantPass1\n",
        "DOMAIN\\vagrant-domain",
    );
    reaches("06_freerdp_win81_http_ntlm.json", &d, "DOMAIN:Username:P4ss123!\n", "DOMAIN\\Username");
    reaches("07_gssntlmssp_win7_http_cbt.json", &d, "WS2008R2:Administrator:P@ssw0rd\n", "WS2008R2\\Administrator");
    let xp =
        "TESTUSER:1000:XXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX:D183983EAEA7BE9959C8F4C198ED0E68:[U          ]:LCT-00000000:\n";
    reaches("08_heimdal_winxp_sp3_ntlmv2_authenticate_only.json", &d, xp, "COLLEY-XP4\\TESTUSER");
    if captures().is_some() {
        let (why, _) = refused("08_heimdal_winxp_sp3_ntlmv2_authenticate_only.json", &d, &xp.replace("D1", "D0"));
        assert!(why.contains("proof does not match"), "{why}");
    }
}
