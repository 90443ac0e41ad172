//! Carries Raft snapshot chunks between this shard and its peers (the kernel's
//! `engine/raft_snapshot.rs` does the rest): a follower's request ([`KIND_SNAPSHOT_REQUEST`])
//! goes to the leader its engine names, the leader's engine reads the chunk and its
//! answer ([`KIND_SNAPSHOT_CHUNK`]) comes back to the follower's engine, which stages it
//! and asks for the next one at once.
//!
//! A payload is the partition (u32, little-endian) then the kernel's encoding of the
//! request or the answer. Nothing here retries or waits: a frame the transport refuses,
//! one that does not decode, or a request beyond [`SNAPSHOT_SERVING_MAX`] is dropped and
//! the follower's engine asks again after its wait (Raft ticks); bad bytes in an answer
//! give the install up (the leader offers a new snapshot later), never a panic.

use std::cell::Cell;
use std::rc::Rc;

use bytes::Bytes;
use sluice_core::replica::snapshot::{decode_answer, encode_answer, ChunkRequest};

use crate::cluster::{ClusterTransport, NodeId};
use crate::shard::{PartitionEngine, Shard};

/// The frame kind of a follower's chunk request.
pub const KIND_SNAPSHOT_REQUEST: u8 = 4;
/// The frame kind of a leader's answer.
pub const KIND_SNAPSHOT_CHUNK: u8 = 5;
/// Chunk reads a shard serves at once, and answers it stages at once (each holds up to
/// a chunk in memory); frames beyond are dropped and asked again.
pub const SNAPSHOT_SERVING_MAX: usize = 4;
/// Bytes of the partition number in front of each payload.
const PARTITION_PREFIX_BYTES: usize = 4;

/// One shard's carrying of snapshot chunks.
pub struct SnapshotCarrier {
    transport: Rc<ClusterTransport>,
    serving: Cell<usize>,
    installing: Cell<usize>,
    /// Frames dropped: undecodable, for a partition this shard does not hold, over the
    /// serving bound, or refused by the transport.
    pub dropped: Cell<u64>,
}

/// Frees one serving (or installing) slot however the task ends.
struct Slot(Rc<SnapshotCarrier>, fn(&SnapshotCarrier) -> &Cell<usize>);

impl Slot {
    /// Takes a slot of `counter`, if one is free.
    fn take(
        carrier: &Rc<SnapshotCarrier>,
        counter: fn(&SnapshotCarrier) -> &Cell<usize>,
    ) -> Option<Slot> {
        let cell = counter(carrier);
        if cell.get() >= SNAPSHOT_SERVING_MAX {
            carrier.drop_one();
            return None;
        }
        cell.set(cell.get() + 1);
        Some(Slot(carrier.clone(), counter))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let cell = (self.1)(&self.0);
        cell.set(cell.get() - 1);
    }
}

fn framed(partition: u32, body: &[u8]) -> Bytes {
    let mut payload = Vec::with_capacity(PARTITION_PREFIX_BYTES + body.len());
    payload.extend_from_slice(&partition.to_le_bytes());
    payload.extend_from_slice(body);
    Bytes::from(payload)
}

fn unframed(payload: &[u8]) -> Option<(u32, &[u8])> {
    let prefix = payload.get(..PARTITION_PREFIX_BYTES)?;
    let partition = u32::from_le_bytes(prefix.try_into().ok()?);
    Some((partition, &payload[PARTITION_PREFIX_BYTES..]))
}

impl SnapshotCarrier {
    pub fn new(transport: Rc<ClusterTransport>) -> SnapshotCarrier {
        SnapshotCarrier {
            transport,
            serving: Cell::new(0),
            installing: Cell::new(0),
            dropped: Cell::new(0),
        }
    }

    fn drop_one(&self) {
        self.dropped.set(self.dropped.get() + 1);
    }

    /// Sends the chunk request `engine` (of `partition`) wants next, if any.
    pub fn request_next(&self, partition: u32, engine: &PartitionEngine) {
        let Some((leader, request)) = engine.snapshot_wanted() else {
            return;
        };
        let payload = framed(partition, &request.encode());
        if self
            .transport
            .send(NodeId(leader), KIND_SNAPSHOT_REQUEST, payload)
            .is_err()
        {
            self.drop_one();
        }
    }

    /// Handles a frame of the snapshot kinds from `peer`; answers false for other kinds.
    pub fn receive(
        self: &Rc<Self>,
        shard: &Rc<Shard>,
        peer: NodeId,
        kind: u8,
        payload: &[u8],
    ) -> bool {
        if kind != KIND_SNAPSHOT_REQUEST && kind != KIND_SNAPSHOT_CHUNK {
            return false;
        }
        let Some((partition, body)) = unframed(payload) else {
            self.drop_one();
            return true;
        };
        let Some(engine) = shard.owned_engine(partition) else {
            self.drop_one();
            return true;
        };
        if kind == KIND_SNAPSHOT_REQUEST {
            self.serve(engine, partition, peer, body);
        } else {
            self.install(engine, partition, peer, body);
        }
        true
    }

    fn serve(
        self: &Rc<Self>,
        engine: Rc<PartitionEngine>,
        partition: u32,
        peer: NodeId,
        body: &[u8],
    ) {
        let Ok(request) = ChunkRequest::decode(body) else {
            self.drop_one();
            return;
        };
        let Some(slot) = Slot::take(self, |carrier| &carrier.serving) else {
            return;
        };
        glommio::spawn_local(async move {
            let answer = engine.snapshot_chunk(peer.0, &request).await;
            let payload = framed(partition, &encode_answer(&answer));
            let carrier = &slot.0;
            if carrier
                .transport
                .send(peer, KIND_SNAPSHOT_CHUNK, payload)
                .is_err()
            {
                carrier.drop_one();
            }
        })
        .detach();
    }

    fn install(
        self: &Rc<Self>,
        engine: Rc<PartitionEngine>,
        partition: u32,
        peer: NodeId,
        body: &[u8],
    ) {
        let Some(slot) = Slot::take(self, |carrier| &carrier.installing) else {
            return;
        };
        let answer = decode_answer(body);
        glommio::spawn_local(async move {
            // A refused chunk (late, duplicate) changes nothing; a failure gives the
            // install up. Either way the engine says what it wants next.
            let _ = engine.install_chunk(peer.0, answer).await;
            engine.drive().await;
            slot.0.request_next(partition, &engine);
        })
        .detach();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_carry_their_partition_and_short_ones_do_not_decode() {
        let payload = framed(7, b"body");
        assert_eq!(unframed(&payload), Some((7, &b"body"[..])));
        assert_eq!(unframed(&[1, 2]), None);
    }
}
