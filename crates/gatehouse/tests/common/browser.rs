//! What the browser tests share: Chromium present, the session key and logo
//! files of a Forms site, running one of `tests/clients/browser_*.py` with its
//! spec, the PASS lines it must print, and keeping the screenshots.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::Gatehouse;

/// The sign-in page's logo in the browser tests (and so in the docs' pictures).
pub const LOGO: &str = r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 64 64" width="64" height="64"><rect width="64" height="64" rx="12" fill="#0b57d0"/><path d="M16 44V24l16-10 16 10v20H38V32H26v12z" fill="#fff"/></svg>"##;

/// Fails the test, saying what to install, when Debian's Chromium or its
/// driver is missing (a lab run must not skip its browser).
pub fn require_chromium() {
    for tool in ["/usr/bin/chromium", "/usr/bin/chromedriver"] {
        assert!(
            Path::new(tool).exists(),
            "{tool} is missing: `scripts/install-deps.sh test` installs chromium, chromium-driver and python3-selenium"
        );
    }
}

/// Writes `name` into `dir`, readable by its owner only (gatehouse refuses
/// key and secret files others can read).
pub fn write_secret(dir: &Path, name: &str, text: &str) {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// A fresh `session.keys` and `logo.svg` in `dir`, for `[forms]`.
pub fn forms_files(dir: &Path) {
    let mut key = [0u8; 32];
    getrandom::fill(&mut key).unwrap();
    write_secret(dir, "session.keys", &websession::Keys::line(&key));
    std::fs::write(dir.join("logo.svg"), LOGO).unwrap();
}

/// Runs `tests/clients/SCRIPT` with `spec` (written beside gatehouse's
/// configuration) under Debian's Python, which has Debian's python3-selenium
/// (a venv's python on PATH may not); `pythonpath` adds a folder (pyotp's).
/// Fails the test with the script's and gatehouse's output unless the script
/// passed and printed a PASS line containing each of `steps`. Returns what it
/// printed.
pub fn run_page_script(
    g: &Gatehouse,
    script: &str,
    spec: &serde_json::Value,
    pythonpath: Option<&Path>,
    steps: &[&str],
) -> String {
    let spec_file = g.path("browser-spec.json");
    std::fs::write(&spec_file, spec.to_string()).unwrap();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/clients").join(script);
    let mut python = Command::new("/usr/bin/python3");
    python.arg(&script).arg(&spec_file);
    if let Some(p) = pythonpath {
        python.env("PYTHONPATH", p);
    }
    let out = python.output().expect("/usr/bin/python3");
    let said = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    eprintln!("{said}");
    assert!(out.status.success(), "the browser run failed:\n{said}\ngatehouse:\n{}", g.stderr());
    for step in steps {
        assert!(said.lines().any(|l| l.starts_with("PASS") && l.contains(step)), "no PASS for {step}:\n{said}");
    }
    said
}

/// Keeps the screenshots `names` (each a real PNG) under
/// target/tmp/screenshots as `prefix` + name, and over the docs' images only
/// when asked (GATEHOUSE_UPDATE_DOCS_IMAGES=1), so that a test run leaves the
/// checkout as it found it.
pub fn keep_screenshots(shots: &Path, names: &[&str], prefix: &str) {
    let kept = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
    std::fs::create_dir_all(&kept).unwrap();
    let docs = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/images");
    let update_docs = std::env::var("GATEHOUSE_UPDATE_DOCS_IMAGES").is_ok_and(|v| v == "1");
    for name in names {
        let shot = shots.join(name);
        let bytes = std::fs::read(&shot).unwrap_or_else(|e| panic!("{}: {e}", shot.display()));
        assert!(bytes.starts_with(b"\x89PNG") && bytes.len() > 3_000, "{name} is not a real screenshot");
        std::fs::write(kept.join(format!("{prefix}{name}")), &bytes).unwrap();
        if update_docs {
            std::fs::write(docs.join(format!("{prefix}{name}")), bytes).unwrap();
        }
    }
}
