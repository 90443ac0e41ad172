//! A cluster of real `sluice server` processes on 127.0.0.1: three nodes, each holding a
//! replica of every partition, started and waited for until they agree on every
//! partition's leader. Every wait polls with a deadline.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::{raw, Server};

pub const NODES: u64 = 3;
pub const SHARDS: &str = "2";
/// Two partitions per shard: each shard ticks and carries several groups.
pub const PARTITIONS: &str = "partitions=4";
/// Elections take 1-2 s after a leader is lost; this bounds every wait for readiness.
pub const READY_WAIT: Duration = Duration::from_secs(60);
/// Between two looks at `/readyz`.
pub const POLL_PAUSE: Duration = Duration::from_millis(50);

/// Each partition's leader as one node reports it: `None` while `/readyz` is not 200.
pub fn readiness(server: &Server) -> Option<Vec<u64>> {
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
pub fn wait_agreed(nodes: &BTreeMap<u64, Server>, not: Option<u64>) -> Vec<u64> {
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
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("bound").port()
}

pub fn start_node(dir: &std::path::Path, id: u64, peers: &str, cluster_port: u16) -> Server {
    start_node_with(dir, id, peers, cluster_port, &[])
}

/// [`start_node`] with `extra` arguments (`--set` knobs).
pub fn start_node_with(
    dir: &std::path::Path,
    id: u64,
    peers: &str,
    cluster_port: u16,
    extra: &[&str],
) -> Server {
    let listen = format!("127.0.0.1:{cluster_port}");
    let id = id.to_string();
    let mut args = vec![
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
    args.extend_from_slice(extra);
    Server::start(&dir.join(format!("node-{id}")), &args)
}

/// Polls `attempt` until it answers `Some`, for at most [`READY_WAIT`]; panics with `what`.
pub fn poll<T>(what: &str, mut attempt: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + READY_WAIT;
    // Bounded by READY_WAIT.
    loop {
        if let Some(done) = attempt() {
            return done;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not within {READY_WAIT:?}"
        );
        std::thread::sleep(POLL_PAUSE);
    }
}

/// Starts three nodes and waits until they agree on every partition's leader; returns
/// the nodes and the leaders.
pub fn start_cluster(dir: &std::path::Path) -> (BTreeMap<u64, Server>, Vec<u64>) {
    let (nodes, leaders, _) = start_cluster_with_peers(dir);
    (nodes, leaders)
}

/// The `--peers` list and each node's cluster port: what restarting a node takes.
pub type Peers = (String, BTreeMap<u64, u16>);

/// [`start_cluster`], with the [`Peers`] to restart a node with.
pub fn start_cluster_with_peers(dir: &std::path::Path) -> (BTreeMap<u64, Server>, Vec<u64>, Peers) {
    start_cluster_with(dir, &[])
}

/// [`start_cluster_with_peers`], every node started with `extra` arguments.
pub fn start_cluster_with(
    dir: &std::path::Path,
    extra: &[&str],
) -> (BTreeMap<u64, Server>, Vec<u64>, Peers) {
    start_cluster_each(dir, |_| extra.iter().map(|a| (*a).to_string()).collect())
}

/// [`start_cluster_with`], node `id` started with the arguments `extra(id)`.
pub fn start_cluster_each(
    dir: &std::path::Path,
    extra: impl Fn(u64) -> Vec<String>,
) -> (BTreeMap<u64, Server>, Vec<u64>, Peers) {
    let ports: BTreeMap<u64, u16> = (1..=NODES).map(|id| (id, free_port())).collect();
    let peers: Vec<String> = ports
        .iter()
        .map(|(id, port)| format!("{id}=127.0.0.1:{port}"))
        .collect();
    let peers = peers.join(",");
    let nodes: BTreeMap<u64, Server> = ports
        .iter()
        .map(|(id, port)| {
            let extra = extra(*id);
            let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
            (*id, start_node_with(dir, *id, &peers, *port, &extra))
        })
        .collect();
    let leaders = wait_agreed(&nodes, None);
    (nodes, leaders, (peers, ports))
}
