//! TCP adapters: Sluice's binary protocol for high-throughput clients and the Kafka wire
//! protocol (produce, fetch, groups, share groups). Like every adapter, it maps protocol
//! frames to kernel commands and holds no queue semantics. Filled by a later issue.

#![forbid(unsafe_code)]
