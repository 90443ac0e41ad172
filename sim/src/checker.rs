//! The checker: judges a finished, healed and drained history against the delivery
//! contract. It reads only the history (what clients saw, plus the serials of requests
//! whose replies were lost, which the simulator knows) and never the engine.
//!
//! Deliveries, acks and leases are judged per message id, so a message stored twice is
//! judged as two messages (and its second storage reported by the dedup check).
//!
//! Checked: a send that got success reaches every group; nothing is delivered that was
//! never sent to that queue; a key maps to one message id (dedup across retries); after
//! an ack got success its group never receives the message again; FIFO: per group and
//! message group, nothing is handed out while an earlier message is unacked (one
//! delivery batch counts as simultaneous; delayed messages join the order when released);
//! delayed messages never arrive early; a message is not handed out again before its
//! visibility deadline unless it was failed or the engine reopened in between; a
//! tenant's requests aimed at another tenant's queues are refused.
//!
//! With a queue retention shorter than the run (some cluster seeds), a message that may
//! have passed it (its earliest release plus the retention reached by the highest queue
//! time any node had) need not be delivered, nor acked before later ones of its FIFO
//! group.

use std::collections::{BTreeMap, BTreeSet};

use sluice_core::engine::types::AckKind;

use crate::client::{GROUPS, QUEUES};
use crate::history::{Delivered, EventKind, History, Lane, MessageId, Outcome, QueueHighWater};

/// One delivery. The node picked it somewhere between the receive's entry and completion
/// (serials and times): at entry, unless the receive long-polled or suspended on another
/// partition's disk first. Each check reads the interval in the direction that cannot
/// flag a correct node.
struct Delivery {
    queue: usize,
    group: usize,
    lane: Lane,
    serial: u64,
    done_serial: u64,
    served_ms: u64,
    done_ms: u64,
    key: u32,
    message_id: MessageId,
}

/// (queue, group, lane, message id).
type LaneMessage = (usize, usize, Lane, MessageId);

/// A request that reached the node: entry serial, and completion serial when it is known
/// to have succeeded (`Outcome::reached`).
type Reached = (u64, Option<u64>);

#[derive(Default)]
struct Facts {
    id_of_key: BTreeMap<u32, MessageId>,
    key_of_id: BTreeMap<(usize, MessageId), u32>,
    sent_ok: BTreeSet<u32>,
    deliveries: Vec<Delivery>,
    /// (queue, group, message id) -> completion serial of the first ack known to have
    /// succeeded, on either lane (its effect came before that serial). Keyed by id, not
    /// key, so a known duplicate (see `known`) is judged as the separate message it is.
    acked: BTreeMap<(usize, usize, MessageId), u64>,
    /// Entry serial of the first ack of the queue's lane that may have succeeded, outcome
    /// known or not (its effect, if any, came after that serial).
    maybe_acked: BTreeMap<(usize, usize, MessageId), u64>,
    /// (Entry, completion) serials of fail acks that may have taken effect; an unknown
    /// completion is `u64::MAX`.
    maybe_failed: BTreeMap<LaneMessage, Vec<(u64, u64)>>,
    /// Completion serials of fail acks on the queue's lane known to have counted: each is
    /// a failure of that delivery.
    failed: BTreeMap<(usize, usize, MessageId), Vec<u64>>,
    /// Entry serials of the main-lane receives of each (queue, group) whose outcome is
    /// unknown: each may have handed out any message then available, unseen.
    unseen_receives: BTreeMap<(usize, usize), Vec<u64>>,
    /// Per delivery (key, queue, group, entry serial, completion serial), for the delay
    /// check.
    picked_by: Vec<(u32, usize, usize, u64, u64)>,
    /// Per key: the earliest queue time at which the node may release it, over the send
    /// attempts that may have stored it (succeeded or ambiguous).
    release_floor_ms: BTreeMap<u32, u64>,
    /// Cancels that may have taken effect, per message: (entry serial, completion serial
    /// when it is known to have succeeded).
    cancels: BTreeMap<(usize, MessageId), Vec<Reached>>,
    /// Keys whose cancel may have taken effect: they need not be delivered.
    maybe_cancelled: BTreeSet<u32>,
    /// Ends of transactions that reached the node, per half message: whether a commit,
    /// and when.
    ends: BTreeMap<(usize, MessageId), Vec<(bool, Reached)>>,
    /// Half messages whose commit is known to have succeeded: they must be delivered.
    committed: BTreeSet<u32>,
    /// (queue, incarnation) -> completion serials of deletes known to have succeeded, and
    /// whether one may have (its messages need not be delivered).
    deleted: BTreeMap<(usize, u32), Vec<u64>>,
    maybe_deleted: BTreeSet<(usize, u32)>,
    /// Per delivery: (queue, incarnation, entry serial, key), for the delete check.
    incarnations: Vec<(usize, u32, u64, u32)>,
    /// Sends that succeeded: (queue, incarnation, entry serial, key).
    sends: Vec<(usize, u32, u64, u32)>,
    /// The serial after which the engine was (re)opened, for each boot.
    boots: Vec<u64>,
    /// Cluster: (serial, partition) at which a new leader of the partition began serving.
    failovers: Vec<(u64, u16)>,
    violations: Vec<String>,
    /// Known bugs, reported but not failing the seed (each with a FIXME where it is
    /// classified).
    known: BTreeSet<String>,
}

/// The checker's verdict on one history.
#[derive(Debug, Default)]
pub struct Judgement {
    pub violations: Vec<String>,
    /// Occurrences of known, not yet fixed bugs (see `Facts::identify`).
    pub known: Vec<String>,
}

impl Facts {
    fn identify(&mut self, queue: usize, key: u32, message_id: MessageId) {
        let known = *self.id_of_key.entry(key).or_insert(message_id);
        if known != message_id {
            self.violations.push(format!(
                "m{key} stored twice: ids {known} and {message_id} (dedup)"
            ));
        }
        let owner = *self.key_of_id.entry((queue, message_id)).or_insert(key);
        if owner != key {
            self.violations.push(format!(
                "q{queue} id {message_id} carries m{owner} and m{key}"
            ));
        }
    }

    fn ack(
        &mut self,
        at: (usize, usize, MessageId),
        lane: Lane,
        serial: u64,
        done_serial: Option<u64>,
    ) {
        if lane == Lane::Main {
            let maybe = self.maybe_acked.entry(at).or_insert(serial);
            *maybe = (*maybe).min(serial);
        }
        if let Some(done_serial) = done_serial {
            let acked = self.acked.entry(at).or_insert(done_serial);
            *acked = (*acked).min(done_serial);
        }
    }
}

/// Judges `history`; `visibility_ms` is the one visibility timeout every receive used,
/// `max_consume_count` the failures after which a redrive queue's message is dead.
pub fn check(
    history: &History,
    visibility_ms: u64,
    max_consume_count: u32,
    retention_ms: Option<u64>,
) -> Judgement {
    let mut facts = Facts::default();
    for event in &history.events {
        collect(history, &event.kind, &mut facts);
    }
    // Clients observe replies out of order; the node's serials are its real order.
    facts.deliveries.sort_by_key(|d| d.serial);
    let expiry = Expiry {
        retention_ms,
        high_water: history.queue_high_water(),
    };
    check_acked_stay_acked(&mut facts);
    check_complete(history, &expiry, &mut facts);
    check_deletes(&mut facts);
    check_fifo(history, &expiry, max_consume_count, &mut facts);
    check_visibility(visibility_ms, &mut facts);
    check_delays(history, &mut facts);
    check_dead_letters(max_consume_count, &mut facts);
    check_cancels(&mut facts);
    check_transactions(history, &mut facts);
    Judgement {
        violations: facts.violations,
        known: facts.known.into_iter().collect(),
    }
}

/// Gathers into `facts` what one event tells the checks.
fn collect(history: &History, kind: &EventKind, facts: &mut Facts) {
    match kind {
        EventKind::Send {
            queue,
            keys,
            outcome,
            ..
        } => collect_send(history, *queue, keys, outcome, facts),
        EventKind::Receive {
            queue,
            incarnation,
            group,
            lane,
            outcome,
        } => collect_receive(history, *queue, *incarnation, *group, *lane, outcome, facts),
        EventKind::Boot { serial } => facts.boots.push(*serial),
        EventKind::Failover {
            serial, partition, ..
        } => facts.failovers.push((*serial, *partition)),
        EventKind::QueueDelete {
            queue,
            incarnation,
            outcome,
        } => collect_queue_delete(*queue, *incarnation, outcome, facts),
        EventKind::Cancel {
            queue,
            key,
            message_id,
            outcome,
        } => collect_cancel(*queue, *key, *message_id, outcome, facts),
        EventKind::EndTransaction {
            queue,
            key,
            message_id,
            commit,
            outcome,
        } => {
            if let Some((entry, done)) = outcome.reached() {
                let ends = facts.ends.entry((*queue, *message_id)).or_default();
                ends.push((*commit, (entry, done)));
                if *commit && done.is_some() {
                    facts.committed.insert(*key);
                }
            }
        }
        EventKind::Probe {
            what,
            status,
            queues_seen,
        } => collect_probe(what, *status, *queues_seen, facts),
        EventKind::Ack {
            queue,
            group,
            lane,
            kind: AckKind::Fail,
            targets,
            outcome,
        } => collect_fail_ack(*queue, *group, *lane, targets, outcome, facts),
        EventKind::Ack {
            queue,
            group,
            lane,
            kind: AckKind::Success,
            targets,
            outcome,
        } => collect_success_ack(*queue, *group, *lane, targets, outcome, facts),
        EventKind::Nemesis(_) => {}
    }
}

/// A send that reached the node: a success identifies its messages; every attempt that
/// may have stored them bounds their release time.
fn collect_send(
    history: &History,
    queue: usize,
    keys: &[u32],
    outcome: &Outcome<Vec<MessageId>>,
    facts: &mut Facts,
) {
    let Some((entry, done)) = outcome.reached() else {
        return;
    };
    if let Outcome::Ok { value, .. } = outcome {
        for (key, message_id) in keys.iter().zip(value) {
            facts.identify(queue, *key, *message_id);
            facts.sent_ok.insert(*key);
            let incarnation = history.specs[*key as usize].incarnation;
            facts.sends.push((queue, incarnation, entry, *key));
        }
    }
    for key in keys {
        let (floor, _) = history.release_bounds(*key, entry, done);
        let first = facts.release_floor_ms.entry(*key).or_insert(floor);
        *first = (*first).min(floor);
    }
}

/// A receive that got success: each delivery, after checking that it was sent to this
/// creation of this queue. One whose outcome is unknown is noted as an unseen handing.
fn collect_receive(
    history: &History,
    queue: usize,
    incarnation: u32,
    group: usize,
    lane: Lane,
    outcome: &Outcome<Vec<Delivered>>,
    facts: &mut Facts,
) {
    let Outcome::Ok {
        serial,
        done_serial,
        served_ms,
        done_ms,
        value,
    } = outcome
    else {
        if let (Outcome::Ambiguous { serial, .. }, Lane::Main) = (outcome, lane) {
            let unseen = facts.unseen_receives.entry((queue, group)).or_default();
            unseen.push(*serial);
        }
        return;
    };
    for delivered in value {
        let key = delivered.key;
        let Some(spec) = history.specs.get(key as usize) else {
            facts.violations.push(format!(
                "q{queue} g{group} #{serial}: id {} was never sent",
                delivered.message_id
            ));
            continue;
        };
        if spec.queue != queue {
            facts.violations.push(format!(
                "q{queue} g{group} #{serial}: m{key} belongs to q{}",
                spec.queue
            ));
        } else if spec.incarnation != incarnation {
            facts.violations.push(format!(
                "q{queue}.{incarnation} g{group} #{serial}: m{key} was sent to an earlier \
                 creation of the queue (q{queue}.{})",
                spec.incarnation
            ));
        }
        facts.incarnations.push((queue, incarnation, *serial, key));
        facts
            .picked_by
            .push((key, queue, group, *serial, *done_serial));
        facts.identify(queue, key, delivered.message_id);
        facts.deliveries.push(Delivery {
            queue,
            group,
            lane,
            serial: *serial,
            done_serial: *done_serial,
            served_ms: *served_ms,
            done_ms: *done_ms,
            key,
            message_id: delivered.message_id,
        });
    }
}

/// A delete of one creation of a queue: known to have succeeded, or maybe.
fn collect_queue_delete(queue: usize, incarnation: u32, outcome: &Outcome<()>, facts: &mut Facts) {
    match outcome {
        Outcome::Ok { done_serial, .. } => {
            facts.maybe_deleted.insert((queue, incarnation));
            let deletes = facts.deleted.entry((queue, incarnation)).or_default();
            deletes.push(*done_serial);
        }
        Outcome::Ambiguous { .. } => {
            facts.maybe_deleted.insert((queue, incarnation));
        }
        Outcome::Rejected { .. } => {}
    }
}

/// A cancel that reached the node, and so may have taken effect.
fn collect_cancel(
    queue: usize,
    key: u32,
    message_id: MessageId,
    outcome: &Outcome<()>,
    facts: &mut Facts,
) {
    let Some(span) = outcome.reached() else {
        return;
    };
    facts.maybe_cancelled.insert(key);
    let at = (queue, message_id);
    facts.cancels.entry(at).or_default().push(span);
}

/// An answered probe: only the prober's list of its own (empty) project may succeed.
fn collect_probe(what: &str, status: Option<u16>, queues_seen: usize, facts: &mut Facts) {
    let Some(status) = status else {
        return;
    };
    let success = (200..300).contains(&status);
    let own_list = what.starts_with("list own");
    if (success && !own_list) || queues_seen > 0 {
        facts.violations.push(format!(
            "tenant isolation: {what} answered {status} with {queues_seen} queues"
        ));
    }
}

/// A fail ack that reached the node: the targets it is known to have counted (queue's
/// lane), and the span in which each target may have been failed.
fn collect_fail_ack(
    queue: usize,
    group: usize,
    lane: Lane,
    targets: &[(u32, MessageId)],
    outcome: &Outcome<Vec<bool>>,
    facts: &mut Facts,
) {
    let Some((entry, done)) = outcome.reached() else {
        return;
    };
    if let Outcome::Ok {
        done_serial, value, ..
    } = outcome
    {
        for ((_, message_id), counted) in targets.iter().zip(value) {
            if *counted && lane == Lane::Main {
                let at = (queue, group, *message_id);
                facts.failed.entry(at).or_default().push(*done_serial);
            }
        }
    }
    let span = (entry, done.unwrap_or(u64::MAX));
    for (_, message_id) in targets {
        let at = (queue, group, lane, *message_id);
        facts.maybe_failed.entry(at).or_default().push(span);
    }
}

/// A success ack: the targets it is known to have acked, or, when its outcome is
/// unknown, all of them as maybe acked (`Facts::ack`).
fn collect_success_ack(
    queue: usize,
    group: usize,
    lane: Lane,
    targets: &[(u32, MessageId)],
    outcome: &Outcome<Vec<bool>>,
    facts: &mut Facts,
) {
    match outcome {
        Outcome::Ok {
            serial,
            done_serial,
            value,
            ..
        } => {
            for ((_, message_id), done) in targets.iter().zip(value) {
                if *done {
                    let at = (queue, group, *message_id);
                    facts.ack(at, lane, *serial, Some(*done_serial));
                }
            }
        }
        Outcome::Ambiguous { serial, .. } => {
            for (_, message_id) in targets {
                facts.ack((queue, group, *message_id), lane, *serial, None);
            }
        }
        Outcome::Rejected { .. } => {}
    }
}

/// Deletes: after a delete of a queue succeeded, that creation of the queue delivers
/// nothing and accepts no send (its id is gone; a new creation has a new id).
fn check_deletes(facts: &mut Facts) {
    let mut violations = Vec::new();
    let deleted_by = |queue: usize, incarnation: u32| {
        facts
            .deleted
            .get(&(queue, incarnation))
            .and_then(|serials| serials.iter().min().copied())
    };
    for (queue, incarnation, serial, key) in &facts.incarnations {
        if let Some(done) = deleted_by(*queue, *incarnation) {
            if done < *serial {
                violations.push(format!(
                    "q{queue}.{incarnation} #{serial}: m{key} delivered after the queue's delete \
                     succeeded at #{done}"
                ));
            }
        }
    }
    for (queue, incarnation, serial, key) in &facts.sends {
        if let Some(done) = deleted_by(*queue, *incarnation) {
            if done < *serial {
                violations.push(format!(
                    "q{queue}.{incarnation} #{serial}: a send of m{key} succeeded after the \
                     queue's delete succeeded at #{done}"
                ));
            }
        }
    }
    facts.violations.extend(violations);
}

/// Cancels: a message whose cancel succeeded is never handed out after it (by any
/// group), and a cancel cannot succeed for a message already handed out (it was
/// released, so it was no longer cancellable).
/// Transactions: a half message is delivered only after a commit of it reached the node
/// (one that entered before the delivery completed), and never once its rollback
/// succeeded.
fn check_transactions(history: &History, facts: &mut Facts) {
    let mut violations = Vec::new();
    for d in &facts.deliveries {
        if !history.specs[d.key as usize].half {
            continue;
        }
        let ends = facts
            .ends
            .get(&(d.queue, d.message_id))
            .map_or(&[][..], Vec::as_slice);
        let committed_before = ends
            .iter()
            .any(|(commit, (entry, _))| *commit && *entry < d.done_serial);
        if !committed_before {
            violations.push(format!(
                "q{} g{} #{}: half message m{} delivered, but no commit of it reached the node before",
                d.queue, d.group, d.serial, d.key
            ));
        }
        let rolled_back = ends
            .iter()
            .find(|(commit, (_, done))| !commit && done.is_some());
        if let Some((_, (_, Some(done)))) = rolled_back {
            violations.push(format!(
                "q{} g{} #{}: m{} delivered, but its rollback succeeded at #{done}",
                d.queue, d.group, d.serial, d.key
            ));
        }
    }
    facts.violations.extend(violations);
}

fn check_cancels(facts: &mut Facts) {
    let mut violations = Vec::new();
    for d in &facts.deliveries {
        let Some(cancels) = facts.cancels.get(&(d.queue, d.message_id)) else {
            continue;
        };
        for (entry, done) in cancels {
            let Some(done) = done else { continue };
            if *done < d.serial {
                violations.push(format!(
                    "q{} g{} #{}: m{} delivered after its cancel succeeded at #{done}",
                    d.queue, d.group, d.serial, d.key
                ));
            }
            if d.done_serial < *entry {
                violations.push(format!(
                    "q{}: cancel of m{} at #{entry} succeeded after its delivery (#{})",
                    d.queue, d.key, d.serial
                ));
            }
        }
    }
    facts.violations.extend(violations);
}

/// Dead letters: a message whose group failed it `max_consume_count` times (fail acks known
/// to have counted; visibility timeouts count too, but are not observed) is a dead letter
/// of that group from the last of them on, and one that the dead-letter lane delivered
/// is one from that delivery's completion on: the queue's lane never hands it to the
/// group again. Only redrive queues have dead letters. (Acks of dead letters are judged
/// with the queue's: after either lane's ack succeeded, neither delivers it again.)
fn check_dead_letters(max_consume_count: u32, facts: &mut Facts) {
    let count = usize::try_from(max_consume_count).expect("fits");
    let mut dead_from: BTreeMap<(usize, usize, MessageId), u64> = BTreeMap::new();
    for (at, serials) in &facts.failed {
        if QUEUES[at.0].redrive && serials.len() >= count {
            let mut serials = serials.clone();
            serials.sort_unstable();
            dead_from.insert(*at, serials[count - 1]);
        }
    }
    let mut violations = Vec::new();
    for d in facts.deliveries.iter().filter(|d| d.lane == Lane::Dead) {
        if !QUEUES[d.queue].redrive {
            violations.push(format!(
                "q{} g{} #{}: m{} is a dead letter of a queue without redrive",
                d.queue, d.group, d.serial, d.key
            ));
        }
        let from = dead_from
            .entry((d.queue, d.group, d.message_id))
            .or_insert(d.done_serial);
        *from = (*from).min(d.done_serial);
    }
    for d in facts.deliveries.iter().filter(|d| d.lane == Lane::Main) {
        if let Some(from) = dead_from.get(&(d.queue, d.group, d.message_id)) {
            if *from < d.serial {
                violations.push(format!(
                    "q{} g{} #{}: m{} delivered from the queue after it was a dead letter (#{from})",
                    d.queue, d.group, d.serial, d.key
                ));
            }
        }
    }
    facts.violations.extend(violations);
}

/// Delayed messages never arrive early: by the delivery's latest pick (its completion),
/// the node's queue time must have reached the earliest arrival of a send attempt that
/// may have stored it plus the delay, in this boot or an earlier one. Judged in queue time,
/// which a delay is kept in: the engine stores an absolute release time, and queue time
/// follows the wall clock across restarts (a wall clock stepped forward while the node was
/// down releases earlier in true time; stepped back, a message released before the step
/// stays released; `sluice_core::clock`). A delivery of a message no attempt of which
/// reached the node is a violation too.
fn check_delays(history: &History, facts: &mut Facts) {
    let high_water = history.queue_high_water();
    let mut violations = Vec::new();
    for (key, queue, group, serial, done_serial) in &facts.picked_by {
        let spec = &history.specs[*key as usize];
        let Some(floor) = facts.release_floor_ms.get(key) else {
            violations.push(format!(
                "q{queue} g{group} #{serial}: m{key} delivered, but no send of it reached the node"
            ));
            continue;
        };
        let reached = high_water.at(*done_serial);
        if reached < *floor {
            violations.push(format!(
                "q{queue} g{group} #{serial}: m{key} delivered by queue time {reached} ms, \
                 before its delay ended (release at {floor} ms at the earliest: delay {} ms, \
                 scheduled {:?})",
                spec.delay_ms, spec.deliver_at_ms
            ));
        }
    }
    facts.violations.extend(violations);
}

/// A delivery picked after an ack completed: the pick came at the receive's entry at the
/// earliest.
fn check_acked_stay_acked(facts: &mut Facts) {
    for d in &facts.deliveries {
        if let Some(acked) = facts.acked.get(&(d.queue, d.group, d.message_id)) {
            if *acked < d.serial {
                facts.violations.push(format!(
                    "q{} g{} #{}: m{} delivered again after its ack succeeded at #{acked}",
                    d.queue, d.group, d.serial, d.key
                ));
            }
        }
    }
}

/// Which messages may have passed their queue's retention.
struct Expiry {
    /// `None`: longer than any run.
    retention_ms: Option<u64>,
    high_water: QueueHighWater,
}

impl Expiry {
    /// Whether `key` may have passed the retention by `serial`: its earliest release
    /// plus the retention is reached by the highest queue time any node had by then.
    fn may_have_expired(&self, facts: &Facts, key: u32, serial: u64) -> bool {
        let (Some(retention), Some(floor)) = (self.retention_ms, facts.release_floor_ms.get(&key))
        else {
            return false;
        };
        floor.saturating_add(retention) <= self.high_water.at(serial)
    }
}

/// Every send that got success reaches every group (on either lane), unless it was
/// (maybe) cancelled, its queue (maybe) deleted, or it may have passed its retention.
fn check_complete(history: &History, expiry: &Expiry, facts: &mut Facts) {
    let delivered: BTreeSet<(usize, u32)> =
        facts.deliveries.iter().map(|d| (d.group, d.key)).collect();
    let gone = |key: &u32| {
        let spec = &history.specs[*key as usize];
        facts
            .maybe_deleted
            .contains(&(spec.queue, spec.incarnation))
    };
    // A half message is owed a delivery once its commit succeeded, not at its send.
    let owed: BTreeSet<u32> = facts
        .sent_ok
        .iter()
        .filter(|key| !history.specs[**key as usize].half)
        .chain(&facts.committed)
        .copied()
        .collect();
    let required: Vec<u32> = owed
        .difference(&facts.maybe_cancelled)
        .filter(|key| !gone(key) && !expiry.may_have_expired(facts, **key, u64::MAX))
        .copied()
        .collect();
    for key in &required {
        for group in 0..GROUPS.len() {
            if !delivered.contains(&(group, *key)) {
                let spec = &history.specs[*key as usize];
                facts.violations.push(format!(
                    "m{key} was sent successfully but never delivered to g{group} \
                     (delay {} ms, scheduled {:?})",
                    spec.delay_ms, spec.deliver_at_ms
                ));
            }
        }
    }
}

/// Per (queue, group, message group): when a message is handed out, every earlier
/// message (lower id) known to exist must be acked before, or be in the same batch. An
/// ack counts as before when it entered before the receive completed (the latest pick).
///
/// A delayed message joins its FIFO order when it is released, at a time the history
/// does not record, so delayed messages are skipped as the earlier one. Any undelayed
/// message with a lower id was available before a delayed one's release, so a delayed
/// message is still checked as the later one.
fn check_fifo(history: &History, expiry: &Expiry, max_consume_count: u32, facts: &mut Facts) {
    // Dead-lettering releases the order: a message that became a dead letter of the
    // group (its dead-letter lane delivered it) does not count as the earlier one.
    let dead: BTreeSet<(usize, usize, MessageId)> = facts
        .deliveries
        .iter()
        .filter(|d| d.lane == Lane::Dead)
        .map(|d| (d.queue, d.group, d.message_id))
        .collect();
    // A dead letter that retention took away before its lane delivered it leaves no
    // trace: a message the group was handed `max_consume_count` times (each lease may
    // have run out, which counts as a failure) and that may have expired by the end may
    // have been one. A receive whose outcome is unknown may have handed it too, unseen
    // (cluster 49: one handing seen, one in a receive that answered 503, then a fail
    // ack). The serials of each message's main-lane deliveries, in order:
    let mut handed: BTreeMap<(usize, usize, MessageId), Vec<u64>> = BTreeMap::new();
    for d in facts.deliveries.iter().filter(|d| d.lane == Lane::Main) {
        handed
            .entry((d.queue, d.group, d.message_id))
            .or_default()
            .push(d.serial);
    }
    for serials in handed.values_mut() {
        serials.sort_unstable();
    }
    let failures_to_die = usize::try_from(max_consume_count).expect("fits");
    for serials in facts.unseen_receives.values_mut() {
        serials.sort_unstable();
    }
    let unseen = &facts.unseen_receives;
    let unseen_before = |queue: usize, group: usize, serial: u64| {
        unseen
            .get(&(queue, group))
            .map_or(0, |serials| serials.partition_point(|s| *s < serial))
    };
    let mut violations = Vec::new();
    for d in &facts.deliveries {
        if !QUEUES[d.queue].fifo || d.lane == Lane::Dead {
            continue;
        }
        let fifo_group = &history.specs[d.key as usize].fifo_group;
        let earlier = facts
            .key_of_id
            .range((d.queue, MessageId::MIN)..(d.queue, d.message_id));
        for ((_, earlier_id), key) in earlier {
            let spec = &history.specs[*key as usize];
            if spec.fifo_group != *fifo_group
                || spec.delay_ms > 0
                || spec.deliver_at_ms.is_some()
                || dead.contains(&(d.queue, d.group, *earlier_id))
                || expiry.may_have_expired(facts, *key, d.done_serial)
            {
                continue;
            }
            let handed_before = handed
                .get(&(d.queue, d.group, *earlier_id))
                .map_or(0, |serials| serials.partition_point(|s| *s < d.done_serial))
                + unseen_before(d.queue, d.group, d.done_serial);
            if failures_to_die > 0
                && handed_before >= failures_to_die
                && expiry.may_have_expired(facts, *key, u64::MAX)
            {
                continue;
            }
            let acked_before = facts
                .maybe_acked
                .get(&(d.queue, d.group, *earlier_id))
                .is_some_and(|serial| *serial < d.done_serial);
            let same_batch = facts.deliveries.iter().any(|other| {
                other.serial == d.serial
                    && other.group == d.group
                    && other.lane == d.lane
                    && other.message_id == *earlier_id
            });
            if !acked_before && !same_batch {
                violations.push(format!(
                    "q{} g{} #{}: FIFO {:?}: m{} handed out while earlier m{key} is unacked",
                    d.queue, d.group, d.serial, fifo_group, d.key
                ));
            }
        }
    }
    facts.violations.extend(violations);
}

/// A delivery is not handed out again to its group before its visibility deadline unless
/// it was (maybe) failed or the engine was reopened in between (leases are not durable),
/// or, in a cluster, a new leader of the message's partition began serving in between
/// (leases live only on the leader).
///
/// Long polls make the node's order of picks differ from the order of entry, so every
/// pair of deliveries of one message whose order is certain (the first completed before
/// the second entered) is judged; overlapping pairs are not. Early means even the latest
/// pick of the second (its `done_ms`) came before the earliest deadline of the first
/// (its `served_ms` plus the visibility).
fn check_visibility(visibility_ms: u64, facts: &mut Facts) {
    let mut by_message: BTreeMap<(usize, usize, Lane, MessageId), Vec<&Delivery>> = BTreeMap::new();
    for d in &facts.deliveries {
        let at = (d.queue, d.group, d.lane, d.message_id);
        by_message.entry(at).or_default().push(d);
    }
    let mut violations = Vec::new();
    for (at, deliveries) in &by_message {
        for first in deliveries {
            for d in deliveries {
                if first.done_serial >= d.serial {
                    continue;
                }
                let early = d.done_ms < first.served_ms + visibility_ms;
                let between = |serial: u64| first.serial <= serial && serial < d.done_serial;
                // A failover of the message's own partition only (its leases were on the
                // old leader).
                let rebooted = facts.boots.iter().any(|boot| between(*boot))
                    || facts.failovers.iter().any(|(serial, partition)| {
                        *partition == d.message_id.partition && between(*serial)
                    });
                let failed = facts.maybe_failed.get(at).is_some_and(|fails| {
                    fails
                        .iter()
                        .any(|(entry, done)| *entry < d.done_serial && first.serial < *done)
                });
                if early && !rebooted && !failed {
                    violations.push(format!(
                        "q{} g{} #{}: m{} handed out again by {} ms, before its visibility \
                         deadline ({} ms + {visibility_ms} ms, #{})",
                        d.queue, d.group, d.serial, d.key, d.done_ms, first.served_ms, first.serial
                    ));
                }
            }
        }
    }
    facts.violations.extend(violations);
}
