//! Authentication through the service layer (`service::handle`) over a two-shard
//! `LocalNode`, the production node layer: the skew window, the replay cache of signed token
//! requests, token revocation when a tenant goes, one answer for every bad signature, and
//! the back-off of failed password logins. Requests enter at a chosen shard, as connections
//! spread over the server's shards. No sleeps: the test clock is advanced by hand.

#[allow(dead_code)] // Shared with dms_api.rs, which uses the rest.
mod dms_support;

use std::net::IpAddr;

use bytes::Bytes;
use dms_support::{Answer, Harness};
use http::header::{CONTENT_TYPE, HOST};
use http::{Method, Request, StatusCode};
use serde_json::{json, Value};
use sluice_core::sim_disk::block_on;
use sluice_http::auth::{issue_token, key_fingerprint, sign_request, TokenClaims, SKEW_S_DEFAULT};
use sluice_http::service::{self, PeerAddr, ServiceConfig};
use sluice_node::tenants::Tenant;
use sluice_node::{LoginLimits, Node};

const ADMIN_AK: &str = "TESTADMINACCESSKEY00";
const ADMIN_SK: &str = "TestAdminSecretKey000000000000000000000";

/// The harness's node and tenants, and the service layer as the server configures it.
struct Auth {
    h: Harness,
    config: ServiceConfig,
}

impl Auth {
    fn new() -> Auth {
        let h = Harness::new(2);
        let config = ServiceConfig {
            dms: h.config,
            clock_skew_s_max: SKEW_S_DEFAULT,
            token_ttl_s: 3_600,
            token_key: [5; 32],
            admin_ak: ADMIN_AK.into(),
            admin_sk: ADMIN_SK.into(),
            endpoint: "http://sluice.test:8080".into(),
            region: "test-1".into(),
        };
        Auth { h, config }
    }

    fn now_s(&self) -> i64 {
        i64::try_from(self.h.now() / 1000).unwrap()
    }

    /// Serves `request` at shard `shard`.
    fn send(&self, shard: usize, request: &Request<Vec<u8>>) -> Answer {
        let (mut parts, ()) = Request::builder()
            .method(request.method().clone())
            .uri(request.uri().clone())
            .body(())
            .unwrap()
            .into_parts();
        parts.headers = request.headers().clone();
        parts.extensions = request.extensions().clone();
        let response = block_on(service::handle(
            &**self.h.node.shard(shard),
            &self.config,
            &parts,
            request.body(),
        ));
        answer(response)
    }

    /// `method path` signed with `ak`/`sk` at `at_s`.
    fn signed(
        &self,
        (ak, sk): (&str, &str),
        method: Method,
        path: &str,
        body: &[u8],
        at_s: i64,
    ) -> Request<Vec<u8>> {
        let mut request = Request::builder()
            .method(method.clone())
            .uri(path)
            .header(HOST, "sluice.test:8080")
            .header(CONTENT_TYPE, "application/json")
            .body(body.to_vec())
            .unwrap();
        sign_request(
            ak,
            sk,
            method.as_str(),
            path,
            None,
            request.headers_mut(),
            body,
            at_s,
        );
        request
    }

    /// A Keystone password login for the user and project named `name`, from `address`.
    fn login(&self, name: &str, password: &str, address: Option<&str>) -> Request<Vec<u8>> {
        let body = json!({"auth": {
            "identity": {"methods": ["password"],
                         "password": {"user": {"name": name, "password": password}}},
            "scope": {"project": {"name": name}}}});
        let mut request = Request::builder()
            .method(Method::POST)
            .uri("/v3/auth/tokens")
            .header(CONTENT_TYPE, "application/json")
            .body(body.to_string().into_bytes())
            .unwrap();
        if let Some(address) = address {
            let ip: IpAddr = address.parse().unwrap();
            request.extensions_mut().insert(PeerAddr(ip));
        }
        request
    }

    /// `GET /v1.0/{project}/queues` with `token`.
    fn with_token(&self, project: &str, token: &str) -> Request<Vec<u8>> {
        Request::builder()
            .uri(format!("/v1.0/{project}/queues"))
            .header("x-auth-token", token)
            .body(Vec::new())
            .unwrap()
    }
}

fn keys(tenant: &Tenant) -> (&str, &str) {
    (&tenant.ak, &tenant.sk)
}

fn answer(response: http::Response<Bytes>) -> Answer {
    let (parts, body) = response.into_parts();
    let json = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&body).expect("every answer with a body is JSON")
    };
    Answer {
        status: parts.status,
        json,
        raw: body.to_vec(),
        headers: parts.headers,
    }
}

fn token_of(answer: &Answer) -> String {
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.json);
    answer.headers["x-subject-token"]
        .to_str()
        .unwrap()
        .to_string()
}

/// The `Retry-After` seconds of a refusal.
fn retry_after_s(answer: &Answer) -> u64 {
    let value = answer.headers.get("retry-after").expect("a Retry-After");
    value.to_str().unwrap().parse().unwrap()
}

#[test]
fn requests_older_than_five_minutes_are_refused_by_default() {
    // Goal: the default skew window is at most 5 minutes either way. Method: sign a GET
    // just inside and just outside 300 s, in the past and in the future.
    let auth = Auth::new();
    let tenant = &auth.h.tenant;
    let path = format!("/v1.0/{}/queues", tenant.project_id);
    let at = |offset_s: i64| {
        let request = auth.signed(
            keys(tenant),
            Method::GET,
            &path,
            b"",
            auth.now_s() + offset_s,
        );
        auth.send(0, &request)
    };
    assert_eq!(at(-300).status, StatusCode::OK);
    assert_eq!(at(300).status, StatusCode::OK);
    let old = at(-301);
    assert_eq!(old.status, StatusCode::UNAUTHORIZED);
    assert!(old.json["error_msg"].as_str().unwrap().contains("expired"));
    assert_eq!(at(301).status, StatusCode::UNAUTHORIZED);
}

#[test]
fn a_signed_token_request_is_accepted_once_on_any_shard() {
    // Goal: a captured signed `POST /v3/auth/tokens` cannot be replayed for another token,
    // whichever shard the copy reaches. Method: send the same signed request to shard 0,
    // then to shard 1 and to shard 0 again; then a freshly signed one.
    let auth = Auth::new();
    let tenant = &auth.h.tenant;
    let request = auth.signed(
        keys(tenant),
        Method::POST,
        "/v3/auth/tokens",
        b"{}",
        auth.now_s(),
    );
    let first = auth.send(0, &request);
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.json);
    for shard in [1, 0] {
        let replay = auth.send(shard, &request);
        assert_eq!(replay.status, StatusCode::UNAUTHORIZED, "shard {shard}");
        assert_eq!(replay.code(), "10240101");
        let message = replay.json["error_msg"].as_str().unwrap();
        assert!(message.contains("already used"), "{message}");
    }
    auth.h.advance(1_000);
    let fresh = auth.signed(
        keys(tenant),
        Method::POST,
        "/v3/auth/tokens",
        b"{}",
        auth.now_s(),
    );
    assert_eq!(auth.send(1, &fresh).status, StatusCode::CREATED);
    // Signed DMS requests are not remembered: a repeated read is harmless (docs/auth.md).
    let path = format!("/v1.0/{}/queues", tenant.project_id);
    let read = auth.signed(keys(tenant), Method::GET, &path, b"", auth.now_s());
    assert_eq!(auth.send(0, &read).status, StatusCode::OK);
    assert_eq!(auth.send(1, &read).status, StatusCode::OK);
}

#[test]
fn a_token_is_not_exchanged_for_a_new_one() {
    // Goal: a token cannot renew itself past its expiry, whether it comes alone or beside
    // a valid signature (an X-Auth-Token authenticates before a signature elsewhere).
    let auth = Auth::new();
    let tenant = &auth.h.tenant;
    let request = |at_s| auth.signed(keys(tenant), Method::POST, "/v3/auth/tokens", b"{}", at_s);
    let token = token_of(&auth.send(0, &request(auth.now_s())));
    let mut both = request(auth.now_s() + 1);
    both.headers_mut()
        .insert("x-auth-token", token.parse().unwrap());
    let refused = auth.send(1, &both);
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{}", refused.json);
    assert!(refused.json["error_msg"]
        .as_str()
        .unwrap()
        .contains("X-Auth-Token"));
    let mut alone = auth.login("tenant-a", "x", None);
    alone
        .headers_mut()
        .insert("x-auth-token", token.parse().unwrap());
    assert_eq!(auth.send(0, &alone).status, StatusCode::UNAUTHORIZED);
}

#[test]
fn tokens_die_with_their_tenant_on_every_shard() {
    // Goal: deleting a tenant revokes its tokens at once, everywhere, although tokens are
    // stateless. Method: log in with a password, use the token on both shards, delete the
    // tenant, use it again on both shards.
    let auth = Auth::new();
    let gone = block_on(auth.h.node.create_tenant("gone", Some("pass-word-1"))).unwrap();
    let token = token_of(&auth.send(0, &auth.login("gone", "pass-word-1", None)));
    for shard in [0, 1] {
        let answer = auth.send(shard, &auth.with_token(&gone.project_id, &token));
        assert_eq!(
            answer.status,
            StatusCode::OK,
            "shard {shard}: {}",
            answer.json
        );
    }
    block_on(auth.h.node.delete_tenant(&gone.project_id)).unwrap();
    for shard in [0, 1] {
        let answer = auth.send(shard, &auth.with_token(&gone.project_id, &token));
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "shard {shard}");
        assert_eq!(answer.code(), "10240101");
    }
}

#[test]
fn a_token_issued_under_other_credentials_is_refused() {
    // Goal: a token binds the credentials it was issued under, so changing a tenant's AK,
    // SK or password revokes it. Method: Sluice has no operation that changes them yet, so
    // tokens are minted with the service's key for the tenant as it is and as it would be
    // with another SK; only the first opens the project.
    let auth = Auth::new();
    let tenant = &auth.h.tenant;
    let now = auth.now_s();
    let token_with = |secret_key: &str| {
        let claims = TokenClaims {
            project_id: tenant.project_id.clone(),
            user_name: tenant.name.clone(),
            issued_unix_s: now,
            expires_unix_s: now + 600,
            key_fingerprint: key_fingerprint(
                &auth.config.token_key,
                &tenant.ak,
                secret_key,
                tenant.password_hash.as_deref(),
            ),
        };
        issue_token(&auth.config.token_key, &claims)
    };
    let current = auth.send(
        0,
        &auth.with_token(&tenant.project_id, &token_with(&tenant.sk)),
    );
    assert_eq!(current.status, StatusCode::OK, "{}", current.json);
    let rotated = auth.send(
        1,
        &auth.with_token(&tenant.project_id, &token_with("rotated")),
    );
    assert_eq!(rotated.status, StatusCode::UNAUTHORIZED);
    assert_eq!(rotated.code(), "10240101");
    assert!(rotated.json["error_msg"]
        .as_str()
        .unwrap()
        .contains("revoked"));
}

#[test]
fn unknown_access_key_and_wrong_secret_get_one_answer() {
    // Goal: a client cannot tell whether an AK exists. Method: sign once with an unknown
    // AK and once with a known AK and a wrong SK; status, code and text must be equal.
    let auth = Auth::new();
    let tenant = &auth.h.tenant;
    let path = format!("/v1.0/{}/queues", tenant.project_id);
    let now = auth.now_s();
    let wrong_sk = format!("{}x", tenant.sk);
    let unknown = auth.send(
        0,
        &auth.signed(
            ("UNKNOWNAK00000000000", &tenant.sk),
            Method::GET,
            &path,
            b"",
            now,
        ),
    );
    let mismatch = auth.send(
        0,
        &auth.signed((&tenant.ak, &wrong_sk), Method::GET, &path, b"", now),
    );
    assert_eq!(unknown.status, StatusCode::UNAUTHORIZED);
    assert_eq!(unknown.status, mismatch.status);
    assert_eq!(unknown.code(), mismatch.code());
    assert_eq!(unknown.json["error_msg"], mismatch.json["error_msg"]);
    assert_eq!(unknown.raw, mismatch.raw, "the whole bodies are equal");
}

#[test]
fn failed_logins_back_off_per_tenant_whatever_the_address() {
    // Goal: guessing one tenant's password from many addresses is slowed down, and a
    // blocked login is refused before its password is checked. Method: wrong passwords
    // from a new address each time until 429; then the right password is refused too
    // until Retry-After has passed; the next failure blocks for twice as long.
    let auth = Auth::new();
    block_on(auth.h.node.create_tenant("victim", Some("right-pass"))).unwrap();
    let free = usize::try_from(LoginLimits::standard().failures_per_tenant_max).unwrap();
    for attempt in 0..free {
        let address = format!("10.0.0.{attempt}");
        let answer = auth.send(attempt % 2, &auth.login("victim", "wrong", Some(&address)));
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "attempt {attempt}");
    }
    // The next failure is counted and starts the back-off.
    let answer = auth.send(0, &auth.login("victim", "wrong", Some("10.0.1.1")));
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    let blocked = auth.send(1, &auth.login("victim", "right-pass", Some("10.0.1.2")));
    assert_eq!(
        blocked.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        blocked.json
    );
    assert_eq!(blocked.code(), "10249429");
    let wait_s = retry_after_s(&blocked);
    assert!(wait_s >= 1, "{wait_s}");
    auth.h.advance(wait_s * 1000);
    let wrong = auth.send(0, &auth.login("victim", "wrong", Some("10.0.1.3")));
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    let blocked = auth.send(1, &auth.login("victim", "right-pass", Some("10.0.1.4")));
    assert_eq!(blocked.status, StatusCode::TOO_MANY_REQUESTS);
    let longer_s = retry_after_s(&blocked);
    assert!(longer_s >= 2 * wait_s - 1, "{longer_s} after {wait_s}");
    auth.h.advance(longer_s * 1000);
    let token = token_of(&auth.send(0, &auth.login("victim", "right-pass", Some("10.0.1.5"))));
    assert!(!token.is_empty());
    // A success forgets the tenant's failures.
    let again = auth.send(1, &auth.login("victim", "wrong", Some("10.0.1.6")));
    assert_eq!(again.status, StatusCode::UNAUTHORIZED);
}

#[test]
fn failed_logins_back_off_per_address_whatever_the_tenant() {
    // Goal: one address guessing many users is slowed down, others are not; requests with
    // no known address share one bucket. Method: wrong logins for a new (unknown) user name
    // each time from one address until 429.
    let auth = Auth::new();
    let free = usize::try_from(LoginLimits::standard().failures_per_address_max).unwrap();
    for attempt in 0..=free {
        let name = format!("user{attempt}");
        let answer = auth.send(attempt % 2, &auth.login(&name, "wrong", Some("192.0.2.7")));
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "attempt {attempt}");
    }
    let blocked = auth.send(0, &auth.login("another", "wrong", Some("192.0.2.7")));
    assert_eq!(blocked.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(retry_after_s(&blocked) >= 1);
    let elsewhere = auth.send(0, &auth.login("another", "wrong", Some("192.0.2.8")));
    assert_eq!(elsewhere.status, StatusCode::UNAUTHORIZED);
    for attempt in 0..=free {
        let name = format!("anonymous{attempt}");
        let answer = auth.send(attempt % 2, &auth.login(&name, "wrong", None));
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "attempt {attempt}");
    }
    let blocked = auth.send(1, &auth.login("anonymous", "wrong", None));
    assert_eq!(blocked.status, StatusCode::TOO_MANY_REQUESTS);
}

#[test]
fn an_admin_token_opens_the_admin_api_only_and_dies_with_the_admin_keys() {
    // Goal: a request signed with the admin keys gets a token (for the console's admin
    // pages) that opens the admin API and nothing of a tenant's, is accepted once like any
    // signed token request, and is refused once the admin keys it was issued under are
    // no longer the node's.
    let mut auth = Auth::new();
    let request = auth.signed(
        (ADMIN_AK, ADMIN_SK),
        Method::POST,
        "/v3/auth/tokens",
        b"{}",
        auth.now_s(),
    );
    let issued = auth.send(0, &request);
    assert_eq!(issued.status, StatusCode::CREATED, "{}", issued.json);
    assert_eq!(issued.json["token"]["user"]["name"], "admin");
    let token = token_of(&issued);
    assert_eq!(
        auth.send(1, &request).status,
        StatusCode::UNAUTHORIZED,
        "once"
    );
    let admin_call = |auth: &Auth| {
        let call = Request::builder()
            .uri("/admin/tenants")
            .header("x-auth-token", token.as_str())
            .body(Vec::new())
            .unwrap();
        auth.send(1, &call)
    };
    let listed = admin_call(&auth);
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.json);
    assert!(listed.json["tenants"].is_array());
    let tenant = auth.h.tenant.project_id.clone();
    let refused = auth.send(0, &auth.with_token(&tenant, &token));
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "no tenant's queues");
    auth.config.admin_sk = "another-admin-secret".into();
    let revoked = admin_call(&auth);
    assert_eq!(revoked.status, StatusCode::UNAUTHORIZED, "{}", revoked.json);
}
