//! A node's cluster port: one listener for the whole node, and the hand-over of each
//! accepted connection to the shard its hello names.
//!
//! Design (docs/cluster-transport.md, "Connections"): a thread blocks in `accept` on the
//! one cluster address and puts each accepted std socket in a bounded queue that every
//! shard's transport takes from. The shard that takes it reads the hello through a
//! second descriptor of the same socket (`try_clone`, a `dup`) made into a glommio
//! stream, checks it, drops that stream, and sends the std socket, which is `Send`, to
//! the named shard's hand-over queue; that shard makes its own glommio stream of it. So
//! a connection ends on the right shard whichever shard read its hello, the hello is
//! read without blocking any shard, and no raw descriptor is ever handled (`unsafe` is
//! forbidden in this crate). glommio listeners are not used because a socket they accept
//! cannot leave the executor that read from it.

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use async_channel::{Receiver, Sender, TrySendError};
use glommio::sync::Semaphore;

use super::config::{ClusterConfig, Peer};
use super::hello::{Hello, Identity};
use super::io::{adopt, read_hello, within, HandshakeError};
use super::limits::{
    TransportLimits, ACCEPTS_PENDING_MAX, ACCEPT_ERROR_PAUSE_MS, ACCEPT_POLL_MS,
    HANDOVERS_PER_SHARD_MAX, HANDSHAKES_PER_SHARD_MAX,
};
use super::log;
use super::stats::{NetCounters, NetStats};

/// An accepted socket whose hello is not read yet.
pub(crate) struct Accepted {
    stream: std::net::TcpStream,
    remote: SocketAddr,
}

/// A connection whose hello was read and accepted, on its way to the shard it names.
pub(crate) struct Handover {
    pub(crate) stream: std::net::TcpStream,
    pub(crate) remote: SocketAddr,
    pub(crate) hello: Hello,
}

/// One shard's hand-over queue.
struct Handovers {
    sender: Sender<Handover>,
    receiver: Receiver<Handover>,
}

/// What the node's shards and its listener thread share.
pub(crate) struct NetShared {
    pub(crate) identity: Identity,
    /// The other nodes and their addresses.
    pub(crate) peers: Vec<Peer>,
    pub(crate) limits: TransportLimits,
    pub(crate) counters: NetCounters,
    accepted: Receiver<Accepted>,
    handovers: Vec<Handovers>,
    stopping: AtomicBool,
}

impl NetShared {
    /// The queue of connections for `shard`, which its transport adopts.
    pub(crate) fn handovers_of(&self, shard: u16) -> Receiver<Handover> {
        self.handovers[usize::from(shard)].receiver.clone()
    }

    /// Refuses further connections for `shard` and closes those waiting for it.
    pub(crate) fn close_handovers(&self, shard: u16) {
        let receiver = &self.handovers[usize::from(shard)].receiver;
        receiver.close();
        while receiver.try_recv().is_ok() {}
    }
}

/// A node's cluster port: the listener and what its shards share. Stops (the listener
/// thread ends, the queues close) on [`ClusterNet::stop`] or when dropped.
pub struct ClusterNet {
    shared: Arc<NetShared>,
    local_addr: SocketAddr,
    acceptor: Option<JoinHandle<()>>,
}

/// What one shard needs to start its [`super::ClusterTransport`]: `Send`, so it can be
/// moved into the shard's executor.
#[derive(Clone)]
pub struct ShardNet {
    pub(crate) shared: Arc<NetShared>,
    pub(crate) shard: u16,
}

impl ClusterNet {
    /// Listens on `config.listen` for a node of `shard_count` shards and starts the
    /// listener thread. Nothing is connected yet: each shard starts its transport.
    pub fn bind(
        config: &ClusterConfig,
        shard_count: usize,
        limits: TransportLimits,
    ) -> Result<ClusterNet, String> {
        limits.validate()?;
        let shard_count = u16::try_from(shard_count)
            .ok()
            .filter(|count| *count > 0)
            .ok_or_else(|| format!("cluster transport: {shard_count} shards"))?;
        let listener = bind_listener(config.listen)?;
        let local_addr = listener
            .local_addr()
            .map_err(|e| format!("cluster_listen {}: {e}", config.listen))?;
        let (accepted_sender, accepted) = async_channel::bounded(ACCEPTS_PENDING_MAX);
        let handovers = (0..shard_count)
            .map(|_| {
                let (sender, receiver) = async_channel::bounded(HANDOVERS_PER_SHARD_MAX);
                Handovers { sender, receiver }
            })
            .collect();
        let shared = Arc::new(NetShared {
            identity: Identity::new(config, shard_count),
            peers: config.others().copied().collect(),
            limits,
            counters: NetCounters::default(),
            accepted,
            handovers,
            stopping: AtomicBool::new(false),
        });
        let thread_shared = shared.clone();
        let acceptor = std::thread::Builder::new()
            .name("sluice-cluster-accept".into())
            .spawn(move || accept_thread(listener, &thread_shared, accepted_sender))
            .map_err(|e| format!("cannot start the cluster listener thread: {e}"))?;
        Ok(ClusterNet {
            shared,
            local_addr,
            acceptor: Some(acceptor),
        })
    }

    /// The address the cluster port is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// What shard `shard` starts its transport with.
    pub fn shard(&self, shard: usize) -> ShardNet {
        let shard = u16::try_from(shard)
            .ok()
            .filter(|shard| *shard < self.shared.identity.shard_count)
            .unwrap_or_else(|| panic!("shard {shard} of {}", self.shared.identity.shard_count));
        ShardNet {
            shared: self.shared.clone(),
            shard,
        }
    }

    /// The listener's counters.
    pub fn stats(&self) -> NetStats {
        self.shared.counters.get()
    }

    /// Stops accepting: the listener thread ends (within [`ACCEPT_POLL_MS`]) and closes
    /// the port, connections waiting for a hello or a hand-over are closed. Established
    /// connections belong to the shards' transports, which close on their own.
    pub fn stop(&mut self) {
        self.shared.stopping.store(true, Ordering::Release);
        if let Some(acceptor) = self.acceptor.take() {
            if acceptor.join().is_err() {
                log("the listener thread panicked");
            }
        }
        // Closing does not drop what a queue holds; draining does, which closes the
        // sockets at once rather than when the last shard lets go of the queues.
        self.shared.accepted.close();
        while self.shared.accepted.try_recv().is_ok() {}
        for shard in 0..self.shared.identity.shard_count {
            self.shared.close_handovers(shard);
        }
    }
}

impl Drop for ClusterNet {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Binds and listens on `address`. SO_REUSEADDR lets a restarted node bind again while
/// its previous connections linger in TIME_WAIT; the receive timeout makes a blocked
/// `accept` return every [`ACCEPT_POLL_MS`] so that the thread sees a stop.
fn bind_listener(address: SocketAddr) -> Result<std::net::TcpListener, String> {
    let cannot = |e: std::io::Error| format!("cannot listen on {address} (cluster_listen): {e}");
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(address),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )
    .map_err(cannot)?;
    socket.set_reuse_address(true).map_err(cannot)?;
    socket.bind(&address.into()).map_err(cannot)?;
    socket.listen(128).map_err(cannot)?;
    socket
        .set_read_timeout(Some(Duration::from_millis(ACCEPT_POLL_MS)))
        .map_err(cannot)?;
    Ok(socket.into())
}

/// The listener thread: accepts until the node stops, queueing each socket for the
/// shards. It never waits for a shard: a full queue closes the new connection.
fn accept_thread(listener: std::net::TcpListener, shared: &NetShared, accepted: Sender<Accepted>) {
    // Runs until `stop`: each pass waits at most ACCEPT_POLL_MS in `accept`.
    while !shared.stopping.load(Ordering::Acquire) {
        let (stream, remote) = match listener.accept() {
            Ok(pair) => pair,
            Err(error) if is_accept_timeout(&error) => continue,
            Err(error) => {
                log(&format!("accept failed: {error}"));
                std::thread::sleep(Duration::from_millis(ACCEPT_ERROR_PAUSE_MS));
                continue;
            }
        };
        NetCounters::add(&shared.counters.accepted);
        // The accepted socket inherits the listener's receive timeout; glommio never
        // blocks on it, but a std read would.
        let _ = stream.set_read_timeout(None);
        let _ = stream.set_nodelay(true);
        match accepted.try_send(Accepted { stream, remote }) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                NetCounters::add(&shared.counters.accepts_dropped);
                log(&format!(
                    "{remote}: {ACCEPTS_PENDING_MAX} connections wait for a shard already; closed"
                ));
            }
            Err(TrySendError::Closed(_)) => return,
        }
    }
}

fn is_accept_timeout(error: &std::io::Error) -> bool {
    matches!(
        error.kind(),
        std::io::ErrorKind::WouldBlock
            | std::io::ErrorKind::TimedOut
            | std::io::ErrorKind::Interrupted
    )
}

/// A shard's part of accepting: the hellos it is reading, each a task of its own.
pub(crate) struct Handshakes {
    /// [`HANDSHAKES_PER_SHARD_MAX`] units; each running handshake holds one.
    permits: Rc<Semaphore>,
    /// Closed when the transport closes: every handshake ends at once.
    stop_sender: Sender<()>,
    stop: Receiver<()>,
}

impl Handshakes {
    pub(crate) fn new() -> Handshakes {
        let (stop_sender, stop) = async_channel::bounded(1);
        let permits = u64::try_from(HANDSHAKES_PER_SHARD_MAX).expect("small");
        Handshakes {
            permits: Rc::new(Semaphore::new(permits)),
            stop_sender,
            stop,
        }
    }

    /// Tells every handshake to end (at its next poll).
    pub(crate) fn stop(&self) {
        self.stop_sender.close();
    }

    /// Waits until every handshake has ended, so that none outlives the transport (a
    /// task left behind when an executor ends is never dropped, and would keep its
    /// socket open). After [`Handshakes::stop`], each ends within a poll.
    pub(crate) async fn wait_stopped(&self) {
        let permits = u64::try_from(HANDSHAKES_PER_SHARD_MAX).expect("small");
        let _all = self.permits.acquire_permit(permits).await;
    }
}

/// Takes accepted sockets from the node's queue and reads their hellos, at most
/// [`HANDSHAKES_PER_SHARD_MAX`] at once (beyond, the sockets wait in the node's queue
/// for this shard or another), until the node stops.
pub(crate) async fn accept_loop(shared: Arc<NetShared>, shard: u16, handshakes: Rc<Handshakes>) {
    // Runs until the node's queue closes or the semaphore does: one socket per pass.
    while let Ok(permit) = handshakes.permits.acquire_static_permit(1).await {
        let Ok(accepted) = shared.accepted.recv().await else {
            return;
        };
        let shared = shared.clone();
        let stop = handshakes.stop.clone();
        glommio::spawn_local(async move {
            let stopped = async {
                let _ = stop.recv().await;
            };
            futures_lite::future::or(handshake(&shared, shard, accepted), stopped).await;
            drop(permit);
        })
        .detach();
    }
}

/// Reads and checks one connection's hello (within the handshake timeout) on `shard`,
/// then hands the connection to the shard the hello names (this one too goes through
/// its queue); closes it otherwise.
async fn handshake(shared: &NetShared, shard: u16, accepted: Accepted) {
    let Accepted { stream, remote } = accepted;
    let hello = match handshake_read(shared, &stream).await {
        Ok(hello) => hello,
        Err(error) => {
            NetCounters::add(&shared.counters.hellos_refused);
            log(&format!(
                "node {}: refused a connection from {remote}: {error}",
                shared.identity.node_id
            ));
            return;
        }
    };
    let handovers = &shared.handovers[usize::from(hello.shard)];
    let handover = Handover {
        stream,
        remote,
        hello,
    };
    match handovers.sender.try_send(handover) {
        Ok(()) if hello.shard != shard => NetCounters::add(&shared.counters.handovers),
        Ok(()) => {}
        Err(_) => log(&format!(
            "{remote}: node {}'s connection for shard {} cannot be handed over (queue full or \
             shard stopped); closed",
            hello.node_id, hello.shard
        )),
    }
}

/// The hello, read through a duplicate descriptor that is closed again before the
/// socket moves on, and checked against this node.
async fn handshake_read(
    shared: &NetShared,
    stream: &std::net::TcpStream,
) -> Result<Hello, HandshakeError> {
    let mut reader = adopt(stream.try_clone()?);
    let timeout_ms = shared.limits.handshake_timeout_ms;
    let hello = within(timeout_ms, "the hello", async {
        Ok(read_hello(&mut reader).await)
    })
    .await??;
    drop(reader);
    shared
        .identity
        .check_inbound(&hello)
        .map_err(HandshakeError::Hello)?;
    Ok(hello)
}
