//! Reads of durable records: from the log's cache when it holds them (`cache.rs`), else
//! from storage, fetching what the read needs and filling the cache with what it read.

use bytes::Bytes;

use super::cache::records_of;
use super::{Log, ReadError, ReadRecord};
use crate::limits::{LOG_READ_BYTES_MIN, LOG_READ_BYTES_SKIP_MAX};
use crate::record::{decode_batch, decode_batch_trusted, DecodeError};
use crate::segment::segment_name;
use crate::storage::{Storage, StorageFile};
use crate::types::Offset;

impl<S: Storage> Log<S> {
    /// Reads durable records from `from`, about `bytes_max` of them (at least one when
    /// any exists), never crossing into the next segment. A segment capped by a
    /// truncation is read up to its logical end only. Records still in the cache are
    /// answered without touching storage (the answer may then end early, at the first
    /// batch the cache lacks); the others are read from storage, checksums verified.
    pub async fn read(&self, from: Offset, bytes_max: u64) -> Result<Vec<ReadRecord>, ReadError> {
        let (file, base, position, limit, end_offset, epoch) = {
            let mut state = self.state.borrow_mut();
            let start = state.start_offset();
            if from < start {
                return Err(ReadError::Removed {
                    start_offset: start,
                });
            }
            if from >= state.durable_offset {
                return Ok(Vec::new());
            }
            let index = state.segments.partition_point(|s| s.base_offset <= from) - 1;
            let segment = &state.segments[index];
            let file = segment
                .file
                .clone()
                .expect("a segment with durable data has a file");
            let position = segment.index.seek(segment.base_offset, from);
            let base = segment.base_offset;
            let limit = segment.durable_bytes;
            let end_offset = state.durable_offset.min(segment.next_offset);
            if let Some(records) = state.cache.read(from, end_offset, bytes_max) {
                return Ok(records);
            }
            state.cache.note_miss();
            (file, base, position, limit, end_offset, state.cache.epoch())
        };
        let request = ReadRequest {
            from,
            bytes_max,
            limit,
            end_offset,
            fill_cache: self.config.cache_bytes_max > 0,
        };
        let read = match read_segment(&*file, base, position, request).await {
            Err(ReadError::Corrupt { .. }) if position > 0 => {
                // The index is a cache: before blaming the data, scan from the start.
                read_segment(&*file, base, 0, request).await
            }
            result => result,
        };
        let start = self.state.borrow().start_offset();
        if from < start {
            // Retention removed the segment while the read waited for storage; its file
            // may since have been recycled and overwritten by a new segment, so whatever
            // the read found (records or damage) is not this offset's.
            return Err(ReadError::Removed {
                start_offset: start,
            });
        }
        let read = read?;
        if !read.batches.is_empty() {
            let mut state = self.state.borrow_mut();
            for bytes in &read.batches {
                if let Ok(view) = decode_batch_trusted(bytes) {
                    state.cache.insert(epoch, bytes, &view, true);
                }
            }
        }
        Ok(read.records)
    }
}

#[derive(Clone, Copy)]
struct ReadRequest {
    from: Offset,
    bytes_max: u64,
    limit: u64,
    /// Records at or past this offset are not returned: not durable yet, or past the
    /// segment's logical end.
    end_offset: Offset,
    /// Keep the verified batches the answer came from, for the cache.
    fill_cache: bool,
}

/// What a read from storage found: the records asked for and, when the cache is on, the
/// verified batches they came from.
struct SegmentRead {
    records: Vec<ReadRecord>,
    batches: Vec<Bytes>,
}

async fn read_segment<F: StorageFile>(
    file: &F,
    base: Offset,
    start: u64,
    request: ReadRequest,
) -> Result<SegmentRead, ReadError> {
    let name = segment_name(base);
    let mut read = SegmentRead {
        records: Vec::new(),
        batches: Vec::new(),
    };
    let mut records_bytes = 0u64;
    let mut position = start;
    let mut want = request.bytes_max.max(LOG_READ_BYTES_MIN);
    // Bounded: each pass decodes at least one batch or grows `want` to a whole batch once.
    while position < request.limit {
        let length = want.min(request.limit - position);
        let chunk = file
            .read_at(position, usize::try_from(length).expect("bounded"))
            .await
            .map_err(|error| ReadError::Io {
                file: name.clone(),
                error,
            })?;
        let chunk = chunk.as_ref();
        let mut cursor = 0usize;
        while cursor < chunk.len() {
            let batch = match decode_batch(&chunk[cursor..]) {
                Ok(batch) => batch,
                Err(DecodeError::Truncated { .. }) if cursor > 0 => break,
                Err(DecodeError::Truncated { needed, .. })
                    if needed > length && position + needed <= request.limit =>
                {
                    want = needed;
                    break;
                }
                Err(problem) => {
                    let position = position + cursor as u64;
                    return Err(ReadError::Corrupt {
                        file: name,
                        position,
                        problem,
                    });
                }
            };
            let encoded = usize::try_from(batch.encoded_bytes()).expect("bounded");
            if batch.next_offset() > request.from {
                // A batch reaching past the logical end (capped by a truncation) is
                // never cached: its records there are not the log's.
                let cache = request.fill_cache && batch.next_offset() <= request.end_offset;
                let wanted = |offset: Offset| offset >= request.from && offset < request.end_offset;
                if cache {
                    let end = (cursor + encoded).min(chunk.len());
                    let bytes = Bytes::copy_from_slice(&chunk[cursor..end]);
                    let view =
                        decode_batch_trusted(&bytes).map_err(|problem| ReadError::Corrupt {
                            file: name.clone(),
                            position: position + cursor as u64,
                            problem,
                        })?;
                    for record in records_of(&bytes, &view) {
                        if wanted(record.offset) {
                            records_bytes +=
                                (record.payload.len() + record.attributes.len()) as u64;
                            read.records.push(record);
                        }
                    }
                    read.batches.push(bytes);
                } else {
                    for record in batch.records() {
                        if wanted(record.offset) {
                            records_bytes +=
                                (record.payload.len() + record.attributes.len()) as u64;
                            read.records.push(ReadRecord {
                                offset: record.offset,
                                timestamp_ms: record.timestamp_ms,
                                attributes: Bytes::copy_from_slice(record.attributes),
                                payload: Bytes::copy_from_slice(record.payload),
                            });
                        }
                    }
                }
            }
            cursor += encoded;
            let full = records_bytes >= request.bytes_max && !read.records.is_empty();
            if full || batch.next_offset() >= request.end_offset {
                return Ok(read);
            }
        }
        position += cursor as u64;
        if read.records.is_empty() && cursor > 0 {
            // Still before `from` (the sparse index points up to an interval before it):
            // ask for more at once next time.
            want = want
                .saturating_mul(2)
                .min(LOG_READ_BYTES_SKIP_MAX)
                .max(want);
        }
    }
    Ok(read)
}
