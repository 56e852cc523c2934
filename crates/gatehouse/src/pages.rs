//! The short pages gatehouse answers with itself. They name the status, say what
//! happened in words a help desk can repeat, and carry the request id that finds
//! the log line. They never echo request data back (no reflected content).

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};

use crate::body::ResponseBody;

pub fn page(status: StatusCode, request_id: &str, what: &str, close: bool) -> Response<ResponseBody> {
    let reason = status.canonical_reason().unwrap_or("Error");
    let body = format!(
        "<!DOCTYPE html>\n<html><head><title>{code} {reason}</title></head>\n<body><h1>{code} {reason}</h1>\n<p>{what}</p>\n<p>Request id: {request_id}</p></body></html>\n",
        code = status.as_u16(),
    );
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

/// A complete HTTP/1.1 response, for refusals written below the HTTP server.
pub fn raw_refusal(status: u16, cause: &str) -> Vec<u8> {
    let reason = StatusCode::from_u16(status).ok().and_then(|s| s.canonical_reason()).unwrap_or("Bad Request");
    let body = format!("{status} {reason}: {cause}\n");
    format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}
