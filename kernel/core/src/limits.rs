//! Named bounds for every buffer, batch and queue in the kernel (docs/style.md §4).
//!
//! Limits that an operator may tune are `Config` fields checked against these absolute
//! bounds at start-up; the constants here are the hard ceilings.

/// The largest encoded batch, header and records included.
pub const BATCH_BYTES_MAX: u32 = 4 << 20;
/// The most records one batch may hold.
pub const BATCH_RECORDS_MAX: u32 = 16 * 1024;
/// Direct I/O granularity: every write starts and ends on a multiple of this.
pub const BLOCK_BYTES: u64 = 4096;
/// The sector size a torn write is assumed to respect (ext4/NVMe guarantee).
pub const SECTOR_BYTES: u64 = 512;
/// Bounds of `LogConfig::segment_bytes_max`. Recovery reads the last segment whole, so
/// the ceiling also bounds start-up memory.
pub const SEGMENT_BYTES_MIN: u64 = 64 * 1024;
pub const SEGMENT_BYTES_CEILING: u64 = 1 << 30;
/// Bytes appended but not yet handed to storage; beyond it `append` answers `Busy`.
pub const STAGED_BYTES_MAX: u64 = 64 << 20;
/// The most segments one log may hold (bounds the segment table).
pub const SEGMENTS_MAX: usize = 1 << 20;
/// Bounds of `LogConfig::index_interval_bytes`.
pub const INDEX_INTERVAL_BYTES_MIN: u64 = 512;
pub const INDEX_INTERVAL_BYTES_MAX: u64 = 1 << 20;
/// The default of `LogConfig::cache_bytes_max`: recently written and read batches each
/// log (partition) keeps in memory, so receives of recent messages never read the disk.
pub const LOG_CACHE_BYTES_DEFAULT: u64 = 32 << 20;
/// The largest `LogConfig::cache_bytes_max` (per log).
pub const LOG_CACHE_BYTES_CEILING: u64 = 1 << 30;
/// The default of `LogConfig::recycle_segments_max`: segment files retention removed
/// that a log keeps for reuse by its next segments (docs/log.md D13).
pub const LOG_RECYCLE_SEGMENTS_DEFAULT: u32 = 2;
/// The largest `LogConfig::recycle_segments_max`.
pub const LOG_RECYCLE_SEGMENTS_CEILING: u32 = 64;
/// A read that misses the cache asks storage for at least this much (one block).
pub const LOG_READ_BYTES_MIN: u64 = BLOCK_BYTES;
/// A read that is still looking for its first record (the sparse index put it before
/// it) doubles what it asks storage for up to this.
pub const LOG_READ_BYTES_SKIP_MAX: u64 = 1 << 20;

const _: () = assert!(BLOCK_BYTES.is_multiple_of(SECTOR_BYTES));
const _: () = assert!((SNAPSHOT_WRITE_CHUNK_BYTES as u64).is_multiple_of(BLOCK_BYTES));
const _: () = assert!(SEGMENT_BYTES_MIN.is_multiple_of(BLOCK_BYTES));
const _: () = assert!(SEGMENT_BYTES_CEILING.is_multiple_of(BLOCK_BYTES));
const _: () = assert!((BATCH_BYTES_MAX as u64) < SEGMENT_BYTES_CEILING);
const _: () = assert!(STAGED_BYTES_MAX > BATCH_BYTES_MAX as u64);

// ---- Queue engine ceilings: `EngineLimits` fields are checked against these. ----

/// Tags one message may carry (DMS allows 3); the engine stores them inline.
pub const ENGINE_TAGS_PER_MESSAGE_CEILING: usize = 3;
/// Distinct tags one queue may have ever seen (tag ids are u16, 0 means none).
pub const ENGINE_TAGS_PER_QUEUE_MAX: usize = u16::MAX as usize - 1;
/// Messages one send or ack batch may hold.
pub const ENGINE_BATCH_MESSAGES_CEILING: u32 = 1024;
/// The longest delay or schedule horizon: one year.
pub const ENGINE_DELAY_MS_CEILING: u64 = 366 * 24 * 3600 * 1000;
/// Positions a receive's cursor may advance over before returning what it has.
pub const ENGINE_SCAN_STEPS_MAX: u32 = 4096;
/// Messages a FIFO group may park as ready-but-blocked behind locked message groups.
pub const ENGINE_READY_BLOCKED_MAX: usize = 16 * 1024;
/// Bytes of opaque adapter fields (a queue's description and tags) a queue may carry.
pub const QUEUE_META_BYTES_MAX: usize = 16 * 1024;
/// Bytes of one tenant's record (its credentials and quotas, opaque to the engine) that
/// partition 0 keeps (`Command::PutTenant`).
pub const TENANT_RECORD_BYTES_MAX: usize = 4 * 1024;
/// Highest queue quota a tenant may have (`EngineLimits::queues_per_tenant_max`, the
/// server's `queues_per_tenant_max`, an admin's quota). The DMS default ceiling is 1000;
/// the scale benchmark runs one tenant with 100,000 queues.
pub const QUEUES_PER_TENANT_CEILING: u32 = 1_000_000;
/// Deleted queues an engine remembers for readers of its directory changes
/// (`DirectoryJournal`); a reader that last read before the oldest one remembered reads
/// the whole directory again.
pub const DIRECTORY_DELETIONS_MAX: usize = 4096;
/// How often, at most, an engine's tick applies log retention (the pass walks every
/// queue for the oldest offset still needed: with 100,000 queues that walk is the idle
/// node's largest cost). A snapshot applies it at once.
pub const LOG_RETENTION_PASS_MS: u64 = 1_000;
/// Tenants one engine (partition 0) keeps.
pub const TENANTS_MAX: usize = 10_000;
/// Bytes of the node's admin secret record (opaque to the engine) partition 0 keeps
/// (`Command::SetAdminSecret`).
pub const ADMIN_SECRET_BYTES_MAX: usize = 1024;

// ---- Committed consumer offsets (`Command::CommitOffsets`, `engine/offsets.rs`). ----

/// How long a receive's answer is kept under its attempt key (SQS keeps a
/// `ReceiveRequestAttemptId` 5 minutes).
pub const RECEIVE_ATTEMPT_MS: u64 = 5 * 60 * 1000;
/// Attempt keys one consumer group's leader keeps at most; past it, the one expiring
/// first goes.
pub const RECEIVE_ATTEMPTS_PER_GROUP_MAX: usize = 1024;

/// Bytes of a group's key (the node layer's tenant and group id) an offset commit names.
pub const COMMIT_GROUP_BYTES_MAX: usize = 512;
/// Offsets one commit record carries.
pub const OFFSETS_PER_COMMIT_MAX: usize = 10_000;
/// Bytes of the metadata string kept with one committed offset (Kafka's default
/// `offset.metadata.max.bytes`).
pub const OFFSET_METADATA_BYTES_MAX: usize = 4096;
/// Bytes of one commit record's fields: within a record batch, so it is never the
/// reason a commit cannot be logged.
pub const COMMIT_RECORD_BYTES_MAX: usize = 1 << 20;
/// Groups with committed offsets one engine (partition) keeps.
pub const COMMITTED_GROUPS_MAX: usize = 10_000;
/// Committed offsets (queue and partition pairs) one group keeps on its partition.
pub const COMMITTED_OFFSETS_PER_GROUP_MAX: usize = 10_000;
/// Committed offsets one engine keeps over all its groups.
pub const COMMITTED_OFFSETS_MAX: usize = 1_000_000;
/// Bytes of committed-offset metadata one engine keeps over all its groups.
pub const COMMITTED_METADATA_BYTES_MAX: usize = 16 << 20;

const _: () = assert!(COMMIT_RECORD_BYTES_MAX < BATCH_BYTES_MAX as usize);
const _: () = assert!(COMMITTED_OFFSETS_PER_GROUP_MAX <= COMMITTED_OFFSETS_MAX);
const _: () = assert!(OFFSET_METADATA_BYTES_MAX < COMMIT_RECORD_BYTES_MAX);

// ---- Replication (`replica/`). ----

/// Bytes of recent, already applied Raft entries a replica keeps in memory beyond the
/// ones it must (unpersisted or unapplied), so a follower a little behind is served
/// without a disk read; none when the group has no other replica (`LogStore::trim`).
/// Counted with each entry's own size (`replica::entry::entry_bytes`).
pub const REPLICA_TAIL_BYTES_MAX: u64 = 32 << 20;
/// Bytes of older entries a leader keeps after reading them from its log for lagging
/// followers.
pub const REPLICA_FETCHED_BYTES_MAX: u64 = 16 << 20;
/// Bytes of entries one Raft append message carries (`max_size_per_msg`).
pub const REPLICA_MESSAGE_BYTES_MAX: u64 = 1 << 20;
/// Append messages in flight to one follower (`max_inflight_msgs`).
pub const REPLICA_INFLIGHT_MESSAGES_MAX: usize = 256;
/// Bytes of proposed but uncommitted entries a leader accepts (`max_uncommitted_size`);
/// beyond it a proposal is refused as busy.
pub const REPLICA_UNCOMMITTED_BYTES_MAX: u64 = 64 << 20;
/// Outbound Raft messages a replica queues for its host before it drops the oldest
/// (Raft tolerates lost messages).
pub const REPLICA_OUTBOX_MAX: usize = 4096;
/// Raft commits a replica may advance before it saves its commit index (a stale saved
/// commit is safe; it bounds how much a restart re-reads before applying).
pub const REPLICA_COMMIT_SAVE_EVERY: u64 = 1024;
/// Bytes of one Raft snapshot chunk (engine snapshot bytes or log records) a leader
/// hands out and a follower stages at once: at least one whole batch, well within a
/// cluster frame.
pub const REPLICA_SNAPSHOT_CHUNK_BYTES_MAX: u32 = 8 << 20;
/// Bytes of one write of an engine snapshot file (a multiple of `BLOCK_BYTES`): the
/// largest buffer a snapshot write allocates, and how much is copied between two chances
/// for the executor to run other work.
pub const SNAPSHOT_WRITE_CHUNK_BYTES: usize = 4 << 20;
/// Raft snapshot transfers a leader serves at once (one per lagging follower); beyond
/// it raft-rs is told the snapshot is temporarily unavailable and retries later.
pub const REPLICA_SNAPSHOT_TRANSFERS_MAX: usize = 4;
/// Raft ticks a leader keeps a transfer (and its pin on the log and the engine snapshot)
/// without a chunk request: then it drops it and reports the snapshot failed, so a
/// vanished follower cannot pin the log forever.
pub const REPLICA_SNAPSHOT_IDLE_TICKS_MAX: u32 = 100;
/// Raft ticks a follower waits for a requested chunk before it asks again.
pub const REPLICA_SNAPSHOT_CHUNK_WAIT_TICKS: u32 = 20;
/// Times a follower asks again for one chunk before it gives the install up (the leader
/// then sends a new snapshot).
pub const REPLICA_SNAPSHOT_CHUNK_RETRIES_MAX: u32 = 5;
// ---- Cluster transport: frames between nodes (`frame.rs`). ----

/// The largest payload one cluster frame may carry (the header is extra). A frame that
/// claims more is refused before any of its payload is buffered, so this also bounds
/// what one connection's decoder may hold.
pub const CLUSTER_FRAME_BYTES_MAX: u32 = 16 << 20;
/// Bytes a frame decoder offers for one socket read beyond what it already holds, until
/// a frame's header says it needs more (at most the frame's own size).
pub const CLUSTER_READ_CHUNK_BYTES: usize = 64 * 1024;

const _: () = assert!(CLUSTER_FRAME_BYTES_MAX as usize >= CLUSTER_READ_CHUNK_BYTES);
const _: () = assert!(CLUSTER_FRAME_BYTES_MAX > BATCH_BYTES_MAX);
// A chunk holds at least one whole batch and, with its header, fits one frame.
const _: () = assert!(REPLICA_SNAPSHOT_CHUNK_BYTES_MAX > BATCH_BYTES_MAX + 4096);
const _: () = assert!(REPLICA_SNAPSHOT_CHUNK_BYTES_MAX <= CLUSTER_FRAME_BYTES_MAX / 2);
const _: () = assert!((REPLICA_SNAPSHOT_CHUNK_BYTES_MAX as u64).is_multiple_of(BLOCK_BYTES));

/// Messages one move task (`engine::moves`) moves per partition per pass: one
/// `Move` record at most this long.
pub const MOVE_BATCH_MAX: u32 = 100;
/// How often the serving leader moves the next batch of an active move task.
pub const MOVE_INTERVAL_MS: u64 = 100;
/// How long a message picked for a move stays leased should its `Move` record fail
/// (it then comes back as an expired lease would).
pub const MOVE_LEASE_MS: u64 = 30_000;

/// Checks of open transactions a leader keeps for the adapter to take
/// (`Engine::take_transaction_checks`); past it a check is dropped, and the half message
/// is checked again an interval later.
pub const TRANSACTION_CHECKS_WAITING_MAX: usize = 4096;

/// Deliveries a leader notes between two ticks for message traces
/// (`Command::Delivered`); past it, deliveries go unrecorded until the next tick.
pub const TRACE_DELIVERIES_WAITING_MAX: usize = 16 * 1024;
/// Bytes of log a message trace reads past the message's own record at most
/// (`Engine::trace`); a trace that stops there says so.
pub const TRACE_SCAN_BYTES_MAX: u64 = 64 * 1024 * 1024;
