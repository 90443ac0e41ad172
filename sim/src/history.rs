//! The history: every client operation and its result, in the order clients observed them,
//! plus nemesis events. It is the checker's only input besides the message catalogue, and
//! its text form is the trace `--seed S` prints and the determinism test hashes.

use sluice_core::engine::types::AckKind;

pub use crate::api::Lane;

/// A message id as the API names it (`message_id`, 20 hex digits): the partition and the
/// log offset there. Ordered by partition, then offset; a FIFO message group lives in one
/// partition, so within a group the order is the log's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MessageId {
    pub partition: u16,
    pub offset: u64,
}

impl MessageId {
    pub const MIN: MessageId = MessageId {
        partition: 0,
        offset: 0,
    };

    /// Parses the adapter's `message_id` (`ppppoooooooooooooooo`, hex).
    pub fn parse(text: &str) -> Option<MessageId> {
        if text.len() != 20 || !text.is_ascii() {
            return None;
        }
        Some(MessageId {
            partition: u16::from_str_radix(&text[..4], 16).ok()?,
            offset: u64::from_str_radix(&text[4..], 16).ok()?,
        })
    }
}

impl std::fmt::Display for MessageId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.partition, self.offset)
    }
}

/// The server's verdict as a client (or, for lost replies, the simulator) knows it.
#[derive(Clone, Debug)]
pub enum Outcome<T> {
    /// Entered the node as serial `serial` at `served_ms` and completed as serial
    /// `done_serial` at `done_ms`; the reply arrived (a 2xx answer).
    Ok {
        serial: u64,
        done_serial: u64,
        served_ms: u64,
        done_ms: u64,
        value: T,
    },
    /// Reached the node as request `serial` but the client cannot know whether it took
    /// effect: the reply was dropped, or the node answered 5xx (a storage fault).
    Ambiguous { serial: u64, reason: String },
    /// Definitely not applied: dropped before the node, node down, or a 4xx answer.
    Rejected { reason: String },
}

/// One delivered message as the checker needs it (the key comes from its body).
#[derive(Clone, Debug)]
pub struct Delivered {
    pub key: u32,
    pub message_id: MessageId,
}

#[derive(Clone, Debug)]
pub enum EventKind {
    Send {
        queue: usize,
        keys: Vec<u32>,
        attempt: u32,
        /// The `message_id` of each message, in request order.
        outcome: Outcome<Vec<MessageId>>,
    },
    Receive {
        queue: usize,
        /// Which creation of the queue the client addressed (a deleted queue may be
        /// created again under its name, with a new id).
        incarnation: u32,
        group: usize,
        lane: Lane,
        outcome: Outcome<Vec<Delivered>>,
    },
    Ack {
        queue: usize,
        group: usize,
        lane: Lane,
        kind: AckKind,
        targets: Vec<(u32, MessageId)>,
        /// Per target: `true` when it counted as a success. The node processes an ack's
        /// entries in order and stops at the first invalid one, so the answer's
        /// `{"success": n}` names the first n targets.
        outcome: Outcome<Vec<bool>>,
    },
    /// A request by one tenant aimed at another's data; `status` is the answer's
    /// (none when dropped or the node was down), `queues_seen` what a list answered.
    Probe {
        what: String,
        status: Option<u16>,
        queues_seen: usize,
    },
    /// A cancel of a scheduled message (`message_id`, carrying `key`).
    Cancel {
        queue: usize,
        key: u32,
        message_id: MessageId,
        outcome: Outcome<()>,
    },
    /// The end of a half message's transaction (`commit`, else a rollback).
    EndTransaction {
        queue: usize,
        key: u32,
        message_id: MessageId,
        commit: bool,
        outcome: Outcome<()>,
    },
    /// A delete of one creation of a queue.
    QueueDelete {
        queue: usize,
        incarnation: u32,
        outcome: Outcome<()>,
    },
    /// The node opened its engine after request `serial` (leases start over).
    Boot {
        serial: u64,
    },
    /// Cluster: a replica of `partition` began serving as its leader (in a new term)
    /// after request `serial`. Leases live only on the leader, so that partition's
    /// messages in flight may be handed out again before their visibility deadline
    /// (docs/semantics.md); nothing else is excused.
    Failover {
        serial: u64,
        partition: u16,
        term: u64,
        node: u64,
    },
    Nemesis(String),
}

#[derive(Clone, Debug)]
pub struct Event {
    /// Simulated time at which the client observed the result.
    pub at_ms: u64,
    pub client: u32,
    pub kind: EventKind,
}

/// What each message key is: its queue, delay and FIFO group. Keys are global, and a
/// message's body is the JSON object `{"k":key}`, so a delivery names its key.
#[derive(Clone, Debug)]
pub struct MessageSpec {
    pub queue: usize,
    pub delay_ms: u64,
    /// Which creation of the queue it was sent to.
    pub incarnation: u32,
    /// A scheduled message's `deliver_at` (the client's wall clock, epoch ms).
    pub deliver_at_ms: Option<u64>,
    pub fifo_group: Option<String>,
    /// True simulated time of the first attempt to send it.
    pub first_attempt_ms: u64,
    /// A transaction's half message: delivered only once committed.
    pub half: bool,
}

/// The message body (a JSON value, as the DMS API carries it) that names `key`.
pub fn body_of(key: u32) -> serde_json::Value {
    serde_json::json!({ "k": key })
}

/// The key a delivered body names, if it is one `body_of` made.
pub fn key_of(body: &serde_json::Value) -> Option<u32> {
    u32::try_from(body.get("k")?.as_u64()?).ok()
}

impl<T> Outcome<T> {
    /// For a request that reached the node and so may have taken effect (a success or an
    /// ambiguous answer): its entry serial, and its completion serial when it is known to
    /// have succeeded.
    pub fn reached(&self) -> Option<(u64, Option<u64>)> {
        match self {
            Outcome::Ok {
                serial,
                done_serial,
                ..
            } => Some((*serial, Some(*done_serial))),
            Outcome::Ambiguous { serial, .. } => Some((*serial, None)),
            Outcome::Rejected { .. } => None,
        }
    }

    /// Writes the outcome for the trace, the value of a success as `value` renders it.
    fn write_with(
        &self,
        f: &mut std::fmt::Formatter<'_>,
        value: impl FnOnce(&T) -> String,
    ) -> std::fmt::Result {
        match self {
            Outcome::Ok {
                serial,
                done_serial,
                served_ms,
                done_ms,
                value: ok,
            } => write!(
                f,
                "ok #{serial}-{done_serial}@{served_ms}-{done_ms} {}",
                value(ok)
            ),
            Outcome::Ambiguous { serial, reason } => write!(f, "ambiguous #{serial} ({reason})"),
            Outcome::Rejected { reason } => write!(f, "rejected ({reason})"),
        }
    }
}

impl<T: std::fmt::Debug> std::fmt::Display for Outcome<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.write_with(f, |value| format!("{value:?}"))
    }
}

/// A queue in the trace: `q4`, and `q4.2` for its third creation.
fn queue_mark(queue: usize, incarnation: u32) -> String {
    if incarnation == 0 {
        format!("q{queue}")
    } else {
        format!("q{queue}.{incarnation}")
    }
}

/// How the trace marks the dead-letter lane (nothing for the queue's own messages).
fn lane_mark(lane: Lane) -> &'static str {
    match lane {
        Lane::Main => "",
        Lane::Dead => " dlq",
    }
}

impl std::fmt::Display for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:>9} ms c{:<2} ", self.at_ms, self.client)?;
        match &self.kind {
            EventKind::Send {
                queue,
                keys,
                attempt,
                outcome,
            } => {
                write!(f, "send q{queue} {keys:?} try {attempt}: ")?;
                outcome.write_with(f, |ids| {
                    let ids: Vec<String> = ids.iter().map(|id| id.to_string()).collect();
                    format!("[{}]", ids.join(" "))
                })
            }
            EventKind::Receive {
                queue,
                incarnation,
                group,
                lane,
                outcome,
            } => {
                let queue = queue_mark(*queue, *incarnation);
                write!(f, "recv {queue} g{group}{}: ", lane_mark(*lane))?;
                outcome.write_with(f, |delivered| {
                    let got: Vec<String> = delivered
                        .iter()
                        .map(|d| format!("m{}/{}", d.key, d.message_id))
                        .collect();
                    format!("[{}]", got.join(" "))
                })
            }
            EventKind::Ack {
                queue,
                group,
                lane,
                kind,
                targets,
                outcome,
            } => {
                let keys: Vec<u32> = targets.iter().map(|t| t.0).collect();
                let lane = lane_mark(*lane);
                write!(
                    f,
                    "ack  q{queue} g{group}{lane} {kind:?} {keys:?}: {outcome}"
                )
            }
            EventKind::Probe {
                what,
                status,
                queues_seen,
            } => match status {
                Some(status) => write!(f, "probe {what}: {status}, {queues_seen} queues"),
                None => write!(f, "probe {what}: no answer"),
            },
            EventKind::Cancel {
                queue,
                key,
                message_id,
                outcome,
            } => write!(f, "cancel q{queue} m{key}/{message_id}: {outcome}"),
            EventKind::EndTransaction {
                queue,
                key,
                message_id,
                commit,
                outcome,
            } => {
                let action = if *commit { "commit" } else { "rollback" };
                write!(f, "{action} q{queue} m{key}/{message_id}: {outcome}")
            }
            EventKind::QueueDelete {
                queue,
                incarnation,
                outcome,
            } => write!(f, "delete {}: {outcome}", queue_mark(*queue, *incarnation)),
            EventKind::Boot { serial } => write!(f, "node: engines opened after #{serial}"),
            EventKind::Failover {
                serial,
                partition,
                term,
                node,
            } => write!(
                f,
                "cluster: n{node} leads p{partition} in term {term} after #{serial}"
            ),
            EventKind::Nemesis(what) => write!(f, "nemesis: {what}"),
        }
    }
}

/// The highest queue time reached by each serial: (serial, running maximum), by serial.
pub struct QueueHighWater {
    points: Vec<(u64, u64)>,
}

impl QueueHighWater {
    /// The highest queue time the node had reached by `serial` (0 before any).
    pub fn at(&self, serial: u64) -> u64 {
        let after = self.points.partition_point(|(at, _)| *at <= serial);
        after.checked_sub(1).map_or(0, |last| self.points[last].1)
    }
}

/// The shared, append-only record of a run.
#[derive(Default)]
pub struct History {
    pub events: Vec<Event>,
    pub specs: Vec<MessageSpec>,
    /// The node's queue time (epoch ms) at each request serial, entry and completion
    /// alike: true time plus the offset the boot's clock started with. The checker judges
    /// delays by it (a delay is kept in queue time, which follows the wall clock across
    /// restarts).
    pub queue_ms: std::collections::BTreeMap<u64, u64>,
    /// The queue time at the end of each boot, with the last serial taken by then.
    pub boot_ends: Vec<(u64, u64)>,
    /// Cluster: the highest queue time of any running node at each serial (`queue_ms`
    /// then holds the lowest, the conservative start of a delay). A leader releases a
    /// delayed message by its own queue time, which is at most this; empty on one node,
    /// where `queue_ms` serves both.
    pub queue_max_ms: std::collections::BTreeMap<u64, u64>,
    /// The node's wall clock minus its queue time at each request serial, entry and
    /// completion (a scheduled message's date becomes queue time by it).
    pub wall_gap_ms: std::collections::BTreeMap<u64, i64>,
}

impl History {
    /// Bounds of the queue time at which the node may release `key` if the send attempt
    /// that entered as `serial` (and completed as `done_serial`, when known) stored it:
    /// the entry's queue time plus the delay, or a schedule's date turned into queue time
    /// by the node's clocks then (the wall clock may step during the request).
    pub fn release_bounds(&self, key: u32, serial: u64, done_serial: Option<u64>) -> (u64, u64) {
        let spec = &self.specs[key as usize];
        match spec.deliver_at_ms {
            Some(at) => {
                let gaps = [Some(serial), done_serial]
                    .into_iter()
                    .flatten()
                    .filter_map(|s| self.wall_gap_ms.get(&s).copied());
                let (low, high) = gaps.fold((i64::MAX, i64::MIN), |(lo, hi), gap| {
                    (lo.min(gap), hi.max(gap))
                });
                let at = i64::try_from(at).expect("fits");
                let bound = |gap: i64| u64::try_from(at - gap).expect("positive");
                (bound(high), bound(low))
            }
            None => {
                let release = self.queue_ms[&serial] + spec.delay_ms;
                (release, release)
            }
        }
    }

    /// The highest queue time the node had reached by each serial (over every boot),
    /// built once for every lookup.
    pub fn queue_high_water(&self) -> QueueHighWater {
        let highest = if self.queue_max_ms.is_empty() {
            &self.queue_ms
        } else {
            &self.queue_max_ms
        };
        let mut points: Vec<(u64, u64)> = highest
            .iter()
            .map(|(serial, ms)| (*serial, *ms))
            .chain(self.boot_ends.iter().copied())
            .collect();
        points.sort_unstable();
        let mut highest = 0;
        for point in &mut points {
            highest = highest.max(point.1);
            point.1 = highest;
        }
        QueueHighWater { points }
    }

    /// FNV-1a over the trace text: equal hashes mean byte-identical traces.
    pub fn hash(&self) -> u64 {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for event in &self.events {
            for byte in event.to_string().bytes().chain(std::iter::once(b'\n')) {
                hash ^= u64::from(byte);
                hash = hash.wrapping_mul(0x0100_0000_01b3);
            }
        }
        hash
    }
}
