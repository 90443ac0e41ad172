//! Metadata changes (queues, groups, tenants), run by shard 0 one at a time.
//!
//! The order of a queue or group change over the partitions and the repair of partitions
//! that missed the end of one are `sluice_core::engine::metadata`'s, shared with
//! `LocalNode` (and so with the simulation); this file reaches the partitions for it
//! through [`ShardPartitions`] (calls forwarded to the owning shard) and adds what only
//! the server has: tenant quotas, and tenants stored in the data directory.

use std::collections::BTreeSet;
use std::rc::Rc;
use std::sync::Arc;

use sluice_core::engine::metadata::{MetadataPartitions, MetadataPermit, NewQueue};
use sluice_core::engine::types::{EngineError, GroupId, QueueId};
use sluice_core::engine::QueueInfo;
use sluice_node::NodeError;
use sluice_node::tenants::{valid_tenant_name, Quotas, TenantDirectory, TenantError};

use crate::calls::{MetaCall, MetaError, MetaReply, PartitionCall, PartitionReply};
use crate::datadir;
use crate::shard::Shard;

/// A shard's view of every partition for metadata changes: each call runs on the
/// partition's owner (here, or forwarded over the mesh).
pub struct ShardPartitions<'a>(pub &'a Rc<Shard>);

impl MetadataPartitions for ShardPartitions<'_> {
    type Error = NodeError;

    fn partition_count(&self) -> u32 {
        self.0.partition_count()
    }

    fn engine_error(error: &NodeError) -> Option<&EngineError> {
        match error {
            NodeError::Engine(engine) => Some(engine),
            NodeError::Unavailable(_) => None,
        }
    }

    async fn list_queues(&self, partition: u32) -> Result<Vec<QueueInfo>, NodeError> {
        match self
            .0
            .call_partition(partition, PartitionCall::ListQueues)
            .await?
        {
            PartitionReply::Queues(infos) => Ok(infos),
            other => unreachable!("ListQueues answered {other:?}"),
        }
    }

    async fn create_queue(
        &self,
        partition: u32,
        queue: &NewQueue<'_>,
        id: Option<QueueId>,
    ) -> Result<QueueId, NodeError> {
        let call = PartitionCall::CreateQueue {
            id,
            tenant: queue.tenant.to_string(),
            name: queue.name.to_string(),
            config: queue.config,
            meta: queue.meta.to_vec(),
        };
        match self.0.call_partition(partition, call).await? {
            PartitionReply::Queue(queue) => Ok(queue),
            other => unreachable!("CreateQueue answered {other:?}"),
        }
    }

    async fn delete_queue(&self, partition: u32, queue: QueueId) -> Result<(), NodeError> {
        let call = PartitionCall::DeleteQueue { queue };
        self.0.call_partition(partition, call).await.map(|_| ())
    }

    async fn create_group(
        &self,
        partition: u32,
        queue: QueueId,
        name: &str,
        id: Option<GroupId>,
    ) -> Result<GroupId, NodeError> {
        let call = PartitionCall::CreateGroup {
            id,
            queue,
            name: name.to_string(),
        };
        match self.0.call_partition(partition, call).await? {
            PartitionReply::Group(group) => Ok(group),
            other => unreachable!("CreateGroup answered {other:?}"),
        }
    }

    async fn delete_group(
        &self,
        partition: u32,
        queue: QueueId,
        group: GroupId,
    ) -> Result<(), NodeError> {
        let call = PartitionCall::DeleteGroup { queue, group };
        self.0.call_partition(partition, call).await.map(|_| ())
    }
}

/// Runs one metadata change; the caller holds the metadata turn (`permit`) and has
/// repaired the partitions if an earlier change left them apart.
pub async fn execute(
    shard: &Rc<Shard>,
    permit: &MetadataPermit<'_>,
    call: MetaCall,
) -> Result<MetaReply, MetaError> {
    let partitions = ShardPartitions(shard);
    match call {
        MetaCall::CreateQueue {
            tenant,
            name,
            config,
            meta,
        } => {
            let quota = tenant_quotas(shard, &tenant)?.queues_max;
            let owned = shard.shared.directory.load().queues_of(&tenant).len();
            if owned >= quota as usize {
                return Err(EngineError::TooManyQueues { limit: quota }.into());
            }
            let queue = NewQueue {
                tenant: &tenant,
                name: &name,
                config,
                meta: &meta,
            };
            Ok(MetaReply::Queue(
                permit.create_queue(&partitions, &queue).await?,
            ))
        }
        MetaCall::DeleteQueue { queue } => {
            permit.delete_queue(&partitions, queue).await?;
            Ok(MetaReply::Done)
        }
        MetaCall::CreateGroups {
            queue,
            names,
            start: _,
        } => {
            let directory = shard.shared.directory.load();
            let view = directory
                .queues
                .get(&queue)
                .ok_or(EngineError::QueueNotFound)?;
            let quota = tenant_quotas(shard, &view.tenant)?.groups_per_queue_max;
            let distinct: BTreeSet<&String> = names.iter().collect();
            if distinct.len() != names.len()
                || view.groups.iter().any(|(_, name)| distinct.contains(name))
            {
                return Err(EngineError::GroupExists.into());
            }
            if view.groups.len() + names.len() > quota as usize {
                return Err(EngineError::TooManyGroups { limit: quota }.into());
            }
            let mut ids = Vec::new();
            for name in &names {
                ids.push(permit.create_group(&partitions, queue, name).await?);
            }
            Ok(MetaReply::Groups(ids))
        }
        MetaCall::DeleteGroup { queue, group } => {
            permit.delete_group(&partitions, queue, group).await?;
            Ok(MetaReply::Done)
        }
        MetaCall::CreateTenant { name, password } => create_tenant(shard, &name, password),
        MetaCall::SetQuotas { project_id, quotas } => {
            let tenants = shard.shared.tenants.load_full();
            let Some(found) = tenants.by_project(&project_id) else {
                return Err(MetaError::Tenant(TenantError::NotFound));
            };
            let updated = sluice_node::tenants::Tenant {
                quotas,
                ..found.clone()
            };
            let all = tenants
                .all()
                .iter()
                .map(|t| {
                    if t.project_id == project_id {
                        updated.clone()
                    } else {
                        t.clone()
                    }
                })
                .collect();
            publish_tenants(shard, all)?;
            Ok(MetaReply::Tenant(Box::new(updated)))
        }
        MetaCall::DeleteTenant { project_id } => {
            let tenants = shard.shared.tenants.load_full();
            if tenants.by_project(&project_id).is_none() {
                return Err(MetaError::Tenant(TenantError::NotFound));
            }
            let owned = shard.shared.directory.load().queues_of(&project_id);
            for queue in owned {
                permit.delete_queue(&partitions, queue.id).await?;
            }
            let remaining = tenants
                .all()
                .iter()
                .filter(|t| t.project_id != project_id)
                .cloned()
                .collect();
            publish_tenants(shard, remaining)?;
            Ok(MetaReply::Done)
        }
    }
}

fn tenant_quotas(shard: &Shard, tenant: &str) -> Result<Quotas, MetaError> {
    shard
        .shared
        .tenants
        .load()
        .by_project(tenant)
        .map(|t| t.quotas)
        .ok_or(MetaError::Tenant(TenantError::NotFound))
}

fn create_tenant(
    shard: &Rc<Shard>,
    name: &str,
    password: Option<String>,
) -> Result<MetaReply, MetaError> {
    if !valid_tenant_name(name) {
        return Err(MetaError::Tenant(TenantError::InvalidName));
    }
    let tenants = shard.shared.tenants.load_full();
    if tenants.by_name(name).is_some() {
        return Err(MetaError::Tenant(TenantError::Exists));
    }
    let password_hash = password.map(|p| crate::secrets::hash_password(&p));
    let config = &shard.shared.config;
    let quotas = Quotas {
        queues_max: config.tenant_queues_max,
        groups_per_queue_max: config.tenant_groups_per_queue_max,
    };
    let tenant = datadir::new_tenant(name, password_hash, quotas, shard.now_ms());
    let mut all = tenants.all().to_vec();
    all.push(tenant.clone());
    publish_tenants(shard, all)?;
    Ok(MetaReply::Tenant(Box::new(tenant)))
}

/// Stores the tenant list durably, then publishes it to every shard.
fn publish_tenants(
    shard: &Shard,
    tenants: Vec<sluice_node::tenants::Tenant>,
) -> Result<(), MetaError> {
    datadir::store_tenants(&shard.shared.config.data_dir, &tenants)
        .map_err(|e| MetaError::Tenant(TenantError::Storage(e.to_string())))?;
    shard
        .shared
        .tenants
        .store(Arc::new(TenantDirectory::new(tenants)));
    Ok(())
}
