//! The simulated node: the server's request-handling layer (`sluice_http::service::handle`:
//! authentication and the DMS adapter) over the production node layer
//! (`sluice_node::NodeShard`, as a `LocalNode` of several shards whose partitions are
//! engines on simulated disks), plus the node's own loop (open after a crash, tick at the
//! engines' deadlines).
//!
//! It runs the same code as the real server above the driver: requests arrive as HTTP
//! parts and a body at a random shard, answers leave as HTTP responses; a call for a
//! partition another shard owns is forwarded as the server forwards it, carried by
//! `SimClock::forward` as a task of its own after a random hop delay. It must not
//! interpret requests itself; it only counts them (serials), takes the node out of
//! service after a storage fault and reopens it, as the server's shards do per partition.
//!
//! Every request takes a serial number when it enters and another when it completes: the
//! node's linear order of events, which the checker uses to order deliveries and acks.
//! On the slow disk, requests interleave inside the engines; a receive picks its messages
//! somewhere between its two serials (at entry unless it long-polls or another partition
//! suspends first), and an ack or send takes effect somewhere between its two serials.
//!
//! Tenants: the `LocalNode` host keeps the directory in memory and draws credentials from a PRNG
//! seeded at construction, so each boot builds the node with the same seed and creates
//! the same tenants in the same order: they get the same project ids and AK/SK, which
//! the node asserts. The queues live in the engines and survive on their own.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use http::request::Parts;
use http::{Response, StatusCode};
use madsim::rand::{thread_rng, Rng};
use sluice_core::clock::{QueueClock, Reading};
use sluice_core::engine::{Engine, EngineConfig};
use sluice_core::sim_disk::SimDisk;
use sluice_core::storage::{IoErrorKind, IoOp};
use sluice_http::service::{self, ServiceConfig};
use sluice_node::local::{LocalNode, Runtime};
use sluice_node::tenants::Tenant;
use sluice_node::Node as _;

use crate::history::{Event, EventKind, History};
use crate::kafka;
use crate::slow_disk::SlowDisk;

/// Node time is this base plus simulated milliseconds: a plausible epoch time (2023-11),
/// so signed requests carry a real-looking `X-Sdk-Date`.
pub const EPOCH_MS: u64 = 1_700_000_000_000;

/// The node's ticker sleeps at most this long, so it re-checks state after faults.
const TICK_INTERVAL_MS: u64 = 100;

/// The tenants every boot creates, in this order (their credentials depend on it).
pub const TENANT_NAMES: [&str; 3] = ["t0", "t1", "t2"];

/// True simulated time as epoch milliseconds: what clients and the nemesis go by.
pub fn now_ms(start: madsim::time::Instant) -> u64 {
    EPOCH_MS + elapsed_ms(start)
}

fn elapsed_ms(start: madsim::time::Instant) -> u64 {
    u64::try_from(start.elapsed().as_millis()).expect("simulated time fits")
}

/// The node's clocks: a wall clock that the nemesis steps (true time plus `wall_offset`),
/// madsim's time as the monotonic clock, and queue time for the engines as the server
/// computes it (`sluice_core::clock::QueueClock`, anchored when the node boots). Long
/// polls sleep on madsim's timers. It also carries forwarded calls between shards.
#[derive(Clone)]
pub struct SimClock {
    start: madsim::time::Instant,
    wall_offset: Rc<Cell<i64>>,
    queue: QueueClock,
    hop_ms_max: u64,
    /// The forwarded calls of this boot still running: a crash or restart ends them, as
    /// the end of a process ends its threads (they must not write to the disks of the
    /// next boot, nor outlive the run).
    jobs: Rc<RefCell<Vec<madsim::task::AbortHandle>>>,
}

impl SimClock {
    /// The clock of a boot now: queue time starts at the wall clock's reading.
    fn boot(start: madsim::time::Instant, wall_offset: Rc<Cell<i64>>, hop_ms_max: u64) -> SimClock {
        let mut clock = SimClock {
            start,
            wall_offset,
            hop_ms_max,
            jobs: Rc::new(RefCell::new(Vec::new())),
            queue: QueueClock::start(Reading {
                wall_ms: 0,
                mono_ms: 0,
            }),
        };
        clock.queue = QueueClock::start(clock.reading());
        clock
    }

    fn reading(&self) -> Reading {
        Reading {
            wall_ms: self.wall_ms(),
            mono_ms: elapsed_ms(self.start),
        }
    }
}

impl SimClock {
    /// Ends every forwarded call of this boot that is still running.
    fn abort_jobs(&self) {
        for job in self.jobs.borrow_mut().drain(..) {
            job.abort();
        }
    }
}

/// The list of a boot's forwarded calls drops the finished ones when it reaches this.
const FORWARDED_JOBS_PRUNE_AT: usize = 256;

/// The clock's wall time minus its queue time.
fn wall_gap_ms(clock: &SimClock) -> i64 {
    let wall = i64::try_from(clock.wall_ms()).expect("fits");
    wall - i64::try_from(clock.now_ms()).expect("fits")
}

impl Runtime for SimClock {
    fn now_ms(&self) -> u64 {
        self.queue.now_ms(self.reading())
    }

    fn wall_ms(&self) -> u64 {
        now_ms(self.start).saturating_add_signed(self.wall_offset.get())
    }

    async fn sleep_ms(&self, ms: u64) {
        madsim::time::sleep(Duration::from_millis(ms)).await;
    }

    /// The job runs as a task of its own after a random hop: the caller may give up
    /// (a long poll that ended) while the owner still runs it, as between real shards.
    async fn forward(&self, job: std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>) {
        let hop_ms = thread_rng().gen_range(0..=self.hop_ms_max);
        let task = madsim::task::spawn_local(async move {
            madsim::time::sleep(Duration::from_millis(hop_ms)).await;
            job.await;
        });
        let mut jobs = self.jobs.borrow_mut();
        if jobs.len() >= FORWARDED_JOBS_PRUNE_AT {
            jobs.retain(|job| !job.is_finished());
        }
        jobs.push(task.abort_handle());
    }
}

pub type Local = LocalNode<SlowDisk, SimClock>;

/// One request as the node served it: its serials and true times at entry and
/// completion, and the answer. (The node's queue times at both serials go to
/// `History::queue_ms`.)
pub struct Served {
    pub serial: u64,
    pub done_serial: u64,
    pub served_ms: u64,
    pub done_ms: u64,
    pub response: Response<Bytes>,
}

pub struct Node {
    /// One simulated disk per partition; a crash is a power loss of all of them.
    pub disks: Vec<SimDisk>,
    storages: Vec<SlowDisk>,
    config: EngineConfig,
    service: ServiceConfig,
    start: madsim::time::Instant,
    /// The wall clock's step from true time (the nemesis's clock jumps).
    wall_offset: Rc<Cell<i64>>,
    /// `LocalNode`'s credential seed, the same at every boot.
    tenant_seed: u64,
    shards: usize,
    hop_ms_max: u64,
    local: RefCell<Option<Rc<Local>>>,
    /// Counts boots, so a request that fails on an engine already replaced does not
    /// take the new one out of service.
    generation: Cell<u64>,
    /// The tenants of the first boot; every later boot must recreate them identically.
    tenants: RefCell<Vec<Tenant>>,
    /// While down after a crash, the node opens no engine before this time.
    down_until_ms: Cell<u64>,
    crash_count: Cell<u64>,
    serial: Cell<u64>,
    history: Rc<RefCell<History>>,
    pub stopped: Cell<bool>,
}

impl Node {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        disks: Vec<SimDisk>,
        shards: usize,
        hop_ms_max: u64,
        disk_latency_ms_max: u64,
        config: EngineConfig,
        service: ServiceConfig,
        start: madsim::time::Instant,
        history: Rc<RefCell<History>>,
    ) -> Node {
        assert!(!disks.is_empty(), "at least one partition");
        Node {
            storages: disks
                .iter()
                .map(|disk| SlowDisk::new(disk.clone(), disk_latency_ms_max))
                .collect(),
            disks,
            config,
            service,
            start,
            wall_offset: Rc::new(Cell::new(0)),
            tenant_seed: thread_rng().gen(),
            shards,
            hop_ms_max,
            local: RefCell::new(None),
            generation: Cell::new(0),
            tenants: RefCell::new(Vec::new()),
            down_until_ms: Cell::new(0),
            crash_count: Cell::new(0),
            serial: Cell::new(0),
            history,
            stopped: Cell::new(false),
        }
    }

    pub fn local(&self) -> Option<Rc<Local>> {
        self.local.borrow().clone()
    }

    /// The tenants (with credentials) the node serves; empty before the first boot.
    pub fn tenants(&self) -> Vec<Tenant> {
        self.tenants.borrow().clone()
    }

    /// A nemesis line in the trace, at true time.
    fn note(&self, what: String) {
        self.history.borrow_mut().events.push(Event {
            at_ms: elapsed_ms(self.start),
            client: 0,
            kind: EventKind::Nemesis(what),
        });
    }

    /// Power loss: the node is dropped, unsynced writes on every disk are lost or torn,
    /// and the node stays down for `down_ms`.
    pub fn crash(&self, now: u64, down_ms: u64) {
        self.end_boot();
        let modes: Vec<String> = self
            .disks
            .iter()
            .map(|disk| format!("{:?}", disk.crash()))
            .collect();
        self.down_until_ms.set(now + down_ms);
        self.crash_count.set(self.crash_count.get() + 1);
        self.note(format!("crash ({}), down {down_ms} ms", modes.join(" ")));
    }

    /// One of the next reads of `partition`'s disk (the `nth` non-empty one) returns a bit
    /// flipped (transient: the disk keeps the right bytes). Armed at a crash, it lands in
    /// the recovery's reads.
    pub fn flip_read(&self, partition: usize, nth: u32) {
        self.disks[partition].flip_read(nth);
        self.note(format!("p{partition}: read {nth} from now flips a bit"));
    }

    /// Steps the node's wall clock by `delta_ms` (queue time of the running boot must
    /// not follow it; signatures are checked against it).
    pub fn jump_clock(&self, delta_ms: i64) {
        let offset = self.wall_offset.get() + delta_ms;
        self.wall_offset.set(offset);
        self.note(format!(
            "wall clock steps {delta_ms:+} ms (now {offset:+} ms from true time)"
        ));
    }

    pub fn wall_offset_ms(&self) -> i64 {
        self.wall_offset.get()
    }

    pub fn arm_fault(&self, partition: usize, op: IoOp, kind: IoErrorKind) {
        self.disks[partition].fail_next(op, kind);
        self.note(format!("p{partition}: next {op:?} fails with {kind:?}"));
    }

    /// Drops the running node, if any, and records its last queue time (the next boot's
    /// clock may start lower); true when one was running.
    fn end_boot(&self) -> bool {
        let Some(local) = self.local.borrow_mut().take() else {
            return false;
        };
        local.runtime().abort_jobs();
        let last = local.runtime().now_ms();
        self.history
            .borrow_mut()
            .boot_ends
            .push((self.serial.get(), last));
        true
    }

    /// A storage fault: the engines are unusable and the process restarts (the page
    /// cache survives; no power loss). Only the node of `generation` is taken down.
    fn poison(&self, generation: u64, error: &str) {
        if self.generation.get() != generation {
            return;
        }
        if self.end_boot() {
            self.note(format!("storage fault ({error}); restarting"));
        }
    }

    /// Opens every partition's engine, builds the node and recreates the tenants, when
    /// closed and up; true when open.
    pub async fn ensure_open(&self, now: u64) -> bool {
        if self.local.borrow().is_some() {
            return true;
        }
        if now < self.down_until_ms.get() {
            return false;
        }
        let crash_count = self.crash_count.get();
        let clock = SimClock::boot(self.start, self.wall_offset.clone(), self.hop_ms_max);
        let mut engines = Vec::with_capacity(self.storages.len());
        for (partition, storage) in self.storages.iter().enumerate() {
            match Engine::open(storage.clone(), self.config, clock.now_ms()).await {
                Ok(engine) => engines.push(engine),
                Err(error) => {
                    self.note(format!("p{partition}: open failed: {error}"));
                    return false;
                }
            }
        }
        let local = Local::new(engines, clock, self.tenant_seed, self.shards);
        // As the server does at start-up: partitions that missed the end of a queue or
        // group change are repaired from partition 0 (`sluice_core::engine::metadata`).
        if let Err(error) = local.reconcile().await {
            self.note(format!("metadata repair failed: {error}"));
            return false;
        }
        self.tenants_recreate(&local).await;
        // A crash while the engines opened (the nemesis runs meanwhile) makes them stale;
        // the next pass opens again.
        if self.crash_count.get() != crash_count {
            return false;
        }
        assert!(self.local.borrow().is_none(), "only the node loop opens");
        *self.local.borrow_mut() = Some(Rc::new(local));
        self.generation.set(self.generation.get() + 1);
        self.history.borrow_mut().events.push(Event {
            at_ms: now - EPOCH_MS,
            client: 0,
            kind: EventKind::Boot {
                serial: self.serial.get(),
            },
        });
        true
    }

    /// Creates `TENANT_NAMES` in order, unless partition 0 already holds them (tenants
    /// are replicated commands there and survive a boot); the first boot records them,
    /// later boots must find or get the same credentials.
    async fn tenants_recreate(&self, local: &Local) {
        let mut created = Vec::with_capacity(TENANT_NAMES.len());
        for name in TENANT_NAMES {
            let kept = local.tenants().by_name(name).cloned();
            let tenant = match kept {
                Some(tenant) => tenant,
                None => local
                    .create_tenant(name, None)
                    .await
                    .expect("a directory without the tenant accepts it"),
            };
            created.push(tenant);
        }
        let mut tenants = self.tenants.borrow_mut();
        if tenants.is_empty() {
            *tenants = created;
            return;
        }
        for (first, again) in tenants.iter().zip(&created) {
            assert_eq!(first.project_id, again.project_id, "tenant survives a boot");
            assert_eq!(first.ak, again.ak, "tenant keeps its access key");
            assert_eq!(first.sk, again.sk, "tenant keeps its secret key");
        }
    }

    /// The node's loop: reopen when closed, tick at the engines' deadlines. It ends when
    /// the run sets `stopped`; otherwise each pass sleeps at most `TICK_INTERVAL_MS`.
    pub async fn run(self: Rc<Node>) {
        while !self.stopped.get() {
            let mut sleep_ms = TICK_INTERVAL_MS;
            if self.ensure_open(now_ms(self.start)).await {
                let generation = self.generation.get();
                let local = self.local().expect("just ensured open");
                // Queue time: the engines' deadlines are in it.
                let now = local.runtime().now_ms();
                let mut wake = now + TICK_INTERVAL_MS;
                if let Err(error) = local.tick(now).await {
                    self.poison(generation, &error.to_string());
                } else if let Some(deadline) = local.next_deadline_ms() {
                    wake = wake.min(deadline.max(now + 1));
                }
                sleep_ms = wake.saturating_sub(local.runtime().now_ms()).max(1);
            }
            madsim::time::sleep(Duration::from_millis(sleep_ms)).await;
        }
        // The run is over: no forwarded call may outlive it.
        if let Some(local) = self.local() {
            local.runtime().abort_jobs();
        }
    }

    /// Serves one HTTP request with the server's `service::handle`; `None` when the node
    /// is down (the client sees a refused connection). A 500 is a storage fault: the node
    /// restarts, as the server's shard reopens the partition.
    pub async fn handle(&self, parts: Parts, body: Bytes) -> Option<Served> {
        let local = self.local()?;
        let generation = self.generation.get();
        let serial = self.serial.get() + 1;
        self.serial.set(serial);
        let served_ms = now_ms(self.start);
        let entry_queue_ms = local.runtime().now_ms();
        let entry_gap = wall_gap_ms(local.runtime());
        let entry = thread_rng().gen_range(0..local.shard_count());
        let shard = &**local.shard(entry);
        let response = if parts.uri.path() == kafka::KAFKA_PATH {
            kafka::serve_connection(shard, &body).await
        } else {
            service::handle(shard, &self.service, &parts, &body).await
        };
        let done_serial = self.serial.get() + 1;
        self.serial.set(done_serial);
        let done_ms = now_ms(self.start);
        {
            let mut history = self.history.borrow_mut();
            history.queue_ms.insert(serial, entry_queue_ms);
            history.wall_gap_ms.insert(serial, entry_gap);
            history
                .wall_gap_ms
                .insert(done_serial, wall_gap_ms(local.runtime()));
            history
                .queue_ms
                .insert(done_serial, local.runtime().now_ms());
        }
        if response.status() == StatusCode::INTERNAL_SERVER_ERROR || local.faults() > 0 {
            self.poison(generation, "a storage fault");
        }
        Some(Served {
            serial,
            done_serial,
            served_ms,
            done_ms,
            response,
        })
    }
}
