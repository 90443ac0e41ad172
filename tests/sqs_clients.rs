//! SQS client libraries, unmodified, against the real binary's HTTP listener: boto3 from
//! the pinned venv of `cargo xtask test` (`SLUICE_PYTHON`). The test starts a fresh
//! server and runs tests/sqs/clients.py, which checks every answer itself (digests it
//! computes on its own, error codes, order, isolation between tenants).

mod support;

use std::path::Path;
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

#[test]
#[ignore = "needs the pinned Python venv: run by `cargo xtask test` (SLUICE_PYTHON)"]
fn boto3_serves_queues_messages_fifo_and_keeps_tenants_apart() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--shards", "2"]);
    let first = tenant(&server, "sqs");
    let other = tenant(&server, "sqs-other");
    let mut command = Command::new(python());
    command
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sqs/clients.py"))
        .arg("boto3")
        .env("PYTHONUNBUFFERED", "1")
        .env("SLUICE_ENDPOINT", &server.endpoint)
        .env("SLUICE_AK", &first.ak)
        .env("SLUICE_SK", &first.sk)
        .env("SLUICE_PROJECT", &first.project_id)
        .env("SLUICE_OTHER_AK", &other.ak)
        .env("SLUICE_OTHER_SK", &other.sk)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let lines = run(command);
    assert!(
        lines.iter().any(|l| l.contains("\"passed\": true")),
        "{lines:?}"
    );
}
