//! Move tasks: a consumer group's messages moved, at a bounded rate, into another queue
//! of the same tenant (SQS's StartMessageMoveTask: a dead-letter queue's messages back to
//! their source). A task is durable group state on each partition, started and stopped
//! by commands; the serving leader's tick moves the next batch when it is due: it picks
//! the messages as a receive does and takes them as an ack does, then logs one `Move`
//! record, which every replica applies as an ack of the group plus an append of the same
//! log records to the target queue on the same partition (`State::transfer`). A task
//! moves at most the group's backlog at its start, so messages that keep failing back
//! into the group cannot keep it running, and it ends when that many moved or nothing
//! is left to move and nothing is in flight.

use super::dispatch::{AckLog, PickLimits};
use super::state::{group_parts, State};
use super::types::{GroupId, QueueId, ReceiptHandle};
use crate::limits::{MOVE_BATCH_MAX, MOVE_INTERVAL_MS, MOVE_LEASE_MS};

/// A group's move task on one partition; durable but for `last_ms`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct MoveTask {
    pub to: QueueId,
    /// Messages per second on this partition; 0 moves a batch every pass.
    pub per_second: u32,
    /// Messages still to move: the group's backlog when the task started, less those
    /// moved since.
    pub remaining: u64,
    /// When the leader last moved a batch (leader only).
    pub last_ms: u64,
}

/// One pass's batch of a task: the messages taken (each `AckLog::Own`), for a `Move`.
#[derive(Clone, Debug)]
pub(crate) struct MoveBatch {
    pub queue: QueueId,
    pub group: GroupId,
    pub to: QueueId,
    pub handles: Vec<ReceiptHandle>,
}

impl State {
    pub(super) fn apply_start_move(
        &mut self,
        queue: QueueId,
        group: GroupId,
        (to, per_second): (QueueId, u32),
        ts: u64,
    ) {
        if to == queue || !self.queues.contains_key(&to) {
            return;
        }
        let Some(q) = self.queues.get_mut(&queue) else {
            return;
        };
        let (base, next) = (q.base_seq(), q.next_seq());
        let Some(g) = q.groups.get_mut(&group) else {
            return;
        };
        g.moving = Some(MoveTask {
            to,
            per_second,
            remaining: g.done.count_missing(base, next),
            last_ms: ts,
        });
        self.moves.insert((queue, group));
        self.move_due_ms = Some(ts);
    }

    pub(super) fn apply_stop_move(&mut self, queue: QueueId, group: GroupId) {
        if let Some(g) = self
            .queues
            .get_mut(&queue)
            .and_then(|q| q.groups.get_mut(&group))
        {
            g.moving = None;
        }
        self.moves.remove(&(queue, group));
    }

    /// The group's messages `seqs` are done there and appended to queue `to`; with no
    /// queue `to` (deleted meanwhile), nothing changes and the messages come back when
    /// their leases end.
    pub(super) fn apply_move(
        &mut self,
        queue: QueueId,
        group: GroupId,
        to: QueueId,
        seqs: &[u64],
        ts: u64,
    ) {
        if !self.queues.contains_key(&to) {
            return;
        }
        let Some((g, table, _)) = group_parts(&mut self.queues, queue, group) else {
            return;
        };
        let mut moved = Vec::with_capacity(seqs.len());
        for seq in seqs {
            let Some(meta) = table.get(*seq) else {
                continue;
            };
            if !g.finish(*seq, meta.fifo_key) {
                continue;
            }
            g.done.insert(*seq);
            g.moved_total += 1;
            moved.push(meta);
        }
        if let Some(task) = g.moving.as_mut() {
            task.remaining = task.remaining.saturating_sub(moved.len() as u64);
        }
        self.transfer(queue, to, &moved, ts);
    }

    /// On the serving leader, every `MOVE_INTERVAL_MS`: the next batch of each active
    /// task whose rate allows one, and the tasks that are over (to be logged as
    /// `StopMove`). A batch's messages are taken as an ack takes them; `abort_ack` gives
    /// them back if the `Move` cannot be logged.
    pub(super) fn due_moves(&mut self, now: u64) -> (Vec<MoveBatch>, Vec<(QueueId, GroupId)>) {
        let (mut batches, mut over) = (Vec::new(), Vec::new());
        if self.moves.is_empty() {
            self.move_due_ms = None;
            return (batches, over);
        }
        if self.move_due_ms.is_some_and(|due| due > now) {
            return (batches, over);
        }
        self.move_due_ms = Some(now.saturating_add(MOVE_INTERVAL_MS));
        let tasks: Vec<(QueueId, GroupId)> = self.moves.iter().copied().collect();
        for (queue, group) in tasks {
            let Some(g) = self.queues.get(&queue).and_then(|q| q.groups.get(&group)) else {
                continue;
            };
            let Some(task) = g.moving else {
                continue;
            };
            let held = !g.holds.is_empty();
            if task.remaining == 0 || !self.queues.contains_key(&task.to) {
                over.push((queue, group));
                continue;
            }
            let allowed = match task.per_second {
                0 => u64::from(MOVE_BATCH_MAX),
                rate => u64::from(rate).saturating_mul(now.saturating_sub(task.last_ms)) / 1000,
            };
            let budget = allowed.min(u64::from(MOVE_BATCH_MAX)).min(task.remaining);
            if budget == 0 {
                continue;
            }
            let limits = PickLimits {
                messages_max: u32::try_from(budget).expect("at most MOVE_BATCH_MAX"),
                bytes_max: u64::MAX,
                oversize_first: true,
            };
            let Ok(picked) =
                self.receive(queue, group, limits, (MOVE_LEASE_MS, None), u64::MAX, now)
            else {
                continue;
            };
            if picked.is_empty() {
                if !held {
                    over.push((queue, group));
                }
                continue;
            }
            if let Some(task) = self
                .queues
                .get_mut(&queue)
                .and_then(|q| q.groups.get_mut(&group))
                .and_then(|g| g.moving.as_mut())
            {
                task.last_ms = now;
            }
            let handles = picked
                .iter()
                .filter(|pick| matches!(self.begin_ack(&pick.handle, true), Ok((_, AckLog::Own))))
                .map(|pick| pick.handle)
                .collect();
            batches.push(MoveBatch {
                queue,
                group,
                to: task.to,
                handles,
            });
        }
        (batches, over)
    }

    /// Gives back the messages of batches whose `Move` could not be logged: leased until
    /// `MOVE_LEASE_MS` after `now`, then they come back as an expired lease does.
    pub(super) fn abort_moves(&mut self, batches: &[MoveBatch], now: u64) {
        let deadline_ms = now.saturating_add(MOVE_LEASE_MS);
        for handle in batches.iter().flat_map(|batch| &batch.handles) {
            self.abort_ack(handle, deadline_ms);
        }
    }
}
