//! Cluster mode on one shard: carries the Raft messages of the partitions this shard owns
//! between this node and its peers, over the shard's [`ClusterTransport`].
//!
//! What replication does (the tick, leader balancing, which message goes where, what an
//! inbound message is stepped into) is the node layer's `sluice_node::replication`, the
//! same code the cluster simulation runs. This file is its glommio host: the tasks (a
//! Raft ticker, one outbound task per owned engine, one inbound task taking frames from
//! the shard's receiver), Raft messages as frames of kind [`KIND_RAFT`] whose payload is
//! the node layer's (`encode_payload`), and the leader and progress each tick records for
//! `/readyz`. Nothing here waits on a full queue: a frame the transport refuses is counted
//! and dropped (Raft retransmits).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use glommio::Task;
use sluice_core::engine::types::EngineError;
pub use sluice_node::replication::{
    decode_payload, encode_payload, preferred_leader, INBOUND_BATCH_MAX, LEADER_BALANCE_TICKS,
    RAFT_TICK_MS,
};
use sluice_node::replication::{outbound_loop, RaftCounters, RaftDriver, RaftHost, SendRefused};
use sluice_node::Host as _;
use sluice_shard::DmaStorage;

use crate::cluster::{ClusterTransport, InboundReceiver, NodeId, SendError, ShardNet};
use crate::forwarding::Forwarder;
use crate::shard::{PartitionEngine, Shard};
use crate::snapshot_transfer::{SnapshotCarrier, TransportLink};

/// The frame kind of a Raft message (kind 0 is the transport's hello).
pub const KIND_RAFT: u8 = 1;

/// The node layer's view of this shard: its engines, its transport, glommio's tasks and
/// timers.
struct ServerRaft {
    shard: Rc<Shard>,
    transport: Rc<ClusterTransport>,
    forwarder: Rc<Forwarder>,
    /// Raft snapshot chunks carried to and from the other nodes.
    snapshots: Rc<SnapshotCarrier>,
}

impl RaftHost for ServerRaft {
    type Storage = DmaStorage;

    fn raft_engine(&self, partition: u32) -> Option<Rc<PartitionEngine>> {
        self.shard.owned_engine(partition)
    }

    fn drive_soon(&self, engine: Rc<PartitionEngine>) {
        // Returns at once inside `drive` when the engine's loop is already running (that
        // loop picks up what was stepped or ticked since).
        glommio::spawn_local(async move { engine.drive().await }).detach();
    }

    fn send_raft(&self, to: u64, payload: Vec<u8>) -> Result<(), SendRefused> {
        match self
            .transport
            .send(NodeId(to), KIND_RAFT, Bytes::from(payload))
        {
            Ok(()) => Ok(()),
            Err(SendError::Full { .. }) => Err(SendRefused::Full),
            Err(_) => Err(SendRefused::Refused),
        }
    }

    async fn sleep_ms(&self, ms: u64) {
        glommio::timer::sleep(Duration::from_millis(ms)).await;
    }

    /// Out of service: the partition's ticker reopens it (`Shard::tick_loop`).
    fn failed(&self, partition: u32, error: &EngineError) {
        self.shard.node.host().storage_fault(partition, error);
    }

    /// Fails the forwarded calls whose connections broke ([`Forwarder::sweep`]).
    fn ticked(&self) {
        self.forwarder.sweep();
    }

    /// Asks the leader for the snapshot chunk the engine wants next, if any.
    fn engine_ticked(&self, partition: u32, engine: &PartitionEngine) {
        self.snapshots.request_next(partition, engine);
    }

    /// The leader and progress for `/readyz`.
    fn observe(&self, partition: u32, engine: Option<&PartitionEngine>) {
        let shared = &self.shard.shared;
        shared.set_leader(partition, engine.and_then(|engine| engine.leader_id()));
        if let Some(engine) = engine {
            shared.set_progress(
                partition,
                engine.raft_term(),
                engine.commit_index(),
                engine.applied_index(),
            );
        }
    }
}

/// One shard's replication: its transport and the tasks that use it.
pub struct Replication {
    host: Rc<ServerRaft>,
    driver: Rc<RaftDriver>,
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
        let snapshots = Rc::new(SnapshotCarrier::new(TransportLink(transport.clone())));
        let cluster = shard.shared.cluster.as_ref();
        let node_id = cluster.map_or(0, |cluster| cluster.node_id.0);
        let driver = Rc::new(RaftDriver::new(node_id, shard.node.owned().to_vec()));
        let host = Rc::new(ServerRaft {
            shard: shard.clone(),
            transport,
            forwarder,
            snapshots,
        });
        let ticker = {
            let (driver, host) = (driver.clone(), host.clone());
            glommio::spawn_local(async move { driver.ticker(&*host).await })
        };
        let receiving = glommio::spawn_local(inbound_loop(host.clone(), driver.clone(), inbound));
        let replication = Rc::new(Replication {
            host,
            driver,
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
        let (driver, host) = (self.driver.clone(), self.host.clone());
        let task = glommio::spawn_local(async move {
            outbound_loop(&driver, &*host, partition, engine).await;
        });
        self.outbound.borrow_mut().insert(partition, task);
    }

    /// What this shard dropped so far.
    pub fn counters(&self) -> &RaftCounters {
        self.driver.counters()
    }

    /// Snapshot chunk frames this shard dropped so far.
    pub fn snapshot_frames_dropped(&self) -> u64 {
        self.host.snapshots.dropped()
    }

    /// The shard's forwarded calls.
    pub fn forwarder(&self) -> &Forwarder {
        &self.host.forwarder
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
        self.host.forwarder.fail_all();
        self.host.transport.close().await;
    }
}

/// Hands the frames peers send this shard to the engines they are for (forwarded calls
/// and answers to the [`Forwarder`]), until the transport closes. Takes up to
/// [`INBOUND_BATCH_MAX`] frames that are waiting, steps the Raft ones into their engines
/// (`RaftDriver::deliver_batch`), which then start each touched engine's Ready loop once.
async fn inbound_loop(host: Rc<ServerRaft>, driver: Rc<RaftDriver>, receiver: InboundReceiver) {
    // Ends when the transport closes (`recv` answers `None`).
    while let Some(first) = receiver.recv().await {
        let mut raft: Vec<Bytes> = Vec::new();
        let mut next = Some(first);
        let mut taken = 0;
        while let Some(frame) = next {
            let (peer, kind, payload) = frame.into_parts();
            let taken_by = host
                .forwarder
                .receive(&host.shard.node, peer, kind, &payload)
                || host.snapshots.receive(&*host, peer.0, kind, &payload);
            if !taken_by {
                if kind == KIND_RAFT {
                    raft.push(payload);
                } else {
                    driver.count_dropped();
                }
            }
            taken += 1;
            next = (taken < INBOUND_BATCH_MAX)
                .then(|| receiver.try_recv())
                .flatten();
        }
        driver.deliver_batch(&*host, raft.iter().map(|payload| &payload[..]));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_core::replica::Message;

    #[test]
    fn a_raft_frame_payload_is_the_node_layers() {
        let message = Message {
            to: 3,
            from: 1,
            term: 7,
            ..Message::default()
        };
        let payload = Bytes::from(encode_payload(42, &message));
        let (partition, decoded) = decode_payload(&payload).expect("decodes");
        assert_eq!((partition, decoded), (42, message));
        assert_eq!(preferred_leader(4, &[1, 2, 3]), Some(2));
    }
}
