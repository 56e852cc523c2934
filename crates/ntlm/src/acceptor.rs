//! The server side of the handshake, one state type per step.

use std::fmt;

use subtle::{Choice, ConditionallySelectable, ConstantTimeEq};

use crate::av::{self, AvPairs};
use crate::crypto;
use crate::flags::*;
use crate::wire::{self, Writer};
use crate::Error;

/// Windows time: 100-nanosecond intervals since 1601-01-01 UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct FileTime(pub u64);

impl FileTime {
    const UNIX_EPOCH_SECONDS: u64 = 11_644_473_600;

    pub fn from_unix(seconds: u64, nanos: u32) -> FileTime {
        FileTime((seconds + Self::UNIX_EPOCH_SECONDS) * 10_000_000 + u64::from(nanos / 100))
    }

    pub fn now() -> FileTime {
        let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        FileTime::from_unix(d.as_secs(), d.subsec_nanos())
    }
}

/// Extended Protection: what to demand of MsvAvChannelBindings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelBindingPolicy {
    Off,
    /// Checked when the client sends a non-zero value; absent or zero is accepted.
    WhenSupported,
    Required,
}

/// Who the acceptor says it is, and what it demands.
#[derive(Debug, Clone)]
pub struct AcceptorConfig {
    pub netbios_domain: String,
    pub netbios_computer: String,
    pub dns_domain: String,
    pub dns_computer: String,
    pub channel_binding: ChannelBindingPolicy,
    /// Largest accepted difference between the client's NTLMv2 timestamp and now,
    /// in 100 ns units.
    pub max_skew: u64,
}

impl AcceptorConfig {
    /// A fixed configuration for tests and the fuzzer.
    pub fn example() -> AcceptorConfig {
        AcceptorConfig {
            netbios_domain: "ADTEST".into(),
            netbios_computer: "GATEHOUSE".into(),
            dns_domain: "ad.test".into(),
            dns_computer: "gatehouse.ad.test".into(),
            channel_binding: ChannelBindingPolicy::WhenSupported,
            max_skew: 5 * 60 * 10_000_000,
        }
    }
}

pub struct Acceptor;

impl Acceptor {
    /// Reads the client's NEGOTIATE and answers with a CHALLENGE built around
    /// `server_challenge`, which must be fresh random bytes for every handshake.
    pub fn challenge(
        config: &AcceptorConfig,
        negotiate: &[u8],
        server_challenge: [u8; 8],
        now: FileTime,
    ) -> Result<ChallengeSent, Error> {
        wire::check_header(negotiate, 1)?;
        // Unicode is answered even to clients that offer only OEM (curl does, and
        // uses Unicode when told to, as with IIS); the AUTHENTICATE must then be
        // Unicode.
        let client_flags = wire::u32_at(negotiate, 12)?;
        let mut flags = UNICODE | NTLM | TARGET_TYPE_DOMAIN | TARGET_INFO | (client_flags & ECHOED);
        flags |= client_flags & (REQUEST_TARGET | EXTENDED_SESSION_SECURITY);

        let target_info = AvPairs(vec![
            (av::NB_DOMAIN_NAME, wire::utf16le(&config.netbios_domain)),
            (av::NB_COMPUTER_NAME, wire::utf16le(&config.netbios_computer)),
            (av::DNS_DOMAIN_NAME, wire::utf16le(&config.dns_domain)),
            (av::DNS_COMPUTER_NAME, wire::utf16le(&config.dns_computer)),
            (av::TIMESTAMP, now.0.to_le_bytes().to_vec()),
        ])
        .encode();

        let mut w = Writer::new(56);
        w.put(0, wire::SIGNATURE);
        w.put_u32(8, 2);
        w.put_u32(20, flags);
        w.put(24, &server_challenge);
        if flags & VERSION != 0 {
            // Windows 10 / Server 2019 (10.0.17763), NTLMSSP revision 15.
            w.put(48, &[10, 0, 0x63, 0x45, 0, 0, 0, 15]);
        }
        w.payload(12, &wire::utf16le(&config.netbios_domain));
        w.payload(40, &target_info);

        Ok(ChallengeSent { negotiate: negotiate.to_vec(), message: w.buf, server_challenge, config: config.clone() })
    }
}

/// The CHALLENGE is out; waiting for the AUTHENTICATE on the same connection.
pub struct ChallengeSent {
    negotiate: Vec<u8>,
    message: Vec<u8>,
    server_challenge: [u8; 8],
    config: AcceptorConfig,
}

impl fmt::Debug for ChallengeSent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChallengeSent").finish_non_exhaustive()
    }
}

impl ChallengeSent {
    /// The CHALLENGE message to send (base64 in `WWW-Authenticate: NTLM`).
    pub fn message(&self) -> &[u8] {
        &self.message
    }

    /// Parses the AUTHENTICATE and refuses what must never be accepted
    /// (NTLMv1, anonymous, malformed). The password is not checked yet.
    pub fn read_authenticate(self, msg: &[u8]) -> Result<AuthenticateReceived, Error> {
        wire::check_header(msg, 3)?;
        if msg.len() < 64 {
            return Err(Error::Truncated);
        }
        let lm = wire::slice_at(msg, 12)?;
        let nt = wire::slice_at(msg, 20)?;
        let domain = wire::slice_at(msg, 28)?;
        let user = wire::slice_at(msg, 36)?;
        let workstation = wire::slice_at(msg, 44)?;
        let encrypted_key = wire::slice_at(msg, 52)?;
        let flags = wire::u32_at(msg, 60)?;
        if flags & UNICODE == 0 {
            return Err(Error::NoUnicode);
        }
        if flags & ANONYMOUS != 0 || user.is_empty() || (nt.is_empty() && lm.iter().all(|&b| b == 0)) {
            return Err(Error::Anonymous);
        }
        // An NTLMv2 response is the 16-byte proof plus a blob of at least 28
        // bytes; anything shorter (24 bytes) is NTLMv1 or LM.
        if nt.len() < 16 + 28 {
            return Err(Error::NtlmV1);
        }
        let blob = &nt[16..];
        if blob[0] != 1 || blob[1] != 1 {
            return Err(Error::BadBlob);
        }
        let timestamp = FileTime(wire::u64_at(blob, 8)?);
        let pairs = AvPairs::parse(&blob[28..]).map_err(|_| Error::BadBlob)?;
        let mic_announced = pairs.flags() & av::FLAG_MIC_PRESENT != 0;
        if mic_announced {
            // The MIC sits at offset 72; no payload may overlap it.
            if msg.len() < 88 {
                return Err(Error::MicMissing);
            }
            for at in [12, 20, 28, 36, 44, 52] {
                let (offset, len) = wire::buffer_at(msg, at)?;
                if len > 0 && offset < 88 {
                    return Err(Error::MicMissing);
                }
            }
        }
        let encrypted_key = match encrypted_key.len() {
            0 => None,
            16 => {
                let mut k = [0u8; 16];
                k.copy_from_slice(encrypted_key);
                Some(k)
            }
            _ => return Err(Error::BadBuffer),
        };
        Ok(AuthenticateReceived {
            user: wire::from_utf16le(user)?,
            domain: wire::from_utf16le(domain)?,
            workstation: wire::from_utf16le(workstation)?,
            nt_response: nt.to_vec(),
            lm_response: lm.to_vec(),
            encrypted_key,
            flags,
            timestamp,
            pairs,
            mic_announced,
            message: msg.to_vec(),
            sent: self,
        })
    }
}

/// The secret that proves the password was checked: computed locally from the NT
/// hash, or returned by the domain controller (the "user session key").
#[derive(Clone)]
pub struct SessionBaseKey(pub [u8; 16]);

impl fmt::Debug for SessionBaseKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionBaseKey(..)")
    }
}

/// The AUTHENTICATE is parsed; the password has not been checked.
pub struct AuthenticateReceived {
    pub user: String,
    pub domain: String,
    pub workstation: String,
    nt_response: Vec<u8>,
    lm_response: Vec<u8>,
    encrypted_key: Option<[u8; 16]>,
    flags: u32,
    timestamp: FileTime,
    pairs: AvPairs,
    mic_announced: bool,
    message: Vec<u8>,
    sent: ChallengeSent,
}

impl fmt::Debug for AuthenticateReceived {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthenticateReceived")
            .field("user", &self.user)
            .field("domain", &self.domain)
            .field("workstation", &self.workstation)
            .finish_non_exhaustive()
    }
}

impl AuthenticateReceived {
    /// What a domain controller needs to check the response (NETLOGON pass-through).
    pub fn server_challenge(&self) -> [u8; 8] {
        self.sent.server_challenge
    }

    pub fn nt_response(&self) -> &[u8] {
        &self.nt_response
    }

    pub fn lm_response(&self) -> &[u8] {
        &self.lm_response
    }

    /// The SPN the client meant (MsvAvTargetName), if it said.
    pub fn target_name(&self) -> Option<String> {
        self.pairs.get(av::TARGET_NAME).and_then(|v| wire::from_utf16le(v).ok())
    }

    /// Checks the NTLMv2 proof against the user's NT hash, in constant time.
    ///
    /// The proof is keyed by NTOWFv2 over the user name and a domain, and
    /// clients do not all use the domain they put in the message: Windows XP
    /// SP3 names its own computer and computes the proof over no domain at
    /// all (the interop capture 08). Samba's password check, which a domain
    /// controller or winbind applies, tries the domain as sent, then in
    /// capitals, then none, always with the user name as sent; so does this
    /// one. The three are computed every time and the match is selected in
    /// constant time: the time taken does not tell which one matched.
    pub fn verify_with_nt_hash(&self, nt_hash: &[u8; 16]) -> Result<SessionBaseKey, Error> {
        let (sent, temp) = self.nt_response.split_at(16);
        let upper = self.domain.to_uppercase();
        let mut found = Choice::from(0);
        let mut key = [0u8; 16];
        for domain in [self.domain.as_str(), upper.as_str(), ""] {
            let response_key = crypto::ntowf_v2(nt_hash, &self.user, domain);
            let proof = crypto::nt_proof(&response_key, &self.sent.server_challenge, temp);
            // The first domain that matches gives the key, as in Samba.
            let take = proof.ct_eq(sent) & !found;
            let base = crypto::session_base_key(&response_key, &proof);
            for (k, b) in key.iter_mut().zip(base) {
                k.conditional_assign(&b, take);
            }
            found |= take;
        }
        if !bool::from(found) {
            return Err(Error::BadProof);
        }
        Ok(SessionBaseKey(key))
    }

    /// With the password checked, checks what binds the handshake together: the
    /// MIC over all three messages, the timestamp, the channel bindings.
    /// `expected_bindings` is [`crypto::tls_channel_bindings`] of the certificate
    /// this connection presented, or `None` without TLS.
    pub fn finish(
        self,
        key: SessionBaseKey,
        expected_bindings: Option<[u8; 16]>,
        now: FileTime,
    ) -> Result<Authenticated, Error> {
        let exported = match (self.flags & KEY_EXCH != 0, &self.encrypted_key) {
            (true, Some(wrapped)) => crypto::rc4(&key.0, wrapped),
            _ => key.0,
        };
        if self.mic_announced {
            let mut zeroed = self.message.clone();
            let sent_mic: [u8; 16] = zeroed[72..88].try_into().map_err(|_| Error::MicMissing)?;
            zeroed[72..88].fill(0);
            let mic = crypto::mic(&exported, &self.sent.negotiate, &self.sent.message, &zeroed);
            if !bool::from(mic.ct_eq(&sent_mic)) {
                return Err(Error::BadMic);
            }
        }
        if self.timestamp.0.abs_diff(now.0) > self.sent.config.max_skew {
            return Err(Error::StaleTimestamp);
        }
        let sent_bindings = self.pairs.get(av::CHANNEL_BINDINGS).filter(|v| v.iter().any(|&b| b != 0));
        let check = |sent: &[u8]| match expected_bindings {
            Some(expected) if bool::from(expected.ct_eq(sent)) => Ok(()),
            _ => Err(Error::ChannelBindingsMismatch),
        };
        match (self.sent.config.channel_binding, sent_bindings) {
            (ChannelBindingPolicy::Off, _) => {}
            (ChannelBindingPolicy::WhenSupported, None) => {}
            (ChannelBindingPolicy::WhenSupported, Some(sent)) => check(sent)?,
            (ChannelBindingPolicy::Required, None) => return Err(Error::ChannelBindingsMissing),
            (ChannelBindingPolicy::Required, Some(sent)) => check(sent)?,
        }
        Ok(Authenticated {
            user: self.user,
            domain: self.domain,
            workstation: self.workstation,
            session_key: crate::SessionKey { exported, flags: self.flags },
        })
    }
}

/// A user who proved who they are on this connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authenticated {
    pub user: String,
    pub domain: String,
    pub workstation: String,
    /// For signatures (SPNEGO's mechListMIC): [`crate::Session::new`].
    pub session_key: crate::SessionKey,
}

#[cfg(feature = "replay")]
mod replay;
#[cfg(test)]
mod tests;
