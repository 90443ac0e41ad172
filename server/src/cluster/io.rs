//! Socket helpers both directions share: a timeout around any I/O, taking a std socket
//! into glommio, and the hello exchange's reading side.
//!
//! Sockets the listener thread accepted are std `TcpStream`s: `Send`, so they can move
//! to any shard, which makes one glommio stream of it with [`adopt`]. glommio offers the
//! safe conversion from a socket2 0.4 `Socket` (its own version), which std streams
//! convert into safely; no raw descriptor is handled here.

use std::future::Future;
use std::io;
use std::time::Duration;

use futures_lite::AsyncReadExt;
use glommio::net::TcpStream;
use sluice_core::frame::{decode_frame, decode_header, DecodeError, FRAME_HEADER_BYTES};

use super::hello::{Hello, HelloError, HELLO_BYTES};

/// `future`, or a `TimedOut` error after `ms` milliseconds (the future is dropped).
pub(crate) async fn within<T>(
    ms: u64,
    what: &'static str,
    future: impl Future<Output = io::Result<T>>,
) -> io::Result<T> {
    let deadline = async {
        glommio::timer::sleep(Duration::from_millis(ms)).await;
        Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("{what} took over {ms} ms"),
        ))
    };
    futures_lite::future::or(future, deadline).await
}

/// A glommio stream on this executor over an accepted std socket.
pub(crate) fn adopt(stream: std::net::TcpStream) -> TcpStream {
    TcpStream::from(socket2_04::Socket::from(stream))
}

/// Why a connection's hello exchange failed.
#[derive(Debug)]
pub(crate) enum HandshakeError {
    Io(io::Error),
    Frame(DecodeError),
    Hello(HelloError),
}

impl std::fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HandshakeError::Io(error) => write!(f, "{error}"),
            HandshakeError::Frame(error) => write!(f, "bad hello frame: {error}"),
            HandshakeError::Hello(error) => write!(f, "hello refused: {error}"),
        }
    }
}

impl From<io::Error> for HandshakeError {
    fn from(error: io::Error) -> HandshakeError {
        HandshakeError::Io(error)
    }
}

/// Reads exactly one hello frame: not a byte more, so that what follows it stays in the
/// socket for whoever reads the connection next.
pub(crate) async fn read_hello(stream: &mut TcpStream) -> Result<Hello, HandshakeError> {
    let mut bytes = [0u8; FRAME_HEADER_BYTES + HELLO_BYTES];
    stream.read_exact(&mut bytes[..FRAME_HEADER_BYTES]).await?;
    let hello_bytes = u32::try_from(HELLO_BYTES).expect("small");
    let header = decode_header(&bytes, hello_bytes).map_err(HandshakeError::Frame)?;
    let frame_bytes = FRAME_HEADER_BYTES
        + usize::try_from(header.payload_bytes.get()).expect("at most HELLO_BYTES");
    stream
        .read_exact(&mut bytes[FRAME_HEADER_BYTES..frame_bytes])
        .await?;
    let frame = decode_frame(&bytes[..frame_bytes], hello_bytes).map_err(HandshakeError::Frame)?;
    Hello::decode(&frame).map_err(HandshakeError::Hello)
}
