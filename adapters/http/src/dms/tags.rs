//! Queue tags (docs/dms-api.md §2 row 14, `/v2` only): key/value pairs on a queue, as
//! huaweicloudsdkdms calls them: batch create and delete (`queue/{id}/tags/action`), a
//! queue's tags (`queue/{id}/tags`) and the project's tags (`queue/tags`); and the Sluice
//! extensions: tags at queue create, deleting one tag (`DELETE queue/{id}/tags/{key}`),
//! and the queue list filtered by tag (`tag_key`, `tag_value`).
//!
//! Tags live in the queue's adapter fields ([`QueueMeta::tags`], the node's
//! `QueueView::meta`), the same tags the SQS API shows; they are set at create and
//! changed through [`queue_meta::update`] (a bounded compare-and-set). Their rules
//! (lengths, characters, the count per queue) are [`queue_meta::tags`], shared with the
//! SQS adapter; the request's shape and its limit of tags named are this API's.

use std::collections::{BTreeMap, BTreeSet};

use http::StatusCode;
use serde_json::value::RawValue;

use super::errors::{DmsError, INVALID_TAG};
use super::request::{field, object, raw_array, raw_object, Object, Query};
use super::wire::{ProjectTag, ProjectTags, QueueMeta, QueueTag, QueueTags};
use super::{Ctx, Reply};
use crate::queue_meta;
use crate::queue_meta::tags::{self as rules, Action, TagError};
use sluice_node::{Node, QueueView};

/// Tags one create or delete request may name.
pub const TAGS_PER_REQUEST_MAX: usize = 20;

impl From<TagError> for DmsError {
    fn from(error: TagError) -> DmsError {
        DmsError::bad(INVALID_TAG, error.0)
    }
}

/// `GET /v2/{p}/queue/tags`: every key the project's queues carry, with its values.
pub(super) fn project<N: Node>(ctx: &Ctx<'_, N>) -> Result<Reply, DmsError> {
    let mut keys: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for view in ctx.node.queues_of(ctx.tenant) {
        for tag in QueueMeta::of(&view).tags {
            keys.entry(tag.key).or_default().insert(tag.value);
        }
    }
    let tags = keys
        .into_iter()
        .map(|(key, values)| ProjectTag {
            key,
            values: values.into_iter().collect(),
        })
        .collect();
    Ok(Reply::json(StatusCode::OK, &ProjectTags { tags }))
}

/// `GET /v2/{p}/queue/{queue_id}/tags`.
pub(super) fn list(view: &QueueView) -> Result<Reply, DmsError> {
    let tags = QueueMeta::of(view).tags;
    Ok(Reply::json(StatusCode::OK, &QueueTags { tags }))
}

/// `POST /v2/{p}/queue/{queue_id}/tags/action`: `{"action": "create" | "delete",
/// "tags": [{"key", "value"}, ...]}`, answered 204.
pub(super) async fn action<N: Node>(ctx: &Ctx<'_, N>, queue: &str) -> Result<Reply, DmsError> {
    let body = object(ctx.body)?;
    let action: Option<String> = field(&body, "action", "create or delete")?;
    let action = match action.as_deref() {
        Some("create") => Action::Create,
        Some("delete") => Action::Delete,
        _ => {
            return Err(DmsError::parameter(
                "The field action must be create or delete (lower case).",
            ))
        }
    };
    let entries = body
        .get("tags")
        .and_then(|raw| raw_array(raw))
        .filter(|entries| !entries.is_empty())
        .ok_or_else(|| {
            DmsError::parameter("The field tags must be an array of 1 or more {key, value}.")
        })?;
    let tags = parse_tags(&entries, action == Action::Create)?;
    change(ctx, queue, |current| {
        Ok(rules::apply(current, action, &tags)?)
    })
    .await
}

/// `DELETE /v2/{p}/queue/{queue_id}/tags/{key}` (Sluice extension), answered 204; a key
/// the queue lacks is no error, as in a batch delete.
pub(super) async fn delete_one<N: Node>(
    ctx: &Ctx<'_, N>,
    queue: &str,
    key: &str,
) -> Result<Reply, DmsError> {
    let key = percent_encoding::percent_decode_str(key)
        .decode_utf8()
        .map_err(|_| DmsError::bad(INVALID_TAG, "The tag key in the path is not UTF-8."))?
        .into_owned();
    rules::check_key("key", &key)?;
    let tag = (key, None);
    change(ctx, queue, |current| {
        Ok(rules::apply(
            current,
            Action::Delete,
            std::slice::from_ref(&tag),
        )?)
    })
    .await
}

/// The `tags` of a queue create (Sluice extension), sorted by key: none when absent.
pub(super) fn parse_create(body: &Object) -> Result<Vec<QueueTag>, DmsError> {
    let Some(raw) = body.get("tags").filter(|raw| raw.get().trim() != "null") else {
        return Ok(Vec::new());
    };
    let entries = raw_array(raw)
        .ok_or_else(|| DmsError::parameter("The field tags must be an array of {key, value}."))?;
    let tags = parse_tags(&entries, true)?;
    Ok(rules::apply(&[], Action::Create, &tags)?)
}

/// The queue list's tag filter (Sluice extension): `tag_key`, and `tag_value` if given,
/// checked by the rules of a tag.
pub(super) fn list_filter(query: &Query) -> Result<Option<(String, Option<String>)>, DmsError> {
    let Some(key) = query.get("tag_key") else {
        return Ok(None);
    };
    rules::check_key("tag_key", key)?;
    let value = query.get("tag_value");
    if let Some(value) = value {
        rules::check_value("tag_value", value)?;
    }
    Ok(Some((key.to_string(), value.map(str::to_string))))
}

/// Whether `view` carries the tag of a list filter.
pub(super) fn matches(view: &QueueView, filter: &(String, Option<String>)) -> bool {
    let (key, value) = filter;
    QueueMeta::of(view)
        .tags
        .iter()
        .any(|tag| &tag.key == key && value.as_ref().is_none_or(|v| &tag.value == v))
}

/// Applies a tag change to the queue named by `queue` ([`queue_meta::update`]); 204 when
/// done (or nothing to change).
async fn change<N: Node>(
    ctx: &Ctx<'_, N>,
    queue: &str,
    update: impl Fn(&[QueueTag]) -> Result<Vec<QueueTag>, DmsError>,
) -> Result<Reply, DmsError> {
    queue_meta::update(
        ctx.node,
        async || ctx.queue(queue),
        |_, meta| {
            meta.tags = update(&meta.tags)?;
            Ok(())
        },
    )
    .await?;
    Ok(Reply::no_content())
}

/// The request's tags as (key, value): 1 to [`TAGS_PER_REQUEST_MAX`], unique keys, each
/// by the rules; `value_required` for a create.
fn parse_tags(
    entries: &[Box<RawValue>],
    value_required: bool,
) -> Result<Vec<(String, Option<String>)>, DmsError> {
    if entries.len() > TAGS_PER_REQUEST_MAX {
        return Err(DmsError::bad(
            INVALID_TAG,
            format!(
                "A request names at most {TAGS_PER_REQUEST_MAX} tags; it has {}.",
                entries.len()
            ),
        ));
    }
    let mut tags: Vec<(String, Option<String>)> = Vec::with_capacity(entries.len());
    for (index, entry) in entries.iter().enumerate() {
        let tag_error = |what: &str| DmsError::bad(INVALID_TAG, format!("tags[{index}].{what}"));
        let entry = raw_object(entry).ok_or_else(|| tag_error("must be an object"))?;
        let key: String = field(&entry, "key", "a string")
            .map_err(|_| tag_error("key must be a string"))?
            .ok_or_else(|| tag_error("key is required"))?;
        rules::check_key(&format!("tags[{index}].key"), &key)?;
        let value: Option<String> =
            field(&entry, "value", "a string").map_err(|_| tag_error("value must be a string"))?;
        match &value {
            Some(value) => {
                rules::check_value(&format!("tags[{index}].value"), value)?;
            }
            None if value_required => return Err(tag_error("value is required")),
            None => {}
        }
        if tags.iter().any(|(seen, _)| *seen == key) {
            return Err(DmsError::bad(
                INVALID_TAG,
                format!("The tag key {key} appears more than once."),
            ));
        }
        tags.push((key, value));
    }
    Ok(tags)
}
