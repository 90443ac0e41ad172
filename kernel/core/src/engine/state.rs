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

use xxhash_rust::xxh3::xxh3_64;

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
    /// A release command is on its way to the log.
    pub releasing: bool,
}

#[derive(Clone, Debug)]
pub(crate) struct Queue {
    pub id: QueueId,
    pub tenant: String,
    pub name: String,
    pub config: QueueConfig,
    /// The create record's timestamp.
    pub created_ms: u64,
    /// Opaque adapter fields from the create, or the latest `SetQueueMeta`.
    pub meta: Vec<u8>,
    pub base_seq: u64,
    pub messages: VecDeque<MessageMeta>,
    pub delayed: BTreeMap<MessageId, DelayedMessage>,
    pub tag_ids: HashMap<String, u16>,
    pub tag_names: Vec<String>,
    /// dedup hash -> (expiry, original message)
    pub dedup: HashMap<u64, (u64, MessageId)>,
    pub dedup_order: VecDeque<(u64, u64)>,
    pub groups: BTreeMap<GroupId, Group>,
    pub sent_total: u64,
    /// The highest message id in `messages`.
    pub max_message_id: u64,
    /// Ids of retained messages that sit behind a larger id (released delayed
    /// messages): with the front, they give the oldest log offset the queue needs.
    pub out_of_order: BTreeSet<u64>,
    /// The applied index of the last change to the queue's directory entry (its key in
    /// `DirectoryJournal::changed`); 0 when it predates the journal.
    pub changed_at: u64,
}

impl Queue {
    /// Appends an available message, keeping the retention timer and the out-of-order
    /// index in step.
    fn push_message(&mut self, meta: MessageMeta, retention_timers: &mut TimerQueue<QueueId>) {
        if self.messages.is_empty() {
            let due = meta.available_ms.saturating_add(self.config.retention_ms) + 1;
            retention_timers.insert(due, self.id);
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

    pub fn message(&self, seq: u64) -> Option<&MessageMeta> {
        let index = seq.checked_sub(self.base_seq)?;
        self.messages.get(usize::try_from(index).ok()?)
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

    pub fn fifo_key(&self, fifo_group: Option<&str>) -> u32 {
        match self.config.mode {
            QueueMode::Fifo(FifoScope::MessageGroup) => {
                xxh3_64(fifo_group.unwrap_or("").as_bytes()) as u32
            }
            _ => 0,
        }
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

/// A message picked by a receive, before its body is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Picked {
    pub handle: ReceiptHandle,
    pub meta: MessageMeta,
    pub delivery_count: u32,
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
    pub queues: BTreeMap<QueueId, Queue>,
    pub names: HashMap<(String, String), QueueId>,
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
    /// Which queues' directory entries changed when (in memory only).
    pub directory: DirectoryJournal,
    /// Queues per tenant (the quota check at create), kept with `queues`.
    pub tenant_queue_counts: HashMap<String, u32>,
}

impl State {
    pub fn queue(&self, queue: QueueId) -> Result<&Queue, EngineError> {
        self.queues.get(&queue).ok_or(EngineError::QueueNotFound)
    }

    pub fn queue_mut(&mut self, queue: QueueId) -> Result<&mut Queue, EngineError> {
        self.queues
            .get_mut(&queue)
            .ok_or(EngineError::QueueNotFound)
    }

    pub fn queues_of<'a>(&'a self, tenant: &'a str) -> impl Iterator<Item = &'a Queue> + 'a {
        self.queues.values().filter(move |q| q.tenant == tenant)
    }

    /// How many queues the tenant owns.
    pub fn queue_count_of(&self, tenant: &str) -> usize {
        self.tenant_queue_counts
            .get(tenant)
            .map_or(0, |count| *count as usize)
    }

    /// Adds a queue to `queues` and the counts.
    pub fn insert_queue(&mut self, queue: Queue) {
        *self
            .tenant_queue_counts
            .entry(queue.tenant.clone())
            .or_default() += 1;
        if let Some(replaced) = self.queues.insert(queue.id, queue) {
            self.uncount(&replaced.tenant);
        }
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
                    self.uncount(&removed.tenant);
                    self.directory.note_delete(&removed, index);
                    self.names.remove(&(removed.tenant, removed.name));
                }
            }
            Command::CreateGroup {
                queue,
                group,
                name,
                start,
            } => self.apply_create_group(*queue, *group, name, *start, index),
            Command::DeleteGroup { queue, group } => {
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
                let compiled = q.compile_filter(filter);
                if let Some(g) = q.groups.get_mut(group) {
                    g.filter = Some(compiled);
                }
            }
            Command::Send(meta) => self.apply_send(meta, message_id, ts, message_bytes),
            Command::Release { queue, message } => self.apply_release(*queue, *message, ts),
            Command::Cancel { queue, message } => {
                if let Some(q) = self.queues.get_mut(queue) {
                    q.delayed.remove(message);
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
                    q.meta.clone_from(meta);
                    self.directory.note_change(q, index);
                }
            }
            // Raft's own records: the replica acts on them, the queue state does not.
            Command::RaftNoop | Command::Membership { .. } => {}
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
        let key = (tenant.to_string(), name.to_string());
        if self.names.contains_key(&key) {
            return false;
        }
        self.names.insert(key, queue);
        let mut created = new_queue(queue, tenant, name, config);
        created.created_ms = ts;
        created.meta = meta.to_vec();
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
        let mut created = Group::new(group, name.to_string(), q.base_seq);
        if start == GroupStart::Latest {
            created.done.insert_range(q.base_seq, q.next_seq());
            created.cursor = q.next_seq();
        }
        q.groups.insert(group, created);
        self.directory.note_change(q, index);
    }

    /// Makes a delayed message available (unless a cancel removed it first).
    fn apply_release(&mut self, queue: QueueId, message: MessageId, ts: u64) {
        let Some(q) = self.queues.get_mut(&queue) else {
            return;
        };
        if let Some(delayed) = q.delayed.remove(&message) {
            // Retention runs from release: a message delayed longer than its
            // queue's retention is still delivered.
            let meta = MessageMeta {
                available_ms: ts,
                ..delayed.meta
            };
            q.push_message(meta, &mut self.retention_timers);
        }
    }

    fn apply_send(&mut self, meta: &SendMeta, message_id: MessageId, ts: u64, message_bytes: u32) {
        let Some(q) = self.queues.get_mut(&meta.queue) else {
            return;
        };
        let mut tags = [0u16; 3];
        for (slot, tag) in tags.iter_mut().zip(&meta.tags) {
            *slot = q.intern_tag(tag);
        }
        let fifo_key = q.fifo_key(meta.fifo_group.as_deref());
        let message = MessageMeta {
            message_id,
            available_ms: ts,
            fifo_key,
            tags,
            message_bytes,
        };
        expire_dedup(q, ts);
        if meta.dedup_hash != 0 {
            let expires_ms = ts.saturating_add(q.config.dedup_window_ms);
            q.dedup.insert(meta.dedup_hash, (expires_ms, message_id));
            q.dedup_order.push_back((expires_ms, meta.dedup_hash));
        }
        q.sent_total += 1;
        if meta.deliver_at_ms > ts {
            let delayed = DelayedMessage {
                deliver_at_ms: meta.deliver_at_ms,
                meta: message,
                releasing: false,
            };
            q.delayed.insert(message_id, delayed);
            self.delay_timers
                .insert(meta.deliver_at_ms, (meta.queue, message_id));
        } else {
            q.push_message(message, &mut self.retention_timers);
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
            if !g.end_hold_unless_done(*seq, meta.fifo_key) {
                continue;
            }
            g.failures.remove(seq);
            g.ready.remove(seq);
            if !bugs::enabled(Bug::RedeliverAcked) {
                g.done.insert(*seq);
            }
            g.acked_total += 1;
        }
    }

    fn apply_nack(&mut self, queue: QueueId, group: GroupId, seqs: &[u64], ts: u64) {
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
                g.ready.remove(seq);
                g.done.insert(*seq);
                g.dead.insert(*seq, DeadLetter::default());
                g.dead_total += 1;
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
            let expired = q
                .messages
                .iter()
                .take_while(|meta| meta.available_ms < cutoff)
                .count();
            if expired > 0 {
                trims.push((queue, q.base_seq + expired as u64));
            } else if let Some(front) = q.messages.front() {
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
        let new_base = below_seq.min(q.next_seq());
        if new_base > q.base_seq {
            let Queue {
                groups,
                messages,
                base_seq,
                out_of_order,
                ..
            } = q;
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
        expire_dedup(q, ts);
        if let Some(front) = q.messages.front() {
            let due = front.available_ms.saturating_add(q.config.retention_ms) + 1;
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
                let oldest = q.messages.front().map(|m| m.message_id.0);
                let released = q.out_of_order.first().copied();
                let delayed = q.delayed.keys().next().map(|m| m.0);
                oldest.into_iter().chain(released).chain(delayed)
            })
            .min()
    }

    pub fn group_stats(&self, queue: QueueId, group: GroupId) -> Result<GroupStats, EngineError> {
        let q = self.queue(queue)?;
        let g = q.groups.get(&group).ok_or(EngineError::GroupNotFound)?;
        Ok(GroupStats {
            backlog: g.done.count_missing(q.base_seq, q.next_seq()),
            in_flight: g.leased_count,
            dead_letters: g.dead.len() as u64,
            acked_total: g.acked_total,
            delivered_total: g.delivered_total,
        })
    }

    /// Clears leader-only state, as after a restart or a loss of leadership.
    pub fn reset_leader_state(&mut self) {
        self.lease_timers.clear();
        self.group_wakeups.clear();
        for q in self.queues.values_mut() {
            let Queue {
                groups,
                messages,
                base_seq,
                delayed,
                ..
            } = q;
            for d in delayed.values_mut() {
                d.releasing = false;
            }
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
                g.ready.clear();
                g.lease_heap.clear();
                g.cursor = *base_seq;
            }
        }
        self.delay_timers.clear();
        self.retention_timers.clear();
        for q in self.queues.values() {
            if let Some(front) = q.messages.front() {
                let due = front.available_ms.saturating_add(q.config.retention_ms) + 1;
                self.retention_timers.insert(due, q.id);
            }
            for (message, delayed) in &q.delayed {
                self.delay_timers
                    .insert(delayed.deliver_at_ms, (q.id, *message));
            }
        }
    }
}

/// Drops dedup entries whose window ended by `now`.
fn expire_dedup(q: &mut Queue, now: u64) {
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
    queues: &mut BTreeMap<QueueId, Queue>,
    queue: QueueId,
    group: GroupId,
) -> Option<(&mut Group, MessageTable<'_>, &QueueConfig)> {
    let Queue {
        groups,
        messages,
        base_seq,
        config,
        ..
    } = queues.get_mut(&queue)?;
    let table = MessageTable {
        messages,
        base_seq: *base_seq,
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

pub(crate) fn new_queue(id: QueueId, tenant: &str, name: &str, config: QueueConfig) -> Queue {
    Queue {
        id,
        tenant: tenant.to_string(),
        name: name.to_string(),
        config,
        created_ms: 0,
        meta: Vec::new(),
        base_seq: 0,
        messages: VecDeque::new(),
        delayed: BTreeMap::new(),
        tag_ids: HashMap::new(),
        tag_names: Vec::new(),
        dedup: HashMap::new(),
        dedup_order: VecDeque::new(),
        groups: BTreeMap::new(),
        sent_total: 0,
        max_message_id: 0,
        out_of_order: BTreeSet::new(),
        changed_at: 0,
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
