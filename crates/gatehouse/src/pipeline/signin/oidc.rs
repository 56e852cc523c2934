//! Signing in at an OpenID provider: `/.gatehouse/oidc/start` sends the
//! browser there, the provider's redirect path (`[[idp]] redirect_path`)
//! brings it back with a code.
//!
//! The sign-in's `state` is the key of what gatehouse keeps for it (nonce,
//! PKCE verifier, return address) and the value of a short-lived cookie of
//! the browser that started it: a callback is taken only with the same
//! state in the cookie (compared in constant time; a link with someone
//! else's code does not sign this browser in), and only once. A provider
//! that cannot be asked gives a 503 page; nobody is signed in.

use http::header::{self, HeaderMap, HeaderValue};
use http::StatusCode;

use super::{see_other, Here};
use crate::auth::oidc::{domain_user, Unmapped};
use crate::config::Scheme;
use crate::oidc::{Failed, Provider};
use crate::response_body::ResponseBody;
use crate::telemetry::AccessRecord;

/// The browser's cookie naming its sign-in in progress.
pub const STATE_COOKIE: &str = "__Host-gatehouse-oidc";
const CLEAR: &str = "__Host-gatehouse-oidc=; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=0";

impl Here<'_> {
    /// The providers whose redirect path is `page` (below `/.gatehouse`).
    pub(super) fn callback_of(&self, page: &str) -> Option<Vec<&std::sync::Arc<Provider>>> {
        let full = format!("/.gatehouse{page}");
        let found: Vec<_> = self.auth.providers().iter().filter(|p| p.settings.redirect_path == full).collect();
        (!found.is_empty()).then_some(found)
    }

    fn provider_page(&self, status: StatusCode, heading: &str, text: &str) -> http::Response<ResponseBody> {
        let root = self.return_to(None);
        let mut r = crate::signin_page::notice(status, &self.look(), heading, text, Some((&root, "Try again")));
        if status == StatusCode::SERVICE_UNAVAILABLE {
            r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("30"));
        }
        r
    }

    fn unreachable(&self, p: &Provider, why: &str, record: &mut AccessRecord) -> http::Response<ResponseBody> {
        tracing::error!(client = %self.conn.info.peer, idp = %p.name(), cause = %why, "sign-in provider unreachable");
        record.set_error(format!("idp {} unreachable: {why}", p.name()));
        let text = format!(
            "The sign-in service {} cannot be reached right now, so nobody can sign in here. Try again shortly.",
            p.name()
        );
        self.provider_page(StatusCode::SERVICE_UNAVAILABLE, "Sign-in unavailable", &text)
    }

    pub(super) async fn oidc_start(&self, query: &str, record: &mut AccessRecord) -> http::Response<ResponseBody> {
        let asked = websession::form::Form::parse(query.as_bytes()).ok();
        let get = |k| asked.as_ref().and_then(|f| f.get(k));
        let Some(p) = get("idp").and_then(|n| self.auth.provider(n)) else {
            record.set_error("oidc start: no such provider");
            return self.provider_page(
                StatusCode::NOT_FOUND,
                "Unknown sign-in service",
                "This sign-in link names no sign-in service of this site.",
            );
        };
        // Only a provider some site of this host offers.
        let offered = self.generation.config.sites.iter().any(|s| {
            &*s.listener == self.conn.info.listener.as_ref()
                && (s.hosts.is_empty() || s.hosts.iter().any(|h| h == self.host))
                && s.offers(Scheme::Oidc(p.index))
        });
        if !offered {
            record.set_error(format!("oidc start: {} is not offered on this host", p.name()));
            return self.provider_page(
                StatusCode::NOT_FOUND,
                "Unknown sign-in service",
                "This sign-in link names no sign-in service of this site.",
            );
        }
        let return_to = self.return_to(get("return"));
        match p.begin(self.raw_host, &return_to).await {
            Ok((url, state)) => {
                let mut r = see_other(&url);
                let cookie = format!("{STATE_COOKIE}={state}; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=600");
                if let Ok(v) = HeaderValue::from_str(&cookie) {
                    r.headers_mut().append(header::SET_COOKIE, v);
                }
                r
            }
            Err(Failed::Unreachable(why)) => self.unreachable(p, &why, record),
            Err(Failed::Refused(why)) => {
                // The provider answered, with something unusable: the
                // administrator's to fix; nobody signs in meanwhile.
                self.unreachable(p, &format!("discovery refused: {why}"), record)
            }
        }
    }

    pub(super) async fn oidc_callback(
        &self,
        headers: &HeaderMap,
        query: &str,
        record: &mut AccessRecord,
    ) -> http::Response<ResponseBody> {
        let form = websession::form::Form::parse(query.as_bytes()).ok();
        let get = |k| form.as_ref().and_then(|f| f.get(k)).unwrap_or("");
        let (state, code, error) = (get("state"), get("code"), get("error"));
        let refuse = |this: &Self, record: &mut AccessRecord, cause: String, heading: &str, text: &str| {
            tracing::warn!(client = %this.conn.info.peer, cause = %cause, "provider sign-in refused");
            record.set_error(cause);
            let mut r = this.provider_page(StatusCode::FORBIDDEN, heading, text);
            r.headers_mut().append(header::SET_COOKIE, HeaderValue::from_static(CLEAR));
            r
        };
        let again = "This sign-in did not start in this browser, was already used, or has expired. Sign in again.";
        let cookie =
            websession::cookie::values(headers.get_all(header::COOKIE).iter().map(HeaderValue::as_bytes), STATE_COOKIE);
        let bound = {
            use subtle::ConstantTimeEq;
            !state.is_empty()
                && cookie.iter().any(|c| c.len() == state.len() && bool::from(c.as_bytes().ct_eq(state.as_bytes())))
        };
        if !bound {
            let cause = if cookie.is_empty() { "no sign-in state cookie" } else { "state is not this browser's" };
            return refuse(self, record, format!("oidc callback: {cause}"), "Sign in again", again);
        }
        let path_providers = self.auth.providers();
        let Some(p) = path_providers.iter().find(|p| p.has(state)) else {
            return refuse(
                self,
                record,
                "oidc callback: state unknown, used or expired (replayed?)".into(),
                "Sign in again",
                again,
            );
        };
        let Some(pending) = p.take(state) else {
            return refuse(self, record, "oidc callback: state expired".into(), "Sign in again", again);
        };
        if pending.host != self.raw_host {
            return refuse(
                self,
                record,
                "oidc callback: on another host than it started".into(),
                "Sign in again",
                again,
            );
        }
        if !error.is_empty() {
            let words: String = error.chars().filter(|c| c.is_ascii_graphic()).take(60).collect();
            let text = format!("{} did not sign you in ({words}).", p.name());
            return refuse(
                self,
                record,
                format!("oidc callback: provider {} answered error {words}", p.name()),
                "Not signed in",
                &text,
            );
        }
        // RFC 9207: where the provider names itself, it must be this one.
        let iss = get("iss");
        if !iss.is_empty() && iss != p.settings.issuer {
            return refuse(
                self,
                record,
                "oidc callback: iss is another provider's (mix-up)".into(),
                "Sign in again",
                again,
            );
        }
        if code.is_empty() {
            return refuse(self, record, "oidc callback: no code".into(), "Sign in again", again);
        }
        let signed = match p.finish(&pending, code).await {
            Ok(s) => s,
            Err(Failed::Unreachable(why)) => return self.unreachable(p, &why, record),
            Err(Failed::Refused(why)) => {
                let text = format!("The sign-in at {} could not be accepted here. Sign in again; if it happens again, ask your help desk.", p.name());
                return refuse(self, record, format!("oidc callback ({}): {why}", p.name()), "Not signed in", &text);
            }
        };
        match domain_user(self.auth, p, &signed.claims, Scheme::Oidc(p.index), Some(signed.id_token)).await {
            Ok(user) => {
                let mut r = self.signed_in(headers, user, false, &pending.return_to, record).await;
                r.headers_mut().append(header::SET_COOKIE, HeaderValue::from_static(CLEAR));
                r
            }
            Err(u) => {
                let status = match u {
                    Unmapped::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
                    _ => StatusCode::FORBIDDEN,
                };
                tracing::warn!(client = %self.conn.info.peer, idp = %p.name(), cause = %u.cause(), "provider's user not let in");
                record.set_error(u.cause());
                let mut r = self.provider_page(status, "No access with this account", &u.words(p.name()));
                r.headers_mut().append(header::SET_COOKIE, HeaderValue::from_static(CLEAR));
                r
            }
        }
    }
}
