//! Regression tests for the engine bugs the model test found. Each runs the smallest
//! failing sequence straight on the engine and asserts today's behaviour, which breaks
//! the contract (STYLE.md §7: no `#[ignore]`; assert today's wrong behaviour with a
//! FIXME). Each names the constant in `engine_model.rs` that keeps the model test away
//! from its bug. Once the engine is fixed, its test here fails: then assert the contract's
//! answer (in each FIXME) and set the constant to `true`.

use sluice_core::engine::types::{
    AckKind, AckOutcome, Delay, Delivery, EngineError, GroupId, GroupStart, HandleError,
    QueueConfig, QueueId, QueueMode, ReceiptHandle, RetryPolicy, SendInput, TagFilter, TagMatch,
};
use sluice_core::engine::{Engine, ReceiveRequest};
use sluice_core::sim_disk::{block_on, SimDisk};

use crate::harness::engine_config;

struct Fixture {
    disk: SimDisk,
    engine: Option<Engine<SimDisk>>,
    now: u64,
}

fn config(retention_ms: u64) -> QueueConfig {
    QueueConfig {
        mode: QueueMode::Normal,
        retention_ms,
        max_consume_count: None,
        retry: RetryPolicy::Immediate,
        dedup_window_ms: 300_000,
    }
}

fn bodies(deliveries: &[Delivery]) -> Vec<String> {
    deliveries
        .iter()
        .map(|d| String::from_utf8(d.body.clone()).unwrap())
        .collect()
}

impl Fixture {
    fn new() -> Fixture {
        Fixture::with_snapshots_every(10_000)
    }

    fn with_snapshots_every(records: u64) -> Fixture {
        let disk = SimDisk::new(7);
        let engine = block_on(Engine::open(disk.clone(), engine_config(records))).unwrap();
        Fixture {
            disk,
            engine: Some(engine),
            now: 1_000_000,
        }
    }

    fn engine(&self) -> &Engine<SimDisk> {
        self.engine.as_ref().unwrap()
    }

    /// A queue with one group that sees every message.
    fn queue(&self, config: QueueConfig) -> (QueueId, GroupId) {
        let engine = self.engine();
        let queue = block_on(engine.create_queue("t", "q", config, self.now)).unwrap();
        let start = GroupStart::Oldest;
        let group = block_on(engine.create_group(queue, "g", start, self.now)).unwrap();
        (queue, group)
    }

    fn send(&self, queue: QueueId, body: &str, delay: Delay) {
        self.send_bytes(queue, body.as_bytes().to_vec(), delay);
    }

    fn send_bytes(&self, queue: QueueId, body: Vec<u8>, delay: Delay) {
        let message = SendInput {
            body,
            attributes: Vec::new(),
            tags: Vec::new(),
            fifo_group: None,
            delay,
            dedup_id: None,
        };
        block_on(self.engine().send(queue, &[message], self.now)).unwrap();
    }

    fn receive(&self, queue: QueueId, group: GroupId, filter: Option<TagFilter>) -> Vec<Delivery> {
        self.try_receive(queue, group, filter).unwrap()
    }

    fn try_receive(
        &self,
        queue: QueueId,
        group: GroupId,
        filter: Option<TagFilter>,
    ) -> Result<Vec<Delivery>, EngineError> {
        let request = ReceiveRequest {
            max_messages: 10,
            visibility_ms: 30_000,
            filter,
        };
        block_on(self.engine().receive(queue, group, &request, self.now))
    }

    fn ack(&self, acks: &[(ReceiptHandle, AckKind)]) -> Vec<Result<AckOutcome, HandleError>> {
        block_on(self.engine().ack(acks, false, self.now)).unwrap()
    }

    fn advance(&mut self, ms: u64) {
        self.now += ms;
        block_on(self.engine().tick(self.now)).unwrap();
    }

    fn crash(&mut self) {
        self.engine = None;
        self.disk.crash();
        let engine = block_on(Engine::open(self.disk.clone(), engine_config(10_000)));
        self.engine = Some(engine.unwrap());
    }
}

#[test]
fn fixme_filter_set_after_deliveries_lets_rejected_redeliveries_through() {
    // Goal: once a group has a filter, a message the filter rejects is never delivered.
    let f = Fixture::new();
    let (q, g) = f.queue(config(3_600_000));
    f.send(q, "untagged", Delay::None);
    let first = f.receive(q, g, None);
    f.ack(&[(first[0].handle, AckKind::Fail)]);
    let filter = TagFilter {
        tags: vec!["a".into()],
        mode: TagMatch::Any,
    };
    let again = f.receive(q, g, Some(filter));
    // FIXME(FILTER_AFTER_DELIVERIES_ENABLED): the contract's answer is no delivery.
    assert_eq!(bodies(&again), ["untagged"]);
    assert_eq!(again[0].delivery_count, 2);
}

#[test]
fn fixme_reopen_undoes_retention() {
    // Goal: a message retention deleted stays deleted across a crash and reopen.
    let mut f = Fixture::new();
    let (q, g) = f.queue(config(60_000));
    f.send(q, "expired", Delay::None);
    f.advance(60_001);
    assert_eq!(f.engine().group_stats(q, g).unwrap().backlog, 0);
    f.crash();
    // FIXME(OPERATIONS_BEFORE_FIRST_TICK_AFTER_REOPEN_ENABLED): the contract's answers are
    // a backlog of 0 and no delivery; the next tick deletes the message again.
    assert_eq!(f.engine().group_stats(q, g).unwrap().backlog, 1);
    assert_eq!(bodies(&f.receive(q, g, None)), ["expired"]);
}

#[test]
fn fixme_second_ack_of_a_message_in_one_batch_is_stale() {
    // Goal: a batch's entries take effect in order, so a repeated ack is AlreadyDone.
    let f = Fixture::new();
    let (q, g) = f.queue(config(3_600_000));
    f.send(q, "m", Delay::None);
    let handle = f.receive(q, g, None)[0].handle;
    let results = f.ack(&[(handle, AckKind::Success), (handle, AckKind::Success)]);
    // FIXME(SAME_MESSAGE_TWICE_IN_ONE_ACK_BATCH_ENABLED): the contract's answer is
    // [Ok(Applied), Ok(AlreadyDone)].
    assert_eq!(results, [Ok(AckOutcome::Applied), Err(HandleError::Stale)]);
    // In a later call the repeat gets the contract's answer.
    let repeat = f.ack(&[(handle, AckKind::Success)]);
    assert_eq!(repeat, [Ok(AckOutcome::AlreadyDone)]);
}

#[test]
fn fixme_handle_from_before_a_reopen_is_current_again() {
    // Goal: a crash ends every lease, so a handle from before it is stale for good.
    let mut f = Fixture::new();
    let (q, g) = f.queue(config(3_600_000));
    f.send(q, "m", Delay::None);
    f.crash();
    let before = f.receive(q, g, None);
    // Receives log nothing, so this boot sees the same log end as the previous one.
    f.crash();
    let after = f.receive(q, g, None);
    assert_eq!(bodies(&after), ["m"]);
    // FIXME(REOPEN_WITHOUT_LOG_GROWTH_ENABLED): the nonces must differ and the old
    // handle's fail must be Err(Stale).
    assert_eq!(before[0].handle, after[0].handle);
    let results = f.ack(&[(before[0].handle, AckKind::Fail)]);
    assert_eq!(results, [Ok(AckOutcome::Applied)]);
}

#[test]
fn fixme_log_retention_drops_the_body_of_a_released_delayed_message() {
    // Goal: the log keeps every record a retained message needs.
    let mut f = Fixture::with_snapshots_every(4);
    let (q, g) = f.queue(config(3_600_000));
    // Two 40 KB bodies fill more than a 64 KB segment: "late" opens the second one.
    f.send_bytes(q, vec![b'd'; 40_000], Delay::Ms(1));
    f.send_bytes(q, vec![b'l'; 40_000], Delay::None);
    // Releases the delayed message behind "late", snapshots, and applies log retention
    // below "late", the queue's first message, which removes the first segment.
    f.advance(1);
    assert_eq!(f.engine().group_stats(q, g).unwrap().backlog, 2);
    let result = f.try_receive(q, g, None);
    // FIXME(DELAYS_IN_MULTI_SEGMENT_LOGS_ENABLED): the contract's answer is both messages,
    // "late" then the delayed one; today the delayed message's body is gone for good.
    assert!(
        matches!(&result, Err(EngineError::Storage(detail)) if detail.contains("removed")),
        "{result:?}"
    );
}
