//! The simulated node: one engine on the simulated disk behind a small request handler, plus the
//! node's own loop (open after a crash, tick at the engine's deadline).
//!
//! The handler ([`Node::handle`]) stands in for the future server's request layer: it
//! takes requests that name tenants, queues and groups, resolves them and calls the
//! engine. Replace it with the server's handler when that exists; the clients and checker
//! only see [`Request`] and [`Reply`]. It must not hold engine state of its own.
//!
//! Every request takes a serial number when it enters and another when it completes: the
//! node's linear order of events, which the checker uses to order deliveries and acks.
//! On the slow disk, requests interleave inside the engine; a receive picks its messages
//! when it enters, and an ack or send takes effect somewhere between its two serials.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use sluice_core::engine::types::{
    AckKind, Delivery, EngineError, GroupId, QueueId, ReceiptHandle, SendInput, SendOutcome,
};
use sluice_core::engine::{Engine, EngineConfig, ReceiveRequest};
use sluice_core::sim_disk::SimDisk;

use crate::slow_disk::SlowDisk;
use sluice_core::storage::{IoErrorKind, IoOp};

use crate::history::{Event, EventKind, History};

/// Engine time is this base plus simulated milliseconds, so `now` is never zero.
pub const EPOCH_MS: u64 = 1_000_000;

/// The node's ticker sleeps at most this long, so it re-checks state after faults.
const TICK_INTERVAL_MS: u64 = 100;

pub enum Request {
    Send {
        tenant: String,
        queue: String,
        messages: Vec<SendInput>,
    },
    Receive {
        tenant: String,
        queue: String,
        group: String,
        request: ReceiveRequest,
    },
    Ack {
        tenant: String,
        queue: String,
        acks: Vec<(ReceiptHandle, AckKind)>,
    },
}

#[derive(Debug)]
pub enum Reply {
    Sent(Vec<SendOutcome>),
    Received(Vec<Delivery>),
    Acked(Vec<bool>),
}

/// Why a request failed; `Storage` means its effect is unknown.
#[derive(Debug)]
pub enum HandleError {
    Unavailable,
    Rejected(EngineError),
    Storage { serial: u64, error: String },
}

pub struct Node {
    pub disk: SimDisk,
    storage: SlowDisk,
    config: EngineConfig,
    engine: RefCell<Option<Rc<Engine<SlowDisk>>>>,
    /// While down after a crash, the node opens no engine before this time.
    down_until_ms: Cell<u64>,
    serial: Cell<u64>,
    history: Rc<RefCell<History>>,
    pub stopped: Cell<bool>,
}

pub fn now_ms(start: madsim::time::Instant) -> u64 {
    EPOCH_MS + u64::try_from(start.elapsed().as_millis()).expect("simulated time fits")
}

impl Node {
    pub fn new(
        disk: SimDisk,
        disk_latency_ms_max: u64,
        config: EngineConfig,
        history: Rc<RefCell<History>>,
    ) -> Node {
        Node {
            storage: SlowDisk::new(disk.clone(), disk_latency_ms_max),
            disk,
            config,
            engine: RefCell::new(None),
            down_until_ms: Cell::new(0),
            serial: Cell::new(0),
            history,
            stopped: Cell::new(false),
        }
    }

    pub fn engine(&self) -> Option<Rc<Engine<SlowDisk>>> {
        self.engine.borrow().clone()
    }

    fn note(&self, now: u64, what: String) {
        self.history.borrow_mut().events.push(Event {
            at_ms: now - EPOCH_MS,
            client: 0,
            kind: EventKind::Nemesis(what),
        });
    }

    /// Power loss: the engine is dropped, unsynced writes are lost or torn, and the node
    /// stays down for `down_ms`.
    pub fn crash(&self, now: u64, down_ms: u64) {
        self.engine.borrow_mut().take();
        let mode = self.disk.crash();
        self.down_until_ms.set(now + down_ms);
        self.note(now, format!("crash ({mode:?}), down {down_ms} ms"));
    }

    pub fn arm_fault(&self, now: u64, op: IoOp, kind: IoErrorKind) {
        self.disk.fail_next(op, kind);
        self.note(now, format!("next {op:?} fails with {kind:?}"));
    }

    /// A write path failure: the engine is unusable and the process restarts (the page
    /// cache survives; no power loss).
    fn poison(&self, now: u64, error: &str) {
        if self.engine.borrow_mut().take().is_some() {
            self.note(now, format!("engine failed ({error}); restarting"));
        }
    }

    /// Opens the engine when it is closed and the node is up; true when open.
    pub async fn ensure_open(&self, now: u64) -> bool {
        if self.engine.borrow().is_some() {
            return true;
        }
        if now < self.down_until_ms.get() {
            return false;
        }
        match Engine::open(self.storage.clone(), self.config, now).await {
            Ok(engine) => {
                *self.engine.borrow_mut() = Some(Rc::new(engine));
                self.history.borrow_mut().events.push(Event {
                    at_ms: now - EPOCH_MS,
                    client: 0,
                    kind: EventKind::Boot {
                        serial: self.serial.get(),
                    },
                });
                true
            }
            Err(error) => {
                self.note(now, format!("open failed: {error}"));
                false
            }
        }
    }

    /// The node's loop: reopen when closed, tick at the engine's deadline. It ends when
    /// the run sets `stopped`; otherwise each pass sleeps at most `TICK_INTERVAL_MS`.
    pub async fn run(self: Rc<Node>, start: madsim::time::Instant) {
        while !self.stopped.get() {
            let now = now_ms(start);
            let mut wake = now + TICK_INTERVAL_MS;
            if self.ensure_open(now).await {
                let engine = self.engine().expect("just ensured open");
                if let Err(error) = engine.tick(now).await {
                    self.poison(now, &error.to_string());
                } else if let Some(deadline) = engine.next_deadline_ms() {
                    wake = wake.min(deadline.max(now + 1));
                }
            }
            madsim::time::sleep(Duration::from_millis(wake - now)).await;
        }
    }

    /// The request handler (the future server's place): resolve names, call the engine.
    /// Returns the serials at entry and at completion with the reply.
    pub async fn handle(
        &self,
        request: Request,
        now: u64,
    ) -> Result<((u64, u64), Reply), HandleError> {
        let engine = self.engine().ok_or(HandleError::Unavailable)?;
        let serial = self.serial.get() + 1;
        self.serial.set(serial);
        let result = match request {
            Request::Send {
                tenant,
                queue,
                messages,
            } => {
                let queue = resolve_queue(&engine, &tenant, &queue)?;
                engine.send(queue, &messages, now).await.map(Reply::Sent)
            }
            Request::Receive {
                tenant,
                queue,
                group,
                request,
            } => {
                let queue = resolve_queue(&engine, &tenant, &queue)?;
                let group = resolve_group(&engine, queue, &group)?;
                engine
                    .receive(queue, group, &request, now)
                    .await
                    .map(Reply::Received)
            }
            Request::Ack {
                tenant,
                queue,
                acks,
            } => {
                let queue_id = resolve_queue(&engine, &tenant, &queue)?;
                let owned = acks.iter().all(|(handle, _)| handle.queue == queue_id);
                if !owned {
                    return Err(HandleError::Rejected(EngineError::QueueNotFound));
                }
                engine
                    .ack(&acks, false, now)
                    .await
                    .map(|results| Reply::Acked(results.iter().map(|r| r.is_ok()).collect()))
            }
        };
        match result {
            Ok(reply) => {
                let done = self.serial.get() + 1;
                self.serial.set(done);
                Ok(((serial, done), reply))
            }
            Err(EngineError::Storage(error)) => {
                self.poison(now, &error);
                Err(HandleError::Storage { serial, error })
            }
            Err(error) => Err(HandleError::Rejected(error)),
        }
    }
}

fn resolve_queue(
    engine: &Engine<SlowDisk>,
    tenant: &str,
    queue: &str,
) -> Result<QueueId, HandleError> {
    engine
        .queue_by_name(tenant, queue)
        .ok_or(HandleError::Rejected(EngineError::QueueNotFound))
}

fn resolve_group(
    engine: &Engine<SlowDisk>,
    queue: QueueId,
    group: &str,
) -> Result<GroupId, HandleError> {
    let info = engine.queue_info(queue).map_err(HandleError::Rejected)?;
    info.groups
        .iter()
        .find(|(_, name)| name == group)
        .map(|(id, _)| *id)
        .ok_or(HandleError::Rejected(EngineError::GroupNotFound))
}
