//! Benchmarks: micro (log, engine) and end-to-end, each reported beside a baseline measured in the same run.
//!
//! The library holds what more than one benchmark binary uses: the Sluice DMS client and
//! server spawner ([`dms`]) of `http-load` and `mq-compare`, and latency samples
//! ([`latency`]), and a process's CPU time and RSS from /proc ([`procfs`]). Both need real sockets, so they are left out under `--cfg madsim`.
//!
//! # Architecture invariants
//!
//! - The load generators run on one tokio current-thread runtime: on the 2-core machine
//!   they share the CPU with the server they measure and keep their own cost small.
//! - Every buffer is bounded: responses by `RESPONSE_BYTES_MAX`, samples by the number
//!   of requests of a bounded run.

#[cfg(not(madsim))]
pub mod dms;
#[cfg(not(madsim))]
pub mod latency;
#[cfg(not(madsim))]
pub mod procfs;
