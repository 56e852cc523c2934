//! `gatehouse check` tells the truth (issue 12, items 2 and 8): each case runs
//! the binary on a file and reads its exit code and what it printed, as an
//! administrator would. No lab, no network: keytabs are written byte by byte,
//! certificates by rcgen.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use base64::Engine;

struct Checked {
    ok: bool,
    out: String,
    err: String,
    file: String,
}

fn check_with(dir: &Path, text: &str, env: &[(&str, &str)]) -> Checked {
    let file = dir.join("g.toml");
    std::fs::write(&file, text).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gatehouse"));
    cmd.args(["check", "-c"]).arg(&file);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    Checked {
        ok: out.status.success(),
        out: String::from_utf8_lossy(&out.stdout).into_owned(),
        err: String::from_utf8_lossy(&out.stderr).into_owned(),
        file: file.display().to_string(),
    }
}

fn check(dir: &Path, text: &str) -> Checked {
    check_with(dir, text, &[])
}

impl Checked {
    /// A problem at `line:column` with `key`, whose message contains `words`.
    fn says(&self, line: usize, column: usize, key: &str, words: &str) {
        assert!(!self.ok, "check passed:\n{}", self.out);
        let at = format!("{}:{line}:{column}: {key}: ", self.file);
        assert!(
            self.err.lines().any(|l| l.starts_with(&at) && l.contains(words)),
            "no `{at}...{words}` in:\n{}",
            self.err
        );
    }

    fn passes(&self) {
        assert!(self.ok, "check failed:\n{}", self.err);
    }
}

/// A certificate for `names` and its key, as `{stem}.pem` and `{stem}.key`.
fn cert(dir: &Path, stem: &str, names: &[&str]) -> rcgen::CertifiedKey<rcgen::KeyPair> {
    let ck = rcgen::generate_simple_self_signed(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    std::fs::write(dir.join(format!("{stem}.pem")), ck.cert.pem()).unwrap();
    std::fs::write(dir.join(format!("{stem}.key")), ck.signing_key.serialize_pem()).unwrap();
    ck
}

/// One keytab entry (MIT format 0x0502) for `principal` (components) in `realm`.
fn entry(principal: &[&str], realm: &str, enctype: u16) -> Vec<u8> {
    let mut e = Vec::new();
    e.extend_from_slice(&(principal.len() as u16).to_be_bytes());
    for s in std::iter::once(&realm).chain(principal.iter()) {
        e.extend_from_slice(&(s.len() as u16).to_be_bytes());
        e.extend_from_slice(s.as_bytes());
    }
    e.extend_from_slice(&1u32.to_be_bytes());
    e.extend_from_slice(&0u32.to_be_bytes());
    e.push(2);
    e.extend_from_slice(&enctype.to_be_bytes());
    e.extend_from_slice(&32u16.to_be_bytes());
    e.extend_from_slice(&[7u8; 32]);
    let mut framed = (e.len() as i32).to_be_bytes().to_vec();
    framed.extend(e);
    framed
}

fn keytab(entries: &[Vec<u8>]) -> Vec<u8> {
    let mut kt = vec![0x05, 0x02];
    for e in entries {
        kt.extend_from_slice(e);
    }
    kt
}

/// `[domain]` with a keytab (line 5, value at column 10), Negotiate on a plain listener.
fn kerberos(keytab: &str) -> String {
    format!(
        r#"[domain]
realm = "AD.TEST"
netbios_name = "ADTEST"
acceptor_spn = "HTTP/mail.ad.test"
keytab = "{keytab}"
service_principal = "svc-proxy@AD.TEST"

[accounts]
source = "winbind"

[[listener]]
name = "l"
bind = "127.0.0.1:1"

[[site]]
name = "s"
listener = "l"
backend = "http://127.0.0.1:1"
auth = ["Negotiate"]
"#
    )
}

#[test]
fn a_missing_unreadable_empty_or_foreign_keytab_is_a_problem() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    check(d, &kerberos("nope.keytab")).says(5, 10, "domain.keytab", "cannot read the keytab");
    std::fs::write(d.join("empty.keytab"), b"").unwrap();
    check(d, &kerberos("empty.keytab")).says(5, 10, "domain.keytab", "the keytab is empty (0 bytes)");
    std::fs::write(d.join("header.keytab"), [0x05, 0x02]).unwrap();
    check(d, &kerberos("header.keytab")).says(5, 10, "domain.keytab", "holds no keys");
    std::fs::write(d.join("text.keytab"), b"svc-proxy:secret\n").unwrap();
    check(d, &kerberos("text.keytab")).says(5, 10, "domain.keytab", "not an MIT keytab (version 0x0502)");
    std::fs::write(d.join("cut.keytab"), &keytab(&[entry(&["svc-proxy"], "AD.TEST", 18)])[..20]).unwrap();
    check(d, &kerberos("cut.keytab")).says(5, 10, "domain.keytab", "truncated");
    // Another account's keytab: the principals it does hold are named.
    std::fs::write(d.join("backend.keytab"), keytab(&[entry(&["HTTP", "backend.ad.test"], "AD.TEST", 18)])).unwrap();
    check(d, &kerberos("backend.keytab")).says(
        5,
        10,
        "domain.keytab",
        "holds no key for svc-proxy@AD.TEST (it holds HTTP/backend.ad.test@AD.TEST)",
    );
    // The keytab AD exports: the account and its SPN. Case does not matter to AD.
    let good = keytab(&[entry(&["svc-proxy"], "AD.TEST", 18), entry(&["HTTP", "mail.ad.test"], "AD.TEST", 18)]);
    std::fs::write(d.join("proxy.keytab"), &good).unwrap();
    check(d, &kerberos("proxy.keytab")).passes();
    check(d, &kerberos("proxy.keytab").replace("svc-proxy@AD.TEST", "SVC-Proxy@ad.test")).passes();
    // The account's keys alone are enough: MIT tries every key of the keytab
    // on a ticket whose SPN it does not hold.
    std::fs::write(d.join("account.keytab"), keytab(&[entry(&["svc-proxy"], "AD.TEST", 18)])).unwrap();
    check(d, &kerberos("account.keytab")).passes();
}

#[test]
fn ntlm_auth_must_exist_and_be_executable() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let with = |path: &str| {
        format!(
            "[domain]\nrealm = \"AD.TEST\"\nnetbios_name = \"ADTEST\"\n\n[accounts]\nsource = \"winbind\"\nntlm_auth = \"{path}\"\n\n\
             [[listener]]\nname = \"l\"\nbind = \"127.0.0.1:1\"\n\n[[site]]\nname = \"s\"\nlistener = \"l\"\n\
             backend = \"http://127.0.0.1:1\"\nauth = [\"NTLM\"]\n"
        )
    };
    check(d, &with("/nonexistent")).says(7, 13, "accounts.ntlm_auth", "apt install winbind");
    std::fs::write(d.join("helper"), "#!/bin/sh\n").unwrap();
    let helper = d.join("helper").display().to_string();
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o644)).unwrap();
    check(d, &with(&helper)).says(7, 13, "accounts.ntlm_auth", "not executable");
    check(d, &with(&d.display().to_string())).says(7, 13, "accounts.ntlm_auth", "not a file");
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
    check(d, &with(&helper)).passes();
    // No ntlm_auth key: the one in PATH, which here has none.
    let default = with("x").replace("ntlm_auth = \"x\"\n", "");
    std::fs::create_dir(d.join("bin")).unwrap();
    let bin = d.join("bin").display().to_string();
    check_with(d, &default, &[("PATH", &bin)]).says(6, 10, "accounts.source", "`ntlm_auth` is not in PATH");
    std::fs::copy(&helper, d.join("bin/ntlm_auth")).unwrap();
    check_with(d, &default, &[("PATH", &bin)]).passes();
}

/// Issue 12: `tls` failing to load also gave "unknown key" for every key
/// after it; a misspelt `source` did the same to the winbind keys.
#[test]
fn one_error_gives_no_false_unknown_keys() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let listener = "[[listener]]\nname = \"l\"\nbind = \"127.0.0.1:1\"\ntls = { cert = \"missing.pem\", key = \"missing.key\" }\nchannel_binding = \"required\"\nhttp2 = true\n";
    let c = check(d, listener);
    c.says(4, 16, "listener[0].tls.cert", "No such file");
    assert!(!c.err.contains("unknown key"), "{}", c.err);
    let c = check(d, &listener.replace("tls = { cert = \"missing.pem\", key = \"missing.key\" }", "tls = 443"));
    c.says(4, 7, "listener[0].tls", "expected a table");
    assert!(!c.err.contains("unknown key"), "{}", c.err);
    let c = check(
        d,
        &format!("[accounts]\nsource = \"windbind\"\nntlm_auth = \"/usr/bin/ntlm_auth\"\nhelpers = 2\n{listener}"),
    );
    c.says(2, 10, "accounts.source", "expected \"file\" or \"winbind\"");
    assert!(!c.err.contains("unknown key"), "{}", c.err);
    // A key that is unknown everywhere still is; one of the other source, too.
    let c = check(d, &format!("{listener}colour = \"blue\"\n"));
    c.says(7, 1, "listener[0].colour", "unknown key `colour`");
    std::fs::write(d.join("users"), "ADTEST:bob:Bob-Pass1\n").unwrap();
    let c = check(d, "[accounts]\nsource = \"file\"\nfile = \"users\"\nhelpers = 2\n");
    c.says(4, 11, "accounts.helpers", "only meaningful with source = \"winbind\"");
}

/// A TLS listener with `cert`, the site `s` on it with `hosts`.
fn tls_site(tls: &str, hosts: &str) -> String {
    format!(
        "[[listener]]\nname = \"l\"\nbind = \"127.0.0.1:1\"\ntls = {tls}\n\n[[site]]\nname = \"s\"\nlistener = \"l\"\n\
         hosts = {hosts}\nbackend = \"http://127.0.0.1:1\"\n"
    )
}

#[test]
fn a_host_no_certificate_covers_is_a_problem() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    cert(d, "mail", &["mail.corp.example"]);
    cert(d, "wild", &["*.corp.example"]);
    cert(d, "ip", &["192.0.2.7"]);
    let one = "{ cert = \"mail.pem\", key = \"mail.key\" }";
    check(d, &tls_site(one, "[\"Mail.Corp.Example\"]")).passes();
    let c = check(d, &tls_site(one, "[\"mail.corp.example\", \"autodiscover.corp.example\"]"));
    c.says(
        9,
        31,
        "site[0].hosts",
        &format!(
            "site `s`: no certificate of listener `l` covers `autodiscover.corp.example` ({} covers mail.corp.example)",
            d.join("mail.pem").display()
        ),
    );
    assert_eq!(c.err.lines().count(), 1, "mail.corp.example is covered: {}", c.err);
    // A certificate chosen by SNI covers it.
    let two = "{ cert = \"mail.pem\", key = \"mail.key\", sni = [{ cert = \"wild.pem\", key = \"wild.key\" }] }";
    check(d, &tls_site(two, "[\"mail.corp.example\", \"autodiscover.corp.example\"]")).passes();
    // A wildcard covers one label, as TLS clients read it.
    let wild = "{ cert = \"wild.pem\", key = \"wild.key\" }";
    check(d, &tls_site(wild, "[\"owa.corp.example\"]")).passes();
    check(d, &tls_site(wild, "[\"corp.example\"]")).says(9, 10, "site[0].hosts", "covers *.corp.example");
    check(d, &tls_site(wild, "[\"a.b.corp.example\"]")).says(9, 10, "site[0].hosts", "`a.b.corp.example`");
    // An address in hosts needs an IP address in the certificate.
    let ip = "{ cert = \"ip.pem\", key = \"ip.key\" }";
    check(d, &tls_site(ip, "[\"192.0.2.7\"]")).passes();
    check(d, &tls_site(one, "[\"192.0.2.7\"]")).says(9, 10, "site[0].hosts", "`192.0.2.7`");
    // No hosts (any host), and plain listeners, are not judged.
    check(d, &tls_site(one, "[]")).passes();
    check(d, &tls_site(one, "[\"x.example\"]").replace(&format!("tls = {one}\n"), "")).passes();
    // A certificate without subjectAltName: its CN is not read, and that is said.
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(rcgen::DnType::CommonName, "mail.corp.example");
    let key = rcgen::KeyPair::generate().unwrap();
    std::fs::write(d.join("cn.pem"), params.self_signed(&key).unwrap().pem()).unwrap();
    std::fs::write(d.join("cn.key"), key.serialize_pem()).unwrap();
    check(d, &tls_site("{ cert = \"cn.pem\", key = \"cn.key\" }", "[\"mail.corp.example\"]")).says(
        9,
        10,
        "site[0].hosts",
        "covers no DNS name: browsers and Outlook read only its subjectAltName",
    );
}

#[test]
fn suite_order_takes_client_or_aes128_first_only() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    cert(d, "mail", &["mail.corp.example"]);
    let with = |order: &str| format!("{{ cert = \"mail.pem\", key = \"mail.key\", suite_order = {order} }}");
    check(d, &tls_site(&with("\"aes128-first\""), "[]")).passes();
    check(d, &tls_site(&with("\"client\""), "[]")).passes();
    check(d, &tls_site(&with("\"aes256-first\""), "[]")).says(
        4,
        60,
        "listener[0].tls.suite_order",
        "`aes256-first`: expected \"client\" or \"aes128-first\"",
    );
    check(d, &tls_site(&with("true"), "[]")).says(4, 60, "listener[0].tls.suite_order", "expected a string");
}

fn pem_block(label: &str, body: &[u8]) -> String {
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        base64::engine::general_purpose::STANDARD.encode(body)
    )
}

/// The start of a PKCS#12 file as Windows writes it: version 3, then the
/// authenticated safe as PKCS#7 data.
const PFX: [u8; 18] =
    [0x30, 0x10, 0x02, 0x01, 0x03, 0x30, 0x0b, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x01];

#[test]
fn der_pfx_and_encrypted_files_get_the_command_that_converts_them() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ck = cert(d, "mail", &["mail.corp.example"]);
    let at = |name: &str| d.join(name).display().to_string();
    let tls = |c: &str, k: &str| {
        format!("[[listener]]\nname = \"l\"\nbind = \"127.0.0.1:1\"\ntls = {{ cert = \"{c}\", key = \"{k}\" }}\n")
    };
    // Line 4: `tls = { cert = "` puts the cert value at column 16.
    let key_col = |c: &str| 16 + c.len() + 10;
    std::fs::write(d.join("mail.cer"), ck.cert.der()).unwrap();
    check(d, &tls("mail.cer", "mail.key")).says(
        4,
        16,
        "listener[0].tls.cert",
        &format!(
            "DER (binary), not PEM: convert it with `openssl x509 -inform der -in {} -out {}`",
            at("mail.cer"),
            at("mail.pem")
        ),
    );
    std::fs::write(d.join("mail.der"), ck.signing_key.serialize_der()).unwrap();
    check(d, &tls("mail.pem", "mail.der")).says(
        4,
        key_col("mail.pem"),
        "listener[0].tls.key",
        &format!("`openssl pkey -inform der -in {} -out {}`", at("mail.der"), at("mail-pem.key")),
    );
    // A PFX: by its extension, or by its content under any name.
    std::fs::write(d.join("mail.pfx"), PFX).unwrap();
    std::fs::write(d.join("exported.bin"), PFX).unwrap();
    for name in ["mail.pfx", "exported.bin"] {
        let c = check(d, &tls(name, name));
        c.says(4, 16, "listener[0].tls.cert", "PKCS#12");
        for cmd in [
            format!("openssl pkcs12 -in {} -clcerts -nokeys -out ", at(name)),
            format!("openssl pkcs12 -in {} -cacerts -nokeys >> ", at(name)),
            format!("openssl pkcs12 -in {} -nocerts -nodes -out ", at(name)),
            "-legacy".to_string(),
        ] {
            assert!(c.err.contains(&cmd), "no `{cmd}` in:\n{}", c.err);
        }
    }
    // Encrypted keys, new (PKCS#8) and old (OpenSSL's Proc-Type header).
    std::fs::write(d.join("enc.key"), pem_block("ENCRYPTED PRIVATE KEY", &[0x30, 0x03, 0x02, 0x01, 0x00])).unwrap();
    let old = "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-256-CBC,00112233445566778899AABBCCDDEEFF\n\nMIIBOgIBAAJBAK\n-----END RSA PRIVATE KEY-----\n";
    std::fs::write(d.join("old.key"), old).unwrap();
    for name in ["enc.key", "old.key"] {
        check(d, &tls("mail.pem", name)).says(
            4,
            key_col("mail.pem"),
            "listener[0].tls.key",
            &format!(
                "encrypted with a password: write it decrypted with `openssl pkey -in {} -out {}`",
                at(name),
                at(&name.replace(".key", "-plain.key"))
            ),
        );
    }
    // Swapped files are named as such.
    check(d, &tls("mail.key", "mail.key")).says(
        4,
        16,
        "listener[0].tls.cert",
        "holds a private key, not a certificate",
    );
    check(d, &tls("mail.pem", "mail.pem")).says(
        4,
        key_col("mail.pem"),
        "listener[0].tls.key",
        "holds a certificate, not its private key",
    );
    check(d, &tls("mail.pem", "mail.key")).passes();
}

/// An Exchange preset on `public` for mail.corp.example, and `extra` after it.
fn exchange(d: &Path, extra: &str) -> String {
    cert(d, "mail", &["mail.corp.example"]);
    format!(
        r#"[domain]
realm = "CORP.EXAMPLE"
netbios_name = "CORP"

[accounts]
source = "file"
file = "users"

[[listener]]
name = "public"
bind = "127.0.0.1:1"
tls = {{ cert = "mail.pem", key = "mail.key" }}

[[site]]
name = "exchange"
preset = "exchange"
listener = "public"
hosts = ["mail.corp.example"]
backend = "https://exch01.corp.example"
auth = ["NTLM"]
{extra}"#
    )
}

const OWN_ECP: &str = "\n[[site]]\nname = \"ecp-inside\"\nlistener = \"public\"\nhosts = [\"mail.corp.example\"]\npath_prefix = \"/ecp\"\nbackend = \"https://exch01.corp.example\"\nauth = [\"NTLM\"]\n";

#[test]
fn a_preset_leaves_paths_out_and_overrides_one() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("users"), "CORP:bob:Bob-Pass1\n").unwrap();
    // Today's answer to a site of one's own for /ecp: a duplicate.
    check(d, &exchange(d, OWN_ECP)).says(22, 1, "site[1]", "already serves mail.corp.example with path_prefix `/ecp`");
    // Left out of the preset, /ecp is the other site's.
    let c = check(d, &exchange(d, &format!("exclude = [\"/ecp\"]\n{OWN_ECP}")));
    c.passes();
    assert!(c.out.contains("site exchange/ecp: left out (exclude)"), "{}", c.out);
    assert!(
        c.out.contains("site ecp-inside: mail.corp.example /ecp -> https://exch01.corp.example:443 auth [NTLM]"),
        "{}",
        c.out
    );
    assert!(!c.out.contains("site exchange/ecp: mail"), "{}", c.out);
    assert!(c.out.contains("(1 listeners, 8 sites)"), "{}", c.out);
    // Leaving out everything but OWA, case as Exchange writes it.
    let all = "exclude = [\"/autodiscover\", \"/ews\", \"/rpc\", \"/mapi\", \"/oab\", \"/ecp\", \"/microsoft-server-activesync\"]\n";
    let c = check(d, &exchange(d, all));
    c.passes();
    assert!(c.out.contains("1 sites") && c.out.contains("site exchange/owa: "), "{}", c.out);
    // One path's own settings, shown as set by [[site.path]].
    let owa = "\n[[site.path]]\nprefix = \"/owa\"\nauth = [\"Basic\"]\nauth_for = []\nstream_idle = \"2h\"\n";
    let c = check(d, &exchange(d, owa));
    c.passes();
    let line = c.out.lines().find(|l| l.contains("site exchange/owa:")).unwrap_or_default();
    assert!(line.contains("auth [Basic]") && line.contains("stream idle 2h"), "{}", c.out);
    assert!(line.contains("set by [[site.path]]: auth, auth_for, stream_idle"), "{}", c.out);
    assert!(!line.contains("for user agent"), "auth_for = [] clears the preset's rules: {line}");
    let ews = c.out.lines().find(|l| l.contains("site exchange/ews:")).unwrap_or_default();
    assert!(ews.contains("auth [NTLM]") && !ews.contains("set by"), "{}", c.out);
    // Mistakes: a path the preset does not have, a path both left out and set,
    // a key a path cannot set, exceptions on a site without preset.
    check(d, &exchange(d, "exclude = [\"/ecp/\"]\n")).says(
        21,
        12,
        "site[0].exclude",
        "`/ecp/` is not one of the preset's paths (/autodiscover, /ews",
    );
    let both = "exclude = [\"/owa\"]\n\n[[site.path]]\nprefix = \"/OWA\"\nauth = [\"NTLM\"]\n";
    check(d, &exchange(d, both)).says(24, 10, "site[0].path[0].prefix", "`/OWA` is left out by exclude");
    let twice = "\n[[site.path]]\nprefix = \"/owa\"\nauth = [\"NTLM\"]\n\n[[site.path]]\nprefix = \"/owa\"\nwebsocket = false\n";
    check(d, &exchange(d, twice)).says(27, 10, "site[0].path[1].prefix", "`/owa` is set by another [[site.path]]");
    let backend = "\n[[site.path]]\nprefix = \"/owa\"\nbackend = \"https://other\"\n";
    check(d, &exchange(d, backend)).says(24, 1, "site[0].path[0].backend", "unknown key `backend`");
    let unknown = "\n[[site.path]]\nprefix = \"/foo\"\nauth = [\"NTLM\"]\n";
    check(d, &exchange(d, unknown)).says(23, 10, "site[0].path[0].prefix", "not one of the preset's paths");
    let plain = exchange(d, "exclude = [\"/ecp\"]\n").replace("preset = \"exchange\"\n", "");
    check(d, &plain).says(20, 11, "site[0].exclude", "only with a preset");
}
