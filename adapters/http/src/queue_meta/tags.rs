//! The rules of queue tags, one set for every API that reads or writes them (the DMS tag
//! calls and SQS's TagQueue, UntagQueue, ListQueueTags and CreateQueue `tags`): a key
//! of 1 to [`TAG_KEY_CHARS_MAX`] characters, a value of 0 to [`TAG_VALUE_CHARS_MAX`],
//! neither holding a control character or one of [`FORBIDDEN_CHARS`], at most
//! [`QUEUE_TAGS_MAX`] per queue. They are the DMS SDK model's (the stricter API's), so a
//! tag set through either API is valid in the other's. Each adapter words a refusal
//! ([`TagError`]) in its own protocol.

use std::collections::BTreeMap;

use super::QueueTag;
use sluice_core::limits::QUEUE_META_BYTES_MAX;

/// Tags one queue may carry.
pub const QUEUE_TAGS_MAX: usize = 20;
/// Characters of a tag key (1 at least).
pub const TAG_KEY_CHARS_MAX: usize = 36;
/// Characters of a tag value (it may be empty).
pub const TAG_VALUE_CHARS_MAX: usize = 43;
/// Characters no key or value may hold (besides the control characters 0-31).
pub const FORBIDDEN_CHARS: [char; 8] = ['=', '*', '<', '>', '\\', ',', '|', '/'];
/// Room the fields keep for the SQS adapter's members (its attributes and purge time).
const SQS_MEMBERS_BYTES_MAX: usize = 1024;

/// The largest adapter fields these limits allow: a DMS description of 160 characters
/// (`DmsConfig::dms_default`), each at most 6 bytes of JSON (`\u0001`), the tags, each
/// character at most 4 bytes (control characters and `\` are refused), with the JSON
/// around them, and the SQS members.
const META_BYTES_WORST: usize = 32
    + 160 * 6
    + QUEUE_TAGS_MAX * (24 + 4 * (TAG_KEY_CHARS_MAX + TAG_VALUE_CHARS_MAX))
    + SQS_MEMBERS_BYTES_MAX;
const _: () = assert!(META_BYTES_WORST <= QUEUE_META_BYTES_MAX);

/// Why a tag or a tag change is refused, in words the adapter passes on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TagError(pub String);

/// What a tag change does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Add the tags; a key the queue has takes the new value.
    Create,
    /// Remove the tags by key (and value, when one is given).
    Delete,
}

/// Checks a key (`name` says which, in the refusal).
pub fn check_key(name: &str, key: &str) -> Result<(), TagError> {
    check_text(name, key, 1, TAG_KEY_CHARS_MAX)
}

/// Checks a value (`name` says which, in the refusal).
pub fn check_value(name: &str, value: &str) -> Result<(), TagError> {
    check_text(name, value, 0, TAG_VALUE_CHARS_MAX)
}

/// `chars_min` to `chars_max` characters, none of them a control character or one of
/// [`FORBIDDEN_CHARS`].
fn check_text(name: &str, text: &str, chars_min: usize, chars_max: usize) -> Result<(), TagError> {
    let chars = text.chars().count();
    if !(chars_min..=chars_max).contains(&chars) {
        return Err(TagError(format!(
            "{name} must have {chars_min} to {chars_max} characters; it has {chars}."
        )));
    }
    if text
        .chars()
        .any(|c| u32::from(c) < 0x20 || FORBIDDEN_CHARS.contains(&c))
    {
        return Err(TagError(format!(
            "{name} contains a control character or one of = * < > \\ , | /."
        )));
    }
    Ok(())
}

/// `current` after `action` with `tags` (key, and value: required for a create, optional
/// for a delete), sorted by key; the keys and values must have been checked. More than
/// [`QUEUE_TAGS_MAX`] is refused.
pub fn apply(
    current: &[QueueTag],
    action: Action,
    tags: &[(String, Option<String>)],
) -> Result<Vec<QueueTag>, TagError> {
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
        return Err(TagError(format!(
            "A queue carries at most {QUEUE_TAGS_MAX} tags; this change would give it {}.",
            by_key.len()
        )));
    }
    Ok(by_key
        .into_iter()
        .map(|(key, value)| QueueTag { key, value })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(key: &str, value: &str) -> QueueTag {
        QueueTag {
            key: key.into(),
            value: value.into(),
        }
    }

    #[test]
    fn keys_and_values_follow_one_rule_set() {
        assert!(check_key("key", "env").is_ok());
        assert!(check_key("key", "").is_err());
        assert!(check_key("key", &"k".repeat(TAG_KEY_CHARS_MAX)).is_ok());
        assert!(check_key("key", &"k".repeat(TAG_KEY_CHARS_MAX + 1)).is_err());
        assert!(check_key("key", "a/b").is_err());
        assert!(check_key("key", "tab\there").is_err());
        assert!(check_value("value", "").is_ok());
        assert!(check_value("value", &"v".repeat(TAG_VALUE_CHARS_MAX + 1)).is_err());
    }

    #[test]
    fn changes_replace_values_remove_keys_and_keep_the_count() {
        let current = [tag("a", "1"), tag("b", "2")];
        let created = apply(
            &current,
            Action::Create,
            &[
                ("b".into(), Some("3".into())),
                ("c".into(), Some(String::new())),
            ],
        )
        .unwrap();
        assert_eq!(created, [tag("a", "1"), tag("b", "3"), tag("c", "")]);
        let deleted = apply(
            &created,
            Action::Delete,
            &[("a".into(), None), ("b".into(), Some("other".into()))],
        )
        .unwrap();
        assert_eq!(deleted, [tag("b", "3"), tag("c", "")]);
        let many: Vec<(String, Option<String>)> = (0..=QUEUE_TAGS_MAX)
            .map(|i| (format!("k{i}"), Some(String::new())))
            .collect();
        assert!(apply(&[], Action::Create, &many).is_err());
        assert!(apply(&[], Action::Create, &many[1..]).is_ok());
    }
}
