//! The embedded store: one SQLite file (`[mfa] store`), written in
//! transactions, so a write that fails (disk full, file made read-only)
//! leaves every factor as it was. SQLite's calls block, so each runs on
//! tokio's blocking threads, never on a worker.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::{params, Connection, OpenFlags, OptionalExtension, TransactionBehavior};

use super::{Factor, Kind, Pending, Store, Unavailable};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS factor (
    id INTEGER PRIMARY KEY,
    user TEXT NOT NULL,
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    sealed TEXT NOT NULL,
    created INTEGER NOT NULL,
    last_used INTEGER
);
CREATE INDEX IF NOT EXISTS factor_user ON factor (user);
CREATE TABLE IF NOT EXISTS used_step (
    user TEXT PRIMARY KEY,
    step INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS enrol_code (
    digest BLOB PRIMARY KEY,
    user TEXT NOT NULL,
    expires INTEGER NOT NULL
);
";

/// Passkeys came after the first stores were made: added to an old file
/// too (each statement is a no-op on a file that has it).
const PASSKEY_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS credential (
    id BLOB PRIMARY KEY,
    factor INTEGER NOT NULL,
    user TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS used_challenge (
    digest BLOB PRIMARY KEY,
    expires INTEGER NOT NULL
);
";

/// The SQLite store.
pub struct Sqlite {
    path: PathBuf,
    db: Arc<Mutex<Connection>>,
}

impl Sqlite {
    /// Opens (or makes) the store at `path`; a file that cannot be opened or
    /// is not a sound store is an error naming it, and gatehouse does not start.
    pub fn open(path: &Path) -> Result<Sqlite, String> {
        let named = |e: &dyn std::fmt::Display| format!("[mfa] store {}: {e}", path.display());
        // A new store is private to gatehouse's account from its first byte
        // (SQLite gives its journal the file's mode): the secrets in it are
        // sealed, but who enrolled what, and when, is nobody else's business.
        if !path.exists() {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).map_err(|e| named(&e))?;
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let db = Connection::open_with_flags(path, flags).map_err(|e| named(&e))?;
        // A damaged file is found now, not at a user's sign-in.
        let check: String = db.query_row("PRAGMA quick_check", [], |r| r.get(0)).map_err(|e| named(&e))?;
        if check != "ok" {
            return Err(named(&format!("damaged ({check}); restore it from a backup")));
        }
        let has_tables: i64 = db
            .query_row("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'factor'", [], |r| r.get(0))
            .map_err(|e| named(&e))?;
        if has_tables == 0 {
            db.execute_batch(SCHEMA).map_err(|e| named(&e))?;
        }
        let has_passkeys: i64 = db
            .query_row("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'used_challenge'", [], |r| {
                r.get(0)
            })
            .map_err(|e| named(&e))?;
        if has_passkeys == 0 {
            db.execute_batch(PASSKEY_SCHEMA).map_err(|e| named(&e))?;
        }
        // Waiting briefly for a lock beats failing a user's enrolment.
        db.busy_timeout(std::time::Duration::from_secs(2)).map_err(|e| named(&e))?;
        Ok(Sqlite { path: path.to_owned(), db: Arc::new(Mutex::new(db)) })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` on the connection on a blocking thread.
    fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Pending<'_, T> {
        self.run(false, f)
    }

    /// As `with`, for a call that writes: a file that cannot be written is
    /// refused before SQLite tries. A write that fails half-way leaves a hot
    /// journal that SQLite can only roll back into a writable file, and until
    /// then even reads fail; refusing first keeps the factors readable.
    fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Pending<'_, T> {
        self.run(true, f)
    }

    fn run<T: Send + 'static>(
        &self,
        writes: bool,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Pending<'_, T> {
        let db = self.db.clone();
        let path = self.path.clone();
        Box::pin(async move {
            let done = tokio::task::spawn_blocking(move || {
                if writes && !writable(&path) {
                    return Err(Unavailable(format!("{}: the file is read-only; nothing was changed", path.display())));
                }
                let mut db = db.lock().unwrap_or_else(|e| e.into_inner());
                f(&mut db).map_err(|e| Unavailable(describe(&path, &e)))
            })
            .await
            .map_err(|e| Unavailable(format!("the store's task did not run: {e}")))?;
            done
        })
    }
}

/// A failed call in words an administrator can act on.
fn describe(path: &Path, e: &rusqlite::Error) -> String {
    // A file made read-only after it was opened fails as an I/O error on the
    // open descriptor: ask the file itself.
    let read_only =
        matches!(e, rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::ReadOnly) || !writable(path);
    if read_only {
        format!("{}: the file is read-only; nothing was changed", path.display())
    } else {
        format!("{}: {e}; nothing was changed", path.display())
    }
}

/// Whether gatehouse may write the file now (its mode, for root the
/// immutable attribute, a read-only mount).
fn writable(path: &Path) -> bool {
    match std::fs::OpenOptions::new().append(true).open(path) {
        Ok(_) => true,
        Err(e) => !matches!(e.kind(), std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem),
    }
}

/// The stored names that `who` matches.
fn users_matching(tx: &Connection, who: &str) -> rusqlite::Result<Vec<String>> {
    let mut st =
        tx.prepare("SELECT user FROM factor UNION SELECT user FROM enrol_code UNION SELECT user FROM used_step")?;
    let all = st.query_map([], |r| r.get::<_, String>(0))?.collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(all.into_iter().filter(|u| crate::session::names_match(who, u)).collect())
}

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl Store for Sqlite {
    fn factors(&self, who: String) -> Pending<'_, Vec<Factor>> {
        self.with(move |db| {
            let mut out = Vec::new();
            for user in users_matching(db, &who)? {
                let mut st = db.prepare(
                    "SELECT id, kind, name, sealed, created, last_used FROM factor WHERE user = ?1 ORDER BY id",
                )?;
                let rows = st.query_map(params![user], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, i64>(4)?,
                        r.get::<_, Option<i64>>(5)?,
                    ))
                })?;
                for row in rows {
                    let (id, kind, name, sealed, created, last_used) = row?;
                    // A kind this build does not know is left in place, unused.
                    let Some(kind) = Kind::parse(&kind) else { continue };
                    out.push(Factor {
                        user: user.clone(),
                        id,
                        kind,
                        name,
                        sealed,
                        created: to_u64(created),
                        last_used: last_used.map(to_u64),
                    });
                }
            }
            Ok(out)
        })
    }

    fn add(&self, user: String, kind: Kind, name: String, sealed: String, now: u64) -> Pending<'_, i64> {
        self.write(move |db| {
            let tx = db.transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.execute(
                "INSERT INTO factor (user, kind, name, sealed, created) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![user, kind.as_str(), name, sealed, to_i64(now)],
            )?;
            let id = tx.last_insert_rowid();
            tx.commit()?;
            Ok(id)
        })
    }

    fn remove(&self, user: String, id: i64) -> Pending<'_, bool> {
        self.write(move |db| {
            let tx = db.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let n = tx.execute("DELETE FROM factor WHERE user = ?1 AND id = ?2", params![user, id])?;
            tx.execute("DELETE FROM credential WHERE user = ?1 AND factor = ?2", params![user, id])?;
            tx.commit()?;
            Ok(n > 0)
        })
    }

    fn reset(&self, who: String) -> Pending<'_, usize> {
        self.write(move |db| {
            let tx = db.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mut n = 0;
            for user in users_matching(&tx, &who)? {
                n += tx.execute("DELETE FROM factor WHERE user = ?1", params![user])?;
                tx.execute("DELETE FROM credential WHERE user = ?1", params![user])?;
                tx.execute("DELETE FROM enrol_code WHERE user = ?1", params![user])?;
                tx.execute("DELETE FROM used_step WHERE user = ?1", params![user])?;
            }
            tx.commit()?;
            Ok(n)
        })
    }

    fn use_step(&self, user: String, id: i64, step: u64, now: u64) -> Pending<'_, bool> {
        self.write(move |db| {
            let tx = db.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let last: Option<i64> =
                tx.query_row("SELECT step FROM used_step WHERE user = ?1", params![user], |r| r.get(0)).optional()?;
            if last.is_some_and(|l| to_u64(l) >= step) {
                return Ok(false);
            }
            tx.execute(
                "INSERT INTO used_step (user, step) VALUES (?1, ?2) ON CONFLICT (user) DO UPDATE SET step = ?2",
                params![user, to_i64(step)],
            )?;
            tx.execute("UPDATE factor SET last_used = ?1 WHERE id = ?2 AND user = ?3", params![to_i64(now), id, user])?;
            tx.commit()?;
            Ok(true)
        })
    }

    fn last_step(&self, user: String) -> Pending<'_, Option<u64>> {
        self.with(move |db| {
            let last: Option<i64> =
                db.query_row("SELECT step FROM used_step WHERE user = ?1", params![user], |r| r.get(0)).optional()?;
            Ok(last.map(to_u64))
        })
    }

    fn issue_code(&self, user: String, digest: [u8; 32], expires: u64) -> Pending<'_, ()> {
        self.write(move |db| {
            let tx = db.transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.execute(
                "INSERT INTO enrol_code (digest, user, expires) VALUES (?1, ?2, ?3)",
                params![&digest[..], user, to_i64(expires)],
            )?;
            tx.commit()
        })
    }

    fn take_code(&self, digest: [u8; 32], now: u64) -> Pending<'_, Option<String>> {
        self.write(move |db| {
            let tx = db.transaction_with_behavior(TransactionBehavior::Immediate)?;
            // Looked up by a digest of 96 random bits: the lookup's timing can
            // only tell a guesser about digests, never about a code.
            let found: Option<(String, i64)> = tx
                .query_row("SELECT user, expires FROM enrol_code WHERE digest = ?1", params![&digest[..]], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .optional()?;
            tx.execute("DELETE FROM enrol_code WHERE digest = ?1 OR expires <= ?2", params![&digest[..], to_i64(now)])?;
            tx.commit()?;
            Ok(found.and_then(|(user, expires)| (to_u64(expires) > now).then_some(user)))
        })
    }

    fn add_passkey(
        &self,
        user: String,
        name: String,
        credential: Vec<u8>,
        sealed: String,
        now: u64,
    ) -> Pending<'_, Option<i64>> {
        self.write(move |db| {
            let tx = db.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let known: Option<i64> = tx
                .query_row("SELECT factor FROM credential WHERE id = ?1", params![credential], |r| r.get(0))
                .optional()?;
            if known.is_some() {
                return Ok(None);
            }
            tx.execute(
                "INSERT INTO factor (user, kind, name, sealed, created) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![user, Kind::Passkey.as_str(), name, sealed, to_i64(now)],
            )?;
            let id = tx.last_insert_rowid();
            tx.execute("INSERT INTO credential (id, factor, user) VALUES (?1, ?2, ?3)", params![credential, id, user])?;
            tx.commit()?;
            Ok(Some(id))
        })
    }

    fn update(&self, user: String, id: i64, sealed: String, now: u64) -> Pending<'_, bool> {
        self.write(move |db| {
            let tx = db.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let n = tx.execute(
                "UPDATE factor SET sealed = ?1, last_used = ?2 WHERE user = ?3 AND id = ?4",
                params![sealed, to_i64(now), user, id],
            )?;
            tx.commit()?;
            Ok(n > 0)
        })
    }

    fn rename(&self, user: String, id: i64, name: String) -> Pending<'_, bool> {
        self.write(move |db| {
            let tx = db.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let n = tx.execute("UPDATE factor SET name = ?1 WHERE user = ?2 AND id = ?3", params![name, user, id])?;
            tx.commit()?;
            Ok(n > 0)
        })
    }

    fn use_challenge(&self, digest: [u8; 32], expires: u64, now: u64) -> Pending<'_, bool> {
        self.write(move |db| {
            let tx = db.transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.execute("DELETE FROM used_challenge WHERE expires <= ?1", params![to_i64(now)])?;
            let n = tx.execute(
                "INSERT INTO used_challenge (digest, expires) VALUES (?1, ?2) ON CONFLICT (digest) DO NOTHING",
                params![&digest[..], to_i64(expires)],
            )?;
            tx.commit()?;
            Ok(n > 0)
        })
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
    }

    #[test]
    fn factors_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mfa.db");
        rt().block_on(async {
            let s = Sqlite::open(&path).unwrap();
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600, "private");
            let id = s.add("ADTEST\\bob".into(), Kind::Totp, "phone".into(), "sealed".into(), 100).await.unwrap();
            assert!(s.use_step("ADTEST\\bob".into(), id, 7, 110).await.unwrap());
            drop(s);
            let s = Sqlite::open(&path).unwrap();
            let f = s.factors("bob".into()).await.unwrap();
            assert_eq!(f.len(), 1);
            assert_eq!((f[0].name.as_str(), f[0].sealed.as_str(), f[0].last_used), ("phone", "sealed", Some(110)));
            assert_eq!(s.last_step("ADTEST\\bob".into()).await.unwrap(), Some(7));
            assert!(s.factors("alice".into()).await.unwrap().is_empty());
        });
    }

    #[test]
    fn passkeys_are_unique_renamed_updated_and_challenges_pass_once() {
        let dir = tempfile::tempdir().unwrap();
        rt().block_on(async {
            let s = Sqlite::open(&dir.path().join("mfa.db")).unwrap();
            let bob = || "ADTEST\\bob".to_owned();
            let id = s.add_passkey(bob(), "key".into(), vec![1, 2, 3], "s1".into(), 5).await.unwrap().unwrap();
            assert_eq!(s.add_passkey(bob(), "again".into(), vec![1, 2, 3], "s".into(), 6).await.unwrap(), None);
            let alice = "ADTEST\\alice".to_owned();
            assert_eq!(s.add_passkey(alice.clone(), "k".into(), vec![1, 2, 3], "s".into(), 6).await.unwrap(), None);
            assert!(s.update(bob(), id, "s2".into(), 9).await.unwrap());
            assert!(!s.update(alice.clone(), id, "s3".into(), 9).await.unwrap(), "not alice's");
            assert!(s.rename(bob(), id, "yubikey".into()).await.unwrap());
            assert!(!s.rename(alice, id, "mine".into()).await.unwrap(), "not alice's");
            let f = s.factors("bob".into()).await.unwrap();
            assert_eq!(f.len(), 1);
            assert_eq!(
                (f[0].kind, f[0].name.as_str(), f[0].sealed.as_str(), f[0].last_used),
                (Kind::Passkey, "yubikey", "s2", Some(9))
            );
            // Removed, its credential id may be registered again.
            assert!(s.remove(bob(), id).await.unwrap());
            assert!(s.add_passkey(bob(), "key".into(), vec![1, 2, 3], "s1".into(), 5).await.unwrap().is_some());
            assert!(s.use_challenge([7; 32], 100, 10).await.unwrap());
            assert!(!s.use_challenge([7; 32], 100, 20).await.unwrap(), "once");
            assert!(s.use_challenge([8; 32], 100, 20).await.unwrap());
            // Swept after its end (by then the sealed state has expired too).
            assert!(s.use_challenge([7; 32], 300, 200).await.unwrap());
        });
    }

    #[test]
    fn a_step_passes_once() {
        let dir = tempfile::tempdir().unwrap();
        rt().block_on(async {
            let s = Sqlite::open(&dir.path().join("mfa.db")).unwrap();
            let u = || "ADTEST\\bob".to_owned();
            assert!(s.use_step(u(), 1, 10, 0).await.unwrap());
            assert!(!s.use_step(u(), 1, 10, 0).await.unwrap(), "the same step again");
            assert!(!s.use_step(u(), 1, 9, 0).await.unwrap(), "an earlier step");
            assert!(s.use_step(u(), 1, 11, 0).await.unwrap());
            assert!(s.use_step("ADTEST\\alice".into(), 2, 10, 0).await.unwrap(), "per user");
        });
    }

    #[test]
    fn enrolment_codes_once_and_until_they_expire() {
        let dir = tempfile::tempdir().unwrap();
        rt().block_on(async {
            let s = Sqlite::open(&dir.path().join("mfa.db")).unwrap();
            s.issue_code("ADTEST\\bob".into(), [1; 32], 1000).await.unwrap();
            s.issue_code("ADTEST\\bob".into(), [2; 32], 1000).await.unwrap();
            assert_eq!(s.take_code([3; 32], 10).await.unwrap(), None, "unknown");
            assert_eq!(s.take_code([1; 32], 10).await.unwrap().as_deref(), Some("ADTEST\\bob"));
            assert_eq!(s.take_code([1; 32], 10).await.unwrap(), None, "used once");
            assert_eq!(s.take_code([2; 32], 1000).await.unwrap(), None, "expired");
        });
    }

    #[test]
    fn reset_removes_everything_of_that_user_only() {
        let dir = tempfile::tempdir().unwrap();
        rt().block_on(async {
            let s = Sqlite::open(&dir.path().join("mfa.db")).unwrap();
            for u in ["ADTEST\\bob", "ADTEST\\bob", "ADTEST\\alice"] {
                s.add(u.into(), Kind::Totp, "x".into(), "s".into(), 1).await.unwrap();
            }
            s.issue_code("ADTEST\\bob".into(), [1; 32], 1000).await.unwrap();
            assert_eq!(s.reset("BOB".into()).await.unwrap(), 2);
            assert!(s.factors("bob".into()).await.unwrap().is_empty());
            assert_eq!(s.take_code([1; 32], 10).await.unwrap(), None);
            assert_eq!(s.factors("alice".into()).await.unwrap().len(), 1);
            assert_eq!(s.reset("carol".into()).await.unwrap(), 0);
        });
    }

    /// The file made read-only for this process: mode 0400, and for root
    /// (whom modes do not stop) the immutable attribute as well.
    pub(crate) struct ReadOnly(std::path::PathBuf);

    impl ReadOnly {
        pub(crate) fn make(path: &Path) -> ReadOnly {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o400)).unwrap();
            if std::fs::OpenOptions::new().append(true).open(path).is_ok() {
                let done = std::process::Command::new("chattr").arg("+i").arg(path).status();
                assert!(
                    done.is_ok_and(|s| s.success()),
                    "cannot make {} read-only for root (chattr +i)",
                    path.display()
                );
            }
            assert!(std::fs::OpenOptions::new().append(true).open(path).is_err(), "still writable");
            ReadOnly(path.to_owned())
        }
    }

    impl Drop for ReadOnly {
        fn drop(&mut self) {
            let _ = std::process::Command::new("chattr").arg("-i").arg(&self.0).status();
        }
    }

    #[test]
    fn a_read_only_file_refuses_writes_and_loses_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mfa.db");
        rt().block_on(async {
            let s = Sqlite::open(&path).unwrap();
            s.add("ADTEST\\bob".into(), Kind::Totp, "phone".into(), "s".into(), 1).await.unwrap();
            drop(s);
            let _undo = ReadOnly::make(&path);
            let s = Sqlite::open(&path).unwrap();
            let e = s.add("ADTEST\\bob".into(), Kind::Totp, "tablet".into(), "s".into(), 2).await.unwrap_err();
            assert!(e.0.contains("mfa.db: the file is read-only; nothing was changed"), "{}", e.0);
            let e = s.reset("bob".into()).await.unwrap_err();
            assert!(e.0.contains("read-only"), "{}", e.0);
            let f = s.factors("bob".into()).await.unwrap();
            assert_eq!(f.len(), 1, "the factor that was there stays");
            assert_eq!(f[0].name, "phone");
        });
    }

    #[test]
    fn a_damaged_file_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mfa.db");
        std::fs::write(&path, b"this is not a database, it was overwritten by mistake\n".repeat(100)).unwrap();
        let e = Sqlite::open(&path).err().unwrap();
        assert!(e.starts_with(&format!("[mfa] store {}: ", path.display())), "{e}");
        // A real store with a page cut off.
        let path = dir.path().join("cut.db");
        rt().block_on(async {
            let s = Sqlite::open(&path).unwrap();
            for i in 0..200 {
                s.add(format!("ADTEST\\u{i}"), Kind::Totp, "x".repeat(200), "s".repeat(200), 1).await.unwrap();
            }
        });
        let bytes = std::fs::read(&path).unwrap();
        let mut damaged = bytes.clone();
        for b in &mut damaged[4096..8192.min(bytes.len())] {
            *b = 0xA5;
        }
        std::fs::write(&path, damaged).unwrap();
        let e = Sqlite::open(&path).err().unwrap();
        assert!(e.starts_with(&format!("[mfa] store {}: ", path.display())), "{e}");
        let missing = dir.path().join("no-such-folder").join("mfa.db");
        let e = Sqlite::open(&missing).err().unwrap();
        assert!(e.contains("no-such-folder"), "{e}");
    }
}
