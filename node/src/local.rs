//! [`LocalNode`]: a whole node in one thread, every partition's engine held in one place,
//! run by the in-process tests, the fuzz targets and the madsim simulation.
//!
//! It is the production node logic ([`NodeShard`]) with a host of its own: the node has
//! `shard_count` shards, each owning partitions `p % shard_count`, and a call for another
//! shard's partition is forwarded exactly as in the server, as a [`Job`] the target shard
//! runs. Only the carrying differs: the [`Runtime`] decides how a job reaches its shard
//! (tests run it at once; the simulation delays it on a simulated link and runs it as a
//! task of its own, so that requests interleave as they do between real shards).
//!
//! It must not read a wall clock or a global RNG: time comes from the runtime, and
//! credentials from a PRNG seeded at construction, so a simulation seed replays exactly.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::ops::Deref;
use std::pin::Pin;
use std::rc::{Rc, Weak};

use rand::{RngCore, SeedableRng};
use rand_pcg::Pcg64;
use sluice_core::engine::types::EngineError;
use sluice_core::engine::Engine;
use sluice_core::storage::Storage;

use crate::password::VerifierBusy;
use crate::tenants::{Tenant, TenantDirectory};
use crate::{AuthGuards, Directories, Host, Job, NodeConfig, NodeError, NodeShard};

/// Time and the carrying of forwarded jobs (between its shards and, in a cluster, to
/// other nodes), as the program running a [`LocalNode`] has them: a hand-advanced clock
/// in tests, simulated time and links under madsim.
pub trait Runtime: 'static {
    /// Queue time, epoch milliseconds.
    fn now_ms(&self) -> u64;

    /// The wall clock, epoch milliseconds.
    fn wall_ms(&self) -> u64 {
        self.now_ms()
    }

    /// Resolves once `ms` milliseconds of queue time have passed.
    fn sleep_ms(&self, ms: u64) -> impl Future<Output = ()>;

    /// Carries a forwarded job to its shard and starts it; resolves once it is handed
    /// over. The default runs it to completion at once.
    fn forward(&self, job: Pin<Box<dyn Future<Output = ()>>>) -> impl Future<Output = ()> {
        job
    }

    /// Carries a call forwarded to shard `shard` of node `node` ([`Host::call_node`]).
    /// The default has no other node: `Unavailable`.
    fn call_node(
        &self,
        shard: usize,
        node: u64,
        call: Vec<u8>,
    ) -> impl Future<Output = Result<Vec<u8>, NodeError>> {
        let _ = (shard, node, call);
        async { Err(NodeError::Unavailable("no other node is reachable")) }
    }

    /// Whether other nodes hold replicas of this node's partitions ([`Host::replicated`]).
    fn replicated(&self) -> bool {
        false
    }

    /// Every node of the cluster ([`Host::cluster_nodes`]); the default: none.
    fn cluster_nodes(&self) -> Vec<u64> {
        Vec::new()
    }

    /// The node's local copy of the tenant list ([`Host::store_tenants`], the server's
    /// `tenants.json`), which a node starts with; the default keeps none.
    fn stored_tenants(&self) -> Vec<Tenant> {
        Vec::new()
    }

    /// Keeps the local copy of the tenant list ([`Host::store_tenants`]).
    fn store_tenants(&self, tenants: &[Tenant]) -> Result<(), String> {
        let _ = tenants;
        Ok(())
    }
}

/// A shard of a [`LocalNode`].
pub type LocalShard<S, R> = NodeShard<LocalHost<S, R>>;

/// A shard of a [`LocalNode`]: its index and the node's shared parts.
pub struct LocalHost<S: Storage + Clone + 'static, R: Runtime> {
    shard: usize,
    shared: Rc<Shared<S, R>>,
}

struct Shared<S: Storage + Clone + 'static, R: Runtime> {
    /// Every partition's engine; `None` once a storage fault took it out of service.
    engines: Vec<RefCell<Option<Rc<Engine<S>>>>>,
    runtime: R,
    rng: RefCell<Pcg64>,
    shards: RefCell<Vec<Weak<LocalShard<S, R>>>>,
    faults: Cell<u64>,
    /// Password checks run (each an argon2id verification).
    password_checks: Cell<u64>,
    /// The admin secret this node proposes when partition 0 has none.
    admin_secret: RefCell<Option<Vec<u8>>>,
    /// The admin secret the node learned from partition 0.
    learned_secret: RefCell<Option<Vec<u8>>>,
}

impl<S: Storage + Clone + 'static, R: Runtime> Host for LocalHost<S, R> {
    type Storage = S;

    fn now_ms(&self) -> u64 {
        self.shared.runtime.now_ms()
    }

    fn wall_ms(&self) -> u64 {
        self.shared.runtime.wall_ms()
    }

    fn sleep_ms(&self, ms: u64) -> impl Future<Output = ()> {
        self.shared.runtime.sleep_ms(ms)
    }

    fn engine(&self, partition: u32) -> Result<Rc<Engine<S>>, NodeError> {
        let slot = &self.shared.engines[usize::try_from(partition).expect("fits")];
        slot.borrow().clone().ok_or(NodeError::Unavailable(
            "the partition is out of service after a storage fault",
        ))
    }

    fn storage_fault(&self, partition: u32, _error: &EngineError) {
        let slot = &self.shared.engines[usize::try_from(partition).expect("fits")];
        slot.borrow_mut().take();
        self.shared.faults.set(self.shared.faults.get() + 1);
    }

    async fn forward(&self, shard: usize, job: Job<Self>) -> Result<(), NodeError> {
        assert_ne!(shard, self.shard, "a shard runs its own calls");
        let target = self.shared.shards.borrow()[shard]
            .upgrade()
            .ok_or(NodeError::Unavailable("the shard has stopped"))?;
        self.shared.runtime.forward(job(target)).await;
        Ok(())
    }

    fn call_node(
        &self,
        node: u64,
        call: Vec<u8>,
    ) -> impl Future<Output = Result<Vec<u8>, NodeError>> {
        self.shared.runtime.call_node(self.shard, node, call)
    }

    fn replicated(&self) -> bool {
        self.shared.runtime.replicated()
    }

    fn cluster_nodes(&self) -> Vec<u64> {
        self.shared.runtime.cluster_nodes()
    }

    fn store_tenants(&self, tenants: &[Tenant]) -> Result<(), String> {
        self.shared.runtime.store_tenants(tenants)
    }

    fn admin_secret(&self) -> Option<Vec<u8>> {
        self.shared.admin_secret.borrow().clone()
    }

    fn learn_admin_secret(&self, secret: &[u8]) -> Result<(), String> {
        *self.shared.learned_secret.borrow_mut() = Some(secret.to_vec());
        Ok(())
    }

    /// Inline: a local node has no threads of its own (the simulation must stay
    /// deterministic), and its shards share one thread anyway.
    async fn verify_password(&self, password: String, phc: String) -> Result<bool, VerifierBusy> {
        self.shared
            .password_checks
            .set(self.shared.password_checks.get() + 1);
        Ok(crate::password::verify_password(&password, &phc))
    }

    fn fill_random(&self, bytes: &mut [u8]) {
        self.shared.rng.borrow_mut().fill_bytes(bytes);
    }
}

/// A node in one thread: its shards over engines held in one place. Dereferences to
/// shard 0, so a test calls [`crate::Node`] methods on it directly.
pub struct LocalNode<S: Storage + Clone + 'static, R: Runtime> {
    shards: Vec<Rc<LocalShard<S, R>>>,
    shared: Rc<Shared<S, R>>,
}

impl<S: Storage + Clone + 'static, R: Runtime> LocalNode<S, R> {
    /// A node of `shard_count` shards over opened engines, one per partition, with an
    /// empty tenant directory; credentials are drawn from `seed`. The limits are the
    /// first engine's. The engines' queues and groups are not yet known to agree (a crash
    /// may have cut a change short): call [`NodeShard::reconcile`] on shard 0 before
    /// serving, or the first change repairs them first.
    pub fn new(engines: Vec<Engine<S>>, runtime: R, seed: u64, shard_count: usize) -> Self {
        assert!(!engines.is_empty(), "at least one partition");
        let partition_count = u32::try_from(engines.len()).expect("few partitions");
        let config = NodeConfig::new(shard_count, partition_count, *engines[0].limits());
        LocalNode::with_config(engines, runtime, seed, config)
    }

    /// As [`LocalNode::new`], with the node's configuration given.
    pub fn with_config(engines: Vec<Engine<S>>, runtime: R, seed: u64, config: NodeConfig) -> Self {
        assert_eq!(
            engines.len(),
            usize::try_from(config.partition_count).expect("fits"),
            "one engine per partition"
        );
        let shared = Rc::new(Shared {
            engines: engines
                .into_iter()
                .map(|engine| RefCell::new(Some(Rc::new(engine))))
                .collect(),
            runtime,
            rng: RefCell::new(Pcg64::seed_from_u64(seed)),
            shards: RefCell::new(Vec::new()),
            faults: Cell::new(0),
            password_checks: Cell::new(0),
            admin_secret: RefCell::new(None),
            learned_secret: RefCell::new(None),
        });
        let directories = Directories::new(TenantDirectory::new(shared.runtime.stored_tenants()));
        let guards = AuthGuards::new(&config.login, shared.runtime.wall_ms());
        let shards: Vec<Rc<LocalShard<S, R>>> = (0..config.shard_count)
            .map(|shard| {
                let host = LocalHost {
                    shard,
                    shared: shared.clone(),
                };
                let guards = guards.clone();
                Rc::new(NodeShard::new(
                    shard,
                    host,
                    config,
                    directories.clone(),
                    guards,
                ))
            })
            .collect();
        *shared.shards.borrow_mut() = shards.iter().map(Rc::downgrade).collect();
        LocalNode { shards, shared }
    }

    pub fn shard(&self, index: usize) -> &Rc<LocalShard<S, R>> {
        &self.shards[index]
    }

    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    pub fn partition_count(&self) -> u32 {
        self.shards[0].config().partition_count
    }

    pub fn runtime(&self) -> &R {
        &self.shared.runtime
    }

    /// A partition's engine, whichever shard owns it; `None` once out of service.
    pub fn engine(&self, partition: u32) -> Option<Rc<Engine<S>>> {
        self.shared.engines[usize::try_from(partition).expect("fits")]
            .borrow()
            .clone()
    }

    /// Sets the admin secret the node proposes at its next start
    /// ([`NodeShard::reconcile`]) if partition 0 holds none.
    pub fn propose_admin_secret(&self, secret: Vec<u8>) {
        *self.shared.admin_secret.borrow_mut() = Some(secret);
    }

    /// The admin secret the node learned from partition 0, if any yet.
    pub fn learned_admin_secret(&self) -> Option<Vec<u8>> {
        self.shared.learned_secret.borrow().clone()
    }

    /// Storage faults seen so far (each took a partition out of service).
    pub fn faults(&self) -> u64 {
        self.shared.faults.get()
    }

    /// Password checks run so far (each an argon2id verification).
    pub fn password_checks(&self) -> u64 {
        self.shared.password_checks.get()
    }

    /// Advances every partition's time-driven work (visibility expiry, delayed releases,
    /// retention, snapshots) and republishes the directories if partition 0 applied a change
    /// (the server's `NodeShard::follow_metadata`, by polling); the driver calls it at the
    /// engines' deadlines. A storage fault takes the partition out of service and is
    /// returned.
    pub async fn tick(&self, now_ms: u64) -> Result<(), EngineError> {
        self.tick_engines(now_ms).await?;
        // Partition 0 out of service: the next tick after its return republishes.
        let _ = self.shards[0].refresh_metadata_if_changed().await;
        Ok(())
    }

    async fn tick_engines(&self, now_ms: u64) -> Result<(), EngineError> {
        for (partition, slot) in self.shared.engines.iter().enumerate() {
            let Some(engine) = slot.borrow().clone() else {
                continue;
            };
            if let Err(error) = engine.tick(now_ms).await {
                let partition = u32::try_from(partition).expect("fits");
                self.shards[0].host().storage_fault(partition, &error);
                return Err(error);
            }
        }
        Ok(())
    }

    /// The earliest deadline of any partition in service (queue time).
    pub fn next_deadline_ms(&self) -> Option<u64> {
        (0..self.partition_count())
            .filter_map(|p| self.engine(p)?.next_deadline_ms())
            .min()
    }
}

impl<S: Storage + Clone + 'static, R: Runtime> Deref for LocalNode<S, R> {
    type Target = LocalShard<S, R>;

    fn deref(&self) -> &Self::Target {
        &self.shards[0]
    }
}

/// The hand-advanced clock of in-process tests and fuzz targets: a sleep yields once (so
/// that futures polled alongside run) and then moves the clock by the time slept, so a
/// long poll or a rebalance wait ends without real time passing.
#[derive(Clone)]
pub struct StepClock(pub Rc<Cell<u64>>);

impl StepClock {
    pub fn starting_at(now_ms: u64) -> StepClock {
        StepClock(Rc::new(Cell::new(now_ms)))
    }
}

impl Runtime for StepClock {
    fn now_ms(&self) -> u64 {
        self.0.get()
    }

    async fn sleep_ms(&self, ms: u64) {
        futures_lite::future::yield_now().await;
        self.0.set(self.0.get().saturating_add(ms));
    }
}

/// A clock of in-process tests that stands still while any call can progress:
/// [`TimerClock::run`] moves it to the earliest pending timer only when every call waits
/// on one, so several clients' calls (members joining a group) meet at their timers as
/// they do against a server, with no real time passing.
#[derive(Clone, Default)]
pub struct TimerClock {
    now: Rc<Cell<u64>>,
    /// Pending sleeps: id to deadline.
    timers: Rc<RefCell<std::collections::BTreeMap<u64, u64>>>,
    next_timer: Rc<Cell<u64>>,
}

/// Polls of a [`TimerClock::run`] between two moves of the clock, and moves at most.
const TIMER_RUN_POLLS: usize = 4;
const TIMER_RUN_MOVES_MAX: usize = 10_000;

impl TimerClock {
    pub fn starting_at(now_ms: u64) -> TimerClock {
        let clock = TimerClock::default();
        clock.now.set(now_ms);
        clock
    }

    /// Moves the clock forward by `ms` (the test's own passage of time).
    pub fn advance(&self, ms: u64) {
        self.now.set(self.now.get().saturating_add(ms));
    }

    /// Runs `future` to completion, moving the clock to the earliest pending timer
    /// whenever it cannot progress otherwise; panics if it never completes (bounded).
    pub fn run<F: Future>(&self, future: F) -> F::Output {
        let mut future = std::pin::pin!(future);
        let mut context = std::task::Context::from_waker(std::task::Waker::noop());
        for _ in 0..TIMER_RUN_MOVES_MAX {
            for _ in 0..TIMER_RUN_POLLS {
                if let std::task::Poll::Ready(output) = future.as_mut().poll(&mut context) {
                    return output;
                }
            }
            let earliest = self.timers.borrow().values().min().copied();
            let earliest = earliest.expect("a pending call waits on a timer");
            self.now.set(self.now.get().max(earliest));
        }
        panic!("the calls never completed");
    }
}

/// One pending sleep of a [`TimerClock`].
struct TimerSleep {
    clock: TimerClock,
    deadline_ms: u64,
    id: u64,
}

impl Future for TimerSleep {
    type Output = ();
    fn poll(self: Pin<&mut Self>, _: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        if self.clock.now.get() >= self.deadline_ms {
            self.clock.timers.borrow_mut().remove(&self.id);
            return std::task::Poll::Ready(());
        }
        self.clock
            .timers
            .borrow_mut()
            .insert(self.id, self.deadline_ms);
        std::task::Poll::Pending
    }
}

impl Drop for TimerSleep {
    fn drop(&mut self) {
        self.clock.timers.borrow_mut().remove(&self.id);
    }
}

impl Runtime for TimerClock {
    fn now_ms(&self) -> u64 {
        self.now.get()
    }

    fn sleep_ms(&self, ms: u64) -> impl Future<Output = ()> {
        self.next_timer.set(self.next_timer.get() + 1);
        TimerSleep {
            clock: self.clone(),
            deadline_ms: self.now.get().saturating_add(ms),
            id: self.next_timer.get(),
        }
    }
}

/// The engine configuration of in-process tests and fuzz targets: small segments, no
/// preallocation, `limits` as given.
pub fn test_engine_config(
    limits: sluice_core::engine::EngineLimits,
) -> sluice_core::engine::EngineConfig {
    use sluice_core::log::{LogConfig, VerifyOnOpen};
    sluice_core::engine::EngineConfig {
        log: LogConfig {
            segment_bytes_max: 64 * 1024,
            index_interval_bytes: 4096,
            preallocate_bytes: 0,
            verify_on_open: VerifyOnOpen::Tail,
            cache_bytes_max: sluice_core::limits::LOG_CACHE_BYTES_DEFAULT,
            recycle_segments_max: sluice_core::limits::LOG_RECYCLE_SEGMENTS_DEFAULT,
        },
        limits,
        snapshot_every_records: 10_000,
    }
}

/// A node of `shards` shards over `partitions` fresh simulated disks (disk `p` seeded
/// with `p`), its engines opened at `now_ms` with [`test_engine_config`], on a
/// [`StepClock`] starting there.
pub fn sim_node(
    partitions: u32,
    shards: usize,
    limits: sluice_core::engine::EngineLimits,
    now_ms: u64,
) -> LocalNode<sluice_core::sim_disk::SimDisk, StepClock> {
    sim_node_on(
        partitions,
        shards,
        test_engine_config(limits),
        StepClock::starting_at(now_ms),
    )
}

/// [`sim_node`] with the engines' configuration and the clock given (keep a clone of
/// it to move time); the engines open at the clock's time.
pub fn sim_node_on(
    partitions: u32,
    shards: usize,
    config: sluice_core::engine::EngineConfig,
    clock: StepClock,
) -> LocalNode<sluice_core::sim_disk::SimDisk, StepClock> {
    use sluice_core::sim_disk::{block_on, SimDisk};
    let now_ms = clock.0.get();
    let engines = (0..partitions)
        .map(|p| {
            block_on(Engine::open(SimDisk::new(u64::from(p)), config, now_ms))
                .expect("a fresh simulated disk opens")
        })
        .collect();
    LocalNode::new(engines, clock, 1, shards)
}
