//! Replication: each partition is a Raft group (tikv raft-rs, sans-IO) whose log is the
//! partition's segment log.
//!
//! - [`entry`]: Raft entries as log records and back (one encoding, made once by the
//!   leader and carried unchanged to followers).
//! - [`hard_state`]: the durable term, vote, commit and membership, in two checksummed
//!   slots.
//! - [`store`]: raft-rs's `Storage` over the log, with the in-memory tail raft-rs reads
//!   synchronously and asynchronous reads for lagging followers, and the snapshot a
//!   leader offers a follower behind its log's start.
//! - [`snapshot`]: what a Raft snapshot message names and the chunks that carry its bulk
//!   (the engine snapshot and the log records it needs) from leader to follower.
//! - [`install`]: a follower's staging of those chunks and the crash-safe replacement of
//!   its log, engine snapshot and Raft state by them.
//!
//! The engine (`crate::engine`) owns the Raft node of its partition: a send, an ack or a
//! metadata change is proposed, persisted by the same group commit on every replica,
//! and applied in log order once committed. The host carries Raft messages between
//! replicas ([`encode_message`], [`decode_message`]) and calls the engine's `raft_tick`.

pub mod entry;
pub mod hard_state;
pub mod install;
pub mod snapshot;
pub mod store;

use protobuf::Message as _;
pub use raft::prelude::Message;

use crate::limits::{
    REPLICA_INFLIGHT_MESSAGES_MAX, REPLICA_MESSAGE_BYTES_MAX, REPLICA_UNCOMMITTED_BYTES_MAX,
};

/// A replica's place in its group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaConfig {
    /// This replica's id in the group (the node id; never 0).
    pub id: u64,
    /// The voters a group starts with when the replica has no durable Raft state yet
    /// (a new cluster: every node is started with the same list). Ignored afterwards:
    /// membership is then what the group committed.
    pub initial_voters: Vec<u64>,
    /// Ticks without a leader's message before a follower campaigns (randomized by raft-rs
    /// within `[election_ticks, 2 * election_ticks)`).
    pub election_ticks: usize,
    /// Ticks between a leader's heartbeats.
    pub heartbeat_ticks: usize,
    /// A fixed election timeout (at least `election_ticks`) instead of raft-rs's random
    /// one: raft-rs draws that from the thread's OS-seeded generator, which a test that
    /// must replay a seed exactly cannot seed. `None` in production.
    pub election_timeout_ticks: Option<usize>,
}

impl ReplicaConfig {
    /// A group of one: the embedded single-node default. It elects itself at open.
    pub fn single() -> ReplicaConfig {
        ReplicaConfig {
            id: 1,
            initial_voters: vec![1],
            election_ticks: 10,
            heartbeat_ticks: 2,
            election_timeout_ticks: None,
        }
    }

    /// Replica `id` of a group that starts with `voters`.
    pub fn member(id: u64, voters: Vec<u64>) -> ReplicaConfig {
        ReplicaConfig {
            id,
            initial_voters: voters,
            ..ReplicaConfig::single()
        }
    }

    /// raft-rs's configuration: pre-vote and check-quorum on (a partitioned node neither
    /// disrupts the group nor keeps believing it leads), reads confirmed by a heartbeat
    /// round (`Safe`), and the named bounds on messages and uncommitted bytes.
    pub(crate) fn raft_config(&self, applied: u64) -> raft::Config {
        let (min_election_tick, max_election_tick) = match self.election_timeout_ticks {
            Some(ticks) => (ticks, ticks + 1),
            // raft-rs's defaults: [election_ticks, 2 * election_ticks).
            None => (0, 0),
        };
        raft::Config {
            min_election_tick,
            max_election_tick,
            id: self.id,
            election_tick: self.election_ticks,
            heartbeat_tick: self.heartbeat_ticks,
            applied,
            max_size_per_msg: REPLICA_MESSAGE_BYTES_MAX,
            max_inflight_msgs: REPLICA_INFLIGHT_MESSAGES_MAX,
            check_quorum: true,
            pre_vote: true,
            read_only_option: raft::ReadOnlyOption::Safe,
            max_uncommitted_size: REPLICA_UNCOMMITTED_BYTES_MAX,
            ..raft::Config::default()
        }
    }
}

/// A Raft message as bytes for the wire.
pub fn encode_message(message: &Message) -> Vec<u8> {
    message
        .write_to_bytes()
        .expect("a Raft message always encodes")
}

/// A Raft message from the wire; `None` when the bytes do not parse.
pub fn decode_message(bytes: &[u8]) -> Option<Message> {
    Message::parse_from_bytes(bytes).ok()
}

/// raft-rs logs through slog; the kernel keeps quiet (its drivers log what matters).
pub(crate) fn discard_logger() -> slog::Logger {
    slog::Logger::root(slog::Discard, slog::o!())
}
