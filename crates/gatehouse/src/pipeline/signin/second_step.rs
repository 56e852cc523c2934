//! The second step (`/.gatehouse/mfa`) and enrolment
//! (`/.gatehouse/mfa/enrol`), for a browser that signed in with its
//! password on this page: a site with `mfa = "required"` sends a session
//! that has not passed a second factor here. Passing (or enrolling, which
//! proves the new app) replaces the session with a new one (a new id) that
//! records when it passed.
//!
//! Enrolment of a first factor needs a client in `[mfa] enrol_networks` or
//! an enrolment code from `gatehouse mfa issue-code`; a user who has a
//! factor must pass it before adding another. The new secret travels in the
//! enrolment form sealed (bound to the user, good for ten minutes), so the
//! server keeps nothing until the app's code proves it was set up; a
//! passkey's ceremony travels the same way (`auth::passkey`), and the
//! credential is stored once webauthn-rs accepted the authenticator's answer.
//! Either kind passes the second step the same way.

use std::sync::Arc;

use http::header::{self, HeaderMap};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;

use super::{see_other, Failure, Here};
use crate::auth::forms::{self, Cookie, Opened};
use crate::auth::passkey;
use crate::auth::second_factor as totp;
use crate::auth::User;
use crate::mfa;
use crate::response_body::ResponseBody;
use crate::signin_page::{self, FactorRow, MfaPage};
use crate::telemetry::AccessRecord;
use websession::totp as otp;

const ENROL: &str = "/.gatehouse/mfa/enrol";
const FACTORS: &str = "/.gatehouse/mfa/factors";

/// How long the enrolment form's sealed secret is good.
const ENROL_FORM_LIFE: u64 = 600;

struct Session {
    user: Arc<User>,
    passed: Option<u64>,
    public: bool,
}

fn now() -> u64 {
    forms::unix(std::time::SystemTime::now())
}

fn form_scope(user: &str) -> Vec<u8> {
    format!("gatehouse-mfa|enrol-form|user:{}", user.to_lowercase()).into_bytes()
}

impl Here<'_> {
    fn mfa_setup(&self) -> Result<&(crate::config::Mfa, Arc<dyn mfa::Store>), Failure> {
        self.forms.mfa.as_ref().ok_or(Failure::NotFound)
    }

    /// This host's WebAuthn relying party: `[mfa] passkey_rp_id`, else
    /// `[forms] cookie_domain`, else the host itself. None where passkeys
    /// cannot work (an IP address, a host outside the configured id).
    fn relying_party(&self) -> Option<passkey::RelyingParty> {
        let (settings, _) = self.forms.mfa.as_ref()?;
        let id =
            settings.passkey_rp_id.as_deref().or(self.forms.settings.cookie_domain.as_deref()).unwrap_or(self.host);
        passkey::RelyingParty::new(id, self.host, self.raw_host, &self.forms.settings.title)
    }

    /// A sign-in ceremony with the user's passkeys, when they have any and
    /// this host can use them; empty strings otherwise.
    async fn sign_in_ceremony(&self, user: &str) -> Result<(String, String), mfa::Unavailable> {
        let (Some(rp), Ok((_, store))) = (self.relying_party(), self.mfa_setup()) else {
            return Ok(Default::default());
        };
        let keys = &self.forms.settings.keys;
        let have = passkey::passkeys_of(store.as_ref(), keys, user).await?;
        match passkey::start_sign_in(&rp, keys, user, &have, now()) {
            Ok(Some(c)) => Ok((c.options, c.sealed)),
            Ok(None) => Ok(Default::default()),
            Err(why) => {
                tracing::error!(client = %self.conn.info.peer, user = %user, cause = %why, "passkey sign-in could not start");
                Ok(Default::default())
            }
        }
    }

    /// The guards of a second factor posted to these pages (the per-address
    /// limit was counted by `posted`).
    fn guards(&self) -> totp::Guards<'_> {
        let (lockout, limits) = self.auth.lockout();
        totp::Guards {
            lockout,
            own: &self.forms.second_lockout,
            limits,
            attempts: &self.forms.attempts,
            attempts_per_minute: u32::MAX,
        }
    }

    /// Checks a posted passkey answer (`ceremony`, `credential`): the factor
    /// it passed with, or the words for the page.
    async fn check_passkey(
        &self,
        user: &str,
        form: &websession::form::Form,
        record: &mut AccessRecord,
    ) -> Result<i64, (StatusCode, &'static str, Option<String>)> {
        let peer = self.conn.info.peer;
        let (Some(rp), Ok((_, store))) = (self.relying_party(), self.mfa_setup()) else {
            return Err((StatusCode::NOT_FOUND, "Passkeys cannot be used on this address.", None));
        };
        let sealed = form.get("ceremony").unwrap_or("");
        let credential = form.get("credential").unwrap_or("");
        if credential.is_empty() {
            // The browser ran no script (or has no WebAuthn): nothing was tried.
            return Err((
                StatusCode::OK,
                "Your browser did not answer for a passkey. Allow this page's script, or use another browser.",
                None,
            ));
        }
        let keys = &self.forms.settings.keys;
        match passkey::check(store.as_ref(), keys, &rp, &self.guards(), user, peer.ip(), sealed, credential, now())
            .await
        {
            Ok(id) => Ok(id),
            Err(passkey::Refused::Unavailable(why)) => Err((StatusCode::SERVICE_UNAVAILABLE, "", Some(why))),
            Err(refused) => {
                tracing::warn!(client = %peer, user = %user, kind = "passkey", cause = ?refused, "second factor refused");
                mfa::Counters::count(&self.forms.counters.passkey_failed);
                record.set_error(format!("second factor refused: passkey: {refused:?}"));
                let words = match refused {
                    passkey::Refused::Throttled(_) => {
                        return Err((
                            StatusCode::TOO_MANY_REQUESTS,
                            "Too many failed attempts. Wait a while and try again, or ask your help desk.",
                            None,
                        ))
                    }
                    passkey::Refused::Expired | passkey::Refused::Replayed => {
                        "This page had expired or was already used. Try the passkey again."
                    }
                    _ => "That passkey was not accepted here. Use a passkey you added for this account.",
                };
                Err((StatusCode::OK, words, None))
            }
        }
    }

    async fn session_of(&self, headers: &HeaderMap) -> Option<Session> {
        match self.forms.session(headers, self.host, &Opened::default()).await {
            Cookie::Session(user, passed, public) => Some(Session { user, passed, public }),
            _ => None,
        }
    }

    fn return_of(&self, query: &str) -> String {
        let asked = websession::form::Form::parse(query.as_bytes()).ok();
        self.return_to(asked.as_ref().and_then(|f| f.get("return")))
    }

    fn to_sign_in(&self, return_to: &str) -> Response<ResponseBody> {
        see_other(&format!("{}?return={}", forms::SIGN_IN, websession::form::encode(return_to)))
    }

    /// The user's own factors.
    async fn factors_of(&self, user: &str) -> Result<Vec<mfa::Factor>, mfa::Unavailable> {
        let (_, store) = self.mfa_setup().map_err(|_| mfa::Unavailable("no store".into()))?;
        Ok(store.factors(user.to_owned()).await?.into_iter().filter(|f| f.user.eq_ignore_ascii_case(user)).collect())
    }

    fn render_mfa(&self, status: StatusCode, headers: &HeaderMap, page: MfaPage<'_>) -> Response<ResponseBody> {
        let (pre, set) = self.pre_cookie(headers);
        let csrf = self.forms.settings.keys.csrf_token(&self.csrf_scope(), &pre);
        let mut r = signin_page::mfa(status, &self.look(), &MfaPage { csrf: &csrf, ..page });
        if let Some(set) = set {
            r.headers_mut().append(header::SET_COOKIE, set);
        }
        r
    }

    fn unavailable(&self, why: &str, record: &mut AccessRecord) -> Response<ResponseBody> {
        tracing::error!(client = %self.conn.info.peer, cause = %why, "second step unavailable");
        record.set_error(format!("second step: {why}"));
        signin_page::notice(
            StatusCode::SERVICE_UNAVAILABLE,
            &self.look(),
            "Second step",
            "The second step cannot be checked right now. Try again shortly.",
            None,
        )
    }

    pub(super) async fn second_step_page(
        &self,
        headers: &HeaderMap,
        query: &str,
        record: &mut AccessRecord,
    ) -> Result<Response<ResponseBody>, Failure> {
        let return_to = self.return_of(query);
        let Some(s) = self.session_of(headers).await else { return Ok(self.to_sign_in(&return_to)) };
        if s.passed.is_some() {
            return Ok(see_other(&return_to));
        }
        match self.factors_of(&s.user.name).await {
            Ok(f) if f.is_empty() => Ok(see_other(&format!("{ENROL}?return={}", websession::form::encode(&return_to)))),
            Ok(_) => Ok(self.code_page(StatusCode::OK, headers, &s.user.name, &return_to, None, record).await),
            Err(e) => Ok(self.unavailable(&e.0, record)),
        }
    }

    /// The second step's page: a passkey button if the user has passkeys
    /// (and this host can use them), the code form if they have an app.
    async fn code_page(
        &self,
        status: StatusCode,
        headers: &HeaderMap,
        user: &str,
        return_to: &str,
        error: Option<&str>,
        record: &mut AccessRecord,
    ) -> Response<ResponseBody> {
        let factors = match self.factors_of(user).await {
            Ok(f) => f,
            Err(e) => return self.unavailable(&e.0, record),
        };
        let (options, ceremony) = match self.sign_in_ceremony(user).await {
            Ok(c) => c,
            Err(e) => return self.unavailable(&e.0, record),
        };
        // A user with passkeys only, on a host where they cannot work, still
        // needs a way on: the app's form says what to do.
        let has_app = factors.iter().any(|f| f.kind == mfa::Kind::Totp) || options.is_empty();
        let page = MfaPage {
            step: "code",
            error,
            user,
            return_to,
            has_app,
            passkey_options: &options,
            passkey_ceremony: &ceremony,
            ..MfaPage::default()
        };
        self.render_mfa(status, headers, page)
    }

    pub(super) async fn second_step(
        &self,
        req: Request<Incoming>,
        record: &mut AccessRecord,
    ) -> Result<Response<ResponseBody>, Failure> {
        let (headers, posted) = match self.posted(req, record).await {
            Ok(p) => p,
            Err(page) => return Ok(page),
        };
        let return_to = self.return_to(posted.form.get("return"));
        let Some(s) = self.session_of(&headers).await else { return Ok(self.to_sign_in(&return_to)) };
        let (_, store) = self.mfa_setup()?;
        let guards = self.guards();
        let typed = posted.form.get("code").unwrap_or("");
        let peer = self.conn.info.peer;
        let name = s.user.name.clone();
        if posted.form.get("ceremony").is_some() {
            return match self.check_passkey(&name, &posted.form, record).await {
                Ok(id) => {
                    tracing::info!(client = %peer, user = %name, factor = id, kind = "passkey", "second factor passed");
                    mfa::Counters::count(&self.forms.counters.passkey_passed);
                    Ok(self.passed(&headers, &s, &return_to, "Forms+passkey", record).await)
                }
                Err((StatusCode::SERVICE_UNAVAILABLE, _, why)) => {
                    Ok(self.unavailable(why.as_deref().unwrap_or("the store"), record))
                }
                Err((status, words, _)) => {
                    Ok(self.code_page(status, &headers, &name, &return_to, Some(words), record).await)
                }
            };
        }
        match totp::check(store.as_ref(), &self.forms.settings.keys, &guards, &name, peer.ip(), typed, now()).await {
            Ok(id) => {
                tracing::info!(client = %peer, user = %name, factor = id, kind = "totp", "second factor passed");
                mfa::Counters::count(&self.forms.counters.passed);
                Ok(self.passed(&headers, &s, &return_to, "Forms+TOTP", record).await)
            }
            Err(totp::Refused::NoFactor) => {
                Ok(see_other(&format!("{ENROL}?return={}", websession::form::encode(&return_to))))
            }
            Err(totp::Refused::Unavailable(why)) => Ok(self.unavailable(&why, record)),
            Err(refused) => {
                let (status, words) = match &refused {
                    totp::Refused::Throttled(_) => (
                        StatusCode::TOO_MANY_REQUESTS,
                        "Too many wrong codes. Wait a while and try again, or ask your help desk.",
                    ),
                    _ => (StatusCode::OK, "That code is not right, or was already used. Wait for the next code."),
                };
                tracing::warn!(client = %peer, user = %name, kind = "totp", cause = ?refused, "second factor refused");
                mfa::Counters::count(&self.forms.counters.failed);
                record.set_error(format!("second factor refused: {refused:?}"));
                Ok(self.code_page(status, &headers, &name, &return_to, Some(words), record).await)
            }
        }
    }

    /// The session passed a second factor: a new session (new id) that says
    /// so replaces it.
    async fn passed(
        &self,
        headers: &HeaderMap,
        s: &Session,
        return_to: &str,
        how: &'static str,
        record: &mut AccessRecord,
    ) -> Response<ResponseBody> {
        self.forms.close(headers, self.host).await;
        match self.forms.open(s.user.clone(), s.public, self.host, Some(now())).await {
            Ok(opened) => {
                record.set_user(&s.user.name, how);
                let mut r = see_other(return_to);
                r.headers_mut().append(header::SET_COOKIE, opened.set_cookie);
                r
            }
            Err(why) => self.unavailable(&why, record),
        }
    }

    /// Whether this session may enrol a factor now without an enrolment
    /// code: it passed a second factor, or the user has none and the client
    /// is in `[mfa] enrol_networks`. None: it must pass its factor first.
    fn may_enrol(&self, s: &Session, has_factors: bool) -> Option<bool> {
        let (settings, _) = self.forms.mfa.as_ref()?;
        if s.passed.is_some() {
            return Some(true);
        }
        if has_factors {
            return None;
        }
        Some(settings.enrol_networks.iter().any(|n| n.contains(self.conn.info.peer.ip())))
    }

    pub(super) async fn enrol_page(
        &self,
        headers: &HeaderMap,
        query: &str,
        record: &mut AccessRecord,
    ) -> Result<Response<ResponseBody>, Failure> {
        let return_to = self.return_of(query);
        let Some(s) = self.session_of(headers).await else { return Ok(self.to_sign_in(&return_to)) };
        let factors = match self.factors_of(&s.user.name).await {
            Ok(f) => f,
            Err(e) => return Ok(self.unavailable(&e.0, record)),
        };
        match self.may_enrol(&s, !factors.is_empty()) {
            None => Ok(see_other(&format!("{}?return={}", forms::SECOND_STEP, websession::form::encode(&return_to)))),
            Some(true) => Ok(self.app_page(StatusCode::OK, headers, &s.user.name, &return_to, None, None).await),
            Some(false) => {
                Ok(self.render_mfa(StatusCode::OK, headers, self.enrol_code_form(&s.user.name, &return_to, None)))
            }
        }
    }

    fn enrol_code_form<'b>(&self, user: &'b str, return_to: &'b str, error: Option<&'b str>) -> MfaPage<'b> {
        MfaPage { step: "enrol-code", error, user, return_to, ..MfaPage::default() }
    }

    /// The page that adds a factor: a passkey's button (where this host can
    /// use passkeys) and an app's new secret (or, after a wrong code, the
    /// same one again: `again`).
    async fn app_page(
        &self,
        status: StatusCode,
        headers: &HeaderMap,
        user: &str,
        return_to: &str,
        error: Option<&str>,
        again: Option<(&[u8], u64)>,
    ) -> Response<ResponseBody> {
        let (secret, issued) = match again {
            Some((s, t)) => (s.to_vec(), t),
            None => {
                let mut s = vec![0u8; otp::SECRET_LEN];
                if getrandom::fill(&mut s).is_err() {
                    tracing::error!(client = %self.conn.info.peer, "enrolment: no randomness");
                    let words = "The second step cannot be checked right now. Try again shortly.";
                    return signin_page::notice(
                        StatusCode::SERVICE_UNAVAILABLE,
                        &self.look(),
                        "Second step",
                        words,
                        None,
                    );
                }
                (s, now())
            }
        };
        let mut payload = issued.to_be_bytes().to_vec();
        payload.extend_from_slice(&secret);
        let mut nonce = [0u8; 24];
        let _ = getrandom::fill(&mut nonce);
        let sealed = self.forms.settings.keys.seal(&form_scope(user), &payload, nonce);
        let uri = otp::otpauth_uri(&self.forms.settings.title, user, &secret);
        let qr = match qrcode::QrCode::new(uri.as_bytes()) {
            Ok(code) => code.render::<qrcode::render::svg::Color<'_>>().min_dimensions(200, 200).build(),
            Err(_) => String::new(),
        };
        // The renderer's XML declaration has no place inside HTML.
        let qr = qr.find("<svg").map_or(String::new(), |at| qr[at..].to_owned());
        let text = otp::base32(&secret);
        let (options, ceremony) = self.registration_ceremony(user).await;
        let page = MfaPage {
            step: "enrol-app",
            error,
            user,
            return_to,
            qr: &qr,
            secret: &text,
            sealed: &sealed,
            passkey_options: &options,
            passkey_ceremony: &ceremony,
            ..MfaPage::default()
        };
        self.render_mfa(status, headers, page)
    }

    /// A registration ceremony for a new passkey of `user` (excluding the
    /// ones they have); empty strings where this host cannot use passkeys.
    async fn registration_ceremony(&self, user: &str) -> (String, String) {
        let (Some(rp), Ok((_, store))) = (self.relying_party(), self.mfa_setup()) else { return Default::default() };
        let keys = &self.forms.settings.keys;
        let have = match passkey::passkeys_of(store.as_ref(), keys, user).await {
            Ok(h) => h,
            Err(e) => {
                tracing::error!(client = %self.conn.info.peer, cause = %e.0, "passkey registration could not start");
                return Default::default();
            }
        };
        match passkey::start_registration(&rp, keys, user, &have, now()) {
            Ok(c) => (c.options, c.sealed),
            Err(why) => {
                tracing::error!(client = %self.conn.info.peer, cause = %why, "passkey registration could not start");
                Default::default()
            }
        }
    }

    pub(super) async fn enrol(
        &self,
        req: Request<Incoming>,
        record: &mut AccessRecord,
    ) -> Result<Response<ResponseBody>, Failure> {
        let (headers, posted) = match self.posted(req, record).await {
            Ok(p) => p,
            Err(page) => return Ok(page),
        };
        let return_to = self.return_to(posted.form.get("return"));
        let Some(s) = self.session_of(&headers).await else { return Ok(self.to_sign_in(&return_to)) };
        let (_, store) = self.mfa_setup()?;
        let peer = self.conn.info.peer;
        let name = s.user.name.clone();
        let factors = match self.factors_of(&name).await {
            Ok(f) => f,
            Err(e) => return Ok(self.unavailable(&e.0, record)),
        };
        let Some(allowed) = self.may_enrol(&s, !factors.is_empty()) else {
            return Ok(see_other(&format!("{}?return={}", forms::SECOND_STEP, websession::form::encode(&return_to))));
        };
        if let Some(ceremony) = posted.form.get("ceremony") {
            // A new passkey, answering a ceremony this page sealed (which it
            // did only for a session allowed to enrol).
            return self.enrol_passkey(&headers, &s, &return_to, ceremony, &posted.form, record).await;
        }
        if let Some(sealed) = posted.form.get("sealed") {
            // The app's first code, for a secret this page sealed.
            let opened = self.forms.settings.keys.open(&form_scope(&name), sealed).ok();
            let Some((issued, secret)) = opened.as_deref().and_then(|p| {
                let (t, s) = p.split_at_checked(8)?;
                Some((u64::from_be_bytes(t.try_into().ok()?), s.to_vec()))
            }) else {
                record.set_error("enrolment form not sealed for this user".to_owned());
                return Ok(self.render_mfa(
                    StatusCode::FORBIDDEN,
                    &headers,
                    self.enrol_code_form(&name, &return_to, Some("This page had expired. Start again.")),
                ));
            };
            if now().saturating_sub(issued) > ENROL_FORM_LIFE {
                return Ok(self
                    .app_page(
                        StatusCode::OK,
                        &headers,
                        &name,
                        &return_to,
                        Some("This page had expired: scan the new code."),
                        None,
                    )
                    .await);
            }
            let Some(factor_name) = totp::factor_name(posted.form.get("name").unwrap_or("")) else {
                return Ok(self
                    .app_page(
                        StatusCode::OK,
                        &headers,
                        &name,
                        &return_to,
                        Some("Give the app a name of 1 to 40 characters."),
                        Some((&secret, issued)),
                    )
                    .await);
            };
            let typed = posted.form.get("code").unwrap_or("");
            return match totp::enrol(
                store.as_ref(),
                &self.forms.settings.keys,
                &name,
                &factor_name,
                &secret,
                typed,
                now(),
            )
            .await
            {
                Ok(id) => {
                    tracing::info!(client = %peer, user = %name, factor = id, kind = "totp", "second factor enrolled");
                    mfa::Counters::count(&self.forms.counters.enrolled);
                    Ok(self.passed(&headers, &s, &return_to, "Forms+TOTP", record).await)
                }
                Err(totp::Refused::Unavailable(why)) => Ok(self.unavailable(&why, record)),
                Err(_) => Ok(self
                    .app_page(
                        StatusCode::OK,
                        &headers,
                        &name,
                        &return_to,
                        Some("That code is not right. Type the code the app shows now."),
                        Some((&secret, issued)),
                    )
                    .await),
            };
        }
        if allowed {
            return Ok(self.app_page(StatusCode::OK, &headers, &name, &return_to, None, None).await);
        }
        // An enrolment code, behind the lockout: a wrong one counts as a
        // wrong password would.
        let (lockout, limits) = self.auth.lockout();
        if let Err(why) = totp::may_try(lockout, &self.forms.second_lockout, limits, &name, peer.ip()) {
            tracing::warn!(client = %peer, user = %name, cause = %why, "enrolment refused");
            let words = "Too many wrong codes. Wait a while and try again, or ask your help desk.";
            return Ok(self.render_mfa(
                StatusCode::TOO_MANY_REQUESTS,
                &headers,
                self.enrol_code_form(&name, &return_to, Some(words)),
            ));
        }
        let typed = posted.form.get("enrolment").unwrap_or("");
        match mfa::redeem_code(store.as_ref(), &name, typed, now()).await {
            Ok(true) => {
                tracing::info!(client = %peer, user = %name, "enrolment code accepted");
                Ok(self.app_page(StatusCode::OK, &headers, &name, &return_to, None, None).await)
            }
            Ok(false) => {
                totp::count_failure(lockout, &self.forms.second_lockout, limits, &name, peer.ip());
                tracing::warn!(client = %peer, user = %name, "enrolment code refused (wrong, used, expired or another user's)");
                mfa::Counters::count(&self.forms.counters.enrol_codes_refused);
                record.set_error("enrolment code refused".to_owned());
                let words = "That enrolment code is not valid: it is wrong, was used, or has expired. Ask your help desk for a new one.";
                Ok(self.render_mfa(StatusCode::OK, &headers, self.enrol_code_form(&name, &return_to, Some(words))))
            }
            Err(e) => Ok(self.unavailable(&e.0, record)),
        }
    }

    /// Adds a passkey: the authenticator's answer to the sealed ceremony.
    async fn enrol_passkey(
        &self,
        headers: &HeaderMap,
        s: &Session,
        return_to: &str,
        ceremony: &str,
        form: &websession::form::Form,
        record: &mut AccessRecord,
    ) -> Result<Response<ResponseBody>, Failure> {
        let (_, store) = self.mfa_setup()?;
        let Some(rp) = self.relying_party() else { return Err(Failure::NotFound) };
        let peer = self.conn.info.peer;
        let name = &s.user.name;
        let again = |words| self.app_page(StatusCode::OK, headers, name, return_to, Some(words), None);
        let Some(factor_name) = totp::factor_name(form.get("name").unwrap_or("")) else {
            return Ok(again("Give the passkey a name of 1 to 40 characters.").await);
        };
        let credential = form.get("credential").unwrap_or("");
        if credential.is_empty() {
            return Ok(again(
                "Your browser did not answer for a passkey. Allow this page's script, or use another browser.",
            )
            .await);
        }
        let keys = &self.forms.settings.keys;
        match passkey::finish_registration(store.as_ref(), keys, &rp, name, &factor_name, ceremony, credential, now())
            .await
        {
            Ok(id) => {
                tracing::info!(client = %peer, user = %name, factor = id, kind = "passkey", "second factor enrolled");
                mfa::Counters::count(&self.forms.counters.passkey_enrolled);
                Ok(self.passed(headers, s, return_to, "Forms+passkey", record).await)
            }
            Err(passkey::Refused::Unavailable(why)) => Ok(self.unavailable(&why, record)),
            Err(refused) => {
                tracing::warn!(client = %peer, user = %name, kind = "passkey", cause = ?refused, "enrolment refused");
                record.set_error(format!("passkey enrolment refused: {refused:?}"));
                let words = match refused {
                    passkey::Refused::Duplicate => "That passkey is already registered here.",
                    passkey::Refused::Expired | passkey::Refused::Replayed => {
                        "This page had expired or was already used. Try again."
                    }
                    _ => "The passkey could not be added. Try again, or add an authenticator app.",
                };
                Ok(again(words).await)
            }
        }
    }

    /// The user's factors, each with a form that renames it and a button
    /// that removes it; only for a session that passed a second factor.
    pub(super) async fn factors_page(
        &self,
        headers: &HeaderMap,
        record: &mut AccessRecord,
    ) -> Result<Response<ResponseBody>, Failure> {
        let Some(s) = self.session_of(headers).await else { return Ok(self.to_sign_in(FACTORS)) };
        if s.passed.is_none() {
            return Ok(see_other(&format!("{}?return={}", forms::SECOND_STEP, websession::form::encode(FACTORS))));
        }
        self.render_factors(StatusCode::OK, headers, &s.user.name, None, record).await
    }

    async fn render_factors(
        &self,
        status: StatusCode,
        headers: &HeaderMap,
        user: &str,
        error: Option<&str>,
        record: &mut AccessRecord,
    ) -> Result<Response<ResponseBody>, Failure> {
        let factors = match self.factors_of(user).await {
            Ok(f) => f,
            Err(e) => return Ok(self.unavailable(&e.0, record)),
        };
        let day = |t: u64| {
            let d = humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_secs(t));
            d.to_string().chars().take(10).collect::<String>()
        };
        let rows: Vec<FactorRow> = factors
            .iter()
            .map(|f| FactorRow {
                id: f.id,
                name: f.name.clone(),
                added: day(f.created),
                kind: match f.kind {
                    mfa::Kind::Passkey => "passkey",
                    mfa::Kind::Totp => "app",
                },
            })
            .collect();
        // Removing the last factor, a passkey, asks for it once more.
        let last_is_passkey = matches!(factors.as_slice(), [f] if f.kind == mfa::Kind::Passkey);
        let (options, ceremony) = if last_is_passkey {
            match self.sign_in_ceremony(user).await {
                Ok(c) => c,
                Err(e) => return Ok(self.unavailable(&e.0, record)),
            }
        } else {
            Default::default()
        };
        let page = MfaPage {
            step: "factors",
            error,
            user,
            factors: &rows,
            passkey_options: &options,
            passkey_ceremony: &ceremony,
            ..MfaPage::default()
        };
        Ok(self.render_mfa(status, headers, page))
    }

    /// Removes one of the user's apps. The last one only with a fresh second
    /// factor (passed within `[mfa] fresh_for`, or a code typed with the request):
    /// a session left open on a shared computer must not be enough to leave
    /// the account with a password alone, and enrolment open again.
    pub(super) async fn remove_factor(
        &self,
        req: Request<Incoming>,
        record: &mut AccessRecord,
    ) -> Result<Response<ResponseBody>, Failure> {
        let (headers, posted) = match self.posted(req, record).await {
            Ok(p) => p,
            Err(page) => return Ok(page),
        };
        let Some(s) = self.session_of(&headers).await else { return Ok(self.to_sign_in(FACTORS)) };
        let Some(passed) = s.passed else {
            return Ok(see_other(&format!("{}?return={}", forms::SECOND_STEP, websession::form::encode(FACTORS))));
        };
        let (settings, store) = self.mfa_setup()?;
        let name = s.user.name.clone();
        let peer = self.conn.info.peer;
        if let Some(id) = posted.form.get("rename") {
            return self.rename_factor(&headers, &name, id, posted.form.get("name").unwrap_or(""), record).await;
        }
        let Some(id) = posted.form.get("remove").and_then(|v| v.parse::<i64>().ok()) else {
            return self
                .render_factors(StatusCode::BAD_REQUEST, &headers, &name, Some("Choose an app to remove."), record)
                .await;
        };
        let mut fresh = now().saturating_sub(passed) <= settings.fresh_for.as_secs();
        if posted.form.get("ceremony").is_some() {
            match self.check_passkey(&name, &posted.form, record).await {
                Ok(_) => fresh = true,
                Err((StatusCode::SERVICE_UNAVAILABLE, _, why)) => {
                    return Ok(self.unavailable(why.as_deref().unwrap_or("the store"), record))
                }
                Err((status, words, _)) => {
                    return self.render_factors(status, &headers, &name, Some(words), record).await
                }
            }
        } else if let Some(code) = posted.form.get("code").filter(|c| !c.trim().is_empty()) {
            let (lockout, limits) = self.auth.lockout();
            let guards = totp::Guards {
                lockout,
                own: &self.forms.second_lockout,
                limits,
                attempts: &self.forms.attempts,
                attempts_per_minute: u32::MAX,
            };
            match totp::check(store.as_ref(), &self.forms.settings.keys, &guards, &name, peer.ip(), code, now()).await {
                Ok(_) => fresh = true,
                Err(totp::Refused::Unavailable(why)) => return Ok(self.unavailable(&why, record)),
                Err(refused) => {
                    tracing::warn!(client = %peer, user = %name, cause = ?refused, "factor removal: code refused");
                    mfa::Counters::count(&self.forms.counters.failed);
                    let words = "That code is not right, or was already used. Wait for the next code.";
                    return self.render_factors(StatusCode::OK, &headers, &name, Some(words), record).await;
                }
            }
        }
        match mfa::remove_factor(store.as_ref(), &name, id, fresh).await {
            Ok(()) => {
                tracing::info!(client = %peer, user = %name, factor = id, "second factor removed by its user");
                mfa::Counters::count(&self.forms.counters.removed);
                self.render_factors(StatusCode::OK, &headers, &name, None, record).await
            }
            Err(mfa::NotRemoved::LastNeedsFreshFactor) => {
                record.set_error("last factor: no fresh second factor".to_owned());
                let words = "To remove your last second factor, type a current code from the app, or use the passkey.";
                self.render_factors(StatusCode::OK, &headers, &name, Some(words), record).await
            }
            Err(mfa::NotRemoved::Unknown) => {
                self.render_factors(StatusCode::OK, &headers, &name, Some("That factor was already removed."), record)
                    .await
            }
            Err(mfa::NotRemoved::Unavailable(why)) => Ok(self.unavailable(&why, record)),
        }
    }

    /// Gives one of the user's factors a new name (1 to 40 characters).
    async fn rename_factor(
        &self,
        headers: &HeaderMap,
        user: &str,
        id: &str,
        typed: &str,
        record: &mut AccessRecord,
    ) -> Result<Response<ResponseBody>, Failure> {
        let (_, store) = self.mfa_setup()?;
        let Some(id) = id.parse::<i64>().ok() else {
            return self
                .render_factors(StatusCode::BAD_REQUEST, headers, user, Some("Choose a factor to rename."), record)
                .await;
        };
        let Some(new_name) = totp::factor_name(typed) else {
            let words = "Give the factor a name of 1 to 40 characters.";
            return self.render_factors(StatusCode::OK, headers, user, Some(words), record).await;
        };
        // The store renames only a row of this user: another's id is "unknown".
        let mine = match self.factors_of(user).await {
            Ok(f) => f.into_iter().find(|f| f.id == id),
            Err(e) => return Ok(self.unavailable(&e.0, record)),
        };
        let Some(f) = mine else {
            return self.render_factors(StatusCode::OK, headers, user, Some("That factor was removed."), record).await;
        };
        match store.rename(f.user.clone(), id, new_name).await {
            Ok(true) => {
                tracing::info!(client = %self.conn.info.peer, user = %user, factor = id, "second factor renamed by its user");
                mfa::Counters::count(&self.forms.counters.renamed);
                self.render_factors(StatusCode::OK, headers, user, None, record).await
            }
            Ok(false) => {
                self.render_factors(StatusCode::OK, headers, user, Some("That factor was removed."), record).await
            }
            Err(e) => Ok(self.unavailable(&e.0, record)),
        }
    }
}
