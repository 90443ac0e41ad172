//! The production driver: one glommio executor per core, storage on `DmaFile` (O_DIRECT
//! through io_uring), and the kernel's log driven on it with group commit. Built only
//! without `--cfg madsim`; under the simulator this crate is empty.
