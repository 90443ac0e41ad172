//! Sluice's sans-IO kernel.
//!
//! Everything Sluice decides lives here: the record format, the segment log, the queue
//! engine (later issues) and the replication glue. Drivers feed it inputs and perform its
//! I/O: `kernel/shard` on glommio in production, `sim/` on madsim in simulation, and the
//! in-memory [`sim_disk::SimDisk`] in tests. The frame format of the connections between
//! cluster nodes ([`frame`]) is here too, so that the server and the simulation share it.
//!
//! # Architecture invariants
//! - No clock, no sockets, no threads, no async runtime, no global randomness. Time is an
//!   argument; randomness comes from a seeded generator owned by the caller.
//! - Disk is reached only through [`storage::Storage`]. Its futures are not `Send`: a log
//!   belongs to one shard thread.
//! - Every byte read from disk is checksum-verified before it is believed.
//! - Only durable (synced) records are ever readable; an append is acknowledged only
//!   after the sync that covers it.
//! - Corruption of data that was durable is reported, never silently dropped; only an
//!   unsynced tail may be truncated by recovery.
//! - Every buffer and batch has a bound in [`limits`].
//! - No `unsafe` code (`forbid(unsafe_code)`): fixed-layout headers go through zerocopy.

#![forbid(unsafe_code)]

pub mod bugs;
pub mod clock;
pub mod conformance;
pub mod engine;
pub mod frame;
pub mod limits;
pub mod log;
pub mod offset_index;
pub mod record;
pub mod replica;
pub mod segment;
pub mod sim_disk;
pub mod storage;
pub mod term_runs;
pub mod types;

pub use types::Offset;
