//! Arbitrary bytes into `scan_segment`, the function recovery trusts to decide what to
//! keep, truncate or refuse, and into `scan_segment_upto` with an end inside the valid
//! data (a segment a truncation capped).
//!
//! Input layout: bytes 0..8 are the little-endian base offset; byte 8 is a control byte
//! (bits 0-3: index interval `512 << (n % 12)`, bit 4: repair batch checksums, bit 5:
//! also renumber batches to continue from the base); the rest is the segment.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_core::limits::{INDEX_INTERVAL_BYTES_MAX, INDEX_INTERVAL_BYTES_MIN};
use sluice_core::segment::{scan_segment, scan_segment_upto, ScanEnd};
use sluice_core::Offset;
use sluice_fuzz::repair_batches;

const REPAIR_CHECKSUMS: u8 = 1 << 4;
const RENUMBER: u8 = 1 << 5;

fuzz_target!(|data: &[u8]| {
    if data.len() < 9 {
        return;
    }
    let base = Offset(u64::from_le_bytes(
        data[..8].try_into().expect("eight bytes"),
    ));
    let control = data[8];
    let interval_bytes = INDEX_INTERVAL_BYTES_MIN << (control % 16 % 12);
    assert!(interval_bytes <= INDEX_INTERVAL_BYTES_MAX);
    let mut segment = data[9..].to_vec();
    if control & (REPAIR_CHECKSUMS | RENUMBER) != 0 {
        let renumber_from = (control & RENUMBER != 0).then_some(base.0);
        repair_batches(&mut segment, renumber_from);
    }
    check(&segment, base, interval_bytes);
});

fn check(segment: &[u8], base: Offset, interval_bytes: u64) {
    let len = segment.len() as u64;
    let scan = scan_segment(segment, base, interval_bytes);
    if scan.valid_bytes > len {
        // The bytes end inside the zero padding of the last valid batch: by definition
        // (scan_segment's docs) `valid_bytes` includes the padding, which recovery
        // supplies as zeros.
        assert_eq!(scan.end, ScanEnd::Clean);
        assert_eq!(scan.valid_bytes % 8, 0);
        assert!(scan.valid_bytes - len < 8);
        return;
    }
    assert!(scan.valid_bytes % 8 == 0 || scan.valid_bytes == len);
    assert!(scan.next_offset >= base);
    match scan.end {
        ScanEnd::Clean => {}
        ScanEnd::Torn { position, .. } => {
            assert_eq!(position, scan.valid_bytes);
            assert!(position < len);
        }
        ScanEnd::Corrupt {
            position,
            durable_claim,
            ..
        } => {
            assert_eq!(position, scan.valid_bytes);
            assert!(position < len);
            assert!(durable_claim > position);
        }
    }
    // The valid prefix alone is a clean segment with the same summary and index.
    let valid = usize::try_from(scan.valid_bytes).expect("at most len");
    let prefix = scan_segment(&segment[..valid], base, interval_bytes);
    assert_eq!(prefix.end, ScanEnd::Clean);
    assert_eq!(prefix.valid_bytes, scan.valid_bytes);
    assert_eq!(prefix.next_offset, scan.next_offset);
    assert_eq!(prefix.timestamp_ms_max, scan.timestamp_ms_max);
    assert_eq!(prefix.durable_claim_max, scan.durable_claim_max);
    assert_eq!(prefix.index, scan.index);
    assert_eq!(prefix.terms, scan.terms);
    check_capped(segment, base, interval_bytes, &scan);
}

/// An end offset inside the valid data stops the scan cleanly there, with the terms
/// of the records below it, whatever follows.
fn check_capped(
    segment: &[u8],
    base: Offset,
    interval_bytes: u64,
    scan: &sluice_core::segment::SegmentScan,
) {
    let records = scan.next_offset.0 - base.0;
    if records == 0 {
        return;
    }
    let end = Offset(base.0 + records / 2 + 1);
    let capped = scan_segment_upto(segment, base, interval_bytes, Some(end));
    assert_eq!(capped.end, ScanEnd::Clean);
    assert_eq!(capped.next_offset, end);
    assert!(capped.valid_bytes <= scan.valid_bytes);
    let last = Offset(end.0 - 1);
    assert_eq!(capped.terms.term_at(last), scan.terms.term_at(last));
    assert!(capped.terms.runs().iter().all(|(first, _)| *first < end));
}
