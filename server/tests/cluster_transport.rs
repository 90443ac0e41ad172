//! The cluster transport over real sockets on 127.0.0.1: nodes of two shards, each shard
//! on its own glommio executor, all in this process. A test drives a shard through
//! commands on a channel and sees what the shard receives on another; every wait is
//! for an event (a frame, a closed socket, a counter) and bounded by `WAIT`.

#![cfg(not(madsim))]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use glommio::ExecutorJoinHandle;
use sluice_core::frame::{decode_frame, encode_frame, FRAME_HEADER_BYTES};
use sluice_server::cluster::hello::HELLO_BYTES;
use sluice_server::cluster::{
    config::parse_peers, ClusterConfig, ClusterNet, ClusterTransport, Hello, Identity, NetStats,
    NodeId, PeerStats, SendError, ShardNet, TransportLimits,
};
use sluice_shard::executor::ShardStartup;

/// The longest any single wait may take before the test fails.
const WAIT: Duration = Duration::from_secs(20);
/// How often a wait for a counter looks again.
const LOOK_AGAIN: Duration = Duration::from_millis(2);
const SHARDS: usize = 2;

/// A frame a shard received: sender, kind, payload.
type Received = (NodeId, u8, Vec<u8>);

enum Command {
    Send {
        peer: NodeId,
        kind: u8,
        payloads: Vec<Bytes>,
        reply: mpsc::Sender<Vec<Result<(), SendError>>>,
    },
    Stats {
        peer: NodeId,
        reply: mpsc::Sender<Option<PeerStats>>,
    },
    Close {
        reply: mpsc::Sender<()>,
    },
}

/// One shard's executor and the test's ends of its channels.
struct ShardHandle {
    commands: async_channel::Sender<Command>,
    received: mpsc::Receiver<Received>,
    /// Until something is sent (or it is dropped), the shard's consumer takes nothing.
    gate: Option<async_channel::Sender<()>>,
    executor: Option<ExecutorJoinHandle<()>>,
}

impl ShardHandle {
    fn start(net: ShardNet, index: usize, gated: bool) -> ShardHandle {
        let (commands, command_receiver) = async_channel::unbounded();
        let (received_sender, received) = mpsc::channel();
        let (gate, gate_receiver) = async_channel::bounded(1);
        let startup = ShardStartup::prepare(8, None);
        let executor = startup
            .builder(index % std::thread::available_parallelism().map_or(1, |n| n.get()))
            .name(&format!("test-shard-{index}"))
            .spawn(move || drive(net, command_receiver, received_sender, gate_receiver))
            .expect("an executor starts");
        let mut shard = ShardHandle {
            commands,
            received,
            gate: Some(gate),
            executor: Some(executor),
        };
        if !gated {
            shard.open_gate();
        }
        shard
    }

    fn open_gate(&mut self) {
        if let Some(gate) = self.gate.take() {
            gate.send_blocking(()).unwrap();
        }
    }

    fn send(&self, peer: u64, kind: u8, payloads: Vec<Bytes>) -> Vec<Result<(), SendError>> {
        let (reply, answer) = mpsc::channel();
        let command = Command::Send {
            peer: NodeId(peer),
            kind,
            payloads,
            reply,
        };
        self.commands.send_blocking(command).unwrap();
        answer.recv_timeout(WAIT).expect("the shard answers")
    }

    fn stats(&self, peer: u64) -> PeerStats {
        let (reply, answer) = mpsc::channel();
        let command = Command::Stats {
            peer: NodeId(peer),
            reply,
        };
        self.commands.send_blocking(command).unwrap();
        let stats = answer.recv_timeout(WAIT).expect("the shard answers");
        stats.expect("a peer")
    }

    fn next(&self, what: &str) -> Received {
        self.received
            .recv_timeout(WAIT)
            .unwrap_or_else(|_| panic!("no frame within {WAIT:?}: {what}"))
    }

    /// Closes the transport; the executor keeps answering commands.
    fn close_transport(&self) {
        let (reply, answer) = mpsc::channel();
        if self
            .commands
            .send_blocking(Command::Close { reply })
            .is_ok()
        {
            answer.recv_timeout(WAIT).expect("the shard closes");
        }
    }

    /// Closes the transport and ends the executor.
    fn close(&mut self) {
        self.open_gate();
        self.close_transport();
        self.commands.close();
        if let Some(executor) = self.executor.take() {
            executor.join().expect("the shard's executor ends cleanly");
        }
    }
}

impl Drop for ShardHandle {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            self.close();
        }
    }
}

/// The shard's side: its transport, a consumer forwarding frames to the test, and the
/// commands.
async fn drive(
    net: ShardNet,
    commands: async_channel::Receiver<Command>,
    received: mpsc::Sender<Received>,
    gate: async_channel::Receiver<()>,
) {
    let (transport, inbound) = ClusterTransport::start(net);
    let consumer = glommio::spawn_local(async move {
        let _ = gate.recv().await;
        while let Some(frame) = inbound.recv().await {
            let (peer, kind, payload) = frame.into_parts();
            if received.send((peer, kind, payload.to_vec())).is_err() {
                return;
            }
        }
    });
    // Until the test drops its end: a closed transport still answers (Closed).
    while let Ok(command) = commands.recv().await {
        drive_one(&transport, command).await;
    }
    transport.close().await;
    consumer.cancel().await;
}

/// Runs one command.
async fn drive_one(transport: &ClusterTransport, command: Command) {
    match command {
        Command::Send {
            peer,
            kind,
            payloads,
            reply,
        } => {
            let results = payloads
                .into_iter()
                .map(|payload| transport.send(peer, kind, payload))
                .collect();
            let _ = reply.send(results);
        }
        Command::Stats { peer, reply } => {
            let _ = reply.send(transport.stats(peer));
        }
        Command::Close { reply } => {
            transport.close().await;
            let _ = reply.send(());
        }
    }
}

/// A node: its cluster port and its shards (some maybe not started yet).
struct TestNode {
    net: ClusterNet,
    shards: Vec<Option<ShardHandle>>,
}

impl TestNode {
    fn start(config: &ClusterConfig, limits: TransportLimits) -> TestNode {
        let mut node = TestNode::bind(config, limits);
        for index in 0..SHARDS {
            node.start_shard(index, false);
        }
        node
    }

    fn bind(config: &ClusterConfig, limits: TransportLimits) -> TestNode {
        let net = ClusterNet::bind(config, SHARDS, limits).expect("the cluster port binds");
        TestNode {
            net,
            shards: (0..SHARDS).map(|_| None).collect(),
        }
    }

    fn start_shard(&mut self, index: usize, gated: bool) {
        let shard = ShardHandle::start(self.net.shard(index), index, gated);
        self.shards[index] = Some(shard);
    }

    fn shard(&self, index: usize) -> &ShardHandle {
        self.shards[index].as_ref().expect("started")
    }

    fn shard_mut(&mut self, index: usize) -> &mut ShardHandle {
        self.shards[index].as_mut().expect("started")
    }

    fn stats(&self) -> NetStats {
        self.net.stats()
    }

    fn stop(mut self) {
        for shard in self.shards.iter_mut().flatten() {
            shard.close();
        }
        self.net.stop();
    }
}

/// A port nobody listens on now (bound to 0, then released).
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// The configuration of every node of a cluster on `ports` (node ids from 1).
fn cluster(ports: &[u16]) -> Vec<ClusterConfig> {
    let peers: Vec<String> = ports
        .iter()
        .enumerate()
        .map(|(index, port)| format!("{}=127.0.0.1:{port}", index + 1))
        .collect();
    let peers = parse_peers(&peers.join(",")).unwrap();
    peers
        .iter()
        .map(|own| ClusterConfig::new(own.id, own.address, peers.clone()).unwrap())
        .collect()
}

/// Small timeouts and back-off, so that a test waits milliseconds, not seconds.
fn test_limits() -> TransportLimits {
    TransportLimits {
        backoff_ms_min: 5,
        backoff_ms_max: 50,
        handshake_timeout_ms: 5_000,
        ..TransportLimits::standard()
    }
}

/// Waits until `done()`, looking again every `LOOK_AGAIN`; fails after `WAIT`.
fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    // Bounded by WAIT.
    while !done() {
        assert!(started.elapsed() < WAIT, "not within {WAIT:?}: {what}");
        std::thread::sleep(LOOK_AGAIN);
    }
}

/// The payload of frame `seq` sent by shard `shard` of node `node`.
fn payload(node: u64, shard: usize, seq: usize) -> Bytes {
    Bytes::from(format!("{node}/{shard}/{seq}"))
}

/// Receives `count` frames on `shard` of `node_index` from `peer` and checks that they
/// are `peer`'s frames from the same shard, numbered `from..from + count` in order.
fn expect_in_order(node: &TestNode, shard: usize, peer: u64, from: usize, count: usize) {
    for seq in from..from + count {
        let what = format!("frame {seq} from node {peer} on shard {shard}");
        let (sender, kind, bytes) = node.shard(shard).next(&what);
        assert_eq!(sender, NodeId(peer), "{what}");
        assert_eq!(kind, 7, "{what}");
        assert_eq!(bytes, payload(peer, shard, seq), "{what}");
    }
}

/// `count` frames numbered from `from`, from every shard of `node` to `peer`; all queued.
fn send_numbered(node: &TestNode, node_id: u64, peer: u64, from: usize, count: usize) {
    for shard in 0..SHARDS {
        let payloads = (from..from + count)
            .map(|seq| payload(node_id, shard, seq))
            .collect();
        let results = node.shard(shard).send(peer, 7, payloads);
        assert!(results.iter().all(Result::is_ok), "{results:?}");
    }
}

#[test]
fn frames_reach_the_same_shard_of_every_peer_in_order() {
    // Goal: with three nodes, every shard's frames to every peer arrive on the same shard
    // of that peer, complete and in order, whichever shard accepted the connection.
    // Method: every shard sends 300 numbered frames to each peer; every shard of every
    // node must receive exactly each peer's sequence from its own shard index.
    let configs = cluster(&[free_port(), free_port(), free_port()]);
    let nodes: Vec<TestNode> = configs
        .iter()
        .map(|config| TestNode::start(config, test_limits()))
        .collect();
    let frame_count = 300;
    for (index, node) in nodes.iter().enumerate() {
        let node_id = index as u64 + 1;
        for peer in (1..=3).filter(|peer| *peer != node_id) {
            send_numbered(node, node_id, peer, 0, frame_count);
        }
    }
    for (index, node) in nodes.iter().enumerate() {
        let node_id = index as u64 + 1;
        for shard in 0..SHARDS {
            let mut next_seq = [0usize; 4];
            for _ in 0..2 * frame_count {
                let (sender, kind, bytes) = node.shard(shard).next("a numbered frame");
                let peer = usize::try_from(sender.0).unwrap();
                assert_ne!(sender, NodeId(node_id));
                assert_eq!(kind, 7);
                assert_eq!(bytes, payload(sender.0, shard, next_seq[peer]));
                next_seq[peer] += 1;
            }
            for peer in (1..=3u64).filter(|peer| *peer != node_id) {
                let stats = node.shard(shard).stats(peer);
                assert_eq!(stats.frames_received, frame_count as u64, "{stats:?}");
                assert_eq!(stats.inbound_errors, 0, "{stats:?}");
                assert_eq!(stats.frames_dropped, 0, "{stats:?}");
            }
        }
        let net = node.stats();
        assert_eq!(net.hellos_refused, 0, "{net:?}");
        assert!(net.accepted >= 4, "two peers, two shards each: {net:?}");
    }
    for node in nodes {
        node.stop();
    }
}

#[test]
fn a_peer_that_comes_up_late_or_restarts_gets_frames_after_reconnecting() {
    // Goal: frames queued while the peer is down are delivered once it is up, and a
    // restarted peer is reconnected to. Method: node 1 sends before node 2 exists;
    // node 2 starts on the reserved port and must receive them in order; then node 2
    // stops, node 1 notices the closed connections, node 2 starts again, and frames
    // sent meanwhile arrive.
    let configs = cluster(&[free_port(), free_port()]);
    let one = TestNode::start(&configs[0], test_limits());
    send_numbered(&one, 1, 2, 0, 50);
    wait_for("node 1 fails to reach node 2", || {
        (0..SHARDS).all(|shard| one.shard(shard).stats(2).connect_failures > 0)
    });
    let two = TestNode::start(&configs[1], test_limits());
    for shard in 0..SHARDS {
        expect_in_order(&two, shard, 1, 0, 50);
        let stats = one.shard(shard).stats(2);
        assert_eq!(stats.connects, 1, "{stats:?}");
        assert_eq!(stats.frames_lost, 0, "{stats:?}");
    }
    two.stop();
    wait_for("node 1 notices node 2 closing", || {
        (0..SHARDS).all(|shard| one.shard(shard).stats(2).disconnects == 1)
    });
    send_numbered(&one, 1, 2, 50, 20);
    let two = TestNode::start(&configs[1], test_limits());
    for shard in 0..SHARDS {
        expect_in_order(&two, shard, 1, 50, 20);
        // The writer counts a write once it returns, which may be after the peer read it.
        wait_for("node 1 counts 70 frames sent", || {
            one.shard(shard).stats(2).frames_sent == 70
        });
        let stats = one.shard(shard).stats(2);
        assert_eq!(stats.reconnects, 1, "{stats:?}");
        assert_eq!(stats.frames_lost, 0, "{stats:?}");
    }
    two.stop();
    one.stop();
}

#[test]
fn sends_are_refused_with_a_typed_error() {
    // Goal: a full queue answers Full at once and counts the drop; bad sends are typed
    // errors; a closed transport answers Closed. Method: the peer is down, so nothing
    // leaves the queue: 8 frames or 1000 bytes fill it.
    let configs = cluster(&[free_port(), free_port()]);
    let limits = TransportLimits {
        frame_bytes_max: 512,
        peer_queue_frames_max: 8,
        peer_queue_bytes_max: 1000,
        inbound_bytes_max: 1000,
        ..test_limits()
    };
    let one = TestNode::start(&configs[0], limits);
    let shard = one.shard(0);
    let big = Bytes::from(vec![1u8; 400]);
    let results = shard.send(2, 3, vec![big.clone(), big.clone(), big]);
    assert_eq!(results[..2], [Ok(()), Ok(())]);
    assert_eq!(
        results[2],
        Err(SendError::Full {
            frames_queued: 2,
            bytes_queued: 832
        })
    );
    let results = shard.send(2, 3, vec![Bytes::new(); 7]);
    assert!(results[..6].iter().all(Result::is_ok), "{results:?}");
    assert!(matches!(
        results[6],
        Err(SendError::Full {
            frames_queued: 8,
            ..
        })
    ));
    assert_eq!(shard.stats(2).frames_dropped, 2);
    let too_large = Bytes::from(vec![0u8; 513]);
    assert_eq!(
        shard.send(3, 3, vec![Bytes::new()]),
        [Err(SendError::UnknownPeer(NodeId(3)))]
    );
    assert_eq!(
        shard.send(1, 3, vec![Bytes::new()]),
        [Err(SendError::UnknownPeer(NodeId(1)))]
    );
    assert_eq!(
        shard.send(2, 0, vec![Bytes::new()]),
        [Err(SendError::ReservedKind)]
    );
    assert_eq!(
        one.shard(1).send(2, 3, vec![too_large]),
        [Err(SendError::TooLarge {
            payload_bytes: 513,
            frame_bytes_max: 512
        })]
    );
    // A closed transport refuses sends and counts the frames it discarded as lost.
    let shard = one.shard(0);
    shard.close_transport();
    assert_eq!(
        shard.send(2, 3, vec![Bytes::new()]),
        [Err(SendError::Closed)]
    );
    let stats = shard.stats(2);
    assert_eq!((stats.frames_lost, stats.frames_sent), (8, 0), "{stats:?}");
    one.stop();
}

#[test]
fn a_slow_consumer_stops_the_reader_instead_of_buffering() {
    // Goal: the receive side holds at most its bounds and leaves the rest in the socket,
    // until the sender's queue refuses; nothing accepted is lost. Method: node 2's
    // consumer takes nothing while node 1 sends 64 KiB frames until Full (the socket
    // buffers, then the queue, fill); node 2 has then handed at most 4 frames to its
    // consumer. Then the consumer runs and must get every frame that was accepted.
    let configs = cluster(&[free_port(), free_port()]);
    let limits = TransportLimits {
        frame_bytes_max: 128 << 10,
        peer_queue_frames_max: 16,
        inbound_frames_max: 4,
        inbound_bytes_max: 1 << 20,
        ..test_limits()
    };
    let one = TestNode::start(&configs[0], limits);
    let mut two = TestNode::bind(&configs[1], limits);
    two.start_shard(0, true);
    two.start_shard(1, false);
    let body = vec![0u8; 64 << 10];
    let mut accepted = Vec::new();
    let mut refused_last = false;
    let mut seq = 0usize;
    // Bounded: 2000 rounds of 16 frames, far beyond the socket buffers.
    for _ in 0..2000 {
        if refused_last && accepted.len() >= 64 {
            break;
        }
        let payloads: Vec<Bytes> = (seq..seq + 16)
            .map(|seq| {
                let mut payload = body.clone();
                payload[..8].copy_from_slice(&(seq as u64).to_le_bytes());
                Bytes::from(payload)
            })
            .collect();
        let results = one.shard(0).send(2, 9, payloads);
        for (offset, result) in results.iter().enumerate() {
            match result {
                Ok(()) => accepted.push(seq + offset),
                Err(SendError::Full { .. }) => {}
                Err(error) => panic!("{error}"),
            }
        }
        refused_last = results.iter().any(Result::is_err);
        seq += 16;
    }
    assert!(refused_last, "the queue never filled");
    let handed = two.shard(0).stats(1).frames_received;
    assert!(
        handed <= 4,
        "{handed} frames handed to a consumer that takes none"
    );
    two.shard_mut(0).open_gate();
    for expected in &accepted {
        let (_, kind, payload) = two.shard(0).next("a held-back frame");
        assert_eq!(kind, 9);
        let seq = u64::from_le_bytes(payload[..8].try_into().unwrap());
        assert_eq!(seq, *expected as u64);
    }
    assert_eq!(one.shard(0).stats(2).frames_lost, 0);
    two.stop();
    one.stop();
}

/// A raw client's hello frame for `shard` in the name of `identity`'s node.
fn raw_hello(identity: &Identity, shard: u16) -> Vec<u8> {
    identity.hello(shard).encode()
}

/// Connects to `address` as a plain std client with a read timeout of `WAIT`.
fn raw_connect(address: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(address).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream
}

/// Waits until the server closes `stream`: a read returns end of file or a reset.
fn expect_closed(stream: &mut TcpStream, what: &str) {
    let mut buf = [0u8; 256];
    // Bounded: each read waits at most WAIT, and the server sends nothing but a hello.
    for _ in 0..16 {
        match stream.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => continue,
            Err(error) if error.kind() == std::io::ErrorKind::ConnectionReset => return,
            Err(error) => panic!("{what}: not closed: {error}"),
        }
    }
    panic!("{what}: the server keeps writing");
}

/// Reads the server's answer to a hello.
fn read_reply(stream: &mut TcpStream) -> Hello {
    let mut bytes = [0u8; FRAME_HEADER_BYTES + HELLO_BYTES];
    stream.read_exact(&mut bytes).unwrap();
    let frame = decode_frame(&bytes, HELLO_BYTES as u32).unwrap();
    Hello::decode(&frame).unwrap()
}

#[test]
fn strangers_and_corrupt_frames_are_cut_off_and_the_rest_keeps_working() {
    // Goal: a wrong cluster's hello, bytes that are no hello, a corrupt frame and a frame
    // for another shard each close that one connection, without a panic, counted; the
    // transport keeps serving its peers. Method: nodes 1 and 2 of a three-node cluster
    // run; a plain std client talks to node 2, once as another cluster, once with
    // garbage, twice as (absent) node 3; then node 1's frames must still reach node 2.
    let configs = cluster(&[free_port(), free_port(), free_port()]);
    let one = TestNode::start(&configs[0], test_limits());
    let two = TestNode::start(&configs[1], test_limits());
    let address = two.net.local_addr();

    let other_cluster = cluster(&[free_port(), address.port()]);
    let mut stranger = raw_connect(address);
    stranger
        .write_all(&raw_hello(&Identity::new(&other_cluster[0], 2), 0))
        .unwrap();
    expect_closed(&mut stranger, "another cluster's hello");
    let mut garbage = raw_connect(address);
    garbage.write_all(&[0xEE; 64]).unwrap();
    expect_closed(&mut garbage, "bytes that are no hello");
    assert_eq!(two.stats().hellos_refused, 2);

    let three = Identity::new(&configs[2], SHARDS as u16);
    let mut impostor = raw_connect(address);
    impostor.write_all(&raw_hello(&three, 1)).unwrap();
    let reply = read_reply(&mut impostor);
    assert_eq!((reply.node_id, reply.shard), (NodeId(2), 1));
    let mut frames = Vec::new();
    encode_frame(&mut frames, 1, 5, b"from three").unwrap();
    let good_frame_bytes = frames.len();
    encode_frame(&mut frames, 1, 5, b"corrupted").unwrap();
    let last = frames.len() - 1;
    frames[last] ^= 0x01;
    impostor.write_all(&frames).unwrap();
    assert_eq!(
        two.shard(1).next("node 3's good frame"),
        (NodeId(3), 5, b"from three".to_vec())
    );
    expect_closed(&mut impostor, "a corrupt frame");
    assert_eq!(two.shard(1).stats(3).inbound_errors, 1);
    assert!(good_frame_bytes > FRAME_HEADER_BYTES);

    let mut misrouted = raw_connect(address);
    misrouted.write_all(&raw_hello(&three, 0)).unwrap();
    read_reply(&mut misrouted);
    let mut frame = Vec::new();
    encode_frame(&mut frame, 1, 5, b"for shard 1").unwrap();
    misrouted.write_all(&frame).unwrap();
    expect_closed(&mut misrouted, "a frame for another shard");
    assert_eq!(two.shard(0).stats(3).inbound_errors, 1);

    send_numbered(&one, 1, 2, 0, 10);
    for shard in 0..SHARDS {
        expect_in_order(&two, shard, 1, 0, 10);
    }
    two.stop();
    one.stop();
}

#[test]
fn a_connection_read_by_another_shard_is_handed_over() {
    // Goal: a connection whose hello names a shard other than the one that read it
    // reaches the named shard. Method: node 2 starts only shard 0, so shard 0 reads
    // every hello; once it has handed node 1's shard-1 connection over, node 2's shard 1
    // starts and must receive node 1's shard-1 frames.
    let configs = cluster(&[free_port(), free_port()]);
    let mut two = TestNode::bind(&configs[1], test_limits());
    two.start_shard(0, false);
    let one = TestNode::start(&configs[0], test_limits());
    wait_for("node 2's shard 0 hands a connection over", || {
        two.stats().handovers >= 1
    });
    two.start_shard(1, false);
    send_numbered(&one, 1, 2, 0, 25);
    for shard in 0..SHARDS {
        expect_in_order(&two, shard, 1, 0, 25);
    }
    two.stop();
    one.stop();
}
