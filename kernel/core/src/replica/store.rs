//! raft-rs's `Storage` over the partition's segment log.
//!
//! The log holds every persisted entry (one record each, its term in the batch header).
//! In memory the store keeps the *tail*: every entry not yet persisted, every entry not
//! yet applied (raft-rs reads those synchronously when it hands out committed entries),
//! and a bounded window of recent ones, so a follower that is a little behind is served
//! without a disk read. Older entries for a lagging follower are read from the log
//! asynchronously: the store answers `LogTemporarilyUnavailable`, the replica reads them
//! into `fetched` and calls raft-rs's `on_entries_fetched`.
//!
//! Appended entries become visible to raft-rs at once (`stage`) and durable later
//! (`persist`), which truncates the log where a new leader's entries replace a
//! conflicting suffix, appends one batch per run of equal terms, and syncs.
//!
//! A follower that needs entries below the log's start gets a snapshot: the store offers
//! the engine's newest snapshot (its index `A`, the term of the record there, the
//! membership) with a [`Descriptor`] naming the log's start `S` as its data, and keeps a
//! [`Transfer`] that pins `S..A` and the engine snapshot file while the follower pulls
//! them (`engine/raft_snapshot.rs`). After a follower installed a snapshot the store
//! answers as raft-rs expects of a snapshot at `A` (`installed`), though the log also
//! holds the records from `S`.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;

use raft::prelude::{ConfState, Entry, HardState, Snapshot, SnapshotMetadata};
use raft::{GetEntriesContext, RaftState, StorageError};

use super::entry::{entry_bytes, entry_of, index_of, offset_of, record_of, BadEntry};
use super::hard_state::DurableState;
use super::snapshot::Descriptor;
use crate::bugs::{self, Bug};
use crate::limits::{
    BATCH_BYTES_MAX, ENGINE_BATCH_MESSAGES_CEILING, REPLICA_FETCHED_BYTES_MAX,
    REPLICA_SNAPSHOT_TRANSFERS_MAX, REPLICA_TAIL_BYTES_MAX,
};
use crate::log::{AppendError, Log, LogError};
use crate::record::RecordInput;
use crate::storage::Storage;
use crate::types::Offset;

/// Why persisting a Ready failed: the log is poisoned or an entry did not decode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PersistError {
    Log(LogError),
    Append(AppendError),
    Entry(BadEntry),
}

impl std::fmt::Display for PersistError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PersistError::Log(error) => write!(f, "{error}"),
            PersistError::Append(error) => write!(f, "{error:?}"),
            PersistError::Entry(error) => write!(f, "{error}"),
        }
    }
}

/// A read of older entries a leader asked for (to send to a lagging follower).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FetchRequest {
    pub low: u64,
    pub high: u64,
}

/// A snapshot a leader offered a follower, while the follower may pull it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transfer {
    pub to: u64,
    pub index: u64,
    pub term: u64,
    /// The log offset the transfer's records start at: retention keeps it.
    pub start: u64,
    /// Raft ticks since the follower last asked for a chunk.
    pub idle_ticks: u32,
}

pub struct LogStore<S: Storage> {
    log: Rc<Log<S>>,
    durable: RefCell<DurableState>,
    /// Entries from `tail_first` to the last index, in order.
    tail: RefCell<VecDeque<Entry>>,
    tail_first: Cell<u64>,
    tail_bytes: Cell<u64>,
    /// The first index `persist` has not written yet (`u64::MAX`: none pending).
    unpersisted_from: Cell<u64>,
    /// The log must be truncated from this index before the pending entries are written.
    truncate_from: Cell<Option<u64>>,
    /// The highest index applied to the engine; the tail is never trimmed past it.
    applied: Cell<u64>,
    /// Entries read from the log for lagging followers, by index.
    fetched: RefCell<BTreeMap<u64, Entry>>,
    fetched_bytes: Cell<u64>,
    fetch_requests: RefCell<Vec<(FetchRequest, GetEntriesContext)>>,
    /// The engine's newest snapshot (its applied offset, which is its Raft index): what
    /// a snapshot for a lagging follower is made of (0: none).
    snapshot_point: Cell<u64>,
    /// The group's configuration as of `snapshot_point`, when known (taken or installed
    /// by this process); `None` after a restart.
    snapshot_conf: RefCell<Option<ConfState>>,
    /// A follower needs a snapshot and the newest one's configuration is unknown or
    /// predates the follower: the engine's Ready loop takes a fresh one.
    fresh_snapshot_wanted: Cell<bool>,
    /// Snapshot transfers in progress, at most `REPLICA_SNAPSHOT_TRANSFERS_MAX`.
    transfers: RefCell<Vec<Transfer>>,
    /// The (index, term) of the snapshot this replica installed since it opened: raft-rs
    /// sees nothing before it.
    installed: Cell<(u64, u64)>,
}

impl<S: Storage> LogStore<S> {
    /// A store over `log` with the loaded durable state, the engine applied up to
    /// `applied`, and `tail` holding every entry after `applied` (read by the caller).
    pub fn new(log: Rc<Log<S>>, durable: DurableState, applied: u64, tail: Vec<Entry>) -> Self {
        let tail_first = tail.first().map_or(applied + 1, |e| e.index);
        let tail_bytes = tail.iter().map(entry_bytes).sum();
        LogStore {
            log,
            durable: RefCell::new(durable),
            tail: RefCell::new(tail.into()),
            tail_first: Cell::new(tail_first),
            tail_bytes: Cell::new(tail_bytes),
            unpersisted_from: Cell::new(u64::MAX),
            truncate_from: Cell::new(None),
            applied: Cell::new(applied),
            fetched: RefCell::new(BTreeMap::new()),
            fetched_bytes: Cell::new(0),
            fetch_requests: RefCell::new(Vec::new()),
            snapshot_point: Cell::new(0),
            snapshot_conf: RefCell::new(None),
            fresh_snapshot_wanted: Cell::new(false),
            transfers: RefCell::new(Vec::new()),
            installed: Cell::new((0, 0)),
        }
    }

    /// Records the engine's newest snapshot, which later snapshot transfers offer.
    /// The engine's newest snapshot is at `index`, with the configuration as of it when
    /// known.
    pub fn set_snapshot_point(&self, index: u64, conf: Option<ConfState>) {
        self.snapshot_point.set(index);
        self.snapshot_conf.replace(conf);
    }

    /// Whether a follower needed a snapshot this replica could not offer (its newest
    /// engine snapshot's configuration is unknown); clears the request.
    pub fn take_fresh_snapshot_wanted(&self) -> bool {
        self.fresh_snapshot_wanted.replace(false)
    }

    /// The transfers in progress.
    pub fn transfers(&self) -> Vec<Transfer> {
        self.transfers.borrow().clone()
    }

    /// Replaces the transfers in progress (the engine's tick expires them).
    pub fn set_transfers(&self, transfers: Vec<Transfer>) {
        assert!(transfers.len() <= REPLICA_SNAPSHOT_TRANSFERS_MAX);
        self.transfers.replace(transfers);
    }

    /// The lowest log offset a transfer in progress still needs.
    pub fn transfer_pin(&self) -> Option<u64> {
        self.transfers.borrow().iter().map(|t| t.start).min()
    }

    /// Forgets the log before a snapshot raft-rs just restored: from now on the store
    /// answers as a log compacted at `index` (of `term`) whose tail follows it, until the
    /// caller has replaced the log on disk by the snapshot's.
    pub fn reset_for_snapshot(&self, index: u64, term: u64) {
        assert!(index > 0, "a snapshot is at a real index");
        self.tail.borrow_mut().clear();
        self.tail_first.set(index + 1);
        self.tail_bytes.set(0);
        self.unpersisted_from.set(u64::MAX);
        self.truncate_from.set(None);
        self.applied.set(index);
        self.fetched.borrow_mut().clear();
        self.fetched_bytes.set(0);
        self.fetch_requests.borrow_mut().clear();
        self.installed.set((index, term));
    }

    pub fn log(&self) -> &Rc<Log<S>> {
        &self.log
    }

    pub fn durable(&self) -> DurableState {
        self.durable.borrow().clone()
    }

    pub fn set_hard_state(&self, hard: &HardState) {
        self.durable.borrow_mut().hard = hard.clone();
    }

    pub fn set_commit(&self, commit: u64) {
        self.durable.borrow_mut().hard.commit = commit;
    }

    pub fn set_conf_state(&self, conf: ConfState) {
        self.durable.borrow_mut().conf = conf;
    }

    /// The index and term of the entry just before the first one the store serves.
    fn compaction_point(&self) -> (u64, u64) {
        let start = self.log.start_offset();
        let stored = if start.0 == 0 {
            (0, 0)
        } else {
            // The oldest stored record stands for everything compacted before it.
            (index_of(start), self.log.term_at(start).unwrap_or(0))
        };
        // An installed snapshot is the compaction point until retention passes it.
        stored.max(self.installed.get())
    }

    fn last(&self) -> u64 {
        let last = match self.tail.borrow().back() {
            Some(entry) => entry.index,
            None => self.log.next_offset().0,
        };
        last.max(self.installed.get().0)
    }

    /// The snapshot raft-rs asks for to send to `to`: the engine's newest snapshot at
    /// `A` with the log's records from its start, as a new or refreshed [`Transfer`].
    fn offer_snapshot(&self, request_index: u64, to: u64) -> Option<Snapshot> {
        let index = self.snapshot_point.get();
        if index == 0 || index < request_index {
            return None;
        }
        // The configuration as of the snapshot must be known and hold the follower
        // (raft-rs refuses a snapshot whose configuration lacks it: one taken before it
        // joined); otherwise the engine takes a fresh snapshot and raft-rs asks again.
        let conf = self.snapshot_conf.borrow().clone().filter(|conf| {
            [
                &conf.voters,
                &conf.learners,
                &conf.voters_outgoing,
                &conf.learners_next,
            ]
            .iter()
            .any(|ids| ids.contains(&to))
        });
        let Some(conf) = conf else {
            self.fresh_snapshot_wanted.set(true);
            return None;
        };
        let term = self.log.term_at(offset_of(index))?;
        let start = self.log.start_offset().0;
        if start >= index {
            return None;
        }
        let mut transfers = self.transfers.borrow_mut();
        let transfer = Transfer {
            to,
            index,
            term,
            start,
            idle_ticks: 0,
        };
        match transfers.iter().position(|t| t.to == to) {
            // A new offer replaces the old one: the follower starts over with it.
            Some(existing) => transfers[existing] = transfer,
            None if transfers.len() < REPLICA_SNAPSHOT_TRANSFERS_MAX => transfers.push(transfer),
            None => return None,
        }
        let mut metadata = SnapshotMetadata {
            index,
            term,
            ..SnapshotMetadata::default()
        };
        metadata.set_conf_state(conf);
        let mut snapshot = Snapshot::default();
        snapshot.set_metadata(metadata);
        snapshot.data = Descriptor { start, index }.encode().into();
        Some(snapshot)
    }

    /// Makes raft-rs's new entries visible at once; `persist` writes them.
    pub fn stage(&self, entries: Vec<Entry>) {
        let Some(first) = entries.first().map(|e| e.index) else {
            return;
        };
        let mut tail = self.tail.borrow_mut();
        if first <= self.log.next_offset().0 {
            // They replace a suffix already handed to the log.
            let start = if bugs::enabled(Bug::RaftFollowerTruncatesCommitted) && first > 1 {
                first - 1
            } else {
                first
            };
            let from = self.truncate_from.get().map_or(start, |f| f.min(start));
            self.truncate_from.set(Some(from));
        }
        if first < self.tail_first.get() {
            tail.clear();
            self.tail_first.set(first);
            self.tail_bytes.set(0);
        } else {
            let keep = ((first - self.tail_first.get()) as usize).min(tail.len());
            for dropped in tail.drain(keep..) {
                self.tail_bytes
                    .set(self.tail_bytes.get() - entry_bytes(&dropped));
            }
        }
        for entry in entries {
            self.tail_bytes
                .set(self.tail_bytes.get() + entry_bytes(&entry));
            tail.push_back(entry);
        }
        self.unpersisted_from
            .set(self.unpersisted_from.get().min(first));
        // Fetched entries at or past `first` may be stale now.
        let mut fetched = self.fetched.borrow_mut();
        for (_, dropped) in fetched.split_off(&first) {
            self.fetched_bytes
                .set(self.fetched_bytes.get() - entry_bytes(&dropped));
        }
    }

    /// Writes the staged entries to the log (after any truncation they need) and syncs.
    /// Safe to run again after it was dropped at an `.await`: it truncates only while a
    /// truncation is still pending, appends only the entries the log does not hold yet,
    /// and forgets the pending work only once it is durable.
    pub async fn persist(&self) -> Result<(), PersistError> {
        if let Some(from) = self.truncate_from.get() {
            self.log
                .truncate_from(offset_of(from))
                .await
                .map_err(PersistError::Log)?;
            self.truncate_from.set(None);
        }
        let from = self.unpersisted_from.get();
        if from == u64::MAX {
            return Ok(());
        }
        // Entries up to the log's next offset were handed to it by an earlier attempt.
        let from = from.max(index_of(self.log.next_offset()));
        let pending: Vec<Entry> = {
            let tail = self.tail.borrow();
            let skip = from.saturating_sub(self.tail_first.get()) as usize;
            tail.iter().skip(skip).cloned().collect()
        };
        for run in pending.chunk_by(|a, b| a.term == b.term) {
            let mut start = 0;
            while start < run.len() {
                let end = chunk_end(run, start);
                self.append_chunk(&run[start..end]).await?;
                start = end;
            }
        }
        let next = self.log.next_offset();
        self.log.sync(next).await.map_err(PersistError::Log)?;
        self.unpersisted_from.set(u64::MAX);
        self.trim();
        Ok(())
    }

    async fn append_chunk(&self, chunk: &[Entry]) -> Result<(), PersistError> {
        // Under `Bug::RaftFollowerTruncatesCommitted` the log runs one record short.
        debug_assert!(
            offset_of(chunk[0].index) == self.log.next_offset()
                || bugs::enabled(Bug::RaftFollowerTruncatesCommitted)
        );
        let mut scratch: Vec<Vec<u8>> = vec![Vec::new(); chunk.len()];
        let mut records: Vec<RecordInput<'_>> = Vec::with_capacity(chunk.len());
        for (entry, scratch) in chunk.iter().zip(scratch.iter_mut()) {
            records.push(record_of(entry, scratch).map_err(PersistError::Entry)?);
        }
        let term = chunk[0].term;
        match self.log.append_with_term(term, &records) {
            Ok(_) => Ok(()),
            Err(AppendError::Busy { .. }) => {
                // Staging is full: make room by syncing what is staged, then retry once.
                let next = self.log.next_offset();
                self.log.sync(next).await.map_err(PersistError::Log)?;
                self.log
                    .append_with_term(term, &records)
                    .map(|_| ())
                    .map_err(PersistError::Append)
            }
            Err(error) => Err(PersistError::Append(error)),
        }
    }

    /// Records that the engine applied everything up to `index`.
    pub fn set_applied(&self, index: u64) {
        self.applied.set(index);
        self.trim();
    }

    /// Drops tail entries that are persisted, applied and beyond the recent window. The
    /// window is for followers a little behind: a group of this replica alone (one voter,
    /// no learner) has none, and keeps only the entries it must.
    fn trim(&self) {
        let window = if self.alone() {
            0
        } else {
            REPLICA_TAIL_BYTES_MAX
        };
        let mut tail = self.tail.borrow_mut();
        let keep_after = self
            .applied
            .get()
            .min(self.unpersisted_from.get().saturating_sub(1))
            .min(self.log.durable_offset().0);
        while self.tail_bytes.get() > window {
            match tail.front() {
                Some(entry) if entry.index <= keep_after => {
                    self.tail_bytes
                        .set(self.tail_bytes.get() - entry_bytes(entry));
                    tail.pop_front();
                    self.tail_first.set(self.tail_first.get() + 1);
                }
                _ => break,
            }
        }
    }

    /// Whether the group's configuration has no replica but one voter: nobody reads
    /// this replica's tail to catch up.
    fn alone(&self) -> bool {
        let durable = self.durable.borrow();
        let conf = &durable.conf;
        conf.voters.len() <= 1
            && conf.learners.is_empty()
            && conf.voters_outgoing.is_empty()
            && conf.learners_next.is_empty()
    }

    /// The reads raft-rs asked for since the last call.
    pub fn take_fetch_requests(&self) -> Vec<(FetchRequest, GetEntriesContext)> {
        std::mem::take(&mut self.fetch_requests.borrow_mut())
    }

    /// Reads `[low, high)` (bounded) from the log into `fetched`.
    pub async fn fetch(&self, request: FetchRequest) -> Result<(), String> {
        let mut next = request.low;
        while next < request.high.min(self.tail_first.get()) {
            let records = self
                .log
                .read(offset_of(next), 1 << 20)
                .await
                .map_err(|error| error.to_string())?;
            if records.is_empty() {
                return Err(format!("no record at raft index {next}"));
            }
            let mut fetched = self.fetched.borrow_mut();
            for record in records {
                let index = index_of(record.offset);
                if index >= request.high || index >= self.tail_first.get() {
                    break;
                }
                let term = self
                    .log
                    .term_at(record.offset)
                    .ok_or_else(|| format!("no term for raft index {index}"))?;
                let entry = entry_of(&record, term);
                self.fetched_bytes
                    .set(self.fetched_bytes.get() + entry_bytes(&entry));
                fetched.insert(index, entry);
                next = index + 1;
            }
            while self.fetched_bytes.get() > REPLICA_FETCHED_BYTES_MAX && fetched.len() > 1 {
                let (_, dropped) = fetched.pop_first().expect("not empty");
                self.fetched_bytes
                    .set(self.fetched_bytes.get() - entry_bytes(&dropped));
            }
        }
        Ok(())
    }

    fn in_tail(&self, low: u64, high: u64, max_size: Option<u64>) -> Vec<Entry> {
        let tail = self.tail.borrow();
        let skip = (low - self.tail_first.get()) as usize;
        let take = (high - low) as usize;
        let mut out: Vec<Entry> = tail.iter().skip(skip).take(take).cloned().collect();
        raft::util::limit_size(&mut out, max_size);
        out
    }

    fn in_fetched(&self, low: u64, high: u64, max_size: Option<u64>) -> Option<Vec<Entry>> {
        let fetched = self.fetched.borrow();
        let mut out = Vec::new();
        for index in low..high {
            match fetched.get(&index) {
                Some(entry) => out.push(entry.clone()),
                None if out.is_empty() => return None,
                None => break,
            }
        }
        raft::util::limit_size(&mut out, max_size);
        Some(out)
    }
}

/// The store as raft-rs owns it: shared with the engine, which persists and trims it
/// while raft-rs keeps reading it.
pub struct SharedStore<S: Storage>(pub Rc<LogStore<S>>);

impl<S: Storage> raft::Storage for SharedStore<S> {
    fn initial_state(&self) -> raft::Result<RaftState> {
        self.0.initial_state()
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        self.0.entries(low, high, max_size, context)
    }

    fn term(&self, index: u64) -> raft::Result<u64> {
        self.0.term(index)
    }

    fn first_index(&self) -> raft::Result<u64> {
        self.0.first_index()
    }

    fn last_index(&self) -> raft::Result<u64> {
        self.0.last_index()
    }

    fn snapshot(&self, request_index: u64, to: u64) -> raft::Result<Snapshot> {
        self.0.snapshot(request_index, to)
    }
}

impl<S: Storage> raft::Storage for LogStore<S> {
    fn initial_state(&self) -> raft::Result<RaftState> {
        let durable = self.durable.borrow();
        Ok(RaftState::new(durable.hard.clone(), durable.conf.clone()))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        let max_size = max_size.into();
        let (compacted, _) = self.compaction_point();
        if low <= compacted {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if high > self.last() + 1 {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        if low >= self.tail_first.get() {
            return Ok(self.in_tail(low, high, max_size));
        }
        if let Some(found) = self.in_fetched(low, high, max_size) {
            return Ok(found);
        }
        if context.can_async() {
            let request = FetchRequest { low, high };
            let mut requests = self.fetch_requests.borrow_mut();
            if requests.len() < FETCH_REQUESTS_MAX {
                requests.push((request, context));
            }
            return Err(raft::Error::Store(StorageError::LogTemporarilyUnavailable));
        }
        Err(raft::Error::Store(StorageError::Unavailable))
    }

    fn term(&self, index: u64) -> raft::Result<u64> {
        let (compacted, compacted_term) = self.compaction_point();
        if index == compacted {
            return Ok(compacted_term);
        }
        if index < compacted {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if index > self.last() {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        if index >= self.tail_first.get() {
            let tail = self.tail.borrow();
            let entry = &tail[(index - self.tail_first.get()) as usize];
            return Ok(entry.term);
        }
        self.log
            .term_at(Offset(index - 1))
            .ok_or(raft::Error::Store(StorageError::Unavailable))
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.compaction_point().0 + 1)
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.last())
    }

    fn snapshot(&self, request_index: u64, to: u64) -> raft::Result<Snapshot> {
        self.offer_snapshot(request_index, to)
            .ok_or(raft::Error::Store(
                StorageError::SnapshotTemporarilyUnavailable,
            ))
    }
}

/// The end of the chunk of `run` starting at `start` that fits one log batch (at least
/// one entry).
fn chunk_end(run: &[Entry], start: usize) -> usize {
    let budget = u64::from(BATCH_BYTES_MAX) / 2;
    let mut bytes = 0;
    let mut end = start;
    while end < run.len() && end - start < ENGINE_BATCH_MESSAGES_CEILING as usize {
        bytes += entry_bytes(&run[end]);
        if end > start && bytes > budget {
            break;
        }
        end += 1;
    }
    end
}

/// The most outstanding log reads for lagging followers (one per follower suffices).
const FETCH_REQUESTS_MAX: usize = 16;

#[cfg(test)]
mod tests {
    use raft::Storage as _;

    use super::*;
    use crate::conformance::test_config;
    use crate::replica::entry::encode_data;
    use crate::sim_disk::{block_on, SimDisk};

    /// A store over a fresh log whose group has `voters` and `learners`, holding entries
    /// 1..=20 of 1 KiB each, persisted and applied.
    fn applied_store(voters: Vec<u64>, learners: Vec<u64>) -> LogStore<SimDisk> {
        let log = block_on(Log::open(SimDisk::new(3), test_config())).expect("open");
        let durable = DurableState {
            conf: ConfState {
                voters,
                learners,
                ..ConfState::default()
            },
            ..DurableState::default()
        };
        let store = LogStore::new(Rc::new(log), durable, 0, Vec::new());
        let entries: Vec<Entry> = (1..=20)
            .map(|index| Entry {
                index,
                term: 1,
                data: encode_data(5, b"a", &[7; 1024]),
                ..Entry::default()
            })
            .collect();
        store.stage(entries);
        block_on(store.persist()).expect("persist");
        store.set_applied(20);
        store
    }

    /// Goal: a replica whose group has no other member keeps no applied entry in memory
    /// (nobody reads its tail to catch up); with a follower or a learner it keeps the
    /// recent ones. Either way every entry stays readable: term from the log. Method: the
    /// same 20 applied entries in three configurations; a synchronous read of the first.
    #[test]
    fn a_replica_alone_keeps_no_applied_tail() {
        let read_first =
            |store: &LogStore<SimDisk>| store.entries(1, 2, None, GetEntriesContext::empty(false));
        let alone = applied_store(vec![1], Vec::new());
        assert_eq!(alone.tail.borrow().len(), 0);
        assert_eq!(alone.tail_bytes.get(), 0);
        assert!(read_first(&alone).is_err(), "not in memory");
        assert_eq!(alone.term(1), Ok(1));
        assert_eq!(alone.last(), 20);
        for (voters, learners) in [(vec![1, 2, 3], vec![]), (vec![1], vec![2])] {
            let store = applied_store(voters, learners);
            assert_eq!(store.tail.borrow().len(), 20);
            assert_eq!(read_first(&store).map(|e| e.len()), Ok(1));
        }
    }
}
