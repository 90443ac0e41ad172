//! The operations of the engine model test and their random generation: what a case
//! does, with weights chosen so that one case stays cheap (a few queues, at most
//! `MESSAGES_MAX` messages, under 50 operations) yet reaches dead letters, back-off waits,
//! retention, multi-segment logs and crashes.

use proptest::prelude::*;
use sluice_core::engine::types::{FifoScope, QueueMode, RetryPolicy, TagFilter, TagMatch};

#[derive(Clone, Debug)]
pub struct QueueSpec {
    pub mode: QueueMode,
    pub max_consume_count: Option<u16>,
    pub retry: RetryPolicy,
    pub retention_ms: u64,
    pub dedup_window_ms: u64,
}

#[derive(Clone, Debug)]
pub enum DelaySpec {
    None,
    Ms(u64),
    /// Relative to now; may lie in the past.
    At(i64),
    /// A transactional half message, first checked after this many ms.
    Half(u64),
}

#[derive(Clone, Debug)]
pub struct MessageSpec {
    pub tags: Vec<u8>,
    pub fifo_group: Option<u8>,
    pub delay: DelaySpec,
    pub dedup_id: Option<u8>,
    /// Padding beyond the case's own, so that messages differ in size for byte budgets.
    pub extra_bytes: u16,
}

/// A receive's byte budget: `units` messages of the case's plain size plus `extra`
/// bytes, so that budgets land near message boundaries whatever the case's padding.
#[derive(Clone, Copy, Debug)]
pub struct BudgetSpec {
    pub units: u8,
    pub extra: u8,
    pub oversize_first: bool,
}

#[derive(Clone, Copy, Debug)]
pub enum FilterChoice {
    None,
    /// The group's own filter (fixed per group slot).
    Own,
    /// Any filter of the table, usually a conflicting one.
    Table(u8),
}

/// Picks one of the handles delivered so far: a recent one or any.
#[derive(Clone, Copy, Debug)]
pub struct Pick {
    pub recent: bool,
    pub index: u16,
}

impl Pick {
    pub fn resolve(self, len: usize) -> Option<usize> {
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
pub enum Op {
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
        budget: Option<BudgetSpec>,
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
        budget: Option<BudgetSpec>,
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
    /// End the transaction of a sent message (commit or roll back), in its own queue
    /// (`queue: None`) or another.
    EndTransaction {
        message: Pick,
        queue: Option<u8>,
        commit: bool,
    },
    Redrive {
        queue: u8,
        group: u8,
        follow: Option<Pick>,
    },
    Advance(u64),
    /// Advance to one of the model's timer edges, give or take a millisecond, where
    /// off-by-one mistakes show.
    AdvanceToEdge {
        edge: u8,
        offset_ms: i8,
    },
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
    /// Replace a queue's adapter fields with `meta` bytes of `fill`.
    SetQueueMeta {
        queue: u8,
        fill: u8,
        bytes: u16,
    },
    /// Set a queue's dead-letter policy: a count and a target queue slot.
    SetDeadLetter {
        queue: u8,
        max: Option<u16>,
        target: Option<u8>,
    },
}

pub fn queue_spec() -> impl Strategy<Value = QueueSpec> {
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
        // Mostly retentions a case outlasts; some a case rarely reaches (24 h).
        prop_oneof![3 => 60_000u64..600_000, 1 => Just(24 * 3600 * 1000)],
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

pub fn message_spec() -> impl Strategy<Value = MessageSpec> {
    let delay = prop_oneof![
        6 => Just(DelaySpec::None),
        2 => prop_oneof![1 => Just(0), 4 => 1u64..20_000].prop_map(DelaySpec::Ms),
        2 => prop_oneof![1 => Just(0), 4 => -10_000i64..20_000].prop_map(DelaySpec::At),
        1 => prop_oneof![1 => Just(0), 4 => 1u64..20_000].prop_map(DelaySpec::Half),
    ];
    (
        prop::collection::vec(0u8..3, 0..=3),
        prop::option::weighted(0.8, 0u8..3),
        delay,
        prop::option::weighted(0.3, 0u8..3),
        prop_oneof![2 => Just(0u16), 1 => 1u16..40],
    )
        .prop_map(
            |(tags, fifo_group, delay, dedup_id, extra_bytes)| MessageSpec {
                tags,
                fifo_group,
                delay,
                dedup_id,
                extra_bytes,
            },
        )
}

pub fn budget() -> impl Strategy<Value = Option<BudgetSpec>> {
    let spec = (0u8..=4, 0u8..=60, prop::bool::weighted(0.7)).prop_map(
        |(units, extra, oversize_first)| BudgetSpec {
            units,
            extra,
            oversize_first,
        },
    );
    prop::option::weighted(0.35, spec)
}

pub fn pick() -> impl Strategy<Value = Pick> {
    (prop::bool::weighted(0.7), any::<u16>()).prop_map(|(recent, index)| Pick { recent, index })
}

pub fn op_strategy() -> impl Strategy<Value = Op> {
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
        16 => (slot(), slot(), 1u32..=5, budget(), 1_000u64..30_000, filter).prop_map(
            |(queue, group, max, budget, visibility_ms, filter)| Op::Receive {
                queue, group, max, budget, visibility_ms, filter,
            }
        ),
        7 => (slot(), slot(), follow(), 1u32..=5, budget(), 1_000u64..30_000).prop_map(
            |(queue, group, follow, max, budget, visibility_ms)| Op::ReceiveDead {
                queue, group, follow, max, budget, visibility_ms,
            }
        ),
        12 => (prop::collection::vec((pick(), prop::bool::weighted(0.6)), 1..=5), any::<bool>())
            .prop_map(|(picks, stop_at_first_error)| Op::Ack { picks, stop_at_first_error }),
        3 => (pick(), prop_oneof![9 => 0u64..40_000, 1 => Just(100_000_000u64)])
            .prop_map(|(pick, ms)| Op::ChangeVisibility { pick, ms }),
        3 => (pick(), prop::option::weighted(0.2, slot()))
            .prop_map(|(message, queue)| Op::Cancel { message, queue }),
        3 => (pick(), prop::option::weighted(0.1, slot()), prop::bool::weighted(0.7))
            .prop_map(|(message, queue, commit)| Op::EndTransaction { message, queue, commit }),
        3 => (slot(), slot(), follow())
            .prop_map(|(queue, group, follow)| Op::Redrive { queue, group, follow }),
        9 => (0u64..40_000).prop_map(Op::Advance),
        4 => (any::<u8>(), -1i8..=1)
            .prop_map(|(edge, offset_ms)| Op::AdvanceToEdge { edge, offset_ms }),
        2 => Just(Op::Snapshot),
        2 => any::<bool>().prop_map(|clean| Op::Crash { clean }),
        1 => (slot(), slot()).prop_map(|(queue, group)| Op::DeleteGroup { queue, group }),
        1 => slot().prop_map(|queue| Op::DeleteQueue { queue }),
        2 => (slot(), any::<u8>(), prop_oneof![9 => 0u16..64, 1 => Just(16 * 1024 + 1)])
            .prop_map(|(queue, fill, bytes)| Op::SetQueueMeta { queue, fill, bytes }),
        3 => (slot(), prop::option::weighted(0.9, 0u16..=3), prop::option::weighted(0.8, slot()))
            .prop_map(|(queue, max, target)| Op::SetDeadLetter { queue, max, target }),
    ]
}

/// A case starts with 1..=3 queues of 1..=2 groups each, so most operations hit something.
pub fn setup_strategy() -> impl Strategy<Value = Vec<Op>> {
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

pub fn filter_table(index: usize) -> TagFilter {
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
