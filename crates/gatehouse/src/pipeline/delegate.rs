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
    /// Where a failure goes for the status page.
    pub problems: &'a crate::metrics::Problems,
    /// The site, as the status page names it.
    pub site: &'a str,
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
    let base =
        user.account.clone().unwrap_or_else(|| crate::auth::kcd_user(&user.name, user.principal.as_deref(), realm));
    let principal = base.to_string();
    let (spn, kind, mode) = (spn.to_owned(), d.token, d.user);
    let target = spn.clone();
    let result = tokio::task::spawn_blocking(move || {
        let user = match base {
            kcd::User::Account(who) if mode == crate::config::DelegationUser::Upn => {
                kcd::User::Upn { upn: delegator.upn(&who)?, account: who }
            }
            other => other,
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
            let explained = kcd::explain(&e, account, &spn, &principal);
            if let Some(x) = &explained {
                cause.push_str(&format!(
                    "; {}: {}; fix (PowerShell): {}; fix (samba-tool): {}",
                    x.code,
                    x.cause,
                    x.powershell.join(" ; "),
                    x.samba_tool.join(" ; ")
                ));
            }
            k.problems.record(crate::metrics::Problem {
                at: std::time::SystemTime::now(),
                site: k.site.to_owned(),
                error: format!("delegation to {spn} failed: {e}"),
                explained,
            });
            if e.is_unreachable() {
                Err(Failure::DomainUnreachable(cause))
            } else {
                Err(Failure::BadGateway(cause))
            }
        }
    }
}
