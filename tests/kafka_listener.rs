//! The Kafka listener end to end over real sockets against the real binary: frames in and
//! out (ApiVersions encoded with the `kafka-protocol` crate, pipelined requests answered in
//! order), and bad input (a frame length too large or negative, an unknown API key)
//! closing only its own connection. What each API answers is the adapter's, tested in
//! adapters/tcp; this is about the server's sockets. Waits are socket reads with timeouts,
//! never sleeps.

mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader, ResponseHeader,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use support::Server;

/// A bound on any single read from the server (a hang fails, never waits).
const READ_TIMEOUT: Duration = Duration::from_secs(20);

/// A port nobody listens on now (the kernel's pick for a socket we close at once).
fn free_port() -> u16 {
    let probe = TcpListener::bind("127.0.0.1:0").expect("a loopback port");
    probe.local_addr().expect("bound").port()
}

fn connect(address: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(address).expect("the Kafka listener accepts");
    stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(READ_TIMEOUT)).unwrap();
    stream
}

/// A whole ApiVersions v3 request frame, length prefix included.
fn api_versions_request(correlation_id: i32) -> Vec<u8> {
    let version = 3;
    let header = RequestHeader::default()
        .with_request_api_key(ApiKey::ApiVersions as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str("sluice-test")));
    let body = ApiVersionsRequest::default()
        .with_client_software_name(StrBytes::from_static_str("sluice-test"))
        .with_client_software_version(StrBytes::from_static_str("1.0"));
    let mut frame = vec![0; 4];
    header
        .encode(
            &mut frame,
            ApiKey::ApiVersions.request_header_version(version),
        )
        .unwrap();
    body.encode(&mut frame, version).unwrap();
    let length = i32::try_from(frame.len() - 4).unwrap();
    frame[..4].copy_from_slice(&length.to_be_bytes());
    frame
}

/// Reads one response frame: its correlation id and body (the bytes after the header).
fn read_response(stream: &mut TcpStream) -> (i32, Vec<u8>) {
    let mut prefix = [0; 4];
    stream.read_exact(&mut prefix).expect("a response frame");
    let length = usize::try_from(i32::from_be_bytes(prefix)).expect("a positive length");
    assert!(length < 1 << 20, "an ApiVersions answer is small: {length}");
    let mut frame = vec![0; length];
    stream
        .read_exact(&mut frame)
        .expect("the whole response frame");
    let mut bytes: &[u8] = &frame;
    // ApiVersions answers with response header v0 whatever the request's version.
    let header = ResponseHeader::decode(&mut bytes, 0).expect("a response header");
    (header.correlation_id, bytes.to_vec())
}

/// Sends ApiVersions v3 and checks the answer: no error, Produce and Fetch served.
fn check_api_versions(stream: &mut TcpStream, correlation_id: i32) {
    stream
        .write_all(&api_versions_request(correlation_id))
        .unwrap();
    let (answered, body) = read_response(stream);
    assert_eq!(answered, correlation_id);
    let response = ApiVersionsResponse::decode(&mut body.as_slice(), 3).expect("v3 decodes");
    assert_eq!(response.error_code, 0);
    let keys: Vec<i16> = response.api_keys.iter().map(|v| v.api_key).collect();
    assert!(keys.contains(&(ApiKey::Produce as i16)), "{keys:?}");
    assert!(keys.contains(&(ApiKey::Fetch as i16)), "{keys:?}");
}

/// Waits (bounded by the read timeout) for the server to close `stream`: end of stream
/// or a reset, never a timeout, and no bytes before it.
fn assert_closed(stream: &mut TcpStream, what: &str) {
    let mut scratch = [0; 4096];
    match stream.read(&mut scratch) {
        Ok(0) => {}
        Ok(n) => panic!("{what}: {n} unexpected bytes instead of a close"),
        Err(error)
            if matches!(
                error.kind(),
                ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted
            ) => {}
        Err(error) => panic!("{what}: the server did not close the connection: {error}"),
    }
}

#[test]
fn kafka_frames_are_answered_and_bad_frames_close_only_their_connection() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let server = Server::start(dir.path(), &["--kafka-listen", &listen]);
    assert!(
        server.banner[0].contains(&format!("kafka on {listen}")),
        "{:?}",
        server.banner[0]
    );
    let address: SocketAddr = listen.parse().unwrap();

    // (a) ApiVersions v3, then two pipelined in one write: answered in order.
    let mut kept = connect(address);
    check_api_versions(&mut kept, 1);
    let mut both = api_versions_request(2);
    both.extend(api_versions_request(3));
    kept.write_all(&both).unwrap();
    assert_eq!(read_response(&mut kept).0, 2);
    assert_eq!(read_response(&mut kept).0, 3);
    // A frame that arrives in pieces (the length prefix split too) is one request.
    kept.set_nodelay(true).unwrap();
    let request = api_versions_request(8);
    for piece in [&request[..2], &request[2..9], &request[9..]] {
        kept.write_all(piece).unwrap();
        kept.flush().unwrap();
    }
    assert_eq!(read_response(&mut kept).0, 8);

    // (b) A length prefix of 100 MB (above FRAME_BYTES_MAX) closes that connection at
    // once, before any body arrives; so does a negative one. Others are served.
    let mut huge = connect(address);
    huge.write_all(&100_000_000_i32.to_be_bytes()).unwrap();
    assert_closed(&mut huge, "a 100 MB frame length");
    let mut negative = connect(address);
    negative.write_all(&(-1_i32).to_be_bytes()).unwrap();
    assert_closed(&mut negative, "a negative frame length");
    check_api_versions(&mut connect(address), 4);

    // (c) An unknown API key (999) closes that connection; the server serves others,
    // the connection opened before included.
    let mut garbage = connect(address);
    let mut frame = Vec::new();
    frame.extend(999_i16.to_be_bytes());
    frame.extend(0_i16.to_be_bytes());
    frame.extend(5_i32.to_be_bytes());
    frame.extend((-1_i16).to_be_bytes());
    let mut framed = i32::try_from(frame.len()).unwrap().to_be_bytes().to_vec();
    framed.extend(frame);
    garbage.write_all(&framed).unwrap();
    assert_closed(&mut garbage, "an unknown API key");
    check_api_versions(&mut connect(address), 6);
    check_api_versions(&mut kept, 7);

    // The listener's counters are in /metrics.
    let (status, metrics) = support::raw::exchange(
        &server.endpoint,
        b"GET /metrics HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    );
    assert_eq!(status, 200);
    let counter = |name: &str| -> f64 {
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in /metrics"))
    };
    // 7 frames answered, plus the unknown key's (the bad lengths are no frames).
    assert_eq!(counter("sluice_kafka_requests_total"), 8.0);
    assert_eq!(counter("sluice_kafka_connections_total"), 6.0);
    assert!(
        metrics.contains("sluice_kafka_connections_closed_total{reason=\"frame_length\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("sluice_kafka_connections_closed_total{reason=\"protocol\"} 1"),
        "{metrics}"
    );
}

#[test]
fn port_zero_is_resolved_and_a_stop_closes_idle_kafka_connections() {
    // Goal: `--kafka-listen IP:0` binds one port for every shard, the banner names it,
    // and SIGTERM is not held up by an idle Kafka connection.
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(
        dir.path(),
        &[
            "--kafka-listen",
            "127.0.0.1:0",
            "--kafka-advertise",
            "kafka.test:19092",
        ],
    );
    let banner = &server.banner[0];
    let listen = banner
        .split("kafka on ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no Kafka address in {banner:?}"));
    assert!(
        banner.contains("advertised as kafka.test:19092"),
        "{banner}"
    );
    let address: SocketAddr = listen.parse().unwrap();
    assert_ne!(address.port(), 0);
    // Several connections: with SO_REUSEPORT they spread over the shards.
    let mut idle: Vec<TcpStream> = (0..4).map(|_| connect(address)).collect();
    for (n, stream) in idle.iter_mut().enumerate() {
        check_api_versions(stream, i32::try_from(n).unwrap());
    }
    let status = server.terminate();
    assert!(status.success(), "{status:?}");
    for stream in &mut idle {
        assert_closed(stream, "an idle connection at shutdown");
    }
}

/// A frame of a few bytes whose array count says 2^31 - 1 elements (the decoder sizes its
/// vector from it before reading any) closes that connection; the process survives
/// (Linux overcommits the untouched allocation) and serves the next.
#[test]
fn a_huge_array_count_closes_only_its_connection() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--kafka-listen", "127.0.0.1:0"]);
    let address: SocketAddr = server.banner[0]
        .split("kafka on ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .expect("the Kafka address in the banner")
        .parse()
        .unwrap();
    let credentials = server.client().credentials;
    let frame = |body: Vec<u8>| {
        let mut frame = i32::try_from(body.len()).unwrap().to_be_bytes().to_vec();
        frame.extend(body);
        frame
    };
    // Request header v1: api key, version, correlation id, a null client id.
    let header = |key: i16, version: i16, id: i32| {
        let mut bytes = Vec::new();
        bytes.extend(key.to_be_bytes());
        bytes.extend(version.to_be_bytes());
        bytes.extend(id.to_be_bytes());
        bytes.extend((-1i16).to_be_bytes());
        bytes
    };
    let mut stream = connect(address);
    let mut handshake = header(17, 1, 1);
    handshake.extend(5i16.to_be_bytes());
    handshake.extend(b"PLAIN");
    stream.write_all(&frame(handshake)).unwrap();
    assert_eq!(read_frame(&mut stream).0, 1);
    let message = format!("\0{}\0{}", credentials.ak, credentials.sk);
    let mut authenticate = header(36, 0, 2);
    authenticate.extend(i32::try_from(message.len()).unwrap().to_be_bytes());
    authenticate.extend(message.as_bytes());
    stream.write_all(&frame(authenticate)).unwrap();
    assert_eq!(read_frame(&mut stream).0, 2);
    // Metadata v1 whose topic array claims i32::MAX topics and carries none.
    let mut metadata = header(3, 1, 3);
    metadata.extend(i32::MAX.to_be_bytes());
    stream.write_all(&frame(metadata)).unwrap();
    assert_closed(&mut stream, "a huge array count");
    let mut other = connect(address);
    check_api_versions(&mut other, 4);
}

/// Reads one response frame of any API: its correlation id (response header v0) and the
/// rest.
fn read_frame(stream: &mut TcpStream) -> (i32, Vec<u8>) {
    let mut prefix = [0; 4];
    stream.read_exact(&mut prefix).expect("a response frame");
    let length = usize::try_from(i32::from_be_bytes(prefix)).expect("a positive length");
    let mut frame = vec![0; length];
    stream.read_exact(&mut frame).expect("the whole frame");
    let id = i32::from_be_bytes(frame[..4].try_into().unwrap());
    (id, frame[4..].to_vec())
}
