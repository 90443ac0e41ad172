//! The cluster driver: what a node does with the Raft groups of the partitions one shard
//! owns, whatever runtime and transport carry it. The glommio server
//! (`server/src/replication.rs`, over its TCP cluster transport) and the madsim cluster
//! simulation (`sim/src/cluster.rs`, over `madsim::net`) both run this code; they only
//! provide a [`RaftHost`]: the owned engines, a task for an engine's Ready loop, the
//! sending of one message to a peer, and a timer.
//!
//! Every node holds a replica of every partition (partition `p` on shard `p % shards`,
//! as on a single node), so shard *i* of one node talks only to shard *i* of the others.
//! Per shard:
//!
//! - a Raft ticker ([`RaftDriver::ticker`]): every [`RAFT_TICK_MS`] it calls `raft_tick`
//!   on each owned engine, starts its Ready loop and reports what it saw
//!   ([`RaftHost::observe`]); an engine whose Ready loop failed goes to the host to be
//!   reopened ([`RaftHost::failed`]); every [`LEADER_BALANCE_TICKS`] it hands partitions this
//!   node leads to their preferred nodes ([`preferred_leader`]);
//! - per owned engine an outbound loop ([`outbound_loop`]): waits for
//!   `messages_queued`, takes the messages and sends each to its peer;
//! - inbound: the host hands each received payload to [`RaftDriver::deliver`] (a batch of
//!   up to [`INBOUND_BATCH_MAX`]) and then starts the Ready loop of each engine touched.
//!
//! A payload is the partition (u32, little-endian) then the encoded message
//! ([`encode_payload`]). Nothing here waits on a full queue: a message the host refuses
//! is counted and dropped (Raft retransmits), and a payload that does not decode, names a
//! partition this shard does not hold, or is not addressed to this node is counted and
//! dropped.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::future::Future;
use std::rc::Rc;

use sluice_core::engine::types::EngineError;
use sluice_core::engine::Engine;
use sluice_core::replica::{decode_message, encode_message, Message};
use sluice_core::storage::Storage;

/// Raft's logical clock: one `raft_tick` per owned engine this often. With raft-rs's
/// settings in `ReplicaConfig` (10 election ticks, 2 heartbeat ticks) a follower
/// campaigns after 1-2 s without a leader, and a leader heartbeats every 200 ms.
pub const RAFT_TICK_MS: u64 = 100;
/// How often, in Raft ticks, a leader hands partitions to their preferred nodes
/// (`balance_leaders`): every 3 s.
pub const LEADER_BALANCE_TICKS: u64 = 30;
/// Payloads a host's inbound loop takes in one go before it starts the Ready loops of
/// the engines they touched.
pub const INBOUND_BATCH_MAX: usize = 64;
/// Bytes of the partition number in front of each message.
const PARTITION_PREFIX_BYTES: usize = 4;

/// Why a host did not send a message (it is dropped either way; Raft retransmits).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendRefused {
    /// The peer's queue is full.
    Full,
    /// Otherwise: an unknown peer, too large, closed.
    Refused,
}

/// What one shard's replication dropped, for the log at shutdown.
#[derive(Default)]
pub struct RaftCounters {
    /// Messages the host refused because the peer's queue was full.
    pub sent_full: Cell<u64>,
    /// Messages the host refused otherwise.
    pub sent_refused: Cell<u64>,
    /// Payloads received and dropped: undecodable, for another node, or for a partition
    /// this shard does not hold now.
    pub received_dropped: Cell<u64>,
}

fn bump(counter: &Cell<u64>) {
    counter.set(counter.get() + 1);
}

/// What the driver needs of the program running one shard's replicas.
pub trait RaftHost: 'static {
    type Storage: Storage + Clone + 'static;

    /// The engine of `partition` when this shard owns it and it is in service; `None` for
    /// any other partition number (peers name partitions: never a panic).
    fn raft_engine(&self, partition: u32) -> Option<Rc<Engine<Self::Storage>>>;

    /// Runs an engine's Ready loop (`Engine::drive`) in a task of its own, so that one
    /// partition's write and sync do not hold up the others.
    fn drive_soon(&self, engine: Rc<Engine<Self::Storage>>);

    /// Sends one payload ([`encode_payload`]) to the same shard of node `to`, without
    /// waiting.
    fn send_raft(&self, to: u64, payload: Vec<u8>) -> Result<(), SendRefused>;

    /// Resolves once `ms` milliseconds have passed (the host's timer).
    fn sleep_ms(&self, ms: u64) -> impl Future<Output = ()>;

    /// The Ready loop of `partition`'s engine failed (a storage fault while persisting):
    /// the engine must be taken out of service and reopened, as after a storage fault a
    /// request met (`Host::storage_fault`). Nothing else notices on a follower, which
    /// serves no requests.
    fn failed(&self, partition: u32, error: &EngineError);

    /// Once per tick, before the engines tick (the server fails forwarded calls whose
    /// connections broke).
    fn ticked(&self) {}

    /// After `partition`'s engine ticked, before its Ready loop starts (the server and the
    /// cluster simulation ask the leader for the Raft snapshot chunk the engine wants
    /// next: `crate::snapshot_transfer::SnapshotCarrier::request_next`).
    fn engine_ticked(&self, partition: u32, engine: &Engine<Self::Storage>) {
        let _ = (partition, engine);
    }

    /// What the tick saw of `partition` (`None`: out of service): the server records
    /// the leader and progress for `/readyz`, the simulation checks one leader per term.
    fn observe(&self, partition: u32, engine: Option<&Engine<Self::Storage>>) {
        let _ = (partition, engine);
    }
}

/// The runtime-independent part of one shard's replication: the partitions it owns, the
/// tick count and what it dropped.
pub struct RaftDriver {
    node_id: u64,
    owned: Vec<u32>,
    ticks: Cell<u64>,
    counters: RaftCounters,
}

impl RaftDriver {
    /// The driver of node `node_id`'s shard that owns `owned`.
    pub fn new(node_id: u64, owned: Vec<u32>) -> RaftDriver {
        RaftDriver {
            node_id,
            owned,
            ticks: Cell::new(0),
            counters: RaftCounters::default(),
        }
    }

    pub fn counters(&self) -> &RaftCounters {
        &self.counters
    }

    /// Counts a received payload the host dropped before it reached the driver (a frame
    /// of an unknown kind).
    pub fn count_dropped(&self) {
        bump(&self.counters.received_dropped);
    }

    pub fn owned(&self) -> &[u32] {
        &self.owned
    }

    /// One tick: every [`LEADER_BALANCE_TICKS`] the leads go to their preferred nodes,
    /// then each owned engine is observed, ticked and its Ready loop started.
    pub fn tick<H: RaftHost>(&self, host: &H) {
        host.ticked();
        let ticks = self.ticks.get() + 1;
        self.ticks.set(ticks);
        if ticks.is_multiple_of(LEADER_BALANCE_TICKS) {
            self.balance_leaders(host);
        }
        for partition in &self.owned {
            let engine = host.raft_engine(*partition);
            if let Some(error) = engine.as_ref().and_then(|engine| engine.failure()) {
                host.failed(*partition, &error);
                host.observe(*partition, None);
                continue;
            }
            host.observe(*partition, engine.as_deref());
            if let Some(engine) = engine {
                engine.raft_tick();
                host.engine_ticked(*partition, &engine);
                host.drive_soon(engine);
            }
        }
    }

    /// Ticks every [`RAFT_TICK_MS`] until the host cancels the task (not on stopping:
    /// the requests a shutdown finishes still need their commits).
    pub async fn ticker<H: RaftHost>(&self, host: &H) {
        // Ends by cancellation; one pass per RAFT_TICK_MS.
        loop {
            host.sleep_ms(RAFT_TICK_MS).await;
            self.tick(host);
        }
    }

    /// Hands the lead of each partition this shard leads to its preferred node
    /// ([`preferred_leader`] among the partition's current voters, so membership changes
    /// move the preference with the replicas) when that node is up and holds the whole log
    /// (`Engine::transfer_lead`); after a failover the lead goes back once the preferred
    /// node has caught up. A partition in a joint configuration (a move under way) keeps
    /// its leader.
    fn balance_leaders<H: RaftHost>(&self, host: &H) {
        for partition in &self.owned {
            let Some(engine) = host.raft_engine(*partition) else {
                continue;
            };
            let membership = engine.membership();
            if membership.joint() {
                continue;
            }
            let Some(preferred) = preferred_leader(*partition, &membership.voters) else {
                continue;
            };
            if preferred != engine.replica_id() && engine.transfer_lead(preferred) {
                host.drive_soon(engine);
            }
        }
    }

    /// One outbound pass: sends what `engine`'s bounded outbox holds.
    pub fn send_queued<H: RaftHost>(&self, host: &H, partition: u32, engine: &Engine<H::Storage>) {
        for message in engine.take_messages() {
            let to = message.to;
            match host.send_raft(to, encode_payload(partition, &message)) {
                Ok(()) => {}
                Err(SendRefused::Full) => bump(&self.counters.sent_full),
                Err(SendRefused::Refused) => bump(&self.counters.sent_refused),
            }
        }
    }

    /// Steps one received payload into its engine and answers the engine (to start its
    /// Ready loop once per batch); `None`, counted, when it is not a message for this node
    /// and a partition this shard holds now.
    pub fn deliver<H: RaftHost>(
        &self,
        host: &H,
        payload: &[u8],
    ) -> Option<(u32, Rc<Engine<H::Storage>>)> {
        let delivered = self.step_payload(host, payload);
        if delivered.is_none() {
            bump(&self.counters.received_dropped);
        }
        delivered
    }

    fn step_payload<H: RaftHost>(
        &self,
        host: &H,
        payload: &[u8],
    ) -> Option<(u32, Rc<Engine<H::Storage>>)> {
        let (partition, message) = decode_payload(payload)?;
        if message.to != self.node_id {
            return None;
        }
        let engine = host.raft_engine(partition)?;
        engine.step(message);
        Some((partition, engine))
    }

    /// Steps a batch of received payloads, then starts the Ready loop of each engine
    /// touched once.
    pub fn deliver_batch<'a, H: RaftHost>(
        &self,
        host: &H,
        payloads: impl IntoIterator<Item = &'a [u8]>,
    ) {
        let mut touched: BTreeMap<u32, Rc<Engine<H::Storage>>> = BTreeMap::new();
        for payload in payloads {
            if let Some((partition, engine)) = self.deliver(host, payload) {
                touched.insert(partition, engine);
            }
        }
        for engine in touched.into_values() {
            host.drive_soon(engine);
        }
    }
}

/// Sends the messages one engine queues for its peers, until the host cancels the task
/// (a reopen replaces the engine, a shutdown or crash ends the replication).
pub async fn outbound_loop<H: RaftHost>(
    driver: &RaftDriver,
    host: &H,
    partition: u32,
    engine: Rc<Engine<H::Storage>>,
) {
    // Ends by cancellation; each pass sends what the engine's bounded outbox holds.
    loop {
        engine.messages_queued().await;
        driver.send_queued(host, partition, &engine);
    }
}

/// The node that should lead `partition` when it is up and caught up: the voters (by
/// ascending id) take the partitions in turn, so the leaders of a cluster's partitions
/// spread evenly over its nodes, and over each node's shards (partition `p` is on shard
/// `p % shards` everywhere).
pub fn preferred_leader(partition: u32, voters: &[u64]) -> Option<u64> {
    let index = usize::try_from(partition).ok()? % voters.len().max(1);
    voters.get(index).copied()
}

/// The partition and message as one payload.
pub fn encode_payload(partition: u32, message: &Message) -> Vec<u8> {
    let encoded = encode_message(message);
    let mut payload = Vec::with_capacity(PARTITION_PREFIX_BYTES + encoded.len());
    payload.extend_from_slice(&partition.to_le_bytes());
    payload.extend_from_slice(&encoded);
    payload
}

/// A payload as partition and message; `None` when it does not decode.
pub fn decode_payload(payload: &[u8]) -> Option<(u32, Message)> {
    let prefix = payload.get(..PARTITION_PREFIX_BYTES)?;
    let partition = u32::from_le_bytes(prefix.try_into().ok()?);
    let message = decode_message(&payload[PARTITION_PREFIX_BYTES..])?;
    Some((partition, message))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preferred_leaders_take_the_partitions_in_turn() {
        let voters = [1, 2, 3];
        let leaders: Vec<Option<u64>> = (0..6).map(|p| preferred_leader(p, &voters)).collect();
        assert_eq!(leaders, [1, 2, 3, 1, 2, 3].map(Some));
        assert_eq!(preferred_leader(5, &[]), None);
    }

    #[test]
    fn a_payload_round_trips() {
        let message = Message {
            to: 3,
            from: 1,
            term: 7,
            ..Message::default()
        };
        let payload = encode_payload(42, &message);
        let (partition, decoded) = decode_payload(&payload).expect("decodes");
        assert_eq!(partition, 42);
        assert_eq!(decoded, message);
    }

    #[test]
    fn short_or_garbled_payloads_do_not_decode() {
        assert!(decode_payload(&[]).is_none());
        assert!(decode_payload(&[1, 0, 0]).is_none());
        // A protobuf field tag with a length running past the end.
        assert!(decode_payload(&[0, 0, 0, 0, 0x0a, 0xff, 0xff, 0xff, 0x0f]).is_none());
    }
}
