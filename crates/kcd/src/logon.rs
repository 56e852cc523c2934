//! A user's logon as the domain states it: the PAC's logon information, the
//! SIDs it makes the user hold, and when it was read. Access rules compare
//! SIDs on every request, so the list is built once per logon, not per use.

use std::time::Instant;

use crate::logon_info::{LogonInfo, Sid};

#[derive(Debug)]
pub struct Logon {
    pub info: LogonInfo,
    /// The user's SID first, then every group SID (see
    /// [`LogonInfo::group_sids`]), each once.
    sids: Vec<Sid>,
    /// When the domain controller said this (the ticket's PAC was read).
    pub read: Instant,
}

impl Logon {
    pub fn new(info: LogonInfo) -> Logon {
        let user = info.user_sid();
        let groups = info.group_sids().into_iter().map(|g| g.sid).filter(|s| *s != user);
        let sids = std::iter::once(user.clone()).chain(groups).collect();
        Logon { info, sids, read: Instant::now() }
    }

    pub fn user_sid(&self) -> &Sid {
        &self.sids[0]
    }

    /// The user's SID and their groups'.
    pub fn sids(&self) -> &[Sid] {
        &self.sids
    }

    /// Whether the user is this SID or holds it as a group.
    pub fn holds(&self, sid: &Sid) -> bool {
        self.sids.contains(sid)
    }
}
