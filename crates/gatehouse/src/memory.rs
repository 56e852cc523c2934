//! Freed memory back to the system: idle connections free hyper's buffers when
//! they park (`connection::serve`), but glibc's malloc keeps freed chunks
//! resident while live objects sit around them (each connection's own small
//! state, allocated at the same time). A thread of its own trims the heap at
//! most once a second, and only after some connection parked, so that a busy
//! worker never waits on it and a quiet process does nothing.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

static PARKED: AtomicBool = AtomicBool::new(false);

/// A connection parked: its buffers were freed.
pub fn parked() {
    PARKED.store(true, Ordering::Relaxed);
}

/// Starts the trimming thread.
pub fn start() -> std::io::Result<()> {
    std::thread::Builder::new().name("gatehouse-trim".into()).spawn(|| loop {
        std::thread::sleep(Duration::from_secs(1));
        if PARKED.swap(false, Ordering::Relaxed) {
            kcd::release_free_memory();
        }
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    fn rss_kib() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    /// The shape idle connections leave: 8 KiB buffers freed among small live
    /// objects. Freeing alone leaves them resident; the trim gives them back.
    #[test]
    fn freed_buffers_among_live_objects_leave_the_process_when_trimmed() {
        let handle = std::thread::spawn(|| {
            let mut live = Vec::new();
            let mut buffers = Vec::new();
            for _ in 0..8192 {
                buffers.push(vec![1u8; 8192]);
                live.push(Box::new([2u8; 64]));
            }
            let full = rss_kib();
            drop(buffers);
            let freed = rss_kib();
            kcd::release_free_memory();
            let trimmed = rss_kib();
            drop(live);
            (full, freed, trimmed)
        });
        let (full, freed, trimmed) = handle.join().unwrap();
        // 64 MiB of buffers: most of it stays resident after free, and goes with the trim.
        assert!(freed + 16 * 1024 > full, "glibc returned the buffers by itself: {full} -> {freed} KiB");
        assert!(trimmed + 32 * 1024 < freed, "the trim gave back too little: {freed} -> {trimmed} KiB");
    }
}
