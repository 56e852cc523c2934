//! The state every connection shares for the life of the process: the current
//! configuration generation, the backend pools (one per worker), the access
//! log, the connection limit and the drain signal.

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
        Shared { generation: RwLock::new(generation), pools, access, connections, kept, max_connections, draining }
    }

    pub fn current(&self) -> Arc<Generation> {
        self.generation.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn replace(&self, generation: Arc<Generation>) {
        *self.generation.write().unwrap_or_else(|e| e.into_inner()) = generation;
    }
}
