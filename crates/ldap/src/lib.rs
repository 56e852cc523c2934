//! The little LDAPv3 (RFC 4511) that gatehouse speaks to a domain
//! controller, to resolve account and group names to SIDs and back: a SASL
//! GSSAPI bind, searches by one attribute, an unbind. Pure: no I/O, no
//! unsafe. The caller (kcd's `directory.rs`) owns the socket and the GSS
//! context.
//!
//! - [`request`]: the requests, built from values (filters included: no
//!   filter strings, so no escaping to get wrong).
//! - [`decode_message`]: the server's messages, from untrusted bytes: every
//!   length checked against its parent, definite lengths only, nesting fixed
//!   by the grammar, no panics.
//! - [`MessageReader`]: a byte stream cut into messages.
//! - [`SecurityLayer`] and [`FrameReader`]: the SASL GSSAPI security layer
//!   (RFC 4752 3.3) and the four-byte length framing of protected buffers
//!   (RFC 4422 3.7).

#![forbid(unsafe_code)]

mod ber;
mod frame;
mod pdu;
pub mod request;
mod response;
mod sasl;

use std::fmt;

pub use frame::{frame, FrameReader};
pub use pdu::MessageReader;
pub use request::{Filter, Scope, Search};
pub use response::{
    code, code_name, decode_message, Attribute, BindResponse, ExtendedResponse, LdapResult, Message, Response,
    SearchEntry,
};
pub use sasl::{choose_integrity, SecurityLayer, LAYER_CONFIDENTIALITY, LAYER_INTEGRITY, LAYER_NONE, MAX_SIZE};

/// What is wrong with bytes from the server, or with a negotiation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// Not the BER or the message expected: `what` was wanted at byte `at`
    /// of the message (or of the stream, for the readers).
    Malformed { what: &'static str, at: usize },
    /// Longer than the limit set for it.
    TooLarge { what: &'static str, len: usize, max: usize },
    /// Well-formed, but not acceptable.
    Refused(&'static str),
}

impl Error {
    pub(crate) fn malformed(what: &'static str, at: usize) -> Error {
        Error::Malformed { what, at }
    }

    /// Positions counted from `by` bytes further on.
    pub(crate) fn offset(self, by: usize) -> Error {
        match self {
            Error::Malformed { what, at } => Error::Malformed { what, at: at + by },
            e => e,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Malformed { what, at } => write!(f, "malformed LDAP: expected {what} at byte {at}"),
            Error::TooLarge { what, len, max } => write!(f, "{what} of {len} bytes is larger than the {max} allowed"),
            Error::Refused(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for Error {}

/// For the fuzz target: every entry point on the same bytes. Panics only
/// when the readers disagree with the one-shot decoder.
pub fn fuzz_one(data: &[u8]) {
    let whole = decode_message(data);
    // The same bytes, fed one at a time, give the same answer.
    let mut reader = MessageReader::new(data.len());
    let mut streamed = None;
    for b in data {
        reader.feed(std::slice::from_ref(b));
        match reader.next_message() {
            Ok(None) => {}
            other => {
                streamed = Some(other);
                break;
            }
        }
    }
    if let (Ok(m), Some(Ok(Some(s)))) = (&whole, &streamed) {
        assert_eq!(m, s);
    }
    if whole.is_ok() {
        assert!(matches!(streamed, Some(Ok(Some(_)))), "the reader missed a whole message");
    }
    let mut frames = FrameReader::new(1 << 16);
    frames.feed(data);
    let mut total = 0;
    while let Ok(Some(f)) = frames.next_frame() {
        total += 4 + f.len();
        assert!(total <= data.len());
    }
    if let Ok(layer) = SecurityLayer::decode(data) {
        assert_eq!(layer.encode(b"").as_deref(), Ok(data));
        let _ = choose_integrity(&layer, MAX_SIZE);
    }
}

#[cfg(test)]
mod tests;
