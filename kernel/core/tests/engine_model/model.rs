//! The reference model of the queue engine for `engine_model.rs`: the delivery contract
//! written down as plainly as possible (vectors, linear scans, no indexes, no caches), from
//! the semantics in the test's header rather than from the engine's code. It must stay
//! obviously right: when it disagrees with the engine, the engine is the suspect.
//!
//! Identities are the model's own: a queue and a group are slots in vectors (deleted ones
//! stay as tombstones), a message is its index in `Model::messages`, a delivery is a lease
//! number. The harness maps engine ids onto these.

use sluice_core::engine::types::{
    AckKind, AckOutcome, Delay, EngineError, FifoScope, GroupStart, GroupStats, HandleError,
    QueueConfig, QueueMode, RetryPolicy, TagFilter, TagMatch, RETRY_BACKOFF_MS,
};

/// Where one message stands for one group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lane {
    Available,
    InFlight {
        lease: u64,
        deadline_ms: u64,
    },
    /// Failed with back-off; available again once `visible_ms` has come.
    Waiting {
        visible_ms: u64,
    },
    /// Acked (in the main lane or from the dead letters).
    Done,
    /// A dead letter, perhaps leased in the dead-letter lane as (lease, deadline).
    Dead {
        lease: Option<(u64, u64)>,
    },
}

#[derive(Clone, Debug)]
pub struct Message {
    pub queue: usize,
    pub body: String,
    /// Bytes of body and attributes: what a receive's byte budget counts.
    pub bytes: u64,
    pub tags: Vec<String>,
    pub fifo_group: Option<String>,
    pub sent_ms: u64,
    /// Pending delay: released by the first tick at or after this time.
    pub deliver_at_ms: Option<u64>,
    /// Index in the queue's availability order, once available.
    pub position: Option<usize>,
    /// When it became available (sent, or released from its delay): retention runs from
    /// here (docs/semantics.md), while deliveries report `sent_ms`.
    pub available_ms: Option<u64>,
    pub cancelled: bool,
    /// A transactional half message whose transaction is open: the checks so far.
    pub half: Option<u32>,
    /// Deleted by retention.
    pub removed: bool,
    /// A dead letter moved to its queue's dead-letter target: the message it was first
    /// sent as (the same engine message, the same log record).
    pub moved_from: Option<usize>,
}

#[derive(Clone, Debug)]
pub struct Group {
    pub name: String,
    pub deleted: bool,
    /// The group sees the queue's `order[start..]`.
    pub start: usize,
    pub filter: Option<TagFilter>,
    /// By message index; messages past the end are `Available`.
    pub lanes: Vec<Lane>,
    pub failures: Vec<u16>,
}

impl Group {
    pub fn lane(&self, message: usize) -> Lane {
        self.lanes.get(message).copied().unwrap_or(Lane::Available)
    }

    fn set_lane(&mut self, message: usize, lane: Lane) {
        if self.lanes.len() <= message {
            self.lanes.resize(message + 1, Lane::Available);
        }
        self.lanes[message] = lane;
    }

    pub fn failure_count(&self, message: usize) -> u16 {
        self.failures.get(message).copied().unwrap_or(0)
    }

    fn set_failures(&mut self, message: usize, count: u16) {
        if self.failures.len() <= message {
            self.failures.resize(message + 1, 0);
        }
        self.failures[message] = count;
    }

    /// Whether the group's filter lets `tags` through (no filter or no tags: everything).
    pub fn admits(&self, tags: &[String]) -> bool {
        let Some(filter) = &self.filter else {
            return true;
        };
        if filter.tags.is_empty() {
            return true;
        }
        match filter.mode {
            TagMatch::Any => filter.tags.iter().any(|t| tags.contains(t)),
            TagMatch::All => filter.tags.iter().all(|t| tags.contains(t)),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Queue {
    pub name: String,
    pub config: QueueConfig,
    pub deleted: bool,
    pub groups: Vec<Group>,
    /// Message indexes in availability order; retention marks messages, never removes.
    pub order: Vec<usize>,
    /// (dedup id, expiry, original message), oldest first.
    pub dedup: Vec<(String, u64, usize)>,
    /// The adapter fields: empty at create, then the latest set.
    pub meta: Vec<u8>,
    /// Where its dead letters go instead of its groups' dead-letter lanes.
    pub dead_letter_to: Option<usize>,
}

/// A receipt as the model knows it.
#[derive(Clone, Copy, Debug)]
pub struct Handle {
    pub queue: usize,
    pub group: usize,
    pub message: usize,
    pub lease: u64,
    pub dead_letter: bool,
}

/// One delivery: message, delivery count, lease.
pub type Picked = (usize, u32, u64);

/// A receive's byte budget (the `ReceiveRequest` fields of the same names).
#[derive(Clone, Copy, Debug)]
pub struct Budget {
    pub bytes_max: u64,
    pub oversize_first: bool,
}

impl Budget {
    /// The longest prefix of `chosen` within the budget: a receive takes messages in
    /// order while their bytes fit, and stops at the first that does not, except that
    /// an oversize first message is taken alone where allowed.
    fn prefix(&self, chosen: Vec<usize>, messages: &[Message]) -> Vec<usize> {
        let mut taken = Vec::new();
        let mut bytes = 0u64;
        for m in chosen {
            let total = bytes + messages[m].bytes;
            let alone = taken.is_empty() && self.oversize_first;
            if total > self.bytes_max && !alone {
                break;
            }
            bytes = total;
            taken.push(m);
        }
        taken
    }
}

/// One message of a send, as the model needs it (the body is made by the harness).
pub struct Outgoing {
    pub body: String,
    pub tags: Vec<String>,
    pub fifo_group: Option<String>,
    pub delay: Delay,
    pub dedup_id: Option<String>,
}

pub struct Model {
    pub now: u64,
    pub queues: Vec<Queue>,
    pub messages: Vec<Message>,
    pub groups_per_queue_max: u32,
    pub visibility_ms_max: u64,
    next_lease: u64,
    /// Dead letters on their way to a target: (queue, group, position, message, target).
    moving: Vec<(usize, usize, usize, usize, usize)>,
    /// Between two checks of an open transaction, and the checks before it is dropped.
    transactions: (u64, u32),
    /// Checks the ticks made since the harness last took them: (message, checks so far).
    pub checks: Vec<(usize, u32)>,
}

impl Model {
    pub fn new(
        now: u64,
        groups_per_queue_max: u32,
        visibility_ms_max: u64,
        transactions: (u64, u32),
    ) -> Model {
        Model {
            now,
            queues: Vec::new(),
            messages: Vec::new(),
            groups_per_queue_max,
            visibility_ms_max,
            next_lease: 0,
            moving: Vec::new(),
            transactions,
            checks: Vec::new(),
        }
    }

    fn live_queue(&self, queue: Option<usize>) -> Result<usize, EngineError> {
        match queue {
            Some(q) if !self.queues[q].deleted => Ok(q),
            _ => Err(EngineError::QueueNotFound),
        }
    }

    fn live_group(&self, queue: usize, group: Option<usize>) -> Result<usize, EngineError> {
        match group {
            Some(g) if !self.queues[queue].groups[g].deleted => Ok(g),
            _ => Err(EngineError::GroupNotFound),
        }
    }

    /// Retained and available messages of the queue as the group sees them, in order.
    fn view(&self, queue: usize, group: usize) -> Vec<usize> {
        let q = &self.queues[queue];
        let start = q.groups[group].start;
        q.order[start..]
            .iter()
            .copied()
            .filter(|m| !self.messages[*m].removed)
            .collect()
    }

    fn new_lease(&mut self) -> u64 {
        self.next_lease += 1;
        self.next_lease
    }

    // ------------------------------------------------------------------ metadata

    /// Returns the new queue's slot.
    pub fn create_queue(&mut self, name: &str, config: QueueConfig) -> Result<usize, EngineError> {
        if self.queues.iter().any(|q| !q.deleted && q.name == name) {
            return Err(EngineError::QueueExists);
        }
        self.queues.push(Queue {
            name: name.to_string(),
            config,
            deleted: false,
            groups: Vec::new(),
            order: Vec::new(),
            dedup: Vec::new(),
            meta: Vec::new(),
            dead_letter_to: None,
        });
        Ok(self.queues.len() - 1)
    }

    /// Replaces a live queue's adapter fields; more than `meta_bytes_max` is refused.
    pub fn set_queue_meta(
        &mut self,
        queue: Option<usize>,
        meta: Vec<u8>,
        meta_bytes_max: usize,
    ) -> Result<(), EngineError> {
        if meta.len() > meta_bytes_max {
            return Err(EngineError::InvalidConfig("meta"));
        }
        let q = self.live_queue(queue)?;
        self.queues[q].meta = meta;
        Ok(())
    }

    /// A live queue's adapter fields.
    pub fn queue_meta(&self, queue: usize) -> Result<&[u8], EngineError> {
        let q = self.live_queue(Some(queue))?;
        Ok(&self.queues[q].meta)
    }

    pub fn delete_queue(&mut self, queue: Option<usize>) -> Result<(), EngineError> {
        let q = self.live_queue(queue)?;
        self.queues[q].deleted = true;
        // Queues that sent their dead letters here keep them in their own lanes.
        for other in &mut self.queues {
            if other.dead_letter_to == Some(q) {
                other.dead_letter_to = None;
            }
        }
        Ok(())
    }

    /// `target`: `None` for no target, `Some(None)` for a slot no queue has.
    pub fn set_dead_letter(
        &mut self,
        queue: Option<usize>,
        max: Option<u16>,
        target: Option<Option<usize>>,
    ) -> Result<(), EngineError> {
        if max == Some(0) {
            return Err(EngineError::InvalidConfig("max_consume_count"));
        }
        let q = self.live_queue(queue)?;
        let target = match target {
            None => None,
            Some(slot) => Some(self.live_queue(slot)?),
        };
        if let Some(t) = target {
            let same_mode = self.queues[t].config.mode == self.queues[q].config.mode;
            if max.is_none() || t == q || !same_mode {
                return Err(EngineError::InvalidConfig("dead_letter_target"));
            }
        }
        self.queues[q].config.max_consume_count = max;
        self.queues[q].dead_letter_to = target;
        Ok(())
    }

    /// Returns the new group's slot in its queue.
    pub fn create_group(
        &mut self,
        queue: Option<usize>,
        name: &str,
        start: GroupStart,
    ) -> Result<usize, EngineError> {
        let q = self.live_queue(queue)?;
        let queue = &mut self.queues[q];
        let live: Vec<&Group> = queue.groups.iter().filter(|g| !g.deleted).collect();
        if live.iter().any(|g| g.name == name) {
            return Err(EngineError::GroupExists);
        }
        if live.len() >= self.groups_per_queue_max as usize {
            return Err(EngineError::TooManyGroups {
                limit: self.groups_per_queue_max,
            });
        }
        let start = match start {
            GroupStart::Oldest => 0,
            GroupStart::Latest => queue.order.len(),
        };
        queue.groups.push(Group {
            name: name.to_string(),
            deleted: false,
            start,
            filter: None,
            lanes: Vec::new(),
            failures: Vec::new(),
        });
        Ok(queue.groups.len() - 1)
    }

    pub fn delete_group(
        &mut self,
        queue: Option<usize>,
        group: Option<usize>,
    ) -> Result<(), EngineError> {
        let q = self.live_queue(queue)?;
        let g = self.live_group(q, group)?;
        self.queues[q].groups[g].deleted = true;
        Ok(())
    }

    // ------------------------------------------------------------------ send

    /// Returns per message (message, duplicate): the stored message or the original.
    pub fn send(
        &mut self,
        queue: Option<usize>,
        batch: Vec<Outgoing>,
    ) -> Result<Vec<(usize, bool)>, EngineError> {
        let q = self.live_queue(queue)?;
        let now = self.now;
        let mut outcomes = Vec::new();
        let mut claimed: Vec<(String, usize)> = Vec::new();
        for outgoing in batch {
            if let Some(id) = &outgoing.dedup_id {
                // An earlier message of this batch, else the newest stored entry still in
                // its window (entries are appended in time order).
                let in_batch = claimed.iter().find(|(d, _)| d == id).map(|(_, m)| *m);
                let stored = self.queues[q]
                    .dedup
                    .iter()
                    .rev()
                    .find(|(d, expiry, _)| d == id && *expiry > now)
                    .map(|(_, _, m)| *m);
                if let Some(original) = in_batch.or(stored) {
                    outcomes.push((original, true));
                    continue;
                }
            }
            let index = self.messages.len();
            let half = matches!(outgoing.delay, Delay::Half { .. });
            let deliver_at_ms = match outgoing.delay {
                Delay::None => None,
                Delay::Ms(ms) => Some(now + ms),
                Delay::At(at) => Some(at),
                // Held until its transaction ends, however soon its first check.
                Delay::Half { check_after_ms } => Some(now + check_after_ms.max(1)),
                Delay::Level(_) => unreachable!("the harness sends no levels"),
            }
            .filter(|at| *at > now);
            self.messages.push(Message {
                queue: q,
                bytes: outgoing.body.len() as u64,
                body: outgoing.body,
                tags: outgoing.tags,
                fifo_group: outgoing.fifo_group,
                sent_ms: now,
                deliver_at_ms,
                position: None,
                available_ms: None,
                cancelled: false,
                half: half.then_some(0),
                removed: false,
                moved_from: None,
            });
            if deliver_at_ms.is_none() {
                self.make_available(index);
            }
            if let Some(id) = outgoing.dedup_id {
                let window = self.queues[q].config.dedup_window_ms;
                claimed.push((id.clone(), index));
                self.queues[q].dedup.push((id, now + window, index));
            }
            outcomes.push((index, false));
        }
        Ok(outcomes)
    }

    fn make_available(&mut self, message: usize) {
        let q = self.messages[message].queue;
        self.messages[message].position = Some(self.queues[q].order.len());
        self.messages[message].available_ms = Some(self.now);
        self.messages[message].deliver_at_ms = None;
        self.queues[q].order.push(message);
    }

    pub fn cancel(
        &mut self,
        queue: Option<usize>,
        message: Option<usize>,
    ) -> Result<(), EngineError> {
        let q = self.live_queue(queue)?;
        let Some(m) = message else {
            return Err(EngineError::NotScheduled);
        };
        let pending = {
            let message = &self.messages[m];
            message.queue == q
                && message.deliver_at_ms.is_some()
                && !message.cancelled
                && message.half.is_none()
        };
        if !pending {
            return Err(EngineError::NotScheduled);
        }
        self.drop_held(m);
        Ok(())
    }

    fn drop_held(&mut self, m: usize) {
        self.messages[m].cancelled = true;
        self.messages[m].deliver_at_ms = None;
        self.messages[m].half = None;
    }

    /// Commit: the half message becomes available now; roll back: it is gone. Only an
    /// open transaction of the queue's half message ends.
    pub fn end_transaction(
        &mut self,
        queue: Option<usize>,
        message: Option<usize>,
        commit: bool,
    ) -> Result<(), EngineError> {
        let q = self.live_queue(queue)?;
        let open = message.filter(|m| {
            let message = &self.messages[*m];
            message.queue == q && message.half.is_some() && message.deliver_at_ms.is_some()
        });
        let Some(m) = open else {
            return Err(EngineError::NotScheduled);
        };
        if commit {
            self.messages[m].half = None;
            self.make_available(m);
        } else {
            self.drop_held(m);
        }
        Ok(())
    }

    // ------------------------------------------------------------------ receive

    pub fn receive(
        &mut self,
        queue: Option<usize>,
        group: Option<usize>,
        max: u32,
        budget: Budget,
        visibility_ms: u64,
        filter: Option<&TagFilter>,
    ) -> Result<Vec<Picked>, EngineError> {
        let q = self.live_queue(queue)?;
        let g = self.live_group(q, group)?;
        if let Some(filter) = filter {
            let current = &mut self.queues[q].groups[g].filter;
            match current {
                Some(kept) if kept == filter => {}
                Some(_) => return Err(EngineError::FilterConflict),
                None => *current = Some(filter.clone()),
            }
        }
        let view = self.view(q, g);
        let chosen = {
            let group_ref = &self.queues[q].groups[g];
            let held = |m: &usize| {
                matches!(
                    group_ref.lane(*m),
                    Lane::InFlight { .. } | Lane::Waiting { .. }
                )
            };
            let key = |m: &usize| self.messages[*m].fifo_group.clone().unwrap_or_default();
            let locked: Vec<String> = match self.queues[q].config.mode {
                QueueMode::Normal => Vec::new(),
                QueueMode::Fifo(FifoScope::Queue) => {
                    if view.iter().any(held) {
                        return Ok(Vec::new());
                    }
                    Vec::new()
                }
                QueueMode::Fifo(FifoScope::MessageGroup) => {
                    view.iter().filter(|m| held(m)).map(key).collect()
                }
            };
            let chosen: Vec<usize> = view
                .iter()
                .copied()
                .filter(|m| group_ref.lane(*m) == Lane::Available)
                .filter(|m| group_ref.admits(&self.messages[*m].tags))
                .filter(|m| !locked.contains(&key(m)))
                .take(max as usize)
                .collect();
            budget.prefix(chosen, &self.messages)
        };
        let deadline_ms = self.now + visibility_ms;
        let mut picked = Vec::new();
        for m in chosen {
            let lease = self.new_lease();
            let group = &mut self.queues[q].groups[g];
            group.set_lane(m, Lane::InFlight { lease, deadline_ms });
            picked.push((m, u32::from(group.failure_count(m)) + 1, lease));
        }
        Ok(picked)
    }

    pub fn receive_dead(
        &mut self,
        queue: Option<usize>,
        group: Option<usize>,
        max: u32,
        budget: Budget,
        visibility_ms: u64,
    ) -> Result<Vec<Picked>, EngineError> {
        let q = self.live_queue(queue)?;
        if self.queues[q].config.max_consume_count.is_none() {
            return Err(EngineError::NoDeadLetters);
        }
        let g = self.live_group(q, group)?;
        let chosen: Vec<usize> = self
            .view(q, g)
            .into_iter()
            .filter(|m| self.queues[q].groups[g].lane(*m) == Lane::Dead { lease: None })
            .take(max as usize)
            .collect();
        let chosen = budget.prefix(chosen, &self.messages);
        let deadline_ms = self.now + visibility_ms;
        let mut picked = Vec::new();
        for m in chosen {
            let lease = self.new_lease();
            let lane = Lane::Dead {
                lease: Some((lease, deadline_ms)),
            };
            self.queues[q].groups[g].set_lane(m, lane);
            picked.push((m, 1, lease));
        }
        Ok(picked)
    }

    // ------------------------------------------------------------------ handles

    pub fn ack(
        &mut self,
        acks: &[(Handle, AckKind)],
        stop_at_first_error: bool,
    ) -> Vec<Result<AckOutcome, HandleError>> {
        let mut failed = false;
        let mut results = Vec::new();
        for (handle, kind) in acks {
            if failed && stop_at_first_error {
                results.push(Err(HandleError::Stale));
                continue;
            }
            let result = self.ack_one(handle, *kind);
            failed |= result.is_err();
            results.push(result);
        }
        self.move_dead_letters();
        results
    }

    /// Unknown when the handle's queue, group or message (retention) is gone.
    fn handle_check(&self, handle: &Handle) -> Result<(), HandleError> {
        let q = &self.queues[handle.queue];
        if q.deleted || q.groups[handle.group].deleted || self.messages[handle.message].removed {
            return Err(HandleError::Unknown);
        }
        Ok(())
    }

    fn ack_one(&mut self, handle: &Handle, kind: AckKind) -> Result<AckOutcome, HandleError> {
        self.handle_check(handle)?;
        let m = handle.message;
        let group = &mut self.queues[handle.queue].groups[handle.group];
        let lane = group.lane(m);
        if handle.dead_letter {
            return match lane {
                Lane::Dead {
                    lease: Some((lease, _)),
                } if lease == handle.lease => {
                    let next = match kind {
                        AckKind::Success => Lane::Done,
                        AckKind::Fail => Lane::Dead { lease: None },
                    };
                    group.set_lane(m, next);
                    Ok(AckOutcome::Applied)
                }
                Lane::Done if kind == AckKind::Success => Ok(AckOutcome::AlreadyDone),
                _ => Err(HandleError::Stale),
            };
        }
        match lane {
            Lane::InFlight { lease, .. } if lease == handle.lease => {
                match kind {
                    AckKind::Success => group.set_lane(m, Lane::Done),
                    AckKind::Fail => self.fail(handle.queue, handle.group, m),
                }
                Ok(AckOutcome::Applied)
            }
            Lane::Done if kind == AckKind::Success => Ok(AckOutcome::AlreadyDone),
            _ => Err(HandleError::Stale),
        }
    }

    /// One failed delivery (an explicit fail or an expired lease) at `self.now`.
    fn fail(&mut self, queue: usize, group: usize, message: usize) {
        let config = self.queues[queue].config;
        let now = self.now;
        let target = self.queues[queue].dead_letter_to;
        let position = self.messages[message].position;
        let g = &mut self.queues[queue].groups[group];
        let failures = g.failure_count(message) + 1;
        if config.max_consume_count.is_some_and(|max| failures >= max) {
            g.set_failures(message, 0);
            match target {
                Some(target) => {
                    // Dead until the batch (or the tick) ends: a later entry of the same
                    // ack batch finds it failed (Stale), as the engine, which decides every
                    // entry before it applies any; done once moved.
                    g.set_lane(message, Lane::Dead { lease: None });
                    let position = position.expect("a failed message is available");
                    self.moving.push((queue, group, position, message, target));
                }
                None => g.set_lane(message, Lane::Dead { lease: None }),
            }
            return;
        }
        g.set_failures(message, failures);
        let lane = match config.retry {
            RetryPolicy::Immediate => Lane::Available,
            RetryPolicy::Backoff => {
                let index = usize::from(failures - 1).min(RETRY_BACKOFF_MS.len() - 1);
                Lane::Waiting {
                    visible_ms: now + RETRY_BACKOFF_MS[index],
                }
            }
        };
        g.set_lane(message, lane);
    }

    /// The dead letters of the last ack batch or tick step, moved to their targets in
    /// the order of their (queue, group, position): each a new message of the target,
    /// available now, the same body, tags, group and send time.
    fn move_dead_letters(&mut self) {
        let mut moving = std::mem::take(&mut self.moving);
        moving.sort();
        for (queue, group, _, message, target) in moving {
            self.queues[queue].groups[group].set_lane(message, Lane::Done);
            let original = &self.messages[message];
            let copy = Message {
                queue: target,
                deliver_at_ms: None,
                position: None,
                available_ms: None,
                cancelled: false,
                half: None,
                removed: false,
                moved_from: Some(original.moved_from.unwrap_or(message)),
                ..original.clone()
            };
            self.messages.push(copy);
            self.make_available(self.messages.len() - 1);
        }
    }

    pub fn change_visibility(&mut self, handle: &Handle, ms: u64) -> Result<(), HandleError> {
        self.handle_check(handle)?;
        let deadline_ms = self.now + ms.min(self.visibility_ms_max);
        let group = &mut self.queues[handle.queue].groups[handle.group];
        let next = match (handle.dead_letter, group.lane(handle.message)) {
            (false, Lane::InFlight { lease, .. }) if lease == handle.lease => {
                Lane::InFlight { lease, deadline_ms }
            }
            (
                true,
                Lane::Dead {
                    lease: Some((lease, _)),
                },
            ) if lease == handle.lease => Lane::Dead {
                lease: Some((lease, deadline_ms)),
            },
            _ => return Err(HandleError::Stale),
        };
        group.set_lane(handle.message, next);
        Ok(())
    }

    pub fn redrive(
        &mut self,
        queue: Option<usize>,
        group: Option<usize>,
    ) -> Result<(), EngineError> {
        let q = self.live_queue(queue)?;
        if self.queues[q].config.max_consume_count.is_none() {
            return Err(EngineError::NoDeadLetters);
        }
        let g = self.live_group(q, group)?;
        for m in self.view(q, g) {
            let group = &mut self.queues[q].groups[g];
            if matches!(group.lane(m), Lane::Dead { .. }) {
                group.set_lane(m, Lane::Available);
                group.set_failures(m, 0);
            }
        }
        Ok(())
    }

    // ------------------------------------------------------------------ time, crash

    /// Every live (queue, group) slot pair.
    fn live_groups(&self) -> Vec<(usize, usize)> {
        let mut pairs = Vec::new();
        for (q, queue) in self.queues.iter().enumerate() {
            for (g, group) in queue.groups.iter().enumerate() {
                if !queue.deleted && !group.deleted {
                    pairs.push((q, g));
                }
            }
        }
        pairs
    }

    pub fn tick(&mut self, now: u64) {
        assert!(now >= self.now, "time went backwards");
        self.now = now;
        // 1. Back-off waits end.
        for (q, g) in self.live_groups() {
            for m in self.view(q, g) {
                let group = &mut self.queues[q].groups[g];
                if matches!(group.lane(m), Lane::Waiting { visible_ms } if visible_ms <= now) {
                    group.set_lane(m, Lane::Available);
                }
            }
        }
        // 2. Leases expire: a main-lane lease is a failure, a dead-letter lease just ends.
        for (q, g) in self.live_groups() {
            for m in self.view(q, g) {
                match self.queues[q].groups[g].lane(m) {
                    Lane::InFlight { deadline_ms, .. } if deadline_ms <= now => self.fail(q, g, m),
                    Lane::Dead {
                        lease: Some((_, deadline_ms)),
                    } if deadline_ms <= now => {
                        self.queues[q].groups[g].set_lane(m, Lane::Dead { lease: None });
                    }
                    _ => {}
                }
            }
        }
        self.move_dead_letters();
        // 3. Delayed messages due become available, by due time then send order.
        let mut due: Vec<(u64, usize)> = self
            .messages
            .iter()
            .enumerate()
            .filter_map(|(m, message)| message.deliver_at_ms.map(|at| (at, m)))
            .filter(|(at, m)| *at <= now && !self.queues[self.messages[*m].queue].deleted)
            .collect();
        due.sort();
        let (interval_ms, checks_max) = self.transactions;
        for (_, m) in due {
            match self.messages[m].half {
                None => self.make_available(m),
                // After its last check, an open transaction is rolled back.
                Some(checks) if checks >= checks_max => self.drop_held(m),
                Some(checks) => {
                    self.messages[m].half = Some(checks + 1);
                    self.messages[m].deliver_at_ms = Some(now + interval_ms);
                    self.checks.push((m, checks + 1));
                }
            }
        }
        // 4. Retention, from the time a message became available.
        for message in &mut self.messages {
            let retention_ms = self.queues[message.queue].config.retention_ms;
            if message
                .available_ms
                .is_some_and(|at| at + retention_ms < now)
            {
                message.removed = true;
            }
        }
        // 5. Dedup entries expire: `send` only honours entries whose expiry > now.
    }

    /// Every future time at which a tick would change something (lease deadlines, waits,
    /// due delayed messages, the first instant of a message past its retention, dedup
    /// expiries), sorted, so the harness can land exactly on the edges.
    pub fn edges(&self) -> Vec<u64> {
        let mut edges = Vec::new();
        for (q, g) in self.live_groups() {
            for lane in &self.queues[q].groups[g].lanes {
                match *lane {
                    Lane::InFlight { deadline_ms, .. } => edges.push(deadline_ms),
                    Lane::Waiting { visible_ms } => edges.push(visible_ms),
                    Lane::Dead {
                        lease: Some((_, deadline_ms)),
                    } => edges.push(deadline_ms),
                    _ => {}
                }
            }
        }
        for message in &self.messages {
            let queue = &self.queues[message.queue];
            if let Some(at) = message.deliver_at_ms {
                edges.push(at);
            }
            if let Some(at) = message.available_ms.filter(|_| !message.removed) {
                edges.push(at + queue.config.retention_ms + 1);
            }
        }
        for queue in &self.queues {
            edges.extend(queue.dedup.iter().map(|(_, expiry, _)| *expiry));
        }
        edges.retain(|edge| *edge > self.now);
        edges.sort_unstable();
        edges.dedup();
        edges
    }

    /// A crash and reopen: every lease is lost; everything else is durable.
    pub fn crash(&mut self) {
        for queue in &mut self.queues {
            for group in &mut queue.groups {
                for lane in &mut group.lanes {
                    *lane = match *lane {
                        Lane::InFlight { .. } => Lane::Available,
                        Lane::Dead { .. } => Lane::Dead { lease: None },
                        other => other,
                    };
                }
            }
        }
    }

    // ------------------------------------------------------------------ stats

    pub fn group_stats(&self, queue: usize, group: usize) -> Result<ModelStats, EngineError> {
        let q = self.live_queue(Some(queue))?;
        let g = self.live_group(q, Some(group))?;
        let group_ref = &self.queues[q].groups[g];
        let mut stats = ModelStats::default();
        for m in self.view(q, g) {
            let lane = group_ref.lane(m);
            match lane {
                Lane::Done => {}
                Lane::Dead { .. } => stats.dead_letters += 1,
                Lane::Available | Lane::InFlight { .. } | Lane::Waiting { .. } => {
                    stats.backlog_max += 1;
                    // A message the filter keeps out is as good as done for the group,
                    // unless it is still held from before the filter was set.
                    let held = lane != Lane::Available;
                    if held || group_ref.admits(&self.messages[m].tags) {
                        stats.backlog_min += 1;
                    }
                    if matches!(lane, Lane::InFlight { .. }) {
                        stats.in_flight += 1;
                    }
                }
            }
        }
        Ok(stats)
    }
}

/// The model's group statistics: the backlog is a range when a filter keeps messages out
/// (the contract leaves open whether those count until the group's cursor passes them).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ModelStats {
    pub backlog_min: u64,
    pub backlog_max: u64,
    pub in_flight: u64,
    pub dead_letters: u64,
}

impl ModelStats {
    pub fn admits(&self, stats: &GroupStats) -> bool {
        (self.backlog_min..=self.backlog_max).contains(&stats.backlog)
            && stats.in_flight == self.in_flight
            && stats.dead_letters == self.dead_letters
    }
}
