//! Server farms: the backends of one site as a configuration generation
//! reaches them, and which of them a request goes to. A site is a route, its
//! farm the cluster behind it (Envoy's words); a farm of one is the site with
//! one `backend`.
//!
//! - `select.rs`: weighted least outstanding requests (pure);
//! - `state.rs`: each backend's health, ejection, drain and requests in flight,
//!   kept across reloads;
//! - `sessions.rs`: the bounded table that keeps a session on its backend;
//! - `affinity.rs`: the session a request belongs to (Outlook Anywhere, MAPI);
//! - `cookie.rs`: the signed affinity cookie;
//! - `health.rs`: the active checks.
//!
//! The request pipeline asks [`Farm::place`] where a request may go and
//! [`Farm::next`] for each backend to try; it never reaches into the state.

mod affinity;
mod cookie;
mod health;
mod select;
mod sessions;
mod state;

pub use affinity::{mapi_context, mapi_context_set, remove_cookie, rpc_channel, rpc_session};
pub use cookie::{cookie_values, Signer};
pub use health::Checks;
pub use sessions::{Hold, SessionKey, Sessions};
pub use state::{InFlight, MemberId, MemberState, Registry};

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::backend::Target;
use crate::config::{self, Affinity, Health};

/// One backend of a farm, as this generation reaches it.
pub struct Member {
    pub id: MemberId,
    pub target: Arc<Target>,
    pub backend: config::Backend,
    /// The URL as the file writes it.
    pub url: String,
    pub weight: u32,
    /// `drain = true` in the file.
    pub drain: bool,
    pub state: Arc<MemberState>,
    /// The SPN of its Kerberos tickets, on a delegating site.
    pub spn: Option<String>,
}

impl Member {
    /// Drained by the file or by `gatehouse backend drain`.
    pub fn drained(&self) -> bool {
        self.drain || self.state.drained()
    }
}

/// The backends of one site.
pub struct Farm {
    pub site: Arc<str>,
    /// The `[[site]]` (a preset's sites share it): drain, pins and sessions go by it.
    pub family: Arc<str>,
    pub members: Vec<Member>,
    pub health: Health,
    pub affinity: Affinity,
    pub sessions: Arc<Sessions>,
    /// With `affinity = "cookie"`.
    pub cookie: Option<Signer>,
    /// Advanced on every pick, so that equal loads take turns.
    turn: AtomicUsize,
}

/// Why a request has nowhere to go.
#[derive(Debug)]
pub enum Unavailable {
    /// Every backend is down, ejected or drained: what each is, for the log.
    NoBackend(String),
    /// The client connection's own backend logon is on a backend that is
    /// gone or down: it cannot move, the client must connect again.
    PinnedGone(String),
}

/// Where one request may go, and what it must try next when a backend
/// cannot be reached.
pub struct Placement {
    first: Option<usize>,
    /// The request must stay on `first` (a pass-through logon).
    pub pinned: bool,
    pub session: Option<SessionKey>,
    /// The backend the client's valid affinity cookie names.
    pub cookie: Option<MemberId>,
    tried: Vec<usize>,
}

/// What a request brings that may tie it to a backend.
#[derive(Default)]
pub struct Wants {
    /// The backend this client connection's own logon lives on.
    pub pinned_to: Option<MemberId>,
    pub session: Option<SessionKey>,
    pub cookie: Option<MemberId>,
    /// The backend this client connection's signed-in user went to last,
    /// where gatehouse's own logon for them (a Kerberos ticket on that backend
    /// connection) is pooled: taken while it may take new sessions.
    pub prefer: Option<MemberId>,
}

impl Farm {
    /// The farm of `site` in a new generation: its backends' targets (shared
    /// per origin and TLS settings), their states and its session table from
    /// `registry` (the same as before a reload for what stays).
    pub fn build(
        site: &config::Site,
        targets: &HashMap<config::Backend, Arc<Target>>,
        registry: &Registry,
        settings: &config::AffinitySettings,
    ) -> Result<Farm, String> {
        let mut members = Vec::new();
        for m in &site.farm.members {
            let target =
                targets.get(&m.backend).ok_or_else(|| format!("site `{}`: no target for {}", site.name, m.url))?;
            let id = MemberId::of(&m.backend);
            members.push(Member {
                id,
                target: target.clone(),
                backend: m.backend.clone(),
                url: m.url.clone(),
                weight: m.weight,
                drain: m.drain,
                state: registry.member(&site.name, id, &m.backend.origin),
                spn: site.kcd().map(|k| k.spn_for(&m.backend)),
            });
        }
        let cookie = (site.farm.affinity == Affinity::Cookie).then(|| {
            let key: Arc<[u8]> = match &settings.key {
                Some(k) => Arc::from(k.0.as_slice()),
                None => registry.generated_key.clone(),
            };
            let preset = site.name != site.family;
            let path = if preset { "/" } else { site.path_prefix.as_str() };
            Signer::new(key, &site.family, &settings.cookie, path)
        });
        Ok(Farm {
            site: site.name.as_str().into(),
            family: site.family.as_str().into(),
            members,
            health: site.farm.health.clone(),
            affinity: site.farm.affinity,
            sessions: registry.sessions(&site.family, settings),
            cookie,
            turn: AtomicUsize::new(0),
        })
    }

    pub fn index_of(&self, id: MemberId) -> Option<usize> {
        self.members.iter().position(|m| m.id == id)
    }

    /// May take a new session: healthy and not drained.
    fn open_to_new(&self, i: usize) -> bool {
        self.members.get(i).is_some_and(|m| !m.drained() && m.state.healthy())
    }

    /// May carry a session it already has: healthy (drained or not).
    fn open_to_existing(&self, i: usize) -> bool {
        self.members.get(i).is_some_and(|m| m.state.healthy())
    }

    /// The backend for a new session, among those not `tried`.
    fn pick(&self, tried: &[usize]) -> Option<usize> {
        let candidates: Vec<Option<select::Candidate>> = (0..self.members.len())
            .map(|i| {
                (!tried.contains(&i) && self.open_to_new(i)).then(|| select::Candidate {
                    weight: self.members[i].weight,
                    in_flight: self.members[i].state.in_flight(),
                })
            })
            .collect();
        select::least_outstanding(&candidates, self.turn.fetch_add(1, Ordering::Relaxed))
    }

    /// Where a request with `wants` may go. A pass-through logon stays on its
    /// backend or fails; a session with a healthy backend goes back to it,
    /// drained or not; anything else is a new session.
    pub fn place(&self, wants: Wants) -> Result<Placement, Unavailable> {
        let Wants { pinned_to, session, cookie, prefer } = wants;
        if let Some(id) = pinned_to {
            return match self.index_of(id).filter(|&i| self.open_to_existing(i)) {
                Some(i) => Ok(Placement { first: Some(i), pinned: true, session: None, cookie, tried: Vec::new() }),
                None => Err(Unavailable::PinnedGone(self.unavailable())),
            };
        }
        let sticky = session.as_ref().and_then(|k| self.sessions.lookup(k)).or(cookie);
        let first = sticky
            .and_then(|id| self.index_of(id))
            .filter(|&i| self.open_to_existing(i))
            .or_else(|| prefer.and_then(|id| self.index_of(id)).filter(|&i| self.open_to_new(i)));
        let placement = Placement { first, pinned: false, session, cookie, tried: Vec::new() };
        if first.is_none() && (0..self.members.len()).all(|i| !self.open_to_new(i)) {
            return Err(Unavailable::NoBackend(self.unavailable()));
        }
        Ok(placement)
    }

    /// The next backend to try for `p`, or None when there is none left.
    pub fn next(&self, p: &mut Placement) -> Option<usize> {
        let next = match (p.tried.is_empty(), p.first) {
            (true, Some(i)) => Some(i),
            _ if p.pinned => None,
            _ => self.pick(&p.tried),
        };
        if let Some(i) = next {
            p.tried.push(i);
        }
        next
    }

    /// What each backend is, for the log line of a 503.
    pub fn unavailable(&self) -> String {
        let each: Vec<String> = self
            .members
            .iter()
            .map(|m| {
                let state = if !m.state.checks_pass() {
                    "down"
                } else if m.state.ejected_for().is_some() {
                    "ejected"
                } else if m.drained() {
                    "drained"
                } else {
                    "up"
                };
                format!("{} {state}", m.backend.origin)
            })
            .collect();
        format!("site {}: no backend can take the request ({})", self.site, each.join(", "))
    }

    /// A request's connection to backend `i` could not be opened.
    pub fn connect_failed(&self, i: usize, why: &str) {
        if let Some(m) = self.members.get(i) {
            m.state.connect_failed(why, &self.health);
        }
    }

    pub fn connected(&self, i: usize) {
        if let Some(m) = self.members.get(i) {
            m.state.connect_ok();
        }
    }

    /// Backend `i` answered with `status`.
    pub fn answered(&self, i: usize, status: u16) {
        let others = (0..self.members.len()).any(|j| j != i && self.open_to_new(j));
        if let Some(m) = self.members.get(i) {
            m.state.answered(status, &self.health, others);
        }
    }

    /// Counts a request on backend `i` in flight, and holds its session
    /// there, until the lease drops (when its response has ended).
    pub fn lease(&self, i: usize, session: Option<&SessionKey>) -> Option<Lease> {
        let m = self.members.get(i)?;
        let hold = session.and_then(|k| self.sessions.hold(k, m.id));
        Some(Lease { _in_flight: m.state.lease(), _hold: hold })
    }
}

/// A request in flight on a backend, and its session held there.
pub struct Lease {
    _in_flight: InFlight,
    _hold: Option<Hold>,
}

/// Which backend of each `[[site]]` one client connection's backend logons
/// are on. `pinned`: a pass-through logon (the client's own Windows logon on
/// that backend connection): its later requests may go nowhere else. `last`:
/// where gatehouse signed its user in (KCD), which its next request prefers
/// while that backend takes new sessions, as HAProxy's `prefer-last-server`
/// does for connection-bound authentication: one backend logon per client
/// connection instead of one on every backend.
#[derive(Default)]
pub struct Pins {
    pinned: Mutex<Vec<(Arc<str>, MemberId)>>,
    last: Mutex<Vec<(Arc<str>, MemberId)>>,
}

fn find(list: &Mutex<Vec<(Arc<str>, MemberId)>>, family: &str) -> Option<MemberId> {
    let list = list.lock().unwrap_or_else(|e| e.into_inner());
    list.iter().find(|(f, _)| &**f == family).map(|(_, m)| *m)
}

fn put(list: &Mutex<Vec<(Arc<str>, MemberId)>>, family: &Arc<str>, member: MemberId) {
    let mut list = list.lock().unwrap_or_else(|e| e.into_inner());
    match list.iter_mut().find(|(f, _)| f == family) {
        Some(pin) => pin.1 = member,
        None => list.push((family.clone(), member)),
    }
}

impl Pins {
    pub fn get(&self, family: &str) -> Option<MemberId> {
        find(&self.pinned, family)
    }

    pub fn set(&self, family: &Arc<str>, member: MemberId) {
        put(&self.pinned, family, member)
    }

    pub fn last(&self, family: &str) -> Option<MemberId> {
        find(&self.last, family)
    }

    pub fn set_last(&self, family: &Arc<str>, member: MemberId) {
        put(&self.last, family, member)
    }
}

#[cfg(test)]
mod tests;
