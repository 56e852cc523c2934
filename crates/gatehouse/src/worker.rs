//! Worker threads: one single-threaded runtime per core, like nginx's worker
//! processes. A connection lives its whole life on one worker, together with the
//! backend connections it uses, so that a request and its backend exchange wake
//! no other thread. Measured on two cores, this doubled keep-alive throughput
//! over tokio's work-stealing runtime (docs/performance.md).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::{mpsc, OwnedSemaphorePermit};

/// A connection accepted by a listener, on its way to a worker.
pub struct Accepted {
    pub sock: std::net::TcpStream,
    pub peer: SocketAddr,
    pub listener: Arc<str>,
    pub permit: OwnedSemaphorePermit,
}

pub struct Workers {
    senders: Vec<mpsc::UnboundedSender<(Accepted, Load)>>,
    /// Open connections per worker, for least-loaded placement (Outlook's
    /// channels live for hours, so round-robin would drift).
    load: Arc<Vec<AtomicUsize>>,
}

impl Workers {
    pub fn count() -> usize {
        std::thread::available_parallelism().map_or(2, |n| n.get())
    }

    /// Starts `n` worker threads, each serving the connections it is handed
    /// with `serve` (the listener's TLS and HTTP). `shared` is filled in once
    /// the process state exists.
    pub fn start<T, F, Fut>(n: usize, shared: Arc<std::sync::OnceLock<T>>, serve: F) -> std::io::Result<Workers>
    where
        T: Clone + Send + Sync + 'static,
        F: Fn(Accepted, usize, T) -> Fut + Send + Clone + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let load: Arc<Vec<AtomicUsize>> = Arc::new((0..n).map(|_| AtomicUsize::new(0)).collect());
        let mut senders = Vec::with_capacity(n);
        for id in 0..n {
            let (tx, mut rx) = mpsc::unbounded_channel::<(Accepted, Load)>();
            senders.push(tx);
            let shared = shared.clone();
            let serve = serve.clone();
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            std::thread::Builder::new().name(format!("gatehouse-w{id}")).spawn(move || {
                runtime.block_on(async move {
                    while let Some((accepted, load)) = rx.recv().await {
                        // Without the process state (only before start-up
                        // ends) the connection is dropped, and so is its load.
                        let Some(shared) = shared.get().cloned() else {
                            continue;
                        };
                        let serve = serve.clone();
                        tokio::spawn(async move {
                            // Held across the whole connection: a panic in
                            // it unwinds through here and still counts it off.
                            let _load = load;
                            serve(accepted, id, shared).await;
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
        let load = Load { load: self.load.clone(), worker: id };
        if self.senders[id].send((accepted, load)).is_err() {
            tracing::error!(worker = id, "worker thread is gone; connection dropped");
        }
    }

    /// Open connections on each worker.
    #[cfg(test)]
    pub fn load(&self) -> Vec<usize> {
        self.load.iter().map(|l| l.load(Ordering::Relaxed)).collect()
    }
}

/// One connection counted against its worker until this drops: whether it is
/// served to the end, dropped before it started, or its task panics.
struct Load {
    load: Arc<Vec<AtomicUsize>>,
    worker: usize,
}

impl Drop for Load {
    fn drop(&mut self) {
        self.load[self.worker].fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn accepted(listener: &std::net::TcpListener, permits: &Arc<tokio::sync::Semaphore>) -> Accepted {
        let _client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (sock, peer) = listener.accept().unwrap();
        Accepted { sock, peer, listener: "l".into(), permit: permits.clone().try_acquire_owned().unwrap() }
    }

    fn settles_to_zero(workers: &Workers) -> bool {
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if workers.load().iter().all(|&n| n == 0) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }

    #[test]
    fn load_is_counted_off_whatever_way_a_connection_ends() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let permits = Arc::new(tokio::sync::Semaphore::new(10));
        // Before the process state exists, connections are dropped unserved.
        let empty = Arc::new(std::sync::OnceLock::<()>::new());
        let workers = Workers::start(1, empty, |_, _, _| async {}).unwrap();
        workers.dispatch(accepted(&listener, &permits));
        assert!(settles_to_zero(&workers), "a dropped connection still counts: {:?}", workers.load());
    }

    #[test]
    fn a_panicking_connection_is_counted_off_too() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let permits = Arc::new(tokio::sync::Semaphore::new(10));
        let slot = Arc::new(std::sync::OnceLock::new());
        let workers = Workers::start(2, slot.clone(), |accepted, _, _| async move {
            if accepted.peer.port() != 0 {
                panic!("a connection task that panics (as a test)");
            }
        })
        .unwrap();
        let _ = slot.set(());
        for _ in 0..4 {
            workers.dispatch(accepted(&listener, &permits));
        }
        assert!(settles_to_zero(&workers), "panicked connections still count: {:?}", workers.load());
    }
}
