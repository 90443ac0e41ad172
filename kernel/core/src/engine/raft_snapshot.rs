//! Raft snapshots at the engine: a leader serves the chunks of the snapshots it offered
//! (`replica/store.rs`); a follower sent one pulls its chunks, stages them
//! (`replica/install.rs`), and once every chunk is durable and verified steps the
//! snapshot message into raft-rs, whose next Ready installs it: log, engine snapshot and
//! Raft state replaced on disk (crash-safe), then the state in memory.
//!
//! Sans-IO: the host carries the chunks. It sends what [`Engine::snapshot_wanted`] asks
//! to the leader, which answers with [`Engine::snapshot_chunk`], hands the answer (or the
//! failure to get one) to [`Engine::install_chunk`], then calls [`Engine::drive`]. Lost
//! requests are asked again after `REPLICA_SNAPSHOT_CHUNK_WAIT_TICKS` Raft ticks; a
//! leader drops a transfer nobody asked a chunk of for `REPLICA_SNAPSHOT_IDLE_TICKS_MAX`
//! ticks and tells raft-rs the snapshot failed, so it offers a new one later.

use std::cell::{Cell, RefCell};

use raft::prelude::{Message, MessageType, Snapshot};
use raft::{ProgressState, SnapshotStatus, StateRole};

use super::snapshot::{decode, snapshot_name};
use super::state::State;
use super::types::{EngineError, StorageFault};
use super::Engine;
use crate::limits::{
    BLOCK_BYTES, REPLICA_SNAPSHOT_CHUNK_BYTES_MAX, REPLICA_SNAPSHOT_CHUNK_RETRIES_MAX,
    REPLICA_SNAPSHOT_CHUNK_WAIT_TICKS, REPLICA_SNAPSHOT_IDLE_TICKS_MAX,
};
use crate::replica::install::{self, InstallRecord};
use crate::replica::snapshot::{
    decode_records, encode_record, record_bytes, Chunk, ChunkRequest, Descriptor, Section,
    SnapshotError,
};
use crate::storage::{Storage, StorageFile};
use crate::types::Offset;

/// The snapshot side of an engine.
#[derive(Default)]
pub(super) struct RaftSnapshots {
    /// The install this follower is pulling.
    install: RefCell<Option<Install>>,
    /// A chunk is being staged (one at a time; a duplicate answer meanwhile is dropped).
    staging: Cell<bool>,
    /// A staged snapshot raft-rs accepted, waiting for the Ready that installs it.
    accepted: RefCell<Option<Accepted>>,
    /// The Ready loop is replacing the replica by a snapshot: `tick` leaves the log and
    /// the engine snapshots alone meanwhile.
    pub(super) applying: Cell<bool>,
}

struct Install {
    message: Message,
    leader: u64,
    descriptor: Descriptor,
    term: u64,
    section: Section,
    position: u64,
    engine_bytes: u64,
    log_bytes: u64,
    /// Raft ticks since the outstanding chunk request was handed out.
    waiting: Option<u32>,
    retries: u32,
}

struct Accepted {
    record: InstallRecord,
    state: State,
}

impl RaftSnapshots {
    /// A chunk is being staged, a staged snapshot waits for its Ready, or one is being
    /// installed: no other install may start (it would replace the staging files).
    fn busy(&self) -> bool {
        self.staging.get() || self.accepted.borrow().is_some() || self.applying.get()
    }
}

/// Clears the staging flag however staging ends.
struct StagingGuard<'a>(&'a Cell<bool>);

impl Drop for StagingGuard<'_> {
    fn drop(&mut self) {
        self.0.set(false);
    }
}

fn fault(detail: String) -> EngineError {
    EngineError::Storage(StorageFault::Replica(detail))
}

impl<S: Storage + Clone> Engine<S> {
    // ------------------------------------------------------------------ follower

    /// A snapshot message from the leader: start pulling it (the message itself is
    /// stepped into raft-rs once its chunks are durable). A stale or duplicate message is
    /// dropped; one this replica does not need is stepped at once, so raft-rs answers
    /// with its commit index.
    pub(super) fn snapshot_arrived(&self, message: Message) {
        let snapshot = message.get_snapshot();
        let (index, term) = (snapshot.get_metadata().index, snapshot.get_metadata().term);
        {
            let mut node = self.replica.node.borrow_mut();
            if message.term < node.raft.term {
                return;
            }
            if index <= node.raft.raft_log.committed {
                let _ = node.step(message);
                return;
            }
        }
        if self.raft_snapshots.busy() {
            return;
        }
        let snapshots = &self.raft_snapshots;
        let Ok(descriptor) = Descriptor::decode(&snapshot.data) else {
            return;
        };
        if descriptor.index != index {
            return;
        }
        let mut install = snapshots.install.borrow_mut();
        let same = install.as_ref().is_some_and(|current| {
            current.descriptor == descriptor
                && current.term == term
                && current.leader == message.from
        });
        if same {
            return;
        }
        *install = Some(Install {
            leader: message.from,
            descriptor,
            term,
            section: Section::Engine,
            position: 0,
            engine_bytes: 0,
            log_bytes: 0,
            waiting: None,
            retries: 0,
            message,
        });
    }

    /// The next chunk this follower needs and the replica to ask (its leader), if any.
    /// Each request is handed out once; it is handed out again when its answer did not
    /// arrive within `REPLICA_SNAPSHOT_CHUNK_WAIT_TICKS` Raft ticks.
    pub fn snapshot_wanted(&self) -> Option<(u64, ChunkRequest)> {
        if self.raft_snapshots.busy() {
            return None;
        }
        let mut install = self.raft_snapshots.install.borrow_mut();
        let install = install.as_mut()?;
        if install.waiting.is_some() {
            return None;
        }
        install.waiting = Some(0);
        let request = ChunkRequest {
            index: install.descriptor.index,
            term: install.term,
            section: install.section,
            position: install.position,
            bytes_max: REPLICA_SNAPSHOT_CHUNK_BYTES_MAX,
        };
        Some((install.leader, request))
    }

    /// Whether this follower is pulling a snapshot.
    pub fn installing_snapshot(&self) -> bool {
        self.raft_snapshots.install.borrow().is_some()
            || self.raft_snapshots.accepted.borrow().is_some()
    }

    /// Whether this follower still has chunks to pull (false once the last one is staged,
    /// while the accepted snapshot waits for its Ready: see
    /// [`Engine::installing_snapshot`]).
    pub fn pulling_snapshot(&self) -> bool {
        self.raft_snapshots.install.borrow().is_some()
    }

    /// Takes the leader `from`'s answer to a chunk request: stages the chunk (durably)
    /// and, after the last one, verifies the staged snapshot and steps its message into
    /// raft-rs; call [`Engine::drive`] afterwards. A failed answer or a staging error
    /// gives the install up (the leader offers a new snapshot later); an answer that does
    /// not continue the install (late, duplicate) is refused and changes nothing.
    pub async fn install_chunk(
        &self,
        from: u64,
        answer: Result<Chunk, SnapshotError>,
    ) -> Result<(), SnapshotError> {
        let snapshots = &self.raft_snapshots;
        if snapshots.busy() {
            return Err(SnapshotError::Unexpected);
        }
        let (section, position, log_bytes) = {
            let install = snapshots.install.borrow();
            let Some(install) = install.as_ref().filter(|i| i.leader == from) else {
                return Err(SnapshotError::Unexpected);
            };
            if let Ok(chunk) = &answer {
                let continues = chunk.index == install.descriptor.index
                    && chunk.term == install.term
                    && chunk.section == install.section
                    && chunk.position == install.position;
                if !continues {
                    return Err(SnapshotError::Unexpected);
                }
            }
            (install.section, install.position, install.log_bytes)
        };
        let chunk = match answer {
            Ok(chunk) => chunk,
            Err(error) => {
                self.abandon_install().await;
                return Err(error);
            }
        };
        // Held until the chunk is staged and, after the last one, the install accepted
        // or dropped: nothing may start another install over these staging files.
        snapshots.staging.set(true);
        let _guard = StagingGuard(&snapshots.staging);
        match self.stage_chunk(section, position, log_bytes, &chunk).await {
            Ok(true) => self.accept_install().await,
            Ok(false) => Ok(()),
            Err(error) => {
                self.abandon_install().await;
                Err(error)
            }
        }
    }

    /// Stages one chunk durably and moves the install on; answers whether every chunk
    /// is staged.
    async fn stage_chunk(
        &self,
        section: Section,
        position: u64,
        log_bytes: u64,
        chunk: &Chunk,
    ) -> Result<bool, SnapshotError> {
        let io = SnapshotError::Io;
        let (index, start) = {
            let install = self.raft_snapshots.install.borrow();
            let install = install.as_ref().ok_or(SnapshotError::Unexpected)?;
            (install.descriptor.index, install.descriptor.start)
        };
        let (next_section, next_position, next_log_bytes, engine_bytes) = match section {
            Section::Engine => {
                if position == 0 {
                    install::begin(&self.storage).await.map_err(io)?;
                }
                install::stage_engine(&self.storage, position, &chunk.data)
                    .await
                    .map_err(io)?;
                if chunk.next == chunk.end {
                    (Section::Log, start, log_bytes, Some(chunk.end))
                } else {
                    (Section::Engine, chunk.next, log_bytes, None)
                }
            }
            Section::Log => {
                let records = decode_records(&chunk.data, position)?;
                let moves = chunk.next == position + records.len() as u64
                    && !records.is_empty()
                    && chunk.end == index;
                if !moves {
                    return Err(SnapshotError::Malformed);
                }
                let next_bytes = install::stage_log(&self.storage, log_bytes, &chunk.data)
                    .await
                    .map_err(io)?;
                (Section::Log, chunk.next, next_bytes, None)
            }
        };
        let mut install = self.raft_snapshots.install.borrow_mut();
        let install = install.as_mut().ok_or(SnapshotError::Unexpected)?;
        install.section = next_section;
        install.position = next_position;
        install.log_bytes = next_log_bytes;
        if let Some(bytes) = engine_bytes {
            install.engine_bytes = bytes;
        }
        install.waiting = None;
        install.retries = 0;
        Ok(install.section == Section::Log && install.position == index)
    }

    /// Every chunk is staged: verifies the engine snapshot and steps the snapshot message
    /// into raft-rs. raft-rs restores it when it is still ahead of this replica (the
    /// next Ready installs it); otherwise the staged files are dropped.
    async fn accept_install(&self) -> Result<(), SnapshotError> {
        let Some(install) = self.raft_snapshots.install.borrow_mut().take() else {
            return Err(SnapshotError::Unexpected);
        };
        let index = install.descriptor.index;
        let verified = match install::read_engine(&self.storage, install.engine_bytes).await {
            Ok(bytes) => install::engine_body(&bytes)
                .and_then(|body| decode(body).ok())
                .filter(|(_, applied)| *applied == index),
            Err(_) => None,
        };
        let Some((state, _)) = verified else {
            let _ = install::remove_all(&self.storage).await;
            return Err(SnapshotError::Malformed);
        };
        let record = InstallRecord {
            index,
            term: install.term,
            start: install.descriptor.start,
            engine_bytes: install.engine_bytes,
            log_bytes: install.log_bytes,
            conf: install
                .message
                .get_snapshot()
                .get_metadata()
                .get_conf_state()
                .clone(),
        };
        self.raft_snapshots
            .accepted
            .replace(Some(Accepted { record, state }));
        let restored = {
            let mut node = self.replica.node.borrow_mut();
            let _ = node.step(install.message);
            node.raft
                .raft_log
                .unstable_snapshot()
                .as_ref()
                .is_some_and(|s| {
                    s.get_metadata().index == index && s.get_metadata().term == install.term
                })
        };
        if !restored {
            self.raft_snapshots.accepted.replace(None);
            let _ = install::remove_all(&self.storage).await;
        }
        Ok(())
    }

    /// Gives the install up: forgets it and removes its staging files.
    async fn abandon_install(&self) {
        self.raft_snapshots.install.replace(None);
        // A leftover is harmless: the next install and the next open remove it.
        let _ = install::remove_all(&self.storage).await;
    }

    /// The Ready brings a snapshot: it must be the one staged and accepted. From here the
    /// store answers as a log compacted at the snapshot; the asynchronous half of the
    /// Ready installs it ([`Engine::install_snapshot`]). Answers its index.
    pub(super) fn snapshot_in_ready(
        &self,
        snapshot: &Snapshot,
    ) -> Result<Option<u64>, EngineError> {
        if snapshot.is_empty() {
            return Ok(None);
        }
        let metadata = snapshot.get_metadata();
        let staged = self
            .raft_snapshots
            .accepted
            .borrow()
            .as_ref()
            .is_some_and(|a| a.record.index == metadata.index && a.record.term == metadata.term);
        if !staged {
            return Err(fault(format!(
                "raft-rs restored snapshot {} that was not staged",
                metadata.index
            )));
        }
        self.raft_snapshots.applying.set(true);
        let store = &self.replica.store;
        store.reset_for_snapshot(metadata.index, metadata.term);
        store.set_conf_state(metadata.get_conf_state().clone());
        self.unapplied.borrow_mut().clear();
        Ok(Some(metadata.index))
    }

    /// Replaces the replica by the accepted snapshot at `index` (docs/replication.md,
    /// "Installing a snapshot"): the commit point, the log and engine snapshot, the Raft
    /// state (term and vote as they stand), the staging files removed; then the state in
    /// memory. A failure fails the engine; reopening finishes the install or keeps the
    /// old replica, depending on whether the commit point was written.
    ///
    /// Safe to run again after it was dropped at an `.await` (the next driver finishes
    /// the Ready): every disk step can be redone, and the accepted snapshot is let go
    /// only once the install is done.
    pub(super) async fn install_snapshot(&self, index: u64) -> Result<(), EngineError> {
        let record = self
            .raft_snapshots
            .accepted
            .borrow()
            .as_ref()
            .map(|accepted| accepted.record.clone());
        let Some(record) = record else {
            if self.applied_offset.get() == index && !self.raft_snapshots.applying.get() {
                // An earlier run finished it and was dropped after.
                return Ok(());
            }
            return Err(fault(format!(
                "snapshot {index} vanished before its install"
            )));
        };
        assert_eq!(
            record.index, index,
            "the Ready's snapshot is the one staged"
        );
        install::commit(&self.storage, &record)
            .await
            .map_err(fault)?;
        install::apply(&self.storage, &self.log, &record)
            .await
            .map_err(fault)?;
        let store = &self.replica.store;
        let mut durable = store.durable();
        durable.hard.commit = durable.hard.commit.max(index);
        store.set_commit(durable.hard.commit);
        self.save_durable(durable).await?;
        install::remove_all(&self.storage).await.map_err(fault)?;
        let accepted = self
            .raft_snapshots
            .accepted
            .borrow_mut()
            .take()
            .expect("kept until the install is done");
        let mut state = accepted.state;
        state.reset_leader_state();
        self.state.replace(state);
        self.applied_offset.set(index);
        self.snapshot_offset.set(index);
        self.applied_since_snapshot.set(0);
        store.set_snapshot_point(index, Some(store.durable().conf));
        self.raft_snapshots.applying.set(false);
        self.notify();
        Ok(())
    }

    // ------------------------------------------------------------------ leader

    /// Serves a chunk of the snapshot this leader offered the follower `from`. Fails
    /// with `UnknownTransfer` when no such transfer is under way (it expired, or this
    /// replica restarted), `Malformed` for a request out of range.
    pub async fn snapshot_chunk(
        &self,
        from: u64,
        request: &ChunkRequest,
    ) -> Result<Chunk, SnapshotError> {
        let store = &self.replica.store;
        let mut transfers = store.transfers();
        let transfer = transfers
            .iter_mut()
            .find(|t| t.to == from && t.index == request.index && t.term == request.term)
            .ok_or(SnapshotError::UnknownTransfer)?;
        transfer.idle_ticks = 0;
        let transfer = *transfer;
        store.set_transfers(transfers);
        let bytes_max = u64::from(request.bytes_max.min(REPLICA_SNAPSHOT_CHUNK_BYTES_MAX));
        let (next, end, data) = match request.section {
            Section::Engine => {
                let bytes_max = (bytes_max / BLOCK_BYTES * BLOCK_BYTES).max(BLOCK_BYTES);
                self.engine_chunk(transfer.index, request.position, bytes_max)
                    .await?
            }
            Section::Log => {
                if request.position < transfer.start || request.position >= transfer.index {
                    return Err(SnapshotError::Malformed);
                }
                let (next, data) = self
                    .log_chunk(request.position, transfer.index, bytes_max)
                    .await?;
                (next, transfer.index, data)
            }
        };
        Ok(Chunk {
            index: transfer.index,
            term: transfer.term,
            section: request.section,
            position: request.position,
            next,
            end,
            data,
        })
    }

    async fn engine_chunk(
        &self,
        index: u64,
        position: u64,
        bytes_max: u64,
    ) -> Result<(u64, u64, Vec<u8>), SnapshotError> {
        let name = snapshot_name(index);
        let io = |error: crate::storage::IoError| SnapshotError::Io(format!("{name}: {error}"));
        let file = self.storage.open(&name).await.map_err(io)?;
        let size = file.size().await.map_err(io)?;
        if !position.is_multiple_of(BLOCK_BYTES) || position > size {
            return Err(SnapshotError::Malformed);
        }
        let length = bytes_max.min(size - position);
        let data = if length == 0 {
            Vec::new()
        } else {
            let read = file
                .read_at(
                    position,
                    usize::try_from(length).expect("bounded by the chunk"),
                )
                .await
                .map_err(io)?;
            read.as_ref().to_vec()
        };
        Ok((position + length, size, data))
    }

    /// Records from `position` up to `index` (exclusive), about `bytes_max` of them (at
    /// least one).
    async fn log_chunk(
        &self,
        position: u64,
        index: u64,
        bytes_max: u64,
    ) -> Result<(u64, Vec<u8>), SnapshotError> {
        let mut data = Vec::new();
        let mut next = position;
        // Bounded: every pass adds a record or ends.
        'reads: while next < index {
            let records = self
                .log
                .read(Offset(next), bytes_max)
                .await
                .map_err(|error| SnapshotError::Io(error.to_string()))?;
            if records.is_empty() {
                return Err(SnapshotError::Io(format!("no record at offset {next}")));
            }
            for record in records {
                if record.offset.0 >= index {
                    break 'reads;
                }
                if !data.is_empty() && data.len() as u64 + record_bytes(&record) > bytes_max {
                    break 'reads;
                }
                let term = self
                    .log
                    .term_at(record.offset)
                    .ok_or_else(|| SnapshotError::Io(format!("no term at {}", record.offset)))?;
                encode_record(&mut data, term, &record);
                next = record.offset.0 + 1;
            }
        }
        Ok((next, data))
    }

    // ------------------------------------------------------------------ both

    /// One Raft tick of snapshot timers: a follower asks again for a chunk whose answer
    /// is late (and gives the install up after `REPLICA_SNAPSHOT_CHUNK_RETRIES_MAX`
    /// tries); a leader drops transfers that are done or idle, and tells raft-rs an idle
    /// one failed so that it offers a new snapshot later.
    pub(super) fn snapshot_tick(&self) {
        {
            let mut install = self.raft_snapshots.install.borrow_mut();
            if let Some(current) = install.as_mut() {
                if let Some(waited) = current.waiting {
                    if waited + 1 >= REPLICA_SNAPSHOT_CHUNK_WAIT_TICKS {
                        current.waiting = None;
                        current.retries += 1;
                    } else {
                        current.waiting = Some(waited + 1);
                    }
                }
                if current.retries > REPLICA_SNAPSHOT_CHUNK_RETRIES_MAX {
                    // Its staging files go with the next install or open.
                    *install = None;
                }
            }
        }
        let store = &self.replica.store;
        let mut transfers = store.transfers();
        if transfers.is_empty() {
            return;
        }
        let mut node = self.replica.node.borrow_mut();
        let leads = node.raft.state == StateRole::Leader;
        let mut failed = Vec::new();
        transfers.retain_mut(|transfer| {
            transfer.idle_ticks += 1;
            let progress = node.raft.prs().get(transfer.to);
            let done = progress.is_some_and(|p| p.matched >= transfer.index);
            let expired = transfer.idle_ticks > REPLICA_SNAPSHOT_IDLE_TICKS_MAX;
            let pending = progress.is_some_and(|p| {
                p.state == ProgressState::Snapshot && p.pending_snapshot == transfer.index
            });
            if expired && leads && pending {
                failed.push(transfer.to);
            }
            !done && !expired
        });
        for to in failed {
            node.report_snapshot(to, SnapshotStatus::Failure);
        }
        drop(node);
        store.set_transfers(transfers);
    }

    /// Whether a snapshot message is one the engine takes over (see
    /// [`Engine::snapshot_arrived`]).
    pub(super) fn is_snapshot(message: &Message) -> bool {
        message.get_msg_type() == MessageType::MsgSnapshot
    }
}
