//! The PAC's logon information buffer (MS-PAC 2.5, KERB_VALIDATION_INFO): who
//! the user is (SID) and which groups the domain says they are in.
//!
//! The buffer is an NDR type serialization, version 1 (MS-RPCE 2.2.6): an
//! 8-byte common header, an 8-byte private header giving the object's length,
//! then a unique pointer to the structure, the structure's fixed part, and the
//! referents of its pointers in the order the pointers appear (each referent
//! followed at once by the referents of its own pointers). MIT hands it over
//! only from a PAC whose signatures it verified, but it is parsed as untrusted
//! bytes all the same: every count is checked against the bytes that remain
//! before anything is allocated, every string against its declared sizes, and
//! nothing panics.

use std::fmt;

/// A security identifier, e.g. `S-1-5-21-1004336348-1177238915-682003330-512`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sid {
    revision: u8,
    /// 48 bits, big-endian on the wire.
    authority: u64,
    sub_authorities: Vec<u32>,
}

/// MS-DTYP 2.4.2: a SID has at most 15 sub-authorities.
const MAX_SUB_AUTHORITIES: usize = 15;

impl Sid {
    /// `S-1-5-21-a-b-c` as text (an authority of 2^32 or more in hex, as
    /// `Display` writes it); None for anything else.
    pub fn parse(s: &str) -> Option<Sid> {
        let mut parts = s.strip_prefix("S-")?.split('-');
        let revision = parts.next()?.parse().ok()?;
        let authority = parts.next()?;
        let authority = match authority.strip_prefix("0x") {
            Some(hex) if hex.len() == 12 => u64::from_str_radix(hex, 16).ok(),
            Some(_) => None,
            None => authority.parse::<u64>().ok().filter(|a| *a >> 32 == 0),
        }?;
        let sub_authorities: Vec<u32> = parts.map(|p| p.parse().ok()).collect::<Option<_>>()?;
        (sub_authorities.len() <= MAX_SUB_AUTHORITIES).then_some(Sid { revision, authority, sub_authorities })
    }

    /// The SID of an account or group of this domain.
    pub fn with_rid(&self, rid: u32) -> Sid {
        let mut sid = self.clone();
        sid.sub_authorities.push(rid);
        sid
    }

    /// The last sub-authority (a domain account's relative id).
    pub fn rid(&self) -> Option<u32> {
        self.sub_authorities.last().copied()
    }

    /// The binary form (MS-DTYP 2.4.2.2), as the directory keeps `objectSid`:
    /// revision, sub-authority count, the authority in six big-endian bytes,
    /// each sub-authority in four little-endian ones. None unless `bytes` is
    /// exactly one revision-1 SID.
    pub fn from_bytes(bytes: &[u8]) -> Option<Sid> {
        let (&[revision, count], rest) = bytes.split_first_chunk::<2>()?;
        let (authority, subs) = rest.split_first_chunk::<6>()?;
        if revision != 1 || usize::from(count) > MAX_SUB_AUTHORITIES || subs.len() != usize::from(count) * 4 {
            return None;
        }
        let authority = authority.iter().fold(0u64, |a, b| a << 8 | u64::from(*b));
        let sub_authorities = subs.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        Some(Sid { revision, authority, sub_authorities })
    }

    /// The binary form, for a search by `objectSid`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 + 4 * self.sub_authorities.len());
        out.push(self.revision);
        // At most 15, by every constructor.
        out.push(self.sub_authorities.len() as u8);
        out.extend_from_slice(&self.authority.to_be_bytes()[2..]);
        for s in &self.sub_authorities {
            out.extend_from_slice(&s.to_le_bytes());
        }
        out
    }
}

impl fmt::Display for Sid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "S-{}-", self.revision)?;
        // MS-DTYP 2.4.2.1: authorities of 2^32 and above are written in hex.
        if self.authority >> 32 == 0 {
            write!(f, "{}", self.authority)?;
        } else {
            write!(f, "0x{:012X}", self.authority)?;
        }
        for s in &self.sub_authorities {
            write!(f, "-{s}")?;
        }
        Ok(())
    }
}

/// A group of the user's logon domain (or of the resource domain), by RID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupRid {
    pub rid: u32,
    /// SE_GROUP_* (MS-PAC 2.2.1): mandatory, enabled, resource, ...
    pub attributes: u32,
}

/// A group (or other SID) the user holds, with its SE_GROUP_* attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupSid {
    pub sid: Sid,
    pub attributes: u32,
}

/// UserFlags (MS-PAC 2.5): ExtraSids is meaningful.
pub const D_EXTRA_SIDS: u32 = 0x20;
/// UserFlags: ResourceGroupDomainSid and ResourceGroupIds are meaningful.
pub const H_RESOURCE_GROUPS: u32 = 0x200;

/// What gatehouse takes from KERB_VALIDATION_INFO.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogonInfo {
    /// EffectiveName: the sAMAccountName (`alice`).
    pub account: String,
    pub full_name: String,
    /// LogonDomainName: the NetBIOS domain name (`ADTEST`).
    pub logon_domain: String,
    pub logon_server: String,
    pub domain_sid: Sid,
    pub user_rid: u32,
    pub primary_group_rid: u32,
    pub user_flags: u32,
    /// GroupIds: groups of the logon domain, as the KDC expanded them.
    pub groups: Vec<GroupRid>,
    /// ExtraSids (only when `user_flags` has [`D_EXTRA_SIDS`]): SIDs of other
    /// domains, well-known SIDs, SID history.
    pub extra_sids: Vec<GroupSid>,
    /// ResourceGroupDomainSid (only with [`H_RESOURCE_GROUPS`]).
    pub resource_domain: Option<Sid>,
    /// ResourceGroupIds (only with [`H_RESOURCE_GROUPS`]).
    pub resource_groups: Vec<GroupRid>,
}

impl LogonInfo {
    pub fn user_sid(&self) -> Sid {
        self.domain_sid.with_rid(self.user_rid)
    }

    pub fn primary_group_sid(&self) -> Sid {
        self.domain_sid.with_rid(self.primary_group_rid)
    }

    /// Every SID the user holds as a group, each once, in PAC order: the
    /// primary group, GroupIds, ExtraSids, resource groups.
    pub fn group_sids(&self) -> Vec<GroupSid> {
        let mut out: Vec<GroupSid> = Vec::new();
        let mut push = |sid: Sid, attributes: u32| {
            if !out.iter().any(|g| g.sid == sid) {
                out.push(GroupSid { sid, attributes });
            }
        };
        // The primary group is in GroupIds as Windows builds the PAC; added
        // first in case a KDC leaves it out.
        let primary = self.groups.iter().find(|g| g.rid == self.primary_group_rid).map_or(7, |g| g.attributes);
        push(self.primary_group_sid(), primary);
        for g in &self.groups {
            push(self.domain_sid.with_rid(g.rid), g.attributes);
        }
        for g in &self.extra_sids {
            push(g.sid.clone(), g.attributes);
        }
        if let Some(domain) = &self.resource_domain {
            for g in &self.resource_groups {
                push(domain.with_rid(g.rid), g.attributes);
            }
        }
        out
    }
}

/// Why a logon information buffer was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogonInfoError {
    /// Byte offset in the buffer where the problem was found.
    pub offset: usize,
    pub what: &'static str,
}

impl fmt::Display for LogonInfoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PAC logon information: {} (at byte {})", self.what, self.offset)
    }
}

impl std::error::Error for LogonInfoError {}

type Result<T> = std::result::Result<T, LogonInfoError>;

/// Reads NDR primitives, aligned relative to the start of the object (which is
/// 16 bytes into the buffer, itself a multiple of 8).
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn fail<T>(&self, what: &'static str) -> Result<T> {
        Err(LogonInfoError { offset: self.pos, what })
    }

    fn align(&mut self, n: usize) -> Result<()> {
        let pad = (n - self.pos % n) % n;
        self.take(pad, "alignment padding").map(|_| ())
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8]> {
        match self.pos.checked_add(n).and_then(|end| self.buf.get(self.pos..end)) {
            Some(b) => {
                self.pos += n;
                Ok(b)
            }
            None => self.fail(what),
        }
    }

    fn u8(&mut self, what: &'static str) -> Result<u8> {
        Ok(self.take(1, what)?[0])
    }

    fn u16(&mut self, what: &'static str) -> Result<u16> {
        self.align(2)?;
        let b = self.take(2, what)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&mut self, what: &'static str) -> Result<u32> {
        self.align(4)?;
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A FILETIME: two 32-bit halves, so 4-aligned.
    fn filetime(&mut self) -> Result<()> {
        self.u32("a time")?;
        self.u32("a time").map(|_| ())
    }

    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// A conformant array's max count, refused unless `count` elements of
    /// `size` bytes can still fit (so that no count makes us allocate more
    /// than the buffer holds) and unless it equals the structure's own count.
    fn conformance(&mut self, count: u32, size: usize, what: &'static str) -> Result<usize> {
        let max = self.u32(what)?;
        if max != count {
            return self.fail("an array's size differs from its count");
        }
        let n = max as usize;
        if n.checked_mul(size).is_none_or(|bytes| bytes > self.remaining()) {
            return self.fail("an array is longer than the buffer");
        }
        Ok(n)
    }
}

/// RPC_UNICODE_STRING's fixed part: lengths in bytes, and whether the
/// pointer to the characters is null.
struct UnicodeString {
    length: u16,
    maximum: u16,
    present: bool,
}

fn unicode_string(r: &mut Reader<'_>) -> Result<UnicodeString> {
    let length = r.u16("a string's length")?;
    let maximum = r.u16("a string's maximum length")?;
    let present = r.u32("a string's pointer")? != 0;
    if length % 2 != 0 || maximum % 2 != 0 || length > maximum {
        return r.fail("a string's lengths are inconsistent");
    }
    if !present && length != 0 {
        return r.fail("a string has characters but no pointer");
    }
    Ok(UnicodeString { length, maximum, present })
}

/// The deferred characters: a conformant varying array of WCHAR that must
/// match the lengths given in the structure.
fn characters(r: &mut Reader<'_>, s: &UnicodeString) -> Result<String> {
    if !s.present {
        return Ok(String::new());
    }
    let max = r.u32("a string's size")?;
    let offset = r.u32("a string's offset")?;
    let actual = r.u32("a string's count")?;
    if max != u32::from(s.maximum / 2) || offset != 0 || actual != u32::from(s.length / 2) {
        return r.fail("a string's array sizes differ from its lengths");
    }
    let bytes = r.take(usize::from(s.length), "a string's characters")?;
    let units: Vec<u16> = bytes.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect();
    let text = match String::from_utf16(&units) {
        Ok(t) => t,
        Err(_) => return r.fail("a string is not UTF-16"),
    };
    // Names end up in logs and headers: no control characters.
    if text.chars().any(char::is_control) {
        return r.fail("a string holds a control character");
    }
    Ok(text)
}

/// A deferred RPC_SID: its conformance (the sub-authority count) first.
fn sid(r: &mut Reader<'_>) -> Result<Sid> {
    let max = r.u32("a SID's size")?;
    let revision = r.u8("a SID's revision")?;
    let count = r.u8("a SID's sub-authority count")?;
    if u32::from(count) != max || usize::from(count) > MAX_SUB_AUTHORITIES {
        return r.fail("a SID's sub-authority count is wrong");
    }
    if revision != 1 {
        return r.fail("a SID's revision is not 1");
    }
    let authority = r.take(6, "a SID's authority")?.iter().fold(0u64, |a, b| a << 8 | u64::from(*b));
    let sub_authorities = (0..count).map(|_| r.u32("a SID's sub-authority")).collect::<Result<_>>()?;
    Ok(Sid { revision, authority, sub_authorities })
}

/// A deferred array of GROUP_MEMBERSHIP.
fn group_rids(r: &mut Reader<'_>, count: u32) -> Result<Vec<GroupRid>> {
    let n = r.conformance(count, 8, "a group array's size")?;
    (0..n).map(|_| Ok(GroupRid { rid: r.u32("a group's RID")?, attributes: r.u32("a group's attributes")? })).collect()
}

/// A deferred array of KERB_SID_AND_ATTRIBUTES, then each element's SID.
fn sids_and_attributes(r: &mut Reader<'_>, count: u32) -> Result<Vec<GroupSid>> {
    let n = r.conformance(count, 8, "an extra SID array's size")?;
    let mut fixed = Vec::with_capacity(n);
    for _ in 0..n {
        let present = r.u32("an extra SID's pointer")? != 0;
        if !present {
            return r.fail("an extra SID is null");
        }
        fixed.push(r.u32("an extra SID's attributes")?);
    }
    fixed.into_iter().map(|attributes| Ok(GroupSid { sid: sid(r)?, attributes })).collect()
}

/// A pointer and the count that sizes its referent: a null pointer must come
/// with a zero count.
fn sized_pointer(r: &mut Reader<'_>, present: bool, count: u32, what: &'static str) -> Result<()> {
    if !present && count != 0 {
        return r.fail(what);
    }
    Ok(())
}

/// Parses a PAC_LOGON_INFO buffer (PAC buffer type 1).
pub fn parse_logon_info(buf: &[u8]) -> std::result::Result<LogonInfo, LogonInfoError> {
    let err = |offset, what| Err(LogonInfoError { offset, what });
    // MS-RPCE 2.2.6.1: version 1, little-endian, header length 8.
    let header = match buf.get(..16) {
        Some(h) => h,
        None => return err(buf.len(), "shorter than its headers"),
    };
    if header[0] != 1 || header[1] != 0x10 || header[2..4] != [8, 0] {
        return err(0, "not a little-endian NDR type serialization, version 1");
    }
    let object_len = u32::from_le_bytes([header[8], header[9], header[10], header[11]]) as usize;
    if object_len % 8 != 0 {
        return err(8, "the object's length is not a multiple of 8");
    }
    let object = match buf.get(16..).filter(|rest| rest.len() >= object_len) {
        Some(rest) => &rest[..object_len],
        None => return err(8, "the object is longer than the buffer"),
    };
    let mut r = Reader { buf: object, pos: 0 };
    let parsed = validation_info(&mut r);
    parsed.map_err(|mut e| {
        e.offset += 16;
        e
    })
}

fn validation_info(r: &mut Reader<'_>) -> Result<LogonInfo> {
    if r.u32("the top-level pointer")? == 0 {
        return r.fail("the top-level pointer is null");
    }
    // LogonTime, LogoffTime, KickOffTime, PasswordLastSet, PasswordCanChange,
    // PasswordMustChange: not used (the KDC decided the ticket's validity).
    for _ in 0..6 {
        r.filetime()?;
    }
    let effective_name = unicode_string(r)?;
    let full_name = unicode_string(r)?;
    let logon_script = unicode_string(r)?;
    let profile_path = unicode_string(r)?;
    let home_directory = unicode_string(r)?;
    let home_drive = unicode_string(r)?;
    r.u16("LogonCount")?;
    r.u16("BadPasswordCount")?;
    let user_rid = r.u32("UserId")?;
    let primary_group_rid = r.u32("PrimaryGroupId")?;
    let group_count = r.u32("GroupCount")?;
    let groups_present = r.u32("GroupIds")? != 0;
    sized_pointer(r, groups_present, group_count, "GroupCount is set but GroupIds is null")?;
    let user_flags = r.u32("UserFlags")?;
    r.take(16, "UserSessionKey")?;
    let logon_server = unicode_string(r)?;
    let logon_domain = unicode_string(r)?;
    let domain_sid_present = r.u32("LogonDomainId")? != 0;
    if !domain_sid_present {
        return r.fail("LogonDomainId is null");
    }
    r.take(8, "Reserved1")?;
    r.u32("UserAccountControl")?;
    r.u32("SubAuthStatus")?;
    r.filetime()?; // LastSuccessfulILogon
    r.filetime()?; // LastFailedILogon
    r.u32("FailedILogonCount")?;
    r.u32("Reserved3")?;
    let sid_count = r.u32("SidCount")?;
    let extra_present = r.u32("ExtraSids")? != 0;
    sized_pointer(r, extra_present, sid_count, "SidCount is set but ExtraSids is null")?;
    let resource_domain_present = r.u32("ResourceGroupDomainSid")? != 0;
    let resource_count = r.u32("ResourceGroupCount")?;
    let resource_present = r.u32("ResourceGroupIds")? != 0;
    sized_pointer(r, resource_present, resource_count, "ResourceGroupCount is set but ResourceGroupIds is null")?;

    // The referents, in the order of their pointers.
    let account = characters(r, &effective_name)?;
    let full_name = characters(r, &full_name)?;
    for s in [&logon_script, &profile_path, &home_directory, &home_drive] {
        characters(r, s)?;
    }
    let groups = if groups_present { group_rids(r, group_count)? } else { Vec::new() };
    let logon_server = characters(r, &logon_server)?;
    let logon_domain = characters(r, &logon_domain)?;
    let domain_sid = sid(r)?;
    let extra_sids = if extra_present { sids_and_attributes(r, sid_count)? } else { Vec::new() };
    let resource_domain = if resource_domain_present { Some(sid(r)?) } else { None };
    let resource_groups = if resource_present { group_rids(r, resource_count)? } else { Vec::new() };
    if account.is_empty() {
        return r.fail("EffectiveName is empty");
    }
    // The object is padded to a multiple of 8, no more.
    if r.remaining() >= 8 {
        return r.fail("bytes after the structure");
    }
    if user_flags & H_RESOURCE_GROUPS != 0 && resource_domain.is_none() && !resource_groups.is_empty() {
        return r.fail("resource groups without ResourceGroupDomainSid");
    }
    let extra_sids = if user_flags & D_EXTRA_SIDS != 0 { extra_sids } else { Vec::new() };
    let (resource_domain, resource_groups) =
        if user_flags & H_RESOURCE_GROUPS != 0 { (resource_domain, resource_groups) } else { (None, Vec::new()) };
    Ok(LogonInfo {
        account,
        full_name,
        logon_domain,
        logon_server,
        domain_sid,
        user_rid,
        primary_group_rid,
        user_flags,
        groups,
        extra_sids,
        resource_domain,
        resource_groups,
    })
}

/// The fuzz target's body (`fuzz/fuzz_targets/pac_logon_info.rs`), also run
/// on generated inputs by the unit tests: never a panic, and every SID of a
/// buffer that parses prints as text that reads back as the same SID.
pub fn fuzz_logon_info(data: &[u8]) {
    let Ok(info) = parse_logon_info(data) else { return };
    let mut all = vec![info.user_sid(), info.primary_group_sid()];
    all.extend(info.group_sids().into_iter().map(|g| g.sid));
    for sid in all {
        assert_eq!(Sid::parse(&sid.to_string()).as_ref(), Some(&sid), "{sid}");
    }
}

#[cfg(test)]
#[path = "logon_info_tests.rs"]
mod tests;
