//! Which session a request belongs to, from what the protocols put in it:
//! the virtual connection cookie at the start of an Outlook Anywhere
//! channel's body (see the `rpch` crate), the `MapiContext` cookie of MAPI
//! over HTTP (set by the backend on `Connect`, sent back on every request of
//! the session).

use http::header::{HeaderMap, COOKIE, SET_COOKIE};
use http::Method;

/// The MAPI over HTTP session cookie (MS-OXCMAPIHTTP 2.2.3.1).
const MAPI_CONTEXT: &str = "MapiContext";

/// The longest session cookie value kept (Exchange's are well under 200 bytes).
const MAX_VALUE: usize = 1024;

/// The channel an Outlook Anywhere method opens.
pub fn rpc_channel(method: &Method) -> Option<rpch::Channel> {
    match method.as_str() {
        "RPC_IN_DATA" => Some(rpch::Channel::In),
        "RPC_OUT_DATA" => Some(rpch::Channel::Out),
        _ => None,
    }
}

/// The virtual connection a channel's first bytes name, when they open a
/// channel in the method's direction (an OUT method with an IN channel's PDU
/// is no channel).
pub fn rpc_session(method: &Method, first_bytes: &[u8]) -> Result<[u8; 16], rpch::Error> {
    let start = rpch::channel_start(first_bytes)?;
    if Some(start.direction()) != rpc_channel(method) {
        return Err(rpch::Error::NotChannelStart);
    }
    Ok(start.virtual_connection)
}

/// The `MapiContext` a request carries.
pub fn mapi_context(headers: &HeaderMap) -> Option<Vec<u8>> {
    let value = super::cookie::cookie_values(headers, MAPI_CONTEXT).next()?;
    (!value.is_empty() && value.len() <= MAX_VALUE).then(|| value.as_bytes().to_vec())
}

/// The `MapiContext` a backend's answer sets (a `Connect` response).
pub fn mapi_context_set(headers: &HeaderMap) -> Option<Vec<u8>> {
    headers.get_all(SET_COOKIE).iter().filter_map(|v| v.to_str().ok()).find_map(|v| {
        let (name, rest) = v.split_once('=')?;
        let value = rest.split(';').next()?.trim().trim_matches('"');
        (name.trim() == MAPI_CONTEXT && !value.is_empty() && value.len() <= MAX_VALUE)
            .then(|| value.as_bytes().to_vec())
    })
}

/// Removes cookie `name` from the request's `Cookie` headers (the backend
/// has no use for gatehouse's own cookie), keeping the others in order.
pub fn remove_cookie(headers: &mut HeaderMap, name: &str) {
    let values: Vec<String> =
        headers.get_all(COOKIE).iter().filter_map(|v| v.to_str().ok().map(str::to_owned)).collect();
    if !values.iter().any(|v| v.split(';').any(|p| p.trim().split('=').next() == Some(name))) {
        return;
    }
    headers.remove(COOKIE);
    for v in values {
        let kept: Vec<&str> =
            v.split(';').map(str::trim).filter(|p| !p.is_empty() && p.split('=').next() != Some(name)).collect();
        if let (false, Ok(value)) = (kept.is_empty(), http::HeaderValue::from_str(&kept.join("; "))) {
            headers.append(COOKIE, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outlook_anywhere_channels_name_their_session() {
        let vc = *b"virtual-conn-01!";
        let out = Method::from_bytes(b"RPC_OUT_DATA").unwrap();
        let inn = Method::from_bytes(b"RPC_IN_DATA").unwrap();
        assert_eq!(rpc_session(&out, &rpch::build::conn_a1(&vc, &[1; 16])), Ok(vc));
        assert_eq!(rpc_session(&inn, &rpch::build::conn_b1(&vc, &[2; 16], &[3; 16])), Ok(vc));
        assert_eq!(rpc_session(&inn, &rpch::build::in_r1_a1(&vc, &[2; 16], &[4; 16])), Ok(vc));
        // A PDU of the other direction, garbage, a POST: no session.
        assert!(rpc_session(&inn, &rpch::build::conn_a1(&vc, &[1; 16])).is_err());
        assert!(rpc_session(&out, b"session-cookie-1").is_err());
        assert!(rpc_session(&Method::POST, &rpch::build::conn_a1(&vc, &[1; 16])).is_err());
    }

    #[test]
    fn mapi_sessions_by_their_cookie() {
        let mut req = HeaderMap::new();
        req.insert(COOKIE, "MapiSequence=3; MapiContext=ctx-42".parse().unwrap());
        assert_eq!(mapi_context(&req), Some(b"ctx-42".to_vec()));
        let mut resp = HeaderMap::new();
        resp.append(SET_COOKIE, "MapiSequence=1; path=/mapi/emsmdb".parse().unwrap());
        resp.append(SET_COOKIE, "MapiContext=ctx-42; path=/mapi/emsmdb".parse().unwrap());
        assert_eq!(mapi_context_set(&resp), Some(b"ctx-42".to_vec()));
        let mut long = HeaderMap::new();
        long.insert(COOKIE, format!("MapiContext={}", "x".repeat(2000)).parse().unwrap());
        assert_eq!(mapi_context(&long), None, "an oversized value is no session");
        assert_eq!(mapi_context(&HeaderMap::new()), None);
    }

    #[test]
    fn our_cookie_is_removed_and_the_others_kept() {
        let mut h = HeaderMap::new();
        h.append(COOKIE, "a=1; gatehouse_backend=x.y; b=2".parse().unwrap());
        h.append(COOKIE, "gatehouse_backend=z".parse().unwrap());
        remove_cookie(&mut h, "gatehouse_backend");
        let left: Vec<&str> = h.get_all(COOKIE).iter().map(|v| v.to_str().unwrap()).collect();
        assert_eq!(left, ["a=1; b=2"]);
        let mut untouched = HeaderMap::new();
        untouched.insert(COOKIE, "a=1;b=2".parse().unwrap());
        remove_cookie(&mut untouched, "gatehouse_backend");
        assert_eq!(untouched.get(COOKIE).unwrap(), "a=1;b=2", "left as sent when ours is not there");
    }
}
