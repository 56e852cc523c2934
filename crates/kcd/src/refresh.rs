//! The background thread that gets the service's own credentials from the KDC
//! (the acceptor's TGT with usage "both", the service account's TGT for
//! S4U2Self) at start and again before they expire, so that no request ever
//! waits for that exchange, and nothing a client sends can start one.
//!
//! One thread per [`Delegator`]: it holds only a weak reference, and its wake-up
//! channel's sender lives in the delegator, so a delegator replaced by a reload
//! ends its thread when the last request using it is done.

use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use crate::Delegator;

/// After a failed round: 5 s, 10 s, 20 s ... up to 5 minutes. A KDC that stays
/// down costs one AS exchange per credential per period, not one per request.
const FIRST_RETRY: Duration = Duration::from_secs(5);
const MAX_RETRY: Duration = Duration::from_secs(5 * 60);
/// Never sooner than this after a good round (a ticket with a tiny lifetime
/// must not turn the thread into a busy loop against the KDC).
const MIN_PERIOD: Duration = Duration::from_secs(30);

/// Exponential backoff between failed rounds.
#[derive(Debug)]
pub(crate) struct Backoff {
    next: Duration,
}

impl Backoff {
    pub(crate) fn new() -> Backoff {
        Backoff { next: FIRST_RETRY }
    }

    pub(crate) fn failed(&mut self) -> Duration {
        let wait = self.next;
        self.next = (self.next * 2).min(MAX_RETRY);
        wait
    }

    pub(crate) fn succeeded(&mut self) {
        self.next = FIRST_RETRY;
    }
}

/// When a credential with `lifetime` left should be replaced: halfway, as MIT
/// does for keytab credentials, which leaves the other half to ride out a KDC
/// outage.
pub(crate) fn refresh_after(lifetime: Duration) -> Duration {
    (lifetime / 2).max(MIN_PERIOD)
}

/// What one round did.
pub(crate) struct Round {
    /// Something could not be had; retry with backoff.
    pub failed: bool,
    /// When the earliest credential is due for renewal.
    pub next: Option<Instant>,
}

/// Starts the thread for `delegator`; returns the sender that keeps it alive
/// (dropped with the delegator) and a receiver that hears when the first round
/// is over.
pub(crate) fn spawn(delegator: &Arc<Delegator>) -> std::io::Result<(mpsc::Sender<()>, mpsc::Receiver<()>)> {
    let (wake, wakes) = mpsc::channel::<()>();
    let (first_done, first) = mpsc::channel::<()>();
    let weak: Weak<Delegator> = Arc::downgrade(delegator);
    std::thread::Builder::new().name("gatehouse-kcd".into()).spawn(move || {
        let mut backoff = Backoff::new();
        let mut first_done = Some(first_done);
        loop {
            let Some(d) = weak.upgrade() else { return };
            let round = d.refresh_round();
            drop(d);
            if let Some(tx) = first_done.take() {
                let _ = tx.send(());
            }
            let wait = if round.failed {
                backoff.failed()
            } else {
                backoff.succeeded();
                round.next.map_or(MAX_RETRY, |at| at.saturating_duration_since(Instant::now())).max(MIN_PERIOD)
            };
            match wakes.recv_timeout(wait) {
                Err(RecvTimeoutError::Disconnected) => return,
                Ok(()) | Err(RecvTimeoutError::Timeout) => {}
            }
        }
    })?;
    Ok((wake, first))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_and_starts_over_after_a_success() {
        let mut b = Backoff::new();
        let waits: Vec<u64> = (0..9).map(|_| b.failed().as_secs()).collect();
        assert_eq!(waits, [5, 10, 20, 40, 80, 160, 300, 300, 300]);
        b.succeeded();
        assert_eq!(b.failed(), FIRST_RETRY);
    }

    #[test]
    fn credentials_are_renewed_halfway_but_never_in_a_busy_loop() {
        assert_eq!(refresh_after(Duration::from_secs(10 * 3600)), Duration::from_secs(5 * 3600));
        assert_eq!(refresh_after(Duration::from_secs(10)), MIN_PERIOD);
        assert_eq!(refresh_after(Duration::ZERO), MIN_PERIOD);
    }
}
