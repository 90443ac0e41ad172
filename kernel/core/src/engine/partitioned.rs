//! A queue spread over several partitions, one [`Engine`] (one log) each.
//!
//! A NORMAL queue is partitioned for concurrency: its sends are spread round-robin over
//! its partitions (a batch goes to one partition, so it stays one atomic operation) and a
//! receive drains partitions in a rotating order. A FIFO queue keeps its order where one
//! engine can keep it: a whole-queue FIFO lives in partition 0; a per-message-group FIFO
//! sends each message group to the partition its name hashes to, so every group's order
//! is kept by one engine while different groups proceed in parallel.
//!
//! This is the routing rule; the shard layer owns the partitions (one per core) and sends
//! each call to its owner. [`Partitioned`] applies the rule over engines held in one place,
//! as the single-node driver and the tests do.

use std::cell::Cell;

use xxhash_rust::xxh3::xxh3_64;

use super::config::{QueueInfo, ReceiveRequest};
use super::metadata::{MetadataPartitions, NewQueue};
use super::types::{
    AckKind, AckOutcome, Delivery, EngineError, FifoScope, GroupId, GroupStart, HandleError,
    QueueId, QueueMode, ReceiptHandle, SendInput, SendOutcome,
};
use super::Engine;
use crate::storage::Storage;

/// The partition one message goes to. A NORMAL message with a dedup id goes where the id
/// hashes, so that a retry (same id) meets the original in the one engine that can
/// recognise it; other NORMAL messages rotate. FIFO messages stay where their order is kept.
pub fn partition_for_send(
    mode: QueueMode,
    partition_count: u16,
    message: &SendInput,
    rotation: u64,
) -> u16 {
    assert!(partition_count > 0, "a queue has at least one partition");
    let count = u64::from(partition_count);
    let index = match mode {
        QueueMode::Normal => match &message.dedup_id {
            Some(dedup_id) => xxh3_64(dedup_id.as_bytes()) % count,
            None => rotation % count,
        },
        QueueMode::Fifo(FifoScope::Queue) => 0,
        QueueMode::Fifo(FifoScope::MessageGroup) => {
            xxh3_64(message.fifo_group.as_deref().unwrap_or("").as_bytes()) % count
        }
    };
    u16::try_from(index).expect("below partition_count")
}

/// Partitions in the order a receive visits them: all of them, starting at `rotation`.
pub fn receive_order(partition_count: u16, rotation: u64) -> impl Iterator<Item = u16> {
    let count = u64::from(partition_count);
    (0..count).map(move |step| u16::try_from((rotation + step) % count).expect("below count"))
}

/// A delivery or handle tagged with the partition it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Routed<T> {
    pub partition: u16,
    pub item: T,
}

/// Engines for every partition. Queues and groups are created on all of them alike, in
/// partition order, by [`super::metadata`].
pub struct Partitioned<S: Storage + Clone> {
    engines: Vec<Engine<S>>,
    rotation: Cell<u64>,
}

impl<S: Storage + Clone> Partitioned<S> {
    pub fn new(engines: Vec<Engine<S>>) -> Partitioned<S> {
        assert!(!engines.is_empty(), "at least one partition");
        assert!(
            engines.len() <= usize::from(u16::MAX),
            "partition index is a u16"
        );
        Partitioned {
            engines,
            rotation: Cell::new(0),
        }
    }

    pub fn partition(&self, index: u16) -> &Engine<S> {
        &self.engines[usize::from(index)]
    }

    pub fn partition_count(&self) -> u16 {
        u16::try_from(self.engines.len()).expect("checked in new")
    }

    /// These engines as [`MetadataPartitions`], every call at `now_ms`.
    pub fn at(&self, now_ms: u64) -> PartitionedAt<'_, S> {
        PartitionedAt {
            partitioned: self,
            now_ms,
        }
    }

    fn next_rotation(&self) -> u64 {
        let rotation = self.rotation.get();
        self.rotation.set(rotation.wrapping_add(1));
        rotation
    }

    /// Sends a batch. NORMAL and whole-queue FIFO batches go to one partition as one
    /// operation; a per-group FIFO batch is split by message group, one operation per
    /// partition, each keeping the batch's order.
    pub async fn send(
        &self,
        queue: QueueId,
        messages: &[SendInput],
        now: u64,
    ) -> Result<Vec<Routed<SendOutcome>>, EngineError> {
        if messages.is_empty() {
            return Err(EngineError::EmptyBatch);
        }
        let mode = self.engines[0].queue_info(queue)?.config.mode;
        let rotation = self.next_rotation();
        let mut by_partition: Vec<Vec<usize>> = vec![Vec::new(); self.engines.len()];
        for (index, message) in messages.iter().enumerate() {
            let partition = partition_for_send(mode, self.partition_count(), message, rotation);
            by_partition[usize::from(partition)].push(index);
        }
        let mut outcomes: Vec<Option<Routed<SendOutcome>>> = vec![None; messages.len()];
        for (partition, indexes) in by_partition.iter().enumerate() {
            if indexes.is_empty() {
                continue;
            }
            let batch: Vec<SendInput> = indexes.iter().map(|i| messages[*i].clone()).collect();
            let sent = self.engines[partition].send(queue, &batch, now).await?;
            let partition = u16::try_from(partition).expect("checked in new");
            for (index, outcome) in indexes.iter().zip(sent) {
                outcomes[*index] = Some(Routed {
                    partition,
                    item: outcome,
                });
            }
        }
        Ok(outcomes
            .into_iter()
            .map(|o| o.expect("every message was routed"))
            .collect())
    }

    /// Receives up to `max_messages` over the partitions, visiting them in rotation.
    pub async fn receive(
        &self,
        queue: QueueId,
        group: GroupId,
        request: &ReceiveRequest,
        now: u64,
    ) -> Result<Vec<Routed<Delivery>>, EngineError> {
        let mut deliveries = Vec::new();
        for partition in receive_order(self.partition_count(), self.next_rotation()) {
            let wanted = request.max_messages - u32::try_from(deliveries.len()).expect("bounded");
            if wanted == 0 {
                break;
            }
            let request = ReceiveRequest {
                max_messages: wanted,
                ..request.clone()
            };
            let got = self
                .partition(partition)
                .receive(queue, group, &request, now)
                .await?;
            deliveries.extend(got.into_iter().map(|item| Routed { partition, item }));
        }
        Ok(deliveries)
    }

    /// Acks routed handles, each on its own partition, results in the given order.
    pub async fn ack(
        &self,
        acks: &[(Routed<ReceiptHandle>, AckKind)],
        now: u64,
    ) -> Result<Vec<Result<AckOutcome, HandleError>>, EngineError> {
        let mut results: Vec<Option<Result<AckOutcome, HandleError>>> = vec![None; acks.len()];
        for partition in 0..self.partition_count() {
            let indexes: Vec<usize> = (0..acks.len())
                .filter(|i| acks[*i].0.partition == partition)
                .collect();
            if indexes.is_empty() {
                continue;
            }
            let batch: Vec<(ReceiptHandle, AckKind)> = indexes
                .iter()
                .map(|i| (acks[*i].0.item, acks[*i].1))
                .collect();
            let done = self.partition(partition).ack(&batch, false, now).await?;
            for (index, result) in indexes.iter().zip(done) {
                results[*index] = Some(result);
            }
        }
        // A handle naming a partition that does not exist names nothing.
        Ok(results
            .into_iter()
            .map(|r| r.unwrap_or(Err(HandleError::Unknown)))
            .collect())
    }

    pub async fn tick(&self, now: u64) -> Result<(), EngineError> {
        for engine in &self.engines {
            engine.tick(now).await?;
        }
        Ok(())
    }
}

/// Engines held in one place ([`Partitioned`]) at one moment: the metadata partitions of
/// a node that owns every engine itself (`LocalNode`, tests). Every call runs at `now_ms`.
pub struct PartitionedAt<'a, S: Storage + Clone> {
    partitioned: &'a Partitioned<S>,
    now_ms: u64,
}

impl<S: Storage + Clone> PartitionedAt<'_, S> {
    fn engine(&self, partition: u32) -> &Engine<S> {
        let index = u16::try_from(partition).expect("partition indexes are u16");
        self.partitioned.partition(index)
    }
}

impl<S: Storage + Clone> MetadataPartitions for PartitionedAt<'_, S> {
    type Error = EngineError;

    fn partition_count(&self) -> u32 {
        u32::from(self.partitioned.partition_count())
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
        let meta = queue.meta.to_vec();
        let (tenant, name, config) = (queue.tenant, queue.name, queue.config);
        self.engine(partition)
            .create_queue_with_id(id, tenant, name, config, meta, self.now_ms)
            .await
    }

    async fn delete_queue(&self, partition: u32, queue: QueueId) -> Result<(), EngineError> {
        self.engine(partition)
            .delete_queue(queue, self.now_ms)
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
            .create_group_with_id(id, queue, name, GroupStart::Oldest, self.now_ms)
            .await
    }

    async fn delete_group(
        &self,
        partition: u32,
        queue: QueueId,
        group: GroupId,
    ) -> Result<(), EngineError> {
        self.engine(partition)
            .delete_group(queue, group, self.now_ms)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::metadata::{create_group, create_queue, NewQueue};
    use crate::engine::types::{Delay, QueueConfig, RetryPolicy};
    use crate::engine::{EngineConfig, EngineLimits};
    use crate::log::{LogConfig, VerifyOnOpen};
    use crate::sim_disk::{block_on, SimDisk};

    const NOW: u64 = 1_000_000;

    fn check_partitioned(count: u16) -> Partitioned<SimDisk> {
        let config = EngineConfig {
            log: LogConfig {
                segment_bytes_max: 64 * 1024,
                index_interval_bytes: 4096,
                preallocate_bytes: 0,
                verify_on_open: VerifyOnOpen::Tail,
            },
            limits: EngineLimits {
                receive_messages_max: 64,
                batch_messages_max: 64,
                ..EngineLimits::dms()
            },
            snapshot_every_records: 10_000,
        };
        let engines = (0..count)
            .map(|p| block_on(Engine::open(SimDisk::new(u64::from(p)), config, NOW)).unwrap())
            .collect();
        Partitioned::new(engines)
    }

    /// A queue with one group "g", created on every partition.
    fn check_queue(
        p: &Partitioned<SimDisk>,
        name: &str,
        config: QueueConfig,
    ) -> (QueueId, GroupId) {
        let new = NewQueue {
            tenant: "t",
            name,
            config,
            meta: &[],
        };
        let q = block_on(create_queue(&p.at(NOW), &new)).unwrap();
        let g = block_on(create_group(&p.at(NOW), q, "g")).unwrap();
        (q, g)
    }

    fn queue(mode: QueueMode) -> QueueConfig {
        QueueConfig {
            mode,
            retention_ms: 3_600_000,
            max_consume_count: None,
            retry: RetryPolicy::Immediate,
            dedup_window_ms: 300_000,
        }
    }

    fn message(body: String, fifo_group: Option<&str>) -> SendInput {
        SendInput {
            body: body.into_bytes(),
            attributes: Vec::new(),
            tags: Vec::new(),
            fifo_group: fifo_group.map(str::to_string),
            delay: Delay::None,
            dedup_id: None,
        }
    }

    /// A success ack for every delivery, each routed back to its partition.
    fn ack_all_of(got: &[Routed<Delivery>]) -> Vec<(Routed<ReceiptHandle>, AckKind)> {
        got.iter()
            .map(|d| {
                let handle = Routed {
                    partition: d.partition,
                    item: d.item.handle,
                };
                (handle, AckKind::Success)
            })
            .collect()
    }

    fn request(max: u32) -> ReceiveRequest {
        ReceiveRequest {
            max_messages: max,
            visibility_ms: 30_000,
            filter: None,
        }
    }

    #[test]
    fn normal_queue_spreads_over_every_partition_and_drains_from_all() {
        let p = check_partitioned(4);
        let (q, g) = check_queue(&p, "q", queue(QueueMode::Normal));
        let mut used = [0u32; 4];
        for i in 0..20 {
            let sent = block_on(p.send(q, &[message(format!("m{i}"), None)], NOW)).unwrap();
            used[usize::from(sent[0].partition)] += 1;
        }
        assert!(used.iter().all(|n| *n == 5), "round-robin: {used:?}");
        let got = block_on(p.receive(q, g, &request(64), NOW)).unwrap();
        assert_eq!(got.len(), 20);
        let acks = ack_all_of(&got);
        let results = block_on(p.ack(&acks, NOW)).unwrap();
        assert!(results.iter().all(|r| *r == Ok(AckOutcome::Applied)));
        assert!(block_on(p.receive(q, g, &request(64), NOW))
            .unwrap()
            .is_empty());
    }

    #[test]
    fn fifo_message_groups_stay_in_one_partition_in_order() {
        let p = check_partitioned(3);
        let mode = QueueMode::Fifo(FifoScope::MessageGroup);
        let (q, g) = check_queue(&p, "f", queue(mode));
        let groups = ["a", "b", "c", "d", "e"];
        let batch: Vec<SendInput> = (0..25)
            .map(|i| message(format!("{}{}", groups[i % 5], i / 5), Some(groups[i % 5])))
            .collect();
        let sent = block_on(p.send(q, &batch, NOW)).unwrap();
        for (i, outcome) in sent.iter().enumerate() {
            let expected = partition_for_send(mode, 3, &batch[i], 0);
            assert_eq!(outcome.partition, expected, "message {i}");
        }
        // Drain with acks: each group's messages arrive in send order.
        let mut seen: Vec<String> = Vec::new();
        for _ in 0..50 {
            let got = block_on(p.receive(q, g, &request(64), NOW)).unwrap();
            let acks = ack_all_of(&got);
            seen.extend(
                got.iter()
                    .map(|d| String::from_utf8(d.item.body.clone()).unwrap()),
            );
            block_on(p.ack(&acks, NOW)).unwrap();
        }
        assert_eq!(seen.len(), 25);
        for group in groups {
            let order: Vec<&String> = seen.iter().filter(|b| b.starts_with(group)).collect();
            let expected: Vec<String> = (0..5).map(|i| format!("{group}{i}")).collect();
            assert_eq!(order, expected.iter().collect::<Vec<_>>(), "group {group}");
        }
    }

    #[test]
    fn a_retried_send_with_a_dedup_id_is_stored_once_across_partitions() {
        // Goal: dedup holds for a partitioned NORMAL queue. Method: send the same dedup id
        // many times (the rotation moves on each time); one message is stored.
        let p = check_partitioned(4);
        let (q, g) = check_queue(&p, "q", queue(QueueMode::Normal));
        let retry = SendInput {
            dedup_id: Some("order-4711".into()),
            ..message("once".into(), None)
        };
        let first = block_on(p.send(q, std::slice::from_ref(&retry), NOW)).unwrap();
        for _ in 0..8 {
            let again = block_on(p.send(q, std::slice::from_ref(&retry), NOW)).unwrap();
            assert!(again[0].item.duplicate);
            assert_eq!(again[0].item.message_id, first[0].item.message_id);
            assert_eq!(again[0].partition, first[0].partition);
        }
        let got = block_on(p.receive(q, g, &request(64), NOW)).unwrap();
        assert_eq!(got.len(), 1, "stored once");
    }

    #[test]
    fn whole_queue_fifo_lives_in_partition_zero() {
        let in_group = message("m".into(), Some("x"));
        assert_eq!(
            partition_for_send(QueueMode::Fifo(FifoScope::Queue), 8, &in_group, 5),
            0
        );
        let order: Vec<u16> = receive_order(4, 6).collect();
        assert_eq!(order, [2, 3, 0, 1]);
    }
}
