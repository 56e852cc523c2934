//! Worker threads: one single-threaded runtime per core, like nginx's worker
//! processes. A connection lives its whole life on one worker, together with the
//! backend connections it uses, so that a request and its backend exchange wake
//! no other thread. Measured on two cores, this doubled keep-alive throughput
//! over tokio's work-stealing runtime (docs/performance.md).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::{mpsc, OwnedSemaphorePermit};

use crate::shared::Shared;

/// A connection accepted by a listener, on its way to a worker.
pub struct Accepted {
    pub sock: std::net::TcpStream,
    pub peer: SocketAddr,
    pub listener: Arc<str>,
    pub permit: OwnedSemaphorePermit,
}

pub struct Workers {
    senders: Vec<mpsc::UnboundedSender<Accepted>>,
    /// Open connections per worker, for least-loaded placement (Outlook's
    /// channels live for hours, so round-robin would drift).
    load: Arc<Vec<AtomicUsize>>,
}

impl Workers {
    pub fn count() -> usize {
        std::thread::available_parallelism().map_or(2, |n| n.get())
    }

    /// Starts `n` worker threads. `shared` is filled in once the process state exists.
    pub fn start(n: usize, shared: Arc<std::sync::OnceLock<Arc<Shared>>>) -> std::io::Result<Workers> {
        let load: Arc<Vec<AtomicUsize>> = Arc::new((0..n).map(|_| AtomicUsize::new(0)).collect());
        let mut senders = Vec::with_capacity(n);
        for id in 0..n {
            let (tx, mut rx) = mpsc::unbounded_channel::<Accepted>();
            senders.push(tx);
            let shared = shared.clone();
            let load = load.clone();
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            std::thread::Builder::new().name(format!("gatehouse-w{id}")).spawn(move || {
                runtime.block_on(async move {
                    while let Some(accepted) = rx.recv().await {
                        let Some(shared) = shared.get().cloned() else {
                            continue;
                        };
                        let load = load.clone();
                        tokio::spawn(async move {
                            crate::listener::serve_accepted(accepted, id, shared).await;
                            load[id].fetch_sub(1, Ordering::Relaxed);
                        });
                    }
                });
            })?;
        }
        Ok(Workers { senders, load })
    }

    pub fn len(&self) -> usize {
        self.senders.len()
    }

    /// Hands a connection to the least-loaded worker.
    pub fn dispatch(&self, accepted: Accepted) {
        let id = (0..self.senders.len()).min_by_key(|&i| self.load[i].load(Ordering::Relaxed)).unwrap_or(0);
        self.load[id].fetch_add(1, Ordering::Relaxed);
        if self.senders[id].send(accepted).is_err() {
            self.load[id].fetch_sub(1, Ordering::Relaxed);
            tracing::error!(worker = id, "worker thread is gone; connection dropped");
        }
    }
}
