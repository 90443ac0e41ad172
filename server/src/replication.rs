//! Cluster mode on one shard: carries the Raft messages of the partitions this shard owns
//! between this node and its peers, over the shard's [`ClusterTransport`].
//!
//! Every node holds a replica of every partition (partition `p` on shard `p % shards`,
//! as on a single node), so shard *i* of one node talks only to shard *i* of the others,
//! which is exactly what the transport connects. Per shard:
//!
//! - a Raft ticker: every [`RAFT_TICK_MS`] it calls `raft_tick` on each owned engine,
//!   starts its Ready loop (`drive`) and records the leader it sees for `/readyz`;
//! - per owned engine an outbound task: waits for `messages_queued`, takes the messages
//!   and sends each to its peer as one frame of kind [`KIND_RAFT`];
//! - one inbound task: takes frames from the shard's receiver, hands each message to its
//!   partition's engine (`step`) and starts the engines' Ready loops.
//!
//! A frame's payload is the partition (u32, little-endian) then the encoded message
//! ([`encode_payload`]). Nothing here waits on a full queue: a frame the transport
//! refuses is counted and dropped (Raft retransmits), and a frame that does not decode,
//! names a partition this shard does not own, or is not addressed to this node is counted
//! and dropped.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use glommio::Task;
use sluice_core::replica::{decode_message, encode_message, Message};

use crate::cluster::{ClusterTransport, InboundReceiver, NodeId, SendError, ShardNet};
use crate::forwarding::Forwarder;
use crate::shard::{PartitionEngine, Shard};
use crate::snapshot_transfer::SnapshotCarrier;

/// The frame kind of a Raft message (kind 0 is the transport's hello).
pub const KIND_RAFT: u8 = 1;
/// Raft's logical clock: one `raft_tick` per owned engine this often. With raft-rs's
/// settings in `ReplicaConfig` (10 election ticks, 2 heartbeat ticks) a follower
/// campaigns after 1-2 s without a leader, and a leader heartbeats every 200 ms.
pub const RAFT_TICK_MS: u64 = 100;
/// How often, in Raft ticks, a leader hands partitions to their preferred nodes
/// (`balance_leaders`): every 3 s.
pub const LEADER_BALANCE_TICKS: u64 = 30;
/// Frames the inbound task takes in one go before it starts the Ready loops of the
/// engines they touched.
pub const INBOUND_BATCH_MAX: usize = 64;
/// Bytes of the partition number in front of each message.
const PARTITION_PREFIX_BYTES: usize = 4;

/// What this shard's replication dropped, for the log at shutdown.
#[derive(Default)]
pub struct ReplicationCounters {
    /// Messages the transport refused because the peer's queue was full.
    pub sent_full: Cell<u64>,
    /// Messages the transport refused otherwise (an unknown peer, too large, closed).
    pub sent_refused: Cell<u64>,
    /// Frames received and dropped: not a Raft frame, undecodable, for another node, or
    /// for a partition this shard does not own or is reopening.
    pub received_dropped: Cell<u64>,
}

fn bump(counter: &Cell<u64>) {
    counter.set(counter.get() + 1);
}

/// One shard's replication: its transport and the tasks that use it.
pub struct Replication {
    transport: Rc<ClusterTransport>,
    /// Calls forwarded to and from the other nodes over the same transport.
    forwarder: Rc<Forwarder>,
    counters: Rc<ReplicationCounters>,
    /// Raft snapshot chunks carried to and from the other nodes.
    snapshots: Rc<SnapshotCarrier>,
    /// The outbound task of each owned partition's current engine.
    outbound: RefCell<BTreeMap<u32, Task<()>>>,
    /// The Raft ticker and the inbound task.
    tasks: RefCell<Vec<Task<()>>>,
}

impl Replication {
    /// Starts this shard's transport and its tasks, and wires every engine `shard` holds
    /// now. Runs on the shard's executor.
    pub fn start(shard: &Rc<Shard>, net: ShardNet) -> Rc<Replication> {
        let (transport, inbound) = ClusterTransport::start(net);
        let transport = Rc::new(transport);
        let forwarder = Rc::new(Forwarder::new(transport.clone()));
        shard.node.host().attach_forwarder(Some(forwarder.clone()));
        let counters = Rc::new(ReplicationCounters::default());
        let snapshots = Rc::new(SnapshotCarrier::new(transport.clone()));
        let ticker = glommio::spawn_local(raft_ticker(
            shard.clone(),
            forwarder.clone(),
            snapshots.clone(),
        ));
        let receiving = glommio::spawn_local(inbound_loop(
            shard.clone(),
            forwarder.clone(),
            snapshots.clone(),
            counters.clone(),
            inbound,
        ));
        let replication = Rc::new(Replication {
            transport,
            forwarder,
            counters,
            snapshots,
            outbound: RefCell::new(BTreeMap::new()),
            tasks: RefCell::new(vec![ticker, receiving]),
        });
        for partition in shard.node.owned() {
            if let Some(engine) = shard.owned_engine(*partition) {
                replication.wire(*partition, engine);
            }
        }
        replication
    }

    /// Starts the outbound task of `partition`'s engine, replacing (and so cancelling)
    /// the task of the engine it had before a reopen.
    pub fn wire(&self, partition: u32, engine: Rc<PartitionEngine>) {
        let task = outbound_loop(
            partition,
            engine,
            self.transport.clone(),
            self.counters.clone(),
        );
        let task = glommio::spawn_local(task);
        self.outbound.borrow_mut().insert(partition, task);
    }

    /// What this shard dropped so far.
    pub fn counters(&self) -> &ReplicationCounters {
        &self.counters
    }

    /// Snapshot chunk frames this shard dropped so far.
    pub fn snapshot_frames_dropped(&self) -> u64 {
        self.snapshots.dropped.get()
    }

    /// The shard's forwarded calls.
    pub fn forwarder(&self) -> &Forwarder {
        &self.forwarder
    }

    /// Ends every task and closes the transport; returns once they have ended. Called
    /// after the shard's last request and snapshot, before its executor ends.
    pub async fn close(&self) {
        let tasks: Vec<Task<()>> = self.tasks.borrow_mut().drain(..).collect();
        for task in tasks {
            task.cancel().await;
        }
        let outbound = std::mem::take(&mut *self.outbound.borrow_mut());
        for task in outbound.into_values() {
            task.cancel().await;
        }
        self.forwarder.fail_all();
        self.transport.close().await;
    }
}

/// The partition and message of a frame's payload.
pub fn encode_payload(partition: u32, message: &Message) -> Bytes {
    let encoded = encode_message(message);
    let mut payload = Vec::with_capacity(PARTITION_PREFIX_BYTES + encoded.len());
    payload.extend_from_slice(&partition.to_le_bytes());
    payload.extend_from_slice(&encoded);
    Bytes::from(payload)
}

/// A frame's payload as partition and message; `None` when it does not decode.
pub fn decode_payload(payload: &[u8]) -> Option<(u32, Message)> {
    let prefix = payload.get(..PARTITION_PREFIX_BYTES)?;
    let partition = u32::from_le_bytes(prefix.try_into().ok()?);
    let message = decode_message(&payload[PARTITION_PREFIX_BYTES..])?;
    Some((partition, message))
}

/// Runs an engine's Ready loop in a task of its own, so that one partition's write and
/// sync do not hold up the others. Returns at once inside `drive` when the engine's loop
/// is already running (that loop picks up what was stepped or ticked since).
fn drive_soon(engine: Rc<PartitionEngine>) {
    glommio::spawn_local(async move { engine.drive().await }).detach();
}

/// Ticks every engine this shard owns, starts their Ready loops and records the leader
/// each one sees, and fails the forwarded calls whose connections broke
/// ([`Forwarder::sweep`]). Runs until [`Replication::close`] cancels it (not on
/// `stopping`: the requests that a shutdown finishes still need their commits).
async fn raft_ticker(shard: Rc<Shard>, forwarder: Rc<Forwarder>, snapshots: Rc<SnapshotCarrier>) {
    let owned = shard.node.owned().to_vec();
    let mut ticks: u64 = 0;
    // Ends by cancellation; one pass per RAFT_TICK_MS.
    loop {
        glommio::timer::sleep(Duration::from_millis(RAFT_TICK_MS)).await;
        forwarder.sweep();
        ticks += 1;
        if ticks.is_multiple_of(LEADER_BALANCE_TICKS) {
            balance_leaders(&shard, &owned);
        }
        for partition in &owned {
            let engine = shard.owned_engine(*partition);
            let leader = engine.as_ref().and_then(|engine| engine.leader_id());
            shard.shared.set_leader(*partition, leader);
            if let Some(engine) = engine {
                shard.shared.set_progress(
                    *partition,
                    engine.raft_term(),
                    engine.commit_index(),
                    engine.applied_index(),
                );
                engine.raft_tick();
                snapshots.request_next(*partition, &engine);
                drive_soon(engine);
            }
        }
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

/// Hands the lead of each partition this shard leads to its preferred node
/// ([`preferred_leader`] among the partition's current voters, so membership changes
/// move the preference with the replicas) when that node is up and holds the whole log
/// (`Engine::transfer_lead`); after a failover the lead goes back once the preferred
/// node has caught up. A partition in a joint configuration (a move under way) keeps its
/// leader.
fn balance_leaders(shard: &Shard, owned: &[u32]) {
    for partition in owned {
        let Some(engine) = shard.owned_engine(*partition) else {
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
            drive_soon(engine);
        }
    }
}

/// Sends the messages one engine queues for its peers, until cancelled (a reopen
/// replaces the engine, a shutdown closes the replication).
async fn outbound_loop(
    partition: u32,
    engine: Rc<PartitionEngine>,
    transport: Rc<ClusterTransport>,
    counters: Rc<ReplicationCounters>,
) {
    // Ends by cancellation; each pass sends what the engine's bounded outbox holds.
    loop {
        engine.messages_queued().await;
        for message in engine.take_messages() {
            let peer = NodeId(message.to);
            match transport.send(peer, KIND_RAFT, encode_payload(partition, &message)) {
                Ok(()) => {}
                Err(SendError::Full { .. }) => bump(&counters.sent_full),
                Err(_) => bump(&counters.sent_refused),
            }
        }
    }
}

/// Hands the frames peers send this shard to the engines they are for (forwarded calls
/// and answers to the [`Forwarder`]), until the transport closes. Takes up to [`INBOUND_BATCH_MAX`] frames that are waiting, steps
/// each into its engine, then starts the Ready loop of each engine touched once.
async fn inbound_loop(
    shard: Rc<Shard>,
    forwarder: Rc<Forwarder>,
    snapshots: Rc<SnapshotCarrier>,
    counters: Rc<ReplicationCounters>,
    receiver: InboundReceiver,
) {
    // Ends when the transport closes (`recv` answers `None`).
    while let Some(first) = receiver.recv().await {
        let mut touched: BTreeMap<u32, Rc<PartitionEngine>> = BTreeMap::new();
        let mut next = Some(first);
        let mut taken = 0;
        while let Some(frame) = next {
            let (peer, kind, payload) = frame.into_parts();
            let taken_by = forwarder.receive(&shard.node, peer, kind, &payload)
                || snapshots.receive(&shard, peer, kind, &payload);
            if !taken_by {
                match deliver(&shard, kind, &payload) {
                    Some((partition, engine)) => {
                        touched.insert(partition, engine);
                    }
                    None => bump(&counters.received_dropped),
                }
            }
            taken += 1;
            next = (taken < INBOUND_BATCH_MAX)
                .then(|| receiver.try_recv())
                .flatten();
        }
        for engine in touched.into_values() {
            drive_soon(engine);
        }
    }
}

/// Steps one frame's message into its engine; `None` (nothing stepped) when the frame
/// is not a Raft message for this node and a partition this shard holds now.
fn deliver(shard: &Shard, kind: u8, payload: &[u8]) -> Option<(u32, Rc<PartitionEngine>)> {
    if kind != KIND_RAFT {
        return None;
    }
    let (partition, message) = decode_payload(payload)?;
    let own = shard.shared.cluster.as_ref()?.node_id;
    if message.to != own.0 {
        return None;
    }
    let engine = shard.owned_engine(partition)?;
    engine.step(message);
    Some((partition, engine))
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
