//! SQS client libraries, unmodified, against the real binary's HTTP listener: boto3 from
//! the pinned venv of `cargo xtask test` (`SLUICE_PYTHON`) and the AWS SDK for JavaScript
//! v3 from the pinned `node_modules` it installs (`SLUICE_AWS_SDK`), both speaking the
//! JSON protocol, and the AWS CLI v1 speaking the query protocol (`SLUICE_AWSCLI`). Each
//! test starts a fresh server and runs a scenario (tests/sqs/clients.py,
//! tests/sqs/clients.mjs, tests/sqs/awscli.py), which checks every answer itself (digests,
//! error codes, order, isolation between tenants).

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;
use support::scenario::{python, run};
use support::Server;

struct Tenant {
    ak: String,
    sk: String,
    project_id: String,
}

fn tenant(server: &Server, name: &str) -> Tenant {
    let created = server.cli(&["tenant", "create", name, "--json"]);
    let tenant: Value = serde_json::from_str(created.trim()).expect("tenant create --json");
    let field = |key: &str| tenant[key].as_str().expect("a string field").to_string();
    Tenant {
        ak: field("ak"),
        sk: field("sk"),
        project_id: field("project_id"),
    }
}

/// A scenario's command with the server's endpoint and two tenants' credentials.
fn scenario(mut command: Command, server: &Server) -> Command {
    let first = tenant(server, "sqs");
    let other = tenant(server, "sqs-other");
    command
        .env("SLUICE_ENDPOINT", &server.endpoint)
        .env("SLUICE_AK", &first.ak)
        .env("SLUICE_SK", &first.sk)
        .env("SLUICE_PROJECT", &first.project_id)
        .env("SLUICE_OTHER_AK", &other.ak)
        .env("SLUICE_OTHER_SK", &other.sk)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/sqs")
        .join(name)
}

fn aws_sdk_modules() -> PathBuf {
    match std::env::var_os("SLUICE_AWS_SDK") {
        Some(modules) => PathBuf::from(modules),
        None => panic!(
            "SLUICE_AWS_SDK is not set. Run this test via `cargo xtask test`, which installs \
             the pinned @aws-sdk/client-sqs (target/awssdk/node_modules) and sets SLUICE_AWS_SDK"
        ),
    }
}

#[test]
#[ignore = "needs the pinned Python venv: run by `cargo xtask test` (SLUICE_PYTHON)"]
fn boto3_serves_queues_messages_fifo_purge_tags_dead_letters_and_keeps_tenants_apart() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--shards", "2"]);
    let mut command = Command::new(python());
    command
        .arg(script("clients.py"))
        .arg("boto3")
        .env("PYTHONUNBUFFERED", "1");
    let lines = run(scenario(command, &server));
    assert!(
        lines.iter().any(|l| l.contains("\"passed\": true")),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("\"scenario\": \"dead_letters\"")),
        "{lines:?}"
    );
    // One engine: the SQS queues are the tenant's queues in the DMS API too, with the
    // implicit group, and a DMS tag change keeps the SQS attributes.
    let dms = server.client_for("sqs");
    let listed = dms
        .call("GET", &format!("{}/queues", support::base(&dms)), None)
        .expect("DMS list");
    assert_eq!(listed.status, 200, "{:?}", listed.body);
    let queues = listed.body["queues"].as_array().expect("a queue list");
    let orders = queues
        .iter()
        .find(|q| q["name"] == "orders")
        .unwrap_or_else(|| panic!("orders is not listed through DMS: {queues:?}"));
    let id = orders["id"].as_str().expect("an id");
    let groups = dms
        .call(
            "GET",
            &format!("{}/queues/{id}/groups", support::base(&dms)),
            None,
        )
        .expect("DMS groups");
    assert!(
        groups.body.to_string().contains("\"sqs\""),
        "the implicit group: {:?}",
        groups.body
    );
    // The tags set through SQS are the queue's tags in the DMS tag API.
    let tagged = queues
        .iter()
        .find(|q| q["name"] == "tagged")
        .unwrap_or_else(|| panic!("tagged is not listed through DMS: {queues:?}"));
    let id = tagged["id"].as_str().expect("an id");
    let project = &dms.credentials.project_id;
    let tags = dms
        .call("GET", &format!("/v2/{project}/queue/{id}/tags"), None)
        .expect("DMS tags");
    assert_eq!(tags.status, 200, "{:?}", tags.body);
    assert_eq!(
        tags.body["tags"],
        serde_json::json!([{"key": "cost", "value": "42"}, {"key": "env", "value": "prod"}]),
        "the SQS tags through DMS"
    );
}

#[test]
#[ignore = "needs the pinned AWS SDK for JavaScript: run by `cargo xtask test` (SLUICE_AWS_SDK)"]
fn the_aws_sdk_for_javascript_checks_every_digest_it_is_answered() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--shards", "2"]);
    let mut command = Command::new("node");
    command
        .arg(script("clients.mjs"))
        .env("SLUICE_AWS_SDK", aws_sdk_modules());
    let lines = run(scenario(command, &server));
    assert!(
        lines.iter().any(|l| l.contains("\"passed\":true")),
        "{lines:?}"
    );
}

fn awscli_dir() -> PathBuf {
    match std::env::var_os("SLUICE_AWSCLI") {
        Some(dir) => PathBuf::from(dir),
        None => panic!(
            "SLUICE_AWSCLI is not set. Run this test via `cargo xtask test`, which installs \
             the pinned AWS CLI v1 (target/py-venv/awscli) and sets SLUICE_AWSCLI"
        ),
    }
}

#[test]
#[ignore = "needs the pinned AWS CLI v1: run by `cargo xtask test` (SLUICE_PYTHON, SLUICE_AWSCLI)"]
fn the_aws_cli_v1_speaks_the_query_protocol() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--shards", "2"]);
    let mut command = Command::new(python());
    command
        .arg(script("awscli.py"))
        .env("SLUICE_AWSCLI", awscli_dir())
        .env("PYTHONUNBUFFERED", "1");
    let lines = run(scenario(command, &server));
    assert!(
        lines.iter().any(|l| l.contains("\"passed\": true")),
        "{lines:?}"
    );
}
