//! TCP adapters: the Kafka wire protocol ([`kafka`]). Like every adapter, it maps protocol
//! frames to node calls and holds no queue state; the server owns the sockets and hands
//! each whole frame to a connection's [`kafka::Session`].

#![forbid(unsafe_code)]

pub mod kafka;
