//! A plain listener that only sends clients to HTTPS (`redirect_to`, TMG's
//! "redirect all traffic from HTTP to HTTPS"). It serves no site and runs
//! none of the request pipeline's stages: nothing is forwarded, nobody signs
//! in. It is served by the same connection code as every listener, so the
//! framing guard and the clocks still apply.

use std::sync::Arc;

use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::connection::Connection;
use crate::pages;
use crate::response_body::ResponseBody;
use crate::telemetry::AccessRecord;

/// The hyper service of a redirecting listener.
pub async fn handle(req: Request<Incoming>, conn: Arc<Connection>) -> Result<Response<ResponseBody>, h2::Error> {
    let generation = conn.shared.current();
    let in_flight = conn.activity.begin_request(generation.config.timeouts.stream_idle);
    let log = &conn.shared.access;
    let mut record = AccessRecord::new(log, &conn.info, log.next_id(), req.method().as_str(), req.uri().path());
    let id = record.request_id().to_owned();
    let target = generation.config.listeners.iter().find(|l| *l.name == *conn.info.listener);
    let port = target.and_then(|l| l.redirect_to.as_deref()).and_then(|to| conn.shared.bound(to)).map(|a| a.port());
    let mut resp = match (location(&req, port), port) {
        (Ok(location), _) => {
            // 301 keeps browsers' habit of turning a redirected POST into a
            // GET for GET and HEAD only; 308 keeps every other method and its body.
            let bodiless = req.method() == Method::GET || req.method() == Method::HEAD;
            let status = if bodiless { StatusCode::MOVED_PERMANENTLY } else { StatusCode::PERMANENT_REDIRECT };
            // A body we will not read is not waited for: the connection closes.
            let mut r = pages::page(status, &id, "This address is served over HTTPS.", !bodiless);
            r.headers_mut().insert(header::LOCATION, location);
            r
        }
        (Err(cause), Some(_)) => {
            tracing::info!(request_id = %id, client = %conn.info.peer, listener = %conn.info.listener, cause, "redirect refused");
            record.set_error(cause);
            pages::page(StatusCode::BAD_REQUEST, &id, &format!("The request is malformed: {cause}."), true)
        }
        (Err(_), None) => {
            // Only between a reload that removed the TLS listener and the end
            // of this connection, or when that listener could not bind.
            let cause = "the HTTPS listener is not running";
            tracing::warn!(request_id = %id, client = %conn.info.peer, listener = %conn.info.listener, cause, "redirect impossible");
            record.set_error(cause);
            pages::page(StatusCode::SERVICE_UNAVAILABLE, &id, "The service is unavailable; try again shortly.", true)
        }
    };
    record.set_status(resp.status().as_u16());
    resp.body_mut().finish_with(in_flight, record);
    Ok(resp)
}

/// `https://<host>[:port]<path and query>`: the host the client asked for
/// (its port dropped), the TLS listener's port unless 443. The cause, when
/// there is no host to send the client to, is our own fixed words.
fn location<B>(req: &Request<B>, port: Option<u16>) -> Result<HeaderValue, &'static str> {
    let port = port.ok_or("no HTTPS listener")?;
    let authority = match (req.uri().authority(), req.headers().get(header::HOST)) {
        (Some(a), _) => a.as_str().as_bytes(),
        (None, Some(h)) => h.as_bytes(),
        (None, None) => return Err("no Host header"),
    };
    if let Some(h) = req.headers().get(header::HOST) {
        httpguard::parse_host(h.as_bytes()).map_err(|e| e.cause())?;
    }
    let host = httpguard::parse_host(authority).map_err(|e| e.cause())?.name;
    let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
    // `OPTIONS *` asks about the server: its HTTPS side is at `/`.
    let path = if path.starts_with('/') { path } else { "/" };
    let port = if port == 443 { String::new() } else { format!(":{port}") };
    HeaderValue::from_str(&format!("https://{host}{port}{path}")).map_err(|_| "character not allowed in the target")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(target: &str, host: Option<&str>) -> Request<()> {
        let mut b = Request::builder().uri(target);
        if let Some(h) = host {
            b = b.header(header::HOST, h);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn the_host_path_and_query_go_to_the_tls_port() {
        let r = req("/owa/?a=1&b=%20", Some("Mail.Corp.Example:80"));
        assert_eq!(location(&r, Some(443)).unwrap(), "https://Mail.Corp.Example/owa/?a=1&b=%20");
        assert_eq!(location(&r, Some(8443)).unwrap(), "https://Mail.Corp.Example:8443/owa/?a=1&b=%20");
        let r = req("/", Some("[2001:db8::1]:80"));
        assert_eq!(location(&r, Some(443)).unwrap(), "https://[2001:db8::1]/");
        // An absolute-form target's authority wins, as in routing.
        let r = req("http://mail.corp.example/ews", Some("mail.corp.example"));
        assert_eq!(location(&r, Some(443)).unwrap(), "https://mail.corp.example/ews");
        assert_eq!(location(&req("*", Some("m.example")), Some(443)).unwrap(), "https://m.example/");
    }

    #[test]
    fn no_valid_host_is_no_redirect() {
        assert_eq!(location(&req("/", None), Some(443)), Err("no Host header"));
        assert_eq!(location(&req("/", Some("evil@mail.corp.example")), Some(443)), Err("userinfo (user@) in host"));
        assert!(location(&req("/", Some("a b")), Some(443)).is_err());
        assert!(location(&req("/", Some("")), Some(443)).is_err());
        // Both are checked, even when the authority wins.
        assert!(location(&req("http://mail.corp.example/", Some("x/y")), Some(443)).is_err());
        assert_eq!(location(&req("/", Some("m.example")), None), Err("no HTTPS listener"));
    }
}
