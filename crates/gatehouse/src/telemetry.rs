//! Logs. The operational log (tracing) goes to standard error; the access log is
//! one JSON object per line, to standard output or a file, written by its own
//! task so that a slow disk never stalls a request.
//!
//! Neither log ever carries an Authorization header, a cookie, a password, a hash
//! or a token: records are built field by field from what is safe to show.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use std::io::Write;
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use crate::conn::ConnInfo;

/// Starts the operational log. `RUST_LOG` overrides the configured level.
pub fn init_tracing(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        // No colours: `OneLine` escapes every ESC, the formatter's own too.
        .with_ansi(false)
        .with_writer(|| OneLine(std::io::stderr()))
        .with_target(false)
        .try_init();
}

/// The operational log's writer. The formatter hands it each record whole
/// (one `write_all` per event), and it writes the record with every control
/// character escaped except the newline that ends it, whatever field or
/// message the characters came from. So no value a client sends (an NTLM
/// user name, a header) can start a line of its own or drive a terminal, and
/// no future log call can forget to escape.
struct OneLine<W>(W);

impl<W: Write> Write for OneLine<W> {
    fn write(&mut self, record: &[u8]) -> std::io::Result<usize> {
        self.0.write_all(one_line(record).as_bytes())?;
        Ok(record.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// `record` as one line: C0 controls, DEL and C1 controls escaped (`\n`,
/// `\r`, `\t`, `\x1b`, `\u{85}`), and the characters that make text display
/// other than it reads (bidirectional overrides and isolates, line and
/// paragraph separators) as `\u{..}`; a final newline kept. Backslashes are
/// left alone: `ADTEST\bob` stays readable, and without a raw line break a
/// client can fake the look of an escape but never a line.
fn one_line(record: &[u8]) -> String {
    let text = String::from_utf8_lossy(record);
    let (body, end) = match text.strip_suffix('\n') {
        Some(body) => (body, "\n"),
        None => (&*text, ""),
    };
    let mut out = String::with_capacity(body.len() + end.len());
    for c in body.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\x7f' => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if c.is_control() || misleads(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out.push_str(end);
    out
}

/// Characters that reorder or break the displayed text (Trojan Source).
fn misleads(c: char) -> bool {
    matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// Short unique request ids: a random per-process prefix and a counter.
pub struct RequestIds {
    prefix: u32,
    next: AtomicU64,
}

impl RequestIds {
    pub fn new() -> Self {
        let mut b = [0u8; 4];
        let _ = getrandom::fill(&mut b);
        RequestIds { prefix: u32::from_le_bytes(b), next: AtomicU64::new(1) }
    }

    /// Sixteen hex digits, written by hand: `format!` cost 1,500 instructions
    /// of every request (callgrind, issue 20).
    pub fn next(&self) -> String {
        let counter = self.next.fetch_add(1, Ordering::Relaxed) as u32;
        let mut id = String::with_capacity(16);
        for word in [self.prefix, counter] {
            for shift in (0..8).rev() {
                id.push(char::from(HEX[((word >> (shift * 4)) & 0xf) as usize]));
            }
        }
        id
    }
}

/// Collects finished records in memory; a writer thread flushes them every
/// 100 ms (sooner when 64 KiB have piled up). Requests never wait for the disk,
/// and a request does not wake another thread to be logged. When the writer falls
/// far behind (16 MiB pending), records are counted and dropped.
#[derive(Clone)]
pub struct AccessLog {
    inner: Arc<LogInner>,
    ids: Arc<RequestIds>,
    /// The request counters: each record written is counted there too (the
    /// same events, told to Prometheus instead of the file).
    requests: crate::metrics::Requests,
}

struct LogInner {
    pending: Mutex<Vec<u8>>,
    wake: Condvar,
    dropped: AtomicU64,
    out: Mutex<Box<dyn Write + Send>>,
    /// `-` or the file's path, for [`AccessLog::reopen`].
    target: String,
}

const FLUSH_AT: usize = 64 * 1024;
const DROP_AT: usize = 16 * 1024 * 1024;

impl AccessLog {
    /// `target` is `-` for standard output or a file path (appended to).
    pub fn open(target: &str, requests: crate::metrics::Requests) -> std::io::Result<AccessLog> {
        let inner = Arc::new(LogInner {
            pending: Mutex::new(Vec::new()),
            wake: Condvar::new(),
            dropped: AtomicU64::new(0),
            out: Mutex::new(open_target(target)?),
            target: target.to_owned(),
        });
        let writer = inner.clone();
        std::thread::Builder::new().name("gatehouse-log".into()).spawn(move || loop {
            {
                let pending = writer.pending.lock().unwrap_or_else(|e| e.into_inner());
                let _ = writer.wake.wait_timeout(pending, Duration::from_millis(100));
            }
            writer.flush();
        })?;
        Ok(AccessLog { inner, ids: Arc::new(RequestIds::new()), requests })
    }

    /// Opens the file again by its name (SIGUSR1, after logrotate moved it
    /// away): what is pending goes to the old file first, the next records
    /// to the new one. A file that cannot be opened leaves the old one in
    /// use, and says why.
    pub fn reopen(&self) {
        if self.inner.target == "-" {
            return;
        }
        self.inner.flush();
        match open_target(&self.inner.target) {
            Ok(out) => {
                *self.inner.out.lock().unwrap_or_else(|e| e.into_inner()) = out;
                tracing::info!(file = %self.inner.target, "access log reopened");
            }
            Err(e) => {
                tracing::error!(file = %self.inner.target, error = %e, "cannot reopen the access log; writing to the old file")
            }
        }
    }

    /// A new request id: every record, and the page and log line that go with
    /// it, carries one.
    pub fn next_id(&self) -> String {
        self.ids.next()
    }

    fn send(&self, line: &[u8]) {
        let mut pending = self.inner.pending.lock().unwrap_or_else(|e| e.into_inner());
        if pending.len() >= DROP_AT {
            drop(pending);
            let n = self.inner.dropped.fetch_add(1, Ordering::Relaxed);
            if n.is_power_of_two() {
                tracing::warn!(dropped = n + 1, "access log writer is behind; records dropped");
            }
            return;
        }
        pending.extend_from_slice(line);
        if pending.len() >= FLUSH_AT {
            self.inner.wake.notify_one();
        }
    }

    /// Writes everything pending now (at shutdown).
    pub fn flush(&self) {
        self.inner.flush();
    }
}

fn open_target(target: &str) -> std::io::Result<Box<dyn Write + Send>> {
    Ok(if target == "-" {
        Box::new(std::io::stdout())
    } else {
        Box::new(std::fs::OpenOptions::new().create(true).append(true).open(target)?)
    })
}

impl LogInner {
    fn flush(&self) {
        let batch = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()));
        if batch.is_empty() {
            return;
        }
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        if out.write_all(&batch).and_then(|_| out.flush()).is_err() {
            tracing::error!("cannot write the access log");
        }
    }
}

/// One request, filled in as it travels and written when its response ends.
pub struct AccessRecord {
    log: AccessLog,
    started: Instant,
    fields: Fields,
    bytes_in: Option<Arc<crate::request_body::RequestProgress>>,
    written: bool,
}

/// A record's fields, in the order they are written. Encoded by hand
/// ([`Fields::encode`]) rather than through serde_json: the record is written
/// once per request, and the generic serializer and its intermediate strings
/// showed in the plain proxy's profile (docs/performance.md, issue 20).
struct Fields {
    time: SystemTime,
    request_id: String,
    client: std::net::SocketAddr,
    listener: Arc<str>,
    site: Option<String>,
    /// The backend that answered (`scheme://host:port`), when one did.
    backend: Option<Arc<str>>,
    method: std::borrow::Cow<'static, str>,
    path: String,
    status: u16,
    user: Option<Arc<str>>,
    auth: Option<&'static str>,
    bytes_in: u64,
    bytes_out: u64,
    /// Rounded to the microsecond; written as milliseconds with up to three
    /// decimals.
    duration_us: u64,
    /// False when the response stopped before its end (client or backend left).
    complete: bool,
    error: Option<String>,
    /// Access refused: the rule that matched (`deny ADTEST\\Contractors
    /// (file:line:column: site[0].deny)`, `not in allow`), or the domain's
    /// refusal of the account.
    denied: Option<String>,
}

impl Fields {
    /// One JSON object and its newline, appended to `out`. Optional fields
    /// that are absent are left out, as before.
    fn encode(&self, out: &mut Vec<u8>) {
        let mut line = JsonLine(out);
        line.0.extend_from_slice(b"{\"time\":\"");
        rfc3339_millis(self.time, line.0);
        line.0.push(b'"');
        line.string("request_id", &self.request_id);
        line.key("client");
        line.0.push(b'"');
        socket_addr(self.client, line.0);
        line.0.push(b'"');
        line.string("listener", &self.listener);
        line.optional("site", self.site.as_deref());
        line.optional("backend", self.backend.as_deref());
        line.string("method", &self.method);
        line.string("path", &self.path);
        line.number("status", self.status as u64);
        line.optional("user", self.user.as_deref());
        line.optional("auth", self.auth);
        line.number("bytes_in", self.bytes_in);
        line.number("bytes_out", self.bytes_out);
        line.key("duration_ms");
        milliseconds(self.duration_us, line.0);
        line.key("complete");
        line.0.extend_from_slice(if self.complete { b"true" } else { b"false" });
        line.optional("error", self.error.as_deref());
        line.optional("denied", self.denied.as_deref());
        line.0.extend_from_slice(b"}\n");
    }
}

// The record's numbers, time and address, written without `core::fmt`: its
// padding and dispatch were a tenth of a plain proxied GET's instructions
// (callgrind, docs/performance.md, issue 20). Each has a test against the
// formatter it replaces.

const HEX: &[u8; 16] = b"0123456789abcdef";

/// RFC 3339 in UTC with milliseconds (`2023-11-14T22:13:20.123Z`), as
/// `humantime::format_rfc3339_millis` writes it. The part down to the second
/// changes once a second: each thread keeps the last one it wrote.
fn rfc3339_millis(time: SystemTime, out: &mut Vec<u8>) {
    thread_local! {
        static SECOND: std::cell::RefCell<(u64, [u8; 19])> = const { std::cell::RefCell::new((u64::MAX, [0; 19])) };
    }
    let since = time.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let second = since.as_secs();
    SECOND.with(|cached| {
        let mut cached = cached.borrow_mut();
        if cached.0 != second {
            let whole = SystemTime::UNIX_EPOCH + Duration::from_secs(second);
            let text = humantime::format_rfc3339_seconds(whole).to_string();
            // `YYYY-MM-DDTHH:MM:SSZ`; a year past 9999 (never, from a clock)
            // would not fit and keeps humantime's own text.
            match text.as_bytes().get(..19) {
                Some(head) if text.len() == 20 => {
                    cached.1.copy_from_slice(head);
                    cached.0 = second;
                }
                _ => {
                    out.extend_from_slice(humantime::format_rfc3339_millis(time).to_string().as_bytes());
                    return;
                }
            }
        }
        out.extend_from_slice(&cached.1);
        let millis = since.subsec_millis();
        out.extend_from_slice(&[
            b'.',
            b'0' + (millis / 100) as u8,
            b'0' + (millis / 10 % 10) as u8,
            b'0' + (millis % 10) as u8,
            b'Z',
        ]);
    });
}

/// `192.0.2.7:443`, `[::1]:8443`, as `SocketAddr`'s `Display` writes them.
fn socket_addr(addr: std::net::SocketAddr, out: &mut Vec<u8>) {
    match addr {
        std::net::SocketAddr::V4(v4) => {
            let mut digits = itoa::Buffer::new();
            for (i, octet) in v4.ip().octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                out.extend_from_slice(digits.format(octet).as_bytes());
            }
            out.push(b':');
            out.extend_from_slice(digits.format(v4.port()).as_bytes());
        }
        // IPv6's shortest form (zero runs, embedded IPv4) is core's to get
        // right; it is the rarer case at the edge.
        std::net::SocketAddr::V6(_) => {
            use std::io::Write as _;
            let _ = write!(out, "{addr}");
        }
    }
}

/// Microseconds as a JSON number of milliseconds: `1.5`, `12.0`, `0.007`
/// (what `{:?}` wrote of the rounded float before: a fraction always shown,
/// trailing zeros dropped).
fn milliseconds(micros: u64, out: &mut Vec<u8>) {
    out.extend_from_slice(itoa::Buffer::new().format(micros / 1000).as_bytes());
    out.push(b'.');
    let fraction = micros % 1000;
    let digits = [b'0' + (fraction / 100) as u8, b'0' + (fraction / 10 % 10) as u8, b'0' + (fraction % 10) as u8];
    let kept = if fraction % 100 == 0 {
        1
    } else if fraction % 10 == 0 {
        2
    } else {
        3
    };
    out.extend_from_slice(&digits[..kept]);
}

/// Appends JSON members to a record being written.
struct JsonLine<'a>(&'a mut Vec<u8>);

impl JsonLine<'_> {
    fn key(&mut self, key: &str) {
        self.0.extend_from_slice(b",\"");
        self.0.extend_from_slice(key.as_bytes());
        self.0.extend_from_slice(b"\":");
    }

    fn string(&mut self, key: &str, value: &str) {
        self.key(key);
        json_string(self.0, value);
    }

    fn optional(&mut self, key: &str, value: Option<&str>) {
        if let Some(value) = value {
            self.string(key, value);
        }
    }

    fn number(&mut self, key: &str, value: u64) {
        self.key(key);
        self.0.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
    }
}

/// A JSON string: quotes, backslashes and every control character escaped
/// (what a client sends in a path or a name can never end the line or the
/// string); everything else is UTF-8 as it is.
fn json_string(out: &mut Vec<u8>, value: &str) {
    let bytes = value.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    // Nearly every value needs no escape: a pass without early exit (which
    // the compiler turns into wide compares) and one copy, instead of a
    // branch per byte.
    if !bytes.iter().fold(false, |any, &b| any | (b < 0x20) | (b == b'"') | (b == b'\\')) {
        out.extend_from_slice(bytes);
        out.push(b'"');
        return;
    }
    let mut plain = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escaped: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[plain..i]);
        if escaped.is_empty() {
            out.extend_from_slice(b"\\u00");
            out.push(HEX[(b >> 4) as usize]);
            out.push(HEX[(b & 0xf) as usize]);
        } else {
            out.extend_from_slice(escaped);
        }
        plain = i + 1;
    }
    out.extend_from_slice(&bytes[plain..]);
    out.push(b'"');
}

/// The method as written in the record; the common ones without an allocation.
fn method_name(method: &str) -> std::borrow::Cow<'static, str> {
    const KNOWN: [&str; 12] = [
        "GET",
        "POST",
        "HEAD",
        "PUT",
        "DELETE",
        "OPTIONS",
        "PATCH",
        "RPC_IN_DATA",
        "RPC_OUT_DATA",
        "PROPFIND",
        "CONNECT",
        "-",
    ];
    match KNOWN.iter().find(|k| **k == method) {
        Some(k) => std::borrow::Cow::Borrowed(k),
        None => std::borrow::Cow::Owned(method.to_owned()),
    }
}

impl AccessRecord {
    pub fn new(log: &AccessLog, conn: &ConnInfo, request_id: String, method: &str, path: &str) -> Self {
        AccessRecord {
            log: log.clone(),
            started: Instant::now(),
            fields: Fields {
                time: SystemTime::now(),
                request_id,
                client: conn.peer,
                listener: conn.listener.clone(),
                site: None,
                backend: None,
                method: method_name(method),
                // The path only: query strings can carry secrets (OWA canaries, tokens).
                path: path.to_owned(),
                status: 0,
                user: None,
                auth: None,
                bytes_in: 0,
                bytes_out: 0,
                duration_us: 0,
                complete: false,
                error: None,
                denied: None,
            },
            bytes_in: None,
            written: false,
        }
    }

    pub fn request_id(&self) -> &str {
        &self.fields.request_id
    }

    pub fn set_site(&mut self, site: &str) {
        self.fields.site = Some(site.to_owned());
    }

    pub fn set_backend(&mut self, origin: &Arc<str>) {
        self.fields.backend = Some(origin.clone());
    }

    /// The signed-in user (`DOMAIN\user`) and the scheme that signed them in.
    pub fn set_user(&mut self, name: &Arc<str>, scheme: &'static str) {
        self.fields.user = Some(name.clone());
        self.fields.auth = Some(scheme);
    }

    pub fn set_status(&mut self, status: u16) {
        self.fields.status = status;
    }

    pub fn set_error(&mut self, error: impl Into<String>) {
        self.fields.error = Some(error.into());
    }

    pub fn set_denied(&mut self, rule: String) {
        self.fields.denied = Some(rule);
    }

    pub fn count_request_body(&mut self, progress: Arc<crate::request_body::RequestProgress>) {
        self.bytes_in = Some(progress);
    }

    pub fn finish(mut self, bytes_out: u64, complete: bool) {
        self.write(bytes_out, complete);
    }

    fn write(&mut self, bytes_out: u64, complete: bool) {
        self.written = true;
        self.fields.bytes_out = bytes_out;
        self.fields.complete = complete;
        // One reading of the clock for the record and the latency histogram.
        let took = self.started.elapsed();
        self.fields.duration_us = ((took.as_nanos() + 500) / 1000) as u64;
        if let Some(p) = &self.bytes_in {
            self.fields.bytes_in = p.bytes.load(Ordering::Relaxed);
        }
        let f = &self.fields;
        self.log.requests.finished(f.site.as_deref(), f.status, took, f.bytes_in, f.bytes_out);
        thread_local! {
            /// Each worker thread encodes into its own buffer, kept between records.
            static LINE: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(Vec::with_capacity(512));
        }
        LINE.with(|line| {
            let mut line = line.borrow_mut();
            line.clear();
            self.fields.encode(&mut line);
            self.log.send(&line);
        });
    }
}

impl Drop for AccessRecord {
    /// A record dropped unwritten belongs to a request whose connection died
    /// before any response was sent: the client left (499, as nginx logs it).
    fn drop(&mut self) {
        if !self.written {
            self.fields.status = 499;
            self.fields.error.get_or_insert_with(|| "client closed the connection".into());
            self.write(0, false);
        }
    }
}

/// The framing check refused bytes on a connection.
/// Logs a refusal by the framing check; returns the request id that the
/// answer carries and, for a refused head, its access record, to be finished
/// when the answer has been written (a refused body has no answer of its own:
/// its request's record says what happened).
pub fn refused_framing(
    log: &AccessLog,
    ctx: &ConnInfo,
    reject: &httpguard::Reject,
    in_head: bool,
) -> (String, Option<AccessRecord>) {
    let id = log.next_id();
    tracing::warn!(
        request_id = %id,
        client = %ctx.peer,
        listener = %ctx.listener,
        cause = reject.cause(),
        status = reject.status(),
        part = if in_head { "head" } else { "body" },
        "request refused; closing the connection"
    );
    let record = in_head.then(|| {
        let mut record = AccessRecord::new(log, ctx, id.clone(), "-", "-");
        record.set_status(reject.status());
        record.set_error(reject.cause());
        record
    });
    (id, record)
}

/// Logs a head that began and did not end in time (answered 408).
pub fn head_timeout(log: &AccessLog, ctx: &ConnInfo) -> (String, AccessRecord) {
    let id = log.next_id();
    tracing::info!(request_id = %id, client = %ctx.peer, listener = %ctx.listener, "request head not received in time; answering 408");
    let mut record = AccessRecord::new(log, ctx, id.clone(), "-", "-");
    record.set_status(408);
    record.set_error("request head not received in time");
    (id, record)
}

/// Requests that matched no site (scanners asking for `/` or `/healthz`):
/// each is answered 404 and logged at debug, and their number goes to the
/// operational log once per `[log] no_site_summary`, so that a scan cannot
/// bury the log in lines that say the same thing.
#[derive(Default)]
pub struct NoSite(AtomicU64);

impl NoSite {
    pub fn count(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    /// The line for the period that just ended, when any request matched no site.
    pub fn report(&self, period: Duration) {
        let n = self.0.swap(0, Ordering::Relaxed);
        if n > 0 {
            let period = humantime::format_duration(period);
            tracing::info!(count = n, "requests to no site: {n} in the last {period} (answered 404)");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_stays_one_line_whatever_it_carries() {
        let forged = "refused cause=ADTEST\\x\r\n2025-01-01T00:00:00Z  INFO forged\x1b[31m\x07\x7f\u{85}\u{202e}end\n";
        let out = one_line(forged.as_bytes());
        assert_eq!(
            out,
            "refused cause=ADTEST\\x\\r\\n2025-01-01T00:00:00Z  INFO forged\\x1b[31m\\x07\\x7f\\u{85}\\u{202e}end\n"
        );
        assert_eq!(one_line("plain text, müller\n".as_bytes()), "plain text, müller\n");
        assert_eq!(one_line(b"no end"), "no end", "only a record's own final newline is kept raw");
        assert_eq!(one_line(b"two\n\n"), "two\\n\n");
        assert_eq!(one_line(b"bad \xff utf-8\n"), "bad \u{fffd} utf-8\n");
    }

    fn fields(text: &str) -> Fields {
        Fields {
            time: SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_123),
            request_id: "c7f0c44900000001".into(),
            client: "[::1]:55766".parse().unwrap(),
            listener: Arc::from(text),
            site: Some(text.into()),
            backend: None,
            method: method_name("GET"),
            path: text.into(),
            status: 200,
            user: Some(Arc::from(text)),
            auth: Some("NTLM"),
            bytes_in: 0,
            bytes_out: u64::MAX,
            duration_us: 1000,
            complete: true,
            error: Some(text.into()),
            denied: None,
        }
    }

    /// The hand encoder against a JSON parser: every string comes back as it
    /// went in, whatever it holds, on one line; absent fields are left out.
    #[test]
    fn a_record_is_one_json_line_that_parses_back() {
        let hostile = "ADTEST\\x \"quoted\"\r\n{\"status\":500}\x00\x1f\x7f\u{85}\u{2028}ü😀";
        for text in [hostile, "", "plain"] {
            let mut out = Vec::new();
            fields(text).encode(&mut out);
            assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 1, "{out:?}");
            assert!(out.ends_with(b"}\n"));
            let v: serde_json::Value = serde_json::from_slice(&out).expect("valid JSON");
            for key in ["listener", "site", "path", "user", "error"] {
                assert_eq!(v[key], text, "{key}");
            }
            assert_eq!(v["time"], "2023-11-14T22:13:20.123Z");
            assert_eq!(v["client"], "[::1]:55766");
            assert_eq!(v["method"], "GET");
            assert_eq!(v["status"], 200);
            assert_eq!(v["bytes_out"], u64::MAX);
            assert_eq!(v["duration_ms"].as_f64(), Some(1.0));
            assert_eq!(v["complete"], true);
            assert!(v.get("backend").is_none() && v.get("denied").is_none());
        }
        let mut f = fields("x");
        f.method = method_name("M-SEARCH");
        let mut out = Vec::new();
        f.encode(&mut out);
        let v: serde_json::Value = serde_json::from_slice(&out).expect("valid JSON");
        assert_eq!(v["method"], "M-SEARCH");
    }

    /// Every ASCII character, alone, first, last or amid plain text, whether
    /// the string takes the copy without escapes or the escaping loop: the
    /// JSON parses back to the same text and carries no raw control byte.
    #[test]
    fn each_character_is_escaped_wherever_it_stands() {
        for b in 0u8..0x80 {
            let c = b as char;
            for text in [format!("{c}"), format!("{c}/owa/"), format!("/owa/{c}"), format!("/ow{c}a/index")] {
                let mut out = Vec::new();
                json_string(&mut out, &text);
                assert!(!out.iter().any(|&x| x < 0x20), "{b:#x}: {out:?}");
                let back: String = serde_json::from_slice(&out).unwrap_or_else(|e| panic!("{b:#x}: {e}: {out:?}"));
                assert_eq!(back, text, "{b:#x}");
                let plain = b >= 0x20 && b != b'"' && b != b'\\';
                assert_eq!(out.len() == text.len() + 2, plain, "{b:#x}: escaped only when it must be: {out:?}");
            }
        }
    }

    /// A small xorshift: the same inputs on every run.
    fn noise(seed: &mut u64) -> u64 {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        *seed
    }

    /// The hand-written number, time and address writers against the
    /// formatters they replace.
    #[test]
    fn the_record_writes_what_core_and_humantime_would() {
        let mut seed = 0x2545_f491_4f6c_dd1d;
        let text = |f: &dyn Fn(&mut Vec<u8>)| {
            let mut out = Vec::new();
            f(&mut out);
            String::from_utf8(out).unwrap()
        };
        let mut addrs: Vec<std::net::SocketAddr> = [
            "0.0.0.0:0",
            "255.255.255.255:65535",
            "127.0.0.1:8080",
            "[::1]:443",
            "[::ffff:192.0.2.1]:1",
            "[fe80::1%2]:9",
        ]
        .iter()
        .map(|a| a.parse().unwrap())
        .collect();
        for _ in 0..5_000 {
            let n = noise(&mut seed);
            addrs.push(std::net::SocketAddr::from(((n as u32).to_be_bytes(), (n >> 32) as u16)));
        }
        for a in addrs {
            assert_eq!(text(&|o| socket_addr(a, o)), a.to_string());
        }
        let mut micros: Vec<u64> = vec![0, 1, 10, 100, 999, 1000, 1001, 1010, 1100, 1500, 12_345_678, 86_400_000_000];
        for _ in 0..20_000 {
            micros.push(noise(&mut seed) % 100_000_000_000);
        }
        for us in micros {
            let was = format!("{:?}", us as f64 / 1e3);
            assert_eq!(text(&|o| milliseconds(us, o)), was, "{us}");
        }
        // Times in order, out of order and within one second, so that the
        // thread's cached second is both reused and replaced.
        let mut times =
            vec![0u64, 999, 1000, 1_700_000_000_123, 1_700_000_000_999, 1_700_000_001_000, 1_699_999_999_999];
        for _ in 0..5_000 {
            let base = noise(&mut seed) % 4_000_000_000_000;
            times.extend([base, base + 1, base + noise(&mut seed) % 2_000]);
        }
        for ms in times {
            let t = SystemTime::UNIX_EPOCH + Duration::from_millis(ms);
            assert_eq!(text(&|o| rfc3339_millis(t, o)), humantime::format_rfc3339_millis(t).to_string(), "{ms}");
        }
        let ids = RequestIds { prefix: 0x00c7_f0c4, next: AtomicU64::new(0x1_0000_00ab) };
        assert_eq!(ids.next(), format!("{:08x}{:08x}", 0x00c7_f0c4u32, 0xabu32));
        assert_eq!(ids.next(), "00c7f0c4000000ac");
    }

    #[test]
    fn the_writer_escapes_what_it_is_given() {
        let mut w = OneLine(Vec::new());
        w.write_all(b"a\r\nb\n").unwrap();
        assert_eq!(w.0, b"a\\r\\nb\n");
    }

    /// Stable-Rust stand-in for a fuzzer: any text comes out as one line with
    /// no control character but its end, and printable text unchanged.
    #[test]
    fn fuzz_entry_one_line_on_noise() {
        let alphabet: Vec<char> = "ab\\ \n\r\t\x1b\x00\x7f\u{85}\u{9b}\u{202e}\u{2066}\u{2028}ü€😀[m".chars().collect();
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            let mut text = String::new();
            for _ in 0..(seed % 40) {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                text.push(alphabet[(seed % alphabet.len() as u64) as usize]);
            }
            let out = one_line(text.as_bytes());
            let body = out.strip_suffix('\n').unwrap_or(&out);
            assert!(!body.chars().any(|c| c.is_control() || misleads(c)), "{text:?} -> {out:?}");
            assert_eq!(out.ends_with('\n'), text.ends_with('\n'));
            let printable = text.chars().filter(|c| !c.is_control() && !misleads(*c)).count();
            assert!(body.chars().count() >= printable);
            if text.chars().all(|c| !c.is_control() && !misleads(c)) {
                assert_eq!(out, text);
            }
        }
    }
}
