//! Little-endian fields and NTLM "security buffers" (length, allocated length,
//! offset into the message), read without ever indexing out of bounds.

use crate::Error;

pub const SIGNATURE: &[u8; 8] = b"NTLMSSP\0";

pub fn u16_at(msg: &[u8], at: usize) -> Result<u16, Error> {
    msg.get(at..at + 2).map(|b| u16::from_le_bytes([b[0], b[1]])).ok_or(Error::Truncated)
}

pub fn u32_at(msg: &[u8], at: usize) -> Result<u32, Error> {
    msg.get(at..at + 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]])).ok_or(Error::Truncated)
}

pub fn u64_at(msg: &[u8], at: usize) -> Result<u64, Error> {
    let b = msg.get(at..at + 8).ok_or(Error::Truncated)?;
    let mut a = [0u8; 8];
    a.copy_from_slice(b);
    Ok(u64::from_le_bytes(a))
}

/// A security buffer's target: `(offset, length)` within the message, checked.
pub fn buffer_at(msg: &[u8], at: usize) -> Result<(usize, usize), Error> {
    let len = u16_at(msg, at)? as usize;
    let offset = u32_at(msg, at + 4)? as usize;
    if len == 0 {
        return Ok((offset.min(msg.len()), 0));
    }
    let end = offset.checked_add(len).ok_or(Error::BadBuffer)?;
    if end > msg.len() {
        return Err(Error::BadBuffer);
    }
    Ok((offset, len))
}

pub fn slice_at(msg: &[u8], at: usize) -> Result<&[u8], Error> {
    let (offset, len) = buffer_at(msg, at)?;
    Ok(&msg[offset..offset + len])
}

pub fn check_header(msg: &[u8], message_type: u32) -> Result<(), Error> {
    if msg.len() < 12 || &msg[..8] != SIGNATURE {
        return Err(Error::NotNtlm);
    }
    if u32_at(msg, 8)? != message_type {
        return Err(Error::WrongMessageType);
    }
    Ok(())
}

pub fn utf16le(text: &str) -> Vec<u8> {
    text.encode_utf16().flat_map(u16::to_le_bytes).collect()
}

pub fn from_utf16le(bytes: &[u8]) -> Result<String, Error> {
    if bytes.len() % 2 != 0 {
        return Err(Error::BadString);
    }
    let units: Vec<u16> = bytes.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect();
    String::from_utf16(&units).map_err(|_| Error::BadString)
}

/// Writes fixed header fields and appends payloads, filling in security buffers.
pub struct Writer {
    pub buf: Vec<u8>,
}

impl Writer {
    pub fn new(header_len: usize) -> Self {
        Writer { buf: vec![0; header_len] }
    }

    pub fn put_u32(&mut self, at: usize, v: u32) {
        self.buf[at..at + 4].copy_from_slice(&v.to_le_bytes());
    }

    pub fn put(&mut self, at: usize, bytes: &[u8]) {
        self.buf[at..at + bytes.len()].copy_from_slice(bytes);
    }

    /// Appends `payload` and points the security buffer at `at` to it.
    pub fn payload(&mut self, at: usize, payload: &[u8]) {
        let offset = self.buf.len() as u32;
        let len = payload.len() as u16;
        self.buf[at..at + 2].copy_from_slice(&len.to_le_bytes());
        self.buf[at + 2..at + 4].copy_from_slice(&len.to_le_bytes());
        self.buf[at + 4..at + 8].copy_from_slice(&offset.to_le_bytes());
        self.buf.extend_from_slice(payload);
    }
}
