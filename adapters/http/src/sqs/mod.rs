//! The SQS API over the AWS JSON 1.0 protocol (`POST /` with `X-Amz-Target:
//! AmazonSQS.<Operation>` and a JSON body) and the query protocol (`Action=<Operation>`
//! form parameters, XML answers: [`query`], a translation onto the same operations),
//! signed with AWS Signature Version 4 by the tenant's AK/SK (docs/sqs.md).
//!
//! One engine: an SQS queue is a Sluice queue of the tenant with one implicit consumer
//! group ([`GROUP`]); the adapter holds no queue semantics. It translates requests into
//! node calls, keeps SQS's own queue attributes in the queue's opaque `meta` and a
//! message's SQS attributes in its opaque attributes (behind [`ATTRIBUTES_MARK`], which
//! no DMS or Kafka attribute starts with), and maps node errors to SQS's.

mod errors;
mod messages;
pub mod query;
mod queues;
mod redrive;
pub mod sigv4;
mod tags;

use bytes::Bytes;
use http::request::Parts;
use http::{HeaderValue, Response, StatusCode};
use serde_json::{Map, Value};
use sluice_node::Node;

pub use errors::SqsError;

use crate::service::ServiceConfig;

/// The JSON protocol's content type, on requests and answers.
pub const JSON_CONTENT_TYPE: &str = "application/x-amz-json-1.0";
/// The prefix of `X-Amz-Target` that routes a request here.
pub const TARGET_PREFIX: &str = "AmazonSQS.";
/// The consumer group every SQS queue reads through.
pub const GROUP: &str = "sqs";
/// The header the AWS SDKs read a request's id from.
pub const REQUEST_ID_HEADER: &str = "x-amzn-requestid";
/// The first bytes of a message's attributes written by this adapter.
pub const ATTRIBUTES_MARK: &[u8] = b"\0S\x01";
/// The first bytes of a message's attributes written by this adapter when the message
/// has a deduplication id (FIFO): format 2, `{"attributes": {...}, "dedup": ID}`.
pub const ATTRIBUTES_MARK_DEDUP: &[u8] = b"\0S\x02";

/// Whether `parts` is an SQS request: of the JSON protocol ([`is_json`]) or of the query
/// protocol ([`query::is_query`]).
pub fn is_sqs(parts: &Parts) -> bool {
    is_json(parts) || query::is_query(parts)
}

/// Whether `parts` is a JSON-protocol SQS request (its `X-Amz-Target` names SQS).
pub fn is_json(parts: &Parts) -> bool {
    parts
        .headers
        .get("x-amz-target")
        .is_some_and(|target| target.as_bytes().starts_with(TARGET_PREFIX.as_bytes()))
}

/// `response` in SQS's error format when `parts` is an SQS request and the server
/// refused it before the SQS adapter answered (a body too large or too slow, the request
/// limit, JSON nested too deep: answers in the DMS format); any other response as it is.
pub fn as_sqs_error(parts: &Parts, response: Response<Bytes>) -> Response<Bytes> {
    let answered_here = response.headers().contains_key("x-amzn-query-error");
    if !is_sqs(parts) || response.status().is_success() || answered_here {
        return response;
    }
    let status = response.status();
    let message = serde_json::from_slice::<Value>(response.body())
        .ok()
        .and_then(|body| body["error_msg"].as_str().map(str::to_string))
        .unwrap_or_else(|| status.canonical_reason().unwrap_or("refused").to_string());
    let error = SqsError::from_status(status, message);
    let id = response.headers().get("x-request-id");
    if !is_json(parts) {
        let id = id.cloned().unwrap_or(HeaderValue::from_static(""));
        return query::error_response(&error, &id);
    }
    let mut answer = error.response();
    if let Some(id) = id {
        answer.headers_mut().insert(REQUEST_ID_HEADER, id.clone());
        answer.headers_mut().insert("x-request-id", id.clone());
    }
    answer
}

/// What every operation works with: the node, the service's configuration and the
/// authenticated tenant's project id.
pub(crate) struct Ctx<'a, N: Node> {
    pub node: &'a N,
    pub config: &'a ServiceConfig,
    pub tenant: &'a str,
}

impl<N: Node> Ctx<'_, N> {
    /// The URL of the tenant's queue `name`: the endpoint, the project id, the name.
    pub fn queue_url(&self, name: &str) -> String {
        format!(
            "{}/{}/{}",
            self.config.endpoint.trim_end_matches('/'),
            self.tenant,
            name
        )
    }
}

/// Serves one SQS request, of either protocol.
pub async fn handle<N: Node>(
    node: &N,
    config: &ServiceConfig,
    parts: &Parts,
    body: &[u8],
) -> Response<Bytes> {
    if !is_json(parts) {
        return query::handle(node, config, parts, body).await;
    }
    answer(serve(node, config, parts, body).await)
}

/// The HTTP answer of an operation's outcome.
fn answer(outcome: Result<Map<String, Value>, SqsError>) -> Response<Bytes> {
    match outcome {
        Ok(answer) => {
            let mut response = Response::new(Bytes::from(Value::Object(answer).to_string()));
            response
                .headers_mut()
                .insert("content-type", HeaderValue::from_static(JSON_CONTENT_TYPE));
            *response.status_mut() = StatusCode::OK;
            response
        }
        Err(error) => error.response(),
    }
}

async fn serve<N: Node>(
    node: &N,
    config: &ServiceConfig,
    parts: &Parts,
    body: &[u8],
) -> Result<Map<String, Value>, SqsError> {
    let tenant = authenticate(node, config, parts, body).await?;
    let action = parts
        .headers
        .get("x-amz-target")
        .and_then(|target| target.to_str().ok())
        .and_then(|target| target.strip_prefix(TARGET_PREFIX))
        .unwrap_or_default();
    dispatch(node, config, &tenant, action, body).await
}

/// Serves an authenticated request: `action` (the operation's name) with its JSON
/// `body`, for the tenant whose project id is `tenant`. [`handle`] calls it after the
/// signature check; the fuzz target calls it directly, to reach past that check.
pub async fn handle_authenticated<N: Node>(
    node: &N,
    config: &ServiceConfig,
    tenant: &str,
    action: &str,
    body: &[u8],
) -> Response<Bytes> {
    answer(dispatch(node, config, tenant, action, body).await)
}

async fn dispatch<N: Node>(
    node: &N,
    config: &ServiceConfig,
    tenant: &str,
    action: &str,
    body: &[u8],
) -> Result<Map<String, Value>, SqsError> {
    let input: Value = if body.is_empty() {
        Value::Object(Map::new())
    } else {
        serde_json::from_slice(body)
            .map_err(|error| SqsError::malformed(format!("the body is not JSON: {error}")))?
    };
    let Value::Object(input) = input else {
        return Err(SqsError::malformed("the body is not a JSON object"));
    };
    dispatch_input(node, config, tenant, action, &input).await
}

/// Serves `action` with its parsed JSON `input`: every operation of both protocols.
async fn dispatch_input<N: Node>(
    node: &N,
    config: &ServiceConfig,
    tenant: &str,
    action: &str,
    input: &Map<String, Value>,
) -> Result<Map<String, Value>, SqsError> {
    let ctx = Ctx {
        node,
        config,
        tenant,
    };
    match action {
        "CreateQueue" => queues::create(&ctx, input).await,
        "GetQueueUrl" => queues::get_url(&ctx, input).await,
        "ListQueues" => queues::list(&ctx, input),
        "DeleteQueue" => queues::delete(&ctx, input).await,
        "GetQueueAttributes" => queues::attributes(&ctx, input).await,
        "SetQueueAttributes" => queues::set_attributes(&ctx, input).await,
        "PurgeQueue" => queues::purge(&ctx, input).await,
        "TagQueue" => tags::tag(&ctx, input).await,
        "UntagQueue" => tags::untag(&ctx, input).await,
        "ListQueueTags" => tags::list(&ctx, input).await,
        "SendMessage" => messages::send(&ctx, input).await,
        "SendMessageBatch" => messages::send_batch(&ctx, input).await,
        "ReceiveMessage" => messages::receive(&ctx, input).await,
        "DeleteMessage" => messages::delete(&ctx, input).await,
        "DeleteMessageBatch" => messages::delete_batch(&ctx, input).await,
        "ChangeMessageVisibility" => messages::change_visibility(&ctx, input).await,
        "ChangeMessageVisibilityBatch" => messages::change_visibility_batch(&ctx, input).await,
        "ListDeadLetterSourceQueues" => redrive::list_sources(&ctx, input).await,
        "StartMessageMoveTask" => redrive::start_move(&ctx, input).await,
        "ListMessageMoveTasks" => redrive::list_moves(&ctx, input).await,
        "CancelMessageMoveTask" => redrive::cancel_move(&ctx, input).await,
        other => Err(SqsError::invalid_action(other)),
    }
}

/// The tenant (project id) whose AK signed the request; the tenant list is read again
/// once when the AK is unknown (a tenant created through another node a moment ago).
async fn authenticate<N: Node>(
    node: &N,
    config: &ServiceConfig,
    parts: &Parts,
    body: &[u8],
) -> Result<String, SqsError> {
    let now_s = i64::try_from(node.wall_ms() / 1000).expect("seconds fit i64");
    let verify = || {
        let tenants = node.tenants();
        let secret = |ak: &str| tenants.by_ak(ak).map(|t| t.sk.clone());
        sigv4::verify(parts, body, secret, now_s, config.clock_skew_s_max)
            .map(|ak| tenants.by_ak(&ak).map(|t| t.project_id.clone()))
    };
    let verified = match verify() {
        Err(error) if error.name == "InvalidClientTokenId" => {
            node.sync_tenants().await;
            verify()
        }
        other => other,
    };
    verified?.ok_or_else(SqsError::invalid_client_token)
}

/// A string member of `input`, if present.
pub(crate) fn string<'a>(
    input: &'a Map<String, Value>,
    name: &str,
) -> Result<Option<&'a str>, SqsError> {
    match input.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text)),
        Some(_) => Err(SqsError::invalid_parameter(format!(
            "{name} must be a string."
        ))),
    }
}

/// A required string member of `input`.
pub(crate) fn required<'a>(input: &'a Map<String, Value>, name: &str) -> Result<&'a str, SqsError> {
    string(input, name)?.ok_or_else(|| SqsError::missing_parameter(name))
}

/// An integer member of `input` within `min..=max`, if present.
pub(crate) fn integer(
    input: &Map<String, Value>,
    name: &str,
    min: i64,
    max: i64,
) -> Result<Option<i64>, SqsError> {
    let value = match input.get(name) {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Number(number)) => number.as_i64(),
        // The query protocol's values arrive as text; accept that form too.
        Some(Value::String(text)) => text.parse().ok(),
        Some(_) => None,
    };
    match value {
        Some(value) if (min..=max).contains(&value) => Ok(Some(value)),
        _ => Err(SqsError::invalid_parameter(format!(
            "Value for parameter {name} is invalid. Reason: must be between {min} and {max}."
        ))),
    }
}
