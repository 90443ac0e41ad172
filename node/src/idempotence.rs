//! Idempotent producers (Kafka's): each batch a producer sends to a partition carries
//! its producer id, epoch and first sequence number; a batch whose sequence this
//! partition already stored is answered again with its first position instead of being
//! stored twice, and a gap in the sequence is refused.
//!
//! The table is leader-only state of the partition's owning shard (like leases,
//! docs/engine.md D4), kept with the Raft term it was learnt in: a restart or a change of
//! leader (even back to this node: the producer may have gone on meanwhile) forgets it,
//! and a producer's
//! first batch after that is taken as new, so a retry across a failover may store a batch
//! twice (at-least-once, never loss). Bounded by [`PRODUCERS_PER_SHARD_MAX`]; the least
//! recently used producer is forgotten first.

use std::collections::{HashMap, VecDeque};

use serde::{Deserialize, Serialize};
use sluice_core::engine::types::QueueId;

/// Producers (per partition and queue) one shard remembers.
pub const PRODUCERS_PER_SHARD_MAX: usize = 10_000;
/// Batches remembered per producer: Kafka's clients keep at most 5 in flight.
pub const BATCHES_PER_PRODUCER: usize = 5;

/// What a produced batch says about its producer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducerBatch {
    pub id: i64,
    pub epoch: i16,
    pub base_sequence: i32,
    /// Records in the batch (its last sequence is `base_sequence + count - 1`, wrapping).
    pub count: i32,
}

/// Why a batch was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SequenceRefusal {
    /// The batch skips sequence numbers (an earlier batch is missing).
    OutOfOrder,
    /// The producer has since been re-initialised with a higher epoch.
    StaleEpoch,
}

/// What the table says about a batch before it is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Check {
    New,
    /// Stored already; its first position then.
    Duplicate(Option<u64>),
    Refused(SequenceRefusal),
}

type Key = (u32, QueueId, i64);

#[derive(Debug)]
struct Producer {
    /// The partition's Raft term when this was learnt; another term forgets it.
    term: u64,
    epoch: i16,
    /// (base sequence, last sequence, first position), oldest first.
    batches: VecDeque<(i32, i32, Option<u64>)>,
    used: u64,
}

/// One shard's producers.
#[derive(Debug, Default)]
pub struct Producers {
    map: HashMap<Key, Producer>,
    clock: u64,
}

fn last_sequence(batch: &ProducerBatch) -> i32 {
    // Kafka's sequences wrap from i32::MAX to 0.
    let last = i64::from(batch.base_sequence) + i64::from(batch.count.max(1)) - 1;
    i32::try_from(last % (i64::from(i32::MAX) + 1)).expect("reduced below i32::MAX")
}

fn next_of(sequence: i32) -> i32 {
    if sequence == i32::MAX {
        0
    } else {
        sequence + 1
    }
}

impl Producers {
    pub fn check(&self, partition: u32, queue: QueueId, batch: &ProducerBatch, term: u64) -> Check {
        let Some(producer) = self.map.get(&(partition, queue, batch.id)) else {
            return Check::New;
        };
        if producer.term != term {
            return Check::New;
        }
        if batch.epoch < producer.epoch {
            return Check::Refused(SequenceRefusal::StaleEpoch);
        }
        if batch.epoch > producer.epoch {
            return Check::New;
        }
        if let Some((_, _, first)) = producer
            .batches
            .iter()
            .find(|(base, last, _)| *base == batch.base_sequence && *last == last_sequence(batch))
        {
            return Check::Duplicate(*first);
        }
        match producer.batches.back() {
            Some((_, last, _)) if batch.base_sequence != next_of(*last) => {
                Check::Refused(SequenceRefusal::OutOfOrder)
            }
            _ => Check::New,
        }
    }

    /// Records a batch just stored at `first` (its first position).
    pub fn record(
        &mut self,
        partition: u32,
        queue: QueueId,
        batch: &ProducerBatch,
        first: Option<u64>,
        term: u64,
    ) {
        self.clock += 1;
        let key = (partition, queue, batch.id);
        if !self.map.contains_key(&key) && self.map.len() >= PRODUCERS_PER_SHARD_MAX {
            let oldest = self
                .map
                .iter()
                .min_by_key(|(_, producer)| producer.used)
                .map(|(key, _)| *key);
            if let Some(oldest) = oldest {
                self.map.remove(&oldest);
            }
        }
        let producer = self.map.entry(key).or_insert(Producer {
            term,
            epoch: batch.epoch,
            batches: VecDeque::new(),
            used: 0,
        });
        if producer.term != term || batch.epoch != producer.epoch {
            producer.term = term;
            producer.epoch = batch.epoch;
            producer.batches.clear();
        }
        producer.used = self.clock;
        if producer.batches.len() == BATCHES_PER_PRODUCER {
            producer.batches.pop_front();
        }
        producer
            .batches
            .push_back((batch.base_sequence, last_sequence(batch), first));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(epoch: i16, base_sequence: i32, count: i32) -> ProducerBatch {
        ProducerBatch {
            id: 7,
            epoch,
            base_sequence,
            count,
        }
    }

    #[test]
    fn retries_are_duplicates_gaps_are_refused_epochs_reset() {
        let mut table = Producers::default();
        let q = QueueId(1);
        assert_eq!(table.check(0, q, &batch(0, 0, 3), 1), Check::New);
        table.record(0, q, &batch(0, 0, 3), Some(10), 1);
        assert_eq!(
            table.check(0, q, &batch(0, 0, 3), 1),
            Check::Duplicate(Some(10))
        );
        assert_eq!(table.check(0, q, &batch(0, 3, 2), 1), Check::New);
        table.record(0, q, &batch(0, 3, 2), Some(13), 1);
        assert_eq!(
            table.check(0, q, &batch(0, 0, 3), 1),
            Check::Duplicate(Some(10))
        );
        assert_eq!(
            table.check(0, q, &batch(0, 9, 1), 1),
            Check::Refused(SequenceRefusal::OutOfOrder)
        );
        // Another partition or queue is another sequence.
        assert_eq!(table.check(1, q, &batch(0, 9, 1), 1), Check::New);
        assert_eq!(table.check(0, QueueId(2), &batch(0, 9, 1), 1), Check::New);
        // A new epoch starts over; the old one is fenced.
        assert_eq!(table.check(0, q, &batch(1, 0, 1), 1), Check::New);
        table.record(0, q, &batch(1, 0, 1), Some(20), 1);
        assert_eq!(
            table.check(0, q, &batch(0, 5, 1), 1),
            Check::Refused(SequenceRefusal::StaleEpoch)
        );
        // Another term (a change of leader) forgets what was learnt.
        assert_eq!(table.check(0, q, &batch(1, 9, 1), 2), Check::New);
    }

    #[test]
    fn sequences_wrap_and_only_five_batches_are_kept() {
        let mut table = Producers::default();
        let q = QueueId(1);
        table.record(0, q, &batch(0, i32::MAX - 1, 2), Some(1), 1);
        assert_eq!(table.check(0, q, &batch(0, 0, 1), 1), Check::New);
        for (i, base) in (0..6).enumerate() {
            table.record(0, q, &batch(0, base, 1), Some(100 + i as u64), 1);
        }
        // The first of the six fell out: its retry is no longer recognised, and a batch
        // that old does not follow the last either.
        assert_eq!(
            table.check(0, q, &batch(0, 0, 1), 1),
            Check::Refused(SequenceRefusal::OutOfOrder)
        );
        assert_eq!(
            table.check(0, q, &batch(0, 5, 1), 1),
            Check::Duplicate(Some(105))
        );
    }
}
