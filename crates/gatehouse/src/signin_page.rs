//! The sign-in pages' HTML (askama templates in `templates/`, checked and
//! compiled with the binary, every value HTML-escaped) and the headers every
//! page gatehouse serves under `/.gatehouse/` carries: no script at all, a
//! stylesheet of its own (`default-src 'none'; style-src 'self'`), never in a
//! frame, never cached, no referrer.

use askama::Template;
use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};

use crate::response_body::ResponseBody;

/// Content-Security-Policy of every page: nothing runs, nothing loads from
/// elsewhere, forms post only here, no frame may hold the page.
pub const CSP: &str =
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The second step's pages: as [`CSP`], and one script may run, gatehouse's
/// own `passkey.js` (`'self'`: no inline script, no `eval`, nothing from
/// elsewhere; it fetches nothing, so `connect-src` stays `'none'`).
pub const CSP_WITH_SCRIPT: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                                   form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The script of the passkey buttons (`/.gatehouse/passkey.js`).
const PASSKEY_SCRIPT: &str = include_str!("../templates/passkey.js");

const STYLE: &str = include_str!("../templates/style.css");

/// What every page shows of the configuration.
pub struct Look<'a> {
    pub title: &'a str,
    pub logo: bool,
}

#[derive(Template)]
#[template(path = "signin.html")]
struct SignIn<'a> {
    look: &'a Look<'a>,
    error: Option<&'a str>,
    notice: Option<&'a str>,
    username: &'a str,
    csrf: &'a str,
    return_to: &'a str,
    return_query: &'a str,
    public: bool,
    idle: &'a str,
    public_idle: &'a str,
}

#[derive(Template)]
#[template(path = "password.html")]
struct Password<'a> {
    look: &'a Look<'a>,
    error: Option<&'a str>,
    notice: Option<&'a str>,
    username: &'a str,
    csrf: &'a str,
    return_to: &'a str,
    return_query: &'a str,
    public: bool,
}

#[derive(Template)]
#[template(path = "notice.html")]
struct Notice<'a> {
    look: &'a Look<'a>,
    error: Option<&'a str>,
    notice: Option<&'a str>,
    heading: &'a str,
    text: &'a str,
    link: Option<&'a str>,
    link_text: &'a str,
}

/// The sign-in form, as one page shows it.
pub struct Form<'a> {
    pub error: Option<&'a str>,
    pub notice: Option<&'a str>,
    pub username: &'a str,
    pub csrf: &'a str,
    /// Where to go after sign-in (a checked path).
    pub return_to: &'a str,
    pub public: bool,
}

pub fn sign_in(
    status: StatusCode,
    look: &Look<'_>,
    form: &Form<'_>,
    idle: &str,
    public_idle: &str,
) -> Response<ResponseBody> {
    let query = websession::form::encode(form.return_to);
    render(
        status,
        &SignIn {
            look,
            error: form.error,
            notice: form.notice,
            username: form.username,
            csrf: form.csrf,
            return_to: form.return_to,
            return_query: &query,
            public: form.public,
            idle,
            public_idle,
        },
    )
}

pub fn change_password(status: StatusCode, look: &Look<'_>, form: &Form<'_>) -> Response<ResponseBody> {
    let query = websession::form::encode(form.return_to);
    render(
        status,
        &Password {
            look,
            error: form.error,
            notice: form.notice,
            username: form.username,
            csrf: form.csrf,
            return_to: form.return_to,
            return_query: &query,
            public: form.public,
        },
    )
}

/// A page with a heading, a sentence, and a link on (`link`: a path of ours).
pub fn notice(
    status: StatusCode,
    look: &Look<'_>,
    heading: &str,
    text: &str,
    link: Option<(&str, &str)>,
) -> Response<ResponseBody> {
    let (link, link_text) = match link {
        Some((href, words)) => (Some(href), words),
        None => (None, ""),
    };
    render(status, &Notice { look, error: None, notice: None, heading, text, link, link_text })
}

#[derive(Template)]
#[template(path = "mfa.html")]
struct Mfa<'a> {
    look: &'a Look<'a>,
    error: Option<&'a str>,
    notice: Option<&'a str>,
    heading: &'a str,
    step: &'a str,
    user: &'a str,
    csrf: &'a str,
    return_to: &'a str,
    qr: &'a str,
    secret: &'a str,
    sealed: &'a str,
    factors: &'a [FactorRow],
    has_app: bool,
    passkey_options: &'a str,
    passkey_ceremony: &'a str,
}

/// One of the user's factors on the factors page.
#[derive(Debug, Clone)]
pub struct FactorRow {
    pub id: i64,
    pub name: String,
    /// The day it was added.
    pub added: String,
    /// "passkey" or "app".
    pub kind: &'static str,
}

/// The second step's pages: `step` is `code` (the passkey button and the
/// code form), `enrol-code` (the enrolment code form), `enrol-app` (the
/// passkey button, the app's QR code, its key and the form that adds it) or
/// `factors`.
#[derive(Default)]
pub struct MfaPage<'a> {
    pub step: &'a str,
    pub error: Option<&'a str>,
    pub user: &'a str,
    pub csrf: &'a str,
    pub return_to: &'a str,
    /// `enrol-app`: the QR code (an SVG element of our own making), the key
    /// in base32, and the key sealed for the form.
    pub qr: &'a str,
    pub secret: &'a str,
    pub sealed: &'a str,
    pub factors: &'a [FactorRow],
    /// `code`: the user has an authenticator app (show its form).
    pub has_app: bool,
    /// A passkey ceremony on this page: the options for
    /// `navigator.credentials` (JSON) and its sealed state; empty for none.
    pub passkey_options: &'a str,
    pub passkey_ceremony: &'a str,
}

pub fn mfa(status: StatusCode, look: &Look<'_>, p: &MfaPage<'_>) -> Response<ResponseBody> {
    let heading = match p.step {
        "code" => "Second step",
        "factors" => "Your second factors",
        _ => "Add a second factor",
    };
    let with_script = !p.passkey_options.is_empty();
    let mut r = render(
        status,
        &Mfa {
            look,
            error: p.error,
            notice: None,
            heading,
            step: p.step,
            user: p.user,
            csrf: p.csrf,
            return_to: p.return_to,
            qr: p.qr,
            secret: p.secret,
            sealed: p.sealed,
            factors: p.factors,
            has_app: p.has_app,
            passkey_options: p.passkey_options,
            passkey_ceremony: p.passkey_ceremony,
        },
    );
    if with_script {
        r.headers_mut().insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP_WITH_SCRIPT));
    }
    r
}

pub fn passkey_script() -> Response<ResponseBody> {
    respond(StatusCode::OK, "text/javascript; charset=utf-8", Bytes::from_static(PASSKEY_SCRIPT.as_bytes()), false)
}

fn render(status: StatusCode, page: &impl Template) -> Response<ResponseBody> {
    match page.render() {
        Ok(html) => respond(status, "text/html; charset=utf-8", Bytes::from(html), true),
        // Our own templates over our own values: rendering does not fail
        // short of running out of memory; say so rather than panic.
        Err(_) => respond(
            StatusCode::INTERNAL_SERVER_ERROR,
            "text/plain; charset=utf-8",
            Bytes::from_static(b"page error\n"),
            true,
        ),
    }
}

pub fn stylesheet() -> Response<ResponseBody> {
    respond(StatusCode::OK, "text/css; charset=utf-8", Bytes::from_static(STYLE.as_bytes()), false)
}

pub fn logo(bytes: &[u8], content_type: &'static str) -> Response<ResponseBody> {
    let mut r = respond(StatusCode::OK, content_type, Bytes::copy_from_slice(bytes), false);
    // An SVG logo opened by itself is a document: it gets the same policy,
    // and no script of its own runs.
    r.headers_mut().insert(header::CONTENT_DISPOSITION, HeaderValue::from_static("inline; filename=\"logo\""));
    r
}

/// The headers of every answer under `/.gatehouse/`.
fn respond(status: StatusCode, content_type: &'static str, body: Bytes, page: bool) -> Response<ResponseBody> {
    let mut resp = Response::new(ResponseBody::local(body));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert("cross-origin-opener-policy", HeaderValue::from_static("same-origin"));
    h.insert("cross-origin-resource-policy", HeaderValue::from_static("same-origin"));
    // Pages hold CSRF tokens and names: never cached. The stylesheet and the
    // logo may be, for an hour.
    let cache = if page { "no-store" } else { "private, max-age=3600" };
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(r: Response<ResponseBody>) -> String {
        use http_body_util::BodyExt;
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let bytes = rt.block_on(r.into_body().collect()).unwrap().to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[test]
    fn values_are_escaped_and_no_script_is_written() {
        let look = Look { title: "Contoso <mail>", logo: true };
        let form = Form {
            error: Some("wrong <b>"),
            notice: None,
            username: "\"><script>alert(1)</script>",
            csrf: "tok",
            return_to: "/owa/?a=1&b=\"2\"",
            public: true,
        };
        let r = sign_in(StatusCode::OK, &look, &form, "8h", "15m");
        assert_eq!(r.headers()["content-security-policy"], CSP);
        assert_eq!(r.headers()["cache-control"], "no-store");
        let html = body(r);
        assert!(!html.contains("<script"), "{html}");
        assert!(html.contains("&#34;&#62;&#60;script&#62;") || html.contains("&quot;&gt;&lt;script&gt;"), "{html}");
        assert!(html.contains("Contoso &#60;mail&#62;") || html.contains("Contoso &lt;mail&gt;"), "{html}");
        assert!(html.contains(r#"<label for="username">"#) && html.contains(r#"<label for="password">"#));
        assert!(html.contains(r#"role="alert""#) && html.contains(" checked"));
        assert!(html.contains("/.gatehouse/logo") && !html.contains("http://") && !html.contains("https://"));
        assert!(!html.contains("style=") && !html.contains("onclick"), "no inline style or handler");
        assert!(html.contains("%2Fowa%2F%3Fa%3D1%26b%3D%222%22"), "the return address in the link, encoded: {html}");
    }

    #[test]
    fn only_the_passkey_pages_run_a_script_and_only_ours() {
        let look = Look { title: "Contoso", logo: true };
        let plain = MfaPage { step: "code", user: "bob", has_app: true, ..MfaPage::default() };
        let r = mfa(StatusCode::OK, &look, &plain);
        assert_eq!(r.headers()["content-security-policy"], CSP);
        assert!(!body(r).contains("<script"));
        let options = r#"{"publicKey":{"challenge":"\"><script>x</script>"}}"#;
        let p = MfaPage {
            step: "code",
            user: "bob",
            passkey_options: options,
            passkey_ceremony: "s",
            ..MfaPage::default()
        };
        let r = mfa(StatusCode::OK, &look, &p);
        assert_eq!(r.headers()["content-security-policy"], CSP_WITH_SCRIPT);
        let html = body(r);
        assert_eq!(html.matches("<script").count(), 1, "{html}");
        assert!(html.contains(r#"<script src="/.gatehouse/passkey.js"></script>"#), "{html}");
        assert!(!html.contains("<script>x"), "the options are escaped in their attribute: {html}");
        assert!(!html.contains("onclick") && !html.contains("style="), "no inline handler or style");
        assert!(!PASSKEY_SCRIPT.contains("fetch(") && !PASSKEY_SCRIPT.contains("eval("), "the script loads nothing");
    }

    #[test]
    fn the_stylesheet_loads_nothing() {
        assert!(!STYLE.contains("url(") && !STYLE.contains("@import"), "external resources in style.css");
        let r = stylesheet();
        assert_eq!(r.headers()["content-type"], "text/css; charset=utf-8");
    }
}
