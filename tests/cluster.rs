//! Cluster mode with the real binary: three `sluice server` processes on 127.0.0.1, each
//! holding a replica of every partition. They become ready (`/readyz` 200, every
//! partition with a leader all three agree on); after SIGKILL of a node that leads, the
//! other two elect new leaders; the killed node, restarted, catches up and is ready.
//!
//! Readiness only: requests to a partition led elsewhere are not forwarded yet, and
//! tenants are not replicated yet (docs/server.md, "Cluster mode"). Every wait polls with
//! a deadline. A single node is ready as soon as it listens.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use support::{raw, Server};

const NODES: u64 = 3;
const SHARDS: &str = "2";
/// Two partitions per shard: each shard ticks and carries several groups.
const PARTITIONS: &str = "partitions=4";
/// Elections take 1-2 s after a leader is lost; this bounds every wait for readiness.
const READY_WAIT: Duration = Duration::from_secs(60);
/// Between two looks at `/readyz`.
const POLL_PAUSE: Duration = Duration::from_millis(50);

/// Each partition's leader as one node reports it: `None` while `/readyz` is not 200.
fn readiness(server: &Server) -> Option<Vec<u64>> {
    let request = b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let (status, text) = raw::exchange(&server.endpoint, request);
    if status != 200 {
        return None;
    }
    let body = raw::body_of(&text);
    let partitions = body["partitions"].as_array()?;
    partitions
        .iter()
        .map(|partition| partition["leader"].as_u64())
        .collect()
}

/// Polls until every node of `nodes` answers `/readyz` 200 and all name the same leader
/// for each partition, none of them in `not`; returns the leaders. Panics at the deadline
/// with what the nodes last said.
fn wait_agreed(nodes: &BTreeMap<u64, Server>, not: Option<u64>) -> Vec<u64> {
    let deadline = Instant::now() + READY_WAIT;
    // Bounded by READY_WAIT.
    loop {
        let last: Vec<Option<Vec<u64>>> = nodes.values().map(readiness).collect();
        if let Some(Some(first)) = last.first() {
            let agreed = last.iter().all(|seen| seen.as_ref() == Some(first));
            let fresh = not.is_none_or(|dead| !first.contains(&dead));
            if agreed && fresh {
                return first.clone();
            }
        }
        assert!(
            Instant::now() < deadline,
            "the nodes did not agree on live leaders within {READY_WAIT:?}: {last:?}"
        );
        std::thread::sleep(POLL_PAUSE);
    }
}

/// A free port on 127.0.0.1 for a cluster address (these need a fixed port).
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("bound").port()
}

fn start_node(dir: &std::path::Path, id: u64, peers: &str, cluster_port: u16) -> Server {
    let listen = format!("127.0.0.1:{cluster_port}");
    let id = id.to_string();
    let args = [
        "--shards",
        SHARDS,
        "--set",
        PARTITIONS,
        "--node-id",
        &id,
        "--cluster-listen",
        &listen,
        "--peers",
        peers,
    ];
    Server::start(&dir.join(format!("node-{id}")), &args)
}

#[test]
fn three_nodes_elect_leaders_and_reelect_after_a_node_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    let ports: BTreeMap<u64, u16> = (1..=NODES).map(|id| (id, free_port())).collect();
    let peers: Vec<String> = ports
        .iter()
        .map(|(id, port)| format!("{id}=127.0.0.1:{port}"))
        .collect();
    let peers = peers.join(",");
    let mut nodes: BTreeMap<u64, Server> = ports
        .iter()
        .map(|(id, port)| (*id, start_node(dir.path(), *id, &peers, *port)))
        .collect();

    let leaders = wait_agreed(&nodes, None);
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
