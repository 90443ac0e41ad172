//! One shard: a glommio executor pinned to a core that owns some partitions (their
//! engines), serves HTTP on the shared port, and runs the node layer's
//! [`NodeShard`] over a [`ServerHost`]. Everything here is single-threaded; shards share
//! nothing but [`Shared`] and the channel mesh.
//!
//! What a request does (routing, forwarding, long polls, acks, quotas, metadata changes)
//! is `sluice_node`'s, the same code the simulation and the in-process tests run. This
//! file only provides what a shard is made of: its engines (opened here, taken out of
//! service after a storage fault and reopened by the ticker), the mesh that carries
//! forwarded calls between shards as [`Job`]s, the clock, and the tenant file. In cluster
//! mode each engine is one replica of its partition's Raft group, and the shard's
//! [`Replication`] carries its messages (`crate::replication`).

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use glommio::channels::channel_mesh::{Receivers, Senders};
use rand::RngCore;
use sluice_core::engine::types::EngineError;
use sluice_core::engine::{Engine, EngineConfig, EngineLimits, EngineOpenError};
use sluice_core::log::{LogConfig, VerifyOnOpen};
use sluice_core::replica::ReplicaConfig;
use sluice_http::service::ServiceConfig;
use sluice_node::password::VerifierBusy;
use sluice_node::tenants::{Quotas, Tenant};
use sluice_node::{AuthEvent, Directories, Host, Job, NodeConfig, NodeError, NodeShard};
use sluice_shard::DmaStorage;

use crate::cluster::{NodeId, ShardNet};
use crate::config::Config;
use crate::datadir::{self, partition_dir};
use crate::fairness::AddressTable;
use crate::forwarding::Forwarder;
use crate::replication::Replication;
use crate::shared::Shared;

pub type PartitionEngine = Engine<DmaStorage>;

/// How often a shard publishes its cluster counters for `/metrics`.
pub const CLUSTER_COUNTERS_PUBLISH_MS: u64 = 1_000;
/// A ticker sleeps at most this long, so time-driven changes are at most this late.
const TICK_INTERVAL_MS: u64 = 250;
/// After a storage fault a partition is reopened after this pause.
const REOPEN_PAUSE_MS: u64 = 200;

/// The engines' configuration from the server's: segment size, log cache, and
/// `snapshot_every_records` applied records between two snapshots.
pub fn engine_config(config: &Config) -> EngineConfig {
    EngineConfig {
        log: LogConfig {
            segment_bytes_max: config.segment_bytes_max,
            index_interval_bytes: 64 * 1024,
            preallocate_bytes: 16 << 20,
            verify_on_open: VerifyOnOpen::Tail,
            cache_bytes_max: config.log_cache_bytes_max,
            recycle_segments_max: sluice_core::limits::LOG_RECYCLE_SEGMENTS_DEFAULT,
        },
        limits: EngineLimits {
            // Tenant quotas (lower) are checked by the node layer; these are ceilings.
            groups_per_queue_max: 8,
            queues_per_tenant_max: config.queues_per_tenant_max,
            visibility_ms_min: 1_000,
            // A Kafka produce of 1,000 records is one engine call; the DMS adapter keeps
            // its own, lower, per-request limits (10 messages, 512 KiB).
            batch_messages_max: sluice_core::limits::ENGINE_BATCH_MESSAGES_CEILING,
            batch_bytes_max: KAFKA_ENGINE_BATCH_BYTES_MAX,
            // A Kafka share fetch acquires up to 1,000 records in one receive; the DMS
            // adapter keeps its own limit (10 a consume).
            receive_messages_max: 1_000,
            ..EngineLimits::dms()
        },
        snapshot_every_records: config.snapshot_every_records,
    }
}

/// Bytes of bodies and attributes one engine send may carry: a Kafka batch of 1,000
/// records of 1 KiB with their keys and headers, well inside a log batch
/// (`sluice_core::limits::BATCH_BYTES_MAX`, 4 MiB).
const KAFKA_ENGINE_BATCH_BYTES_MAX: u64 = 2 << 20;

/// The node layer's configuration for this server.
pub fn node_config(shared: &Shared) -> NodeConfig {
    let config = &shared.config;
    NodeConfig {
        default_quotas: Quotas {
            queues_max: config.tenant_queues_max,
            groups_per_queue_max: config.tenant_groups_per_queue_max,
        },
        login: config.login_limits(),
        ..NodeConfig::new(
            shared.shard_count,
            shared.facts.partitions,
            engine_config(config).limits,
        )
    }
}

/// This node's place in every partition's Raft group: a group of one on a single node;
/// in a cluster, replica `node_id` of a group whose first voters are `--initial-voters`
/// (every node of `--peers` unless set). A node outside them starts outside every group
/// until `sluice cluster add-node` or `move` adds it.
pub fn replica_config(shared: &Shared) -> ReplicaConfig {
    match &shared.cluster {
        None => ReplicaConfig::single(),
        Some(cluster) => {
            let voters = cluster.initial_voters.iter().map(|id| id.0).collect();
            ReplicaConfig::member(cluster.node_id.0, voters)
        }
    }
}

/// Opens a partition's engine on `storage` as this node's replica of it.
async fn open_engine(
    shared: &Shared,
    storage: DmaStorage,
) -> Result<PartitionEngine, EngineOpenError> {
    let config = engine_config(&shared.config);
    Engine::open_replica(storage, config, replica_config(shared), shared.queue_ms()).await
}

/// A partition this shard owns: its engine, absent while it reopens after a fault.
struct Slot {
    storage: DmaStorage,
    engine: Option<Rc<PartitionEngine>>,
}

/// What the node layer needs of a server shard.
pub struct ServerHost {
    index: usize,
    shared: Arc<Shared>,
    slots: RefCell<BTreeMap<u32, Slot>>,
    senders: Senders<Job<ServerHost>>,
    /// Cluster mode: carries calls forwarded to the node leading a partition.
    forwarder: RefCell<Option<Rc<Forwarder>>>,
}

impl ServerHost {
    /// Cluster mode: forwarded calls go through `forwarder` from now on (`None`: no more).
    pub fn attach_forwarder(&self, forwarder: Option<Rc<Forwarder>>) {
        *self.forwarder.borrow_mut() = forwarder;
    }
}

impl Host for ServerHost {
    type Storage = DmaStorage;

    /// Queue time, epoch milliseconds: the wall clock at start advanced by the monotonic
    /// clock (steps of the wall clock do not move it; `sluice_core::clock`).
    fn now_ms(&self) -> u64 {
        self.shared.queue_ms()
    }

    fn wall_ms(&self) -> u64 {
        crate::shared::wall_ms()
    }

    async fn sleep_ms(&self, ms: u64) {
        glommio::timer::sleep(Duration::from_millis(ms)).await;
    }

    fn stopping(&self) -> bool {
        self.shared.stopping()
    }

    fn replicated(&self) -> bool {
        self.shared.cluster.is_some()
    }

    fn cluster_nodes(&self) -> Vec<u64> {
        self.shared
            .cluster
            .as_ref()
            .map(|cluster| cluster.peers.iter().map(|peer| peer.id.0).collect())
            .unwrap_or_default()
    }

    fn engine(&self, partition: u32) -> Result<Rc<PartitionEngine>, NodeError> {
        let slots = self.slots.borrow();
        let slot = slots.get(&partition).expect("called on the owner");
        slot.engine.clone().ok_or(NodeError::Unavailable(
            "the partition is recovering from a storage fault",
        ))
    }

    fn storage_fault(&self, partition: u32, error: &EngineError) {
        eprintln!("sluice: partition {partition}: storage fault, reopening: {error}");
        self.shared.set_leader(partition, None);
        if let Some(slot) = self.slots.borrow_mut().get_mut(&partition) {
            slot.engine = None;
        }
    }

    async fn forward(&self, shard: usize, job: Job<ServerHost>) -> Result<(), NodeError> {
        assert_ne!(shard, self.index, "a shard runs its own calls");
        let peer = self.shared.peer_of_shard[shard].load(Ordering::Acquire);
        assert!(
            peer != usize::MAX,
            "every shard joined the mesh before serving"
        );
        self.senders
            .send_to(peer, job)
            .await
            .map_err(|_| NodeError::Unavailable("another shard is not reachable"))
    }

    /// Over the shard's cluster transport (`crate::forwarding`).
    async fn call_node(&self, node: u64, call: Vec<u8>) -> Result<Vec<u8>, NodeError> {
        let forwarder = self.forwarder.borrow().clone();
        let Some(forwarder) = forwarder else {
            return Err(NodeError::Unavailable("no cluster transport"));
        };
        forwarder.call(NodeId(node), call).await
    }

    /// The local copy of partition 0's tenants, for the CLI and the next start.
    fn store_tenants(&self, tenants: &[Tenant]) -> Result<(), String> {
        datadir::store_tenants(&self.shared.config.data_dir, tenants).map_err(|e| e.to_string())
    }

    /// The data directory's secrets, proposed when partition 0 holds none.
    fn admin_secret(&self) -> Option<Vec<u8>> {
        Some(self.shared.secrets().to_record())
    }

    /// Partition 0's secrets: written into the data directory when they differ from the
    /// file's, and used from then on.
    fn learn_admin_secret(&self, secret: &[u8]) -> Result<(), String> {
        let learned = datadir::Secrets::from_record(secret)
            .ok_or("partition 0's admin secret record is malformed")?;
        let mut held = self.shared.secrets.lock().expect("not poisoned");
        if *held != learned {
            datadir::store_secrets(&self.shared.config.data_dir, &learned)
                .map_err(|e| e.to_string())?;
            *held = learned;
            self.shared.secrets_version.fetch_add(1, Ordering::AcqRel);
        }
        Ok(())
    }

    /// On the password verifiers' threads (`crate::password_pool`); this shard serves
    /// other requests while it waits.
    async fn verify_password(&self, password: String, phc: String) -> Result<bool, VerifierBusy> {
        self.shared.passwords.verify(password, phc).await
    }

    fn auth_event(&self, event: AuthEvent) {
        self.shared.metrics.auth_event(event);
    }

    fn fill_random(&self, bytes: &mut [u8]) {
        rand::rngs::OsRng.fill_bytes(bytes);
    }

    fn deliver_webhook(&self, url: &str, body: Vec<u8>) {
        self.shared.webhooks.post(url, body);
    }

    fn log(&self, line: &str) {
        eprintln!("sluice: {line}");
    }
}

/// A server shard: the node layer's shard over this host, and the HTTP side's counters.
pub struct Shard {
    pub index: usize,
    pub shared: Arc<Shared>,
    pub node: Rc<NodeShard<ServerHost>>,
    /// Requests being served by this shard's HTTP and Kafka connections.
    pub requests_inflight: Cell<u32>,
    /// This shard's open HTTP and Kafka connections (`http::admit`).
    pub connections_open: Cell<u32>,
    /// Who holds this shard's connections, and who may open more (`fairness`).
    pub addresses: RefCell<AddressTable>,
    /// Cluster mode: the transport and tasks that carry this shard's Raft messages.
    replication: RefCell<Option<Rc<Replication>>>,
    /// The HTTP service's settings with the admin secrets of `Shared::secrets_version`
    /// (partition 0's, which a cluster node learns after it started serving).
    service: RefCell<Option<(u64, Rc<ServiceConfig>)>>,
}

impl Shard {
    /// Opens this shard's partitions. Runs before the mesh is used.
    pub async fn open(
        index: usize,
        shared: Arc<Shared>,
        directories: Arc<Directories>,
        senders: Senders<Job<ServerHost>>,
    ) -> Result<Rc<Shard>, String> {
        let mut slots = BTreeMap::new();
        for partition in 0..shared.facts.partitions {
            if shared.owner_of(partition) != index {
                continue;
            }
            let dir = partition_dir(&shared.config.data_dir, partition);
            let storage = DmaStorage::create_dir_all(&dir)
                .map_err(|e| format!("partition {partition} at {}: {e}", dir.display()))?
                .with_io_submit(shared.config.io_submit);
            let metrics_of = shared.clone();
            storage.observe_syncs(Rc::new(move |took| {
                metrics_of.metrics.fsync_seconds.observe(took.as_secs_f64());
            }));
            let engine = open_engine(&shared, storage.clone())
                .await
                .map_err(|e| format!("partition {partition} at {}: {e}", dir.display()))?;
            shared.set_leader(partition, engine.leader_id());
            let engine = Some(Rc::new(engine));
            slots.insert(partition, Slot { storage, engine });
        }
        let host = ServerHost {
            index,
            shared: shared.clone(),
            slots: RefCell::new(slots),
            senders,
            forwarder: RefCell::new(None),
        };
        let guards = shared.guards.clone();
        let node = NodeShard::new(index, host, node_config(&shared), directories, guards);
        Ok(Rc::new(Shard {
            index,
            node: Rc::new(node),
            requests_inflight: Cell::new(0),
            connections_open: Cell::new(0),
            addresses: RefCell::new(AddressTable::new(&shared.config)),
            replication: RefCell::new(None),
            service: RefCell::new(None),
            shared,
        }))
    }

    fn host(&self) -> &ServerHost {
        self.node.host()
    }

    /// `base` with the admin secrets the node holds now (rebuilt once per change).
    pub fn service(&self, base: &Rc<ServiceConfig>) -> Rc<ServiceConfig> {
        let version = self.shared.secrets_version.load(Ordering::Acquire);
        if let Some((cached, service)) = self.service.borrow().as_ref() {
            if *cached == version {
                return service.clone();
            }
        }
        let secrets = self.shared.secrets();
        let service = Rc::new(ServiceConfig {
            token_key: secrets.token_key_bytes(),
            admin_ak: secrets.admin_ak,
            admin_sk: secrets.admin_sk,
            ..(**base).clone()
        });
        *self.service.borrow_mut() = Some((version, service.clone()));
        service
    }

    /// The engine of `partition` when this shard owns it and it is in service; `None`
    /// for any other partition number (never a panic: peers name partitions).
    pub fn owned_engine(&self, partition: u32) -> Option<Rc<PartitionEngine>> {
        let slots = self.host().slots.borrow();
        slots.get(&partition).and_then(|slot| slot.engine.clone())
    }

    /// Cluster mode: starts this shard's transport and Raft tasks (`crate::replication`),
    /// and publishes its cluster counters for `/metrics` every
    /// [`CLUSTER_COUNTERS_PUBLISH_MS`] until the replication stops.
    pub fn start_replication(self: &Rc<Shard>, net: ShardNet) {
        let replication = Replication::start(self, net);
        *self.replication.borrow_mut() = Some(replication);
        let shard = self.clone();
        glommio::spawn_local(async move {
            // Ends when the replication stops.
            while shard.publish_cluster_counters() {
                glommio::timer::sleep(Duration::from_millis(CLUSTER_COUNTERS_PUBLISH_MS)).await;
            }
        })
        .detach();
    }

    /// Publishes this shard's forwarding and Raft counters to `Shared`; `false` once the
    /// replication stopped.
    fn publish_cluster_counters(&self) -> bool {
        let replication = self.replication.borrow();
        let Some(replication) = replication.as_ref() else {
            return false;
        };
        let calls = self.node.forwarding().stats();
        let frames = replication.forwarder().stats();
        let raft = replication.counters();
        self.shared.publish_cluster_counters(
            self.index,
            [
                calls.sent,
                calls.failed,
                calls.refused,
                calls.served,
                calls.serve_refused,
                frames.calls_failed,
                frames.replies_unmatched,
                frames.frames_dropped,
                raft.sent_full.get(),
                raft.sent_refused.get(),
                raft.received_dropped.get(),
            ],
        );
        true
    }

    /// Cluster mode: ends this shard's Raft tasks and closes its transport, logging what
    /// it dropped. Nothing on a single node.
    pub async fn stop_replication(&self) {
        let replication = self.replication.borrow_mut().take();
        let Some(replication) = replication else {
            return;
        };
        replication.close().await;
        self.host().attach_forwarder(None);
        let forwarded = self.node.forwarding().stats();
        let frames = replication.forwarder().stats();
        eprintln!(
            "sluice: shard {}: forwarded calls: {} sent, {} failed, {} refused (busy); {} \
             served, {} refused; {} early failures, {} unmatched replies, {} bad frames",
            self.index,
            forwarded.sent,
            forwarded.failed,
            forwarded.refused,
            forwarded.served,
            forwarded.serve_refused,
            frames.calls_failed,
            frames.replies_unmatched,
            frames.frames_dropped
        );
        let counters = replication.counters();
        eprintln!(
            "sluice: shard {}: raft messages dropped: {} (peer queue full), {} (refused), \
             {} received (undeliverable); snapshot chunk frames dropped: {}",
            self.index,
            counters.sent_full.get(),
            counters.sent_refused.get(),
            counters.received_dropped.get(),
            replication.snapshot_frames_dropped()
        );
    }

    /// Runs the calls one peer forwards to this shard until the mesh closes: each as a
    /// task of its own, so a long wait does not hold up the calls behind it.
    pub fn spawn_mesh_receiver(
        self: &Rc<Shard>,
        receivers: Rc<Receivers<Job<ServerHost>>>,
        peer: usize,
    ) {
        let node = self.node.clone();
        glommio::spawn_local(async move {
            // Runs for the life of the shard: one job per iteration, ends when the
            // peer's side of the mesh closes.
            while let Ok(Some(job)) = receivers.recv_from(peer).await {
                glommio::spawn_local(job(node.clone())).detach();
            }
        })
        .detach();
    }

    /// One ticker per owned partition: drives time into the engine, reopens it after a
    /// storage fault.
    pub fn spawn_tickers(self: &Rc<Shard>) {
        for partition in self.node.owned().to_vec() {
            let shard = self.clone();
            glommio::spawn_local(async move { shard.tick_loop(partition).await }).detach();
        }
    }

    async fn tick_loop(self: Rc<Shard>, partition: u32) {
        // Runs until the shard stops; each pass sleeps at most TICK_INTERVAL_MS.
        while !self.shared.stopping() {
            let engine = match self.host().engine(partition) {
                Ok(engine) => engine,
                Err(_) => {
                    glommio::timer::sleep(Duration::from_millis(REOPEN_PAUSE_MS)).await;
                    self.reopen(partition).await;
                    continue;
                }
            };
            let now = self.shared.queue_ms();
            if let Err(error) = engine.tick(now).await {
                if matches!(error, EngineError::Storage(_)) {
                    self.host().storage_fault(partition, &error);
                }
                continue;
            }
            // Not woken by changes: a deadline set since (a new lease) is at most
            // TICK_INTERVAL_MS late, and the hot path pays no wake-up per request.
            let until = engine
                .next_deadline_ms()
                .unwrap_or(u64::MAX)
                .min(now + TICK_INTERVAL_MS);
            let pause = Duration::from_millis(until.saturating_sub(now).max(1));
            glommio::timer::sleep(pause).await;
        }
    }

    async fn reopen(&self, partition: u32) {
        let storage = self.host().slots.borrow()[&partition].storage.clone();
        match open_engine(&self.shared, storage).await {
            Ok(engine) => {
                eprintln!("sluice: partition {partition} reopened");
                self.shared.set_leader(partition, engine.leader_id());
                let engine = Rc::new(engine);
                if let Some(replication) = self.replication.borrow().as_ref() {
                    replication.wire(partition, engine.clone());
                }
                if let Some(slot) = self.host().slots.borrow_mut().get_mut(&partition) {
                    slot.engine = Some(engine);
                }
            }
            Err(error) => eprintln!("sluice: partition {partition}: reopen failed: {error}"),
        }
    }

    /// Writes a snapshot of every owned partition (graceful shutdown).
    pub async fn sync_all(&self) {
        for partition in self.node.owned() {
            if let Ok(engine) = self.host().engine(*partition) {
                if let Err(error) = engine.snapshot().await {
                    eprintln!("sluice: partition {partition}: snapshot at shutdown: {error}");
                }
            }
        }
    }
}
