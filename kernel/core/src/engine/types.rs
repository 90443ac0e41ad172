//! The engine's vocabulary: ids, queue and group configuration, requests, results and
//! errors. Plain data; adapters convert their wire types to and from these.

use serde::{Deserialize, Serialize};

use super::codec::CodecError;
use crate::log::{LogError, ReadError};
use crate::record::EncodeError;
use crate::storage::{IoError, IoErrorKind};

/// A queue, unique within one engine for its whole life (ids are never reused).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct QueueId(pub u32);

/// A consumer group, unique within one engine for its whole life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct GroupId(pub u32);

/// A message's identity: the log offset of its send record. Stable across restarts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct MessageId(pub u64);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FifoScope {
    /// One order for the whole queue.
    Queue,
    /// One order per message group (the send's `fifo_group`).
    MessageGroup,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum QueueMode {
    Normal,
    Fifo(FifoScope),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RetryPolicy {
    /// A failed message is visible again at once.
    Immediate,
    /// A failed message waits 10s, 30s, 1m, ... 2h (RocketMQ's schedule) before retrying.
    Backoff,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueConfig {
    pub mode: QueueMode,
    pub retention_ms: u64,
    /// With `Some(n)`, a message that failed n times moves to the group's dead letters.
    pub max_consume_count: Option<u16>,
    pub retry: RetryPolicy,
    pub dedup_window_ms: u64,
    #[serde(default)]
    /// How many of the node's partitions the queue spreads over: partitions `0..n`
    /// (a Kafka topic's partition count). 0, as every DMS queue has, means all of them;
    /// a count above the node's is capped to it ([`QueueConfig::partitions_on`]).
    pub partitions: u16,
}

impl QueueConfig {
    /// The partitions the queue uses on a node of `node_partitions`: `0..` this.
    pub fn partitions_on(&self, node_partitions: u32) -> u32 {
        match u32::from(self.partitions) {
            0 => node_partitions,
            count => count.min(node_partitions),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupStart {
    /// The group sees every message still retained.
    Oldest,
    /// The group sees only messages that become available after its creation.
    Latest,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TagMatch {
    /// A message matches when it carries any of the filter's tags.
    Any,
    /// A message matches when it carries every one of the filter's tags.
    All,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TagFilter {
    pub tags: Vec<String>,
    pub mode: TagMatch,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Delay {
    None,
    /// One of RocketMQ's 18 levels, 1-based: 1s 5s 10s 30s 1m 2m ... 1h 2h.
    Level(u8),
    /// Any delay in milliseconds.
    Ms(u64),
    /// Deliver at this absolute time (a scheduled message).
    At(u64),
    /// A transactional half message: invisible until its transaction is committed
    /// (`Engine::end_transaction`), dropped on rollback; unresolved after
    /// `check_after_ms`, the producer is asked (`Engine::take_transaction_checks`), and
    /// again every `EngineLimits::transaction_check_interval_ms`, at most
    /// `transaction_checks_max` times, after which it is dropped.
    Half {
        check_after_ms: u64,
    },
}

/// RocketMQ's delay levels in milliseconds.
pub const DELAY_LEVELS_MS: [u64; 18] = [
    1_000, 5_000, 10_000, 30_000, 60_000, 120_000, 180_000, 240_000, 300_000, 360_000, 420_000,
    480_000, 540_000, 600_000, 1_200_000, 1_800_000, 3_600_000, 7_200_000,
];

/// The retry back-off schedule: the wait after the n-th failure (the last repeats).
pub const RETRY_BACKOFF_MS: [u64; 16] = [
    10_000, 30_000, 60_000, 120_000, 180_000, 240_000, 300_000, 360_000, 420_000, 480_000, 540_000,
    600_000, 1_200_000, 1_800_000, 3_600_000, 7_200_000,
];

/// One message to send.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendInput {
    pub body: Vec<u8>,
    /// Opaque to the engine (the adapter's attribute encoding), returned on receive.
    pub attributes: Vec<u8>,
    pub tags: Vec<String>,
    /// FIFO message group; ignored by NORMAL queues and by FIFO queues of `Queue` scope.
    pub fifo_group: Option<String>,
    pub delay: Delay,
    pub dedup_id: Option<String>,
}

/// A check of an open transaction the leader logged (`Command::Check`): the producer of
/// half message `message` is to be asked whether to commit or roll it back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransactionCheck {
    pub queue: QueueId,
    pub message: MessageId,
    /// Checks logged so far, this one included.
    pub checks: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendOutcome {
    pub message_id: MessageId,
    /// The send repeated a dedup id seen within the window: nothing new was stored and
    /// `message_id` is the original's.
    pub duplicate: bool,
}

/// An opaque receipt for one delivery. Adapters encode it for the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ReceiptHandle {
    pub queue: QueueId,
    pub group: GroupId,
    pub seq: u64,
    pub nonce: u64,
    pub dead_letter: bool,
}

impl ReceiptHandle {
    pub const ENCODED_BYTES: usize = 4 + 4 + 8 + 8 + 1;

    pub fn encode(&self) -> [u8; Self::ENCODED_BYTES] {
        let mut out = [0u8; Self::ENCODED_BYTES];
        out[0..4].copy_from_slice(&self.queue.0.to_le_bytes());
        out[4..8].copy_from_slice(&self.group.0.to_le_bytes());
        out[8..16].copy_from_slice(&self.seq.to_le_bytes());
        out[16..24].copy_from_slice(&self.nonce.to_le_bytes());
        out[24] = u8::from(self.dead_letter);
        out
    }

    pub fn decode(bytes: &[u8]) -> Option<ReceiptHandle> {
        if bytes.len() != Self::ENCODED_BYTES || bytes[24] > 1 {
            return None;
        }
        Some(ReceiptHandle {
            queue: QueueId(u32::from_le_bytes(bytes[0..4].try_into().ok()?)),
            group: GroupId(u32::from_le_bytes(bytes[4..8].try_into().ok()?)),
            seq: u64::from_le_bytes(bytes[8..16].try_into().ok()?),
            nonce: u64::from_le_bytes(bytes[16..24].try_into().ok()?),
            dead_letter: bytes[24] == 1,
        })
    }
}

/// One delivered message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    pub handle: ReceiptHandle,
    pub message_id: MessageId,
    /// 1 for the first delivery to this group; failed deliveries add one.
    pub delivery_count: u32,
    /// When the message was first delivered to this group: this delivery's time for a
    /// first delivery, else the first's as the serving leader remembers it (leader-only
    /// state: after a restart or a change of leader, the first delivery it made).
    pub first_delivered_ms: u64,
    pub sent_ms: u64,
    /// A slice of the log's batch (cached or read), not a copy.
    pub body: bytes::Bytes,
    /// The user's attributes, a slice of the record's like `body`.
    pub attributes: bytes::Bytes,
    pub tags: Vec<String>,
    pub fifo_group: Option<String>,
}

impl Delivery {
    /// The bytes this message counts against a receive's byte budget
    /// (`ReceiveRequest::bytes_max`), as the engine counted them when it picked it.
    pub fn budget_bytes(&self) -> u64 {
        u64::from(super::state::message_bytes(
            self.body.len(),
            self.attributes.len(),
        ))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AckKind {
    Success,
    /// The consumer failed: the message comes back (after back-off when configured).
    Fail,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AckOutcome {
    Applied,
    /// The message was already done for this group (a repeated ack): nothing changed.
    AlreadyDone,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum HandleError {
    /// No such queue, group or message (or retention removed it).
    Unknown,
    /// The delivery this handle names is over: its visibility ran out or it was
    /// redelivered since.
    Stale,
}

/// Counters for one consumer group.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupStats {
    /// Messages the group has not finished (available, in flight or waiting to retry).
    pub backlog: u64,
    pub in_flight: u64,
    pub dead_letters: u64,
    pub acked_total: u64,
    pub delivered_total: u64,
    /// Messages move tasks took out of the group, ever.
    pub moved_total: u64,
    /// Messages the group's move tasks have still to move.
    pub move_remaining: u64,
    /// Partitions where a move task of the group runs.
    pub moving: u64,
    /// When the oldest message the group has not finished became available (queue time,
    /// epoch milliseconds); 0 when it has none.
    pub oldest_available_ms: u64,
}

impl GroupStats {
    /// Adds another partition's counts of the same group.
    pub fn add(&mut self, other: &GroupStats) {
        self.backlog += other.backlog;
        self.in_flight += other.in_flight;
        self.dead_letters += other.dead_letters;
        self.acked_total += other.acked_total;
        self.delivered_total += other.delivered_total;
        self.moved_total += other.moved_total;
        self.move_remaining += other.move_remaining;
        self.moving += other.moving;
        self.oldest_available_ms = match (self.oldest_available_ms, other.oldest_available_ms) {
            (0, other) => other,
            (mine, 0) => mine,
            (mine, other) => mine.min(other),
        };
    }
}

/// Serde carries an error between nodes (a forwarded call's answer) except the two that
/// only the replica that met them can act on: [`EngineError::Encode`] and
/// [`EngineError::Storage`] fail to serialize (the sender reports them otherwise).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EngineError {
    QueueNotFound,
    GroupNotFound,
    QueueExists,
    GroupExists,
    InvalidName,
    InvalidConfig(#[serde(with = "config_field")] ConfigField),
    TooManyQueues {
        limit: u32,
    },
    TooManyGroups {
        limit: u32,
    },
    EmptyBatch,
    BatchTooLarge {
        count: u32,
        limit: u32,
    },
    BatchBytesTooLarge {
        bytes: u64,
        limit: u64,
    },
    MessageTooLarge {
        bytes: u64,
        limit: u64,
    },
    AttributesTooLarge {
        bytes: u64,
        limit: u64,
    },
    TooManyTags {
        count: u32,
        limit: u32,
    },
    InvalidTag,
    InvalidDelay,
    InvalidVisibility {
        min_ms: u64,
        max_ms: u64,
    },
    InvalidMaxMessages {
        limit: u32,
    },
    /// The group already filters by a different tag filter.
    FilterConflict,
    TooManyDistinctTags,
    DedupTableFull,
    /// Cancel of a scheduled message that is unknown or already delivered, or the end of
    /// a transaction whose half message is unknown or already resolved.
    NotScheduled,
    /// A dead-letter operation on a queue without a redrive policy.
    NoDeadLetters,
    /// The log has too much staged, or the Raft group too much uncommitted; retry.
    Busy,
    /// This replica does not lead its Raft group, or lost the lead before the request was
    /// committed (it may still commit: the caller cannot tell). `leader` is the replica
    /// it believes leads, if any. Retriable, at the leader.
    NotLeader {
        leader: Option<u64>,
    },
    /// A membership change is under way in the partition's group; retry once it is done.
    MembershipBusy,
    /// A membership change the group cannot take (the reason says why).
    InvalidMembership(super::membership::Refusal),
    /// The log cannot take the batch the engine built as one record batch; nothing was
    /// stored. The engine's own limits keep such batches out, so this is the server's
    /// fault, not the request's. (An encoding too large for the log is reported as
    /// [`EngineError::BatchBytesTooLarge`] instead: a smaller batch fits.)
    #[serde(skip)]
    Encode(EncodeError),
    /// The disk or the log failed. After a write-path fault ([`StorageFault::Log`]) the
    /// engine must be reopened.
    #[serde(skip)]
    Storage(StorageFault),
}

impl std::fmt::Display for EngineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EngineError::QueueNotFound => write!(f, "queue not found"),
            EngineError::GroupNotFound => write!(f, "consumer group not found"),
            EngineError::QueueExists => write!(f, "the queue already exists"),
            EngineError::GroupExists => write!(f, "the consumer group already exists"),
            EngineError::InvalidName => write!(f, "invalid name"),
            EngineError::InvalidConfig(what) => write!(f, "invalid configuration: {what}"),
            EngineError::NotLeader {
                leader: Some(leader),
            } => {
                write!(
                    f,
                    "this replica does not lead its partition (replica {leader} does)"
                )
            }
            EngineError::NotLeader { leader: None } => {
                write!(
                    f,
                    "this replica does not lead its partition (no leader is known)"
                )
            }
            EngineError::TooManyQueues { limit } => {
                write!(f, "too many queues (at most {limit})")
            }
            EngineError::TooManyGroups { limit } => {
                write!(f, "too many consumer groups (at most {limit})")
            }
            EngineError::EmptyBatch => write!(f, "a send needs at least one message"),
            EngineError::BatchTooLarge { count, limit } => {
                write!(
                    f,
                    "{count} messages in one batch; at most {limit} are allowed"
                )
            }
            EngineError::BatchBytesTooLarge { bytes, limit } => {
                write!(
                    f,
                    "the batch has {bytes} bytes; at most {limit} are allowed"
                )
            }
            EngineError::MessageTooLarge { bytes, limit } => {
                write!(
                    f,
                    "a message body has {bytes} bytes; at most {limit} are allowed"
                )
            }
            EngineError::AttributesTooLarge { bytes, limit } => write!(
                f,
                "a message's attributes have {bytes} bytes; at most {limit} are allowed"
            ),
            EngineError::TooManyTags { count, limit } => {
                write!(f, "a message has {count} tags; at most {limit} are allowed")
            }
            EngineError::InvalidTag => write!(f, "invalid tag"),
            EngineError::InvalidDelay => write!(f, "the delay is out of range"),
            EngineError::InvalidVisibility { min_ms, max_ms } => {
                write!(f, "visibility must be from {min_ms} to {max_ms} ms")
            }
            EngineError::InvalidMaxMessages { limit } => {
                write!(f, "the message count must be from 1 to {limit}")
            }
            EngineError::FilterConflict => {
                write!(f, "the consumer group already uses a different tag filter")
            }
            EngineError::TooManyDistinctTags => {
                write!(f, "the queue has reached its limit of distinct tags")
            }
            EngineError::DedupTableFull => write!(f, "the queue's deduplication table is full"),
            EngineError::NotScheduled => {
                write!(f, "the message is not waiting for its delivery time")
            }
            EngineError::NoDeadLetters => write!(f, "the queue keeps no dead letters"),
            EngineError::Busy => write!(f, "the log is busy; retry"),
            EngineError::MembershipBusy => {
                write!(f, "a membership change is under way; retry once it is done")
            }
            EngineError::InvalidMembership(why) => write!(f, "invalid membership change: {why}"),
            EngineError::Encode(error) => write!(f, "the log cannot take the batch: {error}"),
            EngineError::Storage(fault) => write!(f, "storage fault: {fault}"),
        }
    }
}

/// The field [`EngineError::InvalidConfig`] names (an alias, so that serde does not
/// borrow it from the input: it is read back through `config_field`).
pub type ConfigField = &'static str;

/// [`EngineError::InvalidConfig`]'s field name over serde: written as text, read back as
/// the engine's own name for it ([`CONFIG_FIELDS`]), or `"unknown"` for any other text
/// (a name is never allocated for the life of the process from a peer's bytes).
mod config_field {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(
        field: &&'static str,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(field)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<&'static str, D::Error> {
        let text = String::deserialize(deserializer)?;
        Ok(super::CONFIG_FIELDS
            .iter()
            .find(|known| **known == text)
            .copied()
            .unwrap_or("unknown"))
    }
}

/// Every field name [`EngineError::InvalidConfig`] carries, in the engine and the node
/// layer, so that one read from a peer keeps its name.
pub const CONFIG_FIELDS: [&str; 16] = [
    "admin secret",
    "batch_bytes_max",
    "batch_messages_max",
    "committed offsets",
    "dead_letter_target",
    "max_consume_count",
    "meta",
    "move target",
    "offset metadata",
    "partitions",
    "receive_messages_max",
    "retention_ms",
    "tags_per_message_max",
    "tenant record",
    "tenants",
    "visibility range",
];

/// What failed under [`EngineError::Storage`], as the log or the disk reported it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StorageFault {
    /// The log's write path failed (append, group commit, sealing or retention). The log
    /// is poisoned: every later write fails until the engine is reopened.
    Log(LogError),
    /// A read of the log failed (message bodies for a receive).
    Read(ReadError),
    /// Writing a snapshot, or removing an older one, failed.
    Snapshot { file: String, error: IoError },
    /// The record at `offset`, where the engine's state places a message, is not a
    /// usable send record.
    Record { offset: u64, problem: RecordProblem },
    /// The replica's Raft state could not be kept: its state file failed, or a committed
    /// entry does not decode. The engine must be reopened.
    Replica(String),
}

/// Why a log record is not the send record the engine expected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordProblem {
    /// Its attributes do not decode as a command.
    Undecodable(CodecError),
    /// It holds a command other than a send.
    NotASend,
    /// The log returned no record at that offset.
    Missing,
}

impl StorageFault {
    /// The disk error underneath, when the disk reported one.
    pub fn io_error(&self) -> Option<&IoError> {
        match self {
            StorageFault::Log(LogError::Io { error, .. })
            | StorageFault::Read(ReadError::Io { error, .. })
            | StorageFault::Snapshot { error, .. } => Some(error),
            StorageFault::Read(ReadError::Corrupt { .. } | ReadError::Removed { .. })
            | StorageFault::Log(LogError::OutOfRange { .. } | LogError::Truncated { .. })
            | StorageFault::Record { .. }
            | StorageFault::Replica(_) => None,
        }
    }

    /// The kind of the disk error underneath, when the disk reported one.
    pub fn io_kind(&self) -> Option<IoErrorKind> {
        self.io_error().map(|error| error.kind)
    }
}

impl std::fmt::Display for StorageFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StorageFault::Log(error) => write!(f, "log write failed: {error}"),
            StorageFault::Read(error) => write!(f, "log read failed: {error}"),
            StorageFault::Snapshot { file, error } => {
                write!(f, "snapshot {file}: {error}")
            }
            StorageFault::Record { offset, problem } => {
                write!(f, "log record {offset} {problem}")
            }
            StorageFault::Replica(what) => write!(f, "replica: {what}"),
        }
    }
}

impl std::fmt::Display for RecordProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RecordProblem::Undecodable(error) => write!(
                f,
                "does not decode as a command (at byte {} of its attributes)",
                error.position
            ),
            RecordProblem::NotASend => write!(f, "is not a send"),
            RecordProblem::Missing => write!(f, "is missing from the log"),
        }
    }
}
