//! The framing guard's cost per request head, for a small anonymous head and
//! for the 2.3 KB head of a Kerberos client (an SPNEGO AP-REQ in
//! `Authorization`): `cargo run --release -p httpguard --example head_scan`.
use std::time::Instant;

use httpguard::framing::RequestStream;

fn main() {
    let small = b"GET /bytes/1024 HTTP/1.1\r\nHost: proxy.ad.test\r\nUser-Agent: gh-load\r\n\r\n".to_vec();
    let token = "YIIH".repeat(560);
    let large = format!(
        "GET /bytes/1024 HTTP/1.1\r\nHost: proxy.ad.test\r\nUser-Agent: gh-load\r\nAuthorization: Negotiate {token}\r\n\r\n"
    )
    .into_bytes();
    for (name, head) in [("small", &small), ("kerberos", &large)] {
        let rounds = 200_000u32;
        let mut guard = RequestStream::new(64 * 1024, 100);
        let start = Instant::now();
        for _ in 0..rounds {
            let n = guard.advance(head).expect("a valid head");
            assert_eq!(n, head.len());
        }
        let ns = start.elapsed().as_nanos() as f64 / rounds as f64;
        println!("{name}: {} bytes, {ns:.0} ns per head", head.len());
    }
}
