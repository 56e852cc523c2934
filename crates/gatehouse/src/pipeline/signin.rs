//! The sign-in stage: gatehouse's own pages under `/.gatehouse/`, answered
//! before any site is routed, on every host a site offering Forms publishes
//! on this listener (elsewhere: 404, and the path never reaches a backend).
//!
//! - `signin`: GET shows the form (and sets the pre-sign-in cookie its CSRF
//!   token is bound to); POST checks the token, the per-address attempt
//!   limit, then the name and password as Basic's are checked, and on success
//!   replaces any session the browser had with a new one (a new id: no
//!   fixation) and sends the browser back where it first asked to go.
//! - `password`: the same, changing an expired password through the domain.
//! - `logoff` (and a preset's own logoff path, such as OWA's): ends the
//!   session in the store, clears the cookie, shows `signedout`.
//! - `mfa`, `mfa/enrol`, `mfa/factors`: the second step (`second_step`).
//! - `style.css`, `logo`, `passkey.js`: the page's stylesheet, the
//!   configured logo, and the passkey buttons' script (the one script any
//!   page runs, on the second step's pages only).
//!
//! Every POST needs the CSRF token; the return address is a path on this
//! host that routes to a site of this listener, or the site's root. Nothing
//! a client typed (password, cookie, token) is logged; the name is, escaped
//! by the log's writer.

use std::sync::Arc;
use std::time::Duration;

use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use super::failure::Failure;
use crate::auth::forms::{self, Forms, PRE_COOKIE};
use crate::auth::{Authenticator, Refusal};
use crate::connection::Connection;
use crate::generation::Generation;
use crate::response_body::ResponseBody;
use crate::signin_page::{self, Look};
use crate::telemetry::AccessRecord;

mod oidc;
mod second_step;

const PREFIX: &[u8] = b"/.gatehouse";
/// The sign-in form's body is a few hundred bytes.
const MAX_BODY: usize = websession::form::MAX_LEN;

/// Whether the request is for gatehouse's own pages: its path, as routing
/// reads it (decoded, case folded), is `/.gatehouse` or below.
pub fn reserved<B>(req: &Request<B>) -> bool {
    // Every request asks: most are out at their first segment's first byte,
    // which for ours is `.` or the `%` of `%2e` once slashes are skipped.
    let raw = req.uri().path().as_bytes();
    if !matches!(raw.iter().find(|b| **b != b'/'), Some(b'.' | b'%')) {
        return false;
    }
    let Ok(path) = httpguard::routing_path(raw) else { return false };
    path.len() >= PREFIX.len()
        && path[..PREFIX.len()].eq_ignore_ascii_case(PREFIX)
        && matches!(path.get(PREFIX.len()), None | Some(b'/'))
}

/// Whether the request routed to `site` is that site's own sign-out link
/// (OWA's `/owa/logoff.owa` under the Exchange preset).
pub fn is_logoff<B>(req: &Request<B>, site: &str, generation: &Generation) -> bool {
    let Some(forms) = generation.auth.forms() else { return false };
    let path = req.uri().path();
    forms.settings.logoff_paths.iter().any(|(s, p)| s == site && p.eq_ignore_ascii_case(path))
}

/// One request for `/.gatehouse/...`.
pub async fn serve(
    req: Request<Incoming>,
    conn: &Arc<Connection>,
    generation: &Generation,
    record: &mut AccessRecord,
) -> Result<Response<ResponseBody>, Failure> {
    record.set_site(".gatehouse");
    let Some(forms) = generation.auth.forms() else { return Err(Failure::NotFound) };
    let raw_host = super::routing::request_host(&req)?.ok_or(Failure::NotFound)?;
    let host = crate::route::host_name(&raw_host);
    // Only where a site signs browsers in with these pages, and over TLS.
    if !conn.info.tls || !serves_forms(generation, &conn.info.listener, &host) {
        return Err(Failure::NotFound);
    }
    let here = Here { forms, auth: &generation.auth, generation, conn, raw_host: &raw_host, host: &host };
    // The page as routing reads the path (decoded, `//` folded): what
    // `reserved` matched.
    let routed = httpguard::routing_path(req.uri().path().as_bytes()).unwrap_or_default();
    let page = String::from_utf8_lossy(routed.get(PREFIX.len()..).unwrap_or_default()).to_ascii_lowercase();
    let (method, query) = (req.method().clone(), req.uri().query().unwrap_or("").to_owned());
    let get = matches!(method, Method::GET | Method::HEAD);
    match (page.as_str(), get, method == Method::POST) {
        ("/signin" | "/signin/", true, _) => Ok(here.sign_in_page(req.headers(), &query)),
        ("/signin" | "/signin/", _, true) => here.sign_in(req, record).await,
        ("/password", true, _) => Ok(here.password_page(req.headers(), &query)),
        ("/password", _, true) => here.change_password(req, record).await,
        ("/logoff" | "/logoff/", true, _) | ("/logoff" | "/logoff/", _, true) => {
            Ok(here.log_off(req.headers(), record).await)
        }
        ("/signedout", true, _) => Ok(here.signed_out()),
        ("/oidc/start", true, _) => Ok(here.oidc_start(&query, record).await),
        (p, true, _) if here.callback_of(p).is_some() => Ok(here.oidc_callback(req.headers(), &query, record).await),
        ("/mfa", true, _) if forms.mfa.is_some() => here.second_step_page(req.headers(), &query, record).await,
        ("/mfa", _, true) if forms.mfa.is_some() => here.second_step(req, record).await,
        ("/mfa/enrol", true, _) if forms.mfa.is_some() => here.enrol_page(req.headers(), &query, record).await,
        ("/mfa/enrol", _, true) if forms.mfa.is_some() => here.enrol(req, record).await,
        ("/mfa/factors", true, _) if forms.mfa.is_some() => here.factors_page(req.headers(), record).await,
        ("/mfa/factors", _, true) if forms.mfa.is_some() => here.remove_factor(req, record).await,
        ("/passkey.js", true, _) if forms.mfa.is_some() => Ok(signin_page::passkey_script()),
        ("/style.css", true, _) => Ok(signin_page::stylesheet()),
        ("/logo", true, _) => match &forms.settings.logo {
            Some(logo) => Ok(signin_page::logo(&logo.bytes, logo.content_type)),
            None => Err(Failure::NotFound),
        },
        ("" | "/", true, _) => Ok(see_other(&format!("{}?{query}", forms::SIGN_IN))),
        (_, false, false) => Err(Failure::MethodNotAllowed),
        _ => Err(Failure::NotFound),
    }
}

/// A site's own logoff path: as `/.gatehouse/logoff`.
pub async fn log_off(
    req: Request<Incoming>,
    conn: &Arc<Connection>,
    generation: &Generation,
    record: &mut AccessRecord,
) -> Result<Response<ResponseBody>, Failure> {
    let Some(forms) = generation.auth.forms() else { return Err(Failure::NotFound) };
    let raw_host = super::routing::request_host(&req)?.ok_or(Failure::NotFound)?;
    let host = crate::route::host_name(&raw_host);
    let here = Here { forms, auth: &generation.auth, generation, conn, raw_host: &raw_host, host: &host };
    Ok(here.log_off(req.headers(), record).await)
}

/// Removes gatehouse's own cookies (the session's, the pre-sign-in one) from
/// a request before it goes to a backend: a session cookie in a backend's
/// logs would sign anyone who reads them in.
pub fn strip_own_cookies(headers: &mut HeaderMap) {
    if !headers.contains_key(header::COOKIE) {
        return;
    }
    let ours = [forms::HOST_COOKIE, forms::DOMAIN_COOKIE, PRE_COOKIE, oidc::STATE_COOKIE];
    let kept: Vec<HeaderValue> = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| websession::cookie::without(v.as_bytes(), &ours))
        .filter_map(|v| HeaderValue::from_bytes(&v).ok())
        .collect();
    headers.remove(header::COOKIE);
    for v in kept {
        headers.append(header::COOKIE, v);
    }
}

/// Whether a site of this listener and host signs browsers in with a page
/// and the session cookie (Forms or OIDC).
fn serves_forms(generation: &Generation, listener: &str, host: &str) -> bool {
    generation.config.sites.iter().any(|s| {
        s.listener == listener
            && s.offers_browser_sign_in()
            && (s.hosts.is_empty() || s.hosts.iter().any(|h| h == host))
    })
}

/// One request's view of the pages: the configuration and the host.
struct Here<'a> {
    forms: &'a Forms,
    auth: &'a Authenticator,
    generation: &'a Generation,
    conn: &'a Arc<Connection>,
    /// Host as sent, port included (return addresses are compared with it).
    raw_host: &'a str,
    /// Without the port, lower case.
    host: &'a str,
}

/// What the sign-in and password forms post.
struct Posted {
    form: websession::form::Form,
    /// The browser's pre-sign-in cookie, if it has one.
    pre: Option<String>,
}

impl Here<'_> {
    fn look(&self) -> Look<'_> {
        Look { title: &self.forms.settings.title, logo: self.forms.settings.logo.is_some() }
    }

    fn csrf_scope(&self) -> Vec<u8> {
        format!("pre|{}", self.host).into_bytes()
    }

    /// The browser's pre-sign-in cookie, or a new one (and its `Set-Cookie`).
    fn pre_cookie(&self, headers: &HeaderMap) -> (String, Option<HeaderValue>) {
        if let Some(v) = pre_cookie_of(headers) {
            return (v, None);
        }
        let mut random = [0u8; 32];
        let _ = getrandom::fill(&mut random);
        use base64::Engine;
        let value = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random);
        let set =
            HeaderValue::from_str(&format!("{PRE_COOKIE}={value}; Path=/; Secure; HttpOnly; SameSite=Strict")).ok();
        (value, set)
    }

    /// Where to go after signing in: `raw` if it is a path on this host that
    /// routes to a site of this listener (not to these pages), else the root
    /// of the first site here that signs browsers in.
    fn return_to(&self, raw: Option<&str>) -> String {
        let listener = &self.conn.info.listener;
        if let Some(path) = raw.and_then(|r| websession::target::return_path(r, self.raw_host)) {
            let only_path = path.split('?').next().unwrap_or("/");
            if let Ok(routed) = httpguard::routing_path(only_path.as_bytes()) {
                let ours = routed.len() >= PREFIX.len() && routed[..PREFIX.len()].eq_ignore_ascii_case(PREFIX);
                if !ours && self.generation.routes.find(listener, Some(self.host), &routed).is_some() {
                    return path;
                }
            }
        }
        let site = self.generation.config.sites.iter().find(|s| {
            &*s.listener == listener.as_ref()
                && s.offers_browser_sign_in()
                && (s.hosts.is_empty() || s.hosts.iter().any(|h| h == self.host))
        });
        match site.map(|s| s.path_prefix.as_str()) {
            Some("/") | None => "/".to_owned(),
            Some(prefix) => format!("{prefix}/"),
        }
    }

    fn durations(&self) -> (String, String) {
        (in_words(self.forms.settings.idle), in_words(self.forms.settings.public_idle))
    }

    fn sign_in_page(&self, headers: &HeaderMap, query: &str) -> Response<ResponseBody> {
        let asked = websession::form::Form::parse(query.as_bytes()).ok();
        let return_to = self.return_to(asked.as_ref().and_then(|f| f.get("return")));
        let (pre, set) = self.pre_cookie(headers);
        let csrf = self.forms.settings.keys.csrf_token(&self.csrf_scope(), &pre);
        let form = signin_page::Form {
            error: None,
            notice: None,
            username: "",
            csrf: &csrf,
            return_to: &return_to,
            public: false,
        };
        let mut r = self.render_sign_in(StatusCode::OK, &form);
        if let Some(set) = set {
            r.headers_mut().append(header::SET_COOKIE, set);
        }
        r
    }

    fn render_sign_in(&self, status: StatusCode, form: &signin_page::Form<'_>) -> Response<ResponseBody> {
        let (idle, public_idle) = self.durations();
        signin_page::sign_in(status, &self.look(), form, &idle, &public_idle)
    }

    /// The form again, with a message and a token for the pre-sign-in cookie
    /// the browser holds (or a new one).
    fn again(
        &self,
        status: StatusCode,
        headers: &HeaderMap,
        error: &str,
        typed: &str,
        return_to: &str,
        public: bool,
    ) -> Response<ResponseBody> {
        let (pre, set) = self.pre_cookie(headers);
        let csrf = self.forms.settings.keys.csrf_token(&self.csrf_scope(), &pre);
        let form =
            signin_page::Form { error: Some(error), notice: None, username: typed, csrf: &csrf, return_to, public };
        let mut r = self.render_sign_in(status, &form);
        if let Some(set) = set {
            r.headers_mut().append(header::SET_COOKIE, set);
        }
        r
    }

    /// Reads a posted form whose CSRF token matches the browser's
    /// pre-sign-in cookie, within the per-address attempt limit; or the page
    /// that says why not.
    async fn posted(
        &self,
        req: Request<Incoming>,
        record: &mut AccessRecord,
    ) -> Result<(HeaderMap, Posted), Response<ResponseBody>> {
        let (parts, body) = req.into_parts();
        let headers = parts.headers;
        let root = self.return_to(None);
        let refuse = |this: &Self, record: &mut AccessRecord, status, error: &str, cause: &str| {
            tracing::warn!(client = %this.conn.info.peer, cause, "sign-in page: POST refused");
            record.set_error(cause.to_owned());
            this.again(status, &headers, error, "", &root, false)
        };
        let urlencoded = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| {
            v.split(';').next().is_some_and(|t| t.trim().eq_ignore_ascii_case("application/x-www-form-urlencoded"))
        });
        if !urlencoded {
            return Err(refuse(
                self,
                record,
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "The form could not be read. Sign in again.",
                "not a form (Content-Type)",
            ));
        }
        let timeout = self.generation.config.timeouts.header_read;
        let Some(bytes) = read_body(body, MAX_BODY, timeout).await else {
            return Err(refuse(
                self,
                record,
                StatusCode::PAYLOAD_TOO_LARGE,
                "The form could not be read. Sign in again.",
                "form body too large, cut or slow",
            ));
        };
        let form = match websession::form::Form::parse(&bytes) {
            Ok(f) => f,
            Err(e) => {
                let cause = format!("form unreadable: {e}");
                return Err(refuse(
                    self,
                    record,
                    StatusCode::BAD_REQUEST,
                    "The form could not be read. Sign in again.",
                    &cause,
                ));
            }
        };
        let pre = pre_cookie_of(&headers);
        let token = form.get("csrf").unwrap_or("");
        let good = pre.as_deref().is_some_and(|p| self.forms.settings.keys.csrf_ok(&self.csrf_scope(), p, token));
        if !good {
            let cause = match (&pre, token.is_empty()) {
                (None, _) => "no pre-sign-in cookie (CSRF)",
                (Some(_), true) => "no CSRF token",
                (Some(_), false) => "wrong CSRF token",
            };
            let words = "This sign-in page had expired or was not sent by this site. Sign in again (your browser must accept cookies).";
            return Err(refuse(self, record, StatusCode::FORBIDDEN, words, cause));
        }
        let limit = self.forms.settings.attempts_per_minute;
        if !self.forms.attempts.allow(self.conn.info.peer.ip(), limit) {
            let cause = format!("more than {limit} sign-in attempts in a minute from this address");
            let words = "Too many sign-in attempts from your network. Wait a minute and try again.";
            return Err(refuse(self, record, StatusCode::TOO_MANY_REQUESTS, words, &cause));
        }
        Ok((headers, Posted { form, pre }))
    }

    async fn sign_in(
        &self,
        req: Request<Incoming>,
        record: &mut AccessRecord,
    ) -> Result<Response<ResponseBody>, Failure> {
        let (headers, posted) = match self.posted(req, record).await {
            Ok(p) => p,
            Err(page) => return Ok(page),
        };
        let form = &posted.form;
        let return_to = self.return_to(form.get("return"));
        let typed = form.get("username").unwrap_or("").trim();
        let password = form.get("password").unwrap_or("");
        let public = form.get("public") == Some("on");
        let client = self.conn.info.peer.ip();
        let result = forms::sign_in(self.auth, typed, password, client).await;
        // The page's sign-ins are counted here, where they happen; the
        // session cookie's later requests are not sign-ins.
        let signins = &self.conn.shared.meters.signins;
        match &result {
            Ok(_) => signins.passed("Forms"),
            Err(refusal) => signins.refused("Forms", refusal.cause()),
        }
        match result {
            Ok(user) => Ok(self.signed_in(&headers, user, public, &return_to, record).await),
            Err(Refusal::Expired(why)) if forms::can_change_passwords(self.auth) => {
                log_refusal(self.conn, record, &Refusal::Expired(why), typed);
                let notice = "Your password has expired or must be changed before you can sign in. Choose a new one.";
                Ok(self.render_password(
                    &headers,
                    StatusCode::OK,
                    None,
                    Some(notice),
                    typed,
                    &return_to,
                    public,
                    posted.pre.as_deref(),
                ))
            }
            Err(refusal) => {
                log_refusal(self.conn, record, &refusal, typed);
                let (status, words) = self.words(&refusal);
                Ok(self.again(status, &headers, &words, typed, &return_to, public))
            }
        }
    }

    /// What the page says for a refused sign-in: the same words for an
    /// unknown user and a wrong password.
    fn words(&self, refusal: &Refusal) -> (StatusCode, String) {
        let minutes = self.generation.config.lockout.window.as_secs().div_ceil(60);
        match refusal {
            Refusal::Name(_) | Refusal::Wrong(_) => (StatusCode::OK, "The user name or password is incorrect.".into()),
            Refusal::Throttled(_) => (
                StatusCode::OK,
                format!("Your account is locked out here after too many failed sign-ins. Wait {minutes} minutes and try again, or ask your help desk."),
            ),
            Refusal::Revoked(_) => (StatusCode::OK, "Your account is disabled or locked out in the domain. Ask your help desk.".into()),
            Refusal::Expired(_) => (
                StatusCode::OK,
                "Your password has expired or must be changed. Change it on a computer of the domain, or ask your help desk."
                    .into(),
            ),
            Refusal::Unavailable(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "The domain cannot be reached to check your password. Try again shortly.".into(),
            ),
        }
    }

    /// A checked user: the browser's old sessions end, a new one starts
    /// (new id, new cookie), the pre-sign-in cookie goes, and the browser
    /// goes where it first asked.
    async fn signed_in(
        &self,
        headers: &HeaderMap,
        user: Arc<crate::auth::User>,
        public: bool,
        return_to: &str,
        record: &mut AccessRecord,
    ) -> Response<ResponseBody> {
        let second_factor = user
            .federated
            .as_ref()
            .filter(|f| f.did_mfa())
            .map(|_| crate::auth::forms::unix(std::time::SystemTime::now()));
        let replaced = self.forms.close(headers, self.host).await;
        let opened = match self.forms.open(user.clone(), public, self.host, second_factor).await {
            Ok(o) => o,
            Err(why) => {
                tracing::error!(client = %self.conn.info.peer, user = %user.name, cause = %why, "sign-in: no session could be made");
                record.set_error(format!("no session: {why}"));
                let words = "You could not be signed in right now. Try again shortly.";
                return self.again(StatusCode::SERVICE_UNAVAILABLE, headers, words, "", return_to, public);
            }
        };
        record.set_user(&user.name, user.scheme.name());
        match &user.federated {
            Some(f) => tracing::info!(
                client = %self.conn.info.peer,
                user = %user.name,
                idp = %f.idp_name,
                replaced = replaced.is_some(),
                "signed in at the provider"
            ),
            None => tracing::info!(
                client = %self.conn.info.peer,
                user = %user.name,
                public,
                replaced = replaced.is_some(),
                "signed in on the sign-in page"
            ),
        }
        let mut r = see_other(return_to);
        let h = r.headers_mut();
        h.append(header::SET_COOKIE, opened.set_cookie);
        h.append(
            header::SET_COOKIE,
            HeaderValue::from_static("__Host-gatehouse-pre=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0"),
        );
        r
    }

    #[allow(clippy::too_many_arguments)]
    fn render_password(
        &self,
        headers: &HeaderMap,
        status: StatusCode,
        error: Option<&str>,
        notice: Option<&str>,
        typed: &str,
        return_to: &str,
        public: bool,
        pre: Option<&str>,
    ) -> Response<ResponseBody> {
        let (pre, set) = match pre {
            Some(p) => (p.to_owned(), None),
            None => self.pre_cookie(headers),
        };
        let csrf = self.forms.settings.keys.csrf_token(&self.csrf_scope(), &pre);
        let form = signin_page::Form { error, notice, username: typed, csrf: &csrf, return_to, public };
        let mut r = signin_page::change_password(status, &self.look(), &form);
        if let Some(set) = set {
            r.headers_mut().append(header::SET_COOKIE, set);
        }
        r
    }

    fn password_page(&self, headers: &HeaderMap, query: &str) -> Response<ResponseBody> {
        let asked = websession::form::Form::parse(query.as_bytes()).ok();
        let return_to = self.return_to(asked.as_ref().and_then(|f| f.get("return")));
        self.render_password(headers, StatusCode::OK, None, None, "", &return_to, false, None)
    }

    async fn change_password(
        &self,
        req: Request<Incoming>,
        record: &mut AccessRecord,
    ) -> Result<Response<ResponseBody>, Failure> {
        let (headers, posted) = match self.posted(req, record).await {
            Ok(p) => p,
            Err(page) => return Ok(page),
        };
        let form = &posted.form;
        let return_to = self.return_to(form.get("return"));
        let typed = form.get("username").unwrap_or("").trim();
        let (old, new, confirm) =
            (form.get("old").unwrap_or(""), form.get("new").unwrap_or(""), form.get("confirm").unwrap_or(""));
        let public = form.get("public") == Some("on");
        let again = |status, error: &str| {
            self.render_password(&headers, status, Some(error), None, typed, &return_to, public, posted.pre.as_deref())
        };
        if new.is_empty() || new != confirm {
            return Ok(again(StatusCode::OK, "The new passwords are not the same."));
        }
        if new == old {
            return Ok(again(StatusCode::OK, "The new password must differ from the current one."));
        }
        let client = self.conn.info.peer.ip();
        match forms::change_password(self.auth, typed, old, new, client).await {
            Ok(()) => {
                tracing::info!(client = %self.conn.info.peer, user = %typed, "password changed on the sign-in page");
            }
            Err(forms::ChangeRefused::Policy(words)) => {
                tracing::info!(client = %self.conn.info.peer, user = %typed, cause = %words, "password change refused by the domain");
                record.set_error(format!("password change refused: {words}"));
                return Ok(again(StatusCode::OK, &format!("The domain refused the new password: {words}")));
            }
            Err(forms::ChangeRefused::Old(refusal)) => {
                log_refusal(self.conn, record, &refusal, typed);
                let (status, words) = self.words(&refusal);
                return Ok(again(status, &words));
            }
            Err(forms::ChangeRefused::NotHere) => {
                record.set_error("password change: passwords are checked by [accounts], not by the KDC".to_owned());
                return Ok(again(
                    StatusCode::OK,
                    "Passwords cannot be changed here. Ask your help desk, or change it on a computer of the domain.",
                ));
            }
            Err(forms::ChangeRefused::Unavailable(why)) => {
                tracing::error!(client = %self.conn.info.peer, user = %typed, cause = %why, "password change: the domain could not be asked");
                record.set_error(format!("password change unavailable: {why}"));
                return Ok(again(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Your password cannot be changed here right now. Try again shortly, or ask your help desk.",
                ));
            }
        }
        // The new password signs the user in, as on the sign-in page.
        match forms::sign_in(self.auth, typed, new, client).await {
            Ok(user) => Ok(self.signed_in(&headers, user, public, &return_to, record).await),
            Err(refusal) => {
                log_refusal(self.conn, record, &refusal, typed);
                let (status, words) = self.words(&refusal);
                let words = format!("Your password was changed. {words}");
                Ok(self.again(status, &headers, &words, typed, &return_to, public))
            }
        }
    }

    async fn log_off(&self, headers: &HeaderMap, record: &mut AccessRecord) -> Response<ResponseBody> {
        let who = self.forms.close(headers, self.host).await;
        if let Some(who) = &who {
            record.set_user(&who.name, who.scheme.name());
            tracing::info!(client = %self.conn.info.peer, user = %who.name, "signed out");
        }
        // A provider's user is signed out there too (RP-initiated logout),
        // where the provider offers it; it sends the browser back here.
        let at_provider = who.as_ref().and_then(|u| u.federated.as_ref()).and_then(|f| {
            let p = self.auth.providers().get(f.idp as usize)?;
            p.end_session(f.id_token.as_deref()?, self.raw_host)
        });
        let mut r = see_other(at_provider.as_deref().unwrap_or("/.gatehouse/signedout"));
        r.headers_mut().append(header::SET_COOKIE, self.forms.clear_cookie());
        r
    }

    fn signed_out(&self) -> Response<ResponseBody> {
        let text = "You have signed out. To keep others from using this browser, close every browser window.";
        signin_page::notice(
            StatusCode::OK,
            &self.look(),
            "You are signed out",
            text,
            Some(("/.gatehouse/signin", "Sign in again")),
        )
    }
}

/// `90m` as "90 minutes", `8h` as "8 hours": for the page.
fn in_words(d: Duration) -> String {
    let s = d.as_secs();
    let (n, unit) = match s {
        _ if s >= 86_400 && s % 86_400 == 0 => (s / 86_400, "day"),
        _ if s >= 3600 && s % 3600 == 0 => (s / 3600, "hour"),
        _ if s >= 60 && s % 60 == 0 => (s / 60, "minute"),
        _ => (s, "second"),
    };
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

fn log_refusal(conn: &Connection, record: &mut AccessRecord, refusal: &Refusal, typed: &str) {
    let cause = refusal.describe(typed, "forms sign-in");
    match refusal {
        Refusal::Unavailable(_) => tracing::error!(client = %conn.info.peer, cause = %cause, "sign-in unavailable"),
        _ => tracing::warn!(client = %conn.info.peer, cause = %cause, "sign-in refused"),
    }
    record.set_error(cause);
}

/// The pre-sign-in cookie: 32 random bytes in base64url, as gatehouse makes it.
fn pre_cookie_of(headers: &HeaderMap) -> Option<String> {
    let values =
        websession::cookie::values(headers.get_all(header::COOKIE).iter().map(HeaderValue::as_bytes), PRE_COOKIE);
    values
        .into_iter()
        .find(|v| v.len() == 43 && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
        .map(str::to_owned)
}

fn see_other(location: &str) -> Response<ResponseBody> {
    let mut r = Response::new(ResponseBody::local(bytes::Bytes::new()));
    *r.status_mut() = StatusCode::SEE_OTHER;
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(location) {
        h.insert(header::LOCATION, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    r
}

/// The body, if it ends within `limit` bytes and `time`.
async fn read_body(mut body: Incoming, limit: usize, time: Duration) -> Option<Vec<u8>> {
    use http_body_util::BodyExt;
    let read = async {
        let mut out = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.ok()?;
            if let Some(data) = frame.data_ref() {
                if out.len() + data.len() > limit {
                    return None;
                }
                out.extend_from_slice(data);
            }
        }
        Some(out)
    };
    tokio::time::timeout(time, read).await.ok().flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_words() {
        assert_eq!(in_words(Duration::from_secs(15 * 60)), "15 minutes");
        assert_eq!(in_words(Duration::from_secs(3600)), "1 hour");
        assert_eq!(in_words(Duration::from_secs(8 * 3600)), "8 hours");
        assert_eq!(in_words(Duration::from_secs(2 * 86_400)), "2 days");
        assert_eq!(in_words(Duration::from_secs(90)), "90 seconds");
    }

    #[test]
    fn own_cookies_never_reach_a_backend() {
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, HeaderValue::from_static("MapiContext=1; __Host-gatehouse=sealed"));
        h.append(header::COOKIE, HeaderValue::from_static("__Host-gatehouse-pre=x; __Secure-gatehouse=y"));
        strip_own_cookies(&mut h);
        let left: Vec<_> = h.get_all(header::COOKIE).iter().collect();
        assert_eq!(left, ["MapiContext=1"]);
    }

    #[test]
    fn reserved_paths() {
        let r = |p: &str| reserved(&Request::get(p).body(()).unwrap());
        assert!(r("/.gatehouse/signin") && r("/.GATEHOUSE/signin") && r("/.gatehouse") && r("/%2egatehouse/x"));
        assert!(!r("/.gatehousex/") && !r("/owa/.gatehouse/") && !r("/"));
    }
}
