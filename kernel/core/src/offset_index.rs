//! The sparse offset index of one segment: a rebuildable cache, never the source of truth.
//!
//! In memory, an index is a sorted list of (offset, position) pairs, one every
//! `index_interval_bytes` of segment data, so a read seeks near its offset and scans
//! forward. When a segment is sealed the list is written to `<base>.idx` with its own
//! checksum, the segment's summary (data length, next offset, newest timestamp) and its
//! term runs ([`TermRuns`]), so a restart need not scan sealed segments. A missing, short,
//! corrupt or inconsistent index file, or one of another version (version 1 had no term
//! runs), is ignored and rebuilt from the segment; nothing is ever trusted from it that
//! the segment contradicts.

use xxhash_rust::xxh3::xxh3_64;
use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::term_runs::TermRuns;
use crate::types::Offset;

/// "SLCI" read as a little-endian u32.
const INDEX_MAGIC: u32 = u32::from_le_bytes(*b"SLCI");
/// Version 2 added the term runs; a file of version 1 is rebuilt like a missing one.
const INDEX_VERSION: u16 = 2;

#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy, Debug)]
#[repr(C)]
struct IndexFileHeader {
    /// xxh3-64 of every byte after this field, header and entries.
    checksum: U64,
    magic: U32,
    version: U16,
    flags: U16,
    base_offset: U64,
    next_offset: U64,
    data_bytes: U64,
    timestamp_ms_max: U64,
    entry_count: U32,
    term_run_count: U32,
}

#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy, Debug)]
#[repr(C)]
struct IndexFileEntry {
    offset_delta: U32,
    position: U32,
}

/// One term run: records from `base + offset_delta` on have `term`.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy, Debug)]
#[repr(C)]
struct IndexFileTermRun {
    offset_delta: U32,
    reserved: U32,
    term: U64,
}

const HEADER_BYTES: usize = core::mem::size_of::<IndexFileHeader>();
const ENTRY_BYTES: usize = core::mem::size_of::<IndexFileEntry>();
const TERM_RUN_BYTES: usize = core::mem::size_of::<IndexFileTermRun>();
const _: () = assert!(HEADER_BYTES == 56);
const _: () = assert!(ENTRY_BYTES == 8);
const _: () = assert!(TERM_RUN_BYTES == 16);

/// Everything an index file holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexFile {
    pub index: OffsetIndex,
    pub summary: SegmentSummary,
    pub terms: TermRuns,
}

/// A sealed segment's summary as stored beside its index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentSummary {
    pub base_offset: Offset,
    pub next_offset: Offset,
    pub data_bytes: u64,
    pub timestamp_ms_max: u64,
    /// Every batch of the segment carries its epoch (none was written before epochs):
    /// only such a file may be recycled (docs/log.md D13). Index flag bit 0; files written
    /// before the flag existed read as `false`.
    pub epoch_tagged: bool,
}

/// Index header flag: the segment's batches all carry its epoch.
const FLAG_EPOCH_TAGGED: u16 = 1;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OffsetIndex {
    /// (offset delta from the segment base, byte position), both strictly increasing.
    entries: Vec<(u32, u32)>,
    last_position: Option<u64>,
}

impl OffsetIndex {
    /// Records the batch starting at `position` when it is far enough from the last entry.
    pub fn observe(&mut self, base: Offset, offset: Offset, position: u64, interval_bytes: u64) {
        if let Some(last) = self.last_position {
            assert!(position > last, "index positions must increase");
            if position - last < interval_bytes {
                return;
            }
        }
        let delta = u32::try_from(offset.0 - base.0).expect("segment holds < 2^32 records");
        let position_u32 = u32::try_from(position).expect("segment bytes < 4 GiB");
        if let Some((last_delta, _)) = self.entries.last() {
            assert!(delta > *last_delta, "index offsets must increase");
        }
        self.entries.push((delta, position_u32));
        self.last_position = Some(position);
    }

    /// The position of the batch to start scanning from for `offset`.
    pub fn seek(&self, base: Offset, offset: Offset) -> u64 {
        let delta = offset.0.saturating_sub(base.0);
        let index = self
            .entries
            .partition_point(|(d, _)| u64::from(*d) <= delta);
        match index {
            0 => 0,
            _ => u64::from(self.entries[index - 1].1),
        }
    }

    pub fn entry_count(&self) -> usize {
        self.entries.len()
    }

    /// Forgets the entries of batches starting at or after `offset` (a truncation).
    pub fn truncate_from(&mut self, base: Offset, offset: Offset) {
        let delta = offset.0.saturating_sub(base.0);
        let keep = self.entries.partition_point(|(d, _)| u64::from(*d) < delta);
        self.entries.truncate(keep);
        self.last_position = self.entries.last().map(|(_, p)| u64::from(*p));
    }

    /// The index file for a sealed segment, padded with zeros to `align` bytes.
    pub fn encode_file(&self, summary: &SegmentSummary, terms: &TermRuns, align: u64) -> Vec<u8> {
        let mut out = vec![0u8; HEADER_BYTES];
        for (offset_delta, position) in &self.entries {
            let entry = IndexFileEntry {
                offset_delta: U32::new(*offset_delta),
                position: U32::new(*position),
            };
            out.extend_from_slice(entry.as_bytes());
        }
        for (first, term) in terms.runs() {
            let delta = first.0 - summary.base_offset.0;
            let run = IndexFileTermRun {
                offset_delta: U32::new(u32::try_from(delta).expect("segment holds < 2^32")),
                reserved: U32::new(0),
                term: U64::new(*term),
            };
            out.extend_from_slice(run.as_bytes());
        }
        let header = IndexFileHeader {
            checksum: U64::new(0),
            magic: U32::new(INDEX_MAGIC),
            version: U16::new(INDEX_VERSION),
            flags: U16::new(if summary.epoch_tagged {
                FLAG_EPOCH_TAGGED
            } else {
                0
            }),
            base_offset: U64::new(summary.base_offset.0),
            next_offset: U64::new(summary.next_offset.0),
            data_bytes: U64::new(summary.data_bytes),
            timestamp_ms_max: U64::new(summary.timestamp_ms_max),
            entry_count: U32::new(u32::try_from(self.entries.len()).expect("bounded")),
            term_run_count: U32::new(u32::try_from(terms.runs().len()).expect("bounded")),
        };
        out[..HEADER_BYTES].copy_from_slice(header.as_bytes());
        let checksum = xxh3_64(&out[8..]);
        out[..8].copy_from_slice(&checksum.to_le_bytes());
        let padded = crate::record::align_up(out.len() as u64, align);
        out.resize(usize::try_from(padded).expect("fits"), 0);
        out
    }

    /// Parses an index file; `None` when anything is off (it is then rebuilt).
    pub fn decode_file(bytes: &[u8]) -> Option<IndexFile> {
        let (header, rest) = IndexFileHeader::read_from_prefix(bytes).ok()?;
        if header.magic.get() != INDEX_MAGIC || header.version.get() != INDEX_VERSION {
            return None;
        }
        let entry_count = usize::try_from(header.entry_count.get()).ok()?;
        let entries_bytes = entry_count.checked_mul(ENTRY_BYTES)?;
        let run_count = usize::try_from(header.term_run_count.get()).ok()?;
        let runs_bytes = run_count.checked_mul(TERM_RUN_BYTES)?;
        let body_bytes = entries_bytes.checked_add(runs_bytes)?;
        if rest.len() < body_bytes {
            return None;
        }
        if xxh3_64(&bytes[8..HEADER_BYTES + body_bytes]) != header.checksum.get() {
            return None;
        }
        let summary = SegmentSummary {
            base_offset: Offset(header.base_offset.get()),
            next_offset: Offset(header.next_offset.get()),
            data_bytes: header.data_bytes.get(),
            timestamp_ms_max: header.timestamp_ms_max.get(),
            epoch_tagged: header.flags.get() & FLAG_EPOCH_TAGGED != 0,
        };
        if summary.next_offset < summary.base_offset {
            return None;
        }
        let index = decode_entries(&rest[..entries_bytes], &summary)?;
        let terms = decode_runs(&rest[entries_bytes..body_bytes], &summary)?;
        Some(IndexFile {
            index,
            summary,
            terms,
        })
    }
}

fn decode_entries(bytes: &[u8], summary: &SegmentSummary) -> Option<OffsetIndex> {
    let mut index = OffsetIndex::default();
    for chunk in bytes.chunks_exact(ENTRY_BYTES) {
        let entry = IndexFileEntry::read_from_bytes(chunk).ok()?;
        let delta = entry.offset_delta.get();
        let position = entry.position.get();
        if let Some((last_delta, last_position)) = index.entries.last() {
            if delta <= *last_delta || position <= *last_position {
                return None;
            }
        }
        if u64::from(position) >= summary.data_bytes
            || u64::from(delta) >= summary.next_offset.0 - summary.base_offset.0
        {
            return None;
        }
        index.entries.push((delta, position));
        index.last_position = Some(u64::from(position));
    }
    Some(index)
}

/// The term runs of a segment: they must start at its base and stay inside it, and a
/// segment with records must have at least one.
fn decode_runs(bytes: &[u8], summary: &SegmentSummary) -> Option<TermRuns> {
    let record_count = summary.next_offset.0 - summary.base_offset.0;
    let mut runs = Vec::with_capacity(bytes.len() / TERM_RUN_BYTES);
    for chunk in bytes.chunks_exact(TERM_RUN_BYTES) {
        let run = IndexFileTermRun::read_from_bytes(chunk).ok()?;
        let delta = u64::from(run.offset_delta.get());
        if delta >= record_count || run.reserved.get() != 0 {
            return None;
        }
        runs.push((Offset(summary.base_offset.0 + delta), run.term.get()));
    }
    let starts_at_base = runs.first().map_or(record_count == 0, |(first, _)| {
        *first == summary.base_offset
    });
    if !starts_at_base {
        return None;
    }
    TermRuns::from_runs(runs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> (OffsetIndex, SegmentSummary) {
        let base = Offset(100);
        let mut index = OffsetIndex::default();
        for i in 0..10u64 {
            index.observe(base, Offset(100 + i * 3), i * 1000, 2000);
        }
        let summary = SegmentSummary {
            base_offset: base,
            next_offset: Offset(130),
            data_bytes: 10_000,
            timestamp_ms_max: 77,
            epoch_tagged: true,
        };
        (index, summary)
    }

    #[test]
    fn sparse_and_seek() {
        let (index, _) = sample();
        assert_eq!(index.entry_count(), 5);
        assert_eq!(index.seek(Offset(100), Offset(100)), 0);
        assert_eq!(index.seek(Offset(100), Offset(105)), 0);
        assert_eq!(index.seek(Offset(100), Offset(106)), 2000);
        assert_eq!(index.seek(Offset(100), Offset(1000)), 8000);
    }

    fn sample_terms() -> TermRuns {
        let mut terms = TermRuns::default();
        terms.observe(Offset(100), 0);
        terms.observe(Offset(112), 5);
        terms.observe(Offset(127), 6);
        terms
    }

    #[test]
    fn file_roundtrip_and_every_flip_rejected() {
        let (index, summary) = sample();
        let terms = sample_terms();
        let bytes = index.encode_file(&summary, &terms, 4096);
        assert_eq!(bytes.len(), 4096);
        let expected = IndexFile {
            index: index.clone(),
            summary,
            terms: terms.clone(),
        };
        assert_eq!(OffsetIndex::decode_file(&bytes), Some(expected));
        let used = HEADER_BYTES + index.entry_count() * ENTRY_BYTES + 3 * TERM_RUN_BYTES;
        for bit in 0..used * 8 {
            let mut flipped = bytes.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            assert_eq!(OffsetIndex::decode_file(&flipped), None, "bit {bit}");
        }
        assert_eq!(OffsetIndex::decode_file(&bytes[..30]), None);
    }

    #[test]
    fn version_1_files_and_runs_outside_the_segment_are_rejected() {
        let (index, summary) = sample();
        let mut bytes = index.encode_file(&summary, &sample_terms(), 8);
        // Version 1 (no term runs): the same header with version 1, checksum repaired.
        bytes[12..14].copy_from_slice(&1u16.to_le_bytes());
        let checksum = xxh3_64(&bytes[8..]);
        bytes[..8].copy_from_slice(&checksum.to_le_bytes());
        assert_eq!(OffsetIndex::decode_file(&bytes), None);
        // Runs must start at the base and end before the next offset.
        let mut late = TermRuns::default();
        late.observe(Offset(101), 1);
        assert_eq!(
            OffsetIndex::decode_file(&index.encode_file(&summary, &late, 8)),
            None
        );
        let mut past = TermRuns::default();
        past.observe(Offset(100), 1);
        past.observe(Offset(130), 2);
        assert_eq!(
            OffsetIndex::decode_file(&index.encode_file(&summary, &past, 8)),
            None
        );
        let none = TermRuns::default();
        assert_eq!(
            OffsetIndex::decode_file(&index.encode_file(&summary, &none, 8)),
            None,
            "a segment with records has terms"
        );
    }

    #[test]
    fn truncation_drops_entries_at_and_after_the_offset() {
        let (mut index, _) = sample();
        index.truncate_from(Offset(100), Offset(107));
        assert_eq!(index.entry_count(), 2);
        assert_eq!(index.seek(Offset(100), Offset(1000)), 2000);
        index.observe(Offset(100), Offset(107), 4000, 2000);
        assert_eq!(index.entry_count(), 3);
    }
}
