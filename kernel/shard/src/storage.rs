//! The production [`Storage`]: one directory of files accessed through glommio's
//! `DmaFile` (O_DIRECT, io_uring). It owns the mapping from the kernel's narrow disk
//! contract (see `sluice_core::storage`) to Linux system calls and errno values; it holds
//! no log or queue semantics and must not buffer or reorder what the kernel asks for.
//!
//! How each contract clause is kept:
//! - `create` opens with `O_CREAT | O_EXCL` and then fsyncs the directory, so the new
//!   entry survives a crash; `remove` unlinks and `rename` is rename(2), each followed
//!   by a directory fsync the same way.
//! - `sync` is one `fdatasync` through io_uring; `truncate` is `ftruncate` followed by
//!   `fdatasync`, so the new size is durable when it returns.
//! - Data writes and `sync` go through the thread's own ring ([`crate::uring`], default
//!   [`IoSubmit::Ring`]): writes are never run inline at submission, and
//!   `write_sync_at` is one linked write + fdatasync. [`IoSubmit::Glommio`] keeps them
//!   on glommio's `DmaFile` calls (the path measured against). Reads, the zero fill,
//!   truncation and preallocation always use glommio.
//! - `preallocate` is `fallocate(FALLOC_FL_KEEP_SIZE)`. It is a hint: only ENOSPC and
//!   EDQUOT are reported, every other failure (EOPNOTSUPP on some file systems) is not.
//! - `read_at` takes any position and length. glommio's own unaligned `read_at` returns
//!   bytes from beyond the end of file when the position is unaligned and the read
//!   reaches EOF, so reads are aligned here and the result is cut at the real end.
//! - Every failure carries the errno and the kind the kernel acts on.
//! - Files are created with mode [`FILE_MODE`] (0600) and directories with [`DIR_MODE`]
//!   (0700), passed explicitly rather than left to the process umask: a queue's
//!   messages are readable by the server's user only.
//!
//! - glommio decides per device and thread whether reads may use its polled ring, by
//!   reading the first block of the first file opened there; on an empty file that
//!   read succeeds trivially, polling is wrongly enabled, and every later read fails
//!   with EOPNOTSUPP (errno 95) on devices without poll queues (this VM's virtio disk).
//!   A new log's first file is empty, so before its first open a storage lets glommio
//!   probe an unnamed, non-empty `O_TMPFILE` in its directory instead.
//!
//! Directory fsyncs run on glommio's blocking thread pool (`fsync(2)` on the directory
//! descriptor); glommio exposes only `fdatasync` for directories, and a directory entry
//! is metadata, which `fdatasync` does not promise to flush.

use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;

use glommio::io::{DmaBuffer, DmaFile, OpenOptions, ReadResult};
use glommio::GlommioError;
use sluice_core::limits::BLOCK_BYTES;
use sluice_core::storage::{
    is_block_aligned, IoError, IoErrorKind, IoOp, Storage, StorageBuf, StorageFile,
};

use crate::uring::{IoSubmit, Ring, WriteSyncError};

/// The largest single read submitted to io_uring; longer reads are split and joined.
/// Bounds the size of one DMA buffer (glommio falls back to the heap past its
/// registered `io_memory`, so this is about memory per request, not correctness).
pub const READ_CHUNK_BYTES: usize = 4 << 20;

/// Mode of every file a storage creates: read and write for the server's user only.
pub const FILE_MODE: u32 = 0o600;
/// Mode of the directories a storage creates, and that `create_dir_all` sets on its own
/// directory: only the server's user may list or enter them.
pub const DIR_MODE: u32 = 0o700;

/// Counters of what the storage asked of the device, shared by every file of one
/// storage. Tests use them to prove group commit; the benchmark reports them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DmaStorageStats {
    /// `fdatasync` calls made by [`StorageFile::sync`].
    pub file_syncs: u64,
    /// `fdatasync` calls made by [`StorageFile::truncate`].
    pub truncate_syncs: u64,
    /// `fsync` calls on the directory (after create, remove and rename).
    pub dir_syncs: u64,
    pub writes: u64,
    pub write_bytes: u64,
    pub reads: u64,
    pub read_bytes: u64,
    pub preallocates: u64,
    /// Writes and syncs submitted through the thread's own ring (a linked write and
    /// sync counts once).
    pub ring_submissions: u64,
}

/// Called with the duration of every data fdatasync (the group commit's cost).
pub type SyncObserver = Rc<dyn Fn(std::time::Duration)>;

#[derive(Default)]
struct StatsCells {
    sync_observer: RefCell<Option<SyncObserver>>,
    file_syncs: Cell<u64>,
    truncate_syncs: Cell<u64>,
    dir_syncs: Cell<u64>,
    writes: Cell<u64>,
    write_bytes: Cell<u64>,
    reads: Cell<u64>,
    read_bytes: Cell<u64>,
    preallocates: Cell<u64>,
    ring_submissions: Cell<u64>,
}

fn bump(cell: &Cell<u64>, by: u64) {
    cell.set(cell.get() + by);
}

/// A directory of files on a real disk, read and written with O_DIRECT through
/// io_uring. Must be used on a glommio executor thread. Clones share the directory
/// handle and the counters.
#[derive(Clone)]
pub struct DmaStorage {
    path: PathBuf,
    /// Kept open for directory fsyncs; `Arc` because the fsync runs on another thread.
    dir: Arc<std::fs::File>,
    /// The file system's device, the key of glommio's per-thread iopoll decision.
    device: u64,
    stats: Rc<StatsCells>,
    io_submit: IoSubmit,
}

impl DmaStorage {
    /// Opens an existing directory.
    pub fn open(path: impl Into<PathBuf>) -> Result<DmaStorage, IoError> {
        let path = path.into();
        let dir = std::fs::File::open(&path).map_err(|error| std_error(&error, IoOp::Open))?;
        let metadata = dir
            .metadata()
            .map_err(|error| std_error(&error, IoOp::Open))?;
        if !metadata.is_dir() {
            return Err(IoError {
                kind: IoErrorKind::Invalid,
                op: IoOp::Open,
                errno: Some(libc::ENOTDIR),
            });
        }
        Ok(DmaStorage {
            path,
            dir: Arc::new(dir),
            device: metadata.dev(),
            stats: Rc::default(),
            io_submit: IoSubmit::default(),
        })
    }

    /// Creates the directory (and its parents) when missing, each with mode
    /// [`DIR_MODE`], then sets that mode on the directory itself (explicitly, so neither
    /// the umask nor an older, wider mode leaves it open to other users) and opens it.
    pub fn create_dir_all(path: impl Into<PathBuf>) -> Result<DmaStorage, IoError> {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        let path = path.into();
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(DIR_MODE)
            .create(&path)
            .map_err(|error| std_error(&error, IoOp::Create))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(DIR_MODE))
            .map_err(|error| std_error(&error, IoOp::Create))?;
        DmaStorage::open(path)
    }

    /// Chooses how data writes and fdatasyncs of files opened afterwards are submitted
    /// (default [`IoSubmit::Ring`]).
    pub fn with_io_submit(mut self, io_submit: IoSubmit) -> DmaStorage {
        self.io_submit = io_submit;
        self
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reports every data fdatasync's duration to `observer` (metrics); for a linked
    /// `write_sync_at`, the duration of the write and the sync together. The observer is
    /// shared by every file of this storage and its clones.
    pub fn observe_syncs(&self, observer: SyncObserver) {
        *self.stats.sync_observer.borrow_mut() = Some(observer);
    }

    pub fn stats(&self) -> DmaStorageStats {
        let cells = &self.stats;
        DmaStorageStats {
            file_syncs: cells.file_syncs.get(),
            truncate_syncs: cells.truncate_syncs.get(),
            dir_syncs: cells.dir_syncs.get(),
            writes: cells.writes.get(),
            write_bytes: cells.write_bytes.get(),
            reads: cells.reads.get(),
            read_bytes: cells.read_bytes.get(),
            preallocates: cells.preallocates.get(),
            ring_submissions: cells.ring_submissions.get(),
        }
    }

    fn file_path(&self, name: &str, op: IoOp) -> Result<PathBuf, IoError> {
        // The storage is one flat directory: a name with a separator or a dot-dot
        // would escape it, which is a bug in the caller.
        let flat = !name.is_empty() && name != "." && name != ".." && !name.contains('/');
        if !flat {
            return Err(IoError::new(IoErrorKind::Invalid, op));
        }
        Ok(self.path.join(name))
    }

    async fn sync_dir(&self, op: IoOp) -> Result<(), IoError> {
        let dir = self.dir.clone();
        let result = glommio::executor()
            .spawn_blocking(move || dir.sync_all())
            .await;
        result.map_err(|error| std_error(&error, op))?;
        bump(&self.stats.dir_syncs, 1);
        Ok(())
    }

    /// Makes glommio take its per-thread iopoll decision for this device on a file
    /// with data (see the module doc), once per thread and device. Best effort: where
    /// the probe itself cannot run (no `O_TMPFILE`), say so once and go on; only a full
    /// disk is reported, since the open that follows would fail the same way.
    async fn probe_iopoll(&self, op: IoOp) -> Result<(), IoError> {
        thread_local! {
            static PROBED_DEVICES: RefCell<HashSet<u64>> = RefCell::new(HashSet::new());
        }
        if PROBED_DEVICES.with(|probed| probed.borrow().contains(&self.device)) {
            return Ok(());
        }
        let result = self.probe_iopoll_with_tmpfile(op).await;
        PROBED_DEVICES.with(|probed| probed.borrow_mut().insert(self.device));
        match result {
            Err(error) if error.kind == IoErrorKind::NoSpace => Err(error),
            Err(error) => {
                eprintln!(
                    "sluice-shard: iopoll probe in {} failed ({error}); if the first file \
                     glommio opens on this device is empty, reads may fail with EOPNOTSUPP",
                    self.path.display()
                );
                Ok(())
            }
            Ok(()) => Ok(()),
        }
    }

    async fn probe_iopoll_with_tmpfile(&self, op: IoOp) -> Result<(), IoError> {
        let mut probe = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_TMPFILE)
            .mode(FILE_MODE)
            .open(&self.path)
            .map_err(|error| std_error(&error, op))?;
        let block = vec![0u8; usize::try_from(BLOCK_BYTES).expect("small")];
        probe
            .write_all(&block)
            .map_err(|error| std_error(&error, op))?;
        // The unnamed file is reachable only through its descriptor's /proc link.
        let link = format!("/proc/self/fd/{}", probe.as_raw_fd());
        let file = OpenOptions::new()
            .read(true)
            .dma_open(&link)
            .await
            .map_err(|error| glommio_error(&error, op))?;
        file.close()
            .await
            .map_err(|error| glommio_error(&error, op))
    }

    async fn open_file(&self, name: &str, create: bool) -> Result<DmaStorageFile, IoError> {
        let op = if create { IoOp::Create } else { IoOp::Open };
        let path = self.file_path(name, op)?;
        self.probe_iopoll(op).await?;
        let mut options = OpenOptions::new();
        options
            .read(true)
            .write(true)
            .create_new(create)
            .mode(FILE_MODE);
        let file = options
            .dma_open(&path)
            .await
            .map_err(|error| glommio_error(&error, op))?;
        let alignment = file.alignment();
        assert!(
            alignment.is_power_of_two(),
            "O_DIRECT alignment {alignment} must be a power of two"
        );
        assert!(
            BLOCK_BYTES.is_multiple_of(alignment),
            "O_DIRECT alignment {alignment} must divide the kernel's block size"
        );
        Ok(DmaStorageFile {
            file: Rc::new(file),
            alignment,
            stats: self.stats.clone(),
            fill: Rc::new(ZeroFill::default()),
            io_submit: self.io_submit,
        })
    }
}

impl Storage for DmaStorage {
    type File = DmaStorageFile;

    async fn create(&self, name: &str) -> Result<DmaStorageFile, IoError> {
        let file = self.open_file(name, true).await?;
        self.sync_dir(IoOp::Create).await?;
        Ok(file)
    }

    async fn open(&self, name: &str) -> Result<DmaStorageFile, IoError> {
        self.open_file(name, false).await
    }

    async fn list(&self) -> Result<Vec<String>, IoError> {
        let entries =
            std::fs::read_dir(&self.path).map_err(|error| std_error(&error, IoOp::List))?;
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|error| std_error(&error, IoOp::List))?;
            // Names that are not UTF-8 are not the log's; skipping them is safe
            // because the log only ever creates ASCII names.
            if let Ok(name) = entry.file_name().into_string() {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }

    async fn remove(&self, name: &str) -> Result<(), IoError> {
        let path = self.file_path(name, IoOp::Remove)?;
        glommio::io::remove(&path)
            .await
            .map_err(|error| glommio_error(&error, IoOp::Remove))?;
        self.sync_dir(IoOp::Remove).await
    }

    async fn rename(&self, from: &str, to: &str) -> Result<(), IoError> {
        let from = self.file_path(from, IoOp::Rename)?;
        let to = self.file_path(to, IoOp::Rename)?;
        glommio::io::rename(&from, &to)
            .await
            .map_err(|error| glommio_error(&error, IoOp::Rename))?;
        self.sync_dir(IoOp::Rename).await
    }
}

/// One open file. Reads and writes bypass the page cache.
pub struct DmaStorageFile {
    file: Rc<DmaFile>,
    /// The device's O_DIRECT alignment (512 or 4096); divides `BLOCK_BYTES`.
    alignment: u64,
    stats: Rc<StatsCells>,
    fill: Rc<ZeroFill>,
    io_submit: IoSubmit,
}

/// Bytes of zeros one fill write covers.
const ZERO_FILL_CHUNK_BYTES: u64 = 1 << 20;

/// `preallocate` writes zeros ahead of the data in the background, so that later appends
/// overwrite written blocks inside the file's size: their fdatasync then flushes data
/// only, where an append that grows the file (or fills a fallocated, unwritten extent)
/// also commits metadata to the journal each time. Measured in the HTTP benchmark at 2
/// connections: half the server CPU per message and 21% more throughput.
///
/// The fill writes `[written_end, target)` in ascending chunks. A data write that
/// overlaps the part not yet filled waits for it (zeros must never land on data), a
/// truncate waits for the fill to stop, and a failed fill just stops: the data writes
/// then extend the file as they would without it.
#[derive(Default)]
struct ZeroFill {
    /// Zeros are written below this (block aligned); `None` until the first preallocate.
    written_end: Cell<Option<u64>>,
    target: Cell<u64>,
    running: Cell<bool>,
    waiters: RefCell<Vec<std::task::Waker>>,
}

impl ZeroFill {
    fn wake_all(&self) {
        for waker in self.waiters.borrow_mut().drain(..) {
            waker.wake();
        }
    }

    /// Resolves once no part of `[start, end)` is still to be filled.
    async fn clear_of(&self, start: u64, end: u64) {
        std::future::poll_fn(|cx| {
            let pending_from = self.written_end.get().unwrap_or(u64::MAX);
            let overlaps = self.running.get() && start < self.target.get() && end > pending_from;
            if overlaps {
                self.waiters.borrow_mut().push(cx.waker().clone());
                std::task::Poll::Pending
            } else {
                std::task::Poll::Ready(())
            }
        })
        .await
    }

    /// Resolves once the fill task has stopped.
    async fn stopped(&self) {
        std::future::poll_fn(|cx| {
            if self.running.get() {
                self.waiters.borrow_mut().push(cx.waker().clone());
                std::task::Poll::Pending
            } else {
                std::task::Poll::Ready(())
            }
        })
        .await
    }
}

/// Writes zeros up to `fill.target`, one chunk at a time, until done or a write fails.
async fn zero_fill(file: Rc<DmaFile>, fill: Rc<ZeroFill>) {
    // Bounded: every pass advances `written_end` by a chunk towards `target`.
    loop {
        let from = fill.written_end.get().expect("set before the fill starts");
        let target = fill.target.get();
        if from >= target {
            break;
        }
        let bytes = (target - from).min(ZERO_FILL_CHUNK_BYTES);
        let length = usize::try_from(bytes).expect("a chunk fits usize");
        let mut buf = file.alloc_dma_buffer(length);
        // glommio hands out recycled memory.
        buf.as_bytes_mut().fill(0);
        match file.write_at(buf, from).await {
            Ok(written) if written == length => fill.written_end.set(Some(from + bytes)),
            // Out of room or failing: stop; data writes extend the file themselves.
            _ => break,
        }
        fill.wake_all();
    }
    fill.running.set(false);
    fill.wake_all();
}

/// The descriptor, for measurements and experiments (the benchmark's alternative
/// preallocation); I/O on it bypasses the counters and the contract checks.
impl AsRawFd for DmaStorageFile {
    fn as_raw_fd(&self) -> std::os::unix::io::RawFd {
        self.file.as_raw_fd()
    }
}

/// A zero-filled, DMA-aligned buffer (from glommio's registered I/O memory when it
/// fits there). `None` stands for the empty buffer, which glommio cannot allocate.
pub struct DmaBuf(Option<DmaBuffer>);

impl AsRef<[u8]> for DmaBuf {
    fn as_ref(&self) -> &[u8] {
        self.0.as_ref().map_or(&[], |buf| buf.as_bytes())
    }
}

impl AsMut<[u8]> for DmaBuf {
    fn as_mut(&mut self) -> &mut [u8] {
        self.0.as_mut().map_or(&mut [], |buf| buf.as_bytes_mut())
    }
}

impl StorageBuf for DmaBuf {}

/// Bytes read: glommio's buffer itself when one request served the read, a copy when
/// the read was split into chunks.
pub enum DmaReadBuf {
    Direct(ReadResult),
    Joined(Vec<u8>),
}

impl AsRef<[u8]> for DmaReadBuf {
    fn as_ref(&self) -> &[u8] {
        match self {
            DmaReadBuf::Direct(result) => result,
            DmaReadBuf::Joined(bytes) => bytes,
        }
    }
}

impl DmaStorageFile {
    /// Reads at most one chunk at `position`, aligning the request for O_DIRECT and
    /// cutting the answer at the true end of file. Returns the bytes and whether the
    /// end of file was certainly reached.
    async fn read_piece(&self, position: u64, bytes: usize) -> Result<(ReadResult, bool), IoError> {
        let aligned_position = position - position % self.alignment;
        let skip = usize::try_from(position - aligned_position).expect("below the alignment");
        let aligned_bytes = align_up_usize(skip + bytes, self.alignment);
        let result = self
            .file
            .read_at_aligned(aligned_position, aligned_bytes)
            .await
            .map_err(|error| glommio_error(&error, IoOp::Read))?;
        let read_bytes = result.len();
        assert!(
            read_bytes <= aligned_bytes,
            "the kernel read more than asked"
        );
        let valid = read_bytes.saturating_sub(skip).min(bytes);
        // Direct I/O only ends on an unaligned count at end of file; an aligned short
        // count may be either, and the caller asks again to find out.
        let at_end = read_bytes < aligned_bytes && !is_multiple(read_bytes, self.alignment);
        let piece = ReadResult::slice(&result, skip.min(read_bytes), valid)
            .expect("the slice lies inside the bytes read");
        assert_eq!(piece.len(), valid);
        Ok((piece, at_end || read_bytes == 0))
    }
}

impl DmaStorageFile {
    /// This thread's directly driven ring, when the storage submits through it. If the
    /// ring cannot be set up (an old kernel, a locked-memory limit) the storage says so
    /// once per thread and uses glommio's path.
    fn ring(&self) -> Option<Rc<Ring>> {
        thread_local! {
            static REFUSED: Cell<bool> = const { Cell::new(false) };
        }
        if self.io_submit != IoSubmit::Ring || REFUSED.with(Cell::get) {
            return None;
        }
        match Ring::current() {
            Ok(ring) => {
                bump(&self.stats.ring_submissions, 1);
                Some(ring)
            }
            Err(error) => {
                REFUSED.with(|refused| refused.set(true));
                eprintln!("sluice: no io_uring of its own on this thread ({error}); writes go through glommio");
                None
            }
        }
    }

    fn count_write(&self, written: usize, length: usize) -> Result<(), IoError> {
        bump(&self.stats.writes, 1);
        bump(&self.stats.write_bytes, written as u64);
        if written < length {
            // A short direct write means the device ran out of room part way (the
            // only case write(2) documents); the caller sees ENOSPC and poisons.
            return Err(IoError {
                kind: IoErrorKind::NoSpace,
                op: IoOp::Write,
                errno: None,
            });
        }
        Ok(())
    }

    fn count_sync(&self, started: std::time::Instant) {
        bump(&self.stats.file_syncs, 1);
        let observer = self.stats.sync_observer.borrow().clone();
        if let Some(observer) = observer {
            observer(started.elapsed());
        }
    }

    /// Extends the background fill to `bytes` (block aligned up), starting it if idle.
    async fn start_zero_fill(&self, bytes: u64) -> Result<(), IoError> {
        let fill = &self.fill;
        if fill.written_end.get().is_none() {
            fill.written_end
                .set(Some(self.size().await?.next_multiple_of(BLOCK_BYTES)));
        }
        let target = bytes.next_multiple_of(BLOCK_BYTES);
        if target <= fill.target.get() {
            return Ok(());
        }
        fill.target.set(target);
        if !fill.running.get() {
            fill.running.set(true);
            glommio::spawn_local(zero_fill(self.file.clone(), fill.clone())).detach();
        }
        Ok(())
    }
}

impl StorageFile for DmaStorageFile {
    type Buf = DmaBuf;
    type ReadBuf = DmaReadBuf;

    fn alloc_buf(&self, bytes: usize) -> DmaBuf {
        assert!(
            is_block_aligned(bytes as u64),
            "buffer of {bytes} bytes is not block aligned"
        );
        if bytes == 0 {
            return DmaBuf(None);
        }
        let mut buf = self.file.alloc_dma_buffer(bytes);
        // glommio hands out recycled memory; the contract promises zeros, and the log
        // relies on them for the padding after the last batch.
        buf.as_bytes_mut().fill(0);
        DmaBuf(Some(buf))
    }

    async fn write_at(&self, buf: DmaBuf, position: u64) -> Result<(), IoError> {
        assert!(
            is_block_aligned(position),
            "write at unaligned position {position}"
        );
        let Some(buf) = buf.0 else {
            return Ok(());
        };
        let length = buf.len();
        assert!(is_block_aligned(length as u64), "unaligned write length");
        self.fill.clear_of(position, position + length as u64).await;
        let written = match self.ring() {
            Some(ring) => ring
                .write(&self.file, buf, position)
                .await
                .map_err(|errno| errno_error(errno, IoOp::Write))?,
            None => self
                .file
                .write_at(buf, position)
                .await
                .map_err(|error| glommio_error(&error, IoOp::Write))?,
        };
        self.count_write(written, length)
    }

    async fn write_sync_at(&self, buf: DmaBuf, position: u64) -> Result<(), IoError> {
        let ring = self.ring();
        let (Some(ring), Some(dma)) = (ring, buf.0.as_ref()) else {
            self.write_at(buf, position).await?;
            return self.sync().await;
        };
        assert!(
            is_block_aligned(position),
            "write at unaligned position {position}"
        );
        let length = dma.len();
        assert!(is_block_aligned(length as u64), "unaligned write length");
        self.fill.clear_of(position, position + length as u64).await;
        let started = std::time::Instant::now();
        let buf = buf.0.expect("checked above");
        let (written, synced) =
            ring.write_sync(&self.file, buf, position)
                .await
                .map_err(|failed| match failed {
                    WriteSyncError::Write(errno) => errno_error(errno, IoOp::Write),
                    WriteSyncError::Sync(errno) => errno_error(errno, IoOp::Sync),
                })?;
        self.count_write(written, length)?;
        assert!(synced, "a full write is followed by its sync");
        self.count_sync(started);
        Ok(())
    }

    async fn read_at(&self, position: u64, bytes: usize) -> Result<DmaReadBuf, IoError> {
        if bytes == 0 {
            return Ok(DmaReadBuf::Joined(Vec::new()));
        }
        let first = bytes.min(READ_CHUNK_BYTES);
        let (piece, at_end) = self.read_piece(position, first).await?;
        bump(&self.stats.reads, 1);
        bump(&self.stats.read_bytes, piece.len() as u64);
        if piece.len() == bytes || at_end {
            return Ok(DmaReadBuf::Direct(piece));
        }
        let mut joined = Vec::with_capacity(bytes);
        joined.extend_from_slice(&piece);
        drop(piece);
        // Bounded: each pass adds at least one byte or stops at end of file.
        while joined.len() < bytes {
            let want = (bytes - joined.len()).min(READ_CHUNK_BYTES);
            let (piece, at_end) = self
                .read_piece(position + joined.len() as u64, want)
                .await?;
            bump(&self.stats.reads, 1);
            bump(&self.stats.read_bytes, piece.len() as u64);
            joined.extend_from_slice(&piece);
            if piece.is_empty() || at_end {
                break;
            }
        }
        assert!(joined.len() <= bytes, "read more than asked");
        Ok(DmaReadBuf::Joined(joined))
    }

    async fn sync(&self) -> Result<(), IoError> {
        let started = std::time::Instant::now();
        match self.ring() {
            Some(ring) => ring
                .sync(&self.file)
                .await
                .map_err(|errno| errno_error(errno, IoOp::Sync))?,
            None => self
                .file
                .fdatasync()
                .await
                .map_err(|error| glommio_error(&error, IoOp::Sync))?,
        }
        self.count_sync(started);
        Ok(())
    }

    async fn size(&self) -> Result<u64, IoError> {
        // fstat on the descriptor, not statx on the path: a removed file keeps its
        // size for open handles. No device I/O, so calling it on the executor is fine.
        let mut stat = std::mem::MaybeUninit::<libc::stat>::uninit();
        // SAFETY: the descriptor is open for the life of `self.file` and `stat` is a
        // properly sized out-parameter.
        let status = unsafe { libc::fstat(self.file.as_raw_fd(), stat.as_mut_ptr()) };
        if status != 0 {
            return Err(std_error(&std::io::Error::last_os_error(), IoOp::Size));
        }
        // SAFETY: fstat returned 0, so it filled `stat`.
        let stat = unsafe { stat.assume_init() };
        Ok(u64::try_from(stat.st_size).expect("file sizes are not negative"))
    }

    async fn truncate(&self, bytes: u64) -> Result<(), IoError> {
        // No zeros may land past the new end after it: stop the fill after its current
        // chunk and wait for that.
        if let Some(end) = self.fill.written_end.get() {
            self.fill.target.set(self.fill.target.get().min(end));
        }
        self.fill.stopped().await;
        let aligned = bytes.next_multiple_of(BLOCK_BYTES);
        if self.fill.written_end.get().is_some_and(|end| end > aligned) {
            self.fill.written_end.set(Some(aligned));
            self.fill.target.set(aligned);
        }
        self.file
            .truncate(bytes)
            .await
            .map_err(|error| glommio_error(&error, IoOp::Truncate))?;
        // The contract says durable on return: the size is metadata fdatasync flushes.
        self.file
            .fdatasync()
            .await
            .map_err(|error| glommio_error(&error, IoOp::Truncate))?;
        bump(&self.stats.truncate_syncs, 1);
        Ok(())
    }

    async fn preallocate(&self, bytes: u64) -> Result<(), IoError> {
        bump(&self.stats.preallocates, 1);
        match self.file.pre_allocate(bytes, true).await {
            Ok(()) => {
                self.start_zero_fill(bytes).await?;
                Ok(())
            }
            Err(error) => {
                let error = glommio_error(&error, IoOp::Preallocate);
                if error.kind == IoErrorKind::NoSpace {
                    Err(error)
                } else {
                    // A hint: a file system without fallocate still takes the writes.
                    Ok(())
                }
            }
        }
    }
}

fn is_multiple(value: usize, alignment: u64) -> bool {
    (value as u64).is_multiple_of(alignment)
}

fn align_up_usize(value: usize, alignment: u64) -> usize {
    let alignment = usize::try_from(alignment).expect("alignment is small");
    value.div_ceil(alignment) * alignment
}

/// The kernel's kind for an errno.
pub fn errno_kind(errno: i32) -> IoErrorKind {
    match errno {
        libc::ENOENT => IoErrorKind::NotFound,
        libc::EEXIST => IoErrorKind::AlreadyExists,
        libc::ENOSPC | libc::EDQUOT => IoErrorKind::NoSpace,
        libc::EINVAL => IoErrorKind::Invalid,
        _ => IoErrorKind::Io,
    }
}

fn errno_error(errno: i32, op: IoOp) -> IoError {
    IoError {
        kind: errno_kind(errno),
        op,
        errno: Some(errno),
    }
}

fn std_error(error: &std::io::Error, op: IoOp) -> IoError {
    match error.raw_os_error() {
        Some(errno) => IoError {
            kind: errno_kind(errno),
            op,
            errno: Some(errno),
        },
        None => IoError::new(IoErrorKind::Io, op),
    }
}

fn glommio_error<T>(error: &GlommioError<T>, op: IoOp) -> IoError {
    match error {
        GlommioError::IoError(source) | GlommioError::EnhancedIoError { source, .. } => {
            std_error(source, op)
        }
        _ => IoError::new(IoErrorKind::Io, op),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_maps_to_the_kernel_kinds() {
        let cases = [
            (libc::ENOENT, IoErrorKind::NotFound),
            (libc::EEXIST, IoErrorKind::AlreadyExists),
            (libc::ENOSPC, IoErrorKind::NoSpace),
            (libc::EDQUOT, IoErrorKind::NoSpace),
            (libc::EINVAL, IoErrorKind::Invalid),
            (libc::EIO, IoErrorKind::Io),
            (libc::EROFS, IoErrorKind::Io),
        ];
        for (errno, kind) in cases {
            assert_eq!(errno_kind(errno), kind, "errno {errno}");
            let error = std_error(&std::io::Error::from_raw_os_error(errno), IoOp::Write);
            assert_eq!(error.errno, Some(errno));
            assert_eq!(error.kind, kind);
        }
    }

    #[test]
    fn alignment_helpers() {
        assert_eq!(align_up_usize(1, 512), 512);
        assert_eq!(align_up_usize(512, 512), 512);
        assert_eq!(align_up_usize(4097, 4096), 8192);
        assert!(is_multiple(8192, 4096));
        assert!(!is_multiple(100, 512));
    }
}
