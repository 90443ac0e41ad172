//! Arbitrary bytes into `scan_segment`, the function recovery trusts to decide what to
//! keep, truncate or refuse.
//!
//! Input layout: bytes 0..8 are the little-endian base offset; byte 8 is a control byte
//! (bits 0-3: index interval `512 << (n % 12)`, bit 4: repair batch checksums, bit 5:
//! also renumber batches to continue from the base); the rest is the segment.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_core::limits::{INDEX_INTERVAL_BYTES_MAX, INDEX_INTERVAL_BYTES_MIN};
use sluice_core::segment::{scan_segment, ScanEnd};
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
}
