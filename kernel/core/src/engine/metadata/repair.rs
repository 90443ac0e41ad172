//! Repair ("reconcile"): partition 0 is the truth; every later partition is made to hold
//! exactly its queues (with their adapter fields) and groups, with the same ids, or the
//! repair stops with an error.

use std::collections::HashMap;
use std::fmt;

use super::{DeadLetterPolicy, MetadataPartitions, NewQueue};
use crate::engine::config::QueueInfo;
use crate::engine::types::{GroupId, QueueId};

/// One step repair took.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Repair {
    DroppedQueue {
        partition: u32,
        queue: QueueId,
    },
    DroppedGroup {
        partition: u32,
        queue: QueueId,
        group: GroupId,
    },
    AddedQueue {
        partition: u32,
        queue: QueueId,
    },
    AddedGroup {
        partition: u32,
        queue: QueueId,
        group: GroupId,
    },
    /// The queue's adapter fields differed from partition 0's and were replaced.
    SetQueueMeta {
        partition: u32,
        queue: QueueId,
    },
    /// The queue's dead-letter policy differed from partition 0's and was replaced.
    SetDeadLetter {
        partition: u32,
        queue: QueueId,
    },
    /// The queue spread over fewer partitions than on partition 0 and was grown.
    SetPartitions {
        partition: u32,
        queue: QueueId,
    },
}

impl fmt::Display for Repair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Repair::DroppedQueue { partition, queue } => {
                write!(
                    f,
                    "partition {partition}: dropped queue {} (repair)",
                    queue.0
                )
            }
            Repair::DroppedGroup {
                partition,
                queue,
                group,
            } => write!(
                f,
                "partition {partition}: dropped group {} of queue {} (repair)",
                group.0, queue.0
            ),
            Repair::AddedQueue { partition, queue } => {
                write!(f, "partition {partition}: added queue {} (repair)", queue.0)
            }
            Repair::AddedGroup {
                partition,
                queue,
                group,
            } => write!(
                f,
                "partition {partition}: added group {} of queue {} (repair)",
                group.0, queue.0
            ),
            Repair::SetQueueMeta { partition, queue } => write!(
                f,
                "partition {partition}: replaced the fields of queue {} (repair)",
                queue.0
            ),
            Repair::SetPartitions { partition, queue } => write!(
                f,
                "partition {partition}: grew the partition count of queue {} (repair)",
                queue.0
            ),
            Repair::SetDeadLetter { partition, queue } => write!(
                f,
                "partition {partition}: replaced the dead-letter policy of queue {} (repair)",
                queue.0
            ),
        }
    }
}

/// Which call of a repair failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RepairStep {
    List,
    DropQueue,
    DropGroup,
    AddQueue,
    AddGroup,
    SetQueueMeta,
    SetDeadLetter,
    SetPartitions,
}

/// Why a repair stopped. The partitions are still apart; a later repair starts over.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RepairError<E> {
    /// A call on `partition` failed.
    Call {
        partition: u32,
        step: RepairStep,
        error: E,
    },
    /// `partition` holds `queue` under another tenant or name than partition 0.
    QueueDiffers { partition: u32, queue: QueueId },
    /// Re-creating `expected` on `partition` gave it another id.
    QueueId {
        partition: u32,
        expected: QueueId,
        got: QueueId,
    },
    /// Re-creating group `expected` of `queue` on `partition` gave it another id.
    GroupId {
        partition: u32,
        queue: QueueId,
        expected: GroupId,
        got: GroupId,
    },
}

impl<E> RepairError<E> {
    /// The failed call's error, if a call failed (rather than the partitions disagreeing).
    pub fn call_error(&self) -> Option<&E> {
        match self {
            RepairError::Call { error, .. } => Some(error),
            RepairError::QueueDiffers { .. }
            | RepairError::QueueId { .. }
            | RepairError::GroupId { .. } => None,
        }
    }
}

impl<E: fmt::Debug> fmt::Display for RepairError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RepairError::Call {
                partition,
                step,
                error,
            } => write!(f, "partition {partition}: {step:?}: {error:?}"),
            RepairError::QueueDiffers { partition, queue } => write!(
                f,
                "partition {partition}: queue {} has another tenant or name than on partition 0",
                queue.0
            ),
            RepairError::QueueId {
                partition,
                expected,
                got,
            } => write!(
                f,
                "partition {partition}: repair gave queue {} the id {}",
                expected.0, got.0
            ),
            RepairError::GroupId {
                partition,
                queue,
                expected,
                got,
            } => write!(
                f,
                "partition {partition}: repair gave group {} of queue {} the id {}",
                expected.0, queue.0, got.0
            ),
        }
    }
}

/// Makes every partition after the first hold exactly partition 0's queues and groups
/// (see the module doc); answers what it changed.
pub async fn reconcile<P: MetadataPartitions>(
    partitions: &P,
) -> Result<Vec<Repair>, RepairError<P::Error>> {
    let mut truth = partitions
        .list_queues(0)
        .await
        .map_err(|error| RepairError::Call {
            partition: 0,
            step: RepairStep::List,
            error,
        })?;
    truth.sort_by_key(|queue| queue.id);
    let mut repaired = Vec::new();
    for partition in 1..partitions.partition_count() {
        reconcile_partition(partitions, partition, &truth, &mut repaired).await?;
    }
    Ok(repaired)
}

/// Turns a failed call of `step` on `partition` into the repair's error.
fn call_failed<E>(partition: u32, step: RepairStep) -> impl FnOnce(E) -> RepairError<E> {
    move |error| RepairError::Call {
        partition,
        step,
        error,
    }
}

/// Makes `partition` hold exactly `truth` (partition 0's queues, by id). Drops first, then
/// adds missing queues by ascending id and then missing groups by ascending id: queue and
/// group ids come from two separate counters, so this replays partition 0's order of
/// creates as far as ids can tell.
async fn reconcile_partition<P: MetadataPartitions>(
    partitions: &P,
    partition: u32,
    truth: &[QueueInfo],
    repaired: &mut Vec<Repair>,
) -> Result<(), RepairError<P::Error>> {
    let call = |step| call_failed(partition, step);
    let held = partitions
        .list_queues(partition)
        .await
        .map_err(call(RepairStep::List))?;
    reconcile_drop(partitions, partition, truth, &held, repaired).await?;
    // By id, so matching is linear in the queue count (a walk per queue made a start-up
    // with 100,000 queues take 10^10 comparisons).
    let held_by_id: HashMap<QueueId, &QueueInfo> = held.iter().map(|h| (h.id, h)).collect();
    let mut missing_groups: Vec<(GroupId, QueueId, &str)> = Vec::new();
    // Set last, once every queue a policy may name exists here.
    let mut policies: Vec<(QueueId, DeadLetterPolicy)> = Vec::new();
    for queue in truth {
        let have = held_by_id.get(&queue.id).copied();
        if have.is_none() {
            let new = NewQueue {
                tenant: &queue.tenant,
                name: &queue.name,
                config: queue.config,
                meta: &queue.meta,
            };
            let got = partitions
                .create_queue(partition, &new, Some(queue.id))
                .await
                .map_err(call(RepairStep::AddQueue))?;
            if got != queue.id {
                return Err(RepairError::QueueId {
                    partition,
                    expected: queue.id,
                    got,
                });
            }
            repaired.push(Repair::AddedQueue {
                partition,
                queue: queue.id,
            });
        }
        if have.is_some_and(|h| h.meta != queue.meta) {
            partitions
                .set_queue_meta(partition, queue.id, &queue.meta)
                .await
                .map_err(call(RepairStep::SetQueueMeta))?;
            repaired.push(Repair::SetQueueMeta {
                partition,
                queue: queue.id,
            });
        }
        if have.is_some_and(|h| h.config.partitions != queue.config.partitions) {
            // Counts only grow, partition 0 first: this one is behind.
            partitions
                .set_partitions(partition, queue.id, queue.config.partitions)
                .await
                .map_err(call(RepairStep::SetPartitions))?;
            repaired.push(Repair::SetPartitions {
                partition,
                queue: queue.id,
            });
        }
        // A queue just added has its create's count and no target yet.
        let held_policy = have.map_or(
            DeadLetterPolicy {
                max_consume_count: queue.config.max_consume_count,
                target: None,
            },
            DeadLetterPolicy::of,
        );
        if held_policy != DeadLetterPolicy::of(queue) {
            policies.push((queue.id, DeadLetterPolicy::of(queue)));
        }
        let held_groups = have.map_or(&[][..], |h| &h.groups[..]);
        for (group, name) in queue.groups.iter().filter(|g| !held_groups.contains(g)) {
            missing_groups.push((*group, queue.id, name));
        }
    }
    missing_groups.sort_by_key(|(group, _, _)| *group);
    for (group, queue, name) in missing_groups {
        let got = partitions
            .create_group(partition, queue, name, Some(group))
            .await
            .map_err(call(RepairStep::AddGroup))?;
        if got != group {
            return Err(RepairError::GroupId {
                partition,
                queue,
                expected: group,
                got,
            });
        }
        repaired.push(Repair::AddedGroup {
            partition,
            queue,
            group,
        });
    }
    for (queue, policy) in policies {
        partitions
            .set_dead_letter(partition, queue, policy)
            .await
            .map_err(call(RepairStep::SetDeadLetter))?;
        repaired.push(Repair::SetDeadLetter { partition, queue });
    }
    Ok(())
}

/// Drops from `partition` the queues partition 0 lacks, and the groups of shared queues
/// that partition 0 lacks; refuses a shared id that names another queue.
async fn reconcile_drop<P: MetadataPartitions>(
    partitions: &P,
    partition: u32,
    truth: &[QueueInfo],
    held: &[QueueInfo],
    repaired: &mut Vec<Repair>,
) -> Result<(), RepairError<P::Error>> {
    let call = |step| call_failed(partition, step);
    let truth_by_id: HashMap<QueueId, &QueueInfo> = truth.iter().map(|t| (t.id, t)).collect();
    for queue in held {
        let Some(true_queue) = truth_by_id.get(&queue.id).copied() else {
            partitions
                .delete_queue(partition, queue.id)
                .await
                .map_err(call(RepairStep::DropQueue))?;
            repaired.push(Repair::DroppedQueue {
                partition,
                queue: queue.id,
            });
            continue;
        };
        if true_queue.tenant != queue.tenant || true_queue.name != queue.name {
            return Err(RepairError::QueueDiffers {
                partition,
                queue: queue.id,
            });
        }
        for (group, _) in queue
            .groups
            .iter()
            .filter(|g| !true_queue.groups.contains(g))
        {
            partitions
                .delete_group(partition, queue.id, *group)
                .await
                .map_err(call(RepairStep::DropGroup))?;
            repaired.push(Repair::DroppedGroup {
                partition,
                queue: queue.id,
                group: *group,
            });
        }
    }
    Ok(())
}
