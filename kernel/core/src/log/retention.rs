//! Retention: removing whole sealed segments that the policy no longer keeps.

use super::files::remove_if_present;
use super::{Log, LogError, RetentionPolicy};
use crate::segment::{index_name, segment_name};
use crate::storage::Storage;

impl<S: Storage> Log<S> {
    /// Removes whole sealed segments that `policy` no longer keeps. Returns how many.
    /// Removes nothing while a truncation runs.
    pub async fn apply_retention(
        &self,
        now_ms: u64,
        policy: RetentionPolicy,
    ) -> Result<u32, LogError> {
        let mut removed = 0;
        // Bounded by the number of segments.
        loop {
            let base = {
                let mut state = self.state.borrow_mut();
                let total_bytes: u64 = state.segments.iter().map(|s| s.data_bytes()).sum();
                let Some(front) = state.segments.front() else {
                    break;
                };
                if state.segments.len() < 2 || !front.sealed || state.truncating {
                    break;
                }
                let expired = policy
                    .age_ms_max
                    .is_some_and(|age| front.timestamp_ms_max.saturating_add(age) < now_ms);
                let oversized = policy.bytes_max.is_some_and(|max| total_bytes > max);
                let below = policy
                    .remove_below
                    .is_some_and(|pin| front.next_offset <= pin);
                if !expired && !oversized && !below {
                    break;
                }
                let front = state.segments.pop_front().expect("checked above");
                if let Some(term) = front.terms.last_term() {
                    state.term_before_start = Some(term);
                }
                let start = front.next_offset;
                state.cache.remove_below(start);
                front.base_offset
            };
            for name in [index_name(base), segment_name(base)] {
                remove_if_present(&self.storage, &name)
                    .await
                    .map_err(|(file, error)| LogError::Io { file, error })?;
            }
            removed += 1;
        }
        Ok(removed)
    }
}
