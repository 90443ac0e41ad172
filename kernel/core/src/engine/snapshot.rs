//! Snapshots of the engine's durable state.
//!
//! A snapshot holds everything the log's commands fold into (queues, message tables,
//! delayed messages, tag dictionaries, dedup windows, and per group: done ranges, failure
//! counts, back-off waits, dead letters, filter) and the log offset it covers. Leader-only
//! state (leases, cursor, ready set) is not in it, exactly as after a restart. Restore
//! then replays the log from that offset. The file ends with an xxh3 checksum of all that
//! precedes it; a snapshot that fails it is ignored in favour of an older one.

use std::collections::{BTreeMap, VecDeque};

use xxhash_rust::xxh3::xxh3_64;

use super::codec::{CodecError, Reader, Writer};
use super::command::{decode_config, decode_filter, encode_config, encode_filter};
use super::group::{DeadLetter, Group, Hold};
use super::moves::MoveTask;
use super::state::{
    new_queue, DelayedMessage, MessageMeta, MessageState, State, MESSAGE_BYTES_UNKNOWN,
};
use super::types::{GroupId, MessageId, QueueId};
use crate::limits::{
    ADMIN_SECRET_BYTES_MAX, COMMITTED_GROUPS_MAX, COMMITTED_OFFSETS_PER_GROUP_MAX,
    COMMIT_GROUP_BYTES_MAX, OFFSET_METADATA_BYTES_MAX, TENANTS_MAX, TENANT_RECORD_BYTES_MAX,
};

/// The current format: version 7 plus which held messages are transactional half
/// messages and their checks so far (`Command::Check`).
const SNAPSHOT_MAGIC: u64 = u64::from_le_bytes(*b"SLCSNAP8");
/// Version 6 plus each queue's dead-letter target (`Command::SetDeadLetter`) and the
/// groups' move tasks (`Command::StartMove`); still read, with no half messages.
const SNAPSHOT_MAGIC_V7: u64 = u64::from_le_bytes(*b"SLCSNAP7");
/// Version 5 plus the consumer groups' committed offsets (`Command::CommitOffsets`);
/// still read, with no dead-letter targets.
const SNAPSHOT_MAGIC_V6: u64 = u64::from_le_bytes(*b"SLCSNAP6");
/// Version 4 plus partition 0's tenants and admin secret; still read, with no committed
/// offsets.
const SNAPSHOT_MAGIC_V5: u64 = u64::from_le_bytes(*b"SLCSNAP5");
/// Version 3 plus each message's size (`MessageMeta::message_bytes`); still read, with
/// no tenants and no admin secret.
const SNAPSHOT_MAGIC_V4: u64 = u64::from_le_bytes(*b"SLCSNAP4");
/// The format before message sizes; still read, so that a node upgraded in place keeps
/// its snapshots (the log segments before them may be gone). Its messages get
/// `MESSAGE_BYTES_UNKNOWN`.
const SNAPSHOT_MAGIC_V3: u64 = u64::from_le_bytes(*b"SLCSNAP3");
/// Bound on any count read from a snapshot, against a forged length.
const COUNT_MAX: usize = 1 << 32;

pub const SNAPSHOT_PREFIX: &str = "snapshot-";

pub fn snapshot_name(applied_offset: u64) -> String {
    format!("{SNAPSHOT_PREFIX}{applied_offset:020}")
}

pub fn parse_snapshot_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix(SNAPSHOT_PREFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The snapshot formats this build reads, oldest first; it writes only the newest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Version {
    V3,
    V4,
    V5,
    V6,
    V7,
    V8,
}

/// Encodes the state; `capacity` is a guess of the size (the previous snapshot's), so
/// that a large state is not copied again each time the buffer doubles.
pub(crate) fn encode(state: &State, applied_offset: u64, capacity: usize) -> Vec<u8> {
    encode_version(state, applied_offset, Version::V8, capacity)
}

fn encode_version(
    state: &State,
    applied_offset: u64,
    version: Version,
    capacity: usize,
) -> Vec<u8> {
    let mut w = Writer {
        bytes: Vec::with_capacity(capacity),
    };
    let magic = match version {
        Version::V3 => SNAPSHOT_MAGIC_V3,
        Version::V4 => SNAPSHOT_MAGIC_V4,
        Version::V5 => SNAPSHOT_MAGIC_V5,
        Version::V6 => SNAPSHOT_MAGIC_V6,
        Version::V7 => SNAPSHOT_MAGIC_V7,
        Version::V8 => SNAPSHOT_MAGIC,
    };
    w.u64(magic)
        .u64(applied_offset)
        .u32(state.next_queue_id)
        .u32(state.next_group_id)
        .u32(state.boot_epoch);
    w.u32(u32::try_from(state.queues.len()).expect("bounded"));
    for q in state.queues.values() {
        w.u32(q.id.0).str(&q.tenant).str(&q.name);
        encode_config(&mut w, &q.config);
        w.u64(q.created_ms).bytes(&q.meta);
        // A queue whose message state was never allocated encodes as an empty one.
        let s = q.store.get();
        w.u64(s.base_seq).u64(s.sent_total);
        w.u32(u32::try_from(s.tag_names.len()).expect("bounded"));
        for tag in &s.tag_names {
            w.str(tag);
        }
        w.u64(s.messages.len() as u64);
        for meta in &s.messages {
            encode_meta(&mut w, meta, version);
        }
        w.u32(u32::try_from(s.delayed.len()).expect("bounded"));
        for delayed in s.delayed.values() {
            w.u64(delayed.deliver_at_ms);
            encode_meta(&mut w, &delayed.meta, version);
        }
        w.u32(u32::try_from(s.dedup_order.len()).expect("bounded"));
        for (expires_ms, hash) in &s.dedup_order {
            let message = s
                .dedup
                .get(hash)
                .filter(|(e, _)| e == expires_ms)
                .map_or(0, |(_, m)| m.0);
            w.u64(*expires_ms).u64(*hash).u64(message);
        }
        w.u32(u32::try_from(q.groups.len()).expect("bounded"));
        for g in q.groups.values() {
            encode_group(&mut w, g);
        }
    }
    if version >= Version::V5 {
        encode_tenants(&mut w, state);
    }
    if version >= Version::V6 {
        encode_committed(&mut w, state);
    }
    if version >= Version::V7 {
        encode_dead_letter_targets(&mut w, state);
        encode_moves(&mut w, state);
    }
    if version >= Version::V8 {
        encode_halves(&mut w, state);
    }
    let checksum = xxh3_64(&w.bytes);
    w.u64(checksum);
    w.bytes
}

fn encode_meta(w: &mut Writer, meta: &MessageMeta, version: Version) {
    w.u64(meta.message_id.0)
        .u64(meta.available_ms)
        .u32(meta.fifo_key);
    for tag in meta.tags {
        w.u16(tag);
    }
    if version != Version::V3 {
        w.u32(meta.message_bytes);
    }
}

/// Partition 0's tenants and admin secret (format 5).
fn encode_tenants(w: &mut Writer, state: &State) {
    w.u64(state.tenant_changes)
        .u32(u32::try_from(state.tenants.len()).expect("bounded"));
    for (name, record) in &state.tenants {
        w.str(name).bytes(record);
    }
    match &state.admin_secret {
        None => w.u8(0),
        Some(secret) => w.u8(1).bytes(secret),
    };
}

fn decode_tenants(r: &mut Reader<'_>, state: &mut State) -> Result<(), CodecError> {
    state.tenant_changes = r.u64()?;
    for _ in 0..r.count(TENANTS_MAX)? {
        let name = r.str()?.to_string();
        let record = r.bytes()?;
        if record.len() > TENANT_RECORD_BYTES_MAX {
            return Err(bad(r));
        }
        state.tenants.insert(name, record.to_vec());
    }
    state.admin_secret = match r.u8()? {
        0 => None,
        1 => {
            let secret = r.bytes()?;
            if secret.len() > ADMIN_SECRET_BYTES_MAX {
                return Err(bad(r));
            }
            Some(secret.to_vec())
        }
        _ => return Err(bad(r)),
    };
    Ok(())
}

/// The consumer groups' committed offsets (format 6).
fn encode_committed(w: &mut Writer, state: &State) {
    w.u32(u32::try_from(state.committed.group_count()).expect("bounded"));
    for (group, offsets) in state.committed.all() {
        w.str(group)
            .u32(u32::try_from(offsets.len()).expect("bounded"));
        for (queue, partition, offset, metadata) in &offsets {
            w.u32(queue.0).u32(*partition).u64(*offset).str(metadata);
        }
    }
}

/// Reads them back through the same apply as the log's commits (bounds included); a
/// snapshot is the state's own encoding, so nothing is dropped but what a forgery adds.
fn decode_committed(r: &mut Reader<'_>, state: &mut State) -> Result<(), CodecError> {
    for _ in 0..r.count(COMMITTED_GROUPS_MAX)? {
        let group = r.str()?.to_string();
        if group.len() > COMMIT_GROUP_BYTES_MAX {
            return Err(bad(r));
        }
        let count = r.count(COMMITTED_OFFSETS_PER_GROUP_MAX)?;
        let mut offsets = Vec::with_capacity(count);
        for _ in 0..count {
            let queue = QueueId(r.u32()?);
            let partition = r.u32()?;
            let offset = r.u64()?;
            let metadata = r.str()?;
            if metadata.len() > OFFSET_METADATA_BYTES_MAX {
                return Err(bad(r));
            }
            offsets.push((queue, partition, offset, metadata.to_string()));
        }
        let queues = &state.queues;
        state
            .committed
            .apply(&group, &offsets, |queue| queues.contains_key(&queue));
    }
    Ok(())
}

/// Each queue's dead-letter target, for the queues that have one (format 7).
fn encode_dead_letter_targets(w: &mut Writer, state: &State) {
    let targets: Vec<(QueueId, QueueId)> = state
        .queues
        .values()
        .filter_map(|q| Some((q.id, q.dead_letter_to?)))
        .collect();
    w.u32(u32::try_from(targets.len()).expect("bounded"));
    for (queue, target) in targets {
        w.u32(queue.0).u32(target.0);
    }
}

fn decode_dead_letter_targets(r: &mut Reader<'_>, state: &mut State) -> Result<(), CodecError> {
    for _ in 0..r.count(COUNT_MAX)? {
        let queue = QueueId(r.u32()?);
        let target = QueueId(r.u32()?);
        let q = state.queues.get_mut(&queue).ok_or_else(|| bad(r))?;
        q.dead_letter_to = Some(target);
    }
    Ok(())
}

/// The groups' move tasks and moved counts, for the groups that have either (format 7).
fn encode_moves(w: &mut Writer, state: &State) {
    let groups: Vec<(QueueId, &Group)> = state
        .queues
        .values()
        .flat_map(|q| q.groups.values().map(|g| (q.id, g)))
        .filter(|(_, g)| g.moving.is_some() || g.moved_total > 0)
        .collect();
    w.u32(u32::try_from(groups.len()).expect("bounded"));
    for (queue, g) in groups {
        w.u32(queue.0).u32(g.id.0).u64(g.moved_total);
        match g.moving {
            None => w.u8(0),
            Some(task) => w
                .u8(1)
                .u32(task.to.0)
                .u32(task.per_second)
                .u64(task.remaining),
        };
    }
}

/// The held messages that are transactional half messages, with their checks so far
/// (format 8).
fn encode_halves(w: &mut Writer, state: &State) {
    let halves: Vec<(QueueId, MessageId, u32)> = state
        .queues
        .values()
        .flat_map(|q| {
            let delayed = &q.store.get().delayed;
            delayed
                .iter()
                .filter_map(move |(id, d)| Some((q.id, *id, d.half?)))
        })
        .collect();
    w.u32(u32::try_from(halves.len()).expect("bounded"));
    for (queue, message, checks) in halves {
        w.u32(queue.0).u64(message.0).u32(checks);
    }
}

fn decode_halves(r: &mut Reader<'_>, state: &mut State) -> Result<(), CodecError> {
    for _ in 0..r.count(COUNT_MAX)? {
        let queue = QueueId(r.u32()?);
        let message = MessageId(r.u64()?);
        let checks = r.u32()?;
        let delayed = state.delayed_mut(queue, message).ok_or_else(|| bad(r))?;
        delayed.half = Some(checks);
    }
    Ok(())
}

fn decode_moves(r: &mut Reader<'_>, state: &mut State) -> Result<(), CodecError> {
    for _ in 0..r.count(COUNT_MAX)? {
        let queue = QueueId(r.u32()?);
        let group = GroupId(r.u32()?);
        let moved_total = r.u64()?;
        let moving = match r.u8()? {
            0 => None,
            1 => Some(MoveTask {
                to: QueueId(r.u32()?),
                per_second: r.u32()?,
                remaining: r.u64()?,
                last_ms: 0,
            }),
            _ => return Err(bad(r)),
        };
        let g = state
            .queues
            .get_mut(&queue)
            .and_then(|q| q.groups.get_mut(&group))
            .ok_or_else(|| bad(r))?;
        g.moved_total = moved_total;
        g.moving = moving;
        if moving.is_some() {
            state.moves.insert((queue, group));
        }
    }
    Ok(())
}

fn encode_group(w: &mut Writer, g: &Group) {
    w.u32(g.id.0).str(&g.name);
    match &g.filter {
        None => {
            w.u8(0);
        }
        Some(filter) => {
            w.u8(1);
            encode_filter(w, &filter.source);
        }
    }
    w.u64(g.acked_total)
        .u64(g.delivered_total)
        .u64(g.dead_total);
    w.u32(u32::try_from(g.done.range_count()).expect("bounded"));
    for (start, end) in g.done.ranges() {
        w.u64(start).u64(end);
    }
    w.u32(u32::try_from(g.failures.len()).expect("bounded"));
    let failures: BTreeMap<_, _> = g.failures.iter().collect();
    for (seq, count) in failures {
        w.u64(*seq).u16(*count);
    }
    let waits: Vec<(u64, u64)> = g
        .holds
        .iter()
        .filter_map(|(seq, hold)| match hold {
            Hold::Waiting { visible_ms } => Some((*seq, *visible_ms)),
            _ => None,
        })
        .collect();
    w.u32(u32::try_from(waits.len()).expect("bounded"));
    for (seq, visible_ms) in waits {
        w.u64(seq).u64(visible_ms);
    }
    w.u32(u32::try_from(g.dead.len()).expect("bounded"));
    for seq in g.dead.keys() {
        w.u64(*seq);
    }
}

/// Decodes a snapshot; returns the state (leader state empty) and its applied offset.
pub(crate) fn decode(bytes: &[u8]) -> Result<(State, u64), CodecError> {
    let Some(body_len) = bytes.len().checked_sub(8) else {
        return Err(CodecError { position: 0 });
    };
    let stored = u64::from_le_bytes(bytes[body_len..].try_into().expect("8 bytes"));
    if xxh3_64(&bytes[..body_len]) != stored {
        return Err(CodecError { position: body_len });
    }
    let mut r = Reader::new(&bytes[..body_len]);
    let version = match r.u64()? {
        SNAPSHOT_MAGIC => Version::V8,
        SNAPSHOT_MAGIC_V7 => Version::V7,
        SNAPSHOT_MAGIC_V6 => Version::V6,
        SNAPSHOT_MAGIC_V5 => Version::V5,
        SNAPSHOT_MAGIC_V4 => Version::V4,
        SNAPSHOT_MAGIC_V3 => Version::V3,
        _ => return Err(CodecError { position: 0 }),
    };
    let applied_offset = r.u64()?;
    let mut state = State {
        next_queue_id: r.u32()?,
        next_group_id: r.u32()?,
        boot_epoch: r.u32()?,
        // Every change up to the snapshot is in the state, none in the journal.
        directory: super::state::DirectoryJournal::starting_at(applied_offset),
        ..State::default()
    };
    state.next_nonce = u64::from(state.boot_epoch) << 32;
    let queue_count = r.count(COUNT_MAX)?;
    for _ in 0..queue_count {
        let id = QueueId(r.u32()?);
        let tenant = r.str()?;
        let tenant = state.tenant_name(tenant);
        let name = r.str()?;
        let config = decode_config(&mut r)?;
        let mut q = new_queue(id, tenant, name, config);
        q.created_ms = r.u64()?;
        q.meta = r.bytes()?.into();
        let mut s = MessageState {
            base_seq: r.u64()?,
            sent_total: r.u64()?,
            ..MessageState::default()
        };
        for index in 0..r.count(COUNT_MAX)? {
            let tag = r.str()?.to_string();
            s.tag_ids
                .insert(tag.clone(), u16::try_from(index + 1).map_err(|_| bad(&r))?);
            s.tag_names.push(tag);
        }
        let message_count = usize::try_from(r.u64()?).map_err(|_| bad(&r))?;
        s.messages = VecDeque::with_capacity(message_count.min(1 << 20));
        for _ in 0..message_count {
            let meta = decode_meta(&mut r, version)?;
            if meta.message_id.0 < s.max_message_id {
                s.out_of_order.insert(meta.message_id.0);
            }
            s.max_message_id = s.max_message_id.max(meta.message_id.0);
            s.messages.push_back(meta);
        }
        for _ in 0..r.count(COUNT_MAX)? {
            let deliver_at_ms = r.u64()?;
            let meta = decode_meta(&mut r, version)?;
            state
                .delay_timers
                .insert(deliver_at_ms, (id, meta.message_id));
            s.delayed.insert(
                meta.message_id,
                DelayedMessage {
                    deliver_at_ms,
                    meta,
                    releasing: false,
                    half: None,
                },
            );
        }
        for _ in 0..r.count(COUNT_MAX)? {
            let expires_ms = r.u64()?;
            let hash = r.u64()?;
            let message = r.u64()?;
            s.dedup_order.push_back((expires_ms, hash));
            s.dedup.insert(hash, (expires_ms, MessageId(message)));
        }
        // A queue that held nothing here stays without message state, as it was.
        if !s.is_unused() {
            *q.store.make() = s;
        }
        for _ in 0..r.count(COUNT_MAX)? {
            let g = decode_group(&mut r, &mut state, &mut q)?;
            q.groups.insert(g.id, g);
        }
        state.insert_queue(q);
    }
    if version >= Version::V5 {
        decode_tenants(&mut r, &mut state)?;
    }
    if version >= Version::V6 {
        decode_committed(&mut r, &mut state)?;
    }
    if version >= Version::V7 {
        decode_dead_letter_targets(&mut r, &mut state)?;
        decode_moves(&mut r, &mut state)?;
    }
    if version >= Version::V8 {
        decode_halves(&mut r, &mut state)?;
    }
    if !r.is_empty() {
        return Err(bad(&r));
    }
    Ok((state, applied_offset))
}

fn bad(r: &Reader<'_>) -> CodecError {
    CodecError {
        position: r.position(),
    }
}

fn decode_meta(r: &mut Reader<'_>, version: Version) -> Result<MessageMeta, CodecError> {
    Ok(MessageMeta {
        message_id: MessageId(r.u64()?),
        available_ms: r.u64()?,
        fifo_key: r.u32()?,
        tags: [r.u16()?, r.u16()?, r.u16()?],
        message_bytes: match version {
            Version::V3 => MESSAGE_BYTES_UNKNOWN,
            Version::V4 | Version::V5 | Version::V6 | Version::V7 | Version::V8 => r.u32()?,
        },
    })
}

fn decode_group(
    r: &mut Reader<'_>,
    state: &mut State,
    q: &mut super::state::Queue,
) -> Result<Group, CodecError> {
    let id = GroupId(r.u32()?);
    let name = r.str()?.to_string();
    let mut g = Group::new(id, name, q.base_seq());
    g.filter = match r.u8()? {
        0 => None,
        1 => {
            let filter = decode_filter(r)?;
            Some(super::group::CompiledFilter {
                ids: filter
                    .tags
                    .iter()
                    .map(|t| q.store.get().tag_ids.get(t).copied())
                    .collect(),
                source: filter,
            })
        }
        _ => return Err(bad(r)),
    };
    g.acked_total = r.u64()?;
    g.delivered_total = r.u64()?;
    g.dead_total = r.u64()?;
    for _ in 0..r.count(COUNT_MAX)? {
        let start = r.u64()?;
        let end = r.u64()?;
        g.done.insert_range(start, end);
    }
    for _ in 0..r.count(COUNT_MAX)? {
        let seq = r.u64()?;
        g.failures.insert(seq, r.u16()?);
    }
    for _ in 0..r.count(COUNT_MAX)? {
        let seq = r.u64()?;
        let visible_ms = r.u64()?;
        let key = q.message(seq).map_or(0, |m| m.fifo_key);
        g.set_hold(seq, key, Some(Hold::Waiting { visible_ms }));
        state.wait_timers.insert(visible_ms, (q.id, id, seq));
    }
    for _ in 0..r.count(COUNT_MAX)? {
        g.dead.insert(r.u64()?, DeadLetter::default());
    }
    Ok(g)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::command::{Command, SendMeta};
    use crate::engine::dispatch::PickLimits;
    use crate::engine::types::{GroupStart, QueueConfig, QueueMode, RetryPolicy};

    /// A state with one queue, one group and three sent messages of 10, 20 and 30 bytes.
    fn three_messages() -> State {
        let mut state = State::default();
        let queue = QueueId(0);
        let config = QueueConfig {
            mode: QueueMode::Normal,
            retention_ms: 3_600_000,
            max_consume_count: None,
            retry: RetryPolicy::Immediate,
            dedup_window_ms: 1,
            partitions: 0,
        };
        let create = Command::CreateQueue {
            queue,
            tenant: "t".into(),
            name: "q".into(),
            config,
            meta: Vec::new(),
        };
        state.apply(&create, MessageId(0), 1_000, 0);
        let group = Command::CreateGroup {
            queue,
            group: GroupId(0),
            name: "g".into(),
            start: GroupStart::Oldest,
        };
        state.apply(&group, MessageId(1), 1_000, 0);
        for (offset, bytes) in [(2, 10), (3, 20), (4, 30)] {
            let send = Command::Send(SendMeta {
                queue,
                deliver_at_ms: 0,
                fifo_group: None,
                tags: Vec::new(),
                dedup_hash: 0,
                half: false,
            });
            state.apply(&send, MessageId(offset), 1_000, bytes);
        }
        state
    }

    /// How many messages one receive of `bytes_max` picks from `state`.
    fn check(state: &mut State, bytes_max: u64) -> usize {
        let limits = PickLimits {
            messages_max: 10,
            bytes_max,
            oversize_first: true,
        };
        let picked = state
            .receive(
                QueueId(0),
                GroupId(0),
                limits,
                (30_000, None),
                u64::MAX,
                2_000,
            )
            .unwrap();
        picked.len()
    }

    #[test]
    fn message_sizes_survive_a_snapshot_and_a_v3_snapshot_reads_as_unknown() {
        // Goal: version 4 keeps each message's size, so a restored state keeps byte
        // budgets exactly; a version 3 snapshot (no sizes) still loads and its messages
        // count as larger than any budget: one at a time. Method: round-trip a state in
        // both formats and receive with a budget of 35 bytes (two of the messages).
        let state = three_messages();
        let (mut restored, applied) = decode(&encode(&state, 5, 0)).unwrap();
        assert_eq!(applied, 5);
        let sizes: Vec<u32> = restored.queues[&QueueId(0)]
            .store
            .get()
            .messages
            .iter()
            .map(|m| m.message_bytes)
            .collect();
        assert_eq!(sizes, [10, 20, 30]);
        assert_eq!(check(&mut restored, 35), 2);
        let (mut old, _) = decode(&encode_version(&state, 5, Version::V3, 0)).unwrap();
        assert!(old.queues[&QueueId(0)]
            .store
            .get()
            .messages
            .iter()
            .all(|m| m.message_bytes == MESSAGE_BYTES_UNKNOWN));
        assert_eq!(check(&mut old, 35), 1);
        assert_eq!(check(&mut old, 35), 1);
        assert_eq!(check(&mut old, u64::MAX), 1, "the last one");
    }

    #[test]
    fn tenants_and_the_admin_secret_survive_a_snapshot_and_older_formats_load_without() {
        // Goal: format 5 keeps partition 0's tenants, admin secret and change counter;
        // a format 4 snapshot (written before tenants lived in the engine) still loads,
        // with none. Method: apply tenant commands, round-trip in both formats.
        let mut state = three_messages();
        let put = |name: &str, record: &[u8]| Command::PutTenant {
            name: name.into(),
            record: record.to_vec(),
        };
        state.apply(&put("acme", b"one"), MessageId(5), 1_000, 0);
        state.apply(&put("beta", b"two"), MessageId(6), 1_000, 0);
        state.apply(&put("acme", b"three"), MessageId(7), 1_000, 0);
        let delete = Command::DeleteTenant {
            name: "beta".into(),
        };
        state.apply(&delete, MessageId(8), 1_000, 0);
        let secret = |bytes: &[u8]| Command::SetAdminSecret {
            secret: bytes.to_vec(),
        };
        state.apply(&secret(b"first"), MessageId(9), 1_000, 0);
        state.apply(&secret(b"second"), MessageId(10), 1_000, 0);
        assert_eq!(
            state.admin_secret.as_deref(),
            Some(&b"first"[..]),
            "set once"
        );
        assert_eq!(state.tenant_changes, 5);
        let (restored, _) = decode(&encode(&state, 11, 0)).unwrap();
        assert_eq!(restored.tenants, state.tenants);
        assert_eq!(restored.tenants.len(), 1);
        assert_eq!(restored.admin_secret, state.admin_secret);
        assert_eq!(restored.tenant_changes, 5);
        let (v5, _) = decode(&encode_version(&state, 11, Version::V5, 0)).unwrap();
        assert_eq!(v5.tenants, state.tenants);
        assert_eq!(v5.admin_secret, state.admin_secret);
        let (old, _) = decode(&encode_version(&state, 11, Version::V4, 0)).unwrap();
        assert!(old.tenants.is_empty());
        assert_eq!(old.admin_secret, None);
        assert_eq!(old.tenant_changes, 0);
        assert_eq!(old.queues.len(), 1);
    }

    #[test]
    fn committed_offsets_survive_a_snapshot_and_a_v5_snapshot_loads_without() {
        // Goal: format 6 keeps the consumer groups' committed offsets (with metadata);
        // a format 5 snapshot, written before they existed, still loads with none and
        // everything else intact. Method: apply commits (one naming a queue that does
        // not exist, dropped), round-trip in formats 6 and 5.
        let mut state = three_messages();
        let commit =
            |group: &str, offsets: Vec<(QueueId, u32, u64, String)>| Command::CommitOffsets {
                group: group.into(),
                offsets,
            };
        let first = commit(
            "p/orders",
            vec![
                (QueueId(0), 0, 2, "m".into()),
                (QueueId(0), 1, 7, String::new()),
                (QueueId(9), 0, 1, String::new()),
            ],
        );
        state.apply(&first, MessageId(5), 1_000, 0);
        let second = commit("p/billing", vec![(QueueId(0), 0, 3, String::new())]);
        state.apply(&second, MessageId(6), 1_000, 0);
        assert_eq!(state.committed.of("p/orders").len(), 2);
        let (restored, applied) = decode(&encode(&state, 7, 0)).unwrap();
        assert_eq!(applied, 7);
        assert_eq!(restored.committed, state.committed);
        assert_eq!(
            restored.committed.of("p/orders"),
            vec![
                (QueueId(0), 0, 2, "m".to_string()),
                (QueueId(0), 1, 7, String::new())
            ]
        );
        let (v5, _) = decode(&encode_version(&state, 7, Version::V5, 0)).unwrap();
        assert_eq!(v5.committed.group_count(), 0);
        assert_eq!(v5.queues.len(), 1);
        assert_eq!(v5.queues[&QueueId(0)].store.get().messages.len(), 3);
    }
}
