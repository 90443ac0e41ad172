//! Sending (docs/dms-api.md §3.3): 1-10 messages, each body any JSON value kept byte for byte,
//! attributes, tags, `delay_time`; Sluice extensions `delay_level`, `deliver_at` (a
//! scheduled time), `fifo_group` (alias `message_group`) and `dedup_id`. And the Sluice
//! extension that undoes a delay: cancelling a message not yet released, by its id.

use http::StatusCode;
use serde_json::value::RawValue;
use sluice_core::engine::types::{Delay, SendInput, DELAY_LEVELS_MS};

use super::errors::{
    from_node, DmsError, INVALID_DELAY, INVALID_JSON, MESSAGE_TOO_LARGE, TOO_MANY_MESSAGES,
};
use super::request::{field, object, raw_array, raw_object, Object};
use super::wire::{AttributesCheck, SendResponse, SendResult};
use super::{ids, validate, Ctx, DmsConfig, Reply};
use sluice_node::{Node, QueueView, TRANSACTION_CHECKS_TAKEN_MAX};

/// Bytes of a `fifo_group` or `dedup_id` (the engine's bound).
const KEY_BYTES_MAX: usize = 128;

/// The node's two clocks when a send arrives: a `deliver_at` is a client's wall-clock
/// date, and the engines run on queue time (`sluice_core::clock`).
#[derive(Clone, Copy, Debug)]
struct SendTime {
    queue_ms: u64,
    wall_ms: u64,
}

pub(super) async fn send<N: Node>(ctx: &Ctx<'_, N>, view: &QueueView) -> Result<Reply, DmsError> {
    let body = object(ctx.body)?;
    let return_id = field::<bool>(&body, "return_id", "true or false")?.unwrap_or(false)
        || field::<bool>(&body, "returnId", "true or false")?.unwrap_or(false);
    let entries = body
        .get("messages")
        .and_then(|raw| raw_array(raw))
        .ok_or_else(|| DmsError::parameter("The field messages must be an array of messages."))?;
    let max = ctx.config.send_messages_max;
    let count_ok = (1..=usize::try_from(max).expect("u32 fits usize")).contains(&entries.len());
    if !count_ok {
        return Err(DmsError::bad(
            TOO_MANY_MESSAGES,
            format!(
                "A send must carry 1 to {max} messages; it has {}.",
                entries.len()
            ),
        ));
    }
    let mut inputs = Vec::with_capacity(entries.len());
    let mut bytes_total: u64 = 0;
    let time = SendTime {
        queue_ms: ctx.node.now_ms(),
        wall_ms: ctx.node.wall_ms(),
    };
    for (index, entry) in entries.iter().enumerate() {
        let input = message(ctx.config, time, entry, index)?;
        bytes_total += u64::try_from(input.body.len() + input.attributes.len()).expect("fits");
        inputs.push(input);
    }
    if bytes_total > ctx.config.send_bytes_max {
        return Err(DmsError::bad(
            MESSAGE_TOO_LARGE,
            format!(
                "The messages total {bytes_total} bytes; at most {} are allowed.",
                ctx.config.send_bytes_max
            ),
        ));
    }
    let sent = ctx.node.send(view.id, inputs).await.map_err(from_node)?;
    let messages = sent
        .iter()
        .map(|outcome| SendResult {
            state: 0,
            id: return_id
                .then(|| ids::message_id_encode(outcome.partition, outcome.item.message_id)),
        })
        .collect();
    Ok(Reply::json(StatusCode::CREATED, &SendResponse { messages }))
}

/// Sluice extension: cancels a delayed or scheduled message that has not been released,
/// named by the id its send answered (`return_id`). 204 on success; a message already
/// released or cancelled, never delayed, or unknown answers 409 ([`from_node`]).
pub(super) async fn cancel<N: Node>(
    ctx: &Ctx<'_, N>,
    view: &QueueView,
    message_id: &str,
) -> Result<Reply, DmsError> {
    let (partition, message) = message_id_decode(message_id)?;
    ctx.node
        .cancel(view.id, partition, message)
        .await
        .map_err(from_node)?;
    Ok(Reply::no_content())
}

/// One entry of `messages`, checked field by field.
fn message(
    config: &DmsConfig,
    time: SendTime,
    entry: &RawValue,
    index: usize,
) -> Result<SendInput, DmsError> {
    let entry = raw_object(entry)
        .ok_or_else(|| DmsError::parameter(format!("messages[{index}] must be a JSON object.")))?;
    let body = entry
        .get("body")
        .filter(|raw| raw.get().trim() != "null")
        .ok_or_else(|| {
            DmsError::bad(
                INVALID_JSON,
                format!("messages[{index}] has no body; a JSON value is required."),
            )
        })?;
    let body = body.get().as_bytes().to_vec();
    let body_bytes = u64::try_from(body.len()).expect("usize fits u64");
    if body_bytes > config.message_bytes_max {
        return Err(DmsError::bad(
            MESSAGE_TOO_LARGE,
            format!(
                "messages[{index}] has a body of {body_bytes} bytes; at most {} are allowed.",
                config.message_bytes_max
            ),
        ));
    }
    let attributes = message_attributes(config, &entry, index)?;
    let tags: Vec<String> = field(&entry, "tags", "an array of strings")?.unwrap_or_default();
    validate::tags(&tags, config.tags_max)?;
    let fifo_group = match field::<String>(&entry, "fifo_group", "a string")? {
        Some(group) => Some(group),
        None => field(&entry, "message_group", "a string")?,
    };
    let dedup_id: Option<String> = field(&entry, "dedup_id", "a string")?;
    let delay = match message_transaction(config, &entry, index)? {
        Some(half) => {
            if message_delay(config, time, &entry, index)? != Delay::None {
                return Err(DmsError::bad(
                    INVALID_DELAY,
                    format!("messages[{index}] is a transaction's message: it takes no delay."),
                ));
            }
            half
        }
        None => message_delay(config, time, &entry, index)?,
    };
    for (name, key) in [("fifo_group", &fifo_group), ("dedup_id", &dedup_id)] {
        if key
            .as_ref()
            .is_some_and(|k| k.is_empty() || k.len() > KEY_BYTES_MAX)
        {
            return Err(DmsError::parameter(format!(
                "messages[{index}].{name} must have 1 to {KEY_BYTES_MAX} bytes."
            )));
        }
    }
    Ok(SendInput {
        body,
        attributes,
        tags,
        fifo_group,
        delay,
        dedup_id,
    })
}

/// The Sluice extension `transaction: true`: a half message, held until its transaction
/// is committed or rolled back (`end_transaction`), first offered for a check after
/// `transaction_check_after_ms` (milliseconds, the configured default when absent).
fn message_transaction(
    config: &DmsConfig,
    entry: &Object,
    index: usize,
) -> Result<Option<Delay>, DmsError> {
    let half = field::<bool>(entry, "transaction", "true or false")?.unwrap_or(false);
    let check_after: Option<u64> = field(
        entry,
        "transaction_check_after_ms",
        "a non-negative integer (milliseconds)",
    )?;
    let max = config.delay_ms_max;
    match (half, check_after) {
        (false, None) => Ok(None),
        (false, Some(_)) => Err(DmsError::parameter(format!(
            "messages[{index}].transaction_check_after_ms needs transaction: true."
        ))),
        (true, Some(ms)) if ms > max => Err(DmsError::bad(
            INVALID_DELAY,
            format!("messages[{index}].transaction_check_after_ms must be from 0 to {max}."),
        )),
        (true, check_after) => Ok(Some(Delay::Half {
            check_after_ms: check_after.unwrap_or(config.transaction_check_after_ms),
        })),
    }
}

/// Sluice extension: ends the transaction of a half message (sent with `transaction:
/// true`), named by the id its send answered: commit makes it available now, rollback
/// drops it. 204 on success; no open transaction with that message answers 409.
pub(super) async fn end_transaction<N: Node>(
    ctx: &Ctx<'_, N>,
    view: &QueueView,
    message_id: &str,
    commit: bool,
) -> Result<Reply, DmsError> {
    let (partition, message) = message_id_decode(message_id)?;
    ctx.node
        .end_transaction(view.id, partition, message, commit)
        .await
        .map_err(from_node)?;
    Ok(Reply::no_content())
}

/// Sluice extension: takes the checks of the queue's open transactions waiting for an
/// answer (at most `limit`, default and maximum `TRANSACTION_CHECKS_TAKEN_MAX`), each
/// with its half message; a producer answers each by committing or rolling back. A
/// check taken is not offered again; an open transaction is checked again an interval
/// later.
pub(super) async fn take_transaction_checks<N: Node>(
    ctx: &Ctx<'_, N>,
    view: &QueueView,
) -> Result<Reply, DmsError> {
    let max = u64::from(TRANSACTION_CHECKS_TAKEN_MAX);
    let limit = ctx
        .query
        .integer("limit", max, (1, max), super::errors::INVALID_PARAMETER)?;
    let mut left = u32::try_from(limit).expect("bounded by a u32");
    let mut checks = Vec::new();
    for partition in 0..view.config.partitions_on(ctx.node.partition_count()) {
        if left == 0 {
            break;
        }
        let taken = ctx
            .node
            .take_transaction_checks(partition, vec![view.id], left)
            .await
            .map_err(from_node)?;
        left -= u32::try_from(taken.len()).expect("bounded by left");
        let partition = u16::try_from(partition).expect("partitions fit u16");
        checks.extend(taken.into_iter().map(|half| (partition, half)));
    }
    let checks: Vec<serde_json::Value> = checks
        .iter()
        .map(|(partition, half)| {
            let message = super::consume::message_object(
                *partition,
                half.check.message,
                (&half.body, &half.attributes),
                half.tags.clone(),
                half.sent_ms,
            );
            serde_json::json!({ "checks": half.check.checks, "message": message })
        })
        .collect();
    Ok(Reply::json(
        StatusCode::OK,
        &serde_json::json!({ "checks": checks }),
    ))
}

/// Sluice extension: `GET .../queues/{queue_id}/messages/{message_id}/trace`, what
/// happened to a message (the id a send answered): `{"message_id", "complete", "events":
/// [{"time", "step", ...}]}` in log order, groups by id and name. 404 when the partition's
/// log has no send of it to this queue (unknown, or past retention).
pub(super) async fn trace<N: Node>(
    ctx: &Ctx<'_, N>,
    view: &QueueView,
    message_id: &str,
) -> Result<Reply, DmsError> {
    use sluice_core::engine::trace::TraceStep;
    let (partition, message) = message_id_decode(message_id)?;
    let trace = ctx
        .node
        .trace(view.id, partition, message)
        .await
        .map_err(from_node)?;
    if trace.events.is_empty() {
        return Err(DmsError::new(
            StatusCode::NOT_FOUND,
            super::errors::RESOURCE_NOT_FOUND,
            "No message with this ID was sent to this queue, or it is past its retention.",
        ));
    }
    let group = |group: sluice_core::engine::types::GroupId| {
        let name = view
            .groups
            .iter()
            .find(|(id, _)| *id == group)
            .map(|(_, name)| name.to_string());
        serde_json::json!({"group_id": ids::group_id_encode(view.id, group), "group": name})
    };
    let events: Vec<serde_json::Value> = trace
        .events
        .iter()
        .map(|event| {
            let (step, mut fields) = match &event.step {
                TraceStep::Stored { held } => ("stored", serde_json::json!({"held": held})),
                TraceStep::Released => ("released", serde_json::json!({})),
                TraceStep::Cancelled => ("cancelled", serde_json::json!({})),
                TraceStep::Checked => ("checked", serde_json::json!({})),
                TraceStep::Delivered {
                    group: g,
                    dead_letter,
                } => {
                    let mut fields = group(*g);
                    fields["dead_letter"] = serde_json::json!(dead_letter);
                    ("delivered", fields)
                }
                TraceStep::Acked { group: g } => ("acked", group(*g)),
                TraceStep::Failed { group: g, failures } => {
                    let mut fields = group(*g);
                    fields["failures"] = serde_json::json!(failures);
                    ("failed", fields)
                }
                TraceStep::DeadLettered { group: g, to } => {
                    let mut fields = group(*g);
                    if let Some(to) = to {
                        fields["to_queue_id"] = serde_json::json!(ids::queue_id_encode(*to));
                    }
                    ("dead_lettered", fields)
                }
                TraceStep::DeadLetterAcked { group: g } => ("dead_letter_acked", group(*g)),
                TraceStep::Redriven { group: g } => ("redriven", group(*g)),
                TraceStep::Moved { group: g, to } => {
                    let mut fields = group(*g);
                    fields["to_queue_id"] = serde_json::json!(ids::queue_id_encode(*to));
                    ("moved", fields)
                }
                TraceStep::Expired => ("expired", serde_json::json!({})),
                TraceStep::QueueDeleted => ("queue_deleted", serde_json::json!({})),
            };
            fields["step"] = serde_json::json!(step);
            fields["time"] = serde_json::json!(event.at_ms);
            fields
        })
        .collect();
    Ok(Reply::json(
        StatusCode::OK,
        &serde_json::json!({
            "message_id": message_id,
            "complete": trace.complete,
            "events": events,
        }),
    ))
}

fn message_id_decode(
    message_id: &str,
) -> Result<(u16, sluice_core::engine::types::MessageId), DmsError> {
    ids::message_id_decode(message_id).ok_or_else(|| {
        DmsError::parameter(
            "The message ID format is invalid: it is the 20 lower-case hex digits a send \
             answers with return_id.",
        )
    })
}

/// The attributes' raw JSON text, after checking they are unique scalars.
fn message_attributes(
    config: &DmsConfig,
    entry: &Object,
    index: usize,
) -> Result<Vec<u8>, DmsError> {
    let Some(raw) = entry
        .get("attributes")
        .filter(|raw| raw.get().trim() != "null")
    else {
        return Ok(Vec::new());
    };
    if serde_json::from_str::<AttributesCheck>(raw.get()).is_err() {
        return Err(DmsError::parameter(format!(
            "messages[{index}].attributes must be an object of unique names with string, \
             number or boolean values."
        )));
    }
    let bytes = u64::try_from(raw.get().len()).expect("usize fits u64");
    if bytes > config.attributes_bytes_max {
        return Err(DmsError::bad(
            MESSAGE_TOO_LARGE,
            format!(
                "messages[{index}].attributes has {bytes} bytes; at most {} are allowed.",
                config.attributes_bytes_max
            ),
        ));
    }
    Ok(raw.get().as_bytes().to_vec())
}

/// At most one of `delay_time` (milliseconds, fraction dropped), the extension
/// `delay_level` (1-18) and the extension `deliver_at` (epoch milliseconds).
fn message_delay(
    config: &DmsConfig,
    time: SendTime,
    entry: &Object,
    index: usize,
) -> Result<Delay, DmsError> {
    let delay_ms: Option<f64> = field(entry, "delay_time", "a number of milliseconds")?;
    let level: Option<i64> = field(entry, "delay_level", "an integer")?;
    let deliver_at: Option<u64> = field(
        entry,
        "deliver_at",
        "a non-negative integer (epoch milliseconds)",
    )?;
    let given = [delay_ms.is_some(), level.is_some(), deliver_at.is_some()];
    if given.iter().filter(|given| **given).count() > 1 {
        return Err(DmsError::bad(
            INVALID_DELAY,
            format!(
                "messages[{index}] may carry only one of delay_time, delay_level and \
                 deliver_at."
            ),
        ));
    }
    if let Some(ms) = delay_ms {
        return message_delay_time(config, ms, index);
    }
    if let Some(level) = level {
        let levels = DELAY_LEVELS_MS.len();
        return u8::try_from(level)
            .ok()
            .filter(|level| (1..=levels).contains(&usize::from(*level)))
            .map(Delay::Level)
            .ok_or_else(|| {
                DmsError::bad(
                    INVALID_DELAY,
                    format!("messages[{index}].delay_level must be from 1 to {levels}."),
                )
            });
    }
    match deliver_at {
        Some(at) => message_deliver_at(config, time, at, index),
        None => Ok(Delay::None),
    }
}

fn message_delay_time(config: &DmsConfig, ms: f64, index: usize) -> Result<Delay, DmsError> {
    let max = config.delay_ms_max;
    // The range check is on the float, so the truncating cast below is exact.
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    if ms.is_finite() && ms >= 0.0 && ms < (max + 1) as f64 {
        let ms = ms.trunc() as u64;
        Ok(if ms == 0 { Delay::None } else { Delay::Ms(ms) })
    } else {
        Err(DmsError::bad(
            INVALID_DELAY,
            format!("messages[{index}].delay_time must be from 0 to {max} ms."),
        ))
    }
}

/// A scheduled time, a wall-clock date: at most `schedule_ahead_ms_max` ahead of the
/// node's wall clock. It becomes queue time by the two clocks' difference now, so a date
/// now or in the past lands at or before queue time's now, which the engine reads as no
/// delay.
fn message_deliver_at(
    config: &DmsConfig,
    time: SendTime,
    at: u64,
    index: usize,
) -> Result<Delay, DmsError> {
    let max = config.schedule_ahead_ms_max;
    let ahead_ms = at.saturating_sub(time.wall_ms);
    if ahead_ms > max {
        return Err(DmsError::bad(
            INVALID_DELAY,
            format!(
                "messages[{index}].deliver_at is {ahead_ms} ms ahead; at most {max} ms are \
                 allowed."
            ),
        ));
    }
    Ok(Delay::At(sluice_core::clock::queue_time_of(
        at,
        time.queue_ms,
        time.wall_ms,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `deliver_at` = `at` with the node's clocks at `queue_ms` and `wall_ms`.
    fn check(queue_ms: u64, wall_ms: u64, at: u64) -> Result<Delay, &'static str> {
        let time = SendTime { queue_ms, wall_ms };
        message_deliver_at(&DmsConfig::dms_default(), time, at, 0).map_err(|e| e.code)
    }

    #[test]
    fn deliver_at_is_a_wall_clock_date_turned_into_queue_time() {
        // Goal: the horizon is measured from the wall clock and the release keeps its
        // distance from now in queue time, whichever way the wall clock was stepped.
        let horizon = DmsConfig::dms_default().schedule_ahead_ms_max;
        let queue = 1_764_081_000_000;
        for wall in [queue, queue + 3_600_000, queue - 3_600_000] {
            assert_eq!(
                check(queue, wall, wall + 10_000),
                Ok(Delay::At(queue + 10_000))
            );
            assert_eq!(check(queue, wall, wall), Ok(Delay::At(queue)));
            assert_eq!(check(queue, wall, wall - 5), Ok(Delay::At(queue - 5)));
            assert_eq!(
                check(queue, wall, wall + horizon),
                Ok(Delay::At(queue + horizon))
            );
            assert_eq!(check(queue, wall, wall + horizon + 1), Err(INVALID_DELAY));
        }
        assert_eq!(check(queue, queue, 0), Ok(Delay::At(0)));
        assert_eq!(check(5, 10, 0), Ok(Delay::At(0)));
        assert_eq!(check(queue, queue, u64::MAX), Err(INVALID_DELAY));
    }
}
