//! Share groups (KIP-932): ShareGroupHeartbeat, ShareFetch, ShareAcknowledge, mapped onto
//! Sluice consumer groups, which already are queue-style consumption.
//!
//! - A share group on a topic is the Sluice consumer group of the same name on that
//!   queue, created on the first fetch. Its members share the queue's messages the way
//!   DMS consumers of one group do; every member is assigned every partition of the
//!   topics it subscribed to (Sluice spreads the messages, not the assignment).
//! - A ShareFetch acquires records with a receive: the acquisition lock is the receive's
//!   visibility timeout ([`ACQUISITION_LOCK_MS`]), the delivery count the delivery's.
//!   Offsets are the messages' positions, as in Fetch.
//! - Acknowledgements (in ShareFetch or ShareAcknowledge) are acks: ACCEPT is a success,
//!   RELEASE a failure (the message comes back at once), REJECT a success too (the record
//!   is archived: Sluice never delivers it again). An acknowledgement of a record whose
//!   lock expired (and maybe went to another member) is refused INVALID_RECORD_STATE.
//! - What a connection acquired and has not acknowledged is remembered by its session
//!   (the receipt handles, at most [`ACQUIRED_MAX`]); an acknowledgement on another
//!   connection finds nothing and is refused, and the lock then runs out.
//! - Heartbeats keep no state but the member's subscription on this connection.

use std::collections::{BTreeMap, HashMap, VecDeque};

use bytes::Bytes;
use kafka_protocol::messages::share_fetch_response::{
    AcquiredRecords, PartitionData, ShareFetchableTopicResponse,
};
use kafka_protocol::messages::share_group_heartbeat_response::{Assignment, TopicPartitions};
use kafka_protocol::messages::{
    ShareAcknowledgeRequest, ShareAcknowledgeResponse, ShareFetchRequest, ShareFetchResponse,
    ShareGroupHeartbeatRequest, ShareGroupHeartbeatResponse,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use sluice_core::engine::read_at::StoredMessage;
use sluice_core::engine::types::{AckKind, GroupId, QueueId, ReceiptHandle};
use sluice_core::engine::ReceiveRequest;
use sluice_node::{Lane, Node, QueueView, Routed};
use uuid::Uuid;

use super::api::{decode, respond, Context};
use super::records::encode_batch;
use super::topics::{error_code, topic_id, topic_index, view_of_topic_id};
use super::{Reply, TOPICS_PER_REQUEST_MAX};

/// How long acquired records stay locked to their member (the receive's visibility).
pub const ACQUISITION_LOCK_MS: u64 = 30_000;
/// How often members are asked to heartbeat.
pub const HEARTBEAT_INTERVAL_MS: i32 = 5_000;
/// Acquired, unacknowledged records one connection remembers; the oldest are forgotten
/// first (their locks run out and they come back).
pub const ACQUIRED_MAX: usize = 100_000;
/// Records one ShareFetch acquires at most, whatever `max_records` asks.
pub const SHARE_FETCH_RECORDS_MAX: u32 = 1_000;
/// Bytes one ShareFetch answers at most.
pub const SHARE_FETCH_BYTES_MAX: u64 = 8 * 1024 * 1024;
/// The longest a ShareFetch waits for a first record.
pub const SHARE_FETCH_WAIT_MS_MAX: u64 = 30_000;
/// Share groups one connection keeps subscriptions and sessions for.
pub const SHARE_GROUPS_PER_CONNECTION_MAX: usize = 64;

/// KIP-932's acknowledge types.
const ACK_GAP: i8 = 0;
const ACK_ACCEPT: i8 = 1;
const ACK_RELEASE: i8 = 2;
const ACK_REJECT: i8 = 3;

/// A record this connection acquired: its handle, by (queue, partition, offset).
type AcquiredKey = (QueueId, u32, u64);

/// A connection's share-group state: subscriptions, fetch sessions' partitions, and the
/// records it acquired.
#[derive(Debug, Default)]
pub struct ShareState {
    subscriptions: HashMap<String, Vec<String>>,
    sessions: HashMap<String, BTreeMap<(Uuid, i32), i32>>,
    acquired: HashMap<AcquiredKey, ReceiptHandle>,
    order: VecDeque<AcquiredKey>,
}

impl ShareState {
    fn remember(&mut self, key: AcquiredKey, handle: ReceiptHandle) {
        if self.acquired.insert(key, handle).is_none() {
            self.order.push_back(key);
        }
        while self.acquired.len() > ACQUIRED_MAX {
            let Some(oldest) = self.order.pop_front() else {
                break;
            };
            // A key taken meanwhile is gone from `acquired` already.
            self.acquired.remove(&oldest);
        }
    }

    fn take(&mut self, key: &AcquiredKey) -> Option<ReceiptHandle> {
        let handle = self.acquired.remove(key);
        // `order` keeps taken keys until they reach its front; once it holds twice what
        // is still acquired (and more than a few), it drops them, so it stays within
        // twice the bound however many records come and go.
        if self.order.len() > 64 && self.order.len() > 2 * self.acquired.len() {
            let acquired = &self.acquired;
            self.order.retain(|key| acquired.contains_key(key));
        }
        handle
    }
}

pub async fn heartbeat<N: Node>(
    context: &Context<'_>,
    node: &N,
    state: &mut ShareState,
    body: &mut Bytes,
) -> Reply {
    let request: ShareGroupHeartbeatRequest = match decode(context.head, body) {
        Ok(request) => request,
        Err(reply) => return reply,
    };
    let mut response = ShareGroupHeartbeatResponse::default();
    response.heartbeat_interval_ms = HEARTBEAT_INTERVAL_MS;
    let group = request.group_id.0.to_string();
    let member = if request.member_id.is_empty() {
        StrBytes::from_string(Uuid::from_u64_pair(random_u64(), random_u64()).to_string())
    } else {
        request.member_id.clone()
    };
    response.member_id = Some(member);
    if request.member_epoch == -1 {
        // Leaving: forget the subscription; the records it holds come back when their
        // locks run out or are released.
        state.subscriptions.remove(&group);
        state.sessions.remove(&group);
        response.member_epoch = -1;
        return respond(context.head, &response);
    }
    if let Some(topics) = &request.subscribed_topic_names {
        if topics.len() > TOPICS_PER_REQUEST_MAX {
            return Reply::Close(format!("{} subscribed topics", topics.len()));
        }
        if !state.subscriptions.contains_key(&group)
            && state.subscriptions.len() >= SHARE_GROUPS_PER_CONNECTION_MAX
        {
            response.error_code = ResponseError::GroupMaxSizeReached.code();
            return respond(context.head, &response);
        }
        let names = topics.iter().map(|t| t.0.to_string()).collect();
        state.subscriptions.insert(group.clone(), names);
    }
    let Some(subscribed) = state.subscriptions.get(&group) else {
        // A heartbeat with no subscription ever sent on this connection: join again.
        response.error_code = ResponseError::UnknownMemberId.code();
        return respond(context.head, &response);
    };
    let names: Vec<&str> = subscribed.iter().map(String::as_str).collect();
    let index = topic_index(node, &context.tenant.project_id, &names).await;
    let node_partitions = node.partition_count();
    let mut assignment = Assignment::default();
    assignment.topic_partitions = names
        .iter()
        .filter_map(|name| index.get(name))
        .map(|view| {
            let mut topic = TopicPartitions::default();
            topic.topic_id = topic_id(view);
            topic.partitions = (0..view.config.partitions_on(node_partitions))
                .map(|p| i32::try_from(p).expect("partitions are u16"))
                .collect();
            topic
        })
        .collect();
    response.assignment = Some(assignment);
    response.member_epoch = request.member_epoch.max(0).saturating_add(1);
    respond(context.head, &response)
}

/// Acknowledgements of one partition: (offset, type), in order.
fn expand(batches: &[(i64, i64, Vec<i8>)]) -> Result<Vec<(u64, i8)>, String> {
    let mut out = Vec::new();
    for (first, last, types) in batches {
        let (Ok(first), Ok(last)) = (u64::try_from(*first), u64::try_from(*last)) else {
            return Err("a negative acknowledgement offset".to_string());
        };
        if last < first || last - first >= ACQUIRED_MAX as u64 {
            return Err("an acknowledgement range out of bounds".to_string());
        }
        let count = usize::try_from(last - first + 1).expect("bounded");
        if types.len() != 1 && types.len() != count {
            return Err("acknowledge types of the wrong length".to_string());
        }
        for (i, offset) in (first..=last).enumerate() {
            let kind = if types.len() == 1 { types[0] } else { types[i] };
            if !(ACK_GAP..=ACK_REJECT).contains(&kind) {
                return Err(format!("acknowledge type {kind}"));
            }
            out.push((offset, kind));
        }
        if out.len() > ACQUIRED_MAX {
            return Err("too many acknowledgements".to_string());
        }
    }
    Ok(out)
}

/// Acks one partition's acknowledgements; answers the partition's error code (0, or
/// INVALID_RECORD_STATE when any record was not acquired here or its lock expired).
async fn acknowledge<N: Node>(
    node: &N,
    state: &mut ShareState,
    queue: QueueId,
    partition: u32,
    acks: Vec<(u64, i8)>,
) -> i16 {
    let mut entries = Vec::new();
    let mut unknown = false;
    for (offset, kind) in acks {
        if kind == ACK_GAP {
            continue;
        }
        let Some(handle) = state.take(&(queue, partition, offset)) else {
            unknown = true;
            continue;
        };
        let kind = match kind {
            ACK_RELEASE => AckKind::Fail,
            // ACCEPT and REJECT: done; a rejected record is archived, never delivered again.
            ACK_ACCEPT | ACK_REJECT => AckKind::Success,
            _ => unreachable!("checked by expand"),
        };
        let partition = u16::try_from(partition).expect("partitions are u16");
        entries.push((
            Routed {
                partition,
                item: handle,
            },
            kind,
        ));
    }
    // One ack call stops at the first refused handle (DMS semantics); each handle here
    // stands alone, so what follows a refusal is acked again on its own.
    let mut rest = entries;
    let mut refused = false;
    while !rest.is_empty() {
        let results = match node.ack(Lane::Main, rest.clone()).await {
            Ok(results) => results,
            Err(error) => return error_code(&error),
        };
        match results.iter().position(Result::is_err) {
            None => break,
            Some(at) => {
                refused = true;
                rest.drain(..=at);
            }
        }
    }
    if unknown || refused {
        ResponseError::InvalidRecordState.code()
    } else {
        0
    }
}

/// One partition's acknowledgement batches (from ShareFetch or ShareAcknowledge): the
/// partition's error code, or why the request is malformed (the connection closes).
async fn acknowledge_partition<N: Node>(
    node: &N,
    state: &mut ShareState,
    view: Option<&QueueView>,
    partition_index: i32,
    batches: &[(i64, i64, Vec<i8>)],
) -> Result<i16, String> {
    let acks = expand(batches)?;
    match (view, u32::try_from(partition_index)) {
        (Some(view), Ok(partition)) => Ok(acknowledge(node, state, view.id, partition, acks).await),
        _ => Ok(ResponseError::UnknownTopicOrPartition.code()),
    }
}

/// The Sluice group of a share group on a queue, created when missing.
async fn group_of<N: Node>(node: &N, view: &QueueView, name: &str) -> Result<GroupId, i16> {
    if let Some((id, _)) = view.groups.iter().find(|(_, n)| n == name) {
        return Ok(*id);
    }
    match node.create_groups(view.id, &[name.to_string()]).await {
        Ok(ids) => Ok(ids[0]),
        Err(_) => {
            // Created meanwhile by another member, or refused (name, quota).
            let fresh = node.queue(&view.tenant, view.id);
            fresh
                .and_then(|v| v.groups.iter().find(|(_, n)| n == name).map(|(id, _)| *id))
                .ok_or(ResponseError::InvalidGroupId.code())
        }
    }
}

pub async fn fetch<N: Node>(
    context: &Context<'_>,
    node: &N,
    state: &mut ShareState,
    body: &mut Bytes,
) -> Reply {
    let request: ShareFetchRequest = match decode(context.head, body) {
        Ok(request) => request,
        Err(reply) => return reply,
    };
    if request.topics.len() > TOPICS_PER_REQUEST_MAX {
        return Reply::Close(format!("{} topics in one ShareFetch", request.topics.len()));
    }
    let mut response = ShareFetchResponse::default();
    response.acquisition_lock_timeout_ms = ACQUISITION_LOCK_MS as i32;
    let Some(group) = request.group_id.as_ref().map(|g| g.0.to_string()) else {
        response.error_code = ResponseError::InvalidGroupId.code();
        return respond(context.head, &response);
    };
    let tenant = context.tenant.project_id.as_str();
    // The session's partitions: a new session (epoch 0) takes the request's, a later
    // epoch adds the request's and drops the forgotten ones, epoch -1 closes it.
    if request.share_session_epoch == 0 {
        if !state.sessions.contains_key(&group)
            && state.sessions.len() >= SHARE_GROUPS_PER_CONNECTION_MAX
        {
            response.error_code = ResponseError::GroupMaxSizeReached.code();
            return respond(context.head, &response);
        }
        state.sessions.insert(group.clone(), BTreeMap::new());
    }
    let closing = request.share_session_epoch == -1;
    let mut answers: BTreeMap<(Uuid, i32), PartitionData> = BTreeMap::new();
    {
        let Some(session) = state.sessions.get_mut(&group) else {
            if !closing {
                response.error_code = ResponseError::ShareSessionNotFound.code();
                return respond(context.head, &response);
            }
            return respond(context.head, &response);
        };
        for forgotten in &request.forgotten_topics_data {
            for partition in &forgotten.partitions {
                session.remove(&(forgotten.topic_id, *partition));
            }
        }
        for topic in &request.topics {
            for partition in &topic.partitions {
                session.insert(
                    (topic.topic_id, partition.partition_index),
                    partition.partition_max_bytes,
                );
            }
        }
    }
    // Acknowledgements first, so released records may be fetched again.
    for topic in &request.topics {
        let view = view_of_topic_id(node, tenant, topic.topic_id);
        for partition in &topic.partitions {
            let mut data = PartitionData::default();
            data.partition_index = partition.partition_index;
            data.current_leader.leader_id = context.config.broker_id;
            if partition.acknowledgement_batches.is_empty() {
                answers.insert((topic.topic_id, partition.partition_index), data);
                continue;
            }
            let batches: Vec<(i64, i64, Vec<i8>)> = partition
                .acknowledgement_batches
                .iter()
                .map(|b| (b.first_offset, b.last_offset, b.acknowledge_types.clone()))
                .collect();
            let acked = acknowledge_partition(
                node,
                state,
                view.as_ref(),
                partition.partition_index,
                &batches,
            );
            data.acknowledge_error_code = match acked.await {
                Ok(code) => code,
                Err(why) => return Reply::Close(why),
            };
            answers.insert((topic.topic_id, partition.partition_index), data);
        }
    }
    if closing {
        state.sessions.remove(&group);
    } else {
        let session: Vec<(Uuid, i32)> = state
            .sessions
            .get(&group)
            .map(|s| s.keys().copied().collect())
            .unwrap_or_default();
        acquire(
            context,
            node,
            state,
            &request,
            &group,
            &session,
            &mut answers,
        )
        .await;
    }
    let mut topics: BTreeMap<Uuid, ShareFetchableTopicResponse> = BTreeMap::new();
    for ((id, _), data) in answers {
        topics
            .entry(id)
            .or_insert_with(|| {
                let mut topic = ShareFetchableTopicResponse::default();
                topic.topic_id = id;
                topic
            })
            .partitions
            .push(data);
    }
    response.responses = topics.into_values().collect();
    respond(context.head, &response)
}

/// Receives for every topic of the session and files the records under their
/// partitions' answers.
async fn acquire<N: Node>(
    context: &Context<'_>,
    node: &N,
    state: &mut ShareState,
    request: &ShareFetchRequest,
    group: &str,
    session: &[(Uuid, i32)],
    answers: &mut BTreeMap<(Uuid, i32), PartitionData>,
) {
    let tenant = context.tenant.project_id.as_str();
    let mut topics: Vec<Uuid> = session.iter().map(|(id, _)| *id).collect();
    topics.dedup();
    let mut budget_records = u32::try_from(request.max_records.max(1))
        .unwrap_or(1)
        .min(SHARE_FETCH_RECORDS_MAX);
    let mut budget_bytes = u64::try_from(request.max_bytes.max(1))
        .unwrap_or(1)
        .min(SHARE_FETCH_BYTES_MAX);
    let mut wait_ms = u64::try_from(request.max_wait_ms.max(0))
        .unwrap_or(0)
        .min(SHARE_FETCH_WAIT_MS_MAX);
    for id in topics {
        if budget_records == 0 || budget_bytes == 0 {
            break;
        }
        let Some(view) = view_of_topic_id(node, tenant, id) else {
            for (_, partition) in session.iter().filter(|(t, _)| *t == id) {
                let data = answers.entry((id, *partition)).or_default();
                data.partition_index = *partition;
                data.error_code = ResponseError::UnknownTopicId.code();
            }
            continue;
        };
        let group_id = match group_of(node, &view, group).await {
            Ok(group_id) => group_id,
            Err(code) => {
                for (_, partition) in session.iter().filter(|(t, _)| *t == id) {
                    let data = answers.entry((id, *partition)).or_default();
                    data.partition_index = *partition;
                    data.error_code = code;
                }
                continue;
            }
        };
        let receive = ReceiveRequest {
            attempt: None,
            max_messages: budget_records,
            visibility_ms: ACQUISITION_LOCK_MS,
            filter: None,
            bytes_max: budget_bytes,
            oversize_first: true,
        };
        let deliveries = match node
            .receive(view.id, group_id, Lane::Main, receive, wait_ms)
            .await
        {
            Ok(deliveries) => deliveries,
            Err(error) => {
                let code = error_code(&error);
                for (_, partition) in session.iter().filter(|(t, _)| *t == id) {
                    let data = answers.entry((id, *partition)).or_default();
                    data.partition_index = *partition;
                    data.error_code = code;
                }
                continue;
            }
        };
        if !deliveries.is_empty() {
            // Later topics do not wait: there is something to answer.
            wait_ms = 0;
        }
        let mut by_partition: BTreeMap<i32, Vec<(StoredMessage, u32)>> = BTreeMap::new();
        for delivery in deliveries {
            let partition = i32::from(delivery.partition);
            let item = delivery.item;
            budget_records = budget_records.saturating_sub(1);
            budget_bytes = budget_bytes.saturating_sub(item.budget_bytes());
            state.remember(
                (view.id, u32::from(delivery.partition), item.handle.seq),
                item.handle,
            );
            by_partition.entry(partition).or_default().push((
                StoredMessage {
                    seq: item.handle.seq,
                    message_id: item.message_id,
                    sent_ms: item.sent_ms,
                    body: item.body,
                    attributes: item.attributes,
                    tags: item.tags,
                },
                item.delivery_count,
            ));
        }
        for (partition, mut records) in by_partition {
            records.sort_by_key(|(message, _)| message.seq);
            let data = answers.entry((id, partition)).or_default();
            data.partition_index = partition;
            data.current_leader.leader_id = context.config.broker_id;
            let messages: Vec<StoredMessage> = records.iter().map(|(m, _)| m.clone()).collect();
            match encode_batch(&messages) {
                Ok(batch) => data.records = Some(batch),
                Err(_) => {
                    data.error_code = ResponseError::UnknownServerError.code();
                    continue;
                }
            }
            // Consecutive offsets with one delivery count make one range.
            let mut ranges: Vec<AcquiredRecords> = Vec::new();
            for (message, count) in &records {
                let offset = i64::try_from(message.seq).unwrap_or(i64::MAX);
                let count = i16::try_from(*count).unwrap_or(i16::MAX);
                match ranges.last_mut() {
                    Some(last)
                        if last.last_offset + 1 == offset && last.delivery_count == count =>
                    {
                        last.last_offset = offset;
                    }
                    _ => {
                        let mut range = AcquiredRecords::default();
                        range.first_offset = offset;
                        range.last_offset = offset;
                        range.delivery_count = count;
                        ranges.push(range);
                    }
                }
            }
            data.acquired_records = ranges;
        }
    }
    // Every session partition is answered, with or without records.
    for (id, partition) in session {
        let data = answers.entry((*id, *partition)).or_default();
        data.partition_index = *partition;
        data.current_leader.leader_id = context.config.broker_id;
        if data.records.is_none() && data.error_code == 0 {
            data.records = Some(Bytes::new());
        }
    }
}

pub async fn acknowledge_request<N: Node>(
    context: &Context<'_>,
    node: &N,
    state: &mut ShareState,
    body: &mut Bytes,
) -> Reply {
    use kafka_protocol::messages::share_acknowledge_response::{
        PartitionData as AckPartition, ShareAcknowledgeTopicResponse,
    };
    let request: ShareAcknowledgeRequest = match decode(context.head, body) {
        Ok(request) => request,
        Err(reply) => return reply,
    };
    if request.topics.len() > TOPICS_PER_REQUEST_MAX {
        return Reply::Close(format!(
            "{} topics in one ShareAcknowledge",
            request.topics.len()
        ));
    }
    let tenant = context.tenant.project_id.as_str();
    let mut response = ShareAcknowledgeResponse::default();
    for topic in &request.topics {
        let view = view_of_topic_id(node, tenant, topic.topic_id);
        let mut answer = ShareAcknowledgeTopicResponse::default();
        answer.topic_id = topic.topic_id;
        for partition in &topic.partitions {
            let mut data = AckPartition::default();
            data.partition_index = partition.partition_index;
            data.current_leader.leader_id = context.config.broker_id;
            let batches: Vec<(i64, i64, Vec<i8>)> = partition
                .acknowledgement_batches
                .iter()
                .map(|b| (b.first_offset, b.last_offset, b.acknowledge_types.clone()))
                .collect();
            let acked = acknowledge_partition(
                node,
                state,
                view.as_ref(),
                partition.partition_index,
                &batches,
            );
            data.error_code = match acked.await {
                Ok(code) => code,
                Err(why) => return Reply::Close(why),
            };
            answer.partitions.push(data);
        }
        response.responses.push(answer);
    }
    if request.share_session_epoch == -1 {
        if let Some(group) = &request.group_id {
            state.sessions.remove(group.0.as_str());
        }
    }
    respond(context.head, &response)
}

fn random_u64() -> u64 {
    let mut bytes = [0u8; 8];
    getrandom::getrandom(&mut bytes).expect("the OS random source works");
    u64::from_le_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handle(seq: u64) -> ReceiptHandle {
        ReceiptHandle {
            queue: QueueId(1),
            group: GroupId(1),
            seq,
            nonce: 7,
            dead_letter: false,
        }
    }

    /// Goal: what a connection remembers stays bounded whether its records are
    /// acknowledged (taken) or never are (the oldest forgotten). Method: a million
    /// records remembered and taken one by one; then more than the bound never taken.
    #[test]
    fn acquired_records_stay_bounded() {
        let mut state = ShareState::default();
        for seq in 0..1_000_000u64 {
            state.remember((QueueId(1), 0, seq), handle(seq));
            assert_eq!(state.take(&(QueueId(1), 0, seq)), Some(handle(seq)));
        }
        assert!(state.acquired.is_empty());
        assert!(state.order.len() <= 64, "{}", state.order.len());
        for seq in 0..(ACQUIRED_MAX as u64 + 10) {
            state.remember((QueueId(1), 1, seq), handle(seq));
        }
        assert_eq!(state.acquired.len(), ACQUIRED_MAX);
        assert!(state.order.len() <= 2 * ACQUIRED_MAX);
        // The oldest were forgotten, the newest are there.
        assert_eq!(state.take(&(QueueId(1), 1, 0)), None);
        assert!(state
            .take(&(QueueId(1), 1, ACQUIRED_MAX as u64 + 9))
            .is_some());
    }
}
