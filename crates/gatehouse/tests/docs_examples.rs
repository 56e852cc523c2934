//! Every ```toml block of README.md and docs/*.md goes through the real
//! `gatehouse check`, so that an example in the docs cannot stop working
//! without a test failing (issue 12: the Exchange guide's `auth_for` example
//! had stopped passing `check`).
//!
//! A block is a whole configuration, checked as written, with every file it
//! names made as a valid placeholder: certificates (rcgen, their names
//! covering every host the block publishes), CA bundles, MIT keytabs (written
//! by MIT's `ktutil`, holding the block's service principal and acceptor
//! SPNs), an empty users file, a krb5.conf, an smb.conf, an `ntlm_auth`. An
//! absolute path such as `/etc/gatehouse/mail.pem` is checked as
//! `root/etc/gatehouse/mail.pem` under the test's folder.
//!
//! A block that shows one part of a configuration says so in its first line,
//! `# fragment: ...` (the rest of that line tells the reader what it is part
//! of). It is checked after [`BASE`]'s sections that it does not have itself:
//! a `[[site]]` fragment gets the base's `[domain]`, `[accounts]` and listener
//! `public`; a fragment with its own `[[listener]]` gets no base listener.
//! Nothing is skipped: a fragment that the base cannot complete fails too.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// What a fragment is completed with, by top-level key. Its names are those of
/// docs/exchange.md, the page most fragments extend.
const BASE: [(&str, &str); 3] = [
    (
        "domain",
        r#"[domain]
realm = "CORP.EXAMPLE"
netbios_name = "CORP"
keytab = "/etc/gatehouse/proxy.keytab"
service_principal = "svc-gatehouse@CORP.EXAMPLE"
acceptor_spn = "HTTP/mail.corp.example"
"#,
    ),
    (
        "accounts",
        r#"[accounts]
source = "file"
file = "/etc/gatehouse/users"
"#,
    ),
    (
        "listener",
        r#"[[listener]]
name = "public"
bind = "0.0.0.0:443"
tls = { cert = "/etc/gatehouse/mail.pem", key = "/etc/gatehouse/mail.key" }
"#,
    ),
];

/// One ```toml block of a Markdown file.
struct Example {
    file: String,
    /// The line of its opening fence.
    line: usize,
    text: String,
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// README.md and every docs/*.md, in a fixed order.
fn pages() -> Vec<PathBuf> {
    let mut pages: Vec<PathBuf> = std::fs::read_dir(repo().join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    pages.sort();
    pages.insert(0, repo().join("README.md"));
    pages
}

/// The ```toml blocks of `text`, also those indented under a list item (their
/// fence's indentation is taken off every line).
fn examples(file: &str, text: &str) -> Vec<Example> {
    let mut out = Vec::new();
    let mut open: Option<(usize, usize, String)> = None;
    for (i, line) in text.lines().enumerate() {
        let indent = line.len() - line.trim_start().len();
        let fence = line.trim_start();
        match &mut open {
            None if fence.starts_with("```toml") => open = Some((i + 1, indent, String::new())),
            None => {}
            Some(_) if fence.starts_with("```") => {
                let (line, _, text) = open.take().unwrap();
                out.push(Example { file: file.to_owned(), line, text });
            }
            Some((_, indent, body)) => {
                let cut = line.len().min(*indent);
                body.push_str(if line[..cut].trim().is_empty() { &line[cut..] } else { line.trim_start() });
                body.push('\n');
            }
        }
    }
    assert!(open.is_none(), "{file}: a ```toml block is never closed");
    out
}

fn is_fragment(text: &str) -> bool {
    text.lines().find(|l| !l.trim().is_empty()).is_some_and(|l| l.trim_start().starts_with("# fragment"))
}

/// The configuration checked for `example`: the block itself, or a fragment
/// after the base sections it lacks.
fn configuration(example: &str) -> String {
    if !is_fragment(example) {
        return example.to_owned();
    }
    // A fragment that does not parse gets the whole base; check reports its syntax.
    let own: BTreeSet<String> = example.parse::<toml::Table>().map(|t| t.keys().cloned().collect()).unwrap_or_default();
    let mut text = String::new();
    for (key, section) in BASE {
        if !own.contains(key) {
            text.push_str(section);
            text.push('\n');
        }
    }
    text.push_str(example);
    text
}

/// Keys whose string values are files gatehouse reads.
const FILE_KEYS: [&str; 15] = [
    "cert",
    "key",
    "ca",
    "keytab",
    "file",
    "krb5_conf",
    "smb_conf",
    "ntlm_auth",
    "access",
    "key_file",
    "logo",
    "socket",
    "store",
    "client_secret_file",
    "ca_file",
];

/// Every (key, value) pair of the document, depth first, with the table it is in.
fn walk<'a>(value: &'a toml::Value, table: Option<&'a toml::Table>, key: &str, out: &mut Vec<Found<'a>>) {
    match value {
        toml::Value::Table(t) => t.iter().for_each(|(k, v)| walk(v, Some(t), k, out)),
        toml::Value::Array(items) => items.iter().for_each(|v| walk(v, table, key, out)),
        toml::Value::String(s) => out.push(Found { key: key.to_owned(), value: s, table }),
        _ => {}
    }
}

struct Found<'a> {
    key: String,
    value: &'a str,
    table: Option<&'a toml::Table>,
}

/// Where a file named in the configuration is made: absolute paths move under
/// `root/`, relative ones stay relative to the configuration's folder.
fn local(path: &str) -> String {
    match path.strip_prefix('/') {
        Some(rest) => format!("root/{rest}"),
        None => path.to_owned(),
    }
}

/// Writes the configuration for `example` into `dir` with every file it names,
/// and returns the configuration's path.
fn prepare(dir: &Path, example: &str) -> PathBuf {
    let mut text = configuration(example);
    let doc: toml::Value = match text.parse::<toml::Table>() {
        Ok(t) => toml::Value::Table(t),
        // Not TOML: check says where, with no files to make.
        Err(_) => toml::Value::Table(toml::Table::new()),
    };
    let mut found = Vec::new();
    walk(&doc, None, "", &mut found);
    let hosts = published_names(&found);
    let realm = found.iter().find(|f| f.key == "realm").map_or("CORP.EXAMPLE", |f| f.value).to_ascii_uppercase();
    let principals = principals(&found, &realm);
    let mut made = BTreeSet::new();
    for f in found.iter().filter(|f| FILE_KEYS.contains(&f.key.as_str())) {
        let (value, key) = (f.value, f.key.as_str());
        // Standard output, or a helper looked up in PATH.
        if (key == "access" && value == "-") || (key == "ntlm_auth" && !value.contains('/')) {
            continue;
        }
        let rel = local(value);
        if rel != value {
            for quote in ['"', '\''] {
                text = text.replace(&format!("{quote}{value}{quote}"), &format!("{quote}{rel}{quote}"));
            }
        }
        if !made.insert(rel.clone()) {
            continue;
        }
        let path = dir.join(&rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        match key {
            // The pair is made together, from the table holding both.
            "cert" => {
                let key_file = f.table.and_then(|t| t.get("key")).and_then(|v| v.as_str()).map(local);
                write_pair(dir, &path, key_file.map(|k| dir.join(k)).as_deref(), &hosts);
            }
            "key" => {} // with its cert
            "ca" => {
                let ca = common::make_certs(&scratch(dir), &[]);
                std::fs::copy(ca, &path).unwrap();
            }
            "keytab" => write_keytab(&path, &principals),
            "file" | "access" => std::fs::write(&path, "").unwrap(),
            "krb5_conf" => std::fs::write(
                &path,
                format!(
                    "[libdefaults]\n  default_realm = {realm}\n[realms]\n  {realm} = {{\n    kdc = 127.0.0.1\n  }}\n"
                ),
            )
            .unwrap(),
            "smb_conf" => std::fs::write(
                &path,
                format!(
                    "[global]\n  security = ads\n  realm = {realm}\n  workgroup = {}\n",
                    realm.split('.').next().unwrap()
                ),
            )
            .unwrap(),
            "ntlm_auth" => write_helper(&path),
            // A key file of one key, private to gatehouse's account: the
            // [forms] format (a base64 line), which is also 32 bytes and more
            // of key for [affinity].
            "key_file" => {
                use std::os::unix::fs::PermissionsExt;
                let key: [u8; 32] = std::array::from_fn(|i| (i * 7 + 1) as u8);
                std::fs::write(&path, websession::Keys::line(&key) + "\n").unwrap();
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
            }
            // An [[idp]]'s client secret: one line, private.
            "client_secret_file" => {
                use std::os::unix::fs::PermissionsExt;
                std::fs::write(&path, "a-client-secret\n").unwrap();
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
            }
            "ca_file" => {
                std::fs::write(&path, rcgen::generate_simple_self_signed(vec!["ca".to_string()]).unwrap().cert.pem())
                    .unwrap()
            }
            "logo" => std::fs::write(&path, "<svg xmlns=\"http://www.w3.org/2000/svg\"/>").unwrap(),
            // The control socket: only its folder, private, which gatehouse checks.
            "socket" => {
                use std::os::unix::fs::PermissionsExt;
                let folder = path.parent().unwrap();
                std::fs::set_permissions(folder, std::fs::Permissions::from_mode(0o700)).unwrap();
            }
            // The [mfa] store: only its folder; gatehouse makes the file at its
            // first start, and check must not need it.
            "store" => {}
            _ => unreachable!("{key}"),
        }
    }
    let config = dir.join("gatehouse.toml");
    std::fs::write(&config, text).unwrap();
    config
}

/// An executable that stands in for Samba's `ntlm_auth`.
fn write_helper(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, "#!/bin/sh\necho 'Version 4 (placeholder)'\n").unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// A fresh folder for `make_certs`, which names its files itself.
fn scratch(dir: &Path) -> PathBuf {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let scratch = dir.join(format!("scratch-{n}"));
    std::fs::create_dir_all(&scratch).unwrap();
    scratch
}

/// A certificate for every name the configuration publishes, and its key.
fn write_pair(dir: &Path, cert: &Path, key: Option<&Path>, hosts: &[String]) {
    let names: Vec<&str> = hosts.iter().map(String::as_str).collect();
    let scratch = scratch(dir);
    common::make_certs(&scratch, &[("leaf", &names)]);
    std::fs::copy(scratch.join("leaf.pem"), cert).unwrap();
    if let Some(key) = key {
        std::fs::create_dir_all(key.parent().unwrap()).unwrap();
        std::fs::copy(scratch.join("leaf.key"), key).unwrap();
    }
}

/// The host names clients reach the configuration by: every site's `hosts`
/// and the hosts of the acceptor SPNs.
fn published_names(found: &[Found<'_>]) -> Vec<String> {
    let mut names = BTreeSet::new();
    for f in found {
        match f.key.as_str() {
            "hosts" => {
                names.insert(f.value.to_ascii_lowercase());
            }
            "acceptor_spn" => {
                if let Some((_, host)) = f.value.split_once('/') {
                    names.insert(host.split(['@', ':']).next().unwrap().to_ascii_lowercase());
                }
            }
            _ => {}
        }
    }
    if names.is_empty() {
        names.insert("gatehouse.corp.example".to_owned());
    }
    names.into_iter().collect()
}

/// The principals a keytab of this configuration holds keys for.
fn principals(found: &[Found<'_>], realm: &str) -> Vec<String> {
    let mut out: Vec<String> = found
        .iter()
        .filter(|f| f.key == "service_principal" || f.key == "acceptor_spn")
        .map(|f| if f.value.contains('@') { f.value.to_owned() } else { format!("{}@{realm}", f.value) })
        .collect();
    if out.is_empty() {
        out.push(format!("HTTP/gatehouse.corp.example@{realm}"));
    }
    out
}

/// An MIT keytab with an AES key for each principal, written by MIT's own
/// `ktutil` (so the format is MIT's, not our idea of it).
fn write_keytab(path: &Path, principals: &[String]) {
    use std::io::Write;
    let mut script = String::new();
    for (i, p) in principals.iter().enumerate() {
        script.push_str(&format!("addent -password -p {p} -k {} -e aes256-cts-hmac-sha1-96\nplaceholder-{i}\n", i + 1));
    }
    script.push_str(&format!("wkt {}\nquit\n", path.display()));
    let mut child = Command::new("ktutil")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ktutil (MIT's, Debian's krb5-user: scripts/install-deps.sh installs it)");
    child.stdin.take().unwrap().write_all(script.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "ktutil failed: {}", String::from_utf8_lossy(&out.stderr));
    assert!(
        std::fs::metadata(path).is_ok_and(|m| m.len() > 2),
        "ktutil wrote no keytab: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `gatehouse check` on the example: its output, and whether it passed.
fn check(example: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let config = prepare(dir.path(), example);
    // An `ntlm_auth` found in PATH (winbind without the key) is a placeholder
    // too: the examples do not depend on Samba being installed here.
    let bin = dir.path().join("bin");
    write_helper(&bin.join("ntlm_auth"));
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    // --offline: the examples' domains (corp.example) have no directory to
    // look names up in; everything else is checked.
    let out = Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args(["check", "-c"])
        .arg(&config)
        .arg("--offline")
        .current_dir(dir.path())
        .env("PATH", path)
        .output()
        .unwrap();
    let text = std::fs::read_to_string(&config).unwrap();
    let output = format!(
        "{}{}--- checked as ---\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), output)
}

#[test]
fn every_toml_example_in_the_docs_passes_check() {
    let mut all = Vec::new();
    for page in pages() {
        let name = page.strip_prefix(repo()).unwrap_or(&page).display().to_string();
        let name = name.trim_start_matches("../").trim_start_matches('/').to_owned();
        all.extend(examples(&name, &std::fs::read_to_string(&page).unwrap()));
    }
    // The extractor finds what it must: the README's minimal configuration and
    // the Exchange guide's, at least.
    assert!(all.iter().any(|e| e.file.ends_with("README.md")), "no example found in README.md");
    assert!(all.iter().any(|e| e.file.ends_with("exchange.md")), "no example found in docs/exchange.md");
    let mut failed = Vec::new();
    for e in &all {
        let (ok, output) = check(&e.text);
        let kind = if is_fragment(&e.text) { "fragment" } else { "configuration" };
        eprintln!("{}:{}: {kind}: {}", e.file, e.line, if ok { "passes check" } else { "FAILS check" });
        if !ok {
            failed.push(format!("{}:{} ({kind}):\n{output}", e.file, e.line));
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {} examples fail `gatehouse check`:\n\n{}",
        failed.len(),
        all.len(),
        failed.join("\n")
    );
}

/// The test can fail: the example the Exchange guide used to show (rules for
/// a site that sets no `auth`) is refused by `check` through this harness.
#[test]
fn a_broken_example_fails_the_harness() {
    let (ok, output) = check(
        r#"# fragment: the Exchange site's own rules
[[site]]
name = "exchange"
preset = "exchange"
listener = "public"
hosts = ["mail.corp.example"]
backend = "https://exch01.corp.example"

[[site.auth_for]]
client_ip = ["10.0.0.0/8"]
auth = ["Negotiate", "NTLM"]
"#,
    );
    assert!(!ok, "an auth_for without auth passed check:\n{output}");
    assert!(output.contains("auth_for overrides `auth`"), "{output}");
    // A plain mistake is caught as well.
    let (ok, output) = check("[[listener]]\nname = \"public\"\nbind = \"0.0.0.0:443\"\ntlss = {}\n");
    assert!(!ok && output.contains("tlss"), "{output}");
}

/// A fragment is completed with the base sections it lacks and no others; the
/// files it names (a CA bundle, an absolute path) are made.
#[test]
fn a_fragment_is_checked_inside_the_base() {
    let fragment = r#"# fragment: one more site
[[site]]
name = "intranet"
listener = "public"
hosts = ["intranet.corp.example"]
backend = "https://iis01.corp.example"
backend_tls = { ca = "/etc/gatehouse/corp-ca.pem" }
auth = ["Negotiate", "NTLM"]
"#;
    let (ok, output) = check(fragment);
    assert!(ok, "{output}");
    assert!(output.contains("[domain]") && output.contains("name = \"public\""), "{output}");
    assert!(output.contains("\"root/etc/gatehouse/corp-ca.pem\""), "{output}");
    // Its own listener replaces the base's: one listener, not two.
    let own_listener = "# fragment: a listener\n[[listener]]\nname = \"web\"\nbind = \"0.0.0.0:80\"\n";
    let (ok, output) = check(own_listener);
    assert!(ok, "{output}");
    assert!(output.contains("(1 listeners"), "{output}");
    // Without the marker the same site is a whole configuration, and lacks its listener.
    let (ok, output) = check(fragment.trim_start_matches("# fragment: one more site\n"));
    assert!(!ok && output.contains("no listener is named `public`"), "{output}");
}

#[test]
fn indented_blocks_are_found_and_unindented() {
    let text = "intro\n\n- a step:\n  ```toml\n  [[listener]]\n  name = \"x\"\n  ```\n\n```toml\na = 1\n```\n";
    let found = examples("t.md", text);
    assert_eq!(found.len(), 2);
    assert_eq!(found[0].text, "[[listener]]\nname = \"x\"\n");
    assert_eq!(found[0].line, 4);
    assert_eq!(found[1].text, "a = 1\n");
}

/// The examples of one page.
fn page_examples(page: &str) -> Vec<Example> {
    examples(page, &std::fs::read_to_string(repo().join(page)).unwrap())
}

/// The README's minimal configuration publishes anonymously, and says so;
/// `check` names the site. A site that signs users in is not named.
#[test]
fn check_names_the_anonymous_site_of_the_readme() {
    let readme = page_examples("README.md");
    let minimal = readme.iter().find(|e| e.text.contains("[[site]]")).expect("the README's minimal configuration");
    assert!(minimal.text.contains("auth = []"), "the README publishes anonymously without writing auth = []");
    let (ok, output) = check(&minimal.text);
    assert!(ok, "{output}");
    assert!(output.contains("anonymous: no sign-in at gatehouse on site exchange"), "{output}");
    let signed_in = minimal.text.replace("auth = []", "auth = [\"Basic\"]");
    let (ok, output) = check(&format!("{signed_in}\n[accounts]\nsource = \"file\"\nfile = \"users\"\n"));
    assert!(ok, "{output}");
    assert!(!output.contains("anonymous: no sign-in"), "{output}");
}

/// The Exchange guide's own rules do what its text says: tried in order,
/// Communicator first, then the corporate network (Negotiate, Outlook
/// included), then Outlook's agents (NTLM, for the internet); ActiveSync keeps Basic.
#[test]
fn the_exchange_guide_rules_give_outlook_ntlm_outside_and_negotiate_inside() {
    let guide = page_examples("docs/exchange.md");
    let rules = guide.iter().find(|e| e.text.contains("client_ip")).expect("the guide's auth_for example");
    let (ok, output) = check(&rules.text);
    assert!(ok, "{output}");
    let rpc = output.lines().find(|l| l.contains("site exchange/rpc:")).unwrap_or_else(|| panic!("{output}"));
    let at = |what: &str| rpc.find(what).unwrap_or_else(|| panic!("`{what}` missing: {rpc}"));
    assert!(rpc.contains("auth [Negotiate, NTLM]"), "{rpc}");
    assert!(at("[NTLM] for user agent *Communicator*") < at("[Negotiate, NTLM] for listed addresses"), "{rpc}");
    assert!(at("[Negotiate, NTLM] for listed addresses") < at("[NTLM] for user agent MSRPC"), "{rpc}");
    assert!(at("[NTLM] for user agent MSRPC") < at("[NTLM] for user agent *Microsoft Outlook*"), "{rpc}");
    let activesync = output.lines().find(|l| l.contains("site exchange/activesync:")).unwrap();
    assert!(activesync.contains("auth [Basic]") && !activesync.contains(" for "), "{activesync}");
}
