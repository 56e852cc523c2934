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
//!   gh-load tokens ADDR SECONDS 1 SPN   (ADDR unused)
//!       the client's own cost: AP-REQs made in a loop on one core, nothing sent.
//! A `%` in USER stands for the task's number modulo 10, plus one, in two digits
//! (`user%` spreads the connections over user01 .. user10).
//! Prints one line: `<count> <per second>`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use ntlm::client::Client;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

struct Conn {
    s: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    async fn open(addr: SocketAddr) -> std::io::Result<Conn> {
        let s = TcpStream::connect(addr).await?;
        s.set_nodelay(true)?;
        Ok(Conn { s, buf: Vec::with_capacity(8192) })
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
        self.s.write_all(format!("GET {path} HTTP/1.1\r\nHost: bench\r\n{auth}\r\n").as_bytes()).await?;
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
    if mode == "kerberos" {
        let spn = args.get(4).cloned().unwrap_or_else(|| usage());
        return kerberos(addr, seconds, conns, spn).await;
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

async fn kerberos(addr: SocketAddr, seconds: u64, conns: usize, spn: String) {
    use libgssapi::credential::{Cred, CredUsage};
    let cred = Cred::acquire(None, None, CredUsage::Initiate, None).unwrap_or_else(|e| {
        eprintln!("gh-load: no Kerberos credential (kinit first): {e}");
        std::process::exit(1)
    });
    let done = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let (done, errors, cred, spn) = (done.clone(), errors.clone(), cred.clone(), spn.clone());
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                let Ok(mut c) = Conn::open(addr).await else {
                    errors.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                while Instant::now() < deadline {
                    let Some(token) = kerberos_token(&cred, &spn) else {
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
    println!("{n} {:.0}", n as f64 / seconds as f64);
}
