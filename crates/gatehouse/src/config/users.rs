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
    /// `+GROUP:member,member` lines: lower-case group -> members as
    /// (upper-case domain or "" for any, lower-case user).
    groups: HashMap<String, Vec<(String, String)>>,
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
        let mut groups = HashMap::new();
        let mut group_lines = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim_end_matches('\r');
            if line.trim().is_empty() || line.trim_start().starts_with('#') {
                continue;
            }
            // `+` is in neither NetBIOS domain nor account names, so a group
            // line cannot be read as a user's.
            if let Some(group) = line.strip_prefix('+') {
                let (name, members) = parse_group(group).map_err(|why| (i + 1, why))?;
                group_lines.insert(name.clone(), i + 1);
                groups.insert(name, members);
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
        for (group, members) in &groups {
            for (domain, user) in members {
                let known = users
                    .keys()
                    .any(|(d, u): &(String, String)| u == user && (d == domain || d.is_empty() || domain.is_empty()));
                if !known {
                    let who = if domain.is_empty() { user.clone() } else { format!("{domain}\\{user}") };
                    return Err((
                        group_lines.get(group).copied().unwrap_or(0),
                        format!("group {group}: member {who} is not a user of this file"),
                    ));
                }
            }
        }
        Ok(UserFile { users, groups })
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

    /// Whether the file has this user (`domain` None: in any domain).
    pub fn has_user(&self, domain: Option<&str>, user: &str) -> bool {
        let user = user.to_lowercase();
        self.users.keys().any(|(d, u)| *u == user && (d.is_empty() || domain.is_none_or(|x| d.eq_ignore_ascii_case(x))))
    }

    pub fn has_group(&self, group: &str) -> bool {
        self.groups.contains_key(&group.to_lowercase())
    }

    /// Whether `user` of `domain` is a member of `group` (lower-case).
    pub fn in_group(&self, group: &str, domain: &str, user: &str) -> bool {
        self.groups.get(group).is_some_and(|members| {
            members
                .iter()
                .any(|(d, u)| u.eq_ignore_ascii_case(user) && (d.is_empty() || d.eq_ignore_ascii_case(domain)))
        })
    }

    pub fn hash(&self, domain: &str, user: &str) -> Option<&[u8; 16]> {
        let user = user.to_lowercase();
        self.users.get(&(domain.to_uppercase(), user.clone())).or_else(|| self.users.get(&(String::new(), user)))
    }
}

/// `GROUP:member,member` (after the `+`): members are `user` or `DOMAIN\\user`.
fn parse_group(text: &str) -> Result<(String, Vec<(String, String)>), String> {
    let Some((name, members)) = text.split_once(':') else {
        return Err("a group line is +GROUP:member,member".into());
    };
    let name = name.trim();
    if name.is_empty() || name.contains(['\\', ',', '+', '@']) {
        return Err(format!("`{name}` is not a group name"));
    }
    let mut out = Vec::new();
    for m in members.split(',').map(str::trim).filter(|m| !m.is_empty()) {
        let (domain, user) = m.split_once('\\').unwrap_or(("", m));
        if user.is_empty() || user.contains(['\\', '+']) {
            return Err(format!("group {name}: `{m}` is not a user name (groups cannot be members)"));
        }
        out.push((domain.to_uppercase(), user.to_lowercase()));
    }
    Ok((name.to_lowercase(), out))
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
    fn groups() {
        let f = UserFile::parse("ADTEST:bob:x\n:carol:y\n+Finance:bob, carol\n+Audit:ADTEST\\carol\n").unwrap();
        assert!(f.has_group("FINANCE") && f.has_group("audit") && !f.has_group("bob"));
        assert!(f.has_user(Some("adtest"), "Bob") && f.has_user(None, "bob") && !f.has_user(Some("OTHER"), "bob"));
        assert!(f.has_user(Some("OTHER"), "carol"), "a line without domain is any domain's");
        assert!(f.in_group("finance", "ADTEST", "BOB"));
        assert!(f.in_group("audit", "ADTEST", "carol") && !f.in_group("audit", "OTHER", "carol"));
        assert!(!f.in_group("audit", "ADTEST", "bob") && !f.in_group("nosuch", "ADTEST", "bob"));
        // Refused: a member who is not in the file, a group as a member, no colon.
        assert_eq!(UserFile::parse("ADTEST:bob:x\n+G:dave\n").unwrap_err().0, 2);
        assert!(UserFile::parse("ADTEST:bob:x\n+G:+H\n").unwrap_err().0 == 2);
        assert!(UserFile::parse("+G\n").unwrap_err().0 == 1);
        assert!(UserFile::parse("+:bob\n").is_err());
    }

    #[test]
    fn bad_lines_are_reported_with_their_number() {
        assert_eq!(UserFile::parse("ADTEST:bob:x\njunk\n").unwrap_err().0, 2);
        assert_eq!(UserFile::parse("ADTEST::x\n").unwrap_err().0, 1);
    }
}
