use super::*;

/// An NDR writer of our own, laid out as MS-RPCE 2.2.5 says (not as any
/// parser reads it), to build buffers with chosen contents.
#[derive(Default)]
struct W {
    b: Vec<u8>,
    next_ref: u32,
}

impl W {
    fn align(&mut self, n: usize) {
        while self.b.len() % n != 0 {
            self.b.push(0);
        }
    }
    fn u16(&mut self, v: u16) {
        self.align(2);
        self.b.extend_from_slice(&v.to_le_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.align(4);
        self.b.extend_from_slice(&v.to_le_bytes());
    }
    fn ptr(&mut self, present: bool) {
        if present {
            self.next_ref += 4;
            let r = 0x20000 + self.next_ref;
            self.u32(r);
        } else {
            self.u32(0);
        }
    }
    fn string_header(&mut self, s: &str) {
        let n = (s.encode_utf16().count() * 2) as u16;
        self.u16(n);
        self.u16(n);
        self.ptr(true);
    }
    fn string_body(&mut self, s: &str) {
        let units: Vec<u16> = s.encode_utf16().collect();
        self.u32(units.len() as u32);
        self.u32(0);
        self.u32(units.len() as u32);
        for u in units {
            self.u16(u);
        }
    }
    fn sid(&mut self, sid: &Sid) {
        self.u32(sid.sub_authorities.len() as u32);
        self.b.push(sid.revision);
        self.b.push(sid.sub_authorities.len() as u8);
        self.b.extend_from_slice(&sid.authority.to_be_bytes()[2..]);
        for s in &sid.sub_authorities {
            self.u32(*s);
        }
    }
    fn groups(&mut self, groups: &[GroupRid]) {
        self.u32(groups.len() as u32);
        for g in groups {
            self.u32(g.rid);
            self.u32(g.attributes);
        }
    }
}

pub(super) fn sid(s: &str) -> Sid {
    Sid::parse(s).unwrap()
}

pub(super) fn sample() -> LogonInfo {
    LogonInfo {
        account: "carol".into(),
        full_name: "Carol Jones".into(),
        logon_domain: "ADTEST".into(),
        logon_server: "DC1".into(),
        domain_sid: sid("S-1-5-21-1111-2222-3333"),
        user_rid: 1107,
        primary_group_rid: 513,
        user_flags: D_EXTRA_SIDS | H_RESOURCE_GROUPS,
        groups: vec![GroupRid { rid: 513, attributes: 7 }, GroupRid { rid: 1201, attributes: 7 }],
        extra_sids: vec![GroupSid { sid: sid("S-1-18-1"), attributes: 7 }],
        resource_domain: Some(sid("S-1-5-21-4444-5555-6666")),
        resource_groups: vec![GroupRid { rid: 1300, attributes: 0x2000_0007 }],
    }
}

/// KERB_VALIDATION_INFO (MS-PAC 2.5) in a type serialization v1 (MS-RPCE 2.2.6).
pub(super) fn encode(info: &LogonInfo) -> Vec<u8> {
    let mut w = W::default();
    w.ptr(true);
    for _ in 0..12 {
        w.u32(0x1234_5678);
    }
    w.string_header(&info.account);
    w.string_header(&info.full_name);
    for _ in 0..4 {
        w.string_header("");
    }
    w.u16(3);
    w.u16(0);
    w.u32(info.user_rid);
    w.u32(info.primary_group_rid);
    w.u32(info.groups.len() as u32);
    w.ptr(true);
    w.u32(info.user_flags);
    w.b.extend_from_slice(&[0; 16]);
    w.string_header(&info.logon_server);
    w.string_header(&info.logon_domain);
    w.ptr(true);
    for _ in 0..2 + 2 + 4 + 2 {
        w.u32(0);
    }
    w.u32(info.extra_sids.len() as u32);
    w.ptr(!info.extra_sids.is_empty());
    w.ptr(info.resource_domain.is_some());
    w.u32(info.resource_groups.len() as u32);
    w.ptr(!info.resource_groups.is_empty());
    w.string_body(&info.account);
    w.string_body(&info.full_name);
    for _ in 0..4 {
        w.string_body("");
    }
    w.groups(&info.groups);
    w.string_body(&info.logon_server);
    w.string_body(&info.logon_domain);
    w.sid(&info.domain_sid);
    if !info.extra_sids.is_empty() {
        w.u32(info.extra_sids.len() as u32);
        for g in &info.extra_sids {
            w.ptr(true);
            w.u32(g.attributes);
        }
        for g in &info.extra_sids {
            w.sid(&g.sid);
        }
    }
    if let Some(d) = &info.resource_domain {
        w.sid(d);
    }
    if !info.resource_groups.is_empty() {
        w.groups(&info.resource_groups);
    }
    w.align(8);
    let mut out = vec![1, 0x10, 8, 0, 0xcc, 0xcc, 0xcc, 0xcc];
    out.extend_from_slice(&(w.b.len() as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&w.b);
    out
}

#[test]
fn reads_what_was_written() {
    let info = sample();
    assert_eq!(parse_logon_info(&encode(&info)).unwrap(), info);
    assert_eq!(info.user_sid().to_string(), "S-1-5-21-1111-2222-3333-1107");
    let groups: Vec<String> = info.group_sids().iter().map(|g| g.sid.to_string()).collect();
    assert_eq!(
        groups,
        ["S-1-5-21-1111-2222-3333-513", "S-1-5-21-1111-2222-3333-1201", "S-1-18-1", "S-1-5-21-4444-5555-6666-1300"]
    );
}

#[test]
fn extra_sids_and_resource_groups_count_only_with_their_flags() {
    let mut info = sample();
    info.user_flags = 0;
    let parsed = parse_logon_info(&encode(&info)).unwrap();
    assert!(parsed.extra_sids.is_empty() && parsed.resource_groups.is_empty() && parsed.resource_domain.is_none());
    assert_eq!(parsed.group_sids().len(), 2);
}

#[test]
fn a_user_with_no_groups_has_the_primary_group_alone() {
    let mut info = sample();
    info.groups.clear();
    info.extra_sids.clear();
    info.resource_domain = None;
    info.resource_groups.clear();
    let parsed = parse_logon_info(&encode(&info)).unwrap();
    assert_eq!(parsed, info);
    let groups: Vec<String> = parsed.group_sids().iter().map(|g| g.sid.to_string()).collect();
    assert_eq!(groups, ["S-1-5-21-1111-2222-3333-513"]);
}

#[test]
fn every_truncation_is_refused_and_every_byte_flip_answers() {
    let good = encode(&sample());
    assert!(parse_logon_info(&good).is_ok());
    for n in 0..good.len() {
        assert!(parse_logon_info(&good[..n]).is_err(), "truncated to {n} bytes");
    }
    let mut refused = 0;
    for i in 0..good.len() {
        for v in [0u8, 1, 0x7f, 0x80, 0xff] {
            let mut b = good.clone();
            b[i] ^= v;
            refused += usize::from(parse_logon_info(&b).is_err());
        }
    }
    // Most bytes are lengths, counts, pointers or characters whose change is
    // noticed; times and RIDs may change freely.
    assert!(refused > good.len(), "{refused} of {} flips refused", good.len() * 5);
}

fn at(b: &mut [u8], offset: usize, v: u32) {
    b[offset..offset + 4].copy_from_slice(&v.to_le_bytes());
}

/// Offsets in `encode(&sample())`: 16 bytes of headers, 4 of the top-level
/// pointer, 48 of times, 6 strings of 8, 2+2, UserId, PrimaryGroupId.
const GROUP_COUNT: usize = 16 + 4 + 48 + 48 + 4 + 8;
const SID_COUNT: usize = GROUP_COUNT + 4 + 4 + 4 + 16 + 16 + 4 + 8 + 8 + 16 + 8;

#[test]
fn refuses_bad_buffers_by_name() {
    let good = encode(&sample());
    let what = |b: &[u8]| parse_logon_info(b).unwrap_err().what;
    let mut b = good.clone();
    b[1] = 0x00;
    assert_eq!(what(&b), "not a little-endian NDR type serialization, version 1");
    let mut b = good.clone();
    at(&mut b, 8, 0xffff_fff8);
    assert_eq!(what(&b), "the object is longer than the buffer");
    let mut b = good.clone();
    at(&mut b, 8, (good.len() - 16 - 4) as u32);
    assert_eq!(what(&b), "the object's length is not a multiple of 8");
    let mut b = good.clone();
    at(&mut b, 16, 0);
    assert_eq!(what(&b), "the top-level pointer is null");
    // A count of 2^31 is refused before anything is allocated.
    let mut b = good.clone();
    at(&mut b, GROUP_COUNT, 0x8000_0000);
    assert_eq!(what(&b), "an array's size differs from its count");
    assert_eq!(u32::from_le_bytes(good[SID_COUNT..SID_COUNT + 4].try_into().unwrap()), 1);
    let mut b = good.clone();
    at(&mut b, SID_COUNT, 0x8000_0000);
    assert_eq!(what(&b), "an array's size differs from its count");
    // Both counts (the structure's and the array's) huge: the bytes left decide.
    let groups_array = find(&good, &[2, 0, 0, 0, 1, 2, 0, 0, 7, 0, 0, 0]);
    let mut b = good.clone();
    at(&mut b, GROUP_COUNT, 0x8000_0000);
    at(&mut b, groups_array, 0x8000_0000);
    assert_eq!(what(&b), "an array is longer than the buffer");
    // The account name's length longer than its maximum.
    let mut b = good.clone();
    b[16 + 4 + 48] = 12;
    assert_eq!(what(&b), "a string's lengths are inconsistent");
    // A lone surrogate, and a control character, in the account name.
    let name = find(&good, &utf16("carol"));
    let mut b = good.clone();
    b[name..name + 2].copy_from_slice(&0xd800u16.to_le_bytes());
    assert_eq!(what(&b), "a string is not UTF-16");
    let mut b = good.clone();
    b[name..name + 2].copy_from_slice(&0x000au16.to_le_bytes());
    assert_eq!(what(&b), "a string holds a control character");
    // A SID with 16 sub-authorities.
    let domain_sid = find(&good, &[4, 0, 0, 0, 1, 4, 0, 0, 0, 0, 0, 5]);
    let mut b = good.clone();
    at(&mut b, domain_sid, 16);
    b[domain_sid + 5] = 16;
    assert_eq!(what(&b), "a SID's sub-authority count is wrong");
    // Garbage after the structure.
    let mut b = good.clone();
    b.extend_from_slice(&[0; 8]);
    let len = (b.len() - 16) as u32;
    at(&mut b, 8, len);
    assert_eq!(what(&b), "bytes after the structure");
}

#[test]
fn a_null_pointer_with_a_count_is_refused() {
    let mut info = sample();
    info.extra_sids.clear();
    let mut b = encode(&info);
    at(&mut b, SID_COUNT, 1);
    assert_eq!(parse_logon_info(&b).unwrap_err().what, "SidCount is set but ExtraSids is null");
}

#[test]
fn sids_read_and_print_as_windows_does() {
    for s in ["S-1-5-21-1004336348-1177238915-682003330-512", "S-1-18-1", "S-1-5-32-544", "S-1-1-0"] {
        assert_eq!(sid(s).to_string(), s);
    }
    let high = Sid { revision: 1, authority: 1 << 40, sub_authorities: vec![1] };
    assert_eq!(high.to_string(), "S-1-0x010000000000-1");
    assert_eq!(Sid::parse("S-1-0x010000000000-1"), Some(high));
    for bad in [
        "",
        "S-1",
        "S-1-5-x",
        "S-1-4294967296-1",
        "S-1-0x1-1",
        "S-1-0x01000000000000-1",
        "s-1-5-21",
        "S-1-5-1-2-3-4-5-6-7-8-9-10-11-12-13-14-15-16",
    ] {
        assert_eq!(Sid::parse(bad), None, "{bad}");
    }
    assert_eq!(sid("S-1-5-21-1-2-3").with_rid(500).rid(), Some(500));
}

fn utf16(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(u16::to_le_bytes).collect()
}

fn find(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len()).position(|w| w == needle).unwrap()
}

/// What the fuzz target does, on stable Rust: a few thousand mutations of a
/// good buffer (bytes changed, counts set huge, bytes cut out or repeated).
#[test]
fn fuzz_entry_on_generated_buffers() {
    let good = encode(&sample());
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut parsed = 0;
    for _ in 0..5000 {
        let mut b = good.clone();
        for _ in 0..1 + next() % 4 {
            let i = (next() as usize) % b.len();
            match next() % 4 {
                0 => b[i] = next() as u8,
                1 if i + 4 <= b.len() => b[i..i + 4].copy_from_slice(&[0xff, 0xff, 0xff, 0x7f]),
                2 => {
                    let n = (next() as usize % 16).min(b.len() - i);
                    b.drain(i..i + n);
                }
                _ => {
                    let chunk: Vec<u8> = b[i..(i + 8).min(b.len())].to_vec();
                    b.splice(i..i, chunk);
                }
            }
            if b.is_empty() {
                break;
            }
        }
        fuzz_logon_info(&b);
        parsed += usize::from(parse_logon_info(&b).is_ok());
    }
    // Some mutations (times, RIDs, attributes) still parse: the checks after
    // a successful parse were exercised too.
    assert!(parsed > 0);
}

/// The binary form as `objectSid` holds it (MS-DTYP 2.4.2.2), bytes written
/// out by hand.
#[test]
fn sids_in_binary_form_both_ways_and_refusals() {
    #[rustfmt::skip]
    let bytes = [
        0x01, 0x05, 0x00, 0x00, 0x00, 0x00, 0x00, 0x05,
        0x15, 0x00, 0x00, 0x00,
        0xdc, 0xf4, 0xdc, 0x3b,
        0x83, 0x3d, 0x2b, 0x46,
        0x82, 0x8b, 0xa6, 0x28,
        0x00, 0x02, 0x00, 0x00,
    ];
    let s = sid("S-1-5-21-1004336348-1177238915-682003330-512");
    assert_eq!(Sid::from_bytes(&bytes), Some(s.clone()));
    assert_eq!(s.to_bytes(), bytes);
    assert_eq!(Sid::from_bytes(&[1, 0, 0, 0, 0, 0, 0, 1]), Some(sid("S-1-1")));
    let high = Sid { revision: 1, authority: 0x0102_0304_0506, sub_authorities: vec![7] };
    assert_eq!(Sid::from_bytes(&high.to_bytes()), Some(high));
    for len in 0..bytes.len() {
        assert_eq!(Sid::from_bytes(&bytes[..len]), None, "{len}");
    }
    let mut longer = bytes.to_vec();
    longer.push(0);
    assert_eq!(Sid::from_bytes(&longer), None, "a byte beyond the count");
    let mut revision = bytes;
    revision[0] = 2;
    assert_eq!(Sid::from_bytes(&revision), None);
    let mut count = bytes;
    count[1] = 4;
    assert_eq!(Sid::from_bytes(&count), None, "a count that disagrees with the length");
    let mut sixteen = vec![1u8, 16, 0, 0, 0, 0, 0, 5];
    sixteen.extend([0u8; 64]);
    assert_eq!(Sid::from_bytes(&sixteen), None, "more than 15 sub-authorities");
}
