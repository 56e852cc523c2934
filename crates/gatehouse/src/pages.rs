//! The short pages gatehouse answers with itself. They name the status, say what
//! happened in words a help desk can repeat, and carry the request id that finds
//! the log line. They never echo request data back (no reflected content).

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};

use crate::response_body::ResponseBody;

/// The one page format, for answers from hyper's side and from below it alike.
fn html(status: StatusCode, request_id: &str, what: &str) -> String {
    let reason = status.canonical_reason().unwrap_or("Error");
    format!(
        "<!DOCTYPE html>\n<html><head><title>{code} {reason}</title></head>\n<body><h1>{code} {reason}</h1>\n<p>{what}</p>\n<p>Request id: {request_id}</p></body></html>\n",
        code = status.as_u16(),
    )
}

/// Text as HTML: for the few words of a page that came from the user (their
/// own sign-in name).
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

pub fn page(status: StatusCode, request_id: &str, what: &str, close: bool) -> Response<ResponseBody> {
    let body = html(status, request_id, what);
    let mut resp = Response::new(ResponseBody::local(Bytes::from(body)));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(v) = HeaderValue::from_str(request_id) {
        h.insert("x-request-id", v);
    }
    if close {
        h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}

/// A complete HTTP/1.1 response, for refusals written below the HTTP server:
/// the same page, headers and request id as [`page`]. `cause` is one of the
/// guard's own fixed phrases, never request data.
pub fn raw_refusal(status: u16, cause: &str, request_id: &str) -> Vec<u8> {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    let reason = status.canonical_reason().unwrap_or("Error");
    let what = match status.as_u16() {
        408 => "The request was not received in time.".to_owned(),
        431 => format!("The request headers are too large: {cause}."),
        503 => "The service is unavailable; try again shortly.".to_owned(),
        _ => format!("The request is malformed: {cause}."),
    };
    let body = html(status, request_id, &what);
    format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: text/html; charset=utf-8\r\nCache-Control: no-store\r\nX-Request-Id: {request_id}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len(),
        code = status.as_u16(),
    )
    .into_bytes()
}
