//! The transport's bounds: every queue and buffer of a [`TransportLimits`] field or a
//! constant here (docs/style.md §4), and the back-off and timeouts of its connections.

use sluice_core::frame::FRAME_HEADER_BYTES;
use sluice_core::limits::CLUSTER_FRAME_BYTES_MAX;

/// Accepted connections waiting for a shard to read their hello, per node; more are
/// closed at once (the peer retries after its back-off).
pub const ACCEPTS_PENDING_MAX: usize = 64;
/// Hellos one shard reads at once; more accepted connections wait in the node's queue
/// (for this shard or another).
pub const HANDSHAKES_PER_SHARD_MAX: usize = 16;
/// Checked connections waiting for the shard their hello names; more are closed.
pub const HANDOVERS_PER_SHARD_MAX: usize = 64;
/// How often the listener thread, blocked in `accept`, looks whether to stop.
pub const ACCEPT_POLL_MS: u64 = 100;
/// Pause after an `accept` failure other than a timeout (out of file descriptors, say),
/// so the thread does not spin on it.
pub const ACCEPT_ERROR_PAUSE_MS: u64 = 100;
/// Bytes a frame costs in the queues' byte budgets beyond its payload, so that empty
/// frames count too.
pub const FRAME_OVERHEAD_BYTES: u64 = FRAME_HEADER_BYTES as u64;

/// The transport's tunable bounds. No `Default`: the caller picks, usually
/// [`TransportLimits::standard`], and [`TransportLimits::validate`] checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TransportLimits {
    /// Largest payload sent or accepted; at most `CLUSTER_FRAME_BYTES_MAX`.
    pub frame_bytes_max: u32,
    /// Frames queued for one peer; `send` answers `Full` beyond.
    pub peer_queue_frames_max: usize,
    /// Bytes (payload plus [`FRAME_OVERHEAD_BYTES`] per frame) queued for one peer.
    pub peer_queue_bytes_max: u64,
    /// Frames received and not yet taken by the shard's consumer; the readers stop
    /// reading their sockets beyond.
    pub inbound_frames_max: usize,
    /// Bytes of those frames, counted like `peer_queue_bytes_max`, until the consumer
    /// drops each frame.
    pub inbound_bytes_max: u64,
    /// A writer gathers queued frames into writes of about this size; a payload at
    /// least this large is written from where it is, without a copy.
    pub write_batch_bytes_max: usize,
    /// First pause after a failed connection attempt; it doubles per failure.
    pub backoff_ms_min: u64,
    /// Longest pause between connection attempts.
    pub backoff_ms_max: u64,
    /// A TCP connect must succeed within this.
    pub connect_timeout_ms: u64,
    /// Each side's hello must arrive (and the answer be written) within this.
    pub handshake_timeout_ms: u64,
}

impl TransportLimits {
    /// The server's values.
    pub fn standard() -> TransportLimits {
        TransportLimits {
            frame_bytes_max: CLUSTER_FRAME_BYTES_MAX,
            peer_queue_frames_max: 4096,
            peer_queue_bytes_max: 64 << 20,
            inbound_frames_max: 4096,
            inbound_bytes_max: 64 << 20,
            write_batch_bytes_max: 256 << 10,
            backoff_ms_min: 50,
            backoff_ms_max: 2_000,
            connect_timeout_ms: 2_000,
            handshake_timeout_ms: 2_000,
        }
    }

    /// A largest frame fits each byte budget, nothing is zero, the back-off's bounds are
    /// in order.
    pub fn validate(&self) -> Result<(), String> {
        let frame_cost = u64::from(self.frame_bytes_max) + FRAME_OVERHEAD_BYTES;
        let checks: [(bool, &str); 8] = [
            (
                self.frame_bytes_max <= CLUSTER_FRAME_BYTES_MAX,
                "frame_bytes_max is over CLUSTER_FRAME_BYTES_MAX",
            ),
            (
                self.peer_queue_frames_max > 0 && self.inbound_frames_max > 0,
                "the queues must hold at least one frame",
            ),
            (
                self.peer_queue_bytes_max >= frame_cost,
                "peer_queue_bytes_max must hold a largest frame",
            ),
            (
                self.inbound_bytes_max >= frame_cost,
                "inbound_bytes_max must hold a largest frame",
            ),
            (
                self.write_batch_bytes_max > 0,
                "write_batch_bytes_max must be positive",
            ),
            (
                (1..=self.backoff_ms_max).contains(&self.backoff_ms_min),
                "backoff_ms_min must be 1 to backoff_ms_max",
            ),
            (
                self.connect_timeout_ms > 0,
                "connect_timeout_ms must be positive",
            ),
            (
                self.handshake_timeout_ms > 0,
                "handshake_timeout_ms must be positive",
            ),
        ];
        match checks.iter().find(|(ok, _)| !ok) {
            Some((_, message)) => Err(format!("cluster transport: {message}")),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_standard_limits_are_valid_and_mistakes_are_not() {
        let standard = TransportLimits::standard();
        assert_eq!(standard.validate(), Ok(()));
        let bad = [
            TransportLimits {
                inbound_bytes_max: u64::from(standard.frame_bytes_max),
                ..standard
            },
            TransportLimits {
                backoff_ms_min: 3_000,
                ..standard
            },
            TransportLimits {
                peer_queue_frames_max: 0,
                ..standard
            },
        ];
        for limits in bad {
            assert!(limits.validate().is_err(), "{limits:?}");
        }
    }
}
