//! Listeners: accept TCP connections, enforce the connection limit, terminate TLS,
//! and hand each connection to [`crate::connection::serve`].

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::conn::{Activity, ConnInfo};
use crate::connection::{self, Connection};
use crate::shared::Shared;
use crate::worker::{Accepted, Workers};

pub struct ListenerHandle {
    stop: watch::Sender<bool>,
    /// The accept loop, which owns the socket: closed when it ends.
    task: tokio::task::JoinHandle<()>,
    /// The address bound (the system's choice for port 0).
    pub addr: SocketAddr,
}

impl ListenerHandle {
    /// Stops accepting; established connections carry on.
    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }

    /// Stops accepting and waits until the socket is closed, so that a client
    /// connecting afterwards is refused rather than accepted and dropped.
    pub async fn close(self) {
        self.stop();
        let _ = self.task.await;
    }
}

pub fn start(
    name: &str,
    bind: SocketAddr,
    shared: Arc<Shared>,
    workers: Arc<Workers>,
) -> std::io::Result<ListenerHandle> {
    let std_listener = std::net::TcpListener::bind(bind)?;
    // Port 0 in the file lets the system choose: the log names the port it chose
    // (the integration tests start gatehouse so, and read it here).
    let addr = std_listener.local_addr()?;
    tracing::info!(listener = %name, addr = %addr, "bound");
    std_listener.set_nonblocking(true)?;
    let tcp = TcpListener::from_std(std_listener)?;
    let (stop, stopped) = watch::channel(false);
    let task = tokio::spawn(accept_loop(name.into(), tcp, shared, workers, stopped));
    Ok(ListenerHandle { stop, task, addr })
}

async fn accept_loop(
    name: Arc<str>,
    tcp: TcpListener,
    shared: Arc<Shared>,
    workers: Arc<Workers>,
    mut stopped: watch::Receiver<bool>,
) {
    loop {
        let (sock, peer) = tokio::select! {
            _ = stopped.changed() => return,
            r = tcp.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(listener = %name, error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = shared.connections.clone().try_acquire_owned() else {
            let id = shared.access.next_id();
            tracing::warn!(request_id = %id, listener = %name, client = %peer, limit = shared.max_connections, "connection limit reached; refusing with 503");
            tokio::spawn(refuse_overloaded(sock, shared.current().tls.contains_key(&*name), id));
            continue;
        };
        let _ = sock.set_nodelay(true);
        match sock.into_std() {
            Ok(sock) => workers.dispatch(Accepted { sock, peer, listener: name.clone(), permit }),
            Err(e) => tracing::warn!(listener = %name, error = %e, "cannot hand over a connection"),
        }
    }
}

/// Runs on a worker: registers the socket with the worker's runtime, then TLS,
/// then HTTP.
pub async fn serve_accepted(accepted: Accepted, worker: usize, shared: Arc<Shared>) {
    let Accepted { sock, peer, listener, permit } = accepted;
    let _permit = permit;
    let _open = shared.meters.connections.open(&listener);
    let sock = match TcpStream::from_std(sock) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(listener = %listener, error = %e, "cannot register a connection");
            return;
        }
    };
    let generation = shared.current();
    let timeouts = generation.config.timeouts.clone();
    let tls = generation.tls.get(&*listener).cloned();
    let context = |end_point_hash: Option<Vec<u8>>, http2: bool| {
        let channel_bindings = end_point_hash.as_deref().map(ntlm::crypto::tls_channel_bindings);
        let tls_end_point = end_point_hash.as_deref().map(|h| Arc::from(kcd::tls_server_end_point(h)));
        let info = ConnInfo {
            id: ConnInfo::next_id(),
            peer,
            forwarded_for: ConnInfo::forwarded_for(peer),
            listener: listener.clone(),
            tls: tls.is_some(),
            worker,
            channel_bindings,
            tls_end_point,
            http2,
        };
        Connection::new(info, Activity::new(timeouts.stream_idle), shared.clone())
    };
    let redirects = generation.config.listeners.iter().any(|l| *l.name == *listener && l.redirect_to.is_some());
    // Each stage's future is boxed: this task's future is as large as the
    // largest of them (the TLS handshake, the HTTP/2 server), and every
    // connection would keep that much for its whole life, idle or not.
    match &tls {
        // Through the same connection code, so the framing guard and the
        // clocks apply to a redirecting listener as to any other.
        None if redirects => Box::pin(connection::serve(sock, context(None, false), crate::redirect::handle)).await,
        None => Box::pin(connection::serve(sock, context(None, false), crate::pipeline::handle)).await,
        Some(config) => {
            let acceptor = tokio_rustls::TlsAcceptor::from(config.clone());
            match Box::pin(tokio::time::timeout(timeouts.header_read, acceptor.accept(sock))).await {
                Ok(Ok(stream)) => {
                    let sni = stream.get_ref().1.server_name();
                    let end_point_hash = generation
                        .config
                        .listeners
                        .iter()
                        .find(|l| *l.name == *listener)
                        .and_then(|l| l.tls.as_ref())
                        .and_then(|t| crate::tls::choose(&t.certificates, sni))
                        .and_then(|ck| ck.end_entity_cert().ok().map(|der| crate::tls::server_end_point(der)));
                    if stream.get_ref().1.alpn_protocol() == Some(b"h2") {
                        Box::pin(connection::serve_h2(stream, context(end_point_hash, true), crate::pipeline::handle))
                            .await
                    } else {
                        Box::pin(connection::serve(stream, context(end_point_hash, false), crate::pipeline::handle))
                            .await
                    }
                }
                Ok(Err(e)) => {
                    tracing::info!(listener = %listener, client = %peer, error = %e, "TLS handshake failed")
                }
                Err(_) => {
                    tracing::info!(listener = %listener, client = %peer, "TLS handshake timed out")
                }
            }
        }
    }
}

/// Over the connection limit: say so in plain HTTP where we can, then close. On a
/// TLS listener a handshake would cost exactly what the limit protects, so the
/// connection just closes.
async fn refuse_overloaded(mut sock: TcpStream, tls: bool, request_id: String) {
    if !tls {
        let page = crate::pages::raw_refusal(503, "too many connections", &request_id);
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), sock.write_all(&page)).await;
    }
    let _ = sock.shutdown().await;
}
