//! HTTP adapters: the DMS queue API v1.0, the SQS-compatible JSON API, the web console's
//! assets and Prometheus `/metrics`. Adapters translate a protocol into kernel commands
//! and kernel errors into protocol errors; they hold no queue semantics.
//!
//! Runtime-agnostic: nothing here depends on glommio or madsim. The server and the
//! simulation both run this code against the one node layer (`sluice_node::Node`).

#![forbid(unsafe_code)]

pub mod auth;
pub mod dms;
pub mod json_depth;
pub mod service;
