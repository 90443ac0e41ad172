//! The madsim driver: a simulated node running the server's request-handling layer
//! (`sluice_http::service::handle` over the production node layer, `sluice_node`'s
//! `LocalNode` of 2 or 3 partitions and 2 or 3 shards) on the fault-injecting disk from
//! `sluice_core::sim_disk`, clients that speak the DMS HTTP API with signed requests, a
//! seeded nemesis, a recorded client history, a checker of the delivery contract and a
//! liveness probe of long polls.
//!
//! Everything lives behind `--cfg madsim` (`cargo xtask sim`); without that cfg this crate
//! is empty. Reading order: `history` (what clients saw), `node` (the service layer over
//! the node layer and the engines, crash and reopen), `api` (signed DMS requests and
//! their answers), `client` (the simulated network, the workload and the wake probe),
//! `checker`, `run` (one seed end to end).
//!
//! Network: clients are madsim tasks on the same simulated node as the server. Each
//! request is built as HTTP parts and a body, signed, and crosses a simulated link (a
//! seeded latency, and while faults are on a seeded drop of the request or of the reply)
//! to `service::handle`; there is no socket or HTTP/1 framing (hyper is the server's, not
//! simulated), and `madsim::net::Endpoint` is not used: the engines and `SimDisk` are
//! `!Send` (`Rc`, `RefCell`), and one node gains nothing from serialising the parts.
//!
//! Time: the node's clock is madsim's simulated clock in milliseconds (plus a fixed
//! epoch), never a wall clock; clients sign with the same clock.

#![recursion_limit = "256"]
#![forbid(unsafe_code)]

#[cfg(madsim)]
pub mod api;
#[cfg(madsim)]
pub mod checker;
#[cfg(madsim)]
pub mod client;
#[cfg(madsim)]
pub mod cluster;
#[cfg(madsim)]
pub mod cluster_nemesis;
#[cfg(madsim)]
pub mod history;
#[cfg(madsim)]
pub mod kafka;
#[cfg(madsim)]
pub mod node;
#[cfg(madsim)]
pub mod run;
#[cfg(madsim)]
pub mod slow_disk;

/// Without `--cfg madsim` this crate is empty; a plain `cargo test` lists this test as
/// ignored, with the command that runs the simulation. (`cargo xtask test` runs the
/// simulation in its own step and skips this marker.)
#[cfg(all(test, not(madsim)))]
mod without_madsim {
    #[test]
    #[ignore = "the simulation needs --cfg madsim: run `cargo xtask sim --seeds 100`"]
    fn simulation_needs_madsim() {
        panic!("run the simulation with `cargo xtask sim --seeds 100` (it needs --cfg madsim)");
    }
}
