//! The DMS queue API v1.0 (and its `/v2` alias): docs/dms-api.md §2-§6 over a [`Node`], plus
//! Sluice's extensions (`docs/dms-adapter.md`).
//!
//! The adapter parses the path and the body, checks every field against [`DmsConfig`],
//! resolves wire ids to the caller's queues and groups (another tenant's resources answer
//! 404 as if they did not exist), calls the node and renders the §3 JSON or the §5 error
//! envelope. It holds no queue state and never waits on anything but the node. The
//! caller authenticates first and passes the caller's project id.
//!
//! Files: `routes` (path grammar), `request` (body and query reading), `validate` (field
//! rules), `ids` (wire ids and handlers), `wire` (response types), `errors` (codes and the
//! kernel error mapping), and one file per resource: `queues`, `groups`, `send` (send and
//! the cancel of a scheduled message), `consume` (consume and ack, both lanes), `quotas`,
//! `tags` (queue tags).

mod alarms;
mod config;
mod consume;
pub mod errors;
mod groups;
pub mod ids;
mod queues;
mod quotas;
mod request;
pub mod routes;
mod send;
mod tags;
mod validate;
pub mod wire;

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE};
use http::request::Parts;
use http::{Response, StatusCode};
use serde::Serialize;
use sluice_core::engine::types::GroupId;
use xxhash_rust::xxh3::Xxh3;

pub use config::DmsConfig;
use errors::{
    DmsError, INVALID_GROUP_ID, INVALID_QUEUE_ID, METHOD_NOT_ALLOWED, PROJECT_MISMATCH,
    RESOURCE_NOT_FOUND,
};
use ids::IdError;
use request::Query;
use routes::{Endpoint, Resource};

use sluice_node::{Node, QueueView};

/// The request id header every response carries.
pub const REQUEST_ID_HEADER: &str = "x-request-id";
/// A client-supplied request id longer than this is replaced.
const REQUEST_ID_CHARS_MAX: usize = 128;

/// A handler's answer before rendering: a status and an optional JSON body.
pub(crate) struct Reply {
    status: StatusCode,
    body: Option<Vec<u8>>,
    /// The body's media type: JSON but for an export's JSON lines.
    content_type: &'static str,
    /// An export's cursor for the next page (`X-Next-Cursor`), when there is more.
    next_cursor: Option<String>,
}

impl Reply {
    fn json<T: Serialize>(status: StatusCode, value: &T) -> Reply {
        let body = serde_json::to_vec(value).expect("wire types always serialise");
        Reply {
            status,
            body: Some(body),
            content_type: "application/json",
            next_cursor: None,
        }
    }

    fn no_content() -> Reply {
        Reply {
            status: StatusCode::NO_CONTENT,
            body: None,
            content_type: "application/json",
            next_cursor: None,
        }
    }

    /// JSON lines (`application/x-ndjson`), one value a line, and the next page's cursor.
    fn json_lines<T: Serialize>(lines: &[T], next_cursor: Option<String>) -> Reply {
        let mut body = Vec::new();
        for line in lines {
            serde_json::to_writer(&mut body, line).expect("wire types always serialise");
            body.push(b'\n');
        }
        Reply {
            status: StatusCode::OK,
            body: Some(body),
            content_type: "application/x-ndjson",
            next_cursor,
        }
    }
}

/// The header naming the next page of a dead-letter export (a JSON-lines answer).
pub const NEXT_CURSOR_HEADER: &str = "x-next-cursor";

/// Whether `path` belongs to the DMS API (a `queues` or `quotas` resource under a
/// `/v1.0/{project}` or `/v2/{project}` prefix, or the `queue` tag resources under
/// `/v2/{project}`), so the server sends it to [`handle`].
pub fn is_dms_path(path: &str) -> bool {
    let (v2, rest) = if let Some(rest) = path.strip_prefix("/v1.0/") {
        (false, rest)
    } else if let Some(rest) = path.strip_prefix("/v2/") {
        (true, rest)
    } else {
        return false;
    };
    let mut segments = rest.split('/');
    let _project = segments.next();
    match segments.next() {
        Some("queues" | "quotas") => true,
        Some("queue") => v2,
        _ => false,
    }
}

/// A low-cardinality name of the request's endpoint for metrics: `send`, `consume`, ...,
/// or `unknown`.
pub fn route_label(parts: &Parts) -> &'static str {
    routes::parse(parts.uri.path())
        .and_then(|route| routes::endpoint(&parts.method, &route.resource).ok())
        .map_or("unknown", Endpoint::label)
}

/// Answers one DMS request for the authenticated caller `project_id`.
pub async fn handle<N: Node>(
    node: &N,
    config: &DmsConfig,
    project_id: &str,
    parts: &Parts,
    body: &[u8],
) -> Response<Bytes> {
    let request_id = request_id(node, parts, body);
    let reply = match dispatch(node, config, project_id, parts, body).await {
        Ok(reply) => reply,
        Err(error) => error_reply(&error),
    };
    let mut builder = Response::builder()
        .status(reply.status)
        .header(REQUEST_ID_HEADER, request_id);
    if reply.body.is_some() {
        builder = builder.header(CONTENT_TYPE, HeaderValue::from_static(reply.content_type));
    }
    if let Some(cursor) = &reply.next_cursor {
        builder = builder.header(NEXT_CURSOR_HEADER, cursor.as_str());
    }
    builder
        .body(Bytes::from(reply.body.unwrap_or_default()))
        .expect("status and headers are valid")
}

/// A response carrying `error` in the §5 envelope, for answers made outside
/// [`handle`] (authentication, server limits).
pub fn error_response(error: &DmsError) -> Response<Bytes> {
    let reply = error_reply(error);
    Response::builder()
        .status(reply.status)
        .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
        .body(Bytes::from(reply.body.unwrap_or_default()))
        .expect("status and headers are valid")
}

/// The §5 error envelope.
pub(crate) fn error_reply(error: &DmsError) -> Reply {
    let body = wire::ErrorBody {
        error_code: error.code,
        error_msg: &error.message,
        error: wire::ErrorDetail {
            code: error.code,
            message: &error.message,
        },
    };
    Reply::json(error.status, &body)
}

/// The client's `X-Request-Id` if it is a sane token, otherwise one derived from the
/// request and the node's clock. The server should pass a unique id in the header.
fn request_id<N: Node>(node: &N, parts: &Parts, body: &[u8]) -> HeaderValue {
    let supplied = parts
        .headers
        .get(REQUEST_ID_HEADER)
        .filter(|value| !value.is_empty() && value.len() <= REQUEST_ID_CHARS_MAX)
        .filter(|value| value.as_bytes().iter().all(u8::is_ascii_graphic));
    if let Some(value) = supplied {
        return value.clone();
    }
    // A fast non-cryptographic digest: the id names a request, it protects nothing (a
    // SHA-256 of the body here cost about 7% of the server's CPU under load).
    let mut hasher = Xxh3::new();
    hasher.update(&node.now_ms().to_le_bytes());
    hasher.update(parts.method.as_str().as_bytes());
    hasher.update(parts.uri.path().as_bytes());
    hasher.update(parts.uri.query().unwrap_or("").as_bytes());
    hasher.update(body);
    let digest = hasher.digest128().to_le_bytes();
    HeaderValue::from_str(&hex::encode(digest)).expect("hex is a valid header value")
}

async fn dispatch<N: Node>(
    node: &N,
    config: &DmsConfig,
    project_id: &str,
    parts: &Parts,
    body: &[u8],
) -> Result<Reply, DmsError> {
    let route = routes::parse(parts.uri.path()).ok_or_else(|| {
        DmsError::new(
            StatusCode::NOT_FOUND,
            RESOURCE_NOT_FOUND,
            "The requested resource does not exist.",
        )
    })?;
    validate::project_id(route.project)?;
    let header_project = parts.headers.get("x-project-id").map(HeaderValue::as_bytes);
    let header_mismatch = header_project.is_some_and(|p| p != project_id.as_bytes());
    if route.project != project_id || header_mismatch {
        return Err(DmsError::new(
            StatusCode::UNAUTHORIZED,
            PROJECT_MISMATCH,
            "The project ID and token do not match.",
        ));
    }
    let endpoint = routes::endpoint(&parts.method, &route.resource).map_err(|allowed| {
        DmsError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            METHOD_NOT_ALLOWED,
            format!("The method is not allowed on this resource; use {allowed}."),
        )
    })?;
    request::check_body(parts, body, config.request_bytes_max)?;
    crate::json_depth::check(body, crate::json_depth::JSON_DEPTH_MAX)
        .map_err(crate::json_depth::error)?;
    let query = Query::parse(parts.uri.query());
    let ctx = Ctx {
        node,
        config,
        tenant: project_id,
        query: &query,
        body,
    };
    if may_trail(&ctx, endpoint, route.resource)
        && !node.sync_directory().await
        && may_trail(&ctx, endpoint, route.resource)
    {
        // The directory may lack what the request names and the leader of partition 0
        // could not be asked (an election): retriable, not "does not exist".
        return Err(DmsError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            errors::UNAVAILABLE,
            "This node is catching up with the cluster's queue directory; retry.",
        ));
    }
    match (endpoint, route.resource) {
        (Endpoint::QueueCreate, _) => queues::create(&ctx).await,
        (Endpoint::QueueList, _) => queues::list(&ctx).await,
        (Endpoint::QueueShow, Resource::Queue(q)) => queues::show(&ctx, &ctx.queue(q)?).await,
        (Endpoint::QueueDelete, Resource::Queue(q)) => queues::delete(&ctx, &ctx.queue(q)?).await,
        (Endpoint::GroupCreate, Resource::Groups(q)) => groups::create(&ctx, &ctx.queue(q)?).await,
        (Endpoint::GroupList, Resource::Groups(q)) => groups::list(&ctx, &ctx.queue(q)?).await,
        (Endpoint::GroupDelete, Resource::Group(q, g)) => {
            let (queue, group) = ctx.group(q, g)?;
            groups::delete(&ctx, &queue, group).await
        }
        (Endpoint::Send, Resource::Messages(q)) => send::send(&ctx, &ctx.queue(q)?).await,
        (Endpoint::Cancel, Resource::Message(q, m)) => send::cancel(&ctx, &ctx.queue(q)?, m).await,
        (Endpoint::EndTransaction, Resource::MessageEnd(q, m, commit)) => {
            send::end_transaction(&ctx, &ctx.queue(q)?, m, commit).await
        }
        (Endpoint::MessageTrace, Resource::MessageTrace(q, m)) => {
            send::trace(&ctx, &ctx.queue(q)?, m).await
        }
        (Endpoint::TransactionChecks, Resource::TransactionChecks(q)) => {
            send::take_transaction_checks(&ctx, &ctx.queue(q)?).await
        }
        (Endpoint::Consume, Resource::GroupMessages(q, g)) => {
            let (queue, group) = ctx.group(q, g)?;
            consume::consume(&ctx, &queue, group, sluice_node::Lane::Main).await
        }
        (Endpoint::DeadLetterExport, Resource::DeadLetterExport(q, g)) => {
            let (queue, group) = ctx.group(q, g)?;
            consume::export_dead_letters(&ctx, &queue, group).await
        }
        (Endpoint::DeadLetterConsume, Resource::DeadLetters(q, g)) => {
            let (queue, group) = ctx.group(q, g)?;
            consume::consume(&ctx, &queue, group, sluice_node::Lane::DeadLetters).await
        }
        (Endpoint::Ack, Resource::Ack(q, g)) => {
            let (queue, group) = ctx.group(q, g)?;
            consume::ack(&ctx, &queue, group, sluice_node::Lane::Main).await
        }
        (Endpoint::DeadLetterAck, Resource::DeadLetterAck(q, g)) => {
            let (queue, group) = ctx.group(q, g)?;
            consume::ack(&ctx, &queue, group, sluice_node::Lane::DeadLetters).await
        }
        (Endpoint::DeadLetterRedrive, Resource::DeadLetterRedrive(q, g)) => {
            let (queue, group) = ctx.group(q, g)?;
            ctx.node
                .redrive(queue.id, group)
                .await
                .map_err(errors::from_node)?;
            Ok(Reply::no_content())
        }
        (Endpoint::QueueMetrics, Resource::QueueMetrics(q)) => {
            Ok(queues::metrics(&ctx, &ctx.queue(q)?))
        }
        (Endpoint::QueueAlarmsShow, Resource::QueueAlarms(q)) => {
            Ok(alarms::show(&ctx, &ctx.queue(q)?))
        }
        (Endpoint::QueueAlarmsReplace, Resource::QueueAlarms(q)) => alarms::replace(&ctx, q).await,
        (Endpoint::Quotas, _) => quotas::show(&ctx),
        (Endpoint::ProjectTags, _) => tags::project(&ctx),
        (Endpoint::QueueTagList, Resource::QueueTags(q)) => tags::list(&ctx.queue(q)?),
        (Endpoint::QueueTagAction, Resource::QueueTagAction(q)) => tags::action(&ctx, q).await,
        (Endpoint::QueueTagDelete, Resource::QueueTag(q, key)) => {
            tags::delete_one(&ctx, q, key).await
        }
        (endpoint, resource) => unreachable!("endpoint {endpoint:?} on resource {resource:?}"),
    }
}

/// Whether the answer may depend on a queue or group made through another node of a
/// cluster a moment ago, which this node's directory may not show yet: the request lists
/// queues or groups, or names a queue or group the directory lacks. The node then reads
/// the directory from partition 0's leader first (`Node::sync_directory`).
fn may_trail<N: Node>(ctx: &Ctx<'_, N>, endpoint: Endpoint, resource: Resource<'_>) -> bool {
    if matches!(endpoint, Endpoint::QueueList | Endpoint::GroupList) {
        return true;
    }
    match resource.ids() {
        (Some(queue), None) => ctx.queue(queue).is_err(),
        (Some(queue), Some(group)) => ctx.group(queue, group).is_err(),
        (None, _) => false,
    }
}

/// What every handler needs: the node, the limits, the caller and the request.
pub(crate) struct Ctx<'a, N: Node> {
    node: &'a N,
    config: &'a DmsConfig,
    tenant: &'a str,
    query: &'a Query,
    body: &'a [u8],
}

impl<N: Node> Ctx<'_, N> {
    /// The caller's queue named by a wire id: malformed is 400, anything else unknown
    /// (including another tenant's queue) is 404.
    fn queue(&self, text: &str) -> Result<QueueView, DmsError> {
        let queue = ids::queue_id_decode(text).map_err(|error| match error {
            IdError::Malformed => {
                DmsError::bad(INVALID_QUEUE_ID, "The queue ID format is invalid.")
            }
            IdError::Unknown => DmsError::queue_not_found(),
        })?;
        self.node
            .queue(self.tenant, queue)
            .ok_or_else(DmsError::queue_not_found)
    }

    /// The caller's queue and one of its groups.
    fn group(&self, queue: &str, group: &str) -> Result<(QueueView, GroupId), DmsError> {
        let view = self.queue(queue)?;
        let group = ids::group_id_decode(view.id, group).map_err(|error| match error {
            IdError::Malformed => {
                DmsError::bad(INVALID_GROUP_ID, "The group ID format is invalid.")
            }
            IdError::Unknown => DmsError::group_not_found(),
        })?;
        if !view.groups.iter().any(|(id, _)| *id == group) {
            return Err(DmsError::group_not_found());
        }
        Ok((view, group))
    }

    fn quotas(&self) -> sluice_node::tenants::Quotas {
        self.node
            .tenants()
            .by_project(self.tenant)
            .map_or(sluice_node::tenants::Quotas::dms_default(), |t| t.quotas)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dms_paths_and_labels() {
        // Goal: the server's routing predicate and the metric labels.
        assert!(is_dms_path("/v1.0/p/queues"));
        assert!(is_dms_path("/v2/p/queues/x/y/z"));
        assert!(is_dms_path("/v1.0/p/quotas/dms"));
        assert!(!is_dms_path("/v3/auth/tokens"));
        assert!(!is_dms_path("/v1.0/p/instances"));
        assert!(is_dms_path("/v2/p/queue/tags"));
        assert!(!is_dms_path("/v1.0/p/queue/tags"));
        assert!(!is_dms_path("/metrics"));
        let parts = |method: &str, uri: &str| {
            http::Request::builder()
                .method(method)
                .uri(uri)
                .body(())
                .unwrap()
                .into_parts()
                .0
        };
        assert_eq!(
            route_label(&parts("POST", "/v2/p/queues/q/messages")),
            "send"
        );
        assert_eq!(
            route_label(&parts("GET", "/v2/p/queues/q/groups/g/messages?x=1")),
            "consume"
        );
        assert_eq!(route_label(&parts("PUT", "/v2/p/queues")), "unknown");
    }
}
