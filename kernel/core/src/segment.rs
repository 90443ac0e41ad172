//! Segment files: naming, and the scan that recovery runs over a segment's bytes.
//!
//! A segment `<base>.log` holds batches back to back, each 8-byte aligned, with offsets
//! continuing from `base` (20 decimal digits, so names sort in offset order). The scan
//! decodes every batch from the start and classifies how the valid data ends:
//! - `Clean`: the data ends and only zeros (or end of file) follow;
//! - `Torn`: an invalid batch at P, but no valid batch after P claims that P was ever
//!   durable: it is the unsynced tail of a crash, and recovery truncates at P;
//! - `Corrupt`: an invalid batch at P and a later valid batch whose `durable_position`
//!   is beyond P: synced data was damaged, and start-up must stop.
//!
//! A scan may be given an end offset (`scan_segment_upto`): a segment whose successor
//! starts below its last record (a truncation capped it there, see `Log::truncate_from`)
//! logically ends at the successor's base. The scan keeps the batch holding the offset
//! just below the end whole (its later records are ignored by every reader) and looks no
//! further: what lies past it was removed.
//!
//! A segment file may be recycled (docs/log.md D13): renamed from a segment retention
//! removed, it keeps that segment's bytes past the new data. Every batch carries its
//! segment's epoch ([`segment_epoch`], derived from the base offset; docs/log.md D12), and
//! the scan ends the data cleanly at the first valid batch of another nonzero epoch. The
//! search past an invalid batch (`classify`) counts only batches of the segment's epoch
//! (or of epoch 0, written before epochs) that lie after the damaged one in offsets, so a
//! stale batch's `durable_position` never turns a torn tail into corruption.
//!
//! Pure function over bytes: no I/O, no allocation beyond the index it builds.

use crate::offset_index::OffsetIndex;
use crate::record::{decode_batch, BatchView, DecodeError, BATCH_ALIGN_BYTES};
use crate::term_runs::TermRuns;
use crate::types::Offset;

pub const SEGMENT_SUFFIX: &str = ".log";
pub const INDEX_SUFFIX: &str = ".idx";
/// A segment file retention removed, kept for reuse under the name of its old base.
pub const FREE_SUFFIX: &str = ".free";

/// The epoch every batch of the segment based at `base_offset` carries: never 0, and
/// different for any two bases that differ by less than 65,535 (the log also refuses to
/// reuse a file for a base of the same epoch, docs/log.md D13).
pub fn segment_epoch(base_offset: Offset) -> u16 {
    u16::try_from(base_offset.0 % 65_535).expect("below 65,535") + 1
}

pub fn segment_name(base_offset: Offset) -> String {
    format!("{:020}{SEGMENT_SUFFIX}", base_offset.0)
}

pub fn index_name(base_offset: Offset) -> String {
    format!("{:020}{INDEX_SUFFIX}", base_offset.0)
}

pub fn free_name(old_base_offset: Offset) -> String {
    format!("{:020}{FREE_SUFFIX}", old_base_offset.0)
}

/// The kind and base offset of a file name the log owns; `None` for other files.
pub fn parse_name(name: &str) -> Option<(Offset, FileKind)> {
    let (stem, kind) = if let Some(stem) = name.strip_suffix(SEGMENT_SUFFIX) {
        (stem, FileKind::Segment)
    } else if let Some(stem) = name.strip_suffix(INDEX_SUFFIX) {
        (stem, FileKind::Index)
    } else if let Some(stem) = name.strip_suffix(FREE_SUFFIX) {
        (stem, FileKind::Free)
    } else {
        return None;
    };
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok().map(|base| (Offset(base), kind))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    Segment,
    Index,
    /// A recycled segment file waiting for reuse; the offset is its old base.
    Free,
}

/// Why a scan stopped before the end of the bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScanProblem {
    Decode(DecodeError),
    /// A valid batch whose base offset is not the one expected.
    OffsetGap {
        expected: Offset,
        found: Offset,
    },
    /// A valid batch of another epoch: the end of this life's data in a recycled file.
    /// Reported only when a later batch proves the position had been synced.
    OtherEpoch {
        found: u16,
        expected: u16,
    },
}

impl std::fmt::Display for ScanProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ScanProblem::Decode(error) => write!(f, "{error}"),
            ScanProblem::OffsetGap { expected, found } => {
                write!(f, "batch has base offset {found}, expected {expected}")
            }
            ScanProblem::OtherEpoch { found, expected } => write!(
                f,
                "batch of epoch {found} (a previous life of the file), expected {expected}"
            ),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScanEnd {
    Clean,
    Torn {
        position: u64,
        problem: ScanProblem,
    },
    Corrupt {
        position: u64,
        problem: ScanProblem,
        durable_claim: u64,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentScan {
    /// Bytes of valid batches from the start of the segment, padding included. May
    /// exceed the input by less than [`BATCH_ALIGN_BYTES`] when the input ends inside the
    /// last batch's zero padding; the missing bytes are zeros by definition.
    pub valid_bytes: u64,
    pub next_offset: Offset,
    pub timestamp_ms_max: u64,
    /// The highest `durable_position` any valid batch claims.
    pub durable_claim_max: u64,
    pub index: OffsetIndex,
    /// The terms of the records up to `next_offset`.
    pub terms: TermRuns,
    /// Every valid batch carries the segment's epoch (none has epoch 0).
    pub epoch_tagged: bool,
    /// Where the data ended at a valid batch of another epoch (a recycled file's
    /// leftover); the scan then ends `Clean` there.
    pub stale_from: Option<u64>,
    pub end: ScanEnd,
}

/// Scans a whole segment (no end offset).
pub fn scan_segment(bytes: &[u8], base_offset: Offset, index_interval_bytes: u64) -> SegmentScan {
    scan_segment_upto(bytes, base_offset, index_interval_bytes, None)
}

/// Scans a segment that logically ends at `end` when given: the scan stops cleanly after
/// the batch that holds `end - 1` (or reaches `end`), with `next_offset == end`, and
/// never looks at the bytes after it. A scan that ends below `end` reports where and why
/// as usual.
pub fn scan_segment_upto(
    bytes: &[u8],
    base_offset: Offset,
    index_interval_bytes: u64,
    end: Option<Offset>,
) -> SegmentScan {
    let mut scan = SegmentScan {
        valid_bytes: 0,
        next_offset: base_offset,
        timestamp_ms_max: 0,
        durable_claim_max: 0,
        index: OffsetIndex::default(),
        terms: TermRuns::default(),
        epoch_tagged: true,
        stale_from: None,
        end: ScanEnd::Clean,
    };
    let epoch = segment_epoch(base_offset);
    let len = bytes.len() as u64;
    // Bounded: every iteration advances `position` by at least one aligned batch.
    while scan.valid_bytes < len {
        if end.is_some_and(|end| scan.next_offset >= end) {
            break;
        }
        let position = scan.valid_bytes;
        let rest = &bytes[usize::try_from(position).expect("fits")..];
        let problem = match decode_batch(rest) {
            Ok(batch) if is_stale(&batch, epoch) => {
                // Written in the file's previous life: the data ends here, unless a
                // later batch of this life claims this position was synced (a write
                // the device lost after its sync).
                scan.stale_from = Some(position);
                let problem = ScanProblem::OtherEpoch {
                    found: batch.epoch(),
                    expected: epoch,
                };
                let end = classify(bytes, position, scan.next_offset, epoch, problem);
                if matches!(end, ScanEnd::Corrupt { .. }) {
                    scan.end = end;
                }
                break;
            }
            Ok(batch) if batch.base_offset() == scan.next_offset => {
                scan.epoch_tagged &= batch.epoch() != 0;
                scan.index.observe(
                    base_offset,
                    scan.next_offset,
                    position,
                    index_interval_bytes,
                );
                scan.terms.observe(scan.next_offset, batch.term());
                scan.valid_bytes += batch.encoded_bytes();
                scan.next_offset = match end {
                    Some(end) => batch.next_offset().min(end),
                    None => batch.next_offset(),
                };
                scan.timestamp_ms_max = scan.timestamp_ms_max.max(batch.timestamp_ms_max());
                scan.durable_claim_max = scan.durable_claim_max.max(batch.durable_position());
                continue;
            }
            Ok(batch) => ScanProblem::OffsetGap {
                expected: scan.next_offset,
                found: batch.base_offset(),
            },
            Err(DecodeError::Zeroed) if rest.iter().all(|b| *b == 0) => break,
            Err(error) => ScanProblem::Decode(error),
        };
        scan.end = classify(bytes, position, scan.next_offset, epoch, problem);
        break;
    }
    // A clean end may leave the valid length unaligned only if the file was cut short.
    scan
}

/// A valid batch of another nonzero epoch: a leftover of the file's previous life.
fn is_stale(batch: &BatchView<'_>, epoch: u16) -> bool {
    batch.epoch() != 0 && batch.epoch() != epoch
}

/// Looks past an invalid batch at `position`, where the batch of offset `expected`
/// should be, for proof that it had been synced: a later batch of this segment's life
/// claiming a `durable_position` beyond it. A batch of another epoch, or one whose
/// offsets lie below `expected` (a stale batch's lie below the segment's base), is not
/// of this life's data after the damage and proves nothing. A valid batch is stepped
/// over whole: no batch of this life can start inside one (it would have overwritten
/// bytes its checksum covers).
fn classify(
    bytes: &[u8],
    position: u64,
    expected: Offset,
    epoch: u16,
    problem: ScanProblem,
) -> ScanEnd {
    let len = bytes.len() as u64;
    let mut candidate = position + BATCH_ALIGN_BYTES;
    // Bounded by the segment length; runs only when recovery met an invalid batch.
    while candidate < len {
        let rest = &bytes[usize::try_from(candidate).expect("fits")..];
        if let Ok(batch) = decode_batch(rest) {
            let this_life = !is_stale(&batch, epoch) && batch.base_offset() >= expected;
            if this_life && batch.durable_position() > position {
                return ScanEnd::Corrupt {
                    position,
                    problem,
                    durable_claim: batch.durable_position(),
                };
            }
            candidate += batch.encoded_bytes();
            continue;
        }
        candidate += BATCH_ALIGN_BYTES;
    }
    ScanEnd::Torn { position, problem }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{encode_batch, RecordInput};

    /// Encodes `count` one-record batches; each claims durability up to its own start
    /// when `synced` is set (as if each were synced before the next was encoded).
    fn check_segment(count: u64, synced: bool) -> (Vec<u8>, Vec<u64>) {
        check_segment_of(Offset(10), segment_epoch(Offset(10)), count, synced)
    }

    /// Like `check_segment`, from offset `base`, every batch in `epoch`.
    fn check_segment_of(base: Offset, epoch: u16, count: u64, synced: bool) -> (Vec<u8>, Vec<u64>) {
        let mut bytes = Vec::new();
        let mut starts = Vec::new();
        for i in 0..count {
            let start = bytes.len() as u64;
            starts.push(start);
            let claim = if synced { start } else { 0 };
            let record = RecordInput {
                timestamp_ms: i,
                attributes: b"",
                payload: &[7; 100],
            };
            encode_batch(
                &mut bytes,
                Offset(base.0 + i),
                epoch,
                i / 2,
                claim,
                &[record],
            )
            .unwrap();
        }
        (bytes, starts)
    }

    #[test]
    fn names_roundtrip() {
        assert_eq!(segment_name(Offset(42)), "00000000000000000042.log");
        assert_eq!(
            parse_name("00000000000000000042.idx"),
            Some((Offset(42), FileKind::Index))
        );
        assert_eq!(parse_name("42.log"), None);
        assert_eq!(parse_name("0000000000000000004x.log"), None);
    }

    #[test]
    fn clean_with_trailing_zeros() {
        let (mut bytes, _) = check_segment(5, true);
        let valid = bytes.len() as u64;
        bytes.resize(bytes.len() + 5000, 0);
        let scan = scan_segment(&bytes, Offset(10), 512);
        assert_eq!(scan.end, ScanEnd::Clean);
        assert_eq!(scan.valid_bytes, valid);
        assert_eq!(scan.next_offset, Offset(15));
    }

    #[test]
    fn torn_tail_versus_corruption_before_it() {
        let (bytes, starts) = check_segment(5, true);
        // Cut the last batch short: torn.
        let cut = &bytes[..bytes.len() - 20];
        let scan = scan_segment(cut, Offset(10), 512);
        assert!(matches!(scan.end, ScanEnd::Torn { position, .. } if position == starts[4]));
        assert_eq!(scan.next_offset, Offset(14));
        // Flip a bit in batch 2: batches 3 and 4 claim it was durable: corruption.
        let mut flipped = bytes.clone();
        flipped[usize::try_from(starts[2]).unwrap() + 70] ^= 4;
        let scan = scan_segment(&flipped, Offset(10), 512);
        assert!(matches!(scan.end, ScanEnd::Corrupt { position, .. } if position == starts[2]));
        // The same flip where nothing was synced: an unsynced tail, torn.
        let (bytes, starts) = check_segment(5, false);
        let mut flipped = bytes.clone();
        flipped[usize::try_from(starts[2]).unwrap() + 70] ^= 4;
        let scan = scan_segment(&flipped, Offset(10), 512);
        assert!(matches!(scan.end, ScanEnd::Torn { position, .. } if position == starts[2]));
    }

    #[test]
    fn terms_are_runs_of_batch_terms() {
        let (bytes, _) = check_segment(5, true);
        let scan = scan_segment(&bytes, Offset(10), 512);
        let runs = [(Offset(10), 0), (Offset(12), 1), (Offset(14), 2)];
        assert_eq!(scan.terms.runs(), &runs);
    }

    #[test]
    fn an_end_offset_stops_the_scan_inside_a_batch() {
        // Three batches of 3 records (10..19), then garbage: the end at 14 keeps the
        // second batch whole, reports next offset 14 and never looks at the garbage.
        let mut bytes = Vec::new();
        let mut ends = Vec::new();
        for i in 0..3u64 {
            let records = [RecordInput {
                timestamp_ms: i,
                attributes: b"",
                payload: &[1; 50],
            }; 3];
            encode_batch(
                &mut bytes,
                Offset(10 + 3 * i),
                segment_epoch(Offset(10)),
                i,
                0,
                &records,
            )
            .unwrap();
            ends.push(bytes.len() as u64);
        }
        bytes.extend_from_slice(&[0xEE; 300]);
        let scan = scan_segment_upto(&bytes, Offset(10), 512, Some(Offset(14)));
        assert_eq!(scan.end, ScanEnd::Clean);
        assert_eq!(scan.next_offset, Offset(14));
        assert_eq!(scan.valid_bytes, ends[1]);
        assert_eq!(scan.terms.runs(), &[(Offset(10), 0), (Offset(13), 1)]);
        // At a batch boundary.
        let scan = scan_segment_upto(&bytes, Offset(10), 512, Some(Offset(16)));
        assert_eq!((scan.next_offset, scan.valid_bytes), (Offset(16), ends[1]));
        // An end past the data: the garbage is looked at as usual.
        let scan = scan_segment_upto(&bytes, Offset(10), 512, Some(Offset(30)));
        assert_eq!(scan.next_offset, Offset(19));
        assert!(matches!(scan.end, ScanEnd::Torn { .. }), "{:?}", scan.end);
    }

    #[test]
    fn offset_gap_is_reported() {
        let (bytes, _) = check_segment_of(Offset(10), segment_epoch(Offset(11)), 3, true);
        let scan = scan_segment(&bytes, Offset(11), 512);
        // Later batches claim position 0 was durable, so the gap is corruption.
        assert!(matches!(
            scan.end,
            ScanEnd::Corrupt {
                position: 0,
                problem: ScanProblem::OffsetGap { .. },
                ..
            }
        ));
    }

    /// A recycled file: the previous life's segment (base 10, 8 synced batches) with the
    /// new life's `count` batches (base 1000, synced claims) written over its start.
    fn check_recycled(count: u64) -> (Vec<u8>, Vec<u64>, Vec<u64>) {
        let (mut bytes, old_starts) =
            check_segment_of(Offset(10), segment_epoch(Offset(10)), 8, true);
        let (new, new_starts) =
            check_segment_of(Offset(1000), segment_epoch(Offset(1000)), count, true);
        bytes[..new.len()].copy_from_slice(&new);
        (bytes, old_starts, new_starts)
    }

    #[test]
    fn epochs_differ_and_are_never_zero() {
        assert_ne!(segment_epoch(Offset(10)), segment_epoch(Offset(1000)));
        assert_ne!(segment_epoch(Offset(65_534)), 0);
        assert_eq!(segment_epoch(Offset(0)), segment_epoch(Offset(65_535)));
        assert_eq!(
            parse_name("00000000000000000042.free"),
            Some((Offset(42), FileKind::Free))
        );
    }

    #[test]
    fn a_stale_batch_ends_the_data_cleanly() {
        // Same batch sizes in both lives: the new data ends exactly where an old batch
        // starts, and that valid batch of another epoch ends the scan, clean.
        let (bytes, old_starts, _) = check_recycled(3);
        let scan = scan_segment(&bytes, Offset(1000), 512);
        assert_eq!(scan.end, ScanEnd::Clean);
        assert_eq!(scan.next_offset, Offset(1003));
        assert_eq!(scan.valid_bytes, old_starts[3]);
        assert_eq!(scan.stale_from, Some(old_starts[3]));
        assert!(scan.epoch_tagged);
        // No new data at all (a crash right after the rename): empty, clean.
        let (bytes, _, _) = check_recycled(0);
        let scan = scan_segment(&bytes, Offset(1000), 512);
        assert_eq!(scan.end, ScanEnd::Clean);
        assert_eq!((scan.next_offset, scan.valid_bytes), (Offset(1000), 0));
    }

    #[test]
    fn a_torn_end_over_stale_batches_is_torn_not_corrupt() {
        // The stale batches after the tear claim large durable positions: they must not
        // count as proof that the torn position was synced.
        let (mut bytes, _, new_starts) = check_recycled(3);
        let last = usize::try_from(new_starts[2]).unwrap();
        bytes[last + 70] ^= 1;
        let scan = scan_segment(&bytes, Offset(1000), 512);
        assert!(
            matches!(scan.end, ScanEnd::Torn { position, .. } if position == new_starts[2]),
            "{:?}",
            scan.end
        );
        assert_eq!(scan.next_offset, Offset(1002));
    }

    #[test]
    fn corruption_of_synced_new_data_is_still_found() {
        // Damage in the new life's second batch; its third claims the second synced.
        let (mut bytes, _, new_starts) = check_recycled(3);
        let second = usize::try_from(new_starts[1]).unwrap();
        bytes[second + 70] ^= 1;
        let scan = scan_segment(&bytes, Offset(1000), 512);
        assert!(
            matches!(scan.end, ScanEnd::Corrupt { position, .. } if position == new_starts[1]),
            "{:?}",
            scan.end
        );
        // A stale batch where a synced one should be (a write the device lost) is
        // corruption too when a later batch of this life proves the position synced.
        let (mut bytes, old_starts, new_starts) = check_recycled(3);
        let (old, _) = check_segment_of(Offset(10), segment_epoch(Offset(10)), 8, true);
        let (one, two) = (
            usize::try_from(new_starts[1]).unwrap(),
            usize::try_from(new_starts[2]).unwrap(),
        );
        bytes[one..two].copy_from_slice(&old[one..two]);
        assert_eq!(new_starts[1], old_starts[1]);
        let scan = scan_segment(&bytes, Offset(1000), 512);
        assert!(
            matches!(
                scan.end,
                ScanEnd::Corrupt {
                    problem: ScanProblem::OtherEpoch { .. },
                    ..
                }
            ),
            "{:?}",
            scan.end
        );
    }

    #[test]
    fn legacy_batches_of_epoch_zero_still_read() {
        let (bytes, _) = check_segment_of(Offset(10), 0, 5, true);
        let scan = scan_segment(&bytes, Offset(10), 512);
        assert_eq!((scan.end, scan.next_offset), (ScanEnd::Clean, Offset(15)));
        assert!(
            !scan.epoch_tagged,
            "a file with epoch-0 batches is never recycled"
        );
    }
}
