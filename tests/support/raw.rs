//! Raw HTTP/1.1 over real sockets, for tests that need what a client library hides: the
//! client's own source address, exact bytes on the wire, and responses read as they come.
//! Every read is bounded by [`READ_TIMEOUT`], so a server that hangs fails the test.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::Duration;

use http::header::{HeaderValue, CONTENT_TYPE, HOST};
use http::HeaderMap;
use serde_json::Value;
use sluice_server::client::Credentials;

/// A bound on any single read from the server (a hang fails, never waits).
pub const READ_TIMEOUT: Duration = Duration::from_secs(20);

/// `host:port` of an endpoint `http://host:port`.
pub fn authority(endpoint: &str) -> &str {
    endpoint.trim_start_matches("http://")
}

/// Connects to `endpoint` from the local address `from` (any 127.x address works on
/// loopback), with the read bound set.
pub fn connect_from(endpoint: &str, from: IpAddr) -> std::io::Result<TcpStream> {
    let target: SocketAddr = authority(endpoint).parse().expect("an IP:port endpoint");
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(target),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    socket.bind(&SocketAddr::new(from, 0).into())?;
    socket.connect(&target.into())?;
    let stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(READ_TIMEOUT))?;
    Ok(stream)
}

/// Connects to `endpoint` from 127.0.0.1.
pub fn connect(endpoint: &str) -> TcpStream {
    connect_from(endpoint, [127, 0, 0, 1].into()).expect("the server accepts")
}

/// Sends `request` on a new connection and reads one response.
pub fn exchange(endpoint: &str, request: &[u8]) -> (u16, String) {
    let mut stream = connect(endpoint);
    stream.write_all(request).expect("the request is sent");
    read_response(&mut stream)
}

/// Reads one response: until its content-length is complete, or the server closes.
/// Status 0 when the server closed (or reset) before any response.
pub fn read_response(stream: &mut TcpStream) -> (u16, String) {
    let mut bytes = Vec::new();
    let mut buf = [0u8; 16384];
    loop {
        let n = match stream.read(&mut buf) {
            Ok(n) => n,
            Err(error) if error.kind() == std::io::ErrorKind::ConnectionReset => 0,
            Err(error) => panic!("the server answers within the bound: {error}"),
        };
        if n == 0 {
            break;
        }
        bytes.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&bytes).to_string();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head.lines().find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length: ")
                    .map(|v| v.trim().parse::<usize>().expect("a number"))
            });
            if length.is_some_and(|len| body.len() >= len) {
                break;
            }
        }
    }
    let text = String::from_utf8_lossy(&bytes).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}

/// The JSON body of a response read by [`read_response`] (`Null` when there is none).
pub fn body_of(text: &str) -> Value {
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    serde_json::from_str(body).unwrap_or(Value::Null)
}

fn now_s() -> i64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970");
    i64::try_from(since.as_secs()).expect("fits")
}

/// A request signed like the SDKs sign (SDK-HMAC-SHA256), as raw HTTP/1.1; with
/// `connection: close` when `close`, else kept alive.
pub fn signed_raw(
    endpoint: &str,
    credentials: &Credentials,
    method: &str,
    path: &str,
    body: &[u8],
    close: bool,
) -> Vec<u8> {
    let (raw_path, raw_query) = match path.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path, None),
    };
    let mut headers = HeaderMap::new();
    headers.insert(
        HOST,
        HeaderValue::from_str(authority(endpoint)).expect("a valid host"),
    );
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    sluice_http::auth::sign_request(
        &credentials.ak,
        &credentials.sk,
        method,
        raw_path,
        raw_query,
        &mut headers,
        body,
        now_s(),
    );
    let mut text = format!("{method} {path} HTTP/1.1\r\n");
    for (name, value) in &headers {
        text.push_str(&format!(
            "{name}: {}\r\n",
            value.to_str().expect("ASCII header")
        ));
    }
    let connection = if close { "close" } else { "keep-alive" };
    text.push_str(&format!(
        "content-length: {}\r\nconnection: {connection}\r\n\r\n",
        body.len()
    ));
    let mut bytes = text.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}
