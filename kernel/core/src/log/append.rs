//! Appends and group commit: staging batches, flushing them with one write per segment
//! and one sync, and sealing segments once a later one exists.

use std::cell::RefCell;
use std::rc::Rc;
use std::task::Poll;

use bytes::Bytes;

use super::files::write_index_file;
use super::{new_segment, AppendError, Appended, Log, LogConfig, LogError, LogState};
use crate::limits::{BLOCK_BYTES, STAGED_BYTES_MAX};
use crate::record::{align_up, check_batch, decode_batch_trusted, encode_batch, RecordInput};
use crate::segment::{free_name, segment_epoch, segment_name};
use crate::storage::{IoError, IoErrorKind, Storage, StorageFile};
use crate::types::Offset;

/// One segment's share of a flush.
struct FlushWork<F> {
    base_offset: Offset,
    file: Option<Rc<F>>,
    block_position: u64,
    tail_block: Vec<u8>,
    staged: Vec<u8>,
    written_end: u64,
    next_offset: Offset,
    preallocate_to: Option<u64>,
    seal: bool,
}

impl<S: Storage> Log<S> {
    /// Stages one batch and gives its records offsets; they get the term of the log's
    /// last record ([`Log::last_term`]). Not durable until [`Log::sync`] returns for
    /// `next_offset`.
    pub fn append(&self, records: &[RecordInput<'_>]) -> Result<Appended, AppendError> {
        let term = self.last_term();
        self.append_with_term(term, records)
    }

    /// Like [`Log::append`], with every record of the batch in `term`. A term lower than
    /// [`Log::last_term`] is refused with [`AppendError::TermRegressed`].
    pub fn append_with_term(
        &self,
        term: u64,
        records: &[RecordInput<'_>],
    ) -> Result<Appended, AppendError> {
        let mut state = self.state.borrow_mut();
        if let Some(error) = &state.poisoned {
            return Err(AppendError::Poisoned(error.clone()));
        }
        let batch_bytes = check_batch(records).map_err(AppendError::Encode)?;
        if state.truncating || state.staged_bytes + batch_bytes > STAGED_BYTES_MAX {
            return Err(AppendError::Busy {
                staged_bytes: state.staged_bytes,
            });
        }
        let last_term = state.last_term();
        if term < last_term {
            return Err(AppendError::TermRegressed { term, last_term });
        }
        let first_offset = state.next_offset;
        let needs_segment = match state.segments.back() {
            None => true,
            Some(active) => {
                active.data_bytes() > 0
                    && active.data_bytes() + batch_bytes > self.config.segment_bytes_max
            }
        };
        if needs_segment {
            state.segments.push_back(new_segment(first_offset));
        }
        let interval = self.config.index_interval_bytes;
        let active = state.segments.back_mut().expect("pushed above");
        let position = active.data_bytes();
        let staged_start = active.staged.len();
        let encoded = encode_batch(
            &mut active.staged,
            first_offset,
            segment_epoch(active.base_offset),
            term,
            active.durable_bytes,
            records,
        )
        .expect("checked by check_batch");
        active
            .index
            .observe(active.base_offset, first_offset, position, interval);
        active.terms.observe(first_offset, term);
        active.timestamp_ms_max = active.timestamp_ms_max.max(encoded.timestamp_ms_max);
        let next_offset = Offset(first_offset.0 + u64::from(encoded.record_count));
        active.next_offset = next_offset;
        let cached = state.cache.enabled().then(|| {
            let active = state.segments.back().expect("pushed above");
            Bytes::copy_from_slice(&active.staged[staged_start..])
        });
        if let Some(bytes) = cached {
            // Recently written: a receive of these records soon is served from memory.
            if let Ok(view) = decode_batch_trusted(&bytes) {
                let epoch = state.cache.epoch();
                state.cache.insert(epoch, &bytes, &view, false);
            }
        }
        state.next_offset = next_offset;
        state.staged_bytes += encoded.encoded_bytes;
        Ok(Appended {
            first_offset,
            next_offset,
        })
    }

    /// Returns once every record below `upto` is durable, flushing with group commit.
    /// Fails with [`LogError::Truncated`] if a truncation removed records below `upto`
    /// while it waited.
    pub async fn sync(&self, upto: Offset) -> Result<(), LogError> {
        assert!(
            upto <= self.next_offset(),
            "sync beyond the appended offsets"
        );
        let truncations = self.state.borrow().truncations;
        // Bounded: each pass either returns or waits for a flush generation to finish,
        // and every flush makes progress or poisons the log.
        loop {
            let generation = {
                let mut state = self.state.borrow_mut();
                if let Some(error) = &state.poisoned {
                    return Err(error.clone());
                }
                if let Some(from) = state.truncated_since(truncations) {
                    if from < upto {
                        return Err(LogError::Truncated {
                            upto,
                            truncated_from: from,
                        });
                    }
                }
                if state.durable_offset >= upto {
                    return Ok(());
                }
                if !state.flushing {
                    state.flushing = true;
                    None
                } else {
                    Some(state.flush_generation)
                }
            };
            match generation {
                None => {
                    let guard = FlushGuard {
                        state: &self.state,
                        completed: false,
                    };
                    let result = self.flush_once().await;
                    guard.finish(result);
                }
                Some(generation) => self.wait_flush(generation).await,
            }
        }
    }

    /// Appends and waits until the batch is durable.
    pub async fn append_durable(
        &self,
        records: &[RecordInput<'_>],
    ) -> Result<Appended, AppendError> {
        let appended = self.append(records)?;
        self.sync(appended.next_offset)
            .await
            .map_err(AppendError::Poisoned)?;
        Ok(appended)
    }

    pub(super) async fn wait_flush(&self, generation: u64) {
        std::future::poll_fn(|context| {
            let mut state = self.state.borrow_mut();
            if state.flush_generation != generation {
                return Poll::Ready(());
            }
            state.waiters.push(context.waker().clone());
            Poll::Pending
        })
        .await
    }

    pub(super) async fn flush_once(&self) -> Result<(), LogError> {
        let work = self.state.borrow_mut().take_flush_work(&self.config);
        for item in work {
            let name = segment_name(item.base_offset);
            let io = |error| LogError::Io {
                file: name.clone(),
                error,
            };
            let file = match item.file {
                Some(file) => file,
                None => {
                    let file = Rc::new(self.new_segment_file(item.base_offset).await.map_err(io)?);
                    let mut state = self.state.borrow_mut();
                    state.segment_mut(item.base_offset).file = Some(file.clone());
                    file
                }
            };
            if !item.staged.is_empty() {
                if let Some(bytes) = item.preallocate_to {
                    file.preallocate(bytes).await.map_err(io)?;
                }
                let data_bytes = item.tail_block.len() + item.staged.len();
                let padded = align_up(data_bytes as u64, BLOCK_BYTES);
                let mut buf = file.alloc_buf(usize::try_from(padded).expect("bounded"));
                let target = buf.as_mut();
                target[..item.tail_block.len()].copy_from_slice(&item.tail_block);
                target[item.tail_block.len()..data_bytes].copy_from_slice(&item.staged);
                file.write_sync_at(buf, item.block_position)
                    .await
                    .map_err(io)?;
                self.state.borrow_mut().mark_durable(
                    item.base_offset,
                    item.written_end,
                    item.next_offset,
                );
            }
            if item.seal {
                self.seal_segment(item.base_offset, &file)
                    .await
                    .map_err(|(file, error)| LogError::Io { file, error })?;
            }
        }
        Ok(())
    }

    /// The file of a new segment: a recycled one renamed to the segment's name when one
    /// of another epoch waits (docs/log.md D13), else a new, empty file. Either way the
    /// name is durable on return; a recycled file keeps its old bytes, which the new
    /// segment's appends overwrite and recovery tells apart by their epoch.
    async fn new_segment_file(&self, base: Offset) -> Result<S::File, IoError> {
        let name = segment_name(base);
        let recycled = {
            let mut state = self.state.borrow_mut();
            let epoch = segment_epoch(base);
            // A file whose old batches carry the new segment's epoch would be read as
            // its data: never reused for that base.
            let found = state
                .free
                .iter()
                .position(|old| segment_epoch(*old) != epoch);
            found.map(|index| state.free.remove(index))
        };
        let Some(old) = recycled else {
            return self.storage.create(&name).await;
        };
        self.storage.rename(&free_name(old), &name).await?;
        let file = self.storage.open(&name).await?;
        self.state.borrow_mut().reused += 1;
        Ok(file)
    }

    /// Seals a segment that is no longer the last: cuts the file to its data and writes
    /// its index file (summary, sparse index, term runs).
    pub(super) async fn seal_segment(
        &self,
        base: Offset,
        file: &S::File,
    ) -> Result<(), (String, IoError)> {
        let (summary, index, terms) = {
            let state = self.state.borrow();
            let segment = state.segment(base);
            assert_eq!(
                segment.durable_bytes, segment.written_bytes,
                "sealing a segment with unsynced data"
            );
            (
                segment.summary(),
                segment.index.clone(),
                segment.terms.clone(),
            )
        };
        file.truncate(summary.data_bytes)
            .await
            .map_err(|error| (segment_name(base), error))?;
        write_index_file(&self.storage, &index, &summary, &terms).await?;
        self.state.borrow_mut().segment_mut(base).sealed = true;
        Ok(())
    }
}

/// Resets the flushing (and truncating) flag however the flush or truncation ends; one
/// abandoned half way (its future dropped) leaves the disk state unknown, so it poisons
/// the log.
pub(super) struct FlushGuard<'a, F> {
    pub(super) state: &'a RefCell<LogState<F>>,
    pub(super) completed: bool,
}

impl<F> FlushGuard<'_, F> {
    pub(super) fn finish(mut self, result: Result<(), LogError>) {
        let mut state = self.state.borrow_mut();
        if let Err(error) = result {
            state.poisoned.get_or_insert(error);
        }
        self.completed = true;
    }
}

impl<F> Drop for FlushGuard<'_, F> {
    fn drop(&mut self) {
        let mut state = self.state.borrow_mut();
        if !self.completed {
            let error = IoError::new(IoErrorKind::Io, crate::storage::IoOp::Write);
            state.poisoned.get_or_insert(LogError::Io {
                file: "flush abandoned".into(),
                error,
            });
        }
        state.flushing = false;
        state.truncating = false;
        state.flush_generation += 1;
        for waker in state.waiters.drain(..) {
            waker.wake();
        }
    }
}

impl<F> LogState<F> {
    fn take_flush_work(&mut self, config: &LogConfig) -> Vec<FlushWork<F>> {
        let mut work = Vec::new();
        let last = self.segments.len().saturating_sub(1);
        for (position, segment) in self.segments.iter_mut().enumerate() {
            let seal = position < last && !segment.sealed;
            if segment.staged.is_empty() && !seal {
                continue;
            }
            let staged = std::mem::take(&mut segment.staged);
            self.staged_bytes -= staged.len() as u64;
            let block_position = segment.written_bytes - segment.tail_block.len() as u64;
            assert_eq!(
                block_position % BLOCK_BYTES,
                0,
                "tail block must start aligned"
            );
            let tail_block = std::mem::take(&mut segment.tail_block);
            let written_end = segment.written_bytes + staged.len() as u64;
            let tail_start = written_end - written_end % BLOCK_BYTES;
            segment.tail_block = if tail_start >= block_position + tail_block.len() as u64 {
                let from = usize::try_from(tail_start - segment.written_bytes).expect("fits");
                staged[from..].to_vec()
            } else {
                let mut tail = tail_block
                    [usize::try_from(tail_start - block_position).expect("fits")..]
                    .to_vec();
                tail.extend_from_slice(&staged);
                tail
            };
            segment.written_bytes = written_end;
            let reserve_end = align_up(written_end, BLOCK_BYTES);
            // Ask again once half the reserve is used, so a storage that prepares the
            // space in the background (DmaStorage writes zeros ahead) stays ahead.
            let wanted = reserve_end + config.preallocate_bytes / 2;
            let preallocate_to = (wanted > segment.allocated_bytes).then(|| {
                segment.allocated_bytes = reserve_end + config.preallocate_bytes;
                segment.allocated_bytes
            });
            work.push(FlushWork {
                base_offset: segment.base_offset,
                file: segment.file.clone(),
                block_position,
                tail_block,
                staged,
                written_end,
                next_offset: segment.next_offset,
                preallocate_to,
                seal,
            });
        }
        work
    }

    fn mark_durable(&mut self, base: Offset, written_end: u64, next_offset: Offset) {
        let segment = self.segment_mut(base);
        assert!(
            written_end >= segment.durable_bytes,
            "durable bytes regressed"
        );
        assert!(
            written_end <= segment.written_bytes,
            "durable beyond written"
        );
        segment.durable_bytes = written_end;
        assert!(
            next_offset >= self.durable_offset,
            "durable offset regressed"
        );
        assert!(next_offset <= self.next_offset, "durable beyond appended");
        self.durable_offset = next_offset;
    }
}
