//! The desync corpus: request bytes that try to make gatehouse and the server
//! behind it disagree about where one request ends and the next begins, with the
//! answers each may get.
//!
//! Generated in code, not stored as files: most cases are one spelling of a
//! header crossed with several message shapes, and a generator keeps the
//! lengths (Content-Length, chunk sizes) right by construction, where hand-kept
//! byte files would drift. Deterministic: no randomness, so a case name always
//! means the same bytes. Shared by `crates/gatehouse/tests/edge/desync_corpus.rs` (the
//! real binary, a recording backend) and `crates/httpguard/tests/desync_corpus.rs`
//! (the framing guard alone, and the fuzz seeds), which include this file.
//!
//! Naming rule for the requests inside a case: a request the RFC 9112 framing
//! makes a request is `rN`; request-shaped bytes the framing puts inside a body
//! are `smuggled`. A case lists the answers that are acceptable; none of them
//! ever lets `smuggled` reach the backend as a request.
//!
//! Every target starts with [`MARK`], which the runner replaces by the case's
//! four-digit index (same length, so lengths stay right) to tell apart requests
//! of cases that run at once.

#![allow(dead_code)]

/// Replaced by `/NNNN/`, the case's index, before sending.
pub const MARK: &[u8] = b"/CCCC/";

/// Statuses for a refused request.
pub const BAD: &[u16] = &[400];
/// Unsupported Transfer-Encoding: RFC 9112 section 6.1 suggests 501; 400 is the guard's.
pub const BAD_TE: &[u16] = &[400, 501];
/// HTTP versions other than 1.0 and 1.1.
pub const BAD_VERSION: &[u16] = &[400, 505];
/// Heads over the size or field-count limit.
pub const TOO_LARGE: &[u16] = &[431];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    TransferEncoding,
    ContentLength,
    LineEnding,
    Pipelined,
    LookAlike,
    Answer,
}

/// How the connection ends after the forwarded requests have been answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// Kept open: the client may send more.
    Open,
    /// Closed without a further answer (HTTP/1.0 without keep-alive, `Connection: close`).
    Closed,
    /// One more answer, a refusal with one of these statuses, then closed.
    Refused(&'static [u16]),
}

/// One acceptable result: these requests (by name, `r0`...) reach the backend
/// and are answered by it in this order, then the connection ends so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub forwarded: Vec<&'static str>,
    pub end: End,
}

/// What the framing guard alone decides: how many requests it accepts in full
/// (a request refused inside its body does not count), and whether it then
/// refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuardVerdict {
    pub heads: usize,
    pub refused: bool,
}

#[derive(Debug, Clone)]
pub struct Case {
    pub name: String,
    pub class: Class,
    /// Written in order; before each step after the first, the client waits for
    /// one answer (to send a request only once the previous one has been answered).
    pub steps: Vec<Vec<u8>>,
    pub outcomes: Vec<Outcome>,
    /// Acceptable verdicts of `httpguard::RequestStream` on all steps together.
    pub guard: Vec<GuardVerdict>,
}

impl Case {
    /// All steps as one byte string, with [`MARK`] left in.
    pub fn bytes(&self) -> Vec<u8> {
        self.steps.concat()
    }
}

pub fn fwd(names: &[&'static str]) -> Outcome {
    Outcome { forwarded: names.to_vec(), end: End::Open }
}

pub fn refused(before: &[&'static str], statuses: &'static [u16]) -> Outcome {
    Outcome { forwarded: before.to_vec(), end: End::Refused(statuses) }
}

pub fn closed(names: &[&'static str]) -> Outcome {
    Outcome { forwarded: names.to_vec(), end: End::Closed }
}

/// The guard verdict an outcome implies when the guard is what decides it
/// (cases where hyper or the proxy decides override it with `Builder::guard`).
fn implied_guard(o: &Outcome) -> GuardVerdict {
    GuardVerdict { heads: o.forwarded.len(), refused: matches!(o.end, End::Refused(_)) }
}

struct Builder {
    cases: Vec<Case>,
}

impl Builder {
    fn add(&mut self, class: Class, name: impl Into<String>, steps: Vec<Vec<u8>>, outcomes: Vec<Outcome>) {
        let mut guard: Vec<GuardVerdict> = Vec::new();
        for o in &outcomes {
            let g = implied_guard(o);
            if !guard.contains(&g) {
                guard.push(g);
            }
        }
        self.cases.push(Case { name: name.into(), class, steps, outcomes, guard });
    }

    fn one(&mut self, class: Class, name: impl Into<String>, bytes: impl AsRef<[u8]>, outcomes: Vec<Outcome>) {
        self.add(class, name, vec![bytes.as_ref().to_vec()], outcomes);
    }

    /// Overrides the guard verdicts of the last case (for answers that come
    /// from the proxy, not the guard).
    fn guard(&mut self, verdicts: &[GuardVerdict]) {
        self.cases.last_mut().unwrap().guard = verdicts.to_vec();
    }
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

fn get(n: usize) -> Vec<u8> {
    format!("GET /CCCC/r{n} HTTP/1.1\r\nHost: a\r\n\r\n").into_bytes()
}

/// A request the framing puts inside a body; it must never reach the backend.
const SMUGGLED: &[u8] = b"GET /CCCC/smuggled HTTP/1.1\r\nHost: a\r\n\r\n";

/// `POST /CCCC/r{n}` with the header lines `fields` (each ending in CRLF) and `body`.
fn post(n: usize, fields: &[u8], body: &[u8]) -> Vec<u8> {
    cat(&[format!("POST /CCCC/r{n} HTTP/1.1\r\nHost: a\r\n").as_bytes(), fields, b"\r\n", body])
}

fn cl(n: usize) -> Vec<u8> {
    format!("Content-Length: {n}\r\n").into_bytes()
}

/// One chunk holding `data`, then the last chunk.
fn chunked(data: &[u8]) -> Vec<u8> {
    cat(&[format!("{:x}\r\n", data.len()).as_bytes(), data, b"\r\n0\r\n\r\n"])
}

/// What a Transfer-Encoding spelling is, read the RFC 9112 way.
#[derive(Clone, Copy, PartialEq)]
enum Te {
    /// A Transfer-Encoding field whose only coding is chunked.
    Chunked,
    /// A Transfer-Encoding field, but not (only) chunked: refuse.
    Unsupported,
    /// Not a valid head at all.
    Malformed,
    /// A field with another name: no Transfer-Encoding at all.
    OtherField,
    /// Bare-LF line ends: a parser may read them as line ends (httparse does) or refuse.
    ChunkedOrMalformed,
}

/// Transfer-Encoding field lines (complete, with their line end), named.
fn te_spellings() -> Vec<(&'static str, Vec<u8>, Te)> {
    let mut v: Vec<(&'static str, Vec<u8>, Te)> = Vec::new();
    let mut line = |name: &'static str, raw: &[u8], kind: Te| v.push((name, raw.to_vec(), kind));
    line("plain", b"Transfer-Encoding: chunked\r\n", Te::Chunked);
    line("value-capitalised", b"Transfer-Encoding: Chunked\r\n", Te::Chunked);
    line("value-upper", b"Transfer-Encoding: CHUNKED\r\n", Te::Chunked);
    line("value-mixed-case", b"Transfer-Encoding: cHuNkEd\r\n", Te::Chunked);
    line("name-lower", b"transfer-encoding: chunked\r\n", Te::Chunked);
    line("name-upper", b"TRANSFER-ENCODING: chunked\r\n", Te::Chunked);
    line("no-space", b"Transfer-Encoding:chunked\r\n", Te::Chunked);
    line("leading-spaces", b"Transfer-Encoding:   chunked\r\n", Te::Chunked);
    line("trailing-space", b"Transfer-Encoding: chunked \r\n", Te::Chunked);
    line("leading-tab", b"Transfer-Encoding:\tchunked\r\n", Te::Chunked);
    line("trailing-tab", b"Transfer-Encoding: chunked\t\r\n", Te::Chunked);
    line("vtab-before", b"Transfer-Encoding: \x0bchunked\r\n", Te::Unsupported);
    line("vtab-after", b"Transfer-Encoding: chunked\x0b\r\n", Te::Unsupported);
    line("formfeed-before", b"Transfer-Encoding: \x0cchunked\r\n", Te::Unsupported);
    line("formfeed-after", b"Transfer-Encoding: chunked\x0c\r\n", Te::Unsupported);
    line("quoted", b"Transfer-Encoding: \"chunked\"\r\n", Te::Unsupported);
    line("chunked-twice", b"Transfer-Encoding: chunked, chunked\r\n", Te::Unsupported);
    line("identity-chunked", b"Transfer-Encoding: identity, chunked\r\n", Te::Unsupported);
    line("chunked-identity", b"Transfer-Encoding: chunked, identity\r\n", Te::Unsupported);
    line("gzip-chunked", b"Transfer-Encoding: gzip, chunked\r\n", Te::Unsupported);
    line("trailing-comma", b"Transfer-Encoding: chunked,\r\n", Te::Unsupported);
    line("leading-comma", b"Transfer-Encoding: ,chunked\r\n", Te::Unsupported);
    line("chunk", b"Transfer-Encoding: chunk\r\n", Te::Unsupported);
    line("xchunked", b"Transfer-Encoding: xchunked\r\n", Te::Unsupported);
    line("chunked-param", b"Transfer-Encoding: chunked;q=1\r\n", Te::Unsupported);
    line("identity", b"Transfer-Encoding: identity\r\n", Te::Unsupported);
    line("empty", b"Transfer-Encoding:\r\n", Te::Unsupported);
    line("duplicate", b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n", Te::Unsupported);
    line("duplicate-identity", b"Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n", Te::Unsupported);
    line("nul-in-value", b"Transfer-Encoding: chunked\x00\r\n", Te::Malformed);
    line("space-before-colon", b"Transfer-Encoding : chunked\r\n", Te::Malformed);
    line("tab-before-colon", b"Transfer-Encoding\t: chunked\r\n", Te::Malformed);
    line("obs-fold-value", b"Transfer-Encoding:\r\n chunked\r\n", Te::Malformed);
    line("folded-under-other", b"X-A: b\r\n Transfer-Encoding: chunked\r\n", Te::Malformed);
    line("cr-in-value", b"Transfer-Encoding: chu\rnked\r\n", Te::Malformed);
    line("cyrillic-i", "Transfer-Encodіng: chunked\r\n".as_bytes(), Te::Malformed);
    line("latin1-i", b"Transfer-Encod\xefng: chunked\r\n", Te::Malformed);
    line("nul-in-name", b"Transfer-Encoding\x00: chunked\r\n", Te::Malformed);
    line("underscore", b"Transfer_Encoding: chunked\r\n", Te::OtherField);
    line("x-prefixed", b"X-Transfer-Encoding: chunked\r\n", Te::OtherField);
    line("plural", b"Transfer-Encodings: chunked\r\n", Te::OtherField);
    line("no-dash", b"TransferEncoding: chunked\r\n", Te::OtherField);
    line("bare-lf-before", b"X-A: b\nTransfer-Encoding: chunked\r\n", Te::ChunkedOrMalformed);
    line("bare-lf-after", b"Transfer-Encoding: chunked\n", Te::ChunkedOrMalformed);
    v
}

fn transfer_encoding(b: &mut Builder) {
    let class = Class::TransferEncoding;
    let body = chunked(b"hello");
    for (name, line, kind) in te_spellings() {
        // TE alone, then a pipelined request: only a real `chunked` frames it.
        let te_only = cat(&[&post(0, &line, &body), &get(1)]);
        let outcomes = match kind {
            Te::Chunked => vec![fwd(&["r0", "r1"])],
            Te::ChunkedOrMalformed => vec![fwd(&["r0", "r1"]), refused(&[], BAD)],
            Te::Unsupported => vec![refused(&[], BAD_TE)],
            Te::Malformed => vec![refused(&[], BAD)],
            // No body: the chunk bytes are the next "request", which is garbage.
            Te::OtherField => vec![refused(&["r0"], BAD), refused(&[], BAD)],
        };
        b.one(class, format!("te/{name}/alone"), te_only, outcomes);

        // The classic CL.TE and TE.CL shapes: the body is a last chunk and a
        // request, and Content-Length covers both. A TE reader would see a
        // second request where a CL reader sees body.
        let inner = cat(&[b"0\r\n\r\n", SMUGGLED]);
        let with_cl = |first_te: bool| {
            let fields = if first_te { cat(&[&line, &cl(inner.len())]) } else { cat(&[&cl(inner.len()), &line]) };
            cat(&[&post(0, &fields, &inner), &get(1)])
        };
        let outcomes = match kind {
            Te::OtherField => vec![fwd(&["r0", "r1"]), refused(&[], BAD)],
            Te::Unsupported => vec![refused(&[], BAD_TE)],
            _ => vec![refused(&[], BAD)],
        };
        b.one(class, format!("te/{name}/cl-te"), with_cl(false), outcomes.clone());
        b.one(class, format!("te/{name}/te-cl"), with_cl(true), outcomes);
    }
    // Transfer-Encoding means nothing in HTTP/1.0 (RFC 9112 section 6.1): refuse.
    let http10 = cat(&[b"POST /CCCC/r0 HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", &body]);
    b.one(class, "te/http10", http10, vec![refused(&[], BAD_TE)]);
    let http10_cl = cat(&[
        b"POST /CCCC/r0 HTTP/1.0\r\nTransfer-Encoding: chunked\r\n",
        &cl(inner_len_smuggle()),
        b"\r\n0\r\n\r\n",
        SMUGGLED,
    ]);
    b.one(class, "te/http10-with-cl", http10_cl, vec![refused(&[], BAD_TE)]);
}

fn inner_len_smuggle() -> usize {
    5 + SMUGGLED.len()
}

fn content_length(b: &mut Builder) {
    let class = Class::ContentLength;
    // Spellings read as 5, with a 5-byte body, then a pipelined request.
    let five: &[(&str, &[u8], bool)] = &[
        // (name, field line, surely valid)
        ("plain", b"Content-Length: 5\r\n", true),
        ("name-lower", b"content-length: 5\r\n", true),
        ("no-space", b"Content-Length:5\r\n", true),
        ("leading-tab", b"Content-Length:\t5\r\n", true),
        ("trailing-space", b"Content-Length: 5 \r\n", true),
        ("duplicate-equal", b"Content-Length: 5\r\nContent-Length: 5\r\n", false),
        ("list-equal", b"Content-Length: 5, 5\r\n", false),
        ("list-equal-no-space", b"Content-Length: 5,5\r\n", false),
        ("leading-zeros", b"Content-Length: 005\r\n", false),
    ];
    for (name, line, surely) in five {
        let bytes = cat(&[&post(0, line, b"hello"), &get(1)]);
        let outcomes = if *surely { vec![fwd(&["r0", "r1"])] } else { vec![fwd(&["r0", "r1"]), refused(&[], BAD)] };
        b.one(class, format!("cl/{name}"), bytes, outcomes);
    }
    // `010` is ten in decimal and eight to an octal reader: forwarded, the backend
    // must see it normalised.
    let bytes = cat(&[&post(0, b"Content-Length: 010\r\n", b"0123456789"), &get(1)]);
    b.one(class, "cl/leading-zero-ten", bytes, vec![fwd(&["r0", "r1"]), refused(&[], BAD)]);

    // Spellings that are not one decimal length: refused, whatever follows.
    let bad: &[(&str, &[u8])] = &[
        ("plus", b"Content-Length: +5\r\n"),
        ("minus", b"Content-Length: -1\r\n"),
        ("two-numbers", b"Content-Length: 5 5\r\n"),
        ("list-differing", b"Content-Length: 5, 6\r\n"),
        ("duplicate-differing", b"Content-Length: 5\r\nContent-Length: 6\r\n"),
        ("hex", b"Content-Length: 0x5\r\n"),
        ("decimal-point", b"Content-Length: 5.0\r\n"),
        ("exponent", b"Content-Length: 5e0\r\n"),
        ("huge", b"Content-Length: 99999999999999999999999\r\n"),
        ("u64-overflow", b"Content-Length: 18446744073709551621\r\n"),
        ("empty", b"Content-Length:\r\n"),
        ("empty-list-member", b"Content-Length: 5,\r\n"),
        ("letters", b"Content-Length: five\r\n"),
        ("arabic-digit", "Content-Length: ٥\r\n".as_bytes()),
        ("nul", b"Content-Length: 5\x00\r\n"),
        ("vtab", b"Content-Length: \x0b5\r\n"),
        ("space-before-colon", b"Content-Length : 5\r\n"),
        ("tab-before-colon", b"Content-Length\t: 5\r\n"),
        ("obs-fold", b"Content-Length:\r\n 5\r\n"),
    ];
    for (name, line) in bad {
        let bytes = cat(&[&post(0, line, b"hello"), &get(1)]);
        b.one(class, format!("cl/{name}"), bytes, vec![refused(&[], BAD)]);
    }
    // A zero length with a body-shaped request behind it: that request is r1.
    let bytes = cat(&[&post(0, b"Content-Length: 0\r\n", b""), &get(1)]);
    b.one(class, "cl/zero", bytes, vec![fwd(&["r0", "r1"])]);
    // Look-alike names carry no length: what follows is the next request.
    for (name, line) in [
        ("underscore", "Content_Length"),
        ("no-dash", "ContentLength"),
        ("x-prefixed", "X-Content-Length"),
        ("cyrillic-e", "Contеnt-Length"),
    ] {
        let r1 = get(1);
        let field = format!("{line}: {}\r\n", r1.len());
        let outcomes =
            if line.is_ascii() { vec![fwd(&["r0", "r1"]), refused(&[], BAD)] } else { vec![refused(&[], BAD)] };
        b.one(class, format!("cl/lookalike-{name}"), cat(&[&post(0, field.as_bytes(), b""), &r1]), outcomes);
    }
    // CL with TE in both orders, with a chunked body that a CL reader would cut
    // short: always refused.
    let inner = cat(&[b"0\r\n\r\n", SMUGGLED]);
    for (name, fields) in [
        ("cl-short-te", cat(&[b"Content-Length: 3\r\n", b"Transfer-Encoding: chunked\r\n"])),
        ("te-cl-short", cat(&[b"Transfer-Encoding: chunked\r\n", b"Content-Length: 3\r\n"])),
        ("cl-zero-te", cat(&[b"Content-Length: 0\r\n", b"Transfer-Encoding: chunked\r\n"])),
        ("cl-long-te", cat(&[&cl(inner.len() + 40), b"Transfer-Encoding: chunked\r\n"])),
    ] {
        b.one(class, format!("cl/{name}"), cat(&[&post(0, &fields, &inner), &get(1)]), vec![refused(&[], BAD)]);
    }
}

fn line_endings(b: &mut Builder) {
    let class = Class::LineEnding;
    let r0 = "GET /CCCC/r0 HTTP/1.1\r\nHost: a\r\nX-A: b\r\n\r\n";
    let r1 = get(1);
    let pair = |first: &[u8]| cat(&[first, &r1]);
    let either = || vec![fwd(&["r0", "r1"]), refused(&[], BAD)];
    b.one(class, "le/crlf", pair(r0.as_bytes()), vec![fwd(&["r0", "r1"])]);
    b.one(class, "le/bare-lf", pair(r0.replace("\r\n", "\n").as_bytes()), either());
    b.one(class, "le/mixed", pair(b"GET /CCCC/r0 HTTP/1.1\nHost: a\r\nX-A: b\n\r\n"), either());
    b.one(class, "le/lf-then-crlf-end", pair(b"GET /CCCC/r0 HTTP/1.1\nHost: a\n\r\n"), either());
    b.one(class, "le/bare-cr", pair(r0.replace("\r\n", "\r").as_bytes()), vec![refused(&[], BAD)]);
    // Nothing but bare CRs: no line end a parser could wait for.
    b.one(class, "le/bare-cr-alone", r0.replace("\r\n", "\r"), vec![refused(&[], BAD)]);
    b.one(
        class,
        "le/bare-cr-in-field",
        pair(b"GET /CCCC/r0 HTTP/1.1\r\nHost: a\rX-A: b\r\n\r\n"),
        vec![refused(&[], BAD)],
    );
    b.one(class, "le/cr-cr-lf", pair(r0.replace("\r\n", "\r\r\n").as_bytes()), vec![refused(&[], BAD)]);
    b.one(class, "le/lf-cr", pair(r0.replace("\r\n", "\n\r").as_bytes()), vec![refused(&[], BAD)]);
    b.one(class, "le/leading-blank-lines", pair(format!("\r\n\r\n{r0}").as_bytes()), vec![fwd(&["r0", "r1"])]);
    b.one(class, "le/leading-space-line", pair(format!(" \r\n{r0}").as_bytes()), vec![refused(&[], BAD)]);
    let refuse: &[(&str, &[u8])] = &[
        ("space-before-colon", b"GET /CCCC/r0 HTTP/1.1\r\nHost : a\r\n\r\n"),
        ("tab-before-colon", b"GET /CCCC/r0 HTTP/1.1\r\nHost\t: a\r\n\r\n"),
        ("first-field-leading-space", b"GET /CCCC/r0 HTTP/1.1\r\n Host: a\r\n\r\n"),
        ("first-field-leading-tab", b"GET /CCCC/r0 HTTP/1.1\r\n\tHost: a\r\n\r\n"),
        ("obs-fold", b"GET /CCCC/r0 HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n"),
        ("two-spaces-before-target", b"GET  /CCCC/r0 HTTP/1.1\r\nHost: a\r\n\r\n"),
        ("two-spaces-before-version", b"GET /CCCC/r0  HTTP/1.1\r\nHost: a\r\n\r\n"),
        ("tabs-in-request-line", b"GET\t/CCCC/r0\tHTTP/1.1\r\nHost: a\r\n\r\n"),
        ("leading-space-request-line", b" GET /CCCC/r0 HTTP/1.1\r\nHost: a\r\n\r\n"),
        ("trailing-space-request-line", b"GET /CCCC/r0 HTTP/1.1 \r\nHost: a\r\n\r\n"),
        ("lowercase-version", b"GET /CCCC/r0 http/1.1\r\nHost: a\r\n\r\n"),
        ("no-version", b"GET /CCCC/r0\r\nHost: a\r\n\r\n"),
        ("space-in-target", b"GET /CCCC/r0 x HTTP/1.1\r\nHost: a\r\n\r\n"),
        ("nul-in-target", b"GET /CCCC/r0\x00 HTTP/1.1\r\nHost: a\r\n\r\n"),
        ("nul-in-method", b"G\x00T /CCCC/r0 HTTP/1.1\r\nHost: a\r\n\r\n"),
        ("nul-in-name", b"GET /CCCC/r0 HTTP/1.1\r\nHost: a\r\nX\x00A: b\r\n\r\n"),
        ("nul-in-value", b"GET /CCCC/r0 HTTP/1.1\r\nHost: a\r\nX-A: b\x00c\r\n\r\n"),
        ("del-in-name", b"GET /CCCC/r0 HTTP/1.1\r\nHost: a\r\nX\x7fA: b\r\n\r\n"),
        ("del-in-value", b"GET /CCCC/r0 HTTP/1.1\r\nHost: a\r\nX-A: b\x7fc\r\n\r\n"),
        ("ctl-in-value", b"GET /CCCC/r0 HTTP/1.1\r\nHost: a\r\nX-A: b\x01c\r\n\r\n"),
        ("field-without-colon", b"GET /CCCC/r0 HTTP/1.1\r\nHost: a\r\nX-A\r\n\r\n"),
        ("empty-field-name", b"GET /CCCC/r0 HTTP/1.1\r\nHost: a\r\n: b\r\n\r\n"),
        ("space-in-field-name", b"GET /CCCC/r0 HTTP/1.1\r\nHost: a\r\nX A: b\r\n\r\n"),
        ("missing-host", b"GET /CCCC/r0 HTTP/1.1\r\n\r\n"),
    ];
    for (name, first) in refuse {
        b.one(class, format!("le/{name}"), pair(first), vec![refused(&[], BAD)]);
    }
    for (name, version) in [("http12", "HTTP/1.2"), ("http20", "HTTP/2.0"), ("http09", "HTTP/0.9"), ("http3", "HTTP/3")]
    {
        let first = format!("GET /CCCC/r0 {version}\r\nHost: a\r\n\r\n");
        b.one(class, format!("le/version-{name}"), pair(first.as_bytes()), vec![refused(&[], BAD_VERSION)]);
    }
    b.one(
        class,
        "le/absolute-form",
        pair(b"GET http://a/CCCC/r0 HTTP/1.1\r\nHost: a\r\n\r\n"),
        vec![fwd(&["r0", "r1"]), refused(&[], BAD)],
    );
    b.one(
        class,
        "le/obs-text-value",
        pair(b"GET /CCCC/r0 HTTP/1.1\r\nHost: a\r\nX-A: caf\xe9\r\n\r\n"),
        vec![fwd(&["r0", "r1"]), refused(&[], BAD)],
    );
    // Answered by the proxy (a path IIS would read differently), not the guard.
    b.one(
        class,
        "le/encoded-dot-segment",
        pair(b"GET /CCCC/%2e%2e/r0 HTTP/1.1\r\nHost: a\r\n\r\n"),
        vec![refused(&[], BAD)],
    );
    b.guard(&[GuardVerdict { heads: 2, refused: false }]);
    // Limits: one byte past the head limit, with no end in sight, and too many fields.
    let mut big = b"GET /CCCC/r0 HTTP/1.1\r\nHost: a\r\nX-Big: ".to_vec();
    big.resize(64 * 1024 + 4, b'a');
    b.one(class, "le/head-too-large", big, vec![refused(&[], TOO_LARGE)]);
    let mut many = b"GET /CCCC/r0 HTTP/1.1\r\nHost: a\r\n".to_vec();
    for i in 0..200 {
        many.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
    }
    many.extend_from_slice(b"\r\n");
    b.one(class, "le/too-many-fields", many, vec![refused(&[], TOO_LARGE)]);
    // Chunk lines and trailers: CRLF only.
    let chunked_post = |body: &[u8]| cat(&[&post(0, b"Transfer-Encoding: chunked\r\n", body), &r1]);
    let chunks: &[(&str, &[u8], bool)] = &[
        ("size-bare-lf", b"5\nhello\r\n0\r\n\r\n", false),
        ("data-end-bare-lf", b"5\r\nhello\n0\r\n\r\n", false),
        ("last-chunk-bare-lf", b"5\r\nhello\r\n0\n\n", false),
        ("size-bare-cr", b"5\rhello\r\n0\r\n\r\n", false),
        ("size-leading-space", b" 5\r\nhello\r\n0\r\n\r\n", false),
        ("size-hex-prefix", b"0x5\r\nhello\r\n0\r\n\r\n", false),
        ("size-negative", b"-5\r\nhello\r\n0\r\n\r\n", false),
        ("size-overflow", b"10000000000000005\r\nhello\r\n0\r\n\r\n", false),
        ("size-trailing-space", b"5 \r\nhello\r\n0\r\n\r\n", true),
        ("size-extension", b"5;a=b\r\nhello\r\n0\r\n\r\n", true),
        ("size-upper-hex", b"A\r\nhellohello\r\n0\r\n\r\n", true),
        ("size-leading-zeros", b"005\r\nhello\r\n0\r\n\r\n", true),
        ("trailer", b"5\r\nhello\r\n0\r\nX-T: 1\r\n\r\n", true),
        ("trailer-obs-fold", b"5\r\nhello\r\n0\r\nX-T: 1\r\n 2\r\n\r\n", false),
        ("trailer-bare-lf", b"5\r\nhello\r\n0\r\nX-T: 1\n\r\n", false),
        ("trailer-space-before-colon", b"5\r\nhello\r\n0\r\nX-T : 1\r\n\r\n", false),
    ];
    for (name, body, ok) in chunks {
        let outcomes = if *ok { vec![fwd(&["r0", "r1"])] } else { vec![refused(&[], BAD)] };
        b.one(class, format!("le/chunk-{name}"), chunked_post(body), outcomes);
    }
}

fn pipelined(b: &mut Builder) {
    let class = Class::Pipelined;
    b.one(class, "pipe/get-get", cat(&[&get(0), &get(1)]), vec![fwd(&["r0", "r1"])]);
    b.one(class, "pipe/get-get-get", cat(&[&get(0), &get(1), &get(2)]), vec![fwd(&["r0", "r1", "r2"])]);
    b.one(class, "pipe/post-get", cat(&[&post(0, &cl(5), b"hello"), &get(1)]), vec![fwd(&["r0", "r1"])]);
    b.one(
        class,
        "pipe/chunked-get",
        cat(&[&post(0, b"Transfer-Encoding: chunked\r\n", &chunked(b"hello")), &get(1)]),
        vec![fwd(&["r0", "r1"])],
    );
    b.one(class, "pipe/post-without-length-get", cat(&[&post(0, b"", b""), &get(1)]), vec![fwd(&["r0", "r1"])]);
    b.one(
        class,
        "pipe/get-with-body-get",
        {
            let head = format!("GET /CCCC/r0 HTTP/1.1\r\nHost: a\r\nContent-Length: {}\r\n\r\n", SMUGGLED.len());
            cat(&[head.as_bytes(), SMUGGLED, &get(1)])
        },
        vec![fwd(&["r0", "r1"])],
    );
    // A valid request, then one the guard refuses: the first is answered, then the refusal.
    let invalid: &[(&str, &[u8])] = &[
        (
            "cl-te",
            b"POST /CCCC/r1 HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        ),
        ("obs-fold", b"GET /CCCC/r1 HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n"),
        ("duplicate-host", b"GET /CCCC/r1 HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
        ("garbage", b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\r\n\r\n"),
        ("bad-chunk", b"POST /CCCC/r1 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"),
    ];
    for (name, second) in invalid {
        b.one(class, format!("pipe/valid-then-{name}"), cat(&[&get(0), second]), vec![refused(&["r0"], BAD)]);
    }
    // The same, but the refused request is sent only once the first was answered.
    b.add(class, "pipe/valid-then-cl-te-later", vec![get(0), invalid[0].1.to_vec()], vec![refused(&["r0"], BAD)]);
    // Bodies that hold requests: the requests are data.
    b.one(
        class,
        "pipe/body-holds-request",
        cat(&[&post(0, &cl(SMUGGLED.len()), SMUGGLED), &get(1)]),
        vec![fwd(&["r0", "r1"])],
    );
    let prefix = b"GET /CCCC/smuggled HTTP/1.1\r\nHost: a\r\nX-Ignore: ";
    b.one(
        class,
        "pipe/body-holds-request-prefix",
        cat(&[&post(0, &cl(prefix.len()), prefix), &get(1)]),
        vec![fwd(&["r0", "r1"])],
    );
    b.one(
        class,
        "pipe/chunk-holds-request",
        cat(&[&post(0, b"Transfer-Encoding: chunked\r\n", &chunked(SMUGGLED)), &get(1)]),
        vec![fwd(&["r0", "r1"])],
    );
    // A chunk size that covers only part of the data: the rest is no chunk line.
    let short = cat(&[b"3\r\n", SMUGGLED, b"\r\n0\r\n\r\n"]);
    b.one(
        class,
        "pipe/chunk-size-short",
        cat(&[&post(0, b"Transfer-Encoding: chunked\r\n", &short), &get(1)]),
        vec![refused(&[], BAD)],
    );
    // A request in the trailer section is no trailer.
    let trailer = cat(&[b"5\r\nhello\r\n0\r\n", SMUGGLED]);
    b.one(
        class,
        "pipe/trailer-holds-request",
        cat(&[&post(0, b"Transfer-Encoding: chunked\r\n", &trailer), &get(1)]),
        vec![refused(&[], BAD)],
    );
    // A chunk extension that reads like a request line.
    let ext = b"5;GET /CCCC/smuggled HTTP/1.1\r\nhello\r\n0\r\n\r\n";
    b.one(
        class,
        "pipe/chunk-extension-holds-request",
        cat(&[&post(0, b"Transfer-Encoding: chunked\r\n", ext), &get(1)]),
        vec![fwd(&["r0", "r1"]), refused(&[], BAD)],
    );
    // Expect: 100-continue with the body sent at once, without waiting.
    b.one(
        class,
        "pipe/expect-100-immediate-body",
        cat(&[&post(0, &cat(&[b"Expect: 100-continue\r\n", &cl(SMUGGLED.len())]), SMUGGLED), &get(1)]),
        vec![fwd(&["r0", "r1"])],
    );
    b.one(
        class,
        "pipe/expect-100-chunked",
        cat(&[&post(0, b"Expect: 100-continue\r\nTransfer-Encoding: chunked\r\n", &chunked(SMUGGLED)), &get(1)]),
        vec![fwd(&["r0", "r1"])],
    );
    // HTTP/1.0: keep-alive only when asked for.
    b.one(
        class,
        "pipe/http10-keepalive",
        b"GET /CCCC/r0 HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /CCCC/r1 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
        vec![fwd(&["r0", "r1"]), closed(&["r0"])],
    );
    b.guard(&[GuardVerdict { heads: 2, refused: false }]);
    b.one(
        class,
        "pipe/http10-close",
        b"GET /CCCC/r0 HTTP/1.0\r\n\r\nGET /CCCC/r1 HTTP/1.0\r\n\r\n",
        vec![closed(&["r0"])],
    );
    b.guard(&[GuardVerdict { heads: 2, refused: false }]);
    b.one(
        class,
        "pipe/connection-close",
        cat(&[b"GET /CCCC/r0 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", &get(1)]),
        vec![closed(&["r0"])],
    );
    b.guard(&[GuardVerdict { heads: 2, refused: false }]);

    // An upgrade the backend declines (it answers 200, not 101): the connection
    // stays HTTP/1 and every later request is checked as before.
    let upgrade = b"GET /CCCC/r0 HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n".to_vec();
    let smuggle_cl_te = cat(&[
        b"POST /CCCC/r1 HTTP/1.1\r\nHost: a\r\nContent-Length: ",
        (5 + SMUGGLED.len()).to_string().as_bytes(),
        b"\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        SMUGGLED,
    ]);
    let after_upgrade: Vec<(&str, Vec<u8>, &'static [u16])> = vec![
        ("cl-te", smuggle_cl_te.clone(), BAD),
        ("duplicate-cl", post(1, b"Content-Length: 5\r\nContent-Length: 6\r\n", b"hello!"), BAD),
        ("te-http10", b"POST /CCCC/r1 HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".to_vec(), BAD_TE),
        ("obs-fold", b"GET /CCCC/r1 HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n".to_vec(), BAD),
        (
            "head-too-large",
            {
                let mut big = b"GET /CCCC/r1 HTTP/1.1\r\nHost: a\r\nX-Big: ".to_vec();
                big.resize(64 * 1024 + 4, b'a');
                big
            },
            TOO_LARGE,
        ),
    ];
    for (name, second, statuses) in after_upgrade {
        b.add(
            class,
            format!("pipe/declined-upgrade-then-{name}"),
            vec![upgrade.clone(), second],
            vec![refused(&["r0"], statuses)],
        );
    }
    // The same, in one segment.
    b.one(
        class,
        "pipe/declined-upgrade-then-cl-te-pipelined",
        cat(&[&upgrade, &smuggle_cl_te]),
        vec![refused(&["r0"], BAD)],
    );
    // A declined upgrade, then ordinary requests: still served.
    b.add(class, "pipe/declined-upgrade-then-get", vec![upgrade.clone(), get(1)], vec![fwd(&["r0", "r1"])]);
}

fn look_alikes(b: &mut Builder) {
    let class = Class::LookAlike;
    let r1 = get(1);
    // The token `upgrade` or the Upgrade field only in look-alike spellings: no
    // protocol switch, so the smuggling shape after it is still refused.
    let smuggle = cat(&[
        b"POST /CCCC/r1 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    ]);
    for (name, fields) in [
        ("upgrade-underscore", "Connection: Upgrade\r\nUpgrade_: websocket\r\n"),
        ("connection-underscore", "Connection_: Upgrade\r\nUpgrade: websocket\r\n"),
        ("connection-token-lookalike", "Connection: Upgrade_\r\nUpgrade: websocket\r\n"),
        ("upgrade-without-connection", "Upgrade: websocket\r\n"),
        ("connection-without-upgrade", "Connection: Upgrade\r\n"),
        ("x-connection", "X-Connection: Upgrade\r\nUpgrade: websocket\r\n"),
    ] {
        let first = format!("GET /CCCC/r0 HTTP/1.1\r\nHost: a\r\n{fields}\r\n");
        b.add(
            class,
            format!("look/{name}-then-cl-te"),
            vec![first.into_bytes(), smuggle.clone()],
            vec![refused(&["r0"], BAD)],
        );
    }
    // Hop-by-hop and Host spellings: a plain field, or refused; never honoured.
    let forwarded_or_refused: &[(&str, &str)] = &[
        ("keep-alive-underscore", "Keep_Alive: timeout=5\r\n"),
        ("proxy-connection", "Proxy-Connection: keep-alive\r\n"),
        ("proxy-connection-underscore", "Proxy_Connection: keep-alive\r\n"),
        ("keep-alive", "Keep-Alive: timeout=5\r\n"),
        ("te-trailers", "TE: trailers\r\n"),
        ("connection-names-x", "Connection: X-Hop\r\nX-Hop: 1\r\n"),
        ("host-lookalike-underscore", "Host_: b\r\n"),
        ("host-lookalike-x-forwarded", "X-Forwarded-Host: b\r\n"),
    ];
    for (name, fields) in forwarded_or_refused {
        let first = format!("GET /CCCC/r0 HTTP/1.1\r\nHost: a\r\n{fields}\r\n");
        b.one(
            class,
            format!("look/{name}"),
            cat(&[first.as_bytes(), &r1]),
            vec![fwd(&["r0", "r1"]), refused(&[], BAD)],
        );
    }
    // A client naming framing fields as hop-by-hop: the backend must still get a
    // correctly framed request.
    for (name, token) in [
        ("connection-names-content-length", "Content-Length"),
        ("connection-names-transfer-encoding", "Transfer-Encoding"),
        ("connection-names-host", "Host"),
    ] {
        let fields = format!("Connection: {token}\r\nTransfer-Encoding: chunked\r\n");
        let te = cat(&[&post(0, fields.as_bytes(), &chunked(SMUGGLED)), &r1]);
        b.one(class, format!("look/{name}/chunked"), te, vec![fwd(&["r0", "r1"]), refused(&[], BAD)]);
        let fields = format!("Connection: {token}\r\nContent-Length: {}\r\n", SMUGGLED.len());
        let fixed = cat(&[&post(0, fields.as_bytes(), SMUGGLED), &r1]);
        b.one(class, format!("look/{name}/fixed"), fixed, vec![fwd(&["r0", "r1"]), refused(&[], BAD)]);
    }
    let host: &[(&str, &[u8], bool)] = &[
        ("duplicate-equal", b"Host: a\r\nHost: a\r\n", false),
        ("duplicate-differing", b"Host: a\r\nHost: b\r\n", false),
        ("duplicate-case", b"Host: a\r\nhost: b\r\n", false),
        ("space-inside", b"Host: a b\r\n", false),
        ("space-before-colon", b"Host : a\r\n", false),
        ("first-field-leading-space", b" Host: a\r\n", false),
        ("comma-list", b"Host: a, b\r\n", false),
        ("at-sign", b"Host: user@a\r\n", false),
        ("ows-around", b"Host:  a \r\n", true),
        ("with-port", b"Host: a:80\r\n", true),
    ];
    for (name, fields, ok) in host {
        let first = cat(&[b"GET /CCCC/r0 HTTP/1.1\r\n", fields, b"\r\n"]);
        let outcomes = if *ok { vec![fwd(&["r0", "r1"])] } else { vec![refused(&[], BAD)] };
        b.one(class, format!("look/host-{name}"), cat(&[&first, &r1]), outcomes);
        // Refusals of a Host value come from the proxy, after the guard passed the head.
        if *name == "space-inside" || *name == "comma-list" || *name == "at-sign" {
            b.guard(&[GuardVerdict { heads: 2, refused: false }, GuardVerdict { heads: 0, refused: true }]);
        }
    }
    // Absolute form: the authority is the host (RFC 9112 section 3.2.2).
    b.one(
        class,
        "look/absolute-form-other-host",
        cat(&[b"GET http://a/CCCC/r0 HTTP/1.1\r\nHost: b\r\n\r\n", &r1]),
        vec![fwd(&["r0", "r1"]), refused(&[], BAD)],
    );
    b.one(
        class,
        "look/http10-without-host",
        cat(&[b"GET /CCCC/r0 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"]),
        vec![fwd(&["r0"]), closed(&["r0"])],
    );
}

/// What the client sees of the backend's answers.
fn answers(b: &mut Builder) {
    // The recording backend answers `/v10` requests with an `HTTP/1.0` status
    // line; an HTTP/1.1 client must still get an HTTP/1.1 response.
    b.one(
        Class::Answer,
        "answer/backend-http10-status",
        cat(&[b"GET /CCCC/v10 HTTP/1.1\r\nHost: a\r\n\r\n"]),
        vec![fwd(&["v10"]), closed(&["v10"])],
    );
}

/// Every case, in a fixed order.
pub fn all() -> Vec<Case> {
    let mut b = Builder { cases: Vec::new() };
    transfer_encoding(&mut b);
    content_length(&mut b);
    line_endings(&mut b);
    pipelined(&mut b);
    look_alikes(&mut b);
    answers(&mut b);
    let mut names = std::collections::HashSet::new();
    for c in &b.cases {
        assert!(names.insert(c.name.clone()), "duplicate case name {}", c.name);
        assert!(c.bytes().windows(MARK.len()).any(|w| w == MARK), "{} has no marked target", c.name);
    }
    b.cases
}

/// `bytes` with every [`MARK`] replaced by `/NNNN/`.
pub fn with_index(bytes: &[u8], index: usize) -> Vec<u8> {
    let id = format!("/{index:04}/");
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i..].starts_with(MARK) {
            out.extend_from_slice(id.as_bytes());
            i += MARK.len();
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    out
}
