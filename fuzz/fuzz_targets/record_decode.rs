//! Arbitrary bytes into `decode_batch`, as they come and with the checksum repaired.
//! Whatever decodes must have contiguous offsets and survive a re-encode with the same
//! base offset and durable position unchanged.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_core::record::{decode_batch, encode_batch, RecordInput, RecordView};
use sluice_core::Offset;
use sluice_fuzz::repair_batches;

fuzz_target!(|data: &[u8]| {
    check(data);
    let mut repaired = data.to_vec();
    repair_batches(&mut repaired, None);
    if repaired != data {
        check(&repaired);
    }
});

fn check(bytes: &[u8]) {
    let Ok(batch) = decode_batch(bytes) else {
        return;
    };
    assert!(batch.encoded_bytes() <= sluice_core::record::align_up(bytes.len() as u64, 8));
    let next_offset = batch
        .base_offset()
        .0
        .checked_add(u64::from(batch.record_count()))
        .expect("decode_batch rejects batches whose offsets pass u64::MAX");
    let records: Vec<RecordView<'_>> = batch.records().collect();
    assert_eq!(records.len() as u64, u64::from(batch.record_count()));
    for (record_index, record) in records.iter().enumerate() {
        let expected = batch.base_offset().0.checked_add(record_index as u64);
        assert_eq!(Some(record.offset.0), expected, "offsets are contiguous");
    }
    assert_eq!(batch.next_offset(), Offset(next_offset));
    let inputs: Vec<RecordInput<'_>> = records
        .iter()
        .map(|record| RecordInput {
            timestamp_ms: record.timestamp_ms,
            attributes: record.attributes,
            payload: record.payload,
        })
        .collect();
    let mut encoded = Vec::new();
    let summary = encode_batch(
        &mut encoded,
        batch.base_offset(),
        batch.epoch(),
        batch.term(),
        batch.durable_position(),
        &inputs,
    )
    .expect("a batch that decoded re-encodes within the limits");
    assert_eq!(summary.encoded_bytes, batch.encoded_bytes());
    assert_eq!(summary.encoded_bytes, encoded.len() as u64);
    let again = decode_batch(&encoded).expect("a re-encoded batch decodes");
    assert_eq!(again.base_offset(), batch.base_offset());
    assert_eq!(again.durable_position(), batch.durable_position());
    assert_eq!(again.term(), batch.term());
    assert_eq!(again.epoch(), batch.epoch());
    assert_eq!(again.timestamp_ms_max(), batch.timestamp_ms_max());
    let records_again: Vec<RecordView<'_>> = again.records().collect();
    assert_eq!(records_again, records);
}
