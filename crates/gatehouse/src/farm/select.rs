//! Which backend takes a new request: the fewest requests in flight for its
//! weight, ties taken in weighted turns. Pure: the caller reads the counts.
//!
//! Weighted least outstanding requests rather than round robin, because an
//! Outlook Anywhere channel or a MAPI long poll holds its backend for minutes
//! to hours: round robin counts requests, not load, so a backend holding
//! hundreds of open channels would keep its full share of new ones, and a slow
//! backend (its requests pile up) would keep getting its share too. At low load
//! every count is zero, and the turns make it weighted round robin (nginx's
//! `least_conn` breaks ties the same way).

/// A backend that may take the request: its weight and its requests in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    pub weight: u32,
    pub in_flight: usize,
}

/// The index of the candidate to use (`None` entries may not take the
/// request), or None when none may. `turn` is a counter the caller advances
/// on every pick, so that ties go round.
pub fn least_outstanding(candidates: &[Option<Candidate>], turn: usize) -> Option<usize> {
    // Compare in_flight / weight without division: a/w < b/v  <=>  a*v < b*w.
    let load = |c: &Candidate| (c.in_flight as u128, u128::from(c.weight.max(1)));
    let least = candidates.iter().flatten().min_by(|a, b| {
        let ((a_n, a_w), (b_n, b_w)) = (load(a), load(b));
        (a_n * b_w).cmp(&(b_n * a_w))
    })?;
    let (l_n, l_w) = load(least);
    let tied = |c: &Candidate| {
        let (n, w) = load(c);
        n * l_w == l_n * w
    };
    let total: u64 = candidates.iter().flatten().filter(|c| tied(c)).map(|c| u64::from(c.weight.max(1))).sum();
    let mut at = (turn as u64) % total.max(1);
    for (i, c) in candidates.iter().enumerate() {
        let Some(c) = c.filter(tied) else { continue };
        let w = u64::from(c.weight.max(1));
        if at < w {
            return Some(i);
        }
        at -= w;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(weight: u32, in_flight: usize) -> Option<Candidate> {
        Some(Candidate { weight, in_flight })
    }

    #[test]
    fn the_least_loaded_for_its_weight_wins() {
        assert_eq!(least_outstanding(&[c(1, 3), c(1, 1), c(1, 2)], 0), Some(1));
        // 4 in flight at weight 2 is less loaded than 3 at weight 1.
        assert_eq!(least_outstanding(&[c(1, 3), c(2, 4)], 7), Some(1));
        // Long-lived channels count: the backend holding them is avoided.
        assert_eq!(least_outstanding(&[c(1, 500), c(1, 499), c(1, 0)], 3), Some(2));
    }

    #[test]
    fn nothing_eligible_is_none() {
        assert_eq!(least_outstanding(&[], 0), None);
        assert_eq!(least_outstanding(&[None, None], 5), None);
        assert_eq!(least_outstanding(&[None, c(1, 9), None], 5), Some(1));
    }

    #[test]
    fn ties_go_round_by_weight() {
        let idle = [c(1, 0), c(2, 0), None, c(1, 0)];
        let picks: Vec<usize> = (0..8).map(|t| least_outstanding(&idle, t).unwrap()).collect();
        assert_eq!(picks, [0, 1, 1, 3, 0, 1, 1, 3]);
        let mut counts = [0; 4];
        for t in 0..4000 {
            counts[least_outstanding(&idle, t).unwrap()] += 1;
        }
        assert_eq!(counts, [1000, 2000, 0, 1000]);
    }

    #[test]
    fn only_the_tied_least_loaded_share_the_turns() {
        let set = [c(1, 1), c(1, 0), c(3, 0)];
        for t in 0..100 {
            assert_ne!(least_outstanding(&set, t), Some(0), "turn {t}");
        }
    }
}
