//! Fuzz target: arbitrary HTTP requests (method, path, query, headers, body) through
//! `sluice_http::service::handle` on a two-shard LocalNode (the production node layer)
//! over simulated disks, so routing, authentication (AK/SK signatures, tokens, the admin
//! credentials), the Keystone and admin endpoints, the JSON depth limit and every DMS
//! handler are exercised together. No request may panic; every answer must carry a valid
//! status, an `X-Request-Id`, and a JSON body (none only for 204; XML for SQS's query
//! protocol); and a DMS request that
//! the signature verifier accepts, or that carries a valid token, must never be refused
//! as unauthenticated (a disagreement between the service and its verifier).
//!
//! So that the fuzzer reaches the code behind authentication without forging signatures,
//! most modes sign the fuzzed request with a real key (`auth::sign_request`) or attach a
//! real token (`auth::issue_token`) after the fuzzer chose everything else.
//!
//! Input layout: byte 0 picks the method; byte 1 flags: bits 0-1 the credentials (0: the
//! tenant's AK/SK signature, 1: the tenant's X-Auth-Token, 2: only the fuzzed headers,
//! 3: the admin's AK/SK signature), bit 2 `Content-Type: application/json`, bit 3 an
//! `X-Project-Id` of the tenant. Then four fields separated by 0x00: the path, the query
//! (none when empty), headers (`name:value` lines) and the body. In the path, query and
//! body, `$P`, `$Q` and `$G` become the tenant's project id and the ids of a queue and a
//! group that exist.
//!
//! Left out on purpose: password checks. A Keystone password login and an admin tenant
//! create with a password each cost an argon2 hash (tens of milliseconds, by design),
//! which would starve the fuzzer; such inputs only run the Keystone body parser
//! (`auth::keystone_request_parse`) directly, or are skipped.
#![no_main]

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use http::header::{HeaderName, HeaderValue, AUTHORIZATION, CONTENT_TYPE, HOST};
use libfuzzer_sys::fuzz_target;
use sluice_core::engine::EngineLimits;
use sluice_core::sim_disk::{block_on, SimDisk};
use sluice_http::auth::{self, SignedRequest, TokenClaims};
use sluice_http::dms::{self, DmsConfig};
use sluice_http::service::{self, ServiceConfig};
use sluice_http::sqs;
use sluice_node::local::{sim_node_on, test_engine_config, LocalNode, StepClock};
use sluice_node::Node;

/// 2026-11-26, so signatures carry a plausible date.
const START_MS: u64 = 1_795_631_904_000;
const ADMIN_AK: &str = "FUZZADMINAK";
const ADMIN_SK: &str = "fuzz-admin-secret";
const TOKEN_KEY: [u8; 32] = [7; 32];
const SKEW_S: i64 = 900;
/// Rebuild the world when the fuzzer made this many tenants through the admin API.
const TENANTS_MAX: usize = 32;
/// Queues the periodic re-seeding keeps at most.
const QUEUES_MAX: usize = 20;
const METHODS: [&str; 6] = ["GET", "POST", "DELETE", "PUT", "PATCH", "HEAD"];
/// The token codes of a request refused as unauthenticated (docs/dms-api.md §5).
const AUTH_FAILURES: [&str; 3] = ["10240101", "10240102", "10240103"];

struct World {
    node: LocalNode<SimDisk, StepClock>,
    clock: Rc<Cell<u64>>,
    config: ServiceConfig,
    project: String,
    ak: String,
    sk: String,
    queue: String,
    group: String,
    requests: u64,
}

fn world() -> World {
    let clock = StepClock::starting_at(START_MS);
    let config = test_engine_config(EngineLimits::dms());
    let node = sim_node_on(2, 2, config, clock.clone());
    let clock = clock.0;
    let tenant = block_on(node.create_tenant("fuzz", None)).expect("tenant");
    let config = ServiceConfig {
        dms: DmsConfig {
            ack_wait_s_min: 1,
            ..DmsConfig::dms_default()
        },
        clock_skew_s_max: SKEW_S,
        token_ttl_s: 3600,
        token_key: TOKEN_KEY,
        admin_ak: ADMIN_AK.to_string(),
        admin_sk: ADMIN_SK.to_string(),
        endpoint: "http://fuzz.example:1".to_string(),
        region: "region-1".to_string(),
    };
    let mut world = World {
        node,
        clock,
        config,
        project: tenant.project_id,
        ak: tenant.ak,
        sk: tenant.sk,
        queue: String::new(),
        group: String::new(),
        requests: 0,
    };
    world.seed();
    world
}

/// How a request is authenticated.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Credentials {
    Tenant,
    Token,
    Fuzzed,
    Admin,
}

impl World {
    fn now_s(&self) -> i64 {
        i64::try_from(self.clock.get() / 1000).expect("seconds fit i64")
    }

    /// (Re)creates the queue and group that `$Q` and `$G` name, with a message in it.
    fn seed(&mut self) {
        let path = format!("/v2/{}/queues", self.project);
        let name = format!("q{}", self.requests);
        let body = format!(
            r#"{{"name":"{name}","queue_mode":"FIFO","redrive_policy":"enable","max_consume_count":1,"tags":[{{"key":"k","value":"v"}}]}}"#
        );
        let created = self.signed("POST", &path, body.as_bytes());
        let Some(id) = created.get("id").and_then(|v| v.as_str()) else {
            return;
        };
        self.queue = id.to_string();
        let groups = format!("{path}/{}/groups", self.queue);
        let created = self.signed("POST", &groups, br#"{"groups":[{"name":"g"}]}"#);
        if let Some(id) = created["groups"][0]["id"].as_str() {
            self.group = id.to_string();
        }
        let messages = format!("{path}/{}/messages", self.queue);
        self.signed("POST", &messages, br#"{"messages":[{"body":{"a":1}}]}"#);
    }

    /// A well-formed request of the tenant's, for seeding.
    fn signed(&self, method: &str, path: &str, body: &[u8]) -> serde_json::Value {
        let flags = 0b0100;
        let (status, json) = self.call(method, path, None, &[], body, flags);
        assert!(status < 500 || status == 503, "seeding answered {status}");
        json
    }

    /// Sends one request through `service::handle` and checks the answer; returns its
    /// status and JSON body.
    fn call(
        &self,
        method: &str,
        path: &str,
        query: Option<&str>,
        header_lines: &[(&str, &str)],
        body: &[u8],
        flags: u8,
    ) -> (u16, serde_json::Value) {
        let credentials = match flags & 3 {
            0 => Credentials::Tenant,
            1 => Credentials::Token,
            2 => Credentials::Fuzzed,
            _ => Credentials::Admin,
        };
        let uri = match query {
            Some(query) => format!("{path}?{query}"),
            None => path.to_string(),
        };
        let Ok(request) = http::Request::builder().method(method).uri(uri).body(()) else {
            return (0, serde_json::Value::Null);
        };
        let (mut parts, ()) = request.into_parts();
        for (name, value) in header_lines {
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value),
            ) {
                parts.headers.insert(name, value);
            }
        }
        if flags & 4 != 0 {
            parts
                .headers
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        if flags & 8 != 0 {
            let project = HeaderValue::from_str(&self.project).expect("hex");
            parts.headers.insert("x-project-id", project);
        }
        if !parts.headers.contains_key(HOST) {
            parts
                .headers
                .insert(HOST, HeaderValue::from_static("fuzz.example:1"));
        }
        let (raw_path, raw_query) = (parts.uri.path().to_string(), parts.uri.query());
        let raw_query = raw_query.map(str::to_string);
        let now_s = self.now_s();
        match credentials {
            Credentials::Tenant | Credentials::Admin => {
                parts.headers.remove("x-auth-token");
                let (ak, sk) = if credentials == Credentials::Admin {
                    (ADMIN_AK, ADMIN_SK)
                } else {
                    (self.ak.as_str(), self.sk.as_str())
                };
                auth::sign_request(
                    ak,
                    sk,
                    method,
                    &raw_path,
                    raw_query.as_deref(),
                    &mut parts.headers,
                    body,
                    now_s,
                );
            }
            Credentials::Token => {
                parts.headers.remove(AUTHORIZATION);
                let claims = TokenClaims {
                    project_id: self.project.clone(),
                    user_name: "fuzz".to_string(),
                    issued_unix_s: now_s,
                    expires_unix_s: now_s + 3600,
                    key_fingerprint: auth::key_fingerprint(&TOKEN_KEY, &self.ak, &self.sk, None),
                };
                let token = auth::issue_token(&TOKEN_KEY, &claims);
                let token = HeaderValue::from_str(&token).expect("tokens are url-safe");
                parts.headers.insert("x-auth-token", token);
            }
            Credentials::Fuzzed => {}
        }
        let shard = self.node.shard(usize::from(self.requests % 2 == 1));
        let _ = service::route_label(&parts);
        let response = block_on(service::handle(shard.as_ref(), &self.config, &parts, body));
        let status = response.status().as_u16();
        assert!((200..600).contains(&status), "status {status}");
        assert!(
            response.headers().contains_key(dms::REQUEST_ID_HEADER),
            "every answer has a request id"
        );
        // The web console's answers (files, a redirect, refusals; empty for HEAD) are not
        // JSON: each carries the console's security policy.
        let json = if sluice_http::console::is_console_path(parts.uri.path()) {
            assert!(
                response.headers().contains_key("content-security-policy"),
                "a console answer carries its policy"
            );
            serde_json::Value::Null
        } else if response
            .headers()
            .get(CONTENT_TYPE)
            .is_some_and(|t| t == "application/x-ndjson")
        {
            // A dead-letter export: JSON lines, maybe none.
            assert_eq!(status, 200, "an export page answers 200");
            for line in response
                .body()
                .split(|b| *b == b'\n')
                .filter(|l| !l.is_empty())
            {
                serde_json::from_slice::<serde_json::Value>(line).expect("every line is JSON");
            }
            serde_json::Value::Null
        } else if response.body().is_empty() {
            assert_eq!(status, 204, "only 204 has no body");
            serde_json::Value::Null
        } else if sqs::query::is_query(&parts) && !sqs::is_json(&parts) {
            // SQS's query protocol answers in XML (the sqs_request target checks it).
            assert!(response.body().starts_with(b"<"), "a query answer is XML");
            serde_json::Value::Null
        } else {
            assert_ne!(status, 204, "a 204 has no body");
            serde_json::from_slice(response.body()).expect("every body is JSON")
        };
        // The service must authenticate exactly what its verifier accepts: a tenant's
        // request that verifies, or that carries a valid token, is never refused as
        // unauthenticated.
        if dms::is_dms_path(&raw_path) && status == 401 {
            let code = json["error_code"].as_str().unwrap_or("");
            let request = SignedRequest {
                method,
                raw_path: &raw_path,
                raw_query: raw_query.as_deref(),
                headers: &parts.headers,
                body,
            };
            let secret = |ak: &str| (ak == self.ak).then(|| self.sk.clone());
            let verifies = auth::verify_signature(&request, secret, now_s, SKEW_S).is_ok();
            let valid = match credentials {
                Credentials::Token => true,
                Credentials::Tenant => verifies,
                Credentials::Fuzzed | Credentials::Admin => false,
            };
            assert!(
                !(valid && AUTH_FAILURES.contains(&code)),
                "an authenticated request was refused: {json}"
            );
        }
        (status, json)
    }
}

thread_local! {
    static WORLD: RefCell<Option<World>> = const { RefCell::new(None) };
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let method = METHODS[usize::from(data[0]) % METHODS.len()];
    let flags = data[1];
    let mut fields = data[2..].splitn(4, |b| *b == 0);
    let mut next = || String::from_utf8_lossy(fields.next().unwrap_or_default()).into_owned();
    let (path, query, header_text, body) = (next(), next(), next(), next());
    WORLD.with(|cell| {
        let mut slot = cell.borrow_mut();
        let world = slot.get_or_insert_with(world);
        world.requests += 1;
        if world.requests % 64 == 0 {
            world.clock.set(world.clock.get() + 40_000);
            block_on(world.node.tick(world.clock.get())).expect("tick");
            if world.node.queues_of(&world.project).len() < QUEUES_MAX {
                world.seed();
            }
        }
        let substitute = |text: &str| {
            text.replace("$P", &world.project)
                .replace("$Q", &world.queue)
                .replace("$G", &world.group)
        };
        let path = substitute(&path);
        let body = substitute(&body).into_bytes();
        // Without an AK/SK signature (token or fuzzed credentials), a Keystone token
        // request is a password login.
        let keystone_password = path.starts_with("/v3/auth/tokens") && matches!(flags & 3, 1 | 2);
        let admin_password = flags & 3 == 3
            && path.starts_with("/admin")
            && body.windows(8).any(|w| w == b"password");
        if keystone_password || admin_password {
            // A password check costs an argon2 hash: parse the Keystone body only.
            let _ = auth::keystone_request_parse(&body);
            return;
        }
        let query = substitute(&query);
        let query = (!query.is_empty()).then_some(query.as_str());
        let headers: Vec<(&str, &str)> = header_text
            .split('\n')
            .filter_map(|line| line.split_once(':'))
            .collect();
        world.call(method, &path, query, &headers, &body, flags);
        let directory = world.node.tenants();
        let lost = directory.by_project(&world.project).is_none();
        if lost || directory.all().len() > TENANTS_MAX {
            // The fuzzer deleted the tenant (admin API) or made too many: start over.
            *slot = None;
        }
    });
});
