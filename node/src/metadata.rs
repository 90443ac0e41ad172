//! Queue, group and tenant changes, applied by shard 0 one at a time.
//!
//! The order of a queue or group change over the partitions (partition 0 first, then the
//! others, ids from partition 0) and the repair of partitions that missed the end of one
//! are `sluice_core::engine::metadata`'s; this module reaches the partitions for it
//! through typed calls ([`ShardPartitions`]) and adds the node's own rules: tenant quotas
//! (bounded by the engines' limits), all-or-nothing group creation, tenant credentials.
//! After every change, shard 0 republishes the queue directory from partition 0.

use sluice_core::engine::metadata::{
    DeadLetterPolicy, MetadataPartitions, MetadataPermit, NewQueue, RepairError,
};
use sluice_core::engine::types::{EngineError, GroupId, QueueId};
use sluice_core::engine::QueueInfo;

use crate::requests::{
    self, MetaCreateGroups, MetaCreateQueue, MetaCreateTenant, MetaDeleteGroup, MetaDeleteQueue,
    MetaDeleteTenant, MetaSetDeadLetter, MetaSetPartitions, MetaSetQueueMeta, MetaSetQuotas,
};
use crate::tenants::{self, valid_tenant_name, Quotas, Tenant, TenantError};
use crate::{Host, NodeError, NodeShard};

/// Every partition as the metadata shard reaches it: each call runs on the owner.
struct ShardPartitions<'a, H: Host>(&'a NodeShard<H>);

impl<H: Host> MetadataPartitions for ShardPartitions<'_, H> {
    type Error = NodeError;

    fn partition_count(&self) -> u32 {
        self.0.config().partition_count
    }

    fn engine_error(error: &NodeError) -> Option<&EngineError> {
        match error {
            NodeError::Engine(engine) => Some(engine),
            NodeError::Unavailable(_) | NodeError::MetaChanged => None,
        }
    }

    /// Read at the partition's serving leader only: a repair compares the partitions with
    /// partition 0 and adds or drops queues to make them agree, so a list from a replica
    /// that is behind (one restarted, or rebuilt from an empty data directory) would have
    /// it drop queues that exist. Anywhere else the list is refused as `NotLeader`, and the
    /// repair waits for a leader.
    async fn list_queues(&self, partition: u32) -> Result<Vec<QueueInfo>, NodeError> {
        let (_, infos, at_leader) = self.0.call(requests::ReadDirectory { partition }).await?;
        if !at_leader {
            return Err(NodeError::Engine(EngineError::NotLeader { leader: None }));
        }
        Ok(infos)
    }

    async fn create_queue(
        &self,
        partition: u32,
        queue: &NewQueue<'_>,
        id: Option<QueueId>,
    ) -> Result<QueueId, NodeError> {
        let call = requests::CreateQueue {
            partition,
            id,
            tenant: queue.tenant.to_string(),
            name: queue.name.to_string(),
            config: queue.config,
            meta: queue.meta.to_vec(),
        };
        self.0.call(call).await
    }

    async fn delete_queue(&self, partition: u32, queue: QueueId) -> Result<(), NodeError> {
        self.0
            .call(requests::DeleteQueue { partition, queue })
            .await
    }

    async fn set_queue_meta(
        &self,
        partition: u32,
        queue: QueueId,
        meta: &[u8],
    ) -> Result<(), NodeError> {
        let call = requests::SetQueueMeta {
            partition,
            queue,
            meta: meta.to_vec(),
        };
        self.0.call(call).await
    }

    async fn set_dead_letter(
        &self,
        partition: u32,
        queue: QueueId,
        policy: DeadLetterPolicy,
    ) -> Result<(), NodeError> {
        let call = requests::SetDeadLetter {
            partition,
            queue,
            max_consume_count: policy.max_consume_count,
            target: policy.target,
        };
        self.0.call(call).await
    }

    async fn set_partitions(
        &self,
        partition: u32,
        queue: QueueId,
        partitions: u16,
    ) -> Result<(), NodeError> {
        let call = requests::SetPartitions {
            partition,
            queue,
            partitions,
        };
        self.0.call(call).await
    }

    async fn create_group(
        &self,
        partition: u32,
        queue: QueueId,
        name: &str,
        id: Option<GroupId>,
    ) -> Result<GroupId, NodeError> {
        let call = requests::CreateGroup {
            partition,
            id,
            queue,
            name: name.to_string(),
        };
        self.0.call(call).await
    }

    async fn delete_group(
        &self,
        partition: u32,
        queue: QueueId,
        group: GroupId,
    ) -> Result<(), NodeError> {
        let call = requests::DeleteGroup {
            partition,
            queue,
            group,
        };
        self.0.call(call).await
    }
}

impl<H: Host> NodeShard<H> {
    /// Makes every partition hold exactly partition 0's queues and groups, with the same
    /// ids, and publishes the directory. Shard 0 runs it at every start, before serving
    /// (a crash may have cut a change short); until it succeeds, each change tries first.
    pub async fn reconcile(&self) -> Result<(), String> {
        assert_eq!(self.index(), 0, "shard 0 owns the metadata");
        let permit = self.meta_gate.lock().await;
        let repaired = permit
            .reconcile(&ShardPartitions(self))
            .await
            .map_err(|error| error.to_string())?;
        for repair in &repaired {
            self.host().log(&repair.to_string());
        }
        self.refresh_directory()
            .await
            .map_err(|error| error.to_string())?;
        self.start_tenants()
            .await
            .map_err(|error| format!("tenants: {error}"))
    }

    /// Whether the partitions may disagree (a change failed part-way, or no repair has
    /// run since the node started): the next change repairs them first.
    pub fn needs_repair(&self) -> bool {
        self.meta_gate.needs_repair()
    }

    /// Runs one metadata change under the turn, repairing first if an earlier change left
    /// the partitions apart, and republishes the directory from partition 0 afterwards,
    /// whatever happened. A failed repair refuses the change: with the storage fault that
    /// stopped it, or as unavailable.
    async fn change<T>(
        &self,
        apply: impl AsyncFnOnce(&MetadataPermit<'_>, &ShardPartitions<'_, H>) -> Result<T, NodeError>,
    ) -> Result<T, NodeError> {
        let permit = self.meta_gate.lock().await;
        let partitions = ShardPartitions(self);
        match permit.repair_if_needed(&partitions).await {
            Ok(repaired) => {
                for repair in &repaired {
                    self.host().log(&repair.to_string());
                }
            }
            Err(RepairError::Call {
                error: error @ NodeError::Engine(EngineError::Storage(_)),
                ..
            }) => return Err(error),
            Err(error) => {
                self.host()
                    .log(&format!("metadata repair failed, will retry: {error}"));
                return Err(NodeError::Unavailable("metadata repair pending"));
            }
        }
        let result = apply(&permit, &partitions).await;
        self.refresh_directory().await?;
        result
    }

    /// The tenant's quotas; a tenant the directory lacks (deleted meanwhile) owns
    /// nothing new.
    fn quotas_of(&self, tenant: &str) -> Result<Quotas, NodeError> {
        self.directories()
            .tenants
            .load()
            .by_project(tenant)
            .map(|t| t.quotas)
            .ok_or(NodeError::Engine(EngineError::QueueNotFound))
    }

    pub(crate) async fn apply_create_queue(
        &self,
        request: MetaCreateQueue,
    ) -> Result<QueueId, NodeError> {
        self.change(async |permit, partitions| {
            // Under the turn, so concurrent creates cannot both pass the quota.
            let quota = self.quotas_of(&request.tenant)?.queues_max;
            let limit = quota.min(self.config().limits.queues_per_tenant_max);
            let owned = self.directories().queues.load().count_of(&request.tenant);
            if u32::try_from(owned).unwrap_or(u32::MAX) >= limit {
                return Err(EngineError::TooManyQueues { limit }.into());
            }
            let queue = NewQueue {
                tenant: &request.tenant,
                name: &request.name,
                config: request.config,
                meta: &request.meta,
            };
            permit
                .create_queue(partitions, &queue)
                .await
                .map_err(|failure| failure.error)
        })
        .await
    }

    pub(crate) async fn apply_delete_queue(
        &self,
        request: MetaDeleteQueue,
    ) -> Result<(), NodeError> {
        self.change(async |permit, partitions| {
            permit
                .delete_queue(partitions, request.queue)
                .await
                .map_err(|failure| failure.error)
        })
        .await
    }

    /// Under the turn, so that two changes of one queue's fields cannot both start from
    /// the same fields and one silently undo the other: the directory (partition 0,
    /// republished after every change) must still hold `expected`.
    pub(crate) async fn apply_set_queue_meta(
        &self,
        request: MetaSetQueueMeta,
    ) -> Result<(), NodeError> {
        self.change(async |permit, partitions| {
            let view = self.view(request.queue).ok_or(EngineError::QueueNotFound)?;
            if *view.meta != *request.expected {
                return Err(NodeError::MetaChanged);
            }
            permit
                .set_queue_meta(partitions, request.queue, &request.meta)
                .await
                .map_err(|failure| failure.error)
        })
        .await
    }

    /// The target must be a queue of the same tenant (the engines check it too).
    pub(crate) async fn apply_set_dead_letter(
        &self,
        request: MetaSetDeadLetter,
    ) -> Result<(), NodeError> {
        self.change(async |permit, partitions| {
            let policy = DeadLetterPolicy {
                max_consume_count: request.max_consume_count,
                target: request.target,
            };
            permit
                .set_dead_letter(partitions, request.queue, policy)
                .await
                .map_err(|failure| failure.error)
        })
        .await
    }

    /// At most the node's partitions (the engines check that the count grows).
    pub(crate) async fn apply_set_partitions(
        &self,
        request: MetaSetPartitions,
    ) -> Result<(), NodeError> {
        if u32::from(request.partitions) > self.config().partition_count {
            return Err(EngineError::InvalidConfig("partitions").into());
        }
        self.change(async |permit, partitions| {
            permit
                .set_partitions(partitions, request.queue, request.partitions)
                .await
                .map_err(|failure| failure.error)
        })
        .await
    }

    pub(crate) async fn apply_create_groups(
        &self,
        request: MetaCreateGroups,
    ) -> Result<Vec<GroupId>, NodeError> {
        self.change(async |permit, partitions| {
            let (queue, names) = (request.queue, &request.names);
            let view = self.view(queue).ok_or(EngineError::QueueNotFound)?;
            let quota = self.quotas_of(&view.tenant)?.groups_per_queue_max;
            let limit = quota.min(self.config().limits.groups_per_queue_max);
            for (index, name) in names.iter().enumerate() {
                let repeated = names[..index].contains(name);
                if repeated || view.groups.iter().any(|(_, existing)| existing == name) {
                    return Err(EngineError::GroupExists.into());
                }
            }
            let wanted = view.groups.len().saturating_add(names.len());
            if u32::try_from(wanted).unwrap_or(u32::MAX) > limit {
                return Err(EngineError::TooManyGroups { limit }.into());
            }
            let mut created = Vec::with_capacity(names.len());
            for name in names {
                match permit.create_group(partitions, queue, name).await {
                    Ok(group) => created.push(group),
                    Err(failure) => {
                        undo_groups(permit, partitions, queue, names).await;
                        return Err(failure.error);
                    }
                }
            }
            Ok(created)
        })
        .await
    }

    pub(crate) async fn apply_delete_group(
        &self,
        request: MetaDeleteGroup,
    ) -> Result<(), NodeError> {
        self.change(async |permit, partitions| {
            permit
                .delete_group(partitions, request.queue, request.group)
                .await
                .map_err(|failure| failure.error)
        })
        .await
    }

    pub(crate) async fn apply_create_tenant(
        &self,
        request: MetaCreateTenant,
    ) -> Result<Result<Tenant, TenantError>, NodeError> {
        let _turn = self.meta_gate.lock().await;
        let name = request.name;
        if !valid_tenant_name(&name) {
            return Ok(Err(TenantError::InvalidName));
        }
        let directory = self.directories().tenants.load_full();
        if directory.by_name(&name).is_some() {
            return Ok(Err(TenantError::Exists));
        }
        let password_hash = match request.password {
            Some(password) if password.len() > crate::password::PASSWORD_BYTES_MAX => {
                return Ok(Err(TenantError::InvalidPassword));
            }
            Some(password) => {
                let mut salt = [0u8; 16];
                self.host().fill_random(&mut salt);
                Some(crate::password::hash_password(&password, &salt))
            }
            None => None,
        };
        // Bounded: a collision among 2^128 project ids or 36^20 access keys is
        // practically impossible, so a few rounds suffice for any real run.
        let mut fresh = None;
        for _ in 0..16 {
            let candidate = tenants::new_tenant(
                &name,
                password_hash.clone(),
                self.config().default_quotas,
                self.host().wall_ms(),
                |bytes| self.host().fill_random(bytes),
            );
            let taken = directory.by_project(&candidate.project_id).is_some()
                || directory.by_ak(&candidate.ak).is_some();
            if !taken {
                fresh = Some(candidate);
                break;
            }
        }
        let Some(tenant) = fresh else {
            return Ok(Err(TenantError::Storage("no free credentials".to_string())));
        };
        self.put_tenant(&tenant).await?;
        Ok(Ok(tenant))
    }

    pub(crate) async fn apply_delete_tenant(
        &self,
        request: MetaDeleteTenant,
    ) -> Result<Result<(), TenantError>, NodeError> {
        let project_id = request.project_id;
        if self
            .directories()
            .tenants
            .load()
            .by_project(&project_id)
            .is_none()
        {
            return Ok(Err(TenantError::NotFound));
        }
        let deleted = self
            .change(async |permit, partitions| {
                let owned = self.directories().queues.load().queues_of(&project_id);
                for queue in owned {
                    permit
                        .delete_queue(partitions, queue.id)
                        .await
                        .map_err(|failure| failure.error)?;
                }
                let tenants = self.directories().tenants.load_full();
                match tenants.by_project(&project_id) {
                    Some(tenant) => self.remove_tenant(&tenant.name).await.map(Ok),
                    None => Ok(Err(TenantError::NotFound)),
                }
            })
            .await;
        Ok(deleted.unwrap_or_else(|error| Err(TenantError::Node(error))))
    }

    pub(crate) async fn apply_set_quotas(
        &self,
        request: MetaSetQuotas,
    ) -> Result<Result<Tenant, TenantError>, NodeError> {
        let _turn = self.meta_gate.lock().await;
        let tenants = self.directories().tenants.load_full();
        let Some(found) = tenants.by_project(&request.project_id) else {
            return Ok(Err(TenantError::NotFound));
        };
        let updated = Tenant {
            quotas: request.quotas,
            ..found.clone()
        };
        self.put_tenant(&updated).await?;
        Ok(Ok(updated))
    }
}

/// All or nothing: after a group create failed part-way, removes every group of `names`
/// that partition 0 now holds (the request checked that none existed before), wherever
/// it was created. Best effort: a failure here is the fault the caller is told about, and
/// the gate already asks the next change to repair.
async fn undo_groups<H: Host>(
    permit: &MetadataPermit<'_>,
    partitions: &ShardPartitions<'_, H>,
    queue: QueueId,
    names: &[String],
) {
    let Ok(held) = partitions.list_queues(0).await else {
        return;
    };
    let Some(info) = held.into_iter().find(|info| info.id == queue) else {
        return;
    };
    for (group, name) in info.groups {
        if names.contains(&name) {
            let _ = permit.delete_group(partitions, queue, group).await;
        }
    }
}
