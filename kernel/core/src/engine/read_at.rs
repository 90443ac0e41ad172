//! Reading a queue by position, for log-style consumers (the Kafka adapter): no group, no
//! lease, nothing logged. A message's position is its sequence number in its queue on
//! this partition (`seq`): dense, assigned in apply order (a delayed message when it is
//! released), the same on every replica and across restarts; retention moves the start.

use super::state::MessageMeta;
use super::types::{EngineError, GroupId, MessageId, QueueId};
use super::Engine;
use crate::storage::Storage;

/// One message read by position.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StoredMessage {
    pub seq: u64,
    pub message_id: MessageId,
    /// When the leader logged it (the send record's timestamp).
    pub sent_ms: u64,
    pub body: bytes::Bytes,
    pub attributes: bytes::Bytes,
    pub tags: Vec<String>,
}

/// The answer to [`Engine::read_at`].
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReadAt {
    /// The first retained position (older ones were removed by retention).
    pub start_seq: u64,
    /// The position the next message will take.
    pub next_seq: u64,
    /// Messages from the asked position on, in order; empty when the position is outside
    /// `start_seq..next_seq`.
    pub messages: Vec<StoredMessage>,
}

impl<S: Storage + Clone> Engine<S> {
    /// Reads up to `max_messages` of `queue` from position `from`, whose bodies and
    /// attributes total at most `bytes_max` (the first message is read whatever its size,
    /// so a large one cannot stall a reader). Only the serving leader answers, after
    /// confirming its leadership, so nothing committed is missing.
    pub async fn read_at(
        &self,
        queue: QueueId,
        from: u64,
        max_messages: usize,
        bytes_max: u64,
    ) -> Result<ReadAt, EngineError> {
        self.confirm_leadership().await?;
        let (start_seq, next_seq, metas) = {
            let state = self.state.borrow();
            let q = state.queue(queue)?;
            let (start_seq, next_seq) = (q.base_seq(), q.next_seq());
            let mut metas: Vec<(u64, MessageMeta)> = Vec::new();
            let mut bytes = 0u64;
            let mut seq = from.max(start_seq);
            if from >= start_seq {
                while seq < next_seq && metas.len() < max_messages {
                    let meta = *q.message(seq).expect("positions below next_seq are held");
                    let size = u64::from(meta.message_bytes);
                    if !metas.is_empty() && bytes.saturating_add(size) > bytes_max {
                        break;
                    }
                    bytes = bytes.saturating_add(size);
                    metas.push((seq, meta));
                    seq += 1;
                }
            }
            (start_seq, next_seq, metas)
        };
        let messages = self.stored_messages(&metas).await?;
        Ok(ReadAt {
            start_seq,
            next_seq,
            messages,
        })
    }

    /// Reads the dead letters of `group` on this partition from position `after_seq` on
    /// (exclusive; `None` from the first), at most `max_messages` whose bodies and
    /// attributes total at most `bytes_max` (the first whatever its size), in position
    /// order, without leasing them (an export). Only the serving leader answers.
    pub async fn read_dead_letters(
        &self,
        queue: QueueId,
        group: GroupId,
        after_seq: Option<u64>,
        max_messages: usize,
        bytes_max: u64,
    ) -> Result<Vec<StoredMessage>, EngineError> {
        self.confirm_leadership().await?;
        let metas: Vec<(u64, MessageMeta)> = {
            let state = self.state.borrow();
            let q = state.queue(queue)?;
            let g = q.groups.get(&group).ok_or(EngineError::GroupNotFound)?;
            let from = after_seq.map_or(0, |seq| seq.saturating_add(1));
            let mut bytes = 0u64;
            let mut metas = Vec::new();
            for seq in g.dead.range(from..).map(|(seq, _)| *seq) {
                if metas.len() >= max_messages {
                    break;
                }
                // A dead letter past retention is gone with its message.
                let Some(meta) = q.message(seq).copied() else {
                    continue;
                };
                let size = u64::from(meta.message_bytes);
                if !metas.is_empty() && bytes.saturating_add(size) > bytes_max {
                    break;
                }
                bytes = bytes.saturating_add(size);
                metas.push((seq, meta));
            }
            metas
        };
        self.stored_messages(&metas).await
    }

    /// The messages at these positions, read from their send records.
    async fn stored_messages(
        &self,
        metas: &[(u64, MessageMeta)],
    ) -> Result<Vec<StoredMessage>, EngineError> {
        let ids: Vec<MessageId> = metas.iter().map(|(_, meta)| meta.message_id).collect();
        let read = self.read_sends(&ids).await?;
        Ok(metas
            .iter()
            .zip(read)
            .map(|((seq, meta), send)| StoredMessage {
                seq: *seq,
                message_id: meta.message_id,
                sent_ms: send.sent_ms,
                body: send.body,
                attributes: send.attributes,
                tags: send.tags,
            })
            .collect())
    }

    /// The position of a message of `queue` still held, by its id (what a send answered).
    pub fn seq_of(&self, queue: QueueId, message: MessageId) -> Option<u64> {
        let state = self.state.borrow();
        let q = state.queue(queue).ok()?;
        let (start, next) = (q.base_seq(), q.next_seq());
        // Ids grow with positions but for released delayed messages; search the recent
        // end first, where a message just sent is.
        let mut seq = next;
        let mut steps = 0u32;
        while seq > start && steps < SEQ_SCAN_STEPS_MAX {
            seq -= 1;
            steps += 1;
            let id = q.message(seq)?.message_id;
            if id == message {
                return Some(seq);
            }
        }
        // Binary search over the rest, correct where ids are in order there.
        let found = first_position(start, seq, |at| {
            q.message(at).is_some_and(|m| m.message_id < message)
        });
        (found < seq && q.message(found)?.message_id == message).then_some(found)
    }

    /// The retained positions of `queue` (its first and the next one) and, with `at_ms`,
    /// the first position whose message became available at or after it (the next one
    /// when none did): Kafka's ListOffsets. Answered by the serving leader.
    pub async fn positions(
        &self,
        queue: QueueId,
        at_ms: Option<u64>,
    ) -> Result<(u64, u64, Option<u64>), EngineError> {
        self.confirm_leadership().await?;
        let state = self.state.borrow();
        let q = state.queue(queue)?;
        let (start, next) = (q.base_seq(), q.next_seq());
        // Availability times follow positions (the leader's queue time, which never goes
        // back within a run): a binary search finds the first at or after.
        let at = at_ms.map(|time_ms| {
            first_position(start, next, |at| {
                q.message(at).is_some_and(|m| m.available_ms < time_ms)
            })
        });
        Ok((start, next, at))
    }
}

/// The first position of `low..high` for which `before` is false, `high` when there is
/// none; `before` must hold for a prefix of the range and fail for the rest.
fn first_position(mut low: u64, mut high: u64, before: impl Fn(u64) -> bool) -> u64 {
    while low < high {
        let middle = low + (high - low) / 2;
        if before(middle) {
            low = middle + 1;
        } else {
            high = middle;
        }
    }
    low
}

/// How many of the newest positions [`Engine::seq_of`] scans before it searches.
const SEQ_SCAN_STEPS_MAX: u32 = 4096;

#[cfg(test)]
mod tests {
    use super::first_position;

    #[test]
    fn first_position_finds_where_the_prefix_ends() {
        let values = [1u64, 3, 3, 5, 8];
        let below = |limit: u64| move |at: u64| values[at as usize] < limit;
        assert_eq!(first_position(0, 5, below(0)), 0);
        assert_eq!(first_position(0, 5, below(3)), 1);
        assert_eq!(first_position(0, 5, below(4)), 3);
        assert_eq!(first_position(0, 5, below(9)), 5, "none: the end");
        assert_eq!(first_position(2, 4, below(9)), 4, "within the range given");
        assert_eq!(first_position(3, 3, below(9)), 3, "an empty range");
    }
}
