//! The Sluice side of the end-to-end benchmarks: a signed HTTP/1.1 keep-alive client of the
//! DMS API (one request in flight per connection, no pool, no task per request, so the
//! load generator stays cheap beside the server on a 2-core machine), the shapes of its
//! answers, and a `sluice server` started on a fresh data directory. `http-load` and
//! `mq-compare` both drive Sluice through this module.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use http::header::{HeaderValue, CONTENT_TYPE, HOST};
use http::HeaderMap;
use serde::Deserialize;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Messages per send request allowed by the DMS API.
pub const SEND_BATCH_MAX: u32 = 10;
/// Largest response the client accepts (a receive of 10 x 512 KB, with slack).
const RESPONSE_BYTES_MAX: usize = 8 << 20;

#[derive(Deserialize, Clone)]
pub struct Tenant {
    pub project_id: String,
    pub name: String,
    pub ak: String,
    pub sk: String,
}

/// Signs and serialises requests for one tenant.
pub struct Signer {
    pub tenant: Tenant,
    pub host: String,
}

impl Signer {
    /// Writes the request head and body into `out`.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        query: Option<&str>,
        body: &[u8],
        out: &mut Vec<u8>,
    ) {
        let mut headers = HeaderMap::new();
        headers.insert(
            HOST,
            HeaderValue::from_str(&self.host).expect("host is a header value"),
        );
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let now_s = i64::try_from(unix_now().as_secs()).expect("seconds fit i64");
        sluice_http::auth::sign_request(
            &self.tenant.ak,
            &self.tenant.sk,
            method,
            path,
            query,
            &mut headers,
            body,
            now_s,
        );
        out.clear();
        out.extend_from_slice(method.as_bytes());
        out.push(b' ');
        out.extend_from_slice(path.as_bytes());
        if let Some(query) = query {
            out.push(b'?');
            out.extend_from_slice(query.as_bytes());
        }
        out.extend_from_slice(b" HTTP/1.1\r\n");
        for (name, value) in &headers {
            out.extend_from_slice(name.as_str().as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(format!("content-length: {}\r\n\r\n", body.len()).as_bytes());
        out.extend_from_slice(body);
    }
}

pub fn unix_now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
}

/// One keep-alive connection with one request in flight.
pub struct Conn {
    address: SocketAddr,
    stream: Option<TcpStream>,
    read_buf: Vec<u8>,
    write_buf: Vec<u8>,
}

/// A response's status and (de-chunked) body.
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Conn {
    pub fn new(address: SocketAddr) -> Conn {
        Conn {
            address,
            stream: None,
            read_buf: Vec::with_capacity(64 << 10),
            write_buf: Vec::new(),
        }
    }

    pub async fn call(
        &mut self,
        signer: &Signer,
        method: &str,
        path: &str,
        query: Option<&str>,
        body: &[u8],
    ) -> Result<Response, String> {
        signer.request(method, path, query, body, &mut self.write_buf);
        let result = self.exchange().await;
        if result.is_err() {
            self.stream = None;
        }
        result
    }

    /// A call whose 2xx answer is JSON (or empty: `Value::Null`); other statuses are errors.
    pub async fn call_json(
        &mut self,
        signer: &Signer,
        method: &str,
        path: &str,
        body: &Value,
    ) -> Result<Value, String> {
        let bytes = if body.is_null() {
            Vec::new()
        } else {
            body.to_string().into_bytes()
        };
        let response = self.call(signer, method, path, None, &bytes).await?;
        if !(200..300).contains(&response.status) {
            let text = String::from_utf8_lossy(&response.body);
            return Err(format!("{method} {path}: HTTP {}: {text}", response.status));
        }
        if response.body.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&response.body)
            .map_err(|e| format!("{method} {path}: bad JSON: {e}"))
    }

    async fn exchange(&mut self) -> Result<Response, String> {
        if self.stream.is_none() {
            let stream = TcpStream::connect(self.address)
                .await
                .map_err(|e| format!("connect: {e}"))?;
            stream
                .set_nodelay(true)
                .map_err(|e| format!("nodelay: {e}"))?;
            self.stream = Some(stream);
            self.read_buf.clear();
        }
        let stream = self.stream.as_mut().expect("connected above");
        stream
            .write_all(&self.write_buf)
            .await
            .map_err(|e| format!("write: {e}"))?;
        loop {
            if let Some((response, consumed, close)) = parse_response(&self.read_buf)? {
                self.read_buf.drain(..consumed);
                if close {
                    self.stream = None;
                }
                return Ok(response);
            }
            if self.read_buf.len() > RESPONSE_BYTES_MAX {
                return Err(format!("response over {RESPONSE_BYTES_MAX} bytes"));
            }
            let stream = self.stream.as_mut().expect("connected above");
            let mut chunk = [0u8; 64 << 10];
            let read = stream
                .read(&mut chunk)
                .await
                .map_err(|e| format!("read: {e}"))?;
            if read == 0 {
                return Err("connection closed by the server".to_string());
            }
            self.read_buf.extend_from_slice(&chunk[..read]);
        }
    }
}

/// A complete response at the start of `buf`: (response, bytes used, connection closes).
pub fn parse_response(buf: &[u8]) -> Result<Option<(Response, usize, bool)>, String> {
    let Some(head_end) = find(buf, b"\r\n\r\n") else {
        return Ok(None);
    };
    let head = std::str::from_utf8(&buf[..head_end]).map_err(|_| "non-UTF-8 head")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().expect("split yields at least one item");
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let mut content_bytes: Option<usize> = None;
    let mut chunked = false;
    let mut close = false;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            return Err(format!("bad header line {line:?}"));
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            content_bytes = Some(value.parse().map_err(|_| "bad content-length")?);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.eq_ignore_ascii_case("chunked");
        } else if name.eq_ignore_ascii_case("connection") {
            close = value.eq_ignore_ascii_case("close");
        }
    }
    let body_start = head_end + 4;
    if chunked {
        return Ok(parse_chunked(&buf[body_start..])?
            .map(|(body, used)| (Response { status, body }, body_start + used, close)));
    }
    let content_bytes = content_bytes.unwrap_or(0);
    if buf.len() < body_start + content_bytes {
        return Ok(None);
    }
    let body = buf[body_start..body_start + content_bytes].to_vec();
    Ok(Some((
        Response { status, body },
        body_start + content_bytes,
        close,
    )))
}

/// A complete chunked body (no trailers) at the start of `buf`: (body, bytes used).
fn parse_chunked(buf: &[u8]) -> Result<Option<(Vec<u8>, usize)>, String> {
    let mut body = Vec::new();
    let mut position = 0;
    // Bounded by the buffer: every pass consumes at least the size line.
    loop {
        let Some(line_end) = find(&buf[position..], b"\r\n") else {
            return Ok(None);
        };
        let line =
            std::str::from_utf8(&buf[position..position + line_end]).map_err(|_| "bad chunk")?;
        let size_hex = line
            .split(';')
            .next()
            .expect("split yields one item")
            .trim();
        let chunk_bytes = usize::from_str_radix(size_hex, 16).map_err(|_| "bad chunk size")?;
        let data_start = position + line_end + 2;
        if buf.len() < data_start + chunk_bytes + 2 {
            return Ok(None);
        }
        if chunk_bytes == 0 {
            return Ok(Some((body, data_start + 2)));
        }
        body.extend_from_slice(&buf[data_start..data_start + chunk_bytes]);
        position = data_start + chunk_bytes + 2;
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

/// A send answer whose every result has `state` 0 (stored).
pub fn send_all_stored(body: &[u8]) -> bool {
    let Ok(answer) = serde_json::from_slice::<Value>(body) else {
        return false;
    };
    answer["messages"]
        .as_array()
        .is_some_and(|results| results.iter().all(|result| result["state"] == 0))
}

/// One message of a receive answer.
#[derive(Deserialize)]
pub struct Delivery {
    pub handler: String,
    pub message: DeliveredMessage,
}

/// The message of a [`Delivery`].
#[derive(Deserialize)]
pub struct DeliveredMessage {
    pub body: Value,
}

/// A server this tool started: killed and its directory removed on drop.
pub struct Spawned {
    pub child: Child,
    pub data_dir: PathBuf,
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let pid = i32::try_from(self.child.id()).expect("pid fits i32");
        // SAFETY: signalling our own child, whose pid is not reused before we wait on it.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        // Bounded by the deadline.
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

/// Starts `binary server` in a fresh data directory `parent/NAME-PID-NANOS` on a free
/// loopback port, its stderr in `<data dir>.log`, and waits (30 s at most) until it has
/// written its tenants and accepts connections.
pub fn spawn_server(
    binary: &Path,
    parent: &Path,
    name: &str,
    shards: Option<u32>,
) -> Result<(Spawned, SocketAddr), String> {
    spawn_server_with(binary, parent, name, shards, &[])
}

/// [`spawn_server`] with extra `SLUICE_*` configuration variables for the server.
pub fn spawn_server_with(
    binary: &Path,
    parent: &Path,
    name: &str,
    shards: Option<u32>,
    env: &[(&str, String)],
) -> Result<(Spawned, SocketAddr), String> {
    spawn(binary, parent, name, shards, env, None).map(|(spawned, address, _)| (spawned, address))
}

/// [`spawn_server`] with `--kafka-listen 127.0.0.1:0` as well: also answers the Kafka
/// address the server bound, read from its start-up line ("kafka on ADDR (...").
pub fn spawn_server_kafka(
    binary: &Path,
    parent: &Path,
    name: &str,
) -> Result<(Spawned, SocketAddr, SocketAddr), String> {
    let (spawned, address, banner) = spawn(binary, parent, name, None, &[], Some("127.0.0.1:0"))?;
    let banner = banner.expect("asked for the banner");
    let kafka = banner
        .split("kafka on ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|address| address.parse().ok())
        .ok_or_else(|| format!("no Kafka address in the server's first line {banner:?}"))?;
    Ok((spawned, address, kafka))
}

/// Starts the server; with `kafka_listen`, also its Kafka listener, and answers the first
/// line it prints on stdout (the rest of its stdout is read and dropped by a thread that
/// ends with the server).
fn spawn(
    binary: &Path,
    parent: &Path,
    name: &str,
    shards: Option<u32>,
    env: &[(&str, String)],
    kafka_listen: Option<&str>,
) -> Result<(Spawned, SocketAddr, Option<String>), String> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map_err(|e| format!("free port: {e}"))?
        .port();
    let address: SocketAddr = format!("127.0.0.1:{port}").parse().expect("valid address");
    let data_dir = parent.join(format!(
        "{name}-{}-{}",
        std::process::id(),
        unix_now().as_nanos()
    ));
    std::fs::create_dir_all(&data_dir).map_err(|e| format!("{}: {e}", data_dir.display()))?;
    let log = std::fs::File::create(data_dir.with_extension("log"))
        .map_err(|e| format!("server log: {e}"))?;
    let mut command = std::process::Command::new(binary);
    command
        .arg("server")
        .arg("--data-dir")
        .arg(&data_dir)
        .arg("--http-listen")
        .arg(address.to_string());
    if let Some(shards) = shards {
        command.arg("--shards").arg(shards.to_string());
    }
    if let Some(listen) = kafka_listen {
        command.arg("--kafka-listen").arg(listen);
    }
    for (key, value) in env {
        command.env(key, value);
    }
    let stdout = if kafka_listen.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    };
    let mut child = command
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(log)
        .spawn()
        .map_err(|e| format!("{}: {e}", binary.display()))?;
    let first_line = child.stdout.take().map(|stdout| {
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            let mut lines = std::io::BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = sender.send(line);
            }
            // Bounded by the server: its stdout closes when it exits.
            for _ in lines {}
        });
        receiver
    });
    let spawned = Spawned { child, data_dir };
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut banner = None;
    // Bounded by the deadline.
    loop {
        if let Some(receiver) = &first_line {
            if banner.is_none() {
                banner = receiver.try_recv().ok();
            }
        }
        let ready = spawned.data_dir.join("tenants.json").exists()
            && std::net::TcpStream::connect(address).is_ok()
            && (first_line.is_none() || banner.is_some());
        if ready {
            return Ok((spawned, address, banner));
        }
        if Instant::now() >= deadline {
            return Err("the spawned server did not come up within 30 s".to_string());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The tenant named `default` (else the first) of a data directory's `tenants.json`.
pub fn read_tenant(data_dir: &Path) -> Result<Tenant, String> {
    let path = data_dir.join("tenants.json");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let tenants: Vec<Tenant> =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    tenants
        .iter()
        .find(|tenant| tenant.name == "default")
        .or(tenants.first())
        .cloned()
        .ok_or_else(|| format!("{}: no tenant", path.display()))
}
