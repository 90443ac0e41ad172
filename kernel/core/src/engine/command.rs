//! Commands: the log records the engine's durable state is folded from.
//!
//! Every durable change is one record: its attributes hold a kind byte and the command's
//! fields; a send's payload holds the message body. The timestamp of the record is the
//! time the command was issued (the leader's clock), and applying uses that timestamp,
//! never the current time, so every replay and every replica computes the same state.

use super::codec::{CodecError, Reader, Writer};
use super::types::{
    FifoScope, GroupId, GroupStart, MessageId, QueueConfig, QueueId, QueueMode, RetryPolicy,
    TagFilter, TagMatch,
};
use crate::limits::{
    ADMIN_SECRET_BYTES_MAX, COMMIT_GROUP_BYTES_MAX, ENGINE_TAGS_PER_MESSAGE_CEILING,
    OFFSETS_PER_COMMIT_MAX, OFFSET_METADATA_BYTES_MAX, TENANT_RECORD_BYTES_MAX,
};

/// Fields of a send record besides body and user attributes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SendMeta {
    pub queue: QueueId,
    /// 0 when the message is available at once.
    pub deliver_at_ms: u64,
    pub fifo_group: Option<String>,
    pub tags: Vec<String>,
    /// xxh3 of the dedup id; 0 when none.
    pub dedup_hash: u64,
    /// A transactional half message (`Delay::Half`): held until its transaction ends;
    /// `deliver_at_ms` is its first check.
    pub half: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    CreateQueue {
        queue: QueueId,
        tenant: String,
        name: String,
        config: QueueConfig,
        /// Opaque adapter fields (a description), bounded by `QUEUE_META_BYTES_MAX`.
        meta: Vec<u8>,
    },
    DeleteQueue {
        queue: QueueId,
    },
    CreateGroup {
        queue: QueueId,
        group: GroupId,
        name: String,
        start: GroupStart,
    },
    DeleteGroup {
        queue: QueueId,
        group: GroupId,
    },
    SetFilter {
        queue: QueueId,
        group: GroupId,
        filter: TagFilter,
    },
    /// The body and user attributes travel beside the command (payload, trailing bytes).
    Send(SendMeta),
    /// A delayed or scheduled message becomes available (or a half message's transaction
    /// is committed).
    Release {
        queue: QueueId,
        message: MessageId,
    },
    Cancel {
        queue: QueueId,
        message: MessageId,
    },
    /// Retention: the queue's messages below `below_seq` are gone. The serving leader
    /// picks the cut by its queue time; every replica applies the same one.
    Trim {
        queue: QueueId,
        below_seq: u64,
    },
    Ack {
        queue: QueueId,
        group: GroupId,
        seqs: Vec<u64>,
    },
    /// Failed deliveries: explicit fails and expired visibility.
    Nack {
        queue: QueueId,
        group: GroupId,
        seqs: Vec<u64>,
    },
    DeadAck {
        queue: QueueId,
        group: GroupId,
        seqs: Vec<u64>,
    },
    /// Every dead letter of the group goes back to the group's main lane.
    Redrive {
        queue: QueueId,
        group: GroupId,
    },
    /// The engine started: a new boot epoch, so handles from earlier boots are stale.
    Boot,
    /// A queue's opaque adapter fields are replaced (tags an adapter changes after the
    /// create), bounded by `QUEUE_META_BYTES_MAX` like the create's.
    SetQueueMeta {
        queue: QueueId,
        meta: Vec<u8>,
    },
    /// Raft's empty entry at the start of a leader's term; the state ignores it.
    RaftNoop,
    /// A Raft membership change; the record's payload is the encoded `ConfChange`
    /// (`ConfChangeV2` when `v2`). The state ignores it; the replica applies it.
    Membership {
        v2: bool,
    },
    /// Adds or replaces a tenant (partition 0): `record` is the node layer's serialized
    /// tenant, opaque to the engine, at most `TENANT_RECORD_BYTES_MAX` bytes.
    PutTenant {
        name: String,
        record: Vec<u8>,
    },
    /// Removes a tenant (partition 0).
    DeleteTenant {
        name: String,
    },
    /// The node's admin secret (partition 0), opaque to the engine, at most
    /// `ADMIN_SECRET_BYTES_MAX` bytes. Set once: the first applied wins, later ones are
    /// ignored, so every replica keeps the same.
    SetAdminSecret {
        secret: Vec<u8>,
    },
    /// A consumer group's committed offsets (a Kafka OffsetCommit), on the partition the
    /// group's key hashes to: each a queue, a partition of it, the next position to
    /// consume there and the client's metadata string. A later commit of the same queue
    /// and partition replaces the earlier. Bounded by `COMMIT_GROUP_BYTES_MAX`,
    /// `OFFSETS_PER_COMMIT_MAX` and `OFFSET_METADATA_BYTES_MAX`.
    CommitOffsets {
        group: String,
        offsets: Vec<CommittedOffset>,
    },
    /// A queue's dead-letter policy: after `max_consume_count` failures (`None`: never) a
    /// message leaves the group's main lane, for the group's dead letters or, with
    /// `target`, for that queue of the same tenant (on the same partition).
    SetDeadLetter {
        queue: QueueId,
        max_consume_count: Option<u16>,
        target: Option<QueueId>,
    },
    /// The group's move task starts on this partition (or restarts): its messages go to
    /// queue `to`, at most `per_second` a second (0: a batch every pass).
    StartMove {
        queue: QueueId,
        group: GroupId,
        to: QueueId,
        per_second: u32,
    },
    /// The group's move task ends on this partition (cancelled, or done).
    StopMove {
        queue: QueueId,
        group: GroupId,
    },
    /// A move task's batch: the group's messages `seqs` are done there and appended to
    /// queue `to` on this partition.
    Move {
        queue: QueueId,
        group: GroupId,
        to: QueueId,
        seqs: Vec<u64>,
    },
    /// The queue spreads over more partitions from now on (`QueueConfig::partitions`; a
    /// Kafka CreatePartitions).
    SetPartitions {
        queue: QueueId,
        partitions: u16,
    },
    /// The leader asks the producer about a half message whose transaction is still open:
    /// one more check counted, the next one due at `next_at_ms`.
    Check {
        queue: QueueId,
        message: MessageId,
        next_at_ms: u64,
    },
    /// The group's messages `seqs` were handed out (on its dead-letter lane when
    /// `dead_letter`) since the leader's last such record: for message traces only; the
    /// state ignores it.
    Delivered {
        queue: QueueId,
        group: GroupId,
        dead_letter: bool,
        seqs: Vec<u64>,
    },
}

/// One committed offset: queue, partition, next position to consume, metadata.
pub type CommittedOffset = (QueueId, u32, u64, String);

const KIND_CREATE_QUEUE: u8 = 1;
const KIND_DELETE_QUEUE: u8 = 2;
const KIND_CREATE_GROUP: u8 = 3;
const KIND_DELETE_GROUP: u8 = 4;
const KIND_SET_FILTER: u8 = 5;
const KIND_SEND: u8 = 6;
const KIND_RELEASE: u8 = 7;
const KIND_CANCEL: u8 = 8;
const KIND_ACK: u8 = 9;
const KIND_NACK: u8 = 10;
const KIND_DEAD_ACK: u8 = 11;
const KIND_REDRIVE: u8 = 12;
const KIND_BOOT: u8 = 13;
const KIND_SET_QUEUE_META: u8 = 14;
const KIND_RAFT_NOOP: u8 = 15;
const KIND_MEMBERSHIP: u8 = 16;
const KIND_PUT_TENANT: u8 = 17;
const KIND_DELETE_TENANT: u8 = 18;
const KIND_SET_ADMIN_SECRET: u8 = 19;
const KIND_TRIM: u8 = 20;
const KIND_COMMIT_OFFSETS: u8 = 21;
const KIND_SET_DEAD_LETTER: u8 = 22;
const KIND_START_MOVE: u8 = 23;
const KIND_STOP_MOVE: u8 = 24;
const KIND_MOVE: u8 = 25;
const KIND_SET_PARTITIONS: u8 = 26;
/// A send of a transactional half message: the fields of [`KIND_SEND`].
const KIND_SEND_HALF: u8 = 27;
const KIND_CHECK: u8 = 28;
const KIND_DELIVERED: u8 = 29;

/// The most sequence numbers one ack-like record lists.
const SEQS_MAX: usize = 64 * 1024;

impl Command {
    /// Encodes the command; for a send, `user_attributes` follow the fields.
    pub fn encode(&self, user_attributes: &[u8]) -> Vec<u8> {
        let mut w = Writer::default();
        match self {
            Command::CreateQueue {
                queue,
                tenant,
                name,
                config,
                meta,
            } => {
                w.u8(KIND_CREATE_QUEUE).u32(queue.0).str(tenant).str(name);
                encode_config(&mut w, config);
                w.bytes(meta);
            }
            Command::DeleteQueue { queue } => {
                w.u8(KIND_DELETE_QUEUE).u32(queue.0);
            }
            Command::CreateGroup {
                queue,
                group,
                name,
                start,
            } => {
                let start = match start {
                    GroupStart::Oldest => 0,
                    GroupStart::Latest => 1,
                };
                w.u8(KIND_CREATE_GROUP)
                    .u32(queue.0)
                    .u32(group.0)
                    .str(name)
                    .u8(start);
            }
            Command::DeleteGroup { queue, group } => {
                w.u8(KIND_DELETE_GROUP).u32(queue.0).u32(group.0);
            }
            Command::SetFilter {
                queue,
                group,
                filter,
            } => {
                w.u8(KIND_SET_FILTER).u32(queue.0).u32(group.0);
                encode_filter(&mut w, filter);
            }
            Command::Send(meta) => {
                w.u8(if meta.half { KIND_SEND_HALF } else { KIND_SEND })
                    .u32(meta.queue.0)
                    .u64(meta.deliver_at_ms)
                    .u64(meta.dedup_hash);
                match &meta.fifo_group {
                    None => w.u8(0),
                    Some(group) => w.u8(1).str(group),
                };
                w.u32(u32::try_from(meta.tags.len()).expect("bounded"));
                for tag in &meta.tags {
                    w.str(tag);
                }
                w.bytes(user_attributes);
            }
            Command::Release { queue, message } => {
                w.u8(KIND_RELEASE).u32(queue.0).u64(message.0);
            }
            Command::Cancel { queue, message } => {
                w.u8(KIND_CANCEL).u32(queue.0).u64(message.0);
            }
            Command::Trim { queue, below_seq } => {
                w.u8(KIND_TRIM).u32(queue.0).u64(*below_seq);
            }
            Command::Ack { queue, group, seqs } => {
                encode_seqs(&mut w, KIND_ACK, *queue, *group, seqs)
            }
            Command::Nack { queue, group, seqs } => {
                encode_seqs(&mut w, KIND_NACK, *queue, *group, seqs)
            }
            Command::DeadAck { queue, group, seqs } => {
                encode_seqs(&mut w, KIND_DEAD_ACK, *queue, *group, seqs)
            }
            Command::Redrive { queue, group } => {
                w.u8(KIND_REDRIVE).u32(queue.0).u32(group.0);
            }
            Command::Boot => {
                w.u8(KIND_BOOT);
            }
            Command::SetQueueMeta { queue, meta } => {
                w.u8(KIND_SET_QUEUE_META).u32(queue.0).bytes(meta);
            }
            Command::RaftNoop => {
                w.u8(KIND_RAFT_NOOP);
            }
            Command::Membership { v2 } => {
                w.u8(KIND_MEMBERSHIP).u8(u8::from(*v2));
            }
            Command::PutTenant { name, record } => {
                w.u8(KIND_PUT_TENANT).str(name).bytes(record);
            }
            Command::DeleteTenant { name } => {
                w.u8(KIND_DELETE_TENANT).str(name);
            }
            Command::SetAdminSecret { secret } => {
                w.u8(KIND_SET_ADMIN_SECRET).bytes(secret);
            }
            Command::CommitOffsets { group, offsets } => {
                assert!(
                    offsets.len() <= OFFSETS_PER_COMMIT_MAX,
                    "commits are bounded"
                );
                w.u8(KIND_COMMIT_OFFSETS)
                    .str(group)
                    .u32(u32::try_from(offsets.len()).expect("bounded"));
                for (queue, partition, offset, metadata) in offsets {
                    w.u32(queue.0).u32(*partition).u64(*offset).str(metadata);
                }
            }
            Command::SetDeadLetter {
                queue,
                max_consume_count,
                target,
            } => {
                // 0 is no count (a count of 0 is refused); a flag byte marks a target.
                w.u8(KIND_SET_DEAD_LETTER)
                    .u32(queue.0)
                    .u16(max_consume_count.unwrap_or(0))
                    .u8(u8::from(target.is_some()))
                    .u32(target.map_or(0, |t| t.0));
            }
            Command::StartMove {
                queue,
                group,
                to,
                per_second,
            } => {
                w.u8(KIND_START_MOVE)
                    .u32(queue.0)
                    .u32(group.0)
                    .u32(to.0)
                    .u32(*per_second);
            }
            Command::StopMove { queue, group } => {
                w.u8(KIND_STOP_MOVE).u32(queue.0).u32(group.0);
            }
            Command::SetPartitions { queue, partitions } => {
                w.u8(KIND_SET_PARTITIONS).u32(queue.0).u16(*partitions);
            }
            Command::Delivered {
                queue,
                group,
                dead_letter,
                seqs,
            } => {
                encode_seqs(&mut w, KIND_DELIVERED, *queue, *group, seqs);
                w.u8(u8::from(*dead_letter));
            }
            Command::Check {
                queue,
                message,
                next_at_ms,
            } => {
                w.u8(KIND_CHECK)
                    .u32(queue.0)
                    .u64(message.0)
                    .u64(*next_at_ms);
            }
            Command::Move {
                queue,
                group,
                to,
                seqs,
            } => {
                assert!(seqs.len() <= SEQS_MAX, "move records are bounded");
                w.u8(KIND_MOVE)
                    .u32(queue.0)
                    .u32(group.0)
                    .u32(to.0)
                    .u32(u32::try_from(seqs.len()).expect("bounded"));
                for seq in seqs {
                    w.u64(*seq);
                }
            }
        }
        w.bytes
    }

    /// Decodes a record's attributes; returns the command and, for a send, the user
    /// attributes.
    pub fn decode(bytes: &[u8]) -> Result<(Command, &[u8]), CodecError> {
        let mut r = Reader::new(bytes);
        let kind = r.u8()?;
        let mut user_attributes: &[u8] = &[];
        let command = match kind {
            KIND_CREATE_QUEUE => decode_create_queue(&mut r)?,
            KIND_DELETE_QUEUE => Command::DeleteQueue {
                queue: QueueId(r.u32()?),
            },
            KIND_CREATE_GROUP => decode_create_group(&mut r)?,
            KIND_DELETE_GROUP => Command::DeleteGroup {
                queue: QueueId(r.u32()?),
                group: GroupId(r.u32()?),
            },
            KIND_SET_FILTER => {
                let queue = QueueId(r.u32()?);
                let group = GroupId(r.u32()?);
                Command::SetFilter {
                    queue,
                    group,
                    filter: decode_filter(&mut r)?,
                }
            }
            KIND_SEND | KIND_SEND_HALF => {
                let (mut meta, attributes) = decode_send(&mut r)?;
                meta.half = kind == KIND_SEND_HALF;
                user_attributes = attributes;
                Command::Send(meta)
            }
            KIND_DELIVERED => {
                let (queue, group, seqs) = decode_seqs(&mut r)?;
                let dead_letter = match r.u8()? {
                    0 => false,
                    1 => true,
                    _ => return Err(invalid(&r)),
                };
                Command::Delivered {
                    queue,
                    group,
                    dead_letter,
                    seqs,
                }
            }
            KIND_CHECK => Command::Check {
                queue: QueueId(r.u32()?),
                message: MessageId(r.u64()?),
                next_at_ms: r.u64()?,
            },
            KIND_RELEASE => Command::Release {
                queue: QueueId(r.u32()?),
                message: MessageId(r.u64()?),
            },
            KIND_CANCEL => Command::Cancel {
                queue: QueueId(r.u32()?),
                message: MessageId(r.u64()?),
            },
            KIND_TRIM => Command::Trim {
                queue: QueueId(r.u32()?),
                below_seq: r.u64()?,
            },
            KIND_ACK | KIND_NACK | KIND_DEAD_ACK => {
                let (queue, group, seqs) = decode_seqs(&mut r)?;
                match kind {
                    KIND_ACK => Command::Ack { queue, group, seqs },
                    KIND_NACK => Command::Nack { queue, group, seqs },
                    _ => Command::DeadAck { queue, group, seqs },
                }
            }
            KIND_REDRIVE => Command::Redrive {
                queue: QueueId(r.u32()?),
                group: GroupId(r.u32()?),
            },
            KIND_BOOT => Command::Boot,
            KIND_RAFT_NOOP => Command::RaftNoop,
            KIND_MEMBERSHIP => Command::Membership { v2: r.u8()? != 0 },
            KIND_PUT_TENANT => Command::PutTenant {
                name: r.str()?.to_string(),
                record: bounded_bytes(&mut r, TENANT_RECORD_BYTES_MAX)?,
            },
            KIND_DELETE_TENANT => Command::DeleteTenant {
                name: r.str()?.to_string(),
            },
            KIND_SET_ADMIN_SECRET => Command::SetAdminSecret {
                secret: bounded_bytes(&mut r, ADMIN_SECRET_BYTES_MAX)?,
            },
            KIND_COMMIT_OFFSETS => decode_commit_offsets(&mut r)?,
            KIND_SET_QUEUE_META => Command::SetQueueMeta {
                queue: QueueId(r.u32()?),
                meta: r.bytes()?.to_vec(),
            },
            KIND_START_MOVE => Command::StartMove {
                queue: QueueId(r.u32()?),
                group: GroupId(r.u32()?),
                to: QueueId(r.u32()?),
                per_second: r.u32()?,
            },
            KIND_MOVE => {
                let queue = QueueId(r.u32()?);
                let group = GroupId(r.u32()?);
                let to = QueueId(r.u32()?);
                let count = r.count(SEQS_MAX)?;
                let mut seqs = Vec::with_capacity(count);
                for _ in 0..count {
                    seqs.push(r.u64()?);
                }
                Command::Move {
                    queue,
                    group,
                    to,
                    seqs,
                }
            }
            KIND_SET_PARTITIONS => Command::SetPartitions {
                queue: QueueId(r.u32()?),
                partitions: r.u16()?,
            },
            KIND_STOP_MOVE => Command::StopMove {
                queue: QueueId(r.u32()?),
                group: GroupId(r.u32()?),
            },
            KIND_SET_DEAD_LETTER => {
                let queue = QueueId(r.u32()?);
                let max_consume_count = Some(r.u16()?).filter(|n| *n != 0);
                let has_target = match r.u8()? {
                    0 => false,
                    1 => true,
                    _ => return Err(invalid(&r)),
                };
                let target = QueueId(r.u32()?);
                Command::SetDeadLetter {
                    queue,
                    max_consume_count,
                    target: has_target.then_some(target),
                }
            }
            _ => return Err(invalid(&r)),
        };
        if !r.is_empty() {
            return Err(invalid(&r));
        }
        Ok((command, user_attributes))
    }
}

fn invalid(r: &Reader<'_>) -> CodecError {
    CodecError {
        position: r.position(),
    }
}

/// A length-prefixed byte string of at most `max` bytes.
fn bounded_bytes(r: &mut Reader<'_>, max: usize) -> Result<Vec<u8>, CodecError> {
    let position = r.position();
    let bytes = r.bytes()?;
    if bytes.len() > max {
        return Err(CodecError { position });
    }
    Ok(bytes.to_vec())
}

fn decode_commit_offsets(r: &mut Reader<'_>) -> Result<Command, CodecError> {
    let position = r.position();
    let group = r.str()?.to_string();
    if group.len() > COMMIT_GROUP_BYTES_MAX {
        return Err(CodecError { position });
    }
    let count = r.count(OFFSETS_PER_COMMIT_MAX)?;
    let mut offsets = Vec::with_capacity(count);
    for _ in 0..count {
        let queue = QueueId(r.u32()?);
        let partition = r.u32()?;
        let offset = r.u64()?;
        let position = r.position();
        let metadata = r.str()?;
        if metadata.len() > OFFSET_METADATA_BYTES_MAX {
            return Err(CodecError { position });
        }
        offsets.push((queue, partition, offset, metadata.to_string()));
    }
    Ok(Command::CommitOffsets { group, offsets })
}

fn encode_seqs(w: &mut Writer, kind: u8, queue: QueueId, group: GroupId, seqs: &[u64]) {
    assert!(seqs.len() <= SEQS_MAX, "ack records are bounded");
    w.u8(kind)
        .u32(queue.0)
        .u32(group.0)
        .u32(u32::try_from(seqs.len()).expect("bounded"));
    for seq in seqs {
        w.u64(*seq);
    }
}

fn decode_create_queue(r: &mut Reader<'_>) -> Result<Command, CodecError> {
    let queue = QueueId(r.u32()?);
    let tenant = r.str()?.to_string();
    let name = r.str()?.to_string();
    let config = decode_config(r)?;
    let meta = r.bytes()?.to_vec();
    Ok(Command::CreateQueue {
        queue,
        tenant,
        name,
        config,
        meta,
    })
}

fn decode_create_group(r: &mut Reader<'_>) -> Result<Command, CodecError> {
    let queue = QueueId(r.u32()?);
    let group = GroupId(r.u32()?);
    let name = r.str()?.to_string();
    let start = match r.u8()? {
        0 => GroupStart::Oldest,
        1 => GroupStart::Latest,
        _ => return Err(invalid(r)),
    };
    Ok(Command::CreateGroup {
        queue,
        group,
        name,
        start,
    })
}

/// A send record's fields and the user attributes that follow them.
fn decode_send<'a>(r: &mut Reader<'a>) -> Result<(SendMeta, &'a [u8]), CodecError> {
    let queue = QueueId(r.u32()?);
    let deliver_at_ms = r.u64()?;
    let dedup_hash = r.u64()?;
    let fifo_group = match r.u8()? {
        0 => None,
        1 => Some(r.str()?.to_string()),
        _ => return Err(invalid(r)),
    };
    let tag_count = r.count(ENGINE_TAGS_PER_MESSAGE_CEILING)?;
    let mut tags = Vec::with_capacity(tag_count);
    for _ in 0..tag_count {
        tags.push(r.str()?.to_string());
    }
    let user_attributes = r.bytes()?;
    let meta = SendMeta {
        queue,
        deliver_at_ms,
        fifo_group,
        tags,
        dedup_hash,
        half: false,
    };
    Ok((meta, user_attributes))
}

/// The fields of an ack-like record after its kind (see [`encode_seqs`]).
fn decode_seqs(r: &mut Reader<'_>) -> Result<(QueueId, GroupId, Vec<u64>), CodecError> {
    let queue = QueueId(r.u32()?);
    let group = GroupId(r.u32()?);
    let count = r.count(SEQS_MAX)?;
    let mut seqs = Vec::with_capacity(count);
    for _ in 0..count {
        seqs.push(r.u64()?);
    }
    Ok((queue, group, seqs))
}

pub(crate) fn encode_config(w: &mut Writer, config: &QueueConfig) {
    let mode = match config.mode {
        QueueMode::Normal => 0,
        QueueMode::Fifo(FifoScope::Queue) => 1,
        QueueMode::Fifo(FifoScope::MessageGroup) => 2,
    };
    let retry = match config.retry {
        RetryPolicy::Immediate => 0,
        RetryPolicy::Backoff => 1,
    };
    // A partition count (0 is "every partition") follows only when the mode byte says
    // so, which keeps configs written before the count existed readable.
    let counted = if config.partitions == 0 {
        0
    } else {
        PARTITIONS_FOLLOW
    };
    w.u8(mode | counted)
        .u64(config.retention_ms)
        .u16(config.max_consume_count.unwrap_or(0))
        .u8(retry);
    w.u64(config.dedup_window_ms);
    if config.partitions != 0 {
        w.u16(config.partitions);
    }
}

/// The flag in a config's mode byte: a u16 partition count ends the config.
const PARTITIONS_FOLLOW: u8 = 0x80;

pub(crate) fn decode_config(r: &mut Reader<'_>) -> Result<QueueConfig, CodecError> {
    let mode_byte = r.u8()?;
    let mode = match mode_byte & !PARTITIONS_FOLLOW {
        0 => QueueMode::Normal,
        1 => QueueMode::Fifo(FifoScope::Queue),
        2 => QueueMode::Fifo(FifoScope::MessageGroup),
        _ => return Err(invalid(r)),
    };
    let retention_ms = r.u64()?;
    let max_consume_count = match r.u16()? {
        0 => None,
        count => Some(count),
    };
    let retry = match r.u8()? {
        0 => RetryPolicy::Immediate,
        1 => RetryPolicy::Backoff,
        _ => return Err(invalid(r)),
    };
    let dedup_window_ms = r.u64()?;
    let partitions = if mode_byte & PARTITIONS_FOLLOW == 0 {
        0
    } else {
        match r.u16()? {
            0 => return Err(invalid(r)),
            count => count,
        }
    };
    Ok(QueueConfig {
        mode,
        retention_ms,
        max_consume_count,
        retry,
        dedup_window_ms,
        partitions,
    })
}

pub(crate) fn encode_filter(w: &mut Writer, filter: &TagFilter) {
    let mode = match filter.mode {
        TagMatch::Any => 0,
        TagMatch::All => 1,
    };
    w.u8(mode)
        .u32(u32::try_from(filter.tags.len()).expect("bounded"));
    for tag in &filter.tags {
        w.str(tag);
    }
}

pub(crate) fn decode_filter(r: &mut Reader<'_>) -> Result<TagFilter, CodecError> {
    let mode = match r.u8()? {
        0 => TagMatch::Any,
        1 => TagMatch::All,
        _ => return Err(invalid(r)),
    };
    let count = r.count(ENGINE_TAGS_PER_MESSAGE_CEILING)?;
    let mut tags = Vec::with_capacity(count);
    for _ in 0..count {
        tags.push(r.str()?.to_string());
    }
    Ok(TagFilter { tags, mode })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_config_carries_a_partition_count_only_when_it_has_one() {
        let every = QueueConfig {
            mode: QueueMode::Normal,
            retention_ms: 5,
            max_consume_count: None,
            retry: RetryPolicy::Immediate,
            dedup_window_ms: 7,
            partitions: 0,
        };
        // Without a count the bytes are those of a config written before counts existed
        // (mode, retention, max consume count, retry, dedup window).
        let mut w = Writer::default();
        encode_config(&mut w, &every);
        assert_eq!(w.bytes.len(), 1 + 8 + 2 + 1 + 8);
        assert_eq!(decode_config(&mut Reader::new(&w.bytes)), Ok(every));
        let three = QueueConfig {
            partitions: 3,
            ..every
        };
        let mut w = Writer::default();
        encode_config(&mut w, &three);
        assert_eq!(w.bytes.len(), 1 + 8 + 2 + 1 + 8 + 2);
        assert_eq!(decode_config(&mut Reader::new(&w.bytes)), Ok(three));
        // A count of 0 after the flag is no count at all: refused, not read as "every".
        let end = w.bytes.len();
        w.bytes[end - 2..].copy_from_slice(&0u16.to_le_bytes());
        assert!(decode_config(&mut Reader::new(&w.bytes)).is_err());
        assert_eq!(three.partitions_on(8), 3);
        assert_eq!(three.partitions_on(2), 2);
        assert_eq!(every.partitions_on(8), 8);
    }

    #[test]
    fn every_command_roundtrips() {
        let config = QueueConfig {
            mode: QueueMode::Fifo(FifoScope::MessageGroup),
            retention_ms: 5,
            max_consume_count: Some(3),
            retry: RetryPolicy::Backoff,
            dedup_window_ms: 7,
            partitions: 3,
        };
        let filter = TagFilter {
            tags: vec!["a".into(), "b".into()],
            mode: TagMatch::All,
        };
        let commands = vec![
            Command::CreateQueue {
                queue: QueueId(1),
                tenant: "t".into(),
                name: "q".into(),
                config,
                meta: b"{\"description\":\"d\"}".to_vec(),
            },
            Command::DeleteQueue { queue: QueueId(1) },
            Command::CreateGroup {
                queue: QueueId(1),
                group: GroupId(2),
                name: "g".into(),
                start: GroupStart::Latest,
            },
            Command::DeleteGroup {
                queue: QueueId(1),
                group: GroupId(2),
            },
            Command::SetFilter {
                queue: QueueId(1),
                group: GroupId(2),
                filter,
            },
            Command::Send(SendMeta {
                queue: QueueId(1),
                deliver_at_ms: 9,
                fifo_group: Some("fg".into()),
                tags: vec!["x".into()],
                dedup_hash: 11,
                half: false,
            }),
            Command::Send(SendMeta {
                queue: QueueId(1),
                deliver_at_ms: 6_009,
                fifo_group: None,
                tags: vec![],
                dedup_hash: 0,
                half: true,
            }),
            Command::Check {
                queue: QueueId(1),
                message: MessageId(5),
                next_at_ms: 66_009,
            },
            Command::Delivered {
                queue: QueueId(1),
                group: GroupId(2),
                dead_letter: true,
                seqs: vec![3, 8],
            },
            Command::Release {
                queue: QueueId(1),
                message: MessageId(4),
            },
            Command::Cancel {
                queue: QueueId(1),
                message: MessageId(4),
            },
            Command::Trim {
                queue: QueueId(1),
                below_seq: 7,
            },
            Command::Ack {
                queue: QueueId(1),
                group: GroupId(2),
                seqs: vec![1, 2],
            },
            Command::Nack {
                queue: QueueId(1),
                group: GroupId(2),
                seqs: vec![3],
            },
            Command::DeadAck {
                queue: QueueId(1),
                group: GroupId(2),
                seqs: vec![],
            },
            Command::Redrive {
                queue: QueueId(1),
                group: GroupId(2),
            },
            Command::Boot,
            Command::SetQueueMeta {
                queue: QueueId(1),
                meta: b"{\"tags\":[]}".to_vec(),
            },
            Command::SetDeadLetter {
                queue: QueueId(1),
                max_consume_count: Some(4),
                target: Some(QueueId(7)),
            },
            Command::SetDeadLetter {
                queue: QueueId(1),
                max_consume_count: None,
                target: None,
            },
            Command::StartMove {
                queue: QueueId(1),
                group: GroupId(2),
                to: QueueId(3),
                per_second: 50,
            },
            Command::StopMove {
                queue: QueueId(1),
                group: GroupId(2),
            },
            Command::Move {
                queue: QueueId(1),
                group: GroupId(2),
                to: QueueId(3),
                seqs: vec![4, 9],
            },
            Command::SetPartitions {
                queue: QueueId(1),
                partitions: 6,
            },
            Command::RaftNoop,
            Command::Membership { v2: true },
            Command::Membership { v2: false },
            Command::PutTenant {
                name: "acme".into(),
                record: b"opaque tenant".to_vec(),
            },
            Command::DeleteTenant {
                name: "acme".into(),
            },
            Command::SetAdminSecret {
                secret: b"opaque secret".to_vec(),
            },
            Command::CommitOffsets {
                group: "project/orders".into(),
                offsets: vec![
                    (QueueId(1), 0, 42, String::new()),
                    (QueueId(3), 7, u64::MAX, "meta".into()),
                ],
            },
            Command::CommitOffsets {
                group: "g".into(),
                offsets: vec![],
            },
        ];
        for command in commands {
            let bytes = command.encode(b"user");
            let (decoded, user) = Command::decode(&bytes).unwrap();
            assert_eq!(decoded, command);
            if matches!(command, Command::Send(_)) {
                assert_eq!(user, b"user");
            }
            for cut in 0..bytes.len() {
                assert!(Command::decode(&bytes[..cut]).is_err());
            }
        }
        assert!(Command::decode(&[99]).is_err());
    }

    #[test]
    fn oversized_tenant_and_secret_records_are_refused_on_decode() {
        // Goal: a forged record longer than the named limits never decodes (so it never
        // reaches the state), and decoding does not panic.
        let tenant = Command::PutTenant {
            name: "t".into(),
            record: vec![0; TENANT_RECORD_BYTES_MAX + 1],
        };
        assert!(Command::decode(&tenant.encode(&[])).is_err());
        let secret = Command::SetAdminSecret {
            secret: vec![0; ADMIN_SECRET_BYTES_MAX + 1],
        };
        assert!(Command::decode(&secret.encode(&[])).is_err());
        let metadata = Command::CommitOffsets {
            group: "g".into(),
            offsets: vec![(QueueId(1), 0, 1, "m".repeat(OFFSET_METADATA_BYTES_MAX + 1))],
        };
        assert!(Command::decode(&metadata.encode(&[])).is_err());
        let group = Command::CommitOffsets {
            group: "g".repeat(COMMIT_GROUP_BYTES_MAX + 1),
            offsets: vec![],
        };
        assert!(Command::decode(&group.encode(&[])).is_err());
    }
}
