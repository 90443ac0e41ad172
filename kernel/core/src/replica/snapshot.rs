//! Raft snapshots: what a leader's snapshot message names and the chunks that carry it.
//!
//! A partition's state at Raft index `A` is the engine's state there *and* the log
//! records it still refers to (message bodies live in the log), from the leader's log
//! start `S` up to `A`, with their terms. That can be gigabytes, so the Raft snapshot
//! message carries only a [`Descriptor`] (`S` and `A`); the follower then pulls the bulk
//! from the leader in bounded chunks ([`ChunkRequest`], [`Chunk`]), carried by the host:
//! first the leader's engine snapshot file at `A` (byte ranges, block-aligned), then the
//! log records `S..A` (by offset). Only once every chunk is durable at the follower is the
//! message stepped into raft-rs, whose Ready then installs it (`replica/install.rs`).
//!
//! Every encoding here is little-endian with a magic number; decoding never panics and
//! bounds every length (bad bytes from a peer are an error, never a crash).

use crate::engine::codec::{CodecError, Reader, Writer};
use crate::limits::{BLOCK_BYTES, REPLICA_SNAPSHOT_CHUNK_BYTES_MAX};
use crate::log::ReadRecord;
use crate::types::Offset;

const DESCRIPTOR_MAGIC: u64 = u64::from_le_bytes(*b"SLRSNAP1");
const REQUEST_MAGIC: u32 = u32::from_le_bytes(*b"SLCQ");
const CHUNK_MAGIC: u32 = u32::from_le_bytes(*b"SLCK");

/// What a Raft snapshot message's data says: the snapshot at `index` (the leader's
/// engine snapshot there) with the log records from offset `start` up to `index`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Descriptor {
    /// The first log offset the snapshot carries (the leader's log start, pinned).
    pub start: u64,
    /// The Raft index (and engine applied offset) the snapshot is at.
    pub index: u64,
}

impl Descriptor {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.u64(DESCRIPTOR_MAGIC).u64(self.start).u64(self.index);
        w.bytes
    }

    pub fn decode(bytes: &[u8]) -> Result<Descriptor, SnapshotError> {
        let mut r = Reader::new(bytes);
        if r.u64()? != DESCRIPTOR_MAGIC {
            return Err(SnapshotError::Malformed);
        }
        let descriptor = Descriptor {
            start: r.u64()?,
            index: r.u64()?,
        };
        // The snapshot carries at least the record at index (offset index - 1).
        if !r.is_empty() || descriptor.index == 0 || descriptor.start >= descriptor.index {
            return Err(SnapshotError::Malformed);
        }
        Ok(descriptor)
    }
}

/// The two parts of a snapshot's bulk, transferred in this order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Section {
    /// The bytes of the leader's engine snapshot file; positions are byte positions.
    Engine,
    /// The log records from the descriptor's start; positions are log offsets.
    Log,
}

impl Section {
    fn code(self) -> u8 {
        match self {
            Section::Engine => 0,
            Section::Log => 1,
        }
    }

    fn of(code: u8) -> Result<Section, SnapshotError> {
        match code {
            0 => Ok(Section::Engine),
            1 => Ok(Section::Log),
            _ => Err(SnapshotError::Malformed),
        }
    }
}

/// A follower's request for the next chunk of the snapshot at (`index`, `term`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkRequest {
    pub index: u64,
    pub term: u64,
    pub section: Section,
    pub position: u64,
    /// At most [`REPLICA_SNAPSHOT_CHUNK_BYTES_MAX`].
    pub bytes_max: u32,
}

impl ChunkRequest {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.u32(REQUEST_MAGIC)
            .u64(self.index)
            .u64(self.term)
            .u8(self.section.code())
            .u64(self.position)
            .u32(self.bytes_max);
        w.bytes
    }

    pub fn decode(bytes: &[u8]) -> Result<ChunkRequest, SnapshotError> {
        let mut r = Reader::new(bytes);
        if r.u32()? != REQUEST_MAGIC {
            return Err(SnapshotError::Malformed);
        }
        let request = ChunkRequest {
            index: r.u64()?,
            term: r.u64()?,
            section: Section::of(r.u8()?)?,
            position: r.u64()?,
            bytes_max: r.u32()?,
        };
        if !r.is_empty() || request.bytes_max > REPLICA_SNAPSHOT_CHUNK_BYTES_MAX {
            return Err(SnapshotError::Malformed);
        }
        Ok(request)
    }
}

/// A leader's answer to a [`ChunkRequest`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chunk {
    pub index: u64,
    pub term: u64,
    pub section: Section,
    /// Where `data` starts (as requested).
    pub position: u64,
    /// Where the next chunk of this section starts.
    pub next: u64,
    /// The section's end: the engine snapshot file's size, or the log offset `index`.
    pub end: u64,
    /// Engine section: file bytes. Log section: records ([`encode_record`]).
    pub data: Vec<u8>,
}

impl Chunk {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.u32(CHUNK_MAGIC)
            .u64(self.index)
            .u64(self.term)
            .u8(self.section.code())
            .u64(self.position)
            .u64(self.next)
            .u64(self.end)
            .bytes(&self.data);
        w.bytes
    }

    pub fn decode(bytes: &[u8]) -> Result<Chunk, SnapshotError> {
        let mut r = Reader::new(bytes);
        if r.u32()? != CHUNK_MAGIC {
            return Err(SnapshotError::Malformed);
        }
        let chunk = Chunk {
            index: r.u64()?,
            term: r.u64()?,
            section: Section::of(r.u8()?)?,
            position: r.u64()?,
            next: r.u64()?,
            end: r.u64()?,
            data: r.bytes()?.to_vec(),
        };
        let bounded = chunk.data.len() <= REPLICA_SNAPSHOT_CHUNK_BYTES_MAX as usize;
        let moves = chunk.position <= chunk.next && chunk.next <= chunk.end;
        if !r.is_empty() || !bounded || !moves {
            return Err(SnapshotError::Malformed);
        }
        if chunk.section == Section::Engine {
            let aligned = chunk.position.is_multiple_of(BLOCK_BYTES);
            let length = chunk.next - chunk.position == chunk.data.len() as u64;
            if !aligned || !length {
                return Err(SnapshotError::Malformed);
            }
        }
        Ok(chunk)
    }
}

/// A leader's answer to a chunk request as bytes: a tag, then the chunk or the error.
pub fn encode_answer(answer: &Result<Chunk, SnapshotError>) -> Vec<u8> {
    let mut w = Writer::default();
    match answer {
        Ok(chunk) => {
            w.u8(0);
            w.bytes.extend_from_slice(&chunk.encode());
        }
        Err(SnapshotError::UnknownTransfer) => {
            w.u8(1);
        }
        Err(SnapshotError::Malformed) => {
            w.u8(2);
        }
        Err(SnapshotError::Unexpected) => {
            w.u8(3);
        }
        Err(SnapshotError::Io(detail)) => {
            let detail = &detail.as_bytes()[..detail.len().min(ERROR_DETAIL_BYTES_MAX)];
            w.u8(4).bytes(detail);
        }
    }
    w.bytes
}

/// An answer [`encode_answer`] made; bytes that do not decode are `Malformed`.
pub fn decode_answer(bytes: &[u8]) -> Result<Chunk, SnapshotError> {
    let (tag, rest) = bytes.split_first().ok_or(SnapshotError::Malformed)?;
    match (tag, rest.is_empty()) {
        (0, _) => Chunk::decode(rest),
        (1, true) => Err(SnapshotError::UnknownTransfer),
        (3, true) => Err(SnapshotError::Unexpected),
        (4, _) => {
            let mut r = Reader::new(rest);
            let detail = r.bytes()?;
            if !r.is_empty() || detail.len() > ERROR_DETAIL_BYTES_MAX {
                return Err(SnapshotError::Malformed);
            }
            Err(SnapshotError::Io(
                String::from_utf8_lossy(detail).into_owned(),
            ))
        }
        _ => Err(SnapshotError::Malformed),
    }
}

/// The most bytes of an I/O error's text an answer carries.
const ERROR_DETAIL_BYTES_MAX: usize = 512;

/// One log record of a log-section chunk, with its term.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TermRecord {
    pub term: u64,
    pub record: ReadRecord,
}

/// Appends `record` (of `term`) to a log-section chunk's data.
pub fn encode_record(data: &mut Vec<u8>, term: u64, record: &ReadRecord) {
    let mut w = Writer {
        bytes: std::mem::take(data),
    };
    w.u64(record.offset.0)
        .u64(term)
        .u64(record.timestamp_ms)
        .bytes(&record.attributes)
        .bytes(&record.payload);
    *data = w.bytes;
}

/// The bytes [`encode_record`] adds for a record.
pub fn record_bytes(record: &ReadRecord) -> u64 {
    (32 + record.attributes.len() + record.payload.len()) as u64
}

/// The records of a log-section chunk's data, which must be consecutive from `first`.
pub fn decode_records(data: &[u8], first: u64) -> Result<Vec<TermRecord>, SnapshotError> {
    let mut r = Reader::new(data);
    let mut records = Vec::new();
    let mut expected = first;
    // Bounded by the data's length: every record takes at least 32 bytes.
    while !r.is_empty() {
        let offset = r.u64()?;
        let term = r.u64()?;
        let timestamp_ms = r.u64()?;
        let attributes = bytes::Bytes::copy_from_slice(r.bytes()?);
        let payload = bytes::Bytes::copy_from_slice(r.bytes()?);
        if offset != expected {
            return Err(SnapshotError::Malformed);
        }
        expected += 1;
        records.push(TermRecord {
            term,
            record: ReadRecord {
                offset: Offset(offset),
                timestamp_ms,
                attributes,
                payload,
            },
        });
    }
    Ok(records)
}

/// Why a snapshot chunk could not be served or taken.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SnapshotError {
    /// The bytes do not decode (a peer's bug or a damaged frame).
    Malformed,
    /// The leader has no transfer of that snapshot to that follower (it expired, or the
    /// leader restarted or lost the lead): the follower gives the install up.
    UnknownTransfer,
    /// The chunk does not continue the install under way (a duplicate or a late answer).
    Unexpected,
    /// A disk error reading or staging a chunk.
    Io(String),
}

impl std::fmt::Display for SnapshotError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SnapshotError::Malformed => write!(f, "malformed snapshot chunk"),
            SnapshotError::UnknownTransfer => write!(f, "no such snapshot transfer"),
            SnapshotError::Unexpected => write!(f, "chunk does not continue the install"),
            SnapshotError::Io(detail) => write!(f, "snapshot transfer: {detail}"),
        }
    }
}

impl From<CodecError> for SnapshotError {
    fn from(_: CodecError) -> SnapshotError {
        SnapshotError::Malformed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_message_survives_its_encoding_and_bad_bytes_are_refused() {
        let descriptor = Descriptor { start: 3, index: 9 };
        assert_eq!(Descriptor::decode(&descriptor.encode()), Ok(descriptor));
        let request = ChunkRequest {
            index: 9,
            term: 2,
            section: Section::Log,
            position: 4,
            bytes_max: 1 << 20,
        };
        assert_eq!(ChunkRequest::decode(&request.encode()), Ok(request));
        let record = ReadRecord {
            offset: Offset(4),
            timestamp_ms: 7,
            attributes: bytes::Bytes::from_static(&[1, 2]),
            payload: bytes::Bytes::from_static(b"body"),
        };
        let mut data = Vec::new();
        encode_record(&mut data, 2, &record);
        assert_eq!(data.len() as u64, record_bytes(&record));
        let chunk = Chunk {
            index: 9,
            term: 2,
            section: Section::Log,
            position: 4,
            next: 5,
            end: 9,
            data: data.clone(),
        };
        assert_eq!(Chunk::decode(&chunk.encode()), Ok(chunk.clone()));
        let decoded = decode_records(&data, 4).unwrap();
        assert_eq!(decoded, vec![TermRecord { term: 2, record }]);
        assert_eq!(decode_records(&data, 5), Err(SnapshotError::Malformed));
        // Every truncation of every encoding is refused, never a panic.
        let encoded = chunk.encode();
        for end in 0..encoded.len() {
            assert!(Chunk::decode(&encoded[..end]).is_err());
        }
        for end in 1..data.len() {
            assert!(decode_records(&data[..end], 4).is_err());
        }
        for answer in [
            Ok(chunk.clone()),
            Err(SnapshotError::UnknownTransfer),
            Err(SnapshotError::Malformed),
            Err(SnapshotError::Unexpected),
            Err(SnapshotError::Io("disk".into())),
        ] {
            assert_eq!(decode_answer(&encode_answer(&answer)), answer);
        }
        assert_eq!(decode_answer(&[]), Err(SnapshotError::Malformed));
        assert_eq!(decode_answer(&[9]), Err(SnapshotError::Malformed));
        assert!(Descriptor::decode(&[0; 24]).is_err());
        assert!(ChunkRequest::decode(b"junk").is_err());
    }
}
