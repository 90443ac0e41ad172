//! Truncation: removing every record at or after an offset, durably, without touching
//! the bytes of any record that stays.
//!
//! Steps (docs/log.md, "Truncation", gives the crash-safety argument):
//! 1. take the flush role (appends answer `Busy`, syncs and retention wait) and flush
//!    everything staged, so every record below the offset is durable;
//! 2. write and sync the truncation record `truncation.rec` naming the offset: from here
//!    on recovery finishes the truncation whatever state a crash leaves;
//! 3. remove every segment whose base offset is at or after the offset, newest first;
//! 4. cap the segment that holds the offset: its bytes stay as they are, its logical end
//!    becomes the offset;
//! 5. create an empty segment whose base is the offset (a successor's base caps its
//!    predecessor for recovery), seal the capped segment (index file with the cap), and
//!    remove the truncation record.

use super::append::FlushGuard;
use super::files::{remove_if_present, write_truncation, TRUNCATION_NAME};
use super::{new_segment, Log, LogError, LogState};
use crate::segment::{index_name, segment_name};
use crate::storage::{IoError, Storage};
use crate::types::Offset;

impl<S: Storage> Log<S> {
    /// Removes every record at or after `offset` (`start_offset <= offset <=
    /// next_offset`, else [`LogError::OutOfRange`]). On `Ok` the truncation is durable:
    /// no removed record comes back after a crash, `next_offset() == offset`, and the
    /// next append gets `offset`. Records below `offset` are never rewritten; staged ones
    /// are synced first. Appends answer `Busy` while it runs. An I/O error poisons the log.
    pub async fn truncate_from(&self, offset: Offset) -> Result<(), LogError> {
        // Bounded: each pass returns or waits for one flush or truncation to end.
        loop {
            let generation = {
                let mut state = self.state.borrow_mut();
                check_truncation(&state, offset)?;
                if offset == state.next_offset {
                    return Ok(());
                }
                if state.flushing {
                    Some(state.flush_generation)
                } else {
                    state.flushing = true;
                    state.truncating = true;
                    None
                }
            };
            match generation {
                Some(generation) => self.wait_flush(generation).await,
                None => break,
            }
        }
        let guard = FlushGuard {
            state: &self.state,
            completed: false,
        };
        let result = self.truncate_exclusive(offset).await;
        guard.finish(result.clone());
        result
    }

    /// The truncation proper, holding the flush role.
    async fn truncate_exclusive(&self, offset: Offset) -> Result<(), LogError> {
        self.flush_once().await?;
        {
            let mut state = self.state.borrow_mut();
            assert_eq!(
                state.staged_bytes, 0,
                "appends are refused while truncating"
            );
            assert_eq!(state.durable_offset, state.next_offset, "all was flushed");
            state.next_offset = offset;
            state.durable_offset = offset;
            state.note_truncation(offset);
            state.cache.truncate_from(offset);
        }
        let io = |(file, error)| LogError::Io { file, error };
        write_truncation(&self.storage, offset).await.map_err(io)?;
        self.remove_segments_from(offset).await.map_err(io)?;
        self.state.borrow_mut().cap_last_segment(offset);
        self.finish_truncation(offset).await.map_err(io)
    }

    /// Removes the segments whose base offset is at or after `offset`, newest first.
    async fn remove_segments_from(&self, offset: Offset) -> Result<(), (String, IoError)> {
        // Bounded by the number of segments.
        loop {
            let base = {
                let mut state = self.state.borrow_mut();
                match state.segments.back() {
                    Some(last) if last.base_offset >= offset => {
                        let last = state.segments.pop_back().expect("checked above");
                        assert!(last.staged.is_empty(), "all was flushed");
                        last.base_offset
                    }
                    _ => break,
                }
            };
            for name in [index_name(base), segment_name(base)] {
                remove_if_present(&self.storage, &name).await?;
            }
        }
        Ok(())
    }

    /// Makes a truncation to `offset` permanent once nothing at or after it is left but
    /// the capped tail of the last segment: creates the empty segment at `offset` (its
    /// base caps the segment before it), seals that segment with its cap and removes the
    /// truncation record. Recovery calls it too, to finish an interrupted truncation.
    pub(super) async fn finish_truncation(&self, offset: Offset) -> Result<(), (String, IoError)> {
        let (previous, reaches) = {
            let state = self.state.borrow();
            match state.segments.back() {
                None => (None, true),
                Some(last) => {
                    assert!(last.next_offset <= offset, "capped before");
                    let file = (!last.sealed).then(|| last.file.clone()).flatten();
                    (
                        file.map(|file| (last.base_offset, file)),
                        last.next_offset == offset,
                    )
                }
            }
        };
        if reaches {
            let name = segment_name(offset);
            let file = self
                .storage
                .create(&name)
                .await
                .map_err(|error| (name, error))?;
            let mut segment = new_segment(offset);
            segment.file = Some(std::rc::Rc::new(file));
            self.state.borrow_mut().segments.push_back(segment);
            if let Some((base, file)) = previous {
                self.seal_segment(base, &file).await?;
            }
        }
        remove_if_present(&self.storage, TRUNCATION_NAME).await
    }
}

fn check_truncation<F>(state: &LogState<F>, offset: Offset) -> Result<(), LogError> {
    if let Some(error) = &state.poisoned {
        return Err(error.clone());
    }
    let start_offset = state.start_offset();
    if offset < start_offset || offset > state.next_offset {
        return Err(LogError::OutOfRange {
            offset,
            start_offset,
            next_offset: state.next_offset,
        });
    }
    Ok(())
}

impl<F> LogState<F> {
    /// Gives the last segment the logical end `offset` when it reaches past it: its
    /// bytes stay, its index entries and term runs at or after `offset` go, and it is
    /// sealed again (with the cap) once its successor exists.
    fn cap_last_segment(&mut self, offset: Offset) {
        if let Some(last) = self.segments.back_mut() {
            if last.next_offset > offset {
                last.next_offset = offset;
                last.index.truncate_from(last.base_offset, offset);
                last.terms.truncate_from(offset);
                last.sealed = false;
            }
        }
    }
}
