//! Carries Raft snapshot chunks between one shard and the same shard of its peers (the
//! kernel's `engine/raft_snapshot.rs` does the rest): a follower's request
//! ([`KIND_SNAPSHOT_REQUEST`]) goes to the leader its engine names, the leader's engine
//! reads the chunk and its answer ([`KIND_SNAPSHOT_CHUNK`]) comes back to the follower's
//! engine, which stages it and asks for the next one at once.
//!
//! The glommio server (`server/src/replication.rs`, over its TCP cluster transport) and
//! the madsim cluster simulation (`sim/src/cluster.rs`, over `madsim::net`) both run this
//! code; they provide a [`SnapshotLink`] (the sending of one frame to a peer, a task of
//! its own) and find the engines through their [`RaftHost`].
//!
//! A payload is the partition (u32, little-endian) then the kernel's encoding of the
//! request or the answer. Nothing here retries or waits: a frame the link refuses, one
//! that does not decode, or a request beyond [`SNAPSHOT_SERVING_MAX`] is dropped and the
//! follower's engine asks again after its wait (Raft ticks); bad bytes in an answer give
//! the install up (the leader offers a new snapshot later), never a panic.

use std::cell::Cell;
use std::future::Future;
use std::rc::Rc;

use sluice_core::engine::Engine;
use sluice_core::replica::snapshot::{decode_answer, encode_answer, ChunkRequest};
use sluice_core::storage::Storage;

use crate::replication::{RaftHost, SendRefused};

/// The frame kind of a follower's chunk request.
pub const KIND_SNAPSHOT_REQUEST: u8 = 4;
/// The frame kind of a leader's answer.
pub const KIND_SNAPSHOT_CHUNK: u8 = 5;
/// Chunk reads a shard serves at once, and answers it stages at once (each holds up to
/// a chunk in memory); frames beyond are dropped and asked again.
pub const SNAPSHOT_SERVING_MAX: usize = 4;
/// Bytes of the partition number in front of each payload.
const PARTITION_PREFIX_BYTES: usize = 4;

/// What a carrier needs of the program running one shard: its transport and its tasks.
pub trait SnapshotLink: 'static {
    /// Sends one payload of `kind` ([`KIND_SNAPSHOT_REQUEST`] or [`KIND_SNAPSHOT_CHUNK`])
    /// to the same shard of node `to`, without waiting.
    fn send_snapshot(&self, to: u64, kind: u8, payload: Vec<u8>) -> Result<(), SendRefused>;

    /// Runs `task` as a task of its own on this shard, to its end (or until the shard's
    /// runtime ends).
    fn spawn(&self, task: impl Future<Output = ()> + 'static);

    /// A chunk of `partition`'s snapshot was staged; `accepted`: it was the last one and
    /// raft-rs took the snapshot (the engine's next Ready installs it). The simulation
    /// counts them.
    fn chunk_staged(&self, partition: u32, accepted: bool) {
        let _ = (partition, accepted);
    }
}

/// One shard's carrying of snapshot chunks.
pub struct SnapshotCarrier<L: SnapshotLink> {
    link: L,
    serving: Cell<usize>,
    installing: Cell<usize>,
    /// Frames dropped: undecodable, for a partition this shard does not hold, over the
    /// serving bound, or refused by the link.
    dropped: Cell<u64>,
}

/// Which bound a [`Slot`] counts against.
type SlotCounter<L> = fn(&SnapshotCarrier<L>) -> &Cell<usize>;

/// Frees one serving (or installing) slot however the task ends.
struct Slot<L: SnapshotLink> {
    carrier: Rc<SnapshotCarrier<L>>,
    counter: SlotCounter<L>,
}

impl<L: SnapshotLink> Slot<L> {
    /// Takes a slot of `counter`, if one is free; otherwise counts a dropped frame.
    fn take(carrier: &Rc<SnapshotCarrier<L>>, counter: SlotCounter<L>) -> Option<Slot<L>> {
        let cell = counter(carrier);
        if cell.get() >= SNAPSHOT_SERVING_MAX {
            carrier.drop_one();
            return None;
        }
        cell.set(cell.get() + 1);
        Some(Slot {
            carrier: carrier.clone(),
            counter,
        })
    }
}

impl<L: SnapshotLink> Drop for Slot<L> {
    fn drop(&mut self) {
        let cell = (self.counter)(&self.carrier);
        cell.set(cell.get() - 1);
    }
}

/// The partition and an encoded request or answer as one payload.
fn framed(partition: u32, body: &[u8]) -> Vec<u8> {
    let mut payload = Vec::with_capacity(PARTITION_PREFIX_BYTES + body.len());
    payload.extend_from_slice(&partition.to_le_bytes());
    payload.extend_from_slice(body);
    payload
}

/// A payload as partition and body; `None` when it is too short.
fn unframed(payload: &[u8]) -> Option<(u32, &[u8])> {
    let prefix = payload.get(..PARTITION_PREFIX_BYTES)?;
    let partition = u32::from_le_bytes(prefix.try_into().ok()?);
    Some((partition, &payload[PARTITION_PREFIX_BYTES..]))
}

impl<L: SnapshotLink> SnapshotCarrier<L> {
    /// A carrier over `link`, serving and staging nothing yet.
    pub fn new(link: L) -> SnapshotCarrier<L> {
        SnapshotCarrier {
            link,
            serving: Cell::new(0),
            installing: Cell::new(0),
            dropped: Cell::new(0),
        }
    }

    /// The link the carrier sends over.
    pub fn link(&self) -> &L {
        &self.link
    }

    /// Frames dropped so far (see the module's documentation).
    pub fn dropped(&self) -> u64 {
        self.dropped.get()
    }

    fn drop_one(&self) {
        self.dropped.set(self.dropped.get() + 1);
    }

    /// Sends the chunk request `engine` (of `partition`) wants next, if any.
    pub fn request_next<S: Storage + Clone + 'static>(&self, partition: u32, engine: &Engine<S>) {
        let Some((leader, request)) = engine.snapshot_wanted() else {
            return;
        };
        let payload = framed(partition, &request.encode());
        if self
            .link
            .send_snapshot(leader, KIND_SNAPSHOT_REQUEST, payload)
            .is_err()
        {
            self.drop_one();
        }
    }

    /// Handles a payload of the snapshot kinds from node `peer`, finding its engine
    /// through `host`; answers false for other kinds (the payload is not this carrier's).
    pub fn receive<H: RaftHost>(
        self: &Rc<Self>,
        host: &H,
        peer: u64,
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
        let Some(engine) = host.raft_engine(partition) else {
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

    /// Reads the chunk `peer` asks for in a task of its own and sends the answer back.
    fn serve<S: Storage + Clone + 'static>(
        self: &Rc<Self>,
        engine: Rc<Engine<S>>,
        partition: u32,
        peer: u64,
        body: &[u8],
    ) {
        let Ok(request) = ChunkRequest::decode(body) else {
            self.drop_one();
            return;
        };
        let Some(slot) = Slot::take(self, |carrier| &carrier.serving) else {
            return;
        };
        self.link.spawn(async move {
            let answer = engine.snapshot_chunk(peer, &request).await;
            let payload = framed(partition, &encode_answer(&answer));
            let carrier = &slot.carrier;
            if carrier
                .link
                .send_snapshot(peer, KIND_SNAPSHOT_CHUNK, payload)
                .is_err()
            {
                carrier.drop_one();
            }
        });
    }

    /// Stages the answer of `peer` in a task of its own, then asks for the next chunk.
    fn install<S: Storage + Clone + 'static>(
        self: &Rc<Self>,
        engine: Rc<Engine<S>>,
        partition: u32,
        peer: u64,
        body: &[u8],
    ) {
        let Some(slot) = Slot::take(self, |carrier| &carrier.installing) else {
            return;
        };
        let answer = decode_answer(body);
        self.link.spawn(async move {
            // A refused chunk (late, duplicate) changes nothing; a failure gives the
            // install up. Either way the engine says what it wants next.
            if engine.install_chunk(peer, answer).await.is_ok() {
                // Read before any await: the last chunk ends the pull, and an accepted
                // snapshot waits for the Ready started below.
                let accepted = !engine.pulling_snapshot() && engine.installing_snapshot();
                slot.carrier.link.chunk_staged(partition, accepted);
            }
            engine.drive().await;
            slot.carrier.request_next(partition, &engine);
        });
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::pin::Pin;

    use sluice_core::engine::types::EngineError;
    use sluice_core::engine::EngineLimits;
    use sluice_core::sim_disk::{block_on, SimDisk};

    use super::*;

    /// A link that records what it sends and holds the tasks until the test runs them.
    #[derive(Default)]
    struct HeldLink {
        sent: RefCell<Vec<(u64, u8, Vec<u8>)>>,
        tasks: RefCell<Vec<Pin<Box<dyn Future<Output = ()>>>>>,
        refuse: Cell<bool>,
    }

    impl SnapshotLink for Rc<HeldLink> {
        fn send_snapshot(&self, to: u64, kind: u8, payload: Vec<u8>) -> Result<(), SendRefused> {
            if self.refuse.get() {
                return Err(SendRefused::Full);
            }
            self.sent.borrow_mut().push((to, kind, payload));
            Ok(())
        }

        fn spawn(&self, task: impl Future<Output = ()> + 'static) {
            self.tasks.borrow_mut().push(Box::pin(task));
        }
    }

    impl HeldLink {
        /// Runs every held task to its end.
        fn run_tasks(&self) {
            let tasks: Vec<_> = self.tasks.borrow_mut().drain(..).collect();
            for task in tasks {
                block_on(task);
            }
        }
    }

    /// One partition (0) on one engine that leads no Raft group.
    struct OneEngine(Rc<Engine<SimDisk>>);

    impl RaftHost for OneEngine {
        type Storage = SimDisk;

        fn raft_engine(&self, partition: u32) -> Option<Rc<Engine<SimDisk>>> {
            (partition == 0).then(|| self.0.clone())
        }

        fn drive_soon(&self, _engine: Rc<Engine<SimDisk>>) {}

        fn send_raft(&self, _to: u64, _payload: Vec<u8>) -> Result<(), SendRefused> {
            Ok(())
        }

        async fn sleep_ms(&self, _ms: u64) {}

        fn failed(&self, _partition: u32, _error: &EngineError) {}
    }

    fn one_engine() -> OneEngine {
        let config = crate::tests::engine_config(EngineLimits::dms());
        OneEngine(Rc::new(
            block_on(Engine::open(SimDisk::new(1), config, 1_000)).expect("opens"),
        ))
    }

    fn request() -> Vec<u8> {
        let request = ChunkRequest {
            index: 9,
            term: 2,
            section: sluice_core::replica::snapshot::Section::Engine,
            position: 0,
            bytes_max: 1024,
        };
        framed(0, &request.encode())
    }

    #[test]
    fn payloads_carry_their_partition_and_short_ones_do_not_decode() {
        let payload = framed(7, b"body");
        assert_eq!(unframed(&payload), Some((7, &b"body"[..])));
        assert_eq!(unframed(&[1, 2]), None);
    }

    #[test]
    fn requests_beyond_the_serving_bound_are_dropped_until_a_slot_frees() {
        let host = one_engine();
        let link = Rc::new(HeldLink::default());
        let carrier = Rc::new(SnapshotCarrier::new(link.clone()));
        for _ in 0..SNAPSHOT_SERVING_MAX + 1 {
            assert!(carrier.receive(&host, 3, KIND_SNAPSHOT_REQUEST, &request()));
        }
        assert_eq!(link.tasks.borrow().len(), SNAPSHOT_SERVING_MAX);
        assert_eq!(carrier.dropped(), 1);

        // Each served request answers its peer (no transfer is under way here: the
        // answer says so) on the same partition; the slots are free again after.
        link.run_tasks();
        let sent = link.sent.borrow().clone();
        assert_eq!(sent.len(), SNAPSHOT_SERVING_MAX);
        for (to, kind, payload) in &sent {
            assert_eq!((*to, *kind), (3, KIND_SNAPSHOT_CHUNK));
            let (partition, body) = unframed(payload).expect("framed");
            assert_eq!(partition, 0);
            assert!(decode_answer(body).is_err());
        }
        assert!(carrier.receive(&host, 3, KIND_SNAPSHOT_REQUEST, &request()));
        assert_eq!(link.tasks.borrow().len(), 1);

        // An answer the link refuses is counted.
        link.refuse.set(true);
        link.run_tasks();
        assert_eq!(carrier.dropped(), 2);
    }

    #[test]
    fn bad_frames_are_dropped_and_other_kinds_left_alone() {
        let host = one_engine();
        let link = Rc::new(HeldLink::default());
        let carrier = Rc::new(SnapshotCarrier::new(link.clone()));
        assert!(!carrier.receive(&host, 2, 1, &request()));
        assert_eq!(carrier.dropped(), 0);
        // Too short, another partition, an undecodable request.
        assert!(carrier.receive(&host, 2, KIND_SNAPSHOT_REQUEST, &[0, 0]));
        let mut elsewhere = request();
        elsewhere[0] = 5;
        assert!(carrier.receive(&host, 2, KIND_SNAPSHOT_CHUNK, &elsewhere));
        assert!(carrier.receive(&host, 2, KIND_SNAPSHOT_REQUEST, &framed(0, b"junk")));
        assert_eq!(carrier.dropped(), 3);
        assert!(link.tasks.borrow().is_empty());
        // An answer nobody asked for is staged in a task and refused by the engine;
        // the engine then wants nothing, so nothing is sent.
        assert!(carrier.receive(&host, 2, KIND_SNAPSHOT_CHUNK, &framed(0, b"junk")));
        link.run_tasks();
        assert!(link.sent.borrow().is_empty());
        assert_eq!(carrier.dropped(), 3);
    }
}
