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
    /// A compression Sluice does not decode: UNSUPPORTED_COMPRESSION_TYPE.
    Compression(Compression),
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
        if !matches!(info.compression, Compression::None | Compression::Gzip) {
            return Err(BatchError::Compression(info.compression));
        }
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
    while buf.has_remaining() {
        let set =
            RecordBatchDecoder::decode_with_custom_compression(&mut buf, Some(bounded_decompress))
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

/// Decompresses a batch's records, at most [`BATCH_BYTES_MAX`] of them (a small batch
/// may not expand into gigabytes).
fn bounded_decompress(data: &mut Bytes, compression: Compression) -> anyhow::Result<Bytes> {
    match compression {
        Compression::None => Ok(data.split_to(data.len())),
        Compression::Gzip => {
            let mut out = Vec::new();
            let limit = u64::try_from(BATCH_BYTES_MAX).expect("fits") + 1;
            flate2::read::GzDecoder::new(&data[..])
                .take(limit)
                .read_to_end(&mut out)?;
            data.advance(data.len());
            anyhow::ensure!(
                out.len() <= BATCH_BYTES_MAX,
                "decompressed records exceed {BATCH_BYTES_MAX} bytes"
            );
            Ok(Bytes::from(out))
        }
        other => anyhow::bail!("{other:?} is not served"),
    }
}

/// The record batch (v2, uncompressed) that carries `messages` of one partition to a
/// Fetch. Each message keeps its position as its offset.
pub fn encode_batch(messages: &[StoredMessage]) -> Result<Bytes, String> {
    let records: Vec<Record> = messages.iter().map(record_of).collect();
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: Compression::None,
    };
    RecordBatchEncoder::encode(&mut buf, &records, &options)
        .map_err(|error| format!("encoding a record batch: {error}"))?;
    Ok(buf.freeze())
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
    Record {
        transactional: false,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: 0,
        producer_id: -1,
        producer_epoch: -1,
        timestamp_type: TimestampType::Creation,
        offset: i64::try_from(message.seq).unwrap_or(i64::MAX),
        sequence: -1,
        timestamp,
        key,
        value: Some(message.body.clone()),
        headers,
    }
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
            },
            StoredMessage {
                seq: 8,
                message_id: sluice_core::engine::types::MessageId(205),
                sent_ms: 99,
                body: Bytes::from_static(b"two"),
                attributes: Bytes::from_static(b"{\"x\":1}"),
            },
        ];
        let batch = encode_batch(&messages).unwrap();
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
