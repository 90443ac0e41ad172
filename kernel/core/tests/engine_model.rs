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

#[path = "engine_model/fixme.rs"]
mod fixme;
#[path = "engine_model/harness.rs"]
mod harness;
#[path = "engine_model/model.rs"]
mod model;
#[path = "engine_model/ops.rs"]
mod ops;

use harness::Harness;
use ops::{op_strategy, setup_strategy, Op};
use proptest::prelude::*;

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
