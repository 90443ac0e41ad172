//! `http-load`: drives a running (or freshly spawned) `sluice server` through the DMS REST
//! API with signed HTTP/1.1 keep-alive requests, and measures durable produce, consume
//! (receive + ack) and mixed throughput with per-request latency. It verifies that every
//! confirmed message came back (loss fails the run; duplicates are allowed by the contract
//! and only counted). It must not start anything except the optional server.
//!
//! The client is a hand-rolled HTTP/1.1 client on one tokio current-thread runtime: on a
//! 2-core machine the load generator shares the CPU with the server, so it keeps its own
//! cost small (no connection pool, no per-request task) and reports its CPU time beside
//! the server's.
//!
//! Usage:
//!   http-load --spawn-server target/release/sluice --workload produce --producers 8 \
//!       --batch 10 --size 1024 --seconds 20
//!   http-load --endpoint http://127.0.0.1:8080 --data-dir DIR --workload mixed \
//!       --producers 4 --consumers 4 --messages 200000 --json-out results.jsonl

#![recursion_limit = "256"]

#[cfg(madsim)]
fn main() {
    eprintln!("http-load needs real sockets; build it without --cfg madsim");
}

#[cfg(not(madsim))]
fn main() -> std::process::ExitCode {
    load::main()
}

#[cfg(not(madsim))]
mod load {
    use std::cell::{Cell, RefCell};
    use std::net::SocketAddr;
    use std::path::{Path, PathBuf};
    use std::process::ExitCode;
    use std::rc::Rc;
    use std::time::{Duration, Instant};

    use clap::{Parser, ValueEnum};
    use serde_json::{json, Value};
    use sluice_benches::dms::{
        read_tenant, send_all_stored, spawn_server, unix_now, Conn, Delivery, Signer,
        SEND_BATCH_MAX,
    };
    use sluice_benches::latency::Samples;
    use sluice_benches::procfs::cpu_s;
    /// Prefix of every body: 16 hex digits of the run nonce, '-', 10 digits of id, '-'.
    const BODY_PREFIX_BYTES: usize = 28;

    #[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
    enum Workload {
        Produce,
        Consume,
        Mixed,
    }

    #[derive(Parser, Debug)]
    #[command(name = "http-load", about = "Load generator for sluice's DMS HTTP API")]
    struct Args {
        /// `http://host:port` of a running server (needs --data-dir for credentials); a
        /// comma-separated list spreads the connections over the nodes of a cluster
        /// (producer i and consumer i use endpoint i % E).
        #[arg(long, requires = "data_dir", conflicts_with = "spawn_server")]
        endpoint: Option<String>,
        /// The running server's data directory: credentials come from its tenants.json.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Start this `sluice` binary in a fresh temporary data directory on a free port.
        #[arg(long)]
        spawn_server: Option<PathBuf>,
        /// Parent directory of the spawned server's data dir (must be a real disk, not tmpfs).
        #[arg(long, default_value = "/tmp")]
        spawn_parent: PathBuf,
        /// `--shards` for the spawned server (default: the server's own, one per core).
        #[arg(long)]
        server_shards: Option<u32>,
        /// Pid of an already running server, to report its CPU time.
        #[arg(long)]
        server_pid: Option<u32>,
        #[arg(long, value_enum, default_value = "produce")]
        workload: Workload,
        /// Producer connections, one send request in flight each.
        #[arg(long, default_value_t = 2)]
        producers: u32,
        /// Consumer connections (receive, then ack, one request in flight each).
        #[arg(long, default_value_t = 2)]
        consumers: u32,
        /// Messages per send request (1..=10).
        #[arg(long, default_value_t = 10)]
        batch: u32,
        /// Body bytes per message (at least 28: the run nonce and the message id).
        #[arg(long, default_value_t = 1024)]
        size: u32,
        /// Stop producing after this many seconds.
        #[arg(long)]
        seconds: Option<f64>,
        /// Stop producing after this many messages (consume: the pre-fill).
        #[arg(long)]
        messages: Option<u64>,
        /// `max_msgs` of each receive (1..=10).
        #[arg(long, default_value_t = 10)]
        max_msgs: u32,
        /// Queues to spread the connections over (producer i and consumer i use queue i % Q).
        #[arg(long, default_value_t = 1)]
        queues: u32,
        /// Repetitions, each on fresh queues.
        #[arg(long, default_value_t = 1)]
        runs: u32,
        /// Seconds consumers may take, after the last confirm, to receive everything.
        #[arg(long, default_value_t = 60.0)]
        drain_timeout: f64,
        #[arg(long, default_value = "")]
        label: String,
        /// Append one JSON line per run to this file.
        #[arg(long)]
        json_out: Option<PathBuf>,
    }

    /// Run-wide accounting, shared by the tasks of the single-threaded runtime.
    struct Ledger {
        nonce: u64,
        size_bytes: usize,
        message_count_max: u64,
        produce_deadline: Option<Instant>,
        ids_allocated: Cell<u64>,
        /// Per id: 1 once a send carrying it was answered 201.
        confirmed: RefCell<Vec<u8>>,
        /// Per id: deliveries seen (saturating).
        seen: RefCell<Vec<u8>>,
        confirmed_count: Cell<u64>,
        confirmed_seen_count: Cell<u64>,
        distinct_count: Cell<u64>,
        delivery_count: Cell<u64>,
        duplicate_count: Cell<u64>,
        foreign_count: Cell<u64>,
        corrupt_count: Cell<u64>,
        publish_error_count: Cell<u64>,
        consume_error_count: Cell<u64>,
        producers_done: Cell<bool>,
        consumers_stop: Cell<bool>,
        last_confirm: Cell<Option<Instant>>,
        last_new_delivery: Cell<Option<Instant>>,
        errors: RefCell<Vec<String>>,
    }

    impl Ledger {
        /// The next `batch` ids, fewer at the message limit, none after the deadline.
        fn allocate(&self, batch: u32) -> Option<(u64, u32)> {
            if self
                .produce_deadline
                .is_some_and(|deadline| Instant::now() >= deadline)
            {
                return None;
            }
            let first = self.ids_allocated.get();
            let count = u64::from(batch).min(self.message_count_max.saturating_sub(first));
            if count == 0 {
                return None;
            }
            self.ids_allocated.set(first + count);
            Some((first, u32::try_from(count).expect("at most a batch")))
        }

        fn grow(vector: &mut Vec<u8>, id: u64) -> usize {
            let index = usize::try_from(id).expect("id fits usize");
            if vector.len() <= index {
                vector.resize((index + 1).max(vector.len() * 2), 0);
            }
            index
        }

        fn confirm(&self, first: u64, count: u32) {
            let mut confirmed = self.confirmed.borrow_mut();
            let seen = self.seen.borrow();
            for id in first..first + u64::from(count) {
                let index = Ledger::grow(&mut confirmed, id);
                assert!(confirmed[index] == 0, "id {id} confirmed twice");
                confirmed[index] = 1;
                self.confirmed_count.set(self.confirmed_count.get() + 1);
                if seen.get(index).is_some_and(|&count| count > 0) {
                    self.confirmed_seen_count
                        .set(self.confirmed_seen_count.get() + 1);
                }
            }
            self.last_confirm.set(Some(Instant::now()));
        }

        fn delivered(&self, body: &Value) {
            self.delivery_count.set(self.delivery_count.get() + 1);
            let Some(id) = self.body_id(body) else {
                return;
            };
            let mut seen = self.seen.borrow_mut();
            let index = Ledger::grow(&mut seen, id);
            seen[index] = seen[index].saturating_add(1);
            if seen[index] > 1 {
                self.duplicate_count.set(self.duplicate_count.get() + 1);
                return;
            }
            self.distinct_count.set(self.distinct_count.get() + 1);
            self.last_new_delivery.set(Some(Instant::now()));
            if self
                .confirmed
                .borrow()
                .get(index)
                .is_some_and(|&flag| flag == 1)
            {
                self.confirmed_seen_count
                    .set(self.confirmed_seen_count.get() + 1);
            }
        }

        /// The id of a body of this run, after checking its length and filler.
        fn body_id(&self, body: &Value) -> Option<u64> {
            let text = body.as_str().unwrap_or("");
            let prefix = format!("{:016x}-", self.nonce);
            if !text.starts_with(&prefix) {
                self.foreign_count.set(self.foreign_count.get() + 1);
                return None;
            }
            let id = text
                .get(17..27)
                .and_then(|digits| digits.parse::<u64>().ok());
            let filler_ok = text.len() == self.size_bytes
                && text.as_bytes()[BODY_PREFIX_BYTES..]
                    .iter()
                    .all(|&byte| byte == b'x');
            match id {
                Some(id) if filler_ok && id < self.ids_allocated.get() => Some(id),
                _ => {
                    self.corrupt_count.set(self.corrupt_count.get() + 1);
                    None
                }
            }
        }

        fn error(&self, message: String) {
            let mut errors = self.errors.borrow_mut();
            if errors.len() < 10 {
                errors.push(message);
            }
        }

        /// Every confirmed message has been delivered at least once.
        fn drained(&self) -> bool {
            self.producers_done.get()
                && self.confirmed_seen_count.get() == self.confirmed_count.get()
        }
    }

    /// The queues and group of one run.
    struct Setup {
        queue_ids: Vec<String>,
        group_ids: Vec<String>,
    }

    struct Ctx {
        signer: Signer,
        /// The first endpoint: setup and teardown.
        address: SocketAddr,
        /// Every endpoint: connection `i` uses `addresses[i % len]`.
        addresses: Vec<SocketAddr>,
        args: Args,
    }

    impl Ctx {
        fn address_for(&self, index: u32) -> SocketAddr {
            let index = usize::try_from(index).expect("fits") % self.addresses.len();
            self.addresses[index]
        }

        fn base(&self) -> String {
            format!("/v1.0/{}", self.signer.tenant.project_id)
        }

        async fn call_json(
            &self,
            conn: &mut Conn,
            method: &str,
            path: &str,
            body: &Value,
        ) -> Result<Value, String> {
            conn.call_json(&self.signer, method, path, body).await
        }

        async fn setup(&self, nonce: u64) -> Result<Setup, String> {
            let mut conn = Conn::new(self.address);
            let mut setup = Setup {
                queue_ids: Vec::new(),
                group_ids: Vec::new(),
            };
            for queue_index in 0..self.args.queues {
                let name = format!("load-{nonce:x}-{queue_index}");
                let path = format!("{}/queues", self.base());
                let queue = json!({"name": name, "queue_mode": "NORMAL"});
                let created = self.call_json(&mut conn, "POST", &path, &queue).await?;
                let queue_id = created["id"]
                    .as_str()
                    .ok_or("queue answer without id")?
                    .to_string();
                let path = format!("{}/queues/{queue_id}/groups", self.base());
                let groups = json!({"groups": [{"name": "g"}]});
                let created = self.call_json(&mut conn, "POST", &path, &groups).await?;
                let group_id = created["groups"][0]["id"]
                    .as_str()
                    .ok_or("group answer without id")?;
                setup.group_ids.push(group_id.to_string());
                setup.queue_ids.push(queue_id);
            }
            Ok(setup)
        }

        async fn teardown(&self, setup: &Setup) {
            let mut conn = Conn::new(self.address);
            for queue_id in &setup.queue_ids {
                let path = format!("{}/queues/{queue_id}", self.base());
                if let Err(error) = self
                    .call_json(&mut conn, "DELETE", &path, &Value::Null)
                    .await
                {
                    eprintln!("http-load: deleting queue {queue_id}: {error}");
                }
            }
        }
    }

    struct ProducerOut {
        send: Samples,
    }

    async fn producer(
        ctx: Rc<Ctx>,
        ledger: Rc<Ledger>,
        queue_id: String,
        index: u32,
    ) -> ProducerOut {
        let mut conn = Conn::new(ctx.address_for(index));
        let path = format!("{}/queues/{queue_id}/messages", ctx.base());
        let mut out = ProducerOut {
            send: Samples::default(),
        };
        let mut body = Vec::with_capacity(
            usize::try_from(ctx.args.batch * (ctx.args.size + 16)).expect("fits"),
        );
        let filler = "x".repeat(ledger.size_bytes - BODY_PREFIX_BYTES);
        // Bounded by the ledger: allocation stops at the message limit or the deadline.
        while let Some((first, count)) = ledger.allocate(ctx.args.batch) {
            body.clear();
            body.extend_from_slice(b"{\"messages\":[");
            for id in first..first + u64::from(count) {
                if id != first {
                    body.push(b',');
                }
                let prefix = format!("{{\"body\":\"{:016x}-{id:010}-", ledger.nonce);
                body.extend_from_slice(prefix.as_bytes());
                body.extend_from_slice(filler.as_bytes());
                body.extend_from_slice(b"\"}");
            }
            body.extend_from_slice(b"]}");
            let started = Instant::now();
            let result = conn.call(&ctx.signer, "POST", &path, None, &body).await;
            out.send.push(started);
            match result {
                Ok(response) if response.status == 201 && send_all_stored(&response.body) => {
                    ledger.confirm(first, count)
                }
                Ok(response) => {
                    ledger
                        .publish_error_count
                        .set(ledger.publish_error_count.get() + u64::from(count));
                    let text = String::from_utf8_lossy(&response.body);
                    ledger.error(format!("send: HTTP {}: {text}", response.status));
                }
                Err(error) => {
                    ledger
                        .publish_error_count
                        .set(ledger.publish_error_count.get() + u64::from(count));
                    ledger.error(format!("send: {error}"));
                }
            }
        }
        out
    }

    #[derive(Default)]
    struct ConsumerOut {
        receive: Samples,
        ack: Samples,
    }

    async fn consumer(
        ctx: Rc<Ctx>,
        ledger: Rc<Ledger>,
        queue_id: String,
        group_id: String,
        out: Rc<RefCell<ConsumerOut>>,
        index: u32,
    ) {
        let mut conn = Conn::new(ctx.address_for(index));
        let receive_path = format!(
            "{}/queues/{queue_id}/groups/{group_id}/messages",
            ctx.base()
        );
        let query = format!("max_msgs={}&time_wait=1&ack_wait=30", ctx.args.max_msgs);
        let ack_path = format!("{}/queues/{queue_id}/groups/{group_id}/ack", ctx.base());
        // Bounded by the run: the driver sets `consumers_stop` when drained or timed out.
        while !ledger.consumers_stop.get() {
            let started = Instant::now();
            let result = conn
                .call(&ctx.signer, "GET", &receive_path, Some(&query), b"")
                .await;
            out.borrow_mut().receive.push(started);
            let deliveries = match result {
                Ok(response) if response.status == 200 => {
                    match serde_json::from_slice::<Vec<Delivery>>(&response.body) {
                        Ok(deliveries) => deliveries,
                        Err(error) => {
                            consume_error(&ledger, format!("receive: bad JSON: {error}"));
                            continue;
                        }
                    }
                }
                Ok(response) => {
                    let text = String::from_utf8_lossy(&response.body);
                    consume_error(
                        &ledger,
                        format!("receive: HTTP {}: {text}", response.status),
                    );
                    continue;
                }
                Err(error) => {
                    consume_error(&ledger, format!("receive: {error}"));
                    continue;
                }
            };
            if deliveries.is_empty() {
                continue;
            }
            for delivery in &deliveries {
                ledger.delivered(&delivery.message.body);
            }
            let entries: Vec<Value> = deliveries
                .iter()
                .map(|delivery| json!({"handler": delivery.handler, "status": "success"}))
                .collect();
            let ack = json!({"message": entries}).to_string();
            let started = Instant::now();
            let result = conn
                .call(&ctx.signer, "POST", &ack_path, None, ack.as_bytes())
                .await;
            out.borrow_mut().ack.push(started);
            match result {
                Ok(response) if response.status == 200 => {
                    let answer: Value =
                        serde_json::from_slice(&response.body).unwrap_or(Value::Null);
                    if answer["success"].as_u64() != Some(deliveries.len() as u64) {
                        consume_error(&ledger, format!("ack: partial success: {answer}"));
                    }
                }
                Ok(response) => {
                    let text = String::from_utf8_lossy(&response.body);
                    consume_error(&ledger, format!("ack: HTTP {}: {text}", response.status));
                }
                Err(error) => consume_error(&ledger, format!("ack: {error}")),
            }
        }
    }

    fn consume_error(ledger: &Ledger, message: String) {
        ledger
            .consume_error_count
            .set(ledger.consume_error_count.get() + 1);
        ledger.error(message);
    }

    fn load_average() -> String {
        std::fs::read_to_string("/proc/loadavg")
            .map(|text| {
                text.split_whitespace()
                    .take(3)
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_default()
    }

    /// Figures of one run.
    struct Report {
        value: Value,
        ok: bool,
    }

    async fn run_once(
        ctx: Rc<Ctx>,
        run_index: u32,
        server_pid: Option<u32>,
    ) -> Result<Report, String> {
        let args = &ctx.args;
        let nonce = u64::from(std::process::id()) << 32
            ^ u64::from(unix_now().subsec_nanos())
            ^ u64::from(run_index);
        let setup = ctx.setup(nonce).await?;
        let message_count_max = args.messages.unwrap_or(u64::MAX);
        let ledger = Rc::new(Ledger {
            nonce,
            size_bytes: usize::try_from(args.size).expect("fits"),
            message_count_max,
            produce_deadline: args
                .seconds
                .map(|s| Instant::now() + Duration::from_secs_f64(s)),
            ids_allocated: Cell::new(0),
            confirmed: RefCell::new(Vec::new()),
            seen: RefCell::new(Vec::new()),
            confirmed_count: Cell::new(0),
            confirmed_seen_count: Cell::new(0),
            distinct_count: Cell::new(0),
            delivery_count: Cell::new(0),
            duplicate_count: Cell::new(0),
            foreign_count: Cell::new(0),
            corrupt_count: Cell::new(0),
            publish_error_count: Cell::new(0),
            consume_error_count: Cell::new(0),
            producers_done: Cell::new(false),
            consumers_stop: Cell::new(false),
            last_confirm: Cell::new(None),
            last_new_delivery: Cell::new(None),
            errors: RefCell::new(Vec::new()),
        });
        let load_before = load_average();
        let server_cpu_before = cpu_s(server_pid);
        let client_cpu_before = cpu_s(None);
        let consumer_out = Rc::new(RefCell::new(ConsumerOut::default()));
        let mut consumers = Vec::new();
        let start_consumers = |consumers: &mut Vec<tokio::task::JoinHandle<()>>| {
            for index in 0..args.consumers {
                let queue_index = usize::try_from(index % args.queues).expect("fits");
                consumers.push(tokio::task::spawn_local(consumer(
                    ctx.clone(),
                    ledger.clone(),
                    setup.queue_ids[queue_index].clone(),
                    setup.group_ids[queue_index].clone(),
                    consumer_out.clone(),
                    index,
                )));
            }
        };
        let produce_started = Instant::now();
        if args.workload == Workload::Mixed {
            start_consumers(&mut consumers);
        }
        let mut producers = Vec::new();
        for index in 0..args.producers {
            let queue_index = usize::try_from(index % args.queues).expect("fits");
            let queue_id = setup.queue_ids[queue_index].clone();
            producers.push(tokio::task::spawn_local(producer(
                ctx.clone(),
                ledger.clone(),
                queue_id,
                index,
            )));
        }
        let mut send = Samples::default();
        for handle in producers {
            send.append(handle.await.expect("producer task does not panic").send);
        }
        ledger.producers_done.set(true);
        let produce_s = ledger
            .last_confirm
            .get()
            .unwrap_or(produce_started)
            .duration_since(produce_started);
        let server_cpu_produced = cpu_s(server_pid);
        let client_cpu_produced = cpu_s(None);
        let consume_started = if args.workload == Workload::Consume {
            let started = Instant::now();
            start_consumers(&mut consumers);
            started
        } else {
            produce_started
        };
        let mut timed_out = false;
        if args.workload != Workload::Produce {
            let deadline = Instant::now() + Duration::from_secs_f64(args.drain_timeout);
            // Bounded by the drain deadline.
            while !ledger.drained() {
                if Instant::now() >= deadline {
                    timed_out = true;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            ledger.consumers_stop.set(true);
            for handle in &consumers {
                handle.abort();
            }
            for handle in consumers {
                let _ = handle.await;
            }
        }
        let consume_s = ledger
            .last_new_delivery
            .get()
            .map_or(Duration::ZERO, |last| last.duration_since(consume_started));
        let server_cpu_after = cpu_s(server_pid);
        let client_cpu_after = cpu_s(None);
        ctx.teardown(&setup).await;
        let mut consumer_out = consumer_out.take();
        Ok(report(
            &ctx,
            &ledger,
            ReportInputs {
                run_index,
                produce_s: produce_s.as_secs_f64(),
                consume_s: consume_s.as_secs_f64(),
                send: &mut send,
                receive: &mut consumer_out.receive,
                ack: &mut consumer_out.ack,
                timed_out,
                load_before,
                server_cpu: [server_cpu_before, server_cpu_produced, server_cpu_after],
                client_cpu: [client_cpu_before, client_cpu_produced, client_cpu_after],
            },
        ))
    }

    struct ReportInputs<'a> {
        run_index: u32,
        produce_s: f64,
        consume_s: f64,
        send: &'a mut Samples,
        receive: &'a mut Samples,
        ack: &'a mut Samples,
        timed_out: bool,
        load_before: String,
        /// Before, after producing (and the consume pre-fill), at the end.
        server_cpu: [Option<f64>; 3],
        client_cpu: [Option<f64>; 3],
    }

    fn report(ctx: &Ctx, ledger: &Ledger, inputs: ReportInputs<'_>) -> Report {
        let args = &ctx.args;
        let per_s = |count: u64, seconds: f64| {
            if seconds > 0.0 {
                count as f64 / seconds
            } else {
                0.0
            }
        };
        let confirmed = ledger.confirmed_count.get();
        let produce_msg_s = per_s(confirmed, inputs.produce_s);
        let produce_mb_s = produce_msg_s * f64::from(args.size) / 1e6;
        let consumes = args.workload != Workload::Produce;
        let distinct = ledger.distinct_count.get();
        let consume_msg_s = if consumes {
            per_s(distinct, inputs.consume_s)
        } else {
            0.0
        };
        let consume_mb_s = consume_msg_s * f64::from(args.size) / 1e6;
        let lost = if consumes {
            confirmed - ledger.confirmed_seen_count.get()
        } else {
            0
        };
        let ok = !inputs.timed_out
            && lost == 0
            && ledger.corrupt_count.get() == 0
            && ledger.foreign_count.get() == 0
            && ledger.publish_error_count.get() == 0;
        let (send_p50, send_p99, send_max) = inputs.send.quantiles_ms();
        let (receive_p50, receive_p99, receive_max) = inputs.receive.quantiles_ms();
        let (ack_p50, ack_p99, ack_max) = inputs.ack.quantiles_ms();
        let delta = |cpu: &[Option<f64>; 3], from: usize, to: usize| match (cpu[from], cpu[to]) {
            (Some(before), Some(after)) => Some(after - before),
            _ => None,
        };
        let server_cpu_produce_s = delta(&inputs.server_cpu, 0, 1);
        let server_cpu_total_s = delta(&inputs.server_cpu, 0, 2);
        let client_cpu_produce_s = delta(&inputs.client_cpu, 0, 1);
        let client_cpu_total_s = delta(&inputs.client_cpu, 0, 2);
        let per_message_us = |cpu: Option<f64>, count: u64| {
            cpu.filter(|_| count > 0).map(|s| s * 1e6 / count as f64)
        };
        let value = json!({
            "tool": "http-load",
            "label": args.label,
            "run": inputs.run_index,
            "workload": format!("{:?}", args.workload).to_lowercase(),
            "unix_s": unix_now().as_secs(),
            "load_before": inputs.load_before,
            "producers": args.producers,
            "consumers": if consumes { args.consumers } else { 0 },
            "batch": args.batch,
            "max_msgs": args.max_msgs,
            "size": args.size,
            "queues": args.queues,
            "confirmed": confirmed,
            "send_requests": inputs.send.us.len(),
            "publish_errors": ledger.publish_error_count.get(),
            "produce_secs": inputs.produce_s,
            "producer_msg_s": produce_msg_s,
            "producer_mb_s": produce_mb_s,
            "send_p50_ms": send_p50, "send_p99_ms": send_p99, "send_max_ms": send_max,
            "deliveries": ledger.delivery_count.get(),
            "distinct": distinct,
            "duplicates": ledger.duplicate_count.get(),
            "lost": lost,
            "foreign": ledger.foreign_count.get(),
            "corrupt": ledger.corrupt_count.get(),
            "consume_errors": ledger.consume_error_count.get(),
            "consume_secs": inputs.consume_s,
            "consume_msg_s": consume_msg_s,
            "consume_mb_s": consume_mb_s,
            "receive_requests": inputs.receive.us.len(),
            "receive_p50_ms": receive_p50, "receive_p99_ms": receive_p99, "receive_max_ms": receive_max,
            "ack_p50_ms": ack_p50, "ack_p99_ms": ack_p99, "ack_max_ms": ack_max,
            "server_cpu_produce_s": server_cpu_produce_s,
            "server_cpu_total_s": server_cpu_total_s,
            "client_cpu_produce_s": client_cpu_produce_s,
            "client_cpu_total_s": client_cpu_total_s,
            "server_cpu_us_per_produced_msg": per_message_us(server_cpu_produce_s, confirmed),
            "client_cpu_us_per_produced_msg": per_message_us(client_cpu_produce_s, confirmed),
            "timed_out": inputs.timed_out,
            "ok": ok,
            "errors": *ledger.errors.borrow(),
        });
        Report { value, ok }
    }

    fn print_report(value: &Value) {
        let number = |key: &str| value[key].as_f64().unwrap_or(f64::NAN);
        println!(
            "--- run {} {} {} (load before {}) ---",
            value["run"],
            value["workload"],
            value["label"],
            value["load_before"].as_str().unwrap_or("")
        );
        println!(
            "config   : {} producers x batch {}, {} consumers x max_msgs {}, {} B bodies, {} queue(s)",
            value["producers"], value["batch"], value["consumers"], value["max_msgs"], value["size"], value["queues"]
        );
        println!(
            "{:<9} {:>10} {:>10} {:>9} {:>9} {:>9} {:>9}",
            "", "msgs", "msgs/s", "MB/s", "p50 ms", "p99 ms", "max ms"
        );
        println!(
            "{:<9} {:>10} {:>10.0} {:>9.2} {:>9.2} {:>9.2} {:>9.2}",
            "send",
            value["confirmed"].as_u64().unwrap_or(0),
            number("producer_msg_s"),
            number("producer_mb_s"),
            number("send_p50_ms"),
            number("send_p99_ms"),
            number("send_max_ms")
        );
        if value["workload"] != "produce" {
            println!(
                "{:<9} {:>10} {:>10.0} {:>9.2} {:>9.2} {:>9.2} {:>9.2}",
                "receive",
                value["distinct"].as_u64().unwrap_or(0),
                number("consume_msg_s"),
                number("consume_mb_s"),
                number("receive_p50_ms"),
                number("receive_p99_ms"),
                number("receive_max_ms")
            );
            println!(
                "{:<9} {:>10} {:>10} {:>9} {:>9.2} {:>9.2} {:>9.2}",
                "ack",
                "",
                "",
                "",
                number("ack_p50_ms"),
                number("ack_p99_ms"),
                number("ack_max_ms")
            );
        }
        let cpu = |key: &str| {
            value[key]
                .as_f64()
                .map_or("n/a".to_string(), |v| format!("{v:.1}"))
        };
        println!(
            "cpu      : server {} s produce / {} s total ({} us/msg produced), client {} s / {} s ({} us/msg)",
            cpu("server_cpu_produce_s"), cpu("server_cpu_total_s"), cpu("server_cpu_us_per_produced_msg"),
            cpu("client_cpu_produce_s"), cpu("client_cpu_total_s"), cpu("client_cpu_us_per_produced_msg")
        );
        println!(
            "verify   : lost {} duplicates {} corrupt {} foreign {} publish_errors {} consume_errors {} timed_out {} => {}",
            value["lost"], value["duplicates"], value["corrupt"], value["foreign"], value["publish_errors"],
            value["consume_errors"], value["timed_out"],
            if value["ok"] == true { "OK" } else { "FAILED" }
        );
        for error in value["errors"].as_array().into_iter().flatten() {
            println!("error    : {}", error.as_str().unwrap_or(""));
        }
    }

    fn validate(args: &Args) -> Result<(), String> {
        if !(1..=SEND_BATCH_MAX).contains(&args.batch) {
            return Err(format!("--batch must be 1..={SEND_BATCH_MAX}"));
        }
        if !(1..=10).contains(&args.max_msgs) {
            return Err("--max-msgs must be 1..=10".to_string());
        }
        if (args.size as usize) < BODY_PREFIX_BYTES {
            return Err(format!("--size must be at least {BODY_PREFIX_BYTES}"));
        }
        if args.seconds.is_none() && args.messages.is_none() {
            return Err("give --seconds or --messages".to_string());
        }
        if args.producers == 0 || args.queues == 0 {
            return Err("--producers and --queues must be positive".to_string());
        }
        if args.workload != Workload::Produce && args.consumers == 0 {
            return Err("consume and mixed need --consumers".to_string());
        }
        if args.endpoint.is_none() && args.spawn_server.is_none() {
            return Err("give --endpoint (with --data-dir) or --spawn-server".to_string());
        }
        Ok(())
    }

    pub fn main() -> ExitCode {
        let args = Args::parse();
        if let Err(message) = validate(&args) {
            eprintln!("http-load: {message}");
            return ExitCode::from(2);
        }
        let (spawned, addresses, data_dir) = match &args.spawn_server {
            Some(binary) => {
                match spawn_server(binary, &args.spawn_parent, "http-load", args.server_shards) {
                    Ok((spawned, address)) => {
                        let data_dir = spawned.data_dir.clone();
                        (Some(spawned), vec![address], data_dir)
                    }
                    Err(message) => {
                        eprintln!("http-load: {message}");
                        return ExitCode::FAILURE;
                    }
                }
            }
            None => {
                let endpoints = args.endpoint.as_deref().expect("validated");
                let mut addresses = Vec::new();
                for endpoint in endpoints.split(',') {
                    let authority = endpoint
                        .split_once("://")
                        .map_or(endpoint, |(_, rest)| rest)
                        .trim_end_matches('/');
                    let Ok(address) = authority.parse::<SocketAddr>() else {
                        eprintln!(
                            "http-load: --endpoint needs ip:port authorities, got {authority:?}"
                        );
                        return ExitCode::from(2);
                    };
                    addresses.push(address);
                }
                (None, addresses, args.data_dir.clone().expect("validated"))
            }
        };
        let tenant = match read_tenant(&data_dir) {
            Ok(tenant) => tenant,
            Err(message) => {
                eprintln!("http-load: {message}");
                return ExitCode::FAILURE;
            }
        };
        let server_pid = spawned
            .as_ref()
            .map(|spawned| spawned.child.id())
            .or(args.server_pid);
        let runs = args.runs;
        let json_out = args.json_out.clone();
        let ctx = Rc::new(Ctx {
            signer: Signer {
                tenant,
                host: addresses[0].to_string(),
            },
            address: addresses[0],
            addresses,
            args,
        });
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let local = tokio::task::LocalSet::new();
        let mut all_ok = true;
        for run_index in 0..runs {
            let result = local.block_on(&runtime, run_once(ctx.clone(), run_index, server_pid));
            match result {
                Ok(report) => {
                    print_report(&report.value);
                    all_ok &= report.ok;
                    if let Some(path) = &json_out {
                        if let Err(error) = append_line(path, &report.value) {
                            eprintln!("http-load: {}: {error}", path.display());
                        }
                    }
                }
                Err(message) => {
                    eprintln!("http-load: run {run_index}: {message}");
                    all_ok = false;
                }
            }
        }
        drop(spawned);
        if all_ok {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        }
    }

    fn append_line(path: &Path, value: &Value) -> std::io::Result<()> {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        writeln!(file, "{value}")
    }
}
