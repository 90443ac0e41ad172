//! Queue tags (docs/dms-api.md §2 row 14, `/v2` only): key/value pairs on a queue, as
//! huaweicloudsdkdms calls them: batch create and delete (`queue/{id}/tags/action`), a
//! queue's tags (`queue/{id}/tags`) and the project's tags (`queue/tags`); and the Sluice
//! extensions: tags at queue create, deleting one tag (`DELETE queue/{id}/tags/{key}`),
//! and the queue list filtered by tag (`tag_key`, `tag_value`).
//!
//! Tags live in the queue's adapter fields ([`QueueMeta::tags`], the node's
//! `QueueView::meta`), set at create and replaced through `Node::set_queue_meta`: a
//! compare-and-set on the fields this handler read, retried a bounded number of times, so
//! two concurrent changes never undo each other. The rules (lengths, characters) are the
//! SDK model's; the count limits are the usual per-resource ones of the service's tag API.

use std::collections::{BTreeMap, BTreeSet};

use http::StatusCode;
use serde_json::value::RawValue;

use super::errors::{from_node, DmsError, INVALID_TAG};
use super::request::{field, object, raw_array, raw_object, Object, Query};
use super::wire::{ProjectTag, ProjectTags, QueueMeta, QueueTag, QueueTags};
use super::{Ctx, Reply};
use sluice_core::limits::QUEUE_META_BYTES_MAX;
use sluice_node::{Node, NodeError, QueueView};

/// Tags one queue may carry.
pub const QUEUE_TAGS_MAX: usize = 20;
/// Tags one create or delete request may name.
pub const TAGS_PER_REQUEST_MAX: usize = 20;
/// Characters of a tag key (1 at least).
pub const TAG_KEY_CHARS_MAX: usize = 36;
/// Characters of a tag value (it may be empty).
pub const TAG_VALUE_CHARS_MAX: usize = 43;
/// Attempts of a tag change that found the queue's fields changed under it, before it
/// answers 503: tag changes of one queue are rare, so a few attempts settle any race.
const META_UPDATE_ATTEMPTS_MAX: u32 = 8;
/// Characters no key or value may hold (besides the control characters 0-31).
const FORBIDDEN_CHARS: [char; 8] = ['=', '*', '<', '>', '\\', ',', '|', '/'];

/// The largest adapter fields these limits allow: a description of 160 characters
/// (`DmsConfig::dms_default`), each at most 6 bytes of JSON (`\u0001`), and the tags, each
/// character at most 4 bytes (control characters and `\` are refused), with the JSON
/// around them.
const META_BYTES_WORST: usize =
    32 + 160 * 6 + QUEUE_TAGS_MAX * (24 + 4 * (TAG_KEY_CHARS_MAX + TAG_VALUE_CHARS_MAX));
const _: () = assert!(META_BYTES_WORST <= QUEUE_META_BYTES_MAX);

/// What a tag change does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Action {
    /// Add the tags; a key the queue has takes the new value.
    Create,
    /// Remove the tags by key (and value, when one is given).
    Delete,
}

/// `GET /v2/{p}/queue/tags`: every key the project's queues carry, with its values.
pub(super) fn project<N: Node>(ctx: &Ctx<'_, N>) -> Result<Reply, DmsError> {
    let mut keys: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for view in ctx.node.queues_of(ctx.tenant) {
        for tag in meta_of(&view).tags {
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
    let tags = meta_of(view).tags;
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
    change(ctx, queue, |current| apply(current, action, &tags)).await
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
    check_text("key", &key, 1, TAG_KEY_CHARS_MAX)?;
    let tag = (key, None);
    change(ctx, queue, |current| {
        apply(current, Action::Delete, std::slice::from_ref(&tag))
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
    apply(&[], Action::Create, &tags)
}

/// The queue list's tag filter (Sluice extension): `tag_key`, and `tag_value` if given,
/// checked by the rules of a tag.
pub(super) fn list_filter(query: &Query) -> Result<Option<(String, Option<String>)>, DmsError> {
    let Some(key) = query.get("tag_key") else {
        return Ok(None);
    };
    check_text("tag_key", key, 1, TAG_KEY_CHARS_MAX)?;
    let value = query.get("tag_value");
    if let Some(value) = value {
        check_text("tag_value", value, 0, TAG_VALUE_CHARS_MAX)?;
    }
    Ok(Some((key.to_string(), value.map(str::to_string))))
}

/// Whether `view` carries the tag of a list filter.
pub(super) fn matches(view: &QueueView, filter: &(String, Option<String>)) -> bool {
    let (key, value) = filter;
    meta_of(view)
        .tags
        .iter()
        .any(|tag| &tag.key == key && value.as_ref().is_none_or(|v| &tag.value == v))
}

/// The queue's adapter fields; fields another adapter wrote read as none.
fn meta_of(view: &QueueView) -> QueueMeta {
    serde_json::from_slice(&view.meta).unwrap_or_default()
}

/// Applies a tag change to the queue named by `queue` by compare-and-set on its fields,
/// reading them again after a concurrent change; 204 when done (or nothing to change).
async fn change<N: Node>(
    ctx: &Ctx<'_, N>,
    queue: &str,
    update: impl Fn(&[QueueTag]) -> Result<Vec<QueueTag>, DmsError>,
) -> Result<Reply, DmsError> {
    for _ in 0..META_UPDATE_ATTEMPTS_MAX {
        let view = ctx.queue(queue)?;
        let mut meta = meta_of(&view);
        let tags = update(&meta.tags)?;
        if tags == meta.tags {
            return Ok(Reply::no_content());
        }
        meta.tags = tags;
        let bytes = serde_json::to_vec(&meta).expect("meta serialises");
        match ctx.node.set_queue_meta(view.id, &view.meta, bytes).await {
            Ok(()) => return Ok(Reply::no_content()),
            Err(NodeError::MetaChanged) => continue,
            Err(error) => return Err(from_node(error)),
        }
    }
    Err(from_node(NodeError::MetaChanged))
}

/// `current` after `action` with `tags` (key, value), sorted by key; more than
/// [`QUEUE_TAGS_MAX`] is refused.
fn apply(
    current: &[QueueTag],
    action: Action,
    tags: &[(String, Option<String>)],
) -> Result<Vec<QueueTag>, DmsError> {
    let mut by_key: BTreeMap<String, String> = current
        .iter()
        .map(|tag| (tag.key.clone(), tag.value.clone()))
        .collect();
    for (key, value) in tags {
        match (action, value) {
            (Action::Create, Some(value)) => {
                by_key.insert(key.clone(), value.clone());
            }
            (Action::Create, None) => unreachable!("a create's tags all have values"),
            (Action::Delete, Some(value)) => {
                if by_key.get(key) == Some(value) {
                    by_key.remove(key);
                }
            }
            (Action::Delete, None) => {
                by_key.remove(key);
            }
        }
    }
    if by_key.len() > QUEUE_TAGS_MAX {
        return Err(DmsError::bad(
            INVALID_TAG,
            format!(
                "A queue carries at most {QUEUE_TAGS_MAX} tags; this change would give it {}.",
                by_key.len()
            ),
        ));
    }
    Ok(by_key
        .into_iter()
        .map(|(key, value)| QueueTag { key, value })
        .collect())
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
        check_text(&format!("tags[{index}].key"), &key, 1, TAG_KEY_CHARS_MAX)?;
        let value: Option<String> =
            field(&entry, "value", "a string").map_err(|_| tag_error("value must be a string"))?;
        match &value {
            Some(value) => {
                check_text(
                    &format!("tags[{index}].value"),
                    value,
                    0,
                    TAG_VALUE_CHARS_MAX,
                )?;
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

/// A key or value: `chars_min` to `chars_max` characters, none of them a control
/// character or one of [`FORBIDDEN_CHARS`].
fn check_text(name: &str, text: &str, chars_min: usize, chars_max: usize) -> Result<(), DmsError> {
    let chars = text.chars().count();
    if !(chars_min..=chars_max).contains(&chars) {
        return Err(DmsError::bad(
            INVALID_TAG,
            format!("{name} must have {chars_min} to {chars_max} characters; it has {chars}."),
        ));
    }
    if text
        .chars()
        .any(|c| u32::from(c) < 0x20 || FORBIDDEN_CHARS.contains(&c))
    {
        return Err(DmsError::bad(
            INVALID_TAG,
            format!("{name} contains a control character or one of = * < > \\ , | /."),
        ));
    }
    Ok(())
}
