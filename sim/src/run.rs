//! One seed end to end: knobs from the seed, the node, setup through the API, workload
//! under faults, healing, draining, and the checker. Each seed runs on a fresh thread with its own
//! madsim runtime, so nothing (not even std's per-thread hash keys) leaks between runs.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use madsim::rand::{thread_rng, Rng};
use madsim::task::JoinHandle;
use sluice_core::bugs::Bug;
use sluice_core::engine::{EngineConfig, EngineLimits};
use sluice_core::log::{LogConfig, VerifyOnOpen};
use sluice_core::sim_disk::{FaultRates, SimDisk};
use sluice_http::auth::SKEW_S_DEFAULT;
use sluice_http::dms::DmsConfig;
use sluice_http::service::ServiceConfig;

use crate::checker;
use crate::client::{self, Ctx, Knobs, Target, CONSUMERS_PER_GROUP, GROUPS, QUEUES};
use crate::cluster::{self, Cluster, NetKnobs};
use crate::cluster_nemesis;
use crate::history::{EventKind, History, Lane};
use crate::kafka;
use crate::node::Node;
use sluice_node::local::Runtime as _;

/// Simulated time for draining after healing: longer than any delay (5 s), visibility
/// (5 s) and node downtime together, so every stored message is consumed by then. Seeds
/// that step the node's wall clock may drain longer (`release_wait_ms`).
const DRAIN_MS: u64 = 30_000;

/// Simulated time after which a run counts as hung (a run takes 1 to 10 minutes).
const SIMULATED_MS_MAX: u64 = 3_600_000;

/// How much longer the run must drain so that `DRAIN_MS` pass after the latest release
/// time any send may have stored (its entry's queue time plus its delay; the engine stores
/// a little later than the entry): a delayed message stored by a boot whose clock ran ahead
/// waits for the queue time of a later boot to get there (up to twice
/// `client::WALL_OFFSET_MS_MAX`).
fn release_wait_ms(queue_now_ms: Option<u64>, history: &History) -> u64 {
    let Some(queue_now_ms) = queue_now_ms else {
        return 0;
    };
    let high_water = history.queue_high_water();
    let latest = history
        .events
        .iter()
        .filter_map(|event| match &event.kind {
            EventKind::Send { keys, outcome, .. } => {
                let (serial, done) = outcome.reached()?;
                // In a cluster the entry is the leader's, whose queue clock may run
                // ahead of the lowest one `release_bounds` starts a delay from, and a
                // duplicate's entry is an earlier attempt's: the delay may count from
                // the highest queue time any node reached by the completion.
                let reached = high_water.at(done.unwrap_or(u64::MAX));
                let latest = keys.iter().map(|key| {
                    let delay_ms = history.specs[*key as usize].delay_ms;
                    let high = history.release_bounds(*key, serial, done).1;
                    high.max(reached + delay_ms)
                });
                latest.max()
            }
            _ => None,
        })
        .max()
        .unwrap_or(0);
    (latest + DRAIN_MS).saturating_sub(queue_now_ms)
}

pub struct Report {
    pub seed: u64,
    pub knobs: String,
    pub history_hash: u64,
    pub events: usize,
    pub messages: usize,
    pub simulated_ms: u64,
    pub violations: Vec<String>,
    /// Occurrences of known bugs (FIXMEs in the checker): reported, not failing.
    pub known: Vec<String>,
    /// The readable trace, one event a line (simulated times only).
    pub trace: String,
    /// Raft snapshots a follower pulled whole and raft-rs accepted (the cluster
    /// simulation; 0 on one node).
    pub snapshots_accepted: u64,
}

pub fn run_seed(seed: u64) -> Report {
    run_seed_with_bugs(seed, &[])
}

/// [`run_seed`] with deliberate bugs on (`sluice_core::bugs`): they are set on the
/// seed's own thread, so seeds running side by side do not share them.
pub fn run_seed_with_bugs(seed: u64, bugs: &[Bug]) -> Report {
    run_seed_as(seed, bugs, None)
}

/// Which simulation a seed runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Nodes {
    /// The cluster simulation with the node count drawn from the seed (3, or 5 for one
    /// seed in four).
    Drawn,
    /// The cluster simulation with this many nodes.
    Exactly(usize),
}

/// [`run_seed_with_bugs`] of the cluster simulation (`crate::cluster`).
pub fn run_cluster_seed(seed: u64, bugs: &[Bug], nodes: Nodes) -> Report {
    run_seed_as(seed, bugs, Some(nodes))
}

/// One seed on a thread of its own; `cluster` picks the cluster simulation.
fn run_seed_as(seed: u64, bugs: &[Bug], cluster: Option<Nodes>) -> Report {
    let bugs = bugs.to_vec();
    let joined = std::thread::spawn(move || {
        sluice_core::bugs::set(&bugs);
        let runtime =
            madsim::runtime::Runtime::with_seed_and_config(seed, madsim::Config::default());
        match cluster {
            None => runtime.block_on(simulate(seed)),
            Some(nodes) => runtime.block_on(simulate_cluster(seed, nodes)),
        }
    })
    .join();
    joined.unwrap_or_else(|payload| {
        let message = payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "non-string panic".into());
        Report {
            seed,
            knobs: String::new(),
            history_hash: 0,
            events: 0,
            messages: 0,
            simulated_ms: 0,
            violations: vec![format!("panic: {message}")],
            known: Vec::new(),
            trace: String::new(),
            snapshots_accepted: 0,
        }
    })
}

fn engine_config(knobs: &Knobs) -> EngineConfig {
    EngineConfig {
        log: LogConfig {
            segment_bytes_max: knobs.segment_bytes_max,
            index_interval_bytes: 4096,
            preallocate_bytes: 64 * 1024,
            verify_on_open: VerifyOnOpen::Tail,
            cache_bytes_max: sluice_core::limits::LOG_CACHE_BYTES_DEFAULT,
            recycle_segments_max: sluice_core::limits::LOG_RECYCLE_SEGMENTS_DEFAULT,
        },
        limits: EngineLimits {
            groups_per_queue_max: 8,
            // Checks within a run's seconds, and some transactions dropped after the last.
            transaction_check_interval_ms: 3_000,
            transaction_checks_max: 3,
            ..EngineLimits::dms()
        },
        snapshot_every_records: knobs.snapshot_every_records,
    }
}

/// The service layer as the server configures it, except for short `ack_wait` and
/// `time_wait` minimums (the seed's visibility is 1 to 5 s; a consume may not long-poll),
/// a dedup window longer than a producer's retries of one batch, and the seed's queue
/// retention.
fn service_config(knobs: &Knobs) -> ServiceConfig {
    let default = DmsConfig::dms_default();
    ServiceConfig {
        dms: DmsConfig {
            ack_wait_s_min: 1,
            time_wait_s_min: 0,
            dedup_window_ms: 600_000,
            retention_minutes: knobs.retention_minutes.unwrap_or(default.retention_minutes),
            ..default
        },
        clock_skew_s_max: SKEW_S_DEFAULT,
        token_ttl_s: 3_600,
        token_key: [7; 32],
        admin_ak: "SIMADMINACCESSKEY000".into(),
        admin_sk: "SimAdminSecretKey0000000000000000000000".into(),
        endpoint: "http://sluice.sim:8080".into(),
        region: "sim-1".into(),
    }
}

/// The whole run of one seed; call it inside a madsim runtime seeded with `seed`.
pub async fn simulate(seed: u64) -> Report {
    let ctx = build(seed);
    client::setup(&ctx).await;
    kafka::setup(&ctx, partitions(&ctx)).await;
    unleash(&ctx);
    // A run that does not end within this much simulated time is a failure (a hang),
    // not a wait: the task panics and the seed reports it.
    let watchdog = madsim::task::spawn_local(async {
        madsim::time::sleep(Duration::from_millis(SIMULATED_MS_MAX)).await;
        panic!("the run did not end within {SIMULATED_MS_MAX} ms of simulated time");
    });
    let workload = spawn_workload(&ctx);
    let wake = wind_down(&ctx, workload).await;
    watchdog.abort();
    report(seed, &ctx, wake)
}

/// Simulated time the cluster gets, after the drain, to bring every replica to the same
/// applied index before the final checks.
const SETTLE_MS_MAX: u64 = 60_000;

/// The whole run of one seed of the cluster simulation (`crate::cluster`): as
/// [`simulate`], with the cluster's nemesis, and the Raft checks (while running, and once
/// healed and settled) added to the checker's verdict.
pub async fn simulate_cluster(seed: u64, nodes: Nodes) -> Report {
    let (ctx, cluster) = build_cluster(seed, nodes);
    cluster.launch();
    client::setup(&ctx).await;
    kafka::setup(&ctx, partitions(&ctx)).await;
    unleash(&ctx);
    cluster_nemesis::unleash(&cluster);
    let watchdog = madsim::task::spawn_local(async {
        madsim::time::sleep(Duration::from_millis(SIMULATED_MS_MAX)).await;
        panic!("the run did not end within {SIMULATED_MS_MAX} ms of simulated time");
    });
    let workload = spawn_workload(&ctx);
    let wake = wind_down(&ctx, workload).await;
    cluster_nemesis::settle(&cluster, SETTLE_MS_MAX).await;
    let mut raft = cluster.violations.borrow().clone();
    raft.extend(cluster::final_checks(&cluster).await);
    watchdog.abort();
    let mut report = report(seed, &ctx, wake);
    report.violations.extend(raft);
    report.knobs = format!(
        "nodes: {} (spares {}) {:?} {}",
        cluster.initial_voters().len(),
        cluster.machines.len() - cluster.initial_voters().len(),
        cluster.net,
        report.knobs
    );
    let counters = cluster.counters.borrow();
    report.trace.push_str(&format!("cluster: {counters:?}\n"));
    report.snapshots_accepted = counters.snapshots_accepted;
    drop(counters);
    cluster.close();
    report
}

/// Queue retention of the cluster seeds that compact their logs.
const SHORT_RETENTION_MINUTES: u64 = 1;

/// One cluster seed in four (by its number, not its random stream, so that the other
/// seeds run as they did before) compacts its logs: queues keep messages a minute
/// ([`SHORT_RETENTION_MINUTES`]), 64 KiB segments, an engine snapshot every 20 or 200
/// records. The log's start then passes what a node that was down, cut off or moved in
/// holds, and its leader sends it a Raft snapshot (`sluice_node::snapshot_transfer`);
/// retention's logged cuts (`Command::Trim`) run under every fault.
fn short_retention(seed: u64, knobs: Knobs) -> Knobs {
    if seed % 4 != 1 {
        return knobs;
    }
    Knobs {
        retention_minutes: Some(SHORT_RETENTION_MINUTES),
        segment_bytes_max: 64 * 1024,
        snapshot_every_records: knobs.snapshot_every_records.min(200),
        ..knobs
    }
}

/// The seed's knobs and its cluster (each machine one simulated disk per partition).
fn build_cluster(seed: u64, nodes: Nodes) -> (Rc<Ctx>, Rc<Cluster>) {
    let start = madsim::time::Instant::now();
    let knobs = short_retention(seed, Knobs::draw());
    let mut rng = thread_rng();
    let drawn = if rng.gen_range(0..4) == 0 { 5 } else { 3 };
    let nodes = match nodes {
        Nodes::Drawn => drawn,
        Nodes::Exactly(nodes) => nodes,
    };
    let net = NetKnobs {
        duplicate_ppm: [0, 10_000, 50_000][rng.gen_range(0..3)],
        reorder_ms_max: [0, 20, 100][rng.gen_range(0..3)],
        loss_ppm: [0, 10_000, 50_000][rng.gen_range(0..3)],
    };
    // A spare node (outside every group at first) in three seeds of four: the nemesis
    // moves replicas onto it and back (`cluster_nemesis::change_membership`).
    let spares = usize::from(rng.gen_range(0..4) != 0);
    drop(rng);
    let history = Rc::new(RefCell::new(History::default()));
    let cluster = Cluster::new(
        nodes,
        spares,
        usize::from(knobs.partitions),
        usize::from(knobs.shards),
        knobs.hop_ms_max,
        knobs.disk_latency_ms_max,
        engine_config(&knobs),
        service_config(&knobs),
        net,
        start,
        history.clone(),
    );
    let ctx = context(
        seed,
        Target::Cluster(cluster.clone()),
        knobs,
        history,
        start,
    );
    (ctx, cluster)
}

/// The seed's knobs, its node (one simulated disk per partition) and the context every
/// task shares. Draws from the seed's random stream, so the order of its steps is part
/// of the run.
fn build(seed: u64) -> Rc<Ctx> {
    let start = madsim::time::Instant::now();
    let knobs = Knobs::draw();
    let history = Rc::new(RefCell::new(History::default()));
    let disks = (0..knobs.partitions)
        .map(|_| SimDisk::new(thread_rng().gen()))
        .collect();
    let node = Rc::new(Node::new(
        disks,
        usize::from(knobs.shards),
        knobs.hop_ms_max,
        knobs.disk_latency_ms_max,
        engine_config(&knobs),
        service_config(&knobs),
        start,
        history.clone(),
    ));
    context(seed, Target::Single(node), knobs, history, start)
}

fn context(
    seed: u64,
    target: Target,
    knobs: Knobs,
    history: Rc<RefCell<History>>,
    start: madsim::time::Instant,
) -> Rc<Ctx> {
    Rc::new(Ctx {
        target,
        history,
        knobs,
        start,
        credentials: RefCell::new(Vec::new()),
        tokens: RefCell::new(Vec::new()),
        cut: Cell::new(None),
        routes: RefCell::new(Vec::new()),
        faults: Cell::new(false),
        link: client::LinkFaults::new(seed),
        draining: Cell::new(false),
        stopped: Cell::new(false),
        kafka: RefCell::new(kafka::KafkaHistory::default()),
    })
}

/// Starts every fault (after setup): the nemesis, drops and the disks' fault rates.
/// `heal` ends them.
fn unleash(ctx: &Ctx) {
    ctx.faults.set(true);
    let ppm = ctx.knobs.disk_fault_ppm;
    for disk in disks(ctx) {
        disk.set_fault_rates(FaultRates {
            write_eio_ppm: ppm,
            write_enospc_ppm: ppm,
            sync_eio_ppm: ppm,
            read_eio_ppm: ppm,
            read_bitflip_ppm: ppm,
        });
    }
}

/// The partitions of the node (of every node of the cluster).
fn partitions(ctx: &Ctx) -> u16 {
    match &ctx.target {
        Target::Single(_) => ctx.knobs.partitions,
        Target::Cluster(cluster) => u16::try_from(cluster.partitions()).expect("few partitions"),
    }
}

/// Every simulated disk of the run.
fn disks(ctx: &Ctx) -> Vec<SimDisk> {
    match &ctx.target {
        Target::Single(node) => node.disks.clone(),
        Target::Cluster(cluster) => cluster
            .machines
            .iter()
            .flat_map(|machine| machine.disks.iter().cloned())
            .collect(),
    }
}

/// The node's loop and the clients' tasks of one run.
struct Workload {
    node_loop: JoinHandle<()>,
    nemesis: JoinHandle<()>,
    consumers: Vec<JoinHandle<()>>,
    prober: JoinHandle<()>,
    churner: JoinHandle<()>,
    producers: Vec<JoinHandle<()>>,
}

/// Spawns the node's loop, the nemesis and the clients, numbering the clients from 1.
/// The order of spawns is part of the run.
fn spawn_workload(ctx: &Rc<Ctx>) -> Workload {
    let (node_loop, nemesis) = match &ctx.target {
        Target::Single(node) => (
            madsim::task::spawn_local(node.clone().run()),
            madsim::task::spawn_local(client::nemesis(ctx.clone())),
        ),
        Target::Cluster(cluster) => (
            madsim::task::spawn_local(cluster_nemesis::supervise(ctx.clone(), cluster.clone())),
            madsim::task::spawn_local(cluster_nemesis::nemesis(ctx.clone(), cluster.clone())),
        ),
    };
    let mut client_id = 1;
    let mut consumers = Vec::new();
    for (queue, spec) in QUEUES.iter().enumerate() {
        for group in 0..GROUPS.len() {
            for _ in 0..CONSUMERS_PER_GROUP {
                let task = client::consumer(ctx.clone(), client_id, queue, group, Lane::Main);
                consumers.push(madsim::task::spawn_local(task));
                client_id += 1;
            }
            if spec.redrive {
                let task = client::consumer(ctx.clone(), client_id, queue, group, Lane::Dead);
                consumers.push(madsim::task::spawn_local(task));
                client_id += 1;
            }
        }
    }
    let prober = madsim::task::spawn_local(client::prober(ctx.clone(), client_id));
    client_id += 1;
    let churner = madsim::task::spawn_local(client::churner(ctx.clone(), client_id));
    client_id += 1;
    let mut producers = Vec::new();
    for queue in 0..QUEUES.len() {
        producers.push(madsim::task::spawn_local(client::producer(
            ctx.clone(),
            client_id,
            queue,
        )));
        client_id += 1;
    }
    let kafka = kafka::producer(ctx.clone(), partitions(ctx));
    producers.push(madsim::task::spawn_local(kafka));
    // Transactions on the two NORMAL queues that are never deleted.
    for queue in [0, 2] {
        producers.push(madsim::task::spawn_local(client::transactor(
            ctx.clone(),
            client_id,
            queue,
        )));
        client_id += 1;
    }
    Workload {
        node_loop,
        nemesis,
        consumers,
        prober,
        churner,
        producers,
    }
}

/// Ends the run: once the producers are done, heals, drains (`DRAIN_MS`, plus
/// `release_wait_ms`), stops the clients, probes that the node still answers, and stops
/// the node. Returns the wake probe's violation, if any, and the Kafka checks'.
async fn wind_down(ctx: &Rc<Ctx>, workload: Workload) -> Vec<String> {
    for producer in workload.producers {
        producer.await.expect("producer task");
    }
    heal(ctx);
    workload.nemesis.await.expect("nemesis task");
    if let Target::Cluster(cluster) = &ctx.target {
        cluster_nemesis::heal(cluster);
        cluster_nemesis::finish_membership_change(ctx, cluster).await;
    }
    workload.churner.await.expect("churner task");
    madsim::time::sleep(Duration::from_millis(DRAIN_MS)).await;
    let queue_now_ms = match &ctx.target {
        Target::Single(node) => node.local().map(|local| local.runtime().now_ms()),
        Target::Cluster(cluster) => cluster.queue_ms_low(),
    };
    let wait_ms = release_wait_ms(queue_now_ms, &ctx.history.borrow());
    madsim::time::sleep(Duration::from_millis(wait_ms)).await;
    ctx.stopped.set(true);
    for consumer in workload.consumers {
        consumer.await.expect("consumer task");
    }
    workload.prober.await.expect("prober task");
    let mut wake: Vec<String> = client::wake_probe(ctx.clone()).await.into_iter().collect();
    wake.extend(kafka::verify(ctx, partitions(ctx)).await);
    match &ctx.target {
        Target::Single(node) => {
            node.stopped.set(true);
            workload.node_loop.await.expect("node task");
        }
        Target::Cluster(_) => workload.node_loop.abort(),
    }
    wake
}

/// The checker's verdict on the finished history, with the wake probe's violation, and
/// the run's figures and trace.
fn report(seed: u64, ctx: &Ctx, wake: Vec<String>) -> Report {
    let knobs = ctx.knobs;
    let history = ctx.history.borrow();
    let mut judgement = checker::check(
        &history,
        knobs.visibility_ms,
        knobs.max_consume_count,
        knobs.retention_minutes.map(|minutes| minutes * 60_000),
    );
    judgement.violations.extend(wake);
    let mut trace: String = history.events.iter().map(|e| format!("{e}\n")).collect();
    trace.push_str(&kafka::trace(&ctx.kafka));
    Report {
        seed,
        knobs: format!(
            "{knobs:?} duplicate_ppm: {} ({} requests duplicated)",
            ctx.link.duplicate_ppm,
            ctx.link.duplicates.get()
        ),
        history_hash: history.hash(),
        events: history.events.len(),
        messages: history.specs.len(),
        simulated_ms: u64::try_from(ctx.start.elapsed().as_millis()).expect("fits"),
        violations: judgement.violations,
        known: judgement.known,
        trace,
        snapshots_accepted: 0,
    }
}

/// Ends every fault: no more crashes, disk faults or drops; consumers start draining.
fn heal(ctx: &Ctx) {
    ctx.faults.set(false);
    ctx.cut.set(None);
    for disk in disks(ctx) {
        disk.clear_faults();
        disk.set_fault_rates(FaultRates::default());
    }
    ctx.draining.set(true);
    let now = ctx.now();
    ctx.history.borrow_mut().events.push(crate::history::Event {
        at_ms: now - crate::node::EPOCH_MS,
        client: 0,
        kind: EventKind::Nemesis("healed; draining".into()),
    });
}
