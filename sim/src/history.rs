//! The history: every client operation and its result, in the order clients observed them,
//! plus nemesis events. It is the checker's only input besides the message catalogue, and
//! its text form is the trace `--seed S` prints and the determinism test hashes.

use sluice_core::engine::types::{AckKind, MessageId};

/// The server's verdict as a client (or, for lost replies, the simulator) knows it.
#[derive(Clone, Debug)]
pub enum Outcome<T> {
    /// Entered the node as serial `serial` at `served_ms` and completed as serial
    /// `done_serial`; the reply arrived.
    Ok {
        serial: u64,
        done_serial: u64,
        served_ms: u64,
        value: T,
    },
    /// Reached the engine as request `serial` but the client cannot know whether it took
    /// effect: the reply was dropped, or the engine failed its write (storage error).
    Ambiguous { serial: u64, reason: String },
    /// Definitely not applied: dropped before the node, node down, or rejected by checks.
    Rejected { reason: String },
}

/// One delivered message as the checker needs it.
#[derive(Clone, Debug)]
pub struct Delivered {
    pub key: u32,
    pub message_id: MessageId,
    pub delivery_count: u32,
}

#[derive(Clone, Debug)]
pub enum EventKind {
    Send {
        queue: usize,
        keys: Vec<u32>,
        attempt: u32,
        outcome: Outcome<Vec<(MessageId, bool)>>,
    },
    Receive {
        queue: usize,
        group: usize,
        outcome: Outcome<Vec<Delivered>>,
    },
    Ack {
        queue: usize,
        group: usize,
        kind: AckKind,
        targets: Vec<(u32, MessageId)>,
        /// Per target: `true` when the engine answered Applied or AlreadyDone.
        outcome: Outcome<Vec<bool>>,
    },
    /// The node opened its engine after request `serial` (leases start over).
    Boot {
        serial: u64,
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
/// message's body is `m{key}`, so a delivery names its key.
#[derive(Clone, Debug)]
pub struct MessageSpec {
    pub queue: usize,
    pub delay_ms: u64,
    pub fifo_group: Option<String>,
    /// Simulated time of the first attempt to send it (a lower bound of its arrival).
    pub first_attempt_ms: u64,
}

pub fn body_of(key: u32) -> Vec<u8> {
    format!("m{key}").into_bytes()
}

pub fn key_of(body: &[u8]) -> Option<u32> {
    std::str::from_utf8(body)
        .ok()?
        .strip_prefix('m')?
        .parse()
        .ok()
}

impl<T: std::fmt::Debug> std::fmt::Display for Outcome<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Ok {
                serial,
                done_serial,
                served_ms,
                value,
            } => write!(f, "ok #{serial}-{done_serial}@{served_ms} {value:?}"),
            Outcome::Ambiguous { serial, reason } => write!(f, "ambiguous #{serial} ({reason})"),
            Outcome::Rejected { reason } => write!(f, "rejected ({reason})"),
        }
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
            } => write!(f, "send q{queue} {keys:?} try {attempt}: {outcome}"),
            EventKind::Receive {
                queue,
                group,
                outcome,
            } => {
                write!(f, "recv q{queue} g{group}: ")?;
                match outcome {
                    Outcome::Ok {
                        serial,
                        served_ms,
                        value,
                        ..
                    } => {
                        let got: Vec<String> = value
                            .iter()
                            .map(|d| format!("m{}/{}x{}", d.key, d.message_id.0, d.delivery_count))
                            .collect();
                        write!(f, "ok #{serial}@{served_ms} [{}]", got.join(" "))
                    }
                    other => write!(f, "{other}"),
                }
            }
            EventKind::Ack {
                queue,
                group,
                kind,
                targets,
                outcome,
            } => {
                let keys: Vec<u32> = targets.iter().map(|t| t.0).collect();
                write!(f, "ack  q{queue} g{group} {kind:?} {keys:?}: {outcome}")
            }
            EventKind::Boot { serial } => write!(f, "node: engine opened after #{serial}"),
            EventKind::Nemesis(what) => write!(f, "nemesis: {what}"),
        }
    }
}

/// The shared, append-only record of a run.
#[derive(Default)]
pub struct History {
    pub events: Vec<Event>,
    pub specs: Vec<MessageSpec>,
}

impl History {
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
