//! The SASL GSSAPI mechanism's security-layer negotiation (RFC 4752 3.3):
//! once the GSS context is complete, the server sends four bytes (wrapped):
//! a bitmask of the layers it offers and the largest buffer it accepts;
//! the client answers with the one layer it chose, the largest buffer it
//! accepts, and an optional authorization identity.

use crate::Error;

/// No security layer.
pub const LAYER_NONE: u8 = 0x01;
/// Integrity protection (GSS wrap without confidentiality): what AD and
/// Samba require of a bind that is not over TLS.
pub const LAYER_INTEGRITY: u8 = 0x02;
pub const LAYER_CONFIDENTIALITY: u8 = 0x04;

/// The largest size three bytes hold.
pub const MAX_SIZE: u32 = 0x00ff_ffff;

/// One side's security-layer message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SecurityLayer {
    /// The server's: every layer it offers; the client's: the one it chose.
    pub layers: u8,
    /// The largest wrapped buffer this side can receive.
    pub max_size: u32,
}

impl SecurityLayer {
    /// The server's message, unwrapped: exactly four bytes.
    pub fn decode(bytes: &[u8]) -> Result<SecurityLayer, Error> {
        let [layers, a, b, c] = bytes else {
            return Err(Error::malformed("a security layer message that is not four bytes", 0));
        };
        Ok(SecurityLayer { layers: *layers, max_size: u32::from_be_bytes([0, *a, *b, *c]) })
    }

    /// The client's message, before wrapping.
    pub fn encode(&self, authzid: &[u8]) -> Result<Vec<u8>, Error> {
        if self.max_size > MAX_SIZE {
            return Err(Error::TooLarge {
                what: "a security layer's buffer size",
                len: self.max_size as usize,
                max: MAX_SIZE as usize,
            });
        }
        let size = self.max_size.to_be_bytes();
        let mut out = vec![self.layers, size[1], size[2], size[3]];
        out.extend_from_slice(authzid);
        Ok(out)
    }
}

/// The client's answer choosing integrity protection, receiving buffers of
/// up to `max_size` bytes; refused when the server does not offer
/// integrity, or offers it with no room for a buffer.
pub fn choose_integrity(offer: &SecurityLayer, max_size: u32) -> Result<SecurityLayer, Error> {
    if offer.layers & LAYER_INTEGRITY == 0 {
        return Err(Error::Refused("the server does not offer the integrity security layer"));
    }
    if offer.max_size == 0 {
        return Err(Error::Refused("the server offers a security layer but accepts no buffer (size 0)"));
    }
    Ok(SecurityLayer { layers: LAYER_INTEGRITY, max_size: max_size.min(MAX_SIZE) })
}
