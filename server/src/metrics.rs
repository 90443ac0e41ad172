//! Prometheus metrics: request counts and latency by route, fsync latency, login outcomes
//! and replayed token requests (never labelled with a tenant: a name in a failed login is
//! the client's, not a tenant's), and at scrape time per-queue and per-group gauges read
//! from the partitions. Request metrics are shared by every shard (atomic counters; the
//! label families take a read lock that is uncontended once a label set exists).

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::{EncodeLabel, EncodeLabelSet, LabelSetEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use sluice_node::AuthEvent;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteOnly {
    pub route: String,
}

/// Why a login failed: `wrong_credentials` (the password was checked), `throttled` (refused
/// while backing off) or `verifier_busy` (no password verifier was free).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LoginFailureLabels {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
}

/// Whose queue a value is: the tenant's project id, and its name only when the operator
/// asked for names (`metrics_tenant_names`): a scrape should not list the customers.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct TenantLabel {
    pub project_id: String,
    pub name: Option<String>,
}

impl TenantLabel {
    /// Labels `project_id`, then `tenant` (the name) when there is one.
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        ("project_id", self.project_id.as_str()).encode(encoder.encode_label())?;
        if let Some(name) = &self.name {
            ("tenant", name.as_str()).encode(encoder.encode_label())?;
        }
        Ok(())
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct QueueLabels {
    pub tenant: TenantLabel,
    pub queue: String,
}

impl EncodeLabelSet for QueueLabels {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        self.tenant.encode(encoder)?;
        ("queue", self.queue.as_str()).encode(encoder.encode_label())
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct GroupLabels {
    pub tenant: TenantLabel,
    pub queue: String,
    pub group: String,
}

impl EncodeLabelSet for GroupLabels {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        self.tenant.encode(encoder)?;
        ("queue", self.queue.as_str()).encode(encoder.encode_label())?;
        ("group", self.group.as_str()).encode(encoder.encode_label())
    }
}

fn latency_histogram() -> Histogram {
    // 50 us .. ~1.6 s.
    Histogram::new(exponential_buckets(0.000_05, 2.0, 16))
}

pub struct Metrics {
    registry: Registry,
    pub requests: Family<RouteLabels, Counter>,
    pub request_seconds: Family<RouteOnly, Histogram, fn() -> Histogram>,
    pub fsync_seconds: Histogram,
    pub requests_inflight: Gauge,
    /// Connections refused at accept, by `fairness::Refusal::label`.
    pub connections_refused: Family<ReasonLabels, Counter>,
    pub logins_succeeded: Counter,
    pub logins_failed: Family<LoginFailureLabels, Counter>,
    pub token_requests_replayed: Counter,
    /// Kafka listener (`kafka.rs`): connections accepted, open now, refused at accept
    /// (by `fairness::Refusal::label`) and closed (by why), and request frames read.
    pub kafka_connections: Counter,
    pub kafka_connections_open: Gauge,
    pub kafka_connections_refused: Family<ReasonLabels, Counter>,
    pub kafka_connections_closed: Family<ReasonLabels, Counter>,
    pub kafka_requests: Counter,
    /// RocketMQ listener (`rocketmq.rs`): connections accepted, open now, refused at
    /// accept (by `fairness::Refusal::label`), and gRPC calls served.
    pub rocketmq_connections: Counter,
    pub rocketmq_connections_open: Gauge,
    pub rocketmq_connections_refused: Family<ReasonLabels, Counter>,
    pub rocketmq_calls: Counter,
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let requests = Family::<RouteLabels, Counter>::default();
        let request_seconds =
            Family::<RouteOnly, Histogram, fn() -> Histogram>::new_with_constructor(
                latency_histogram,
            );
        let fsync_seconds = latency_histogram();
        let requests_inflight = Gauge::default();
        registry.register(
            "sluice_http_requests_inflight",
            "HTTP requests being served (long polls included)",
            requests_inflight.clone(),
        );
        registry.register(
            "sluice_http_requests",
            "HTTP requests answered, by route and status",
            requests.clone(),
        );
        registry.register(
            "sluice_http_request_duration_seconds",
            "HTTP request latency, from full request to response, by route",
            request_seconds.clone(),
        );
        registry.register(
            "sluice_fsync_duration_seconds",
            "Latency of the log's fdatasync (group commit)",
            fsync_seconds.clone(),
        );
        let connections_refused = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "sluice_http_connections_refused",
            "Connections refused at accept (503), by reason: shard_full, reserve, \
             address_connections, address_rate",
            connections_refused.clone(),
        );
        let logins_succeeded = Counter::default();
        let logins_failed = Family::<LoginFailureLabels, Counter>::default();
        let token_requests_replayed = Counter::default();
        registry.register(
            "sluice_auth_logins_succeeded",
            "Password logins that gave a token",
            logins_succeeded.clone(),
        );
        registry.register(
            "sluice_auth_logins_failed",
            "Password logins refused, by reason (no tenant label)",
            logins_failed.clone(),
        );
        registry.register(
            "sluice_auth_token_requests_replayed",
            "Signed token requests refused as already used",
            token_requests_replayed.clone(),
        );
        let kafka_connections = Counter::default();
        let kafka_connections_open = Gauge::default();
        let kafka_connections_refused = Family::<ReasonLabels, Counter>::default();
        let kafka_connections_closed = Family::<ReasonLabels, Counter>::default();
        let kafka_requests = Counter::default();
        registry.register(
            "sluice_kafka_connections",
            "Kafka connections accepted",
            kafka_connections.clone(),
        );
        registry.register(
            "sluice_kafka_connections_open",
            "Kafka connections open now",
            kafka_connections_open.clone(),
        );
        registry.register(
            "sluice_kafka_connections_refused",
            "Kafka connections refused at accept (closed at once), by reason: shard_full, \
             reserve, address_connections, address_rate",
            kafka_connections_refused.clone(),
        );
        registry.register(
            "sluice_kafka_connections_closed",
            "Kafka connections closed, by reason: client, idle, frame_length, \
             frame_timeout, protocol, io_error, stopping",
            kafka_connections_closed.clone(),
        );
        registry.register(
            "sluice_kafka_requests",
            "Kafka request frames read and handed to the adapter",
            kafka_requests.clone(),
        );
        let rocketmq_connections = Counter::default();
        let rocketmq_connections_open = Gauge::default();
        let rocketmq_connections_refused = Family::<ReasonLabels, Counter>::default();
        let rocketmq_calls = Counter::default();
        registry.register(
            "sluice_rocketmq_connections",
            "RocketMQ (gRPC) connections accepted",
            rocketmq_connections.clone(),
        );
        registry.register(
            "sluice_rocketmq_connections_open",
            "RocketMQ (gRPC) connections open now",
            rocketmq_connections_open.clone(),
        );
        registry.register(
            "sluice_rocketmq_connections_refused",
            "RocketMQ connections refused at accept (closed at once), by reason: shard_full, \
             reserve, address_connections, address_rate",
            rocketmq_connections_refused.clone(),
        );
        registry.register(
            "sluice_rocketmq_calls",
            "RocketMQ gRPC calls received (every method, Telemetry streams included)",
            rocketmq_calls.clone(),
        );
        Metrics {
            registry,
            rocketmq_connections,
            rocketmq_connections_open,
            rocketmq_connections_refused,
            rocketmq_calls,
            kafka_connections,
            kafka_connections_open,
            kafka_connections_refused,
            kafka_connections_closed,
            kafka_requests,
            connections_refused,
            requests,
            request_seconds,
            fsync_seconds,
            requests_inflight,
            logins_succeeded,
            logins_failed,
            token_requests_replayed,
        }
    }

    /// Counts what the node's login guards saw.
    pub fn auth_event(&self, event: AuthEvent) {
        let failed = |reason| {
            self.logins_failed
                .get_or_create(&LoginFailureLabels { reason })
                .inc();
        };
        match event {
            AuthEvent::LoginSucceeded => {
                self.logins_succeeded.inc();
            }
            AuthEvent::LoginFailed => failed("wrong_credentials"),
            AuthEvent::LoginThrottled => failed("throttled"),
            AuthEvent::LoginBusy => failed("verifier_busy"),
            AuthEvent::TokenRequestReplayed => {
                self.token_requests_replayed.inc();
            }
        }
    }

    pub fn observe_request(&self, route: &str, status: u16, seconds: f64) {
        self.requests
            .get_or_create(&RouteLabels {
                route: route.to_string(),
                status,
            })
            .inc();
        self.request_seconds
            .get_or_create(&RouteOnly {
                route: route.to_string(),
            })
            .observe(seconds);
    }

    /// The process-wide metrics, then the cluster's (in cluster mode), then the
    /// per-queue ones in `queues`.
    pub fn render(&self, cluster: Option<&ClusterGauges>, queues: &QueueGauges) -> String {
        let mut text = String::new();
        let registries = [Some(&self.registry), cluster.map(|c| &c.registry)];
        for registry in registries.into_iter().flatten() {
            encode(&mut text, registry).expect("writing to a String cannot fail");
            // Each registry ends with "# EOF"; only the last one keeps it.
            if let Some(stripped) = text.strip_suffix("# EOF\n") {
                text.truncate(stripped.len());
            }
        }
        let mut more = String::new();
        encode(&mut more, &queues.registry).expect("writing to a String cannot fail");
        text.push_str(&more);
        text
    }
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartitionLabels {
    pub partition: u32,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: &'static str,
}

/// Cluster mode: each partition's Raft progress on this node and the node's forwarding
/// and Raft message counters, gathered at scrape time.
pub struct ClusterGauges {
    registry: Registry,
    pub term: Family<PartitionLabels, Gauge>,
    pub commit: Family<PartitionLabels, Gauge>,
    pub applied: Family<PartitionLabels, Gauge>,
    /// The node id of the leader this node's replica sees (0: none known).
    pub leader: Family<PartitionLabels, Gauge>,
    /// Counter families by metric name (`crate::shared::CLUSTER_COUNTER_NAMES`).
    pub counters: Vec<(&'static str, Family<OutcomeLabels, Counter>)>,
}

impl ClusterGauges {
    pub fn new() -> ClusterGauges {
        let mut registry = Registry::default();
        let partition = || Family::<PartitionLabels, Gauge>::default();
        let (term, commit, applied, leader) = (partition(), partition(), partition(), partition());
        let gauges = [
            (
                "sluice_raft_term",
                "The partition's Raft term at this node's replica",
                &term,
            ),
            (
                "sluice_raft_commit_index",
                "The highest Raft index this replica knows committed",
                &commit,
            ),
            (
                "sluice_raft_applied_index",
                "The highest Raft index this replica applied",
                &applied,
            ),
            (
                "sluice_raft_leader",
                "The node this replica sees leading the partition (0: none)",
                &leader,
            ),
        ];
        for (name, help, family) in gauges {
            registry.register(name, help, family.clone());
        }
        let mut counters = Vec::new();
        let helps = [
            (
                "sluice_forwarded_calls",
                "Calls forwarded to or served for another node, by outcome",
            ),
            (
                "sluice_forward_frames_dropped",
                "Forwarding frames or calls dropped by the transport side, by reason",
            ),
            (
                "sluice_raft_messages_dropped",
                "Raft messages not sent or not delivered (Raft retransmits), by reason",
            ),
        ];
        for (name, help) in helps {
            let family = Family::<OutcomeLabels, Counter>::default();
            registry.register(name, help, family.clone());
            counters.push((name, family));
        }
        ClusterGauges {
            registry,
            term,
            commit,
            applied,
            leader,
            counters,
        }
    }

    /// Adds one published counter total (`CLUSTER_COUNTER_NAMES`' metric and label).
    pub fn count(&self, metric: &str, outcome: &'static str, total: u64) {
        if let Some((_, family)) = self.counters.iter().find(|(name, _)| *name == metric) {
            family
                .get_or_create(&OutcomeLabels { outcome })
                .inc_by(total);
        }
    }
}

impl Default for ClusterGauges {
    fn default() -> ClusterGauges {
        ClusterGauges::new()
    }
}

/// Per-queue and per-group values gathered at scrape time.
pub struct QueueGauges {
    registry: Registry,
    pub sent: Family<QueueLabels, Gauge>,
    pub stored: Family<QueueLabels, Gauge>,
    pub delayed: Family<QueueLabels, Gauge>,
    pub backlog: Family<GroupLabels, Gauge>,
    pub in_flight: Family<GroupLabels, Gauge>,
    pub dead_letters: Family<GroupLabels, Gauge>,
    pub delivered: Family<GroupLabels, Gauge>,
    pub acked: Family<GroupLabels, Gauge>,
}

impl QueueGauges {
    pub fn new() -> QueueGauges {
        let mut registry = Registry::default();
        let queue = || Family::<QueueLabels, Gauge>::default();
        let group = || Family::<GroupLabels, Gauge>::default();
        let gauges = QueueGauges {
            sent: queue(),
            stored: queue(),
            delayed: queue(),
            backlog: group(),
            in_flight: group(),
            dead_letters: group(),
            delivered: group(),
            acked: group(),
            registry: Registry::default(),
        };
        let queue_entries = [
            (
                "sluice_queue_sent_messages",
                "Messages ever sent to the queue",
                &gauges.sent,
            ),
            (
                "sluice_queue_stored_messages",
                "Messages retained by the queue",
                &gauges.stored,
            ),
            (
                "sluice_queue_delayed_messages",
                "Delayed or scheduled messages not yet released",
                &gauges.delayed,
            ),
        ];
        for (name, help, family) in queue_entries {
            registry.register(name, help, family.clone());
        }
        let group_entries = [
            (
                "sluice_group_backlog_messages",
                "Messages the consumer group has not finished",
                &gauges.backlog,
            ),
            (
                "sluice_group_inflight_messages",
                "Messages received and not yet acked or expired",
                &gauges.in_flight,
            ),
            (
                "sluice_group_dead_letter_messages",
                "Messages in the group's dead-letter queue",
                &gauges.dead_letters,
            ),
            (
                "sluice_group_delivered_messages",
                "Deliveries to the group since the partition's state was built",
                &gauges.delivered,
            ),
            (
                "sluice_group_acked_messages",
                "Successful acks by the group",
                &gauges.acked,
            ),
        ];
        for (name, help, family) in group_entries {
            registry.register(name, help, family.clone());
        }
        QueueGauges { registry, ..gauges }
    }
}

impl Default for QueueGauges {
    fn default() -> QueueGauges {
        QueueGauges::new()
    }
}
