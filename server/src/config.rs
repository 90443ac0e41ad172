//! Server configuration: built-in defaults, then a TOML file, then `SLUICE_*` environment
//! variables, then command-line flags; each later source overrides the earlier ones
//! field by field. The resolved values are checked once at start-up.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;
use sluice_node::LoginLimits;
use sluice_rocketmq::RocketMqConfig;
use sluice_shard::IoSubmit;
use sluice_tcp::kafka::{Broker, KafkaConfig};

use crate::cluster::config::parse_peers;
use crate::cluster::{ClusterConfig, NodeId, Peer};

/// Every key, as in the TOML file and (upper case, `SLUICE_` prefix) the environment.
pub const KEYS: [&str; 44] = [
    "data_dir",
    "http_listen",
    "shards",
    "partitions",
    "connections_per_shard_max",
    "request_body_bytes_max",
    "header_timeout_ms",
    "body_timeout_ms",
    "requests_per_shard_max",
    "ack_wait_s_min",
    "clock_skew_s_max",
    "token_ttl_s",
    "tenant_queues_max",
    "queues_per_tenant_max",
    "tenant_groups_per_queue_max",
    "segment_bytes_max",
    "log_cache_bytes_max",
    "snapshot_every_records",
    "queue_retention_minutes",
    "spin_before_park_us",
    "io_submit",
    "connections_reserved_per_shard",
    "connections_per_address_max",
    "accepts_per_address_per_s",
    "accepts_per_address_burst",
    "addresses_tracked_max",
    "metrics_listen",
    "metrics_tenant_names",
    "password_threads",
    "password_queue_max",
    "login_failures_per_tenant_max",
    "login_failures_per_address_max",
    "login_backoff_s_max",
    "monitor_interval_ms",
    "replay_entries_max",
    "node_id",
    "cluster_listen",
    "peers",
    "initial_voters",
    "kafka_listen",
    "kafka_advertise",
    "kafka_brokers",
    "rocketmq_listen",
    "rocketmq_advertise",
];

/// Parses node ids separated by commas (`--initial-voters 1,2,3`).
fn parse_node_ids(text: &str) -> Result<Vec<NodeId>, String> {
    text.split(',')
        .map(|id| {
            id.trim()
                .parse::<u64>()
                .ok()
                .filter(|id| *id > 0)
                .map(NodeId)
                .ok_or_else(|| format!("{:?} is not a node id", id.trim()))
        })
        .collect()
}

/// Splits `HOST:PORT` (an IPv6 host in brackets: `[::1]:9092`) into the host, without
/// brackets, and a port above 0.
pub fn parse_host_port(text: &str) -> Result<(String, u16), String> {
    let bad = || format!("{text:?} is not a HOST:PORT address");
    let (host, port) = text.rsplit_once(':').ok_or_else(bad)?;
    let host = match host.strip_prefix('[') {
        Some(inner) => inner.strip_suffix(']').ok_or_else(bad)?,
        None if host.contains(':') => return Err(bad()),
        None => host,
    };
    let port: u16 = port.parse().map_err(|_| bad())?;
    if host.is_empty() || host.chars().any(char::is_whitespace) || port == 0 {
        return Err(bad());
    }
    Ok((host.to_string(), port))
}

/// Widest configurable skew window (APIG's 15 minutes).
const CLOCK_SKEW_S_CEILING: i64 = 15 * 60;
/// Longest configurable token lifetime: 30 days, so `expires_at` always fits Keystone's
/// four-digit year.
const TOKEN_TTL_S_CEILING: i64 = 30 * 24 * 3600;

/// Every setting the server reads. Field names are the TOML keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub data_dir: PathBuf,
    pub http_listen: SocketAddr,
    /// Executors (one per core); 0 means one per available core.
    pub shards: u32,
    /// Partitions, fixed when the data directory is first created; 0 means one per shard.
    pub partitions: u32,
    /// Open HTTP connections per shard; more are answered 503 and closed.
    pub connections_per_shard_max: u32,
    /// Largest request body accepted (413 beyond).
    pub request_body_bytes_max: u64,
    /// A request's headers must arrive within this (408 beyond).
    pub header_timeout_ms: u64,
    /// A request's body must arrive within this (408 beyond).
    pub body_timeout_ms: u64,
    /// Requests in flight per shard (503 beyond): bounds memory under overload.
    pub requests_per_shard_max: u32,
    /// Smallest `ack_wait` a consume may ask for, seconds (DMS: 15).
    pub ack_wait_s_min: u64,
    /// Largest difference between a signed request's date and the server clock; also how
    /// long a captured signed request stays usable and a token request is remembered.
    pub clock_skew_s_max: i64,
    /// Lifetime of Keystone tokens.
    pub token_ttl_s: i64,
    /// Default quotas for new tenants.
    pub tenant_queues_max: u32,
    /// The node's ceiling on any tenant's queue count (its quota included).
    pub queues_per_tenant_max: u32,
    pub tenant_groups_per_queue_max: u32,
    /// Log segment size.
    pub segment_bytes_max: u64,
    /// Bytes of recently written and read log batches each partition keeps in memory
    /// (0: off), so receives of recent messages do not read the disk.
    pub log_cache_bytes_max: u64,
    /// Records an engine applies between two snapshots of its state (its log retention
    /// keeps what the newest snapshot needs; a follower behind that gets a Raft snapshot).
    pub snapshot_every_records: u64,
    /// The retention of new queues, minutes (the DMS `reservation`; 4320 = 72 h).
    pub queue_retention_minutes: u64,
    /// Spin before parking (microseconds, 0 = off): lower cross-shard latency, a busy core.
    pub spin_before_park_us: u64,
    /// How the log's data writes and fdatasyncs are submitted: `ring` (the shard's own
    /// io_uring, writes never inline at submission, write + fdatasync linked) or
    /// `glommio` (glommio's calls; kept to measure against).
    pub io_submit: IoSubmit,
    /// The last of a shard's `connections_per_shard_max` slots, kept for addresses that
    /// authenticated on the shard or hold fewer than `RESERVE_CONNECTIONS_PER_ADDRESS_MAX`
    /// (`fairness.rs`) of its connections: a flooding address cannot take them. At most
    /// half the cap is reserved, whatever this says (so a small cap needs no change here).
    pub connections_reserved_per_shard: u32,
    /// Open connections one client address may hold on a shard; more are refused (503).
    pub connections_per_address_max: u32,
    /// Connections a client address may open per second on a shard, on average (a token
    /// bucket); faster ones are refused (503).
    pub accepts_per_address_per_s: u32,
    /// The bucket's size: connections an address may open at once after a quiet spell.
    pub accepts_per_address_burst: u32,
    /// Client addresses a shard remembers without open connections (their accept
    /// buckets); the least recently seen is forgotten first.
    pub addresses_tracked_max: u32,
    /// Serve `/metrics` on this address only (not on `http_listen`); `None`: on
    /// `http_listen`, unauthenticated.
    pub metrics_listen: Option<SocketAddr>,
    /// Label queue metrics with tenant names too (by default only project ids).
    pub metrics_tenant_names: bool,
    /// Threads that check login passwords (argon2id) for all shards.
    pub password_threads: u32,
    /// Password checks waiting for a thread; more are answered 503 with Retry-After.
    pub password_queue_max: u32,
    /// Failed logins naming one tenant before its logins back off.
    pub login_failures_per_tenant_max: u32,
    /// Failed logins from one address (IPv6: one /64) before its logins back off.
    pub login_failures_per_address_max: u32,
    /// Longest back-off after failed logins (it starts at 1 s and doubles per failure).
    pub login_backoff_s_max: u64,
    /// How often shard 0 samples every queue's counts for the console's charts
    /// (`sluice_node::monitor`).
    pub monitor_interval_ms: u64,
    /// Signed token requests remembered at once against replays.
    pub replay_entries_max: u32,
    /// This node's id in the cluster (`--node-id`); `None` without a cluster.
    pub node_id: Option<NodeId>,
    /// Where this node accepts its peers' connections (`--cluster-listen`).
    pub cluster_listen: Option<SocketAddr>,
    /// Every node of the cluster, this one included (`--peers`); empty without a cluster.
    /// The three cluster settings go together: [`Config::cluster`] checks and combines them.
    pub peers: Vec<Peer>,
    /// The nodes every partition's group starts with (`--initial-voters`, ids separated
    /// by commas); empty: every node of `peers`.
    pub initial_voters: Vec<NodeId>,
    /// Serve the Kafka wire protocol on this address (`--kafka-listen`; every shard
    /// listens, SO_REUSEPORT); `None`: no Kafka listener.
    pub kafka_listen: Option<SocketAddr>,
    /// The `HOST:PORT` Kafka clients are told to connect to (Metadata, FindCoordinator);
    /// `None`: the Kafka listener's own address (127.0.0.1 for an unspecified IP).
    pub kafka_advertise: Option<String>,
    /// Every node's Kafka address, this node's included (`--kafka-brokers`,
    /// `ID=HOST:PORT` separated by commas), so Metadata names each partition's leader;
    /// empty: this node alone (it forwards to the leaders).
    pub kafka_brokers: Vec<(NodeId, String)>,
    /// Serve the RocketMQ 5 gRPC protocol on this address (`--rocketmq-listen`; every
    /// shard listens, SO_REUSEPORT); `None`: no RocketMQ listener.
    pub rocketmq_listen: Option<SocketAddr>,
    /// The `HOST:PORT` RocketMQ clients are told to connect to (QueryRoute's broker
    /// endpoints); `None`: the listener's own address (127.0.0.1 for an unspecified IP).
    pub rocketmq_advertise: Option<String>,
}

/// Parses `--kafka-brokers`: `ID=HOST:PORT` entries separated by commas.
fn parse_kafka_brokers(text: &str) -> Result<Vec<(NodeId, String)>, String> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(Vec::new());
    }
    text.split(',')
        .map(|entry| {
            let entry = entry.trim();
            let (id, address) = entry
                .split_once('=')
                .ok_or_else(|| format!("broker {entry:?} is not ID=HOST:PORT"))?;
            let id: u64 = id
                .trim()
                .parse()
                .map_err(|_| format!("broker {entry:?}: {:?} is not a node id", id.trim()))?;
            parse_host_port(address.trim())?;
            Ok((NodeId(id), address.trim().to_string()))
        })
        .collect()
}

impl Config {
    pub fn defaults() -> Config {
        Config {
            data_dir: PathBuf::from("./sluice-data"),
            http_listen: "127.0.0.1:8080".parse().expect("a valid address"),
            shards: 0,
            partitions: 0,
            connections_per_shard_max: 4096,
            request_body_bytes_max: 2 << 20,
            header_timeout_ms: 10_000,
            body_timeout_ms: 30_000,
            requests_per_shard_max: 8192,
            ack_wait_s_min: 15,
            clock_skew_s_max: 5 * 60,
            token_ttl_s: 24 * 3600,
            tenant_queues_max: 30,
            queues_per_tenant_max: 1000,
            tenant_groups_per_queue_max: 3,
            segment_bytes_max: 256 << 20,
            log_cache_bytes_max: sluice_core::limits::LOG_CACHE_BYTES_DEFAULT,
            snapshot_every_records: 200_000,
            queue_retention_minutes: 4320,
            spin_before_park_us: 0,
            io_submit: IoSubmit::Ring,
            connections_reserved_per_shard: 256,
            connections_per_address_max: 1024,
            accepts_per_address_per_s: 200,
            accepts_per_address_burst: 400,
            addresses_tracked_max: 16_384,
            metrics_listen: None,
            metrics_tenant_names: false,
            password_threads: 2,
            password_queue_max: 64,
            login_failures_per_tenant_max: 5,
            login_failures_per_address_max: 20,
            login_backoff_s_max: 300,
            monitor_interval_ms: sluice_node::monitor::MONITOR_INTERVAL_MS_DEFAULT,
            replay_entries_max: 65_536,
            node_id: None,
            cluster_listen: None,
            peers: Vec::new(),
            initial_voters: Vec::new(),
            kafka_listen: None,
            kafka_advertise: None,
            kafka_brokers: Vec::new(),
            rocketmq_listen: None,
            rocketmq_advertise: None,
        }
    }

    /// What the RocketMQ adapter tells clients about this node, once its listener is
    /// bound at `bound`: the address `rocketmq_advertise` names or, without it, the
    /// listener's own (127.0.0.1 for an unspecified IP).
    pub fn rocketmq_config(&self, bound: SocketAddr) -> RocketMqConfig {
        let (advertised_host, advertised_port) = match &self.rocketmq_advertise {
            Some(advertise) => parse_host_port(advertise).expect("validated: a HOST:PORT address"),
            None if bound.ip().is_unspecified() => ("127.0.0.1".to_string(), bound.port()),
            None => (bound.ip().to_string(), bound.port()),
        };
        RocketMqConfig {
            advertised_host,
            advertised_port,
        }
    }

    /// What the Kafka adapter tells clients about this node, once the Kafka listener is
    /// bound at `bound` (its real port when `kafka_listen` asked for port 0): broker id
    /// the node id in cluster mode (else 0), and the address `kafka_advertise` names or,
    /// without it, the listener's (127.0.0.1 for an unspecified IP).
    pub fn kafka_config(&self, bound: SocketAddr) -> KafkaConfig {
        let broker_id = self
            .node_id
            .map_or(0, |id| i32::try_from(id.0).expect("validated: fits i32"));
        let own_entry = self
            .kafka_brokers
            .iter()
            .find(|(id, _)| Some(*id) == self.node_id)
            .map(|(_, address)| address);
        let (advertised_host, advertised_port) = match self.kafka_advertise.as_ref().or(own_entry) {
            Some(advertise) => parse_host_port(advertise).expect("validated: a HOST:PORT address"),
            None => {
                let host = if bound.ip().is_unspecified() {
                    "127.0.0.1".to_string()
                } else {
                    bound.ip().to_string()
                };
                (host, bound.port())
            }
        };
        let brokers = self
            .kafka_brokers
            .iter()
            .map(|(id, address)| {
                let (host, port) =
                    parse_host_port(address).expect("validated: a HOST:PORT address");
                Broker {
                    id: i32::try_from(id.0).expect("validated: a peer's id, which fits i32"),
                    host,
                    port: i32::from(port),
                }
            })
            .collect();
        KafkaConfig {
            broker_id,
            advertised_host,
            advertised_port: i32::from(advertised_port),
            brokers,
        }
    }

    /// The cluster this node belongs to, from `node_id`, `cluster_listen` and `peers`:
    /// `None` when none is set (the single-node server), an error when only some are or
    /// they do not fit together (`ClusterConfig::new`).
    pub fn cluster(&self) -> Result<Option<ClusterConfig>, String> {
        match (self.node_id, self.cluster_listen, self.peers.is_empty()) {
            (None, None, true) => Ok(None),
            (Some(node_id), Some(listen), false) => {
                let cluster = ClusterConfig::new(node_id, listen, self.peers.clone())?;
                if self.initial_voters.is_empty() {
                    return Ok(Some(cluster));
                }
                cluster
                    .with_initial_voters(self.initial_voters.clone())
                    .map(Some)
            }
            (node_id, listen, no_peers) => {
                let missing: Vec<&str> = [
                    (node_id.is_none(), "node_id (--node-id)"),
                    (listen.is_none(), "cluster_listen (--cluster-listen)"),
                    (no_peers, "peers (--peers)"),
                ]
                .iter()
                .filter(|(absent, _)| *absent)
                .map(|(_, name)| *name)
                .collect();
                Err(format!(
                    "a cluster needs node_id, cluster_listen and peers together; missing: {}",
                    missing.join(", ")
                ))
            }
        }
    }

    /// The node layer's login guards, from the standard limits and these settings.
    pub fn login_limits(&self) -> LoginLimits {
        LoginLimits {
            failures_per_tenant_max: self.login_failures_per_tenant_max,
            failures_per_address_max: self.login_failures_per_address_max,
            backoff_ms_max: self.login_backoff_s_max.saturating_mul(1000),
            replay_entries_max: usize::try_from(self.replay_entries_max).expect("u32 fits"),
            ..LoginLimits::standard()
        }
    }

    /// Applies a TOML document (unknown keys are an error, so typos are caught).
    pub fn apply_toml(&mut self, text: &str) -> Result<(), String> {
        let mut file: FileConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        if let Some(peers) = file.peers.take() {
            self.peers = parse_peers(&peers).map_err(|e| format!("peers: {e}"))?;
        }
        if let Some(io_submit) = file.io_submit.take() {
            self.io_submit = io_submit.parse()?;
        }
        if let Some(brokers) = file.kafka_brokers.take() {
            self.kafka_brokers =
                parse_kafka_brokers(&brokers).map_err(|e| format!("kafka_brokers: {e}"))?;
        }
        if let Some(advertise) = file.kafka_advertise.take() {
            self.set("kafka_advertise", &advertise)
                .map_err(|e| format!("kafka_advertise: {e}"))?;
        }
        if let Some(advertise) = file.rocketmq_advertise.take() {
            self.set("rocketmq_advertise", &advertise)
                .map_err(|e| format!("rocketmq_advertise: {e}"))?;
        }
        if let Some(voters) = file.initial_voters.take() {
            self.initial_voters =
                parse_node_ids(&voters).map_err(|e| format!("initial_voters: {e}"))?;
        }
        file.apply(self);
        Ok(())
    }

    /// Applies `SLUICE_<KEY>` variables (upper-case field names) from `vars`.
    pub fn apply_env(
        &mut self,
        vars: impl Iterator<Item = (String, String)>,
    ) -> Result<(), String> {
        for (name, value) in vars {
            let Some(key) = name.strip_prefix("SLUICE_") else {
                continue;
            };
            let key = key.to_ascii_lowercase();
            // Other SLUICE_* variables belong to the CLI and tools (SLUICE_AK, ...).
            if !KEYS.contains(&key.as_str()) {
                continue;
            }
            self.set(&key, &value)
                .map_err(|e| format!("environment variable {name}: {e}"))?;
        }
        Ok(())
    }

    /// Sets one field from its textual value (the flag and environment path).
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), String> {
        fn num<T: std::str::FromStr>(value: &str) -> Result<T, String> {
            value
                .parse()
                .map_err(|_| format!("{value:?} is not a valid number"))
        }
        match key {
            "data_dir" => self.data_dir = PathBuf::from(value),
            "http_listen" => {
                self.http_listen = value
                    .parse()
                    .map_err(|_| format!("{value:?} is not an IP:port address"))?
            }
            "shards" => self.shards = num(value)?,
            "partitions" => self.partitions = num(value)?,
            "connections_per_shard_max" => self.connections_per_shard_max = num(value)?,
            "request_body_bytes_max" => self.request_body_bytes_max = num(value)?,
            "header_timeout_ms" => self.header_timeout_ms = num(value)?,
            "body_timeout_ms" => self.body_timeout_ms = num(value)?,
            "requests_per_shard_max" => self.requests_per_shard_max = num(value)?,
            "ack_wait_s_min" => self.ack_wait_s_min = num(value)?,
            "clock_skew_s_max" => self.clock_skew_s_max = num(value)?,
            "token_ttl_s" => self.token_ttl_s = num(value)?,
            "tenant_queues_max" => self.tenant_queues_max = num(value)?,
            "queues_per_tenant_max" => self.queues_per_tenant_max = num(value)?,
            "tenant_groups_per_queue_max" => self.tenant_groups_per_queue_max = num(value)?,
            "segment_bytes_max" => self.segment_bytes_max = num(value)?,
            "log_cache_bytes_max" => self.log_cache_bytes_max = num(value)?,
            "snapshot_every_records" => self.snapshot_every_records = num(value)?,
            "queue_retention_minutes" => self.queue_retention_minutes = num(value)?,
            "spin_before_park_us" => self.spin_before_park_us = num(value)?,
            "io_submit" => self.io_submit = value.parse()?,
            "connections_reserved_per_shard" => self.connections_reserved_per_shard = num(value)?,
            "connections_per_address_max" => self.connections_per_address_max = num(value)?,
            "accepts_per_address_per_s" => self.accepts_per_address_per_s = num(value)?,
            "accepts_per_address_burst" => self.accepts_per_address_burst = num(value)?,
            "addresses_tracked_max" => self.addresses_tracked_max = num(value)?,
            "metrics_listen" => {
                self.metrics_listen = match value {
                    "" | "off" => None,
                    _ => Some(value.parse().map_err(|_| {
                        format!("{value:?} is not an IP:port address (or \"off\")")
                    })?),
                }
            }
            "metrics_tenant_names" => {
                self.metrics_tenant_names = value
                    .parse()
                    .map_err(|_| format!("{value:?} is not true or false"))?
            }
            "password_threads" => self.password_threads = num(value)?,
            "password_queue_max" => self.password_queue_max = num(value)?,
            "login_failures_per_tenant_max" => self.login_failures_per_tenant_max = num(value)?,
            "login_failures_per_address_max" => self.login_failures_per_address_max = num(value)?,
            "login_backoff_s_max" => self.login_backoff_s_max = num(value)?,
            "monitor_interval_ms" => self.monitor_interval_ms = num(value)?,
            "replay_entries_max" => self.replay_entries_max = num(value)?,
            "node_id" => self.node_id = Some(NodeId(num(value)?)),
            "cluster_listen" => {
                self.cluster_listen = Some(
                    value
                        .parse()
                        .map_err(|_| format!("{value:?} is not an IP:port address"))?,
                )
            }
            "peers" => self.peers = parse_peers(value)?,
            "initial_voters" => self.initial_voters = parse_node_ids(value)?,
            "kafka_listen" => {
                self.kafka_listen = match value {
                    "" | "off" => None,
                    _ => Some(value.parse().map_err(|_| {
                        format!("{value:?} is not an IP:port address (or \"off\")")
                    })?),
                }
            }
            "kafka_brokers" => self.kafka_brokers = parse_kafka_brokers(value)?,
            "rocketmq_advertise" => {
                self.rocketmq_advertise = match value {
                    "" => None,
                    _ => {
                        parse_host_port(value)?;
                        Some(value.to_string())
                    }
                }
            }
            "rocketmq_listen" => {
                self.rocketmq_listen = match value {
                    "" | "off" => None,
                    _ => Some(value.parse().map_err(|_| {
                        format!("{value:?} is not an IP:port address (or \"off\")")
                    })?),
                }
            }
            "kafka_advertise" => {
                self.kafka_advertise = match value {
                    "" => None,
                    _ => {
                        parse_host_port(value)?;
                        Some(value.to_string())
                    }
                }
            }
            _ => return Err(format!("unknown setting {key:?}")),
        }
        Ok(())
    }

    /// Checks the resolved configuration once, before anything starts.
    pub fn validate(&self) -> Result<(), String> {
        let checks: [(bool, &str); 10] = [
            (self.shards <= 256, "shards must be at most 256"),
            (self.partitions <= 1024, "partitions must be at most 1024"),
            (
                self.connections_per_shard_max > 0,
                "connections_per_shard_max must be positive",
            ),
            (
                (64 << 10..=64 << 20).contains(&self.request_body_bytes_max),
                "request_body_bytes_max must be 64 KiB to 64 MiB",
            ),
            (
                self.header_timeout_ms >= 100,
                "header_timeout_ms must be at least 100",
            ),
            (
                self.body_timeout_ms >= 100,
                "body_timeout_ms must be at least 100",
            ),
            (
                self.requests_per_shard_max > 0,
                "requests_per_shard_max must be positive",
            ),
            (
                (1..=300).contains(&self.ack_wait_s_min),
                "ack_wait_s_min must be 1 to 300",
            ),
            (
                (1..=sluice_core::limits::QUEUES_PER_TENANT_CEILING)
                    .contains(&self.queues_per_tenant_max),
                "queues_per_tenant_max must be 1 to 1000000",
            ),
            (
                (1..=self.queues_per_tenant_max).contains(&self.tenant_queues_max),
                "tenant_queues_max must be 1 to queues_per_tenant_max (default 1000)",
            ),
        ];
        for (ok, message) in checks {
            if !ok {
                return Err(message.to_string());
            }
        }
        if !(1..=8).contains(&self.tenant_groups_per_queue_max) {
            return Err("tenant_groups_per_queue_max must be 1 to 8".into());
        }
        if !(1 << 20..=1 << 30).contains(&self.segment_bytes_max) {
            return Err("segment_bytes_max must be 1 MiB to 1 GiB".into());
        }
        if self.log_cache_bytes_max > sluice_core::limits::LOG_CACHE_BYTES_CEILING {
            return Err("log_cache_bytes_max must be 0 to 1 GiB".into());
        }
        if !(100..=100_000_000).contains(&self.snapshot_every_records) {
            return Err("snapshot_every_records must be 100 to 100000000".into());
        }
        // The engine's retention range (`EngineLimits::dms`): 1 minute to 72 hours.
        if !(1..=4320).contains(&self.queue_retention_minutes) {
            return Err("queue_retention_minutes must be 1 to 4320".into());
        }
        self.validate_fairness()?;
        self.validate_auth()?;
        self.validate_cluster()?;
        self.validate_kafka()?;
        self.validate_rocketmq()
    }

    /// A RocketMQ port apart from the others.
    fn validate_rocketmq(&self) -> Result<(), String> {
        let Some(rocketmq) = self.rocketmq_listen else {
            if self.rocketmq_advertise.is_some() {
                return Err("rocketmq_advertise needs rocketmq_listen".into());
            }
            return Ok(());
        };
        let clashes = |other: SocketAddr| {
            let same_ip = rocketmq.ip() == other.ip()
                || rocketmq.ip().is_unspecified()
                || other.ip().is_unspecified();
            same_ip && rocketmq.port() == other.port() && rocketmq.port() != 0
        };
        let others = [
            (Some(self.http_listen), "http_listen"),
            (self.metrics_listen, "metrics_listen"),
            (self.cluster_listen, "cluster_listen"),
            (self.kafka_listen, "kafka_listen"),
        ];
        for (other, name) in others {
            if other.is_some_and(clashes) {
                return Err(format!("rocketmq_listen must differ from {name}"));
            }
        }
        Ok(())
    }

    /// A Kafka port apart from the others, and a node id a Kafka broker id can carry.
    fn validate_kafka(&self) -> Result<(), String> {
        let Some(kafka) = self.kafka_listen else {
            if !self.kafka_brokers.is_empty() {
                return Err("kafka_brokers needs kafka_listen".into());
            }
            return Ok(());
        };
        self.validate_kafka_brokers()?;
        let clashes = |other: SocketAddr| {
            let same_ip = kafka.ip() == other.ip()
                || kafka.ip().is_unspecified()
                || other.ip().is_unspecified();
            same_ip && kafka.port() == other.port() && kafka.port() != 0
        };
        let others = [
            (Some(self.http_listen), "http_listen"),
            (self.metrics_listen, "metrics_listen"),
            (self.cluster_listen, "cluster_listen"),
        ];
        for (other, name) in others {
            if other.is_some_and(clashes) {
                return Err(format!("kafka_listen must differ from {name}"));
            }
        }
        if self.node_id.is_some_and(|id| i32::try_from(id.0).is_err()) {
            return Err(
                "node_id must fit a Kafka broker id (at most 2147483647) with kafka_listen".into(),
            );
        }
        Ok(())
    }

    /// `kafka_brokers`: in a cluster, one entry for every peer and none else, this node's
    /// agreeing with `kafka_advertise` when both are set.
    fn validate_kafka_brokers(&self) -> Result<(), String> {
        if self.kafka_brokers.is_empty() {
            return Ok(());
        }
        let Some(me) = self.node_id.filter(|_| !self.peers.is_empty()) else {
            return Err("kafka_brokers names a cluster's nodes: it needs node_id and peers".into());
        };
        let mut ids: Vec<u64> = self.kafka_brokers.iter().map(|(id, _)| id.0).collect();
        ids.sort_unstable();
        let mut peers: Vec<u64> = self.peers.iter().map(|peer| peer.id.0).collect();
        peers.sort_unstable();
        if ids != peers {
            return Err(format!(
                "kafka_brokers must name every peer once: brokers {ids:?}, peers {peers:?}"
            ));
        }
        let own = self.kafka_brokers.iter().find(|(id, _)| *id == me);
        if let (Some((_, address)), Some(advertise)) = (own, &self.kafka_advertise) {
            if address != advertise {
                return Err(format!(
                    "kafka_brokers gives this node {address:?}, kafka_advertise {advertise:?}"
                ));
            }
        }
        Ok(())
    }

    /// The cluster settings together, and a cluster port apart from the HTTP ones.
    fn validate_cluster(&self) -> Result<(), String> {
        let Some(cluster) = self.cluster()? else {
            return Ok(());
        };
        let clashes = |other: SocketAddr| {
            let listen = cluster.listen;
            let same_ip = listen.ip() == other.ip()
                || listen.ip().is_unspecified()
                || other.ip().is_unspecified();
            same_ip && listen.port() == other.port()
        };
        if clashes(self.http_listen) {
            return Err("cluster_listen must differ from http_listen".into());
        }
        if self.metrics_listen.is_some_and(clashes) {
            return Err("cluster_listen must differ from metrics_listen".into());
        }
        Ok(())
    }

    /// The per-address limits (docs/server.md, "Connection fairness").
    fn validate_fairness(&self) -> Result<(), String> {
        let checks: [(bool, &str); 4] = [
            (
                self.connections_per_address_max > 0,
                "connections_per_address_max must be positive",
            ),
            (
                (1..=1_000_000).contains(&self.accepts_per_address_per_s),
                "accepts_per_address_per_s must be 1 to 1000000",
            ),
            (
                (1..=1_000_000).contains(&self.accepts_per_address_burst),
                "accepts_per_address_burst must be 1 to 1000000",
            ),
            (
                (1..=1 << 20).contains(&self.addresses_tracked_max),
                "addresses_tracked_max must be 1 to 1048576",
            ),
        ];
        for (ok, message) in checks {
            if !ok {
                return Err(message.to_string());
            }
        }
        if self.metrics_listen == Some(self.http_listen) && self.http_listen.port() != 0 {
            return Err("metrics_listen must differ from http_listen".into());
        }
        Ok(())
    }

    /// The authentication settings: the skew window, token lifetime, password verifiers,
    /// login back-off and replay cache.
    fn validate_auth(&self) -> Result<(), String> {
        let checks: [(bool, String); 7] = [
            (
                (1..=CLOCK_SKEW_S_CEILING).contains(&self.clock_skew_s_max),
                format!("clock_skew_s_max must be 1 to {CLOCK_SKEW_S_CEILING}"),
            ),
            (
                (60..=TOKEN_TTL_S_CEILING).contains(&self.token_ttl_s),
                format!("token_ttl_s must be 60 to {TOKEN_TTL_S_CEILING}"),
            ),
            (
                (1..=64).contains(&self.password_threads),
                "password_threads must be 1 to 64".to_string(),
            ),
            (
                (1..=65_536).contains(&self.password_queue_max),
                "password_queue_max must be 1 to 65536".to_string(),
            ),
            (
                (1..=86_400).contains(&self.login_backoff_s_max),
                "login_backoff_s_max must be 1 to 86400".to_string(),
            ),
            (
                (100..=3_600_000).contains(&self.monitor_interval_ms),
                "monitor_interval_ms must be 100 to 3600000".to_string(),
            ),
            (
                (1..=1 << 24).contains(&self.replay_entries_max),
                "replay_entries_max must be 1 to 16777216".to_string(),
            ),
        ];
        for (ok, message) in checks {
            if !ok {
                return Err(message);
            }
        }
        Ok(())
    }
}

/// The TOML file: every field optional.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    data_dir: Option<PathBuf>,
    http_listen: Option<SocketAddr>,
    shards: Option<u32>,
    partitions: Option<u32>,
    connections_per_shard_max: Option<u32>,
    request_body_bytes_max: Option<u64>,
    header_timeout_ms: Option<u64>,
    body_timeout_ms: Option<u64>,
    requests_per_shard_max: Option<u32>,
    ack_wait_s_min: Option<u64>,
    clock_skew_s_max: Option<i64>,
    token_ttl_s: Option<i64>,
    tenant_queues_max: Option<u32>,
    queues_per_tenant_max: Option<u32>,
    tenant_groups_per_queue_max: Option<u32>,
    segment_bytes_max: Option<u64>,
    log_cache_bytes_max: Option<u64>,
    snapshot_every_records: Option<u64>,
    queue_retention_minutes: Option<u64>,
    spin_before_park_us: Option<u64>,
    io_submit: Option<String>,
    connections_reserved_per_shard: Option<u32>,
    connections_per_address_max: Option<u32>,
    accepts_per_address_per_s: Option<u32>,
    accepts_per_address_burst: Option<u32>,
    addresses_tracked_max: Option<u32>,
    metrics_listen: Option<SocketAddr>,
    metrics_tenant_names: Option<bool>,
    password_threads: Option<u32>,
    password_queue_max: Option<u32>,
    login_failures_per_tenant_max: Option<u32>,
    login_failures_per_address_max: Option<u32>,
    login_backoff_s_max: Option<u64>,
    monitor_interval_ms: Option<u64>,
    replay_entries_max: Option<u32>,
    node_id: Option<u64>,
    cluster_listen: Option<SocketAddr>,
    /// As `--peers` writes it: `"1=IP:PORT,2=IP:PORT,..."`.
    peers: Option<String>,
    /// As `--initial-voters` writes it: `"1,2,3"`.
    initial_voters: Option<String>,
    kafka_listen: Option<SocketAddr>,
    /// `"HOST:PORT"`, checked like `--kafka-advertise`.
    kafka_advertise: Option<String>,
    /// As `--kafka-brokers` writes it: `"1=HOST:PORT,2=HOST:PORT,..."`.
    kafka_brokers: Option<String>,
    rocketmq_listen: Option<SocketAddr>,
    /// `"HOST:PORT"`, checked like `--rocketmq-advertise`.
    rocketmq_advertise: Option<String>,
}

impl FileConfig {
    fn apply(self, config: &mut Config) {
        macro_rules! take {
            ($($field:ident),*) => { $( if let Some(v) = self.$field { config.$field = v; } )* };
        }
        take!(
            data_dir,
            http_listen,
            shards,
            partitions,
            connections_per_shard_max,
            request_body_bytes_max,
            header_timeout_ms,
            body_timeout_ms,
            requests_per_shard_max,
            ack_wait_s_min,
            clock_skew_s_max,
            token_ttl_s,
            tenant_queues_max,
            queues_per_tenant_max,
            tenant_groups_per_queue_max,
            segment_bytes_max,
            log_cache_bytes_max,
            snapshot_every_records,
            queue_retention_minutes,
            spin_before_park_us,
            connections_reserved_per_shard,
            connections_per_address_max,
            accepts_per_address_per_s,
            accepts_per_address_burst,
            addresses_tracked_max,
            metrics_tenant_names,
            password_threads,
            password_queue_max,
            login_failures_per_tenant_max,
            login_failures_per_address_max,
            login_backoff_s_max,
            monitor_interval_ms,
            replay_entries_max
        );
        if let Some(address) = self.metrics_listen {
            config.metrics_listen = Some(address);
        }
        if let Some(node_id) = self.node_id {
            config.node_id = Some(NodeId(node_id));
        }
        if let Some(address) = self.cluster_listen {
            config.cluster_listen = Some(address);
        }
        if let Some(address) = self.kafka_listen {
            config.kafka_listen = Some(address);
        }
        if let Some(address) = self.rocketmq_listen {
            config.rocketmq_listen = Some(address);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(toml: &str, env: &[(&str, &str)], flags: &[(&str, &str)]) -> Result<Config, String> {
        let mut config = Config::defaults();
        config.apply_toml(toml)?;
        config.apply_env(env.iter().map(|(k, v)| (k.to_string(), v.to_string())))?;
        for (key, value) in flags {
            config.set(key, value)?;
        }
        config.validate()?;
        Ok(config)
    }

    #[test]
    fn flags_override_environment_which_overrides_the_file() {
        let config = check(
            "data_dir = \"/file\"\nshards = 2\nhttp_listen = \"127.0.0.1:9000\"",
            &[
                ("SLUICE_DATA_DIR", "/env"),
                ("SLUICE_SHARDS", "1"),
                ("HOME", "/x"),
            ],
            &[("data_dir", "/flag")],
        )
        .unwrap();
        assert_eq!(config.data_dir, PathBuf::from("/flag"));
        assert_eq!(config.shards, 1);
        assert_eq!(config.http_listen, "127.0.0.1:9000".parse().unwrap());
    }

    #[test]
    fn every_key_can_be_set() {
        let mut config = Config::defaults();
        for key in KEYS {
            let value = if key.ends_with("dir") {
                "/d"
            } else if key == "peers" {
                "7=127.0.0.1:1"
            } else if key == "initial_voters" {
                "7"
            } else if key == "kafka_advertise" || key == "rocketmq_advertise" {
                "kafka.example:9092"
            } else if key == "kafka_brokers" {
                "7=kafka.example:9092"
            } else if key.ends_with("listen") {
                "127.0.0.1:1"
            } else if key == "metrics_tenant_names" {
                "true"
            } else if key == "io_submit" {
                "glommio"
            } else {
                "7"
            };
            config
                .set(key, value)
                .unwrap_or_else(|e| panic!("{key}: {e}"));
        }
    }

    #[test]
    fn typos_and_bad_values_are_refused_with_the_name() {
        let error = check("data_dri = \"x\"", &[], &[]).unwrap_err();
        assert!(error.contains("data_dri"), "{error}");
        let error = check("", &[("SLUICE_SHARDS", "many")], &[]).unwrap_err();
        assert!(error.contains("SLUICE_SHARDS"), "{error}");
        let error = check("", &[], &[("http_listen", "localhost")]).unwrap_err();
        assert!(error.contains("IP:port"), "{error}");
        let error = check("ack_wait_s_min = 0", &[], &[]).unwrap_err();
        assert!(error.contains("ack_wait_s_min"), "{error}");
    }

    #[test]
    fn the_skew_window_is_at_most_five_minutes_by_default_and_bounded() {
        // Goal: a captured signed request is usable for at most 5 minutes either way unless
        // the operator widens it, within a checked range; a token lifetime cannot push
        // `expires_at` past what Keystone's date form holds.
        let defaults = check("", &[], &[]).unwrap();
        assert!(
            defaults.clock_skew_s_max <= 300,
            "{}",
            defaults.clock_skew_s_max
        );
        assert!(defaults.clock_skew_s_max > 0);
        assert_eq!(
            check("clock_skew_s_max = 900", &[], &[])
                .unwrap()
                .clock_skew_s_max,
            900
        );
        for bad in ["0", "-5", "901"] {
            let error = check("", &[], &[("clock_skew_s_max", bad)]).unwrap_err();
            assert!(error.contains("clock_skew_s_max"), "{bad}: {error}");
        }
        let error = check("token_ttl_s = 100000000000000", &[], &[]).unwrap_err();
        assert!(error.contains("token_ttl_s"), "{error}");
    }

    #[test]
    fn without_cluster_settings_nothing_changes() {
        let config = check("", &[], &[]).unwrap();
        assert_eq!(config.cluster(), Ok(None));
    }

    #[test]
    fn cluster_settings_come_from_flags_the_file_or_the_environment() {
        // Goal: the three settings work through every source and combine into one
        // checked ClusterConfig. Method: the same node described three ways.
        let peers = "1=127.0.0.1:7001,2=127.0.0.1:7002,3=127.0.0.1:7003";
        let flags = check(
            "",
            &[],
            &[
                ("node_id", "2"),
                ("cluster_listen", "0.0.0.0:7002"),
                ("peers", peers),
            ],
        )
        .unwrap();
        let file = check(
            &format!("node_id = 2\ncluster_listen = \"0.0.0.0:7002\"\npeers = \"{peers}\""),
            &[],
            &[],
        )
        .unwrap();
        let env = check(
            "",
            &[
                ("SLUICE_NODE_ID", "2"),
                ("SLUICE_CLUSTER_LISTEN", "0.0.0.0:7002"),
                ("SLUICE_PEERS", peers),
            ],
            &[],
        )
        .unwrap();
        assert_eq!(flags, file);
        assert_eq!(flags, env);
        let cluster = flags.cluster().unwrap().unwrap();
        assert_eq!(cluster.node_id, NodeId(2));
        assert_eq!(cluster.peers.len(), 3);
        assert_eq!(cluster.others().count(), 2);
    }

    #[test]
    fn incomplete_or_clashing_cluster_settings_are_refused() {
        let error = check("", &[], &[("node_id", "1")]).unwrap_err();
        assert!(error.contains("missing: cluster_listen"), "{error}");
        assert!(error.contains("peers"), "{error}");
        let error = check("peers = \"1=127.0.0.1:x\"", &[], &[]).unwrap_err();
        assert!(error.contains("peers"), "{error}");
        let error = check(
            "",
            &[],
            &[
                ("node_id", "1"),
                ("cluster_listen", "127.0.0.1:8080"),
                ("peers", "1=127.0.0.1:8080"),
            ],
        )
        .unwrap_err();
        assert!(error.contains("http_listen"), "{error}");
        let error = check(
            "",
            &[],
            &[
                ("node_id", "4"),
                ("cluster_listen", "127.0.0.1:7004"),
                ("peers", "1=127.0.0.1:7001"),
            ],
        )
        .unwrap_err();
        assert!(error.contains("not in peers"), "{error}");
    }

    #[test]
    fn the_rocketmq_listener_is_off_by_default_set_from_every_source_and_apart() {
        assert_eq!(check("", &[], &[]).unwrap().rocketmq_listen, None);
        let file = check("rocketmq_listen = \"0.0.0.0:8081\"", &[], &[]).unwrap();
        let env = check("", &[("SLUICE_ROCKETMQ_LISTEN", "0.0.0.0:8081")], &[]).unwrap();
        let flags = check("", &[], &[("rocketmq_listen", "0.0.0.0:8081")]).unwrap();
        assert_eq!(file, env);
        assert_eq!(file, flags);
        let rocketmq = flags.rocketmq_config("0.0.0.0:8081".parse().unwrap());
        assert_eq!(rocketmq.advertised_host, "127.0.0.1");
        assert_eq!(rocketmq.advertised_port, 8081);
        let advertised = check(
            "rocketmq_listen = \"0.0.0.0:8081\"\nrocketmq_advertise = \"mq.example:18081\"",
            &[],
            &[],
        )
        .unwrap()
        .rocketmq_config("0.0.0.0:8081".parse().unwrap());
        assert_eq!(advertised.advertised_host, "mq.example");
        assert_eq!(advertised.advertised_port, 18081);
        let alone = check("", &[("SLUICE_ROCKETMQ_ADVERTISE", "mq.example:1")], &[]);
        assert!(alone
            .unwrap_err()
            .contains("rocketmq_advertise needs rocketmq_listen"));
        assert!(check("", &[], &[("rocketmq_advertise", "nope")]).is_err());
        let off = check(
            "rocketmq_listen = \"127.0.0.1:8081\"",
            &[],
            &[("rocketmq_listen", "off")],
        );
        assert_eq!(off.unwrap().rocketmq_listen, None);
        let clash = check(
            "",
            &[],
            &[
                ("kafka_listen", "127.0.0.1:9092"),
                ("rocketmq_listen", "0.0.0.0:9092"),
            ],
        );
        assert!(clash
            .unwrap_err()
            .contains("rocketmq_listen must differ from kafka_listen"));
    }

    #[test]
    fn the_kafka_listener_is_off_by_default_and_set_from_every_source() {
        let defaults = check("", &[], &[]).unwrap();
        assert_eq!(defaults.kafka_listen, None);
        assert_eq!(defaults.kafka_advertise, None);
        let file = check(
            "kafka_listen = \"0.0.0.0:9092\"\nkafka_advertise = \"kafka.example:19092\"",
            &[],
            &[],
        )
        .unwrap();
        let env = check(
            "",
            &[
                ("SLUICE_KAFKA_LISTEN", "0.0.0.0:9092"),
                ("SLUICE_KAFKA_ADVERTISE", "kafka.example:19092"),
            ],
            &[],
        )
        .unwrap();
        let flags = check(
            "",
            &[],
            &[
                ("kafka_listen", "0.0.0.0:9092"),
                ("kafka_advertise", "kafka.example:19092"),
            ],
        )
        .unwrap();
        assert_eq!(file, env);
        assert_eq!(file, flags);
        assert_eq!(flags.kafka_listen, Some("0.0.0.0:9092".parse().unwrap()));
        let kafka = flags.kafka_config("0.0.0.0:9092".parse().unwrap());
        assert_eq!(kafka.broker_id, 0);
        assert_eq!(kafka.advertised_host, "kafka.example");
        assert_eq!(kafka.advertised_port, 19092);
        let off = check(
            "kafka_listen = \"127.0.0.1:9092\"",
            &[],
            &[("kafka_listen", "off")],
        );
        assert_eq!(off.unwrap().kafka_listen, None);
    }

    #[test]
    fn the_advertised_kafka_address_defaults_to_the_bound_one() {
        // Goal: without kafka_advertise, clients are told the listener's address, with
        // the port resolved (port 0) and a reachable host for 0.0.0.0.
        let config = check("", &[], &[("kafka_listen", "0.0.0.0:0")]).unwrap();
        let kafka = config.kafka_config("0.0.0.0:41234".parse().unwrap());
        assert_eq!(kafka.advertised_host, "127.0.0.1");
        assert_eq!(kafka.advertised_port, 41234);
        let kafka = config.kafka_config("127.0.0.5:9092".parse().unwrap());
        assert_eq!(kafka.advertised_host, "127.0.0.5");
        let advertised = check("", &[], &[("kafka_advertise", "[::1]:9093")]).unwrap();
        let kafka = advertised.kafka_config("0.0.0.0:9092".parse().unwrap());
        assert_eq!(
            (kafka.advertised_host.as_str(), kafka.advertised_port),
            ("::1", 9093)
        );
    }

    #[test]
    fn bad_or_clashing_kafka_settings_are_refused() {
        for bad in [
            "localhost",
            "127.0.0.1",
            "x:0",
            ":9092",
            "a b:1",
            "::1:9092",
            "h:99999",
        ] {
            let error = check("", &[], &[("kafka_advertise", bad)]).unwrap_err();
            assert!(error.contains("HOST:PORT"), "{bad}: {error}");
        }
        let error = check("", &[], &[("kafka_listen", "localhost:9092")]).unwrap_err();
        assert!(error.contains("IP:port"), "{error}");
        let error = check(
            "",
            &[],
            &[
                ("http_listen", "127.0.0.1:9092"),
                ("kafka_listen", "0.0.0.0:9092"),
            ],
        )
        .unwrap_err();
        assert!(
            error.contains("kafka_listen must differ from http_listen"),
            "{error}"
        );
        let error = check(
            "",
            &[],
            &[
                ("metrics_listen", "127.0.0.1:9100"),
                ("kafka_listen", "127.0.0.1:9100"),
            ],
        )
        .unwrap_err();
        assert!(error.contains("metrics_listen"), "{error}");
        let error = check("kafka_advertise = \"nope\"", &[], &[]).unwrap_err();
        assert!(error.contains("kafka_advertise"), "{error}");
    }

    #[test]
    fn the_kafka_broker_id_is_the_node_id_in_a_cluster() {
        let config = check(
            "",
            &[],
            &[
                ("node_id", "2"),
                ("cluster_listen", "127.0.0.1:7002"),
                ("peers", "1=127.0.0.1:7001,2=127.0.0.1:7002"),
                ("kafka_listen", "127.0.0.1:9092"),
            ],
        )
        .unwrap();
        assert_eq!(
            config
                .kafka_config("127.0.0.1:9092".parse().unwrap())
                .broker_id,
            2
        );
    }

    #[test]
    fn kafka_brokers_name_every_peer_and_give_this_node_its_address() {
        let cluster = [
            ("node_id", "2"),
            ("cluster_listen", "127.0.0.1:7002"),
            ("peers", "1=127.0.0.1:7001,2=127.0.0.1:7002"),
            ("kafka_listen", "0.0.0.0:9092"),
        ];
        let with = |extra: &[(&'static str, &'static str)]| {
            let mut settings = cluster.to_vec();
            settings.extend_from_slice(extra);
            check("", &[], &settings)
        };
        let config = with(&[("kafka_brokers", "1=kafka-1:9092, 2=kafka-2:9093")]).unwrap();
        let kafka = config.kafka_config("0.0.0.0:9092".parse().unwrap());
        assert_eq!(
            (kafka.advertised_host.as_str(), kafka.advertised_port),
            ("kafka-2", 9093)
        );
        assert_eq!(
            kafka.brokers,
            vec![
                Broker {
                    id: 1,
                    host: "kafka-1".into(),
                    port: 9092
                },
                Broker {
                    id: 2,
                    host: "kafka-2".into(),
                    port: 9093
                },
            ]
        );
        let refused = [
            (vec![("kafka_brokers", "1=kafka-1:9092")], "every peer"),
            (vec![("kafka_brokers", "1=a:1,2=b:2,3=c:3")], "every peer"),
            (vec![("kafka_brokers", "1=a:1,2=b")], "HOST:PORT"),
            (vec![("kafka_brokers", "x=a:1")], "node id"),
            (
                vec![("kafka_brokers", "1=a:1,2=b:2"), ("kafka_advertise", "c:3")],
                "kafka_advertise",
            ),
        ];
        for (extra, why) in refused {
            let error = with(&extra).unwrap_err();
            assert!(error.contains(why), "{extra:?}: {error}");
        }
        // Without a cluster there is nothing to name.
        let error = check(
            "",
            &[],
            &[
                ("kafka_listen", "127.0.0.1:9092"),
                ("kafka_brokers", "1=a:1"),
            ],
        )
        .unwrap_err();
        assert!(error.contains("node_id and peers"), "{error}");
    }
}
