//! Password logins against the real binary: failed attempts are counted in `/metrics`
//! without tenant names, and a storm of concurrent wrong-password logins leaves `/healthz`
//! and signed reads served (argon2id runs on the password verifiers' threads, and the
//! back-off refuses most of the storm before any check).
//!
//! The storm test measures latency and prints it (p50/p99, storm against idle) for the
//! record; it asserts only that every measured request succeeds, since timings on a shared
//! machine are not a pass/fail criterion. Run it alone to read the figures:
//! `cargo test -p sluice --test auth_server login_storm -- --nocapture`
//! (`SLUICE_SERVER_BIN=target/release/sluice` measures a release build).

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::header::{HeaderValue, HOST};
use http::HeaderMap;
use serde_json::json;
use sluice_server::client::Credentials;
use support::Server;

/// A bound on any single read from the server (a hang fails, never waits).
const READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Concurrent connections sending wrong-password logins during the storm.
const STORM_CONNECTIONS: usize = 24;
/// Requests of each kind measured idle and again during the storm.
const SAMPLES: usize = 400;

/// One keep-alive HTTP/1.1 connection.
struct Connection {
    stream: TcpStream,
    buffer: Vec<u8>,
}

/// A response: status, head (lower-case) and body.
struct Reply {
    status: u16,
    head: String,
    body: String,
}

impl Connection {
    fn open(server: &Server) -> Connection {
        let stream = TcpStream::connect(server.endpoint.trim_start_matches("http://")).unwrap();
        stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
        stream.set_nodelay(true).unwrap();
        Connection {
            stream,
            buffer: Vec::new(),
        }
    }

    /// Sends `request` (a whole HTTP/1.1 request) and reads one response.
    fn exchange(&mut self, request: &[u8]) -> Reply {
        self.stream.write_all(request).unwrap();
        let mut chunk = [0u8; 16 * 1024];
        // Bounded by the read timeout: each pass reads more of one response.
        loop {
            if let Some(reply) = self.take_reply() {
                return reply;
            }
            let n = self
                .stream
                .read(&mut chunk)
                .expect("the server answers in time");
            assert!(n > 0, "the server closed the connection");
            self.buffer.extend_from_slice(&chunk[..n]);
        }
    }

    fn take_reply(&mut self) -> Option<Reply> {
        let text = String::from_utf8_lossy(&self.buffer).to_string();
        let (head, rest) = text.split_once("\r\n\r\n")?;
        let head = head.to_ascii_lowercase();
        let length: usize = head
            .lines()
            .find_map(|line| line.strip_prefix("content-length: "))
            .map_or(0, |value| value.trim().parse().unwrap());
        if rest.len() < length {
            return None;
        }
        let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
        let body = rest[..length].to_string();
        self.buffer.drain(..head.len() + 4 + length);
        Some(Reply { status, head, body })
    }
}

fn now_s() -> i64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    i64::try_from(since.as_secs()).unwrap()
}

/// `GET path`, signed with `credentials` now, as keep-alive HTTP/1.1.
fn signed_get(server: &Server, credentials: &Credentials, path: &str) -> Vec<u8> {
    let authority = server.endpoint.trim_start_matches("http://");
    let mut headers = HeaderMap::new();
    headers.insert(HOST, HeaderValue::from_str(authority).unwrap());
    sluice_http::auth::sign_request(
        &credentials.ak,
        &credentials.sk,
        "GET",
        path,
        None,
        &mut headers,
        b"",
        now_s(),
    );
    let mut text = format!("GET {path} HTTP/1.1\r\n");
    for (name, value) in &headers {
        text.push_str(&format!("{name}: {}\r\n", value.to_str().unwrap()));
    }
    text.push_str("content-length: 0\r\n\r\n");
    text.into_bytes()
}

fn login(name: &str, password: &str) -> Vec<u8> {
    let body = json!({"auth": {
        "identity": {"methods": ["password"],
                     "password": {"user": {"name": name, "password": password}}},
        "scope": {"project": {"name": name}}}})
    .to_string();
    format!(
        "POST /v3/auth/tokens HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
         content-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

const HEALTHZ: &[u8] = b"GET /healthz HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\n\r\n";

/// Starts a server with two shards, `env` settings, and a tenant `name` whose password is
/// `password`.
fn server_with_tenant(
    dir: &std::path::Path,
    name: &str,
    password: &str,
    env: &[(&str, &str)],
) -> Server {
    let server = Server::start_with_env(dir, &["--shards", "2"], env);
    server.cli(&["tenant", "create", name, "--json", "--password", password]);
    server
}

/// The value of the metric line that starts with `prefix`.
fn metric(text: &str, prefix: &str) -> Option<u64> {
    text.lines()
        .find(|line| line.starts_with(prefix))
        .map(|line| line.rsplit(' ').next().unwrap().parse().unwrap())
}

#[test]
fn failed_logins_are_counted_without_tenant_names() {
    // Goal: an operator sees failed and throttled logins in /metrics, and nothing there
    // names the tenant (or the user name a client tried). Method: three wrong passwords,
    // then enough to be throttled, then one right one; scrape.
    let dir = tempfile::tempdir().unwrap();
    let server = server_with_tenant(dir.path(), "confidential-tenant", "right-pass-1", &[]);
    let mut connection = Connection::open(&server);
    let mut statuses = Vec::new();
    for _ in 0..8 {
        let reply = connection.exchange(&login("confidential-tenant", "wrong"));
        statuses.push(reply.status);
    }
    // Five free failures and the sixth that starts the back-off, then 429s.
    assert_eq!(statuses, [401, 401, 401, 401, 401, 401, 429, 429]);
    let unknown = connection.exchange(&login("no-such-user-name", "wrong"));
    assert_eq!(unknown.status, 401);
    let scrape = connection.exchange(b"GET /metrics HTTP/1.1\r\nhost: x\r\n\r\n");
    assert_eq!(scrape.status, 200);
    let text = scrape.body;
    let failed = "sluice_auth_logins_failed_total{reason=";
    assert_eq!(
        metric(&text, &format!("{failed}\"wrong_credentials\"}}")),
        Some(7)
    );
    assert_eq!(metric(&text, &format!("{failed}\"throttled\"}}")), Some(2));
    assert!(!text.contains("confidential-tenant"), "{text}");
    assert!(!text.contains("no-such-user-name"), "{text}");
}

/// Latency figures of one kind of request, milliseconds.
#[derive(Clone, Copy)]
struct Figures {
    p50_ms: f64,
    p99_ms: f64,
}

fn figures(mut samples: Vec<Duration>) -> Figures {
    samples.sort();
    let at = |quantile: f64| {
        let index = ((samples.len() as f64) * quantile).ceil() as usize - 1;
        samples[index.min(samples.len() - 1)].as_secs_f64() * 1000.0
    };
    Figures {
        p50_ms: at(0.50),
        p99_ms: at(0.99),
    }
}

/// Times `SAMPLES` health checks and `SAMPLES` signed reads, alternating, each on a
/// keep-alive connection of its own; every one must answer 200.
fn measure(server: &Server, credentials: &Credentials) -> (Figures, Figures) {
    let path = format!("/v1.0/{}/queues", credentials.project_id);
    let mut health = Connection::open(server);
    let mut reads = Connection::open(server);
    let mut health_samples = Vec::with_capacity(SAMPLES);
    let mut read_samples = Vec::with_capacity(SAMPLES);
    for _ in 0..SAMPLES {
        let started = Instant::now();
        let reply = health.exchange(HEALTHZ);
        health_samples.push(started.elapsed());
        assert_eq!(reply.status, 200, "{}", reply.body);
        let request = signed_get(server, credentials, &path);
        let started = Instant::now();
        let reply = reads.exchange(&request);
        read_samples.push(started.elapsed());
        assert_eq!(reply.status, 200, "{} {}", reply.head, reply.body);
    }
    (figures(health_samples), figures(read_samples))
}

/// Counts of the storm's answers by status.
#[derive(Default)]
struct StormCounts {
    unauthorized: AtomicU64,
    throttled: AtomicU64,
    busy: AtomicU64,
}

/// Runs `measure` while `STORM_CONNECTIONS` threads send wrong-password logins as fast as
/// they are answered; returns the figures and the storm's answers (401, 429, 503).
fn measure_during_storm(
    server: &Server,
    credentials: &Credentials,
    tenant: &str,
) -> ((Figures, Figures), [u64; 3]) {
    let stop = Arc::new(AtomicBool::new(false));
    let counts = Arc::new(StormCounts::default());
    let unexpected = Arc::new(Mutex::new(Vec::new()));
    let (started_tx, started_rx) = std::sync::mpsc::channel();
    let mut threads = Vec::new();
    for _ in 0..STORM_CONNECTIONS {
        let mut connection = Connection::open(server);
        let (stop, counts, unexpected) = (stop.clone(), counts.clone(), unexpected.clone());
        let started_tx = started_tx.clone();
        let request = login(tenant, "wrong-password");
        threads.push(std::thread::spawn(move || {
            let mut first = true;
            // Until the measurement ends: one login per turn.
            while !stop.load(Ordering::Relaxed) {
                let reply = connection.exchange(&request);
                let counter = match reply.status {
                    401 => &counts.unauthorized,
                    429 => &counts.throttled,
                    503 => &counts.busy,
                    _ => {
                        unexpected.lock().unwrap().push(reply.status);
                        &counts.busy
                    }
                };
                counter.fetch_add(1, Ordering::Relaxed);
                if first {
                    started_tx.send(()).unwrap();
                    first = false;
                }
            }
        }));
    }
    // The storm is on once every connection has had an answer.
    for _ in 0..STORM_CONNECTIONS {
        started_rx
            .recv_timeout(READ_TIMEOUT)
            .expect("every storm connection answered");
    }
    let measured = measure(server, credentials);
    stop.store(true, Ordering::Relaxed);
    for thread in threads {
        thread.join().unwrap();
    }
    assert_eq!(
        *unexpected.lock().unwrap(),
        Vec::<u16>::new(),
        "only 401, 429 or 503"
    );
    let answers = [
        counts.unauthorized.load(Ordering::Relaxed),
        counts.throttled.load(Ordering::Relaxed),
        counts.busy.load(Ordering::Relaxed),
    ];
    (measured, answers)
}

fn report(label: &str, idle: (Figures, Figures), storm: (Figures, Figures), answers: [u64; 3]) {
    for (kind, idle, storm) in [
        ("/healthz", idle.0, storm.0),
        ("signed GET", idle.1, storm.1),
    ] {
        println!(
            "login storm [{label}] {kind}: idle p50 {:.2} ms p99 {:.2} ms; storm p50 {:.2} ms \
             p99 {:.2} ms; p99 storm/idle {:.1}x",
            idle.p50_ms,
            idle.p99_ms,
            storm.p50_ms,
            storm.p99_ms,
            storm.p99_ms / idle.p99_ms
        );
    }
    println!(
        "login storm [{label}] storm answers: {} x 401, {} x 429, {} x 503",
        answers[0], answers[1], answers[2]
    );
}

/// One storm: a fresh server with `env` settings, measured idle and during the storm.
fn storm(label: &str, env: &[(&str, &str)]) -> [u64; 3] {
    let dir = tempfile::tempdir().unwrap();
    let server = server_with_tenant(dir.path(), "storm", "storm-pass-1", env);
    let credentials = server.client_for("storm").credentials;
    let idle = measure(&server, &credentials);
    let (during, answers) = measure_during_storm(&server, &credentials, "storm");
    report(label, idle, during, answers);
    answers
}

#[test]
fn login_storm_keeps_health_and_signed_reads_served() {
    // Goal: concurrent wrong-password logins do not starve other requests. Method: measure
    // /healthz and a signed GET idle, then during a storm of wrong-password logins from
    // 24 connections, with the standard back-off and again with the back-off lifted (every
    // attempt then runs argon2id: the verifiers' worst case). The limits are lifted through
    // the environment, which a build without them ignores, so `SLUICE_SERVER_BIN` can point
    // at an older build for comparison. Figures are printed, not judged.
    let standard = storm("standard back-off", &[]);
    let lifted = storm(
        "back-off lifted",
        &[
            ("SLUICE_LOGIN_FAILURES_PER_TENANT_MAX", "1000000000"),
            ("SLUICE_LOGIN_FAILURES_PER_ADDRESS_MAX", "1000000000"),
        ],
    );
    assert!(standard[1] > 0, "the back-off refused part of the storm");
    assert!(lifted[0] > 0, "passwords were checked");
}
