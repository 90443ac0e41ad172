//! SQS errors in the AWS JSON 1.0 protocol's format: the HTTP status, a body
//! `{"__type": "com.amazonaws.sqs#Name", "message": "..."}`, and the
//! `x-amzn-query-error: CODE;Sender` header by which SDKs that speak both protocols (SQS
//! is `awsQueryCompatible`) learn the query protocol's error code.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode};
use serde_json::json;

use sluice_core::engine::types::EngineError;
use sluice_node::NodeError;

use crate::queue_meta::tags::TagError;

/// One SQS error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SqsError {
    pub status: StatusCode,
    /// The JSON protocol's shape name (`QueueDoesNotExist`).
    pub name: &'static str,
    /// The query protocol's code (`AWS.SimpleQueueService.NonExistentQueue`).
    pub code: &'static str,
    /// `true` when the caller is at fault (`Sender`), `false` for the service (`Receiver`).
    pub sender: bool,
    pub message: String,
}

impl SqsError {
    fn new(status: StatusCode, name: &'static str, code: &'static str, message: String) -> Self {
        SqsError {
            status,
            name,
            code,
            sender: status.is_client_error(),
            message,
        }
    }

    pub fn invalid_parameter(message: impl Into<String>) -> Self {
        let message = message.into();
        Self::new(
            StatusCode::BAD_REQUEST,
            "InvalidParameterValue",
            "InvalidParameterValue",
            message,
        )
    }

    pub fn missing_parameter(name: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "MissingParameter",
            "MissingParameter",
            format!("The request must contain the parameter {name}."),
        )
    }

    pub fn invalid_attribute_name(name: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "InvalidAttributeName",
            "InvalidAttributeName",
            format!("Unknown Attribute {name}."),
        )
    }

    pub fn resource_not_found() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "ResourceNotFoundException",
            "ResourceNotFoundException",
            "One or more specified resources don't exist.".to_string(),
        )
    }

    pub fn unsupported_operation(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "UnsupportedOperation",
            "AWS.SimpleQueueService.UnsupportedOperation",
            message.into(),
        )
    }

    pub fn queue_does_not_exist() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "QueueDoesNotExist",
            "AWS.SimpleQueueService.NonExistentQueue",
            "The specified queue does not exist.".to_string(),
        )
    }

    pub fn queue_name_exists(name: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "QueueNameExists",
            "QueueAlreadyExists",
            format!("A queue named {name} already exists with different attributes."),
        )
    }

    pub fn receipt_handle_invalid() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "ReceiptHandleIsInvalid",
            "ReceiptHandleIsInvalid",
            "The input receipt handle is invalid.".to_string(),
        )
    }

    pub fn message_not_inflight() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "MessageNotInflight",
            "AWS.SimpleQueueService.MessageNotInflight",
            "The message referred to is not in flight.".to_string(),
        )
    }

    pub fn too_many_entries() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "TooManyEntriesInBatchRequest",
            "AWS.SimpleQueueService.TooManyEntriesInBatchRequest",
            "Maximum number of entries per request are 10.".to_string(),
        )
    }

    pub fn purge_queue_in_progress() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "PurgeQueueInProgress",
            "AWS.SimpleQueueService.PurgeQueueInProgress",
            "Only one PurgeQueue operation on a queue is allowed every 60 seconds.".to_string(),
        )
    }

    pub fn invalid_action(action: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "InvalidAction",
            "InvalidAction",
            format!("The action {action} is not valid for this endpoint."),
        )
    }

    pub fn malformed(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "InvalidParameterValue",
            "MalformedInput",
            message.into(),
        )
    }

    pub fn over_limit(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "OverLimit",
            "OverLimit",
            message.into(),
        )
    }

    pub fn missing_authentication() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "MissingAuthenticationToken",
            "MissingAuthenticationToken",
            "Request is missing Authentication Token".to_string(),
        )
    }

    pub fn incomplete_signature(message: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "IncompleteSignature",
            "IncompleteSignature",
            message.to_string(),
        )
    }

    pub fn signature_mismatch(message: &str) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "SignatureDoesNotMatch",
            "SignatureDoesNotMatch",
            message.to_string(),
        )
    }

    pub fn request_expired(amz_date: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "RequestExpired",
            "RequestExpired",
            format!("Request has expired: X-Amz-Date {amz_date} is outside the allowed skew."),
        )
    }

    pub fn invalid_client_token() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "InvalidClientTokenId",
            "InvalidClientTokenId",
            "The security token included in the request is invalid.".to_string(),
        )
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            "ServiceUnavailable",
            message.into(),
        )
    }

    /// The SQS error of a refusal the server made before the SQS adapter saw the request
    /// (a body too large or too slow, the request limit, JSON nested too deep), by its
    /// status.
    pub fn from_status(status: StatusCode, message: String) -> Self {
        let (name, code) = match status {
            StatusCode::PAYLOAD_TOO_LARGE => ("RequestEntityTooLarge", "RequestEntityTooLarge"),
            StatusCode::REQUEST_TIMEOUT => ("RequestTimeout", "RequestTimeout"),
            StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS => {
                ("ServiceUnavailable", "ServiceUnavailable")
            }
            status if status.is_client_error() => ("InvalidParameterValue", "MalformedInput"),
            _ => ("InternalFailure", "InternalFailure"),
        };
        Self::new(status, name, code, message)
    }

    /// The answer carrying this error.
    pub fn response(&self) -> Response<Bytes> {
        let body = json!({
            "__type": format!("com.amazonaws.sqs#{}", self.name),
            "message": self.message,
        });
        let fault = if self.sender { "Sender" } else { "Receiver" };
        let mut response = Response::new(Bytes::from(body.to_string()));
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        headers.insert(
            "content-type",
            HeaderValue::from_static(super::JSON_CONTENT_TYPE),
        );
        if let Ok(value) = HeaderValue::from_str(&format!("{};{fault}", self.code)) {
            headers.insert("x-amzn-query-error", value);
        }
        response
    }
}

impl From<TagError> for SqsError {
    fn from(error: TagError) -> SqsError {
        SqsError::invalid_parameter(error.0)
    }
}

impl From<NodeError> for SqsError {
    fn from(error: NodeError) -> SqsError {
        match error {
            NodeError::Engine(EngineError::QueueNotFound | EngineError::GroupNotFound) => {
                SqsError::queue_does_not_exist()
            }
            NodeError::Engine(EngineError::TooManyQueues { .. }) => {
                SqsError::over_limit("The tenant's queue quota is reached.")
            }
            NodeError::Engine(
                refused @ (EngineError::InvalidName
                | EngineError::InvalidConfig(_)
                | EngineError::EmptyBatch
                | EngineError::BatchTooLarge { .. }
                | EngineError::BatchBytesTooLarge { .. }
                | EngineError::MessageTooLarge { .. }
                | EngineError::AttributesTooLarge { .. }
                | EngineError::InvalidDelay
                | EngineError::InvalidVisibility { .. }
                | EngineError::InvalidMaxMessages { .. }),
            ) => SqsError::invalid_parameter(format!(
                "One or more parameters are invalid. Reason: {refused}."
            )),
            other => SqsError::unavailable(other.to_string()),
        }
    }
}
