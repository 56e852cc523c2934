//! `[forms]`: the sign-in page for browsers, its session cookie and key file;
//! `[control]`: the socket `gatehouse sessions` talks to.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::reader::{Reader, Section};

/// `[forms]`, read and checked: the keys are loaded, the logo read.
#[derive(Debug, Clone)]
pub struct Forms {
    pub key_file: PathBuf,
    /// The first seals session cookies; all open them.
    pub keys: Arc<websession::Keys>,
    /// The page's heading and the browser tab's title.
    pub title: String,
    pub logo: Option<Logo>,
    /// One sign-in for every host under this domain (`Domain=` cookie), or
    /// None for a cookie per host (`__Host-`).
    pub cookie_domain: Option<String>,
    /// A private computer's session: idle timeout and absolute lifetime.
    pub idle: Duration,
    pub lifetime: Duration,
    /// A public or shared computer's (shorter).
    pub public_idle: Duration,
    pub public_lifetime: Duration,
    /// User agents treated as browsers even without `Accept: text/html`.
    pub browser_agents: Vec<String>,
    pub max_sessions: usize,
    /// Sign-in and password-change attempts per client address per minute.
    pub attempts_per_minute: u32,
    /// Paths that sign out, by site (the Exchange preset's `/owa/logoff.owa`),
    /// lower case.
    pub logoff_paths: Vec<(String, String)>,
}

/// A logo for the sign-in page, read when the configuration loads.
#[derive(Debug, Clone)]
pub struct Logo {
    pub bytes: Arc<[u8]>,
    pub content_type: &'static str,
}

const LOGO_MAX: usize = 256 * 1024;

impl Reader<'_> {
    pub(super) fn forms(&mut self, s: &mut Section<'_, '_>) -> Option<Forms> {
        let keys = match self.required_string(s, "key_file") {
            Some((name, span)) => {
                let path = self.file_path(&name);
                match read_keys(&path) {
                    Ok(keys) => Some((path, keys)),
                    Err(why) => {
                        self.problem(span, &s.key_path("key_file"), why);
                        None
                    }
                }
            }
            None => None,
        };
        let title = match self.string(s, "title") {
            Some((t, span)) if t.trim().is_empty() || t.chars().count() > 80 || t.chars().any(char::is_control) => {
                self.problem(span, &s.key_path("title"), "a title of 1 to 80 printable characters".into());
                None
            }
            Some((t, _)) => Some(t),
            None => Some("Sign in".to_owned()),
        };
        let logo = self.string(s, "logo").and_then(|(name, span)| {
            let path = self.file_path(&name);
            match read_logo(&path) {
                Ok(logo) => Some(logo),
                Err(why) => {
                    self.problem(span, &s.key_path("logo"), why);
                    None
                }
            }
        });
        let cookie_domain = self.string(s, "cookie_domain").and_then(|(d, span)| {
            let d = d.trim_start_matches('.').to_ascii_lowercase();
            let label_ok =
                |l: &str| !l.is_empty() && l.len() <= 63 && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
            if d.split('.').count() < 2 || !d.split('.').all(label_ok) {
                let why = format!(
                    "`{d}` is not a parent domain such as \"corp.example\" (at least two labels; browsers refuse \
                     cookies for a top-level domain)"
                );
                self.problem(span, &s.key_path("cookie_domain"), why);
                return None;
            }
            Some(d)
        });
        let idle = self.duration(s, "idle").unwrap_or(Duration::from_secs(8 * 3600));
        let lifetime = self.duration(s, "lifetime").unwrap_or(Duration::from_secs(24 * 3600));
        let public_idle = self.duration(s, "public_idle").unwrap_or(Duration::from_secs(15 * 60));
        let public_lifetime = self.duration(s, "public_lifetime").unwrap_or(Duration::from_secs(8 * 3600));
        // A public computer's session is the shorter one, and no session idles
        // longer than it may live.
        for (key, short, long, than) in [
            ("idle", idle, lifetime, "lifetime"),
            ("public_idle", public_idle, public_lifetime, "public_lifetime"),
            ("public_idle", public_idle, idle, "idle"),
            ("public_lifetime", public_lifetime, lifetime, "lifetime"),
        ] {
            if short > long {
                self.problem(s.span.clone(), &s.key_path(key), format!("{key} is longer than {than}"));
            }
        }
        let browser_agents =
            self.string_list(s, "browser_agents").unwrap_or_default().into_iter().map(|(g, _)| g).collect();
        let max_sessions = self.count(s, "max_sessions", 10, 10_000_000).unwrap_or(100_000);
        let attempts_per_minute = self.count(s, "attempts_per_minute", 1, 1_000_000).unwrap_or(10) as u32;
        let (key_file, keys) = keys?;
        Some(Forms {
            key_file,
            keys,
            title: title?,
            logo,
            cookie_domain,
            idle,
            lifetime,
            public_idle,
            public_lifetime,
            browser_agents,
            max_sessions,
            attempts_per_minute,
            logoff_paths: Vec::new(),
        })
    }
}

/// The key file: readable, private to gatehouse's account (whoever reads it
/// can make a session for anyone), and keys gatehouse can use.
fn read_keys(path: &std::path::Path) -> Result<Arc<websession::Keys>, String> {
    let fix = "`gatehouse sessions new-key > FILE` writes one (then `chmod 600 FILE`)";
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}; {fix}", path.display()))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "{}: readable or writable by others (mode {mode:03o}): whoever reads it can sign in as anyone; \
             `chmod 600 {}`",
            path.display(),
            path.display()
        ));
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    websession::Keys::parse(&text).map(Arc::new).map_err(|e| format!("{}: {e}", path.display()))
}

fn read_logo(path: &std::path::Path) -> Result<Logo, String> {
    let ext = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
    let content_type = match ext.as_deref() {
        Some("png") => "image/png",
        Some("svg") => "image/svg+xml",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("gif") => "image/gif",
        Some("webp") => "image/webp",
        _ => return Err(format!("{}: a logo is a .png, .svg, .jpg, .gif or .webp file", path.display())),
    };
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if bytes.is_empty() || bytes.len() > LOGO_MAX {
        return Err(format!("{}: {} bytes; a logo is 1 byte to 256 KiB", path.display(), bytes.len()));
    }
    Ok(Logo { bytes: bytes.into(), content_type })
}
