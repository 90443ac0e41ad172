//! The web console in a real browser: headless Chromium (Debian's `chromium` package)
//! driven by `playwright-core` from npm, both installed by `cargo xtask test`, against the
//! real binary (tests/console/console.mjs).

mod support;

use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde_json::json;
use support::scenario::run;
use support::Server;

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

#[test]
#[ignore = "needs chromium and playwright-core: run by `cargo xtask test` (SLUICE_CHROMIUM, SLUICE_PLAYWRIGHT)"]
fn the_console_logs_in_manages_queues_sends_and_consumes_in_a_browser() {
    let dir = tempfile::tempdir().unwrap();
    // The console's charts need samples within the test's time.
    let server = Server::start(
        dir.path(),
        &["--shards", "2", "--set", "monitor_interval_ms=200"],
    );
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
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let lines = run(command);
    assert!(
        lines.iter().any(|l| l.contains("\"passed\":true")),
        "{lines:?}"
    );
    for shot in [
        "login-done.png",
        "queues.png",
        "queue.png",
        "dead-letters.png",
    ] {
        let size = std::fs::metadata(shots.join(shot)).map(|m| m.len()).ok();
        assert!(size.is_some_and(|size| size > 1000), "{shot}: {size:?}");
    }
}
