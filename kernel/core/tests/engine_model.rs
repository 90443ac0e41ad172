//! Model test of the queue engine (`Engine<SimDisk>`) against a deliberately plain
//! reference model (`engine_model/model.rs`).
//!
//! Goal: for any sequence of queue and group changes, sends (delayed, scheduled, tagged,
//! FIFO-grouped, deduplicated, transactional half messages), transactions committed and
//! rolled back, receives (with and without tag filters), acks and fails of
//! current and stale handles, visibility changes, dead-letter receives and redrives,
//! cancels, dead-letter policies with and without a target queue, snapshots, crashes and
//! time passing, the engine gives exactly the results the
//! delivery contract below prescribes.
//!
//! Method: the model and the engine receive the same random operations with the same
//! `now`; time moves only through "advance", after which the harness calls `tick(now)`
//! once. After every step every returned `Result` must match (errors by value), receives
//! must return the same (body, delivery count) list in the same order, acks the same
//! per-entry results, sends the same `duplicate` flags naming the same messages (message
//! ids are log offsets, so the harness maps them to the bodies they identify), and every
//! group's `group_stats` backlog, in-flight and dead-letter counts must match. Bodies are
//! unique per run (a counter), so a body names a message. Besides random advances, the
//! harness advances to the model's timer edges (deadlines, due times, retention and dedup
//! expiries) give or take 1 ms, where off-by-one mistakes show. The number of cases comes
//! from `PROPTEST_CASES` (CI sets 10,000: about 32 s in a debug build).
//! `engine_model/fixme.rs` keeps each engine bug this test found as its smallest case.
//!
//! The contract (the model implements this, not the engine's code):
//! - tick(now), in order: back-off waits with visible_ms <= now end; leases with deadline
//!   <= now expire as failures (dead-letter leases just end); delayed messages with
//!   deliver_at <= now become available by deliver_at then send order; retained messages
//!   with available_ms + retention_ms < now are deleted for every group; dedup entries
//!   with expiry <= now are dropped. available_ms is the send time, or for a delayed
//!   message its release (docs/semantics.md: a delay longer than the retention is still
//!   honoured); deliveries report the send time.
//! - A message takes its position in its queue when it becomes available (at send unless
//!   delayed to a time after now, else when a tick releases it). Oldest groups see every
//!   retained message, Latest groups those that become available after their creation.
//! - receive: NORMAL returns the first `max` available messages the group's filter admits,
//!   cut before the first whose bytes (body and attributes) would take the total past the
//!   request's `bytes_max`, except that an oversize first message is returned alone when
//!   `oversize_first` is set (the dead-letter lane cuts its list the same way);
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
//! - A queue's adapter fields are empty at create and then what the latest set gave;
//!   more than `QUEUE_META_BYTES_MAX` bytes is `InvalidConfig("meta")`.
//! - set_dead_letter(queue, max, target): a count of 0 is `InvalidConfig
//!   ("max_consume_count")`; a missing queue or target `QueueNotFound`; a target without a
//!   count, the queue itself or a queue of another mode `InvalidConfig
//!   ("dead_letter_target")`; else the queue's count and target are replaced. With a
//!   target, a message that dies is done for its group and becomes a new available message
//!   of the target (same body, tags, group and send time, its retention from now, fresh
//!   counts); the dead letters of one ack batch, or of one tick's expired leases, move in
//!   the order of (queue, group, position), at the end of the batch: a later entry of the
//!   same batch on a message it failed is `Stale`, a later batch's Success `AlreadyDone`. Deleting a queue removes it as a target.
//! - A half message (`Delay::Half { check_after_ms }`) is held until its transaction
//!   ends: `end_transaction` commit makes it available at that moment (retention from
//!   then), rollback drops it; either on anything but an open half message of that queue
//!   is `NotScheduled`, as is `cancel` of a half message. While open, it is due first at
//!   send + max(check_after_ms, 1), then every `transaction_check_interval_ms` after the
//!   tick that checked it; a tick that finds it due checks it (the count + 1, reported
//!   by `take_transaction_checks` as (message, count) for that tick, in any order), or,
//!   when it was checked `transaction_checks_max` times already, drops it.
//! - Crash and reopen lose every lease (in-flight messages available at once, failures
//!   unchanged) and nothing else. A snapshot changes nothing observable.
//!
//! How this test was checked to catch bugs: the engine was mutated by hand in a scratch
//! copy, the test run with `PROPTEST_CASES=10000` in a debug build, and the mutation
//! reverted (none is committed). Cases that passed before the first failure, in one run:
//! `State::receive` ignores FIFO locks: 34. `apply_ack` does not mark the message done: 4.
//! `apply_nack` dead-letters one failure late: 6. `Leaser::lease` reports
//! `max(failures, 1)` deliveries: 12. `apply_retention` deletes a message 1 ms early: 15
//! (never caught before the timer-edge advances existed). `Engine::send` ignores repeats
//! within a batch: 4. Dead-letter leases never expire: 128. Redrive leaves the message
//! done: 99. Back-off index off by one: 160. A Latest group also sees the newest existing
//! message: 3. `TagMatch::All` matched as `Any`: 17. A stale dead-letter fail of an acked
//! message answers `AlreadyDone`: 249. `change_visibility` ignores the nonce: 553. A lease
//! expiring exactly at `now` is ignored: 35. Timers fire 1 ms late: 17. Snapshots drop
//! failure counts: 9. Survivors, all equivalent under this protocol: not rewinding the
//! cursor or dropping dead-letter leases on reopen (a reopened state is built fresh),
//! redrive keeping failure counts (they are forgotten when a message dies), and a dedup
//! entry still valid at its expiry instant (the tick at that instant drops it first).
//!
//! Transactions, one run each: a replayed half message checked again at its stale first
//! check time (the timer not compared with its due time): step 27 of the first case.
//! Dropping a half message one check late: step 20.
//!
//! Dead-letter targets, one run each: moving a command's dead letters in reverse order:
//! 456 cases. Dropping the move (the message done in the source, nowhere in the target):
//! 87.
//!
//! Engine disagreements with the contract that this test found were fixed in the engine;
//! the random operations cover all of them, and `engine_model/fixme.rs` keeps each one's
//! smallest sequence as a named regression test.

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

// The five engine bugs this test found (filters and redeliveries, retention across a
// reopen, repeated acks in one batch, nonces across reopens, log retention under released
// delayed messages) are fixed; their minimal sequences live on in `engine_model/fixme.rs`.

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
