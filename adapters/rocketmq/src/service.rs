//! The methods of `apache.rocketmq.v2.MessagingService`: which are served, how a unary
//! or server-streaming call is decoded, authenticated and answered, and the one mapping
//! of node errors to RocketMQ status codes (`refusal_of`). The methods themselves live
//! in `route.rs` (QueryRoute, QueryAssignment, Heartbeat, NotifyClientTermination),
//! `send.rs` (SendMessage, RecallMessage), `receive.rs` (ReceiveMessage, AckMessage,
//! ChangeInvisibleDuration, ForwardMessageToDeadLetterQueue) and `telemetry.rs`.

use bytes::Bytes;
use http::HeaderMap;
use sluice_core::engine::types::{EngineError, GroupId};
use sluice_node::tenants::Tenant;
use sluice_node::{Node, NodeError, QueueView};

use crate::auth;
use crate::grpc::{self, GrpcCode};
use crate::limits::NAME_BYTES_MAX;
use crate::proto::{Code, Resource, Status, StatusOnly};

/// The gRPC path prefix of the service.
pub const SERVICE_PATH: &str = "/apache.rocketmq.v2.MessagingService/";

/// The methods served. Any other path of the service (PullMessage, UpdateOffset,
/// GetOffset, QueryOffset, SyncLiteSubscription) answers UNIMPLEMENTED.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    QueryRoute,
    QueryAssignment,
    Heartbeat,
    SendMessage,
    ReceiveMessage,
    AckMessage,
    ChangeInvisibleDuration,
    ForwardMessageToDeadLetterQueue,
    NotifyClientTermination,
    RecallMessage,
    EndTransaction,
    /// Bidirectional: served by [`crate::Telemetry`], not [`unary`].
    Telemetry,
}

/// The method a request path names, or `None` for a path this server does not serve.
pub fn method_of(path: &str) -> Option<Method> {
    let name = path.strip_prefix(SERVICE_PATH)?;
    Some(match name {
        "QueryRoute" => Method::QueryRoute,
        "QueryAssignment" => Method::QueryAssignment,
        "Heartbeat" => Method::Heartbeat,
        "SendMessage" => Method::SendMessage,
        "ReceiveMessage" => Method::ReceiveMessage,
        "AckMessage" => Method::AckMessage,
        "ChangeInvisibleDuration" => Method::ChangeInvisibleDuration,
        "ForwardMessageToDeadLetterQueue" => Method::ForwardMessageToDeadLetterQueue,
        "NotifyClientTermination" => Method::NotifyClientTermination,
        "RecallMessage" => Method::RecallMessage,
        "EndTransaction" => Method::EndTransaction,
        "Telemetry" => Method::Telemetry,
        _ => return None,
    })
}

/// What the server needs to tell clients about itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RocketMqConfig {
    /// The host clients reach this listener by (QueryRoute's broker endpoints).
    pub advertised_host: String,
    pub advertised_port: u16,
}

/// A call's answer: its messages, each framed, then the gRPC status that ends it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    pub messages: Vec<Bytes>,
    pub code: GrpcCode,
    pub message: String,
}

impl Answer {
    pub fn ok(messages: Vec<Bytes>) -> Answer {
        Answer {
            messages,
            code: GrpcCode::Ok,
            message: String::new(),
        }
    }

    /// A call ended with a gRPC error and no message.
    pub fn error(code: GrpcCode, message: impl Into<String>) -> Answer {
        Answer {
            messages: Vec::new(),
            code,
            message: message.into(),
        }
    }

    /// One answer message with only a RocketMQ status (a refusal of any method).
    fn refused(refusal: Refusal) -> Answer {
        Answer::ok(vec![grpc::frame(&StatusOnly {
            status: Some(refusal.status()),
        })])
    }
}

/// A RocketMQ refusal: the status code and its message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub code: Code,
    pub message: String,
}

impl Refusal {
    pub fn new(code: Code, message: impl Into<String>) -> Refusal {
        Refusal {
            code,
            message: message.into(),
        }
    }

    pub fn status(&self) -> Status {
        Status {
            code: self.code as i32,
            message: self.message.clone(),
        }
    }
}

/// The OK status every successful answer carries.
pub(crate) fn ok() -> Option<Status> {
    Some(Status {
        code: Code::Ok as i32,
        message: "OK".to_string(),
    })
}

/// The one mapping of node errors to RocketMQ codes (docs/style.md §6: no `_` arm).
pub(crate) fn refusal_of(error: NodeError) -> Refusal {
    let code = match &error {
        NodeError::Engine(engine) => match engine {
            EngineError::QueueNotFound => Code::TopicNotFound,
            EngineError::GroupNotFound => Code::ConsumerGroupNotFound,
            EngineError::QueueExists
            | EngineError::GroupExists
            | EngineError::InvalidName
            | EngineError::InvalidConfig(_)
            | EngineError::EmptyBatch
            | EngineError::BatchTooLarge { .. }
            | EngineError::InvalidMaxMessages { .. }
            | EngineError::NoDeadLetters
            | EngineError::InvalidMembership(_) => Code::BadRequest,
            EngineError::TooManyQueues { .. } | EngineError::TooManyGroups { .. } => {
                Code::Forbidden
            }
            EngineError::BatchBytesTooLarge { .. } => Code::PayloadTooLarge,
            EngineError::MessageTooLarge { .. } => Code::MessageBodyTooLarge,
            EngineError::AttributesTooLarge { .. } => Code::MessagePropertiesTooLarge,
            EngineError::TooManyTags { .. }
            | EngineError::InvalidTag
            | EngineError::TooManyDistinctTags => Code::IllegalMessageTag,
            EngineError::InvalidDelay => Code::IllegalDeliveryTime,
            EngineError::InvalidVisibility { .. } => Code::IllegalInvisibleTime,
            EngineError::FilterConflict => Code::IllegalFilterExpression,
            EngineError::NotScheduled => Code::NotFound,
            EngineError::DedupTableFull | EngineError::Busy => Code::TooManyRequests,
            EngineError::NotLeader { .. } | EngineError::MembershipBusy => Code::HaNotAvailable,
            EngineError::Encode(_) | EngineError::Storage(_) => Code::InternalServerError,
        },
        NodeError::Unavailable(_) => Code::HaNotAvailable,
        NodeError::MetaChanged => Code::InternalServerError,
    };
    Refusal::new(code, error.to_string())
}

/// An authenticated call: the node, this listener's settings and the caller's tenant.
pub(crate) struct Call<'a, N: Node> {
    pub node: &'a N,
    pub config: &'a RocketMqConfig,
    pub tenant: Tenant,
}

/// A name of a topic, group or tag: not empty, at most [`NAME_BYTES_MAX`] bytes.
pub(crate) fn name_of<'r>(
    resource: Option<&'r Resource>,
    code: Code,
    what: &str,
) -> Result<&'r str, Refusal> {
    let name = resource.map_or("", |resource| resource.name.as_str());
    if name.is_empty() || name.len() > NAME_BYTES_MAX {
        return Err(Refusal::new(
            code,
            format!("a {what} name of 1 to {NAME_BYTES_MAX} bytes is required"),
        ));
    }
    Ok(name)
}

impl<N: Node> Call<'_, N> {
    /// The caller's queue a topic names, reading partition 0's leader first when this
    /// node does not know it (created through another node a moment ago).
    pub async fn topic(&self, resource: Option<&Resource>) -> Result<QueueView, Refusal> {
        let name = name_of(resource, Code::IllegalTopic, "topic")?;
        let tenant = self.tenant.project_id.as_str();
        if let Some(view) = self.node.queue_named(tenant, name) {
            return Ok(view);
        }
        if self.node.sync_directory().await {
            if let Some(view) = self.node.queue_named(tenant, name) {
                return Ok(view);
            }
        }
        Err(Refusal::new(
            Code::TopicNotFound,
            format!("topic {name} does not exist"),
        ))
    }

    /// The consumer group a resource names on `view`'s queue, if it exists
    /// (CONSUMER_GROUP_NOT_FOUND otherwise): for calls that settle a delivery, which must
    /// not create a group. A group this node does not know is looked up again after
    /// reading partition 0's leader (created through another node a moment ago).
    pub async fn existing_group(
        &self,
        view: &QueueView,
        resource: Option<&Resource>,
    ) -> Result<GroupId, Refusal> {
        let name = name_of(resource, Code::IllegalConsumerGroup, "consumer group")?;
        let find = |view: &QueueView| {
            view.groups
                .iter()
                .find(|(_, group)| group == name)
                .map(|(id, _)| *id)
        };
        if let Some(id) = find(view) {
            return Ok(id);
        }
        let fresh = if self.node.sync_directory().await {
            self.node.queue(&view.tenant, view.id)
        } else {
            None
        };
        fresh.as_ref().and_then(find).ok_or_else(|| {
            Refusal::new(
                Code::ConsumerGroupNotFound,
                format!(
                    "consumer group {name} does not exist on topic {}",
                    view.name
                ),
            )
        })
    }

    /// The consumer group a resource names on `view`'s queue, created when missing (as a
    /// RocketMQ broker creates subscription groups on first use).
    pub async fn group(
        &self,
        view: &QueueView,
        resource: Option<&Resource>,
    ) -> Result<GroupId, Refusal> {
        let name = name_of(resource, Code::IllegalConsumerGroup, "consumer group")?;
        let find = |view: &QueueView| {
            view.groups
                .iter()
                .find(|(_, group)| group == name)
                .map(|(id, _)| *id)
        };
        if let Some(id) = find(view) {
            return Ok(id);
        }
        match self.node.create_groups(view.id, &[name.to_string()]).await {
            Ok(ids) => Ok(ids[0]),
            Err(error) => {
                // Created meanwhile by another consumer, or refused (name, quota).
                let fresh = self.node.queue(&view.tenant, view.id);
                fresh
                    .as_ref()
                    .and_then(find)
                    .ok_or_else(|| refusal_of(error))
            }
        }
    }
}

/// Serves one unary or server-streaming call: `request` is its one message. A message
/// that does not decode ends the call with INVALID_ARGUMENT; every other refusal is a
/// RocketMQ status in an answer.
pub async fn unary<N: Node>(
    node: &N,
    config: &RocketMqConfig,
    method: Method,
    headers: &HeaderMap,
    request: Bytes,
) -> Answer {
    let tenant = match auth::authenticate(node, headers).await {
        Ok(tenant) => tenant,
        Err(error) => return Answer::refused(Refusal::new(Code::Unauthorized, error.message())),
    };
    let call = Call {
        node,
        config,
        tenant,
    };
    let answered = match method {
        Method::QueryRoute => match decode(request) {
            Ok(request) => crate::route::query_route(&call, request).await,
            Err(answer) => return answer,
        },
        Method::QueryAssignment => match decode(request) {
            Ok(request) => crate::route::query_assignment(&call, request).await,
            Err(answer) => return answer,
        },
        Method::Heartbeat => match decode(request) {
            Ok(request) => crate::route::heartbeat(&call, request).await,
            Err(answer) => return answer,
        },
        Method::NotifyClientTermination => match decode(request) {
            Ok(request) => crate::route::notify_client_termination(&call, request).await,
            Err(answer) => return answer,
        },
        Method::SendMessage => match decode(request) {
            Ok(request) => crate::send::send_message(&call, request).await,
            Err(answer) => return answer,
        },
        Method::RecallMessage => match decode(request) {
            Ok(request) => crate::send::recall_message(&call, request).await,
            Err(answer) => return answer,
        },
        Method::EndTransaction => match decode(request) {
            Ok(request) => crate::transaction::end_transaction(&call, request).await,
            Err(answer) => return answer,
        },
        Method::ReceiveMessage => match decode(request) {
            Ok(request) => crate::receive::receive_message(&call, request).await,
            Err(answer) => return answer,
        },
        Method::AckMessage => match decode(request) {
            Ok(request) => crate::receive::ack_message(&call, request).await,
            Err(answer) => return answer,
        },
        Method::ChangeInvisibleDuration => match decode(request) {
            Ok(request) => crate::receive::change_invisible_duration(&call, request).await,
            Err(answer) => return answer,
        },
        Method::ForwardMessageToDeadLetterQueue => match decode(request) {
            Ok(request) => crate::receive::forward_to_dead_letters(&call, request).await,
            Err(answer) => return answer,
        },
        Method::Telemetry => {
            return Answer::error(
                GrpcCode::Internal,
                "Telemetry is a bidirectional stream, not a unary call",
            )
        }
    };
    match answered {
        Ok(messages) => Answer::ok(messages),
        Err(refusal) => Answer::refused(refusal),
    }
}

/// Decodes a request message, or the answer that ends the call.
pub fn decode<M: prost::Message + Default>(request: Bytes) -> Result<M, Answer> {
    M::decode(request).map_err(|error| {
        Answer::error(
            GrpcCode::InvalidArgument,
            format!("the request message does not decode: {error}"),
        )
    })
}

/// One answer message, framed.
pub(crate) fn framed(message: &impl prost::Message) -> Vec<Bytes> {
    vec![grpc::frame(message)]
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message as _;

    /// The method a path names.
    fn check(path: &str) -> Option<Method> {
        method_of(path)
    }

    #[test]
    fn paths_name_methods() {
        assert_eq!(
            check("/apache.rocketmq.v2.MessagingService/SendMessage"),
            Some(Method::SendMessage)
        );
        assert_eq!(
            check("/apache.rocketmq.v2.MessagingService/PullMessage"),
            None
        );
        assert_eq!(
            check("/apache.rocketmq.v2.MessagingService/EndTransaction"),
            Some(Method::EndTransaction)
        );
        assert_eq!(check("/other.Service/SendMessage"), None);
        let refused = Answer::refused(Refusal::new(Code::Unauthorized, "no"));
        let message = &refused.messages[0][crate::grpc::PREFIX_BYTES..];
        let status = StatusOnly::decode(message).unwrap().status.unwrap();
        assert_eq!(status.code, 40100);
    }
}
