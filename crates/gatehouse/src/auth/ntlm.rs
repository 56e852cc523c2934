//! The NTLM handshake at the edge: NEGOTIATE -> CHALLENGE -> AUTHENTICATE on
//! one connection, the password checked by the configured accounts source, the
//! extranet lockout in front of it. The same legs serve bare NTLM and NTLM
//! inside SPNEGO (`negotiate.rs` wraps and unwraps them).

pub use ntlm::ChallengeSent;

use std::sync::Arc;

use http::header::HeaderValue;

use super::Evidence;
use super::{encode, refuse, refuse_as, service_unavailable, unauthorized, Reason, State, User, Verdict, Wrap};
use super::{Authenticator, Client};
use crate::accounts::Accounts;
use crate::accounts::CheckError;
use crate::config::Scheme;
use crate::metrics::Cause;

/// Why a leg did not succeed.
pub enum Failure {
    /// 401: the client's fault (bad message, wrong password, lockout).
    Refused(String, Cause),
    /// 503: the domain could not be asked.
    Unavailable(String),
}

impl Failure {
    pub fn verdict(self, schemes: &[Scheme]) -> Verdict {
        match self {
            Failure::Refused(why, cause) => refuse_as(schemes, why, cause),
            Failure::Unavailable(why) => service_unavailable(why),
        }
    }
}

/// One bare NTLM leg (`Authorization: NTLM ...`, or raw NTLM under `Negotiate`).
pub async fn leg(bytes: &[u8], wrap: Wrap, ctx: Client<'_>, setup: &Authenticator, schemes: &[Scheme]) -> Verdict {
    let Wrap::Bare(scheme) = wrap else { unreachable!("SPNEGO legs come through negotiate.rs") };
    match bytes.get(8) {
        Some(1) => match challenge(bytes, ctx, setup) {
            Ok(sent) => {
                let reply = format!("{scheme} {}", encode(sent.message()));
                ctx.auth.set(State::Challenged(sent, Wrap::Bare(scheme)));
                Verdict::Answer(unauthorized(&[], Some(&reply)), Reason::Handshake)
            }
            Err(f) => {
                ctx.auth.set(State::None);
                f.verdict(schemes)
            }
        },
        Some(3) => {
            let State::Challenged(sent, wrap) = ctx.auth.take() else {
                return refuse(schemes, "NTLM authenticate without a challenge on this connection".into());
            };
            if wrap != Wrap::Bare(scheme) {
                return refuse(schemes, "NTLM authenticate in another wrapping than its negotiate".into());
            }
            match authenticate(sent, bytes, ctx, setup).await {
                Ok((user, _)) => {
                    ctx.auth.set(State::Authenticated(user.clone()));
                    Verdict::Pass(user, None)
                }
                Err(f) => f.verdict(schemes),
            }
        }
        _ => {
            ctx.auth.set(State::None);
            refuse(schemes, "not an NTLM negotiate or authenticate message".into())
        }
    }
}

/// NEGOTIATE in, CHALLENGE out. A new handshake may start on a connection that
/// was already authenticated (clients re-authenticate, e.g. before a POST).
pub fn challenge(bytes: &[u8], ctx: Client<'_>, setup: &Authenticator) -> Result<ChallengeSent, Failure> {
    let Some(setup) = setup.ntlm.get(&*ctx.info.listener) else {
        return Err(Failure::Refused("NTLM is not configured on this listener".into(), Cause::BadMessage));
    };
    let mut server_challenge = [0u8; 8];
    if getrandom::fill(&mut server_challenge).is_err() {
        return Err(Failure::Unavailable("no randomness for a challenge".into()));
    }
    ntlm::Acceptor::challenge(setup, bytes, server_challenge, ntlm::FileTime::now())
        .map_err(|e| Failure::Refused(format!("NTLM negotiate refused: {e}"), Cause::BadMessage))
}

/// AUTHENTICATE in: the password checked (unless the lockout says stop), then
/// the MIC, the timestamp and the channel bindings.
pub async fn authenticate(
    sent: ChallengeSent,
    bytes: &[u8],
    ctx: Client<'_>,
    setup: &Authenticator,
) -> Result<(Arc<User>, ntlm::SessionKey), Failure> {
    let received = sent
        .read_authenticate(bytes)
        .map_err(|e| Failure::Refused(format!("NTLM authenticate refused: {e}"), Cause::BadMessage))?;
    // Before anything is counted or the domain is asked: a name AD cannot
    // hold is no one's, and must not cost gatehouse memory per attempt.
    super::names::check_parts(&received.domain, &received.user).map_err(|why| {
        Failure::Refused(format!("NTLM logon name: {why}; the domain was not asked"), Cause::BadMessage)
    })?;
    let who = format!("{}\\{}", received.domain, received.user);
    let lockout = &setup.lockout;
    let limits = &setup.lockout_limits;
    if let Err(why) = lockout.allowed(&who, ctx.info.peer.ip(), limits) {
        return Err(Failure::Refused(
            format!("{who}: {why}; the password was not sent to the domain"),
            Cause::LockedOut,
        ));
    }
    let checked = match setup.accounts.as_deref() {
        Some(Accounts::File(users)) => crate::accounts::check_file(users, &received, setup.domain.as_ref()),
        Some(Accounts::Winbind(winbind)) => winbind.check(&received).await,
        None => Err(CheckError::Unavailable("no [accounts] configured".into())),
    };
    let key = match checked {
        Ok(key) => key,
        Err(CheckError::Rejected(why, evidence)) => {
            lockout.failed(&who, ctx.info.peer.ip(), evidence, limits);
            return Err(Failure::Refused(format!("{who}: {why}"), Cause::WrongPassword));
        }
        Err(CheckError::Unavailable(why)) => {
            return Err(Failure::Unavailable(format!("{who}: cannot check the password: {why}")));
        }
    };
    match received.finish(key, ctx.info.channel_bindings, ntlm::FileTime::now()) {
        Ok(done) => {
            lockout.succeeded(&who, limits);
            // The account the accounts source vouched for (a client that sent
            // no domain logged on to ours, or with a UPN).
            let account = match setup.accounts.as_deref() {
                Some(Accounts::Winbind(_)) => crate::accounts::winbind_account,
                _ => crate::accounts::file_account,
            };
            let named = account(&done.domain, &done.user, setup.domain.as_ref());
            let user =
                User::new(named.name(), Scheme::Ntlm, None).map_err(|why| Failure::Refused(why, Cause::BadMessage))?;
            // Winbind asked the domain: the user is its account (a UPN the
            // domain controller resolved, or our domain's; a trusted domain's
            // user is known by the sign-in alone). A file's user is not.
            let ours = match &named {
                crate::accounts::NtlmAccount::Upn(_) => true,
                crate::accounts::NtlmAccount::Account { domain, .. } => {
                    setup.domain.as_ref().is_some_and(|d| domain.eq_ignore_ascii_case(&d.netbios_name))
                }
            };
            let user = match (setup.accounts.as_deref(), &setup.domain) {
                (Some(Accounts::Winbind(_)), Some(d)) if ours => user.of_domain(&d.realm),
                _ => user,
            };
            Ok((Arc::new(user), done.session_key))
        }
        Err(e) => {
            // The password was right: the account exists.
            lockout.failed(&who, ctx.info.peer.ip(), Evidence::Account, limits);
            let cause = match e {
                ntlm::Error::ChannelBindingsMissing | ntlm::Error::ChannelBindingsMismatch => Cause::ChannelBinding,
                ntlm::Error::StaleTimestamp => Cause::Replay,
                _ => Cause::BadMessage,
            };
            Err(Failure::Refused(format!("{who}: {e}"), cause))
        }
    }
}

/// `Negotiate <base64>` or `NTLM <base64>` as a header value.
pub fn header(scheme: &str, token: &[u8]) -> Option<HeaderValue> {
    HeaderValue::from_str(&format!("{scheme} {}", encode(token))).ok()
}
