//! Queues: create, list, show, delete (docs/dms-api.md §3.1), and the queue object; the
//! Sluice extensions `tags` at create and the list's tag filter (`dms/tags.rs`).

use http::StatusCode;
use sluice_core::engine::types::{FifoScope, QueueConfig, QueueMode, RetryPolicy};

use super::errors::{
    from_node, DmsError, MAX_CONSUME_COUNT_RANGE, QUEUE_NAME_LENGTH, RETENTION_NOT_KAFKA,
    RETENTION_RANGE,
};
use super::request::{field, object};
use super::wire::{QueueCreated, QueueList, QueueMeta, QueueObject};
use super::{ids, tags, validate, Ctx, DmsConfig, Reply};
use sluice_node::{Node, QueueCounts, QueueView};

pub(super) async fn create<N: Node>(ctx: &Ctx<'_, N>) -> Result<Reply, DmsError> {
    let body = object(ctx.body)?;
    let name: String = field(&body, "name", "a string")?.ok_or_else(|| {
        DmsError::bad(
            QUEUE_NAME_LENGTH,
            "The field name is required: 1 to 64 characters.",
        )
    })?;
    validate::queue_name(&name)?;
    let mode: Option<String> = field(&body, "queue_mode", "a string")?;
    let (fifo, kafka) = match mode.as_deref().map(str::to_ascii_uppercase).as_deref() {
        None | Some("NORMAL") => (false, false),
        Some("FIFO") => (true, false),
        Some("KAFKA_HA") => (false, true),
        Some("KAFKA_HT") => {
            return Err(DmsError::parameter(
                "The high-throughput Kafka mode KAFKA_HT is not served; use KAFKA_HA \
                 (every write confirmed after a majority has it on disk).",
            ))
        }
        Some(_) => {
            return Err(DmsError::parameter(
                "The field queue_mode must be NORMAL, FIFO or KAFKA_HA.",
            ))
        }
    };
    let description: String = field(&body, "description", "a string")?.unwrap_or_default();
    validate::description(&description, ctx.config.description_chars_max)?;
    let redrive: Option<String> = field(&body, "redrive_policy", "a string")?;
    let redrive = match redrive.as_deref().map(str::to_ascii_lowercase).as_deref() {
        None | Some("disable") => false,
        Some("enable") => true,
        Some(_) => {
            return Err(DmsError::parameter(
                "The field redrive_policy must be enable or disable.",
            ))
        }
    };
    if kafka && redrive {
        return Err(DmsError::parameter(
            "Dead letters (redrive_policy) are for NORMAL and FIFO queues, not Kafka queues.",
        ));
    }
    let max_consume_count = if redrive {
        Some(create_max_consume_count(&body, ctx.config)?)
    } else {
        None
    };
    let retention_ms = create_retention(&body, kafka, ctx.config)?;
    let config = QueueConfig {
        mode: create_mode(&body, fifo)?,
        retention_ms,
        max_consume_count,
        retry: create_retry(&body)?,
        dedup_window_ms: ctx.config.dedup_window_ms,
        partitions: 0,
    };
    let tags = tags::parse_create(&body)?;
    let meta = serde_json::to_vec(&QueueMeta {
        description,
        tags,
        kafka,
        others: serde_json::Map::new(),
    })
    .expect("meta serialises");
    let queue = ctx
        .node
        .create_queue(ctx.tenant, &name, config, meta)
        .await
        .map_err(from_node)?;
    let created = QueueCreated {
        id: ids::queue_id_encode(queue),
        name,
    };
    Ok(Reply::json(StatusCode::CREATED, &created))
}

fn create_max_consume_count(
    body: &super::request::Object,
    config: &DmsConfig,
) -> Result<u16, DmsError> {
    let max = config.max_consume_count_max;
    let range_error = || {
        DmsError::bad(
            MAX_CONSUME_COUNT_RANGE,
            format!("The value of max_consume_count must be within the range of 1-{max}."),
        )
    };
    let count: Option<i64> =
        field(body, "max_consume_count", "an integer").map_err(|_| range_error())?;
    let count = count.ok_or_else(range_error)?;
    u16::try_from(count)
        .ok()
        .filter(|count| (1..=max).contains(count))
        .ok_or_else(range_error)
}

/// The Sluice extension `fifo_scope` (FIFO queues only).
/// A Kafka queue's `retention_hours` (1-72, 72 when absent); other queues keep the
/// configured retention and refuse the field, as the service does.
fn create_retention(
    body: &super::request::Object,
    kafka: bool,
    config: &DmsConfig,
) -> Result<u64, DmsError> {
    let range_error = || {
        DmsError::bad(
            RETENTION_RANGE,
            format!(
                "The value of retention_hours must be within the range of 1-{RETENTION_HOURS_MAX}."
            ),
        )
    };
    if !kafka {
        if body
            .get("retention_hours")
            .is_some_and(|value| value.get().trim() != "null")
        {
            return Err(DmsError::bad(
                RETENTION_NOT_KAFKA,
                "Non-Kafka queues do not support retention_hours.",
            ));
        }
        return Ok(config.retention_minutes * 60_000);
    }
    let hours: Option<i64> =
        field(body, "retention_hours", "an integer").map_err(|_| range_error())?;
    match hours {
        None => Ok(RETENTION_HOURS_MAX * 3_600_000),
        Some(hours) => u64::try_from(hours)
            .ok()
            .filter(|hours| (1..=RETENTION_HOURS_MAX).contains(hours))
            .map(|hours| hours * 3_600_000)
            .ok_or_else(range_error),
    }
}

/// The longest retention of a Kafka queue, hours (the service's bound).
const RETENTION_HOURS_MAX: u64 = 72;

fn create_mode(body: &super::request::Object, fifo: bool) -> Result<QueueMode, DmsError> {
    let scope: Option<String> = field(body, "fifo_scope", "a string")?;
    match (fifo, scope.as_deref()) {
        (false, None) => Ok(QueueMode::Normal),
        (false, Some(_)) => Err(DmsError::parameter(
            "The field fifo_scope applies only to FIFO queues.",
        )),
        (true, None | Some("queue")) => Ok(QueueMode::Fifo(FifoScope::Queue)),
        (true, Some("message_group")) => Ok(QueueMode::Fifo(FifoScope::MessageGroup)),
        (true, Some(_)) => Err(DmsError::parameter(
            "The field fifo_scope must be queue or message_group.",
        )),
    }
}

/// The Sluice extension `retry_policy`.
fn create_retry(body: &super::request::Object) -> Result<RetryPolicy, DmsError> {
    let retry: Option<String> = field(body, "retry_policy", "a string")?;
    match retry.as_deref() {
        None | Some("immediate") => Ok(RetryPolicy::Immediate),
        Some("backoff") => Ok(RetryPolicy::Backoff),
        Some(_) => Err(DmsError::parameter(
            "The field retry_policy must be immediate or backoff.",
        )),
    }
}

pub(super) async fn list<N: Node>(ctx: &Ctx<'_, N>) -> Result<Reply, DmsError> {
    let include_deadletter = ctx.query.boolean("include_deadletter", false)?;
    let include_messages_num = ctx.query.boolean("include_messages_num", false)?;
    let tag_filter = tags::list_filter(ctx.query)?;
    let mut queues = Vec::new();
    for view in ctx.node.queues_of(ctx.tenant) {
        if tag_filter
            .as_ref()
            .is_some_and(|f| !tags::matches(&view, f))
        {
            continue;
        }
        let counts = if include_messages_num {
            match ctx.node.queue_counts(view.id).await {
                Ok(counts) => Some(counts),
                // Deleted since it was listed: leave it out.
                Err(sluice_node::NodeError::Engine(
                    sluice_core::engine::types::EngineError::QueueNotFound,
                )) => continue,
                Err(error) => return Err(from_node(error)),
            }
        } else {
            None
        };
        queues.push(queue_object(
            &view,
            counts.as_ref(),
            include_deadletter,
            (ctx.config, ctx.node.partition_count()),
        ));
    }
    let list = QueueList {
        total: u64::try_from(queues.len()).expect("usize fits u64"),
        queues,
    };
    Ok(Reply::json(StatusCode::OK, &list))
}

pub(super) async fn show<N: Node>(ctx: &Ctx<'_, N>, view: &QueueView) -> Result<Reply, DmsError> {
    let include_deadletter = ctx.query.boolean("include_deadletter", false)?;
    let counts = ctx.node.queue_counts(view.id).await.map_err(from_node)?;
    let object = queue_object(
        view,
        Some(&counts),
        include_deadletter,
        (ctx.config, ctx.node.partition_count()),
    );
    Ok(Reply::json(StatusCode::OK, &object))
}

pub(super) async fn delete<N: Node>(ctx: &Ctx<'_, N>, view: &QueueView) -> Result<Reply, DmsError> {
    ctx.node.delete_queue(view.id).await.map_err(from_node)?;
    Ok(Reply::no_content())
}

pub(super) fn redrive_policy(config: &QueueConfig) -> &'static str {
    if config.max_consume_count.is_some() {
        "enable"
    } else {
        "disable"
    }
}

fn queue_object(
    view: &QueueView,
    counts: Option<&QueueCounts>,
    include_deadletter: bool,
    (config, node_partitions): (&DmsConfig, u32),
) -> QueueObject {
    // Meta this adapter did not write (another adapter's queue) reads as no description.
    let meta: QueueMeta = serde_json::from_slice(&view.meta).unwrap_or_default();
    let (queue_mode, fifo_scope) = match view.config.mode {
        QueueMode::Normal if meta.kafka => ("KAFKA_HA", None),
        QueueMode::Normal => ("NORMAL", None),
        QueueMode::Fifo(FifoScope::Queue) => ("FIFO", Some("queue")),
        QueueMode::Fifo(FifoScope::MessageGroup) => ("FIFO", Some("message_group")),
    };
    let retry_policy = match view.config.retry {
        RetryPolicy::Immediate => "immediate",
        RetryPolicy::Backoff => "backoff",
    };
    QueueObject {
        id: ids::queue_id_encode(view.id),
        name: view.name.to_string(),
        description: meta.description,
        queue_mode,
        kafka_topic: meta.kafka.then(|| view.name.to_string()),
        created: view.created_ms,
        eff_date: view.created_ms,
        reservation: view.config.retention_ms / 60_000,
        max_msg_size_byte: config.max_msg_size_byte(),
        produced_messages: counts.map(|c| c.sent_total),
        group_count: u64::try_from(view.groups.len()).expect("usize fits u64"),
        redrive_policy: include_deadletter.then(|| redrive_policy(&view.config)),
        max_consume_count: if include_deadletter {
            view.config.max_consume_count
        } else {
            None
        },
        fifo_scope,
        retry_policy,
        // A whole-queue FIFO lives in partition 0 (`sluice_node::routing`).
        partitions: match view.config.mode {
            QueueMode::Fifo(FifoScope::Queue) => 1,
            _ => view.config.partitions_on(node_partitions),
        },
    }
}

/// Sluice extension, `GET .../queues/{queue_id}/metrics`: the queue's counts as this node
/// sampled them for the last hour (`Node::queue_history`), oldest first, each group by
/// its DMS id and name. Rates are for the reader to derive from the totals.
pub(super) fn metrics<N: Node>(ctx: &Ctx<'_, N>, view: &QueueView) -> Reply {
    let names: std::collections::HashMap<_, _> = view.groups.iter().cloned().collect();
    let samples: Vec<serde_json::Value> = ctx
        .node
        .queue_history(view.id)
        .into_iter()
        .map(|sample| {
            let groups: Vec<serde_json::Value> = sample
                .groups
                .iter()
                .filter_map(|(group, stats)| {
                    Some(serde_json::json!({
                        "id": ids::group_id_encode(view.id, *group),
                        "name": names.get(group)?,
                        "backlog": stats.backlog,
                        "in_flight": stats.in_flight,
                        "dead_letters": stats.dead_letters,
                        "acked_total": stats.acked_total,
                        "delivered_total": stats.delivered_total,
                        "oldest_age_s": sluice_node::alarms::oldest_age_s(sample.at_ms, stats),
                    }))
                })
                .collect();
            serde_json::json!({
                "at": sample.at_ms,
                "sent_total": sample.sent_total,
                "stored": sample.stored,
                "delayed": sample.delayed,
                "groups": groups,
            })
        })
        .collect();
    Reply::json(StatusCode::OK, &serde_json::json!({ "samples": samples }))
}
