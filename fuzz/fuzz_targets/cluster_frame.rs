//! Arbitrary bytes as a cluster connection's stream into `sluice_core::frame`, as they
//! come and with the frames' checksums repaired. Input layout: one byte choosing the
//! read size (1 to 256 bytes), one choosing the decoder's payload limit (0 to 16320
//! bytes, in steps of 64), then the stream.
//!
//! The incremental decoder, fed in reads of that size, must return exactly the frames
//! that `decode_frame` finds one after the other, end with the same error or truncation,
//! never hold more than its bound, and every frame must re-encode to the bytes it came
//! from.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_core::frame::{decode_frame, encode_frame, DecodeError, Frame, FrameDecoder};
use sluice_fuzz::repair_frames;

fuzz_target!(|data: &[u8]| {
    let [chunk, limit, stream @ ..] = data else {
        return;
    };
    let chunk = usize::from(*chunk) + 1;
    let payload_bytes_max = u32::from(*limit) * 64;
    check(stream, chunk, payload_bytes_max);
    let mut repaired = stream.to_vec();
    repair_frames(&mut repaired);
    if repaired != stream {
        check(&repaired, chunk, payload_bytes_max);
    }
});

/// How a walk over a stream ended.
#[derive(Debug, PartialEq, Eq)]
enum End {
    Clean,
    Truncated,
    Failed(DecodeError),
}

fn check(stream: &[u8], chunk: usize, payload_bytes_max: u32) {
    let (expected, expected_end) = one_by_one(stream, payload_bytes_max);
    let (decoded, end) = incremental(stream, chunk, payload_bytes_max);
    assert_eq!(decoded, expected);
    assert_eq!(end, expected_end);
    let mut position = 0;
    for frame in &decoded {
        let mut encoded = Vec::new();
        let frame_bytes = encode_frame(&mut encoded, frame.channel, frame.kind, &frame.payload)
            .expect("a decoded frame is within the limit");
        assert_eq!(&stream[position..position + frame_bytes], &encoded[..]);
        position += frame_bytes;
    }
}

fn one_by_one(stream: &[u8], payload_bytes_max: u32) -> (Vec<Frame>, End) {
    let mut frames = Vec::new();
    let mut rest = stream;
    // Bounded: every frame takes at least its header from `rest`.
    while !rest.is_empty() {
        match decode_frame(rest, payload_bytes_max) {
            Ok(view) => {
                frames.push(Frame {
                    channel: view.channel,
                    kind: view.kind,
                    payload: view.payload.to_vec(),
                });
                rest = &rest[view.encoded_bytes()..];
            }
            Err(DecodeError::Truncated { .. }) => return (frames, End::Truncated),
            Err(error) => return (frames, End::Failed(error)),
        }
    }
    (frames, End::Clean)
}

fn incremental(stream: &[u8], chunk: usize, payload_bytes_max: u32) -> (Vec<Frame>, End) {
    let mut decoder = FrameDecoder::new(payload_bytes_max);
    let mut frames = Vec::new();
    let mut rest = stream;
    // Bounded: each pass either takes bytes or ends (the decoder has room once every
    // complete frame is taken).
    while !rest.is_empty() {
        let taken = decoder.feed(&rest[..chunk.min(rest.len())]);
        rest = &rest[taken..];
        assert!(decoder.buffered_bytes() <= decoder.buffer_bytes_max());
        loop {
            match decoder.next_frame() {
                Ok(Some(frame)) => frames.push(frame),
                Ok(None) => break,
                Err(error) => return (frames, End::Failed(error)),
            }
        }
        assert!(
            taken > 0 || !decoder.spare().is_empty(),
            "no room and no frame"
        );
    }
    match decoder.finish() {
        Ok(()) => (frames, End::Clean),
        Err(DecodeError::Truncated { .. }) => (frames, End::Truncated),
        Err(error) => unreachable!("finish reported {error:?} that next_frame did not"),
    }
}
