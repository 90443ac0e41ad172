//! The log's cache of recently written and recently read batches (docs/log.md, "Cache").
//!
//! One cache per log, so per partition, shared by every queue of it. An entry is one
//! whole batch: its bytes as one [`Bytes`] and its records as slices of them, so a read
//! it answers hands out records without copying a byte of them. Bytes get here only
//! verified: an appended batch was encoded by this process, a batch read from storage
//! passed its checksum first.
//!
//! Bounded by bytes (`LogConfig::cache_bytes_max`): an entry costs its encoded bytes plus
//! a fixed overhead per entry and per record. Eviction keeps two lists in one ordered
//! map: batches not read yet (appended), oldest first, and batches read (a hit, or a read
//! from storage filled them), least recently read first. It evicts read batches first,
//! then the oldest unread: a queue reads each message about once, so a batch it read is
//! worth less than one it has not reached yet, and a scan of a backlog larger than the
//! cache does not push out the unread messages it is about to reach.
//!
//! Invalidation is exact: a truncation drops every batch holding an offset at or after
//! it, retention every batch below the new start, a reset everything; each also bumps
//! the *epoch*. A read from storage notes the epoch when it starts and fills the cache
//! only if it is unchanged when it ends, so bytes it read before a truncation (which a
//! later append may replace) never enter the cache.

use std::collections::BTreeMap;

use bytes::Bytes;

use super::ReadRecord;
use crate::record::BatchView;
use crate::types::Offset;

/// What an entry costs beyond its batch's bytes (map nodes, its record table).
const ENTRY_OVERHEAD_BYTES: u64 = 128;
/// What each record of an entry costs beyond its bytes.
const RECORD_OVERHEAD_BYTES: u64 = std::mem::size_of::<ReadRecord>() as u64;

/// Which eviction list an entry is on; `Read` is evicted first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum List {
    Read,
    Unread,
}

/// Where an entry waits for eviction: its list and when it got there.
type Rank = (List, u64);

struct Entry {
    next_offset: Offset,
    records: Box<[ReadRecord]>,
    cost: u64,
    rank: Rank,
}

/// Counters of one log's cache.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Reads answered from the cache (no storage read).
    pub hits: u64,
    /// Reads that went to storage.
    pub misses: u64,
    /// Bytes the cached batches cost (see `cache_bytes_max`).
    pub bytes: u64,
    pub batches: u64,
    /// Truncations, retention passes that removed segments, and resets so far.
    pub epoch: u64,
}

pub(super) struct LogCache {
    bytes_max: u64,
    bytes: u64,
    epoch: u64,
    tick: u64,
    /// By the base offset of the batch; batches of one epoch never overlap.
    entries: BTreeMap<Offset, Entry>,
    /// Eviction order: the first key goes first.
    order: BTreeMap<Rank, Offset>,
    hits: u64,
    misses: u64,
}

impl LogCache {
    pub(super) fn new(bytes_max: u64) -> LogCache {
        LogCache {
            bytes_max,
            bytes: 0,
            epoch: 0,
            tick: 0,
            entries: BTreeMap::new(),
            order: BTreeMap::new(),
            hits: 0,
            misses: 0,
        }
    }

    pub(super) fn enabled(&self) -> bool {
        self.bytes_max > 0
    }

    pub(super) fn epoch(&self) -> u64 {
        self.epoch
    }

    pub(super) fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits,
            misses: self.misses,
            bytes: self.bytes,
            batches: self.entries.len() as u64,
            epoch: self.epoch,
        }
    }

    pub(super) fn note_miss(&mut self) {
        self.misses += 1;
    }

    /// Caches a verified batch whose bytes are `bytes` (`view` decodes them), read
    /// (`read`) or just appended, if `epoch` is still current and it fits.
    pub(super) fn insert(&mut self, epoch: u64, bytes: &Bytes, view: &BatchView<'_>, read: bool) {
        if epoch != self.epoch || !self.enabled() {
            return;
        }
        let base = view.base_offset();
        let cost = ENTRY_OVERHEAD_BYTES
            + bytes.len() as u64
            + u64::from(view.record_count()) * RECORD_OVERHEAD_BYTES;
        if cost > self.bytes_max {
            return;
        }
        let list = if read { List::Read } else { List::Unread };
        if self.entries.contains_key(&base) {
            // The same batch (same epoch, same offsets): only its rank changes.
            self.rank(base, list);
            return;
        }
        let records = records_of(bytes, view).into_boxed_slice();
        let rank = self.next_rank(list);
        self.order.insert(rank, base);
        self.entries.insert(
            base,
            Entry {
                next_offset: view.next_offset(),
                records,
                cost,
                rank,
            },
        );
        self.bytes += cost;
        // Bounded by the number of entries.
        while self.bytes > self.bytes_max {
            let Some((_, victim)) = self.order.pop_first() else {
                break;
            };
            self.remove_entry(victim);
        }
    }

    /// The records in `from..end` of the cached batches from the one holding `from` on,
    /// while each starts where the one before ends: about `bytes_max` of them, whole
    /// batches, at least one. `None` when no cached batch holds `from`.
    pub(super) fn read(
        &mut self,
        from: Offset,
        end: Offset,
        bytes_max: u64,
    ) -> Option<Vec<ReadRecord>> {
        let (&first, entry) = self.entries.range(..=from).next_back()?;
        if entry.next_offset <= from || from >= end {
            return None;
        }
        let mut records = Vec::new();
        let mut records_bytes = 0u64;
        let mut used = Vec::new();
        let mut base = first;
        // Bounded by the number of entries.
        while let Some(entry) = self.entries.get(&base) {
            used.push(base);
            for record in entry.records.iter() {
                if record.offset >= from && record.offset < end {
                    records_bytes += (record.payload.len() + record.attributes.len()) as u64;
                    records.push(record.clone());
                }
            }
            let full = records_bytes >= bytes_max && !records.is_empty();
            if full || entry.next_offset >= end {
                break;
            }
            base = entry.next_offset;
        }
        for base in used {
            self.rank(base, List::Read);
        }
        self.hits += 1;
        Some(records)
    }

    /// Drops every batch holding an offset at or after `offset` (a truncation).
    pub(super) fn truncate_from(&mut self, offset: Offset) {
        self.epoch += 1;
        let mut doomed: Vec<Offset> = self.entries.range(offset..).map(|(b, _)| *b).collect();
        if let Some((&base, entry)) = self.entries.range(..offset).next_back() {
            if entry.next_offset > offset {
                doomed.push(base);
            }
        }
        for base in doomed {
            self.remove_entry(base);
        }
    }

    /// Drops every batch that starts below `start` (retention removed its segment).
    pub(super) fn remove_below(&mut self, start: Offset) {
        self.epoch += 1;
        let doomed: Vec<Offset> = self.entries.range(..start).map(|(b, _)| *b).collect();
        for base in doomed {
            self.remove_entry(base);
        }
    }

    /// Drops everything (a reset of the log).
    pub(super) fn clear(&mut self) {
        self.epoch += 1;
        self.entries.clear();
        self.order.clear();
        self.bytes = 0;
    }

    fn next_rank(&mut self, list: List) -> Rank {
        self.tick += 1;
        (list, self.tick)
    }

    fn rank(&mut self, base: Offset, list: List) {
        let rank = self.next_rank(list);
        let Some(entry) = self.entries.get_mut(&base) else {
            return;
        };
        self.order.remove(&entry.rank);
        entry.rank = rank;
        self.order.insert(rank, base);
    }

    fn remove_entry(&mut self, base: Offset) {
        if let Some(entry) = self.entries.remove(&base) {
            self.order.remove(&entry.rank);
            self.bytes -= entry.cost;
        }
    }
}

/// The records of `view`, a decoding of `bytes`, as slices of `bytes`.
pub(super) fn records_of(bytes: &Bytes, view: &BatchView<'_>) -> Vec<ReadRecord> {
    view.records()
        .map(|record| ReadRecord {
            offset: record.offset,
            timestamp_ms: record.timestamp_ms,
            attributes: bytes.slice_ref(record.attributes),
            payload: bytes.slice_ref(record.payload),
        })
        .collect()
}
