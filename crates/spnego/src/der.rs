//! The little DER SPNEGO needs: one-byte tags, definite lengths.

use crate::Error;

pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

/// Longer than any HTTP header gatehouse accepts; lengths beyond are refused
/// before any arithmetic on them.
const MAX_LEN: usize = 1 << 24;

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf, pos: 0 }
    }

    pub fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    pub fn position(&self) -> usize {
        self.pos
    }

    pub fn rest(&self) -> &'a [u8] {
        &self.buf[self.pos.min(self.buf.len())..]
    }

    pub fn peek_tag(&self) -> Option<u8> {
        self.buf.get(self.pos).copied()
    }

    pub fn finish(&self, what: &'static str) -> Result<(), Error> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(Error::Malformed(what))
        }
    }

    /// The next element, whatever its tag.
    pub fn any(&mut self, what: &'static str) -> Result<(u8, &'a [u8]), Error> {
        let tag = *self.buf.get(self.pos).ok_or(Error::Malformed(what))?;
        if tag & 0x1f == 0x1f {
            return Err(Error::Malformed("multi-byte tag"));
        }
        let mut at = self.pos + 1;
        let first = *self.buf.get(at).ok_or(Error::Malformed(what))?;
        at += 1;
        let len = if first < 0x80 {
            first as usize
        } else if first == 0x80 {
            return Err(Error::Malformed("indefinite length"));
        } else {
            let n = (first & 0x7f) as usize;
            if n > 4 {
                return Err(Error::Malformed("length of more than four bytes"));
            }
            let bytes = self.buf.get(at..at + n).ok_or(Error::Malformed(what))?;
            at += n;
            bytes.iter().fold(0usize, |acc, &b| (acc << 8) | b as usize)
        };
        if len > MAX_LEN {
            return Err(Error::Malformed("length too large"));
        }
        let value = self.buf.get(at..at + len).ok_or(Error::Malformed(what))?;
        self.pos = at + len;
        Ok((tag, value))
    }

    /// The next element, which must have `tag`.
    pub fn expect(&mut self, tag: u8, what: &'static str) -> Result<&'a [u8], Error> {
        let (t, v) = self.any(what)?;
        if t != tag {
            return Err(Error::Malformed(what));
        }
        Ok(v)
    }
}

pub struct Writer(Vec<u8>);

impl Writer {
    pub fn new() -> Writer {
        Writer(Vec::new())
    }

    pub fn tlv(tag: u8, value: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        let len = value.len();
        if len < 0x80 {
            out.push(len as u8);
        } else {
            let bytes = (len as u32).to_be_bytes();
            let skip = bytes.iter().take_while(|&&b| b == 0).count();
            out.push(0x80 | (4 - skip) as u8);
            out.extend_from_slice(&bytes[skip..]);
        }
        out.extend_from_slice(value);
        out
    }

    pub fn tagged(&mut self, tag: u8, inner: &[u8]) {
        self.0.extend_from_slice(&Writer::tlv(tag, inner));
    }

    pub fn raw(&mut self, bytes: &[u8]) {
        self.0.extend_from_slice(bytes);
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.0
    }
}
