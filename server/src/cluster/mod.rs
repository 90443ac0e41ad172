//! The cluster's node-to-node transport: which nodes form the cluster (`config`), the
//! hello that opens every connection (`hello`), and, on glommio, the connections
//! themselves: one node-wide listener ([`ClusterNet`]) and one [`ClusterTransport`] per
//! shard, which sends frames to the same shard of every peer and delivers the frames
//! peers send it. What the frames mean (Raft messages) is the caller's; the format is
//! `sluice_core::frame`. The design and its limits: docs/cluster-transport.md.
//!
//! Reading order: `config`, `hello`, `limits`, `backoff`, `stats`, then (glommio only)
//! `net` (the listener and the hand-over of accepted sockets), `io`, `outbound` (the
//! queue and writer per peer), `inbound` (readers and the receive queue), `transport`.

pub mod backoff;
pub mod config;
pub mod hello;
pub mod limits;
pub mod stats;

#[cfg(not(madsim))]
mod inbound;
#[cfg(not(madsim))]
mod io;
#[cfg(not(madsim))]
mod net;
#[cfg(not(madsim))]
mod outbound;
#[cfg(not(madsim))]
mod transport;

pub use config::{ClusterConfig, Peer, CLUSTER_VOTERS_MAX};
pub use hello::{Hello, HelloError, Identity, KIND_HELLO};
#[cfg(not(madsim))]
pub use inbound::{Inbound, InboundReceiver};
pub use limits::TransportLimits;
#[cfg(not(madsim))]
pub use net::{ClusterNet, ShardNet};
#[cfg(not(madsim))]
pub use outbound::SendError;
pub use stats::{NetStats, PeerStats};
#[cfg(not(madsim))]
pub use transport::ClusterTransport;

/// A node of the cluster, as `--node-id` and `--peers` name it (at least 1; Raft's ids).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(pub u64);

impl std::fmt::Display for NodeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// One line on stderr, as the server logs.
#[cfg(not(madsim))]
fn log(line: &str) {
    eprintln!("sluice: cluster: {line}");
}
