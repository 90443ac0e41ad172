//! Cluster mode on one shard: calls the node layer forwards to the node leading a
//! partition (`sluice_node::forward`), carried over the shard's [`ClusterTransport`]
//! to the same shard of that node, and their answers carried back.
//!
//! Two frame kinds, each payload the correlation id (u64, little-endian) then the node
//! layer's bytes: [`KIND_FORWARD`] (a call) and [`KIND_FORWARD_REPLY`] (its answer).
//! [`Forwarder::call`] files the call under a fresh id in a bounded pending map
//! ([`PENDING_MAX`]) and waits; a reply with that id from that peer completes it, any
//! other reply is counted and dropped. A call leaves the map when answered, when its
//! caller gives up (the node layer's timeout drops the future), when the transport
//! refuses its frame, when a connection to or from its peer broke or failed since it was
//! sent ([`Forwarder::sweep`], every Raft tick: the caller gets a 503 at once rather
//! than at the timeout), and when the replication closes. A received call runs as a task
//! of its own on the shard; the node layer bounds how many it serves at once.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;

use bytes::Bytes;
use sluice_node::forward::FORWARD_BYTES_MAX;
use sluice_node::{NodeError, NodeShard};

use crate::cluster::{ClusterTransport, NodeId, PeerStats, SendError};
use crate::shard::ServerHost;

/// The frame kind of a forwarded call.
pub const KIND_FORWARD: u8 = 2;
/// The frame kind of a forwarded call's answer.
pub const KIND_FORWARD_REPLY: u8 = 3;
/// Calls one shard waits on at once (the node layer's own bound is lower or equal).
pub const PENDING_MAX: usize = 1_024;
/// Bytes of the correlation id in front of each payload.
const CORRELATION_BYTES: usize = 8;

const _: () = assert!(sluice_node::forward::FORWARD_INFLIGHT_MAX <= PENDING_MAX);
const _: () = assert!(
    FORWARD_BYTES_MAX + CORRELATION_BYTES as u64
        <= sluice_core::limits::CLUSTER_FRAME_BYTES_MAX as u64
);

/// A call waiting for its answer.
struct Pending {
    peer: NodeId,
    reply: async_channel::Sender<Bytes>,
}

/// What the forwarding frames did, for the log at a clean stop.
#[derive(Clone, Copy, Debug, Default)]
pub struct ForwarderStats {
    /// Calls failed early: the frame refused, the connection lost, the map full.
    pub calls_failed: u64,
    /// Replies that matched no waiting call (given up, or not this peer's).
    pub replies_unmatched: u64,
    /// Frames too short to hold a correlation id, or answers the transport refused.
    pub frames_dropped: u64,
}

/// One shard's forwarded calls over its transport.
pub struct Forwarder {
    transport: Rc<ClusterTransport>,
    pending: RefCell<BTreeMap<u64, Pending>>,
    next_id: Cell<u64>,
    /// Each peer's connection counters at the last sweep.
    seen: RefCell<BTreeMap<NodeId, PeerStats>>,
    stats: Cell<ForwarderStats>,
}

/// Takes a call out of the pending map when its caller stops waiting, however.
struct Filed<'a> {
    forwarder: &'a Forwarder,
    id: u64,
}

impl Drop for Filed<'_> {
    fn drop(&mut self) {
        self.forwarder.pending.borrow_mut().remove(&self.id);
    }
}

fn framed(id: u64, body: &[u8]) -> Bytes {
    let mut payload = Vec::with_capacity(CORRELATION_BYTES + body.len());
    payload.extend_from_slice(&id.to_le_bytes());
    payload.extend_from_slice(body);
    Bytes::from(payload)
}

fn unframed(payload: &Bytes) -> Option<(u64, Bytes)> {
    let prefix = payload.get(..CORRELATION_BYTES)?;
    let id = u64::from_le_bytes(prefix.try_into().ok()?);
    Some((id, payload.slice(CORRELATION_BYTES..)))
}

impl Forwarder {
    pub fn new(transport: Rc<ClusterTransport>) -> Forwarder {
        Forwarder {
            transport,
            pending: RefCell::new(BTreeMap::new()),
            next_id: Cell::new(1),
            seen: RefCell::new(BTreeMap::new()),
            stats: Cell::new(ForwarderStats::default()),
        }
    }

    pub fn stats(&self) -> ForwarderStats {
        self.stats.get()
    }

    fn count(&self, change: impl FnOnce(&mut ForwarderStats)) {
        let mut stats = self.stats.get();
        change(&mut stats);
        self.stats.set(stats);
    }

    /// Sends `call` to the same shard of `peer` and waits for its answer's bytes.
    pub async fn call(&self, peer: NodeId, call: Vec<u8>) -> Result<Vec<u8>, NodeError> {
        if self.pending.borrow().len() >= PENDING_MAX {
            self.count(|stats| stats.calls_failed += 1);
            return Err(NodeError::Unavailable("too many forwarded calls in flight"));
        }
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        let (reply, answer) = async_channel::bounded(1);
        self.pending
            .borrow_mut()
            .insert(id, Pending { peer, reply });
        let _filed = Filed {
            forwarder: self,
            id,
        };
        if let Err(error) = self.transport.send(peer, KIND_FORWARD, framed(id, &call)) {
            self.count(|stats| stats.calls_failed += 1);
            return Err(match error {
                SendError::Full { .. } => NodeError::Unavailable("the leading node is busy"),
                _ => NodeError::Unavailable("the leading node is not reachable"),
            });
        }
        match answer.recv().await {
            Ok(bytes) => Ok(bytes.to_vec()),
            Err(_) => {
                self.count(|stats| stats.calls_failed += 1);
                Err(NodeError::Unavailable(
                    "the connection to the leading node was lost",
                ))
            }
        }
    }

    /// Handles a forwarding frame from `peer`; `false` when it is not one (another kind).
    pub fn receive(
        &self,
        node: &Rc<NodeShard<ServerHost>>,
        peer: NodeId,
        kind: u8,
        payload: &Bytes,
    ) -> bool {
        if kind != KIND_FORWARD && kind != KIND_FORWARD_REPLY {
            return false;
        }
        let Some((id, body)) = unframed(payload) else {
            self.count(|stats| stats.frames_dropped += 1);
            return true;
        };
        if kind == KIND_FORWARD_REPLY {
            self.complete(peer, id, body);
            return true;
        }
        let node = node.clone();
        let transport = self.transport.clone();
        glommio::spawn_local(async move {
            let answer = node.serve_forwarded(&body).await;
            // A refused answer (queue full, connection gone) times out at the caller.
            let _ = transport.send(peer, KIND_FORWARD_REPLY, framed(id, &answer));
        })
        .detach();
        true
    }

    fn complete(&self, peer: NodeId, id: u64, body: Bytes) {
        let mut pending = self.pending.borrow_mut();
        match pending.get(&id) {
            Some(waiting) if waiting.peer == peer => {
                let waiting = pending.remove(&id).expect("looked up just now");
                let _ = waiting.reply.try_send(body);
            }
            _ => {
                drop(pending);
                self.count(|stats| stats.replies_unmatched += 1);
            }
        }
    }

    /// Fails at once every call to a peer whose connections broke, failed or were
    /// replaced since the last sweep (its frame or answer may be lost).
    pub fn sweep(&self) {
        let mut broken = Vec::new();
        let mut seen = self.seen.borrow_mut();
        for peer in self.transport.peers() {
            let Some(now) = self.transport.stats(peer) else {
                continue;
            };
            let before = seen.insert(peer, now).unwrap_or(now);
            let moved = now.disconnects != before.disconnects
                || now.connect_failures != before.connect_failures
                || now.frames_lost != before.frames_lost
                || now.inbound_connections != before.inbound_connections;
            if moved {
                broken.push(peer);
            }
        }
        drop(seen);
        if !broken.is_empty() {
            // Dropping a call's sender ends its wait with an error.
            self.pending
                .borrow_mut()
                .retain(|_, waiting| !broken.contains(&waiting.peer));
        }
    }

    /// Fails every waiting call (the replication is closing).
    pub fn fail_all(&self) {
        self.pending.borrow_mut().clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_correlation_id_frames_and_unframes() {
        let payload = framed(42, b"call");
        let (id, body) = unframed(&payload).expect("long enough");
        assert_eq!(id, 42);
        assert_eq!(&body[..], b"call");
        assert!(unframed(&Bytes::from_static(&[1, 2, 3])).is_none());
    }
}
