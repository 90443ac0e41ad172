//! The bounds of the RocketMQ adapter (docs/style.md §4).

/// The largest message body a client may send: the node's message limit
/// (`EngineLimits::dms().message_bytes_max`, which the server's engines use), advertised
/// to producers as `publishing.max_body_size` in the Telemetry settings.
pub const BODY_BYTES_MAX: u32 = 512 * 1024;

/// The largest gRPC message (after the 5-byte prefix) read or written: a body at the
/// limit plus its properties (the engine takes at most 64 KiB of attributes) and the
/// protobuf framing around them. A larger length prefix ends the call with
/// RESOURCE_EXHAUSTED before anything is buffered.
pub const GRPC_MESSAGE_BYTES_MAX: u32 = 1024 * 1024;
const _: () = assert!(GRPC_MESSAGE_BYTES_MAX > BODY_BYTES_MAX + 64 * 1024);

/// Messages one SendMessage may carry (the client sends one).
pub const SEND_MESSAGES_MAX: usize = 32;

/// Messages one ReceiveMessage may deliver (the push consumer asks for 32).
pub const RECEIVE_MESSAGES_MAX: u32 = 32;

/// Bytes of bodies and attributes one ReceiveMessage may deliver (a single larger message
/// is delivered alone).
pub const RECEIVE_BYTES_MAX: u64 = 4 * 1024 * 1024;

/// The longest long poll a ReceiveMessage may ask for; the client's deadline is its poll
/// plus its request timeout, so the answer always comes before it.
pub const LONG_POLL_MS_MAX: u64 = 30_000;

/// The long-polling timeout the Telemetry settings give push consumers.
pub const LONG_POLL_S_ADVERTISED: i64 = 20;

/// How long a message stays invisible after a receive that names no invisible duration
/// (a push consumer's, which renews it itself).
pub const INVISIBLE_MS_DEFAULT: u64 = 30_000;

/// Bytes of a topic, group, tag, key, message group, property name or value.
pub const NAME_BYTES_MAX: usize = 256;

/// Keys and user properties of one message.
pub const PROPERTIES_PER_MESSAGE_MAX: usize = 128;

/// Tags of one filter expression (`A || B || C`).
pub const FILTER_TAGS_MAX: usize = 32;

/// Delivery attempts a push consumer is told before a message is dead-lettered, for a
/// queue without a max consume count of its own (RocketMQ's default, 16 retries).
pub const DELIVERY_ATTEMPTS_DEFAULT: i32 = 17;

/// Bytes of the `authorization` header parsed.
pub const AUTHORIZATION_BYTES_MAX: usize = 512;

/// How long a transactional message waits for its producer's commit or rollback before
/// the first check, when the message does not say (RocketMQ's default transaction
/// timeout); later checks follow the engine's check interval.
pub const TRANSACTION_CHECK_AFTER_MS_DEFAULT: u64 = 6_000;

/// Transaction checks one Telemetry stream takes per pass (at most this many per
/// partition), and how often a producer's stream looks for them.
pub const TRANSACTION_CHECKS_PER_PASS_MAX: u32 = 16;
pub const TRANSACTION_CHECK_POLL_MS: u64 = 1_000;

/// Topics one producer's Telemetry stream takes transaction checks for.
pub const TRANSACTION_TOPICS_MAX: usize = 64;

/// Messages the server may queue on one Telemetry stream before the client takes them.
pub const TELEMETRY_OUTBOX_MAX: usize = 16;

#[cfg(test)]
mod tests {
    use super::*;

    /// The advertised body limit is the engines' message limit (the server runs
    /// `EngineLimits::dms()`'s): a larger one would be refused by the node after the
    /// client was told it fits.
    fn check(limits: sluice_core::engine::EngineLimits) {
        assert_eq!(u64::from(BODY_BYTES_MAX), limits.message_bytes_max);
        assert!(
            u64::from(GRPC_MESSAGE_BYTES_MAX)
                > limits.message_bytes_max + limits.attributes_bytes_max
        );
    }

    #[test]
    fn the_body_limit_is_the_nodes() {
        check(sluice_core::engine::EngineLimits::dms());
    }
}
