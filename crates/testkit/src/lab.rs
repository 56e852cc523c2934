//! The lab domain's settings (`lab/lab.sh` writes them to `$LAB/env`), for
//! every test that needs the lab, in gatehouse's tests and kcd's alike.
//!
//! A lab test that finds no lab cannot pass: libtest has no "skipped" verdict
//! a test can give itself, and a test that returns early is reported `ok`, so
//! a developer without the lab would see green while nothing ran. Without a
//! lab the test therefore fails with the way out in its message, unless the
//! developer says `GATEHOUSE_LAB_SKIP=1`; then each skip is written to the
//! terminal past libtest's capture, numbered, so the count is on screen.
//! `GATEHOUSE_LAB_REQUIRED` (set by `scripts/test.sh`) refuses skipping even
//! when `GATEHOUSE_LAB_SKIP` is set too.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

pub type LabEnv = HashMap<String, String>;

/// How many lab tests this test binary skipped so far.
static SKIPPED: AtomicUsize = AtomicUsize::new(0);

/// What to do about the lab, from the environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// `GATEHOUSE_LAB_REQUIRED` is set: never skip.
    pub required: bool,
    /// `GATEHOUSE_LAB_SKIP=1`: skipping is asked for.
    pub skip: bool,
}

impl Policy {
    pub fn from_env() -> Policy {
        Policy {
            required: std::env::var_os("GATEHOUSE_LAB_REQUIRED").is_some(),
            skip: std::env::var("GATEHOUSE_LAB_SKIP").is_ok_and(|v| v == "1"),
        }
    }
}

/// The lab's settings, or None when the caller is to skip (after the skip
/// was announced). Panics without a lab unless skipping was asked for.
pub fn lab_env() -> Option<LabEnv> {
    let dir = std::env::var("LAB").unwrap_or_else(|_| "/tmp/gatehouse-lab".into());
    match env_in(Path::new(&dir), Policy::from_env()) {
        Ok(env) => Some(env),
        Err(Missing::Skip(why)) => {
            let n = SKIPPED.fetch_add(1, Ordering::Relaxed) + 1;
            let test = std::thread::current().name().unwrap_or("?").to_owned();
            // Straight to the terminal: libtest captures `eprintln!` of passing tests.
            let _ = writeln!(
                std::io::stderr().lock(),
                "\n*** LAB TEST SKIPPED ({n} in this test binary so far): {test}: {why} (GATEHOUSE_LAB_SKIP=1) ***"
            );
            None
        }
        Err(Missing::Fail(why)) => panic!("{why}"),
    }
}

/// Why there is no lab, and what follows from it.
#[derive(Debug, PartialEq, Eq)]
pub enum Missing {
    Skip(String),
    Fail(String),
}

/// The settings in `dir/env`, or what to do without them under `policy`.
pub fn env_in(dir: &Path, policy: Policy) -> Result<LabEnv, Missing> {
    let file = dir.join("env");
    let Ok(text) = std::fs::read_to_string(&file) else {
        let why = format!("no lab at {} ({} is missing)", dir.display(), file.display());
        return Err(if policy.required {
            Missing::Fail(format!(
                "{why}; GATEHOUSE_LAB_REQUIRED is set, so the lab tests cannot skip: run `LAB={} lab/lab.sh start`",
                dir.display()
            ))
        } else if policy.skip {
            Missing::Skip(why)
        } else {
            Missing::Fail(format!(
                "{why}: start it (`LAB={} lab/lab.sh start`), or set GATEHOUSE_LAB_SKIP=1 to skip the lab tests knowingly",
                dir.display()
            ))
        });
    };
    Ok(parse(&text))
}

/// `export A=1 B=2` lines as a map.
fn parse(text: &str) -> LabEnv {
    text.lines()
        .flat_map(|l| l.trim_start_matches("export ").split_whitespace())
        .filter_map(|p| p.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NONE: Policy = Policy { required: false, skip: false };

    fn no_lab() -> std::path::PathBuf {
        std::env::temp_dir().join(format!("no-gatehouse-lab-{}", std::process::id()))
    }

    #[test]
    fn without_a_lab_a_lab_test_fails_unless_told_to_skip() {
        let Err(Missing::Fail(why)) = env_in(&no_lab(), NONE) else { panic!("a missing lab was not a failure") };
        assert!(why.contains("GATEHOUSE_LAB_SKIP=1") && why.contains("lab/lab.sh start"), "{why}");
    }

    #[test]
    fn skipping_is_asked_for_and_required_overrides_it() {
        assert!(matches!(env_in(&no_lab(), Policy { required: false, skip: true }), Err(Missing::Skip(_))));
        let Err(Missing::Fail(why)) = env_in(&no_lab(), Policy { required: true, skip: true }) else {
            panic!("GATEHOUSE_LAB_REQUIRED allowed a skip")
        };
        assert!(why.contains("GATEHOUSE_LAB_REQUIRED"), "{why}");
    }

    #[test]
    fn a_lab_is_read_whatever_the_policy() {
        let dir = no_lab().with_extension("present");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("env"), "export LAB=/x\nexport LAB_DC_IP=127.0.0.21 LAB_REALM=AD.TEST\n").unwrap();
        for policy in [NONE, Policy { required: true, skip: false }, Policy { required: false, skip: true }] {
            let env = env_in(&dir, policy).unwrap();
            assert_eq!(
                (env["LAB"].as_str(), env["LAB_DC_IP"].as_str(), env["LAB_REALM"].as_str()),
                ("/x", "127.0.0.21", "AD.TEST")
            );
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
