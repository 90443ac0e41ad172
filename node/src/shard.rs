//! [`NodeShard`]: one shard of a node, and the one implementation of [`Node`].
//!
//! Every request an adapter makes of a shard is routed here (`crate::routing`), split
//! into typed calls on partitions (`crate::requests`), and each call runs on the shard
//! that owns its partition: here, or forwarded through the [`Host`]. Metadata changes run
//! on shard 0, one at a time (`crate::metadata`).

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::Poll;

use sluice_core::bugs::{self, Bug};
use sluice_core::engine::command::CommittedOffset;
use sluice_core::engine::metadata::MetadataGate;
use sluice_core::engine::read_at::{ReadAt, StoredMessage};
use sluice_core::engine::trace::Trace;
use sluice_core::engine::transactions::HalfMessage;
use sluice_core::engine::types::{
    AckKind, AckOutcome, Delivery, EngineError, GroupId, HandleError, MessageId, QueueConfig,
    QueueId, ReceiptHandle, SendInput, SendOutcome,
};
use sluice_core::engine::{validate_batch, Engine, EngineLimits, ReceiveRequest};

use crate::guards::{AuthGuards, LoginLimits};
use crate::idempotence::{Check, ProducerBatch, Producers};
use crate::kafka_groups::{group_key, group_partition, GroupError, GroupView, Join, Joined};
use crate::login::{LoginError, LoginRequest};
use crate::membership::ClusterChange;
use crate::replay::ReplayRefusal;
use crate::requests::{self, owner_of, PartitionMembership, ShardRequest};
use crate::routing::{self, Routed};
use crate::tenants::{Quotas, Tenant, TenantDirectory, TenantError};
use crate::{
    Directories, Host, Job, Lane, Node, NodeError, PositionRead, QueueCounts, QueueView,
    SendToReply, DEAD_LETTER_PAGE_BYTES_MAX, DEAD_LETTER_PAGE_MAX, TRANSACTION_CHECKS_TAKEN_MAX,
    TRANSACTION_CHECK_QUEUES_MAX,
};

/// A long poll wakes at least this often (queue time) to notice a shutdown.
const LONG_POLL_WAKE_MS_MAX: u64 = 1_000;

/// The shape of a node and the limits its shards enforce.
#[derive(Clone, Copy, Debug)]
pub struct NodeConfig {
    pub shard_count: usize,
    pub partition_count: u32,
    /// Quotas of a tenant created through the admin API.
    pub default_quotas: Quotas,
    /// The engines' limits: ceilings over the tenants' quotas (a quota above the engine's
    /// group limit would be refused part-way), and the size of one ack call.
    pub limits: EngineLimits,
    /// Longest long poll, whatever an adapter asks.
    pub wait_ms_max: u64,
    /// Bounds of the login guards (back-off, replay cache); the node's [`AuthGuards`] are
    /// built from them.
    pub login: LoginLimits,
}

impl NodeConfig {
    /// DMS quotas and limits: 60 s long polls are DMS's longest; 120 s leaves room.
    pub fn new(shard_count: usize, partition_count: u32, limits: EngineLimits) -> NodeConfig {
        assert!(shard_count > 0 && partition_count > 0, "a node has both");
        NodeConfig {
            shard_count,
            partition_count,
            default_quotas: Quotas::dms_default(),
            limits,
            wait_ms_max: 120_000,
            login: LoginLimits::standard(),
        }
    }
}

/// One shard of a node: the routing, forwarding, long-poll, ack and metadata logic over
/// its host.
pub struct NodeShard<H: Host> {
    index: usize,
    host: H,
    config: NodeConfig,
    directories: Arc<Directories>,
    /// The node's login back-off and replay cache, shared by all its shards.
    guards: Arc<AuthGuards>,
    /// Metadata changes one at a time (shard 0), and whether one left the partitions
    /// apart so that the next repairs first. A node starts not knowing they agree.
    pub(crate) meta_gate: MetadataGate,
    rotation: Cell<u64>,
    /// The partitions this shard owns, in order.
    owned: Vec<u32>,
    /// Partition 0's `tenant_changes` when this shard last published the tenant
    /// directory from it (`crate::tenant_sync`); `None` before the first.
    pub(crate) tenants_published: Cell<Option<u64>>,
    /// Calls forwarded to and from other nodes (`crate::forward`).
    forwarding: crate::forward::Forwarding,
    /// Reads of the queue directory from partition 0's leader ([`Node::sync_directory`]).
    directory_reads: crate::leader_reads::LeaderReads,
    /// Reads of the tenants from partition 0's leader ([`Node::sync_tenants`]).
    tenant_reads: crate::leader_reads::LeaderReads,
    /// Idempotent producers of the partitions this shard leads (`crate::idempotence`).
    producers: std::cell::RefCell<Producers>,
    /// Kafka consumer groups of the partitions this shard owns (leader-only state).
    kafka_groups: crate::kafka_groups::Coordinator,
}

impl<H: Host> NodeShard<H> {
    /// Runs the request `make` gives for each of `queue`'s partitions, one at a time, each
    /// at its serving leader (here, another shard or another node): a queue unknown to the
    /// directory yet is judged by the engines. A failure part-way leaves the partitions
    /// before it done.
    async fn on_each_partition<R: requests::ShardRequest<Reply = ()>>(
        &self,
        queue: QueueId,
        make: impl Fn(u32) -> R,
    ) -> Result<(), NodeError> {
        for partition in 0..self.queue_partitions(queue) {
            self.call(make(partition)).await?;
        }
        Ok(())
    }

    /// One sampling pass of the node's monitoring ring (`crate::monitor::sample`): the
    /// host runs it on one shard at its interval.
    ///
    /// A change of an alarm's state is posted to its webhook by the node that leads
    /// partition 0 only (`Host::deliver_webhook`), so a cluster notifies once.
    pub async fn sample_monitor(&self) {
        let notify = |view: &QueueView,
                      rule: &crate::alarms::AlarmRule,
                      state: &crate::alarms::AlarmState| {
            let Some(url) = &rule.webhook else {
                return;
            };
            let leads = self.host.engine(0).is_ok_and(|e| e.is_serving_leader());
            if !leads {
                return;
            }
            let body = serde_json::json!({
                "alarm": rule.name,
                "project_id": &*view.tenant,
                "queue": &*view.name,
                "group": rule.group,
                "kind": rule.kind,
                "threshold": rule.threshold,
                "state": if state.firing { "firing" } else { "ok" },
                "value": state.value,
                "since_ms": state.since_ms,
            });
            self.host
                .deliver_webhook(url, body.to_string().into_bytes());
        };
        crate::monitor::sample(self, &self.directories.monitor, notify).await;
    }

    pub fn new(
        index: usize,
        host: H,
        config: NodeConfig,
        directories: Arc<Directories>,
        guards: Arc<AuthGuards>,
    ) -> NodeShard<H> {
        assert!(
            index < config.shard_count,
            "shard {index} of a smaller node"
        );
        let owned = (0..config.partition_count)
            .filter(|p| owner_of(*p, config.shard_count) == index)
            .collect();
        NodeShard {
            index,
            host,
            config,
            directories,
            guards,
            meta_gate: MetadataGate::new(true),
            rotation: Cell::new(index as u64),
            owned,
            tenants_published: Cell::new(None),
            forwarding: crate::forward::Forwarding::default(),
            directory_reads: Default::default(),
            tenant_reads: Default::default(),
            producers: Default::default(),
            kafka_groups: Default::default(),
        }
    }

    pub fn index(&self) -> usize {
        self.index
    }

    pub fn host(&self) -> &H {
        &self.host
    }

    pub fn config(&self) -> &NodeConfig {
        &self.config
    }

    pub fn directories(&self) -> &Arc<Directories> {
        &self.directories
    }

    pub fn guards(&self) -> &Arc<AuthGuards> {
        &self.guards
    }

    /// Calls forwarded to and from other nodes: in flight, and counted.
    pub fn forwarding(&self) -> &crate::forward::Forwarding {
        &self.forwarding
    }

    /// The partitions this shard owns, in order.
    pub fn owned(&self) -> &[u32] {
        &self.owned
    }

    pub fn owns(&self, partition: u32) -> bool {
        owner_of(partition, self.config.shard_count) == self.index
    }

    fn next_rotation(&self) -> u64 {
        let rotation = self.rotation.get();
        self.rotation.set(rotation.wrapping_add(1));
        rotation
    }

    /// The Kafka consumer groups of the partitions this shard owns.
    pub(crate) fn kafka_groups(&self) -> &crate::kafka_groups::Coordinator {
        &self.kafka_groups
    }

    /// Where a group call runs: the partition and its Raft term, when this replica
    /// serves as its leader (group membership is the leader's alone).
    pub(crate) fn group_place(
        &self,
        engine: &Engine<H::Storage>,
        partition: u32,
    ) -> Result<(u32, u64), EngineError> {
        if !engine.is_serving_leader() {
            return Err(EngineError::NotLeader {
                leader: engine.leader_id(),
            });
        }
        Ok((partition, engine.raft_term()))
    }

    /// The engine of a partition this shard owns (a request's target check).
    pub(crate) fn owned_engine(&self, partition: u32) -> Result<Rc<Engine<H::Storage>>, NodeError> {
        assert!(self.owns(partition), "a partition call runs on its owner");
        self.host.engine(partition)
    }

    /// An engine's answer; a storage fault takes the engine out of service.
    pub(crate) fn checked<T>(
        &self,
        partition: u32,
        result: Result<T, EngineError>,
    ) -> Result<T, NodeError> {
        if let Err(error @ EngineError::Storage(_)) = &result {
            self.host.storage_fault(partition, error);
        }
        result.map_err(NodeError::Engine)
    }

    /// Runs `request` on its target shard (here, or handed over through the host) and
    /// there on the node that leads its partition (here, or forwarded once,
    /// `crate::forward`); answers with the request's own reply type.
    pub async fn call<R: ShardRequest>(&self, request: R) -> Result<R::Reply, NodeError> {
        self.route(request, true).await
    }

    /// As [`NodeShard::call`], but runs on this node's replica whoever leads: reads that
    /// follow the local replica's applied state, and writes only a leader may make.
    pub(crate) async fn call_local<R: ShardRequest>(
        &self,
        request: R,
    ) -> Result<R::Reply, NodeError> {
        self.route(request, false).await
    }

    async fn route<R: ShardRequest>(
        &self,
        request: R,
        remote: bool,
    ) -> Result<R::Reply, NodeError> {
        let target = request.target(self.config.shard_count);
        if target == self.index {
            return self.run_owned(request, remote).await;
        }
        let (reply, answer) = async_channel::bounded(1);
        let job: Job<H> = Box::new(move |shard: Rc<NodeShard<H>>| {
            Box::pin(async move {
                let result = shard.run_owned(request, remote).await;
                // The caller may have given up (a long poll that ended).
                let _ = reply.try_send(result);
            })
        });
        self.host.forward(target, job).await?;
        answer
            .recv()
            .await
            .map_err(|_| NodeError::Unavailable("another shard dropped the call"))?
    }

    /// On the target shard: forwards `request` to the node leading its partition when
    /// that is another node (and `remote` allows), otherwise runs it here.
    async fn run_owned<R: ShardRequest>(
        &self,
        request: R,
        remote: bool,
    ) -> Result<R::Reply, NodeError> {
        if remote {
            let partition = request.led_by();
            let leader = match self.leader_elsewhere(partition) {
                Some(node) => Some(node),
                None => self.leader_from_peers(partition).await,
            };
            if let Some(node) = leader {
                return self.call_remote(node, request).await;
            }
        }
        request.execute(self).await
    }

    /// Republishes the queue directory from partition 0's leader (shard 0, after every
    /// change; the leader's replica when known, this node's otherwise).
    pub(crate) async fn refresh_directory(&self) -> Result<(), NodeError> {
        self.refresh_directory_current().await.map(|_| ())
    }

    /// [`NodeShard::refresh_directory`]; `true` when it was read at partition 0's serving
    /// leader (the directory now holds every committed queue and group). It reads what
    /// changed since the published directory's index, and every queue only when
    /// partition 0 cannot tell (it started from a later snapshot, or let go of as old
    /// deletions).
    async fn refresh_directory_current(&self) -> Result<bool, NodeError> {
        let since = self.directories.queues.load().applied;
        let read = self
            .call(requests::ReadDirectoryChanges {
                partition: 0,
                since,
            })
            .await?;
        if let Some((changed, deleted)) = read.changes {
            if self.publish_directory_changes(since, read.applied, &changed, &deleted) {
                return Ok(read.current);
            }
        }
        let (applied, infos, current) = self.call(requests::ReadDirectory { partition: 0 }).await?;
        self.publish_directory(applied, infos);
        Ok(current)
    }

    /// Publishes the directory partition 0 held at Raft index `applied`, unless the one
    /// published already reflects a later index. Every shard of the node may publish (a
    /// lookup that misses reads partition 0's leader): the check and the store are one
    /// compare-and-swap (`rcu`), so a slower shard never puts an older directory back.
    pub(crate) fn publish_directory(
        &self,
        applied: u64,
        infos: Vec<sluice_core::engine::QueueInfo>,
    ) {
        if self.directories.queues.load().applied > applied {
            return;
        }
        let directory = Arc::new(crate::QueueDirectory::from_infos(applied, infos));
        self.directories.queues.rcu(|current| {
            if current.applied > applied {
                Arc::clone(current)
            } else {
                Arc::clone(&directory)
            }
        });
    }

    /// Brings the published directory to `applied` with partition 0's changes after
    /// `since`; `false` (nothing published) when the published one is older than `since`
    /// (another publish replaced it meanwhile with an older read; read everything then).
    /// One published at `applied` or later is kept. One compare-and-swap, as
    /// [`NodeShard::publish_directory`].
    pub(crate) fn publish_directory_changes(
        &self,
        since: u64,
        applied: u64,
        changed: &[sluice_core::engine::QueueInfo],
        deleted: &[QueueId],
    ) -> bool {
        let mut published = true;
        self.directories.queues.rcu(|current| {
            published = current.applied >= since;
            if current.applied >= applied || !published {
                Arc::clone(current)
            } else {
                Arc::new(current.with_changes(applied, changed, deleted))
            }
        });
        published
    }

    /// One pass over the partitions, this shard's first; the deliveries and each visited
    /// partition's change count. The request's count and byte budget hold for the whole
    /// pass: each partition gets what the earlier ones left, and only while nothing was
    /// delivered may a partition answer an oversize first message.
    async fn receive_pass(
        &self,
        queue: QueueId,
        group: GroupId,
        lane: Lane,
        request: &ReceiveRequest,
    ) -> Result<(Vec<Routed<Delivery>>, Vec<(u32, u64)>), NodeError> {
        let mut deliveries: Vec<Routed<Delivery>> = Vec::new();
        let mut bytes_delivered: u64 = 0;
        let mut seen = Vec::new();
        let order =
            routing::receive_order(self.queue_partitions(queue), self.next_rotation(), |p| {
                self.owns(p)
            });
        for partition in order {
            let wanted = request
                .max_messages
                .saturating_sub(u32::try_from(deliveries.len()).unwrap_or(u32::MAX));
            let bytes_left = request.bytes_max.saturating_sub(bytes_delivered);
            let first = deliveries.is_empty();
            if wanted == 0 || (bytes_left == 0 && !first) {
                break;
            }
            let call = requests::Receive {
                partition,
                queue,
                group,
                lane,
                request: ReceiveRequest {
                    max_messages: wanted,
                    bytes_max: bytes_left,
                    oversize_first: request.oversize_first && first,
                    ..request.clone()
                },
            };
            let (got, change_count) = self.call(call).await?;
            seen.push((partition, change_count));
            let partition = u16::try_from(partition).expect("partition indexes are u16");
            for item in got {
                bytes_delivered = bytes_delivered.saturating_add(item.budget_bytes());
                deliveries.push(Routed { partition, item });
            }
        }
        let alone = deliveries.len() == 1 && request.oversize_first;
        assert!(
            bytes_delivered <= request.bytes_max || alone,
            "a receive keeps its byte budget: {bytes_delivered} bytes in {} messages",
            deliveries.len()
        );
        Ok((deliveries, seen))
    }

    /// Waits until one of the partitions changed after what `seen` recorded, or `wait_ms`.
    async fn wait_any_change(&self, seen: &[(u32, u64)], wait_ms: u64) {
        let mut waits: Vec<Pin<Box<dyn Future<Output = ()> + '_>>> = Vec::new();
        if !bugs::enabled(Bug::LongPollNeverWakes) {
            for (partition, seen) in seen {
                let call = requests::WaitChange {
                    partition: *partition,
                    seen: *seen,
                    wait_ms,
                };
                waits.push(Box::pin(async move {
                    // A failed wait (a partition reopening, a refused or failed forward)
                    // waits out the round instead, so that a long poll never spins.
                    if self.call(call).await.is_err() {
                        std::future::pending::<()>().await;
                    }
                }));
            }
        }
        let any = std::future::poll_fn(|cx| {
            for wait in waits.iter_mut() {
                if wait.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(());
                }
            }
            Poll::Pending
        });
        futures_lite::future::or(any, self.host.sleep_ms(wait_ms)).await;
    }

    /// Acks one run of handles on one partition, in calls of at most the engine's batch
    /// size; stops after the first chunk with an invalid handle.
    async fn ack_run(
        &self,
        partition: u32,
        run: &[(Routed<ReceiptHandle>, AckKind)],
        results: &mut Vec<Result<AckOutcome, HandleError>>,
    ) -> Result<bool, NodeError> {
        let chunk_max = usize::try_from(self.config.limits.batch_messages_max).expect("fits");
        for chunk in run.chunks(chunk_max.max(1)) {
            let acks: Vec<(ReceiptHandle, AckKind)> = chunk
                .iter()
                .map(|(handle, kind)| (handle.item, *kind))
                .collect();
            let count = acks.len();
            let call = requests::Ack { partition, acks };
            let done = if bugs::enabled(Bug::AckForwardUnconfirmed) && !self.owns(partition) {
                self.forward_unconfirmed(call).await?;
                vec![Ok(AckOutcome::Applied); count]
            } else {
                self.call(call).await?
            };
            let failed = done.len() < count || done.iter().any(Result::is_err);
            results.extend(done);
            if failed {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// The deliberate bug [`Bug::AckForwardUnconfirmed`]: hands a call to its owner and
    /// does not wait for the answer.
    async fn forward_unconfirmed<R: ShardRequest>(&self, request: R) -> Result<(), NodeError> {
        let target = request.target(self.config.shard_count);
        let job: Job<H> = Box::new(move |shard: Rc<NodeShard<H>>| {
            Box::pin(async move {
                let _ = request.execute(&shard).await;
            })
        });
        self.host.forward(target, job).await
    }

    /// [`Node::send_to`] on the partition's owner: the producer's sequence is checked,
    /// then the batch goes to the engine in calls within its batch limits (each checked
    /// whole before the first is sent), in order; a batch refused part-way is answered
    /// retriable, since part of it is stored.
    pub(crate) async fn send_to_partition(
        &self,
        engine: &Engine<H::Storage>,
        partition: u32,
        queue: QueueId,
        messages: Vec<SendInput>,
        producer: Option<ProducerBatch>,
        now: u64,
    ) -> Result<SendToReply, EngineError> {
        let term = engine.raft_term();
        if let Some(batch) = &producer {
            match self.producers.borrow().check(partition, queue, batch, term) {
                Check::New => {}
                Check::Duplicate(first_seq) => {
                    return Ok(SendToReply {
                        first_seq,
                        duplicate: true,
                        ..SendToReply::default()
                    })
                }
                Check::Refused(refusal) => {
                    return Ok(SendToReply {
                        refused: Some(refusal),
                        ..SendToReply::default()
                    })
                }
            }
        }
        let limits = *engine.limits();
        let chunks = routing::chunks(&messages, limits.batch_messages_max, limits.batch_bytes_max);
        for (start, end) in &chunks {
            validate_batch(&limits, &messages[*start..*end], now)?;
        }
        let mut reply = SendToReply::default();
        let mut rest = messages;
        for (start, end) in chunks {
            let tail = rest.split_off(end - start);
            let chunk = std::mem::replace(&mut rest, tail);
            match engine.send(queue, &chunk, now).await {
                Ok(sent) => {
                    if reply.first_seq.is_none() {
                        reply.first_seq = sent
                            .iter()
                            .find(|outcome| !outcome.duplicate)
                            .and_then(|outcome| engine.seq_of(queue, outcome.message_id))
                            .map(|seq| seq + u64::from(bugs::enabled(Bug::SendToWrongOffset)));
                    }
                    reply.outcomes.extend(sent);
                }
                Err(_) if !reply.outcomes.is_empty() => return Err(EngineError::Busy),
                Err(error) => return Err(error),
            }
        }
        if let Some(batch) = &producer {
            self.producers
                .borrow_mut()
                .record(partition, queue, batch, reply.first_seq, term);
        }
        Ok(reply)
    }

    pub(crate) fn view(&self, queue: QueueId) -> Option<QueueView> {
        self.directories.queues.load().get(queue).cloned()
    }

    /// The partitions `queue` uses (`0..` this): its own count, or the node's for a
    /// queue this node's directory does not know yet (the engine decides then).
    fn queue_partitions(&self, queue: QueueId) -> u32 {
        self.directories
            .queues
            .load()
            .get(queue)
            .map_or(self.config.partition_count, |view| {
                view.config.partitions_on(self.config.partition_count)
            })
    }
}

impl<H: Host> Node for NodeShard<H> {
    fn now_ms(&self) -> u64 {
        self.host.now_ms()
    }

    fn wall_ms(&self) -> u64 {
        self.host.wall_ms()
    }

    fn tenants(&self) -> Arc<TenantDirectory> {
        self.directories.tenants.load_full()
    }

    async fn login(&self, request: LoginRequest<'_>) -> Result<Tenant, LoginError> {
        self.login_run(request).await
    }

    fn admit_token_request(
        &self,
        signature: [u8; 32],
        dated_unix_s: i64,
        window_s: i64,
    ) -> Result<(), ReplayRefusal> {
        self.admit_token_request_run(signature, dated_unix_s, window_s)
    }

    fn queues_of(&self, tenant: &str) -> Vec<QueueView> {
        self.directories.queues.load().queues_of(tenant)
    }

    fn queue(&self, tenant: &str, queue: QueueId) -> Option<QueueView> {
        let any_tenant = bugs::enabled(Bug::CrossTenant);
        self.view(queue)
            .filter(|view| &*view.tenant == tenant || any_tenant)
    }

    fn queue_named(&self, tenant: &str, name: &str) -> Option<QueueView> {
        self.directories.queues.load().named(tenant, name).cloned()
    }

    async fn sync_directory(&self) -> bool {
        if !self.host.replicated() {
            return true;
        }
        // A failure leaves the directory as it was: the lookup answers from it.
        let read = async || self.refresh_directory_current().await.unwrap_or(false);
        self.directory_reads.after_now(read).await
    }

    async fn sync_tenants(&self) {
        if !self.host.replicated() {
            return;
        }
        self.tenant_reads
            .after_now(async || {
                self.refresh_tenants_on_shard_0().await;
                true
            })
            .await;
    }
    async fn create_queue(
        &self,
        tenant: &str,
        name: &str,
        config: QueueConfig,
        meta: Vec<u8>,
    ) -> Result<QueueId, NodeError> {
        self.call(requests::MetaCreateQueue {
            tenant: tenant.to_string(),
            name: name.to_string(),
            config,
            meta,
        })
        .await
    }

    async fn delete_queue(&self, queue: QueueId) -> Result<(), NodeError> {
        self.call(requests::MetaDeleteQueue { queue }).await
    }

    async fn set_queue_meta(
        &self,
        queue: QueueId,
        expected: &[u8],
        meta: Vec<u8>,
    ) -> Result<(), NodeError> {
        let call = requests::MetaSetQueueMeta {
            queue,
            expected: expected.to_vec(),
            meta,
        };
        self.call(call).await
    }

    async fn set_dead_letter(
        &self,
        queue: QueueId,
        max_consume_count: Option<u16>,
        target: Option<QueueId>,
    ) -> Result<(), NodeError> {
        let call = requests::MetaSetDeadLetter {
            queue,
            max_consume_count,
            target,
        };
        self.call(call).await
    }

    async fn set_partitions(&self, queue: QueueId, partitions: u16) -> Result<(), NodeError> {
        self.call(requests::MetaSetPartitions { queue, partitions })
            .await
    }

    async fn create_groups(
        &self,
        queue: QueueId,
        names: &[String],
    ) -> Result<Vec<GroupId>, NodeError> {
        let names = names.to_vec();
        self.call(requests::MetaCreateGroups { queue, names }).await
    }

    async fn delete_group(&self, queue: QueueId, group: GroupId) -> Result<(), NodeError> {
        self.call(requests::MetaDeleteGroup { queue, group }).await
    }

    async fn queue_counts(&self, queue: QueueId) -> Result<QueueCounts, NodeError> {
        let mut counts = QueueCounts::default();
        for partition in 0..self.config.partition_count {
            let (info, stats) = self.call(requests::Counts { partition, queue }).await?;
            counts.sent_total += info.sent_total;
            counts.stored += info.stored;
            counts.delayed += info.delayed;
            for (group, s) in stats {
                match counts.groups.iter_mut().find(|(g, _)| *g == group) {
                    Some((_, total)) => total.add(&s),
                    None => counts.groups.push((group, s)),
                }
            }
        }
        Ok(counts)
    }

    async fn send(
        &self,
        queue: QueueId,
        messages: Vec<SendInput>,
    ) -> Result<Vec<Routed<SendOutcome>>, NodeError> {
        // Refused whole for anything that needs no queue state, before any partition
        // stores part of it.
        validate_batch(&self.config.limits, &messages, self.now_ms())?;
        let config = self
            .view(queue)
            .map(|view| view.config)
            .ok_or(EngineError::QueueNotFound)?;
        let preferred = routing::send_preference(&self.owned, |p| self.leads(p));
        let batches = routing::split_send(
            config.mode,
            config.partitions_on(self.config.partition_count),
            &preferred,
            &messages,
            self.next_rotation(),
        );
        let mut outcomes: Vec<Option<Routed<SendOutcome>>> = vec![None; messages.len()];
        for (partition, indexes) in batches {
            let batch = indexes.iter().map(|i| messages[*i].clone()).collect();
            let call = requests::SendBatch {
                partition,
                queue,
                messages: batch,
            };
            let sent = match self.call(call).await {
                Ok(sent) => sent,
                // A batch over several partitions is not atomic: once a part is stored, a
                // refusal of a later part must not read as "nothing stored". The client
                // retries (dedup ids, which are what split the batch, make it safe).
                Err(_) if outcomes.iter().any(Option::is_some) => {
                    return Err(NodeError::Unavailable(
                        "part of the batch was stored and part refused; retry it",
                    ));
                }
                Err(error) => return Err(error),
            };
            assert_eq!(sent.len(), indexes.len(), "one outcome per message");
            let partition = u16::try_from(partition).expect("partition indexes are u16");
            for (index, item) in indexes.iter().zip(sent) {
                outcomes[*index] = Some(Routed { partition, item });
            }
        }
        Ok(outcomes
            .into_iter()
            .map(|o| o.expect("every message was routed"))
            .collect())
    }

    async fn cancel(
        &self,
        queue: QueueId,
        partition: u16,
        message: MessageId,
    ) -> Result<(), NodeError> {
        let partition = u32::from(partition);
        // An id naming a partition this node does not have names no scheduled message.
        if partition >= self.config.partition_count {
            return Err(EngineError::NotScheduled.into());
        }
        self.call(requests::Cancel {
            partition,
            queue,
            message,
        })
        .await
    }

    async fn trace(
        &self,
        queue: QueueId,
        partition: u16,
        message: MessageId,
    ) -> Result<Trace, NodeError> {
        let partition = u32::from(partition);
        if partition >= self.config.partition_count {
            return Ok(Trace::default());
        }
        self.call(requests::TraceMessage {
            partition,
            queue,
            message,
        })
        .await
    }

    async fn read_dead_letters(
        &self,
        queue: QueueId,
        group: GroupId,
        partition: u32,
        after_seq: Option<u64>,
        max: u32,
    ) -> Result<Vec<StoredMessage>, NodeError> {
        if partition >= self.config.partition_count {
            return Ok(Vec::new());
        }
        self.call(requests::ReadDeadLetters {
            partition,
            queue,
            group,
            after_seq,
            max: max.min(DEAD_LETTER_PAGE_MAX),
            bytes_max: DEAD_LETTER_PAGE_BYTES_MAX,
        })
        .await
    }

    async fn end_transaction(
        &self,
        queue: QueueId,
        partition: u16,
        message: MessageId,
        commit: bool,
    ) -> Result<(), NodeError> {
        let partition = u32::from(partition);
        if partition >= self.config.partition_count {
            return Err(EngineError::NotScheduled.into());
        }
        self.call(requests::EndTransaction {
            partition,
            queue,
            message,
            commit,
        })
        .await
    }

    async fn take_transaction_checks(
        &self,
        partition: u32,
        queues: Vec<QueueId>,
        max: u32,
    ) -> Result<Vec<HalfMessage>, NodeError> {
        if partition >= self.config.partition_count {
            return Ok(Vec::new());
        }
        if queues.len() > TRANSACTION_CHECK_QUEUES_MAX {
            return Err(NodeError::Engine(EngineError::BatchTooLarge {
                count: u32::try_from(queues.len()).unwrap_or(u32::MAX),
                limit: TRANSACTION_CHECK_QUEUES_MAX as u32,
            }));
        }
        self.call(requests::TakeTransactionChecks {
            partition,
            queues,
            max: max.min(TRANSACTION_CHECKS_TAKEN_MAX),
        })
        .await
    }

    async fn receive(
        &self,
        queue: QueueId,
        group: GroupId,
        lane: Lane,
        request: ReceiveRequest,
        wait_ms: u64,
    ) -> Result<Vec<Routed<Delivery>>, NodeError> {
        let deadline = self
            .now_ms()
            .saturating_add(wait_ms.min(self.config.wait_ms_max));
        // Bounded by the deadline: every pass but the last waits for a change or for
        // time, which moves on (a clock that stood still would end at the round limit).
        for _ in 0..LONG_POLL_ROUNDS_MAX {
            let (deliveries, seen) = self.receive_pass(queue, group, lane, &request).await?;
            let now = self.now_ms();
            if !deliveries.is_empty() || now >= deadline || self.host.stopping() {
                return Ok(deliveries);
            }
            let wait = if bugs::enabled(Bug::LongPollNeverWakes) {
                deadline - now
            } else {
                (deadline - now).min(LONG_POLL_WAKE_MS_MAX)
            };
            self.wait_any_change(&seen, wait).await;
        }
        Ok(Vec::new())
    }

    fn partition_count(&self) -> u32 {
        self.config.partition_count
    }

    async fn change_visibility(
        &self,
        handle: Routed<ReceiptHandle>,
        visibility_ms: u64,
    ) -> Result<Result<(), HandleError>, NodeError> {
        let partition = u32::from(handle.partition);
        if partition >= self.config.partition_count {
            return Ok(Err(HandleError::Unknown));
        }
        self.call(requests::ChangeVisibility {
            partition,
            handle: handle.item,
            visibility_ms,
        })
        .await
    }

    async fn purge_queue(&self, queue: QueueId) -> Result<(), NodeError> {
        self.on_each_partition(queue, |partition| requests::Purge { partition, queue })
            .await
    }

    async fn start_move(
        &self,
        (queue, group): (QueueId, GroupId),
        to: QueueId,
        per_second: u32,
    ) -> Result<(), NodeError> {
        self.on_each_partition(queue, |partition| requests::StartMove {
            partition,
            queue,
            group,
            to,
            per_second,
        })
        .await
    }

    fn queue_history(&self, queue: QueueId) -> Vec<crate::monitor::Sample> {
        self.directories.monitor.history(queue)
    }

    fn queue_alarms(
        &self,
        queue: QueueId,
    ) -> (
        Vec<crate::alarms::AlarmState>,
        Vec<crate::alarms::AlarmState>,
    ) {
        self.directories.monitor.alarms.of(queue)
    }

    async fn redrive(&self, queue: QueueId, group: GroupId) -> Result<(), NodeError> {
        self.on_each_partition(queue, |partition| requests::Redrive {
            partition,
            queue,
            group,
        })
        .await
    }

    async fn stop_move(&self, queue: QueueId, group: GroupId) -> Result<(), NodeError> {
        self.on_each_partition(queue, |partition| requests::StopMove {
            partition,
            queue,
            group,
        })
        .await
    }

    async fn send_to(
        &self,
        queue: QueueId,
        partition: u32,
        messages: Vec<SendInput>,
        producer: Option<ProducerBatch>,
    ) -> Result<SendToReply, NodeError> {
        let partitions = if bugs::enabled(Bug::TopicPartitionsIgnored) {
            self.config.partition_count
        } else {
            self.queue_partitions(queue)
        };
        if partition >= partitions {
            return Err(NodeError::Engine(EngineError::QueueNotFound));
        }
        if messages.is_empty() {
            return Err(NodeError::Engine(EngineError::EmptyBatch));
        }
        self.call(requests::SendTo {
            partition,
            queue,
            messages,
            producer,
        })
        .await
    }

    async fn read_positions(
        &self,
        reads: Vec<PositionRead>,
        bytes_max: u64,
        min_bytes: u64,
        wait_ms: u64,
    ) -> Result<Vec<Result<ReadAt, NodeError>>, NodeError> {
        let deadline = self
            .now_ms()
            .saturating_add(wait_ms.min(self.config.wait_ms_max));
        let mut answers = Vec::new();
        // Bounded by the deadline, as `receive` is.
        for _ in 0..LONG_POLL_ROUNDS_MAX {
            answers.clear();
            let mut seen = Vec::with_capacity(reads.len());
            let mut total = 0u64;
            for read in &reads {
                let budget = read.bytes_max.min(bytes_max.saturating_sub(total));
                if read.partition >= self.queue_partitions(read.queue) {
                    answers.push(Err(NodeError::Engine(EngineError::QueueNotFound)));
                    continue;
                }
                if budget == 0 && total > 0 {
                    // The request's budget is spent: answer this one empty.
                    answers.push(Ok(ReadAt::default()));
                    continue;
                }
                let call = requests::ReadPositions {
                    partition: read.partition,
                    queue: read.queue,
                    from: read.from,
                    max_messages: READ_POSITIONS_MESSAGES_MAX,
                    bytes_max: budget.max(1),
                };
                match self.call(call).await {
                    Ok((answer, changes)) => {
                        seen.push((read.partition, changes));
                        total = answer.messages.iter().fold(total, |sum, message| {
                            sum.saturating_add(message.body.len() as u64)
                                .saturating_add(message.attributes.len() as u64)
                        });
                        answers.push(Ok(answer));
                    }
                    Err(error) => answers.push(Err(error)),
                }
            }
            let now = self.now_ms();
            if total >= min_bytes.max(1) || now >= deadline || self.host.stopping() {
                return Ok(answers);
            }
            seen.sort_unstable();
            seen.dedup_by_key(|(partition, _)| *partition);
            self.wait_any_change(&seen, (deadline - now).min(LONG_POLL_WAKE_MS_MAX))
                .await;
        }
        Ok(answers)
    }

    async fn positions(
        &self,
        queue: QueueId,
        partition: u32,
        at_ms: Option<u64>,
    ) -> Result<(u64, u64, Option<u64>), NodeError> {
        if partition >= self.queue_partitions(queue) {
            return Err(NodeError::Engine(EngineError::QueueNotFound));
        }
        self.call(requests::Positions {
            partition,
            queue,
            at_ms,
        })
        .await
    }

    async fn ack(
        &self,
        lane: Lane,
        acks: Vec<(Routed<ReceiptHandle>, AckKind)>,
    ) -> Result<Vec<Result<AckOutcome, HandleError>>, NodeError> {
        let mut results: Vec<Result<AckOutcome, HandleError>> = Vec::with_capacity(acks.len());
        // Runs of consecutive acks on one partition, in request order; the first invalid
        // handle (a partition the node lacks, the other lane, or one the engine refuses)
        // stops the rest.
        for (partition, start, end) in routing::runs(&acks, |(handle, _)| handle.partition) {
            let partition = u32::from(partition);
            if partition >= self.config.partition_count {
                results.push(Err(HandleError::Unknown));
                break;
            }
            let run = &acks[start..end];
            let valid = run
                .iter()
                .position(|(handle, _)| !lane.holds(&handle.item))
                .unwrap_or(run.len());
            if !self.ack_run(partition, &run[..valid], &mut results).await? {
                break;
            }
            if valid < run.len() {
                results.push(Err(HandleError::Unknown));
                break;
            }
        }
        results.resize(acks.len(), Err(HandleError::Stale));
        Ok(results)
    }

    async fn join_group(
        &self,
        tenant: &str,
        group: &str,
        join: Join,
    ) -> Result<Result<Joined, GroupError>, NodeError> {
        let key = group_key(tenant, group);
        let partition = group_partition(&key, self.config.partition_count);
        self.call(requests::KafkaJoinGroup {
            partition,
            key,
            join,
        })
        .await
    }

    async fn sync_group(
        &self,
        tenant: &str,
        group: &str,
        member_id: &str,
        generation: i32,
        assignments: Vec<(String, Vec<u8>)>,
    ) -> Result<Result<Vec<u8>, GroupError>, NodeError> {
        let key = group_key(tenant, group);
        let partition = group_partition(&key, self.config.partition_count);
        self.call(requests::KafkaSyncGroup {
            partition,
            key,
            member_id: member_id.to_string(),
            generation,
            assignments,
        })
        .await
    }

    async fn heartbeat_group(
        &self,
        tenant: &str,
        group: &str,
        member_id: &str,
        generation: i32,
    ) -> Result<Result<(), GroupError>, NodeError> {
        let key = group_key(tenant, group);
        let partition = group_partition(&key, self.config.partition_count);
        self.call(requests::KafkaHeartbeat {
            partition,
            key,
            member_id: member_id.to_string(),
            generation,
        })
        .await
    }

    async fn leave_group(
        &self,
        tenant: &str,
        group: &str,
        members: Vec<String>,
    ) -> Result<Vec<Result<(), GroupError>>, NodeError> {
        let key = group_key(tenant, group);
        let partition = group_partition(&key, self.config.partition_count);
        self.call(requests::KafkaLeaveGroup {
            partition,
            key,
            members,
        })
        .await
    }

    async fn commit_group_offsets(
        &self,
        tenant: &str,
        group: &str,
        member_id: &str,
        generation: i32,
        offsets: Vec<CommittedOffset>,
    ) -> Result<Result<(), GroupError>, NodeError> {
        let key = group_key(tenant, group);
        let partition = group_partition(&key, self.config.partition_count);
        self.call(requests::KafkaCommitOffsets {
            partition,
            key,
            member_id: member_id.to_string(),
            generation,
            offsets,
        })
        .await
    }

    async fn group_offsets(
        &self,
        tenant: &str,
        group: &str,
    ) -> Result<Vec<CommittedOffset>, NodeError> {
        let key = group_key(tenant, group);
        let partition = group_partition(&key, self.config.partition_count);
        self.call(requests::KafkaFetchOffsets { partition, key })
            .await
    }

    async fn describe_group(&self, tenant: &str, group: &str) -> Result<GroupView, NodeError> {
        let key = group_key(tenant, group);
        let partition = group_partition(&key, self.config.partition_count);
        self.call(requests::KafkaDescribeGroup { partition, key })
            .await
    }

    async fn list_groups(&self, tenant: &str) -> Result<Vec<(String, String, String)>, NodeError> {
        let prefix = group_key(tenant, "");
        let mut listed = Vec::new();
        for partition in 0..self.config.partition_count {
            let call = requests::KafkaListGroups {
                partition,
                prefix: prefix.clone(),
            };
            for (key, protocol_type, state) in self.call(call).await? {
                let group = key[prefix.len()..].to_string();
                listed.push((group, protocol_type, state));
            }
        }
        listed.sort();
        Ok(listed)
    }

    async fn cluster_membership(&self) -> Vec<Result<PartitionMembership, NodeError>> {
        self.membership_views().await
    }

    async fn change_cluster(
        &self,
        change: ClusterChange,
    ) -> Result<Vec<PartitionMembership>, NodeError> {
        self.run_cluster_change(change).await
    }

    async fn local_membership(&self) -> Vec<Result<PartitionMembership, NodeError>> {
        self.local_membership_views().await
    }

    async fn create_tenant(
        &self,
        name: &str,
        password: Option<&str>,
    ) -> Result<Tenant, TenantError> {
        let call = requests::MetaCreateTenant {
            name: name.to_string(),
            password: password.map(str::to_string),
        };
        self.call(call).await.map_err(TenantError::Node)?
    }

    async fn delete_tenant(&self, project_id: &str) -> Result<(), TenantError> {
        let call = requests::MetaDeleteTenant {
            project_id: project_id.to_string(),
        };
        self.call(call).await.map_err(TenantError::Node)?
    }

    async fn set_tenant_quotas(
        &self,
        project_id: &str,
        quotas: Quotas,
    ) -> Result<Tenant, TenantError> {
        let call = requests::MetaSetQuotas {
            project_id: project_id.to_string(),
            quotas,
        };
        self.call(call).await.map_err(TenantError::Node)?
    }
}

/// Messages one read of [`Node::read_positions`] answers at most, however small they are.
const READ_POSITIONS_MESSAGES_MAX: u32 = 10_000;

/// Long-poll rounds are bounded: each round waits for a change or for time, and the
/// deadline ends the poll, so this only guards against a clock that never advances.
const LONG_POLL_ROUNDS_MAX: u32 = 100_000;
