//! The SASL security layer's framing (RFC 4422 3.7): every buffer the layer
//! protects goes on the wire as a four-byte big-endian length and the
//! buffer. Sans I/O: feed bytes, take whole frames out.

use crate::Error;

/// Feed it bytes as they arrive; take whole frames out.
#[derive(Debug)]
pub struct FrameReader {
    buf: Vec<u8>,
    max: usize,
    /// Bytes of the connection already taken out, for errors.
    consumed: usize,
}

impl FrameReader {
    /// `max`: the largest frame accepted (the size gatehouse told the server
    /// it can receive); a longer one is refused as soon as its length is in.
    pub fn new(max: usize) -> FrameReader {
        FrameReader { buf: Vec::new(), max, consumed: 0 }
    }

    /// Appends bytes from the connection; as with [`crate::MessageReader`],
    /// callers take frames out between feeds.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next whole frame's buffer, None until all of it has been fed.
    /// After an error the connection is out of step and must be dropped.
    pub fn next_frame(&mut self) -> Result<Option<Vec<u8>>, Error> {
        let Some(len) = self.buf.get(..4) else { return Ok(None) };
        let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
        if len == 0 {
            // No protected buffer is empty (a GSS wrap token never is).
            return Err(Error::malformed("an empty security layer frame", self.consumed));
        }
        if len > self.max {
            return Err(Error::TooLarge { what: "a security layer frame", len, max: self.max });
        }
        if self.buf.len() - 4 < len {
            return Ok(None);
        }
        let frame = self.buf.get(4..4 + len).map(<[u8]>::to_vec).unwrap_or_default();
        self.buf.drain(..4 + len);
        self.consumed += 4 + len;
        Ok(Some(frame))
    }
}

/// `buffer` with its length in front, for the wire.
pub fn frame(buffer: &[u8]) -> Result<Vec<u8>, Error> {
    let len = u32::try_from(buffer.len()).map_err(|_| Error::TooLarge {
        what: "a security layer frame",
        len: buffer.len(),
        max: u32::MAX as usize,
    })?;
    let mut out = Vec::with_capacity(buffer.len() + 4);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(buffer);
    Ok(out)
}
