//! `gatehouse sessions list` and `gatehouse sessions revoke NAME`, as the
//! control socket hands them over: the request's words, the answer's lines.

use std::time::SystemTime;

use super::Store;

/// The answer to `words` (`sessions list`, `sessions revoke NAME`): whether
/// it succeeded and its lines; None when the words are not a sessions
/// command.
pub async fn run<U>(words: &[&str], store: &dyn Store<U>) -> Option<(bool, String)> {
    let time = |t: SystemTime| humantime::format_rfc3339_seconds(t).to_string();
    Some(match words {
        ["sessions", "list"] => match store.list(SystemTime::now()).await {
            Ok(list) => {
                let mut out = format!("{} sessions\n", list.len());
                for s in list {
                    out.push_str(&format!(
                        "{}\tsigned in {}\tlast used {}\tends {}\t{}\t{}\n",
                        s.who,
                        time(s.created),
                        time(s.last_used),
                        time(s.ends),
                        if s.public { "public computer" } else { "private computer" },
                        if s.second_factor { "second factor" } else { "password only" }
                    ));
                }
                (true, out)
            }
            Err(e) => (false, format!("error: the session store cannot be asked: {}\n", e.0)),
        },
        ["sessions", "revoke", who] if !who.trim().is_empty() => match store.revoke(who.trim().to_owned()).await {
            Ok(n) => {
                tracing::info!(user = %who, sessions = n, "sessions revoked through the control socket");
                (true, format!("{n} sessions of {who} ended\n"))
            }
            Err(e) => (false, format!("error: the session store cannot be asked: {}\n", e.0)),
        },
        ["sessions", ..] => (false, "error: expected `sessions list` or `sessions revoke NAME`\n".into()),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::session::{Memory, Record};

    #[test]
    fn list_and_revoke() {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let store: Memory<u8> = Memory::new(10);
        let now = SystemTime::now();
        let record = |who: &str| Record {
            who: Arc::from(who),
            user: 0,
            created: now,
            ends: now + Duration::from_secs(60),
            idle: Duration::from_secs(60),
            public: who.contains("bob"),
            second_factor: None,
        };
        rt.block_on(async {
            store.insert([1; 32], record("ADTEST\\alice")).await.unwrap();
            store.insert([2; 32], record("ADTEST\\bob")).await.unwrap();
            let (ok, text) = run(&["sessions", "list"], &store).await.unwrap();
            assert!(ok && text.starts_with("2 sessions\nADTEST\\alice\tsigned in "), "{text}");
            assert!(text.contains("\tpublic computer\t") && text.contains("\tprivate computer\t"), "{text}");
            assert!(text.contains("\tpassword only\n") && !text.contains("\tsecond factor\n"), "{text}");
            assert_eq!(
                run(&["sessions", "revoke", "ALICE"], &store).await.unwrap(),
                (true, "1 sessions of ALICE ended\n".into())
            );
            assert_eq!(run(&["sessions", "revoke", "ALICE"], &store).await.unwrap().1, "0 sessions of ALICE ended\n");
            assert!(!run(&["sessions", "revoke", " "], &store).await.unwrap().0);
            assert!(!run(&["sessions", "drop"], &store).await.unwrap().0);
            assert!(run(&["status"], &store).await.is_none(), "not ours");
        });
    }
}
