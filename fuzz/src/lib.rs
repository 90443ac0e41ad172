//! Helpers shared by the fuzz targets: repairing checksums (and offsets) of mutated
//! inputs, so that the fuzzer explores the code behind the checksum instead of only the
//! rejection of random bytes.
//!
//! A repaired input is still an arbitrary input to the code under test: only the fields
//! the decoder checks first are made consistent; every other byte stays as mutated.

pub mod reserve;

use std::mem::offset_of;

use sluice_core::record::{
    align_up, BatchHeader, BATCH_ALIGN_BYTES, BATCH_HEADER_BYTES, BATCH_MAGIC,
};
use sluice_core::segment::segment_epoch;
use sluice_core::Offset;
use xxhash_rust::xxh3::xxh3_64;

const CHECKSUM_BYTES: usize = 8;

fn read_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("four bytes"))
}

/// Walks `bytes` as a segment: at each aligned position holding the batch magic and a
/// length that fits, rewrites the checksum (and, with `renumber_from`, the base offset so
/// offsets continue from it and the epoch of the segment based there), then skips the
/// batch; elsewhere steps one alignment unit.
pub fn repair_batches(bytes: &mut [u8], renumber_from: Option<u64>) {
    let mut next_offset = renumber_from;
    let mut position = 0usize;
    let align = usize::try_from(BATCH_ALIGN_BYTES).expect("small");
    // Bounded: every iteration advances `position` by at least `align`.
    while position + BATCH_HEADER_BYTES <= bytes.len() {
        let batch = &mut bytes[position..];
        let magic = read_u32(batch, offset_of!(BatchHeader, magic));
        let batch_bytes = usize::try_from(read_u32(batch, offset_of!(BatchHeader, batch_bytes)))
            .expect("u32 fits usize");
        if magic != BATCH_MAGIC || batch_bytes < BATCH_HEADER_BYTES || batch_bytes > batch.len() {
            position += align;
            continue;
        }
        if let Some(offset) = next_offset {
            let at = offset_of!(BatchHeader, base_offset);
            batch[at..at + 8].copy_from_slice(&offset.to_le_bytes());
            // The segment's epoch, so the scan takes the batch as this life's.
            let epoch = segment_epoch(Offset(renumber_from.expect("renumbering")));
            let at = offset_of!(BatchHeader, epoch);
            batch[at..at + 2].copy_from_slice(&epoch.to_le_bytes());
            let record_count = read_u32(batch, offset_of!(BatchHeader, record_count));
            next_offset = offset.checked_add(u64::from(record_count));
        }
        let checksum = xxh3_64(&batch[CHECKSUM_BYTES..batch_bytes]);
        batch[..CHECKSUM_BYTES].copy_from_slice(&checksum.to_le_bytes());
        let encoded_bytes = align_up(batch_bytes as u64, BATCH_ALIGN_BYTES);
        position += usize::try_from(encoded_bytes).expect("fits");
    }
}

/// Index file layout (private to `offset_index.rs`, mirrored here): checksum at 0..8
/// covering bytes 8.. to the end of the term runs, `entry_count` at 48..52,
/// `term_run_count` at 52..56, a 56-byte header, then 8 bytes per entry and 16 bytes per
/// term run.
const INDEX_HEADER_BYTES: usize = 56;
const INDEX_ENTRY_COUNT_AT: usize = 48;
const INDEX_TERM_RUN_COUNT_AT: usize = 52;
const INDEX_ENTRY_BYTES: usize = 8;
const INDEX_TERM_RUN_BYTES: usize = 16;

/// Rewrites an index file's checksum when its entry and term-run counts fit the bytes.
pub fn repair_index(bytes: &mut [u8]) {
    if bytes.len() < INDEX_HEADER_BYTES {
        return;
    }
    let entry_count = usize::try_from(read_u32(bytes, INDEX_ENTRY_COUNT_AT)).expect("fits");
    let run_count = usize::try_from(read_u32(bytes, INDEX_TERM_RUN_COUNT_AT)).expect("fits");
    let Some(end) = entry_count
        .checked_mul(INDEX_ENTRY_BYTES)
        .zip(run_count.checked_mul(INDEX_TERM_RUN_BYTES))
        .and_then(|(entries, runs)| entries.checked_add(runs))
        .and_then(|body| body.checked_add(INDEX_HEADER_BYTES))
    else {
        return;
    };
    if end > bytes.len() {
        return;
    }
    let checksum = xxh3_64(&bytes[CHECKSUM_BYTES..end]);
    bytes[..CHECKSUM_BYTES].copy_from_slice(&checksum.to_le_bytes());
}

/// Walks `bytes` as a stream of cluster frames (`sluice_core::frame`): while a header
/// fits and its length fits the bytes left, rewrites its checksum (over the header's
/// other fields, as mutated, and the payload) and skips the frame. A stream has no
/// alignment to resynchronise on, so the walk stops at the first length that does not fit.
pub fn repair_frames(bytes: &mut [u8]) {
    use sluice_core::frame::FRAME_HEADER_BYTES;
    let mut position = 0usize;
    // Bounded: every iteration advances `position` by at least the header size.
    while position + FRAME_HEADER_BYTES <= bytes.len() {
        let frame = &mut bytes[position..];
        let payload_bytes = usize::try_from(read_u32(frame, 0)).expect("u32 fits usize");
        let Some(frame_bytes) = payload_bytes.checked_add(FRAME_HEADER_BYTES) else {
            return;
        };
        if frame_bytes > frame.len() {
            return;
        }
        let mut hasher = xxhash_rust::xxh3::Xxh3::new();
        hasher.update(&frame[..4]);
        hasher.update(&frame[12..FRAME_HEADER_BYTES]);
        hasher.update(&frame[FRAME_HEADER_BYTES..frame_bytes]);
        frame[4..12].copy_from_slice(&hasher.digest().to_le_bytes());
        position += frame_bytes;
    }
}
