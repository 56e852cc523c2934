//! The delegated-credential cache alone with many users: its memory curve
//! (issue 20, goal 5). `BENCH_ONLY=cache bench/run.sh`, or
//!
//!   cargo run --release -p kcd --example cache_memory [USERS [BOUND]]
//!
//! fills `kcd::cred_cache::Lru`, the structure the delegator keeps its users
//! in, with USERS synthetic users (default 100,000) bounded to BOUND users
//! (default 50,000, `credential_cache_size`'s default; BOUND = USERS for no
//! eviction), and prints the process's RSS at 1,000, 10,000, 50,000 and
//! 100,000 users (and USERS, if other).
//!
//! An entry holds what a real one holds, as allocations of the lab's sizes,
//! since no KDC is asked here: the key (`perf00042@AD.TEST`), MIT's
//! credential (its memory ccache: a copy of the service's TGT, the S4U2Self
//! ticket, and the S4U2Proxy ticket for one backend with the S4U2Self ticket
//! again as its second ticket, each with the session key, two principals and
//! MIT's structures around it; see `TICKET`), and the user's logon
//! (`kcd::Logon`: identity and eight groups, as `[access]` rules keep it).
//! That is the data; the lab benchmark (`BENCH_ONLY=users`) measures the
//! real process with 1,000 users, where MIT's and glibc's own overhead comes
//! on top (docs/performance.md). This one shows the shape beyond: linear up
//! to the bound, flat after it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kcd::cred_cache::Lru;
use kcd::{GroupRid, Logon, LogonInfo, Sid, User};
use testkit::heap::rss_kib;

/// Bytes of one ticket as the lab's KDC issues it to a user of a few groups
/// (the ASN.1 ticket with its encrypted part and PAC): a ccache file grew by
/// 1,258 bytes for `kvno -U perf00002 svc-proxy` (the ticket, its key, two
/// principals), and by 2,571 for the S4U2Proxy ticket that carries the
/// S4U2Self ticket as its second (docs/performance.md).
const TICKET: usize = 1_150;

/// The tickets of one user's credential: the TGT copy, the S4U2Self ticket,
/// the S4U2Proxy ticket and its second ticket; three credentials around them.
const TICKETS: usize = 4;
const CREDS: usize = 3;

/// What MIT allocates around each ticket in a memory ccache: the
/// `krb5_creds` (about 200 bytes), two principals (about 100 bytes each with
/// their components), the session key (32), the ccache's list node (32).
const AROUND_TICKET: [usize; 5] = [200, 100, 100, 32, 32];

/// The GSSAPI credential record and the impersonated name.
const CRED_RECORD: [usize; 2] = [320, 64];

struct Entry {
    _mit: Vec<Box<[u8]>>,
    _logon: Arc<Logon>,
    until: Instant,
}

fn piece(len: usize, seed: usize) -> Box<[u8]> {
    // Written, not only allocated: RSS counts pages touched.
    (0..len).map(|i| (i ^ seed) as u8).collect()
}

fn entry(i: usize) -> Entry {
    let mut mit = Vec::new();
    for ticket in 0..TICKETS {
        mit.push(piece(TICKET, i + ticket));
    }
    for _ in 0..CREDS {
        for &len in &AROUND_TICKET {
            mit.push(piece(len, i));
        }
    }
    for &len in &CRED_RECORD {
        mit.push(piece(len, i));
    }
    let domain = Sid::parse("S-1-5-21-1004336348-1177238915-682003330").expect("a SID");
    let groups = [513u32, 1104, 1105, 1106, 1107, 1108, 1109, 1110]
        .into_iter()
        .map(|rid| GroupRid { rid, attributes: 7 })
        .collect();
    let info = LogonInfo {
        account: format!("perf{i:05}"),
        full_name: String::new(),
        logon_domain: "ADTEST".into(),
        logon_server: "DC1".into(),
        domain_sid: domain,
        user_rid: 2000 + i as u32,
        primary_group_rid: 513,
        user_flags: 0,
        groups,
        extra_sids: Vec::new(),
        resource_domain: None,
        resource_groups: Vec::new(),
    };
    Entry { _mit: mit, _logon: Arc::new(Logon::new(info)), until: Instant::now() + Duration::from_secs(36_000) }
}

fn entry_bytes() -> usize {
    TICKETS * TICKET + CREDS * AROUND_TICKET.iter().sum::<usize>() + CRED_RECORD.iter().sum::<usize>()
}

fn curve(users: usize, bound: usize, marks: &[usize]) {
    let base = rss_kib();
    let mut cache: Lru<User, Entry> = Lru::new(bound);
    let start = Instant::now();
    let mut added = 0;
    let label = if bound >= users { "unbounded".to_owned() } else { format!("bound {bound}") };
    for &mark in marks {
        while added < mark {
            cache.insert(User::Account(format!("perf{added:06}@AD.TEST")), entry(added));
            added += 1;
        }
        let grown = rss_kib().saturating_sub(base);
        let held = cache.stats().entries;
        println!(
            "{label}: {mark} users inserted, {held} held, {} evicted: RSS +{grown} KiB, {:.2} KiB per user held",
            cache.stats().evictions,
            grown as f64 / held as f64
        );
    }
    let fill = start.elapsed();
    // A lookup of a held user, as a request for them makes it.
    let now = Instant::now();
    let lookups = 200_000;
    let t = Instant::now();
    let mut found = 0;
    for k in 0..lookups {
        let i = added - 1 - (k % cache.stats().entries);
        found += cache.get(&User::Account(format!("perf{i:06}@AD.TEST")), |e| e.until > now).is_some() as usize;
    }
    assert_eq!(found, lookups, "every looked-up user is held");
    println!(
        "{label}: filled in {:.2} s; a hit with {} users held: {:.0} ns (the key's formatting included)",
        fill.as_secs_f64(),
        cache.stats().entries,
        t.elapsed().as_nanos() as f64 / lookups as f64
    );
}

fn main() {
    let mut args = std::env::args().skip(1);
    let users: usize = args.next().map_or(100_000, |a| a.parse().expect("USERS: a number"));
    let bound: usize = args.next().map_or(kcd::DEFAULT_CACHE_SIZE, |a| a.parse().expect("BOUND: a number"));
    let mut marks: Vec<usize> = [1_000, 10_000, 50_000, 100_000].into_iter().filter(|&m| m < users).collect();
    marks.push(users);
    println!(
        "synthetic entry: {} bytes of MIT credential in {} allocations, plus the logon (8 groups) and the key",
        entry_bytes(),
        TICKETS + CREDS * AROUND_TICKET.len() + CRED_RECORD.len()
    );
    // One curve per process: memory freed by one run would be reused by the
    // next and hide its growth.
    curve(users, bound, &marks);
}
