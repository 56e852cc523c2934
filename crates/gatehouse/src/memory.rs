//! Freed memory back to the system: idle connections free hyper's buffers when
//! they park (`connection::serve`). Rust's allocations go to jemalloc
//! (`main.rs`), which purges freed pages by itself about a second after they
//! are freed (its background thread, `.cargo/config.toml`). The C libraries
//! (MIT krb5, aws-lc, SQLite) still allocate from glibc's malloc, which keeps
//! freed chunks resident while live objects sit around them; for those, a
//! thread of its own trims glibc's heap at most once a second, and only after
//! some connection parked, so that a busy worker never waits on it and a quiet
//! process does nothing.

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

#[cfg(all(test, feature = "jemalloc"))]
mod tests {
    use testkit::heap::{buffers_among_live_objects, rss_kib, run_alone};

    /// The shape idle connections leave: 8 KiB buffers freed among small live
    /// objects. glibc kept such buffers resident until `malloc_trim`; jemalloc,
    /// as configured, gives them back by itself within about a second. Fails
    /// if the build lost jemalloc's settings (no background thread, the default
    /// ten-second decay) or the allocator. Measured alone, in a process of its
    /// own (`run_alone`): RSS is the whole process's.
    #[test]
    fn freed_buffers_among_live_objects_leave_the_process_by_themselves() {
        run_alone("memory::tests::measured_alone", "GATEHOUSE_MEMORY_ALONE");
    }

    #[test]
    #[ignore = "run alone by freed_buffers_among_live_objects_leave_the_process_by_themselves"]
    fn measured_alone() {
        if std::env::var_os("GATEHOUSE_MEMORY_ALONE").is_none() {
            return;
        }
        let (buffers, live) = buffers_among_live_objects();
        let full = rss_kib();
        drop(buffers);
        // Nothing but the RSS reads allocates from here on (a few small
        // blocks): what returns the pages is jemalloc's background thread.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let mut now = rss_kib();
        while now + 32 * 1024 > full && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(100));
            now = rss_kib();
        }
        drop(live);
        // 64 MiB of buffers: at least half of it must have left within 5 s.
        assert!(now + 32 * 1024 <= full, "freed buffers stayed resident: {full} -> {now} KiB after 5 s");
    }
}
