//! Topics: Metadata, CreateTopics, DeleteTopics, ListOffsets, and the mapping of topic
//! names to the tenant's queues and of node errors to Kafka's error codes.

use bytes::Bytes;
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{
    BrokerId, CreateTopicsRequest, CreateTopicsResponse, DeleteTopicsRequest, DeleteTopicsResponse,
    ListOffsetsRequest, ListOffsetsResponse, MetadataRequest, MetadataResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use sluice_core::engine::types::{EngineError, QueueConfig, QueueId, QueueMode, RetryPolicy};
use sluice_node::{Node, NodeError, QueueView};
use uuid::Uuid;

use super::api::{decode, respond, Context};
use super::{Reply, TOPICS_PER_REQUEST_MAX};

/// How long a topic keeps its messages when CreateTopics does not say (`retention.ms`):
/// 72 hours, the DMS default.
pub const RETENTION_MS_DEFAULT: u64 = 72 * 3_600_000;

/// The Kafka error code of a node error.
pub fn error_code(error: &NodeError) -> i16 {
    let code = match error {
        NodeError::Engine(EngineError::QueueNotFound) => ResponseError::UnknownTopicOrPartition,
        NodeError::Engine(EngineError::NotLeader { .. }) | NodeError::Unavailable(_) => {
            ResponseError::NotLeaderOrFollower
        }
        NodeError::Engine(EngineError::QueueExists) => ResponseError::TopicAlreadyExists,
        NodeError::Engine(EngineError::InvalidName) => ResponseError::InvalidTopicException,
        NodeError::Engine(EngineError::TooManyQueues { .. }) => ResponseError::PolicyViolation,
        NodeError::Engine(
            EngineError::MessageTooLarge { .. }
            | EngineError::AttributesTooLarge { .. }
            | EngineError::BatchBytesTooLarge { .. },
        ) => ResponseError::MessageTooLarge,
        NodeError::Engine(EngineError::BatchTooLarge { .. }) => ResponseError::RecordListTooLarge,
        NodeError::Engine(EngineError::Busy | EngineError::DedupTableFull) => {
            ResponseError::ThrottlingQuotaExceeded
        }
        NodeError::Engine(EngineError::Storage(_)) => ResponseError::KafkaStorageError,
        _ => ResponseError::UnknownServerError,
    };
    code.code()
}

/// A stable topic id: the queue id and a hash of its tenant.
pub fn topic_id(view: &QueueView) -> Uuid {
    let tenant = xxhash_rust::xxh3::xxh3_64(view.tenant.as_bytes());
    Uuid::from_u64_pair(tenant | 1, u64::from(view.id.0))
}

/// The tenant's queue of a topic id (the inverse of [`topic_id`]).
pub fn view_of_topic_id<N: Node>(node: &N, tenant: &str, id: Uuid) -> Option<QueueView> {
    let (_, low) = id.as_u64_pair();
    let queue = QueueId(u32::try_from(low).ok()?);
    node.queue(tenant, queue)
        .filter(|view| topic_id(view) == id)
}

/// The tenant's topics a request names, looked up once per request through the node's
/// name index (no scan of the directory).
pub struct TopicIndex {
    views: Vec<QueueView>,
}

impl TopicIndex {
    /// Every topic of the tenant (Metadata without names).
    pub fn all_of<N: Node>(node: &N, tenant: &str) -> TopicIndex {
        TopicIndex {
            views: node.queues_of(tenant),
        }
    }

    fn named<N: Node>(node: &N, tenant: &str, names: &[&str]) -> TopicIndex {
        let mut views: Vec<QueueView> = names
            .iter()
            .filter_map(|name| node.queue_named(tenant, name))
            .collect();
        views.sort_by(|a, b| a.name.cmp(&b.name));
        views.dedup_by_key(|view| view.id);
        TopicIndex { views }
    }

    pub fn get(&self, name: &str) -> Option<&QueueView> {
        self.views
            .binary_search_by(|view| (*view.name).cmp(name))
            .ok()
            .map(|index| &self.views[index])
    }

    pub fn all(&self) -> &[QueueView] {
        &self.views
    }
}

/// Looks the tenant's topics `names` up, reading partition 0's leader first when one is
/// missing (a topic created through another node a moment ago).
pub async fn topic_index<N: Node>(node: &N, tenant: &str, names: &[&str]) -> TopicIndex {
    let index = TopicIndex::named(node, tenant, names);
    if names.iter().all(|name| index.get(name).is_some()) {
        return index;
    }
    if node.sync_directory().await {
        return TopicIndex::named(node, tenant, names);
    }
    index
}

fn too_many(what: &str, count: usize) -> Option<Reply> {
    (count > TOPICS_PER_REQUEST_MAX).then(|| {
        Reply::Close(format!(
            "{count} {what} in one request; at most {TOPICS_PER_REQUEST_MAX}"
        ))
    })
}

/// What Metadata says about brokers and partition leaders: every node with its Kafka
/// address when `--kafka-brokers` names them, each partition led by the node this
/// node's replica believes leads it; else this node alone, leading every partition.
pub(super) struct Placement {
    brokers: Vec<MetadataResponseBroker>,
    /// Per partition: the leader and the replicas, as broker ids.
    partitions: Vec<(BrokerId, Vec<BrokerId>)>,
}

impl Placement {
    pub(super) async fn read<N: Node>(context: &Context<'_>, node: &N) -> Placement {
        let config = &context.config;
        let me = BrokerId(config.broker_id);
        let alone = |count: u32| Placement {
            brokers: vec![broker_entry(
                me,
                &config.advertised_host,
                config.advertised_port,
            )],
            partitions: (0..count).map(|_| (me, vec![me])).collect(),
        };
        if config.brokers.is_empty() {
            return alone(node.partition_count());
        }
        let known = |id: u64| {
            i32::try_from(id)
                .ok()
                .filter(|id| config.brokers.iter().any(|b| b.id == *id))
                .map(BrokerId)
        };
        let partitions = node
            .local_membership()
            .await
            .into_iter()
            .map(|view| {
                let Ok(view) = view else {
                    // Unreadable here: this node forwards whatever is sent to it.
                    return (me, vec![me]);
                };
                // No known leader (an election under way): this node, which forwards
                // once one is elected.
                let leader = view.leader.and_then(known).unwrap_or(me);
                let mut replicas: Vec<BrokerId> = view
                    .membership
                    .voters
                    .iter()
                    .filter_map(|id| known(*id))
                    .collect();
                if !replicas.contains(&leader) {
                    replicas.push(leader);
                }
                (leader, replicas)
            })
            .collect();
        Placement {
            brokers: config
                .brokers
                .iter()
                .map(|b| broker_entry(BrokerId(b.id), &b.host, b.port))
                .collect(),
            partitions,
        }
    }

    /// The broker leading `partition` as (id, host, port); the first broker (this node
    /// alone, or the first named) for a partition it does not know.
    pub(super) fn leader_address(&self, partition: u32) -> (BrokerId, StrBytes, i32) {
        let leader = usize::try_from(partition)
            .ok()
            .and_then(|p| self.partitions.get(p))
            .map(|(leader, _)| *leader);
        let broker = self
            .brokers
            .iter()
            .find(|b| Some(b.node_id) == leader)
            .or(self.brokers.first())
            .expect("a placement names at least one broker");
        (broker.node_id, broker.host.clone(), broker.port)
    }

    fn node_partitions(&self) -> u32 {
        u32::try_from(self.partitions.len()).expect("partitions are u16")
    }

    /// The cluster's size as a replication factor: the most voters any partition has.
    fn replication_factor(&self) -> i16 {
        let voters = self.partitions.iter().map(|(_, replicas)| replicas.len());
        i16::try_from(voters.max().unwrap_or(1)).unwrap_or(i16::MAX)
    }

    fn topic(&self, view: &QueueView) -> MetadataResponseTopic {
        let mut topic = MetadataResponseTopic::default();
        topic.name = Some(TopicName(StrBytes::from_string(view.name.to_string())));
        topic.topic_id = topic_id(view);
        let count = view.config.partitions_on(self.node_partitions());
        topic.partitions = self
            .partitions
            .iter()
            .take(usize::try_from(count).expect("partitions are u16"))
            .enumerate()
            .map(|(partition, (leader, replicas))| {
                let mut p = MetadataResponsePartition::default();
                p.partition_index = i32::try_from(partition).expect("partitions are u16");
                p.leader_id = *leader;
                p.leader_epoch = 0;
                p.replica_nodes.clone_from(replicas);
                // Raft commits on a majority of voters; Kafka's ISR is the closest thing.
                p.isr_nodes.clone_from(replicas);
                p
            })
            .collect();
        topic
    }
}

fn broker_entry(id: BrokerId, host: &str, port: i32) -> MetadataResponseBroker {
    let mut broker = MetadataResponseBroker::default();
    broker.node_id = id;
    broker.host = StrBytes::from_string(host.to_string());
    broker.port = port;
    broker
}

pub async fn metadata<N: Node>(context: &Context<'_>, node: &N, body: &mut Bytes) -> Reply {
    let request: MetadataRequest = match decode(context.head, body) {
        Ok(request) => request,
        Err(reply) => return reply,
    };
    let placement = Placement::read(context, node).await;
    let mut response = MetadataResponse::default();
    response.brokers.clone_from(&placement.brokers);
    response.cluster_id = Some(StrBytes::from_static_str("sluice"));
    response.controller_id = BrokerId(context.config.broker_id);
    let tenant = context.tenant.project_id.as_str();
    match &request.topics {
        // Null (or, before v1, empty) asks for every topic.
        None => {
            let index = TopicIndex::all_of(node, tenant);
            response.topics = index
                .all()
                .iter()
                .map(|view| placement.topic(view))
                .collect();
        }
        Some(topics) => {
            if let Some(reply) = too_many("topics", topics.len()) {
                return reply;
            }
            let names: Vec<&str> = topics
                .iter()
                .filter_map(|t| t.name.as_ref().map(|n| n.0.as_str()))
                .collect();
            let index = topic_index(node, tenant, &names).await;
            for wanted in topics {
                let Some(name) = &wanted.name else {
                    // Asked by topic id (share consumers resolve their assignment so).
                    match view_of_topic_id(node, tenant, wanted.topic_id) {
                        Some(view) => response.topics.push(placement.topic(&view)),
                        None => {
                            let mut topic = MetadataResponseTopic::default();
                            topic.topic_id = wanted.topic_id;
                            topic.error_code = ResponseError::UnknownTopicId.code();
                            response.topics.push(topic);
                        }
                    }
                    continue;
                };
                match index.get(name.0.as_str()) {
                    Some(view) => response.topics.push(placement.topic(view)),
                    None => {
                        let mut topic = MetadataResponseTopic::default();
                        topic.name = Some(name.clone());
                        topic.error_code = ResponseError::UnknownTopicOrPartition.code();
                        response.topics.push(topic);
                    }
                }
            }
        }
    }
    respond(context.head, &response)
}

/// The partition count of a new topic asking for `wanted` (-1: the node's).
fn topic_partitions(wanted: i32, node_partitions: u32) -> i32 {
    let node = i32::try_from(node_partitions).expect("partitions are u16");
    if wanted == -1 {
        node
    } else {
        wanted
    }
}

/// The queue configuration of a new topic, from its `configs`.
fn topic_config(
    configs: &[kafka_protocol::messages::create_topics_request::CreatableTopicConfig],
) -> Result<QueueConfig, String> {
    let mut config = QueueConfig {
        mode: QueueMode::Normal,
        retention_ms: RETENTION_MS_DEFAULT,
        max_consume_count: None,
        retry: RetryPolicy::Immediate,
        dedup_window_ms: 0,
        partitions: 0,
    };
    for entry in configs {
        let value = entry.value.as_ref().map(StrBytes::as_str);
        match (entry.name.as_str(), value) {
            ("retention.ms", Some(value)) => {
                let ms: i64 = value
                    .parse()
                    .map_err(|_| format!("retention.ms {value:?} is not a number"))?;
                // -1 is Kafka's "forever"; Sluice keeps at most a year.
                config.retention_ms = if ms < 0 {
                    365 * 24 * 3_600_000
                } else {
                    u64::try_from(ms).expect("not negative")
                };
            }
            // Accepted and meaningless here: Sluice's segments, cleanup and replication
            // are its own.
            ("cleanup.policy", Some("delete"))
            | ("segment.bytes" | "segment.ms" | "min.insync.replicas", _)
            | ("compression.type" | "message.timestamp.type", _)
            | ("retention.bytes" | "max.message.bytes", _) => {}
            (name, _) => return Err(format!("topic config {name} is not supported")),
        }
    }
    Ok(config)
}

pub async fn create_topics<N: Node>(context: &Context<'_>, node: &N, body: &mut Bytes) -> Reply {
    let request: CreateTopicsRequest = match decode(context.head, body) {
        Ok(request) => request,
        Err(reply) => return reply,
    };
    if let Some(reply) = too_many("topics", request.topics.len()) {
        return reply;
    }
    let node_partitions = node.partition_count();
    let placement = Placement::read(context, node).await;
    let cluster = placement.replication_factor();
    let mut response = CreateTopicsResponse::default();
    for topic in &request.topics {
        let mut result = CreatableTopicResult::default();
        result.name = topic.name.clone();
        result.num_partitions = topic_partitions(topic.num_partitions, node_partitions);
        result.replication_factor = cluster;
        let refusal = if topic.num_partitions == 0
            || topic.num_partitions < -1
            || topic.num_partitions > i32::try_from(node_partitions).expect("u16")
        {
            Some((
                ResponseError::InvalidPartitions,
                format!("a topic has 1 to {node_partitions} partitions (the node's)"),
            ))
        } else if topic.replication_factor == 0
            || topic.replication_factor < -1
            || topic.replication_factor > cluster
        {
            Some((
                ResponseError::InvalidReplicationFactor,
                format!("a replication factor is 1 to {cluster} (the cluster's size)"),
            ))
        } else if !topic.assignments.is_empty() {
            Some((
                ResponseError::InvalidReplicaAssignment,
                "replica assignments are the cluster's own".to_string(),
            ))
        } else {
            None
        };
        if let Some((error, message)) = refusal {
            result.error_code = error.code();
            result.error_message = Some(StrBytes::from_string(message));
            response.topics.push(result);
            continue;
        }
        let config = match topic_config(&topic.configs) {
            Ok(config) => QueueConfig {
                partitions: u16::try_from(result.num_partitions).expect("checked above"),
                ..config
            },
            Err(message) => {
                result.error_code = ResponseError::InvalidConfig.code();
                result.error_message = Some(StrBytes::from_string(message));
                response.topics.push(result);
                continue;
            }
        };
        if request.validate_only {
            response.topics.push(result);
            continue;
        }
        let tenant = context.tenant.project_id.as_str();
        match node
            .create_queue(tenant, topic.name.0.as_str(), config, Vec::new())
            .await
        {
            Ok(queue) => {
                if let Some(view) = node.queue(tenant, queue) {
                    result.topic_id = topic_id(&view);
                }
            }
            Err(error) => {
                result.error_code = error_code(&error);
                result.error_message = Some(StrBytes::from_string(error.to_string()));
            }
        }
        response.topics.push(result);
    }
    respond(context.head, &response)
}

pub async fn delete_topics<N: Node>(context: &Context<'_>, node: &N, body: &mut Bytes) -> Reply {
    let request: DeleteTopicsRequest = match decode(context.head, body) {
        Ok(request) => request,
        Err(reply) => return reply,
    };
    let mut names: Vec<TopicName> = request.topic_names.clone();
    names.extend(request.topics.iter().filter_map(|t| t.name.clone()));
    if let Some(reply) = too_many("topics", names.len()) {
        return reply;
    }
    let tenant = context.tenant.project_id.as_str();
    let wanted: Vec<&str> = names.iter().map(|n| n.0.as_str()).collect();
    let index = topic_index(node, tenant, &wanted).await;
    let mut response = DeleteTopicsResponse::default();
    for name in &names {
        let mut result = DeletableTopicResult::default();
        result.name = Some(name.clone());
        match index.get(name.0.as_str()) {
            Some(view) => {
                result.topic_id = topic_id(view);
                if let Err(error) = node.delete_queue(view.id).await {
                    result.error_code = error_code(&error);
                    result.error_message = Some(StrBytes::from_string(error.to_string()));
                }
            }
            None => result.error_code = ResponseError::UnknownTopicOrPartition.code(),
        }
        response.responses.push(result);
    }
    respond(context.head, &response)
}

/// ListOffsets' special timestamps.
const LATEST: i64 = -1;
const EARLIEST: i64 = -2;

pub async fn list_offsets<N: Node>(context: &Context<'_>, node: &N, body: &mut Bytes) -> Reply {
    let request: ListOffsetsRequest = match decode(context.head, body) {
        Ok(request) => request,
        Err(reply) => return reply,
    };
    if let Some(reply) = too_many("topics", request.topics.len()) {
        return reply;
    }
    let tenant = context.tenant.project_id.as_str();
    let wanted: Vec<&str> = request.topics.iter().map(|t| t.name.0.as_str()).collect();
    let index = topic_index(node, tenant, &wanted).await;
    let mut response = ListOffsetsResponse::default();
    for topic in &request.topics {
        let mut answer = ListOffsetsTopicResponse::default();
        answer.name = topic.name.clone();
        if let Some(reply) = too_many_partitions(topic.partitions.len()) {
            return reply;
        }
        for wanted in &topic.partitions {
            let mut part = ListOffsetsPartitionResponse::default();
            part.partition_index = wanted.partition_index;
            part.timestamp = -1;
            let Some(view) = index.get(topic.name.0.as_str()) else {
                part.error_code = ResponseError::UnknownTopicOrPartition.code();
                answer.partitions.push(part);
                continue;
            };
            let Ok(partition) = u32::try_from(wanted.partition_index) else {
                part.error_code = ResponseError::UnknownTopicOrPartition.code();
                answer.partitions.push(part);
                continue;
            };
            let at_ms = u64::try_from(wanted.timestamp).ok();
            match node.positions(view.id, partition, at_ms).await {
                Ok((start, next, at)) => {
                    let offset = match wanted.timestamp {
                        EARLIEST => start,
                        LATEST => next,
                        _ => at.unwrap_or(next),
                    };
                    part.offset = i64::try_from(offset).unwrap_or(i64::MAX);
                    if at_ms.is_some() && offset == next {
                        // No message at or after that time: Kafka answers -1.
                        part.offset = -1;
                    } else if at_ms.is_some() {
                        part.timestamp = wanted.timestamp;
                    }
                }
                Err(error) => part.error_code = error_code(&error),
            }
            answer.partitions.push(part);
        }
        response.topics.push(answer);
    }
    respond(context.head, &response)
}

pub fn too_many_partitions(count: usize) -> Option<Reply> {
    (count > super::PARTITIONS_PER_TOPIC_MAX).then(|| {
        Reply::Close(format!(
            "{count} partitions of one topic in one request; at most {}",
            super::PARTITIONS_PER_TOPIC_MAX
        ))
    })
}

/// The queue of a topic name for produce and fetch, with the error code to answer when
/// there is none.
pub fn queue_of(index: &TopicIndex, name: &str) -> Result<QueueId, i16> {
    index
        .get(name)
        .map(|view| view.id)
        .ok_or(ResponseError::UnknownTopicOrPartition.code())
}

/// DescribeConfigs' resource type of a topic.
const RESOURCE_TOPIC: i8 = 2;
/// DescribeConfigs' resource type of a broker.
const RESOURCE_BROKER: i8 = 4;

/// DescribeConfigs: a topic's retention (`retention.ms`) and the fixed settings that
/// follow from Sluice's design; a broker's id. Other resources answer INVALID_REQUEST.
pub async fn describe_configs<N: Node>(context: &Context<'_>, node: &N, body: &mut Bytes) -> Reply {
    use kafka_protocol::messages::describe_configs_response::{
        DescribeConfigsResourceResult, DescribeConfigsResult,
    };
    use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};
    let request: DescribeConfigsRequest = match decode(context.head, body) {
        Ok(request) => request,
        Err(reply) => return reply,
    };
    if let Some(reply) = too_many("resources", request.resources.len()) {
        return reply;
    }
    let tenant = context.tenant.project_id.as_str();
    let names: Vec<&str> = request
        .resources
        .iter()
        .filter(|r| r.resource_type == RESOURCE_TOPIC)
        .map(|r| r.resource_name.as_str())
        .collect();
    let index = topic_index(node, tenant, &names).await;
    let mut response = DescribeConfigsResponse::default();
    for resource in &request.resources {
        let mut result = DescribeConfigsResult::default();
        result.resource_type = resource.resource_type;
        result.resource_name = resource.resource_name.clone();
        let entries: Vec<(&str, String)> = match resource.resource_type {
            RESOURCE_TOPIC => match index.get(resource.resource_name.as_str()) {
                Some(view) => vec![
                    ("retention.ms", view.config.retention_ms.to_string()),
                    ("cleanup.policy", "delete".to_string()),
                    ("message.timestamp.type", "CreateTime".to_string()),
                    ("compression.type", "producer".to_string()),
                ],
                None => {
                    result.error_code = ResponseError::UnknownTopicOrPartition.code();
                    Vec::new()
                }
            },
            RESOURCE_BROKER => vec![("broker.id", context.config.broker_id.to_string())],
            _ => {
                result.error_code = ResponseError::InvalidRequest.code();
                Vec::new()
            }
        };
        let wanted = resource.configuration_keys.as_ref();
        for (name, value) in entries {
            if wanted.is_some_and(|keys| !keys.iter().any(|key| key.as_str() == name)) {
                continue;
            }
            let mut entry = DescribeConfigsResourceResult::default();
            entry.name = StrBytes::from_static_str(name);
            entry.value = Some(StrBytes::from_string(value));
            entry.read_only = name != "retention.ms";
            // DEFAULT_CONFIG (5) for the fixed ones, DYNAMIC_TOPIC_CONFIG (1) otherwise.
            entry.config_source = if entry.read_only { 5 } else { 1 };
            result.configs.push(entry);
        }
        response.results.push(result);
    }
    respond(context.head, &response)
}

/// CreatePartitions: a topic grows to `count` partitions, at most the node's
/// (`Node::set_partitions`); a count that does not grow, or past the node's, is refused
/// INVALID_PARTITIONS, as Kafka refuses one that does not grow. Replica assignments are
/// not taken: every partition is on every voter of its Raft group. With
/// `validate_only`, nothing changes.
pub async fn create_partitions<N: Node>(
    context: &Context<'_>,
    node: &N,
    body: &mut Bytes,
) -> Reply {
    use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
    use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};
    let request: CreatePartitionsRequest = match decode(context.head, body) {
        Ok(request) => request,
        Err(reply) => return reply,
    };
    if let Some(reply) = too_many("topics", request.topics.len()) {
        return reply;
    }
    let tenant = context.tenant.project_id.as_str();
    let names: Vec<&str> = request.topics.iter().map(|t| t.name.0.as_str()).collect();
    let index = topic_index(node, tenant, &names).await;
    let mut response = CreatePartitionsResponse::default();
    for topic in &request.topics {
        let mut result = CreatePartitionsTopicResult::default();
        result.name = topic.name.clone();
        match index.get(topic.name.0.as_str()) {
            None => result.error_code = ResponseError::UnknownTopicOrPartition.code(),
            Some(view) => {
                let has = view.config.partitions_on(node.partition_count());
                let most = node.partition_count();
                let grown = match u32::try_from(topic.count) {
                    Ok(count) if count > most => Err(format!(
                        "topic {} cannot have {count} partitions: the cluster has {most}",
                        view.name
                    )),
                    Ok(count) if count > has => {
                        let count = u16::try_from(count).expect("at most the node's");
                        match request.validate_only {
                            true => Ok(()),
                            false => match node.set_partitions(view.id, count).await {
                                Err(NodeError::Engine(EngineError::InvalidConfig(_))) => {
                                    Err(format!("topic {} cannot grow (a FIFO queue)", view.name))
                                }
                                Err(error) => {
                                    result.error_code = error_code(&error);
                                    result.error_message =
                                        Some(StrBytes::from_string(error.to_string()));
                                    Ok(())
                                }
                                Ok(()) => Ok(()),
                            },
                        }
                    }
                    _ => Err(format!(
                        "topic {} has {has} partitions; a count must grow it",
                        view.name
                    )),
                };
                if let Err(message) = grown {
                    result.error_code = ResponseError::InvalidPartitions.code();
                    result.error_message = Some(StrBytes::from_string(message));
                }
            }
        }
        response.results.push(result);
    }
    respond(context.head, &response)
}
