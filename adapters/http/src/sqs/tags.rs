//! Queue tags: TagQueue, UntagQueue, ListQueueTags and CreateQueue's `tags`. They are
//! the queue's tags that the DMS API shows too ([`QueueMeta::tags`]), by the one rule set
//! of [`crate::queue_meta::tags`] (a refusal is InvalidParameterValue), changed through
//! [`queue_meta::update`] (a bounded compare-and-set on the queue's fields).

use serde_json::{Map, Value};
use sluice_node::Node;

use super::queues::queue_of;
use super::{Ctx, SqsError};
use crate::queue_meta::tags::{self as rules, Action, QUEUE_TAGS_MAX};
use crate::queue_meta::{self, QueueMeta, QueueTag};

/// A map member of tags (`{"key": "value"}`) as checked (key, value) pairs; none when
/// absent; `required` makes absence MissingParameter.
fn tag_map(
    input: &Map<String, Value>,
    member: &str,
    required: bool,
) -> Result<Vec<(String, Option<String>)>, SqsError> {
    let given = match input.get(member) {
        None | Some(Value::Null) if required => {
            return Err(SqsError::missing_parameter(member));
        }
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Object(given)) => given,
        Some(_) => {
            return Err(SqsError::invalid_parameter(format!(
                "{member} must be a map of tag keys to values."
            )))
        }
    };
    if given.len() > QUEUE_TAGS_MAX {
        return Err(SqsError::invalid_parameter(format!(
            "A queue carries at most {QUEUE_TAGS_MAX} tags; {member} has {}.",
            given.len()
        )));
    }
    let mut tags = Vec::with_capacity(given.len());
    for (key, value) in given {
        rules::check_key("Tag key", key)?;
        let Value::String(value) = value else {
            return Err(SqsError::invalid_parameter(format!(
                "The value of tag {key} must be a string."
            )));
        };
        rules::check_value("Tag value", value)?;
        tags.push((key.clone(), Some(value.clone())));
    }
    Ok(tags)
}

/// CreateQueue's `tags`, sorted by key (none when absent).
pub(super) fn initial(input: &Map<String, Value>) -> Result<Vec<QueueTag>, SqsError> {
    let tags = tag_map(input, "tags", false)?;
    Ok(rules::apply(&[], Action::Create, &tags)?)
}

/// Applies a tag change to the queue `input`'s `QueueUrl` names.
async fn change<N: Node>(
    ctx: &Ctx<'_, N>,
    input: &Map<String, Value>,
    action: Action,
    tags: &[(String, Option<String>)],
) -> Result<Map<String, Value>, SqsError> {
    queue_meta::update(
        ctx.node,
        async || queue_of(ctx, input).await,
        |_, meta| {
            meta.tags = rules::apply(&meta.tags, action, tags)?;
            Ok::<_, SqsError>(())
        },
    )
    .await?;
    Ok(Map::new())
}

/// TagQueue: `Tags` added; a key the queue has takes the new value.
pub(super) async fn tag<N: Node>(
    ctx: &Ctx<'_, N>,
    input: &Map<String, Value>,
) -> Result<Map<String, Value>, SqsError> {
    let tags = tag_map(input, "Tags", true)?;
    change(ctx, input, Action::Create, &tags).await
}

/// UntagQueue: the tags of `TagKeys` removed; a key the queue lacks is no error.
pub(super) async fn untag<N: Node>(
    ctx: &Ctx<'_, N>,
    input: &Map<String, Value>,
) -> Result<Map<String, Value>, SqsError> {
    let keys = match input.get("TagKeys") {
        None | Some(Value::Null) => return Err(SqsError::missing_parameter("TagKeys")),
        Some(Value::Array(keys)) => keys,
        Some(_) => {
            return Err(SqsError::invalid_parameter(
                "TagKeys must be a list of tag keys.",
            ))
        }
    };
    if keys.len() > QUEUE_TAGS_MAX {
        return Err(SqsError::invalid_parameter(format!(
            "A queue carries at most {QUEUE_TAGS_MAX} tags; TagKeys has {}.",
            keys.len()
        )));
    }
    let mut tags = Vec::with_capacity(keys.len());
    for key in keys {
        let Value::String(key) = key else {
            return Err(SqsError::invalid_parameter("A tag key must be a string."));
        };
        rules::check_key("Tag key", key)?;
        tags.push((key.clone(), None));
    }
    change(ctx, input, Action::Delete, &tags).await
}

/// ListQueueTags: `Tags`, a map of the queue's tags (absent when it has none).
pub(super) async fn list<N: Node>(
    ctx: &Ctx<'_, N>,
    input: &Map<String, Value>,
) -> Result<Map<String, Value>, SqsError> {
    let view = queue_of(ctx, input).await?;
    let tags: Map<String, Value> = QueueMeta::of(&view)
        .tags
        .into_iter()
        .map(|tag| (tag.key, Value::String(tag.value)))
        .collect();
    let mut answer = Map::new();
    if !tags.is_empty() {
        answer.insert("Tags".into(), Value::Object(tags));
    }
    Ok(answer)
}
