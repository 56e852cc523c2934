//! Protocol switches: which upgrades are forwarded (WebSocket, with its
//! handshake checked), and the tunnel that carries the bytes after a 101.

use std::sync::Arc;
use std::time::Duration;

use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

use super::failure::Failure;
use super::headers;
use crate::conn::Activity;
use crate::response_body::ResponseBody;

/// What to do with an upgrade request (see [`httpguard::framing::is_upgrade_request`]):
/// `Some("websocket")` to forward it as a WebSocket handshake, `None` to serve
/// it as a plain request without upgrading (h2c, any other protocol, or a site
/// with `websocket = false`), or a refusal when it asks for WebSocket with a
/// handshake that RFC 6455 4.1 does not allow.
pub fn websocket_upgrade<B>(req: &Request<B>, site: &crate::config::Site) -> Result<Option<HeaderValue>, Failure> {
    let asks_websocket = req
        .headers()
        .get_all(header::UPGRADE)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"websocket"));
    if !asks_websocket {
        tracing::debug!(site = %site.name, "upgrade to a protocol other than WebSocket ignored; served as HTTP/1.1");
        return Ok(None);
    }
    if !site.websocket {
        tracing::debug!(site = %site.name, "WebSocket is off for this site; served as HTTP/1.1");
        return Ok(None);
    }
    let bad = |why: &str| Err(Failure::BadRequest(format!("WebSocket handshake refused: {why}")));
    if req.method() != Method::GET {
        return bad("the method must be GET");
    }
    let h = req.headers();
    if h.get_all("sec-websocket-version").iter().count() != 1
        || h.get("sec-websocket-version").map(|v| v.as_bytes()) != Some(b"13")
    {
        return bad("Sec-WebSocket-Version must be 13");
    }
    use base64::Engine;
    let key_ok = h.get_all("sec-websocket-key").iter().count() == 1
        && h.get("sec-websocket-key")
            .and_then(|k| base64::engine::general_purpose::STANDARD.decode(k.as_bytes()).ok())
            .is_some_and(|k| k.len() == 16);
    if !key_ok {
        return bad("Sec-WebSocket-Key must be 16 bytes in base64");
    }
    Ok(Some(HeaderValue::from_static("websocket")))
}

/// The backend switched protocols: check it switched to what was asked, start
/// the tunnel between the two upgraded connections, and answer the client's
/// 101. `stream_idle` and `idle` bound the tunnel's silence.
pub fn switch(
    mut resp: Response<Incoming>,
    token: HeaderValue,
    client_side: hyper::upgrade::OnUpgrade,
    activity: &Arc<Activity>,
    stream_idle: Duration,
    idle: Duration,
    lease: Option<crate::farm::Lease>,
) -> Result<Response<ResponseBody>, Failure> {
    let to_asked = resp.headers().get(header::UPGRADE).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"));
    if !to_asked {
        return Err(Failure::BadGateway("backend switched to a protocol other than WebSocket".into()));
    }
    let backend_side = hyper::upgrade::on(&mut resp);
    let in_flight = activity.begin_tunnel(stream_idle);
    let activity = activity.clone();
    tokio::spawn(async move {
        let (_in_flight, _lease) = (in_flight, lease);
        tunnel(client_side, backend_side, activity, idle).await;
    });
    let (mut parts, _) = resp.into_parts();
    headers::strip_hop_by_hop(&mut parts.headers);
    parts.headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    parts.headers.insert(header::UPGRADE, token);
    debug_assert_eq!(parts.status, StatusCode::SWITCHING_PROTOCOLS);
    Ok(Response::from_parts(parts, ResponseBody::local(bytes::Bytes::new())))
}

/// Carries bytes both ways after a protocol switch, until either side closes or
/// the tunnel has been quiet for the stream idle time.
async fn tunnel(
    client: hyper::upgrade::OnUpgrade,
    backend: hyper::upgrade::OnUpgrade,
    activity: Arc<Activity>,
    idle: Duration,
) {
    let (client, backend) = match tokio::join!(client, backend) {
        (Ok(c), Ok(b)) => (c, b),
        (c, b) => {
            tracing::debug!(client_ok = c.is_ok(), backend_ok = b.is_ok(), "protocol switch did not complete");
            return;
        }
    };
    let mut client = TokioIo::new(client);
    let mut backend = TokioIo::new(backend);
    let copy = tokio::io::copy_bidirectional(&mut client, &mut backend);
    tokio::pin!(copy);
    loop {
        let wait = match activity.remaining(idle, idle) {
            Ok(d) => d,
            Err(why) => {
                tracing::debug!(why, "closing an upgraded connection");
                return;
            }
        };
        tokio::select! {
            _ = &mut copy => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn websocket_handshake_is_checked() {
        let site = crate::route::tests::site("s", "l", &[], "/");
        let req = |method: &str, headers: &[(&str, &str)]| {
            let mut b = Request::builder().method(method).uri("/ws");
            for (n, v) in headers {
                b = b.header(*n, *v);
            }
            b.body(()).unwrap()
        };
        let good = [
            ("connection", "Upgrade"),
            ("upgrade", "websocket"),
            ("sec-websocket-version", "13"),
            ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ];
        assert_eq!(websocket_upgrade(&req("GET", &good), &site).unwrap().unwrap(), "websocket");
        assert!(matches!(websocket_upgrade(&req("POST", &good), &site), Err(Failure::BadRequest(_))));
        let mut v8 = good;
        v8[2].1 = "8";
        assert!(matches!(websocket_upgrade(&req("GET", &v8), &site), Err(Failure::BadRequest(_))));
        let mut short = good;
        short[3].1 = "c2hvcnQ=";
        assert!(matches!(websocket_upgrade(&req("GET", &short), &site), Err(Failure::BadRequest(_))));
        let nokey = &good[..3];
        assert!(matches!(websocket_upgrade(&req("GET", nokey), &site), Err(Failure::BadRequest(_))));
        let h2c = [
            ("connection", "Upgrade, HTTP2-Settings"),
            ("upgrade", "h2c"),
            ("http2-settings", "AAMAAABkAAQAoAAAAAIAAAAA"),
        ];
        assert!(websocket_upgrade(&req("GET", &h2c), &site).unwrap().is_none(), "h2c is served without upgrading");
        let mut off = site.clone();
        off.websocket = false;
        assert!(websocket_upgrade(&req("GET", &good), &off).unwrap().is_none());
    }
}
