//! A Kerberos-only backend that answers like the Exchange services, for the
//! client simulations. Like IIS, it authenticates a connection with
//! `Authorization: Negotiate` (SPNEGO or raw Kerberos), checked with the
//! backend's own keytab through MIT (the same `kcd` acceptor gatehouse uses,
//! holding only the backend's key), and keeps the user for the connection's
//! later requests. Every answer carries `X-Backend-User`.
//!
//! Services:
//! - `POST /autodiscover/autodiscover.xml`, `POST /ews/exchange.asmx`: XML naming
//!   the user and the body length.
//! - `RPC_IN_DATA` / `RPC_OUT_DATA` `/rpc/rpcproxy.dll`: a body of at most 16
//!   bytes is an echo request (answered at once); otherwise a channel, whose
//!   body starts with the RTS PDU that opens it (CONN/A1 on OUT, CONN/B1 on
//!   IN, or a recycling PDU; read with the `rpch` crate). What the client
//!   streams into the IN channel after its PDU comes back out of the OUT
//!   channel of the same virtual connection cookie, after a first line
//!   `USER <name>`: the two channels meet only on the same backend, as with
//!   older Exchange versions.
//! - `GET /<vdir>/healthcheck.htm` (anonymous, like Exchange's Managed
//!   Availability pages): `200 OK` and the server's address, or 503 for a
//!   virtual directory set down by [`ExchangeBackend::set_health`].
//! - `POST /mapi/emsmdb/` with `X-RequestType`: `Connect` sets the session
//!   cookies; `Execute` needs them; `NotificationWait` is a long poll: chunked,
//!   `PROCESSING`, then `PENDING <unix ms>` every 300 ms five times (or
//!   `X-Test-Pending` times, for benchmarks), then `DONE`.
//! - `GET /oab/<guid>/data.lzx`: 8 MiB of a known pattern, with `Range` support.
//! - `GET /owa/` sets a session cookie; `POST /owa/service.svc` needs it.
//! - anything else (ActiveSync included): JSON with the user and the body length.
//!
//! Over HTTPS ([`ExchangeBackend::start_tls`]) it enforces Extended Protection
//! as Exchange can: every ticket must carry the channel bindings of the TLS
//! connection it arrived on (`tls-server-end-point` of the backend's own
//! certificate), or it is refused.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::{full, BoxBody, ReceiverStream};

/// One request as the backend saw it.
#[derive(Debug, Clone)]
pub struct Served {
    pub user: String,
    pub method: String,
    pub path: String,
    pub body_bytes: u64,
    /// Whether this request carried a Kerberos token (a new logon).
    pub logon: bool,
}

pub const OAB_SIZE: usize = 8 << 20;

/// Byte `i` of the offline address book file.
pub fn oab_byte(i: usize) -> u8 {
    (i.wrapping_mul(31) % 251) as u8
}

#[derive(Clone)]
pub struct ExchangeBackend {
    pub addr: SocketAddr,
    served: Arc<Mutex<Vec<Served>>>,
    /// OUT channels waiting for their IN channel's bytes, by cookie.
    out_channels: Arc<Mutex<HashMap<Vec<u8>, mpsc::Sender<Bytes>>>>,
    kerberos: Arc<kcd::Delegator>,
    spn: String,
    /// HTTPS with Extended Protection required: the bindings every ticket must carry.
    bindings: Option<Arc<[u8]>>,
    /// Virtual directories whose healthcheck.htm answers 503.
    down: Arc<Mutex<Vec<String>>>,
    /// The healthcheck.htm paths asked for, in order.
    checked: Arc<Mutex<Vec<String>>>,
    stopped: Arc<tokio::sync::watch::Sender<bool>>,
}

impl ExchangeBackend {
    /// `keytab` holds the backend's key for `spn` (`HTTP/backend.ad.test`).
    pub async fn start(keytab: &str, spn: &str, realm: &str) -> ExchangeBackend {
        Self::start_on("127.0.0.1:0".parse().unwrap(), keytab, spn, realm).await.expect("bind")
    }

    pub async fn start_on(addr: SocketAddr, keytab: &str, spn: &str, realm: &str) -> std::io::Result<ExchangeBackend> {
        Self::start_with(addr, keytab, spn, realm, None).await
    }

    /// Over HTTPS with `cert_pem`/`key_pem` (one certificate), requiring
    /// channel bindings in every ticket.
    pub async fn start_tls(keytab: &str, spn: &str, realm: &str, cert_pem: &str, key_pem: &str) -> ExchangeBackend {
        let certs: Vec<rustls::pki_types::CertificateDer<'static>> =
            rustls_pemfile::certs(&mut cert_pem.as_bytes()).collect::<Result<_, _>>().expect("certificate PEM");
        let key = rustls_pemfile::private_key(&mut key_pem.as_bytes()).expect("key PEM").expect("a key");
        // RFC 5929: the certificate's hash (SHA-256 for the test CA's ECDSA-SHA256 certificates).
        use sha2::Digest;
        let bindings = kcd::tls_server_end_point(&sha2::Sha256::digest(&certs[0]));
        let config =
            rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(certs, key)
                .expect("certificate and key");
        Self::start_with("127.0.0.1:0".parse().unwrap(), keytab, spn, realm, Some((Arc::new(config), bindings.into())))
            .await
            .expect("bind")
    }

    async fn start_with(
        addr: SocketAddr,
        keytab: &str,
        spn: &str,
        realm: &str,
        tls: Option<(Arc<rustls::ServerConfig>, Arc<[u8]>)>,
    ) -> std::io::Result<ExchangeBackend> {
        let listener = TcpListener::bind(addr).await?;
        let backend = ExchangeBackend {
            addr: listener.local_addr()?,
            served: Arc::default(),
            out_channels: Arc::default(),
            kerberos: Arc::new(kcd::Delegator::new(&format!("{spn}@{realm}"), keytab, realm)),
            spn: spn.to_owned(),
            bindings: tls.as_ref().map(|(_, b)| b.clone()),
            down: Arc::default(),
            checked: Arc::default(),
            stopped: Arc::new(tokio::sync::watch::channel(false).0),
        };
        let b = backend.clone();
        let acceptor = tls.map(|(config, _)| tokio_rustls::TlsAcceptor::from(config));
        let mut stopped = backend.stopped.subscribe();
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    a = listener.accept() => a,
                    _ = stopped.changed() => return,
                };
                let Ok((sock, _)) = accepted else { continue };
                let _ = sock.set_nodelay(true);
                let b = b.clone();
                let acceptor = acceptor.clone();
                let mut stopped = b.stopped.subscribe();
                tokio::spawn(async move {
                    let user: Arc<Mutex<Option<String>>> = Arc::default();
                    let svc = hyper::service::service_fn(move |req| b.clone().serve(req, user.clone()));
                    let http = hyper::server::conn::http1::Builder::new();
                    let serve = async move {
                        match acceptor {
                            None => {
                                let _ = http.serve_connection(TokioIo::new(sock), svc).await;
                            }
                            Some(a) => {
                                if let Ok(tls) = a.accept(sock).await {
                                    let _ = http.serve_connection(TokioIo::new(tls), svc).await;
                                }
                            }
                        }
                    };
                    tokio::select! {
                        _ = serve => {}
                        _ = stopped.changed() => {}
                    }
                });
            }
        });
        Ok(backend)
    }

    /// Stops as a server that goes down does: the listener closes and every
    /// connection (open RPC channels too) is cut.
    pub fn stop(&self) {
        let _ = self.stopped.send(true);
        // The OUT channels waiting for IN bytes end with their connections.
        self.out_channels.lock().unwrap().clear();
    }

    /// What `/<vdir>/healthcheck.htm` answers (`vdir` like `"/owa"`): 200, or 503.
    pub fn set_health(&self, vdir: &str, healthy: bool) {
        let vdir = vdir.to_ascii_lowercase();
        let mut down = self.down.lock().unwrap();
        down.retain(|d| *d != vdir);
        if !healthy {
            down.push(vdir);
        }
    }

    /// The healthcheck.htm paths asked for so far.
    pub fn health_checks(&self) -> Vec<String> {
        self.checked.lock().unwrap().clone()
    }

    pub fn served(&self) -> Vec<Served> {
        self.served.lock().unwrap().clone()
    }

    /// The connection's user, after checking a new token if the request has one.
    fn logon(&self, req: &Request<Incoming>, conn_user: &Mutex<Option<String>>) -> Result<(String, bool), String> {
        let token = req
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Negotiate "))
            .map(|t| base64::engine::general_purpose::STANDARD.decode(t.trim()));
        match token {
            None => conn_user.lock().unwrap().clone().map(|u| (u, false)).ok_or_else(|| "no ticket".into()),
            Some(Err(_)) => Err("token is not base64".into()),
            Some(Ok(bytes)) => {
                let krb = match spnego::parse_client_token(&bytes) {
                    Ok(spnego::ClientToken::Init(init)) => init.mech_token.ok_or("SPNEGO without a token")?,
                    Ok(spnego::ClientToken::RawKerberos) => bytes,
                    other => return Err(format!("not a Kerberos token: {other:?}")),
                };
                let accepted =
                    self.kerberos.accept(&krb, &self.spn, self.bindings.as_deref()).map_err(|e| e.to_string())?;
                if self.bindings.is_some() && !accepted.channel_bound {
                    return Err("Extended Protection: the ticket carries no channel bindings".into());
                }
                *conn_user.lock().unwrap() = Some(accepted.client.clone());
                Ok((accepted.client, true))
            }
        }
    }

    async fn serve(
        self,
        req: Request<Incoming>,
        conn_user: Arc<Mutex<Option<String>>>,
    ) -> Result<Response<BoxBody>, Infallible> {
        if let Some(vdir) = req.uri().path().to_ascii_lowercase().strip_suffix("/healthcheck.htm") {
            // Managed Availability's pages are anonymous.
            self.checked.lock().unwrap().push(req.uri().path().to_owned());
            let up = !self.down.lock().unwrap().iter().any(|d| d == vdir);
            let (status, text) =
                if up { (200, format!("200 OK<br/>{}", self.addr)) } else { (503, "503 Service Unavailable".into()) };
            return Ok(Response::builder()
                .status(status)
                .header("content-type", "text/html")
                .body(full(Bytes::from(text)))
                .unwrap());
        }
        let (user, logon) = match self.logon(&req, &conn_user) {
            Ok(u) => u,
            Err(why) => {
                eprintln!("exchange backend: 401: {why}");
                return Ok(Response::builder()
                    .status(StatusCode::UNAUTHORIZED)
                    .header("www-authenticate", "Negotiate")
                    .header("x-refused", why)
                    .body(full(Bytes::new()))
                    .unwrap());
            }
        };
        let method = req.method().as_str().to_owned();
        let path = req.uri().path().to_ascii_lowercase();
        let cookies = req.headers().get("cookie").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        let request_type = req.headers().get("x-requesttype").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        let range = req.headers().get("range").and_then(|v| v.to_str().ok()).map(str::to_owned);
        // For benchmarks: how many PENDING chunks a NotificationWait sends (5 by default).
        let pending: u32 =
            req.headers().get("x-test-pending").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok()).unwrap_or(5);
        let declared: u64 =
            req.headers().get("content-length").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok()).unwrap_or(0);
        let record =
            |body_bytes| Served { user: user.clone(), method: method.clone(), path: path.clone(), body_bytes, logon };
        let mut body = req.into_body();

        if (method == "RPC_IN_DATA" || method == "RPC_OUT_DATA") && declared > 16 {
            // A channel: its first PDU names the virtual connection.
            let mut first = Vec::new();
            let start = loop {
                match rpch::channel_start(&first) {
                    Err(rpch::Error::Incomplete { .. }) => {}
                    other => break other,
                }
                match body.frame().await {
                    Some(Ok(f)) => {
                        if let Some(d) = f.data_ref() {
                            first.extend_from_slice(d);
                        }
                    }
                    _ => break rpch::channel_start(&first),
                }
            };
            let Ok(start) = start else {
                return Ok(Response::builder()
                    .status(400)
                    .body(full(Bytes::from_static(b"no RTS channel start\n")))
                    .unwrap());
            };
            let pdu_len = usize::from(u16::from_le_bytes([first[8], first[9]]));
            let cookie = start.virtual_connection.to_vec();
            let rest = first.split_off(pdu_len);
            if method == "RPC_OUT_DATA" {
                let (tx, rx) = mpsc::channel::<Bytes>(64);
                let _ = tx.send(Bytes::from(format!("USER {user}\n"))).await;
                self.out_channels.lock().unwrap().insert(cookie, tx);
                self.served.lock().unwrap().push(record(pdu_len as u64));
                let (ftx, frx) = mpsc::channel::<Result<Frame<Bytes>, Infallible>>(64);
                tokio::spawn(async move {
                    let mut rx = rx;
                    while let Some(b) = rx.recv().await {
                        if ftx.send(Ok(Frame::data(b))).await.is_err() {
                            return;
                        }
                    }
                });
                let resp = Response::builder()
                    .header("content-length", "1073741824")
                    .header("x-backend-user", &user)
                    .body(BodyExt::boxed(StreamBody::new(ReceiverStream(frx))))
                    .unwrap();
                return Ok(resp);
            }
            // IN channel: forward to the OUT channel of the same cookie.
            let out = self.out_channels.lock().unwrap().get(&cookie).cloned();
            let mut total = (pdu_len + rest.len()) as u64;
            if let (Some(out), false) = (&out, rest.is_empty()) {
                let _ = out.send(Bytes::from(rest)).await;
            }
            while let Some(Ok(f)) = body.frame().await {
                if let Some(d) = f.data_ref() {
                    total += d.len() as u64;
                    if let Some(out) = &out {
                        let _ = out.send(d.clone()).await;
                    }
                }
            }
            self.served.lock().unwrap().push(record(total));
            return Ok(with_user(Response::builder(), &user).body(full(Bytes::new())).unwrap());
        }

        let mut n = 0u64;
        while let Some(Ok(f)) = body.frame().await {
            n += f.data_ref().map_or(0, |d| d.len() as u64);
        }
        self.served.lock().unwrap().push(record(n));
        let resp = match (method.as_str(), path.as_str()) {
            ("RPC_IN_DATA" | "RPC_OUT_DATA", _) => {
                // Echo request: an RTS echo answer.
                with_user(Response::builder(), &user)
                    .body(full(Bytes::from_static(&[5, 0, 20, 3, 16, 0, 0, 0, 20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])))
                    .unwrap()
            }
            (_, "/autodiscover/autodiscover.xml") | (_, "/ews/exchange.asmx") => with_user(Response::builder(), &user)
                .header("content-type", "text/xml; charset=utf-8")
                .body(full(Bytes::from(format!(
                    "<Response><User>{user}</User><BodyBytes>{n}</BodyBytes></Response>\n"
                ))))
                .unwrap(),
            ("POST", p) if p.starts_with("/mapi/") => mapi(&user, &request_type, &cookies, pending),
            ("GET", p) if p.starts_with("/oab/") && p.ends_with("/data.lzx") => oab(&user, range.as_deref()),
            ("GET", "/owa/") => with_user(Response::builder(), &user)
                .header("set-cookie", "X-OWA-CANARY=owa-session; path=/owa")
                .header("content-type", "text/html")
                .body(full(Bytes::from(format!("<html><body>Outlook on the web: {user}</body></html>\n"))))
                .unwrap(),
            ("POST", "/owa/service.svc") if !cookies.contains("X-OWA-CANARY=owa-session") => {
                with_user(Response::builder().status(440), &user)
                    .body(full(Bytes::from_static(b"session expired\n")))
                    .unwrap()
            }
            _ => with_user(Response::builder(), &user)
                .header("content-type", "application/json")
                .body(full(Bytes::from(
                    serde_json::json!({"user": user, "method": method, "path": path, "body_bytes": n}).to_string(),
                )))
                .unwrap(),
        };
        Ok(resp)
    }
}

fn with_user(b: http::response::Builder, user: &str) -> http::response::Builder {
    b.header("x-backend-user", user)
}

fn now_ms() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_millis()
}

/// MS-OXCMAPIHTTP, as much as a client simulation needs.
fn mapi(user: &str, request_type: &str, cookies: &str, pending: u32) -> Response<BoxBody> {
    let has_session = cookies.contains("MapiContext=ctx-") && cookies.contains("MapiSequence=");
    let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, Infallible>>(16);
    let mut b = with_user(Response::builder(), user)
        .header("content-type", "application/mapi-http")
        .header("x-requesttype", request_type)
        .header("x-responsecode", "0");
    match request_type {
        "Connect" => {
            b = b
                .header("set-cookie", format!("MapiContext=ctx-{}; path=/mapi/emsmdb", now_ms()))
                .header("set-cookie", "MapiSequence=1; path=/mapi/emsmdb");
            tokio::spawn(async move {
                let _ = tx.send(Ok(Frame::data(Bytes::from("PROCESSING\r\nDONE\r\n")))).await;
            });
        }
        "Execute" | "NotificationWait" if !has_session => {
            return with_user(Response::builder(), user)
                .header("x-responsecode", "10")
                .body(full(Bytes::from_static(b"no session context\n")))
                .unwrap();
        }
        "Execute" => {
            tokio::spawn(async move {
                let _ = tx.send(Ok(Frame::data(Bytes::from("PROCESSING\r\nDONE\r\n")))).await;
            });
        }
        "NotificationWait" => {
            tokio::spawn(async move {
                let _ = tx.send(Ok(Frame::data(Bytes::from("PROCESSING\r\n")))).await;
                for _ in 0..pending {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    if tx.send(Ok(Frame::data(Bytes::from(format!("PENDING {}\r\n", now_ms()))))).await.is_err() {
                        return;
                    }
                }
                let _ = tx.send(Ok(Frame::data(Bytes::from("DONE\r\n")))).await;
            });
        }
        _ => {
            return with_user(Response::builder(), user)
                .header("x-responsecode", "7")
                .body(full(Bytes::from_static(b"unknown request type\n")))
                .unwrap();
        }
    }
    b.body(BodyExt::boxed(StreamBody::new(ReceiverStream(rx)))).unwrap()
}

/// The offline address book file, whole or a `bytes=a-b` range.
fn oab(user: &str, range: Option<&str>) -> Response<BoxBody> {
    let whole = || (0..OAB_SIZE).map(oab_byte).collect::<Vec<u8>>();
    let parsed = range.and_then(|r| r.strip_prefix("bytes=")).and_then(|r| {
        let (a, b) = r.split_once('-')?;
        let a: usize = a.parse().ok()?;
        let b: usize = if b.is_empty() { OAB_SIZE - 1 } else { b.parse().ok()? };
        (a <= b && b < OAB_SIZE).then_some((a, b))
    });
    match parsed {
        Some((a, b)) => with_user(Response::builder().status(206), user)
            .header("content-range", format!("bytes {a}-{b}/{OAB_SIZE}"))
            .header("accept-ranges", "bytes")
            .body(full(Bytes::from((a..=b).map(oab_byte).collect::<Vec<u8>>())))
            .unwrap(),
        None => with_user(Response::builder(), user)
            .header("accept-ranges", "bytes")
            .body(full(Bytes::from(whole())))
            .unwrap(),
    }
}
