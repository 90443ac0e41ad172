//! The log's cache of recent batches (`cache.rs`): hits without storage reads, eviction
//! at its bound, and no stale bytes after a truncation, retention or a reset.

use super::cache::{records_of, LogCache};
use super::*;
use crate::conformance::{append_range, expect_records, test_config};
use crate::limits::LOG_CACHE_BYTES_DEFAULT;
use crate::record::{decode_batch_trusted, encode_batch, RecordInput};
use crate::sim_disk::{block_on, SimDisk};

fn open(disk: &SimDisk, cache_bytes_max: u64) -> Log<SimDisk> {
    let config = LogConfig {
        cache_bytes_max,
        ..test_config()
    };
    block_on(Log::open(disk.clone(), config)).expect("open")
}

/// Appends one durable batch of records `offsets` whose payloads are `tag` repeated.
fn append_tagged(log: &Log<SimDisk>, count: u64, tag: u8) -> Appended {
    let payloads: Vec<Vec<u8>> = (0..count).map(|i| vec![tag; 100 + i as usize]).collect();
    let records: Vec<RecordInput<'_>> = payloads
        .iter()
        .map(|p| RecordInput {
            timestamp_ms: 5,
            attributes: b"a",
            payload: p,
        })
        .collect();
    block_on(log.append_durable(&records)).expect("append")
}

fn read_all(log: &Log<SimDisk>) -> Vec<ReadRecord> {
    let mut out = Vec::new();
    let mut next = log.start_offset();
    // Bounded: every read returns at least one record below the durable offset.
    while next < log.durable_offset() {
        let records = block_on(log.read(next, 8 * 1024)).expect("read");
        assert!(!records.is_empty(), "nothing at {next}");
        next = Offset(records.last().expect("not empty").offset.0 + 1);
        out.extend(records);
    }
    out
}

#[test]
fn recently_written_records_are_read_without_storage() {
    let disk = SimDisk::new(1);
    let log = open(&disk, LOG_CACHE_BYTES_DEFAULT);
    block_on(append_range(&log, 0, 200, 7));
    let reads = disk.stats().reads;
    block_on(expect_records(&log, 0, 200));
    assert_eq!(disk.stats().reads, reads, "every read came from the cache");
    let stats = log.cache_stats();
    assert!(stats.hits > 0 && stats.misses == 0, "{stats:?}");
}

#[test]
fn recently_read_records_are_read_again_without_storage() {
    let disk = SimDisk::new(2);
    let log = open(&disk, LOG_CACHE_BYTES_DEFAULT);
    block_on(append_range(&log, 0, 150, 5));
    drop(log);
    let log = open(&disk, LOG_CACHE_BYTES_DEFAULT);
    let reads = disk.stats().reads;
    block_on(expect_records(&log, 0, 150));
    assert!(disk.stats().reads > reads, "a reopened log starts cold");
    assert!(log.cache_stats().misses > 0);
    let reads = disk.stats().reads;
    block_on(expect_records(&log, 0, 150));
    assert_eq!(
        disk.stats().reads,
        reads,
        "the second pass came from the cache"
    );
}

#[test]
fn a_cold_read_fetches_only_what_it_needs() {
    let disk = SimDisk::new(3);
    let log = open(&disk, 0);
    block_on(append_range(&log, 0, 40, 1));
    let before = disk.stats();
    let records = block_on(log.read(Offset(0), 100)).expect("read");
    assert!(!records.is_empty());
    let after = disk.stats();
    assert_eq!(after.reads - before.reads, 1);
    assert!(
        after.read_bytes - before.read_bytes <= crate::limits::LOG_READ_BYTES_MIN,
        "read {} bytes",
        after.read_bytes - before.read_bytes
    );
}

#[test]
fn hits_share_the_cached_bytes() {
    let disk = SimDisk::new(4);
    let log = open(&disk, LOG_CACHE_BYTES_DEFAULT);
    block_on(append_range(&log, 0, 10, 10));
    let first = block_on(log.read(Offset(0), 1 << 20)).expect("read");
    let second = block_on(log.read(Offset(0), 1 << 20)).expect("read");
    assert_eq!(first.len(), 10);
    for (a, b) in first.iter().zip(&second) {
        assert_eq!(a.payload.as_ptr(), b.payload.as_ptr(), "no copy per read");
    }
    // Records of one batch are slices of one buffer, in order.
    let gap = first[1].payload.as_ptr() as usize - first[0].payload.as_ptr() as usize;
    assert!(gap < 2 * 1024, "{gap}");
}

#[test]
fn the_cache_stays_within_its_bound_and_evicts() {
    let disk = SimDisk::new(5);
    let bound = 16 * 1024;
    let log = open(&disk, bound);
    block_on(append_range(&log, 0, 300, 3));
    let stats = log.cache_stats();
    assert!(stats.bytes <= bound, "{stats:?}");
    assert!(stats.batches > 0, "{stats:?}");
    // The oldest were evicted: reading them goes to storage, and stays right.
    let reads = disk.stats().reads;
    block_on(expect_records(&log, 0, 300));
    assert!(disk.stats().reads > reads);
    assert!(log.cache_stats().bytes <= bound);
}

#[test]
fn read_batches_are_evicted_before_unread_ones() {
    // What one batch of two records costs in the cache.
    let probe = open(&SimDisk::new(6), LOG_CACHE_BYTES_DEFAULT);
    append_tagged(&probe, 2, 0);
    let cost = probe.cache_stats().bytes;
    let disk = SimDisk::new(6);
    // Room for four batches.
    let log = open(&disk, 4 * cost + cost / 2);
    for tag in 0..4 {
        append_tagged(&log, 2, tag);
    }
    assert_eq!(log.cache_stats().batches, 4);
    // Reading the second batch makes it the first to go.
    block_on(log.read(Offset(2), 1)).expect("read");
    append_tagged(&log, 2, 4);
    assert_eq!(log.cache_stats().batches, 4);
    let reads = disk.stats().reads;
    block_on(log.read(Offset(0), 1)).expect("read");
    assert_eq!(disk.stats().reads, reads, "the oldest unread batch stayed");
    block_on(log.read(Offset(2), 1)).expect("read");
    assert_eq!(disk.stats().reads, reads + 1, "the read batch went");
}

#[test]
fn no_stale_read_after_truncation_and_new_records_at_the_same_offsets() {
    for cache in [0, 3 * 1024, LOG_CACHE_BYTES_DEFAULT] {
        let disk = SimDisk::new(7);
        let log = open(&disk, cache);
        append_tagged(&log, 10, 1);
        append_tagged(&log, 10, 2);
        assert_eq!(read_all(&log).len(), 20);
        // Cut in the middle of the second batch, then write other bytes there.
        block_on(log.truncate_from(Offset(15))).expect("truncate");
        append_tagged(&log, 10, 3);
        let records = read_all(&log);
        assert_eq!(records.len(), 25);
        for record in &records {
            let tag = match record.offset.0 {
                0..10 => 1,
                10..15 => 2,
                _ => 3,
            };
            assert!(
                record.payload.iter().all(|b| *b == tag),
                "cache {cache}: stale record at {}",
                record.offset
            );
        }
        // Reads starting inside the cut batch stop at its logical end.
        let from_cut = block_on(log.read(Offset(14), 1 << 20)).expect("read");
        assert_eq!(from_cut.len(), 1);
        assert!(from_cut[0].payload.iter().all(|b| *b == 2));
        if cache > 0 {
            assert!(log.cache_stats().epoch >= 1);
        }
    }
}

#[test]
fn no_stale_read_after_retention() {
    let disk = SimDisk::new(8);
    let log = open(&disk, LOG_CACHE_BYTES_DEFAULT);
    block_on(append_range(&log, 0, 400, 4));
    assert!(log.segment_count() > 2);
    let policy = RetentionPolicy {
        remove_below: Some(Offset(200)),
        ..RetentionPolicy::default()
    };
    let bytes = log.cache_stats().bytes;
    let removed = block_on(log.apply_retention(0, policy)).expect("retention");
    assert!(removed > 0);
    let start = log.start_offset();
    assert!(start > Offset(0));
    assert!(
        log.cache_stats().bytes < bytes,
        "removed batches left the cache"
    );
    assert_eq!(
        block_on(log.read(Offset(0), 100)),
        Err(ReadError::Removed {
            start_offset: start
        })
    );
    block_on(expect_records(&log, start.0, 400));
}

#[test]
fn no_stale_read_after_reset() {
    let disk = SimDisk::new(9);
    let log = open(&disk, LOG_CACHE_BYTES_DEFAULT);
    append_tagged(&log, 10, 1);
    append_tagged(&log, 10, 1);
    assert_eq!(read_all(&log).len(), 20);
    block_on(log.reset_to(Offset(5))).expect("reset");
    assert_eq!(log.cache_stats().bytes, 0);
    append_tagged(&log, 10, 9);
    let records = read_all(&log);
    assert_eq!(records.first().map(|r| r.offset), Some(Offset(5)));
    assert_eq!(records.len(), 10);
    assert!(records.iter().all(|r| r.payload.iter().all(|b| *b == 9)));
}

#[test]
fn a_disabled_cache_still_reads_everything() {
    let disk = SimDisk::new(10);
    let log = open(&disk, 0);
    block_on(append_range(&log, 0, 300, 5));
    let reads = disk.stats().reads;
    block_on(expect_records(&log, 0, 300));
    assert!(disk.stats().reads > reads);
    let stats = log.cache_stats();
    assert_eq!((stats.hits, stats.bytes, stats.batches), (0, 0, 0));
}

#[test]
fn storage_reads_still_verify_checksums() {
    let disk = SimDisk::new(11);
    let log = open(&disk, LOG_CACHE_BYTES_DEFAULT);
    block_on(append_range(&log, 0, 300, 5));
    assert!(log.segment_count() > 1);
    drop(log);
    // In the first, sealed segment: start-up trusts it, the read verifies it.
    disk.flip_bit(&crate::segment::segment_name(Offset(0)), 100, 2);
    let log = open(&disk, LOG_CACHE_BYTES_DEFAULT);
    assert!(matches!(
        block_on(log.read(Offset(0), 100)),
        Err(ReadError::Corrupt { .. })
    ));
    assert_eq!(
        log.cache_stats().batches,
        0,
        "nothing unverified was cached"
    );
}

#[test]
fn a_cache_fill_from_before_an_invalidation_is_refused() {
    // A read from storage that started before a truncation must not fill the cache
    // when it ends after it: later appends may have replaced those offsets.
    let mut encoded = Vec::new();
    let payload = b"old".to_vec();
    let record = RecordInput {
        timestamp_ms: 1,
        attributes: b"",
        payload: &payload,
    };
    encode_batch(&mut encoded, Offset(0), 1, 1, 0, &[record]).expect("encodes");
    let bytes = Bytes::from(encoded);
    let view = decode_batch_trusted(&bytes).expect("decodes");
    for invalidate in 0..3 {
        let mut cache = LogCache::new(1 << 20);
        let epoch = cache.epoch();
        match invalidate {
            0 => cache.truncate_from(Offset(0)),
            1 => cache.remove_below(Offset(0)),
            _ => cache.clear(),
        }
        cache.insert(epoch, &bytes, &view, true);
        assert_eq!(cache.stats().batches, 0);
        assert!(cache.read(Offset(0), Offset(1), 10).is_none());
        cache.insert(cache.epoch(), &bytes, &view, true);
        let hit = cache.read(Offset(0), Offset(1), 10).expect("cached");
        assert_eq!(hit, records_of(&bytes, &view));
    }
}
