//! Connections to backends, pooled per (backend, identity).
//!
//! The pool key carries the identity the connection speaks for, because Windows
//! backends bind authentication to the TCP connection: a connection that
//! authenticated as one user must never carry another user's request. Anonymous
//! traffic has a key of its own. We keep our own small pool instead of
//! hyper-util's client pool because that pool keys on the origin alone.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::config::Backend;
use crate::request_body::RequestBody;

/// Who a backend connection speaks for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Identity {
    Anonymous,
    /// An authenticated user, as `DOMAIN\user`.
    User(Arc<str>),
    /// One client connection (by its `ConnInfo::id`) on a site
    /// without `auth`, after its own credentials, or a backend's connection-bound
    /// challenge, went over a backend connection: that backend connection may
    /// hold a Windows logon, so it serves this client connection alone.
    Connection(u64),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PoolKey {
    /// [`Target::pool_id`].
    pub backend: Arc<str>,
    pub identity: Identity,
}

/// One backend connection's sending half.
pub struct Sender {
    send: SendRequest<RequestBody>,
    /// Channel-binding application data of this connection (`tls-server-end-point`
    /// of the backend's certificate), for Extended Protection; None without TLS.
    pub binding: Option<Arc<[u8]>>,
}

impl Sender {
    pub fn is_ready(&self) -> bool {
        self.send.is_ready()
    }

    pub fn is_closed(&self) -> bool {
        self.send.is_closed()
    }

    pub async fn ready(&mut self) -> hyper::Result<()> {
        self.send.ready().await
    }

    pub fn try_send_request(
        &mut self,
        req: http::Request<RequestBody>,
    ) -> impl std::future::Future<
        Output = Result<
            http::Response<hyper::body::Incoming>,
            hyper::client::conn::TrySendError<http::Request<RequestBody>>,
        >,
    > {
        self.send.try_send_request(req)
    }
}

/// One backend as this configuration generation reaches it.
pub struct Target {
    /// The origin plus the configuration generation that built this target:
    /// connections made under one TLS policy are never reused under another.
    pub pool_id: Arc<str>,
    host: String,
    port: u16,
    tls: Option<(TlsConnector, ServerName<'static>)>,
}

impl Target {
    pub fn new(backend: &Backend) -> Result<Self, String> {
        let tls = match &backend.tls {
            None => None,
            Some(t) => {
                let config = crate::tls::client_config(t)?;
                let name = ServerName::try_from(t.server_name.clone())
                    .map_err(|_| format!("`{}` is not a valid TLS server name", t.server_name))?;
                Some((TlsConnector::from(config), name))
            }
        };
        static GENERATION: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let generation = GENERATION.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(Target {
            pool_id: format!("{}#{generation}", backend.origin).into(),
            host: backend.host.clone(),
            port: backend.port,
            tls,
        })
    }

    /// Opens a new connection: TCP, TLS if the backend is https, HTTP/1.1.
    pub async fn connect(&self, timeout: Duration) -> Result<Sender, ConnectError> {
        match tokio::time::timeout(timeout, self.connect_inner()).await {
            Ok(r) => r,
            Err(_) => Err(ConnectError::Timeout),
        }
    }

    async fn connect_inner(&self) -> Result<Sender, ConnectError> {
        let tcp =
            TcpStream::connect((self.host.as_str(), self.port)).await.map_err(|e| ConnectError::Tcp(e.to_string()))?;
        let _ = tcp.set_nodelay(true);
        match &self.tls {
            None => handshake(tcp, None).await,
            Some((connector, name)) => {
                let tls = connector.connect(name.clone(), tcp).await.map_err(|e| ConnectError::Tls(e.to_string()))?;
                let binding = tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|chain| chain.first())
                    .map(|leaf| kcd::tls_server_end_point(&crate::tls::server_end_point(leaf)).into());
                handshake(tls, binding).await
            }
        }
    }
}

async fn handshake<S>(io: S, binding: Option<Arc<[u8]>>) -> Result<Sender, ConnectError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (send, conn) = hyper::client::conn::http1::Builder::new()
        .max_buf_size(512 * 1024)
        .handshake(TokioIo::new(io))
        .await
        .map_err(|e| ConnectError::Http(e.to_string()))?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(error = %e, "backend connection ended with an error");
        }
    });
    Ok(Sender { send, binding })
}

#[derive(Debug)]
pub enum ConnectError {
    Timeout,
    Tcp(String),
    Tls(String),
    Http(String),
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectError::Timeout => f.write_str("connect timed out"),
            ConnectError::Tcp(e) => write!(f, "connect failed: {e}"),
            ConnectError::Tls(e) => write!(f, "TLS handshake failed: {e}"),
            ConnectError::Http(e) => write!(f, "HTTP handshake failed: {e}"),
        }
    }
}

struct Idle {
    sender: Sender,
    since: Instant,
}

/// Idle backend connections by key, newest last.
pub struct Pool {
    idle: Mutex<HashMap<PoolKey, Vec<Idle>>>,
    settings: Mutex<(usize, Duration)>,
}

impl Pool {
    pub fn new(max_idle_per_key: usize, idle_timeout: Duration) -> Arc<Self> {
        Arc::new(Pool { idle: Mutex::new(HashMap::new()), settings: Mutex::new((max_idle_per_key, idle_timeout)) })
    }

    /// New limits from a reloaded configuration.
    pub fn configure(&self, max_idle_per_key: usize, idle_timeout: Duration) {
        *lock(&self.settings) = (max_idle_per_key, idle_timeout);
    }

    fn idle_timeout(&self) -> Duration {
        lock(&self.settings).1
    }

    /// The most recently used idle connection for `key` that is still open.
    pub fn checkout(&self, key: &PoolKey) -> Option<Sender> {
        let timeout = self.idle_timeout();
        let mut idle = lock(&self.idle);
        let list = idle.get_mut(key)?;
        while let Some(entry) = list.pop() {
            if entry.since.elapsed() < timeout && entry.sender.is_ready() && !entry.sender.is_closed() {
                return Some(entry.sender);
            }
        }
        None
    }

    /// Returns `sender` to the pool; call it when the response body has been
    /// read to the end. hyper usually has the connection ready again by then; if
    /// not, a small task waits for it. A connection that ends instead is dropped.
    pub fn release(self: &Arc<Self>, key: PoolKey, mut sender: Sender) {
        if sender.is_ready() {
            self.put(key, sender);
            return;
        }
        let pool = self.clone();
        tokio::spawn(async move {
            if sender.ready().await.is_ok() {
                pool.put(key, sender);
            }
        });
    }

    fn put(&self, key: PoolKey, sender: Sender) {
        let max = lock(&self.settings).0;
        if max == 0 {
            return;
        }
        let mut idle = lock(&self.idle);
        let list = idle.entry(key).or_default();
        if list.len() >= max {
            list.remove(0);
        }
        list.push(Idle { sender, since: Instant::now() });
    }

    /// Closes every idle connection kept for `identity` (its client connection ended).
    pub fn discard(&self, identity: &Identity) {
        lock(&self.idle).retain(|k, _| &k.identity != identity);
    }

    /// Idle connections by backend origin (every generation's together: the
    /// origin is the configuration's name, the generation is not).
    pub fn idle_by_origin(&self) -> HashMap<String, usize> {
        let mut out: HashMap<String, usize> = HashMap::new();
        for (key, list) in lock(&self.idle).iter() {
            let origin = key.backend.rsplit_once('#').map_or(&*key.backend, |(o, _)| o);
            *out.entry(origin.to_owned()).or_default() += list.len();
        }
        out
    }

    /// Drops idle connections that timed out or closed; run periodically.
    pub fn sweep(&self) {
        let timeout = self.idle_timeout();
        let mut idle = lock(&self.idle);
        idle.retain(|_, list| {
            list.retain(|e| e.since.elapsed() < timeout && !e.sender.is_closed());
            !list.is_empty()
        });
    }
}

/// The pool's locks are held for a few map operations and never across an
/// await or a call that can panic midway, so a poisoned lock still guards
/// consistent data: recover it, as every other lock in gatehouse does, rather
/// than take the process down with it.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
