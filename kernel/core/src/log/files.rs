//! File helpers shared by sealing (append), retention, truncation and recovery: index
//! files and the truncation record.

use xxhash_rust::xxh3::xxh3_64;
use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::limits::BLOCK_BYTES;
use crate::offset_index::{OffsetIndex, SegmentSummary};
use crate::segment::index_name;
use crate::storage::{IoError, IoErrorKind, Storage, StorageFile};
use crate::term_runs::TermRuns;
use crate::types::Offset;

pub(super) async fn remove_if_present<S: Storage>(
    storage: &S,
    name: &str,
) -> Result<(), (String, IoError)> {
    match storage.remove(name).await {
        Ok(()) => Ok(()),
        Err(error) if error.kind == IoErrorKind::NotFound => Ok(()),
        Err(error) => Err((name.to_string(), error)),
    }
}

pub(super) async fn write_index_file<S: Storage>(
    storage: &S,
    index: &OffsetIndex,
    summary: &SegmentSummary,
    terms: &TermRuns,
) -> Result<(), (String, IoError)> {
    let name = index_name(summary.base_offset);
    let bytes = index.encode_file(summary, terms, BLOCK_BYTES);
    write_new_file(storage, &name, &bytes).await
}

/// Replaces `name` with a file holding `bytes` (a multiple of [`BLOCK_BYTES`]), synced.
async fn write_new_file<S: Storage>(
    storage: &S,
    name: &str,
    bytes: &[u8],
) -> Result<(), (String, IoError)> {
    remove_if_present(storage, name).await?;
    let with_name = |error| (name.to_string(), error);
    let file = storage.create(name).await.map_err(with_name)?;
    let mut buf = file.alloc_buf(bytes.len());
    buf.as_mut().copy_from_slice(bytes);
    file.write_sync_at(buf, 0).await.map_err(with_name)
}

/// The truncation record: while it exists and is valid, a truncation to its offset is
/// under way, and recovery finishes it before anything else (docs/log.md, "Truncation").
pub const TRUNCATION_NAME: &str = "truncation.rec";

/// "SLCT" read as a little-endian u32.
const TRUNCATION_MAGIC: u32 = u32::from_le_bytes(*b"SLCT");
const TRUNCATION_VERSION: u16 = 1;

#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy, Debug)]
#[repr(C)]
struct TruncationRecord {
    /// xxh3-64 of the bytes after this field.
    checksum: U64,
    magic: U32,
    version: U16,
    flags: U16,
    /// Every record at or after this offset is being removed.
    offset: U64,
}

const TRUNCATION_RECORD_BYTES: usize = core::mem::size_of::<TruncationRecord>();
const _: () = assert!(TRUNCATION_RECORD_BYTES == 24);

/// The truncation record for `offset`, padded to one block.
pub(super) fn encode_truncation(offset: Offset) -> Vec<u8> {
    let mut record = TruncationRecord {
        checksum: U64::new(0),
        magic: U32::new(TRUNCATION_MAGIC),
        version: U16::new(TRUNCATION_VERSION),
        flags: U16::new(0),
        offset: U64::new(offset.0),
    };
    record.checksum = U64::new(xxh3_64(&record.as_bytes()[8..]));
    let mut bytes = record.as_bytes().to_vec();
    bytes.resize(usize::try_from(BLOCK_BYTES).expect("small"), 0);
    bytes
}

/// The offset of a valid truncation record; `None` for anything else (a record whose
/// write a crash interrupted).
pub(super) fn decode_truncation(bytes: &[u8]) -> Option<Offset> {
    let (record, _) = TruncationRecord::read_from_prefix(bytes).ok()?;
    let valid = record.checksum.get() == xxh3_64(&record.as_bytes()[8..])
        && record.magic.get() == TRUNCATION_MAGIC
        && record.version.get() == TRUNCATION_VERSION
        && record.flags.get() == 0;
    valid.then_some(Offset(record.offset.get()))
}

/// Writes and syncs the truncation record (its directory entry is durable on create).
pub(super) async fn write_truncation<S: Storage>(
    storage: &S,
    offset: Offset,
) -> Result<(), (String, IoError)> {
    write_new_file(storage, TRUNCATION_NAME, &encode_truncation(offset)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_record_roundtrip_and_every_flip_rejected() {
        let bytes = encode_truncation(Offset(1234));
        assert_eq!(bytes.len() as u64, BLOCK_BYTES);
        assert_eq!(decode_truncation(&bytes), Some(Offset(1234)));
        for bit in 0..TRUNCATION_RECORD_BYTES * 8 {
            let mut flipped = bytes.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            assert_eq!(decode_truncation(&flipped), None, "bit {bit}");
        }
        assert_eq!(decode_truncation(&bytes[..20]), None);
        assert_eq!(decode_truncation(&[0; 4096]), None);
    }
}
