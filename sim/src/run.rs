//! One seed end to end: knobs from the seed, the node, setup, workload under faults,
//! healing, draining, and the checker. Each seed runs on a fresh thread with its own
//! madsim runtime, so nothing (not even std's per-thread hash keys) leaks between runs.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use madsim::rand::{thread_rng, Rng};
use sluice_core::engine::types::FifoScope;
use sluice_core::engine::types::{GroupStart, QueueConfig, QueueMode, RetryPolicy};
use sluice_core::engine::{EngineConfig, EngineLimits};
use sluice_core::log::{LogConfig, VerifyOnOpen};
use sluice_core::sim_disk::{FaultRates, SimDisk};

use crate::checker;
use crate::client::{self, Ctx, Knobs, CONSUMERS_PER_GROUP, GROUPS, QUEUES};
use crate::history::History;
use crate::node::Node;

/// Simulated time for draining after healing: longer than any delay (5 s), visibility
/// (5 s) and node downtime together, so every stored message is consumed by then.
const DRAIN_MS: u64 = 30_000;

pub struct Report {
    pub seed: u64,
    pub knobs: String,
    pub history_hash: u64,
    pub events: usize,
    pub messages: usize,
    pub simulated_ms: u64,
    pub violations: Vec<String>,
    /// The readable trace, one event a line (simulated times only).
    pub trace: String,
}

pub fn run_seed(seed: u64) -> Report {
    let joined = std::thread::spawn(move || {
        let runtime =
            madsim::runtime::Runtime::with_seed_and_config(seed, madsim::Config::default());
        runtime.block_on(simulate(seed))
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
            trace: String::new(),
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
        },
        limits: EngineLimits {
            groups_per_queue_max: 8,
            ..EngineLimits::dms()
        },
        snapshot_every_records: knobs.snapshot_every_records,
    }
}

fn queue_config(fifo: bool) -> QueueConfig {
    QueueConfig {
        mode: if fifo {
            QueueMode::Fifo(FifoScope::MessageGroup)
        } else {
            QueueMode::Normal
        },
        // Far beyond the run, so no message expires before it is drained.
        retention_ms: 72 * 3600 * 1000,
        max_consume_count: None,
        retry: RetryPolicy::Immediate,
        // Longer than a producer's retries of one batch.
        dedup_window_ms: 600_000,
    }
}

/// Creates the queues and groups before faults start; setup is not under test yet.
async fn setup(node: &Node, now: u64) {
    assert!(node.ensure_open(now).await, "the first open succeeds");
    let engine = node.engine().expect("open");
    for (tenant, name, fifo) in QUEUES {
        let queue = engine
            .create_queue(tenant, name, queue_config(fifo), now)
            .await
            .expect("create queue on a healthy disk");
        for group in GROUPS {
            engine
                .create_group(queue, group, GroupStart::Oldest, now)
                .await
                .expect("create group on a healthy disk");
        }
    }
}

/// The whole run of one seed; call it inside a madsim runtime seeded with `seed`.
pub async fn simulate(seed: u64) -> Report {
    let start = madsim::time::Instant::now();
    let knobs = Knobs::draw();
    let history = Rc::new(RefCell::new(History::default()));
    let disk = SimDisk::new(thread_rng().gen());
    let node = Rc::new(Node::new(
        disk,
        knobs.disk_latency_ms_max,
        engine_config(&knobs),
        history.clone(),
    ));
    setup(&node, crate::node::now_ms(start)).await;
    let ctx = Rc::new(Ctx {
        node: node.clone(),
        history: history.clone(),
        knobs,
        start,
        faults: Cell::new(true),
        draining: Cell::new(false),
        stopped: Cell::new(false),
    });
    let ppm = knobs.disk_fault_ppm;
    node.disk.set_fault_rates(FaultRates {
        write_eio_ppm: ppm,
        write_enospc_ppm: ppm,
        sync_eio_ppm: ppm,
        read_eio_ppm: ppm,
        read_bitflip_ppm: ppm,
    });
    let node_loop = madsim::task::spawn_local(node.clone().run(start));
    let nemesis = madsim::task::spawn_local(client::nemesis(ctx.clone()));
    let mut client_id = 1;
    let mut consumers = Vec::new();
    for queue in 0..QUEUES.len() {
        for group in 0..GROUPS.len() {
            for _ in 0..CONSUMERS_PER_GROUP {
                let task = client::consumer(ctx.clone(), client_id, queue, group);
                consumers.push(madsim::task::spawn_local(task));
                client_id += 1;
            }
        }
    }
    let mut producers = Vec::new();
    for queue in 0..QUEUES.len() {
        producers.push(madsim::task::spawn_local(client::producer(
            ctx.clone(),
            client_id,
            queue,
        )));
        client_id += 1;
    }
    for producer in producers {
        producer.await.expect("producer task");
    }
    heal(&ctx);
    nemesis.await.expect("nemesis task");
    madsim::time::sleep(Duration::from_millis(DRAIN_MS)).await;
    ctx.stopped.set(true);
    for consumer in consumers {
        consumer.await.expect("consumer task");
    }
    node.stopped.set(true);
    node_loop.await.expect("node task");
    let history = history.borrow();
    let violations = checker::check(&history, knobs.visibility_ms);
    let trace: String = history.events.iter().map(|e| format!("{e}\n")).collect();
    Report {
        seed,
        knobs: format!("{knobs:?}"),
        history_hash: history.hash(),
        events: history.events.len(),
        messages: history.specs.len(),
        simulated_ms: u64::try_from(start.elapsed().as_millis()).expect("fits"),
        violations,
        trace,
    }
}

/// Ends every fault: no more crashes, disk faults or drops; consumers start draining.
fn heal(ctx: &Ctx) {
    ctx.faults.set(false);
    ctx.node.disk.clear_faults();
    ctx.node.disk.set_fault_rates(FaultRates::default());
    ctx.draining.set(true);
    let now = ctx.now();
    ctx.history.borrow_mut().events.push(crate::history::Event {
        at_ms: now - crate::node::EPOCH_MS,
        client: 0,
        kind: crate::history::EventKind::Nemesis("healed; draining".into()),
    });
}
