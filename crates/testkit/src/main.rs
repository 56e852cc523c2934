//! `gh-backend [ADDR...]`: the testkit backend as a process, for the demo and
//! the benchmarks. Default address 127.0.0.1:18081. Several addresses: one
//! process serving each (the benchmark's farm of three origins with the
//! backend CPU of one).

#![forbid(unsafe_code)]

#[tokio::main]
async fn main() {
    let mut addrs: Vec<String> = std::env::args().skip(1).collect();
    if addrs.is_empty() {
        addrs.push("127.0.0.1:18081".into());
    }
    for addr in addrs {
        let Ok(addr) = addr.parse() else {
            eprintln!("usage: gh-backend [ADDR:PORT...]");
            std::process::exit(2);
        };
        // No per-request record: this binary serves the demo and the benchmarks.
        match testkit::Backend::start_unrecorded(addr).await {
            Ok(b) => eprintln!("gh-backend listening on http://{}", b.addr),
            Err(e) => {
                eprintln!("gh-backend: cannot bind {addr}: {e}");
                std::process::exit(1);
            }
        }
    }
    std::future::pending::<()>().await;
}
