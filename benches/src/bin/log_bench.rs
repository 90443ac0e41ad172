//! `log-bench`: appends 1 KiB records through `Log<DmaStorage>` in batches of 1, 16, 256
//! and 1024 records, one `append` + `sync` (one fdatasync) per batch, for a fixed time
//! per case; runs the fio baseline script on the same file system before and after
//! them, and prints both side by side with the ratio the log issue sets goals for
//! (against the better fio run; a large spread between the two, or build processes
//! seen running, is printed as a warning because it makes the figures unreliable). Measures only; it owns no
//! log or storage behaviour.
//!
//! Usage: `cargo run --release -p sluice-benches --bin log-bench -- [--seconds N]
//! [--dir PATH] [--batches 1,16,256,1024] [--baseline-script PATH] [--no-baseline]
//! [--sized-preallocate] [--spin-us N]`
//!
//! `--sized-preallocate` is an experiment, not a production mode: the storage is wrapped
//! so that `preallocate` uses `fallocate` without KEEP_SIZE (the file's size grows to
//! the reservation), which breaks the storage contract's "without changing the size"
//! but shows what the log would gain if appends did not extend the file.

#[cfg(not(madsim))]
fn main() {
    bench::main();
}

#[cfg(madsim)]
fn main() {
    eprintln!("log-bench needs the real disk; build it without --cfg madsim");
}

#[cfg(not(madsim))]
mod bench {
    use std::path::{Path, PathBuf};
    use std::process::Command;
    use std::time::{Duration, Instant};

    use sluice_core::log::{Log, LogConfig, VerifyOnOpen};
    use sluice_core::record::RecordInput;
    use sluice_core::storage::Storage;
    use sluice_shard::executor::ShardStartup;
    use sluice_shard::{DmaStorage, DmaStorageStats};

    const PAYLOAD_BYTES: usize = 1024;
    /// Latency samples kept per case; beyond it samples are dropped (counts still count).
    const LATENCY_SAMPLES_MAX: usize = 1 << 20;

    struct Args {
        seconds: u64,
        dir: PathBuf,
        batches: Vec<usize>,
        /// The fio disk-baseline script (docs/log-bench.md says what it runs); without
        /// one there is no baseline.
        baseline_script: Option<PathBuf>,
        baseline: bool,
        sized_preallocate: bool,
        /// The executor's spin-before-park; none by default (see
        /// `SPIN_BEFORE_PARK_MESSAGING` for why a storage shard does not spin).
        spin_us: Option<u64>,
    }

    fn parse_args() -> Args {
        let default_dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("benches/ has a parent")
            .join("target-bench-data");
        let mut args = Args {
            seconds: 5,
            dir: default_dir,
            batches: vec![1, 16, 256, 1024],
            baseline_script: None,
            baseline: true,
            sized_preallocate: false,
            spin_us: None,
        };
        let mut raw = std::env::args().skip(1);
        // Bounded by the number of arguments.
        while let Some(flag) = raw.next() {
            let mut value = || {
                raw.next()
                    .unwrap_or_else(|| usage(&format!("{flag} needs a value")))
            };
            match flag.as_str() {
                "--seconds" => {
                    args.seconds = value().parse().unwrap_or_else(|_| usage("bad --seconds"))
                }
                "--dir" => args.dir = PathBuf::from(value()),
                "--batches" => {
                    args.batches = value()
                        .split(',')
                        .map(|b| b.parse().unwrap_or_else(|_| usage("bad --batches")))
                        .collect()
                }
                "--baseline-script" => args.baseline_script = Some(PathBuf::from(value())),
                "--no-baseline" => args.baseline = false,
                "--sized-preallocate" => args.sized_preallocate = true,
                "--spin-us" => {
                    args.spin_us = Some(value().parse().unwrap_or_else(|_| usage("bad --spin-us")))
                }
                other => usage(&format!("unknown argument {other}")),
            }
        }
        args
    }

    fn usage(problem: &str) -> ! {
        eprintln!("log-bench: {problem}");
        eprintln!(
            "usage: log-bench [--seconds N] [--dir PATH] [--batches 1,16,256,1024] \
             [--baseline-script PATH] [--no-baseline] [--sized-preallocate] [--spin-us N]"
        );
        std::process::exit(2);
    }

    /// The production-like config the issue asks for.
    fn log_config() -> LogConfig {
        LogConfig {
            segment_bytes_max: 256 << 20,
            index_interval_bytes: 64 << 10,
            preallocate_bytes: 64 << 20,
            verify_on_open: VerifyOnOpen::Tail,
            cache_bytes_max: sluice_core::limits::LOG_CACHE_BYTES_DEFAULT,
            recycle_segments_max: sluice_core::limits::LOG_RECYCLE_SEGMENTS_DEFAULT,
        }
    }

    struct CaseResult {
        batch_records: usize,
        batch_count: u64,
        elapsed: Duration,
        stats: DmaStorageStats,
        latencies_us: Vec<u32>,
    }

    impl CaseResult {
        fn seconds(&self) -> f64 {
            self.elapsed.as_secs_f64()
        }
        fn records_per_s(&self) -> f64 {
            (self.batch_count * self.batch_records as u64) as f64 / self.seconds()
        }
        fn payload_mb_per_s(&self) -> f64 {
            self.records_per_s() * PAYLOAD_BYTES as f64 / 1e6
        }
        fn disk_mb_per_s(&self) -> f64 {
            self.stats.write_bytes as f64 / 1e6 / self.seconds()
        }
        fn commits_per_s(&self) -> f64 {
            self.batch_count as f64 / self.seconds()
        }
        fn device_syncs_per_s(&self) -> f64 {
            let syncs = self.stats.file_syncs + self.stats.truncate_syncs + self.stats.dir_syncs;
            syncs as f64 / self.seconds()
        }
        fn latency_ms(&self, quantile: f64) -> f64 {
            if self.latencies_us.is_empty() {
                return f64::NAN;
            }
            let index = ((self.latencies_us.len() - 1) as f64 * quantile).round() as usize;
            f64::from(self.latencies_us[index]) / 1e3
        }
    }

    async fn run_case(
        dir: &Path,
        batch_records: usize,
        duration: Duration,
        sized_preallocate: bool,
    ) -> CaseResult {
        let case_dir = dir.join(format!("log-batch-{batch_records}"));
        let storage = DmaStorage::create_dir_all(&case_dir).expect("bench directory");
        let counters = storage.clone();
        let (batch_count, elapsed, mut latencies_us) = if sized_preallocate {
            let log = Log::open(experiment::SizedPreallocate(storage), log_config());
            drive(&log.await.expect("open log"), batch_records, duration).await
        } else {
            let log = Log::open(storage, log_config());
            drive(&log.await.expect("open log"), batch_records, duration).await
        };
        let stats = counters.stats();
        latencies_us.sort_unstable();
        std::fs::remove_dir_all(&case_dir).expect("remove case directory");
        CaseResult {
            batch_records,
            batch_count,
            elapsed,
            stats,
            latencies_us,
        }
    }

    /// Appends and syncs batches until the deadline: (batches, elapsed, latencies).
    async fn drive<S: Storage>(
        log: &Log<S>,
        batch_records: usize,
        duration: Duration,
    ) -> (u64, Duration, Vec<u32>) {
        let payload = vec![0x5au8; PAYLOAD_BYTES];
        let mut latencies_us = Vec::with_capacity(LATENCY_SAMPLES_MAX.min(1 << 16));
        let mut batch_count = 0u64;
        let start = Instant::now();
        let deadline = start + duration;
        // Bounded by the deadline.
        loop {
            let batch_start = Instant::now();
            if batch_start >= deadline {
                break;
            }
            let timestamp_ms = batch_count;
            let records: Vec<RecordInput<'_>> = (0..batch_records)
                .map(|_| RecordInput {
                    timestamp_ms,
                    attributes: b"",
                    payload: &payload,
                })
                .collect();
            let appended = log.append(&records).expect("append");
            log.sync(appended.next_offset).await.expect("sync");
            batch_count += 1;
            if latencies_us.len() < LATENCY_SAMPLES_MAX {
                let micros = batch_start.elapsed().as_micros();
                latencies_us.push(u32::try_from(micros).unwrap_or(u32::MAX));
            }
        }
        (batch_count, start.elapsed(), latencies_us)
    }

    /// One line of the baseline script: name, MB/s, IOPS (= syncs/s for sync rows).
    struct BaselineRow {
        name: String,
        mb_per_s: f64,
        iops: f64,
    }

    fn run_baseline(script: &Path, dir: &Path, seconds: u64) -> Result<Vec<BaselineRow>, String> {
        let fio_dir = dir.join("fio");
        let output = Command::new("bash")
            .arg(script)
            .arg(&fio_dir)
            .arg(seconds.to_string())
            .output()
            .map_err(|error| format!("cannot run {}: {error}", script.display()))?;
        let _ = std::fs::remove_dir_all(&fio_dir);
        let stdout = String::from_utf8_lossy(&output.stdout);
        print!("{stdout}");
        if !output.status.success() {
            return Err(format!(
                "{} failed ({}): {}",
                script.display(),
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ));
        }
        let mut rows = Vec::new();
        for line in stdout.lines().filter(|line| !line.starts_with('#')) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if let [name, mb, "MB/s", iops, "IOPS"] = fields.as_slice() {
                rows.push(BaselineRow {
                    name: (*name).to_string(),
                    mb_per_s: mb.parse().map_err(|_| format!("bad line {line}"))?,
                    iops: iops.parse().map_err(|_| format!("bad line {line}"))?,
                });
            }
        }
        Ok(rows)
    }

    fn baseline_or_empty(args: &Args) -> Vec<BaselineRow> {
        let Some(script) = &args.baseline_script else {
            eprintln!("log-bench: no --baseline-script given: no disk baseline");
            return Vec::new();
        };
        match run_baseline(script, &args.dir, args.seconds) {
            Ok(rows) => rows,
            Err(error) => {
                eprintln!("log-bench: baseline failed: {error}");
                Vec::new()
            }
        }
    }

    /// fio rows with the log's own write pattern, which the baseline script lacks: each
    /// write+fdatasync extends the file into space reserved with FALLOC_FL_KEEP_SIZE
    /// (`--fallocate=keep`), never wrapping round to overwrite. The script's sync rows
    /// write a 512 MiB file that fio lays out first and then laps (at 256 KiB, most of
    /// a 5 s run overwrites already-written blocks, which is much cheaper).
    fn run_append_baseline(dir: &Path, seconds: u64) -> Vec<BaselineRow> {
        let fio_dir = dir.join("fio-append");
        let size_gib = (2 * seconds).max(8);
        let mut rows = Vec::new();
        for (name, block) in [
            ("append-256KiB-direct-sync", "256k"),
            ("append-1MiB-direct-sync", "1m"),
        ] {
            std::fs::create_dir_all(&fio_dir).expect("fio directory");
            let output = Command::new("fio")
                .arg(format!("--name={name}"))
                .arg(format!("--directory={}", fio_dir.display()))
                .args([
                    "--rw=write",
                    "--ioengine=psync",
                    "--direct=1",
                    "--fdatasync=1",
                ])
                .args(["--fallocate=keep", "--time_based", "--minimal"])
                .arg(format!("--bs={block}"))
                .arg(format!("--size={size_gib}g"))
                .arg(format!("--runtime={seconds}"))
                .output();
            let _ = std::fs::remove_dir_all(&fio_dir);
            let Ok(output) = output else {
                eprintln!("log-bench: cannot run fio for {name}");
                continue;
            };
            // Terse format v3: field 48 is write bandwidth in KiB/s, 49 write IOPS.
            let stdout = String::from_utf8_lossy(&output.stdout);
            let fields: Vec<&str> = stdout.trim().split(';').collect();
            let parsed = (fields.get(47).and_then(|f| f.parse::<f64>().ok()))
                .zip(fields.get(48).and_then(|f| f.parse::<f64>().ok()));
            match parsed {
                Some((kib_per_s, iops)) if output.status.success() => {
                    let row = BaselineRow {
                        name: name.to_string(),
                        mb_per_s: kib_per_s * 1024.0 / 1e6,
                        iops,
                    };
                    println!(
                        "{:28} {:10.1} MB/s {:12.0} IOPS",
                        row.name, row.mb_per_s, row.iops
                    );
                    rows.push(row);
                }
                _ => eprintln!("log-bench: fio {name} failed: {}", stdout.trim()),
            }
        }
        rows
    }

    /// Per fio row the better of the two runs, and how far apart they were (0..1).
    struct MergedRow {
        row: BaselineRow,
        spread: f64,
    }

    fn merge_baselines(before: &[BaselineRow], after: &[BaselineRow]) -> Vec<MergedRow> {
        let mut merged = Vec::new();
        for first in before.iter().chain(after) {
            if merged.iter().any(|m: &MergedRow| m.row.name == first.name) {
                continue;
            }
            let second = after
                .iter()
                .chain(before)
                .find(|row| row.name == first.name && !std::ptr::eq(*row, first))
                .unwrap_or(first);
            let mb_per_s = first.mb_per_s.max(second.mb_per_s);
            let iops = first.iops.max(second.iops);
            let spread = (first.iops - second.iops).abs() / iops.max(f64::MIN_POSITIVE);
            merged.push(MergedRow {
                row: BaselineRow {
                    name: first.name.clone(),
                    mb_per_s,
                    iops,
                },
                spread,
            });
        }
        merged
    }

    /// Names of build and fuzz processes running now: on this VM, disk runs made while cargo
    /// wrote hundreds of MB of target/ were 2-5x slower than on an idle machine, so the
    /// report says when they were there.
    fn busy_processes() -> Vec<String> {
        let mut names = Vec::new();
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return names;
        };
        for entry in entries.flatten() {
            let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
            let comm = comm.trim();
            if matches!(
                comm,
                "cargo" | "rustc" | "cargo-fuzz" | "cc" | "ld" | "fuzz"
            ) {
                names.push(comm.to_string());
            }
        }
        names.sort();
        names
    }

    fn print_noise_warnings(baseline: &[MergedRow], before: &[String], after: &[String]) {
        for merged in baseline.iter().filter(|merged| merged.spread > 0.25) {
            println!(
                "WARNING: fio {} differed by {:.0}% between the runs before and after the \
                 log cases: the disk was shared, figures are unreliable",
                merged.row.name,
                merged.spread * 100.0
            );
        }
        for (when, names) in [("before", before), ("after", after)] {
            if !names.is_empty() {
                println!(
                    "WARNING: other build processes were running {when} the run: {}",
                    names.join(" ")
                );
            }
        }
    }

    /// Which fio row a batch size is compared with, on which metric, and the goal.
    struct Comparison {
        row: &'static str,
        /// The same-size fio row with the log's append pattern, when there is one.
        append_row: Option<&'static str>,
        by_sync_rate: bool,
        goal: Option<f64>,
        note: &'static str,
    }

    fn comparison(batch_records: usize) -> Comparison {
        match batch_records {
            0..=3 => Comparison {
                row: "seq-4KiB-direct-sync",
                append_row: None,
                by_sync_rate: true,
                goal: Some(0.80),
                note: "commits/s vs fio fdatasync/s",
            },
            4..=63 => Comparison {
                row: "seq-16KiB-direct-sync",
                append_row: None,
                by_sync_rate: false,
                goal: None,
                note: "MB/s vs fio 16 KiB+fdatasync (no goal set)",
            },
            64..=511 => Comparison {
                row: "seq-256KiB-direct-sync",
                append_row: Some("append-256KiB-direct-sync"),
                by_sync_rate: false,
                goal: Some(0.70),
                note: "MB/s vs fio 256 KiB+fdatasync",
            },
            _ => Comparison {
                row: "seq-256KiB-direct-sync",
                append_row: Some("append-1MiB-direct-sync"),
                by_sync_rate: false,
                goal: Some(0.70),
                note: "MB/s vs fio 256 KiB+fdatasync (fio has no 1 MiB sync row)",
            },
        }
    }

    fn print_table(results: &[CaseResult], baseline: &[MergedRow]) {
        println!();
        println!(
            "{:>6} {:>10} {:>9} {:>9} {:>9} {:>9} {:>7} {:>7} | {:>24} {:>8} {:>8} {:>7} {:>10} {:>9}  compared",
            "batch",
            "records/s",
            "MB/s",
            "diskMB/s",
            "commits/s",
            "syncs/s",
            "p50 ms",
            "p99 ms",
            "fio row",
            "fio MB/s",
            "fio IOPS",
            "ratio",
            "goal",
            "vs append",
        );
        for result in results {
            let comparison = comparison(result.batch_records);
            let row = baseline
                .iter()
                .map(|merged| &merged.row)
                .find(|row| row.name == comparison.row);
            let (fio_mb, fio_iops, ratio) = match row {
                Some(row) => {
                    let ratio = if comparison.by_sync_rate {
                        result.commits_per_s() / row.iops
                    } else {
                        result.payload_mb_per_s() / row.mb_per_s
                    };
                    (row.mb_per_s, row.iops, ratio)
                }
                None => (f64::NAN, f64::NAN, f64::NAN),
            };
            let versus_append = comparison
                .append_row
                .and_then(|name| baseline.iter().find(|merged| merged.row.name == name))
                .map_or("-".to_string(), |merged| {
                    format!(
                        "{:.0}%",
                        100.0 * result.payload_mb_per_s() / merged.row.mb_per_s
                    )
                });
            let goal = match comparison.goal {
                Some(goal) if ratio.is_nan() => format!(">={:.0}%", goal * 100.0),
                Some(goal) if ratio >= goal => format!("{:.0}% ok", goal * 100.0),
                Some(goal) => format!("{:.0}% MISS", goal * 100.0),
                None => "-".to_string(),
            };
            println!(
                "{:>6} {:>10.0} {:>9.1} {:>9.1} {:>9.0} {:>9.0} {:>7.2} {:>7.2} | {:>24} {:>8.1} {:>8.0} {:>6.0}% {:>10} {:>9}  {}",
                result.batch_records,
                result.records_per_s(),
                result.payload_mb_per_s(),
                result.disk_mb_per_s(),
                result.commits_per_s(),
                result.device_syncs_per_s(),
                result.latency_ms(0.50),
                result.latency_ms(0.99),
                comparison.row,
                fio_mb,
                fio_iops,
                ratio * 100.0,
                goal,
                versus_append,
                comparison.note,
            );
        }
        println!();
        println!(
            "MB/s = payload (1024 B x records/s, 1e6 B per MB); diskMB/s = bytes handed to \
             write_at (headers, padding and the re-written partial block included); commits/s = \
             append+sync rounds; syncs/s = every fdatasync/fsync the storage issued; ratio and \
             goal: against the baseline script's row (the issue's goals); vs append: payload \
             MB/s against fio writing the log's pattern (append-*-direct-sync)."
        );
    }

    pub fn main() {
        let args = parse_args();
        if args.dir.exists() {
            std::fs::remove_dir_all(&args.dir).expect("clear the bench directory");
        }
        std::fs::create_dir_all(&args.dir).expect("create the bench directory");
        println!(
            "# log-bench in {}: 1 KiB records, {} s per case, batches {:?}{}",
            args.dir.display(),
            args.seconds,
            args.batches,
            if args.sized_preallocate {
                " [EXPERIMENT: preallocate grows the file size]"
            } else {
                ""
            }
        );
        let busy_before = busy_processes();
        // The fio baseline runs before and after the log cases; the table uses the
        // better figure of the two, and a large spread flags a busy machine.
        let baseline_before = if args.baseline {
            baseline_or_empty(&args)
        } else {
            Vec::new()
        };
        let spin = args.spin_us.map(Duration::from_micros);
        println!("# executor spin_before_park: {spin:?}");
        let startup = ShardStartup::prepare(1, spin);
        let executor = startup.builder(0).make().expect("executor starts");
        let duration = Duration::from_secs(args.seconds);
        let results: Vec<CaseResult> = executor.run(async {
            let mut results = Vec::new();
            for &batch in &args.batches {
                let result = run_case(&args.dir, batch, duration, args.sized_preallocate).await;
                println!(
                    "log batch {:>5}: {:>9.0} records/s {:>8.1} MB/s {:>7.0} commits/s \
                     ({} batches, {} writes, {} fdatasync, {} truncate-syncs, {} dir-fsyncs, \
                     {} fallocates)",
                    batch,
                    result.records_per_s(),
                    result.payload_mb_per_s(),
                    result.commits_per_s(),
                    result.batch_count,
                    result.stats.writes,
                    result.stats.file_syncs,
                    result.stats.truncate_syncs,
                    result.stats.dir_syncs,
                    result.stats.preallocates,
                );
                results.push(result);
            }
            results
        });
        drop(executor);
        let baseline_after = if args.baseline {
            baseline_or_empty(&args)
        } else {
            Vec::new()
        };
        let append_rows = if args.baseline {
            println!("# fio with the log's pattern (append into KEEP_SIZE reservation)");
            run_append_baseline(&args.dir, args.seconds)
        } else {
            Vec::new()
        };
        let busy_after = busy_processes();
        let mut baseline = merge_baselines(&baseline_before, &baseline_after);
        baseline.extend(
            append_rows
                .into_iter()
                .map(|row| MergedRow { row, spread: 0.0 }),
        );
        print_table(&results, &baseline);
        print_noise_warnings(&baseline, &busy_before, &busy_after);
        std::fs::remove_dir_all(&args.dir).expect("remove the bench directory");
    }

    /// The `--sized-preallocate` experiment: `DmaStorage` with `preallocate` replaced by
    /// `fallocate(mode 0)`, so the reserved space is inside the file's size and appends
    /// no longer extend it. Everything else is delegated unchanged.
    mod experiment {
        use std::os::unix::io::AsRawFd;

        use sluice_core::storage::{IoError, IoErrorKind, IoOp, Storage, StorageFile};
        use sluice_shard::storage::{DmaBuf, DmaReadBuf};
        use sluice_shard::{DmaStorage, DmaStorageFile};

        pub struct SizedPreallocate(pub DmaStorage);
        pub struct SizedPreallocateFile(DmaStorageFile);

        impl Storage for SizedPreallocate {
            type File = SizedPreallocateFile;
            async fn create(&self, name: &str) -> Result<Self::File, IoError> {
                self.0.create(name).await.map(SizedPreallocateFile)
            }
            async fn open(&self, name: &str) -> Result<Self::File, IoError> {
                self.0.open(name).await.map(SizedPreallocateFile)
            }
            async fn list(&self) -> Result<Vec<String>, IoError> {
                self.0.list().await
            }
            async fn remove(&self, name: &str) -> Result<(), IoError> {
                self.0.remove(name).await
            }
            async fn rename(&self, from: &str, to: &str) -> Result<(), IoError> {
                self.0.rename(from, to).await
            }
        }

        impl StorageFile for SizedPreallocateFile {
            type Buf = DmaBuf;
            type ReadBuf = DmaReadBuf;
            fn alloc_buf(&self, bytes: usize) -> DmaBuf {
                self.0.alloc_buf(bytes)
            }
            async fn write_at(&self, buf: DmaBuf, position: u64) -> Result<(), IoError> {
                self.0.write_at(buf, position).await
            }
            async fn read_at(&self, position: u64, bytes: usize) -> Result<DmaReadBuf, IoError> {
                self.0.read_at(position, bytes).await
            }
            async fn sync(&self) -> Result<(), IoError> {
                self.0.sync().await
            }
            async fn size(&self) -> Result<u64, IoError> {
                self.0.size().await
            }
            async fn truncate(&self, bytes: u64) -> Result<(), IoError> {
                self.0.truncate(bytes).await
            }
            async fn preallocate(&self, bytes: u64) -> Result<(), IoError> {
                let length = libc::off_t::try_from(bytes).expect("fits off_t");
                // SAFETY: plain system call on a descriptor the file keeps open.
                let status = unsafe { libc::fallocate(self.0.as_raw_fd(), 0, 0, length) };
                if status == 0 {
                    Ok(())
                } else {
                    Err(IoError::new(IoErrorKind::Io, IoOp::Preallocate))
                }
            }
        }
    }
}
