//! Queue and group metadata across a node's partitions: the order changes are applied in,
//! and the repair ("reconcile") that brings partitions back in line after a change failed
//! or crashed half-way. The node layer (sluice-node, which the glommio server, the tests,
//! the fuzz targets and the madsim simulation all run) reaches the partitions through
//! [`MetadataPartitions`], forwarding each call to the shard that owns the partition.
//!
//! Every partition's engine holds every queue and group. A change is applied to partition
//! 0 first and then to the others in order, one change at a time ([`MetadataGate`]), so
//! after a crash or a storage fault each later partition holds a prefix of partition 0's
//! changes. Partition 0 is the truth: [`reconcile`] drops what the others hold beyond it
//! and adds what they miss. Partition 0 picks each new queue's and group's id from its
//! sequence and the other partitions take that id (`Engine::create_queue_with_id`), so ids
//! agree even when a partition's own sequence ran ahead (simulation seed 2851: a group
//! create that failed on partition 1 after writing its record made partition 1's next id
//! one higher, and every repair after it failed). Repair refuses (an error, nothing
//! guessed) when an id would still differ.
//!
//! No I/O of its own, no clock, no runtime: the calls go through the trait, time is the
//! implementation's business, and what repair did is returned for the driver to log.

mod gate;
mod repair;
#[cfg(test)]
mod tests;

pub use gate::{MetadataGate, MetadataPermit};
pub use repair::{reconcile, Repair, RepairError, RepairStep};

use std::fmt;

use super::config::QueueInfo;
use super::types::{EngineError, GroupId, QueueConfig, QueueId};

/// A queue to create on a partition.
#[derive(Clone, Copy, Debug)]
pub struct NewQueue<'a> {
    pub tenant: &'a str,
    pub name: &'a str,
    pub config: QueueConfig,
    /// Opaque adapter fields (see `Engine::create_queue_with_meta`).
    pub meta: &'a [u8],
}

/// The metadata operations of one partition, as a node reaches them. Groups are created
/// at the oldest message (`GroupStart::Oldest`), as every node creates them, so that a
/// group re-created by repair starts where the original did.
#[allow(async_fn_in_trait)]
pub trait MetadataPartitions {
    /// A failed call: the engine's error, or the driver's own (a shard not reachable).
    type Error: fmt::Debug;

    fn partition_count(&self) -> u32;

    /// The engine's error inside `error`, if the engine answered (not the transport).
    fn engine_error(error: &Self::Error) -> Option<&EngineError>;

    /// Every queue the partition holds, with its groups.
    async fn list_queues(&self, partition: u32) -> Result<Vec<QueueInfo>, Self::Error>;

    /// Creates `queue` under `id`, or under the engine's next id when `None`.
    async fn create_queue(
        &self,
        partition: u32,
        queue: &NewQueue<'_>,
        id: Option<QueueId>,
    ) -> Result<QueueId, Self::Error>;

    async fn delete_queue(&self, partition: u32, queue: QueueId) -> Result<(), Self::Error>;

    /// Replaces the queue's opaque adapter fields (`Engine::set_queue_meta`).
    async fn set_queue_meta(
        &self,
        partition: u32,
        queue: QueueId,
        meta: &[u8],
    ) -> Result<(), Self::Error>;

    /// Sets the queue's dead-letter policy (`Engine::set_dead_letter`).
    async fn set_dead_letter(
        &self,
        partition: u32,
        queue: QueueId,
        policy: DeadLetterPolicy,
    ) -> Result<(), Self::Error>;

    /// Spreads the queue over more partitions (`Engine::set_partitions`).
    async fn set_partitions(
        &self,
        partition: u32,
        queue: QueueId,
        partitions: u16,
    ) -> Result<(), Self::Error>;

    /// Creates group `name` under `id`, or under the engine's next id when `None`.
    async fn create_group(
        &self,
        partition: u32,
        queue: QueueId,
        name: &str,
        id: Option<GroupId>,
    ) -> Result<GroupId, Self::Error>;

    async fn delete_group(
        &self,
        partition: u32,
        queue: QueueId,
        group: GroupId,
    ) -> Result<(), Self::Error>;
}

/// A queue's dead-letter policy: after `max_consume_count` failures (`None`: never) a
/// message goes to its group's dead letters, or to queue `target` when set.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeadLetterPolicy {
    pub max_consume_count: Option<u16>,
    pub target: Option<QueueId>,
}

impl DeadLetterPolicy {
    /// The policy `info`'s queue has.
    pub fn of(info: &QueueInfo) -> DeadLetterPolicy {
        DeadLetterPolicy {
            max_consume_count: info.config.max_consume_count,
            target: info.dead_letter_to,
        }
    }
}

/// A metadata change that failed on `partition` (the partitions before it applied it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChangeError<E> {
    pub partition: u32,
    pub error: E,
    /// The partitions may now disagree: an earlier partition applied the change, or this
    /// one failed in a way that leaves unknown whether it did (a storage fault, a shard
    /// not reachable) rather than refusing it.
    pub part_way: bool,
}

impl<E> ChangeError<E> {
    fn at<P: MetadataPartitions<Error = E>>(partition: u32, error: E) -> ChangeError<E> {
        let refused = matches!(
            P::engine_error(&error),
            Some(engine) if !matches!(engine, EngineError::Storage(_))
        );
        ChangeError {
            partition,
            part_way: partition > 0 || !refused,
            error,
        }
    }
}

/// Creates a queue on every partition, partition 0 first; answers the id they all gave.
pub async fn create_queue<P: MetadataPartitions>(
    partitions: &P,
    queue: &NewQueue<'_>,
) -> Result<QueueId, ChangeError<P::Error>> {
    let mut id = None;
    for partition in 0..partitions.partition_count() {
        // Partition 0 picks the id; the others take it (their sequences may have run
        // ahead: a create that failed there after writing its record).
        let created = partitions
            .create_queue(partition, queue, id)
            .await
            .map_err(|error| ChangeError::at::<P>(partition, error))?;
        assert!(
            id.is_none_or(|id| id == created),
            "queue ids agree across partitions (partition {partition} gave {created:?}, not {id:?})"
        );
        id = Some(created);
    }
    Ok(id.expect("at least one partition"))
}

/// Deletes a queue on every partition, partition 0 first. A later partition that already
/// lacks it (an earlier attempt failed half-way) is fine.
pub async fn delete_queue<P: MetadataPartitions>(
    partitions: &P,
    queue: QueueId,
) -> Result<(), ChangeError<P::Error>> {
    for partition in 0..partitions.partition_count() {
        if let Err(error) = partitions.delete_queue(partition, queue).await {
            let gone = matches!(P::engine_error(&error), Some(EngineError::QueueNotFound));
            if !(gone && partition > 0) {
                return Err(ChangeError::at::<P>(partition, error));
            }
        }
    }
    Ok(())
}

/// Replaces a queue's adapter fields on every partition, partition 0 first (the one the
/// node's directory reads). A later partition that lacks the queue is an error like any
/// other: repair re-creates the queue there with partition 0's fields.
pub async fn set_queue_meta<P: MetadataPartitions>(
    partitions: &P,
    queue: QueueId,
    meta: &[u8],
) -> Result<(), ChangeError<P::Error>> {
    for partition in 0..partitions.partition_count() {
        partitions
            .set_queue_meta(partition, queue, meta)
            .await
            .map_err(|error| ChangeError::at::<P>(partition, error))?;
    }
    Ok(())
}

/// Sets a queue's dead-letter policy on every partition, partition 0 first.
pub async fn set_dead_letter<P: MetadataPartitions>(
    partitions: &P,
    queue: QueueId,
    policy: DeadLetterPolicy,
) -> Result<(), ChangeError<P::Error>> {
    for partition in 0..partitions.partition_count() {
        partitions
            .set_dead_letter(partition, queue, policy)
            .await
            .map_err(|error| ChangeError::at::<P>(partition, error))?;
    }
    Ok(())
}

/// Spreads a queue over more partitions, on every partition, partition 0 first.
pub async fn set_partitions<P: MetadataPartitions>(
    partitions: &P,
    queue: QueueId,
    count: u16,
) -> Result<(), ChangeError<P::Error>> {
    for partition in 0..partitions.partition_count() {
        partitions
            .set_partitions(partition, queue, count)
            .await
            .map_err(|error| ChangeError::at::<P>(partition, error))?;
    }
    Ok(())
}

/// Creates a group on every partition, partition 0 first; answers the id they all gave.
pub async fn create_group<P: MetadataPartitions>(
    partitions: &P,
    queue: QueueId,
    name: &str,
) -> Result<GroupId, ChangeError<P::Error>> {
    let mut id = None;
    for partition in 0..partitions.partition_count() {
        let created = partitions
            .create_group(partition, queue, name, id)
            .await
            .map_err(|error| ChangeError::at::<P>(partition, error))?;
        assert!(
            id.is_none_or(|id| id == created),
            "group ids agree across partitions (partition {partition} gave {created:?}, not {id:?})"
        );
        id = Some(created);
    }
    Ok(id.expect("at least one partition"))
}

/// Deletes a group on every partition, partition 0 first. A later partition that already
/// lacks it is fine.
pub async fn delete_group<P: MetadataPartitions>(
    partitions: &P,
    queue: QueueId,
    group: GroupId,
) -> Result<(), ChangeError<P::Error>> {
    for partition in 0..partitions.partition_count() {
        if let Err(error) = partitions.delete_group(partition, queue, group).await {
            let gone = matches!(P::engine_error(&error), Some(EngineError::GroupNotFound));
            if !(gone && partition > 0) {
                return Err(ChangeError::at::<P>(partition, error));
            }
        }
    }
    Ok(())
}
