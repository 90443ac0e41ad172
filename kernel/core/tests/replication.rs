//! Three engines as replicas of one Raft group, on simulated disks, with the messages
//! between them carried by the test (and cut where a test partitions the network).
//! `chaos` runs seeded fault schedules against Raft's safety checks; `bug_sweep` (under
//! `--cfg madsim`) proves each deliberate Raft bug is caught.

#[cfg(madsim)]
#[path = "replication/bug_sweep.rs"]
mod bug_sweep;
#[path = "replication/chaos.rs"]
mod chaos;

use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::future::Future;
use std::pin::pin;

use futures_lite::future::{block_on, poll_once};
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64;
use sluice_core::engine::membership::{MembershipStep, Refusal};
use sluice_core::engine::types::*;
use sluice_core::engine::Engine;
use sluice_core::engine::{EngineConfig, EngineLimits, ReceiveRequest};
use sluice_core::log::ReadRecord;
use sluice_core::log::{LogConfig, VerifyOnOpen};
use sluice_core::replica::snapshot::{Chunk, ChunkRequest};
use sluice_core::replica::Message;
use sluice_core::replica::ReplicaConfig;
use sluice_core::sim_disk::SimDisk;
use sluice_core::storage::IoErrorKind;
use sluice_core::Offset;

const START_MS: u64 = 1_000_000;
const TICK_MS: u64 = 100;
/// Pump rounds a test waits for something before it calls it stuck.
const ROUNDS_MAX: u32 = 2_000;
/// The chunk size the test's hosts ask for.
const CHUNK_BYTES_TEST: u32 = 16 * 1024;

fn config() -> EngineConfig {
    EngineConfig {
        log: LogConfig {
            segment_bytes_max: 64 * 1024,
            index_interval_bytes: 4096,
            preallocate_bytes: 64 * 1024,
            verify_on_open: VerifyOnOpen::Tail,
            cache_bytes_max: sluice_core::limits::LOG_CACHE_BYTES_DEFAULT,
            recycle_segments_max: sluice_core::limits::LOG_RECYCLE_SEGMENTS_DEFAULT,
        },
        limits: EngineLimits::dms(),
        snapshot_every_records: 10_000,
    }
}

struct Cluster {
    /// Replicas `1..=genesis` are the group's first voters; the others start outside it
    /// (each with those voters as its initial configuration) until a membership change
    /// adds them.
    genesis: u64,
    disks: Vec<SimDisk>,
    engines: Vec<Option<Engine<SimDisk>>>,
    /// Directed links that drop everything: (from, to) replica ids.
    cut: RefCell<HashSet<(u64, u64)>>,
    now: Cell<u64>,
    /// Messages on the wire: delivered, reordered, dropped or duplicated by `faults`.
    wire: RefCell<Vec<Message>>,
    faults: Cell<Faults>,
    rng: RefCell<Pcg64>,
    /// The engines' `snapshot_every_records`.
    snapshot_every_records: u64,
}

/// How the network misbehaves, in percent per message and pump.
#[derive(Clone, Copy, Default)]
struct Faults {
    drop: u32,
    duplicate: u32,
    /// A message stays on the wire for a later pump (reordering).
    delay: u32,
}

impl Cluster {
    fn new(size: u64) -> Cluster {
        Cluster::seeded(size, size)
    }

    /// A cluster whose every choice (network faults, election timeouts) follows `seed`.
    fn seeded(size: u64, seed: u64) -> Cluster {
        Cluster::build(size, size, seed, config().snapshot_every_records)
    }

    /// `size` replicas of which the first `genesis` form the group.
    fn with_spares(genesis: u64, size: u64, seed: u64) -> Cluster {
        Cluster::build(genesis, size, seed, config().snapshot_every_records)
    }

    /// `size` replicas, the first `genesis` of them the group, whose engines snapshot
    /// every `snapshot_every_records`.
    fn build(genesis: u64, size: u64, seed: u64, snapshot_every_records: u64) -> Cluster {
        let disks: Vec<SimDisk> = (0..size).map(|i| SimDisk::new(100 + i)).collect();
        let mut cluster = Cluster {
            genesis,
            disks,
            engines: Vec::new(),
            cut: RefCell::new(HashSet::new()),
            now: Cell::new(START_MS),
            wire: RefCell::new(Vec::new()),
            faults: Cell::new(Faults::default()),
            rng: RefCell::new(Pcg64::seed_from_u64(seed)),
            snapshot_every_records,
        };
        for id in 1..=size {
            let engine = cluster.open(id);
            cluster.engines.push(Some(engine));
        }
        cluster
    }

    fn size(&self) -> u64 {
        self.disks.len() as u64
    }

    fn open(&self, id: u64) -> Engine<SimDisk> {
        let voters = (1..=self.genesis).collect();
        // A fixed election timeout drawn from the seeded generator (raft-rs's own draw is
        // not seeded, and a run must replay from its seed), distinct per replica so that
        // no two campaign in step forever.
        let timeout = 10 + self.rng.borrow_mut().gen_range(0..4) * self.size() + (id - 1);
        let timeout = usize::try_from(timeout).expect("small");
        let replica = ReplicaConfig {
            election_timeout_ticks: Some(timeout),
            ..ReplicaConfig::member(id, voters)
        };
        let disk = self.disks[(id - 1) as usize].clone();
        let config = EngineConfig {
            snapshot_every_records: self.snapshot_every_records,
            ..config()
        };
        block_on(Engine::open_replica(disk, config, replica, self.now.get()))
            .unwrap_or_else(|error| panic!("replica {id} does not reopen: {error:?}"))
    }

    fn engine(&self, id: u64) -> &Engine<SimDisk> {
        self.engines[(id - 1) as usize].as_ref().expect("running")
    }

    fn running(&self) -> impl Iterator<Item = &Engine<SimDisk>> {
        self.engines.iter().flatten()
    }

    /// Delivers the queued messages over the links that are up (through the faults) and
    /// lets every replica handle what arrived. Answers whether anything moved.
    fn pump(&self) -> bool {
        let mut moved = false;
        for engine in self.running() {
            let messages = engine.take_messages();
            moved |= !messages.is_empty();
            self.wire.borrow_mut().extend(messages);
        }
        let faults = self.faults.get();
        let in_flight = std::mem::take(&mut *self.wire.borrow_mut());
        moved |= !in_flight.is_empty();
        for message in in_flight {
            if self.chance(faults.delay) {
                self.wire.borrow_mut().push(message);
                continue;
            }
            if self.chance(faults.drop) {
                continue;
            }
            if self.chance(faults.duplicate) {
                self.deliver(message.clone());
            }
            self.deliver(message);
        }
        moved |= self.carry_snapshot_chunks();
        for engine in self.running() {
            block_on(engine.drive());
        }
        moved
    }

    /// Carries the snapshot chunks followers ask for to their leaders and the answers
    /// back (through their byte encodings, as a host does), over the links that are up.
    /// A request or an answer lost to a fault is asked again after the engine's wait.
    fn carry_snapshot_chunks(&self) -> bool {
        let mut moved = false;
        for follower in self.running() {
            let id = follower.replica_id();
            // One chunk per follower and pump, as a host's round trip takes time.
            if let Some((to, request)) = follower.snapshot_wanted() {
                moved = true;
                let faults = self.faults.get();
                let up = !self.cut.borrow().contains(&(id, to))
                    && !self.cut.borrow().contains(&(to, id));
                let Some(Some(leader)) = self.engines.get((to - 1) as usize) else {
                    continue;
                };
                if !up || self.chance(faults.drop) {
                    continue;
                }
                // Small chunks, so a transfer takes many (as a large log does).
                let request = ChunkRequest {
                    bytes_max: request.bytes_max.min(CHUNK_BYTES_TEST),
                    ..request
                };
                let request = ChunkRequest::decode(&request.encode()).expect("round trip");
                let answer = block_on(leader.snapshot_chunk(id, &request))
                    .map(|chunk| Chunk::decode(&chunk.encode()).expect("round trip"));
                let _ = block_on(follower.install_chunk(to, answer));
            }
        }
        moved
    }

    fn deliver(&self, message: Message) {
        let link = (message.from, message.to);
        if self.cut.borrow().contains(&link) {
            return;
        }
        if let Some(Some(target)) = self.engines.get((message.to - 1) as usize) {
            target.step(message);
        }
    }

    fn chance(&self, percent: u32) -> bool {
        percent > 0 && self.rng.borrow_mut().gen_range(0..100) < percent
    }

    fn tick(&self) {
        self.now.set(self.now.get() + TICK_MS);
        for engine in self.running() {
            engine.raft_tick();
            block_on(engine.drive());
        }
    }

    /// Runs `future` to completion while the cluster exchanges messages and ticks.
    fn run<F: Future>(&self, future: F) -> F::Output {
        let mut future = pin!(future);
        for _ in 0..ROUNDS_MAX {
            if let Some(output) = block_on(poll_once(&mut future)) {
                return output;
            }
            if !self.pump() {
                self.tick();
            }
        }
        panic!("the future did not complete within {ROUNDS_MAX} rounds");
    }

    /// Ticks until exactly one replica serves as leader; answers its id.
    fn leader(&self) -> u64 {
        for _ in 0..ROUNDS_MAX {
            let serving: Vec<u64> = self
                .running()
                .filter(|e| e.is_serving_leader())
                .map(|e| e.replica_id())
                .collect();
            if serving.len() == 1 {
                return serving[0];
            }
            if !self.pump() {
                self.tick();
            }
        }
        panic!("no single leader within {ROUNDS_MAX} rounds");
    }

    /// The running replicas the leader's configuration holds.
    fn members(&self, leader: u64) -> Vec<&Engine<SimDisk>> {
        let membership = self.engine(leader).membership();
        self.running()
            .filter(|e| membership.holds(e.replica_id()))
            .collect()
    }

    /// Pumps until every running member applied everything the leader applied.
    fn settle(&self, leader: u64) {
        for _ in 0..ROUNDS_MAX {
            let target = self.engine(leader).applied_index();
            let members = self.members(leader);
            if members.iter().all(|e| e.applied_index() == target) && !self.pump() {
                return;
            }
            if !self.pump() {
                self.tick();
            }
        }
        let seen: Vec<String> = self
            .running()
            .map(|e| {
                format!(
                    "replica {}: applied {} commit {} term {} leader {:?} installing {} log {}..{} {:?}",
                    e.replica_id(),
                    e.applied_index(),
                    e.commit_index(),
                    e.raft_term(),
                    e.leader_id(),
                    e.installing_snapshot(),
                    e.log().start_offset().0,
                    e.log().next_offset().0,
                    e.membership()
                )
            })
            .collect();
        panic!(
            "replicas did not catch up within {ROUNDS_MAX} rounds (leader {leader}):\n{}",
            seen.join("\n")
        );
    }

    fn crash(&mut self, id: u64) {
        self.engines[(id - 1) as usize] = None;
        self.disks[(id - 1) as usize].crash();
    }

    fn restart(&mut self, id: u64) {
        let engine = self.open(id);
        self.engines[(id - 1) as usize] = Some(engine);
    }

    /// Cuts every link to and from `id`.
    fn isolate(&self, id: u64) {
        for other in 1..=self.size() {
            self.cut.borrow_mut().insert((id, other));
            self.cut.borrow_mut().insert((other, id));
        }
    }

    fn heal(&self) {
        self.cut.borrow_mut().clear();
    }
}

fn queue_config() -> QueueConfig {
    QueueConfig {
        mode: QueueMode::Normal,
        retention_ms: 72 * 3600 * 1000,
        max_consume_count: None,
        retry: RetryPolicy::Immediate,
        dedup_window_ms: 300 * 1000,
        partitions: 0,
    }
}

fn message(body: &str) -> SendInput {
    SendInput {
        body: body.as_bytes().to_vec(),
        attributes: b"{}".to_vec(),
        tags: Vec::new(),
        fifo_group: None,
        delay: Delay::None,
        dedup_id: None,
    }
}

fn request(max: u32) -> ReceiveRequest {
    ReceiveRequest {
        attempt: None,
        max_messages: max,
        bytes_max: u64::MAX,
        oversize_first: true,
        visibility_ms: 30_000,
        filter: None,
    }
}

/// A queue with one group, created through the leader.
fn setup(cluster: &Cluster, leader: u64) -> (QueueId, GroupId) {
    let engine = cluster.engine(leader);
    let now = cluster.now.get();
    let queue = cluster
        .run(engine.create_queue("tenant", "orders", queue_config(), now))
        .expect("queue");
    let group = cluster
        .run(engine.create_group(queue, "workers", GroupStart::Oldest, now))
        .expect("group");
    (queue, group)
}

fn send(cluster: &Cluster, leader: u64, queue: QueueId, bodies: &[&str]) {
    let messages: Vec<SendInput> = bodies.iter().map(|b| message(b)).collect();
    let engine = cluster.engine(leader);
    let outcomes = cluster
        .run(engine.send(queue, &messages, cluster.now.get()))
        .expect("send");
    assert_eq!(outcomes.len(), bodies.len());
}

fn receive_bodies(cluster: &Cluster, id: u64, queue: QueueId, group: GroupId) -> Vec<String> {
    let engine = cluster.engine(id);
    let deliveries = cluster
        .run(engine.receive(queue, group, &request(10), cluster.now.get()))
        .expect("receive");
    deliveries
        .iter()
        .map(|d| String::from_utf8(d.body.to_vec()).unwrap())
        .collect()
}

#[test]
fn a_committed_send_is_applied_by_every_replica() {
    let cluster = Cluster::new(3);
    let leader = cluster.leader();
    let (queue, group) = setup(&cluster, leader);
    send(&cluster, leader, queue, &["a", "b", "c"]);
    cluster.settle(leader);
    let expected = cluster.engine(leader).queue_info(queue).expect("info");
    for engine in cluster.running() {
        assert_eq!(engine.queue_info(queue).expect("replicated"), expected);
        assert_eq!(
            engine.group_stats(queue, group).expect("group"),
            cluster.engine(leader).group_stats(queue, group).unwrap()
        );
    }
    assert_eq!(expected.stored, 3);
    assert_eq!(
        receive_bodies(&cluster, leader, queue, group),
        ["a", "b", "c"]
    );
}

/// Also: a send that its dedup id makes a duplicate is refused too. Answered from a
/// follower's (or a cut-off node's) table, it would confirm a message into a queue the
/// leader may have deleted since (cluster simulation: `a send of mN succeeded after the
/// queue's delete succeeded`).
#[test]
fn a_follower_refuses_writes_and_receives_with_the_leader_named() {
    let cluster = Cluster::new(3);
    let leader = cluster.leader();
    let (queue, group) = setup(&cluster, leader);
    let deduped = SendInput {
        dedup_id: Some("d1".into()),
        ..message("d")
    };
    let engine = cluster.engine(leader);
    cluster
        .run(engine.send(queue, std::slice::from_ref(&deduped), cluster.now.get()))
        .expect("send");
    cluster.settle(leader);
    let follower = (1..=3).find(|id| *id != leader).unwrap();
    let engine = cluster.engine(follower);
    let not_leader = EngineError::NotLeader {
        leader: Some(leader),
    };
    let sent = block_on(engine.send(queue, &[message("x")], cluster.now.get()));
    assert_eq!(sent.unwrap_err(), not_leader);
    let repeated = block_on(engine.send(queue, &[deduped], cluster.now.get()));
    assert_eq!(repeated.unwrap_err(), not_leader);
    let received = block_on(engine.receive(queue, group, &request(1), cluster.now.get()));
    assert!(matches!(received, Err(EngineError::NotLeader { .. })));
}

/// Goal: only the serving leader answers acks. A follower holds no leases, so it would
/// call a valid handle Stale, and the client, told its ack failed, would wait for a
/// message the leader then acks or still hides (cluster simulation seed 28: a retried
/// ack reached a replica that was not the leader and answered Stale). Also: a second ack
/// of a message whose first ack is still on its way to a majority (a client's retry, a
/// duplicated request) waits for a durable ack of its own instead of answering Stale.
/// Method: ack a delivery at a follower; then start two acks of it at the leader, the
/// second while the first is uncommitted, and let the cluster run both.
#[test]
fn acks_are_answered_by_the_leader_and_a_second_ack_waits_for_the_first() {
    let cluster = Cluster::new(3);
    let leader = cluster.leader();
    let (queue, group) = setup(&cluster, leader);
    send(&cluster, leader, queue, &["a"]);
    cluster.settle(leader);
    let engine = cluster.engine(leader);
    let now = cluster.now.get();
    let delivery = cluster
        .run(engine.receive(queue, group, &request(1), now))
        .expect("receive")
        .pop()
        .expect("a delivery");
    let acks = [(delivery.handle, AckKind::Success)];
    let follower = (1..=3).find(|id| *id != leader).unwrap();
    let refused = block_on(cluster.engine(follower).ack(&acks, true, now));
    assert_eq!(
        refused.unwrap_err(),
        EngineError::NotLeader {
            leader: Some(leader)
        }
    );
    let mut first = pin!(engine.ack(&acks, true, now));
    assert!(
        block_on(poll_once(&mut first)).is_none(),
        "the first ack waits for a majority"
    );
    let second = engine.ack(&acks, true, now);
    let (first, second) = cluster.run(futures_lite::future::zip(first, second));
    assert_eq!(first.expect("first"), [Ok(AckOutcome::Applied)]);
    assert_eq!(second.expect("second"), [Ok(AckOutcome::Applied)]);
    cluster.settle(leader);
    let later = cluster.now.get() + 60_000;
    cluster.now.set(later);
    let again = cluster
        .run(engine.receive(queue, group, &request(1), later))
        .expect("receive");
    assert!(again.is_empty(), "acked once, never back: {again:?}");
    assert_eq!(
        engine.group_stats(queue, group).expect("group").acked_total,
        1
    );
}

#[test]
fn after_the_leader_crashes_a_new_one_has_every_acknowledged_message() {
    let mut cluster = Cluster::new(3);
    let first = cluster.leader();
    let (queue, group) = setup(&cluster, first);
    send(&cluster, first, queue, &["1", "2", "3"]);
    cluster.crash(first);
    let second = cluster.leader();
    assert_ne!(second, first);
    send(&cluster, second, queue, &["4"]);
    assert_eq!(
        receive_bodies(&cluster, second, queue, group),
        ["1", "2", "3", "4"]
    );
    // The crashed replica comes back, catches up, and agrees with the new leader.
    cluster.restart(first);
    cluster.settle(second);
    assert_eq!(
        cluster.engine(first).queue_info(queue).unwrap(),
        cluster.engine(second).queue_info(queue).unwrap()
    );
    assert_eq!(cluster.engine(first).leader_id(), Some(second));
}

#[test]
fn an_isolated_leader_stops_handing_out_messages_and_never_confirms_a_write() {
    let cluster = Cluster::new(3);
    let old = cluster.leader();
    let (queue, group) = setup(&cluster, old);
    send(&cluster, old, queue, &["kept"]);
    cluster.settle(old);
    cluster.isolate(old);
    // The isolated leader cannot confirm its lead: no delivery, and a write fails.
    let engine = cluster.engine(old);
    let now = cluster.now.get();
    let received = cluster.run(engine.receive(queue, group, &request(8), now));
    assert!(
        matches!(received, Err(EngineError::NotLeader { .. })),
        "{received:?}"
    );
    let lost = block_on(engine.send(queue, &[message("lost")], now));
    assert!(
        matches!(lost, Err(EngineError::NotLeader { .. })),
        "{lost:?}"
    );
    // The majority elects a new leader that delivers the committed message.
    let new = cluster.leader();
    assert_ne!(new, old);
    assert_eq!(receive_bodies(&cluster, new, queue, group), ["kept"]);
    cluster.heal();
    cluster.settle(new);
    assert!(!cluster.engine(old).is_serving_leader());
}

#[test]
fn a_leader_deposed_by_a_tick_stops_serving_before_its_next_ready_round() {
    // Goal: the moment Raft deposes a leader (here check-quorum on a tick; a step that
    // sees a higher term is the same), it stops serving, without waiting for the Ready
    // round that handles the role change. Before, it went on counting as the serving
    // leader until then (cluster seed 194: "two leaders of p1 in term 169").
    let cluster = Cluster::new(3);
    let leader = cluster.leader();
    let (queue, group) = setup(&cluster, leader);
    cluster.settle(leader);
    cluster.isolate(leader);
    let engine = cluster.engine(leader);
    let mut ticks = 0;
    while engine.is_serving_leader() {
        engine.raft_tick();
        ticks += 1;
        assert!(
            ticks < 1_000,
            "still serving after {ticks} ticks without a quorum"
        );
    }
    let now = cluster.now.get();
    let refused = block_on(engine.receive(queue, group, &request(1), now));
    assert!(
        matches!(refused, Err(EngineError::NotLeader { .. })),
        "{refused:?}"
    );
}

#[test]
fn retention_is_cut_by_the_leader_and_applied_alike_by_every_replica() {
    // Goal: retention changes the replicated state only through the log, so replicas
    // whose clocks differ still hold the same messages and counts. Before, each replica
    // cut by its own clock in `tick`, and an ack applied after a replica's own cut was
    // not counted there (the cluster simulation with short retention: "acked counts
    // differ").
    let cluster = Cluster::new(3);
    let leader = cluster.leader();
    let (queue, group) = setup_expiring(&cluster, leader);
    send(&cluster, leader, queue, &["old", "older"]);
    cluster.settle(leader);
    let stats = |id: u64| cluster.engine(id).group_stats(queue, group).expect("stats");
    assert_eq!(stats(leader).backlog, 2);
    // A follower whose clock is far ahead ticks: it cuts nothing itself.
    let follower = (1..=3).find(|id| *id != leader).expect("a follower");
    let later = cluster.now.get() + EngineLimits::dms().retention_ms_min + 10_000;
    cluster
        .run(cluster.engine(follower).tick(later))
        .expect("follower tick");
    assert_eq!(stats(follower), stats(leader));
    // The leader's tick past the retention logs the cut; every replica applies it.
    cluster.now.set(later);
    cluster
        .run(cluster.engine(leader).tick(later))
        .expect("leader tick");
    cluster.settle(leader);
    for id in 1..=3 {
        assert_eq!(stats(id).backlog, 0, "replica {id}");
        assert_eq!(stats(id), stats(leader), "replica {id}");
    }
}

#[test]
fn a_duplicate_of_a_send_still_on_its_way_is_confirmed_only_with_it() {
    // Goal: a retried send whose dedup id matches a send the leader has proposed but not
    // committed is not confirmed before that send is; when the original is lost with
    // its leader's term, the retry fails too rather than confirming a lost message.
    // (Cluster seed 78 of the simulation: the retry was answered at once, the original
    // was overwritten after a failover, and the message was never delivered.)
    let cluster = Cluster::new(3);
    let old = cluster.leader();
    let (queue, _) = setup(&cluster, old);
    cluster.settle(old);
    cluster.isolate(old);
    let engine = cluster.engine(old);
    let now = cluster.now.get();
    let with_id = SendInput {
        dedup_id: Some("order-7".into()),
        ..message("once")
    };
    let mut original = pin!(engine.send(queue, std::slice::from_ref(&with_id), now));
    assert!(
        block_on(poll_once(&mut original)).is_none(),
        "cannot commit"
    );
    let mut retry = pin!(engine.send(queue, std::slice::from_ref(&with_id), now));
    assert!(
        block_on(poll_once(&mut retry)).is_none(),
        "a duplicate of an uncommitted send was answered before it"
    );
    // The old leader steps down, the others elect a leader; healed, the old leader's
    // uncommitted entry is replaced.
    for _ in 0..ROUNDS_MAX {
        if !cluster.engine(old).is_serving_leader() {
            break;
        }
        cluster.tick();
    }
    let new = cluster.leader();
    assert_ne!(new, old);
    cluster.heal();
    cluster.settle(new);
    let retried = cluster.run(retry);
    assert!(
        matches!(retried, Err(EngineError::NotLeader { .. })),
        "{retried:?}"
    );
    let lost = cluster.run(original);
    assert!(
        matches!(lost, Err(EngineError::NotLeader { .. })),
        "{lost:?}"
    );
    // The message is not a duplicate at the new leader: nothing holds it.
    let engine = cluster.engine(new);
    let outcomes = cluster
        .run(engine.send(queue, std::slice::from_ref(&with_id), cluster.now.get()))
        .expect("send");
    assert!(!outcomes[0].duplicate, "{outcomes:?}");
}

#[test]
fn a_release_refused_during_a_lead_transfer_is_tried_again() {
    // Goal: a delayed message whose release could not be logged (the leader drops
    // proposals while it hands its lead over, and the handover fails) is released later
    // by the same leader, and can still be cancelled meanwhile. Before, it stayed marked
    // "being released" for as long as that replica led: never delivered, and a cancel
    // answered NotScheduled.
    let cluster = Cluster::new(3);
    let leader = cluster.leader();
    let (queue, group) = setup(&cluster, leader);
    let engine = cluster.engine(leader);
    let delayed = SendInput {
        delay: Delay::Ms(1_000),
        ..message("later")
    };
    let sent = cluster
        .run(engine.send(queue, &[delayed.clone(), delayed], cluster.now.get()))
        .expect("send");
    cluster.settle(leader);
    // A handover whose one message to the follower is lost: it never completes. (Only
    // that message: a follower cut off longer would start an election of its own.)
    let follower = (1..=3).find(|id| *id != leader).expect("a follower");
    let term = engine.raft_term();
    cluster.isolate(follower);
    assert!(engine.transfer_lead(follower), "transfer starts");
    block_on(engine.drive());
    cluster.pump();
    cluster.heal();
    cluster.now.set(cluster.now.get() + 2_000);
    let refused = cluster.run(engine.tick(cluster.now.get()));
    assert!(
        matches!(refused, Err(EngineError::Busy)),
        "the release is refused: {refused:?}"
    );
    // The transfer times out (an election timeout); the same replica still leads, in
    // the same term.
    for _ in 0..50 {
        while cluster.pump() {}
        cluster.tick();
    }
    assert_eq!(cluster.leader(), leader);
    assert_eq!(engine.raft_term(), term, "no election in between");
    let now = cluster.now.get();
    cluster
        .run(engine.cancel(queue, sent[1].message_id, now))
        .expect("the second is still cancellable");
    cluster.run(engine.tick(now)).expect("tick");
    assert_eq!(receive_bodies(&cluster, leader, queue, group), ["later"]);
}

#[test]
fn dead_letters_and_a_move_task_reach_every_replica_and_survive_the_leaders_crash() {
    // Goal: a dead letter moved to its target queue, and a move task, are replicated
    // state: every replica holds the same messages, and a task cut short by the leader's
    // crash is finished by the next leader from the durable task.
    let mut cluster = Cluster::new(3);
    let first = cluster.leader();
    let (source, group) = setup(&cluster, first);
    let engine = cluster.engine(first);
    let dlq = cluster
        .run(engine.create_queue("tenant", "dlq", queue_config(), cluster.now.get()))
        .expect("dlq");
    let dlq_group = cluster
        .run(engine.create_group(dlq, "g", GroupStart::Oldest, cluster.now.get()))
        .expect("group");
    cluster
        .run(engine.set_dead_letter(source, Some(1), Some(dlq), cluster.now.get()))
        .expect("policy");
    send(&cluster, first, source, &["poison"]);
    let got = cluster
        .run(engine.receive(source, group, &request(1), cluster.now.get()))
        .expect("receive");
    let fail = [(got[0].handle, AckKind::Fail)];
    cluster
        .run(engine.ack(&fail, false, cluster.now.get()))
        .expect("fail");
    let bodies: Vec<String> = (0..30).map(|i| format!("d{i}")).collect();
    let refs: Vec<&str> = bodies.iter().map(String::as_str).collect();
    for batch in refs.chunks(10) {
        send(&cluster, first, dlq, batch);
    }
    cluster
        .run(engine.start_move((dlq, dlq_group), source, 10, cluster.now.get()))
        .expect("start");
    // Half a second of the leader's passes: some move, not all.
    for _ in 0..5 {
        let at = cluster.now.get() + 100;
        cluster.now.set(at);
        cluster.run(cluster.engine(first).tick(at)).expect("tick");
    }
    cluster.settle(first);
    let stats = |cluster: &Cluster, id: u64| {
        cluster
            .engine(id)
            .group_stats(dlq, dlq_group)
            .expect("stats")
    };
    let part_way = stats(&cluster, first);
    assert!(
        part_way.moving == 1 && part_way.moved_total > 0 && part_way.moved_total < 31,
        "{part_way:?}"
    );
    for id in 1..=3 {
        assert_eq!(
            stats(&cluster, id).moved_total,
            part_way.moved_total,
            "replica {id}"
        );
    }
    cluster.crash(first);
    let second = cluster.leader();
    for _ in 0..100 {
        if stats(&cluster, second).moving == 0 {
            break;
        }
        let at = cluster.now.get() + 100;
        cluster.now.set(at);
        cluster.run(cluster.engine(second).tick(at)).expect("tick");
    }
    cluster.restart(first);
    cluster.settle(second);
    let done = stats(&cluster, second);
    assert_eq!((done.moving, done.moved_total, done.backlog), (0, 31, 0));
    let mut moved = Vec::new();
    loop {
        let more = receive_bodies(&cluster, second, source, group);
        if more.is_empty() {
            break;
        }
        moved.extend(more);
    }
    moved.sort();
    let mut want: Vec<String> = bodies.clone();
    want.push("poison".into());
    want.sort();
    assert_eq!(moved, want, "every message back in the source once");
    cluster.settle(second);
    for id in 1..=3 {
        for queue in [source, dlq] {
            assert_eq!(
                cluster.engine(id).queue_info(queue).unwrap(),
                cluster.engine(second).queue_info(queue).unwrap(),
                "replica {id}"
            );
        }
        assert_eq!(stats(&cluster, id).moved_total, 31, "replica {id}");
    }
}

#[test]
fn replicas_agree_on_tenants_and_the_admin_secret_after_writes_at_the_leader() {
    // Goal: tenants and the admin secret written at partition 0's leader are applied by
    // every replica (a follower's `tenant_changes` moves, so its node can republish), a
    // second admin secret never replaces the first, and a replica restarted from its own
    // log agrees. Method: three replicas; put, replace and delete tenants and set the
    // secret twice at the leader; settle; compare every replica; crash and restart one.
    let mut cluster = Cluster::new(3);
    let leader = cluster.leader();
    let follower = (1..=3).find(|id| *id != leader).unwrap();
    let before = cluster.engine(follower).tenant_changes();
    let engine = cluster.engine(leader);
    let now = cluster.now.get();
    cluster
        .run(engine.put_tenant("acme", b"one".to_vec(), now))
        .unwrap();
    cluster
        .run(engine.put_tenant("beta", b"two".to_vec(), now))
        .unwrap();
    cluster
        .run(engine.put_tenant("acme", b"three".to_vec(), now))
        .unwrap();
    cluster.run(engine.delete_tenant("beta", now)).unwrap();
    let first = cluster
        .run(engine.set_admin_secret(b"first".to_vec(), now))
        .unwrap();
    let second = cluster
        .run(engine.set_admin_secret(b"second".to_vec(), now))
        .unwrap();
    assert_eq!(first, b"first");
    assert_eq!(second, b"first", "the secret is set once");
    let refused = block_on(cluster.engine(follower).put_tenant("x", Vec::new(), now));
    assert!(matches!(refused, Err(EngineError::NotLeader { .. })));
    cluster.settle(leader);
    let expected = vec![("acme".to_string(), b"three".to_vec())];
    for engine in cluster.running() {
        assert_eq!(engine.tenants(), expected);
        assert_eq!(engine.admin_secret().as_deref(), Some(&b"first"[..]));
        assert_eq!(engine.tenant_changes(), before + 5);
    }
    cluster.crash(follower);
    cluster.restart(follower);
    cluster.settle(leader);
    assert_eq!(cluster.engine(follower).tenants(), expected);
    assert_eq!(
        cluster.engine(follower).admin_secret().as_deref(),
        Some(&b"first"[..])
    );
}

/// A queue with the shortest retention, so that moving the clock expires its messages.
fn setup_expiring(cluster: &Cluster, leader: u64) -> (QueueId, GroupId) {
    let engine = cluster.engine(leader);
    let now = cluster.now.get();
    let config = QueueConfig {
        retention_ms: EngineLimits::dms().retention_ms_min,
        ..queue_config()
    };
    let queue = cluster
        .run(engine.create_queue("tenant", "expiring", config, now))
        .expect("queue");
    let group = cluster
        .run(engine.create_group(queue, "workers", GroupStart::Oldest, now))
        .expect("group");
    (queue, group)
}

/// Moves the clock past the queue's retention, then every running replica expires the
/// messages, takes an engine snapshot and lets its log retention remove old segments.
fn expire_and_compact(cluster: &Cluster) {
    cluster
        .now
        .set(cluster.now.get() + EngineLimits::dms().retention_ms_min + 10_000);
    let now = cluster.now.get();
    for engine in cluster.running() {
        cluster.run(engine.tick(now)).expect("tick");
        cluster.run(engine.snapshot()).expect("snapshot");
        cluster.run(engine.tick(now)).expect("retention");
    }
}

/// Every record of `engine`'s log from `from` to `to`, with its term.
fn log_records(engine: &Engine<SimDisk>, from: u64, to: u64) -> Vec<(Option<u64>, ReadRecord)> {
    let log = engine.log();
    let mut out = Vec::new();
    let mut next = from;
    while next < to {
        let records = block_on(log.read(Offset(next), 1 << 20)).expect("read");
        assert!(!records.is_empty(), "no record at {next}");
        for record in records.into_iter().take_while(|r| r.offset.0 < to) {
            next = record.offset.0 + 1;
            out.push((log.term_at(record.offset), record));
        }
    }
    out
}

/// `id` applied what `leader` applied, holds the same queue and group, and its log
/// records from its start equal the leader's.
fn assert_same_replica(cluster: &Cluster, leader: u64, id: u64, queue: QueueId, group: GroupId) {
    let (a, b) = (cluster.engine(leader), cluster.engine(id));
    assert_eq!(b.applied_index(), a.applied_index());
    assert_eq!(b.queue_info(queue).unwrap(), a.queue_info(queue).unwrap());
    assert_eq!(
        b.group_stats(queue, group).unwrap(),
        a.group_stats(queue, group).unwrap()
    );
    assert_eq!(b.tenants(), a.tenants());
    let from = b.log().start_offset().0.max(a.log().start_offset().0);
    let to = a.applied_index();
    assert!(from < to);
    assert_eq!(log_records(b, from, to), log_records(a, from, to));
}

/// Sends enough 1 KiB bodies to fill several 64 KiB segments.
fn send_many(cluster: &Cluster, leader: u64, queue: QueueId, count: usize) {
    let bodies: Vec<String> = (0..count)
        .map(|i| format!("{i:05}{}", "x".repeat(1024)))
        .collect();
    for batch in bodies.chunks(10) {
        let batch: Vec<&str> = batch.iter().map(String::as_str).collect();
        send(cluster, leader, queue, &batch);
    }
}

/// Builds the situation of the snapshot tests: replica `lagging` stopped while the
/// others took sends past their log retention; then two more sends. Answers the leader,
/// the lagging replica, the queue and the group.
fn lagging_behind_retention() -> (Cluster, u64, u64, QueueId, GroupId) {
    lagging_behind_retention_seeded(3)
}

/// [`lagging_behind_retention`] with the cluster's choices drawn from `seed`.
fn lagging_behind_retention_seeded(seed: u64) -> (Cluster, u64, u64, QueueId, GroupId) {
    let mut cluster = Cluster::seeded(3, seed);
    let leader = cluster.leader();
    let (queue, group) = setup_expiring(&cluster, leader);
    let lagging = (1..=3).find(|id| *id != leader).unwrap();
    cluster.settle(leader);
    cluster.crash(lagging);
    send_many(&cluster, leader, queue, 300);
    expire_and_compact(&cluster);
    let start = cluster.engine(leader).log().start_offset().0;
    assert!(start > 0, "retention removed no segment");
    send(&cluster, leader, queue, &["after-1", "after-2"]);
    (cluster, leader, lagging, queue, group)
}

#[test]
fn a_follower_behind_the_leaders_retention_catches_up_from_a_snapshot() {
    // Goal: a follower that needs entries the leader's retention removed gets a Raft
    // snapshot (the engine state and the log records it refers to, pulled in chunks)
    // and then follows as before. Method: one of three replicas stops; the others take
    // sends until their logs span several segments, the clock passes the queue's
    // retention, they snapshot and retention removes segments; two more sends; the
    // stopped replica restarts and catches up: its applied state and its log records from
    // its new start equal the leader's; a send after that reaches it too.
    let (mut cluster, leader, lagging, queue, group) = lagging_behind_retention();
    let leader_start = cluster.engine(leader).log().start_offset().0;
    cluster.restart(lagging);
    cluster.settle(leader);
    assert_same_replica(&cluster, leader, lagging, queue, group);
    assert_eq!(cluster.engine(lagging).log().start_offset().0, leader_start);
    assert!(!cluster.engine(lagging).installing_snapshot());
    send(&cluster, leader, queue, &["after-3"]);
    cluster.settle(leader);
    assert_same_replica(&cluster, leader, lagging, queue, group);
    // The installed replica restarts from its own disk, then leads and serves.
    cluster.crash(lagging);
    cluster.restart(lagging);
    cluster.settle(leader);
    assert_same_replica(&cluster, leader, lagging, queue, group);
    assert_eq!(
        receive_bodies(&cluster, leader, queue, group),
        ["after-1", "after-2", "after-3"]
    );
}

#[test]
fn a_crash_at_any_point_of_an_install_leaves_the_old_replica_or_the_new_one() {
    // Goal: power loss at any storage call of a snapshot install (staging, commit point,
    // replacing the log, the engine snapshot, the Raft state, cleaning up) leaves a
    // replica that reopens as the old one or the new one, and then catches up. Method:
    // the scenario above; once the lagging replica pulls a snapshot, its `nth` storage
    // call fails, it loses power and restarts; for many `nth`.
    for nth in (1..120).step_by(3) {
        let (mut cluster, leader, lagging, queue, group) = lagging_behind_retention();
        cluster.restart(lagging);
        let mut rounds = 0;
        while !cluster.engine(lagging).installing_snapshot() {
            rounds += 1;
            assert!(rounds < ROUNDS_MAX, "no install started");
            if !cluster.pump() {
                cluster.tick();
            }
        }
        let disk = cluster.disks[(lagging - 1) as usize].clone();
        disk.fail_nth_call(nth, IoErrorKind::Io);
        for _ in 0..50 {
            if !cluster.pump() {
                cluster.tick();
            }
        }
        disk.clear_faults();
        cluster.crash(lagging);
        cluster.restart(lagging);
        cluster.settle(leader);
        assert_same_replica(&cluster, leader, lagging, queue, group);
    }
}

#[test]
fn a_snapshot_catch_up_survives_message_loss_duplication_and_reordering() {
    // Goal: the snapshot transfer tolerates a bad network: lost, duplicated and
    // reordered Raft messages (a lost `MsgSnapshot` included) and lost chunk requests
    // (re-asked after the engine's wait). Method: the catch-up scenario for several
    // seeds, with the chaos harness's message faults on while the stopped replica
    // catches up and while more sends happen; then the faults stop and it must agree.
    for seed in 0..8 {
        let (mut cluster, _, lagging, queue, group) = lagging_behind_retention_seeded(seed);
        cluster.faults.set(Faults {
            drop: 10,
            duplicate: 5,
            delay: 20,
        });
        cluster.restart(lagging);
        for _ in 0..300 {
            if !cluster.pump() {
                cluster.tick();
            }
        }
        cluster.faults.set(Faults::default());
        let leader = cluster.leader();
        cluster.settle(leader);
        assert_same_replica(&cluster, leader, lagging, queue, group);
    }
}

/// The records of `engine`'s log below `end`, as (offset, term, attributes, body).
fn records(engine: &Engine<SimDisk>, end: u64) -> Vec<(u64, u64, Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    let mut next = engine.log().start_offset().0;
    while next < end {
        let batch =
            block_on(engine.log().read(sluice_core::types::Offset(next), 1 << 20)).expect("read");
        assert!(!batch.is_empty(), "no record at {next}");
        for record in batch.into_iter().take_while(|r| r.offset.0 < end) {
            let term = engine.log().term_at(record.offset).unwrap_or(0);
            next = record.offset.0 + 1;
            out.push((
                record.offset.0,
                term,
                record.attributes.to_vec(),
                record.payload.to_vec(),
            ));
        }
    }
    out
}

#[test]
fn a_group_moves_onto_a_new_replica_while_sends_go_on() {
    // Goal: a replica joins as a learner and copies the whole log (its records equal the
    // leader's), is promoted while a voter leaves in one joint change with a send in
    // flight, and the new group keeps every acknowledged message through the loss of its
    // old leader; the new membership survives a restart. Method: replicas 1-3 form the
    // group, 4 starts outside it; add 4, move from the follower f to 4 while sending,
    // then crash the leader and read everything at the new one.
    let mut cluster = Cluster::with_spares(3, 4, 4);
    let leader = cluster.leader();
    let (queue, group) = setup(&cluster, leader);
    send(&cluster, leader, queue, &["1", "2"]);
    let engine = cluster.engine(leader);
    let added = cluster
        .run(engine.change_membership(&[MembershipStep::AddLearner(4)]))
        .expect("add learner");
    assert_eq!(added.learners, vec![4]);
    assert_eq!(added.voters, vec![1, 2, 3]);
    cluster.settle(leader);
    let end = cluster.engine(leader).applied_index();
    assert_eq!(
        records(cluster.engine(4), end),
        records(cluster.engine(leader), end)
    );
    assert_eq!(cluster.engine(4).membership(), added);
    assert!(
        cluster.engine(4).queue_info(queue).is_ok(),
        "the learner applied the queue"
    );

    let leaving = (1..=3).find(|id| *id != leader).unwrap();
    let engine = cluster.engine(leader);
    let now = cluster.now.get();
    let moved = [message("3")];
    let (changed, sent) = cluster.run(futures_lite::future::zip(
        engine.change_membership(&[MembershipStep::Promote(4), MembershipStep::Remove(leaving)]),
        engine.send(queue, &moved, now),
    ));
    sent.expect("a send during the move");
    let changed = changed.expect("move");
    let mut expected: Vec<u64> = (1..=4).filter(|id| *id != leaving).collect();
    expected.sort_unstable();
    assert_eq!(changed.voters, expected);
    assert!(!changed.joint() && changed.learners.is_empty());
    cluster.settle(leader);
    assert_eq!(cluster.engine(4).membership(), changed);

    // The old group's follower is out: the new group survives losing its leader.
    cluster.crash(leaving);
    cluster.crash(leader);
    cluster.restart(leader);
    let next = cluster.leader();
    assert_ne!(next, leaving);
    assert_eq!(
        receive_bodies(&cluster, next, queue, group),
        ["1", "2", "3"]
    );
    cluster.settle(next);
    for id in [leader, next, 4] {
        assert_eq!(cluster.engine(id).membership(), changed, "replica {id}");
    }
}

#[test]
fn membership_changes_that_would_hurt_the_group_are_refused() {
    // Goal: each rule of a membership change holds before anything is proposed, and only
    // the leader takes changes. Method: a group of 1-3 with 4 outside it; try each
    // forbidden change.
    let cluster = Cluster::with_spares(3, 5, 5);
    let leader = cluster.leader();
    let follower = (1..=3).find(|id| *id != leader).unwrap();
    let engine = cluster.engine(leader);
    let refused_at = |engine: &Engine<SimDisk>, steps: &[MembershipStep]| match cluster
        .run(engine.change_membership(steps))
    {
        Err(EngineError::InvalidMembership(why)) => why,
        other => panic!("{steps:?} was not refused: {other:?}"),
    };
    let refused = |steps: &[MembershipStep]| refused_at(engine, steps);
    assert_eq!(refused(&[]), Refusal::NoSteps);
    assert_eq!(
        refused(&[MembershipStep::Remove(leader)]),
        Refusal::RemoveLeader
    );
    assert_eq!(refused(&[MembershipStep::Promote(4)]), Refusal::NotLearner);
    assert_eq!(
        refused(&[MembershipStep::AddLearner(follower)]),
        Refusal::AlreadyMember
    );
    assert_eq!(refused(&[MembershipStep::Remove(5)]), Refusal::NotMember);
    assert_eq!(
        refused(&[MembershipStep::AddLearner(4), MembershipStep::Remove(4)]),
        Refusal::Repeated
    );
    let at_follower = block_on(
        cluster
            .engine(follower)
            .change_membership(&[MembershipStep::AddLearner(4)]),
    );
    assert!(matches!(at_follower, Err(EngineError::NotLeader { .. })));
    // A learner that cannot hear from the leader is not promoted.
    cluster
        .run(engine.change_membership(&[MembershipStep::AddLearner(5)]))
        .expect("add 5");
    cluster.isolate(5);
    for _ in 0..30 {
        cluster.tick();
        while cluster.pump() {}
    }
    let leader = cluster.leader();
    let engine = cluster.engine(leader);
    send(&cluster, leader, queue_of(&cluster, leader), &["x"]);
    assert_eq!(
        refused_at(engine, &[MembershipStep::Promote(5)]),
        Refusal::Behind
    );
}

/// A queue created through the leader (for tests that need some writes).
fn queue_of(cluster: &Cluster, leader: u64) -> QueueId {
    setup(cluster, leader).0
}
