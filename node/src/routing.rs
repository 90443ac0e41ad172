//! Where a message goes and where a receive looks: the routing rule of a node.
//!
//! A NORMAL queue is partitioned for concurrency: a send goes to a partition the
//! receiving shard owns and this node leads when there is one (no hop to another shard
//! nor to another node), else to one the shard owns, rotating among them
//! ([`send_preference`]).
//! A NORMAL message with a dedup id goes where its id hashes instead, so that a retry
//! (same id) meets the original in the one engine that can recognise it. A FIFO queue
//! keeps its order where one engine can keep it: a whole-queue FIFO lives in partition 0;
//! a per-message-group FIFO sends each message group to the partition its name hashes
//! to, so every group's order is kept by one engine while different groups proceed in
//! parallel. A receive visits every partition, the shard's own first, each list in a
//! rotating order so that no partition is always drained last.

use sluice_core::bugs::{self, Bug};
use sluice_core::engine::types::{FifoScope, QueueMode, SendInput};
use xxhash_rust::xxh3::xxh3_64;

/// A delivery, outcome or handle tagged with the partition it belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Routed<T> {
    pub partition: u16,
    pub item: T,
}

/// The partition one message goes to, below `partition_count` (the queue's partitions).
/// `owned` lists the partitions a plain NORMAL send may rotate over (the routing shard's
/// [`send_preference`], maybe none; those at or above the count are passed over);
/// `rotation` is the shard's rotation counter for this request.
pub fn partition_for_send(
    mode: QueueMode,
    partition_count: u32,
    owned: &[u32],
    message: &SendInput,
    rotation: u64,
) -> u32 {
    assert!(partition_count > 0, "a queue has at least one partition");
    let count = u64::from(partition_count);
    let hashed = |key: &[u8]| u32::try_from(xxh3_64(key) % count).expect("below count");
    // Only the owned partitions the queue uses (a queue may use fewer than the node has).
    let usable = || owned.iter().copied().filter(|p| *p < partition_count);
    let rotating = || match usable().count() as u64 {
        0 => u32::try_from(rotation % count).expect("below count"),
        choices => usable()
            .nth(usize::try_from(rotation % choices).expect("below len"))
            .expect("below the count of choices"),
    };
    match mode {
        QueueMode::Normal => match &message.dedup_id {
            Some(_) if bugs::enabled(Bug::DedupAnyPartition) => rotating(),
            Some(dedup_id) => hashed(dedup_id.as_bytes()),
            None => rotating(),
        },
        QueueMode::Fifo(FifoScope::Queue) => 0,
        QueueMode::Fifo(FifoScope::MessageGroup) if bugs::enabled(Bug::FifoGroupAnyPartition) => {
            rotating()
        }
        QueueMode::Fifo(FifoScope::MessageGroup) => {
            hashed(message.fifo_group.as_deref().unwrap_or("").as_bytes())
        }
    }
}

/// The partitions a NORMAL send without a dedup id rotates over, from the shard's
/// `owned` ones: those this node leads (`leads`) when there are any (no forwarding), else
/// all of them (each then forwarded to its leader). Empty only when `owned` is.
pub fn send_preference(owned: &[u32], leads: impl Fn(u32) -> bool) -> Vec<u32> {
    let led: Vec<u32> = owned.iter().copied().filter(|p| leads(*p)).collect();
    if led.is_empty() {
        owned.to_vec()
    } else {
        led
    }
}

/// Splits a batch by partition: each partition's messages keep their request order, and
/// partitions come in the order their first message does.
pub fn split_send(
    mode: QueueMode,
    partition_count: u32,
    owned: &[u32],
    messages: &[SendInput],
    rotation: u64,
) -> Vec<(u32, Vec<usize>)> {
    let mut batches: Vec<(u32, Vec<usize>)> = Vec::new();
    for (index, message) in messages.iter().enumerate() {
        let partition = partition_for_send(mode, partition_count, owned, message, rotation);
        match batches.iter_mut().find(|(p, _)| *p == partition) {
            Some((_, indexes)) => indexes.push(index),
            None => batches.push((partition, vec![index])),
        }
    }
    batches
}

/// Partitions in the order a receive visits them: every one, starting at `rotation`,
/// those `owns` accepts first.
pub fn receive_order(partition_count: u32, rotation: u64, owns: impl Fn(u32) -> bool) -> Vec<u32> {
    let count = u64::from(partition_count);
    let mut order: Vec<u32> = (0..count)
        .map(|step| u32::try_from((rotation + step) % count).expect("below count"))
        .collect();
    // Stable: each half keeps the rotation.
    order.sort_by_key(|partition| !owns(*partition));
    order
}

/// Consecutive runs of `items` that `key` maps alike: (key, start, end) in order.
pub fn runs<T, K: PartialEq + Copy>(items: &[T], key: impl Fn(&T) -> K) -> Vec<(K, usize, usize)> {
    let mut runs: Vec<(K, usize, usize)> = Vec::new();
    for (index, item) in items.iter().enumerate() {
        let k = key(item);
        match runs.last_mut() {
            Some((last, _, end)) if *last == k => *end = index + 1,
            _ => runs.push((k, index, index + 1)),
        }
    }
    runs
}

/// Splits `messages` into consecutive runs of at most `count_max` messages and, unless
/// one message alone exceeds it, `bytes_max` bytes of bodies and attributes (the engine's
/// batch limits); answers each run as its index range.
pub fn chunks(messages: &[SendInput], count_max: u32, bytes_max: u64) -> Vec<(usize, usize)> {
    let count_max = usize::try_from(count_max.max(1)).expect("u32 fits usize");
    let mut runs = Vec::new();
    let mut start = 0;
    let mut bytes = 0u64;
    for (index, message) in messages.iter().enumerate() {
        let size = (message.body.len() + message.attributes.len()) as u64;
        let full = index - start == count_max || (index > start && bytes + size > bytes_max);
        if full {
            runs.push((start, index));
            start = index;
            bytes = 0;
        }
        bytes += size;
    }
    if start < messages.len() {
        runs.push((start, messages.len()));
    }
    runs
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_core::engine::types::Delay;

    fn message(dedup_id: Option<&str>, fifo_group: Option<&str>) -> SendInput {
        SendInput {
            body: b"x".to_vec(),
            attributes: Vec::new(),
            tags: Vec::new(),
            fifo_group: fifo_group.map(str::to_string),
            delay: Delay::None,
            dedup_id: dedup_id.map(str::to_string),
        }
    }

    #[test]
    fn normal_sends_stay_on_owned_partitions_unless_a_dedup_id_decides() {
        // Goal: no hop for plain NORMAL sends; a dedup id picks the same partition from
        // any shard, so a retry meets its original.
        let owned = [1, 3];
        let plain = message(None, None);
        for rotation in 0..8 {
            let p = partition_for_send(QueueMode::Normal, 4, &owned, &plain, rotation);
            assert!(owned.contains(&p));
        }
        let seen: Vec<u32> = (0..4)
            .map(|r| partition_for_send(QueueMode::Normal, 4, &[], &plain, r))
            .collect();
        assert_eq!(seen, [0, 1, 2, 3], "no owned partition: rotate over all");
        let keyed = message(Some("order-7"), None);
        let from_a = partition_for_send(QueueMode::Normal, 4, &[1, 3], &keyed, 0);
        let from_b = partition_for_send(QueueMode::Normal, 4, &[0, 2], &keyed, 5);
        assert_eq!(from_a, from_b);
    }

    #[test]
    fn a_queue_of_fewer_partitions_than_the_node_gets_sends_only_on_its_own() {
        // Goal: a Kafka topic of 2 partitions on a node of 4 stores nothing on 2 and 3,
        // whatever the routing shard owns and whatever decides the partition.
        let plain = message(None, None);
        for rotation in 0..8 {
            let p = partition_for_send(QueueMode::Normal, 2, &[1, 3], &plain, rotation);
            assert_eq!(p, 1, "the one owned partition the queue uses");
            let p = partition_for_send(QueueMode::Normal, 2, &[2, 3], &plain, rotation);
            assert_eq!(
                p,
                u32::try_from(rotation % 2).unwrap(),
                "none usable: all of its own"
            );
            let keyed = message(Some(&format!("d{rotation}")), None);
            assert!(partition_for_send(QueueMode::Normal, 2, &[3], &keyed, rotation) < 2);
            let grouped = message(None, Some(&format!("g{rotation}")));
            let fifo = QueueMode::Fifo(FifoScope::MessageGroup);
            assert!(partition_for_send(fifo, 2, &[3], &grouped, rotation) < 2);
        }
        assert_eq!(receive_order(2, 1, |p| p == 3), [1, 0]);
    }

    #[test]
    fn plain_sends_prefer_partitions_this_node_leads() {
        // Goal: most sends in a cluster need no hop to another node.
        assert_eq!(send_preference(&[0, 2, 4], |p| p == 2), [2]);
        assert_eq!(send_preference(&[0, 2, 4], |_| false), [0, 2, 4]);
        assert_eq!(send_preference(&[], |_| true), Vec::<u32>::new());
    }

    #[test]
    fn fifo_sends_go_where_their_order_is_kept() {
        // Goal: whole-queue FIFO on partition 0; each message group on one partition.
        let queue = QueueMode::Fifo(FifoScope::Queue);
        let group = QueueMode::Fifo(FifoScope::MessageGroup);
        for rotation in 0..4 {
            assert_eq!(
                partition_for_send(queue, 4, &[1], &message(None, None), rotation),
                0
            );
            let a = partition_for_send(group, 4, &[1], &message(None, Some("a")), rotation);
            assert_eq!(
                a,
                partition_for_send(group, 4, &[2], &message(None, Some("a")), 0)
            );
        }
    }

    #[test]
    fn a_batch_splits_by_partition_keeping_order() {
        let group = QueueMode::Fifo(FifoScope::MessageGroup);
        let messages: Vec<SendInput> = ["a", "b", "a", "c", "b"]
            .iter()
            .map(|g| message(None, Some(g)))
            .collect();
        let split = split_send(group, 64, &[], &messages, 0);
        let mut all: Vec<usize> = split.iter().flat_map(|(_, i)| i.clone()).collect();
        all.sort_unstable();
        assert_eq!(all, [0, 1, 2, 3, 4]);
        for (_, indexes) in &split {
            assert!(indexes.windows(2).all(|w| w[0] < w[1]), "order kept");
        }
    }

    #[test]
    fn receives_visit_owned_partitions_first_in_rotation() {
        assert_eq!(receive_order(4, 1, |p| p % 2 == 0), [2, 0, 1, 3]);
        assert_eq!(receive_order(3, 0, |_| false), [0, 1, 2]);
        assert_eq!(
            runs(&[1, 1, 2, 1], |x| *x),
            [(1, 0, 2), (2, 2, 3), (1, 3, 4)]
        );
    }

    #[test]
    fn chunks_keep_order_and_both_limits() {
        let message = |bytes: usize| SendInput {
            body: vec![0; bytes],
            attributes: Vec::new(),
            tags: Vec::new(),
            fifo_group: None,
            delay: sluice_core::engine::types::Delay::None,
            dedup_id: None,
        };
        let messages: Vec<SendInput> = [1, 1, 1, 5, 1, 9, 1].map(message).to_vec();
        assert_eq!(
            chunks(&messages, 2, 6),
            [(0, 2), (2, 4), (4, 5), (5, 6), (6, 7)]
        );
        assert_eq!(chunks(&messages, 10, 100), [(0, 7)]);
        assert!(chunks(&[], 10, 100).is_empty());
    }
}
