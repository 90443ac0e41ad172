//! The Kafka wire protocol over a [`Node`]: one [`Session`] per TCP connection.
//!
//! The server reads a frame (a 4-byte big-endian length, then that many bytes; refused
//! beyond [`FRAME_BYTES_MAX`]) and hands the bytes after the length to
//! [`Session::handle`], which decodes the request header and body with the
//! `kafka-protocol` crate, runs it against the node and answers the whole response
//! frame, length included. Requests of one connection are answered in order, one at a
//! time. A frame that does not decode ends the connection ([`Reply::Close`], with the
//! reason for the log); nothing else is affected.
//!
//! The mapping (docs/kafka.md): a topic is a queue of the authenticated tenant, a Kafka
//! partition a Sluice partition, and an offset the position of a message in its queue on
//! that partition (its sequence number: dense, monotonic, the same on every replica and
//! after restarts).

mod api;
mod codec;
mod fetch;
mod groups;
mod produce;
mod records;
mod sasl;
mod share;
mod topics;
mod unsupported;

use std::sync::Arc;

use bytes::Bytes;
use sluice_node::tenants::Tenant;
use sluice_node::Node;

pub use codec::{decode_frame, FrameHead};
pub use records::{
    decode_attributes, encode_attributes, encode_records, plain_record, KafkaAttributes,
};

/// Bytes of one request frame after its length prefix. A produce of 1,000 records of
/// 1 KiB is about 1.1 MB; this leaves room for several such batches in one request.
pub const FRAME_BYTES_MAX: usize = 16 * 1024 * 1024;
/// Topics one request may name (Metadata, Produce, Fetch, ListOffsets, CreateTopics...).
pub const TOPICS_PER_REQUEST_MAX: usize = 1_000;
/// Partitions of one topic one request may name.
pub const PARTITIONS_PER_TOPIC_MAX: usize = 1_024;
/// Records one produced batch may hold.
pub const RECORDS_PER_BATCH_MAX: usize = 10_000;
/// Bytes of one produced record batch, as received (compressed or not), and of its
/// records once decompressed.
pub const BATCH_BYTES_MAX: usize = 8 * 1024 * 1024;
/// The longest a Fetch waits for `min_bytes` (its `max_wait_ms` is capped here).
pub const FETCH_WAIT_MS_MAX: u64 = 30_000;
/// Bytes one Fetch answers at most, whatever its `max_bytes` asks.
pub const FETCH_BYTES_MAX: u64 = 8 * 1024 * 1024;

/// What a node tells Kafka clients about itself.
#[derive(Clone, Debug)]
pub struct KafkaConfig {
    /// This node as a Kafka broker: its id in Metadata answers.
    pub broker_id: i32,
    /// The address clients are told to connect to (Metadata, FindCoordinator).
    pub advertised_host: String,
    pub advertised_port: i32,
    /// Every node of the cluster as a broker (`--kafka-brokers`), this one included;
    /// empty: Metadata names this node alone as every partition's leader (any node
    /// serves any partition by forwarding), which is all a single node can say.
    pub brokers: Vec<Broker>,
}

/// A node of the cluster as Kafka clients see it: its node id and Kafka address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Broker {
    pub id: i32,
    pub host: String,
    pub port: i32,
}

/// What the server does after a frame.
#[derive(Debug)]
pub enum Reply {
    /// Write this whole response frame (length prefix included).
    Send(Vec<u8>),
    /// Nothing to write (a Produce with `acks=0`).
    Nothing,
    /// Close the connection; the text says why, for the log.
    Close(String),
}

/// One connection's protocol state: who authenticated, and how far SASL got.
pub struct Session {
    config: Arc<KafkaConfig>,
    tenant: Option<Tenant>,
    sasl: sasl::SaslState,
    /// Share groups (KIP-932): subscriptions, sessions, acquired records.
    share: share::ShareState,
}

impl Session {
    pub fn new(config: Arc<KafkaConfig>) -> Session {
        Session {
            config,
            tenant: None,
            sasl: sasl::SaslState::default(),
            share: share::ShareState::default(),
        }
    }

    /// The tenant this connection authenticated as, if it has.
    pub fn tenant(&self) -> Option<&Tenant> {
        self.tenant.as_ref()
    }

    /// Runs one request frame (the bytes after its length prefix) and says what to
    /// answer.
    pub async fn handle<N: Node>(&mut self, node: &N, frame: Bytes) -> Reply {
        api::handle(self, node, frame).await
    }
}
