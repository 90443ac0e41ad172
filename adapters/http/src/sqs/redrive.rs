//! Dead-letter queues and message move tasks: the attributes RedrivePolicy and
//! RedriveAllowPolicy, ListDeadLetterSourceQueues, and StartMessageMoveTask,
//! ListMessageMoveTasks, CancelMessageMoveTask.
//!
//! The engine holds the semantics: a RedrivePolicy is the queue's dead-letter policy
//! (`Node::set_dead_letter`: after maxReceiveCount failed deliveries a message becomes an
//! available message of the dead-letter queue), and a move task is the dead-letter
//! queue's group moving its backlog into another queue (`Node::start_move`). This module
//! translates: ARNs to queues, the policies' JSON, and the task records SQS lists, kept
//! in the dead-letter queue's fields ([`TASKS_MEMBER`]) with the live progress read from
//! the group's counts.

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use sluice_core::engine::types::{EngineError, QueueId};
use sluice_node::{Node, NodeError, QueueView};

use super::queues::{find, group_of, queue_of, Attributes};
use super::{integer, required, string, Ctx, SqsError};
use crate::queue_meta;

/// The attribute naming a queue's dead-letter queue and maxReceiveCount.
pub(crate) const REDRIVE_POLICY: &str = "RedrivePolicy";
/// The attribute naming which queues may use a queue as their dead-letter queue.
pub(crate) const REDRIVE_ALLOW_POLICY: &str = "RedriveAllowPolicy";
/// SQS's bound on maxReceiveCount.
const MAX_RECEIVE_COUNT_MAX: u16 = 1000;
/// SQS's bound on a RedriveAllowPolicy's `sourceQueueArns`.
const SOURCE_ARNS_MAX: usize = 10;
/// Bytes of a policy's JSON text, at most.
const POLICY_BYTES_MAX: usize = 8192;
/// SQS's bound on MaxNumberOfMessagesPerSecond.
const MOVE_RATE_MAX: i64 = 500;
/// The member of the dead-letter queue's fields that holds its move tasks, newest first.
const TASKS_MEMBER: &str = "sqs_move_tasks";
/// Move task records one queue keeps (ListMessageMoveTasks answers at most 10).
const TASKS_KEPT: usize = 10;
/// Source queue URLs one ListDeadLetterSourceQueues answers, at most.
const SOURCES_MAX: i64 = 1000;

/// A queue's ARN: `arn:aws:sqs:REGION:ACCOUNT:NAME`, the account the tenant's project id.
pub(crate) fn queue_arn<N: Node>(ctx: &Ctx<'_, N>, name: &str) -> String {
    format!("arn:aws:sqs:{}:{}:{name}", ctx.config.region, ctx.tenant)
}

/// The queue name an ARN of this tenant's names (another account's names none of its).
fn name_of_arn<'a, N: Node>(
    ctx: &Ctx<'_, N>,
    arn: &'a str,
    parameter: &str,
) -> Result<&'a str, SqsError> {
    let parts: Vec<&str> = arn.split(':').collect();
    match parts[..] {
        ["arn", "aws", "sqs", _, account, name] if account == ctx.tenant && !name.is_empty() => {
            Ok(name)
        }
        _ => Err(SqsError::invalid_parameter(format!(
            "Value {arn} for parameter {parameter} is invalid. Reason: not an ARN of a queue of this account."
        ))),
    }
}

/// The tenant's queue an ARN names.
async fn queue_of_arn<N: Node>(
    ctx: &Ctx<'_, N>,
    arn: &str,
    parameter: &str,
) -> Result<QueueView, SqsError> {
    let name = name_of_arn(ctx, arn, parameter)?;
    find(ctx, name)
        .await
        .ok_or_else(SqsError::queue_does_not_exist)
}

fn invalid_policy(name: &str, why: &str) -> SqsError {
    SqsError::invalid_parameter(format!(
        "Value for parameter {name} is invalid. Reason: {why}"
    ))
}

/// A RedrivePolicy as given: the dead-letter queue's ARN and the count.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Redrive {
    pub target_arn: String,
    pub max_receive_count: u16,
}

/// Checks a RedrivePolicy's text: `None` for the empty text (no policy).
pub(crate) fn parse_redrive(text: &str) -> Result<Option<Redrive>, SqsError> {
    if text.is_empty() {
        return Ok(None);
    }
    let bad = |why| invalid_policy(REDRIVE_POLICY, why);
    if text.len() > POLICY_BYTES_MAX {
        return Err(bad("too long."));
    }
    let Ok(Value::Object(policy)) = serde_json::from_str::<Value>(text) else {
        return Err(bad("not a JSON object."));
    };
    if let Some(key) = policy
        .keys()
        .find(|key| !["deadLetterTargetArn", "maxReceiveCount"].contains(&key.as_str()))
    {
        return Err(bad(&format!("unknown member {key}.")));
    }
    let Some(Value::String(target_arn)) = policy.get("deadLetterTargetArn") else {
        return Err(bad("deadLetterTargetArn is required."));
    };
    // SQS takes the count as a number or as its text.
    let count = match policy.get("maxReceiveCount") {
        Some(Value::Number(number)) => number.as_u64(),
        Some(Value::String(text)) => text.parse().ok(),
        _ => None,
    };
    let max_receive_count = count
        .and_then(|count| u16::try_from(count).ok())
        .filter(|count| (1..=MAX_RECEIVE_COUNT_MAX).contains(count))
        .ok_or_else(|| bad("maxReceiveCount must be between 1 and 1000."))?;
    Ok(Some(Redrive {
        target_arn: target_arn.clone(),
        max_receive_count,
    }))
}

/// A RedriveAllowPolicy as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct AllowPolicy {
    redrive_permission: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    source_queue_arns: Option<Vec<String>>,
}

/// Checks a RedriveAllowPolicy's text; answers it normalised (the empty text stays empty:
/// no policy, which allows every queue of the tenant).
pub(crate) fn normal_allow_policy(text: &str) -> Result<String, SqsError> {
    if text.is_empty() {
        return Ok(String::new());
    }
    let bad = |why| invalid_policy(REDRIVE_ALLOW_POLICY, why);
    if text.len() > POLICY_BYTES_MAX {
        return Err(bad("too long."));
    }
    let policy: AllowPolicy =
        serde_json::from_str(text).map_err(|_| bad("not a valid policy document."))?;
    let arns = policy.source_queue_arns.as_deref();
    match (policy.redrive_permission.as_str(), arns) {
        ("allowAll" | "denyAll", None) => {}
        ("byQueue", Some(arns)) if (1..=SOURCE_ARNS_MAX).contains(&arns.len()) => {}
        ("byQueue", _) => return Err(bad("byQueue takes 1 to 10 sourceQueueArns.")),
        ("allowAll" | "denyAll", Some(_)) => {
            return Err(bad("sourceQueueArns go only with byQueue."))
        }
        _ => return Err(bad("redrivePermission is allowAll, denyAll or byQueue.")),
    }
    Ok(serde_json::to_string(&policy).expect("serialises"))
}

/// Whether `target`'s RedriveAllowPolicy lets the queue `source_arn` use it.
fn allows(target: &QueueView, source_arn: &str) -> bool {
    let text = Attributes::of(target)
        .text(REDRIVE_ALLOW_POLICY)
        .to_string();
    let Ok(policy) = serde_json::from_str::<AllowPolicy>(&text) else {
        return true;
    };
    match policy.redrive_permission.as_str() {
        "denyAll" => false,
        "byQueue" => policy
            .source_queue_arns
            .unwrap_or_default()
            .iter()
            .any(|arn| arn == source_arn),
        _ => true,
    }
}

/// The RedrivePolicy text of `view`'s queue: its dead-letter target and count, if it has
/// a target that still exists.
pub(crate) fn redrive_of<N: Node>(ctx: &Ctx<'_, N>, view: &QueueView) -> Option<String> {
    let count = view.config.max_consume_count?;
    let target = ctx.node.queue(ctx.tenant, view.dead_letter_to?)?;
    let policy = json!({
        "deadLetterTargetArn": queue_arn(ctx, &target.name),
        "maxReceiveCount": count,
    });
    Some(policy.to_string())
}

/// Gives `view`'s queue the policy (`None`: none), after SQS's checks: the target is a
/// queue of the tenant, of the same type, whose RedriveAllowPolicy lets this queue use it.
pub(crate) async fn set_redrive<N: Node>(
    ctx: &Ctx<'_, N>,
    view: &QueueView,
    policy: Option<&Redrive>,
) -> Result<(), SqsError> {
    let Some(policy) = policy else {
        ctx.node.set_dead_letter(view.id, None, None).await?;
        return Ok(());
    };
    let target = queue_of_arn(ctx, &policy.target_arn, REDRIVE_POLICY).await?;
    let fifo = |v: &QueueView| Attributes::of(v).flag("FifoQueue");
    if fifo(&target) != fifo(view) {
        return Err(invalid_policy(
            REDRIVE_POLICY,
            "the dead-letter queue must be of the same type as the source queue.",
        ));
    }
    if !allows(&target, &queue_arn(ctx, &view.name)) {
        return Err(invalid_policy(
            REDRIVE_POLICY,
            "the dead-letter queue's RedriveAllowPolicy does not allow this queue.",
        ));
    }
    let set = ctx
        .node
        .set_dead_letter(view.id, Some(policy.max_receive_count), Some(target.id))
        .await;
    match set {
        Err(NodeError::Engine(EngineError::InvalidConfig(_))) => Err(invalid_policy(
            REDRIVE_POLICY,
            "the dead-letter queue must be another queue spreading over at least the partitions of the source (a FIFO queue with DeduplicationScope messageGroup cannot send its dead letters to one with queue).",
        )),
        other => Ok(other?),
    }
}

/// ListDeadLetterSourceQueues: the queues whose RedrivePolicy names this one, by name.
pub(super) async fn list_sources<N: Node>(
    ctx: &Ctx<'_, N>,
    input: &Map<String, Value>,
) -> Result<Map<String, Value>, SqsError> {
    let dlq = queue_of(ctx, input).await?;
    let max = integer(input, "MaxResults", 1, SOURCES_MAX)?;
    let after = string(input, "NextToken")?;
    let mut names: Vec<String> = sources_of(ctx, &dlq)
        .into_iter()
        .map(|view| view.name.to_string())
        .filter(|name| after.is_none_or(|after| name.as_str() > after))
        .collect();
    names.sort();
    let limit = usize::try_from(max.unwrap_or(SOURCES_MAX)).expect("bounded");
    let more = max.is_some() && names.len() > limit;
    names.truncate(limit);
    let urls = names.iter().map(|name| Value::String(ctx.queue_url(name)));
    let mut answer = Map::new();
    answer.insert("queueUrls".into(), Value::Array(urls.collect()));
    if more {
        let last = names.last().expect("more implies some");
        answer.insert("NextToken".into(), Value::String(last.clone()));
    }
    Ok(answer)
}

/// The tenant's queues whose dead letters go to `dlq`.
fn sources_of<N: Node>(ctx: &Ctx<'_, N>, dlq: &QueueView) -> Vec<QueueView> {
    ctx.node
        .queues_of(ctx.tenant)
        .into_iter()
        .filter(|view| view.dead_letter_to == Some(dlq.id))
        .collect()
}

/// A move task as the dead-letter queue's fields keep it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct TaskRecord {
    handle: String,
    source: String,
    destination: String,
    rate: Option<i64>,
    started_ms: u64,
    /// The group's `moved_total` before the task.
    moved_before: u64,
    to_move: u64,
    /// RUNNING until a later record or a cancel settles it.
    status: String,
    /// What it moved, once settled.
    moved: u64,
    failure: Option<String>,
}

const RUNNING: &str = "RUNNING";

fn task_records(view: &QueueView) -> Vec<TaskRecord> {
    queue_meta::QueueMeta::of(view)
        .others
        .get(TASKS_MEMBER)
        .and_then(|tasks| serde_json::from_value(tasks.clone()).ok())
        .unwrap_or_default()
}

/// The group's move progress: whether a task runs on any partition, and moved so far.
async fn progress<N: Node>(ctx: &Ctx<'_, N>, dlq: &QueueView) -> Result<(bool, u64), SqsError> {
    let group = group_of(ctx, dlq).await?;
    let counts = ctx.node.queue_counts(dlq.id).await?;
    let stats = counts
        .groups
        .iter()
        .find(|(g, _)| *g == group)
        .map(|(_, stats)| *stats)
        .unwrap_or_default();
    Ok((stats.moving > 0, stats.moved_total))
}

/// A record settled: a running one whose task has ended is COMPLETED.
fn settled(mut record: TaskRecord, (moving, moved_total): (bool, u64)) -> TaskRecord {
    if record.status == RUNNING {
        record.moved = moved_total.saturating_sub(record.moved_before);
        if !moving {
            record.status = "COMPLETED".into();
        }
    }
    record
}

/// StartMessageMoveTask: from a dead-letter queue (SourceArn) to DestinationArn, or to
/// its only source queue when none is given.
pub(super) async fn start_move<N: Node>(
    ctx: &Ctx<'_, N>,
    input: &Map<String, Value>,
) -> Result<Map<String, Value>, SqsError> {
    let source_arn = required(input, "SourceArn")?;
    let dlq = queue_of_arn(ctx, source_arn, "SourceArn").await?;
    let sources = sources_of(ctx, &dlq);
    if sources.is_empty() {
        return Err(SqsError::invalid_parameter(
            "Source queue must be configured as a Dead Letter Queue.",
        ));
    }
    let destination = match string(input, "DestinationArn")? {
        Some(arn) => queue_of_arn(ctx, arn, "DestinationArn").await?,
        None if sources.len() == 1 => sources[0].clone(),
        None => {
            return Err(SqsError::invalid_parameter(
                "DestinationArn is required: the dead-letter queue has several source queues.",
            ))
        }
    };
    let rate = integer(input, "MaxNumberOfMessagesPerSecond", 1, MOVE_RATE_MAX)?;
    let group = group_of(ctx, &dlq).await?;
    let (moving, moved_total) = progress(ctx, &dlq).await?;
    if moving {
        return Err(SqsError::unsupported_operation(
            "A message move task is already running on this queue.",
        ));
    }
    let counts = ctx.node.queue_counts(dlq.id).await?;
    let to_move = counts
        .groups
        .iter()
        .find(|(g, _)| *g == group)
        .map_or(0, |(_, stats)| stats.backlog);
    let started_ms = ctx.node.wall_ms();
    let handle = hex::encode(format!("{}:{started_ms}", dlq.id.0));
    let record = TaskRecord {
        handle: handle.clone(),
        source: source_arn.to_string(),
        destination: queue_arn(ctx, &destination.name),
        rate,
        started_ms,
        moved_before: moved_total,
        to_move,
        status: RUNNING.into(),
        moved: 0,
        failure: None,
    };
    save_records(ctx, dlq.id, (false, moved_total), |records| {
        records.insert(0, record.clone());
    })
    .await?;
    // Per partition: the task's rate shared by the partitions the queue spreads over.
    let partitions = i64::from(dlq.config.partitions_on(ctx.node.partition_count()).max(1));
    let per_second = rate.map_or(0, |rate| (rate + partitions - 1) / partitions);
    let per_second = u32::try_from(per_second).expect("at most MOVE_RATE_MAX");
    let started = ctx
        .node
        .start_move((dlq.id, group), destination.id, per_second)
        .await;
    if let Err(error) = started {
        let failure = error.to_string();
        let _ = save_records(ctx, dlq.id, (false, moved_total), |records| {
            if let Some(record) = records.iter_mut().find(|r| r.handle == handle) {
                record.status = "FAILED".into();
                record.failure = Some(failure.clone());
            }
        })
        .await;
        // A part-way start leaves partitions moving: stop them (best effort).
        let _ = ctx.node.stop_move(dlq.id, group).await;
        return Err(error.into());
    }
    let mut answer = Map::new();
    answer.insert("TaskHandle".into(), Value::String(handle));
    Ok(answer)
}

/// Changes the dead-letter queue's task records by compare-and-set on its fields,
/// settling running ones by `progress` first and keeping the newest [`TASKS_KEPT`].
async fn save_records<N: Node>(
    ctx: &Ctx<'_, N>,
    dlq: QueueId,
    progress: (bool, u64),
    change: impl Fn(&mut Vec<TaskRecord>),
) -> Result<(), SqsError> {
    let read = async || {
        ctx.node
            .queue(ctx.tenant, dlq)
            .ok_or_else(SqsError::queue_does_not_exist)
    };
    queue_meta::update(ctx.node, read, |view, meta| {
        let mut records: Vec<TaskRecord> = task_records(view)
            .into_iter()
            .map(|record| settled(record, progress))
            .collect();
        change(&mut records);
        records.truncate(TASKS_KEPT);
        let value = serde_json::to_value(&records).expect("serialises");
        meta.others.insert(TASKS_MEMBER.into(), value);
        Ok::<_, SqsError>(())
    })
    .await
}

/// ListMessageMoveTasks: the newest tasks of a dead-letter queue, at most MaxResults (1
/// to 10, 1 by default).
pub(super) async fn list_moves<N: Node>(
    ctx: &Ctx<'_, N>,
    input: &Map<String, Value>,
) -> Result<Map<String, Value>, SqsError> {
    let source_arn = required(input, "SourceArn")?;
    let dlq = queue_of_arn(ctx, source_arn, "SourceArn").await?;
    let max = integer(input, "MaxResults", 1, 10)?.unwrap_or(1);
    let live = progress(ctx, &dlq).await?;
    let results: Vec<Value> = task_records(&dlq)
        .into_iter()
        .take(usize::try_from(max).expect("bounded"))
        .map(|record| {
            let record = settled(record, live);
            let mut entry = Map::new();
            if record.status == RUNNING {
                entry.insert("TaskHandle".into(), Value::String(record.handle.clone()));
            }
            entry.insert("Status".into(), Value::String(record.status.clone()));
            entry.insert("SourceArn".into(), Value::String(record.source.clone()));
            entry.insert(
                "DestinationArn".into(),
                Value::String(record.destination.clone()),
            );
            if let Some(rate) = record.rate {
                entry.insert("MaxNumberOfMessagesPerSecond".into(), Value::from(rate));
            }
            entry.insert(
                "ApproximateNumberOfMessagesMoved".into(),
                Value::from(record.moved),
            );
            entry.insert(
                "ApproximateNumberOfMessagesToMove".into(),
                Value::from(record.to_move),
            );
            if let Some(failure) = &record.failure {
                entry.insert("FailureReason".into(), Value::String(failure.clone()));
            }
            entry.insert("StartedTimestamp".into(), Value::from(record.started_ms));
            Value::Object(entry)
        })
        .collect();
    let mut answer = Map::new();
    answer.insert("Results".into(), Value::Array(results));
    Ok(answer)
}

/// CancelMessageMoveTask: stops a running task; answers what it had moved.
pub(super) async fn cancel_move<N: Node>(
    ctx: &Ctx<'_, N>,
    input: &Map<String, Value>,
) -> Result<Map<String, Value>, SqsError> {
    let handle = required(input, "TaskHandle")?;
    let queue = hex::decode(handle)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .and_then(|text| text.split_once(':')?.0.parse().ok())
        .map(QueueId)
        .ok_or_else(SqsError::resource_not_found)?;
    let dlq = ctx
        .node
        .queue(ctx.tenant, queue)
        .ok_or_else(SqsError::resource_not_found)?;
    let live = progress(ctx, &dlq).await?;
    let running = task_records(&dlq)
        .into_iter()
        .map(|record| settled(record, live))
        .find(|record| record.handle == handle && record.status == RUNNING)
        .ok_or_else(SqsError::resource_not_found)?;
    let group = group_of(ctx, &dlq).await?;
    ctx.node.stop_move(dlq.id, group).await?;
    let (_, moved_total) = progress(ctx, &dlq).await?;
    let moved = moved_total.saturating_sub(running.moved_before);
    save_records(ctx, dlq.id, (false, moved_total), |records| {
        if let Some(record) = records.iter_mut().find(|r| r.handle == handle) {
            record.status = "CANCELLED".into();
            record.moved = moved;
        }
    })
    .await?;
    let mut answer = Map::new();
    answer.insert(
        "ApproximateNumberOfMessagesMoved".into(),
        Value::from(moved),
    );
    Ok(answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redrive_policies_are_checked_as_sqs_does() {
        let arn = "arn:aws:sqs:r:p:dlq";
        let parsed = parse_redrive(&format!(
            r#"{{"deadLetterTargetArn":"{arn}","maxReceiveCount":"5"}}"#
        ))
        .unwrap()
        .unwrap();
        assert_eq!(parsed.max_receive_count, 5);
        assert_eq!(parsed.target_arn, arn);
        assert_eq!(parse_redrive("").unwrap(), None);
        for bad in [
            "not json",
            "[]",
            r#"{"maxReceiveCount":5}"#,
            r#"{"deadLetterTargetArn":"a","maxReceiveCount":0}"#,
            r#"{"deadLetterTargetArn":"a","maxReceiveCount":1001}"#,
            r#"{"deadLetterTargetArn":"a","maxReceiveCount":5,"x":1}"#,
        ] {
            assert!(parse_redrive(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn allow_policies_are_checked_and_normalised() {
        assert_eq!(normal_allow_policy("").unwrap(), "");
        assert_eq!(
            normal_allow_policy(r#"{ "redrivePermission" : "denyAll" }"#).unwrap(),
            r#"{"redrivePermission":"denyAll"}"#
        );
        let by_queue = r#"{"redrivePermission":"byQueue","sourceQueueArns":["arn:aws:sqs:r:p:a"]}"#;
        assert_eq!(normal_allow_policy(by_queue).unwrap(), by_queue);
        for bad in [
            r#"{"redrivePermission":"byQueue"}"#,
            r#"{"redrivePermission":"allowAll","sourceQueueArns":["a"]}"#,
            r#"{"redrivePermission":"sometimes"}"#,
            r#"{"redrivePermission":"allowAll","other":1}"#,
        ] {
            assert!(normal_allow_policy(bad).is_err(), "{bad}");
        }
        let many: Vec<String> = (0..11)
            .map(|i| format!("\"arn:aws:sqs:r:p:q{i}\""))
            .collect();
        let too_many = format!(
            r#"{{"redrivePermission":"byQueue","sourceQueueArns":[{}]}}"#,
            many.join(",")
        );
        assert!(normal_allow_policy(&too_many).is_err());
    }
}
