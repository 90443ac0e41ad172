//! The HTTP service: one entry point for every request, before any protocol adapter.
//! It answers health checks, issues Keystone tokens, serves the admin API, and
//! authenticates DMS requests (AK/SK signature or X-Auth-Token) before handing them to
//! [`crate::dms::handle`] with the caller's project. Every response carries an
//! `X-Request-Id`.
//!
//! Errors use the DMS envelope (docs/dms-api.md §5), so every client parses them. Auth failures
//! are 401 with the token codes of §5 (10240101-10240104); no message ever contains a
//! secret.

use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE};
use http::request::Parts;
use http::{Method, Response, StatusCode};
use serde_json::json;

use crate::auth::{self, AuthError, KeystoneResponse, NameOrId, SignedRequest, TokenClaims};
use crate::dms::{self, DmsConfig};
use sluice_node::tenants::{Tenant, TenantError};
use sluice_node::Node;

const TOKEN_INVALID: &str = "10240101";
const TOKEN_EXPIRED: &str = "10240102";
const TOKEN_MISSING: &str = "10240103";
const ADMIN_DENIED: &str = "10240309";

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

static REQUEST_SERIAL: AtomicU64 = AtomicU64::new(0);

/// A low-cardinality route name for metrics.
pub fn route_label(parts: &Parts) -> &'static str {
    let path = parts.uri.path();
    match path {
        "/healthz" => "healthz",
        "/metrics" => "metrics",
        "/v3/auth/tokens" => "keystone_token",
        "/v3" | "/v3/" => "keystone_version",
        _ if path.starts_with("/admin/") => "admin",
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
    let serial = REQUEST_SERIAL.fetch_add(1, Ordering::Relaxed);
    let id = format!("{:012x}{:08x}", node.now_ms(), serial & 0xffff_ffff);
    response.headers_mut().insert(
        "x-request-id",
        HeaderValue::from_str(&id).expect("hex is a valid header value"),
    );
    response
}

async fn route<N: Node>(
    node: &N,
    config: &ServiceConfig,
    parts: &Parts,
    body: &[u8],
) -> Response<Bytes> {
    let path = parts.uri.path();
    if let Some(refused) = crate::json_depth::refusal(path, body) {
        return refused;
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
        return keystone(node, config, parts, body);
    }
    if path == "/admin/tenants" || path.starts_with("/admin/tenants/") {
        return match authenticate(node, config, parts, body) {
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
        return match authenticate(node, config, parts, body) {
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

/// Checks the request's credentials: an X-Auth-Token, or an AK/SK signature by a tenant
/// or the admin.
fn authenticate<N: Node>(
    node: &N,
    config: &ServiceConfig,
    parts: &Parts,
    body: &[u8],
) -> Result<Principal, Denied> {
    let now_s = i64::try_from(node.wall_ms() / 1000).expect("seconds fit i64");
    if let Some(token) = parts.headers.get("x-auth-token") {
        let token = token.to_str().unwrap_or("");
        return match auth::verify_token(&config.token_key, token, now_s) {
            Ok(claims) => Ok(Principal::Tenant(claims.project_id)),
            Err(auth::TokenError::Expired) => Err(Denied::new(
                TOKEN_EXPIRED,
                auth::TokenError::Expired.message(),
            )),
            Err(failure) => Err(Denied::new(TOKEN_INVALID, failure.message())),
        };
    }
    let tenants = node.tenants();
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
    match auth::verify_signature(&request, secret, now_s, config.clock_skew_s_max) {
        Ok(ak) if ak == config.admin_ak => Ok(Principal::Admin),
        Ok(ak) => {
            let tenant = tenants.by_ak(&ak).expect("verified against this directory");
            Ok(Principal::Tenant(tenant.project_id.clone()))
        }
        Err(AuthError::Missing) => Err(Denied::new(TOKEN_MISSING, AuthError::Missing.message())),
        Err(failure) => Err(Denied::new(TOKEN_INVALID, failure.message())),
    }
}

/// `POST /v3/auth/tokens`: a password login (tenant name and password), or an AK/SK-signed
/// request with any body, answered with a token for the tenant's project.
fn keystone<N: Node>(
    node: &N,
    config: &ServiceConfig,
    parts: &Parts,
    body: &[u8],
) -> Response<Bytes> {
    let tenants = node.tenants();
    let tenant: Tenant = if parts.headers.contains_key(http::header::AUTHORIZATION) {
        match authenticate(node, config, parts, body) {
            Ok(Principal::Tenant(project)) => match tenants.by_project(&project) {
                Some(tenant) => tenant.clone(),
                None => return unauthorized("The tenant no longer exists."),
            },
            Ok(Principal::Admin) => {
                return unauthorized("The admin has no project to scope a token to.")
            }
            Err(failure) => return failure.render(),
        }
    } else {
        let request = match auth::keystone_request_parse(body) {
            Ok(request) => request,
            Err(failure) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    dms::errors::INVALID_JSON,
                    failure.message(),
                )
            }
        };
        let user = match &request.user {
            NameOrId::Name(name) => tenants.by_name(name),
            NameOrId::Id(id) => tenants.by_project(id),
        };
        let project_matches = |t: &Tenant| match &request.project {
            NameOrId::Name(name) => &t.name == name,
            NameOrId::Id(id) => &t.project_id == id,
        };
        // One answer for every failure, so the response does not tell which part was wrong;
        // a missing user still costs a hash, so timing does not tell either.
        let verified = match user {
            Some(t) => {
                let ok = t
                    .password_hash
                    .as_deref()
                    .is_some_and(|hash| auth::verify_password(&request.password, hash));
                ok && project_matches(t)
            }
            None => {
                let _ = auth::verify_password(&request.password, dummy_hash());
                false
            }
        };
        match (verified, user) {
            (true, Some(t)) => t.clone(),
            _ => return unauthorized("The user name, password or project is wrong."),
        }
    };
    let now_s = i64::try_from(node.wall_ms() / 1000).expect("seconds fit i64");
    let claims = TokenClaims {
        project_id: tenant.project_id.clone(),
        user_name: tenant.name.clone(),
        issued_unix_s: now_s,
        expires_unix_s: now_s + config.token_ttl_s,
    };
    let token = auth::issue_token(&config.token_key, &claims);
    let body = auth::keystone_response_body(&KeystoneResponse {
        issued_unix_s: claims.issued_unix_s,
        expires_unix_s: claims.expires_unix_s,
        user_id: &tenant.project_id,
        user_name: &tenant.name,
        project_id: &tenant.project_id,
        project_name: &tenant.name,
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

/// A hash checked when the user is unknown, so that case costs the same time.
fn dummy_hash() -> &'static str {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| auth::hash_password("no such user", &[0u8; 16]))
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
        field("queues_max", 1..=QUEUES_PER_TENANT_CEILING),
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

/// Quota ceilings an admin may set: the engine's own limits per tenant and per queue.
const QUEUES_PER_TENANT_CEILING: u64 = 1000;
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
