//! `gh-exchange ADDR KEYTAB SPN REALM`: the Exchange-like, Kerberos-only test
//! backend (`testkit::exchange`) as a process, for the benchmarks.

#![forbid(unsafe_code)]

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [addr, keytab, spn, realm] = args.as_slice() else {
        eprintln!("usage: gh-exchange ADDR KEYTAB SPN REALM");
        std::process::exit(2)
    };
    let Ok(addr) = addr.parse() else {
        eprintln!("gh-exchange: `{addr}` is not ADDR:PORT");
        std::process::exit(2)
    };
    match testkit::exchange::ExchangeBackend::start_on(addr, keytab, spn, realm).await {
        Ok(b) => eprintln!("gh-exchange listening on http://{}", b.addr),
        Err(e) => {
            eprintln!("gh-exchange: cannot bind {addr}: {e}");
            std::process::exit(1)
        }
    }
    std::future::pending::<()>().await;
}
