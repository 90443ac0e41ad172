//! The madsim driver: simulated nodes, network, clock and the fault-injecting disk from
//! `sluice_core::sim_disk`, a seeded nemesis, a recorded client history and a checker
//! of the delivery contract. The simulation itself builds under `--cfg madsim` and is
//! filled by the simulation issue; without that cfg this crate is empty.
