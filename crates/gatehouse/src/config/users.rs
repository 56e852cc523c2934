//! `[accounts] source = "file"`: NT hashes read from a file at load, held as
//! data. Checking a password against them is `accounts.rs`'s job; this module
//! only reads and looks up, so that the configuration can hold the parsed file
//! without depending on the code that authenticates.

use std::collections::HashMap;
use std::path::Path;

/// NT hashes read from a file: gss-ntlmssp's `DOMAIN:user:password` lines (the
/// password is hashed on load and not kept) and smbpasswd lines
/// (`user:uid:LMHASH:NTHASH:...`).
#[derive(Default)]
pub struct UserFile {
    /// (upper-case domain or "" for any, lower-case user) -> NT hash
    users: HashMap<(String, String), [u8; 16]>,
}

impl std::fmt::Debug for UserFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "UserFile({} users)", self.users.len())
    }
}

impl UserFile {
    pub fn load(path: &Path) -> Result<UserFile, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Self::parse(&text).map_err(|(line, why)| format!("{}:{line}: {why}", path.display()))
    }

    pub fn parse(text: &str) -> Result<UserFile, (usize, String)> {
        let mut users = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim_end_matches('\r');
            if line.trim().is_empty() || line.trim_start().starts_with('#') {
                continue;
            }
            let fields: Vec<&str> = line.split(':').collect();
            let entry =
                if fields.len() >= 6 && fields[3].len() == 32 && fields[3].bytes().all(|b| b.is_ascii_hexdigit()) {
                    // smbpasswd: no domain, so it matches any.
                    let mut hash = [0u8; 16];
                    for (k, byte) in hash.iter_mut().enumerate() {
                        *byte = u8::from_str_radix(&fields[3][2 * k..2 * k + 2], 16)
                            .map_err(|_| (i + 1, "bad NT hash".to_string()))?;
                    }
                    ((String::new(), fields[0].to_lowercase()), hash)
                } else {
                    let mut parts = line.splitn(3, ':');
                    let (Some(domain), Some(user), Some(password)) = (parts.next(), parts.next(), parts.next()) else {
                        return Err((i + 1, "expected DOMAIN:user:password or an smbpasswd line".into()));
                    };
                    if user.is_empty() {
                        return Err((i + 1, "empty user name".into()));
                    }
                    ((domain.to_uppercase(), user.to_lowercase()), ntlm::crypto::nt_hash(password))
                };
            users.insert(entry.0, entry.1);
        }
        Ok(UserFile { users })
    }

    /// The NT hash for `user` of `domain` (a domain-qualified line first, then an
    /// smbpasswd line, which matches any domain).
    /// How many users the file holds (for `gatehouse doctor`).
    pub fn len(&self) -> usize {
        self.users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    pub fn hash(&self, domain: &str, user: &str) -> Option<&[u8; 16]> {
        let user = user.to_lowercase();
        self.users.get(&(domain.to_uppercase(), user.clone())).or_else(|| self.users.get(&(String::new(), user)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_file_formats() {
        let f = UserFile::parse(
            "# comment\nADTEST:bob:Bob-Pass1\n:carol:pass:with:colons\nalice:1000:XXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX:A4F49C406510BDCAB6824EE7C30FD852:[U          ]:LCT-00000000:\n",
        )
        .unwrap();
        assert_eq!(f.hash("adtest", "BOB"), Some(&ntlm::crypto::nt_hash("Bob-Pass1")));
        assert_eq!(f.hash("OTHER", "bob"), None, "a domain-qualified line matches only its domain");
        assert_eq!(f.hash("ANY", "carol"), Some(&ntlm::crypto::nt_hash("pass:with:colons")));
        assert_eq!(f.hash("ADTEST", "alice"), Some(&ntlm::crypto::nt_hash("Password")));
    }

    #[test]
    fn bad_lines_are_reported_with_their_number() {
        assert_eq!(UserFile::parse("ADTEST:bob:x\njunk\n").unwrap_err().0, 2);
        assert_eq!(UserFile::parse("ADTEST::x\n").unwrap_err().0, 1);
    }
}
