//! The server's edge against the real binary over real sockets: what it leaves on disk
//! (modes), when it can be reached (start-up), `/metrics` exposure, connection fairness
//! under a flood, and strict HTTP/1.1 framing. docs/server.md describes each behaviour.

mod support;

use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{raw, Server};

/// A port that was free a moment ago: bound on port 0 and released.
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// Every entry under `root` (itself included) whose mode is not 0700 (directories) or
/// 0600 (files), with its mode in octal.
fn wrong_modes(root: &Path) -> Vec<(PathBuf, String)> {
    let mut wrong = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    // Bounded by the directory tree, which the test keeps small.
    while let Some(path) = pending.pop() {
        let metadata = std::fs::symlink_metadata(&path).unwrap();
        let mode = metadata.permissions().mode() & 0o7777;
        let wanted = if metadata.is_dir() { 0o700 } else { 0o600 };
        if mode != wanted {
            wrong.push((path.clone(), format!("{mode:o}")));
        }
        if metadata.is_dir() {
            for entry in std::fs::read_dir(&path).unwrap() {
                pending.push(entry.unwrap().path());
            }
        }
    }
    wrong
}

#[test]
fn data_dir_and_every_file_in_it_are_private_whatever_the_umask() {
    // Goal: the data directory is 0700 and every directory and file the server creates
    // in it 0700/0600, set by the server itself, not by the umask. Method: start the real
    // server under umask 000 (so any mode left to the umask shows as world-writable) on a
    // data directory it must create (a missing child of a temporary directory), with two
    // shards; create a queue and a group and send (segment and index files), check every
    // entry; then SIGTERM (snapshots at shutdown) and check again.
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("data");
    let mut server = Server::start_with_umask(&dir, &["--shards", "2"], "000");
    let client = server.client();
    client.create_queue("private", "NORMAL", None).unwrap();
    client.create_group("private", "g").unwrap();
    client
        .send("private", &[json!({"secret": 1}), json!("two")])
        .unwrap();
    let segments = std::fs::read_dir(dir.join("partitions").join("p0000"))
        .unwrap()
        .count();
    assert!(segments > 0, "the partition holds files");
    assert_eq!(wrong_modes(&dir), vec![], "while running");
    assert!(server.terminate().success());
    assert_eq!(wrong_modes(&dir), vec![], "after a graceful stop");
}

#[test]
fn the_cli_reaches_a_server_the_moment_its_port_opens() {
    // Goal: a client that finds the port open also finds the server's address in
    // server.json (written before the port accepts), never a missing or stale one.
    // Method: 50 runs on one data directory, each on a new port (bound on port 0 and
    // released): start the real server, connect until the port accepts, at once run
    // `sluice tenant create NAME --data-dir D --json`, which reads server.json, and check
    // it succeeded; then SIGKILL the server, which leaves its server.json behind naming a
    // port that the next run does not use.
    const RUNS: usize = 50;
    const START_BOUND: Duration = Duration::from_secs(60);
    let dir = tempfile::tempdir().unwrap();
    for run in 0..RUNS {
        let listen = format!("127.0.0.1:{}", free_port());
        let mut server = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(Server::args(
                dir.path(),
                &["--http-listen", &listen, "--shards", "1"],
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + START_BOUND;
        // Bounded by START_BOUND: a refused connection returns at once.
        while TcpStream::connect(&listen).is_err() {
            assert!(
                server.try_wait().unwrap().is_none(),
                "run {run}: the server exited"
            );
            assert!(
                Instant::now() < deadline,
                "run {run}: the port never opened"
            );
            std::thread::yield_now();
        }
        let name = format!("tenant{run}");
        let created = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["tenant", "create", &name, "--json", "--data-dir"])
            .arg(dir.path())
            .output()
            .unwrap();
        server.kill().unwrap();
        server.wait().unwrap();
        assert!(
            created.status.success(),
            "run {run}: {}",
            String::from_utf8_lossy(&created.stderr)
        );
        let tenant: Value = serde_json::from_slice(&created.stdout).unwrap();
        assert!(tenant["project_id"].is_string(), "run {run}: {tenant}");
    }
}

/// `GET /metrics` (or `method`) on `endpoint`: the status and the raw response.
fn scrape(endpoint: &str, method: &str) -> (u16, String) {
    let request = format!("{method} /metrics HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
    raw::exchange(endpoint, request.as_bytes())
}

#[test]
fn metrics_answer_get_only() {
    // Goal: /metrics is read-only: other methods get 405 in the DMS envelope. Method: a
    // real server; GET, then POST, PUT and DELETE with raw requests.
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--shards", "1"]);
    let (status, text) = scrape(&server.endpoint, "GET");
    assert_eq!(status, 200, "{text}");
    for method in ["POST", "PUT", "DELETE"] {
        let (status, text) = scrape(&server.endpoint, method);
        assert_eq!(
            (status, raw::body_of(&text)["error_code"].as_str()),
            (405, Some("10249050")),
            "{method}: {text}"
        );
    }
}

#[test]
fn metrics_label_tenants_by_project_id_unless_names_are_asked_for() {
    // Goal: a scrape does not name tenants unless the operator asks: queue and group
    // values carry the tenant's project id; with --metrics-tenant-names also its name.
    // Method: a tenant with a distinctive name, a queue and a group; scrape; restart with
    // the flag and scrape again.
    let dir = tempfile::tempdir().unwrap();
    let name = "acme-hidden-name";
    let mut server = Server::start(dir.path(), &["--shards", "1"]);
    server.cli(&["tenant", "create", name, "--json"]);
    let client = server.client_for(name);
    let project = client.credentials.project_id.clone();
    client.create_queue("orders", "NORMAL", None).unwrap();
    client.create_group("orders", "g").unwrap();
    let (status, text) = scrape(&server.endpoint, "GET");
    assert_eq!(status, 200);
    let backlog = text
        .lines()
        .find(|l| l.starts_with("sluice_group_backlog_messages{"))
        .unwrap_or_else(|| panic!("no backlog gauge in {text}"));
    assert!(
        backlog.contains(&format!("project_id=\"{project}\"")),
        "{backlog}"
    );
    assert!(!text.contains(name), "a tenant name in the scrape: {text}");
    assert!(server.terminate().success());

    let server = Server::start(dir.path(), &["--shards", "1", "--metrics-tenant-names"]);
    let (_, text) = scrape(&server.endpoint, "GET");
    let backlog = text
        .lines()
        .find(|l| l.starts_with("sluice_group_backlog_messages{"))
        .unwrap_or_else(|| panic!("no backlog gauge in {text}"));
    assert!(
        backlog.contains(&format!("tenant=\"{name}\"")),
        "names when asked: {backlog}"
    );
}

#[test]
fn metrics_listener_of_its_own() {
    // Goal: with --metrics-listen, /metrics is served on that address only: the API's
    // address answers it 404, and the metrics address serves nothing else. Method: a real
    // server with --metrics-listen 127.0.0.1:0; the bound address is in its first line.
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        dir.path(),
        &["--shards", "2", "--metrics-listen", "127.0.0.1:0"],
    );
    let metrics = server.banner[0]
        .split("metrics on ")
        .nth(1)
        .and_then(|rest| rest.split([')', ' ', ';']).next())
        .unwrap_or_else(|| panic!("no metrics address in {:?}", server.banner[0]))
        .to_string();
    // Both shards answer on the API port; scrape a few times so each is asked.
    for _ in 0..4 {
        let (status, text) = scrape(&server.endpoint, "GET");
        assert_eq!(
            (status, raw::body_of(&text)["error_code"].as_str()),
            (404, Some("10249040")),
            "{text}"
        );
    }
    let (status, text) = scrape(&metrics, "GET");
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("sluice_http_requests_total"), "{text}");
    let (status, text) = scrape(&metrics, "POST");
    assert_eq!(status, 405, "{text}");
    let (status, text) = raw::exchange(
        &metrics,
        b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    );
    assert_eq!(status, 404, "{text}");
    let listed = server
        .client()
        .call(
            "GET",
            &format!("{}/queues", support::base(&server.client())),
            None,
        )
        .unwrap();
    assert_eq!(
        listed.status, 200,
        "the API still answers: {:?}",
        listed.body
    );
}

const LOCALHOST: [u8; 4] = [127, 0, 0, 1];
const FLOODER: [u8; 4] = [127, 0, 0, 2];
const HEALTHZ_KEEP_ALIVE: &[u8] = b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n";

/// Opens a connection from `from` and asks `/healthz` on it, leaving it open: the status
/// (200: admitted and now held; 503: refused; 0: closed without an answer), the raw
/// response and the connection (None when it could not even connect).
fn hold(endpoint: &str, from: [u8; 4]) -> (u16, String, Option<TcpStream>) {
    use std::io::Write;
    let Ok(mut stream) = raw::connect_from(endpoint, from.into()) else {
        return (0, String::new(), None);
    };
    if stream.write_all(HEALTHZ_KEEP_ALIVE).is_err() {
        let (status, text) = raw::read_response(&mut stream);
        return (status, text, None);
    }
    let (status, text) = raw::read_response(&mut stream);
    (status, text, Some(stream))
}

/// Asks `/healthz` then a signed `GET .../queues` on one connection from `from`; returns
/// both statuses and the round trip of the health check.
fn served_from(server: &Server, from: [u8; 4]) -> (u16, u16, Duration) {
    use std::io::Write;
    let client = server.client();
    let mut stream = raw::connect_from(&server.endpoint, from.into()).unwrap();
    let started = Instant::now();
    stream.write_all(HEALTHZ_KEEP_ALIVE).unwrap();
    let (health, _) = raw::read_response(&mut stream);
    let took = started.elapsed();
    let path = format!("{}/queues", support::base(&client));
    let signed = raw::signed_raw(
        &server.endpoint,
        &client.credentials,
        "GET",
        &path,
        b"",
        true,
    );
    stream.write_all(&signed).unwrap();
    let (listed, text) = raw::read_response(&mut stream);
    assert!(
        listed != 200 || raw::body_of(&text)["queues"].is_array(),
        "{text}"
    );
    (health, listed, took)
}

/// The median of `samples`.
fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

#[test]
fn a_flooding_address_is_capped_while_others_are_served() {
    // Goal: one address cannot take a shard's connections: past its own limit it is
    // refused with a 503 in the DMS envelope and closed at once, while another address
    // still gets /healthz and signed requests served. Method: one shard, at most 64
    // connections, 16 per address; from 127.0.0.2 open 200 connections, each asking
    // /healthz and held open when answered; then, while a second thread keeps opening
    // connections from 127.0.0.2 (400 more), 127.0.0.1 asks /healthz and a signed request
    // 20 times. Health-check round trips before and during the flood are printed.
    const ATTEMPTS: usize = 200;
    const FLOOD_MORE: usize = 400;
    const SAMPLES: usize = 20;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        dir.path(),
        &[
            "--shards",
            "1",
            "--set",
            "connections_per_shard_max=64",
            "--set",
            "connections_reserved_per_shard=8",
            "--set",
            "connections_per_address_max=16",
            "--set",
            "accepts_per_address_per_s=100000",
            "--set",
            "accepts_per_address_burst=100000",
        ],
    );
    let idle: Vec<Duration> = (0..SAMPLES)
        .map(|_| served_from(&server, LOCALHOST))
        .map(|(health, listed, took)| {
            assert_eq!((health, listed), (200, 200));
            took
        })
        .collect();
    let mut held = Vec::new();
    let mut refused = Vec::new();
    for _ in 0..ATTEMPTS {
        match hold(&server.endpoint, FLOODER) {
            (200, _, Some(stream)) => held.push(stream),
            (status, text, _) => refused.push((status, text)),
        }
    }
    assert_eq!(held.len(), 16, "admitted from the flooding address");
    assert_eq!(refused.len(), ATTEMPTS - 16);
    let enveloped = refused
        .iter()
        .filter(|(status, text)| *status == 503 && raw::body_of(text)["error_code"] == "10249503")
        .count();
    assert!(enveloped > 0, "no 503 envelope among {refused:?}");
    let endpoint = server.endpoint.clone();
    let flood = std::thread::spawn(move || {
        (0..FLOOD_MORE)
            .filter(|_| hold(&endpoint, FLOODER).0 != 200)
            .count()
    });
    let during: Vec<Duration> = (0..SAMPLES)
        .map(|_| served_from(&server, LOCALHOST))
        .map(|(health, listed, took)| {
            assert_eq!((health, listed), (200, 200), "127.0.0.1 during the flood");
            took
        })
        .collect();
    let refused_more = flood.join().unwrap();
    assert_eq!(refused_more, FLOOD_MORE, "the flooder stays refused");
    eprintln!(
        "flood: 127.0.0.2 admitted {}, refused {} ({} with the 503 envelope read) and then \
         {refused_more} more; 127.0.0.1 /healthz median {:?} idle, {:?} during the flood",
        held.len(),
        refused.len(),
        enveloped,
        median(idle),
        median(during)
    );
}

#[test]
fn the_reserve_is_kept_from_a_flooding_address() {
    // Goal: the last slots of a shard's connection cap go only to addresses that
    // authenticated or hold almost nothing, so a flooder whose own limit is high cannot
    // shut out health checks or known clients. Method: one shard, 32 connections of which
    // 8 reserved, 1000 per address. 127.0.0.3 makes a signed request (and keeps that
    // connection); 127.0.0.2 opens connections until refused (23: the 24 general slots
    // less 127.0.0.3's); then
    // 127.0.0.1 gets /healthz and a signed request, 127.0.0.3 (authenticated) four more
    // connections, and 127.0.0.4 (never authenticated) two, its third refused.
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        dir.path(),
        &[
            "--shards",
            "1",
            "--set",
            "connections_per_shard_max=32",
            "--set",
            "connections_reserved_per_shard=8",
            "--set",
            "connections_per_address_max=1000",
            "--set",
            "accepts_per_address_per_s=100000",
            "--set",
            "accepts_per_address_burst=100000",
        ],
    );
    let known = [127, 0, 0, 3];
    let stranger = [127, 0, 0, 4];
    let client = server.client();
    let mut known_first = raw::connect_from(&server.endpoint, known.into()).unwrap();
    let path = format!("{}/queues", support::base(&client));
    let signed = raw::signed_raw(
        &server.endpoint,
        &client.credentials,
        "GET",
        &path,
        b"",
        false,
    );
    std::io::Write::write_all(&mut known_first, &signed).unwrap();
    assert_eq!(raw::read_response(&mut known_first).0, 200);

    let mut held = Vec::new();
    // Bounded: the cap is 32.
    let refusal = loop {
        assert!(held.len() <= 32, "never refused");
        match hold(&server.endpoint, FLOODER) {
            (200, _, Some(stream)) => held.push(stream),
            (status, text, _) => break (status, text),
        }
    };
    assert_eq!(held.len(), 23, "the flooder took the general slots only");
    assert!(refusal.0 == 503 || refusal.0 == 0, "{refusal:?}");

    let (health, listed, _) = served_from(&server, LOCALHOST);
    assert_eq!(
        (health, listed),
        (200, 200),
        "a health check and a signed request"
    );
    for n in 0..4 {
        let (status, text, stream) = hold(&server.endpoint, known);
        assert_eq!(status, 200, "authenticated address, connection {n}: {text}");
        held.push(stream.unwrap());
    }
    for n in 0..2 {
        let (status, text, stream) = hold(&server.endpoint, stranger);
        assert_eq!(status, 200, "light address, connection {n}: {text}");
        held.push(stream.unwrap());
    }
    let (status, text, _) = hold(&server.endpoint, stranger);
    assert!(
        status == 503 || status == 0,
        "a third from 127.0.0.4: {text}"
    );
}

#[test]
fn connections_arriving_too_fast_from_one_address_are_refused() {
    // Goal: an address opening connections faster than its accept rate is refused (503)
    // past its burst, and another address is not. Method: one shard, 1 connection per
    // second per address with a burst of 5; from 127.0.0.2 open and close connections
    // (each asks /healthz) until refused, at most 20; then 127.0.0.1 asks /healthz.
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        dir.path(),
        &[
            "--shards",
            "1",
            "--set",
            "accepts_per_address_per_s=1",
            "--set",
            "accepts_per_address_burst=5",
        ],
    );
    let mut admitted = 0;
    let mut refusal = None;
    for _ in 0..20 {
        let (status, text, _) = hold(&server.endpoint, FLOODER);
        if status == 200 {
            admitted += 1;
        } else {
            refusal = Some((status, text));
            break;
        }
    }
    let (status, text) = refusal.expect("refused within 20 connections");
    // The burst, plus what the bucket refilled (1/s) while the test ran.
    assert!((5..=8).contains(&admitted), "admitted {admitted}");
    if status != 0 {
        assert_eq!(status, 503, "{text}");
        assert!(text.contains("too fast"), "{text}");
    }
    let (health, listed, _) = served_from(&server, LOCALHOST);
    assert_eq!((health, listed), (200, 200));
}

#[test]
fn strict_framing_refuses_bare_lf_and_transfer_codings_other_than_chunked() {
    // Goal: requests whose framing a proxy could read differently are refused with 400
    // in the DMS envelope, and well-framed ones (bare LF inside a body included) are
    // served. Method: raw requests over real sockets to a real server: a head with bare
    // LF line ends, a bare LF in the second request of a keep-alive connection, bare LF
    // in a chunk-size line, Transfer-Encoding "gzip, chunked" and "gzip", both
    // Transfer-Encoding and Content-Length; then a chunked and a sized body holding LF.
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--shards", "1"]);
    let refused = |request: &[u8], why: &str| {
        let (status, text) = raw::exchange(&server.endpoint, request);
        let body = raw::body_of(&text);
        assert_eq!(
            (status, body["error_code"].as_str()),
            (400, Some("10249001")),
            "{why}: {text}"
        );
        body["error_msg"].as_str().unwrap().to_string()
    };
    let message = refused(b"GET /healthz HTTP/1.1\nhost: x\n\n", "bare LF head");
    assert!(message.contains("bare LF"), "{message}");
    refused(
        b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\n\r\n",
        "one bare LF",
    );
    let message = refused(
        b"POST /healthz HTTP/1.1\r\nhost: x\r\ntransfer-encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
        "gzip, chunked",
    );
    assert!(message.contains("gzip, chunked"), "{message}");
    refused(
        b"POST /healthz HTTP/1.1\r\nhost: x\r\ntransfer-encoding: gzip\r\ncontent-length: 2\r\n\r\nab",
        "gzip",
    );
    refused(
        b"POST /healthz HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\ncontent-length: 5\r\n\r\n0\r\n\r\n",
        "both lengths",
    );
    refused(
        b"POST /healthz HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n3\na\nb\r\n0\r\n\r\n",
        "bare LF chunk line",
    );

    // Keep-alive: the first request is served, the second (bare LF) refused.
    let mut stream = raw::connect(&server.endpoint);
    use std::io::Write;
    stream.write_all(HEALTHZ_KEEP_ALIVE).unwrap();
    assert_eq!(raw::read_response(&mut stream).0, 200);
    stream
        .write_all(b"GET /healthz HTTP/1.1\nhost: x\n\n")
        .unwrap();
    let (status, text) = raw::read_response(&mut stream);
    assert_eq!(status, 400, "{text}");

    // Well framed, with LF inside the bodies: served.
    let (status, text) = raw::exchange(
        &server.endpoint,
        b"POST /healthz HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n3\r\na\nb\r\n0\r\n\r\n",
    );
    assert_eq!(status, 200, "{text}");
    let mut stream = raw::connect(&server.endpoint);
    stream
        .write_all(b"POST /healthz HTTP/1.1\r\nhost: x\r\ncontent-length: 3\r\n\r\na\nb")
        .unwrap();
    assert_eq!(raw::read_response(&mut stream).0, 200);
    stream.write_all(HEALTHZ_KEEP_ALIVE).unwrap();
    assert_eq!(
        raw::read_response(&mut stream).0,
        200,
        "the next request on it"
    );
}
