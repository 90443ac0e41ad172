//! The hello frame that opens every cluster connection, and the checks both ends make
//! of it. Runtime-free.
//!
//! The connecting shard sends its hello first; the accepting node checks it
//! ([`Identity::check_inbound`]), hands the connection to the shard it names, and that
//! shard answers with its own hello, which the connecting side checks
//! ([`Identity::check_reply`]). Either side closes the connection, with the reason
//! logged, when a check fails. After the hellos, frames flow one way only: from the
//! connecting shard to the accepting one.
//!
//! The hello is a frame (`sluice_core::frame`) of kind [`KIND_HELLO`] on the sender's
//! shard's channel, whose payload is a fixed little-endian [`HelloWire`].

use sluice_core::frame::{encode_frame, FrameView};
use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::config::ClusterConfig;
use super::NodeId;

/// The frame kind of a hello; reserved: no other frame may use it.
pub const KIND_HELLO: u8 = 0;
/// "SLCH" read as a little-endian u32.
const HELLO_MAGIC: u32 = u32::from_le_bytes(*b"SLCH");
/// The only hello version this build speaks.
const HELLO_VERSION: u16 = 1;
/// Bytes of a hello's payload.
pub const HELLO_BYTES: usize = 28;

/// The payload of a hello frame. Field order is the wire order.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy, Debug)]
#[repr(C)]
pub struct HelloWire {
    /// "SLCH".
    pub magic: U32,
    /// 1.
    pub version: U16,
    /// The sender's shard: the shard it talks to on the other node.
    pub shard: U16,
    /// Shards per node on the sender; every node of a cluster runs as many.
    pub shard_count: U16,
    /// Zero.
    pub reserved: U16,
    /// The sender's node.
    pub node_id: U64,
    /// [`ClusterConfig::cluster_id`] of the sender.
    pub cluster_id: U64,
}

const _: () = assert!(core::mem::size_of::<HelloWire>() == HELLO_BYTES);

/// What a hello says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hello {
    /// The sender's [`ClusterConfig::cluster_id`].
    pub cluster_id: u64,
    /// The sender's node.
    pub node_id: NodeId,
    /// The sender's shard, which is the shard it talks to on the other node.
    pub shard: u16,
    /// Shards per node on the sender.
    pub shard_count: u16,
}

/// Why a hello is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HelloError {
    /// The first frame is not a hello.
    NotHello {
        kind: u8,
    },
    BadLength {
        payload_bytes: usize,
    },
    BadMagic {
        found: u32,
    },
    BadVersion {
        found: u16,
    },
    /// The frame's channel is not the shard the hello names.
    ChannelMismatch {
        channel: u16,
        shard: u16,
    },
    /// Another cluster, or the same nodes given a different `--peers`.
    OtherCluster {
        theirs: u64,
        ours: u64,
    },
    /// A node id that is not in this node's `--peers`.
    UnknownNode {
        node_id: NodeId,
    },
    /// A hello in this node's own name.
    OwnNode,
    ShardCount {
        theirs: u16,
        ours: u16,
    },
    /// A shard this node does not run.
    ShardOutOfRange {
        shard: u16,
        shard_count: u16,
    },
    /// The answer came from another node than the one connected to.
    UnexpectedNode {
        expected: NodeId,
        found: NodeId,
    },
    /// The answer came from another shard than the one asked for.
    UnexpectedShard {
        expected: u16,
        found: u16,
    },
}

impl std::fmt::Display for HelloError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HelloError::NotHello { kind } => {
                write!(f, "the first frame is kind {kind}, not a hello")
            }
            HelloError::BadLength { payload_bytes } => {
                write!(f, "a hello of {payload_bytes} bytes, not {HELLO_BYTES}")
            }
            HelloError::BadMagic { found } => write!(f, "bad hello magic {found:#010x}"),
            HelloError::BadVersion { found } => write!(f, "unknown hello version {found}"),
            HelloError::ChannelMismatch { channel, shard } => {
                write!(f, "a hello for shard {shard} on channel {channel}")
            }
            HelloError::OtherCluster { theirs, ours } => write!(
                f,
                "cluster id {theirs:#018x} is not ours ({ours:#018x}): another cluster, or a \
                 different --peers list"
            ),
            HelloError::UnknownNode { node_id } => write!(f, "node {node_id} is not in --peers"),
            HelloError::OwnNode => write!(f, "a hello in this node's own name"),
            HelloError::ShardCount { theirs, ours } => {
                write!(f, "the peer runs {theirs} shards, this node {ours}")
            }
            HelloError::ShardOutOfRange { shard, shard_count } => {
                write!(f, "shard {shard} of a node of {shard_count} shards")
            }
            HelloError::UnexpectedNode { expected, found } => {
                write!(
                    f,
                    "expected node {expected}, found node {found} at its address"
                )
            }
            HelloError::UnexpectedShard { expected, found } => {
                write!(f, "expected shard {expected}, found shard {found}")
            }
        }
    }
}

impl Hello {
    /// The whole hello frame, header included.
    pub fn encode(&self) -> Vec<u8> {
        let wire = HelloWire {
            magic: U32::new(HELLO_MAGIC),
            version: U16::new(HELLO_VERSION),
            shard: U16::new(self.shard),
            shard_count: U16::new(self.shard_count),
            reserved: U16::new(0),
            node_id: U64::new(self.node_id.0),
            cluster_id: U64::new(self.cluster_id),
        };
        let mut frame = Vec::new();
        encode_frame(&mut frame, self.shard, KIND_HELLO, wire.as_bytes())
            .expect("a hello is far below the frame limit");
        frame
    }

    /// Reads a verified frame as a hello.
    pub fn decode(frame: &FrameView<'_>) -> Result<Hello, HelloError> {
        if frame.kind != KIND_HELLO {
            return Err(HelloError::NotHello { kind: frame.kind });
        }
        let wire =
            HelloWire::read_from_bytes(frame.payload).map_err(|_| HelloError::BadLength {
                payload_bytes: frame.payload.len(),
            })?;
        if wire.magic.get() != HELLO_MAGIC {
            return Err(HelloError::BadMagic {
                found: wire.magic.get(),
            });
        }
        if wire.version.get() != HELLO_VERSION {
            return Err(HelloError::BadVersion {
                found: wire.version.get(),
            });
        }
        if frame.channel != wire.shard.get() {
            return Err(HelloError::ChannelMismatch {
                channel: frame.channel,
                shard: wire.shard.get(),
            });
        }
        Ok(Hello {
            cluster_id: wire.cluster_id.get(),
            node_id: NodeId(wire.node_id.get()),
            shard: wire.shard.get(),
            shard_count: wire.shard_count.get(),
        })
    }
}

/// This node as its hellos present it, and the peers it accepts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// [`ClusterConfig::cluster_id`].
    pub cluster_id: u64,
    /// This node.
    pub node_id: NodeId,
    /// Shards this node runs.
    pub shard_count: u16,
    /// The other nodes of the cluster.
    pub peers: Vec<NodeId>,
}

impl Identity {
    /// This node of `config`, running `shard_count` shards.
    pub fn new(config: &ClusterConfig, shard_count: u16) -> Identity {
        assert!(shard_count > 0, "a node runs at least one shard");
        Identity {
            cluster_id: config.cluster_id(),
            node_id: config.node_id,
            shard_count,
            peers: config.others().map(|peer| peer.id).collect(),
        }
    }

    /// The hello of this node's `shard`.
    pub fn hello(&self, shard: u16) -> Hello {
        assert!(
            shard < self.shard_count,
            "shard {shard} of {}",
            self.shard_count
        );
        Hello {
            cluster_id: self.cluster_id,
            node_id: self.node_id,
            shard,
            shard_count: self.shard_count,
        }
    }

    /// The accepting side's checks: our cluster, a peer of ours, our shard count, a shard
    /// we run.
    pub fn check_inbound(&self, hello: &Hello) -> Result<(), HelloError> {
        if hello.cluster_id != self.cluster_id {
            return Err(HelloError::OtherCluster {
                theirs: hello.cluster_id,
                ours: self.cluster_id,
            });
        }
        if hello.node_id == self.node_id {
            return Err(HelloError::OwnNode);
        }
        if !self.peers.contains(&hello.node_id) {
            return Err(HelloError::UnknownNode {
                node_id: hello.node_id,
            });
        }
        if hello.shard_count != self.shard_count {
            return Err(HelloError::ShardCount {
                theirs: hello.shard_count,
                ours: self.shard_count,
            });
        }
        if hello.shard >= self.shard_count {
            return Err(HelloError::ShardOutOfRange {
                shard: hello.shard,
                shard_count: self.shard_count,
            });
        }
        Ok(())
    }

    /// The connecting side's checks of the answer: the inbound checks, and that it came
    /// from the node and shard connected to.
    pub fn check_reply(&self, hello: &Hello, peer: NodeId, shard: u16) -> Result<(), HelloError> {
        self.check_inbound(hello)?;
        if hello.node_id != peer {
            return Err(HelloError::UnexpectedNode {
                expected: peer,
                found: hello.node_id,
            });
        }
        if hello.shard != shard {
            return Err(HelloError::UnexpectedShard {
                expected: shard,
                found: hello.shard,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use sluice_core::frame::decode_frame;

    use super::*;
    use crate::cluster::config::parse_peers;

    fn identity(node_id: u64, peers: &str, shard_count: u16) -> Identity {
        let peers = parse_peers(peers).unwrap();
        let own = peers.iter().find(|peer| peer.id.0 == node_id).unwrap();
        let config = ClusterConfig::new(NodeId(node_id), own.address, peers.clone()).unwrap();
        Identity::new(&config, shard_count)
    }

    /// Encodes `hello`, decodes it back and checks it as `receiver` would on accepting.
    fn check(hello: &Hello, receiver: &Identity) -> Result<Hello, HelloError> {
        let bytes = hello.encode();
        let frame = decode_frame(&bytes, HELLO_BYTES as u32).expect("a hello is a frame");
        let decoded = Hello::decode(&frame)?;
        receiver.check_inbound(&decoded)?;
        Ok(decoded)
    }

    const PEERS: &str = "1=127.0.0.1:7001,2=127.0.0.1:7002,3=127.0.0.1:7003";

    #[test]
    fn a_peer_of_the_same_cluster_is_accepted_both_ways() {
        let one = identity(1, PEERS, 4);
        let two = identity(2, PEERS, 4);
        let hello = one.hello(3);
        assert_eq!(check(&hello, &two), Ok(hello));
        let reply = two.hello(3);
        assert_eq!(one.check_reply(&reply, NodeId(2), 3), Ok(()));
        assert_eq!(
            one.check_reply(&reply, NodeId(3), 3),
            Err(HelloError::UnexpectedNode {
                expected: NodeId(3),
                found: NodeId(2)
            })
        );
        assert_eq!(
            one.check_reply(&reply, NodeId(2), 2),
            Err(HelloError::UnexpectedShard {
                expected: 2,
                found: 3
            })
        );
    }

    #[test]
    fn strangers_are_refused_with_the_reason() {
        let two = identity(2, PEERS, 4);
        let other_cluster = identity(1, "1=127.0.0.1:7001,2=127.0.0.1:7002", 4);
        assert!(matches!(
            check(&other_cluster.hello(0), &two),
            Err(HelloError::OtherCluster { .. })
        ));
        assert_eq!(check(&two.hello(0), &two), Err(HelloError::OwnNode));
        assert_eq!(
            check(&identity(1, PEERS, 2).hello(0), &two),
            Err(HelloError::ShardCount { theirs: 2, ours: 4 })
        );
        let mut beyond = identity(1, PEERS, 4).hello(0);
        beyond.shard = 4;
        assert_eq!(
            check(&beyond, &two),
            Err(HelloError::ShardOutOfRange {
                shard: 4,
                shard_count: 4
            })
        );
        let mut stranger = identity(1, PEERS, 4).hello(0);
        stranger.node_id = NodeId(9);
        assert_eq!(
            check(&stranger, &two),
            Err(HelloError::UnknownNode { node_id: NodeId(9) })
        );
    }

    #[test]
    fn malformed_hellos_are_typed_errors() {
        let hello = identity(1, PEERS, 4).hello(1);
        let mut bytes = hello.encode();
        let frame = decode_frame(&bytes, 64).unwrap();
        let wrong_kind = FrameView { kind: 5, ..frame };
        assert_eq!(
            Hello::decode(&wrong_kind),
            Err(HelloError::NotHello { kind: 5 })
        );
        let short = FrameView {
            payload: &frame.payload[..27],
            ..frame
        };
        assert_eq!(
            Hello::decode(&short),
            Err(HelloError::BadLength { payload_bytes: 27 })
        );
        let wrong_channel = FrameView {
            channel: 2,
            ..frame
        };
        assert_eq!(
            Hello::decode(&wrong_channel),
            Err(HelloError::ChannelMismatch {
                channel: 2,
                shard: 1
            })
        );
        bytes[16] ^= 1;
        let mut payload = bytes[16..].to_vec();
        let magic = Hello::decode(&FrameView {
            channel: 1,
            kind: KIND_HELLO,
            payload: &payload,
        });
        assert!(
            matches!(magic, Err(HelloError::BadMagic { .. })),
            "{magic:?}"
        );
        payload[0] ^= 1;
        payload[4] = 2;
        let version = Hello::decode(&FrameView {
            channel: 1,
            kind: KIND_HELLO,
            payload: &payload,
        });
        assert_eq!(version, Err(HelloError::BadVersion { found: 2 }));
    }
}
