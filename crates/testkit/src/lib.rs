//! A small programmable HTTP/1.1 backend for gatehouse's integration tests,
//! benchmarks and demo. It records what reached it, so tests can assert what
//! the proxy forwarded, and it can hold a response open until a test says go.
//!
//! Routes:
//! - `/bytes/N`: N bytes (Content-Length), streamed in 64 KiB pieces.
//! - `/gated`: chunked; sends `first`, waits for [`Backend::release`], sends `second`.
//! - `/chunks/K/MS`: chunked; K chunks of `chunk-i\n`, MS milliseconds apart.
//! - `/delay/MS`: waits MS milliseconds, then answers like `/`.
//! - `/status/N`: answers with status N.
//! - `/ws`: switches protocols to an echo of raw bytes when asked to upgrade.
//! - `/healthz`: 200, or 503 after [`Backend::set_healthy`]`(false)`.
//! - `/mapi/...` with `X-RequestType: Connect`: answers like `/`, and sets a
//!   `MapiContext` session cookie of this backend's own (as Exchange's MAPI
//!   over HTTP does).
//! - anything else: reads the whole body (counting, not keeping it) and answers
//!   JSON with the method, path, version, headers and body length.

#![forbid(unsafe_code)]

pub mod config;
pub mod exchange;
pub mod heap;
pub mod lab;
pub mod net;
pub mod process;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, Semaphore};

/// What one request looked like when it reached the backend.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body_bytes: u64,
    /// False when the body ended in an error (the proxy gave up on it).
    pub body_complete: bool,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

#[derive(Clone)]
pub struct Backend {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    gate: Arc<Semaphore>,
    connections: Arc<std::sync::atomic::AtomicUsize>,
    /// Keep a [`Seen`] of every request (tests); off for benchmarks, where the
    /// record would grow without bound and cost more than the proxy under test.
    record: bool,
    /// Flips to true on [`Backend::stop`]: the listener and every connection close.
    stopped: Arc<tokio::sync::watch::Sender<bool>>,
    healthy: Arc<std::sync::atomic::AtomicBool>,
}

impl Backend {
    /// Starts on an ephemeral loopback port.
    pub async fn start() -> Backend {
        Self::start_on("127.0.0.1:0".parse().unwrap()).await.expect("bind backend")
    }

    /// For benchmarks: serves like [`Backend::start_on`] but keeps no record.
    pub async fn start_unrecorded(addr: SocketAddr) -> std::io::Result<Backend> {
        Self::start_with(addr, false).await
    }

    pub async fn start_on(addr: SocketAddr) -> std::io::Result<Backend> {
        Self::start_with(addr, true).await
    }

    async fn start_with(addr: SocketAddr, record: bool) -> std::io::Result<Backend> {
        let listener = TcpListener::bind(addr).await?;
        let backend = Backend {
            addr: listener.local_addr()?,
            seen: Arc::default(),
            gate: Arc::new(Semaphore::new(0)),
            connections: Arc::default(),
            record,
            stopped: Arc::new(tokio::sync::watch::channel(false).0),
            healthy: Arc::new(std::sync::atomic::AtomicBool::new(true)),
        };
        let b = backend.clone();
        let mut stopped = backend.stopped.subscribe();
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    a = listener.accept() => a,
                    _ = stopped.changed() => return,
                };
                let Ok((sock, _)) = accepted else {
                    continue;
                };
                let _ = sock.set_nodelay(true);
                b.connections.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let b = b.clone();
                let mut stopped = b.stopped.subscribe();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn({
                        let b = b.clone();
                        move |req| b.clone().serve(req)
                    });
                    let conn = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(sock), svc)
                        .with_upgrades();
                    tokio::select! {
                        _ = conn => {}
                        _ = stopped.changed() => {}
                    }
                });
            }
        });
        Ok(backend)
    }

    /// Stops as a killed server does: the listening socket closes (new
    /// connections are refused) and every open connection is cut, mid-request
    /// or not. Start another on the same `addr` to bring it back.
    pub fn stop(&self) {
        let _ = self.stopped.send(true);
    }

    /// What `/healthz` answers: 200, or 503.
    pub fn set_healthy(&self, healthy: bool) {
        self.healthy.store(healthy, std::sync::atomic::Ordering::Relaxed);
    }

    /// Everything that reached the backend so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Lets one `/gated` response send its second chunk.
    pub fn release(&self) {
        self.gate.add_permits(1);
    }

    async fn serve(self, mut req: Request<Incoming>) -> Result<Response<BoxBody>, Infallible> {
        let path = req.uri().path().to_owned();
        let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        if !self.record {
            if let ["bytes", n] = parts.as_slice() {
                // The benchmark's hot path: no record, no header copies.
                let (_, _) = drain(req.into_body()).await;
                let n: u64 = n.parse().unwrap_or(0);
                return Ok(Response::builder().header("content-length", n).body(stream_bytes(n)).unwrap());
            }
        }
        let headers: Vec<(String, String)> = req
            .headers()
            .iter()
            .map(|(n, v)| (n.to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect();
        let method = req.method().to_string();
        let record = |bytes, complete| Seen {
            method: method.clone(),
            path: req.uri().path_and_query().map_or("/", |p| p.as_str()).to_owned(),
            headers: headers.clone(),
            body_bytes: bytes,
            body_complete: complete,
        };
        match parts.as_slice() {
            ["ws"] if req.headers().contains_key("upgrade") => {
                let seen = record(0, true);
                if self.record {
                    self.seen.lock().unwrap().push(seen);
                }
                let on_upgrade = hyper::upgrade::on(&mut req);
                tokio::spawn(async move {
                    if let Ok(up) = on_upgrade.await {
                        let mut io = TokioIo::new(up);
                        let mut buf = [0u8; 4096];
                        while let Ok(n) = io.read(&mut buf).await {
                            if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                    }
                });
                let resp = Response::builder()
                    .status(StatusCode::SWITCHING_PROTOCOLS)
                    .header("connection", "upgrade")
                    .header("upgrade", "websocket")
                    .body(full(Bytes::new()))
                    .unwrap();
                return Ok(resp);
            }
            _ => {}
        }
        let seen = {
            let r = record(0, true);
            let (bytes, complete) = drain(req.into_body()).await;
            Seen { body_bytes: bytes, body_complete: complete, ..r }
        };
        if self.record {
            self.seen.lock().unwrap().push(seen.clone());
        }
        let resp = match parts.as_slice() {
            ["bytes", n] => {
                let n: u64 = n.parse().unwrap_or(0);
                Response::builder().header("content-length", n).body(stream_bytes(n)).unwrap()
            }
            ["gated"] => {
                let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, Infallible>>(2);
                let gate = self.gate.clone();
                tokio::spawn(async move {
                    let _ = tx.send(Ok(Frame::data(Bytes::from_static(b"first\n")))).await;
                    if let Ok(p) = gate.acquire().await {
                        p.forget();
                    }
                    let _ = tx.send(Ok(Frame::data(Bytes::from_static(b"second\n")))).await;
                });
                Response::new(BodyExt::boxed(StreamBody::new(ReceiverStream(rx))))
            }
            ["chunks", k, ms] => {
                let (k, ms): (u32, u64) = (k.parse().unwrap_or(1), ms.parse().unwrap_or(0));
                let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, Infallible>>(2);
                tokio::spawn(async move {
                    for i in 0..k {
                        if i > 0 {
                            tokio::time::sleep(Duration::from_millis(ms)).await;
                        }
                        let _ = tx.send(Ok(Frame::data(Bytes::from(format!("chunk-{i}\n"))))).await;
                    }
                });
                Response::new(BodyExt::boxed(StreamBody::new(ReceiverStream(rx))))
            }
            ["healthz"] if !self.healthy.load(std::sync::atomic::Ordering::Relaxed) => Response::builder()
                .status(StatusCode::SERVICE_UNAVAILABLE)
                .body(full(Bytes::from_static(b"unhealthy\n")))
                .unwrap(),
            ["status", n] => {
                let code = n.parse().ok().and_then(|c| StatusCode::from_u16(c).ok()).unwrap_or(StatusCode::OK);
                Response::builder().status(code).body(full(Bytes::from_static(b"status\n"))).unwrap()
            }
            ["delay", ms] => {
                tokio::time::sleep(Duration::from_millis(ms.parse().unwrap_or(0))).await;
                echo(&seen)
            }
            ["mapi", ..] if seen.header("x-requesttype") == Some("Connect") => {
                static SESSIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
                let n = SESSIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let mut resp = echo(&seen);
                let cookie = format!("MapiContext=ctx-{}-{n}; path=/mapi/emsmdb", self.addr.port());
                resp.headers_mut().append("set-cookie", cookie.parse().unwrap());
                resp
            }
            _ => echo(&seen),
        };
        Ok(resp)
    }
}

type BoxBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

fn full(b: Bytes) -> BoxBody {
    BodyExt::boxed(Full::new(b))
}

fn echo(seen: &Seen) -> Response<BoxBody> {
    let headers: serde_json::Map<String, serde_json::Value> =
        seen.headers.iter().map(|(n, v)| (n.clone(), serde_json::Value::String(v.clone()))).collect();
    let body = serde_json::json!({
        "method": seen.method,
        "path": seen.path,
        "headers": headers,
        "body_bytes": seen.body_bytes,
    });
    Response::builder()
        .header("content-type", "application/json")
        .body(full(Bytes::from(body.to_string() + "\n")))
        .unwrap()
}

async fn drain(mut body: Incoming) -> (u64, bool) {
    let mut n = 0;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(f) => n += f.data_ref().map_or(0, |d| d.len() as u64),
            Err(_) => return (n, false),
        }
    }
    (n, true)
}

fn stream_bytes(n: u64) -> BoxBody {
    static PIECE: [u8; 65536] = [b'x'; 65536];
    let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, Infallible>>(4);
    tokio::spawn(async move {
        let mut left = n;
        while left > 0 {
            let k = left.min(PIECE.len() as u64) as usize;
            if tx.send(Ok(Frame::data(Bytes::from_static(&PIECE[..k])))).await.is_err() {
                return;
            }
            left -= k as u64;
        }
    });
    BodyExt::boxed(StreamBody::new(ReceiverStream(rx)))
}

/// mpsc receiver as a futures Stream, without pulling in tokio-stream.
struct ReceiverStream<T>(mpsc::Receiver<T>);

impl<T> futures_core::Stream for ReceiverStream<T> {
    type Item = T;
    fn poll_next(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Option<T>> {
        self.0.poll_recv(cx)
    }
}
