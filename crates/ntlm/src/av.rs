//! AV_PAIR lists (MS-NLMP 2.2.2.1): the server's TargetInfo, and the copy the
//! client returns inside its NTLMv2 response with its own additions (flags,
//! channel bindings, target name).

use crate::Error;

pub const EOL: u16 = 0;
pub const NB_COMPUTER_NAME: u16 = 1;
pub const NB_DOMAIN_NAME: u16 = 2;
pub const DNS_COMPUTER_NAME: u16 = 3;
pub const DNS_DOMAIN_NAME: u16 = 4;
pub const FLAGS: u16 = 6;
pub const TIMESTAMP: u16 = 7;
pub const TARGET_NAME: u16 = 9;
pub const CHANNEL_BINDINGS: u16 = 10;

/// MsvAvFlags bit: the AUTHENTICATE message carries a MIC.
pub const FLAG_MIC_PRESENT: u32 = 0x0000_0002;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AvPairs(pub Vec<(u16, Vec<u8>)>);

impl AvPairs {
    /// Parses a list that must end with MsvAvEOL; bytes after it are ignored
    /// (clients pad the NTLMv2 blob).
    pub fn parse(mut bytes: &[u8]) -> Result<AvPairs, Error> {
        let mut pairs = Vec::new();
        loop {
            if bytes.len() < 4 {
                return Err(Error::BadAvPairs);
            }
            let id = u16::from_le_bytes([bytes[0], bytes[1]]);
            let len = u16::from_le_bytes([bytes[2], bytes[3]]) as usize;
            let value = bytes.get(4..4 + len).ok_or(Error::BadAvPairs)?;
            if id == EOL {
                return Ok(AvPairs(pairs));
            }
            if pairs.len() >= 64 {
                return Err(Error::BadAvPairs);
            }
            pairs.push((id, value.to_vec()));
            bytes = &bytes[4 + len..];
        }
    }

    pub fn get(&self, id: u16) -> Option<&[u8]> {
        self.0.iter().find(|(i, _)| *i == id).map(|(_, v)| v.as_slice())
    }

    pub fn flags(&self) -> u32 {
        match self.get(FLAGS) {
            Some(&[a, b, c, d]) => u32::from_le_bytes([a, b, c, d]),
            _ => 0,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for (id, value) in &self.0 {
            out.extend_from_slice(&id.to_le_bytes());
            out.extend_from_slice(&(value.len() as u16).to_le_bytes());
            out.extend_from_slice(value);
        }
        out.extend_from_slice(&[0, 0, 0, 0]);
        out
    }
}
