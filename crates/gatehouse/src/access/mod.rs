//! Access rules: who may use each site, by user and Active Directory group
//! (the "applies to" of a TMG publishing rule).
//!
//! The groups come from the domain, never from the client: the verified PAC
//! of the user's own ticket (Negotiate, and Basic checked by the KDC), or of
//! an S4U2Self ticket to gatehouse itself for users who signed in otherwise
//! (NTLM), read again every `[access] refresh` so that a user disabled or
//! removed from a group in AD loses access within that time, on a connection
//! that stays open too. Names in `allow` and `deny` become SIDs when the
//! configuration loads ([`resolve`]); a request compares SIDs only.
//!
//! - [`Access::standing`]: what the domain says about the user now;
//! - [`decide`]: what the site's rules make of it.

mod resolve;

pub use resolve::{resolve, Names};

use std::sync::Arc;
use std::time::Duration;

use crate::auth::User;
use crate::config::{Principal, Rules, UserFile, Who};

/// What access rules may ask, as one configuration generation sets it up.
pub struct Access {
    delegator: Option<Arc<kcd::Delegator>>,
    /// The accounts file, for its users' groups.
    file: Option<Arc<UserFile>>,
    /// How long a sign-in's own PAC stands before the domain is asked again.
    refresh: Duration,
}

/// What the domain says about a signed-in user now.
#[derive(Debug)]
pub enum Standing {
    /// An account of the domain, with the SIDs it holds.
    Domain(Arc<kcd::Logon>),
    /// A user the domain is not asked about: an accounts file's (groups from
    /// the file), or a trusted domain's known by sign-in alone.
    Local,
    /// The KDC refused the account (disabled, expired, locked out, deleted).
    Refused(kcd::Error),
    /// No KDC answered, and what was known is older than refresh + grace.
    Unknown(String),
}

impl Access {
    pub fn new(delegator: Option<Arc<kcd::Delegator>>, file: Option<Arc<UserFile>>, refresh: Duration) -> Access {
        Access { delegator, file, refresh }
    }

    pub fn file(&self) -> Option<&UserFile> {
        self.file.as_deref()
    }

    /// Costs no KDC round trip while what is known is fresh (kcd keeps it per
    /// user); otherwise one S4U2Self per user in flight, off the worker.
    pub async fn standing(&self, user: &User) -> Standing {
        let fresh = user.logon.as_ref().filter(|l| l.read.elapsed() < self.refresh);
        let (Some(account), Some(delegator)) = (&user.account, &self.delegator) else {
            // Nobody to ask: the sign-in's own word, however old (a trusted
            // realm's Kerberos user keeps their ticket's PAC).
            return match &user.logon {
                Some(l) => Standing::Domain(l.clone()),
                None => Standing::Local,
            };
        };
        if let Some(l) = fresh {
            return Standing::Domain(l.clone());
        }
        let known = match delegator.cached_logon(account) {
            Some(known) => known,
            None => {
                let (d, who) = (delegator.clone(), account.clone());
                match tokio::task::spawn_blocking(move || d.logon(&who)).await {
                    Ok(known) => known,
                    Err(e) => return Standing::Unknown(format!("the groups lookup did not run: {e}")),
                }
            }
        };
        match known {
            Ok(l) => Standing::Domain(l),
            Err(e) if refuses_account(&e) => Standing::Refused(e),
            Err(e) => Standing::Unknown(e.to_string()),
        }
    }
}

/// The KDC's answers that are about the account itself (kcd keeps them as
/// refusals); anything else decides nothing about the user.
fn refuses_account(e: &kcd::Error) -> bool {
    matches!(e.kind(), kcd::Kind::Revoked | kcd::Kind::ClientUnknown | kcd::Kind::BadOption)
}

/// Why a user may not use a site.
#[derive(Debug, PartialEq, Eq)]
pub enum Denied<'r> {
    /// A `deny` entry matched.
    Deny(&'r Principal),
    /// The site has an `allow` and nothing in it matched.
    NotAllowed,
}

/// Deny wins; an empty `allow` lets every signed-in user in. `Ok` names the
/// `allow` entry that matched, if any.
pub fn decide<'r>(
    rules: &'r Rules,
    user: &User,
    standing: &Standing,
    file: Option<&UserFile>,
) -> Result<Option<&'r Principal>, Denied<'r>> {
    let holds = |p: &Principal| matches(&p.who, user, standing, file);
    if let Some(p) = rules.deny.iter().find(|p| holds(p)) {
        return Err(Denied::Deny(p));
    }
    if rules.allow.is_empty() {
        return Ok(None);
    }
    rules.allow.iter().find(|p| holds(p)).map(Some).ok_or(Denied::NotAllowed)
}

fn matches(who: &Who, user: &User, standing: &Standing, file: Option<&UserFile>) -> bool {
    match who {
        Who::Sid(sid) => matches!(standing, Standing::Domain(l) if l.holds(sid)),
        // Names stay names only for an accounts file's users and groups.
        Who::Name { domain, name } => {
            let (user_domain, account) = user.name.split_once('\\').unwrap_or(("", &user.name));
            let domain_ok = domain.as_deref().is_none_or(|d| d.eq_ignore_ascii_case(user_domain));
            let is_user = domain_ok && account.eq_ignore_ascii_case(name);
            let in_group = domain.is_none() && file.is_some_and(|f| f.in_group(name, user_domain, account));
            is_user || in_group
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Scheme;

    fn principal(text: &str) -> Principal {
        Principal { written: text.into(), place: "t".into(), who: crate::config::rule_entry(text).unwrap() }
    }

    fn rules(allow: &[&str], deny: &[&str]) -> Rules {
        Rules { allow: allow.iter().map(|t| principal(t)).collect(), deny: deny.iter().map(|t| principal(t)).collect() }
    }

    fn user(name: &str) -> User {
        User::new(name.into(), Scheme::Ntlm, None).unwrap()
    }

    /// A logon of S-1-5-21-1-2-3-<rid> in groups 513 and <groups>.
    fn domain(rid: u32, groups: &[u32]) -> Standing {
        let info = kcd::LogonInfo {
            account: "x".into(),
            full_name: String::new(),
            logon_domain: "ADTEST".into(),
            logon_server: String::new(),
            domain_sid: kcd::Sid::parse("S-1-5-21-1-2-3").unwrap(),
            user_rid: rid,
            primary_group_rid: 513,
            user_flags: 0,
            groups: groups.iter().map(|&rid| kcd::GroupRid { rid, attributes: 7 }).collect(),
            extra_sids: vec![],
            resource_domain: None,
            resource_groups: vec![],
        };
        Standing::Domain(Arc::new(kcd::Logon::new(info)))
    }

    #[test]
    fn by_sid_deny_wins_and_no_allow_lets_everyone_in() {
        let alice = user("ADTEST\\alice");
        let finance = "S-1-5-21-1-2-3-1200";
        let contractors = "S-1-5-21-1-2-3-1300";
        let member = domain(1105, &[513, 1200]);
        let contractor = domain(1106, &[513, 1200, 1300]);
        let outsider = domain(1107, &[513]);
        let r = rules(&[finance], &[contractors]);
        assert_eq!(decide(&r, &alice, &member, None).unwrap().unwrap().written, finance);
        assert_eq!(decide(&r, &alice, &contractor, None), Err(Denied::Deny(&r.deny[0])));
        assert_eq!(decide(&r, &alice, &outsider, None), Err(Denied::NotAllowed));
        // The user's own SID, and the primary group (not in GroupIds).
        assert!(decide(&rules(&["S-1-5-21-1-2-3-1107"], &[]), &alice, &outsider, None).is_ok());
        assert!(decide(&rules(&["S-1-5-21-1-2-3-513"], &[]), &alice, &domain(1, &[]), None).is_ok());
        // Another domain's SID with the same RID is not the group.
        assert!(decide(&rules(&["S-1-5-21-9-9-9-1200"], &[]), &alice, &member, None).is_err());
        let open = rules(&[], &[contractors]);
        assert_eq!(decide(&open, &alice, &outsider, None), Ok(None));
        assert!(decide(&open, &alice, &contractor, None).is_err());
        // With no logon a SID cannot match: a local user is not let in by one.
        assert_eq!(decide(&r, &alice, &Standing::Local, None), Err(Denied::NotAllowed));
        assert!(decide(&rules(&[], &[]), &alice, &Standing::Local, None).is_ok());
    }

    #[test]
    fn by_name_for_an_accounts_file() {
        let file = UserFile::parse("ADTEST:alice:x\nADTEST:bob:y\n:carol:z\n+Finance:alice,carol\n").unwrap();
        let f = Some(&file);
        let (alice, bob, carol) = (user("ADTEST\\alice"), user("ADTEST\\bob"), user("OTHER\\carol"));
        let r = rules(&["Finance", "ADTEST\\bob"], &[]);
        assert!(decide(&r, &alice, &Standing::Local, f).is_ok());
        assert_eq!(decide(&r, &bob, &Standing::Local, f).unwrap().unwrap().written, "ADTEST\\bob");
        assert!(decide(&r, &carol, &Standing::Local, f).is_ok(), "a member line without domain is any domain's");
        assert!(decide(&rules(&["OTHER\\bob"], &[]), &bob, &Standing::Local, f).is_err(), "another domain's bob");
        assert!(decide(&rules(&["bob"], &[]), &bob, &Standing::Local, f).is_ok());
        assert!(
            matches!(decide(&rules(&[], &["finance"]), &alice, &Standing::Local, f), Err(Denied::Deny(p)) if p.written == "finance")
        );
        assert!(decide(&rules(&[], &["finance"]), &bob, &Standing::Local, f).is_ok());
        assert!(decide(&rules(&["Finance"], &[]), &bob, &Standing::Local, f).is_err());
    }
}
