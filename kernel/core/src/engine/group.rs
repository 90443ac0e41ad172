//! One consumer group's view of one queue.
//!
//! Durable state (folded from the log, kept in snapshots): which messages are done
//! (acked, filtered out or dead-lettered) as a [`RangeSet`], failure counts, retry
//! back-off waits, dead letters and the tag filter. Leader-only state (lost on restart,
//! which only makes messages visible early, never loses them): the dispatch cursor,
//! visibility leases, the ready set of redeliverable messages and FIFO locks.
//!
//! Invariant for every sequence number `seq` of a retained message below `cursor`: it is
//! done, filtered out, held (leased, being acked or failed, or waiting out a back-off),
//! dead, or in `ready`. Positions at or past `cursor` are found by the cursor scan.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap};

use super::range_set::RangeSet;
use super::types::{GroupId, TagFilter, TagMatch};
use crate::limits::RECEIVE_ATTEMPTS_PER_GROUP_MAX;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Hold {
    /// Delivered and invisible until `deadline_ms` (leader only).
    /// `nonce` is the low half of the handle's nonce: 16 bytes a lease, not 24.
    Leased { nonce: u32, deadline_ms: u64 },
    /// An ack is being made durable (leader only).
    Acking,
    /// A failure is being made durable (leader only).
    Nacking,
    /// Failed with back-off; visible again at `visible_ms` (durable).
    Waiting { visible_ms: u64 },
}

/// A receive's answer kept under its attempt key (leader only): until when, and each
/// delivery's sequence number and full nonce, in the order answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Attempt {
    pub expires_ms: u64,
    pub leases: Vec<(u64, u64)>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct DeadLetter {
    /// The dead-letter delivery in flight, if any (leader only).
    pub lease: Option<(u64, u64)>,
    pub acking: bool,
}

/// A tag filter resolved to the queue's tag ids.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct CompiledFilter {
    pub source: TagFilter,
    /// `None` for a tag the queue has never seen: no message can carry it.
    pub ids: Vec<Option<u16>>,
}

impl CompiledFilter {
    pub fn matches(&self, message_tags: &[u16; 3]) -> bool {
        if self.ids.is_empty() {
            return true;
        }
        let carried = |id: &Option<u16>| id.is_some_and(|id| message_tags.contains(&id));
        match self.source.mode {
            TagMatch::Any => self.ids.iter().any(carried),
            TagMatch::All => self.ids.iter().all(carried),
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct Group {
    pub id: GroupId,
    pub name: String,
    pub filter: Option<CompiledFilter>,
    pub done: RangeSet,
    pub failures: HashMap<u64, u16>,
    /// When each message delivered and not yet done was first delivered (leader only:
    /// after a restart or a change of leader a message's next delivery counts as its
    /// first). An entry per message in flight or failed, gone when the message is done.
    pub first_delivered: HashMap<u64, u64>,
    /// Receive answers by attempt key (`ReceiveRequest::attempt`; leader only), at most
    /// `RECEIVE_ATTEMPTS_PER_GROUP_MAX`.
    pub attempts: HashMap<u64, Attempt>,
    pub holds: BTreeMap<u64, Hold>,
    pub dead: BTreeMap<u64, DeadLetter>,
    pub ready: BTreeSet<u64>,
    pub cursor: u64,
    /// FIFO key -> number of held messages with that key.
    pub locks: HashMap<u32, u32>,
    pub leased_count: u64,
    /// (deadline, seq) of main-lane leases, earliest first. Entries of leases that ended
    /// are dropped lazily when they surface (leader only).
    pub lease_heap: BinaryHeap<Reverse<(u64, u64)>>,
    pub acked_total: u64,
    pub delivered_total: u64,
    pub dead_total: u64,
    /// The group's move task on this partition, if one runs (`super::moves`).
    pub moving: Option<super::moves::MoveTask>,
    /// Messages moved out of the group by move tasks, ever.
    pub moved_total: u64,
}

impl Group {
    pub fn new(id: GroupId, name: String, first_seq: u64) -> Group {
        Group {
            id,
            name,
            filter: None,
            done: RangeSet::default(),
            failures: HashMap::new(),
            first_delivered: HashMap::new(),
            attempts: HashMap::new(),
            holds: BTreeMap::new(),
            dead: BTreeMap::new(),
            ready: BTreeSet::new(),
            cursor: first_seq,
            locks: HashMap::new(),
            leased_count: 0,
            lease_heap: BinaryHeap::new(),
            acked_total: 0,
            delivered_total: 0,
            dead_total: 0,
            moving: None,
            moved_total: 0,
        }
    }

    /// Keeps `leases`, a receive's answer, under attempt `key` until `expires_ms`,
    /// dropping expired attempts and, at the bound, the one expiring first.
    pub fn remember_attempt(
        &mut self,
        key: u64,
        leases: Vec<(u64, u64)>,
        now: u64,
        expires_ms: u64,
    ) {
        self.attempts.retain(|_, attempt| attempt.expires_ms > now);
        if self.attempts.len() >= RECEIVE_ATTEMPTS_PER_GROUP_MAX
            && !self.attempts.contains_key(&key)
        {
            let first = self
                .attempts
                .iter()
                .min_by_key(|(key, attempt)| (attempt.expires_ms, **key))
                .map(|(key, _)| *key);
            if let Some(first) = first {
                self.attempts.remove(&first);
            }
        }
        self.attempts.insert(key, Attempt { expires_ms, leases });
    }

    /// Sets or clears the hold on `seq`, keeping FIFO locks and counters in step.
    pub fn set_hold(&mut self, seq: u64, key: u32, hold: Option<Hold>) {
        let previous = match hold {
            Some(hold) => self.holds.insert(seq, hold),
            None => self.holds.remove(&seq),
        };
        if matches!(previous, Some(Hold::Leased { .. })) {
            self.leased_count -= 1;
        }
        if matches!(hold, Some(Hold::Leased { .. })) {
            self.leased_count += 1;
        }
        match (previous.is_some(), hold.is_some()) {
            (false, true) => *self.locks.entry(key).or_insert(0) += 1,
            (true, false) => {
                let count = self
                    .locks
                    .get_mut(&key)
                    .expect("a held message locks its key");
                *count -= 1;
                if *count == 0 {
                    self.locks.remove(&key);
                }
            }
            _ => {}
        }
    }

    /// For a durable ack or fail of `seq`: false when the message is done already;
    /// otherwise ends whatever hold it had (lease, pending ack or fail, back-off) and
    /// returns true.
    pub fn end_hold_unless_done(&mut self, seq: u64, key: u32) -> bool {
        if self.done.contains(seq) {
            return false;
        }
        if self.holds.contains_key(&seq) {
            self.set_hold(seq, key, None);
        }
        true
    }

    /// For a durable ack or move of `seq`: false when it is done already; otherwise ends
    /// its hold, forgets its failures, first delivery and redelivery, and returns true
    /// (the caller marks it done and counts it).
    pub fn finish(&mut self, seq: u64, key: u32) -> bool {
        if !self.end_hold_unless_done(seq, key) {
            return false;
        }
        self.failures.remove(&seq);
        self.first_delivered.remove(&seq);
        self.ready.remove(&seq);
        true
    }

    /// A message that is neither done nor held becomes deliverable again.
    pub fn make_visible(&mut self, seq: u64) {
        assert!(!self.holds.contains_key(&seq), "visible message still held");
        if seq < self.cursor {
            self.ready.insert(seq);
        }
    }

    /// Forgets everything about messages below `base` (removed by retention). Returns
    /// the FIFO keys whose holds were dropped, for lock accounting by the caller.
    pub fn trim_below(&mut self, base: u64, key_of: impl Fn(u64) -> u32) {
        self.done.trim_below(base);
        self.failures.retain(|seq, _| *seq >= base);
        self.first_delivered.retain(|seq, _| *seq >= base);
        let dropped: Vec<u64> = self.holds.range(..base).map(|(seq, _)| *seq).collect();
        for seq in dropped {
            let key = key_of(seq);
            self.set_hold(seq, key, None);
        }
        self.dead = self.dead.split_off(&base);
        self.ready = self.ready.split_off(&base);
        self.cursor = self.cursor.max(base);
    }
}

/// The part of a handle's nonce a lease keeps.
pub(crate) fn short_nonce(nonce: u64) -> u32 {
    (nonce & u64::from(u32::MAX)) as u32
}

const _: () = assert!(core::mem::size_of::<Hold>() == 16);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_keeps_its_bound_of_receive_attempts_dropping_the_first_to_expire() {
        let max = RECEIVE_ATTEMPTS_PER_GROUP_MAX as u64;
        let mut g = Group::new(GroupId(1), "g".into(), 0);
        for key in 0..max + 10 {
            g.remember_attempt(key, vec![(key, key)], 0, 1_000 + key);
        }
        assert_eq!(g.attempts.len(), RECEIVE_ATTEMPTS_PER_GROUP_MAX);
        assert!(!g.attempts.contains_key(&9) && g.attempts.contains_key(&10));
        // Expired attempts go before any other.
        g.remember_attempt(u64::MAX, Vec::new(), 1_000 + max, 10_000_000);
        assert_eq!(g.attempts.len(), 10);
        assert_eq!(g.attempts[&u64::MAX].expires_ms, 10_000_000);
    }
}
