//! The receiving side of a shard: one reader per inbound connection, and the bounded
//! queue that hands what they read to the shard's consumer.
//!
//! Backpressure: a reader takes a frame's share of the byte budget
//! (`inbound_bytes_max`) and a place in the queue (`inbound_frames_max`) before it reads
//! on; while either is short it waits and leaves the rest in its socket, so TCP's window
//! slows the peer down. The budget is given back when the consumer drops the
//! [`Inbound`] (or takes its parts).

use std::io;
use std::rc::Rc;

use async_channel::{Receiver, Sender};
use bytes::Bytes;
use futures_lite::AsyncReadExt;
use glommio::net::TcpStream;
use glommio::sync::{Semaphore, StaticPermit};
use sluice_core::frame::{DecodeError, Frame, FrameDecoder};

use super::hello::KIND_HELLO;
use super::limits::{TransportLimits, FRAME_OVERHEAD_BYTES};
use super::stats::PeerCounters;
use super::NodeId;

/// One frame a peer sent this shard. Holds its share of the receive budget until
/// dropped.
#[derive(Debug)]
pub struct Inbound {
    /// The node that sent it.
    pub peer: NodeId,
    /// The frame's kind, as the sender passed it to `send`.
    pub kind: u8,
    /// The frame's payload, verified by its checksum.
    pub payload: Bytes,
    budget: StaticPermit,
}

impl Inbound {
    /// The sender, the kind and the payload; gives the frame's budget back.
    pub fn into_parts(self) -> (NodeId, u8, Bytes) {
        drop(self.budget);
        (self.peer, self.kind, self.payload)
    }
}

/// Where a shard's consumer takes the frames its peers sent, in the order each
/// connection delivered them. Ends (`None`) when the transport closes.
pub struct InboundReceiver {
    receiver: Receiver<Inbound>,
}

impl InboundReceiver {
    /// The next frame; waits for one. `None` once the transport has closed.
    pub async fn recv(&self) -> Option<Inbound> {
        self.receiver.recv().await.ok()
    }

    /// The next frame if one is waiting (to drain what is ready in one step).
    pub fn try_recv(&self) -> Option<Inbound> {
        self.receiver.try_recv().ok()
    }

    /// Frames waiting.
    pub fn len(&self) -> usize {
        self.receiver.len()
    }

    /// Whether no frame is waiting.
    pub fn is_empty(&self) -> bool {
        self.receiver.is_empty()
    }
}

/// The readers' end of the receive queue.
pub(crate) struct InboundSink {
    sender: Sender<Inbound>,
    budget: Rc<Semaphore>,
}

impl InboundSink {
    /// A queue bounded by `limits`, and its consumer's end.
    pub(crate) fn new(limits: &TransportLimits) -> (InboundSink, InboundReceiver) {
        let (sender, receiver) = async_channel::bounded(limits.inbound_frames_max);
        let sink = InboundSink {
            sender,
            budget: Rc::new(Semaphore::new(limits.inbound_bytes_max)),
        };
        (sink, InboundReceiver { receiver })
    }

    /// Ends the queue: readers stop, the consumer gets what is queued, then `None`.
    pub(crate) fn close(&self) {
        self.sender.close();
        self.budget.close();
    }

    /// Queues one frame, waiting for budget and room; `false` once the queue is closed.
    async fn deliver(&self, peer: NodeId, frame: Frame) -> bool {
        let cost = frame.payload.len() as u64 + FRAME_OVERHEAD_BYTES;
        let Ok(budget) = self.budget.acquire_static_permit(cost).await else {
            return false;
        };
        let inbound = Inbound {
            peer,
            kind: frame.kind,
            payload: Bytes::from(frame.payload),
            budget,
        };
        self.sender.send(inbound).await.is_ok()
    }
}

/// Why an inbound connection was closed.
#[derive(Debug)]
pub(crate) enum InboundError {
    Io(io::Error),
    Frame(DecodeError),
    /// A frame for another shard than the one the hello named.
    WrongChannel {
        channel: u16,
        shard: u16,
    },
    /// A second hello, or a frame of the hello's reserved kind.
    UnexpectedHello,
}

impl InboundError {
    /// Whether the peer broke the protocol (rather than the connection breaking).
    pub(crate) fn is_protocol(&self) -> bool {
        !matches!(self, InboundError::Io(_))
    }
}

impl std::fmt::Display for InboundError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InboundError::Io(error) => write!(f, "{error}"),
            InboundError::Frame(error) => write!(f, "{error}"),
            InboundError::WrongChannel { channel, shard } => {
                write!(
                    f,
                    "a frame for shard {channel} on shard {shard}'s connection"
                )
            }
            InboundError::UnexpectedHello => write!(f, "a hello after the hello"),
        }
    }
}

/// Reads one connection's frames into `sink` until the peer closes it cleanly (`Ok`),
/// the sink closes (`Ok`) or something is wrong with it (`Err`; close it).
pub(crate) async fn read_frames(
    stream: &mut TcpStream,
    peer: NodeId,
    shard: u16,
    limits: &TransportLimits,
    sink: &InboundSink,
    counters: &PeerCounters,
) -> Result<(), InboundError> {
    let mut decoder = FrameDecoder::new(limits.frame_bytes_max);
    // Runs for the connection's life: one socket read per pass.
    loop {
        let spare = decoder.spare();
        assert!(
            !spare.is_empty(),
            "every whole frame was taken before reading on"
        );
        let read = stream.read(spare).await.map_err(InboundError::Io)?;
        if read == 0 {
            return decoder.finish().map_err(InboundError::Frame);
        }
        decoder.commit(read);
        while let Some(frame) = decoder.next_frame().map_err(InboundError::Frame)? {
            if frame.channel != shard {
                return Err(InboundError::WrongChannel {
                    channel: frame.channel,
                    shard,
                });
            }
            if frame.kind == KIND_HELLO {
                return Err(InboundError::UnexpectedHello);
            }
            let payload_bytes = frame.payload.len() as u64;
            if !sink.deliver(peer, frame).await {
                return Ok(());
            }
            counters.update(|stats| {
                stats.frames_received += 1;
                stats.bytes_received += payload_bytes;
            });
        }
    }
}
