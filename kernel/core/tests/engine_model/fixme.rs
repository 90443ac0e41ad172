//! Regression tests for the engine bugs the model test found, each the smallest failing
//! sequence run straight on the engine and asserting the contract's answer (docs/style.md §7:
//! a sequence that once failed becomes a named test). All five are fixed; the model test
//! runs every operation family again.

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
        partitions: 0,
    }
}

fn bodies(deliveries: &[Delivery]) -> Vec<String> {
    deliveries
        .iter()
        .map(|d| String::from_utf8(d.body.to_vec()).unwrap())
        .collect()
}

impl Fixture {
    fn new() -> Fixture {
        Fixture::with_snapshots_every(10_000)
    }

    fn with_snapshots_every(records: u64) -> Fixture {
        let disk = SimDisk::new(7);
        let engine = block_on(Engine::open(
            disk.clone(),
            engine_config(records),
            1_000_000,
        ))
        .unwrap();
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
            attempt: None,
            max_messages: 10,
            bytes_max: u64::MAX,
            oversize_first: true,
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
        let engine = block_on(Engine::open(
            self.disk.clone(),
            engine_config(10_000),
            self.now,
        ));
        self.engine = Some(engine.unwrap());
    }
}

#[test]
fn filter_set_after_deliveries_also_rejects_redeliveries() {
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
    assert!(again.is_empty(), "{:?}", bodies(&again));
}

#[test]
fn reopen_keeps_retention() {
    // Goal: a message retention deleted stays deleted across a crash and reopen.
    let mut f = Fixture::new();
    let (q, g) = f.queue(config(60_000));
    f.send(q, "expired", Delay::None);
    f.advance(60_001);
    assert_eq!(f.engine().group_stats(q, g).unwrap().backlog, 0);
    f.crash();
    // Retention is not logged: open applies it again as of its `now`.
    assert_eq!(f.engine().group_stats(q, g).unwrap().backlog, 0);
    assert!(f.receive(q, g, None).is_empty());
}

#[test]
fn second_ack_of_a_message_in_one_batch_is_already_done() {
    // Goal: a batch's entries take effect in order, so a repeated ack is AlreadyDone.
    let f = Fixture::new();
    let (q, g) = f.queue(config(3_600_000));
    f.send(q, "m", Delay::None);
    let handle = f.receive(q, g, None)[0].handle;
    let results = f.ack(&[(handle, AckKind::Success), (handle, AckKind::Success)]);
    assert_eq!(
        results,
        [Ok(AckOutcome::Applied), Ok(AckOutcome::AlreadyDone)]
    );
    // In a later call the repeat gets the contract's answer.
    let repeat = f.ack(&[(handle, AckKind::Success)]);
    assert_eq!(repeat, [Ok(AckOutcome::AlreadyDone)]);
}

#[test]
fn handle_from_before_a_reopen_stays_stale() {
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
    // Each open logs a boot record: a new epoch in every nonce.
    assert_ne!(before[0].handle, after[0].handle);
    let results = f.ack(&[(before[0].handle, AckKind::Fail)]);
    assert_eq!(results, [Err(HandleError::Stale)]);
}

#[test]
fn log_retention_keeps_the_body_of_a_released_delayed_message() {
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
    let got = result.expect("both bodies are still in the log");
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].body, vec![b'l'; 40_000]);
    assert_eq!(got[1].body, vec![b'd'; 40_000]);
}
