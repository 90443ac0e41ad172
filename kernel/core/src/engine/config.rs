//! Engine configuration, limits and the plain request and answer types of its API.

use super::types::{EngineError, GroupId, QueueConfig, QueueId, TagFilter};
use crate::limits::{ENGINE_BATCH_MESSAGES_CEILING, ENGINE_TAGS_PER_MESSAGE_CEILING};
use crate::log::{LogConfig, OpenError};

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
    /// Between two checks of an unresolved transaction (RocketMQ's
    /// `transactionCheckInterval`).
    pub transaction_check_interval_ms: u64,
    /// Checks of an unresolved transaction before its half message is dropped
    /// (RocketMQ's `transactionCheckMax`).
    pub transaction_checks_max: u32,
}

impl EngineLimits {
    /// Limits that match the DMS queue API (docs/dms-api.md §4) where clients depend on them.
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
            transaction_check_interval_ms: 60_000,
            transaction_checks_max: 15,
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
        if self.queues_per_tenant_max == 0
            || self.queues_per_tenant_max > crate::limits::QUEUES_PER_TENANT_CEILING
        {
            return Err(EngineError::InvalidConfig("queues_per_tenant_max"));
        }
        if self.transaction_check_interval_ms == 0
            || self.transaction_check_interval_ms > crate::limits::ENGINE_DELAY_MS_CEILING
        {
            return Err(EngineError::InvalidConfig("transaction_check_interval_ms"));
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
    /// The replica's Raft state file could not be read, or raft-rs refused the state.
    Replica(String),
}

impl std::fmt::Display for EngineOpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EngineOpenError::Config(error) => write!(f, "invalid engine config: {error}"),
            EngineOpenError::Log(error) => write!(f, "{error}"),
            EngineOpenError::Boot(error) => write!(f, "cannot write the boot record: {error}"),
            EngineOpenError::Replica(what) => write!(f, "raft state: {what}"),
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
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReceiveRequest {
    pub max_messages: u32,
    /// The most bytes (bodies and user attributes) the delivered messages may total: the
    /// receive stops before the first message that would take it past this, so an answer
    /// holds whole messages only. `u64::MAX` for no byte limit.
    pub bytes_max: u64,
    /// Whether a first message larger than `bytes_max` on its own is delivered (alone)
    /// rather than nothing, so a large message cannot stall its consumers. A caller that
    /// spreads one budget over several receives sets it only while nothing was delivered.
    pub oversize_first: bool,
    pub visibility_ms: u64,
    pub filter: Option<TagFilter>,
    /// A receive attempt's key (SQS's `ReceiveRequestAttemptId`, hashed): a receive
    /// repeated with the same key within `RECEIVE_ATTEMPT_MS` answers the same deliveries,
    /// their leases extended by `visibility_ms`, while every one of them is still held by
    /// it (leader-only state; otherwise it receives afresh and keeps its answer under the
    /// key). `None` for a receive that is not retried so.
    #[serde(default)]
    pub attempt: Option<u64>,
}

/// A queue as listed to its tenant.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct QueueInfo {
    pub id: QueueId,
    pub tenant: String,
    pub name: String,
    pub config: QueueConfig,
    pub created_ms: u64,
    pub meta: Vec<u8>,
    /// The queue that takes its dead letters (`Engine::set_dead_letter`), if any.
    pub dead_letter_to: Option<QueueId>,
    pub sent_total: u64,
    pub stored: u64,
    pub delayed: u64,
    pub groups: Vec<(GroupId, String)>,
}
