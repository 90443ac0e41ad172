//! `engine-bench`: does the queue engine's cost per message stay flat as the backlog
//! grows, and how much memory does it keep per message?
//!
//! Part 1 drives the pure state machine (`StateProbe`: no log, no I/O) with backlogs of
//! 10^4..10^7 messages, and with 10^6 pending delayed messages, timing receive(10) + ack
//! of those 10, and refilling (untimed) so the backlog stays the same. A counting
//! allocator gives the bytes the engine keeps per stored, delayed and in-flight message.
//! Part 2 runs the whole `Engine` (commands through the log, group commit, body reads)
//! on the in-memory simulated disk with backlogs of 10^4..10^6.
//! Part 3 (`--idle`) counts what an idle queue keeps: in one engine's state (created
//! through its command, as each partition does), in the node's queue directory, and their
//! sum for a node of 2 partitions (what `scale-bench` measures as RSS); and what a first
//! send adds to an idle queue.
//!
//! Part 4 (`--crowded`) times send + receive + ack through the whole `Engine` with and
//! without 100,000 idle queues present, snapshots and ticks included, and one snapshot.
//!
//! Usage: `cargo run --release -p sluice-benches --bin engine-bench -- [--quick] [--part2] [--idle] [--crowded]`

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Instant;

use sluice_core::engine::probe::{IdleQueues, StateProbe};
use sluice_core::engine::types::{
    AckKind, Delay, FifoScope, GroupStart, QueueConfig, QueueId, QueueMode, RetryPolicy, SendInput,
};
use sluice_core::engine::{Engine, EngineConfig, EngineLimits, QueueInfo, ReceiveRequest};
use sluice_core::log::{LogConfig, VerifyOnOpen};
use sluice_core::sim_disk::{block_on, SimDisk};

struct Counting;

static LIVE_BYTES: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards to the system allocator and only counts sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE_BYTES.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same layout contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE_BYTES.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: `ptr` came from `alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE_BYTES.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn live() -> isize {
    LIVE_BYTES.load(Ordering::Relaxed)
}

fn queue_config(mode: QueueMode) -> QueueConfig {
    QueueConfig {
        mode,
        retention_ms: 72 * 3600 * 1000,
        max_consume_count: Some(16),
        retry: RetryPolicy::Immediate,
        dedup_window_ms: 300_000,
        partitions: 0,
    }
}

const NOW: u64 = 1_700_000_000_000;
const YEAR_MS: u64 = 365 * 24 * 3600 * 1000;

/// Times receive(10)+ack over `measured` messages, refilling so the backlog holds.
fn time_receive_ack(probe: &mut StateProbe, measured: u64) -> f64 {
    let mut elapsed = 0.0;
    let mut done = 0u64;
    while done < measured {
        let round = 10_000.min(measured - done);
        let start = Instant::now();
        let mut got = 0u64;
        while got < round {
            let n = probe.receive_ack(10) as u64;
            assert!(n > 0, "backlog ran dry");
            got += n;
        }
        elapsed += start.elapsed().as_secs_f64();
        probe.send(got, 0);
        done += got;
    }
    elapsed * 1e9 / measured as f64
}

fn part1(quick: bool) {
    println!("# part 1: pure state machine, receive(10) + ack, ns per message");
    println!("{:<34} {:>12} {:>14}", "case", "ns/message", "bytes/stored");
    let backlogs: &[u64] = if quick {
        &[10_000, 100_000]
    } else {
        &[10_000, 100_000, 1_000_000, 10_000_000]
    };
    let measured = if quick { 100_000 } else { 1_000_000 };
    let mut results = Vec::new();
    for &backlog in backlogs {
        for (label, mode) in [
            ("NORMAL", QueueMode::Normal),
            (
                "FIFO/message-group",
                QueueMode::Fifo(FifoScope::MessageGroup),
            ),
        ] {
            let before = live();
            let mut probe = StateProbe::new(queue_config(mode), NOW);
            probe.send(backlog, 0);
            let per_stored = (live() - before) as f64 / backlog as f64;
            let ns = time_receive_ack(&mut probe, measured);
            println!(
                "{:<34} {:>12.0} {:>14.1}",
                format!("{label} backlog {backlog}"),
                ns,
                per_stored
            );
            if label == "NORMAL" {
                results.push(ns);
            }
            drop(probe);
        }
    }
    // 10^6 delayed messages pending beside a 10^6 backlog.
    let mut probe = StateProbe::new(queue_config(QueueMode::Normal), NOW);
    let delayed = if quick { 100_000 } else { 1_000_000 };
    probe.send(delayed, 0);
    let before = live();
    probe.send(delayed, YEAR_MS / 2);
    let per_delayed = (live() - before) as f64 / delayed as f64;
    assert_eq!(probe.delayed(), delayed);
    let ns = time_receive_ack(&mut probe, measured);
    println!(
        "{:<34} {:>12.0} {:>14.1}",
        format!("NORMAL backlog {delayed} + {delayed} delayed"),
        ns,
        per_delayed
    );
    results.push(ns);
    let min = results.iter().cloned().fold(f64::INFINITY, f64::min);
    let max = results.iter().cloned().fold(0.0, f64::max);
    println!("NORMAL spread (slowest / fastest): {:.2}x", max / min);
    // In-flight memory: lease a million messages and count what the leases add.
    let count = if quick { 100_000 } else { 1_000_000 };
    let mut probe = StateProbe::new(queue_config(QueueMode::Normal), NOW);
    probe.send(count, 0);
    let before = live();
    let mut leased = 0;
    while leased < count as usize {
        leased += probe.lease(1000, 60_000);
    }
    let per_inflight = (live() - before) as f64 / count as f64;
    println!("bytes per in-flight message (lease, timer, index): {per_inflight:.1}");
    println!("bytes per stored message are in the table; bodies stay on disk");
}

/// A message of `bytes` bytes of body, sent after `delay`.
fn plain_message(bytes: usize, delay: Delay) -> SendInput {
    SendInput {
        body: vec![7u8; bytes],
        attributes: Vec::new(),
        tags: Vec::new(),
        fifo_group: None,
        delay,
        dedup_id: None,
    }
}

/// A receive of up to 10 messages, as DMS clients ask, with no byte budget.
fn receive_ten() -> ReceiveRequest {
    ReceiveRequest {
        attempt: None,
        max_messages: 10,
        bytes_max: u64::MAX,
        oversize_first: true,
        visibility_ms: 30_000,
        filter: None,
    }
}

fn engine_config() -> EngineConfig {
    EngineConfig {
        log: LogConfig {
            segment_bytes_max: 256 << 20,
            index_interval_bytes: 64 * 1024,
            preallocate_bytes: 0,
            verify_on_open: VerifyOnOpen::Tail,
            cache_bytes_max: sluice_core::limits::LOG_CACHE_BYTES_DEFAULT,
            recycle_segments_max: sluice_core::limits::LOG_RECYCLE_SEGMENTS_DEFAULT,
        },
        limits: EngineLimits {
            batch_messages_max: 1000,
            receive_messages_max: 100,
            inflight_per_group_max: 1 << 30,
            ..EngineLimits::dms()
        },
        snapshot_every_records: u64::MAX,
    }
}

fn part2(quick: bool) {
    println!(
        "# part 2: Engine on the simulated disk (log, group commit, body reads), receive(10) + ack"
    );
    println!("{:<34} {:>12}", "case", "us/message");
    let backlogs: &[u64] = if quick {
        &[10_000, 100_000]
    } else {
        &[10_000, 100_000, 1_000_000]
    };
    for &backlog in backlogs {
        let engine = block_on(Engine::open(SimDisk::new(1), engine_config(), NOW)).expect("open");
        let q = block_on(engine.create_queue("t", "q", queue_config(QueueMode::Normal), NOW))
            .expect("fresh engine");
        let g =
            block_on(engine.create_group(q, "g", GroupStart::Oldest, NOW)).expect("fresh queue");
        let message = plain_message(100, Delay::None);
        // Ten per send, as DMS clients send them.
        let batch = vec![message; 10];
        for _ in 0..backlog / 10 {
            block_on(engine.send(q, &batch, NOW)).expect("send within limits");
        }
        let request = receive_ten();
        // Consume a fifth of the backlog, so it stays within 20% of its size.
        let measured = (backlog / 5).min(50_000);
        let start = Instant::now();
        let mut got = 0u64;
        while got < measured {
            let deliveries = block_on(engine.receive(q, g, &request, NOW)).expect("receive");
            assert!(!deliveries.is_empty(), "backlog ran dry");
            let acks: Vec<_> = deliveries
                .iter()
                .map(|d| (d.handle, AckKind::Success))
                .collect();
            block_on(engine.ack(&acks, false, NOW)).expect("ack");
            got += deliveries.len() as u64;
        }
        let us = start.elapsed().as_secs_f64() * 1e6 / got as f64;
        println!("{:<34} {:>12.2}", format!("NORMAL backlog {backlog}"), us);
    }
}

/// An idle queue as `scale-bench` creates it: a 32-character project id, `scale-N`, and
/// the DMS adapter's fields of a queue without description or tags.
const IDLE_TENANT: &str = "0123456789abcdef0123456789abcdef";
const IDLE_PREFIX: &str = "scale-";
const IDLE_META: &[u8] = br#"{"description":""}"#;

/// Part 3: bytes per idle queue (requested from the allocator; the server's allocator
/// rounds each block up to its size class, so RSS grows somewhat more).
fn part3(quick: bool) {
    println!("# part 3: bytes per idle queue (NORMAL, no groups)");
    let count: u32 = if quick { 10_000 } else { 100_000 };
    let config = queue_config(QueueMode::Normal);
    let before = live();
    let mut engine = IdleQueues::new(NOW);
    engine.create(IDLE_TENANT, IDLE_PREFIX, count, config, IDLE_META);
    let per_engine = (live() - before) as f64 / f64::from(count);
    assert_eq!(engine.len(), count as usize);

    // The node's directory, brought forward 16 changes at a time as the metadata shard
    // publishes it while 16 creates are in flight.
    let before = live();
    let mut directory = sluice_node::QueueDirectory::default();
    let mut batch = Vec::new();
    for n in 0..count {
        batch.push(QueueInfo {
            id: QueueId(n),
            tenant: IDLE_TENANT.to_string(),
            name: format!("{IDLE_PREFIX}{n}"),
            config,
            created_ms: NOW,
            meta: IDLE_META.to_vec(),
            dead_letter_to: None,
            sent_total: 0,
            stored: 0,
            delayed: 0,
            groups: Vec::new(),
        });
        if batch.len() == 16 || n + 1 == count {
            directory = directory.with_changes(u64::from(n), &batch, &[]);
            batch.clear();
        }
    }
    let per_directory = (live() - before) as f64 / f64::from(count);
    assert_eq!(directory.len(), count as usize);

    println!("{:<44} {:>10}", "part", "bytes");
    println!(
        "{:<44} {:>10.0}",
        "one engine (partition) per idle queue", per_engine
    );
    println!(
        "{:<44} {:>10.0}",
        "node queue directory per queue", per_directory
    );
    println!(
        "{:<44} {:>10.0}",
        "node of 2 partitions per idle queue",
        2.0 * per_engine + per_directory
    );
    // What a first send allocates on a queue (its message state), less the message.
    let sent = (count / 10).max(1) as usize;
    let before = live();
    engine.send_to_first(sent);
    let per_first_send = (live() - before) as f64 / sent as f64;
    println!(
        "{:<44} {:>10.0}",
        "first send to an idle queue, per queue", per_first_send
    );
    drop(engine);
    drop(directory);
}

/// Bytes of the newest snapshot file on `disk`.
fn snapshot_bytes(disk: &SimDisk) -> u64 {
    use sluice_core::storage::{Storage, StorageFile};
    let names = block_on(disk.list()).expect("list");
    let newest = names
        .iter()
        .filter(|name| name.starts_with("snapshot-"))
        .max_by_key(|name| name[9..].parse::<u64>().unwrap_or(0))
        .expect("a snapshot was written");
    let file = block_on(disk.open(newest)).expect("open");
    block_on(file.size()).expect("size")
}

/// Part 4: does a message cost the same with 100,000 idle queues beside its queue? The
/// whole `Engine` on the simulated disk, snapshots due every 200,000 records (the
/// server's default) and `tick` run every 1,000 messages as the server's timer would:
/// send 10, receive 10, ack them, repeated. Also times one snapshot of each state.
fn part4(quick: bool) {
    println!("# part 4: Engine, send(10) + receive(10) + ack, with idle queues present");
    println!(
        "{:<14} {:>10} {:>12} {:>14} {:>10} {:>14} {:>12}",
        "idle queues",
        "delayed",
        "us/message",
        "of it in tick",
        "snapshots",
        "snapshot ms",
        "snapshot MB"
    );
    // (idle queues, pending delayed messages of 100 bytes on one more queue)
    let crowds: &[(u32, u64)] = if quick {
        &[(0, 0), (10_000, 0), (10_000, 100_000)]
    } else {
        &[(0, 0), (100_000, 0), (100_000, 1_000_000)]
    };
    let messages: u64 = if quick { 50_000 } else { 400_000 };
    let config = EngineConfig {
        snapshot_every_records: 200_000,
        limits: EngineLimits {
            queues_per_tenant_max: sluice_core::limits::QUEUES_PER_TENANT_CEILING,
            ..engine_config().limits
        },
        ..engine_config()
    };
    for &(idle, delayed) in crowds {
        let disk = SimDisk::new(1);
        let engine = block_on(Engine::open(disk.clone(), config, NOW)).expect("open");
        for n in 0..idle {
            let name = format!("{IDLE_PREFIX}{n}");
            block_on(engine.create_queue(IDLE_TENANT, &name, queue_config(QueueMode::Normal), NOW))
                .expect("within the raised quota");
        }
        if delayed > 0 {
            let d = block_on(engine.create_queue("t", "d", queue_config(QueueMode::Normal), NOW))
                .expect("fresh name");
            let message = plain_message(100, Delay::Ms(3_600_000));
            let batch = vec![message; 100];
            for _ in 0..delayed / 100 {
                block_on(engine.send(d, &batch, NOW)).expect("send delayed");
            }
        }
        let q = block_on(engine.create_queue("t", "q", queue_config(QueueMode::Normal), NOW))
            .expect("fresh name");
        let g = block_on(engine.create_group(q, "g", GroupStart::Oldest, NOW)).expect("fresh");
        let message = plain_message(1024, Delay::None);
        let batch = vec![message; 10];
        let request = receive_ten();
        block_on(engine.snapshot()).expect("snapshot");
        let start = Instant::now();
        let mut snapshots = 0;
        let mut last_snapshot = engine.snapshot_offset();
        let mut done = 0u64;
        let mut tick_s = 0.0;
        while done < messages {
            block_on(engine.send(q, &batch, NOW)).expect("send");
            let deliveries = block_on(engine.receive(q, g, &request, NOW)).expect("receive");
            assert_eq!(deliveries.len(), 10, "what was sent is there");
            let acks: Vec<_> = deliveries
                .iter()
                .map(|d| (d.handle, AckKind::Success))
                .collect();
            block_on(engine.ack(&acks, false, NOW)).expect("ack");
            done += 10;
            if done.is_multiple_of(1_000) {
                let ticked = Instant::now();
                block_on(engine.tick(NOW)).expect("tick");
                tick_s += ticked.elapsed().as_secs_f64();
                if engine.snapshot_offset() != last_snapshot {
                    snapshots += 1;
                    last_snapshot = engine.snapshot_offset();
                }
            }
        }
        let us = start.elapsed().as_secs_f64() * 1e6 / done as f64;
        let tick_us = tick_s * 1e6 / done as f64;
        let start = Instant::now();
        // One more record so the snapshot is written, not kept.
        block_on(engine.send(q, &batch[..1], NOW)).expect("send");
        block_on(engine.snapshot()).expect("snapshot");
        let snapshot_ms = start.elapsed().as_secs_f64() * 1e3;
        let snapshot_mb = snapshot_bytes(&disk) as f64 / 1e6;
        println!(
            "{:<14} {:>10} {:>12.2} {:>14.2} {:>10} {:>14.1} {:>12.1}",
            idle, delayed, us, tick_us, snapshots, snapshot_ms, snapshot_mb
        );
    }
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    if std::env::args().any(|a| a == "--crowded") {
        part4(quick);
        return;
    }
    if std::env::args().any(|a| a == "--idle") {
        part3(quick);
        return;
    }
    if !std::env::args().any(|a| a == "--part2") {
        part1(quick);
    }
    part2(quick);
}
