//! `gh-backend [ADDR]`: the testkit backend as a process, for the demo and the
//! benchmarks. Default address 127.0.0.1:18081.

#![forbid(unsafe_code)]

#[tokio::main]
async fn main() {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:18081".into());
    let addr = match addr.parse() {
        Ok(a) => a,
        Err(_) => {
            eprintln!("usage: gh-backend [ADDR:PORT]");
            std::process::exit(2);
        }
    };
    // No per-request record: this binary serves the demo and the benchmarks.
    match testkit::Backend::start_unrecorded(addr).await {
        Ok(b) => eprintln!("gh-backend listening on http://{}", b.addr),
        Err(e) => {
            eprintln!("gh-backend: cannot bind {addr}: {e}");
            std::process::exit(1);
        }
    }
    std::future::pending::<()>().await;
}
