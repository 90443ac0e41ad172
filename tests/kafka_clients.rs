//! Kafka client libraries, unmodified, against the real binary's Kafka listener: the
//! Python `kafka-python` and `confluent-kafka` (librdkafka) from the pinned venv of
//! `cargo xtask test` (`SLUICE_PYTHON`), and `kafkajs` on Node.js from the pinned
//! `node_modules` the test command installs (`SLUICE_KAFKAJS`). Each test starts a fresh
//! server with `--kafka-listen 127.0.0.1:0` and runs one scenario of tests/kafka/clients.py
//! or tests/kafka/clients.js, which checks every answer itself; a SIGKILL of the server
//! during an acks=all produce must lose no acknowledged record.

mod support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;

use serde_json::Value;
use support::scenario::{python, run, SCENARIO_TIMEOUT};
use support::Server;

fn kafkajs_modules() -> PathBuf {
    match std::env::var_os("SLUICE_KAFKAJS") {
        Some(modules) => PathBuf::from(modules),
        None => panic!(
            "SLUICE_KAFKAJS is not set. Run this test via `cargo xtask test`, which installs \
             the pinned kafkajs (target/kafkajs/node_modules) and sets SLUICE_KAFKAJS"
        ),
    }
}

struct Tenant {
    ak: String,
    sk: String,
}

/// A server with its Kafka listener on a port of its own choosing.
struct KafkaServer {
    server: Server,
    kafka: String,
}

impl KafkaServer {
    fn start(data_dir: &Path) -> KafkaServer {
        let server = Server::start(
            data_dir,
            &["--shards", "2", "--kafka-listen", "127.0.0.1:0"],
        );
        let kafka = kafka_address(&server.banner[0]);
        KafkaServer { server, kafka }
    }

    fn tenant(&self, name: &str) -> Tenant {
        let created = self.server.cli(&["tenant", "create", name, "--json"]);
        let tenant: Value = serde_json::from_str(created.trim()).expect("tenant create --json");
        let field = |key: &str| tenant[key].as_str().expect("a string field").to_string();
        Tenant {
            ak: field("ak"),
            sk: field("sk"),
        }
    }
}

/// The Kafka address in the server's start-up line ("kafka on ADDR (...").
fn kafka_address(banner: &str) -> String {
    banner
        .split("kafka on ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no Kafka address in {banner:?}"))
        .to_string()
}

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/kafka")
        .join(name)
}

/// The command for a scenario of clients.py (`python`) or clients.js (`node`).
fn scenario_command(runtime: &str, scenario: &str, kafka: &str, tenant: &Tenant) -> Command {
    let mut command = match runtime {
        "python" => {
            let mut command = Command::new(python());
            command.arg(script("clients.py"));
            command.env("PYTHONUNBUFFERED", "1");
            command
        }
        _ => {
            let mut command = Command::new("node");
            command.arg(script("clients.js"));
            command.env("NODE_PATH", kafkajs_modules());
            command.env("KAFKAJS_NO_PARTITIONER_WARNING", "1");
            command
        }
    };
    command
        .arg(scenario)
        .env("SLUICE_KAFKA", kafka)
        .env("SLUICE_AK", &tenant.ak)
        .env("SLUICE_SK", &tenant.sk)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

#[test]
#[ignore = "needs the pinned Python venv: run by `cargo xtask test` (SLUICE_PYTHON)"]
fn kafka_python_produces_with_every_acks_mode_and_reads_back_keys_headers_and_timestamps() {
    let dir = tempfile::tempdir().unwrap();
    let server = KafkaServer::start(dir.path());
    let tenant = server.tenant("kp");
    let other = server.tenant("kp-other");
    let mut command = scenario_command("python", "kafka-python", &server.kafka, &tenant);
    command
        .env("SLUICE_OTHER_AK", &other.ak)
        .env("SLUICE_OTHER_SK", &other.sk);
    let lines = run(command);
    assert!(
        lines.iter().any(|l| l.contains("\"records\": 60")),
        "{lines:?}"
    );
}

#[test]
#[ignore = "needs the pinned Python venv: run by `cargo xtask test` (SLUICE_PYTHON)"]
fn librdkafka_produces_idempotently_over_scram_with_every_codec_and_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let server = KafkaServer::start(dir.path());
    let tenant = server.tenant("ck");
    let lines = run(scenario_command(
        "python",
        "confluent",
        &server.kafka,
        &tenant,
    ));
    assert!(
        lines.iter().any(|l| l.contains("\"records\": 400")),
        "{lines:?}"
    );
    // The topic is a queue of the tenant: a DMS consumer group reads the same records,
    // values as bodies (a string, since they are not JSON).
    let dms = server.server.client_for("ck");
    dms.create_group("ck-events", "dms-readers")
        .expect("a DMS group on the topic");
    let got = dms
        .receive("ck-events", "dms-readers", 10, 1, 30)
        .expect("a DMS receive");
    let bodies: Vec<&str> = got
        .as_array()
        .expect("a list of messages")
        .iter()
        .filter_map(|m| m["message"]["body"].as_str())
        .collect();
    assert!(!bodies.is_empty(), "{got}");
    assert!(
        bodies.iter().all(|b| b.starts_with("SCRAM-SHA-")),
        "the DMS bodies are the Kafka values: {bodies:?}"
    );
}

#[test]
#[ignore = "needs the pinned kafkajs: run by `cargo xtask test` (SLUICE_KAFKAJS)"]
fn kafkajs_produces_idempotently_and_a_group_reads_everything_back() {
    let dir = tempfile::tempdir().unwrap();
    let server = KafkaServer::start(dir.path());
    let tenant = server.tenant("js");
    let lines = run(scenario_command(
        "node",
        "produce-consume",
        &server.kafka,
        &tenant,
    ));
    assert!(
        lines.iter().any(|l| l.contains("\"records\":100")),
        "{lines:?}"
    );
}

/// A producer with acks=all runs while the server is killed with SIGKILL; after a restart
/// every record the producer saw acknowledged is read back.
#[test]
#[ignore = "needs the pinned Python venv: run by `cargo xtask test` (SLUICE_PYTHON)"]
fn a_sigkill_during_an_acks_all_produce_loses_no_acknowledged_record() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = KafkaServer::start(dir.path());
    let tenant = server.tenant("crash");
    // The topic exists before the producer starts (kafka-python creates it).
    let mut create = scenario_command("python", "create-topic", &server.kafka, &tenant);
    create.env("SLUICE_TOPIC", "crash");
    run(create);
    let mut produce = scenario_command("python", "produce-acked", &server.kafka, &tenant);
    produce.env("SLUICE_TOPIC", "crash");
    let mut producer = produce.spawn().expect("the producer starts");
    let stdout = producer.stdout.take().expect("piped");
    let (acked_tx, acked_rx) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if let Some(value) = line.strip_prefix("acked ") {
                if acked_tx.send(value.to_string()).is_err() {
                    return;
                }
            }
        }
    });
    let mut acked = Vec::new();
    // Kill once 500 records are acknowledged (bounded by the scenario timeout).
    while acked.len() < 500 {
        match acked_rx.recv_timeout(SCENARIO_TIMEOUT) {
            Ok(value) => acked.push(value),
            Err(_) => panic!("the producer stopped after {} acks", acked.len()),
        }
    }
    server.server.kill();
    // Whatever the producer saw acknowledged before the kill counts; it cannot see more
    // once the server is gone, so drain what it printed, then stop it.
    let _ = producer.kill();
    let _ = producer.wait();
    acked.extend(acked_rx.try_iter());
    drop(server);
    let server = KafkaServer::start(dir.path());
    let mut read = scenario_command("python", "consume-all", &server.kafka, &tenant);
    read.env("SLUICE_TOPIC", "crash");
    let lines = run(read);
    let read: std::collections::HashSet<&str> = lines
        .iter()
        .filter_map(|line| line.strip_prefix("read "))
        .collect();
    let lost: Vec<&String> = acked
        .iter()
        .filter(|v| !read.contains(v.as_str()))
        .collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged records lost, e.g. {:?}",
        lost.len(),
        acked.len(),
        &lost[..lost.len().min(5)]
    );
}

/// librdkafka's classic consumer group: two members and a rebalance, committed offsets,
/// and a member resuming from them after a server restart.
#[test]
#[ignore = "needs the pinned Python venv: run by `cargo xtask test` (SLUICE_PYTHON)"]
fn a_consumer_group_rebalances_commits_and_resumes_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = KafkaServer::start(dir.path());
    let tenant = server.tenant("grp");
    let mut groups = scenario_command("python", "groups", &server.kafka, &tenant);
    groups.env("SLUICE_TOPIC", "grp-events");
    let lines = run(groups);
    assert!(
        lines.iter().any(|l| l.contains("\"records\": 100")),
        "{lines:?}"
    );
    assert_eq!(server.server.terminate().code(), Some(0), "a clean stop");
    drop(server);
    let server = KafkaServer::start(dir.path());
    let mut resume = scenario_command("python", "resume", &server.kafka, &tenant);
    resume.env("SLUICE_TOPIC", "grp-events");
    let lines = run(resume);
    assert!(
        lines.iter().any(|l| l.contains("\"records\": 10")),
        "{lines:?}"
    );
}

/// librdkafka's share consumer (KIP-932) on a share group: explicit acknowledgements,
/// released records redelivered with a higher delivery count.
#[test]
#[ignore = "needs the pinned Python venv: run by `cargo xtask test` (SLUICE_PYTHON)"]
fn a_share_consumer_acquires_acknowledges_and_gets_released_records_again() {
    let dir = tempfile::tempdir().unwrap();
    let server = KafkaServer::start(dir.path());
    let tenant = server.tenant("share");
    let mut share = scenario_command("python", "share", &server.kafka, &tenant);
    share.env("SLUICE_TOPIC", "share-jobs");
    let lines = run(share);
    assert!(
        lines.iter().any(|l| l.contains("\"records\": 50")),
        "{lines:?}"
    );
}
