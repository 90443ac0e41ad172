//! ReceiveMessage, AckMessage, ChangeInvisibleDuration and
//! ForwardMessageToDeadLetterQueue: consumption through the node's leases.
//!
//! A receive is one `Node::receive` of the topic's queue for the group, with the node's
//! long poll (at most [`LONG_POLL_MS_MAX`]), the invisible duration as the lease, and the
//! tag expression as the filter. The answer streams a status (OK, or MESSAGE_NOT_FOUND
//! when nothing came), one frame per message, and the delivery time, then ends. A receipt
//! handle is the node's handle (`wire::receipt_handle_encode`); acks and visibility
//! changes hand it back to the node after checking that its queue is the caller's topic.

use bytes::Bytes;
use prost_types::{Duration, Timestamp};
use sluice_core::engine::types::{
    AckKind, AckOutcome, Delivery, GroupId, HandleError, ReceiptHandle, TagFilter, TagMatch,
};
use sluice_core::engine::ReceiveRequest;
use sluice_node::{Lane, Node, QueueView, Routed};

use crate::limits::{
    FILTER_TAGS_MAX, INVISIBLE_MS_DEFAULT, LONG_POLL_MS_MAX, NAME_BYTES_MAX, RECEIVE_BYTES_MAX,
    RECEIVE_MESSAGES_MAX,
};
use crate::proto::receive_message_response::Content;
use crate::proto::{
    AckMessageRequest, AckMessageResponse, AckMessageResultEntry, ChangeInvisibleDurationRequest,
    ChangeInvisibleDurationResponse, Code, Digest, DigestType, Encoding, FilterExpression,
    FilterType, ForwardMessageToDeadLetterQueueRequest, ForwardMessageToDeadLetterQueueResponse,
    Message, MessageType, ReceiveMessageRequest, ReceiveMessageResponse, Resource, Status,
    SystemProperties,
};
use crate::service::{framed, ok, refusal_of, Call, Refusal};
use crate::wire::{
    message_ref_encode, receipt_handle_decode, receipt_handle_encode, Attributes,
    FOREIGN_ATTRIBUTES_PROPERTY,
};

/// Milliseconds of a duration (0 for a negative one).
fn duration_ms(duration: &Duration) -> u64 {
    let seconds = u64::try_from(duration.seconds).unwrap_or(0);
    let nanos = u64::try_from(duration.nanos).unwrap_or(0);
    seconds
        .saturating_mul(1000)
        .saturating_add(nanos / 1_000_000)
}

pub(crate) fn timestamp_of(ms: u64) -> Timestamp {
    Timestamp {
        seconds: i64::try_from(ms / 1000).expect("epoch seconds fit i64"),
        nanos: i32::try_from((ms % 1000) * 1_000_000).expect("below a second"),
    }
}

/// The tag filter of an expression: `*` or nothing is every message; `A || B` is a
/// message with either tag. SQL92 expressions are not supported.
pub(crate) fn filter_of(
    expression: Option<&FilterExpression>,
) -> Result<Option<TagFilter>, Refusal> {
    let Some(expression) = expression else {
        return Ok(None);
    };
    if expression.r#type == FilterType::Sql as i32 {
        return Err(Refusal::new(
            Code::IllegalFilterExpression,
            "SQL92 filter expressions are not supported; use tags",
        ));
    }
    let text = expression.expression.trim();
    if text.is_empty() || text == "*" {
        return Ok(None);
    }
    let mut tags: Vec<String> = Vec::new();
    for tag in text.split("||") {
        let tag = tag.trim();
        if tag.is_empty() || tag.len() > NAME_BYTES_MAX || tag == "*" {
            return Err(Refusal::new(
                Code::IllegalFilterExpression,
                format!("{text:?} is not a tag expression (TAG1 || TAG2, or *)"),
            ));
        }
        if !tags.iter().any(|known| known == tag) {
            tags.push(tag.to_string());
        }
        if tags.len() > FILTER_TAGS_MAX {
            return Err(Refusal::new(
                Code::IllegalFilterExpression,
                format!("at most {FILTER_TAGS_MAX} tags in an expression"),
            ));
        }
    }
    tags.sort();
    Ok(Some(TagFilter {
        tags,
        mode: TagMatch::Any,
    }))
}

pub(crate) async fn receive_message<N: Node>(
    call: &Call<'_, N>,
    request: ReceiveMessageRequest,
) -> Result<Vec<Bytes>, Refusal> {
    let queue = request.message_queue.as_ref();
    let topic = queue.and_then(|queue| queue.topic.as_ref());
    let view = call.topic(topic).await?;
    let group = call.group(&view, request.group.as_ref()).await?;
    let filter = filter_of(request.filter_expression.as_ref())?;
    let batch = u32::try_from(request.batch_size).unwrap_or(0);
    if batch == 0 || batch > RECEIVE_MESSAGES_MAX {
        return Err(Refusal::new(
            Code::BadRequest,
            format!("the batch size must be from 1 to {RECEIVE_MESSAGES_MAX}"),
        ));
    }
    let visibility_ms = request
        .invisible_duration
        .as_ref()
        .map_or(INVISIBLE_MS_DEFAULT, duration_ms);
    let wait_ms = request.long_polling_timeout.as_ref().map_or(0, duration_ms);
    if wait_ms > LONG_POLL_MS_MAX {
        return Err(Refusal::new(
            Code::IllegalPollingTime,
            format!("the long-polling timeout may be at most {LONG_POLL_MS_MAX} ms"),
        ));
    }
    let receive = ReceiveRequest {
        max_messages: batch,
        bytes_max: RECEIVE_BYTES_MAX,
        oversize_first: true,
        visibility_ms,
        filter,
        attempt: None,
    };
    let deliveries = call
        .node
        .receive(view.id, group, Lane::Main, receive, wait_ms)
        .await
        .map_err(refusal_of)?;
    let resource = Resource {
        resource_namespace: topic
            .map(|t| t.resource_namespace.clone())
            .unwrap_or_default(),
        name: view.name.to_string(),
    };
    let now = timestamp_of(call.node.wall_ms());
    Ok(receive_answer(&resource, &deliveries, visibility_ms, now))
}

/// The stream a receive answers: a status (MESSAGE_NOT_FOUND when nothing came), one
/// frame per delivery, then the delivery time `now`.
fn receive_answer(
    resource: &Resource,
    deliveries: &[Routed<Delivery>],
    visibility_ms: u64,
    now: Timestamp,
) -> Vec<Bytes> {
    let mut answer = Vec::with_capacity(deliveries.len() + 2);
    let status = if deliveries.is_empty() {
        Status {
            code: Code::MessageNotFound as i32,
            message: "no new message".to_string(),
        }
    } else {
        ok().expect("a status")
    };
    answer.extend(framed(&ReceiveMessageResponse {
        content: Some(Content::Status(status)),
    }));
    for delivery in deliveries {
        let item = &delivery.item;
        let stored = Stored {
            partition: delivery.partition,
            message_id: item.message_id,
            body: &item.body,
            attributes: &item.attributes,
            tags: &item.tags,
            fifo_group: item.fifo_group.as_ref(),
            sent_ms: item.sent_ms,
        };
        let lease = Lease {
            handle: Routed {
                partition: delivery.partition,
                item: item.handle,
            },
            delivery_count: item.delivery_count,
            visibility_ms,
        };
        let message = message_of(resource, &stored, Some(&lease));
        answer.extend(framed(&ReceiveMessageResponse {
            content: Some(Content::Message(message)),
        }));
    }
    answer.extend(framed(&ReceiveMessageResponse {
        content: Some(Content::DeliveryTimestamp(now)),
    }));
    assert_eq!(answer.len(), deliveries.len() + 2, "status, messages, time");
    answer
}

/// A stored message as the client reads it: from a delivery, or a transaction check's
/// half message.
pub(crate) struct Stored<'a> {
    pub partition: u16,
    pub message_id: sluice_core::engine::types::MessageId,
    pub body: &'a Bytes,
    pub attributes: &'a Bytes,
    pub tags: &'a [String],
    pub fifo_group: Option<&'a String>,
    pub sent_ms: u64,
}

/// A delivery of a stored message: its handle, attempt and lease.
pub(crate) struct Lease {
    pub handle: Routed<ReceiptHandle>,
    pub delivery_count: u32,
    pub visibility_ms: u64,
}

/// What a message sent through another API shows: its attributes, if any, as one user
/// property, its send time as its born time.
fn foreign_attributes(stored: &Stored<'_>) -> Attributes {
    let properties = if stored.attributes.is_empty() {
        Vec::new()
    } else {
        vec![(
            FOREIGN_ATTRIBUTES_PROPERTY.to_string(),
            String::from_utf8_lossy(stored.attributes).into_owned(),
        )]
    };
    let kind = if stored.fifo_group.is_some() {
        MessageType::Fifo
    } else {
        MessageType::Normal
    };
    Attributes {
        message_id: String::new(),
        message_type: kind as i32,
        body_encoding: Encoding::Identity as i32,
        born_ms: stored.sent_ms,
        born_host: String::new(),
        keys: Vec::new(),
        properties,
    }
}

/// The message the client reads for `stored`, delivered under `lease` if any.
pub(crate) fn message_of(topic: &Resource, stored: &Stored<'_>, lease: Option<&Lease>) -> Message {
    let reference = message_ref_encode(stored.partition, stored.message_id);
    let attributes =
        Attributes::decode(stored.attributes).unwrap_or_else(|| foreign_attributes(stored));
    let Attributes {
        message_id,
        message_type,
        body_encoding,
        born_ms,
        born_host,
        keys,
        properties,
    } = attributes;
    let message_id = if message_id.is_empty() {
        reference
    } else {
        message_id
    };
    let checksum = format!("{:08X}", crc32fast::hash(stored.body));
    let born_ms = if born_ms == 0 {
        stored.sent_ms
    } else {
        born_ms
    };
    let system_properties = SystemProperties {
        tag: stored.tags.first().cloned(),
        keys,
        message_id,
        body_digest: Some(Digest {
            r#type: DigestType::Crc32 as i32,
            checksum,
        }),
        body_encoding,
        message_type,
        born_timestamp: Some(timestamp_of(born_ms)),
        born_host,
        store_timestamp: Some(timestamp_of(stored.sent_ms)),
        store_host: String::new(),
        delivery_timestamp: None,
        receipt_handle: lease.map(|lease| receipt_handle_encode(&lease.handle)),
        queue_id: i32::from(stored.partition),
        queue_offset: i64::try_from(stored.message_id.0).ok(),
        invisible_duration: lease.map(|lease| Duration {
            seconds: i64::try_from(lease.visibility_ms / 1000).expect("fits i64"),
            nanos: i32::try_from((lease.visibility_ms % 1000) * 1_000_000).expect("below a second"),
        }),
        delivery_attempt: lease
            .map(|lease| i32::try_from(lease.delivery_count).unwrap_or(i32::MAX)),
        message_group: stored.fifo_group.cloned(),
        trace_context: None,
        orphaned_transaction_recovery_duration: None,
        dead_letter_queue: None,
        lite_topic: None,
        priority: None,
    };
    Message {
        topic: Some(topic.clone()),
        user_properties: properties.into_iter().collect(),
        system_properties: Some(system_properties),
        body: stored.body.clone(),
    }
}

/// A receipt handle of the caller's topic `view` and `group`, or INVALID_RECEIPT_HANDLE.
fn handle_of(
    view: &QueueView,
    group: GroupId,
    text: &str,
) -> Result<Routed<ReceiptHandle>, Refusal> {
    match receipt_handle_decode(text) {
        Some(handle)
            if handle.item.queue == view.id
                && handle.item.group == group
                && Lane::Main.holds(&handle.item) =>
        {
            Ok(handle)
        }
        _ => Err(Refusal::new(
            Code::InvalidReceiptHandle,
            "the receipt handle is not one of this topic's and group's",
        )),
    }
}

fn handle_refusal(error: HandleError) -> Refusal {
    match error {
        HandleError::Unknown => Refusal::new(
            Code::InvalidReceiptHandle,
            "the receipt handle names no message of this group",
        ),
        HandleError::Stale => Refusal::new(
            Code::InvalidReceiptHandle,
            "the receipt handle has expired: the message became visible again",
        ),
    }
}

/// Acks or fails (`kind`) one handle through the node.
async fn settle<N: Node>(
    call: &Call<'_, N>,
    handle: Routed<ReceiptHandle>,
    kind: AckKind,
) -> Result<(), Refusal> {
    let mut outcomes = call
        .node
        .ack(Lane::Main, vec![(handle, kind)])
        .await
        .map_err(refusal_of)?;
    assert_eq!(outcomes.len(), 1, "one outcome per ack");
    match outcomes.remove(0) {
        Ok(AckOutcome::Applied | AckOutcome::AlreadyDone) => Ok(()),
        Err(error) => Err(handle_refusal(error)),
    }
}

pub(crate) async fn ack_message<N: Node>(
    call: &Call<'_, N>,
    request: AckMessageRequest,
) -> Result<Vec<Bytes>, Refusal> {
    let view = call.topic(request.topic.as_ref()).await?;
    let group = call.existing_group(&view, request.group.as_ref()).await?;
    if request.entries.is_empty() || request.entries.len() > RECEIVE_MESSAGES_MAX as usize {
        return Err(Refusal::new(
            Code::BadRequest,
            format!("an ack carries 1 to {RECEIVE_MESSAGES_MAX} entries"),
        ));
    }
    let mut entries = Vec::with_capacity(request.entries.len());
    let mut first_refusal = None;
    for entry in &request.entries {
        let settled = match handle_of(&view, group, &entry.receipt_handle) {
            Ok(handle) => settle(call, handle, AckKind::Success).await,
            Err(refusal) => Err(refusal),
        };
        let status = match settled {
            Ok(()) => ok().expect("a status"),
            Err(refusal) => {
                let status = refusal.status();
                first_refusal.get_or_insert(refusal);
                status
            }
        };
        entries.push(AckMessageResultEntry {
            message_id: entry.message_id.clone(),
            receipt_handle: entry.receipt_handle.clone(),
            status: Some(status),
        });
    }
    let status = match (first_refusal, entries.len()) {
        (None, _) => ok().expect("a status"),
        (Some(refusal), 1) => refusal.status(),
        (Some(_), _) => Status {
            code: Code::MultipleResults as i32,
            message: "some entries failed; see each entry's status".to_string(),
        },
    };
    Ok(framed(&AckMessageResponse {
        status: Some(status),
        entries,
    }))
}

/// Moves the delivery's visibility deadline. The node keeps the handle valid across the
/// change, so the "new" handle answered is the same one.
pub(crate) async fn change_invisible_duration<N: Node>(
    call: &Call<'_, N>,
    request: ChangeInvisibleDurationRequest,
) -> Result<Vec<Bytes>, Refusal> {
    let view = call.topic(request.topic.as_ref()).await?;
    let group = call.existing_group(&view, request.group.as_ref()).await?;
    let handle = handle_of(&view, group, &request.receipt_handle)?;
    let visibility_ms = request
        .invisible_duration
        .as_ref()
        .map(duration_ms)
        .ok_or_else(|| {
            Refusal::new(
                Code::IllegalInvisibleTime,
                "an invisible duration is required",
            )
        })?;
    call.node
        .change_visibility(handle, visibility_ms)
        .await
        .map_err(refusal_of)?
        .map_err(handle_refusal)?;
    Ok(framed(&ChangeInvisibleDurationResponse {
        status: ok(),
        receipt_handle: request.receipt_handle,
    }))
}

/// A consumer gave up on a message: it counts as a failed delivery, which the queue's
/// max consume count turns into a dead letter (the node has no call that dead-letters a
/// message at once).
pub(crate) async fn forward_to_dead_letters<N: Node>(
    call: &Call<'_, N>,
    request: ForwardMessageToDeadLetterQueueRequest,
) -> Result<Vec<Bytes>, Refusal> {
    let view = call.topic(request.topic.as_ref()).await?;
    let group = call.existing_group(&view, request.group.as_ref()).await?;
    let handle = handle_of(&view, group, &request.receipt_handle)?;
    settle(call, handle, AckKind::Fail).await?;
    Ok(framed(&ForwardMessageToDeadLetterQueueResponse {
        status: ok(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tags a TAG expression filters by (`None`: every message), or its refusal code.
    fn check(expression: &str) -> Result<Option<Vec<String>>, Code> {
        let expression = FilterExpression {
            r#type: FilterType::Tag as i32,
            expression: expression.to_string(),
        };
        filter_of(Some(&expression))
            .map(|filter| filter.map(|filter| filter.tags))
            .map_err(|refusal| refusal.code)
    }

    #[test]
    fn tag_expressions() {
        assert_eq!(check("*"), Ok(None));
        assert_eq!(check(""), Ok(None));
        assert_eq!(check("b || a||b"), Ok(Some(vec!["a".into(), "b".into()])));
        assert_eq!(check("a || "), Err(Code::IllegalFilterExpression));
        assert_eq!(check("a || *"), Err(Code::IllegalFilterExpression));
        let sql = FilterExpression {
            r#type: FilterType::Sql as i32,
            expression: "a > 1".into(),
        };
        assert_eq!(
            filter_of(Some(&sql)).map_err(|r| r.code),
            Err(Code::IllegalFilterExpression)
        );
    }
}
