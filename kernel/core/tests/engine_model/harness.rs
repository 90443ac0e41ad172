//! The harness of the engine model test: runs each operation on the real engine (on a
//! simulated disk) and on the model with the same `now`, and fails on the first
//! observable difference. Engine ids are mapped onto the model's slots and indexes.

use std::collections::HashMap;

use sluice_core::engine::types::{
    AckKind, Delay, Delivery, EngineError, GroupId, GroupStart, MessageId, QueueConfig, QueueId,
    ReceiptHandle, SendInput,
};
use sluice_core::engine::{Engine, EngineConfig, EngineLimits, ReceiveRequest};
use sluice_core::limits::QUEUE_META_BYTES_MAX;
use sluice_core::log::{LogConfig, VerifyOnOpen};
use sluice_core::sim_disk::{block_on, SimDisk};

use crate::model::{Budget, Handle, Model, Outgoing, Picked};
use crate::ops::{
    filter_table, BudgetSpec, DelaySpec, FilterChoice, MessageSpec, Op, Pick, QueueSpec,
};
use crate::{FIFO_GROUPS, MESSAGES_MAX, START_MS, TAGS};

pub fn engine_config(snapshot_every_records: u64) -> EngineConfig {
    EngineConfig {
        log: LogConfig {
            segment_bytes_max: 64 * 1024,
            index_interval_bytes: 4096,
            preallocate_bytes: 16 * 1024,
            verify_on_open: VerifyOnOpen::Tail,
            cache_bytes_max: sluice_core::limits::LOG_CACHE_BYTES_DEFAULT,
            recycle_segments_max: sluice_core::limits::LOG_RECYCLE_SEGMENTS_DEFAULT,
        },
        limits: EngineLimits {
            groups_per_queue_max: 8,
            batch_messages_max: 64,
            receive_messages_max: 64,
            // Short and few, so that cases reach repeated checks and the final drop.
            transaction_check_interval_ms: 7_000,
            transaction_checks_max: 2,
            ..EngineLimits::dms()
        },
        snapshot_every_records,
    }
}

/// A delivered handle: the engine's receipt and the model's.
struct Delivered {
    engine: ReceiptHandle,
    model: Handle,
}

pub struct Harness {
    disk: SimDisk,
    engine: Option<Engine<SimDisk>>,
    config: EngineConfig,
    model: Model,
    /// Engine ids by model slot.
    queue_ids: Vec<QueueId>,
    group_ids: Vec<Vec<GroupId>>,
    /// Model message index by engine message id, and back.
    message_index: HashMap<MessageId, usize>,
    message_ids: Vec<MessageId>,
    handles: Vec<Delivered>,
    bodies_made: u32,
    body_padding_bytes: usize,
    step: usize,
}

/// Checks that engine and model agree on success or on the error, and returns both
/// successes.
fn agree<T, U, E>(step: usize, engine: Result<T, E>, model: Result<U, E>) -> Option<(T, U)>
where
    T: std::fmt::Debug,
    U: std::fmt::Debug,
    E: std::fmt::Debug + PartialEq,
{
    match (engine, model) {
        (Ok(engine), Ok(model)) => Some((engine, model)),
        (Err(engine), Err(model)) => {
            assert_eq!(
                engine, model,
                "step {step}: engine and model fail differently"
            );
            None
        }
        (engine, model) => panic!("step {step}: engine gave {engine:?}, model {model:?}"),
    }
}

/// A body without its padding, for readable failure messages.
fn short(body: &str) -> &str {
    body.trim_end_matches('.')
}

impl Harness {
    pub fn new(seed: u64, snapshot_every_records: u64, body_padding_bytes: usize) -> Harness {
        let disk = SimDisk::new(seed);
        let config = engine_config(snapshot_every_records);
        let engine = block_on(Engine::open(disk.clone(), config, START_MS)).expect("open empty");
        let limits = config.limits;
        Harness {
            disk,
            engine: Some(engine),
            config,
            model: Model::new(
                START_MS,
                limits.groups_per_queue_max,
                limits.visibility_ms_max,
                (
                    limits.transaction_check_interval_ms,
                    limits.transaction_checks_max,
                ),
            ),
            queue_ids: Vec::new(),
            group_ids: Vec::new(),
            message_index: HashMap::new(),
            message_ids: Vec::new(),
            handles: Vec::new(),
            bodies_made: 0,
            body_padding_bytes,
            step: 0,
        }
    }

    fn engine(&self) -> &Engine<SimDisk> {
        self.engine.as_ref().expect("engine is open")
    }

    fn now(&self) -> u64 {
        self.model.now
    }

    /// A queue slot and its engine id; an id no queue has when there is no queue yet.
    fn queue_target(&self, pick: u8) -> (Option<usize>, QueueId) {
        if self.queue_ids.is_empty() {
            return (None, QueueId(u32::MAX));
        }
        let slot = usize::from(pick) % self.queue_ids.len();
        (Some(slot), self.queue_ids[slot])
    }

    fn group_target(&self, queue: Option<usize>, pick: u8) -> (Option<usize>, GroupId) {
        match queue.map(|q| &self.group_ids[q]) {
            Some(groups) if !groups.is_empty() => {
                let slot = usize::from(pick) % groups.len();
                (Some(slot), groups[slot])
            }
            _ => (None, GroupId(u32::MAX)),
        }
    }

    pub fn run(&mut self, op: &Op) {
        self.step += 1;
        match op {
            Op::CreateQueue { name, spec } => self.create_queue(*name, spec),
            Op::CreateGroup {
                queue,
                name,
                latest,
            } => self.create_group(*queue, *name, *latest),
            Op::Send { queue, messages } => self.send(*queue, messages),
            Op::Receive {
                queue,
                group,
                max,
                budget,
                visibility_ms,
                filter,
            } => {
                let budget = self.budget(*budget);
                self.receive(*queue, *group, (*max, budget), *visibility_ms, *filter);
            }
            Op::ReceiveDead {
                queue,
                group,
                follow,
                max,
                budget,
                visibility_ms,
            } => {
                let (q, g) = self.dead_letter_target(*queue, *group, *follow);
                let budget = self.budget(*budget);
                self.receive_dead(q, g, (*max, budget), *visibility_ms);
            }
            Op::Ack {
                picks,
                stop_at_first_error,
            } => self.ack(picks, *stop_at_first_error),
            Op::ChangeVisibility { pick, ms } => self.change_visibility(*pick, *ms),
            Op::Cancel { message, queue } => self.cancel(*message, *queue),
            Op::EndTransaction {
                message,
                queue,
                commit,
            } => self.end_transaction(*message, *queue, *commit),
            Op::Redrive {
                queue,
                group,
                follow,
            } => {
                let (q, g) = self.dead_letter_target(*queue, *group, *follow);
                self.redrive(q, g);
            }
            Op::Advance(ms) => self.advance(*ms),
            Op::AdvanceToEdge { edge, offset_ms } => {
                let edges = self.model.edges();
                let target = match edges.get(usize::from(*edge) % edges.len().max(1)) {
                    Some(at) => at.saturating_add_signed(i64::from(*offset_ms)),
                    None => self.now(),
                };
                self.advance(target.max(self.now()) - self.now());
            }
            Op::Snapshot => {
                let result = block_on(self.engine().snapshot());
                agree(self.step, result, Ok::<(), EngineError>(()));
            }
            Op::Crash { clean } => self.crash(*clean),
            Op::DeleteGroup { queue, group } => self.delete_group(*queue, *group),
            Op::DeleteQueue { queue } => {
                let (slot, id) = self.queue_target(*queue);
                let result = block_on(self.engine().delete_queue(id, self.now()));
                agree(self.step, result, self.model.delete_queue(slot));
            }
            Op::SetQueueMeta { queue, fill, bytes } => {
                let (slot, id) = self.queue_target(*queue);
                let meta = vec![*fill; usize::from(*bytes)];
                let result = block_on(self.engine().set_queue_meta(id, meta.clone(), self.now()));
                let expected = self.model.set_queue_meta(slot, meta, QUEUE_META_BYTES_MAX);
                agree(self.step, result, expected);
            }
            Op::SetDeadLetter { queue, max, target } => {
                let (slot, id) = self.queue_target(*queue);
                let target = target.map(|pick| self.queue_target(pick));
                let result = block_on(self.engine().set_dead_letter(
                    id,
                    *max,
                    target.map(|(_, id)| id),
                    self.now(),
                ));
                let expected = self
                    .model
                    .set_dead_letter(slot, *max, target.map(|(slot, _)| slot));
                agree(self.step, result, expected);
            }
        }
        // Dead letters moved to a target are new model messages of the same engine
        // message as the one first sent.
        for copy in &self.model.messages[self.message_ids.len()..] {
            let original = copy
                .moved_from
                .expect("only moves add messages outside sends");
            self.message_ids.push(self.message_ids[original]);
        }
        self.check_stats();
    }

    /// A byte budget in bytes: `units` plain messages of this case plus `extra`.
    fn budget(&self, spec: Option<BudgetSpec>) -> Budget {
        match spec {
            None => Budget {
                bytes_max: u64::MAX,
                oversize_first: true,
            },
            Some(spec) => {
                let plain = self.body_padding_bytes as u64 + 3;
                Budget {
                    bytes_max: u64::from(spec.units) * plain + u64::from(spec.extra),
                    oversize_first: spec.oversize_first,
                }
            }
        }
    }

    /// The queue and group slots of a followed handle, else the given ones.
    fn dead_letter_target(&self, queue: u8, group: u8, follow: Option<Pick>) -> (u8, u8) {
        let followed = follow.and_then(|pick| pick.resolve(self.handles.len()));
        match followed {
            Some(index) => {
                let handle = self.handles[index].model;
                let slot = |s: usize| u8::try_from(s).expect("few slots");
                (slot(handle.queue), slot(handle.group))
            }
            None => (queue, group),
        }
    }

    fn create_queue(&mut self, name: u8, spec: &QueueSpec) {
        let name = format!("q{name}");
        let config = QueueConfig {
            mode: spec.mode,
            retention_ms: spec.retention_ms,
            max_consume_count: spec.max_consume_count,
            retry: spec.retry,
            dedup_window_ms: spec.dedup_window_ms,
            partitions: 0,
        };
        let result = block_on(self.engine().create_queue("t", &name, config, self.now()));
        let expected = self.model.create_queue(&name, config);
        if let Some((id, slot)) = agree(self.step, result, expected) {
            assert!(!self.queue_ids.contains(&id), "queue id {id:?} reused");
            assert_eq!(slot, self.queue_ids.len());
            self.queue_ids.push(id);
            self.group_ids.push(Vec::new());
        }
    }

    fn create_group(&mut self, queue: u8, name: u8, latest: bool) {
        let (slot, id) = self.queue_target(queue);
        let name = format!("g{name}");
        let start = if latest {
            GroupStart::Latest
        } else {
            GroupStart::Oldest
        };
        let result = block_on(self.engine().create_group(id, &name, start, self.now()));
        let expected = self.model.create_group(slot, &name, start);
        if let Some((group, group_slot)) = agree(self.step, result, expected) {
            let q = slot.expect("created in a queue");
            assert!(
                self.group_ids.iter().all(|groups| !groups.contains(&group)),
                "group id {group:?} reused"
            );
            assert_eq!(group_slot, self.group_ids[q].len());
            self.group_ids[q].push(group);
        }
    }

    fn delete_group(&mut self, queue: u8, group: u8) {
        let (q, queue_id) = self.queue_target(queue);
        let (g, group_id) = self.group_target(q, group);
        let result = block_on(self.engine().delete_group(queue_id, group_id, self.now()));
        agree(self.step, result, self.model.delete_group(q, g));
    }

    fn send(&mut self, queue: u8, specs: &[MessageSpec]) {
        if self.model.messages.len() >= MESSAGES_MAX {
            return;
        }
        let (slot, id) = self.queue_target(queue);
        let now = self.now();
        let (inputs, outgoing): (Vec<SendInput>, Vec<Outgoing>) =
            specs.iter().map(|spec| self.send_input(spec)).unzip();
        let result = block_on(self.engine().send(id, &inputs, now));
        let expected = self.model.send(slot, outgoing);
        let Some((outcomes, expected)) = agree(self.step, result, expected) else {
            return;
        };
        assert_eq!(outcomes.len(), expected.len());
        for (outcome, (message, duplicate)) in outcomes.iter().zip(expected) {
            let step = self.step;
            assert_eq!(outcome.duplicate, duplicate, "step {step}: duplicate flag");
            if duplicate {
                let named = self.message_index.get(&outcome.message_id);
                assert_eq!(
                    named,
                    Some(&message),
                    "step {step}: duplicate names another message"
                );
            } else {
                assert_eq!(message, self.message_ids.len());
                let previous = self.message_index.insert(outcome.message_id, message);
                assert!(previous.is_none(), "step {step}: message id reused");
                self.message_ids.push(outcome.message_id);
            }
        }
    }

    /// One message to send, for the engine and for the model, with a fresh body.
    fn send_input(&mut self, spec: &MessageSpec) -> (SendInput, Outgoing) {
        let padding = ".".repeat(self.body_padding_bytes + usize::from(spec.extra_bytes));
        let body = format!("m{}{padding}", self.bodies_made);
        self.bodies_made += 1;
        let delay = match spec.delay {
            DelaySpec::None => Delay::None,
            DelaySpec::Ms(ms) => Delay::Ms(ms),
            DelaySpec::At(offset) => Delay::At(self.now().saturating_add_signed(offset)),
            DelaySpec::Half(check_after_ms) => Delay::Half { check_after_ms },
        };
        let tags: Vec<String> = spec
            .tags
            .iter()
            .map(|t| TAGS[usize::from(*t)].to_string())
            .collect();
        let fifo_group = spec
            .fifo_group
            .map(|g| FIFO_GROUPS[usize::from(g)].to_string());
        let dedup_id = spec.dedup_id.map(|d| format!("d{d}"));
        let input = SendInput {
            body: body.clone().into_bytes(),
            attributes: Vec::new(),
            tags: tags.clone(),
            fifo_group: fifo_group.clone(),
            delay,
            dedup_id: dedup_id.clone(),
        };
        let outgoing = Outgoing {
            body,
            tags,
            fifo_group,
            delay,
            dedup_id,
        };
        (input, outgoing)
    }

    fn receive(
        &mut self,
        queue: u8,
        group: u8,
        (max, budget): (u32, Budget),
        visibility_ms: u64,
        choice: FilterChoice,
    ) {
        let (q, queue_id) = self.queue_target(queue);
        let (g, group_id) = self.group_target(q, group);
        let filter = match choice {
            FilterChoice::None => None,
            FilterChoice::Own => Some(filter_table(q.unwrap_or(0) + g.unwrap_or(0) + 1)),
            FilterChoice::Table(index) => Some(filter_table(usize::from(index))),
        };
        let request = ReceiveRequest {
            attempt: None,
            max_messages: max,
            bytes_max: budget.bytes_max,
            oversize_first: budget.oversize_first,
            visibility_ms,
            filter: filter.clone(),
        };
        let now = self.now();
        let result = block_on(self.engine().receive(queue_id, group_id, &request, now));
        let expected = self
            .model
            .receive(q, g, max, budget, visibility_ms, filter.as_ref());
        if let Some((deliveries, picked)) = agree(self.step, result, expected) {
            self.check_budget(&deliveries, budget);
            self.record_deliveries(q, g, deliveries, picked, false);
        }
    }

    fn receive_dead(
        &mut self,
        queue: u8,
        group: u8,
        (max, budget): (u32, Budget),
        visibility_ms: u64,
    ) {
        let (q, queue_id) = self.queue_target(queue);
        let (g, group_id) = self.group_target(q, group);
        let request = ReceiveRequest {
            attempt: None,
            max_messages: max,
            bytes_max: budget.bytes_max,
            oversize_first: budget.oversize_first,
            visibility_ms,
            filter: None,
        };
        let now = self.now();
        let result = block_on(
            self.engine()
                .receive_dead(queue_id, group_id, &request, now),
        );
        let expected = self.model.receive_dead(q, g, max, budget, visibility_ms);
        if let Some((deliveries, picked)) = agree(self.step, result, expected) {
            self.check_budget(&deliveries, budget);
            self.record_deliveries(q, g, deliveries, picked, true);
        }
    }

    /// The byte budget's promise, checked on the engine's answer directly (not only
    /// through the model): the deliveries' bodies and attributes total at most
    /// `bytes_max`, or the answer is one message alone where an oversize first is allowed.
    fn check_budget(&self, deliveries: &[Delivery], budget: Budget) {
        let bytes: u64 = deliveries
            .iter()
            .map(|d| (d.body.len() + d.attributes.len()) as u64)
            .sum();
        let alone = deliveries.len() == 1 && budget.oversize_first;
        let step = self.step;
        assert!(
            bytes <= budget.bytes_max || alone,
            "step {step}: {} deliveries of {bytes} bytes past the budget {budget:?}",
            deliveries.len()
        );
    }

    /// Compares a receive's deliveries with the model's picks and keeps the handles.
    fn record_deliveries(
        &mut self,
        queue: Option<usize>,
        group: Option<usize>,
        deliveries: Vec<Delivery>,
        picked: Vec<Picked>,
        dead_letter: bool,
    ) {
        let step = self.step;
        let got: Vec<(String, u32)> = deliveries
            .iter()
            .map(|d| {
                let body = String::from_utf8(d.body.to_vec()).expect("bodies are text");
                (short(&body).to_string(), d.delivery_count)
            })
            .collect();
        let want: Vec<(String, u32)> = picked
            .iter()
            .map(|(m, count, _)| (short(&self.model.messages[*m].body).to_string(), *count))
            .collect();
        assert_eq!(got, want, "step {step}: receive (body, delivery count)");
        let (queue, group) = (queue.expect("received"), group.expect("received"));
        for (delivery, (m, _, lease)) in deliveries.into_iter().zip(picked) {
            let message = &self.model.messages[m];
            assert_eq!(delivery.body, message.body.as_bytes());
            assert_eq!(delivery.message_id, self.message_ids[m], "step {step}: id");
            assert_eq!(delivery.tags, message.tags, "step {step}: tags");
            assert_eq!(
                delivery.fifo_group, message.fifo_group,
                "step {step}: fifo group"
            );
            assert_eq!(delivery.sent_ms, message.sent_ms, "step {step}: sent_ms");
            assert_eq!(delivery.handle.dead_letter, dead_letter);
            assert_eq!(delivery.handle.queue, self.queue_ids[queue]);
            assert_eq!(delivery.handle.group, self.group_ids[queue][group]);
            let model = Handle {
                queue,
                group,
                message: m,
                lease,
                dead_letter,
            };
            self.handles.push(Delivered {
                engine: delivery.handle,
                model,
            });
        }
    }

    fn ack(&mut self, picks: &[(Pick, bool)], stop_at_first_error: bool) {
        let mut chosen: Vec<(usize, AckKind)> = Vec::new();
        for (pick, success) in picks {
            let Some(index) = pick.resolve(self.handles.len()) else {
                return;
            };
            let kind = if *success {
                AckKind::Success
            } else {
                AckKind::Fail
            };
            chosen.push((index, kind));
        }
        let acks: Vec<(ReceiptHandle, AckKind)> = chosen
            .iter()
            .map(|(i, kind)| (self.handles[*i].engine, *kind))
            .collect();
        let model_acks: Vec<(Handle, AckKind)> = chosen
            .iter()
            .map(|(i, kind)| (self.handles[*i].model, *kind))
            .collect();
        let result = block_on(self.engine().ack(&acks, stop_at_first_error, self.now()));
        let expected = self.model.ack(&model_acks, stop_at_first_error);
        let step = self.step;
        assert_eq!(result, Ok(expected), "step {step}: ack results");
    }

    fn change_visibility(&mut self, pick: Pick, ms: u64) {
        let Some(index) = pick.resolve(self.handles.len()) else {
            return;
        };
        let handle = &self.handles[index];
        let result = self
            .engine()
            .change_visibility(&handle.engine, ms, self.now());
        let model = handle.model;
        let expected = self.model.change_visibility(&model, ms);
        let step = self.step;
        assert_eq!(result, Ok(expected), "step {step}: change_visibility");
    }

    /// The message `message` picks, its queue (or `queue`'s) as the model and the engine
    /// name them, and its engine id (an unknown one when nothing was sent).
    fn held_target(
        &mut self,
        message: Pick,
        queue: Option<u8>,
    ) -> (Option<usize>, Option<usize>, QueueId, MessageId) {
        let m = message.resolve(self.message_ids.len());
        let (slot, queue_id) = match (queue, m) {
            (Some(queue), _) => self.queue_target(queue),
            (None, Some(m)) => {
                let slot = self.model.messages[m].queue;
                (Some(slot), self.queue_ids[slot])
            }
            (None, None) => self.queue_target(0),
        };
        let id = m.map_or(MessageId(u64::MAX), |m| self.message_ids[m]);
        (m, slot, queue_id, id)
    }

    fn cancel(&mut self, message: Pick, queue: Option<u8>) {
        let (m, slot, queue_id, id) = self.held_target(message, queue);
        let result = block_on(self.engine().cancel(queue_id, id, self.now()));
        agree(self.step, result, self.model.cancel(slot, m));
    }

    fn end_transaction(&mut self, message: Pick, queue: Option<u8>, commit: bool) {
        let (m, slot, queue_id, id) = self.held_target(message, queue);
        let result = block_on(
            self.engine()
                .end_transaction(queue_id, id, commit, self.now()),
        );
        agree(
            self.step,
            result,
            self.model.end_transaction(slot, m, commit),
        );
    }

    fn redrive(&mut self, queue: u8, group: u8) {
        let (q, queue_id) = self.queue_target(queue);
        let (g, group_id) = self.group_target(q, group);
        let result = block_on(self.engine().redrive(queue_id, group_id, self.now()));
        agree(self.step, result, self.model.redrive(q, g));
    }

    fn advance(&mut self, ms: u64) {
        let now = self.now() + ms;
        let result = block_on(self.engine().tick(now));
        agree(self.step, result, Ok::<(), EngineError>(()));
        self.model.tick(now);
        // The checks the tick logged: the same half messages with the same counts (the
        // order among checks due at one instant is not part of the contract).
        let taken = block_on(self.engine().take_transaction_checks(None, usize::MAX));
        let mut checks: Vec<(usize, u32)> = taken
            .expect("checks")
            .iter()
            .map(|half| (self.message_index[&half.check.message], half.check.checks))
            .collect();
        checks.sort_unstable();
        let mut expected = std::mem::take(&mut self.model.checks);
        expected.sort_unstable();
        assert_eq!(checks, expected, "step {}: transaction checks", self.step);
    }

    fn crash(&mut self, clean: bool) {
        self.engine = None;
        if !clean {
            self.disk.crash();
        }
        let engine = block_on(Engine::open(self.disk.clone(), self.config, self.now()));
        let step = self.step;
        self.engine = Some(engine.unwrap_or_else(|e| panic!("step {step}: reopen failed: {e}")));
        self.model.crash();
    }

    /// Every group's counters, including those of deleted groups and queues (errors),
    /// and every queue's adapter fields.
    fn check_stats(&self) {
        let step = self.step;
        for (q, queue_id) in self.queue_ids.iter().enumerate() {
            let meta = self.engine().queue_info(*queue_id).map(|info| info.meta);
            let expected = self.model.queue_meta(q).map(<[u8]>::to_vec);
            assert_eq!(meta, expected, "step {step}: queue {q} meta");
            for (g, group_id) in self.group_ids[q].iter().enumerate() {
                let stats = self.engine().group_stats(*queue_id, *group_id);
                let expected = self.model.group_stats(q, g);
                if let Some((stats, expected)) = agree(step, stats, expected) {
                    assert!(
                        expected.admits(&stats),
                        "step {step}: group ({q}, {g}) stats {stats:?}, model {expected:?}"
                    );
                }
            }
        }
    }
}
