use std::collections::HashMap;

use super::*;
use crate::conformance::{self, append_range, expect_records, test_config};
use crate::record::RecordInput;
use crate::sim_disk::{block_on, CrashMode, SimDisk};
use crate::storage::{IoErrorKind, IoOp, StorageFile};

fn disks() -> impl FnMut(&str) -> SimDisk {
    let mut disks: HashMap<String, SimDisk> = HashMap::new();
    move |name| {
        disks
            .entry(name.to_string())
            .or_insert_with(|| SimDisk::new(7))
            .clone()
    }
}

fn check_open(disk: &SimDisk) -> Log<SimDisk> {
    block_on(Log::open(disk.clone(), test_config())).expect("open")
}

#[test]
fn conformance_on_sim_disk() {
    block_on(conformance::roundtrip_reopen_retention(disks()));
    block_on(conformance::truncated_tail_recovers(disks()));
    block_on(conformance::truncation_survives_reopen(disks()));
    block_on(conformance::recycled_segments_roundtrip(disks()));
    block_on(conformance::corruption_before_tail_is_refused(
        disks(),
        |disk, name, byte| disk.flip_bit(name, byte, 3),
    ));
}

#[test]
fn one_sync_covers_every_staged_batch() {
    // Goal: group commit. Method: stage many batches, sync once, count device syncs.
    let disk = SimDisk::new(1);
    let log = check_open(&disk);
    let mut last = Offset(0);
    for i in 0..50u64 {
        let payload = vec![i as u8; 300];
        let record = RecordInput {
            timestamp_ms: i,
            attributes: b"",
            payload: &payload,
        };
        last = log.append(&[record]).unwrap().next_offset;
    }
    assert_eq!(log.durable_offset(), Offset(0));
    assert!(
        block_on(log.read(Offset(0), 100)).unwrap().is_empty(),
        "unsynced is unreadable"
    );
    let syncs_before = disk.stats().syncs;
    block_on(log.sync(last)).unwrap();
    assert_eq!(disk.stats().syncs - syncs_before, 1);
    assert_eq!(log.durable_offset(), Offset(50));
}

#[test]
fn crash_loses_only_unsynced_suffix() {
    for mode in [
        CrashMode::LoseUnsynced,
        CrashMode::TearLast,
        CrashMode::ScrambleSectors,
    ] {
        for seed in 0..20 {
            let disk = SimDisk::new(seed);
            let log = check_open(&disk);
            block_on(append_range(&log, 0, 40, 3));
            for i in 40..60u64 {
                let payload = conformance::payload(i);
                let record = RecordInput {
                    timestamp_ms: 1_000 + i,
                    attributes: b"attr",
                    payload: &payload,
                };
                log.append(&[record]).unwrap();
            }
            drop(log);
            disk.crash_with(mode);
            let log = check_open(&disk);
            assert_eq!(log.next_offset(), Offset(40), "mode {mode:?} seed {seed}");
            block_on(expect_records(&log, 0, 40));
        }
    }
}

#[test]
fn sync_failure_poisons_until_reopen() {
    let disk = SimDisk::new(2);
    let log = check_open(&disk);
    block_on(append_range(&log, 0, 5, 1));
    disk.fail_next(IoOp::Sync, IoErrorKind::Io);
    let payload = b"lost?".to_vec();
    let record = RecordInput {
        timestamp_ms: 1,
        attributes: b"",
        payload: &payload,
    };
    let err = block_on(log.append_durable(&[record])).unwrap_err();
    assert!(
        matches!(err, AppendError::Poisoned(LogError::Io { .. })),
        "{err:?}"
    );
    assert!(matches!(
        log.append(&[record]),
        Err(AppendError::Poisoned(_))
    ));
    drop(log);
    // Without a crash the failed write is still in the page cache: recovery re-writes
    // and syncs it, so it may reappear (never acknowledged, so allowed) and a crash
    // afterwards must not turn it into corruption.
    let log = check_open(&disk);
    assert!(log.next_offset() >= Offset(5));
    block_on(append_range(
        &log,
        log.next_offset().0,
        log.next_offset().0 + 3,
        1,
    ));
    drop(log);
    disk.crash_with(CrashMode::LoseUnsynced);
    let log = check_open(&disk);
    let records = block_on(log.read(Offset(0), 1 << 20)).unwrap();
    assert!(records.len() >= 5);
    for (i, record) in records.iter().take(5).enumerate() {
        assert_eq!(record.payload, conformance::payload(i as u64));
    }
}

#[test]
fn enospc_on_write_poisons_and_recovers() {
    let disk = SimDisk::new(3);
    let log = check_open(&disk);
    block_on(append_range(&log, 0, 5, 1));
    disk.fail_next(IoOp::Write, IoErrorKind::NoSpace);
    let payload = b"x".to_vec();
    let record = RecordInput {
        timestamp_ms: 1,
        attributes: b"",
        payload: &payload,
    };
    let err = block_on(log.append_durable(&[record])).unwrap_err();
    let AppendError::Poisoned(LogError::Io { error, .. }) = err else {
        panic!("{err:?}")
    };
    assert_eq!(error.kind, IoErrorKind::NoSpace);
    drop(log);
    let log = check_open(&disk);
    assert_eq!(log.next_offset(), Offset(5));
    block_on(append_range(&log, 5, 9, 2));
}

#[test]
fn staging_is_bounded() {
    let disk = SimDisk::new(4);
    let log = check_open(&disk);
    let payload = vec![0u8; 1 << 20];
    let record = RecordInput {
        timestamp_ms: 1,
        attributes: b"",
        payload: &payload,
    };
    let mut busy = false;
    for _ in 0..100 {
        if let Err(error) = log.append(&[record]) {
            assert!(matches!(error, AppendError::Busy { .. }), "{error:?}");
            busy = true;
            break;
        }
    }
    assert!(busy, "staging must push back");
    block_on(log.sync(log.next_offset())).unwrap();
    log.append(&[record]).expect("room after sync");
}

#[test]
fn corrupt_index_is_rebuilt_and_corrupt_sealed_segment_is_reported() {
    let disk = SimDisk::new(5);
    let log = check_open(&disk);
    block_on(append_range(&log, 0, 200, 5));
    assert!(log.segment_count() > 2);
    drop(log);
    // Flip a bit in the first segment's index: ignored and rebuilt.
    disk.flip_bit(&crate::segment::index_name(Offset(0)), 20, 1);
    let log = check_open(&disk);
    block_on(expect_records(&log, 0, 200));
    drop(log);
    // Flip a payload bit in the sealed first segment. Tail verification opens it and
    // the read names the file and byte; full verification refuses to start.
    disk.flip_bit(&crate::segment::segment_name(Offset(0)), 3000, 0);
    let log = check_open(&disk);
    let err = block_on(async {
        let mut next = 0;
        loop {
            match log.read(Offset(next), 4096).await {
                Ok(records) if records.is_empty() => return None,
                Ok(records) => next = records.last().unwrap().offset.0 + 1,
                Err(error) => return Some(error),
            }
        }
    });
    let Some(ReadError::Corrupt { file, position, .. }) = err else {
        panic!("{err:?}")
    };
    assert_eq!(file, crate::segment::segment_name(Offset(0)));
    assert!(position <= 3000);
    drop(log);
    let config = LogConfig {
        verify_on_open: VerifyOnOpen::All,
        cache_bytes_max: crate::limits::LOG_CACHE_BYTES_DEFAULT,
        ..test_config()
    };
    let err = block_on(Log::open(disk.clone(), config))
        .err()
        .expect("must refuse");
    let OpenError::Corrupt { file, .. } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(file, &crate::segment::segment_name(Offset(0)));
    assert!(err.to_string().contains("checksum mismatch"), "{err}");
}

#[test]
fn file_cut_inside_padding_recovers_every_record() {
    // Found by the segment_scan fuzz target: a file that ends inside the zero padding
    // of its last batch made recovery slice past the end of the bytes.
    let disk = SimDisk::new(8);
    let log = check_open(&disk);
    block_on(append_range(&log, 0, 3, 1));
    drop(log);
    let name = crate::segment::segment_name(Offset(0));
    let bytes = block_on(async {
        let file = crate::storage::Storage::open(&disk, &name).await.unwrap();
        let size = file.size().await.unwrap();
        file.read_at(0, size as usize).await.unwrap()
    });
    let scan = crate::segment::scan_segment(&bytes, Offset(0), 1024);
    let last_payload_end = scan.valid_bytes - 1;
    assert_eq!(bytes[last_payload_end as usize], 0, "payload 2 is padded");
    disk.truncate_at_rest(&name, last_payload_end);
    let log = check_open(&disk);
    block_on(expect_records(&log, 0, 3));
    block_on(append_range(&log, 3, 6, 2));
    drop(log);
    let log = check_open(&disk);
    block_on(expect_records(&log, 0, 6));
}

#[test]
fn transient_read_faults_never_truncate_durable_records() {
    // Found by the simulation (seed 647): a bit flipped on read during recovery made
    // a good tail look torn, and recovery cut acknowledged records. Method: open many
    // times while 30% of reads flip a bit; each open must fail or recover everything.
    let disk = SimDisk::new(9);
    let log = check_open(&disk);
    block_on(append_range(&log, 0, 30, 1));
    drop(log);
    disk.set_fault_rates(crate::sim_disk::FaultRates {
        read_bitflip_ppm: 300_000,
        ..Default::default()
    });
    let mut opened = 0;
    for _ in 0..40 {
        match block_on(Log::open(disk.clone(), test_config())) {
            Ok(log) => {
                opened += 1;
                assert_eq!(log.next_offset(), Offset(30), "recovery dropped records");
            }
            Err(OpenError::UnstableReads { .. } | OpenError::Corrupt { .. }) => {}
            Err(other) => panic!("unexpected {other}"),
        }
    }
    assert!(opened > 0, "some opens see stable reads");
    disk.set_fault_rates(crate::sim_disk::FaultRates::default());
    let log = check_open(&disk);
    block_on(expect_records(&log, 0, 30));
}

#[test]
fn header_flip_in_tail_segment_is_refused() {
    let disk = SimDisk::new(6);
    let log = check_open(&disk);
    block_on(append_range(&log, 0, 10, 1));
    drop(log);
    // Byte 30 is inside the first batch header (base_offset field).
    disk.flip_bit(&crate::segment::segment_name(Offset(0)), 30, 2);
    let err = block_on(Log::open(disk.clone(), test_config()))
        .err()
        .expect("refuse");
    assert!(
        matches!(err, OpenError::Corrupt { position: 0, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("00000000000000000000.log"));
}

/// Every durable record from the start, read segment by segment.
fn read_all(log: &Log<SimDisk>) -> Vec<ReadRecord> {
    let mut records: Vec<ReadRecord> = Vec::new();
    let mut next = log.start_offset();
    // Bounded: each read returns at least one record or ends the loop.
    loop {
        let batch = block_on(log.read(next, 1 << 20)).expect("read");
        let Some(last) = batch.last() else {
            return records;
        };
        next = Offset(last.offset.0 + 1);
        records.extend(batch);
    }
}

/// Appends `count` records in batches of `batch` with `term`, payloads tagged by `tag`.
fn append_tagged(log: &Log<SimDisk>, term: u64, count: u64, batch: u64, tag: u8) {
    let mut left = count;
    while left > 0 {
        let n = left.min(batch);
        let first = log.next_offset().0;
        let payloads: Vec<Vec<u8>> = (first..first + n).map(|i| tagged_payload(i, tag)).collect();
        let records: Vec<RecordInput<'_>> = payloads
            .iter()
            .map(|p| RecordInput {
                timestamp_ms: 1,
                attributes: b"",
                payload: p,
            })
            .collect();
        log.append_with_term(term, &records).expect("append");
        left -= n;
    }
}

fn tagged_payload(offset: u64, tag: u8) -> Vec<u8> {
    let mut payload = vec![tag; usize::try_from(offset % 700 + 800).unwrap()];
    payload[..8].copy_from_slice(&offset.to_le_bytes());
    payload
}

fn sync_all(log: &Log<SimDisk>) {
    block_on(log.sync(log.next_offset())).expect("sync");
}

/// The log holds records `0..tags.len()` with these payload tags and terms.
fn expect_content(log: &Log<SimDisk>, expected: &[(u8, u64)]) {
    let records = read_all(log);
    assert_eq!(records.len(), expected.len(), "record count");
    assert_eq!(log.next_offset(), Offset(expected.len() as u64));
    for (record, (offset, (tag, term))) in records.iter().zip(expected.iter().enumerate()) {
        let offset = offset as u64;
        assert_eq!(record.offset, Offset(offset));
        assert_eq!(
            record.payload,
            tagged_payload(offset, *tag),
            "payload {offset}"
        );
        assert_eq!(log.term_at(Offset(offset)), Some(*term), "term of {offset}");
    }
    assert_eq!(log.term_at(log.next_offset()), None);
    let last_term = expected.last().map_or(0, |(_, term)| *term);
    assert_eq!(log.last_term(), last_term);
}

/// (tag, term) for `count` records.
fn same(tag: u8, term: u64, count: usize) -> Vec<(u8, u64)> {
    vec![(tag, term); count]
}

#[test]
fn terms_survive_reopen_in_sealed_and_active_segments() {
    let disk = SimDisk::new(11);
    let log = check_open(&disk);
    assert_eq!(log.last_term(), 0);
    append_tagged(&log, 0, 80, 4, 1);
    append_tagged(&log, 3, 120, 7, 1);
    append_tagged(&log, 3, 10, 3, 1);
    append_tagged(&log, 9, 25, 5, 1);
    assert!(log.segment_count() >= 4, "terms span sealed segments");
    // Staged records have terms before any sync.
    assert_eq!(log.term_at(Offset(234)), Some(9));
    assert_eq!(log.term_at(Offset(235)), None);
    sync_all(&log);
    let mut expected = same(1, 0, 80);
    expected.extend(same(1, 3, 130));
    expected.extend(same(1, 9, 25));
    expect_content(&log, &expected);
    drop(log);
    for verify_on_open in [VerifyOnOpen::Tail, VerifyOnOpen::All] {
        let config = LogConfig {
            verify_on_open,
            ..test_config()
        };
        let log = block_on(Log::open(disk.clone(), config)).unwrap();
        expect_content(&log, &expected);
    }
}

#[test]
fn old_version_index_files_are_rebuilt_with_terms() {
    let disk = SimDisk::new(12);
    let log = check_open(&disk);
    append_tagged(&log, 2, 100, 5, 1);
    append_tagged(&log, 4, 100, 5, 1);
    sync_all(&log);
    let segments = log.segment_count();
    assert!(segments > 2);
    let mut expected = same(1, 2, 100);
    expected.extend(same(1, 4, 100));
    drop(log);
    // Turn every index file into a version-1 file (checksum repaired).
    let names: Vec<String> = block_on(crate::storage::Storage::list(&disk)).unwrap();
    let index_names: Vec<&String> = names.iter().filter(|n| n.ends_with(".idx")).collect();
    assert_eq!(index_names.len(), segments - 1);
    for name in &index_names {
        rewrite_file(&disk, name, |bytes| {
            bytes[12..14].copy_from_slice(&1u16.to_le_bytes());
            let used = bytes.len();
            let checksum = xxhash_rust::xxh3::xxh3_64(&bytes[8..used]);
            bytes[..8].copy_from_slice(&checksum.to_le_bytes());
        });
        assert!(crate::offset_index::OffsetIndex::decode_file(&read_file(&disk, name)).is_none());
    }
    let log = check_open(&disk);
    expect_content(&log, &expected);
    drop(log);
    for name in &index_names {
        let stored = crate::offset_index::OffsetIndex::decode_file(&read_file(&disk, name));
        assert!(stored.is_some(), "{name} rewritten in the current version");
    }
}

fn read_file(disk: &SimDisk, name: &str) -> Vec<u8> {
    block_on(async {
        let file = crate::storage::Storage::open(disk, name).await.unwrap();
        let size = file.size().await.unwrap();
        file.read_at(0, usize::try_from(size).unwrap())
            .await
            .unwrap()
    })
}

/// Replaces a file by an edited copy of itself, durably.
fn rewrite_file(disk: &SimDisk, name: &str, edit: impl FnOnce(&mut Vec<u8>)) {
    let mut bytes = read_file(disk, name);
    edit(&mut bytes);
    block_on(async {
        crate::storage::Storage::remove(disk, name).await.unwrap();
        let file = crate::storage::Storage::create(disk, name).await.unwrap();
        let mut buf = file.alloc_buf(bytes.len());
        buf.as_mut().copy_from_slice(&bytes);
        file.write_at(buf, 0).await.unwrap();
        file.sync().await.unwrap();
    });
}

#[test]
fn a_lower_term_is_refused() {
    let disk = SimDisk::new(13);
    let log = check_open(&disk);
    append_tagged(&log, 5, 3, 3, 1);
    let record = RecordInput {
        timestamp_ms: 1,
        attributes: b"",
        payload: b"x",
    };
    assert_eq!(
        log.append_with_term(4, &[record]),
        Err(AppendError::TermRegressed {
            term: 4,
            last_term: 5
        })
    );
    assert_eq!(log.next_offset(), Offset(3), "nothing staged");
    let appended = log.append(&[record]).unwrap();
    assert_eq!(log.term_at(appended.first_offset), Some(5));
    log.append_with_term(5, &[record]).unwrap();
    log.append_with_term(6, &[record]).unwrap();
    assert_eq!(log.last_term(), 6);
}

/// A synced log of 180 records in batches of 6 over several segments: 120 in term 1,
/// then 60 in term 2.
fn truncation_fixture(seed: u64) -> (SimDisk, Log<SimDisk>, Vec<(u8, u64)>) {
    let disk = SimDisk::new(seed);
    let log = check_open(&disk);
    append_tagged(&log, 1, 120, 6, 1);
    append_tagged(&log, 2, 60, 6, 1);
    sync_all(&log);
    assert!(log.segment_count() >= 3);
    let mut expected = same(1, 1, 120);
    expected.extend(same(1, 2, 60));
    (disk, log, expected)
}

/// Truncates at `offset`, checks the log and a reopened one, appends after it.
fn check_truncation(seed: u64, offset: u64) {
    let (disk, log, mut expected) = truncation_fixture(seed);
    block_on(log.truncate_from(Offset(offset))).expect("truncate");
    expected.truncate(usize::try_from(offset).unwrap());
    assert_eq!(log.next_offset(), Offset(offset));
    assert!(log.durable_offset() <= Offset(offset));
    assert!(block_on(log.read(Offset(offset), 1 << 20))
        .unwrap()
        .is_empty());
    expect_content(&log, &expected);
    append_tagged(&log, 3, 20, 4, 2);
    sync_all(&log);
    expected.extend(same(2, 3, 20));
    expect_content(&log, &expected);
    drop(log);
    for mode in [CrashMode::LoseUnsynced, CrashMode::ScrambleSectors] {
        disk.crash_with(mode);
        let log = check_open(&disk);
        expect_content(&log, &expected);
    }
}

#[test]
fn truncate_in_mid_batch_at_a_boundary_and_in_sealed_segments() {
    // 17: mid-batch in the first (sealed) segment; 18: a batch boundary; 150: in the
    // term-2 records; 179: the last record; 0: everything.
    for (seed, offset) in [(20, 17), (21, 18), (22, 150), (23, 179), (24, 0)] {
        check_truncation(seed, offset);
    }
}

#[test]
fn truncate_at_each_segment_base() {
    let (_, log, _) = truncation_fixture(25);
    let bases: Vec<u64> = log
        .state
        .borrow()
        .segments
        .iter()
        .map(|s| s.base_offset.0)
        .collect();
    drop(log);
    for (i, base) in bases.into_iter().enumerate() {
        check_truncation(30 + i as u64, base);
    }
}

#[test]
fn truncate_staged_records() {
    let (disk, log, mut expected) = truncation_fixture(26);
    append_tagged(&log, 2, 12, 6, 1);
    assert_eq!(log.durable_offset(), Offset(180));
    block_on(log.truncate_from(Offset(184))).unwrap();
    expected.extend(same(1, 2, 4));
    expect_content(&log, &expected);
    assert_eq!(log.durable_offset(), Offset(184));
    drop(log);
    disk.crash_with(CrashMode::LoseUnsynced);
    expect_content(&check_open(&disk), &expected);
}

#[test]
fn truncate_to_next_offset_is_a_no_op_and_out_of_range_is_refused() {
    let (disk, log, expected) = truncation_fixture(27);
    let files = block_on(crate::storage::Storage::list(&disk)).unwrap();
    block_on(log.truncate_from(Offset(180))).unwrap();
    assert_eq!(
        block_on(crate::storage::Storage::list(&disk)).unwrap(),
        files
    );
    expect_content(&log, &expected);
    let err = block_on(log.truncate_from(Offset(181))).unwrap_err();
    assert_eq!(
        err,
        LogError::OutOfRange {
            offset: Offset(181),
            start_offset: Offset(0),
            next_offset: Offset(180)
        }
    );
    let policy = RetentionPolicy {
        remove_below: Some(Offset(100)),
        ..RetentionPolicy::default()
    };
    block_on(log.apply_retention(0, policy)).unwrap();
    let start = log.start_offset();
    assert!(start > Offset(0));
    let err = block_on(log.truncate_from(Offset(start.0 - 1))).unwrap_err();
    assert!(matches!(err, LogError::OutOfRange { .. }), "{err:?}");
    assert!(err.to_string().contains("cannot truncate"), "{err}");
    assert!(
        log.poisoned().is_none(),
        "a refused truncation does not poison"
    );
}

#[test]
fn retention_and_reads_work_across_capped_segments() {
    let (disk, log, mut expected) = truncation_fixture(28);
    block_on(log.truncate_from(Offset(40))).unwrap();
    expected.truncate(40);
    append_tagged(&log, 3, 200, 5, 2);
    sync_all(&log);
    expected.extend(same(2, 3, 200));
    expect_content(&log, &expected);
    let policy = RetentionPolicy {
        remove_below: Some(Offset(45)),
        ..RetentionPolicy::default()
    };
    block_on(log.apply_retention(0, policy)).unwrap();
    let start = log.start_offset();
    assert!(start > Offset(0) && start <= Offset(45), "{start}");
    assert_eq!(log.term_at(Offset(start.0 - 1)), None, "removed");
    drop(log);
    let log = check_open(&disk);
    assert_eq!(log.start_offset(), start);
    let records = read_all(&log);
    assert_eq!(records.first().unwrap().offset, start);
    assert_eq!(records.len() as u64, 240 - start.0);
    // Retention of everything but the last segment, then truncate all that is left:
    // the last term is still known in this process.
    let policy = RetentionPolicy {
        remove_below: Some(Offset(240)),
        ..RetentionPolicy::default()
    };
    block_on(log.apply_retention(0, policy)).unwrap();
    let start = log.start_offset();
    block_on(log.truncate_from(start)).unwrap();
    assert_eq!(log.next_offset(), start);
    assert_eq!(
        log.last_term(),
        3,
        "the term of start - 1, kept by retention"
    );
    drop(log);
    let log = check_open(&disk);
    assert_eq!((log.start_offset(), log.next_offset()), (start, start));
    assert_eq!(log.last_term(), 0, "unknown after a reopen");
}

#[test]
fn a_repeated_truncation_interrupted_never_brings_back_what_an_earlier_one_removed() {
    // Truncate mid-batch (the capped segment keeps the removed records' bytes), append,
    // then truncate again at the same offset and fail every step in turn before a crash:
    // the records the first truncation removed must never come back.
    for fail_at in 0..12u32 {
        let (disk, log, mut expected) = truncation_fixture(40 + u64::from(fail_at));
        block_on(log.truncate_from(Offset(93))).unwrap();
        expected.truncate(93);
        append_tagged(&log, 3, 30, 6, 2);
        sync_all(&log);
        disk.fail_nth_call(fail_at + 1, IoErrorKind::Io);
        let result = block_on(log.truncate_from(Offset(93)));
        disk.clear_faults();
        drop(log);
        disk.crash();
        let log = check_open(&disk);
        let mut with_new = expected.clone();
        with_new.extend(same(2, 3, 30));
        if result.is_ok() || log.next_offset() == Offset(93) {
            expect_content(&log, &expected);
        } else {
            expect_content(&log, &with_new);
        }
    }
}

#[test]
fn an_io_error_during_truncation_poisons() {
    let (disk, log, expected) = truncation_fixture(29);
    // Truncate is the first call after the truncation record and the removals.
    disk.fail_next(IoOp::Truncate, IoErrorKind::Io);
    let err = block_on(log.truncate_from(Offset(50))).unwrap_err();
    assert!(matches!(err, LogError::Io { .. }), "{err:?}");
    assert!(log.poisoned().is_some());
    assert!(matches!(
        log.append(&[RecordInput {
            timestamp_ms: 1,
            attributes: b"",
            payload: b"x"
        }]),
        Err(AppendError::Poisoned(_))
    ));
    drop(log);
    // The truncation record is there: recovery finishes the truncation.
    let log = check_open(&disk);
    expect_content(&log, &expected[..50]);
}

// Recycled segment files (docs/log.md D12, D13).

fn names_with(disk: &SimDisk, suffix: &str) -> Vec<String> {
    block_on(crate::storage::Storage::list(disk))
        .unwrap()
        .into_iter()
        .filter(|name| name.ends_with(suffix))
        .collect()
}

/// The log holds exactly `expected[start..]` from its start offset on.
fn expect_content_from(log: &Log<SimDisk>, expected: &[(u8, u64)]) {
    let start = log.start_offset().0;
    let records = read_all(log);
    assert_eq!(
        log.next_offset(),
        Offset(expected.len() as u64),
        "next offset"
    );
    assert_eq!(records.len() as u64, expected.len() as u64 - start, "count");
    for record in &records {
        let offset = record.offset.0;
        let (tag, term) = expected[usize::try_from(offset).unwrap()];
        assert_eq!(
            record.payload,
            tagged_payload(offset, tag),
            "payload {offset}"
        );
        assert_eq!(log.term_at(record.offset), Some(term), "term of {offset}");
    }
}

/// A log whose older segments retention removed into the recycle pool (2 files), its
/// last segment full enough that the next batches roll into a recycled file.
fn recycling_fixture(seed: u64) -> (SimDisk, Log<SimDisk>, Vec<(u8, u64)>) {
    let disk = SimDisk::new(seed);
    let log = check_open(&disk);
    append_tagged(&log, 1, 300, 5, 1);
    sync_all(&log);
    let segments = log.segment_count();
    assert!(segments >= 4, "{segments}");
    let last_base = log.state.borrow().segments.back().unwrap().base_offset;
    let policy = RetentionPolicy {
        remove_below: Some(last_base),
        ..RetentionPolicy::default()
    };
    let removed = block_on(log.apply_retention(0, policy)).unwrap();
    assert_eq!(removed as usize, segments - 1);
    assert_eq!(log.recycle_stats().free_files, 2, "bounded by the config");
    assert_eq!(names_with(&disk, ".free").len(), 2, "the others unlinked");
    assert_eq!(names_with(&disk, ".idx").len(), 0);
    (disk, log, same(1, 1, 300))
}

/// Appends (tag 2, term 2) until the log rolls into a new segment and then `extra`
/// batches of 2; returns the new segment's base.
fn roll_into_new_segment(log: &Log<SimDisk>, expected: &mut Vec<(u8, u64)>, extra: u64) -> Offset {
    let segments = log.segment_count();
    while log.segment_count() == segments {
        append_tagged(log, 2, 5, 5, 2);
        expected.extend(same(2, 2, 5));
    }
    let base = log.state.borrow().segments.back().unwrap().base_offset;
    append_tagged(log, 2, 2 * extra, 2, 2);
    expected.extend(same(2, 2, usize::try_from(2 * extra).unwrap()));
    sync_all(log);
    base
}

#[test]
fn a_recycled_segment_with_stale_batches_recovers_exactly_the_new_data() {
    for mode in [
        CrashMode::LoseUnsynced,
        CrashMode::TearLast,
        CrashMode::ScrambleSectors,
    ] {
        for seed in 0..8 {
            let (disk, log, mut expected) = recycling_fixture(100 + seed);
            let base = roll_into_new_segment(&log, &mut expected, 3);
            assert_eq!(log.recycle_stats().reused, 1);
            assert_eq!(log.recycle_stats().free_files, 1);
            let name = crate::segment::segment_name(base);
            let data = log.state.borrow().segments.back().unwrap().written_bytes;
            let size = disk.file_bytes(&name).unwrap();
            assert!(size > data + 8192, "stale bytes follow: {size} vs {data}");
            // Stale batches are valid batches of another epoch right after the data.
            let bytes = read_file(&disk, &name);
            let scan = crate::segment::scan_segment(&bytes, base, 1024);
            assert_eq!(scan.next_offset, log.next_offset());
            assert!(
                matches!(scan.end, crate::segment::ScanEnd::Clean)
                    || matches!(scan.end, crate::segment::ScanEnd::Torn { .. }),
                "{:?}",
                scan.end
            );
            // Unsynced records on top, then a crash.
            append_tagged(&log, 2, 6, 3, 3);
            drop(log);
            disk.crash_with(mode);
            for verify_on_open in [VerifyOnOpen::Tail, VerifyOnOpen::All] {
                let config = LogConfig {
                    verify_on_open,
                    ..test_config()
                };
                let log = block_on(Log::open(disk.clone(), config)).expect("recovers");
                let next = log.next_offset().0 as usize;
                assert!(next >= expected.len() && next <= expected.len() + 6);
                let mut with_unsynced = expected.clone();
                with_unsynced.extend(same(3, 2, next - expected.len()));
                expect_content_from(&log, &with_unsynced);
            }
            // The recycled segment, sealed by a later roll, is cut to its data.
            let log = check_open(&disk);
            let mut expected: Vec<(u8, u64)> = (0..log.next_offset().0)
                .map(|offset| match offset {
                    o if (o as usize) < expected.len() => expected[o as usize],
                    _ => (3, 2),
                })
                .collect();
            roll_into_new_segment(&log, &mut expected, 1);
            let sealed = log.state.borrow().segment(base).written_bytes;
            assert_eq!(disk.file_bytes(&name), Some(sealed));
            drop(log);
            expect_content_from(&check_open(&disk), &expected);
        }
    }
}

#[test]
fn a_crash_at_any_step_of_a_roll_into_a_recycled_file_loses_nothing() {
    // The flush that rolls writes and syncs the old segment's data, cuts it, writes its
    // index file, renames a recycled file to the new segment's name, opens it, writes
    // and syncs. Stop it at each storage call in turn and crash: every acknowledged
    // record survives, nothing else appears, and a crash between the rename and the
    // first sync leaves an empty segment over the previous life's bytes.
    let (mut before_rename, mut after_rename) = (false, false);
    for fail_at in 1..30u32 {
        let (disk, log, mut expected) = recycling_fixture(200 + u64::from(fail_at));
        let acked = expected.len();
        let segments = log.segment_count();
        while log.segment_count() == segments {
            append_tagged(&log, 2, 5, 5, 2);
            expected.extend(same(2, 2, 5));
        }
        let new_base = log.state.borrow().segments.back().unwrap().base_offset;
        let new_name = crate::segment::segment_name(new_base);
        disk.fail_nth_call(fail_at, IoErrorKind::Io);
        let result = block_on(log.sync(log.next_offset()));
        disk.clear_faults();
        drop(log);
        disk.crash();
        let free = names_with(&disk, ".free").len();
        let renamed_bytes = disk.file_bytes(&new_name);
        let renamed = renamed_bytes.is_some();
        assert_eq!(free + usize::from(renamed), 2, "the rename is atomic");
        assert_ne!(
            renamed_bytes,
            Some(0),
            "a recycled file holds its old bytes"
        );
        let log = check_open(&disk);
        let next = usize::try_from(log.next_offset().0).unwrap();
        assert!(next >= acked && next <= expected.len(), "{next}");
        if result.is_ok() {
            assert_eq!(next, expected.len());
        }
        expect_content_from(&log, &expected[..next]);
        before_rename |= !renamed;
        after_rename |= renamed && log.next_offset() == new_base;
        // The log goes on: appends roll on and reuse what is left.
        let mut expected = expected[..next].to_vec();
        roll_into_new_segment(&log, &mut expected, 2);
        drop(log);
        disk.crash();
        expect_content_from(&check_open(&disk), &expected);
        if result.is_ok() {
            break;
        }
    }
    assert!(
        before_rename && after_rename,
        "{before_rename} {after_rename}"
    );
}

#[test]
fn recycling_is_bounded_and_configurable() {
    // Retention passes keep at most `recycle_segments_max` files; 0 keeps none; a
    // reopen with a lower bound removes the extras.
    for max in [0u32, 1, 2, 3] {
        let disk = SimDisk::new(300 + u64::from(max));
        let config = LogConfig {
            recycle_segments_max: max,
            ..test_config()
        };
        let log = block_on(Log::open(disk.clone(), config)).unwrap();
        let mut expected = Vec::new();
        for round in 0..6u64 {
            append_tagged(&log, 1, 100, 5, 1);
            expected.extend(same(1, 1, 100));
            sync_all(&log);
            let policy = RetentionPolicy {
                bytes_max: Some(100_000),
                ..RetentionPolicy::default()
            };
            block_on(log.apply_retention(round, policy)).unwrap();
            let free = names_with(&disk, ".free").len();
            assert!(free <= max as usize, "{free} > {max}");
            assert_eq!(log.recycle_stats().free_files, free);
        }
        let stats = log.recycle_stats();
        if max > 0 {
            assert!(stats.reused > 0, "rolls reuse recycled files");
        } else {
            assert_eq!((stats.reused, stats.free_files), (0, 0));
        }
        expect_content_from(&log, &expected);
        drop(log);
        let config = LogConfig {
            recycle_segments_max: max.min(1),
            ..test_config()
        };
        let log = block_on(Log::open(disk.clone(), config)).unwrap();
        assert!(names_with(&disk, ".free").len() <= max.min(1) as usize);
        expect_content_from(&log, &expected);
    }
}

/// Writes a synced free file `<old_base>.free` holding one batch of the segment based at
/// `old_base` (its epoch).
fn put_free_file(disk: &SimDisk, old_base: Offset) {
    block_on(async {
        let name = crate::segment::free_name(old_base);
        let file = crate::storage::Storage::create(disk, &name).await.unwrap();
        let mut bytes = Vec::new();
        let record = RecordInput {
            timestamp_ms: 1,
            attributes: b"",
            payload: b"stale",
        };
        let epoch = crate::segment::segment_epoch(old_base);
        crate::record::encode_batch(&mut bytes, old_base, epoch, 0, 0, &[record]).unwrap();
        bytes.resize(4096, 0);
        let mut buf = file.alloc_buf(4096);
        buf.as_mut().copy_from_slice(&bytes);
        file.write_at(buf, 0).await.unwrap();
        file.sync().await.unwrap();
    });
}

#[test]
fn a_free_file_is_reused_only_for_a_later_base_of_another_epoch() {
    // Base 65,535 has the epoch of base 131,070: its batches would pass for that
    // segment's. A free file at or past the log's start did not come from its
    // retention and is removed at open.
    use crate::segment::segment_epoch;
    assert_eq!(
        segment_epoch(Offset(65_535)),
        segment_epoch(Offset(131_070))
    );
    let disk = SimDisk::new(400);
    let log = check_open(&disk);
    block_on(log.reset_to(Offset(131_000))).unwrap();
    let small: Vec<RecordInput<'_>> = (0..70)
        .map(|_| RecordInput {
            timestamp_ms: 1,
            attributes: b"",
            payload: b"0123456789",
        })
        .collect();
    log.append(&small).unwrap();
    sync_all(&log);
    drop(log);
    put_free_file(&disk, Offset(65_535));
    put_free_file(&disk, Offset(200_000));
    let log = check_open(&disk);
    assert_eq!(log.start_offset(), Offset(131_000));
    assert_eq!(
        log.recycle_stats().free_files,
        1,
        "the one past the start removed"
    );
    assert_eq!(
        names_with(&disk, ".free"),
        vec![crate::segment::free_name(Offset(65_535))]
    );
    // A batch too large for what is left of the segment: a roll to base 131,070.
    let big = vec![7u8; 63 * 1024];
    log.append(&[RecordInput {
        timestamp_ms: 1,
        attributes: b"",
        payload: &big,
    }])
    .unwrap();
    sync_all(&log);
    assert_eq!(log.segment_count(), 2);
    assert_eq!(log.recycle_stats().reused, 0, "a new file instead");
    assert_eq!(names_with(&disk, ".free").len(), 1);
    drop(log);
    disk.crash();
    let log = check_open(&disk);
    assert_eq!(log.next_offset(), Offset(131_071));
    let records = read_all(&log);
    assert_eq!(records.len(), 71);
    assert_eq!(records[70].payload, big);
    assert!(records[..70]
        .iter()
        .all(|r| &r.payload[..] == b"0123456789"));
}

#[test]
fn legacy_segments_read_and_are_never_recycled() {
    // Two segments written before epochs (every batch of epoch 0), no index files.
    let disk = SimDisk::new(500);
    block_on(async {
        for base in [0u64, 10] {
            let mut bytes = Vec::new();
            for offset in base..base + 10 {
                let payload = tagged_payload(offset, 1);
                let record = RecordInput {
                    timestamp_ms: 1,
                    attributes: b"",
                    payload: &payload,
                };
                let claim = bytes.len() as u64;
                crate::record::encode_batch(&mut bytes, Offset(offset), 0, 4, claim, &[record])
                    .unwrap();
            }
            bytes.resize(
                usize::try_from(crate::record::align_up(bytes.len() as u64, 4096)).unwrap(),
                0,
            );
            let name = crate::segment::segment_name(Offset(base));
            let file = crate::storage::Storage::create(&disk, &name).await.unwrap();
            let mut buf = file.alloc_buf(bytes.len());
            buf.as_mut().copy_from_slice(&bytes);
            file.write_at(buf, 0).await.unwrap();
            file.sync().await.unwrap();
        }
    });
    let log = check_open(&disk);
    expect_content_from(&log, &same(1, 4, 20));
    // New batches go on in the legacy last segment.
    append_tagged(&log, 4, 5, 5, 2);
    sync_all(&log);
    let mut expected = same(1, 4, 20);
    expected.extend(same(2, 4, 5));
    let policy = RetentionPolicy {
        remove_below: Some(Offset(10)),
        ..RetentionPolicy::default()
    };
    assert_eq!(block_on(log.apply_retention(0, policy)).unwrap(), 1);
    assert_eq!(log.recycle_stats().free_files, 0, "unlinked, not recycled");
    assert!(names_with(&disk, ".free").is_empty());
    drop(log);
    let log = check_open(&disk);
    expect_content_from(&log, &expected);
}
