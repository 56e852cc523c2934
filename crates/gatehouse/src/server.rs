//! The running process: the current configuration generation, the listeners it
//! asks for, reload on SIGHUP and drain on SIGTERM.
//!
//! A reload builds a complete new [`Generation`] first and swaps it in only if the
//! whole file is valid; a broken file leaves the old configuration serving.
//! Established connections keep running; their next request sees the new sites.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{watch, Semaphore};

use crate::backend::{Pool, Target};
use crate::config::{self, Config};
use crate::listener::{self, ListenerHandle};
use crate::route;
use crate::telemetry::{AccessLog, RequestIds};
use crate::worker::Workers;

/// Everything derived from one configuration file.
pub struct Generation {
    pub config: Config,
    pub routes: route::Table,
    /// Backends by origin and TLS settings.
    pub backends: HashMap<config::Backend, Arc<Target>>,
    /// TLS server configs by listener name.
    pub tls: HashMap<String, Arc<rustls::ServerConfig>>,
    /// NTLM acceptor settings by listener name (names, channel-binding policy).
    pub ntlm: HashMap<String, ntlm::AcceptorConfig>,
    pub accounts: Option<AccountsRuntime>,
    /// The delegating service account, when a site uses KCD.
    pub delegator: Option<Arc<kcd::Delegator>>,
}

/// Where passwords are checked, ready to use.
pub enum AccountsRuntime {
    File(Arc<config::UserFile>),
    Winbind(Arc<crate::accounts::Winbind>),
}

impl Generation {
    pub fn build(config: Config) -> Result<Self, String> {
        let mut backends = HashMap::new();
        for site in &config.sites {
            if !backends.contains_key(&site.backend) {
                let target = Target::new(&site.backend).map_err(|e| format!("site `{}`: {e}", site.name))?;
                backends.insert(site.backend.clone(), Arc::new(target));
            }
        }
        let tls = config
            .listeners
            .iter()
            .filter_map(|l| l.tls.as_ref().map(|t| (l.name.clone(), crate::tls::server_config(t, l.http2))))
            .collect();
        let ntlm = match &config.domain {
            None => HashMap::new(),
            Some(d) => config
                .listeners
                .iter()
                .map(|l| {
                    let acceptor = ntlm::AcceptorConfig {
                        netbios_domain: d.netbios_name.clone(),
                        netbios_computer: d.computer_netbios.clone(),
                        dns_domain: d.realm.to_ascii_lowercase(),
                        dns_computer: d.computer_dns.clone(),
                        channel_binding: l.channel_binding,
                        max_skew: 5 * 60 * 10_000_000,
                    };
                    (l.name.clone(), acceptor)
                })
                .collect(),
        };
        let accounts = config.accounts.as_ref().map(|a| match a {
            config::Accounts::File { users, .. } => AccountsRuntime::File(users.clone()),
            config::Accounts::Winbind { ntlm_auth, smb_conf, helpers, timeout } => AccountsRuntime::Winbind(
                crate::accounts::Winbind::new(ntlm_auth.clone(), smb_conf.clone(), *helpers, *timeout),
            ),
        });
        let delegator = match &config.domain {
            Some(d) if config.sites.iter().any(|s| s.kcd().is_some() || offers_negotiate(s)) => {
                match (&d.service_principal, &d.keytab) {
                    (Some(p), Some(k)) => Some(Arc::new(kcd::Delegator::new(p, &k.to_string_lossy(), &d.realm))),
                    _ => None,
                }
            }
            _ => None,
        };
        Ok(Generation { routes: route::Table::new(&config.sites), backends, tls, ntlm, accounts, delegator, config })
    }
}

/// Negotiate and Basic need the Kerberos service account.
fn offers_negotiate(s: &config::Site) -> bool {
    s.offers(config::Scheme::Negotiate) || s.offers(config::Scheme::Basic)
}

/// State shared by every connection for the life of the process.
pub struct Shared {
    generation: RwLock<Arc<Generation>>,
    /// One backend pool per worker: a backend connection stays on the worker
    /// that opened it.
    pub pools: Vec<Arc<Pool>>,
    pub workers: Workers,
    pub access: AccessLog,
    pub ids: RequestIds,
    pub connections: Arc<Semaphore>,
    /// Failed logons, kept across reloads.
    pub lockout: crate::auth::Lockout,
    /// Basic users whose password was checked recently.
    pub basic: crate::auth::BasicCache,
    pub max_connections: usize,
    /// Flips to true when the process starts draining.
    pub draining: watch::Receiver<bool>,
}

impl Shared {
    pub fn current(&self) -> Arc<Generation> {
        self.generation.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn replace(&self, generation: Arc<Generation>) {
        *self.generation.write().unwrap_or_else(|e| e.into_inner()) = generation;
    }
}

pub fn load(path: &Path) -> Result<Generation, String> {
    let config = config::load(path).map_err(|p| p.to_string())?;
    Generation::build(config)
}

/// Serves until SIGTERM or SIGINT, then drains.
pub async fn run(path: PathBuf) -> Result<(), String> {
    let generation = Arc::new(load(&path)?);
    if let Some(d) = &generation.delegator {
        // Before the listeners: with a KDC that answers, the first clients
        // find the TGTs in place; a silent one delays the start by this much.
        start_kerberos(d, Duration::from_secs(2));
    }
    let config = &generation.config;
    let access = AccessLog::open(&config.log.access)
        .map_err(|e| format!("cannot open access log {}: {e}", config.log.access))?;
    let (drain_tx, drain_rx) = watch::channel(false);
    let max = config.limits.max_connections;
    let slot = Arc::new(std::sync::OnceLock::new());
    let workers =
        Workers::start(Workers::count(), slot.clone()).map_err(|e| format!("cannot start worker threads: {e}"))?;
    let shared = Arc::new(Shared {
        generation: RwLock::new(generation.clone()),
        pools: (0..workers.len())
            .map(|_| Pool::new(config.limits.backend_idle_per_key, config.timeouts.backend_idle))
            .collect(),
        workers,
        access,
        ids: RequestIds::new(),
        connections: Arc::new(Semaphore::new(max)),
        lockout: Default::default(),
        basic: Default::default(),
        max_connections: max,
        draining: drain_rx,
    });
    let _ = slot.set(shared.clone());

    let mut listeners: HashMap<(String, SocketAddr), ListenerHandle> = HashMap::new();
    reconcile(&shared, &mut listeners)?;
    tracing::info!(file = %path.display(), listeners = listeners.len(), sites = generation.config.sites.len(), "gatehouse is serving");

    let pools = shared.pools.clone();
    let sweeper = shared.clone();
    tokio::spawn(async move {
        let mut last = [0; 8];
        loop {
            tokio::time::sleep(Duration::from_secs(10)).await;
            pools.iter().for_each(|p| p.sweep());
            sweeper.lockout.sweep();
            if let Some(d) = &sweeper.current().delegator {
                log_delegation(d, &mut last);
            }
        }
    });

    let mut hup = signal(SignalKind::hangup()).map_err(|e| e.to_string())?;
    let mut term = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| e.to_string())?;
    loop {
        tokio::select! {
            _ = hup.recv() => reload(&path, &shared, &mut listeners),
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }

    tracing::info!("shutting down: no new connections; draining established ones");
    for (_, l) in listeners.drain() {
        l.stop();
    }
    let _ = drain_tx.send(true);
    let drain = shared.current().config.timeouts.shutdown_drain;
    let all = u32::try_from(max).unwrap_or(u32::MAX);
    match tokio::time::timeout(drain, shared.connections.acquire_many(all)).await {
        Ok(_) => tracing::info!("all connections drained"),
        Err(_) => tracing::warn!(
            still_open = max - shared.connections.available_permits(),
            "drain time over; closing the remaining connections"
        ),
    }
    if let Some(d) = &shared.current().delegator {
        log_delegation(d, &mut [u64::MAX; 8]);
    }
    shared.access.flush();
    Ok(())
}

/// The service's credentials come from the KDC on a thread of their own, at
/// start and before they expire: no request waits for that, and no client's
/// token can cause it (see kcd's `Delegator::start`).
fn start_kerberos(d: &Arc<kcd::Delegator>, wait: Duration) {
    if let Err(e) = d.start(wait) {
        tracing::error!("kerberos: cannot start the credential thread: {e}; delegation gets its TGT on demand");
    }
}

/// The Kerberos counters, when they changed: ticket-cache hits, S4U2Self
/// requests to the KDC, clients' tickets kept as S4U2Proxy evidence, UPN
/// lookups, clients' tickets accepted and refused, failures by Kerberos error,
/// and passwords checked with the KDC (Basic).
fn log_delegation(d: &kcd::Delegator, last: &mut [u64; 8]) {
    use std::sync::atomic::Ordering::Relaxed;
    let s = d.stats();
    let now = [
        &s.cache_hits,
        &s.s4u2self,
        &s.evidence,
        &s.upn_lookups,
        &s.accepted,
        &s.refused,
        &s.errors,
        &s.password_checks,
    ]
    .map(|c| c.load(Relaxed));
    if now != *last {
        let by_code: Vec<String> = s.errors_by_code().iter().map(|(code, n)| format!("{code}: {n}")).collect();
        tracing::info!(
            cache_hits = now[0],
            s4u2self = now[1],
            evidence = now[2],
            upn_lookups = now[3],
            tickets_accepted = now[4],
            tickets_refused = now[5],
            errors = now[6],
            password_checks = now[7],
            errors_by_code = %by_code.join(", "),
            "kerberos counters"
        );
        *last = now;
    }
}

fn reload(path: &Path, shared: &Arc<Shared>, listeners: &mut HashMap<(String, SocketAddr), ListenerHandle>) {
    match load(path) {
        Err(problems) => {
            // One record per problem: the log escapes newlines inside a record.
            tracing::error!("reload refused, the running configuration stays");
            for problem in problems.lines() {
                tracing::error!("reload refused: {problem}");
            }
        }
        Ok(mut generation) => {
            let old = shared.current();
            if let (Some(new), Some(old_d), Some(nd), Some(od)) =
                (&generation.delegator, &old.delegator, &generation.config.domain, &old.config.domain)
            {
                let same =
                    nd.service_principal == od.service_principal && nd.keytab == od.keytab && nd.realm == od.realm;
                if same && !Arc::ptr_eq(new, old_d) {
                    generation.delegator = Some(old_d.clone());
                }
            }
            if let Some(d) = &generation.delegator {
                // A new account or keytab; the old thread ends with the old
                // generation. Nothing waits for the KDC here.
                start_kerberos(d, Duration::ZERO);
            }
            let c = &generation.config;
            for pool in &shared.pools {
                pool.configure(c.limits.backend_idle_per_key, c.timeouts.backend_idle);
            }
            if c.limits.max_connections != shared.max_connections {
                tracing::warn!("limits.max_connections changes only on restart");
            }
            shared.replace(Arc::new(generation));
            if let Err(e) = reconcile(shared, listeners) {
                tracing::error!("{e}");
            }
            tracing::info!(file = %path.display(), "configuration reloaded");
        }
    }
}

/// Starts the listeners the current configuration has and stops the ones it lost.
/// A listener whose name and address stay keeps its socket (and connections).
fn reconcile(shared: &Arc<Shared>, running: &mut HashMap<(String, SocketAddr), ListenerHandle>) -> Result<(), String> {
    let generation = shared.current();
    let wanted: Vec<(String, SocketAddr)> =
        generation.config.listeners.iter().map(|l| (l.name.clone(), l.bind)).collect();
    running.retain(|key, handle| {
        let keep = wanted.contains(key);
        if !keep {
            tracing::info!(listener = %key.0, bind = %key.1, "listener removed");
            handle.stop();
        }
        keep
    });
    let mut errors = Vec::new();
    for key in wanted {
        if running.contains_key(&key) {
            continue;
        }
        match listener::start(&key.0, key.1, shared.clone()) {
            Ok(handle) => {
                tracing::info!(listener = %key.0, bind = %key.1, "listening");
                running.insert(key, handle);
            }
            Err(e) => errors.push(format!("listener `{}` cannot bind {}: {e}", key.0, key.1)),
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("\n"))
    }
}
