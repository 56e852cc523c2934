//! The state every connection shares for the life of the process: the current
//! configuration generation, the backend pools (one per worker), the access
//! log, the connection limit and the drain signal.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use tokio::sync::{watch, Semaphore};

use crate::backend::Pool;
use crate::generation::Generation;
use crate::telemetry::AccessLog;

/// State shared by every connection for the life of the process.
pub struct Shared {
    generation: RwLock<Arc<Generation>>,
    /// One backend pool per worker: a backend connection stays on the worker
    /// that opened it.
    pub pools: Vec<Arc<Pool>>,
    pub access: AccessLog,
    pub connections: Arc<Semaphore>,
    /// Authentication state kept across reloads.
    pub kept: crate::generation::Kept,
    pub max_connections: usize,
    /// Flips to true when the process starts draining.
    pub draining: watch::Receiver<bool>,
    /// Requests that matched no site, since the last summary line.
    pub no_site: crate::telemetry::NoSite,
    /// The address each running listener is bound to (port 0 in the file
    /// becomes the port the system chose), for redirects to it.
    bound: RwLock<HashMap<String, SocketAddr>>,
    /// The counters' handles, each for the stage that counts with it.
    pub meters: Meters,
}

/// One handle per kind of count (see `metrics`), made once.
pub struct Meters {
    pub signins: crate::metrics::SignIns,
    pub backends: crate::metrics::Backends,
    pub connections: crate::metrics::Connections,
    /// Delegation's last Kerberos failures, for the status page.
    pub problems: Arc<crate::metrics::Problems>,
}

impl Shared {
    pub fn new(
        generation: Arc<Generation>,
        pools: Vec<Arc<Pool>>,
        access: AccessLog,
        connections: Arc<Semaphore>,
        kept: crate::generation::Kept,
        draining: watch::Receiver<bool>,
    ) -> Shared {
        let max_connections = connections.available_permits();
        let m = &kept.metrics;
        let meters = Meters {
            signins: m.signins(),
            backends: m.backends(),
            connections: m.connections(),
            problems: Default::default(),
        };
        Shared {
            generation: RwLock::new(generation),
            pools,
            access,
            connections,
            kept,
            max_connections,
            draining,
            no_site: Default::default(),
            bound: Default::default(),
            meters,
        }
    }

    /// Where the listener `name` is bound, while it runs.
    pub fn bound(&self, name: &str) -> Option<SocketAddr> {
        self.bound.read().unwrap_or_else(|e| e.into_inner()).get(name).copied()
    }

    pub fn set_bound(&self, name: &str, addr: Option<SocketAddr>) {
        let mut bound = self.bound.write().unwrap_or_else(|e| e.into_inner());
        match addr {
            Some(addr) => bound.insert(name.to_owned(), addr),
            None => bound.remove(name),
        };
    }

    pub fn current(&self) -> Arc<Generation> {
        self.generation.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn replace(&self, generation: Arc<Generation>) {
        *self.generation.write().unwrap_or_else(|e| e.into_inner()) = generation;
    }
}
