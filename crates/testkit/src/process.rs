//! Child processes that cannot outlive their test.
//!
//! A test that starts a server must stop it however the test ends, and stop
//! everything the server started: a wrapper such as `faketime` forks and waits,
//! so killing the process the test spawned leaves the real server running,
//! reparented to init, still listening after its temporary folder is gone.
//! So each child runs in a process group of its own, and the guard kills the
//! whole group and reaps its child when it is dropped, on success and during
//! a panic's unwinding alike.

use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

pub struct Guarded {
    child: Option<Child>,
    /// The group's id: the child's pid, since the child leads its group.
    group: u32,
}

impl Guarded {
    /// Spawns `command` as the leader of a new process group.
    pub fn spawn(command: &mut Command) -> std::io::Result<Guarded> {
        use std::os::unix::process::CommandExt;
        let child = command.process_group(0).spawn()?;
        let group = child.id();
        Ok(Guarded { child: Some(child), group })
    }

    /// The child's pid (the process `signal` reaches).
    pub fn id(&self) -> u32 {
        self.group
    }

    /// The child, while it has not been reaped.
    pub fn child(&mut self) -> &mut Child {
        self.child.as_mut().expect("the child was already reaped")
    }

    /// Sends `sig` (as `kill` spells it: `-HUP`) to the child alone; its helpers
    /// in the group are left alone, as an operator's `kill` would leave them.
    pub fn signal(&self, sig: &str) {
        let pid = self.group.to_string();
        let ok = Command::new("kill").args([sig, &pid]).status().map(|s| s.success()).unwrap_or(false);
        assert!(ok, "kill {sig} {pid} failed");
    }

    /// The child's exit status if it has exited (reaping it), or None.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        let status = self.child.as_mut()?.try_wait().expect("try_wait")?;
        self.child = None;
        // The leader is gone; what it started must not stay behind it.
        self.kill_group();
        Some(status)
    }

    /// Waits up to `within` for the child to exit; panics if it does not.
    pub fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.try_wait() {
                return status;
            }
            assert!(start.elapsed() < within, "the child did not exit in {within:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn kill_group(&self) {
        // `kill` the command rather than kill(2): no unsafe outside kcd's FFI.
        // ESRCH (the group already empty) is the usual, harmless answer.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.group)])
            .stderr(std::process::Stdio::null())
            .status();
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            self.kill_group();
            // The group kill reached the child too; kill it directly as well
            // in case `kill` could not run, and reap it either way.
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// True while `pid` is a live process (not gone, not a zombie waiting for init).
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name, which is in parentheses.
        Ok(stat) => stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next()) != Some("Z"),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufRead;
    use std::process::Stdio;

    /// A wrapper that forks its real program and waits for it, as faketime does;
    /// returns the guard and the pid of the real program.
    fn forking_wrapper() -> (Guarded, u32) {
        let mut g = Guarded::spawn(Command::new("sh").args(["-c", "sleep 600 & echo $!; wait"]).stdout(Stdio::piped()))
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(g.child().stdout.take().unwrap()).read_line(&mut line).unwrap();
        let pid: u32 = line.trim().parse().unwrap();
        assert!(alive(pid));
        (g, pid)
    }

    fn gone_soon(pid: u32) -> bool {
        let start = Instant::now();
        while alive(pid) {
            if start.elapsed() > Duration::from_secs(5) {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        true
    }

    #[test]
    fn dropping_the_guard_kills_what_a_forking_wrapper_started() {
        let (g, pid) = forking_wrapper();
        let wrapper = g.id();
        drop(g);
        assert!(gone_soon(pid), "the wrapper's child {pid} outlived the guard");
        assert!(!alive(wrapper), "the wrapper {wrapper} was not reaped");
    }

    #[test]
    fn a_panicking_test_still_kills_and_reaps() {
        let (tx, rx) = std::sync::mpsc::channel();
        let test = std::thread::spawn(move || {
            let (g, pid) = forking_wrapper();
            tx.send((g.id(), pid)).unwrap();
            panic!("the test fails while its server runs");
        });
        assert!(test.join().is_err());
        let (wrapper, pid) = rx.recv().unwrap();
        assert!(gone_soon(pid), "the wrapper's child {pid} outlived a panicking test");
        assert!(!alive(wrapper), "the wrapper {wrapper} was not reaped");
    }

    #[test]
    fn a_child_that_exits_by_itself_takes_its_group_with_it() {
        // The leader exits (as gatehouse does after SIGTERM) and leaves a helper behind.
        let mut g =
            Guarded::spawn(Command::new("sh").args(["-c", "sleep 600 & echo $!"]).stdout(Stdio::piped())).unwrap();
        let mut line = String::new();
        std::io::BufReader::new(g.child().stdout.take().unwrap()).read_line(&mut line).unwrap();
        let pid: u32 = line.trim().parse().unwrap();
        assert!(g.wait_exit(Duration::from_secs(5)).success());
        assert!(gone_soon(pid), "the helper {pid} outlived its leader's exit");
    }

    #[test]
    fn signals_reach_the_child_alone() {
        let (mut g, pid) = forking_wrapper();
        let wrapper = g.id();
        g.signal("-TERM");
        // Dead (a zombie until reaped) while the process it forked carries on.
        assert!(gone_soon(wrapper), "SIGTERM did not reach the child");
        assert!(alive(pid), "the signal reached the rest of the group");
        assert!(!g.wait_exit(Duration::from_secs(5)).success());
        assert!(gone_soon(pid), "the group outlived its reaped leader");
    }
}
