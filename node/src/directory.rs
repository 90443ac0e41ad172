//! What every shard of a node reads and only the metadata shard writes: the tenant
//! directory and the queue directory. The metadata shard publishes a new snapshot after
//! each change (arc-swap); readers load an `Arc` without locks and without I/O.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arc_swap::ArcSwap;
use sluice_core::engine::types::QueueId;
use sluice_core::engine::QueueInfo;

use crate::tenants::TenantDirectory;
use crate::QueueView;

/// Buckets of the queue directory: a change copies one bucket (about 1/256 of the
/// queues), not the whole directory.
const BUCKETS: usize = 256;

type Bucket = BTreeMap<QueueId, Arc<QueueView>>;

/// A bucket of the name index: hash of (tenant, name) to the queues with that hash.
type NameBucket = HashMap<u64, Vec<QueueId>>;

/// Every queue, as partition 0 (the metadata truth) holds it. Published whole through
/// arc-swap, and changed copy-on-write by bucket (queue id modulo `BUCKETS`), so a
/// change costs what it touches whatever the number of queues.
#[derive(Clone, Debug)]
pub struct QueueDirectory {
    buckets: Vec<Arc<Bucket>>,
    /// The name index (`QueueDirectory::named`), bucketed and copied on write the same
    /// way, by the hash of (tenant, name).
    names: Vec<Arc<NameBucket>>,
    /// Queues per tenant (the quota check); its keys are the project ids the tenant's
    /// views share.
    counts: Arc<HashMap<Arc<str>, u32>>,
    /// Partition 0's Raft index this directory reflects (the replica's applied index when
    /// it was read); a directory of a lower index never replaces it.
    pub applied: u64,
}

impl Default for QueueDirectory {
    fn default() -> QueueDirectory {
        QueueDirectory {
            buckets: vec![Arc::default(); BUCKETS],
            names: vec![Arc::default(); BUCKETS],
            counts: Arc::default(),
            applied: 0,
        }
    }
}

fn bucket_of(queue: QueueId) -> usize {
    queue.0 as usize % BUCKETS
}

/// The hash of a queue's (tenant, name) in the name index.
fn name_hash(tenant: &str, name: &str) -> u64 {
    let mut key = Vec::with_capacity(tenant.len() + 1 + name.len());
    key.extend_from_slice(tenant.as_bytes());
    key.push(0);
    key.extend_from_slice(name.as_bytes());
    xxhash_rust::xxh3::xxh3_64(&key)
}

fn name_bucket_of(hash: u64) -> usize {
    (hash % BUCKETS as u64) as usize
}

fn index_name(names: &mut [Arc<NameBucket>], view: &QueueView) {
    let hash = name_hash(&view.tenant, &view.name);
    let ids = Arc::make_mut(&mut names[name_bucket_of(hash)])
        .entry(hash)
        .or_default();
    if !ids.contains(&view.id) {
        ids.push(view.id);
    }
}

fn unindex_name(names: &mut [Arc<NameBucket>], view: &QueueView) {
    let hash = name_hash(&view.tenant, &view.name);
    let bucket = Arc::make_mut(&mut names[name_bucket_of(hash)]);
    if let Some(ids) = bucket.get_mut(&hash) {
        ids.retain(|id| *id != view.id);
        if ids.is_empty() {
            bucket.remove(&hash);
        }
    }
}

/// The tenant's project id as its views share it (a new one for a tenant without queues).
fn shared_tenant(counts: &HashMap<Arc<str>, u32>, tenant: &str) -> Arc<str> {
    counts
        .get_key_value(tenant)
        .map_or_else(|| Arc::from(tenant), |(shared, _)| shared.clone())
}

impl QueueDirectory {
    pub fn from_infos(applied: u64, infos: Vec<QueueInfo>) -> QueueDirectory {
        let mut buckets: Vec<Bucket> = vec![Bucket::new(); BUCKETS];
        let mut names: Vec<Arc<NameBucket>> = vec![Arc::default(); BUCKETS];
        let mut counts: HashMap<Arc<str>, u32> = HashMap::new();
        for info in infos {
            let tenant = shared_tenant(&counts, &info.tenant);
            *counts.entry(tenant.clone()).or_default() += 1;
            let view = QueueView::with_tenant(info, tenant);
            index_name(&mut names, &view);
            buckets[bucket_of(view.id)].insert(view.id, Arc::new(view));
        }
        QueueDirectory {
            buckets: buckets.into_iter().map(Arc::new).collect(),
            names,
            counts: Arc::new(counts),
            applied,
        }
    }

    /// This directory brought from its index to `applied` by partition 0's changes in
    /// between: `deleted` first, then `changed` (as they are at `applied`). Applying them
    /// to a directory read at any index from `since` to `applied` gives the same result.
    pub fn with_changes(
        &self,
        applied: u64,
        changed: &[QueueInfo],
        deleted: &[QueueId],
    ) -> QueueDirectory {
        let mut next = self.clone();
        next.applied = applied;
        for queue in deleted {
            let bucket = Arc::make_mut(&mut next.buckets[bucket_of(*queue)]);
            if let Some(view) = bucket.remove(queue) {
                unindex_name(&mut next.names, &view);
                let counts = Arc::make_mut(&mut next.counts);
                if let Some(count) = counts.get_mut(&view.tenant) {
                    *count -= 1;
                    if *count == 0 {
                        counts.remove(&view.tenant);
                    }
                }
            }
        }
        for info in changed {
            let tenant = shared_tenant(&next.counts, &info.tenant);
            let bucket = Arc::make_mut(&mut next.buckets[bucket_of(info.id)]);
            let view = Arc::new(QueueView::with_tenant(info.clone(), tenant));
            let old = bucket.insert(view.id, view.clone());
            if let Some(old) = &old {
                unindex_name(&mut next.names, old);
            }
            index_name(&mut next.names, &view);
            match old {
                Some(old) if old.tenant == view.tenant => {}
                old => {
                    let counts = Arc::make_mut(&mut next.counts);
                    if let Some(old) = old {
                        if let Some(count) = counts.get_mut(&old.tenant) {
                            *count -= 1;
                        }
                    }
                    *counts.entry(view.tenant.clone()).or_default() += 1;
                }
            }
        }
        next
    }

    pub fn get(&self, queue: QueueId) -> Option<&QueueView> {
        self.buckets[bucket_of(queue)]
            .get(&queue)
            .map(|view| &**view)
    }

    /// The tenant's queue named `name`, through the name index (no scan).
    pub fn named(&self, tenant: &str, name: &str) -> Option<&QueueView> {
        let hash = name_hash(tenant, name);
        self.names[name_bucket_of(hash)]
            .get(&hash)?
            .iter()
            .filter_map(|id| self.get(*id))
            .find(|view| &*view.tenant == tenant && &*view.name == name)
    }

    /// Every queue (by id within each bucket, buckets in turn).
    pub fn values(&self) -> impl Iterator<Item = &QueueView> {
        self.buckets
            .iter()
            .flat_map(|bucket| bucket.values().map(|view| &**view))
    }

    pub fn len(&self) -> usize {
        self.buckets.iter().map(|bucket| bucket.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.buckets.iter().all(|bucket| bucket.is_empty())
    }

    /// How many queues the tenant owns.
    pub fn count_of(&self, tenant: &str) -> usize {
        self.counts.get(tenant).map_or(0, |count| *count as usize)
    }

    /// The tenant's queues, ordered by name.
    pub fn queues_of(&self, tenant: &str) -> Vec<QueueView> {
        let mut views: Vec<QueueView> = self
            .values()
            .filter(|q| &*q.tenant == tenant)
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
    /// The node's monitoring ring (`crate::monitor`), beside the directories it samples.
    pub monitor: crate::monitor::Monitor,
}

impl Directories {
    /// Directories starting with `tenants` (loaded by the host) and no queues (published
    /// by the metadata shard's first repair, before the node serves).
    pub fn new(tenants: TenantDirectory) -> Arc<Directories> {
        Arc::new(Directories {
            tenants: ArcSwap::from_pointee(tenants),
            queues: ArcSwap::from_pointee(QueueDirectory::default()),
            monitor: crate::monitor::Monitor::default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use sluice_core::engine::types::GroupId;

    use super::*;

    fn info(id: u32, tenant: &str, name: &str, groups: &[u32]) -> QueueInfo {
        QueueInfo {
            id: QueueId(id),
            tenant: tenant.to_string(),
            name: name.to_string(),
            config: crate::tests::normal(),
            created_ms: 0,
            meta: Vec::new(),
            dead_letter_to: None,
            sent_total: 0,
            stored: 0,
            delayed: 0,
            groups: groups
                .iter()
                .map(|g| (GroupId(*g), format!("g{g}")))
                .collect(),
        }
    }

    fn summary(directory: &QueueDirectory) -> Vec<(u32, String, usize)> {
        let mut all: Vec<_> = directory
            .values()
            .map(|v| (v.id.0, v.name.to_string(), v.groups.len()))
            .collect();
        all.sort();
        all
    }

    /// Goal: a directory brought forward by changes equals one read whole at the same
    /// index, counts per tenant included, and the one it came from is left as it was.
    /// Method: ids that share a bucket and ids that do not; a delete, a create, a change.
    #[test]
    fn changes_give_the_same_directory_as_a_whole_read() {
        let before = QueueDirectory::from_infos(
            10,
            vec![
                info(1, "t1", "a", &[]),
                info(2, "t1", "b", &[]),
                info(257, "t2", "c", &[]),
            ],
        );
        let after = before.with_changes(
            20,
            &[info(2, "t1", "b", &[7]), info(513, "t2", "d", &[])],
            &[QueueId(1), QueueId(999)],
        );
        let whole = QueueDirectory::from_infos(
            20,
            vec![
                info(2, "t1", "b", &[7]),
                info(257, "t2", "c", &[]),
                info(513, "t2", "d", &[]),
            ],
        );
        assert_eq!(summary(&after), summary(&whole));
        assert_eq!(after.applied, 20);
        assert_eq!((after.count_of("t1"), after.count_of("t2")), (1, 2));
        assert_eq!(after.len(), 3);
        assert_eq!(after.get(QueueId(2)).map(|v| v.groups.len()), Some(1));
        assert!(after.get(QueueId(1)).is_none());
        assert_eq!(summary(&before).len(), 3);
        assert_eq!(before.count_of("t1"), 2);
        assert_eq!(before.get(QueueId(2)).map(|v| v.groups.len()), Some(0));
        // The name index follows: a deleted name is gone, a new one found, a name is the
        // tenant's own, and the older directory still finds what it held.
        let id =
            |d: &QueueDirectory, tenant: &str, name: &str| d.named(tenant, name).map(|v| v.id.0);
        assert_eq!(id(&after, "t1", "a"), None);
        assert_eq!(id(&after, "t1", "b"), Some(2));
        assert_eq!(id(&after, "t2", "d"), Some(513));
        assert_eq!(id(&after, "t1", "d"), None);
        assert_eq!(id(&whole, "t2", "c"), Some(257));
        assert_eq!(id(&before, "t1", "a"), Some(1));
    }
}
