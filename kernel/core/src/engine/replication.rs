//! The engine as a Raft replica: proposals, the Ready loop, applying committed entries,
//! leadership.
//!
//! A write is *proposed* (encoded once as Raft entries), persisted by the Ready loop with
//! the log's group commit, and applied to the state once raft-rs reports it committed,
//! in index order, on every replica alike. The caller's answer waits for that apply; it
//! fails with `NotLeader` when this replica loses the lead first (the write may still
//! commit: a retry may duplicate, never lose).
//!
//! Only one task runs the Ready loop at a time (`driving`); others propose and wait, and
//! the running loop picks their entries up on its next round, so concurrent writes share
//! one write and one sync, as the log's group commit did before.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::task::{Poll, Waker};

use protobuf::Message as _;
use raft::prelude::{
    ConfChange, ConfChangeV2, Entry as RaftEntry, EntryType, Message, MessageType,
};
use raft::{RawNode, StateRole};

use super::command::Command;
use super::state;
use super::types::{EngineError, MessageId, StorageFault};
use super::{Engine, Entry, Unapplied};
use crate::bugs::{self, Bug};
use crate::limits::REPLICA_OUTBOX_MAX;
use crate::log::AppendError;
use crate::record::{check_batch, RecordInput};
use crate::replica::entry::{encode_data, record_of};
use crate::replica::hard_state::{DurableState, HardStateFile};
use crate::replica::store::{LogStore, PersistError, SharedStore};
use crate::storage::Storage;
use crate::types::Offset;

/// The Raft side of an engine.
pub(crate) struct Replica<S: Storage> {
    pub(crate) id: u64,
    pub(crate) node: RefCell<RawNode<SharedStore<S>>>,
    pub(crate) store: Rc<LogStore<S>>,
    /// Taken by the Ready loop while it saves (only the loop saves).
    pub(crate) hard_file: RefCell<Option<HardStateFile<S::File>>>,
    /// What the last save wrote.
    pub(crate) saved: RefCell<DurableState>,
    pub(crate) driving: Cell<bool>,
    pub(crate) outbox: RefCell<VecDeque<Message>>,
    pub(crate) outbox_waiters: RefCell<Vec<Waker>>,
    pub(crate) role: Cell<StateRole>,
    pub(crate) leader: Cell<u64>,
    /// A leader serves once the `Boot` it proposed at its term is applied: from then on
    /// its leases and handles are its own.
    pub(crate) serving: Cell<bool>,
    pub(crate) boot_index: Cell<Option<u64>>,
    pub(crate) boot_needed: Cell<bool>,
    /// Moves whenever this replica stops leading: proposals made before it fail.
    pub(crate) generation: Cell<u64>,
    /// Leadership confirmations (read index requests) by context: the read index once
    /// the heartbeat round confirmed it.
    pub(crate) reads: RefCell<HashMap<u64, Option<u64>>>,
    pub(crate) next_read: Cell<u64>,
    pub(crate) failed: RefCell<Option<EngineError>>,
    pub(crate) progress_waiters: RefCell<Vec<Waker>>,
    /// A Ready handed back to raft-rs whose persisting has not finished: the task that
    /// drove it may have been dropped at an `.await`, so the next driver finishes it.
    pending: RefCell<Option<PendingReady>>,
}

/// A proposal in flight.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Proposal {
    /// The log offset of its first entry.
    pub(crate) first: Offset,
    pub(crate) last_index: u64,
    pub(crate) term: u64,
    pub(crate) generation: u64,
}

impl<S: Storage> Replica<S> {
    pub(crate) fn new(
        id: u64,
        node: RawNode<SharedStore<S>>,
        store: Rc<LogStore<S>>,
        hard_file: HardStateFile<S::File>,
        saved: DurableState,
    ) -> Replica<S> {
        Replica {
            id,
            node: RefCell::new(node),
            store,
            hard_file: RefCell::new(Some(hard_file)),
            saved: RefCell::new(saved),
            driving: Cell::new(false),
            outbox: RefCell::new(VecDeque::new()),
            outbox_waiters: RefCell::new(Vec::new()),
            role: Cell::new(StateRole::Follower),
            leader: Cell::new(0),
            serving: Cell::new(false),
            boot_index: Cell::new(None),
            boot_needed: Cell::new(false),
            generation: Cell::new(0),
            reads: RefCell::new(HashMap::new()),
            next_read: Cell::new(1),
            failed: RefCell::new(None),
            progress_waiters: RefCell::new(Vec::new()),
            pending: RefCell::new(None),
        }
    }

    fn wake_progress(&self) {
        for waker in self.progress_waiters.borrow_mut().drain(..) {
            waker.wake();
        }
    }

    pub(super) fn not_leader(&self) -> EngineError {
        let leader = self.leader.get();
        EngineError::NotLeader {
            leader: (leader != 0 && leader != self.id).then_some(leader),
        }
    }

    /// Whether this replica is its group's only voter.
    pub(crate) fn alone(&self) -> bool {
        let node = self.node.borrow();
        let conf = node.raft.prs().conf();
        let voters = conf.voters().ids();
        voters.len() == 1 && voters.contains(self.id) && conf.learners().is_empty()
    }
}

impl<S: Storage + Clone> Engine<S> {
    // ------------------------------------------------------------------ host interface

    /// Hands a message from a peer replica to Raft; call [`Engine::drive`] afterwards.
    ///
    /// A replica that lost its log (its data directory deleted, the node started again
    /// under the same id) holds less than its leader believes it acknowledged; raft-rs
    /// would abort on such a follower, or never send it what it lacks. Here the follower
    /// takes a heartbeat's commit only up to its own log and tells the leader what it
    /// holds (a rejection), and the leader, told by a rejection that a follower holds
    /// less than it acknowledged, counts only what it holds and probes it from there.
    /// Neither happens between replicas that kept their logs.
    pub fn step(&self, mut message: Message) {
        if Self::is_snapshot(&message) {
            // Pulled in chunks before raft-rs sees it (`raft_snapshot.rs`).
            self.snapshot_arrived(message);
            return;
        }
        let mut node = self.replica.node.borrow_mut();
        let last_index = node.raft.raft_log.last_index();
        let mut lost = None;
        match message.get_msg_type() {
            MessageType::MsgHeartbeat if message.commit > last_index => {
                lost = Some(lost_log_rejection(&message, node.raft.term, last_index));
                message.commit = last_index;
            }
            MessageType::MsgAppendResponse if message.reject => {
                let from = message.from;
                let hint = message.reject_hint;
                if let Some(progress) = node.raft.mut_prs().get_mut(from) {
                    if hint < progress.matched {
                        progress.matched = hint;
                        progress.become_probe();
                        progress.next_idx = hint + 1;
                    }
                }
            }
            _ => {}
        }
        // A message from an unknown peer or of the wrong kind is dropped: Raft tolerates
        // lost messages.
        let _ = node.step(message);
        self.stop_serving_if_deposed(&node);
        drop(node);
        if let Some(rejection) = lost {
            self.queue_messages(vec![rejection]);
        }
    }

    /// Advances Raft's logical clock by one tick (the host calls it every tick interval);
    /// call [`Engine::drive`] afterwards.
    pub fn raft_tick(&self) {
        {
            let mut node = self.replica.node.borrow_mut();
            node.tick();
            self.stop_serving_if_deposed(&node);
        }
        self.leave_joint_if_stuck();
        self.snapshot_tick();
    }

    /// Stops serving at once when a step or a tick ended this replica's lead (a higher
    /// term seen, check-quorum): the role change itself is handled by the next Ready
    /// round ([`Engine::drive`]), and until then a deposed leader must neither hand out
    /// messages nor count as the term's leader.
    fn stop_serving_if_deposed(&self, node: &RawNode<SharedStore<S>>) {
        if self.replica.serving.get() && node.raft.state != StateRole::Leader {
            self.replica.serving.set(false);
        }
    }

    /// Messages for peer replicas queued since the last call.
    pub fn take_messages(&self) -> Vec<Message> {
        self.replica.outbox.borrow_mut().drain(..).collect()
    }

    /// Resolves once a message for a peer is queued.
    pub async fn messages_queued(&self) {
        std::future::poll_fn(|context| {
            if !self.replica.outbox.borrow().is_empty() {
                return Poll::Ready(());
            }
            self.replica
                .outbox_waiters
                .borrow_mut()
                .push(context.waker().clone());
            Poll::Pending
        })
        .await
    }

    /// This replica's id in its group.
    pub fn replica_id(&self) -> u64 {
        self.replica.id
    }

    /// Whether this replica leads its group and has taken up its term (its `Boot` applied).
    pub fn is_serving_leader(&self) -> bool {
        self.replica.serving.get() && self.replica.failed.borrow().is_none()
    }

    /// Why this replica stopped, if its Ready loop failed (the host reopens it).
    pub fn failure(&self) -> Option<EngineError> {
        self.replica.failed.borrow().clone()
    }

    /// The replica this one believes leads the group, if any.
    pub fn leader_id(&self) -> Option<u64> {
        let leader = self.replica.leader.get();
        (leader != 0).then_some(leader)
    }

    /// The current Raft term.
    pub fn raft_term(&self) -> u64 {
        self.replica.node.borrow().raft.term
    }

    /// The highest Raft index applied to the state.
    pub fn applied_index(&self) -> u64 {
        self.applied_offset.get()
    }

    /// The highest Raft index known committed.
    pub fn commit_index(&self) -> u64 {
        self.replica.node.borrow().raft.raft_log.committed
    }

    /// Hands the lead to replica `to` when this replica is the serving leader, no
    /// transfer is under way, and `to` is a voter that answered within the last election
    /// timeout and holds this leader's whole log: the handover then takes one round trip
    /// (raft-rs's `MsgTimeoutNow`), and proposals refused meanwhile answer `NotLeader`.
    /// Returns whether a transfer started; call [`Engine::drive`] afterwards.
    pub fn transfer_lead(&self, to: u64) -> bool {
        if to == self.replica.id || !self.is_serving_leader() {
            return false;
        }
        let mut node = self.replica.node.borrow_mut();
        let raft = &node.raft;
        if raft.lead_transferee.is_some() {
            return false;
        }
        let last_index = raft.raft_log.last_index();
        let ready = raft.prs().conf().voters().contains(to)
            && raft
                .prs()
                .get(to)
                .is_some_and(|progress| progress.recent_active && progress.matched == last_index);
        if ready {
            node.transfer_leader(to);
        }
        ready
    }

    // ------------------------------------------------------------------ proposals

    /// Proposes `entries` as this leader's, stamped with its time `now`.
    pub(super) fn propose(&self, entries: &[Entry], now: u64) -> Result<Proposal, EngineError> {
        self.check_serving()?;
        self.propose_entries(entries, now)
    }

    /// Whether this replica may answer for the group's leader-only state (leases, the
    /// current boot's handles): it is in service, leads and has taken up its term. A
    /// follower or a leader whose `Boot` is not applied yet holds no leases, so it would
    /// call a valid handle stale.
    pub(super) fn check_serving(&self) -> Result<(), EngineError> {
        if let Some(error) = self.replica.failed.borrow().clone() {
            return Err(error);
        }
        if !self.replica.serving.get() {
            return Err(self.replica.not_leader());
        }
        Ok(())
    }

    fn propose_entries(&self, entries: &[Entry], now: u64) -> Result<Proposal, EngineError> {
        let encoded: Vec<Vec<u8>> = entries
            .iter()
            .map(|e| e.command.encode(&e.user_attributes))
            .collect();
        let records: Vec<RecordInput<'_>> = entries
            .iter()
            .zip(&encoded)
            .map(|(entry, attributes)| RecordInput {
                timestamp_ms: now,
                attributes,
                payload: &entry.body,
            })
            .collect();
        // The log stores them in batches of its own; a batch too large to store as one is
        // refused here, as before replication.
        check_batch(&records)
            .map_err(|error| super::append_error(crate::log::AppendError::Encode(error)))?;
        let raft_entries: Vec<RaftEntry> = records
            .iter()
            .map(|r| RaftEntry {
                data: encode_data(r.timestamp_ms, r.attributes, r.payload),
                ..RaftEntry::default()
            })
            .collect();
        let mut message = Message::default();
        message.set_msg_type(MessageType::MsgPropose);
        message.from = self.replica.id;
        message.set_entries(raft_entries.into());
        let (last_index, term) = {
            let mut node = self.replica.node.borrow_mut();
            match node.raft.step(message) {
                Ok(()) => {}
                Err(raft::Error::ProposalDropped) if node.raft.state == StateRole::Leader => {
                    return Err(EngineError::Busy);
                }
                Err(_) => return Err(self.replica.not_leader()),
            }
            (node.raft.raft_log.last_index(), node.raft.term)
        };
        let first_index = last_index + 1 - entries.len() as u64;
        let mut unapplied = self.unapplied.borrow_mut();
        for (position, entry) in entries.iter().enumerate() {
            unapplied.push_back(Unapplied {
                offset: first_index - 1 + position as u64,
                term,
                timestamp_ms: now,
                command: entry.command.clone(),
                message_bytes: state::message_bytes(entry.body.len(), entry.user_attributes.len()),
            });
        }
        Ok(Proposal {
            first: Offset(first_index - 1),
            last_index,
            term,
            generation: self.replica.generation.get(),
        })
    }

    /// Runs the Ready loop, then waits until the proposal is applied (or fails). When the
    /// task driving the loop is dropped while work remains, a waiter takes over.
    pub(super) async fn wait_committed(&self, proposal: &Proposal) -> Result<(), EngineError> {
        self.wait_until(proposal, || self.applied_outcome(proposal))
            .await
    }

    /// Whether `proposal` is applied: `None` not yet, `Ok` when the applied entry has the
    /// proposal's term, `NotLeader` when another leader's entry took its place.
    pub(super) fn applied_outcome(&self, proposal: &Proposal) -> Option<Result<(), EngineError>> {
        if self.applied_offset.get() < proposal.last_index {
            return None;
        }
        let term = self
            .replica
            .store
            .log()
            .term_at(Offset(proposal.last_index - 1));
        Some(if term == Some(proposal.term) {
            Ok(())
        } else {
            Err(self.replica.not_leader())
        })
    }

    /// How a send or an ack waits for its proposal before answering: committed and
    /// applied ([`Engine::wait_committed`]).
    pub(super) async fn wait_answered(&self, proposal: &Proposal) -> Result<(), EngineError> {
        if bugs::enabled(Bug::RaftConfirmBeforeMajority) {
            return self.wait_own_log(proposal).await;
        }
        self.wait_committed(proposal).await
    }

    /// The mutation [`Bug::RaftConfirmBeforeMajority`]: waits only until this replica's
    /// own log holds the proposal durably, whether or not a majority has it.
    async fn wait_own_log(&self, proposal: &Proposal) -> Result<(), EngineError> {
        self.wait_until(proposal, || {
            let log = self.replica.store.log();
            let offset = Offset(proposal.last_index - 1);
            let held = log.durable_offset() > offset && log.term_at(offset) == Some(proposal.term);
            held.then_some(Ok(()))
        })
        .await
    }

    /// Runs the Ready loop and waits until `reached` answers for the proposal, the
    /// replica fails, or it loses the lead the proposal was made under.
    pub(super) async fn wait_until(
        &self,
        proposal: &Proposal,
        reached: impl Fn() -> Option<Result<(), EngineError>>,
    ) -> Result<(), EngineError> {
        // Each pass drives, then waits for progress; a pass ends without an outcome only
        // when work is waiting and nobody drives.
        loop {
            self.drive().await;
            let outcome = std::future::poll_fn(|context| {
                if let Some(error) = self.replica.failed.borrow().clone() {
                    return Poll::Ready(Some(Err(error)));
                }
                if let Some(outcome) = reached() {
                    return Poll::Ready(Some(outcome));
                }
                if self.replica.generation.get() != proposal.generation {
                    return Poll::Ready(Some(Err(self.replica.not_leader())));
                }
                self.wait_progress(context)
            })
            .await;
            if let Some(outcome) = outcome {
                return outcome;
            }
        }
    }

    /// Registers for the next progress; `Ready(None)` asks the caller to drive, because
    /// work is waiting and nobody drives.
    fn wait_progress<T>(&self, context: &mut std::task::Context<'_>) -> Poll<Option<T>> {
        let unattended = !self.replica.driving.get()
            && (self.replica.pending.borrow().is_some() || self.replica.node.borrow().has_ready());
        if unattended {
            return Poll::Ready(None);
        }
        self.replica
            .progress_waiters
            .borrow_mut()
            .push(context.waker().clone());
        Poll::Pending
    }

    /// Confirms that this replica still leads: a heartbeat round reached a majority
    /// after the call began, and everything committed before it is applied. A receive
    /// asks first, so a deposed leader stops handing out messages.
    pub(super) async fn confirm_leadership(&self) -> Result<(), EngineError> {
        self.check_serving()?;
        if self.replica.alone() || bugs::enabled(Bug::RaftDeposedLeaderServes) {
            return Ok(());
        }
        let context_id = self.replica.next_read.get();
        self.replica.next_read.set(context_id + 1);
        let generation = self.replica.generation.get();
        self.replica.reads.borrow_mut().insert(context_id, None);
        self.replica
            .node
            .borrow_mut()
            .read_index(context_id.to_le_bytes().to_vec());
        let result = loop {
            self.drive().await;
            let outcome = std::future::poll_fn(|context| {
                if let Some(error) = self.replica.failed.borrow().clone() {
                    return Poll::Ready(Some(Err(error)));
                }
                if self.replica.generation.get() != generation || !self.replica.serving.get() {
                    return Poll::Ready(Some(Err(self.replica.not_leader())));
                }
                let index = self
                    .replica
                    .reads
                    .borrow()
                    .get(&context_id)
                    .copied()
                    .flatten();
                if index.is_some_and(|index| self.applied_offset.get() >= index) {
                    return Poll::Ready(Some(Ok(())));
                }
                self.wait_progress(context)
            })
            .await;
            if let Some(outcome) = outcome {
                break outcome;
            }
        };
        self.replica.reads.borrow_mut().remove(&context_id);
        result
    }

    // ------------------------------------------------------------------ the Ready loop

    /// Handles everything Raft has ready: sends, persists, applies. Returns at once when
    /// another task is already doing so (it will see this task's work).
    pub async fn drive(&self) {
        if self.replica.driving.replace(true) {
            return;
        }
        // However this ends, dropped at an `.await` included, the next caller may drive.
        let _guard = DrivingGuard(&self.replica);
        let result = self.drive_rounds().await;
        if let Err(error) = result {
            self.replica.failed.replace(Some(error));
            self.replica.wake_progress();
            self.notify();
        }
    }

    async fn drive_rounds(&self) -> Result<(), EngineError> {
        loop {
            if self.replica.failed.borrow().is_some() {
                return Ok(());
            }
            let pending = self.replica.pending.borrow().clone();
            if let Some(pending) = pending {
                self.finish_ready(pending).await?;
                self.replica.pending.replace(None);
                continue;
            }
            if self.replica.boot_needed.replace(false) {
                self.propose_boot();
            }
            if self.replica.store.take_fresh_snapshot_wanted() {
                // A follower needs a Raft snapshot and the newest engine snapshot's
                // configuration is unknown (taken before a restart): take one now.
                self.snapshot().await?;
            }
            let Some(pending) = self.take_ready()? else {
                return Ok(());
            };
            self.replica.pending.replace(Some(pending));
        }
    }

    fn propose_boot(&self) {
        if self.replica.role.get() != StateRole::Leader {
            return;
        }
        // A boot marks the new leader's epoch: handles from before it are stale.
        if let Ok(proposal) = self.propose_entries(&[Entry::plain(Command::Boot)], 0) {
            self.replica.boot_index.set(Some(proposal.last_index));
        }
    }

    /// The synchronous half of a Ready: everything up to handing it back to raft-rs.
    fn take_ready(&self) -> Result<Option<PendingReady>, EngineError> {
        let mut ready = {
            let mut node = self.replica.node.borrow_mut();
            if !node.has_ready() {
                return Ok(None);
            }
            node.ready()
        };
        self.queue_messages(ready.take_messages());
        if let Some(soft) = ready.ss() {
            self.on_role(soft.leader_id, soft.raft_state);
        }
        for read in ready.take_read_states() {
            if let Ok(bytes) = <[u8; 8]>::try_from(read.request_ctx.as_slice()) {
                let id = u64::from_le_bytes(bytes);
                if let Some(slot) = self.replica.reads.borrow_mut().get_mut(&id) {
                    *slot = Some(read.index);
                }
            }
        }
        let install = self.snapshot_in_ready(ready.snapshot())?;
        let committed = ready.take_committed_entries();
        let conf_changed = self.apply_committed(&committed)?;
        let entries = ready.take_entries();
        let mut conf_changed = conf_changed;
        if bugs::enabled(Bug::RaftApplyUncommitted)
            && entries
                .first()
                .is_some_and(|first| first.index <= self.applied_offset.get() + 1)
        {
            conf_changed |= self.apply_committed(&entries)?;
        }
        self.drop_replaced(&entries);
        self.replica.store.stage(entries);
        let mut new_vote = false;
        if let Some(hard) = ready.hs() {
            let saved = self.replica.saved.borrow();
            new_vote = hard.term != saved.hard.term || hard.vote != saved.hard.vote;
            self.replica.store.set_hard_state(hard);
        }
        let persisted_messages = ready.take_persisted_messages();
        let number = ready.number();
        {
            let mut node = self.replica.node.borrow_mut();
            node.advance_append_async(ready);
            if let Some(last) = committed.last() {
                node.advance_apply_to(last.index);
            }
        }
        Ok(Some(PendingReady {
            number,
            persisted_messages,
            new_vote,
            conf_changed,
            install,
        }))
    }

    /// The asynchronous half: persist entries and state, then tell raft-rs.
    ///
    /// A new term or vote is saved before the entries: the log must never hold an entry
    /// of a term the state file has not reached (a crash between the two would leave a
    /// replica that forgot its vote in a term it already wrote entries for, and could
    /// vote twice in it). That early save keeps the commit index last saved, since the
    /// Ready's commit may cover the entries it brings.
    async fn finish_ready(&self, pending: PendingReady) -> Result<(), EngineError> {
        let store = &self.replica.store;
        let new_vote = pending.new_vote && !bugs::enabled(Bug::RaftVoteWithoutPersisting);
        if new_vote {
            let staged = store.durable().hard;
            self.save_durable_with(|saved| {
                let mut early = saved.clone();
                early.hard.term = staged.term;
                early.hard.vote = staged.vote;
                Some(early)
            })
            .await?;
        }
        if let Some(index) = pending.install {
            self.install_snapshot(index).await?;
        }
        store.persist().await.map_err(persist_fault)?;
        let commit = store.durable().hard.commit;
        let saved_commit = self.replica.saved.borrow().hard.commit;
        let lagging = commit >= saved_commit + crate::limits::REPLICA_COMMIT_SAVE_EVERY;
        if new_vote || pending.conf_changed || lagging {
            // The configuration is the one applied so far: the saved commit index goes no
            // further, so that a restart (which takes the saved commit as applied) never
            // skips a membership entry between the two.
            let mut durable = store.durable();
            durable.hard.commit = durable.hard.commit.min(self.applied_offset.get());
            self.save_durable(durable).await?;
        }
        {
            let mut node = self.replica.node.borrow_mut();
            node.on_persist_ready(pending.number);
            if let Some(index) = pending.install {
                node.advance_apply_to(index);
            }
        }
        self.queue_messages(pending.persisted_messages);
        for (request, context) in store.take_fetch_requests() {
            if store.fetch(request).await.is_ok() {
                self.replica.node.borrow_mut().on_entries_fetched(context);
            }
        }
        Ok(())
    }

    pub(super) async fn save_durable(&self, durable: DurableState) -> Result<(), EngineError> {
        self.save_durable_with(|_| Some(durable)).await
    }

    /// Saves what `next` makes of the state last saved, one save at a time: it waits
    /// while another task saves, and `next` sees the state that save left (so a save
    /// never puts back an older term or vote). `None` saves nothing.
    pub(super) async fn save_durable_with(
        &self,
        next: impl FnOnce(&DurableState) -> Option<DurableState>,
    ) -> Result<(), EngineError> {
        let mut turn = std::future::poll_fn(|context| {
            if let Some(file) = self.replica.hard_file.borrow_mut().take() {
                return Poll::Ready(SaveTurn {
                    replica: &self.replica,
                    file: Some(file),
                });
            }
            self.replica
                .progress_waiters
                .borrow_mut()
                .push(context.waker().clone());
            Poll::Pending
        })
        .await;
        let Some(durable) = next(&self.replica.saved.borrow()) else {
            return Ok(());
        };
        let file = turn.file.as_mut().expect("held until dropped");
        file.save(&durable)
            .await
            .map_err(|error| EngineError::Storage(StorageFault::Replica(error.to_string())))?;
        self.replica.saved.replace(durable);
        Ok(())
    }

    /// Records that the engine snapshot at `applied` exists: the saved commit index
    /// reaches it, with the configuration as of it (`conf`), so that a restart from
    /// that snapshot replays no membership entry the saved configuration lacks.
    pub(super) async fn save_snapshot_point(
        &self,
        applied: u64,
        conf: raft::prelude::ConfState,
    ) -> Result<(), EngineError> {
        self.save_durable_with(|saved| {
            (saved.hard.commit < applied).then(|| {
                let mut next = saved.clone();
                next.hard.commit = applied;
                next.conf = conf;
                next
            })
        })
        .await
    }

    fn queue_messages(&self, messages: Vec<Message>) {
        if messages.is_empty() {
            return;
        }
        let mut outbox = self.replica.outbox.borrow_mut();
        for message in messages {
            if outbox.len() >= REPLICA_OUTBOX_MAX {
                outbox.pop_front();
            }
            outbox.push_back(message);
        }
        drop(outbox);
        for waker in self.replica.outbox_waiters.borrow_mut().drain(..) {
            waker.wake();
        }
    }

    /// A role change: a new leader resets the leader-only state and proposes its `Boot`;
    /// a deposed one fails what it proposed and forgets its leases.
    fn on_role(&self, leader: u64, role: StateRole) {
        let was_leader = self.replica.role.get() == StateRole::Leader;
        self.replica.role.set(role);
        self.replica.leader.set(leader);
        if was_leader && role != StateRole::Leader {
            self.replica
                .generation
                .set(self.replica.generation.get() + 1);
            self.replica.serving.set(false);
            self.replica.boot_index.set(None);
            // Proposals of the old term apply, if they commit, from their entries.
            self.unapplied.borrow_mut().clear();
            self.state.borrow_mut().reset_leader_state();
            self.replica.wake_progress();
            self.notify();
        }
        if !was_leader && role == StateRole::Leader {
            self.state.borrow_mut().reset_leader_state();
            self.replica.boot_needed.set(true);
        }
    }

    /// Forgets this leader's proposals that new entries replace (they never commit).
    fn drop_replaced(&self, entries: &[RaftEntry]) {
        let Some(first) = entries.first() else {
            return;
        };
        let mut unapplied = self.unapplied.borrow_mut();
        let position = unapplied.partition_point(|u| u.offset + 1 < first.index);
        let replaced = unapplied
            .iter()
            .skip(position)
            .zip(entries)
            .any(|(u, e)| u.offset + 1 != e.index || u.term != e.term);
        if replaced {
            unapplied.truncate(position);
        }
    }

    /// Applies committed entries in index order; answers whether membership changed.
    fn apply_committed(&self, entries: &[RaftEntry]) -> Result<bool, EngineError> {
        let mut conf_changed = false;
        let mut applied_any = false;
        for entry in entries {
            let offset = entry.index - 1;
            if offset < self.applied_offset.get() {
                continue;
            }
            debug_assert_eq!(offset, self.applied_offset.get(), "entries apply in order");
            match entry.get_entry_type() {
                EntryType::EntryNormal => self.apply_normal(entry)?,
                EntryType::EntryConfChange | EntryType::EntryConfChangeV2 => {
                    self.apply_membership(entry)?;
                    conf_changed = true;
                }
            }
            self.applied_offset.set(offset + 1);
            self.applied_since_snapshot
                .set(self.applied_since_snapshot.get() + 1);
            applied_any = true;
        }
        if applied_any {
            self.replica.store.set_applied(self.applied_offset.get());
            self.replica.wake_progress();
            self.notify();
        }
        Ok(conf_changed)
    }

    fn apply_normal(&self, entry: &RaftEntry) -> Result<(), EngineError> {
        let offset = entry.index - 1;
        let own = {
            let mut unapplied = self.unapplied.borrow_mut();
            match unapplied.front() {
                Some(u) if u.offset == offset && u.term == entry.term => unapplied.pop_front(),
                _ => None,
            }
        };
        let (command, timestamp_ms, message_bytes) = match own {
            Some(u) => (u.command, u.timestamp_ms, u.message_bytes),
            None if entry.data.is_empty() => (Command::RaftNoop, 0, 0),
            None => decode_entry(entry)?,
        };
        self.state
            .borrow_mut()
            .apply(&command, MessageId(offset), timestamp_ms, message_bytes);
        if command == Command::Boot
            && self.replica.boot_index.get() == Some(entry.index)
            && self.replica.role.get() == StateRole::Leader
        {
            self.replica.serving.set(true);
        }
        Ok(())
    }

    fn apply_membership(&self, entry: &RaftEntry) -> Result<(), EngineError> {
        let bad = || {
            EngineError::Storage(StorageFault::Replica(format!(
                "membership entry {} does not decode",
                entry.index
            )))
        };
        let change = if entry.get_entry_type() == EntryType::EntryConfChangeV2 {
            ConfChangeV2::parse_from_bytes(&entry.data).map_err(|_| bad())?
        } else {
            raft_proto::ConfChangeI::into_v2(
                ConfChange::parse_from_bytes(&entry.data).map_err(|_| bad())?,
            )
        };
        let mut node = self.replica.node.borrow_mut();
        let conf = node
            .apply_conf_change(&change)
            .map_err(|error| EngineError::Storage(StorageFault::Replica(error.to_string())))?;
        step_down_if_removed(&mut node);
        drop(node);
        self.replica.store.set_conf_state(conf);
        Ok(())
    }
}

/// A leader that applied a configuration without itself as a voter stops leading (raft-rs
/// leaves that to its host): it first asks the voter that holds the most of its log to
/// campaign at once (`MsgTimeoutNow` when that voter holds the whole log), then becomes a
/// follower of its term. The change can reach a leader that never proposed it: one
/// leader proposes removing a follower, loses the lead, and that follower, now leading,
/// commits its own removal.
fn step_down_if_removed<S: Storage>(node: &mut RawNode<SharedStore<S>>) {
    let raft = &node.raft;
    let id = raft.id;
    if raft.state != StateRole::Leader || raft.prs().conf().voters().contains(id) {
        return;
    }
    let voters = raft.prs().conf().voters();
    let successor = raft
        .prs()
        .iter()
        .filter(|(other, _)| **other != id && voters.contains(**other))
        .max_by_key(|(_, progress)| progress.matched)
        .map(|(other, _)| *other);
    if let Some(successor) = successor {
        node.transfer_leader(successor);
    }
    let term = node.raft.term;
    node.raft.become_follower(term, raft::INVALID_ID);
}

/// The right to save the Raft state file: the file, handed back (and waiters woken) when
/// the save ends or its task is dropped.
struct SaveTurn<'a, S: Storage> {
    replica: &'a Replica<S>,
    file: Option<HardStateFile<S::File>>,
}

impl<S: Storage> Drop for SaveTurn<'_, S> {
    fn drop(&mut self) {
        self.replica.hard_file.replace(self.file.take());
        self.replica.wake_progress();
    }
}

/// Clears the driving flag when the Ready loop ends or is dropped.
struct DrivingGuard<'a, S: Storage>(&'a Replica<S>);

impl<S: Storage> Drop for DrivingGuard<'_, S> {
    fn drop(&mut self) {
        self.0.driving.set(false);
        // A waiter may have to take over if this driver was dropped with work left.
        self.0.wake_progress();
    }
}

/// A follower's answer to a heartbeat whose commit lies past its log: a rejected append
/// at that index naming the follower's last index, as a follower that lacks entries
/// answers an append.
fn lost_log_rejection(heartbeat: &Message, term: u64, last_index: u64) -> Message {
    let mut rejection = Message::default();
    rejection.set_msg_type(MessageType::MsgAppendResponse);
    rejection.to = heartbeat.from;
    rejection.from = heartbeat.to;
    rejection.term = term.max(heartbeat.term);
    rejection.index = heartbeat.commit;
    rejection.reject = true;
    rejection.reject_hint = last_index;
    rejection
}

/// What the asynchronous half of a Ready still has to do.
#[derive(Clone)]
pub(crate) struct PendingReady {
    number: u64,
    persisted_messages: Vec<Message>,
    /// The Ready raised the term or cast a vote: saved before its entries are written.
    new_vote: bool,
    /// A membership change was applied: the configuration is saved after the entries.
    conf_changed: bool,
    /// The Raft snapshot (its index) the Ready brought: installed before the entries.
    install: Option<u64>,
}

/// A committed command entry this replica did not propose: decoded from its bytes.
fn decode_entry(entry: &RaftEntry) -> Result<(Command, u64, u32), EngineError> {
    let bad = |what: &str| {
        EngineError::Storage(StorageFault::Replica(format!(
            "raft entry {}: {what}",
            entry.index
        )))
    };
    let mut scratch = Vec::new();
    let record = record_of(entry, &mut scratch).map_err(|error| bad(&error.to_string()))?;
    let (command, user_attributes) =
        Command::decode(record.attributes).map_err(|_| bad("undecodable command"))?;
    let message_bytes = state::message_bytes(record.payload.len(), user_attributes.len());
    Ok((command, record.timestamp_ms, message_bytes))
}

/// A failed persist as the engine's storage fault: a log failure poisons the log (the
/// host reopens the engine), anything else is the replica's.
fn persist_fault(error: PersistError) -> EngineError {
    match error {
        PersistError::Log(error) | PersistError::Append(AppendError::Poisoned(error)) => {
            EngineError::Storage(StorageFault::Log(error))
        }
        other => EngineError::Storage(StorageFault::Replica(other.to_string())),
    }
}
