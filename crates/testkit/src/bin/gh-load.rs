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
//!   gh-load rpc ADDR BYTES 1 USER PASSWORD
//!       one Outlook Anywhere session: an OUT and an IN channel (RPC_OUT_DATA,
//!       RPC_IN_DATA, HTTP/1.0, NTLM on each connection), BYTES streamed into
//!       the IN channel and read back from the OUT channel (the backend is
//!       gh-exchange, which pipes one into the other). Prints `<bytes> <MB/s>`.
//!   gh-load mapi ADDR SECONDS CONNS USER PASSWORD READY_FILE
//!       CONNS MAPI NotificationWait long polls held open at once (each on its
//!       own NTLM-authenticated connection); writes READY_FILE when all are
//!       waiting, then waits for them to end (SECONDS at most).
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
