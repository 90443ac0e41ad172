//! The node layer: what every adapter calls ([`Node`]), and the one implementation of it
//! ([`NodeShard`]) that the glommio server, the madsim simulation and the in-process tests
//! all run.
//!
//! A node is a set of shards (threads in the server, tasks in the simulation) that own
//! its partitions: partition `p` belongs to shard `p % shards`. Any shard takes any
//! request; [`NodeShard`] routes each call to the partitions that hold the data and runs
//! it there, forwarding through its [`Host`] when another shard owns the partition.
//! Everything above the engines that decides something lives here, once: send routing,
//! receive order and long polls, ack runs, tenant quotas, the order and repair of
//! metadata changes, tenant creation, count aggregation, password logins and their
//! back-off, the replay cache of signed token requests. A host only carries calls
//! between shards, keeps time, owns the engines, stores the tenant list and checks
//! passwords where it has room (the server on threads of its own).
//!
//! Shards share read-mostly directories (arc-swap, [`Directories`]) and the login guards
//! ([`AuthGuards`], a mutex per bounded table, held for one map operation): one of each per
//! node, since a request may reach any shard.
//!
//! Adapters hold no queue state: they parse, authenticate, validate, map errors, and call
//! a [`Node`]. Every method is async and single-threaded (`!Send` futures are fine).

#![forbid(unsafe_code)]

use std::sync::Arc;

use sluice_core::engine::command::CommittedOffset;
use sluice_core::engine::read_at::{ReadAt, StoredMessage};
use sluice_core::engine::trace::Trace;
use sluice_core::engine::transactions::HalfMessage;
use sluice_core::engine::types::{
    AckKind, AckOutcome, Delivery, EngineError, GroupId, GroupStats, HandleError, MessageId,
    QueueConfig, QueueId, ReceiptHandle, SendInput, SendOutcome,
};
use sluice_core::engine::{QueueInfo, ReceiveRequest};

/// The most transaction checks one `Node::take_transaction_checks` takes.
pub const TRANSACTION_CHECKS_TAKEN_MAX: u32 = 256;
/// The most dead letters one `Node::read_dead_letters` answers.
pub const DEAD_LETTER_PAGE_MAX: u32 = 1_000;
/// The most bytes of bodies and attributes one `Node::read_dead_letters` answers (past
/// its first message).
pub const DEAD_LETTER_PAGE_BYTES_MAX: u64 = 4 * 1024 * 1024;
/// The most queues one `Node::take_transaction_checks` names.
pub const TRANSACTION_CHECK_QUEUES_MAX: usize = 1024;

pub mod alarms;
pub mod backoff;
pub mod directory;
pub mod forward;
pub mod guards;
pub mod host;
pub mod idempotence;
pub mod kafka_groups;
pub mod leader_reads;
pub mod local;
pub mod login;
pub mod membership;
mod metadata;
pub mod monitor;
pub mod password;
pub mod replay;
pub mod replication;
pub mod requests;
pub mod routing;
mod shard;
pub mod snapshot_transfer;
mod tenant_sync;
pub mod tenants;
#[cfg(test)]
mod tests;

pub use directory::{Directories, QueueDirectory};
pub use guards::{AuthEvent, AuthGuards, LoginLimits};
pub use host::{Host, Job};
pub use login::{LoginError, LoginName, LoginRequest};
pub use replay::ReplayRefusal;
pub use routing::Routed;
pub use shard::{NodeConfig, NodeShard};

use idempotence::{ProducerBatch, SequenceRefusal};
use kafka_groups::{GroupError, GroupView, Join, Joined};
use membership::ClusterChange;
use requests::PartitionMembership;
use tenants::{Quotas, Tenant, TenantDirectory, TenantError};

/// A queue as the directory knows it (no message counts: those need the partitions).
/// Kept compact, one per queue per node: the tenant's project id is shared by its
/// queues' views (`QueueDirectory`), the rest are boxed slices.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueView {
    pub id: QueueId,
    /// The owning tenant's project id.
    pub tenant: Arc<str>,
    pub name: Box<str>,
    pub config: QueueConfig,
    /// When the queue was created, epoch milliseconds.
    pub created_ms: u64,
    /// Opaque to the kernel: the adapter's own queue fields (the DMS description and
    /// tags), set at create and replaced by [`Node::set_queue_meta`].
    pub meta: Box<[u8]>,
    /// The queue that takes its dead letters, if any ([`Node::set_dead_letter`]).
    pub dead_letter_to: Option<QueueId>,
    pub groups: Vec<(GroupId, String)>,
}

impl QueueView {
    /// The view of `info`, with `tenant` (its project id) shared.
    pub fn with_tenant(info: QueueInfo, tenant: Arc<str>) -> QueueView {
        debug_assert_eq!(*tenant, *info.tenant);
        QueueView {
            id: info.id,
            tenant,
            name: info.name.into(),
            config: info.config,
            created_ms: info.created_ms,
            meta: info.meta.into(),
            dead_letter_to: info.dead_letter_to,
            groups: info.groups,
        }
    }
}

impl From<QueueInfo> for QueueView {
    fn from(info: QueueInfo) -> QueueView {
        let tenant = Arc::from(info.tenant.as_str());
        QueueView::with_tenant(info, tenant)
    }
}

/// Message counts of one queue, summed over its partitions.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QueueCounts {
    /// Messages ever sent to the queue (dedup repeats not counted).
    pub sent_total: u64,
    /// Messages currently stored (retained), delayed ones included.
    pub stored: u64,
    pub delayed: u64,
    /// Per consumer group, in the order of `QueueView::groups`.
    pub groups: Vec<(GroupId, GroupStats)>,
}

/// The answer to [`Node::send_to`].
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SendToReply {
    /// One per message, in order; empty for a duplicate or refused batch.
    pub outcomes: Vec<SendOutcome>,
    /// The position of the batch's first message (of the original, for a duplicate);
    /// `None` when unknown (every message a dedup repeat, or trimmed meanwhile).
    pub first_seq: Option<u64>,
    /// The producer's batch was stored before: nothing was stored now.
    pub duplicate: bool,
    pub refused: Option<SequenceRefusal>,
}

/// One read of [`Node::read_positions`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PositionRead {
    pub queue: QueueId,
    pub partition: u32,
    /// The first position wanted.
    pub from: u64,
    /// Bytes of bodies and attributes this read may answer (its first message is
    /// answered whatever its size).
    pub bytes_max: u64,
}

/// Which lane of a consumer group a receive or ack works on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Lane {
    Main,
    DeadLetters,
}

impl Lane {
    /// Whether a receipt handle belongs to this lane.
    pub fn holds(self, handle: &ReceiptHandle) -> bool {
        handle.dead_letter == (self == Lane::DeadLetters)
    }
}

/// A failed node call. `Engine` carries the kernel's typed error; `Unavailable` means the
/// owning partition could not be reached or is reopening (the caller may retry). Crosses
/// between nodes as [`forward::WireNodeError`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NodeError {
    Engine(EngineError),
    Unavailable(&'static str),
    /// [`Node::set_queue_meta`]: the queue's fields were no longer what the caller read
    /// (another change came first); read them again and retry.
    MetaChanged,
}

impl From<EngineError> for NodeError {
    fn from(error: EngineError) -> NodeError {
        NodeError::Engine(error)
    }
}

impl std::fmt::Display for NodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NodeError::Engine(error) => write!(f, "{error}"),
            NodeError::Unavailable(why) => write!(f, "unavailable: {why}"),
            NodeError::MetaChanged => write!(f, "the queue's fields changed meanwhile"),
        }
    }
}

/// The operations behind every API. Tenant checks are the adapter's job: a node call
/// names queues by id and trusts that the caller checked the queue belongs to the tenant
/// (through [`Node::queue`], which filters by tenant).
#[allow(async_fn_in_trait)]
pub trait Node {
    /// Queue time, epoch milliseconds: what the engines run on (leases, delays, long
    /// polls). Steps of the wall clock while the node runs do not move it
    /// (`sluice_core::clock`).
    fn now_ms(&self) -> u64;

    /// The wall clock, epoch milliseconds, for dates that come from outside: request
    /// signatures and token expiry.
    fn wall_ms(&self) -> u64;

    /// Tenants and their credentials (read-mostly, published on every change).
    fn tenants(&self) -> Arc<TenantDirectory>;

    /// A password login (Keystone's password method): the tenant, or why not. Refused
    /// before the password is checked while the tenant or the address backs off after
    /// failed logins; the check itself runs off the shard's thread (the host's verifiers).
    async fn login(&self, request: LoginRequest<'_>) -> Result<Tenant, LoginError>;

    /// Admits a signed token request once: `signature` (its `SDK-HMAC-SHA256` signature,
    /// already verified), dated `dated_unix_s`, is remembered node-wide until the date has
    /// left the `window_s` skew window; the same signature is refused meanwhile, whichever
    /// shard it reaches.
    fn admit_token_request(
        &self,
        signature: [u8; 32],
        dated_unix_s: i64,
        window_s: i64,
    ) -> Result<(), ReplayRefusal>;

    /// The tenant's queues, ordered by name. No I/O.
    fn queues_of(&self, tenant: &str) -> Vec<QueueView>;

    /// One queue, only if it belongs to `tenant` (otherwise `None`, as if it did not exist).
    fn queue(&self, tenant: &str, queue: QueueId) -> Option<QueueView>;

    /// The tenant's queue named `name`, if any. No I/O, no scan (the directory's name
    /// index).
    fn queue_named(&self, tenant: &str, name: &str) -> Option<QueueView>;

    /// Brings the queue directory up to partition 0's leader's when this node may trail
    /// it (a cluster): an adapter calls it before answering that a queue or group does not
    /// exist, or before listing queues, so that one created through another node a moment
    /// ago is found (read your writes through any node). The read it waits for started
    /// after the call, and one read in flight per shard serves every caller meanwhile
    /// (`crate::leader_reads`); a failure leaves the directory as it was. A no-op on a
    /// single node. Answers whether the directory is known to hold every queue and group
    /// committed before the call (always on a single node; in a cluster, when that read
    /// reached partition 0's serving leader).
    async fn sync_directory(&self) -> bool;

    /// As [`Node::sync_directory`] for the tenant directory: an adapter calls it before
    /// refusing credentials this node does not know, which may belong to a tenant created
    /// through another node a moment ago.
    async fn sync_tenants(&self);

    /// Creates a queue on every partition; refused past the tenant's queue quota.
    async fn create_queue(
        &self,
        tenant: &str,
        name: &str,
        config: QueueConfig,
        meta: Vec<u8>,
    ) -> Result<QueueId, NodeError>;

    async fn delete_queue(&self, queue: QueueId) -> Result<(), NodeError>;

    /// Replaces the queue's adapter fields ([`QueueView::meta`]) durably on every
    /// partition, if they are still `expected` (what the caller read and changed);
    /// otherwise [`NodeError::MetaChanged`] and nothing is written. Bounded by
    /// `QUEUE_META_BYTES_MAX` (`EngineError::InvalidConfig("meta")` beyond).
    async fn set_queue_meta(
        &self,
        queue: QueueId,
        expected: &[u8],
        meta: Vec<u8>,
    ) -> Result<(), NodeError>;

    /// Sets the queue's dead-letter policy durably on every partition: after
    /// `max_consume_count` failures (`None`: never) a message goes to its group's dead
    /// letters or, with `target` (another queue of the same tenant spreading over at least
    /// as many partitions), to that queue as an available message
    /// (`Engine::set_dead_letter`).
    async fn set_dead_letter(
        &self,
        queue: QueueId,
        max_consume_count: Option<u16>,
        target: Option<QueueId>,
    ) -> Result<(), NodeError>;

    /// Spreads a NORMAL queue of its own partition count over more of the node's
    /// partitions (at most all of them), durably on every partition: later sends use them,
    /// stored messages stay where they are (a Kafka CreatePartitions). A count that does
    /// not grow, or past the node's, is `InvalidConfig("partitions")`.
    async fn set_partitions(&self, queue: QueueId, partitions: u16) -> Result<(), NodeError>;

    /// Creates several groups as one request: all of them, or (on a validation error such
    /// as a duplicate name or the per-queue limit, or a fault part-way) none.
    async fn create_groups(
        &self,
        queue: QueueId,
        names: &[String],
    ) -> Result<Vec<GroupId>, NodeError>;

    async fn delete_group(&self, queue: QueueId, group: GroupId) -> Result<(), NodeError>;

    async fn queue_counts(&self, queue: QueueId) -> Result<QueueCounts, NodeError>;

    /// Sends a batch; answers once every message is durable, results in request order.
    async fn send(
        &self,
        queue: QueueId,
        messages: Vec<SendInput>,
    ) -> Result<Vec<Routed<SendOutcome>>, NodeError>;

    /// Cancels a delayed or scheduled message of `queue` that has not been released, on
    /// the partition its id names; answers once the cancel is durable. A message that is
    /// not waiting for release (released, cancelled, never delayed, unknown, or a
    /// partition the node does not have) is `EngineError::NotScheduled`.
    async fn cancel(
        &self,
        queue: QueueId,
        partition: u16,
        message: MessageId,
    ) -> Result<(), NodeError>;

    /// The trace of message `message` of `queue`, on the partition its id names, read
    /// from that partition's log at its leader (`Engine::trace`): its steps from its send
    /// on. No send of it there (unknown, another queue's, past retention, or a partition
    /// the node does not have) is an empty trace.
    async fn trace(
        &self,
        queue: QueueId,
        partition: u16,
        message: MessageId,
    ) -> Result<Trace, NodeError>;

    /// Reads `group`'s dead letters on partition `partition`, at its leader, after
    /// position `after_seq` (from the first with `None`), in position order, at most
    /// `max` (bounded by `DEAD_LETTER_PAGE_MAX`) and `DEAD_LETTER_PAGE_BYTES_MAX` bytes:
    /// an export, which leases nothing. A partition the queue does not spread over has
    /// none.
    async fn read_dead_letters(
        &self,
        queue: QueueId,
        group: GroupId,
        partition: u32,
        after_seq: Option<u64>,
        max: u32,
    ) -> Result<Vec<StoredMessage>, NodeError>;

    /// Ends the transaction of half message `message` of `queue` (sent with
    /// `Delay::Half`), on the partition its id names: committed, it becomes available;
    /// rolled back, it is dropped. Answers once durable. No open transaction with that
    /// half message (ended, dropped after its last check, not a half message, unknown, or
    /// a partition the node does not have) is `EngineError::NotScheduled`.
    async fn end_transaction(
        &self,
        queue: QueueId,
        partition: u16,
        message: MessageId,
        commit: bool,
    ) -> Result<(), NodeError>;

    /// Takes, from partition `partition`'s leader, the checks of open transactions of
    /// `queues` waiting for a producer to answer, at most `max` (bounded by
    /// `TRANSACTION_CHECKS_TAKEN_MAX`), each with its half message. A check taken is
    /// gone: the half message is checked again an interval later if still open.
    async fn take_transaction_checks(
        &self,
        partition: u32,
        queues: Vec<QueueId>,
        max: u32,
    ) -> Result<Vec<HalfMessage>, NodeError>;

    /// Receives up to `request.max_messages`, whose bodies and attributes total at most
    /// `request.bytes_max` over all partitions (or one message alone, larger, when
    /// `request.oversize_first`); with nothing available, waits up to `wait_ms` (capped by
    /// the node's long-poll limit) for a message and then returns what there is (maybe
    /// none).
    async fn receive(
        &self,
        queue: QueueId,
        group: GroupId,
        lane: Lane,
        request: ReceiveRequest,
        wait_ms: u64,
    ) -> Result<Vec<Routed<Delivery>>, NodeError>;

    /// The node's partition count. A queue uses partitions `0..` its own count, at most
    /// this ([`QueueConfig::partitions_on`]; a DMS queue uses them all).
    fn partition_count(&self) -> u32;

    /// Sends a batch to one partition, chosen by the caller (a Kafka producer); answers
    /// once durable, with the outcomes in order and the position (`seq`) of the first new
    /// message in its queue there. With `producer`, a batch this partition already stored
    /// for that producer is not stored again but answered with its first position, and
    /// one that skips sequence numbers or comes from a fenced epoch is refused
    /// ([`idempotence`]).
    async fn send_to(
        &self,
        queue: QueueId,
        partition: u32,
        messages: Vec<SendInput>,
        producer: Option<ProducerBatch>,
    ) -> Result<SendToReply, NodeError>;

    /// Reads queues by position (log-style consumers): each read gets up to its own
    /// `bytes_max`, all of them together at most `bytes_max`; with fewer than `min_bytes`
    /// found, waits up to `wait_ms` (capped by the node's long-poll limit) for more and
    /// reads again. Answers per read, in order (a read's failure is its own).
    async fn read_positions(
        &self,
        reads: Vec<PositionRead>,
        bytes_max: u64,
        min_bytes: u64,
        wait_ms: u64,
    ) -> Result<Vec<Result<ReadAt, NodeError>>, NodeError>;

    /// A queue's retained positions on one partition (first, next) and, with `at_ms`, the
    /// first position whose message became available at or after it.
    async fn positions(
        &self,
        queue: QueueId,
        partition: u32,
        at_ms: Option<u64>,
    ) -> Result<(u64, u64, Option<u64>), NodeError>;

    /// Acks in the given order (DMS semantics: processing stops at the first invalid
    /// handle, a handle of the other lane included, and later entries answer
    /// `Err(Stale)`); answers once durable.
    async fn ack(
        &self,
        lane: Lane,
        acks: Vec<(Routed<ReceiptHandle>, AckKind)>,
    ) -> Result<Vec<Result<AckOutcome, HandleError>>, NodeError>;

    /// Moves the visibility deadline of a delivery (SQS's ChangeMessageVisibility) to
    /// `visibility_ms` from now, at most the visibility limit; 0 makes the message
    /// visible at once. Leases are leader-only state, so the partition's serving leader
    /// answers. The inner error names a handle whose delivery is unknown or over (a
    /// partition the node does not have included).
    async fn change_visibility(
        &self,
        handle: Routed<ReceiptHandle>,
        visibility_ms: u64,
    ) -> Result<Result<(), HandleError>, NodeError>;

    /// Purges `queue` (SQS's PurgeQueue): on each of its partitions, in turn, the serving
    /// leader logs the removal of every message stored there so far and the cancel of
    /// every delayed one not yet released (`Engine::purge`); answers once all are
    /// durable. A message stored meanwhile may stay. A failure part-way leaves the
    /// partitions before it purged (a retry purges the rest).
    async fn purge_queue(&self, queue: QueueId) -> Result<(), NodeError>;

    /// Starts a move task of `group` on each of `queue`'s partitions, in turn, at its
    /// serving leader: the group's backlog there goes to queue `to` at most `per_second`
    /// a second per partition (0: as fast as the leader's passes go), then the task ends
    /// by itself (`Engine::start_move`). Progress shows in the group's counts
    /// (`GroupStats::moving`, `moved_total`, `move_remaining`). A failure part-way leaves
    /// the partitions before it moving.
    async fn start_move(
        &self,
        source: (QueueId, GroupId),
        to: QueueId,
        per_second: u32,
    ) -> Result<(), NodeError>;

    /// The queue's recent counts as this node sampled them (`monitor`), oldest first;
    /// empty before the first sample or for a queue past the bound. No I/O.
    fn queue_history(&self, queue: QueueId) -> Vec<monitor::Sample>;

    /// The states of the queue's alarm rules on this node and their changes, oldest
    /// first (`alarms`). No I/O.
    fn queue_alarms(&self, queue: QueueId) -> (Vec<alarms::AlarmState>, Vec<alarms::AlarmState>);

    /// Moves every dead letter of `group` back to its main lane, on each of `queue`'s
    /// partitions in turn, at its serving leader (`Engine::redrive`); a queue without dead
    /// letters (no max consume count) is `NoDeadLetters`. A failure part-way leaves the
    /// partitions before it redriven.
    async fn redrive(&self, queue: QueueId, group: GroupId) -> Result<(), NodeError>;

    /// Stops the group's move tasks on every partition of `queue`.
    async fn stop_move(&self, queue: QueueId, group: GroupId) -> Result<(), NodeError>;

    /// Admin: adds a tenant (durably) and returns it with its fresh credentials; with a
    /// password, its argon2id hash is kept for Keystone logins.
    async fn create_tenant(
        &self,
        name: &str,
        password: Option<&str>,
    ) -> Result<Tenant, TenantError>;

    /// Admin: removes a tenant and every queue it owns.
    async fn delete_tenant(&self, project_id: &str) -> Result<(), TenantError>;

    /// Admin: changes a tenant's quotas (durably) and returns the updated tenant. Lowering
    /// a quota below current use is allowed; it only stops further creates.
    async fn set_tenant_quotas(
        &self,
        project_id: &str,
        quotas: Quotas,
    ) -> Result<Tenant, TenantError>;

    /// Kafka JoinGroup of `group` (the tenant's; `kafka_groups`): answers once the
    /// rebalance it joined completed, at most `kafka_groups::JOIN_WAIT_MS_MAX` later.
    async fn join_group(
        &self,
        tenant: &str,
        group: &str,
        join: Join,
    ) -> Result<Result<Joined, GroupError>, NodeError>;

    /// Kafka SyncGroup: the member's assignment; the leader's call hands them out.
    async fn sync_group(
        &self,
        tenant: &str,
        group: &str,
        member_id: &str,
        generation: i32,
        assignments: Vec<(String, Vec<u8>)>,
    ) -> Result<Result<Vec<u8>, GroupError>, NodeError>;

    /// Kafka Heartbeat: `RebalanceInProgress` tells the member to join again.
    async fn heartbeat_group(
        &self,
        tenant: &str,
        group: &str,
        member_id: &str,
        generation: i32,
    ) -> Result<Result<(), GroupError>, NodeError>;

    /// Kafka LeaveGroup of several members: each one's answer, in order.
    async fn leave_group(
        &self,
        tenant: &str,
        group: &str,
        members: Vec<String>,
    ) -> Result<Vec<Result<(), GroupError>>, NodeError>;

    /// Kafka OffsetCommit: checked against the member and generation when `generation`
    /// is at least 0 (a standalone consumer's commit, -1, is not), then durable on the
    /// group's partition before the answer. The caller checked the queues are the
    /// tenant's and the partitions exist.
    async fn commit_group_offsets(
        &self,
        tenant: &str,
        group: &str,
        member_id: &str,
        generation: i32,
        offsets: Vec<CommittedOffset>,
    ) -> Result<Result<(), GroupError>, NodeError>;

    /// Kafka OffsetFetch: the group's committed offsets, read at the serving leader.
    async fn group_offsets(
        &self,
        tenant: &str,
        group: &str,
    ) -> Result<Vec<CommittedOffset>, NodeError>;

    /// Kafka DescribeGroups of one group.
    async fn describe_group(&self, tenant: &str, group: &str) -> Result<GroupView, NodeError>;

    /// Kafka ListGroups: the tenant's groups with members (group id, protocol type,
    /// state), from every partition.
    async fn list_groups(&self, tenant: &str) -> Result<Vec<(String, String, String)>, NodeError>;

    /// Admin: every partition's replicas, read at its leader (or, when no leader can be
    /// asked, at this node's replica, marked so).
    async fn cluster_membership(&self) -> Vec<Result<PartitionMembership, NodeError>>;

    /// Every partition's leader and replicas as this node's own replicas see them, with
    /// no network round trip (a follower's view may trail the leader's): what Kafka's
    /// Metadata tells clients.
    async fn local_membership(&self) -> Vec<Result<PartitionMembership, NodeError>>;

    /// Admin: adds, removes or moves a node's replicas in every partition
    /// ([`membership`]); answers every partition's configuration afterwards.
    async fn change_cluster(
        &self,
        change: ClusterChange,
    ) -> Result<Vec<PartitionMembership>, NodeError>;
}
