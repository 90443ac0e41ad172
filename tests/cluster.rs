//! Cluster mode with the real binary: three `sluice server` processes on 127.0.0.1, each
//! holding a replica of every partition.
//!
//! - Readiness: they become ready (`/readyz` 200, every partition with a leader all three
//!   agree on); after SIGKILL of a node that leads, the other two elect new leaders; the
//!   killed node, restarted, catches up and is ready; then every partition's lead goes
//!   to its preferred node (leaders spread over the nodes). A single node is ready as
//!   soon as it listens.
//! - Any node serves any request (forwarding to the partition's leader): the admin secret
//!   and tenants follow partition 0 on every node; a tenant created with the CLI through a
//!   node that does not lead partition 0, a queue and group created through one node and
//!   visible through every other, sends through every node (each 2xx send's ids kept),
//!   receives and acks through every node until every kept id was received: none lost.
//!
//! - Under load (a producer and a consumer thread through every live node), SIGKILL the
//!   leader of partition 0, restart it, then SIGKILL another leader and restart it: every
//!   message sent with a 2xx is received, none is received again after its ack succeeded,
//!   and every replica ends with the same term, commit and applied index per partition
//!   (`/readyz`), so the restarted nodes caught up.
//!
//! - A node whose data directory was deleted, started again under its id, rebuilds its
//!   replicas from the leaders' logs, learns the admin secret again and serves every
//!   message.
//!
//! - The same after the leaders' retention removed log segments (1 MiB segments, a
//!   snapshot every 100 records, a one-minute queue retention): the rebuilt node gets
//!   Raft snapshots (its logs then start past 0) and serves what is sent afterwards.
//!
//! - Online migration: four nodes, the groups starting on nodes 1-3
//!   (`--initial-voters`); under load, `sluice cluster move 1 4` moves every partition's
//!   replica from node 1 to node 4 (learner, catch-up, one joint change each); node 1 is
//!   then killed and the load goes on; `sluice cluster remove-node 2` takes node 2's
//!   replicas off and `add-node 2` puts them back. Every message sent with a 2xx is
//!   received, none comes back after its ack succeeded, and the remaining replicas agree.
//!
//! - Kafka with `--kafka-brokers`: Metadata through any node names the three nodes as
//!   brokers and each partition's leader as `/readyz` reports it; a record produced
//!   through each partition's leader and through a node that forwards is stored there.
//!
//! Every wait polls with a deadline; nothing sleeps for correctness.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sluice_server::client::{Client, Credentials};
use sluice_server::datadir;
use support::cluster::{
    free_port, poll, readiness, start_cluster, start_cluster_each, start_cluster_with,
    start_cluster_with_peers, start_node, start_node_with, wait_agreed, Peers, NODES, PARTITIONS,
    POLL_PAUSE, SHARDS,
};
use support::kafka::KafkaConnection;
use support::{raw, Server};

#[test]
fn three_nodes_elect_leaders_and_reelect_after_a_node_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    let (mut nodes, leaders, (peers, ports)) = start_cluster_with_peers(dir.path());
    assert_eq!(leaders.len(), 4, "one leader per partition: {leaders:?}");
    assert!(
        leaders.iter().all(|leader| ports.contains_key(leader)),
        "every leader is a node of the cluster: {leaders:?}"
    );

    // Kill the leader of partition 0: its partitions elect new leaders among the two left.
    let victim = leaders[0];
    let mut killed = nodes.remove(&victim).expect("the leader is a node");
    killed.kill();
    let after = wait_agreed(&nodes, Some(victim));
    assert_ne!(after[0], victim);

    // Restarted on its data directory, it rejoins and learns the current leaders.
    let restarted = start_node(dir.path(), victim, &peers, ports[&victim]);
    nodes.insert(victim, restarted);
    let rejoined = wait_agreed(&nodes, None);
    assert_eq!(rejoined.len(), 4);

    // The leads spread: each partition goes back to its preferred node (the nodes take
    // the partitions in turn), the restarted one included, once it caught up.
    poll("the leaders spread over the nodes", || {
        (wait_agreed(&nodes, None) == [1, 2, 3, 1]).then_some(())
    });
}

#[test]
fn a_single_node_is_ready_once_it_listens() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--shards", SHARDS, "--set", PARTITIONS]);
    // No election to wait for: each partition is a group of one that elected itself.
    assert_eq!(readiness(&server), Some(vec![1, 1, 1, 1]));
    let request =
        b"POST /readyz HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    let (status, _) = raw::exchange(&server.endpoint, request);
    assert_eq!(status, 405);
}

/// Creates a tenant with the CLI against `server`'s data directory (its admin secret);
/// retried while the node answers 503 (an election), by a fresh name each time so that
/// a create that took effect behind a 503 does not make the retry fail.
fn create_tenant(server: &Server) -> Credentials {
    let binary = env!("CARGO_BIN_EXE_sluice");
    let mut attempt = 0;
    poll("a tenant created through the CLI", || {
        attempt += 1;
        let name = format!("fwd{attempt}");
        let output = std::process::Command::new(binary)
            .args(["tenant", "create", &name, "--json", "--data-dir"])
            .arg(&server.data_dir)
            .output()
            .expect("the CLI runs");
        if !output.status.success() {
            eprintln!("tenant create: {}", String::from_utf8_lossy(&output.stderr));
            return None;
        }
        let created: Value = serde_json::from_slice(&output.stdout).expect("JSON");
        Some(Credentials {
            project_id: created["project_id"].as_str()?.to_string(),
            ak: created["ak"].as_str()?.to_string(),
            sk: created["sk"].as_str()?.to_string(),
        })
    })
}

/// The message ids of a send's 2xx answer; `None` for any other answer (retriable).
fn send_once(client: &Client, path: &str, tag: &str) -> Option<Vec<String>> {
    let messages: Vec<Value> = (0..3)
        .map(|n| json!({"body": {"tag": tag, "n": n}}))
        .collect();
    let body = json!({"messages": messages, "return_id": true});
    let answer = client.call("POST", path, Some(&body)).ok()?;
    if !(200..300).contains(&answer.status) {
        assert_eq!(
            answer.status, 503,
            "only a retriable refusal: {:?}",
            answer.body
        );
        return None;
    }
    let ids = answer.body["messages"].as_array()?;
    Some(
        ids.iter()
            .map(|m| m["id"].as_str().expect("an id").to_string())
            .collect(),
    )
}

/// One receive and ack through `client`; the ids received and acked.
fn drain_once(client: &Client, receive: &str, ack: &str) -> Vec<String> {
    let Ok(got) = client.call("GET", receive, None) else {
        return Vec::new();
    };
    let Some(messages) = got.body.as_array().filter(|_| got.status == 200) else {
        assert_eq!(got.status, 503, "only a retriable refusal: {:?}", got.body);
        return Vec::new();
    };
    let handlers: Vec<Value> = messages
        .iter()
        .map(|m| json!({"handler": m["handler"], "status": "success"}))
        .collect();
    if handlers.is_empty() {
        return Vec::new();
    }
    let acked = client.call("POST", ack, Some(&json!({"message": handlers})));
    match acked {
        Ok(answer) if answer.body["success"].as_u64() == Some(messages.len() as u64) => messages
            .iter()
            .map(|m| {
                m["message"]["message_id"]
                    .as_str()
                    .expect("an id")
                    .to_string()
            })
            .collect(),
        // Not acked: the messages come back after their visibility and are received again.
        _ => Vec::new(),
    }
}

#[test]
fn any_node_serves_any_request_and_no_acknowledged_message_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let (nodes, leaders) = start_cluster(dir.path());
    // The admin secret is partition 0's: every node learns it into its data directory.
    poll("every node holding partition 0's admin secret", || {
        let all: Vec<datadir::Secrets> = nodes
            .values()
            .map(|node| datadir::load_secrets(&node.data_dir).ok())
            .collect::<Option<_>>()?;
        all.windows(2).all(|w| w[0] == w[1]).then_some(())
    });
    // Every node serves the web console, with its security policy.
    for (id, node) in &nodes {
        let request = b"GET /console/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
        let (status, text) = raw::exchange(&node.endpoint, request);
        assert_eq!(status, 200, "node {id}: {text}");
        let lower = text.to_ascii_lowercase();
        assert!(
            lower.contains("content-security-policy: default-src 'none'")
                && text.contains("console.js"),
            "node {id}: {text}"
        );
    }
    // A node that does not lead partition 0 (so tenant creation is forwarded).
    let (&creator, _) = nodes
        .iter()
        .find(|(id, _)| **id != leaders[0])
        .expect("three nodes");
    let credentials = create_tenant(&nodes[&creator]);
    let clients: BTreeMap<u64, Client> = nodes
        .iter()
        .map(|(id, node)| (*id, Client::new(&node.endpoint, credentials.clone())))
        .collect();
    let base = format!("/v1.0/{}", credentials.project_id);

    // A queue and group through the creator; visible through every node.
    let creating = &clients[&creator];
    let (queue, group) = queue_and_group(creating, "orders");
    for (id, client) in &clients {
        poll(&format!("the queue visible through node {id}"), || {
            client
                .queue_id("orders")
                .ok()
                .filter(|found| *found == queue)
        });
    }

    // Sends through every node: each 2xx send's ids are kept.
    let send_path = format!("{base}/queues/{queue}/messages");
    let mut sent: BTreeSet<String> = BTreeSet::new();
    for round in 0..4 {
        for (id, client) in &clients {
            let tag = format!("node{id}-round{round}");
            let ids = poll(&format!("a send through node {id}"), || {
                send_once(client, &send_path, &tag)
            });
            sent.extend(ids);
        }
    }
    assert_eq!(sent.len(), 4 * 3 * NODES as usize, "every id distinct");

    // Receive and ack through every node in turn until every kept id was received.
    let receive = format!(
        "{base}/queues/{queue}/groups/{group}/messages?max_msgs=10&time_wait=1&ack_wait=30"
    );
    let ack = format!("{base}/queues/{queue}/groups/{group}/ack");
    let mut received: BTreeSet<String> = BTreeSet::new();
    let mut turn = clients.values().cycle();
    poll("every sent message received", || {
        let client = turn.next().expect("cycles");
        received.extend(drain_once(client, &receive, &ack));
        sent.is_subset(&received).then_some(())
    });
    let lost: Vec<&String> = sent.difference(&received).collect();
    assert!(lost.is_empty(), "lost: {lost:?}");

    // /metrics shows each partition's Raft progress and leader, and the forwarding the
    // requests above took (receives visit partitions led by other nodes).
    for node in nodes.values() {
        let text = metrics_text(node);
        let leader = metric(&text, "sluice_raft_leader{partition=\"0\"}");
        assert!(leader.is_some_and(|id| id >= 1.0), "{text}");
        assert!(metric(&text, "sluice_raft_applied_index{partition=\"0\"}").is_some());
    }
    // Published every second: poll until the shards published the calls.
    poll("forwarded calls counted on /metrics", || {
        let total: f64 = nodes
            .values()
            .filter_map(|node| {
                metric(
                    &metrics_text(node),
                    "sluice_forwarded_calls_total{outcome=\"served\"}",
                )
            })
            .sum();
        (total > 0.0).then_some(())
    });
}

/// A node's `/metrics` text.
fn metrics_text(server: &Server) -> String {
    let request = b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let (status, text) = raw::exchange(&server.endpoint, request);
    assert_eq!(status, 200, "{text}");
    text
}

/// The value of the sample `series` (name and labels, exactly as printed) in `text`.
fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
}

/// What the load threads of the kill test saw.
#[derive(Default)]
struct Load {
    /// Ids of messages whose send was answered 2xx.
    sent: BTreeSet<String>,
    /// Ids received at least once.
    received: BTreeSet<String>,
    /// Ids whose ack was answered as a success.
    acked: BTreeSet<String>,
    /// Ids received again after their ack succeeded (must stay empty).
    returned_after_ack: Vec<String>,
    /// Sends and receives answered 2xx, to see the load progress.
    answered: u64,
}

/// The kill test's shared state: the live nodes' endpoints, the load's record, and the
/// flags that stop its producer and its consumer.
#[derive(Default)]
struct Shared {
    endpoints: std::sync::Mutex<BTreeMap<u64, String>>,
    load: std::sync::Mutex<Load>,
    stop_sending: std::sync::atomic::AtomicBool,
    stop_receiving: std::sync::atomic::AtomicBool,
}

impl Shared {
    /// A client of the `turn`-th live node (rotating).
    fn client(&self, credentials: &Credentials, turn: usize) -> Option<Client> {
        let endpoints = self.endpoints.lock().unwrap();
        let endpoint = endpoints.values().nth(turn % endpoints.len().max(1))?;
        Some(Client::new(endpoint, credentials.clone()))
    }

    fn answered(&self) -> u64 {
        self.load.lock().unwrap().answered
    }
}

/// Sends through the live nodes in turn until told to stop; keeps each 2xx send's ids.
fn produce(shared: &Shared, credentials: &Credentials, path: &str) {
    let mut turn = 0;
    while !shared
        .stop_sending
        .load(std::sync::atomic::Ordering::Acquire)
    {
        turn += 1;
        let Some(client) = shared.client(credentials, turn) else {
            continue;
        };
        if let Some(ids) = send_once(&client, path, &format!("load-{turn}")) {
            let mut load = shared.load.lock().unwrap();
            load.sent.extend(ids);
            load.answered += 1;
        }
    }
}

/// Receives and acks through the live nodes in turn until told to stop; records what it
/// received and acked, and any message received again after its ack succeeded.
fn consume(shared: &Shared, credentials: &Credentials, receive: &str, ack: &str) {
    let mut turn = 0;
    while !shared
        .stop_receiving
        .load(std::sync::atomic::Ordering::Acquire)
    {
        turn += 1;
        let Some(client) = shared.client(credentials, turn) else {
            continue;
        };
        let Ok(got) = client.call("GET", receive, None) else {
            continue;
        };
        let Some(messages) = got.body.as_array().filter(|_| got.status == 200) else {
            assert_eq!(got.status, 503, "only a retriable refusal: {:?}", got.body);
            continue;
        };
        let ids: Vec<String> = messages
            .iter()
            .map(|m| {
                m["message"]["message_id"]
                    .as_str()
                    .expect("an id")
                    .to_string()
            })
            .collect();
        {
            let mut load = shared.load.lock().unwrap();
            load.answered += 1;
            for id in &ids {
                if load.acked.contains(id) {
                    load.returned_after_ack.push(id.clone());
                }
            }
            load.received.extend(ids.iter().cloned());
        }
        if ids.is_empty() {
            continue;
        }
        let handlers: Vec<Value> = messages
            .iter()
            .map(|m| json!({"handler": m["handler"], "status": "success"}))
            .collect();
        let acked = client.call("POST", ack, Some(&json!({"message": handlers})));
        if let Ok(answer) = acked {
            if answer.body["success"].as_u64() == Some(ids.len() as u64) {
                shared.load.lock().unwrap().acked.extend(ids);
            }
        }
    }
}

/// Waits until the load answered `more` requests after now (it makes progress).
fn wait_progress(shared: &Shared, more: u64, what: &str) {
    let start = shared.answered();
    poll(what, || (shared.answered() >= start + more).then_some(()));
}

/// A NORMAL queue named `name` with a group `g`, created through `client`; their ids.
/// Each create is retried while refused (a 503 at an election); one that took effect
/// behind a 503 is found by name.
fn queue_and_group(client: &Client, name: &str) -> (String, String) {
    let queue = poll("the queue created", || {
        let _ = client.create_queue(name, "NORMAL", None);
        client.queue_id(name).ok()
    });
    let group = poll("the group created", || {
        let _ = client.create_group(name, "g");
        client.group_id(&queue, "g").ok()
    });
    (queue, group)
}

/// Polls until every node reports the same term, commit and applied index for each
/// partition, and has applied all it knows committed (Raft's log matching makes equal
/// logs of that): the replicas caught up with their leaders.
fn wait_caught_up(nodes: &BTreeMap<u64, Server>, what: &str) {
    poll(what, || {
        let all: Vec<Vec<(u64, u64, u64)>> = nodes.values().map(progress).collect::<Option<_>>()?;
        let caught_up = all.windows(2).all(|pair| pair[0] == pair[1])
            && all[0].iter().all(|(_, commit, applied)| commit == applied);
        caught_up.then_some(())
    });
}

/// Each partition's (term, commit, applied) as `server` reports them; `None` unless 200.
fn progress(server: &Server) -> Option<Vec<(u64, u64, u64)>> {
    let request = b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let (status, text) = raw::exchange(&server.endpoint, request);
    if status != 200 {
        return None;
    }
    let body = raw::body_of(&text);
    body["partitions"]
        .as_array()?
        .iter()
        .map(|p| {
            Some((
                p["term"].as_u64()?,
                p["commit"].as_u64()?,
                p["applied"].as_u64()?,
            ))
        })
        .collect()
}

/// Kills `victim` (SIGKILL) while the load runs, waits for the others to elect leaders
/// without it and for the load to go on, then restarts it and waits until all agree.
fn kill_and_restart(
    dir: &std::path::Path,
    nodes: &mut BTreeMap<u64, Server>,
    shared: &Shared,
    (peers, ports): &Peers,
    victim: u64,
) {
    shared.endpoints.lock().unwrap().remove(&victim);
    let mut killed = nodes.remove(&victim).expect("a live node");
    killed.kill();
    wait_agreed(nodes, Some(victim));
    wait_progress(
        shared,
        20,
        &format!("the load going on without node {victim}"),
    );
    let restarted = start_node(dir, victim, peers, ports[&victim]);
    let endpoint = restarted.endpoint.clone();
    nodes.insert(victim, restarted);
    wait_agreed(nodes, None);
    shared.endpoints.lock().unwrap().insert(victim, endpoint);
    wait_progress(
        shared,
        20,
        &format!("the load going on with node {victim} back"),
    );
}

#[test]
fn under_load_killing_two_leaders_loses_no_acknowledged_message_and_replicas_catch_up() {
    let dir = tempfile::tempdir().unwrap();
    let (mut nodes, leaders, peers) = start_cluster_with_peers(dir.path());
    let credentials = create_tenant(&nodes[&1]);
    let client = Client::new(&nodes[&1].endpoint, credentials.clone());
    let (queue, group) = queue_and_group(&client, "load");
    let base = format!("/v1.0/{}", credentials.project_id);
    let send = format!("{base}/queues/{queue}/messages");
    // A short visibility: a message whose ack was lost with a node comes back soon.
    let receive = format!(
        "{base}/queues/{queue}/groups/{group}/messages?max_msgs=10&time_wait=1&ack_wait=15"
    );
    let ack = format!("{base}/queues/{queue}/groups/{group}/ack");
    let shared = Shared::default();
    *shared.endpoints.lock().unwrap() = nodes
        .iter()
        .map(|(id, node)| (*id, node.endpoint.clone()))
        .collect();

    std::thread::scope(|scope| {
        scope.spawn(|| produce(&shared, &credentials, &send));
        scope.spawn(|| consume(&shared, &credentials, &receive, &ack));
        wait_progress(&shared, 30, "the load starting");
        // The leader of partition 0 first; then, once it is back, another node.
        let first = leaders[0];
        kill_and_restart(dir.path(), &mut nodes, &shared, &peers, first);
        let now = wait_agreed(&nodes, None);
        let second = now
            .iter()
            .copied()
            .find(|leader| *leader != first)
            .unwrap_or(if first == 1 { 2 } else { 1 });
        kill_and_restart(dir.path(), &mut nodes, &shared, &peers, second);
        shared
            .stop_sending
            .store(true, std::sync::atomic::Ordering::Release);
        poll("every message sent with a 2xx received", || {
            let load = shared.load.lock().unwrap();
            load.sent.is_subset(&load.received).then_some(())
        });
        shared
            .stop_receiving
            .store(true, std::sync::atomic::Ordering::Release);
    });

    let load = shared.load.lock().unwrap();
    eprintln!(
        "load: {} sent with a 2xx, {} received, {} acked, {} answered requests",
        load.sent.len(),
        load.received.len(),
        load.acked.len(),
        load.answered
    );
    assert!(
        load.sent.len() > 100,
        "the load sent {} messages",
        load.sent.len()
    );
    let lost: Vec<&String> = load.sent.difference(&load.received).collect();
    assert!(lost.is_empty(), "lost: {lost:?}");
    assert!(
        load.returned_after_ack.is_empty(),
        "received again after a successful ack: {:?}",
        load.returned_after_ack
    );
    // The restarted nodes caught up with their leaders.
    wait_caught_up(&nodes, "every replica caught up with its leader");
}

#[test]
fn a_node_whose_data_directory_was_lost_rebuilds_from_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let (mut nodes, _, (peers, ports)) = start_cluster_with_peers(dir.path());
    let credentials = create_tenant(&nodes[&1]);
    let client = Client::new(&nodes[&1].endpoint, credentials.clone());
    let (queue, group) = queue_and_group(&client, "rebuilt");
    let base = format!("/v1.0/{}", credentials.project_id);
    let send_path = format!("{base}/queues/{queue}/messages");
    let mut sent: BTreeSet<String> = BTreeSet::new();
    for round in 0..10 {
        let ids = poll("a send", || {
            send_once(&client, &send_path, &format!("r{round}"))
        });
        sent.extend(ids);
    }

    // Node 3 loses its disk: killed, its data directory deleted, started again empty.
    let victim = 3;
    let mut killed = nodes.remove(&victim).expect("node 3");
    killed.kill();
    std::fs::remove_dir_all(&killed.data_dir).expect("the data directory is deleted");
    let rebuilt = start_node(dir.path(), victim, &peers, ports[&victim]);
    nodes.insert(victim, rebuilt);
    wait_agreed(&nodes, None);
    wait_caught_up(&nodes, "the rebuilt replica caught up with its leaders");

    // It learned the admin secret and the tenants again, and serves every message.
    poll("the rebuilt node holding the admin secret", || {
        let mine = datadir::load_secrets(&nodes[&victim].data_dir).ok()?;
        (datadir::load_secrets(&nodes[&1].data_dir).ok()? == mine).then_some(())
    });
    let through_rebuilt = Client::new(&nodes[&victim].endpoint, credentials);
    let receive = format!(
        "{base}/queues/{queue}/groups/{group}/messages?max_msgs=10&time_wait=1&ack_wait=30"
    );
    let ack = format!("{base}/queues/{queue}/groups/{group}/ack");
    let mut received: BTreeSet<String> = BTreeSet::new();
    poll("every message received through the rebuilt node", || {
        received.extend(drain_once(&through_rebuilt, &receive, &ack));
        sent.is_subset(&received).then_some(())
    });
}

/// Knobs that make retention remove segments soon: 1 MiB segments, an engine snapshot
/// every 100 records, a one-minute queue retention.
const COMPACTING: [&str; 6] = [
    "--set",
    "segment_bytes_max=1048576",
    "--set",
    "snapshot_every_records=100",
    "--set",
    "queue_retention_minutes=1",
];
/// The queue retention above plus the time for the engines' ticks to act on it.
const RETENTION_WAIT: Duration = Duration::from_secs(150);

/// The base offsets of the log segments in each partition directory of `server`.
fn segment_bases(server: &Server) -> Vec<Vec<u64>> {
    let partitions = server.data_dir.join("partitions");
    let Ok(dirs) = std::fs::read_dir(&partitions) else {
        return Vec::new();
    };
    let mut all = Vec::new();
    for dir in dirs.flatten() {
        let mut bases: Vec<u64> = std::fs::read_dir(dir.path())
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| {
                let name = entry.file_name().into_string().ok()?;
                name.strip_suffix(".log")?.parse().ok()
            })
            .collect();
        bases.sort_unstable();
        all.push(bases);
    }
    all
}

/// One send of ten messages of about 8 KiB through `client`; their ids, `None` unless 2xx.
fn send_padded(client: &Client, path: &str, tag: &str) -> Option<Vec<String>> {
    let pad = "x".repeat(8000);
    let messages: Vec<Value> = (0..10)
        .map(|n| json!({"body": {"tag": tag, "n": n, "pad": pad}}))
        .collect();
    let answer = client
        .call(
            "POST",
            path,
            Some(&json!({"messages": messages, "return_id": true})),
        )
        .ok()?;
    if !(200..300).contains(&answer.status) {
        return None;
    }
    let ids = answer.body["messages"].as_array()?;
    ids.iter()
        .map(|m| Some(m["id"].as_str()?.to_string()))
        .collect()
}

#[test]
fn a_node_whose_data_directory_was_lost_rebuilds_from_snapshots_after_retention() {
    // Goal: a node rebuilt from an empty data directory catches up although its leaders'
    // retention removed the start of their logs (Raft snapshots: engine state and log
    // records pulled in chunks over the cluster transport). Method: three nodes with the
    // COMPACTING knobs; about 4 MiB of sends; node 3 killed and its directory deleted;
    // wait until node 1's logs no longer start at 0 (retention ran); start node 3 empty,
    // wait until every replica agrees; node 3's logs start past 0 too (it installed
    // snapshots) and it serves the messages sent after.
    let dir = tempfile::tempdir().unwrap();
    let (mut nodes, _, (peers, ports)) = start_cluster_with(dir.path(), &COMPACTING);
    let credentials = create_tenant(&nodes[&1]);
    let client = Client::new(&nodes[&1].endpoint, credentials.clone());
    let (queue, group) = queue_and_group(&client, "compacted");
    let base = format!("/v1.0/{}", credentials.project_id);
    let send_path = format!("{base}/queues/{queue}/messages");
    for round in 0..50 {
        poll("a padded send", || {
            send_padded(&client, &send_path, &format!("old{round}"))
        });
    }

    let victim = 3;
    let mut killed = nodes.remove(&victim).expect("node 3");
    killed.kill();
    std::fs::remove_dir_all(&killed.data_dir).expect("the data directory is deleted");
    let deadline = Instant::now() + RETENTION_WAIT;
    // Bounded by RETENTION_WAIT.
    while !segment_bases(&nodes[&1])
        .iter()
        .any(|b| b.first() > Some(&0))
    {
        assert!(
            Instant::now() < deadline,
            "retention removed no segment within {RETENTION_WAIT:?}: {:?}",
            segment_bases(&nodes[&1])
        );
        std::thread::sleep(POLL_PAUSE);
    }

    let rebuilt = start_node_with(dir.path(), victim, &peers, ports[&victim], &COMPACTING);
    nodes.insert(victim, rebuilt);
    wait_agreed(&nodes, None);
    wait_caught_up(&nodes, "the rebuilt replica caught up with its leaders");
    let bases = segment_bases(&nodes[&victim]);
    assert!(
        bases.iter().any(|b| b.first() > Some(&0)),
        "the rebuilt node's logs all start at 0 (no snapshot installed): {bases:?}"
    );

    let mut sent: BTreeSet<String> = BTreeSet::new();
    for round in 0..5 {
        let ids = poll("a send", || {
            send_once(&client, &send_path, &format!("new{round}"))
        });
        sent.extend(ids);
    }
    let through_rebuilt = Client::new(&nodes[&victim].endpoint, credentials);
    let receive = format!(
        "{base}/queues/{queue}/groups/{group}/messages?max_msgs=10&time_wait=1&ack_wait=30"
    );
    let ack = format!("{base}/queues/{queue}/groups/{group}/ack");
    let mut received: BTreeSet<String> = BTreeSet::new();
    poll(
        "every new message received through the rebuilt node",
        || {
            received.extend(drain_once(&through_rebuilt, &receive, &ack));
            sent.is_subset(&received).then_some(())
        },
    );
}

/// Runs `sluice cluster ARGS --data-dir DIR` and answers the last JSON document it printed
/// (the partitions' configurations; `status` prints `/readyz` first), or panics with what
/// it printed.
fn cluster_cli(server: &Server, args: &[&str]) -> Value {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("cluster")
        .args(args)
        .arg("--data-dir")
        .arg(&server.data_dir)
        .output()
        .expect("the CLI runs");
    assert!(
        output.status.success(),
        "sluice cluster {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::Deserializer::from_slice(&output.stdout)
        .into_iter::<Value>()
        .last()
        .expect("a JSON document")
        .expect("JSON")
}

/// Every partition's voters in a `sluice cluster` answer, sorted.
fn voters_of(answer: &Value) -> Vec<Vec<u64>> {
    answer["partitions"]
        .as_array()
        .expect("partitions")
        .iter()
        .map(|p| {
            assert!(p["outgoing"].as_array().is_some_and(Vec::is_empty), "{p}");
            p["voters"]
                .as_array()
                .expect("voters")
                .iter()
                .map(|v| v.as_u64().expect("an id"))
                .collect()
        })
        .collect()
}

#[test]
fn under_load_a_move_puts_every_partition_on_a_new_node_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let ports: BTreeMap<u64, u16> = (1..=4).map(|id| (id, free_port())).collect();
    let peers: Vec<String> = ports
        .iter()
        .map(|(id, port)| format!("{id}=127.0.0.1:{port}"))
        .collect();
    let peers = peers.join(",");
    let extra = ["--initial-voters", "1,2,3"];
    let mut nodes: BTreeMap<u64, Server> = ports
        .iter()
        .map(|(id, port)| (*id, start_node_with(dir.path(), *id, &peers, *port, &extra)))
        .collect();
    let spare = nodes.remove(&4).expect("node 4");
    wait_agreed(&nodes, None);
    let credentials = create_tenant(&nodes[&1]);
    let client = Client::new(&nodes[&1].endpoint, credentials.clone());
    let (queue, group) = queue_and_group(&client, "moved");
    let base = format!("/v1.0/{}", credentials.project_id);
    let send = format!("{base}/queues/{queue}/messages");
    let receive = format!(
        "{base}/queues/{queue}/groups/{group}/messages?max_msgs=10&time_wait=1&ack_wait=15"
    );
    let ack = format!("{base}/queues/{queue}/groups/{group}/ack");
    let shared = Shared::default();
    *shared.endpoints.lock().unwrap() = nodes
        .iter()
        .map(|(id, node)| (*id, node.endpoint.clone()))
        .collect();

    std::thread::scope(|scope| {
        scope.spawn(|| produce(&shared, &credentials, &send));
        scope.spawn(|| consume(&shared, &credentials, &receive, &ack));
        wait_progress(&shared, 30, "the load starting");
        // The move, through node 2, while the load runs through nodes 1-3.
        let moved = cluster_cli(&nodes[&2], &["move", "1", "4"]);
        assert_eq!(voters_of(&moved), vec![vec![2, 3, 4]; 4], "{moved}");
        nodes.insert(4, spare);
        shared
            .endpoints
            .lock()
            .unwrap()
            .insert(4, nodes[&4].endpoint.clone());
        wait_progress(&shared, 20, "the load going on after the move");
        // Node 1 holds no replica now: killing it costs nothing.
        shared.endpoints.lock().unwrap().remove(&1);
        nodes.remove(&1).expect("node 1").kill();
        wait_agreed(&nodes, Some(1));
        wait_progress(&shared, 20, "the load going on without node 1");
        // Node 2's replicas go too (its leads hand over first).
        let removed = cluster_cli(&nodes[&4], &["remove-node", "2"]);
        assert_eq!(voters_of(&removed), vec![vec![3, 4]; 4], "{removed}");
        shared.endpoints.lock().unwrap().remove(&2);
        wait_progress(&shared, 20, "the load going on with nodes 3 and 4");
        // And come back: node 2 joins every group again (learner, catch-up, voter).
        let added = cluster_cli(&nodes[&3], &["add-node", "2"]);
        assert_eq!(voters_of(&added), vec![vec![2, 3, 4]; 4], "{added}");
        shared
            .endpoints
            .lock()
            .unwrap()
            .insert(2, nodes[&2].endpoint.clone());
        wait_progress(&shared, 20, "the load going on with node 2 back");
        shared
            .stop_sending
            .store(true, std::sync::atomic::Ordering::Release);
        poll("every message sent with a 2xx received", || {
            let load = shared.load.lock().unwrap();
            load.sent.is_subset(&load.received).then_some(())
        });
        shared
            .stop_receiving
            .store(true, std::sync::atomic::Ordering::Release);
    });

    let load = shared.load.lock().unwrap();
    eprintln!(
        "load: {} sent with a 2xx, {} received, {} acked",
        load.sent.len(),
        load.received.len(),
        load.acked.len()
    );
    let lost: Vec<&String> = load.sent.difference(&load.received).collect();
    assert!(lost.is_empty(), "lost: {lost:?}");
    assert!(
        load.returned_after_ack.is_empty(),
        "received again after a successful ack: {:?}",
        load.returned_after_ack
    );
    wait_caught_up(&nodes, "nodes 2, 3 and 4 agree");
    let status = cluster_cli(&nodes[&3], &["status"]);
    assert_eq!(voters_of(&status), vec![vec![2, 3, 4]; 4], "{status}");
    // The leader's view of its replicas' lag (the console's cluster page): each of the
    // three voters named, none behind once they agree.
    for partition in status["partitions"].as_array().expect("partitions") {
        if partition["at_leader"] == true {
            let lag: Vec<(u64, u64)> = partition["lag"]
                .as_array()
                .expect("a lag list at the leader")
                .iter()
                .map(|r| (r["node"].as_u64().unwrap(), r["behind"].as_u64().unwrap()))
                .collect();
            assert_eq!(
                lag.iter().map(|(node, _)| *node).collect::<Vec<_>>(),
                [2, 3, 4]
            );
            assert!(lag.iter().all(|(_, behind)| *behind < 100), "{lag:?}");
        }
    }
}

#[test]
fn kafka_metadata_and_find_coordinator_name_every_node_and_each_partitions_leader() {
    use kafka_protocol::messages::create_topics_request::CreatableTopic;
    use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::{
        CreateTopicsRequest, CreateTopicsResponse, FindCoordinatorRequest, FindCoordinatorResponse,
        MetadataRequest, MetadataResponse, ProduceRequest, ProduceResponse, TopicName,
    };
    use kafka_protocol::protocol::StrBytes;
    use sluice_node::kafka_groups::{group_key, group_partition};
    use sluice_tcp::kafka::{encode_records, plain_record};

    let dir = tempfile::tempdir().unwrap();
    let kafka_ports: BTreeMap<u64, u16> = (1..=NODES).map(|id| (id, free_port())).collect();
    let address = |id: u64| format!("127.0.0.1:{}", kafka_ports[&id]);
    let brokers: Vec<String> = (1..=NODES)
        .map(|id| format!("{id}={}", address(id)))
        .collect();
    let brokers = brokers.join(",");
    let (nodes, _, _) = start_cluster_each(dir.path(), |id| {
        vec![
            "--kafka-listen".to_string(),
            address(id),
            "--kafka-brokers".to_string(),
            brokers.clone(),
        ]
    });
    let credentials = create_tenant(&nodes[&1]);
    let topic = TopicName(StrBytes::from_static_str("placed"));
    let mut via_two = KafkaConnection::login(&address(2), &credentials.ak, &credentials.sk);
    let create = CreateTopicsRequest::default()
        .with_topics(vec![CreatableTopic::default()
            .with_name(topic.clone())
            .with_num_partitions(-1)
            .with_replication_factor(-1)])
        .with_timeout_ms(30_000);
    let created: CreateTopicsResponse = via_two.call(5, &create);
    assert_eq!(created.topics[0].error_code, 0, "{created:?}");

    // Metadata through node 2 agrees with the leaders every node reports (polled: a
    // follower's view may trail an election by a moment).
    let metadata = MetadataRequest::default().with_topics(Some(vec![
        MetadataRequestTopic::default().with_name(Some(topic.clone())),
    ]));
    let leaders = poll("Kafka Metadata naming the leaders /readyz reports", || {
        let answer: MetadataResponse = via_two.call(12, &metadata);
        let leaders = wait_agreed(&nodes, None);
        let named: Vec<u64> = answer.topics[0]
            .partitions
            .iter()
            .map(|p| u64::try_from(p.leader_id.0).unwrap())
            .collect();
        let brokers: BTreeMap<u64, String> = answer
            .brokers
            .iter()
            .map(|b| {
                (
                    u64::try_from(b.node_id.0).unwrap(),
                    format!("{}:{}", b.host, b.port),
                )
            })
            .collect();
        assert_eq!(
            brokers,
            (1..=NODES).map(|id| (id, address(id))).collect(),
            "every node is a broker at its Kafka address"
        );
        for partition in &answer.topics[0].partitions {
            let mut replicas: Vec<i32> = partition.replica_nodes.iter().map(|b| b.0).collect();
            replicas.sort_unstable();
            assert_eq!(replicas, vec![1, 2, 3], "every node holds a replica");
        }
        (named == leaders).then_some(leaders)
    });

    // FindCoordinator through node 2 names, for each group, the leader of the partition
    // its state lives on.
    let groups: Vec<String> = (0..8).map(|g| format!("group-{g}")).collect();
    let find = FindCoordinatorRequest::default()
        .with_key_type(0)
        .with_coordinator_keys(
            groups
                .iter()
                .map(|g| StrBytes::from_string(g.clone()))
                .collect(),
        );
    poll(
        "FindCoordinator naming each group's partition leader",
        || {
            let answer: FindCoordinatorResponse = via_two.call(4, &find);
            let leaders = wait_agreed(&nodes, None);
            let partitions = u32::try_from(leaders.len()).unwrap();
            let mut agreed = true;
            for (group, coordinator) in groups.iter().zip(&answer.coordinators) {
                assert_eq!(coordinator.error_code, 0, "{coordinator:?}");
                let key = group_key(&credentials.project_id, group);
                let partition = usize::try_from(group_partition(&key, partitions)).unwrap();
                let leader = leaders[partition];
                let at = format!("{}:{}", coordinator.host, coordinator.port);
                agreed &= u64::try_from(coordinator.node_id.0).unwrap() == leader;
                agreed &= at == address(leader);
            }
            agreed.then_some(())
        },
    );

    // A record produced at each partition's leader, and one through node 2 (which
    // forwards where it does not lead), are stored: offsets 0 and 1 of each partition.
    let batch = |value: &str| {
        let record = plain_record(0, Some(bytes::Bytes::from(value.to_string())));
        encode_records(&[record]).unwrap()
    };
    let produce = |connection: &mut KafkaConnection, partition: usize, value: &str| {
        let request = ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(30_000)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(topic.clone())
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(i32::try_from(partition).unwrap())
                    .with_records(Some(batch(value)))])]);
        let answer: ProduceResponse = connection.call(9, &request);
        let partition = &answer.responses[0].partition_responses[0];
        assert_eq!(partition.error_code, 0, "{partition:?}");
        partition.base_offset
    };
    for (partition, leader) in leaders.iter().enumerate() {
        let mut at_leader =
            KafkaConnection::login(&address(*leader), &credentials.ak, &credentials.sk);
        assert_eq!(produce(&mut at_leader, partition, "at the leader"), 0);
        assert_eq!(produce(&mut via_two, partition, "through node 2"), 1);
    }
}
