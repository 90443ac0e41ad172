//! The transport's counters: per peer on each shard ([`PeerStats`]), and per node for
//! the listener ([`NetStats`]). Plain values to read; nothing exports them yet.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

/// What one shard's transport did with one peer since it started. Bytes count payloads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PeerStats {
    /// Frames written to the peer's socket.
    pub frames_sent: u64,
    /// Payload bytes of those frames.
    pub bytes_sent: u64,
    /// Frames received from the peer and handed to the consumer.
    pub frames_received: u64,
    /// Payload bytes of those frames.
    pub bytes_received: u64,
    /// Frames `send` refused because the peer's queue was full.
    pub frames_dropped: u64,
    /// Frames taken from the queue for a write that failed (the connection broke), or
    /// still queued when the transport closed.
    pub frames_lost: u64,
    /// Outbound connections established (hellos exchanged).
    pub connects: u64,
    /// Of those, the ones after the first: connections re-established.
    pub reconnects: u64,
    /// Outbound connection attempts that failed (refused, timed out, bad hello).
    pub connect_failures: u64,
    /// Outbound connections that broke after they were established.
    pub disconnects: u64,
    /// Inbound connections from the peer handed to this shard.
    pub inbound_connections: u64,
    /// Inbound connections closed for a bad frame (checksum, length, channel, kind).
    pub inbound_errors: u64,
}

/// One peer's counters, updated by the shard's tasks (single-threaded).
#[derive(Debug, Default)]
pub(crate) struct PeerCounters(Cell<PeerStats>);

impl PeerCounters {
    /// Applies `change` to the counters.
    pub(crate) fn update(&self, change: impl FnOnce(&mut PeerStats)) {
        let mut stats = self.0.get();
        change(&mut stats);
        self.0.set(stats);
    }

    pub(crate) fn get(&self) -> PeerStats {
        self.0.get()
    }
}

/// What a node's listener did since it started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetStats {
    /// Connections accepted on the cluster port.
    pub accepted: u64,
    /// Accepted connections closed because [`super::limits::ACCEPTS_PENDING_MAX`] were
    /// already waiting for a shard to read their hellos.
    pub accepts_dropped: u64,
    /// Connections closed for a missing, malformed or refused hello.
    pub hellos_refused: u64,
    /// Connections handed from the shard that read the hello to another one.
    pub handovers: u64,
}

/// [`NetStats`] shared by the listener thread and the shards.
#[derive(Debug, Default)]
pub(crate) struct NetCounters {
    pub(crate) accepted: AtomicU64,
    pub(crate) accepts_dropped: AtomicU64,
    pub(crate) hellos_refused: AtomicU64,
    pub(crate) handovers: AtomicU64,
}

impl NetCounters {
    pub(crate) fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn get(&self) -> NetStats {
        NetStats {
            accepted: self.accepted.load(Ordering::Relaxed),
            accepts_dropped: self.accepts_dropped.load(Ordering::Relaxed),
            hellos_refused: self.hellos_refused.load(Ordering::Relaxed),
            handovers: self.handovers.load(Ordering::Relaxed),
        }
    }
}
