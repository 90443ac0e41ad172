//! Carries Raft snapshot chunks between this shard and its peers over the cluster
//! transport. What is carried and how (framing, the serving and staging bounds, asking
//! for the next chunk) is the node layer's `sluice_node::snapshot_transfer`, the same code
//! the cluster simulation runs; this file is its glommio link: a payload goes out as a
//! frame of kind [`KIND_SNAPSHOT_REQUEST`] or [`KIND_SNAPSHOT_CHUNK`], and a task is
//! a detached `glommio::spawn_local`. A frame the transport refuses is dropped (counted by
//! the carrier) and the follower's engine asks again after its wait.

use std::future::Future;
use std::rc::Rc;

use bytes::Bytes;
use sluice_node::replication::SendRefused;
use sluice_node::snapshot_transfer::SnapshotLink;
pub use sluice_node::snapshot_transfer::{
    KIND_SNAPSHOT_CHUNK, KIND_SNAPSHOT_REQUEST, SNAPSHOT_SERVING_MAX,
};

use crate::cluster::{ClusterTransport, NodeId, SendError};

/// The node layer's carrier over this shard's transport.
pub type SnapshotCarrier = sluice_node::snapshot_transfer::SnapshotCarrier<TransportLink>;

/// A shard's cluster transport and glommio's tasks, as the carrier's link.
pub struct TransportLink(pub Rc<ClusterTransport>);

impl SnapshotLink for TransportLink {
    fn send_snapshot(&self, to: u64, kind: u8, payload: Vec<u8>) -> Result<(), SendRefused> {
        match self.0.send(NodeId(to), kind, Bytes::from(payload)) {
            Ok(()) => Ok(()),
            Err(SendError::Full { .. }) => Err(SendRefused::Full),
            Err(_) => Err(SendRefused::Refused),
        }
    }

    fn spawn(&self, task: impl Future<Output = ()> + 'static) {
        glommio::spawn_local(task).detach();
    }
}
