//! The official RocketMQ 5 Python client (`rocketmq-python-client`, pinned in
//! tests/rocketmq/requirements.txt and installed by `cargo xtask test` into the venv named
//! by `SLUICE_PYTHON`), unmodified, against the real binary's `--rocketmq-listen` port.
//! Each test starts a fresh server, creates a tenant and its topic (a queue) through the
//! DMS API, and runs one scenario of tests/rocketmq/clients.py, which checks every answer
//! itself and waits only by long polls with deadlines.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{json, Value};
use support::scenario::{python, run};
use support::Server;

struct Tenant {
    name: String,
    project_id: String,
    ak: String,
    sk: String,
}

/// A server with its RocketMQ listener on a port of its own choosing.
struct RocketMqServer {
    server: Server,
    rocketmq: String,
}

impl RocketMqServer {
    fn start(data_dir: &Path) -> RocketMqServer {
        let server = Server::start(
            data_dir,
            &["--shards", "2", "--rocketmq-listen", "127.0.0.1:0"],
        );
        let rocketmq = rocketmq_address(&server.banner[0]);
        RocketMqServer { server, rocketmq }
    }

    fn tenant(&self, name: &str) -> Tenant {
        let created = self.server.cli(&["tenant", "create", name, "--json"]);
        let tenant: Value = serde_json::from_str(created.trim()).expect("tenant create --json");
        let field = |key: &str| tenant[key].as_str().expect("a string field").to_string();
        Tenant {
            name: name.to_string(),
            project_id: field("project_id"),
            ak: field("ak"),
            sk: field("sk"),
        }
    }

    /// Creates the tenant's topic: a NORMAL queue, or a FIFO queue ordered per message
    /// group (what RocketMQ's FIFO topics are).
    fn topic(&self, tenant: &Tenant, name: &str, fifo: bool) {
        let body = if fifo {
            json!({"name": name, "queue_mode": "FIFO", "fifo_scope": "message_group"})
        } else {
            json!({"name": name, "queue_mode": "NORMAL"})
        };
        let path = format!("/v1.0/{}/queues", tenant.project_id);
        self.server
            .client_for(&tenant.name)
            .call("POST", &path, Some(&body))
            .and_then(|answer| answer.ok())
            .expect("the topic's queue is created");
    }
}

/// The RocketMQ address in the server's start-up line ("rocketmq on ADDR").
fn rocketmq_address(banner: &str) -> String {
    banner
        .split("rocketmq on ")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| c.is_whitespace() || c == ')').next())
        .unwrap_or_else(|| panic!("no RocketMQ address in {banner:?}"))
        .to_string()
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/rocketmq/clients.py")
}

/// The command for a scenario of clients.py as `tenant` on `topic`.
fn scenario(server: &RocketMqServer, name: &str, tenant: &Tenant, topic: &str) -> Command {
    let mut command = Command::new(python());
    command
        .arg(script())
        .arg(name)
        .env("PYTHONUNBUFFERED", "1")
        .env("SLUICE_ROCKETMQ", &server.rocketmq)
        .env("SLUICE_AK", &tenant.ak)
        .env("SLUICE_SK", &tenant.sk)
        .env("SLUICE_TOPIC", topic)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

#[test]
#[ignore = "needs the pinned Python venv: run by `cargo xtask test` (SLUICE_PYTHON)"]
fn normal_messages_round_trip_with_tags_keys_properties_and_a_changed_invisible_duration() {
    let dir = tempfile::tempdir().unwrap();
    let server = RocketMqServer::start(dir.path());
    let tenant = server.tenant("rmq");
    server.topic(&tenant, "orders", false);
    let lines = run(scenario(&server, "roundtrip", &tenant, "orders"));
    assert!(
        lines.iter().any(|l| l.contains("\"received\": 6")),
        "{lines:?}"
    );
}

#[test]
#[ignore = "needs the pinned Python venv: run by `cargo xtask test` (SLUICE_PYTHON)"]
fn fifo_messages_arrive_in_order_per_message_group() {
    let dir = tempfile::tempdir().unwrap();
    let server = RocketMqServer::start(dir.path());
    let tenant = server.tenant("rmq");
    server.topic(&tenant, "ledger", true);
    let lines = run(scenario(&server, "fifo", &tenant, "ledger"));
    assert!(
        lines.iter().any(|l| l.contains("\"received\": 15")),
        "{lines:?}"
    );
}

#[test]
#[ignore = "needs the pinned Python venv: run by `cargo xtask test` (SLUICE_PYTHON)"]
fn a_scheduled_message_is_not_delivered_early_and_a_recalled_one_never() {
    let dir = tempfile::tempdir().unwrap();
    let server = RocketMqServer::start(dir.path());
    let tenant = server.tenant("rmq");
    server.topic(&tenant, "reminders", false);
    let lines = run(scenario(&server, "delay", &tenant, "reminders"));
    assert!(
        lines.iter().any(|l| l.contains("\"delivered\": 1")),
        "{lines:?}"
    );
}

#[test]
#[ignore = "needs the pinned Python venv: run by `cargo xtask test` (SLUICE_PYTHON)"]
fn a_wrong_secret_is_refused_and_another_tenants_topic_is_invisible() {
    let dir = tempfile::tempdir().unwrap();
    let server = RocketMqServer::start(dir.path());
    let tenant = server.tenant("rmq");
    let other = server.tenant("rmq-other");
    server.topic(&tenant, "private", false);
    let mut command = scenario(&server, "refused", &tenant, "private");
    command
        .env("SLUICE_OTHER_AK", &other.ak)
        .env("SLUICE_OTHER_SK", &other.sk);
    let lines = run(command);
    assert!(
        lines.iter().any(|l| l.contains("\"refused\": 2")),
        "{lines:?}"
    );
}

#[test]
#[ignore = "needs the pinned Python venv: run by `cargo xtask test` (SLUICE_PYTHON)"]
fn transactions_commit_roll_back_and_an_open_one_is_checked_over_telemetry() {
    let dir = tempfile::tempdir().unwrap();
    let server = RocketMqServer::start(dir.path());
    let tenant = server.tenant("rmq");
    server.topic(&tenant, "payments", false);
    let lines = run(scenario(&server, "transaction", &tenant, "payments"));
    assert!(
        lines
            .iter()
            .any(|l| l.contains("\"delivered\": 2, \"checked\": 1")),
        "{lines:?}"
    );
}

#[test]
#[ignore = "needs the pinned Python venv: run by `cargo xtask test` (SLUICE_PYTHON)"]
fn a_push_consumer_consumes_everything_and_a_failed_message_comes_back() {
    let dir = tempfile::tempdir().unwrap();
    let server = RocketMqServer::start(dir.path());
    let tenant = server.tenant("rmq");
    server.topic(&tenant, "events", false);
    let lines = run(scenario(&server, "push", &tenant, "events"));
    assert!(
        lines.iter().any(|l| l.contains("\"consumed\": 4")),
        "{lines:?}"
    );
}
