//! The frame format of the connections between cluster nodes, and its incremental
//! decoder. Runtime-free: the server's transport (`server/src/cluster/`) and, later, the
//! simulation feed it bytes as they arrive and write what it encodes.
//!
//! A frame is a fixed 16-byte little-endian [`FrameHeader`] followed by its payload:
//!
//! | bytes | field | meaning |
//! |---|---|---|
//! | 0..4 | `payload_bytes` | payload length, at most the reader's limit ([`CLUSTER_FRAME_BYTES_MAX`] at most) |
//! | 4..12 | `checksum` | xxh3-64 of bytes 0..4 and 12..16 of the header, then the payload |
//! | 12..14 | `channel` | the shard the frame is for |
//! | 14 | `kind` | what the payload is; the transport and its callers give kinds meaning |
//! | 15 | `reserved` | zero |
//!
//! The checksum covers every header field but itself, so a flipped bit anywhere in a
//! frame is detected once the frame is complete. A length over the reader's limit is
//! refused from the header alone, before any payload is buffered. Nothing here panics on
//! any input: malformed bytes give a typed [`DecodeError`], and a decoder that returned
//! one keeps returning it (the connection is to be closed).
//!
//! Outside this module: connections, hello frames, kinds, queues (the server's transport).

use xxhash_rust::xxh3::Xxh3;
use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::limits::{CLUSTER_FRAME_BYTES_MAX, CLUSTER_READ_CHUNK_BYTES};

/// Bytes of a frame header.
pub const FRAME_HEADER_BYTES: usize = 16;
/// Where the checksum sits in the header; the bytes around it are covered by it.
const CHECKSUM_AT: usize = 4;
const CHECKSUM_END: usize = 12;

/// The fixed header of a frame. Field order is the wire order.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy, Debug)]
#[repr(C)]
pub struct FrameHeader {
    /// Bytes of payload after the header.
    pub payload_bytes: U32,
    /// xxh3-64 of the other header fields (in wire order) and the payload.
    pub checksum: U64,
    /// The shard the frame is for.
    pub channel: U16,
    /// The payload's type, given meaning by the transport and its callers.
    pub kind: u8,
    /// Zero.
    pub reserved: u8,
}

const _: () = assert!(core::mem::size_of::<FrameHeader>() == FRAME_HEADER_BYTES);
const _: () = assert!(CHECKSUM_END - CHECKSUM_AT == 8);
const _: () = assert!(FRAME_HEADER_BYTES < CLUSTER_READ_CHUNK_BYTES);

/// One verified frame borrowing its payload from the bytes it was decoded from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameView<'a> {
    /// The shard the frame is for.
    pub channel: u16,
    /// The payload's type.
    pub kind: u8,
    /// The payload, verified by the checksum.
    pub payload: &'a [u8],
}

impl FrameView<'_> {
    /// Bytes the frame took on the wire, header included.
    pub fn encoded_bytes(&self) -> usize {
        FRAME_HEADER_BYTES + self.payload.len()
    }
}

/// One verified frame owning its payload, as [`FrameDecoder::next_frame`] returns it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// The shard the frame is for.
    pub channel: u16,
    /// The payload's type.
    pub kind: u8,
    /// The payload, verified by the checksum.
    pub payload: Vec<u8>,
}

/// Why a payload cannot be framed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EncodeError {
    /// The payload exceeds [`CLUSTER_FRAME_BYTES_MAX`].
    TooLarge {
        /// The payload's length.
        payload_bytes: u64,
    },
}

impl std::fmt::Display for EncodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EncodeError::TooLarge { payload_bytes } => write!(
                f,
                "a payload of {payload_bytes} bytes exceeds the frame limit of \
                 {CLUSTER_FRAME_BYTES_MAX}"
            ),
        }
    }
}

/// Why bytes are not a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// Fewer bytes than the header or than the header says the frame takes.
    Truncated { needed: u64, available: u64 },
    /// The header claims a payload over the reader's limit.
    TooLarge {
        payload_bytes: u32,
        payload_bytes_max: u32,
    },
    /// The reserved header byte is not zero.
    Reserved { found: u8 },
    /// The frame's bytes do not match its checksum.
    ChecksumMismatch { stored: u64, computed: u64 },
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::Truncated { needed, available } => write!(
                f,
                "truncated frame: needs {needed} bytes, {available} present"
            ),
            DecodeError::TooLarge {
                payload_bytes,
                payload_bytes_max,
            } => write!(
                f,
                "a frame claims {payload_bytes} payload bytes, over the limit of \
                 {payload_bytes_max}"
            ),
            DecodeError::Reserved { found } => {
                write!(f, "reserved frame header byte is {found:#04x}, not zero")
            }
            DecodeError::ChecksumMismatch { stored, computed } => write!(
                f,
                "frame checksum mismatch: stored {stored:#018x}, computed {computed:#018x}"
            ),
        }
    }
}

/// The checksum of a frame: the header without its checksum field, then the payload.
fn frame_checksum(header: &[u8], payload: &[u8]) -> u64 {
    debug_assert_eq!(header.len(), FRAME_HEADER_BYTES);
    let mut hasher = Xxh3::new();
    hasher.update(&header[..CHECKSUM_AT]);
    hasher.update(&header[CHECKSUM_END..]);
    hasher.update(payload);
    hasher.digest()
}

/// The header of a frame carrying `payload`, for callers that write the payload from
/// where it is instead of copying it behind the header.
pub fn encode_header(
    channel: u16,
    kind: u8,
    payload: &[u8],
) -> Result<[u8; FRAME_HEADER_BYTES], EncodeError> {
    let payload_bytes = u32::try_from(payload.len())
        .ok()
        .filter(|bytes| *bytes <= CLUSTER_FRAME_BYTES_MAX)
        .ok_or(EncodeError::TooLarge {
            payload_bytes: payload.len() as u64,
        })?;
    let header = FrameHeader {
        payload_bytes: U32::new(payload_bytes),
        checksum: U64::new(0),
        channel: U16::new(channel),
        kind,
        reserved: 0,
    };
    let mut bytes = [0u8; FRAME_HEADER_BYTES];
    bytes.copy_from_slice(header.as_bytes());
    let checksum = frame_checksum(&bytes, payload);
    bytes[CHECKSUM_AT..CHECKSUM_END].copy_from_slice(&checksum.to_le_bytes());
    Ok(bytes)
}

/// Appends one frame to `out`; returns the bytes appended.
pub fn encode_frame(
    out: &mut Vec<u8>,
    channel: u16,
    kind: u8,
    payload: &[u8],
) -> Result<usize, EncodeError> {
    let header = encode_header(channel, kind, payload)?;
    out.extend_from_slice(&header);
    out.extend_from_slice(payload);
    Ok(FRAME_HEADER_BYTES + payload.len())
}

/// Reads and checks the header at the start of `bytes`: its length against
/// `payload_bytes_max`, its reserved byte. The checksum needs the payload:
/// [`decode_frame`] checks it.
pub fn decode_header(bytes: &[u8], payload_bytes_max: u32) -> Result<FrameHeader, DecodeError> {
    let Ok((header, _)) = FrameHeader::read_from_prefix(bytes) else {
        return Err(DecodeError::Truncated {
            needed: FRAME_HEADER_BYTES as u64,
            available: bytes.len() as u64,
        });
    };
    let payload_bytes = header.payload_bytes.get();
    if payload_bytes > payload_bytes_max {
        return Err(DecodeError::TooLarge {
            payload_bytes,
            payload_bytes_max,
        });
    }
    if header.reserved != 0 {
        return Err(DecodeError::Reserved {
            found: header.reserved,
        });
    }
    Ok(header)
}

/// Decodes and verifies the frame at the start of `bytes`, whose payload may be at most
/// `payload_bytes_max`. Trailing bytes are ignored.
pub fn decode_frame(bytes: &[u8], payload_bytes_max: u32) -> Result<FrameView<'_>, DecodeError> {
    let header = decode_header(bytes, payload_bytes_max)?;
    let payload_len = usize::try_from(header.payload_bytes.get()).expect("u32 fits usize");
    let frame_len = FRAME_HEADER_BYTES + payload_len;
    if bytes.len() < frame_len {
        return Err(DecodeError::Truncated {
            needed: frame_len as u64,
            available: bytes.len() as u64,
        });
    }
    let payload = &bytes[FRAME_HEADER_BYTES..frame_len];
    let stored = header.checksum.get();
    let computed = frame_checksum(&bytes[..FRAME_HEADER_BYTES], payload);
    if stored != computed {
        return Err(DecodeError::ChecksumMismatch { stored, computed });
    }
    Ok(FrameView {
        channel: header.channel.get(),
        kind: header.kind,
        payload,
    })
}

/// Turns a byte stream into frames as the bytes arrive, in a buffer that never holds
/// more than one largest frame ([`FrameDecoder::buffer_bytes_max`]).
///
/// Use: read into [`FrameDecoder::spare`] and [`FrameDecoder::commit`] what was read (or
/// [`FrameDecoder::feed`] a slice), then take [`FrameDecoder::next_frame`] until it
/// answers `None`; at the end of the stream [`FrameDecoder::finish`] says whether a
/// frame was cut short. The buffer grows to the size of the frame being read and shrinks
/// back once it is empty, so an idle connection holds [`CLUSTER_READ_CHUNK_BYTES`].
#[derive(Debug)]
pub struct FrameDecoder {
    payload_bytes_max: u32,
    /// Allocated room; bytes `start..end` are received and not yet decoded.
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// The first error; every later call answers it again.
    failed: Option<DecodeError>,
}

impl FrameDecoder {
    /// A decoder refusing payloads over `payload_bytes_max` (at most
    /// [`CLUSTER_FRAME_BYTES_MAX`]).
    pub fn new(payload_bytes_max: u32) -> FrameDecoder {
        assert!(
            payload_bytes_max <= CLUSTER_FRAME_BYTES_MAX,
            "frame limit {payload_bytes_max} over the ceiling {CLUSTER_FRAME_BYTES_MAX}"
        );
        FrameDecoder {
            payload_bytes_max,
            buf: Vec::new(),
            start: 0,
            end: 0,
            failed: None,
        }
    }

    /// The most bytes the buffer ever holds: one frame of the largest payload.
    pub fn buffer_bytes_max(&self) -> usize {
        FRAME_HEADER_BYTES + usize::try_from(self.payload_bytes_max).expect("u32 fits usize")
    }

    /// Bytes received and not yet returned as frames.
    pub fn buffered_bytes(&self) -> usize {
        self.end - self.start
    }

    /// Bytes the frame at the front needs in all, as far as its header is known.
    fn front_frame_bytes(&self) -> usize {
        match FrameHeader::read_from_prefix(&self.buf[self.start..self.end]) {
            Ok((header, _)) => FRAME_HEADER_BYTES
                .saturating_add(usize::try_from(header.payload_bytes.get()).unwrap_or(usize::MAX)),
            Err(_) => FRAME_HEADER_BYTES,
        }
    }

    /// Room to read into. Empty only after an error, or while a whole frame is buffered
    /// and the buffer is full (take it with [`FrameDecoder::next_frame`] first).
    pub fn spare(&mut self) -> &mut [u8] {
        if self.failed.is_some() {
            return &mut [];
        }
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let wanted = (self.end + CLUSTER_READ_CHUNK_BYTES)
            .max(self.front_frame_bytes())
            .min(self.buffer_bytes_max());
        if self.buf.len() < wanted {
            self.buf.resize(wanted, 0);
        }
        assert!(
            self.buf.len() <= self.buffer_bytes_max(),
            "buffer over its bound"
        );
        &mut self.buf[self.end..]
    }

    /// Records that `bytes` were written at the start of [`FrameDecoder::spare`].
    pub fn commit(&mut self, bytes: usize) {
        assert!(
            self.end + bytes <= self.buf.len(),
            "committed {bytes} bytes past the spare room"
        );
        self.end += bytes;
    }

    /// Copies as much of `bytes` as there is room for; returns how much was taken.
    /// Take frames and feed the rest when it is less than all.
    pub fn feed(&mut self, bytes: &[u8]) -> usize {
        let spare = self.spare();
        let taken = spare.len().min(bytes.len());
        spare[..taken].copy_from_slice(&bytes[..taken]);
        self.commit(taken);
        taken
    }

    /// The next complete, verified frame; `None` until its last byte has arrived.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, DecodeError> {
        if let Some(error) = self.failed {
            return Err(error);
        }
        let received = &self.buf[self.start..self.end];
        let (frame, frame_bytes) = match decode_frame(received, self.payload_bytes_max) {
            Ok(view) => (
                Frame {
                    channel: view.channel,
                    kind: view.kind,
                    payload: view.payload.to_vec(),
                },
                view.encoded_bytes(),
            ),
            Err(DecodeError::Truncated { .. }) => return Ok(None),
            Err(error) => {
                self.failed = Some(error);
                return Err(error);
            }
        };
        self.start += frame_bytes;
        assert!(self.start <= self.end, "a frame past the received bytes");
        if self.start == self.end {
            self.next_frame_release();
        }
        Ok(Some(frame))
    }

    /// With nothing buffered: starts over at the front and gives back the room a large
    /// frame took.
    fn next_frame_release(&mut self) {
        self.start = 0;
        self.end = 0;
        if self.buf.len() > 2 * CLUSTER_READ_CHUNK_BYTES {
            self.buf.truncate(CLUSTER_READ_CHUNK_BYTES);
            self.buf.shrink_to(CLUSTER_READ_CHUNK_BYTES);
        }
    }

    /// At the end of the stream: `Ok` when it ended between frames, the first error
    /// otherwise ([`DecodeError::Truncated`] for a frame cut short).
    pub fn finish(&self) -> Result<(), DecodeError> {
        if let Some(error) = self.failed {
            return Err(error);
        }
        if self.start == self.end {
            return Ok(());
        }
        Err(DecodeError::Truncated {
            needed: self.front_frame_bytes() as u64,
            available: self.buffered_bytes() as u64,
        })
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Encodes `frames`, feeds the bytes to a decoder in pieces of `chunk` bytes and
    /// returns what it decoded, checking the buffer bound on the way.
    fn check(frames: &[Frame], chunk: usize, payload_bytes_max: u32) -> Vec<Frame> {
        let mut bytes = Vec::new();
        for frame in frames {
            encode_frame(&mut bytes, frame.channel, frame.kind, &frame.payload).unwrap();
        }
        let mut decoder = FrameDecoder::new(payload_bytes_max);
        let mut decoded = Vec::new();
        let mut rest = &bytes[..];
        while !rest.is_empty() {
            let taken = decoder.feed(&rest[..chunk.min(rest.len())]);
            rest = &rest[taken..];
            assert!(decoder.buffered_bytes() <= decoder.buffer_bytes_max());
            while let Some(frame) = decoder.next_frame().unwrap() {
                decoded.push(frame);
            }
            assert!(!decoder.spare().is_empty(), "room after taking every frame");
        }
        decoder.finish().unwrap();
        decoded
    }

    fn frame(channel: u16, kind: u8, payload: &[u8]) -> Frame {
        Frame {
            channel,
            kind,
            payload: payload.to_vec(),
        }
    }

    #[test]
    fn frames_survive_every_chunking() {
        // Goal: the decoder finds frame boundaries whatever the reads look like. Method:
        // the same frames, fed one byte at a time up to all at once.
        let frames = vec![
            frame(0, 1, b""),
            frame(3, 7, b"hello"),
            frame(u16::MAX, u8::MAX, &[0xAB; 70_000]),
            frame(1, 2, b"x"),
        ];
        for chunk in [1, 3, 15, 16, 17, 1000, 65_536, 200_000] {
            assert_eq!(
                check(&frames, chunk, CLUSTER_FRAME_BYTES_MAX),
                frames,
                "{chunk}"
            );
        }
    }

    #[test]
    fn every_flipped_bit_is_detected() {
        // Goal: the checksum covers every header field and the payload. Method: flip
        // each bit of a small frame in turn and expect decoding to fail.
        let mut bytes = Vec::new();
        encode_frame(&mut bytes, 5, 9, b"payload").unwrap();
        assert!(decode_frame(&bytes, 1024).is_ok());
        for bit in 0..bytes.len() * 8 {
            let mut flipped = bytes.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            assert!(
                decode_frame(&flipped, 1024).is_err(),
                "bit {bit} undetected"
            );
        }
    }

    #[test]
    fn a_length_over_the_limit_is_refused_from_the_header() {
        // Goal: a hostile length costs no buffer. Method: a header claiming one byte
        // over the limit, fed alone; the encoder refuses such a payload too.
        let mut bytes = Vec::new();
        encode_frame(&mut bytes, 0, 1, &[7; 101]).unwrap();
        let mut decoder = FrameDecoder::new(100);
        decoder.feed(&bytes[..FRAME_HEADER_BYTES]);
        let error = decoder.next_frame().unwrap_err();
        assert_eq!(
            error,
            DecodeError::TooLarge {
                payload_bytes: 101,
                payload_bytes_max: 100
            }
        );
        assert_eq!(decoder.next_frame().unwrap_err(), error, "errors stick");
        assert!(decoder.spare().is_empty());
        assert_eq!(decoder.finish().unwrap_err(), error);
        let huge = vec![0u8; CLUSTER_FRAME_BYTES_MAX as usize + 1];
        assert!(matches!(
            encode_frame(&mut Vec::new(), 0, 1, &huge),
            Err(EncodeError::TooLarge { .. })
        ));
        assert!(
            encode_header(0, 1, &huge[1..]).is_ok(),
            "the limit itself fits"
        );
    }

    #[test]
    fn truncation_and_reserved_bytes_are_typed_errors() {
        let mut bytes = Vec::new();
        encode_frame(&mut bytes, 2, 3, b"abcdef").unwrap();
        assert_eq!(
            decode_frame(&bytes[..10], 64).unwrap_err(),
            DecodeError::Truncated {
                needed: 16,
                available: 10
            }
        );
        assert_eq!(
            decode_frame(&bytes[..20], 64).unwrap_err(),
            DecodeError::Truncated {
                needed: 22,
                available: 20
            }
        );
        let mut decoder = FrameDecoder::new(64);
        decoder.feed(&bytes[..20]);
        assert_eq!(decoder.next_frame(), Ok(None));
        assert_eq!(
            decoder.finish().unwrap_err(),
            DecodeError::Truncated {
                needed: 22,
                available: 20
            }
        );
        let mut reserved = bytes.clone();
        reserved[15] = 1;
        assert_eq!(
            decode_frame(&reserved, 64).unwrap_err(),
            DecodeError::Reserved { found: 1 }
        );
        let mut corrupt = bytes;
        corrupt[FRAME_HEADER_BYTES] ^= 0x20;
        assert!(matches!(
            decode_frame(&corrupt, 64),
            Err(DecodeError::ChecksumMismatch { .. })
        ));
    }

    #[test]
    fn the_buffer_shrinks_back_after_a_large_frame() {
        let frames = vec![frame(0, 1, &vec![1; 1 << 20]), frame(0, 1, b"small")];
        let mut bytes = Vec::new();
        for frame in &frames {
            encode_frame(&mut bytes, frame.channel, frame.kind, &frame.payload).unwrap();
        }
        let mut decoder = FrameDecoder::new(CLUSTER_FRAME_BYTES_MAX);
        let large = FRAME_HEADER_BYTES + (1 << 20);
        let mut fed = 0;
        while fed < large {
            fed += decoder.feed(&bytes[fed..large]);
        }
        assert_eq!(decoder.next_frame().unwrap().unwrap(), frames[0]);
        assert!(decoder.spare().len() <= CLUSTER_READ_CHUNK_BYTES);
        decoder.feed(&bytes[large..]);
        assert_eq!(decoder.next_frame().unwrap().unwrap(), frames[1]);
    }

    proptest! {
        #[test]
        fn model_decoded_frames_equal_the_encoded_ones(
            frames in proptest::collection::vec(
                (any::<u16>(), any::<u8>(), proptest::collection::vec(any::<u8>(), 0..300)),
                0..20,
            ),
            chunk in 1usize..600,
        ) {
            // Goal: whatever the frames and the read sizes, the decoder returns exactly
            // the frames encoded, in order. Method: the encoded list is the model.
            let frames: Vec<Frame> = frames
                .into_iter()
                .map(|(channel, kind, payload)| Frame { channel, kind, payload })
                .collect();
            prop_assert_eq!(check(&frames, chunk, 300), frames);
        }
    }
}
