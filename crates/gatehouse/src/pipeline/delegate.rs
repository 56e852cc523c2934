//! The delegate stage: backend credentials in the user's name, by Kerberos
//! Constrained Delegation (S4U2Self, or the client's own forwardable ticket,
//! then S4U2Proxy), cached per user in `kcd`.

use std::sync::Arc;

use http::header::HeaderValue;

use super::failure::Failure;
use crate::auth::User;
use crate::config::Kcd;

/// What delegation for one site needs: the service account, the realm that
/// NTLM names belong to, and the site's settings.
#[derive(Clone, Copy)]
pub struct Kerberos<'a> {
    pub delegator: Option<&'a Arc<kcd::Delegator>>,
    pub realm: &'a str,
    pub settings: &'a Kcd,
}

/// `Authorization: Negotiate` for the backend whose SPN is `spn` (one for the
/// farm, or the backend's own) in `user`'s name (S4U2Self then S4U2Proxy,
/// cached per user). The GSSAPI calls block, so they run on a blocking thread.
pub async fn token(
    k: &Kerberos<'_>,
    user: &User,
    spn: &str,
    binding: Option<Arc<[u8]>>,
) -> Result<HeaderValue, Failure> {
    let Some(delegator) = k.delegator.cloned() else {
        return Err(Failure::ServiceUnavailable("no delegating account is configured".into()));
    };
    let (d, realm) = (k.settings, k.realm);
    let account = user.name.rsplit('\\').next().unwrap_or(&user.name);
    // A Kerberos user is asked for by their exact principal. A sign-in name
    // with `@` is already a UPN (NTLM users may type one).
    let by_upn = user.principal.is_none() && account.contains('@');
    let principal = match &user.principal {
        Some(p) => p.to_string(),
        None if by_upn => account.to_owned(),
        None => format!("{account}@{realm}"),
    };
    let (spn, kind, mode) = (spn.to_owned(), d.token, d.user);
    let who = principal.clone();
    let target = spn.clone();
    let result = tokio::task::spawn_blocking(move || {
        let user = if by_upn {
            kcd::User::Upn { upn: who.clone(), account: who }
        } else if mode == crate::config::DelegationUser::Upn {
            kcd::User::Upn { upn: delegator.upn(&who)?, account: who }
        } else {
            kcd::User::Account(who)
        };
        delegator.token(&user, &target, kind, binding.as_deref())
    })
    .await
    .map_err(|e| Failure::ServiceUnavailable(format!("delegation did not run: {e}")))?;
    match result {
        Ok(token) => {
            use base64::Engine;
            let value = format!("Negotiate {}", base64::engine::general_purpose::STANDARD.encode(token));
            HeaderValue::from_str(&value).map_err(|_| Failure::BadGateway("unusable Kerberos token".into()))
        }
        Err(e) => {
            let account = k.delegator.map_or("", |d| d.principal());
            let mut cause = format!("Kerberos delegation for {principal} to {spn} failed: {e}");
            if let Some(x) = kcd::explain(&e, account, &spn, &principal) {
                cause.push_str(&format!(
                    "; {}: {}; fix (PowerShell): {}; fix (samba-tool): {}",
                    x.code,
                    x.cause,
                    x.powershell.join(" ; "),
                    x.samba_tool.join(" ; ")
                ));
            }
            if e.is_unreachable() {
                Err(Failure::DomainUnreachable(cause))
            } else {
                Err(Failure::BadGateway(cause))
            }
        }
    }
}
