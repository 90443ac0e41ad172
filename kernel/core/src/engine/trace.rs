//! Message traces: what happened to one message, read back from the partition's log.
//!
//! Every durable step of a message is a record already: its send (the store), a release
//! or cancel (a delay's end, a transaction's commit or rollback), checks of its
//! transaction, acks and fails per group, dead-letter acks, redrives, moves to another
//! queue, retention's cut and the queue's deletion. Deliveries are not (leases live in the
//! leader's memory), so the leader notes each one and its tick logs them in one
//! `Command::Delivered` a (queue, group, lane): a trace then sees them too, unless the
//! leader lost its place before its next tick (a crash, a change of leader) or noted more
//! than `TRACE_DELIVERIES_WAITING_MAX` since the last. A trace lives as long as the log
//! holds the message's records: with the queue's retention.
//!
//! [`Engine::trace`] scans the log from the message's own record forward, up to what is
//! applied and at most `TRACE_SCAN_BYTES_MAX` bytes, and answers the steps in log order.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::command::Command;
use super::types::{EngineError, GroupId, MessageId, QueueId, ReceiptHandle};
use super::Engine;
use crate::limits::{TRACE_DELIVERIES_WAITING_MAX, TRACE_SCAN_BYTES_MAX};
use crate::log::ReadError;
use crate::storage::Storage;
use crate::types::Offset;

/// Bytes one read of a trace's scan asks the log for.
const TRACE_READ_BYTES: u64 = 1024 * 1024;

/// The deliveries a leader noted since its last tick.
#[derive(Debug, Default)]
pub(crate) struct DeliveredSince {
    by_lane: BTreeMap<(QueueId, GroupId, bool), Vec<u64>>,
    count: usize,
}

impl DeliveredSince {
    /// Notes one delivery; past `TRACE_DELIVERIES_WAITING_MAX` it goes unrecorded.
    pub fn note(&mut self, handle: &ReceiptHandle) {
        if self.count >= TRACE_DELIVERIES_WAITING_MAX {
            return;
        }
        self.count += 1;
        let lane = (handle.queue, handle.group, handle.dead_letter);
        self.by_lane.entry(lane).or_default().push(handle.seq);
    }

    /// The records that log what was noted, which is then forgotten.
    pub fn take(&mut self) -> Vec<Command> {
        self.count = 0;
        std::mem::take(&mut self.by_lane)
            .into_iter()
            .map(|((queue, group, dead_letter), seqs)| Command::Delivered {
                queue,
                group,
                dead_letter,
                seqs,
            })
            .collect()
    }
}

/// One step of a message's life.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TraceStep {
    /// Sent and stored (durable on a majority); held when delayed, scheduled or a
    /// transaction's half message.
    Stored { held: bool },
    /// Became available: a delay's end, or its transaction committed.
    Released,
    /// Dropped before it was ever available: cancelled, or its transaction rolled back
    /// (by the producer or after the last check).
    Cancelled,
    /// Its open transaction was checked with the producer.
    Checked,
    /// Handed out to a consumer of `group` (from its dead letters when `dead_letter`).
    Delivered { group: GroupId, dead_letter: bool },
    /// Acknowledged by `group`: done there.
    Acked { group: GroupId },
    /// A failed delivery in `group` (an explicit fail or an expired visibility), the
    /// `failures`-th there since it was last a dead letter.
    Failed { group: GroupId, failures: u32 },
    /// Became a dead letter of `group` (the failure that reached the queue's
    /// `max_consume_count`), or moved for that group to its queue's dead-letter queue
    /// `to`.
    DeadLettered { group: GroupId, to: Option<QueueId> },
    /// Its dead letter acknowledged in `group`.
    DeadLetterAcked { group: GroupId },
    /// Back from `group`'s dead letters to its main lane.
    Redriven { group: GroupId },
    /// Moved by a move task of `group` to queue `to`.
    Moved { group: GroupId, to: QueueId },
    /// Removed by the queue's retention.
    Expired,
    /// Its queue was deleted.
    QueueDeleted,
}

/// One step with when it was logged (the leader's queue time) and where.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceEvent {
    pub at_ms: u64,
    pub offset: u64,
    pub step: TraceStep,
}

/// A message's trace ([`Engine::trace`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trace {
    /// The steps in log order; empty when the partition's log has no send of this
    /// message to this queue (unknown, another queue's, or past retention).
    pub events: Vec<TraceEvent>,
    /// Whether the scan read every applied record after the message's own; false when it
    /// stopped at `TRACE_SCAN_BYTES_MAX`.
    pub complete: bool,
}

/// What the scan follows of one message.
struct Following {
    queue: QueueId,
    message: MessageId,
    /// The message's position in its queue (given at its send, or at its release when it
    /// was held; no other message of the queue ever has it); `None` while it is held.
    seq: Option<u64>,
    max_consume_count: Option<u16>,
    dead_letter_to: Option<QueueId>,
    failures: BTreeMap<GroupId, u32>,
    dead_in: BTreeSet<GroupId>,
    over: bool,
}

impl Following {
    /// The steps `command` takes for the message.
    fn steps(&mut self, command: &Command) -> Vec<TraceStep> {
        let here = |queue: &QueueId| *queue == self.queue;
        let mine = |seq: Option<u64>, seqs: &[u64]| seq.is_some_and(|seq| seqs.contains(&seq));
        match command {
            Command::Release { queue, message } if here(queue) && *message == self.message => {
                vec![TraceStep::Released]
            }
            Command::Cancel { queue, message } if here(queue) && *message == self.message => {
                self.over = true;
                vec![TraceStep::Cancelled]
            }
            Command::Check { queue, message, .. } if here(queue) && *message == self.message => {
                vec![TraceStep::Checked]
            }
            Command::Delivered {
                queue,
                group,
                dead_letter,
                seqs,
            } if here(queue) => {
                // One step a delivery: a record may hold several of the message.
                let times = seqs.iter().filter(|seq| Some(**seq) == self.seq).count();
                let step = TraceStep::Delivered {
                    group: *group,
                    dead_letter: *dead_letter,
                };
                vec![step; times]
            }
            Command::Ack { queue, group, seqs } if here(queue) && mine(self.seq, seqs) => {
                vec![TraceStep::Acked { group: *group }]
            }
            Command::Nack { queue, group, seqs } if here(queue) && mine(self.seq, seqs) => {
                let failures = self.failures.entry(*group).or_insert(0);
                *failures += 1;
                let mut steps = vec![TraceStep::Failed {
                    group: *group,
                    failures: *failures,
                }];
                let dead = self
                    .max_consume_count
                    .is_some_and(|max| *failures >= u32::from(max));
                if dead {
                    self.failures.remove(group);
                    self.dead_in.insert(*group);
                    steps.push(TraceStep::DeadLettered {
                        group: *group,
                        to: self.dead_letter_to,
                    });
                }
                steps
            }
            Command::DeadAck { queue, group, seqs } if here(queue) && mine(self.seq, seqs) => {
                self.dead_in.remove(group);
                vec![TraceStep::DeadLetterAcked { group: *group }]
            }
            Command::Redrive { queue, group } if here(queue) && self.dead_in.remove(group) => {
                vec![TraceStep::Redriven { group: *group }]
            }
            Command::Move {
                queue,
                group,
                to,
                seqs,
            } if here(queue) && mine(self.seq, seqs) => vec![TraceStep::Moved {
                group: *group,
                to: *to,
            }],
            Command::Trim { queue, below_seq }
                if here(queue) && self.seq.is_some_and(|seq| seq < *below_seq) =>
            {
                self.over = true;
                vec![TraceStep::Expired]
            }
            Command::DeleteQueue { queue } if here(queue) => {
                self.over = true;
                vec![TraceStep::QueueDeleted]
            }
            _ => Vec::new(),
        }
    }
}

impl<S: Storage + Clone> Engine<S> {
    /// The trace of message `message` of `queue` on this partition: its steps from its
    /// send on, read from the log up to what is applied ([`Trace`]). Deliveries appear as
    /// the leader's ticks logged them; failures count towards a dead letter by the
    /// queue's current `max_consume_count`. Only the serving leader answers.
    pub async fn trace(&self, queue: QueueId, message: MessageId) -> Result<Trace, EngineError> {
        self.confirm_leadership().await?;
        let applied = self.applied_offset.get();
        let seq = self.seq_of(queue, message);
        let mut following = {
            let state = self.state.borrow();
            let q = state.queue(queue)?;
            Following {
                queue,
                message,
                seq,
                max_consume_count: q.config.max_consume_count,
                dead_letter_to: q.dead_letter_to,
                failures: BTreeMap::new(),
                dead_in: BTreeSet::new(),
                over: false,
            }
        };
        let mut trace = Trace::default();
        let mut at = message.0;
        let mut scanned = 0u64;
        // Bounded by TRACE_SCAN_BYTES_MAX and by the applied records.
        while at <= applied && !following.over {
            let records = match self.log.read(Offset(at), TRACE_READ_BYTES).await {
                Ok(records) => records,
                // The message's records are gone with retention: no trace.
                Err(ReadError::Removed { .. }) => return Ok(Trace::default()),
                Err(error) => {
                    return Err(EngineError::Storage(super::types::StorageFault::Read(
                        error,
                    )))
                }
            };
            if records.is_empty() {
                break;
            }
            for record in records {
                if record.offset.0 > applied || following.over {
                    break;
                }
                at = record.offset.0 + 1;
                scanned =
                    scanned.saturating_add((record.attributes.len() + record.payload.len()) as u64);
                let Ok((command, _)) = Command::decode(&record.attributes) else {
                    continue;
                };
                if record.offset.0 == message.0 {
                    let Command::Send(meta) = &command else {
                        return Ok(Trace::default());
                    };
                    if meta.queue != queue {
                        return Ok(Trace::default());
                    }
                    let held = meta.deliver_at_ms > record.timestamp_ms || meta.half;
                    trace.events.push(TraceEvent {
                        at_ms: record.timestamp_ms,
                        offset: record.offset.0,
                        step: TraceStep::Stored { held },
                    });
                    continue;
                }
                if trace.events.is_empty() {
                    return Ok(Trace::default());
                }
                for step in following.steps(&command) {
                    trace.events.push(TraceEvent {
                        at_ms: record.timestamp_ms,
                        offset: record.offset.0,
                        step,
                    });
                }
            }
            if scanned > TRACE_SCAN_BYTES_MAX {
                return Ok(trace);
            }
        }
        trace.complete = true;
        Ok(trace)
    }
}
