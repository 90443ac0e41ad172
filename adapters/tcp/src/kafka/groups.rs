//! Classic consumer groups: FindCoordinator, JoinGroup, SyncGroup, Heartbeat,
//! LeaveGroup, OffsetCommit, OffsetFetch, DescribeGroups, ListGroups.
//!
//! The node keeps the groups (`sluice_node::kafka_groups`: membership at the leader of
//! the partition the group hashes to, committed offsets durable on that partition), and
//! every node forwards a group call there, so this node is every group's coordinator as
//! far as its clients are concerned. Groups are the tenant's: two tenants' groups of one
//! name are two groups. Offsets name the tenant's topics (queues) through the directory.

use std::collections::HashMap;

use bytes::Bytes;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponsePartition, OffsetFetchResponseTopic,
};
use kafka_protocol::messages::{
    BrokerId, DescribeGroupsRequest, DescribeGroupsResponse, FindCoordinatorRequest,
    FindCoordinatorResponse, GroupId, HeartbeatRequest, HeartbeatResponse, JoinGroupRequest,
    JoinGroupResponse, LeaveGroupRequest, LeaveGroupResponse, ListGroupsRequest,
    ListGroupsResponse, OffsetCommitRequest, OffsetCommitResponse, OffsetFetchRequest,
    OffsetFetchResponse, SyncGroupRequest, SyncGroupResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use sluice_core::engine::command::CommittedOffset;
use sluice_core::engine::types::{EngineError, QueueId};
use sluice_core::limits::OFFSET_METADATA_BYTES_MAX;
use sluice_node::kafka_groups::{
    group_key, group_partition, GroupError, Join, GROUP_KEY_BYTES_MAX,
};
use sluice_node::{Node, NodeError};

use super::api::{decode, respond, Context};
use super::topics::{error_code, too_many_partitions, topic_index, Placement, TopicIndex};
use super::{Reply, TOPICS_PER_REQUEST_MAX};

/// Groups (or coordinator keys, or members) one request may name.
pub const GROUPS_PER_REQUEST_MAX: usize = 1_000;

/// The Kafka error code of a group refusal.
fn group_error_code(error: GroupError) -> i16 {
    let code = match error {
        GroupError::UnknownMember => ResponseError::UnknownMemberId,
        GroupError::IllegalGeneration => ResponseError::IllegalGeneration,
        GroupError::RebalanceInProgress => ResponseError::RebalanceInProgress,
        GroupError::InconsistentProtocol => ResponseError::InconsistentGroupProtocol,
        GroupError::InvalidSessionTimeout => ResponseError::InvalidSessionTimeout,
        GroupError::GroupFull => ResponseError::GroupMaxSizeReached,
        GroupError::TooManyGroups => ResponseError::CoordinatorNotAvailable,
        GroupError::TooLarge => ResponseError::InvalidRequest,
        GroupError::InvalidGroupId => ResponseError::InvalidGroupId,
    };
    code.code()
}

/// The Kafka error code of a node error on a group call: the coordinator is what was
/// unavailable, and a leader that moved mid-call makes the client find it again.
fn node_error_code(error: &NodeError) -> i16 {
    match error {
        NodeError::Unavailable(_) => ResponseError::CoordinatorNotAvailable.code(),
        NodeError::Engine(EngineError::NotLeader { .. }) => ResponseError::NotCoordinator.code(),
        NodeError::Engine(EngineError::InvalidConfig("offset metadata")) => {
            ResponseError::OffsetMetadataTooLarge.code()
        }
        NodeError::Engine(EngineError::InvalidConfig("committed offsets")) => {
            ResponseError::InvalidCommitOffsetSize.code()
        }
        NodeError::Engine(EngineError::InvalidName) => ResponseError::InvalidGroupId.code(),
        other => error_code(other),
    }
}

/// The code of a group call's answer: 0, a refusal, or a node error.
fn answer_code<T>(answer: &Result<Result<T, GroupError>, NodeError>) -> i16 {
    match answer {
        Ok(Ok(_)) => 0,
        Ok(Err(refused)) => group_error_code(*refused),
        Err(error) => node_error_code(error),
    }
}

/// A group id this node takes: not empty, and its key within the bound.
fn valid_group(context: &Context<'_>, group: &GroupId) -> bool {
    let key_bytes = context.tenant.project_id.len() + 1 + group.0.len();
    !group.0.is_empty() && key_bytes <= GROUP_KEY_BYTES_MAX
}

fn too_many(what: &str, count: usize, max: usize) -> Option<Reply> {
    (count > max).then(|| Reply::Close(format!("{count} {what} in one request; at most {max}")))
}

/// FindCoordinator: a group's coordinator is the leader of the partition its state
/// lives on ([`group_partition`] of its key), as Metadata names leaders; any node serves
/// a group call by forwarding, so a stale answer costs a hop, not an error.
pub async fn find_coordinator<N: Node>(context: &Context<'_>, node: &N, body: &mut Bytes) -> Reply {
    let request: FindCoordinatorRequest = match decode(context.head, body) {
        Ok(request) => request,
        Err(reply) => return reply,
    };
    if let Some(reply) = too_many(
        "keys",
        request.coordinator_keys.len(),
        GROUPS_PER_REQUEST_MAX,
    ) {
        return reply;
    }
    // Groups only (key type 0): transactions are not served.
    let served = request.key_type == 0;
    let placement = Placement::read(context, node).await;
    let tenant = context.tenant.project_id.as_str();
    let partitions = node.partition_count();
    let locate = |key: &str| {
        if served {
            let (id, host, port) =
                placement.leader_address(group_partition(&group_key(tenant, key), partitions));
            (0, id, host, port)
        } else {
            let code = ResponseError::CoordinatorNotAvailable.code();
            (code, BrokerId(-1), StrBytes::default(), -1)
        }
    };
    let mut response = FindCoordinatorResponse::default();
    if context.head.version < 4 {
        let (code, id, host, port) = locate(request.key.as_str());
        response.error_code = code;
        response.node_id = id;
        response.host = host;
        response.port = port;
    } else {
        response.coordinators = request
            .coordinator_keys
            .iter()
            .map(|key| {
                let (code, id, host, port) = locate(key.as_str());
                let mut coordinator = Coordinator::default();
                coordinator.key = key.clone();
                coordinator.error_code = code;
                coordinator.node_id = id;
                coordinator.host = host;
                coordinator.port = port;
                coordinator
            })
            .collect();
    }
    respond(context.head, &response)
}

pub async fn join_group<N: Node>(context: &Context<'_>, node: &N, body: &mut Bytes) -> Reply {
    let request: JoinGroupRequest = match decode(context.head, body) {
        Ok(request) => request,
        Err(reply) => return reply,
    };
    let mut response = JoinGroupResponse::default();
    response.generation_id = -1;
    response.member_id = request.member_id.clone();
    response.protocol_name = Some(StrBytes::default());
    if !valid_group(context, &request.group_id) {
        response.error_code = ResponseError::InvalidGroupId.code();
        return respond(context.head, &response);
    }
    // Before v1 there is no rebalance timeout: Kafka takes the session timeout.
    let rebalance_ms = if context.head.version >= 1 {
        request.rebalance_timeout_ms
    } else {
        request.session_timeout_ms
    };
    let join = Join {
        member_id: request.member_id.to_string(),
        client_id: "member".to_string(),
        session_timeout_ms: u64::try_from(request.session_timeout_ms).unwrap_or(0),
        rebalance_timeout_ms: u64::try_from(rebalance_ms).unwrap_or(0),
        protocol_type: request.protocol_type.to_string(),
        protocols: request
            .protocols
            .iter()
            .map(|p| (p.name.to_string(), p.metadata.to_vec()))
            .collect(),
    };
    let tenant = context.tenant.project_id.as_str();
    let answer = node
        .join_group(tenant, request.group_id.0.as_str(), join)
        .await;
    response.error_code = answer_code(&answer);
    if let Ok(Ok(joined)) = answer {
        response.generation_id = joined.generation;
        response.protocol_type = Some(StrBytes::from_string(joined.protocol_type));
        response.protocol_name = Some(StrBytes::from_string(joined.protocol_name));
        response.leader = StrBytes::from_string(joined.leader);
        response.member_id = StrBytes::from_string(joined.member_id);
        response.members = joined
            .members
            .into_iter()
            .map(|(id, metadata)| {
                let mut member = JoinGroupResponseMember::default();
                member.member_id = StrBytes::from_string(id);
                member.metadata = Bytes::from(metadata);
                member
            })
            .collect();
    }
    respond(context.head, &response)
}

pub async fn sync_group<N: Node>(context: &Context<'_>, node: &N, body: &mut Bytes) -> Reply {
    let request: SyncGroupRequest = match decode(context.head, body) {
        Ok(request) => request,
        Err(reply) => return reply,
    };
    if let Some(reply) = too_many(
        "assignments",
        request.assignments.len(),
        GROUPS_PER_REQUEST_MAX,
    ) {
        return reply;
    }
    let mut response = SyncGroupResponse::default();
    response.protocol_type = request.protocol_type.clone();
    response.protocol_name = request.protocol_name.clone();
    if !valid_group(context, &request.group_id) {
        response.error_code = ResponseError::InvalidGroupId.code();
        return respond(context.head, &response);
    }
    let assignments = request
        .assignments
        .iter()
        .map(|a| (a.member_id.to_string(), a.assignment.to_vec()))
        .collect();
    let tenant = context.tenant.project_id.as_str();
    let group = request.group_id.0.as_str();
    let member = request.member_id.as_str();
    let answer = node
        .sync_group(tenant, group, member, request.generation_id, assignments)
        .await;
    response.error_code = answer_code(&answer);
    if let Ok(Ok(assignment)) = answer {
        response.assignment = Bytes::from(assignment);
    }
    respond(context.head, &response)
}

pub async fn heartbeat<N: Node>(context: &Context<'_>, node: &N, body: &mut Bytes) -> Reply {
    let request: HeartbeatRequest = match decode(context.head, body) {
        Ok(request) => request,
        Err(reply) => return reply,
    };
    let mut response = HeartbeatResponse::default();
    if !valid_group(context, &request.group_id) {
        response.error_code = ResponseError::InvalidGroupId.code();
        return respond(context.head, &response);
    }
    let tenant = context.tenant.project_id.as_str();
    let answer = node
        .heartbeat_group(
            tenant,
            request.group_id.0.as_str(),
            request.member_id.as_str(),
            request.generation_id,
        )
        .await;
    response.error_code = answer_code(&answer);
    respond(context.head, &response)
}

pub async fn leave_group<N: Node>(context: &Context<'_>, node: &N, body: &mut Bytes) -> Reply {
    let request: LeaveGroupRequest = match decode(context.head, body) {
        Ok(request) => request,
        Err(reply) => return reply,
    };
    if let Some(reply) = too_many("members", request.members.len(), GROUPS_PER_REQUEST_MAX) {
        return reply;
    }
    let mut response = LeaveGroupResponse::default();
    if !valid_group(context, &request.group_id) {
        response.error_code = ResponseError::InvalidGroupId.code();
        return respond(context.head, &response);
    }
    // v3 and later name several members; before, one.
    let members: Vec<String> = if context.head.version >= 3 {
        request
            .members
            .iter()
            .map(|m| m.member_id.to_string())
            .collect()
    } else {
        vec![request.member_id.to_string()]
    };
    let tenant = context.tenant.project_id.as_str();
    let answers = node
        .leave_group(tenant, request.group_id.0.as_str(), members)
        .await;
    match answers {
        Err(error) => response.error_code = node_error_code(&error),
        Ok(answers) if context.head.version < 3 => {
            response.error_code = answers
                .first()
                .map_or(0, |answer| answer.err().map_or(0, group_error_code));
        }
        Ok(answers) => {
            response.members = request
                .members
                .iter()
                .zip(answers)
                .map(|(asked, answer)| {
                    let mut member = MemberResponse::default();
                    member.member_id = asked.member_id.clone();
                    member.group_instance_id = asked.group_instance_id.clone();
                    member.error_code = answer.err().map_or(0, group_error_code);
                    member
                })
                .collect();
        }
    }
    respond(context.head, &response)
}

pub async fn offset_commit<N: Node>(context: &Context<'_>, node: &N, body: &mut Bytes) -> Reply {
    let request: OffsetCommitRequest = match decode(context.head, body) {
        Ok(request) => request,
        Err(reply) => return reply,
    };
    if let Some(reply) = too_many("topics", request.topics.len(), TOPICS_PER_REQUEST_MAX) {
        return reply;
    }
    let tenant = context.tenant.project_id.as_str();
    let names: Vec<&str> = request.topics.iter().map(|t| t.name.0.as_str()).collect();
    let index = topic_index(node, tenant, &names).await;
    let node_partitions = node.partition_count();
    let group_ok = valid_group(context, &request.group_id);
    // Each asked partition's code; `None` for those that go to the node.
    let mut codes: Vec<Vec<Option<i16>>> = Vec::new();
    let mut offsets: Vec<CommittedOffset> = Vec::new();
    for topic in &request.topics {
        if let Some(reply) = too_many_partitions(topic.partitions.len()) {
            return reply;
        }
        let view = index.get(topic.name.0.as_str());
        let queue = view.map(|view| view.id);
        let partition_count =
            view.map_or(node_partitions, |v| v.config.partitions_on(node_partitions));
        let topic_codes = topic
            .partitions
            .iter()
            .map(|p| {
                let partition = u32::try_from(p.partition_index)
                    .ok()
                    .filter(|partition| *partition < partition_count);
                let metadata = p.committed_metadata.as_ref().map_or("", StrBytes::as_str);
                match (queue, partition, u64::try_from(p.committed_offset)) {
                    _ if !group_ok => Some(ResponseError::InvalidGroupId.code()),
                    (Some(queue), Some(partition), Ok(offset)) => {
                        if metadata.len() > OFFSET_METADATA_BYTES_MAX {
                            return Some(ResponseError::OffsetMetadataTooLarge.code());
                        }
                        offsets.push((queue, partition, offset, metadata.to_string()));
                        None
                    }
                    (Some(_), Some(_), Err(_)) => {
                        Some(ResponseError::InvalidCommitOffsetSize.code())
                    }
                    _ => Some(ResponseError::UnknownTopicOrPartition.code()),
                }
            })
            .collect();
        codes.push(topic_codes);
    }
    let committed = if offsets.is_empty() {
        0
    } else {
        let answer = node
            .commit_group_offsets(
                tenant,
                request.group_id.0.as_str(),
                request.member_id.as_str(),
                request.generation_id_or_member_epoch,
                offsets,
            )
            .await;
        answer_code(&answer)
    };
    let mut response = OffsetCommitResponse::default();
    for (topic, topic_codes) in request.topics.iter().zip(codes) {
        let mut answer = OffsetCommitResponseTopic::default();
        answer.name = topic.name.clone();
        for (partition, code) in topic.partitions.iter().zip(topic_codes) {
            let mut part = OffsetCommitResponsePartition::default();
            part.partition_index = partition.partition_index;
            part.error_code = code.unwrap_or(committed);
            answer.partitions.push(part);
        }
        response.topics.push(answer);
    }
    respond(context.head, &response)
}

fn fetched_partition(
    partition_index: i32,
    found: Option<&(u64, String)>,
) -> OffsetFetchResponsePartition {
    let mut part = OffsetFetchResponsePartition::default();
    part.partition_index = partition_index;
    part.committed_leader_epoch = -1;
    match found {
        Some((offset, metadata)) => {
            part.committed_offset = i64::try_from(*offset).unwrap_or(i64::MAX);
            part.metadata = Some(StrBytes::from_string(metadata.clone()));
        }
        // No commit: -1, and no error (Kafka's answer).
        None => {
            part.committed_offset = -1;
            part.metadata = Some(StrBytes::default());
        }
    }
    part
}

pub async fn offset_fetch<N: Node>(context: &Context<'_>, node: &N, body: &mut Bytes) -> Reply {
    let request: OffsetFetchRequest = match decode(context.head, body) {
        Ok(request) => request,
        Err(reply) => return reply,
    };
    let asked = request.topics.as_deref().unwrap_or(&[]);
    if let Some(reply) = too_many("topics", asked.len(), TOPICS_PER_REQUEST_MAX) {
        return reply;
    }
    let mut response = OffsetFetchResponse::default();
    if !valid_group(context, &request.group_id) {
        response.error_code = ResponseError::InvalidGroupId.code();
        return respond(context.head, &response);
    }
    let tenant = context.tenant.project_id.as_str();
    let names: Vec<&str> = asked.iter().map(|t| t.name.0.as_str()).collect();
    let index = topic_index(node, tenant, &names).await;
    let committed = match node
        .group_offsets(tenant, request.group_id.0.as_str())
        .await
    {
        Ok(committed) => committed,
        Err(error) => {
            response.error_code = node_error_code(&error);
            return respond(context.head, &response);
        }
    };
    let by_place: HashMap<(QueueId, u32), (u64, String)> = committed
        .into_iter()
        .map(|(queue, partition, offset, metadata)| ((queue, partition), (offset, metadata)))
        .collect();
    match &request.topics {
        Some(topics) => {
            for topic in topics {
                if let Some(reply) = too_many_partitions(topic.partition_indexes.len()) {
                    return reply;
                }
                let mut answer = OffsetFetchResponseTopic::default();
                answer.name = topic.name.clone();
                let queue = index.get(topic.name.0.as_str()).map(|view| view.id);
                for partition_index in &topic.partition_indexes {
                    let found = queue
                        .zip(u32::try_from(*partition_index).ok())
                        .and_then(|(queue, partition)| by_place.get(&(queue, partition)));
                    let mut part = fetched_partition(*partition_index, found);
                    if queue.is_none() {
                        part.error_code = ResponseError::UnknownTopicOrPartition.code();
                    }
                    answer.partitions.push(part);
                }
                response.topics.push(answer);
            }
        }
        // Every committed offset of the group, by topic.
        None => response.topics = all_committed(&TopicIndex::all_of(node, tenant), &by_place),
    }
    respond(context.head, &response)
}

/// Every committed offset of a group, as topics of the tenant's queues (offsets of a
/// queue no longer in the directory are left out).
fn all_committed(
    index: &TopicIndex,
    by_place: &HashMap<(QueueId, u32), (u64, String)>,
) -> Vec<OffsetFetchResponseTopic> {
    let mut places: Vec<&(QueueId, u32)> = by_place.keys().collect();
    places.sort();
    let mut topics: Vec<OffsetFetchResponseTopic> = Vec::new();
    for (queue, partition) in places {
        let Some(view) = index.all().iter().find(|view| view.id == *queue) else {
            continue;
        };
        let name = TopicName(StrBytes::from_string(view.name.to_string()));
        if topics.last().is_none_or(|topic| topic.name != name) {
            let mut topic = OffsetFetchResponseTopic::default();
            topic.name = name;
            topics.push(topic);
        }
        let index = i32::try_from(*partition).unwrap_or(i32::MAX);
        let part = fetched_partition(index, by_place.get(&(*queue, *partition)));
        topics.last_mut().expect("pushed").partitions.push(part);
    }
    topics
}

pub async fn describe_groups<N: Node>(context: &Context<'_>, node: &N, body: &mut Bytes) -> Reply {
    let request: DescribeGroupsRequest = match decode(context.head, body) {
        Ok(request) => request,
        Err(reply) => return reply,
    };
    if let Some(reply) = too_many("groups", request.groups.len(), GROUPS_PER_REQUEST_MAX) {
        return reply;
    }
    let tenant = context.tenant.project_id.as_str();
    let mut response = DescribeGroupsResponse::default();
    for group_id in &request.groups {
        let mut described = DescribedGroup::default();
        described.group_id = group_id.clone();
        if !valid_group(context, group_id) {
            described.error_code = ResponseError::InvalidGroupId.code();
            response.groups.push(described);
            continue;
        }
        match node.describe_group(tenant, group_id.0.as_str()).await {
            Ok(view) => {
                described.group_state = StrBytes::from_string(view.state);
                described.protocol_type = StrBytes::from_string(view.protocol_type);
                described.protocol_data = StrBytes::from_string(view.protocol_name);
                described.members = view
                    .members
                    .into_iter()
                    .map(|(id, client_id, metadata, assignment)| {
                        let mut member = DescribedGroupMember::default();
                        member.member_id = StrBytes::from_string(id);
                        member.client_id = StrBytes::from_string(client_id);
                        member.member_metadata = Bytes::from(metadata);
                        member.member_assignment = Bytes::from(assignment);
                        member
                    })
                    .collect();
            }
            Err(error) => described.error_code = node_error_code(&error),
        }
        response.groups.push(described);
    }
    respond(context.head, &response)
}

pub async fn list_groups<N: Node>(context: &Context<'_>, node: &N, body: &mut Bytes) -> Reply {
    let request: ListGroupsRequest = match decode(context.head, body) {
        Ok(request) => request,
        Err(reply) => return reply,
    };
    let mut response = ListGroupsResponse::default();
    match node.list_groups(context.tenant.project_id.as_str()).await {
        Ok(groups) => {
            let wanted = |state: &str| {
                request.states_filter.is_empty()
                    || request
                        .states_filter
                        .iter()
                        .any(|filter| filter.as_str().eq_ignore_ascii_case(state))
            };
            response.groups = groups
                .into_iter()
                .filter(|(_, _, state)| wanted(state))
                .map(|(group, protocol_type, state)| {
                    let mut listed = ListedGroup::default();
                    listed.group_id = GroupId(StrBytes::from_string(group));
                    listed.protocol_type = StrBytes::from_string(protocol_type);
                    listed.group_state = StrBytes::from_string(state);
                    listed.group_type = StrBytes::from_static_str("classic");
                    listed
                })
                .collect();
        }
        Err(error) => response.error_code = node_error_code(&error),
    }
    respond(context.head, &response)
}
