//! A deadline queue for the engine's timers: delayed and scheduled messages, visibility
//! leases and retry back-off.
//!
//! An ordered index keyed by (deadline, insertion number): insert and pop are O(log n),
//! and firing touches only expired entries, so a million pending timers cost a receive
//! nothing and a tick only the timers that are due. Timers fire in deadline order, ties in
//! insertion order, which keeps replays deterministic. Cancellation is lazy for callers
//! that prefer it (they check the fired item against their own state) or exact through
//! [`TimerQueue::cancel`].

use std::collections::BTreeMap;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TimerKey {
    pub deadline_ms: u64,
    sequence: u64,
}

#[derive(Clone, Debug)]
pub struct TimerQueue<T> {
    entries: BTreeMap<TimerKey, T>,
    sequence: u64,
}

impl<T> Default for TimerQueue<T> {
    fn default() -> Self {
        TimerQueue {
            entries: BTreeMap::new(),
            sequence: 0,
        }
    }
}

impl<T> TimerQueue<T> {
    pub fn insert(&mut self, deadline_ms: u64, item: T) -> TimerKey {
        let key = TimerKey {
            deadline_ms,
            sequence: self.sequence,
        };
        self.sequence += 1;
        self.entries.insert(key, item);
        key
    }

    pub fn cancel(&mut self, key: TimerKey) -> Option<T> {
        self.entries.remove(&key)
    }

    /// Removes and returns the earliest timer due at `now_ms`, if any.
    pub fn pop_due(&mut self, now_ms: u64) -> Option<(u64, T)> {
        let entry = self.entries.first_entry()?;
        if entry.key().deadline_ms > now_ms {
            return None;
        }
        let (key, item) = entry.remove_entry();
        Some((key.deadline_ms, item))
    }

    pub fn next_deadline_ms(&self) -> Option<u64> {
        self.entries
            .first_key_value()
            .map(|(key, _)| key.deadline_ms)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn clear(&mut self) {
        self.entries.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fires_in_deadline_then_insertion_order() {
        let mut timers = TimerQueue::default();
        timers.insert(30, "c");
        let cancelled = timers.insert(10, "x");
        timers.insert(10, "a");
        timers.insert(20, "b");
        timers.insert(10, "a2");
        assert_eq!(timers.cancel(cancelled), Some("x"));
        assert_eq!(timers.next_deadline_ms(), Some(10));
        let mut fired = Vec::new();
        while let Some((_, item)) = timers.pop_due(20) {
            fired.push(item);
        }
        assert_eq!(fired, ["a", "a2", "b"]);
        assert_eq!(timers.len(), 1);
        assert_eq!(timers.pop_due(29), None);
    }
}
