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
