//! The test OpenID provider: the project's oidc-provider (tests/idp),
//! installed into target/idp by tests/idp/install.sh (npm ci), run with
//! Node.js on a free loopback port; killed when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct Provider {
    child: Child,
    pub port: u16,
    /// Its stderr (with LOG_REQUESTS=1, one line per request).
    pub log: PathBuf,
    /// The redirect URI it has registered.
    pub redirect: String,
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Runs tests/idp/install.sh (nothing to do when target/idp is current).
pub fn install() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = Command::new("sh").arg(root.join("tests/idp/install.sh")).output().expect("sh");
    assert!(out.status.success(), "tests/idp/install.sh: {}", String::from_utf8_lossy(&out.stderr));
    root.join("target/idp")
}

/// Starts the provider on `port` with `env` (see tests/idp/provider.mjs),
/// waiting until its discovery document answers.
pub fn start(dir: &Path, port: u16, env: &[(&str, String)], log: PathBuf) -> Provider {
    let idp = install();
    let mut cmd = Command::new("node");
    cmd.arg(idp.join("provider.mjs")).env("PORT", port.to_string()).env("LOG_REQUESTS", "1");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let err = std::fs::File::create(&log).unwrap();
    let mut child = cmd.current_dir(dir).stdout(Stdio::null()).stderr(err).spawn().expect("node (Node.js 20)");
    for _ in 0..200 {
        let ok = Command::new("curl")
            .args(["-fsS", "-o", "/dev/null", &format!("http://127.0.0.1:{port}/.well-known/openid-configuration")])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            let redirect = env.iter().find(|(k, _)| *k == "REDIRECT_URI").map(|(_, v)| v.clone()).unwrap_or_default();
            return Provider { child, port, log, redirect };
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("the provider did not start: {}", std::fs::read_to_string(&log).unwrap_or_default());
}
