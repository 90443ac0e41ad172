//! The shards as the HTTP adapter's [`Node`]: each call is routed to the partitions that
//! own the data, here or on another shard, and metadata changes go to shard 0.
//!
//! Routing: a NORMAL queue's send goes to a partition this shard owns when it owns any
//! (no hop), rotating among them, unless it carries a dedup id; those, and FIFO sends,
//! follow the kernel's rule (`partition_for_send`). A receive visits this shard's partitions first, then the
//! others, until it has enough. A long poll that found nothing waits for a change on any
//! partition (a `WaitChange` call on each) or its deadline, then tries again.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use sluice_core::engine::partitioned::{partition_for_send, Routed};
use sluice_core::engine::types::{
    AckKind, AckOutcome, Delivery, EngineError, FifoScope, GroupId, GroupStart, HandleError,
    MessageId, QueueConfig, QueueId, QueueMode, ReceiptHandle, SendInput, SendOutcome,
};
use sluice_core::engine::ReceiveRequest;
use sluice_node::{Lane, Node, NodeError, QueueCounts, QueueView};
use sluice_node::tenants::{Tenant, TenantDirectory, TenantError};

use crate::calls::{MetaCall, MetaError, MetaReply, PartitionCall, PartitionReply};
use crate::shard::Shard;

/// Upper bound of one long poll, whatever the adapter asks (DMS allows 60 s).
const WAIT_MS_MAX: u64 = 120_000;

#[derive(Clone)]
pub struct ShardNode(pub Rc<Shard>);

fn meta_node_error(error: MetaError) -> NodeError {
    match error {
        MetaError::Node(error) => error,
        MetaError::Tenant(TenantError::NotFound) => NodeError::Engine(EngineError::QueueNotFound),
        MetaError::Tenant(_) => NodeError::Unavailable("tenant directory"),
    }
}

impl ShardNode {
    fn shard(&self) -> &Rc<Shard> {
        &self.0
    }

    /// The partitions a receive visits: this shard's first (rotating), then the rest.
    fn receive_order(&self) -> Vec<u32> {
        let shard = self.shard();
        let count = shard.partition_count();
        let rotation = shard.next_rotation();
        let mut order: Vec<u32> = (0..count)
            .map(|step| {
                u32::try_from((rotation + u64::from(step)) % u64::from(count)).expect("below count")
            })
            .collect();
        order.sort_by_key(|p| !shard.owns(*p));
        order
    }

    fn send_partition(&self, mode: QueueMode, message: &SendInput, rotation: u64) -> u32 {
        let shard = self.shard();
        let count = shard.partition_count();
        match mode {
            // A dedup id decides the partition (so a retry meets its original).
            QueueMode::Normal if message.dedup_id.is_some() => {
                let count = u16::try_from(count).expect("at most 1024 partitions");
                u32::from(partition_for_send(mode, count, message, rotation))
            }
            QueueMode::Normal => {
                let local = shard.local_partitions();
                if local.is_empty() {
                    u32::try_from(rotation % u64::from(count)).expect("below count")
                } else {
                    local[usize::try_from(rotation % local.len() as u64).expect("small")]
                }
            }
            QueueMode::Fifo(FifoScope::Queue) | QueueMode::Fifo(FifoScope::MessageGroup) => {
                let count = u16::try_from(count).expect("at most 1024 partitions");
                u32::from(partition_for_send(mode, count, message, rotation))
            }
        }
    }

    /// One pass over the partitions; returns deliveries and each partition's change count.
    async fn receive_pass(
        &self,
        queue: QueueId,
        group: GroupId,
        lane: Lane,
        request: &ReceiveRequest,
    ) -> Result<(Vec<Routed<Delivery>>, Vec<(u32, u64)>), NodeError> {
        let mut deliveries = Vec::new();
        let mut seen = Vec::new();
        for partition in self.receive_order() {
            let wanted = request.max_messages - u32::try_from(deliveries.len()).expect("bounded");
            if wanted == 0 {
                break;
            }
            let call = PartitionCall::Receive {
                queue,
                group,
                lane,
                request: ReceiveRequest {
                    max_messages: wanted,
                    ..request.clone()
                },
            };
            match self.shard().call_partition(partition, call).await? {
                PartitionReply::Received(got, change_count) => {
                    seen.push((partition, change_count));
                    let partition = u16::try_from(partition).expect("at most 1024 partitions");
                    deliveries.extend(got.into_iter().map(|item| Routed { partition, item }));
                }
                other => unreachable!("Receive answered {other:?}"),
            }
        }
        Ok((deliveries, seen))
    }

    /// Waits until one of the partitions changed after what `seen` recorded, or `wait_ms`.
    async fn wait_any_change(&self, seen: &[(u32, u64)], wait_ms: u64) {
        let waits: Vec<std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>> = seen
            .iter()
            .map(|(partition, seen)| {
                let shard = self.shard().clone();
                let (partition, seen) = (*partition, *seen);
                Box::pin(async move {
                    let call = PartitionCall::WaitChange { seen, wait_ms };
                    // An error ends this wait early; the caller then tries again.
                    let _ = shard.call_partition(partition, call).await;
                }) as std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>
            })
            .collect();
        let mut waits = waits;
        let any = std::future::poll_fn(|cx| {
            for wait in waits.iter_mut() {
                if wait.as_mut().poll(cx).is_ready() {
                    return std::task::Poll::Ready(());
                }
            }
            std::task::Poll::Pending
        });
        let timer = async {
            glommio::timer::sleep(Duration::from_millis(wait_ms)).await;
        };
        futures_lite::future::or(any, timer).await;
    }
}

impl Node for ShardNode {
    fn now_ms(&self) -> u64 {
        self.shard().now_ms()
    }

    fn wall_ms(&self) -> u64 {
        crate::shared::wall_ms()
    }

    fn tenants(&self) -> Arc<TenantDirectory> {
        self.shard().shared.tenants.load_full()
    }

    fn queues_of(&self, tenant: &str) -> Vec<QueueView> {
        self.shard().shared.directory.load().queues_of(tenant)
    }

    fn queue(&self, tenant: &str, queue: QueueId) -> Option<QueueView> {
        let directory = self.shard().shared.directory.load();
        directory
            .queues
            .get(&queue)
            .filter(|view| view.tenant == tenant)
            .cloned()
    }

    async fn create_queue(
        &self,
        tenant: &str,
        name: &str,
        config: QueueConfig,
        meta: Vec<u8>,
    ) -> Result<QueueId, NodeError> {
        let call = MetaCall::CreateQueue {
            tenant: tenant.to_string(),
            name: name.to_string(),
            config,
            meta,
        };
        match self
            .shard()
            .call_meta(call)
            .await
            .map_err(meta_node_error)?
        {
            MetaReply::Queue(queue) => Ok(queue),
            other => unreachable!("CreateQueue answered {other:?}"),
        }
    }

    async fn delete_queue(&self, queue: QueueId) -> Result<(), NodeError> {
        self.shard()
            .call_meta(MetaCall::DeleteQueue { queue })
            .await
            .map_err(meta_node_error)
            .map(|_| ())
    }

    async fn create_groups(
        &self,
        queue: QueueId,
        names: &[String],
    ) -> Result<Vec<GroupId>, NodeError> {
        let call = MetaCall::CreateGroups {
            queue,
            names: names.to_vec(),
            start: GroupStart::Oldest,
        };
        match self
            .shard()
            .call_meta(call)
            .await
            .map_err(meta_node_error)?
        {
            MetaReply::Groups(groups) => Ok(groups),
            other => unreachable!("CreateGroups answered {other:?}"),
        }
    }

    async fn delete_group(&self, queue: QueueId, group: GroupId) -> Result<(), NodeError> {
        self.shard()
            .call_meta(MetaCall::DeleteGroup { queue, group })
            .await
            .map_err(meta_node_error)
            .map(|_| ())
    }

    async fn queue_counts(&self, queue: QueueId) -> Result<QueueCounts, NodeError> {
        let mut counts = QueueCounts::default();
        for reply in self.shard().queue_counts(queue).await? {
            let PartitionReply::Counts(info, stats) = reply else {
                unreachable!("Counts answered {reply:?}");
            };
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
        if messages.is_empty() {
            return Err(EngineError::EmptyBatch.into());
        }
        let mode = self
            .shard()
            .shared
            .directory
            .load()
            .queues
            .get(&queue)
            .map(|view| view.config.mode)
            .ok_or(EngineError::QueueNotFound)?;
        let rotation = self.shard().next_rotation();
        // Group by partition, keeping each partition's messages in request order.
        let mut batches: Vec<(u32, Vec<usize>)> = Vec::new();
        for (index, message) in messages.iter().enumerate() {
            let partition = self.send_partition(mode, message, rotation);
            match batches.iter_mut().find(|(p, _)| *p == partition) {
                Some((_, indexes)) => indexes.push(index),
                None => batches.push((partition, vec![index])),
            }
        }
        let mut outcomes: Vec<Option<Routed<SendOutcome>>> = vec![None; messages.len()];
        for (partition, indexes) in batches {
            let batch = indexes.iter().map(|i| messages[*i].clone()).collect();
            let call = PartitionCall::Send {
                queue,
                messages: batch,
            };
            let sent = match self.shard().call_partition(partition, call).await? {
                PartitionReply::Sent(sent) => sent,
                other => unreachable!("Send answered {other:?}"),
            };
            let partition = u16::try_from(partition).expect("at most 1024 partitions");
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
        if partition >= self.shard().partition_count() {
            return Err(EngineError::NotScheduled.into());
        }
        let call = PartitionCall::Cancel { queue, message };
        match self.shard().call_partition(partition, call).await? {
            PartitionReply::Done => Ok(()),
            other => unreachable!("Cancel answered {other:?}"),
        }
    }

    async fn receive(
        &self,
        queue: QueueId,
        group: GroupId,
        lane: Lane,
        request: ReceiveRequest,
        wait_ms: u64,
    ) -> Result<Vec<Routed<Delivery>>, NodeError> {
        let deadline = self.now_ms() + wait_ms.min(WAIT_MS_MAX);
        // Bounded by the deadline: every pass but the last waits for a change or time.
        loop {
            let (deliveries, seen) = self.receive_pass(queue, group, lane, &request).await?;
            let now = self.now_ms();
            if !deliveries.is_empty() || now >= deadline || self.shard().shared.stopping() {
                return Ok(deliveries);
            }
            // Wake at least once a second to notice a shutdown.
            self.wait_any_change(&seen, (deadline - now).min(1_000))
                .await;
        }
    }

    async fn ack(
        &self,
        lane: Lane,
        acks: Vec<(Routed<ReceiptHandle>, AckKind)>,
    ) -> Result<Vec<Result<AckOutcome, HandleError>>, NodeError> {
        let count = self.shard().partition_count();
        let mut results: Vec<Result<AckOutcome, HandleError>> = Vec::with_capacity(acks.len());
        let mut stopped = false;
        let mut start = 0;
        // Runs of consecutive acks on one partition, in request order; the first invalid
        // handle stops the rest (DMS semantics).
        while start < acks.len() {
            let partition = acks[start].0.partition;
            let end = (start..acks.len())
                .find(|i| acks[*i].0.partition != partition)
                .unwrap_or(acks.len());
            if stopped || u32::from(partition) >= count {
                results.extend((start..end).map(|_| {
                    Err(if stopped {
                        HandleError::Stale
                    } else {
                        HandleError::Unknown
                    })
                }));
                stopped = true;
                start = end;
                continue;
            }
            let run = acks[start..end]
                .iter()
                .map(|(h, kind)| (h.item, *kind))
                .collect();
            let call = PartitionCall::Ack { lane, acks: run };
            let done = match self
                .shard()
                .call_partition(u32::from(partition), call)
                .await?
            {
                PartitionReply::Acked(done) => done,
                other => unreachable!("Ack answered {other:?}"),
            };
            stopped = done.iter().any(|r| r.is_err());
            results.extend(done);
            start = end;
        }
        Ok(results)
    }

    async fn create_tenant(
        &self,
        name: &str,
        password: Option<&str>,
    ) -> Result<Tenant, TenantError> {
        let call = MetaCall::CreateTenant {
            name: name.to_string(),
            password: password.map(str::to_string),
        };
        match self.shard().call_meta(call).await {
            Ok(MetaReply::Tenant(tenant)) => Ok(*tenant),
            Ok(other) => unreachable!("CreateTenant answered {other:?}"),
            Err(MetaError::Tenant(error)) => Err(error),
            Err(MetaError::Node(error)) => Err(TenantError::Storage(format!("{error:?}"))),
        }
    }

    async fn set_tenant_quotas(
        &self,
        project_id: &str,
        quotas: sluice_node::tenants::Quotas,
    ) -> Result<Tenant, TenantError> {
        let call = MetaCall::SetQuotas {
            project_id: project_id.to_string(),
            quotas,
        };
        match self.shard().call_meta(call).await {
            Ok(MetaReply::Tenant(tenant)) => Ok(*tenant),
            Ok(other) => unreachable!("SetQuotas answered {other:?}"),
            Err(MetaError::Tenant(error)) => Err(error),
            Err(MetaError::Node(error)) => Err(TenantError::Storage(format!("{error:?}"))),
        }
    }

    async fn delete_tenant(&self, project_id: &str) -> Result<(), TenantError> {
        let call = MetaCall::DeleteTenant {
            project_id: project_id.to_string(),
        };
        match self.shard().call_meta(call).await {
            Ok(_) => Ok(()),
            Err(MetaError::Tenant(error)) => Err(error),
            Err(MetaError::Node(error)) => Err(TenantError::Storage(format!("{error:?}"))),
        }
    }
}
