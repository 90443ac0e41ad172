//! `dma-patterns`: write + fdatasync loops on a bare glommio `DmaFile`, with no log, to
//! measure what the file layout costs. Each pattern writes blocks of one size, one
//! fdatasync per write, for a fixed time:
//! - `append-keep-size`: appends past the end of file into space reserved with
//!   `fallocate(FALLOC_FL_KEEP_SIZE)` 64 MiB at a time. This is what the log does.
//! - `append-no-prealloc`: appends with no reservation.
//! - `sized-unwritten`: writes inside a file that `fallocate(mode 0)` sized to 1 GiB, so
//!   nothing extends the file. This is the layout of the baseline script's first lap.
//! - `overwrite`: rewrites blocks written (and synced) before. This is the layout of the
//!   baseline script's later laps.
//! - `append-syscalls`: like `append-keep-size`, but with blocking `pwrite` +
//!   `fdatasync` on the executor thread instead of io_uring (io_uring punts both to
//!   a worker thread).
//!
//! Usage: `dma-patterns [--dir PATH] [--seconds N] [--bytes 4096,270336,1048576]`
//! (270336 is the disk write of a 256 x 1 KiB log batch). Measures only.

#[cfg(not(madsim))]
fn main() {
    patterns::main();
}

#[cfg(madsim)]
fn main() {
    eprintln!("dma-patterns needs the real disk; build it without --cfg madsim");
}

#[cfg(not(madsim))]
mod patterns {
    use std::os::unix::io::AsRawFd;
    use std::path::{Path, PathBuf};
    use std::time::{Duration, Instant};

    use glommio::io::{DmaFile, OpenOptions};
    use sluice_shard::executor::ShardStartup;

    const SPAN_BYTES: u64 = 1 << 30;
    const RESERVE_BYTES: u64 = 64 << 20;

    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum Pattern {
        AppendKeepSize,
        AppendNoPrealloc,
        SizedUnwritten,
        Overwrite,
        AppendSyscalls,
    }

    const PATTERNS: [Pattern; 5] = [
        Pattern::AppendKeepSize,
        Pattern::AppendNoPrealloc,
        Pattern::SizedUnwritten,
        Pattern::Overwrite,
        Pattern::AppendSyscalls,
    ];

    impl Pattern {
        fn name(self) -> &'static str {
            match self {
                Pattern::AppendKeepSize => "append-keep-size",
                Pattern::AppendNoPrealloc => "append-no-prealloc",
                Pattern::SizedUnwritten => "sized-unwritten",
                Pattern::Overwrite => "overwrite",
                Pattern::AppendSyscalls => "append-syscalls",
            }
        }

        fn appends(self) -> bool {
            matches!(
                self,
                Pattern::AppendKeepSize | Pattern::AppendNoPrealloc | Pattern::AppendSyscalls
            )
        }
    }

    async fn prepare(file: &DmaFile, pattern: Pattern) {
        match pattern {
            Pattern::SizedUnwritten => file
                .pre_allocate(SPAN_BYTES, false)
                .await
                .expect("fallocate"),
            Pattern::Overwrite => {
                let mut position = 0;
                // Bounded by SPAN_BYTES.
                while position < SPAN_BYTES {
                    let mut buf = file.alloc_dma_buffer(1 << 20);
                    buf.as_bytes_mut().fill(0);
                    file.write_at(buf, position).await.expect("prefill");
                    position += 1 << 20;
                }
                file.fdatasync().await.expect("prefill sync");
            }
            _ => {}
        }
    }

    async fn write_and_sync(file: &DmaFile, pattern: Pattern, bytes: usize, position: u64) {
        let mut buf = file.alloc_dma_buffer(bytes);
        buf.as_bytes_mut().fill(0x5a);
        if pattern == Pattern::AppendSyscalls {
            let offset = libc::off_t::try_from(position).expect("fits off_t");
            // SAFETY: the buffer outlives both calls and holds `bytes` bytes.
            let written =
                unsafe { libc::pwrite(file.as_raw_fd(), buf.as_ptr().cast(), bytes, offset) };
            assert_eq!(usize::try_from(written).ok(), Some(bytes), "pwrite");
            // SAFETY: plain system call on an open descriptor.
            assert_eq!(unsafe { libc::fdatasync(file.as_raw_fd()) }, 0, "fdatasync");
        } else {
            let written = file.write_at(buf, position).await.expect("write");
            assert_eq!(written, bytes);
            file.fdatasync().await.expect("fdatasync");
        }
    }

    async fn run(dir: &Path, pattern: Pattern, bytes: usize, duration: Duration) {
        let path = dir.join(format!("{}-{bytes}", pattern.name()));
        let file = OpenOptions::new()
            .create_new(true)
            .read(true)
            .write(true)
            .dma_open(&path)
            .await
            .expect("create");
        prepare(&file, pattern).await;
        let mut reserved = 0u64;
        let mut position = 0u64;
        let mut write_count = 0u64;
        let start = Instant::now();
        // Bounded by the duration.
        while start.elapsed() < duration {
            let end = position + bytes as u64;
            let reserves = matches!(pattern, Pattern::AppendKeepSize | Pattern::AppendSyscalls);
            if reserves && end > reserved {
                reserved = end + RESERVE_BYTES;
                file.pre_allocate(reserved, true).await.expect("fallocate");
            }
            write_and_sync(&file, pattern, bytes, position).await;
            write_count += 1;
            position = if !pattern.appends() && end + bytes as u64 > SPAN_BYTES {
                0
            } else {
                end
            };
        }
        let seconds = start.elapsed().as_secs_f64();
        println!(
            "{:>20} {:>8} B: {:>7.0} write+fdatasync/s {:>8.1} MB/s",
            pattern.name(),
            bytes,
            write_count as f64 / seconds,
            (write_count * bytes as u64) as f64 / 1e6 / seconds
        );
        file.close().await.expect("close");
        std::fs::remove_file(&path).expect("remove");
    }

    pub fn main() {
        let mut dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("benches/ has a parent")
            .join("target-bench-data");
        let mut seconds = 3u64;
        let mut sizes = vec![4096usize, 270_336, 1 << 20];
        let mut raw = std::env::args().skip(1);
        // Bounded by the number of arguments.
        while let Some(flag) = raw.next() {
            let value = raw.next().expect("every flag takes a value");
            match flag.as_str() {
                "--dir" => dir = PathBuf::from(value),
                "--seconds" => seconds = value.parse().expect("--seconds N"),
                "--bytes" => {
                    sizes = value
                        .split(',')
                        .map(|size| size.parse().expect("--bytes a,b,c"))
                        .collect()
                }
                other => panic!("unknown argument {other}"),
            }
        }
        for size in &sizes {
            assert!(size % 4096 == 0, "--bytes must be multiples of 4096");
        }
        let dir = dir.join("dma-patterns");
        std::fs::create_dir_all(&dir).expect("create directory");
        // A non-empty first file, so glommio's per-thread iopoll probe decides right.
        let probe = dir.join("probe");
        std::fs::write(&probe, vec![0u8; 4096]).expect("probe file");
        let startup = ShardStartup::prepare(1, None);
        let executor = startup.builder(0).make().expect("executor starts");
        let duration = Duration::from_secs(seconds);
        executor.run(async {
            DmaFile::open(&probe)
                .await
                .expect("probe")
                .close()
                .await
                .expect("close");
            for &bytes in &sizes {
                for pattern in PATTERNS {
                    run(&dir, pattern, bytes, duration).await;
                }
            }
        });
        std::fs::remove_dir_all(&dir).expect("remove directory");
    }
}
