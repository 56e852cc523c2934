//! `gatehouse mfa list USER`, `gatehouse mfa reset USER` and `gatehouse mfa
//! issue-code USER`, as the control socket hands them over. The enrolment
//! code is in the answer once and kept only as a digest.

use std::time::{Duration, SystemTime};

use super::Store;

/// The answer to `words`, or None when they are not an `mfa` command.
/// `store`: None when `[mfa]` is not configured; `code_lifetime`: how long an
/// issued enrolment code is good.
pub async fn run(
    words: &[&str],
    store: Option<&dyn Store>,
    counters: &super::Counters,
    code_lifetime: Duration,
) -> Option<(bool, String)> {
    if words.first() != Some(&"mfa") {
        return None;
    }
    if words == ["mfa", "counters"] {
        return Some((true, counters.lines()));
    }
    let Some(store) = store else {
        return Some((
            false,
            "error: no [mfa] store is open (it is opened at start: restart gatehouse after adding [mfa])\n".into(),
        ));
    };
    let unavailable = |e: super::Unavailable| (false, format!("error: the second-factor store: {}\n", e.0));
    let time = |t: u64| humantime::format_rfc3339_seconds(SystemTime::UNIX_EPOCH + Duration::from_secs(t)).to_string();
    let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    Some(match words {
        ["mfa", "list", who] if !who.trim().is_empty() => match store.factors(who.trim().to_owned()).await {
            Ok(list) => {
                let mut out = format!("{} factors\n", list.len());
                for f in list {
                    let used =
                        f.last_used.map_or_else(|| "never used".to_owned(), |t| format!("last used {}", time(t)));
                    out.push_str(&format!(
                        "{}\t{}\t{}\t{:?}\tadded {}\t{used}\n",
                        f.user,
                        f.id,
                        f.kind.as_str(),
                        f.name,
                        time(f.created)
                    ));
                }
                (true, out)
            }
            Err(e) => unavailable(e),
        },
        ["mfa", "reset", who] if !who.trim().is_empty() => match store.reset(who.trim().to_owned()).await {
            Ok(n) => {
                super::Counters::count(&counters.resets);
                tracing::info!(user = %who, factors = n, "second factors reset through the control socket");
                (true, format!("{n} factors of {who} removed\n"))
            }
            Err(e) => unavailable(e),
        },
        ["mfa", "issue-code", who] if !who.trim().is_empty() => {
            let code = match super::new_code() {
                Ok(c) => c,
                Err(e) => return Some((false, format!("error: {e}\n"))),
            };
            let expires = now.saturating_add(code_lifetime.as_secs());
            match store.issue_code(who.trim().to_owned(), super::code_digest(&code), expires).await {
                Ok(()) => {
                    super::Counters::count(&counters.codes_issued);
                    // The code itself is never logged: it enrols a factor.
                    tracing::info!(user = %who, expires = %time(expires), "enrolment code issued through the control socket");
                    (true, format!("enrolment code for {who}: {code}\nvalid until {} (once)\n", time(expires)))
                }
                Err(e) => unavailable(e),
            }
        }
        _ => (
            false,
            "error: expected `mfa list USER`, `mfa reset USER`, `mfa issue-code USER` or `mfa counters`\n".into(),
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mfa::{code_digest, Kind, Sqlite};

    #[test]
    fn list_reset_issue() {
        let dir = tempfile::tempdir().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let s = Sqlite::open(&dir.path().join("mfa.db")).unwrap();
            s.add("ADTEST\\bob".into(), Kind::Totp, "phone".into(), "SEALED".into(), 1).await.unwrap();
            let life = Duration::from_secs(3600);
            let c = crate::mfa::Counters::default();
            let (ok, text) = run(&["mfa", "list", "bob"], Some(&s), &c, life).await.unwrap();
            assert!(ok && text.starts_with("1 factors\nADTEST\\bob\t1\ttotp\t\"phone\"\tadded 1970-"), "{text}");
            assert!(!text.contains("SEALED"), "never the secret: {text}");
            let (ok, text) = run(&["mfa", "issue-code", "ADTEST\\bob"], Some(&s), &c, life).await.unwrap();
            assert!(ok, "{text}");
            let code = text.lines().next().unwrap().rsplit(' ').next().unwrap();
            let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs();
            assert_eq!(s.take_code(code_digest(code), now).await.unwrap().as_deref(), Some("ADTEST\\bob"));
            assert_eq!(
                run(&["mfa", "reset", "bob"], Some(&s), &c, life).await.unwrap(),
                (true, "1 factors of bob removed\n".into())
            );
            assert!(s.factors("bob".into()).await.unwrap().is_empty());
            assert!(!run(&["mfa", "reset", " "], Some(&s), &c, life).await.unwrap().0);
            assert!(!run(&["mfa", "drop", "bob"], Some(&s), &c, life).await.unwrap().0);
            assert!(!run(&["mfa", "list", "bob"], None, &c, life).await.unwrap().0, "no store");
            assert!(run(&["sessions", "list"], Some(&s), &c, life).await.is_none(), "not ours");
            let (ok, text) = run(&["mfa", "counters"], Some(&s), &c, life).await.unwrap();
            assert!(ok && text.contains("admin_resets\t1\n") && text.contains("enrolment_codes_issued\t1\n"), "{text}");
            assert!(text.contains("totp_passed\t0\n"), "{text}");
        });
    }
}
