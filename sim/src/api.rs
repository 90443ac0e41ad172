//! The simulated clients' side of the DMS API: signed HTTP requests (method, path, query,
//! JSON body, `Host`, and the `SDK-HMAC-SHA256` Authorization that
//! `sluice_http::auth::sign_request` makes with the tenant's AK/SK at simulated time),
//! and the parsing of the JSON answers into what the history records.
//!
//! It speaks the API as a client would: from the wire shapes of docs/dms-api.md §3 only, never
//! from the adapter's types. An answer of the wrong shape is an adapter bug and panics
//! (the run reports the panic as a violation).

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HOST};
use http::request::Parts;
use http::Method;
use serde_json::{json, Value};
use sluice_http::auth::sign_request;

use crate::history::{key_of, Delivered, MessageId};

/// The `Host` every client sends (signed, as the SDKs do).
const HOST_NAME: &str = "sluice.sim:8080";

/// Who sends a request: a tenant's project id and its AK/SK, and how this request
/// authenticates and names the API version.
#[derive(Clone, Debug)]
pub struct Credentials {
    pub project: String,
    pub ak: String,
    pub sk: String,
    /// Sent as `X-Auth-Token` instead of a signature, when set (a Keystone token).
    pub token: Option<String>,
    /// Under `/v1.0/{project_id}` instead of `/v2/{project_id}`.
    pub v1: bool,
}

/// A request before signing.
pub struct ApiRequest {
    pub method: Method,
    /// Without the `/v2/{project_id}` prefix, e.g. `/queues`; or, starting with `/v3/` or
    /// `/admin/`, the whole path.
    pub path: String,
    pub query: Option<String>,
    pub body: Option<Value>,
}

impl ApiRequest {
    fn new(method: Method, path: String, query: Option<String>, body: Option<Value>) -> Self {
        ApiRequest {
            method,
            path,
            query,
            body,
        }
    }

    /// A label for the trace when the request fails.
    pub fn label(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

/// `POST /v3/auth/tokens`, signed with the AK/SK: the answer's `X-Subject-Token` header
/// is a token for the tenant's project.
pub fn login() -> ApiRequest {
    ApiRequest::new(
        Method::POST,
        "/v3/auth/tokens".into(),
        None,
        Some(json!({})),
    )
}

/// `POST /queues`: a NORMAL queue, or a FIFO queue ordered per message group; with
/// `max_consume_count`, dead letters are on (`redrive_policy: enable`).
pub fn queue_create(name: &str, fifo: bool, max_consume_count: Option<u32>) -> ApiRequest {
    let mut body = if fifo {
        json!({"name": name, "queue_mode": "FIFO", "fifo_scope": "message_group"})
    } else {
        json!({"name": name, "queue_mode": "NORMAL"})
    };
    if let Some(count) = max_consume_count {
        body["redrive_policy"] = json!("enable");
        body["max_consume_count"] = json!(count);
    }
    ApiRequest::new(Method::POST, "/queues".into(), None, Some(body))
}

/// `DELETE /queues/{queue_id}`.
pub fn queue_delete(queue_id: &str) -> ApiRequest {
    ApiRequest::new(Method::DELETE, format!("/queues/{queue_id}"), None, None)
}

/// `POST /admin/cluster/move`: every partition's replica on node `from` moves to node
/// `to` (signed with the admin credentials).
pub fn cluster_move(from: u64, to: u64) -> ApiRequest {
    ApiRequest::new(
        Method::POST,
        "/admin/cluster/move".into(),
        None,
        Some(json!({ "from": from, "to": to })),
    )
}

/// `GET /queues/{queue_id}/groups`.
pub fn groups_list(queue_id: &str) -> ApiRequest {
    ApiRequest::new(
        Method::GET,
        format!("/queues/{queue_id}/groups"),
        None,
        None,
    )
}

/// `GET /queues`.
pub fn queue_list() -> ApiRequest {
    ApiRequest::new(Method::GET, "/queues".into(), None, None)
}

/// `POST /queues/{queue_id}/groups`.
pub fn groups_create(queue_id: &str, names: &[&str]) -> ApiRequest {
    let groups: Vec<Value> = names.iter().map(|name| json!({ "name": name })).collect();
    ApiRequest::new(
        Method::POST,
        format!("/queues/{queue_id}/groups"),
        None,
        Some(json!({ "groups": groups })),
    )
}

/// One message of a send: its key (the body), FIFO group, delay and dedup id.
#[derive(Clone, Debug)]
pub struct Outgoing {
    pub key: u32,
    pub fifo_group: Option<String>,
    pub delay: Delay,
    pub dedup_id: String,
}

#[derive(Clone, Copy, Debug)]
pub enum Delay {
    None,
    /// `delay_time`, milliseconds.
    Ms(u64),
    /// The extension `delay_level` (1 = 1 s, 2 = 5 s).
    Level(u8),
    /// The extension `deliver_at`: a wall-clock date, epoch milliseconds (a scheduled
    /// message).
    At(u64),
    /// The extension `transaction`: a half message, first checked after this many ms.
    Half(u64),
}

/// `POST /queues/{queue_id}/messages` with `return_id`, so the answer names the ids.
pub fn send(queue_id: &str, messages: &[Outgoing]) -> ApiRequest {
    let messages: Vec<Value> = messages
        .iter()
        .map(|message| {
            let mut entry = json!({
                "body": crate::history::body_of(message.key),
                "dedup_id": message.dedup_id,
            });
            if let Some(group) = &message.fifo_group {
                entry["fifo_group"] = json!(group);
            }
            match message.delay {
                Delay::None => {}
                Delay::Ms(ms) => entry["delay_time"] = json!(ms),
                Delay::Level(level) => entry["delay_level"] = json!(level),
                Delay::At(at) => entry["deliver_at"] = json!(at),
                Delay::Half(check_after_ms) => {
                    entry["transaction"] = json!(true);
                    entry["transaction_check_after_ms"] = json!(check_after_ms);
                }
            }
            entry
        })
        .collect();
    ApiRequest::new(
        Method::POST,
        format!("/queues/{queue_id}/messages"),
        None,
        Some(json!({"messages": messages, "return_id": true})),
    )
}

/// `DELETE /queues/{queue_id}/messages/{message_id}` (extension): cancels a scheduled or
/// delayed message not yet released.
pub fn cancel(queue_id: &str, message_id: MessageId) -> ApiRequest {
    let id = format!("{:04x}{:016x}", message_id.partition, message_id.offset);
    ApiRequest::new(
        Method::DELETE,
        format!("/queues/{queue_id}/messages/{id}"),
        None,
        None,
    )
}

/// `POST /queues/{queue_id}/messages/{message_id}/commit` or `/rollback` (extension):
/// ends a half message's transaction.
pub fn end_transaction(queue_id: &str, message_id: MessageId, commit: bool) -> ApiRequest {
    let id = format!("{:04x}{:016x}", message_id.partition, message_id.offset);
    let action = if commit { "commit" } else { "rollback" };
    ApiRequest::new(
        Method::POST,
        format!("/queues/{queue_id}/messages/{id}/{action}"),
        None,
        None,
    )
}

/// `POST /queues/{queue_id}/transactions/checks` (extension): takes the checks of the
/// queue's open transactions.
pub fn transaction_checks(queue_id: &str) -> ApiRequest {
    ApiRequest::new(
        Method::POST,
        format!("/queues/{queue_id}/transactions/checks"),
        Some("limit=20".into()),
        None,
    )
}

/// A checks answer: each check's key (its body) and message id.
pub fn checked(answer: &Value) -> Vec<(u32, MessageId)> {
    answer["checks"]
        .as_array()
        .expect("checks answers checks")
        .iter()
        .map(|check| {
            let message = &check["message"];
            let key = key_of(&message["body"]).expect("a check carries a body the sim sent");
            let id = message["message_id"]
                .as_str()
                .expect("a check names its message");
            (
                key,
                MessageId::parse(id).expect("a message id is 20 hex digits"),
            )
        })
        .collect()
}

/// Which of a group's message sets a consume or ack reaches: its queue's messages or its
/// dead letters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Lane {
    Main,
    Dead,
}

impl Lane {
    fn path(self) -> &'static str {
        match self {
            Lane::Main => "messages",
            Lane::Dead => "deadletters",
        }
    }

    fn ack_path(self) -> &'static str {
        match self {
            Lane::Main => "ack",
            Lane::Dead => "deadletters/ack",
        }
    }
}

/// `GET /queues/{queue_id}/groups/{group_id}/messages` (or `/deadletters`).
pub fn consume(
    queue_id: &str,
    group_id: &str,
    lane: Lane,
    max_messages: u32,
    time_wait_s: u64,
    ack_wait_s: u64,
) -> ApiRequest {
    ApiRequest::new(
        Method::GET,
        format!("/queues/{queue_id}/groups/{group_id}/{}", lane.path()),
        Some(format!(
            "ack_wait={ack_wait_s}&max_msgs={max_messages}&time_wait={time_wait_s}"
        )),
        None,
    )
}

/// `POST /queues/{queue_id}/groups/{group_id}/ack` (or `/deadletters/ack`), every entry
/// with the same status.
pub fn ack(
    queue_id: &str,
    group_id: &str,
    lane: Lane,
    handlers: &[String],
    success: bool,
) -> ApiRequest {
    let status = if success { "success" } else { "fail" };
    let entries: Vec<Value> = handlers
        .iter()
        .map(|handler| json!({"handler": handler, "status": status}))
        .collect();
    ApiRequest::new(
        Method::POST,
        format!("/queues/{queue_id}/groups/{group_id}/{}", lane.ack_path()),
        None,
        Some(json!({ "message": entries })),
    )
}

/// The request as it leaves the client: parts with `Host`, `Content-Type` (with a body),
/// and `X-Sdk-Date` and `Authorization` signed at `now_ms`, or `X-Auth-Token`.
pub fn signed(credentials: &Credentials, request: &ApiRequest, now_ms: u64) -> (Parts, Bytes) {
    let version = if credentials.v1 { "v1.0" } else { "v2" };
    let path = if request.path.starts_with("/v3/") || request.path.starts_with("/admin/") {
        request.path.clone()
    } else {
        format!("/{version}/{}{}", credentials.project, request.path)
    };
    let body = request
        .body
        .as_ref()
        .map(|value| value.to_string().into_bytes())
        .unwrap_or_default();
    let uri = match &request.query {
        Some(query) => format!("{path}?{query}"),
        None => path.clone(),
    };
    let mut builder = http::Request::builder()
        .method(request.method.clone())
        .uri(uri)
        .header(HOST, HOST_NAME);
    if request.body.is_some() {
        builder = builder.header(CONTENT_TYPE, "application/json");
    }
    let (mut parts, ()) = builder.body(()).expect("a valid request").into_parts();
    if let Some(token) = &credentials.token {
        let token = http::HeaderValue::from_str(token).expect("a token is a header value");
        parts.headers.insert("x-auth-token", token);
        return (parts, Bytes::from(body));
    }
    let now_s = i64::try_from(now_ms / 1000).expect("seconds fit i64");
    sign_request(
        &credentials.ak,
        &credentials.sk,
        request.method.as_str(),
        &path,
        request.query.as_deref(),
        &mut parts.headers,
        &body,
        now_s,
    );
    (parts, Bytes::from(body))
}

/// The `id` of a created queue.
pub fn queue_created(answer: &Value) -> String {
    answer["id"]
        .as_str()
        .expect("a queue create answers its id")
        .to_string()
}

/// The id of the queue named `name` in a queue list, if any.
pub fn queue_named(answer: &Value, name: &str) -> Option<String> {
    named_id(&answer["queues"], name, "a queue list answers queues")
}

/// The id of the group named `name` in a group list, if any.
pub fn group_named(answer: &Value, name: &str) -> Option<String> {
    named_id(&answer["groups"], name, "a group list answers groups")
}

fn named_id(list: &Value, name: &str, shape: &str) -> Option<String> {
    list.as_array()
        .expect(shape)
        .iter()
        .find(|item| item["name"] == json!(name))
        .map(|item| item["id"].as_str().expect("an id").to_string())
}

/// How many queues a queue list names.
pub fn queues_listed(answer: &Value) -> usize {
    answer["queues"]
        .as_array()
        .expect("a queue list answers queues")
        .len()
}

/// The ids of created groups, in request order.
pub fn groups_created(answer: &Value) -> Vec<String> {
    answer["groups"]
        .as_array()
        .expect("a group create answers its groups")
        .iter()
        .map(|group| group["id"].as_str().expect("a group id").to_string())
        .collect()
}

/// The message ids a send answered, in request order.
pub fn sent(answer: &Value) -> Vec<MessageId> {
    answer["messages"]
        .as_array()
        .expect("a send answers messages")
        .iter()
        .map(|message| {
            assert_eq!(message["state"], json!(0), "a stored message has state 0");
            let id = message["id"].as_str().expect("return_id gives an id");
            MessageId::parse(id).expect("a message id is 20 hex digits")
        })
        .collect()
}

/// A consume's array: each delivery with its handler.
pub fn consumed(answer: &Value) -> Vec<(Delivered, String)> {
    answer
        .as_array()
        .expect("a consume answers an array")
        .iter()
        .map(|entry| {
            let message = &entry["message"];
            let id = message["message_id"].as_str().expect("a message id");
            let delivered = Delivered {
                // A body no producer wrote names no key; the checker flags it.
                key: key_of(&message["body"]).unwrap_or(u32::MAX),
                message_id: MessageId::parse(id).expect("a message id is 20 hex digits"),
            };
            let handler = entry["handler"].as_str().expect("a handler").to_string();
            (delivered, handler)
        })
        .collect()
}

/// An ack's `{"success", "fail"}` as one flag per entry: entries are processed in order
/// and processing stops at the first invalid one, so the successes are a prefix.
pub fn acked(answer: &Value, entries: usize) -> Vec<bool> {
    let success = answer["success"].as_u64().expect("an ack answers success");
    let fail = answer["fail"].as_u64().expect("an ack answers fail");
    let success = usize::try_from(success).expect("fits");
    assert_eq!(
        success + usize::try_from(fail).expect("fits"),
        entries,
        "an ack counts every entry"
    );
    (0..entries).map(|index| index < success).collect()
}
