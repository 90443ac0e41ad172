//! The DMS adapter's limits and defaults. Every bound a request is checked against is a
//! field here, documented in `docs/dms-adapter.md`; the engine enforces its own limits
//! (`EngineLimits`) behind these. No `Default`: callers choose, usually
//! [`DmsConfig::dms_default`].

/// Limits and defaults of the DMS queue API (docs/dms-api.md §4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DmsConfig {
    /// Smallest `ack_wait` accepted, seconds (15 on the real service; lower in tests).
    pub ack_wait_s_min: u64,
    pub ack_wait_s_max: u64,
    pub ack_wait_s_default: u64,
    /// `time_wait` (long poll) range and default, seconds.
    pub time_wait_s_min: u64,
    pub time_wait_s_max: u64,
    pub time_wait_s_default: u64,
    /// `max_msgs` upper bound and default of a consume.
    pub consume_messages_max: u32,
    /// Bytes of messages (bodies and attributes, as stored) one consume answer carries at
    /// most: fewer messages are answered rather than more bytes, except that a single
    /// message larger than this on its own is answered alone.
    pub consume_bytes_max: u64,
    /// Messages one send may carry.
    pub send_messages_max: u32,
    /// Bytes of one message's body (its JSON text), and of all bodies and attributes of
    /// one send together.
    pub message_bytes_max: u64,
    pub send_bytes_max: u64,
    /// Bytes of any request body, checked before parsing.
    pub request_bytes_max: u64,
    /// Bytes of one message's attributes (their JSON text).
    pub attributes_bytes_max: u64,
    /// Tags on one message or in one consume filter.
    pub tags_max: u32,
    /// Groups one create request may name (the per-queue limit is the tenant's quota).
    pub groups_per_request_max: u32,
    /// Entries one ack request may carry.
    pub ack_entries_max: u32,
    /// Queue retention, minutes (the `reservation` field): 4320 = 72 h.
    pub retention_minutes: u64,
    /// `max_consume_count` range when redrive is enabled.
    pub max_consume_count_max: u16,
    /// Longest `delay_time`, milliseconds (7 days).
    pub delay_ms_max: u64,
    /// How far ahead of the node's wall clock a `deliver_at` (Sluice extension) may lie,
    /// milliseconds (365 days). Both delay limits must stay within the engine's
    /// `ENGINE_DELAY_MS_CEILING` (366 days), which refuses anything beyond with the same
    /// code; the day between is slack for the time from the adapter's clock reading to
    /// the engine's.
    pub schedule_ahead_ms_max: u64,
    /// A transaction's first check when its half message names none (Sluice extension
    /// `transaction`), milliseconds: RocketMQ's `transactionTimeOut`, 6 s.
    pub transaction_check_after_ms: u64,
    /// The dedup window of new queues, milliseconds (Sluice extension `dedup_id`).
    pub dedup_window_ms: u64,
    /// Queue description length, characters.
    pub description_chars_max: u32,
}

impl DmsConfig {
    /// The values of docs/dms-api.md §4.
    pub fn dms_default() -> DmsConfig {
        DmsConfig {
            ack_wait_s_min: 15,
            ack_wait_s_max: 300,
            ack_wait_s_default: 30,
            time_wait_s_min: 1,
            time_wait_s_max: 60,
            time_wait_s_default: 3,
            consume_messages_max: 10,
            consume_bytes_max: 512 * 1024,
            send_messages_max: 10,
            message_bytes_max: 512 * 1024,
            send_bytes_max: 512 * 1024,
            request_bytes_max: 1024 * 1024,
            attributes_bytes_max: 64 * 1024,
            tags_max: 3,
            groups_per_request_max: 3,
            ack_entries_max: 100,
            retention_minutes: 4320,
            max_consume_count_max: 100,
            delay_ms_max: 604_800_000,
            schedule_ahead_ms_max: 365 * 24 * 3_600_000,
            transaction_check_after_ms: 6_000,
            dedup_window_ms: 300_000,
            description_chars_max: 160,
        }
    }

    /// `max_msg_size_byte` of the queue object.
    pub fn max_msg_size_byte(&self) -> u64 {
        self.message_bytes_max
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_core::limits::ENGINE_DELAY_MS_CEILING;

    #[test]
    fn a_send_always_fits_one_consume() {
        // Goal: whatever one send may carry, one consume answer may carry too, so a
        // message of this adapter never needs the oversize exception.
        let config = DmsConfig::dms_default();
        assert!(config.send_bytes_max <= config.consume_bytes_max);
    }

    #[test]
    fn delay_limits_stay_within_the_engine_ceiling() {
        // Goal: what the adapter accepts the engine accepts too, with a day to spare.
        let config = DmsConfig::dms_default();
        assert!(config.delay_ms_max <= ENGINE_DELAY_MS_CEILING);
        assert!(config.schedule_ahead_ms_max + 24 * 3_600_000 <= ENGINE_DELAY_MS_CEILING);
    }
}
