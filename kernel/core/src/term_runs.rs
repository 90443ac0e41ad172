//! The Raft terms of a segment's records, kept as runs: one `(first offset, term)` pair
//! per change of term, not one per record.
//!
//! Every record of a batch has the batch's term (its header's `term` field, 0 for
//! batches written before terms existed), so a run starts at a batch's base offset. The
//! log keeps the runs of every segment in memory (built by appends, by the recovery
//! scan, or read from the segment's index file) so that `Log::term_at` needs no I/O.
//! Runs are bounded by the segment's batches; with terms that only grow (the log refuses
//! a lower term) they are bounded by the terms the segment saw.

use crate::types::Offset;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TermRuns {
    /// (first offset of the run, term), offsets strictly increasing, adjacent terms
    /// different.
    runs: Vec<(Offset, u64)>,
}

impl TermRuns {
    /// Notes that records from `first` on have `term`; `first` must be past every
    /// earlier run's start (a new batch).
    pub fn observe(&mut self, first: Offset, term: u64) {
        if let Some((last_first, last_term)) = self.runs.last() {
            assert!(first > *last_first, "term runs must move forward");
            if *last_term == term {
                return;
            }
        }
        self.runs.push((first, term));
    }

    /// The term of the run that covers `offset`: `None` before the first run. The
    /// caller knows where the segment ends.
    pub fn term_at(&self, offset: Offset) -> Option<u64> {
        let index = self.runs.partition_point(|(first, _)| *first <= offset);
        index.checked_sub(1).map(|i| self.runs[i].1)
    }

    /// The term of the last run.
    pub fn last_term(&self) -> Option<u64> {
        self.runs.last().map(|(_, term)| *term)
    }

    /// Forgets the terms of offsets at or after `offset`.
    pub fn truncate_from(&mut self, offset: Offset) {
        let keep = self.runs.partition_point(|(first, _)| *first < offset);
        self.runs.truncate(keep);
    }

    /// The runs, oldest first.
    pub fn runs(&self) -> &[(Offset, u64)] {
        &self.runs
    }

    /// Builds runs from stored pairs; `None` unless offsets strictly increase and
    /// adjacent terms differ.
    pub fn from_runs(runs: Vec<(Offset, u64)>) -> Option<TermRuns> {
        let valid = runs
            .windows(2)
            .all(|pair| pair[0].0 < pair[1].0 && pair[0].1 != pair[1].1);
        valid.then_some(TermRuns { runs })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_merge_equal_terms_and_answer_lookups() {
        let mut runs = TermRuns::default();
        assert_eq!(runs.term_at(Offset(5)), None);
        runs.observe(Offset(10), 0);
        runs.observe(Offset(12), 0);
        runs.observe(Offset(15), 3);
        runs.observe(Offset(20), 3);
        runs.observe(Offset(22), 4);
        assert_eq!(
            runs.runs(),
            &[(Offset(10), 0), (Offset(15), 3), (Offset(22), 4)]
        );
        assert_eq!(runs.term_at(Offset(9)), None);
        assert_eq!(runs.term_at(Offset(14)), Some(0));
        assert_eq!(runs.term_at(Offset(15)), Some(3));
        assert_eq!(runs.term_at(Offset(1000)), Some(4));
        runs.truncate_from(Offset(22));
        assert_eq!(runs.last_term(), Some(3));
        runs.truncate_from(Offset(11));
        assert_eq!(runs.runs(), &[(Offset(10), 0)]);
        runs.truncate_from(Offset(10));
        assert_eq!(runs.last_term(), None);
    }

    #[test]
    fn stored_runs_are_validated() {
        assert!(TermRuns::from_runs(vec![(Offset(1), 1), (Offset(2), 2)]).is_some());
        assert!(TermRuns::from_runs(vec![(Offset(2), 1), (Offset(2), 2)]).is_none());
        assert!(TermRuns::from_runs(vec![(Offset(1), 1), (Offset(2), 1)]).is_none());
        assert!(TermRuns::from_runs(Vec::new()).is_some());
    }
}
