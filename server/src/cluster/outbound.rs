//! The sending side of a shard, one per peer: a bounded queue that `send` fills without
//! waiting, and a writer task that connects to the same shard of the peer, exchanges
//! hellos, and drains the queue into the socket, gathering frames into large writes.
//!
//! A full queue refuses the new frame ([`SendError::Full`]) and keeps the old ones: the
//! caller decides what a refusal means (Raft resends what matters), nothing is dropped
//! silently (docs/style.md §4). This holds while the peer is down too, so a queue never
//! holds more than its bounds, and after a reconnection the peer gets the oldest queued
//! frame first. When a write fails the frames of that write are lost (counted), the
//! connection is dropped and the writer reconnects after a back-off. An idle writer
//! watches its socket, so a peer that closes (a restart) is noticed before the next
//! frame is written into the dead connection.

use std::cell::Cell;
use std::io;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use async_channel::{Receiver, Sender, TrySendError};
use bytes::Bytes;
use futures_lite::AsyncWriteExt;
use glommio::net::TcpStream;
use sluice_core::frame::{encode_header, FRAME_HEADER_BYTES};

use super::backoff::Backoff;
use super::config::Peer;
use super::hello::KIND_HELLO;
use super::io::{read_hello, within, HandshakeError};
use super::limits::FRAME_OVERHEAD_BYTES;
use super::log;
use super::net::NetShared;
use super::stats::PeerCounters;
use super::NodeId;

/// Why `send` did not queue a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendError {
    /// The peer's queue holds its most frames or bytes already; the frame was not
    /// queued (and is counted as dropped).
    Full {
        /// Frames in the queue.
        frames_queued: usize,
        /// Their bytes, as the queue counts them (payload plus 16 per frame).
        bytes_queued: u64,
    },
    /// Not a peer of this node (or this node itself).
    UnknownPeer(NodeId),
    /// Kind 0 is the hello's.
    ReservedKind,
    /// The payload is over `frame_bytes_max`.
    TooLarge {
        payload_bytes: u64,
        frame_bytes_max: u32,
    },
    /// The transport is closed.
    Closed,
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::Full {
                frames_queued,
                bytes_queued,
            } => write!(
                f,
                "the peer's queue is full ({frames_queued} frames, {bytes_queued} bytes)"
            ),
            SendError::UnknownPeer(peer) => write!(f, "node {peer} is not a peer"),
            SendError::ReservedKind => write!(f, "frame kind {KIND_HELLO} is reserved"),
            SendError::TooLarge {
                payload_bytes,
                frame_bytes_max,
            } => write!(
                f,
                "a payload of {payload_bytes} bytes is over the frame limit of {frame_bytes_max}"
            ),
            SendError::Closed => write!(f, "the cluster transport is closed"),
        }
    }
}

/// One queued frame.
pub(crate) struct OutFrame {
    kind: u8,
    payload: Bytes,
}

impl OutFrame {
    /// What the frame counts in the queue's byte budget.
    fn cost(&self) -> u64 {
        self.payload.len() as u64 + FRAME_OVERHEAD_BYTES
    }
}

/// `send`'s end of one peer's queue.
pub(crate) struct PeerQueue {
    sender: Sender<OutFrame>,
    bytes_queued: Rc<Cell<u64>>,
    bytes_max: u64,
    counters: Rc<PeerCounters>,
}

impl PeerQueue {
    /// Queues a frame if the frame and byte bounds allow; never waits.
    pub(crate) fn push(&self, kind: u8, payload: Bytes) -> Result<(), SendError> {
        let frame = OutFrame { kind, payload };
        let cost = frame.cost();
        let full = SendError::Full {
            frames_queued: self.sender.len(),
            bytes_queued: self.bytes_queued.get(),
        };
        if self.bytes_queued.get() + cost > self.bytes_max {
            self.counters.update(|stats| stats.frames_dropped += 1);
            return Err(full);
        }
        match self.sender.try_send(frame) {
            Ok(()) => {
                self.bytes_queued.set(self.bytes_queued.get() + cost);
                Ok(())
            }
            Err(TrySendError::Full(_)) => {
                self.counters.update(|stats| stats.frames_dropped += 1);
                Err(full)
            }
            Err(TrySendError::Closed(_)) => Err(SendError::Closed),
        }
    }

    /// Closes the queue; the frames still in it are counted as lost.
    pub(crate) fn close(&self) {
        let frames_queued = self.sender.len() as u64;
        self.sender.close();
        self.counters
            .update(|stats| stats.frames_lost += frames_queued);
    }
}

/// The writer of one peer, on one shard.
pub(crate) struct Writer {
    shared: Arc<NetShared>,
    shard: u16,
    peer: Peer,
    receiver: Receiver<OutFrame>,
    bytes_queued: Rc<Cell<u64>>,
    counters: Rc<PeerCounters>,
    /// Frames gathered for the next write: less than two batches' worth plus a header.
    buf: Vec<u8>,
    /// Frames and payload bytes taken from the queue and not yet written.
    pending_frames: u64,
    pending_bytes: u64,
}

/// A queue for `peer` and the writer that drains it.
pub(crate) fn peer_queue(
    shared: &Arc<NetShared>,
    shard: u16,
    peer: Peer,
    counters: Rc<PeerCounters>,
) -> (PeerQueue, Writer) {
    let limits = shared.limits;
    let (sender, receiver) = async_channel::bounded(limits.peer_queue_frames_max);
    let bytes_queued = Rc::new(Cell::new(0));
    let queue = PeerQueue {
        sender,
        bytes_queued: bytes_queued.clone(),
        bytes_max: limits.peer_queue_bytes_max,
        counters: counters.clone(),
    };
    let writer = Writer {
        shared: shared.clone(),
        shard,
        peer,
        receiver,
        bytes_queued,
        counters,
        buf: Vec::with_capacity(2 * limits.write_batch_bytes_max + FRAME_HEADER_BYTES),
        pending_frames: 0,
        pending_bytes: 0,
    };
    (queue, writer)
}

impl Writer {
    /// Connects, drains, reconnects after a failure, until the queue closes.
    pub(crate) async fn run(mut self) {
        let limits = self.shared.limits;
        let mut backoff = Backoff::new(limits.backoff_ms_min, limits.backoff_ms_max);
        // Runs until the queue closes; each pass is one connection.
        loop {
            let Some(mut stream) = self.connect(&mut backoff).await else {
                return;
            };
            match self.drain(&mut stream).await {
                Ok(()) => return,
                Err(error) => {
                    let lost = self.pending_frames;
                    self.counters.update(|stats| {
                        stats.disconnects += 1;
                        stats.frames_lost += lost;
                    });
                    self.buf.clear();
                    self.pending_frames = 0;
                    self.pending_bytes = 0;
                    log(&format!(
                        "{}: connection to node {} broke ({lost} frames lost): {error}",
                        self.name(),
                        self.peer.id
                    ));
                }
            }
        }
    }

    /// This writer's side in log lines.
    fn name(&self) -> String {
        format!("node {} shard {}", self.shared.identity.node_id, self.shard)
    }

    /// Tries until connected (`Some`) or the queue is closed (`None`), pausing by the
    /// back-off between attempts. Logs the first failure of a series and the recovery.
    async fn connect(&mut self, backoff: &mut Backoff) -> Option<TcpStream> {
        let mut failures = 0u64;
        // Bounded per attempt by the connect and handshake timeouts; the attempts go on
        // while the transport is open, a back-off apart.
        loop {
            if self.receiver.is_closed() {
                return None;
            }
            match self.connect_once().await {
                Ok(stream) => {
                    backoff.reset();
                    self.connect_count(failures);
                    return Some(stream);
                }
                Err(error) => {
                    self.counters.update(|stats| stats.connect_failures += 1);
                    if failures == 0 {
                        log(&format!(
                            "{}: cannot reach node {} at {} (retrying): {error}",
                            self.name(),
                            self.peer.id,
                            self.peer.address
                        ));
                    }
                    failures += 1;
                    let pause = Duration::from_millis(backoff.next_ms());
                    glommio::timer::sleep(pause).await;
                }
            }
        }
    }

    fn connect_count(&self, failures: u64) {
        self.counters.update(|stats| {
            stats.connects += 1;
            if stats.connects > 1 {
                stats.reconnects += 1;
            }
        });
        if failures > 0 || self.counters.get().connects > 1 {
            log(&format!(
                "{}: connected to node {} at {}",
                self.name(),
                self.peer.id,
                self.peer.address
            ));
        }
    }

    /// One attempt: TCP connect, our hello, the peer's answer, checked.
    async fn connect_once(&self) -> Result<TcpStream, HandshakeError> {
        let limits = self.shared.limits;
        let address = self.peer.address;
        let mut stream = within(limits.connect_timeout_ms, "connecting", async {
            TcpStream::connect(address).await.map_err(io::Error::from)
        })
        .await?;
        stream.set_nodelay(true).map_err(io::Error::from)?;
        let hello = self.shared.identity.hello(self.shard).encode();
        let reply = within(limits.handshake_timeout_ms, "the hello exchange", async {
            stream.write_all(&hello).await?;
            Ok(read_hello(&mut stream).await)
        })
        .await??;
        self.shared
            .identity
            .check_reply(&reply, self.peer.id, self.shard)
            .map_err(HandshakeError::Hello)?;
        Ok(stream)
    }

    /// Writes queued frames while connected: waits for one, gathers what else is queued
    /// up to a batch, writes. `Ok` when the queue closed, `Err` when a write failed.
    async fn drain(&mut self, stream: &mut TcpStream) -> io::Result<()> {
        let batch_bytes_max = self.shared.limits.write_batch_bytes_max;
        // Runs while the connection lasts: one write (batch) per pass.
        loop {
            let first = match self.receiver.try_recv() {
                Ok(frame) => frame,
                Err(_) => match self.drain_wait(stream).await? {
                    Some(frame) => frame,
                    None => return Ok(()),
                },
            };
            self.drain_push(stream, first).await?;
            while self.buf.len() < batch_bytes_max {
                let Ok(frame) = self.receiver.try_recv() else {
                    break;
                };
                self.drain_push(stream, frame).await?;
            }
            self.drain_flush(stream).await?;
        }
    }

    /// Waits for a frame (`None`: the queue closed) while watching the idle connection.
    /// The peer never writes after its hello, so anything readable is its close (or a
    /// broken protocol): the writer then reconnects at once instead of losing the next
    /// batch to a dead socket.
    async fn drain_wait(&self, stream: &TcpStream) -> io::Result<Option<OutFrame>> {
        let queued = async { Ok(self.receiver.recv().await.ok()) };
        let closed = async {
            let mut byte = [0u8; 1];
            let read = stream.peek(&mut byte).await.map_err(io::Error::from)?;
            Err(if read == 0 {
                io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the peer closed the connection",
                )
            } else {
                io::Error::new(io::ErrorKind::InvalidData, "the peer wrote after its hello")
            })
        };
        futures_lite::future::or(queued, closed).await
    }

    /// Adds a frame to the batch; a large payload is written at once, from where it is,
    /// after what the batch gathered so far.
    async fn drain_push(&mut self, stream: &mut TcpStream, frame: OutFrame) -> io::Result<()> {
        let cost = frame.cost();
        assert!(self.bytes_queued.get() >= cost, "queue bytes out of step");
        self.bytes_queued.set(self.bytes_queued.get() - cost);
        let header = encode_header(self.shard, frame.kind, &frame.payload)
            .expect("send checked the payload against the frame limit");
        self.pending_frames += 1;
        self.pending_bytes += frame.payload.len() as u64;
        self.buf.extend_from_slice(&header);
        if frame.payload.len() < self.shared.limits.write_batch_bytes_max {
            self.buf.extend_from_slice(&frame.payload);
            return Ok(());
        }
        stream.write_all(&self.buf).await?;
        self.buf.clear();
        stream.write_all(&frame.payload).await?;
        self.drain_flush(stream).await
    }

    /// Writes the batch and counts its frames as sent.
    async fn drain_flush(&mut self, stream: &mut TcpStream) -> io::Result<()> {
        if !self.buf.is_empty() {
            stream.write_all(&self.buf).await?;
            self.buf.clear();
        }
        let (frames, bytes) = (self.pending_frames, self.pending_bytes);
        self.counters.update(|stats| {
            stats.frames_sent += frames;
            stats.bytes_sent += bytes;
        });
        self.pending_frames = 0;
        self.pending_bytes = 0;
        Ok(())
    }
}
