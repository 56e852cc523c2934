//! Listener certificates renewed in place: the certificate and key files of
//! the serving configuration are looked at every few seconds, and a change
//! reloads the configuration as SIGHUP does (a broken new file is refused
//! with its cause, and the old certificate keeps serving).
//!
//! Polled (`stat`, following symlinks) rather than watched with inotify:
//! certbot renews by pointing `/etc/letsencrypt/live/NAME/*.pem` symlinks at
//! new files in `archive/`, which an inotify watch on the path (the old
//! inode) never sees; other ACME clients rename over the file, scripts write
//! in place, and some keep certificates on network file systems where
//! inotify says nothing. One `stat` per file every few seconds sees them all.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;

use crate::shared::Shared;

/// How often the files are looked at.
pub const EVERY: Duration = Duration::from_secs(5);
/// After a change, how long to wait for the rest of it (a key written just
/// after its certificate) before reloading.
const SETTLE: Duration = Duration::from_secs(1);

/// What identifies a file's version: modification time, size, inode.
type Stamp = Option<(SystemTime, u64, u64)>;

fn stamp(path: &PathBuf) -> Stamp {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len(), m.ino()))
}

/// Watches while the returned task runs; `reload` gets the changed file.
pub fn spawn(shared: Arc<Shared>, reload: mpsc::Sender<PathBuf>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut seen: HashMap<PathBuf, Stamp> = HashMap::new();
        loop {
            let generation = shared.current();
            let files: Vec<PathBuf> = generation
                .config
                .listeners
                .iter()
                .filter_map(|l| l.tls.as_ref())
                .flat_map(|t| t.files.iter().chain(&t.keys).cloned())
                .collect();
            drop(generation);
            let mut changed = None;
            let mut now = HashMap::new();
            for f in files {
                let s = stamp(&f);
                if seen.get(&f).is_some_and(|old| *old != s) {
                    changed.get_or_insert(f.clone());
                }
                now.insert(f, s);
            }
            seen = now;
            if let Some(file) = changed {
                tokio::time::sleep(SETTLE).await;
                // Seen as it is after the wait: the reload reads that.
                for (f, s) in seen.iter_mut() {
                    *s = stamp(f);
                }
                tracing::info!(file = %file.display(), "a listener certificate file changed; reloading");
                if reload.send(file).await.is_err() {
                    return;
                }
            }
            tokio::time::sleep(EVERY).await;
        }
    })
}
