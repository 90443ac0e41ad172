//! The on-disk record format: batches of records, one checksum per batch.
//!
//! A batch is a fixed 64-byte [`BatchHeader`] followed by `record_count` records, each a
//! fixed 24-byte [`RecordHeader`] followed by its attribute bytes and payload bytes. Every
//! integer is little-endian and read and written through `zerocopy` derives, never by hand.
//! The xxh3-64 checksum in the first eight bytes covers every byte after it, header and
//! body, so any flipped bit in a batch is detected. Batches are padded with zeros to
//! [`BATCH_ALIGN_BYTES`] so that recovery can search for the next header when a length
//! field itself is damaged.
//!
//! This module owns encoding and validation only. It never allocates beyond the caller's
//! output buffer and never panics on any input: decoding arbitrary bytes (the fuzz target)
//! returns a typed [`DecodeError`].

use xxhash_rust::xxh3::xxh3_64;
use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::limits::{BATCH_BYTES_MAX, BATCH_RECORDS_MAX};
use crate::types::Offset;

/// "SLCB" read as a little-endian u32.
pub const BATCH_MAGIC: u32 = u32::from_le_bytes(*b"SLCB");
/// The only batch version this build writes and reads.
pub const BATCH_VERSION: u16 = 1;
/// Every batch starts at a multiple of this within its segment.
pub const BATCH_ALIGN_BYTES: u64 = 8;
pub const BATCH_HEADER_BYTES: usize = 64;
pub const RECORD_HEADER_BYTES: usize = 24;
/// Bytes of the header that the checksum does not cover (the checksum itself).
const CHECKSUM_BYTES: usize = 8;

/// The fixed header of a batch. Field order is the on-disk order.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy, Debug)]
#[repr(C)]
pub struct BatchHeader {
    /// xxh3-64 of bytes `8..batch_bytes` of the batch.
    pub checksum: U64,
    pub magic: U32,
    pub version: U16,
    /// The epoch of the segment file's life this batch was written in (the old
    /// reserved `flags` field, docs/log.md D12): recovery ends a segment's data at the
    /// first batch of another epoch, a leftover of the file's previous life (a recycled
    /// file). 0 in batches written before epochs existed; 0 is never a segment's epoch.
    pub epoch: U16,
    /// Header plus records, without the alignment padding.
    pub batch_bytes: U32,
    pub record_count: U32,
    pub base_offset: U64,
    pub timestamp_ms_min: U64,
    pub timestamp_ms_max: U64,
    /// Segment position below which the log was durable when this batch was encoded.
    /// Recovery uses it to tell a torn tail (truncate) from corruption of data that was
    /// already synced (refuse to start).
    pub durable_position: U64,
    /// The Raft term of every record in the batch. Batches written before terms existed
    /// hold 0 here (the field was reserved and zero), and 0 stays legal: it means "no
    /// term". The header version stays 1.
    pub term: U64,
}

/// The fixed header of one record inside a batch.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy, Debug)]
#[repr(C)]
pub struct RecordHeader {
    pub timestamp_ms: U64,
    /// Offset minus the batch's base offset; always the record's index in the batch.
    pub offset_delta: U32,
    pub attributes_bytes: U32,
    pub payload_bytes: U32,
    /// Reserved, zero.
    pub flags: U32,
}

const _: () = assert!(core::mem::size_of::<BatchHeader>() == BATCH_HEADER_BYTES);
const _: () = assert!(core::mem::size_of::<RecordHeader>() == RECORD_HEADER_BYTES);
const _: () = assert!((BATCH_HEADER_BYTES as u64).is_multiple_of(BATCH_ALIGN_BYTES));

/// One record to append. Attributes are opaque to the log; the queue engine gives them
/// meaning.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordInput<'a> {
    pub timestamp_ms: u64,
    pub attributes: &'a [u8],
    pub payload: &'a [u8],
}

/// One decoded record, borrowing from the batch bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordView<'a> {
    pub offset: Offset,
    pub timestamp_ms: u64,
    pub attributes: &'a [u8],
    pub payload: &'a [u8],
}

/// Why a set of records cannot be one batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EncodeError {
    Empty,
    TooManyRecords { record_count: u64 },
    TooLarge { batch_bytes: u64 },
}

impl std::fmt::Display for EncodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EncodeError::Empty => write!(f, "a batch needs at least one record"),
            EncodeError::TooManyRecords { record_count } => write!(
                f,
                "{record_count} records exceed the batch limit of {BATCH_RECORDS_MAX}"
            ),
            EncodeError::TooLarge { batch_bytes } => write!(
                f,
                "{batch_bytes} encoded bytes exceed the batch limit of {BATCH_BYTES_MAX}"
            ),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// Every header byte is zero: the end of written data in a preallocated file.
    Zeroed,
    /// Fewer bytes than the header or than `batch_bytes` says.
    Truncated {
        needed: u64,
        available: u64,
    },
    BadMagic {
        found: u32,
    },
    BadVersion {
        found: u16,
    },
    BadLength {
        batch_bytes: u32,
    },
    ChecksumMismatch {
        stored: u64,
        computed: u64,
    },
    /// The checksum matched but the records do not fill the batch consistently.
    BadRecord {
        record_index: u32,
    },
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::Zeroed => write!(f, "zeroed header"),
            DecodeError::Truncated { needed, available } => {
                write!(
                    f,
                    "truncated batch: needs {needed} bytes, {available} present"
                )
            }
            DecodeError::BadMagic { found } => write!(f, "bad batch magic {found:#010x}"),
            DecodeError::BadVersion { found } => write!(f, "unknown batch version {found}"),
            DecodeError::BadLength { batch_bytes } => {
                write!(f, "impossible batch length {batch_bytes}")
            }
            DecodeError::ChecksumMismatch { stored, computed } => write!(
                f,
                "checksum mismatch: stored {stored:#018x}, computed {computed:#018x}"
            ),
            DecodeError::BadRecord { record_index } => {
                write!(f, "record {record_index} does not fit its batch")
            }
        }
    }
}

/// What [`encode_batch`] appended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EncodedBatch {
    /// Bytes appended including alignment padding.
    pub encoded_bytes: u64,
    pub record_count: u32,
    pub timestamp_ms_max: u64,
}

/// The number of bytes (with padding) a batch of these records takes.
pub fn batch_encoded_bytes(records: &[RecordInput<'_>]) -> u64 {
    let body: u64 = records
        .iter()
        .map(|r| RECORD_HEADER_BYTES as u64 + r.attributes.len() as u64 + r.payload.len() as u64)
        .sum();
    align_up(BATCH_HEADER_BYTES as u64 + body, BATCH_ALIGN_BYTES)
}

/// Checks a batch against the limits; returns its encoded size.
pub fn check_batch(records: &[RecordInput<'_>]) -> Result<u64, EncodeError> {
    if records.is_empty() {
        return Err(EncodeError::Empty);
    }
    let record_count = records.len() as u64;
    if record_count > u64::from(BATCH_RECORDS_MAX) {
        return Err(EncodeError::TooManyRecords { record_count });
    }
    let encoded_bytes = batch_encoded_bytes(records);
    if encoded_bytes > u64::from(BATCH_BYTES_MAX) {
        return Err(EncodeError::TooLarge {
            batch_bytes: encoded_bytes,
        });
    }
    Ok(encoded_bytes)
}

pub const fn align_up(value: u64, align: u64) -> u64 {
    value.div_ceil(align) * align
}

/// Appends one encoded, checksummed, padded batch to `out`; every record gets `term`,
/// and the batch the segment `epoch` (see [`BatchHeader::epoch`]).
pub fn encode_batch(
    out: &mut Vec<u8>,
    base_offset: Offset,
    epoch: u16,
    term: u64,
    durable_position: u64,
    records: &[RecordInput<'_>],
) -> Result<EncodedBatch, EncodeError> {
    let encoded_bytes = check_batch(records)?;
    let record_count = records.len() as u64;
    let start = out.len();
    out.extend_from_slice(&[0u8; BATCH_HEADER_BYTES]);
    let mut timestamp_ms_min = u64::MAX;
    let mut timestamp_ms_max = 0;
    for (record_index, record) in records.iter().enumerate() {
        timestamp_ms_min = timestamp_ms_min.min(record.timestamp_ms);
        timestamp_ms_max = timestamp_ms_max.max(record.timestamp_ms);
        let header = RecordHeader {
            timestamp_ms: U64::new(record.timestamp_ms),
            offset_delta: U32::new(u32::try_from(record_index).expect("bounded by limit")),
            attributes_bytes: U32::new(len_u32(record.attributes)),
            payload_bytes: U32::new(len_u32(record.payload)),
            flags: U32::new(0),
        };
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(record.attributes);
        out.extend_from_slice(record.payload);
    }
    let batch_bytes = out.len() - start;
    let header = BatchHeader {
        checksum: U64::new(0),
        magic: U32::new(BATCH_MAGIC),
        version: U16::new(BATCH_VERSION),
        epoch: U16::new(epoch),
        batch_bytes: U32::new(u32::try_from(batch_bytes).expect("bounded by BATCH_BYTES_MAX")),
        record_count: U32::new(u32::try_from(record_count).expect("bounded by limit")),
        base_offset: U64::new(base_offset.0),
        timestamp_ms_min: U64::new(timestamp_ms_min),
        timestamp_ms_max: U64::new(timestamp_ms_max),
        durable_position: U64::new(durable_position),
        term: U64::new(term),
    };
    out[start..start + BATCH_HEADER_BYTES].copy_from_slice(header.as_bytes());
    let checksum = xxh3_64(&out[start + CHECKSUM_BYTES..]);
    out[start..start + CHECKSUM_BYTES].copy_from_slice(&checksum.to_le_bytes());
    out.resize(start + usize::try_from(encoded_bytes).expect("bounded"), 0);
    debug_assert!(
        decode_batch(&out[start..]).is_ok(),
        "encoded batch must decode"
    );
    Ok(EncodedBatch {
        encoded_bytes,
        record_count: u32::try_from(record_count).expect("bounded by limit"),
        timestamp_ms_max,
    })
}

fn len_u32(bytes: &[u8]) -> u32 {
    u32::try_from(bytes.len()).expect("record parts are bounded by BATCH_BYTES_MAX")
}

/// A checksum-verified batch borrowing its bytes.
#[derive(Clone, Copy, Debug)]
pub struct BatchView<'a> {
    header: BatchHeader,
    body: &'a [u8],
}

impl<'a> BatchView<'a> {
    pub fn base_offset(&self) -> Offset {
        Offset(self.header.base_offset.get())
    }
    pub fn record_count(&self) -> u32 {
        self.header.record_count.get()
    }
    /// The offset after this batch's last record.
    pub fn next_offset(&self) -> Offset {
        Offset(self.base_offset().0 + u64::from(self.record_count()))
    }
    pub fn timestamp_ms_max(&self) -> u64 {
        self.header.timestamp_ms_max.get()
    }
    pub fn durable_position(&self) -> u64 {
        self.header.durable_position.get()
    }
    /// The epoch of the segment life the batch was written in (0: before epochs).
    pub fn epoch(&self) -> u16 {
        self.header.epoch.get()
    }
    /// The term of every record in the batch (0: written without a term).
    pub fn term(&self) -> u64 {
        self.header.term.get()
    }
    /// Bytes this batch occupies in a segment, including padding.
    pub fn encoded_bytes(&self) -> u64 {
        align_up(u64::from(self.header.batch_bytes.get()), BATCH_ALIGN_BYTES)
    }
    pub fn records(&self) -> RecordIter<'a> {
        RecordIter {
            body: self.body,
            base_offset: self.base_offset(),
            index: 0,
        }
    }
}

/// Iterates the records of a verified batch. Record structure was validated by
/// [`decode_batch`], so iteration cannot fail.
pub struct RecordIter<'a> {
    body: &'a [u8],
    base_offset: Offset,
    index: u32,
}

impl<'a> Iterator for RecordIter<'a> {
    type Item = RecordView<'a>;
    fn next(&mut self) -> Option<RecordView<'a>> {
        if self.body.is_empty() {
            return None;
        }
        let (view, rest) = split_record(self.body).expect("validated by decode_batch");
        self.body = rest;
        self.index += 1;
        Some(RecordView {
            offset: Offset(self.base_offset.0 + u64::from(view.0.offset_delta.get())),
            timestamp_ms: view.0.timestamp_ms.get(),
            attributes: view.1,
            payload: view.2,
        })
    }
}

type RecordParts<'a> = (RecordHeader, &'a [u8], &'a [u8]);

fn split_record(bytes: &[u8]) -> Option<(RecordParts<'_>, &[u8])> {
    let (header, rest) = RecordHeader::read_from_prefix(bytes).ok()?;
    let attributes_bytes = usize::try_from(header.attributes_bytes.get()).ok()?;
    let payload_bytes = usize::try_from(header.payload_bytes.get()).ok()?;
    if rest.len() < attributes_bytes {
        return None;
    }
    let (attributes, rest) = rest.split_at(attributes_bytes);
    if rest.len() < payload_bytes {
        return None;
    }
    let (payload, rest) = rest.split_at(payload_bytes);
    Some(((header, attributes, payload), rest))
}

/// Decodes and verifies the batch at the start of `bytes`. Trailing bytes are ignored.
pub fn decode_batch(bytes: &[u8]) -> Result<BatchView<'_>, DecodeError> {
    decode_batch_with(bytes, true)
}

/// Like [`decode_batch`] without the checksum (the structure is still validated): for
/// bytes this process encoded itself or already verified, such as the log's cache.
pub fn decode_batch_trusted(bytes: &[u8]) -> Result<BatchView<'_>, DecodeError> {
    decode_batch_with(bytes, false)
}

fn decode_batch_with(bytes: &[u8], verify: bool) -> Result<BatchView<'_>, DecodeError> {
    let available = bytes.len() as u64;
    let Ok((header, _)) = BatchHeader::read_from_prefix(bytes) else {
        if bytes.iter().all(|b| *b == 0) {
            return Err(DecodeError::Zeroed);
        }
        return Err(DecodeError::Truncated {
            needed: BATCH_HEADER_BYTES as u64,
            available,
        });
    };
    if header.magic.get() != BATCH_MAGIC {
        if bytes[..BATCH_HEADER_BYTES].iter().all(|b| *b == 0) {
            return Err(DecodeError::Zeroed);
        }
        return Err(DecodeError::BadMagic {
            found: header.magic.get(),
        });
    }
    if header.version.get() != BATCH_VERSION {
        return Err(DecodeError::BadVersion {
            found: header.version.get(),
        });
    }
    let batch_bytes = header.batch_bytes.get();
    let min_bytes = (BATCH_HEADER_BYTES + RECORD_HEADER_BYTES) as u32;
    if batch_bytes < min_bytes || batch_bytes > BATCH_BYTES_MAX {
        return Err(DecodeError::BadLength { batch_bytes });
    }
    let batch_len = usize::try_from(batch_bytes).expect("bounded by BATCH_BYTES_MAX");
    if bytes.len() < batch_len {
        return Err(DecodeError::Truncated {
            needed: u64::from(batch_bytes),
            available,
        });
    }
    if verify {
        let computed = xxh3_64(&bytes[CHECKSUM_BYTES..batch_len]);
        let stored = header.checksum.get();
        if computed != stored {
            return Err(DecodeError::ChecksumMismatch { stored, computed });
        }
    }
    let body = &bytes[BATCH_HEADER_BYTES..batch_len];
    validate_records(&header, body)?;
    Ok(BatchView { header, body })
}

fn validate_records(header: &BatchHeader, body: &[u8]) -> Result<(), DecodeError> {
    let record_count = header.record_count.get();
    if record_count == 0 || record_count > BATCH_RECORDS_MAX {
        return Err(DecodeError::BadRecord { record_index: 0 });
    }
    if header
        .base_offset
        .get()
        .checked_add(u64::from(record_count))
        .is_none()
    {
        // Offsets past u64::MAX cannot have been written.
        return Err(DecodeError::BadRecord {
            record_index: record_count - 1,
        });
    }
    let mut rest = body;
    let mut timestamp_ms_max = 0;
    for record_index in 0..record_count {
        let Some(((record, _, _), tail)) = split_record(rest) else {
            return Err(DecodeError::BadRecord { record_index });
        };
        if record.offset_delta.get() != record_index {
            return Err(DecodeError::BadRecord { record_index });
        }
        timestamp_ms_max = timestamp_ms_max.max(record.timestamp_ms.get());
        rest = tail;
    }
    if !rest.is_empty() || timestamp_ms_max != header.timestamp_ms_max.get() {
        return Err(DecodeError::BadRecord {
            record_index: record_count,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_roundtrip(records: &[RecordInput<'_>]) -> Vec<u8> {
        let mut out = vec![0xAA; 3];
        let encoded = encode_batch(&mut out, Offset(7), 5, 3, 0, records).unwrap();
        assert_eq!(out.len() as u64 - 3, encoded.encoded_bytes);
        let batch = decode_batch(&out[3..]).unwrap();
        assert_eq!(batch.base_offset(), Offset(7));
        assert_eq!(batch.term(), 3);
        assert_eq!(batch.epoch(), 5);
        assert_eq!(batch.encoded_bytes(), encoded.encoded_bytes);
        let decoded: Vec<_> = batch.records().collect();
        assert_eq!(decoded.len(), records.len());
        for (index, (view, input)) in decoded.iter().zip(records).enumerate() {
            assert_eq!(view.offset, Offset(7 + index as u64));
            assert_eq!(view.timestamp_ms, input.timestamp_ms);
            assert_eq!(view.attributes, input.attributes);
            assert_eq!(view.payload, input.payload);
        }
        out.split_off(3)
    }

    #[test]
    fn roundtrip_single_and_many() {
        check_roundtrip(&[RecordInput {
            timestamp_ms: 5,
            attributes: b"",
            payload: b"x",
        }]);
        let payloads: Vec<Vec<u8>> = (0..50).map(|i| vec![i as u8; i]).collect();
        let records: Vec<_> = payloads
            .iter()
            .enumerate()
            .map(|(i, p)| RecordInput {
                timestamp_ms: i as u64,
                attributes: b"tag",
                payload: p,
            })
            .collect();
        let bytes = check_roundtrip(&records);
        assert_eq!(bytes.len() as u64 % BATCH_ALIGN_BYTES, 0);
    }

    #[test]
    fn every_flipped_bit_is_detected() {
        // Goal: the checksum covers header and body. Method: flip each bit of a small
        // batch in turn (padding excluded) and expect decoding to fail.
        let record = RecordInput {
            timestamp_ms: 9,
            attributes: b"ab",
            payload: b"hello",
        };
        let bytes = check_roundtrip(&[record, record]);
        let batch_len = decode_batch(&bytes).unwrap().header.batch_bytes.get() as usize;
        for bit in 0..batch_len * 8 {
            let mut flipped = bytes.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            assert!(decode_batch(&flipped).is_err(), "bit {bit} flip undetected");
        }
    }

    #[test]
    fn offsets_past_u64_max_are_rejected() {
        // Found by the record_decode fuzz target: such a batch decoded and its
        // `next_offset` overflowed.
        let record = RecordInput {
            timestamp_ms: 1,
            attributes: b"",
            payload: b"x",
        };
        let mut out = Vec::new();
        encode_batch(&mut out, Offset(u64::MAX - 1), 1, 0, 0, &[record]).unwrap();
        assert!(decode_batch(&out).is_ok());
        // Forge base offset u64::MAX with a valid checksum.
        out[24..32].copy_from_slice(&u64::MAX.to_le_bytes());
        let batch_bytes =
            usize::try_from(u32::from_le_bytes(out[16..20].try_into().unwrap())).unwrap();
        let checksum = xxh3_64(&out[8..batch_bytes]);
        out[..8].copy_from_slice(&checksum.to_le_bytes());
        assert!(matches!(
            decode_batch(&out),
            Err(DecodeError::BadRecord { .. })
        ));
    }

    #[test]
    fn zeros_truncation_and_limits() {
        assert_eq!(decode_batch(&[0u8; 100]).unwrap_err(), DecodeError::Zeroed);
        assert_eq!(decode_batch(&[]).unwrap_err(), DecodeError::Zeroed);
        let bytes = check_roundtrip(&[RecordInput {
            timestamp_ms: 1,
            attributes: b"",
            payload: b"abc",
        }]);
        let err = decode_batch(&bytes[..bytes.len() - 9]).unwrap_err();
        assert!(matches!(err, DecodeError::Truncated { .. }), "{err:?}");
        let mut out = Vec::new();
        assert_eq!(
            encode_batch(&mut out, Offset(0), 1, 0, 0, &[]),
            Err(EncodeError::Empty)
        );
        let big = vec![0u8; BATCH_BYTES_MAX as usize];
        let err = encode_batch(
            &mut out,
            Offset(0),
            1,
            0,
            0,
            &[RecordInput {
                timestamp_ms: 0,
                attributes: b"",
                payload: &big,
            }],
        )
        .unwrap_err();
        assert!(matches!(err, EncodeError::TooLarge { .. }));
        assert!(out.is_empty());
    }
}
