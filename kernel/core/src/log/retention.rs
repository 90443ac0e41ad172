//! Retention: removing whole sealed segments that the policy no longer keeps. Up to
//! `LogConfig::recycle_segments_max` of their files are kept for reuse (renamed
//! `<old base>.free`) instead of unlinked; a roll takes one (`append.rs`), docs/log.md D13.

use super::files::remove_if_present;
use super::{Log, LogError, RetentionPolicy};
use crate::segment::{free_name, index_name, segment_name};
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
            let (base, recycle) = {
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
                // Only a file whose every batch carries its epoch may be reused: a batch
                // of epoch 0 left in it would read as data of its next life.
                let room = state.free.len() + state.free_reserved
                    < usize::try_from(self.config.recycle_segments_max).expect("small");
                let recycle =
                    room && front.epoch_tagged && !state.free.contains(&front.base_offset);
                if recycle {
                    state.free_reserved += 1;
                }
                (front.base_offset, recycle)
            };
            let io = |(file, error)| LogError::Io { file, error };
            let result = self.retire(base, recycle).await;
            if recycle {
                let mut state = self.state.borrow_mut();
                state.free_reserved -= 1;
                if result.is_ok() {
                    state.free.push(base);
                }
            }
            result.map_err(io)?;
            removed += 1;
        }
        Ok(removed)
    }

    /// Removes a segment's index file, then unlinks its file or renames it for reuse.
    /// A crash in between leaves the segment without an index (recovery scans it and
    /// writes the index again); the rename is atomic.
    async fn retire(
        &self,
        base: crate::types::Offset,
        recycle: bool,
    ) -> Result<(), (String, crate::storage::IoError)> {
        remove_if_present(&self.storage, &index_name(base)).await?;
        let name = segment_name(base);
        if recycle {
            self.storage
                .rename(&name, &free_name(base))
                .await
                .map_err(|error| (name.clone(), error))
        } else {
            remove_if_present(&self.storage, &name).await
        }
    }
}
