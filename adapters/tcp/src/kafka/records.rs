//! Records: Kafka record batches in (Produce) and out (Fetch), and what a Kafka record
//! keeps in a Sluice message's attributes.
//!
//! One Kafka record is one Sluice message: its value is the body, and its key, headers
//! and timestamp are the message's attributes in the binary form below (which cannot be
//! mistaken for the DMS adapter's JSON attributes: it starts with a NUL byte). A message
//! sent through another API reads as a record with no key, its send time as timestamp,
//! and its attributes, if any, as the header `sluice.attributes`.

use std::io::Read;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use sluice_core::engine::read_at::StoredMessage;

use super::{BATCH_BYTES_MAX, RECORDS_PER_BATCH_MAX};

/// The first bytes of Kafka attributes: a NUL (never the start of DMS JSON), 'K', and
/// the format version.
const MAGIC: [u8; 3] = [0, b'K', 1];
/// The header under which a message's non-Kafka attributes are shown to Kafka clients.
pub const FOREIGN_ATTRIBUTES_HEADER: &str = "sluice.attributes";

/// A record's key, headers and timestamp.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KafkaAttributes {
    pub timestamp_ms: i64,
    pub key: Option<Bytes>,
    pub headers: Vec<(Bytes, Option<Bytes>)>,
}

pub fn encode_attributes(attributes: &KafkaAttributes) -> Vec<u8> {
    let mut size = MAGIC.len() + 8 + 4 + 4;
    size += attributes.key.as_ref().map_or(0, Bytes::len);
    for (name, value) in &attributes.headers {
        size += 8 + name.len() + value.as_ref().map_or(0, Bytes::len);
    }
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(&MAGIC);
    out.put_i64(attributes.timestamp_ms);
    put_optional(&mut out, attributes.key.as_ref());
    out.put_u32(u32::try_from(attributes.headers.len()).expect("bounded by the batch"));
    for (name, value) in &attributes.headers {
        put_optional(&mut out, Some(name));
        put_optional(&mut out, value.as_ref());
    }
    out
}

/// The Kafka attributes in `bytes`, or `None` when they are not in Kafka's form (a
/// message sent through another API) or are damaged.
pub fn decode_attributes(bytes: &Bytes) -> Option<KafkaAttributes> {
    if !bytes.starts_with(&MAGIC) {
        return None;
    }
    let mut rest = bytes.slice(MAGIC.len()..);
    if rest.remaining() < 12 {
        return None;
    }
    let timestamp_ms = rest.get_i64();
    let key = take_optional(&mut rest)?;
    if rest.remaining() < 4 {
        return None;
    }
    let count = rest.get_u32();
    let mut headers = Vec::new();
    for _ in 0..count {
        let name = take_optional(&mut rest)??;
        let value = take_optional(&mut rest)?;
        headers.push((name, value));
    }
    rest.is_empty().then_some(KafkaAttributes {
        timestamp_ms,
        key,
        headers,
    })
}

fn put_optional(out: &mut Vec<u8>, value: Option<&Bytes>) {
    match value {
        Some(value) => {
            out.put_i32(i32::try_from(value.len()).expect("bounded by the frame"));
            out.extend_from_slice(value);
        }
        None => out.put_i32(-1),
    }
}

/// `None` when damaged; `Some(None)` for a null value.
fn take_optional(rest: &mut Bytes) -> Option<Option<Bytes>> {
    if rest.remaining() < 4 {
        return None;
    }
    let length = rest.get_i32();
    if length < 0 {
        return Some(None);
    }
    let length = usize::try_from(length).ok()?;
    (rest.remaining() >= length).then(|| Some(rest.split_to(length)))
}

/// Why a produced batch was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum BatchError {
    /// Damaged, or not record batch v2: CORRUPT_MESSAGE.
    Corrupt(String),
    /// More records or bytes than the named limits: MESSAGE_TOO_LARGE / RECORD_LIST_TOO_LARGE.
    TooLarge(String),
}

/// The producer's identity and first sequence number in a batch, for idempotence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Producer {
    pub id: i64,
    pub epoch: i16,
    pub base_sequence: i32,
}

/// Decodes the record batches of one partition of a Produce request, checking the
/// named limits before anything is allocated for them.
pub fn decode_batches(records: &Bytes) -> Result<(Vec<Record>, Option<Producer>), BatchError> {
    if records.len() > BATCH_BYTES_MAX {
        return Err(BatchError::TooLarge(format!(
            "{} bytes of records; at most {BATCH_BYTES_MAX}",
            records.len()
        )));
    }
    let infos = RecordBatchDecoder::decode_batch_info(&mut records.clone())
        .map_err(|error| BatchError::Corrupt(format!("record batch header: {error}")))?;
    let mut count = 0usize;
    for info in &infos {
        if info.version != 2 {
            return Err(BatchError::Corrupt(format!(
                "record batch version {}; only 2 is served",
                info.version
            )));
        }
        if info.control || info.transactional {
            return Err(BatchError::Corrupt(
                "transactional and control batches are not served".to_string(),
            ));
        }
        let records = usize::try_from(info.record_count)
            .map_err(|_| BatchError::Corrupt("a negative record count".to_string()))?;
        count = count.saturating_add(records);
    }
    if count > RECORDS_PER_BATCH_MAX {
        return Err(BatchError::TooLarge(format!(
            "{count} records; at most {RECORDS_PER_BATCH_MAX}"
        )));
    }
    let producer = infos.first().and_then(|info| {
        (info.producer_id >= 0).then_some(Producer {
            id: info.producer_id,
            epoch: info.producer_epoch,
            base_sequence: info.base_sequence,
        })
    });
    let mut buf = records.clone();
    let mut out = Vec::with_capacity(count);
    // The decompressed records of every batch together stay within the bound: many small
    // batches may not each expand to it.
    let budget = std::cell::Cell::new(BATCH_BYTES_MAX);
    let decompress = |data: &mut Bytes, compression: Compression| {
        let records = bounded_decompress(data, compression, budget.get())?;
        budget.set(budget.get() - records.len());
        Ok(records)
    };
    while buf.has_remaining() {
        let set = RecordBatchDecoder::decode_with_custom_compression(&mut buf, Some(decompress))
            .map_err(|error| BatchError::Corrupt(format!("record batch: {error}")))?;
        out.extend(set.records);
    }
    if out.len() != count {
        return Err(BatchError::Corrupt(
            "record count does not match".to_string(),
        ));
    }
    Ok((out, producer))
}

/// Decompresses a batch's records, at most `budget` bytes of them (what is left of
/// [`BATCH_BYTES_MAX`]): a small batch may not expand into gigabytes. Every codec a
/// Kafka client may use is served: gzip, snappy (raw, or in the xerial framing of Java
/// clients and librdkafka), lz4 (frame format) and zstd.
fn bounded_decompress(
    data: &mut Bytes,
    compression: Compression,
    budget: usize,
) -> anyhow::Result<Bytes> {
    let compressed = data.split_to(data.len());
    let limit = u64::try_from(budget).expect("fits") + 1;
    let mut out = Vec::new();
    match compression {
        Compression::None => {
            // No copy: the records are the request's bytes (within the bound already).
            anyhow::ensure!(
                compressed.len() <= budget,
                "records exceed {BATCH_BYTES_MAX} bytes"
            );
            return Ok(compressed);
        }
        Compression::Gzip => {
            flate2::read::GzDecoder::new(&compressed[..])
                .take(limit)
                .read_to_end(&mut out)?;
        }
        Compression::Lz4 => {
            lz4::Decoder::new(&compressed[..])?
                .take(limit)
                .read_to_end(&mut out)?;
        }
        Compression::Zstd => {
            zstd::stream::read::Decoder::new(&compressed[..])?
                .take(limit)
                .read_to_end(&mut out)?;
        }
        Compression::Snappy => out = snappy_decompress(&compressed, budget)?,
    }
    anyhow::ensure!(
        out.len() <= budget,
        "decompressed records exceed {BATCH_BYTES_MAX} bytes"
    );
    Ok(Bytes::from(out))
}

/// The header of snappy-java's framing: magic, then version 1 and compatible version 1.
const XERIAL_HEADER: &[u8; 16] = b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01";

/// Snappy, raw or xerial-framed (a sequence of length-prefixed raw blocks), checking
/// each block's declared length against the budget before allocating for it.
fn snappy_decompress(compressed: &[u8], budget: usize) -> anyhow::Result<Vec<u8>> {
    let Some(mut blocks) = compressed.strip_prefix(&XERIAL_HEADER[..]) else {
        return snappy_block(compressed, budget);
    };
    let mut out = Vec::new();
    while !blocks.is_empty() {
        anyhow::ensure!(blocks.len() >= 4, "a truncated snappy block length");
        let (length, rest) = blocks.split_at(4);
        let length = usize::try_from(u32::from_be_bytes(length.try_into().expect("4 bytes")))?;
        anyhow::ensure!(rest.len() >= length, "a truncated snappy block");
        let (block, rest) = rest.split_at(length);
        out.extend(snappy_block(block, budget - out.len())?);
        blocks = rest;
    }
    Ok(out)
}

/// One raw snappy block, refused when it is longer than what is left of the budget.
fn snappy_block(block: &[u8], budget: usize) -> anyhow::Result<Vec<u8>> {
    let length = snap::raw::decompress_len(block)?;
    anyhow::ensure!(
        length <= budget,
        "decompressed records exceed {BATCH_BYTES_MAX} bytes"
    );
    Ok(snap::raw::Decoder::new().decompress_vec(block)?)
}

/// The record batch (v2, uncompressed) that carries `messages` of one partition to a
/// Fetch. Each message keeps its position as its offset.
pub fn encode_batch(messages: &[StoredMessage]) -> Result<Bytes, String> {
    let mut records: Vec<Record> = messages.iter().map(record_of).collect();
    // One batch of no producer: a base sequence of -1, and offset - sequence the same for
    // every record (the encoder starts a new batch where it changes).
    if let Some(first) = records.first().map(|record| record.offset) {
        for record in &mut records {
            let delta = i32::try_from(record.offset - first).unwrap_or(i32::MAX);
            record.sequence = delta.wrapping_sub(1);
        }
    }
    encode_records(&records)
}

fn record_of(message: &StoredMessage) -> Record {
    let (timestamp, key, headers) = match decode_attributes(&message.attributes) {
        Some(attributes) => {
            let headers = attributes
                .headers
                .into_iter()
                .filter_map(|(name, value)| Some((StrBytes::from_utf8(name).ok()?, value)))
                .collect();
            (attributes.timestamp_ms, attributes.key, headers)
        }
        None => {
            let mut headers = IndexMap::new();
            if !message.attributes.is_empty() {
                headers.insert(
                    StrBytes::from_static_str(FOREIGN_ATTRIBUTES_HEADER),
                    Some(message.attributes.clone()),
                );
            }
            let sent = i64::try_from(message.sent_ms).unwrap_or(i64::MAX);
            (sent, None, headers)
        }
    };
    let offset = i64::try_from(message.seq).unwrap_or(i64::MAX);
    let mut record = plain_record(offset, Some(message.body.clone()));
    record.timestamp = timestamp;
    record.key = key;
    record.headers = headers;
    record
}

/// A record of no producer and no transaction at `offset`, with no key or headers and
/// timestamp 0 (a creation time): what Fetch serves once it has set those, and what
/// the tests' and the simulation's producers send. Its sequence follows its offset, so
/// consecutive records encode into one batch.
pub fn plain_record(offset: i64, value: Option<Bytes>) -> Record {
    Record {
        transactional: false,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: 0,
        producer_id: -1,
        producer_epoch: -1,
        timestamp_type: TimestampType::Creation,
        offset,
        sequence: i32::try_from(offset).unwrap_or(-1),
        timestamp: 0,
        key: None,
        value,
        headers: IndexMap::new(),
    }
}

/// One uncompressed record batch (v2) of `records`.
pub fn encode_records(records: &[Record]) -> Result<Bytes, String> {
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: Compression::None,
    };
    RecordBatchEncoder::encode(&mut buf, records, &options)
        .map_err(|error| format!("encoding a record batch: {error}"))?;
    Ok(buf.freeze())
}

/// The attributes a produced record is stored with.
pub fn attributes_of(record: &Record) -> Vec<u8> {
    encode_attributes(&KafkaAttributes {
        timestamp_ms: record.timestamp,
        key: record.key.clone(),
        headers: record
            .headers
            .iter()
            .map(|(name, value)| (name.clone().into_bytes(), value.clone()))
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_round_trip_and_refuse_damage() {
        let attributes = KafkaAttributes {
            timestamp_ms: 1_700_000_000_123,
            key: Some(Bytes::from_static(b"order-7")),
            headers: vec![
                (
                    Bytes::from_static(b"trace"),
                    Some(Bytes::from_static(b"abc")),
                ),
                (Bytes::from_static(b"empty"), None),
            ],
        };
        let bytes = Bytes::from(encode_attributes(&attributes));
        assert_eq!(decode_attributes(&bytes), Some(attributes));
        for cut in 0..bytes.len() {
            assert_eq!(decode_attributes(&bytes.slice(..cut)), None, "cut at {cut}");
        }
        assert_eq!(decode_attributes(&Bytes::from_static(b"{\"a\":1}")), None);
    }

    fn compressed_batch(values: &[Bytes], compression: Compression, one_batch: bool) -> Bytes {
        let records: Vec<Record> = values
            .iter()
            .enumerate()
            .map(|(i, value)| {
                let mut record = plain_record(i64::try_from(i).unwrap(), Some(value.clone()));
                // The encoder starts a new batch where offset - sequence changes.
                if !one_batch {
                    record.sequence = -1;
                }
                record.key = Some(Bytes::from(format!("k{i}")));
                record
            })
            .collect();
        let mut buf = BytesMut::new();
        let options = RecordEncodeOptions {
            version: 2,
            compression,
        };
        RecordBatchEncoder::encode(&mut buf, &records, &options).unwrap();
        buf.freeze()
    }

    const CODECS: [Compression; 5] = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];

    #[test]
    fn every_codec_decodes_to_the_records_sent() {
        let values: Vec<Bytes> = (0..300)
            .map(|i| Bytes::from(format!("value {i} {}", "abc".repeat(i % 50))))
            .collect();
        for compression in CODECS {
            let batch = compressed_batch(&values, compression, true);
            let (records, producer) =
                decode_batches(&batch).unwrap_or_else(|error| panic!("{compression:?}: {error:?}"));
            assert_eq!(producer, None);
            let got: Vec<Bytes> = records.into_iter().filter_map(|r| r.value).collect();
            assert_eq!(got, values, "{compression:?}");
        }
    }

    #[test]
    fn records_that_decompress_past_the_bound_are_refused_in_one_batch_or_many() {
        // A few records of zeros compress to almost nothing and expand past the bound,
        // in one batch or in one batch each (each batch alone within the bound).
        let zeros = Bytes::from(vec![0u8; BATCH_BYTES_MAX / 3]);
        let values = vec![zeros.clone(), zeros.clone(), zeros.clone(), zeros];
        for one_batch in [true, false] {
            for compression in &CODECS[1..] {
                let batch = compressed_batch(&values, *compression, one_batch);
                assert!(batch.len() < BATCH_BYTES_MAX, "{compression:?} compresses");
                match decode_batches(&batch) {
                    Err(BatchError::Corrupt(why)) => assert!(
                        why.contains("exceed"),
                        "{compression:?}, one batch {one_batch}: {why}"
                    ),
                    Err(other) => panic!("{compression:?}, one batch {one_batch}: {other:?}"),
                    Ok((records, _)) => panic!(
                        "{compression:?}, one batch {one_batch}: {} records accepted",
                        records.len()
                    ),
                }
            }
        }
    }

    #[test]
    fn damaged_compressed_batches_are_refused_not_panicked_on() {
        let values: Vec<Bytes> = (0..50).map(|i| Bytes::from(format!("v{i}"))).collect();
        for compression in &CODECS[1..] {
            let batch = compressed_batch(&values, *compression, true);
            // Flip a byte of the compressed records (after the 61-byte batch header):
            // the CRC catches it, or the codec does; either way it is an error.
            for at in [61, batch.len() / 2, batch.len() - 1] {
                let mut damaged = batch.to_vec();
                damaged[at] ^= 0x5a;
                assert!(
                    decode_batches(&Bytes::from(damaged)).is_err(),
                    "{compression:?} damaged at {at}"
                );
            }
        }
    }

    #[test]
    fn fetched_batches_carry_positions_keys_and_foreign_attributes() {
        let kafka = KafkaAttributes {
            timestamp_ms: 42,
            key: Some(Bytes::from_static(b"k")),
            headers: vec![(Bytes::from_static(b"h"), Some(Bytes::from_static(b"v")))],
        };
        let messages = vec![
            StoredMessage {
                seq: 7,
                message_id: sluice_core::engine::types::MessageId(100),
                sent_ms: 1,
                body: Bytes::from_static(b"one"),
                attributes: Bytes::from(encode_attributes(&kafka)),
                tags: Vec::new(),
            },
            StoredMessage {
                seq: 8,
                message_id: sluice_core::engine::types::MessageId(205),
                sent_ms: 99,
                body: Bytes::from_static(b"two"),
                attributes: Bytes::from_static(b"{\"x\":1}"),
                tags: Vec::new(),
            },
        ];
        let batch = encode_batch(&messages).unwrap();
        // One batch for the whole answer, of no producer.
        let infos = RecordBatchDecoder::decode_batch_info(&mut batch.clone()).unwrap();
        assert_eq!(infos.len(), 1);
        assert_eq!((infos[0].producer_id, infos[0].base_sequence), (-1, -1));
        let (records, producer) = decode_batches(&batch).unwrap();
        assert_eq!(producer, None);
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].offset, 7);
        assert_eq!(records[0].key.as_deref(), Some(&b"k"[..]));
        assert_eq!(records[0].timestamp, 42);
        assert_eq!(records[1].offset, 8);
        assert_eq!(records[1].timestamp, 99);
        assert_eq!(
            records[1]
                .headers
                .get(&StrBytes::from_static_str(FOREIGN_ATTRIBUTES_HEADER))
                .cloned()
                .flatten()
                .as_deref(),
            Some(&b"{\"x\":1}"[..])
        );
    }
}
