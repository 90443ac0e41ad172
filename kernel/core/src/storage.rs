//! The narrow disk interface the log needs, implemented by each driver.
//!
//! Implementations: `sluice_shard::DmaStorage` (glommio `DmaFile`, O_DIRECT through
//! io_uring) in production and [`crate::sim_disk::SimDisk`] (in memory, fault injecting,
//! seeded) in tests and simulation. The kernel owns no file descriptors and no paths: a
//! storage is one flat directory of named files.
//!
//! The methods are `async` so that io_uring completions and simulated latency can be
//! awaited, but the trait depends on no runtime; a simulated disk returns ready futures.
//! Futures are not `Send`: every storage belongs to one shard (thread-per-core).
//!
//! Contract every implementation keeps (kernel/shard/tests/dma_storage.rs checks the
//! glommio one; the log's model tests run over the simulated disk):
//! - `write_at` positions and lengths are multiples of [`BLOCK_BYTES`]; buffers come from
//!   [`StorageFile::alloc_buf`] so they meet the driver's alignment rules.
//! - a write is durable only after a later `sync` of the same file returns `Ok`; a crash
//!   may lose or tear (at sector granularity) any write not yet covered by a sync.
//! - `create`, `remove`, `rename` and `truncate` are durable when they return.
//! - `read_at` returns fewer bytes than asked only at end of file.
//! - a failed `sync` leaves the file's durable content unknown; callers must stop using
//!   the file and recover from what is on disk (the "fsyncgate" rule).

use crate::limits::BLOCK_BYTES;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoErrorKind {
    NotFound,
    AlreadyExists,
    /// ENOSPC or EDQUOT.
    NoSpace,
    /// EIO and every other error of the device.
    Io,
    /// A caller broke the contract (unaligned write, bad name); a bug in the caller.
    Invalid,
}

/// Which operation failed; carried in errors so an operator sees what the disk refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoOp {
    Create,
    Open,
    List,
    Remove,
    Rename,
    Write,
    Read,
    Sync,
    Size,
    Truncate,
    Preallocate,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IoError {
    pub kind: IoErrorKind,
    pub op: IoOp,
    /// The raw errno when the driver had one.
    pub errno: Option<i32>,
}

impl IoError {
    pub fn new(kind: IoErrorKind, op: IoOp) -> IoError {
        IoError {
            kind,
            op,
            errno: None,
        }
    }
}

impl std::fmt::Display for IoErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            IoErrorKind::NotFound => "no such file",
            IoErrorKind::AlreadyExists => "file exists",
            IoErrorKind::NoSpace => "no space left on the device",
            IoErrorKind::Io => "I/O error",
            IoErrorKind::Invalid => "invalid request (a bug in the caller)",
        })
    }
}

impl std::fmt::Display for IoOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            IoOp::Create => "create",
            IoOp::Open => "open",
            IoOp::List => "list",
            IoOp::Remove => "remove",
            IoOp::Rename => "rename",
            IoOp::Write => "write",
            IoOp::Read => "read",
            IoOp::Sync => "sync",
            IoOp::Size => "size",
            IoOp::Truncate => "truncate",
            IoOp::Preallocate => "preallocate",
        })
    }
}

impl std::fmt::Display for IoError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} failed: {}", self.op, self.kind)?;
        if let Some(errno) = self.errno {
            write!(f, " (errno {errno})")?;
        }
        Ok(())
    }
}

/// A flat directory of files.
#[allow(async_fn_in_trait)] // Deliberately not Send: one storage per shard thread.
pub trait Storage {
    type File: StorageFile;

    /// Creates a new, empty file. Fails with `AlreadyExists` if the name is taken. The
    /// directory entry is durable on return.
    async fn create(&self, name: &str) -> Result<Self::File, IoError>;
    /// Opens an existing file for reading and writing.
    async fn open(&self, name: &str) -> Result<Self::File, IoError>;
    /// Every file name in the directory, sorted.
    async fn list(&self) -> Result<Vec<String>, IoError>;
    /// Removes a file; durable on return. Open handles may keep reading it.
    async fn remove(&self, name: &str) -> Result<(), IoError>;
    /// Gives the file `from` the name `to`, atomically: a crash leaves the file under
    /// one name or the other, never both or neither. A file already named `to` is
    /// replaced (rename(2)). Durable on return; the content is unchanged, and open
    /// handles keep reaching the same file. Fails with `NotFound` if `from` is missing.
    async fn rename(&self, from: &str, to: &str) -> Result<(), IoError>;
}

/// An aligned buffer for [`StorageFile::write_at`].
pub trait StorageBuf: AsRef<[u8]> + AsMut<[u8]> {}

/// One open file.
#[allow(async_fn_in_trait)] // Deliberately not Send: one storage per shard thread.
pub trait StorageFile {
    type Buf: StorageBuf;
    type ReadBuf: AsRef<[u8]>;

    /// A zero-filled buffer of `bytes` (a multiple of [`BLOCK_BYTES`]) fit for direct I/O.
    fn alloc_buf(&self, bytes: usize) -> Self::Buf;
    /// Writes the whole buffer at `position` (a multiple of [`BLOCK_BYTES`]).
    async fn write_at(&self, buf: Self::Buf, position: u64) -> Result<(), IoError>;
    /// Reads up to `bytes` from `position`; short only at end of file. Any alignment.
    async fn read_at(&self, position: u64, bytes: usize) -> Result<Self::ReadBuf, IoError>;
    /// Makes every completed write to this file durable (fdatasync).
    async fn sync(&self) -> Result<(), IoError>;
    /// `write_at` then `sync`, as one operation where the storage can submit them
    /// together (production: one linked io_uring submission). Same contract as the two
    /// calls in order: on `Ok` the buffer is written and durable.
    async fn write_sync_at(&self, buf: Self::Buf, position: u64) -> Result<(), IoError> {
        self.write_at(buf, position).await?;
        self.sync().await
    }
    /// The file's current size in bytes.
    async fn size(&self) -> Result<u64, IoError>;
    /// Sets the size; bytes beyond it read as zeros if the file grows again. Durable on
    /// return.
    async fn truncate(&self, bytes: u64) -> Result<(), IoError>;
    /// Reserves space up to `bytes` (a hint; may be a no-op). An implementation may also
    /// write zeros up to `bytes` in the background, growing the size: callers treat bytes
    /// past their own data as zeros of unknown extent. Zeros never land on a write made
    /// after the call, and `truncate` waits for such a fill.
    async fn preallocate(&self, bytes: u64) -> Result<(), IoError>;
}

/// True when `value` is a multiple of the direct-I/O block.
pub const fn is_block_aligned(value: u64) -> bool {
    value.is_multiple_of(BLOCK_BYTES)
}
