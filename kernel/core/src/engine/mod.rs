//! The queue engine: the complete delivery semantics over one segment log.
//!
//! Every durable change is a command record in the log ([`command`]); the state
//! ([`state`]) is the fold of those records in log order, applied only once they are
//! durable, so a send or ack is answered after its fsync and a replay (or a replica)
//! reaches the same state. Snapshots ([`snapshot`]) bound replay time and let the log drop
//! old segments. Leases, the dispatch cursor and the ready set are leader-only: after a
//! restart in-flight messages become visible again early (allowed redelivery).
//!
//! The engine owns no clock and no thread: every call takes `now` in milliseconds, and
//! the driver calls [`Engine::tick`] by [`Engine::next_deadline_ms`]. Single-threaded
//! (one engine per partition per shard); concurrent calls interleave at `.await`s and
//! share group commits.

pub mod codec;
pub mod command;
pub mod config;
mod consume;
pub mod dispatch;
pub mod group;
pub mod membership;
pub mod metadata;
mod moves;
pub mod offsets;
pub mod probe;
mod raft_snapshot;
pub mod range_set;
pub mod read_at;
mod replication;
mod send;
pub use send::validate_batch;
pub mod snapshot;
pub mod state;
mod tenants;
pub mod timers;
pub mod trace;
pub mod transactions;
pub mod types;

pub use config::{EngineConfig, EngineLimits, EngineOpenError, QueueInfo, ReceiveRequest};

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::task::{Poll, Waker};

use std::rc::Rc;

use raft::RawNode;

use crate::limits::{BLOCK_BYTES, ENGINE_BATCH_MESSAGES_CEILING, SNAPSHOT_WRITE_CHUNK_BYTES};
use crate::log::{AppendError, Log, RetentionPolicy};
use crate::record::{align_up, EncodeError};
use crate::replica::hard_state::{DurableState, HardStateFile};
use crate::replica::store::{LogStore, SharedStore};
use crate::replica::{discard_logger, ReplicaConfig};
use crate::storage::{IoError, Storage, StorageFile};
use crate::types::Offset;
use command::Command;
use state::State;
use types::{
    EngineError, GroupId, GroupStart, GroupStats, MessageId, QueueConfig, QueueId, StorageFault,
    TransactionCheck,
};

struct Unapplied {
    offset: u64,
    /// The Raft term it was proposed in.
    term: u64,
    timestamp_ms: u64,
    command: Command,
    /// A send's body and user attributes' size (`state::message_bytes`).
    message_bytes: u32,
}

/// One command to log: the command, and for sends the body and user attributes.
struct Entry {
    command: Command,
    body: Vec<u8>,
    user_attributes: Vec<u8>,
}

impl Entry {
    fn plain(command: Command) -> Entry {
        Entry {
            command,
            body: Vec::new(),
            user_attributes: Vec::new(),
        }
    }
}

pub struct Engine<S: Storage + Clone> {
    storage: S,
    log: Rc<Log<S>>,
    config: EngineConfig,
    state: RefCell<State>,
    unapplied: RefCell<VecDeque<Unapplied>>,
    applied_offset: Cell<u64>,
    snapshot_offset: Cell<u64>,
    /// Bytes of the last snapshot this process encoded (0 before the first).
    snapshot_bytes: Cell<usize>,
    applied_since_snapshot: Cell<u64>,
    /// When `tick` last applied log retention (it walks every queue for the oldest
    /// offset still needed, so it runs at most every `LOG_RETENTION_PASS_MS`).
    retention_pass_ms: Cell<Option<u64>>,
    pending_names: RefCell<HashSet<(String, String)>>,
    pending_groups: RefCell<HashSet<(QueueId, String)>>,
    /// Dedup ids of sends on their way to a majority: the id each will have, and the
    /// proposal a duplicate must see committed before it may answer.
    pending_dedup: RefCell<HashMap<(QueueId, u64), (MessageId, replication::Proposal)>>,
    changes: Cell<u64>,
    waiters: RefCell<Vec<Waker>>,
    /// Checks of open transactions this leader logged and the producers are to be asked
    /// about (`take_transaction_checks`), at most `TRANSACTION_CHECKS_WAITING_MAX`.
    transaction_checks: RefCell<VecDeque<TransactionCheck>>,
    /// Deliveries since the tick last logged them (`Command::Delivered`, for message
    /// traces), per (queue, group, dead-letter lane); at most
    /// `TRACE_DELIVERIES_WAITING_MAX` positions, past which deliveries go unrecorded.
    delivered: RefCell<trace::DeliveredSince>,
    replica: replication::Replica<S>,
    raft_snapshots: raft_snapshot::RaftSnapshots,
}

impl<S: Storage + Clone> Engine<S> {
    /// Opens the engine at time `now` as a group of one (the embedded single-node
    /// default): see [`Engine::open_replica`]. It leads at once, so it serves when this
    /// returns.
    pub async fn open(
        storage: S,
        config: EngineConfig,
        now: u64,
    ) -> Result<Engine<S>, EngineOpenError> {
        Engine::open_replica(storage, config, ReplicaConfig::single(), now).await
    }

    /// Opens the engine at time `now` as replica `replica.id` of its partition's Raft
    /// group: newest valid snapshot, replay of the committed log after it, the Raft state
    /// file, then back-off waits and retention as of `now`. A group of one elects itself
    /// and proposes its `Boot` (so handles from earlier boots are stale) before this
    /// returns; a member of a larger group waits for an election (driven by the host's
    /// `raft_tick`s and messages).
    pub async fn open_replica(
        storage: S,
        config: EngineConfig,
        replica: ReplicaConfig,
        now: u64,
    ) -> Result<Engine<S>, EngineOpenError> {
        config.limits.validate().map_err(EngineOpenError::Config)?;
        // A Raft snapshot install a crash cut short is finished (or dropped) first.
        crate::replica::install::recover(&storage, config.log)
            .await
            .map_err(EngineOpenError::Replica)?;
        let (mut state, snapshot_offset) = load_snapshot(&storage).await;
        let log = Log::open(storage.clone(), config.log)
            .await
            .map_err(EngineOpenError::Log)?;
        if log.start_offset().0 > snapshot_offset || log.durable_offset().0 < snapshot_offset {
            return Err(EngineOpenError::MissingRecords {
                snapshot_offset,
                log_start: log.start_offset().0,
            });
        }
        let (hard_file, loaded) = HardStateFile::open(&storage)
            .await
            .map_err(|error| EngineOpenError::Replica(error.to_string()))?;
        let saved = loaded.unwrap_or_else(|| initial_durable(&replica));
        let mut durable = saved.clone();
        // Raft index i is offset i - 1: the commit index is also the end offset of the
        // committed prefix. A snapshot covers only committed records.
        let commit = durable
            .hard
            .commit
            .max(snapshot_offset)
            .min(log.durable_offset().0);
        durable.hard.commit = commit;
        replay(&log, &mut state, snapshot_offset, commit).await?;
        state.reset_leader_state();
        let tail = read_entries(&log, commit).await?;
        let log = Rc::new(log);
        let store = Rc::new(LogStore::new(log.clone(), durable, commit, tail));
        // The configuration as of that snapshot is not known after a restart (the state
        // file holds a later one): a Raft snapshot is offered from the next engine snapshot.
        store.set_snapshot_point(snapshot_offset, None);
        let node = RawNode::new(
            &replica.raft_config(commit),
            SharedStore(store.clone()),
            &discard_logger(),
        )
        .map_err(|error| EngineOpenError::Replica(error.to_string()))?;
        let engine = Engine {
            storage,
            log,
            config,
            state: RefCell::new(state),
            unapplied: RefCell::new(VecDeque::new()),
            applied_offset: Cell::new(commit),
            snapshot_offset: Cell::new(snapshot_offset),
            snapshot_bytes: Cell::new(0),
            applied_since_snapshot: Cell::new(commit - snapshot_offset),
            retention_pass_ms: Cell::new(None),
            pending_names: RefCell::new(HashSet::new()),
            pending_groups: RefCell::new(HashSet::new()),
            pending_dedup: RefCell::new(HashMap::new()),
            changes: Cell::new(0),
            waiters: RefCell::new(Vec::new()),
            transaction_checks: RefCell::new(VecDeque::new()),
            delivered: RefCell::new(trace::DeliveredSince::default()),
            replica: replication::Replica::new(replica.id, node, store, hard_file, saved),
            raft_snapshots: raft_snapshot::RaftSnapshots::default(),
        };
        if engine.replica.alone() {
            engine.lead_alone().await.map_err(EngineOpenError::Boot)?;
        }
        {
            // Time-driven changes that are not logged: back-off waits that ended, as of
            // `now` (retention is logged: the leader's first tick cuts).
            let mut state = engine.state.borrow_mut();
            state.fire_waits(now);
        }
        Ok(engine)
    }

    /// A group of one elects itself and applies its `Boot` (bounded: each round of the
    /// Ready loop either makes progress or the loop reports why not).
    async fn lead_alone(&self) -> Result<(), EngineError> {
        let _ = self.replica.node.borrow_mut().campaign();
        for _ in 0..LEAD_ALONE_ROUNDS_MAX {
            self.drive().await;
            if let Some(error) = self.replica.failed.borrow().clone() {
                return Err(error);
            }
            if self.replica.serving.get() {
                return Ok(());
            }
        }
        Err(EngineError::NotLeader { leader: None })
    }

    pub fn log(&self) -> &Log<S> {
        &self.log
    }

    pub fn limits(&self) -> &EngineLimits {
        &self.config.limits
    }

    // ------------------------------------------------------------------ metadata

    pub async fn create_queue(
        &self,
        tenant: &str,
        name: &str,
        config: QueueConfig,
        now: u64,
    ) -> Result<QueueId, EngineError> {
        self.create_queue_with_meta(tenant, name, config, Vec::new(), now)
            .await
    }

    /// Creates a queue that carries `meta`, opaque adapter fields returned by
    /// [`Engine::queue_info`] (at most `QUEUE_META_BYTES_MAX` bytes).
    pub async fn create_queue_with_meta(
        &self,
        tenant: &str,
        name: &str,
        config: QueueConfig,
        meta: Vec<u8>,
        now: u64,
    ) -> Result<QueueId, EngineError> {
        self.create_queue_with_id(None, tenant, name, config, meta, now)
            .await
    }

    /// [`Engine::create_queue_with_meta`] under a given id (`Some`) instead of the next
    /// of this engine's sequence: how a node's later partitions take partition 0's ids
    /// (`metadata`), so ids agree even when a partition's sequence ran ahead (a create
    /// that failed there but left its record). The id must not name a queue this engine
    /// holds; the sequence continues after it.
    pub async fn create_queue_with_id(
        &self,
        id: Option<QueueId>,
        tenant: &str,
        name: &str,
        config: QueueConfig,
        meta: Vec<u8>,
        now: u64,
    ) -> Result<QueueId, EngineError> {
        if meta.len() > crate::limits::QUEUE_META_BYTES_MAX {
            return Err(EngineError::InvalidConfig("meta"));
        }
        validate_name(tenant)?;
        validate_name(name)?;
        let limits = &self.config.limits;
        if !(limits.retention_ms_min..=limits.retention_ms_max).contains(&config.retention_ms) {
            return Err(EngineError::InvalidConfig("retention_ms"));
        }
        if config.max_consume_count == Some(0) {
            return Err(EngineError::InvalidConfig("max_consume_count"));
        }
        let key = (tenant.to_string(), name.to_string());
        let queue = {
            let mut state = self.state.borrow_mut();
            let named = state.queue_by_name(tenant, name).is_some();
            if named || self.pending_names.borrow().contains(&key) {
                return Err(EngineError::QueueExists);
            }
            let owned = state.queue_count_of(tenant) + self.pending_names.borrow().len();
            if owned >= limits.queues_per_tenant_max as usize {
                return Err(EngineError::TooManyQueues {
                    limit: limits.queues_per_tenant_max,
                });
            }
            let queue = id.unwrap_or(QueueId(state.next_queue_id));
            if state.queues.contains_key(&queue) {
                return Err(EngineError::QueueExists);
            }
            state.next_queue_id = state.next_queue_id.max(queue.0 + 1);
            queue
        };
        self.pending_names.borrow_mut().insert(key.clone());
        let command = Command::CreateQueue {
            queue,
            tenant: tenant.into(),
            name: name.into(),
            config,
            meta,
        };
        let result = self.commit(vec![Entry::plain(command)], now).await;
        self.pending_names.borrow_mut().remove(&key);
        result.map(|_| queue)
    }

    /// Replaces the queue's opaque adapter fields (`meta`, at most `QUEUE_META_BYTES_MAX`
    /// bytes) durably: what [`Engine::queue_info`] answers from then on.
    pub async fn set_queue_meta(
        &self,
        queue: QueueId,
        meta: Vec<u8>,
        now: u64,
    ) -> Result<(), EngineError> {
        if meta.len() > crate::limits::QUEUE_META_BYTES_MAX {
            return Err(EngineError::InvalidConfig("meta"));
        }
        self.state.borrow().queue(queue)?;
        let command = Command::SetQueueMeta { queue, meta };
        self.commit(vec![Entry::plain(command)], now).await
    }

    /// Sets the queue's dead-letter policy durably: after `max_consume_count` failures
    /// (`None`: never) a message leaves the group's main lane, for the group's dead
    /// letters or, with `target`, for that queue. The target belongs to the same tenant,
    /// is another queue, and spreads over at least the partitions this one does (a dead
    /// letter moves within its partition). Dead letters already held stay where they are.
    pub async fn set_dead_letter(
        &self,
        queue: QueueId,
        max_consume_count: Option<u16>,
        target: Option<QueueId>,
        now: u64,
    ) -> Result<(), EngineError> {
        if max_consume_count == Some(0) {
            return Err(EngineError::InvalidConfig("max_consume_count"));
        }
        {
            let state = self.state.borrow();
            let source = state.queue(queue)?;
            if let Some(target) = target {
                // A missing target is that, whatever else is wrong.
                let to = state.queue(target)?;
                if max_consume_count.is_none() || !placeable(source, to) {
                    return Err(EngineError::InvalidConfig("dead_letter_target"));
                }
            }
        }
        let command = Command::SetDeadLetter {
            queue,
            max_consume_count,
            target,
        };
        self.commit(vec![Entry::plain(command)], now).await
    }

    /// Spreads the queue over `partitions` of the node's partitions from now on
    /// (`QueueConfig::partitions`, a Kafka CreatePartitions): more than it has, on a
    /// NORMAL queue that does not already use them all (0). Messages stay where they are;
    /// a FIFO queue keeps its count, since its message groups map onto its partitions.
    pub async fn set_partitions(
        &self,
        queue: QueueId,
        partitions: u16,
        now: u64,
    ) -> Result<(), EngineError> {
        let config = self.state.borrow().queue(queue)?.config;
        let grows = config.partitions != 0 && partitions > config.partitions;
        if !grows || config.mode != types::QueueMode::Normal {
            return Err(EngineError::InvalidConfig("partitions"));
        }
        let command = Command::SetPartitions { queue, partitions };
        self.commit(vec![Entry::plain(command)], now).await
    }

    /// Starts (or restarts) a move task of the group on this partition: its messages go
    /// to queue `to` (another queue of the same tenant, spreading over at least the
    /// partitions this one does), at most `per_second` a second (0: a batch every pass),
    /// until the group's backlog at the start has moved (`moves`).
    pub async fn start_move(
        &self,
        (queue, group): (QueueId, GroupId),
        to: QueueId,
        per_second: u32,
        now: u64,
    ) -> Result<(), EngineError> {
        {
            let state = self.state.borrow();
            let source = state.queue(queue)?;
            if !source.groups.contains_key(&group) {
                return Err(EngineError::GroupNotFound);
            }
            if !placeable(source, state.queue(to)?) {
                return Err(EngineError::InvalidConfig("move target"));
            }
        }
        let command = Command::StartMove {
            queue,
            group,
            to,
            per_second,
        };
        self.commit(vec![Entry::plain(command)], now).await
    }

    /// Stops the group's move task on this partition, if one runs.
    pub async fn stop_move(
        &self,
        queue: QueueId,
        group: GroupId,
        now: u64,
    ) -> Result<(), EngineError> {
        if !self
            .state
            .borrow()
            .queue(queue)?
            .groups
            .contains_key(&group)
        {
            return Err(EngineError::GroupNotFound);
        }
        let command = Command::StopMove { queue, group };
        self.commit(vec![Entry::plain(command)], now).await
    }

    pub async fn delete_queue(&self, queue: QueueId, now: u64) -> Result<(), EngineError> {
        self.state.borrow().queue(queue)?;
        self.commit(vec![Entry::plain(Command::DeleteQueue { queue })], now)
            .await
    }

    pub async fn create_group(
        &self,
        queue: QueueId,
        name: &str,
        start: GroupStart,
        now: u64,
    ) -> Result<GroupId, EngineError> {
        self.create_group_with_id(None, queue, name, start, now)
            .await
    }

    /// [`Engine::create_group`] under a given id (`Some`), as
    /// [`Engine::create_queue_with_id`]: the id must not name a group of any queue here.
    pub async fn create_group_with_id(
        &self,
        id: Option<GroupId>,
        queue: QueueId,
        name: &str,
        start: GroupStart,
        now: u64,
    ) -> Result<GroupId, EngineError> {
        validate_name(name)?;
        let key = (queue, name.to_string());
        let group = {
            let mut state = self.state.borrow_mut();
            let q = state.queue(queue)?;
            if q.groups.values().any(|g| g.name == name)
                || self.pending_groups.borrow().contains(&key)
            {
                return Err(EngineError::GroupExists);
            }
            let limit = self.config.limits.groups_per_queue_max;
            if q.groups.len() + self.pending_groups.borrow().len() >= limit as usize {
                return Err(EngineError::TooManyGroups { limit });
            }
            let group = id.unwrap_or(GroupId(state.next_group_id));
            // Every group id in use is below `next_group_id` (applying a create raises it
            // past the id), so only an id below it needs the walk over every queue.
            let in_use = group.0 < state.next_group_id
                && state.queues.values().any(|q| q.groups.contains_key(&group));
            if in_use {
                return Err(EngineError::GroupExists);
            }
            state.next_group_id = state.next_group_id.max(group.0 + 1);
            group
        };
        self.pending_groups.borrow_mut().insert(key.clone());
        let command = Command::CreateGroup {
            queue,
            group,
            name: name.into(),
            start,
        };
        let result = self.commit(vec![Entry::plain(command)], now).await;
        self.pending_groups.borrow_mut().remove(&key);
        result.map(|_| group)
    }

    pub async fn delete_group(
        &self,
        queue: QueueId,
        group: GroupId,
        now: u64,
    ) -> Result<(), EngineError> {
        self.check_group(queue, group)?;
        self.commit(
            vec![Entry::plain(Command::DeleteGroup { queue, group })],
            now,
        )
        .await
    }

    pub fn queue_by_name(&self, tenant: &str, name: &str) -> Option<QueueId> {
        self.state.borrow().queue_by_name(tenant, name)
    }

    pub fn queue_info(&self, queue: QueueId) -> Result<QueueInfo, EngineError> {
        let state = self.state.borrow();
        let q = state.queue(queue)?;
        Ok(QueueInfo {
            id: q.id,
            tenant: q.tenant.to_string(),
            name: q.name.to_string(),
            config: q.config,
            created_ms: q.created_ms,
            meta: q.meta.to_vec(),
            dead_letter_to: q.dead_letter_to,
            sent_total: q.store.get().sent_total,
            stored: q.store.get().messages.len() as u64,
            delayed: q.store.get().delayed.len() as u64,
            groups: q.groups.values().map(|g| (g.id, g.name.clone())).collect(),
        })
    }

    /// The queues whose directory entries changed after applied index `since`, and those
    /// deleted after it; `None` when this engine cannot tell (it started from a snapshot
    /// past `since`, or let go of deletions as old): read every queue then.
    pub fn directory_since(&self, since: u64) -> Option<(Vec<QueueInfo>, Vec<QueueId>)> {
        let (changed, deleted) = self.state.borrow().directory.since(since)?;
        let infos = changed
            .into_iter()
            .map(|queue| self.queue_info(queue).expect("a journal entry is live"))
            .collect();
        Some((infos, deleted))
    }

    /// The applied index of the last change to any queue's directory entry (at least the
    /// index this engine's journal starts from).
    pub fn directory_changed_at(&self) -> u64 {
        self.state.borrow().directory.last_change()
    }

    /// Every queue of every tenant, by id.
    pub fn queue_ids(&self) -> Vec<QueueId> {
        self.state.borrow().queues.keys().copied().collect()
    }

    pub fn queues_of(&self, tenant: &str) -> Vec<QueueId> {
        self.state
            .borrow()
            .queues_of(tenant)
            .map(|q| q.id)
            .collect()
    }

    pub fn group_stats(&self, queue: QueueId, group: GroupId) -> Result<GroupStats, EngineError> {
        self.state.borrow().group_stats(queue, group)
    }

    fn check_group(&self, queue: QueueId, group: GroupId) -> Result<(), EngineError> {
        let state = self.state.borrow();
        let q = state.queue(queue)?;
        q.groups
            .get(&group)
            .map(|_| ())
            .ok_or(EngineError::GroupNotFound)
    }

    // ------------------------------------------------------------------ time

    /// Advances time: ends leases and back-off waits, releases due delayed messages,
    /// applies retention, and takes a snapshot when due.
    pub async fn tick(&self, now: u64) -> Result<(), EngineError> {
        // Only the serving leader decides time-driven changes; replicas apply its records.
        let leads = self.replica.serving.get();
        let (failed, releases, trims, (moves, moves_over)) = {
            let mut state = self.state.borrow_mut();
            state.fire_waits(now);
            if leads {
                let failed = state.expire_leases(now);
                let releases = state.due_releases(now);
                let trims = state.due_trims(now);
                (failed, releases, trims, state.due_moves(now))
            } else {
                state.drop_due_trims(now);
                // Move tasks are the leader's to drive.
                state.move_due_ms = None;
                let none = (Vec::new(), Vec::new());
                (Vec::new(), Vec::new(), Vec::new(), none)
            }
        };
        let mut nacks: BTreeMap<(QueueId, GroupId), Vec<u64>> = BTreeMap::new();
        for lease in &failed {
            nacks
                .entry((lease.queue, lease.group))
                .or_default()
                .push(lease.seq);
        }
        let mut entries: Vec<Entry> = nacks
            .into_iter()
            .map(|((queue, group), seqs)| Entry::plain(Command::Nack { queue, group, seqs }))
            .collect();
        entries.extend(
            releases
                .iter()
                .map(|&(queue, message)| Entry::plain(self.end_of_delay(queue, message, now))),
        );
        entries.extend(
            trims
                .iter()
                .map(|&(queue, below_seq)| Entry::plain(Command::Trim { queue, below_seq })),
        );
        // Only a leader hands messages out; what a deposed one noted is dropped.
        let delivered = self.delivered.borrow_mut().take();
        if leads {
            entries.extend(delivered.into_iter().map(Entry::plain));
        }
        entries.extend(moves.iter().map(|batch| {
            Entry::plain(Command::Move {
                queue: batch.queue,
                group: batch.group,
                to: batch.to,
                seqs: batch.handles.iter().map(|handle| handle.seq).collect(),
            })
        }));
        entries.extend(
            moves_over
                .iter()
                .map(|&(queue, group)| Entry::plain(Command::StopMove { queue, group })),
        );
        self.notify();
        // Bounded: each pass logs up to a ceiling's worth of commands.
        while !entries.is_empty() {
            let rest = entries.split_off(entries.len().min(ENGINE_BATCH_MESSAGES_CEILING as usize));
            let checks: Vec<(QueueId, MessageId)> = entries
                .iter()
                .filter_map(|entry| match entry.command {
                    Command::Check { queue, message, .. } => Some((queue, message)),
                    _ => None,
                })
                .collect();
            if let Err(error) = self.commit(entries, now).await {
                // Whatever was not applied is tried again later rather than left held.
                let retry_at = now.saturating_add(TICK_RETRY_MS);
                let mut state = self.state.borrow_mut();
                state.abort_tick(&failed, &releases, &trims, retry_at);
                state.abort_moves(&moves, now);
                return Err(error);
            }
            self.note_checks(&checks);
            entries = rest;
        }
        if self.raft_snapshots.applying.get() {
            // A Raft snapshot is replacing the log and the engine snapshots.
            return Ok(());
        }
        let fresh_wanted = self.replica.store.take_fresh_snapshot_wanted();
        let snapshot_due =
            fresh_wanted || self.applied_since_snapshot.get() >= self.config.snapshot_every_records;
        if snapshot_due {
            self.snapshot().await?;
        }
        let retention_due = self
            .retention_pass_ms
            .get()
            .is_none_or(|last| now >= last.saturating_add(crate::limits::LOG_RETENTION_PASS_MS));
        if !retention_due {
            return Ok(());
        }
        self.retention_pass_ms.set(Some(now));
        let pin = self
            .state
            .borrow()
            .oldest_needed_offset()
            .unwrap_or(u64::MAX)
            // Keep the last record the snapshot covers: the oldest record the log holds
            // stands for Raft's compaction point, which must be committed.
            .min(self.snapshot_offset.get().saturating_sub(1))
            // And what a follower is pulling as part of a Raft snapshot.
            .min(self.replica.store.transfer_pin().unwrap_or(u64::MAX));
        let policy = RetentionPolicy {
            remove_below: Some(Offset(pin)),
            ..RetentionPolicy::default()
        };
        self.log
            .apply_retention(now, policy)
            .await
            .map_err(|error| EngineError::Storage(StorageFault::Log(error)))?;
        Ok(())
    }

    /// The applied offset the newest engine snapshot covers.
    pub fn snapshot_offset(&self) -> u64 {
        self.snapshot_offset.get()
    }

    /// When `tick` next has work, if ever.
    pub fn next_deadline_ms(&self) -> Option<u64> {
        self.state.borrow().next_deadline_ms()
    }

    /// Writes a snapshot of the applied state and removes older snapshots; the next tick
    /// applies log retention whenever it last did.
    pub async fn snapshot(&self) -> Result<(), EngineError> {
        if self.raft_snapshots.applying.get() {
            return Ok(());
        }
        self.retention_pass_ms.set(None);
        let applied = self.applied_offset.get();
        let name = snapshot::snapshot_name(applied);
        if applied == self.snapshot_offset.get() && self.storage.open(&name).await.is_ok() {
            // Nothing applied since the snapshot on disk: keep it rather than replace it
            // (a crash between removing and rewriting would leave no snapshot at all). The
            // configuration applied now is the one as of it.
            let conf = self.replica.store.durable().conf;
            self.save_snapshot_point(applied, conf.clone()).await?;
            self.replica.store.set_snapshot_point(applied, Some(conf));
            return Ok(());
        }
        // An eighth more than last time: the state usually grew a little.
        let capacity = self.snapshot_bytes.get() + self.snapshot_bytes.get() / 8;
        let bytes = snapshot::encode(&self.state.borrow(), applied, capacity);
        self.snapshot_bytes.set(bytes.len());
        // The configuration as of `applied` (membership entries apply with the state).
        let conf = self.replica.store.durable().conf;
        // First the Raft state file reaches the snapshot's index, with that configuration:
        // a restart from the snapshot then replays nothing the saved configuration lacks.
        self.save_snapshot_point(applied, conf.clone()).await?;
        // A file of this name that is not the current snapshot is a torn leftover.
        let _ = self.storage.remove(&name).await;
        let file = self
            .storage
            .create(&name)
            .await
            .map_err(snapshot_fault(&name))?;
        write_snapshot_file(&file, &bytes, SNAPSHOT_WRITE_CHUNK_BYTES)
            .await
            .map_err(snapshot_fault(&name))?;
        file.sync().await.map_err(snapshot_fault(&name))?;
        // Snapshots a follower is pulling (Raft snapshot transfers) stay.
        let pinned: Vec<u64> = self
            .replica
            .store
            .transfers()
            .iter()
            .map(|t| t.index)
            .collect();
        for old in self.storage.list().await.map_err(snapshot_fault("."))? {
            let offset = snapshot::parse_snapshot_name(&old);
            if offset.is_some_and(|offset| offset < applied && !pinned.contains(&offset)) {
                self.storage
                    .remove(&old)
                    .await
                    .map_err(snapshot_fault(&old))?;
            }
        }
        self.snapshot_offset.set(applied);
        self.applied_since_snapshot.set(0);
        self.replica.store.set_snapshot_point(applied, Some(conf));
        Ok(())
    }

    // ------------------------------------------------------------------ long poll

    /// A counter that moves whenever messages may have become available.
    pub fn change_count(&self) -> u64 {
        self.changes.get()
    }

    /// Resolves once `change_count` differs from `seen`.
    pub async fn changed(&self, seen: u64) {
        std::future::poll_fn(|context| {
            if self.changes.get() != seen {
                return Poll::Ready(());
            }
            self.waiters.borrow_mut().push(context.waker().clone());
            Poll::Pending
        })
        .await
    }

    fn notify(&self) {
        self.changes.set(self.changes.get() + 1);
        for waker in self.waiters.borrow_mut().drain(..) {
            waker.wake();
        }
    }

    // ------------------------------------------------------------------ commit

    /// Proposes `entries` and waits until they are committed and applied.
    async fn commit(&self, entries: Vec<Entry>, now: u64) -> Result<(), EngineError> {
        let proposal = self.propose(&entries, now)?;
        self.wait_committed(&proposal).await
    }
}

/// How long after a tick's failed commit (a proposal dropped during a leader transfer,
/// a lost quorum) its expired leases, due releases and retention cuts are tried again.
const TICK_RETRY_MS: u64 = 200;

/// Rounds of the Ready loop a group of one gets to elect itself and apply its `Boot`
/// (it needs four: campaign, no-op, boot, apply).
const LEAD_ALONE_ROUNDS_MAX: u32 = 16;

/// The Raft state of a replica that never saved one: its group's first voters.
fn initial_durable(replica: &ReplicaConfig) -> DurableState {
    let mut durable = DurableState::default();
    durable.conf.voters = replica.initial_voters.clone();
    durable
}

/// Applies the committed records `[from, to)` of the log to `state`.
async fn replay<S: Storage>(
    log: &Log<S>,
    state: &mut State,
    from: u64,
    to: u64,
) -> Result<(), EngineOpenError> {
    let mut next = from;
    // Bounded by the log length: every pass applies at least one record.
    while next < to {
        let records =
            log.read(Offset(next), 1 << 20)
                .await
                .map_err(|error| EngineOpenError::Replay {
                    offset: next,
                    detail: error.to_string(),
                })?;
        if records.is_empty() {
            return Err(EngineOpenError::Replay {
                offset: next,
                detail: "no record".into(),
            });
        }
        for record in records.into_iter().take_while(|r| r.offset.0 < to) {
            let (command, user_attributes) =
                Command::decode(&record.attributes).map_err(|error| EngineOpenError::Replay {
                    offset: record.offset.0,
                    detail: format!("undecodable command at byte {}", error.position),
                })?;
            let message_bytes = state::message_bytes(record.payload.len(), user_attributes.len());
            state.apply(
                &command,
                MessageId(record.offset.0),
                record.timestamp_ms,
                message_bytes,
            );
            next = record.offset.0 + 1;
        }
    }
    Ok(())
}

/// The Raft entries of the log from offset `from` to its end: the persisted entries not
/// known committed, which raft-rs may hand back for applying.
async fn read_entries<S: Storage>(
    log: &Log<S>,
    from: u64,
) -> Result<Vec<raft::prelude::Entry>, EngineOpenError> {
    let end = log.durable_offset().0;
    let mut entries = Vec::new();
    let mut next = from;
    while next < end {
        let records =
            log.read(Offset(next), 1 << 20)
                .await
                .map_err(|error| EngineOpenError::Replay {
                    offset: next,
                    detail: error.to_string(),
                })?;
        if records.is_empty() {
            return Err(EngineOpenError::Replay {
                offset: next,
                detail: "no record".into(),
            });
        }
        for record in records {
            let term = log.term_at(record.offset).unwrap_or(0);
            entries.push(crate::replica::entry::entry_of(&record, term));
            next = record.offset.0 + 1;
        }
    }
    Ok(entries)
}

fn validate_name(name: &str) -> Result<(), EngineError> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if valid {
        Ok(())
    } else {
        Err(EngineError::InvalidName)
    }
}

/// What a refused log append means to the engine's caller.
fn append_error(error: AppendError) -> EngineError {
    match error {
        // `TermRegressed` cannot happen: the engine appends with `Log::append`, which
        // takes the log's last term. Busy (retry) is the harmless answer if it ever did.
        AppendError::Busy { .. } | AppendError::TermRegressed { .. } => EngineError::Busy,
        // The encoding adds headers and command fields to the bytes the engine's limits
        // count, so a batch within them can still be too large for the log: the client
        // can send a smaller one.
        AppendError::Encode(EncodeError::TooLarge { batch_bytes }) => {
            EngineError::BatchBytesTooLarge {
                bytes: batch_bytes,
                limit: u64::from(crate::limits::BATCH_BYTES_MAX),
            }
        }
        // An empty batch or too many records: the engine's own limits keep these out.
        AppendError::Encode(error) => EngineError::Encode(error),
        AppendError::Poisoned(error) => EngineError::Storage(StorageFault::Log(error)),
    }
}

/// Reports a disk error on the snapshot file `file` as the engine's storage fault.
fn snapshot_fault(file: &str) -> impl FnOnce(crate::storage::IoError) -> EngineError + '_ {
    move |error| {
        EngineError::Storage(StorageFault::Snapshot {
            file: file.to_string(),
            error,
        })
    }
}

fn valid_tag(tag: &str) -> bool {
    validate_name(tag).is_ok()
}

/// How many times open reads a snapshot that fails to load before trying an older one.
const SNAPSHOT_READS_MAX: u32 = 3;

/// The snapshot for `offset`, if it reads and verifies.
/// Writes a snapshot file: the length (u64), the bytes, zeros to the block. Written
/// `chunk` bytes (block aligned, more than 8) at a time, so no buffer of the whole
/// snapshot is zeroed and copied in one go and the executor runs other work between
/// chunks. Not synced here.
async fn write_snapshot_file<F: StorageFile>(
    file: &F,
    bytes: &[u8],
    chunk: usize,
) -> Result<(), IoError> {
    let length = (bytes.len() as u64).to_le_bytes();
    let padded = usize::try_from(align_up(bytes.len() as u64 + 8, BLOCK_BYTES)).expect("fits");
    let mut at = 0usize;
    // Bounded: every pass writes one chunk of `padded`.
    while at < padded {
        let size = (padded - at).min(chunk);
        let mut buf = file.alloc_buf(size);
        let out = buf.as_mut();
        // Bytes `at..at + size` of the stream `length ++ bytes` (zeros after).
        let head = 8usize.saturating_sub(at);
        out[..head].copy_from_slice(&length[at.min(8)..]);
        let from = at + head - 8;
        let take = bytes.len().saturating_sub(from).min(size - head);
        out[head..head + take].copy_from_slice(&bytes[from..from + take]);
        file.write_at(buf, at as u64).await?;
        at += size;
    }
    Ok(())
}

async fn read_snapshot<S: Storage>(storage: &S, offset: u64) -> Option<(State, u64)> {
    let file = storage.open(&snapshot::snapshot_name(offset)).await.ok()?;
    let size = file.size().await.ok()?;
    let bytes = file.read_at(0, usize::try_from(size).ok()?).await.ok()?;
    let bytes = bytes.as_ref();
    let len = u64::from_le_bytes(bytes.get(..8)?.try_into().expect("8 bytes"));
    let end = 8usize.checked_add(usize::try_from(len).ok()?)?;
    let body = bytes.get(8..end)?;
    let (state, applied) = snapshot::decode(body).ok()?;
    (applied == offset).then_some((state, applied))
}

async fn load_snapshot<S: Storage>(storage: &S) -> (State, u64) {
    let Ok(names) = storage.list().await else {
        return (State::default(), 0);
    };
    let mut offsets: Vec<u64> = names
        .iter()
        .filter_map(|n| snapshot::parse_snapshot_name(n))
        .collect();
    offsets.sort_unstable_by(|a, b| b.cmp(a));
    for offset in offsets {
        // A failed read or checksum may be a transient fault: try again before falling
        // back to an older snapshot.
        for _ in 0..SNAPSHOT_READS_MAX {
            if let Some(found) = read_snapshot(storage, offset).await {
                return found;
            }
        }
    }
    (State::default(), 0)
}

/// Whether messages of `from` may go to `to` (dead letters, move tasks): another queue
/// of the same tenant and mode (a message keeps its FIFO key), spreading over at least
/// the partitions `from` does, since a message moves within its partition.
fn placeable(from: &state::Queue, to: &state::Queue) -> bool {
    let spread = |partitions: u16| {
        if partitions == 0 {
            u16::MAX
        } else {
            partitions
        }
    };
    to.id != from.id
        && to.tenant == from.tenant
        && to.config.mode == from.config.mode
        && spread(to.config.partitions) >= spread(from.config.partitions)
}

#[cfg(test)]
mod tests;
