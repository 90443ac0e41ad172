//! The HTTP service: one entry point for every request, before any protocol adapter.
//! It answers health checks, issues Keystone tokens, serves the admin API, and
//! authenticates DMS requests (AK/SK signature or X-Auth-Token) before handing them to
//! [`crate::dms::handle`] with the caller's project. Every response carries an
//! `X-Request-Id`.
//!
//! Errors use the DMS envelope (docs/dms-api.md §5), so every client parses them. Auth failures
//! are 401 with the token codes of §5 (10240101-10240104); no message ever contains a
//! secret. Password logins backing off answer 429 (10249429) with `Retry-After`; what a
//! login, a replayed token request or a revoked token is refused for is the node layer's
//! and the token's (docs/auth.md).

use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE};
use http::request::Parts;
use http::{Method, Response, StatusCode};
use serde_json::json;

use crate::auth::{self, AuthError, KeystoneResponse, NameOrId, SignedRequest, TokenClaims};
use crate::dms::{self, DmsConfig};
use sluice_core::engine::types::EngineError;
use sluice_node::membership::ClusterChange;
use sluice_node::requests::PartitionMembership;
use sluice_node::tenants::{Tenant, TenantDirectory, TenantError};
use sluice_node::{LoginError, LoginName, LoginRequest, Node, NodeError, ReplayRefusal};
use subtle::ConstantTimeEq;

const TOKEN_INVALID: &str = "10240101";
const TOKEN_EXPIRED: &str = "10240102";
const TOKEN_MISSING: &str = "10240103";
const ADMIN_DENIED: &str = "10240309";
/// Sluice's code for a password login refused while its tenant or address backs off.
pub const LOGIN_THROTTLED: &str = "10249429";

/// Settings of the service layer; the driver builds it once from its configuration.
#[derive(Clone)]
pub struct ServiceConfig {
    pub dms: DmsConfig,
    pub clock_skew_s_max: i64,
    pub token_ttl_s: i64,
    pub token_key: [u8; 32],
    pub admin_ak: String,
    pub admin_sk: String,
    /// The public base URL (`http://127.0.0.1:8080`), for the Keystone catalog.
    pub endpoint: String,
    pub region: String,
}

/// The client's address, as the driver saw the connection; drivers put it in the
/// request's extensions (absent in tests and in the simulation unless they set it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerAddr(pub std::net::IpAddr);

/// A 401: the DMS code and the sentence for the body.
struct Denied {
    code: &'static str,
    message: String,
}

impl Denied {
    fn new(code: &'static str, message: String) -> Denied {
        Denied { code, message }
    }

    fn render(self) -> Response<Bytes> {
        error(StatusCode::UNAUTHORIZED, self.code, self.message)
    }
}

/// Who a request is from, once authenticated.
enum Principal {
    Tenant(String),
    Admin,
}

/// An authenticated request: who, and for a signed one its signature and date (what the
/// replay cache of token requests remembers).
struct Authenticated {
    principal: Principal,
    signed: Option<auth::Verified>,
}

static REQUEST_SERIAL: AtomicU64 = AtomicU64::new(0);

/// A low-cardinality route name for metrics.
pub fn route_label(parts: &Parts) -> &'static str {
    let path = parts.uri.path();
    match path {
        "/healthz" => "healthz",
        "/readyz" => "readyz",
        "/metrics" => "metrics",
        "/v3/auth/tokens" => "keystone_token",
        "/v3" | "/v3/" => "keystone_version",
        _ if path.starts_with("/admin/") => "admin",
        _ if crate::console::is_console_path(path) => "console",
        _ if dms::is_dms_path(path) => dms::route_label(parts),
        _ => "unknown",
    }
}

pub async fn handle<N: Node>(
    node: &N,
    config: &ServiceConfig,
    parts: &Parts,
    body: &[u8],
) -> Response<Bytes> {
    let mut response = route(node, config, parts, body).await;
    if response.headers().contains_key("x-request-id") {
        return response;
    }
    let id = request_id(node);
    if crate::sqs::is_sqs(parts) {
        // Where the AWS SDKs read a request's id (ResponseMetadata.RequestId).
        response
            .headers_mut()
            .insert(crate::sqs::REQUEST_ID_HEADER, id.clone());
    }
    response.headers_mut().insert("x-request-id", id);
    response
}

/// A new request id: the node's clock and a serial, in hex.
pub(crate) fn request_id<N: Node>(node: &N) -> HeaderValue {
    let serial = REQUEST_SERIAL.fetch_add(1, Ordering::Relaxed);
    let id = format!("{:012x}{:08x}", node.now_ms(), serial & 0xffff_ffff);
    HeaderValue::from_str(&id).expect("hex is a valid header value")
}

async fn route<N: Node>(
    node: &N,
    config: &ServiceConfig,
    parts: &Parts,
    body: &[u8],
) -> Response<Bytes> {
    let path = parts.uri.path();
    // The console's paths are the console's, whatever the headers say (an SQS target
    // header there still gets the console's answer and its security policy).
    if crate::console::is_console_path(path) {
        return crate::console::serve(parts);
    }
    // A query-protocol SQS body is a form, not JSON: its values are read as text only.
    let form = crate::sqs::query::is_query(parts) && !crate::sqs::is_json(parts);
    if let Some(refused) = crate::json_depth::refusal(path, body).filter(|_| !form) {
        return refused;
    }
    if crate::sqs::is_sqs(parts) {
        if crate::sqs::is_json(parts) && parts.method != Method::POST {
            return method_not_allowed();
        }
        return crate::sqs::handle(node, config, parts, body).await;
    }
    if path == "/healthz" {
        return json_response(StatusCode::OK, json!({"status": "ok"}).to_string());
    }
    if path == "/v3" || path == "/v3/" {
        // Keystone's version document: keystoneauth reads it before logging in.
        let body = json!({"version": {
            "id": "v3.14",
            "status": "stable",
            "updated": "2020-04-07T00:00:00Z",
            "links": [{"rel": "self", "href": format!("{}/v3/", config.endpoint)}],
            "media-types": [{"base": "application/json",
                             "type": "application/vnd.openstack.identity-v3+json"}],
        }});
        return json_response(StatusCode::OK, body.to_string());
    }
    if path == "/v3/auth/tokens" {
        if parts.method != Method::POST {
            return method_not_allowed();
        }
        return keystone(node, config, parts, body).await;
    }
    let tenants_path = path == "/admin/tenants" || path.starts_with("/admin/tenants/");
    let cluster_path = path == "/admin/cluster" || path.starts_with("/admin/cluster/");
    if tenants_path || cluster_path {
        return match authenticate_synced(node, config, parts, body)
            .await
            .map(|a| a.principal)
        {
            Ok(Principal::Admin) if cluster_path => admin_cluster(node, parts, body).await,
            Ok(Principal::Admin) => admin(node, parts, body).await,
            Ok(Principal::Tenant(_)) => error(
                StatusCode::FORBIDDEN,
                ADMIN_DENIED,
                "The admin API needs the admin credentials (secrets.json in the data directory).",
            ),
            Err(failure) => failure.render(),
        };
    }
    if dms::is_dms_path(path) {
        return match authenticate_synced(node, config, parts, body)
            .await
            .map(|a| a.principal)
        {
            Ok(Principal::Tenant(project)) => {
                dms::handle(node, &config.dms, &project, parts, body).await
            }
            Ok(Principal::Admin) => error(
                StatusCode::FORBIDDEN,
                ADMIN_DENIED,
                "The admin credentials manage tenants only; use a tenant's AK/SK for queues.",
            ),
            Err(failure) => failure.render(),
        };
    }
    error(
        StatusCode::NOT_FOUND,
        dms::errors::RESOURCE_NOT_FOUND,
        format!("No resource at {path}."),
    )
}

/// [`authenticate`], and once more after the node read the tenants from partition 0's
/// leader when the first check failed: the credentials may be those of a tenant created
/// through another node of a cluster a moment ago (`Node::sync_tenants`: one read in
/// flight per shard serves every refusal meanwhile; a no-op on a single node).
async fn authenticate_synced<N: Node>(
    node: &N,
    config: &ServiceConfig,
    parts: &Parts,
    body: &[u8],
) -> Result<Authenticated, Denied> {
    match authenticate(node, config, parts, body) {
        Ok(authenticated) => Ok(authenticated),
        Err(_) => {
            node.sync_tenants().await;
            authenticate(node, config, parts, body)
        }
    }
}

/// Checks the request's credentials: an X-Auth-Token, or an AK/SK signature by a tenant
/// or the admin.
fn authenticate<N: Node>(
    node: &N,
    config: &ServiceConfig,
    parts: &Parts,
    body: &[u8],
) -> Result<Authenticated, Denied> {
    let now_s = i64::try_from(node.wall_ms() / 1000).expect("seconds fit i64");
    let tenants = node.tenants();
    if let Some(token) = parts.headers.get("x-auth-token") {
        let token = token.to_str().unwrap_or("");
        let claims = match auth::verify_token(&config.token_key, token, now_s) {
            Ok(claims) => claims,
            Err(auth::TokenError::Expired) => {
                let message = auth::TokenError::Expired.message();
                return Err(Denied::new(TOKEN_EXPIRED, message));
            }
            Err(failure) => return Err(Denied::new(TOKEN_INVALID, failure.message())),
        };
        if claims.project_id == ADMIN_TOKEN_PROJECT {
            // An admin token (`keystone_signed`): honoured while the admin keys it was
            // issued under are the node's.
            if !bool::from(admin_fingerprint(config).ct_eq(&claims.key_fingerprint)) {
                return Err(Denied::new(
                    TOKEN_INVALID,
                    "The X-Auth-Token was revoked: the admin keys changed. Request a new \
                     token."
                        .to_string(),
                ));
            }
            return Ok(Authenticated {
                principal: Principal::Admin,
                signed: None,
            });
        }
        if !token_still_valid(config, &tenants, &claims) {
            return Err(Denied::new(
                TOKEN_INVALID,
                "The X-Auth-Token was revoked: its tenant was deleted or its credentials \
                 changed. Request a new token."
                    .to_string(),
            ));
        }
        return Ok(Authenticated {
            principal: Principal::Tenant(claims.project_id),
            signed: None,
        });
    }
    let request = SignedRequest {
        method: parts.method.as_str(),
        raw_path: parts.uri.path(),
        raw_query: parts.uri.query(),
        headers: &parts.headers,
        body,
    };
    let secret = |ak: &str| {
        if ak == config.admin_ak {
            return Some(config.admin_sk.clone());
        }
        tenants.by_ak(ak).map(|t| t.sk.clone())
    };
    match auth::verify_signed_request(&request, secret, now_s, config.clock_skew_s_max) {
        Ok(verified) => {
            let principal = if verified.access_key == config.admin_ak {
                Principal::Admin
            } else {
                let tenant = tenants
                    .by_ak(&verified.access_key)
                    .expect("verified against this directory");
                Principal::Tenant(tenant.project_id.clone())
            };
            Ok(Authenticated {
                principal,
                signed: Some(verified),
            })
        }
        Err(AuthError::Missing) => Err(Denied::new(TOKEN_MISSING, AuthError::Missing.message())),
        Err(failure) => Err(Denied::new(TOKEN_INVALID, failure.message())),
    }
}

/// A verified token is honoured only while its tenant exists with the credentials it was
/// issued under: deleting the tenant or changing its keys or password revokes it at once,
/// on every shard (they share the tenant directory).
fn token_still_valid(
    config: &ServiceConfig,
    tenants: &TenantDirectory,
    claims: &TokenClaims,
) -> bool {
    let Some(tenant) = tenants.by_project(&claims.project_id) else {
        return false;
    };
    let current = token_fingerprint(config, tenant);
    bool::from(current.ct_eq(&claims.key_fingerprint))
}

/// The project id of an admin token: no tenant's (a project id is never empty).
const ADMIN_TOKEN_PROJECT: &str = "";

/// The fingerprint an admin token carries: of the admin keys.
fn admin_fingerprint(config: &ServiceConfig) -> [u8; auth::token::FINGERPRINT_BYTES] {
    auth::key_fingerprint(&config.token_key, &config.admin_ak, &config.admin_sk, None)
}

/// Who a token is issued to.
enum Holder {
    Tenant(Tenant),
    /// The admin, by a request signed with the admin keys: its token opens the admin API
    /// only (the console's admin pages), and nothing of any tenant's.
    Admin,
}

fn token_fingerprint(
    config: &ServiceConfig,
    tenant: &Tenant,
) -> [u8; auth::token::FINGERPRINT_BYTES] {
    auth::key_fingerprint(
        &config.token_key,
        &tenant.ak,
        &tenant.sk,
        tenant.password_hash.as_deref(),
    )
}

/// `POST /v3/auth/tokens`: a password login (tenant name and password), or an AK/SK-signed
/// request with any body, accepted once (its signature is remembered for the skew window),
/// answered with a token for the tenant's project.
async fn keystone<N: Node>(
    node: &N,
    config: &ServiceConfig,
    parts: &Parts,
    body: &[u8],
) -> Response<Bytes> {
    if parts.headers.contains_key("x-auth-token") {
        return unauthorized(TOKEN_EXCHANGE_REFUSED);
    }
    let holder = if parts.headers.contains_key(http::header::AUTHORIZATION) {
        match keystone_signed(node, config, parts, body) {
            Ok(holder) => holder,
            Err(refusal) => return *refusal,
        }
    } else {
        match keystone_password(node, parts, body).await {
            Ok(tenant) => Holder::Tenant(tenant),
            Err(refusal) => return *refusal,
        }
    };
    let (project_id, name, key_fingerprint) = match &holder {
        Holder::Tenant(tenant) => (
            tenant.project_id.as_str(),
            tenant.name.as_str(),
            token_fingerprint(config, tenant),
        ),
        Holder::Admin => (ADMIN_TOKEN_PROJECT, "admin", admin_fingerprint(config)),
    };
    let now_s = i64::try_from(node.wall_ms() / 1000).expect("seconds fit i64");
    let claims = TokenClaims {
        project_id: project_id.to_string(),
        user_name: name.to_string(),
        issued_unix_s: now_s,
        expires_unix_s: now_s + config.token_ttl_s,
        key_fingerprint,
    };
    let token = auth::issue_token(&config.token_key, &claims);
    let body = auth::keystone_response_body(&KeystoneResponse {
        issued_unix_s: claims.issued_unix_s,
        expires_unix_s: claims.expires_unix_s,
        user_id: project_id,
        user_name: name,
        project_id,
        project_name: name,
        endpoint: &config.endpoint,
        region: &config.region,
    });
    let mut response = json_response(StatusCode::CREATED, body);
    response.headers_mut().insert(
        "x-subject-token",
        HeaderValue::from_str(&token).expect("tokens are url-safe base64"),
    );
    response
}

const TOKEN_EXCHANGE_REFUSED: &str = "A token is issued for a password or an AK/SK-signed \
     request, not for an X-Auth-Token: send the request without it.";

/// A refused token request's answer (boxed: a response is large next to a tenant).
type Refusal = Box<Response<Bytes>>;

/// The tenant of an AK/SK-signed token request, admitted once by the node's replay cache.
fn keystone_signed<N: Node>(
    node: &N,
    config: &ServiceConfig,
    parts: &Parts,
    body: &[u8],
) -> Result<Holder, Refusal> {
    let authenticated =
        authenticate(node, config, parts, body).map_err(|denied| Box::new(denied.render()))?;
    let holder = match authenticated.principal {
        Principal::Tenant(project) => Holder::Tenant(
            node.tenants()
                .by_project(&project)
                .cloned()
                .ok_or_else(|| Box::new(unauthorized("The tenant no longer exists.")))?,
        ),
        Principal::Admin => Holder::Admin,
    };
    // A token request authenticated by an X-Auth-Token would renew tokens without end.
    let Some(signed) = authenticated.signed else {
        return Err(Box::new(unauthorized(TOKEN_EXCHANGE_REFUSED)));
    };
    let admitted = node.admit_token_request(
        signed.signature,
        signed.sdk_date_unix_s,
        config.clock_skew_s_max,
    );
    match admitted {
        Ok(()) => Ok(holder),
        Err(ReplayRefusal::Seen) => Err(Box::new(unauthorized(
            "This signed token request was already used: a signed request gives one token. \
             Sign a new request.",
        ))),
        Err(ReplayRefusal::BeforeStart) => Err(Box::new(unauthorized(
            "This signed token request is dated before the server started and may have been \
             used already. Sign a new request.",
        ))),
        Err(ReplayRefusal::Full { retry_after_ms }) => Err(Box::new(retry_later(
            StatusCode::SERVICE_UNAVAILABLE,
            dms::errors::UNAVAILABLE,
            "The server is remembering too many signed token requests; retry later or log \
             in with a password.",
            retry_after_ms,
        ))),
    }
}

/// The tenant of a password login, decided by the node (back-off, off-thread check).
async fn keystone_password<N: Node>(
    node: &N,
    parts: &Parts,
    body: &[u8],
) -> Result<Tenant, Refusal> {
    let request = auth::keystone_request_parse(body).map_err(|failure| {
        Box::new(error(
            StatusCode::BAD_REQUEST,
            dms::errors::INVALID_JSON,
            failure.message(),
        ))
    })?;
    let login = LoginRequest {
        user: login_name(&request.user),
        project: login_name(&request.project),
        password: &request.password,
        address: parts.extensions.get::<PeerAddr>().map(|peer| peer.0),
    };
    match node.login(login).await {
        Ok(tenant) => Ok(tenant),
        // One answer for every failure, so the response does not tell which part was wrong.
        Err(LoginError::Refused) => Err(Box::new(unauthorized(
            "The user name, password or project is wrong.",
        ))),
        Err(LoginError::Throttled { retry_after_ms }) => Err(Box::new(retry_later(
            StatusCode::TOO_MANY_REQUESTS,
            LOGIN_THROTTLED,
            "Too many failed logins for this user or from this address; retry after the \
             time in Retry-After.",
            retry_after_ms,
        ))),
        Err(LoginError::Busy { retry_after_ms }) => Err(Box::new(retry_later(
            StatusCode::SERVICE_UNAVAILABLE,
            dms::errors::UNAVAILABLE,
            "The server is checking too many passwords at once; retry later.",
            retry_after_ms,
        ))),
    }
}

fn login_name(name: &NameOrId) -> LoginName<'_> {
    match name {
        NameOrId::Name(name) => LoginName::Name(name),
        NameOrId::Id(id) => LoginName::Id(id),
    }
}

/// An error with `Retry-After` in whole seconds (at least 1).
fn retry_later(
    status: StatusCode,
    code: &'static str,
    message: &str,
    retry_after_ms: u64,
) -> Response<Bytes> {
    let mut response = error(status, code, message);
    let seconds = retry_after_ms.div_ceil(1000).max(1);
    response
        .headers_mut()
        .insert(http::header::RETRY_AFTER, HeaderValue::from(seconds));
    response
}

/// `/admin/tenants`: `POST {"name", "password"?}`, `GET`, `DELETE /admin/tenants/{project_id}`,
/// `PUT /admin/tenants/{project_id}/quotas`.
async fn admin<N: Node>(node: &N, parts: &Parts, body: &[u8]) -> Response<Bytes> {
    let path = parts.uri.path();
    match (&parts.method, path.strip_prefix("/admin/tenants")) {
        (&Method::GET, Some("")) => {
            let tenants = node.tenants();
            let list: Vec<serde_json::Value> = tenants
                .all()
                .iter()
                .map(|t| {
                    json!({"project_id": t.project_id, "name": t.name, "ak": t.ak,
                           "queues_max": t.quotas.queues_max,
                           "groups_per_queue_max": t.quotas.groups_per_queue_max,
                           "created": t.created_ms})
                })
                .collect();
            json_response(StatusCode::OK, json!({ "tenants": list }).to_string())
        }
        (&Method::POST, Some("")) => {
            let request: serde_json::Value = match serde_json::from_slice(body) {
                Ok(value) => value,
                Err(e) => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        dms::errors::INVALID_JSON,
                        format!("The body is not valid JSON: {e}."),
                    )
                }
            };
            let Some(name) = request.get("name").and_then(|n| n.as_str()) else {
                return error(
                    StatusCode::BAD_REQUEST,
                    dms::errors::INVALID_PARAMETER,
                    "The body needs a string field \"name\".",
                );
            };
            let password = request.get("password").and_then(|p| p.as_str());
            if password.is_some_and(|p| p.is_empty() || p.len() > 256) {
                return error(
                    StatusCode::BAD_REQUEST,
                    dms::errors::INVALID_PARAMETER,
                    "A password is 1 to 256 bytes.",
                );
            }
            match node.create_tenant(name, password).await {
                Ok(t) => json_response(
                    StatusCode::CREATED,
                    json!({"project_id": t.project_id, "name": t.name, "ak": t.ak, "sk": t.sk})
                        .to_string(),
                ),
                Err(failure) => tenant_error(failure),
            }
        }
        (&Method::PUT, Some(rest)) if rest.ends_with("/quotas") && rest.len() > 8 => {
            let project = &rest[1..rest.len() - "/quotas".len()];
            set_quotas(node, project, body).await
        }
        (&Method::DELETE, Some(rest)) if rest.len() > 1 => {
            match node.delete_tenant(&rest[1..]).await {
                Ok(()) => Response::builder()
                    .status(StatusCode::NO_CONTENT)
                    .body(Bytes::new())
                    .expect("a valid response"),
                Err(failure) => tenant_error(failure),
            }
        }
        _ => method_not_allowed(),
    }
}

/// `/admin/cluster`: `GET` (every partition's replicas and leader), `POST
/// /admin/cluster/nodes {"id": n}` (add node n's replicas), `DELETE
/// /admin/cluster/nodes/{n}` (remove them), `POST /admin/cluster/move {"from": a, "to": b}`
/// (move them). A change answers once every partition has it, with every partition's
/// configuration (`sluice_node::membership`).
async fn admin_cluster<N: Node>(node: &N, parts: &Parts, body: &[u8]) -> Response<Bytes> {
    let path = parts.uri.path();
    let change = match (&parts.method, path) {
        (&Method::GET, "/admin/cluster") => {
            let views: Vec<serde_json::Value> = node
                .cluster_membership()
                .await
                .into_iter()
                .enumerate()
                .map(|(partition, view)| match view {
                    Ok(view) => membership_json(&view),
                    Err(e) => json!({"partition": partition, "error": e.to_string()}),
                })
                .collect();
            return json_response(StatusCode::OK, json!({ "partitions": views }).to_string());
        }
        (&Method::POST, "/admin/cluster/nodes") => match node_ids(body, &["id"]) {
            Ok(ids) => ClusterChange::AddNode(ids[0]),
            Err((code, message)) => return error(StatusCode::BAD_REQUEST, code, message),
        },
        (&Method::DELETE, rest) if rest.starts_with("/admin/cluster/nodes/") => {
            match rest["/admin/cluster/nodes/".len()..].parse::<u64>() {
                Ok(id) => ClusterChange::RemoveNode(id),
                Err(_) => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        dms::errors::INVALID_PARAMETER,
                        "The path must end in a node id.",
                    )
                }
            }
        }
        (&Method::POST, "/admin/cluster/move") => match node_ids(body, &["from", "to"]) {
            Ok(ids) => ClusterChange::Move {
                from: ids[0],
                to: ids[1],
            },
            Err((code, message)) => return error(StatusCode::BAD_REQUEST, code, message),
        },
        _ => return method_not_allowed(),
    };
    match node.change_cluster(change).await {
        Ok(views) => {
            let views: Vec<serde_json::Value> = views.iter().map(membership_json).collect();
            json_response(StatusCode::OK, json!({ "partitions": views }).to_string())
        }
        Err(NodeError::Engine(EngineError::InvalidMembership(why))) => error(
            StatusCode::BAD_REQUEST,
            dms::errors::INVALID_PARAMETER,
            format!("The membership change is refused: {why}."),
        ),
        Err(e) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            dms::errors::UNAVAILABLE,
            format!("The membership change did not finish ({e}); run it again to go on."),
        ),
    }
}

fn membership_json(view: &PartitionMembership) -> serde_json::Value {
    json!({
        "partition": view.partition,
        "leader": view.leader,
        "at_leader": view.at_leader,
        "voters": view.membership.voters,
        "learners": view.membership.learners,
        "outgoing": view.membership.outgoing,
        // At the leader: each replica's entries behind the leader's last.
        "lag": view.lag.iter().map(|(node, behind)| json!({"node": node, "behind": behind})).collect::<Vec<_>>(),
    })
}

/// The positive integer fields `names` of a JSON body, in that order; otherwise the DMS
/// error code and message of the refusal.
fn node_ids(body: &[u8], names: &[&str]) -> Result<Vec<u64>, (&'static str, String)> {
    let request: serde_json::Value = serde_json::from_slice(body).map_err(|e| {
        (
            dms::errors::INVALID_JSON,
            format!("The body is not valid JSON: {e}."),
        )
    })?;
    names
        .iter()
        .map(|name| {
            request
                .get(*name)
                .and_then(serde_json::Value::as_u64)
                .filter(|id| *id > 0)
                .ok_or_else(|| {
                    (
                        dms::errors::INVALID_PARAMETER,
                        format!("The body needs a node id (a positive integer) \"{name}\"."),
                    )
                })
        })
        .collect()
}

/// `PUT /admin/tenants/{project_id}/quotas {"queues_max": n, "groups_per_queue_max": m}`.
async fn set_quotas<N: Node>(node: &N, project: &str, body: &[u8]) -> Response<Bytes> {
    let request: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let field = |name: &str, range: std::ops::RangeInclusive<u64>| {
        request
            .get(name)
            .and_then(|v| v.as_u64())
            .filter(|v| range.contains(v))
            .map(|v| u32::try_from(v).expect("range fits u32"))
    };
    let (Some(queues_max), Some(groups_per_queue_max)) = (
        field("queues_max", 1..=u64::from(QUEUES_PER_TENANT_CEILING)),
        field("groups_per_queue_max", 1..=GROUPS_PER_QUEUE_CEILING),
    ) else {
        return error(
            StatusCode::BAD_REQUEST,
            dms::errors::INVALID_PARAMETER,
            format!(
                "The body needs \"queues_max\" (1-{QUEUES_PER_TENANT_CEILING}) and \
                 \"groups_per_queue_max\" (1-{GROUPS_PER_QUEUE_CEILING})."
            ),
        );
    };
    let quotas = sluice_node::tenants::Quotas {
        queues_max,
        groups_per_queue_max,
    };
    match node.set_tenant_quotas(project, quotas).await {
        Ok(t) => json_response(
            StatusCode::OK,
            json!({"project_id": t.project_id, "name": t.name,
                   "queues_max": t.quotas.queues_max,
                   "groups_per_queue_max": t.quotas.groups_per_queue_max})
            .to_string(),
        ),
        Err(failure) => tenant_error(failure),
    }
}

/// Quota ceilings an admin may set: the engine's own ceilings per tenant and per queue
/// (the node's `queues_per_tenant_max` caps the queue quota below the first).
use sluice_core::limits::QUEUES_PER_TENANT_CEILING;
const GROUPS_PER_QUEUE_CEILING: u64 = 8;

fn tenant_error(failure: TenantError) -> Response<Bytes> {
    let status = match failure {
        TenantError::Exists => StatusCode::CONFLICT,
        TenantError::NotFound => StatusCode::NOT_FOUND,
        TenantError::InvalidName | TenantError::InvalidPassword => StatusCode::BAD_REQUEST,
        TenantError::Storage(_) | TenantError::Node(_) => StatusCode::SERVICE_UNAVAILABLE,
    };
    error(status, dms::errors::INVALID_PARAMETER, failure.to_string())
}

fn unauthorized(message: &str) -> Response<Bytes> {
    error(StatusCode::UNAUTHORIZED, TOKEN_INVALID, message)
}

fn method_not_allowed() -> Response<Bytes> {
    error(
        StatusCode::METHOD_NOT_ALLOWED,
        dms::errors::METHOD_NOT_ALLOWED,
        "The method is not allowed on this resource.",
    )
}

pub fn json_response(status: StatusCode, body: String) -> Response<Bytes> {
    Response::builder()
        .status(status)
        .header(CONTENT_TYPE, "application/json")
        .body(Bytes::from(body))
        .expect("a valid response")
}

/// An error in the DMS envelope (docs/dms-api.md §5).
pub fn error(
    status: StatusCode,
    code: &'static str,
    message: impl Into<String>,
) -> Response<Bytes> {
    dms::error_response(&dms::errors::DmsError::new(status, code, message))
}
