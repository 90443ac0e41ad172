//! The madsim driver: a simulated node running the queue engine on the fault-injecting
//! disk from `sluice_core::sim_disk`, clients, a seeded nemesis, a recorded client history
//! and a checker of the delivery contract (issue 6, first cut).
//!
//! Everything lives behind `--cfg madsim` (`cargo xtask sim`); without that cfg this crate
//! is empty. Reading order: [`history`] (what clients saw), [`node`] (the engine behind a
//! request handler, crash and reopen), [`client`] (the simulated network and the
//! workload), [`checker`], [`run`] (one seed end to end).
//!
//! Network: clients are madsim tasks on the same simulated node as the server, and each
//! request and reply crosses a simulated link (a seeded latency, and while faults are on a
//! seeded drop of the request or of the reply) rather than `madsim::net::Endpoint`: the
//! engine and `SimDisk` are `!Send` (`Rc`, `RefCell`), and a one-node first cut gains
//! nothing from serialising requests. Replace the link with `Endpoint` once the server
//! layer exists and has a wire format.
//!
//! Time: the engine's `now` is madsim's simulated clock in milliseconds (plus a fixed
//! base), never a wall clock.

#[cfg(madsim)]
pub mod checker;
#[cfg(madsim)]
pub mod client;
#[cfg(madsim)]
pub mod history;
#[cfg(madsim)]
pub mod node;
#[cfg(madsim)]
pub mod run;
#[cfg(madsim)]
pub mod slow_disk;
