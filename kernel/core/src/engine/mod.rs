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
pub mod group;
pub mod probe;
pub mod range_set;
pub mod snapshot;
pub mod state;
pub mod timers;
pub mod types;

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::task::{Poll, Waker};

use xxhash_rust::xxh3::xxh3_64;

use crate::limits::{
    BLOCK_BYTES, ENGINE_BATCH_MESSAGES_CEILING, ENGINE_DELAY_MS_CEILING,
    ENGINE_TAGS_PER_MESSAGE_CEILING, ENGINE_TAGS_PER_QUEUE_MAX,
};
use crate::log::{AppendError, Log, LogConfig, OpenError, ReadError, RetentionPolicy};
use crate::record::{align_up, EncodeError, RecordInput};
use crate::storage::{Storage, StorageFile};
use crate::types::Offset;
use command::{Command, SendMeta};
use state::{Picked, State};
use types::{
    AckKind, AckOutcome, Delay, Delivery, EngineError, GroupId, GroupStart, GroupStats,
    HandleError, MessageId, QueueConfig, QueueId, ReceiptHandle, SendInput, SendOutcome, TagFilter,
    DELAY_LEVELS_MS,
};

/// Operator-tunable limits, each checked against a ceiling in `limits.rs`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EngineLimits {
    pub queues_per_tenant_max: u32,
    pub groups_per_queue_max: u32,
    pub message_bytes_max: u64,
    pub attributes_bytes_max: u64,
    pub batch_messages_max: u32,
    pub batch_bytes_max: u64,
    pub tags_per_message_max: u32,
    pub receive_messages_max: u32,
    pub visibility_ms_min: u64,
    pub visibility_ms_max: u64,
    pub inflight_per_group_max: u64,
    pub dedup_entries_per_queue_max: u64,
    pub retention_ms_min: u64,
    pub retention_ms_max: u64,
}

impl EngineLimits {
    /// Limits that match the DMS queue API (dms-api.md §4) where clients depend on them.
    pub fn dms() -> EngineLimits {
        EngineLimits {
            queues_per_tenant_max: 1000,
            groups_per_queue_max: 3,
            message_bytes_max: 512 * 1024,
            attributes_bytes_max: 64 * 1024,
            batch_messages_max: 10,
            batch_bytes_max: 512 * 1024,
            tags_per_message_max: 3,
            receive_messages_max: 10,
            visibility_ms_min: 1_000,
            visibility_ms_max: 12 * 3600 * 1000,
            inflight_per_group_max: 100_000,
            dedup_entries_per_queue_max: 1_000_000,
            retention_ms_min: 60_000,
            retention_ms_max: 14 * 24 * 3600 * 1000,
        }
    }

    pub fn validate(&self) -> Result<(), EngineError> {
        if self.batch_messages_max == 0 || self.batch_messages_max > ENGINE_BATCH_MESSAGES_CEILING {
            return Err(EngineError::InvalidConfig("batch_messages_max"));
        }
        if self.tags_per_message_max as usize > ENGINE_TAGS_PER_MESSAGE_CEILING {
            return Err(EngineError::InvalidConfig("tags_per_message_max"));
        }
        if self.receive_messages_max == 0
            || self.receive_messages_max > ENGINE_BATCH_MESSAGES_CEILING
        {
            return Err(EngineError::InvalidConfig("receive_messages_max"));
        }
        if self.visibility_ms_min > self.visibility_ms_max {
            return Err(EngineError::InvalidConfig("visibility range"));
        }
        let batch_ceiling = u64::from(crate::limits::BATCH_BYTES_MAX) / 2;
        if self.batch_bytes_max > batch_ceiling || self.message_bytes_max > self.batch_bytes_max {
            return Err(EngineError::InvalidConfig("batch_bytes_max"));
        }
        Ok(())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EngineConfig {
    pub log: LogConfig,
    pub limits: EngineLimits,
    /// A snapshot is written by `tick` once this many records were applied since the last.
    pub snapshot_every_records: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EngineOpenError {
    Config(EngineError),
    Log(OpenError),
    /// A record in the durable log could not be read or decoded.
    Replay {
        offset: u64,
        detail: String,
    },
    /// The log no longer holds the records after the newest snapshot.
    MissingRecords {
        snapshot_offset: u64,
        log_start: u64,
    },
    /// The boot record could not be written.
    Boot(EngineError),
}

impl std::fmt::Display for EngineOpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EngineOpenError::Config(error) => write!(f, "invalid engine config: {error}"),
            EngineOpenError::Log(error) => write!(f, "{error}"),
            EngineOpenError::Boot(error) => write!(f, "cannot write the boot record: {error}"),
            EngineOpenError::Replay { offset, detail } => {
                write!(f, "cannot replay log record {offset}: {detail}")
            }
            EngineOpenError::MissingRecords {
                snapshot_offset,
                log_start,
            } => write!(
                f,
                "log starts at {log_start} but the newest snapshot covers only up to \
                 {snapshot_offset}"
            ),
        }
    }
}

/// What a receive asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceiveRequest {
    pub max_messages: u32,
    pub visibility_ms: u64,
    pub filter: Option<TagFilter>,
}

/// A queue as listed to its tenant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueInfo {
    pub id: QueueId,
    pub tenant: String,
    pub name: String,
    pub config: QueueConfig,
    pub sent_total: u64,
    pub stored: u64,
    pub delayed: u64,
    pub groups: Vec<(GroupId, String)>,
}

/// Bytes a receive reads from the log per pass when it fetches bodies.
const DELIVERY_READ_BYTES: u64 = 16 * 1024;

/// A send's outcome before the append gives new messages their ids.
enum Planned {
    Duplicate(SendOutcome),
    /// Stored as the batch's entry at this index.
    New(usize),
    /// Repeats the dedup id of the batch's entry at this index.
    RepeatOf(usize),
}

struct Unapplied {
    offset: u64,
    timestamp_ms: u64,
    command: Command,
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
    log: Log<S>,
    config: EngineConfig,
    state: RefCell<State>,
    unapplied: RefCell<VecDeque<Unapplied>>,
    applied_offset: Cell<u64>,
    snapshot_offset: Cell<u64>,
    applied_since_snapshot: Cell<u64>,
    pending_names: RefCell<HashSet<(String, String)>>,
    pending_groups: RefCell<HashSet<(QueueId, String)>>,
    pending_dedup: RefCell<HashMap<(QueueId, u64), MessageId>>,
    changes: Cell<u64>,
    waiters: RefCell<Vec<Waker>>,
}

impl<S: Storage + Clone> Engine<S> {
    /// Opens the engine at time `now`: newest valid snapshot, replay of the log after it,
    /// a durable `Boot` record (so handles from earlier boots are stale), then back-off
    /// waits and retention as of `now`.
    pub async fn open(
        storage: S,
        config: EngineConfig,
        now: u64,
    ) -> Result<Engine<S>, EngineOpenError> {
        config.limits.validate().map_err(EngineOpenError::Config)?;
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
        let mut next = snapshot_offset;
        let end = log.durable_offset().0;
        // Bounded by the log length: every pass applies at least one record.
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
                let (command, _) = Command::decode(&record.attributes).map_err(|error| {
                    EngineOpenError::Replay {
                        offset: record.offset.0,
                        detail: format!("undecodable command at byte {}", error.position),
                    }
                })?;
                state.apply(&command, MessageId(record.offset.0), record.timestamp_ms);
                next = record.offset.0 + 1;
            }
        }
        state.reset_leader_state();
        let applied = end;
        let engine = Engine {
            storage,
            log,
            config,
            state: RefCell::new(state),
            unapplied: RefCell::new(VecDeque::new()),
            applied_offset: Cell::new(applied),
            snapshot_offset: Cell::new(snapshot_offset),
            applied_since_snapshot: Cell::new(applied - snapshot_offset),
            pending_names: RefCell::new(HashSet::new()),
            pending_groups: RefCell::new(HashSet::new()),
            pending_dedup: RefCell::new(HashMap::new()),
            changes: Cell::new(0),
            waiters: RefCell::new(Vec::new()),
        };
        engine
            .commit(vec![Entry::plain(Command::Boot)], now)
            .await
            .map_err(EngineOpenError::Boot)?;
        {
            // Time-driven changes that are not logged: back-off waits that ended and
            // retention, as of `now`.
            let mut state = engine.state.borrow_mut();
            state.fire_waits(now);
            state.apply_retention(now);
        }
        Ok(engine)
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
            if state.names.contains_key(&key) || self.pending_names.borrow().contains(&key) {
                return Err(EngineError::QueueExists);
            }
            let owned = state.queues_of(tenant).count() + self.pending_names.borrow().len();
            if owned >= limits.queues_per_tenant_max as usize {
                return Err(EngineError::TooManyQueues {
                    limit: limits.queues_per_tenant_max,
                });
            }
            let queue = QueueId(state.next_queue_id);
            state.next_queue_id += 1;
            queue
        };
        self.pending_names.borrow_mut().insert(key.clone());
        let command = Command::CreateQueue {
            queue,
            tenant: tenant.into(),
            name: name.into(),
            config,
        };
        let result = self.commit(vec![Entry::plain(command)], now).await;
        self.pending_names.borrow_mut().remove(&key);
        result.map(|_| queue)
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
            let group = GroupId(state.next_group_id);
            state.next_group_id += 1;
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
        self.state
            .borrow()
            .names
            .get(&(tenant.to_string(), name.to_string()))
            .copied()
    }

    pub fn queue_info(&self, queue: QueueId) -> Result<QueueInfo, EngineError> {
        let state = self.state.borrow();
        let q = state.queue(queue)?;
        Ok(QueueInfo {
            id: q.id,
            tenant: q.tenant.clone(),
            name: q.name.clone(),
            config: q.config,
            sent_total: q.sent_total,
            stored: q.messages.len() as u64,
            delayed: q.delayed.len() as u64,
            groups: q.groups.values().map(|g| (g.id, g.name.clone())).collect(),
        })
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

    // ------------------------------------------------------------------ send

    /// Sends a batch as one operation: all stored (durably) or none.
    pub async fn send(
        &self,
        queue: QueueId,
        messages: &[SendInput],
        now: u64,
    ) -> Result<Vec<SendOutcome>, EngineError> {
        let limits = self.config.limits;
        if messages.is_empty() {
            return Err(EngineError::EmptyBatch);
        }
        let count = u32::try_from(messages.len()).unwrap_or(u32::MAX);
        if count > limits.batch_messages_max {
            return Err(EngineError::BatchTooLarge {
                count,
                limit: limits.batch_messages_max,
            });
        }
        let mut deliver_ats = Vec::with_capacity(messages.len());
        for message in messages {
            self.validate_message(message)?;
            deliver_ats.push(deliver_at(message.delay, now)?);
        }
        let bytes: u64 = messages
            .iter()
            .map(|m| (m.body.len() + m.attributes.len()) as u64)
            .sum();
        if bytes > limits.batch_bytes_max {
            return Err(EngineError::BatchBytesTooLarge {
                bytes,
                limit: limits.batch_bytes_max,
            });
        }
        let mut outcomes = Vec::with_capacity(messages.len());
        let mut entries = Vec::new();
        let mut claimed: Vec<(u64, usize)> = Vec::new();
        {
            let state = self.state.borrow();
            let q = state.queue(queue)?;
            let new_tags: HashSet<&str> = messages
                .iter()
                .flat_map(|m| m.tags.iter())
                .filter(|tag| !q.tag_ids.contains_key(*tag))
                .map(String::as_str)
                .collect();
            if q.tag_names.len() + new_tags.len() > ENGINE_TAGS_PER_QUEUE_MAX {
                return Err(EngineError::TooManyDistinctTags);
            }
            let pending = self.pending_dedup.borrow();
            for (message, deliver_at_ms) in messages.iter().zip(deliver_ats) {
                let dedup_hash = message
                    .dedup_id
                    .as_deref()
                    .map_or(0, |id| xxh3_64(id.as_bytes()) | 1);
                if dedup_hash != 0 {
                    let in_batch = claimed.iter().find(|(hash, _)| *hash == dedup_hash);
                    if let Some((_, index)) = in_batch {
                        outcomes.push(Planned::RepeatOf(*index));
                        continue;
                    }
                    let seen = q
                        .dedup
                        .get(&dedup_hash)
                        .filter(|(expires_ms, _)| *expires_ms > now)
                        .map(|(_, id)| *id)
                        .or_else(|| pending.get(&(queue, dedup_hash)).copied());
                    if let Some(original) = seen {
                        let duplicate = SendOutcome {
                            message_id: original,
                            duplicate: true,
                        };
                        outcomes.push(Planned::Duplicate(duplicate));
                        continue;
                    }
                    let entries_max = limits.dedup_entries_per_queue_max as usize;
                    if q.dedup.len() + pending.len() + claimed.len() >= entries_max {
                        return Err(EngineError::DedupTableFull);
                    }
                    claimed.push((dedup_hash, entries.len()));
                }
                outcomes.push(Planned::New(entries.len()));
                let meta = SendMeta {
                    queue,
                    deliver_at_ms,
                    fifo_group: message.fifo_group.clone(),
                    tags: message.tags.clone(),
                    dedup_hash,
                };
                entries.push(Entry {
                    command: Command::Send(meta),
                    body: message.body.clone(),
                    user_attributes: message.attributes.clone(),
                });
            }
        }
        let first = if entries.is_empty() {
            Offset(0)
        } else {
            let first = self.append(&entries, now)?;
            {
                let mut pending = self.pending_dedup.borrow_mut();
                for (hash, index) in &claimed {
                    pending.insert((queue, *hash), MessageId(first.0 + *index as u64));
                }
            }
            let result = self.sync_and_apply().await;
            let mut pending = self.pending_dedup.borrow_mut();
            for (hash, _) in &claimed {
                pending.remove(&(queue, *hash));
            }
            result?;
            first
        };
        Ok(outcomes
            .into_iter()
            .map(|outcome| match outcome {
                Planned::Duplicate(duplicate) => duplicate,
                Planned::New(index) => SendOutcome {
                    message_id: MessageId(first.0 + index as u64),
                    duplicate: false,
                },
                Planned::RepeatOf(index) => SendOutcome {
                    message_id: MessageId(first.0 + index as u64),
                    duplicate: true,
                },
            })
            .collect())
    }

    fn validate_message(&self, message: &SendInput) -> Result<(), EngineError> {
        let limits = &self.config.limits;
        let bytes = message.body.len() as u64;
        if bytes > limits.message_bytes_max {
            return Err(EngineError::MessageTooLarge {
                bytes,
                limit: limits.message_bytes_max,
            });
        }
        let bytes = message.attributes.len() as u64;
        if bytes > limits.attributes_bytes_max {
            return Err(EngineError::AttributesTooLarge {
                bytes,
                limit: limits.attributes_bytes_max,
            });
        }
        let count = u32::try_from(message.tags.len()).unwrap_or(u32::MAX);
        if count > limits.tags_per_message_max {
            return Err(EngineError::TooManyTags {
                count,
                limit: limits.tags_per_message_max,
            });
        }
        if !message.tags.iter().all(|tag| valid_tag(tag)) {
            return Err(EngineError::InvalidTag);
        }
        if message
            .fifo_group
            .as_ref()
            .is_some_and(|g| g.is_empty() || g.len() > 128)
        {
            return Err(EngineError::InvalidName);
        }
        if message
            .dedup_id
            .as_ref()
            .is_some_and(|d| d.is_empty() || d.len() > 128)
        {
            return Err(EngineError::InvalidName);
        }
        Ok(())
    }

    /// Cancels a scheduled or delayed message that has not been delivered yet.
    pub async fn cancel(
        &self,
        queue: QueueId,
        message: MessageId,
        now: u64,
    ) -> Result<(), EngineError> {
        {
            let mut state = self.state.borrow_mut();
            let q = state.queue_mut(queue)?;
            match q.delayed.get_mut(&message) {
                Some(delayed) if !delayed.releasing => delayed.releasing = true,
                _ => return Err(EngineError::NotScheduled),
            }
        }
        let result = self
            .commit(vec![Entry::plain(Command::Cancel { queue, message })], now)
            .await;
        if result.is_err() {
            let mut state = self.state.borrow_mut();
            if let Some(delayed) = state
                .queues
                .get_mut(&queue)
                .and_then(|q| q.delayed.get_mut(&message))
            {
                delayed.releasing = false;
            }
        }
        result
    }

    // ------------------------------------------------------------------ receive

    pub async fn receive(
        &self,
        queue: QueueId,
        group: GroupId,
        request: &ReceiveRequest,
        now: u64,
    ) -> Result<Vec<Delivery>, EngineError> {
        self.validate_receive(request)?;
        self.check_group(queue, group)?;
        if let Some(filter) = &request.filter {
            self.ensure_filter(queue, group, filter, now).await?;
        }
        let picked = self.state.borrow_mut().receive(
            queue,
            group,
            request.max_messages,
            request.visibility_ms,
            self.config.limits.inflight_per_group_max,
            now,
        )?;
        self.deliveries(picked).await
    }

    /// Receives from the group's dead letters.
    pub async fn receive_dead(
        &self,
        queue: QueueId,
        group: GroupId,
        request: &ReceiveRequest,
        now: u64,
    ) -> Result<Vec<Delivery>, EngineError> {
        self.validate_receive(request)?;
        let picked = self.state.borrow_mut().receive_dead(
            queue,
            group,
            request.max_messages,
            request.visibility_ms,
            now,
        )?;
        self.deliveries(picked).await
    }

    fn validate_receive(&self, request: &ReceiveRequest) -> Result<(), EngineError> {
        let limits = &self.config.limits;
        if request.max_messages == 0 || request.max_messages > limits.receive_messages_max {
            return Err(EngineError::InvalidMaxMessages {
                limit: limits.receive_messages_max,
            });
        }
        if !(limits.visibility_ms_min..=limits.visibility_ms_max).contains(&request.visibility_ms) {
            return Err(EngineError::InvalidVisibility {
                min_ms: limits.visibility_ms_min,
                max_ms: limits.visibility_ms_max,
            });
        }
        if let Some(filter) = &request.filter {
            let too_many = filter.tags.len() > self.config.limits.tags_per_message_max as usize;
            if too_many || !filter.tags.iter().all(|t| valid_tag(t)) {
                return Err(EngineError::InvalidTag);
            }
        }
        Ok(())
    }

    async fn ensure_filter(
        &self,
        queue: QueueId,
        group: GroupId,
        filter: &TagFilter,
        now: u64,
    ) -> Result<(), EngineError> {
        let current = {
            let state = self.state.borrow();
            let q = state.queue(queue)?;
            let g = q.groups.get(&group).ok_or(EngineError::GroupNotFound)?;
            g.filter.as_ref().map(|f| f.source.clone())
        };
        match current {
            Some(current) if &current == filter => Ok(()),
            Some(_) => Err(EngineError::FilterConflict),
            None => {
                let command = Command::SetFilter {
                    queue,
                    group,
                    filter: filter.clone(),
                };
                self.commit(vec![Entry::plain(command)], now).await
            }
        }
    }

    /// Reads the bodies of picked messages. Messages picked together usually sit side
    /// by side in the log, so one read serves many: each read starts at the lowest
    /// offset still missing and fills every wanted record it returns.
    async fn deliveries(&self, picked: Vec<Picked>) -> Result<Vec<Delivery>, EngineError> {
        let mut wanted: BTreeMap<u64, usize> = picked
            .iter()
            .enumerate()
            .map(|(index, pick)| (pick.meta.message_id.0, index))
            .collect();
        let mut found: Vec<Option<Delivery>> = vec![None; picked.len()];
        // Bounded: every pass fills at least the lowest wanted offset or fails.
        while let Some((&first, _)) = wanted.first_key_value() {
            let records = self
                .log
                .read(Offset(first), DELIVERY_READ_BYTES)
                .await
                .map_err(read_error)?;
            for record in records {
                let Some(index) = wanted.remove(&record.offset.0) else {
                    continue;
                };
                let (command, user_attributes) = Command::decode(&record.attributes)
                    .map_err(|_| EngineError::Storage("undecodable send record".into()))?;
                let Command::Send(meta) = command else {
                    return Err(EngineError::Storage(
                        "message id names a non-send record".into(),
                    ));
                };
                let pick = &picked[index];
                found[index] = Some(Delivery {
                    handle: pick.handle,
                    message_id: pick.meta.message_id,
                    delivery_count: pick.delivery_count,
                    sent_ms: record.timestamp_ms,
                    attributes: user_attributes.to_vec(),
                    body: record.payload,
                    tags: meta.tags,
                    fifo_group: meta.fifo_group,
                });
            }
            if wanted.contains_key(&first) {
                return Err(EngineError::Storage(format!(
                    "message {first} missing from the log"
                )));
            }
        }
        Ok(found
            .into_iter()
            .map(|d| d.expect("every wanted record was filled"))
            .collect())
    }

    // ------------------------------------------------------------------ ack

    /// Acks or fails deliveries, in order. With `stop_at_first_error`, entries after the
    /// first invalid handle are not processed (DMS semantics) and get `Err(Stale)`.
    pub async fn ack(
        &self,
        acks: &[(ReceiptHandle, AckKind)],
        stop_at_first_error: bool,
        now: u64,
    ) -> Result<Vec<Result<AckOutcome, HandleError>>, EngineError> {
        let limit = self.config.limits.batch_messages_max;
        let count = u32::try_from(acks.len()).unwrap_or(u32::MAX);
        if count > limit {
            return Err(EngineError::BatchTooLarge { count, limit });
        }
        let mut results = Vec::with_capacity(acks.len());
        let mut begun = Vec::new();
        let mut seqs: BTreeMap<(QueueId, GroupId, u8), Vec<u64>> = BTreeMap::new();
        {
            let mut state = self.state.borrow_mut();
            let mut failed = false;
            for (handle, kind) in acks {
                if failed && stop_at_first_error {
                    results.push(Err(HandleError::Stale));
                    continue;
                }
                let success = *kind == AckKind::Success;
                let deadline = lease_deadline(&state, handle);
                match state.begin_ack(handle, success) {
                    Ok((outcome, log)) => {
                        if log {
                            let lane = match (handle.dead_letter, success) {
                                (true, _) => 2,
                                (false, true) => 0,
                                (false, false) => 1,
                            };
                            seqs.entry((handle.queue, handle.group, lane))
                                .or_default()
                                .push(handle.seq);
                            begun.push((*handle, deadline));
                        }
                        results.push(Ok(outcome));
                    }
                    Err(error) => {
                        failed = true;
                        results.push(Err(error));
                    }
                }
            }
        }
        if seqs.is_empty() {
            return Ok(results);
        }
        let entries = seqs
            .into_iter()
            .map(|((queue, group, lane), seqs)| {
                Entry::plain(match lane {
                    0 => Command::Ack { queue, group, seqs },
                    1 => Command::Nack { queue, group, seqs },
                    _ => Command::DeadAck { queue, group, seqs },
                })
            })
            .collect();
        if let Err(error) = self.commit(entries, now).await {
            let mut state = self.state.borrow_mut();
            for (handle, deadline) in begun {
                state.abort_ack(&handle, deadline);
            }
            return Err(error);
        }
        Ok(results)
    }

    pub fn change_visibility(
        &self,
        handle: &ReceiptHandle,
        visibility_ms: u64,
        now: u64,
    ) -> Result<(), HandleError> {
        let limits = &self.config.limits;
        let visibility_ms = visibility_ms.clamp(0, limits.visibility_ms_max);
        self.state
            .borrow_mut()
            .change_visibility(handle, visibility_ms, now)?;
        if visibility_ms == 0 {
            self.notify();
        }
        Ok(())
    }

    /// Moves every dead letter of the group back to its main lane.
    pub async fn redrive(
        &self,
        queue: QueueId,
        group: GroupId,
        now: u64,
    ) -> Result<(), EngineError> {
        {
            let state = self.state.borrow();
            if state.queue(queue)?.config.max_consume_count.is_none() {
                return Err(EngineError::NoDeadLetters);
            }
        }
        self.check_group(queue, group)?;
        self.commit(vec![Entry::plain(Command::Redrive { queue, group })], now)
            .await
    }

    // ------------------------------------------------------------------ time

    /// Advances time: ends leases and back-off waits, releases due delayed messages,
    /// applies retention, and takes a snapshot when due.
    pub async fn tick(&self, now: u64) -> Result<(), EngineError> {
        let (failed, releases) = {
            let mut state = self.state.borrow_mut();
            state.fire_waits(now);
            let failed = state.expire_leases(now);
            let releases = state.due_releases(now);
            state.apply_retention(now);
            (failed, releases)
        };
        let mut nacks: BTreeMap<(QueueId, GroupId), Vec<u64>> = BTreeMap::new();
        for (queue, group, seq) in failed {
            nacks.entry((queue, group)).or_default().push(seq);
        }
        let mut entries: Vec<Entry> = nacks
            .into_iter()
            .map(|((queue, group), seqs)| Entry::plain(Command::Nack { queue, group, seqs }))
            .collect();
        entries.extend(
            releases
                .into_iter()
                .map(|(queue, message)| Entry::plain(Command::Release { queue, message })),
        );
        self.notify();
        // Bounded: each pass logs up to a ceiling's worth of commands.
        while !entries.is_empty() {
            let rest = entries.split_off(entries.len().min(ENGINE_BATCH_MESSAGES_CEILING as usize));
            self.commit(entries, now).await?;
            entries = rest;
        }
        if self.applied_since_snapshot.get() >= self.config.snapshot_every_records {
            self.snapshot().await?;
        }
        let pin = self
            .state
            .borrow()
            .oldest_needed_offset()
            .unwrap_or(u64::MAX)
            .min(self.snapshot_offset.get());
        let policy = RetentionPolicy {
            remove_below: Some(Offset(pin)),
            ..RetentionPolicy::default()
        };
        self.log
            .apply_retention(now, policy)
            .await
            .map_err(|error| EngineError::Storage(error.to_string()))?;
        Ok(())
    }

    /// When `tick` next has work, if ever.
    pub fn next_deadline_ms(&self) -> Option<u64> {
        self.state.borrow().next_deadline_ms()
    }

    /// Writes a snapshot of the applied state and removes older snapshots.
    pub async fn snapshot(&self) -> Result<(), EngineError> {
        let applied = self.applied_offset.get();
        let bytes = snapshot::encode(&self.state.borrow(), applied);
        let storage_error =
            |error: crate::storage::IoError| EngineError::Storage(error.to_string());
        let name = snapshot::snapshot_name(applied);
        let _ = self.storage.remove(&name).await;
        let file = self.storage.create(&name).await.map_err(storage_error)?;
        let padded = align_up(bytes.len() as u64 + 8, BLOCK_BYTES);
        let mut buf = file.alloc_buf(usize::try_from(padded).expect("fits"));
        buf.as_mut()[..8].copy_from_slice(&(bytes.len() as u64).to_le_bytes());
        buf.as_mut()[8..8 + bytes.len()].copy_from_slice(&bytes);
        file.write_at(buf, 0).await.map_err(storage_error)?;
        file.sync().await.map_err(storage_error)?;
        for old in self.storage.list().await.map_err(storage_error)? {
            if snapshot::parse_snapshot_name(&old).is_some_and(|offset| offset < applied) {
                self.storage.remove(&old).await.map_err(storage_error)?;
            }
        }
        self.snapshot_offset.set(applied);
        self.applied_since_snapshot.set(0);
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

    // ------------------------------------------------------------------ log plumbing

    fn append(&self, entries: &[Entry], now: u64) -> Result<Offset, EngineError> {
        let encoded: Vec<Vec<u8>> = entries
            .iter()
            .map(|e| e.command.encode(&e.user_attributes))
            .collect();
        let records: Vec<RecordInput<'_>> = entries
            .iter()
            .zip(&encoded)
            .map(|(entry, attributes)| RecordInput {
                timestamp_ms: now,
                attributes,
                payload: &entry.body,
            })
            .collect();
        let appended = self.log.append(&records).map_err(|error| match error {
            AppendError::Busy { .. } => EngineError::Busy,
            AppendError::Encode(EncodeError::TooLarge { batch_bytes }) => {
                EngineError::BatchBytesTooLarge {
                    bytes: batch_bytes,
                    limit: u64::from(crate::limits::BATCH_BYTES_MAX),
                }
            }
            AppendError::Encode(_) => EngineError::EmptyBatch,
            AppendError::Poisoned(error) => EngineError::Storage(error.to_string()),
        })?;
        let mut unapplied = self.unapplied.borrow_mut();
        for (index, entry) in entries.iter().enumerate() {
            unapplied.push_back(Unapplied {
                offset: appended.first_offset.0 + index as u64,
                timestamp_ms: now,
                command: entry.command.clone(),
            });
        }
        Ok(appended.first_offset)
    }

    async fn sync_and_apply(&self) -> Result<(), EngineError> {
        let upto = self.log.next_offset();
        self.log
            .sync(upto)
            .await
            .map_err(|error| EngineError::Storage(error.to_string()))?;
        self.apply_durable();
        Ok(())
    }

    async fn commit(&self, entries: Vec<Entry>, now: u64) -> Result<(), EngineError> {
        self.append(&entries, now)?;
        self.sync_and_apply().await
    }

    /// Applies, in log order, every logged command that is now durable.
    fn apply_durable(&self) {
        let durable = self.log.durable_offset().0;
        let mut applied_any = false;
        let mut unapplied = self.unapplied.borrow_mut();
        let mut state = self.state.borrow_mut();
        while unapplied.front().is_some_and(|u| u.offset < durable) {
            let next = unapplied.pop_front().expect("checked above");
            assert_eq!(
                next.offset,
                self.applied_offset.get(),
                "commands apply in log order"
            );
            state.apply(&next.command, MessageId(next.offset), next.timestamp_ms);
            self.applied_offset.set(next.offset + 1);
            self.applied_since_snapshot
                .set(self.applied_since_snapshot.get() + 1);
            applied_any = true;
        }
        drop(state);
        drop(unapplied);
        if applied_any {
            self.notify();
        }
    }
}

fn lease_deadline(state: &State, handle: &ReceiptHandle) -> u64 {
    state
        .queues
        .get(&handle.queue)
        .and_then(|q| q.groups.get(&handle.group))
        .and_then(|g| match g.holds.get(&handle.seq) {
            Some(group::Hold::Leased { deadline_ms, .. }) => Some(*deadline_ms),
            _ => None,
        })
        .unwrap_or(0)
}

fn read_error(error: ReadError) -> EngineError {
    EngineError::Storage(error.to_string())
}

fn deliver_at(delay: Delay, now: u64) -> Result<u64, EngineError> {
    let at = match delay {
        Delay::None => return Ok(0),
        Delay::Level(level) => {
            let index = usize::from(level)
                .checked_sub(1)
                .ok_or(EngineError::InvalidDelay)?;
            now + *DELAY_LEVELS_MS
                .get(index)
                .ok_or(EngineError::InvalidDelay)?
        }
        Delay::Ms(ms) if ms <= ENGINE_DELAY_MS_CEILING => now + ms,
        Delay::Ms(_) => return Err(EngineError::InvalidDelay),
        Delay::At(at) if at <= now.saturating_add(ENGINE_DELAY_MS_CEILING) => at,
        Delay::At(_) => return Err(EngineError::InvalidDelay),
    };
    Ok(if at <= now { 0 } else { at })
}

fn validate_name(name: &str) -> Result<(), EngineError> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if valid {
        Ok(())
    } else {
        Err(EngineError::InvalidName)
    }
}

fn valid_tag(tag: &str) -> bool {
    validate_name(tag).is_ok()
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
        let Ok(file) = storage.open(&snapshot::snapshot_name(offset)).await else {
            continue;
        };
        let Ok(size) = file.size().await else {
            continue;
        };
        let Ok(bytes) = file.read_at(0, usize::try_from(size).unwrap_or(0)).await else {
            continue;
        };
        let bytes = bytes.as_ref();
        if bytes.len() < 8 {
            continue;
        }
        let len = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"));
        let Some(body) = usize::try_from(len)
            .ok()
            .and_then(|len| bytes.get(8..8 + len))
        else {
            continue;
        };
        if let Ok((state, applied)) = snapshot::decode(body) {
            if applied == offset {
                return (state, applied);
            }
        }
    }
    (State::default(), 0)
}

#[cfg(test)]
mod tests;
