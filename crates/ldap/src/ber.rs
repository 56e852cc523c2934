//! The BER that LDAP allows (RFC 4511 5.1): one-byte tags, definite lengths
//! only, OCTET STRINGs primitive only. Long-form lengths need not be minimal:
//! Active Directory writes every length in four bytes.

use crate::Error;

/// Longest content this module will consider; refused before any arithmetic.
/// Far beyond any message gatehouse accepts (the stream readers' limits are
/// smaller), so it only keeps the arithmetic small.
const MAX_LEN: usize = 1 << 28;

/// A TLV header: its tag, its own length, and the content's length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    pub tag: u8,
    pub header_len: usize,
    pub content_len: usize,
}

/// The header at the start of `buf`: None while `buf` is too short to hold
/// it (for stream readers), an error when it can never be valid. `at` is
/// `buf`'s offset in the message, for the error.
pub(crate) fn header(buf: &[u8], at: usize) -> Result<Option<Header>, Error> {
    let Some(&tag) = buf.first() else { return Ok(None) };
    if tag & 0x1f == 0x1f {
        return Err(Error::malformed("a multi-byte tag", at));
    }
    let Some(&first) = buf.get(1) else { return Ok(None) };
    let (header_len, content_len) = match first {
        0..=0x7f => (2, usize::from(first)),
        0x80 => return Err(Error::malformed("an indefinite length", at + 1)),
        0x81..=0x84 => {
            let n = usize::from(first & 0x7f);
            let Some(bytes) = buf.get(2..2 + n) else { return Ok(None) };
            (2 + n, bytes.iter().fold(0usize, |acc, &b| (acc << 8) | usize::from(b)))
        }
        _ => return Err(Error::malformed("a length of more than four bytes", at + 1)),
    };
    if content_len > MAX_LEN {
        return Err(Error::malformed("a length beyond any LDAP message", at + 1));
    }
    Ok(Some(Header { tag, header_len, content_len }))
}

/// Reads elements from a slice of one message. Every element is checked to
/// lie within its parent before it is returned; nothing here recurses, so
/// nesting is as deep as the grammar in `response.rs` and no deeper.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    /// `buf`'s offset in the whole message, for errors.
    base: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf, pos: 0, base: 0 }
    }

    pub fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    /// The offset of the next element in the whole message.
    pub fn at(&self) -> usize {
        self.base + self.pos
    }

    pub fn peek_tag(&self) -> Option<u8> {
        self.buf.get(self.pos).copied()
    }

    /// Nothing may follow the last element.
    pub fn finish(&self, what: &'static str) -> Result<(), Error> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(Error::malformed(what, self.at()))
        }
    }

    /// The next element, whatever its tag: the tag and a reader of its content.
    pub fn any(&mut self, what: &'static str) -> Result<(u8, Reader<'a>), Error> {
        let rest = self.buf.get(self.pos..).unwrap_or_default();
        let h = header(rest, self.at())?.ok_or(Error::malformed(what, self.at()))?;
        let start = self.pos + h.header_len;
        let end = start.checked_add(h.content_len).ok_or(Error::malformed(what, self.at()))?;
        let content = self.buf.get(start..end).ok_or(Error::malformed(what, self.at()))?;
        let inner = Reader { buf: content, pos: 0, base: self.base + start };
        self.pos = end;
        Ok((h.tag, inner))
    }

    /// The next element, which must have `tag`.
    pub fn expect(&mut self, tag: u8, what: &'static str) -> Result<Reader<'a>, Error> {
        let at = self.at();
        let (t, inner) = self.any(what)?;
        if t != tag {
            return Err(Error::malformed(what, at));
        }
        Ok(inner)
    }

    /// The next element if it has `tag`.
    pub fn optional(&mut self, tag: u8, what: &'static str) -> Result<Option<Reader<'a>>, Error> {
        if self.peek_tag() == Some(tag) {
            self.expect(tag, what).map(Some)
        } else {
            Ok(None)
        }
    }

    /// The content bytes, all of them.
    pub fn bytes(&self) -> &'a [u8] {
        self.buf.get(self.pos..).unwrap_or_default()
    }

    pub fn octets(&mut self, tag: u8, what: &'static str) -> Result<&'a [u8], Error> {
        Ok(self.expect(tag, what)?.bytes())
    }

    /// A UTF-8 string (LDAPString, LDAPDN, AttributeDescription).
    pub fn text(&mut self, tag: u8, what: &'static str) -> Result<String, Error> {
        let at = self.at();
        let bytes = self.octets(tag, what)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| Error::malformed(what, at))
    }

    /// An INTEGER or ENUMERATED that must lie in `0..=i32::MAX` (every
    /// integer LDAP sends back: message ids, result codes).
    pub fn small_uint(&mut self, tag: u8, what: &'static str) -> Result<u32, Error> {
        let at = self.at();
        let bytes = self.octets(tag, what)?;
        if bytes.is_empty() || bytes.len() > 8 {
            return Err(Error::malformed(what, at));
        }
        let negative = bytes.first().is_some_and(|b| b & 0x80 != 0);
        let value = bytes.iter().fold(if negative { -1i64 } else { 0 }, |acc, &b| (acc << 8) | i64::from(b));
        u32::try_from(value).ok().filter(|v| *v <= i32::MAX as u32).ok_or(Error::malformed(what, at))
    }
}

/// Encodes BER as LDAP wants it: definite lengths in the shortest form.
pub(crate) fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + 6);
    out.push(tag);
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        // Requests are built from gatehouse's own values, far below 4 GiB.
        let bytes = (len as u32).to_be_bytes();
        let skip = bytes.iter().take_while(|&&b| b == 0).count();
        out.push(0x80 | (4 - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
    out
}

/// An INTEGER's content: two's complement, shortest form.
pub(crate) fn integer(tag: u8, value: i64) -> Vec<u8> {
    let bytes = value.to_be_bytes();
    let mut start = 0;
    // A leading byte may go when it only repeats the sign of the next.
    while start < 7 {
        let (b, next) = (bytes[start], bytes[start + 1]);
        if (b == 0 && next & 0x80 == 0) || (b == 0xff && next & 0x80 != 0) {
            start += 1;
        } else {
            break;
        }
    }
    tlv(tag, &bytes[start..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_in_every_form_and_refusals() {
        assert_eq!(header(&[0x30, 0x05], 0).unwrap(), Some(Header { tag: 0x30, header_len: 2, content_len: 5 }));
        assert_eq!(header(&[0x30, 0x81, 0x80], 0).unwrap().unwrap().content_len, 0x80);
        // AD's non-minimal four-byte form.
        assert_eq!(
            header(&[0x30, 0x84, 0, 0, 0, 5], 0).unwrap(),
            Some(Header { tag: 0x30, header_len: 6, content_len: 5 })
        );
        assert_eq!(header(&[], 0).unwrap(), None);
        assert_eq!(header(&[0x30], 0).unwrap(), None);
        assert_eq!(header(&[0x30, 0x84, 0, 0], 0).unwrap(), None);
        assert!(header(&[0x30, 0x80], 0).is_err(), "indefinite");
        assert!(header(&[0x30, 0x85, 0, 0, 0, 0, 1], 0).is_err(), "five length bytes");
        assert!(header(&[0x30, 0xff], 0).is_err());
        assert!(header(&[0x3f, 0x01], 0).is_err(), "multi-byte tag");
        assert!(header(&[0x30, 0x84, 0x7f, 0xff, 0xff, 0xff], 0).is_err(), "beyond MAX_LEN");
    }

    #[test]
    fn encoded_lengths_are_shortest_and_read_back() {
        for len in [0usize, 1, 0x7f, 0x80, 0xff, 0x100, 0xffff, 0x10000] {
            let content = vec![0xab; len];
            let enc = tlv(0x04, &content);
            let h = header(&enc, 0).unwrap().unwrap();
            assert_eq!((h.tag, h.content_len, h.header_len + len), (0x04, len, enc.len()), "{len}");
            let expected_header = match len {
                0..=0x7f => 2,
                0x80..=0xff => 3,
                0x100..=0xffff => 4,
                _ => 5,
            };
            assert_eq!(h.header_len, expected_header, "{len}");
        }
    }

    #[test]
    fn integers_shortest_twos_complement_and_range_checked() {
        for (value, content) in [
            (0i64, &[0u8][..]),
            (1, &[1]),
            (127, &[0x7f]),
            (128, &[0x00, 0x80]),
            (256, &[0x01, 0x00]),
            (-1, &[0xff]),
            (-128, &[0x80]),
            (-129, &[0xff, 0x7f]),
            (i32::MAX as i64, &[0x7f, 0xff, 0xff, 0xff]),
        ] {
            assert_eq!(integer(0x02, value), tlv(0x02, content), "{value}");
        }
        let read = |bytes: &[u8]| Reader::new(bytes).small_uint(0x02, "int");
        assert_eq!(read(&integer(0x02, 5)).unwrap(), 5);
        assert_eq!(read(&integer(0x02, i32::MAX as i64)).unwrap(), i32::MAX as u32);
        // Non-minimal but valid BER is read.
        assert_eq!(read(&[0x02, 0x03, 0x00, 0x00, 0x07]).unwrap(), 7);
        for bad in [&[0x02, 0x00][..], &[0x02, 0x01, 0xff], &[0x02, 0x05, 0x00, 0x80, 0, 0, 0], &[0x0a, 0x01, 0x01]] {
            assert!(read(bad).is_err(), "{bad:?}");
        }
        assert!(read(&[0x02, 0x09, 0, 0, 0, 0, 0, 0, 0, 0, 1]).is_err(), "nine bytes");
    }

    #[test]
    fn an_element_longer_than_its_parent_is_refused() {
        // A SEQUENCE of 3 bytes holding an OCTET STRING that claims 5.
        let mut outer = Reader::new(&[0x30, 0x03, 0x04, 0x05, 0x61, 0x62, 0x63, 0x64]);
        let mut inner = outer.expect(0x30, "seq").unwrap();
        assert!(inner.octets(0x04, "str").is_err());
        let mut r = Reader::new(&[0x04, 0x02, 0x61]);
        assert!(r.octets(0x04, "str").is_err());
        let mut r = Reader::new(&[0x04, 0x01, 0x61]);
        assert!(r.expect(0x24, "constructed string").is_err(), "wrong tag");
        let mut r = Reader::new(&[0x04, 0x01, 0x61, 0x00]);
        r.octets(0x04, "str").unwrap();
        assert!(r.finish("trailing").is_err());
        let mut r = Reader::new(&[0x04, 0x02, 0xc3, 0x28]);
        assert!(r.text(0x04, "utf-8").is_err());
    }

    #[test]
    fn errors_say_where() {
        let mut outer = Reader::new(&[0x30, 0x04, 0x04, 0x02, 0x61, 0x62, 0x04, 0x01]);
        let mut inner = outer.expect(0x30, "seq").unwrap();
        inner.octets(0x04, "first").unwrap();
        assert!(inner.is_empty());
        let e = outer.octets(0x04, "second").unwrap_err();
        assert_eq!(e, Error::malformed("second", 6));
    }
}
