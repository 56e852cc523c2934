//! The authorize stage: whether this user may use this site.
//!
//! Between authentication and the preparation of the backend request, so
//! that a refused user never reaches a backend, not even for a protocol
//! switch. What the domain says about the user comes from
//! [`Access::standing`] (kept per user in kcd, refreshed every `[access]
//! refresh`); the site's rules decide ([`access::decide`]).

use super::failure::Failure;
use crate::access::{self, Access, Denied, Standing};
use crate::auth::{ConnAuth, User};
use crate::config::Site;

pub async fn authorize(site: &Site, user: Option<&User>, access: &Access, conn: &ConnAuth) -> Result<(), Failure> {
    let Some(user) = user else { return Ok(()) };
    let standing = access.standing(user).await;
    match &standing {
        Standing::Refused(e) => {
            // The account itself is gone or disabled: nothing it signed in
            // with on this connection may be used again, on any site.
            conn.forget(user);
            let ago = user.signed_in.elapsed().unwrap_or_default().as_secs();
            return Err(Failure::Forbidden {
                user: user.name.clone(),
                cause: format!("the domain refuses the account (signed in {ago}s ago): {e}"),
                account: true,
            });
        }
        // On a site without rules an unreachable KDC decides nothing: the
        // sign-in stands as it does without access rules.
        Standing::Unknown(why) if !site.rules.is_empty() => {
            return Err(Failure::DomainUnreachable(format!(
                "{}'s groups cannot be read and the last ones known are past refresh and grace: {why}",
                user.name
            )));
        }
        _ => {}
    }
    if site.rules.is_empty() {
        return Ok(());
    }
    match access::decide(&site.rules, user, &standing, access.file()) {
        Ok(_) => Ok(()),
        Err(denied) => {
            let cause = match denied {
                Denied::Deny(p) => format!("deny {} ({})", p.written, p.place),
                Denied::NotAllowed => "not in allow".to_owned(),
            };
            Err(Failure::Forbidden { user: user.name.clone(), cause, account: false })
        }
    }
}
