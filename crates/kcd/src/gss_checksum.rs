//! The two pieces of RFC 4121 that sit around a Kerberos AP exchange, for the
//! acceptor that works on one long-lived krb5 context (`ffi::accept_quick`)
//! instead of MIT's GSS layer:
//!
//! - the authenticator's GSS checksum (RFC 4121 4.1.1: type 0x8003, the
//!   channel bindings' MD5, the context flags, an optional delegated
//!   credential and extensions), read into what the quick acceptor may act on;
//! - the AP-REP's framing as an RFC 2743 initial context token.
//!
//! The checksum arrives inside the authenticator, which MIT has decrypted and
//! whose integrity it has checked with the ticket's session key: only the
//! client who holds that key could have written it. It is still parsed as
//! untrusted bytes (no panic on any length), and anything outside the common
//! shape (a delegated TGT, DCE style, extensions, a length that is not 24) is
//! [`Reading::Unusual`]: the caller then leaves the token to MIT's GSS layer,
//! which knows every case and gives the authoritative answer.

use md5::{Digest, Md5};

/// RFC 4121's checksum type for the authenticator's GSS checksum.
pub const GSS_CHECKSUM: i32 = 0x8003;

// RFC 2744 context flags, as the initiator puts them in the checksum.
pub const DELEG: u32 = 1;
pub const MUTUAL: u32 = 2;
pub const REPLAY: u32 = 4;
pub const SEQUENCE: u32 = 8;
pub const CONF: u32 = 16;
pub const INTEG: u32 = 32;
pub const DCE_STYLE: u32 = 0x1000;
pub const IDENTIFY: u32 = 0x2000;
pub const EXTENDED_ERROR: u32 = 0x4000;
/// Flags MIT sets itself on an accepted context: transferable, and (with
/// mutual authentication) ready for per-message protection.
pub const TRANS: u32 = 256;
pub const PROT_READY: u32 = 128;
/// The flags an initiator may ask for that MIT passes on (its INITIATOR_FLAGS).
const FROM_INITIATOR: u32 = DELEG | MUTUAL | REPLAY | SEQUENCE | CONF | INTEG | DCE_STYLE | IDENTIFY | EXTENDED_ERROR;
/// MS-KILE's KERB_AP_OPTIONS_CBT, in the AD-AUTH-DATA-AP-OPTIONS element.
pub const AP_OPTIONS_CBT: u32 = 0x4000;

/// What the checksum says, for the common shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checksum {
    /// The MD5 of the initiator's channel bindings; all zero when it sent none.
    pub bindings: [u8; 16],
    /// The context flags the initiator asked for (only those MIT passes on).
    pub flags: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reading {
    Common(Checksum),
    /// Not the common shape: for MIT's GSS layer to judge.
    Unusual(&'static str),
}

/// Reads the authenticator's checksum (`kind` its type, `bytes` its value).
pub fn read(kind: i32, bytes: &[u8]) -> Reading {
    if kind != GSS_CHECKSUM {
        return Reading::Unusual("not a GSS checksum");
    }
    // Lgth (4, LE) | Bnd (16) | Flags (4, LE) and nothing else: a delegated
    // credential or extensions would follow.
    let Ok(fixed) = <&[u8; 24]>::try_from(bytes) else {
        return Reading::Unusual("a GSS checksum that is not 24 bytes long");
    };
    if u32::from_le_bytes([fixed[0], fixed[1], fixed[2], fixed[3]]) != 16 {
        return Reading::Unusual("a GSS checksum whose bindings are not 16 bytes");
    }
    let mut bindings = [0; 16];
    bindings.copy_from_slice(&fixed[4..20]);
    let asked = u32::from_le_bytes([fixed[20], fixed[21], fixed[22], fixed[23]]);
    if asked & DELEG != 0 {
        return Reading::Unusual("the client delegated a credential");
    }
    if asked & DCE_STYLE != 0 {
        return Reading::Unusual("a DCE-style context");
    }
    Reading::Common(Checksum { bindings, flags: asked & FROM_INITIATOR })
}

/// What the channel bindings decide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    /// The client's bindings match ours.
    Yes,
    /// The client sent none (or we have none to compare with).
    No,
    /// The client's differ from ours: refused (by MIT's GSS layer, which says so).
    Mismatch,
}

/// Compares the checksum's bindings with `ours` (the application data of
/// this connection's bindings, the other fields empty, as gatehouse always
/// makes them).
pub fn bound(checksum: &Checksum, ours: Option<&[u8]>) -> Bound {
    let Some(ours) = ours else { return Bound::No };
    if checksum.bindings == [0; 16] {
        return Bound::No;
    }
    if bool::from(subtle_eq(&checksum.bindings, &bindings_md5(ours))) {
        Bound::Yes
    } else {
        Bound::Mismatch
    }
}

/// RFC 4121 4.1.1.2: the MD5 over the bindings' fields, each address as its
/// type and length (32-bit little-endian) and bytes; here both addresses are
/// empty (type 0), as in the bindings gatehouse hands MIT.
pub fn bindings_md5(application_data: &[u8]) -> [u8; 16] {
    let mut md5 = Md5::new();
    md5.update([0u8; 16]);
    md5.update((application_data.len() as u32).to_le_bytes());
    md5.update(application_data);
    md5.finalize().into()
}

fn subtle_eq(a: &[u8; 16], b: &[u8; 16]) -> subtle::Choice {
    use subtle::ConstantTimeEq;
    a.ct_eq(b)
}

/// Whether an AD-AUTH-DATA-AP-OPTIONS value asks for channel bindings
/// (MS-KILE: a 32-bit little-endian set of options). A value of another
/// length counts as asking: the caller then leaves the token to MIT.
pub fn asks_for_bindings(ap_options: &[u8]) -> bool {
    match <[u8; 4]>::try_from(ap_options) {
        Ok(v) => u32::from_le_bytes(v) & AP_OPTIONS_CBT != 0,
        Err(_) => true,
    }
}

/// The Kerberos mechanism's OID, DER-encoded with its tag.
const KRB5_OID: [u8; 11] = [0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x12, 0x01, 0x02, 0x02];
/// TOK_ID of an AP-REP inside an initial context token.
const AP_REP_TOK_ID: [u8; 2] = [0x02, 0x00];

/// Wraps an AP-REP as RFC 2743 3.1 frames it: [APPLICATION 0] { mechanism
/// OID, TOK_ID 02 00, AP-REP }.
pub fn frame_ap_rep(ap_rep: &[u8]) -> Vec<u8> {
    let inner = KRB5_OID.len() + AP_REP_TOK_ID.len() + ap_rep.len();
    let mut out = Vec::with_capacity(inner + 6);
    out.push(0x60);
    der_length(inner, &mut out);
    out.extend_from_slice(&KRB5_OID);
    out.extend_from_slice(&AP_REP_TOK_ID);
    out.extend_from_slice(ap_rep);
    out
}

fn der_length(len: usize, out: &mut Vec<u8>) {
    if len < 0x80 {
        out.push(len as u8);
        return;
    }
    let bytes = len.to_be_bytes();
    let skip = bytes.iter().take_while(|b| **b == 0).count();
    out.push(0x80 | (bytes.len() - skip) as u8);
    out.extend_from_slice(&bytes[skip..]);
}

/// The fuzz target's body (`fuzz/fuzz_targets/gss_checksum.rs`): the first
/// four bytes choose the checksum type's low bits, the rest is the checksum
/// and, after it, the bindings and AP options; never a panic, and a common
/// checksum's flags are only ones MIT passes on.
pub fn fuzz(data: &[u8]) {
    let (kind, rest) = match data.split_first() {
        Some((k, rest)) if k & 1 == 0 => (GSS_CHECKSUM, rest),
        Some((k, rest)) => (i32::from(*k), rest),
        None => (GSS_CHECKSUM, data),
    };
    let (checksum, after) = rest.split_at(rest.len().min(24));
    if let Reading::Common(c) = read(kind, checksum) {
        assert_eq!(c.flags & !FROM_INITIATOR, 0);
        assert_eq!(c.flags & (DELEG | DCE_STYLE), 0);
        let _ = bound(&c, Some(after));
    }
    let _ = asks_for_bindings(after);
    let framed = frame_ap_rep(after);
    assert_eq!(&framed[framed.len() - after.len()..], after);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checksum(lgth: u32, bnd: [u8; 16], flags: u32) -> Vec<u8> {
        let mut v = lgth.to_le_bytes().to_vec();
        v.extend_from_slice(&bnd);
        v.extend_from_slice(&flags.to_le_bytes());
        v
    }

    #[test]
    fn the_fuzz_body_takes_any_bytes() {
        for n in 0..64usize {
            let bytes: Vec<u8> = (0..n).map(|i| (i * 37 + n) as u8).collect();
            fuzz(&bytes);
            let mut common = vec![0u8];
            common.extend_from_slice(&checksum(16, [n as u8; 16], u32::MAX));
            common.extend_from_slice(&bytes);
            fuzz(&common);
        }
    }

    #[test]
    fn the_common_checksum_is_read() {
        let c = checksum(16, [7; 16], MUTUAL | SEQUENCE | REPLAY | 0x8000_0000);
        // Flags MIT does not pass on are dropped.
        assert_eq!(
            read(GSS_CHECKSUM, &c),
            Reading::Common(Checksum { bindings: [7; 16], flags: MUTUAL | SEQUENCE | REPLAY })
        );
    }

    #[test]
    fn every_other_shape_is_left_to_mit() {
        let good = checksum(16, [0; 16], MUTUAL);
        assert!(matches!(read(7, &good), Reading::Unusual(_)), "another checksum type");
        assert!(matches!(read(GSS_CHECKSUM, &good[..23]), Reading::Unusual(_)), "short");
        assert!(matches!(read(GSS_CHECKSUM, &[]), Reading::Unusual(_)), "empty");
        let mut long = good.clone();
        long.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0]);
        assert!(matches!(read(GSS_CHECKSUM, &long), Reading::Unusual(_)), "extensions");
        assert!(matches!(read(GSS_CHECKSUM, &checksum(15, [0; 16], 0)), Reading::Unusual(_)), "Lgth 15");
        assert!(matches!(read(GSS_CHECKSUM, &checksum(16, [0; 16], DELEG | MUTUAL)), Reading::Unusual(_)), "deleg");
        assert!(matches!(read(GSS_CHECKSUM, &checksum(16, [0; 16], DCE_STYLE)), Reading::Unusual(_)), "DCE");
        // No length panics.
        for n in 0..40 {
            let _ = read(GSS_CHECKSUM, &vec![0xff; n]);
        }
    }

    #[test]
    fn bindings_match_only_their_own_digest() {
        let data = b"tls-server-end-point:0123456789abcdef0123456789abcdef";
        let matching = Checksum { bindings: bindings_md5(data), flags: 0 };
        assert_eq!(bound(&matching, Some(data)), Bound::Yes);
        assert_eq!(bound(&matching, Some(b"tls-server-end-point:another certificate")), Bound::Mismatch);
        assert_eq!(bound(&matching, None), Bound::No, "no bindings of ours: not compared");
        let none = Checksum { bindings: [0; 16], flags: 0 };
        assert_eq!(bound(&none, Some(data)), Bound::No, "the client sent none");
        let mut off_by_one = matching;
        off_by_one.bindings[15] ^= 1;
        assert_eq!(bound(&off_by_one, Some(data)), Bound::Mismatch);
    }

    #[test]
    fn the_bindings_digest_covers_the_empty_addresses_and_the_length() {
        // RFC 4121 4.1.1.2 with both addresses empty: 16 zero bytes, then the
        // application data's length and bytes.
        let mut manual = Md5::new();
        manual.update([0u8; 16]);
        manual.update(3u32.to_le_bytes());
        manual.update(b"abc");
        assert_eq!(bindings_md5(b"abc"), <[u8; 16]>::from(manual.finalize()));
        assert_ne!(bindings_md5(b"abc"), bindings_md5(b"abd"));
        assert_ne!(bindings_md5(b""), [0; 16]);
    }

    #[test]
    fn ap_options_ask_for_bindings_with_the_cbt_bit_or_an_odd_length() {
        assert!(asks_for_bindings(&AP_OPTIONS_CBT.to_le_bytes()));
        assert!(!asks_for_bindings(&0u32.to_le_bytes()));
        assert!(!asks_for_bindings(&0x2000u32.to_le_bytes()));
        assert!(asks_for_bindings(&[0x00, 0x40]), "short: left to MIT");
        assert!(asks_for_bindings(&[]), "empty: left to MIT");
    }

    #[test]
    fn the_ap_rep_is_framed_as_an_initial_context_token() {
        let short = frame_ap_rep(&[0x6f, 0x00]);
        assert_eq!(short, [&[0x60, 15][..], &KRB5_OID, &[0x02, 0x00, 0x6f, 0x00]].concat());
        // Long forms: one and two length bytes.
        let body = vec![0xab; 200];
        let framed = frame_ap_rep(&body);
        assert_eq!(&framed[..3], &[0x60, 0x81, 213]);
        assert_eq!(&framed[framed.len() - 200..], &body[..]);
        let body = vec![0xcd; 1000];
        let framed = frame_ap_rep(&body);
        assert_eq!(&framed[..4], &[0x60, 0x82, 0x03, 0xf5]);
        assert_eq!(framed.len(), 4 + 1013);
    }

    /// The quick acceptor reads MIT's structs through Rust mirrors
    /// (`ffi.rs`): their sizes and offsets, against the installed krb5.h.
    #[test]
    fn the_mirrored_krb5_structs_match_krb5_h() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("layout.c");
        let program = format!(
            "#include <krb5.h>\n#include <stddef.h>\n#include <stdio.h>\nint main(void){{{}return 0;}}\n",
            crate::ffi::layout::C
        );
        std::fs::write(&src, program).unwrap();
        let exe = dir.path().join("layout");
        let built =
            std::process::Command::new("cc").arg(&src).arg("-o").arg(&exe).output().expect("cc (build-essential)");
        assert!(built.status.success(), "{}", String::from_utf8_lossy(&built.stderr));
        let out = std::process::Command::new(&exe).output().unwrap();
        assert_eq!(String::from_utf8(out.stdout).unwrap(), crate::ffi::layout::rust());
    }
}
