//! `gatehouse doctor -c FILE [--user NAME [--password-stdin]]`: checks, one
//! line each, everything Kerberos delegation needs, and prints the fix for what
//! fails, as PowerShell for Windows administrators and as samba-tool for Samba
//! domains; then the NTLM side (`accounts.rs`).

mod access;
mod accounts;

pub use accounts::Logon;

use std::path::Path;
use std::process::ExitCode;

use crate::config::{self, Config};
use crate::keytab::{parse as parse_keytab, Entry};

struct Report {
    failed: bool,
}

impl Report {
    fn pass(&self, what: &str) {
        println!("PASS  {what}");
    }

    fn warn(&self, what: &str) {
        println!("WARN  {what}");
    }

    /// A failure with its fixes in plain words (commands to run).
    fn fail_with(&mut self, what: &str, fixes: &[&str]) {
        self.failed = true;
        println!("FAIL  {what}");
        for fix in fixes {
            println!("      fix: {fix}");
        }
    }

    fn fail(&mut self, what: &str, fix: Option<&kcd::Explanation>) {
        self.failed = true;
        println!("FAIL  {what}");
        if let Some(x) = fix {
            println!("      {}: {}", x.code, x.cause);
            for line in &x.powershell {
                println!("      PowerShell> {line}");
            }
            for line in &x.samba_tool {
                println!("      samba-tool> {line}");
            }
        }
    }
}

pub fn run(file: &Path, logon: Option<&Logon<'_>>) -> ExitCode {
    // The keytab is doctor's to judge, with the commands that fix it.
    let config = match config::load_leaving_keytab(file) {
        Ok(c) => c,
        Err(problems) => {
            println!("FAIL  configuration {}:", file.display());
            print!("{problems}");
            return ExitCode::FAILURE;
        }
    };
    let mut report = Report { failed: false };
    report.pass(&format!("configuration {} is valid", file.display()));
    farms(&config, &mut report);
    check(&config, logon.map(|l| l.user), &mut report);
    accounts::check(&config, logon, &mut report);
    access::check(&config, logon.map(|l| l.user), &mut report);
    if report.failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// The farms: what the file drains, and what the running gatehouse says of
/// each backend (health, drain, requests in flight) through its control socket.
fn farms(config: &Config, report: &mut Report) {
    let mut told = Vec::new();
    for site in config.sites.iter().filter(|s| s.farm.members.len() > 1 || s.farm.members.iter().any(|m| m.drain)) {
        if told.contains(&site.family) {
            continue;
        }
        told.push(site.family.clone());
        let drained: Vec<&str> =
            site.farm.members.iter().filter(|m| m.drain).map(|m| m.backend.origin.as_str()).collect();
        let all: Vec<&str> = site.farm.members.iter().map(|m| m.backend.origin.as_str()).collect();
        if drained.len() == all.len() {
            report.warn(&format!(
                "site {}: every backend is drained by the configuration: only open sessions are served",
                site.family
            ));
        } else if !drained.is_empty() {
            report.pass(&format!(
                "site {}: backends {}; drained by the configuration: {}",
                site.family,
                all.join(", "),
                drained.join(", ")
            ));
        } else {
            report.pass(&format!("site {}: backends {}", site.family, all.join(", ")));
        }
    }
    let Some(control) = &config.control else { return };
    match crate::control::request(&control.socket, &["status"]) {
        Ok(answer) => {
            for line in answer.lines().filter(|l| *l != "ok") {
                if line.contains(": down") || line.contains(": ejected") {
                    report.warn(&format!("running: {line}"));
                } else {
                    report.pass(&format!("running: {line}"));
                }
            }
        }
        Err(e) => report.warn(&format!("no running gatehouse to ask about its backends: {e}")),
    }
}

fn check(config: &Config, user: Option<&str>, report: &mut Report) {
    let Some(domain) = &config.domain else {
        report.warn("no [domain]: nothing to check for Kerberos delegation");
        return;
    };
    // The same environment `gatehouse run` sets up.
    std::env::set_var("KRB5CCNAME", "MEMORY:gatehouse-doctor-no-default");
    if let Some(conf) = &domain.krb5_conf {
        std::env::set_var("KRB5_CONFIG", conf);
    }
    let (Some(keytab), Some(principal)) = (&domain.keytab, &domain.service_principal) else {
        report.warn("[domain] has no keytab or service_principal: no delegation to check");
        return;
    };
    let account = principal.split('@').next().unwrap_or(principal);
    match read_keytab(keytab) {
        Err(e) => {
            let x = kcd::advice(kcd::Kind::Keytab, principal, "", "");
            report.fail(&format!("keytab {}: {e}", keytab.display()), x.as_ref());
            return;
        }
        Ok(entries) => {
            let mine: Vec<&Entry> = entries.iter().filter(|e| e.principal.eq_ignore_ascii_case(principal)).collect();
            if mine.is_empty() {
                let x = kcd::advice(kcd::Kind::Keytab, principal, "", "");
                let what =
                    if entries.is_empty() { "is empty".to_string() } else { format!("holds no key for {principal}") };
                report.fail(&format!("keytab {} {what}", keytab.display()), x.as_ref());
                return;
            }
            report.pass(&format!("keytab {} holds keys for {principal}: {}", keytab.display(), by_kvno(&mine)));
            let what = "the keytab has no AES key (RC4 is being disabled in Active Directory)";
            match key_types(&mine, domain.allow_rc4) {
                KeyTypes::Aes => {}
                KeyTypes::Rc4Allowed => report.warn(&format!("{what}; used only because [domain] allow_rc4 = true")),
                KeyTypes::Refused => report.fail(what, kcd::advice(kcd::Kind::EtypeNoSupp, principal, "", "").as_ref()),
            }
        }
    }
    let delegator = kcd::Delegator::new(principal, &keytab.to_string_lossy(), &domain.realm).with_rc4(domain.allow_rc4);
    // Negotiate: clients' tickets for acceptor_spn must open with our keytab.
    let negotiate = config.sites.iter().any(|s| {
        s.auth.contains(&crate::config::Scheme::Negotiate)
            || s.auth_for.iter().any(|r| r.auth.contains(&crate::config::Scheme::Negotiate))
    });
    for spn in domain.acceptor_spn.iter().filter(|_| negotiate) {
        match delegator.check_acceptor(spn) {
            Ok(()) => report.pass(&format!("Negotiate: a ticket for {spn} opens with the keytab's key")),
            Err(e) => {
                let x = kcd::explain(&e, principal, spn, "");
                report.fail(&format!("Negotiate: clients' tickets for {spn} would be refused: {e}"), x.as_ref());
            }
        }
    }
    let sites: Vec<_> = config.sites.iter().filter_map(|s| s.kcd().map(|d| (s, d))).collect();
    if sites.is_empty() {
        report.warn("no site uses delegation = \"kcd\"");
    }
    let Some(user) = user else {
        report.warn("give --user NAME to check S4U2Self, S4U2Proxy and the backends for that user");
        return;
    };
    let user_principal = if user.contains('@') { user.to_owned() } else { format!("{user}@{}", domain.realm) };
    // The account's TGT (keytab key, clock, account state) and protocol
    // transition for this user: S4U2Self needs both.
    let account_user = kcd::User::Account(user_principal.clone());
    match delegator.check_s4u2self(&account_user) {
        Ok(()) => report.pass(&format!("{account} has a TGT and a ticket to itself as {user_principal} (S4U2Self)")),
        Err(e) => {
            let x = kcd::explain(&e, principal, "", &user_principal);
            report.fail(&format!("{account} cannot impersonate {user_principal}: {e}"), x.as_ref());
            return;
        }
    }
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            report.fail(&format!("cannot start a runtime: {e}"), None);
            return;
        }
    };
    // Sites that impersonate by UPN: the UPN comes from the PAC of the user's
    // S4U2Self ticket.
    let mut upn_user = None;
    if sites.iter().any(|(_, d)| d.user == crate::config::DelegationUser::Upn) {
        match delegator.upn(&user_principal) {
            Ok(upn) => {
                report.pass(&format!("{user_principal}'s UPN is {upn} (from the PAC of its S4U2Self ticket)"));
                upn_user = Some(kcd::User::Upn { upn, account: user_principal.clone() });
            }
            Err(e) => {
                let x = kcd::explain(&e, principal, "", &user_principal);
                report.fail(&format!("cannot read {user_principal}'s UPN: {e}"), x.as_ref());
            }
        }
    }
    for (site, d) in sites {
        let who = match (d.user, &upn_user) {
            (crate::config::DelegationUser::Upn, Some(u)) => u.clone(),
            (crate::config::DelegationUser::Upn, None) => continue,
            (crate::config::DelegationUser::Account, _) => account_user.clone(),
        };
        let user_principal = who.to_string();
        // Every backend of the farm: each may have its own SPN, and each
        // must take the ticket.
        for member in &site.farm.members {
            let (backend, spn) = (&member.backend, d.spn_for(&member.backend));
            let origin = &backend.origin;
            // A connection first, so that an HTTPS backend's ticket carries its
            // channel bindings, as in service.
            let conn = runtime.block_on(connect(backend));
            let binding = conn.as_ref().ok().and_then(|c| c.binding.clone());
            match delegator.token(&who, &spn, d.token, binding.as_deref()) {
                Err(e) => {
                    let x = kcd::explain(&e, principal, &spn, &user_principal);
                    report.fail(
                        &format!(
                            "site {} backend {origin}: {account} cannot get a ticket for {spn} as {user_principal}: {e}",
                            site.name
                        ),
                        x.as_ref(),
                    );
                }
                Ok(token) => {
                    report.pass(&format!(
                        "site {} backend {origin}: S4U2Self and S4U2Proxy: {account} holds a ticket for {spn} as {user_principal}",
                        site.name
                    ));
                    let status = match conn {
                        Ok(c) => runtime.block_on(backend_status(site, backend, c, &token)),
                        Err(e) => Err(e),
                    };
                    match status {
                        Ok(401) => report.fail(
                            &format!(
                                "site {}: the backend {origin} rejected the ticket (401): check the backend's keytab and that {spn} belongs to its account",
                                site.name
                            ),
                            None,
                        ),
                        Ok(status) => {
                            report.pass(&format!("site {}: the backend {origin} accepted the ticket ({status})", site.name))
                        }
                        Err(e) => report.fail(&format!("site {}: cannot ask the backend {origin}: {e}", site.name), None),
                    }
                }
            }
        }
    }
}

async fn connect(backend: &config::Backend) -> Result<crate::backend::Sender, String> {
    let target = crate::backend::Target::new(backend)?;
    target.connect(std::time::Duration::from_secs(10)).await.map_err(|e| e.to_string())
}

/// GET / on the site's backend, on the connection the token was made for; the
/// status code.
async fn backend_status(
    site: &config::Site,
    backend: &config::Backend,
    mut conn: crate::backend::Sender,
    token: &[u8],
) -> Result<u16, String> {
    use base64::Engine;
    let host = site.host_header.clone().unwrap_or_else(|| backend.host.clone());
    let mut req =
        http::Request::new(crate::request_body::RequestBody::empty(crate::request_body::RequestProgress::new()));
    *req.uri_mut() = http::Uri::from_static("/");
    let headers = req.headers_mut();
    headers.insert(http::header::HOST, http::HeaderValue::from_str(&host).map_err(|e| e.to_string())?);
    let value = format!("Negotiate {}", base64::engine::general_purpose::STANDARD.encode(token));
    headers.insert(http::header::AUTHORIZATION, http::HeaderValue::from_str(&value).map_err(|e| e.to_string())?);
    let resp = tokio::time::timeout(std::time::Duration::from_secs(10), conn.try_send_request(req))
        .await
        .map_err(|_| "no answer within 10 s".to_string())?
        .map_err(|e| e.error().to_string())?;
    Ok(resp.status().as_u16())
}

#[derive(Debug, PartialEq, Eq)]
enum KeyTypes {
    Aes,
    /// RC4 keys alone, which gatehouse uses only with `[domain] allow_rc4`.
    Rc4Allowed,
    Refused,
}

/// What gatehouse makes of the account's keys: AES, or RC4 when allowed
/// (kcd refuses the TGT otherwise, with the same cause).
fn key_types(mine: &[&Entry], allow_rc4: bool) -> KeyTypes {
    if mine.iter().any(|e| matches!(e.enctype, 17..=20)) {
        KeyTypes::Aes
    } else if allow_rc4 && mine.iter().any(|e| e.enctype == 23) {
        KeyTypes::Rc4Allowed
    } else {
        KeyTypes::Refused
    }
}

fn enctype_name(e: u16) -> &'static str {
    match e {
        17 => "aes128-cts-hmac-sha1-96",
        18 => "aes256-cts-hmac-sha1-96",
        19 => "aes128-cts-hmac-sha256-128",
        20 => "aes256-cts-hmac-sha384-192",
        23 => "rc4-hmac (weak)",
        1 | 3 => "des (broken)",
        _ => "other",
    }
}

/// "kvno 2: aes256-cts-hmac-sha1-96, aes128-cts-hmac-sha1-96; kvno 3: ...",
/// lowest first.
fn by_kvno(entries: &[&Entry]) -> String {
    let mut kvnos: Vec<u32> = entries.iter().map(|e| e.kvno).collect();
    kvnos.sort_unstable();
    kvnos.dedup();
    let each = kvnos.iter().map(|k| {
        let names: Vec<&str> = entries.iter().filter(|e| e.kvno == *k).map(|e| enctype_name(e.enctype)).collect();
        format!("kvno {k}: {}", names.join(", "))
    });
    each.collect::<Vec<_>>().join("; ")
}

/// Each live entry of an MIT keytab (format 0x0502).
fn read_keytab(path: &Path) -> Result<Vec<Entry>, String> {
    let data = std::fs::read(path).map_err(|e| e.to_string())?;
    parse_keytab(&data)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::keytab::tests::entry;

    #[test]
    fn rc4_keys_alone_fail_unless_allowed() {
        let e = |enctype| Entry { principal: "svc@AD.TEST".into(), enctype, kvno: 2 };
        let (aes, rc4, des) = (e(18), e(23), e(3));
        assert_eq!(key_types(&[&rc4, &aes], false), KeyTypes::Aes);
        assert_eq!(key_types(&[&rc4], false), KeyTypes::Refused);
        assert_eq!(key_types(&[&rc4], true), KeyTypes::Rc4Allowed);
        assert_eq!(key_types(&[&des], true), KeyTypes::Refused);
    }

    #[test]
    fn keytab_entries() {
        let mut kt = vec![0x05, 0x02];
        kt.extend(entry(&["svc-proxy"], "AD.TEST", 18));
        kt.extend(entry(&["HTTP", "proxy.ad.test"], "AD.TEST", 23));
        let mut deleted = entry(&["old"], "AD.TEST", 18);
        let size = i32::from_be_bytes(deleted[..4].try_into().unwrap());
        deleted[..4].copy_from_slice(&(-size).to_be_bytes());
        kt.extend(deleted);
        let e = |p: &str, enctype, kvno| Entry { principal: p.into(), enctype, kvno };
        assert_eq!(
            parse_keytab(&kt).unwrap(),
            vec![e("svc-proxy@AD.TEST", 18, 2), e("HTTP/proxy.ad.test@AD.TEST", 23, 2)]
        );
        // A 32-bit kvno after the key wins over the 8-bit one (which wraps at 256).
        let mut big = entry(&["svc"], "AD.TEST", 18);
        big.extend_from_slice(&300u32.to_be_bytes());
        let size = i32::from_be_bytes(big[..4].try_into().unwrap()) + 4;
        big[..4].copy_from_slice(&size.to_be_bytes());
        let mut kt = vec![0x05, 0x02];
        kt.extend(big);
        kt.extend(entry(&["svc"], "AD.TEST", 17));
        let entries = parse_keytab(&kt).unwrap();
        assert_eq!(entries, vec![e("svc@AD.TEST", 18, 300), e("svc@AD.TEST", 17, 2)]);
        let mine: Vec<&Entry> = entries.iter().collect();
        assert_eq!(by_kvno(&mine), "kvno 2: aes128-cts-hmac-sha1-96; kvno 300: aes256-cts-hmac-sha1-96");
    }

    #[test]
    fn broken_keytabs_are_refused_without_panic() {
        assert_eq!(parse_keytab(b"").unwrap_err(), "the keytab is empty (0 bytes)");
        assert_eq!(parse_keytab(&[0x05, 0x02]).unwrap(), vec![], "a header alone: no entries, no error");
        assert_eq!(parse_keytab(&[0x05]).unwrap_err(), "not an MIT keytab (version 0x0502)");
        assert!(parse_keytab(&[0x05, 0x01]).is_err());
        let mut kt = vec![0x05, 0x02];
        kt.extend(entry(&["svc"], "AD.TEST", 18));
        for cut in 3..kt.len() {
            let _ = parse_keytab(&kt[..cut]);
        }
        assert!(parse_keytab(&[0x05, 0x02, 0x7f, 0xff, 0xff, 0xff]).is_err());
    }
}
