//! HTTP adapters: the DMS queue API (v1.0, also under /v2), the SQS API (its JSON
//! protocol), the Keystone-compatible token endpoint and the admin API (the console is
//! planned). Adapters translate a protocol into node calls and kernel errors into
//! protocol errors; they hold no queue semantics.
//!
//! Runtime-agnostic: nothing here depends on glommio or madsim. The server and the
//! simulation both run this code against the one node layer (`sluice_node::Node`).

#![forbid(unsafe_code)]

pub mod auth;
pub mod console;
pub mod dms;
pub mod json_depth;
pub mod queue_meta;
pub mod service;
pub mod sqs;
