//! Real clients' SPNEGO tokens, from the shared interop captures (public
//! projects' test data; each file names its source and licence):
//!
//! - NTLM inside SPNEGO from Windows Server 2019 SSPI (03) and Fedora's
//!   gss-ntlmssp (05), with all their tokens: each parsed as gatehouse parses
//!   a client's, the server's replies written by gatehouse's encoder byte for
//!   byte as Windows wrote them, the NTLM handshake replayed through the NTLM
//!   acceptor, and both mechListMICs checked and made the way
//!   `gatehouse::auth::negotiate` checks and makes them;
//! - Kerberos NegTokenInits from Windows (09, RC4; 10, AES256): the mechanism
//!   list and the AP-REQ fields gatehouse reads before MIT sees the token
//!   (accepting them with MIT is crates/kcd/tests/captures.rs).
//!
//! The folder is `../shared/interop-captures` beside the repository. Without
//! it these tests say so loudly on standard error and skip, or fail when
//! `GATEHOUSE_CAPTURES_REQUIRED=1`. The Kerberos checks run the capture
//! folder's Python verifier (`GATEHOUSE_PYTHON`, default `python3`, with the
//! `cryptography` package) to find the authenticator independently.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine;
use ntlm::{AcceptorConfig, ChallengeSent, FileTime, Session};
use serde_json::Value;
use spnego::{encode_init, encode_resp, kerberos_ap_req, parse_client_token, ClientToken, NegState, Oid};

fn captures() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/interop-captures");
    if dir.join("verify_krb.py").is_file() {
        return Some(dir);
    }
    let why = format!("the interop captures are not at {}", dir.display());
    if std::env::var("GATEHOUSE_CAPTURES_REQUIRED").is_ok_and(|v| v == "1") {
        panic!("{why} (GATEHOUSE_CAPTURES_REQUIRED=1)");
    }
    // Past libtest's capture: a skipped test must be seen.
    let _ = writeln!(
        std::io::stderr().lock(),
        "\n*** CAPTURE TEST SKIPPED: {why}: real clients' SPNEGO tokens were not parsed ***\n"
    );
    None
}

fn load(dir: &Path, name: &str) -> Value {
    let text = std::fs::read_to_string(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn b64(v: &Value) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD.decode(v.as_str().expect("a base64 string")).unwrap()
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

fn init(token: &[u8]) -> spnego::NegTokenInit {
    match parse_client_token(token) {
        Ok(ClientToken::Init(i)) => i,
        other => panic!("not a NegTokenInit: {other:?}"),
    }
}

fn resp(token: &[u8]) -> spnego::NegTokenResp {
    match parse_client_token(token) {
        Ok(ClientToken::Resp(r)) => r,
        other => panic!("not a NegTokenResp: {other:?}"),
    }
}

/// No truncation of a real token parses, and no changed byte panics.
fn mutations_answer(token: &[u8]) {
    for n in 0..token.len() {
        assert!(parse_client_token(&token[..n]).is_err(), "truncated to {n} of {} bytes", token.len());
        let _ = kerberos_ap_req(&token[..n]);
    }
    for i in 0..token.len() {
        for bit in [0x01, 0x80, 0xff] {
            let mut t = token.to_vec();
            t[i] ^= bit;
            let _ = parse_client_token(&t);
            let _ = kerberos_ap_req(&t);
        }
    }
}

/// The server's clock when it sent the CHALLENGE (its MsvAvTimestamp): the
/// clock injected into the acceptor.
fn challenge_time(challenge: &[u8]) -> FileTime {
    let len = u16::from_le_bytes([challenge[40], challenge[41]]) as usize;
    let at = u32::from_le_bytes(challenge[44..48].try_into().unwrap()) as usize;
    let info = ntlm::av::AvPairs::parse(&challenge[at..at + len]).unwrap();
    FileTime(u64::from_le_bytes(info.get(ntlm::av::TIMESTAMP).unwrap().try_into().unwrap()))
}

/// The SPNEGO exchange of an NTLM capture, leg by leg, as gatehouse's
/// Negotiate acceptor runs it.
fn ntlm_inside_spnego(name: &str) {
    let Some(dir) = captures() else { return };
    let c = load(&dir, name);
    let t = &c["spnego_tokens_b64"];
    let mics = &c["spnego_mechListMIC"];
    let mech_types_der = hex(mics["mechTypes_der_hex"].as_str().unwrap());

    // 1. The client's NegTokenInit: NTLM alone, its NEGOTIATE as the optimistic token.
    let first = b64(&t["client_negTokenInit"]);
    let i = init(&first);
    assert_eq!(i.mech_types, vec![Oid(spnego::NTLMSSP.to_vec())], "{name}");
    assert_eq!(i.mech_types_der, mech_types_der, "{name}: the bytes the mechListMIC covers");
    assert_eq!(i.mech_token.as_deref(), Some(&b64(&c["negotiate_b64"])[..]), "{name}");
    assert_eq!(i.mech_list_mic, None, "{name}");

    // 2. The server's CHALLENGE, in a NegTokenResp gatehouse would write the same.
    let second = b64(&t["server_negTokenResp_challenge"]);
    let r = resp(&second);
    assert_eq!(r.neg_state, Some(NegState::AcceptIncomplete), "{name}");
    assert_eq!(r.supported_mech, Some(Oid(spnego::NTLMSSP.to_vec())), "{name}");
    let challenge = r.response_token.clone().unwrap();
    assert_eq!(challenge, b64(&c["challenge_b64"]), "{name}");
    assert_eq!(r.mech_list_mic, None, "{name}");
    assert_eq!(encode_resp(&r), second, "{name}: gatehouse's encoding differs from Windows'");

    // 3. The client's AUTHENTICATE with its mechListMIC. (05's client says
    // accept-incomplete here; gatehouse reads only the token and the MIC.)
    let third = b64(&t["client_negTokenResp_authenticate"]);
    let r = resp(&third);
    let authenticate = r.response_token.clone().unwrap();
    assert_eq!(authenticate, b64(&c["authenticate_b64"]), "{name}");
    let client_mic = r.mech_list_mic.clone().unwrap();
    assert_eq!(client_mic, hex(mics["client_hex"].as_str().unwrap()), "{name}");

    // 4. The server's accept-complete with its own mechListMIC.
    let fourth = b64(&t["server_negTokenResp_accept_complete"]);
    let done = resp(&fourth);
    assert_eq!(done.neg_state, Some(NegState::AcceptCompleted), "{name}");
    let server_mic = done.mech_list_mic.clone().unwrap();
    assert_eq!(server_mic, hex(mics["server_hex"].as_str().unwrap()), "{name}");
    assert_eq!(encode_resp(&done), fourth, "{name}: gatehouse's encoding differs from Windows'");

    // The NTLM handshake through the acceptor, then the mechListMICs.
    let password = c["password"].as_str().unwrap();
    let now = challenge_time(&challenge);
    let cfg = AcceptorConfig::example();
    let sent = ChallengeSent::replay(&cfg, i.mech_token.as_deref().unwrap(), &challenge).unwrap();
    let received = sent.read_authenticate(&authenticate).unwrap();
    let key = received.verify_with_nt_hash(&ntlm::crypto::nt_hash(password)).unwrap();
    let who = received.finish(key, None, now).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(who.user, c["user"].as_str().unwrap(), "{name}");
    let session = || Session::new(&who.session_key).unwrap();
    let mut s = session();
    assert_eq!(s.verify(&i.mech_types_der, &client_mic), Ok(()), "{name}: the client's mechListMIC");
    assert_eq!(s.sign(&i.mech_types_der).to_vec(), server_mic, "{name}: gatehouse's mechListMIC is not the server's");

    // Each byte of the client's mechListMIC.
    for n in 0..client_mic.len() {
        let mut mic = client_mic.clone();
        mic[n] ^= 0x01;
        assert_eq!(session().verify(&i.mech_types_der, &mic), Err(ntlm::Error::BadSignature), "{name}: byte {n}");
    }
    // A mechanism list that is not the one the client signed: Kerberos put
    // back in front of NTLM (as if an attacker had taken it out), or one byte changed.
    let with_kerberos = init(&encode_init(&[spnego::MS_KRB5, spnego::NTLMSSP], None, None)).mech_types_der;
    assert_eq!(session().verify(&with_kerberos, &client_mic), Err(ntlm::Error::BadSignature), "{name}");
    for n in 0..i.mech_types_der.len() {
        let mut der = i.mech_types_der.clone();
        der[n] ^= 0x01;
        assert_eq!(session().verify(&der, &client_mic), Err(ntlm::Error::BadSignature), "{name}: byte {n}");
    }

    for token in [&first, &second, &third, &fourth] {
        mutations_answer(token);
    }
}

#[test]
fn windows_server_2019_ntlm_inside_spnego() {
    ntlm_inside_spnego("03_pyspnego_sspi_ws2019_smb_spnego.json");
}

#[test]
fn gss_ntlmssp_ntlm_inside_spnego() {
    ntlm_inside_spnego("05_pyspnego_gssntlmssp_spnego_ntlm.json");
}

/// Over SMB, Windows' server speaks first with a NegTokenInit2 (MS-SPNG):
/// field 3 is negHints there, not a mechListMIC. A client never sends one,
/// and gatehouse, which reads only clients' tokens, refuses it as malformed.
#[test]
fn the_servers_neg_token_init2_is_not_a_client_token() {
    let Some(dir) = captures() else { return };
    let c = load(&dir, "03_pyspnego_sspi_ws2019_smb_spnego.json");
    let token = b64(&c["spnego_tokens_b64"]["server_negTokenInit2"]);
    assert_eq!(parse_client_token(&token), Err(spnego::Error::Malformed("mechListMIC")));
    mutations_answer(&token);
}

/// `1.2.840.48018.1.2.2` from `ms-krb5(1.2.840.48018.1.2.2)`.
fn dotted(named: &str) -> &str {
    named.split_once('(').and_then(|(_, rest)| rest.strip_suffix(')')).unwrap_or(named)
}

/// What the capture folder's verifier says the AP-REQ holds.
fn ap_req_by_verifier(dir: &Path, name: &str) -> Value {
    let python = std::env::var("GATEHOUSE_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/ap_req_from_capture.py");
    let out = Command::new(&python)
        .arg(&script)
        .arg(dir)
        .arg(dir.join(name))
        .output()
        .unwrap_or_else(|e| panic!("running {python} (set GATEHOUSE_PYTHON to a Python with `cryptography`): {e}"));
    assert!(out.status.success(), "{python} {}: {}", script.display(), String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn kerberos_init(name: &str) {
    let Some(dir) = captures() else { return };
    let c = load(&dir, name);
    let token = b64(&c["negtokeninit_b64"]);
    let i = init(&token);
    let listed: Vec<String> = i.mech_types.iter().map(Oid::to_string).collect();
    let expected: Vec<&str> = c["mech_types"].as_array().unwrap().iter().map(|m| dotted(m.as_str().unwrap())).collect();
    assert_eq!(listed, expected, "{name}");
    // Windows lists its misspelt Kerberos OID first: gatehouse takes it as Kerberos.
    assert_eq!(i.mech_types[0].0, spnego::MS_KRB5, "{name}");
    assert!(i.mech_types[0].is_kerberos() && i.mech_types[1].is_kerberos(), "{name}");
    assert!(i.mech_types.last().unwrap().is_ntlm(), "{name}");
    assert_eq!(i.mech_list_mic, None, "{name}");

    let ap = i.mech_token.unwrap();
    assert_eq!(parse_client_token(&ap), Ok(ClientToken::RawKerberos), "{name}");
    let read = kerberos_ap_req(&ap).unwrap();
    let (spn, realm) = c["service_principal"].as_str().unwrap().split_once('@').unwrap();
    assert_eq!((read.service.as_str(), read.realm.as_str()), (spn, realm), "{name}");
    assert_eq!(Some(i64::from(read.ticket_enctype)), c["ticket"]["ticket_etype"].as_i64(), "{name}");
    let by_verifier = ap_req_by_verifier(&dir, name);
    assert_eq!((by_verifier["service"].as_str(), by_verifier["realm"].as_str()), (Some(spn), Some(realm)));
    assert_eq!(read.authenticator, hex(by_verifier["authenticator_hex"].as_str().unwrap()), "{name}");
    // The authenticator is the token's own bytes (the replay cache keys on them).
    let start = read.authenticator.as_ptr() as usize - ap.as_ptr() as usize;
    assert!(start + read.authenticator.len() <= ap.len(), "{name}");
    // The whole NegTokenInit is no AP-REQ: the caller unwraps SPNEGO first.
    assert_eq!(kerberos_ap_req(&token), Err(spnego::Error::UnknownMechanism), "{name}");
    mutations_answer(&token);
    mutations_answer(&ap);
}

/// Windows 10-era Negotiate with RC4, a PAC and channel bindings; NEGOEX listed.
#[test]
fn windows_10_kerberos_rc4() {
    kerberos_init("09_kerberosnet_win10_spnego_krb5_rc4_pac_cb.json");
}

/// Windows (2009) Negotiate with AES256.
#[test]
fn windows_kerberos_aes256() {
    kerberos_init("10_kerberosnet_spnego_krb5_aes256.json");
}
