//! gRPC's message framing over an HTTP/2 stream, written by hand: each message is a
//! 1-byte compressed flag, a 4-byte big-endian length and the protobuf bytes; a call ends
//! with the `grpc-status` (and `grpc-message`) trailers. Compression is not negotiated
//! (the server announces none), so a compressed message is refused. What is outside:
//! HTTP/2 itself (hyper, in the server) and the meaning of the messages ([`crate::service`]).

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::limits::GRPC_MESSAGE_BYTES_MAX;

/// Bytes of the prefix before each message.
pub const PREFIX_BYTES: usize = 5;

/// The gRPC status codes this service answers with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GrpcCode {
    Ok = 0,
    InvalidArgument = 3,
    ResourceExhausted = 8,
    Unimplemented = 12,
    Internal = 13,
    Unavailable = 14,
}

impl GrpcCode {
    /// The value of the `grpc-status` trailer.
    pub fn as_str(self) -> &'static str {
        match self {
            GrpcCode::Ok => "0",
            GrpcCode::InvalidArgument => "3",
            GrpcCode::ResourceExhausted => "8",
            GrpcCode::Unimplemented => "12",
            GrpcCode::Internal => "13",
            GrpcCode::Unavailable => "14",
        }
    }
}

/// Why the bytes of a call are not a sequence of gRPC messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FrameError {
    /// The compressed flag was set (no compression was negotiated) or not 0/1.
    Compressed(u8),
    /// A message longer than [`GRPC_MESSAGE_BYTES_MAX`].
    TooLarge(u32),
    /// The stream ended inside a message.
    Truncated,
}

impl FrameError {
    /// The gRPC status that ends the call.
    pub fn code(&self) -> GrpcCode {
        match self {
            FrameError::TooLarge(_) => GrpcCode::ResourceExhausted,
            FrameError::Compressed(_) => GrpcCode::Unimplemented,
            FrameError::Truncated => GrpcCode::InvalidArgument,
        }
    }
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::Compressed(flag) => {
                write!(
                    f,
                    "compressed flag {flag}: no message compression is supported"
                )
            }
            FrameError::TooLarge(bytes) => write!(
                f,
                "a message of {bytes} bytes; at most {GRPC_MESSAGE_BYTES_MAX} are accepted"
            ),
            FrameError::Truncated => write!(f, "the stream ended inside a message"),
        }
    }
}

/// Splits the bytes of a request stream into messages as they arrive. Holds at most one
/// message's prefix and body (bounded by [`GRPC_MESSAGE_BYTES_MAX`]) plus whatever of the
/// next one arrived in the same chunk; the caller takes each message as it completes.
#[derive(Debug, Default)]
pub struct FrameDecoder {
    buf: BytesMut,
}

impl FrameDecoder {
    pub fn new() -> FrameDecoder {
        FrameDecoder::default()
    }

    /// Appends bytes read from the stream. The caller takes every complete message
    /// ([`FrameDecoder::next_message`]) before pushing more, which keeps the buffer within one
    /// message and one chunk.
    pub fn push(&mut self, chunk: &[u8]) {
        self.buf.extend_from_slice(chunk);
    }

    /// The next complete message, `Ok(None)` when more bytes are needed, or why the
    /// stream is not gRPC. A prefix is judged as soon as it is whole, before its body is
    /// buffered.
    pub fn next_message(&mut self) -> Result<Option<Bytes>, FrameError> {
        if self.buf.len() < PREFIX_BYTES {
            return Ok(None);
        }
        let flag = self.buf[0];
        if flag != 0 {
            return Err(FrameError::Compressed(flag));
        }
        let length = u32::from_be_bytes(self.buf[1..5].try_into().expect("4 bytes"));
        if length > GRPC_MESSAGE_BYTES_MAX {
            return Err(FrameError::TooLarge(length));
        }
        let total = PREFIX_BYTES + usize::try_from(length).expect("u32 fits usize");
        if self.buf.len() < total {
            return Ok(None);
        }
        self.buf.advance(PREFIX_BYTES);
        let message = self.buf.split_to(total - PREFIX_BYTES).freeze();
        debug_assert_eq!(message.len(), total - PREFIX_BYTES);
        Ok(Some(message))
    }

    /// At the end of the stream: whether it ended between messages.
    pub fn finish(&self) -> Result<(), FrameError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(FrameError::Truncated)
        }
    }
}

/// One message framed for the wire (prefix and body).
pub fn frame(message: &impl prost::Message) -> Bytes {
    let length = message.encoded_len();
    let mut out = BytesMut::with_capacity(PREFIX_BYTES + length);
    out.put_u8(0);
    out.put_u32(u32::try_from(length).expect("an answer is far below 4 GiB"));
    message
        .encode(&mut out)
        .expect("the buffer was sized to the message");
    assert_eq!(out.len(), PREFIX_BYTES + length);
    out.freeze()
}

/// A `grpc-message` trailer value: percent-encoded as gRPC requires (bytes outside
/// printable ASCII, and `%`).
pub fn encode_message(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if (0x20..0x7f).contains(&byte) && byte != b'%' {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `stream` to a decoder in chunks of `step` bytes and collects the messages.
    fn check(stream: &[u8], step: usize) -> Result<Vec<Bytes>, FrameError> {
        let mut decoder = FrameDecoder::new();
        let mut messages = Vec::new();
        for chunk in stream.chunks(step.max(1)) {
            decoder.push(chunk);
            while let Some(message) = decoder.next_message()? {
                messages.push(message);
            }
        }
        decoder.finish()?;
        Ok(messages)
    }

    #[test]
    fn messages_split_at_any_chunking() {
        let status = crate::proto::Status {
            code: 20000,
            message: "OK".into(),
        };
        let mut stream = frame(&status).to_vec();
        stream.extend_from_slice(&[0, 0, 0, 0, 0]);
        for step in 1..stream.len() + 1 {
            let messages = check(&stream, step).unwrap();
            assert_eq!(messages.len(), 2);
            let decoded: crate::proto::Status =
                prost::Message::decode(messages[0].clone()).unwrap();
            assert_eq!(decoded, status);
            assert!(messages[1].is_empty());
        }
    }

    #[test]
    fn bad_prefixes_are_refused_before_buffering() {
        assert_eq!(check(&[1, 0, 0, 0, 0], 5), Err(FrameError::Compressed(1)));
        assert_eq!(
            check(&[0, 0xff, 0xff, 0xff, 0xff], 5),
            Err(FrameError::TooLarge(u32::MAX))
        );
        assert_eq!(check(&[0, 0, 0, 0, 3, 1], 6), Err(FrameError::Truncated));
        assert_eq!(encode_message("a%b\né"), "a%25b%0A%C3%A9");
    }
}
