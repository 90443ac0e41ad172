//! What every shard of a node reads and only the metadata shard writes: the tenant
//! directory and the queue directory. The metadata shard publishes a new snapshot after
//! each change (arc-swap); readers load an `Arc` without locks and without I/O.

use std::collections::BTreeMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use sluice_core::engine::types::QueueId;
use sluice_core::engine::QueueInfo;

use crate::tenants::TenantDirectory;
use crate::QueueView;

/// Every queue, as partition 0 (the metadata truth) holds it.
#[derive(Clone, Debug, Default)]
pub struct QueueDirectory {
    pub queues: BTreeMap<QueueId, QueueView>,
    /// Partition 0's Raft index this directory reflects (the replica's applied index when
    /// it was read); a directory of a lower index never replaces it.
    pub applied: u64,
}

impl QueueDirectory {
    pub fn from_infos(applied: u64, infos: Vec<QueueInfo>) -> QueueDirectory {
        let queues = infos
            .into_iter()
            .map(|info| (info.id, QueueView::from(info)))
            .collect();
        QueueDirectory { queues, applied }
    }

    /// The tenant's queues, ordered by name.
    pub fn queues_of(&self, tenant: &str) -> Vec<QueueView> {
        let mut views: Vec<QueueView> = self
            .queues
            .values()
            .filter(|q| q.tenant == tenant)
            .cloned()
            .collect();
        views.sort_by(|a, b| a.name.cmp(&b.name));
        views
    }
}

/// The directories one node's shards share (one `Arc` per node).
#[derive(Default)]
pub struct Directories {
    pub tenants: ArcSwap<TenantDirectory>,
    pub queues: ArcSwap<QueueDirectory>,
}

impl Directories {
    /// Directories starting with `tenants` (loaded by the host) and no queues (published
    /// by the metadata shard's first repair, before the node serves).
    pub fn new(tenants: TenantDirectory) -> Arc<Directories> {
        Arc::new(Directories {
            tenants: ArcSwap::from_pointee(tenants),
            queues: ArcSwap::from_pointee(QueueDirectory::default()),
        })
    }
}
