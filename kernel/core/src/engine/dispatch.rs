//! The engine's leader operations: decisions the serving node takes with the current
//! time (receive, validate acks, change visibility, end leases and waits, pick due
//! releases). Their own state (leases, cursor, ready set, FIFO locks) is leader-only;
//! every durable consequence goes back through the log as a command and is applied by
//! `state.rs`.

use std::cmp::Reverse;
use std::collections::{HashSet, VecDeque};

use super::group::{short_nonce, Group, Hold};
use super::state::{
    group_parts, message_at, LeaseTimer, MessageMeta, MessageState, Picked, Queue, State,
};
use super::timers::TimerQueue;
use super::types::{
    AckOutcome, EngineError, FifoScope, GroupId, HandleError, MessageId, QueueId, QueueMode,
    ReceiptHandle,
};
use crate::bugs::{self, Bug};
use crate::limits::{ENGINE_READY_BLOCKED_MAX, ENGINE_SCAN_STEPS_MAX, RECEIVE_ATTEMPT_MS};

/// How much one receive may pick: a number of messages and a byte budget (the
/// `ReceiveRequest` fields of the same names).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PickLimits {
    pub messages_max: u32,
    pub bytes_max: u64,
    pub oversize_first: bool,
}

impl PickLimits {
    /// Whether a receive that picked `picked_bytes` in `picked_count` messages kept its
    /// budget: within it, or one message alone where an oversize first is allowed.
    fn kept(&self, picked_count: usize, picked_bytes: u64) -> bool {
        picked_bytes <= self.bytes_max || (picked_count == 1 && self.oversize_first)
    }

    /// Whether a message of `message_bytes` may follow `picked_count` messages of
    /// `picked_bytes`.
    fn fits(&self, picked_count: usize, picked_bytes: u64, message_bytes: u32) -> bool {
        let total = picked_bytes.saturating_add(u64::from(message_bytes));
        total <= self.bytes_max || (picked_count == 0 && self.oversize_first)
    }
}

/// What an ack that `begin_ack` accepted must log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AckLog {
    /// Nothing: already done, or a dead letter's fail (it only ends the lease).
    Nothing,
    /// Its own command; it took the message's hold, which `abort_ack` gives back if the
    /// command cannot be logged.
    Own,
    /// Its own command while another request's ack of the message is in flight; the hold
    /// stays that request's (an abort of this one must not touch it).
    Joined,
}

impl State {
    /// Picks up to `limits` for `group` (a count and a byte budget), leasing each until
    /// `now + visibility_ms`. It stops before the first message that does not fit the
    /// budget: a receive never skips a message for a smaller one behind it. With an
    /// attempt key, a repeat within `RECEIVE_ATTEMPT_MS` answers what the first answered
    /// while all of it is still held by that answer and fits `limits`, each lease extended
    /// to `now + visibility_ms`; otherwise it picks afresh and keeps the answer under the
    /// key.
    pub(crate) fn receive(
        &mut self,
        queue: QueueId,
        group: GroupId,
        limits: PickLimits,
        (visibility_ms, attempt): (u64, Option<u64>),
        inflight_max: u64,
        now: u64,
    ) -> Result<Vec<Picked>, EngineError> {
        let State {
            queues,
            group_wakeups,
            next_nonce,
            ..
        } = self;
        let q = queues.get_mut(&queue).ok_or(EngineError::QueueNotFound)?;
        let Queue {
            groups,
            store,
            config,
            ..
        } = &mut **q;
        let g = groups.get_mut(&group).ok_or(EngineError::GroupNotFound)?;
        let store = store.get();
        if let Some(key) = attempt {
            let deadline_ms = now.saturating_add(visibility_ms);
            if let Some(replayed) = replay_attempt(queue, g, store, key, limits, now) {
                for pick in &replayed {
                    let seq = pick.handle.seq;
                    if let Some(Hold::Leased {
                        deadline_ms: deadline,
                        ..
                    }) = g.holds.get_mut(&seq)
                    {
                        *deadline = deadline_ms;
                    }
                    push_lease(group_wakeups, queue, g, seq, deadline_ms);
                }
                return Ok(replayed);
            }
        }
        let mut picking = Picking {
            leaser: Leaser {
                queue,
                wakeups: group_wakeups,
                next_nonce,
                visibility_ms,
                now,
            },
            messages: &store.messages,
            base: store.base_seq,
            limits,
            picked_bytes: 0,
            budget_full: false,
            inflight_max,
            fifo: match config.mode {
                QueueMode::Normal => None,
                QueueMode::Fifo(scope) => Some(scope),
            },
            picked: Vec::new(),
            taken_keys: HashSet::new(),
        };
        // Redeliveries first, in sequence order (FIFO: they keep their position).
        let ready_visited = picking.pick_ready(g);
        if picking.fifo.is_none() || ready_visited {
            // Then new messages from the cursor. (On a FIFO queue, an unvisited
            // redelivery may precede, in its FIFO order, whatever the cursor would find
            // next: hand out nothing newer this time.)
            picking.pick_new(g);
        }
        assert!(
            limits.kept(picking.picked.len(), picking.picked_bytes),
            "a receive keeps its byte budget: {} bytes in {} messages, {limits:?}",
            picking.picked_bytes,
            picking.picked.len()
        );
        if let (Some(key), false) = (attempt, picking.picked.is_empty()) {
            let leases = picking
                .picked
                .iter()
                .map(|pick| (pick.handle.seq, pick.handle.nonce))
                .collect();
            g.remember_attempt(key, leases, now, now.saturating_add(RECEIVE_ATTEMPT_MS));
        }
        Ok(picking.picked)
    }

    fn lease_nonce(&mut self) -> u64 {
        self.next_nonce += 1;
        self.next_nonce
    }

    /// Picks dead letters of `group` for delivery, in sequence order, within `limits`
    /// (stopping before the first that does not fit the byte budget, as `receive`).
    pub(crate) fn receive_dead(
        &mut self,
        queue: QueueId,
        group: GroupId,
        limits: PickLimits,
        visibility_ms: u64,
        now: u64,
    ) -> Result<Vec<Picked>, EngineError> {
        let q = self.queues.get(&queue).ok_or(EngineError::QueueNotFound)?;
        if q.config.max_consume_count.is_none() {
            return Err(EngineError::NoDeadLetters);
        }
        let g = q.groups.get(&group).ok_or(EngineError::GroupNotFound)?;
        let seqs: Vec<u64> = g
            .dead
            .iter()
            .filter(|(_, dead)| dead.lease.is_none() && !dead.acking)
            .map(|(seq, _)| *seq)
            .take(usize::try_from(limits.messages_max).expect("fits"))
            .collect();
        let mut picked = Vec::with_capacity(seqs.len());
        let mut picked_bytes: u64 = 0;
        for seq in seqs {
            let q = self.queues.get(&queue).expect("checked above");
            let meta = *q.message(seq).expect("dead letters are retained messages");
            if !limits.fits(picked.len(), picked_bytes, meta.message_bytes) {
                break;
            }
            picked_bytes = picked_bytes.saturating_add(u64::from(meta.message_bytes));
            let nonce = self.lease_nonce();
            let deadline_ms = now.saturating_add(visibility_ms);
            let q = self.queues.get_mut(&queue).expect("checked above");
            let g = q.groups.get_mut(&group).expect("checked above");
            g.dead.get_mut(&seq).expect("listed above").lease = Some((nonce, deadline_ms));
            let timer = LeaseTimer {
                queue,
                group,
                seq,
                nonce,
                dead_letter: true,
            };
            self.lease_timers.insert(deadline_ms, timer);
            let handle = ReceiptHandle {
                queue,
                group,
                seq,
                nonce,
                dead_letter: true,
            };
            picked.push(Picked {
                handle,
                meta,
                delivery_count: 1,
                first_delivered_ms: now,
            });
        }
        assert!(
            limits.kept(picked.len(), picked_bytes),
            "a dead-letter receive keeps its byte budget: {picked_bytes} bytes, {limits:?}"
        );
        Ok(picked)
    }

    // ---------------------------------------------------------------- leader: acks

    /// Validates an ack or fail and marks the message as being acked or failed.
    /// Returns the outcome and what must be logged for it.
    pub fn begin_ack(
        &mut self,
        handle: &ReceiptHandle,
        success: bool,
    ) -> Result<(AckOutcome, AckLog), HandleError> {
        let current_boot = handle.nonce >> 32 == u64::from(self.boot_epoch);
        let (g, table, _) = group_parts(&mut self.queues, handle.queue, handle.group)
            .ok_or(HandleError::Unknown)?;
        let meta = table.get(handle.seq).ok_or(HandleError::Unknown)?;
        if handle.dead_letter {
            let Some(dead) = g.dead.get_mut(&handle.seq) else {
                // Acked before, or redriven: either way this delivery is over.
                return if success && g.done.contains(handle.seq) {
                    Ok((AckOutcome::AlreadyDone, AckLog::Nothing))
                } else {
                    Err(HandleError::Stale)
                };
            };
            if dead.acking {
                // Another request's ack of this dead letter is on its way to a majority
                // (a client's retry, a duplicated request): a second ack logs its own
                // and answers once that is durable, never a premature success and never
                // a Stale that tells the client its ack failed when it will not; a fail
                // comes too late.
                return if success {
                    Ok((AckOutcome::Applied, AckLog::Joined))
                } else {
                    Err(HandleError::Stale)
                };
            }
            if dead.lease.map(|(nonce, _)| nonce) != Some(handle.nonce) {
                return Err(HandleError::Stale);
            }
            if success {
                // The lease stays until the ack is durable: if it cannot be logged
                // (`abort_ack`), the dead letter stays hidden until its deadline, as a
                // main-lane message does.
                dead.acking = true;
                return Ok((AckOutcome::Applied, AckLog::Own));
            }
            dead.lease = None;
            return Ok((AckOutcome::Applied, AckLog::Nothing));
        }
        match g.holds.get(&handle.seq) {
            Some(Hold::Leased { nonce, .. })
                if current_boot && *nonce == short_nonce(handle.nonce) =>
            {
                let hold = if success { Hold::Acking } else { Hold::Nacking };
                g.set_hold(handle.seq, meta.fifo_key, Some(hold));
                Ok((AckOutcome::Applied, AckLog::Own))
            }
            // Another request's ack is on its way to the disk and a majority (a client's
            // retry, a duplicated request): this one logs its own ack (applying an ack
            // twice changes nothing) and answers once that is durable, so it never
            // answers a premature success, nor a Stale that tells the client the
            // message will come back when it will not.
            Some(Hold::Acking) if success => Ok((AckOutcome::Applied, AckLog::Joined)),
            // Done, and not a dead letter.
            _ if success && g.done.contains(handle.seq) && !g.dead.contains_key(&handle.seq) => {
                Ok((AckOutcome::AlreadyDone, AckLog::Nothing))
            }
            _ => Err(HandleError::Stale),
        }
    }

    /// Undoes `begin_ack` when the command could not be logged (an [`AckLog::Own`] one
    /// only: a joined ack leaves the hold to the ack it joined).
    pub fn abort_ack(&mut self, handle: &ReceiptHandle, deadline_ms: u64) {
        let Some((g, table, _)) = group_parts(&mut self.queues, handle.queue, handle.group) else {
            return;
        };
        if handle.dead_letter {
            if let Some(dead) = g.dead.get_mut(&handle.seq) {
                dead.acking = false;
            }
            return;
        }
        let Some(meta) = table.get(handle.seq) else {
            return;
        };
        if matches!(g.holds.get(&handle.seq), Some(Hold::Acking | Hold::Nacking)) {
            let lease = Hold::Leased {
                nonce: short_nonce(handle.nonce),
                deadline_ms,
            };
            g.set_hold(handle.seq, meta.fifo_key, Some(lease));
        }
    }

    /// Moves an in-flight message's visibility deadline.
    pub fn change_visibility(
        &mut self,
        handle: &ReceiptHandle,
        visibility_ms: u64,
        now: u64,
    ) -> Result<(), HandleError> {
        let current_boot = handle.nonce >> 32 == u64::from(self.boot_epoch);
        let q = self
            .queues
            .get_mut(&handle.queue)
            .ok_or(HandleError::Unknown)?;
        q.message(handle.seq).ok_or(HandleError::Unknown)?;
        let g = q
            .groups
            .get_mut(&handle.group)
            .ok_or(HandleError::Unknown)?;
        let deadline_ms = now.saturating_add(visibility_ms);
        if !handle.dead_letter {
            match g.holds.get_mut(&handle.seq) {
                Some(Hold::Leased {
                    nonce,
                    deadline_ms: deadline,
                }) if current_boot && *nonce == short_nonce(handle.nonce) => {
                    *deadline = deadline_ms;
                }
                _ => return Err(HandleError::Stale),
            }
            push_lease(
                &mut self.group_wakeups,
                handle.queue,
                g,
                handle.seq,
                deadline_ms,
            );
            return Ok(());
        }
        let dead = g.dead.get_mut(&handle.seq).ok_or(HandleError::Stale)?;
        match &mut dead.lease {
            Some((nonce, deadline)) if *nonce == handle.nonce => *deadline = deadline_ms,
            _ => return Err(HandleError::Stale),
        }
        let timer = LeaseTimer {
            queue: handle.queue,
            group: handle.group,
            seq: handle.seq,
            nonce: handle.nonce,
            dead_letter: handle.dead_letter,
        };
        self.lease_timers.insert(deadline_ms, timer);
        Ok(())
    }

    // ---------------------------------------------------------------- leader: time

    /// Ends expired leases: main-lane ones become failures to log (returned with the
    /// lease's nonce, for [`State::abort_tick`]); dead-letter ones are simply visible
    /// again.
    pub fn expire_leases(&mut self, now: u64) -> Vec<ExpiredLease> {
        let mut failed = Vec::new();
        while let Some((_, timer)) = self.lease_timers.pop_due(now) {
            assert!(
                timer.dead_letter,
                "main-lane leases live in the group heaps"
            );
            let dead = self
                .queues
                .get_mut(&timer.queue)
                .and_then(|q| q.groups.get_mut(&timer.group))
                .and_then(|g| g.dead.get_mut(&timer.seq));
            if let Some(dead) = dead {
                if matches!(dead.lease, Some((nonce, deadline)) if nonce == timer.nonce && deadline <= now)
                {
                    dead.lease = None;
                }
            }
        }
        while let Some((_, (queue, group))) = self.group_wakeups.pop_due(now) {
            let Some((g, table, _)) = group_parts(&mut self.queues, queue, group) else {
                continue;
            };
            // Bounded by the group's heap; stale entries (acked, extended) drop out here.
            while let Some(Reverse((deadline, seq))) = g.lease_heap.peek().copied() {
                if deadline > now {
                    self.group_wakeups.insert(deadline, (queue, group));
                    break;
                }
                g.lease_heap.pop();
                let Some(meta) = table.get(seq) else {
                    continue;
                };
                if let Some(Hold::Leased { nonce, deadline_ms }) = g.holds.get(&seq).copied() {
                    if deadline_ms == deadline {
                        g.set_hold(seq, meta.fifo_key, Some(Hold::Nacking));
                        failed.push(ExpiredLease {
                            queue,
                            group,
                            seq,
                            nonce,
                        });
                    }
                }
            }
        }
        failed
    }

    /// Undoes what [`State::expire_leases`] and [`State::due_releases`] began when the
    /// commands that finish it could not be logged (a proposal dropped during a leader
    /// transfer, a lost quorum) while this replica may still lead: an expired lease
    /// still waiting for its failure to be logged becomes a lease again until
    /// `retry_at`, and a delayed message still waiting for its release is due again at
    /// `retry_at`, as is a retention cut ([`State::due_trims`]). What was applied
    /// meanwhile, or cleared by a loss of leadership ([`State::reset_leader_state`]), is
    /// left alone. Without this, the message stayed held (or unreleased, and
    /// uncancellable) for as long as this replica led.
    pub fn abort_tick(
        &mut self,
        expired: &[ExpiredLease],
        releases: &[(QueueId, MessageId)],
        trims: &[(QueueId, u64)],
        retry_at: u64,
    ) {
        for (queue, _) in trims {
            // Cutting what was cut already changes nothing: no need to tell which were.
            self.retention_timers.insert(retry_at, *queue);
        }
        for lease in expired {
            let Some((g, table, _)) = group_parts(&mut self.queues, lease.queue, lease.group)
            else {
                continue;
            };
            let Some(meta) = table.get(lease.seq) else {
                continue;
            };
            if g.holds.get(&lease.seq) == Some(&Hold::Nacking) {
                let hold = Hold::Leased {
                    nonce: lease.nonce,
                    deadline_ms: retry_at,
                };
                g.set_hold(lease.seq, meta.fifo_key, Some(hold));
                push_lease(&mut self.group_wakeups, lease.queue, g, lease.seq, retry_at);
            }
        }
        for (queue, message) in releases {
            let delayed = self.delayed_mut(*queue, *message);
            if let Some(delayed) = delayed.filter(|d| d.releasing) {
                delayed.releasing = false;
                self.delay_timers.insert(retry_at, (*queue, *message));
            }
        }
    }

    /// Ends retry back-off waits that are over.
    pub fn fire_waits(&mut self, now: u64) {
        while let Some((deadline, (queue, group, seq))) = self.wait_timers.pop_due(now) {
            let Some((g, table, _)) = group_parts(&mut self.queues, queue, group) else {
                continue;
            };
            let Some(meta) = table.get(seq) else {
                continue;
            };
            if g.holds.get(&seq)
                == Some(&Hold::Waiting {
                    visible_ms: deadline,
                })
            {
                g.set_hold(seq, meta.fifo_key, None);
                g.make_visible(seq);
            }
        }
    }

    /// Held messages now due, to be released through the log (or, for a half message,
    /// checked). A timer set for an earlier due time (a half message's first check, still
    /// in the queue after a replay applied its later checks) is stale and skipped.
    pub fn due_releases(&mut self, now: u64) -> Vec<(QueueId, MessageId)> {
        let mut due = Vec::new();
        let now = if bugs::enabled(Bug::ReleaseEarly) {
            now + 1_000
        } else {
            now
        };
        while let Some((_, (queue, message))) = self.delay_timers.pop_due(now) {
            let delayed = self.delayed_mut(queue, message);
            if let Some(delayed) = delayed {
                if !delayed.releasing && delayed.deliver_at_ms <= now {
                    delayed.releasing = true;
                    due.push((queue, message));
                }
            }
        }
        due
    }
}

/// A main-lane lease that ran out; its failure is to be logged.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ExpiredLease {
    pub queue: QueueId,
    pub group: GroupId,
    pub seq: u64,
    /// The lease's (short) nonce, to restore it if the failure cannot be logged.
    pub nonce: u32,
}

/// Leases picked messages: nonce, deadline, timer.
/// One receive in progress: what it picked so far and the rules for picking more.
struct Picking<'a> {
    leaser: Leaser<'a>,
    messages: &'a VecDeque<MessageMeta>,
    base: u64,
    limits: PickLimits,
    /// Bytes of the messages picked so far.
    picked_bytes: u64,
    /// A message did not fit the byte budget: the receive takes nothing more.
    budget_full: bool,
    inflight_max: u64,
    fifo: Option<FifoScope>,
    picked: Vec<Picked>,
    /// FIFO keys of this receive's picks: a lock this receive took does not block it.
    taken_keys: HashSet<u32>,
}

impl Picking<'_> {
    /// Whether the receive may pick another message.
    fn room(&self, g: &Group) -> bool {
        !self.budget_full
            && (self.picked.len() as u32) < self.limits.messages_max
            && g.leased_count < self.inflight_max
    }

    /// Whether `meta` fits the byte budget after what was picked; when it does not, the
    /// receive is over (it never skips a message for a smaller one behind it, which on a
    /// FIFO queue would break the order).
    fn fits(&mut self, meta: &MessageMeta) -> bool {
        let fits = self
            .limits
            .fits(self.picked.len(), self.picked_bytes, meta.message_bytes);
        self.budget_full = !fits;
        fits
    }

    /// Whether a message of FIFO key `key` may be handed out (no other delivery holds
    /// its lock).
    fn takeable(&self, g: &Group, key: u32) -> bool {
        self.fifo.is_none()
            || !g.locks.contains_key(&key)
            || self.taken_keys.contains(&key)
            || bugs::enabled(Bug::SkipFifoBlocking)
    }

    fn take(&mut self, g: &mut Group, seq: u64, meta: MessageMeta) {
        self.picked_bytes = self
            .picked_bytes
            .saturating_add(u64::from(meta.message_bytes));
        self.picked.push(self.leaser.lease(g, seq, meta));
        self.taken_keys.insert(meta.fifo_key);
    }

    /// Picks from the ready set (redeliveries and messages a FIFO lock held back), in
    /// sequence order, dropping entries that no longer qualify. Returns whether it
    /// visited the whole set within the scan bound.
    fn pick_ready(&mut self, g: &mut Group) -> bool {
        let mut after = 0;
        let mut steps = 0;
        while self.room(g) {
            let Some(seq) = g.ready.range(after..).next().copied() else {
                break;
            };
            after = seq + 1;
            steps += 1;
            if steps > ENGINE_SCAN_STEPS_MAX {
                return false;
            }
            let Some(meta) = message_at(self.messages, self.base, seq).copied() else {
                g.ready.remove(&seq);
                continue;
            };
            let filtered = g.filter.as_ref().is_some_and(|f| !f.matches(&meta.tags));
            if filtered
                || g.done.contains(seq)
                || g.holds.contains_key(&seq)
                || g.dead.contains_key(&seq)
            {
                g.ready.remove(&seq);
                continue;
            }
            if !self.takeable(g, meta.fifo_key) {
                continue;
            }
            if !self.fits(&meta) {
                break;
            }
            self.take(g, seq, meta);
        }
        true
    }

    /// Picks new messages from the group's cursor, moving it past what the group is
    /// done with or cannot take; a message a FIFO lock holds back goes to the ready set
    /// (a queue-scope FIFO stops there instead).
    fn pick_new(&mut self, g: &mut Group) {
        let next = self.base + self.messages.len() as u64;
        g.cursor = g.cursor.max(self.base);
        let mut steps = 0;
        while self.room(g) && g.cursor < next && steps < ENGINE_SCAN_STEPS_MAX {
            steps += 1;
            let seq = g.cursor;
            if let Some((_, end)) = g.done.range_of(seq) {
                g.cursor = end.min(next);
                continue;
            }
            let meta = *message_at(self.messages, self.base, seq).expect("base <= seq < next");
            let filtered = g.filter.as_ref().is_some_and(|f| !f.matches(&meta.tags));
            if filtered || g.holds.contains_key(&seq) || g.dead.contains_key(&seq) {
                g.cursor += 1;
                continue;
            }
            if !self.takeable(g, meta.fifo_key) {
                if self.fifo == Some(FifoScope::Queue) || g.ready.len() >= ENGINE_READY_BLOCKED_MAX
                {
                    break;
                }
                g.ready.insert(seq);
                g.cursor += 1;
                continue;
            }
            if !self.fits(&meta) {
                // The cursor stays: the next receive starts with this message.
                break;
            }
            self.take(g, seq, meta);
            g.cursor += 1;
        }
    }
}

struct Leaser<'a> {
    queue: QueueId,
    wakeups: &'a mut TimerQueue<(QueueId, GroupId)>,
    next_nonce: &'a mut u64,
    visibility_ms: u64,
    now: u64,
}

impl Leaser<'_> {
    fn lease(&mut self, g: &mut Group, seq: u64, meta: MessageMeta) -> Picked {
        *self.next_nonce += 1;
        let nonce = *self.next_nonce;
        let visibility_ms = if bugs::enabled(Bug::IgnoreVisibility) {
            self.visibility_ms / 4
        } else {
            self.visibility_ms
        };
        let deadline_ms = self.now.saturating_add(visibility_ms);
        g.ready.remove(&seq);
        let lease = Hold::Leased {
            nonce: short_nonce(nonce),
            deadline_ms,
        };
        g.set_hold(seq, meta.fifo_key, Some(lease));
        g.delivered_total += 1;
        let queue = self.queue;
        push_lease(self.wakeups, queue, g, seq, deadline_ms);
        let failures = u32::from(g.failures.get(&seq).copied().unwrap_or(0));
        let first_delivered_ms = *g.first_delivered.entry(seq).or_insert(self.now);
        let handle = ReceiptHandle {
            queue,
            group: g.id,
            seq,
            nonce,
            dead_letter: false,
        };
        Picked {
            handle,
            meta,
            delivery_count: failures + 1,
            first_delivered_ms,
        }
    }
}

/// The deliveries attempt `key` answered, when it is known and unexpired, every one of
/// them is still leased under the nonce it was answered with, and together they fit
/// `limits`; else `None` (and an unusable attempt is forgotten).
fn replay_attempt(
    queue: QueueId,
    g: &mut Group,
    store: &MessageState,
    key: u64,
    limits: PickLimits,
    now: u64,
) -> Option<Vec<Picked>> {
    let attempt = g.attempts.get(&key)?;
    let mut picked = Vec::with_capacity(attempt.leases.len());
    let mut picked_bytes = 0u64;
    let usable = attempt.expires_ms > now
        && attempt.leases.len() <= limits.messages_max as usize
        && attempt.leases.iter().all(|&(seq, nonce)| {
            let leased = matches!(
                g.holds.get(&seq),
                Some(Hold::Leased { nonce: held, .. }) if *held == short_nonce(nonce)
            );
            let Some(meta) = message_at(&store.messages, store.base_seq, seq).copied() else {
                return false;
            };
            if !leased || !limits.fits(picked.len(), picked_bytes, meta.message_bytes) {
                return false;
            }
            picked_bytes = picked_bytes.saturating_add(u64::from(meta.message_bytes));
            let failures = u32::from(g.failures.get(&seq).copied().unwrap_or(0));
            picked.push(Picked {
                handle: ReceiptHandle {
                    queue,
                    group: g.id,
                    seq,
                    nonce,
                    dead_letter: false,
                },
                meta,
                delivery_count: failures + 1,
                first_delivered_ms: g.first_delivered.get(&seq).copied().unwrap_or(now),
            });
            true
        });
    if usable {
        Some(picked)
    } else {
        g.attempts.remove(&key);
        None
    }
}

/// Indexes a main-lane lease deadline; wakes the group if it is its earliest.
fn push_lease(
    wakeups: &mut TimerQueue<(QueueId, GroupId)>,
    queue: QueueId,
    g: &mut Group,
    seq: u64,
    deadline_ms: u64,
) {
    let earliest = g.lease_heap.peek().map(|Reverse((deadline, _))| *deadline);
    g.lease_heap.push(Reverse((deadline_ms, seq)));
    if earliest.is_none_or(|earliest| deadline_ms < earliest) {
        wakeups.insert(deadline_ms, (queue, g.id));
    }
}
