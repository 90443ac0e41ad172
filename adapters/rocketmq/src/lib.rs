//! The RocketMQ 5 front door: the gRPC `apache.rocketmq.v2.MessagingService` that the
//! official RocketMQ 5 clients speak, mapped onto the node layer. Like every adapter it
//! parses, authenticates, validates, calls a [`sluice_node::Node`] and maps errors; it
//! holds no queue state. The server owns the sockets and HTTP/2 (hyper on the glommio
//! shards, `server/src/rocketmq.rs`); this crate owns what is inside a gRPC call: the
//! length-prefixed message framing ([`grpc`]), the signature check ([`auth`]), and the
//! meaning of every method ([`service`]). The mapping is in docs/rocketmq.md.
//!
//! # Architecture invariants
//!
//! - A topic is a queue of the caller's tenant, found by name; a consumer group is a
//!   Sluice consumer group of that queue. Another tenant's queues are never found.
//! - Every refusal is a RocketMQ `Status{code, message}` in an answer that the gRPC call
//!   completes with `grpc-status` 0; only a call that cannot be decoded, or a method that
//!   is not served, ends with a gRPC error status.
//! - Every buffer is bounded by a constant of [`limits`]: a gRPC message, the messages of
//!   one send and of one receive, the wait of a long poll.
//! - Routing, long polls, leases and acknowledgements are the node's; this crate never
//!   picks a partition.

#![forbid(unsafe_code)]

pub mod auth;
pub mod grpc;
pub mod limits;
pub mod proto;
mod receive;
mod route;
mod send;
pub mod service;
mod telemetry;
mod transaction;
pub mod wire;

pub use grpc::{FrameDecoder, FrameError, GrpcCode};
pub use service::{method_of, unary, Answer, Method, RocketMqConfig};
pub use telemetry::Telemetry;
