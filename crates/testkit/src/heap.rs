//! Heap checks for the memory tests of gatehouse (jemalloc) and kcd (glibc's
//! trim): the shape idle connections leave, the process's RSS, and a way to
//! measure it with no other test running beside.

/// The process's resident set, in KiB (`VmRSS`; 0 where it cannot be read).
pub fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").parse().ok())
        .unwrap_or(0)
}

/// What idle connections leave behind: 64 MiB of 8 KiB buffers, about to be
/// freed, allocated among small objects that stay live.
pub fn buffers_among_live_objects() -> (Vec<Vec<u8>>, Vec<Box<[u8; 64]>>) {
    let mut buffers = Vec::new();
    let mut live = Vec::new();
    for _ in 0..8192 {
        buffers.push(vec![1u8; 8192]);
        live.push(Box::new([2u8; 64]));
    }
    (buffers, live)
}

/// Runs the test `name` (its full path in the test binary) alone, in a new
/// process of the running test binary, with `env` set so that the test knows
/// it is the one asked for; panics with its output unless it ran and passed.
/// RSS is the whole process's, and the other tests of a binary allocate beside
/// each other.
pub fn run_alone(name: &str, env: &str) {
    let exe = std::env::current_exe().expect("the test binary's path");
    let out = std::process::Command::new(exe)
        .args(["--exact", name, "--ignored", "--nocapture", "--test-threads=1"])
        .env(env, "1")
        .output()
        .expect("the test binary runs again");
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the measurement failed:\n{said}");
    assert!(said.contains("1 passed"), "the measurement did not run:\n{said}");
}
