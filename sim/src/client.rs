//! Clients and the nemesis: the simulated link to the node, producers that retry with the
//! same dedup id, consumers that ack, fail or forget, and the fault schedule. Each task
//! appends what it saw to the history; none of them judges it (that is the checker's).

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use madsim::rand::{thread_rng, Rng};
use sluice_core::engine::types::{AckKind, Delay, SendInput};
use sluice_core::engine::ReceiveRequest;
use sluice_core::storage::{IoErrorKind, IoOp};

use crate::history::{body_of, key_of, Delivered, Event, EventKind, History, MessageSpec, Outcome};
use crate::node::{now_ms, HandleError, Node, Reply, Request, EPOCH_MS};

/// The workload's queues: (tenant, queue name, FIFO per message group).
pub const QUEUES: [(&str, &str, bool); 4] = [
    ("t0", "normal", false),
    ("t0", "fifo", true),
    ("t1", "normal", false),
    ("t1", "fifo", true),
];
pub const GROUPS: [&str; 2] = ["g0", "g1"];
pub const CONSUMERS_PER_GROUP: usize = 2;
/// A client gives up on a send after this many attempts (its outcome stays unknown).
const SEND_ATTEMPTS_MAX: u32 = 40;
/// How long a client waits for a reply that was dropped.
const REPLY_TIMEOUT_MS: u64 = 1_000;
const FIFO_GROUPS: u32 = 3;

/// The seed's randomised knobs.
#[derive(Clone, Copy, Debug)]
pub struct Knobs {
    pub latency_ms_max: u64,
    pub drop_ppm: u32,
    pub visibility_ms: u64,
    pub batches_per_producer: u32,
    pub fault_interval_ms: u64,
    pub eio_percent: u32,
    pub delay_percent: u32,
    pub segment_bytes_max: u64,
    pub snapshot_every_records: u64,
    /// Simulated delay of each disk operation, up to this (0: the disk never suspends).
    pub disk_latency_ms_max: u64,
    /// Random disk faults per call while faults are on (EIO, ENOSPC, bit flips on read).
    pub disk_fault_ppm: u32,
}

impl Knobs {
    pub fn draw() -> Knobs {
        let mut rng = thread_rng();
        Knobs {
            latency_ms_max: rng.gen_range(1..=30),
            drop_ppm: [0, 20_000, 100_000][rng.gen_range(0..3)],
            visibility_ms: rng.gen_range(1_000..=5_000),
            batches_per_producer: rng.gen_range(10..=40),
            fault_interval_ms: rng.gen_range(300..=4_000),
            eio_percent: rng.gen_range(0..=50),
            delay_percent: rng.gen_range(0..=40),
            segment_bytes_max: [64 * 1024, 1024 * 1024][rng.gen_range(0..2)],
            snapshot_every_records: [20, 200, 10_000][rng.gen_range(0..3)],
            disk_fault_ppm: [0, 0, 200, 2_000][rng.gen_range(0..4)],
            disk_latency_ms_max: [0, 1, 5, 20][rng.gen_range(0..4)],
        }
    }
}

/// What every task shares.
pub struct Ctx {
    pub node: Rc<Node>,
    pub history: Rc<RefCell<History>>,
    pub knobs: Knobs,
    pub start: madsim::time::Instant,
    /// Nemesis and message drops are active.
    pub faults: Cell<bool>,
    /// Consumers ack everything at once (the draining phase after healing).
    pub draining: Cell<bool>,
    pub stopped: Cell<bool>,
}

fn chance(ppm: u32) -> bool {
    thread_rng().gen_range(0..1_000_000) < ppm
}

async fn sleep_ms(ms: u64) {
    madsim::time::sleep(Duration::from_millis(ms)).await;
}

impl Ctx {
    pub fn now(&self) -> u64 {
        now_ms(self.start)
    }

    fn record(&self, client: u32, kind: EventKind) {
        let at_ms = self.now() - EPOCH_MS;
        self.history.borrow_mut().events.push(Event {
            at_ms,
            client,
            kind,
        });
    }

    fn link_drops(&self) -> bool {
        self.faults.get() && chance(self.knobs.drop_ppm)
    }

    /// One request over the simulated link: latency each way, and while faults are on a
    /// request or its reply may be dropped (the client then times out).
    async fn call(&self, request: Request) -> Outcome<Reply> {
        sleep_ms(thread_rng().gen_range(0..=self.knobs.latency_ms_max)).await;
        if self.link_drops() {
            sleep_ms(REPLY_TIMEOUT_MS).await;
            return Outcome::Rejected {
                reason: "request dropped".into(),
            };
        }
        let now = self.now();
        let result = self.node.handle(request, now).await;
        sleep_ms(thread_rng().gen_range(0..=self.knobs.latency_ms_max)).await;
        match result {
            Ok(((serial, _), _)) if self.link_drops() => {
                sleep_ms(REPLY_TIMEOUT_MS).await;
                Outcome::Ambiguous {
                    serial,
                    reason: "reply dropped".into(),
                }
            }
            Ok(((serial, done_serial), value)) => Outcome::Ok {
                serial,
                done_serial,
                served_ms: now - EPOCH_MS,
                value,
            },
            Err(HandleError::Storage { serial, error }) => Outcome::Ambiguous {
                serial,
                reason: error,
            },
            Err(HandleError::Unavailable) => Outcome::Rejected {
                reason: "unavailable".into(),
            },
            Err(HandleError::Rejected(error)) => Outcome::Rejected {
                reason: format!("{error:?}"),
            },
        }
    }
}

impl<T> Outcome<T> {
    fn map<U>(self, f: impl FnOnce(T) -> U) -> Outcome<U> {
        match self {
            Outcome::Ok {
                serial,
                done_serial,
                served_ms,
                value,
            } => Outcome::Ok {
                serial,
                done_serial,
                served_ms,
                value: f(value),
            },
            Outcome::Ambiguous { serial, reason } => Outcome::Ambiguous { serial, reason },
            Outcome::Rejected { reason } => Outcome::Rejected { reason },
        }
    }
}

fn unexpected(reply: Reply) -> ! {
    unreachable!("reply of the wrong kind: {reply:?}")
}

/// Registers one new message and builds its input; its body names its key.
fn new_message(ctx: &Ctx, queue: usize) -> (u32, SendInput) {
    let mut rng = thread_rng();
    let now = ctx.now() - EPOCH_MS;
    let fifo = QUEUES[queue].2;
    let delayed = rng.gen_range(0..100) < ctx.knobs.delay_percent;
    let (delay, delay_ms) = match (delayed, rng.gen_range(0..2)) {
        (false, _) => (Delay::None, 0),
        (true, 0) => {
            let ms = rng.gen_range(1..=5_000);
            (Delay::Ms(ms), ms)
        }
        (true, _) => {
            let ms = rng.gen_range(1..=5_000);
            (Delay::At(now + EPOCH_MS + ms), ms)
        }
    };
    let mut history = ctx.history.borrow_mut();
    let key = u32::try_from(history.specs.len()).expect("few messages");
    let fifo_group = fifo.then(|| format!("fg{}", rng.gen_range(0..FIFO_GROUPS)));
    history.specs.push(MessageSpec {
        queue,
        delay_ms,
        fifo_group: fifo_group.clone(),
        first_attempt_ms: now,
    });
    let input = SendInput {
        body: body_of(key),
        attributes: Vec::new(),
        tags: Vec::new(),
        fifo_group,
        delay,
        dedup_id: Some(format!("d{key}")),
    };
    (key, input)
}

/// Sends batches of 1 to 3 new messages, retrying each batch with the same dedup ids.
pub async fn producer(ctx: Rc<Ctx>, client: u32, queue: usize) {
    let (tenant, name, _) = QUEUES[queue];
    for _ in 0..ctx.knobs.batches_per_producer {
        let count = thread_rng().gen_range(1..=3);
        let (keys, messages): (Vec<u32>, Vec<SendInput>) =
            (0..count).map(|_| new_message(&ctx, queue)).unzip();
        for attempt in 1..=SEND_ATTEMPTS_MAX {
            let request = Request::Send {
                tenant: tenant.into(),
                queue: name.into(),
                messages: messages.clone(),
            };
            let outcome = ctx.call(request).await.map(|reply| match reply {
                Reply::Sent(outcomes) => outcomes
                    .iter()
                    .map(|o| (o.message_id, o.duplicate))
                    .collect(),
                other => unexpected(other),
            });
            let done = matches!(outcome, Outcome::Ok { .. });
            let keys = keys.clone();
            ctx.record(
                client,
                EventKind::Send {
                    queue,
                    keys,
                    attempt,
                    outcome,
                },
            );
            if done {
                break;
            }
            sleep_ms(thread_rng().gen_range(50..=500)).await;
        }
        sleep_ms(thread_rng().gen_range(0..=1_000)).await;
    }
}

/// Receives and then acks, fails or forgets each message until the run stops; while
/// draining it acks everything at once.
pub async fn consumer(ctx: Rc<Ctx>, client: u32, queue: usize, group: usize) {
    let (tenant, name, _) = QUEUES[queue];
    // Bounded by the run: `stopped` is set after the draining phase.
    while !ctx.stopped.get() {
        let request = Request::Receive {
            tenant: tenant.into(),
            queue: name.into(),
            group: GROUPS[group].into(),
            request: ReceiveRequest {
                max_messages: thread_rng().gen_range(1..=4),
                visibility_ms: ctx.knobs.visibility_ms,
                filter: None,
            },
        };
        let outcome = ctx.call(request).await.map(|reply| match reply {
            Reply::Received(deliveries) => deliveries,
            other => unexpected(other),
        });
        let deliveries = match &outcome {
            Outcome::Ok { value, .. } => value.clone(),
            _ => Vec::new(),
        };
        let seen = outcome.map(|deliveries| {
            deliveries
                .iter()
                .map(|d| Delivered {
                    key: key_of(&d.body).unwrap_or(u32::MAX),
                    message_id: d.message_id,
                    delivery_count: d.delivery_count,
                })
                .collect()
        });
        ctx.record(
            client,
            EventKind::Receive {
                queue,
                group,
                outcome: seen,
            },
        );
        if deliveries.is_empty() {
            sleep_ms(thread_rng().gen_range(20..=300)).await;
            continue;
        }
        if !ctx.draining.get() {
            // Processing; sometimes longer than the visibility timeout (a late ack).
            sleep_ms(thread_rng().gen_range(0..=ctx.knobs.visibility_ms * 13 / 10)).await;
        }
        let mut acks = Vec::new();
        let mut targets = Vec::new();
        let draining = ctx.draining.get();
        let mut kind = AckKind::Success;
        if !draining && thread_rng().gen_range(0..100) < 15 {
            kind = AckKind::Fail;
        }
        for delivery in &deliveries {
            if !draining && thread_rng().gen_range(0..100) < 15 {
                continue; // Forgotten: its visibility runs out.
            }
            acks.push((delivery.handle, kind));
            targets.push((
                key_of(&delivery.body).unwrap_or(u32::MAX),
                delivery.message_id,
            ));
        }
        if acks.is_empty() {
            continue;
        }
        let request = Request::Ack {
            tenant: tenant.into(),
            queue: name.into(),
            acks,
        };
        let outcome = ctx.call(request).await.map(|reply| match reply {
            Reply::Acked(results) => results,
            other => unexpected(other),
        });
        ctx.record(
            client,
            EventKind::Ack {
                queue,
                group,
                kind,
                targets,
                outcome,
            },
        );
    }
}

/// Crashes the node, or arms a sync EIO or a write ENOSPC, at seeded random times while
/// faults are on.
pub async fn nemesis(ctx: Rc<Ctx>) {
    // Bounded by the run: the healing step turns `faults` off.
    while ctx.faults.get() {
        sleep_ms(thread_rng().gen_range(0..=2 * ctx.knobs.fault_interval_ms)).await;
        if !ctx.faults.get() {
            break;
        }
        let now = ctx.now();
        let roll = thread_rng().gen_range(0..100);
        if roll < ctx.knobs.eio_percent {
            ctx.node.arm_fault(now, IoOp::Sync, IoErrorKind::Io);
        } else if roll < ctx.knobs.eio_percent + 10 {
            ctx.node.arm_fault(now, IoOp::Write, IoErrorKind::NoSpace);
        } else {
            ctx.node.crash(now, thread_rng().gen_range(0..=1_000));
        }
    }
}
