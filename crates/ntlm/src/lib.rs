//! NTLM (MS-NLMP) for a server: message codec and an NTLMv2 acceptor, with no
//! I/O, no clock and no randomness of its own (the caller passes the time and
//! the server challenge), so that every step can be tested and fuzzed.
//!
//! The handshake is a chain of states, each its own type, as in rustls:
//!
//! ```text
//! NEGOTIATE --Acceptor::challenge--> ChallengeSent --read_authenticate--> AuthenticateReceived
//!     --verify_with_nt_hash (local) or the DC's answer (winbind)--> SessionBaseKey
//!     --finish--> Authenticated
//! ```
//!
//! What is refused, always: NTLMv1 and LM responses, anonymous logons, messages
//! that do not parse, proofs that do not match (compared in constant time), a
//! MIC that the client announced and that does not match, a client timestamp
//! outside the window, and channel bindings that the policy requires and that
//! are missing or wrong.

#![forbid(unsafe_code)]

mod acceptor;
pub mod av;
#[cfg(any(test, feature = "client"))]
pub mod client;
pub mod crypto;
pub mod flags;
mod session;
mod wire;

pub use acceptor::{
    Acceptor, AcceptorConfig, AuthenticateReceived, Authenticated, ChallengeSent, ChannelBindingPolicy, FileTime,
    SessionBaseKey,
};
pub use session::{Session, SessionKey};

use std::fmt;

/// Why a message or a logon was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    NotNtlm,
    WrongMessageType,
    Truncated,
    BadBuffer,
    BadString,
    BadAvPairs,
    /// The client does not offer Unicode.
    NoUnicode,
    /// An NTLMv1 or LM-only response.
    NtlmV1,
    Anonymous,
    /// The NTLMv2 blob is malformed.
    BadBlob,
    /// The NTProofStr does not match: wrong password, another user's proof, or forgery.
    BadProof,
    /// The client announced a MIC and it does not match (tampered messages).
    BadMic,
    /// The MIC is announced but a payload overlaps where it must be.
    MicMissing,
    /// The client's timestamp is outside the allowed window (replay).
    StaleTimestamp,
    ChannelBindingsMissing,
    ChannelBindingsMismatch,
    /// A signature (SPNEGO's mechListMIC) was needed without extended session security.
    NoSessionSecurity,
    /// A signature (SPNEGO's mechListMIC) does not match.
    BadSignature,
}

impl Error {
    pub fn cause(&self) -> &'static str {
        match self {
            Error::NotNtlm => "not an NTLM message",
            Error::WrongMessageType => "unexpected NTLM message type",
            Error::Truncated => "NTLM message truncated",
            Error::BadBuffer => "NTLM field points outside the message",
            Error::BadString => "NTLM string is not valid UTF-16",
            Error::BadAvPairs => "malformed AV pairs",
            Error::NoUnicode => "client does not offer Unicode",
            Error::NtlmV1 => "NTLMv1/LM response refused (NTLMv2 only)",
            Error::Anonymous => "anonymous NTLM logon refused",
            Error::BadBlob => "malformed NTLMv2 response",
            Error::BadProof => "NTLMv2 proof does not match (wrong password or forged message)",
            Error::BadMic => "MIC does not match (messages were altered)",
            Error::MicMissing => "MIC announced but not where it must be",
            Error::StaleTimestamp => "NTLMv2 timestamp outside the allowed window",
            Error::ChannelBindingsMissing => "channel bindings required but not sent",
            Error::ChannelBindingsMismatch => "channel bindings do not match this TLS connection",
            Error::NoSessionSecurity => {
                "mechListMIC needs NTLM extended session security, which the client did not negotiate"
            }
            Error::BadSignature => "SPNEGO mechListMIC does not match (the mechanism list was altered)",
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.cause())
    }
}

impl std::error::Error for Error {}

/// Fuzzer entry: runs arbitrary bytes through every parser and, where they parse,
/// through verification. Must never panic.
pub fn fuzz_one(data: &[u8]) {
    let config = AcceptorConfig::example();
    let split = data.len() / 2;
    let (first, second) = data.split_at(split);
    if let Ok(sent) = Acceptor::challenge(&config, first, [7; 8], FileTime(0)) {
        if let Ok(received) = sent.read_authenticate(second) {
            if let Ok(key) = received.verify_with_nt_hash(&[0; 16]) {
                let _ = received.finish(key, None, FileTime(0));
            }
        }
    }
    let _ = av::AvPairs::parse(data);
}
