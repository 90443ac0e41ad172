//! The simulated cluster: 3 or 5 Sluice nodes, each a madsim node (killed and restarted
//! through madsim's runtime), each running the production node layer (a `LocalNode` of
//! several shards over engines on its own simulated disks, every engine a replica of its
//! partition's Raft group: `ReplicaConfig::member`) and the node layer's cluster driver
//! (`sluice_node::replication`: the Raft tick, leader balancing, outbound and inbound
//! passes), the same code the server runs over its TCP transport.
//!
//! Between nodes everything travels over `madsim::net` (one `Endpoint` per node, a tag
//! per kind), so madsim's `NetSim` can clog links (partitions, one direction or both) and
//! lose packets; the node's own send shim adds duplication, reordering (a random extra
//! delay) and a slow node's delay. Kinds: Raft messages (`sluice_node::replication`'s
//! payload) and, with the same tag, Raft snapshot chunks and their requests (the node
//! layer's `snapshot_transfer` carrier, which the server runs too), forwarded calls
//! (`Host::call_node`: a correlation id, the shard, the node layer's bytes) and their
//! answers, and clients' HTTP requests.
//!
//! A client's request travels to a node as a madsim packet that carries the HTTP parts,
//! a slot the node marks when it takes the request (the simulator's knowledge of which
//! serial it entered as, for an answer that never comes back) and the channel of its
//! answer. A node that dies drops the channel: the client learns at once that its request
//! was lost (ambiguous once taken, refused before).
//!
//! The machine of a node (its disks, its wall clock's offset, the tenant seed) outlives
//! its madsim node; the madsim node's init task boots it (`boot`), reaching the machine
//! through a thread-local registry, since madsim's init closure must be `Send` and the
//! engines and disks are not (the runtime runs on one thread).
//!
//! Raft safety is checked while the run goes (`Cluster::saw_leader`, `check_terms`) and at
//! its end (`final_checks`); the client history goes to the same checker as one node's.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::request::Parts;
use madsim::net::Endpoint;
use madsim::rand::{thread_rng, Rng};
use sluice_core::clock::{QueueClock, Reading};
use sluice_core::engine::membership::Membership;
use sluice_core::engine::{Engine, EngineConfig};
use sluice_core::replica::ReplicaConfig;
use sluice_core::sim_disk::SimDisk;
use sluice_core::types::Offset;
use sluice_http::service::{self, ServiceConfig};
use sluice_node::local::{LocalNode, Runtime};
use sluice_node::replication::{outbound_loop, RaftDriver, RaftHost, SendRefused};
use sluice_node::snapshot_transfer::{SnapshotCarrier, SnapshotLink, KIND_SNAPSHOT_REQUEST};
use sluice_node::tenants::Tenant;
use sluice_node::{Node as _, NodeError};

use crate::history::{Event, EventKind, History};
use crate::node::{now_ms, Served, TENANT_NAMES};
use crate::slow_disk::SlowDisk;

/// Every node's endpoint listens on this port.
const PORT: u16 = 7000;
const TAG_RAFT: u64 = 1;
const TAG_FORWARD: u64 = 2;
const TAG_FORWARD_REPLY: u64 = 3;
const TAG_HTTP: u64 = 4;
/// The node's ticker sleeps at most this long.
const TICK_INTERVAL_MS: u64 = 100;
/// Sends of one node in flight in its shim (delayed or duplicated); more are dropped.
const SENDS_IN_FLIGHT_MAX: usize = 4_096;
/// Forwarded calls one node waits on at once; more are refused.
const PENDING_MAX: usize = 1_024;
/// Client requests one node serves at once; more are dropped (the client sees a refusal).
const HTTP_IN_FLIGHT_MAX: usize = 1_024;
/// Bytes in front of a forwarded call: correlation id and shard.
const FORWARD_HEADER_BYTES: usize = 12;
/// A node that failed to open its engines tries again after this.
const REOPEN_PAUSE_MS: u64 = 500;
/// Committed terms are checked this far below each replica's applied index.
const TERM_CHECK_WINDOW: u64 = 256;

/// A node's address: node `id` (its Raft replica id, from 1) at 10.0.0.`id`.
pub fn address(id: u64) -> SocketAddr {
    let last = u8::try_from(id).expect("few nodes");
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, last)), PORT)
}

fn elapsed_ms(start: madsim::time::Instant) -> u64 {
    u64::try_from(start.elapsed().as_millis()).expect("simulated time fits")
}

async fn sleep_ms(ms: u64) {
    madsim::time::sleep(Duration::from_millis(ms)).await;
}

thread_local! {
    /// The cluster of the seed running on this thread (madsim runs a seed on one thread).
    static CLUSTER: RefCell<Option<Rc<Cluster>>> = const { RefCell::new(None) };
}

/// Where a client's request stands, shared between the client and the node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Slot {
    /// Not taken yet.
    Pending,
    /// The client stopped waiting before a node took it: no node may take it now.
    Abandoned,
    /// A node took it as this serial.
    Taken(u64),
}

/// A client's request as a packet to a node.
struct HttpPacket {
    parts: Parts,
    body: Bytes,
    slot: Arc<Mutex<Slot>>,
    answer: async_channel::Sender<Served>,
}

/// What became of a client's request.
pub enum Reached {
    Served(Served),
    /// No node took it: nothing applied.
    Refused,
    /// A node took it as `serial` and died (or its answer was lost): maybe applied.
    Lost {
        serial: u64,
    },
}

/// The network faults drawn for the run, applied by each node's send shim.
#[derive(Clone, Copy, Debug)]
pub struct NetKnobs {
    /// Copies of a node-to-node packet sent twice, per million, while faults are on.
    pub duplicate_ppm: u32,
    /// Extra delay of a packet, up to this (reordering), while faults are on.
    pub reorder_ms_max: u64,
    /// madsim's packet loss while faults are on, per million.
    pub loss_ppm: u32,
}

/// A node's machine: what outlives its process (disks, wall clock offset, tenant seed)
/// and the process's current boot.
pub struct Machine {
    /// Raft replica id, from 1.
    pub id: u64,
    pub disks: Vec<SimDisk>,
    storages: Vec<SlowDisk>,
    /// The wall clock's step from true time.
    pub wall_offset: Rc<Cell<i64>>,
    tenant_seed: u64,
    /// The node's local copy of the tenant list (the server's `tenants.json`), which a
    /// boot starts with.
    tenants_file: Rc<RefCell<Vec<Tenant>>>,
    /// The madsim node, once built.
    pub node: Cell<Option<madsim::task::NodeId>>,
    /// The running boot: its node layer and runtime; `None` while down or opening.
    boot: RefCell<Option<Rc<Boot>>>,
    /// A slow node: every packet to or from it waits this much longer.
    pub slow_ms: Cell<u64>,
    /// The node is down (killed) until the nemesis restarts it.
    pub down: Cell<bool>,
    /// Counts boots.
    pub boots: Cell<u64>,
}

/// One boot of a node: its node layer and what its tasks share.
pub struct Boot {
    pub local: Rc<Local>,
    runtime: ClusterRuntime,
}

pub type Local = LocalNode<SlowDisk, ClusterRuntime>;

/// The runtime of one boot: clocks as the single-node simulation has them, forwarded
/// jobs between the node's shards, and calls to other nodes over its endpoint.
#[derive(Clone)]
pub struct ClusterRuntime {
    start: madsim::time::Instant,
    wall_offset: Rc<Cell<i64>>,
    queue: QueueClock,
    hop_ms_max: u64,
    net: Rc<NodeNet>,
    tenants_file: Rc<RefCell<Vec<Tenant>>>,
}

/// A boot's endpoint, its pending forwarded calls and its send shim.
struct NodeNet {
    id: u64,
    endpoint: Endpoint,
    pending: RefCell<BTreeMap<u64, async_channel::Sender<Vec<u8>>>>,
    next_call: Cell<u64>,
    sends_in_flight: Rc<Cell<usize>>,
    http_in_flight: Cell<usize>,
    cluster: Rc<Cluster>,
}

/// Takes a forwarded call out of the pending map when its caller stops waiting.
struct Filed<'a> {
    net: &'a NodeNet,
    id: u64,
}

impl Drop for Filed<'_> {
    fn drop(&mut self) {
        self.net.pending.borrow_mut().remove(&self.id);
    }
}

/// A send in the shim, counted until it leaves.
struct InFlight(Rc<Cell<usize>>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.set(self.0.get() - 1);
    }
}

impl NodeNet {
    /// Sends `packet` to `to` with `tag` through the shim: while faults are on, a seeded
    /// extra delay (reordering) and sometimes a second copy; a slow node's delay always.
    /// Never waits; a full shim drops the packet.
    fn send<P: Clone + Send + Sync + 'static>(&self, to: SocketAddr, tag: u64, packet: P) {
        let cluster = &self.cluster;
        let faults = cluster.faults.get();
        let knobs = cluster.net;
        let slow = cluster.slow_between(self.id, to);
        // Only Raft packets (messages, snapshot chunks and their requests) are duplicated
        // and reordered: the server carries forwarded calls over TCP, in order and at most
        // once per connection, and the node layer relies on that (a call run twice is a
        // request run twice). A snapshot chunk may come late or twice anyway (the follower
        // asks again when an answer is late), and the engine refuses one that does not
        // continue its install.
        let raft = tag == TAG_RAFT;
        let copies = if raft && faults && thread_rng().gen_range(0..1_000_000) < knobs.duplicate_ppm
        {
            2
        } else {
            1
        };
        for _ in 0..copies {
            if self.sends_in_flight.get() >= SENDS_IN_FLIGHT_MAX {
                cluster.counters.borrow_mut().shim_dropped += 1;
                return;
            }
            let delay = slow
                + if raft && faults && knobs.reorder_ms_max > 0 {
                    thread_rng().gen_range(0..=knobs.reorder_ms_max)
                } else {
                    0
                };
            self.sends_in_flight.set(self.sends_in_flight.get() + 1);
            let guard = InFlight(self.sends_in_flight.clone());
            let endpoint = self.endpoint.clone();
            let packet = packet.clone();
            madsim::task::spawn_local(async move {
                let _guard = guard;
                if delay > 0 {
                    sleep_ms(delay).await;
                }
                // An unreachable peer loses the packet, as a datagram would.
                let _ = endpoint.send_to_raw(to, tag, Box::new(packet)).await;
            });
        }
    }
}

impl ClusterRuntime {
    fn reading(&self) -> Reading {
        Reading {
            wall_ms: self.wall_ms(),
            mono_ms: elapsed_ms(self.start),
        }
    }
}

impl Runtime for ClusterRuntime {
    fn now_ms(&self) -> u64 {
        self.queue.now_ms(self.reading())
    }

    fn wall_ms(&self) -> u64 {
        now_ms(self.start).saturating_add_signed(self.wall_offset.get())
    }

    async fn sleep_ms(&self, ms: u64) {
        sleep_ms(ms).await;
    }

    /// As on one node: the job runs as a task of its own after a random hop.
    async fn forward(&self, job: std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>) {
        let hop_ms = thread_rng().gen_range(0..=self.hop_ms_max);
        madsim::task::spawn_local(async move {
            sleep_ms(hop_ms).await;
            job.await;
        });
    }

    async fn call_node(
        &self,
        shard: usize,
        node: u64,
        call: Vec<u8>,
    ) -> Result<Vec<u8>, NodeError> {
        let net = &self.net;
        if node == 0 || node > net.cluster.machines.len() as u64 {
            return Err(NodeError::Unavailable("no such node"));
        }
        if net.pending.borrow().len() >= PENDING_MAX {
            return Err(NodeError::Unavailable("too many forwarded calls"));
        }
        let id = net.next_call.get() + 1;
        net.next_call.set(id);
        let (answer, answered) = async_channel::bounded(1);
        net.pending.borrow_mut().insert(id, answer);
        let _filed = Filed { net, id };
        let mut frame = Vec::with_capacity(FORWARD_HEADER_BYTES + call.len());
        frame.extend_from_slice(&id.to_le_bytes());
        frame.extend_from_slice(&u32::try_from(shard).expect("few shards").to_le_bytes());
        frame.extend_from_slice(&call);
        net.send(address(node), TAG_FORWARD, frame);
        // The node layer bounds the wait (`FORWARD_TIMEOUT_MS`) by dropping this future.
        answered
            .recv()
            .await
            .map_err(|_| NodeError::Unavailable("the forwarding ended"))
    }

    fn replicated(&self) -> bool {
        true
    }

    fn cluster_nodes(&self) -> Vec<u64> {
        self.net
            .cluster
            .machines
            .iter()
            .map(|machine| machine.id)
            .collect()
    }

    fn stored_tenants(&self) -> Vec<Tenant> {
        self.tenants_file.borrow().clone()
    }

    fn store_tenants(&self, tenants: &[Tenant]) -> Result<(), String> {
        *self.tenants_file.borrow_mut() = tenants.to_vec();
        Ok(())
    }
}

/// Counts of the cluster's plumbing, for the trace's summary line.
#[derive(Default, Debug)]
pub struct Counters {
    pub shim_dropped: u64,
    pub http_dropped: u64,
    pub restarts: u64,
    /// Membership moves asked for (runs again of a move cut short included), and
    /// answered done.
    pub moves_asked: u64,
    pub moves_done: u64,
    /// Raft snapshot chunk requests followers sent, and answers leaders sent (chunks or
    /// errors); chunks a follower staged, and snapshots whose last chunk was staged and
    /// which raft-rs accepted (the next Ready installs them).
    pub snapshot_requests: u64,
    pub snapshot_answers: u64,
    pub snapshot_chunks: u64,
    pub snapshots_accepted: u64,
}

/// The whole cluster: the machines and what the checks gather while the run goes.
pub struct Cluster {
    /// The group's first voters (nodes 1..=`initial`), then the spares: nodes outside
    /// every group until a membership change moves replicas onto them.
    pub machines: Vec<Rc<Machine>>,
    initial: usize,
    /// Every partition's members as its serving leader last showed them (all partitions
    /// are changed alike, so partition 0's): the nodes clients call, since a node
    /// outside partition 0's group does not follow the tenant and queue directories.
    members: RefCell<Vec<u64>>,
    pub history: Rc<RefCell<History>>,
    start: madsim::time::Instant,
    config: EngineConfig,
    service: ServiceConfig,
    shards: usize,
    hop_ms_max: u64,
    pub net: NetKnobs,
    /// Faults are on (the shim's duplication and reordering).
    pub faults: Cell<bool>,
    serial: Cell<u64>,
    /// (partition, term) -> the node seen serving as leader then.
    leaders: RefCell<BTreeMap<(u32, u64), u64>>,
    /// (partition, offset) -> the term a replica held there below its applied index, and
    /// that replica.
    terms: RefCell<BTreeMap<(u32, u64), (u64, u64)>>,
    /// Raft safety violations seen while running.
    pub violations: RefCell<Vec<String>>,
    /// The tenants as partition 0 holds them, once created.
    tenants: RefCell<Vec<Tenant>>,
    pub counters: RefCell<Counters>,
    /// A membership move (from, to) asked for and not yet answered done: the next one is
    /// this one again (`cluster_nemesis::change_membership`).
    pub move_pending: Cell<Option<(u64, u64)>>,
    /// A membership move's admin request is under way.
    pub move_running: Cell<bool>,
    /// The madsim node the clients' packets leave from (the simulator's own node has no
    /// address).
    clients: RefCell<Option<madsim::runtime::NodeHandle>>,
}

impl Cluster {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        nodes: usize,
        spares: usize,
        partitions: usize,
        shards: usize,
        hop_ms_max: u64,
        disk_latency_ms_max: u64,
        config: EngineConfig,
        service: ServiceConfig,
        net: NetKnobs,
        start: madsim::time::Instant,
        history: Rc<RefCell<History>>,
    ) -> Rc<Cluster> {
        let machines = (1..=(nodes + spares) as u64)
            .map(|id| {
                let disks: Vec<SimDisk> = (0..partitions)
                    .map(|_| SimDisk::new(thread_rng().gen()))
                    .collect();
                Rc::new(Machine {
                    id,
                    storages: disks
                        .iter()
                        .map(|disk| SlowDisk::new(disk.clone(), disk_latency_ms_max))
                        .collect(),
                    disks,
                    wall_offset: Rc::new(Cell::new(0)),
                    tenant_seed: thread_rng().gen(),
                    tenants_file: Rc::new(RefCell::new(Vec::new())),
                    node: Cell::new(None),
                    boot: RefCell::new(None),
                    slow_ms: Cell::new(0),
                    down: Cell::new(false),
                    boots: Cell::new(0),
                })
            })
            .collect();
        let cluster = Rc::new(Cluster {
            machines,
            initial: nodes,
            members: RefCell::new((1..=nodes as u64).collect()),
            history,
            start,
            config,
            service,
            shards,
            hop_ms_max,
            net,
            faults: Cell::new(false),
            serial: Cell::new(0),
            leaders: RefCell::new(BTreeMap::new()),
            terms: RefCell::new(BTreeMap::new()),
            violations: RefCell::new(Vec::new()),
            tenants: RefCell::new(Vec::new()),
            counters: RefCell::new(Counters::default()),
            move_pending: Cell::new(None),
            move_running: Cell::new(false),
            clients: RefCell::new(None),
        });
        CLUSTER.with(|slot| *slot.borrow_mut() = Some(cluster.clone()));
        cluster
    }

    /// Builds every madsim node; each boots at once (`boot`).
    pub fn launch(&self) {
        let handle = madsim::runtime::Handle::current();
        let clients = handle
            .create_node()
            .name("clients")
            .ip(IpAddr::V4(Ipv4Addr::new(10, 0, 1, 1)))
            .build();
        *self.clients.borrow_mut() = Some(clients);
        for (index, machine) in self.machines.iter().enumerate() {
            let address = address(machine.id);
            let node = handle
                .create_node()
                .name(format!("n{}", machine.id))
                .ip(address.ip())
                .init(move || boot(index))
                .build();
            machine.node.set(Some(node.id()));
        }
    }

    /// The run is over: forgets every boot (their runtimes point back at the cluster)
    /// and the thread's registry.
    pub fn close(&self) {
        // Killing every madsim node drops its tasks' futures. madsim does not drop the
        // tasks still pending when its runtime is dropped, and a task whose waker sits in
        // state it holds itself (an engine's waiters) keeps that state alive: each seed of
        // a sweep leaked its cluster, about 100 MB, until a 300-seed sweep ran out of memory.
        let handle = madsim::runtime::Handle::current();
        for machine in &self.machines {
            if let Some(node) = machine.node.get() {
                handle.kill(node);
            }
            machine.boot.borrow_mut().take();
        }
        if let Some(clients) = self.clients.borrow_mut().take() {
            handle.kill(clients.id());
        }
        CLUSTER.with(|slot| slot.borrow_mut().take());
    }

    /// The machine of node `id`.
    pub fn machine(&self, id: u64) -> &Rc<Machine> {
        &self.machines[usize::try_from(id - 1).expect("fits")]
    }

    /// The node that node `id`'s replica of `partition` names as leader, if it runs.
    pub fn leader_seen_by(&self, id: u64, partition: u32) -> Option<u64> {
        let boot = self.machine(id).boot.borrow().clone()?;
        boot.local.engine(partition)?.leader_id()
    }

    /// Whether every partition is led by its preferred node.
    fn leads_preferred(&self) -> bool {
        let voters = self.initial_voters();
        (0..self.partitions()).all(|partition| {
            let preferred = sluice_node::replication::preferred_leader(partition, &voters);
            preferred.is_some_and(|id| {
                self.machine(id).boot.borrow().as_ref().is_some_and(|boot| {
                    boot.local
                        .engine(partition)
                        .is_some_and(|engine| engine.is_serving_leader())
                })
            })
        })
    }

    /// Whether every member's replica of every partition applied the same index (as its
    /// serving leader shows the members), and all nodes run.
    pub fn settled(&self) -> bool {
        let boots = self.boots();
        boots.len() == self.machines.len()
            && (0..self.partitions()).all(|partition| {
                let Some(members) = self.members_of(partition) else {
                    return false;
                };
                let applied: Vec<Option<(u64, u64)>> = boots
                    .iter()
                    .filter(|(id, _)| members.contains(id))
                    .map(|(_, boot)| {
                        let engine = boot.local.engine(partition)?;
                        Some((engine.applied_index(), engine.commit_index()))
                    })
                    .collect();
                applied.iter().all(|a| a.is_some() && *a == applied[0])
                    && boots.iter().any(|(_, boot)| {
                        boot.local
                            .engine(partition)
                            .is_some_and(|engine| engine.is_serving_leader())
                    })
            })
    }

    /// The voters every group starts with.
    pub fn initial_voters(&self) -> Vec<u64> {
        (1..=self.initial as u64).collect()
    }

    /// The members (voters, learners, outgoing voters) of `partition` as a running
    /// serving leader of it shows them; `None` without one.
    pub fn members_of(&self, partition: u32) -> Option<Vec<u64>> {
        let membership = self.membership_of(partition)?;
        let mut members = membership.voters;
        members.extend(membership.learners);
        members.extend(membership.outgoing);
        members.sort_unstable();
        members.dedup();
        Some(members)
    }

    /// The configuration of `partition` at a running serving leader of it.
    fn membership_of(&self, partition: u32) -> Option<Membership> {
        self.boots().into_iter().find_map(|(_, boot)| {
            let engine = boot.local.engine(partition)?;
            engine.is_serving_leader().then(|| engine.membership())
        })
    }

    /// The voters of partition 0 as its serving leader now shows them, else as one last
    /// did: the nodes that follow the directories, which clients call.
    pub fn client_nodes(&self) -> Vec<u64> {
        let voters = self.membership_of(0).map(|membership| membership.voters);
        if let Some(voters) = voters.filter(|voters| !voters.is_empty()) {
            *self.members.borrow_mut() = voters;
        }
        self.members.borrow().clone()
    }

    pub fn partitions(&self) -> u32 {
        u32::try_from(self.machines[0].disks.len()).expect("few partitions")
    }

    /// A nemesis line in the trace, at true time.
    pub fn note(&self, what: String) {
        self.history.borrow_mut().events.push(Event {
            at_ms: elapsed_ms(self.start),
            client: 0,
            kind: EventKind::Nemesis(what),
        });
    }

    /// The running boots.
    pub fn boots(&self) -> Vec<(u64, Rc<Boot>)> {
        self.machines
            .iter()
            .filter_map(|machine| Some((machine.id, machine.boot.borrow().clone()?)))
            .collect()
    }

    fn slow_between(&self, from: u64, to: SocketAddr) -> u64 {
        let to = self
            .machines
            .iter()
            .find(|machine| address(machine.id) == to)
            .map_or(0, |machine| machine.slow_ms.get());
        self.machines[usize::try_from(from - 1).expect("fits")]
            .slow_ms
            .get()
            .max(to)
    }

    /// One serving leader per (partition, term), across nodes: records `node` as the
    /// leader of `partition` in `term`, a violation if another node served then. A new
    /// one is a failover in the history, at the current serial.
    fn saw_leader(&self, partition: u32, term: u64, node: u64) {
        let known = *self.leaders.borrow().get(&(partition, term)).unwrap_or(&0);
        if known == node {
            return;
        }
        if known != 0 {
            self.violations.borrow_mut().push(format!(
                "raft: two leaders of p{partition} in term {term}: n{known} and n{node}"
            ));
            return;
        }
        self.leaders.borrow_mut().insert((partition, term), node);
        let serial = self.serial.get();
        self.history.borrow_mut().events.push(Event {
            at_ms: elapsed_ms(self.start),
            client: 0,
            kind: EventKind::Failover {
                serial,
                partition: u16::try_from(partition).expect("few partitions"),
                term,
                node,
            },
        });
    }

    /// Every running replica's serving leadership, into `saw_leader`.
    fn scan_leaders(&self) {
        for (id, boot) in self.boots() {
            for partition in 0..self.partitions() {
                if let Some(engine) = boot.local.engine(partition) {
                    if engine.is_serving_leader() {
                        self.saw_leader(partition, engine.raft_term(), id);
                    }
                }
            }
        }
    }

    /// Committed entries never change: the term of every entry at or below a replica's
    /// applied index (the last `TERM_CHECK_WINDOW` of them) agrees with what any replica
    /// held there before.
    pub fn check_terms(&self) {
        for (id, boot) in self.boots() {
            for partition in 0..self.partitions() {
                let Some(engine) = boot.local.engine(partition) else {
                    continue;
                };
                let applied = engine.applied_index();
                let log = engine.log();
                let from = applied
                    .saturating_sub(TERM_CHECK_WINDOW)
                    .max(log.start_offset().0);
                for offset in from..applied {
                    let Some(term) = log.term_at(Offset(offset)) else {
                        continue;
                    };
                    let mut terms = self.terms.borrow_mut();
                    let (known, first) = *terms.entry((partition, offset)).or_insert((term, id));
                    if known != term {
                        self.violations.borrow_mut().push(format!(
                            "raft: p{partition} entry {offset} below applied index {applied} \
                             has term {term} on n{id}, term {known} on n{first}"
                        ));
                    }
                }
            }
        }
    }

    /// Takes the next serial: first notes any new serving leader (so a delivery by it
    /// completes after its failover), then records the queue times of the running nodes
    /// at the new serial: the lowest (a delay's earliest start) and the highest (the
    /// most any leader's clock may have reached), and the entry node's wall gap.
    fn take_serial(&self, entry: &ClusterRuntime) -> u64 {
        self.scan_leaders();
        let serial = self.serial.get() + 1;
        self.serial.set(serial);
        let times: Vec<u64> = self
            .boots()
            .iter()
            .map(|(_, boot)| boot.runtime.now_ms())
            .chain(std::iter::once(entry.now_ms()))
            .collect();
        let low = *times.iter().min().expect("the entry node");
        let high = *times.iter().max().expect("the entry node");
        let gap = i64::try_from(entry.wall_ms()).expect("fits")
            - i64::try_from(entry.now_ms()).expect("fits");
        let mut history = self.history.borrow_mut();
        history.queue_ms.insert(serial, low);
        history.queue_max_ms.insert(serial, high);
        history.wall_gap_ms.insert(serial, gap);
        serial
    }

    /// The lowest queue time of the running nodes (for the drain's wait), if any runs.
    pub fn queue_ms_low(&self) -> Option<u64> {
        self.boots()
            .iter()
            .map(|(_, boot)| boot.runtime.now_ms())
            .min()
    }

    /// Sends a client's request to node `id` over the simulated network and waits for
    /// what becomes of it.
    pub async fn handle(&self, id: u64, parts: Parts, body: Bytes) -> Reached {
        let slot = Arc::new(Mutex::new(Slot::Pending));
        let (answer, answered) = async_channel::bounded(1);
        let packet = HttpPacket {
            parts,
            body,
            slot: slot.clone(),
            answer,
        };
        let clients = self.clients.borrow().clone().expect("launched");
        // Leaves from an endpoint of its own on the clients' node.
        let sent = clients.spawn(async move {
            let endpoint = Endpoint::bind("0.0.0.0:0").await?;
            endpoint
                .send_to_raw(address(id), TAG_HTTP, Box::new(packet))
                .await
        });
        if !matches!(sent.await, Ok(Ok(()))) {
            return Reached::Refused;
        }
        // Resolves when the node answers, or drops the packet or its own answer channel
        // (down, crashed, the packet lost).
        let served = answered.recv().await;
        let mut slot = slot.lock().expect("no poisoned lock");
        match (served, *slot) {
            (Ok(served), _) => Reached::Served(served),
            (Err(_), Slot::Taken(serial)) => Reached::Lost { serial },
            (Err(_), _) => {
                *slot = Slot::Abandoned;
                Reached::Refused
            }
        }
    }

    /// Serves one client's request on the node of `boot` with the server's
    /// `service::handle` at a random shard, as the single-node simulation does.
    async fn serve(&self, boot: Rc<Boot>, packet: HttpPacket) {
        let HttpPacket {
            parts,
            body,
            slot,
            answer,
        } = packet;
        let serial = {
            let mut slot = slot.lock().expect("no poisoned lock");
            if *slot != Slot::Pending {
                return;
            }
            let serial = self.take_serial(&boot.runtime);
            *slot = Slot::Taken(serial);
            serial
        };
        let served_ms = now_ms(self.start);
        let local = &boot.local;
        let entry = thread_rng().gen_range(0..local.shard_count());
        let shard = &**local.shard(entry);
        let response = if parts.uri.path() == crate::kafka::KAFKA_PATH {
            crate::kafka::serve_connection(shard, &body).await
        } else {
            service::handle(shard, &self.service, &parts, &body).await
        };
        let done_serial = self.take_serial(&boot.runtime);
        let done_ms = now_ms(self.start);
        let _ = answer.try_send(Served {
            serial,
            done_serial,
            served_ms,
            done_ms,
            response,
        });
    }

    /// Creates the tenants through node 1 (retried until partition 0 has a leader) and
    /// waits until every node's directory holds them; true when done.
    pub async fn create_tenants(&self) -> bool {
        // First every partition's lead settles on its preferred node (the balancing
        // runs every 3 s), so setup meets no leader change.
        for _ in 0..100 {
            sleep_ms(1_000).await;
            if self.settled() && self.leads_preferred() {
                break;
            }
        }
        for _ in 0..600 {
            let Some(boot) = self.machines[0].boot.borrow().clone() else {
                sleep_ms(100).await;
                continue;
            };
            let mut all = Vec::new();
            for name in TENANT_NAMES {
                let known = boot.local.tenants().by_name(name).cloned();
                match known {
                    Some(tenant) => all.push(tenant),
                    None => {
                        if let Err(error) = boot.local.create_tenant(name, None).await {
                            self.note(format!("setup: tenant {name}: {error}"));
                        }
                        break;
                    }
                }
            }
            if all.len() == TENANT_NAMES.len() && self.everyone_knows(&all) {
                *self.tenants.borrow_mut() = all;
                return true;
            }
            sleep_ms(100).await;
        }
        false
    }

    /// Whether every first voter runs and its directory holds `tenants`.
    fn everyone_knows(&self, tenants: &[Tenant]) -> bool {
        let voters = self.initial_voters();
        let boots: Vec<_> = self
            .boots()
            .into_iter()
            .filter(|(id, _)| voters.contains(id))
            .collect();
        boots.len() == voters.len()
            && boots.iter().all(|(_, boot)| {
                tenants.iter().all(|tenant| {
                    boot.local
                        .tenants()
                        .by_name(&tenant.name)
                        .is_some_and(|known| known.ak == tenant.ak)
                })
            })
    }

    /// The admin's credentials (the admin API).
    pub fn admin_credentials(&self) -> crate::api::Credentials {
        crate::api::Credentials {
            project: String::new(),
            ak: self.service.admin_ak.clone(),
            sk: self.service.admin_sk.clone(),
            token: None,
            v1: false,
        }
    }

    pub fn tenants(&self) -> Vec<Tenant> {
        self.tenants.borrow().clone()
    }

    /// Power loss or a process kill of node `id`: its madsim node is killed (every task
    /// ends, its network is reset), and with `power_loss` every disk loses or tears its
    /// unsynced writes. It stays down until `restart`.
    pub fn kill(&self, id: u64, power_loss: bool) {
        let machine = &self.machines[usize::try_from(id - 1).expect("fits")];
        if let Some(node) = machine.node.get() {
            madsim::runtime::Handle::current().kill(node);
        }
        self.end_boot(machine);
        machine.down.set(true);
        if power_loss {
            let modes: Vec<String> = machine
                .disks
                .iter()
                .map(|disk| format!("{:?}", disk.crash()))
                .collect();
            self.note(format!("n{id}: power loss ({})", modes.join(" ")));
        } else {
            self.note(format!("n{id}: killed"));
        }
    }

    /// Starts node `id` again (its init task boots it).
    pub fn restart(&self, id: u64) {
        let machine = &self.machines[usize::try_from(id - 1).expect("fits")];
        self.end_boot(machine);
        machine.down.set(false);
        if let Some(node) = machine.node.get() {
            // A kill first: it closes the node's sockets (a restart alone does not).
            let handle = madsim::runtime::Handle::current();
            handle.kill(node);
            handle.restart(node);
        }
        self.counters.borrow_mut().restarts += 1;
        self.note(format!("n{id}: restarted"));
    }

    /// Forgets a node's boot, keeping its last queue time for the checker.
    fn end_boot(&self, machine: &Machine) {
        if let Some(boot) = machine.boot.borrow_mut().take() {
            let last = boot.runtime.now_ms();
            let serial = self.serial.get();
            self.history.borrow_mut().boot_ends.push((serial, last));
        }
    }

    /// Nodes whose node layer took a partition out of service after a storage fault:
    /// they restart (no power loss), as the server's shard reopens the partition.
    pub fn restart_faulted(&self) {
        let faulted: Vec<u64> = self
            .boots()
            .iter()
            .filter(|(_, boot)| boot.local.faults() > 0)
            .map(|(id, _)| *id)
            .collect();
        for id in faulted {
            self.note(format!("n{id}: storage fault; restarting"));
            self.restart(id);
        }
    }
}

/// The init task of node `index`'s madsim node: opens its engines, starts the node layer
/// and the cluster driver, serves until killed.
async fn boot(index: usize) {
    let cluster = CLUSTER
        .with(|slot| slot.borrow().clone())
        .expect("a cluster runs on this thread");
    let machine = cluster.machines[index].clone();
    let endpoint = Endpoint::bind(("0.0.0.0", PORT))
        .await
        .expect("the node's port is free");
    let net = Rc::new(NodeNet {
        id: machine.id,
        endpoint,
        pending: RefCell::new(BTreeMap::new()),
        // Call ids never repeat across boots: a late answer to a call of the node's
        // previous boot must not find a new call under the same id (the server's calls
        // ride connections that end with the process, so none arrives there).
        next_call: Cell::new((machine.boots.get() + 1) << 32),
        sends_in_flight: Rc::new(Cell::new(0)),
        http_in_flight: Cell::new(0),
        cluster: cluster.clone(),
    });
    let local = loop {
        match open(&cluster, &machine, net.clone()).await {
            Some(local) => break Rc::new(local),
            None => sleep_ms(REOPEN_PAUSE_MS).await,
        }
    };
    let boot = Rc::new(Boot {
        runtime: local.runtime().clone(),
        local: local.clone(),
    });
    *machine.boot.borrow_mut() = Some(boot.clone());
    machine.boots.set(machine.boots.get() + 1);
    // The cluster driver: per shard a ticker and per owned engine an outbound loop.
    let shards = local.shard_count();
    let mut drivers = Vec::with_capacity(shards);
    for shard in 0..shards {
        let owned: Vec<u32> = (0..local.partition_count())
            .filter(|p| usize::try_from(*p).expect("fits") % shards == shard)
            .collect();
        let driver = Rc::new(RaftDriver::new(machine.id, owned.clone()));
        let host = Rc::new(ShardRaft {
            local: local.clone(),
            shard,
            net: net.clone(),
            cluster: cluster.clone(),
            snapshots: Rc::new(SnapshotCarrier::new(SnapshotNet(net.clone()))),
        });
        for partition in owned {
            if let Some(engine) = local.engine(partition) {
                let (driver, host) = (driver.clone(), host.clone());
                madsim::task::spawn_local(async move {
                    outbound_loop(&driver, &*host, partition, engine).await;
                });
            }
        }
        {
            let (driver, host) = (driver.clone(), host.clone());
            madsim::task::spawn_local(async move { driver.ticker(&*host).await });
        }
        drivers.push((driver, host));
    }
    let drivers = Rc::new(drivers);
    madsim::task::spawn_local(raft_inbound(net.clone(), drivers));
    madsim::task::spawn_local(forward_inbound(net.clone(), local.clone()));
    madsim::task::spawn_local(forward_replies(net.clone()));
    // As the server's start-up: shard 0 repairs the metadata (deferred in a cluster when
    // it fails: it writes to partitions other nodes lead) and follows partition 0. The
    // directories this replica of partition 0 holds are published before clients are
    // served (a request before would find no tenant).
    if let Err(error) = local.reconcile().await {
        cluster.note(format!(
            "n{}: metadata repair deferred: {error}",
            machine.id
        ));
    }
    let _ = local.refresh_metadata_if_changed().await;
    {
        let local = local.clone();
        madsim::task::spawn_local(async move { local.shard(0).follow_metadata().await });
    }
    madsim::task::spawn_local(http_inbound(net.clone(), boot.clone()));
    cluster.note(format!("n{}: booted", machine.id));
    // The node's own loop: time-driven work at the engines' deadlines.
    loop {
        let now = local.runtime().now_ms();
        let mut wake = now + TICK_INTERVAL_MS;
        if local.tick(now).await.is_ok() {
            if let Some(deadline) = local.next_deadline_ms() {
                wake = wake.min(deadline.max(now + 1));
            }
        }
        sleep_ms(wake.saturating_sub(local.runtime().now_ms()).max(1)).await;
    }
}

/// Opens the node's engines as replicas of their partitions' groups and builds its node
/// layer; `None` when an engine does not open (a disk fault: try again).
async fn open(cluster: &Rc<Cluster>, machine: &Machine, net: Rc<NodeNet>) -> Option<Local> {
    let mut runtime = ClusterRuntime {
        start: cluster.start,
        wall_offset: machine.wall_offset.clone(),
        queue: QueueClock::start(Reading {
            wall_ms: 0,
            mono_ms: 0,
        }),
        hop_ms_max: cluster.hop_ms_max,
        net,
        tenants_file: machine.tenants_file.clone(),
    };
    runtime.queue = QueueClock::start(runtime.reading());
    let mut engines = Vec::with_capacity(machine.storages.len());
    for (partition, storage) in machine.storages.iter().enumerate() {
        // raft-rs draws its election timeout from an unseeded generator: a fixed one per
        // replica and boot, from the seed, keeps the run deterministic.
        let replica = ReplicaConfig {
            election_timeout_ticks: Some(thread_rng().gen_range(10..20)),
            ..ReplicaConfig::member(machine.id, cluster.initial_voters())
        };
        match Engine::open_replica(storage.clone(), cluster.config, replica, runtime.now_ms()).await
        {
            Ok(engine) => engines.push(engine),
            Err(error) => {
                cluster.note(format!(
                    "n{}: p{partition}: open failed: {error}",
                    machine.id
                ));
                return None;
            }
        }
    }
    Some(Local::new(
        engines,
        runtime,
        machine.tenant_seed,
        cluster.shards,
    ))
}

/// One shard's view for the cluster driver.
struct ShardRaft {
    local: Rc<Local>,
    shard: usize,
    net: Rc<NodeNet>,
    cluster: Rc<Cluster>,
    /// Raft snapshot chunks carried to and from the other nodes (the server's carrier).
    snapshots: Rc<SnapshotCarrier<SnapshotNet>>,
}

/// A Raft snapshot chunk request or answer from node `from`: the carrier's kind and
/// payload. It travels with the Raft messages (their tag, their inbound task), told apart
/// by its type.
#[derive(Clone)]
struct SnapshotPacket {
    from: u64,
    kind: u8,
    payload: Vec<u8>,
}

/// The node's endpoint and madsim's tasks, as a snapshot carrier's link.
struct SnapshotNet(Rc<NodeNet>);

impl SnapshotLink for SnapshotNet {
    /// As a [`SnapshotPacket`] with the Raft messages, through the node's send shim.
    fn send_snapshot(&self, to: u64, kind: u8, payload: Vec<u8>) -> Result<(), SendRefused> {
        if to == 0 || to > self.0.cluster.machines.len() as u64 {
            return Err(SendRefused::Refused);
        }
        {
            let mut counters = self.0.cluster.counters.borrow_mut();
            if kind == KIND_SNAPSHOT_REQUEST {
                counters.snapshot_requests += 1;
            } else {
                counters.snapshot_answers += 1;
            }
        }
        let packet = SnapshotPacket {
            from: self.0.id,
            kind,
            payload,
        };
        self.0.send(address(to), TAG_RAFT, packet);
        Ok(())
    }

    fn spawn(&self, task: impl std::future::Future<Output = ()> + 'static) {
        madsim::task::spawn_local(task);
    }

    fn chunk_staged(&self, _partition: u32, accepted: bool) {
        let mut counters = self.0.cluster.counters.borrow_mut();
        counters.snapshot_chunks += 1;
        if accepted {
            counters.snapshots_accepted += 1;
        }
    }
}

impl RaftHost for ShardRaft {
    type Storage = SlowDisk;

    fn raft_engine(&self, partition: u32) -> Option<Rc<Engine<SlowDisk>>> {
        if partition >= self.local.partition_count()
            || usize::try_from(partition).ok()? % self.local.shard_count() != self.shard
        {
            return None;
        }
        self.local.engine(partition)
    }

    fn drive_soon(&self, engine: Rc<Engine<SlowDisk>>) {
        madsim::task::spawn_local(async move { engine.drive().await });
    }

    fn send_raft(&self, to: u64, payload: Vec<u8>) -> Result<(), SendRefused> {
        if to == 0 || to > self.cluster.machines.len() as u64 {
            return Err(SendRefused::Refused);
        }
        self.net.send(address(to), TAG_RAFT, payload);
        Ok(())
    }

    async fn sleep_ms(&self, ms: u64) {
        sleep_ms(ms).await;
    }

    /// Asks the leader for the snapshot chunk the engine wants next, if any (as the
    /// server does).
    fn engine_ticked(&self, partition: u32, engine: &Engine<SlowDisk>) {
        self.snapshots.request_next(partition, engine);
    }

    /// Out of service; the supervisor restarts the node (`Cluster::restart_faulted`).
    fn failed(&self, partition: u32, error: &sluice_core::engine::types::EngineError) {
        use sluice_node::Host as _;
        self.local
            .shard(self.shard)
            .host()
            .storage_fault(partition, error);
    }

    /// One serving leader per term, at every tick.
    fn observe(&self, partition: u32, engine: Option<&Engine<SlowDisk>>) {
        if let Some(engine) = engine {
            if engine.is_serving_leader() {
                self.cluster
                    .saw_leader(partition, engine.raft_term(), engine.replica_id());
            }
        }
    }
}

/// Raft packets to this node, each to the shard owning its partition: a message to its
/// driver, a snapshot chunk or request ([`SnapshotPacket`]) to its carrier.
async fn raft_inbound(net: Rc<NodeNet>, drivers: Rc<Vec<(Rc<RaftDriver>, Rc<ShardRaft>)>>) {
    // Both payloads start with the partition (u32, little-endian).
    let shard_of = |payload: &[u8]| {
        let partition = payload
            .get(..4)
            .and_then(|prefix| prefix.try_into().ok())
            .map(u32::from_le_bytes);
        match partition {
            Some(partition) => usize::try_from(partition).unwrap_or(0) % drivers.len(),
            None => 0,
        }
    };
    // Ends when the node is killed (the task is dropped) or the endpoint fails.
    while let Ok((payload, _from)) = net.endpoint.recv_from_raw(TAG_RAFT).await {
        match payload.downcast::<Vec<u8>>() {
            Ok(bytes) => {
                let (driver, host) = &drivers[shard_of(&bytes)];
                driver.deliver_batch(&**host, [&bytes[..]]);
            }
            Err(payload) => {
                let Ok(packet) = payload.downcast::<SnapshotPacket>() else {
                    continue;
                };
                let (driver, host) = &drivers[shard_of(&packet.payload)];
                if !host
                    .snapshots
                    .receive(&**host, packet.from, packet.kind, &packet.payload)
                {
                    driver.count_dropped();
                }
            }
        }
    }
}

/// Calls other nodes forward to this one: each runs as a task of its own on its shard
/// (`NodeShard::serve_forwarded`, which bounds how many run) and its answer goes back to
/// the caller's address.
async fn forward_inbound(net: Rc<NodeNet>, local: Rc<Local>) {
    // Ends when the node is killed or the endpoint fails.
    while let Ok((payload, from)) = net.endpoint.recv_from_raw(TAG_FORWARD).await {
        let Ok(bytes) = payload.downcast::<Vec<u8>>() else {
            continue;
        };
        if bytes.len() < FORWARD_HEADER_BYTES {
            continue;
        }
        let id = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"));
        let shard = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
        let Some(shard) = usize::try_from(shard)
            .ok()
            .filter(|shard| *shard < local.shard_count())
        else {
            continue;
        };
        let (net, local) = (net.clone(), local.clone());
        madsim::task::spawn_local(async move {
            let answer = local
                .shard(shard)
                .serve_forwarded(&bytes[FORWARD_HEADER_BYTES..])
                .await;
            let mut frame = Vec::with_capacity(8 + answer.len());
            frame.extend_from_slice(&id.to_le_bytes());
            frame.extend_from_slice(&answer);
            net.send(from, TAG_FORWARD_REPLY, frame);
        });
    }
}

/// Answers to this node's forwarded calls: each to the call waiting under its id (an
/// answer nobody waits for is dropped).
async fn forward_replies(net: Rc<NodeNet>) {
    // Ends when the node is killed or the endpoint fails.
    while let Ok((payload, _from)) = net.endpoint.recv_from_raw(TAG_FORWARD_REPLY).await {
        let Ok(bytes) = payload.downcast::<Vec<u8>>() else {
            continue;
        };
        if bytes.len() < 8 {
            continue;
        }
        let id = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"));
        let waiting = net.pending.borrow_mut().remove(&id);
        if let Some(waiting) = waiting {
            let _ = waiting.try_send(bytes[8..].to_vec());
        }
    }
}

/// Clients' requests to this node, each served as a task of its own (at most
/// `HTTP_IN_FLIGHT_MAX` at once; more are dropped, which the client sees as refused).
async fn http_inbound(net: Rc<NodeNet>, boot: Rc<Boot>) {
    // Ends when the node is killed or the endpoint fails.
    while let Ok((payload, _from)) = net.endpoint.recv_from_raw(TAG_HTTP).await {
        let Ok(packet) = payload.downcast::<HttpPacket>() else {
            continue;
        };
        if net.http_in_flight.get() >= HTTP_IN_FLIGHT_MAX {
            net.cluster.counters.borrow_mut().http_dropped += 1;
            continue;
        }
        net.http_in_flight.set(net.http_in_flight.get() + 1);
        let (net, boot) = (net.clone(), boot.clone());
        madsim::task::spawn_local(async move {
            let cluster = net.cluster.clone();
            cluster.serve(boot, *packet).await;
            net.http_in_flight.set(net.http_in_flight.get() - 1);
        });
    }
}

/// Final Raft checks, once healed and settled: every member's replica of a partition (as
/// its serving leader shows the members) reached the same applied index, holds the same records below it (read from its log), and shows
/// the same replicated state (queues, groups' acked and dead-letter counts).
pub async fn final_checks(cluster: &Cluster) -> Vec<String> {
    let mut violations = Vec::new();
    let boots = cluster.boots();
    if boots.len() != cluster.machines.len() {
        violations.push(format!(
            "raft: only {} of {} nodes running at the end",
            boots.len(),
            cluster.machines.len()
        ));
        return violations;
    }
    cluster.check_terms();
    // Every move done: each partition is held by the same voters, as many as at first.
    if cluster.move_pending.get().is_none() {
        let first = cluster.membership_of(0);
        for partition in 0..cluster.partitions() {
            let membership = cluster.membership_of(partition);
            let whole = membership.as_ref().is_some_and(|membership| {
                membership.voters.len() == cluster.initial_voters().len()
                    && membership.learners.is_empty()
                    && !membership.joint()
            });
            if !whole || membership.as_ref().map(|m| &m.voters) != first.as_ref().map(|m| &m.voters)
            {
                violations.push(format!(
                    "membership: p{partition} ends as {membership:?}, p0 as {first:?}"
                ));
            }
        }
    }
    // First every member replica's applied index and state at one instant (no await
    // between them: the leaders' timers go on logging, e.g. the nacks of leases that
    // expire after settling), then their logs.
    let mut replicas = Vec::new();
    for partition in 0..cluster.partitions() {
        // A node the partition's group no longer (or never) held keeps what it had.
        let Some(members) = cluster.members_of(partition) else {
            violations.push(format!(
                "raft: p{partition} has no serving leader at the end"
            ));
            continue;
        };
        let mut seen: Option<(u64, u64, String)> = None;
        for (id, boot) in boots.iter().filter(|(id, _)| members.contains(id)) {
            let Some(engine) = boot.local.engine(partition) else {
                violations.push(format!(
                    "raft: p{partition} out of service on n{id} at the end"
                ));
                continue;
            };
            let applied = engine.applied_index();
            let state = state_summary(&engine, &cluster.tenants());
            match &seen {
                None => seen = Some((*id, applied, state)),
                Some((first, first_applied, first_state)) => {
                    if applied != *first_applied {
                        violations.push(format!(
                            "raft: p{partition} applied index {applied} on n{id}, \
                             {first_applied} on n{first} after settling (n{id}: commit {}, \
                             term {}, leader {:?}, failure {:?})",
                            engine.commit_index(),
                            engine.raft_term(),
                            engine.leader_id(),
                            engine.failure()
                        ));
                    } else if state != *first_state {
                        violations.push(format!(
                            "raft: p{partition} at applied index {applied}: n{id} shows \
                             {state}, n{first} shows {first_state}"
                        ));
                    }
                }
            }
            replicas.push((partition, *id, engine, applied));
        }
    }
    let mut first_records: BTreeMap<u32, (u64, Vec<u64>)> = BTreeMap::new();
    for (partition, id, engine, applied) in replicas {
        let records = match record_hashes(&engine, applied).await {
            Ok(records) => records,
            Err(error) => {
                violations.push(format!("raft: p{partition} on n{id}: {error}"));
                continue;
            }
        };
        match first_records.get(&partition) {
            None => {
                first_records.insert(partition, (id, records));
            }
            Some((first, first_records)) => {
                let common = records.len().min(first_records.len());
                // 0: below that replica's log start (compacted, or it joined from a
                // snapshot), so nothing to compare.
                let differs = |i: &usize| {
                    records[*i] != 0 && first_records[*i] != 0 && records[*i] != first_records[*i]
                };
                if let Some(offset) = (0..common).find(differs) {
                    violations.push(format!(
                        "raft: p{partition} committed record {offset} differs between \
                         n{id} and n{first}"
                    ));
                }
            }
        }
    }
    violations
}

/// A replica's replicated state as text: the tenants' queues, their groups' acked and
/// dead-letter counts.
fn state_summary(engine: &Engine<SlowDisk>, tenants: &[Tenant]) -> String {
    let mut text = String::new();
    for tenant in tenants {
        for queue in engine.queues_of(&tenant.project_id) {
            let Ok(info) = engine.queue_info(queue) else {
                continue;
            };
            text.push_str(&format!("{:?} {} {};", info.id, info.name, info.tenant));
            for (group, _) in &info.groups {
                if let Ok(stats) = engine.group_stats(queue, *group) {
                    text.push_str(&format!(
                        " {group:?}: acked {} dead {};",
                        stats.acked_total, stats.dead_letters
                    ));
                }
            }
        }
    }
    text
}

/// A hash of (term, time, attributes, payload) of each record below `applied`; 0 for
/// each below the log's start.
async fn record_hashes(engine: &Engine<SlowDisk>, applied: u64) -> Result<Vec<u64>, String> {
    let log = engine.log();
    let start = log.start_offset().0;
    let mut hashes = vec![0; usize::try_from(start.min(applied)).expect("fits")];
    let mut next = start;
    while next < applied {
        let records = log
            .read(Offset(next), 1 << 20)
            .await
            .map_err(|error| format!("cannot read record {next}: {error}"))?;
        if records.is_empty() {
            return Err(format!("lost committed record {next} (applied {applied})"));
        }
        for record in records.into_iter().take_while(|r| r.offset.0 < applied) {
            let term = log.term_at(record.offset).unwrap_or(0);
            let mut hash = xxhash_rust::xxh3::xxh3_64(&record.payload);
            hash ^= xxhash_rust::xxh3::xxh3_64(&record.attributes).rotate_left(17);
            hash ^= term.rotate_left(31) ^ record.timestamp_ms.rotate_left(47);
            hashes.push(hash);
            next = record.offset.0 + 1;
        }
    }
    Ok(hashes)
}
