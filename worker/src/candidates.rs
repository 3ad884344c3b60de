//! What one claim asks for: the kinds with room under their limits and how many jobs (`Room`),
//! and which of the fetched candidates to name (`Candidates`).
//!
//! It only decides, from the worker's state and a list already fetched: it must not call the
//! queue. When to fetch and claim, and what becomes of the jobs claimed, are the claim loop's
//! (`runtime`), which uses this module and must never be used by it.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use mongodb::bson::oid::ObjectId;
use sv0_queue::Candidate;

use crate::state::Inner;

impl Inner {
    /// What the worker may claim now, or `None` when it should wait for more of its jobs to
    /// finish. Room is the slots plus the most jobs any kind may lease ahead, less the jobs in
    /// line or running; a kind with a limit of its own counts every job of it the worker holds,
    /// and a kind at its limit is not asked for at all. A busy worker claims once half its room
    /// is free, or, when a run slot has no job even in line for it, once it has not looked for
    /// a poll cap (`patient`): each claim scans the queue, so claiming one job per freed slot of
    /// fast jobs would pay a scan per job (on the stand, a scan of the whole collection), while
    /// waiting for half the room would leave slots idle for as long as long jobs run in the
    /// others.
    pub(crate) fn room(&self, patient: bool) -> Option<Room> {
        let held = self.held();
        let concurrency = self.config.concurrency;
        let room = concurrency + self.claim_ahead.most(concurrency);
        let occupied = self.slots.occupied();
        let free = room.saturating_sub(occupied);
        let threshold = room.div_ceil(2);
        // A slot with no job in line for it has waited long enough once the worker is patient;
        // jobs leased ahead and waiting for slots are work already in hand.
        let idle_slot = occupied < concurrency;
        if free == 0 || (occupied > 0 && free < threshold && !(patient && idle_slot)) {
            return None;
        }
        let mut limit = free;
        let mut kinds = Vec::new();
        for kind in self.handlers.kinds() {
            match self.config.kind_limits.get(&kind) {
                Some(&max) => {
                    let running = held.values().filter(|h| h.kind == kind).count();
                    if running < max {
                        limit = limit.min(max - running);
                        kinds.push(kind);
                    }
                }
                None => kinds.push(kind),
            }
        }
        (!kinds.is_empty()).then_some(Room {
            kinds,
            now: concurrency.saturating_sub(occupied),
            limit,
        })
    }
}

/// What one claim may take.
#[derive(Debug)]
pub(crate) struct Room {
    /// Kinds with room under their limits.
    pub(crate) kinds: Vec<String>,
    /// Free slots: jobs that start as soon as they are claimed.
    pub(crate) now: usize,
    /// The most jobs to claim, those leased ahead included.
    pub(crate) limit: usize,
}

/// Claim candidates from one sorted query.
#[derive(Debug, Default)]
pub(crate) struct Candidates {
    list: VecDeque<Candidate>,
    /// The kinds the query asked for.
    kinds: Vec<String>,
    fetched_at: Option<Instant>,
}

impl Candidates {
    /// True when the list must be fetched again: old, used up, or fetched for other kinds than
    /// `kinds` (a kind that regained room would be missing from it).
    pub(crate) fn stale(&mut self, max_age: Duration, kinds: &[String]) -> bool {
        if kinds.iter().any(|k| !self.kinds.contains(k)) {
            return true;
        }
        // Kinds at their limit now: their candidates wait in the queue, not in this list.
        self.list.retain(|c| kinds.contains(&c.kind));
        self.list.is_empty() || self.fetched_at.is_none_or(|at| at.elapsed() > max_age)
    }

    pub(crate) fn refill(&mut self, list: Vec<Candidate>, kinds: &[String]) {
        self.list = list.into();
        self.kinds = kinds.to_vec();
        self.fetched_at = Some(Instant::now());
    }

    /// Takes up to `limit` candidates for one claim: the first `now` as they come (they start at
    /// once), then only those whose kind may still be leased ahead (`ahead(kind)` of each kind).
    /// It starts at the `pick`-th batch of the run of candidates that share the head's priority,
    /// modulo their number. Workers fetch the same sorted list; taking from its front, they would
    /// race for the same jobs in lockstep, and each lost race costs a claim. A random pick spreads
    /// them apart while priority order still holds between priorities (within one, order between
    /// workers is loose anyway).
    pub(crate) fn take(
        &mut self,
        now: usize,
        limit: usize,
        ahead: impl Fn(&str) -> usize,
        pick: usize,
    ) -> Vec<ObjectId> {
        let Some(head) = self.list.front().map(|c| c.priority) else {
            return Vec::new();
        };
        let n = limit.max(1);
        let same_priority = self.list.iter().take_while(|c| c.priority == head).count();
        let batches = (same_priority / n).max(1);
        let start = (pick % batches) * n;
        let mut budgets: HashMap<String, usize> = HashMap::new();
        let mut now_left = now;
        let mut taken = Vec::new();
        let mut kept = VecDeque::with_capacity(self.list.len());
        for (i, candidate) in self.list.drain(..).enumerate() {
            let mut take = || {
                if i < start || taken.len() == n {
                    return false;
                }
                if now_left > 0 {
                    now_left -= 1;
                    return true;
                }
                let budget = budgets
                    .entry(candidate.kind.clone())
                    .or_insert_with(|| ahead(&candidate.kind));
                let fits = *budget > 0;
                *budget = budget.saturating_sub(1);
                fits
            };
            if take() {
                taken.push(candidate.id);
            } else {
                kept.push_back(candidate);
            }
        }
        self.list = kept;
        taken
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(kinds_and_priorities: &[(&str, i32)]) -> (Candidates, Vec<ObjectId>) {
        let list: Vec<Candidate> = kinds_and_priorities
            .iter()
            .map(|&(kind, priority)| Candidate {
                id: ObjectId::new(),
                kind: kind.to_string(),
                priority,
            })
            .collect();
        let ids = list.iter().map(|c| c.id).collect();
        let mut candidates = Candidates::default();
        candidates.refill(list, &["k".to_string(), "slow".to_string()]);
        (candidates, ids)
    }

    fn all(ahead: usize) -> impl Fn(&str) -> usize {
        move |_| ahead
    }

    #[test]
    fn a_take_stays_within_the_head_priority() {
        let (mut candidates, ids) =
            list(&[("k", 9), ("k", 5), ("k", 5), ("k", 5), ("k", 5), ("k", 1)]);
        assert_eq!(
            candidates.take(1, 1, all(0), 7),
            ids[..1],
            "the 9 alone heads the list"
        );
        assert_eq!(
            candidates.take(2, 2, all(0), 1),
            ids[3..5],
            "second batch of the 5s"
        );
        assert_eq!(
            candidates.take(2, 2, all(0), 0),
            ids[1..3],
            "first batch of the 5s"
        );
        assert_eq!(
            candidates.take(2, 2, all(0), 3),
            ids[5..],
            "the 1 is all that is left"
        );
        assert!(candidates.take(2, 2, all(0), 0).is_empty());
    }

    #[test]
    fn different_picks_take_disjoint_batches() {
        let (mut a, ids) = list(&[("k", 0); 64]);
        let mut b = Candidates::default();
        b.refill(a.list.iter().cloned().collect(), &a.kinds.clone());
        let first = a.take(16, 16, all(0), 0);
        let second = b.take(16, 16, all(0), 1);
        assert_eq!(first, ids[..16]);
        assert_eq!(second, ids[16..32]);
    }

    /// Beyond the free slots, only kinds that may be leased ahead are taken.
    #[test]
    fn jobs_leased_ahead_are_only_of_kinds_that_may_be() {
        let (mut candidates, ids) = list(&[("k", 0), ("slow", 0), ("k", 0), ("slow", 0), ("k", 0)]);
        let ahead = |kind: &str| if kind == "k" { 1 } else { 0 };
        let taken = candidates.take(1, 5, ahead, 0);
        assert_eq!(
            taken,
            vec![ids[0], ids[2]],
            "one to run now, one fast one ahead"
        );
        assert_eq!(candidates.list.len(), 3, "the rest stay candidates");
    }

    /// Candidates of a kind that reached its limit are dropped, and a kind that regained room
    /// makes the list stale.
    #[test]
    fn the_list_follows_the_kinds_with_room() {
        let (mut candidates, ids) = list(&[("slow", 0), ("k", 0)]);
        assert!(!candidates.stale(Duration::from_secs(60), &["k".to_string()]));
        assert_eq!(candidates.take(1, 1, all(0), 0), vec![ids[1]]);
        assert!(
            candidates.stale(Duration::from_secs(60), &["k".to_string()]),
            "only the limited kind's candidates were left: look again"
        );
        assert!(candidates.stale(Duration::from_secs(60), &["other".to_string()]));
    }
}
