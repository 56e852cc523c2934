//! The desync corpus (`data/desync/cases.rs`) through the real binary, in front
//! of a backend that records every byte it receives and parses it strictly.
//!
//! The oracle, for every case:
//! - the backend sees exactly the requests of one acceptable outcome, in order,
//!   never a request the case's framing puts inside a body (`smuggled`), never a
//!   request it cannot parse strictly, never a framing or hop-by-hop field (or a
//!   look-alike of one) that should have stopped at the edge;
//! - the client gets an answer for each of those requests, naming it, then the
//!   refusal (with an acceptable status) and a close, or a connection still
//!   open; never silence for more than [`BOUND`];
//! - every backend request is answered to some client (none swallowed);
//! - every response is `HTTP/1.1`;
//! - after the whole corpus gatehouse is still up and never panicked.
//!
//! Cases listed in [`KNOWN_OPEN`] fail today; the test asserts that they still
//! do, so that a fix shows up as a failure asking for the list to shrink.

#[path = "../data/desync/cases.rs"]
mod cases;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::*;
use cases::{Case, End, Outcome};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How long the client waits for any one answer (or the close after a refusal).
const BOUND: Duration = Duration::from_secs(3);
/// Cases in flight at once.
const LANES: usize = 12;

/// Cases (and global checks, `global/...`) that fail today, each with the defect
/// behind it. Remove a name when its fix lands; the test fails until you do.
const KNOWN_OPEN: &[&str] = &[];

// ---------------------------------------------------------------------------
// The recording backend.

#[derive(Debug, Clone)]
struct Seen {
    id: u64,
    path: String,
    /// What a strict reader objects to in a request it could still frame.
    anomalies: Vec<String>,
}

#[derive(Default)]
struct Record {
    seen: Vec<Seen>,
    /// Bytes no strict reader could frame: (connection, reason, the bytes).
    violations: Vec<(u64, String, Vec<u8>)>,
    next_id: u64,
    next_conn: u64,
}

struct Recorder {
    addr: SocketAddr,
    record: Arc<Mutex<Record>>,
}

impl Recorder {
    async fn start() -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let record = Arc::new(Mutex::new(Record::default()));
        let r = record.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let conn = {
                    let mut g = r.lock().unwrap();
                    g.next_conn += 1;
                    g.next_conn
                };
                tokio::spawn(serve_backend(stream, conn, r.clone()));
            }
        });
        Recorder { addr, record }
    }
}

async fn serve_backend(mut stream: TcpStream, conn: u64, record: Arc<Mutex<Record>>) {
    let mut buf = Vec::new();
    let mut tmp = vec![0u8; 65536];
    loop {
        loop {
            match parse_request(&buf) {
                Parsed::Incomplete => break,
                Parsed::Invalid(why) => {
                    record.lock().unwrap().violations.push((conn, why, buf.clone()));
                    return;
                }
                Parsed::Complete { len, path, anomalies } => {
                    let id = {
                        let mut g = record.lock().unwrap();
                        g.next_id += 1;
                        let id = g.next_id;
                        g.seen.push(Seen { id, path: path.clone(), anomalies });
                        id
                    };
                    buf.drain(..len);
                    let http10 = path.ends_with("/v10");
                    let body = format!("seen {path} #{id}");
                    let answer = format!(
                        "HTTP/1.{} 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
                        if http10 { 0 } else { 1 },
                        body.len()
                    );
                    if stream.write_all(answer.as_bytes()).await.is_err() || http10 {
                        return;
                    }
                }
            }
        }
        match stream.read(&mut tmp).await {
            // An unfinished request left in `buf` (a body refused midway) is
            // fine: it was never completed, so it never ran.
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&tmp[..n]),
        }
    }
}

enum Parsed {
    Incomplete,
    Invalid(String),
    Complete { len: usize, path: String, anomalies: Vec<String> },
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Every LF must follow a CR, and every CR precede an LF, in what we have.
fn line_ends_ok(bytes: &[u8]) -> Result<(), String> {
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'\n' && (i == 0 || bytes[i - 1] != b'\r') {
            return Err(format!("bare LF at {i}"));
        }
        if b == b'\r' && i + 1 < bytes.len() && bytes[i + 1] != b'\n' {
            return Err(format!("bare CR at {i}"));
        }
    }
    Ok(())
}

/// Framing and hop-by-hop fields: what a backend must get right (framing) or
/// never see from a client (hop-by-hop), and whose look-alikes (`_` for `-`)
/// some backends read as the real thing.
const GUARDED_FIELDS: &[&str] = &[
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "proxy-connection",
    "upgrade",
    "te",
    "trailer",
];
/// Hop-by-hop fields that must not arrive at all.
const HOP_FIELDS: &[&str] = &["keep-alive", "proxy-connection", "te", "trailer"];

/// A strict reader of one request, as a careful origin server would be: RFC 9112
/// syntax with CRLF only, one framing, no look-alikes.
fn parse_request(buf: &[u8]) -> Parsed {
    let Some(head_end) = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4) else {
        if let Err(e) = line_ends_ok(buf) {
            return Parsed::Invalid(e);
        }
        return if buf.len() > 1 << 20 { Parsed::Invalid("head over 1 MiB".into()) } else { Parsed::Incomplete };
    };
    let head = &buf[..head_end];
    if let Err(e) = line_ends_ok(head) {
        return Parsed::Invalid(e);
    }
    let text = &head[..head_end - 4];
    let mut lines = text.split(|&b| b == b'\n').map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let request_line = lines.next().unwrap_or_default();
    let parts: Vec<&[u8]> = request_line.split(|&b| b == b' ').collect();
    if parts.len() != 3 {
        return Parsed::Invalid(format!("request line {:?}", String::from_utf8_lossy(request_line)));
    }
    if parts[0].is_empty() || !parts[0].iter().all(|&b| is_tchar(b)) {
        return Parsed::Invalid("method".into());
    }
    if !parts[1].starts_with(b"/") || !parts[1].iter().all(|&b| (0x21..0x7f).contains(&b)) {
        return Parsed::Invalid(format!("target {:?}", String::from_utf8_lossy(parts[1])));
    }
    if parts[2] != b"HTTP/1.1" {
        return Parsed::Invalid("version".into());
    }
    let path = String::from_utf8_lossy(parts[1]).into_owned();
    let mut anomalies = Vec::new();
    let mut fields: Vec<(String, Vec<u8>)> = Vec::new();
    for line in lines {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            return Parsed::Invalid(format!("field without colon {:?}", String::from_utf8_lossy(line)));
        };
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
            return Parsed::Invalid(format!("field name {:?}", String::from_utf8_lossy(name)));
        }
        if value.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
            return Parsed::Invalid(format!("field value {:?}", String::from_utf8_lossy(value)));
        }
        let value = value.trim_ascii().to_vec();
        fields.push((String::from_utf8_lossy(name).to_ascii_lowercase(), value));
    }
    fn all<'a>(fields: &'a [(String, Vec<u8>)], n: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        fields.iter().filter(move |(k, _)| k == n).map(|(_, v)| v.as_slice())
    }
    for (name, _) in &fields {
        let normal = name.replace('_', "-");
        if &normal != name && GUARDED_FIELDS.contains(&normal.as_str()) {
            anomalies.push(format!("look-alike of {normal} forwarded: {name}"));
        }
        if HOP_FIELDS.contains(&name.as_str()) {
            anomalies.push(format!("hop-by-hop field forwarded: {name}"));
        }
    }
    let connection: Vec<String> = all(&fields, "connection")
        .flat_map(|v| v.split(|&b| b == b','))
        .map(|t| String::from_utf8_lossy(t.trim_ascii()).to_ascii_lowercase())
        .collect();
    for token in &connection {
        if !["upgrade", "keep-alive", "close"].contains(&token.as_str()) {
            anomalies.push(format!("Connection names a field: {token}"));
        }
    }
    if all(&fields, "upgrade").next().is_some() && !connection.iter().any(|t| t == "upgrade") {
        anomalies.push("Upgrade without Connection: upgrade".into());
    }
    if all(&fields, "host").count() != 1 {
        anomalies.push(format!("{} Host fields", all(&fields, "host").count()));
    }
    let te: Vec<&[u8]> = all(&fields, "transfer-encoding").collect();
    let cl: Vec<&[u8]> = all(&fields, "content-length").collect();
    if !te.is_empty() && !cl.is_empty() {
        return Parsed::Invalid("Content-Length with Transfer-Encoding".into());
    }
    let body = if !te.is_empty() {
        if te.len() != 1 || !te[0].eq_ignore_ascii_case(b"chunked") {
            return Parsed::Invalid(format!("Transfer-Encoding {:?}", te));
        }
        match chunked_len(&buf[head_end..]) {
            Ok(Some(n)) => n,
            Ok(None) => return Parsed::Incomplete,
            Err(e) => return Parsed::Invalid(e),
        }
    } else if !cl.is_empty() {
        if cl.len() != 1 || cl[0].is_empty() || cl[0].len() > 18 || !cl[0].iter().all(u8::is_ascii_digit) {
            return Parsed::Invalid(format!("Content-Length {:?}", cl));
        }
        if cl[0].len() > 1 && cl[0][0] == b'0' {
            anomalies.push(format!("Content-Length with leading zeros: {}", String::from_utf8_lossy(cl[0])));
        }
        let n: usize = std::str::from_utf8(cl[0]).unwrap().parse().unwrap();
        if buf.len() < head_end + n {
            return Parsed::Incomplete;
        }
        n
    } else {
        0
    };
    Parsed::Complete { len: head_end + body, path, anomalies }
}

/// Length of a complete chunked body at the start of `b`; None if incomplete.
fn chunked_len(b: &[u8]) -> Result<Option<usize>, String> {
    let mut at = 0;
    loop {
        let Some(lf) = b[at..].windows(2).position(|w| w == b"\r\n") else {
            return line_ends_ok(&b[at..]).map(|_| None);
        };
        let line = &b[at..at + lf];
        let digits = line.iter().take_while(|c| c.is_ascii_hexdigit()).count();
        if digits == 0 || digits > 15 || (digits < line.len() && line[digits] != b';') {
            return Err(format!("chunk line {:?}", String::from_utf8_lossy(line)));
        }
        let size = usize::from_str_radix(std::str::from_utf8(&line[..digits]).unwrap(), 16).unwrap();
        at += lf + 2;
        if size == 0 {
            // Trailer fields, then the empty line.
            loop {
                let Some(lf) = b[at..].windows(2).position(|w| w == b"\r\n") else { return Ok(None) };
                let line = &b[at..at + lf];
                at += lf + 2;
                if line.is_empty() {
                    return Ok(Some(at));
                }
                if line_ends_ok(line).is_err() || !line.contains(&b':') || line[0] == b' ' || line[0] == b'\t' {
                    return Err(format!("trailer {:?}", String::from_utf8_lossy(line)));
                }
            }
        }
        if b.len() < at + size + 2 {
            return Ok(None);
        }
        if &b[at + size..at + size + 2] != b"\r\n" {
            return Err("chunk data not followed by CRLF".into());
        }
        at += size + 2;
    }
}

// ---------------------------------------------------------------------------
// The client.

#[derive(Debug, Clone)]
struct Answer {
    version: u8,
    status: u16,
    content_type: Option<String>,
    body: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    /// Gatehouse closed (or reset) the connection.
    Closed,
    /// Still open when the client had its answers; closed after the client's EOF.
    OpenUntilClientEof,
    /// Nothing for [`BOUND`].
    Silent,
    /// The connection ended in the middle of an answer.
    Truncated,
}

#[derive(Debug)]
struct Observed {
    answers: Vec<Answer>,
    ending: Ending,
    took: Duration,
}

enum Read {
    Answer(Answer),
    Eof,
    Timeout,
    Truncated,
}

struct Client {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    /// More bytes within [`BOUND`]: Some(false) on EOF or reset, None on timeout.
    async fn fill(&mut self) -> Option<bool> {
        let mut tmp = vec![0u8; 65536];
        match tokio::time::timeout(BOUND, self.stream.read(&mut tmp)).await {
            Ok(Ok(0)) | Ok(Err(_)) => Some(false),
            Ok(Ok(n)) => {
                self.buf.extend_from_slice(&tmp[..n]);
                Some(true)
            }
            Err(_) => None,
        }
    }

    /// One final answer (1xx interim answers skipped).
    async fn answer(&mut self) -> Read {
        loop {
            let parsed = {
                let mut headers = [httparse::EMPTY_HEADER; 64];
                let mut r = httparse::Response::new(&mut headers);
                match r.parse(&self.buf) {
                    Ok(httparse::Status::Complete(n)) => {
                        let find = |name: &str| {
                            r.headers
                                .iter()
                                .find(|h| h.name.eq_ignore_ascii_case(name))
                                .map(|h| String::from_utf8_lossy(h.value).into_owned())
                        };
                        Some((
                            n,
                            r.version.unwrap_or(9),
                            r.code.unwrap_or(0),
                            find("content-type"),
                            find("content-length"),
                            find("transfer-encoding"),
                        ))
                    }
                    Ok(httparse::Status::Partial) => None,
                    Err(_) => return Read::Truncated,
                }
            };
            let Some((n, version, status, content_type, length, te)) = parsed else {
                match self.fill().await {
                    Some(true) => continue,
                    Some(false) => return if self.buf.is_empty() { Read::Eof } else { Read::Truncated },
                    None => return Read::Timeout,
                }
            };
            self.buf.drain(..n);
            if (100..200).contains(&status) {
                continue;
            }
            let body = if status == 204 || status == 304 {
                Vec::new()
            } else if let Some(len) = length.and_then(|l| l.trim().parse::<usize>().ok()) {
                while self.buf.len() < len {
                    match self.fill().await {
                        Some(true) => {}
                        Some(false) => return Read::Truncated,
                        None => return Read::Timeout,
                    }
                }
                self.buf.drain(..len).collect()
            } else if te.is_some_and(|t| t.eq_ignore_ascii_case("chunked")) {
                loop {
                    if let Ok(Some(n)) = chunked_len(&self.buf) {
                        break self.buf.drain(..n).collect();
                    }
                    match self.fill().await {
                        Some(true) => {}
                        Some(false) => return Read::Truncated,
                        None => return Read::Timeout,
                    }
                }
            } else {
                // Delimited by the close.
                loop {
                    match self.fill().await {
                        Some(true) => {}
                        Some(false) => break std::mem::take(&mut self.buf),
                        None => return Read::Timeout,
                    }
                }
            };
            return Read::Answer(Answer { version, status, content_type, body });
        }
    }
}

async fn run_case(addr: SocketAddr, index: usize, case: &Case) -> Observed {
    let start = Instant::now();
    let mut c = Client { stream: TcpStream::connect(addr).await.unwrap(), buf: Vec::new() };
    let mut answers = Vec::new();
    let open_after = case.outcomes.iter().filter(|o| o.end == End::Open).map(|o| o.forwarded.len()).max();
    let mut ending = None;
    for (i, step) in case.steps.iter().enumerate() {
        if i > 0 {
            match c.answer().await {
                Read::Answer(a) => answers.push(a),
                Read::Eof => ending = Some(Ending::Closed),
                Read::Timeout => ending = Some(Ending::Silent),
                Read::Truncated => ending = Some(Ending::Truncated),
            }
            if ending.is_some() {
                break;
            }
        }
        // Gatehouse may already have closed after a refusal: that shows in the reads.
        let _ = c.stream.write_all(&cases::with_index(step, index)).await;
    }
    let mut half_closed = false;
    let ending = match ending {
        Some(e) => e,
        None => loop {
            let refused = answers.last().is_some_and(|a: &Answer| a.status >= 400);
            if !half_closed && !refused && open_after.is_some_and(|n| answers.len() >= n) {
                let _ = c.stream.shutdown().await;
                half_closed = true;
            }
            match c.answer().await {
                Read::Answer(a) => answers.push(a),
                Read::Eof => break if half_closed { Ending::OpenUntilClientEof } else { Ending::Closed },
                Read::Timeout => break Ending::Silent,
                Read::Truncated => break Ending::Truncated,
            }
        },
    };
    Observed { answers, ending, took: start.elapsed() }
}

// ---------------------------------------------------------------------------
// Judging.

/// Why `obs` and `seen` (the backend's requests of this case) fit no outcome.
fn judge(index: usize, case: &Case, obs: &Observed, seen: &[Seen]) -> Result<(), String> {
    let prefix = format!("/{index:04}/");
    let mut problems = Vec::new();
    // An HTTP/1.0 client may be answered in HTTP/1.0; an HTTP/1.1 client never.
    let http10 = case.bytes().windows(11).any(|w| w == b" HTTP/1.0\r\n");
    if let Some(a) = obs.answers.iter().find(|a| a.version != 1 && !http10) {
        problems.push(format!("an HTTP/1.{} status line ({})", a.version, a.status));
    }
    for s in seen {
        if s.path.contains("smuggled") {
            problems.push(format!("the backend saw a smuggled request: {}", s.path));
        }
        for a in &s.anomalies {
            problems.push(format!("the backend saw {} with {a}", s.path));
        }
    }
    let fits = |o: &Outcome| -> Result<(), String> {
        let n = o.forwarded.len();
        let refusal = matches!(o.end, End::Refused(_)) as usize;
        if obs.answers.len() != n + refusal {
            return Err(format!("{} answers, not {}", obs.answers.len(), n + refusal));
        }
        for (a, name) in obs.answers.iter().zip(&o.forwarded) {
            let want = format!("seen {prefix}{name} #");
            if a.status != 200 || !a.body.starts_with(want.as_bytes()) {
                return Err(format!("answer {} {:?} is not the backend's for {name}", a.status, lossy(&a.body)));
            }
        }
        let backend: Vec<&str> = seen.iter().map(|s| s.path.strip_prefix(&prefix).unwrap_or(&s.path)).collect();
        if backend != o.forwarded {
            return Err(format!("the backend saw {backend:?}"));
        }
        match (o.end, obs.ending) {
            (End::Open, Ending::OpenUntilClientEof) => Ok(()),
            (End::Closed, Ending::Closed | Ending::OpenUntilClientEof) => Ok(()),
            (End::Refused(statuses), Ending::Closed) if statuses.contains(&obs.answers[n].status) => Ok(()),
            (End::Refused(statuses), Ending::Closed) => {
                Err(format!("refused with {}, not one of {statuses:?}", obs.answers[n].status))
            }
            (end, ending) => Err(format!("ended {ending:?}, wanted {end:?}")),
        }
    };
    let misfits: Vec<String> = case.outcomes.iter().filter_map(|o| fits(o).err()).collect();
    if misfits.len() == case.outcomes.len() {
        problems.push(format!("no acceptable outcome: {}", misfits.join("; ")));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        let answers: Vec<String> = obs.answers.iter().map(|a| format!("{} {:?}", a.status, lossy(&a.body))).collect();
        Err(format!(
            "{}\n    answers {answers:?}, {:?} after {:?}\n    bytes {:?}",
            problems.join("\n    "),
            obs.ending,
            obs.took,
            lossy(&case.bytes())
        ))
    }
}

fn lossy(b: &[u8]) -> String {
    let s = String::from_utf8_lossy(&b[..b.len().min(300)]).into_owned();
    if b.len() > 300 {
        format!("{s}... ({} bytes)", b.len())
    } else {
        s
    }
}

fn one_site(backend: SocketAddr) -> String {
    format!(
        r#"
[[listener]]
name = "public"
bind = "127.0.0.1:0"

[[site]]
name = "app"
listener = "public"
backend = "http://{backend}"
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn desync_corpus_through_gatehouse() {
    let all = cases::all();
    let recorder = Recorder::start().await;
    let g = Gatehouse::start(&one_site(recorder.addr));
    let addr = g.addr();
    let started = Instant::now();

    let all = Arc::new(all);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let results = Arc::new(Mutex::new(BTreeMap::new()));
    let mut lanes = tokio::task::JoinSet::new();
    for _ in 0..LANES {
        let (all, next, results) = (all.clone(), next.clone(), results.clone());
        lanes.spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(case) = all.get(i) else { return };
                let obs = run_case(addr, i, case).await;
                results.lock().unwrap().insert(i, obs);
            }
        });
    }
    while let Some(r) = lanes.join_next().await {
        r.unwrap();
    }
    // Give late backend traffic (there should be none) a moment to arrive.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let corpus_time = started.elapsed();

    let results = std::mem::take(&mut *results.lock().unwrap());
    let (seen, violations) = {
        let r = recorder.record.lock().unwrap();
        (r.seen.clone(), r.violations.clone())
    };
    let mut by_case: BTreeMap<usize, Vec<Seen>> = BTreeMap::new();
    let mut failures: BTreeMap<String, String> = BTreeMap::new();
    for s in &seen {
        match s.path.get(1..5).and_then(|n| n.parse::<usize>().ok()).filter(|&n| n < all.len()) {
            Some(i) => by_case.entry(i).or_default().push(s.clone()),
            None => {
                failures.insert(format!("global/unattributed-{}", s.id), format!("the backend saw {}", s.path));
            }
        }
    }
    for (conn, why, bytes) in &violations {
        let case = String::from_utf8_lossy(bytes).get(..12).and_then(|l| l.split('/').nth(1).map(str::to_owned));
        failures.insert(
            format!("global/backend-violation-{conn}"),
            format!("the backend could not read (case {case:?}): {why}: {:?}", lossy(bytes)),
        );
    }
    // Every backend request was answered to a client.
    let answered: BTreeSet<u64> = results
        .values()
        .flat_map(|o| o.answers.iter())
        .filter_map(|a| lossy(&a.body).rsplit_once(" #").and_then(|(_, id)| id.parse().ok()))
        .collect();
    for s in &seen {
        if !answered.contains(&s.id) {
            failures.insert(
                format!("global/unanswered-{}", s.id),
                format!("{} reached the backend but no client got its answer", s.path),
            );
        }
    }
    let mut refusal_formats: BTreeMap<String, &str> = BTreeMap::new();
    for (i, case) in all.iter().enumerate() {
        let obs = &results[&i];
        let seen = by_case.get(&i).map_or(&[][..], Vec::as_slice);
        if let Err(why) = judge(i, case, obs, seen) {
            // An unanswered backend request of a failing case is that case's failure.
            for s in seen {
                failures.remove(&format!("global/unanswered-{}", s.id));
            }
            failures.insert(case.name.clone(), why);
        }
        for a in obs.answers.iter().filter(|a| a.status >= 400) {
            refusal_formats.entry(a.content_type.clone().unwrap_or_default()).or_insert(&case.name);
        }
    }
    // One refusal format, whichever part of gatehouse refuses.
    if refusal_formats.len() > 1 {
        failures.insert(
            "global/refusal-format".into(),
            format!("refusals come as (content type, first case) {refusal_formats:?}"),
        );
    }

    // Gatehouse survived, and still serves.
    let mut c = Conn::open(addr).await;
    c.send(b"GET /after HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert_eq!(c.response().await.status, 200, "gatehouse still serves after the corpus");
    let stderr = g.stderr();
    assert!(!stderr.contains("panicked"), "gatehouse panicked:\n{stderr}");

    let failing: BTreeSet<&str> = failures.keys().map(String::as_str).collect();
    let known: BTreeSet<&str> = KNOWN_OPEN.iter().copied().collect();
    let new: Vec<String> = failing.difference(&known).map(|n| format!("{n}:\n    {}", failures[*n])).collect();
    let fixed: Vec<&&str> = known.difference(&failing).collect();
    eprintln!(
        "{} cases in {corpus_time:?}; {} fail, {} of them known open",
        all.len(),
        failing.len(),
        failing.intersection(&known).count()
    );
    for n in failing.intersection(&known) {
        eprintln!("known open {n}:\n    {}", failures[*n]);
    }
    assert!(new.is_empty(), "{} cases fail that are not known to:\n{}", new.len(), new.join("\n"));
    assert!(fixed.is_empty(), "these cases pass now; remove them from KNOWN_OPEN: {fixed:?}");
    assert!(corpus_time < Duration::from_secs(60), "the corpus took {corpus_time:?}");
}
