//! Names in `allow` and `deny` become SIDs when the configuration loads, so
//! that a request compares SIDs only and a rename in AD changes nothing.
//!
//! The domain's names are looked up in its directory (LDAP, bound with
//! gatehouse's own Kerberos credential: `kcd::Directory`); an accounts file's
//! users and groups stay names, checked against the file. A name nobody
//! knows is a problem with the file, line and column where it is written:
//! `gatehouse check` prints it, `run` does not start, and a reload keeps the
//! running configuration.

use std::sync::Arc;

use crate::config::{Accounts, Config, Principal, Who};

/// Whether names are looked up in the directory, or (`gatehouse check
/// --offline`, on a machine that cannot reach a domain controller) left as
/// written after every check that needs no directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Names {
    LookUp,
    Offline,
}

/// Resolves every name of every site's rules (and `[admin.sign_in]`'s) in place, or says which cannot
/// be, one line each. `delegator`: gatehouse's service account, which binds
/// to the directory. Blocks (LDAP): run off async workers.
pub fn resolve(config: &mut Config, delegator: Option<&Arc<kcd::Delegator>>, names_mode: Names) -> Result<(), String> {
    let netbios = config.domain.as_ref().map(|d| d.netbios_name.clone());
    let file = match &config.accounts {
        Some(Accounts::File { users, path }) => Some((users.clone(), path.clone())),
        _ => None,
    };
    let directory = config.access.directory.clone();
    let mut problems = Vec::new();
    // `[admin.sign_in]`'s rules are read and resolved as a site's.
    let admin = config.admin.as_mut().and_then(|a| a.sign_in.as_mut()).map(|s| &mut s.rules);
    let mut names: Vec<&mut Principal> = config
        .sites
        .iter_mut()
        .map(|s| &mut s.rules)
        .chain(admin)
        .flat_map(|r| r.principals_mut())
        .filter(|p| matches!(p.who, Who::Name { .. }))
        .collect();
    if names.is_empty() {
        return Ok(());
    }
    // A name of another domain cannot be looked up here.
    names.retain(|p| {
        let Who::Name { domain: Some(d), .. } = &p.who else { return true };
        if netbios.as_deref().is_some_and(|n| n.eq_ignore_ascii_case(d)) || (netbios.is_none() && file.is_some()) {
            return true;
        }
        problems.push(format!(
            "{}: `{}`: only names of the domain {} can be looked up; write a trusted domain's user or group as its SID",
            p.place,
            p.written,
            netbios.as_deref().unwrap_or("(no [domain])")
        ));
        false
    });
    match (&directory, delegator, &file) {
        (Some(_), Some(_), _) if names_mode == Names::Offline => {}
        (Some(dir), Some(delegator), _) => {
            let client = kcd::Directory::new(delegator.clone(), &dir.host, dir.port, dir.address, dir.timeout);
            let asked: Vec<String> = names
                .iter()
                .map(|p| match &p.who {
                    Who::Name { name, .. } => name.clone(),
                    Who::Sid(_) => String::new(),
                })
                .collect();
            let refs: Vec<&str> = asked.iter().map(String::as_str).collect();
            match client.lookup(&refs) {
                Err(e) => problems.push(format!(
                    "cannot look up the names in allow and deny at ldap://{}:{}: {e}",
                    dir.host, dir.port
                )),
                Ok(found) => {
                    for (p, entry) in names.into_iter().zip(found) {
                        match entry {
                            Some(e) => p.who = Who::Sid(e.sid),
                            None => problems.push(format!(
                                "{}: `{}` is not a user or group of the domain (looked up at ldap://{})",
                                p.place, p.written, dir.host
                            )),
                        }
                    }
                }
            }
        }
        (Some(_), None, _) => problems.push(format!(
            "{}: names in allow and deny are looked up with gatehouse's own Kerberos credential: \
             [domain] needs keytab and service_principal (or write SIDs)",
            names[0].place
        )),
        (None, _, Some((users, path))) => {
            for p in names {
                let Who::Name { domain, name } = &p.who else { continue };
                if !users.has_user(domain.as_deref(), name) && (domain.is_some() || !users.has_group(name)) {
                    problems.push(format!(
                        "{}: `{}` is neither a user nor a group of {}",
                        p.place,
                        p.written,
                        path.display()
                    ));
                }
            }
        }
        (None, _, None) => problems.push(format!(
            "{}: `{}`: names need [access] directory to be looked up in (or write the SID)",
            names[0].place, names[0].written
        )),
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &std::path::Path, accounts: &str, access: &str, allow: &str) -> Config {
        std::fs::write(dir.join("users"), "ADTEST:alice:x\n:bob:y\n+Finance:alice\n").unwrap();
        let text = format!(
            "[domain]\nrealm = \"AD.TEST\"\nnetbios_name = \"ADTEST\"\n{accounts}\n{access}\n\
             [[listener]]\nname = \"l\"\nbind = \"127.0.0.1:0\"\n\
             [[site]]\nname = \"s\"\nlistener = \"l\"\nbackend = \"http://127.0.0.1:1\"\nauth = [\"NTLM\"]\nallow = {allow}\n"
        );
        crate::config::load_str(&dir.join("g.toml"), &text).unwrap_or_else(|p| panic!("{p}"))
    }

    const FILE: &str = "[accounts]\nsource = \"file\"\nfile = \"users\"";
    const WINBIND: &str = "[accounts]\nsource = \"winbind\"\nntlm_auth = \"/bin/true\"";

    #[test]
    fn an_accounts_file_knows_its_users_and_groups() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = config(dir.path(), FILE, "", r#"["Finance", "ADTEST\\alice", "bob", "S-1-5-21-1-2-3-4"]"#);
        resolve(&mut c, None, Names::LookUp).unwrap();
        // Names stay names for the file; the SID stays a SID.
        assert!(matches!(c.sites[0].rules.allow[0].who, Who::Name { .. }));
        let mut c = config(dir.path(), FILE, "", r#"["ADTEST\\carol", "Audit", "ADTEST\\Finance"]"#);
        let e = resolve(&mut c, None, Names::LookUp).unwrap_err();
        assert_eq!(e.lines().count(), 3, "{e}");
        assert!(e.contains("`ADTEST\\carol` is neither a user nor a group of"), "{e}");
        assert!(e.contains("g.toml:") && e.contains("site[0].allow"), "{e}");
        // A group of the file has no domain: written with one, it is not the group.
        assert!(e.contains("`ADTEST\\Finance`"), "{e}");
    }

    #[test]
    fn names_of_the_domain_need_the_directory_and_the_service_account() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = config(dir.path(), WINBIND, "", r#"["ADTEST\\Finance"]"#);
        let e = resolve(&mut c, None, Names::LookUp).unwrap_err();
        assert!(e.contains("names need [access] directory"), "{e}");
        let directory = "[access]\ndirectory = \"ldap://dc1.ad.test\"";
        let mut c = config(dir.path(), WINBIND, directory, r#"["ADTEST\\Finance"]"#);
        let e = resolve(&mut c, None, Names::LookUp).unwrap_err();
        assert!(e.contains("[domain] needs keytab and service_principal"), "{e}");
        // SIDs need nothing.
        let mut c = config(dir.path(), WINBIND, "", r#"["S-1-5-21-1-2-3-4"]"#);
        resolve(&mut c, None, Names::LookUp).unwrap();
    }

    #[test]
    fn another_domains_name_cannot_be_looked_up() {
        let dir = tempfile::tempdir().unwrap();
        let directory = "[access]\ndirectory = \"ldap://dc1.ad.test\"";
        let mut c = config(dir.path(), WINBIND, directory, r#"["OTHER\\Finance"]"#);
        let d = Arc::new(kcd::Delegator::new("svc@AD.TEST", "/nonexistent", "AD.TEST"));
        // Offline: the domain is still checked, nothing is asked.
        let e = resolve(&mut c, Some(&d), Names::Offline).unwrap_err();
        assert!(e.contains("only names of the domain ADTEST can be looked up"), "{e}");
        let mut c = config(dir.path(), WINBIND, directory, r#"["ADTEST\\Finance"]"#);
        resolve(&mut c, Some(&d), Names::Offline).unwrap();
        assert!(matches!(c.sites[0].rules.allow[0].who, Who::Name { .. }), "offline leaves names");
    }
}
