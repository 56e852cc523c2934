//! A client that builds NEGOTIATE and AUTHENTICATE messages the way Windows
//! does, with switches to forge them: for tests (here and in gatehouse's
//! integration tests) and fuzz corpora. Not for production use.

use crate::av::{self, AvPairs};
use crate::crypto;
use crate::flags::*;
use crate::wire::{self, utf16le, Writer};

/// The client's settings; the defaults are a modern Windows client.
#[derive(Clone)]
pub struct Client {
    pub user: &'static str,
    /// The user name the proof is computed for (normally `user`).
    pub proof_user: &'static str,
    pub domain: &'static str,
    /// The domain the proof is computed for (normally `domain`; Windows XP
    /// uses none while naming its computer).
    pub proof_domain: Option<&'static str>,
    pub password: &'static str,
    pub flags: u32,
    pub mic: bool,
    pub bindings: Option<[u8; 16]>,
}

impl Client {
    pub fn new(user: &'static str, password: &'static str) -> Client {
        Client {
            user,
            proof_user: user,
            domain: "ADTEST",
            proof_domain: None,
            password,
            flags: UNICODE
                | NTLM
                | REQUEST_TARGET
                | EXTENDED_SESSION_SECURITY
                | ALWAYS_SIGN
                | SIGN
                | SEAL
                | N128
                | N56
                | KEY_EXCH
                | VERSION,
            mic: true,
            bindings: None,
        }
    }

    pub fn negotiate(&self) -> Vec<u8> {
        let mut w = Writer::new(40);
        w.put(0, wire::SIGNATURE);
        w.put_u32(8, 1);
        w.put_u32(12, self.flags);
        w.put(32, &[10, 0, 0x63, 0x45, 0, 0, 0, 15]);
        w.buf
    }

    pub fn authenticate(&self, negotiate: &[u8], challenge: &[u8]) -> Vec<u8> {
        let server_challenge: [u8; 8] = challenge[24..32].try_into().unwrap();
        let target_info = AvPairs::parse(wire::slice_at(challenge, 40).unwrap()).unwrap();
        let time = target_info.get(av::TIMESTAMP).unwrap().to_vec();
        let mut pairs = target_info.clone();
        if self.mic {
            pairs.0.push((av::FLAGS, av::FLAG_MIC_PRESENT.to_le_bytes().to_vec()));
        }
        if let Some(b) = self.bindings {
            pairs.0.push((av::CHANNEL_BINDINGS, b.to_vec()));
        }
        pairs.0.push((av::TARGET_NAME, utf16le("HTTP/gatehouse.ad.test")));
        let mut blob = vec![1, 1, 0, 0, 0, 0, 0, 0];
        blob.extend_from_slice(&time);
        blob.extend_from_slice(&[0x11; 8]);
        blob.extend_from_slice(&[0; 4]);
        blob.extend_from_slice(&pairs.encode());
        blob.extend_from_slice(&[0; 4]);
        let key = crypto::ntowf_v2(
            &crypto::nt_hash(self.password),
            self.proof_user,
            self.proof_domain.unwrap_or(self.domain),
        );
        let proof = crypto::nt_proof(&key, &server_challenge, &blob);
        let base = crypto::session_base_key(&key, &proof);
        let mut nt = proof.to_vec();
        nt.extend_from_slice(&blob);
        let exported = [0x55u8; 16];
        let wrapped = crypto::rc4(&base, &exported);

        let mut w = Writer::new(88);
        w.put(0, wire::SIGNATURE);
        w.put_u32(8, 3);
        w.put_u32(60, self.flags);
        w.put(64, &[10, 0, 0x63, 0x45, 0, 0, 0, 15]);
        w.payload(28, &utf16le(self.domain));
        w.payload(36, &utf16le(self.user));
        w.payload(44, &utf16le("LAPTOP"));
        w.payload(12, &[0; 24]);
        w.payload(20, &nt);
        if self.flags & KEY_EXCH != 0 {
            w.payload(52, &wrapped);
        }
        let mut msg = w.buf;
        if self.mic {
            let key = if self.flags & KEY_EXCH != 0 { exported } else { base };
            let mic = crypto::mic(&key, negotiate, challenge, &msg);
            msg[72..88].copy_from_slice(&mic);
        }
        msg
    }
}
