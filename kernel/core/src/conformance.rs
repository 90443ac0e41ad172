//! Behavioural tests every [`Storage`] implementation and the log on top of it must
//! pass, written once and run against the simulated disk (here) and glommio's `DmaFile`
//! on real files (`kernel/shard`). Each function panics with a message on failure.
//!
//! `fresh` must return an empty storage each time it is called with a new name, and the
//! same directory again when called with a name it has seen (a restart).

use crate::log::{Log, LogConfig, OpenError, ReadRecord, RetentionPolicy, VerifyOnOpen};
use crate::record::RecordInput;
use crate::segment::segment_name;
use crate::storage::{Storage, StorageFile};
use crate::types::Offset;

/// A small-segment config so tests roll often.
pub fn test_config() -> LogConfig {
    LogConfig {
        segment_bytes_max: 64 * 1024,
        index_interval_bytes: 1024,
        preallocate_bytes: 64 * 1024,
        verify_on_open: VerifyOnOpen::Tail,
        cache_bytes_max: crate::limits::LOG_CACHE_BYTES_DEFAULT,
        recycle_segments_max: crate::limits::LOG_RECYCLE_SEGMENTS_DEFAULT,
    }
}

/// A deterministic payload for record `i`.
pub fn payload(i: u64) -> Vec<u8> {
    let len = usize::try_from(i * 37 % 1500 + 1).expect("small");
    (0..len).map(|j| (i as usize * 7 + j) as u8).collect()
}

fn record(i: u64, payload: &[u8]) -> RecordInput<'_> {
    RecordInput {
        timestamp_ms: 1_000 + i,
        attributes: b"attr",
        payload,
    }
}

/// Appends records `from..to` in batches of `batch`, syncing each batch.
pub async fn append_range<S: Storage>(log: &Log<S>, from: u64, to: u64, batch: u64) {
    let mut i = from;
    while i < to {
        let end = (i + batch).min(to);
        let payloads: Vec<Vec<u8>> = (i..end).map(payload).collect();
        let records: Vec<_> = (i..end).zip(&payloads).map(|(j, p)| record(j, p)).collect();
        let appended = log.append_durable(&records).await.expect("append");
        assert_eq!(
            appended.first_offset,
            Offset(i),
            "offsets must be contiguous"
        );
        i = end;
    }
}

/// Reads everything from `from` and checks it is exactly records `from..to`.
pub async fn expect_records<S: Storage>(log: &Log<S>, from: u64, to: u64) {
    let mut next = from;
    // Bounded: each read returns at least one record or ends the loop.
    while next < to {
        let records: Vec<ReadRecord> = log.read(Offset(next), 8 * 1024).await.expect("read");
        assert!(
            !records.is_empty(),
            "read at {next} returned nothing; expected up to {to}"
        );
        for r in records {
            assert_eq!(r.offset, Offset(next), "offset order");
            assert_eq!(r.payload, payload(next), "payload of {next}");
            assert_eq!(r.timestamp_ms, 1_000 + next);
            assert_eq!(&r.attributes[..], b"attr");
            next += 1;
        }
    }
    assert_eq!(next, to);
    assert!(log
        .read(Offset(to), 1024)
        .await
        .expect("read at end")
        .is_empty());
}

/// Append, roll, read back, reopen, read back again, retention.
pub async fn roundtrip_reopen_retention<S: Storage>(mut fresh: impl FnMut(&str) -> S) {
    let log = Log::open(fresh("a"), test_config())
        .await
        .expect("open empty");
    assert_eq!(log.next_offset(), Offset(0));
    append_range(&log, 0, 300, 7).await;
    assert!(log.segment_count() > 2, "small segments must roll");
    expect_records(&log, 0, 300).await;
    expect_records(&log, 123, 300).await;
    drop(log);
    let log = Log::open(fresh("a"), test_config()).await.expect("reopen");
    assert_eq!(log.next_offset(), Offset(300));
    expect_records(&log, 0, 300).await;
    append_range(&log, 300, 400, 1).await;
    expect_records(&log, 250, 400).await;
    let segments = log.segment_count();
    let removed = log
        .apply_retention(
            0,
            RetentionPolicy {
                age_ms_max: None,
                bytes_max: Some(100_000),
                remove_below: None,
            },
        )
        .await
        .expect("retention");
    assert!(removed > 0);
    assert_eq!(log.segment_count(), segments - removed as usize);
    let start = log.start_offset();
    assert!(start > Offset(0));
    assert!(
        log.read(Offset(0), 10).await.is_err(),
        "removed offsets must not read"
    );
    expect_records(&log, start.0, 400).await;
    // Age: every sealed segment's newest record is at most 1_400 ms.
    let policy = RetentionPolicy {
        age_ms_max: Some(10),
        bytes_max: None,
        remove_below: None,
    };
    log.apply_retention(1_000_000, policy)
        .await
        .expect("retention");
    assert_eq!(log.segment_count(), 1, "only the active segment survives");
    drop(log);
    let log = Log::open(fresh("a"), test_config())
        .await
        .expect("reopen after retention");
    assert_eq!(log.next_offset(), Offset(400));
    expect_records(&log, log.start_offset().0, 400).await;
}

/// Appends records `from..to` with `term` in batches of `batch`, then syncs them.
async fn append_range_in_term<S: Storage>(log: &Log<S>, term: u64, from: u64, to: u64, batch: u64) {
    let mut i = from;
    while i < to {
        let end = (i + batch).min(to);
        let payloads: Vec<Vec<u8>> = (i..end).map(payload).collect();
        let records: Vec<_> = (i..end).zip(&payloads).map(|(j, p)| record(j, p)).collect();
        let appended = log.append_with_term(term, &records).expect("append");
        assert_eq!(appended.first_offset, Offset(i));
        i = end;
    }
    log.sync(Offset(to)).await.expect("sync");
}

/// Every record in `from..to` has `term`.
fn expect_terms<S: Storage>(log: &Log<S>, from: u64, to: u64, term: u64) {
    for offset in from..to {
        assert_eq!(log.term_at(Offset(offset)), Some(term), "term of {offset}");
    }
}

/// Truncation in the middle of a batch of a sealed segment, at a segment base and of
/// staged records: the removed records never come back after a reopen, the kept ones
/// read back with their terms, appends continue at the truncation offset, and
/// retention works across the capped segment.
pub async fn truncation_survives_reopen<S: Storage>(mut fresh: impl FnMut(&str) -> S) {
    let log = Log::open(fresh("r"), test_config()).await.expect("open");
    append_range_in_term(&log, 1, 0, 300, 7).await;
    assert!(log.segment_count() > 2, "small segments must roll");
    // 123 lies inside the batch 119..126, in a sealed segment.
    log.truncate_from(Offset(123)).await.expect("truncate");
    assert_eq!(log.next_offset(), Offset(123));
    assert_eq!(log.term_at(Offset(123)), None);
    expect_records(&log, 0, 123).await;
    append_range_in_term(&log, 2, 123, 250, 5).await;
    drop(log);
    let log = Log::open(fresh("r"), test_config()).await.expect("reopen");
    assert_eq!(log.next_offset(), Offset(250));
    expect_records(&log, 0, 250).await;
    expect_terms(&log, 0, 123, 1);
    expect_terms(&log, 123, 250, 2);
    // At the base of the newest segment that starts after 123, then of staged records.
    let second_base = segment_bases(&fresh("r"))
        .await
        .into_iter()
        .filter(|base| *base > 123 && *base < 250)
        .max()
        .expect("a segment starts after 123");
    log.truncate_from(Offset(second_base))
        .await
        .expect("truncate at a base");
    append_range_in_term(&log, 3, second_base, 260, 9).await;
    let payloads: Vec<Vec<u8>> = (260..270).map(payload).collect();
    let records: Vec<_> = (260..270)
        .zip(&payloads)
        .map(|(j, p)| record(j, p))
        .collect();
    log.append_with_term(3, &records).expect("stage");
    log.truncate_from(Offset(265))
        .await
        .expect("truncate staged");
    assert_eq!(log.durable_offset(), Offset(265));
    drop(log);
    let log = Log::open(fresh("r"), test_config()).await.expect("reopen");
    assert_eq!(log.next_offset(), Offset(265));
    expect_records(&log, 0, 265).await;
    expect_terms(&log, second_base, 265, 3);
    assert_eq!(log.last_term(), 3);
    let policy = RetentionPolicy {
        age_ms_max: None,
        bytes_max: None,
        remove_below: Some(Offset(130)),
    };
    assert!(log.apply_retention(0, policy).await.expect("retention") > 0);
    let start = log.start_offset();
    expect_records(&log, start.0, 265).await;
}

/// Retention keeps removed segment files for reuse (renamed `.free`, at most the
/// config's bound); rolls rename them back into service and overwrite them from the
/// start; the old bytes past the new data never read as records, also after a reopen.
pub async fn recycled_segments_roundtrip<S: Storage>(mut fresh: impl FnMut(&str) -> S) {
    let log = Log::open(fresh("c"), test_config()).await.expect("open");
    append_range(&log, 0, 300, 7).await;
    assert!(log.segment_count() > 3, "small segments must roll");
    let policy = RetentionPolicy {
        age_ms_max: None,
        bytes_max: Some(70_000),
        remove_below: None,
    };
    assert!(log.apply_retention(0, policy).await.expect("retention") >= 3);
    let free = |names: &[String]| names.iter().filter(|n| n.ends_with(".free")).count();
    let names = fresh("c").list().await.expect("list");
    assert_eq!(free(&names), 2, "bounded by the config");
    assert_eq!(log.recycle_stats().free_files, 2);
    let start = log.start_offset().0;
    // Short batches after long ones: the new data ends inside the old bytes.
    append_range(&log, 300, 420, 1).await;
    assert!(log.recycle_stats().reused >= 1, "a roll reused a file");
    expect_records(&log, start, 420).await;
    drop(log);
    let log = Log::open(fresh("c"), test_config()).await.expect("reopen");
    assert_eq!(log.next_offset(), Offset(420));
    expect_records(&log, start, 420).await;
    append_range(&log, 420, 450, 3).await;
    expect_records(&log, start, 450).await;
    let names = fresh("c").list().await.expect("list");
    assert!(free(&names) <= 2);
}

async fn segment_bases<S: Storage>(storage: &S) -> Vec<u64> {
    let names = storage.list().await.expect("list");
    names
        .iter()
        .filter_map(|name| crate::segment::parse_name(name))
        .filter(|(_, kind)| *kind == crate::segment::FileKind::Segment)
        .map(|(base, _)| base.0)
        .collect()
}

/// Cutting the last segment mid-record loses only that record's batch.
pub async fn truncated_tail_recovers<S: Storage>(mut fresh: impl FnMut(&str) -> S) {
    let log = Log::open(fresh("t"), test_config()).await.expect("open");
    append_range(&log, 0, 20, 1).await;
    drop(log);
    let storage = fresh("t");
    let name = segment_name(Offset(0));
    let file = storage.open(&name).await.expect("open segment");
    let size = file.size().await.expect("size");
    // Record 19 is the last batch; cut it 10 bytes short of its end.
    let valid = find_valid_length(&file, size).await;
    file.truncate(valid - 10).await.expect("truncate");
    drop(file);
    let log = Log::open(storage, test_config())
        .await
        .expect("recovery must succeed");
    assert_eq!(log.next_offset(), Offset(19), "only the cut batch is lost");
    expect_records(&log, 0, 19).await;
    append_range(&log, 19, 25, 2).await;
    expect_records(&log, 0, 25).await;
}

async fn find_valid_length<F: StorageFile>(file: &F, size: u64) -> u64 {
    let bytes = file
        .read_at(0, usize::try_from(size).expect("small"))
        .await
        .expect("read");
    let scan = crate::segment::scan_segment(bytes.as_ref(), Offset(0), 1024);
    scan.valid_bytes
}

/// A flipped bit in synced data before the tail stops start-up, naming file and offset.
pub async fn corruption_before_tail_is_refused<S: Storage>(
    mut fresh: impl FnMut(&str) -> S,
    flip: impl Fn(&S, &str, u64),
) {
    let log = Log::open(fresh("c"), test_config()).await.expect("open");
    append_range(&log, 0, 10, 1).await;
    drop(log);
    let storage = fresh("c");
    let name = segment_name(Offset(0));
    // Byte 100 lies in one of the first batches; later synced batches follow it.
    flip(&storage, &name, 100);
    match Log::open(storage, test_config()).await {
        Err(OpenError::Corrupt { file, position, .. }) => {
            assert_eq!(file, name);
            assert!(
                position <= 100,
                "the damaged batch starts at or before byte 100"
            );
            assert!(100 - position < 200, "the reported batch holds byte 100");
        }
        Err(other) => panic!("expected corruption, got {other}"),
        Ok(_) => panic!("a corrupt log must not open"),
    }
}
