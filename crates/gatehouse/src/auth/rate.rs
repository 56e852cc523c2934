//! A per-client-address limit on sign-in attempts (the sign-in page's and the
//! password change's), right or wrong: the lockout counts failures against
//! accounts, this bounds how fast one address may try at all, so that a
//! password spray from one address stays slow even where every name it tries
//! is new. IPv6 clients count per /64 (one subscriber's LAN), IPv4-mapped
//! addresses as IPv4. The table is bounded: past `MAX_CLIENTS`, windows that
//! ended are dropped, then the oldest.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const WINDOW: Duration = Duration::from_secs(60);
const MAX_CLIENTS: usize = 100_000;

#[derive(Default)]
pub struct Attempts {
    clients: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl Attempts {
    /// Counts an attempt from `client`; false when it is over `per_minute`
    /// in the current minute (the attempt is then not made).
    pub fn allow(&self, client: IpAddr, per_minute: u32) -> bool {
        self.allow_at(client, per_minute, Instant::now())
    }

    fn allow_at(&self, client: IpAddr, per_minute: u32, now: Instant) -> bool {
        let key = network(client);
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        if clients.len() >= MAX_CLIENTS && !clients.contains_key(&key) {
            clients.retain(|_, (start, _)| now.duration_since(*start) < WINDOW);
            if clients.len() >= MAX_CLIENTS {
                if let Some(oldest) = clients.iter().min_by_key(|(_, (s, _))| *s).map(|(k, _)| *k) {
                    clients.remove(&oldest);
                }
            }
        }
        let entry = clients.entry(key).or_insert((now, 0));
        if now.duration_since(entry.0) >= WINDOW {
            *entry = (now, 0);
        }
        if entry.1 >= per_minute {
            return false;
        }
        entry.1 += 1;
        true
    }

    pub fn sweep(&self) {
        let now = Instant::now();
        self.clients.lock().unwrap_or_else(|e| e.into_inner()).retain(|_, (s, _)| now.duration_since(*s) < WINDOW);
    }
}

fn network(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_address_per_minute() {
        let a = Attempts::default();
        let t0 = Instant::now();
        let one: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..3 {
            assert!(a.allow_at(one, 3, t0));
        }
        assert!(!a.allow_at(one, 3, t0 + Duration::from_secs(59)), "the fourth in the minute");
        assert!(a.allow_at("192.0.2.2".parse().unwrap(), 3, t0), "another address");
        assert!(a.allow_at(one, 3, t0 + Duration::from_secs(60)), "the next minute");
        // One /64 is one client; a mapped IPv4 address is that address.
        let v6 = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(a.allow_at(v6("2001:db8::1"), 2, t0) && a.allow_at(v6("2001:db8::ffff:2"), 2, t0));
        assert!(!a.allow_at(v6("2001:db8::3"), 2, t0));
        assert!(a.allow_at(v6("2001:db8:0:1::1"), 2, t0), "another /64");
        let b = Attempts::default();
        assert!(b.allow_at(v6("::ffff:192.0.2.9"), 1, t0));
        assert!(!b.allow_at(v6("192.0.2.9"), 1, t0));
    }
}
