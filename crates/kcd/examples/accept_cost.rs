//! What accepting one client's AP-REQ costs inside kcd, without HTTP around it
//! (issue 20, goal 4: where a Kerberos request's time goes). Needs the lab
//! (`lab/lab.sh start`):
//!
//!   . /tmp/gatehouse-lab/env && cargo run --release -p kcd --example accept_cost [N]
//!
//! makes N (default 4,000) fresh SPNEGO-less AP-REQs for alice (kinit with
//! her password into a cache of its own; MIT's client, mutual authentication
//! asked, as a browser does) before any timing, then accepts all of them with
//! an accept-only delegator, which takes the quick acceptor (one long-lived
//! krb5 context on this thread), and all of a second set with the
//! delegator's TGT and no user cached, which takes MIT's GSS layer
//! (`gss_accept_sec_context`, evidence built). Prints the CPU time of this
//! thread per acceptance for each, with the counters that say which path
//! took them.

use std::io::Write;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use libgssapi::context::{ClientCtx, CtxFlags};
use libgssapi::credential::{Cred, CredUsage};
use libgssapi::name::Name;
use libgssapi::oid::{GSS_MECH_KRB5, GSS_NT_KRB5_PRINCIPAL};

const SPN: &str = "HTTP/proxy.ad.test";

fn thread_cpu() -> Duration {
    // schedstat's first field: nanoseconds this thread ran on a CPU (finer
    // than the clock ticks of /proc/thread-self/stat).
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").expect("schedstat");
    Duration::from_nanos(stat.split_whitespace().next().unwrap().parse().unwrap())
}

fn tokens(cred: &Cred, n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|_| {
            let target = Name::new(format!("{SPN}@AD.TEST").as_bytes(), Some(GSS_NT_KRB5_PRINCIPAL)).unwrap();
            let mut ctx = ClientCtx::new(Some(cred.clone()), target, CtxFlags::GSS_C_MUTUAL_FLAG, Some(GSS_MECH_KRB5));
            ctx.step(None, None).unwrap().unwrap().to_vec()
        })
        .collect()
}

fn run(label: &str, d: &kcd::Delegator, tokens: &[Vec<u8>]) {
    let start = thread_cpu();
    for t in tokens {
        d.accept(t, SPN, None).expect("accepted");
    }
    let per = (thread_cpu() - start).as_secs_f64() * 1e6 / tokens.len() as f64;
    let s = d.stats();
    println!(
        "{label}: {per:.1} us of CPU per acceptance ({} tokens; quick {}, left to GSS {}, evidence {})",
        tokens.len(),
        s.quick.load(Relaxed),
        s.quick_declined.load(Relaxed),
        s.evidence.load(Relaxed)
    );
}

fn main() {
    let n: usize = std::env::args().nth(1).map_or(4000, |a| a.parse().expect("N"));
    let keytab = std::env::var("LAB_PROXY_KEYTAB").expect("the lab's env (. /tmp/gatehouse-lab/env)");
    let dir = tempfile::tempdir().unwrap();
    std::env::set_var("KRB5CCNAME", format!("FILE:{}", dir.path().join("alice.cc").display()));
    let mut kinit =
        std::process::Command::new("kinit").arg("alice@AD.TEST").stdin(std::process::Stdio::piped()).spawn().unwrap();
    kinit.stdin.take().unwrap().write_all(b"Alice-Pass1\n").unwrap();
    assert!(kinit.wait().unwrap().success(), "kinit alice");
    let alice = Cred::acquire(None, None, CredUsage::Initiate, None).unwrap();

    let quick = kcd::Delegator::new("svc-proxy@AD.TEST", &keytab, "AD.TEST");
    let set = tokens(&alice, n);
    run("quick acceptor (accept-only, long-lived krb5 context)", &quick, &set);

    // The "both" credential with no user cached: every ticket through MIT's
    // GSS layer, which builds evidence (kept once per user, so the first).
    let gss = std::sync::Arc::new(kcd::Delegator::new("svc-proxy@AD.TEST", &keytab, "AD.TEST"));
    gss.start(Duration::from_secs(10)).unwrap();
    let set = tokens(&alice, n);
    run("MIT's GSS layer (gss_accept_sec_context with the acceptor's TGT)", &gss, &set);
}
