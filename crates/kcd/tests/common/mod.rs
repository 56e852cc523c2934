//! The lab domain's settings, for the tests that need it.

/// `$LAB/env` (written by `lab/lab.sh`) as a map. Without a lab: None, and the
/// caller skips, unless GATEHOUSE_LAB_REQUIRED is set (as in CI), which panics.
pub fn lab_env() -> Option<std::collections::HashMap<String, String>> {
    let dir = std::env::var("LAB").unwrap_or_else(|_| "/tmp/gatehouse-lab".into());
    let Ok(text) = std::fs::read_to_string(format!("{dir}/env")) else {
        if std::env::var_os("GATEHOUSE_LAB_REQUIRED").is_some() {
            panic!("the lab is required but {dir}/env is missing");
        }
        eprintln!("SKIPPED: no lab at {dir}");
        return None;
    };
    Some(
        text.lines()
            .flat_map(|l| l.trim_start_matches("export ").split_whitespace().map(str::to_owned).collect::<Vec<_>>())
            .filter_map(|p| p.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())))
            .collect(),
    )
}
