//! Reading an MIT keytab file (format 0x0502) without MIT: which principals it
//! holds keys for, so that `gatehouse check` and `doctor` can say so before
//! Kerberos fails. The bytes are untrusted: every length is bounds-checked and
//! nothing is allocated from a length before the bytes it claims are there.
//! The keys themselves are never looked at.

use std::path::Path;

/// One live entry of a keytab.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// `HTTP/mail.corp.example@CORP.EXAMPLE`.
    pub principal: String,
    pub enctype: u16,
    /// The key version number: a keytab in the middle of a rotation holds two.
    pub kvno: u32,
}

pub fn read(path: &Path) -> Result<Vec<Entry>, String> {
    let data = std::fs::read(path).map_err(|e| format!("cannot read the keytab: {e}"))?;
    parse(&data)
}

/// The entries of a keytab, deleted ones (negative sizes) skipped. A file
/// with the header and no entry is not an error here: callers say "no keys".
pub fn parse(data: &[u8]) -> Result<Vec<Entry>, String> {
    if data.is_empty() {
        return Err("the keytab is empty (0 bytes)".into());
    }
    if data.get(..2) != Some(&[0x05, 0x02]) {
        return Err("not an MIT keytab (version 0x0502)".into());
    }
    let mut at = 2;
    let mut out = Vec::new();
    // Fewer than four bytes left cannot be an entry: MIT stops there too.
    while let Some(size) = data.get(at..at + 4) {
        let size = i32::from_be_bytes([size[0], size[1], size[2], size[3]]);
        at += 4;
        let len = size.unsigned_abs() as usize;
        let entry = data.get(at..).and_then(|rest| rest.get(..len)).ok_or_else(|| truncated(at - 4))?;
        at += len;
        if size > 0 {
            out.push(parse_entry(entry).ok_or_else(|| truncated(at - len - 4))?);
        }
    }
    Ok(out)
}

fn truncated(offset: usize) -> String {
    format!("not a whole MIT keytab: the entry at byte {offset} is truncated or malformed")
}

/// count(16) realm(string) components(string × count) name_type(32)
/// timestamp(32) kvno(8) enctype(16) key...; strings are a 16-bit length and
/// the bytes.
fn parse_entry(entry: &[u8]) -> Option<Entry> {
    let mut p = Cursor { bytes: entry, at: 0 };
    let components = p.u16()?;
    let realm = p.string()?;
    let mut parts = Vec::new();
    for _ in 0..components {
        parts.push(p.string()?);
    }
    p.skip(4 + 4)?;
    let kvno8 = p.take(1)?[0];
    let enctype = p.u16()?;
    let key_len = p.u16()? as usize;
    p.skip(key_len)?;
    // The 32-bit kvno after the key, when there and not zero (kvnos above 255
    // need it); else the 8-bit one.
    let kvno = match p.take(4) {
        Some(b) if b != [0; 4] => u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
        _ => u32::from(kvno8),
    };
    Some(Entry { principal: format!("{}@{realm}", parts.join("/")), enctype, kvno })
}

struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Cursor<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        let out = self.bytes.get(self.at..)?.get(..n)?;
        self.at += n;
        Some(out)
    }

    fn skip(&mut self, n: usize) -> Option<()> {
        self.take(n).map(|_| ())
    }

    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }

    fn string(&mut self) -> Option<String> {
        let n = self.u16()? as usize;
        self.take(n).map(|b| String::from_utf8_lossy(b).into_owned())
    }
}

/// A keytab file's bytes for `principals` (`svc@AD.TEST`), one AES key each.
#[cfg(test)]
pub fn for_tests(principals: &[&str]) -> Vec<u8> {
    let mut kt = vec![0x05, 0x02];
    for p in principals {
        let (name, realm) = p.split_once('@').unwrap();
        kt.extend(tests::entry(&name.split('/').collect::<Vec<_>>(), realm, 18));
    }
    kt
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn entry(principal: &[&str], realm: &str, enctype: u16) -> Vec<u8> {
        let mut e = Vec::new();
        e.extend_from_slice(&(principal.len() as u16).to_be_bytes());
        for s in std::iter::once(&realm).chain(principal.iter()) {
            e.extend_from_slice(&(s.len() as u16).to_be_bytes());
            e.extend_from_slice(s.as_bytes());
        }
        e.extend_from_slice(&1u32.to_be_bytes()); // KRB5_NT_PRINCIPAL
        e.extend_from_slice(&0u32.to_be_bytes());
        e.push(2);
        e.extend_from_slice(&enctype.to_be_bytes());
        e.extend_from_slice(&16u16.to_be_bytes());
        e.extend_from_slice(&[0u8; 16]);
        let mut framed = (e.len() as i32).to_be_bytes().to_vec();
        framed.extend(e);
        framed
    }

    fn names(entries: &[Entry]) -> Vec<(&str, u16)> {
        entries.iter().map(|e| (e.principal.as_str(), e.enctype)).collect()
    }

    #[test]
    fn entries_and_deleted_entries() {
        let mut kt = vec![0x05, 0x02];
        kt.extend(entry(&["svc-proxy"], "AD.TEST", 18));
        kt.extend(entry(&["HTTP", "proxy.ad.test"], "AD.TEST", 23));
        let mut deleted = entry(&["old"], "AD.TEST", 18);
        let size = i32::from_be_bytes(deleted[..4].try_into().unwrap());
        deleted[..4].copy_from_slice(&(-size).to_be_bytes());
        kt.extend(deleted);
        // A hole MIT leaves after removing an entry: size 0.
        kt.extend(0i32.to_be_bytes());
        assert_eq!(names(&parse(&kt).unwrap()), [("svc-proxy@AD.TEST", 18), ("HTTP/proxy.ad.test@AD.TEST", 23)]);
    }

    #[test]
    fn empty_short_and_foreign_files() {
        assert_eq!(parse(b"").unwrap_err(), "the keytab is empty (0 bytes)");
        assert_eq!(parse(&[0x05]).unwrap_err(), "not an MIT keytab (version 0x0502)");
        assert_eq!(parse(&[0x05, 0x01]).unwrap_err(), "not an MIT keytab (version 0x0502)");
        assert_eq!(parse(b"\x05\x02").unwrap(), vec![], "a header alone: no entries");
        // Trailing bytes too few for a size are ignored, as MIT does.
        assert_eq!(parse(&[0x05, 0x02, 0x00, 0x00]).unwrap(), vec![]);
        let e = read(Path::new("/nonexistent/k.keytab")).unwrap_err();
        assert!(e.starts_with("cannot read the keytab: "), "{e}");
    }

    #[test]
    fn truncated_and_lying_entries_are_refused_without_panic() {
        let mut kt = vec![0x05, 0x02];
        kt.extend(entry(&["svc"], "AD.TEST", 18));
        for cut in 3..kt.len() {
            let e = parse(&kt[..cut]);
            // Below 6 bytes there is no whole size field: no entry, no error.
            if cut >= 6 {
                assert!(e.unwrap_err().contains("the entry at byte 2 is truncated"), "cut at {cut}");
            }
        }
        // Sizes far beyond the file, both signs, and the most negative one.
        for size in [i32::MAX, -i32::MAX, i32::MIN, 1 << 20] {
            let mut kt = vec![0x05, 0x02];
            kt.extend(size.to_be_bytes());
            kt.extend([0u8; 8]);
            assert!(parse(&kt).unwrap_err().contains("truncated"), "size {size}");
        }
        // An entry whose own lengths lie: 65535 components, a realm longer than the entry.
        for inner in [vec![0xff, 0xff, 0, 1, b'R'], vec![0, 1, 0xff, 0xff, b'R']] {
            let mut kt = vec![0x05, 0x02];
            kt.extend((inner.len() as i32).to_be_bytes());
            kt.extend(&inner);
            assert!(parse(&kt).unwrap_err().contains("malformed"), "{inner:?}");
        }
        // A well-formed entry followed by a broken one: the file is refused.
        let mut kt = vec![0x05, 0x02];
        kt.extend(entry(&["svc"], "AD.TEST", 18));
        let second = kt.len();
        kt.extend(7i32.to_be_bytes());
        kt.extend([0u8; 7]);
        assert!(parse(&kt).unwrap_err().contains(&format!("byte {second}")));
    }
}
