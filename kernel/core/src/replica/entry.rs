//! Raft entries and log records: one encoding each way.
//!
//! Raft index `i` is the log record at offset `i - 1` (Raft counts from 1, the log from 0).
//! A command entry's data is the record itself, encoded once by the leader and carried
//! unchanged to every follower: `timestamp_ms u64 | attributes_bytes u32 | attributes |
//! payload` (little-endian). Raft's own entries become records the engine ignores: the
//! empty entry a new leader appends is a `RaftNoop` command record, and a membership
//! change is a `Membership` command record whose payload is the encoded `ConfChange`.

use bytes::Bytes;
use raft::prelude::{Entry, EntryType};

use crate::engine::command::Command;
use crate::log::ReadRecord;
use crate::record::RecordInput;
use crate::types::Offset;

const DATA_HEADER_BYTES: usize = 12;

/// The data of a command entry: a record's timestamp, attributes and payload.
pub fn encode_data(timestamp_ms: u64, attributes: &[u8], payload: &[u8]) -> Bytes {
    let mut data = Vec::with_capacity(DATA_HEADER_BYTES + attributes.len() + payload.len());
    data.extend_from_slice(&timestamp_ms.to_le_bytes());
    let attributes_bytes = u32::try_from(attributes.len()).expect("attributes are bounded");
    data.extend_from_slice(&attributes_bytes.to_le_bytes());
    data.extend_from_slice(attributes);
    data.extend_from_slice(payload);
    Bytes::from(data)
}

/// A command entry's data that does not parse (a peer's bug or a damaged frame).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BadEntry {
    pub index: u64,
}

impl std::fmt::Display for BadEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "raft entry {} does not decode as a record", self.index)
    }
}

/// The record an entry is stored as. `scratch` holds the encoded attributes of Raft's own
/// entries (no-ops, membership changes), which the record borrows.
pub fn record_of<'a>(
    entry: &'a Entry,
    scratch: &'a mut Vec<u8>,
) -> Result<RecordInput<'a>, BadEntry> {
    let bad = BadEntry { index: entry.index };
    match entry.get_entry_type() {
        EntryType::EntryNormal if entry.data.is_empty() => {
            *scratch = Command::RaftNoop.encode(&[]);
            Ok(RecordInput {
                timestamp_ms: 0,
                attributes: scratch,
                payload: &[],
            })
        }
        EntryType::EntryNormal => {
            let data: &[u8] = &entry.data;
            let header = data.get(..DATA_HEADER_BYTES).ok_or(bad)?;
            let timestamp_ms = u64::from_le_bytes(header[..8].try_into().expect("8 bytes"));
            let attributes_bytes =
                u32::from_le_bytes(header[8..12].try_into().expect("4 bytes")) as usize;
            let rest = &data[DATA_HEADER_BYTES..];
            if attributes_bytes > rest.len() {
                return Err(bad);
            }
            let (attributes, payload) = rest.split_at(attributes_bytes);
            Ok(RecordInput {
                timestamp_ms,
                attributes,
                payload,
            })
        }
        kind => {
            let v2 = kind == EntryType::EntryConfChangeV2;
            *scratch = Command::Membership { v2 }.encode(&[]);
            Ok(RecordInput {
                timestamp_ms: 0,
                attributes: scratch,
                payload: &entry.data,
            })
        }
    }
}

/// The entry a stored record came from, given the term the log keeps for it.
pub fn entry_of(record: &ReadRecord, term: u64) -> Entry {
    let mut entry = Entry {
        index: index_of(record.offset),
        term,
        ..Entry::default()
    };
    match Command::decode(&record.attributes) {
        Ok((Command::RaftNoop, _)) => {}
        Ok((Command::Membership { v2 }, _)) => {
            entry.set_entry_type(if v2 {
                EntryType::EntryConfChangeV2
            } else {
                EntryType::EntryConfChange
            });
            entry.data = record.payload.clone();
        }
        _ => {
            entry.data = encode_data(record.timestamp_ms, &record.attributes, &record.payload);
        }
    }
    entry
}

/// The Raft index of the record at `offset`.
pub fn index_of(offset: Offset) -> u64 {
    offset.0 + 1
}

/// The log offset of Raft index `index` (at least 1).
pub fn offset_of(index: u64) -> Offset {
    Offset(index - 1)
}

/// The bytes an entry costs in memory, for the bounds of the replica's caches (its tail,
/// the entries fetched for followers) and of a log batch: raft-rs's `Entry` itself (its
/// slot in a cache, 104 bytes) and its buffers. A small entry (a queue's create, an ack)
/// costs more for its slot than for its bytes; counting it at its bytes plus less than
/// its slot let a tail of small entries hold more memory than its bound.
pub fn entry_bytes(entry: &Entry) -> u64 {
    (std::mem::size_of::<Entry>() + entry.data.len() + entry.context.len()) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_back(entry: &Entry) -> Entry {
        let mut scratch = Vec::new();
        let record = record_of(entry, &mut scratch).expect("encodes");
        let stored = ReadRecord {
            offset: offset_of(entry.index),
            timestamp_ms: record.timestamp_ms,
            attributes: Bytes::copy_from_slice(record.attributes),
            payload: Bytes::copy_from_slice(record.payload),
        };
        entry_of(&stored, entry.term)
    }

    #[test]
    fn every_kind_of_entry_survives_the_log() {
        let attributes = Command::Boot.encode(&[]);
        let command = Entry {
            index: 7,
            term: 3,
            data: encode_data(1234, &attributes, b"body"),
            ..Entry::default()
        };
        let noop = Entry {
            index: 8,
            term: 4,
            ..Entry::default()
        };
        let mut change = Entry {
            index: 9,
            term: 4,
            data: Bytes::from_static(b"\x08\x01"),
            ..Entry::default()
        };
        change.set_entry_type(EntryType::EntryConfChangeV2);
        for entry in [command, noop, change] {
            assert_eq!(read_back(&entry), entry);
        }
    }

    #[test]
    fn a_short_entry_is_refused() {
        let mut entry = Entry {
            index: 2,
            data: Bytes::from_static(&[1, 2, 3]),
            ..Entry::default()
        };
        assert_eq!(
            record_of(&entry, &mut Vec::new()),
            Err(BadEntry { index: 2 })
        );
        entry.data = encode_data(1, b"abc", b"");
        let mut data = entry.data.to_vec();
        data.truncate(13);
        entry.data = Bytes::from(data);
        assert_eq!(
            record_of(&entry, &mut Vec::new()),
            Err(BadEntry { index: 2 })
        );
    }
}
