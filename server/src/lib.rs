//! The single-node Sluice server: glommio shards (kernel/shard) running the kernel's
//! engines, behind the HTTP adapters (adapters/http). Built only without `--cfg madsim`;
//! the simulation runs the same adapter code on its own driver.
//!
//! Reading order: [`config`], [`datadir`], [`shared`], [`calls`], [`shard`], [`meta`],
//! [`node`], [`http`], [`metrics`], [`run`].
//!
//! # Architecture invariants
//! - A partition's engine lives on one shard (`p % shards`) and is touched only there;
//!   other shards reach it by messages on the channel mesh. No locks on the data path.
//! - Metadata changes run on shard 0, one at a time, partition 0 first (see [`shard`]).
//! - A send or ack is answered only after the engine made it durable (group commit).
//! - Shared state is read-mostly and published with arc-swap.

#[cfg(not(madsim))]
pub mod calls;
pub mod client;
pub mod config;
pub mod datadir;
#[cfg(not(madsim))]
pub mod http;
#[cfg(not(madsim))]
pub mod meta;
pub mod metrics;
#[cfg(not(madsim))]
pub mod node;
#[cfg(not(madsim))]
pub mod run;
pub mod secrets;
#[cfg(not(madsim))]
pub mod shard;
#[cfg(not(madsim))]
pub mod shared;
