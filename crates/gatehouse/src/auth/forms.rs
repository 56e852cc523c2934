//! `Forms`: browsers sign in on gatehouse's own page and carry a session
//! cookie; Outlook, ActiveSync and scripts keep the site's other schemes.
//!
//! A request with no usable credentials, on a site that offers Forms to this
//! client, is judged here: a live session cookie signs it in as the session's
//! user (the same `User` a password check made, so access rules and KCD apply
//! as to an NTLM logon); otherwise a *browser* (it accepts `text/html`, or
//! its agent is in `[forms] browser_agents`) asking with GET or HEAD is sent
//! to the sign-in page (303), and everyone else gets the 401 of the other
//! schemes.
//!
//! The cookie is a sealed [`websession::Ticket`] (the server-side session's
//! id, issued, ends, public), sealed for its scope: the host (`__Host-`
//! cookie) or `[forms] cookie_domain` (`__Secure-` cookie with `Domain=`).
//! A cookie that does not open, has ended, or names no live session in the
//! store signs nobody in; the reasons are logged, the value never is.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Response, StatusCode};

use super::basic::{self, Refusal};
use super::{Authenticator, Reason, User, Verdict};
use crate::config::{self, Scheme};
use crate::response_body::ResponseBody;
use crate::session;

/// The session cookie: one per host, or one for the cookie domain.
pub const HOST_COOKIE: &str = "__Host-gatehouse";
pub const DOMAIN_COOKIE: &str = "__Secure-gatehouse";
/// The pre-sign-in cookie the CSRF token is bound to; always per host.
pub const PRE_COOKIE: &str = "__Host-gatehouse-pre";
pub const SIGN_IN: &str = "/.gatehouse/signin";
/// The second factor's page.
pub const SECOND_STEP: &str = "/.gatehouse/mfa";

pub type Sessions = Arc<dyn session::Store<Arc<User>>>;

/// The sign-in page's settings and state, as one configuration generation
/// has them (the sessions and attempt counts outlive reloads).
pub struct Forms {
    pub settings: config::Forms,
    pub sessions: Sessions,
    pub attempts: Arc<super::rate::Attempts>,
    /// The second factor's settings and store, where `[mfa]` is configured
    /// (and its store opened at start).
    pub mfa: Option<(config::Mfa, Arc<dyn crate::mfa::Store>)>,
    pub counters: Arc<crate::mfa::Counters>,
    /// The second factor's own failure count.
    pub second_lockout: Arc<super::Lockout>,
    /// Told of each password change sent to kpasswd (the metrics' KDC counts).
    pub kdc: Arc<dyn kcd::KdcObserver>,
}

/// What a request's session cookie says.
pub enum Cookie {
    /// A live session, when it passed a second factor (if it did), and
    /// whether it is a public computer's.
    Session(Arc<User>, Option<u64>, bool),
    /// No session cookie.
    Absent,
    /// Cookies that sign nobody in, and why (for the log).
    Refused { why: String, grade: Grade },
    /// The session store could not be asked.
    Unavailable(String),
}

/// The last session cookie that opened on a connection, with the keys and
/// the scope it opened under: the same bytes again (compared in constant
/// time) under the same keys (a reload with a key removed makes new ones)
/// need no second decryption.
#[derive(Default)]
pub struct Opened(std::sync::Mutex<Option<OpenedCookie>>);

struct OpenedCookie {
    keys: Arc<websession::Keys>,
    scope: Vec<u8>,
    value: Vec<u8>,
    ticket: websession::Ticket,
}

impl Opened {
    fn get(&self, keys: &Arc<websession::Keys>, scope: &[u8], value: &str) -> Option<websession::Ticket> {
        use subtle::ConstantTimeEq;
        let held = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let c = held.as_ref()?;
        let same = Arc::ptr_eq(&c.keys, keys) && c.scope == scope && bool::from(c.value.ct_eq(value.as_bytes()));
        same.then(|| c.ticket.clone())
    }

    fn put(&self, keys: &Arc<websession::Keys>, scope: &[u8], value: &str, ticket: &websession::Ticket) {
        let mut held = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if held.as_ref().is_some_and(|c| c.value == value.as_bytes() && Arc::ptr_eq(&c.keys, keys)) {
            return;
        }
        *held = Some(OpenedCookie {
            keys: keys.clone(),
            scope: scope.to_vec(),
            value: value.as_bytes().to_vec(),
            ticket: ticket.clone(),
        });
    }
}

/// How much a refused cookie says about its sender, for the log's level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Grade {
    /// Signed out, revoked, idle or past its lifetime: every day.
    Ended,
    /// Sealed with a key no longer in the key file: after a rotation.
    OldKey,
    /// Does not verify: changed, cut, or made up.
    Forged,
}

/// A new session's cookie.
pub struct SignedIn {
    pub set_cookie: HeaderValue,
}

impl Forms {
    fn cookie_name(&self) -> &'static str {
        if self.settings.cookie_domain.is_some() {
            DOMAIN_COOKIE
        } else {
            HOST_COOKIE
        }
    }

    /// What a session cookie is sealed for: its name and its host or domain,
    /// so that one sealed for one host is refused by another.
    fn scope(&self, host: &str) -> Vec<u8> {
        match &self.settings.cookie_domain {
            Some(d) => format!("{DOMAIN_COOKIE}|domain:{d}").into_bytes(),
            None => format!("{HOST_COOKIE}|host:{host}").into_bytes(),
        }
    }

    /// The session the request's cookies name, if one is live. `host`: the
    /// request's host without its port. Each use restarts the session's idle
    /// time. `opened`: the connection's last cookie that opened, so that a
    /// keep-alive browser's next requests skip the AEAD (the store is asked
    /// every time: a revoked session ends at once).
    pub async fn session(&self, headers: &HeaderMap, host: &str, opened: &Opened) -> Cookie {
        let values = websession::cookie::values(
            headers.get_all(header::COOKIE).iter().map(HeaderValue::as_bytes),
            self.cookie_name(),
        );
        if values.is_empty() {
            return Cookie::Absent;
        }
        let scope = self.scope(host);
        let now = SystemTime::now();
        let mut refused = Vec::new();
        let mut grade = Grade::Ended;
        for value in values {
            let known = opened.get(&self.settings.keys, &scope, value);
            let ticket = match known
                .map(Ok)
                .unwrap_or_else(|| self.settings.keys.open(&scope, value).and_then(|p| websession::Ticket::decode(&p)))
            {
                Ok(t) => {
                    opened.put(&self.settings.keys, &scope, value, &t);
                    t
                }
                Err(why) => {
                    grade =
                        grade.max(if why == websession::Refused::UnknownKey { Grade::OldKey } else { Grade::Forged });
                    refused.push(format!("session cookie {why}"));
                    continue;
                }
            };
            if !ticket.live_at(unix(now)) {
                refused.push("session cookie past its lifetime".into());
                continue;
            }
            match self.sessions.touch(ticket.id, now).await {
                Ok(Some(record)) => return Cookie::Session(record.user, record.second_factor, record.public),
                Ok(None) => refused.push("session ended (signed out, revoked, idle or replaced)".into()),
                Err(e) => return Cookie::Unavailable(e.0),
            }
        }
        Cookie::Refused { why: refused.join("; "), grade }
    }

    /// A new session for `user` and its cookie (`Set-Cookie`).
    pub async fn open(
        &self,
        user: Arc<User>,
        public: bool,
        host: &str,
        second_factor: Option<u64>,
    ) -> Result<SignedIn, String> {
        let (idle, life) = match public {
            true => (self.settings.public_idle, self.settings.public_lifetime),
            false => (self.settings.idle, self.settings.lifetime),
        };
        let mut id = [0u8; 32];
        let mut nonce = [0u8; 24];
        getrandom::fill(&mut id)
            .and_then(|_| getrandom::fill(&mut nonce))
            .map_err(|e| format!("no randomness: {e}"))?;
        let created = SystemTime::now();
        let ticket = websession::Ticket { id, issued: unix(created), ends: unix(created + life), public };
        let record = session::Record {
            who: user.name.clone(),
            user: user.clone(),
            created,
            ends: created + life,
            idle,
            public,
            second_factor,
        };
        self.sessions.insert(id, record).await.map_err(|e| e.0)?;
        let sealed = self.settings.keys.seal(&self.scope(host), &ticket.encode(), nonce);
        // A public computer's cookie ends with the browser; a private one's
        // lives as long as the session may.
        let max_age = (!public).then_some(life);
        let set_cookie = self.cookie(&sealed, max_age)?;
        Ok(SignedIn { set_cookie })
    }

    /// Ends the sessions the request's cookies name (logoff, or a new sign-in
    /// replacing them); the user of the first, if any was live.
    pub async fn close(&self, headers: &HeaderMap, host: &str) -> Option<Arc<User>> {
        let values = websession::cookie::values(
            headers.get_all(header::COOKIE).iter().map(HeaderValue::as_bytes),
            self.cookie_name(),
        );
        let scope = self.scope(host);
        let mut who = None;
        for value in values {
            let Ok(ticket) = self.settings.keys.open(&scope, value).and_then(|p| websession::Ticket::decode(&p)) else {
                continue;
            };
            if let Ok(Some(record)) = self.sessions.touch(ticket.id, SystemTime::now()).await {
                who.get_or_insert(record.user);
            }
            let _ = self.sessions.remove(ticket.id).await;
        }
        who
    }

    /// `Set-Cookie` for the session cookie with this value.
    fn cookie(&self, value: &str, max_age: Option<Duration>) -> Result<HeaderValue, String> {
        let mut c = format!("{}={value}; Path=/; Secure; HttpOnly; SameSite=Lax", self.cookie_name());
        if let Some(d) = &self.settings.cookie_domain {
            c.push_str(&format!("; Domain={d}"));
        }
        if let Some(age) = max_age {
            c.push_str(&format!("; Max-Age={}", age.as_secs()));
        }
        HeaderValue::from_str(&c).map_err(|_| "unusable cookie".to_owned())
    }

    /// `Set-Cookie` that removes the session cookie.
    pub fn clear_cookie(&self) -> HeaderValue {
        self.cookie("", Some(Duration::ZERO))
            .unwrap_or_else(|_| HeaderValue::from_static("__Host-gatehouse=; Max-Age=0"))
    }

    /// Whether the client is a browser that can be shown the sign-in page.
    pub fn is_browser(&self, headers: &HeaderMap) -> bool {
        if headers.get_all(header::ACCEPT).iter().any(|v| websession::accept::wants_html(v.as_bytes())) {
            return true;
        }
        let agent = headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok());
        agent.is_some_and(|ua| self.settings.browser_agents.iter().any(|g| super::glob_match(g, ua)))
    }
}

/// Seconds since the epoch.
pub fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// A request with no usable `Authorization` on a site that offers Forms to
/// this client: its session, the sign-in page, or None (the caller answers
/// with the other schemes' 401).
/// `needs_mfa`: the site requires a second factor from this client; a
/// session that passed only the password is sent to the second step (a
/// browser's GET) or refused with the other schemes' 401.
/// `sign_in`: where a browser without a session goes (the sign-in page, or
/// the provider's start).
pub async fn judge(
    forms: &Forms,
    headers: &HeaderMap,
    ctx: super::Client<'_>,
    needs_mfa: bool,
    sign_in: &str,
) -> Option<Verdict> {
    let host = ctx.host.unwrap_or("");
    let cookie = forms.session(headers, host, &ctx.auth.opened).await;
    let (why, grade) = match cookie {
        Cookie::Session(user, second, _) if second.is_some() || !needs_mfa => return Some(Verdict::Pass(user, None)),
        // The provider is where this user's second factor is asked for.
        Cookie::Session(user, ..) if user.federated.is_some() && forms.mfa.is_none() => {
            let idp = user.federated.as_ref().map_or("", |f| f.idp_name.as_str());
            let why = format!(
                "This site requires a second factor. Your sign-in at {idp} used none: sign out, then sign in at {idp} with multi-factor authentication."
            );
            let look = crate::signin_page::Look { title: &forms.settings.title, logo: forms.settings.logo.is_some() };
            let page = crate::signin_page::notice(
                StatusCode::FORBIDDEN,
                &look,
                "A second factor is required",
                &why,
                Some(("/.gatehouse/logoff", "Sign out")),
            );
            return Some(Verdict::Answer(
                Box::new(page),
                Reason::Refused(format!("{}: no mfa in amr at {idp}", user.name), crate::metrics::Cause::DeniedByRule),
            ));
        }
        Cookie::Session(user, ..) => {
            let bodiless = matches!(*ctx.method, Method::GET | Method::HEAD);
            if !bodiless || !forms.is_browser(headers) {
                tracing::info!(client = %ctx.info.peer, user = %user.name, "session without a second factor on a site that requires one; other schemes offered");
                return None;
            }
            let location = format!("{SECOND_STEP}?return={}", websession::form::encode(ctx.target));
            let resp = see_other(&location, b"Second step first.\n");
            return Some(Verdict::Answer(Box::new(resp), Reason::Handshake));
        }
        Cookie::Unavailable(why) => return Some(super::service_unavailable(format!("session store: {why}"))),
        Cookie::Absent => (None, Grade::Ended),
        Cookie::Refused { why, grade } => (Some(why), grade),
    };
    let bodiless = matches!(*ctx.method, Method::GET | Method::HEAD);
    if !bodiless || ctx.host.is_none() || !forms.is_browser(headers) {
        if let Some(why) = why {
            tracing::info!(client = %ctx.info.peer, cause = %why, "session cookie refused; other schemes offered");
        }
        return None;
    }
    let mut resp = see_other(sign_in, b"Sign in first.\n");
    if why.is_some() {
        resp.headers_mut().append(header::SET_COOKIE, forms.clear_cookie());
    }
    let reason = match (why, grade) {
        // A cookie that does not verify is someone's doing: say so.
        (Some(why), Grade::Forged) => Reason::Refused(why, crate::metrics::Cause::BadMessage),
        (Some(why), Grade::OldKey) => {
            tracing::info!(client = %ctx.info.peer, cause = %why, "session cookie refused; sent to sign in");
            Reason::Handshake
        }
        (Some(why), Grade::Ended) => {
            tracing::debug!(client = %ctx.info.peer, cause = %why, "session cookie refused; sent to sign in");
            Reason::Handshake
        }
        (None, _) => Reason::Handshake,
    };
    Some(Verdict::Answer(Box::new(resp), reason))
}

/// A 303 to `location` with a short text body.
fn see_other(location: &str, text: &'static [u8]) -> Response<ResponseBody> {
    let mut resp = Response::new(ResponseBody::local(bytes::Bytes::from_static(text)));
    *resp.status_mut() = StatusCode::SEE_OTHER;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(v) = HeaderValue::from_str(location) {
        h.insert(header::LOCATION, v);
    }
    resp
}

/// Signs a user in with the sign-in page's name and password, checked as
/// Basic's are (lockout included).
pub async fn sign_in(
    setup: &Authenticator,
    typed: &str,
    password: &str,
    client: std::net::IpAddr,
) -> Result<Arc<User>, Refusal> {
    basic::sign_in(typed, password, client, setup, Scheme::Forms).await
}

/// Why a password was not changed.
#[derive(Debug)]
pub enum ChangeRefused {
    /// The current password (or the name, or the lockout) stopped it.
    Old(Refusal),
    /// The domain refused the new password, in its words (too short, used
    /// before): shown to the user.
    Policy(String),
    /// No KDC answered.
    Unavailable(String),
    /// Passwords are not changed here: they are checked by `[accounts]`, not
    /// by the KDC.
    NotHere,
}

/// Whether the password page can change passwords: they are checked by the
/// KDC, which the change-password protocol talks to.
pub fn can_change_passwords(setup: &Authenticator) -> bool {
    setup.basic_by_kdc && setup.domain.is_some()
}

/// Changes a user's password through the domain (the Kerberos
/// change-password protocol, with the current password), behind the same
/// lockout as a sign-in: a wrong current password counts.
pub async fn change_password(
    setup: &Authenticator,
    typed: &str,
    old: &str,
    new: &str,
    client: std::net::IpAddr,
) -> Result<(), ChangeRefused> {
    let Some(user) = basic::kdc_user(typed, setup).map_err(ChangeRefused::Old)? else {
        return Err(ChangeRefused::NotHere);
    };
    if old.is_empty() {
        return Err(ChangeRefused::Old(Refusal::Wrong("no current password".into())));
    }
    let limits = &setup.lockout_limits;
    setup.lockout.allowed(typed, client, limits).map_err(|why| ChangeRefused::Old(Refusal::Throttled(why)))?;
    let (old, new) = (old.to_owned(), new.to_owned());
    let observer = setup.forms.as_ref().map(|f| f.kdc.clone());
    let changed = tokio::task::spawn_blocking(move || {
        let started = std::time::Instant::now();
        let changed = kcd::change_password(&user, &old, &new);
        if let Some(o) = observer {
            o.kdc(kcd::KdcRequest::ChangePassword, started.elapsed(), changed.as_ref().err().map(|e| e.code_name()));
        }
        changed
    })
    .await
    .map_err(|e| ChangeRefused::Unavailable(format!("the password change did not run: {e}")))?;
    match changed {
        Ok(kcd::Changed::Done) => {
            setup.lockout.succeeded(typed, limits);
            Ok(())
        }
        // The current password was right; the new one is the domain's to judge.
        Ok(kcd::Changed::Refused { words, .. }) => {
            setup.lockout.succeeded(typed, limits);
            Err(ChangeRefused::Policy(words))
        }
        Err(e) if e.is_unreachable() => Err(ChangeRefused::Unavailable(e.to_string())),
        Err(e) => {
            let (evidence, refusal) = basic::kdc_refusal(&e);
            setup.lockout.failed(typed, client, evidence, limits);
            Err(ChangeRefused::Old(refusal))
        }
    }
}
