//! What a session cookie carries, inside its seal: the server-side session's
//! id, when the session was issued and when it ends at the latest, and
//! whether it was made on a public computer. The store holds the rest.

/// Ticket format version 1: 1 + 32 + 8 + 8 + 1 bytes.
const VERSION: u8 = 1;
pub const LEN: usize = 50;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ticket {
    /// The server-side session's id: 32 random bytes.
    pub id: [u8; 32],
    /// Seconds since the Unix epoch.
    pub issued: u64,
    /// The absolute end, seconds since the Unix epoch.
    pub ends: u64,
    pub public: bool,
}

impl Ticket {
    pub fn encode(&self) -> [u8; LEN] {
        let mut out = [0u8; LEN];
        out[0] = VERSION;
        out[1..33].copy_from_slice(&self.id);
        out[33..41].copy_from_slice(&self.issued.to_be_bytes());
        out[41..49].copy_from_slice(&self.ends.to_be_bytes());
        out[49] = u8::from(self.public);
        out
    }

    /// Exactly what [`Ticket::encode`] writes, nothing else.
    pub fn decode(bytes: &[u8]) -> Result<Ticket, crate::Refused> {
        let bad = crate::Refused::BadPayload;
        let bytes: &[u8; LEN] = bytes.try_into().map_err(|_| bad)?;
        if bytes[0] != VERSION || bytes[49] > 1 {
            return Err(bad);
        }
        let u64_at = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&bytes[i..i + 8]);
            u64::from_be_bytes(b)
        };
        let (issued, ends) = (u64_at(33), u64_at(41));
        if ends < issued {
            return Err(bad);
        }
        let mut id = [0u8; 32];
        id.copy_from_slice(&bytes[1..33]);
        Ok(Ticket { id, issued, ends, public: bytes[49] == 1 })
    }

    /// Still within its absolute lifetime at `now` (seconds since the epoch).
    pub fn live_at(&self, now: u64) -> bool {
        now < self.ends && now + 60 >= self.issued
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_strict_decoding() {
        let t = Ticket { id: [9; 32], issued: 1_700_000_000, ends: 1_700_003_600, public: true };
        let bytes = t.encode();
        assert_eq!(Ticket::decode(&bytes).unwrap(), t);
        assert!(Ticket::decode(&bytes[..LEN - 1]).is_err());
        assert!(Ticket::decode(&[bytes.as_slice(), &[0]].concat()).is_err());
        let mut v2 = bytes;
        v2[0] = 2;
        assert!(Ticket::decode(&v2).is_err(), "another version");
        let mut flag = bytes;
        flag[49] = 2;
        assert!(Ticket::decode(&flag).is_err(), "a flag value nobody writes");
        let backwards = Ticket { ends: 1, ..t.clone() };
        assert!(Ticket::decode(&backwards.encode()).is_err(), "ends before it was issued");
    }

    #[test]
    fn lifetime() {
        let t = Ticket { id: [1; 32], issued: 1000, ends: 2000, public: false };
        assert!(t.live_at(1000) && t.live_at(1999));
        assert!(!t.live_at(2000), "ended");
        assert!(t.live_at(950), "a clock a little behind the issuer's");
        assert!(!t.live_at(100), "issued far in the future: not ours");
    }
}
