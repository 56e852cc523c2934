//! The one PAC buffer gatehouse reads: UPN_DNS_INFO (MS-PAC 2.10), which names
//! the user's UPN. MIT hands it over only from a PAC whose server checksum it
//! verified, but its contents are still parsed as untrusted bytes: every offset
//! and length is checked, nothing panics.

/// The user's UPN and DNS domain, from a UPN_DNS_INFO buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpnDnsInfo {
    pub upn: String,
    pub dns_domain: String,
    /// The account has no userPrincipalName attribute; `upn` is the implicit
    /// one (sAMAccountName@dns domain), which AD resolves all the same.
    pub implicit: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PacError {
    Truncated,
    OutOfBounds(&'static str),
    OddLength(&'static str),
    NotUtf16(&'static str),
    Empty(&'static str),
}

impl std::fmt::Display for PacError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PacError::Truncated => f.write_str("UPN_DNS_INFO is shorter than its header"),
            PacError::OutOfBounds(what) => write!(f, "UPN_DNS_INFO: the {what} lies outside the buffer"),
            PacError::OddLength(what) => write!(f, "UPN_DNS_INFO: the {what} has an odd length"),
            PacError::NotUtf16(what) => write!(f, "UPN_DNS_INFO: the {what} is not UTF-16"),
            PacError::Empty(what) => write!(f, "UPN_DNS_INFO: the {what} is empty"),
        }
    }
}

const FLAG_UPN_CONSTRUCTED: u32 = 0x1;

pub fn parse_upn_dns_info(buf: &[u8]) -> Result<UpnDnsInfo, PacError> {
    let header = buf.get(..12).ok_or(PacError::Truncated)?;
    let u16_at = |i: usize| u16::from_le_bytes([header[i], header[i + 1]]) as usize;
    let flags = u32::from_le_bytes([header[8], header[9], header[10], header[11]]);
    let upn = utf16(buf, u16_at(2), u16_at(0), "UPN")?;
    let dns_domain = utf16(buf, u16_at(6), u16_at(4), "DNS domain name")?;
    Ok(UpnDnsInfo { upn, dns_domain, implicit: flags & FLAG_UPN_CONSTRUCTED != 0 })
}

fn utf16(buf: &[u8], offset: usize, len: usize, what: &'static str) -> Result<String, PacError> {
    if len == 0 {
        return Err(PacError::Empty(what));
    }
    if len % 2 != 0 {
        return Err(PacError::OddLength(what));
    }
    let bytes = offset.checked_add(len).and_then(|end| buf.get(offset..end)).ok_or(PacError::OutOfBounds(what))?;
    let units: Vec<u16> = bytes.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect();
    let s = String::from_utf16(&units).map_err(|_| PacError::NotUtf16(what))?;
    if s.chars().any(char::is_control) {
        return Err(PacError::NotUtf16(what));
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utf16le(s: &str) -> Vec<u8> {
        s.encode_utf16().flat_map(u16::to_le_bytes).collect()
    }

    /// Laid out as Windows does: header, then the strings, 8-byte aligned.
    fn buffer(upn: &str, domain: &str, flags: u32) -> Vec<u8> {
        let (u, d) = (utf16le(upn), utf16le(domain));
        let upn_off = 16usize;
        let dom_off = (upn_off + u.len() + 7) & !7;
        let mut b = Vec::new();
        b.extend_from_slice(&(u.len() as u16).to_le_bytes());
        b.extend_from_slice(&(upn_off as u16).to_le_bytes());
        b.extend_from_slice(&(d.len() as u16).to_le_bytes());
        b.extend_from_slice(&(dom_off as u16).to_le_bytes());
        b.extend_from_slice(&flags.to_le_bytes());
        b.resize(upn_off, 0);
        b.extend_from_slice(&u);
        b.resize(dom_off, 0);
        b.extend_from_slice(&d);
        b
    }

    #[test]
    fn reads_upn_and_domain() {
        let info = parse_upn_dns_info(&buffer("carol.jones@corp.example", "AD.TEST", 0)).unwrap();
        assert_eq!(
            info,
            UpnDnsInfo { upn: "carol.jones@corp.example".into(), dns_domain: "AD.TEST".into(), implicit: false }
        );
        assert!(parse_upn_dns_info(&buffer("bob@ad.test", "AD.TEST", 3)).unwrap().implicit);
    }

    #[test]
    fn every_truncation_and_byte_flip_is_an_answer_not_a_panic() {
        let good = buffer("carol.jones@corp.example", "AD.TEST", 2);
        for n in 0..good.len() {
            let _ = parse_upn_dns_info(&good[..n]);
        }
        for i in 0..good.len() {
            for v in [0u8, 1, 0x7f, 0x80, 0xff] {
                let mut b = good.clone();
                b[i] = v;
                let _ = parse_upn_dns_info(&b);
            }
        }
    }

    #[test]
    fn refuses_bad_buffers() {
        assert_eq!(parse_upn_dns_info(&[0; 11]), Err(PacError::Truncated));
        let good = buffer("alice@ad.test", "AD.TEST", 0);
        // UPN running past the end.
        let mut b = good.clone();
        b[0] = 0xfe;
        assert_eq!(parse_upn_dns_info(&b), Err(PacError::OutOfBounds("UPN")));
        // Offset near u16::MAX.
        let mut b = good.clone();
        b[2..4].copy_from_slice(&0xfff0u16.to_le_bytes());
        assert_eq!(parse_upn_dns_info(&b), Err(PacError::OutOfBounds("UPN")));
        // Odd length.
        let mut b = good.clone();
        b[4] = 13;
        assert_eq!(parse_upn_dns_info(&b), Err(PacError::OddLength("DNS domain name")));
        // Empty UPN.
        let mut b = good.clone();
        b[0] = 0;
        b[1] = 0;
        assert_eq!(parse_upn_dns_info(&b), Err(PacError::Empty("UPN")));
        // A lone surrogate.
        let mut b = good.clone();
        b[16..18].copy_from_slice(&0xd800u16.to_le_bytes());
        assert_eq!(parse_upn_dns_info(&b), Err(PacError::NotUtf16("UPN")));
        // A control character (would forge log lines or header values).
        let mut b = good;
        b[16..18].copy_from_slice(&0x000au16.to_le_bytes());
        assert_eq!(parse_upn_dns_info(&b), Err(PacError::NotUtf16("UPN")));
    }
}
