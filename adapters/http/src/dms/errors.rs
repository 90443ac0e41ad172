//! DMS errors: the HTTP status, the DMS error code and a precise message, and the one
//! mapping from the node's and kernel's typed errors to them. Codes in the 102400xx and
//! 102401xx ranges are the service's own (docs/dms-api.md §5); codes 10249xxx are Sluice's,
//! for cases the service's table does not name (listed in `docs/dms-adapter.md`).

use http::StatusCode;
use sluice_core::engine::types::EngineError;

use sluice_node::NodeError;

pub const INVALID_TAG: &str = "10240004";
pub const INVALID_PROJECT_ID: &str = "10240005";
pub const INVALID_NAME_CHARS: &str = "10240007";
pub const INVALID_JSON: &str = "10240009";
pub const INVALID_DESCRIPTION_CHARS: &str = "10240010";
pub const QUEUE_NAME_LENGTH: &str = "10240011";
pub const GROUP_NAME_LENGTH: &str = "10240012";
pub const DESCRIPTION_LENGTH: &str = "10240013";
pub const TOO_MANY_MESSAGES: &str = "10240014";
pub const INVALID_QUEUE_ID: &str = "10240015";
pub const INVALID_GROUP_ID: &str = "10240016";
pub const QUEUE_EXISTS: &str = "10240017";
pub const GROUP_EXISTS: &str = "10240018";
pub const TOO_MANY_GROUPS: &str = "10240019";
pub const QUOTA_EXCEEDED: &str = "10240020";
pub const TIME_WAIT_RANGE: &str = "10240021";
pub const MAX_CONSUME_COUNT_RANGE: &str = "10240022";
pub const RETENTION_RANGE: &str = "10240027";
pub const RETENTION_NOT_KAFKA: &str = "10240028";
pub const PROJECT_MISMATCH: &str = "10240104";
// Sluice's codes.
pub const INVALID_PARAMETER: &str = "10249001";
pub const UNSUPPORTED_MEDIA_TYPE: &str = "10249002";
pub const REQUEST_TOO_LARGE: &str = "10249003";
pub const MESSAGE_TOO_LARGE: &str = "10249004";
pub const INVALID_HANDLER: &str = "10249005";
pub const FILTER_CONFLICT: &str = "10249006";
pub const NO_DEAD_LETTERS: &str = "10249007";
pub const INVALID_DELAY: &str = "10249008";
pub const CAPACITY: &str = "10249009";
pub const RESOURCE_NOT_FOUND: &str = "10249040";
pub const QUEUE_NOT_FOUND: &str = "10249041";
pub const GROUP_NOT_FOUND: &str = "10249042";
pub const METHOD_NOT_ALLOWED: &str = "10249050";
pub const REQUEST_TIMEOUT: &str = "10249408";
pub const NOT_SCHEDULED: &str = "10249409";
pub const INTERNAL: &str = "10249500";
pub const UNAVAILABLE: &str = "10249503";

/// One failed request, ready to render as the §5 envelope.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DmsError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl DmsError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> DmsError {
        DmsError {
            status,
            code,
            message: message.into(),
        }
    }

    /// A 400 with `code`.
    pub fn bad(code: &'static str, message: impl Into<String>) -> DmsError {
        DmsError::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// A 400 for a parameter outside its rules, without a code of its own.
    pub fn parameter(message: impl Into<String>) -> DmsError {
        DmsError::bad(INVALID_PARAMETER, message)
    }

    pub fn queue_not_found() -> DmsError {
        DmsError::new(
            StatusCode::NOT_FOUND,
            QUEUE_NOT_FOUND,
            "The queue does not exist.",
        )
    }

    pub fn group_not_found() -> DmsError {
        DmsError::new(
            StatusCode::NOT_FOUND,
            GROUP_NOT_FOUND,
            "The consumer group does not exist.",
        )
    }
}

impl From<NodeError> for DmsError {
    fn from(error: NodeError) -> DmsError {
        from_node(error)
    }
}

/// The one mapping from node and kernel errors to DMS errors. No `_` arm: a new kernel
/// error must be given its protocol meaning here (docs/style.md §6).
pub fn from_node(error: NodeError) -> DmsError {
    let engine = match error {
        NodeError::Engine(engine) => engine,
        NodeError::Unavailable(why) => {
            return DmsError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                UNAVAILABLE,
                format!("The service is temporarily unavailable ({why}); retry."),
            )
        }
        // Changes of the queue's fields retry a bounded number of times before they let
        // this through (`queue_meta::update`).
        NodeError::MetaChanged => {
            return DmsError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                UNAVAILABLE,
                "The queue's fields were changed by other requests meanwhile; retry.",
            )
        }
    };
    match engine {
        EngineError::QueueNotFound => DmsError::queue_not_found(),
        EngineError::GroupNotFound => DmsError::group_not_found(),
        EngineError::QueueExists => DmsError::bad(QUEUE_EXISTS, "The queue already exists."),
        EngineError::GroupExists => {
            DmsError::bad(GROUP_EXISTS, "The consumer group already exists.")
        }
        EngineError::InvalidName => DmsError::bad(
            INVALID_NAME_CHARS,
            "The name contains invalid characters or has an invalid length.",
        ),
        EngineError::InvalidConfig(field) => {
            DmsError::parameter(format!("The queue setting {field} is invalid."))
        }
        EngineError::TooManyQueues { limit } => DmsError::bad(
            QUOTA_EXCEEDED,
            format!("The quota is insufficient: at most {limit} queues per project."),
        ),
        EngineError::TooManyGroups { limit } => DmsError::bad(
            TOO_MANY_GROUPS,
            format!("The number of consumer groups exceeds the upper limit of {limit}."),
        ),
        EngineError::EmptyBatch => DmsError::bad(
            TOO_MANY_MESSAGES,
            "messages must hold at least one message.",
        ),
        EngineError::BatchTooLarge { count, limit } => DmsError::bad(
            TOO_MANY_MESSAGES,
            format!("The request holds {count} messages; at most {limit} are allowed."),
        ),
        EngineError::BatchBytesTooLarge { bytes, limit } => DmsError::bad(
            MESSAGE_TOO_LARGE,
            format!("The messages total {bytes} bytes; at most {limit} are allowed."),
        ),
        EngineError::MessageTooLarge { bytes, limit } => DmsError::bad(
            MESSAGE_TOO_LARGE,
            format!("A message body has {bytes} bytes; at most {limit} are allowed."),
        ),
        EngineError::AttributesTooLarge { bytes, limit } => DmsError::bad(
            MESSAGE_TOO_LARGE,
            format!("A message's attributes have {bytes} bytes; at most {limit} are allowed."),
        ),
        EngineError::TooManyTags { count, limit } => DmsError::bad(
            INVALID_TAG,
            format!("A message has {count} tags; at most {limit} are allowed."),
        ),
        EngineError::InvalidTag => DmsError::bad(INVALID_TAG, "The tag name is invalid."),
        EngineError::InvalidDelay => DmsError::bad(INVALID_DELAY, "The delay is out of range."),
        EngineError::InvalidVisibility { min_ms, max_ms } => DmsError::parameter(format!(
            "ack_wait must be from {} to {} seconds.",
            min_ms / 1000,
            max_ms / 1000
        )),
        EngineError::InvalidMaxMessages { limit } => DmsError::bad(
            TOO_MANY_MESSAGES,
            format!("max_msgs must be an integer from 1 to {limit}."),
        ),
        EngineError::FilterConflict => DmsError::bad(
            FILTER_CONFLICT,
            "The consumer group already consumes with a different tag filter.",
        ),
        EngineError::TooManyDistinctTags => DmsError::bad(
            CAPACITY,
            "The queue has reached its limit of distinct tags.",
        ),
        EngineError::DedupTableFull => DmsError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            CAPACITY,
            "The queue's deduplication table is full; retry later.",
        ),
        // 409, not 404: the id may name a message that exists (released, being
        // consumed), and a client must not read "already gone" as "cancelled".
        EngineError::NotScheduled => DmsError::new(
            StatusCode::CONFLICT,
            NOT_SCHEDULED,
            "The message is not waiting for its delivery time: it was released or \
             cancelled already, was never delayed, or does not exist.",
        ),
        EngineError::NoDeadLetters => DmsError::bad(
            NO_DEAD_LETTERS,
            "The queue has no dead letters: its redrive_policy is disable.",
        ),
        EngineError::Busy => DmsError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            UNAVAILABLE,
            "The server is busy; retry.",
        ),
        // A failover is under way: the write may or may not have been stored.
        EngineError::NotLeader { .. } => DmsError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            UNAVAILABLE,
            "The partition is changing leaders; retry.",
        ),
        // Membership changes come from the admin API, not the DMS API; should one reach
        // here, it reads as the change it is.
        EngineError::MembershipBusy => DmsError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            UNAVAILABLE,
            "A membership change is under way; retry once it is done.",
        ),
        EngineError::InvalidMembership(why) => {
            DmsError::parameter(format!("Invalid membership change: {why}."))
        }
        // The engine's limits keep such batches out: the server's fault, not the client's.
        EngineError::Encode(error) => DmsError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            INTERNAL,
            format!("The messages could not be written as one log batch ({error})."),
        ),
        EngineError::Storage(_) => DmsError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            INTERNAL,
            "The request could not be stored; retry.",
        ),
    }
}

#[cfg(test)]
mod tests {
    use sluice_core::engine::types::{RecordProblem, StorageFault};
    use sluice_core::record::EncodeError;

    use super::*;

    #[test]
    fn kernel_faults_are_server_errors_with_readable_messages() {
        // Goal: an encode failure is the server's fault (not an empty batch) and its
        // message reads as a sentence; a storage fault stays generic (no file names).
        let encode = from_node(NodeError::Engine(EngineError::Encode(EncodeError::Empty)));
        assert_eq!(
            (encode.status, encode.code),
            (StatusCode::INTERNAL_SERVER_ERROR, INTERNAL)
        );
        assert_eq!(
            encode.message,
            "The messages could not be written as one log batch (a batch needs at least one \
             record)."
        );
        let fault = StorageFault::Record {
            offset: 7,
            problem: RecordProblem::Missing,
        };
        let storage = from_node(NodeError::Engine(EngineError::Storage(fault)));
        assert_eq!(
            (storage.status, storage.code, storage.message.as_str()),
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                INTERNAL,
                "The request could not be stored; retry."
            )
        );
    }
}
