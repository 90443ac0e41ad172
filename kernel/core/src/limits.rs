//! Named bounds for every buffer, batch and queue in the kernel (STYLE.md §4).
//!
//! Limits that an operator may tune are `Config` fields checked against these absolute
//! bounds at start-up; the constants here are the hard ceilings.

/// The largest encoded batch, header and records included.
pub const BATCH_BYTES_MAX: u32 = 4 << 20;
/// The most records one batch may hold.
pub const BATCH_RECORDS_MAX: u32 = 16 * 1024;
/// Direct I/O granularity: every write starts and ends on a multiple of this.
pub const BLOCK_BYTES: u64 = 4096;
/// The sector size a torn write is assumed to respect (ext4/NVMe guarantee).
pub const SECTOR_BYTES: u64 = 512;
/// Bounds of `LogConfig::segment_bytes_max`. Recovery reads the last segment whole, so
/// the ceiling also bounds start-up memory.
pub const SEGMENT_BYTES_MIN: u64 = 64 * 1024;
pub const SEGMENT_BYTES_CEILING: u64 = 1 << 30;
/// Bytes appended but not yet handed to storage; beyond it `append` answers `Busy`.
pub const STAGED_BYTES_MAX: u64 = 64 << 20;
/// The most segments one log may hold (bounds the segment table).
pub const SEGMENTS_MAX: usize = 1 << 20;
/// Bounds of `LogConfig::index_interval_bytes`.
pub const INDEX_INTERVAL_BYTES_MIN: u64 = 512;
pub const INDEX_INTERVAL_BYTES_MAX: u64 = 1 << 20;

const _: () = assert!(BLOCK_BYTES.is_multiple_of(SECTOR_BYTES));
const _: () = assert!(SEGMENT_BYTES_MIN.is_multiple_of(BLOCK_BYTES));
const _: () = assert!(SEGMENT_BYTES_CEILING.is_multiple_of(BLOCK_BYTES));
const _: () = assert!((BATCH_BYTES_MAX as u64) < SEGMENT_BYTES_CEILING);
const _: () = assert!(STAGED_BYTES_MAX > BATCH_BYTES_MAX as u64);
