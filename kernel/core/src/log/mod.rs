//! The segment log: append, group commit, read, retention and crash recovery.
//!
//! A log is a directory of segments (see [`crate::segment`]) reached only through a
//! [`Storage`]. Appends are staged in memory and given offsets at once; [`Log::sync`]
//! makes them durable with group commit: the first waiter that finds no flush running
//! becomes the flusher, writes everything staged by everyone (one aligned write per
//! segment, re-writing the partial last block) and issues one `sync`; every waiter whose
//! offset that sync covers is released together. Only durable records are readable.
//!
//! Invariants (asserted): offsets are contiguous across batches and segments;
//! `durable_offset <= next_offset`; a segment's `durable_bytes <= written_bytes`; a segment
//! is sealed (exact length, index file written) only after all its data is durable and a
//! later segment exists. Any I/O error on the write path poisons the log: its state on
//! disk is unknown (a failed fsync may have dropped pages), so every later call fails
//! until the log is reopened, and reopening re-derives everything from the disk.
//!
//! Single-threaded by design (one log per shard): interior mutability through `RefCell`,
//! never held across an `.await`.
//!
//! Every batch carries a Raft term (0: none); the log keeps the terms of its records in
//! memory as runs per segment ([`TermRuns`]) for [`Log::term_at`] and [`Log::last_term`].
//! [`Log::truncate_from`] removes a suffix of the log, durably and without ever touching
//! the bytes of the records it keeps (docs/log.md, "Truncation").
//!
//! The code is split by concern: this file holds the types, the configuration and the
//! log's state; `append.rs` appends and group commit (and sealing); `read.rs` reads;
//! `cache.rs` keeps recently written and read batches for reads (docs/log.md, "Cache");
//! `retention.rs` removes old segments (keeping a few files for reuse by later segments,
//! docs/log.md D13); `truncate.rs` removes a suffix; `recovery.rs`
//! opens the log and recovers it after a crash (finishing an interrupted truncation);
//! `files.rs` holds the index-file and truncation-record helpers they share.

mod append;
mod cache;
#[cfg(test)]
mod cache_tests;
mod files;
mod read;
mod recovery;
mod reset;
mod retention;
#[cfg(test)]
mod tests;
mod truncate;

pub use cache::CacheStats;
pub use files::TRUNCATION_NAME;

use bytes::Bytes;

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::task::Waker;

use crate::limits::{
    INDEX_INTERVAL_BYTES_MAX, INDEX_INTERVAL_BYTES_MIN, LOG_CACHE_BYTES_CEILING,
    LOG_RECYCLE_SEGMENTS_CEILING, SEGMENTS_MAX, SEGMENT_BYTES_CEILING, SEGMENT_BYTES_MIN,
};
use crate::offset_index::{OffsetIndex, SegmentSummary};
use crate::record::{DecodeError, EncodeError};
use crate::segment::ScanProblem;
use crate::storage::{IoError, Storage};
use crate::term_runs::TermRuns;
use crate::types::Offset;
use cache::LogCache;

/// How much of the log start-up verifies batch by batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VerifyOnOpen {
    /// The last segment and every segment without a valid index file. Sealed segments are
    /// verified when read (every read checks every checksum).
    Tail,
    /// Every segment: start-up reads the whole log.
    All,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogConfig {
    /// A segment rolls when the next batch would take it past this size.
    pub segment_bytes_max: u64,
    /// Distance between sparse index entries.
    pub index_interval_bytes: u64,
    /// Space reserved ahead of the active segment's end, so appends rarely allocate.
    pub preallocate_bytes: u64,
    pub verify_on_open: VerifyOnOpen,
    /// Bytes of recently written and read batches kept in memory
    /// ([`crate::limits::LOG_CACHE_BYTES_DEFAULT`] is a good default; 0 turns the cache
    /// off); at most [`LOG_CACHE_BYTES_CEILING`].
    pub cache_bytes_max: u64,
    /// Segment files retention removed that are kept (renamed `<old base>.free`) for the
    /// next segments to reuse instead of creating empty files
    /// ([`crate::limits::LOG_RECYCLE_SEGMENTS_DEFAULT`] is a good default; 0 unlinks
    /// them); at most [`LOG_RECYCLE_SEGMENTS_CEILING`].
    pub recycle_segments_max: u32,
}

impl LogConfig {
    pub fn validate(&self) -> Result<(), OpenError> {
        if !(SEGMENT_BYTES_MIN..=SEGMENT_BYTES_CEILING).contains(&self.segment_bytes_max) {
            return Err(OpenError::Config("segment_bytes_max out of range"));
        }
        let interval = INDEX_INTERVAL_BYTES_MIN..=INDEX_INTERVAL_BYTES_MAX;
        if !interval.contains(&self.index_interval_bytes) {
            return Err(OpenError::Config("index_interval_bytes out of range"));
        }
        if self.preallocate_bytes > SEGMENT_BYTES_CEILING {
            return Err(OpenError::Config("preallocate_bytes out of range"));
        }
        if self.cache_bytes_max > LOG_CACHE_BYTES_CEILING {
            return Err(OpenError::Config("cache_bytes_max out of range"));
        }
        if self.recycle_segments_max > LOG_RECYCLE_SEGMENTS_CEILING {
            return Err(OpenError::Config("recycle_segments_max out of range"));
        }
        Ok(())
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpenError {
    Config(&'static str),
    Io {
        file: String,
        error: IoError,
    },
    /// Damage in data that had been durable: start-up must stop.
    Corrupt {
        file: String,
        position: u64,
        problem: ScanProblem,
    },
    TooManySegments {
        segment_count: usize,
    },
    /// Reads of the segment disagreed every time: the device returns unstable data.
    UnstableReads {
        file: String,
    },
}

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpenError::Config(what) => write!(f, "invalid log config: {what}"),
            OpenError::Io { file, error } => write!(f, "{file}: {error}"),
            OpenError::Corrupt {
                file,
                position,
                problem,
            } => write!(
                f,
                "corrupt log: {file} at byte {position}: {problem}; refusing to start \
                 (data after this point was acknowledged as durable)"
            ),
            OpenError::UnstableReads { file } => write!(
                f,
                "{file}: repeated reads disagree; refusing to recover from unstable data"
            ),
            OpenError::TooManySegments { segment_count } => {
                write!(
                    f,
                    "{segment_count} segments exceed the limit of {SEGMENTS_MAX}"
                )
            }
        }
    }
}

/// Why [`Log::append`] or [`Log::append_with_term`] refused a batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AppendError {
    Encode(EncodeError),
    /// Too much staged and not yet written, or a truncation is running; sync and retry.
    Busy {
        staged_bytes: u64,
    },
    /// An earlier I/O error; reopen the log.
    Poisoned(LogError),
    /// The batch's term is lower than the term of the log's last record.
    TermRegressed {
        term: u64,
        last_term: u64,
    },
}

/// A failure of a sync or a truncation. After `Io` (a write-path failure) the log is
/// poisoned; the other variants leave it as it was.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogError {
    Io {
        file: String,
        error: IoError,
    },
    /// [`Log::truncate_from`] was given an offset outside `start_offset..=next_offset`.
    OutOfRange {
        offset: Offset,
        start_offset: Offset,
        next_offset: Offset,
    },
    /// While [`Log::sync`] waited, a truncation removed records below `upto`.
    Truncated {
        upto: Offset,
        truncated_from: Offset,
    },
}

impl std::fmt::Display for LogError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LogError::Io { file, error } => write!(f, "{file}: {error}"),
            LogError::OutOfRange {
                offset,
                start_offset,
                next_offset,
            } => write!(
                f,
                "cannot truncate from offset {offset}: the log holds {start_offset}..{next_offset}"
            ),
            LogError::Truncated {
                upto,
                truncated_from,
            } => write!(
                f,
                "sync up to {upto} failed: a truncation removed the records from {truncated_from}"
            ),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReadError {
    Io {
        file: String,
        error: IoError,
    },
    Corrupt {
        file: String,
        position: u64,
        problem: DecodeError,
    },
    /// Retention removed the requested offset; the log now starts at `start_offset`.
    Removed {
        start_offset: Offset,
    },
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::Io { file, error } => write!(f, "{file}: {error}"),
            ReadError::Corrupt {
                file,
                position,
                problem,
            } => {
                write!(f, "corrupt log: {file} at byte {position}: {problem}")
            }
            ReadError::Removed { start_offset } => {
                write!(
                    f,
                    "offset removed by retention; log starts at {start_offset}"
                )
            }
        }
    }
}

/// Offsets given to an appended batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Appended {
    pub first_offset: Offset,
    /// One past the last record; `sync(next_offset)` makes the batch durable.
    pub next_offset: Offset,
}

/// A record read from the log. Its attributes and payload are slices of the batch they
/// were read with (cached or read from storage), shared, not copied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadRecord {
    pub offset: Offset,
    pub timestamp_ms: u64,
    pub attributes: Bytes,
    pub payload: Bytes,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RetentionPolicy {
    /// Remove a sealed segment once its newest record is older than this.
    pub age_ms_max: Option<u64>,
    /// Remove the oldest sealed segments while the log is larger than this.
    pub bytes_max: Option<u64>,
    /// Remove sealed segments whose every offset is below this one.
    pub remove_below: Option<Offset>,
}

struct Segment<F> {
    base_offset: Offset,
    next_offset: Offset,
    file: Option<Rc<F>>,
    /// Data bytes handed to storage.
    written_bytes: u64,
    /// Data bytes covered by a completed sync.
    durable_bytes: u64,
    allocated_bytes: u64,
    /// Encoded batches not yet handed to storage; they start at `written_bytes`.
    staged: Vec<u8>,
    /// The written bytes of the last, partial block: re-written with the next append
    /// because direct I/O writes whole blocks.
    tail_block: Vec<u8>,
    index: OffsetIndex,
    /// The terms of the records below `next_offset`.
    terms: TermRuns,
    /// Newest record time; after a truncation capped the segment, an upper bound.
    timestamp_ms_max: u64,
    sealed: bool,
    /// Every batch carries the segment's epoch (none was written before epochs): the
    /// file may be recycled once retention removes it.
    epoch_tagged: bool,
}

impl<F> Segment<F> {
    fn data_bytes(&self) -> u64 {
        self.written_bytes + self.staged.len() as u64
    }

    fn summary(&self) -> SegmentSummary {
        SegmentSummary {
            base_offset: self.base_offset,
            next_offset: self.next_offset,
            data_bytes: self.written_bytes,
            timestamp_ms_max: self.timestamp_ms_max,
            epoch_tagged: self.epoch_tagged,
        }
    }
}

struct LogState<F> {
    segments: VecDeque<Segment<F>>,
    next_offset: Offset,
    durable_offset: Offset,
    staged_bytes: u64,
    flushing: bool,
    flush_generation: u64,
    waiters: Vec<Waker>,
    poisoned: Option<LogError>,
    /// A truncation holds the flush role and refuses appends until it ends.
    truncating: bool,
    /// Truncations so far and the offsets of the latest few, so a waiting sync can tell
    /// whether its records were removed.
    truncations: u64,
    recent_truncations: VecDeque<(u64, Offset)>,
    /// The term of the record at `start_offset - 1`, when retention or truncation removed
    /// it in this process's lifetime.
    term_before_start: Option<u64>,
    /// Recently written and read batches (`cache.rs`).
    cache: LogCache,
    /// Recycled segment files waiting for reuse, by old base (`<base>.free`).
    free: Vec<Offset>,
    /// Files retention is renaming into `free` (counted against the bound meanwhile).
    free_reserved: usize,
    /// Segments this process created from a recycled file.
    reused: u64,
}

/// See [`Log::recycle_stats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecycleStats {
    pub free_files: usize,
    pub reused: u64,
}

/// How many truncation offsets the log remembers for waiting syncs.
const RECENT_TRUNCATIONS_MAX: usize = 16;

/// An append-only log of records in segment files, with group commit, reads, retention,
/// truncation and crash recovery.
pub struct Log<S: Storage> {
    storage: S,
    config: LogConfig,
    state: RefCell<LogState<S::File>>,
}

impl<S: Storage> Log<S> {
    pub fn config(&self) -> &LogConfig {
        &self.config
    }

    /// The offset the next appended record gets.
    pub fn next_offset(&self) -> Offset {
        self.state.borrow().next_offset
    }

    /// Every record below this offset is durable and readable.
    pub fn durable_offset(&self) -> Offset {
        self.state.borrow().durable_offset
    }

    /// The oldest offset still stored (retention removes whole segments before it).
    pub fn start_offset(&self) -> Offset {
        self.state.borrow().start_offset()
    }

    pub fn segment_count(&self) -> usize {
        self.state.borrow().segments.len()
    }

    /// The counters of the log's cache of recent batches.
    pub fn cache_stats(&self) -> CacheStats {
        self.state.borrow().cache.stats()
    }

    /// Recycled segment files: how many wait for reuse, and how many segments this
    /// process created from one.
    pub fn recycle_stats(&self) -> RecycleStats {
        let state = self.state.borrow();
        RecycleStats {
            free_files: state.free.len(),
            reused: state.reused,
        }
    }

    pub fn poisoned(&self) -> Option<LogError> {
        self.state.borrow().poisoned.clone()
    }

    /// The term of the record at `offset`, for any offset in
    /// `start_offset..next_offset` (staged records included); `None` outside.
    pub fn term_at(&self, offset: Offset) -> Option<u64> {
        self.state.borrow().term_at(offset)
    }

    /// The term of the last record. When the log holds no record, the term of the record
    /// just before `next_offset` if this process saw it (retention or truncation removed
    /// it), else 0; a reopened empty log answers 0.
    pub fn last_term(&self) -> u64 {
        self.state.borrow().last_term()
    }
}

impl<F> LogState<F> {
    fn start_offset(&self) -> Offset {
        self.segments
            .front()
            .map_or(self.next_offset, |s| s.base_offset)
    }

    fn term_at(&self, offset: Offset) -> Option<u64> {
        if offset < self.start_offset() || offset >= self.next_offset {
            return None;
        }
        let index = self.segments.partition_point(|s| s.base_offset <= offset);
        self.segments[index.checked_sub(1)?].terms.term_at(offset)
    }

    fn last_term(&self) -> u64 {
        match self.next_offset.0.checked_sub(1) {
            Some(last) if self.next_offset > self.start_offset() => {
                self.term_at(Offset(last)).unwrap_or(0)
            }
            _ => self.term_before_start.unwrap_or(0),
        }
    }

    /// The lowest offset a truncation after the `since`-th one removed from; `None` when
    /// none ran since. Conservatively 0 when the memory of them ran out.
    fn truncated_since(&self, since: u64) -> Option<Offset> {
        if self.truncations == since {
            return None;
        }
        let remembered = self
            .recent_truncations
            .front()
            .is_some_and(|(seq, _)| *seq <= since + 1);
        if !remembered {
            return Some(Offset(0));
        }
        self.recent_truncations
            .iter()
            .filter(|(seq, _)| *seq > since)
            .map(|(_, offset)| *offset)
            .min()
    }

    fn note_truncation(&mut self, offset: Offset) {
        self.truncations += 1;
        if self.recent_truncations.len() == RECENT_TRUNCATIONS_MAX {
            self.recent_truncations.pop_front();
        }
        self.recent_truncations
            .push_back((self.truncations, offset));
    }

    fn segment(&self, base: Offset) -> &Segment<F> {
        let index = self.segments.partition_point(|s| s.base_offset < base);
        let segment = &self.segments[index];
        assert_eq!(segment.base_offset, base, "segment vanished during a flush");
        segment
    }

    fn segment_mut(&mut self, base: Offset) -> &mut Segment<F> {
        let index = self.segments.partition_point(|s| s.base_offset < base);
        let segment = &mut self.segments[index];
        assert_eq!(segment.base_offset, base, "segment vanished during a flush");
        segment
    }
}

fn new_segment<F>(base_offset: Offset) -> Segment<F> {
    Segment {
        base_offset,
        next_offset: base_offset,
        file: None,
        written_bytes: 0,
        durable_bytes: 0,
        allocated_bytes: 0,
        staged: Vec::new(),
        tail_block: Vec::new(),
        index: OffsetIndex::default(),
        terms: TermRuns::default(),
        timestamp_ms_max: 0,
        sealed: false,
        epoch_tagged: true,
    }
}
