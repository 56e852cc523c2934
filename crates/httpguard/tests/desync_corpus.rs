//! The desync corpus (shared with gatehouse's end-to-end test) through the
//! framing guard alone: its verdict on every case, the invariants that must hold
//! however the bytes are split, the same for deterministic mutations of every
//! case, and the fuzz seeds made from the corpus.

#[path = "../../gatehouse/tests/data/desync/cases.rs"]
mod cases;

use std::path::PathBuf;

use cases::{Case, GuardVerdict};
use httpguard::framing::fuzz_one;
use httpguard::{Reject, RequestStream};

/// Cases where the guard alone decides otherwise today, with the defect.
const KNOWN_OPEN: &[&str] = &[];

/// What the stream made of some bytes.
#[derive(Debug, Clone)]
struct Run {
    heads: usize,
    accepted: usize,
    refused: Option<Reject>,
    /// Offsets where the accepted heads start.
    head_starts: Vec<usize>,
    /// Whether the refusal came at a request boundary (a head was refused).
    refused_head: bool,
    /// Offsets at which the stream stood between requests.
    boundaries: Vec<usize>,
}

/// Feeds `input` in pieces that end at `cuts`, holding back what is not yet
/// accepted, as `GuardedIo` does.
fn run(input: &[u8], cuts: &[usize]) -> Run {
    let mut s = RequestStream::default();
    let mut r = Run {
        heads: 0,
        accepted: 0,
        refused: None,
        head_starts: Vec::new(),
        refused_head: false,
        boundaries: Vec::new(),
    };
    let mut available = 0;
    for &cut in cuts.iter().chain(std::iter::once(&input.len())) {
        available = available.max(cut.min(input.len()));
        loop {
            // Every upgrade in the corpus is declined (its backend never
            // switches), as the proxy then tells the stream.
            if s.awaiting_upgrade_answer() {
                s.upgrade_answered(false);
                if s.at_request_boundary() {
                    r.boundaries.push(r.accepted);
                }
            }
            let boundary = s.at_request_boundary();
            match s.advance(&input[r.accepted..available]) {
                Ok(0) => break,
                Ok(n) => {
                    let taken = &input[r.accepted..r.accepted + n];
                    if boundary && !taken.iter().all(|&b| b == b'\r' || b == b'\n') {
                        r.heads += 1;
                        r.head_starts.push(r.accepted);
                    }
                    r.accepted += n;
                    if s.at_request_boundary() {
                        r.boundaries.push(r.accepted);
                    }
                }
                Err(e) => {
                    r.refused = Some(e);
                    r.refused_head = boundary;
                    return r;
                }
            }
        }
    }
    r
}

impl Run {
    /// What must not depend on how the bytes were split (the boundaries inside
    /// a run of blank lines may).
    fn key(&self) -> (usize, usize, Option<Reject>, Vec<usize>, bool) {
        (self.heads, self.accepted, self.refused.clone(), self.head_starts.clone(), self.refused_head)
    }
}

/// Requests accepted in full: a request refused inside its body does not count
/// (its head was accepted, but the request never completes).
fn verdict(r: &Run) -> GuardVerdict {
    let in_body = r.refused.is_some() && !r.refused_head;
    GuardVerdict { heads: r.heads - usize::from(in_body), refused: r.refused.is_some() }
}

/// The invariants of one run, whatever the bytes.
fn check_invariants(name: &str, input: &[u8], r: &Run) {
    assert!(r.accepted <= input.len(), "{name}: accepted more than given");
    if r.refused_head {
        // A refused head was not accepted in part: the accepted bytes end where
        // the stream stood between requests.
        assert!(
            r.accepted == 0 || r.boundaries.contains(&r.accepted),
            "{name}: a head was refused after {} of its bytes were accepted",
            r.accepted
        );
    } else if r.refused.is_some() {
        // Refused inside a body: that body's head was accepted.
        assert!(r.head_starts.last().is_some_and(|&s| s < r.accepted), "{name}: a body refused without a head");
    }
    for w in r.head_starts.windows(2) {
        assert!(w[0] < w[1], "{name}: heads out of order");
    }
}

/// Cuts that feed `len` bytes in pieces of `piece`.
fn pieces(len: usize, piece: usize) -> Vec<usize> {
    (piece..len).step_by(piece).collect()
}

/// Splits to try: whole, byte by byte, and in two at every offset. The big
/// cases (over the head limit) in 1000-byte pieces and at 64 offsets instead:
/// an unfinished head is searched again on every feed, so bytewise they would
/// cost seconds each.
fn splittings(len: usize) -> Vec<Vec<usize>> {
    let small = len <= 4096;
    let mut out = vec![vec![], pieces(len, if small { 1 } else { 1000 })];
    let stride = if small { 1 } else { len / 64 };
    out.extend((1..len).step_by(stride).map(|i| vec![i]));
    out
}

#[test]
fn every_case_frames_the_same_however_split_and_as_expected() {
    let mut unexpected = Vec::new();
    let mut still_open = Vec::new();
    for case in cases::all() {
        let input = case.bytes();
        let whole = run(&input, &[]);
        for cuts in splittings(input.len()) {
            let r = run(&input, &cuts);
            check_invariants(&case.name, &input, &r);
            assert_eq!(
                r.key(),
                whole.key(),
                "{}: split at {:?} changed the verdict",
                case.name,
                &cuts[..cuts.len().min(4)]
            );
        }
        // No accepted head is one the case puts inside a body.
        for &start in &whole.head_starts {
            assert!(
                !input[start..].starts_with(b"GET /CCCC/smuggled"),
                "{}: a smuggled request was framed as a head at {start}",
                case.name
            );
        }
        let ok = case.guard.contains(&verdict(&whole));
        let known = KNOWN_OPEN.contains(&case.name.as_str());
        match (ok, known) {
            (false, false) => unexpected.push(format!(
                "{}: {:?} ({:?}), wanted one of {:?}",
                case.name,
                verdict(&whole),
                whole.refused,
                case.guard
            )),
            (true, true) => still_open.push(case.name.clone()),
            _ => {}
        }
    }
    assert!(unexpected.is_empty(), "unexpected guard verdicts:\n{}", unexpected.join("\n"));
    assert!(still_open.is_empty(), "these pass now; remove them from KNOWN_OPEN: {still_open:?}");
}

#[test]
fn known_open_names_are_cases() {
    let names: Vec<String> = cases::all().into_iter().map(|c| c.name).collect();
    for n in KNOWN_OPEN {
        assert!(names.iter().any(|c| c == n), "{n} is no case");
    }
}

/// Deterministic mutations of a case: a byte flipped, dropped, doubled, or set
/// to one of the bytes parsers disagree on; a line end rewritten.
fn mutants(case: &Case, seed: &mut u64, count: usize) -> Vec<Vec<u8>> {
    let input = case.bytes();
    let mut out = Vec::new();
    if input.is_empty() {
        return out;
    }
    const NASTY: &[u8] = b"\r\n\t \x00\x0b\x0c\x7f:,;0-+_\xff";
    for _ in 0..count {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        let at = (*seed >> 8) as usize % input.len();
        let pick = NASTY[(*seed >> 40) as usize % NASTY.len()];
        let mut m = input.clone();
        match *seed % 5 {
            0 => m[at] ^= 1 << ((*seed >> 20) % 8),
            1 => {
                m.remove(at);
            }
            2 => m.insert(at, m[at]),
            3 => m[at] = pick,
            _ => {
                if let Some(lf) = m[at..].iter().position(|&b| b == b'\n') {
                    let i = at + lf;
                    if i > 0 && m[i - 1] == b'\r' {
                        m.remove(i - 1);
                    } else {
                        m.insert(i, b'\r');
                    }
                }
            }
        }
        out.push(m);
    }
    out
}

#[test]
fn mutated_cases_keep_the_invariants() {
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    for case in cases::all() {
        for (k, m) in mutants(&case, &mut seed, 24).into_iter().enumerate() {
            let name = format!("{} mutant {k}", case.name);
            let whole = run(&m, &[]);
            check_invariants(&name, &m, &whole);
            let bytewise = run(&m, &pieces(m.len(), if m.len() <= 4096 { 1 } else { 1000 }));
            assert_eq!(
                whole.key(),
                bytewise.key(),
                "{name}: bytewise feeding changed the verdict: {:?}",
                String::from_utf8_lossy(&m)
            );
            fuzz_one(&m);
        }
        fuzz_one(&case.bytes());
    }
}

/// Seed inputs for `cargo fuzz run request_framing`, one file per case.
/// They live in `fuzz/seeds/`, not `fuzz/corpus/`: libFuzzer writes what it
/// finds into the corpus directory (ignored by git), so committed seeds there
/// would drown among its files. Pass both: `cargo fuzz run request_framing
/// fuzz/corpus/request_framing fuzz/seeds/request_framing`.
fn seeds_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds/request_framing")
}

fn seed_name(case: &Case) -> String {
    case.name.replace('/', "-")
}

#[test]
fn fuzz_seeds_are_the_corpus() {
    let dir = seeds_dir();
    let cases = cases::all();
    if std::env::var_os("GATEHOUSE_WRITE_FUZZ_SEEDS").is_some() {
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for case in &cases {
            std::fs::write(dir.join(seed_name(case)), case.bytes()).unwrap();
        }
    }
    let regenerate = "regenerate with GATEHOUSE_WRITE_FUZZ_SEEDS=1 cargo test -p httpguard --test desync_corpus";
    let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}; {regenerate}", dir.display()))
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    on_disk.sort();
    let mut wanted: Vec<String> = cases.iter().map(seed_name).collect();
    wanted.sort();
    assert_eq!(on_disk, wanted, "the seed files are not the corpus; {regenerate}");
    for case in &cases {
        let bytes = std::fs::read(dir.join(seed_name(case))).unwrap();
        assert!(bytes == case.bytes(), "seed {} differs from its case; {regenerate}", seed_name(case));
    }
}
