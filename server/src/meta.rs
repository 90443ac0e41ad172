//! Metadata changes (queues, groups, tenants), run by shard 0 one at a time, and the
//! start-up repair of partitions that missed the end of one.
//!
//! Order matters for repair: every change is applied to partition 0 first and then to
//! the others in order, so after a crash each later partition holds a prefix of
//! partition 0's changes. Repair then only adds what is missing and removes what
//! partition 0 no longer has; ids agree because engines hand them out in sequence.

use std::collections::BTreeSet;
use std::rc::Rc;
use std::sync::Arc;

use sluice_core::engine::types::{EngineError, GroupId, QueueId};
use sluice_core::engine::QueueInfo;
use sluice_http::node::NodeError;
use sluice_http::tenants::{valid_tenant_name, Quotas, TenantDirectory, TenantError};

use crate::calls::{MetaCall, MetaError, MetaReply, PartitionCall, PartitionReply};
use crate::datadir;
use crate::shard::Shard;

pub async fn execute(shard: &Rc<Shard>, call: MetaCall) -> Result<MetaReply, MetaError> {
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
            let mut id = None;
            for partition in 0..shard.partition_count() {
                let call = PartitionCall::CreateQueue {
                    tenant: tenant.clone(),
                    name: name.clone(),
                    config,
                    meta: meta.clone(),
                };
                let created = match shard.call_partition(partition, call).await? {
                    PartitionReply::Queue(queue) => queue,
                    other => unreachable!("CreateQueue answered {other:?}"),
                };
                assert!(
                    id.is_none_or(|id| id == created),
                    "queue ids agree across partitions"
                );
                id = Some(created);
            }
            Ok(MetaReply::Queue(id.expect("at least one partition")))
        }
        MetaCall::DeleteQueue { queue } => {
            delete_queue_everywhere(shard, queue).await?;
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
                ids.push(create_group_everywhere(shard, queue, name).await?);
            }
            Ok(MetaReply::Groups(ids))
        }
        MetaCall::DeleteGroup { queue, group } => {
            for partition in 0..shard.partition_count() {
                let call = PartitionCall::DeleteGroup { queue, group };
                match shard.call_partition(partition, call).await {
                    Ok(_) => {}
                    // Later partitions may already lack it (an earlier attempt crashed).
                    Err(NodeError::Engine(EngineError::GroupNotFound)) if partition > 0 => {}
                    Err(error) => return Err(error.into()),
                }
            }
            Ok(MetaReply::Done)
        }
        MetaCall::CreateTenant { name, password } => create_tenant(shard, &name, password),
        MetaCall::SetQuotas { project_id, quotas } => {
            let tenants = shard.shared.tenants.load_full();
            let Some(found) = tenants.by_project(&project_id) else {
                return Err(MetaError::Tenant(TenantError::NotFound));
            };
            let updated = sluice_http::tenants::Tenant {
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
                delete_queue_everywhere(shard, queue.id).await?;
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

async fn delete_queue_everywhere(shard: &Rc<Shard>, queue: QueueId) -> Result<(), MetaError> {
    for partition in 0..shard.partition_count() {
        match shard
            .call_partition(partition, PartitionCall::DeleteQueue { queue })
            .await
        {
            Ok(_) => {}
            Err(NodeError::Engine(EngineError::QueueNotFound)) if partition > 0 => {}
            Err(error) => return Err(error.into()),
        }
    }
    Ok(())
}

async fn create_group_everywhere(
    shard: &Rc<Shard>,
    queue: QueueId,
    name: &str,
) -> Result<GroupId, MetaError> {
    let mut id = None;
    for partition in 0..shard.partition_count() {
        let call = PartitionCall::CreateGroup {
            queue,
            name: name.to_string(),
        };
        let created = match shard.call_partition(partition, call).await? {
            PartitionReply::Group(group) => group,
            other => unreachable!("CreateGroup answered {other:?}"),
        };
        assert!(
            id.is_none_or(|id| id == created),
            "group ids agree across partitions"
        );
        id = Some(created);
    }
    Ok(id.expect("at least one partition"))
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
    tenants: Vec<sluice_http::tenants::Tenant>,
) -> Result<(), MetaError> {
    datadir::store_tenants(&shard.shared.config.data_dir, &tenants)
        .map_err(|e| MetaError::Tenant(TenantError::Storage(e.to_string())))?;
    shard
        .shared
        .tenants
        .store(Arc::new(TenantDirectory::new(tenants)));
    Ok(())
}

/// Makes `partition` hold exactly partition 0's queues and groups (see the module doc).
pub async fn reconcile_partition(
    shard: &Rc<Shard>,
    partition: u32,
    truth: &[QueueInfo],
) -> Result<(), String> {
    let fail = |what: &str, e: NodeError| format!("partition {partition}: {what}: {e:?}");
    let held = match shard
        .call_partition(partition, PartitionCall::ListQueues)
        .await
        .map_err(|e| fail("list", e))?
    {
        PartitionReply::Queues(infos) => infos,
        other => unreachable!("ListQueues answered {other:?}"),
    };
    for extra in held.iter().filter(|h| !truth.iter().any(|t| t.id == h.id)) {
        let call = PartitionCall::DeleteQueue { queue: extra.id };
        shard
            .call_partition(partition, call)
            .await
            .map_err(|e| fail("drop a queue partition 0 lacks", e))?;
        eprintln!(
            "sluice: partition {partition}: dropped queue {} (repair)",
            extra.id.0
        );
    }
    for queue in truth {
        let have = held.iter().find(|h| h.id == queue.id);
        if have.is_none() {
            let call = PartitionCall::CreateQueue {
                tenant: queue.tenant.clone(),
                name: queue.name.clone(),
                config: queue.config,
                meta: queue.meta.clone(),
            };
            let created = shard
                .call_partition(partition, call)
                .await
                .map_err(|e| fail("add a missing queue", e))?;
            if !matches!(created, PartitionReply::Queue(id) if id == queue.id) {
                return Err(format!(
                    "partition {partition}: repair gave queue {:?} another id ({created:?})",
                    queue.id
                ));
            }
            eprintln!(
                "sluice: partition {partition}: added queue {} (repair)",
                queue.id.0
            );
        }
        let held_groups = have.map(|h| h.groups.clone()).unwrap_or_default();
        for (group, _) in held_groups.iter().filter(|g| !queue.groups.contains(g)) {
            let call = PartitionCall::DeleteGroup {
                queue: queue.id,
                group: *group,
            };
            shard
                .call_partition(partition, call)
                .await
                .map_err(|e| fail("drop a group", e))?;
        }
        for (group, name) in queue.groups.iter().filter(|g| !held_groups.contains(g)) {
            let call = PartitionCall::CreateGroup {
                queue: queue.id,
                name: name.clone(),
            };
            let created = shard
                .call_partition(partition, call)
                .await
                .map_err(|e| fail("add a missing group", e))?;
            if !matches!(created, PartitionReply::Group(id) if id == *group) {
                return Err(format!(
                    "partition {partition}: repair gave group {group:?} another id"
                ));
            }
        }
    }
    Ok(())
}
