//! RPC over HTTP v2 (MS-RPCH, Outlook Anywhere) as a load balancer meets it:
//! the first RTS PDU of a channel, read as untrusted bytes, for the one value
//! that ties the two channels of a session together.
//!
//! An Outlook Anywhere session is a *virtual connection* made of an IN channel
//! (`RPC_IN_DATA`) and an OUT channel (`RPC_OUT_DATA`), two HTTP requests on
//! two TCP connections. Each channel's body begins with an RTS PDU that names
//! the virtual connection by a 16-byte cookie the client chose
//! (MS-RPCH 2.2.4): CONN/A1 on a new OUT channel, CONN/B1 on a new IN channel,
//! and, when a channel is replaced after its content length is used up,
//! IN_R1/A1 or IN_R2/A1 (IN) and OUT_R1/A3 or OUT_R2/A3 (OUT). All six carry
//! the virtual connection cookie as the Cookie command right after their
//! Version command; a proxy that sends both channels (and their successors)
//! of one cookie to one server keeps the session on that server.
//!
//! Only those six shapes are accepted, exactly as MS-RPCH lays them out
//! (header fields, flags, command count and order, lengths); anything else is
//! an error, never a guess. Nothing here panics on any input, and the longest
//! prefix ever asked for is [`MAX_START`] bytes.

#![forbid(unsafe_code)]

/// An RTS cookie (MS-RPCH 2.2.3.1): 16 bytes chosen by the client.
pub type Cookie = [u8; 16];

/// The longest channel-opening PDU (CONN/B1 is 104 bytes); a longer
/// `frag_length` is refused before more is read.
pub const MAX_START: usize = 128;

/// The common header (C706 12.6.1) plus the RTS Flags and NumberOfCommands.
const HEADER: usize = 20;
const PTYPE_RTS: u8 = 20;
const PFC_FIRST_LAST: u8 = 0x03;

const RTS_FLAG_NONE: u16 = 0x0000;
const RTS_FLAG_RECYCLE_CHANNEL: u16 = 0x0004;

// RTS command types (MS-RPCH 2.2.3.5) that the opening PDUs use.
const RECEIVE_WINDOW_SIZE: u32 = 0;
const COOKIE: u32 = 3;
const CHANNEL_LIFETIME: u32 = 4;
const CLIENT_KEEPALIVE: u32 = 5;
const VERSION: u32 = 6;
const ASSOCIATION_GROUP_ID: u32 = 12;

/// Which PDU opened the channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pdu {
    /// CONN/A1: a new OUT channel of a new virtual connection.
    ConnA1,
    /// CONN/B1: a new IN channel of a new virtual connection.
    ConnB1,
    /// IN_R1/A1 or IN_R2/A1: a successor IN channel of an existing one.
    InRecycle,
    /// OUT_R1/A3 or OUT_R2/A3: a successor OUT channel of an existing one.
    OutRecycle,
}

/// The direction of a channel, as its HTTP method says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    /// `RPC_IN_DATA`: client to server.
    In,
    /// `RPC_OUT_DATA`: server to client.
    Out,
}

/// What the first PDU of a channel says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelStart {
    pub pdu: Pdu,
    /// The virtual connection: the same in both channels of a session and in
    /// every successor channel.
    pub virtual_connection: Cookie,
    /// The channel's own cookie (the OUT or IN channel cookie, or the
    /// successor's for a replacement channel).
    pub channel: Cookie,
}

impl ChannelStart {
    pub fn direction(&self) -> Channel {
        match self.pdu {
            Pdu::ConnA1 | Pdu::OutRecycle => Channel::Out,
            Pdu::ConnB1 | Pdu::InRecycle => Channel::In,
        }
    }
}

/// Why bytes are not the start of a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// Not enough bytes yet: the PDU is `need` bytes long (at most [`MAX_START`]).
    Incomplete { need: usize },
    /// Not an RTS PDU at all (another protocol, or another RPC PDU type).
    NotRts,
    /// An RTS PDU whose header or commands break MS-RPCH's rules.
    Malformed(&'static str),
    /// A well-formed RTS PDU that opens no channel (a ping, a flow control ack).
    NotChannelStart,
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Incomplete { need } => write!(f, "incomplete RTS PDU ({need} bytes needed)"),
            Error::NotRts => f.write_str("not an RTS PDU"),
            Error::Malformed(why) => write!(f, "malformed RTS PDU: {why}"),
            Error::NotChannelStart => f.write_str("an RTS PDU that opens no channel"),
        }
    }
}

impl std::error::Error for Error {}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// The first PDU of a channel body, from the body's first bytes. More bytes
/// than the PDU are fine (the channel's next PDUs follow it).
pub fn channel_start(bytes: &[u8]) -> Result<ChannelStart, Error> {
    // The first bytes decide the protocol before a length is trusted.
    let checks: [(usize, u8, Option<&'static str>); 4] = [
        (0, 5, None),
        (1, 0, Some("rpc_vers_minor is not 0")),
        (2, PTYPE_RTS, None),
        (3, PFC_FIRST_LAST, Some("pfc_flags must be PFC_FIRST_FRAG | PFC_LAST_FRAG")),
    ];
    for (at, want, malformed) in checks {
        match bytes.get(at) {
            None => return Err(Error::Incomplete { need: HEADER }),
            Some(&b) if b == want => {}
            Some(_) => return Err(malformed.map_or(Error::NotRts, Error::Malformed)),
        }
    }
    let Some(frag_length) = u16_at(bytes, 8) else { return Err(Error::Incomplete { need: HEADER }) };
    let frag_length = usize::from(frag_length);
    if frag_length < HEADER {
        return Err(Error::Malformed("frag_length is shorter than the header"));
    }
    if frag_length > MAX_START {
        return Err(Error::NotChannelStart);
    }
    let Some(pdu) = bytes.get(..frag_length) else { return Err(Error::Incomplete { need: frag_length }) };
    if pdu[4..8] != [0x10, 0, 0, 0] {
        return Err(Error::Malformed("packed_drep must be little-endian, ASCII, IEEE"));
    }
    if u16_at(pdu, 10) != Some(0) {
        return Err(Error::Malformed("auth_length must be 0"));
    }
    if u32_at(pdu, 12) != Some(0) {
        return Err(Error::Malformed("call_id must be 0"));
    }
    let flags = u16_at(pdu, 16).unwrap_or(u16::MAX);
    let count = usize::from(u16_at(pdu, 18).unwrap_or(u16::MAX));
    let commands = commands(&pdu[HEADER..], count)?;
    let types: Vec<u32> = commands.iter().map(|c| c.0).collect();
    let cookie = |i: usize| -> Cookie {
        let mut c = [0u8; 16];
        if let Some(p) = commands.get(i).map(|c| c.1).filter(|p| p.len() == 16) {
            c.copy_from_slice(p);
        }
        c
    };
    let shape = match (flags, types.as_slice()) {
        (RTS_FLAG_NONE, [VERSION, COOKIE, COOKIE, RECEIVE_WINDOW_SIZE]) => Pdu::ConnA1,
        (RTS_FLAG_NONE, [VERSION, COOKIE, COOKIE, CHANNEL_LIFETIME, CLIENT_KEEPALIVE, ASSOCIATION_GROUP_ID]) => {
            Pdu::ConnB1
        }
        (RTS_FLAG_RECYCLE_CHANNEL, [VERSION, COOKIE, COOKIE, COOKIE]) => Pdu::InRecycle,
        (RTS_FLAG_RECYCLE_CHANNEL, [VERSION, COOKIE, COOKIE, COOKIE, RECEIVE_WINDOW_SIZE]) => Pdu::OutRecycle,
        _ => return Err(Error::NotChannelStart),
    };
    // A recycling PDU names predecessor then successor: the new channel is the last cookie.
    let channel = match shape {
        Pdu::ConnA1 | Pdu::ConnB1 => cookie(2),
        Pdu::InRecycle | Pdu::OutRecycle => cookie(3),
    };
    Ok(ChannelStart { pdu: shape, virtual_connection: cookie(1), channel })
}

/// The commands of a PDU body: `count` of them, exactly filling `body`.
fn commands(body: &[u8], count: usize) -> Result<Vec<(u32, &[u8])>, Error> {
    // No opening PDU has more than six; a larger count is refused before any
    // allocation it would size.
    if count > 8 {
        return Err(Error::NotChannelStart);
    }
    let mut out = Vec::with_capacity(count);
    let mut at = 0;
    for _ in 0..count {
        let kind = u32_at(body, at).ok_or(Error::Malformed("a command runs past frag_length"))?;
        at += 4;
        let len = match kind {
            RECEIVE_WINDOW_SIZE | CHANNEL_LIFETIME | CLIENT_KEEPALIVE | VERSION => 4,
            COOKIE | ASSOCIATION_GROUP_ID => 16,
            // The other commands (2.2.3.5) appear in no opening PDU.
            _ => return Err(Error::NotChannelStart),
        };
        let payload = body.get(at..at + len).ok_or(Error::Malformed("a command runs past frag_length"))?;
        out.push((kind, payload));
        at += len;
    }
    if at != body.len() {
        return Err(Error::Malformed("frag_length does not match the commands"));
    }
    Ok(out)
}

/// PDUs as a client writes them, for test clients and test backends.
pub mod build {
    use super::*;

    /// The protocol version clients announce (MS-RPCH 2.2.3.5.7).
    const VERSION_1: u32 = 1;

    fn pdu(flags: u16, commands: &[(u32, &[u8])]) -> Vec<u8> {
        let len = HEADER + commands.iter().map(|(_, p)| 4 + p.len()).sum::<usize>();
        let mut out = vec![5, 0, PTYPE_RTS, PFC_FIRST_LAST, 0x10, 0, 0, 0];
        out.extend_from_slice(&(len as u16).to_le_bytes());
        out.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
        out.extend_from_slice(&flags.to_le_bytes());
        out.extend_from_slice(&(commands.len() as u16).to_le_bytes());
        for (kind, payload) in commands {
            out.extend_from_slice(&kind.to_le_bytes());
            out.extend_from_slice(payload);
        }
        out
    }

    /// CONN/A1: the first PDU of a new OUT channel (76 bytes).
    pub fn conn_a1(virtual_connection: &Cookie, out_channel: &Cookie) -> Vec<u8> {
        let window = 65536u32.to_le_bytes();
        pdu(
            RTS_FLAG_NONE,
            &[
                (VERSION, &VERSION_1.to_le_bytes()),
                (COOKIE, virtual_connection),
                (COOKIE, out_channel),
                (RECEIVE_WINDOW_SIZE, &window),
            ],
        )
    }

    /// CONN/B1: the first PDU of a new IN channel (104 bytes).
    pub fn conn_b1(virtual_connection: &Cookie, in_channel: &Cookie, association_group: &Cookie) -> Vec<u8> {
        let lifetime = 0x4000_0000u32.to_le_bytes();
        let keepalive = 300_000u32.to_le_bytes();
        pdu(
            RTS_FLAG_NONE,
            &[
                (VERSION, &VERSION_1.to_le_bytes()),
                (COOKIE, virtual_connection),
                (COOKIE, in_channel),
                (CHANNEL_LIFETIME, &lifetime),
                (CLIENT_KEEPALIVE, &keepalive),
                (ASSOCIATION_GROUP_ID, association_group),
            ],
        )
    }

    /// IN_R1/A1: the first PDU of a successor IN channel (88 bytes).
    pub fn in_r1_a1(virtual_connection: &Cookie, predecessor: &Cookie, successor: &Cookie) -> Vec<u8> {
        pdu(
            RTS_FLAG_RECYCLE_CHANNEL,
            &[
                (VERSION, &VERSION_1.to_le_bytes()),
                (COOKIE, virtual_connection),
                (COOKIE, predecessor),
                (COOKIE, successor),
            ],
        )
    }

    /// OUT_R1/A3: the first PDU of a successor OUT channel (96 bytes).
    pub fn out_r1_a3(virtual_connection: &Cookie, predecessor: &Cookie, successor: &Cookie) -> Vec<u8> {
        let window = 65536u32.to_le_bytes();
        pdu(
            RTS_FLAG_RECYCLE_CHANNEL,
            &[
                (VERSION, &VERSION_1.to_le_bytes()),
                (COOKIE, virtual_connection),
                (COOKIE, predecessor),
                (COOKIE, successor),
                (RECEIVE_WINDOW_SIZE, &window),
            ],
        )
    }

    /// A Ping RTS PDU (RTS_FLAG_PING, no commands): well-formed, opens nothing.
    pub fn ping() -> Vec<u8> {
        pdu(0x0001, &[])
    }
}

/// The fuzz target's body (and the generated-input tests'): any bytes, no
/// panic, and what is accepted is consistent.
pub fn fuzz_one(data: &[u8]) {
    match channel_start(data) {
        Ok(start) => {
            // Accepted: the prefix it read is enough, whatever follows.
            let len = usize::from(u16::from_le_bytes([data[8], data[9]]));
            assert_eq!(channel_start(&data[..len]), Ok(start));
            let _ = start.direction();
        }
        Err(Error::Incomplete { need }) => {
            assert!(need > data.len() && need <= MAX_START, "need {need} with {} bytes", data.len());
        }
        Err(_) => {}
    }
}

#[cfg(test)]
mod tests;
