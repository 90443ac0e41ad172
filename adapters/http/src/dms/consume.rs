//! Consuming and acknowledging, on a group's main lane or its dead letters (docs/dms-api.md
//! §3.4-§3.6): long-poll parameters, the top-level array answer within the 512 KiB of
//! messages one answer carries (`DmsConfig::consume_bytes_max`), and acks processed in
//! order that stop at the first invalid handler.

use std::borrow::Cow;

use http::StatusCode;
use serde_json::value::RawValue;
use sluice_core::engine::types::{
    AckKind, Delivery, GroupId, MessageId, ReceiptHandle, TagFilter, TagMatch,
};
use sluice_core::engine::ReceiveRequest;
use sluice_node::Routed;

use super::errors::{
    from_node, DmsError, INVALID_HANDLER, INVALID_PARAMETER, TIME_WAIT_RANGE, TOO_MANY_MESSAGES,
};
use super::request::{field, object, raw_array, raw_object};
use super::wire::{AckResponse, Consumed, ConsumedMessage};
use super::{ids, validate, Ctx, Reply};
use sluice_node::{Lane, Node, QueueView, DEAD_LETTER_PAGE_BYTES_MAX, DEAD_LETTER_PAGE_MAX};

/// The deepest message body a consume answers as JSON: what a send accepts, the request's
/// three levels (`{"messages": [{"body": ...`) taken from the limit on the whole request.
const BODY_DEPTH_MAX: u32 = crate::json_depth::JSON_DEPTH_MAX - 3;

pub(super) async fn consume<N: Node>(
    ctx: &Ctx<'_, N>,
    view: &QueueView,
    group: GroupId,
    lane: Lane,
) -> Result<Reply, DmsError> {
    let config = ctx.config;
    let query = ctx.query;
    let max = u64::from(config.consume_messages_max);
    let max_messages = query.integer("max_msgs", max, (1, max), TOO_MANY_MESSAGES)?;
    let time_wait_s = query.integer(
        "time_wait",
        config.time_wait_s_default,
        (config.time_wait_s_min, config.time_wait_s_max),
        TIME_WAIT_RANGE,
    )?;
    let ack_wait_s = query.integer(
        "ack_wait",
        config.ack_wait_s_default,
        (config.ack_wait_s_min, config.ack_wait_s_max),
        INVALID_PARAMETER,
    )?;
    let filter = match lane {
        Lane::Main => consume_filter(ctx)?,
        Lane::DeadLetters => None,
    };
    // The byte budget goes into the receive, not after it: messages picked and then left
    // out of the answer would be leased to nobody until their ack_wait ran out.
    let request = ReceiveRequest {
        attempt: None,
        max_messages: u32::try_from(max_messages).expect("at most consume_messages_max"),
        bytes_max: config.consume_bytes_max,
        oversize_first: true,
        visibility_ms: ack_wait_s * 1000,
        filter,
    };
    let deliveries = ctx
        .node
        .receive(view.id, group, lane, request, time_wait_s * 1000)
        .await
        .map_err(from_node)?;
    let consumed: Vec<Consumed> = deliveries.iter().map(consumed).collect();
    Ok(Reply::json(StatusCode::OK, &consumed))
}

/// `tag` (repeatable) and `tag_type` (`or` by default, or `and`).
fn consume_filter<N: Node>(ctx: &Ctx<'_, N>) -> Result<Option<TagFilter>, DmsError> {
    let tags = ctx.query.all("tag");
    validate::tags(&tags, ctx.config.tags_max)?;
    let mode = match ctx
        .query
        .get("tag_type")
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None | Some("or") => TagMatch::Any,
        Some("and") => TagMatch::All,
        Some(_) => {
            return Err(DmsError::parameter(
                "The parameter tag_type must be and or or.",
            ))
        }
    };
    Ok((!tags.is_empty()).then_some(TagFilter { tags, mode }))
}

fn consumed(delivery: &Routed<Delivery>) -> Consumed<'_> {
    let item = &delivery.item;
    let handle = Routed {
        partition: delivery.partition,
        item: item.handle,
    };
    Consumed {
        handler: ids::handler_encode(&handle),
        message: message_object(
            delivery.partition,
            item.message_id,
            (&item.body, &item.attributes),
            item.tags.clone(),
            item.sent_ms,
        ),
    }
}

/// A stored message as a consume shows it (and a transaction check).
pub(super) fn message_object<'a>(
    partition: u16,
    message_id: MessageId,
    (body, attributes): (&'a [u8], &'a [u8]),
    tags: Vec<String>,
    sent_ms: u64,
) -> ConsumedMessage<'a> {
    // A body this adapter did not write (another protocol's message) is returned as a
    // JSON string of its text when it is not JSON, or JSON nested deeper than a body this
    // adapter accepts (the answer stays within the depth limit clients were promised).
    let body = std::str::from_utf8(body)
        .ok()
        .filter(|text| crate::json_depth::check(text.as_bytes(), BODY_DEPTH_MAX).is_ok())
        .and_then(|text| serde_json::from_str::<&RawValue>(text).ok())
        .map(Cow::Borrowed)
        .unwrap_or_else(|| {
            let text = String::from_utf8_lossy(body);
            Cow::Owned(serde_json::value::to_raw_value(&text).expect("a string serialises"))
        });
    let attributes = std::str::from_utf8(attributes)
        .ok()
        .filter(|text| text.trim_start().starts_with('{'))
        .and_then(|text| serde_json::from_str::<&RawValue>(text).ok());
    ConsumedMessage {
        body,
        attributes,
        tags,
        id: ids::message_id_encode(partition, message_id),
        sent_time: sent_ms,
    }
}

pub(super) async fn ack<N: Node>(
    ctx: &Ctx<'_, N>,
    view: &QueueView,
    group: GroupId,
    lane: Lane,
) -> Result<Reply, DmsError> {
    let entries = ack_entries(ctx)?;
    let dead_letter = lane == Lane::DeadLetters;
    // Entries up to the first handler that names another queue, group or lane (or no
    // delivery at all) go to the node; that one and all later ones count as failed.
    let mut acks: Vec<(Routed<ReceiptHandle>, AckKind)> = Vec::with_capacity(entries.len());
    for (handler, kind) in &entries {
        let valid = ids::handler_decode(handler).filter(|handle| {
            handle.item.queue == view.id
                && handle.item.group == group
                && handle.item.dead_letter == dead_letter
        });
        match valid {
            Some(handle) => acks.push((handle, *kind)),
            None => break,
        }
    }
    let rejected_early = entries.len() - acks.len();
    let results = if acks.is_empty() {
        Vec::new()
    } else {
        ctx.node.ack(lane, acks).await.map_err(from_node)?
    };
    let success = results.iter().filter(|result| result.is_ok()).count();
    let fail = results.len() - success + rejected_early;
    let response = AckResponse {
        success: u64::try_from(success).expect("usize fits u64"),
        fail: u64::try_from(fail).expect("usize fits u64"),
    };
    Ok(Reply::json(StatusCode::OK, &response))
}

/// The ack body: `message` (or `messages`), 1 to `ack_entries_max` entries, each with a
/// non-empty string `handler` and a `status` of `success` or `fail`.
fn ack_entries<N: Node>(ctx: &Ctx<'_, N>) -> Result<Vec<(String, AckKind)>, DmsError> {
    let body = object(ctx.body)?;
    let list = body
        .get("message")
        .or_else(|| body.get("messages"))
        .and_then(|raw| raw_array(raw))
        .ok_or_else(|| {
            DmsError::parameter(
                "The field message must be an array of objects with handler and status.",
            )
        })?;
    let max = ctx.config.ack_entries_max;
    if list.is_empty() || list.len() > usize::try_from(max).expect("u32 fits usize") {
        return Err(DmsError::bad(
            TOO_MANY_MESSAGES,
            format!(
                "An ack must carry 1 to {max} entries; it has {}.",
                list.len()
            ),
        ));
    }
    let mut entries = Vec::with_capacity(list.len());
    for (index, raw) in list.iter().enumerate() {
        let entry = raw_object(raw).ok_or_else(|| {
            DmsError::parameter(format!("message[{index}] must be a JSON object."))
        })?;
        let handler: String = field(&entry, "handler", "a string")
            .map_err(|_| handler_error(index))?
            .filter(|handler: &String| !handler.is_empty())
            .ok_or_else(|| handler_error(index))?;
        let status: Option<String> = field(&entry, "status", "a string")?;
        let kind = match status.as_deref().map(str::to_ascii_lowercase).as_deref() {
            Some("success") => AckKind::Success,
            Some("fail") => AckKind::Fail,
            _ => {
                return Err(DmsError::parameter(format!(
                    "message[{index}].status must be success or fail."
                )))
            }
        };
        entries.push((handler, kind));
    }
    Ok(entries)
}

fn handler_error(index: usize) -> DmsError {
    DmsError::bad(
        INVALID_HANDLER,
        format!("message[{index}].handler must be the handler string a consume returned."),
    )
}

/// Sluice extension: `GET .../groups/{group_id}/deadletters/export?cursor=C&limit=N`, the
/// group's dead letters as JSON lines (`application/x-ndjson`), one message a line as a
/// consume shows it, oldest first per partition, partitions in order, without leasing
/// them. At most `limit` (1 to `DEAD_LETTER_PAGE_MAX`, the default) lines a page, and the
/// page ends after the partition read that reached `DEAD_LETTER_PAGE_BYTES_MAX` bytes;
/// when there may be more, the `X-Next-Cursor` header holds the `cursor` of the next page.
pub(super) async fn export_dead_letters<N: Node>(
    ctx: &Ctx<'_, N>,
    view: &QueueView,
    group: GroupId,
) -> Result<Reply, DmsError> {
    if view.config.max_consume_count.is_none() {
        return Err(from_node(sluice_node::NodeError::Engine(
            sluice_core::engine::types::EngineError::NoDeadLetters,
        )));
    }
    let max = u64::from(DEAD_LETTER_PAGE_MAX);
    let limit = ctx
        .query
        .integer("limit", max, (1, max), INVALID_PARAMETER)?;
    let mut left = u32::try_from(limit).expect("bounded by a u32");
    let (mut partition, mut after) = match ctx.query.get("cursor") {
        None => (0, None),
        Some(cursor) => export_cursor_decode(cursor).ok_or_else(|| {
            DmsError::parameter("The cursor is not one an export answered in X-Next-Cursor.")
        })?,
    };
    let partitions = view.config.partitions_on(ctx.node.partition_count());
    let mut lines = Vec::new();
    let mut page_bytes = 0u64;
    let mut next = None;
    while partition < partitions {
        let read = ctx
            .node
            .read_dead_letters(view.id, group, partition, after, left)
            .await
            .map_err(from_node)?;
        let got = u32::try_from(read.len()).expect("bounded by left");
        let last = read.last().map(|message| message.seq);
        page_bytes += read
            .iter()
            .map(|message| (message.body.len() + message.attributes.len()) as u64)
            .sum::<u64>();
        let wire_partition = u16::try_from(partition).expect("partitions fit u16");
        lines.extend(read.into_iter().map(|message| {
            let object = message_object(
                wire_partition,
                message.message_id,
                (&message.body, &message.attributes),
                message.tags.clone(),
                message.sent_ms,
            );
            serde_json::to_value(object).expect("a message serialises")
        }));
        left = left.saturating_sub(got);
        if left == 0 || page_bytes >= DEAD_LETTER_PAGE_BYTES_MAX {
            // A full page (by lines or bytes): the next one starts after its last line.
            next = last.map(|seq| format!("{partition}.{seq}"));
            break;
        }
        // Fewer than asked: the partition's end, or its byte bound (then the next page
        // goes on after the last line).
        if let Some(seq) = last {
            let more = ctx
                .node
                .read_dead_letters(view.id, group, partition, Some(seq), 1)
                .await
                .map_err(from_node)?;
            if !more.is_empty() {
                next = Some(format!("{partition}.{seq}"));
                break;
            }
        }
        partition += 1;
        after = None;
    }
    Ok(Reply::json_lines(&lines, next))
}

/// An export cursor `P.S`: partition `P`, after position `S`.
fn export_cursor_decode(cursor: &str) -> Option<(u32, Option<u64>)> {
    let (partition, seq) = cursor.split_once('.')?;
    Some((partition.parse().ok()?, Some(seq.parse().ok()?)))
}
