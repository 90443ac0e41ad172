//! QueryRoute, QueryAssignment, Heartbeat and NotifyClientTermination: where a topic's
//! queues are, and the liveness calls that change nothing here.
//!
//! A topic's RocketMQ queues are the partitions its Sluice queue uses, all on this node
//! (the listener's advertised address), broker id 0 (a master), readable and writable.
//! Which partition a message goes to and which ones a receive visits stay the node's
//! decision: a client's choice of queue is a hint this server does not follow.

use bytes::Bytes;
use sluice_core::engine::types::QueueMode;
use sluice_node::{Node, QueueView};

use crate::proto::{
    Address, AddressScheme, Assignment, Broker, Endpoints, HeartbeatRequest, HeartbeatResponse,
    MessageQueue, MessageType, NotifyClientTerminationRequest, NotifyClientTerminationResponse,
    Permission, QueryAssignmentRequest, QueryAssignmentResponse, QueryRouteRequest,
    QueryRouteResponse, Resource,
};
use crate::service::{framed, ok, Call, Refusal};

/// The broker name every queue names.
const BROKER_NAME: &str = "sluice";

/// The message types a queue takes: a FIFO queue FIFO messages, any other queue normal,
/// delayed and transactional ones.
pub(crate) fn accepted_types(view: &QueueView) -> Vec<i32> {
    match view.config.mode {
        QueueMode::Fifo(_) => vec![MessageType::Fifo as i32],
        QueueMode::Normal => vec![
            MessageType::Normal as i32,
            MessageType::Delay as i32,
            MessageType::Transaction as i32,
        ],
    }
}

/// This listener as RocketMQ endpoints.
fn endpoints(host: &str, port: u16) -> Endpoints {
    let scheme = match host.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(_)) => AddressScheme::IPv4,
        Ok(std::net::IpAddr::V6(_)) => AddressScheme::IPv6,
        Err(_) => AddressScheme::DomainName,
    };
    Endpoints {
        scheme: scheme as i32,
        addresses: vec![Address {
            host: host.to_string(),
            port: i32::from(port),
        }],
    }
}

/// Queue `id` of the topic `view`, named as the client named the topic.
fn message_queue<N: Node>(
    call: &Call<'_, N>,
    view: &QueueView,
    topic: &Resource,
    id: u32,
) -> MessageQueue {
    MessageQueue {
        topic: Some(Resource {
            resource_namespace: topic.resource_namespace.clone(),
            name: view.name.to_string(),
        }),
        id: i32::try_from(id).expect("partitions fit i32"),
        permission: Permission::ReadWrite as i32,
        broker: Some(Broker {
            name: BROKER_NAME.to_string(),
            id: 0,
            endpoints: Some(endpoints(
                &call.config.advertised_host,
                call.config.advertised_port,
            )),
        }),
        accept_message_types: accepted_types(view),
    }
}

pub(crate) async fn query_route<N: Node>(
    call: &Call<'_, N>,
    request: QueryRouteRequest,
) -> Result<Vec<Bytes>, Refusal> {
    let view = call.topic(request.topic.as_ref()).await?;
    let topic = request.topic.unwrap_or_default();
    let partitions = view.config.partitions_on(call.node.partition_count());
    let message_queues = (0..partitions)
        .map(|id| message_queue(call, &view, &topic, id))
        .collect();
    Ok(framed(&QueryRouteResponse {
        status: ok(),
        message_queues,
    }))
}

/// A push consumer's assignment: one queue of the topic. A receive visits every
/// partition whichever queue it names, so one assignment per consumer keeps one long
/// poll in flight rather than one per partition.
pub(crate) async fn query_assignment<N: Node>(
    call: &Call<'_, N>,
    request: QueryAssignmentRequest,
) -> Result<Vec<Bytes>, Refusal> {
    let view = call.topic(request.topic.as_ref()).await?;
    call.group(&view, request.group.as_ref()).await?;
    let topic = request.topic.unwrap_or_default();
    Ok(framed(&QueryAssignmentResponse {
        status: ok(),
        assignments: vec![Assignment {
            message_queue: Some(message_queue(call, &view, &topic, 0)),
        }],
    }))
}

pub(crate) async fn heartbeat<N: Node>(
    _call: &Call<'_, N>,
    _request: HeartbeatRequest,
) -> Result<Vec<Bytes>, Refusal> {
    Ok(framed(&HeartbeatResponse { status: ok() }))
}

pub(crate) async fn notify_client_termination<N: Node>(
    _call: &Call<'_, N>,
    _request: NotifyClientTerminationRequest,
) -> Result<Vec<Bytes>, Refusal> {
    Ok(framed(&NotifyClientTerminationResponse { status: ok() }))
}
