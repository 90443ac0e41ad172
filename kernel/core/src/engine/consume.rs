//! Consuming: receive (main lane and dead letters), ack and fail, change visibility,
//! redrive, and reading delivered bodies from the log.

use std::collections::{BTreeMap, HashSet};

use super::command::Command;
use super::config::ReceiveRequest;
use super::dispatch::{AckLog, PickLimits};
use super::state::{Picked, State};
use super::types::{
    AckKind, AckOutcome, Delivery, EngineError, GroupId, HandleError, MessageId, QueueId,
    ReceiptHandle, RecordProblem, StorageFault, TagFilter,
};
use super::{group, valid_tag, Engine, Entry};
use crate::log::ReadError;
use crate::storage::Storage;
use crate::types::Offset;

/// Bytes a receive reads from the log per pass when it fetches bodies.
const DELIVERY_READ_BYTES: u64 = 16 * 1024;

/// A send record as read back: its time, body and user attributes (slices of the log's
/// batch, not copies), tags and FIFO group.
#[derive(Clone, Debug)]
pub(super) struct SendRead {
    pub sent_ms: u64,
    pub body: bytes::Bytes,
    pub attributes: bytes::Bytes,
    pub tags: Vec<String>,
    pub fifo_group: Option<String>,
}

impl<S: Storage + Clone> Engine<S> {
    // ------------------------------------------------------------------ receive

    pub async fn receive(
        &self,
        queue: QueueId,
        group: GroupId,
        request: &ReceiveRequest,
        now: u64,
    ) -> Result<Vec<Delivery>, EngineError> {
        self.validate_receive(request)?;
        self.check_group(queue, group)?;
        self.confirm_leadership().await?;
        if let Some(filter) = &request.filter {
            self.ensure_filter(queue, group, filter, now).await?;
        }
        let picked = self.state.borrow_mut().receive(
            queue,
            group,
            pick_limits(request),
            (request.visibility_ms, request.attempt),
            self.config.limits.inflight_per_group_max,
            now,
        )?;
        self.deliveries(picked).await
    }

    /// Receives from the group's dead letters.
    pub async fn receive_dead(
        &self,
        queue: QueueId,
        group: GroupId,
        request: &ReceiveRequest,
        now: u64,
    ) -> Result<Vec<Delivery>, EngineError> {
        self.validate_receive(request)?;
        self.confirm_leadership().await?;
        let picked = self.state.borrow_mut().receive_dead(
            queue,
            group,
            pick_limits(request),
            request.visibility_ms,
            now,
        )?;
        self.deliveries(picked).await
    }

    fn validate_receive(&self, request: &ReceiveRequest) -> Result<(), EngineError> {
        let limits = &self.config.limits;
        if request.max_messages == 0 || request.max_messages > limits.receive_messages_max {
            return Err(EngineError::InvalidMaxMessages {
                limit: limits.receive_messages_max,
            });
        }
        if !(limits.visibility_ms_min..=limits.visibility_ms_max).contains(&request.visibility_ms) {
            return Err(EngineError::InvalidVisibility {
                min_ms: limits.visibility_ms_min,
                max_ms: limits.visibility_ms_max,
            });
        }
        if let Some(filter) = &request.filter {
            let too_many = filter.tags.len() > self.config.limits.tags_per_message_max as usize;
            if too_many || !filter.tags.iter().all(|t| valid_tag(t)) {
                return Err(EngineError::InvalidTag);
            }
        }
        Ok(())
    }

    async fn ensure_filter(
        &self,
        queue: QueueId,
        group: GroupId,
        filter: &TagFilter,
        now: u64,
    ) -> Result<(), EngineError> {
        let current = {
            let state = self.state.borrow();
            let q = state.queue(queue)?;
            let g = q.groups.get(&group).ok_or(EngineError::GroupNotFound)?;
            g.filter.as_ref().map(|f| f.source.clone())
        };
        match current {
            Some(current) if &current == filter => Ok(()),
            Some(_) => Err(EngineError::FilterConflict),
            None => {
                let command = Command::SetFilter {
                    queue,
                    group,
                    filter: filter.clone(),
                };
                self.commit(vec![Entry::plain(command)], now).await
            }
        }
    }

    /// Reads the bodies of picked messages.
    async fn deliveries(&self, picked: Vec<Picked>) -> Result<Vec<Delivery>, EngineError> {
        {
            let mut delivered = self.delivered.borrow_mut();
            for pick in &picked {
                delivered.note(&pick.handle);
            }
        }
        let ids: Vec<MessageId> = picked.iter().map(|pick| pick.meta.message_id).collect();
        let read = self.read_sends(&ids).await?;
        Ok(picked
            .into_iter()
            .zip(read)
            .map(|(pick, send)| Delivery {
                handle: pick.handle,
                message_id: pick.meta.message_id,
                delivery_count: pick.delivery_count,
                first_delivered_ms: pick.first_delivered_ms,
                sent_ms: send.sent_ms,
                attributes: send.attributes,
                body: send.body,
                tags: send.tags,
                fifo_group: send.fifo_group,
            })
            .collect())
    }

    /// Reads the send records of `ids` from the log, answered in the order asked.
    /// Messages read together usually sit side by side in the log, so one read serves
    /// many: each read starts at the lowest offset still missing and fills every wanted
    /// record it returns.
    pub(super) async fn read_sends(&self, ids: &[MessageId]) -> Result<Vec<SendRead>, EngineError> {
        let mut wanted: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
        for (index, id) in ids.iter().enumerate() {
            wanted.entry(id.0).or_default().push(index);
        }
        let mut found: Vec<Option<SendRead>> = vec![None; ids.len()];
        // Bounded: every pass fills at least the lowest wanted offset or fails.
        while let Some((&first, _)) = wanted.first_key_value() {
            let records = self
                .log
                .read(Offset(first), DELIVERY_READ_BYTES)
                .await
                .map_err(read_error)?;
            for record in records {
                let Some(indexes) = wanted.remove(&record.offset.0) else {
                    continue;
                };
                let (command, user_attributes) =
                    Command::decode(&record.attributes).map_err(|error| {
                        bad_record(record.offset.0, RecordProblem::Undecodable(error))
                    })?;
                let Command::Send(meta) = command else {
                    return Err(bad_record(record.offset.0, RecordProblem::NotASend));
                };
                let read = SendRead {
                    sent_ms: record.timestamp_ms,
                    attributes: share(&record.attributes, user_attributes),
                    body: record.payload,
                    tags: meta.tags,
                    fifo_group: meta.fifo_group,
                };
                // The same id asked twice (rare) takes a copy; the last takes the read.
                let (last, repeats) = indexes.split_last().expect("never an empty list");
                for index in repeats {
                    found[*index] = Some(read.clone());
                }
                found[*last] = Some(read);
            }
            if wanted.contains_key(&first) {
                return Err(bad_record(first, RecordProblem::Missing));
            }
        }
        Ok(found
            .into_iter()
            .map(|d| d.expect("every wanted record was filled"))
            .collect())
    }

    // ------------------------------------------------------------------ ack

    /// Acks or fails deliveries, in order. With `stop_at_first_error`, entries after the
    /// first invalid handle are not processed (DMS semantics) and get `Err(Stale)`.
    pub async fn ack(
        &self,
        acks: &[(ReceiptHandle, AckKind)],
        stop_at_first_error: bool,
        now: u64,
    ) -> Result<Vec<Result<AckOutcome, HandleError>>, EngineError> {
        let limit = self.config.limits.batch_messages_max;
        let count = u32::try_from(acks.len()).unwrap_or(u32::MAX);
        if count > limit {
            return Err(EngineError::BatchTooLarge { count, limit });
        }
        // Only the serving leader holds the leases: elsewhere (a follower, a replica
        // reached by a retried forward, a new leader before its `Boot`) a valid handle
        // would answer Stale, and a client told its ack failed while the leader applies
        // it (or holds the lease) waits for a message that does not come back.
        self.check_serving()?;
        let mut results = Vec::with_capacity(acks.len());
        let mut begun = Vec::new();
        let mut seqs: BTreeMap<(QueueId, GroupId, u8), Vec<u64>> = BTreeMap::new();
        let mut acked_in_batch: HashSet<(QueueId, GroupId, u64)> = HashSet::new();
        {
            let mut state = self.state.borrow_mut();
            let mut failed = false;
            for (handle, kind) in acks {
                if failed && stop_at_first_error {
                    results.push(Err(HandleError::Stale));
                    continue;
                }
                let success = *kind == AckKind::Success;
                let message = (handle.queue, handle.group, handle.seq);
                if success && acked_in_batch.contains(&message) {
                    // An earlier entry of this batch acks the same message: in batch
                    // order it is done by now.
                    results.push(Ok(AckOutcome::AlreadyDone));
                    continue;
                }
                let deadline = lease_deadline(&state, handle);
                match state.begin_ack(handle, success) {
                    Ok((outcome, log)) => {
                        if log != AckLog::Nothing {
                            let lane = match (handle.dead_letter, success) {
                                (true, _) => 2,
                                (false, true) => 0,
                                (false, false) => 1,
                            };
                            seqs.entry((handle.queue, handle.group, lane))
                                .or_default()
                                .push(handle.seq);
                            if log == AckLog::Own {
                                begun.push((*handle, deadline));
                            }
                            if success {
                                acked_in_batch.insert(message);
                            }
                        }
                        results.push(Ok(outcome));
                    }
                    Err(error) => {
                        failed = true;
                        results.push(Err(error));
                    }
                }
            }
        }
        if seqs.is_empty() {
            return Ok(results);
        }
        let entries: Vec<Entry> = seqs
            .into_iter()
            .map(|((queue, group, lane), seqs)| {
                Entry::plain(match lane {
                    0 => Command::Ack { queue, group, seqs },
                    1 => Command::Nack { queue, group, seqs },
                    _ => Command::DeadAck { queue, group, seqs },
                })
            })
            .collect();
        let committed = match self.propose(&entries, now) {
            Ok(proposal) => self.wait_answered(&proposal).await,
            Err(error) => Err(error),
        };
        if let Err(error) = committed {
            let mut state = self.state.borrow_mut();
            for (handle, deadline) in begun {
                state.abort_ack(&handle, deadline);
            }
            return Err(error);
        }
        Ok(results)
    }

    /// Moves an in-flight delivery's visibility deadline to `visibility_ms` from `now`
    /// (at most the visibility limit; 0 makes it visible at once). Leases are the serving
    /// leader's state, so only it answers; the outer error is that refusal, the inner one
    /// a handle whose delivery is unknown or over.
    pub fn change_visibility(
        &self,
        handle: &ReceiptHandle,
        visibility_ms: u64,
        now: u64,
    ) -> Result<Result<(), HandleError>, EngineError> {
        self.check_serving()?;
        let limits = &self.config.limits;
        let visibility_ms = visibility_ms.clamp(0, limits.visibility_ms_max);
        let changed = self
            .state
            .borrow_mut()
            .change_visibility(handle, visibility_ms, now);
        if changed.is_ok() && visibility_ms == 0 {
            self.notify();
        }
        Ok(changed)
    }

    /// Moves every dead letter of the group back to its main lane.
    pub async fn redrive(
        &self,
        queue: QueueId,
        group: GroupId,
        now: u64,
    ) -> Result<(), EngineError> {
        {
            let state = self.state.borrow();
            if state.queue(queue)?.config.max_consume_count.is_none() {
                return Err(EngineError::NoDeadLetters);
            }
        }
        self.check_group(queue, group)?;
        self.commit(vec![Entry::plain(Command::Redrive { queue, group })], now)
            .await
    }
}

fn pick_limits(request: &ReceiveRequest) -> PickLimits {
    PickLimits {
        messages_max: request.max_messages,
        bytes_max: request.bytes_max,
        oversize_first: request.oversize_first,
    }
}

fn lease_deadline(state: &State, handle: &ReceiptHandle) -> u64 {
    state
        .queues
        .get(&handle.queue)
        .and_then(|q| q.groups.get(&handle.group))
        .and_then(|g| match g.holds.get(&handle.seq) {
            Some(group::Hold::Leased { deadline_ms, .. }) => Some(*deadline_ms),
            _ => None,
        })
        .unwrap_or(0)
}

fn read_error(error: ReadError) -> EngineError {
    EngineError::Storage(StorageFault::Read(error))
}

fn bad_record(offset: u64, problem: RecordProblem) -> EngineError {
    EngineError::Storage(StorageFault::Record { offset, problem })
}

/// `part`, a slice of `whole`, as a `Bytes` sharing `whole`'s memory (a copy should it
/// lie elsewhere, such as an empty slice of a constant).
fn share(whole: &bytes::Bytes, part: &[u8]) -> bytes::Bytes {
    let start = (part.as_ptr() as usize).wrapping_sub(whole.as_ptr() as usize);
    if start <= whole.len() && part.len() <= whole.len() - start {
        whole.slice(start..start + part.len())
    } else {
        bytes::Bytes::copy_from_slice(part)
    }
}
