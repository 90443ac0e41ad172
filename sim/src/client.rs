//! Clients and the nemesis: the simulated link to the node, the setup of queues and groups
//! through the API, producers that retry with the same dedup id, consumers that ack, fail
//! or forget, and the fault schedule. Each task appends what it saw to the history; none
//! of them judges it (that is the checker's). Requests are DMS HTTP requests (`api`).

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use http::StatusCode;
use madsim::rand::{thread_rng, Rng};
use serde_json::Value;
use sluice_core::engine::types::AckKind;
use sluice_core::storage::{IoErrorKind, IoOp};

use crate::api::{self, ApiRequest, Credentials, Delay, Lane, Outgoing};
use crate::cluster::{Cluster, Reached};
use crate::history::{Event, EventKind, History, MessageId, MessageSpec, Outcome};
use crate::node::{now_ms, Node, EPOCH_MS, TENANT_NAMES};

/// One of the workload's queues.
#[derive(Clone, Copy, Debug)]
pub struct QueueSpec {
    pub tenant: &'static str,
    pub name: &'static str,
    /// FIFO per message group (else NORMAL).
    pub fifo: bool,
    /// Dead letters on, after the seed's `max_consume_count` failures.
    pub redrive: bool,
    /// Deleted and created again (with its groups) while the workload runs.
    pub churned: bool,
}

const fn queue(tenant: &'static str, name: &'static str, fifo: bool, redrive: bool) -> QueueSpec {
    QueueSpec {
        tenant,
        name,
        fifo,
        redrive,
        churned: false,
    }
}

/// The workload's queues. Both tenants use the same queue names, so a mix-up between
/// tenants would show; `t1`'s queues dead-letter; `t0/temp` is deleted and created again.
pub const QUEUES: [QueueSpec; 5] = [
    queue("t0", "normal", false, false),
    queue("t0", "fifo", true, false),
    queue("t1", "normal", false, true),
    queue("t1", "fifo", true, true),
    QueueSpec {
        churned: true,
        ..queue("t0", "temp", false, false)
    },
];
pub const GROUPS: [&str; 2] = ["g0", "g1"];
pub const CONSUMERS_PER_GROUP: usize = 2;
/// A client gives up on a send after this many attempts (its outcome stays unknown).
const SEND_ATTEMPTS_MAX: u32 = 40;
/// How long a client waits for a reply that was dropped.
const REPLY_TIMEOUT_MS: u64 = 1_000;
const FIFO_GROUPS: u32 = 3;
/// Rounds of list-and-create before the churner gives a queue up.
const CREATE_AGAIN_ROUNDS_MAX: u32 = 200;
/// Setup requests run without faults, so on one node they succeed at once; in a cluster
/// a leader change (the leads moving to their preferred nodes) may refuse some. This
/// bounds the loop.
const SETUP_ATTEMPTS_MAX: u32 = 100;

/// The seed's randomised knobs.
#[derive(Clone, Copy, Debug)]
pub struct Knobs {
    /// Partitions (engines, one simulated disk each) of the node.
    pub partitions: u16,
    /// Shards of the node (2 up to `partitions`): shard `s` owns partitions `p % shards
    /// == s`, a request enters at a random shard, and calls for another shard's
    /// partitions are forwarded, as in the server.
    pub shards: u16,
    /// Delay of a forwarded call on its way to the owning shard, up to this (ms).
    pub hop_ms_max: u64,
    pub latency_ms_max: u64,
    pub drop_ppm: u32,
    /// The consumers' `ack_wait`, in whole seconds as the API takes it.
    pub visibility_ms: u64,
    /// The longest `time_wait` (long poll) a consume asks for, seconds.
    pub time_wait_s_max: u64,
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
    /// Share of nemesis events that step the node's wall clock, percent.
    pub clock_jump_percent: u32,
    /// Failures (fail acks and visibility timeouts) before a message of a redrive queue
    /// becomes a dead letter of its group.
    pub max_consume_count: u32,
    /// Queues keep a message this long after it became available (`None`: the DMS
    /// default, three days, longer than any run). Set in some cluster seeds
    /// (`run::short_retention`) so that logs compact and Raft snapshots are needed; the
    /// checker then excuses messages that may have passed it.
    pub retention_minutes: Option<u64>,
}

impl Knobs {
    pub fn draw() -> Knobs {
        let mut rng = thread_rng();
        Knobs {
            partitions: rng.gen_range(2..=3),
            latency_ms_max: rng.gen_range(1..=30),
            drop_ppm: [0, 20_000, 100_000][rng.gen_range(0..3)],
            visibility_ms: 1_000 * rng.gen_range(1..=5),
            time_wait_s_max: [0, 0, 1, 3][rng.gen_range(0..4)],
            batches_per_producer: rng.gen_range(10..=40),
            fault_interval_ms: rng.gen_range(300..=4_000),
            eio_percent: rng.gen_range(0..=50),
            delay_percent: rng.gen_range(0..=40),
            segment_bytes_max: [64 * 1024, 1024 * 1024][rng.gen_range(0..2)],
            snapshot_every_records: [20, 200, 10_000][rng.gen_range(0..3)],
            disk_fault_ppm: [0, 0, 200, 2_000][rng.gen_range(0..4)],
            disk_latency_ms_max: [0, 1, 5, 20][rng.gen_range(0..4)],
            clock_jump_percent: [0, 10, 30][rng.gen_range(0..3)],
            max_consume_count: rng.gen_range(1..=3),
            shards: 0,
            hop_ms_max: [0, 1, 5][rng.gen_range(0..3)],
            retention_minutes: None,
        }
        .with_shards(&mut rng)
    }

    fn with_shards(self, rng: &mut impl Rng) -> Knobs {
        Knobs {
            shards: rng.gen_range(2..=self.partitions),
            ..self
        }
    }
}

/// A queue as the API names it: its id and its groups' ids (in `GROUPS` order), and
/// which creation of the queue it is.
#[derive(Clone, Debug)]
pub struct QueueRoute {
    pub queue_id: String,
    pub group_ids: Vec<String>,
    pub incarnation: u32,
}

/// Where the clients' requests go: the one node, or a random node of the cluster.
#[derive(Clone)]
pub enum Target {
    Single(Rc<Node>),
    Cluster(Rc<Cluster>),
}

impl Target {
    /// One request to the node (or a random member node of the cluster) and what became of
    /// it.
    pub async fn handle(&self, parts: http::request::Parts, body: bytes::Bytes) -> Reached {
        match self {
            Target::Single(node) => match node.handle(parts, body).await {
                Some(served) => Reached::Served(served),
                None => Reached::Refused,
            },
            Target::Cluster(cluster) => {
                // Any node that holds the directories (partition 0's voters).
                let nodes = cluster.client_nodes();
                let id = nodes[thread_rng().gen_range(0..nodes.len())];
                cluster.handle(id, parts, body).await
            }
        }
    }

    /// The one node, when there is one.
    pub fn single(&self) -> Option<&Rc<Node>> {
        match self {
            Target::Single(node) => Some(node),
            Target::Cluster(_) => None,
        }
    }
}

/// What every task shares.
pub struct Ctx {
    pub target: Target,
    pub history: Rc<RefCell<History>>,
    pub knobs: Knobs,
    pub start: madsim::time::Instant,
    /// Per tenant of `TENANT_NAMES`, filled once the node has booted.
    pub credentials: RefCell<Vec<Credentials>>,
    /// Per tenant, a Keystone token (from setup) that half of its requests carry
    /// instead of a signature (`t1` only).
    pub tokens: RefCell<Vec<Option<String>>>,
    /// A network partition: the tenant (index) whose clients cannot reach the node until
    /// the time (true epoch ms).
    pub cut: Cell<Option<(usize, u64)>>,
    /// Per queue of `QUEUES`, filled by `setup`.
    pub routes: RefCell<Vec<QueueRoute>>,
    /// Nemesis and message drops are active.
    pub faults: Cell<bool>,
    /// The link's duplication, apart from the seed's main random stream.
    pub link: LinkFaults,
    /// Consumers ack everything at once (the draining phase after healing).
    pub draining: Cell<bool>,
    pub stopped: Cell<bool>,
    /// The Kafka producer's attempts (`crate::kafka`).
    pub kafka: RefCell<crate::kafka::KafkaHistory>,
}

/// Duplicated requests: their rate and generator (seeded from the run's seed, not drawn
/// from the main stream, so adding them changed no other seed's run).
pub struct LinkFaults {
    pub duplicate_ppm: u32,
    pub rng: RefCell<rand_pcg::Pcg64>,
    pub duplicates: Cell<u64>,
}

impl LinkFaults {
    pub fn new(seed: u64) -> LinkFaults {
        use rand::SeedableRng;
        let mut rng = rand_pcg::Pcg64::seed_from_u64(seed ^ 0xd0b1_e5ee_d0b1_e5ee);
        let duplicate_ppm = [0, 0, 20_000, 50_000][rng.gen_range(0..4)];
        LinkFaults {
            duplicate_ppm,
            rng: RefCell::new(rng),
            duplicates: Cell::new(0),
        }
    }
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

    /// While faults are on, the link may deliver a request a second time, late: after
    /// the original was served, so the copy's effects come after the original's (a
    /// duplicate overtaking its original would be a new request, which the client's own
    /// retries already cover). The copy's answer goes nowhere. Decided by the link's own
    /// generator, so seeds without duplication replay as before.
    fn maybe_duplicate(&self, credentials: &Credentials, request: &ApiRequest) {
        if !self.faults.get() || self.link.duplicate_ppm == 0 {
            return;
        }
        let mut rng = self.link.rng.borrow_mut();
        if rng.gen_range(0..1_000_000) >= self.link.duplicate_ppm {
            return;
        }
        let delay_ms = rng.gen_range(0..=self.knobs.latency_ms_max * 4);
        let (parts, body) = api::signed(credentials, request, self.now());
        let target = self.target.clone();
        self.link.duplicates.set(self.link.duplicates.get() + 1);
        // Dropping madsim's join handle detaches the task: the copy runs to its end.
        drop(madsim::task::spawn_local(async move {
            sleep_ms(delay_ms).await;
            let _ = target.handle(parts, body).await;
        }));
    }

    fn credentials_of(&self, tenant: &str) -> Credentials {
        let index = tenant_index(tenant);
        let mut credentials = self.credentials.borrow()[index].clone();
        // Each request picks its API version, and (with a token) how it authenticates.
        credentials.v1 = thread_rng().gen_bool(0.5);
        if let Some(token) = &self.tokens.borrow()[index] {
            if thread_rng().gen_bool(0.5) {
                credentials.token = Some(token.clone());
            }
        }
        credentials
    }

    /// Whether a network partition separates the clients of the tenant with
    /// `credentials` from the node now.
    fn cut_off(&self, credentials: &Credentials) -> bool {
        let Some((tenant, until)) = self.cut.get() else {
            return false;
        };
        self.now() < until && self.credentials.borrow()[tenant].project == credentials.project
    }

    fn route(&self, queue: usize) -> QueueRoute {
        self.routes.borrow()[queue].clone()
    }

    /// One request over the simulated link, signed by `tenant` when it leaves (a 401
    /// would be a bug in signing or verifying).
    async fn call(&self, tenant: &str, request: &ApiRequest) -> Outcome<Value> {
        let (outcome, status) = self.call_as(&self.credentials_of(tenant), request).await;
        assert_ne!(
            status,
            Some(StatusCode::UNAUTHORIZED),
            "{}: {outcome}",
            request.label()
        );
        outcome
    }

    /// One request over the simulated link, signed with `credentials` when it leaves:
    /// latency each way, and while faults are on a request or its reply may be dropped
    /// (the client then times out). A 2xx answer is `Ok` with its JSON body, a 4xx is
    /// `Rejected` (nothing applied), a 5xx is `Ambiguous` (maybe partly applied). Also
    /// answers the status, when a reply arrived.
    async fn call_as(
        &self,
        credentials: &Credentials,
        request: &ApiRequest,
    ) -> (Outcome<Value>, Option<StatusCode>) {
        let (parts, body) = api::signed(credentials, request, self.now());
        sleep_ms(thread_rng().gen_range(0..=self.knobs.latency_ms_max)).await;
        if self.link_drops() || self.cut_off(credentials) {
            sleep_ms(REPLY_TIMEOUT_MS).await;
            let reason = "request dropped".into();
            return (Outcome::Rejected { reason }, None);
        }
        let reached = self.target.handle(parts, body).await;
        if !matches!(reached, Reached::Refused) {
            // Only a request the node took can be delivered twice (a refused connection
            // carried nothing; seed 39 once stored a refused send through its copy).
            self.maybe_duplicate(credentials, request);
        }
        sleep_ms(thread_rng().gen_range(0..=self.knobs.latency_ms_max)).await;
        let served = match reached {
            Reached::Served(served) => served,
            Reached::Refused => {
                let reason = "unavailable".into();
                return (Outcome::Rejected { reason }, None);
            }
            Reached::Lost { serial } => {
                // The node took it and died before answering (cluster only).
                let reason = "node lost".into();
                return (Outcome::Ambiguous { serial, reason }, None);
            }
        };
        if self.link_drops() || self.cut_off(credentials) {
            sleep_ms(REPLY_TIMEOUT_MS).await;
            let serial = served.serial;
            let reason = "reply dropped".into();
            return (Outcome::Ambiguous { serial, reason }, None);
        }
        let status = served.response.status();
        let answer: Value = if status == StatusCode::NO_CONTENT {
            Value::Null
        } else {
            serde_json::from_slice(served.response.body()).unwrap_or_else(|e| {
                panic!("{}: {status} answered with no JSON: {e}", request.label())
            })
        };
        let reason = || format!("{} {}", status.as_u16(), answer["error_code"]);
        let outcome = if status.is_success() {
            Outcome::Ok {
                serial: served.serial,
                done_serial: served.done_serial,
                served_ms: served.served_ms - EPOCH_MS,
                done_ms: served.done_ms - EPOCH_MS,
                value: answer,
            }
        } else if status.is_server_error() {
            Outcome::Ambiguous {
                serial: served.serial,
                reason: reason(),
            }
        } else {
            Outcome::Rejected { reason: reason() }
        };
        (outcome, Some(status))
    }

    /// A setup request (no faults are on yet), retried until it succeeds.
    async fn call_setup(&self, tenant: &str, request: &ApiRequest) -> Value {
        for _ in 0..SETUP_ATTEMPTS_MAX {
            match self.call(tenant, request).await {
                Outcome::Ok { value, .. } => return value,
                other => {
                    let what = format!("setup: {} of {tenant}: {other}", request.label());
                    self.record(0, EventKind::Nemesis(what));
                    sleep_ms(100).await;
                }
            }
        }
        panic!("setup: {} of {tenant} never succeeded", request.label());
    }
}

impl<T> Outcome<T> {
    fn map<U>(self, f: impl FnOnce(T) -> U) -> Outcome<U> {
        match self {
            Outcome::Ok {
                serial,
                done_serial,
                served_ms,
                done_ms,
                value,
            } => Outcome::Ok {
                serial,
                done_serial,
                served_ms,
                done_ms,
                value: f(value),
            },
            Outcome::Ambiguous { serial, reason } => Outcome::Ambiguous { serial, reason },
            Outcome::Rejected { reason } => Outcome::Rejected { reason },
        }
    }
}

/// Boots the node and creates the workload's queues and groups through the API (before
/// faults start; setup under faults is not simulated yet).
pub async fn setup(ctx: &Ctx) {
    let tenants = match &ctx.target {
        Target::Single(node) => {
            assert!(node.ensure_open(ctx.now()).await, "the first open succeeds");
            node.tenants()
        }
        Target::Cluster(cluster) => {
            assert!(
                cluster.create_tenants().await,
                "the cluster creates the tenants"
            );
            cluster.tenants()
        }
    };
    *ctx.credentials.borrow_mut() = tenants
        .iter()
        .map(|tenant| Credentials {
            project: tenant.project_id.clone(),
            ak: tenant.ak.clone(),
            sk: tenant.sk.clone(),
            token: None,
            v1: false,
        })
        .collect();
    *ctx.tokens.borrow_mut() = vec![None; TENANT_NAMES.len()];
    let t1 = tenant_index("t1");
    let credentials = ctx.credentials.borrow()[t1].clone();
    let token = login(ctx, &credentials).await;
    ctx.tokens.borrow_mut()[t1] = Some(token);
    for spec in QUEUES {
        let tenant = spec.tenant;
        let max_consume_count = spec.redrive.then_some(ctx.knobs.max_consume_count);
        let request = api::queue_create(spec.name, spec.fifo, max_consume_count);
        let answer = ctx.call_setup(tenant, &request).await;
        let queue_id = api::queue_created(&answer);
        let answer = ctx
            .call_setup(tenant, &api::groups_create(&queue_id, &GROUPS))
            .await;
        let group_ids = api::groups_created(&answer);
        assert_eq!(group_ids.len(), GROUPS.len(), "one id per group");
        ctx.routes.borrow_mut().push(QueueRoute {
            queue_id,
            group_ids,
            incarnation: 0,
        });
    }
}

fn tenant_index(tenant: &str) -> usize {
    TENANT_NAMES
        .iter()
        .position(|name| *name == tenant)
        .expect("a known tenant")
}

/// A Keystone token for the tenant of `credentials`, from an AK/SK-signed login (setup:
/// no faults are on, so it reaches the node).
async fn login(ctx: &Ctx, credentials: &Credentials) -> String {
    // Setup runs without faults; a cluster's node may still answer 503 while partition
    // 0's leader settles, so a login is retried (one node answers the first one).
    for _ in 0..SETUP_ATTEMPTS_MAX {
        let (parts, body) = api::signed(credentials, &api::login(), ctx.now());
        let served = match ctx.target.handle(parts, body).await {
            Reached::Served(served) if served.response.status() == StatusCode::CREATED => served,
            Reached::Served(served) if ctx.target.single().is_some() => {
                panic!("login: {}", served.response.status())
            }
            _ => {
                sleep_ms(100).await;
                continue;
            }
        };
        return served.response.headers()["x-subject-token"]
            .to_str()
            .expect("a token is text")
            .to_string();
    }
    panic!("setup: login never succeeded");
}

/// Registers one new message and builds it; its body names its key.
fn new_message(ctx: &Ctx, queue: usize) -> Outgoing {
    let mut rng = thread_rng();
    let now = ctx.now() - EPOCH_MS;
    let fifo = QUEUES[queue].fifo;
    let delayed = rng.gen_range(0..100) < ctx.knobs.delay_percent;
    let (delay, delay_ms) = match (delayed, rng.gen_range(0..4)) {
        (false, _) => (Delay::None, 0),
        (true, 0) => (Delay::Level(1), 1_000),
        (true, 1) => (Delay::Level(2), 5_000),
        (true, 2) => {
            let ms = rng.gen_range(1..=5_000);
            (Delay::Ms(ms), ms)
        }
        // Scheduled by the client's own (true) clock, up to 8 s ahead.
        (true, _) => (Delay::At(ctx.now() + rng.gen_range(1..=8_000)), 0),
    };
    let deliver_at_ms = match delay {
        Delay::At(at) => Some(at),
        _ => None,
    };
    let mut history = ctx.history.borrow_mut();
    let key = u32::try_from(history.specs.len()).expect("few messages");
    let fifo_group = fifo.then(|| format!("fg{}", rng.gen_range(0..FIFO_GROUPS)));
    history.specs.push(MessageSpec {
        queue,
        delay_ms,
        deliver_at_ms,
        incarnation: ctx.route(queue).incarnation,
        fifo_group: fifo_group.clone(),
        first_attempt_ms: now,
        half: false,
    });
    Outgoing {
        key,
        fifo_group,
        delay,
        dedup_id: format!("d{key}"),
    }
}

/// Sends batches of 1 to 3 new messages, retrying each batch with the same dedup ids; then
/// cancels some of the batch's scheduled messages (one attempt each).
pub async fn producer(ctx: Rc<Ctx>, client: u32, queue: usize) {
    let tenant = QUEUES[queue].tenant;
    for _ in 0..ctx.knobs.batches_per_producer {
        // A churned queue may have been created again since the last batch.
        let route = ctx.route(queue);
        let count = thread_rng().gen_range(1..=3);
        let messages: Vec<Outgoing> = (0..count).map(|_| new_message(&ctx, queue)).collect();
        let keys: Vec<u32> = messages.iter().map(|m| m.key).collect();
        let request = api::send(&route.queue_id, &messages);
        let mut ids = Vec::new();
        for attempt in 1..=SEND_ATTEMPTS_MAX {
            if ctx.route(queue).incarnation != route.incarnation {
                break; // Its queue was deleted: the batch is given up.
            }
            let outcome = ctx.call(tenant, &request).await.map(|v| api::sent(&v));
            if let Outcome::Ok { value, .. } = &outcome {
                assert_eq!(value.len(), keys.len(), "one id per message");
                ids.clone_from(value);
            }
            let done = matches!(outcome, Outcome::Ok { .. });
            ctx.record(
                client,
                EventKind::Send {
                    queue,
                    keys: keys.clone(),
                    attempt,
                    outcome,
                },
            );
            if done {
                break;
            }
            sleep_ms(thread_rng().gen_range(50..=500)).await;
        }
        for (message, message_id) in messages.iter().zip(&ids) {
            if matches!(message.delay, Delay::At(_)) && thread_rng().gen_range(0..100) < 40 {
                sleep_ms(thread_rng().gen_range(0..=3_000)).await;
                let request = api::cancel(&route.queue_id, *message_id);
                let outcome = ctx.call(tenant, &request).await.map(|_| ());
                let kind = EventKind::Cancel {
                    queue,
                    key: message.key,
                    message_id: *message_id,
                    outcome,
                };
                ctx.record(client, kind);
            }
        }
        sleep_ms(thread_rng().gen_range(0..=1_000)).await;
    }
}

/// Keeps taking checks after its last batch for this long, so transactions left open
/// under faults are answered (a check comes at most `check_after` plus one interval,
/// 3 s in the simulation, after the send; later ones after a lost check).
const TRANSACTION_CHECKS_AFTER_MS: u64 = 12_000;

/// Sends transactions to a NORMAL queue, one half message a batch, each with its
/// decision (commit 70%, roll back 30%): most are ended at once (one to three attempts),
/// the rest when a check offers them (one check taker a queue, this task).
pub async fn transactor(ctx: Rc<Ctx>, client: u32, queue: usize) {
    assert!(!QUEUES[queue].fifo, "transactions go to NORMAL queues");
    let tenant = QUEUES[queue].tenant;
    let mut decisions: std::collections::BTreeMap<u32, bool> = Default::default();
    let batches = ctx.knobs.batches_per_producer / 2;
    for _ in 0..batches {
        let route = ctx.route(queue);
        let commit = thread_rng().gen_range(0..100) < 70;
        let check_after_ms = thread_rng().gen_range(0..=4_000);
        let message = Outgoing {
            delay: Delay::Half(check_after_ms),
            ..new_message(&ctx, queue)
        };
        {
            let mut history = ctx.history.borrow_mut();
            let spec = &mut history.specs[message.key as usize];
            spec.delay_ms = 0;
            spec.deliver_at_ms = None;
            spec.half = true;
        }
        decisions.insert(message.key, commit);
        let request = api::send(&route.queue_id, std::slice::from_ref(&message));
        let mut id = None;
        for attempt in 1..=SEND_ATTEMPTS_MAX {
            if ctx.route(queue).incarnation != route.incarnation {
                break;
            }
            let outcome = ctx.call(tenant, &request).await.map(|v| api::sent(&v));
            if let Outcome::Ok { value, .. } = &outcome {
                id = value.first().copied();
            }
            let done = matches!(outcome, Outcome::Ok { .. });
            let keys = vec![message.key];
            let kind = EventKind::Send {
                queue,
                keys,
                attempt,
                outcome,
            };
            ctx.record(client, kind);
            if done {
                break;
            }
            sleep_ms(thread_rng().gen_range(50..=500)).await;
        }
        if let Some(message_id) = id {
            if thread_rng().gen_range(0..100) < 75 {
                sleep_ms(thread_rng().gen_range(0..=2_000)).await;
                end_transaction(&ctx, client, queue, (message.key, message_id), commit).await;
            }
        }
        answer_checks(&ctx, client, queue, &decisions).await;
        sleep_ms(thread_rng().gen_range(0..=1_000)).await;
    }
    let until = ctx.now() + TRANSACTION_CHECKS_AFTER_MS;
    // Bounded by TRANSACTION_CHECKS_AFTER_MS.
    while ctx.now() < until {
        answer_checks(&ctx, client, queue, &decisions).await;
        sleep_ms(thread_rng().gen_range(300..=1_000)).await;
    }
}

/// Ends a transaction with `commit` (else rolls it back): up to three attempts while the
/// answer is lost; a refusal (409: ended already, or dropped after its last check) ends
/// the tries.
async fn end_transaction(
    ctx: &Ctx,
    client: u32,
    queue: usize,
    (key, message_id): (u32, MessageId),
    commit: bool,
) {
    let tenant = QUEUES[queue].tenant;
    for _ in 0..3 {
        let route = ctx.route(queue);
        let request = api::end_transaction(&route.queue_id, message_id, commit);
        let outcome = ctx.call(tenant, &request).await.map(|_| ());
        let again = matches!(outcome, Outcome::Ambiguous { .. });
        let kind = EventKind::EndTransaction {
            queue,
            key,
            message_id,
            commit,
            outcome,
        };
        ctx.record(client, kind);
        if !again {
            return;
        }
    }
}

/// Takes the queue's due checks and answers each with its transaction's decision.
async fn answer_checks(
    ctx: &Ctx,
    client: u32,
    queue: usize,
    decisions: &std::collections::BTreeMap<u32, bool>,
) {
    let route = ctx.route(queue);
    let request = api::transaction_checks(&route.queue_id);
    let Outcome::Ok { value, .. } = ctx.call(QUEUES[queue].tenant, &request).await else {
        return;
    };
    for (key, message_id) in api::checked(&value) {
        let commit = *decisions
            .get(&key)
            .expect("a check names a half message sent here");
        end_transaction(ctx, client, queue, (key, message_id), commit).await;
    }
}

/// Receives and then acks, fails or forgets each message until the run stops; while
/// draining it acks everything at once. On the dead-letter lane it never fails a message
/// (a failed dead letter just comes back).
pub async fn consumer(ctx: Rc<Ctx>, client: u32, queue: usize, group: usize, lane: Lane) {
    let tenant = QUEUES[queue].tenant;
    // Bounded by the run: `stopped` is set after the draining phase.
    while !ctx.stopped.get() {
        let route = ctx.route(queue);
        let group_id = &route.group_ids[group];
        let request = api::consume(
            &route.queue_id,
            group_id,
            lane,
            thread_rng().gen_range(1..=4),
            thread_rng().gen_range(0..=ctx.knobs.time_wait_s_max),
            ctx.knobs.visibility_ms / 1_000,
        );
        let outcome = ctx.call(tenant, &request).await.map(|v| api::consumed(&v));
        let deliveries = match &outcome {
            Outcome::Ok { value, .. } => value.clone(),
            _ => Vec::new(),
        };
        let seen = outcome.map(|got| got.into_iter().map(|(d, _)| d).collect());
        ctx.record(
            client,
            EventKind::Receive {
                queue,
                incarnation: route.incarnation,
                group,
                lane,
                outcome: seen,
            },
        );
        if deliveries.is_empty() {
            // Draining may last minutes (clock steps hold delayed messages back).
            let pause_ms = if ctx.draining.get() { 1_000 } else { 300 };
            sleep_ms(thread_rng().gen_range(20..=pause_ms)).await;
            continue;
        }
        if !ctx.draining.get() && thread_rng().gen_range(0..100) < 3 {
            // The consumer crashes with the batch in hand and restarts a while later; its
            // leases run out.
            let down_ms = thread_rng().gen_range(500..=3_000);
            ctx.record(
                client,
                EventKind::Nemesis(format!("consumer crashes, down {down_ms} ms")),
            );
            sleep_ms(down_ms).await;
            continue;
        }
        if !ctx.draining.get() {
            // Processing; sometimes longer than the visibility timeout (a late ack).
            sleep_ms(thread_rng().gen_range(0..=ctx.knobs.visibility_ms * 13 / 10)).await;
        }
        let mut handlers = Vec::new();
        let mut targets = Vec::new();
        let draining = ctx.draining.get();
        let mut kind = AckKind::Success;
        if !draining && lane == Lane::Main && thread_rng().gen_range(0..100) < 15 {
            kind = AckKind::Fail;
        }
        for (delivered, handler) in &deliveries {
            if !draining && thread_rng().gen_range(0..100) < 15 {
                continue; // Forgotten: its visibility runs out.
            }
            handlers.push(handler.clone());
            targets.push((delivered.key, delivered.message_id));
        }
        if handlers.is_empty() {
            continue;
        }
        let request = api::ack(
            &route.queue_id,
            group_id,
            lane,
            &handlers,
            kind == AckKind::Success,
        );
        let entries = handlers.len();
        let outcome = ctx
            .call(tenant, &request)
            .await
            .map(|v| api::acked(&v, entries));
        ctx.record(
            client,
            EventKind::Ack {
                queue,
                group,
                lane,
                kind,
                targets,
                outcome,
            },
        );
    }
}

/// Deletes each churned queue and creates it again (with its groups) every few seconds
/// while faults are on. A delete is retried until it succeeds or the queue is gone
/// (404), and the queue is created again only then; the new queue and groups are found by name first, so a create whose answer was
/// lost is not made twice.
pub async fn churner(ctx: Rc<Ctx>, client: u32) {
    // Bounded by the run: the healing step turns `faults` off.
    while ctx.faults.get() {
        sleep_ms(thread_rng().gen_range(2_000..=8_000)).await;
        for queue in (0..QUEUES.len()).filter(|q| QUEUES[*q].churned) {
            let route = ctx.route(queue);
            let tenant = QUEUES[queue].tenant;
            let mut gone = false;
            for _ in 0..SEND_ATTEMPTS_MAX {
                let (outcome, status) = ctx
                    .call_as(
                        &ctx.credentials_of(tenant),
                        &api::queue_delete(&route.queue_id),
                    )
                    .await;
                gone =
                    matches!(outcome, Outcome::Ok { .. }) || status == Some(StatusCode::NOT_FOUND);
                let kind = EventKind::QueueDelete {
                    queue,
                    incarnation: route.incarnation,
                    outcome: outcome.map(|_| ()),
                };
                ctx.record(client, kind);
                if gone {
                    break;
                }
                sleep_ms(thread_rng().gen_range(50..=500)).await;
            }
            if !gone {
                continue; // Not known to be deleted: the next round tries again.
            }
            let Some((queue_id, group_ids)) = create_again(&ctx, queue).await else {
                let what = format!("q{queue}: not created again; the churner stops");
                ctx.record(client, EventKind::Nemesis(what));
                return;
            };
            ctx.routes.borrow_mut()[queue] = QueueRoute {
                queue_id,
                group_ids,
                incarnation: route.incarnation + 1,
            };
        }
    }
}

/// Finds or creates the queue and its groups by name, retrying until all exist; `None`
/// after `CREATE_AGAIN_ROUNDS_MAX` rounds (a node that never serves them again: the
/// queue stays deleted).
async fn create_again(ctx: &Ctx, queue: usize) -> Option<(String, Vec<String>)> {
    let spec = QUEUES[queue];
    for _ in 0..CREATE_AGAIN_ROUNDS_MAX {
        let listed = ctx.call(spec.tenant, &api::queue_list()).await;
        let Outcome::Ok { value, .. } = listed else {
            sleep_ms(100).await;
            continue;
        };
        let Some(queue_id) = api::queue_named(&value, spec.name) else {
            let create = api::queue_create(spec.name, spec.fifo, None);
            let _ = ctx.call(spec.tenant, &create).await;
            sleep_ms(50).await;
            continue;
        };
        let Outcome::Ok { value, .. } = ctx.call(spec.tenant, &api::groups_list(&queue_id)).await
        else {
            sleep_ms(100).await;
            continue;
        };
        let found: Vec<Option<String>> = GROUPS
            .iter()
            .map(|name| api::group_named(&value, name))
            .collect();
        if found.iter().all(Option::is_some) {
            return Some((queue_id, found.into_iter().flatten().collect()));
        }
        for (name, id) in GROUPS.iter().zip(&found) {
            if id.is_none() {
                let _ = ctx
                    .call(spec.tenant, &api::groups_create(&queue_id, &[name]))
                    .await;
            }
        }
        sleep_ms(50).await;
    }
    None
}

/// Tenant `t2` (which owns no queue) probes the other tenants' queues until the run
/// stops: it lists its own queues, consumes from and sends to their queue ids under its
/// own project, and signs a request to another tenant's project path. Every probe must
/// be refused (or, for its own list, answer no queue); the checker judges the statuses.
pub async fn prober(ctx: Rc<Ctx>, client: u32) {
    let own = ctx.credentials_of(TENANT_NAMES[2]);
    // Bounded by the run: `stopped` is set after the draining phase.
    while !ctx.stopped.get() {
        sleep_ms(thread_rng().gen_range(200..=2_000)).await;
        let queue = thread_rng().gen_range(0..QUEUES.len());
        let QueueSpec {
            tenant: owner,
            name,
            fifo,
            ..
        } = QUEUES[queue];
        let route = ctx.route(queue);
        let (what, credentials, request) = match thread_rng().gen_range(0..4) {
            0 => (
                "list own queues".to_string(),
                own.clone(),
                api::queue_list(),
            ),
            1 => (
                format!("consume {owner}/{name} under own project"),
                own.clone(),
                api::consume(&route.queue_id, &route.group_ids[0], Lane::Main, 1, 0, 1),
            ),
            2 => {
                let message = Outgoing {
                    key: u32::MAX,
                    fifo_group: fifo.then(|| "fg0".to_string()),
                    delay: Delay::None,
                    dedup_id: "probe".into(),
                };
                let request = api::send(&route.queue_id, &[message]);
                let what = format!("send to {owner}/{name} under own project");
                (what, own.clone(), request)
            }
            _ => {
                let foreign = Credentials {
                    project: ctx.credentials_of(owner).project,
                    ..own.clone()
                };
                let what = format!("list queues of {owner} with own keys");
                (what, foreign, api::queue_list())
            }
        };
        let (outcome, status) = ctx.call_as(&credentials, &request).await;
        // Only a list answers queues; another probe that succeeds is judged by its status.
        let queues_seen = match &outcome {
            Outcome::Ok { value, .. } if request.path == "/queues" => api::queues_listed(value),
            _ => 0,
        };
        ctx.record(
            client,
            EventKind::Probe {
                what,
                status: status.map(|s| s.as_u16()),
                queues_seen,
            },
        );
    }
}

/// The node's wall clock stays within this of true time (clients sign at true time; the
/// allowed skew is 5 minutes, `SKEW_S_DEFAULT`). A boot's queue time starts at its wall
/// clock, so a delayed message may wait up to twice this longer than its delay
/// (`run::DRAIN_MS`).
pub const WALL_OFFSET_MS_MAX: i64 = 120_000;

/// Crashes the node, arms a sync EIO or a write ENOSPC, or steps the node's wall clock
/// (forwards or backwards, up to 2 minutes), at seeded random times while faults are on.
pub async fn nemesis(ctx: Rc<Ctx>) {
    let node = ctx
        .target
        .single()
        .expect("the single-node nemesis")
        .clone();
    // Bounded by the run: the healing step turns `faults` off.
    while ctx.faults.get() {
        sleep_ms(thread_rng().gen_range(0..=2 * ctx.knobs.fault_interval_ms)).await;
        if !ctx.faults.get() {
            break;
        }
        let now = ctx.now();
        let roll = thread_rng().gen_range(0..100);
        let partition = thread_rng().gen_range(0..node.disks.len());
        if roll < ctx.knobs.eio_percent {
            node.arm_fault(partition, IoOp::Sync, IoErrorKind::Io);
        } else if roll < ctx.knobs.eio_percent + 10 {
            node.arm_fault(partition, IoOp::Write, IoErrorKind::NoSpace);
        } else if roll < ctx.knobs.eio_percent + 20 {
            let tenant = thread_rng().gen_range(0..2);
            let down_ms = thread_rng().gen_range(200..=5_000);
            ctx.cut.set(Some((tenant, now + down_ms)));
            let what = format!(
                "network partition: {} cut off for {down_ms} ms",
                TENANT_NAMES[tenant]
            );
            ctx.record(0, EventKind::Nemesis(what));
        } else if roll < ctx.knobs.eio_percent + 20 + ctx.knobs.clock_jump_percent {
            let step = thread_rng().gen_range(1_000..=WALL_OFFSET_MS_MAX);
            let offset = node.wall_offset_ms();
            let step = if thread_rng().gen_bool(0.5) {
                step
            } else {
                -step
            };
            let step = (offset + step).clamp(-WALL_OFFSET_MS_MAX, WALL_OFFSET_MS_MAX) - offset;
            node.jump_clock(step);
        } else {
            node.crash(now, thread_rng().gen_range(0..=1_000));
            if thread_rng().gen_bool(0.5) {
                // The recovery after the crash reads flipped bits (seed 647's fault).
                for partition in 0..node.disks.len() {
                    node.flip_read(partition, thread_rng().gen_range(1..=6));
                }
            }
        }
    }
}

/// The long poll of the wake probe, seconds: far longer than a wake-up may take.
const WAKE_PROBE_WAIT_S: u64 = 20;
/// The probe's send leaves this long after the long poll.
const WAKE_PROBE_SEND_AFTER_MS: u64 = 1_000;
/// A woken long poll answers within this of the send's reply (link latency, disk
/// latency and hops are tens of milliseconds).
const WAKE_PROBE_SLACK_MS: u64 = 2_000;
/// Rounds of draining before the probe; the workload has drained already.
const WAKE_PROBE_DRAIN_ROUNDS_MAX: u32 = 100;

/// Liveness, after the run (no faults, no other client): a consume long-polling on a
/// drained queue must return a message sent meanwhile long before its wait ends, because
/// the node wakes a long poll when a partition changes, not only at its deadline. Not
/// recorded in the history (the checker has judged it already); `Some` names a failure.
pub async fn wake_probe(ctx: Rc<Ctx>) -> Option<String> {
    let tenant = QUEUES[0].tenant;
    let route = ctx.route(0);
    let (queue, group) = (route.queue_id.clone(), route.group_ids[0].clone());
    let ack_wait_s = ctx.knobs.visibility_ms / 1_000;
    for _ in 0..WAKE_PROBE_DRAIN_ROUNDS_MAX {
        let request = api::consume(&queue, &group, Lane::Main, 10, 0, ack_wait_s);
        let Outcome::Ok { value, .. } = ctx.call(tenant, &request).await else {
            return Some("wake probe: a drain consume failed".into());
        };
        let handlers: Vec<String> = api::consumed(&value).into_iter().map(|d| d.1).collect();
        if handlers.is_empty() {
            break;
        }
        let ack = api::ack(&queue, &group, Lane::Main, &handlers, true);
        let _ = ctx.call(tenant, &ack).await;
    }
    let poller = {
        let ctx = ctx.clone();
        let request = api::consume(&queue, &group, Lane::Main, 1, WAKE_PROBE_WAIT_S, ack_wait_s);
        madsim::task::spawn_local(async move {
            let outcome = ctx.call(tenant, &request).await;
            (outcome, ctx.now())
        })
    };
    sleep_ms(WAKE_PROBE_SEND_AFTER_MS).await;
    let message = Outgoing {
        key: u32::MAX - 1,
        fifo_group: None,
        delay: Delay::None,
        dedup_id: "wake-probe".into(),
    };
    if !matches!(
        ctx.call(tenant, &api::send(&queue, &[message])).await,
        Outcome::Ok { .. }
    ) {
        return Some("wake probe: the send failed".into());
    }
    let sent_ms = ctx.now();
    let (outcome, answered_ms) = poller.await.expect("the poll task");
    let Outcome::Ok { value, .. } = outcome else {
        return Some("wake probe: the long poll failed".into());
    };
    let got = api::consumed(&value).len();
    let late_ms = answered_ms.saturating_sub(sent_ms);
    (got == 0 || late_ms > WAKE_PROBE_SLACK_MS).then(|| {
        format!(
            "wake probe: a long poll answered {got} message(s) {late_ms} ms after a send to \
             its queue (expected one within {WAKE_PROBE_SLACK_MS} ms)"
        )
    })
}
