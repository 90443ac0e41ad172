//! `scale-bench`: what many queues and many pending delayed messages cost a `sluice server`
//! it starts itself (fresh data directory, DMS HTTP API, the `sluice_benches::dms` client).
//!
//! 1. A probe: `--probe-messages` 1 KiB messages sent in batches of 10 over
//!    `--connections` connections, then received (10 at a time) and acked over as many,
//!    on one queue. Each phase reports msgs/s and per-request p50/p99.
//! 2. `--queues` queues created (`--connections` at a time), with the creation rate per
//!    tenth; the server's RSS (/proc VmRSS) before and after gives bytes per idle queue.
//!    The probe runs again.
//! 3. `--delayed` messages of `--delayed-bytes` sent with a delay of one hour to a second
//!    queue (pending for the whole run), RSS before and after; the probe runs again.
//!
//! After each step the server's idle CPU over 3 s is reported. Each probe's figures are
//! given as a ratio to the first probe's (same run).
//! Usage: cargo xtask bench scale [--queues 100000] [--delayed 1000000] [--json-out FILE]

#![recursion_limit = "256"]

#[cfg(madsim)]
fn main() {
    eprintln!("scale-bench needs real sockets; build it without --cfg madsim");
}

#[cfg(not(madsim))]
fn main() -> std::process::ExitCode {
    scale::main()
}

#[cfg(not(madsim))]
mod scale {
    use std::cell::Cell;
    use std::net::SocketAddr;
    use std::path::PathBuf;
    use std::process::ExitCode;
    use std::rc::Rc;
    use std::time::Instant;

    use clap::Parser;
    use serde_json::{json, Value};
    use sluice_benches::dms::{
        read_tenant, send_all_stored, spawn_server_with, Conn, Delivery, Signer, Tenant,
        SEND_BATCH_MAX,
    };
    use sluice_benches::latency::Samples;
    use sluice_benches::procfs::{cpu_s, rss_bytes};

    #[derive(Parser, Debug)]
    #[command(about = "Queue count and pending delayed messages against send/receive cost")]
    struct Args {
        /// The `sluice` binary to start.
        #[arg(long, default_value = "target/release/sluice")]
        binary: PathBuf,
        /// Where the server's data directory goes (removed afterwards).
        #[arg(long, default_value = "target/scale-bench")]
        spawn_parent: PathBuf,
        /// Queues to create (at most 999,990: the server's ceiling per tenant, less the
        /// probe's and the delayed messages' queues).
        #[arg(long, default_value_t = 100_000)]
        queues: u32,
        /// Delayed messages to leave pending (0 skips the step).
        #[arg(long, default_value_t = 1_000_000)]
        delayed: u64,
        /// Body bytes of a delayed message.
        #[arg(long, default_value_t = 100)]
        delayed_bytes: usize,
        /// Messages per probe phase (a multiple of 10). The first probe also fills the
        /// server's bounded caches (log cache, Raft tail), so the RSS growth after it is
        /// the queues' and the delayed messages' own.
        #[arg(long, default_value_t = 100_000)]
        probe_messages: u64,
        /// Body bytes of a probe message.
        #[arg(long, default_value_t = 1024)]
        probe_bytes: usize,
        /// Connections (each one request in flight) of every phase.
        #[arg(long, default_value_t = 16)]
        connections: u32,
        /// Server shards (default: the server's, one per core).
        #[arg(long)]
        shards: Option<u32>,
        /// After the steps, start a second, fresh server (the control: one queue) and
        /// probe the two alternately this many times each, so that drift of the machine
        /// over the run falls on both (0: no control).
        #[arg(long, default_value_t = 0)]
        control_rounds: u32,
        /// Appends the result as one JSON line here.
        #[arg(long)]
        json_out: Option<PathBuf>,
    }

    /// What a tenant needs to call the server.
    struct Ctx {
        signer: Signer,
        address: SocketAddr,
        base: String,
        connections: u32,
    }

    impl Ctx {
        fn new(tenant: Tenant, address: SocketAddr, connections: u32) -> Ctx {
            Ctx {
                base: format!("/v1.0/{}", tenant.project_id),
                signer: Signer {
                    tenant,
                    host: address.to_string(),
                },
                address,
                connections,
            }
        }
    }

    /// One probe: send and consume figures.
    #[derive(Clone, Copy)]
    struct Probe {
        send_per_s: f64,
        send_p50_ms: f64,
        send_p99_ms: f64,
        consume_per_s: f64,
        receive_p50_ms: f64,
        receive_p99_ms: f64,
    }

    pub fn main() -> ExitCode {
        let args = Args::parse();
        if args.probe_messages == 0
            || !args
                .probe_messages
                .is_multiple_of(u64::from(SEND_BATCH_MAX))
        {
            eprintln!("scale-bench: --probe-messages must be a positive multiple of 10");
            return ExitCode::from(2);
        }
        // The probe and delayed queues count too; the server refuses a ceiling past this.
        let queues_max = sluice_core::limits::QUEUES_PER_TENANT_CEILING - 10;
        if args.queues > queues_max {
            eprintln!("scale-bench: --queues must be at most {queues_max}");
            return ExitCode::from(2);
        }
        if args.connections == 0 || args.connections > 256 {
            eprintln!("scale-bench: --connections must be 1 to 256");
            return ExitCode::from(2);
        }
        if let Err(error) = std::fs::create_dir_all(&args.spawn_parent) {
            eprintln!("scale-bench: {}: {error}", args.spawn_parent.display());
            return ExitCode::FAILURE;
        }
        let env = [
            (
                "SLUICE_QUEUES_PER_TENANT_MAX",
                (args.queues + 10).to_string(),
            ),
            ("SLUICE_TENANT_QUEUES_MAX", (args.queues + 10).to_string()),
        ];
        let (spawned, address) = match spawn_server_with(
            &args.binary,
            &args.spawn_parent,
            "scale-bench",
            args.shards,
            &env,
        ) {
            Ok(started) => started,
            Err(message) => {
                eprintln!("scale-bench: {message}");
                return ExitCode::FAILURE;
            }
        };
        let tenant = match read_tenant(&spawned.data_dir) {
            Ok(tenant) => tenant,
            Err(message) => {
                eprintln!("scale-bench: {message}");
                return ExitCode::FAILURE;
            }
        };
        let pid = spawned.child.id();
        let ctx = Rc::new(Ctx::new(tenant, address, args.connections));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let local = tokio::task::LocalSet::new();
        let result = local.block_on(&runtime, async {
            let (mut value, probe_queue) = run(ctx.clone(), &args, pid).await?;
            if args.control_rounds > 0 {
                value["control"] = control(&ctx, &probe_queue, &args, &env).await?;
            }
            Ok::<Value, String>(value)
        });
        drop(spawned);
        match result {
            Ok(value) => {
                if let Some(path) = &args.json_out {
                    use std::io::Write;
                    let written = std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(path)
                        .and_then(|mut file| writeln!(file, "{value}"));
                    if let Err(error) = written {
                        eprintln!("scale-bench: {}: {error}", path.display());
                        return ExitCode::FAILURE;
                    }
                }
                ExitCode::SUCCESS
            }
            Err(message) => {
                eprintln!("scale-bench: {message}");
                ExitCode::FAILURE
            }
        }
    }

    /// The steps; returns the result and the probe's queue and group.
    async fn run(ctx: Rc<Ctx>, args: &Args, pid: u32) -> Result<(Value, (String, String)), String> {
        let (probe_queue, probe_group) = create_queue(&ctx, "scale-probe", true).await?;
        let body = "p".repeat(args.probe_bytes);
        let first = probe(&ctx, &probe_queue, &probe_group, &body, args.probe_messages).await?;
        print_probe("probe, 1 queue", &first, &first);

        let idle_first = idle_cpu_percent(pid).await?;
        println!("idle server CPU, 1 queue: {idle_first:.1}%");
        let rss_before_queues = rss_bytes(pid)?;
        let (created_s, tenths) = create_queues(&ctx, args.queues).await?;
        let rss_after_queues = rss_bytes(pid)?;
        let per_queue = rss_after_queues.saturating_sub(rss_before_queues) as f64
            / f64::from(args.queues.max(1));
        println!(
            "created {} queues in {created_s:.1} s ({:.0} queues/s); rate per tenth: {}",
            args.queues,
            f64::from(args.queues) / created_s,
            tenths
                .iter()
                .map(|rate| format!("{rate:.0}"))
                .collect::<Vec<_>>()
                .join(" ")
        );
        println!(
            "RSS {} MiB -> {} MiB: {per_queue:.0} bytes per idle queue",
            rss_before_queues >> 20,
            rss_after_queues >> 20
        );
        let idle_queues = idle_cpu_percent(pid).await?;
        println!(
            "idle server CPU, {} queues: {idle_queues:.1}%",
            args.queues + 1
        );
        let with_queues =
            probe(&ctx, &probe_queue, &probe_group, &body, args.probe_messages).await?;
        print_probe(
            &format!("probe, {} queues", args.queues + 2),
            &with_queues,
            &first,
        );

        let mut delayed = Value::Null;
        if args.delayed > 0 {
            let (delay_queue, _) = create_queue(&ctx, "scale-delayed", false).await?;
            let rss_before = rss_bytes(pid)?;
            let started = Instant::now();
            send_delayed(&ctx, &delay_queue, args.delayed, args.delayed_bytes).await?;
            let send_s = started.elapsed().as_secs_f64();
            let rss_after = rss_bytes(pid)?;
            let per_message = rss_after.saturating_sub(rss_before) as f64 / args.delayed as f64;
            println!(
                "sent {} messages delayed 1 h in {send_s:.1} s ({:.0} msgs/s); RSS {} MiB -> {} MiB: \
                 {per_message:.0} bytes per pending delayed message",
                args.delayed,
                args.delayed as f64 / send_s,
                rss_before >> 20,
                rss_after >> 20
            );
            let idle_delayed = idle_cpu_percent(pid).await?;
            println!("idle server CPU, + delayed pending: {idle_delayed:.1}%");
            let with_delayed =
                probe(&ctx, &probe_queue, &probe_group, &body, args.probe_messages).await?;
            print_probe(
                &format!("probe, + {} delayed pending", args.delayed),
                &with_delayed,
                &first,
            );
            delayed = json!({
                "messages": args.delayed,
                "bytes": args.delayed_bytes,
                "send_s": send_s,
                "rss_before": rss_before,
                "rss_after": rss_after,
                "bytes_per_message": per_message,
                "idle_cpu_percent": idle_delayed,
                "probe": probe_json(&with_delayed, &first),
            });
        }
        let result = json!({
            "queues": args.queues,
            "connections": args.connections,
            "probe_messages": args.probe_messages,
            "probe_bytes": args.probe_bytes,
            "first_probe": probe_json(&first, &first),
            "create_s": created_s,
            "create_per_s_by_tenth": tenths,
            "rss_before_queues": rss_before_queues,
            "rss_after_queues": rss_after_queues,
            "bytes_per_idle_queue": per_queue,
            "idle_cpu_percent_first": idle_first,
            "idle_cpu_percent_with_queues": idle_queues,
            "probe_with_queues": probe_json(&with_queues, &first),
            "delayed": delayed,
        });
        Ok((result, (probe_queue, probe_group)))
    }

    /// Probes the crowded server and a fresh control server alternately
    /// (`--control-rounds` times each; the control's first, untimed probe fills its
    /// caches as the crowded server's first probe did). Ratios are crowded / control of
    /// the same round.
    async fn control(
        ctx: &Rc<Ctx>,
        (crowded_queue, crowded_group): &(String, String),
        args: &Args,
        env: &[(&str, String)],
    ) -> Result<Value, String> {
        let env: Vec<(&str, String)> = env.to_vec();
        let (spawned, address) = spawn_server_with(
            &args.binary,
            &args.spawn_parent,
            "scale-bench-control",
            args.shards,
            &env,
        )?;
        let tenant = read_tenant(&spawned.data_dir)?;
        let control = Rc::new(Ctx::new(tenant, address, args.connections));
        let body = "p".repeat(args.probe_bytes);
        let (control_queue, control_group) = create_queue(&control, "scale-probe", true).await?;
        probe(
            &control,
            &control_queue,
            &control_group,
            &body,
            args.probe_messages,
        )
        .await?;
        let mut rows = Vec::new();
        let (mut send_ratios, mut consume_ratios) = (Vec::new(), Vec::new());
        for round in 0..args.control_rounds {
            // Alternate which goes first, so neither always follows the other.
            let crowded_probe = || {
                probe(
                    ctx,
                    crowded_queue,
                    crowded_group,
                    &body,
                    args.probe_messages,
                )
            };
            let control_probe = || {
                probe(
                    &control,
                    &control_queue,
                    &control_group,
                    &body,
                    args.probe_messages,
                )
            };
            let (crowded, base) = if round % 2 == 0 {
                let crowded = crowded_probe().await?;
                (crowded, control_probe().await?)
            } else {
                let base = control_probe().await?;
                (crowded_probe().await?, base)
            };
            print_probe(&format!("round {round}: control"), &base, &base);
            print_probe(&format!("round {round}: crowded"), &crowded, &base);
            send_ratios.push(crowded.send_per_s / base.send_per_s);
            consume_ratios.push(crowded.consume_per_s / base.consume_per_s);
            rows.push(json!({ "control": probe_json(&base, &base), "crowded": probe_json(&crowded, &base) }));
        }
        let median = |values: &mut Vec<f64>| {
            values.sort_by(f64::total_cmp);
            let middle = values.len() / 2;
            if values.len().is_multiple_of(2) {
                (values[middle - 1] + values[middle]) / 2.0
            } else {
                values[middle]
            }
        };
        let (send, consume) = (median(&mut send_ratios), median(&mut consume_ratios));
        println!(
            "crowded / control, median of {} rounds: send {send:.2}x, receive+ack {consume:.2}x",
            args.control_rounds
        );
        drop(spawned);
        Ok(json!({ "rounds": rows, "send_ratio_median": send, "consume_ratio_median": consume }))
    }

    fn print_probe(label: &str, probe: &Probe, base: &Probe) {
        println!(
            "{label:<34} send {:>8.0} msgs/s ({:.2}x) p50 {:.2} ms p99 {:.2} ms | \
             receive+ack {:>8.0} msgs/s ({:.2}x) receive p50 {:.2} ms p99 {:.2} ms",
            probe.send_per_s,
            probe.send_per_s / base.send_per_s,
            probe.send_p50_ms,
            probe.send_p99_ms,
            probe.consume_per_s,
            probe.consume_per_s / base.consume_per_s,
            probe.receive_p50_ms,
            probe.receive_p99_ms,
        );
    }

    fn probe_json(probe: &Probe, base: &Probe) -> Value {
        json!({
            "send_per_s": probe.send_per_s,
            "send_ratio": probe.send_per_s / base.send_per_s,
            "send_p50_ms": probe.send_p50_ms,
            "send_p99_ms": probe.send_p99_ms,
            "consume_per_s": probe.consume_per_s,
            "consume_ratio": probe.consume_per_s / base.consume_per_s,
            "receive_p50_ms": probe.receive_p50_ms,
            "receive_p99_ms": probe.receive_p99_ms,
        })
    }

    /// The server's CPU use over `IDLE_SAMPLE_S` seconds with no requests, percent of one
    /// core (what timers and background passes cost at this scale).
    async fn idle_cpu_percent(pid: u32) -> Result<f64, String> {
        const IDLE_SAMPLE_S: u64 = 3;
        let before = cpu_s(Some(pid)).ok_or("no server CPU time")?;
        tokio::time::sleep(std::time::Duration::from_secs(IDLE_SAMPLE_S)).await;
        let after = cpu_s(Some(pid)).ok_or("no server CPU time")?;
        Ok((after - before) * 100.0 / IDLE_SAMPLE_S as f64)
    }

    /// Creates a NORMAL queue (and a group `g` when `group`): (queue id, group id).
    async fn create_queue(ctx: &Ctx, name: &str, group: bool) -> Result<(String, String), String> {
        let mut conn = Conn::new(ctx.address);
        let created = conn
            .call_json(
                &ctx.signer,
                "POST",
                &format!("{}/queues", ctx.base),
                &json!({"name": name, "queue_mode": "NORMAL"}),
            )
            .await?;
        let queue = created["id"]
            .as_str()
            .ok_or("queue answer without id")?
            .to_string();
        if !group {
            return Ok((queue, String::new()));
        }
        let created = conn
            .call_json(
                &ctx.signer,
                "POST",
                &format!("{}/queues/{queue}/groups", ctx.base),
                &json!({"groups": [{"name": "g"}]}),
            )
            .await?;
        let group = created["groups"][0]["id"]
            .as_str()
            .ok_or("group answer without id")?
            .to_string();
        Ok((queue, group))
    }

    /// Creates `count` queues `scale-N`, `ctx.connections` at a time: (seconds, the rate
    /// of each tenth of them in queues/s).
    async fn create_queues(ctx: &Rc<Ctx>, count: u32) -> Result<(f64, Vec<f64>), String> {
        let next = Rc::new(Cell::new(0u32));
        let tenth = count.div_ceil(10).max(1);
        let marks: Rc<std::cell::RefCell<Vec<Instant>>> = Rc::default();
        let started = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..ctx.connections {
            let ctx = ctx.clone();
            let next = next.clone();
            let marks = marks.clone();
            tasks.push(tokio::task::spawn_local(async move {
                let mut conn = Conn::new(ctx.address);
                let path = format!("{}/queues", ctx.base);
                // Bounded by `count`.
                loop {
                    let index = next.get();
                    if index >= count {
                        return Ok::<(), String>(());
                    }
                    next.set(index + 1);
                    let body = json!({"name": format!("scale-{index}"), "queue_mode": "NORMAL"});
                    conn.call_json(&ctx.signer, "POST", &path, &body).await?;
                    if (index + 1).is_multiple_of(tenth) {
                        marks.borrow_mut().push(Instant::now());
                    }
                }
            }));
        }
        for task in tasks {
            task.await.map_err(|e| format!("create task: {e}"))??;
        }
        let total = started.elapsed().as_secs_f64();
        let mut rates = Vec::new();
        let mut previous = started;
        let mut marks = marks.borrow().clone();
        marks.sort();
        for mark in marks {
            rates.push(f64::from(tenth) / (mark - previous).as_secs_f64().max(1e-9));
            previous = mark;
        }
        Ok((total, rates))
    }

    /// A send request of 10 copies of the message `message` (a JSON object).
    fn batch_request(message: &str) -> String {
        let messages = vec![message; SEND_BATCH_MAX as usize];
        format!("{{\"messages\":[{}]}}", messages.join(","))
    }

    /// Posts `request` (a batch) `requests` times to the queue over `ctx.connections`
    /// connections; each answer must be 201 with every message stored. The latency
    /// samples of every request.
    async fn send_batches(
        ctx: &Rc<Ctx>,
        queue: &str,
        request: String,
        requests: u64,
    ) -> Result<Samples, String> {
        let request = Rc::new(request);
        let next = Rc::new(Cell::new(0u64));
        let mut tasks = Vec::new();
        for _ in 0..ctx.connections {
            let ctx = ctx.clone();
            let next = next.clone();
            let request = request.clone();
            let path = format!("{}/queues/{queue}/messages", ctx.base);
            tasks.push(tokio::task::spawn_local(async move {
                let mut conn = Conn::new(ctx.address);
                let mut samples = Samples::default();
                // Bounded by `requests`.
                loop {
                    let index = next.get();
                    if index >= requests {
                        return Ok::<Samples, String>(samples);
                    }
                    next.set(index + 1);
                    let sent = Instant::now();
                    let response = conn
                        .call(&ctx.signer, "POST", &path, None, request.as_bytes())
                        .await?;
                    if response.status != 201 || !send_all_stored(&response.body) {
                        let text = String::from_utf8_lossy(&response.body);
                        return Err(format!("send: HTTP {}: {text}", response.status));
                    }
                    samples.push(sent);
                }
            }));
        }
        let mut samples = Samples::default();
        for task in tasks {
            samples.append(task.await.map_err(|e| format!("send task: {e}"))??);
        }
        Ok(samples)
    }

    /// Sends `count` messages of `bytes` with `delay_time` one hour.
    async fn send_delayed(
        ctx: &Rc<Ctx>,
        queue: &str,
        count: u64,
        bytes: usize,
    ) -> Result<(), String> {
        let body = "d".repeat(bytes);
        let message = format!("{{\"body\":\"{body}\",\"delay_time\":3600000}}");
        let requests = count.div_ceil(u64::from(SEND_BATCH_MAX));
        send_batches(ctx, queue, batch_request(&message), requests)
            .await
            .map(|_| ())
    }

    /// Sends `messages` to the queue, then receives and acks as many from the group.
    async fn probe(
        ctx: &Rc<Ctx>,
        queue: &str,
        group: &str,
        body: &str,
        messages: u64,
    ) -> Result<Probe, String> {
        let message = format!("{{\"body\":\"{body}\"}}");
        let requests = messages / u64::from(SEND_BATCH_MAX);
        let started = Instant::now();
        let mut send_samples = send_batches(ctx, queue, batch_request(&message), requests).await?;
        let send_s = started.elapsed().as_secs_f64();

        let received = Rc::new(Cell::new(0u64));
        let started = Instant::now();
        // The consume phase ends at the last ack: a consumer still in a long poll then
        // (nothing left) does not count.
        let last_ack = Rc::new(Cell::new(started));
        let mut tasks = Vec::new();
        for _ in 0..ctx.connections {
            let ctx = ctx.clone();
            let received = received.clone();
            let last_ack = last_ack.clone();
            let group_path = format!("{}/queues/{queue}/groups/{group}", ctx.base);
            tasks.push(tokio::task::spawn_local(async move {
                let mut conn = Conn::new(ctx.address);
                let mut samples = Samples::default();
                let receive_path = format!("{group_path}/messages");
                let ack_path = format!("{group_path}/ack");
                // Bounded: every pass either takes messages, or ends at an empty long poll.
                loop {
                    if received.get() >= messages {
                        return Ok::<Samples, String>(samples);
                    }
                    let asked = Instant::now();
                    let response = conn
                        .call(
                            &ctx.signer,
                            "GET",
                            &receive_path,
                            Some("max_msgs=10&time_wait=1&ack_wait=30"),
                            b"",
                        )
                        .await?;
                    if response.status != 200 {
                        let text = String::from_utf8_lossy(&response.body);
                        return Err(format!("probe receive: HTTP {}: {text}", response.status));
                    }
                    let deliveries: Vec<Delivery> = serde_json::from_slice(&response.body)
                        .map_err(|e| format!("probe receive: bad JSON: {e}"))?;
                    if deliveries.is_empty() {
                        return Ok(samples);
                    }
                    samples.push(asked);
                    received.set(received.get() + deliveries.len() as u64);
                    let entries: Vec<Value> = deliveries
                        .iter()
                        .map(|d| json!({"handler": d.handler, "status": "success"}))
                        .collect();
                    let answer = conn
                        .call_json(
                            &ctx.signer,
                            "POST",
                            &ack_path,
                            &json!({ "message": entries }),
                        )
                        .await?;
                    if answer["success"].as_u64() != Some(entries.len() as u64) {
                        return Err(format!("probe ack: partial success: {answer}"));
                    }
                    last_ack.set(Instant::now());
                }
            }));
        }
        let mut receive_samples = Samples::default();
        for task in tasks {
            receive_samples.append(task.await.map_err(|e| format!("receive task: {e}"))??);
        }
        let consume_s = (last_ack.get() - started).as_secs_f64().max(1e-9);
        if received.get() < messages {
            return Err(format!(
                "probe: {} of {messages} messages came back",
                received.get()
            ));
        }
        let (send_p50_ms, send_p99_ms, _) = send_samples.quantiles_ms();
        let (receive_p50_ms, receive_p99_ms, _) = receive_samples.quantiles_ms();
        Ok(Probe {
            send_per_s: messages as f64 / send_s,
            send_p50_ms,
            send_p99_ms,
            consume_per_s: received.get() as f64 / consume_s,
            receive_p50_ms,
            receive_p99_ms,
        })
    }
}
