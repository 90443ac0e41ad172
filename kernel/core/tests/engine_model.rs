//! Model test of the queue engine (`Engine<SimDisk>`) against a deliberately plain
//! reference model (`engine_model/model.rs`).
//!
//! Goal: for any sequence of queue and group changes, sends (delayed, scheduled, tagged,
//! FIFO-grouped, deduplicated), receives (with and without tag filters), acks and fails of
//! current and stale handles, visibility changes, dead-letter receives and redrives,
//! cancels, snapshots, crashes and time passing, the engine gives exactly the results the
//! delivery contract below prescribes.
//!
//! Method: the model and the engine receive the same random operations with the same
//! `now`; time moves only through "advance", after which the harness calls `tick(now)`
//! once. After every step every returned `Result` must match (errors by value), receives
//! must return the same (body, delivery count) list in the same order, acks the same
//! per-entry results, sends the same `duplicate` flags naming the same messages (message
//! ids are log offsets, so the harness maps them to the bodies they identify), and every
//! group's `group_stats` backlog, in-flight and dead-letter counts must match. Bodies are
//! unique per run (a counter), so a body names a message. The number of cases comes from
//! `PROPTEST_CASES` (CI sets 10,000; TIMING TODO).
//!
//! The contract (the model implements this, not the engine's code):
//! - tick(now), in order: back-off waits with visible_ms <= now end; leases with deadline
//!   <= now expire as failures (dead-letter leases just end); delayed messages with
//!   deliver_at <= now become available by deliver_at then send order; retained messages
//!   with sent_ms + retention_ms < now are deleted for every group; dedup entries with
//!   expiry <= now are dropped.
//! - A message takes its position in its queue when it becomes available (at send unless
//!   delayed to a time after now, else when a tick releases it). Oldest groups see every
//!   retained message, Latest groups those that become available after their creation.
//! - receive: NORMAL returns the first `max` available messages the group's filter admits;
//!   FIFO Queue returns nothing while any message is in flight or waiting for the group;
//!   FIFO MessageGroup skips message groups with a message in flight or waiting at the
//!   start of the receive. delivery_count = failures + 1. A group keeps the first filter it
//!   is given; another one is `FilterConflict`. Non-matching messages are never delivered.
//! - ack Success of the current lease: done. Fail: failures + 1, then dead at
//!   max_consume_count (failures forgotten), else a back-off wait, else available at once.
//!   A non-current handle: `AlreadyDone` for Success on a done message, else `Stale`;
//!   `Unknown` when queue, group or message (retention) is gone. Dead-letter lane:
//!   receive_dead leases unleased dead letters (delivery count 1); Success removes the
//!   dead letter (done), Fail or lease expiry makes it receivable again; redrive makes
//!   every dead letter available with failures 0.
//! - Crash and reopen lose every lease (in-flight messages available at once, failures
//!   unchanged) and nothing else. A snapshot changes nothing observable.
//!
//! MUTATIONS: TODO

#[path = "engine_model/model.rs"]
mod model;

use std::collections::HashMap;

use model::{Handle, Model, Outgoing, Picked};
use proptest::prelude::*;
use sluice_core::engine::types::{
    AckKind, Delay, Delivery, EngineError, FifoScope, GroupId, GroupStart, MessageId, QueueConfig,
    QueueId, QueueMode, ReceiptHandle, RetryPolicy, SendInput, TagFilter, TagMatch,
};
use sluice_core::engine::{Engine, EngineConfig, EngineLimits, ReceiveRequest};
use sluice_core::log::{LogConfig, VerifyOnOpen};
use sluice_core::sim_disk::{block_on, SimDisk};

/// Messages stored per case at most; further sends are skipped to keep a case cheap.
const MESSAGES_MAX: usize = 30;
const TAGS: [&str; 3] = ["a", "b", "c"];
const FIFO_GROUPS: [&str; 3] = ["x", "y", "z"];
const START_MS: u64 = 1_000_000;

/// FIXME(engine bug): a tag filter given to a group that already had deliveries does not
/// apply to messages the group had delivered or skipped before (they sit in the ready set,
/// which `State::receive` serves without checking the filter), so a failed message the
/// filter rejects is delivered again. The contract says non-matching messages are never
/// delivered once the filter is set. Until fixed, the harness sets a group's filter only
/// on its first delivery-making receive.
const FILTER_AFTER_DELIVERIES_ENABLED: bool = false;

/// FIXME(engine bug): retention is not durable. `State::apply_retention` trims messages in
/// memory only, so a reopen (snapshot plus replay) brings back every message retention had
/// deleted since the snapshot, receivable and counted in the backlog until the next tick
/// (and `next_deadline_ms` does not ask for one). The contract says a reopen loses leases
/// and nothing else. Until fixed, the harness ticks once at the unchanged `now` right
/// after every reopen, which the model treats as the no-op it should be.
const OPERATIONS_BEFORE_FIRST_TICK_AFTER_REOPEN_ENABLED: bool = false;

/// FIXME(engine bug): `Engine::ack` validates every entry against the state before the
/// batch, so an entry whose message an earlier entry of the same batch acked (the same
/// handle again, or an older handle of that message) gets `Stale` instead of
/// `AlreadyDone`: `State::begin_ack` sees `Hold::Acking`, not a done message. The contract
/// processes a batch's entries in order. Until fixed, the harness puts each message at
/// most once into an ack batch.
const SAME_MESSAGE_TWICE_IN_ONE_ACK_BATCH_ENABLED: bool = false;

/// FIXME(engine bug): lease nonces repeat across reopens. `Engine::open` starts nonces at
/// `(durable log end + 1) << 24` and keeps no nonce in the snapshot, so two boots with no
/// record logged in between hand out the same nonces, and a handle from before the second
/// reopen is taken for the current lease of the same message (ack `Applied`, not
/// `Stale`). Until fixed, the harness skips a reopen when the log has not grown since the
/// previous one.
const REOPEN_WITHOUT_LOG_GROWTH_ENABLED: bool = false;

/// FIXME(engine bug): retention only trims a prefix of the queue. `State::apply_retention`
/// stops at the first message younger than the cut-off, but a delayed message takes its
/// position when released, behind messages sent after it, so it outlives its retention
/// until every message before it has expired (receivable, in the backlog). The contract
/// deletes every message with sent_ms + retention_ms < now. Until fixed, the harness
/// sends delayed messages only to queues whose retention cannot run out in a case.
const DELAYS_IN_QUEUES_WITH_SHORT_RETENTION_ENABLED: bool = false;
/// A retention no case lasts long enough to reach.
const LONG_RETENTION_MS: u64 = 24 * 3600 * 1000;

// ---------------------------------------------------------------------- operations

#[derive(Clone, Debug)]
struct QueueSpec {
    mode: QueueMode,
    max_consume_count: Option<u16>,
    retry: RetryPolicy,
    retention_ms: u64,
    dedup_window_ms: u64,
}

#[derive(Clone, Debug)]
enum DelaySpec {
    None,
    Ms(u64),
    /// Relative to now; may lie in the past.
    At(i64),
}

#[derive(Clone, Debug)]
struct MessageSpec {
    tags: Vec<u8>,
    fifo_group: Option<u8>,
    delay: DelaySpec,
    dedup_id: Option<u8>,
}

#[derive(Clone, Copy, Debug)]
enum FilterChoice {
    None,
    /// The group's own filter (fixed per group slot).
    Own,
    /// Any filter of the table, usually a conflicting one.
    Table(u8),
}

/// Picks one of the handles delivered so far: a recent one or any.
#[derive(Clone, Copy, Debug)]
struct Pick {
    recent: bool,
    index: u16,
}

impl Pick {
    fn resolve(self, len: usize) -> Option<usize> {
        if len == 0 {
            return None;
        }
        let index = usize::from(self.index);
        Some(if self.recent {
            len - 1 - index % len.min(4)
        } else {
            index % len
        })
    }
}

#[derive(Clone, Debug)]
enum Op {
    CreateQueue {
        name: u8,
        spec: QueueSpec,
    },
    CreateGroup {
        queue: u8,
        name: u8,
        latest: bool,
    },
    Send {
        queue: u8,
        messages: Vec<MessageSpec>,
    },
    Receive {
        queue: u8,
        group: u8,
        max: u32,
        visibility_ms: u64,
        filter: FilterChoice,
    },
    /// `follow`: target the queue and group of a delivered handle instead, so that the
    /// dead-letter operations mostly meet groups that failed something.
    ReceiveDead {
        queue: u8,
        group: u8,
        follow: Option<Pick>,
        max: u32,
        visibility_ms: u64,
    },
    Ack {
        picks: Vec<(Pick, bool)>,
        stop_at_first_error: bool,
    },
    ChangeVisibility {
        pick: Pick,
        ms: u64,
    },
    /// Cancel a sent message, in its own queue (`queue: None`) or another.
    Cancel {
        message: Pick,
        queue: Option<u8>,
    },
    Redrive {
        queue: u8,
        group: u8,
        follow: Option<Pick>,
    },
    Advance(u64),
    Snapshot,
    Crash {
        clean: bool,
    },
    DeleteGroup {
        queue: u8,
        group: u8,
    },
    DeleteQueue {
        queue: u8,
    },
}

fn queue_spec() -> impl Strategy<Value = QueueSpec> {
    let mode = prop_oneof![
        Just(QueueMode::Normal),
        Just(QueueMode::Fifo(FifoScope::Queue)),
        Just(QueueMode::Fifo(FifoScope::MessageGroup)),
    ];
    let retry = prop_oneof![Just(RetryPolicy::Immediate), Just(RetryPolicy::Backoff)];
    let dedup_window_ms = prop_oneof![Just(20_000u64), Just(300_000)];
    (
        mode,
        prop::option::weighted(
            0.6,
            prop_oneof![2 => Just(1u16), 1 => Just(2), 1 => Just(3)],
        ),
        retry,
        prop_oneof![3 => 60_000u64..600_000, 1 => Just(LONG_RETENTION_MS)],
        dedup_window_ms,
    )
        .prop_map(
            |(mode, max_consume_count, retry, retention_ms, dedup_window_ms)| QueueSpec {
                mode,
                max_consume_count,
                retry,
                retention_ms,
                dedup_window_ms,
            },
        )
}

fn message_spec() -> impl Strategy<Value = MessageSpec> {
    let delay = prop_oneof![
        6 => Just(DelaySpec::None),
        2 => (0u64..20_000).prop_map(DelaySpec::Ms),
        2 => (-10_000i64..20_000).prop_map(DelaySpec::At),
    ];
    (
        prop::collection::vec(0u8..3, 0..=3),
        prop::option::weighted(0.8, 0u8..3),
        delay,
        prop::option::weighted(0.3, 0u8..3),
    )
        .prop_map(|(tags, fifo_group, delay, dedup_id)| MessageSpec {
            tags,
            fifo_group,
            delay,
            dedup_id,
        })
}

fn pick() -> impl Strategy<Value = Pick> {
    (prop::bool::weighted(0.7), any::<u16>()).prop_map(|(recent, index)| Pick { recent, index })
}

fn op_strategy() -> impl Strategy<Value = Op> {
    let filter = prop_oneof![
        5 => Just(FilterChoice::None),
        4 => Just(FilterChoice::Own),
        1 => (0u8..4).prop_map(FilterChoice::Table),
    ];
    let slot = || 0u8..4;
    let follow = || prop::option::weighted(0.7, pick());
    prop_oneof![
        2 => (slot(), queue_spec()).prop_map(|(name, spec)| Op::CreateQueue { name, spec }),
        3 => (slot(), slot(), any::<bool>())
            .prop_map(|(queue, name, latest)| Op::CreateGroup { queue, name, latest }),
        16 => (slot(), prop::collection::vec(message_spec(), 1..=4))
            .prop_map(|(queue, messages)| Op::Send { queue, messages }),
        16 => (slot(), slot(), 1u32..=5, 1_000u64..30_000, filter).prop_map(
            |(queue, group, max, visibility_ms, filter)| Op::Receive {
                queue, group, max, visibility_ms, filter,
            }
        ),
        7 => (slot(), slot(), follow(), 1u32..=5, 1_000u64..30_000).prop_map(
            |(queue, group, follow, max, visibility_ms)| Op::ReceiveDead {
                queue, group, follow, max, visibility_ms,
            }
        ),
        12 => (prop::collection::vec((pick(), prop::bool::weighted(0.6)), 1..=5), any::<bool>())
            .prop_map(|(picks, stop_at_first_error)| Op::Ack { picks, stop_at_first_error }),
        3 => (pick(), prop_oneof![9 => 0u64..40_000, 1 => Just(100_000_000u64)])
            .prop_map(|(pick, ms)| Op::ChangeVisibility { pick, ms }),
        3 => (pick(), prop::option::weighted(0.2, slot()))
            .prop_map(|(message, queue)| Op::Cancel { message, queue }),
        3 => (slot(), slot(), follow())
            .prop_map(|(queue, group, follow)| Op::Redrive { queue, group, follow }),
        12 => (0u64..40_000).prop_map(Op::Advance),
        2 => Just(Op::Snapshot),
        2 => any::<bool>().prop_map(|clean| Op::Crash { clean }),
        1 => (slot(), slot()).prop_map(|(queue, group)| Op::DeleteGroup { queue, group }),
        1 => slot().prop_map(|queue| Op::DeleteQueue { queue }),
    ]
}

/// A case starts with 1..=3 queues of 1..=2 groups each, so most operations hit something.
fn setup_strategy() -> impl Strategy<Value = Vec<Op>> {
    let queue = (
        queue_spec(),
        prop::collection::vec(prop::bool::weighted(0.3), 1..=2),
    );
    prop::collection::vec(queue, 1..=3).prop_map(|queues| {
        let mut ops = Vec::new();
        for (index, (spec, groups)) in queues.into_iter().enumerate() {
            let queue = u8::try_from(index).unwrap();
            ops.push(Op::CreateQueue { name: queue, spec });
            for (name, latest) in groups.into_iter().enumerate() {
                let name = u8::try_from(name).unwrap();
                ops.push(Op::CreateGroup {
                    queue,
                    name,
                    latest,
                });
            }
        }
        ops
    })
}

fn filter_table(index: usize) -> TagFilter {
    let (mode, tags): (TagMatch, &[&str]) = match index % 4 {
        0 => (TagMatch::Any, &[]),
        1 => (TagMatch::Any, &["a"]),
        2 => (TagMatch::All, &["a", "b"]),
        _ => (TagMatch::Any, &["b", "c"]),
    };
    TagFilter {
        tags: tags.iter().map(|t| t.to_string()).collect(),
        mode,
    }
}

fn engine_config(snapshot_every_records: u64) -> EngineConfig {
    EngineConfig {
        log: LogConfig {
            segment_bytes_max: 64 * 1024,
            index_interval_bytes: 4096,
            preallocate_bytes: 16 * 1024,
            verify_on_open: VerifyOnOpen::Tail,
        },
        limits: EngineLimits {
            groups_per_queue_max: 8,
            batch_messages_max: 64,
            receive_messages_max: 64,
            ..EngineLimits::dms()
        },
        snapshot_every_records,
    }
}

// ---------------------------------------------------------------------- harness

/// A delivered handle: the engine's receipt and the model's.
struct Delivered {
    engine: ReceiptHandle,
    model: Handle,
}

struct Harness {
    disk: SimDisk,
    engine: Option<Engine<SimDisk>>,
    config: EngineConfig,
    model: Model,
    /// Engine ids by model slot.
    queue_ids: Vec<QueueId>,
    group_ids: Vec<Vec<GroupId>>,
    /// Model message index by engine message id, and back.
    message_index: HashMap<MessageId, usize>,
    message_ids: Vec<MessageId>,
    handles: Vec<Delivered>,
    bodies_made: u32,
    body_padding_bytes: usize,
    step: usize,
    /// The durable log end when the engine was last opened.
    opened_at_offset: u64,
}

/// Checks that engine and model agree on success or on the error, and returns both
/// successes.
fn agree<T, U, E>(step: usize, engine: Result<T, E>, model: Result<U, E>) -> Option<(T, U)>
where
    T: std::fmt::Debug,
    U: std::fmt::Debug,
    E: std::fmt::Debug + PartialEq,
{
    match (engine, model) {
        (Ok(engine), Ok(model)) => Some((engine, model)),
        (Err(engine), Err(model)) => {
            assert_eq!(
                engine, model,
                "step {step}: engine and model fail differently"
            );
            None
        }
        (engine, model) => panic!("step {step}: engine gave {engine:?}, model {model:?}"),
    }
}

/// A body without its padding, for readable failure messages.
fn short(body: &str) -> &str {
    body.trim_end_matches('.')
}

impl Harness {
    fn new(seed: u64, snapshot_every_records: u64, body_padding_bytes: usize) -> Harness {
        let disk = SimDisk::new(seed);
        let config = engine_config(snapshot_every_records);
        let engine = block_on(Engine::open(disk.clone(), config)).expect("open empty");
        let limits = config.limits;
        Harness {
            disk,
            engine: Some(engine),
            config,
            model: Model::new(
                START_MS,
                limits.groups_per_queue_max,
                limits.visibility_ms_max,
            ),
            queue_ids: Vec::new(),
            group_ids: Vec::new(),
            message_index: HashMap::new(),
            message_ids: Vec::new(),
            handles: Vec::new(),
            bodies_made: 0,
            body_padding_bytes,
            step: 0,
            opened_at_offset: 0,
        }
    }

    fn engine(&self) -> &Engine<SimDisk> {
        self.engine.as_ref().expect("engine is open")
    }

    fn now(&self) -> u64 {
        self.model.now
    }

    /// A queue slot and its engine id; an id no queue has when there is no queue yet.
    fn queue_target(&self, pick: u8) -> (Option<usize>, QueueId) {
        if self.queue_ids.is_empty() {
            return (None, QueueId(u32::MAX));
        }
        let slot = usize::from(pick) % self.queue_ids.len();
        (Some(slot), self.queue_ids[slot])
    }

    fn group_target(&self, queue: Option<usize>, pick: u8) -> (Option<usize>, GroupId) {
        match queue.map(|q| &self.group_ids[q]) {
            Some(groups) if !groups.is_empty() => {
                let slot = usize::from(pick) % groups.len();
                (Some(slot), groups[slot])
            }
            _ => (None, GroupId(u32::MAX)),
        }
    }

    fn run(&mut self, op: &Op) {
        self.step += 1;
        match op {
            Op::CreateQueue { name, spec } => self.create_queue(*name, spec),
            Op::CreateGroup {
                queue,
                name,
                latest,
            } => self.create_group(*queue, *name, *latest),
            Op::Send { queue, messages } => self.send(*queue, messages),
            Op::Receive {
                queue,
                group,
                max,
                visibility_ms,
                filter,
            } => self.receive(*queue, *group, *max, *visibility_ms, *filter),
            Op::ReceiveDead {
                queue,
                group,
                follow,
                max,
                visibility_ms,
            } => {
                let (q, g) = self.dead_letter_target(*queue, *group, *follow);
                self.receive_dead(q, g, *max, *visibility_ms);
            }
            Op::Ack {
                picks,
                stop_at_first_error,
            } => self.ack(picks, *stop_at_first_error),
            Op::ChangeVisibility { pick, ms } => self.change_visibility(*pick, *ms),
            Op::Cancel { message, queue } => self.cancel(*message, *queue),
            Op::Redrive {
                queue,
                group,
                follow,
            } => {
                let (q, g) = self.dead_letter_target(*queue, *group, *follow);
                self.redrive(q, g);
            }
            Op::Advance(ms) => self.advance(*ms),
            Op::Snapshot => {
                let result = block_on(self.engine().snapshot());
                agree(self.step, result, Ok::<(), EngineError>(()));
            }
            Op::Crash { clean } => self.crash(*clean),
            Op::DeleteGroup { queue, group } => self.delete_group(*queue, *group),
            Op::DeleteQueue { queue } => {
                let (slot, id) = self.queue_target(*queue);
                let result = block_on(self.engine().delete_queue(id, self.now()));
                agree(self.step, result, self.model.delete_queue(slot));
            }
        }
        self.check_stats();
    }

    /// The queue and group slots of a followed handle, else the given ones.
    fn dead_letter_target(&self, queue: u8, group: u8, follow: Option<Pick>) -> (u8, u8) {
        let followed = follow.and_then(|pick| pick.resolve(self.handles.len()));
        match followed {
            Some(index) => {
                let handle = self.handles[index].model;
                let slot = |s: usize| u8::try_from(s).expect("few slots");
                (slot(handle.queue), slot(handle.group))
            }
            None => (queue, group),
        }
    }

    fn create_queue(&mut self, name: u8, spec: &QueueSpec) {
        let name = format!("q{name}");
        let config = QueueConfig {
            mode: spec.mode,
            retention_ms: spec.retention_ms,
            max_consume_count: spec.max_consume_count,
            retry: spec.retry,
            dedup_window_ms: spec.dedup_window_ms,
        };
        let result = block_on(self.engine().create_queue("t", &name, config, self.now()));
        let expected = self.model.create_queue(&name, config);
        if let Some((id, slot)) = agree(self.step, result, expected) {
            assert!(!self.queue_ids.contains(&id), "queue id {id:?} reused");
            assert_eq!(slot, self.queue_ids.len());
            self.queue_ids.push(id);
            self.group_ids.push(Vec::new());
        }
    }

    fn create_group(&mut self, queue: u8, name: u8, latest: bool) {
        let (slot, id) = self.queue_target(queue);
        let name = format!("g{name}");
        let start = if latest {
            GroupStart::Latest
        } else {
            GroupStart::Oldest
        };
        let result = block_on(self.engine().create_group(id, &name, start, self.now()));
        let expected = self.model.create_group(slot, &name, start);
        if let Some((group, group_slot)) = agree(self.step, result, expected) {
            let q = slot.expect("created in a queue");
            assert!(
                self.group_ids.iter().all(|groups| !groups.contains(&group)),
                "group id {group:?} reused"
            );
            assert_eq!(group_slot, self.group_ids[q].len());
            self.group_ids[q].push(group);
        }
    }

    fn delete_group(&mut self, queue: u8, group: u8) {
        let (q, queue_id) = self.queue_target(queue);
        let (g, group_id) = self.group_target(q, group);
        let result = block_on(self.engine().delete_group(queue_id, group_id, self.now()));
        agree(self.step, result, self.model.delete_group(q, g));
    }

    fn send(&mut self, queue: u8, specs: &[MessageSpec]) {
        if self.model.messages.len() >= MESSAGES_MAX {
            return;
        }
        let (slot, id) = self.queue_target(queue);
        let now = self.now();
        let delays = DELAYS_IN_QUEUES_WITH_SHORT_RETENTION_ENABLED
            || slot.is_some_and(|q| self.model.queues[q].config.retention_ms >= LONG_RETENTION_MS);
        let mut inputs = Vec::new();
        let mut outgoing = Vec::new();
        for spec in specs {
            let body = format!(
                "m{}{}",
                self.bodies_made,
                ".".repeat(self.body_padding_bytes)
            );
            self.bodies_made += 1;
            let delay = match spec.delay {
                _ if !delays => Delay::None,
                DelaySpec::None => Delay::None,
                DelaySpec::Ms(ms) => Delay::Ms(ms),
                DelaySpec::At(offset) => Delay::At(now.saturating_add_signed(offset)),
            };
            let input = SendInput {
                body: body.clone().into_bytes(),
                attributes: Vec::new(),
                tags: spec
                    .tags
                    .iter()
                    .map(|t| TAGS[usize::from(*t)].to_string())
                    .collect(),
                fifo_group: spec
                    .fifo_group
                    .map(|g| FIFO_GROUPS[usize::from(g)].to_string()),
                delay,
                dedup_id: spec.dedup_id.map(|d| format!("d{d}")),
            };
            outgoing.push(Outgoing {
                body,
                tags: input.tags.clone(),
                fifo_group: input.fifo_group.clone(),
                delay,
                dedup_id: input.dedup_id.clone(),
            });
            inputs.push(input);
        }
        let result = block_on(self.engine().send(id, &inputs, now));
        let expected = self.model.send(slot, outgoing);
        let Some((outcomes, expected)) = agree(self.step, result, expected) else {
            return;
        };
        assert_eq!(outcomes.len(), expected.len());
        for (outcome, (message, duplicate)) in outcomes.iter().zip(expected) {
            let step = self.step;
            assert_eq!(outcome.duplicate, duplicate, "step {step}: duplicate flag");
            if duplicate {
                let named = self.message_index.get(&outcome.message_id);
                assert_eq!(
                    named,
                    Some(&message),
                    "step {step}: duplicate names another message"
                );
            } else {
                assert_eq!(message, self.message_ids.len());
                let previous = self.message_index.insert(outcome.message_id, message);
                assert!(previous.is_none(), "step {step}: message id reused");
                self.message_ids.push(outcome.message_id);
            }
        }
    }

    fn receive(
        &mut self,
        queue: u8,
        group: u8,
        max: u32,
        visibility_ms: u64,
        choice: FilterChoice,
    ) {
        let (q, queue_id) = self.queue_target(queue);
        let (g, group_id) = self.group_target(q, group);
        let mut filter = match choice {
            FilterChoice::None => None,
            FilterChoice::Own => Some(filter_table(q.unwrap_or(0) + g.unwrap_or(0) + 1)),
            FilterChoice::Table(index) => Some(filter_table(usize::from(index))),
        };
        if !FILTER_AFTER_DELIVERIES_ENABLED {
            let delivered = self
                .handles
                .iter()
                .any(|h| (Some(h.model.queue), Some(h.model.group)) == (q, g));
            let unfiltered = match (q, g) {
                (Some(q), Some(g)) => self.model.queues[q].groups[g].filter.is_none(),
                _ => true,
            };
            if delivered && unfiltered {
                filter = None;
            }
        }
        let request = ReceiveRequest {
            max_messages: max,
            visibility_ms,
            filter: filter.clone(),
        };
        let now = self.now();
        let result = block_on(self.engine().receive(queue_id, group_id, &request, now));
        let expected = self
            .model
            .receive(q, g, max, visibility_ms, filter.as_ref());
        if let Some((deliveries, picked)) = agree(self.step, result, expected) {
            self.record_deliveries(q, g, deliveries, picked, false);
        }
    }

    fn receive_dead(&mut self, queue: u8, group: u8, max: u32, visibility_ms: u64) {
        let (q, queue_id) = self.queue_target(queue);
        let (g, group_id) = self.group_target(q, group);
        let request = ReceiveRequest {
            max_messages: max,
            visibility_ms,
            filter: None,
        };
        let now = self.now();
        let result = block_on(
            self.engine()
                .receive_dead(queue_id, group_id, &request, now),
        );
        let expected = self.model.receive_dead(q, g, max, visibility_ms);
        if let Some((deliveries, picked)) = agree(self.step, result, expected) {
            self.record_deliveries(q, g, deliveries, picked, true);
        }
    }

    /// Compares a receive's deliveries with the model's picks and keeps the handles.
    fn record_deliveries(
        &mut self,
        queue: Option<usize>,
        group: Option<usize>,
        deliveries: Vec<Delivery>,
        picked: Vec<Picked>,
        dead_letter: bool,
    ) {
        let step = self.step;
        let got: Vec<(String, u32)> = deliveries
            .iter()
            .map(|d| {
                let body = String::from_utf8(d.body.clone()).expect("bodies are text");
                (short(&body).to_string(), d.delivery_count)
            })
            .collect();
        let want: Vec<(String, u32)> = picked
            .iter()
            .map(|(m, count, _)| (short(&self.model.messages[*m].body).to_string(), *count))
            .collect();
        assert_eq!(got, want, "step {step}: receive (body, delivery count)");
        let (queue, group) = (queue.expect("received"), group.expect("received"));
        for (delivery, (m, _, lease)) in deliveries.into_iter().zip(picked) {
            let message = &self.model.messages[m];
            assert_eq!(delivery.body, message.body.as_bytes());
            assert_eq!(self.message_index.get(&delivery.message_id), Some(&m));
            assert_eq!(delivery.tags, message.tags, "step {step}: tags");
            assert_eq!(
                delivery.fifo_group, message.fifo_group,
                "step {step}: fifo group"
            );
            assert_eq!(delivery.sent_ms, message.sent_ms, "step {step}: sent_ms");
            assert_eq!(delivery.handle.dead_letter, dead_letter);
            assert_eq!(delivery.handle.queue, self.queue_ids[queue]);
            assert_eq!(delivery.handle.group, self.group_ids[queue][group]);
            let model = Handle {
                queue,
                group,
                message: m,
                lease,
                dead_letter,
            };
            self.handles.push(Delivered {
                engine: delivery.handle,
                model,
            });
        }
    }

    fn ack(&mut self, picks: &[(Pick, bool)], stop_at_first_error: bool) {
        let mut chosen: Vec<(usize, AckKind)> = Vec::new();
        for (pick, success) in picks {
            let Some(index) = pick.resolve(self.handles.len()) else {
                return;
            };
            let message = |i: usize| {
                let h = self.handles[i].model;
                (h.queue, h.group, h.message)
            };
            let repeats = chosen.iter().any(|(i, _)| message(*i) == message(index));
            if SAME_MESSAGE_TWICE_IN_ONE_ACK_BATCH_ENABLED || !repeats {
                let kind = if *success {
                    AckKind::Success
                } else {
                    AckKind::Fail
                };
                chosen.push((index, kind));
            }
        }
        let acks: Vec<(ReceiptHandle, AckKind)> = chosen
            .iter()
            .map(|(i, kind)| (self.handles[*i].engine, *kind))
            .collect();
        let model_acks: Vec<(Handle, AckKind)> = chosen
            .iter()
            .map(|(i, kind)| (self.handles[*i].model, *kind))
            .collect();
        let result = block_on(self.engine().ack(&acks, stop_at_first_error, self.now()));
        let expected = self.model.ack(&model_acks, stop_at_first_error);
        let step = self.step;
        assert_eq!(result, Ok(expected), "step {step}: ack results");
    }

    fn change_visibility(&mut self, pick: Pick, ms: u64) {
        let Some(index) = pick.resolve(self.handles.len()) else {
            return;
        };
        let handle = &self.handles[index];
        let result = self
            .engine()
            .change_visibility(&handle.engine, ms, self.now());
        let model = handle.model;
        let expected = self.model.change_visibility(&model, ms);
        let step = self.step;
        assert_eq!(result, expected, "step {step}: change_visibility");
    }

    fn cancel(&mut self, message: Pick, queue: Option<u8>) {
        let m = message.resolve(self.message_ids.len());
        let (slot, queue_id) = match (queue, m) {
            (Some(queue), _) => self.queue_target(queue),
            (None, Some(m)) => {
                let slot = self.model.messages[m].queue;
                (Some(slot), self.queue_ids[slot])
            }
            (None, None) => self.queue_target(0),
        };
        let id = m.map_or(MessageId(u64::MAX), |m| self.message_ids[m]);
        let result = block_on(self.engine().cancel(queue_id, id, self.now()));
        agree(self.step, result, self.model.cancel(slot, m));
    }

    fn redrive(&mut self, queue: u8, group: u8) {
        let (q, queue_id) = self.queue_target(queue);
        let (g, group_id) = self.group_target(q, group);
        let result = block_on(self.engine().redrive(queue_id, group_id, self.now()));
        agree(self.step, result, self.model.redrive(q, g));
    }

    fn advance(&mut self, ms: u64) {
        let now = self.now() + ms;
        let result = block_on(self.engine().tick(now));
        agree(self.step, result, Ok::<(), EngineError>(()));
        self.model.tick(now);
    }

    fn crash(&mut self, clean: bool) {
        let durable = self.engine().log().durable_offset().0;
        if !REOPEN_WITHOUT_LOG_GROWTH_ENABLED && durable == self.opened_at_offset {
            return;
        }
        self.engine = None;
        if !clean {
            self.disk.crash();
        }
        let engine = block_on(Engine::open(self.disk.clone(), self.config));
        let step = self.step;
        self.engine = Some(engine.unwrap_or_else(|e| panic!("step {step}: reopen failed: {e}")));
        self.opened_at_offset = self.engine().log().durable_offset().0;
        self.model.crash();
        if !OPERATIONS_BEFORE_FIRST_TICK_AFTER_REOPEN_ENABLED {
            self.advance(0);
        }
    }

    /// Every group's counters, including those of deleted groups and queues (errors).
    fn check_stats(&self) {
        let step = self.step;
        for (q, queue_id) in self.queue_ids.iter().enumerate() {
            for (g, group_id) in self.group_ids[q].iter().enumerate() {
                let stats = self.engine().group_stats(*queue_id, *group_id);
                let expected = self.model.group_stats(q, g);
                if let Some((stats, expected)) = agree(step, stats, expected) {
                    assert!(
                        expected.admits(&stats),
                        "step {step}: group ({q}, {g}) stats {stats:?}, model {expected:?}"
                    );
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn engine_matches_model(
        seed in any::<u64>(),
        snapshot_every_records in prop_oneof![Just(4u64), Just(10_000)],
        body_padding_bytes in prop_oneof![3 => Just(0usize), 1 => Just(6_000)],
        setup in setup_strategy(),
        ops in prop::collection::vec(op_strategy(), 1..40),
    ) {
        let mut harness = Harness::new(seed, snapshot_every_records, body_padding_bytes);
        for op in setup.iter().chain(&ops) {
            harness.run(op);
        }
        // Whatever happened, a final crash and reopen must agree too.
        harness.run(&Op::Crash { clean: false });
    }
}
