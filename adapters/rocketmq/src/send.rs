//! SendMessage and RecallMessage.
//!
//! Each message becomes one `SendInput` of the topic's queue: its tag the one tag, its
//! message group the FIFO group, a `delivery_timestamp` a scheduled delivery
//! (`Delay::At`, converted from the client's wall clock to queue time), and its id, keys,
//! user properties, born time and host the attributes (`wire::Attributes`). The node
//! routes the batch and answers once it is durable. A scheduled message's recall handle
//! names its partition and id, which RecallMessage hands to the node's cancel. A
//! TRANSACTION message is a half message (`Delay::Half`) whose transaction id names its
//! partition and id, which EndTransaction hands to the node's `end_transaction`.

use bytes::Bytes;
use prost_types::Timestamp;
use sluice_core::engine::types::{Delay, QueueMode, SendInput};
use sluice_core::limits::ENGINE_DELAY_MS_CEILING;
use sluice_node::{Node, QueueView};

use crate::limits::{
    BODY_BYTES_MAX, NAME_BYTES_MAX, PROPERTIES_PER_MESSAGE_MAX, SEND_MESSAGES_MAX,
    TRANSACTION_CHECK_AFTER_MS_DEFAULT,
};
use crate::proto::{
    Code, Encoding, Message, MessageType, RecallMessageRequest, RecallMessageResponse,
    SendMessageRequest, SendMessageResponse, SendResultEntry, SystemProperties,
};
use crate::route::accepted_types;
use crate::service::{framed, ok, refusal_of, Call, Refusal};
use crate::wire::{message_ref_decode, message_ref_encode, Attributes};

/// Bytes of a message id a client may set (the client's own ids have 34).
const MESSAGE_ID_BYTES_MAX: usize = 128;
/// Above this, a `delivery_timestamp`'s seconds are read as milliseconds (some client code
/// puts milliseconds there; 1e11 seconds is the year 5138).
const SECONDS_CEILING: i64 = 100_000_000_000;
/// Characters of the partition-and-id part of a recall handle.
const MESSAGE_REF_CHARS: usize = 20;

pub(crate) async fn send_message<N: Node>(
    call: &Call<'_, N>,
    request: SendMessageRequest,
) -> Result<Vec<Bytes>, Refusal> {
    let count = request.messages.len();
    if count == 0 || count > SEND_MESSAGES_MAX {
        return Err(Refusal::new(
            Code::BadRequest,
            format!("a send carries 1 to {SEND_MESSAGES_MAX} messages; this one {count}"),
        ));
    }
    let first_topic = request.messages[0].topic.as_ref();
    let view = call.topic(first_topic).await?;
    let queue_ms = call.node.now_ms();
    let wall_ms = call.node.wall_ms();
    let mut inputs = Vec::with_capacity(count);
    let mut kinds = Vec::with_capacity(count);
    for message in &request.messages {
        let topic = message
            .topic
            .as_ref()
            .map_or("", |topic| topic.name.as_str());
        if topic != &*view.name {
            return Err(Refusal::new(
                Code::BadRequest,
                "every message of a send must have the same topic",
            ));
        }
        let (input, kind, id) = send_input(&view, message, queue_ms, wall_ms)?;
        inputs.push(input);
        kinds.push((kind, id));
    }
    let outcomes = call.node.send(view.id, inputs).await.map_err(refusal_of)?;
    assert_eq!(outcomes.len(), kinds.len(), "one outcome per message");
    let entries = outcomes
        .iter()
        .zip(kinds)
        .map(|(outcome, (kind, id))| {
            let reference = message_ref_encode(outcome.partition, outcome.item.message_id);
            let recall_handle = if kind == MessageType::Delay {
                format!("{reference}{id}")
            } else {
                String::new()
            };
            // A transaction is named by its half message's partition and id.
            let transaction_id = if kind == MessageType::Transaction {
                reference.clone()
            } else {
                String::new()
            };
            SendResultEntry {
                status: ok(),
                message_id: if id.is_empty() { reference } else { id },
                transaction_id,
                offset: i64::try_from(outcome.item.message_id.0).unwrap_or(i64::MAX),
                recall_handle,
            }
        })
        .collect();
    Ok(framed(&SendMessageResponse {
        status: ok(),
        entries,
    }))
}

/// A name the client set (tag, key, message group, property): 1 to [`NAME_BYTES_MAX`]
/// bytes.
fn check_name(text: &str, code: Code, what: &str) -> Result<(), Refusal> {
    if text.is_empty() || text.len() > NAME_BYTES_MAX {
        return Err(Refusal::new(
            code,
            format!("a {what} of 1 to {NAME_BYTES_MAX} bytes is required"),
        ));
    }
    Ok(())
}

/// One message as the node's input, its type, and the id the client gave it.
fn send_input(
    view: &QueueView,
    message: &Message,
    queue_ms: u64,
    wall_ms: u64,
) -> Result<(SendInput, MessageType, String), Refusal> {
    let properties = message.system_properties.clone().unwrap_or_default();
    send_input_body(message)?;
    let (kind, delay, fifo_group) = send_input_kind(&properties, queue_ms, wall_ms)?;
    if !accepted_types(view).contains(&(kind as i32)) {
        let mode = match view.config.mode {
            QueueMode::Fifo(_) => "FIFO",
            QueueMode::Normal => "NORMAL",
        };
        return Err(Refusal::new(
            Code::MessagePropertyConflictWithType,
            format!(
                "topic {} is a {mode} queue and does not take {} messages",
                view.name,
                kind.as_str_name()
            ),
        ));
    }
    let (tags, user) = send_input_properties(&properties, message)?;
    if properties.message_id.len() > MESSAGE_ID_BYTES_MAX {
        return Err(Refusal::new(
            Code::IllegalMessageId,
            format!("a message id may have at most {MESSAGE_ID_BYTES_MAX} bytes"),
        ));
    }
    // A GZIP body is stored as sent and delivered as GZIP: the consumer decompresses it.
    let body_encoding = match Encoding::try_from(properties.body_encoding) {
        Ok(Encoding::Gzip) => Encoding::Gzip as i32,
        Ok(Encoding::Identity | Encoding::Unspecified) => Encoding::Identity as i32,
        Err(_) => {
            return Err(Refusal::new(
                Code::BadRequest,
                "the body encoding must be IDENTITY or GZIP",
            ))
        }
    };
    let attributes = Attributes {
        message_id: properties.message_id.clone(),
        message_type: kind as i32,
        body_encoding,
        born_ms: properties.born_timestamp.as_ref().map_or(0, timestamp_ms),
        born_host: properties.born_host.chars().take(NAME_BYTES_MAX).collect(),
        keys: properties.keys.clone(),
        properties: user,
    };
    let input = SendInput {
        body: message.body.to_vec(),
        attributes: attributes.encode(),
        tags,
        fifo_group,
        delay,
        dedup_id: None,
    };
    Ok((input, kind, properties.message_id))
}

/// A body of 1 to [`BODY_BYTES_MAX`] bytes.
fn send_input_body(message: &Message) -> Result<(), Refusal> {
    if message.body.is_empty() {
        return Err(Refusal::new(
            Code::MessageBodyEmpty,
            "the message body is empty",
        ));
    }
    if message.body.len() > usize::try_from(BODY_BYTES_MAX).expect("fits usize") {
        return Err(Refusal::new(
            Code::MessageBodyTooLarge,
            format!(
                "the message body has {} bytes; at most {BODY_BYTES_MAX} are allowed",
                message.body.len()
            ),
        ));
    }
    Ok(())
}

/// The message's type with what it makes of the message: its delay and FIFO group. A
/// message group makes a FIFO message, a delivery time a DELAY one; neither goes with
/// another type.
fn send_input_kind(
    properties: &SystemProperties,
    queue_ms: u64,
    wall_ms: u64,
) -> Result<(MessageType, Delay, Option<String>), Refusal> {
    let kind = MessageType::try_from(properties.message_type).unwrap_or(MessageType::Unspecified);
    let plain = properties.message_group.is_none() && properties.delivery_timestamp.is_none();
    Ok(match kind {
        MessageType::Normal | MessageType::Unspecified if plain => {
            (MessageType::Normal, Delay::None, None)
        }
        MessageType::Fifo => {
            let group = properties.message_group.clone().unwrap_or_default();
            check_name(&group, Code::IllegalMessageGroup, "message group")?;
            (MessageType::Fifo, Delay::None, Some(group))
        }
        MessageType::Delay => {
            let at = properties.delivery_timestamp.as_ref().ok_or_else(|| {
                Refusal::new(
                    Code::IllegalDeliveryTime,
                    "a DELAY message needs a delivery timestamp",
                )
            })?;
            (MessageType::Delay, delay_of(at, queue_ms, wall_ms)?, None)
        }
        MessageType::Transaction if plain => {
            let check_after_ms = properties
                .orphaned_transaction_recovery_duration
                .as_ref()
                .map_or(TRANSACTION_CHECK_AFTER_MS_DEFAULT, |duration| {
                    let seconds = u64::try_from(duration.seconds).unwrap_or(0);
                    seconds.saturating_mul(1000).min(ENGINE_DELAY_MS_CEILING)
                });
            let delay = Delay::Half { check_after_ms };
            (MessageType::Transaction, delay, None)
        }
        _ => {
            return Err(Refusal::new(
                Code::MessagePropertyConflictWithType,
                "the message's properties do not fit its type",
            ))
        }
    })
}

/// A message's user properties: name and value.
type UserProperties = Vec<(String, String)>;

/// The message's tag (at most one, without `|`) and its user properties, sorted by name,
/// with its keys checked: names of 1 to [`NAME_BYTES_MAX`] bytes, at most
/// [`PROPERTIES_PER_MESSAGE_MAX`] keys and properties together.
fn send_input_properties(
    properties: &SystemProperties,
    message: &Message,
) -> Result<(Vec<String>, UserProperties), Refusal> {
    let mut tags = Vec::new();
    if let Some(tag) = &properties.tag {
        check_name(tag, Code::IllegalMessageTag, "tag")?;
        if tag.contains('|') {
            return Err(Refusal::new(
                Code::IllegalMessageTag,
                "a tag may not contain '|'",
            ));
        }
        tags.push(tag.clone());
    }
    if properties.keys.len() + message.user_properties.len() > PROPERTIES_PER_MESSAGE_MAX {
        return Err(Refusal::new(
            Code::MessagePropertiesTooLarge,
            format!("at most {PROPERTIES_PER_MESSAGE_MAX} keys and properties are allowed"),
        ));
    }
    for key in &properties.keys {
        check_name(key, Code::IllegalMessageKey, "key")?;
    }
    let mut user: Vec<(String, String)> = message
        .user_properties
        .iter()
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect();
    user.sort();
    for (name, value) in &user {
        check_name(name, Code::IllegalMessagePropertyKey, "property name")?;
        if value.len() > NAME_BYTES_MAX {
            return Err(Refusal::new(
                Code::MessagePropertiesTooLarge,
                format!("a property value may have at most {NAME_BYTES_MAX} bytes"),
            ));
        }
    }
    Ok((tags, user))
}

/// Epoch milliseconds of a timestamp (0 before the epoch).
pub(crate) fn timestamp_ms(timestamp: &Timestamp) -> u64 {
    let seconds = u64::try_from(timestamp.seconds).unwrap_or(0);
    let nanos = u64::try_from(timestamp.nanos).unwrap_or(0);
    seconds
        .saturating_mul(1000)
        .saturating_add(nanos / 1_000_000)
}

/// A delivery time on the client's wall clock as a delay on queue time: the difference of
/// the two clocks now carries over, so a time now or past is no delay.
fn delay_of(at: &Timestamp, queue_ms: u64, wall_ms: u64) -> Result<Delay, Refusal> {
    let at_ms = if at.seconds > SECONDS_CEILING {
        u64::try_from(at.seconds).unwrap_or(u64::MAX)
    } else {
        timestamp_ms(at)
    };
    let ahead_ms = at_ms.saturating_sub(wall_ms);
    if ahead_ms > ENGINE_DELAY_MS_CEILING {
        return Err(Refusal::new(
            Code::IllegalDeliveryTime,
            format!("the delivery time is {ahead_ms} ms ahead; at most {ENGINE_DELAY_MS_CEILING} ms are allowed"),
        ));
    }
    Ok(Delay::At(sluice_core::clock::queue_time_of(
        at_ms, queue_ms, wall_ms,
    )))
}

pub(crate) async fn recall_message<N: Node>(
    call: &Call<'_, N>,
    request: RecallMessageRequest,
) -> Result<Vec<Bytes>, Refusal> {
    let view = call.topic(request.topic.as_ref()).await?;
    let handle = request.recall_handle.as_str();
    let parsed = handle
        .get(..MESSAGE_REF_CHARS)
        .and_then(message_ref_decode)
        .zip(handle.get(MESSAGE_REF_CHARS..));
    let Some(((partition, message), id)) = parsed else {
        return Err(Refusal::new(
            Code::BadRequest,
            "the recall handle is not valid",
        ));
    };
    call.node
        .cancel(view.id, partition, message)
        .await
        .map_err(refusal_of)?;
    let message_id = if id.is_empty() {
        message_ref_encode(partition, message)
    } else {
        id.to_string()
    };
    Ok(framed(&RecallMessageResponse {
        status: ok(),
        message_id,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The delay a delivery time gives with the node's clocks at `queue_ms` and `wall_ms`.
    fn check(seconds: i64, queue_ms: u64, wall_ms: u64) -> Result<Delay, Code> {
        let at = Timestamp { seconds, nanos: 0 };
        delay_of(&at, queue_ms, wall_ms).map_err(|refusal| refusal.code)
    }

    #[test]
    fn delivery_times_become_queue_time() {
        assert_eq!(check(1_000, 500_000, 990_000), Ok(Delay::At(510_000)));
        assert_eq!(check(1_000, 500_000, 1_010_000), Ok(Delay::At(490_000)));
        // Milliseconds in the seconds field.
        assert_eq!(
            check(1_800_000_000_000, 5, 1_799_999_999_000),
            Ok(Delay::At(1_005))
        );
        assert_eq!(check(i64::MAX / 2000, 0, 0), Err(Code::IllegalDeliveryTime));
    }
}
