//! Matching clients for `[[site.auth_for]]`: user-agent patterns (address
//! blocks are `crate::net::Cidr`).

/// `*` and `?` wildcards, ASCII case-insensitive.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == b'?' || p[pi].eq_ignore_ascii_case(&t[ti])) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some(pi);
            pi += 1;
            mark = ti;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("*Communicator*", "Microsoft Office Communicator 2007 R2"));
        assert!(glob_match("*communicator*", "MICROSOFT OFFICE COMMUNICATOR"));
        assert!(!glob_match("*Communicator*", "Mozilla/5.0"));
        assert!(glob_match("MSRPC", "msrpc"));
        assert!(glob_match("Outlook?", "Outlook/"));
        assert!(glob_match("*", ""));
        assert!(!glob_match("a*b", "acd"));
    }
}
