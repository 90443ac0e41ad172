//! Exponential back-off of failed password logins, counted per key: one table keyed by the
//! tenant a login names, one by the client's address (docs/auth.md, "Password logins").
//!
//! Each attempt is charged as a failure before its password is checked (so that many
//! attempts in flight at once count at once) and refunded if it succeeds or never ran.
//! After `failures_free` failures, each further failure blocks the key for `backoff_ms_min`,
//! doubling up to `backoff_ms_max`; a blocked key's attempts are refused with the time
//! left, without checking anything. A key's failures are forgotten `forget_ms` after its
//! last one (when it is not blocked).
//!
//! Bounded (docs/style.md §4): at most `entries_max` keys, allocated at construction. Keys
//! that find the table full (after forgetting what may be forgotten) share one overflow
//! entry, so memory stays bounded and no failure goes uncounted; under such a flood those
//! keys back off together. Times are queue-time milliseconds, passed in.

use std::collections::HashMap;
use std::hash::Hash;

/// How one table backs off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackoffPolicy {
    /// Failures a key may have before back-off starts.
    pub failures_free: u32,
    pub backoff_ms_min: u64,
    pub backoff_ms_max: u64,
    /// A key's failures are forgotten this long after its last one.
    pub forget_ms: u64,
    /// Keys tracked one by one; the rest share the overflow entry.
    pub entries_max: usize,
}

#[derive(Clone, Copy, Debug, Default)]
struct Entry {
    failures: u32,
    last_failure_ms: u64,
    blocked_until_ms: u64,
}

impl Entry {
    fn forgettable(&self, policy: &BackoffPolicy, now_ms: u64) -> bool {
        now_ms >= self.blocked_until_ms
            && now_ms >= self.last_failure_ms.saturating_add(policy.forget_ms)
    }
}

/// Where a charged attempt was counted, to refund or reset it later.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Charged<K> {
    Key(K),
    Overflow,
}

pub struct BackoffTable<K> {
    policy: BackoffPolicy,
    entries: HashMap<K, Entry>,
    overflow: Entry,
    /// No scan for forgettable entries before this: the earliest one of them may go.
    scan_not_before_ms: u64,
}

impl<K: Hash + Eq + Clone> BackoffTable<K> {
    pub fn new(policy: BackoffPolicy) -> BackoffTable<K> {
        assert!(policy.entries_max > 0, "a back-off table tracks keys");
        assert!(policy.backoff_ms_min > 0, "a back-off lasts");
        assert!(policy.backoff_ms_min <= policy.backoff_ms_max, "min <= max");
        BackoffTable {
            policy,
            entries: HashMap::with_capacity(policy.entries_max),
            overflow: Entry::default(),
            scan_not_before_ms: 0,
        }
    }

    /// Charges an attempt under `key` as a failure, or refuses it with the milliseconds
    /// until the key's block ends.
    pub fn charge(&mut self, key: &K, now_ms: u64) -> Result<Charged<K>, u64> {
        let policy = self.policy;
        let charged = self.slot_for(key, now_ms);
        let entry = self.entry_mut(&charged);
        if now_ms < entry.blocked_until_ms {
            return Err(entry.blocked_until_ms - now_ms);
        }
        if entry.forgettable(&policy, now_ms) {
            *entry = Entry::default();
        }
        entry.failures = entry.failures.saturating_add(1);
        entry.last_failure_ms = now_ms;
        if entry.failures > policy.failures_free {
            let doublings = (entry.failures - policy.failures_free - 1).min(32);
            let backoff_ms = policy
                .backoff_ms_min
                .saturating_mul(1u64 << doublings)
                .min(policy.backoff_ms_max);
            entry.blocked_until_ms = now_ms.saturating_add(backoff_ms);
        }
        Ok(charged)
    }

    /// Takes back one charge: the attempt succeeded (for the address table) or never ran.
    pub fn refund(&mut self, charged: &Charged<K>) {
        let policy = self.policy;
        if let Some(entry) = self.entry_get_mut(charged) {
            entry.failures = entry.failures.saturating_sub(1);
            // Only failures past the free ones block.
            if entry.failures <= policy.failures_free {
                entry.blocked_until_ms = 0;
            }
        }
    }

    /// Forgets the key's failures: the right password was given (the tenant table). The
    /// shared overflow entry is only refunded.
    pub fn reset(&mut self, charged: &Charged<K>) {
        match charged {
            Charged::Key(key) => {
                self.entries.remove(key);
            }
            Charged::Overflow => self.refund(charged),
        }
    }

    /// Keys tracked one by one (tests).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The key's own entry, a new one if there is room, else the overflow entry.
    fn slot_for(&mut self, key: &K, now_ms: u64) -> Charged<K> {
        if !self.entries.contains_key(key) && self.entries.len() >= self.policy.entries_max {
            self.forget_old(now_ms);
        }
        if self.entries.contains_key(key) || self.entries.len() < self.policy.entries_max {
            self.entries.entry(key.clone()).or_default();
            return Charged::Key(key.clone());
        }
        Charged::Overflow
    }

    fn entry_mut(&mut self, charged: &Charged<K>) -> &mut Entry {
        self.entry_get_mut(charged)
            .expect("a slot just made holds its entry")
    }

    fn entry_get_mut(&mut self, charged: &Charged<K>) -> Option<&mut Entry> {
        match charged {
            Charged::Key(key) => self.entries.get_mut(key),
            Charged::Overflow => Some(&mut self.overflow),
        }
    }

    /// Drops forgettable entries; at most one scan per period in which none can go.
    fn forget_old(&mut self, now_ms: u64) {
        if now_ms < self.scan_not_before_ms {
            return;
        }
        let policy = self.policy;
        self.entries
            .retain(|_, entry| !entry.forgettable(&policy, now_ms));
        self.scan_not_before_ms = self
            .entries
            .values()
            .map(|entry| {
                entry
                    .blocked_until_ms
                    .max(entry.last_failure_ms.saturating_add(policy.forget_ms))
            })
            .min()
            .unwrap_or(now_ms);
        assert!(
            self.entries.len() <= policy.entries_max,
            "the table stays bounded"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: BackoffPolicy = BackoffPolicy {
        failures_free: 2,
        backoff_ms_min: 1_000,
        backoff_ms_max: 4_000,
        forget_ms: 60_000,
        entries_max: 2,
    };

    /// Charges `key` at `now_ms`: `Ok(())` when allowed, `Err(ms)` when refused.
    fn check(table: &mut BackoffTable<u32>, key: u32, now_ms: u64, expected: Result<(), u64>) {
        let got = table.charge(&key, now_ms).map(|_| ());
        assert_eq!(got, expected, "key {key} at {now_ms}");
    }

    #[test]
    fn failures_past_the_free_ones_double_the_block_up_to_the_max() {
        let mut table = BackoffTable::new(POLICY);
        check(&mut table, 1, 0, Ok(()));
        check(&mut table, 1, 0, Ok(()));
        check(&mut table, 1, 0, Ok(())); // third failure: blocked 1 s
        check(&mut table, 1, 500, Err(500));
        check(&mut table, 2, 500, Ok(()));
        check(&mut table, 1, 1_000, Ok(())); // blocked 2 s
        check(&mut table, 1, 2_999, Err(1));
        check(&mut table, 1, 3_000, Ok(())); // 4 s
        check(&mut table, 1, 7_000, Ok(())); // 8 s, capped at 4 s
        check(&mut table, 1, 7_001, Err(3_999));
        // Forgotten a minute after the last failure.
        check(&mut table, 1, 67_000, Ok(()));
        check(&mut table, 1, 67_000, Ok(()));
        check(&mut table, 1, 67_000, Ok(()));
        check(&mut table, 1, 67_001, Err(999));
    }

    #[test]
    fn refunds_and_resets_take_back_charges() {
        let mut table = BackoffTable::new(POLICY);
        for _ in 0..2 {
            let charged = table.charge(&1, 0).unwrap();
            table.refund(&charged);
        }
        check(&mut table, 1, 0, Ok(()));
        check(&mut table, 1, 0, Ok(()));
        let third = table.charge(&1, 0).unwrap();
        table.refund(&third);
        check(&mut table, 1, 0, Ok(())); // the refund lifted its block
        check(&mut table, 1, 0, Err(1_000));
        table.reset(&Charged::Key(1));
        check(&mut table, 1, 0, Ok(()));
    }

    #[test]
    fn a_full_table_shares_one_overflow_entry() {
        // Goal: memory stays bounded and failures of untracked keys still count. Method: a
        // table of two keys; keys 3 and 4 land in the overflow entry and back off together,
        // until tracked entries may be forgotten.
        let mut table = BackoffTable::new(POLICY);
        check(&mut table, 1, 0, Ok(()));
        check(&mut table, 2, 0, Ok(()));
        assert_eq!(table.charge(&3, 0), Ok(Charged::Overflow));
        assert_eq!(table.charge(&4, 0), Ok(Charged::Overflow));
        assert_eq!(table.charge(&3, 0), Ok(Charged::Overflow));
        check(&mut table, 4, 10, Err(990));
        check(&mut table, 1, 10, Ok(()));
        assert_eq!(table.len(), 2);
        // A minute later keys 1 and 2 are forgotten and key 3 gets an entry of its own.
        assert_eq!(table.charge(&3, 60_010), Ok(Charged::Key(3)));
        assert_eq!(table.len(), 1);
    }
}
