//! `WWW-Authenticate: Negotiate`: our own SPNEGO acceptor (RFC 4178), which
//! hands Kerberos to MIT (through `kcd`) and NTLM to our NTLM acceptor.
//!
//! What clients send, and what happens:
//!
//! - NegTokenInit whose first mechanism is Kerberos, with its AP-REQ: accepted
//!   in one round trip; the AP-REP goes back in the final `WWW-Authenticate`.
//!   (Kerberos is taken only as the client's first choice: then RFC 4178 needs
//!   no mechListMIC, which MIT's context would otherwise have to sign.)
//! - NegTokenInit whose first mechanism is NTLM, with its NEGOTIATE: the
//!   CHALLENGE goes back in a NegTokenResp; the AUTHENTICATE follows in the
//!   client's NegTokenResp with the mechListMIC, which is checked, and gatehouse
//!   signs the mechanism list back.
//! - NegTokenInit whose first mechanism gatehouse does not take (NEGOEX, or
//!   Kerberos on a gatehouse without a keytab) but that lists NTLM: gatehouse
//!   names NTLM, the client starts it, the mechListMIC is required.
//! - A raw Kerberos token, or raw NTLM, under `Negotiate`: taken as such.
//!
//! Kerberos failures mark the connection, so that `negotiate_once` can stop
//! offering Negotiate on it.

use std::sync::Arc;

use spnego::{ClientToken, NegState, NegTokenResp, Oid};

use super::ntlm::{self as ntlm_leg, header};
use super::{refuse, refuse_as, unauthorized, Reason, State, User, Verdict, Wrap};
use super::{Authenticator, Client};
use crate::config::Scheme;

pub async fn leg(bytes: &[u8], ctx: Client<'_>, setup: &Authenticator, schemes: &[Scheme]) -> Verdict {
    let token = match spnego::parse_client_token(bytes) {
        Ok(t) => t,
        Err(e) => {
            ctx.auth.set(State::None);
            ctx.auth.set_negotiate_failed();
            return refuse(schemes, format!("Negotiate token refused: {e}"));
        }
    };
    match token {
        ClientToken::RawNtlm => ntlm_leg::leg(bytes, Wrap::Bare("Negotiate"), ctx, setup, schemes).await,
        ClientToken::RawKerberos => kerberos(bytes, None, ctx, setup, schemes).await,
        ClientToken::Init(init) => {
            let first = &init.mech_types[0];
            let kerberos_ok = setup.delegator.is_some();
            let ntlm_ok = setup.accounts.is_some();
            if first.is_kerberos() && kerberos_ok {
                let Some(token) = init.mech_token.as_deref() else {
                    // No optimistic token: name Kerberos and wait for it.
                    return refuse(schemes, "SPNEGO offers Kerberos without a token".into());
                };
                return kerberos(token, Some(first.clone()), ctx, setup, schemes).await;
            }
            if !(ntlm_ok && init.mech_types.iter().any(Oid::is_ntlm)) {
                ctx.auth.set_negotiate_failed();
                let listed: Vec<String> = init.mech_types.iter().map(|m| m.to_string()).collect();
                return refuse(
                    schemes,
                    format!("SPNEGO: no mechanism in common (client offers {})", listed.join(", ")),
                );
            }
            if first.is_ntlm() {
                if let Some(token) = init.mech_token.as_deref() {
                    let wrap = Wrap::Spnego { mech_types: init.mech_types_der.clone(), mic_required: false };
                    return ntlm_challenge(token, wrap, ctx, setup, schemes);
                }
            }
            // NTLM is listed but not first (or came without its token): name it.
            ctx.auth.set(State::NtlmChosen { mech_types: init.mech_types_der });
            let reply = NegTokenResp {
                neg_state: Some(NegState::AcceptIncomplete),
                supported_mech: Some(Oid(spnego::NTLMSSP.to_vec())),
                response_token: None,
                mech_list_mic: None,
            };
            challenge_answer(&reply)
        }
        ClientToken::Resp(resp) => continuation(resp, ctx, setup, schemes).await,
    }
}

/// A NegTokenResp: the next leg of the NTLM handshake that SPNEGO carries on
/// this connection (the client's NEGOTIATE after gatehouse named NTLM, or its
/// AUTHENTICATE with the mechListMIC).
async fn continuation(resp: NegTokenResp, ctx: Client<'_>, setup: &Authenticator, schemes: &[Scheme]) -> Verdict {
    match ctx.auth.take() {
        State::NtlmChosen { mech_types } => {
            let Some(token) = resp.response_token.as_deref() else {
                return refuse(schemes, "SPNEGO: the NTLM negotiate is missing".into());
            };
            let wrap = Wrap::Spnego { mech_types, mic_required: true };
            ntlm_challenge(token, wrap, ctx, setup, schemes)
        }
        State::Challenged(sent, Wrap::Spnego { mech_types, mic_required }) => {
            let Some(token) = resp.response_token.as_deref() else {
                return refuse(schemes, "SPNEGO: the NTLM authenticate is missing".into());
            };
            let (user, key) = match ntlm_leg::authenticate(sent, token, ctx, setup).await {
                Ok(done) => done,
                Err(f) => return f.verdict(schemes),
            };
            // The mechListMIC proves that nobody removed Kerberos from the
            // client's list to force NTLM (a downgrade).
            let mut session = match ntlm::Session::new(&key) {
                Ok(s) => s,
                Err(e) if resp.mech_list_mic.is_some() || mic_required => {
                    return refuse(schemes, format!("{}: {e}", user.name))
                }
                Err(_) => return pass(ctx, user, None, None),
            };
            match &resp.mech_list_mic {
                Some(mic) => {
                    if let Err(e) = session.verify(&mech_types, mic) {
                        return refuse(schemes, format!("{}: {e}", user.name));
                    }
                }
                None if mic_required => {
                    return refuse(schemes, format!("{}: SPNEGO mechListMIC required but not sent", user.name));
                }
                None => {}
            }
            let our_mic = (resp.mech_list_mic.is_some() || mic_required).then(|| session.sign(&mech_types).to_vec());
            let done = NegTokenResp {
                neg_state: Some(NegState::AcceptCompleted),
                supported_mech: None,
                response_token: None,
                mech_list_mic: our_mic,
            };
            pass(ctx, user, Some(&done), None)
        }
        _ => refuse(schemes, "SPNEGO continuation without a handshake on this connection".into()),
    }
}

fn ntlm_challenge(negotiate: &[u8], wrap: Wrap, ctx: Client<'_>, setup: &Authenticator, schemes: &[Scheme]) -> Verdict {
    if negotiate.get(8) != Some(&1) {
        ctx.auth.set(State::None);
        return refuse(schemes, "SPNEGO: expected an NTLM negotiate message".into());
    }
    match ntlm_leg::challenge(negotiate, ctx, setup) {
        Ok(sent) => {
            let first_leg = matches!(&wrap, Wrap::Spnego { mic_required: false, .. });
            let reply = NegTokenResp {
                neg_state: Some(NegState::AcceptIncomplete),
                // Named on the first reply only (RFC 4178 4.2.2).
                supported_mech: first_leg.then(|| Oid(spnego::NTLMSSP.to_vec())),
                response_token: Some(sent.message().to_vec()),
                mech_list_mic: None,
            };
            ctx.auth.set(State::Challenged(sent, wrap));
            challenge_answer(&reply)
        }
        Err(f) => {
            ctx.auth.set(State::None);
            f.verdict(schemes)
        }
    }
}

fn challenge_answer(reply: &NegTokenResp) -> Verdict {
    let value = format!("Negotiate {}", super::encode(&spnego::encode_resp(reply)));
    Verdict::Answer(unauthorized(&[], Some(&value)), Reason::Handshake)
}

/// The connection is now this user's; `done` (SPNEGO) or `raw` (bare Kerberos)
/// is the final token for the response.
fn pass(ctx: Client<'_>, user: Arc<User>, done: Option<&NegTokenResp>, raw: Option<&[u8]>) -> Verdict {
    ctx.auth.set(State::Authenticated(user.clone()));
    let token = match (done, raw) {
        (Some(d), _) => Some(spnego::encode_resp(d)),
        (None, Some(r)) if !r.is_empty() => Some(r.to_vec()),
        _ => None,
    };
    Verdict::Pass(user, token.and_then(|t| header("Negotiate", &t)))
}

/// The `acceptor_spn` naming the host the request was sent to: a ticket is
/// good only for the name the client asked for (one for autodiscover sent to
/// mail is refused, as IIS refuses it), so the host picks the one SPN kcd
/// checks the ticket against.
fn spn_for_host<'a>(spns: &'a [String], host: Option<&str>) -> Result<&'a str, String> {
    let Some(host) = host else {
        return Err("the request names no host (HTTP/1.0 without Host): no acceptor_spn can be chosen".into());
    };
    let host_of = |spn: &str| spn.split_once('/').map_or("", |(_, h)| h).to_owned();
    spns.iter().find(|spn| host_of(spn).eq_ignore_ascii_case(host)).map(String::as_str).ok_or_else(|| {
        format!(
            "the request was sent to {host}, and no acceptor_spn names it ([domain] acceptor_spn = {:?}); \
             add \"HTTP/{host}\" there and register it on the service account",
            spns
        )
    })
}

/// A Kerberos AP-REQ, accepted by MIT with gatehouse's keys for the
/// `acceptor_spn` of the request's host, under the listener's channel-binding policy. `mech` is the
/// OID the client used inside SPNEGO (echoed back), None for a raw token.
async fn kerberos(
    token: &[u8],
    mech: Option<Oid>,
    ctx: Client<'_>,
    setup: &Authenticator,
    schemes: &[Scheme],
) -> Verdict {
    let failed = |why: String| {
        ctx.auth.set(State::None);
        ctx.auth.set_negotiate_failed();
        refuse(schemes, why)
    };
    let (Some(delegator), Some(domain)) = (setup.delegator.clone(), setup.domain.as_ref()) else {
        return failed("Kerberos is not configured ([domain] keytab and service_principal)".into());
    };
    if domain.acceptor_spn.is_empty() {
        return failed("Kerberos is not configured ([domain] acceptor_spn)".into());
    }
    let spn = match spn_for_host(&domain.acceptor_spn, ctx.host) {
        Ok(spn) => spn,
        Err(why) => return failed(format!("Kerberos ticket refused: {why}")),
    };
    let policy = setup.ntlm.get(&*ctx.info.listener).map_or(ntlm::ChannelBindingPolicy::Off, |c| c.channel_binding);
    let bindings = match policy {
        ntlm::ChannelBindingPolicy::Off => None,
        _ => ctx.info.tls_end_point.clone(),
    };
    // Accepting talks to no KDC: it is local cryptography with the keys kcd
    // holds in memory, about as long as a TLS handshake's signature, with credentials
    // that kcd's background thread got beforehand (a token can never make
    // gatehouse ask the KDC for them). It runs here, on the connection's
    // worker; a hop to a blocking thread cost more than the work (measured:
    // bench/run.sh negotiate).
    // A keep-alive connection's next ticket is nearly always its last user's:
    // kcd then skips building delegation evidence it already has.
    let likely = ctx.auth.user().and_then(|u| u.principal.clone());
    let accepted = match delegator.accept_from(token, spn, bindings.as_deref(), likely.as_deref()) {
        Ok(a) => a,
        Err(e) => {
            let cause = match e.kind() {
                kcd::Kind::Replay => crate::metrics::Cause::Replay,
                kcd::Kind::BadBindings => crate::metrics::Cause::ChannelBinding,
                _ => crate::metrics::Cause::BadMessage,
            };
            ctx.auth.set(State::None);
            ctx.auth.set_negotiate_failed();
            return refuse_as(schemes, format!("Kerberos ticket refused: {e}"), cause);
        }
    };
    if policy == ntlm::ChannelBindingPolicy::Required && !accepted.channel_bound {
        ctx.auth.set(State::None);
        ctx.auth.set_negotiate_failed();
        let why = format!("{}: channel bindings required but not sent", accepted.client);
        return refuse_as(schemes, why, crate::metrics::Cause::ChannelBinding);
    }
    // alice@AD.TEST is ADTEST\alice, as NTLM would name her; a user of another
    // realm keeps the principal.
    let name = match accepted.client.rsplit_once('@') {
        Some((user, realm)) if realm.eq_ignore_ascii_case(&domain.realm) => format!("{}\\{user}", domain.netbios_name),
        _ => accepted.client.clone(),
    };
    let user = match User::new(name, Scheme::Negotiate, Some(accepted.client.clone())) {
        Ok(u) => {
            let logon = accepted.logon.map(|i| Arc::new(kcd::Logon::new(i)));
            // A user of another realm is known by their ticket alone: this
            // domain's KDC cannot answer S4U2Self for them.
            let ours = accepted.client.rsplit_once('@').is_some_and(|(_, r)| r.eq_ignore_ascii_case(&domain.realm));
            let u = if ours { u.of_domain(&domain.realm) } else { u };
            Arc::new(User { logon, ..u })
        }
        Err(why) => return failed(why),
    };
    match mech {
        Some(mech) => {
            let done = NegTokenResp {
                neg_state: Some(NegState::AcceptCompleted),
                supported_mech: Some(mech),
                response_token: (!accepted.mutual.is_empty()).then_some(accepted.mutual),
                mech_list_mic: None,
            };
            pass(ctx, user, Some(&done), None)
        }
        None => pass(ctx, user, None, Some(&accepted.mutual)),
    }
}

#[cfg(test)]
mod tests {
    use super::spn_for_host;

    #[test]
    fn the_request_host_picks_the_acceptor_spn() {
        let spns = vec!["HTTP/mail.corp.example".to_string(), "HTTP/Autodiscover.corp.example".to_string()];
        assert_eq!(spn_for_host(&spns, Some("mail.corp.example")), Ok("HTTP/mail.corp.example"));
        assert_eq!(spn_for_host(&spns, Some("autodiscover.corp.example")), Ok("HTTP/Autodiscover.corp.example"));
        let other = spn_for_host(&spns, Some("owa.corp.example")).unwrap_err();
        assert!(other.contains("sent to owa.corp.example") && other.contains("HTTP/owa.corp.example"), "{other}");
        assert!(spn_for_host(&spns, None).unwrap_err().contains("names no host"));
        // A prefix or suffix of a listed host is another host.
        assert!(spn_for_host(&spns, Some("mail.corp")).is_err());
        assert!(spn_for_host(&spns, Some("xmail.corp.example")).is_err());
    }
}
