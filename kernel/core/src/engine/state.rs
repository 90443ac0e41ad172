//! The engine's state machine: queues, their messages and their consumer groups.
//!
//! Two kinds of transition, kept apart on purpose:
//! - `apply_*`: deterministic folds of durable commands (log records) in log order, with
//!   the record's timestamp as the time. Replays and replicas call exactly these.
//! - leader operations (`receive`, `begin_ack`, `expire`, ...): decisions the serving
//!   node takes with the current time; each durable consequence becomes a command that is
//!   logged and later applied. Their own state (leases, cursor, ready set) may be lost on
//!   restart; the effect is early redelivery, never loss.
//!
//! No I/O and no clock: time is an argument everywhere.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, LazyLock};

use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};

use super::command::{Command, SendMeta};
use super::group::{CompiledFilter, DeadLetter, Group, Hold};
use super::timers::TimerQueue;
use super::types::{
    EngineError, FifoScope, GroupId, GroupStart, GroupStats, MessageId, QueueConfig, QueueId,
    QueueMode, ReceiptHandle, RetryPolicy, TagFilter, RETRY_BACKOFF_MS,
};
use crate::bugs::{self, Bug};
use crate::limits::ENGINE_TAGS_PER_QUEUE_MAX;

/// What the engine keeps in memory per stored message: 32 bytes, bodies stay on disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct MessageMeta {
    pub message_id: MessageId,
    /// When the message became available (sent, or released from its delay): the
    /// start of its retention.
    pub available_ms: u64,
    /// FIFO ordering key: 0 for a whole-queue FIFO, else a hash of the message group.
    pub fifo_key: u32,
    /// Tag ids in the queue's dictionary; 0 = no tag.
    pub tags: [u16; 3],
    /// Bytes of the body and user attributes, what a receive's byte budget counts;
    /// [`MESSAGE_BYTES_UNKNOWN`] for messages restored from a snapshot that predates it.
    pub message_bytes: u32,
}

const _: () = assert!(core::mem::size_of::<MessageMeta>() <= 32);

/// The size of a message whose size was not recorded (a version 3 snapshot): larger
/// than any byte budget but the unlimited one, so it is delivered only as the first,
/// alone (`ReceiveRequest::oversize_first`), and never pushes an answer past its budget.
pub(crate) const MESSAGE_BYTES_UNKNOWN: u32 = u32::MAX;

/// The bytes a message counts against a receive's budget: body and user attributes. A
/// size past `u32` (the log's batch limit keeps it far below) counts as unknown.
pub(crate) fn message_bytes(body_bytes: usize, attributes_bytes: usize) -> u32 {
    body_bytes
        .checked_add(attributes_bytes)
        .and_then(|bytes| u32::try_from(bytes).ok())
        .unwrap_or(MESSAGE_BYTES_UNKNOWN)
}

#[derive(Clone, Debug)]
pub(crate) struct DelayedMessage {
    pub deliver_at_ms: u64,
    pub meta: MessageMeta,
    /// A release, cancel or check command is on its way to the log.
    pub releasing: bool,
    /// A transactional half message (`Delay::Half`): the checks logged so far
    /// (`Command::Check`); `None` for a delayed or scheduled message.
    pub half: Option<u32>,
}

/// A queue on one partition. Its message state ([`MessageState`]) is allocated when the
/// queue is first used there ([`Store`]), so an idle queue costs this struct, its name
/// and its meta; the tenant's name is shared by its queues (`State::tenant_queue_counts`).
#[derive(Clone, Debug)]
pub(crate) struct Queue {
    pub id: QueueId,
    pub tenant: Arc<str>,
    pub name: Box<str>,
    pub config: QueueConfig,
    /// The create record's timestamp.
    pub created_ms: u64,
    /// Opaque adapter fields from the create, or the latest `SetQueueMeta`.
    pub meta: Box<[u8]>,
    /// Where messages that failed `config.max_consume_count` times go: this queue (of
    /// the same tenant) on the same partition, rather than the group's dead letters
    /// (`Command::SetDeadLetter`).
    pub dead_letter_to: Option<QueueId>,
    pub groups: BTreeMap<GroupId, Group>,
    /// The applied index of the last change to the queue's directory entry (its key in
    /// `DirectoryJournal::changed`); 0 when it predates the journal.
    pub changed_at: u64,
    pub store: Store,
}

/// A queue's messages and what comes with them on one partition: the message table,
/// delayed messages, the tag dictionary, the dedup window, counters.
#[derive(Clone, Debug, Default)]
pub(crate) struct MessageState {
    pub base_seq: u64,
    pub messages: VecDeque<MessageMeta>,
    pub delayed: BTreeMap<MessageId, DelayedMessage>,
    pub tag_ids: HashMap<String, u16>,
    pub tag_names: Vec<String>,
    /// dedup hash -> (expiry, original message)
    pub dedup: HashMap<u64, (u64, MessageId)>,
    pub dedup_order: VecDeque<(u64, u64)>,
    pub sent_total: u64,
    /// The highest message id in `messages`.
    pub max_message_id: u64,
    /// Ids of retained messages that sit behind a larger id (released delayed
    /// messages): with the front, they give the oldest log offset the queue needs.
    pub out_of_order: BTreeSet<u64>,
}

/// A queue's [`MessageState`], allocated on first use: until then it reads as an empty
/// one (`MessageState::default()`, what a fresh queue had), so an idle queue behaves as
/// one that holds its empty state. Changes that are no-ops on an empty state go through
/// [`Store::used_mut`] and leave it unallocated; the rest through [`Store::make`].
#[derive(Clone, Debug, Default)]
pub(crate) struct Store(Option<Box<MessageState>>);

/// What an unallocated [`Store`] reads as.
static NO_MESSAGES: LazyLock<MessageState> = LazyLock::new(MessageState::default);

impl Store {
    pub fn get(&self) -> &MessageState {
        self.0.as_deref().unwrap_or(&NO_MESSAGES)
    }

    /// The state, allocated now if it was not.
    pub fn make(&mut self) -> &mut MessageState {
        self.0.get_or_insert_with(Box::default)
    }

    /// The state if it is allocated.
    pub fn used_mut(&mut self) -> Option<&mut MessageState> {
        self.0.as_deref_mut()
    }

    #[cfg(test)]
    pub fn is_allocated(&self) -> bool {
        self.0.is_some()
    }
}

impl MessageState {
    /// Appends an available message, keeping the retention timer and the out-of-order
    /// index in step.
    fn push_message(
        &mut self,
        meta: MessageMeta,
        queue: QueueId,
        retention_ms: u64,
        retention_timers: &mut TimerQueue<QueueId>,
    ) {
        if self.messages.is_empty() {
            let due = meta.available_ms.saturating_add(retention_ms) + 1;
            retention_timers.insert(due, queue);
        }
        if meta.message_id.0 < self.max_message_id {
            self.out_of_order.insert(meta.message_id.0);
        }
        self.max_message_id = self.max_message_id.max(meta.message_id.0);
        self.messages.push_back(meta);
    }

    pub fn next_seq(&self) -> u64 {
        self.base_seq + self.messages.len() as u64
    }

    /// Whether this is what a queue never used holds (`MessageState::default()`).
    pub fn is_unused(&self) -> bool {
        self.base_seq == 0
            && self.sent_total == 0
            && self.max_message_id == 0
            && self.messages.is_empty()
            && self.delayed.is_empty()
            && self.tag_names.is_empty()
            && self.tag_ids.is_empty()
            && self.dedup.is_empty()
            && self.dedup_order.is_empty()
            && self.out_of_order.is_empty()
    }

    fn intern_tag(&mut self, tag: &str) -> u16 {
        if let Some(id) = self.tag_ids.get(tag) {
            return *id;
        }
        if self.tag_names.len() >= ENGINE_TAGS_PER_QUEUE_MAX {
            // The send was validated against this limit; a replay of an older log with a
            // larger dictionary maps the overflow to "no tag" rather than failing.
            return 0;
        }
        self.tag_names.push(tag.to_string());
        let id = u16::try_from(self.tag_names.len()).expect("bounded by the limit");
        self.tag_ids.insert(tag.to_string(), id);
        id
    }

    fn compile_filter(&mut self, filter: &TagFilter) -> CompiledFilter {
        let ids = filter
            .tags
            .iter()
            .map(|tag| Some(self.intern_tag(tag)).filter(|id| *id != 0));
        CompiledFilter {
            source: filter.clone(),
            ids: ids.collect(),
        }
    }
}

impl Queue {
    /// The pending delayed message `message`, if the queue holds one.
    pub(crate) fn delayed_mut(&mut self, message: MessageId) -> Option<&mut DelayedMessage> {
        self.store.used_mut()?.delayed.get_mut(&message)
    }

    pub fn next_seq(&self) -> u64 {
        self.store.get().next_seq()
    }

    pub fn base_seq(&self) -> u64 {
        self.store.get().base_seq
    }

    pub fn message(&self, seq: u64) -> Option<&MessageMeta> {
        let store = self.store.get();
        message_at(&store.messages, store.base_seq, seq)
    }

    pub fn fifo_key(&self, fifo_group: Option<&str>) -> u32 {
        match self.config.mode {
            QueueMode::Fifo(FifoScope::MessageGroup) => {
                xxh3_64(fifo_group.unwrap_or("").as_bytes()) as u32
            }
            _ => 0,
        }
    }
}

/// A message picked by a receive, before its body is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Picked {
    pub handle: ReceiptHandle,
    pub meta: MessageMeta,
    pub delivery_count: u32,
    /// When the message was first delivered to the group (leader only; this delivery's
    /// time when the leader has no earlier one).
    pub first_delivered_ms: u64,
}

/// Dead-letter lease timers carry the nonce so a stale timer is ignored.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LeaseTimer {
    pub queue: QueueId,
    pub group: GroupId,
    pub seq: u64,
    pub nonce: u64,
    pub dead_letter: bool,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct State {
    /// Each queue boxed: a B-tree node holds 11 entries and, filled by increasing ids,
    /// stays about half full, so an inline `Queue` would cost twice its size per queue.
    pub queues: BTreeMap<QueueId, Box<Queue>>,
    /// Queues by tenant and name (see [`State::queue_by_name`]).
    pub names: NameIndex,
    pub next_queue_id: u32,
    pub next_group_id: u32,
    /// Dead-letter leases only; main-lane leases sit in each group's heap.
    pub lease_timers: TimerQueue<LeaseTimer>,
    /// When a group's earliest main-lane lease may expire.
    pub group_wakeups: TimerQueue<(QueueId, GroupId)>,
    pub wait_timers: TimerQueue<(QueueId, GroupId, u64)>,
    pub delay_timers: TimerQueue<(QueueId, MessageId)>,
    /// When a queue's oldest message may pass its retention.
    pub retention_timers: TimerQueue<QueueId>,
    /// Lease nonces are `boot_epoch << 32 | counter`; a handle from another boot is stale.
    pub next_nonce: u64,
    /// How many times the engine has started (durable `Boot` records).
    pub boot_epoch: u32,
    /// Tenants by name, each the node layer's opaque record (partition 0 only).
    pub tenants: BTreeMap<String, Vec<u8>>,
    /// The node's admin secret, opaque; set once (partition 0 only).
    pub admin_secret: Option<Vec<u8>>,
    /// Applied changes of `tenants` and `admin_secret`, ever (kept in snapshots): it
    /// moves exactly when they change, on every replica alike.
    pub tenant_changes: u64,
    /// Consumer groups' committed offsets (`Command::CommitOffsets`).
    pub committed: super::offsets::CommittedOffsets,
    /// Which queues' directory entries changed when (in memory only).
    pub directory: DirectoryJournal,
    /// Queues per tenant (the quota check at create), kept with `queues`; its keys are
    /// the tenant names the tenant's queues share.
    pub tenant_queue_counts: HashMap<Arc<str>, u32>,
    /// The groups with a move task (`super::moves`), kept with each group's `moving`.
    pub moves: BTreeSet<(QueueId, GroupId)>,
    /// When the leader next moves a batch of the move tasks (leader only).
    pub move_due_ms: Option<u64>,
}

impl State {
    /// The pending delayed message `message` of `queue`, if both exist.
    pub(crate) fn delayed_mut(
        &mut self,
        queue: QueueId,
        message: MessageId,
    ) -> Option<&mut DelayedMessage> {
        self.queues.get_mut(&queue)?.delayed_mut(message)
    }

    pub fn queue(&self, queue: QueueId) -> Result<&Queue, EngineError> {
        self.queues
            .get(&queue)
            .map(|q| &**q)
            .ok_or(EngineError::QueueNotFound)
    }

    pub fn queue_mut(&mut self, queue: QueueId) -> Result<&mut Queue, EngineError> {
        self.queues
            .get_mut(&queue)
            .map(|q| &mut **q)
            .ok_or(EngineError::QueueNotFound)
    }

    pub fn queues_of<'a>(&'a self, tenant: &'a str) -> impl Iterator<Item = &'a Queue> + 'a {
        self.queues
            .values()
            .map(|q| &**q)
            .filter(move |q| &*q.tenant == tenant)
    }

    /// The tenant's queue named `name`.
    pub fn queue_by_name(&self, tenant: &str, name: &str) -> Option<QueueId> {
        self.names.get(&self.queues, tenant, name)
    }

    /// The tenant's name as its queues share it (a new one if it has none).
    pub fn tenant_name(&self, tenant: &str) -> Arc<str> {
        self.tenant_queue_counts
            .get_key_value(tenant)
            .map_or_else(|| Arc::from(tenant), |(shared, _)| shared.clone())
    }

    /// How many queues the tenant owns.
    pub fn queue_count_of(&self, tenant: &str) -> usize {
        self.tenant_queue_counts
            .get(tenant)
            .map_or(0, |count| *count as usize)
    }

    /// Adds a queue to `queues`, the name index and the counts.
    pub fn insert_queue(&mut self, queue: Queue) {
        if let Some(replaced) = self.queues.remove(&queue.id) {
            self.uncount(&replaced.tenant);
            self.names
                .remove(&replaced.tenant, &replaced.name, replaced.id);
        }
        *self
            .tenant_queue_counts
            .entry(queue.tenant.clone())
            .or_default() += 1;
        self.names.insert(&queue.tenant, &queue.name, queue.id);
        self.queues.insert(queue.id, Box::new(queue));
    }

    fn uncount(&mut self, tenant: &str) {
        if let Some(count) = self.tenant_queue_counts.get_mut(tenant) {
            *count -= 1;
            if *count == 0 {
                self.tenant_queue_counts.remove(tenant);
            }
        }
    }

    // ---------------------------------------------------------------- apply (durable)

    /// Applies one durable command. `message_id` is the record's offset, `ts` its time,
    /// `message_bytes` (for a send) its body and user attributes' size.
    pub fn apply(&mut self, command: &Command, message_id: MessageId, ts: u64, message_bytes: u32) {
        // The applied index once this record is applied (`Engine::applied_index`).
        let index = message_id.0 + 1;
        match command {
            Command::CreateQueue {
                queue,
                tenant,
                name,
                config,
                meta,
            } => {
                if self.apply_create_queue(*queue, tenant, name, *config, meta, ts) {
                    let created = self.queues.get_mut(queue).expect("created just now");
                    self.directory.note_change(created, index);
                }
            }
            Command::DeleteQueue { queue } => {
                if let Some(removed) = self.queues.remove(queue) {
                    // A queue that sent its dead letters here keeps them in its groups'
                    // lanes from now on (and repair never meets a target that is gone).
                    for q in self.queues.values_mut() {
                        if q.dead_letter_to == Some(*queue) {
                            q.dead_letter_to = None;
                            self.directory.note_change(q, index);
                        }
                    }
                    self.moves.retain(|(moving, _)| moving != queue);
                    self.committed.remove_queue(*queue);
                    self.uncount(&removed.tenant);
                    self.directory.note_delete(&removed, index);
                    self.names
                        .remove(&removed.tenant, &removed.name, removed.id);
                }
            }
            Command::CreateGroup {
                queue,
                group,
                name,
                start,
            } => self.apply_create_group(*queue, *group, name, *start, index),
            Command::DeleteGroup { queue, group } => {
                self.moves.remove(&(*queue, *group));
                if let Some(q) = self.queues.get_mut(queue) {
                    if q.groups.remove(group).is_some() {
                        self.directory.note_change(q, index);
                    }
                }
            }
            Command::SetFilter {
                queue,
                group,
                filter,
            } => {
                let Some(q) = self.queues.get_mut(queue) else {
                    return;
                };
                let compiled = q.store.make().compile_filter(filter);
                if let Some(g) = q.groups.get_mut(group) {
                    g.filter = Some(compiled);
                }
            }
            Command::Send(meta) => self.apply_send(meta, message_id, ts, message_bytes),
            Command::Release { queue, message } => self.apply_release(*queue, *message, ts),
            Command::Check {
                queue,
                message,
                next_at_ms,
            } => self.apply_check(*queue, *message, *next_at_ms),
            Command::Cancel { queue, message } => {
                if let Some(store) = self.queues.get_mut(queue).and_then(|q| q.store.used_mut()) {
                    store.delayed.remove(message);
                }
            }
            Command::Trim { queue, below_seq } => self.apply_trim(*queue, *below_seq, ts),
            Command::Ack { queue, group, seqs } => self.apply_ack(*queue, *group, seqs),
            Command::Nack { queue, group, seqs } => self.apply_nack(*queue, *group, seqs, ts),
            Command::DeadAck { queue, group, seqs } => {
                let Some(g) = self
                    .queues
                    .get_mut(queue)
                    .and_then(|q| q.groups.get_mut(group))
                else {
                    return;
                };
                for seq in seqs {
                    g.dead.remove(seq);
                }
            }
            Command::Redrive { queue, group } => self.apply_redrive(*queue, *group),
            Command::Boot => {
                self.boot_epoch += 1;
                self.next_nonce = u64::from(self.boot_epoch) << 32;
            }
            Command::SetQueueMeta { queue, meta } => {
                if let Some(q) = self.queues.get_mut(queue) {
                    q.meta = meta.as_slice().into();
                    self.directory.note_change(q, index);
                }
            }
            Command::StartMove {
                queue,
                group,
                to,
                per_second,
            } => self.apply_start_move(*queue, *group, (*to, *per_second), ts),
            Command::StopMove { queue, group } => self.apply_stop_move(*queue, *group),
            Command::SetPartitions { queue, partitions } => {
                if let Some(q) = self.queues.get_mut(queue) {
                    q.config.partitions = *partitions;
                    self.directory.note_change(q, index);
                }
            }
            Command::Move {
                queue,
                group,
                to,
                seqs,
            } => self.apply_move(*queue, *group, *to, seqs, ts),
            Command::SetDeadLetter {
                queue,
                max_consume_count,
                target,
            } => {
                if let Some(q) = self.queues.get_mut(queue) {
                    q.config.max_consume_count = *max_consume_count;
                    q.dead_letter_to = *target;
                    self.directory.note_change(q, index);
                }
            }
            // Raft's own records: the replica acts on them, the queue state does not.
            Command::RaftNoop | Command::Membership { .. } | Command::Delivered { .. } => {}
            Command::PutTenant { name, record } => self.apply_put_tenant(name, record),
            Command::DeleteTenant { name } => {
                if self.tenants.remove(name).is_some() {
                    self.tenant_changes += 1;
                }
            }
            Command::SetAdminSecret { secret } => {
                if self.admin_secret.is_none() {
                    self.admin_secret = Some(secret.clone());
                    self.tenant_changes += 1;
                }
            }
            Command::CommitOffsets { group, offsets } => {
                let queues = &self.queues;
                self.committed
                    .apply(group, offsets, |queue| queues.contains_key(&queue));
            }
        }
    }

    /// Adds or replaces a tenant; a new one past `TENANTS_MAX` is ignored (the engine
    /// refuses it before logging, so only a forged log holds one).
    fn apply_put_tenant(&mut self, name: &str, record: &[u8]) {
        let full = self.tenants.len() >= crate::limits::TENANTS_MAX;
        if full && !self.tenants.contains_key(name) {
            return;
        }
        self.tenants.insert(name.to_string(), record.to_vec());
        self.tenant_changes += 1;
    }

    /// Creates a queue unless the tenant already has one of that name (a repeated
    /// create; `false`); the id counter moves past `queue` either way.
    fn apply_create_queue(
        &mut self,
        queue: QueueId,
        tenant: &str,
        name: &str,
        config: QueueConfig,
        meta: &[u8],
        ts: u64,
    ) -> bool {
        self.next_queue_id = self.next_queue_id.max(queue.0 + 1);
        if self.queue_by_name(tenant, name).is_some() {
            return false;
        }
        let mut created = new_queue(queue, self.tenant_name(tenant), name, config);
        created.created_ms = ts;
        created.meta = meta.into();
        self.insert_queue(created);
        true
    }

    /// Creates a group unless its queue is gone or already has a group of that name; the
    /// id counter moves past `group` either way. A group that starts at the latest
    /// message counts every stored message as done.
    fn apply_create_group(
        &mut self,
        queue: QueueId,
        group: GroupId,
        name: &str,
        start: GroupStart,
        index: u64,
    ) {
        self.next_group_id = self.next_group_id.max(group.0 + 1);
        let Some(q) = self.queues.get_mut(&queue) else {
            return;
        };
        if q.groups.values().any(|g| g.name == name) {
            return;
        }
        let mut created = Group::new(group, name.to_string(), q.base_seq());
        if start == GroupStart::Latest {
            created.done.insert_range(q.base_seq(), q.next_seq());
            created.cursor = q.next_seq();
        }
        q.groups.insert(group, created);
        self.directory.note_change(q, index);
    }

    /// One more check of a half message's open transaction; the next is due at
    /// `next_at_ms`.
    fn apply_check(&mut self, queue: QueueId, message: MessageId, next_at_ms: u64) {
        let Some(delayed) = self.delayed_mut(queue, message) else {
            return;
        };
        let Some(checks) = delayed.half.as_mut() else {
            return;
        };
        *checks = checks.saturating_add(1);
        delayed.deliver_at_ms = next_at_ms;
        delayed.releasing = false;
        self.delay_timers.insert(next_at_ms, (queue, message));
    }

    /// The checks logged so far of half message `message`; `None` when it is not a
    /// held half message.
    pub fn half_checks(&self, queue: QueueId, message: MessageId) -> Option<u32> {
        self.queues
            .get(&queue)?
            .store
            .get()
            .delayed
            .get(&message)?
            .half
    }

    /// Makes a delayed message available (unless a cancel removed it first).
    fn apply_release(&mut self, queue: QueueId, message: MessageId, ts: u64) {
        let Some(q) = self.queues.get_mut(&queue) else {
            return;
        };
        let (id, retention_ms) = (q.id, q.config.retention_ms);
        let Some(store) = q.store.used_mut() else {
            return;
        };
        if let Some(delayed) = store.delayed.remove(&message) {
            // Retention runs from release: a message delayed longer than its
            // queue's retention is still delivered.
            let meta = MessageMeta {
                available_ms: ts,
                ..delayed.meta
            };
            store.push_message(meta, id, retention_ms, &mut self.retention_timers);
        }
    }

    fn apply_send(&mut self, meta: &SendMeta, message_id: MessageId, ts: u64, message_bytes: u32) {
        let Some(q) = self.queues.get_mut(&meta.queue) else {
            return;
        };
        let fifo_key = q.fifo_key(meta.fifo_group.as_deref());
        let (id, config) = (q.id, q.config);
        let store = q.store.make();
        let mut tags = [0u16; 3];
        for (slot, tag) in tags.iter_mut().zip(&meta.tags) {
            *slot = store.intern_tag(tag);
        }
        let message = MessageMeta {
            message_id,
            available_ms: ts,
            fifo_key,
            tags,
            message_bytes,
        };
        expire_dedup(store, ts);
        if meta.dedup_hash != 0 {
            let expires_ms = ts.saturating_add(config.dedup_window_ms);
            store
                .dedup
                .insert(meta.dedup_hash, (expires_ms, message_id));
            store.dedup_order.push_back((expires_ms, meta.dedup_hash));
        }
        store.sent_total += 1;
        if meta.deliver_at_ms > ts {
            let delayed = DelayedMessage {
                deliver_at_ms: meta.deliver_at_ms,
                meta: message,
                releasing: false,
                half: meta.half.then_some(0),
            };
            store.delayed.insert(message_id, delayed);
            self.delay_timers
                .insert(meta.deliver_at_ms, (meta.queue, message_id));
        } else {
            store.push_message(message, id, config.retention_ms, &mut self.retention_timers);
        }
    }

    fn apply_ack(&mut self, queue: QueueId, group: GroupId, seqs: &[u64]) {
        let Some((g, table, _)) = group_parts(&mut self.queues, queue, group) else {
            return;
        };
        for seq in seqs {
            let Some(meta) = table.get(*seq) else {
                continue;
            };
            if !g.finish(*seq, meta.fifo_key) {
                continue;
            }
            if !bugs::enabled(Bug::RedeliverAcked) {
                g.done.insert(*seq);
            }
            g.acked_total += 1;
        }
    }

    fn apply_nack(&mut self, queue: QueueId, group: GroupId, seqs: &[u64], ts: u64) {
        // A dead-letter queue deleted since the policy was set: dead letters stay here.
        let target = self
            .queues
            .get(&queue)
            .and_then(|q| q.dead_letter_to)
            .filter(|target| self.queues.contains_key(target));
        let mut moved = Vec::new();
        let Some((g, table, config)) = group_parts(&mut self.queues, queue, group) else {
            return;
        };
        for seq in seqs {
            let Some(meta) = table.get(*seq) else {
                continue;
            };
            if !g.end_hold_unless_done(*seq, meta.fifo_key) {
                continue;
            }
            let failures = g.failures.entry(*seq).or_insert(0);
            *failures = failures.saturating_add(1);
            let failures = *failures;
            let dead = config.max_consume_count.is_some_and(|max| failures >= max);
            if dead && !bugs::enabled(Bug::NeverDeadLetter) {
                g.failures.remove(seq);
                g.first_delivered.remove(seq);
                g.ready.remove(seq);
                g.done.insert(*seq);
                g.dead_total += 1;
                match target {
                    Some(_) => moved.push((*seq, meta)),
                    None => {
                        g.dead.insert(*seq, DeadLetter::default());
                    }
                }
                continue;
            }
            match config.retry {
                RetryPolicy::Immediate => g.make_visible(*seq),
                RetryPolicy::Backoff => {
                    let index = usize::from(failures - 1).min(RETRY_BACKOFF_MS.len() - 1);
                    let visible_ms = ts.saturating_add(RETRY_BACKOFF_MS[index]);
                    g.ready.remove(seq);
                    g.set_hold(*seq, meta.fifo_key, Some(Hold::Waiting { visible_ms }));
                    self.wait_timers.insert(visible_ms, (queue, group, *seq));
                }
            }
        }
        if let Some(target) = target {
            // In the source's order, whatever the order of the failures.
            moved.sort_by_key(|(seq, _)| *seq);
            let moved: Vec<MessageMeta> = moved.into_iter().map(|(_, meta)| meta).collect();
            self.transfer(queue, target, &moved, ts);
        }
    }

    /// Adds `moved`, messages of queue `from` on this partition, to queue `to`'s
    /// available messages: the same log records (message ids), their tags interned in
    /// `to`'s dictionary, their FIFO key kept (`to` has `from`'s mode), and `to`'s
    /// retention running from `ts`.
    pub(super) fn transfer(&mut self, from: QueueId, to: QueueId, moved: &[MessageMeta], ts: u64) {
        if moved.is_empty() {
            return;
        }
        let Some(source) = self.queues.get(&from) else {
            return;
        };
        let names = &source.store.get().tag_names;
        let tags_of = |meta: &MessageMeta| {
            meta.tags.map(|id| {
                usize::from(id)
                    .checked_sub(1)
                    .and_then(|index| names.get(index).cloned())
            })
        };
        let moved: Vec<(MessageMeta, [Option<String>; 3])> =
            moved.iter().map(|meta| (*meta, tags_of(meta))).collect();
        let Some(q) = self.queues.get_mut(&to) else {
            return;
        };
        let (id, retention_ms) = (q.id, q.config.retention_ms);
        let store = q.store.make();
        for (meta, tags) in moved {
            let mut interned = [0u16; 3];
            for (slot, tag) in interned.iter_mut().zip(tags) {
                *slot = tag.map_or(0, |tag| store.intern_tag(&tag));
            }
            let meta = MessageMeta {
                available_ms: ts,
                tags: interned,
                ..meta
            };
            store.push_message(meta, id, retention_ms, &mut self.retention_timers);
        }
    }

    fn apply_redrive(&mut self, queue: QueueId, group: GroupId) {
        let Some(g) = self
            .queues
            .get_mut(&queue)
            .and_then(|q| q.groups.get_mut(&group))
        else {
            return;
        };
        let dead = std::mem::take(&mut g.dead);
        for seq in dead.into_keys() {
            g.done.remove(seq);
            g.failures.remove(&seq);
            g.make_visible(seq);
        }
    }

    // ---------------------------------------------------------------- leader: receive

    /// Retention, on the serving leader: the cut of each queue whose oldest message
    /// passed its retention by `now`, as `(queue, below_seq)`, to be logged as `Trim`
    /// commands. Applying a cut arms the queue's next deadline; a queue with nothing to
    /// cut yet is armed again here, and a cut that cannot be logged is tried again
    /// ([`State::abort_tick`]). Each queue is looked at once a pass, so duplicate
    /// deadlines of a queue merge rather than multiply.
    pub fn due_trims(&mut self, now: u64) -> Vec<(QueueId, u64)> {
        let mut due = BTreeSet::new();
        while let Some((_, queue)) = self.retention_timers.pop_due(now) {
            due.insert(queue);
        }
        let mut trims = Vec::new();
        for queue in due {
            let Some(q) = self.queues.get(&queue) else {
                continue;
            };
            let cutoff = now.saturating_sub(q.config.retention_ms);
            let store = q.store.get();
            let expired = store
                .messages
                .iter()
                .take_while(|meta| meta.available_ms < cutoff)
                .count();
            if expired > 0 {
                trims.push((queue, store.base_seq + expired as u64));
            } else if let Some(front) = store.messages.front() {
                let due = front.available_ms.saturating_add(q.config.retention_ms) + 1;
                self.retention_timers.insert(due.max(now + 1), queue);
            }
        }
        trims
    }

    /// Retention deadlines are the leader's: a replica that does not lead drops those
    /// that came due (they only accumulate otherwise; a new leader arms them afresh in
    /// [`State::reset_leader_state`]).
    pub fn drop_due_trims(&mut self, now: u64) {
        while self.retention_timers.pop_due(now).is_some() {}
    }

    /// Applies a logged cut: the queue's messages below `below_seq` go, with every
    /// group's record of them, and dedup entries whose window ended by the command's
    /// time `ts`.
    fn apply_trim(&mut self, queue: QueueId, below_seq: u64, ts: u64) {
        let Some(q) = self.queues.get_mut(&queue) else {
            return;
        };
        let Queue {
            groups,
            store,
            config,
            ..
        } = &mut **q;
        // A queue never used here has nothing to cut and no dedup entry to expire.
        let Some(store) = store.used_mut() else {
            return;
        };
        let new_base = below_seq.min(store.next_seq());
        if new_base > store.base_seq {
            let MessageState {
                messages,
                base_seq,
                out_of_order,
                ..
            } = &mut *store;
            for g in groups.values_mut() {
                let key_of = |seq| message_at(messages, *base_seq, seq).map_or(0, |m| m.fifo_key);
                g.trim_below(new_base, key_of);
            }
            let removed = usize::try_from(new_base - *base_seq).expect("fits");
            for meta in messages.drain(..removed) {
                out_of_order.remove(&meta.message_id.0);
            }
            *base_seq = new_base;
        }
        expire_dedup(store, ts);
        if let Some(front) = store.messages.front() {
            let due = front.available_ms.saturating_add(config.retention_ms) + 1;
            self.retention_timers.insert(due.max(ts + 1), queue);
        }
    }

    pub fn next_deadline_ms(&self) -> Option<u64> {
        [
            self.lease_timers.next_deadline_ms(),
            self.group_wakeups.next_deadline_ms(),
            self.wait_timers.next_deadline_ms(),
            self.delay_timers.next_deadline_ms(),
            self.retention_timers.next_deadline_ms(),
            self.move_due_ms,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// The lowest log offset any live message or pending delayed message needs.
    pub fn oldest_needed_offset(&self) -> Option<u64> {
        self.queues
            .values()
            .flat_map(|q| {
                let store = q.store.get();
                let oldest = store.messages.front().map(|m| m.message_id.0);
                let released = store.out_of_order.first().copied();
                let delayed = store.delayed.keys().next().map(|m| m.0);
                oldest.into_iter().chain(released).chain(delayed)
            })
            .min()
    }

    pub fn group_stats(&self, queue: QueueId, group: GroupId) -> Result<GroupStats, EngineError> {
        let q = self.queue(queue)?;
        let g = q.groups.get(&group).ok_or(EngineError::GroupNotFound)?;
        Ok(GroupStats {
            backlog: g.done.count_missing(q.base_seq(), q.next_seq()),
            in_flight: g.leased_count,
            dead_letters: g.dead.len() as u64,
            acked_total: g.acked_total,
            delivered_total: g.delivered_total,
            moved_total: g.moved_total,
            move_remaining: g.moving.map_or(0, |task| task.remaining),
            moving: u64::from(g.moving.is_some()),
            oldest_available_ms: oldest_unfinished(q, g),
        })
    }

    /// Clears leader-only state, as after a restart or a loss of leadership.
    pub fn reset_leader_state(&mut self) {
        self.lease_timers.clear();
        self.group_wakeups.clear();
        for q in self.queues.values_mut() {
            let Queue { groups, store, .. } = &mut **q;
            if let Some(store) = store.used_mut() {
                for d in store.delayed.values_mut() {
                    d.releasing = false;
                }
            }
            let MessageState {
                messages, base_seq, ..
            } = store.get();
            for g in groups.values_mut() {
                let transient: Vec<u64> = g
                    .holds
                    .iter()
                    .filter(|(_, hold)| !matches!(hold, Hold::Waiting { .. }))
                    .map(|(seq, _)| *seq)
                    .collect();
                for seq in transient {
                    let key = message_at(messages, *base_seq, seq).map_or(0, |m| m.fifo_key);
                    g.set_hold(seq, key, None);
                }
                for dead in g.dead.values_mut() {
                    *dead = DeadLetter::default();
                }
                g.first_delivered.clear();
                g.attempts.clear();
                g.ready.clear();
                g.lease_heap.clear();
                g.cursor = *base_seq;
            }
        }
        self.delay_timers.clear();
        self.retention_timers.clear();
        self.move_due_ms = (!self.moves.is_empty()).then_some(0);
        for q in self.queues.values() {
            let store = q.store.get();
            if let Some(front) = store.messages.front() {
                let due = front.available_ms.saturating_add(q.config.retention_ms) + 1;
                self.retention_timers.insert(due, q.id);
            }
            for (message, delayed) in &store.delayed {
                self.delay_timers
                    .insert(delayed.deliver_at_ms, (q.id, *message));
            }
        }
    }
}

/// When the oldest message `g` has not finished became available (0: none). Messages
/// join a queue in time order, so it is the first sequence number the group's done set
/// lacks (its ranges are never adjacent: the end of one is missing).
fn oldest_unfinished(q: &Queue, g: &Group) -> u64 {
    let base = q.base_seq();
    let first = g.done.range_of(base).map_or(base, |(_, end)| end);
    if first >= q.next_seq() {
        return 0;
    }
    q.message(first).map_or(0, |meta| meta.available_ms)
}

/// Drops dedup entries whose window ended by `now`.
fn expire_dedup(q: &mut MessageState, now: u64) {
    while let Some((expires_ms, hash)) = q.dedup_order.front().copied() {
        if expires_ms > now {
            break;
        }
        q.dedup_order.pop_front();
        if q.dedup.get(&hash).is_some_and(|(e, _)| *e == expires_ms) {
            q.dedup.remove(&hash);
        }
    }
}

/// A queue's messages as group operations read them.
#[derive(Clone, Copy)]
pub(crate) struct MessageTable<'a> {
    messages: &'a VecDeque<MessageMeta>,
    base_seq: u64,
}

impl MessageTable<'_> {
    pub fn get(&self, seq: u64) -> Option<MessageMeta> {
        message_at(self.messages, self.base_seq, seq).copied()
    }
}

/// A consumer group with its queue's message table and config, borrowed apart so the
/// rest of the state (timers) stays usable.
pub(crate) fn group_parts(
    queues: &mut BTreeMap<QueueId, Box<Queue>>,
    queue: QueueId,
    group: GroupId,
) -> Option<(&mut Group, MessageTable<'_>, &QueueConfig)> {
    let Queue {
        groups,
        store,
        config,
        ..
    } = &mut **queues.get_mut(&queue)?;
    let store = store.get();
    let table = MessageTable {
        messages: &store.messages,
        base_seq: store.base_seq,
    };
    Some((groups.get_mut(&group)?, table, config))
}

pub(crate) fn message_at(
    messages: &VecDeque<MessageMeta>,
    base: u64,
    seq: u64,
) -> Option<&MessageMeta> {
    let index = seq.checked_sub(base)?;
    messages.get(usize::try_from(index).ok()?)
}

/// A queue with no message state (allocated on first use), `tenant` shared with the
/// tenant's other queues ([`State::tenant_name`]).
pub(crate) fn new_queue(id: QueueId, tenant: Arc<str>, name: &str, config: QueueConfig) -> Queue {
    Queue {
        id,
        tenant,
        name: name.into(),
        config,
        created_ms: 0,
        meta: Box::default(),
        dead_letter_to: None,
        groups: BTreeMap::new(),
        changed_at: 0,
        store: Store::default(),
    }
}

/// Queues by tenant and name, holding no copy of either: each queue's id under the hash
/// of its tenant and name, the names compared through `State::queues` (a hash collision
/// costs one more comparison, never a wrong answer). Deterministic: nothing iterates it.
#[derive(Clone, Debug, Default)]
pub(crate) struct NameIndex(BTreeSet<(u64, QueueId)>);

impl NameIndex {
    fn hash(tenant: &str, name: &str) -> u64 {
        xxh3_64_with_seed(name.as_bytes(), xxh3_64(tenant.as_bytes()))
    }

    /// The queue of `queues` that `tenant` owns under `name`.
    pub fn get(
        &self,
        queues: &BTreeMap<QueueId, Box<Queue>>,
        tenant: &str,
        name: &str,
    ) -> Option<QueueId> {
        let hash = NameIndex::hash(tenant, name);
        self.0
            .range((hash, QueueId(0))..=(hash, QueueId(u32::MAX)))
            .map(|(_, id)| *id)
            .find(|id| {
                queues
                    .get(id)
                    .is_some_and(|q| &*q.tenant == tenant && &*q.name == name)
            })
    }

    pub fn insert(&mut self, tenant: &str, name: &str, queue: QueueId) {
        self.0.insert((NameIndex::hash(tenant, name), queue));
    }

    pub fn remove(&mut self, tenant: &str, name: &str, queue: QueueId) {
        self.0.remove(&(NameIndex::hash(tenant, name), queue));
    }
}

/// Which queues' directory entries (what `Engine::queue_info` gives less its counts:
/// name, config, meta, groups) changed at which applied index, so a reader that holds
/// the directory as of index N reads only what changed after it
/// (`Engine::directory_since`) rather than every queue. In memory only, and the same on
/// every replica (indexes are the log's): a state decoded from a snapshot of index A
/// starts with `floor` A, and a reader behind the floor reads everything.
#[derive(Clone, Debug, Default)]
pub(crate) struct DirectoryJournal {
    /// Live queues by the index of their last change past `floor`.
    changed: BTreeSet<(u64, QueueId)>,
    /// Deleted queues by the index of their deletion; the oldest are let go past
    /// `DIRECTORY_DELETIONS_MAX`, raising `floor`.
    deleted: BTreeSet<(u64, QueueId)>,
    /// Changes at or below this index may be missing from the journal.
    pub floor: u64,
}

impl DirectoryJournal {
    pub fn starting_at(floor: u64) -> DirectoryJournal {
        DirectoryJournal {
            floor,
            ..DirectoryJournal::default()
        }
    }

    fn note_change(&mut self, queue: &mut Queue, index: u64) {
        self.changed.remove(&(queue.changed_at, queue.id));
        self.changed.insert((index, queue.id));
        queue.changed_at = index;
    }

    fn note_delete(&mut self, queue: &Queue, index: u64) {
        self.changed.remove(&(queue.changed_at, queue.id));
        self.deleted.insert((index, queue.id));
        if self.deleted.len() > crate::limits::DIRECTORY_DELETIONS_MAX {
            let (oldest, _) = self.deleted.pop_first().expect("over the bound");
            self.floor = self.floor.max(oldest);
        }
    }

    /// The highest index any change is known at (the floor when none is).
    pub fn last_change(&self) -> u64 {
        let changed = self.changed.last().map_or(0, |(index, _)| *index);
        let deleted = self.deleted.last().map_or(0, |(index, _)| *index);
        self.floor.max(changed).max(deleted)
    }

    /// Queues changed and queues deleted after index `since`, each by increasing index;
    /// `None` when the journal may miss some (`since` is below the floor). A reader
    /// applies the deletions first: a queue deleted and created again with its id is
    /// live, and listed among the changed.
    pub fn since(&self, since: u64) -> Option<(Vec<QueueId>, Vec<QueueId>)> {
        if since < self.floor {
            return None;
        }
        let after = (since.saturating_add(1), QueueId(0));
        let changed = self.changed.range(after..).map(|(_, id)| *id).collect();
        let deleted = self.deleted.range(after..).map(|(_, id)| *id).collect();
        Some((changed, deleted))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::dispatch::PickLimits;
    use crate::engine::snapshot::{decode, encode};
    use crate::engine::types::{GroupStart, RetryPolicy};

    const NOW: u64 = 1_000_000;
    const QUEUE: QueueId = QueueId(0);
    const GROUP: GroupId = GroupId(0);

    fn config() -> QueueConfig {
        QueueConfig {
            mode: QueueMode::Normal,
            retention_ms: 3_600_000,
            max_consume_count: Some(3),
            retry: RetryPolicy::Immediate,
            dedup_window_ms: 60_000,
            partitions: 0,
        }
    }

    /// A state with queue 0 and its group 0, the queue's message state allocated up
    /// front when `allocated` (what every queue had before it was made lazy).
    fn created(allocated: bool) -> State {
        let mut state = State::default();
        let create = Command::CreateQueue {
            queue: QUEUE,
            tenant: "t".into(),
            name: "q".into(),
            config: config(),
            meta: b"m".to_vec(),
        };
        state.apply(&create, MessageId(0), NOW, 0);
        let group = Command::CreateGroup {
            queue: QUEUE,
            group: GROUP,
            name: "g".into(),
            start: GroupStart::Latest,
        };
        state.apply(&group, MessageId(1), NOW, 0);
        if allocated {
            state.queue_mut(QUEUE).unwrap().store.make();
        }
        state
    }

    fn receive(state: &mut State, now: u64) -> Vec<Picked> {
        let limits = PickLimits {
            messages_max: 10,
            bytes_max: u64::MAX,
            oversize_first: true,
        };
        state
            .receive(QUEUE, GROUP, limits, (30_000, None), u64::MAX, now)
            .unwrap()
    }

    fn send(deliver_at_ms: u64, tag: &str, dedup_hash: u64) -> Command {
        Command::Send(SendMeta {
            queue: QUEUE,
            deliver_at_ms,
            fifo_group: None,
            tags: vec![tag.to_string()],
            dedup_hash,
            half: false,
        })
    }

    /// Goal: a queue that was never used on a partition holds no message state, and
    /// nothing that reads it or changes nothing on it allocates one; its first send
    /// does, and from then on it behaves exactly as a queue whose state was allocated
    /// at create (the layout before the state was made lazy). Method: the same commands
    /// and leader passes on an idle state and an eagerly allocated one; their receives,
    /// statistics, oldest needed offset and snapshot encodings must agree at each step.
    #[test]
    fn an_idle_queue_allocates_no_message_state_until_its_first_send() {
        let mut idle = created(false);
        let mut eager = created(true);
        assert!(!idle.queue(QUEUE).unwrap().store.is_allocated());
        let later = NOW + 10 * 3_600_000;
        for state in [&mut idle, &mut eager] {
            assert!(receive(state, NOW).is_empty());
            let nothing = [
                Command::Cancel {
                    queue: QUEUE,
                    message: MessageId(77),
                },
                Command::Release {
                    queue: QUEUE,
                    message: MessageId(77),
                },
                Command::Trim {
                    queue: QUEUE,
                    below_seq: 5,
                },
                Command::Ack {
                    queue: QUEUE,
                    group: GROUP,
                    seqs: vec![0],
                },
            ];
            for (offset, command) in (2..).zip(&nothing) {
                state.apply(command, MessageId(offset), NOW, 0);
            }
            assert!(state.due_trims(later).is_empty());
            assert!(state.due_releases(later).is_empty());
            state.reset_leader_state();
            assert_eq!(state.oldest_needed_offset(), None);
        }
        assert!(!idle.queue(QUEUE).unwrap().store.is_allocated());
        assert_eq!(
            encode(&idle, 6, 0),
            encode(&eager, 6, 0),
            "idle encodes as empty"
        );
        let (decoded, _) = decode(&encode(&eager, 6, 0)).unwrap();
        assert!(
            !decoded.queue(QUEUE).unwrap().store.is_allocated(),
            "an empty queue decodes without message state"
        );

        // First use: a tagged and deduplicated send, a delayed one, its release, a
        // receive, an ack, and retention.
        let mut picks = Vec::new();
        for state in [&mut idle, &mut eager] {
            state.apply(&send(0, "red", 0x11), MessageId(6), NOW, 10);
            state.apply(&send(NOW + 5, "blue", 0), MessageId(7), NOW, 20);
            assert_eq!(state.due_releases(NOW + 5), vec![(QUEUE, MessageId(7))]);
            let release = Command::Release {
                queue: QUEUE,
                message: MessageId(7),
            };
            state.apply(&release, MessageId(8), NOW + 5, 0);
            let picked = receive(state, NOW + 5);
            let ack = Command::Ack {
                queue: QUEUE,
                group: GROUP,
                seqs: vec![picked[0].handle.seq],
            };
            state.apply(&ack, MessageId(9), NOW + 5, 0);
            let stats = state.group_stats(QUEUE, GROUP).unwrap();
            let oldest = state.oldest_needed_offset();
            let store = state.queue(QUEUE).unwrap().store.get();
            let dedup = store.dedup.get(&0x11).copied();
            picks.push((picked, stats, oldest, store.tag_names.clone(), dedup));
        }
        assert!(idle.queue(QUEUE).unwrap().store.is_allocated());
        assert_eq!(picks[0], picks[1]);
        assert_eq!(picks[0].0.len(), 2, "both messages delivered");
        assert_eq!(encode(&idle, 10, 0), encode(&eager, 10, 0));
        for state in [&mut idle, &mut eager] {
            let trims = state.due_trims(later);
            assert_eq!(trims, vec![(QUEUE, 2)]);
            let trim = Command::Trim {
                queue: QUEUE,
                below_seq: 2,
            };
            state.apply(&trim, MessageId(10), later, 0);
        }
        assert_eq!(encode(&idle, 11, 0), encode(&eager, 11, 0));
        assert_eq!(idle.queue(QUEUE).unwrap().base_seq(), 2);
    }

    /// Goal: the name index finds a queue by tenant and name without holding either,
    /// gives the right queue when two share a hash, forgets a deleted queue, and the
    /// queues of a tenant share one copy of its name. Method: forge a collision by
    /// filing a second queue under the first's hash.
    #[test]
    fn the_name_index_compares_names_and_shares_the_tenant() {
        let mut state = State::default();
        for (id, tenant, name) in [(0, "t", "a"), (1, "t", "b"), (2, "u", "a")] {
            let create = Command::CreateQueue {
                queue: QueueId(id),
                tenant: tenant.into(),
                name: name.into(),
                config: config(),
                meta: Vec::new(),
            };
            state.apply(&create, MessageId(u64::from(id)), NOW, 0);
        }
        let repeat = Command::CreateQueue {
            queue: QueueId(3),
            tenant: "t".into(),
            name: "a".into(),
            config: config(),
            meta: Vec::new(),
        };
        state.apply(&repeat, MessageId(3), NOW, 0);
        assert_eq!(state.queues.len(), 3, "a repeated name creates nothing");
        assert_eq!(state.queue_by_name("t", "a"), Some(QueueId(0)));
        assert_eq!(state.queue_by_name("t", "b"), Some(QueueId(1)));
        assert_eq!(state.queue_by_name("u", "a"), Some(QueueId(2)));
        assert_eq!(state.queue_by_name("u", "b"), None);
        let (a, b) = (&state.queues[&QueueId(0)], &state.queues[&QueueId(1)]);
        assert!(Arc::ptr_eq(&a.tenant, &b.tenant));

        // Queue 1 ("b") also filed under the hash of ("t", "a"): ordered after queue 0,
        // so a lookup of "a" meets it only after, a lookup of a colliding unknown name
        // meets both and takes neither.
        state
            .names
            .0
            .insert((NameIndex::hash("t", "a"), QueueId(1)));
        assert_eq!(state.queue_by_name("t", "a"), Some(QueueId(0)));
        state
            .names
            .0
            .insert((NameIndex::hash("t", "c"), QueueId(0)));
        assert_eq!(state.queue_by_name("t", "c"), None);

        state.apply(
            &Command::DeleteQueue { queue: QueueId(0) },
            MessageId(4),
            NOW,
            0,
        );
        assert_eq!(state.queue_by_name("t", "a"), None);
        assert_eq!(state.queue_by_name("t", "b"), Some(QueueId(1)));
        let (decoded, _) = decode(&encode(&state, 5, 0)).unwrap();
        assert_eq!(decoded.queue_by_name("t", "b"), Some(QueueId(1)));
        assert_eq!(decoded.queue_by_name("u", "a"), Some(QueueId(2)));
        assert_eq!(decoded.queue_count_of("t"), 1);
    }
}
