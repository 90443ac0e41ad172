//! `sluice cluster`: start a local cluster for trying it out, and ask a node how its
//! cluster stands.
//!
//! `sluice cluster local` starts `--nodes` copies of this binary as `sluice server` on
//! 127.0.0.1 with the cluster flags every production node gets (`--node-id`,
//! `--cluster-listen`, the same `--peers` on each), one data directory per node under
//! `--dir`, each node's log in `DIR/nodeN.log`. It waits until every node answers
//! `/readyz` 200, prints the endpoints and how to reach them, then waits for the nodes:
//! Ctrl-C reaches every process of the terminal's group, so it stops them all.
//!
//! `sluice cluster status` prints a node's `/readyz` answer: whether it is ready and each
//! partition's leader as it sees it.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long `cluster local` waits for every node to be ready.
const READY_WAIT: Duration = Duration::from_secs(60);
/// Between two looks at the nodes' `/readyz`.
const POLL_PAUSE: Duration = Duration::from_millis(100);
/// Largest `/readyz` answer read.
const READYZ_BYTES_MAX: u64 = 1 << 20;
/// Connect, read and write limit of one `/readyz` call.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);
/// Most nodes `cluster local` starts.
const NODES_MAX: u16 = 9;

/// What `sluice cluster local` starts (its command-line arguments).
#[derive(clap::Args)]
pub struct Local {
    #[arg(long, default_value = "./sluice-cluster")]
    pub dir: PathBuf,
    #[arg(long, default_value_t = 3)]
    pub nodes: u16,
    #[arg(long, default_value_t = 8081)]
    pub http_base: u16,
    #[arg(long, default_value_t = 9081)]
    pub cluster_base: u16,
    #[arg(long)]
    pub shards: Option<u32>,
    /// A server setting for every node, KEY=VALUE (repeatable; e.g. partitions=6).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub settings: Vec<String>,
}

/// The nodes of a running local cluster; dropping it kills those still running.
struct Nodes {
    children: Vec<(u16, Child)>,
}

impl Drop for Nodes {
    fn drop(&mut self) {
        for (_, child) in &mut self.children {
            if matches!(child.try_wait(), Ok(None)) {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

fn port(base: u16, index: u16) -> Result<u16, String> {
    base.checked_add(index)
        .ok_or_else(|| format!("port {base} + {index} is past 65535"))
}

/// `sluice cluster local`.
pub fn local(local: &Local) -> Result<(), String> {
    if local.nodes == 0 || local.nodes > NODES_MAX {
        return Err(format!("--nodes must be 1..={NODES_MAX}"));
    }
    let exe = std::env::current_exe().map_err(|e| format!("this binary's path: {e}"))?;
    std::fs::create_dir_all(&local.dir).map_err(|e| format!("{}: {e}", local.dir.display()))?;
    let mut peers = Vec::new();
    for index in 0..local.nodes {
        let cluster = port(local.cluster_base, index)?;
        peers.push(format!("{}=127.0.0.1:{cluster}", index + 1));
    }
    let peers = peers.join(",");
    let mut nodes = Nodes {
        children: Vec::new(),
    };
    let mut endpoints = Vec::new();
    for index in 0..local.nodes {
        let id = index + 1;
        let http = SocketAddr::from(([127, 0, 0, 1], port(local.http_base, index)?));
        let cluster = SocketAddr::from(([127, 0, 0, 1], port(local.cluster_base, index)?));
        let child = start_node(&exe, local, id, http, cluster, &peers)?;
        nodes.children.push((id, child));
        endpoints.push((id, http));
    }
    wait_ready(&mut nodes, &endpoints, &local.dir)?;
    println!("a local cluster of {} nodes is ready:", local.nodes);
    for (id, http) in &endpoints {
        let dir = local.dir.join(format!("node{id}"));
        println!("  node {id}: http://{http}  data {}", dir.display());
    }
    let first = local.dir.join("node1");
    println!(
        "try: sluice tenant create demo --data-dir {} --json\n\
         every node answers for every queue; Ctrl-C stops them all.",
        first.display()
    );
    for (id, child) in &mut nodes.children {
        let status = child.wait().map_err(|e| format!("node {id}: {e}"))?;
        eprintln!("node {id} ended: {status}");
    }
    Ok(())
}

fn start_node(
    exe: &Path,
    local: &Local,
    id: u16,
    http: SocketAddr,
    cluster: SocketAddr,
    peers: &str,
) -> Result<Child, String> {
    let data = local.dir.join(format!("node{id}"));
    let log_path = local.dir.join(format!("node{id}.log"));
    let log =
        std::fs::File::create(&log_path).map_err(|e| format!("{}: {e}", log_path.display()))?;
    let mut command = Command::new(exe);
    command
        .arg("server")
        .arg("--data-dir")
        .arg(&data)
        .arg("--http-listen")
        .arg(http.to_string())
        .arg("--node-id")
        .arg(id.to_string())
        .arg("--cluster-listen")
        .arg(cluster.to_string())
        .arg("--peers")
        .arg(peers)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    if let Some(shards) = local.shards {
        command.arg("--shards").arg(shards.to_string());
    }
    for setting in &local.settings {
        command.arg("--set").arg(setting);
    }
    command
        .spawn()
        .map_err(|e| format!("starting node {id}: {e}"))
}

fn wait_ready(
    nodes: &mut Nodes,
    endpoints: &[(u16, SocketAddr)],
    dir: &Path,
) -> Result<(), String> {
    let deadline = Instant::now() + READY_WAIT;
    // Bounded by READY_WAIT.
    loop {
        for (id, child) in &mut nodes.children {
            if let Ok(Some(status)) = child.try_wait() {
                let log = dir.join(format!("node{id}.log"));
                return Err(format!(
                    "node {id} ended ({status}) before the cluster was ready; see {}",
                    log.display()
                ));
            }
        }
        let ready = endpoints
            .iter()
            .all(|(_, http)| matches!(readyz(*http), Ok((200, _))));
        if ready {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "the nodes were not all ready within {READY_WAIT:?}; logs in {}",
                dir.display()
            ));
        }
        std::thread::sleep(POLL_PAUSE);
    }
}

/// `GET /readyz` of the node at `address`: its status code and body.
pub fn readyz(address: SocketAddr) -> Result<(u16, String), String> {
    let mut stream = TcpStream::connect_timeout(&address, CALL_TIMEOUT)
        .map_err(|e| format!("{address}: {e}"))?;
    stream
        .set_read_timeout(Some(CALL_TIMEOUT))
        .and_then(|()| stream.set_write_timeout(Some(CALL_TIMEOUT)))
        .map_err(|e| format!("{address}: {e}"))?;
    let request = format!("GET /readyz HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("{address}: {e}"))?;
    let mut text = String::new();
    stream
        .take(READYZ_BYTES_MAX)
        .read_to_string(&mut text)
        .map_err(|e| format!("{address}: {e}"))?;
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse::<u16>().ok())
        .ok_or_else(|| format!("{address}: not an HTTP answer"))?;
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, body)| body)
        .to_string();
    Ok((status, body))
}
