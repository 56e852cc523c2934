//! Real clients' NTLM handshakes through the acceptor that serves gatehouse's
//! clients: Windows 11 24H2, Server 2019, 8.1 and 7 SSPI, Windows XP SP3,
//! macOS 10.15 Heimdal and Fedora's gss-ntlmssp, from the shared interop
//! captures (public projects' test data, each file naming its source and
//! licence). Nothing of them is kept in this repository: the files are read
//! at test time, and what is asserted comes from the files themselves (the
//! names, the NT hash, the exported session key that the capture folder's own
//! Python verifier checked).
//!
//! Each handshake is rebuilt with [`ChallengeSent::replay`] (the captured
//! NEGOTIATE and CHALLENGE, byte for byte, so that the MIC covers what the
//! client saw) and then goes through the serving path: `read_authenticate`,
//! `verify_with_nt_hash`, `finish` with the capture's time as the clock. Every
//! capture must be accepted, and every tampered variant refused with the
//! error that names what was changed.
//!
//! The folder is `../shared/interop-captures` beside the repository. Without
//! it these tests say so loudly on standard error and skip, or fail when
//! `GATEHOUSE_CAPTURES_REQUIRED=1`.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine;
use ntlm::{crypto, AcceptorConfig, Authenticated, ChallengeSent, ChannelBindingPolicy, Error, FileTime, SessionKey};
use serde_json::Value;

fn captures() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/interop-captures");
    if dir.join("run_checks.py").is_file() {
        return Some(dir);
    }
    let why = format!("the interop captures are not at {}", dir.display());
    if std::env::var("GATEHOUSE_CAPTURES_REQUIRED").is_ok_and(|v| v == "1") {
        panic!("{why} (GATEHOUSE_CAPTURES_REQUIRED=1)");
    }
    // Past libtest's capture: a skipped test must be seen.
    let _ = writeln!(
        std::io::stderr().lock(),
        "\n*** CAPTURE TEST SKIPPED: {why}: real clients' NTLM handshakes were not replayed ***\n"
    );
    None
}

/// The NTLM captures, each tested below by name.
const NTLM_CAPTURES: [&str; 8] = [
    "01_winrmnet_win11_24h2_ntlm_full.json",
    "02_pyspnego_sspi_ws2019_ntlm_raw.json",
    "03_pyspnego_sspi_ws2019_smb_spnego.json",
    "04_pyspnego_macos_heimdal_ntlm.json",
    "05_pyspnego_gssntlmssp_spnego_ntlm.json",
    "06_freerdp_win81_http_ntlm.json",
    "07_gssntlmssp_win7_http_cbt.json",
    "08_heimdal_winxp_sp3_ntlmv2_authenticate_only.json",
];

/// The Kerberos captures: crates/spnego/tests/captures.rs and
/// crates/kcd/tests/captures.rs.
const KERBEROS_CAPTURES: [&str; 2] =
    ["09_kerberosnet_win10_spnego_krb5_rc4_pac_cb.json", "10_kerberosnet_spnego_krb5_aes256.json"];

fn hex(s: &str) -> Vec<u8> {
    assert!(s.len() % 2 == 0, "odd hex {s:?}");
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

fn hex16(s: &str) -> [u8; 16] {
    hex(s).try_into().unwrap_or_else(|v: Vec<u8>| panic!("{} bytes, not 16: {s}", v.len()))
}

fn u16_at(b: &[u8], at: usize) -> usize {
    u16::from_le_bytes([b[at], b[at + 1]]) as usize
}

fn u32_at(b: &[u8], at: usize) -> usize {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]) as usize
}

/// Where the security buffer at `at` points: (offset, length).
fn buffer(msg: &[u8], at: usize) -> (usize, usize) {
    (u32_at(msg, at + 4), u16_at(msg, at))
}

/// `2025-05-28T20:49:18.348454Z` (UTC, as the captures write it) as a FileTime.
fn filetime(iso: &str) -> FileTime {
    let num = |s: &str| s.parse::<i64>().unwrap_or_else(|_| panic!("not a time: {iso}"));
    let (date, time) = iso.trim_end_matches('Z').split_once('T').unwrap();
    let d: Vec<i64> = date.split('-').map(num).collect();
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let t: Vec<i64> = hms.split(':').map(num).collect();
    // Days since 1970-01-01 in the proleptic Gregorian calendar (March-based
    // years, so that the leap day ends a year).
    let (y, m) = if d[1] <= 2 { (d[0] - 1, d[1] + 9) } else { (d[0], d[1] - 3) };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + d[2] - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
    let seconds = days * 86_400 + t[0] * 3600 + t[1] * 60 + t[2];
    let nanos = num(&format!("{frac:0<9}")[..9]) as u32;
    FileTime::from_unix(seconds as u64, nanos)
}

#[test]
fn capture_times_are_read_right() {
    // The Unix epoch in Windows time, and one capture's MsvAvTimestamp as its
    // CHALLENGE carries it (01: 7ec61bfb11d0db01, little-endian).
    assert_eq!(filetime("1970-01-01T00:00:00Z"), FileTime(116_444_736_000_000_000));
    // (The files give microseconds; Windows time counts tenths of them.)
    let challenge_time = u64::from_le_bytes(*b"\x7e\xc6\x1b\xfb\x11\xd0\xdb\x01");
    assert_eq!(filetime("2025-05-28T20:49:18.348454Z").0.abs_diff(challenge_time), 2);
    assert_eq!(filetime("2000-03-01T00:00:00Z").0 - filetime("2000-02-28T00:00:00Z").0, 2 * 86_400 * 10_000_000);
}

struct Capture {
    name: &'static str,
    j: Value,
}

impl Capture {
    fn load(dir: &Path, name: &'static str) -> Capture {
        let text = std::fs::read_to_string(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        Capture { name, j: serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}")) }
    }

    fn str(&self, key: &str) -> &str {
        self.j[key].as_str().unwrap_or_else(|| panic!("{}: no {key}", self.name))
    }

    fn bytes(&self, key: &str) -> Option<Vec<u8>> {
        let b64 = self.j[key].as_str()?;
        Some(
            base64::engine::general_purpose::STANDARD
                .decode(b64)
                .unwrap_or_else(|e| panic!("{}: {key}: {e}", self.name)),
        )
    }

    /// The NT hash of the file, and it is the MD4 of its password when it
    /// gives one (08 gives only the hash).
    fn nt_hash(&self) -> [u8; 16] {
        let hash = hex16(self.str("nt_hash"));
        if let Some(password) = self.j["password"].as_str() {
            assert_eq!(crypto::nt_hash(password), hash, "{}: the NT hash is not the password's", self.name);
        }
        hash
    }

    /// The injected clock: the client's timestamp.
    fn clock(&self) -> FileTime {
        filetime(self.str("client_timestamp_utc"))
    }

    fn flags(&self) -> u32 {
        u32::from_str_radix(self.str("negotiate_flags_authenticate").trim_start_matches("0x"), 16).unwrap()
    }

    fn expected_key(&self) -> SessionKey {
        SessionKey::expected(hex16(self.str("expected_exported_session_key_hex")), self.flags())
    }

    /// What this connection's channel bindings are for a client that sent
    /// them (07): the hash the file gives, as gatehouse computes it from the
    /// certificate (`crypto::tls_channel_bindings`).
    fn bindings(&self) -> Option<[u8; 16]> {
        self.j["channel_bindings_md5_hex"].as_str().map(hex16)
    }

    fn has_mic(&self) -> bool {
        self.j["verified"]["mic_present"] == Value::Bool(true)
    }

    /// NEGOTIATE, CHALLENGE and AUTHENTICATE. For 08, whose source kept only
    /// the AUTHENTICATE and the server challenge, the first two are made here:
    /// a NEGOTIATE with the client's flags and a CHALLENGE with the server
    /// challenge and the server's target info from the source. That client
    /// sends no MIC, so nothing covers them but the server challenge.
    fn messages(&self) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
        let authenticate = self.bytes("authenticate_b64").unwrap();
        match (self.bytes("negotiate_b64"), self.bytes("challenge_b64")) {
            (Some(n), Some(c)) => (n, c, authenticate),
            (None, None) => {
                assert_eq!(self.j["challenge_synthetic"], Value::Bool(true), "{}", self.name);
                assert!(!self.has_mic(), "{}: a MIC needs the real messages", self.name);
                let mut negotiate = b"NTLMSSP\0\x01\0\0\0".to_vec();
                negotiate.extend_from_slice(&self.flags().to_le_bytes());
                negotiate.extend_from_slice(&[0; 16]);
                let info = hex(self.str("target_info_hex_from_source"));
                let mut challenge = b"NTLMSSP\0\x02\0\0\0".to_vec();
                challenge.extend_from_slice(&[0, 0, 0, 0, 48, 0, 0, 0]); // no target name
                challenge.extend_from_slice(&self.flags().to_le_bytes());
                challenge.extend_from_slice(&hex(self.str("server_challenge_hex")));
                challenge.extend_from_slice(&[0; 8]);
                let len = (info.len() as u16).to_le_bytes();
                challenge.extend_from_slice(&[len[0], len[1], len[0], len[1], 48, 0, 0, 0]);
                challenge.extend_from_slice(&info);
                (negotiate, challenge, authenticate)
            }
            _ => panic!("{}: a NEGOTIATE without its CHALLENGE or the reverse", self.name),
        }
    }
}

fn config(policy: ChannelBindingPolicy) -> AcceptorConfig {
    AcceptorConfig { channel_binding: policy, ..AcceptorConfig::example() }
}

/// One replayed handshake through the serving path.
fn run(
    negotiate: &[u8],
    challenge: &[u8],
    authenticate: &[u8],
    nt_hash: &[u8; 16],
    config: &AcceptorConfig,
    bindings: Option<[u8; 16]>,
    now: FileTime,
) -> Result<Authenticated, Error> {
    let sent = ChallengeSent::replay(config, negotiate, challenge)?;
    let received = sent.read_authenticate(authenticate)?;
    let key = received.verify_with_nt_hash(nt_hash)?;
    received.finish(key, bindings, now)
}

/// Accepted as captured, and each tampered variant refused.
fn accepted_and_tampering_refused(c: &Capture) -> Authenticated {
    let (negotiate, challenge, authenticate) = c.messages();
    let hash = c.nt_hash();
    let now = c.clock();
    let bindings = c.bindings();
    let plain = config(ChannelBindingPolicy::WhenSupported);
    let go = |n: &[u8], ch: &[u8], a: &[u8]| run(n, ch, a, &hash, &plain, bindings, now);

    // The server challenge in the CHALLENGE is the one the file names.
    assert_eq!(challenge[24..32], hex(c.str("server_challenge_hex"))[..], "{}", c.name);
    let received =
        ChallengeSent::replay(&plain, &negotiate, &challenge).unwrap().read_authenticate(&authenticate).unwrap();
    assert_eq!(received.user, c.str("user"), "{}", c.name);
    assert_eq!(received.domain, c.str("domain"), "{}", c.name);
    assert_eq!(received.workstation, c.str("workstation"), "{}", c.name);
    assert_eq!(received.target_name().as_deref(), c.j["target_name_avpair"].as_str(), "{}", c.name);

    let who = go(&negotiate, &challenge, &authenticate).unwrap_or_else(|e| panic!("{}: refused: {e}", c.name));
    assert_eq!((who.user.as_str(), who.domain.as_str()), (c.str("user"), c.str("domain")), "{}", c.name);
    assert!(who.session_key == c.expected_key(), "{}: not the capture's exported session key", c.name);

    // Another password.
    let wrong = crypto::nt_hash("not the password");
    assert_eq!(run(&negotiate, &challenge, &authenticate, &wrong, &plain, bindings, now).unwrap_err(), Error::BadProof);

    // Each byte of the NTProofStr, and each byte of the blob it covers.
    let (nt_at, nt_len) = buffer(&authenticate, 20);
    for i in nt_at..nt_at + nt_len {
        let mut a = authenticate.clone();
        a[i] ^= 0x01;
        let r = go(&negotiate, &challenge, &a);
        if i < nt_at + 16 {
            assert_eq!(r.unwrap_err(), Error::BadProof, "{}: proof byte {} changed", c.name, i - nt_at);
        } else {
            assert!(r.is_err(), "{}: blob byte {} changed and accepted", c.name, i - nt_at - 16);
        }
    }
    // The server challenge.
    let mut ch = challenge.clone();
    ch[24] ^= 0x01;
    assert_eq!(go(&negotiate, &ch, &authenticate).unwrap_err(), Error::BadProof, "{}", c.name);

    // The clock: the client's timestamp must be within the window of now.
    let skew = plain.max_skew;
    let second = 10_000_000;
    for late in [FileTime(now.0 + skew + second), FileTime(now.0 - skew - second)] {
        let r = run(&negotiate, &challenge, &authenticate, &hash, &plain, bindings, late);
        assert_eq!(r.unwrap_err(), Error::StaleTimestamp, "{}", c.name);
    }
    for near in [FileTime(now.0 + skew - second), FileTime(now.0 - skew + second)] {
        assert!(run(&negotiate, &challenge, &authenticate, &hash, &plain, bindings, near).is_ok(), "{}", c.name);
    }

    if c.has_mic() {
        // Each byte of the MIC.
        for i in 72..88 {
            let mut a = authenticate.clone();
            a[i] ^= 0x01;
            assert_eq!(go(&negotiate, &challenge, &a).unwrap_err(), Error::BadMic, "{}: MIC byte {}", c.name, i - 72);
        }
        // Each byte of the CHALLENGE's target info: the client's blob holds its
        // own copy, so only the MIC sees that the server's was changed.
        let (at, len) = buffer(&challenge, 40);
        assert!(len > 0, "{}", c.name);
        for i in at..at + len {
            let mut ch = challenge.clone();
            ch[i] ^= 0x01;
            let r = go(&negotiate, &ch, &authenticate);
            assert_eq!(r.unwrap_err(), Error::BadMic, "{}: target info byte {}", c.name, i - at);
        }
        // ...and of the NEGOTIATE.
        for i in 12..negotiate.len() {
            let mut n = negotiate.clone();
            n[i] ^= 0x01;
            assert_eq!(go(&n, &challenge, &authenticate).unwrap_err(), Error::BadMic, "{}: NEGOTIATE byte {i}", c.name);
        }
        // With a MIC every byte of the AUTHENTICATE is covered by something.
        for i in 0..authenticate.len() {
            for bit in [0x01, 0x20, 0x80] {
                let mut a = authenticate.clone();
                a[i] ^= bit;
                assert!(go(&negotiate, &challenge, &a).is_err(), "{}: byte {i} ^ {bit:#x} accepted", c.name);
            }
        }
        // A MIC stripped (zeroed) is a MIC that does not match.
        let mut a = authenticate.clone();
        a[72..88].fill(0);
        assert_eq!(go(&negotiate, &challenge, &a).unwrap_err(), Error::BadMic, "{}", c.name);
    }
    who
}

/// The channel bindings of a client that knew no TLS binding: zeros, which
/// count as absent.
fn zero_bindings_are_absent(c: &Capture) {
    let (negotiate, challenge, authenticate) = c.messages();
    let (hash, now) = (c.nt_hash(), c.clock());
    let some = Some([0x5a; 16]);
    let r = run(&negotiate, &challenge, &authenticate, &hash, &config(ChannelBindingPolicy::Required), some, now);
    assert_eq!(r.unwrap_err(), Error::ChannelBindingsMissing, "{}", c.name);
    let r = run(&negotiate, &challenge, &authenticate, &hash, &config(ChannelBindingPolicy::WhenSupported), some, now);
    assert!(r.is_ok(), "{}", c.name);
}

fn load(name: &'static str) -> Option<Capture> {
    Some(Capture::load(&captures()?, name))
}

/// Windows 11 24H2 (WinRM): a UPN with an empty domain field, key exchange.
#[test]
fn windows_11_24h2_upn_with_empty_domain() {
    let Some(c) = load(NTLM_CAPTURES[0]) else { return };
    let who = accepted_and_tampering_refused(&c);
    assert_eq!((who.user.as_str(), who.domain.as_str()), ("cbatt-adm@DAN.VMCLOUD", ""));
    zero_bindings_are_absent(&c);
}

/// Windows Server 2019 SSPI, raw NTLM: a UPN with an empty domain field.
#[test]
fn windows_server_2019_raw() {
    let Some(c) = load(NTLM_CAPTURES[1]) else { return };
    let who = accepted_and_tampering_refused(&c);
    assert_eq!((who.user.as_str(), who.domain.as_str()), ("vagrant-domain@DOMAIN.LOCAL", ""));
    zero_bindings_are_absent(&c);
}

/// Windows Server 2019 SSPI over SMB: the NTLM inside SPNEGO (the SPNEGO
/// layer and the mechListMICs: crates/spnego/tests/captures.rs).
#[test]
fn windows_server_2019_inside_spnego() {
    let Some(c) = load(NTLM_CAPTURES[2]) else { return };
    let who = accepted_and_tampering_refused(&c);
    assert_eq!((who.user.as_str(), who.domain.as_str()), ("vagrant-domain", "DOMAIN"));
    zero_bindings_are_absent(&c);
}

/// macOS 10.15 Heimdal: no SIGN/SEAL, a DNS domain name. Windows refused this
/// logon (the source says so); its proof and MIC are right, and gatehouse
/// decides for itself.
#[test]
fn macos_heimdal_is_accepted() {
    let Some(c) = load(NTLM_CAPTURES[3]) else { return };
    let who = accepted_and_tampering_refused(&c);
    assert_eq!((who.user.as_str(), who.domain.as_str()), ("vagrant-domain", "DOMAIN.LOCAL"));
    zero_bindings_are_absent(&c);
}

/// Fedora gss-ntlmssp inside SPNEGO: a UPN with an empty domain field.
#[test]
fn gss_ntlmssp_inside_spnego() {
    let Some(c) = load(NTLM_CAPTURES[4]) else { return };
    let who = accepted_and_tampering_refused(&c);
    assert_eq!((who.user.as_str(), who.domain.as_str()), ("vagrant-domain@DOMAIN.LOCAL", ""));
    zero_bindings_are_absent(&c);
}

/// Windows 8.1 over HTTP (WinINET's flags): no key exchange, so the exported
/// session key is the session base key.
#[test]
fn windows_8_1_http_without_key_exchange() {
    let Some(c) = load(NTLM_CAPTURES[5]) else { return };
    assert_eq!(c.flags() & ntlm::flags::KEY_EXCH, 0);
    let who = accepted_and_tampering_refused(&c);
    assert_eq!((who.user.as_str(), who.domain.as_str()), ("Username", "Domain"));
    zero_bindings_are_absent(&c);
}

/// Windows 7 over HTTPS with Extended Protection: its MsvAvChannelBindings
/// is the hash the file gives (the certificate itself is not known, so the
/// expected value is injected as gatehouse would compute it from one).
#[test]
fn windows_7_extended_protection_under_required() {
    let Some(c) = load(NTLM_CAPTURES[6]) else { return };
    accepted_and_tampering_refused(&c);
    let (negotiate, challenge, authenticate) = c.messages();
    let (hash, now) = (c.nt_hash(), c.clock());
    let right = hex16(c.str("channel_bindings_md5_hex"));
    let go = |policy, bindings| run(&negotiate, &challenge, &authenticate, &hash, &config(policy), bindings, now);
    use ChannelBindingPolicy::*;
    let who = go(Required, Some(right)).unwrap();
    assert!(who.session_key == c.expected_key());
    assert!(go(WhenSupported, Some(right)).is_ok());
    for i in 0..16 {
        let mut changed = right;
        changed[i] ^= 0x01;
        assert_eq!(go(Required, Some(changed)).unwrap_err(), Error::ChannelBindingsMismatch, "byte {i}");
        assert_eq!(go(WhenSupported, Some(changed)).unwrap_err(), Error::ChannelBindingsMismatch, "byte {i}");
    }
    // The same AUTHENTICATE arriving over plain HTTP (nothing to compare with).
    assert_eq!(go(Required, None).unwrap_err(), Error::ChannelBindingsMismatch);
    assert_eq!(go(WhenSupported, None).unwrap_err(), Error::ChannelBindingsMismatch);
    assert!(go(Off, None).is_ok());
}

/// Windows XP SP3 (pre-Vista: no MIC, no MsvAvTimestamp, an LMv2 response,
/// SMB's trailing strings after the message): the domain field says
/// COLLEY-XP4 but the proof is over no domain. Accepted by Samba's rule; the
/// parts of the message that nothing covers are shown for what they are.
#[test]
fn windows_xp_proof_over_no_domain() {
    let Some(c) = load(NTLM_CAPTURES[7]) else { return };
    assert_eq!(c.str("ntowfv2_domain_used"), "");
    let who = accepted_and_tampering_refused(&c);
    assert_eq!((who.user.as_str(), who.domain.as_str()), ("TESTUSER", "COLLEY-XP4"));
    zero_bindings_are_absent(&c);
    // Without a MIC, the domain field is bound by nothing when the proof is
    // over no domain: another domain name is accepted the same (as Samba
    // accepts it). Gatehouse then looks up the account of the domain sent,
    // whose NT hash the proof must still match.
    let (negotiate, challenge, authenticate) = c.messages();
    let (at, len) = buffer(&authenticate, 28);
    let mut a = authenticate.clone();
    a[at] ^= 0x01; // COLLEY-XP4 -> BOLLEY-XP4
    let plain = config(ChannelBindingPolicy::WhenSupported);
    let who = run(&negotiate, &challenge, &a, &c.nt_hash(), &plain, None, c.clock()).unwrap();
    assert_eq!(who.domain, "BOLLEY-XP4");
    assert_eq!(len, 20);
    // Nor are the message's bytes after its payload (SMB's NativeOS strings).
    let end = [12, 20, 28, 36, 44, 52].iter().map(|&f| buffer(&authenticate, f)).map(|(o, l)| o + l).max().unwrap();
    assert!(authenticate.len() > end + 32, "the SMB strings follow the message");
    let mut a = authenticate.clone();
    a[end + 1] ^= 0x01;
    assert!(run(&negotiate, &challenge, &a, &c.nt_hash(), &plain, None, c.clock()).is_ok());
}

/// Every capture file in the folder is one of the tests here or in the
/// spnego and kcd crates: a new capture fails until it has its test.
#[test]
fn every_capture_file_has_a_test() {
    let Some(dir) = captures() else { return };
    let mut found = BTreeSet::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        let numbered =
            name.len() > 3 && name.as_bytes()[..2].iter().all(u8::is_ascii_digit) && name.as_bytes()[2] == b'_';
        if numbered && name.ends_with(".json") {
            found.insert(name);
        }
    }
    let known: BTreeSet<String> = NTLM_CAPTURES.iter().chain(&KERBEROS_CAPTURES).map(|s| s.to_string()).collect();
    assert_eq!(found, known, "capture files without a test, or tests without their file");
    for name in NTLM_CAPTURES {
        let c = Capture::load(&dir, name);
        assert!(c.j["authenticate_b64"].is_string(), "{name} is not an NTLM capture");
    }
    for name in KERBEROS_CAPTURES {
        let c = Capture::load(&dir, name);
        assert!(c.j["negtokeninit_b64"].is_string(), "{name} is not a Kerberos capture");
    }
}

/// The manifest sections that enable the `replay` feature, by line.
fn replay_enabled_outside_dev_dependencies(manifest: &str) -> Vec<String> {
    let mut section = String::new();
    let mut found = Vec::new();
    for line in manifest.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            section = line.to_owned();
        } else if !line.starts_with('#') && line.contains("replay\"") && section != "[dev-dependencies]" {
            found.push(format!("{section} {line}"));
        }
    }
    found
}

/// `ChallengeSent::replay` takes a server challenge that is not fresh: no
/// crate may enable it for anything but its tests.
#[test]
fn replay_is_enabled_by_dev_dependencies_only() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut manifests = vec![root.join("fuzz/Cargo.toml")];
    for entry in std::fs::read_dir(root.join("crates")).unwrap() {
        manifests.push(entry.unwrap().path().join("Cargo.toml"));
    }
    let mut checked = 0;
    for path in manifests.iter().filter(|p| p.is_file()) {
        let found = replay_enabled_outside_dev_dependencies(&std::fs::read_to_string(path).unwrap());
        assert!(found.is_empty(), "{}: {found:?}", path.display());
        checked += 1;
    }
    assert!(checked >= 6, "only {checked} manifests found under {}", root.display());
    // The check itself finds what it looks for.
    let bad = "[dependencies]\nntlm = { path = \"../ntlm\", features = [\"replay\"] }\n[dev-dependencies]\nx = 1\n";
    assert_eq!(replay_enabled_outside_dev_dependencies(bad).len(), 1);
    let bad = "[features]\ntest-support = [\"ntlm/replay\"]\n";
    assert_eq!(replay_enabled_outside_dev_dependencies(bad).len(), 1);
    let good = "[dependencies]\nntlm = { path = \"../ntlm\" }\n[dev-dependencies]\nntlm = { path = \"../ntlm\", features = [\"replay\"] }\n";
    assert!(replay_enabled_outside_dev_dependencies(good).is_empty());
}

/// The replay constructor takes only what parses as the two messages.
#[test]
fn replay_refuses_what_is_not_a_negotiate_and_a_challenge() {
    let cfg = AcceptorConfig::example();
    let negotiate = b"NTLMSSP\0\x01\0\0\0\x07\x82\x08\xa2".to_vec();
    let mut challenge = b"NTLMSSP\0\x02\0\0\0".to_vec();
    challenge.resize(48, 0);
    challenge[44] = 48; // empty target info at the end
    assert!(ChallengeSent::replay(&cfg, &negotiate, &challenge).is_ok());
    assert_eq!(ChallengeSent::replay(&cfg, &challenge, &challenge).unwrap_err(), Error::WrongMessageType);
    assert_eq!(ChallengeSent::replay(&cfg, &negotiate, &negotiate).unwrap_err(), Error::WrongMessageType);
    assert_eq!(ChallengeSent::replay(&cfg, &negotiate, &challenge[..30]).unwrap_err(), Error::Truncated);
    let mut outside = challenge.clone();
    outside[40] = 16; // target info past the end
    assert_eq!(ChallengeSent::replay(&cfg, &negotiate, &outside).unwrap_err(), Error::BadBuffer);
}
