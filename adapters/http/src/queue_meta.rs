//! A queue's adapter fields (`QueueView::meta`, opaque to the kernel), shared by the DMS
//! and SQS adapters: one JSON object holding the DMS description, the queue's tags (the
//! same tags through either API) and the SQS adapter's members, each adapter keeping the
//! others' members when it rewrites its own.
//!
//! Every change goes through [`update`]: a compare-and-set on the fields read
//! (`Node::set_queue_meta`), read again and retried a bounded number of times when
//! another change came first, so two concurrent changes never undo each other. The tag
//! rules (one set for both APIs) are [`tags`].

pub mod tags;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sluice_node::{Node, NodeError, QueueView};

/// Attempts of a change that found the queue's fields changed under it, before it gives
/// up with [`NodeError::MetaChanged`]: changes of one queue's fields are rare, so a few
/// attempts settle any race.
pub const META_UPDATE_ATTEMPTS_MAX: u32 = 8;

/// The adapters' queue fields, stored as JSON in the engine's opaque `meta` bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueMeta {
    /// The DMS description.
    #[serde(default)]
    pub description: String,
    /// The queue's tags, sorted by key (absent from the JSON when there are none, so the
    /// fields of a queue without tags read as before tags existed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<QueueTag>,
    /// Created through the DMS API as a Kafka queue (`queue_mode` `KAFKA_HA`): the queue
    /// reports that mode and its topic, and its retention was chosen at create.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub kafka: bool,
    /// Members one adapter keeps for itself (the SQS adapter's `sqs` attributes and
    /// `sqs_purged_ms`), kept as they are when another rewrites its own.
    #[serde(flatten)]
    pub others: Map<String, Value>,
}

/// One queue tag, in the fields and in the answers of the tag calls.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueTag {
    pub key: String,
    pub value: String,
}

impl QueueMeta {
    /// The fields of `view`'s queue; bytes that are not such an object read as none.
    pub fn of(view: &QueueView) -> QueueMeta {
        serde_json::from_slice(&view.meta).unwrap_or_default()
    }

    /// As stored.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("queue fields serialise")
    }
}

/// Changes a queue's fields by compare-and-set: `read` gives the queue as it is now,
/// `change` edits its fields (or refuses, with the caller's error) and answers what the
/// caller returns; the fields are written only when they changed, and only if they are
/// still what was read; otherwise the queue is read again and `change` runs again, at
/// most [`META_UPDATE_ATTEMPTS_MAX`] times before [`NodeError::MetaChanged`].
pub async fn update<N, E, T>(
    node: &N,
    mut read: impl AsyncFnMut() -> Result<QueueView, E>,
    mut change: impl FnMut(&QueueView, &mut QueueMeta) -> Result<T, E>,
) -> Result<T, E>
where
    N: Node,
    E: From<NodeError>,
{
    for _ in 0..META_UPDATE_ATTEMPTS_MAX {
        let view = read().await?;
        let before = QueueMeta::of(&view);
        let mut meta = before.clone();
        let answer = change(&view, &mut meta)?;
        if meta == before {
            return Ok(answer);
        }
        match node
            .set_queue_meta(view.id, &view.meta, meta.to_bytes())
            .await
        {
            Ok(()) => return Ok(answer),
            Err(NodeError::MetaChanged) => continue,
            Err(error) => return Err(error.into()),
        }
    }
    Err(NodeError::MetaChanged.into())
}
