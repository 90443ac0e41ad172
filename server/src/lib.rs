//! The single-node Sluice server: glommio shards (kernel/shard) running the node layer
//! (node/) over the kernel's engines, behind the HTTP adapters (adapters/http) and, with
//! `kafka_listen`, the Kafka adapter (adapters/tcp). Built only without `--cfg madsim`;
//! the simulation runs the same node and adapter code on its own host.
//!
//! Reading order: `config`, `datadir`, `password_pool`, `shared`, `shard`, `fairness`,
//! `framing`, `http`, `kafka`,
//! `metrics`, `run`; `cluster` (the node-to-node transport) and `replication` (cluster
//! mode: the Raft messages of a shard's partitions over it).
//!
//! # Architecture invariants
//! - A partition's engine lives on one shard (`p % shards`) and is touched only there;
//!   other shards reach it by jobs on the channel mesh. No locks on the data path.
//! - Metadata changes run on shard 0, one at a time, partition 0 first (`sluice_node`).
//! - A send or ack is answered only after the engine made it durable (group commit).
//! - Shared state is read-mostly and published with arc-swap; the login guards (replay cache,
//!   back-off tables) are the exception, one mutex each, held for one map operation.
//! - No shard thread checks a login's password: argon2id runs on the password verifiers'
//!   threads (`password_pool`).
//! - Every queue of the cluster transport is bounded; a full one refuses (`SendError::Full`)
//!   or stops reading its socket, and never grows.

#![forbid(unsafe_code)]
// The futures of a request (hyper, the adapter, the node layer, the engine) nest deeply.
#![recursion_limit = "256"]

pub mod client;
pub mod cluster;
pub mod config;
pub mod datadir;
#[cfg(not(madsim))]
pub mod fairness;
#[cfg(not(madsim))]
pub mod forwarding;
pub mod framing;
#[cfg(not(madsim))]
pub mod http;
#[cfg(not(madsim))]
pub mod kafka;
pub mod metrics;
#[cfg(not(madsim))]
pub mod password_pool;
#[cfg(not(madsim))]
pub mod replication;
#[cfg(not(madsim))]
pub mod rocketmq;
#[cfg(not(madsim))]
pub mod run;
pub mod secrets;
#[cfg(not(madsim))]
pub mod shard;
#[cfg(not(madsim))]
pub mod shared;
#[cfg(not(madsim))]
pub mod snapshot_transfer;
pub mod webhooks;
