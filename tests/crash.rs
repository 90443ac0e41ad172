//! Crash tests with the real binary: a send answered 2xx survives SIGKILL (it was
//! fsynced before the answer), and a message whose ack was answered 2xx never comes back.
//! Sends run from several threads at once so that group commit is exercised.

mod support;

use std::collections::BTreeSet;

use serde_json::Value;
use support::Server;

const THREADS: usize = 4;
const BATCHES_PER_THREAD: usize = 15;
const BATCH: usize = 10;

fn body_ids(got: &Value) -> Vec<(String, String)> {
    got.as_array()
        .expect("a consume answers an array")
        .iter()
        .map(|m| {
            let handler = m["handler"].as_str().expect("handler").to_string();
            let id = m["message"]["body"]["id"]
                .as_str()
                .expect("body id")
                .to_string();
            (handler, id)
        })
        .collect()
}

/// Receives until `expected` messages were seen or a poll comes back empty.
fn drain(server: &Server, expected: usize) -> Vec<(String, String)> {
    let client = server.client();
    let mut seen = Vec::new();
    // Bounded: each round either adds messages or ends the loop.
    for _ in 0..(expected / BATCH + 50) {
        let got = client.receive("crash", "g", 10, 1, 300).expect("receive");
        let ids = body_ids(&got);
        if ids.is_empty() && seen.len() >= expected {
            break;
        }
        if ids.is_empty() {
            continue;
        }
        seen.extend(ids);
    }
    seen
}

#[test]
fn acknowledged_sends_survive_sigkill_and_acked_messages_never_return() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), &["--shards", "2"]);
    let client = server.client();
    client.create_queue("crash", "NORMAL", None).unwrap();
    client.create_group("crash", "g").unwrap();

    // Phase 1: sends from several threads; every one answered 201 before the kill.
    let endpoint = server.endpoint.clone();
    let credentials = client.credentials.clone();
    let handles: Vec<_> = (0..THREADS)
        .map(|thread| {
            let endpoint = endpoint.clone();
            let credentials = credentials.clone();
            std::thread::spawn(move || {
                let client = sluice_server::client::Client::new(&endpoint, credentials);
                let mut sent = Vec::new();
                for batch in 0..BATCHES_PER_THREAD {
                    let bodies: Vec<Value> = (0..BATCH)
                        .map(|i| serde_json::json!({"id": format!("t{thread}-b{batch}-m{i}")}))
                        .collect();
                    let answer = client.send("crash", &bodies).expect("send answered 2xx");
                    assert_eq!(answer["messages"].as_array().unwrap().len(), BATCH);
                    sent.extend(bodies.iter().map(|b| b["id"].as_str().unwrap().to_string()));
                }
                sent
            })
        })
        .collect();
    let sent: BTreeSet<String> = handles
        .into_iter()
        .flat_map(|h| h.join().expect("sender thread"))
        .collect();
    assert_eq!(sent.len(), THREADS * BATCHES_PER_THREAD * BATCH);
    server.kill();

    // Phase 2: everything answered 2xx is there after the restart.
    let mut server = Server::start(dir.path(), &["--shards", "2"]);
    let got = drain(&server, sent.len());
    let received: BTreeSet<String> = got.iter().map(|(_, id)| id.clone()).collect();
    let lost: Vec<&String> = sent.difference(&received).collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged sends lost, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );

    // Ack every other message (answered 200), then SIGKILL again.
    let client = server.client();
    let mut acked = BTreeSet::new();
    let mut first_of_each = std::collections::BTreeMap::new();
    for (handler, id) in &got {
        first_of_each.entry(id.clone()).or_insert(handler.clone());
    }
    let to_ack: Vec<(String, String)> = first_of_each
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 2 == 0)
        .map(|(_, (id, handler))| (id.clone(), handler.clone()))
        .collect();
    for chunk in to_ack.chunks(10) {
        let handlers: Vec<String> = chunk.iter().map(|(_, h)| h.clone()).collect();
        let answer = client
            .ack("crash", "g", &handlers, true)
            .expect("ack answered 2xx");
        assert_eq!(answer["success"], chunk.len(), "{answer}");
        acked.extend(chunk.iter().map(|(id, _)| id.clone()));
    }
    server.kill();

    // Phase 3: the unacked ones come back (their leases died with the process); no
    // acked one ever does.
    let server = Server::start(dir.path(), &["--shards", "2"]);
    let expected: BTreeSet<String> = sent.difference(&acked).cloned().collect();
    let got = drain(&server, expected.len());
    let received: BTreeSet<String> = got.iter().map(|(_, id)| id.clone()).collect();
    let returned: Vec<&String> = received.intersection(&acked).collect();
    assert!(
        returned.is_empty(),
        "acked messages came back: {returned:?}"
    );
    let lost: Vec<&String> = expected.difference(&received).collect();
    assert!(lost.is_empty(), "unacked messages lost: {lost:?}");
}
