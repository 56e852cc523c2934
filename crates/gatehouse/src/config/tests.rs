use std::path::Path;

use super::*;

fn problems(text: &str) -> Vec<Problem> {
    match load_str(Path::new("/etc/gatehouse/test.toml"), text) {
        Ok(_) => panic!("expected problems in:\n{text}"),
        Err(p) => p.0,
    }
}

fn has(problems: &[Problem], line: usize, key: &str, words: &str) -> bool {
    problems.iter().any(|p| p.line == line && p.key == key && p.message.contains(words))
}

const GOOD: &str = r#"
[[listener]]
name = "public"
bind = "127.0.0.1:8443"

[[site]]
name = "exchange"
listener = "public"
hosts = ["Mail.AD.test"]
path_prefix = "/"
backend = "http://127.0.0.1:18080"
identity_header = "X-Remote-User"

[timeouts]
stream_idle = "30m"
header_read = 10
"#;

#[test]
fn good_file_loads() {
    let c = load_str(Path::new("/tmp/x.toml"), GOOD).unwrap();
    assert_eq!(c.listeners[0].bind, "127.0.0.1:8443".parse().unwrap());
    assert_eq!(c.sites[0].hosts, vec!["mail.ad.test"]);
    assert_eq!(c.sites[0].farm.members[0].backend.origin, "http://127.0.0.1:18080");
    assert_eq!(c.timeouts.stream_idle, std::time::Duration::from_secs(1800));
    assert_eq!(c.timeouts.header_read, std::time::Duration::from_secs(10));
    assert_eq!(c.limits.max_header_size, 65536);
}

#[test]
fn every_problem_is_reported_with_line_and_key() {
    let text = r#"
[[listener]]
name = "public"
bind = "127.0.0.1:99999"
tls = { cert = "/nonexistent/cert.pem", key = "/nonexistent/key.pem" }
colour = "blue"

[[site]]
name = "exchange"
listener = "privat"
backend = "ftp://x"
path_prefx = "/owa"
"#;
    let p = problems(text);
    assert!(has(&p, 4, "listener[0].bind", "not an address"), "{p:#?}");
    assert!(has(&p, 5, "listener[0].tls.cert", "/nonexistent/cert.pem"), "{p:#?}");
    assert!(has(&p, 6, "listener[0].colour", "unknown key"), "{p:#?}");
    assert!(has(&p, 10, "site[0].listener", "no listener is named `privat`"), "{p:#?}");
    assert!(has(&p, 11, "site[0].backend", "not a backend URL"), "{p:#?}");
    assert!(has(&p, 12, "site[0].path_prefx", "did you mean `path_prefix`"), "{p:#?}");
    let shown = Problems(p).to_string();
    assert!(shown.contains("/etc/gatehouse/test.toml:4:"), "{shown}");
}

#[test]
fn missing_required_keys() {
    let p = problems("[[listener]]\nname = \"a\"\n\n[[site]]\nlistener = \"a\"\n");
    assert!(p.iter().any(|p| p.key == "listener[0].bind" && p.message.contains("missing")), "{p:#?}");
    assert!(p.iter().any(|p| p.key == "site[0].name" && p.message.contains("missing")), "{p:#?}");
    assert!(p.iter().any(|p| p.key == "site[0].backend" && p.message.contains("missing")), "{p:#?}");
}

#[test]
fn wrong_types() {
    let p = problems("[[listener]]\nname = 5\nbind = \"127.0.0.1:1\"\n\n[limits]\nmax_connections = \"many\"\n\n[timeouts]\nstream_idle = \"soon\"\n");
    assert!(has(&p, 2, "listener[0].name", "expected a string"), "{p:#?}");
    assert!(has(&p, 6, "limits.max_connections", "whole number"), "{p:#?}");
    assert!(has(&p, 9, "timeouts.stream_idle", "duration"), "{p:#?}");
}

/// Issue 10 and 12's keys refuse what they cannot mean.
#[test]
fn new_keys_refuse_wrong_values() {
    let p = problems(&GOOD.replace("identity_header", "websocket = \"yes\"\nidentity_header"));
    assert!(p.iter().any(|p| p.key == "site[0].websocket" && p.message.contains("true or false")), "{p:#?}");
    for bad in ["\"0s\"", "\"500ms\"", "\"soon\""] {
        let p = problems(&format!("[log]\nno_site_summary = {bad}\n{GOOD}"));
        assert!(p.iter().any(|p| p.line == 2 && p.key == "log.no_site_summary"), "{bad}: {p:#?}");
    }
    let ok = load_str(Path::new("/etc/gatehouse/test.toml"), &format!("[log]\nno_site_summary = \"5m\"\n{GOOD}"));
    assert_eq!(ok.unwrap().log.no_site_summary, std::time::Duration::from_secs(300));
}

#[test]
fn syntax_errors_have_lines() {
    let p = problems("[[listener]]\nname = \"a\nbind = 1\n");
    assert!(p.iter().any(|p| p.line >= 2 && p.key.is_empty()), "{p:#?}");
}

#[test]
fn duplicates_are_refused() {
    let text = r#"
[[listener]]
name = "a"
bind = "127.0.0.1:1"
[[listener]]
name = "a"
bind = "127.0.0.1:2"
[[site]]
name = "s"
listener = "a"
backend = "http://127.0.0.1:3"
[[site]]
name = "s"
listener = "a"
backend = "http://127.0.0.1:4"
"#;
    let p = problems(text);
    assert!(p.iter().any(|p| p.message.contains("two listeners are named `a`")), "{p:#?}");
    assert!(p.iter().any(|p| p.message.contains("two sites are named `s`")), "{p:#?}");
    assert!(p.iter().any(|p| p.message.contains("already serves any host")), "{p:#?}");
}

#[test]
fn ntlm_needs_accounts_and_domain() {
    let text = GOOD.replace("identity_header", "auth = [\"NTLM\"]\nidentity_header");
    let p = problems(&text);
    assert!(p.iter().any(|p| p.key == "accounts" && p.message.contains("[accounts]")), "{p:#?}");
    assert!(p.iter().any(|p| p.key == "domain"), "{p:#?}");
}

#[test]
fn ntlm_with_a_user_file_loads() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("users.ntlm"), "ADTEST:bob:Bob-Pass1\n").unwrap();
    let text = format!(
        "[domain]\nrealm = \"ad.test\"\nnetbios_name = \"adtest\"\nacceptor_spn = \"HTTP/proxy.ad.test\"\n\n[accounts]\nsource = \"file\"\nfile = \"users.ntlm\"\n{}",
        GOOD.replace("identity_header", "auth = [\"NTLM\"]\nidentity_header").replace("bind = \"127.0.0.1:8443\"", "bind = \"127.0.0.1:8443\"\nchannel_binding = \"required\"")
    );
    let c = load_str(&dir.path().join("g.toml"), &text).unwrap();
    let d = c.domain.unwrap();
    assert_eq!(
        (d.realm.as_str(), d.netbios_name.as_str(), d.computer_dns.as_str()),
        ("AD.TEST", "ADTEST", "proxy.ad.test")
    );
    assert_eq!(c.sites[0].auth, vec![Scheme::Ntlm]);
    assert_eq!(c.listeners[0].channel_binding, ntlm::ChannelBindingPolicy::Required);
    // A broken user file is reported with its own line number.
    std::fs::write(dir.path().join("users.ntlm"), "ADTEST:bob:Bob-Pass1\nnonsense\n").unwrap();
    let p = load_str(&dir.path().join("g.toml"), &text).unwrap_err().0;
    assert!(p.iter().any(|p| p.key == "accounts.file" && p.message.contains("users.ntlm:2")), "{p:#?}");
}

#[test]
fn unknown_schemes_and_modes_are_refused() {
    // Publishing a site that asks for a scheme gatehouse cannot enforce would
    // expose it anonymously; the loader must refuse instead.
    for (line, key) in [
        ("delegation = \"password\"", "site[0].delegation"),
        ("delegation = \"kcd\"", "site[0].delegation"),
        ("auth = [\"Kerberos5\"]", "site[0].auth"),
    ] {
        let p = problems(&GOOD.replace("identity_header", &format!("{line}\nidentity_header")));
        assert!(p.iter().any(|p| p.key == key), "{line}: {p:#?}");
    }
}

#[test]
fn auth_for_rules() {
    let base = GOOD.replace("identity_header", "auth = [\"NTLM\"]\nidentity_header");
    let with_rule = |rule: &str| {
        format!("[domain]\nrealm = \"AD.TEST\"\nnetbios_name = \"ADTEST\"\n[accounts]\nsource = \"winbind\"\n{base}\n[[site.auth_for]]\n{rule}\n")
    };
    let p = problems(&with_rule("client_ip = [\"10.0.0.0/33\"]\nauth = [\"NTLM\"]"));
    assert!(p.iter().any(|p| p.key == "site[0].auth_for[0].client_ip"), "{p:#?}");
    let p = problems(&with_rule("user_agent = \"*Communicator*\"\nauth = []"));
    assert!(p.iter().any(|p| p.message.contains("anonymously")), "{p:#?}");
    let p = problems(&with_rule("auth = [\"NTLM\"]"));
    assert!(p.iter().any(|p| p.message.contains("needs user_agent or client_ip")), "{p:#?}");
    let ok = load_str(
        Path::new("/tmp/g.toml"),
        &with_rule("user_agent = \"*Communicator*\"\nclient_ip = [\"10.0.0.0/8\", \"192.0.2.7\"]\nauth = [\"NTLM\"]"),
    )
    .unwrap();
    assert_eq!(ok.sites[0].auth_for[0].client_ip.len(), 2);
}

#[test]
fn backend_urls() {
    let ok = |u: &str| read_backend(u).unwrap();
    assert_eq!(ok("http://10.0.0.5").origin, "http://10.0.0.5:80");
    assert_eq!(ok("https://iis.corp").port, 443);
    assert!(ok("https://iis.corp").tls.is_some());
    assert_eq!(ok("http://[::1]:8080").host, "::1");
    assert!(read_backend("http://x/owa").is_err());
    assert!(read_backend("x:80").is_err());
}

#[test]
fn bad_path_prefix_and_hosts() {
    let text = GOOD
        .replace("path_prefix = \"/\"", "path_prefix = \"owa/../x\"")
        .replace("[\"Mail.AD.test\"]", "[\"https://mail\"]");
    let p = problems(&text);
    assert!(p.iter().any(|p| p.key == "site[0].path_prefix"), "{p:#?}");
    assert!(p.iter().any(|p| p.key == "site[0].hosts"), "{p:#?}");
}

#[test]
fn path_prefix_is_what_routing_compares() {
    let with = |p: &str| GOOD.replace("path_prefix = \"/\"", &format!("path_prefix = \"{p}\""));
    for bad in ["/a%20b", "/api;x", "/a//b", "/secure.", "/secure ", "/SECURE~1", "/a::$DATA", "/(S(x))", "ews"] {
        assert!(problems(&with(bad)).iter().any(|p| p.key == "site[0].path_prefix"), "{bad}");
    }
    for good in ["/", "/owa/", "/EWS", "/Ünicode", "/a.b/c"] {
        let loaded = load_str(Path::new("/etc/gatehouse/test.toml"), &with(good));
        assert!(loaded.is_ok(), "{good}: {:#?}", loaded.err().map(|e| e.0));
    }
}

#[test]
fn backend_tls_needs_https() {
    let text = GOOD.replace("identity_header", "backend_tls = { verify = false }\nidentity_header");
    let p = problems(&text);
    assert!(p.iter().any(|p| p.message.contains("needs an https:// backend")), "{p:#?}");
}

/// A backend as a URL reads, for other modules' tests.
pub fn backend(u: &str) -> Backend {
    super::read::parse_backend(u).unwrap()
}

fn read_backend(u: &str) -> Result<Backend, String> {
    super::read::parse_backend(u)
}

/// `k.keytab` in `dir`, with keys for the service principals the tests name.
fn write_test_keytab(dir: &Path) {
    std::fs::write(dir.join("k.keytab"), crate::keytab::for_tests(&["svc@AD.TEST", "s@AD.TEST"])).unwrap();
}

#[test]
fn delegation_keys() {
    let dir = tempfile::tempdir().unwrap();
    write_test_keytab(dir.path());
    let g = dir.path().join("g.toml");
    let problems = |text: &str| load_str(&g, text).unwrap_err().0;
    let kcd = |extra: &str| {
        format!(
            "[domain]\nrealm = \"AD.TEST\"\nnetbios_name = \"ADTEST\"\nkeytab = \"k.keytab\"\nservice_principal = \"svc@AD.TEST\"\n[accounts]\nsource = \"winbind\"\n{}",
            GOOD.replace(
                "identity_header",
                &format!("auth = [\"NTLM\"]\ndelegation = \"kcd\"\nbackend_spn = \"HTTP/{{backend_host}}\"\n{extra}\nidentity_header")
            )
        )
    };
    let c = load_str(&g, &kcd("delegation_user = \"upn\"")).unwrap();
    let d = c.sites[0].kcd().unwrap();
    let spn = d.spn_for(&c.sites[0].farm.members[0].backend);
    assert_eq!((spn.as_str(), d.user), ("HTTP/127.0.0.1", DelegationUser::Upn));
    let c = load_str(&g, &kcd("")).unwrap();
    assert_eq!(c.sites[0].kcd().unwrap().user, DelegationUser::Account);
    for (extra, key) in [
        ("delegation_user = \"sam\"", "site[0].delegation_user"),
        ("backend_token = \"ntlm\"", "site[0].backend_token"),
        ("send_token = \"never\"", "site[0].send_token"),
    ] {
        let p = problems(&kcd(extra));
        assert!(p.iter().any(|p| p.key == key), "{extra}: {p:#?}");
    }
    // Delegation keys without delegation are mistakes, not silently ignored.
    let p = problems(&GOOD.replace("identity_header", "delegation_user = \"upn\"\nidentity_header"));
    assert!(p.iter().any(|p| p.key == "site[0].delegation_user" && p.message.contains("only meaningful")), "{p:#?}");
}

#[test]
fn basic_needs_tls_and_the_kerberos_account() {
    // GOOD's listener has no TLS.
    let p = problems(&GOOD.replace("identity_header", "auth = [\"Basic\"]\nidentity_header"));
    assert!(p.iter().any(|p| p.key == "site[0].auth" && p.message.contains("in clear")), "{p:#?}");
    // Nothing to check the password with: the site and both fixes are named.
    assert!(
        p.iter().any(|p| p.key == "site[0].auth"
            && p.message.contains("site `exchange` offers Basic")
            && p.message.contains("[accounts]")
            && p.message.contains("[domain] keytab")),
        "{p:#?}"
    );
}

#[test]
fn exchange_preset_expands_to_the_exchange_paths() {
    let text = r#"
[domain]
realm = "AD.TEST"
netbios_name = "ADTEST"
keytab = "k.keytab"
service_principal = "svc@AD.TEST"
acceptor_spn = "HTTP/mail.ad.test"

[accounts]
source = "winbind"

[[listener]]
name = "public"
bind = "127.0.0.1:8443"
tls = { cert = "CERT", key = "KEY" }

[[site]]
name = "exchange"
preset = "exchange"
listener = "public"
hosts = ["mail.ad.test"]
backend = "https://exch01.ad.test"
delegation = "kcd"
backend_spn = "HTTP/{backend_host}"
"#;
    let dir = tempfile::tempdir().unwrap();
    crate::config::tests::write_test_cert(dir.path());
    write_test_keytab(dir.path());
    let text = text
        .replace("CERT", &dir.path().join("c.pem").to_string_lossy())
        .replace("KEY", &dir.path().join("c.key").to_string_lossy());
    let c = load_str(&dir.path().join("g.toml"), &text).unwrap();
    let paths: Vec<&str> = c.sites.iter().map(|s| s.path_prefix.as_str()).collect();
    assert_eq!(
        paths,
        ["/autodiscover", "/ews", "/rpc", "/mapi", "/oab", "/owa", "/ecp", "/Microsoft-Server-ActiveSync"]
    );
    let by = |p: &str| c.sites.iter().find(|s| s.path_prefix == p).unwrap();
    assert_eq!(by("/ews").auth, vec![Scheme::Negotiate, Scheme::Ntlm]);
    assert!(by("/ews")
        .auth_for
        .iter()
        .any(|r| r.user_agent.as_deref() == Some("*Communicator*") && r.auth == vec![Scheme::Ntlm]));
    assert!(by("/rpc").auth_for.iter().any(|r| r.user_agent.as_deref() == Some("MSRPC")));
    assert!(by("/rpc").stream_idle.unwrap() >= std::time::Duration::from_secs(15 * 60));
    assert!(by("/mapi").stream_idle.unwrap() >= std::time::Duration::from_secs(15 * 60));
    assert_eq!(by("/ews").stream_idle, None);
    assert_eq!(by("/Microsoft-Server-ActiveSync").auth, vec![Scheme::Basic]);
    assert!(c.sites.iter().all(|s| s.kcd().unwrap().spn_for(&s.farm.members[0].backend) == "HTTP/exch01.ad.test"));
    assert!(crate::config::describe_site(by("/rpc")).contains("[NTLM] for user agent MSRPC"));
    // A preset publishes its own paths; an unknown preset is an error.
    let p = load_str(
        &dir.path().join("g.toml"),
        &text.replace("preset = \"exchange\"", "preset = \"exchange\"\npath_prefix = \"/owa\""),
    )
    .unwrap_err()
    .0;
    assert!(p.iter().any(|p| p.key == "site[0].path_prefix"), "{p:#?}");
    let p = load_str(&dir.path().join("g.toml"), &text.replace("preset = \"exchange\"", "preset = \"sharepoint\""))
        .unwrap_err()
        .0;
    assert!(p.iter().any(|p| p.key == "site[0].preset"), "{p:#?}");
}

/// A self-signed certificate and key as `c.pem` and `c.key` in `dir`.
pub fn write_test_cert(dir: &Path) {
    let cert = rcgen::generate_simple_self_signed(vec!["mail.ad.test".to_string()]).unwrap();
    std::fs::write(dir.join("c.pem"), cert.cert.pem()).unwrap();
    std::fs::write(dir.join("c.key"), cert.signing_key.serialize_pem()).unwrap();
}

#[test]
fn forwarding_basic_needs_basic_alone() {
    let tls = GOOD
        .replace("bind = \"127.0.0.1:8443\"", "bind = \"127.0.0.1:8443\"\ntls = { cert = \"CERT\", key = \"KEY\" }");
    let dir = tempfile::tempdir().unwrap();
    write_test_cert(dir.path());
    write_test_keytab(dir.path());
    let tls = tls
        .replace("CERT", &dir.path().join("c.pem").to_string_lossy())
        .replace("KEY", &dir.path().join("c.key").to_string_lossy());
    let domain = "[domain]\nrealm = \"AD.TEST\"\nnetbios_name = \"ADTEST\"\nkeytab = \"k.keytab\"\nservice_principal = \"s@AD.TEST\"\nacceptor_spn = \"HTTP/m.ad.test\"\n[accounts]\nsource = \"winbind\"\n";
    let site = |auth: &str| {
        format!(
            "{domain}{}",
            tls.replace("identity_header", &format!("auth = {auth}\ndelegation = \"basic\"\nidentity_header"))
        )
    };
    let c = load_str(&dir.path().join("g.toml"), &site("[\"Basic\"]")).unwrap();
    assert!(matches!(c.sites[0].delegation, Delegation::ForwardBasic) && c.sites[0].kcd().is_none());
    let p = load_str(&dir.path().join("g.toml"), &site("[\"Negotiate\", \"Basic\"]")).unwrap_err().0;
    assert!(p.iter().any(|p| p.key == "site[0].delegation" && p.message.contains("Basic alone")), "{p:#?}");
}

#[test]
fn lockout_memory_and_network_keys() {
    let c = load_str(Path::new("/tmp/x.toml"), GOOD).unwrap();
    assert_eq!((c.lockout.max_entries, c.lockout.ipv4_prefix, c.lockout.ipv6_prefix), (100_000, 32, 64));
    let text = format!("{GOOD}\n[lockout]\nmax_entries = 5000\nipv4_prefix = 24\nipv6_prefix = 56\n");
    let c = load_str(Path::new("/tmp/x.toml"), &text).unwrap();
    assert_eq!((c.lockout.max_entries, c.lockout.ipv4_prefix, c.lockout.ipv6_prefix), (5000, 24, 56));
    let bad = format!("{GOOD}\n[lockout]\nmax_entries = 0\nipv4_prefix = 33\nipv6_prefix = 8\n");
    let p = problems(&bad);
    let start = GOOD.lines().count() + 2;
    assert!(has(&p, start + 1, "lockout.max_entries", "whole number from 100"), "{p:#?}");
    assert!(has(&p, start + 2, "lockout.ipv4_prefix", "from 8 to 32"), "{p:#?}");
    assert!(has(&p, start + 3, "lockout.ipv6_prefix", "from 32 to 128"), "{p:#?}");
}

/// `[[listener]]` with TLS on a test certificate, and the exchange preset; the
/// caller adds `[domain]` and `[accounts]`.
fn exchange_preset(dir: &Path, sections: &str) -> String {
    write_test_cert(dir);
    write_test_keytab(dir);
    format!(
        "{sections}\n[[listener]]\nname = \"public\"\nbind = \"127.0.0.1:8443\"\ntls = {{ cert = \"{}\", key = \"{}\" }}\n\n[[site]]\nname = \"exchange\"\npreset = \"exchange\"\nlistener = \"public\"\nhosts = [\"mail.ad.test\"]\nbackend = \"https://exch01.ad.test\"\n",
        dir.join("c.pem").display(),
        dir.join("c.key").display()
    )
}

const NO_KEYTAB: &str = "[domain]\nrealm = \"AD.TEST\"\nnetbios_name = \"ADTEST\"\n";

/// Issue 11, defect 3: the exchange preset offers Basic on ActiveSync; with
/// NTLM accounts from a file (or winbind) and no keytab, Basic is checked by
/// those accounts, and the file loads.
#[test]
fn exchange_preset_with_accounts_and_no_keytab_loads() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("users.ntlm"), "ADTEST:bob:Bob-Pass1\n").unwrap();
    for accounts in ["source = \"file\"\nfile = \"users.ntlm\"", "source = \"winbind\""] {
        let text = exchange_preset(dir.path(), &format!("{NO_KEYTAB}[accounts]\n{accounts}\n"));
        let c = load_str(&dir.path().join("g.toml"), &text).unwrap_or_else(|p| panic!("{accounts}:\n{p}"));
        let activesync = c.sites.iter().find(|s| s.name == "exchange/activesync").unwrap();
        assert!(activesync.offers(Scheme::Basic) && !c.basic_by_kdc());
        assert!(c.describe_passwords().contains("Basic by the"), "{}", c.describe_passwords());
    }
}

/// Without accounts and without a keytab nothing can check a Basic password:
/// the problem names the expanded site and both keys that fix it, at the
/// `[[site]]` table it came from.
#[test]
fn basic_with_nothing_to_check_it_names_the_expanded_site_and_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    // Negotiate and NTLM off, so that Basic's is the one problem about it.
    let sections = "[domain]\nrealm = \"AD.TEST\"\nnetbios_name = \"ADTEST\"\n";
    let text = exchange_preset(dir.path(), sections)
        .replace("preset = \"exchange\"", "preset = \"exchange\"\nauth = [\"Basic\"]");
    let p = load_str(&dir.path().join("g.toml"), &text).unwrap_err().0;
    let basic: Vec<_> = p.iter().filter(|p| p.message.contains("offers Basic")).collect();
    assert_eq!(basic.len(), 1, "{p:#?}");
    let b = basic[0];
    assert_eq!(b.key, "site[0].auth");
    assert!(b.message.contains("site `exchange/") && b.message.contains("[accounts]"), "{b:#?}");
    assert!(b.message.contains("[domain] keytab, service_principal and acceptor_spn"), "{b:#?}");
    let site_line = text.lines().position(|l| l == "[[site]]").unwrap() + 1;
    assert_eq!(b.line, site_line, "{b:#?}");
    // The preset as shipped (Negotiate, NTLM, Basic on ActiveSync) names
    // exchange/activesync for Basic, and Negotiate's own need separately.
    let p = load_str(&dir.path().join("g.toml"), &exchange_preset(dir.path(), sections)).unwrap_err().0;
    assert!(p.iter().any(|p| p.message.contains("site `exchange/activesync` offers Basic")), "{p:#?}");
    assert!(p.iter().any(|p| p.key == "domain" && p.message.contains("offers Negotiate")), "{p:#?}");
    // A Kerberos setup begun but not finished is reported even with accounts.
    let half = format!("{sections}keytab = \"k.keytab\"\n[accounts]\nsource = \"winbind\"\n");
    let p = load_str(&dir.path().join("g.toml"), &exchange_preset(dir.path(), &half)).unwrap_err().0;
    assert!(p.iter().any(|p| p.key == "domain" && p.message.contains("offers Negotiate")), "{p:#?}");
    assert!(!p.iter().any(|p| p.message.contains("offers Basic")), "{p:#?}");
    // A keytab alone (no accounts) is enough for Basic.
    let keytab = format!(
        "{NO_KEYTAB}keytab = \"k.keytab\"\nservice_principal = \"s@AD.TEST\"\nacceptor_spn = \"HTTP/mail.ad.test\"\n"
    );
    let p = load_str(&dir.path().join("g.toml"), &exchange_preset(dir.path(), &keytab)).unwrap_err().0;
    assert!(!p.iter().any(|p| p.message.contains("offers Basic")), "{p:#?}");
    assert!(
        p.iter().any(|p| p.key == "accounts" && p.message.contains("exchange/")),
        "NTLM still needs accounts: {p:#?}"
    );
}

/// One enum for the three delegations; the value names its choices when wrong.
#[test]
fn delegation_is_one_of_three() {
    let dir = tempfile::tempdir().unwrap();
    let keytab = "[domain]\nrealm = \"AD.TEST\"\nnetbios_name = \"ADTEST\"\nkeytab = \"k.keytab\"\nservice_principal = \"s@AD.TEST\"\nacceptor_spn = \"HTTP/mail.ad.test\"\n[accounts]\nsource = \"winbind\"\n";
    let site = |d: &str| {
        exchange_preset(dir.path(), keytab).replace("preset = \"exchange\"\n", &format!("auth = [\"Basic\"]\n{d}"))
    };
    let load = |d: &str| load_str(&dir.path().join("g.toml"), &site(d));
    assert!(matches!(load("").unwrap().sites[0].delegation, Delegation::None));
    assert!(matches!(load("delegation = \"none\"\n").unwrap().sites[0].delegation, Delegation::None));
    assert!(matches!(load("delegation = \"basic\"\n").unwrap().sites[0].delegation, Delegation::ForwardBasic));
    let kcd = load("delegation = \"kcd\"\nbackend_spn = \"HTTP/{backend_host}\"\nsend_token = \"on-401\"\n").unwrap();
    let k = kcd.sites[0].kcd().unwrap();
    let spn = k.spn_for(&kcd.sites[0].farm.members[0].backend);
    assert_eq!((spn.as_str(), k.send, k.token), ("HTTP/exch01.ad.test", SendToken::On401, kcd::Token::Spnego));
    let p = load("delegation = \"password\"\nbackend_spn = \"HTTP/x\"\n").unwrap_err().0;
    assert!(
        p.iter().any(
            |p| p.key == "site[0].delegation" && p.message == "`password`: expected \"none\", \"kcd\" or \"basic\""
        ),
        "{p:#?}"
    );
    assert_eq!(p.len(), 1, "an unknown mode is one problem, not one per kcd key: {p:#?}");
    let p = load("delegation = \"kcd\"\nbackend_spn = \"HTTP/x\"\nbackend_token = \"ntlm\"\nsend_token = 3\n")
        .unwrap_err()
        .0;
    assert!(
        p.iter().any(|p| p.key == "site[0].backend_token" && p.message.contains("\"spnego\" or \"kerberos\"")),
        "{p:#?}"
    );
    assert!(p.iter().any(|p| p.key == "site[0].send_token" && p.message.contains("expected a string")), "{p:#?}");
}

/// The accounts file is held as data: its path and the parsed entries.
#[test]
fn the_users_file_is_data_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("users.ntlm"), "ADTEST:bob:Bob-Pass1\n").unwrap();
    let text = format!("{NO_KEYTAB}[accounts]\nsource = \"file\"\nfile = \"users.ntlm\"\n{GOOD}");
    let c = load_str(&dir.path().join("g.toml"), &text).unwrap();
    let Some(Accounts::File { path, users }) = &c.accounts else { panic!("{:?}", c.accounts) };
    assert_eq!(path, &dir.path().join("users.ntlm"));
    assert_eq!(users.hash("adtest", "BOB"), Some(&ntlm::crypto::nt_hash("Bob-Pass1")));
    let p = problems(&text.replace("source = \"file\"", "source = \"ldap\""));
    assert!(p.iter().any(|p| p.key == "accounts.source" && p.message.contains("\"file\" or \"winbind\"")), "{p:#?}");
}

/// Issue 12: a `tls` table that fails to load stopped the listener's reading,
/// and every key after it was "unknown"; now the keys after it are read, and
/// their own mistakes reported.
#[test]
fn a_broken_tls_table_gives_no_false_unknown_keys() {
    let text = "[[listener]]\nname = \"l\"\nbind = \"127.0.0.1:1\"\ntls = { cert = \"/nonexistent/c.pem\", key = \"/nonexistent/c.key\" }\nchannel_binding = \"sometimes\"\nhttp2 = true\n";
    let p = problems(text);
    assert!(!p.iter().any(|p| p.message.contains("unknown key")), "{p:#?}");
    assert!(has(&p, 4, "listener[0].tls.cert", "No such file"), "{p:#?}");
    assert!(has(&p, 5, "listener[0].channel_binding", "`sometimes`: expected"), "{p:#?}");
    assert!(!p.iter().any(|p| p.key == "listener[0].http2"), "http2 with a broken tls is not `no TLS`: {p:#?}");
    // A misspelt source: the keys of both sources are still known.
    let p = problems("[accounts]\nsource = \"ad\"\nntlm_auth = \"/x\"\nfile = \"u\"\n");
    assert!(!p.iter().any(|p| p.message.contains("unknown key")), "{p:#?}");
    assert!(has(&p, 2, "accounts.source", "`ad`"), "{p:#?}");
    // Winbind's keys with the file source are mistakes, named as such.
    let p = problems("[accounts]\nsource = \"winbind\"\nfile = \"u\"\n");
    assert!(has(&p, 3, "accounts.file", "only meaningful with source = \"file\""), "{p:#?}");
}

/// `[domain] keytab` is opened at load; `doctor` loads without judging it.
#[test]
fn the_keytab_is_read_at_load_but_left_to_doctor() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("g.toml");
    let text = format!("{NO_KEYTAB}keytab = \"k.keytab\"\nservice_principal = \"svc@AD.TEST\"\n{GOOD}");
    std::fs::write(&file, &text).unwrap();
    let p = super::load(&file).unwrap_err().0;
    assert!(has(&p, 4, "domain.keytab", "cannot read the keytab"), "{p:#?}");
    assert!(p[0].message.contains(&format!("gatehouse doctor -c {}", file.display())), "{p:#?}");
    assert!(super::load_leaving_keytab(&file).is_ok());
    std::fs::write(dir.path().join("k.keytab"), crate::keytab::for_tests(&["other@AD.TEST"])).unwrap();
    let p = super::load(&file).unwrap_err().0;
    assert!(has(&p, 4, "domain.keytab", "holds no key for svc@AD.TEST (it holds other@AD.TEST)"), "{p:#?}");
    // A service principal without realm is the realm's.
    write_test_keytab(dir.path());
    std::fs::write(&file, text.replace("svc@AD.TEST", "svc")).unwrap();
    assert!(super::load(&file).is_ok());
}

/// `exclude` leaves preset paths out; `[[site.path]]` sets one path's keys
/// and nothing else; both are noted for `check`.
#[test]
fn preset_exceptions_change_only_what_they_name() {
    let dir = tempfile::tempdir().unwrap();
    let keytab = "[domain]\nrealm = \"AD.TEST\"\nnetbios_name = \"ADTEST\"\nkeytab = \"k.keytab\"\nservice_principal = \"s@AD.TEST\"\nacceptor_spn = \"HTTP/mail.ad.test\"\n[accounts]\nsource = \"winbind\"\n";
    let base = exchange_preset(dir.path(), keytab);
    let text = format!(
        "{base}exclude = [\"/ECP\", \"/oab\"]\n\n[[site.path]]\nprefix = \"/rpc\"\nstream_idle = \"1h\"\nwebsocket = false\n"
    );
    let c = load_str(&dir.path().join("g.toml"), &text).unwrap_or_else(|p| panic!("{p}"));
    let paths: Vec<&str> = c.sites.iter().map(|s| s.path_prefix.as_str()).collect();
    assert_eq!(paths, ["/autodiscover", "/ews", "/rpc", "/mapi", "/owa", "/Microsoft-Server-ActiveSync"]);
    assert_eq!(c.left_out, ["exchange/oab", "exchange/ecp"], "in the preset's order");
    let rpc = c.sites.iter().find(|s| s.path_prefix == "/rpc").unwrap();
    let mapi = c.sites.iter().find(|s| s.path_prefix == "/mapi").unwrap();
    assert_eq!(rpc.stream_idle, Some(std::time::Duration::from_secs(3600)));
    assert!(!rpc.websocket && mapi.websocket);
    assert_eq!(rpc.auth, mapi.auth, "what the path does not set stays the preset's");
    assert_eq!(rpc.auth_for.len(), mapi.auth_for.len());
    assert_eq!(c.set_by_path, [("exchange/rpc".to_string(), vec!["stream_idle", "websocket"])]);
    let lines = describe_sites(&c);
    assert!(lines.iter().any(|l| l.starts_with("site exchange/rpc:") && l.ends_with("set by [[site.path]]: stream_idle, websocket")), "{lines:#?}");
    assert!(lines.contains(&"site exchange/oab: left out (exclude)".to_string()), "{lines:#?}");
    // A path made anonymous while the preset delegates: refused.
    let kcd = base.replace("backend = ", "delegation = \"kcd\"\nbackend_spn = \"HTTP/{backend_host}\"\nbackend = ");
    let anonymous = format!("{kcd}\n[[site.path]]\nprefix = \"/owa\"\nauth = []\nauth_for = []\n");
    let p = load_str(&dir.path().join("g.toml"), &anonymous).unwrap_err().0;
    assert!(p.iter().any(|p| p.key == "site[0].path[0].auth" && p.message.contains("anonymously")), "{p:#?}");
    // A path with auth = [] keeping the preset's per-agent rules: said.
    let rules = format!("{base}\n[[site.path]]\nprefix = \"/owa\"\nauth = []\n");
    let p = load_str(&dir.path().join("g.toml"), &rules).unwrap_err().0;
    assert!(p.iter().any(|p| p.key == "site[0].path[0].auth" && p.message.contains("auth_for")), "{p:#?}");
}

/// Issue 13: a preset's site-level allow and deny go to every path; a
/// `[[site.path]]` with either replaces both for that path (`/ecp` for admins).
#[test]
fn preset_paths_take_access_rules_of_their_own() {
    let dir = tempfile::tempdir().unwrap();
    let keytab = "[domain]\nrealm = \"AD.TEST\"\nnetbios_name = \"ADTEST\"\nkeytab = \"k.keytab\"\nservice_principal = \"s@AD.TEST\"\nacceptor_spn = \"HTTP/mail.ad.test\"\n[accounts]\nsource = \"winbind\"\n";
    let base = exchange_preset(dir.path(), keytab);
    let text = format!(
        "{base}deny = [\"S-1-5-21-1-2-3-1300\"]\n\n[[site.path]]\nprefix = \"/ecp\"\nallow = [\"S-1-5-21-1-2-3-512\"]\n"
    );
    let c = load_str(&dir.path().join("g.toml"), &text).unwrap_or_else(|p| panic!("{p}"));
    let ecp = c.sites.iter().find(|s| s.path_prefix == "/ecp").unwrap();
    let owa = c.sites.iter().find(|s| s.path_prefix == "/owa").unwrap();
    assert_eq!(ecp.rules.allow.len(), 1);
    assert!(ecp.rules.deny.is_empty(), "the path's rules replace the site's");
    assert!(owa.rules.allow.is_empty() && owa.rules.deny[0].written == "S-1-5-21-1-2-3-1300");
    assert_eq!(c.set_by_path, [("exchange/ecp".to_string(), vec!["allow/deny"])]);
    let lines = describe_sites(&c);
    assert!(
        lines.iter().any(|l| l.starts_with("site exchange/ecp:") && l.contains("; allow [S-1-5-21-1-2-3-512]")),
        "{lines:#?}"
    );
    // A bad entry on a path is found where it is written.
    let bad = text.replace("S-1-5-21-1-2-3-512", "S-1-5-oops");
    let p = load_str(&dir.path().join("g.toml"), &bad).unwrap_err().0;
    assert!(p.iter().any(|p| p.key == "site[0].path[0].allow" && p.message.contains("SID")), "{p:#?}");
}

/// Issue 12: `acceptor_spn` takes one SPN or a list of them (each published
/// name a Kerberos ticket may be for); anything else names the cause.
#[test]
fn acceptor_spn_is_one_spn_or_a_list() {
    let with = |value: &str| {
        format!("{GOOD}\n[domain]\nrealm = \"AD.TEST\"\nnetbios_name = \"ADTEST\"\nacceptor_spn = {value}\n")
    };
    let one = load_str(Path::new("/tmp/x.toml"), &with("\"HTTP/mail.ad.test\"")).unwrap();
    assert_eq!(one.domain.as_ref().unwrap().acceptor_spn, ["HTTP/mail.ad.test"]);
    let two =
        load_str(Path::new("/tmp/x.toml"), &with("[\"HTTP/mail.ad.test\", \"HTTP/autodiscover.ad.test\"]")).unwrap();
    let d = two.domain.unwrap();
    assert_eq!(d.acceptor_spn, ["HTTP/mail.ad.test", "HTTP/autodiscover.ad.test"]);
    // The first names gatehouse in NTLM challenges, as the single one did.
    assert_eq!((d.computer_dns.as_str(), d.computer_netbios.as_str()), ("mail.ad.test", "MAIL"));
    let line = with("x").lines().position(|l| l.starts_with("acceptor_spn")).unwrap() + 1;
    for (value, words) in [
        ("[]", "an empty list accepts no Kerberos ticket"),
        ("42", "expected an SPN such as"),
        ("[\"HTTP/mail.ad.test\", 7]", "expected a string"),
        ("\"mail.ad.test\"", "`mail.ad.test` is not an SPN"),
        ("\"HTTP/\"", "is not an SPN"),
        ("\"HTTP/mail.ad.test@AD.TEST\"", "without @REALM"),
        ("[\"HTTP/mail.ad.test\", \"http/MAIL.ad.test\"]", "listed twice"),
    ] {
        let p = problems(&with(value));
        assert!(
            p.iter().any(|p| p.line == line && p.key.starts_with("domain.acceptor_spn") && p.message.contains(words)),
            "{value}: {p:#?}"
        );
    }
}

/// Issue 14: RC4 is refused unless `[domain] allow_rc4 = true`; the key
/// takes a bool and nothing else.
#[test]
fn allow_rc4_is_a_bool_and_off_by_default() {
    let with = |line: &str| format!("{GOOD}\n[domain]\nrealm = \"AD.TEST\"\nnetbios_name = \"ADTEST\"\n{line}\n");
    let read = |line: &str| load_str(Path::new("/tmp/x.toml"), &with(line)).unwrap().domain.unwrap().allow_rc4;
    assert!(!read(""), "absent: RC4 refused");
    assert!(!read("allow_rc4 = false"));
    assert!(read("allow_rc4 = true"));
    let line = with("x").lines().position(|l| l == "x").unwrap() + 1;
    for bad in ["\"true\"", "1", "\"yes\"", "[true]"] {
        let p = problems(&with(&format!("allow_rc4 = {bad}")));
        assert!(has(&p, line, "domain.allow_rc4", "expected true or false"), "{bad}: {p:#?}");
    }
    let p = problems(&with("allow_rc = true"));
    assert!(has(&p, line, "domain.allow_rc", "did you mean `allow_rc4`?"), "{p:#?}");
}

/// Issue 20: `[domain] credential_cache_size` bounds the users whose
/// delegated credential is kept; a whole number from 10 to 10,000,000.
#[test]
fn credential_cache_size_is_a_bounded_count() {
    let with = |line: &str| format!("{GOOD}\n[domain]\nrealm = \"AD.TEST\"\nnetbios_name = \"ADTEST\"\n{line}\n");
    let read =
        |line: &str| load_str(Path::new("/tmp/x.toml"), &with(line)).unwrap().domain.unwrap().credential_cache_size;
    assert_eq!(read(""), kcd::DEFAULT_CACHE_SIZE);
    assert_eq!(read("credential_cache_size = 2000"), 2000);
    assert_eq!(read("credential_cache_size = 10"), 10);
    let line = with("x").lines().position(|l| l == "x").unwrap() + 1;
    for bad in ["0", "9", "10000001", "-5", "\"2000\"", "1.5"] {
        let p = problems(&with(&format!("credential_cache_size = {bad}")));
        assert!(
            has(&p, line, "domain.credential_cache_size", "expected a whole number from 10 to 10000000"),
            "{bad}: {p:#?}"
        );
    }
}

const RULES: &str = r#"
[domain]
realm = "AD.TEST"
netbios_name = "ADTEST"

[accounts]
source = "winbind"
ntlm_auth = "/bin/true"

[access]
refresh = "30s"
grace = "5m"
directory = "ldap://DC1.ad.test"
directory_address = "127.0.0.21"

[[listener]]
name = "public"
bind = "127.0.0.1:8443"

[[site]]
name = "finance"
listener = "public"
backend = "http://127.0.0.1:18080"
auth = ["NTLM"]
allow = ["ADTEST\\Finance", "alice", "S-1-5-21-1-2-3-1107"]
deny = ["ADTEST\\Contractors"]
"#;

#[test]
fn access_rules_and_the_access_section_load() {
    let c = load_str(Path::new("/tmp/x.toml"), RULES).unwrap();
    assert_eq!(c.access.refresh, std::time::Duration::from_secs(30));
    assert_eq!(c.access.grace, std::time::Duration::from_secs(300));
    let d = c.access.directory.as_ref().unwrap();
    assert_eq!((d.host.as_str(), d.port, d.address), ("dc1.ad.test", 389, Some("127.0.0.21:389".parse().unwrap())));
    let r = &c.sites[0].rules;
    let who: Vec<&Who> = r.allow.iter().map(|p| &p.who).collect();
    assert_eq!(
        who,
        [
            &Who::Name { domain: Some("ADTEST".into()), name: "finance".into() },
            &Who::Name { domain: None, name: "alice".into() },
            &Who::Sid(kcd::Sid::parse("S-1-5-21-1-2-3-1107").unwrap()),
        ]
    );
    assert_eq!(r.deny[0].written, "ADTEST\\Contractors");
    // Where each entry is written, for problems found when it is looked up.
    assert_eq!(r.allow[1].place, "/tmp/x.toml:25:29: site[0].allow");
    let described = describe_sites(&c).join("\n");
    assert!(
        described.contains("allow [ADTEST\\Finance, alice, S-1-5-21-1-2-3-1107] deny [ADTEST\\Contractors]"),
        "{described}"
    );
    // No [access]: ten minutes and an hour.
    let plain = load_str(Path::new("/tmp/x.toml"), GOOD).unwrap();
    assert_eq!((plain.access.refresh.as_secs(), plain.access.grace.as_secs()), (600, 3600));
    assert!(plain.sites[0].rules.is_empty());
}

#[test]
fn access_rules_refuse_wrong_values() {
    let p = problems(&RULES.replace(r#""alice","#, r#""al*ce","#));
    assert!(has(&p, 25, "site[0].allow", "`al*ce`: not a user or group name"), "{p:?}");
    let p = problems(&RULES.replace("S-1-5-21-1-2-3-1107", "S-1-5-x"));
    assert!(has(&p, 25, "site[0].allow", "not a well-formed SID"), "{p:?}");
    let p = problems(&RULES.replace(r#"deny = ["ADTEST\\Contractors"]"#, "deny = [\"AD.TEST\\\\x\"]"));
    assert!(has(&p, 26, "site[0].deny", "NetBIOS domain name"), "{p:?}");
    let p = problems(&RULES.replace(r#"allow = ["ADTEST\\Finance", "alice", "S-1-5-21-1-2-3-1107"]"#, "allow = []"));
    assert!(has(&p, 25, "site[0].allow", "would let nobody in"), "{p:?}");
    let p = problems(&RULES.replace(r#"allow = ["#, r#"allow = 3 #["#));
    assert!(p.iter().any(|p| p.key == "site[0].allow"), "{p:?}");
    let p = problems(&RULES.replace(r#"auth = ["NTLM"]"#, ""));
    assert!(p.iter().any(|p| p.message.contains("this site sets no `auth`")), "{p:?}");
    let p = problems(&RULES.replace(r#"refresh = "30s""#, r#"refresh = "0s""#));
    assert!(has(&p, 11, "access.refresh", "above zero"), "{p:?}");
    let p = problems(&RULES.replace(r#"refresh = "30s""#, r#"refresh = "500ms""#));
    assert!(has(&p, 11, "access.refresh", "at least 1s"), "{p:?}");
    let p = problems(&RULES.replace("ldap://DC1.ad.test", "ldap://127.0.0.21"));
    assert!(has(&p, 13, "access.directory", "not an address"), "{p:?}");
    let p = problems(&RULES.replace("ldap://DC1.ad.test", "ldaps://dc1"));
    assert!(has(&p, 13, "access.directory", "ldaps:// is not supported"), "{p:?}");
    let p = problems(&RULES.replace(r#"directory_address = "127.0.0.21""#, r#"directory_address = "dc1""#));
    assert!(has(&p, 14, "access.directory_address", "not an IP address"), "{p:?}");
    let p = problems(&RULES.replace(r#"directory = "ldap://DC1.ad.test""#, ""));
    assert!(p.iter().any(|p| p.key == "access.directory_address" && p.message.contains("needs `directory`")), "{p:?}");
    let p = problems(&RULES.replace("grace =", "graze ="));
    assert!(p.iter().any(|p| p.key == "access.graze"), "{p:?}");
}

/// A site of GOOD's shape with `backend = ...` replaced by `farm` (lines from 11 on).
fn farm_site(farm: &str) -> String {
    GOOD.replace("backend = \"http://127.0.0.1:18080\"\n", &format!("{farm}\n"))
}

/// The line of `needle` in `text`, counting from 1.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines().position(|l| l.contains(needle)).unwrap_or_else(|| panic!("{needle} not in {text}")) + 1
}

/// Issue 15: `backends` lists a farm; `backend` stays the farm of one.
#[test]
fn a_farm_loads_with_weights_drain_and_each_backends_tls() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, rcgen::generate_simple_self_signed(vec!["ca".into()]).unwrap().cert.pem()).unwrap();
    let text = farm_site(&format!(
        r#"backends = [
  "https://exch01.ad.test",
  {{ url = "https://10.0.0.7", weight = 3, tls = {{ server_name = "exch02.ad.test" }} }},
  {{ url = "https://exch03.ad.test:8443", drain = true, tls = {{ verify = false }} }},
]
backend_tls = {{ ca = "{}" }}"#,
        ca.display()
    ));
    let c = load_str(&dir.path().join("g.toml"), &text).unwrap_or_else(|p| panic!("{p}"));
    let farm = &c.sites[0].farm;
    let origins: Vec<&str> = farm.members.iter().map(|m| m.backend.origin.as_str()).collect();
    assert_eq!(origins, ["https://exch01.ad.test:443", "https://10.0.0.7:443", "https://exch03.ad.test:8443"]);
    assert_eq!(
        farm.members.iter().map(|m| (m.weight, m.drain)).collect::<Vec<_>>(),
        [(1, false), (3, false), (1, true)]
    );
    let tls: Vec<&BackendTls> = farm.members.iter().map(|m| m.backend.tls.as_ref().unwrap()).collect();
    // The site's CA for all; each backend's own keys over it.
    assert!(tls.iter().all(|t| t.ca.as_deref() == Some(ca.as_path())));
    assert_eq!(tls[1].server_name, "exch02.ad.test");
    assert_eq!((tls[0].server_name.as_str(), tls[0].verify, tls[2].verify), ("exch01.ad.test", true, false));
    // A farm is checked (TCP) and ejects what refuses connections; one backend is left alone.
    assert_eq!((farm.health.check.clone(), farm.health.eject_connect_failures), (Check::Tcp, 1));
    assert_eq!((farm.health.interval.as_secs(), farm.health.fall, farm.health.rise), (5, 3, 2));
    assert_eq!(farm.affinity, Affinity::None);
    let one = load_str(Path::new("/tmp/x.toml"), GOOD).unwrap();
    assert_eq!(
        (one.sites[0].farm.health.check.clone(), one.sites[0].farm.health.eject_connect_failures),
        (Check::None, 0)
    );
    let described = describe_sites(&c).join("\n");
    assert!(
        described.contains("farm [https://exch01.ad.test:443, https://10.0.0.7:443 (weight 3), https://exch03.ad.test:8443 (drained by the configuration)] checked by TCP connect every 5s (fall 3, rise 2)"),
        "{described}"
    );
    assert!(describe_sites(&one).join("").contains("-> http://127.0.0.1:18080 auth"), "one backend reads as before");
}

#[test]
fn health_and_affinity_keys_load() {
    let text = farm_site(
        r#"backends = ["http://a.ad.test", "http://b.ad.test"]
affinity = "cookie""#,
    ) + r#"
[site.health]
check = "http"
path = "/healthz?full=1"
status = 204
interval = "2s"
timeout = "500ms"
rise = 1
fall = 5
eject_after_connect_failures = 0
eject_after_gateway_errors = 10
eject_for = "1m"
"#;
    let c = load_str(Path::new("/tmp/x.toml"), &text).unwrap_or_else(|p| panic!("{p}"));
    let h = &c.sites[0].farm.health;
    assert_eq!(h.check, Check::Http { path: "/healthz?full=1".into(), status: 204 });
    assert_eq!((h.interval.as_millis(), h.timeout.as_millis(), h.rise, h.fall), (2000, 500, 1, 5));
    assert_eq!((h.eject_connect_failures, h.eject_gateway_errors, h.eject_for.as_secs()), (0, 10, 60));
    assert_eq!(c.sites[0].farm.affinity, Affinity::Cookie);
    let c =
        load_str(Path::new("/tmp/x.toml"), &farm_site("backend = \"http://a\"\nhealth = { check = \"tcp\" }")).unwrap();
    assert_eq!(c.sites[0].farm.health.check, Check::Tcp, "a farm of one is checked when asked");
}

/// Every value the farm keys refuse, at its line and key.
#[test]
fn farm_keys_refuse_wrong_values() {
    let cases: &[(&str, &str, &str, &str)] = &[
        ("backend = \"http://a\"\nbackends = [\"http://b\"]", "backends", "site[0].backends", "not both"),
        ("backends = []", "backends", "site[0].backends", "empty list"),
        ("backends = \"http://a\"", "backends", "site[0].backends", "expected a list"),
        ("backends = [\"http://a\", 7]", "backends", "site[0].backends[1]", "expected a backend URL"),
        ("backends = [\"http://a\", \"ftp://b\"]", "backends", "site[0].backends[1]", "not a backend URL"),
        ("backends = [\"http://a\", \"http://a:80\"]", "backends", "site[0].backends[1]", "listed twice"),
        ("backends = [{ url = \"http://a\", weight = 0 }]", "backends", "site[0].backends[0].weight", "from 1 to 1000"),
        (
            "backends = [{ url = \"http://a\", weight = 1001 }]",
            "backends",
            "site[0].backends[0].weight",
            "from 1 to 1000",
        ),
        (
            "backends = [{ url = \"http://a\", drain = \"yes\" }]",
            "backends",
            "site[0].backends[0].drain",
            "true or false",
        ),
        (
            "backends = [{ url = \"http://a\", wight = 2 }]",
            "backends",
            "site[0].backends[0].wight",
            "did you mean `weight`",
        ),
        ("backends = [{ weight = 2 }]", "backends", "site[0].backends[0].url", "missing required key `url`"),
        (
            "backends = [{ url = \"http://a\", tls = { verify = false } }]",
            "backends",
            "site[0].backends[0].url",
            "tls needs an https:// backend",
        ),
        (
            "backends = [{ url = \"https://a\", tls = { sni = \"x\" } }]",
            "backends",
            "site[0].backends[0].tls.sni",
            "unknown key",
        ),
        (
            "backends = [\"http://a\", \"http://b\"]\nbackend_tls = { verify = false }",
            "backend_tls",
            "site[0].backend_tls",
            "needs an https:// backend",
        ),
        ("backend = 3", "backend", "site[0].backend", "expected a URL"),
        (
            "backends = [\"http://a\", \"http://b\"]\naffinity = \"sticky\"",
            "affinity",
            "site[0].affinity",
            "\"none\", \"source\" or \"cookie\"",
        ),
        (
            "backends = [\"http://a\", \"http://b\"]\nhealth = { check = \"ping\" }",
            "health",
            "site[0].health.check",
            "\"none\", \"tcp\" or \"http\"",
        ),
        (
            "backends = [\"http://a\", \"http://b\"]\nhealth = { check = \"http\" }",
            "health",
            "site[0].health.path",
            "needs the path",
        ),
        (
            "backends = [\"http://a\", \"http://b\"]\nhealth = { check = \"http\", path = \"healthz\" }",
            "health",
            "site[0].health.path",
            "not an absolute path",
        ),
        (
            "backends = [\"http://a\", \"http://b\"]\nhealth = { check = \"http\", path = \"/a b\" }",
            "health",
            "site[0].health.path",
            "not an absolute path",
        ),
        (
            "backends = [\"http://a\", \"http://b\"]\nhealth = { path = \"/healthz\" }",
            "health",
            "site[0].health.path",
            "only meaningful with check = \"http\"",
        ),
        (
            "backends = [\"http://a\", \"http://b\"]\nhealth = { check = \"http\", path = \"/h\", status = 99 }",
            "health",
            "site[0].health.status",
            "from 100 to 599",
        ),
        (
            "backends = [\"http://a\", \"http://b\"]\nhealth = { rise = 0 }",
            "health",
            "site[0].health.rise",
            "from 1 to 100",
        ),
        (
            "backends = [\"http://a\", \"http://b\"]\nhealth = { fall = 101 }",
            "health",
            "site[0].health.fall",
            "from 1 to 100",
        ),
        (
            "backends = [\"http://a\", \"http://b\"]\nhealth = { interval = \"2s\", timeout = \"2s\" }",
            "health",
            "site[0].health.timeout",
            "shorter than interval",
        ),
        (
            "backends = [\"http://a\", \"http://b\"]\nhealth = { interval = \"0s\" }",
            "health",
            "site[0].health.interval",
            "above zero",
        ),
        (
            "backends = [\"http://a\", \"http://b\"]\nhealth = { check = \"none\", interval = \"2s\" }",
            "health",
            "site[0].health.interval",
            "only meaningful with check = \"tcp\" or \"http\"",
        ),
        (
            "backends = [\"http://a\", \"http://b\"]\nhealth = { eject_after_gateway_errors = -1 }",
            "health",
            "site[0].health.eject_after_gateway_errors",
            "whole number",
        ),
        (
            "backends = [\"http://a\", \"http://b\"]\nhealth = { eject_for = \"soon\" }",
            "health",
            "site[0].health.eject_for",
            "duration",
        ),
        (
            "backends = [\"http://a\", \"http://b\"]\nhealth = { intervall = \"2s\" }",
            "health",
            "site[0].health.intervall",
            "did you mean `interval`",
        ),
        ("backends = [\"http://a\", \"http://b\"]\nhealth = 5", "health", "site[0].health", "expected a table"),
    ];
    for (farm, at, key, words) in cases {
        let text = farm_site(farm);
        let line = line_of(&text, at);
        let p = problems(&text);
        assert!(has(&p, line, key, words), "{farm}: expected {key} at line {line} saying {words:?}: {p:#?}");
    }
    // Neither key: the site says what is missing.
    let p = problems(&GOOD.replace("backend = \"http://127.0.0.1:18080\"\n", ""));
    assert!(p.iter().any(|p| p.key == "site[0].backend" && p.message.contains("or `backends`")), "{p:#?}");
}

#[test]
fn a_farm_of_the_exchange_preset_checks_each_paths_own_page() {
    let dir = tempfile::tempdir().unwrap();
    let keytab = "[domain]\nrealm = \"AD.TEST\"\nnetbios_name = \"ADTEST\"\nkeytab = \"k.keytab\"\nservice_principal = \"s@AD.TEST\"\nacceptor_spn = \"HTTP/mail.ad.test\"\n[accounts]\nsource = \"winbind\"\n";
    let base = exchange_preset(dir.path(), keytab).replace(
        "backend = \"https://exch01.ad.test\"\n",
        "backends = [\"https://exch01.ad.test\", \"https://exch02.ad.test\"]\ndelegation = \"kcd\"\nbackend_spn = \"HTTP/{backend_host}\"\n",
    );
    let c = load_str(&dir.path().join("g.toml"), &base).unwrap_or_else(|p| panic!("{p}"));
    let check = |p: &str| c.sites.iter().find(|s| s.path_prefix == p).unwrap().farm.health.check.clone();
    assert_eq!(check("/owa"), Check::Http { path: "/owa/healthcheck.htm".into(), status: 200 });
    assert_eq!(check("/rpc"), Check::Http { path: "/rpc/healthcheck.htm".into(), status: 200 });
    assert_eq!(
        check("/Microsoft-Server-ActiveSync"),
        Check::Http { path: "/Microsoft-Server-ActiveSync/healthcheck.htm".into(), status: 200 }
    );
    assert!(c.sites.iter().all(|s| s.family == "exchange"), "every path belongs to the [[site]]");
    // Each backend its own SPN.
    let ews = c.sites.iter().find(|s| s.path_prefix == "/ews").unwrap();
    let spns: Vec<String> = ews.farm.members.iter().map(|m| ews.kcd().unwrap().spn_for(&m.backend)).collect();
    assert_eq!(spns, ["HTTP/exch01.ad.test", "HTTP/exch02.ad.test"]);
    assert!(crate::config::describe_site(ews).contains("; KCD to HTTP/exch01.ad.test, HTTP/exch02.ad.test"));
    // One SPN for the farm (an alternate service account's).
    let asa = load_str(&dir.path().join("g.toml"), &base.replace("HTTP/{backend_host}", "HTTP/mail.ad.test")).unwrap();
    let ews = asa.sites.iter().find(|s| s.path_prefix == "/ews").unwrap();
    assert!(ews.farm.members.iter().all(|m| ews.kcd().unwrap().spn_for(&m.backend) == "HTTP/mail.ad.test"));
    // The preset's pages are its own: a path of the site's is refused, where it is written.
    let text = format!("{base}health = {{ check = \"http\", path = \"/healthz\" }}\n");
    let p = load_str(&dir.path().join("g.toml"), &text).unwrap_err().0;
    assert!(has(&p, line_of(&text, "health ="), "site[0].health.path", "each path's own healthcheck.htm"), "{p:#?}");
    let text = base.replace("HTTP/{backend_host}", "HTTP/{backend}");
    let p = load_str(&dir.path().join("g.toml"), &text).unwrap_err().0;
    assert!(has(&p, line_of(&text, "backend_spn"), "site[0].backend_spn", "not an SPN"), "{p:#?}");
}

#[test]
fn the_affinity_and_control_sections_refuse_wrong_values() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let g = dir.path().join("g.toml");
    let key = dir.path().join("affinity.key");
    std::fs::write(&key, [7u8; 32]).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let private = dir.path().join("run");
    std::fs::create_dir(&private).unwrap();
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
    let ok = format!(
        "[affinity]\ncookie = \"gh_srv\"\nkey_file = \"affinity.key\"\nidle = \"20m\"\nmax_sessions = 5000\n\n[control]\nsocket = \"run/gatehouse.sock\"\n{GOOD}"
    );
    let c = load_str(&g, &ok).unwrap_or_else(|p| panic!("{p}"));
    assert_eq!(
        (c.affinity.cookie.as_str(), c.affinity.idle.as_secs(), c.affinity.max_sessions),
        ("gh_srv", 1200, 5000)
    );
    assert_eq!(c.affinity.key.as_ref().map(|k| k.0.len()), Some(32));
    assert!(!format!("{:?}", c.affinity).contains("7, 7"), "the key is never printed");
    assert_eq!(c.control.unwrap().socket, private.join("gatehouse.sock"));
    let refused = |from: &str, to: &str, key: &str, words: &str| {
        let text = ok.replace(from, to);
        let p = load_str(&g, &text).unwrap_err().0;
        assert!(p.iter().any(|p| p.key == key && p.message.contains(words)), "{to}: {p:#?}");
    };
    refused("cookie = \"gh_srv\"", "cookie = \"gh srv\"", "affinity.cookie", "not a cookie name");
    refused("max_sessions = 5000", "max_sessions = 10", "affinity.max_sessions", "from 100");
    refused("idle = \"20m\"", "idle = 0", "affinity.idle", "above zero");
    refused("affinity.key\"", "missing.key\"", "affinity.key_file", "No such file");
    std::fs::write(dir.path().join("short.key"), [7u8; 16]).unwrap();
    std::fs::set_permissions(dir.path().join("short.key"), std::fs::Permissions::from_mode(0o600)).unwrap();
    refused("affinity.key\"", "short.key\"", "affinity.key_file", "at least 32");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    refused("cookie = ", "cookie = ", "affinity.key_file", "chmod 600");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    refused("run/gatehouse.sock", "nowhere/gatehouse.sock", "control.socket", "install -d -m 0700");
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o777)).unwrap();
    refused("socket = ", "socket = ", "control.socket", "can be written by other accounts");
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::write(private.join("gatehouse.sock"), "").unwrap();
    refused("socket = ", "socket = ", "control.socket", "is not a socket");
    refused(
        "socket = \"run/gatehouse.sock\"",
        &format!("socket = \"run/{}\"", "s".repeat(120)),
        "control.socket",
        "longer than",
    );
    refused("socket = \"run/gatehouse.sock\"", "sockt = \"x\"", "control.socket", "missing required key");
}

#[test]
fn mfa_section() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("forms.key");
    std::fs::write(&key, "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n").unwrap();
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let file = dir.path().join("g.toml");
    let forms = format!("[forms]\nkey_file = \"{}\"\n", key.display());
    let good = format!("{forms}\n[mfa]\nstore = \"mfa.db\"\nenrol_code_lifetime = \"2h\"\n{GOOD}");
    let c = load_str(&file, &good).unwrap();
    let m = c.mfa.unwrap();
    assert_eq!(m.store, dir.path().join("mfa.db"));
    assert_eq!(m.enrol_code_lifetime, std::time::Duration::from_secs(7200));
    assert!(!dir.path().join("mfa.db").exists(), "reading the configuration makes no store");

    let bad = |text: String, key: &str, words: &str| match load_str(&file, &text) {
        Ok(_) => panic!("expected a problem with {key}:\n{text}"),
        Err(p) => assert!(p.0.iter().any(|p| p.key == key && p.message.contains(words)), "{key} {words}: {:?}", p.0),
    };
    bad(format!("[mfa]\nstore = \"mfa.db\"\n{GOOD}"), "mfa", "[mfa] needs [forms]");
    bad(format!("{forms}\n[mfa]\nstore = \"nowhere/mfa.db\"\n{GOOD}"), "mfa.store", "does not exist");
    bad(format!("{forms}\n[mfa]\nstore = \".\"\n{GOOD}"), "mfa.store", "is a folder");
    bad(format!("{forms}\n[mfa]\nenrol_code_lifetime = \"1h\"\n{GOOD}"), "mfa.store", "");
    bad(
        format!("{forms}\n[mfa]\nstore = \"mfa.db\"\nenrol_code_lifetime = \"30s\"\n{GOOD}"),
        "mfa.enrol_code_lifetime",
        "1 minute to 30 days",
    );
    bad(format!("{forms}\n[mfa]\nstore = \"mfa.db\"\nstor = 1\n{GOOD}"), "mfa.stor", "unknown key");

    // The passkeys' relying party id: a domain name covering the Forms hosts.
    let rp = |id: &str| format!("{forms}\n[mfa]\nstore = \"mfa.db\"\npasskey_rp_id = \"{id}\"\n{GOOD}");
    assert_eq!(load_str(&file, &rp("AD.test")).unwrap().mfa.unwrap().passkey_rp_id.as_deref(), Some("ad.test"));
    assert_eq!(load_str(&file, &good).unwrap().mfa.unwrap().passkey_rp_id, None, "absent: the cookie domain or host");
    for wrong in ["10.0.0.1", "https://ad.test", "ad.test:443", "", "a..b", "ad_test.example"] {
        bad(rp(wrong), "mfa.passkey_rp_id", "is not a host name");
    }
    let forms_site = GOOD.replace("hosts = [\"Mail.AD.test\"]", "hosts = [\"Mail.AD.test\"]\nauth = [\"Forms\"]");
    let outside = format!("{forms}\n[mfa]\nstore = \"mfa.db\"\npasskey_rp_id = \"corp.example\"\n{forms_site}");
    bad(outside, "site[0].hosts", "is not under [mfa] passkey_rp_id `corp.example`");
    let inside = format!("{forms}\n[mfa]\nstore = \"mfa.db\"\npasskey_rp_id = \"ad.test\"\n{forms_site}");
    match load_str(&file, &inside) {
        Ok(_) => {}
        Err(p) => assert!(!p.0.iter().any(|p| p.message.contains("passkey_rp_id")), "{:?}", p.0),
    }
}

#[test]
fn idp_section_and_the_schemes_that_name_it() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let private = |name: &str, text: &str, mode: u32| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    };
    private("forms.key", "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n", 0o600);
    private("secret", "s3cret\n", 0o600);
    private("open-secret", "s3cret\n", 0o644);
    private("two-lines", "a\nb\n", 0o600);
    let cert = rcgen::generate_simple_self_signed(vec!["app.ad.test".to_string()]).unwrap();
    std::fs::write(dir.path().join("c.pem"), cert.cert.pem()).unwrap();
    private("c.key", &cert.signing_key.serialize_pem(), 0o600);
    let file = dir.path().join("g.toml");
    let base = "[domain]\nrealm = \"AD.TEST\"\nnetbios_name = \"ADTEST\"\n\n[forms]\nkey_file = \"forms.key\"\n\n\
                [accounts]\nsource = \"file\"\nfile = \"users\"\n";
    std::fs::write(dir.path().join("users"), "ADTEST:alice:Alice-Pass1\n").unwrap();
    let idp = |extra: &str| {
        format!(
            "[[idp]]\nname = \"corp\"\nissuer = \"https://login.example.com/t/v2.0\"\nclient_id = \"gatehouse\"\n\
             client_secret_file = \"secret\"\n{extra}\n"
        )
    };
    let site = |auth: &str, extra: &str| {
        format!(
            "[[listener]]\nname = \"public\"\nbind = \"127.0.0.1:8443\"\ntls = {{ cert = \"c.pem\", key = \"c.key\" }}\n\n\
             [[site]]\nname = \"app\"\nlistener = \"public\"\n\
             backend = \"http://127.0.0.1:18080\"\nauth = {auth}\n{extra}\n"
        )
    };
    let good = format!(
        "{base}{}{}",
        idp("user_mapping = \"{preferred_username}@AD.TEST\""),
        site(r#"["OIDC:corp", "Bearer:corp", "NTLM"]"#, "require_amr = [\"mfa\"]")
    );
    let c = load_str(&file, &good).unwrap();
    let i = &c.idps[0];
    assert_eq!(
        (i.name.as_str(), i.redirect_path.as_str(), i.user_claim.as_str()),
        ("corp", "/.gatehouse/oidc/callback", "upn")
    );
    assert_eq!(i.clock_skew, std::time::Duration::from_secs(60));
    assert_eq!(i.scopes, ["openid", "profile", "email"]);
    assert_eq!(i.mapping, Mapping::Template("{preferred_username}@AD.TEST".into()));
    assert_eq!(i.client_secret.0, "s3cret");
    assert!(!format!("{i:?}").contains("s3cret"), "the secret is not in Debug");
    assert_eq!(c.sites[0].auth, [Scheme::Oidc(0), Scheme::Bearer(0), Scheme::Ntlm]);
    assert_eq!(c.sites[0].claims.amr, ["mfa"]);

    let bad = |text: String, key: &str, words: &str| match load_str(&file, &text) {
        Ok(_) => panic!("expected a problem with {key}:\n{text}"),
        Err(p) => assert!(p.0.iter().any(|p| p.key == key && p.message.contains(words)), "{key} {words}: {:?}", p.0),
    };
    let with_site = |idp_text: String| format!("{base}{idp_text}{}", site(r#"["OIDC:corp"]"#, ""));
    bad(
        with_site(idp("issuer = \"x\"").replace("issuer = \"https://login.example.com/t/v2.0\"\n", "")),
        "idp[0].issuer",
        "https URL",
    );
    bad(
        with_site(idp("").replace("https://login.example.com/t/v2.0", "http://idp.example.com")),
        "idp[0].issuer",
        "http only on loopback",
    );
    bad(with_site(idp("").replace("\"secret\"", "\"open-secret\"")), "idp[0].client_secret_file", "chmod 600");
    bad(with_site(idp("").replace("\"secret\"", "\"two-lines\"")), "idp[0].client_secret_file", "one line");
    bad(with_site(idp("").replace("\"secret\"", "\"missing\"")), "idp[0].client_secret_file", "missing");
    bad(with_site(idp("").replace("name = \"corp\"", "name = \"co rp\"")), "idp[0].name", "letters, digits");
    bad(with_site(idp("redirect_path = \"/callback\"")), "idp[0].redirect_path", "reserved /.gatehouse/");
    bad(with_site(idp("redirect_path = \"/.gatehouse/signin\"")), "idp[0].redirect_path", "none of its own pages");
    bad(with_site(idp("user_mapping = \"ADTEST\"")), "idp[0].user_mapping", "template");
    bad(with_site(idp("clock_skew = \"1h\"")), "idp[0].clock_skew", "at most 10 minutes");
    bad(with_site(idp("colour = \"blue\"")), "idp[0].colour", "unknown key");
    bad(with_site(format!("{}{}", idp(""), idp(""))), "idp[1].name", "two [[idp]]");
    bad(format!("{base}{}{}", idp(""), site(r#"["OIDC:other"]"#, "")), "site[0].auth", "no [[idp]] is named `other`");
    bad(
        format!("{base}{}", site(r#"["Forms", "NTLM"]"#, "require_acr = [\"gold\"]")),
        "site[0].require_acr",
        "offers no",
    );
    bad(
        format!(
            "[domain]\nrealm = \"AD.TEST\"\nnetbios_name = \"ADTEST\"\n{}{}",
            idp(""),
            site(r#"["OIDC:corp"]"#, "")
        ),
        "site[0].auth",
        "no [forms] section",
    );
    let plain = site(r#"["OIDC:corp"]"#, "").replace("tls = { cert = \"c.pem\", key = \"c.key\" }\n", "");
    bad(format!("{base}{}{plain}", idp("")), "site[0].auth", "no TLS");
}

/// `[admin.sign_in]`: what a good one reads as, and each refusal with its key.
#[test]
fn admin_sign_in_is_read_and_refused_when_wrong() {
    let domain = "[domain]\nrealm = \"AD.TEST\"\nnetbios_name = \"ADTEST\"\n\n[accounts]\nsource = \"file\"\nfile = \"/dev/null\"\n";
    let admin =
        |sign_in: &str| format!("{domain}\n[admin]\nbind = \"127.0.0.1:0\"\n\n[admin.sign_in]\n{sign_in}\n{GOOD}");
    let c = load_str(
        Path::new("/tmp/x.toml"),
        &admin("auth = [\"NTLM\"]\nallow = [\"S-1-5-21-1-2-3-1107\"]\ndeny = [\"ADTEST\\\\bob\"]"),
    )
    .unwrap();
    let s = c.admin.as_ref().unwrap().sign_in.as_ref().unwrap();
    assert_eq!(s.auth, vec![Scheme::Ntlm]);
    assert_eq!((s.rules.allow.len(), s.rules.deny.len()), (1, 1));
    let site = s.site();
    assert_eq!((site.auth.as_slice(), site.listener.as_str()), (&[Scheme::Ntlm][..], ADMIN_LISTENER));
    assert!(site.farm.members.is_empty() && site.kcd().is_none() && !site.websocket);

    for (sign_in, key, words) in [
        (
            "auth = [\"Basic\"]\nallow = [\"ADTEST\\\\admins\"]",
            "admin.sign_in.auth",
            "Basic would send a password in clear",
        ),
        ("auth = [\"Forms\"]\nallow = [\"ADTEST\\\\admins\"]", "admin.sign_in.auth", "NTLM and Negotiate only"),
        (
            "auth = [\"NTLM\", \"Basic\"]\nallow = [\"ADTEST\\\\admins\"]",
            "admin.sign_in.auth",
            "Basic: the status page",
        ),
        ("auth = [\"Kerberos\"]\nallow = [\"ADTEST\\\\admins\"]", "admin.sign_in.auth", "not an authentication scheme"),
        ("auth = []\nallow = [\"ADTEST\\\\admins\"]", "admin.sign_in.auth", "signs nobody in"),
        ("allow = [\"ADTEST\\\\admins\"]", "admin.sign_in.auth", "say how administrators sign in"),
        ("auth = [\"NTLM\"]", "admin.sign_in.allow", "say who may see the status page"),
        ("auth = [\"NTLM\"]\nallow = []", "admin.sign_in.allow", "an empty allow"),
        ("auth = [\"NTLM\"]\nallow = [\"AD.TEST\\\\admins\"]", "admin.sign_in.allow", "NetBIOS domain name"),
        ("auth = [\"NTLM\"]\nallow = [\"al*ce\"]", "admin.sign_in.allow", "not a user or group name"),
        // A site's rule syntax has no `group:` prefix: a group is written as a user is.
        ("auth = [\"NTLM\"]\nallow = [\"group:ADTEST\\\\admins\"]", "admin.sign_in.allow", "NetBIOS domain name"),
        ("auth = [\"NTLM\"]\nallow = [\"admins\"]\ndeny = [\"S-1-x\"]", "admin.sign_in.deny", "SID"),
        ("auth = [\"NTLM\"]\nallow = [\"admins\"]\nport = 1", "admin.sign_in.port", "unknown key"),
    ] {
        let p = problems(&admin(sign_in));
        assert!(p.iter().any(|p| p.key == key && p.message.contains(words)), "{sign_in}: {p:?}");
    }
    // Needs [domain]: the sign-in is the domain's.
    let text = format!("[admin]\n[admin.sign_in]\nauth = [\"Negotiate\"]\nallow = [\"S-1-5-21-1-2-3-512\"]\n{GOOD}");
    let p = problems(&text);
    assert!(p.iter().any(|p| p.key == "admin.sign_in" && p.message.contains("add a [domain] section")), "{p:?}");
    // NTLM needs [accounts]; Negotiate a keytab (or [accounts]).
    let bare = "[domain]\nrealm = \"AD.TEST\"\nnetbios_name = \"ADTEST\"\n";
    for scheme in ["NTLM", "Negotiate"] {
        let text = format!(
            "{bare}\n[admin]\n[admin.sign_in]\nauth = [\"{scheme}\"]\nallow = [\"S-1-5-21-1-2-3-512\"]\n{GOOD}"
        );
        let p = problems(&text);
        assert!(p.iter().any(|p| p.key == "admin.sign_in.auth" && p.message.contains(scheme)), "{scheme}: {p:?}");
    }
    // It protects the page: with the page off, it would protect nothing.
    let text = admin("auth = [\"NTLM\"]\nallow = [\"admins\"]").replace("[admin]\n", "[admin]\nstatus_page = false\n");
    assert!(problems(&text).iter().any(|p| p.key == "admin.sign_in" && p.message.contains("status_page = false")));
    // No listener may take the admin listener's name.
    let text = GOOD
        .replace("name = \"public\"\n", "name = \"[admin]\"\n")
        .replace("listener = \"public\"", "listener = \"[admin]\"");
    assert!(problems(&text).iter().any(|p| p.key == "listener[0].name" && p.message.contains("admin listener")));
}
