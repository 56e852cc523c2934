//! `OIDC:NAME` and `Bearer:NAME`: a provider's word about a user, made into
//! a domain user.
//!
//! The provider names the user in a configured claim; that value is a UPN
//! (asked for with an enterprise-name S4U2Self, as `delegation_user = "upn"`
//! does) or fills a template (`{preferred_username}@AD.TEST`). The S4U2Self
//! to gatehouse itself is also the check that the account exists and is
//! enabled, and its PAC gives the groups: from there the user is the same as
//! any other sign-in's (access rules, KCD). What the provider said about the
//! sign-in (`acr`, `amr`, groups at the provider) travels with the user, for
//! a site's `require_*` and `mfa = "required"`.

use crate::metrics::Cause;
use std::sync::Arc;

use http::header::{self, HeaderMap, HeaderValue};
use http::{Response, StatusCode};

use super::{Authenticator, Client, Reason, User, Verdict};
use crate::config::{ClaimRules, Mapping, Scheme};
use crate::oidc::{Claims, Failed, Provider};
use crate::response_body::ResponseBody;
use idtoken as token;

/// What the provider said about a user's sign-in.
pub struct Federated {
    pub idp: u8,
    pub idp_name: String,
    pub acr: Option<String>,
    pub amr: Vec<String>,
    pub groups: Vec<String>,
    /// The ID token, for RP-initiated logout's `id_token_hint`; None for a
    /// bearer token. Never logged.
    pub id_token: Option<String>,
}

impl std::fmt::Debug for Federated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Federated")
            .field("idp", &self.idp_name)
            .field("acr", &self.acr)
            .field("amr", &self.amr)
            .finish()
    }
}

impl Federated {
    /// The provider did a second factor (`amr` holds `mfa`, RFC 8176).
    pub fn did_mfa(&self) -> bool {
        self.amr.iter().any(|a| a == "mfa")
    }
}

/// Why a provider's user is not let in.
#[derive(Debug)]
pub enum Unmapped {
    /// The claim naming the user is missing or unusable.
    Claim(String),
    /// The domain has no such account.
    NoAccount(String),
    /// The account is disabled, locked or expired.
    Disabled(String),
    /// The KDC could not be asked.
    Unavailable(String),
}

impl Unmapped {
    /// For the page, in words.
    pub fn words(&self, idp: &str) -> String {
        match self {
            Unmapped::Claim(_) => format!("{idp} did not say who you are in a way this site can use. Ask your help desk."),
            Unmapped::NoAccount(who) => format!(
                "You signed in at {idp} as {who}, but the domain has no account for {who}, so this site cannot be used with it. Ask your help desk."
            ),
            Unmapped::Disabled(who) => {
                format!("You signed in at {idp} as {who}, but that account is disabled or locked out in the domain. Ask your help desk.")
            }
            Unmapped::Unavailable(_) => "The domain cannot be reached to look up your account. Try again shortly.".into(),
        }
    }

    pub fn cause(&self) -> String {
        match self {
            Unmapped::Claim(w) => format!("provider's user claim unusable: {w}"),
            Unmapped::NoAccount(w) => format!("no domain account for {w} (KDC: client unknown)"),
            Unmapped::Disabled(w) => format!("domain account of {w} disabled, locked or expired (KDC refused it)"),
            Unmapped::Unavailable(w) => format!("domain unreachable for the account lookup: {w}"),
        }
    }
}

/// The claims of a token made into a domain user (one S4U2Self, cached per
/// user in kcd; off the worker).
pub async fn domain_user(
    setup: &Authenticator,
    provider: &Provider,
    claims: &Claims,
    scheme: Scheme,
    id_token: Option<String>,
) -> Result<Arc<User>, Unmapped> {
    let idp = &provider.settings;
    let (Some(delegator), Some(domain)) = (&setup.delegator, &setup.domain) else {
        return Err(Unmapped::Unavailable("no Kerberos service account ([domain] keytab) to look users up".into()));
    };
    let realm = domain.realm.as_str();
    let value = token::string_claim(claims, &idp.user_claim)
        .ok_or_else(|| Unmapped::Claim(format!("claim `{}` missing or not a string", idp.user_claim)))?;
    let named = match &idp.mapping {
        Mapping::Upn => value.to_owned(),
        Mapping::Template(t) => fill(t, claims)?,
    };
    // AD's UPN limit; no control characters, no spaces, one `@` at most once.
    if named.is_empty()
        || named.len() > 1024
        || named.chars().any(|c| c.is_control() || c == ' ' || c == '\\' || c == '/')
        || named.matches('@').count() > 1
    {
        return Err(Unmapped::Claim(format!("`{}` is not a domain account name", named.escape_debug())));
    }
    let asked = match (&idp.mapping, named.split_once('@')) {
        (Mapping::Upn, Some(_)) => kcd::User::Upn { upn: named.clone(), account: named.clone() },
        (Mapping::Upn, None) => return Err(Unmapped::Claim(format!("`{named}` is not a UPN (no @)"))),
        (Mapping::Template(_), Some((a, r))) if r.eq_ignore_ascii_case(realm) => {
            kcd::User::Account(format!("{a}@{realm}"))
        }
        (Mapping::Template(_), Some(_)) => kcd::User::Upn { upn: named.clone(), account: named.clone() },
        (Mapping::Template(_), None) => kcd::User::Account(format!("{named}@{realm}")),
    };
    let (d, who) = (delegator.clone(), asked.clone());
    let logon = match tokio::task::spawn_blocking(move || d.logon(&who)).await {
        Ok(Ok(l)) => l,
        Ok(Err(e)) => {
            return Err(match e.kind() {
                kcd::Kind::ClientUnknown => Unmapped::NoAccount(named),
                kcd::Kind::Revoked => Unmapped::Disabled(named),
                _ if e.is_unreachable() => Unmapped::Unavailable(e.to_string()),
                _ => Unmapped::Unavailable(e.to_string()),
            })
        }
        Err(e) => return Err(Unmapped::Unavailable(format!("the lookup did not run: {e}"))),
    };
    let account = format!("{}@{realm}", logon.info.account);
    let name = format!("{}\\{}", logon.info.logon_domain, logon.info.account);
    // Found by its UPN (an enterprise name), the account is then asked for
    // by its own name, which the PAC gave: the backend sees `alice@AD.TEST`
    // as for any other sign-in, not the enterprise name.
    let _ = asked;
    let kcd_user = kcd::User::Account(account);
    let mut user = User::new(name, scheme, None).map_err(Unmapped::Claim)?;
    user.account = Some(kcd_user);
    user.logon = Some(logon);
    user.federated = Some(Arc::new(Federated {
        idp: provider.index,
        idp_name: idp.name.clone(),
        acr: token::string_claim(claims, "acr").map(str::to_owned),
        amr: token::list_claim(claims, "amr"),
        groups: token::list_claim(claims, &idp.group_claim),
        id_token,
    }));
    Ok(Arc::new(user))
}

/// `{claim}` replaced by the claim's value.
fn fill(template: &str, claims: &Claims) -> Result<String, Unmapped> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let close = rest[open..].find('}').map(|c| open + c).unwrap_or(rest.len());
        let name = &rest[open + 1..close.min(rest.len())];
        let v = token::string_claim(claims, name)
            .ok_or_else(|| Unmapped::Claim(format!("claim `{name}` of the template missing or not a string")))?;
        out.push_str(v);
        rest = rest.get(close + 1..).unwrap_or("");
    }
    out.push_str(rest);
    Ok(out)
}

/// A site's claim rules against what the provider said; the reason in words
/// if they are not met.
pub fn meets(rules: &ClaimRules, f: &Federated) -> Result<(), String> {
    if !rules.acr.is_empty() && !f.acr.as_deref().is_some_and(|a| rules.acr.iter().any(|r| r == a)) {
        return Err(format!(
            "This site requires a sign-in at {} of the kind {}; yours was {}.",
            f.idp_name,
            rules.acr.join(" or "),
            f.acr.as_deref().unwrap_or("not stated")
        ));
    }
    for need in &rules.amr {
        if !f.amr.iter().any(|a| a == need) {
            let what = if need == "mfa" { "multi-factor authentication".to_owned() } else { format!("`{need}`") };
            return Err(format!(
                "This site requires that you sign in at {} with {what}; your sign-in there did not use it.",
                f.idp_name
            ));
        }
    }
    if let Some(g) = &rules.group {
        if !f.groups.iter().any(|x| x == g) {
            return Err(format!(
                "This site is for members of {g} at {}; your sign-in does not show that membership.",
                f.idp_name
            ));
        }
    }
    Ok(())
}

/// `Authorization: Bearer`: the access token checked with provider `i`,
/// then made into a domain user.
/// `needs_mfa`: the site requires a second factor, which the token's `amr`
/// must show (RFC 9470's `insufficient_user_authentication` otherwise).
pub async fn bearer(token_text: &str, ctx: Client<'_>, setup: &Authenticator, i: u8, needs_mfa: bool) -> Verdict {
    let Some(provider) = setup.providers.get(i as usize) else {
        return refuse_bearer("no such provider".into(), "invalid_token");
    };
    let claims = match provider.verify_bearer(token_text).await {
        Ok(c) => c,
        Err(Failed::Unreachable(why)) => {
            return super::service_unavailable(format!("provider {} unreachable: {why}", provider.name()))
        }
        Err(Failed::Refused(why)) => {
            tracing::info!(client = %ctx.info.peer, idp = %provider.name(), cause = %why, "bearer token refused");
            return refuse_bearer(format!("{} bearer token: {why}", provider.name()), "invalid_token");
        }
    };
    match domain_user(setup, provider, &claims, Scheme::Bearer(i), None).await {
        Ok(user) if needs_mfa && !user.federated.as_ref().is_some_and(|f| f.did_mfa()) => refuse_bearer(
            format!("{}: bearer token without mfa in amr on a site that requires a second factor", user.name),
            "insufficient_user_authentication",
        ),
        Ok(user) => Verdict::Pass(user, None),
        Err(Unmapped::Unavailable(why)) => super::service_unavailable(why),
        Err(u) => refuse_bearer(u.cause(), "invalid_token"),
    }
}

fn refuse_bearer(why: String, error: &'static str) -> Verdict {
    let mut resp = Response::new(ResponseBody::local(bytes::Bytes::from_static(
        b"401 Unauthorized: the bearer token is not accepted.\n",
    )));
    *resp.status_mut() = StatusCode::UNAUTHORIZED;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    let challenge = format!("Bearer error=\"{error}\"");
    if let Ok(v) = HeaderValue::from_str(&challenge) {
        h.insert(header::WWW_AUTHENTICATE, v);
    }
    // An unreadable, forged or expired token is a bad message; a good token
    // the site's rules refuse (no mfa in amr) is a refusal by rule.
    let cause = if error == "invalid_token" { Cause::BadMessage } else { Cause::DeniedByRule };
    Verdict::Answer(Box::new(resp), Reason::Refused(why, cause))
}

/// Where a browser without a session goes to sign in at provider `i`.
pub fn start_location(setup: &Authenticator, i: u8, target: &str) -> Option<String> {
    let p = setup.providers.get(i as usize)?;
    Some(format!("{START}?idp={}&return={}", crate::oidc::enc(p.name()), crate::oidc::enc(target)))
}

pub const START: &str = "/.gatehouse/oidc/start";

/// The claim rules of a site checked for a user who came through a
/// provider; a 403 page that says why when they are not met.
pub fn check_claims(setup: &Authenticator, rules: &ClaimRules, user: &User, headers: &HeaderMap) -> Option<Verdict> {
    let f = user.federated.as_ref()?;
    let why = meets(rules, f).err()?;
    let _ = headers;
    let resp = match &setup.forms {
        Some(forms) => {
            let look = crate::signin_page::Look { title: &forms.settings.title, logo: forms.settings.logo.is_some() };
            crate::signin_page::notice(StatusCode::FORBIDDEN, &look, "Your sign-in is not enough here", &why, None)
        }
        None => {
            let mut r = Response::new(ResponseBody::local(bytes::Bytes::from(format!("403 Forbidden: {why}\n"))));
            *r.status_mut() = StatusCode::FORBIDDEN;
            r
        }
    };
    Some(Verdict::Answer(Box::new(resp), Reason::Refused(format!("{}: claims: {why}", user.name), Cause::DeniedByRule)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fed(acr: Option<&str>, amr: &[&str], groups: &[&str]) -> Federated {
        Federated {
            idp: 0,
            idp_name: "corp".into(),
            acr: acr.map(Into::into),
            amr: amr.iter().map(|s| s.to_string()).collect(),
            groups: groups.iter().map(|s| s.to_string()).collect(),
            id_token: None,
        }
    }

    #[test]
    fn claim_rules() {
        let r = ClaimRules { acr: vec!["gold".into()], amr: vec!["mfa".into()], group: Some("admins".into()) };
        assert!(meets(&r, &fed(Some("gold"), &["pwd", "mfa"], &["admins"])).is_ok());
        assert!(meets(&r, &fed(Some("silver"), &["mfa"], &["admins"])).unwrap_err().contains("gold"));
        assert!(meets(&r, &fed(Some("gold"), &["pwd"], &["admins"])).unwrap_err().contains("multi-factor"));
        assert!(meets(&r, &fed(Some("gold"), &["mfa"], &["users"])).unwrap_err().contains("admins"));
        assert!(meets(&ClaimRules::default(), &fed(None, &[], &[])).is_ok());
    }

    #[test]
    fn templates() {
        let c: Claims = serde_json::from_str(r#"{"preferred_username":"alice","upn":["x@y"]}"#).unwrap();
        assert_eq!(fill("{preferred_username}@AD.TEST", &c).unwrap(), "alice@AD.TEST");
        assert_eq!(fill("{upn}", &c).unwrap(), "x@y");
        assert!(fill("{email}", &c).is_err());
    }
}
