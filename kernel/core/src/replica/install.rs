//! A follower's side of a Raft snapshot on disk: staging the chunks, then replacing the
//! replica by them so that a crash at any point leaves the old replica or the new one,
//! never a mix, and never loses the term or the vote.
//!
//! The procedure (docs/replication.md, "Installing a snapshot"):
//!
//! 1. **Staging.** The engine snapshot's bytes go to `install-engine` at their positions,
//!    the log records to `install-log` as checksummed frames; each chunk is written and
//!    synced before the next is asked for. A crash here leaves the old replica: open
//!    removes the staging files.
//! 2. **Commit point.** Once everything is staged and verified and raft-rs accepted the
//!    snapshot, `install.rec` (what is installed: index, term, log start, sizes, the
//!    snapshot's membership; checksummed) is written and synced.
//! 3. **Apply.** Every segment, index file and engine snapshot is removed, the log starts
//!    over at the snapshot's start with the staged records (synced), `snapshot-<index>` is
//!    written from `install-engine` (synced), and the Raft state is saved with its term
//!    and vote unchanged, the commit at the snapshot's index and the snapshot's
//!    membership.
//! 4. **Done.** `install.rec` is removed, then the staging files.
//!
//! A crash between 2 and the end of 4 is finished at open ([`recover`]): a valid
//! `install.rec` makes open redo 3 and 4, each of which can run any number of times.

use protobuf::Message as _;
use raft::prelude::ConfState;
use xxhash_rust::xxh3::xxh3_64;

use super::hard_state::{DurableState, HardStateFile};
use super::snapshot::decode_records;
use crate::engine::codec::{Reader, Writer};
use crate::engine::snapshot::{parse_snapshot_name, snapshot_name};
use crate::limits::{
    BATCH_BYTES_MAX, BLOCK_BYTES, ENGINE_BATCH_MESSAGES_CEILING, REPLICA_SNAPSHOT_CHUNK_BYTES_MAX,
};
use crate::log::{AppendError, Log, LogConfig};
use crate::record::{align_up, RecordInput};
use crate::storage::{IoErrorKind, Storage, StorageFile};
use crate::types::Offset;

/// The staged engine snapshot file.
pub const ENGINE_STAGE_NAME: &str = "install-engine";
/// The staged log records, in frames.
pub const LOG_STAGE_NAME: &str = "install-log";
/// The commit point of an install.
pub const RECORD_NAME: &str = "install.rec";

const RECORD_MAGIC: u64 = u64::from_le_bytes(*b"SLINST01");
const FRAME_MAGIC: u32 = u32::from_le_bytes(*b"SLIF");
const FRAME_HEADER_BYTES: u64 = 16;
/// The most bytes `install.rec` may take (its membership is bounded by the state file's).
const RECORD_BYTES_MAX: u64 = 4 * BLOCK_BYTES;

/// What an install replaces the replica by.
#[derive(Clone, Debug, PartialEq)]
pub struct InstallRecord {
    pub index: u64,
    pub term: u64,
    /// The log offset the new log starts at.
    pub start: u64,
    /// Bytes of `install-engine`.
    pub engine_bytes: u64,
    /// Bytes of `install-log` holding frames.
    pub log_bytes: u64,
    pub conf: ConfState,
}

/// A failed step of an install, with what failed.
pub type InstallError = String;

fn io_error(what: &str) -> impl FnOnce(crate::storage::IoError) -> InstallError + '_ {
    move |error| format!("{what}: {error}")
}

async fn remove_if_present<S: Storage>(storage: &S, name: &str) -> Result<(), InstallError> {
    match storage.remove(name).await {
        Ok(()) => Ok(()),
        Err(error) if error.kind == IoErrorKind::NotFound => Ok(()),
        Err(error) => Err(format!("{name}: {error}")),
    }
}

/// Removes what an install left: the record first (so a crash midway never leaves a
/// record without its staged files), then the staging files.
pub async fn remove_all<S: Storage>(storage: &S) -> Result<(), InstallError> {
    for name in [RECORD_NAME, ENGINE_STAGE_NAME, LOG_STAGE_NAME] {
        remove_if_present(storage, name).await?;
    }
    Ok(())
}

/// Starts staging a new install: removes any earlier one and creates empty staging files.
pub async fn begin<S: Storage>(storage: &S) -> Result<(), InstallError> {
    remove_all(storage).await?;
    for name in [ENGINE_STAGE_NAME, LOG_STAGE_NAME] {
        let file = storage.create(name).await.map_err(io_error(name))?;
        file.sync().await.map_err(io_error(name))?;
    }
    Ok(())
}

/// Writes `bytes` at `position` (block-aligned) of `name`, padded to a block, and syncs.
async fn write_synced<S: Storage>(
    storage: &S,
    name: &str,
    position: u64,
    bytes: &[&[u8]],
) -> Result<(), InstallError> {
    assert!(
        position.is_multiple_of(BLOCK_BYTES),
        "staging writes are block-aligned"
    );
    let file = storage.open(name).await.map_err(io_error(name))?;
    let length: usize = bytes.iter().map(|b| b.len()).sum();
    let padded = align_up(length as u64, BLOCK_BYTES).max(BLOCK_BYTES);
    let mut buf = file.alloc_buf(usize::try_from(padded).expect("a chunk fits memory"));
    buf.as_mut().fill(0);
    let mut at = 0;
    for part in bytes {
        buf.as_mut()[at..at + part.len()].copy_from_slice(part);
        at += part.len();
    }
    file.write_at(buf, position).await.map_err(io_error(name))?;
    file.sync().await.map_err(io_error(name))
}

/// Stages engine snapshot bytes at `position`.
pub async fn stage_engine<S: Storage>(
    storage: &S,
    position: u64,
    data: &[u8],
) -> Result<(), InstallError> {
    write_synced(storage, ENGINE_STAGE_NAME, position, &[data]).await
}

/// Stages one chunk of log records as a frame at `position`; answers where the next
/// frame goes.
pub async fn stage_log<S: Storage>(
    storage: &S,
    position: u64,
    data: &[u8],
) -> Result<u64, InstallError> {
    let length = u32::try_from(data.len()).expect("a chunk is bounded");
    let mut header = Vec::with_capacity(FRAME_HEADER_BYTES as usize);
    header.extend_from_slice(&FRAME_MAGIC.to_le_bytes());
    header.extend_from_slice(&length.to_le_bytes());
    header.extend_from_slice(&xxh3_64(data).to_le_bytes());
    write_synced(storage, LOG_STAGE_NAME, position, &[&header, data]).await?;
    Ok(position + align_up(FRAME_HEADER_BYTES + u64::from(length), BLOCK_BYTES))
}

/// Reads the whole staged engine snapshot file (`bytes` long).
pub async fn read_engine<S: Storage>(storage: &S, bytes: u64) -> Result<Vec<u8>, InstallError> {
    let file = storage
        .open(ENGINE_STAGE_NAME)
        .await
        .map_err(io_error(ENGINE_STAGE_NAME))?;
    let mut out = Vec::with_capacity(usize::try_from(bytes).map_err(|_| "too large")?);
    let step = u64::from(REPLICA_SNAPSHOT_CHUNK_BYTES_MAX);
    let mut position = 0;
    // Bounded by the file's size.
    while position < bytes {
        let length = step.min(bytes - position);
        let read = file
            .read_at(position, usize::try_from(length).expect("bounded"))
            .await
            .map_err(io_error(ENGINE_STAGE_NAME))?;
        out.extend_from_slice(read.as_ref());
        position += length;
    }
    Ok(out)
}

/// The body of an engine snapshot file (`u64 length | body | padding`).
pub fn engine_body(file: &[u8]) -> Option<&[u8]> {
    let length = u64::from_le_bytes(file.get(..8)?.try_into().ok()?);
    let end = 8usize.checked_add(usize::try_from(length).ok()?)?;
    file.get(8..end)
}

impl InstallRecord {
    fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        let conf = self
            .conf
            .write_to_bytes()
            .expect("a ConfState always encodes");
        w.u64(RECORD_MAGIC)
            .u64(self.index)
            .u64(self.term)
            .u64(self.start)
            .u64(self.engine_bytes)
            .u64(self.log_bytes)
            .bytes(&conf);
        let checksum = xxh3_64(&w.bytes);
        w.u64(checksum);
        let mut out = (w.bytes.len() as u64).to_le_bytes().to_vec();
        out.extend_from_slice(&w.bytes);
        out
    }

    fn decode(file: &[u8]) -> Option<InstallRecord> {
        let body = engine_body(file)?;
        let (body, stored) = body.split_at(body.len().checked_sub(8)?);
        if xxh3_64(body) != u64::from_le_bytes(stored.try_into().ok()?) {
            return None;
        }
        let mut r = Reader::new(body);
        if r.u64().ok()? != RECORD_MAGIC {
            return None;
        }
        let record = InstallRecord {
            index: r.u64().ok()?,
            term: r.u64().ok()?,
            start: r.u64().ok()?,
            engine_bytes: r.u64().ok()?,
            log_bytes: r.u64().ok()?,
            conf: ConfState::parse_from_bytes(r.bytes().ok()?).ok()?,
        };
        (r.is_empty() && record.start < record.index).then_some(record)
    }
}

/// Writes the commit point: from here on the install happens, at open if need be.
pub async fn commit<S: Storage>(storage: &S, record: &InstallRecord) -> Result<(), InstallError> {
    let bytes = record.encode();
    if bytes.len() as u64 > RECORD_BYTES_MAX {
        return Err(format!("{RECORD_NAME}: {} bytes", bytes.len()));
    }
    remove_if_present(storage, RECORD_NAME).await?;
    let file = storage
        .create(RECORD_NAME)
        .await
        .map_err(io_error(RECORD_NAME))?;
    drop(file);
    write_synced(storage, RECORD_NAME, 0, &[&bytes]).await
}

async fn read_record<S: Storage>(storage: &S) -> Option<InstallRecord> {
    let file = storage.open(RECORD_NAME).await.ok()?;
    let size = file.size().await.ok()?.min(RECORD_BYTES_MAX);
    let bytes = file.read_at(0, usize::try_from(size).ok()?).await.ok()?;
    InstallRecord::decode(bytes.as_ref())
}

/// Step 3: replaces the log (reset to the record's start, then the staged records) and
/// the engine snapshots (only `snapshot-<index>`, from the staged file). The caller saves
/// the Raft state, then calls [`remove_all`].
pub async fn apply<S: Storage>(
    storage: &S,
    log: &Log<S>,
    record: &InstallRecord,
) -> Result<(), InstallError> {
    let listed = storage.list().await.map_err(io_error("."))?;
    for name in listed {
        if parse_snapshot_name(&name).is_some() {
            remove_if_present(storage, &name).await?;
        }
    }
    log.reset_to(Offset(record.start))
        .await
        .map_err(|error| error.to_string())?;
    append_staged(storage, log, record).await?;
    if log.next_offset() != Offset(record.index) {
        return Err(format!(
            "staged records end at {}, not at the snapshot's index {}",
            log.next_offset(),
            record.index
        ));
    }
    copy_engine(storage, record).await
}

async fn append_staged<S: Storage>(
    storage: &S,
    log: &Log<S>,
    record: &InstallRecord,
) -> Result<(), InstallError> {
    let file = storage
        .open(LOG_STAGE_NAME)
        .await
        .map_err(io_error(LOG_STAGE_NAME))?;
    let mut position = 0;
    // Bounded by the staged bytes: every frame takes at least a block.
    while position < record.log_bytes {
        let header = file
            .read_at(position, FRAME_HEADER_BYTES as usize)
            .await
            .map_err(io_error(LOG_STAGE_NAME))?;
        let header = header.as_ref();
        let magic = u32::from_le_bytes(header[..4].try_into().expect("4 bytes"));
        let length = u32::from_le_bytes(header[4..8].try_into().expect("4 bytes"));
        let checksum = u64::from_le_bytes(header[8..16].try_into().expect("8 bytes"));
        if magic != FRAME_MAGIC || length > REPLICA_SNAPSHOT_CHUNK_BYTES_MAX {
            return Err(format!("{LOG_STAGE_NAME}: bad frame at byte {position}"));
        }
        let data = file
            .read_at(position + FRAME_HEADER_BYTES, length as usize)
            .await
            .map_err(io_error(LOG_STAGE_NAME))?;
        if xxh3_64(data.as_ref()) != checksum {
            return Err(format!("{LOG_STAGE_NAME}: bad checksum at byte {position}"));
        }
        let first = log.next_offset().0;
        let records = decode_records(data.as_ref(), first)
            .map_err(|error| format!("{LOG_STAGE_NAME}: {error}"))?;
        for run in records.chunk_by(|a, b| a.term == b.term) {
            let mut start = 0;
            while start < run.len() {
                let mut end = start;
                let mut bytes = 0u64;
                while end < run.len() && end - start < ENGINE_BATCH_MESSAGES_CEILING as usize {
                    let r = &run[end].record;
                    bytes += (r.attributes.len() + r.payload.len() + 64) as u64;
                    if end > start && bytes > u64::from(BATCH_BYTES_MAX) / 2 {
                        break;
                    }
                    end += 1;
                }
                append_batch(log, &run[start..end]).await?;
                start = end;
            }
        }
        position += align_up(FRAME_HEADER_BYTES + u64::from(length), BLOCK_BYTES);
    }
    let next = log.next_offset();
    log.sync(next).await.map_err(|error| error.to_string())
}

async fn append_batch<S: Storage>(
    log: &Log<S>,
    batch: &[super::snapshot::TermRecord],
) -> Result<(), InstallError> {
    let records: Vec<RecordInput<'_>> = batch
        .iter()
        .map(|r| RecordInput {
            timestamp_ms: r.record.timestamp_ms,
            attributes: &r.record.attributes,
            payload: &r.record.payload,
        })
        .collect();
    let term = batch[0].term;
    match log.append_with_term(term, &records) {
        Ok(_) => Ok(()),
        Err(AppendError::Busy { .. }) => {
            let next = log.next_offset();
            log.sync(next).await.map_err(|error| error.to_string())?;
            log.append_with_term(term, &records)
                .map(|_| ())
                .map_err(|error| format!("{error:?}"))
        }
        Err(error) => Err(format!("{error:?}")),
    }
}

async fn copy_engine<S: Storage>(storage: &S, record: &InstallRecord) -> Result<(), InstallError> {
    let name = snapshot_name(record.index);
    let bytes = read_engine(storage, record.engine_bytes).await?;
    remove_if_present(storage, &name).await?;
    let file = storage.create(&name).await.map_err(io_error(&name))?;
    drop(file);
    let step = REPLICA_SNAPSHOT_CHUNK_BYTES_MAX as usize;
    let mut position = 0;
    // Bounded by the file's size.
    while position < bytes.len() {
        let end = (position + step).min(bytes.len());
        let file = storage.open(&name).await.map_err(io_error(&name))?;
        let length = align_up((end - position) as u64, BLOCK_BYTES);
        let mut buf = file.alloc_buf(usize::try_from(length).expect("bounded"));
        buf.as_mut().fill(0);
        buf.as_mut()[..end - position].copy_from_slice(&bytes[position..end]);
        file.write_at(buf, position as u64)
            .await
            .map_err(io_error(&name))?;
        position = end;
    }
    let file = storage.open(&name).await.map_err(io_error(&name))?;
    file.sync().await.map_err(io_error(&name))
}

/// Finishes at open an install a crash interrupted after its commit point, or removes
/// the staging files of one that never reached it. Runs before the log is opened.
pub async fn recover<S: Storage + Clone>(
    storage: &S,
    log_config: LogConfig,
) -> Result<(), InstallError> {
    let listed = storage.list().await.map_err(io_error("."))?;
    let staged = [RECORD_NAME, ENGINE_STAGE_NAME, LOG_STAGE_NAME]
        .iter()
        .any(|name| listed.iter().any(|l| l == name));
    if !staged {
        return Ok(());
    }
    let Some(record) = read_record(storage).await else {
        // No valid commit point: the old replica stands.
        return remove_all(storage).await;
    };
    // The old segments may not form a log any more (the apply was cut short): remove
    // them before opening an empty log to start over.
    remove_log_files(storage, &listed).await?;
    let log = Log::open(storage.clone(), log_config)
        .await
        .map_err(|error| error.to_string())?;
    apply(storage, &log, &record).await?;
    drop(log);
    let (mut file, loaded) = HardStateFile::open(storage)
        .await
        .map_err(|error| error.to_string())?;
    let mut durable: DurableState = loaded.unwrap_or_default();
    durable.hard.commit = record.index;
    durable.conf = record.conf.clone();
    file.save(&durable)
        .await
        .map_err(|error| error.to_string())?;
    remove_all(storage).await
}

async fn remove_log_files<S: Storage>(storage: &S, listed: &[String]) -> Result<(), InstallError> {
    for name in listed {
        let is_log =
            crate::segment::parse_name(name).is_some() || name == crate::log::TRUNCATION_NAME;
        if is_log {
            remove_if_present(storage, name).await?;
        }
    }
    Ok(())
}
