//! A narrow handle on the pure state machine for benchmarks: builds a queue with one
//! group by applying commands directly (no log, no I/O), then receives and acks, so the
//! engine's own cost and memory can be measured apart from storage. Not for production
//! use; adapters go through [`super::Engine`].

use super::command::{Command, SendMeta};
use super::dispatch::PickLimits;
use super::state::State;
use super::types::{GroupId, GroupStart, MessageId, QueueConfig, QueueId};

pub struct StateProbe {
    state: State,
    queue: QueueId,
    group: GroupId,
    next_offset: u64,
    now: u64,
}

impl StateProbe {
    pub fn new(config: QueueConfig, now: u64) -> StateProbe {
        let mut state = State::default();
        let queue = QueueId(0);
        let group = GroupId(0);
        let create = Command::CreateQueue {
            queue,
            tenant: "bench".into(),
            name: "bench".into(),
            config,
            meta: Vec::new(),
        };
        state.apply(&create, MessageId(0), now, 0);
        let create = Command::CreateGroup {
            queue,
            group,
            name: "g".into(),
            start: GroupStart::Oldest,
        };
        state.apply(&create, MessageId(1), now, 0);
        StateProbe {
            state,
            queue,
            group,
            next_offset: 2,
            now,
        }
    }

    /// Applies `count` sends; with `delay_ms > 0` they wait in the timer queue.
    pub fn send(&mut self, count: u64, delay_ms: u64) {
        for _ in 0..count {
            let meta = SendMeta {
                queue: self.queue,
                deliver_at_ms: if delay_ms > 0 { self.now + delay_ms } else { 0 },
                fifo_group: None,
                tags: Vec::new(),
                dedup_hash: 0,
                half: false,
            };
            self.state.apply(
                &Command::Send(meta),
                MessageId(self.next_offset),
                self.now,
                0,
            );
            self.next_offset += 1;
        }
    }

    /// Receives up to `max` messages and leaves them in flight. Returns how many.
    pub fn lease(&mut self, max: u32, visibility_ms: u64) -> usize {
        let picked = self
            .state
            .receive(
                self.queue,
                self.group,
                unlimited(max),
                (visibility_ms, None),
                u64::MAX,
                self.now,
            )
            .expect("queue and group exist");
        picked.len()
    }

    /// Receives up to `max` messages and acks them all as one ack command.
    pub fn receive_ack(&mut self, max: u32) -> usize {
        let picked = self
            .state
            .receive(
                self.queue,
                self.group,
                unlimited(max),
                (30_000, None),
                u64::MAX,
                self.now,
            )
            .expect("queue and group exist");
        let mut seqs = Vec::with_capacity(picked.len());
        for pick in &picked {
            let (_, log) = self
                .state
                .begin_ack(&pick.handle, true)
                .expect("fresh lease");
            assert_eq!(
                log,
                super::dispatch::AckLog::Own,
                "a fresh lease is acked through the log"
            );
            seqs.push(pick.handle.seq);
        }
        let ack = Command::Ack {
            queue: self.queue,
            group: self.group,
            seqs,
        };
        self.state
            .apply(&ack, MessageId(self.next_offset), self.now, 0);
        self.next_offset += 1;
        picked.len()
    }

    pub fn stored(&self) -> u64 {
        self.state.queues[&self.queue].store.get().messages.len() as u64
    }

    pub fn delayed(&self) -> u64 {
        self.state.queues[&self.queue].store.get().delayed.len() as u64
    }
}

/// An engine's state holding idle queues, built as a partition builds it: one
/// `CreateQueue` command applied per queue (name index, directory journal, tenant counts
/// included). For measuring what an idle queue costs an engine, and what its first send
/// adds.
pub struct IdleQueues {
    state: State,
    next_offset: u64,
    now: u64,
}

impl IdleQueues {
    pub fn new(now: u64) -> IdleQueues {
        IdleQueues {
            state: State::default(),
            next_offset: 0,
            now,
        }
    }

    /// Creates `count` queues of `tenant` named `{prefix}{n}`, ids continuing the state's.
    pub fn create(
        &mut self,
        tenant: &str,
        prefix: &str,
        count: u32,
        config: QueueConfig,
        meta: &[u8],
    ) {
        for n in 0..count {
            let create = Command::CreateQueue {
                queue: QueueId(self.state.next_queue_id),
                tenant: tenant.into(),
                name: format!("{prefix}{n}"),
                config,
                meta: meta.to_vec(),
            };
            self.apply(&create);
        }
    }

    /// Sends one message (no tags, no dedup, no delay) to each of the first `count` queues.
    pub fn send_to_first(&mut self, count: usize) {
        let queues: Vec<QueueId> = self.state.queues.keys().take(count).copied().collect();
        for queue in queues {
            let meta = SendMeta {
                queue,
                deliver_at_ms: 0,
                fifo_group: None,
                tags: Vec::new(),
                dedup_hash: 0,
                half: false,
            };
            self.apply(&Command::Send(meta));
        }
    }

    pub fn len(&self) -> usize {
        self.state.queues.len()
    }

    pub fn is_empty(&self) -> bool {
        self.state.queues.is_empty()
    }

    fn apply(&mut self, command: &Command) {
        self.state
            .apply(command, MessageId(self.next_offset), self.now, 100);
        self.next_offset += 1;
    }
}

/// A receive of up to `max` messages without a byte budget.
fn unlimited(max: u32) -> PickLimits {
    PickLimits {
        messages_max: max,
        bytes_max: u64::MAX,
        oversize_first: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::types::{QueueMode, RetryPolicy};

    #[test]
    fn receive_ack_drains_and_refills() {
        let config = QueueConfig {
            mode: QueueMode::Normal,
            retention_ms: 1 << 40,
            max_consume_count: None,
            retry: RetryPolicy::Immediate,
            dedup_window_ms: 1,
            partitions: 0,
        };
        let mut probe = StateProbe::new(config, 1_000);
        probe.send(100, 0);
        let mut got = 0;
        for _ in 0..10 {
            got += probe.receive_ack(10);
        }
        assert_eq!(got, 100);
        assert_eq!(probe.receive_ack(10), 0);
        probe.send(5, 0);
        assert_eq!(probe.receive_ack(10), 5);
    }
}
