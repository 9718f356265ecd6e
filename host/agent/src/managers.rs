//! The managers an agent may open its session with, each with a weight, as SwarmKit's remotes.
//!
//! The list starts with the configured addresses and becomes what the dispatcher announces in
//! its session messages (never empty: an empty announcement keeps the list). A session is opened
//! with a manager picked at random by weight; a failure halves that manager's weight (down to
//! one) so the others are preferred, and a registration restores it. A manager that just
//! failed is not picked again while there is another.

use std::collections::HashSet;
use std::time::Duration;

use rand::Rng;

use crate::agent::{ManagerPeer, next_backoff};
use crate::config::validate_addr;

/// Weight of a configured manager (the dispatcher announces its managers with 10 too).
pub const DEFAULT_WEIGHT: u32 = 10;
/// Announced weights are clamped to this.
const MAX_WEIGHT: u32 = 1_000_000;

#[derive(Clone, Debug, PartialEq, Eq)]
struct Entry {
    addr: String,
    /// The weight it was configured or announced with.
    base: u32,
    /// The weight now: `base`, lowered by failures.
    weight: u32,
}

/// The known managers, `addr -> weight`, in the order they were configured or announced.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Managers {
    entries: Vec<Entry>,
}

impl Managers {
    /// The configured addresses, each with [`DEFAULT_WEIGHT`]; duplicates are dropped.
    pub fn new<S: AsRef<str>>(addrs: &[S]) -> Self {
        let mut managers = Self::default();
        for addr in addrs {
            managers.insert(addr.as_ref(), DEFAULT_WEIGHT);
        }
        managers
    }

    fn insert(&mut self, addr: &str, weight: u32) {
        if !self.entries.iter().any(|e| e.addr == addr) {
            self.entries.push(Entry {
                addr: addr.to_string(),
                base: weight,
                weight,
            });
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The addresses, in order.
    pub fn addrs(&self) -> Vec<String> {
        self.entries.iter().map(|e| e.addr.clone()).collect()
    }

    /// A manager's current weight.
    pub fn weight(&self, addr: &str) -> Option<u32> {
        self.entries
            .iter()
            .find(|e| e.addr == addr)
            .map(|e| e.weight)
    }

    /// A manager chosen at random by weight, other than `exclude` when there is another.
    pub fn pick(&self, exclude: Option<&str>) -> Option<String> {
        self.pick_with(&mut rand::rng(), exclude)
    }

    /// [`Managers::pick`] with the given random source.
    pub fn pick_with<R: Rng + ?Sized>(&self, rng: &mut R, exclude: Option<&str>) -> Option<String> {
        self.choose(rng, |addr| Some(addr) == exclude)
            .or_else(|| self.choose(rng, |_| false))
    }

    /// A manager chosen at random by weight among those `skip` does not refuse.
    fn choose<R: Rng + ?Sized>(&self, rng: &mut R, skip: impl Fn(&str) -> bool) -> Option<String> {
        let candidates: Vec<&Entry> = self.entries.iter().filter(|e| !skip(&e.addr)).collect();
        let total: u64 = candidates.iter().map(|e| u64::from(e.weight)).sum();
        if total == 0 {
            return None;
        }
        let mut point = rng.random_range(0..total);
        for entry in candidates {
            let weight = u64::from(entry.weight);
            if point < weight {
                return Some(entry.addr.clone());
            }
            point -= weight;
        }
        None
    }

    /// A session with `addr` failed: its weight is halved, down to 1.
    pub fn observe_failure(&mut self, addr: &str) {
        if let Some(entry) = self.entries.iter_mut().find(|e| e.addr == addr) {
            entry.weight = (entry.weight / 2).max(1);
        }
    }

    /// A session with `addr` registered: its weight is back to the configured or announced one.
    pub fn observe_success(&mut self, addr: &str) {
        if let Some(entry) = self.entries.iter_mut().find(|e| e.addr == addr) {
            entry.weight = entry.base;
        }
    }

    /// The dispatcher's list becomes the list, with its weights (clamped to 1..=1,000,000).
    /// Entries with an unusable address are skipped; when none is left the list is kept as it
    /// is. A manager already known keeps the penalty of its recent failures.
    pub fn replace_from_announcement(&mut self, peers: &[ManagerPeer]) {
        let mut next = Self::default();
        for peer in peers {
            if validate_addr("managers", &peer.addr).is_err() {
                continue;
            }
            let base = u32::try_from(peer.weight.clamp(1, i64::from(MAX_WEIGHT)))
                .unwrap_or(DEFAULT_WEIGHT);
            next.insert(&peer.addr, base);
        }
        if next.is_empty() {
            return;
        }
        for entry in &mut next.entries {
            if let Some(old) = self.entries.iter().find(|e| e.addr == entry.addr)
                && old.weight < old.base
            {
                entry.weight = old.weight.min(entry.base);
            }
        }
        *self = next;
    }
}

/// One pass over the known managers: each is tried at most once before the backoff applies, so
/// a dead manager is skipped at once to the next one, and only a round where all failed waits.
#[derive(Debug, Default)]
pub(crate) struct Round {
    tried: HashSet<String>,
    backoff: Duration,
    last_failed: Option<String>,
}

impl Round {
    /// The manager to try next: one not tried in this round, preferably not the one that just
    /// failed, chosen by weight.
    pub(crate) fn next<R: Rng + ?Sized>(&self, managers: &Managers, rng: &mut R) -> Option<String> {
        let last = self.last_failed.as_deref();
        managers
            .choose(rng, |addr| self.tried.contains(addr) || Some(addr) == last)
            .or_else(|| managers.choose(rng, |addr| self.tried.contains(addr)))
            .or_else(|| managers.pick_with(rng, last))
    }

    /// A session with `addr` ended (`registered`: after registering). Returns how long to wait
    /// before the next attempt (before jitter): zero while this round has managers left to try,
    /// else the next backoff, and a new round starts.
    pub(crate) fn failed(&mut self, managers: &Managers, addr: &str, registered: bool) -> Duration {
        if registered {
            // A session that worked starts a new round with no backoff.
            self.tried.clear();
            self.backoff = Duration::ZERO;
        }
        self.tried.insert(addr.to_string());
        self.last_failed = Some(addr.to_string());
        if managers
            .entries
            .iter()
            .any(|e| !self.tried.contains(&e.addr))
        {
            return Duration::ZERO;
        }
        self.tried.clear();
        self.backoff = next_backoff(self.backoff);
        self.backoff
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    const A: &str = "10.0.0.1:4242";
    const B: &str = "10.0.0.2:4242";
    const C: &str = "10.0.0.3:4242";

    fn peer(addr: &str, weight: i64) -> ManagerPeer {
        ManagerPeer {
            node_id: format!("manager-{addr}"),
            addr: addr.into(),
            weight,
        }
    }

    /// How often each manager is picked in `n` picks.
    fn frequencies(managers: &Managers, exclude: Option<&str>, n: usize) -> Vec<(String, usize)> {
        let mut rng = StdRng::seed_from_u64(7);
        let mut counts: Vec<(String, usize)> =
            managers.addrs().into_iter().map(|a| (a, 0)).collect();
        for _ in 0..n {
            let picked = managers.pick_with(&mut rng, exclude).expect("a manager");
            counts
                .iter_mut()
                .find(|(a, _)| *a == picked)
                .expect("a known manager")
                .1 += 1;
        }
        counts
    }

    #[test]
    fn configured_managers_are_deduplicated_with_the_default_weight() {
        let managers = Managers::new(&[A, B, A]);
        assert_eq!(managers.addrs(), [A, B]);
        assert_eq!(managers.weight(A), Some(DEFAULT_WEIGHT));
        assert_eq!(managers.weight(C), None);
        assert_eq!(Managers::new::<&str>(&[]).pick(None), None);
    }

    #[test]
    fn the_manager_that_failed_is_not_picked_next_when_there_is_another() {
        let mut managers = Managers::new(&[A, B]);
        managers.observe_failure(A);
        let counts = frequencies(&managers, Some(A), 1_000);
        assert_eq!(counts, [(A.to_string(), 0), (B.to_string(), 1_000)]);
        // Alone, it is picked anyway.
        let alone = Managers::new(&[A]);
        assert_eq!(alone.pick(Some(A)).as_deref(), Some(A));
    }

    #[test]
    fn weights_set_how_often_a_manager_is_picked() {
        let mut managers = Managers::default();
        managers.replace_from_announcement(&[peer(A, 90), peer(B, 10)]);
        let counts = frequencies(&managers, None, 10_000);
        assert!((8_500..=9_500).contains(&counts[0].1), "{counts:?}");

        // Equal weights: about even; after a failure of A, A gets about a third.
        let mut managers = Managers::new(&[A, B]);
        let counts = frequencies(&managers, None, 10_000);
        assert!((4_500..=5_500).contains(&counts[0].1), "{counts:?}");
        managers.observe_failure(A);
        let counts = frequencies(&managers, None, 10_000);
        assert!((2_800..=3_900).contains(&counts[0].1), "{counts:?}");
    }

    #[test]
    fn failures_halve_the_weight_down_to_one_and_a_success_restores_it() {
        let mut managers = Managers::new(&[A, B]);
        let mut seen = Vec::new();
        for _ in 0..5 {
            managers.observe_failure(A);
            seen.push(managers.weight(A).expect("A"));
        }
        assert_eq!(seen, [5, 2, 1, 1, 1]);
        assert_eq!(managers.weight(B), Some(DEFAULT_WEIGHT));
        managers.observe_success(A);
        assert_eq!(managers.weight(A), Some(DEFAULT_WEIGHT));
        // Unknown addresses change nothing.
        managers.observe_failure(C);
        assert_eq!(managers.addrs(), [A, B]);
    }

    #[test]
    fn an_announcement_replaces_the_list_but_never_empties_it() {
        let mut managers = Managers::new(&[A]);
        managers.observe_failure(A);
        managers.replace_from_announcement(&[peer(B, 20), peer(A, 10), peer(C, 0)]);
        assert_eq!(managers.addrs(), [B, A, C]);
        assert_eq!(managers.weight(B), Some(20));
        assert_eq!(
            managers.weight(A),
            Some(5),
            "a recent failure is remembered"
        );
        assert_eq!(managers.weight(C), Some(1), "weights are at least 1");

        managers.replace_from_announcement(&[peer(C, 30)]);
        assert_eq!(managers.addrs(), [C], "managers left out are dropped");
        assert_eq!(managers.weight(C), Some(30));

        managers.replace_from_announcement(&[]);
        assert_eq!(
            managers.addrs(),
            [C],
            "an empty announcement keeps the list"
        );
        managers.replace_from_announcement(&[peer("", 10), peer("http://x:1", 10)]);
        assert_eq!(managers.addrs(), [C], "unusable addresses are skipped");
    }

    #[test]
    fn the_backoff_applies_per_round_not_per_manager() {
        let managers = Managers::new(&[A, B, C]);
        let mut rng = StdRng::seed_from_u64(1);
        let mut round = Round::default();
        let mut delays = Vec::new();
        let mut tried = Vec::new();
        for _ in 0..6 {
            let addr = round.next(&managers, &mut rng).expect("a manager");
            tried.push(addr.clone());
            delays.push(round.failed(&managers, &addr, false).as_millis());
        }
        // Three failures a round: no wait between managers, then 100 ms, then 200 ms.
        assert_eq!(delays, [0, 0, 100, 0, 0, 200]);
        let mut first: Vec<&String> = tried[..3].iter().collect();
        first.sort();
        assert_eq!(first, [A, B, C], "each manager once a round: {tried:?}");
        assert_ne!(tried[3], tried[2], "the one that just failed is not first");
        let mut second: Vec<&String> = tried[3..].iter().collect();
        second.sort();
        assert_eq!(second, [A, B, C]);

        // After a session that worked, the next manager is tried at once and the backoff
        // starts again from the bottom.
        let addr = round.next(&managers, &mut rng).expect("a manager");
        assert_eq!(round.failed(&managers, &addr, true), Duration::ZERO);
        let next = round.next(&managers, &mut rng).expect("a manager");
        assert_ne!(next, addr);

        // With one manager, every failure waits, doubling.
        let single = Managers::new(&[A]);
        let mut round = Round::default();
        let delays: Vec<u128> = (0..3)
            .map(|_| round.failed(&single, A, false).as_millis())
            .collect();
        assert_eq!(delays, [100, 200, 400]);
        assert_eq!(round.failed(&single, A, true).as_millis(), 100);
    }
}
