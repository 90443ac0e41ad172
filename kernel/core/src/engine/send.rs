//! Producing: batch sends with validation, dedup and delays; cancelling scheduled
//! messages.

use std::collections::HashSet;

use xxhash_rust::xxh3::xxh3_64;

use super::command::{Command, SendMeta};
use super::replication::Proposal;
use super::types::{
    Delay, EngineError, MessageId, QueueId, SendInput, SendOutcome, DELAY_LEVELS_MS,
};
use super::{valid_tag, Engine, EngineLimits, Entry};
use crate::bugs::{self, Bug};
use crate::limits::{
    ENGINE_BATCH_MESSAGES_CEILING, ENGINE_DELAY_MS_CEILING, ENGINE_TAGS_PER_QUEUE_MAX,
};
use crate::storage::Storage;
use crate::types::Offset;

/// A send's outcome before the append gives new messages their ids.
enum Planned {
    Duplicate(SendOutcome),
    /// Stored as the batch's entry at this index.
    New(usize),
    /// Repeats the dedup id of the batch's entry at this index.
    RepeatOf(usize),
}

impl Planned {
    /// The answer once the batch's first entry has been logged at `first`.
    fn resolve(self, first: Offset) -> SendOutcome {
        match self {
            Planned::Duplicate(duplicate) => duplicate,
            Planned::New(index) => SendOutcome {
                message_id: MessageId(first.0 + index as u64),
                duplicate: false,
            },
            Planned::RepeatOf(index) => SendOutcome {
                message_id: MessageId(first.0 + index as u64),
                duplicate: true,
            },
        }
    }
}

/// What a validated send will do: the entries to log and the answer for each message.
struct SendPlan {
    /// One per message of the batch, in order.
    outcomes: Vec<Planned>,
    /// The new messages to log; may be empty when every message is a duplicate.
    entries: Vec<Entry>,
    /// Dedup hashes the batch stores, with the index of the entry that stores each.
    claimed: Vec<(u64, usize)>,
    /// Proposals of other sends, still on their way to a majority, that some of this
    /// batch's messages duplicate: the batch is answered only once they are committed.
    awaited: Vec<Proposal>,
}

impl<S: Storage + Clone> Engine<S> {
    // ------------------------------------------------------------------ send

    /// Sends a batch as one operation: all stored (durably) or none. Only the serving
    /// leader answers, even a batch of duplicates only, which logs nothing: a replica
    /// that is not the leader may not have applied the queue's deletion yet.
    pub async fn send(
        &self,
        queue: QueueId,
        messages: &[SendInput],
        now: u64,
    ) -> Result<Vec<SendOutcome>, EngineError> {
        let deliver_ats = self.validate_send(messages, now)?;
        self.check_serving()?;
        let plan = self.plan_send(queue, messages, deliver_ats, now)?;
        let first = self.commit_send(queue, &plan, now).await?;
        // A duplicate of a message still on its way is confirmed only with it: had the
        // original's proposal been lost in a change of leader, an early answer would
        // have confirmed a message no replica keeps.
        for proposal in &plan.awaited {
            self.wait_committed(proposal).await?;
        }
        Ok(plan
            .outcomes
            .into_iter()
            .map(|outcome| outcome.resolve(first))
            .collect())
    }

    /// Checks a batch against the limits that need no queue state ([`validate_batch`]).
    fn validate_send(&self, messages: &[SendInput], now: u64) -> Result<Vec<u64>, EngineError> {
        validate_batch(&self.config.limits, messages, now)
    }

    /// Decides against the queue's state what each message becomes: a duplicate of a
    /// stored or pending message (dedup window), a repeat of an earlier message of the
    /// same batch, or a new entry to log. Refuses the batch when the queue is unknown, its
    /// distinct tags or its dedup table would overflow. Changes nothing.
    fn plan_send(
        &self,
        queue: QueueId,
        messages: &[SendInput],
        deliver_ats: Vec<u64>,
        now: u64,
    ) -> Result<SendPlan, EngineError> {
        let limits = self.config.limits;
        let mut outcomes = Vec::with_capacity(messages.len());
        let mut entries = Vec::new();
        let mut claimed: Vec<(u64, usize)> = Vec::new();
        let mut awaited: Vec<Proposal> = Vec::new();
        let state = self.state.borrow();
        let q = state.queue(queue)?.store.get();
        let new_tags: HashSet<&str> = messages
            .iter()
            .flat_map(|m| m.tags.iter())
            .filter(|tag| !q.tag_ids.contains_key(*tag))
            .map(String::as_str)
            .collect();
        if q.tag_names.len() + new_tags.len() > ENGINE_TAGS_PER_QUEUE_MAX {
            return Err(EngineError::TooManyDistinctTags);
        }
        let pending = self.pending_dedup.borrow();
        for (message, deliver_at_ms) in messages.iter().zip(deliver_ats) {
            let dedup_hash = message
                .dedup_id
                .as_deref()
                .map_or(0, |id| xxh3_64(id.as_bytes()) | 1);
            if dedup_hash != 0 {
                let in_batch = claimed.iter().find(|(hash, _)| *hash == dedup_hash);
                if let Some((_, index)) = in_batch {
                    outcomes.push(Planned::RepeatOf(*index));
                    continue;
                }
                let stored = q
                    .dedup
                    .get(&dedup_hash)
                    .filter(|(expires_ms, _)| *expires_ms > now)
                    .filter(|_| !bugs::enabled(Bug::IgnoreDedup))
                    .map(|(_, id)| *id);
                let seen = stored.or_else(|| {
                    let (id, proposal) = pending.get(&(queue, dedup_hash)).copied()?;
                    if !awaited.iter().any(|p| p.last_index == proposal.last_index) {
                        awaited.push(proposal);
                    }
                    Some(id)
                });
                if let Some(original) = seen {
                    let duplicate = SendOutcome {
                        message_id: original,
                        duplicate: true,
                    };
                    outcomes.push(Planned::Duplicate(duplicate));
                    continue;
                }
                let entries_max = limits.dedup_entries_per_queue_max as usize;
                if q.dedup.len() + pending.len() + claimed.len() >= entries_max {
                    return Err(EngineError::DedupTableFull);
                }
                claimed.push((dedup_hash, entries.len()));
            }
            outcomes.push(Planned::New(entries.len()));
            let meta = SendMeta {
                queue,
                deliver_at_ms,
                fifo_group: message.fifo_group.clone(),
                tags: message.tags.clone(),
                dedup_hash,
                half: matches!(message.delay, Delay::Half { .. }),
            };
            entries.push(Entry {
                command: Command::Send(meta),
                body: message.body.clone(),
                user_attributes: message.attributes.clone(),
            });
        }
        Ok(SendPlan {
            outcomes,
            entries,
            claimed,
            awaited,
        })
    }

    /// Logs the plan's new entries and waits until they are durable and applied. While
    /// they wait, their dedup ids are pending, so a concurrent send of the same id is a
    /// duplicate rather than a second copy. Returns the offset of the first entry (the
    /// first new message's id); `Offset(0)` when there is nothing to log.
    async fn commit_send(
        &self,
        queue: QueueId,
        plan: &SendPlan,
        now: u64,
    ) -> Result<Offset, EngineError> {
        if plan.entries.is_empty() {
            return Ok(Offset(0));
        }
        let proposal = self.propose(&plan.entries, now)?;
        let first = proposal.first;
        {
            let mut pending = self.pending_dedup.borrow_mut();
            for (hash, index) in &plan.claimed {
                let id = MessageId(first.0 + *index as u64);
                pending.insert((queue, *hash), (id, proposal));
            }
        }
        let result = if bugs::enabled(Bug::ReplyBeforeFsync) {
            Ok(())
        } else {
            self.wait_answered(&proposal).await
        };
        let mut pending = self.pending_dedup.borrow_mut();
        for (hash, _) in &plan.claimed {
            pending.remove(&(queue, *hash));
        }
        result?;
        Ok(first)
    }

    /// Cancels a scheduled or delayed message that has not been delivered yet.
    pub async fn cancel(
        &self,
        queue: QueueId,
        message: MessageId,
        now: u64,
    ) -> Result<(), EngineError> {
        // Only the serving leader knows whether a release is on its way; a lagging
        // follower would call a message it has not applied yet "not scheduled".
        self.check_serving()?;
        {
            let mut state = self.state.borrow_mut();
            let q = state.queue_mut(queue)?;
            let delayed = q.delayed_mut(message);
            match delayed {
                Some(_) if bugs::enabled(Bug::IgnoreCancel) => return Ok(()),
                // A half message ends with its transaction (`end_transaction`).
                Some(delayed) if !delayed.releasing && delayed.half.is_none() => {
                    delayed.releasing = true;
                }
                _ => return Err(EngineError::NotScheduled),
            }
        }
        self.end_delay(queue, message, Command::Cancel { queue, message }, now)
            .await
    }

    /// Ends the transaction of the half message `message` (`Delay::Half`): committed, it
    /// becomes available now (its retention counted from now); rolled back, it is
    /// dropped. `NotScheduled` when no open transaction has that half message (unknown,
    /// ended already, dropped after its last check, or a message that is not half).
    pub async fn end_transaction(
        &self,
        queue: QueueId,
        message: MessageId,
        commit: bool,
        now: u64,
    ) -> Result<(), EngineError> {
        self.check_serving()?;
        {
            let mut state = self.state.borrow_mut();
            let q = state.queue_mut(queue)?;
            match q.delayed_mut(message) {
                Some(delayed) if !delayed.releasing && delayed.half.is_some() => {
                    delayed.releasing = true;
                }
                _ => return Err(EngineError::NotScheduled),
            }
        }
        let command = if commit || bugs::enabled(Bug::RollbackCommits) {
            Command::Release { queue, message }
        } else {
            Command::Cancel { queue, message }
        };
        self.end_delay(queue, message, command, now).await
    }

    /// Logs the `Release` or `Cancel` that ends a held message marked releasing; if it
    /// cannot be logged, the message is held again as before, its timer armed again (a
    /// timer that fired meanwhile skipped it).
    async fn end_delay(
        &self,
        queue: QueueId,
        message: MessageId,
        command: Command,
        now: u64,
    ) -> Result<(), EngineError> {
        let result = self.commit(vec![Entry::plain(command)], now).await;
        if result.is_err() {
            let mut state = self.state.borrow_mut();
            if let Some(delayed) = state.delayed_mut(queue, message) {
                delayed.releasing = false;
                let deliver_at_ms = delayed.deliver_at_ms;
                state.delay_timers.insert(deliver_at_ms, (queue, message));
            }
        }
        result
    }
}

impl<S: Storage + Clone> Engine<S> {
    /// Purges `queue` on this partition (SQS's PurgeQueue): at the serving leader, logs
    /// `Trim { below_seq }` at the queue's next position here, so every message stored
    /// so far goes on every replica alike, with what groups hold of them (leases,
    /// failures, dead letters); and a `Cancel` for every delayed message not yet released
    /// (one on its way to release stays). The records are committed in runs of at most
    /// [`ENGINE_BATCH_MESSAGES_CEILING`]; a message stored meanwhile may stay. An ack of a
    /// delivery purged here answers `Unknown` and changes nothing.
    pub async fn purge(&self, queue: QueueId, now: u64) -> Result<(), EngineError> {
        self.check_serving()?;
        let (below_seq, trims, delayed) = {
            let mut state = self.state.borrow_mut();
            let q = state.queue_mut(queue)?;
            let (below_seq, trims) = (q.next_seq(), q.next_seq() > q.base_seq());
            let mut delayed = Vec::new();
            if let Some(store) = q.store.used_mut() {
                for (message, pending) in &mut store.delayed {
                    if !pending.releasing {
                        // Held from release until the cancel is applied (or given up).
                        pending.releasing = true;
                        delayed.push(*message);
                    }
                }
            }
            (below_seq, trims, delayed)
        };
        let mut entries: Vec<Entry> = Vec::with_capacity(delayed.len() + 1);
        if trims {
            entries.push(Entry::plain(Command::Trim { queue, below_seq }));
        }
        entries.extend(
            delayed
                .iter()
                .map(|&message| Entry::plain(Command::Cancel { queue, message })),
        );
        let mut result = Ok(());
        // Bounded: each pass commits up to a ceiling's worth of the records made above.
        while !entries.is_empty() {
            let rest = entries.split_off(entries.len().min(ENGINE_BATCH_MESSAGES_CEILING as usize));
            if let Err(error) = self.commit(entries, now).await {
                result = Err(error);
                break;
            }
            entries = rest;
        }
        if result.is_err() {
            // What was not cancelled is released when due, as before the purge (its timer
            // set again: it may have fired meanwhile and found the message held).
            let mut state = self.state.borrow_mut();
            for message in delayed {
                if let Some(pending) = state.delayed_mut(queue, message) {
                    pending.releasing = false;
                    let due = pending.deliver_at_ms;
                    state.delay_timers.insert(due, (queue, message));
                }
            }
        }
        self.notify();
        result
    }
}

/// Checks a batch against the limits that need no queue state: its size, each message's
/// fields and delay, and its total bytes. Returns each message's delivery time (0 for at
/// once). The engine checks every send with it; the node layer checks a whole batch with
/// it before splitting the batch over partitions, so that a batch is refused whole or not
/// at all for these reasons.
pub fn validate_batch(
    limits: &EngineLimits,
    messages: &[SendInput],
    now: u64,
) -> Result<Vec<u64>, EngineError> {
    if messages.is_empty() {
        return Err(EngineError::EmptyBatch);
    }
    let count = u32::try_from(messages.len()).unwrap_or(u32::MAX);
    if count > limits.batch_messages_max {
        return Err(EngineError::BatchTooLarge {
            count,
            limit: limits.batch_messages_max,
        });
    }
    let mut deliver_ats = Vec::with_capacity(messages.len());
    for message in messages {
        validate_message(limits, message)?;
        deliver_ats.push(deliver_at(message.delay, now)?);
    }
    let bytes: u64 = messages
        .iter()
        .map(|m| (m.body.len() + m.attributes.len()) as u64)
        .sum();
    if bytes > limits.batch_bytes_max {
        return Err(EngineError::BatchBytesTooLarge {
            bytes,
            limit: limits.batch_bytes_max,
        });
    }
    Ok(deliver_ats)
}

/// Checks one message's fields against the limits.
fn validate_message(limits: &EngineLimits, message: &SendInput) -> Result<(), EngineError> {
    let bytes = message.body.len() as u64;
    if bytes > limits.message_bytes_max {
        return Err(EngineError::MessageTooLarge {
            bytes,
            limit: limits.message_bytes_max,
        });
    }
    let bytes = message.attributes.len() as u64;
    if bytes > limits.attributes_bytes_max {
        return Err(EngineError::AttributesTooLarge {
            bytes,
            limit: limits.attributes_bytes_max,
        });
    }
    let count = u32::try_from(message.tags.len()).unwrap_or(u32::MAX);
    if count > limits.tags_per_message_max {
        return Err(EngineError::TooManyTags {
            count,
            limit: limits.tags_per_message_max,
        });
    }
    if !message.tags.iter().all(|tag| valid_tag(tag)) {
        return Err(EngineError::InvalidTag);
    }
    if message
        .fifo_group
        .as_ref()
        .is_some_and(|g| g.is_empty() || g.len() > 128)
    {
        return Err(EngineError::InvalidName);
    }
    if message
        .dedup_id
        .as_ref()
        .is_some_and(|d| d.is_empty() || d.len() > 128)
    {
        return Err(EngineError::InvalidName);
    }
    Ok(())
}

fn deliver_at(delay: Delay, now: u64) -> Result<u64, EngineError> {
    let at = match delay {
        Delay::None => return Ok(0),
        Delay::Level(level) => {
            let index = usize::from(level)
                .checked_sub(1)
                .ok_or(EngineError::InvalidDelay)?;
            now + *DELAY_LEVELS_MS
                .get(index)
                .ok_or(EngineError::InvalidDelay)?
        }
        Delay::Ms(ms) if ms <= ENGINE_DELAY_MS_CEILING => now + ms,
        Delay::Ms(_) => return Err(EngineError::InvalidDelay),
        Delay::At(at) if at <= now.saturating_add(ENGINE_DELAY_MS_CEILING) => at,
        Delay::At(_) => return Err(EngineError::InvalidDelay),
        // Held however soon its first check: only the end of its transaction releases it.
        Delay::Half { check_after_ms } if check_after_ms <= ENGINE_DELAY_MS_CEILING => {
            return Ok(now + check_after_ms.max(1))
        }
        Delay::Half { .. } => return Err(EngineError::InvalidDelay),
    };
    Ok(if at <= now { 0 } else { at })
}
