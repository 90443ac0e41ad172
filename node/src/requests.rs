//! The shard mesh protocol: one request type per call, each with its own reply type.
//!
//! A partition request (e.g. [`SendBatch`]) runs on the shard that owns its partition,
//! against that partition's engine; a metadata request (e.g. [`MetaCreateQueue`]) runs on
//! the metadata shard (shard 0), which applies queue, group and tenant changes one at a
//! time. [`NodeShard::call`] runs a
//! request here when this shard is the target and otherwise forwards it as a
//! [`crate::Job`]; the answer comes back on a channel typed by the request, so no reply
//! is ever matched against the wrong call. On the target shard a request whose partition
//! another node leads (partition 0 for a metadata change) goes to that node once
//! (`crate::forward`): every request is serde data, one variant of
//! [`crate::forward::Call`], its reply one of [`crate::forward::Answer`].

use std::rc::Rc;

use sluice_core::engine::membership::{Membership, MembershipStep};
use sluice_core::engine::read_at::{ReadAt, StoredMessage};
use sluice_core::engine::trace::Trace;
use sluice_core::engine::transactions::HalfMessage;
use sluice_core::engine::types::{
    AckKind, AckOutcome, Delivery, GroupId, GroupStats, HandleError, MessageId, QueueConfig,
    QueueId, ReceiptHandle, SendInput, SendOutcome,
};
use sluice_core::engine::{QueueInfo, ReceiveRequest};

use serde::{Deserialize, Serialize};

use sluice_core::engine::command::CommittedOffset;

use crate::forward::{Answer, Call};
use crate::idempotence::ProducerBatch;
use crate::kafka_groups::{GroupError, GroupView, Join, Joined};
use crate::tenants::{Quotas, Tenant, TenantError};
use crate::{Host, Lane, NodeError, NodeShard, SendToReply};

/// A call to run on one shard. `Send`: it may travel to another shard's thread.
#[allow(async_fn_in_trait)]
pub trait ShardRequest: Send + 'static {
    type Reply: Send + 'static;

    /// The shard that must run it, of `shard_count`.
    fn target(&self, shard_count: usize) -> usize;

    /// The partition whose Raft leader runs it: its own, or 0 for a metadata change.
    fn led_by(&self) -> u32;

    /// Whether it is a metadata change (a node that forwarded one refreshes its
    /// directories from the leader afterwards).
    const META: bool;

    /// As the variant of the forwarded-call enum that carries it.
    fn into_call(self) -> Call;

    /// Its reply out of a forwarded call's answer; `None` for another kind's answer.
    fn from_answer(answer: Answer) -> Option<Self::Reply>;

    /// Runs it on the target shard.
    async fn execute<H: Host>(self, shard: &NodeShard<H>) -> Result<Self::Reply, NodeError>;
}

/// The shard that owns `partition`.
pub fn owner_of(partition: u32, shard_count: usize) -> usize {
    usize::try_from(partition).expect("u32 fits usize") % shard_count
}

/// Defines a request on one partition's engine: its fields, its reply and its body (with
/// `engine`, `now` and the request's fields in scope).
macro_rules! partition_request {
    (
        $(#[$doc:meta])*
        $name:ident { $($field:ident: $ty:ty),* $(,)? } -> $reply:ty,
        |$this:ident, $shard:ident, $engine:ident, $now:ident| $body:expr
    ) => {
        $(#[$doc])*
        #[derive(Debug, Serialize, Deserialize)]
        pub struct $name {
            pub partition: u32,
            $(pub $field: $ty,)*
        }

        impl ShardRequest for $name {
            type Reply = $reply;
            const META: bool = false;

            fn target(&self, shard_count: usize) -> usize {
                owner_of(self.partition, shard_count)
            }

            fn led_by(&self) -> u32 {
                self.partition
            }

            fn into_call(self) -> Call {
                Call::$name(self)
            }

            fn from_answer(answer: Answer) -> Option<$reply> {
                match answer {
                    Answer::$name(reply) => Some(reply),
                    _ => None,
                }
            }

            async fn execute<H: Host>(
                self,
                $shard: &NodeShard<H>,
            ) -> Result<$reply, NodeError> {
                let $this = self;
                let $engine: Rc<sluice_core::engine::Engine<H::Storage>> =
                    $shard.owned_engine($this.partition)?;
                let $now = $shard.host().now_ms();
                let result = $body;
                $shard.checked($this.partition, result)
            }
        }
    };
}

partition_request! {
    /// Every queue the partition holds, with its groups (partition 0's is the queue
    /// directory; a repair reads every partition's), the Raft index it has applied
    /// (`Engine::applied_index`: indexes of one group compare across replicas, so a node
    /// never publishes an older directory over a newer one) and whether it was read at
    /// the partition's serving leader.
    ReadDirectory {} -> (u64, Vec<QueueInfo>, bool),
    |this, shard, engine, now| {
        let _ = (&this, now);
        let infos = engine
            .queue_ids()
            .into_iter()
            .map(|queue| engine.queue_info(queue).expect("listed just now"))
            .collect();
        // Read at the serving leader: nothing committed is missing from it.
        let current = engine.is_serving_leader();
        Ok::<_, sluice_core::engine::types::EngineError>((engine.applied_index(), infos, current))
    }
}

/// What changed in a partition's queue directory after a Raft index
/// ([`ReadDirectoryChanges`]).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct DirectoryChanges {
    /// The Raft index the partition has applied: the changes bring a directory read at
    /// `since` up to it.
    pub applied: u64,
    /// The queues created or changed after `since` (their entries as now), and those
    /// deleted after it; `None` when the partition cannot tell (read the whole
    /// directory).
    pub changes: Option<(Vec<QueueInfo>, Vec<QueueId>)>,
    /// Whether it was read at the partition's serving leader.
    pub current: bool,
}

partition_request! {
    /// The queues whose directory entries changed after Raft index `since`
    /// (`Engine::directory_since`): a directory is brought up to date at the cost of
    /// what changed, not of every queue.
    ReadDirectoryChanges { since: u64 } -> DirectoryChanges,
    |this, shard, engine, now| {
        let _ = now;
        Ok::<_, sluice_core::engine::types::EngineError>(DirectoryChanges {
            applied: engine.applied_index(),
            changes: engine.directory_since(this.since),
            current: engine.is_serving_leader(),
        })
    }
}

/// Partition 0's tenant records, admin secret and change count ([`ReadTenants`]).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct TenantRecords {
    /// `Engine::tenant_changes`: moves whenever the records or the secret change.
    pub changes: u64,
    pub tenants: Vec<(String, Vec<u8>)>,
    pub admin_secret: Option<Vec<u8>>,
}

partition_request! {
    /// The tenants and admin secret the partition (0) holds.
    ReadTenants {} -> TenantRecords,
    |this, shard, engine, now| {
        let _ = (&this, now);
        Ok::<_, sluice_core::engine::types::EngineError>(TenantRecords {
            changes: engine.tenant_changes(),
            tenants: engine.tenants(),
            admin_secret: engine.admin_secret(),
        })
    }
}

partition_request! {
    /// Adds or replaces a tenant's record (`crate::tenants::encode_tenant`).
    PutTenant { name: String, record: Vec<u8> } -> (),
    |this, shard, engine, now| {
        engine.put_tenant(&this.name, this.record, now).await
    }
}

partition_request! {
    /// Removes a tenant's record.
    RemoveTenant { name: String } -> (),
    |this, shard, engine, now| {
        engine.delete_tenant(&this.name, now).await
    }
}

partition_request! {
    /// Proposes the node's admin secret; answers the one partition 0 holds (the first).
    SetAdminSecret { secret: Vec<u8> } -> Vec<u8>,
    |this, shard, engine, now| {
        engine.set_admin_secret(this.secret, now).await
    }
}

partition_request! {
    /// Creates a queue under partition 0's id (`None` on partition 0: the next id).
    CreateQueue {
        id: Option<QueueId>,
        tenant: String,
        name: String,
        config: QueueConfig,
        meta: Vec<u8>,
    } -> QueueId,
    |this, shard, engine, now| {
        engine
            .create_queue_with_id(this.id, &this.tenant, &this.name, this.config, this.meta, now)
            .await
    }
}

partition_request! {
    DeleteQueue { queue: QueueId } -> (),
    |this, shard, engine, now| engine.delete_queue(this.queue, now).await
}

partition_request! {
    /// Replaces a queue's adapter fields on this partition.
    SetQueueMeta { queue: QueueId, meta: Vec<u8> } -> (),
    |this, shard, engine, now| engine.set_queue_meta(this.queue, this.meta, now).await
}

partition_request! {
    /// Sets a queue's dead-letter policy on this partition.
    SetDeadLetter { queue: QueueId, max_consume_count: Option<u16>, target: Option<QueueId> } -> (),
    |this, shard, engine, now| {
        engine
            .set_dead_letter(this.queue, this.max_consume_count, this.target, now)
            .await
    }
}

partition_request! {
    /// Spreads a queue over more partitions on this partition.
    SetPartitions { queue: QueueId, partitions: u16 } -> (),
    |this, shard, engine, now| engine.set_partitions(this.queue, this.partitions, now).await
}

partition_request! {
    /// Creates a group (at the oldest message) under partition 0's id, as `CreateQueue`.
    CreateGroup { id: Option<GroupId>, queue: QueueId, name: String } -> GroupId,
    |this, shard, engine, now| {
        let start = sluice_core::engine::types::GroupStart::Oldest;
        engine
            .create_group_with_id(this.id, this.queue, &this.name, start, now)
            .await
    }
}

partition_request! {
    DeleteGroup { queue: QueueId, group: GroupId } -> (),
    |this, shard, engine, now| engine.delete_group(this.queue, this.group, now).await
}

partition_request! {
    /// Stores a batch as one operation; answers once it is durable.
    SendBatch { queue: QueueId, messages: Vec<SendInput> } -> Vec<SendOutcome>,
    |this, shard, engine, now| engine.send(this.queue, &this.messages, now).await
}

partition_request! {
    /// Stores a batch on this partition (a log-style producer chose it), in engine-sized
    /// calls, checking an idempotent producer's sequence first
    /// (`NodeShard::send_to_partition`).
    SendTo {
        queue: QueueId,
        messages: Vec<SendInput>,
        producer: Option<ProducerBatch>,
    } -> SendToReply,
    |this, shard, engine, now| {
        shard
            .send_to_partition(&engine, this.partition, this.queue, this.messages, this.producer, now)
            .await
    }
}

partition_request! {
    /// Reads the queue by position (`Engine::read_at`); answers with the partition's
    /// change count read before reading (a long poll waits for it to move).
    ReadPositions { queue: QueueId, from: u64, max_messages: u32, bytes_max: u64 } -> (ReadAt, u64),
    |this, shard, engine, now| {
        let _ = now;
        let seen = engine.change_count();
        let max = usize::try_from(this.max_messages).unwrap_or(usize::MAX);
        engine
            .read_at(this.queue, this.from, max, this.bytes_max)
            .await
            .map(|read| (read, seen))
    }
}

partition_request! {
    /// The queue's retained positions here (first, next) and, with `at_ms`, the first
    /// position whose message became available at or after it; read at the serving
    /// leader.
    Positions { queue: QueueId, at_ms: Option<u64> } -> (u64, u64, Option<u64>),
    |this, shard, engine, now| {
        let _ = now;
        engine.positions(this.queue, this.at_ms).await
    }
}

partition_request! {
    /// Cancels a delayed or scheduled message not yet released.
    Cancel { queue: QueueId, message: MessageId } -> (),
    |this, shard, engine, now| engine.cancel(this.queue, this.message, now).await
}

partition_request! {
    /// A message's trace, read from the partition's log at its leader.
    TraceMessage { queue: QueueId, message: MessageId } -> Trace,
    |this, shard, engine, now| {
        let _ = now;
        engine.trace(this.queue, this.message).await
    }
}

partition_request! {
    /// Reads a group's dead letters after a position, without leasing them (an export).
    ReadDeadLetters {
        queue: QueueId,
        group: GroupId,
        after_seq: Option<u64>,
        max: u32,
        bytes_max: u64,
    } -> Vec<StoredMessage>,
    |this, shard, engine, now| {
        let _ = now;
        let max = usize::try_from(this.max).unwrap_or(usize::MAX);
        engine
            .read_dead_letters(this.queue, this.group, this.after_seq, max, this.bytes_max)
            .await
    }
}

partition_request! {
    /// Ends the transaction of a half message: commit (available now) or roll back.
    EndTransaction { queue: QueueId, message: MessageId, commit: bool } -> (),
    |this, shard, engine, now| engine.end_transaction(this.queue, this.message, this.commit, now).await
}

partition_request! {
    /// Takes the leader's waiting checks of open transactions of `queues`, at most `max`,
    /// with their half messages.
    TakeTransactionChecks { queues: Vec<QueueId>, max: u32 } -> Vec<HalfMessage>,
    |this, shard, engine, now| {
        let _ = now;
        let max = usize::try_from(this.max).unwrap_or(usize::MAX);
        engine.take_transaction_checks(Some(&this.queues), max).await
    }
}

partition_request! {
    /// Picks messages for a group's lane; answers them with the partition's change count
    /// read before picking (a long poll waits for it to move).
    Receive {
        queue: QueueId,
        group: GroupId,
        lane: Lane,
        request: ReceiveRequest,
    } -> (Vec<Delivery>, u64),
    |this, shard, engine, now| {
        let seen = engine.change_count();
        let got = match this.lane {
            Lane::Main => engine.receive(this.queue, this.group, &this.request, now).await,
            Lane::DeadLetters => {
                engine
                    .receive_dead(this.queue, this.group, &this.request, now)
                    .await
            }
        };
        got.map(|deliveries| (deliveries, seen))
    }
}

partition_request! {
    /// Acks a run of handles of one lane, in order, stopping at the first invalid one
    /// (later entries answer `Stale`); at most the engine's batch limit.
    Ack { acks: Vec<(ReceiptHandle, AckKind)> } -> Vec<Result<AckOutcome, HandleError>>,
    |this, shard, engine, now| engine.ack(&this.acks, true, now).await
}

partition_request! {
    /// Moves a delivery's visibility deadline to `visibility_ms` from now (0: visible at
    /// once); the inner error names a handle whose delivery is unknown or over.
    ChangeVisibility { handle: ReceiptHandle, visibility_ms: u64 } -> Result<(), HandleError>,
    |this, shard, engine, now| engine.change_visibility(&this.handle, this.visibility_ms, now)
}

partition_request! {
    /// Purges the queue on this partition at its serving leader (`Engine::purge`): its
    /// stored messages and its delayed ones not yet released go.
    Purge { queue: QueueId } -> (),
    |this, shard, engine, now| engine.purge(this.queue, now).await
}

partition_request! {
    /// Moves the group's dead letters on this partition back to its main lane
    /// (`Engine::redrive`).
    Redrive { queue: QueueId, group: GroupId } -> (),
    |this, shard, engine, now| engine.redrive(this.queue, this.group, now).await
}

partition_request! {
    /// Starts (or restarts) the group's move task on this partition at its serving
    /// leader (`Engine::start_move`).
    StartMove { queue: QueueId, group: GroupId, to: QueueId, per_second: u32 } -> (),
    |this, shard, engine, now| {
        engine
            .start_move((this.queue, this.group), this.to, this.per_second, now)
            .await
    }
}

partition_request! {
    /// Stops the group's move task on this partition (`Engine::stop_move`).
    StopMove { queue: QueueId, group: GroupId } -> (),
    |this, shard, engine, now| engine.stop_move(this.queue, this.group, now).await
}

partition_request! {
    /// Answers once the partition changed after `seen`, or after `wait_ms`.
    WaitChange { seen: u64, wait_ms: u64 } -> (),
    |this, shard, engine, now| {
        let _ = now;
        futures_lite::future::or(engine.changed(this.seen), shard.host().sleep_ms(this.wait_ms))
            .await;
        Ok(())
    }
}

partition_request! {
    /// The queue as this partition holds it, and each group's counts here.
    Counts { queue: QueueId } -> (QueueInfo, Vec<(GroupId, GroupStats)>),
    |this, shard, engine, now| {
        let _ = now;
        engine.queue_info(this.queue).and_then(|info| {
            let stats = info
                .groups
                .iter()
                .map(|(group, _)| engine.group_stats(this.queue, *group).map(|s| (*group, s)))
                .collect::<Result<Vec<_>, _>>()?;
            Ok((info, stats))
        })
    }
}

partition_request! {
    /// The partition's Raft configuration as its leader applied it, the leader's id, and
    /// which learners hold everything committed (`Engine::caught_up`).
    ReadMembership {} -> PartitionMembership,
    |this, shard, engine, now| {
        let _ = (&this, now);
        let membership = engine.membership();
        let caught_up = membership
            .learners
            .iter()
            .copied()
            .filter(|id| engine.caught_up(*id))
            .collect();
        Ok::<_, sluice_core::engine::types::EngineError>(PartitionMembership {
            partition: this.partition,
            leader: engine.leader_id(),
            at_leader: engine.is_serving_leader(),
            membership,
            caught_up,
            lag: engine.replica_lag(),
        })
    }
}

partition_request! {
    /// One membership change of the partition's group, at its leader
    /// (`Engine::change_membership`); answers the configuration once applied.
    ChangeMembership { steps: Vec<MembershipStep> } -> Membership,
    |this, shard, engine, now| {
        let _ = now;
        engine.change_membership(&this.steps).await
    }
}

partition_request! {
    /// Hands the partition's lead to node `to` (`Engine::transfer_lead`); answers whether
    /// the handover started.
    TransferLead { to: u64 } -> bool,
    |this, shard, engine, now| {
        let _ = now;
        let started = engine.transfer_lead(this.to);
        engine.drive().await;
        Ok::<_, sluice_core::engine::types::EngineError>(started)
    }
}

partition_request! {
    /// The node this node's replica of the partition takes for its leader, if any: what
    /// a node whose own replica knows none asks its peers before forwarding
    /// (`crate::forward`, "a leader from the peers").
    LeaderHint {} -> Option<u64>,
    |this, shard, engine, now| {
        let _ = (&this, now);
        Ok::<_, sluice_core::engine::types::EngineError>(engine.leader_id())
    }
}

partition_request! {
    /// A Kafka JoinGroup on the group's partition (`crate::kafka_groups`): answers once
    /// the rebalance it joined completed (bounded).
    KafkaJoinGroup { key: String, join: Join } -> Result<Joined, GroupError>,
    |this, shard, engine, now| {
        let _ = now;
        match shard.group_place(&engine, this.partition) {
            Ok(place) => {
                let host = shard.host();
                let clock = || host.now_ms();
                let groups = shard.kafka_groups();
                Ok(groups.join(place, &this.key, this.join, clock, |ms| host.sleep_ms(ms)).await)
            }
            Err(error) => Err(error),
        }
    }
}

partition_request! {
    /// A Kafka SyncGroup: the member's assignment (the leader's hands them out).
    KafkaSyncGroup {
        key: String,
        member_id: String,
        generation: i32,
        assignments: Vec<(String, Vec<u8>)>,
    } -> Result<Vec<u8>, GroupError>,
    |this, shard, engine, now| {
        let _ = now;
        match shard.group_place(&engine, this.partition) {
            Ok(place) => {
                let host = shard.host();
                let clock = || host.now_ms();
                let sleep = |ms| host.sleep_ms(ms);
                let (member, generation) = (&this.member_id, this.generation);
                let groups = shard.kafka_groups();
                Ok(groups
                    .sync(place, &this.key, member, generation, this.assignments, clock, sleep)
                    .await)
            }
            Err(error) => Err(error),
        }
    }
}

partition_request! {
    /// A Kafka Heartbeat.
    KafkaHeartbeat { key: String, member_id: String, generation: i32 } -> Result<(), GroupError>,
    |this, shard, engine, now| {
        shard.group_place(&engine, this.partition).map(|place| {
            shard.kafka_groups().call(place, &this.key, |group| {
                group.heartbeat(&this.member_id, this.generation, now)
            })
        })
    }
}

partition_request! {
    /// A Kafka LeaveGroup of several members: each one's answer.
    KafkaLeaveGroup { key: String, members: Vec<String> } -> Vec<Result<(), GroupError>>,
    |this, shard, engine, now| {
        shard.group_place(&engine, this.partition).map(|place| {
            this.members
                .iter()
                .map(|member| {
                    shard
                        .kafka_groups()
                        .call(place, &this.key, |group| group.leave(member, now))
                })
                .collect()
        })
    }
}

partition_request! {
    /// A Kafka OffsetCommit: with a generation (>= 0), only by a member of it while no
    /// rebalance is under way; then the offsets are committed durably
    /// (`Engine::commit_offsets`) before the answer.
    KafkaCommitOffsets {
        key: String,
        member_id: String,
        generation: i32,
        offsets: Vec<CommittedOffset>,
    } -> Result<(), GroupError>,
    |this, shard, engine, now| {
        let checked = shard.group_place(&engine, this.partition).map(|place| {
            if this.generation < 0 {
                return Ok(());
            }
            shard.kafka_groups().call(place, &this.key, |group| {
                group.check_commit(&this.member_id, this.generation, now)
            })
        });
        match checked {
            Ok(Ok(())) => engine.commit_offsets(&this.key, this.offsets, now).await.map(Ok),
            Ok(Err(refused)) => Ok(Err(refused)),
            Err(error) => Err(error),
        }
    }
}

partition_request! {
    /// A group's committed offsets, read at the serving leader.
    KafkaFetchOffsets { key: String } -> Vec<CommittedOffset>,
    |this, shard, engine, now| {
        let _ = now;
        engine.committed_offsets(&this.key).await
    }
}

partition_request! {
    /// A group's members as DescribeGroups shows them.
    KafkaDescribeGroup { key: String } -> GroupView,
    |this, shard, engine, now| {
        shard
            .group_place(&engine, this.partition)
            .map(|place| shard.kafka_groups().describe(place, &this.key, now))
    }
}

partition_request! {
    /// The partition's groups whose key starts with `prefix` (key, protocol type,
    /// state).
    KafkaListGroups { prefix: String } -> Vec<(String, String, String)>,
    |this, shard, engine, now| {
        let _ = now;
        shard
            .group_place(&engine, this.partition)
            .map(|place| shard.kafka_groups().list(place, &this.prefix))
    }
}

/// A partition's replicas as [`ReadMembership`] reads them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionMembership {
    pub partition: u32,
    /// The replica that answered believes this node leads.
    pub leader: Option<u64>,
    /// Whether the answer came from the serving leader (a follower's view may trail).
    pub at_leader: bool,
    pub membership: Membership,
    /// The learners that hold everything committed (may be promoted).
    pub caught_up: Vec<u64>,
    /// At the leader: each replica and the log entries it lacks (`Engine::replica_lag`).
    pub lag: Vec<(u64, u64)>,
}

/// Defines a metadata change, run by shard 0 one at a time: its fields, its reply and
/// the [`NodeShard`] method that applies it.
macro_rules! meta_request {
    (
        $(#[$doc:meta])*
        $name:ident { $($field:ident: $ty:ty),* $(,)? } -> $reply:ty,
        $method:ident
    ) => {
        $(#[$doc])*
        #[derive(Debug, Serialize, Deserialize)]
        pub struct $name {
            $(pub $field: $ty,)*
        }

        impl ShardRequest for $name {
            type Reply = $reply;
            const META: bool = true;

            fn target(&self, _shard_count: usize) -> usize {
                0
            }

            fn led_by(&self) -> u32 {
                0
            }

            fn into_call(self) -> Call {
                Call::$name(self)
            }

            fn from_answer(answer: Answer) -> Option<$reply> {
                match answer {
                    Answer::$name(reply) => Some(reply),
                    _ => None,
                }
            }

            async fn execute<H: Host>(self, shard: &NodeShard<H>) -> Result<$reply, NodeError> {
                shard.$method(self).await
            }
        }
    };
}

meta_request! {
    MetaCreateQueue { tenant: String, name: String, config: QueueConfig, meta: Vec<u8> } -> QueueId,
    apply_create_queue
}

meta_request! {
    MetaDeleteQueue { queue: QueueId } -> (),
    apply_delete_queue
}

meta_request! {
    /// Replaces the queue's adapter fields if they are still `expected`.
    MetaSetQueueMeta { queue: QueueId, expected: Vec<u8>, meta: Vec<u8> } -> (),
    apply_set_queue_meta
}

meta_request! {
    /// Sets the queue's dead-letter policy on every partition.
    MetaSetDeadLetter { queue: QueueId, max_consume_count: Option<u16>, target: Option<QueueId> } -> (),
    apply_set_dead_letter
}

meta_request! {
    /// Spreads the queue over more partitions on every partition.
    MetaSetPartitions { queue: QueueId, partitions: u16 } -> (),
    apply_set_partitions
}

meta_request! {
    /// All the groups or none.
    MetaCreateGroups { queue: QueueId, names: Vec<String> } -> Vec<GroupId>,
    apply_create_groups
}

meta_request! {
    MetaDeleteGroup { queue: QueueId, group: GroupId } -> (),
    apply_delete_group
}

meta_request! {
    MetaCreateTenant { name: String, password: Option<String> } -> Result<Tenant, TenantError>,
    apply_create_tenant
}

meta_request! {
    /// Deletes the tenant's queues, then the tenant.
    MetaDeleteTenant { project_id: String } -> Result<(), TenantError>,
    apply_delete_tenant
}

meta_request! {
    MetaSetQuotas { project_id: String, quotas: Quotas } -> Result<Tenant, TenantError>,
    apply_set_quotas
}
