//! `LocalNode`: the reference [`Node`], every partition's engine held in one place.
//!
//! Tests and the madsim simulation run the HTTP adapter against it; the glommio server
//! has its own node that forwards calls across shards. It owns the routing over
//! [`Partitioned`], per-tenant quotas, the in-order DMS ack rule across partitions, long
//! polls (raced against a [`Clock`]'s sleep) and an in-memory tenant directory. It must
//! not read a wall clock or a global RNG: time comes from the clock, credentials from a
//! PRNG seeded at construction, so a simulation seed replays exactly.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64;
use sluice_core::engine::partitioned::{receive_order, Partitioned, Routed};
use sluice_core::engine::types::{
    AckKind, AckOutcome, Delivery, EngineError, GroupId, GroupStart, GroupStats, HandleError,
    MessageId, QueueConfig, QueueId, ReceiptHandle, SendInput, SendOutcome,
};
use sluice_core::engine::{Engine, ReceiveRequest};
use sluice_core::storage::Storage;

use super::{Lane, Node, NodeError, QueueCounts, QueueView};
use crate::tenants::{valid_tenant_name, Quotas, Tenant, TenantDirectory, TenantError};

/// Time as the node sees it: the wall clock in production, simulated time under madsim,
/// a hand-advanced counter in tests.
#[allow(async_fn_in_trait)]
pub trait Clock {
    /// Queue time, epoch milliseconds (see [`super::Node::now_ms`]).
    fn now_ms(&self) -> u64;
    /// The wall clock, epoch milliseconds (see [`super::Node::wall_ms`]).
    fn wall_ms(&self) -> u64 {
        self.now_ms()
    }
    /// Resolves once `ms` milliseconds of this clock's time have passed.
    async fn sleep_ms(&self, ms: u64);
}

/// Long-poll rounds are bounded: each round waits for a change or the deadline, and the
/// deadline ends the poll, so this only guards against a clock that never advances.
const LONG_POLL_ROUNDS_MAX: u32 = 100_000;

/// Project ids: 32 lower-case hex digits; access keys: 20 upper-case letters and digits;
/// secret keys: 40 letters and digits (tenants.rs).
const PROJECT_ID_CHARS: &[u8] = b"0123456789abcdef";
const AK_CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
const SK_CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

pub struct LocalNode<S: Storage + Clone, C: Clock> {
    partitions: Partitioned<S>,
    partition_count: u16,
    clock: C,
    tenants: RefCell<Arc<TenantDirectory>>,
    rng: RefCell<Pcg64>,
    /// Queue creates in progress per tenant, counted against the quota.
    creating: RefCell<HashMap<String, u32>>,
    dead_rotation: Cell<u64>,
}

impl<S: Storage + Clone, C: Clock> LocalNode<S, C> {
    /// A node over opened engines, one per partition (all created through this node, so
    /// queue and group ids agree across them).
    pub fn new(engines: Vec<Engine<S>>, clock: C, seed: u64) -> LocalNode<S, C> {
        let partition_count = u16::try_from(engines.len()).expect("at most u16::MAX partitions");
        LocalNode {
            partitions: Partitioned::new(engines),
            partition_count,
            clock,
            tenants: RefCell::new(Arc::new(TenantDirectory::default())),
            rng: RefCell::new(Pcg64::seed_from_u64(seed)),
            creating: RefCell::new(HashMap::new()),
            dead_rotation: Cell::new(0),
        }
    }

    pub fn clock(&self) -> &C {
        &self.clock
    }

    pub fn partitions(&self) -> &Partitioned<S> {
        &self.partitions
    }

    pub fn partition_count(&self) -> u16 {
        self.partition_count
    }

    /// Advances every partition's time-driven work (visibility expiry, delayed releases,
    /// retention, snapshots). The driver calls it periodically.
    pub async fn tick(&self, now_ms: u64) -> Result<(), EngineError> {
        self.partitions.tick(now_ms).await
    }

    /// Replaces a tenant's quotas (tests and the admin surface).
    pub fn set_quotas(&self, project_id: &str, quotas: Quotas) -> Result<(), TenantError> {
        let directory = self.tenants.borrow().clone();
        let mut tenants = directory.all().to_vec();
        let tenant = tenants
            .iter_mut()
            .find(|t| t.project_id == project_id)
            .ok_or(TenantError::NotFound)?;
        tenant.quotas = quotas;
        *self.tenants.borrow_mut() = Arc::new(TenantDirectory::new(tenants));
        Ok(())
    }

    fn quotas_of(&self, tenant: &str) -> Quotas {
        self.tenants
            .borrow()
            .by_project(tenant)
            .map_or(Quotas::dms_default(), |t| t.quotas)
    }

    fn view(&self, queue: QueueId) -> Option<QueueView> {
        let info = self.partitions.partition(0).queue_info(queue).ok()?;
        Some(QueueView::from(info))
    }

    fn random_string(&self, alphabet: &[u8], length: usize) -> String {
        let mut rng = self.rng.borrow_mut();
        (0..length)
            .map(|_| char::from(alphabet[rng.gen_range(0..alphabet.len())]))
            .collect()
    }

    /// Receives once from every partition of the lane, up to the request's count.
    async fn receive_once(
        &self,
        queue: QueueId,
        group: GroupId,
        lane: Lane,
        request: &ReceiveRequest,
    ) -> Result<Vec<Routed<Delivery>>, EngineError> {
        let now = self.clock.now_ms();
        match lane {
            Lane::Main => self.partitions.receive(queue, group, request, now).await,
            Lane::DeadLetters => {
                let rotation = self.dead_rotation.get();
                self.dead_rotation.set(rotation.wrapping_add(1));
                let mut deliveries = Vec::new();
                for partition in receive_order(self.partition_count, rotation) {
                    let taken = u32::try_from(deliveries.len()).expect("bounded by the request");
                    let wanted = request.max_messages - taken;
                    if wanted == 0 {
                        break;
                    }
                    let request = ReceiveRequest {
                        max_messages: wanted,
                        ..request.clone()
                    };
                    let engine = self.partitions.partition(partition);
                    let got = engine.receive_dead(queue, group, &request, now).await?;
                    deliveries.extend(got.into_iter().map(|item| Routed { partition, item }));
                }
                Ok(deliveries)
            }
        }
    }

    /// Waits until any partition changed since `seen` (per-partition counters).
    async fn any_changed(&self, seen: &[u64]) {
        let changed = std::future::poll_fn(|context| {
            for (partition, seen) in (0..self.partition_count).zip(seen) {
                let engine = self.partitions.partition(partition);
                let mut future = std::pin::pin!(engine.changed(*seen));
                if future.as_mut().poll(context).is_ready() {
                    return std::task::Poll::Ready(());
                }
            }
            std::task::Poll::Pending
        });
        changed.await
    }

    /// Acks one run of consecutive entries that share a partition, in order, stopping at
    /// the first invalid handle.
    async fn ack_run(
        &self,
        partition: u16,
        batch: &[(ReceiptHandle, AckKind)],
    ) -> Result<Vec<Result<AckOutcome, HandleError>>, EngineError> {
        let engine = self.partitions.partition(partition);
        let chunk_max = usize::try_from(engine.limits().batch_messages_max).expect("fits");
        let mut results = Vec::with_capacity(batch.len());
        for chunk in batch.chunks(chunk_max) {
            let done = engine.ack(chunk, true, self.clock.now_ms()).await?;
            let failed = done.iter().any(Result::is_err);
            results.extend(done);
            if failed {
                break;
            }
        }
        Ok(results)
    }
}

impl<S: Storage + Clone, C: Clock> Node for LocalNode<S, C> {
    fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    fn wall_ms(&self) -> u64 {
        self.clock.wall_ms()
    }

    fn tenants(&self) -> Arc<TenantDirectory> {
        self.tenants.borrow().clone()
    }

    fn queues_of(&self, tenant: &str) -> Vec<QueueView> {
        let mut views: Vec<QueueView> = self
            .partitions
            .partition(0)
            .queues_of(tenant)
            .into_iter()
            .filter_map(|queue| self.view(queue))
            .collect();
        views.sort_by(|a, b| a.name.cmp(&b.name));
        views
    }

    fn queue(&self, tenant: &str, queue: QueueId) -> Option<QueueView> {
        self.view(queue).filter(|view| view.tenant == tenant)
    }

    async fn create_queue(
        &self,
        tenant: &str,
        name: &str,
        config: QueueConfig,
        meta: Vec<u8>,
    ) -> Result<QueueId, NodeError> {
        let limit = self.quotas_of(tenant).queues_max;
        let owned = self.partitions.partition(0).queues_of(tenant).len();
        let creating = self.creating.borrow().get(tenant).copied().unwrap_or(0);
        let owned = u32::try_from(owned)
            .unwrap_or(u32::MAX)
            .saturating_add(creating);
        if owned >= limit {
            return Err(EngineError::TooManyQueues { limit }.into());
        }
        *self
            .creating
            .borrow_mut()
            .entry(tenant.to_string())
            .or_insert(0) += 1;
        let now = self.clock.now_ms();
        let created = self
            .partitions
            .create_queue_with_meta(tenant, name, config, meta, now)
            .await;
        let mut creating = self.creating.borrow_mut();
        let count = creating.get_mut(tenant).expect("counted above");
        *count -= 1;
        if *count == 0 {
            creating.remove(tenant);
        }
        Ok(created?)
    }

    async fn delete_queue(&self, queue: QueueId) -> Result<(), NodeError> {
        let now = self.clock.now_ms();
        for partition in 0..self.partition_count {
            self.partitions
                .partition(partition)
                .delete_queue(queue, now)
                .await?;
        }
        Ok(())
    }

    async fn create_groups(
        &self,
        queue: QueueId,
        names: &[String],
    ) -> Result<Vec<GroupId>, NodeError> {
        let view = self.view(queue).ok_or(EngineError::QueueNotFound)?;
        let quota = self.quotas_of(&view.tenant).groups_per_queue_max;
        let limit = quota.min(self.partitions.partition(0).limits().groups_per_queue_max);
        let wanted = view.groups.len().saturating_add(names.len());
        if u32::try_from(wanted).unwrap_or(u32::MAX) > limit {
            return Err(EngineError::TooManyGroups { limit }.into());
        }
        for (index, name) in names.iter().enumerate() {
            let repeated = names[..index].contains(name);
            if repeated || view.groups.iter().any(|(_, existing)| existing == name) {
                return Err(EngineError::GroupExists.into());
            }
        }
        let mut created = Vec::with_capacity(names.len());
        for name in names {
            let now = self.clock.now_ms();
            match self
                .partitions
                .create_group(queue, name, GroupStart::Oldest, now)
                .await
            {
                Ok(group) => created.push(group),
                Err(error) => {
                    // All or nothing: undo the groups this request made (best effort; a
                    // failure here is the same storage fault the caller is told about).
                    for group in created {
                        let _ = self.delete_group(queue, group).await;
                    }
                    return Err(error.into());
                }
            }
        }
        Ok(created)
    }

    async fn delete_group(&self, queue: QueueId, group: GroupId) -> Result<(), NodeError> {
        let now = self.clock.now_ms();
        for partition in 0..self.partition_count {
            self.partitions
                .partition(partition)
                .delete_group(queue, group, now)
                .await?;
        }
        Ok(())
    }

    async fn queue_counts(&self, queue: QueueId) -> Result<QueueCounts, NodeError> {
        let mut counts = QueueCounts::default();
        for partition in 0..self.partition_count {
            let engine = self.partitions.partition(partition);
            let info = engine.queue_info(queue)?;
            counts.sent_total += info.sent_total;
            counts.stored += info.stored;
            counts.delayed += info.delayed;
            if partition == 0 {
                counts.groups = info
                    .groups
                    .iter()
                    .map(|(group, _)| (*group, GroupStats::default()))
                    .collect();
            }
            for (group, total) in &mut counts.groups {
                total.add(&engine.group_stats(queue, *group)?);
            }
        }
        Ok(counts)
    }

    async fn send(
        &self,
        queue: QueueId,
        messages: Vec<SendInput>,
    ) -> Result<Vec<Routed<SendOutcome>>, NodeError> {
        let now = self.clock.now_ms();
        Ok(self.partitions.send(queue, &messages, now).await?)
    }

    async fn cancel(
        &self,
        queue: QueueId,
        partition: u16,
        message: MessageId,
    ) -> Result<(), NodeError> {
        // An id naming a partition this node does not have names no scheduled message.
        if partition >= self.partition_count {
            return Err(EngineError::NotScheduled.into());
        }
        let engine = self.partitions.partition(partition);
        Ok(engine.cancel(queue, message, self.clock.now_ms()).await?)
    }

    async fn receive(
        &self,
        queue: QueueId,
        group: GroupId,
        lane: Lane,
        request: ReceiveRequest,
        wait_ms: u64,
    ) -> Result<Vec<Routed<Delivery>>, NodeError> {
        let deadline_ms = self.clock.now_ms().saturating_add(wait_ms);
        for _ in 0..LONG_POLL_ROUNDS_MAX {
            // Read the counters before receiving, so a change between the receive and
            // the wait is not missed.
            let seen: Vec<u64> = (0..self.partition_count)
                .map(|p| self.partitions.partition(p).change_count())
                .collect();
            let deliveries = self.receive_once(queue, group, lane, &request).await?;
            let now = self.clock.now_ms();
            if !deliveries.is_empty() || now >= deadline_ms {
                return Ok(deliveries);
            }
            futures_lite::future::or(
                self.any_changed(&seen),
                self.clock.sleep_ms(deadline_ms - now),
            )
            .await;
        }
        Ok(Vec::new())
    }

    async fn ack(
        &self,
        lane: Lane,
        acks: Vec<(Routed<ReceiptHandle>, AckKind)>,
    ) -> Result<Vec<Result<AckOutcome, HandleError>>, NodeError> {
        let dead_letter = lane == Lane::DeadLetters;
        let mut results: Vec<Result<AckOutcome, HandleError>> = Vec::with_capacity(acks.len());
        let mut start = 0;
        // Bounded by the entry count: every pass consumes at least one entry.
        while start < acks.len() {
            let partition = acks[start].0.partition;
            let wrong_lane = acks[start].0.item.dead_letter != dead_letter;
            if partition >= self.partition_count || wrong_lane {
                results.push(Err(HandleError::Unknown));
                break;
            }
            let end = (start..acks.len())
                .find(|i| {
                    acks[*i].0.partition != partition || acks[*i].0.item.dead_letter != dead_letter
                })
                .unwrap_or(acks.len());
            let batch: Vec<(ReceiptHandle, AckKind)> = acks[start..end]
                .iter()
                .map(|(handle, kind)| (handle.item, *kind))
                .collect();
            let done = self.ack_run(partition, &batch).await?;
            let failed = done.len() < batch.len() || done.iter().any(Result::is_err);
            // Within a run the engine already answered Stale after the first error.
            results.extend(done);
            if failed {
                break;
            }
            start = end;
        }
        results.resize(acks.len(), Err(HandleError::Stale));
        assert_eq!(results.len(), acks.len(), "one result per entry");
        Ok(results)
    }

    async fn create_tenant(
        &self,
        name: &str,
        password: Option<&str>,
    ) -> Result<Tenant, TenantError> {
        if !valid_tenant_name(name) {
            return Err(TenantError::InvalidName);
        }
        let directory = self.tenants.borrow().clone();
        if directory.by_name(name).is_some() {
            return Err(TenantError::Exists);
        }
        // Password hashing belongs to the auth module; LocalNode keeps no password.
        let _ = password;
        // Bounded: a collision among 2^128 project ids or 36^20 access keys is
        // practically impossible, so one retry round suffices for any real run.
        let mut tenant = None;
        for _ in 0..16 {
            let candidate = Tenant {
                project_id: self.random_string(PROJECT_ID_CHARS, 32),
                name: name.to_string(),
                ak: self.random_string(AK_CHARS, 20),
                sk: self.random_string(SK_CHARS, 40),
                password_hash: None,
                quotas: Quotas::dms_default(),
                created_ms: self.clock.now_ms(),
            };
            let taken = directory.by_project(&candidate.project_id).is_some()
                || directory.by_ak(&candidate.ak).is_some();
            if !taken {
                tenant = Some(candidate);
                break;
            }
        }
        let tenant = tenant.ok_or(TenantError::Storage("no free credentials".into()))?;
        let mut tenants = directory.all().to_vec();
        tenants.push(tenant.clone());
        *self.tenants.borrow_mut() = Arc::new(TenantDirectory::new(tenants));
        Ok(tenant)
    }

    async fn delete_tenant(&self, project_id: &str) -> Result<(), TenantError> {
        let directory = self.tenants.borrow().clone();
        if directory.by_project(project_id).is_none() {
            return Err(TenantError::NotFound);
        }
        for queue in self.partitions.partition(0).queues_of(project_id) {
            match self.delete_queue(queue).await {
                Ok(()) | Err(NodeError::Engine(EngineError::QueueNotFound)) => {}
                Err(error) => return Err(TenantError::Storage(format!("{error:?}"))),
            }
        }
        let tenants = directory
            .all()
            .iter()
            .filter(|t| t.project_id != project_id)
            .cloned()
            .collect();
        *self.tenants.borrow_mut() = Arc::new(TenantDirectory::new(tenants));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_core::engine::types::{QueueMode, RetryPolicy};
    use sluice_core::engine::{EngineConfig, EngineLimits};
    use sluice_core::log::{LogConfig, VerifyOnOpen};
    use sluice_core::sim_disk::{block_on, SimDisk};

    /// A clock whose sleep advances it at once: tests never wait.
    struct StepClock(Cell<u64>);

    impl Clock for StepClock {
        fn now_ms(&self) -> u64 {
            self.0.get()
        }
        async fn sleep_ms(&self, ms: u64) {
            self.0.set(self.0.get() + ms);
        }
    }

    fn check_node(partitions: u16) -> LocalNode<SimDisk, StepClock> {
        let config = EngineConfig {
            log: LogConfig {
                segment_bytes_max: 64 * 1024,
                index_interval_bytes: 4096,
                preallocate_bytes: 0,
                verify_on_open: VerifyOnOpen::Tail,
            },
            limits: EngineLimits::dms(),
            snapshot_every_records: 10_000,
        };
        let engines = (0..partitions)
            .map(|p| block_on(Engine::open(SimDisk::new(u64::from(p)), config, 1_000)).unwrap())
            .collect();
        LocalNode::new(engines, StepClock(Cell::new(1_000)), 7)
    }

    fn normal() -> QueueConfig {
        QueueConfig {
            mode: QueueMode::Normal,
            retention_ms: 3_600_000,
            max_consume_count: None,
            retry: RetryPolicy::Immediate,
            dedup_window_ms: 60_000,
        }
    }

    fn message(body: &str) -> SendInput {
        SendInput {
            body: body.as_bytes().to_vec(),
            attributes: Vec::new(),
            tags: Vec::new(),
            fifo_group: None,
            delay: sluice_core::engine::types::Delay::None,
            dedup_id: None,
        }
    }

    fn receive_request() -> ReceiveRequest {
        ReceiveRequest {
            max_messages: 10,
            visibility_ms: 30_000,
            filter: None,
        }
    }

    #[test]
    fn tenants_get_distinct_credentials_and_quotas_bound_queues() {
        // Goal: credentials have the documented shapes and the queue quota is enforced.
        let node = check_node(1);
        let a = block_on(node.create_tenant("alpha", None)).unwrap();
        let b = block_on(node.create_tenant("beta", None)).unwrap();
        assert_ne!(a.project_id, b.project_id);
        assert_eq!(a.project_id.len(), 32);
        assert_eq!(a.ak.len(), 20);
        assert_eq!(a.sk.len(), 40);
        assert_eq!(
            block_on(node.create_tenant("alpha", None)),
            Err(TenantError::Exists)
        );
        let quotas = Quotas {
            queues_max: 1,
            groups_per_queue_max: 3,
        };
        node.set_quotas(&a.project_id, quotas).unwrap();
        block_on(node.create_queue(&a.project_id, "q1", normal(), Vec::new())).unwrap();
        let over = block_on(node.create_queue(&a.project_id, "q2", normal(), Vec::new()));
        assert_eq!(
            over,
            Err(NodeError::Engine(EngineError::TooManyQueues { limit: 1 }))
        );
        block_on(node.delete_tenant(&a.project_id)).unwrap();
        assert!(node.queues_of(&a.project_id).is_empty());
    }

    #[test]
    fn group_creation_is_all_or_nothing() {
        // Goal: a request that would pass the group limit or repeats a name creates none.
        let node = check_node(2);
        let tenant = block_on(node.create_tenant("t", None)).unwrap();
        let queue =
            block_on(node.create_queue(&tenant.project_id, "q", normal(), Vec::new())).unwrap();
        let names = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        block_on(node.create_groups(queue, &names(&["a", "b"]))).unwrap();
        let over = block_on(node.create_groups(queue, &names(&["c", "d"])));
        assert_eq!(
            over,
            Err(NodeError::Engine(EngineError::TooManyGroups { limit: 3 }))
        );
        let repeated = block_on(node.create_groups(queue, &names(&["b"])));
        assert_eq!(repeated, Err(NodeError::Engine(EngineError::GroupExists)));
        assert_eq!(
            node.queue(&tenant.project_id, queue).unwrap().groups.len(),
            2
        );
        assert!(node.queue("someone-else", queue).is_none());
    }

    #[test]
    fn long_poll_waits_out_the_clock_and_acks_stop_at_the_first_invalid_handle() {
        // Goal: an empty receive waits exactly wait_ms of clock time; an ack batch stops
        // at the first bad handle, across partitions.
        let node = check_node(3);
        let tenant = block_on(node.create_tenant("t", None)).unwrap();
        let queue =
            block_on(node.create_queue(&tenant.project_id, "q", normal(), Vec::new())).unwrap();
        let group = block_on(node.create_groups(queue, &["g".to_string()])).unwrap()[0];
        let empty =
            block_on(node.receive(queue, group, Lane::Main, receive_request(), 5_000)).unwrap();
        assert!(empty.is_empty());
        assert_eq!(node.now_ms(), 6_000);
        for body in ["1", "2", "3"] {
            block_on(node.send(queue, vec![message(body)])).unwrap();
        }
        let got = block_on(node.receive(queue, group, Lane::Main, receive_request(), 0)).unwrap();
        assert_eq!(got.len(), 3);
        let mut bogus = got[1].clone();
        bogus.item.handle.nonce ^= 1;
        let acks = vec![
            (route(&got[0]), AckKind::Success),
            (route(&bogus), AckKind::Success),
            (route(&got[2]), AckKind::Success),
        ];
        let results = block_on(node.ack(Lane::Main, acks)).unwrap();
        assert_eq!(results[0], Ok(AckOutcome::Applied));
        assert!(results[1].is_err());
        assert_eq!(results[2], Err(HandleError::Stale));
        let counts = block_on(node.queue_counts(queue)).unwrap();
        assert_eq!(counts.sent_total, 3);
        assert_eq!(counts.groups[0].1.acked_total, 1);
    }

    fn route(delivery: &Routed<Delivery>) -> Routed<ReceiptHandle> {
        Routed {
            partition: delivery.partition,
            item: delivery.item.handle,
        }
    }
}
