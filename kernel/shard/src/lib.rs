//! The production driver: one glommio executor per core, storage on `DmaFile` (O_DIRECT
//! through io_uring), and the kernel's log driven on it with group commit. Built only
//! without `--cfg madsim`; under the simulator this crate is empty.
//!
//! Reading order: [`executor`] (start-up: memlock and executor builders), then
//! [`storage`] (the kernel's `Storage` trait on real files).
//!
//! # Architecture invariants
//! - Every file, buffer and future here belongs to one executor thread: nothing is
//!   `Send`, and nothing is shared between shards except through channels.
//! - Storage keeps the kernel's disk contract exactly (`sluice_core::storage`): a write
//!   is durable only after `sync`; `create`, `remove` and `truncate` are durable on
//!   return; every error carries its errno. The behavioural tests of
//!   `sluice_core::conformance` run against it on real files.
//! - No queue or log semantics live here; the kernel decides, the driver performs.

#[cfg(not(madsim))]
pub mod executor;
#[cfg(not(madsim))]
pub mod storage;
#[cfg(not(madsim))]
pub mod uring;

#[cfg(not(madsim))]
pub use storage::{DmaStorage, DmaStorageFile, DmaStorageStats};
#[cfg(not(madsim))]
pub use uring::IoSubmit;
