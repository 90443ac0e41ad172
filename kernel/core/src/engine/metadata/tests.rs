//! Tests of the metadata changes and their repair on real engines over simulated disks:
//! a change fails part-way (fsync EIO), the node restarts, repair makes the partitions
//! agree.

use super::*;
use crate::engine::types::{GroupStart, QueueMode, RetryPolicy};
use crate::engine::{Engine, EngineConfig, EngineLimits};
use crate::log::{LogConfig, VerifyOnOpen};
use crate::sim_disk::{block_on, CrashMode, SimDisk};
use crate::storage::{IoErrorKind, IoOp};

const NOW: u64 = 1_000_000;

/// A queue as a partition holds it: id, tenant, name, groups.
type Held = (QueueId, String, String, Vec<(GroupId, String)>);

/// A node's partitions on simulated disks that outlive the engines, so a test can
/// fail a disk, "restart" (reopen every engine) and repair.
struct Check {
    disks: Vec<SimDisk>,
    partitioned: Engines,
    gate: MetadataGate,
}

fn engine_config() -> EngineConfig {
    EngineConfig {
        log: LogConfig {
            segment_bytes_max: 64 * 1024,
            index_interval_bytes: 4096,
            preallocate_bytes: 0,
            verify_on_open: VerifyOnOpen::Tail,
            cache_bytes_max: crate::limits::LOG_CACHE_BYTES_DEFAULT,
            recycle_segments_max: crate::limits::LOG_RECYCLE_SEGMENTS_DEFAULT,
        },
        limits: EngineLimits::dms(),
        snapshot_every_records: 10_000,
    }
}

/// A node's engines held in one place, every call at `NOW`: the partitions as the
/// metadata functions reach them.
struct Engines(Vec<Engine<SimDisk>>);

impl Engines {
    fn engine(&self, partition: u32) -> &Engine<SimDisk> {
        &self.0[usize::try_from(partition).expect("fits")]
    }
}

impl MetadataPartitions for Engines {
    type Error = EngineError;

    fn partition_count(&self) -> u32 {
        u32::try_from(self.0.len()).expect("few partitions")
    }

    fn engine_error(error: &EngineError) -> Option<&EngineError> {
        Some(error)
    }

    async fn list_queues(&self, partition: u32) -> Result<Vec<QueueInfo>, EngineError> {
        let engine = self.engine(partition);
        Ok(engine
            .queue_ids()
            .into_iter()
            .map(|queue| engine.queue_info(queue).expect("listed just now"))
            .collect())
    }

    async fn create_queue(
        &self,
        partition: u32,
        queue: &NewQueue<'_>,
        id: Option<QueueId>,
    ) -> Result<QueueId, EngineError> {
        let (tenant, name, config) = (queue.tenant, queue.name, queue.config);
        self.engine(partition)
            .create_queue_with_id(id, tenant, name, config, queue.meta.to_vec(), NOW)
            .await
    }

    async fn delete_queue(&self, partition: u32, queue: QueueId) -> Result<(), EngineError> {
        self.engine(partition).delete_queue(queue, NOW).await
    }

    async fn set_queue_meta(
        &self,
        partition: u32,
        queue: QueueId,
        meta: &[u8],
    ) -> Result<(), EngineError> {
        self.engine(partition)
            .set_queue_meta(queue, meta.to_vec(), NOW)
            .await
    }

    async fn set_dead_letter(
        &self,
        partition: u32,
        queue: QueueId,
        policy: DeadLetterPolicy,
    ) -> Result<(), EngineError> {
        let DeadLetterPolicy {
            max_consume_count,
            target,
        } = policy;
        self.engine(partition)
            .set_dead_letter(queue, max_consume_count, target, NOW)
            .await
    }

    async fn set_partitions(
        &self,
        partition: u32,
        queue: QueueId,
        partitions: u16,
    ) -> Result<(), EngineError> {
        self.engine(partition)
            .set_partitions(queue, partitions, NOW)
            .await
    }

    async fn create_group(
        &self,
        partition: u32,
        queue: QueueId,
        name: &str,
        id: Option<GroupId>,
    ) -> Result<GroupId, EngineError> {
        self.engine(partition)
            .create_group_with_id(id, queue, name, GroupStart::Oldest, NOW)
            .await
    }

    async fn delete_group(
        &self,
        partition: u32,
        queue: QueueId,
        group: GroupId,
    ) -> Result<(), EngineError> {
        self.engine(partition).delete_group(queue, group, NOW).await
    }
}

fn open(disks: &[SimDisk]) -> Engines {
    let engines = disks
        .iter()
        .map(|disk| block_on(Engine::open(disk.clone(), engine_config(), NOW)).unwrap())
        .collect();
    Engines(engines)
}

fn normal() -> QueueConfig {
    QueueConfig {
        mode: QueueMode::Normal,
        retention_ms: 3_600_000,
        max_consume_count: None,
        retry: RetryPolicy::Immediate,
        dedup_window_ms: 60_000,
        partitions: 0,
    }
}

fn named(name: &str) -> NewQueue<'_> {
    NewQueue {
        tenant: "t",
        name,
        config: normal(),
        meta: b"m",
    }
}

impl Check {
    fn new(partitions: u64) -> Check {
        let disks: Vec<SimDisk> = (0..partitions).map(SimDisk::new).collect();
        Check {
            partitioned: open(&disks),
            disks,
            gate: MetadataGate::new(false),
        }
    }

    fn at(&self) -> &Engines {
        &self.partitioned
    }

    fn create_queue(&self, name: &str) -> Result<QueueId, ChangeError<EngineError>> {
        let permit = block_on(self.gate.lock());
        block_on(permit.create_queue(self.at(), &named(name)))
    }

    fn create_group(
        &self,
        queue: QueueId,
        name: &str,
    ) -> Result<GroupId, ChangeError<EngineError>> {
        let permit = block_on(self.gate.lock());
        block_on(permit.create_group(self.at(), queue, name))
    }

    fn set_queue_meta(&self, queue: QueueId, meta: &[u8]) -> Result<(), ChangeError<EngineError>> {
        let permit = block_on(self.gate.lock());
        block_on(permit.set_queue_meta(self.at(), queue, meta))
    }

    fn set_dead_letter(
        &self,
        queue: QueueId,
        policy: DeadLetterPolicy,
    ) -> Result<(), ChangeError<EngineError>> {
        let permit = block_on(self.gate.lock());
        block_on(permit.set_dead_letter(self.at(), queue, policy))
    }

    /// Every partition's dead-letter policy of `queue`.
    fn policies(&self, queue: QueueId) -> Vec<DeadLetterPolicy> {
        (0..self.at().partition_count())
            .map(|p| DeadLetterPolicy::of(&self.at().engine(p).queue_info(queue).unwrap()))
            .collect()
    }

    /// Every partition's meta of `queue`.
    fn metas(&self, queue: QueueId) -> Vec<Vec<u8>> {
        (0..self.at().partition_count())
            .map(|p| self.at().engine(p).queue_info(queue).unwrap().meta)
            .collect()
    }

    fn delete_queue(&self, queue: QueueId) -> Result<(), ChangeError<EngineError>> {
        let permit = block_on(self.gate.lock());
        block_on(permit.delete_queue(self.at(), queue))
    }

    /// The process dies: `lost` loses its unsynced writes, every engine is reopened
    /// (a node keeps its repair flag only in memory, so it needs repair afterwards).
    fn restart(&mut self, lost: Option<usize>) {
        if let Some(partition) = lost {
            self.disks[partition].crash_with(CrashMode::LoseUnsynced);
        }
        self.partitioned = open(&self.disks);
        self.gate = MetadataGate::new(true);
    }

    fn reconcile(&self) -> Result<Vec<Repair>, RepairError<EngineError>> {
        let permit = block_on(self.gate.lock());
        block_on(permit.reconcile(self.at()))
    }

    /// Partition `partition`'s queues as (id, tenant, name, groups), by id.
    fn held(&self, partition: u32) -> Vec<Held> {
        let mut infos = block_on(self.at().list_queues(partition)).unwrap();
        infos.sort_by_key(|info| info.id);
        infos
            .into_iter()
            .map(|i| (i.id, i.tenant, i.name, i.groups))
            .collect()
    }

    fn assert_agree(&self) {
        for partition in 1..self.at().partition_count() {
            assert_eq!(self.held(partition), self.held(0), "partition {partition}");
        }
    }
}

#[test]
fn a_create_that_fails_on_partition_1_is_repaired_by_reconcile() {
    // Goal: a queue create and then a group create that fail part-way (fsync EIO on a
    // later partition) leave partitions that reconcile makes agree, with partition 0's
    // ids. Method: fail the disk's sync, restart losing the unsynced tail, repair.
    let mut check = Check::new(3);
    let a = check.create_queue("a").unwrap();
    check.create_group(a, "g").unwrap();
    check.disks[1].fail_next(IoOp::Sync, IoErrorKind::Io);
    let failed = check.create_queue("b").unwrap_err();
    assert_eq!(failed.partition, 1);
    assert!(failed.part_way);
    assert!(check.gate.needs_repair());
    assert_eq!(check.held(0).len(), 2);
    assert_eq!(check.held(2).len(), 1, "partition 2 never saw the create");
    check.restart(Some(1));
    let repaired = check.reconcile().unwrap();
    let b = check.held(0)[1].0;
    assert_eq!(
        repaired,
        [
            Repair::AddedQueue {
                partition: 1,
                queue: b
            },
            Repair::AddedQueue {
                partition: 2,
                queue: b
            },
        ]
    );
    check.assert_agree();
    assert!(!check.gate.needs_repair());
    // Now a group: partition 2's fsync fails, partitions 0 and 1 hold the group.
    check.disks[2].fail_next(IoOp::Sync, IoErrorKind::Io);
    let failed = check.create_group(b, "h").unwrap_err();
    assert_eq!((failed.partition, failed.part_way), (2, true));
    check.restart(Some(2));
    let h = check.held(0)[1].3[0].0;
    let repaired = check.reconcile().unwrap();
    assert_eq!(
        repaired,
        [Repair::AddedGroup {
            partition: 2,
            queue: b,
            group: h
        }]
    );
    check.assert_agree();
    // The partitions go on handing out the same ids.
    let c = check.create_queue("c").unwrap();
    check.create_group(c, "g").unwrap();
    check.assert_agree();
}

#[test]
fn a_create_whose_failed_fsync_survives_is_kept_and_completed() {
    // Goal: a failed fsync may still leave the record on disk (the pages were written);
    // repair then keeps it there and only adds the queue where it is missing. Method:
    // fail partition 1's sync, restart without losing anything.
    let mut check = Check::new(3);
    check.disks[1].fail_next(IoOp::Sync, IoErrorKind::Io);
    check.create_queue("a").unwrap_err();
    check.restart(None);
    let repaired = check.reconcile().unwrap();
    let a = check.held(0)[0].0;
    assert_eq!(
        repaired,
        [Repair::AddedQueue {
            partition: 2,
            queue: a
        }],
        "partition 1 kept the record whose fsync failed"
    );
    check.assert_agree();
}

#[test]
fn a_delete_that_fails_part_way_is_finished_by_reconcile() {
    // Goal: a queue delete that fails on partition 1 leaves the queue on partition 2;
    // reconcile removes it everywhere, groups included. Method: as above, for a delete.
    let mut check = Check::new(3);
    let keep = check.create_queue("keep").unwrap();
    let gone = check.create_queue("gone").unwrap();
    check.create_group(gone, "g").unwrap();
    check.create_group(keep, "g").unwrap();
    check.disks[1].fail_next(IoOp::Sync, IoErrorKind::Io);
    let failed = check.delete_queue(gone).unwrap_err();
    assert_eq!((failed.partition, failed.part_way), (1, true));
    check.restart(Some(1));
    let repaired = check.reconcile().unwrap();
    assert_eq!(
        repaired,
        [
            Repair::DroppedQueue {
                partition: 1,
                queue: gone
            },
            Repair::DroppedQueue {
                partition: 2,
                queue: gone
            },
        ]
    );
    check.assert_agree();
    assert_eq!(check.held(2).len(), 1);
    // Deleting again is refused on partition 0 alone: nothing was changed.
    let again = check.delete_queue(gone).unwrap_err();
    assert_eq!(again.error, EngineError::QueueNotFound);
    assert_eq!((again.partition, again.part_way), (0, false));
    assert!(!check.gate.needs_repair());
}

#[test]
fn a_later_partition_that_already_lacks_a_deleted_item_is_fine() {
    // Goal: a delete that repeats an earlier half-done one does not fail on the
    // partitions that already applied it. Method: delete on partition 1 directly.
    let check = Check::new(2);
    let q = check.create_queue("q").unwrap();
    let g = check.create_group(q, "g").unwrap();
    block_on(check.at().delete_group(1, q, g)).unwrap();
    block_on(delete_group(check.at(), q, g)).unwrap();
    block_on(check.at().delete_queue(1, q)).unwrap();
    check.delete_queue(q).unwrap();
    check.assert_agree();
    assert!(check.held(0).is_empty());
}

#[test]
fn reconcile_gives_partition_0s_ids_when_sequences_differ() {
    // Goal: ids agree even when a later partition's own sequence differs (simulation
    // seed 2851: a create that failed on partition 1 after writing its record left
    // partition 1's next id one higher, and every repair after it failed). Method: give
    // partition 0 changes that partition 1 never saw (a queue created and deleted; a
    // group created and deleted), then one it lacks; repair must create it under
    // partition 0's id. Burn an id on partition 1 alone too, then create through the
    // node: partition 1 takes partition 0's id.
    let check = Check::new(2);
    let at = check.at();
    let x = block_on(at.create_queue(0, &named("x"), None)).unwrap();
    block_on(at.delete_queue(0, x)).unwrap();
    let y = block_on(at.create_queue(0, &named("y"), None)).unwrap();
    assert_ne!(x, y);
    check.reconcile().unwrap();
    check.assert_agree();
    assert_eq!(check.held(1)[0].0, y);

    let check = Check::new(2);
    let at = check.at();
    let q = check.create_queue("q").unwrap();
    let g = block_on(at.create_group(0, q, "g", None)).unwrap();
    block_on(at.delete_group(0, q, g)).unwrap();
    block_on(at.create_group(0, q, "h", None)).unwrap();
    check.reconcile().unwrap();
    check.assert_agree();

    let check = Check::new(2);
    let at = check.at();
    let burned = block_on(at.create_queue(1, &named("burned"), None)).unwrap();
    block_on(at.delete_queue(1, burned)).unwrap();
    let made = check.create_queue("made").unwrap();
    check.assert_agree();
    assert_eq!(made, burned, "partition 0's sequence had not used the id");
}

#[test]
fn reconcile_refuses_a_same_id_with_another_name() {
    // Goal: repair never guesses. Method: partition 1 holds partition 0's queue id
    // under another name.
    let check = Check::new(2);
    let at = check.at();
    let x = block_on(at.create_queue(0, &named("x"), None)).unwrap();
    assert_eq!(block_on(at.create_queue(1, &named("z"), None)), Ok(x));
    let differs = check.reconcile().unwrap_err();
    assert_eq!(
        differs,
        RepairError::QueueDiffers {
            partition: 1,
            queue: x
        }
    );
    assert!(differs.to_string().contains("another tenant or name"));
}

#[test]
fn a_refusal_on_partition_0_leaves_no_repair_behind() {
    // Goal: only a change that may have split the partitions asks for repair. Method:
    // an invalid name (refused by partition 0), then a refusal on partition 1 (a
    // name it already holds, put there behind the node's back).
    let check = Check::new(2);
    let refused = check.create_queue("bad name").unwrap_err();
    assert_eq!(refused.error, EngineError::InvalidName);
    assert!(!refused.part_way);
    assert!(!check.gate.needs_repair());
    block_on(check.at().create_queue(1, &named("q"), None)).unwrap();
    let refused = check.create_queue("q").unwrap_err();
    assert_eq!(
        (refused.partition, refused.error),
        (1, EngineError::QueueExists)
    );
    assert!(refused.part_way);
    assert!(check.gate.needs_repair());
}

#[test]
fn a_meta_change_that_fails_part_way_is_finished_by_reconcile() {
    // Goal: a queue's adapter fields are replaced on every partition, durably, and a
    // change that failed on a later partition is completed by repair from partition 0.
    // Method: set, restart, check; then fail partition 2's fsync, restart losing its
    // unsynced tail, repair.
    let mut check = Check::new(3);
    let q = check.create_queue("q").unwrap();
    assert_eq!(
        check.metas(q),
        [b"m".to_vec(), b"m".to_vec(), b"m".to_vec()]
    );
    check.set_queue_meta(q, b"tags: a").unwrap();
    check.restart(None);
    assert!(check.reconcile().unwrap().is_empty());
    assert_eq!(check.metas(q), vec![b"tags: a".to_vec(); 3]);
    check.disks[2].fail_next(IoOp::Sync, IoErrorKind::Io);
    let failed = check.set_queue_meta(q, b"tags: b").unwrap_err();
    assert_eq!((failed.partition, failed.part_way), (2, true));
    check.restart(Some(2));
    assert_eq!(check.metas(q)[2], b"tags: a");
    let repaired = check.reconcile().unwrap();
    assert_eq!(
        repaired,
        [Repair::SetQueueMeta {
            partition: 2,
            queue: q
        }]
    );
    assert_eq!(check.metas(q), vec![b"tags: b".to_vec(); 3]);
    // A missing queue and oversized fields are refused on partition 0: nothing changed.
    let missing = check.set_queue_meta(QueueId(99), b"x").unwrap_err();
    assert_eq!(
        (missing.error, missing.part_way),
        (EngineError::QueueNotFound, false)
    );
    let big = vec![b'x'; crate::limits::QUEUE_META_BYTES_MAX + 1];
    let refused = check.set_queue_meta(q, &big).unwrap_err();
    assert_eq!(refused.error, EngineError::InvalidConfig("meta"));
    assert!(!check.gate.needs_repair());
}

#[test]
fn a_dead_letter_policy_that_fails_part_way_is_finished_by_reconcile() {
    // Goal: a dead-letter policy reaches every partition, and one cut short on a later
    // partition is completed by repair, also where repair first re-creates the queue;
    // deleting the target clears it everywhere. Method: fail partition 2's fsync,
    // restart losing its unsynced tail, repair; then drop the source on partition 1
    // behind the node's back and repair again.
    let mut check = Check::new(3);
    let source = check.create_queue("source").unwrap();
    let dlq = check.create_queue("dlq").unwrap();
    let policy = DeadLetterPolicy {
        max_consume_count: Some(3),
        target: Some(dlq),
    };
    check.disks[2].fail_next(IoOp::Sync, IoErrorKind::Io);
    let failed = check.set_dead_letter(source, policy).unwrap_err();
    assert_eq!((failed.partition, failed.part_way), (2, true));
    check.restart(Some(2));
    assert_eq!(check.policies(source)[2], DeadLetterPolicy::default());
    let repaired = check.reconcile().unwrap();
    assert_eq!(
        repaired,
        [Repair::SetDeadLetter {
            partition: 2,
            queue: source
        }]
    );
    assert_eq!(check.policies(source), vec![policy; 3]);
    block_on(check.at().engine(1).delete_queue(source, NOW)).unwrap();
    let repaired = check.reconcile().unwrap();
    assert_eq!(
        repaired,
        [
            Repair::AddedQueue {
                partition: 1,
                queue: source
            },
            Repair::SetDeadLetter {
                partition: 1,
                queue: source
            }
        ]
    );
    assert_eq!(check.policies(source), vec![policy; 3]);
    check.delete_queue(dlq).unwrap();
    let kept = DeadLetterPolicy {
        target: None,
        ..policy
    };
    assert_eq!(check.policies(source), vec![kept; 3]);
    assert!(check.reconcile().unwrap().is_empty());
}

#[test]
fn a_partition_count_grown_part_way_is_finished_by_reconcile() {
    // Goal: a queue's partition count grows on every partition, only grows, only for a
    // NORMAL queue with a count of its own, and a growth cut short on a later partition
    // is completed by repair. Method: fail partition 1's fsync, restart losing its
    // unsynced tail, repair.
    let mut check = Check::new(3);
    let permit = block_on(check.gate.lock());
    let two = NewQueue {
        config: QueueConfig {
            partitions: 2,
            ..normal()
        },
        ..named("topic")
    };
    let q = block_on(permit.create_queue(check.at(), &two)).unwrap();
    let all = block_on(permit.create_queue(check.at(), &named("all"))).unwrap();
    drop(permit);
    let grow = |check: &Check, queue, count| {
        let permit = block_on(check.gate.lock());
        block_on(permit.set_partitions(check.at(), queue, count))
    };
    let counts = |check: &Check| -> Vec<u16> {
        (0..3)
            .map(|p| {
                check
                    .at()
                    .engine(p)
                    .queue_info(q)
                    .unwrap()
                    .config
                    .partitions
            })
            .collect()
    };
    let refused = EngineError::InvalidConfig("partitions");
    for (queue, count) in [(q, 2), (q, 1), (all, 4)] {
        let error = grow(&check, queue, count).unwrap_err();
        assert_eq!((error.error, error.part_way), (refused.clone(), false));
    }
    check.disks[1].fail_next(IoOp::Sync, IoErrorKind::Io);
    let failed = grow(&check, q, 3).unwrap_err();
    assert_eq!((failed.partition, failed.part_way), (1, true));
    check.restart(Some(1));
    assert_eq!(counts(&check), [3, 2, 2]);
    let repaired = check.reconcile().unwrap();
    assert_eq!(
        repaired,
        [
            Repair::SetPartitions {
                partition: 1,
                queue: q
            },
            Repair::SetPartitions {
                partition: 2,
                queue: q
            }
        ]
    );
    assert_eq!(counts(&check), [3, 3, 3]);
    check.restart(None);
    assert_eq!(counts(&check), [3, 3, 3], "durable");
}
