//! The RocketMQ adapter at the protocol level: request messages encoded as a client
//! encodes them (the generated prost types) go through `sluice_rocketmq::unary` on a
//! two-shard `LocalNode` (the production node layer) over simulated disks, signed as the
//! official clients sign, and the answers are decoded as a client would. The rules
//! checked here are the ones the client tests (tests/rocketmq_clients.rs) cannot reach
//! with the official client: refusals it would not send.

// The futures of a call (adapter, node layer, engine) nest deeply.
#![recursion_limit = "256"]

use bytes::Bytes;
use http::{HeaderMap, HeaderValue};
use sluice_core::engine::types::{FifoScope, QueueConfig, QueueMode, RetryPolicy};
use sluice_core::engine::EngineLimits;
use sluice_core::sim_disk::{block_on, SimDisk};
use sluice_node::local::{sim_node, LocalNode, StepClock};
use sluice_node::tenants::Tenant;
use sluice_node::Node;
use sluice_rocketmq::grpc::PREFIX_BYTES;
use sluice_rocketmq::proto::receive_message_response::Content;
use sluice_rocketmq::proto::{
    AckMessageEntry, AckMessageRequest, AckMessageResponse, ChangeInvisibleDurationRequest,
    ChangeInvisibleDurationResponse, Code, FilterExpression, FilterType, Message, MessageQueue,
    MessageType, QueryRouteRequest, QueryRouteResponse, ReceiveMessageRequest,
    ReceiveMessageResponse, Resource, SendMessageRequest, SendMessageResponse, SystemProperties,
};
use sluice_rocketmq::{auth, GrpcCode, Method, RocketMqConfig};

struct World {
    node: LocalNode<SimDisk, StepClock>,
    tenant: Tenant,
    other: Tenant,
}

fn queue(mode: QueueMode) -> QueueConfig {
    QueueConfig {
        mode,
        retention_ms: 3_600_000,
        max_consume_count: None,
        retry: RetryPolicy::Immediate,
        dedup_window_ms: 0,
        partitions: 0,
    }
}

fn world() -> World {
    let node = sim_node(2, 2, EngineLimits::dms(), 1_000);
    let tenant = block_on(node.create_tenant("rmq", None)).expect("tenant");
    let other = block_on(node.create_tenant("rmq-other", None)).expect("tenant");
    let shard = node.shard(0);
    block_on(shard.create_queue(
        &tenant.project_id,
        "t",
        queue(QueueMode::Normal),
        Vec::new(),
    ))
    .expect("topic t");
    let fifo = queue(QueueMode::Fifo(FifoScope::MessageGroup));
    block_on(shard.create_queue(&tenant.project_id, "f", fifo, Vec::new())).expect("topic f");
    World {
        node,
        tenant,
        other,
    }
}

fn headers(ak: &str, sk: &str) -> HeaderMap {
    let date = "20261207T120000Z";
    let mut headers = HeaderMap::new();
    headers.insert(auth::DATE_HEADER, HeaderValue::from_static(date));
    let authorization = auth::sign(ak, sk, date);
    headers.insert(
        http::header::AUTHORIZATION,
        HeaderValue::from_str(&authorization).unwrap(),
    );
    headers
}

/// Calls `method` with `request` as `tenant` (or with `sk` instead of its secret) and
/// answers the decoded messages of a gRPC OK answer.
fn check<M: prost::Message + Default>(
    world: &World,
    tenant: &Tenant,
    sk: Option<&str>,
    method: Method,
    request: &impl prost::Message,
) -> Vec<M> {
    let config = RocketMqConfig {
        advertised_host: "127.0.0.1".to_string(),
        advertised_port: 8081,
    };
    let headers = headers(&tenant.ak, sk.unwrap_or(&tenant.sk));
    let answer = block_on(sluice_rocketmq::unary(
        &**world.node.shard(1),
        &config,
        method,
        &headers,
        Bytes::from(request.encode_to_vec()),
    ));
    assert_eq!(answer.code, GrpcCode::Ok, "{}", answer.message);
    answer
        .messages
        .iter()
        .map(|frame| M::decode(&frame[PREFIX_BYTES..]).unwrap())
        .collect()
}

fn resource(name: &str) -> Option<Resource> {
    Some(Resource {
        resource_namespace: String::new(),
        name: name.to_string(),
    })
}

fn send_request(topic: &str, kind: MessageType, group: Option<&str>) -> SendMessageRequest {
    SendMessageRequest {
        messages: vec![Message {
            topic: resource(topic),
            user_properties: Default::default(),
            system_properties: Some(SystemProperties {
                message_id: "ID1".to_string(),
                message_type: kind as i32,
                message_group: group.map(str::to_string),
                tag: Some("a".to_string()),
                ..Default::default()
            }),
            body: Bytes::from_static(b"hello"),
        }],
    }
}

fn code_of(status: Option<sluice_rocketmq::proto::Status>) -> i32 {
    status.expect("a status").code
}

fn receive(world: &World, group: &str, tags: &str) -> Vec<ReceiveMessageResponse> {
    let request = ReceiveMessageRequest {
        group: resource(group),
        message_queue: Some(MessageQueue {
            topic: resource("t"),
            ..Default::default()
        }),
        filter_expression: Some(FilterExpression {
            r#type: FilterType::Tag as i32,
            expression: tags.to_string(),
        }),
        batch_size: 8,
        invisible_duration: Some(prost_types::Duration {
            seconds: 30,
            nanos: 0,
        }),
        ..Default::default()
    };
    check(world, &world.tenant, None, Method::ReceiveMessage, &request)
}

#[test]
fn routes_list_every_partition_of_the_callers_topic_only() {
    let world = world();
    let request = QueryRouteRequest {
        topic: resource("t"),
        endpoints: None,
    };
    let answer: Vec<QueryRouteResponse> =
        check(&world, &world.tenant, None, Method::QueryRoute, &request);
    assert_eq!(code_of(answer[0].status.clone()), Code::Ok as i32);
    assert_eq!(answer[0].message_queues.len(), 2);
    let other: Vec<QueryRouteResponse> =
        check(&world, &world.other, None, Method::QueryRoute, &request);
    assert_eq!(code_of(other[0].status.clone()), Code::TopicNotFound as i32);
    let wrong: Vec<QueryRouteResponse> = check(
        &world,
        &world.tenant,
        Some("x"),
        Method::QueryRoute,
        &request,
    );
    assert_eq!(code_of(wrong[0].status.clone()), Code::Unauthorized as i32);
}

#[test]
fn message_types_must_fit_the_topic() {
    let world = world();
    for (topic, kind, group, code) in [
        ("t", MessageType::Normal, None, Code::Ok),
        (
            "t",
            MessageType::Fifo,
            Some("g"),
            Code::MessagePropertyConflictWithType,
        ),
        ("f", MessageType::Fifo, Some("g"), Code::Ok),
        (
            "f",
            MessageType::Normal,
            None,
            Code::MessagePropertyConflictWithType,
        ),
        ("f", MessageType::Fifo, None, Code::IllegalMessageGroup),
        ("t", MessageType::Delay, None, Code::IllegalDeliveryTime),
    ] {
        let request = send_request(topic, kind, group);
        let answer: Vec<SendMessageResponse> =
            check(&world, &world.tenant, None, Method::SendMessage, &request);
        assert_eq!(
            code_of(answer[0].status.clone()),
            code as i32,
            "{topic} {kind:?}"
        );
    }
}

#[test]
fn a_receipt_handle_settles_only_its_own_group_and_visibility_changes_keep_it() {
    let world = world();
    let send = send_request("t", MessageType::Normal, None);
    let _: Vec<SendMessageResponse> =
        check(&world, &world.tenant, None, Method::SendMessage, &send);
    let other_group = receive(&world, "other", "*");
    assert!(matches!(other_group[0].content, Some(Content::Status(_))));
    let frames = receive(&world, "readers", "a || b");
    let Some(Content::Message(message)) = &frames[1].content else {
        panic!("a message: {frames:?}");
    };
    let properties = message.system_properties.clone().unwrap();
    assert_eq!(properties.message_id, "ID1");
    assert_eq!(properties.delivery_attempt, Some(1));
    let handle = properties.receipt_handle.unwrap();
    let ack = |group: &str| AckMessageRequest {
        group: resource(group),
        topic: resource("t"),
        entries: vec![AckMessageEntry {
            message_id: "ID1".to_string(),
            receipt_handle: handle.clone(),
            lite_topic: None,
        }],
    };
    let wrong: Vec<AckMessageResponse> = check(
        &world,
        &world.tenant,
        None,
        Method::AckMessage,
        &ack("other"),
    );
    assert_eq!(
        code_of(wrong[0].status.clone()),
        Code::InvalidReceiptHandle as i32
    );
    let missing: Vec<AckMessageResponse> = check(
        &world,
        &world.tenant,
        None,
        Method::AckMessage,
        &ack("nobody"),
    );
    assert_eq!(
        code_of(missing[0].status.clone()),
        Code::ConsumerGroupNotFound as i32
    );
    let change = ChangeInvisibleDurationRequest {
        group: resource("readers"),
        topic: resource("t"),
        receipt_handle: handle.clone(),
        invisible_duration: Some(prost_types::Duration {
            seconds: 60,
            nanos: 0,
        }),
        ..Default::default()
    };
    let changed: Vec<ChangeInvisibleDurationResponse> = check(
        &world,
        &world.tenant,
        None,
        Method::ChangeInvisibleDuration,
        &change,
    );
    assert_eq!(code_of(changed[0].status.clone()), Code::Ok as i32);
    assert_eq!(changed[0].receipt_handle, handle);
    let acked: Vec<AckMessageResponse> = check(
        &world,
        &world.tenant,
        None,
        Method::AckMessage,
        &ack("readers"),
    );
    assert_eq!(code_of(acked[0].status.clone()), Code::Ok as i32);
    let again: Vec<AckMessageResponse> = check(
        &world,
        &world.tenant,
        None,
        Method::AckMessage,
        &ack("readers"),
    );
    assert_eq!(
        code_of(again[0].status.clone()),
        Code::Ok as i32,
        "a repeated ack is OK"
    );
}

#[test]
fn a_gzip_body_is_stored_as_sent_and_delivered_as_gzip() {
    let world = world();
    let mut send = send_request("t", MessageType::Normal, None);
    let properties = send.messages[0].system_properties.as_mut().unwrap();
    properties.body_encoding = sluice_rocketmq::proto::Encoding::Gzip as i32;
    let sent: Vec<SendMessageResponse> =
        check(&world, &world.tenant, None, Method::SendMessage, &send);
    assert_eq!(code_of(sent[0].status.clone()), Code::Ok as i32);
    let frames = receive(&world, "readers", "*");
    let Some(Content::Message(message)) = &frames[1].content else {
        panic!("a message: {frames:?}");
    };
    let properties = message.system_properties.clone().unwrap();
    assert_eq!(
        properties.body_encoding,
        sluice_rocketmq::proto::Encoding::Gzip as i32
    );
    assert_eq!(message.body, Bytes::from_static(b"hello"));
    let digest = properties.body_digest.unwrap();
    assert_eq!(
        digest.checksum,
        format!("{:08X}", crc32fast::hash(b"hello"))
    );
}
