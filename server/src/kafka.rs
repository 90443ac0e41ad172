//! The Kafka wire protocol on a shard: every shard listens on `kafka_listen` (SO_REUSEPORT,
//! like the HTTP port), admits connections by the same per-shard and per-address limits
//! as HTTP's (`fairness`; the two share the counts), and runs one task per connection that
//! reads a frame, hands it to the connection's [`Session`] (`sluice-tcp`), writes the
//! answer, and loops: requests of one connection are answered in order, one at a time.
//! What a request means is the adapter's; this file owns only the bytes on the socket.
//!
//! A frame is a 4-byte big-endian length, then that many bytes. A negative length or one
//! above [`FRAME_BYTES_MAX`] closes the connection at once, with a log line; so does an
//! answer of [`Reply::Close`] (a frame that does not decode, an API that is not served).
//! A frame's buffer grows with the bytes that arrive (at most twice what came, never
//! above the declared length), so a length alone reserves nothing. Once a frame's first
//! byte arrived, the rest must within `body_timeout_ms`; a connection with no frame for
//! [`IDLE_MS`] is closed; an answer must be taken within [`REPLY_WRITE_MS_MAX`]. A read
//! or write error closes only that connection. At shutdown, a connection between frames
//! closes; one in a request finishes it first (the drain waits for it).

use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_lite::io::BufReader;
use futures_lite::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use glommio::net::{TcpListener, TcpStream};
use sluice_tcp::kafka::{KafkaConfig, Reply, Session, FRAME_BYTES_MAX};

use crate::fairness;
use crate::http::{admit, next_connection, release, stopped};
use crate::metrics::ReasonLabels;
use crate::shard::Shard;

/// A connection that sends no frame for this long is closed.
pub const IDLE_MS: u64 = 10 * 60 * 1000;
/// An answer the client does not take within this is dropped with its connection.
pub const REPLY_WRITE_MS_MAX: u64 = 120_000;
/// Bytes of a connection's read buffer (length prefixes and small frames; a larger
/// frame's body is read into the frame itself).
const READ_BUF_BYTES: usize = 16 * 1024;
/// A frame's body is read in steps of at most this many bytes.
const FRAME_STEP_BYTES: usize = 64 * 1024;
/// How often a frame waiting for the shard's request limit re-checks it.
const BUSY_POLL_MS: u64 = 10;

/// Why a connection ended.
#[derive(Debug)]
enum Closed {
    /// The client closed it (between frames or within one).
    Client,
    Idle,
    /// The length prefix said this.
    FrameLength(i32),
    /// A frame started and did not finish within `body_timeout_ms`.
    FrameTimeout,
    /// The adapter's [`Reply::Close`].
    Protocol(String),
    /// The client did not take an answer within [`REPLY_WRITE_MS_MAX`].
    WriteTimeout,
    /// A read or write failed (a reset, most often): not logged, counted.
    Io,
    Stopping,
}

impl Closed {
    fn label(&self) -> &'static str {
        match self {
            Closed::Client => "client",
            Closed::Idle => "idle",
            Closed::FrameLength(_) => "frame_length",
            Closed::FrameTimeout | Closed::WriteTimeout => "timeout",
            Closed::Protocol(_) => "protocol",
            Closed::Io => "io_error",
            Closed::Stopping => "stopping",
        }
    }

    /// The log line's reason, for the closes an operator should see.
    fn log_reason(&self) -> Option<String> {
        match self {
            Closed::FrameLength(length) => Some(format!(
                "a frame length of {length} bytes (0 to {FRAME_BYTES_MAX} are accepted)"
            )),
            Closed::FrameTimeout => Some("a frame did not arrive whole in time".to_string()),
            Closed::WriteTimeout => Some("the client did not take an answer in time".to_string()),
            Closed::Protocol(reason) => Some(reason.clone()),
            Closed::Client | Closed::Idle | Closed::Io | Closed::Stopping => None,
        }
    }
}

impl From<std::io::Error> for Closed {
    fn from(error: std::io::Error) -> Closed {
        match error.kind() {
            std::io::ErrorKind::UnexpectedEof => Closed::Client,
            _ => Closed::Io,
        }
    }
}

/// Accepts Kafka connections until the server stops.
pub async fn accept_loop(shard: Rc<Shard>, listener: TcpListener, config: Arc<KafkaConfig>) {
    // Runs until shutdown: one accepted connection per iteration.
    while let Some(stream) = next_connection(&shard, &listener, "Kafka").await {
        let peer = stream.peer_addr().ok();
        let key = peer.map(|address| fairness::client_key(address.ip()));
        let metrics = &shard.shared.metrics;
        if let Err(refusal) = admit(&shard, key) {
            // Kafka has no answer before a request: the connection is only closed.
            let reason = ReasonLabels {
                reason: refusal.label(),
            };
            metrics
                .kafka_connections_refused
                .get_or_create(&reason)
                .inc();
            drop(stream);
            continue;
        }
        metrics.kafka_connections.inc();
        metrics.kafka_connections_open.inc();
        let shard = shard.clone();
        let config = config.clone();
        glommio::spawn_local(async move {
            let mut reader = BufReader::with_capacity(READ_BUF_BYTES, stream);
            let closed = serve_connection(&shard, &mut reader, config, key).await;
            let metrics = &shard.shared.metrics;
            let reason = ReasonLabels {
                reason: closed.label(),
            };
            metrics
                .kafka_connections_closed
                .get_or_create(&reason)
                .inc();
            if let Some(reason) = closed.log_reason() {
                let peer = peer.map_or_else(|| "an unknown peer".to_string(), |p| p.to_string());
                eprintln!("sluice: Kafka connection from {peer} closed: {reason}");
            }
            // Dropping the stream closes the socket (a reset if unread bytes remain).
            drop(reader);
            metrics.kafka_connections_open.dec();
            release(&shard, key);
        })
        .detach();
    }
}

/// Serves one connection's frames in order until it ends, and says why it did.
async fn serve_connection(
    shard: &Rc<Shard>,
    reader: &mut BufReader<TcpStream>,
    config: Arc<KafkaConfig>,
    key: Option<IpAddr>,
) -> Closed {
    let mut session = Session::new(config);
    let mut authenticated = false;
    let config = &shard.shared.config;
    // One frame per iteration; ends when the connection does.
    loop {
        // A client that keeps frames buffered does not hold off a stop.
        if shard.shared.stopping() {
            return Closed::Stopping;
        }
        let frame = match read_frame(shard, reader).await {
            Ok(frame) => frame,
            Err(closed) => return closed,
        };
        shard.shared.metrics.kafka_requests.inc();
        // Over the shard's request limit, the frame waits (back-pressure on this
        // connection: Kafka has no "busy" answer every API understands).
        while shard.requests_inflight.get() >= config.requests_per_shard_max
            && !shard.shared.stopping()
        {
            glommio::timer::sleep(Duration::from_millis(BUSY_POLL_MS)).await;
        }
        shard
            .requests_inflight
            .set(shard.requests_inflight.get() + 1);
        let reply = session.handle(&*shard.node, Bytes::from(frame)).await;
        shard
            .requests_inflight
            .set(shard.requests_inflight.get() - 1);
        if !authenticated && session.tenant().is_some() {
            // SASL succeeded: the address may use the shard's reserved connections.
            authenticated = true;
            if let Some(key) = key {
                shard.addresses.borrow_mut().authenticated(key);
            }
        }
        match reply {
            Reply::Send(answer) => {
                let write = async {
                    let stream = reader.get_mut();
                    Some(match stream.write_all(&answer).await {
                        Ok(()) => stream.flush().await,
                        Err(error) => Err(error),
                    })
                };
                let timeout = async {
                    glommio::timer::sleep(Duration::from_millis(REPLY_WRITE_MS_MAX)).await;
                    None
                };
                match futures_lite::future::or(write, timeout).await {
                    Some(Ok(())) => {}
                    Some(Err(error)) => return error.into(),
                    None => return Closed::WriteTimeout,
                }
            }
            Reply::Nothing => {}
            Reply::Close(reason) => return Closed::Protocol(reason),
        }
    }
}

/// Reads the next frame: waits up to [`IDLE_MS`] for its first byte (or the server's
/// stop), then up to `body_timeout_ms` for the rest. The bytes after the length prefix.
async fn read_frame(shard: &Shard, reader: &mut BufReader<TcpStream>) -> Result<Vec<u8>, Closed> {
    let first = async {
        match reader.fill_buf().await {
            Ok(buffered) if !buffered.is_empty() => Ok(()),
            Ok(_) => Err(Closed::Client),
            Err(error) => Err(Closed::from(error)),
        }
    };
    let idle = async {
        glommio::timer::sleep(Duration::from_millis(IDLE_MS)).await;
        Err(Closed::Idle)
    };
    let stop = async {
        stopped(shard).await;
        Err(Closed::Stopping)
    };
    futures_lite::future::or(first, futures_lite::future::or(idle, stop)).await?;
    let rest = async { Some(read_rest(reader).await) };
    let timeout = async {
        let ms = shard.shared.config.body_timeout_ms;
        glommio::timer::sleep(Duration::from_millis(ms)).await;
        None
    };
    futures_lite::future::or(rest, timeout)
        .await
        .unwrap_or(Err(Closed::FrameTimeout))
}

/// The length prefix and the frame it announces, read into a buffer that grows with what
/// arrives.
async fn read_rest(reader: &mut BufReader<TcpStream>) -> Result<Vec<u8>, Closed> {
    let mut prefix = [0; 4];
    reader.read_exact(&mut prefix).await?;
    let declared = i32::from_be_bytes(prefix);
    let length = match usize::try_from(declared) {
        Ok(length) if length <= FRAME_BYTES_MAX => length,
        _ => return Err(Closed::FrameLength(declared)),
    };
    let mut frame = Vec::new();
    // Bounded: every pass reads at least one byte or returns.
    while frame.len() < length {
        let start = frame.len();
        let step = (length - start).min(FRAME_STEP_BYTES);
        if frame.capacity() < start + step {
            // Doubling, capped at the declared length: amortised, and never more than
            // twice the bytes received (or the length).
            let capacity = (frame.capacity() * 2).max(start + step).min(length);
            frame.reserve_exact(capacity - start);
        }
        frame.resize(start + step, 0);
        let read = reader.read(&mut frame[start..]).await?;
        frame.truncate(start + read);
        if read == 0 {
            return Err(Closed::Client);
        }
    }
    Ok(frame)
}

/// The Kafka listener as the start-up banner names it.
pub fn describe(bound: SocketAddr, config: &KafkaConfig) -> String {
    format!(
        "kafka on {bound} (advertised as {}:{}, broker {})",
        config.advertised_host, config.advertised_port, config.broker_id
    )
}
