//! State every shard reads and none owns: configuration, secrets, and the node layer's
//! read-mostly directories (tenants, queues), which shard 0 republishes with arc-swap
//! after each metadata change. Readers load an `Arc` snapshot without locks. Also the
//! node's login guards (a mutex per table, `sluice_node::guards`) and the password
//! verifiers, one set for all shards: a login may reach any shard. And what `/readyz`
//! reads: the leader each partition's replica last saw, kept by the shard that owns it.

use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use sluice_core::clock::{QueueClock, Reading};
use sluice_node::tenants::TenantDirectory;
use sluice_node::{AuthGuards, Directories};

use crate::cluster::ClusterConfig;
use crate::config::Config;
use crate::datadir::{NodeFacts, Secrets};
use crate::password_pool::PasswordPool;

pub struct Shared {
    pub config: Config,
    pub facts: NodeFacts,
    /// The admin secrets: this data directory's at start, replaced by partition 0's once
    /// the node learns them (`ServerHost::learn_admin_secret`).
    pub secrets: std::sync::Mutex<Secrets>,
    /// Moves each time `secrets` is replaced: the shards rebuild their HTTP service's
    /// settings (admin credentials, token key) from it (`Shard::service`).
    pub secrets_version: AtomicU64,
    pub shard_count: usize,
    pub directories: Arc<Directories>,
    /// Replay cache of signed token requests and login back-off, for every shard.
    pub guards: Arc<AuthGuards>,
    /// Threads that check login passwords for every shard.
    pub passwords: PasswordPool,
    /// The thread that posts alarm webhooks for every shard.
    pub webhooks: Arc<crate::webhooks::Webhooks>,
    /// Set by the signal thread: stop accepting, finish, sync, exit.
    pub stopping: AtomicBool,
    /// The port every shard binds (shard 0 resolves port 0 first).
    pub port: AtomicU16,
    /// The Kafka port every shard binds (`kafka_listen`; shard 0 resolves port 0 first).
    pub kafka_port: AtomicU16,
    /// The RocketMQ port every shard binds (`rocketmq_listen`; shard 0 resolves port 0
    /// first).
    pub rocketmq_port: AtomicU16,
    /// Mesh peer id of each shard (`usize::MAX` until it joined).
    pub peer_of_shard: Vec<AtomicUsize>,
    /// Shards that finished start-up (engines open, directory published, listening).
    pub listening: AtomicUsize,
    pub directory_ready: AtomicBool,
    pub metrics: crate::metrics::Metrics,
    /// The cluster this node belongs to (`Config::cluster`); `None`: a single node.
    pub cluster: Option<ClusterConfig>,
    /// Per partition, the node id of the leader its replica here last saw; 0 while none
    /// is known (before the first election, while the partition reopens after a fault).
    /// Written by the owning shard, read by `/readyz` on any shard.
    pub leaders: Vec<AtomicU64>,
    /// Per partition, its replica's Raft term, commit index and applied index here, as
    /// the Raft ticker last recorded them (cluster mode; zeros on a single node).
    pub progress: Vec<[AtomicU64; 3]>,
    /// Per shard, its cluster counters (forwarded calls, dropped frames and Raft
    /// messages) as it last published them (`Shard::publish_cluster_counters`), for
    /// `/metrics` on any shard.
    pub cluster_counters: Vec<[AtomicU64; CLUSTER_COUNTERS]>,
    /// Queue time of this run: the wall clock at start, advanced by `started`
    /// (`sluice_core::clock`); every shard reads the same.
    clock: QueueClock,
    started: Instant,
}

/// How many cluster counters each shard publishes.
pub const CLUSTER_COUNTERS: usize = 11;
/// The cluster counters as `/metrics` names them: (metric, label value), in the order a
/// shard publishes them.
pub const CLUSTER_COUNTER_NAMES: [(&str, &str); CLUSTER_COUNTERS] = [
    ("sluice_forwarded_calls", "sent"),
    ("sluice_forwarded_calls", "failed"),
    ("sluice_forwarded_calls", "refused_busy"),
    ("sluice_forwarded_calls", "served"),
    ("sluice_forwarded_calls", "serve_refused"),
    ("sluice_forward_frames_dropped", "early_failure"),
    ("sluice_forward_frames_dropped", "unmatched_reply"),
    ("sluice_forward_frames_dropped", "bad_frame"),
    ("sluice_raft_messages_dropped", "peer_queue_full"),
    ("sluice_raft_messages_dropped", "refused"),
    ("sluice_raft_messages_dropped", "undeliverable"),
];

/// The wall clock, epoch milliseconds (signatures, tokens, and queue time's anchor).
pub fn wall_ms() -> u64 {
    let wall = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_millis();
    u64::try_from(wall).expect("milliseconds fit u64")
}

impl Shared {
    pub fn new(
        config: Config,
        facts: NodeFacts,
        secrets: Secrets,
        shard_count: usize,
        tenants: TenantDirectory,
        passwords: PasswordPool,
        cluster: Option<ClusterConfig>,
    ) -> Arc<Shared> {
        let guards = AuthGuards::new(&config.login_limits(), wall_ms());
        let leaders = (0..facts.partitions).map(|_| AtomicU64::new(0)).collect();
        let progress = (0..facts.partitions)
            .map(|_| std::array::from_fn(|_| AtomicU64::new(0)))
            .collect();
        let cluster_counters = (0..shard_count)
            .map(|_| std::array::from_fn(|_| AtomicU64::new(0)))
            .collect();
        Arc::new(Shared {
            cluster_counters,
            config,
            facts,
            secrets: std::sync::Mutex::new(secrets),
            secrets_version: AtomicU64::new(0),
            shard_count,
            directories: Directories::new(tenants),
            guards,
            passwords,
            webhooks: crate::webhooks::Webhooks::start(),
            stopping: AtomicBool::new(false),
            port: AtomicU16::new(0),
            kafka_port: AtomicU16::new(0),
            rocketmq_port: AtomicU16::new(0),
            peer_of_shard: (0..shard_count)
                .map(|_| AtomicUsize::new(usize::MAX))
                .collect(),
            listening: AtomicUsize::new(0),
            directory_ready: AtomicBool::new(false),
            metrics: crate::metrics::Metrics::new(),
            leaders,
            progress,
            cluster,
            clock: QueueClock::start(Reading {
                wall_ms: wall_ms(),
                mono_ms: 0,
            }),
            started: Instant::now(),
        })
    }

    /// Queue time (epoch ms) for the engines: steps of the wall clock while the server
    /// runs do not move it (`sluice_core::clock`).
    pub fn queue_ms(&self) -> u64 {
        let mono = u64::try_from(self.started.elapsed().as_millis()).expect("ms fit u64");
        self.clock.now_ms(Reading {
            wall_ms: wall_ms(),
            mono_ms: mono,
        })
    }

    /// The admin secrets as of now.
    pub fn secrets(&self) -> Secrets {
        self.secrets.lock().expect("not poisoned").clone()
    }

    pub fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// Records the leader `partition`'s replica here sees now (`None`: none known).
    pub fn set_leader(&self, partition: u32, leader: Option<u64>) {
        if let Some(slot) = self.leaders.get(partition as usize) {
            slot.store(leader.unwrap_or(0), Ordering::Release);
        }
    }

    /// Records `partition`'s replica's term, commit index and applied index.
    pub fn set_progress(&self, partition: u32, term: u64, commit: u64, applied: u64) {
        if let Some(slots) = self.progress.get(partition as usize) {
            for (slot, value) in slots.iter().zip([term, commit, applied]) {
                slot.store(value, Ordering::Release);
            }
        }
    }

    /// Each partition's term, commit index and applied index here, by partition.
    pub fn progress(&self) -> Vec<[u64; 3]> {
        self.progress
            .iter()
            .map(|slots| std::array::from_fn(|i| slots[i].load(Ordering::Acquire)))
            .collect()
    }

    /// Shard `shard`'s cluster counters, in [`CLUSTER_COUNTER_NAMES`] order.
    pub fn publish_cluster_counters(&self, shard: usize, values: [u64; CLUSTER_COUNTERS]) {
        if let Some(slots) = self.cluster_counters.get(shard) {
            for (slot, value) in slots.iter().zip(values) {
                slot.store(value, Ordering::Release);
            }
        }
    }

    /// Every shard's cluster counters summed, in [`CLUSTER_COUNTER_NAMES`] order.
    pub fn cluster_counters(&self) -> [u64; CLUSTER_COUNTERS] {
        let mut sums = [0; CLUSTER_COUNTERS];
        for slots in &self.cluster_counters {
            for (sum, slot) in sums.iter_mut().zip(slots) {
                *sum += slot.load(Ordering::Acquire);
            }
        }
        sums
    }

    /// Each partition's leader as this node last saw it, by partition.
    pub fn leaders(&self) -> Vec<Option<u64>> {
        self.leaders
            .iter()
            .map(|slot| Some(slot.load(Ordering::Acquire)).filter(|id| *id != 0))
            .collect()
    }

    /// The shard that owns `partition` (the node layer's rule).
    pub fn owner_of(&self, partition: u32) -> usize {
        sluice_node::requests::owner_of(partition, self.shard_count)
    }
}
