//! Queue operations: CreateQueue, GetQueueUrl, ListQueues, DeleteQueue,
//! GetQueueAttributes, SetQueueAttributes, PurgeQueue; and the lookups every operation
//! shares (a queue by its URL, the implicit group).

use std::collections::BTreeMap;

use serde_json::{Map, Value};
use sluice_core::engine::types::{
    EngineError, FifoScope, GroupId, QueueConfig, QueueMode, RetryPolicy,
};
use sluice_node::{Node, NodeError, QueueView};

use super::redrive::{self, Redrive, REDRIVE_ALLOW_POLICY, REDRIVE_POLICY};
use super::{integer, required, string, Ctx, SqsError, GROUP};
use crate::queue_meta::{self, QueueMeta};

/// Queue names: 1 to 80 of `A-Z a-z 0-9 - _`, and `.fifo` at the end of a FIFO queue's.
const NAME_BYTES_MAX: usize = 80;
/// SQS's window for FIFO deduplication ids.
const FIFO_DEDUP_WINDOW_MS: u64 = 5 * 60 * 1000;
/// Queue URLs one ListQueues answers, at most (SQS's own limit).
const LIST_RESULTS_MAX: i64 = 1000;
/// The member of the queue's fields that holds its SQS attributes.
const SQS_MEMBER: &str = "sqs";
/// The member of the queue's fields that holds the time of its last purge (queue time,
/// epoch milliseconds).
const PURGED_MEMBER: &str = "sqs_purged_ms";
/// How long after a purge another is refused (SQS's PurgeQueueInProgress).
const PURGE_INTERVAL_MS: u64 = 60_000;

/// What values a queue attribute takes.
enum Kind {
    /// A whole number within the bounds.
    Number(i64, i64),
    /// `true` or `false`, in any case.
    Flag,
    /// One of the names, as written.
    Choice(&'static [&'static str]),
    /// A JSON policy document (`redrive`); empty for none.
    Policy,
}

/// A queue attribute this adapter serves: its name, default and values.
struct AttributeRule {
    name: &'static str,
    default: &'static str,
    kind: Kind,
}

/// FIFO deduplication within the whole queue (SQS's default).
pub(crate) const SCOPE_QUEUE: &str = "queue";
/// FIFO deduplication within each message group.
const SCOPE_GROUP: &str = "messageGroup";
/// The attributes only FIFO queues have.
const FIFO_ONLY: [&str; 3] = [
    "ContentBasedDeduplication",
    "DeduplicationScope",
    "FifoThroughputLimit",
];
/// The attributes fixed once the queue exists: they are the engine's queue configuration
/// (mode, retention, the partitions a FIFO queue spreads over).
const FIXED: [&str; 3] = ["FifoQueue", "MessageRetentionPeriod", "DeduplicationScope"];

const ATTRIBUTES: [AttributeRule; 11] = [
    AttributeRule {
        name: "DelaySeconds",
        default: "0",
        kind: Kind::Number(0, 900),
    },
    AttributeRule {
        name: "MaximumMessageSize",
        default: "262144",
        kind: Kind::Number(1024, 262_144),
    },
    AttributeRule {
        name: "MessageRetentionPeriod",
        default: "345600",
        kind: Kind::Number(60, 1_209_600),
    },
    AttributeRule {
        name: "ReceiveMessageWaitTimeSeconds",
        default: "0",
        kind: Kind::Number(0, 20),
    },
    AttributeRule {
        name: "VisibilityTimeout",
        default: "30",
        kind: Kind::Number(0, 43_200),
    },
    AttributeRule {
        name: "FifoQueue",
        default: "false",
        kind: Kind::Flag,
    },
    AttributeRule {
        name: "ContentBasedDeduplication",
        default: "false",
        kind: Kind::Flag,
    },
    AttributeRule {
        name: "DeduplicationScope",
        default: SCOPE_QUEUE,
        kind: Kind::Choice(&[SCOPE_QUEUE, SCOPE_GROUP]),
    },
    AttributeRule {
        name: "FifoThroughputLimit",
        default: "perQueue",
        kind: Kind::Choice(&["perQueue", "perMessageGroupId"]),
    },
    // The engine's dead-letter policy: never kept in the queue's fields.
    AttributeRule {
        name: REDRIVE_POLICY,
        default: "",
        kind: Kind::Policy,
    },
    AttributeRule {
        name: REDRIVE_ALLOW_POLICY,
        default: "",
        kind: Kind::Policy,
    },
];

/// The SQS attributes kept in a queue's fields (the member [`SQS_MEMBER`], names to
/// values; the DMS adapter keeps it when it rewrites its own); none when absent or not
/// such a map.
fn sqs_fields(meta: &QueueMeta) -> BTreeMap<String, String> {
    meta.others
        .get(SQS_MEMBER)
        .and_then(|sqs| serde_json::from_value(sqs.clone()).ok())
        .unwrap_or_default()
}

/// A queue's SQS attributes: those set at creation over the defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Attributes(BTreeMap<String, String>);

impl Attributes {
    /// The attributes of `view`'s queue.
    pub fn of(view: &QueueView) -> Attributes {
        let mut attributes: BTreeMap<String, String> = ATTRIBUTES
            .iter()
            .map(|rule| (rule.name.to_string(), rule.default.to_string()))
            .collect();
        // A queue made through DMS: its mode and retention are the truth.
        attributes.insert(
            "FifoQueue".into(),
            matches!(view.config.mode, QueueMode::Fifo(_)).to_string(),
        );
        attributes.insert(
            "MessageRetentionPeriod".into(),
            (view.config.retention_ms / 1000).to_string(),
        );
        attributes.extend(sqs_fields(&QueueMeta::of(view)));
        // The scope is where the engine deduplicates: one partition is the whole queue.
        let scope = if view.config.partitions == 1 {
            SCOPE_QUEUE
        } else {
            SCOPE_GROUP
        };
        attributes.insert("DeduplicationScope".into(), scope.into());
        Attributes(attributes)
    }

    pub fn number(&self, name: &str) -> i64 {
        self.0
            .get(name)
            .and_then(|v| v.parse().ok())
            .unwrap_or_default()
    }

    pub fn text(&self, name: &str) -> &str {
        self.0.get(name).map_or("", String::as_str)
    }

    pub fn flag(&self, name: &str) -> bool {
        self.0.get(name).is_some_and(|v| v == "true")
    }
}

/// Checks CreateQueue's `Attributes`; answers them normalised.
fn checked_attributes(input: &Map<String, Value>) -> Result<BTreeMap<String, String>, SqsError> {
    let mut checked = BTreeMap::new();
    let Some(given) = input.get("Attributes") else {
        return Ok(checked);
    };
    let Value::Object(given) = given else {
        return Err(SqsError::invalid_parameter("Attributes must be a map."));
    };
    for (name, value) in given {
        let rule = ATTRIBUTES
            .iter()
            .find(|rule| rule.name == name)
            .ok_or_else(|| SqsError::invalid_attribute_name(name))?;
        let Value::String(value) = value else {
            return Err(SqsError::invalid_parameter(format!(
                "Invalid value for the parameter {name}."
            )));
        };
        let normal = match rule.kind {
            Kind::Number(min, max) => {
                let number: i64 = value.parse().map_err(|_| invalid_value(name))?;
                if !(min..=max).contains(&number) {
                    return Err(invalid_value(name));
                }
                number.to_string()
            }
            Kind::Flag => match value.to_ascii_lowercase().as_str() {
                "true" => "true".to_string(),
                "false" => "false".to_string(),
                _ => return Err(invalid_value(name)),
            },
            Kind::Choice(names) => names
                .iter()
                .find(|choice| **choice == value)
                .ok_or_else(|| invalid_value(name))?
                .to_string(),
            Kind::Policy if name == REDRIVE_POLICY => {
                redrive::parse_redrive(value)?;
                value.clone()
            }
            Kind::Policy => redrive::normal_allow_policy(value)?,
        };
        checked.insert(name.clone(), normal);
    }
    Ok(checked)
}

/// The default of a served attribute.
fn default_of(name: &str) -> &'static str {
    ATTRIBUTES
        .iter()
        .find(|rule| rule.name == name)
        .map(|rule| rule.default)
        .expect("a served attribute")
}

fn invalid_value(name: &str) -> SqsError {
    SqsError::invalid_parameter(format!("Invalid value for the parameter {name}."))
}

fn check_name(name: &str, fifo: bool) -> Result<(), SqsError> {
    let stem = if fifo {
        name.strip_suffix(".fifo").ok_or_else(|| {
            SqsError::invalid_parameter("The name of a FIFO queue can only include alphanumeric characters, hyphens, or underscores, must end with .fifo suffix and be 1 to 80 in length.")
        })?
    } else {
        name
    };
    let valid = !stem.is_empty()
        && name.len() <= NAME_BYTES_MAX
        && stem
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if valid {
        Ok(())
    } else {
        Err(SqsError::invalid_parameter(
            "Can only include alphanumeric characters, hyphens, or underscores. 1 to 80 in length",
        ))
    }
}

pub(super) async fn create<N: Node>(
    ctx: &Ctx<'_, N>,
    input: &Map<String, Value>,
) -> Result<Map<String, Value>, SqsError> {
    let name = required(input, "QueueName")?;
    let mut attributes = checked_attributes(input)?;
    let fifo = attributes.get("FifoQueue").is_some_and(|v| v == "true");
    if let Some(name) = FIFO_ONLY
        .iter()
        .find(|name| !fifo && attributes.contains_key(**name))
    {
        return Err(SqsError::invalid_attribute_name(name));
    }
    if name.ends_with(".fifo") && !fifo {
        return Err(SqsError::invalid_parameter(
            "Can only include alphanumeric characters, hyphens, or underscores. 1 to 80 in length",
        ));
    }
    check_name(name, fifo)?;
    let tags = super::tags::initial(input)?;
    if attributes.get("FifoQueue").is_some_and(|v| v == "false") {
        attributes.remove("FifoQueue");
    }
    let redrive = match attributes.remove(REDRIVE_POLICY) {
        Some(text) => redrive::parse_redrive(&text)?,
        None => None,
    };
    if let Some(view) = find(ctx, name).await {
        return existing(ctx, &view, &attributes, redrive.as_ref()).await;
    }
    let retention_s: u64 = attributes
        .get("MessageRetentionPeriod")
        .map_or(default_of("MessageRetentionPeriod"), String::as_str)
        .parse()
        .expect("checked or a default: a number");
    let config = QueueConfig {
        mode: if fifo {
            QueueMode::Fifo(FifoScope::MessageGroup)
        } else {
            QueueMode::Normal
        },
        retention_ms: retention_s * 1000,
        max_consume_count: None,
        retry: RetryPolicy::Immediate,
        dedup_window_ms: FIFO_DEDUP_WINDOW_MS,
        partitions: fifo_partitions(fifo, &attributes),
    };
    let mut meta = QueueMeta {
        tags,
        ..QueueMeta::default()
    };
    let sqs = serde_json::to_value(&attributes).expect("serialises");
    meta.others.insert(SQS_MEMBER.into(), sqs);
    let meta = meta.to_bytes();
    match ctx.node.create_queue(ctx.tenant, name, config, meta).await {
        Ok(queue) => {
            // The group; a crash before it is made leaves a queue that gets it on first
            // use (`group_of`).
            match ctx.node.create_groups(queue, &[GROUP.to_string()]).await {
                Ok(_) | Err(NodeError::Engine(EngineError::GroupExists)) => {}
                Err(error) => return Err(error.into()),
            }
            // A failure here leaves the queue without its policy; a retried create
            // finishes it (`existing`).
            if let Some(redrive) = &redrive {
                let view = find(ctx, name)
                    .await
                    .ok_or_else(SqsError::queue_does_not_exist)?;
                redrive::set_redrive(ctx, &view, Some(redrive)).await?;
            }
            Ok(url_answer(ctx, name))
        }
        // Created meanwhile (another request, or this one's earlier attempt).
        Err(NodeError::Engine(EngineError::QueueExists)) => match find(ctx, name).await {
            Some(view) => existing(ctx, &view, &attributes, redrive.as_ref()).await,
            None => Err(SqsError::unavailable("the queue is being created; retry")),
        },
        Err(error) => Err(error.into()),
    }
}

/// The partitions a new queue spreads over (`QueueConfig::partitions`): a FIFO queue
/// deduplicating queue-wide (SQS's default) lives in one partition, where the engine
/// deduplicates and orders; one deduplicating per message group spreads its groups over
/// every partition, each group in one. A standard queue spreads over every partition.
fn fifo_partitions(fifo: bool, attributes: &BTreeMap<String, String>) -> u16 {
    let scope = attributes
        .get("DeduplicationScope")
        .map_or(default_of("DeduplicationScope"), String::as_str);
    u16::from(fifo && scope == SCOPE_QUEUE)
}

/// CreateQueue of a queue that exists: its URL when every given attribute has its value
/// (a RedrivePolicy the queue lacks is given to it: a create cut short before it).
async fn existing<N: Node>(
    ctx: &Ctx<'_, N>,
    view: &QueueView,
    asked: &BTreeMap<String, String>,
    redrive: Option<&Redrive>,
) -> Result<Map<String, Value>, SqsError> {
    let has = Attributes::of(view);
    if asked
        .iter()
        .any(|(name, value)| has.0.get(name) != Some(value))
    {
        return Err(SqsError::queue_name_exists(&view.name));
    }
    if let Some(redrive) = redrive {
        let current = redrive::redrive_of(ctx, view)
            .and_then(|text| redrive::parse_redrive(&text).ok().flatten());
        match current {
            None => redrive::set_redrive(ctx, view, Some(redrive)).await?,
            Some(current) if current == *redrive => {}
            Some(_) => return Err(SqsError::queue_name_exists(&view.name)),
        }
    }
    group_of(ctx, view).await?;
    Ok(url_answer(ctx, &view.name))
}

fn url_answer<N: Node>(ctx: &Ctx<'_, N>, name: &str) -> Map<String, Value> {
    let mut answer = Map::new();
    answer.insert("QueueUrl".into(), Value::String(ctx.queue_url(name)));
    answer
}

/// The tenant's queue `name`, reading partition 0's leader once when it is not in this
/// node's directory (a queue created through another node a moment ago).
pub(crate) async fn find<N: Node>(ctx: &Ctx<'_, N>, name: &str) -> Option<QueueView> {
    if let Some(view) = ctx.node.queue_named(ctx.tenant, name) {
        return Some(view);
    }
    ctx.node.sync_directory().await;
    ctx.node.queue_named(ctx.tenant, name)
}

/// The queue a `QueueUrl` names: its last two path segments are the tenant's project id
/// and the queue's name; another tenant's project names no queue of this one.
pub(crate) async fn queue_of<N: Node>(
    ctx: &Ctx<'_, N>,
    input: &Map<String, Value>,
) -> Result<QueueView, SqsError> {
    let url = required(input, "QueueUrl")?;
    let path = match url.split_once("://") {
        Some((_, rest)) => rest.split_once('/').map_or("", |(_, path)| path),
        None => url.trim_start_matches('/'),
    };
    let mut segments = path.rsplit('/');
    let (Some(name), Some(project)) = (segments.next(), segments.next()) else {
        return Err(SqsError::queue_does_not_exist());
    };
    if project != ctx.tenant || name.is_empty() {
        return Err(SqsError::queue_does_not_exist());
    }
    find(ctx, name)
        .await
        .ok_or_else(SqsError::queue_does_not_exist)
}

/// The queue's SQS group, made when missing (a queue created through DMS, or an SQS
/// create that stopped before making it).
pub(crate) async fn group_of<N: Node>(
    ctx: &Ctx<'_, N>,
    view: &QueueView,
) -> Result<GroupId, SqsError> {
    if let Some((group, _)) = view.groups.iter().find(|(_, name)| name == GROUP) {
        return Ok(*group);
    }
    match ctx.node.create_groups(view.id, &[GROUP.to_string()]).await {
        Ok(groups) => Ok(groups[0]),
        Err(NodeError::Engine(EngineError::GroupExists)) => {
            ctx.node.sync_directory().await;
            ctx.node
                .queue(ctx.tenant, view.id)
                .and_then(|v| v.groups.iter().find(|(_, n)| n == GROUP).map(|(g, _)| *g))
                .ok_or_else(|| SqsError::unavailable("the queue's group is being made; retry"))
        }
        Err(error) => Err(error.into()),
    }
}

pub(super) async fn get_url<N: Node>(
    ctx: &Ctx<'_, N>,
    input: &Map<String, Value>,
) -> Result<Map<String, Value>, SqsError> {
    let name = required(input, "QueueName")?;
    if let Some(owner) = string(input, "QueueOwnerAWSAccountId")? {
        if owner != ctx.tenant {
            return Err(SqsError::queue_does_not_exist());
        }
    }
    let view = find(ctx, name)
        .await
        .ok_or_else(SqsError::queue_does_not_exist)?;
    Ok(url_answer(ctx, &view.name))
}

pub(super) fn list<N: Node>(
    ctx: &Ctx<'_, N>,
    input: &Map<String, Value>,
) -> Result<Map<String, Value>, SqsError> {
    let prefix = string(input, "QueueNamePrefix")?.unwrap_or("");
    let max = integer(input, "MaxResults", 1, LIST_RESULTS_MAX)?;
    let after = string(input, "NextToken")?;
    let mut names: Vec<String> = ctx
        .node
        .queues_of(ctx.tenant)
        .into_iter()
        .map(|view| view.name.to_string())
        .filter(|name| name.starts_with(prefix))
        .filter(|name| after.is_none_or(|after| name.as_str() > after))
        .collect();
    names.sort();
    let limit = usize::try_from(max.unwrap_or(LIST_RESULTS_MAX)).expect("bounded");
    let more = max.is_some() && names.len() > limit;
    names.truncate(limit);
    let mut answer = Map::new();
    answer.insert(
        "QueueUrls".into(),
        Value::Array(
            names
                .iter()
                .map(|name| Value::String(ctx.queue_url(name)))
                .collect(),
        ),
    );
    if more {
        let last = names.last().expect("more implies some");
        answer.insert("NextToken".into(), Value::String(last.clone()));
    }
    Ok(answer)
}

pub(super) async fn delete<N: Node>(
    ctx: &Ctx<'_, N>,
    input: &Map<String, Value>,
) -> Result<Map<String, Value>, SqsError> {
    let view = queue_of(ctx, input).await?;
    ctx.node.delete_queue(view.id).await?;
    Ok(Map::new())
}

pub(super) async fn attributes<N: Node>(
    ctx: &Ctx<'_, N>,
    input: &Map<String, Value>,
) -> Result<Map<String, Value>, SqsError> {
    let view = queue_of(ctx, input).await?;
    let names = super::messages::names(input, "AttributeNames")?;
    let mut all = Attributes::of(&view).0;
    let group = group_of(ctx, &view).await?;
    let counts = ctx.node.queue_counts(view.id).await?;
    let stats = counts
        .groups
        .iter()
        .find(|(g, _)| *g == group)
        .map(|(_, s)| *s)
        .unwrap_or_default();
    let visible = stats.backlog.saturating_sub(stats.in_flight);
    all.insert(
        "ApproximateNumberOfMessages".into(),
        visible.saturating_sub(counts.delayed).to_string(),
    );
    all.insert(
        "ApproximateNumberOfMessagesNotVisible".into(),
        stats.in_flight.to_string(),
    );
    all.insert(
        "ApproximateNumberOfMessagesDelayed".into(),
        counts.delayed.to_string(),
    );
    all.insert(
        "CreatedTimestamp".into(),
        (view.created_ms / 1000).to_string(),
    );
    all.insert(
        "LastModifiedTimestamp".into(),
        (view.created_ms / 1000).to_string(),
    );
    all.insert("QueueArn".into(), redrive::queue_arn(ctx, &view.name));
    all.insert(
        REDRIVE_POLICY.into(),
        redrive::redrive_of(ctx, &view).unwrap_or_default(),
    );
    if all.get("FifoQueue").is_none_or(|v| v != "true") {
        all.remove("FifoQueue");
        for name in FIFO_ONLY {
            all.remove(name);
        }
    }
    let wanted = |name: &str| names.iter().any(|n| n == "All" || n == name);
    for name in &names {
        if name != "All" && !all.contains_key(name) {
            return Err(SqsError::invalid_attribute_name(name));
        }
    }
    // The policies are answered only when the queue has them.
    let empty_policy = |name: &str, value: &str| {
        value.is_empty() && [REDRIVE_POLICY, REDRIVE_ALLOW_POLICY].contains(&name)
    };
    let chosen: Map<String, Value> = all
        .into_iter()
        .filter(|(name, value)| wanted(name) && !empty_policy(name, value))
        .map(|(name, value)| (name, Value::String(value)))
        .collect();
    let mut answer = Map::new();
    if !chosen.is_empty() {
        answer.insert("Attributes".into(), Value::Object(chosen));
    }
    Ok(answer)
}

/// SetQueueAttributes: the attributes kept in the queue's fields (delay, maximum size,
/// wait, visibility, content-based deduplication) change by compare-and-set on those
/// fields, keeping whatever else they hold (the DMS adapter's description and tags).
/// The queue's type and its retention (the engine's configuration) cannot change.
pub(super) async fn set_attributes<N: Node>(
    ctx: &Ctx<'_, N>,
    input: &Map<String, Value>,
) -> Result<Map<String, Value>, SqsError> {
    let mut asked = checked_attributes(input)?;
    let redrive = asked.remove(REDRIVE_POLICY);
    for fixed in FIXED {
        if asked.contains_key(fixed) {
            return Err(SqsError::invalid_parameter(format!(
                "The attribute {fixed} cannot be changed after the queue is created."
            )));
        }
    }
    queue_meta::update(
        ctx.node,
        async || queue_of(ctx, input).await,
        |view, meta| {
            if let Some(name) = FIFO_ONLY
                .iter()
                .find(|name| asked.contains_key(**name) && !Attributes::of(view).flag("FifoQueue"))
            {
                return Err(SqsError::invalid_attribute_name(name));
            }
            let sqs = meta
                .others
                .entry(SQS_MEMBER)
                .or_insert_with(|| Value::Object(Map::new()));
            if !sqs.is_object() {
                *sqs = Value::Object(Map::new());
            }
            let sqs = sqs.as_object_mut().expect("made an object above");
            for (name, value) in &asked {
                sqs.insert(name.clone(), Value::String(value.clone()));
            }
            Ok(())
        },
    )
    .await?;
    if let Some(text) = redrive {
        let view = queue_of(ctx, input).await?;
        let policy = redrive::parse_redrive(&text)?;
        redrive::set_redrive(ctx, &view, policy.as_ref()).await?;
    }
    Ok(Map::new())
}

/// PurgeQueue: every message of the queue goes, on every partition at its leader
/// (`Node::purge_queue`); one sent meanwhile may stay, as in SQS. A second purge within
/// [`PURGE_INTERVAL_MS`] of the last is refused (PurgeQueueInProgress): the time of the
/// last is kept in the queue's fields ([`PURGED_MEMBER`]), claimed by compare-and-set
/// before purging (so of two concurrent purges one is refused) and given back should the
/// purge fail (so a retry is not refused).
pub(super) async fn purge<N: Node>(
    ctx: &Ctx<'_, N>,
    input: &Map<String, Value>,
) -> Result<Map<String, Value>, SqsError> {
    let now = ctx.node.now_ms();
    let read = async || queue_of(ctx, input).await;
    let (queue, last) = queue_meta::update(ctx.node, read, |view, meta| {
        let last = meta.others.get(PURGED_MEMBER).and_then(Value::as_u64);
        if last.is_some_and(|last| now >= last && now - last < PURGE_INTERVAL_MS) {
            return Err(SqsError::purge_queue_in_progress());
        }
        meta.others.insert(PURGED_MEMBER.into(), Value::from(now));
        Ok((view.id, last))
    })
    .await?;
    if let Err(error) = ctx.node.purge_queue(queue).await {
        // Best effort: a claim left behind only delays the next purge by the interval.
        let read = async || queue_of(ctx, input).await;
        let _ = queue_meta::update(ctx.node, read, |_, meta| {
            if meta.others.get(PURGED_MEMBER) == Some(&Value::from(now)) {
                match last {
                    Some(last) => meta.others.insert(PURGED_MEMBER.into(), Value::from(last)),
                    None => meta.others.remove(PURGED_MEMBER),
                };
            }
            Ok::<_, SqsError>(())
        })
        .await;
        return Err(error.into());
    }
    Ok(Map::new())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dms::wire::QueueMeta as DmsQueueMeta;

    #[test]
    fn the_dms_adapter_rewriting_its_fields_keeps_the_sqs_attributes() {
        let written = br#"{"sqs": {"VisibilityTimeout": "60"}}"#;
        let mut dms: DmsQueueMeta = serde_json::from_slice(written).unwrap();
        dms.description = "described through DMS".into();
        let rewritten: QueueMeta = serde_json::from_slice(&dms.to_bytes()).unwrap();
        assert_eq!(sqs_fields(&rewritten)["VisibilityTimeout"], "60");
    }

    #[test]
    fn queue_names_follow_sqs_rules() {
        assert!(check_name("orders-1_a", false).is_ok());
        assert!(check_name("jobs.fifo", true).is_ok());
        assert!(
            check_name("jobs", true).is_err(),
            "a FIFO name ends with .fifo"
        );
        assert!(check_name("", false).is_err());
        assert!(check_name("has space", false).is_err());
        assert!(check_name(&"q".repeat(81), false).is_err());
        assert!(check_name(&"q".repeat(80), false).is_ok());
    }
}
