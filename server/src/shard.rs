//! One shard: a glommio executor pinned to a core that owns some partitions (their
//! engines), serves HTTP on the shared port, executes calls other shards forward to it
//! and forwards its own calls for partitions it does not own. Everything here is
//! single-threaded; shards share nothing but [`Shared`] and the channel mesh.
//!
//! Partition `p` belongs to shard `p % shards`. Shard 0 owns partition 0, which is the
//! metadata truth: every queue and group change runs on shard 0, one at a time, on
//! partition 0 first and then on the others in order, so every partition's sequence of
//! metadata changes is a prefix of partition 0's and ids agree. A crash between
//! partitions leaves a gap that start-up repairs ([`Shard::reconcile`]); the order and
//! the repair are `sluice_core::engine::metadata`'s (shared with `LocalNode`).

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use glommio::channels::channel_mesh::{Receivers, Senders};
use glommio::channels::local_channel::{self, LocalSender};
use sluice_core::engine::metadata::MetadataGate;
use sluice_core::engine::types::{EngineError, GroupStart, QueueId};
use sluice_core::engine::{Engine, EngineConfig, EngineLimits, QueueInfo};
use sluice_core::log::{LogConfig, VerifyOnOpen};
use sluice_node::{Lane, NodeError};
use sluice_shard::DmaStorage;

use crate::calls::{
    Call, Envelope, MetaCall, MetaError, MetaReply, PartitionCall, PartitionReply, Reply,
};
use crate::datadir::partition_dir;
use crate::meta::ShardPartitions;
use crate::shared::{Directory, Shared};

pub type PartitionEngine = Engine<DmaStorage>;

/// Engines take a snapshot after this many applied records.
const SNAPSHOT_EVERY_RECORDS: u64 = 200_000;
/// A ticker sleeps at most this long, so time-driven changes are at most this late.
const TICK_INTERVAL_MS: u64 = 250;
/// After a storage fault a partition is reopened after this pause.
const REOPEN_PAUSE_MS: u64 = 200;

pub fn engine_config(segment_bytes_max: u64) -> EngineConfig {
    EngineConfig {
        log: LogConfig {
            segment_bytes_max,
            index_interval_bytes: 64 * 1024,
            preallocate_bytes: 16 << 20,
            verify_on_open: VerifyOnOpen::Tail,
        },
        limits: EngineLimits {
            // Tenant quotas (lower) are checked by the metadata path; these are ceilings.
            groups_per_queue_max: 8,
            visibility_ms_min: 1_000,
            ..EngineLimits::dms()
        },
        snapshot_every_records: SNAPSHOT_EVERY_RECORDS,
    }
}

/// A partition this shard owns: its engine, absent while it reopens after a fault.
struct Slot {
    storage: DmaStorage,
    engine: Option<Rc<PartitionEngine>>,
}

pub struct Shard {
    pub index: usize,
    pub shared: Arc<Shared>,
    slots: RefCell<BTreeMap<u32, Slot>>,
    senders: Senders<Envelope>,
    pending: RefCell<HashMap<u64, LocalSender<Reply>>>,
    next_call: Cell<u64>,
    /// Metadata changes one at a time (shard 0 only), and whether one failed part-way
    /// so that the next one repairs the partitions first (see [`Shard::reconcile`]).
    meta_gate: MetadataGate,
    rotation: Cell<u64>,
    /// Requests being served by this shard's HTTP connections.
    pub requests_inflight: Cell<u32>,
    pub connections_open: Cell<u32>,
}

impl Shard {
    /// Queue time, epoch milliseconds: the wall clock at start advanced by the monotonic
    /// clock (steps of the wall clock do not move it; `sluice_core::clock`).
    pub fn now_ms(&self) -> u64 {
        self.shared.queue_ms()
    }

    pub fn partition_count(&self) -> u32 {
        self.shared.facts.partitions
    }

    pub fn next_rotation(&self) -> u64 {
        let rotation = self.rotation.get();
        self.rotation.set(rotation.wrapping_add(1));
        rotation
    }

    /// Partitions this shard owns, in order.
    pub fn local_partitions(&self) -> Vec<u32> {
        self.slots.borrow().keys().copied().collect()
    }

    pub fn owns(&self, partition: u32) -> bool {
        self.shared.owner_of(partition) == self.index
    }

    fn engine(&self, partition: u32) -> Result<Rc<PartitionEngine>, NodeError> {
        let slots = self.slots.borrow();
        let slot = slots.get(&partition).expect("called on the owner");
        slot.engine.clone().ok_or(NodeError::Unavailable(
            "the partition is recovering from a storage fault",
        ))
    }

    /// Storage faults leave an engine unusable until reopened: take it out of service.
    fn check_fault<T>(
        &self,
        partition: u32,
        result: Result<T, EngineError>,
    ) -> Result<T, NodeError> {
        if let Err(EngineError::Storage(detail)) = &result {
            eprintln!("sluice: partition {partition}: storage fault, reopening: {detail}");
            if let Some(slot) = self.slots.borrow_mut().get_mut(&partition) {
                slot.engine = None;
            }
        }
        result.map_err(NodeError::Engine)
    }

    // ------------------------------------------------------------------ start-up

    /// Opens this shard's partitions. Runs before the mesh is used.
    pub async fn open(
        index: usize,
        shared: Arc<Shared>,
        senders: Senders<Envelope>,
    ) -> Result<Rc<Shard>, String> {
        let shard = Rc::new(Shard {
            index,
            shared: shared.clone(),
            slots: RefCell::new(BTreeMap::new()),
            senders,
            pending: RefCell::new(HashMap::new()),
            next_call: Cell::new(0),
            // Not known to agree until start-up has repaired them (shard 0, before serving).
            meta_gate: MetadataGate::new(true),
            rotation: Cell::new(index as u64),
            requests_inflight: Cell::new(0),
            connections_open: Cell::new(0),
        });
        let config = engine_config(shared.config.segment_bytes_max);
        for partition in 0..shared.facts.partitions {
            if !shard.owns(partition) {
                continue;
            }
            let dir = partition_dir(&shared.config.data_dir, partition);
            let storage = DmaStorage::create_dir_all(&dir)
                .map_err(|e| format!("partition {partition} at {}: {e}", dir.display()))?;
            let metrics_of = shared.clone();
            storage.observe_syncs(Rc::new(move |took| {
                metrics_of.metrics.fsync_seconds.observe(took.as_secs_f64());
            }));
            let engine = Engine::open(storage.clone(), config, shard.now_ms())
                .await
                .map_err(|e| format!("partition {partition} at {}: {e}", dir.display()))?;
            shard.slots.borrow_mut().insert(
                partition,
                Slot {
                    storage,
                    engine: Some(Rc::new(engine)),
                },
            );
        }
        Ok(shard)
    }

    /// Serves forwarded calls and answers from one peer until the mesh closes.
    pub fn spawn_mesh_receiver(self: &Rc<Shard>, receivers: Rc<Receivers<Envelope>>, peer: usize) {
        let shard = self.clone();
        glommio::spawn_local(async move {
            // Runs for the life of the shard: one message per iteration, ends when the
            // peer's side of the mesh closes.
            while let Ok(Some(envelope)) = receivers.recv_from(peer).await {
                match envelope {
                    Envelope::Request { id, call } => {
                        let shard = shard.clone();
                        glommio::spawn_local(async move {
                            let reply = shard.execute(call).await;
                            let response = Envelope::Response { id, reply };
                            // A peer that stopped listening no longer waits for it.
                            let _ = shard.senders.send_to(peer, response).await;
                        })
                        .detach();
                    }
                    Envelope::Response { id, reply } => {
                        if let Some(waiter) = shard.pending.borrow_mut().remove(&id) {
                            // The caller may have given up (a long poll that ended).
                            let _ = waiter.try_send(reply);
                        }
                    }
                }
            }
        })
        .detach();
    }

    /// One ticker per owned partition: drives time into the engine, reopens it after a
    /// storage fault.
    pub fn spawn_tickers(self: &Rc<Shard>) {
        for partition in self.local_partitions() {
            let shard = self.clone();
            glommio::spawn_local(async move { shard.tick_loop(partition).await }).detach();
        }
    }

    async fn tick_loop(self: Rc<Shard>, partition: u32) {
        // Runs until the shard stops; each pass sleeps at most TICK_INTERVAL_MS.
        while !self.shared.stopping() {
            let engine = match self.engine(partition) {
                Ok(engine) => engine,
                Err(_) => {
                    glommio::timer::sleep(Duration::from_millis(REOPEN_PAUSE_MS)).await;
                    self.reopen(partition).await;
                    continue;
                }
            };
            let now = self.now_ms();
            let result = engine.tick(now).await;
            if self.check_fault(partition, result).is_err() {
                continue;
            }
            // Not woken by changes: a deadline set since (a new lease) is at most
            // TICK_INTERVAL_MS late, and the hot path pays no wake-up per request.
            let until = engine
                .next_deadline_ms()
                .unwrap_or(u64::MAX)
                .min(now + TICK_INTERVAL_MS);
            let pause = Duration::from_millis(until.saturating_sub(now).max(1));
            glommio::timer::sleep(pause).await;
        }
    }

    async fn reopen(&self, partition: u32) {
        let storage = self.slots.borrow()[&partition].storage.clone();
        let config = engine_config(self.shared.config.segment_bytes_max);
        match Engine::open(storage, config, self.now_ms()).await {
            Ok(engine) => {
                eprintln!("sluice: partition {partition} reopened");
                if let Some(slot) = self.slots.borrow_mut().get_mut(&partition) {
                    slot.engine = Some(Rc::new(engine));
                }
            }
            Err(error) => eprintln!("sluice: partition {partition}: reopen failed: {error}"),
        }
    }

    /// Writes a snapshot of every owned partition (graceful shutdown).
    pub async fn sync_all(&self) {
        for partition in self.local_partitions() {
            if let Ok(engine) = self.engine(partition) {
                if let Err(error) = engine.snapshot().await {
                    eprintln!("sluice: partition {partition}: snapshot at shutdown: {error}");
                }
            }
        }
    }

    // ------------------------------------------------------------------ calls

    async fn execute(self: &Rc<Shard>, call: Call) -> Reply {
        match call {
            Call::Partition { partition, call } => {
                Reply::Partition(self.execute_partition(partition, call).await)
            }
            Call::Meta(call) => Reply::Meta(self.execute_meta(call).await),
        }
    }

    /// Sends a call to another shard and waits for its answer.
    async fn remote(&self, shard: usize, call: Call) -> Result<Reply, NodeError> {
        let peer = self.shared.peer_of_shard[shard].load(Ordering::Acquire);
        assert!(
            peer != usize::MAX,
            "every shard joined the mesh before serving"
        );
        let id = self.next_call.get();
        self.next_call.set(id + 1);
        let (sender, receiver) = local_channel::new_bounded(1);
        self.pending.borrow_mut().insert(id, sender);
        if self
            .senders
            .send_to(peer, Envelope::Request { id, call })
            .await
            .is_err()
        {
            self.pending.borrow_mut().remove(&id);
            return Err(NodeError::Unavailable("another shard is not reachable"));
        }
        receiver
            .recv()
            .await
            .ok_or(NodeError::Unavailable("another shard dropped the call"))
    }

    /// Runs a call on a partition, here or on its owner.
    pub async fn call_partition(
        self: &Rc<Shard>,
        partition: u32,
        call: PartitionCall,
    ) -> Result<PartitionReply, NodeError> {
        let owner = self.shared.owner_of(partition);
        if owner == self.index {
            return self.execute_partition(partition, call).await;
        }
        match self
            .remote(owner, Call::Partition { partition, call })
            .await?
        {
            Reply::Partition(result) => result,
            Reply::Meta(_) => unreachable!("a partition call answers with a partition reply"),
        }
    }

    pub async fn call_meta(self: &Rc<Shard>, call: MetaCall) -> Result<MetaReply, MetaError> {
        if self.index == 0 {
            return self.execute_meta(call).await;
        }
        match self.remote(0, Call::Meta(call)).await? {
            Reply::Meta(result) => result,
            Reply::Partition(_) => unreachable!("a metadata call answers with a metadata reply"),
        }
    }

    async fn execute_partition(
        &self,
        partition: u32,
        call: PartitionCall,
    ) -> Result<PartitionReply, NodeError> {
        let engine = self.engine(partition)?;
        let now = self.now_ms();
        let result = match call {
            PartitionCall::CreateQueue {
                id,
                tenant,
                name,
                config,
                meta,
            } => engine
                .create_queue_with_id(id, &tenant, &name, config, meta, now)
                .await
                .map(PartitionReply::Queue),
            PartitionCall::DeleteQueue { queue } => engine
                .delete_queue(queue, now)
                .await
                .map(|_| PartitionReply::Done),
            PartitionCall::CreateGroup { id, queue, name } => engine
                .create_group_with_id(id, queue, &name, GroupStart::Oldest, now)
                .await
                .map(PartitionReply::Group),
            PartitionCall::DeleteGroup { queue, group } => engine
                .delete_group(queue, group, now)
                .await
                .map(|_| PartitionReply::Done),
            PartitionCall::Send { queue, messages } => engine
                .send(queue, &messages, now)
                .await
                .map(PartitionReply::Sent),
            PartitionCall::Cancel { queue, message } => engine
                .cancel(queue, message, now)
                .await
                .map(|()| PartitionReply::Done),
            PartitionCall::Receive {
                queue,
                group,
                lane,
                request,
            } => {
                let seen = engine.change_count();
                let got = match lane {
                    Lane::Main => engine.receive(queue, group, &request, now).await,
                    Lane::DeadLetters => engine.receive_dead(queue, group, &request, now).await,
                };
                got.map(|deliveries| PartitionReply::Received(deliveries, seen))
            }
            PartitionCall::Ack { lane, acks } => {
                assert!(
                    acks.iter()
                        .all(|(h, _)| h.dead_letter == (lane == Lane::DeadLetters)),
                    "the adapter checks handles against the lane"
                );
                engine
                    .ack(&acks, true, now)
                    .await
                    .map(PartitionReply::Acked)
            }
            PartitionCall::WaitChange { seen, wait_ms } => {
                let sleep = async {
                    glommio::timer::sleep(Duration::from_millis(wait_ms)).await;
                };
                futures_lite::future::or(sleep, engine.changed(seen)).await;
                Ok(PartitionReply::Changed)
            }
            PartitionCall::Counts { queue } => engine.queue_info(queue).and_then(|info| {
                let stats = info
                    .groups
                    .iter()
                    .map(|(group, _)| engine.group_stats(queue, *group).map(|s| (*group, s)))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(PartitionReply::Counts(info, stats))
            }),
            PartitionCall::ListQueues => {
                let infos = engine
                    .queue_ids()
                    .into_iter()
                    .map(|queue| engine.queue_info(queue).expect("listed just now"))
                    .collect();
                Ok(PartitionReply::Queues(infos))
            }
        };
        self.check_fault(partition, result)
    }

    // ------------------------------------------------------------------ metadata

    async fn list_partition(self: &Rc<Shard>, partition: u32) -> Result<Vec<QueueInfo>, NodeError> {
        match self
            .call_partition(partition, PartitionCall::ListQueues)
            .await?
        {
            PartitionReply::Queues(infos) => Ok(infos),
            other => unreachable!("ListQueues answered {other:?}"),
        }
    }

    /// Republishes the queue directory from partition 0.
    pub async fn refresh_directory(self: &Rc<Shard>) -> Result<(), NodeError> {
        assert_eq!(self.index, 0, "shard 0 owns the metadata");
        let infos = self.list_partition(0).await?;
        self.shared
            .directory
            .store(Arc::new(Directory::from_infos(infos)));
        Ok(())
    }

    async fn execute_meta(self: &Rc<Shard>, call: MetaCall) -> Result<MetaReply, MetaError> {
        assert_eq!(self.index, 0, "metadata changes run on shard 0");
        let permit = self.meta_gate.lock().await;
        match permit.repair_if_needed(&ShardPartitions(self)).await {
            Ok(repaired) => repaired
                .iter()
                .for_each(|repair| eprintln!("sluice: {repair}")),
            Err(error) => {
                eprintln!("sluice: metadata repair failed, will retry: {error}");
                return Err(NodeError::Unavailable("metadata repair pending").into());
            }
        }
        // A change that may have left the partitions apart (a storage fault or an
        // unreachable shard part-way) sets the gate's repair flag for the next one.
        let result = crate::meta::execute(self, &permit, call).await;
        // Whatever happened, partition 0 is the truth: publish what it holds now.
        self.refresh_directory().await?;
        result
    }

    /// Start-up repair: brings every other partition's queues and groups in line with
    /// partition 0's (a crash in the middle of a metadata change leaves the later
    /// partitions behind). Runs on shard 0 before anything is served.
    pub async fn reconcile(self: &Rc<Shard>) -> Result<(), String> {
        assert_eq!(self.index, 0, "shard 0 owns the metadata");
        let permit = self.meta_gate.lock().await;
        let repaired = permit
            .reconcile(&ShardPartitions(self))
            .await
            .map_err(|e| e.to_string())?;
        for repair in &repaired {
            eprintln!("sluice: {repair}");
        }
        self.refresh_directory()
            .await
            .map_err(|e| format!("{e:?}"))?;
        Ok(())
    }

    /// Every partition's counts for one queue, summed.
    pub async fn queue_counts(
        self: &Rc<Shard>,
        queue: QueueId,
    ) -> Result<Vec<PartitionReply>, NodeError> {
        let mut replies = Vec::new();
        for partition in 0..self.partition_count() {
            replies.push(
                self.call_partition(partition, PartitionCall::Counts { queue })
                    .await?,
            );
        }
        Ok(replies)
    }
}
