//! Transactional half messages (`Delay::Half`): what ends a due one's wait (a check, or
//! the drop after the last), the checks waiting for the adapter, and taking them with
//! their messages. Ending a transaction is `Engine::end_transaction` (send.rs).

use super::command::Command;
use super::types::{EngineError, MessageId, QueueId, TransactionCheck};
use super::Engine;
use crate::storage::Storage;

/// A check of an open transaction with its half message as sent
/// ([`Engine::take_transaction_checks`]).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HalfMessage {
    pub check: TransactionCheck,
    /// When the leader logged the send.
    pub sent_ms: u64,
    pub body: bytes::Bytes,
    pub attributes: bytes::Bytes,
    pub tags: Vec<String>,
}

impl<S: Storage + Clone> Engine<S> {
    /// What ends the wait of a held message that is due: a delayed or scheduled message
    /// is released; a half message's open transaction is checked once more, or, after
    /// `transaction_checks_max` checks, dropped (as a rollback).
    pub(super) fn end_of_delay(&self, queue: QueueId, message: MessageId, now: u64) -> Command {
        let limits = &self.config.limits;
        match self.state.borrow().half_checks(queue, message) {
            None => Command::Release { queue, message },
            Some(checks) if checks >= limits.transaction_checks_max => {
                Command::Cancel { queue, message }
            }
            Some(_) => Command::Check {
                queue,
                message,
                next_at_ms: now.saturating_add(limits.transaction_check_interval_ms),
            },
        }
    }

    /// Queues the checks just logged for the producers, while the half messages are
    /// still open; past `TRANSACTION_CHECKS_WAITING_MAX` waiting, a check is dropped
    /// (the next one comes an interval later).
    pub(super) fn note_checks(&self, logged: &[(QueueId, MessageId)]) {
        let state = self.state.borrow();
        let mut waiting = self.transaction_checks.borrow_mut();
        for &(queue, message) in logged {
            let Some(checks) = state.half_checks(queue, message) else {
                continue;
            };
            if waiting.len() >= crate::limits::TRANSACTION_CHECKS_WAITING_MAX {
                continue;
            }
            waiting.push_back(TransactionCheck {
                queue,
                message,
                checks,
            });
        }
    }

    /// Takes the checks of open transactions logged since they were last taken, oldest
    /// first, of the queues in `queues` (every queue with `None`), at most `max`, each
    /// with its half message as sent: the adapter asks the message's producer whether to
    /// commit or roll back (`end_transaction`). A check whose transaction ended
    /// meanwhile is dropped. Only the serving leader logs checks and answers.
    pub async fn take_transaction_checks(
        &self,
        queues: Option<&[QueueId]>,
        max: usize,
    ) -> Result<Vec<HalfMessage>, EngineError> {
        self.check_serving()?;
        let taken: Vec<TransactionCheck> = {
            let state = self.state.borrow();
            let mut waiting = self.transaction_checks.borrow_mut();
            let mut taken = Vec::new();
            waiting.retain(|check| {
                let open = state.half_checks(check.queue, check.message).is_some();
                let wanted = queues.is_none_or(|queues| queues.contains(&check.queue));
                if open && wanted && taken.len() < max {
                    taken.push(*check);
                    return false;
                }
                // Ended transactions go; the others wait for a taker (another queue's, or
                // this one's next call past `max`).
                open
            });
            taken
        };
        let ids: Vec<MessageId> = taken.iter().map(|check| check.message).collect();
        let read = self.read_sends(&ids).await?;
        Ok(taken
            .into_iter()
            .zip(read)
            .map(|(check, send)| HalfMessage {
                check,
                sent_ms: send.sent_ms,
                body: send.body,
                attributes: send.attributes,
                tags: send.tags,
            })
            .collect())
    }
}
