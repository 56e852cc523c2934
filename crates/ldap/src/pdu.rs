//! An LDAP byte stream cut into messages, sans I/O: the plain TCP stream
//! before the bind, or the stream that the security layer's frames carry
//! (a server may cut a message across frames, or put several in one).

use crate::ber::header;
use crate::response::{decode_message, Message};
use crate::Error;

/// Feed it bytes as they arrive; take whole messages out.
#[derive(Debug)]
pub struct MessageReader {
    buf: Vec<u8>,
    max: usize,
    /// Bytes of the stream already taken out, for errors.
    consumed: usize,
}

impl MessageReader {
    /// `max`: the longest message (header included) accepted; a longer one
    /// is refused as soon as its header is in, before its content is kept.
    pub fn new(max: usize) -> MessageReader {
        MessageReader { buf: Vec::new(), max, consumed: 0 }
    }

    /// Appends bytes from the stream. The buffer holds at most one partial
    /// message plus what one feed adds: callers take messages out between
    /// feeds, and a message beyond `max` fails at its header.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes fed and not yet taken out as messages.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next whole message, None until all of it has been fed. After an
    /// error the stream is out of step: the caller drops the connection.
    pub fn next_message(&mut self) -> Result<Option<Message>, Error> {
        let Some(h) = header(&self.buf, self.consumed)? else { return Ok(None) };
        if h.tag != 0x30 {
            return Err(Error::malformed("an LDAPMessage (a SEQUENCE)", self.consumed));
        }
        let total = h.header_len + h.content_len;
        if total > self.max {
            return Err(Error::TooLarge { what: "an LDAP message", len: total, max: self.max });
        }
        if self.buf.len() < total {
            return Ok(None);
        }
        let message: Vec<u8> = self.buf.drain(..total).collect();
        let at = self.consumed;
        self.consumed += total;
        decode_message(&message).map(Some).map_err(|e| e.offset(at))
    }
}
