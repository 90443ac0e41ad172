//! `mq-compare`: Sluice (over its DMS HTTP API, and over its Kafka listener as
//! `sluice-kafka`) against its durable peers (PostgreSQL, RabbitMQ quorum queues, Redis
//! Streams with `appendfsync always`), each started here one at a time on a fresh
//! data directory and driven with the same workloads: produce, consume + ack, mixed, and
//! unbatched (one message in flight), at each `--concurrency`. Every message is confirmed
//! durable (fsync) before it counts, and every confirmed message must come back (a loss
//! fails the run). It prints one table with msgs/s, p50/p99 and the ratio to the best
//! peer, and writes the rows as JSON (`--json-out`). See docs/compare-bench.md.
//!
//! Usage:
//!   mq-compare                              # everything: 4 systems x 4 workloads x {2, 16}
//!   mq-compare --quick --systems sluice,redis --json-out rows.json

#[cfg(madsim)]
fn main() {
    eprintln!("mq-compare needs real sockets and processes; build it without --cfg madsim");
}

#[cfg(not(madsim))]
mod args;
#[cfg(not(madsim))]
mod driver;
#[cfg(not(madsim))]
mod kafka;
#[cfg(not(madsim))]
mod peers;
#[cfg(not(madsim))]
mod postgres;
#[cfg(not(madsim))]
mod rabbitmq;
#[cfg(not(madsim))]
mod redis;
#[cfg(not(madsim))]
mod run;
#[cfg(not(madsim))]
mod sluice;
#[cfg(not(madsim))]
mod table;

#[cfg(not(madsim))]
fn main() -> std::process::ExitCode {
    compare::main()
}

#[cfg(not(madsim))]
mod compare {
    use std::path::PathBuf;
    use std::process::ExitCode;

    use clap::Parser;
    use serde_json::Value;

    use crate::args::{Args, System, Workload};
    use crate::driver::Driver;
    use crate::table::{self, Row};
    use crate::{kafka, peers, postgres, rabbitmq, redis, run, sluice};

    fn sluice_binary(args: &Args) -> Result<PathBuf, String> {
        let path = match &args.sluice {
            Some(path) => path.clone(),
            None => std::env::current_exe()
                .map_err(|e| format!("own path: {e}"))?
                .with_file_name("sluice"),
        };
        if path.is_file() {
            Ok(path)
        } else {
            Err(format!(
                "{}: no sluice binary (build it with `cargo build --release --bin sluice` \
                 or give --sluice PATH)",
                path.display()
            ))
        }
    }

    fn print_row(row: &Row) {
        eprintln!(
            "mq-compare: {} {} x{}: {} msgs in {:.2} s, {:.0} msgs/s, p50 {:.2} ms, p99 {:.2} ms{}",
            row.system.name(),
            row.workload.name(),
            row.concurrency,
            row.message_count,
            row.seconds,
            row.msg_per_s,
            row.p50_ms,
            row.p99_ms,
            if row.ok {
                String::new()
            } else {
                format!(" FAILED: {:?}", row.errors)
            }
        );
    }

    async fn rows_of<D: Driver>(
        driver: &mut D,
        system: System,
        args: &Args,
    ) -> Result<Vec<Row>, String> {
        run::system_rows(driver, system, args, &mut print_row).await
    }

    /// Starts one system, runs its rows, stops it.
    async fn measure(system: System, args: &Args) -> Result<Vec<Row>, String> {
        let parent = &args.data_parent;
        match system {
            System::Sluice => {
                let mut driver = sluice::Sluice::start(&sluice_binary(args)?, parent)?;
                rows_of(&mut driver, system, args).await
            }
            System::SluiceKafka => {
                let binary = sluice_binary(args)?;
                let mut driver = kafka::Kafka::start(&binary, parent, args.size)?;
                rows_of(&mut driver, system, args).await
            }
            System::Postgres => {
                let peer = peers::start_postgres(parent)?;
                let mut driver = postgres::Postgres::new(peer.port);
                rows_of(&mut driver, system, args).await
            }
            System::Rabbitmq => {
                let peer = peers::start_rabbitmq(parent)?;
                let mut driver = rabbitmq::Rabbitmq::new(peer.port);
                rows_of(&mut driver, system, args).await
            }
            System::Redis => {
                let peer = peers::start_redis(parent)?;
                let mut driver = redis::Redis::new(peer.port)?;
                rows_of(&mut driver, system, args).await
            }
        }
    }

    pub fn main() -> ExitCode {
        let args = match Args::parse().normalise() {
            Ok(args) => args,
            Err(message) => {
                eprintln!("mq-compare: {message}");
                return ExitCode::from(2);
            }
        };
        if args.systems.contains(&System::Sluice) || args.systems.contains(&System::SluiceKafka) {
            if let Err(message) = sluice_binary(&args) {
                eprintln!("mq-compare: {message}");
                return ExitCode::from(2);
            }
        }
        if let Err(message) = peers::ensure_installed(&args.systems, args.no_install) {
            eprintln!("mq-compare: {message}");
            return ExitCode::FAILURE;
        }
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime,
            Err(error) => {
                eprintln!("mq-compare: runtime: {error}");
                return ExitCode::FAILURE;
            }
        };
        let mut rows = Vec::new();
        let mut failures = Vec::new();
        for &system in &args.systems {
            let version = peers::version(system);
            // Writes that earlier jobs (and the previous system) left in the page cache
            // would otherwise be written back during this system's first rows, competing
            // with its fdatasyncs: flush them before it starts.
            // SAFETY: sync(2) takes no arguments and always succeeds.
            unsafe { libc::sync() };
            eprintln!("mq-compare: starting {} {version}", system.name());
            // A fresh LocalSet per system: its connection tasks end with it.
            let local = tokio::task::LocalSet::new();
            match local.block_on(&runtime, measure(system, &args)) {
                Ok(system_rows) => rows.extend(system_rows),
                Err(message) => {
                    eprintln!("mq-compare: {}: {message}", system.name());
                    failures.push(format!("{}: {message}", system.name()));
                }
            }
        }
        table::sort(&mut rows);
        table::fill_ratios(&mut rows);
        println!(
            "{} B bodies, batch {}, {} messages per row ({} unbatched); ratio = msgs/s over \
             the best peer's of the same workload and concurrency",
            args.size, args.batch, args.messages, args.latency_messages
        );
        if args.dms_batch_capped() {
            println!(
                "sluice (DMS API): batch capped at {} messages per request (its batch column)",
                crate::args::SLUICE_BATCH_MAX
            );
        }
        if args.systems.contains(&System::SluiceKafka)
            && args.workloads.contains(&Workload::Consume)
        {
            println!(
                "sluice-kafka consume: Fetch only (a Kafka consumer commits offsets, it does not \
                 ack); the other systems' consume rows include an ack per batch"
            );
        }
        print!("{}", table::render(&rows));
        for failure in &failures {
            println!("not measured: {failure}");
        }
        if let Some(path) = &args.json_out {
            let values: Vec<Value> = rows.iter().map(table::to_json).collect();
            let text = serde_json::to_string_pretty(&values).expect("JSON values serialise");
            if let Err(error) = std::fs::write(path, text + "\n") {
                eprintln!("mq-compare: {}: {error}", path.display());
                return ExitCode::FAILURE;
            }
        }
        if failures.is_empty() && rows.iter().all(|row| row.ok) {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        }
    }
}
