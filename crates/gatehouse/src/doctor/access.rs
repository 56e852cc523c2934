//! doctor's access part, with `--user NAME`: the user as the domain sees them
//! (SID, UPN, groups with their names), and for each site whether its access
//! rules let them in and by which rule, decided by the code that serves
//! requests.

use std::sync::Arc;

use super::Report;
use crate::access::{self, Denied, Standing};
use crate::config::{Config, Scheme};

pub fn check(config: &Config, user: Option<&str>, report: &mut Report) {
    let rules = config.sites.iter().any(|s| !s.rules.is_empty());
    let (Some(user), Some(domain)) = (user, &config.domain) else {
        if rules && user.is_none() {
            report.warn("give --user NAME to see which sites the access rules open to that user");
        }
        return;
    };
    let (Some(keytab), Some(principal)) = (&domain.keytab, &domain.service_principal) else {
        if rules {
            report.warn("[domain] has no keytab or service_principal: the users' groups cannot be read");
        }
        return;
    };
    let delegator =
        Arc::new(kcd::Delegator::new(principal, &keytab.to_string_lossy(), &domain.realm).with_rc4(domain.allow_rc4));
    let kcd_user = crate::auth::kcd_user(user, None, &domain.realm);
    let logon = match delegator.logon(&kcd_user) {
        Ok(l) => l,
        Err(e) => {
            let x = kcd::explain(&e, principal, "", &kcd_user.to_string());
            report
                .fail(&format!("the domain gives no logon for {kcd_user} (S4U2Self to {principal}): {e}"), x.as_ref());
            return;
        }
    };
    let name = format!("{}\\{}", logon.info.logon_domain, logon.info.account);
    let entries = config.access.directory.as_ref().map(|dir| {
        kcd::Directory::new(delegator.clone(), &dir.host, dir.port, dir.address, dir.timeout).by_sid(logon.sids())
    });
    let (names, upn) = match entries {
        Some(Ok(found)) => {
            let upn = found.first().and_then(|e| e.as_ref()).and_then(|e| e.upn.clone());
            let names: Vec<Option<String>> =
                found.into_iter().map(|e| e.map(|e| format!("{}\\{}", logon.info.logon_domain, e.account))).collect();
            (names, upn)
        }
        Some(Err(e)) => {
            report.fail(&format!("cannot read the groups' names from the directory: {e}"), None);
            (Vec::new(), None)
        }
        None => {
            report.warn("no [access] directory: groups are shown by SID only");
            (Vec::new(), None)
        }
    };
    report.pass(&format!(
        "{name}: SID {}, UPN {} (the domain's answer to S4U2Self for {kcd_user})",
        logon.user_sid(),
        upn.as_deref().unwrap_or("unknown")
    ));
    for (i, sid) in logon.sids().iter().enumerate().skip(1) {
        let known = names.get(i).cloned().flatten().unwrap_or_else(|| "(no directory entry)".into());
        println!("      group {sid} {known}");
    }
    let mut resolved = config.clone();
    if let Err(problems) = access::resolve(&mut resolved, Some(&delegator), access::Names::LookUp) {
        for p in problems.lines() {
            report.fail(p, None);
        }
        return;
    }
    let standing = Standing::Domain(logon.clone());
    let signed_in = match crate::auth::User::new(name.clone(), Scheme::Ntlm, None) {
        Ok(u) => u,
        Err(e) => return report.fail(&e, None),
    };
    for site in resolved.sites.iter().filter(|s| !s.auth.is_empty()) {
        let line = match access::decide(&site.rules, &signed_in, &standing, None) {
            Ok(None) => format!("site {}: {name} may use it (no allow: every signed-in user)", site.name),
            Ok(Some(p)) => format!("site {}: {name} may use it (allow {})", site.name, p.written),
            Err(Denied::Deny(p)) => format!("site {}: {name} is refused (deny {}, {})", site.name, p.written, p.place),
            Err(Denied::NotAllowed) => format!("site {}: {name} is refused (not in allow)", site.name),
        };
        println!("INFO  {line}");
    }
}
