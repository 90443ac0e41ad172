//! A set of u64 kept as disjoint half-open ranges. Consumer groups record which message
//! sequence numbers are done with it: acks arrive mostly in order, so a group with a
//! million acknowledged messages usually holds one range, not a million entries.

use std::collections::BTreeMap;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RangeSet {
    /// start -> end (exclusive); ranges are disjoint and never adjacent.
    ranges: BTreeMap<u64, u64>,
}

impl RangeSet {
    /// The range containing `value`, if any.
    pub fn range_of(&self, value: u64) -> Option<(u64, u64)> {
        let (start, end) = self.ranges.range(..=value).next_back()?;
        (value < *end).then_some((*start, *end))
    }

    pub fn contains(&self, value: u64) -> bool {
        self.range_of(value).is_some()
    }

    pub fn insert(&mut self, value: u64) {
        self.insert_range(value, value + 1);
    }

    pub fn remove(&mut self, value: u64) {
        let Some((start, end)) = self.range_of(value) else {
            return;
        };
        self.ranges.remove(&start);
        if start < value {
            self.ranges.insert(start, value);
        }
        if value + 1 < end {
            self.ranges.insert(value + 1, end);
        }
    }

    /// Forgets every value below `floor`.
    pub fn trim_below(&mut self, floor: u64) {
        let mut kept = self.ranges.split_off(&floor);
        if let Some((_, &end)) = self.ranges.iter().next_back() {
            if end > floor {
                kept.insert(floor, end);
            }
        }
        self.ranges = kept;
    }

    pub fn range_count(&self) -> usize {
        self.ranges.len()
    }

    pub fn ranges(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.ranges.iter().map(|(s, e)| (*s, *e))
    }

    /// Adds every value in `[start, end)`, merging touching ranges.
    pub fn insert_range(&mut self, start: u64, end: u64) {
        if start >= end {
            return;
        }
        let mut merged_start = start;
        let mut merged_end = end;
        if let Some((&left_start, &left_end)) = self.ranges.range(..=start).next_back() {
            if left_end >= start {
                merged_start = left_start;
                merged_end = merged_end.max(left_end);
            }
        }
        let covered: Vec<u64> = self
            .ranges
            .range(merged_start..=merged_end)
            .map(|(key, _)| *key)
            .collect();
        for key in covered {
            let covered_end = self.ranges.remove(&key).expect("listed above");
            merged_end = merged_end.max(covered_end);
        }
        self.ranges.insert(merged_start, merged_end);
    }

    /// Values in `[from, to)` that are not in the set, counted.
    pub fn count_missing(&self, from: u64, to: u64) -> u64 {
        if from >= to {
            return 0;
        }
        let mut covered = 0;
        let start_key = self.range_of(from).map_or(from, |(s, _)| s);
        for (start, end) in self.ranges.range(start_key..to) {
            let lo = (*start).max(from);
            let hi = (*end).min(to);
            if hi > lo {
                covered += hi - lo;
            }
        }
        (to - from) - covered
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(set: &RangeSet, expected: &[(u64, u64)]) {
        assert_eq!(set.ranges().collect::<Vec<_>>(), expected);
    }

    #[test]
    fn insert_merges_and_remove_splits() {
        let mut set = RangeSet::default();
        for v in [1, 2, 3, 7, 5, 6] {
            set.insert(v);
        }
        check(&set, &[(1, 4), (5, 8)]);
        set.insert(4);
        check(&set, &[(1, 8)]);
        set.remove(4);
        check(&set, &[(1, 4), (5, 8)]);
        set.remove(1);
        set.remove(7);
        check(&set, &[(2, 4), (5, 7)]);
        assert!(set.contains(6));
        assert!(!set.contains(7));
        assert_eq!(set.count_missing(0, 10), 6);
        set.trim_below(3);
        check(&set, &[(3, 4), (5, 7)]);
        set.trim_below(6);
        check(&set, &[(6, 7)]);
        set.insert_range(10, 20);
        set.insert_range(7, 10);
        check(&set, &[(6, 20)]);
    }

    #[test]
    fn matches_a_plain_set() {
        // Goal: RangeSet behaves like a BTreeSet. Method: pseudo-random inserts and
        // removes, compared after each step.
        let mut set = RangeSet::default();
        let mut model = std::collections::BTreeSet::new();
        let mut x = 12345u64;
        for _ in 0..5000 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let value = (x >> 33) % 64;
            if (x >> 20).is_multiple_of(3) {
                set.remove(value);
                model.remove(&value);
            } else {
                set.insert(value);
                model.insert(value);
            }
            for v in 0..64 {
                assert_eq!(set.contains(v), model.contains(&v));
            }
            let missing = (10..50).filter(|v| !model.contains(v)).count() as u64;
            assert_eq!(set.count_missing(10, 50), missing);
        }
    }
}
