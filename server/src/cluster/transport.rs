//! One shard's transport: a queue and writer per peer (`outbound`), the readers of the
//! connections peers opened to this shard and the queue they fill (`inbound`), and this
//! shard's part of the node's accepting (`net`). Created on the shard's executor; every
//! task it starts ends when it is closed or dropped.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;

use bytes::Bytes;
use glommio::Task;

use super::hello::KIND_HELLO;
use super::inbound::{read_frames, InboundReceiver, InboundSink};
use super::io::{adopt, within};
use super::log;
use super::net::{accept_loop, Handover, Handshakes, NetShared, ShardNet};
use super::outbound::{peer_queue, PeerQueue, SendError};
use super::stats::{PeerCounters, PeerStats};
use super::NodeId;

/// A shard's end of the cluster's connections: [`ClusterTransport::send`] to the same
/// shard of any peer; what peers send this shard comes out of the [`InboundReceiver`]
/// that [`ClusterTransport::start`] returned.
pub struct ClusterTransport {
    inner: Rc<Inner>,
    /// The writers, this shard's accepting and its hand-over loop.
    tasks: RefCell<Vec<Task<()>>>,
}

/// What the transport's tasks share. Holds no task that holds it (no cycle): readers
/// hold only the sink and their counters.
struct Inner {
    shared: Arc<NetShared>,
    shard: u16,
    queues: BTreeMap<NodeId, PeerQueue>,
    counters: BTreeMap<NodeId, Rc<PeerCounters>>,
    sink: Rc<InboundSink>,
    /// The reader of each peer's current inbound connection; a newer one replaces it.
    readers: RefCell<BTreeMap<NodeId, Task<()>>>,
    /// The hellos this shard reads for the node.
    handshakes: Rc<Handshakes>,
    closed: Cell<bool>,
}

impl ClusterTransport {
    /// Starts this shard's transport on the calling executor (the shard's): a writer per
    /// peer begins connecting at once, and this shard begins taking its share of the
    /// node's accepted connections.
    pub fn start(net: ShardNet) -> (ClusterTransport, InboundReceiver) {
        let ShardNet { shared, shard } = net;
        let (sink, receiver) = InboundSink::new(&shared.limits);
        let mut queues = BTreeMap::new();
        let mut counters = BTreeMap::new();
        let mut tasks = Vec::new();
        for peer in &shared.peers {
            let peer_counters = Rc::new(PeerCounters::default());
            let (queue, writer) = peer_queue(&shared, shard, *peer, peer_counters.clone());
            tasks.push(glommio::spawn_local(writer.run()));
            queues.insert(peer.id, queue);
            counters.insert(peer.id, peer_counters);
        }
        let inner = Rc::new(Inner {
            shared: shared.clone(),
            shard,
            queues,
            counters,
            sink: Rc::new(sink),
            readers: RefCell::new(BTreeMap::new()),
            handshakes: Rc::new(Handshakes::new()),
            closed: Cell::new(false),
        });
        let accepting = accept_loop(shared, shard, inner.handshakes.clone());
        tasks.push(glommio::spawn_local(accepting));
        tasks.push(glommio::spawn_local(handover_loop(inner.clone())));
        let transport = ClusterTransport {
            inner,
            tasks: RefCell::new(tasks),
        };
        (transport, receiver)
    }

    /// Queues a frame of `kind` (not [`KIND_HELLO`]) for the same shard of `peer`,
    /// without waiting. Frames to one peer arrive in the order sent, except those lost
    /// when a connection breaks.
    pub fn send(&self, peer: NodeId, kind: u8, payload: Bytes) -> Result<(), SendError> {
        let inner = &self.inner;
        if inner.closed.get() {
            return Err(SendError::Closed);
        }
        if kind == KIND_HELLO {
            return Err(SendError::ReservedKind);
        }
        let frame_bytes_max = inner.shared.limits.frame_bytes_max;
        if payload.len() as u64 > u64::from(frame_bytes_max) {
            return Err(SendError::TooLarge {
                payload_bytes: payload.len() as u64,
                frame_bytes_max,
            });
        }
        let queue = inner
            .queues
            .get(&peer)
            .ok_or(SendError::UnknownPeer(peer))?;
        queue.push(kind, payload)
    }

    /// This node's id.
    pub fn node_id(&self) -> NodeId {
        self.inner.shared.identity.node_id
    }

    /// The shard this transport runs on.
    pub fn shard(&self) -> u16 {
        self.inner.shard
    }

    /// The other nodes, by ascending id.
    pub fn peers(&self) -> Vec<NodeId> {
        self.inner.queues.keys().copied().collect()
    }

    /// This shard's counters for `peer`.
    pub fn stats(&self, peer: NodeId) -> Option<PeerStats> {
        self.inner
            .counters
            .get(&peer)
            .map(|counters| counters.get())
    }

    /// Closes this shard's transport: queued frames are discarded (counted as lost),
    /// every connection of this shard is closed, the receiver ends after the frames
    /// already in it, and connections for this shard are refused from now on. When
    /// this returns, every task of the transport has ended.
    pub async fn close(&self) {
        self.inner.close_signal();
        let tasks: Vec<Task<()>> = self.tasks.borrow_mut().drain(..).collect();
        for task in tasks {
            task.cancel().await;
        }
        let readers = std::mem::take(&mut *self.inner.readers.borrow_mut());
        for reader in readers.into_values() {
            reader.cancel().await;
        }
        self.inner.handshakes.wait_stopped().await;
    }
}

impl Drop for ClusterTransport {
    /// Without [`ClusterTransport::close`]: everything is told to stop and the tasks are
    /// cancelled, but nothing is waited for. Close before the shard's executor ends.
    fn drop(&mut self) {
        self.inner.close_signal();
    }
}

impl Inner {
    /// The part of closing that needs no waiting; once only.
    fn close_signal(&self) {
        if self.closed.replace(true) {
            return;
        }
        for queue in self.queues.values() {
            queue.close();
        }
        self.sink.close();
        self.shared.close_handovers(self.shard);
        self.handshakes.stop();
    }
}

/// Adopts the connections handed to this shard until the node stops or the transport
/// closes.
async fn handover_loop(inner: Rc<Inner>) {
    let handovers = inner.shared.handovers_of(inner.shard);
    // Runs until the hand-over queue closes: one connection per pass.
    while let Ok(handover) = handovers.recv().await {
        adopt_inbound(&inner, handover);
    }
}

/// Starts the reader of a connection a peer opened to this shard; it replaces (and so
/// closes) that peer's previous connection, which a reconnecting peer has given up.
fn adopt_inbound(inner: &Rc<Inner>, handover: Handover) {
    let peer = handover.hello.node_id;
    assert_eq!(
        handover.hello.shard, inner.shard,
        "handed to the shard it names"
    );
    let counters = inner
        .counters
        .get(&peer)
        .expect("the hello was checked against the peers")
        .clone();
    counters.update(|stats| stats.inbound_connections += 1);
    let reader = serve_inbound(inner.clone(), handover, counters);
    let task = glommio::spawn_local(reader);
    inner.readers.borrow_mut().insert(peer, task);
}

/// One inbound connection: our hello in answer, then its frames until it ends.
fn serve_inbound(
    inner: Rc<Inner>,
    handover: Handover,
    counters: Rc<PeerCounters>,
) -> impl std::future::Future<Output = ()> {
    // The task keeps only what it needs, not `inner`, which holds the task.
    let shared = inner.shared.clone();
    let shard = inner.shard;
    let sink = inner.sink.clone();
    drop(inner);
    async move {
        let Handover {
            stream,
            remote,
            hello,
        } = handover;
        let peer = hello.node_id;
        let name = format!("node {} shard {shard}", shared.identity.node_id);
        let mut stream = adopt(stream);
        let answer = shared.identity.hello(shard).encode();
        let written = within(
            shared.limits.handshake_timeout_ms,
            "answering the hello",
            async { futures_lite::AsyncWriteExt::write_all(&mut stream, &answer).await },
        )
        .await;
        if let Err(error) = written {
            log(&format!(
                "{name}: answering node {peer} at {remote}: {error}"
            ));
            return;
        }
        let read = read_frames(&mut stream, peer, shard, &shared.limits, &sink, &counters).await;
        if let Err(error) = read {
            if error.is_protocol() {
                counters.update(|stats| stats.inbound_errors += 1);
            }
            log(&format!(
                "{name}: closed node {peer}'s connection from {remote}: {error}"
            ));
        }
    }
}
