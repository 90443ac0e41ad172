//! Start-up: opening the log, verifying segments and recovering from a crash.

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;

use super::cache::LogCache;
use super::files::{decode_truncation, remove_if_present, write_index_file, TRUNCATION_NAME};
use super::{new_segment, Log, LogConfig, LogState, OpenError, Segment, VerifyOnOpen};
use crate::bugs::{self, Bug};
use crate::limits::{BLOCK_BYTES, SEGMENTS_MAX};
use crate::offset_index::{IndexFile, OffsetIndex};
use crate::record::align_up;
use crate::segment::{
    free_name, index_name, parse_name, scan_segment_upto, segment_name, FileKind, ScanEnd,
    ScanProblem, SegmentScan,
};
use crate::storage::{IoError, Storage, StorageFile};
use crate::types::Offset;

/// Bytes per read call when recovery or a reader loads a large range.
const READ_CHUNK_BYTES: u64 = 8 << 20;

impl<S: Storage> Log<S> {
    /// Opens (recovering) or creates the log in `storage`. A truncation that a crash
    /// interrupted is finished first.
    pub async fn open(storage: S, config: LogConfig) -> Result<Log<S>, OpenError> {
        config.validate()?;
        let (mut files, has_truncation, free) = list_files(&storage, &config).await?;
        let truncation = match has_truncation {
            true => read_truncation(&storage).await?,
            false => None,
        };
        if let Some(offset) = truncation {
            remove_truncated_segments(&storage, &mut files, offset).await?;
        }
        if files.len() > SEGMENTS_MAX {
            return Err(OpenError::TooManySegments {
                segment_count: files.len(),
            });
        }
        let segments = open_segments(&storage, &config, &files, truncation).await?;
        let next_offset = segments.back().map_or(Offset(0), |s| s.next_offset);
        let start = segments.front().map_or(next_offset, |s| s.base_offset);
        let free = keep_free_below(&storage, free, start).await?;
        let log = Log {
            storage,
            config,
            state: RefCell::new(LogState {
                segments,
                next_offset,
                durable_offset: next_offset,
                staged_bytes: 0,
                flushing: false,
                flush_generation: 0,
                waiters: Vec::new(),
                poisoned: None,
                truncating: false,
                truncations: 0,
                recent_truncations: VecDeque::new(),
                term_before_start: None,
                cache: LogCache::new(config.cache_bytes_max),
                free,
                free_reserved: 0,
                reused: 0,
            }),
        };
        if has_truncation {
            log.finish_open_truncation(truncation).await?;
        }
        Ok(log)
    }

    /// Finishes the truncation the record names, or removes a record whose write a crash
    /// interrupted (no segment was touched before its sync).
    async fn finish_open_truncation(&self, truncation: Option<Offset>) -> Result<(), OpenError> {
        let result = match truncation {
            Some(offset) => self.finish_truncation(offset).await,
            None => remove_if_present(&self.storage, TRUNCATION_NAME).await,
        };
        result.map_err(|(file, error)| OpenError::Io { file, error })?;
        let mut state = self.state.borrow_mut();
        state.next_offset = state.segments.back().map_or(Offset(0), |s| s.next_offset);
        state.durable_offset = state.next_offset;
        Ok(())
    }
}

/// Segment base offsets found, with (segment file present, index file present), and
/// whether a truncation record exists. Index files whose segment is gone are removed.
type FileMap = BTreeMap<Offset, (bool, bool)>;

/// The files of the log: segments with their index files, whether a truncation record
/// exists, and the recycled files kept for reuse (by old base; those beyond
/// `recycle_segments_max` are removed).
async fn list_files<S: Storage>(
    storage: &S,
    config: &LogConfig,
) -> Result<(FileMap, bool, Vec<Offset>), OpenError> {
    let list_error = |error| OpenError::Io {
        file: ".".to_string(),
        error,
    };
    let mut files: FileMap = BTreeMap::new();
    let mut has_truncation = false;
    let mut free = Vec::new();
    for name in storage.list().await.map_err(list_error)? {
        has_truncation |= name == TRUNCATION_NAME;
        match parse_name(&name) {
            Some((base, FileKind::Segment)) => files.entry(base).or_default().0 = true,
            Some((base, FileKind::Index)) => files.entry(base).or_default().1 = true,
            Some((base, FileKind::Free)) => free.push(base),
            None => {}
        }
    }
    let keep = usize::try_from(config.recycle_segments_max).expect("small");
    for base in free.split_off(keep.min(free.len())) {
        // More than this configuration keeps (it was lowered).
        remove_if_present(storage, &free_name(base))
            .await
            .map_err(|(file, error)| OpenError::Io { file, error })?;
    }
    for (base, (has_segment, _)) in &files {
        if !has_segment {
            // An index whose segment retention or truncation removed before a crash.
            remove_if_present(storage, &index_name(*base))
                .await
                .map_err(|(file, error)| OpenError::Io { file, error })?;
        }
    }
    files.retain(|_, (has_segment, _)| *has_segment);
    Ok((files, has_truncation, free))
}

/// The recycled files whose old base lies below the log's start; the others are removed.
/// Retention frees only segments below the start, so a free file at or past it did not
/// come from this log's retention (the log started over, or its segments were removed
/// by hand): its batches' offsets could be the next segments' own (docs/log.md D13).
async fn keep_free_below<S: Storage>(
    storage: &S,
    free: Vec<Offset>,
    start: Offset,
) -> Result<Vec<Offset>, OpenError> {
    let (kept, foreign): (Vec<Offset>, Vec<Offset>) =
        free.into_iter().partition(|base| *base < start);
    // Bounded by the recycle bound.
    for base in foreign {
        remove_if_present(storage, &free_name(base))
            .await
            .map_err(|(file, error)| OpenError::Io { file, error })?;
    }
    Ok(kept)
}

/// The offset of the truncation record. Damage can only make a valid record look
/// invalid, never the reverse, so a record is invalid only if every read says so.
async fn read_truncation<S: Storage>(storage: &S) -> Result<Option<Offset>, OpenError> {
    let io = |error| OpenError::Io {
        file: TRUNCATION_NAME.to_string(),
        error,
    };
    let file = storage.open(TRUNCATION_NAME).await.map_err(io)?;
    for _ in 0..RECOVERY_READS_MAX {
        let bytes = file
            .read_at(0, usize::try_from(BLOCK_BYTES).expect("small"))
            .await
            .map_err(io)?;
        if let Some(offset) = decode_truncation(bytes.as_ref()) {
            return Ok(Some(offset));
        }
    }
    Ok(None)
}

/// Redoes step 3 of an interrupted truncation: removes every segment whose base is at
/// or after `offset`, newest first.
async fn remove_truncated_segments<S: Storage>(
    storage: &S,
    files: &mut FileMap,
    offset: Offset,
) -> Result<(), OpenError> {
    let removed: Vec<Offset> = files.range(offset..).rev().map(|(b, _)| *b).collect();
    for base in removed {
        for name in [index_name(base), segment_name(base)] {
            remove_if_present(storage, &name)
                .await
                .map_err(|(file, error)| OpenError::Io { file, error })?;
        }
        files.remove(&base);
    }
    Ok(())
}

/// Opens every segment. Each but the last logically ends where its successor begins
/// (a truncation may have capped it there); the last ends at the interrupted
/// truncation's offset, if any. They must form a contiguous offset sequence.
async fn open_segments<S: Storage>(
    storage: &S,
    config: &LogConfig,
    files: &FileMap,
    truncation: Option<Offset>,
) -> Result<VecDeque<Segment<S::File>>, OpenError> {
    let bases: Vec<Offset> = files.keys().copied().collect();
    let mut segments = VecDeque::with_capacity(files.len());
    for (position, (base, (_, has_index))) in files.iter().enumerate() {
        let successor = bases.get(position + 1).copied();
        let place = Place {
            base: *base,
            has_index: *has_index,
            is_last: successor.is_none(),
            end: successor.or(truncation),
        };
        let segment = open_segment(storage, config, place).await?;
        if let Some(found) = successor.filter(|found| segment.next_offset != *found) {
            return Err(OpenError::Corrupt {
                file: segment_name(found),
                position: 0,
                problem: ScanProblem::OffsetGap {
                    expected: segment.next_offset,
                    found,
                },
            });
        }
        segments.push_back(segment);
    }
    Ok(segments)
}

/// Where a segment sits in the log at start-up.
#[derive(Clone, Copy)]
struct Place {
    base: Offset,
    has_index: bool,
    is_last: bool,
    /// The logical end: the successor's base, or an interrupted truncation's offset.
    end: Option<Offset>,
}

async fn read_index_file<S: Storage>(storage: &S, base: Offset) -> Option<IndexFile> {
    let file = storage.open(&index_name(base)).await.ok()?;
    let size = file.size().await.ok()?;
    let bytes = file.read_at(0, usize::try_from(size).ok()?).await.ok()?;
    OffsetIndex::decode_file(bytes.as_ref())
}

async fn read_whole<F: StorageFile>(file: &F, size: u64) -> Result<Vec<u8>, IoError> {
    let mut bytes = Vec::with_capacity(usize::try_from(size).expect("bounded by segment max"));
    // Bounded: each pass reads a chunk or stops at end of file.
    while (bytes.len() as u64) < size {
        let want = READ_CHUNK_BYTES.min(size - bytes.len() as u64);
        let chunk = file
            .read_at(bytes.len() as u64, usize::try_from(want).expect("fits"))
            .await?;
        if chunk.as_ref().is_empty() {
            break;
        }
        bytes.extend_from_slice(chunk.as_ref());
    }
    Ok(bytes)
}

/// How many times recovery reads a segment whose scan does not end cleanly.
const RECOVERY_READS_MAX: u32 = 4;

enum StableReadError {
    Io(IoError),
    Unstable,
}

/// Reads and scans a segment. A clean scan is believed at once (every batch passed its
/// checksum). Otherwise the damage might be a transient read fault, not the disk's
/// content, and truncating on it would drop durable records: the segment is read again
/// until two reads in a row end the same way, and if they never agree, recovery stops
/// rather than guess.
async fn read_and_scan<F: StorageFile>(
    file: &F,
    size: u64,
    place: Place,
    config: &LogConfig,
) -> Result<(Vec<u8>, SegmentScan), StableReadError> {
    let mut previous: Option<ScanEnd> = None;
    for _ in 0..RECOVERY_READS_MAX {
        let bytes = read_whole(file, size).await.map_err(StableReadError::Io)?;
        let scan = scan_segment_upto(&bytes, place.base, config.index_interval_bytes, place.end);
        if scan.end == ScanEnd::Clean
            || previous == Some(scan.end)
            || bugs::enabled(Bug::TrustOneRead)
        {
            return Ok((bytes, scan));
        }
        previous = Some(scan.end);
    }
    Err(StableReadError::Unstable)
}

/// Opens one segment at start-up. Under [`VerifyOnOpen::Tail`] a sealed segment whose
/// index file matches it (including its logical end) is believed without reading its
/// data; every other segment is read and scanned batch by batch up to its logical end.
/// The last segment loses its torn tail and has its unsynced tail written again; an
/// earlier one is sealed if a crash interrupted its roll or its truncation.
async fn open_segment<S: Storage>(
    storage: &S,
    config: &LogConfig,
    place: Place,
) -> Result<Segment<S::File>, OpenError> {
    let name = segment_name(place.base);
    let io = |error| OpenError::Io {
        file: name.clone(),
        error,
    };
    let file = storage.open(&name).await.map_err(io)?;
    let size = file.size().await.map_err(io)?;
    let indexed = match (place.is_last, place.has_index) {
        (false, true) => read_index_file(storage, place.base).await.filter(|stored| {
            let summary = &stored.summary;
            summary.base_offset == place.base
                && summary.data_bytes == size
                && Some(summary.next_offset) == place.end
        }),
        _ => None,
    };
    if let (Some(stored), VerifyOnOpen::Tail) = (&indexed, config.verify_on_open) {
        return Ok(segment_from_index(file, size, stored.clone()));
    }
    let (mut bytes, scan) = read_and_scan(&file, size, place, config)
        .await
        .map_err(|error| match error {
            StableReadError::Io(error) => io(error),
            StableReadError::Unstable => OpenError::UnstableReads { file: name.clone() },
        })?;
    // A file cut inside the last batch's padding: the padding is zeros by definition.
    bytes.resize(
        bytes
            .len()
            .max(usize::try_from(scan.valid_bytes).expect("fits")),
        0,
    );
    cut_torn_tail(&file, &name, scan.end, place.is_last).await?;
    let durable_claim_max = scan.durable_claim_max;
    let mut segment = segment_from_scan(place.base, size, &bytes, scan);
    if place.is_last {
        rewrite_unsynced_tail(&file, &bytes, durable_claim_max, segment.written_bytes)
            .await
            .map_err(io)?;
    } else {
        finish_sealing(storage, &file, &name, &mut segment, size, indexed.as_ref()).await?;
    }
    segment.file = Some(Rc::new(file));
    Ok(segment)
}

/// A sealed segment believed from its index file, without reading its data.
fn segment_from_index<F>(file: F, size: u64, stored: IndexFile) -> Segment<F> {
    let summary = stored.summary;
    let mut segment = new_segment(summary.base_offset);
    segment.next_offset = summary.next_offset;
    segment.written_bytes = summary.data_bytes;
    segment.durable_bytes = summary.data_bytes;
    segment.allocated_bytes = size;
    segment.index = stored.index;
    segment.terms = stored.terms;
    segment.timestamp_ms_max = summary.timestamp_ms_max;
    segment.sealed = true;
    segment.epoch_tagged = summary.epoch_tagged;
    segment.file = Some(Rc::new(file));
    segment
}

/// Acts on how the scan of a segment ended. A torn last segment is an unsynced write the
/// crash cut short: its tail is truncated. A torn earlier segment, or corruption in any
/// segment, is damage to data that had been durable: start-up stops.
async fn cut_torn_tail<F: StorageFile>(
    file: &F,
    name: &str,
    end: ScanEnd,
    is_last: bool,
) -> Result<(), OpenError> {
    match end {
        ScanEnd::Clean => Ok(()),
        ScanEnd::Torn { position, .. } if is_last => {
            if !bugs::enabled(Bug::KeepTornTail) {
                file.truncate(position)
                    .await
                    .map_err(|error| OpenError::Io {
                        file: name.to_string(),
                        error,
                    })?;
            }
            Ok(())
        }
        ScanEnd::Torn { position, problem }
        | ScanEnd::Corrupt {
            position, problem, ..
        } => Err(OpenError::Corrupt {
            file: name.to_string(),
            position,
            problem,
        }),
    }
}

/// The segment a scan found: every valid byte durable, and the written part of the last
/// block kept for the next append to write again.
fn segment_from_scan<F>(base: Offset, size: u64, bytes: &[u8], scan: SegmentScan) -> Segment<F> {
    let valid = scan.valid_bytes;
    let tail_start = valid - valid % BLOCK_BYTES;
    let mut segment = new_segment(base);
    segment.next_offset = scan.next_offset;
    segment.written_bytes = valid;
    segment.durable_bytes = valid;
    segment.allocated_bytes = size.max(align_up(valid, BLOCK_BYTES));
    segment.tail_block = bytes[usize::try_from(tail_start).expect("fits")..]
        [..usize::try_from(valid - tail_start).expect("fits")]
        .to_vec();
    segment.index = scan.index;
    segment.terms = scan.terms;
    segment.timestamp_ms_max = scan.timestamp_ms_max;
    segment.epoch_tagged = scan.epoch_tagged;
    segment
}

/// Data of the last segment past the highest position any batch saw synced may sit only
/// in a page cache whose flush failed: writes it again and syncs before trusting it.
async fn rewrite_unsynced_tail<F: StorageFile>(
    file: &F,
    bytes: &[u8],
    durable_claim_max: u64,
    valid: u64,
) -> Result<(), IoError> {
    let rewrite_from = durable_claim_max - durable_claim_max % BLOCK_BYTES;
    if rewrite_from < valid && !bugs::enabled(Bug::TrustUnsyncedTail) {
        let data = &bytes
            [usize::try_from(rewrite_from).expect("fits")..usize::try_from(valid).expect("fits")];
        let padded = align_up(data.len() as u64, BLOCK_BYTES);
        let mut buf = file.alloc_buf(usize::try_from(padded).expect("fits"));
        buf.as_mut()[..data.len()].copy_from_slice(data);
        file.write_sync_at(buf, rewrite_from).await?;
    }
    Ok(())
}

/// Finishes sealing a segment that is not the last: its roll or truncation was
/// interrupted by a crash, or its index file was missing, bad or of an older version. Cuts the file to its data and writes the index
/// file unless the stored one already matches.
async fn finish_sealing<S: Storage>(
    storage: &S,
    file: &S::File,
    name: &str,
    segment: &mut Segment<S::File>,
    size: u64,
    indexed: Option<&IndexFile>,
) -> Result<(), OpenError> {
    if size != segment.written_bytes {
        file.truncate(segment.written_bytes)
            .await
            .map_err(|error| OpenError::Io {
                file: name.to_string(),
                error,
            })?;
    }
    let summary = segment.summary();
    let index_matches = indexed.is_some_and(|stored| {
        stored.summary == summary
            && stored.index.entry_count() == segment.index.entry_count()
            && stored.terms == segment.terms
    });
    if !index_matches {
        write_index_file(storage, &segment.index, &summary, &segment.terms)
            .await
            .map_err(|(file, error)| OpenError::Io { file, error })?;
    }
    segment.sealed = true;
    Ok(())
}
