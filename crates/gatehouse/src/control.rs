//! The control socket: `gatehouse backend drain|undrain|status` and
//! `gatehouse sessions list|revoke` and `gatehouse mfa list|reset|issue-code`
//! reach the running gatehouse here
//! (`[control] socket`).
//!
//! A Unix socket, made with mode 0600 in a folder that only its owner can
//! change (checked when the configuration loads), and each connection's peer
//! is checked by the kernel's credentials (SO_PEERCRED): the account gatehouse
//! runs as, or root. One request per connection: a line of tab-separated words
//! (`drain`, SITE, BACKEND; `undrain`, SITE, BACKEND; `status`), answered by
//! lines, the last `ok` or `error: ...`. A socket rather than SIGHUP and a
//! file: the answer (what changed, how many sessions ended) comes back to the
//! administrator, and SIGHUP would reload a file that may be half-edited.
//! The transport knows no command: each module answers its own words (the
//! farm's below, `session::command`'s, `mfa::command`'s). Drain state lives in the farm state,
//! which outlives reloads; `drain = true` in the file is the permanent form.

use std::io::{BufRead, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

use crate::farm::Farm;
use crate::generation::Generation;
use crate::shared::Shared;

/// The longest request line.
const MAX_LINE: u64 = 4096;

/// The socket while gatehouse serves it; dropping it stops serving and
/// removes the file.
pub struct Socket {
    path: PathBuf,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Socket {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Binds `path` and answers requests against the current generation.
pub fn serve(path: &Path, shared: Arc<Shared>) -> Result<Socket, String> {
    if std::fs::symlink_metadata(path).is_ok() {
        // A socket left by a gatehouse that died goes; one that answers is
        // another gatehouse's, which this one must not take over.
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(format!("control socket {}: another gatehouse serves it", path.display()));
        }
        std::fs::remove_file(path).map_err(|e| format!("control socket {}: {e}", path.display()))?;
    }
    let listener =
        tokio::net::UnixListener::bind(path).map_err(|e| format!("control socket {}: {e}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| format!("control socket {}: {e}", path.display()))?;
    let owner =
        std::fs::metadata(path).map(|m| m.uid()).map_err(|e| format!("control socket {}: {e}", path.display()))?;
    tracing::info!(socket = %path.display(), "control socket ready");
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let shared = shared.clone();
            tokio::spawn(async move {
                let _ = tokio::time::timeout(Duration::from_secs(10), answer(stream, owner, &shared)).await;
            });
        }
    });
    Ok(Socket { path: path.to_owned(), task })
}

async fn answer(stream: tokio::net::UnixStream, owner: u32, shared: &Shared) {
    let uid = stream.peer_cred().map(|c| c.uid()).ok();
    let (read, mut write) = stream.into_split();
    if uid != Some(owner) && uid != Some(0) {
        tracing::warn!(uid = ?uid, "control socket: refused a connection from another account");
        let _ = write.write_all(b"error: not allowed\n").await;
        return;
    }
    let mut line = String::new();
    let mut read = tokio::io::BufReader::new(tokio::io::AsyncReadExt::take(read, MAX_LINE));
    if read.read_line(&mut line).await.is_err() {
        return;
    }
    let line = line.trim_end_matches(['\r', '\n']);
    let words: Vec<&str> = line.split('\t').collect();
    let lifetime = shared.current().config.mfa.as_ref().map_or(Duration::ZERO, |m| m.enrol_code_lifetime);
    let answer = match crate::session::command::run(&words, shared.kept.sessions.as_ref()).await {
        Some(answer) => Some(answer),
        None => crate::mfa::command::run(&words, shared.kept.mfa.as_deref(), &shared.kept.mfa_counters, lifetime).await,
    };
    let (ok, text) = answer.unwrap_or_else(|| execute(line, &shared.current()));
    let last = if ok { "ok\n".to_owned() } else { String::new() };
    let _ = write.write_all(format!("{text}{last}").as_bytes()).await;
}

/// One request against `generation`: whether it succeeded, and the lines to answer.
pub fn execute(line: &str, generation: &Generation) -> (bool, String) {
    let words: Vec<&str> = line.split('\t').collect();
    match words.as_slice() {
        ["status"] => (true, status(generation)),
        [verb @ ("drain" | "undrain"), site, backend] => drain(generation, site, backend, *verb == "drain"),
        _ => (
            false,
            "error: expected `status`, `drain SITE BACKEND`, `undrain SITE BACKEND`, `sessions list`, `sessions revoke NAME` or `mfa list|reset|issue-code USER`\n"
                .into(),
        ),
    }
}

/// Every backend of every site, one line each.
fn status(generation: &Generation) -> String {
    let mut out = String::new();
    for site in &generation.config.sites {
        let Some(farm) = generation.farms.get(&site.name) else { continue };
        for m in &farm.members {
            out.push_str(&format!(
                "site {} backend {} weight {}: {}\n",
                farm.site,
                m.backend.origin,
                m.weight,
                m.state.describe(m.drain)
            ));
        }
    }
    out
}

/// Whether `written` names member `m` (as written, its origin, host or host:port).
fn names(written: &str, m: &crate::farm::Member) -> bool {
    let w = written.trim_end_matches('/');
    [m.url.trim_end_matches('/'), m.backend.origin.as_str(), m.backend.host.as_str()]
        .iter()
        .any(|n| n.eq_ignore_ascii_case(w))
        || format!("{}:{}", m.backend.host, m.backend.port).eq_ignore_ascii_case(w)
}

fn drain(generation: &Generation, site: &str, backend: &str, drained: bool) -> (bool, String) {
    let mut farms: Vec<&Arc<Farm>> =
        generation.farms.values().filter(|f| &*f.site == site || &*f.family == site).collect();
    farms.sort_by(|a, b| a.site.cmp(&b.site));
    if farms.is_empty() {
        let mut all: Vec<&str> = generation.config.sites.iter().map(|s| s.family.as_str()).collect();
        all.dedup();
        return (false, format!("error: no site is named `{site}` (sites: {})\n", all.join(", ")));
    }
    let mut out = String::new();
    let mut changed = Vec::new();
    for farm in farms {
        let matching: Vec<&crate::farm::Member> = farm.members.iter().filter(|m| names(backend, m)).collect();
        let listed = || farm.members.iter().map(|m| m.backend.origin.as_str()).collect::<Vec<_>>().join(", ");
        let m = match matching.as_slice() {
            [m] => *m,
            [] => {
                return (
                    false,
                    format!("error: site {} has no backend `{backend}` (backends: {})\n", farm.site, listed()),
                )
            }
            _ => {
                let why = format!(
                    "error: `{backend}` names several backends of site {} ({}): give the URL\n",
                    farm.site,
                    listed()
                );
                return (false, why);
            }
        };
        if !drained && m.drain {
            let why = format!(
                "error: site {} backend {} is drained by the configuration file (drain = true): remove it there and reload\n",
                farm.site, m.backend.origin
            );
            return (false, why);
        }
        if m.state.set_drained(drained) {
            changed.push((farm.site.clone(), m.backend.origin.clone()));
        }
        out.push_str(&format!("site {} backend {}: {}\n", farm.site, m.backend.origin, m.state.describe(m.drain)));
    }
    for (site, origin) in changed {
        if drained {
            tracing::warn!(site = %site, backend = %origin, by = "control socket", "backend drained: no new sessions; open ones continue");
        } else {
            tracing::info!(site = %site, backend = %origin, by = "control socket", "backend undrained: takes new sessions again");
        }
    }
    (true, out)
}

/// Sends one request to the gatehouse serving `socket`; its answer, or why
/// there was none.
pub fn request(socket: &Path, words: &[&str]) -> Result<String, String> {
    if words.iter().any(|w| w.contains(['\t', '\n', '\r'])) {
        return Err("names cannot contain tabs or line breaks".into());
    }
    let mut stream = std::os::unix::net::UnixStream::connect(socket).map_err(|e| {
        format!("cannot reach gatehouse at {}: {e} (is `gatehouse run` serving this file?)", socket.display())
    })?;
    let _ = stream.set_read_timeout(Some(Duration::from_secs(15)));
    stream.write_all(format!("{}\n", words.join("\t")).as_bytes()).map_err(|e| e.to_string())?;
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let mut answer = String::new();
    for line in std::io::BufReader::new(stream).lines() {
        let line = line.map_err(|e| e.to_string())?;
        answer.push_str(&line);
        answer.push('\n');
    }
    Ok(answer)
}

/// [`request`], with whether the answer's last line said `ok` (and without it).
pub fn ask(socket: &Path, words: &[&str]) -> Result<(bool, String), String> {
    let out = request(socket, words)?;
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
