//! The control socket: how `gatehouse sessions list` and `gatehouse sessions
//! revoke USER` reach the running process.
//!
//! A Unix socket at `[control] socket`, made by gatehouse with mode 0600 and
//! answering only a peer of gatehouse's own account (or root), as the kernel
//! names it (`SO_PEERCRED`): whoever may end sessions may read the key file
//! too, so the file system's rule is the right one. One request per
//! connection: a line of tab-separated words, answered with lines, the last
//! `ok` or `error: ...`. A socket rather than SIGHUP and a file: the answer
//! (how many sessions ended) comes back to the administrator, and nothing
//! is left on disk to be replayed. The transport knows no command: each
//! module answers its own words (`session::command`), so that other
//! commands (a farm's `backend drain`) join the same socket and protocol.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use crate::shared::Shared;

/// A request line is a few words.
const MAX_LINE: u64 = 4096;
const TIMEOUT: Duration = Duration::from_secs(10);

/// Binds the socket (replacing one left by a gatehouse that is gone) and
/// serves it until the process ends.
pub fn start(path: &Path, shared: Arc<Shared>) -> Result<(), String> {
    let failed = |e: &dyn std::fmt::Display| format!("control socket {}: {e}", path.display());
    if std::fs::symlink_metadata(path).is_ok() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(failed(&"another gatehouse answers on it"));
        }
        std::fs::remove_file(path).map_err(|e| failed(&e))?;
    }
    let listener = UnixListener::bind(path).map_err(|e| failed(&e))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(|e| failed(&e))?;
    let owner = std::fs::metadata(path).map(|m| m.uid()).map_err(|e| failed(&e))?;
    tracing::info!(socket = %path.display(), "control socket listening");
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            let shared = shared.clone();
            tokio::spawn(async move {
                if tokio::time::timeout(TIMEOUT, answer(stream, owner, &shared)).await.is_err() {
                    tracing::warn!("control socket: a request did not finish in time");
                }
            });
        }
    });
    Ok(())
}

async fn answer(stream: UnixStream, owner: u32, shared: &Shared) {
    let uid = stream.peer_cred().ok().map(|c| c.uid());
    let (read, mut write) = stream.into_split();
    if uid != Some(owner) && uid != Some(0) {
        tracing::warn!(uid = ?uid, "control socket: refused a peer of another account");
        let _ = write.write_all(b"error: not allowed\n").await;
        return;
    }
    let mut line = String::new();
    let mut limited = BufReader::new(tokio::io::AsyncReadExt::take(read, MAX_LINE));
    if limited.read_line(&mut line).await.is_err() {
        return;
    }
    let words: Vec<&str> = line.trim_end_matches(['\r', '\n']).split('\t').collect();
    let (ok, text) = match crate::session::command::run(&words, shared.kept.sessions.as_ref()).await {
        Some(answer) => answer,
        None => (false, "error: unknown command; known: `sessions list`, `sessions revoke NAME`\n".to_owned()),
    };
    let last = if ok { "ok\n" } else { "" };
    let _ = write.write_all(format!("{text}{last}").as_bytes()).await;
    let _ = write.shutdown().await;
}

/// The client side, for the command line: sends the words, returns the
/// answer's lines and whether its last said `ok`.
pub fn ask(socket: &Path, words: &[&str]) -> Result<(bool, String), String> {
    use std::io::{Read, Write};
    let mut s = std::os::unix::net::UnixStream::connect(socket).map_err(|e| {
        format!("cannot reach gatehouse at {}: {e} (is it running with this [control] socket?)", socket.display())
    })?;
    let _ = s.set_read_timeout(Some(TIMEOUT));
    s.write_all(format!("{}\n", words.join("\t")).as_bytes()).map_err(|e| e.to_string())?;
    let mut out = String::new();
    s.read_to_string(&mut out).map_err(|e| e.to_string())?;
    let ok = out.lines().last() == Some("ok");
    let text = if ok { out.strip_suffix("ok\n").unwrap_or(&out).to_owned() } else { out };
    Ok((ok, text))
}

/// Where `[control] socket` is in the configuration at `file`.
pub fn socket_of(file: &Path) -> Result<PathBuf, String> {
    let config = crate::config::load_leaving_keytab(file).map_err(|p| p.to_string())?;
    config
        .control
        .map(|c| c.socket)
        .ok_or_else(|| format!("{}: no [control] socket, so the running gatehouse cannot be asked", file.display()))
}
