//! The DMS API end to end over real sockets against the real binary: every endpoint on
//! both prefixes, signatures and tokens, tenant isolation, bad input and slow or
//! excessive clients, metrics, and a graceful SIGTERM. Detailed field-by-field checks
//! live in the adapter's in-process tests (adapters/http/tests/dms_api.rs).

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use http::header::{HeaderValue, CONTENT_TYPE, HOST};
use http::HeaderMap;
use serde_json::{json, Value};
use sluice_server::client::{Client, Credentials};
use support::{base, Server};

/// A bound on any single read from the server in these tests (a hang fails, never waits).
const READ_TIMEOUT: Duration = Duration::from_secs(20);

fn now_s() -> i64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    since.as_secs() as i64
}

/// Signs a request like the SDKs do, at `now + skew_s`, and renders it as raw HTTP/1.1.
fn signed_raw(
    server: &Server,
    credentials: &Credentials,
    method: &str,
    path: &str,
    body: &[u8],
    skew_s: i64,
) -> Vec<u8> {
    let authority = server.endpoint.trim_start_matches("http://");
    let (raw_path, raw_query) = match path.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path, None),
    };
    let mut headers = HeaderMap::new();
    headers.insert(HOST, HeaderValue::from_str(authority).unwrap());
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    sluice_http::auth::sign_request(
        &credentials.ak,
        &credentials.sk,
        method,
        raw_path,
        raw_query,
        &mut headers,
        body,
        now_s() + skew_s,
    );
    let mut text = format!("{method} {path} HTTP/1.1\r\n");
    for (name, value) in &headers {
        text.push_str(&format!("{name}: {}\r\n", value.to_str().unwrap()));
    }
    text.push_str(&format!(
        "content-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    ));
    let mut bytes = text.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// Sends raw bytes on a new connection and reads until the server closes it.
fn exchange(server: &Server, request: &[u8]) -> (u16, String) {
    let mut stream = connect(server);
    stream.write_all(request).unwrap();
    read_response(&mut stream)
}

fn connect(server: &Server) -> TcpStream {
    let stream = TcpStream::connect(server.endpoint.trim_start_matches("http://")).unwrap();
    stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    stream
}

/// Reads one response (the server closes after it, or it carries a content-length).
fn read_response(stream: &mut TcpStream) -> (u16, String) {
    let mut bytes = Vec::new();
    let mut buf = [0u8; 16384];
    loop {
        let n = stream
            .read(&mut buf)
            .expect("the server answers within the bound");
        if n == 0 {
            break;
        }
        bytes.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&bytes).to_string();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head.lines().find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length: ")
                    .map(|v| v.trim().parse::<usize>().unwrap())
            });
            if length.is_some_and(|len| body.len() >= len) {
                break;
            }
        }
    }
    let text = String::from_utf8_lossy(&bytes).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .map(|s| s.parse().unwrap())
        .unwrap_or(0);
    (status, text)
}

fn body_of(text: &str) -> Value {
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    serde_json::from_str(body).unwrap_or(Value::Null)
}

#[test]
fn every_endpoint_works_on_both_prefixes() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--shards", "2"]);
    let client = server.client();
    let p = client.credentials.project_id.clone();
    for prefix in ["/v1.0", "/v2"] {
        let base = format!("{prefix}/{p}");
        let name = format!("orders{}", prefix.replace(['/', '.'], ""));
        let created = client
            .call(
                "POST",
                &format!("{base}/queues"),
                Some(&json!({"name": name, "queue_mode": "FIFO",
                "description": "invoices", "redrive_policy": "enable", "max_consume_count": 2})),
            )
            .unwrap();
        assert_eq!(created.status, 201, "{:?}", created.body);
        let queue = created.body["id"].as_str().unwrap().to_string();
        assert_eq!(created.body["name"], name.as_str());
        let again = client
            .call(
                "POST",
                &format!("{base}/queues"),
                Some(&json!({"name": name})),
            )
            .unwrap();
        assert_eq!(
            (again.status, again.body["error_code"].as_str()),
            (400, Some("10240017"))
        );

        let shown = client
            .call(
                "GET",
                &format!("{base}/queues/{queue}?include_deadletter=true"),
                None,
            )
            .unwrap();
        assert_eq!(shown.status, 200);
        assert_eq!(shown.body["queue_mode"], "FIFO");
        assert_eq!(shown.body["description"], "invoices");
        assert_eq!(shown.body["max_consume_count"], 2);
        assert!(
            shown.body["created"].is_u64(),
            "created is epoch ms: {}",
            shown.body
        );
        let listed = client.call("GET", &format!("{base}/queues"), None).unwrap();
        assert!(listed.body["queues"]
            .as_array()
            .unwrap()
            .iter()
            .any(|q| q["id"] == queue.as_str()));

        let groups = client
            .call(
                "POST",
                &format!("{base}/queues/{queue}/groups"),
                Some(&json!({"groups": [{"name": "a"}, {"name": "b"}]})),
            )
            .unwrap();
        assert_eq!(groups.status, 201, "{:?}", groups.body);
        let group = groups.body["groups"][0]["id"].as_str().unwrap().to_string();

        let sent = client
            .call(
                "POST",
                &format!("{base}/queues/{queue}/messages"),
                Some(&json!({"return_id": true, "messages": [
                {"body": {"invoice": 1}, "attributes": {"priority": 3}},
                {"body": "second"}]})),
            )
            .unwrap();
        assert_eq!(sent.status, 201, "{:?}", sent.body);
        assert_eq!(sent.body["messages"][0]["state"], 0);

        let consume = format!(
            "{base}/queues/{queue}/groups/{group}/messages?max_msgs=10&time_wait=1&ack_wait=30"
        );
        let got = client.call("GET", &consume, None).unwrap();
        assert_eq!(got.status, 200);
        // FIFO: one batch in flight, in send order; the body stays JSON.
        assert_eq!(got.body[0]["message"]["body"], json!({"invoice": 1}));
        assert_eq!(got.body[0]["message"]["attributes"]["priority"], 3);
        let handlers: Vec<String> = got
            .body
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["handler"].as_str().unwrap().to_string())
            .collect();
        // Fail every delivery twice: max_consume_count 2 dead-letters them.
        let fail: Vec<Value> = handlers
            .iter()
            .map(|h| json!({"handler": h, "status": "fail"}))
            .collect();
        let acked = client
            .call(
                "POST",
                &format!("{base}/queues/{queue}/groups/{group}/ack"),
                Some(&json!({"message": fail})),
            )
            .unwrap();
        assert_eq!(acked.status, 200, "{:?}", acked.body);
        let got = client.call("GET", &consume, None).unwrap();
        let fail: Vec<Value> = got
            .body
            .as_array()
            .unwrap()
            .iter()
            .map(|m| json!({"handler": m["handler"], "status": "fail"}))
            .collect();
        assert!(
            !fail.is_empty(),
            "the failed messages come back: {}",
            got.body
        );
        client
            .call(
                "POST",
                &format!("{base}/queues/{queue}/groups/{group}/ack"),
                Some(&json!({"message": fail})),
            )
            .unwrap();
        let dead =
            format!("{base}/queues/{queue}/groups/{group}/deadletters?max_msgs=10&time_wait=1");
        let mut dead_handlers = Vec::new();
        for _ in 0..5 {
            let got = client.call("GET", &dead, None).unwrap();
            assert_eq!(got.status, 200, "{:?}", got.body);
            dead_handlers.extend(
                got.body
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|m| json!({"handler": m["handler"], "status": "success"})),
            );
            if dead_handlers.len() >= 2 {
                break;
            }
        }
        assert_eq!(dead_handlers.len(), 2, "both messages are dead letters");
        let acked = client
            .call(
                "POST",
                &format!("{base}/queues/{queue}/groups/{group}/deadletters/ack"),
                Some(&json!({"message": dead_handlers})),
            )
            .unwrap();
        assert_eq!(
            (acked.status, acked.body["success"].as_u64()),
            (200, Some(2)),
            "{:?}",
            acked.body
        );
        // Nothing left: an empty array after time_wait.
        let got = client.call("GET", &consume, None).unwrap();
        assert_eq!(got.body, json!([]));

        let listed = client
            .call(
                "GET",
                &format!("{base}/queues/{queue}/groups?include_deadletter=true"),
                None,
            )
            .unwrap();
        assert_eq!(listed.status, 200);
        assert_eq!(listed.body["groups"].as_array().unwrap().len(), 2);
        let quota_path = if prefix == "/v1.0" {
            "quotas/dms"
        } else {
            "quotas"
        };
        let quotas = client
            .call("GET", &format!("{base}/{quota_path}"), None)
            .unwrap();
        assert_eq!(quotas.status, 200, "{:?}", quotas.body);
        assert!(quotas.body["quotas"]["resources"].is_array());

        let deleted = client
            .call(
                "DELETE",
                &format!("{base}/queues/{queue}/groups/{group}"),
                None,
            )
            .unwrap();
        assert_eq!(deleted.status, 204);
        let deleted = client
            .call("DELETE", &format!("{base}/queues/{queue}"), None)
            .unwrap();
        assert_eq!(deleted.status, 204);
        let gone = client
            .call("GET", &format!("{base}/queues/{queue}"), None)
            .unwrap();
        assert_eq!(gone.status, 404);
    }
}

#[test]
fn tenants_are_isolated_and_credentials_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--shards", "2"]);
    let owner = server.client();
    let created = server.cli(&[
        "tenant",
        "create",
        "other",
        "--json",
        "--password",
        "s3cret-pass",
    ]);
    let other_json: Value = serde_json::from_str(created.trim()).unwrap();
    let keys: Vec<&String> = other_json.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["ak", "project_id", "sk"], "exactly the three fields");
    assert!(created.starts_with("{\"project_id\": \""), "{created}");
    let other = server.client_for("other");
    assert!(server.cli(&["tenant", "list"]).contains("other"));

    owner.create_queue("private", "NORMAL", None).unwrap();
    let queue = owner.queue_id("private").unwrap();
    // The other tenant sees no such queue, under its own project.
    let seen = other
        .call("GET", &format!("{}/queues/{queue}", base(&other)), None)
        .unwrap();
    assert_eq!(seen.status, 404, "{:?}", seen.body);
    let listed = other
        .call("GET", &format!("{}/queues", base(&other)), None)
        .unwrap();
    assert_eq!(listed.body["queues"], json!([]));
    let sent = other
        .call(
            "POST",
            &format!("{}/queues/{queue}/messages", base(&other)),
            Some(&json!({"messages": [{"body": 1}]})),
        )
        .unwrap();
    assert_eq!(sent.status, 404);
    // ... and its credentials do not open the owner's project.
    let foreign = other
        .call("GET", &format!("{}/queues", base(&owner)), None)
        .unwrap();
    assert_eq!(foreign.status, 401);
    assert_eq!(foreign.body["error_code"], "10240104");

    // Signatures: a wrong secret, an unknown key, a stale date, a tampered body, none.
    let path = format!("{}/queues", base(&owner));
    let mut wrong = owner.credentials.clone();
    wrong.sk.push('x');
    let (status, _) = exchange(&server, &signed_raw(&server, &wrong, "GET", &path, b"", 0));
    assert_eq!(status, 401);
    let mut unknown = owner.credentials.clone();
    unknown.ak = "UNKNOWNAK00000000000".into();
    let (status, text) = exchange(
        &server,
        &signed_raw(&server, &unknown, "GET", &path, b"", 0),
    );
    assert_eq!(status, 401, "{text}");
    let (status, text) = exchange(
        &server,
        &signed_raw(&server, &owner.credentials, "GET", &path, b"", -3600),
    );
    assert_eq!(status, 401);
    assert!(
        body_of(&text)["error_msg"]
            .as_str()
            .unwrap()
            .contains("expired"),
        "{text}"
    );
    let mut tampered = signed_raw(
        &server,
        &owner.credentials,
        "POST",
        &path,
        br#"{"name":"aaaa"}"#,
        0,
    );
    let at = tampered.len() - 3;
    tampered[at] = b'b';
    let (status, _) = exchange(&server, &tampered);
    assert_eq!(status, 401);
    let (status, text) = exchange(
        &server,
        format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").as_bytes(),
    );
    assert_eq!(
        (status, body_of(&text)["error_code"].as_str()),
        (401, Some("10240103"))
    );
    let (status, _) = exchange(
        &server,
        &signed_raw(&server, &owner.credentials, "GET", &path, b"", 0),
    );
    assert_eq!(status, 200, "the correctly signed request passes");

    // Keystone: a password login gives a token that opens only its own project.
    let login = json!({"auth": {"identity": {"methods": ["password"], "password": {"user": {"name": "other", "password": "s3cret-pass", "domain": {"name": "Default"}}}}, "scope": {"project": {"name": "other"}}}});
    let body = login.to_string();
    let request = format!("POST /v3/auth/tokens HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len());
    let (status, text) = exchange(&server, request.as_bytes());
    assert_eq!(status, 201, "{text}");
    let token = text
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .starts_with("x-subject-token:")
                .then(|| l[16..].trim().to_string())
        })
        .expect("X-Subject-Token");
    let get = |project: &str, token: &str| {
        let request = format!("GET /v1.0/{project}/queues HTTP/1.1\r\nhost: x\r\nx-auth-token: {token}\r\nconnection: close\r\n\r\n");
        exchange(&server, request.as_bytes())
    };
    assert_eq!(get(&other.credentials.project_id, &token).0, 200);
    assert_eq!(get(&owner.credentials.project_id, &token).0, 401);
    let (status, text) = get(&other.credentials.project_id, "bogus-token");
    assert_eq!(
        (status, body_of(&text)["error_code"].as_str()),
        (401, Some("10240101"))
    );
    let bad_login = body.replace("s3cret-pass", "wrong-pass");
    let request = format!("POST /v3/auth/tokens HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{bad_login}", bad_login.len());
    assert_eq!(exchange(&server, request.as_bytes()).0, 401);

    // Quotas per tenant: one queue allowed, the second create is refused.
    let project = other.credentials.project_id.clone();
    server.cli(&[
        "tenant",
        "quotas",
        &project,
        "--queues-max",
        "1",
        "--groups-per-queue-max",
        "1",
    ]);
    other.create_queue("first", "NORMAL", None).unwrap();
    let refused = other
        .call(
            "POST",
            &format!("{}/queues", base(&other)),
            Some(&json!({"name": "second"})),
        )
        .unwrap();
    assert_eq!(refused.status, 400, "{:?}", refused.body);
    let quotas = other
        .call("GET", &format!("{}/quotas/dms", base(&other)), None)
        .unwrap();
    assert!(
        quotas.body.to_string().contains("\"quota\":1"),
        "{}",
        quotas.body
    );

    // Keystone's version document, which keystoneauth reads first.
    let (status, text) = exchange(
        &server,
        b"GET /v3 HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    );
    assert_eq!(status, 200);
    assert_eq!(body_of(&text)["version"]["status"], "stable");

    // A token can also be had with an AK/SK-signed request instead of a password.
    let signed = signed_raw(
        &server,
        &other.credentials,
        "POST",
        "/v3/auth/tokens",
        b"{}",
        0,
    );
    let (status, text) = exchange(&server, &signed);
    assert_eq!(status, 201, "{text}");
    assert!(body_of(&text)["token"]["project"]["id"] == other.credentials.project_id.as_str());

    // Deleting a tenant removes its access.
    server.cli(&["tenant", "delete", &other.credentials.project_id]);
    let after = other
        .call("GET", &format!("{}/queues", base(&other)), None)
        .unwrap();
    assert_eq!(after.status, 401);
}

#[test]
fn bad_input_gets_precise_errors_never_a_hang() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        dir.path(),
        &[
            "--shards",
            "1",
            "--set",
            "header_timeout_ms=300",
            "--set",
            "body_timeout_ms=300",
            "--set",
            "connections_per_shard_max=4",
        ],
    );
    let client = server.client();
    client.create_queue("q", "NORMAL", None).unwrap();
    let queue = client.queue_id("q").unwrap();
    let base = base(&client);
    let credentials = client.credentials.clone();
    let raw = |method: &str, path: &str, body: &[u8]| {
        exchange(
            &server,
            &signed_raw(&server, &credentials, method, path, body, 0),
        )
    };

    let (status, text) = raw("POST", &format!("{base}/queues"), b"{not json");
    assert_eq!(
        (status, body_of(&text)["error_code"].as_str()),
        (400, Some("10240009")),
        "{text}"
    );
    let (status, text) = raw(
        "POST",
        &format!("{base}/queues"),
        br#"{"name": "bad name!"}"#,
    );
    assert_eq!(
        (status, body_of(&text)["error_code"].as_str()),
        (400, Some("10240007")),
        "{text}"
    );
    let eleven: Vec<Value> = (0..11).map(|i| json!({"body": i})).collect();
    let body = json!({"messages": eleven}).to_string();
    let (status, text) = raw(
        "POST",
        &format!("{base}/queues/{queue}/messages"),
        body.as_bytes(),
    );
    assert_eq!(
        (status, body_of(&text)["error_code"].as_str()),
        (400, Some("10240014")),
        "{text}"
    );
    let (status, _) = raw(
        "GET",
        &format!("{base}/queues/00000000-0000-0000-0000-000000000000"),
        b"",
    );
    assert!(status == 404 || status == 400, "unknown queue id: {status}");
    let big = json!({"messages": [{"body": "x".repeat(600 * 1024)}]}).to_string();
    let (status, text) = raw(
        "POST",
        &format!("{base}/queues/{queue}/messages"),
        big.as_bytes(),
    );
    assert_eq!(status, 400, "a message over 512 KB: {text}");
    let ack = json!({"message": [{"handler": "not-a-handler", "status": "success"}]}).to_string();
    client.create_group("q", "g").unwrap();
    let group = client.group_id(&queue, "g").unwrap();
    let (status, text) = raw(
        "POST",
        &format!("{base}/queues/{queue}/groups/{group}/ack"),
        ack.as_bytes(),
    );
    assert!(status == 200 || status == 400, "{text}");
    if status == 200 {
        assert_eq!(
            body_of(&text)["success"],
            0,
            "a bogus handler never counts as success"
        );
    }

    // A body larger than the limit is refused from its Content-Length alone.
    let request = format!("POST {base}/queues HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 99999999\r\n\r\n");
    let (status, _) = exchange(&server, request.as_bytes());
    assert_eq!(status, 413);
    // Headers that never finish: the connection ends after the header timeout.
    let mut stream = connect(&server);
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n")
        .unwrap();
    let (status, _) = read_response(&mut stream);
    assert!(status == 0 || status == 408, "slow headers: {status}");
    // A body that stalls: 408 in the DMS format.
    let mut stream = connect(&server);
    stream.write_all(format!("POST {base}/queues HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{{\"na").as_bytes()).unwrap();
    let (status, text) = read_response(&mut stream);
    assert_eq!(status, 408, "{text}");

    // More connections than allowed: the extra one gets a 503 and is closed.
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut stream = connect(&server);
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
            .unwrap();
        let mut buf = [0u8; 512];
        let n = stream.read(&mut buf).unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
        held.push(stream);
    }
    let mut extra = connect(&server);
    let (status, text) = read_response(&mut extra);
    assert_eq!(status, 503, "{text}");
    drop(held);
}

#[test]
fn metrics_health_and_graceful_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), &["--shards", "2"]);
    let client = server.client();
    client.create_queue("watched", "NORMAL", None).unwrap();
    client.create_group("watched", "g").unwrap();
    let bodies: Vec<Value> = (0..7).map(|i| json!(i)).collect();
    client.send("watched", &bodies).unwrap();
    let (status, _) = exchange(
        &server,
        b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    );
    assert_eq!(status, 200);
    let (status, text) = exchange(
        &server,
        b"GET /metrics HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    );
    assert_eq!(status, 200);
    let backlog = text
        .lines()
        .find(|l| {
            l.starts_with("sluice_group_backlog_messages{") && l.contains("queue=\"watched\"")
        })
        .unwrap_or_else(|| panic!("no backlog gauge in {text}"));
    assert!(backlog.ends_with(" 7"), "{backlog}");
    assert!(
        text.contains("sluice_http_request_duration_seconds_bucket"),
        "latency histogram"
    );
    let fsyncs = text
        .lines()
        .find(|l| l.starts_with("sluice_fsync_duration_seconds_count"))
        .unwrap_or_else(|| panic!("no fsync histogram in {text}"));
    let count: u64 = fsyncs.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(count >= 1, "the send was fsynced: {fsyncs}");

    // SIGTERM while a long poll is in flight: the poll still gets its answer, the
    // process exits 0, and a restart finds everything.
    let polling = {
        let client =
            sluice_server::client::Client::new(&server.endpoint, client.credentials.clone());
        client.create_queue("quiet", "NORMAL", None).unwrap();
        client.create_group("quiet", "idle").unwrap();
        std::thread::spawn(move || client.receive("quiet", "idle", 10, 20, 30))
    };
    // Bounded: the poll is in flight within a few scrapes (it lasts up to 20 s).
    let in_flight = (0..2000).any(|_| {
        let (_, text) = exchange(
            &server,
            b"GET /metrics HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
        );
        text.lines()
            .any(|l| l.starts_with("sluice_http_requests_inflight ") && !l.ends_with(" 1"))
    });
    assert!(in_flight, "the long poll never showed as in flight");
    let status = server.terminate();
    let answered = polling.join().unwrap();
    assert_eq!(answered, Ok(json!([])), "the in-flight poll was answered");
    assert!(status.success(), "graceful exit: {status:?}");
    let server = Server::start(dir.path(), &["--shards", "2"]);
    let got = server.client().receive("watched", "g", 10, 1, 30).unwrap();
    assert_eq!(got.as_array().unwrap().len(), 7);
    // Ensure the CLI's own walk-through commands work too.
    let out = server.cli(&["send", "watched", "hello"]);
    assert!(out.contains("\"state\":0"), "{out}");
    let _ = Client::new(&server.endpoint, server.client().credentials.clone());
}

#[test]
fn fifo_message_groups_keep_order_across_shards() {
    // Goal: calls that cross shards (forwarded over the channel mesh) keep FIFO order per
    // message group and lose nothing. Method: two shards and two partitions; eight message
    // groups hash to both partitions, so whichever shard a connection lands on, some sends,
    // receives and acks go to the other shard's partition. Drain with acks and check each
    // group's order.
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--shards", "2"]);
    let client = server.client();
    let base = base(&client);
    let created = client
        .call(
            "POST",
            &format!("{base}/queues"),
            Some(&json!({"name": "orders", "queue_mode": "FIFO", "fifo_scope": "message_group"})),
        )
        .unwrap();
    assert_eq!(created.status, 201, "{:?}", created.body);
    let queue = created.body["id"].as_str().unwrap().to_string();
    client.create_group("orders", "g").unwrap();
    let group = client.group_id(&queue, "g").unwrap();
    let groups = 8;
    let rounds = 5;
    let mut partitions = std::collections::BTreeSet::new();
    for round in 0..rounds {
        let messages: Vec<Value> = (0..groups)
            .map(|g| json!({"body": {"g": g, "n": round}, "message_group": format!("mg{g}")}))
            .collect();
        let sent = client
            .call(
                "POST",
                &format!("{base}/queues/{queue}/messages"),
                Some(&json!({"messages": messages, "return_id": true})),
            )
            .unwrap();
        assert_eq!(sent.status, 201, "{:?}", sent.body);
        // A message id starts with its partition (4 hex digits).
        for result in sent.body["messages"].as_array().unwrap() {
            partitions.insert(result["id"].as_str().unwrap()[..4].to_string());
        }
    }
    assert_eq!(
        partitions.len(),
        2,
        "the message groups span both shards' partitions"
    );
    let consume = format!(
        "{base}/queues/{queue}/groups/{group}/messages?max_msgs=10&time_wait=1&ack_wait=30"
    );
    let mut seen: Vec<Vec<u64>> = vec![Vec::new(); groups];
    // Bounded: each round acks what it got; FIFO hands out one batch per message group.
    for _ in 0..200 {
        let got = client.call("GET", &consume, None).unwrap();
        let messages = got.body.as_array().unwrap().clone();
        if messages.is_empty() && seen.iter().all(|s| s.len() == rounds) {
            break;
        }
        let mut acks = Vec::new();
        for m in &messages {
            let g = m["message"]["body"]["g"].as_u64().unwrap() as usize;
            seen[g].push(m["message"]["body"]["n"].as_u64().unwrap());
            acks.push(json!({"handler": m["handler"], "status": "success"}));
        }
        if !acks.is_empty() {
            let acked = client
                .call(
                    "POST",
                    &format!("{base}/queues/{queue}/groups/{group}/ack"),
                    Some(&json!({"message": acks})),
                )
                .unwrap();
            assert_eq!(
                acked.body["success"].as_u64(),
                Some(messages.len() as u64),
                "{:?}",
                acked.body
            );
        }
    }
    for (g, order) in seen.iter().enumerate() {
        assert_eq!(
            order,
            &(0..rounds as u64).collect::<Vec<_>>(),
            "message group mg{g}"
        );
    }
}

fn now_ms() -> u64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    u64::try_from(since.as_millis()).unwrap()
}

#[test]
fn scheduled_messages_are_cancelled_on_either_shard() {
    // Goal: `deliver_at` and the cancel extension work through the shards: a cancel whose
    // message id names the other shard's partition is forwarded over the mesh and the
    // message never arrives; a second cancel, and one after release, answer 409. Method:
    // two shards and two partitions; dedup ids spread the sends over both partitions, so
    // whichever shard the connection lands on, some cancels are forwarded. Times are the
    // server's wall clock (same machine); no sleeps, only bounded long polls.
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--shards", "2"]);
    let client = server.client();
    let base = base(&client);
    client.create_queue("timed", "NORMAL", None).unwrap();
    let queue = client.queue_id("timed").unwrap();
    client.create_group("timed", "g").unwrap();
    let group = client.group_id(&queue, "g").unwrap();
    let messages = format!("{base}/queues/{queue}/messages");
    let send = |message: Value| {
        let sent = client
            .call(
                "POST",
                &messages,
                Some(&json!({"return_id": true, "messages": [message]})),
            )
            .unwrap();
        assert_eq!(sent.status, 201, "{:?}", sent.body);
        sent.body["messages"][0]["id"].as_str().unwrap().to_string()
    };
    let cancel = |id: &str| {
        client
            .call("DELETE", &format!("{messages}/{id}"), None)
            .unwrap()
    };
    let hour_ahead = now_ms() + 3_600_000;
    let ids: Vec<String> = (0..8)
        .map(|n| send(json!({"body": n, "deliver_at": hour_ahead, "dedup_id": format!("d{n}")})))
        .collect();
    let partitions: std::collections::BTreeSet<&str> = ids.iter().map(|id| &id[..4]).collect();
    assert_eq!(
        partitions.len(),
        2,
        "the sends span both shards' partitions"
    );
    for id in &ids {
        let cancelled = cancel(id);
        assert_eq!((cancelled.status, &cancelled.body), (204, &Value::Null));
        let again = cancel(id);
        assert_eq!(
            (again.status, again.body["error_code"].as_str()),
            (409, Some("10249409")),
            "{id}"
        );
    }
    let soon = now_ms() + 1_500;
    let released = send(json!({"body": "soon", "deliver_at": soon, "dedup_id": "soon"}));
    let consume = format!("{base}/queues/{queue}/groups/{group}/messages?time_wait=5&ack_wait=30");
    let mut got = Value::Null;
    // Bounded: the message is due in 1.5 s; each poll waits at most 5 s.
    for _ in 0..6 {
        got = client.call("GET", &consume, None).unwrap().body;
        if !got.as_array().unwrap().is_empty() {
            break;
        }
    }
    assert!(now_ms() >= soon, "not delivered before its time");
    assert_eq!(got.as_array().unwrap().len(), 1, "{got}");
    assert_eq!(
        got[0]["message"]["body"], "soon",
        "the cancelled never arrive"
    );
    let late = cancel(&released);
    assert_eq!(
        (late.status, late.body["error_code"].as_str()),
        (409, Some("10249409"))
    );
    let malformed = cancel("not-an-id");
    assert_eq!(
        (malformed.status, malformed.body["error_code"].as_str()),
        (400, Some("10249001"))
    );
    let too_far = client
        .call(
            "POST",
            &messages,
            Some(&json!({"messages": [{"body": 1, "deliver_at": now_ms() + 400 * 86_400_000}]})),
        )
        .unwrap();
    assert_eq!(
        (too_far.status, too_far.body["error_code"].as_str()),
        (400, Some("10249008"))
    );
}

#[test]
fn alarm_rules_survive_a_restart() {
    // Goal: a queue's alarm rules are durable (the queue's fields, a metadata command):
    // after SIGTERM and a restart on the same data directory they are all there.
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), &[]);
    let client = server.client();
    let base = support::base(&client);
    let created = client
        .call(
            "POST",
            &format!("{base}/queues"),
            Some(&json!({"name": "watched"})),
        )
        .expect("create");
    let queue = created.body["id"].as_str().expect("an id").to_string();
    let rules = json!({"rules": [
        {"name": "deep", "group": "g", "kind": "backlog_above", "threshold": 100.0, "for_s": 60},
        {"name": "late", "group": "g", "kind": "oldest_age_above", "threshold": 30.0, "for_s": 0,
         "webhook": "http://127.0.0.1:9/hook"}]});
    let put = client
        .call(
            "PUT",
            &format!("{base}/queues/{queue}/alarms"),
            Some(&rules),
        )
        .expect("put");
    assert_eq!(put.status, 204, "{:?}", put.body);
    let bad = json!({"rules": [{"name": "x", "group": "g", "kind": "backlog_above",
                                "threshold": -1.0, "for_s": 0}]});
    let refused = client
        .call("PUT", &format!("{base}/queues/{queue}/alarms"), Some(&bad))
        .expect("put");
    assert_eq!(refused.status, 400, "{:?}", refused.body);
    assert!(server.terminate().success());
    let server = Server::start(dir.path(), &[]);
    let client = server.client();
    let read = client
        .call("GET", &format!("{base}/queues/{queue}/alarms"), None)
        .expect("get");
    assert_eq!(read.status, 200, "{:?}", read.body);
    assert_eq!(
        read.body["rules"], rules["rules"],
        "the rules after a restart"
    );
}

#[test]
fn the_cli_exports_a_groups_dead_letters_as_json_lines() {
    // Goal: `sluice dead-letters export QUEUE GROUP` writes every dead letter of the group
    // as one JSON line each (all pages, every partition), and leaves them to consume.
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--shards", "2"]);
    server.cli(&["queue-create", "orders", "--max-consume-count", "1"]);
    server.cli(&["group-create", "orders", "billing"]);
    let bodies: Vec<String> = (0..25).map(|i| format!("{{\"order\":{i}}}")).collect();
    for chunk in bodies.chunks(10) {
        let mut args = vec!["send", "orders"];
        args.extend(chunk.iter().map(String::as_str));
        server.cli(&args);
    }
    let client = server.client();
    let mut failed = 0;
    // Bounded: each round fails what it received, 25 in all.
    for _ in 0..100 {
        if failed == 25 {
            break;
        }
        let got = client.receive("orders", "billing", 10, 1, 30).unwrap();
        let handlers: Vec<String> = got
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["handler"].as_str().unwrap().to_string())
            .collect();
        failed += handlers.len();
        if !handlers.is_empty() {
            client.ack("orders", "billing", &handlers, false).unwrap();
        }
    }
    assert_eq!(failed, 25);
    let out = server.cli(&["dead-letters", "export", "orders", "billing"]);
    let mut orders: Vec<u64> = out
        .lines()
        .map(|line| {
            let message: Value = serde_json::from_str(line).expect("a JSON line");
            assert!(message["message_id"].as_str().is_some());
            message["body"]["order"].as_u64().expect("the body sent")
        })
        .collect();
    orders.sort_unstable();
    assert_eq!(orders, (0..25).collect::<Vec<u64>>());
    let again = server.cli(&["dead-letters", "export", "orders", "billing"]);
    assert_eq!(again.lines().count(), 25, "an export consumes nothing");
}
