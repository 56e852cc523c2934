//! The running process: the current configuration generation, the listeners it
//! asks for, reload on SIGHUP and drain on SIGTERM.
//!
//! A reload builds a complete new [`Generation`] first and swaps it in only if the
//! whole file is valid; a broken file leaves the old configuration serving.
//! Established connections keep running; their next request sees the new sites.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{watch, Semaphore};

use crate::backend::Pool;
use crate::config;
use crate::generation::{Generation, Kept};
use crate::listener::{self, ListenerHandle};
use crate::shared::Shared;
use crate::telemetry::AccessLog;
use crate::worker::Workers;

/// `previous`: the generation serving now, whose Kerberos service account
/// (with its caches and credential thread) the new one keeps when its
/// settings stay.
pub fn load(path: &Path, kept: &Kept, previous: Option<&Generation>) -> Result<Generation, String> {
    load_as(path, kept, previous, crate::access::Names::LookUp)
}

/// [`load`], with the names in access rules looked up or not (`check --offline`).
pub fn load_as(
    path: &Path,
    kept: &Kept,
    previous: Option<&Generation>,
    names: crate::access::Names,
) -> Result<Generation, String> {
    let config = config::load(path).map_err(|p| p.to_string())?;
    Generation::build(config, kept, previous, names)
}

/// Serves until SIGTERM or SIGINT, then drains.
pub async fn run(path: PathBuf) -> Result<(), String> {
    let mut kept = Kept::default();
    // The store first: every generation's sign-in page uses it. A store that
    // cannot be opened stops the start: serving without the factors would
    // let nobody (or everybody) past the second step.
    if let Some(m) = crate::config::load(&path).ok().and_then(|c| c.mfa) {
        let store = crate::mfa::Sqlite::open(&m.store)?;
        tracing::info!(store = %store.path().display(), "second-factor store open");
        kept.mfa = Some(Arc::new(store));
    }
    let generation = Arc::new(load(&path, &kept, None)?);
    if let Some(d) = &generation.delegator {
        // Before the listeners: with a KDC that answers, the first clients
        // find the TGTs in place; a silent one delays the start by this much.
        start_kerberos(d, Duration::from_secs(2));
    }
    let config = &generation.config;
    let access = AccessLog::open(&config.log.access, kept.metrics.requests())
        .map_err(|e| format!("cannot open access log {}: {e}", config.log.access))?;
    let (drain_tx, drain_rx) = watch::channel(false);
    let max = config.limits.max_connections;
    let slot = Arc::new(std::sync::OnceLock::new());
    let workers = Workers::start(Workers::count(), slot.clone(), listener::serve_accepted)
        .map_err(|e| format!("cannot start worker threads: {e}"))?;
    let workers = Arc::new(workers);
    crate::memory::start().map_err(|e| format!("cannot start the memory trimming thread: {e}"))?;
    let pools = (0..workers.len())
        .map(|_| Pool::new(config.limits.backend_idle_per_key, config.timeouts.backend_idle))
        .collect();
    let shared =
        Arc::new(Shared::new(generation.clone(), pools, access, Arc::new(Semaphore::new(max)), kept, drain_rx));
    let _ = slot.set(shared.clone());

    let mut listeners: HashMap<(String, SocketAddr), ListenerHandle> = HashMap::new();
    reconcile(&shared, &workers, &mut listeners)?;
    let mut checks = generation.start_checks();
    if checks.len() > 0 {
        tracing::info!(checks = checks.len(), "backend health checks started");
    }
    let control = match &generation.config.control {
        Some(c) => Some(crate::control::serve(&c.socket, shared.clone())?),
        None => None,
    };
    let mut admin = match &generation.config.admin {
        Some(a) => Some(crate::admin::serve(a, shared.clone())?),
        None => None,
    };
    let (changed_tx, mut changed_rx) = tokio::sync::mpsc::channel(1);
    let _watch = crate::cert_watch::spawn(shared.clone(), changed_tx);
    tracing::info!(file = %path.display(), listeners = listeners.len(), sites = generation.config.sites.len(), "gatehouse is serving");
    crate::notify::ready();

    let pools = shared.pools.clone();
    let sweeper = shared.clone();
    tokio::spawn(async move {
        let mut last = [0; 8];
        loop {
            tokio::time::sleep(Duration::from_secs(10)).await;
            pools.iter().for_each(|p| p.sweep());
            sweeper.kept.lockout.sweep();
            sweeper.kept.mfa_lockout.sweep();
            sweeper.kept.farms.sweep();
            sweeper.kept.sessions.sweep(std::time::SystemTime::now());
            sweeper.kept.attempts.sweep();
            if let Some(d) = &sweeper.current().delegator {
                log_delegation(d, &mut last);
            }
        }
    });

    let counted = shared.clone();
    tokio::spawn(async move {
        loop {
            // Read each period, so that a reload changes the next one.
            let period = counted.current().config.log.no_site_summary;
            tokio::time::sleep(period).await;
            counted.no_site.report(period);
        }
    });

    let mut hup = signal(SignalKind::hangup()).map_err(|e| e.to_string())?;
    let mut term = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| e.to_string())?;
    let mut usr1 = signal(SignalKind::user_defined1()).map_err(|e| e.to_string())?;
    loop {
        tokio::select! {
            _ = hup.recv() => {}
            Some(_) = changed_rx.recv() => {}
            _ = usr1.recv() => {
                shared.access.reopen();
                continue;
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
        crate::notify::reloading();
        reload(&path, &shared, &workers, &mut listeners, &mut checks);
        restart_admin(&shared, &mut admin);
        crate::notify::ready();
    }
    crate::notify::stopping();
    drop(admin);

    for (_, l) in listeners.drain() {
        l.close().await;
    }
    drop(control);
    tracing::info!("shutting down: no new connections; draining established ones");
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

fn reload(
    path: &Path,
    shared: &Arc<Shared>,
    workers: &Arc<Workers>,
    listeners: &mut HashMap<(String, SocketAddr), ListenerHandle>,
    checks: &mut crate::farm::Checks,
) {
    let old = shared.current();
    match load(path, &shared.kept, Some(&old)) {
        Err(problems) => {
            // One record per problem: the log escapes newlines inside a record.
            tracing::error!("reload refused, the running configuration stays");
            for problem in problems.lines() {
                tracing::error!("reload refused: {problem}");
            }
        }
        Ok(generation) => {
            match (&generation.delegator, &old.delegator) {
                (Some(new), Some(old_d)) if Arc::ptr_eq(new, old_d) => {
                    // The acceptor's keys are held in memory: the file is
                    // read again, so that a rotated key is accepted (and a
                    // key removed from it no longer is). Then the keytab
                    // may have been fixed in place: what failed is tried
                    // again now; credentials that work are kept.
                    if let Err(e) = old_d.reload_keytab() {
                        tracing::error!("kerberos: {e}; the keys read before stay in use");
                    }
                    old_d.retry_now();
                }
                // A new account or keytab; the old thread ends with the old
                // generation. Nothing waits for the KDC here.
                (Some(new), _) => start_kerberos(new, Duration::ZERO),
                (None, _) => {}
            }
            let c = &generation.config;
            for pool in &shared.pools {
                pool.configure(c.limits.backend_idle_per_key, c.timeouts.backend_idle);
            }
            if c.limits.max_connections != shared.max_connections {
                tracing::warn!("limits.max_connections changes only on restart");
            }
            if c.control != old.config.control {
                tracing::warn!("control.socket changes only on restart");
            }
            if c.mfa.as_ref().map(|m| &m.store) != old.config.mfa.as_ref().map(|m| &m.store) {
                if shared.kept.mfa.is_none() {
                    // Fails closed: the second step answers 404 until a restart.
                    tracing::error!(
                        "mfa.store changes only on restart, and no store is open: sites with mfa = \"required\" \
                         cannot be passed until gatehouse restarts"
                    );
                } else {
                    tracing::warn!("mfa.store changes only on restart; the store opened at start stays");
                }
            }
            // The old checks stop; backends that stay keep their state (and
            // are checked again in their turn).
            *checks = generation.start_checks();
            generation.retain_farm_state(&shared.kept.farms);
            shared.replace(Arc::new(generation));
            if let Err(e) = reconcile(shared, workers, listeners) {
                tracing::error!("{e}");
            }
            tracing::info!(file = %path.display(), "configuration reloaded");
        }
    }
}

/// The admin listener as the current configuration wants it: started,
/// stopped, or moved when `[admin]` changed.
fn restart_admin(shared: &Arc<Shared>, admin: &mut Option<crate::admin::Handle>) {
    let wanted = shared.current().config.admin.clone();
    if admin.as_ref().map(|a| a.settings.listener()) == wanted.as_ref().map(|w| w.listener()) {
        return;
    }
    // The old socket closes first, so that the same address can be bound again.
    *admin = None;
    if let Some(settings) = wanted {
        match crate::admin::serve(&settings, shared.clone()) {
            Ok(handle) => *admin = Some(handle),
            Err(e) => tracing::error!("{e}"),
        }
    }
}

/// Starts the listeners the current configuration has and stops the ones it lost.
/// A listener whose name and address stay keeps its socket (and connections).
fn reconcile(
    shared: &Arc<Shared>,
    workers: &Arc<Workers>,
    running: &mut HashMap<(String, SocketAddr), ListenerHandle>,
) -> Result<(), String> {
    let generation = shared.current();
    let wanted: Vec<(String, SocketAddr)> =
        generation.config.listeners.iter().map(|l| (l.name.clone(), l.bind)).collect();
    running.retain(|key, handle| {
        let keep = wanted.contains(key);
        if !keep {
            tracing::info!(listener = %key.0, bind = %key.1, "listener removed");
            handle.stop();
        }
        if !keep {
            shared.set_bound(&key.0, None);
        }
        keep
    });
    let mut errors = Vec::new();
    for key in wanted {
        if running.contains_key(&key) {
            continue;
        }
        match listener::start(&key.0, key.1, shared.clone(), workers.clone()) {
            Ok(handle) => {
                tracing::info!(listener = %key.0, bind = %key.1, "listening");
                shared.set_bound(&key.0, Some(handle.addr));
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
