//! NegotiateFlags (MS-NLMP 2.2.2.5).

pub const UNICODE: u32 = 0x0000_0001;
pub const OEM: u32 = 0x0000_0002;
pub const REQUEST_TARGET: u32 = 0x0000_0004;
pub const SIGN: u32 = 0x0000_0010;
pub const SEAL: u32 = 0x0000_0020;
pub const LM_KEY: u32 = 0x0000_0080;
pub const NTLM: u32 = 0x0000_0200;
pub const ANONYMOUS: u32 = 0x0000_0800;
pub const ALWAYS_SIGN: u32 = 0x0000_8000;
pub const TARGET_TYPE_DOMAIN: u32 = 0x0001_0000;
pub const EXTENDED_SESSION_SECURITY: u32 = 0x0008_0000;
pub const TARGET_INFO: u32 = 0x0080_0000;
pub const VERSION: u32 = 0x0200_0000;
pub const N128: u32 = 0x2000_0000;
pub const KEY_EXCH: u32 = 0x4000_0000;
pub const N56: u32 = 0x8000_0000;

/// Flags the acceptor echoes when the client asks for them.
pub const ECHOED: u32 = SIGN | SEAL | ALWAYS_SIGN | N128 | KEY_EXCH | N56 | VERSION;
