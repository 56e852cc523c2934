//! NTLM session security with extended session security (MS-NLMP 3.4.4.2,
//! 3.4.5): the signatures SPNEGO's mechListMIC is made of. gatehouse signs and
//! checks one message in each direction (the mechanism list), but the state is
//! kept as the specification describes it (a sequence number and a running RC4
//! handle per direction), so that a second message would be handled correctly.

use md5::{Digest, Md5};
use rc4::{KeyInit, Rc4, StreamCipher};
use subtle::ConstantTimeEq;

use crate::crypto::hmac_md5;
use crate::flags::{EXTENDED_SESSION_SECURITY, KEY_EXCH, N128, N56};
use crate::Error;

const CLIENT_SIGN: &[u8] = b"session key to client-to-server signing key magic constant\0";
const CLIENT_SEAL: &[u8] = b"session key to client-to-server sealing key magic constant\0";
const SERVER_SIGN: &[u8] = b"session key to server-to-client signing key magic constant\0";
const SERVER_SEAL: &[u8] = b"session key to server-to-client sealing key magic constant\0";

/// The exported session key and the negotiated flags of a finished handshake.
#[derive(Clone)]
pub struct SessionKey {
    pub(crate) exported: [u8; 16],
    pub(crate) flags: u32,
}

/// Compared in constant time (tests compare whole handshake results).
impl PartialEq for SessionKey {
    fn eq(&self, other: &SessionKey) -> bool {
        bool::from(self.exported.ct_eq(&other.exported)) && self.flags == other.flags
    }
}

impl Eq for SessionKey {}

impl std::fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionKey(..)")
    }
}

/// One direction's keys and state.
struct Direction {
    sign_key: [u8; 16],
    seal: Rc4<rc4::consts::U16>,
    seq: u32,
}

/// The acceptor's side: checks what the client signed, signs for the client.
pub struct Session {
    from_client: Direction,
    to_client: Direction,
    key_exch: bool,
}

fn md5(parts: &[&[u8]]) -> [u8; 16] {
    let mut h = Md5::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// SIGNKEY (3.4.5.2).
pub fn sign_key(exported: &[u8; 16], client_to_server: bool) -> [u8; 16] {
    md5(&[exported, if client_to_server { CLIENT_SIGN } else { SERVER_SIGN }])
}

/// SEALKEY (3.4.5.3) with extended session security: the exported key cut to
/// the negotiated strength.
pub fn seal_key(exported: &[u8; 16], flags: u32, client_to_server: bool) -> [u8; 16] {
    let len = if flags & N128 != 0 {
        16
    } else if flags & N56 != 0 {
        7
    } else {
        5
    };
    md5(&[&exported[..len], if client_to_server { CLIENT_SEAL } else { SERVER_SEAL }])
}

impl Direction {
    fn new(key: &SessionKey, client_to_server: bool) -> Direction {
        let seal_key = seal_key(&key.exported, key.flags, client_to_server);
        Direction { sign_key: sign_key(&key.exported, client_to_server), seal: Rc4::new((&seal_key).into()), seq: 0 }
    }

    /// MAC (3.4.4.2): version 1, the first 8 bytes of HMAC_MD5(SignKey, SeqNum ||
    /// message), RC4-encrypted with the direction's running handle under key
    /// exchange, and the sequence number.
    fn signature(&mut self, message: &[u8], key_exch: bool) -> [u8; 16] {
        let seq = self.seq.to_le_bytes();
        let mac = hmac_md5(&self.sign_key, &[&seq, message]);
        let mut checksum: [u8; 8] = mac[..8].try_into().expect("16 > 8");
        if key_exch {
            self.seal.apply_keystream(&mut checksum);
        }
        self.seq = self.seq.wrapping_add(1);
        let mut out = [0u8; 16];
        out[..4].copy_from_slice(&1u32.to_le_bytes());
        out[4..12].copy_from_slice(&checksum);
        out[12..].copy_from_slice(&seq);
        out
    }
}

impl Session {
    /// Refused without extended session security: the older signature scheme
    /// (CRC32 under RC4) protects nothing, and NTLMv2 clients never need it.
    pub fn new(key: &SessionKey) -> Result<Session, Error> {
        if key.flags & EXTENDED_SESSION_SECURITY == 0 {
            return Err(Error::NoSessionSecurity);
        }
        Ok(Session {
            from_client: Direction::new(key, true),
            to_client: Direction::new(key, false),
            key_exch: key.flags & KEY_EXCH != 0,
        })
    }

    /// Checks the client's next signature over `message`, in constant time.
    pub fn verify(&mut self, message: &[u8], signature: &[u8]) -> Result<(), Error> {
        let expected = self.from_client.signature(message, self.key_exch);
        if signature.len() == 16 && bool::from(expected.ct_eq(signature)) {
            Ok(())
        } else {
            Err(Error::BadSignature)
        }
    }

    /// Signs `message` for the client.
    pub fn sign(&mut self, message: &[u8]) -> [u8; 16] {
        self.to_client.signature(message, self.key_exch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        s.split_whitespace().map(|b| u8::from_str_radix(b, 16).unwrap()).collect()
    }

    /// MS-NLMP 4.2.4.4 (GSS_WrapEx, NTLMv2): RandomSessionKey 0x55 x 16 with the
    /// 4.2.4 flags. The example seals the 18 bytes of "Plaintext" with the same
    /// handle before the checksum is encrypted, so the test does the same.
    #[test]
    fn ms_nlmp_4_2_4_4_vectors() {
        let exported = [0x55u8; 16];
        let flags = 0xe28a8233;
        assert_eq!(seal_key(&exported, flags, true).to_vec(), hex("59 f6 00 97 3c c4 96 0a 25 48 0a 7c 19 6e 4c 58"));
        assert_eq!(sign_key(&exported, true).to_vec(), hex("47 88 dc 86 1b 47 82 f3 5d 43 fd 98 fe 1a 2d 39"));
        let plaintext: Vec<u8> = "Plaintext".encode_utf16().flat_map(u16::to_le_bytes).collect();
        let mut d = Direction::new(&SessionKey { exported, flags }, true);
        let mut sealed = plaintext.clone();
        d.seal.apply_keystream(&mut sealed);
        assert_eq!(sealed, hex("54 e5 01 65 bf 19 36 dc 99 60 20 c1 81 1b 0f 06 fb 5f"));
        let mac = hmac_md5(&d.sign_key, &[&[0, 0, 0, 0], &plaintext]);
        assert_eq!(mac[..8].to_vec(), hex("70 35 28 51 f2 56 43 09"));
        assert_eq!(d.signature(&plaintext, true).to_vec(), hex("01 00 00 00 7f b3 8e c5 c5 5d 49 76 00 00 00 00"));
        assert_eq!(d.seq, 1);
    }

    #[test]
    fn client_signature_checked_and_sequence_advances() {
        let key = SessionKey { exported: [7; 16], flags: EXTENDED_SESSION_SECURITY | KEY_EXCH | N128 };
        // What the client computes, with its own fresh state.
        let mut client = Direction::new(&key, true);
        let first = client.signature(b"mechlist", true);
        let second = client.signature(b"mechlist", true);
        assert_ne!(first, second);
        let mut s = Session::new(&key).unwrap();
        assert_eq!(s.verify(b"mechlist", &second), Err(Error::BadSignature), "out of order");
        let mut s = Session::new(&key).unwrap();
        assert_eq!(s.verify(b"mechlisu", &first), Err(Error::BadSignature), "another message");
        let mut s = Session::new(&key).unwrap();
        assert_eq!(s.verify(b"mechlist", &first[..15]), Err(Error::BadSignature), "short");
        let mut s = Session::new(&key).unwrap();
        assert_eq!(s.verify(b"mechlist", &first), Ok(()));
        assert_eq!(s.verify(b"mechlist", &second), Ok(()));
        // The server's direction uses other keys.
        let mut s = Session::new(&key).unwrap();
        assert_ne!(s.sign(b"mechlist"), first);
        let no_ess = SessionKey { exported: [7; 16], flags: KEY_EXCH | N128 };
        assert!(matches!(Session::new(&no_ess), Err(Error::NoSessionSecurity)));
    }
}
