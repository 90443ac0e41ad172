//! The web console in a real browser: headless Chromium (Debian's `chromium` package)
//! driven by `playwright-core` from npm, both installed by `cargo xtask test`, against the
//! real binary (tests/console/console.mjs), logged in to one node of a three-node
//! cluster: the admin's cluster page shows the three nodes and each partition's replicas.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;

use serde_json::json;
use support::cluster::{start_cluster_with, NODES};
use support::scenario::run;

fn env_path(name: &str) -> PathBuf {
    match std::env::var_os(name) {
        Some(value) => PathBuf::from(value),
        None => panic!(
            "{name} is not set. Run this test via `cargo xtask test`, which installs Debian's \
             chromium and the pinned playwright-core and sets SLUICE_CHROMIUM and \
             SLUICE_PLAYWRIGHT"
        ),
    }
}

/// A loopback webhook receiver: answers 204 to every POST and hands its body over.
fn webhook_receiver() -> (String, mpsc::Receiver<serde_json::Value>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/alarms", listener.local_addr().unwrap());
    let (sender, bodies) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut length = 0;
            let mut line = String::new();
            while reader.read_line(&mut line).unwrap_or(0) > 2 {
                let lower = line.to_ascii_lowercase();
                if let Some(value) = lower.strip_prefix("content-length:") {
                    length = value.trim().parse().unwrap_or(0);
                }
                line.clear();
            }
            let mut body = vec![0; length];
            if reader.read_exact(&mut body).is_ok() {
                let _ = stream.write_all(b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n");
                if let Ok(value) = serde_json::from_slice(&body) {
                    let _ = sender.send(value);
                }
            }
        }
    });
    (url, bodies)
}

#[test]
#[ignore = "needs chromium and playwright-core: run by `cargo xtask test` (SLUICE_CHROMIUM, SLUICE_PLAYWRIGHT)"]
fn the_console_logs_in_manages_queues_sends_and_consumes_in_a_browser() {
    let dir = tempfile::tempdir().unwrap();
    // The console's charts need samples within the test's time.
    let (nodes, _leaders, _peers) =
        start_cluster_with(dir.path(), &["--set", "monitor_interval_ms=200"]);
    let server = &nodes[&1];
    server.cli(&[
        "tenant",
        "create",
        "webuser",
        "--password",
        "console-pass-1",
    ]);
    server.cli(&["tenant", "create", "neighbour"]);
    let neighbour = server.client_for("neighbour");
    let created = neighbour
        .call(
            "POST",
            &format!("{}/queues", support::base(&neighbour)),
            Some(&json!({"name": "neighbour-private"})),
        )
        .expect("a neighbour's queue");
    assert_eq!(created.status, 201, "{:?}", created.body);
    // A dead letter of webuser's, for the console's dead-letter lane.
    let webuser = server.client_for("webuser");
    let base = support::base(&webuser);
    let call = |method: &str, path: String, body: Option<serde_json::Value>| {
        let answer = webuser
            .call(method, &format!("{base}{path}"), body.as_ref())
            .expect("a call as webuser");
        assert!(answer.status < 300, "{method} {path}: {:?}", answer.body);
        answer.body
    };
    let dead = call(
        "POST",
        "/queues".into(),
        Some(json!({"name": "web-dead", "redrive_policy": "enable", "max_consume_count": 1})),
    );
    let queue = dead["id"].as_str().expect("an id").to_string();
    let groups = call(
        "POST",
        format!("/queues/{queue}/groups"),
        Some(json!({"groups": [{"name": "dead-readers"}]})),
    );
    let group = groups["groups"][0]["id"]
        .as_str()
        .expect("an id")
        .to_string();
    call(
        "POST",
        format!("/queues/{queue}/messages"),
        Some(json!({"messages": [{"body": "poison"}]})),
    );
    let got = call(
        "GET",
        format!("/queues/{queue}/groups/{group}/messages?time_wait=5"),
        None,
    );
    let handler = got[0]["handler"].as_str().expect("a delivery").to_string();
    call(
        "POST",
        format!("/queues/{queue}/groups/{group}/ack"),
        Some(json!({"message": [{"handler": handler, "status": "fail"}]})),
    );
    let shots = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("target")
        .join("console-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let (webhook, notifications) = webhook_receiver();
    let secrets = sluice_server::datadir::load_secrets(&server.data_dir).expect("the admin keys");
    let mut command = Command::new("node");
    command
        .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/console/console.mjs"))
        .env("SLUICE_ENDPOINT", &server.endpoint)
        .env("SLUICE_PLAYWRIGHT", env_path("SLUICE_PLAYWRIGHT"))
        .env("SLUICE_CHROMIUM", env_path("SLUICE_CHROMIUM"))
        .env("SLUICE_TENANT", "webuser")
        .env("SLUICE_PASSWORD", "console-pass-1")
        .env("SLUICE_HIDDEN_QUEUE", "neighbour-private")
        .env("SLUICE_SCREENSHOTS", &shots)
        .env("SLUICE_WEBHOOK", &webhook)
        .env("SLUICE_AK", &webuser.credentials.ak)
        .env("SLUICE_ADMIN_AK", &secrets.admin_ak)
        .env("SLUICE_ADMIN_SK", &secrets.admin_sk)
        .env("SLUICE_SK", &webuser.credentials.sk)
        .env("SLUICE_NODES", NODES.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let lines = run(command);
    assert!(
        lines.iter().any(|l| l.contains("\"passed\":true")),
        "{lines:?}"
    );
    // The alarm's two changes reached the webhook, in order.
    let states: Vec<String> = notifications
        .try_iter()
        .filter(|n| n["alarm"] == "backlog-high")
        .map(|n| n["state"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(states, ["firing", "ok"], "webhook notifications");
    for shot in [
        "login-done.png",
        "queues.png",
        "queue.png",
        "dead-letters.png",
        "alarm.png",
        "admin.png",
    ] {
        let size = std::fs::metadata(shots.join(shot)).map(|m| m.len()).ok();
        assert!(size.is_some_and(|size| size > 1000), "{shot}: {size:?}");
    }
}
