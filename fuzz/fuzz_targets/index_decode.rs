//! Arbitrary bytes into `OffsetIndex::decode_file`, as they come and with the checksum
//! repaired. Whatever decodes must re-encode to a file that decodes to the same index,
//! summary and term runs, whatever the padding.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_core::limits::BLOCK_BYTES;
use sluice_core::offset_index::OffsetIndex;
use sluice_fuzz::repair_index;

fuzz_target!(|data: &[u8]| {
    check(data);
    let mut repaired = data.to_vec();
    repair_index(&mut repaired);
    if repaired != data {
        check(&repaired);
    }
});

fn check(bytes: &[u8]) {
    let Some(stored) = OffsetIndex::decode_file(bytes) else {
        return;
    };
    let summary = stored.summary;
    assert!(summary.next_offset >= summary.base_offset);
    for (first, _) in stored.terms.runs() {
        assert!(*first >= summary.base_offset && *first < summary.next_offset);
    }
    for align in [1, 8, BLOCK_BYTES] {
        let encoded = stored.index.encode_file(&summary, &stored.terms, align);
        assert_eq!(encoded.len() as u64 % align, 0);
        let decoded = OffsetIndex::decode_file(&encoded);
        assert_eq!(decoded.as_ref(), Some(&stored), "align {align}");
    }
}
