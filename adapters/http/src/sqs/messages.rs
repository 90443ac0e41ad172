//! Message operations: SendMessage(Batch), ReceiveMessage, DeleteMessage(Batch); message
//! attributes and their MD5 digests, computed as SQS computes them.

use base64::Engine as _;
use md5::{Digest, Md5};
use serde_json::{Map, Value};
use sluice_core::engine::types::{AckKind, Delay, Delivery, SendInput};
use sluice_core::engine::ReceiveRequest;
use sluice_node::routing::Routed;
use sluice_node::{Lane, Node, QueueView};

use super::queues::{group_of, queue_of, Attributes, SCOPE_QUEUE};
use super::{integer, required, string, Ctx, SqsError, ATTRIBUTES_MARK, ATTRIBUTES_MARK_DEDUP};
use crate::dms::ids;

/// Entries of one batch request, at most (SQS's limit).
const BATCH_ENTRIES_MAX: usize = 10;
/// Characters of a `MessageGroupId` or `MessageDeduplicationId`, at most.
const TOKEN_BYTES_MAX: usize = 128;
/// Message attributes of one message, at most (SQS's limit).
const MESSAGE_ATTRIBUTES_MAX: usize = 10;
/// Bytes of a batch's bodies and attributes together, at most (SQS's limit).
const BATCH_BYTES_MAX: usize = 262_144;
/// Bytes of an attribute name, at most.
const ATTRIBUTE_NAME_BYTES_MAX: usize = 256;
/// Messages one ReceiveMessage answers, at most.
const RECEIVE_MAX: i64 = 10;
/// Seconds a ReceiveMessage long-polls, at most.
const WAIT_S_MAX: i64 = 20;
/// Seconds of visibility, at most (12 hours).
const VISIBILITY_S_MAX: i64 = 43_200;

fn md5_hex(bytes: &[u8]) -> String {
    hex::encode(Md5::digest(bytes))
}

/// One message attribute as the JSON protocol carries it.
struct MessageAttribute<'a> {
    name: &'a str,
    data_type: &'a str,
    /// The string value, or the decoded binary one.
    value: Vec<u8>,
    binary: bool,
}

/// A request's `MessageAttributes` map, if it has one.
fn given_attributes(input: &Map<String, Value>) -> Result<Option<&Map<String, Value>>, SqsError> {
    match input.get("MessageAttributes") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(given)) => Ok(Some(given)),
        Some(_) => Err(SqsError::invalid_parameter(
            "MessageAttributes must be a map.",
        )),
    }
}

/// Checks message attributes (a `MessageAttributes` map), sorted by name.
fn message_attributes(given: &Map<String, Value>) -> Result<Vec<MessageAttribute<'_>>, SqsError> {
    if given.len() > MESSAGE_ATTRIBUTES_MAX {
        return Err(SqsError::invalid_parameter(format!(
            "Number of message attributes [{}] exceeds the allowed maximum [{MESSAGE_ATTRIBUTES_MAX}].",
            given.len()
        )));
    }
    let mut attributes = Vec::with_capacity(given.len());
    for (name, value) in given {
        let valid_name = !name.is_empty()
            && name.len() <= ATTRIBUTE_NAME_BYTES_MAX
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            && !name.starts_with('.')
            && !name.ends_with('.')
            && !name.contains("..")
            && !name.to_ascii_lowercase().starts_with("aws.")
            && !name.to_ascii_lowercase().starts_with("amazon.");
        if !valid_name {
            return Err(SqsError::invalid_parameter(format!(
                "Message attribute name '{name}' is invalid."
            )));
        }
        let Value::Object(value) = value else {
            return Err(SqsError::invalid_parameter(format!(
                "The message attribute '{name}' must be a map."
            )));
        };
        let data_type = required(value, "DataType")?;
        let base = data_type.split('.').next().unwrap_or_default();
        let (value, binary) = match base {
            "String" | "Number" => (required(value, "StringValue")?.as_bytes().to_vec(), false),
            "Binary" => {
                let text = required(value, "BinaryValue")?;
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(text)
                    .map_err(|_| {
                        SqsError::invalid_parameter(format!(
                            "The message attribute '{name}' has an invalid binary value."
                        ))
                    })?;
                (bytes, true)
            }
            _ => {
                return Err(SqsError::invalid_parameter(format!(
                    "The message attribute '{name}' has an invalid message attribute type, the set of supported type prefixes is Binary, Number, and String."
                )))
            }
        };
        if value.is_empty() {
            return Err(SqsError::invalid_parameter(format!(
                "The message attribute '{name}' must contain a non-empty value of message attribute type '{data_type}'."
            )));
        }
        attributes.push(MessageAttribute {
            name,
            data_type,
            value,
            binary,
        });
    }
    attributes.sort_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
    Ok(attributes)
}

/// SQS's MD5 of message attributes: over the attributes sorted by name, each as its
/// name, its data type (each a 4-byte big-endian length and the bytes), a transport
/// byte (1 string, 2 binary) and its value (length and bytes).
fn attributes_md5(attributes: &[MessageAttribute<'_>]) -> String {
    let mut bytes = Vec::new();
    for attribute in attributes {
        push_field(&mut bytes, attribute.name.as_bytes());
        push_field(&mut bytes, attribute.data_type.as_bytes());
        bytes.push(if attribute.binary { 2 } else { 1 });
        push_field(&mut bytes, &attribute.value);
    }
    md5_hex(&bytes)
}

fn push_field(bytes: &mut Vec<u8>, field: &[u8]) {
    bytes.extend_from_slice(&u32::try_from(field.len()).expect("bounded").to_be_bytes());
    bytes.extend_from_slice(field);
}

/// The stored form of a message's SQS fields: with a deduplication id, the mark of
/// format 2 and `{"attributes": {...}, "dedup": ID}`; else, with message attributes, the
/// mark of format 1 and their JSON as received; nothing for neither.
fn stored_attributes(given: Option<&Map<String, Value>>, dedup_id: Option<&str>) -> Vec<u8> {
    let given = given.filter(|map| !map.is_empty());
    let (mark, json) = match (given, dedup_id) {
        (given, Some(dedup_id)) => (
            ATTRIBUTES_MARK_DEDUP,
            serde_json::json!({"attributes": given.cloned().unwrap_or_default(), "dedup": dedup_id}),
        ),
        (Some(map), None) => (ATTRIBUTES_MARK, Value::Object(map.clone())),
        (None, None) => return Vec::new(),
    };
    let mut bytes = mark.to_vec();
    bytes.extend_from_slice(json.to_string().as_bytes());
    bytes
}

/// A delivered message's SQS fields: its message attributes and deduplication id.
fn delivered_fields(delivery: &Delivery) -> (Option<Map<String, Value>>, Option<String>) {
    let attributes = &delivery.attributes;
    let parsed = |json: &[u8]| match serde_json::from_slice(json) {
        Ok(Value::Object(map)) => Some(map),
        _ => None,
    };
    if let Some(json) = attributes.strip_prefix(ATTRIBUTES_MARK) {
        return (parsed(json), None);
    }
    let Some(mut fields) = attributes
        .strip_prefix(ATTRIBUTES_MARK_DEDUP)
        .and_then(parsed)
    else {
        return (None, None);
    };
    let dedup_id = match fields.remove("dedup") {
        Some(Value::String(id)) => Some(id),
        _ => None,
    };
    match fields.remove("attributes") {
        Some(Value::Object(map)) if !map.is_empty() => (Some(map), dedup_id),
        _ => (None, dedup_id),
    }
}

/// One message to send and the digests its answer carries.
struct Prepared {
    input: SendInput,
    body_md5: String,
    attributes_md5: Option<String>,
}

/// Checks one message to send to a queue of attributes `queue`.
fn prepare(queue: &Attributes, input: &Map<String, Value>) -> Result<Prepared, SqsError> {
    let body = required(input, "MessageBody")?;
    if body.is_empty() {
        return Err(SqsError::missing_parameter("MessageBody"));
    }
    let given = given_attributes(input)?;
    let attributes = match given {
        Some(given) => message_attributes(given)?,
        None => Vec::new(),
    };
    let size = body.len()
        + attributes
            .iter()
            .map(|a| a.name.len() + a.data_type.len() + a.value.len())
            .sum::<usize>();
    let size_max = usize::try_from(queue.number("MaximumMessageSize")).unwrap_or(262_144);
    if size > size_max {
        return Err(SqsError::invalid_parameter(format!(
            "One or more parameters are invalid. Reason: Message must be shorter than {size_max} bytes."
        )));
    }
    let fifo = queue.flag("FifoQueue");
    let group = string(input, "MessageGroupId")?;
    let dedup = string(input, "MessageDeduplicationId")?;
    let delay_s = integer(input, "DelaySeconds", 0, 900)?;
    if fifo {
        if group.is_none() {
            return Err(SqsError::missing_parameter("MessageGroupId"));
        }
        if delay_s.is_some_and(|d| d > 0) {
            return Err(SqsError::invalid_parameter(
                "Value for parameter DelaySeconds is invalid. Reason: The request include parameter that is not valid for this queue type.",
            ));
        }
    } else if dedup.is_some() {
        return Err(SqsError::invalid_parameter(
            "The request include parameter MessageDeduplicationId that is not valid for this queue type.",
        ));
    }
    for (name, token) in [("MessageGroupId", group), ("MessageDeduplicationId", dedup)] {
        if let Some(token) = token {
            check_token(name, token)?;
        }
    }
    let dedup_id = match (fifo, dedup) {
        (true, Some(id)) => Some(id.to_string()),
        (true, None) if queue.flag("ContentBasedDeduplication") => {
            Some(crate::auth::canonical::sha256_hex(body.as_bytes()))
        }
        (true, None) => {
            return Err(SqsError::invalid_parameter(
                "The queue should either have ContentBasedDeduplication enabled or MessageDeduplicationId provided explicitly",
            ))
        }
        (false, _) => None,
    };
    let stored = stored_attributes(given, dedup_id.as_deref());
    // The engine deduplicates within a partition. A queue-wide scope is one partition
    // (`queues::fifo_partitions`); a per-group scope keys the id by its group, as groups
    // share partitions.
    let dedup_id = match (dedup_id, group) {
        (Some(id), Some(group)) if queue.text("DeduplicationScope") != SCOPE_QUEUE => {
            Some(format!("{group}\n{id}"))
        }
        (id, _) => id,
    };
    let delay_s = delay_s.unwrap_or_else(|| queue.number("DelaySeconds"));
    let delay = if delay_s > 0 {
        Delay::Ms(u64::try_from(delay_s).expect("not negative") * 1000)
    } else {
        Delay::None
    };
    Ok(Prepared {
        input: SendInput {
            body: body.as_bytes().to_vec(),
            attributes: stored,
            tags: Vec::new(),
            fifo_group: group.map(str::to_string),
            delay,
            dedup_id,
        },
        body_md5: md5_hex(body.as_bytes()),
        attributes_md5: (!attributes.is_empty()).then(|| attributes_md5(&attributes)),
    })
}

/// `MessageGroupId` and `MessageDeduplicationId`: 1 to 128 characters, each a letter,
/// digit or punctuation (printable ASCII but the space), as SQS takes them.
fn check_token(name: &str, token: &str) -> Result<(), SqsError> {
    if (1..=TOKEN_BYTES_MAX).contains(&token.len()) && token.bytes().all(|b| b.is_ascii_graphic()) {
        Ok(())
    } else {
        Err(SqsError::invalid_parameter(format!(
            "Value {token:?} for parameter {name} is invalid. Reason: 1 to 128 letters, digits or punctuation."
        )))
    }
}

fn sent_answer(
    prepared: &Prepared,
    sent: &Routed<sluice_core::engine::types::SendOutcome>,
    fifo: bool,
) -> Map<String, Value> {
    let mut answer = Map::new();
    answer.insert(
        "MessageId".into(),
        Value::String(ids::message_id_encode(sent.partition, sent.item.message_id)),
    );
    answer.insert(
        "MD5OfMessageBody".into(),
        Value::String(prepared.body_md5.clone()),
    );
    if let Some(md5) = &prepared.attributes_md5 {
        answer.insert("MD5OfMessageAttributes".into(), Value::String(md5.clone()));
    }
    if fifo {
        answer.insert(
            "SequenceNumber".into(),
            Value::String(sequence_number(sent.partition, sent.item.message_id.0)),
        );
    }
    answer
}

/// A FIFO message's SequenceNumber: its partition and log offset as one decimal.
fn sequence_number(partition: u16, offset: u64) -> String {
    format!("{}{:020}", partition, offset)
}

pub(super) async fn send<N: Node>(
    ctx: &Ctx<'_, N>,
    input: &Map<String, Value>,
) -> Result<Map<String, Value>, SqsError> {
    let view = queue_of(ctx, input).await?;
    let queue = Attributes::of(&view);
    let prepared = prepare(&queue, input)?;
    let sent = ctx.node.send(view.id, vec![prepared.input.clone()]).await?;
    Ok(sent_answer(&prepared, &sent[0], queue.flag("FifoQueue")))
}

/// A batch's entries, checked for count and distinct ids.
fn entries(input: &Map<String, Value>) -> Result<Vec<&Map<String, Value>>, SqsError> {
    let Some(Value::Array(entries)) = input.get("Entries") else {
        return Err(SqsError::missing_parameter("Entries"));
    };
    if entries.is_empty() {
        return Err(SqsError::invalid_parameter(
            "There should be at least one entry in the request.",
        ));
    }
    if entries.len() > BATCH_ENTRIES_MAX {
        return Err(SqsError::too_many_entries());
    }
    let mut ids: Vec<&str> = Vec::with_capacity(entries.len());
    let mut maps = Vec::with_capacity(entries.len());
    for entry in entries {
        let Value::Object(entry) = entry else {
            return Err(SqsError::invalid_parameter("Each entry must be a map."));
        };
        let id = required(entry, "Id")?;
        let valid = !id.is_empty()
            && id.len() <= 80
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !valid {
            return Err(SqsError::invalid_parameter(format!(
                "A batch entry id can only contain alphanumeric characters, hyphens and underscores. It can be at most 80 letters long: {id}"
            )));
        }
        if ids.contains(&id) {
            return Err(SqsError::invalid_parameter(format!("Id {id} repeated.")));
        }
        ids.push(id);
        maps.push(entry);
    }
    Ok(maps)
}

/// A batch's answer: the entries that succeeded (each its own answer with its `Id`) and
/// those that failed.
fn batch_answer(successful: Vec<Value>, failed: Vec<Value>) -> Map<String, Value> {
    let mut answer = Map::new();
    answer.insert("Successful".into(), Value::Array(successful));
    answer.insert("Failed".into(), Value::Array(failed));
    answer
}

/// A successful batch entry that answers nothing but its `Id`.
fn done(id: &str) -> Value {
    let mut ok = Map::new();
    ok.insert("Id".into(), Value::String(id.to_string()));
    Value::Object(ok)
}

fn failure(id: &str, error: &SqsError) -> Value {
    let mut failed = Map::new();
    failed.insert("Id".into(), Value::String(id.to_string()));
    failed.insert("Code".into(), Value::String(error.name.to_string()));
    failed.insert("Message".into(), Value::String(error.message.clone()));
    failed.insert("SenderFault".into(), Value::Bool(error.sender));
    Value::Object(failed)
}

pub(super) async fn send_batch<N: Node>(
    ctx: &Ctx<'_, N>,
    input: &Map<String, Value>,
) -> Result<Map<String, Value>, SqsError> {
    let view = queue_of(ctx, input).await?;
    let queue = Attributes::of(&view);
    let fifo = queue.flag("FifoQueue");
    let entries = entries(input)?;
    let mut failed = Vec::new();
    let mut ready: Vec<(&str, Prepared)> = Vec::new();
    let mut bytes = 0usize;
    for entry in &entries {
        let id = required(entry, "Id")?;
        bytes += string(entry, "MessageBody")?.map_or(0, str::len);
        match prepare(&queue, entry) {
            Ok(prepared) => ready.push((id, prepared)),
            Err(error) => failed.push(failure(id, &error)),
        }
    }
    if bytes > BATCH_BYTES_MAX {
        return Err(SqsError::invalid_parameter(format!(
            "Batch requests cannot be longer than {BATCH_BYTES_MAX} bytes."
        )));
    }
    let mut successful = Vec::new();
    if !ready.is_empty() {
        let inputs = ready.iter().map(|(_, p)| p.input.clone()).collect();
        let sent = ctx.node.send(view.id, inputs).await?;
        for ((id, prepared), sent) in ready.iter().zip(&sent) {
            let mut answer = sent_answer(prepared, sent, fifo);
            answer.insert("Id".into(), Value::String((*id).to_string()));
            successful.push(Value::Object(answer));
        }
    }
    Ok(batch_answer(successful, failed))
}

/// The names a list member asks for (`All` and `.*` ask for all).
pub(super) fn names(input: &Map<String, Value>, member: &str) -> Result<Vec<String>, SqsError> {
    match input.get(member) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(names)) => names
            .iter()
            .map(|n| n.as_str().map(str::to_string))
            .collect::<Option<_>>()
            .ok_or_else(|| SqsError::invalid_parameter(format!("{member} must be strings."))),
        Some(_) => Err(SqsError::invalid_parameter(format!(
            "{member} must be a list."
        ))),
    }
}

fn asks_for(names: &[String], name: &str) -> bool {
    names.iter().any(|n| {
        n == "All"
            || n == ".*"
            || n == name
            || n.strip_suffix(".*").is_some_and(|prefix| {
                name.starts_with(prefix) && name[prefix.len()..].starts_with('.')
            })
    })
}

pub(super) async fn receive<N: Node>(
    ctx: &Ctx<'_, N>,
    input: &Map<String, Value>,
) -> Result<Map<String, Value>, SqsError> {
    let view = queue_of(ctx, input).await?;
    let queue = Attributes::of(&view);
    let group = group_of(ctx, &view).await?;
    let max = integer(input, "MaxNumberOfMessages", 1, RECEIVE_MAX)?.unwrap_or(1);
    let visibility_s = integer(input, "VisibilityTimeout", 0, VISIBILITY_S_MAX)?
        .unwrap_or_else(|| queue.number("VisibilityTimeout"));
    let wait_s = integer(input, "WaitTimeSeconds", 0, WAIT_S_MAX)?
        .unwrap_or_else(|| queue.number("ReceiveMessageWaitTimeSeconds"));
    let mut system = names(input, "AttributeNames")?;
    system.extend(names(input, "MessageSystemAttributeNames")?);
    let wanted_attributes = names(input, "MessageAttributeNames")?;
    // The engine's shortest visibility is a second: 0 is served as that.
    let visibility_ms = u64::try_from(visibility_s.max(1)).expect("positive") * 1000;
    let fifo = queue.flag("FifoQueue");
    // FIFO queues only, as in SQS: a retry within 5 minutes answers the same messages and
    // receipt handles while they are still in flight (the engine's attempt key).
    let attempt = match string(input, "ReceiveRequestAttemptId")? {
        Some(id) => {
            check_token("ReceiveRequestAttemptId", id)?;
            fifo.then(|| xxhash_rust::xxh3::xxh3_64(id.as_bytes()))
        }
        None => None,
    };
    let request = ReceiveRequest {
        attempt,
        max_messages: u32::try_from(max).expect("bounded"),
        bytes_max: u64::MAX,
        oversize_first: true,
        visibility_ms,
        filter: None,
    };
    let wait_ms = u64::try_from(wait_s).expect("not negative") * 1000;
    let delivered = ctx
        .node
        .receive(view.id, group, Lane::Main, request, wait_ms)
        .await?;
    let messages: Vec<Value> = delivered
        .iter()
        .map(|routed| {
            let delivery = &routed.item;
            let mut message = Map::new();
            message.insert(
                "MessageId".into(),
                Value::String(ids::message_id_encode(
                    routed.partition,
                    delivery.message_id,
                )),
            );
            let handle = Routed {
                partition: routed.partition,
                item: delivery.handle,
            };
            message.insert(
                "ReceiptHandle".into(),
                Value::String(ids::handler_encode(&handle)),
            );
            message.insert("MD5OfBody".into(), Value::String(md5_hex(&delivery.body)));
            message.insert(
                "Body".into(),
                Value::String(String::from_utf8_lossy(&delivery.body).into_owned()),
            );
            let mut attributes = Map::new();
            let mut add = |name: &str, value: String| {
                if asks_for(&system, name) {
                    attributes.insert(name.to_string(), Value::String(value));
                }
            };
            add(
                "ApproximateReceiveCount",
                delivery.delivery_count.to_string(),
            );
            add("SentTimestamp", delivery.sent_ms.to_string());
            add(
                "ApproximateFirstReceiveTimestamp",
                delivery.first_delivered_ms.to_string(),
            );
            let (stored, dedup_id) = delivered_fields(delivery);
            add("SenderId", ctx.tenant.to_string());
            if fifo {
                if let Some(group) = &delivery.fifo_group {
                    add("MessageGroupId", group.clone());
                }
                add(
                    "SequenceNumber",
                    sequence_number(routed.partition, delivery.message_id.0),
                );
                if let Some(dedup_id) = dedup_id {
                    add("MessageDeduplicationId", dedup_id);
                }
            }
            if !attributes.is_empty() {
                message.insert("Attributes".into(), Value::Object(attributes));
            }
            if let Some(stored) = stored {
                let chosen: Map<String, Value> = stored
                    .into_iter()
                    .filter(|(name, _)| asks_for(&wanted_attributes, name))
                    .collect();
                if !chosen.is_empty() {
                    if let Ok(parsed) = message_attributes(&chosen) {
                        message.insert(
                            "MD5OfMessageAttributes".into(),
                            Value::String(attributes_md5(&parsed)),
                        );
                    }
                    message.insert("MessageAttributes".into(), Value::Object(chosen));
                }
            }
            Value::Object(message)
        })
        .collect();
    let mut answer = Map::new();
    if !messages.is_empty() {
        answer.insert("Messages".into(), Value::Array(messages));
    }
    Ok(answer)
}

/// Deletes the messages of `handles` (receipt handle texts) from `view`'s queue: one
/// answer per handle, `Ok` also for a handle whose delivery is over (SQS answers those
/// with success, the message stays), `Err` for one this queue never issued.
async fn delete_handles<N: Node>(
    ctx: &Ctx<'_, N>,
    view: &QueueView,
    handles: &[&str],
) -> Result<Vec<Result<(), SqsError>>, SqsError> {
    let mut answers: Vec<Result<(), SqsError>> = Vec::with_capacity(handles.len());
    let mut acks = Vec::new();
    for text in handles {
        match ids::handler_decode(text) {
            Some(handle) if handle.item.queue == view.id && !handle.item.dead_letter => {
                acks.push((handle, AckKind::Success));
                answers.push(Ok(()));
            }
            _ => answers.push(Err(SqsError::receipt_handle_invalid())),
        }
    }
    // One at a time: the node stops a batch at its first invalid handle, and each of
    // these answers on its own. A delivery that is over (its handle Stale or Unknown)
    // answers success all the same, as SQS does: the ack changed nothing.
    for ack in acks {
        ctx.node.ack(Lane::Main, vec![ack]).await?;
    }
    Ok(answers)
}

pub(super) async fn delete<N: Node>(
    ctx: &Ctx<'_, N>,
    input: &Map<String, Value>,
) -> Result<Map<String, Value>, SqsError> {
    let view = queue_of(ctx, input).await?;
    let handle = required(input, "ReceiptHandle")?;
    let mut answers = delete_handles(ctx, &view, &[handle]).await?;
    answers.remove(0)?;
    Ok(Map::new())
}

pub(super) async fn delete_batch<N: Node>(
    ctx: &Ctx<'_, N>,
    input: &Map<String, Value>,
) -> Result<Map<String, Value>, SqsError> {
    let view = queue_of(ctx, input).await?;
    let entries = entries(input)?;
    let mut ids = Vec::with_capacity(entries.len());
    let mut handles = Vec::with_capacity(entries.len());
    for entry in &entries {
        ids.push(required(entry, "Id")?);
        handles.push(required(entry, "ReceiptHandle")?);
    }
    let answers = delete_handles(ctx, &view, &handles).await?;
    let mut successful = Vec::new();
    let mut failed = Vec::new();
    for (id, answer) in ids.iter().zip(answers) {
        match answer {
            Ok(()) => successful.push(done(id)),
            Err(error) => failed.push(failure(id, &error)),
        }
    }
    Ok(batch_answer(successful, failed))
}

/// Moves the visibility of one delivery of `view`'s queue, by its receipt handle text.
async fn change_one<N: Node>(
    ctx: &Ctx<'_, N>,
    view: &QueueView,
    text: &str,
    visibility_s: i64,
) -> Result<(), SqsError> {
    let handle = ids::handler_decode(text)
        .filter(|h| h.item.queue == view.id && !h.item.dead_letter)
        .ok_or_else(SqsError::receipt_handle_invalid)?;
    let visibility_ms = u64::try_from(visibility_s).expect("checked not negative") * 1000;
    match ctx.node.change_visibility(handle, visibility_ms).await? {
        Ok(()) => Ok(()),
        Err(_) => Err(SqsError::message_not_inflight()),
    }
}

pub(super) async fn change_visibility<N: Node>(
    ctx: &Ctx<'_, N>,
    input: &Map<String, Value>,
) -> Result<Map<String, Value>, SqsError> {
    let view = queue_of(ctx, input).await?;
    let handle = required(input, "ReceiptHandle")?;
    let visibility_s = integer(input, "VisibilityTimeout", 0, VISIBILITY_S_MAX)?
        .ok_or_else(|| SqsError::missing_parameter("VisibilityTimeout"))?;
    change_one(ctx, &view, handle, visibility_s).await?;
    Ok(Map::new())
}

pub(super) async fn change_visibility_batch<N: Node>(
    ctx: &Ctx<'_, N>,
    input: &Map<String, Value>,
) -> Result<Map<String, Value>, SqsError> {
    let view = queue_of(ctx, input).await?;
    let entries = entries(input)?;
    let mut successful = Vec::new();
    let mut failed = Vec::new();
    for entry in &entries {
        let id = required(entry, "Id")?;
        let outcome = match (
            required(entry, "ReceiptHandle"),
            integer(entry, "VisibilityTimeout", 0, VISIBILITY_S_MAX),
        ) {
            (Ok(handle), Ok(Some(visibility_s))) => {
                change_one(ctx, &view, handle, visibility_s).await
            }
            (Err(error), _) | (_, Err(error)) => Err(error),
            (_, Ok(None)) => Err(SqsError::missing_parameter("VisibilityTimeout")),
        };
        match outcome {
            Ok(()) => successful.push(done(id)),
            // The node itself failing fails the request, as for a single change.
            Err(error) if error.status.is_server_error() => return Err(error),
            Err(error) => failed.push(failure(id, &error)),
        }
    }
    Ok(batch_answer(successful, failed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attribute_digests_follow_sqs_encoding() {
        // One string attribute: 4-byte lengths before name, type and value, a bare
        // transport byte 1 between type and value.
        let input: Map<String, Value> = serde_json::from_str(
            r#"{"MessageAttributes": {"k": {"DataType": "String", "StringValue": "v"}}}"#,
        )
        .unwrap();
        let given = given_attributes(&input).unwrap().unwrap();
        let parsed = message_attributes(given).unwrap();
        let mut expected = Vec::new();
        expected.extend_from_slice(&[0, 0, 0, 1, b'k']);
        expected.extend_from_slice(&[0, 0, 0, 6]);
        expected.extend_from_slice(b"String");
        expected.push(1);
        expected.extend_from_slice(&[0, 0, 0, 1, b'v']);
        assert_eq!(attributes_md5(&parsed), md5_hex(&expected));
    }
}
