use super::build::*;
use super::*;

const VC: Cookie = *b"virtual-conn-01!";
const CH: Cookie = *b"channel-cookie-2";
const AG: Cookie = *b"assoc-group-id-3";

#[test]
fn each_opening_pdu_names_its_virtual_connection() {
    let a1 = conn_a1(&VC, &CH);
    let b1 = conn_b1(&VC, &CH, &AG);
    let inr = in_r1_a1(&VC, &AG, &CH);
    let outr = out_r1_a3(&VC, &AG, &CH);
    // MS-RPCH's sizes: the OUT channel request's Content-Length is 76 (CONN/A1).
    assert_eq!((a1.len(), b1.len(), inr.len(), outr.len()), (76, 104, 88, 96));
    for (bytes, pdu, direction) in [
        (&a1, Pdu::ConnA1, Channel::Out),
        (&b1, Pdu::ConnB1, Channel::In),
        (&inr, Pdu::InRecycle, Channel::In),
        (&outr, Pdu::OutRecycle, Channel::Out),
    ] {
        let start = channel_start(bytes).unwrap();
        assert_eq!(start, ChannelStart { pdu, virtual_connection: VC, channel: CH });
        assert_eq!(start.direction(), direction);
        // The channel's next PDUs may follow in the same read.
        let mut more = bytes.clone();
        more.extend_from_slice(&ping());
        more.extend_from_slice(b"rpc request bytes");
        assert_eq!(channel_start(&more), Ok(start));
    }
}

#[test]
fn a_short_prefix_asks_for_exactly_the_pdu() {
    let b1 = conn_b1(&VC, &CH, &AG);
    for cut in 0..b1.len() {
        let need = if cut < 10 { 20 } else { 104 };
        assert_eq!(channel_start(&b1[..cut]), Err(Error::Incomplete { need }), "cut at {cut}");
    }
}

#[test]
fn other_protocols_and_pdus_are_not_channel_starts() {
    assert_eq!(channel_start(b"GET / HTTP/1.1\r\n\r\n".as_slice()), Err(Error::NotRts));
    assert_eq!(channel_start(b"session-cookie-1".as_slice()), Err(Error::NotRts));
    // A DCE/RPC bind (PTYPE 11) is RPC, not RTS.
    let mut bind = conn_a1(&VC, &CH);
    bind[2] = 11;
    assert_eq!(channel_start(&bind), Err(Error::NotRts));
    assert_eq!(channel_start(&ping()), Err(Error::NotChannelStart));
}

#[test]
fn every_header_field_is_checked() {
    let a1 = conn_a1(&VC, &CH);
    let changed = |at: usize, value: u8| {
        let mut b = a1.clone();
        b[at] = value;
        channel_start(&b)
    };
    assert_eq!(changed(0, 4), Err(Error::NotRts), "rpc_vers");
    assert!(matches!(changed(1, 1), Err(Error::Malformed(_))), "rpc_vers_minor");
    assert!(matches!(changed(3, 0x01), Err(Error::Malformed(_))), "pfc_flags");
    assert!(matches!(changed(4, 0x00), Err(Error::Malformed(_))), "drep: big-endian");
    assert!(matches!(changed(10, 1), Err(Error::Malformed(_))), "auth_length");
    assert!(matches!(changed(12, 7), Err(Error::Malformed(_))), "call_id");
    assert_eq!(changed(16, 0x04), Err(Error::NotChannelStart), "flags: CONN/A1 is RTS_FLAG_NONE");
    assert_eq!(changed(18, 5), Err(Error::Malformed("a command runs past frag_length")), "command count");
    assert_eq!(changed(18, 3), Err(Error::Malformed("frag_length does not match the commands")));
    assert_eq!(changed(18, 200), Err(Error::NotChannelStart), "a count no opening PDU has");
}

#[test]
fn lengths_that_lie_are_refused() {
    let a1 = conn_a1(&VC, &CH);
    let with_length = |len: u16| {
        let mut b = a1.clone();
        b[8..10].copy_from_slice(&len.to_le_bytes());
        b.resize(b.len().max(usize::from(len)), 0);
        channel_start(&b)
    };
    assert!(matches!(with_length(19), Err(Error::Malformed(_))), "shorter than the header");
    assert!(matches!(with_length(75), Err(Error::Malformed(_))), "a command cut short");
    assert!(matches!(with_length(80), Err(Error::Malformed(_))), "bytes after the commands");
    // Longer than any opening PDU: refused without asking for more bytes.
    assert_eq!(with_length(60000), Err(Error::NotChannelStart));
    assert_eq!(channel_start(&a1[..12]), Err(Error::Incomplete { need: 76 }));
}

#[test]
fn commands_out_of_order_or_unknown_are_refused() {
    let mut a1 = conn_a1(&VC, &CH);
    // Version and the first cookie swapped: same length, another shape.
    let version: Vec<u8> = a1[20..28].to_vec();
    let cookie: Vec<u8> = a1[28..48].to_vec();
    let mut swapped = a1[..20].to_vec();
    swapped.extend_from_slice(&cookie);
    swapped.extend_from_slice(&version);
    swapped.extend_from_slice(&a1[48..]);
    assert_eq!(channel_start(&swapped), Err(Error::NotChannelStart));
    // An unknown command type.
    a1[20] = 0x7f;
    assert_eq!(channel_start(&a1), Err(Error::NotChannelStart));
}

/// The fuzz target's entry point over generated inputs: valid PDUs with bytes
/// flipped, cut, grown and spliced, and noise. Nothing panics.
#[test]
fn generated_inputs_never_panic() {
    let seeds = [conn_a1(&VC, &CH), conn_b1(&VC, &CH, &AG), in_r1_a1(&VC, &CH, &AG), out_r1_a3(&VC, &CH, &AG), ping()];
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for seed in &seeds {
        for cut in 0..=seed.len() {
            fuzz_one(&seed[..cut]);
        }
        for _ in 0..20_000 {
            let mut b = seed.clone();
            for _ in 0..(next() % 4 + 1) {
                let r = next();
                let at = (r as usize >> 8) % b.len().max(1);
                match r % 4 {
                    0 if !b.is_empty() => b[at] = (r >> 32) as u8,
                    1 => b.truncate(at),
                    2 => b.insert(at.min(b.len()), (r >> 40) as u8),
                    _ => b.extend_from_slice(&seeds[(r >> 16) as usize % seeds.len()]),
                }
            }
            fuzz_one(&b);
        }
    }
    for len in 0..300 {
        let noise: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        fuzz_one(&noise);
    }
}
