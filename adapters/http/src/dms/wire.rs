//! Wire types of the DMS queue API (docs/dms-api.md §3 and §5): what responses look like, field
//! by field, plus the queue's opaque `meta` encoding. Kernel types never derive `Serialize`
//! (docs/style.md §6); handlers convert into these.

use std::collections::HashSet;

use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::value::RawValue;

pub use crate::queue_meta::{QueueMeta, QueueTag};

/// `GET /v2/{p}/queue/{queue_id}/tags`.
#[derive(Serialize)]
pub struct QueueTags {
    pub tags: Vec<QueueTag>,
}

/// One key of the project's tags with every value its queues give it.
#[derive(Serialize)]
pub struct ProjectTag {
    pub key: String,
    pub values: Vec<String>,
}

/// `GET /v2/{p}/queue/tags`.
#[derive(Serialize)]
pub struct ProjectTags {
    pub tags: Vec<ProjectTag>,
}

#[derive(Serialize)]
pub struct QueueCreated {
    pub id: String,
    pub name: String,
}

/// A queue (show, and each element of the list).
#[derive(Serialize)]
pub struct QueueObject {
    pub id: String,
    pub name: String,
    pub description: String,
    pub queue_mode: &'static str,
    /// The Kafka topic of a Kafka queue (`KAFKA_HA`): the queue's name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kafka_topic: Option<String>,
    /// Epoch milliseconds (an integer, as the clients parse it).
    pub created: u64,
    pub eff_date: u64,
    /// Retention, minutes.
    pub reservation: u64,
    pub max_msg_size_byte: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub produced_messages: Option<u64>,
    pub group_count: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redrive_policy: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_consume_count: Option<u16>,
    /// Sluice extension: `queue` or `message_group`, FIFO queues only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fifo_scope: Option<&'static str>,
    /// Sluice extension: `immediate` or `backoff`.
    pub retry_policy: &'static str,
    /// Sluice extension: the partitions the queue spreads over.
    pub partitions: u32,
}

#[derive(Serialize)]
pub struct QueueList {
    pub total: u64,
    pub queues: Vec<QueueObject>,
}

#[derive(Serialize)]
pub struct GroupRef {
    pub id: String,
    pub name: String,
}

#[derive(Serialize)]
pub struct GroupsCreated {
    pub groups: Vec<GroupRef>,
}

#[derive(Serialize)]
pub struct GroupObject {
    pub id: String,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub produced_messages: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consumed_messages: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub available_messages: Option<u64>,
    /// Sluice extension: delivered and not yet acknowledged or expired.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub in_flight_messages: Option<u64>,
    /// Sluice extension: deliveries made, redeliveries included.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivered_messages: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub produced_deadletters: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub available_deadletters: Option<u64>,
}

#[derive(Serialize)]
pub struct GroupList {
    pub queue_id: String,
    pub queue_name: String,
    pub redrive_policy: &'static str,
    /// Groups on the queue (before pagination).
    pub total: u64,
    pub groups: Vec<GroupObject>,
}

#[derive(Serialize)]
pub struct SendResult {
    /// 0: stored. The engine stores a batch whole or not at all, so a failed send is an
    /// error response, never a per-message state 1.
    pub state: u8,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

#[derive(Serialize)]
pub struct SendResponse {
    pub messages: Vec<SendResult>,
}

/// A consumed message; its body and attributes borrow the delivery's bytes when they are
/// JSON already, so they are copied once, into the response.
#[derive(Serialize)]
pub struct ConsumedMessage<'a> {
    pub body: std::borrow::Cow<'a, RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attributes: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Sluice extension: the message id (as returned by a send with `return_id`). Not `id`:
    /// otcextensions builds its Message as `existing(id=handler, **message)`, and a second
    /// `id` keyword makes every consume raise TypeError (docs/client-compat.md).
    #[serde(rename = "message_id")]
    pub id: String,
    /// Sluice extension: when the message was sent, epoch milliseconds.
    pub sent_time: u64,
}

/// One element of the top-level array a consume answers.
#[derive(Serialize)]
pub struct Consumed<'a> {
    pub handler: String,
    pub message: ConsumedMessage<'a>,
}

#[derive(Serialize)]
pub struct AckResponse {
    pub success: u64,
    pub fail: u64,
}

#[derive(Serialize)]
pub struct QuotaResource {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub quota: u64,
    pub used: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max: Option<u64>,
}

#[derive(Serialize)]
pub struct QuotaResources {
    pub resources: Vec<QuotaResource>,
}

#[derive(Serialize)]
pub struct QuotasResponse {
    pub quotas: QuotaResources,
}

#[derive(Serialize)]
pub struct ErrorDetail<'a> {
    pub code: &'a str,
    pub message: &'a str,
}

/// The §5 envelope, readable by the v3 SDK (top-level or nested) and openstacksdk.
#[derive(Serialize)]
pub struct ErrorBody<'a> {
    pub error_code: &'a str,
    pub error_msg: &'a str,
    pub error: ErrorDetail<'a>,
}

/// A message's `attributes`: an object of unique names whose values are strings,
/// numbers or booleans. Deserialising only checks; the raw text is what is stored.
pub struct AttributesCheck;

impl<'de> Deserialize<'de> for AttributesCheck {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<AttributesCheck, D::Error> {
        struct CheckVisitor;
        impl<'de> Visitor<'de> for CheckVisitor {
            type Value = AttributesCheck;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "an object of scalar attributes")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<AttributesCheck, A::Error> {
                let mut names = HashSet::new();
                // Bounded by the request body's size limit.
                while let Some((name, value)) = map.next_entry::<String, serde_json::Value>()? {
                    let scalar = value.is_string() || value.is_number() || value.is_boolean();
                    if !scalar {
                        return Err(serde::de::Error::custom("attribute values are scalars"));
                    }
                    if !names.insert(name) {
                        return Err(serde::de::Error::custom("attribute names are unique"));
                    }
                }
                Ok(AttributesCheck)
            }
        }
        deserializer.deserialize_map(CheckVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_are_unique_scalars() {
        // Goal: the attribute rule of §3.3, checked on the raw text.
        let ok = |text: &str| serde_json::from_str::<AttributesCheck>(text).is_ok();
        assert!(ok(r#"{"a": 1, "b": "x", "c": true, "d": 1.5}"#));
        assert!(ok("{}"));
        assert!(!ok(r#"{"a": 1, "a": 2}"#));
        assert!(!ok(r#"{"a": [1]}"#));
        assert!(!ok(r#"{"a": null}"#));
        assert!(!ok("[1]"));
    }
}
