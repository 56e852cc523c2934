//! `gh-load`: a small load generator for what wrk cannot do, NTLM and Kerberos.
//!
//!   gh-load handshakes ADDR SECONDS CONNS USER PASSWORD
//!       each task: new TCP connection, NEGOTIATE, AUTHENTICATE with a GET, close.
//!   gh-load keepalive ADDR SECONDS CONNS [USER PASSWORD]
//!       each task: one connection (authenticated once if a user is given), then
//!       GET /bytes/1024 in a loop.
//!   gh-load kerberos ADDR SECONDS CONNS SPN
//!       each task: one connection, then GET /bytes/1024 in a loop, each with a
//!       fresh Kerberos AP-REQ (SPNEGO-wrapped) for SPN (`HTTP/proxy.ad.test@AD.TEST`)
//!       from the default credential cache (KRB5CCNAME), as a client that
//!       authenticates every request.
//!   gh-load kerberos-premade ADDR SECONDS CONNS SPN TOKENS
//!       the same requests, each still with an AP-REQ of its own, but TOKENS
//!       of them made (on two threads) before the clock starts and each sent
//!       once, so that the client's own Kerberos work is not on the cores the
//!       servers are measured on; a task that runs out makes its own, and
//!       their number goes to standard error.
//!   gh-load tokens ADDR SECONDS 1 SPN   (ADDR unused)
//!       the client's own cost: AP-REQs made in a loop on one core, nothing sent.
//!   gh-load rpc ADDR BYTES 1 USER PASSWORD
//!       one Outlook Anywhere session: an OUT and an IN channel (RPC_OUT_DATA,
//!       RPC_IN_DATA, HTTP/1.0, NTLM on each connection), BYTES streamed into
//!       the IN channel and read back from the OUT channel (the backend is
//!       gh-exchange, which pipes one into the other). Prints `<bytes> <MB/s>`.
//!   gh-load mapi ADDR SECONDS CONNS USER PASSWORD READY_FILE
//!       CONNS MAPI NotificationWait long polls held open at once (each on its
//!       own NTLM-authenticated connection); writes READY_FILE when all are
//!       waiting, then waits for them to end (SECONDS at most).
//!   gh-load forms ADDR SECONDS CONNS USER PASSWORD
//!       each task: one connection, signed in once on gatehouse's sign-in page
//!       (GET the form, POST it with its CSRF token), then GET /bytes/1024 in
//!       a loop with the session cookie, as a signed-in browser.
//!   gh-load cookie ADDR SECONDS CONNS COOKIE
//!       each task: one connection, GET /bytes/1024 in a loop sending
//!       `Cookie: COOKIE` (a session made elsewhere, e.g. at an OpenID provider).
//!   gh-load bearer ADDR SECONDS CONNS TOKEN
//!       each task: one connection, GET /bytes/1024 in a loop with
//!       `Authorization: Bearer TOKEN` (checked by gatehouse on every request).
//!   gh-load signins ADDR SECONDS CONNS USER PASSWORD
//!       each task: one connection, signing in on the sign-in page in a loop
//!       (GET the form, POST it); counts the sign-ins (303 with a session).
//!   gh-load burst ADDR ROUNDS USERS FILE
//!       the first USERS accounts of FILE (`DOMAIN:user:password` lines, the
//!       format of gatehouse's `[accounts] file`; `lab/bulk_users.py --accounts`
//!       writes one) sign in all at once, ROUNDS times: each user a new
//!       connection, an NTLM handshake, GET /bytes/16, closed. Round 1 is
//!       every user's first visit (with KCD: their S4U2Self), later rounds
//!       their return. Prints one line per round:
//!       `<ok> <failed> <p50 ms> <p99 ms> <max ms> <seconds for the round>`,
//!       the times from the connect to the last response's end, per user.
//!   gh-load tls ADDR SECONDS CONNS full|resume
//!       each task: a new TCP connection and TLS handshake, one
//!       `GET /bytes/16` with `Connection: close`, the answer read to its end;
//!       `full` never resumes, `resume` offers the tickets of earlier
//!       connections (TLS 1.3 resumption, as a browser does). The server's
//!       signature is not checked (the client's own cost kept low). Prints
//!       `<connections> <per second> <resumed> <tickets offered> <tickets received>
//!       <TLS 1.3 connections>`. Each task keeps its own tickets, as a client
//!       of its own. `GH_LOAD_TLS_AES128_FIRST=1` offers TLS_AES_128_GCM_SHA256
//!       first (as browsers do) instead of rustls's TLS_AES_256_GCM_SHA384.
//! With `GH_LOAD_TLS=NAME` every connection is TLS with NAME as SNI and the
//! server's certificate not checked (loopback benchmarks only).
//! A `%` in USER stands for the task's number modulo 10, plus one, in two digits
//! (`user%` spreads the connections over user01 .. user10).
//! Prints one line: `<count> <per second>`.

#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use ntlm::client::Client;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

struct Conn {
    s: Box<dyn Io>,
    buf: Vec<u8>,
    /// Sent with every request (`name=value`), once signed in on the page.
    cookie: Option<String>,
    /// A header line sent with every request (`Authorization: Bearer ...`).
    extra: Option<String>,
    /// The `Host` sent (`bench` unless told: Kerberos needs the SPN's host).
    host: String,
}

impl Conn {
    async fn open(addr: SocketAddr) -> std::io::Result<Conn> {
        let s = TcpStream::connect(addr).await?;
        s.set_nodelay(true)?;
        let s: Box<dyn Io> = match std::env::var("GH_LOAD_TLS") {
            Ok(name) => Box::new(tls::connect(s, &name).await?),
            Err(_) => Box::new(s),
        };
        Ok(Conn { s, buf: Vec::with_capacity(8192), cookie: None, extra: None, host: "bench".into() })
    }

    /// Sends a GET (with an NTLM token) and reads the response; returns the
    /// status and the WWW-Authenticate value.
    async fn get(&mut self, path: &str, token: Option<&[u8]>) -> std::io::Result<(u16, Option<String>)> {
        self.get_as("NTLM", path, token).await
    }

    async fn get_as(
        &mut self,
        scheme: &str,
        path: &str,
        token: Option<&[u8]>,
    ) -> std::io::Result<(u16, Option<String>)> {
        let auth = token.map(|t| format!("Authorization: {scheme} {}\r\n", B64.encode(t))).unwrap_or_default();
        let cookie = self.cookie.as_ref().map(|c| format!("Cookie: {c}\r\n")).unwrap_or_default();
        let extra = self.extra.as_deref().unwrap_or_default();
        let host = &self.host;
        self.s
            .write_all(format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n{auth}{cookie}{extra}\r\n").as_bytes())
            .await?;
        loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
                let status: u16 = head.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
                let header = |name: &str| {
                    head.lines().find_map(|l| {
                        let (n, v) = l.split_once(':')?;
                        n.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
                    })
                };
                let len: usize = header("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
                let www = header("www-authenticate");
                while self.buf.len() < end + 4 + len {
                    self.fill().await?;
                }
                self.buf.drain(..end + 4 + len);
                return Ok((status, www));
            }
            self.fill().await?;
        }
    }

    async fn fill(&mut self) -> std::io::Result<()> {
        let mut tmp = [0u8; 16384];
        let n = self.s.read(&mut tmp).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        self.buf.extend_from_slice(&tmp[..n]);
        Ok(())
    }

    async fn handshake(&mut self, client: &Client, path: &str) -> std::io::Result<u16> {
        let negotiate = client.negotiate();
        let (_, www) = self.get(path, Some(&negotiate)).await?;
        let challenge = www
            .and_then(|w| w.strip_prefix("NTLM ").and_then(|c| B64.decode(c).ok()))
            .ok_or_else(|| std::io::Error::other("no NTLM challenge"))?;
        let auth = client.authenticate(&negotiate, &challenge);
        Ok(self.get(path, Some(&auth)).await?.0)
    }
}

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = || -> ! {
        eprintln!("usage: gh-load handshakes|keepalive ADDR SECONDS CONNS [USER PASSWORD]");
        std::process::exit(2)
    };
    if args.len() < 4 {
        usage();
    }
    let addr: SocketAddr = args[1].parse().unwrap_or_else(|_| usage());
    let seconds: u64 = args[2].parse().unwrap_or_else(|_| usage());
    let conns: usize = args[3].parse().unwrap_or_else(|_| usage());
    let client = match (args.get(4), args.get(5)) {
        (Some(u), Some(p)) => Some(Client::new(leak(u.clone()), leak(p.clone()))),
        _ => None,
    };
    let mode = args[0].clone();
    if mode == "handshakes" && client.is_none() {
        usage();
    }
    if mode == "rpc" {
        let client = client.unwrap_or_else(|| usage());
        let bytes: u64 = args[2].parse().unwrap_or_else(|_| usage());
        let start = Instant::now();
        match rpc_session(addr, &client, bytes).await {
            Ok(()) => {
                let secs = start.elapsed().as_secs_f64();
                println!("{bytes} {:.0}", bytes as f64 / secs / 1e6);
            }
            Err(e) => {
                eprintln!("gh-load rpc: {e}");
                std::process::exit(1)
            }
        }
        return;
    }
    if mode == "mapi" {
        let client = client.unwrap_or_else(|| usage());
        let ready = args.get(6).cloned().unwrap_or_else(|| usage());
        return mapi_polls(addr, seconds, conns, client, ready).await;
    }
    if mode == "tokens" {
        // The client's own cost: AP-REQs made in a loop, nothing sent.
        let spn = args.get(4).cloned().unwrap_or_else(|| usage());
        let cred = libgssapi::credential::Cred::acquire(None, None, libgssapi::credential::CredUsage::Initiate, None)
            .unwrap_or_else(|e| panic!("no Kerberos credential: {e}"));
        let (start, mut n) = (Instant::now(), 0u64);
        while start.elapsed() < Duration::from_secs(seconds) {
            kerberos_token(&cred, &spn).expect("token");
            n += 1;
        }
        println!("{n} {:.0}", n as f64 / seconds as f64);
        return;
    }
    if mode == "forms" || mode == "signins" {
        let client = client.unwrap_or_else(|| usage());
        return forms(addr, seconds, conns, client, mode == "signins").await;
    }
    if mode == "cookie" || mode == "bearer" {
        let value = args.get(4).cloned().unwrap_or_else(|| usage());
        let line = match mode.as_str() {
            "cookie" => format!("Cookie: {value}\r\n"),
            _ => format!("Authorization: Bearer {value}\r\n"),
        };
        return fixed_header(addr, seconds, conns, line).await;
    }
    if mode == "burst" {
        let file = args.get(4).cloned().unwrap_or_else(|| usage());
        return burst(addr, seconds, conns, &file).await;
    }
    if mode == "tls" {
        let resume = match args.get(4).map(String::as_str) {
            Some("full") => false,
            Some("resume") => true,
            _ => usage(),
        };
        return tls::connections(addr, seconds, conns, resume).await;
    }
    if mode == "kerberos" {
        let spn = args.get(4).cloned().unwrap_or_else(|| usage());
        return kerberos(addr, seconds, conns, spn, 0).await;
    }
    if mode == "kerberos-premade" {
        let spn = args.get(4).cloned().unwrap_or_else(|| usage());
        let tokens: usize = args.get(5).and_then(|t| t.parse().ok()).unwrap_or_else(|| usage());
        return kerberos(addr, seconds, conns, spn, tokens.max(1)).await;
    }
    let done = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for task in 0..conns {
        let (done, errors, mut client, mode) = (done.clone(), errors.clone(), client.clone(), mode.clone());
        if let Some(c) = client.as_mut() {
            if c.user.contains('%') {
                c.user = leak(c.user.replace('%', &format!("{:02}", task % 10 + 1)));
                c.proof_user = c.user;
            }
        }
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                let Ok(mut c) = Conn::open(addr).await else {
                    errors.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                if mode == "handshakes" {
                    match c.handshake(client.as_ref().unwrap(), "/bytes/16").await {
                        Ok(200) => done.fetch_add(1, Ordering::Relaxed),
                        _ => errors.fetch_add(1, Ordering::Relaxed),
                    };
                    continue;
                }
                if let Some(client) = &client {
                    if !matches!(c.handshake(client, "/bytes/16").await, Ok(200)) {
                        errors.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                }
                while Instant::now() < deadline {
                    match c.get("/bytes/1024", None).await {
                        Ok((200, _)) => done.fetch_add(1, Ordering::Relaxed),
                        _ => {
                            errors.fetch_add(1, Ordering::Relaxed);
                            break;
                        }
                    };
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let n = done.load(Ordering::Relaxed);
    let e = errors.load(Ordering::Relaxed);
    if e > 0 {
        eprintln!("gh-load: {e} errors");
    }
    println!("{n} {:.0}", n as f64 / seconds as f64);
}

/// TLS for loopback benchmarks: any certificate is taken.
mod tls {
    use std::sync::Arc;

    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    use rustls::{DigitallySignedStruct, SignatureScheme};

    #[derive(Debug)]
    struct Anything(Arc<rustls::crypto::CryptoProvider>);

    impl ServerCertVerifier for Anything {
        fn verify_server_cert(
            &self,
            _: &CertificateDer<'_>,
            _: &[CertificateDer<'_>],
            _: &ServerName<'_>,
            _: &[u8],
            _: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            Ok(ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            m: &[u8],
            c: &CertificateDer<'_>,
            d: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
        }
        fn verify_tls13_signature(
            &self,
            m: &[u8],
            c: &CertificateDer<'_>,
            d: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
        }
        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }

    pub async fn connect(
        tcp: tokio::net::TcpStream,
        name: &str,
    ) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(std::io::Error::other)?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Anything(provider)))
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let name = ServerName::try_from(name.to_owned()).map_err(std::io::Error::other)?;
        tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp).await
    }

    /// Takes any certificate and any signature: the handshake benchmark
    /// measures the server's side of it.
    #[derive(Debug)]
    struct Unchecked(Arc<rustls::crypto::CryptoProvider>);

    impl ServerCertVerifier for Unchecked {
        fn verify_server_cert(
            &self,
            _: &CertificateDer<'_>,
            _: &[CertificateDer<'_>],
            _: &ServerName<'_>,
            _: &[u8],
            _: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            Ok(ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            _: &[u8],
            _: &CertificateDer<'_>,
            _: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            Ok(HandshakeSignatureValid::assertion())
        }
        fn verify_tls13_signature(
            &self,
            _: &[u8],
            _: &CertificateDer<'_>,
            _: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            Ok(HandshakeSignatureValid::assertion())
        }
        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }

    /// What the client's ticket stores saw, over all tasks: whether a
    /// "resume" connection that did not resume had no ticket to offer (its
    /// store ran dry) or offered one the server turned down.
    #[derive(Debug, Default)]
    struct Tickets {
        offered: std::sync::atomic::AtomicU64,
        received: std::sync::atomic::AtomicU64,
    }

    /// rustls's client ticket store, counted.
    #[derive(Debug)]
    struct Counted {
        store: rustls::client::ClientSessionMemoryCache,
        counts: Arc<Tickets>,
    }

    impl rustls::client::ClientSessionStore for Counted {
        fn set_kx_hint(&self, name: ServerName<'static>, group: rustls::NamedGroup) {
            self.store.set_kx_hint(name, group)
        }
        fn kx_hint(&self, name: &ServerName<'_>) -> Option<rustls::NamedGroup> {
            self.store.kx_hint(name)
        }
        fn set_tls12_session(&self, name: ServerName<'static>, value: rustls::client::Tls12ClientSessionValue) {
            self.store.set_tls12_session(name, value)
        }
        fn tls12_session(&self, name: &ServerName<'_>) -> Option<rustls::client::Tls12ClientSessionValue> {
            self.store.tls12_session(name)
        }
        fn remove_tls12_session(&self, name: &ServerName<'static>) {
            self.store.remove_tls12_session(name)
        }
        fn insert_tls13_ticket(&self, name: ServerName<'static>, value: rustls::client::Tls13ClientSessionValue) {
            self.counts.received.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.store.insert_tls13_ticket(name, value)
        }
        fn take_tls13_ticket(&self, name: &ServerName<'static>) -> Option<rustls::client::Tls13ClientSessionValue> {
            let ticket = self.store.take_tls13_ticket(name);
            if ticket.is_some() {
                self.counts.offered.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            ticket
        }
    }

    /// `gh-load tls`: new TLS connections in a loop on CONNS tasks.
    pub async fn connections(addr: std::net::SocketAddr, seconds: u64, conns: usize, resume: bool) {
        use std::sync::atomic::{AtomicU64, Ordering};
        use std::time::{Duration, Instant};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut provider = rustls::crypto::aws_lc_rs::default_provider();
        // GH_LOAD_TLS_AES128_FIRST=1: TLS_AES_128_GCM_SHA256 offered first, as
        // Chrome and Firefox do; rustls's own order (AES-256 first) is curl's
        // with OpenSSL and Windows' (the server follows the client's order).
        if std::env::var_os("GH_LOAD_TLS_AES128_FIRST").is_some_and(|v| v == "1") {
            let aes128 = rustls::CipherSuite::TLS13_AES_128_GCM_SHA256;
            provider.cipher_suites.sort_by_key(|s| s.suite() != aes128);
        }
        let provider = Arc::new(provider);
        let tickets = Arc::new(Tickets::default());
        // One config, and so one ticket store, per task: each task is a
        // client of its own coming back. Shared by all tasks, rustls's store
        // (8 tickets per server) ran dry when more than 8 connections started
        // between two answers, and those "resume" connections were full
        // handshakes (docs/performance.md, issue 20 goal 3).
        let connector = |tickets: &Arc<Tickets>| {
            let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .expect("the provider supports the default protocol versions")
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(Unchecked(provider.clone())))
                .with_no_client_auth();
            config.alpn_protocols = vec![b"http/1.1".to_vec()];
            config.resumption = if resume {
                let store = rustls::client::ClientSessionMemoryCache::new(8);
                rustls::client::Resumption::store(Arc::new(Counted { store, counts: tickets.clone() }))
            } else {
                rustls::client::Resumption::disabled()
            };
            tokio_rustls::TlsConnector::from(Arc::new(config))
        };
        let (done, resumed, errors, tls13) = (
            Arc::new(AtomicU64::new(0)),
            Arc::new(AtomicU64::new(0)),
            Arc::new(AtomicU64::new(0)),
            Arc::new(AtomicU64::new(0)),
        );
        let deadline = Instant::now() + Duration::from_secs(seconds);
        let mut tasks = Vec::new();
        for _ in 0..conns {
            let connector = connector(&tickets);
            let (done, resumed, errors, tls13) = (done.clone(), resumed.clone(), errors.clone(), tls13.clone());
            tasks.push(tokio::spawn(async move {
                let mut answer = Vec::with_capacity(1024);
                while Instant::now() < deadline {
                    let one = async {
                        let tcp = tokio::net::TcpStream::connect(addr).await?;
                        tcp.set_nodelay(true)?;
                        let name = ServerName::try_from("bench").expect("a valid name");
                        let mut s = connector.connect(name, tcp).await?;
                        s.write_all(b"GET /bytes/16 HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n").await?;
                        answer.clear();
                        // To the end: the server closes after its answer (and
                        // a TLS 1.3 server's tickets arrive before it).
                        let _ = s.read_to_end(&mut answer).await;
                        let kind = s.get_ref().1.handshake_kind();
                        let version = s.get_ref().1.protocol_version();
                        Ok::<_, std::io::Error>((answer.starts_with(b"HTTP/1.1 200"), kind, version))
                    };
                    match one.await {
                        Ok((true, kind, version)) => {
                            done.fetch_add(1, Ordering::Relaxed);
                            if kind == Some(rustls::HandshakeKind::Resumed) {
                                resumed.fetch_add(1, Ordering::Relaxed);
                            }
                            if version == Some(rustls::ProtocolVersion::TLSv1_3) {
                                tls13.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        _ => {
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
        let (n, r, e) = (done.load(Ordering::Relaxed), resumed.load(Ordering::Relaxed), errors.load(Ordering::Relaxed));
        if e > 0 {
            eprintln!("gh-load tls: {e} errors");
        }
        let (offered, received) = (tickets.offered.load(Ordering::Relaxed), tickets.received.load(Ordering::Relaxed));
        let tls13 = tls13.load(Ordering::Relaxed);
        println!("{n} {:.0} {r} {offered} {received} {tls13}", n as f64 / seconds as f64);
    }
}

/// What one exchange with the sign-in page answered.
struct Page {
    status: u16,
    /// `name=value` of each Set-Cookie.
    cookies: Vec<String>,
    body: Vec<u8>,
}

impl Conn {
    async fn exchange(&mut self, head: &str, body: &[u8]) -> std::io::Result<Page> {
        let mut req = head.as_bytes().to_vec();
        req.extend_from_slice(body);
        self.s.write_all(&req).await?;
        loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
                let status: u16 = head.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
                let mut len = 0usize;
                let mut cookies = Vec::new();
                for l in head.lines() {
                    let Some((n, v)) = l.split_once(':') else { continue };
                    if n.eq_ignore_ascii_case("content-length") {
                        len = v.trim().parse().unwrap_or(0);
                    } else if n.eq_ignore_ascii_case("set-cookie") {
                        cookies.push(v.trim().split(';').next().unwrap_or("").to_owned());
                    }
                }
                while self.buf.len() < end + 4 + len {
                    self.fill().await?;
                }
                let body = self.buf[end + 4..end + 4 + len].to_vec();
                self.buf.drain(..end + 4 + len);
                return Ok(Page { status, cookies, body });
            }
            self.fill().await?;
        }
    }

    /// Signs in on gatehouse's page as a browser would: the form (and its
    /// pre-sign-in cookie), then the POST. Returns the session cookie.
    async fn sign_in(&mut self, user: &str, password: &str) -> std::io::Result<String> {
        let page = self
            .exchange(
                "GET /.gatehouse/signin?return=%2Fbytes%2F1024 HTTP/1.1\r\nHost: bench\r\nAccept: text/html\r\n\r\n",
                b"",
            )
            .await?;
        let html = String::from_utf8_lossy(&page.body);
        let csrf = html
            .split("name=\"csrf\" value=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .ok_or_else(|| std::io::Error::other(format!("no CSRF field (status {})", page.status)))?;
        let pre = page.cookies.iter().find(|c| c.starts_with("__Host-gatehouse-pre=")).cloned().unwrap_or_default();
        let body =
            format!("csrf={csrf}&return=%2Fbytes%2F1024&username={}&password={}", encode(user), encode(password));
        let head = format!(
            "POST /.gatehouse/signin HTTP/1.1\r\nHost: bench\r\nAccept: text/html\r\nCookie: {pre}\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        let answer = self.exchange(&head, body.as_bytes()).await?;
        let session = answer.cookies.into_iter().find(|c| c.starts_with("__Host-gatehouse=") && c.len() > 20);
        match (answer.status, session) {
            (303, Some(c)) => Ok(c),
            (status, _) => Err(std::io::Error::other(format!("sign-in answered {status}"))),
        }
    }
}

fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

/// `forms` (sign in once per connection, then cookie requests) or `signins`
/// (sign-ins in a loop).
async fn forms(addr: SocketAddr, seconds: u64, conns: usize, client: Client, signins: bool) {
    let done = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for task in 0..conns {
        let (done, errors) = (done.clone(), errors.clone());
        let user = client.user.replace('%', &format!("{:02}", task % 10 + 1));
        let password = client.password.to_owned();
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                let Ok(mut c) = Conn::open(addr).await else {
                    errors.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                if signins {
                    while Instant::now() < deadline {
                        match c.sign_in(&user, &password).await {
                            Ok(_) => done.fetch_add(1, Ordering::Relaxed),
                            Err(e) => {
                                if errors.fetch_add(1, Ordering::Relaxed) == 0 {
                                    eprintln!("gh-load: {e}");
                                }
                                break;
                            }
                        };
                    }
                    continue;
                }
                match c.sign_in(&user, &password).await {
                    Ok(cookie) => c.cookie = Some(cookie),
                    Err(e) => {
                        if errors.fetch_add(1, Ordering::Relaxed) == 0 {
                            eprintln!("gh-load: {e}");
                        }
                        continue;
                    }
                }
                while Instant::now() < deadline {
                    match c.get("/bytes/1024", None).await {
                        Ok((200, _)) => done.fetch_add(1, Ordering::Relaxed),
                        _ => {
                            errors.fetch_add(1, Ordering::Relaxed);
                            break;
                        }
                    };
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let n = done.load(Ordering::Relaxed);
    let e = errors.load(Ordering::Relaxed);
    if e > 0 {
        eprintln!("gh-load: {e} errors");
    }
    println!("{n} {:.0}", n as f64 / seconds as f64);
}

/// `cookie` and `bearer`: the same header line on every request.
async fn fixed_header(addr: SocketAddr, seconds: u64, conns: usize, line: String) {
    let done = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let (done, errors, line) = (done.clone(), errors.clone(), line.clone());
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                let Ok(mut c) = Conn::open(addr).await else {
                    errors.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                c.extra = Some(line.clone());
                while Instant::now() < deadline {
                    match c.get("/bytes/1024", None).await {
                        Ok((200, _)) => done.fetch_add(1, Ordering::Relaxed),
                        Ok((status, _)) => {
                            if errors.fetch_add(1, Ordering::Relaxed) == 0 {
                                eprintln!("gh-load: status {status}");
                            }
                            break;
                        }
                        Err(_) => {
                            errors.fetch_add(1, Ordering::Relaxed);
                            break;
                        }
                    };
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let n = done.load(Ordering::Relaxed);
    let e = errors.load(Ordering::Relaxed);
    if e > 0 {
        eprintln!("gh-load: {e} errors");
    }
    println!("{n} {:.0}", n as f64 / seconds as f64);
}

/// `burst`: `users` accounts from `file` sign in at once, `rounds` times.
/// (`seconds` in `main` is the number of rounds here.)
async fn burst(addr: SocketAddr, rounds: u64, users: usize, file: &str) {
    let text = std::fs::read_to_string(file).unwrap_or_else(|e| {
        eprintln!("gh-load burst: cannot read {file}: {e}");
        std::process::exit(2)
    });
    let clients: Vec<Client> = text
        .lines()
        .filter_map(|l| {
            let mut parts = l.splitn(3, ':');
            let (domain, user, password) = (parts.next()?, parts.next()?, parts.next()?);
            let mut c = Client::new(leak(user.to_owned()), leak(password.to_owned()));
            c.domain = leak(domain.to_owned());
            Some(c)
        })
        .take(users)
        .collect();
    if clients.len() < users {
        eprintln!("gh-load burst: {file} has {} accounts, not {users}", clients.len());
        std::process::exit(2)
    }
    for _ in 0..rounds {
        // Every task connects once all are spawned: the sign-ins arrive together.
        let gate = Arc::new(tokio::sync::Barrier::new(users));
        let start = Instant::now();
        let tasks: Vec<_> = clients
            .iter()
            .cloned()
            .map(|client| {
                let gate = gate.clone();
                tokio::spawn(async move {
                    gate.wait().await;
                    let t0 = Instant::now();
                    let mut c = Conn::open(addr).await?;
                    let status = c.handshake(&client, "/bytes/16").await?;
                    Ok::<_, std::io::Error>((status, t0.elapsed()))
                })
            })
            .collect();
        let mut times = Vec::with_capacity(users);
        let mut failed = 0u64;
        for t in tasks {
            match t.await {
                Ok(Ok((200, took))) => times.push(took.as_secs_f64() * 1000.0),
                Ok(Ok((status, _))) => {
                    if failed == 0 {
                        eprintln!("gh-load burst: status {status}");
                    }
                    failed += 1;
                }
                other => {
                    if failed == 0 {
                        eprintln!("gh-load burst: {:?}", other.map(|r| r.map(|_| ())));
                    }
                    failed += 1;
                }
            }
        }
        let wall = start.elapsed().as_secs_f64();
        times.sort_by(f64::total_cmp);
        let at =
            |q: f64| times.get(((times.len() as f64 * q).ceil() as usize).saturating_sub(1)).copied().unwrap_or(0.0);
        println!("{} {failed} {:.1} {:.1} {:.1} {wall:.2}", times.len(), at(0.50), at(0.99), at(1.0));
    }
}

/// A fresh SPNEGO-wrapped AP-REQ for `spn` from the default credential cache.
fn kerberos_token(cred: &libgssapi::credential::Cred, spn: &str) -> Option<Vec<u8>> {
    use libgssapi::context::{ClientCtx, CtxFlags};
    use libgssapi::name::Name;
    use libgssapi::oid::{GSS_MECH_KRB5, GSS_NT_KRB5_PRINCIPAL};
    let name = Name::new(spn.as_bytes(), Some(GSS_NT_KRB5_PRINCIPAL)).ok()?;
    let mut ctx = ClientCtx::new(Some(cred.clone()), name, CtxFlags::GSS_C_MUTUAL_FLAG, Some(GSS_MECH_KRB5));
    let token = ctx.step(None, None).ok()??;
    Some(spnego::encode_init(&[spnego::KRB5], Some(&token), None))
}

/// `premade`: AP-REQs made before the clock starts (0: each made just before
/// its request), dealt out to the tasks.
async fn kerberos(addr: SocketAddr, seconds: u64, conns: usize, spn: String, premade: usize) {
    use libgssapi::credential::{Cred, CredUsage};
    let cred = Cred::acquire(None, None, CredUsage::Initiate, None).unwrap_or_else(|e| {
        eprintln!("gh-load: no Kerberos credential (kinit first): {e}");
        std::process::exit(1)
    });
    let mut decks = premade_tokens(&cred, &spn, premade, conns);
    let inline = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let (done, errors, cred, spn) = (done.clone(), errors.clone(), cred.clone(), spn.clone());
        let (mut deck, inline) = (decks.pop().unwrap_or_default(), inline.clone());
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                let Ok(mut c) = Conn::open(addr).await else {
                    errors.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                // gatehouse accepts a ticket only for the SPN naming the
                // request's host (HTTP/proxy.ad.test@AD.TEST: proxy.ad.test).
                c.host = spn.split_once('/').map_or("bench", |(_, h)| h.split('@').next().unwrap_or(h)).to_owned();
                while Instant::now() < deadline {
                    let token = deck.pop().or_else(|| {
                        if premade > 0 {
                            inline.fetch_add(1, Ordering::Relaxed);
                        }
                        kerberos_token(&cred, &spn)
                    });
                    let Some(token) = token else {
                        errors.fetch_add(1, Ordering::Relaxed);
                        break;
                    };
                    match c.get_as("Negotiate", "/bytes/1024", Some(&token)).await {
                        Ok((200, _)) => done.fetch_add(1, Ordering::Relaxed),
                        _ => {
                            errors.fetch_add(1, Ordering::Relaxed);
                            break;
                        }
                    };
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let n = done.load(Ordering::Relaxed);
    let e = errors.load(Ordering::Relaxed);
    if e > 0 {
        eprintln!("gh-load: {e} errors");
    }
    let made_late = inline.load(Ordering::Relaxed);
    if made_late > 0 {
        eprintln!("gh-load: {made_late} AP-REQs made during the run (the {premade} made before ran out)");
    }
    println!("{n} {:.0}", n as f64 / seconds as f64);
}

/// `count` AP-REQs made on two threads, in `decks` piles of about equal size.
fn premade_tokens(cred: &libgssapi::credential::Cred, spn: &str, count: usize, decks: usize) -> Vec<Vec<Vec<u8>>> {
    if count == 0 {
        return Vec::new();
    }
    let halves: Vec<Vec<Vec<u8>>> = std::thread::scope(|scope| {
        let workers: Vec<_> = [count / 2, count - count / 2]
            .into_iter()
            .map(|n| scope.spawn(move || (0..n).filter_map(|_| kerberos_token(cred, spn)).collect::<Vec<_>>()))
            .collect();
        workers.into_iter().map(|w| w.join().expect("token thread")).collect()
    });
    let mut piles = vec![Vec::new(); decks.max(1)];
    let n = piles.len();
    for (i, token) in halves.into_iter().flatten().enumerate() {
        piles[i % n].push(token);
    }
    piles
}

/// One NTLM handshake whose last leg is `head` (request line and headers,
/// without Content-Length) announcing `announced` body bytes; returns the
/// connection with the last leg's head sent and nothing of its body.
async fn ntlm_head(addr: SocketAddr, client: &Client, head: &str, announced: u64) -> std::io::Result<Conn> {
    let mut c = Conn::open(addr).await?;
    let negotiate = client.negotiate();
    c.s.write_all(
        format!("{head}\r\nContent-Length: 0\r\nAuthorization: NTLM {}\r\n\r\n", B64.encode(&negotiate)).as_bytes(),
    )
    .await?;
    let (_, www) = c.read_head().await?;
    let challenge = www
        .and_then(|w| w.strip_prefix("NTLM ").and_then(|c| B64.decode(c).ok()))
        .ok_or_else(|| std::io::Error::other("no NTLM challenge"))?;
    let auth = client.authenticate(&negotiate, &challenge);
    c.s.write_all(
        format!("{head}\r\nContent-Length: {announced}\r\nAuthorization: NTLM {}\r\n\r\n", B64.encode(auth)).as_bytes(),
    )
    .await?;
    Ok(c)
}

impl Conn {
    /// Reads one response head and its Content-Length body (for 401s).
    async fn read_head(&mut self) -> std::io::Result<(u16, Option<String>)> {
        loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
                let status: u16 = head.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
                let header = |name: &str| {
                    head.lines().find_map(|l| {
                        let (n, v) = l.split_once(':')?;
                        n.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
                    })
                };
                let len: usize =
                    if status == 401 { header("content-length").and_then(|v| v.parse().ok()).unwrap_or(0) } else { 0 };
                while self.buf.len() < end + 4 + len {
                    self.fill().await?;
                }
                self.buf.drain(..end + 4 + len);
                return Ok((status, header("www-authenticate")));
            }
            self.fill().await?;
        }
    }
}

async fn rpc_session(addr: SocketAddr, client: &Client, bytes: u64) -> std::io::Result<()> {
    let head = |m: &str| {
        format!("{m} /rpc/rpcproxy.dll?backend.ad.test:6001 HTTP/1.0\r\nHost: bench\r\nUser-Agent: MSRPC\r\nConnection: Keep-Alive")
    };
    // One virtual connection: CONN/A1 opens the OUT channel, CONN/B1 the IN.
    let session = *b"bench-session-01";
    let a1 = rpch::build::conn_a1(&session, b"bench-out-chan-1");
    let mut out = ntlm_head(addr, client, &head("RPC_OUT_DATA"), a1.len() as u64).await?;
    out.s.write_all(&a1).await?;
    let (status, _) = out.read_head().await?;
    if status != 200 {
        return Err(std::io::Error::other(format!("OUT channel: {status}")));
    }
    // Announced as Outlook does for large sessions (2 GiB), above what is sent.
    let mut inn = ntlm_head(addr, client, &head("RPC_IN_DATA"), 2 << 30).await?;
    inn.s.write_all(&rpch::build::conn_b1(&session, b"bench-in-chan--1", b"bench-assoc-grp1")).await?;
    let writer = tokio::spawn(async move {
        static PIECE: [u8; 65536] = [b'p'; 65536];
        let mut left = bytes;
        while left > 0 {
            let k = left.min(PIECE.len() as u64) as usize;
            inn.s.write_all(&PIECE[..k]).await?;
            left -= k as u64;
        }
        inn.s.flush().await?;
        Ok::<_, std::io::Error>(inn)
    });
    // The OUT channel first says who it is (`USER ...\n`), then carries the bytes.
    let mut got: u64 = 0;
    let mut seen_user = false;
    let mut pending = std::mem::take(&mut out.buf);
    loop {
        if !seen_user {
            if let Some(nl) = pending.iter().position(|&b| b == b'\n') {
                seen_user = true;
                got += (pending.len() - nl - 1) as u64;
            }
        } else {
            got += pending.len() as u64;
        }
        pending.clear();
        if seen_user && got >= bytes {
            break;
        }
        let mut tmp = vec![0u8; 65536];
        let n = out.s.read(&mut tmp).await?;
        if n == 0 {
            return Err(std::io::Error::other(format!("OUT channel closed after {got} bytes")));
        }
        if seen_user {
            got += n as u64;
        } else {
            pending.extend_from_slice(&tmp[..n]);
        }
    }
    let _ = writer.await;
    Ok(())
}

async fn mapi_polls(addr: SocketAddr, seconds: u64, conns: usize, client: Client, ready: String) {
    let waiting = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    // Each poll sends PENDING every 300 ms for about `seconds`.
    let pending = (seconds * 1000 / 300).max(1);
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let (waiting, errors, client) = (waiting.clone(), errors.clone(), client.clone());
        tasks.push(tokio::spawn(async move {
            let head = format!(
                "POST /mapi/emsmdb/?MailboxId=bench HTTP/1.1\r\nHost: bench\r\nUser-Agent: Microsoft Office/16.0 (Microsoft Outlook 16.0)\r\nX-RequestType: NotificationWait\r\nCookie: MapiContext=ctx-1; MapiSequence=1\r\nX-Test-Pending: {pending}"
            );
            let Ok(mut c) = ntlm_head(addr, &client, &head, 0).await else {
                errors.fetch_add(1, Ordering::Relaxed);
                return;
            };
            // Waiting once the first chunk (PROCESSING) is here.
            loop {
                if c.buf.windows(10).any(|w| w == b"PROCESSING") {
                    break;
                }
                if c.fill().await.is_err() {
                    errors.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            }
            waiting.fetch_add(1, Ordering::Relaxed);
            while !c.buf.windows(4).any(|w| w == b"DONE") {
                if c.fill().await.is_err() {
                    return;
                }
                let keep = c.buf.len().saturating_sub(8);
                c.buf.drain(..keep);
            }
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(seconds + 30);
    while waiting.load(Ordering::Relaxed) + errors.load(Ordering::Relaxed) < conns as u64 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = std::fs::write(&ready, format!("{}\n", waiting.load(Ordering::Relaxed)));
    for t in tasks {
        let _ = t.await;
    }
    let e = errors.load(Ordering::Relaxed);
    if e > 0 {
        eprintln!("gh-load: {e} errors");
    }
    println!("{} {}", waiting.load(Ordering::Relaxed), e);
}
