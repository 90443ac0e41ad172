//! Reads of durable records.

use super::{Log, ReadError, ReadRecord};
use crate::record::{decode_batch, DecodeError};
use crate::segment::segment_name;
use crate::storage::{Storage, StorageFile};
use crate::types::Offset;

/// A reader asks storage for at least this much at once.
const READ_BYTES_MIN: u64 = 64 * 1024;

impl<S: Storage> Log<S> {
    /// Reads durable records from `from`, about `bytes_max` of them (at least one when
    /// any exists), never crossing into the next segment. A segment capped by a
    /// truncation is read up to its logical end only.
    pub async fn read(&self, from: Offset, bytes_max: u64) -> Result<Vec<ReadRecord>, ReadError> {
        let (file, base, position, limit, end_offset) = {
            let state = self.state.borrow();
            let start = state
                .segments
                .front()
                .map_or(state.next_offset, |s| s.base_offset);
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
            (
                file,
                segment.base_offset,
                position,
                segment.durable_bytes,
                state.durable_offset.min(segment.next_offset),
            )
        };
        let request = ReadRequest {
            from,
            bytes_max,
            limit,
            end_offset,
        };
        match read_segment(&*file, base, position, request).await {
            Err(ReadError::Corrupt { .. }) if position > 0 => {
                // The index is a cache: before blaming the data, scan from the start.
                read_segment(&*file, base, 0, request).await
            }
            result => result,
        }
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
}

async fn read_segment<F: StorageFile>(
    file: &F,
    base: Offset,
    start: u64,
    request: ReadRequest,
) -> Result<Vec<ReadRecord>, ReadError> {
    let name = segment_name(base);
    let mut records = Vec::new();
    let mut records_bytes = 0u64;
    let mut position = start;
    let mut want = request.bytes_max.max(READ_BYTES_MIN);
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
            for record in batch.records() {
                if record.offset >= request.from && record.offset < request.end_offset {
                    records_bytes += (record.payload.len() + record.attributes.len()) as u64;
                    records.push(ReadRecord {
                        offset: record.offset,
                        timestamp_ms: record.timestamp_ms,
                        attributes: record.attributes.to_vec(),
                        payload: record.payload.to_vec(),
                    });
                }
            }
            cursor += usize::try_from(batch.encoded_bytes()).expect("bounded");
            let full = records_bytes >= request.bytes_max && !records.is_empty();
            if full || batch.next_offset() >= request.end_offset {
                return Ok(records);
            }
        }
        position += cursor as u64;
    }
    Ok(records)
}
