//! The control socket: how `gatehouse sessions list` and `gatehouse sessions
//! revoke USER` reach the running process.
//!
//! A Unix socket at `[control] socket`, made by gatehouse with mode 0600 and
//! answering only a peer of gatehouse's own user (or root), as the kernel
//! names it (`SO_PEERCRED`): whoever may revoke sessions may also read the
//! key file, so the file system's rule is the right one. One request line
//! per connection (`sessions list`, `sessions revoke NAME`), answered with
//! `ok ...` or `error ...` lines, then closed. A socket rather than SIGHUP
//! plus a file: the answer (how many sessions ended) comes back to the
//! administrator, and nothing is left on disk to be replayed. Commands
//! other modules need (a farm's `backend drain`) are more words on the same
//! line protocol.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use crate::shared::Shared;

/// A request line is a few words.
const MAX_LINE: u64 = 1024;
const TIMEOUT: Duration = Duration::from_secs(5);

/// Binds the socket (replacing one left by a gatehouse that is gone) and
/// serves it until the process ends.
pub fn start(path: &Path, shared: Arc<Shared>) -> Result<(), String> {
    if std::fs::symlink_metadata(path).is_ok() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(format!("control socket {}: another process answers on it", path.display()));
        }
        std::fs::remove_file(path)
            .map_err(|e| format!("control socket {}: cannot remove the old one: {e}", path.display()))?;
    }
    let listener = UnixListener::bind(path).map_err(|e| format!("control socket {}: {e}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| format!("control socket {}: {e}", path.display()))?;
    let own = std::fs::metadata("/proc/self").map(|m| m.uid()).ok();
    let path = path.to_owned();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            let shared = shared.clone();
            tokio::spawn(async move {
                let uid = stream.peer_cred().ok().map(|c| c.uid());
                if uid.is_none() || (uid != own && uid != Some(0)) {
                    tracing::warn!(uid = ?uid, "control socket: refused a peer of another user");
                    return;
                }
                if tokio::time::timeout(TIMEOUT, answer(stream, &shared)).await.is_err() {
                    tracing::warn!("control socket: a request did not finish in time");
                }
            });
        }
    });
    tracing::info!(socket = %path.display(), "control socket listening");
    Ok(())
}

async fn answer(stream: UnixStream, shared: &Shared) {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let mut limited = BufReader::new(tokio::io::AsyncReadExt::take(read, MAX_LINE));
    if limited.read_line(&mut line).await.is_err() {
        return;
    }
    let reply = run(line.trim_end_matches(['\r', '\n']), shared).await;
    let _ = write.write_all(reply.as_bytes()).await;
    let _ = write.shutdown().await;
}

/// One command line, answered.
async fn run(line: &str, shared: &Shared) -> String {
    let sessions = &shared.kept.sessions;
    let words: Vec<&str> = line.splitn(3, ' ').collect();
    match words.as_slice() {
        ["sessions", "list"] => match sessions.list(SystemTime::now()).await {
            Ok(list) => {
                let mut out = format!("ok {} sessions\n", list.len());
                for s in list {
                    let time = |t: SystemTime| humantime::format_rfc3339_seconds(t).to_string();
                    out.push_str(&format!(
                        "{}\tsigned in {}\tlast used {}\tends {}\t{}\n",
                        s.who,
                        time(s.created),
                        time(s.last_used),
                        time(s.ends),
                        if s.public { "public computer" } else { "private computer" }
                    ));
                }
                out
            }
            Err(e) => format!("error the session store cannot be asked: {}\n", e.0),
        },
        ["sessions", "revoke", who] if !who.trim().is_empty() => match sessions.revoke(who.trim().to_owned()).await {
            Ok(n) => {
                tracing::info!(user = %who, sessions = n, "sessions revoked by the control socket");
                format!("ok {n} sessions of {who} ended\n")
            }
            Err(e) => format!("error the session store cannot be asked: {}\n", e.0),
        },
        _ => "error unknown command; known: `sessions list`, `sessions revoke NAME`\n".to_owned(),
    }
}

/// The client side, for the command line: sends `request`, returns the
/// answer (its first line starts `ok` or `error`).
pub fn ask(socket: &Path, request: &str) -> Result<String, String> {
    use std::io::{Read, Write};
    let mut s = std::os::unix::net::UnixStream::connect(socket).map_err(|e| {
        format!("cannot reach gatehouse at {}: {e} (is it running with this [control] socket?)", socket.display())
    })?;
    let _ = s.set_read_timeout(Some(TIMEOUT));
    s.write_all(format!("{request}\n").as_bytes()).map_err(|e| e.to_string())?;
    let mut out = String::new();
    s.read_to_string(&mut out).map_err(|e| e.to_string())?;
    if out.is_empty() {
        return Err(format!("gatehouse at {} closed without an answer (another user's socket?)", socket.display()));
    }
    Ok(out)
}

/// Where `[control] socket` is in the configuration at `file`.
pub fn socket_of(file: &Path) -> Result<PathBuf, String> {
    let config = crate::config::load_leaving_keytab(file).map_err(|p| p.to_string())?;
    config
        .control
        .map(|c| c.socket)
        .ok_or_else(|| format!("{}: no [control] socket, so the running gatehouse cannot be asked", file.display()))
}
