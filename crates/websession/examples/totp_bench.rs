//! TOTP verifications per second on one core (bench/run.sh BENCH_ONLY=totp,
//! or `cargo run --release -p websession --example totp_bench`): each call
//! computes the three candidate steps' HMAC-SHA-1 and compares all three, as
//! every check does, right code or wrong.

use std::time::Instant;

use websession::totp;

fn main() {
    let secret = [0x5au8; totp::SECRET_LEN];
    let now = 1_764_000_000u64;
    let right = totp::code(&secret, totp::step_at(now));
    let n: u64 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(1_000_000);
    for (what, code) in [("right code", right.as_str()), ("wrong code", "000000")] {
        let start = Instant::now();
        let mut passed = 0u64;
        for i in 0..n {
            // A different time each round, so nothing is hoisted out of the loop.
            if totp::verify(&secret, code, std::hint::black_box(now + (i & 1)), None).is_ok() {
                passed += 1;
            }
        }
        let s = start.elapsed().as_secs_f64();
        println!("{what}: {n} verifications in {s:.3} s = {:.0} per second (passed {passed})", n as f64 / s);
    }
}
