//! Harness: the real `gatehouse` binary in a temporary directory, the testkit
//! backend in-process, and a raw HTTP/1 client that shows exactly what went over
//! the wire.

#![allow(dead_code, unused_imports)]

pub mod browser;
pub mod idp;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use testkit::process::Guarded;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub use testkit::config::{Accounts, Config, Domain, Listener, Site};
pub use testkit::lab::{lab_env, LabEnv};

pub fn listen(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// The real binary on a config in a temporary folder. Listeners bind port 0
/// (the system picks a free port, gatehouse logs it: see [`Gatehouse::addr_of`]),
/// so parallel tests never race each other for a port. Dropping it kills
/// gatehouse and everything it started, and reaps it, panicking or not.
pub struct Gatehouse {
    // Before `dir`: the process dies before its folder is deleted.
    process: Guarded,
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
}

/// How to launch gatehouse, beyond the config.
#[derive(Default)]
pub struct Launch {
    /// Environment for the gatehouse process.
    pub env: Vec<(&'static str, String)>,
}

impl Launch {
    /// gatehouse itself (no wrapper process) with its wall clock `offset`
    /// ahead (`"+11h"`), through libfaketime's preload; timers keep real time.
    pub fn clock_ahead(offset: &str) -> Launch {
        Launch {
            env: vec![
                ("LD_PRELOAD", libfaketime().display().to_string()),
                ("FAKETIME", offset.to_owned()),
                ("FAKETIME_DONT_FAKE_MONOTONIC", "1".to_owned()),
            ],
        }
    }
}

/// Debian's libfaketime (package `faketime`, installed by scripts/install-deps.sh).
fn libfaketime() -> PathBuf {
    let found = std::fs::read_dir("/usr/lib").into_iter().flatten().flatten().find_map(|e| {
        let p = e.path().join("faketime/libfaketime.so.1");
        p.exists().then_some(p)
    });
    found.expect("libfaketime.so.1 not found under /usr/lib/*/faketime: install Debian's faketime package")
}

/// The harness's `[log]` lines (the access log where `access_log` reads
/// it) ahead of the test's: merged into the test's own `[log]` table when it
/// has one (a table may not be given twice; the test's then sets neither
/// `access` nor `level`), else a table of their own.
fn with_log(ours: &str, config: &str) -> String {
    if config.starts_with("[log]\n") || config.contains("\n[log]\n") {
        let at = if config.starts_with("[log]\n") { 0 } else { config.find("\n[log]\n").unwrap() + 1 };
        format!("{}{ours}{}", &config[..at], &config[at + "[log]\n".len()..])
    } else {
        format!("{ours}\n{config}")
    }
}

impl Gatehouse {
    /// Writes `config` (with `{dir}` replaced by the temp directory) and starts
    /// gatehouse on it, waiting until it serves.
    pub fn start(config: &str) -> Gatehouse {
        Self::start_in(tempfile::tempdir().unwrap(), config)
    }

    pub fn start_in(dir: tempfile::TempDir, config: &str) -> Gatehouse {
        Self::launch(dir, config, Launch::default())
    }

    pub fn launch(dir: tempfile::TempDir, config: &str, launch: Launch) -> Gatehouse {
        let path = dir.path().join("gatehouse.toml");
        let text = with_log(
            "[log]\naccess = \"access.log\"\nlevel = \"info\"\n",
            &config.replace("{dir}", dir.path().to_str().unwrap()),
        );
        std::fs::write(&path, text).unwrap();
        let stderr = std::fs::File::create(dir.path().join("stderr.log")).unwrap();
        let process = Guarded::spawn(
            Command::new(env!("CARGO_BIN_EXE_gatehouse"))
                .args(["run", "-c"])
                .arg(&path)
                .envs(launch.env.iter().map(|(k, v)| (k, v)))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(stderr),
        )
        .expect("start gatehouse");
        let mut g = Gatehouse { process, dir, config: path };
        // Logged once every listener is bound and listening.
        let start = Instant::now();
        while !g.stderr().contains("gatehouse is serving") {
            if let Some(status) = g.process.try_wait() {
                panic!("gatehouse exited at start ({status}):\n{}", g.stderr());
            }
            assert!(start.elapsed() < Duration::from_secs(10), "gatehouse did not start serving:\n{}", g.stderr());
            std::thread::sleep(Duration::from_millis(20));
        }
        g
    }

    /// gatehouse's pid.
    pub fn pid(&self) -> u32 {
        self.process.id()
    }

    /// The addresses the listeners bound, by name, from the log's `bound`
    /// lines (the latest line per name: a reload that adds a listener adds one).
    pub fn addrs(&self) -> HashMap<String, SocketAddr> {
        self.stderr()
            .lines()
            .filter(|l| l.contains(" bound "))
            .filter_map(|l| {
                let field = |k: &str| l.split_whitespace().find_map(|w| w.strip_prefix(k));
                Some((field("listener=")?.to_owned(), field("addr=")?.parse().ok()?))
            })
            .collect()
    }

    /// Where the listener `name` accepts connections.
    pub fn addr_of(&self, name: &str) -> SocketAddr {
        *self.addrs().get(name).unwrap_or_else(|| panic!("no listener `{name}` bound:\n{}", self.stderr()))
    }

    /// The address of the only listener.
    pub fn addr(&self) -> SocketAddr {
        let addrs = self.addrs();
        assert_eq!(addrs.len(), 1, "several listeners ({addrs:?}): name one with addr_of");
        *addrs.values().next().unwrap()
    }

    /// The port of the only listener.
    pub fn port(&self) -> u16 {
        self.addr().port()
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.path("stderr.log")).unwrap_or_default()
    }

    /// The access records written so far. The log is written after the
    /// response, so a test that needs a record waits for it
    /// (`wait_for_record`); a line still being written (no newline yet) is
    /// left for the next read rather than parsed half.
    pub fn access_log(&self) -> Vec<serde_json::Value> {
        let text = std::fs::read_to_string(self.path("access.log")).unwrap_or_default();
        let complete = match text.rfind('\n') {
            Some(end) => &text[..end],
            None => "",
        };
        complete.lines().map(|l| serde_json::from_str(l).expect("access log line is JSON")).collect()
    }

    /// Waits (up to 10 s) for an access record that `matches`, and returns the log.
    pub fn wait_for_record(&self, mut matches: impl FnMut(&serde_json::Value) -> bool) -> Vec<serde_json::Value> {
        let start = Instant::now();
        loop {
            let log = self.access_log();
            if log.iter().any(&mut matches) {
                return log;
            }
            if start.elapsed() > Duration::from_secs(10) {
                panic!("no matching access record within 10 s: {log:?}\ngatehouse stderr:\n{}", self.stderr());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn wait_for(&self, mut cond: impl FnMut() -> bool, what: &str) {
        let start = Instant::now();
        while !cond() {
            if start.elapsed() > Duration::from_secs(10) {
                panic!("timed out waiting for {what}; gatehouse stderr:\n{}", self.stderr());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn signal(&self, sig: &str) {
        self.process.signal(sig);
    }

    /// Rewrites the config and sends SIGHUP; waits for the reload line. A
    /// listener whose name and `bind` (port 0 included) stay keeps its socket,
    /// so its port does not change.
    pub fn reload(&self, config: &str) {
        let before = self.stderr().matches("configuration reloaded").count();
        let text =
            with_log("[log]\naccess = \"access.log\"\n", &config.replace("{dir}", self.dir.path().to_str().unwrap()));
        std::fs::write(&self.config, text).unwrap();
        self.signal("-HUP");
        self.wait_for(|| self.stderr().matches("configuration reloaded").count() > before, "the reload");
    }

    pub fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        self.process.wait_exit(within)
    }
}

/// A response as read off the wire.
#[derive(Debug, Clone)]
pub struct Resp {
    pub version: u8,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A raw client connection (plain TCP, or TLS via [`Conn::open_tls`]).
pub struct Conn<S = TcpStream> {
    pub stream: S,
    pub buf: Vec<u8>,
}

impl Conn {
    pub async fn open(addr: SocketAddr) -> Conn {
        Conn { stream: TcpStream::connect(addr).await.unwrap(), buf: Vec::new() }
    }
}

pub type TlsStream = tokio_rustls::client::TlsStream<TcpStream>;

impl Conn<TlsStream> {
    /// TLS to `addr`, trusting the PEM CA at `ca`, sending `name` as SNI.
    pub async fn open_tls(addr: SocketAddr, ca: &Path, name: &str) -> Conn<TlsStream> {
        use rustls::pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls::pki_types::CertificateDer::pem_file_iter(ca).unwrap() {
            roots.add(cert.unwrap()).unwrap();
        }
        let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
        let tcp = TcpStream::connect(addr).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from(name.to_owned()).unwrap();
        Conn { stream: connector.connect(name, tcp).await.unwrap(), buf: Vec::new() }
    }
}

impl<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin> Conn<S> {
    pub async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    /// Reads more bytes; false on EOF or error.
    async fn fill(&mut self) -> bool {
        // On the heap: a 64 KiB array here would sit in every caller's future.
        let mut tmp = vec![0u8; 65536];
        match tokio::time::timeout(Duration::from_secs(10), self.stream.read(&mut tmp)).await {
            Ok(Ok(0)) | Ok(Err(_)) => false,
            Ok(Ok(n)) => {
                self.buf.extend_from_slice(&tmp[..n]);
                true
            }
            Err(_) => panic!("read timed out; have {:?}", String::from_utf8_lossy(&self.buf)),
        }
    }

    /// Waits until `needle` has arrived (within the buffered bytes).
    pub async fn read_until(&mut self, needle: &[u8]) -> bool {
        loop {
            if self.buf.windows(needle.len()).any(|w| w == needle) {
                return true;
            }
            if !self.fill().await {
                return false;
            }
        }
    }

    /// Reads one full response (for a request that was not HEAD).
    pub async fn response(&mut self) -> Resp {
        let (mut resp, consumed) = loop {
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut r = httparse::Response::new(&mut headers);
            if let Ok(httparse::Status::Complete(n)) = r.parse(&self.buf) {
                let resp = Resp {
                    version: r.version.unwrap(),
                    status: r.code.unwrap(),
                    headers: r
                        .headers
                        .iter()
                        .map(|h| (h.name.to_string(), String::from_utf8_lossy(h.value).into_owned()))
                        .collect(),
                    body: Vec::new(),
                };
                break (resp, n);
            }
            assert!(
                self.fill().await,
                "connection closed before a response head; got {:?}",
                String::from_utf8_lossy(&self.buf)
            );
        };
        self.buf.drain(..consumed);
        if resp.status < 200 || resp.status == 204 || resp.status == 304 {
            return resp;
        }
        if let Some(len) = resp.header("content-length").map(|v| v.parse::<usize>().unwrap()) {
            while self.buf.len() < len {
                assert!(self.fill().await, "closed mid-body");
            }
            resp.body = self.buf.drain(..len).collect();
        } else if resp.header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
            loop {
                let line_end = loop {
                    if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                        break i;
                    }
                    assert!(self.fill().await, "closed mid-chunk");
                };
                let size = usize::from_str_radix(
                    std::str::from_utf8(&self.buf[..line_end]).unwrap().split(';').next().unwrap().trim(),
                    16,
                )
                .unwrap();
                self.buf.drain(..line_end + 2);
                while self.buf.len() < size + 2 {
                    assert!(self.fill().await, "closed mid-chunk");
                }
                resp.body.extend(self.buf.drain(..size));
                self.buf.drain(..2);
                if size == 0 {
                    break;
                }
            }
        } else {
            while self.fill().await {}
            resp.body = std::mem::take(&mut self.buf);
        }
        resp
    }

    /// True if the server closed the connection (EOF within a few seconds).
    pub async fn closed(&mut self) -> bool {
        let mut tmp = vec![0u8; 1024];
        match tokio::time::timeout(Duration::from_secs(5), self.stream.read(&mut tmp)).await {
            Ok(Ok(0)) | Ok(Err(_)) => true,
            Ok(Ok(_)) => false,
            Err(_) => false,
        }
    }
}

/// One request on a fresh connection.
pub async fn request(addr: SocketAddr, raw: &str) -> Resp {
    let mut c = Conn::open(addr).await;
    c.send(raw.as_bytes()).await;
    c.response().await
}

pub fn get(host: &str, path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n")
}

/// A self-signed CA and leaf certificates for the given names, written as PEM.
pub fn make_certs(dir: &Path, leaves: &[(&str, &[&str])]) -> PathBuf {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, "gatehouse test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    for (file, names) in leaves {
        let key = KeyPair::generate().unwrap();
        let params = CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        let cert = params.signed_by(&key, &issuer).unwrap();
        std::fs::write(dir.join(format!("{file}.pem")), cert.pem()).unwrap();
        std::fs::write(dir.join(format!("{file}.key")), key.serialize_pem()).unwrap();
    }
    let ca_path = dir.join("ca.pem");
    std::fs::write(&ca_path, ca.pem()).unwrap();
    ca_path
}

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// The NTLM challenge in a 401.
pub fn challenge_of(r: &Resp) -> Vec<u8> {
    use base64::Engine;
    let h = r.header("www-authenticate").expect("a challenge");
    B64.decode(h.strip_prefix("NTLM ").expect("an NTLM challenge")).unwrap()
}

/// Sends `head` (request line and headers, without the blank line) with an
/// Authorization header carrying the NTLM message `msg`, and `body`.
pub async fn leg<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    c: &mut Conn<S>,
    head: &str,
    msg: &[u8],
    body: &[u8],
) -> Resp {
    use base64::Engine;
    let req = format!("{head}\r\nContent-Length: {}\r\nAuthorization: NTLM {}\r\n\r\n", body.len(), B64.encode(msg));
    c.send(req.as_bytes()).await;
    c.send(body).await;
    c.response().await
}

/// A whole NTLM handshake on `c`; `tamper` may change the AUTHENTICATE. Returns
/// the answer to the last leg.
pub async fn handshake<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    c: &mut Conn<S>,
    client: &ntlm::client::Client,
    head: &str,
    body: &[u8],
    tamper: impl FnOnce(&mut Vec<u8>),
) -> Resp {
    let negotiate = client.negotiate();
    let r = leg(c, head, &negotiate, b"").await;
    assert_eq!(r.status, 401);
    let mut auth = client.authenticate(&negotiate, &challenge_of(&r));
    tamper(&mut auth);
    leg(c, head, &auth, body).await
}

/// The site the KCD tests share: NTLM at the edge, then KCD as svc-proxy to
/// `backend` (Host `backend.ad.test`) for `spn`, with `backend_token = token`
/// and `send_token = send`, on the listener `plain`.
pub fn kcd_site(backend: &str, spn: &str, token: &str, send: &str) -> Site {
    Site::new("kerberos-backend", "plain", backend)
        .host_header("backend.ad.test")
        .auth(&["NTLM"])
        .delegation("kcd")
        .backend_spn(spn)
        .set_str("backend_token", token)
        .set_str("send_token", send)
}

/// The lab's domain, `accounts`, a plain listener `plain` and `site`.
pub fn kcd_config(env: &LabEnv, accounts: Accounts, site: Site) -> Config {
    Config::new().domain(Domain::lab(env)).accounts(accounts).listener(Listener::plain("plain")).site(site)
}

/// A ticket cache for a lab user (kinit with the password, as a domain-joined
/// client has at logon) in `dir`; returns its `FILE:` name.
pub fn kinit(env: &LabEnv, dir: &Path, user: &str, password: &str, args: &[&str]) -> String {
    use std::io::Write;
    let cc = format!("FILE:{}", dir.join(format!("{user}.cc")).display());
    let mut k = Command::new("kinit")
        .args(args)
        .arg(format!("{user}@AD.TEST"))
        .env("KRB5_CONFIG", &env["KRB5_CONFIG"])
        .env("KRB5CCNAME", &cc)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    k.stdin.take().unwrap().write_all(format!("{password}\n").as_bytes()).unwrap();
    assert!(k.wait().unwrap().success(), "kinit {user}");
    cc
}
