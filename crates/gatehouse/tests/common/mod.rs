//! Harness: the real `gatehouse` binary in a temporary directory, the testkit
//! backend in-process, and a raw HTTP/1 client that shows exactly what went over
//! the wire.

#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub fn listen(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

pub fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub struct Gatehouse {
    pub dir: tempfile::TempDir,
    pub child: Option<Child>,
    pub config: PathBuf,
}

impl Gatehouse {
    /// Writes `config` (with `{dir}` replaced by the temp directory) and starts
    /// gatehouse on it, waiting until `ready` accepts connections.
    pub fn start(config: &str, ready: SocketAddr) -> Gatehouse {
        let dir = tempfile::tempdir().unwrap();
        Self::start_in(dir, config, ready)
    }

    pub fn start_in(dir: tempfile::TempDir, config: &str, ready: SocketAddr) -> Gatehouse {
        Self::start_wrapped(dir, config, ready, &[])
    }

    /// Starts gatehouse under a wrapper command, e.g. `faketime -f +11h` to
    /// see the world from a clock that has run ahead.
    pub fn start_wrapped(dir: tempfile::TempDir, config: &str, ready: SocketAddr, wrapper: &[&str]) -> Gatehouse {
        let path = dir.path().join("gatehouse.toml");
        let text = format!(
            "[log]\naccess = \"access.log\"\nlevel = \"info\"\n\n{}",
            config.replace("{dir}", dir.path().to_str().unwrap())
        );
        std::fs::write(&path, text).unwrap();
        let stderr = std::fs::File::create(dir.path().join("stderr.log")).unwrap();
        let mut command = match wrapper.split_first() {
            None => Command::new(env!("CARGO_BIN_EXE_gatehouse")),
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(env!("CARGO_BIN_EXE_gatehouse"));
                // Timers keep real time; only the wall clock is shifted.
                c.env("FAKETIME_DONT_FAKE_MONOTONIC", "1");
                c
            }
        };
        let child = command
            .args(["run", "-c"])
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("start gatehouse");
        let mut g = Gatehouse { dir, child: Some(child), config: path };
        let start = Instant::now();
        while std::net::TcpStream::connect(ready).is_err() {
            if let Some(status) = g.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("gatehouse exited at start ({status}):\n{}", g.stderr());
            }
            assert!(start.elapsed() < Duration::from_secs(10), "gatehouse did not listen:\n{}", g.stderr());
            std::thread::sleep(Duration::from_millis(20));
        }
        g
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.path("stderr.log")).unwrap_or_default()
    }

    pub fn access_log(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.path("access.log"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("access log line is JSON"))
            .collect()
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
        let pid = self.child.as_ref().unwrap().id().to_string();
        assert!(Command::new("kill").args([sig, &pid]).status().unwrap().success());
    }

    /// Rewrites the config and sends SIGHUP; waits for the reload line.
    pub fn reload(&self, config: &str) {
        let before = self.stderr().matches("configuration reloaded").count();
        let text =
            format!("[log]\naccess = \"access.log\"\n\n{}", config.replace("{dir}", self.dir.path().to_str().unwrap()));
        std::fs::write(&self.config, text).unwrap();
        self.signal("-HUP");
        self.wait_for(|| self.stderr().matches("configuration reloaded").count() > before, "the reload");
    }

    pub fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        let child = self.child.as_mut().unwrap();
        let start = Instant::now();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                self.child = None;
                return status;
            }
            assert!(start.elapsed() < within, "gatehouse did not exit in {within:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Gatehouse {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
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
        let config =
            rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::ring::default_provider()))
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

/// The lab domain's settings (`lab/lab.sh` writes them to `$LAB/env`). Without a
/// lab: None, and the caller skips, unless GATEHOUSE_LAB_REQUIRED is set (as
/// `scripts/test.sh`, and so CI, sets it), in which case this panics.
pub fn lab_env() -> Option<std::collections::HashMap<String, String>> {
    let dir = std::env::var("LAB").unwrap_or_else(|_| "/tmp/gatehouse-lab".into());
    let Ok(text) = std::fs::read_to_string(format!("{dir}/env")) else {
        if std::env::var_os("GATEHOUSE_LAB_REQUIRED").is_some() {
            panic!("the lab is required but {dir}/env is missing: run lab/lab.sh start");
        }
        eprintln!("SKIPPED: no lab at {dir} (run lab/lab.sh start)");
        return None;
    };
    let mut env = std::collections::HashMap::new();
    for line in text.lines() {
        for pair in line.trim_start_matches("export ").split_whitespace() {
            if let Some((k, v)) = pair.split_once('=') {
                env.insert(k.to_owned(), v.to_owned());
            }
        }
    }
    Some(env)
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

/// A gatehouse configuration for the lab: NTLM at the edge (`accounts`, the body
/// of an `[accounts]` section), KCD to `backend` as `svc-proxy`, one plain
/// listener on `port`.
pub fn kcd_config(
    env: &std::collections::HashMap<String, String>,
    port: u16,
    accounts: &str,
    backend: &str,
    spn: &str,
    token: &str,
    send: &str,
) -> String {
    format!(
        r#"
[domain]
realm = "AD.TEST"
netbios_name = "ADTEST"
krb5_conf = "{krb5}"
keytab = "{keytab}"
service_principal = "svc-proxy@AD.TEST"

[accounts]
{accounts}

[[listener]]
name = "plain"
bind = "127.0.0.1:{port}"

[[site]]
name = "kerberos-backend"
listener = "plain"
backend = "{backend}"
host_header = "backend.ad.test"
auth = ["NTLM"]
delegation = "kcd"
backend_spn = "{spn}"
backend_token = "{token}"
send_token = "{send}"
"#,
        krb5 = env["KRB5_CONFIG"],
        keytab = env["LAB_PROXY_KEYTAB"],
    )
}

/// A ticket cache for a lab user (kinit with the password, as a domain-joined
/// client has at logon) in `dir`; returns its `FILE:` name.
pub fn kinit(
    env: &std::collections::HashMap<String, String>,
    dir: &Path,
    user: &str,
    password: &str,
    args: &[&str],
) -> String {
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
