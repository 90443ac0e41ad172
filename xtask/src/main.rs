//! `cargo xtask`: the project's task runner (aliased in `.cargo/config.toml`).
//!
//! `cargo xtask test` is the one command that decides whether the tree is good: CI
//! (`.ci/run`) runs it and nothing else, and the README names it. The other subcommands
//! run one part of the work for longer (`fuzz`) or on demand (`bench`). This crate only
//! orchestrates other tools; it holds no project logic beyond the fuzz seed corpus.

mod command;
mod deps;
mod fuzz;
mod python;
mod seeds;
mod sim;
mod test;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "Sluice project tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// The single test command: fmt, clippy, dependency check, tests, fuzz smoke run.
    Test,
    /// Fuzzes one target (record_decode, segment_scan, index_decode) for a while.
    Fuzz {
        target: String,
        /// Wall-clock seconds to fuzz for.
        #[arg(long, default_value_t = 600)]
        seconds: u64,
    },
    /// Runs a benchmark in release mode.
    Bench {
        #[command(subcommand)]
        bench: Bench,
    },
    /// The deterministic simulation under madsim: `--seeds N` or `--seed S` (replay).
    Sim {
        /// `--seeds N` (seeds 0..N, pass/fail and seeds/s), `--seed S` (trace),
        /// `--bug NAME --seeds N | --seed S` (a deliberate bug on), `--bugs-ci [N]`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

#[derive(Subcommand)]
enum Bench {
    /// The log append benchmark (`sluice-benches`, binary `log-bench`).
    Log {
        /// Passed to `log-bench` unchanged.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// The HTTP load generator (`sluice-benches`, binary `http-load`; see docs/http-bench.md).
    Http {
        /// Passed to `http-load` unchanged.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Sluice against PostgreSQL, RabbitMQ quorum queues and Redis Streams (`mq-compare`;
    /// see docs/compare-bench.md): builds the release `sluice` and runs `mq-compare`,
    /// which installs missing peers with apt-get and starts each one in turn.
    Compare {
        /// Passed to `mq-compare` unchanged (`--quick`, `--systems`, `--json-out FILE`, ...).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// 100,000 queues and 1,000,000 pending delayed messages against send and receive
    /// cost and RSS (`scale-bench`; docs/http-bench.md, "Scale"): builds the release
    /// `sluice` and runs `scale-bench`, which starts it on a fresh data directory.
    Scale {
        /// Passed to `scale-bench` unchanged (`--queues`, `--delayed`, `--json-out FILE`).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.task {
        Task::Test => test::run(),
        Task::Fuzz { target, seconds } => fuzz::run_one(&target, seconds),
        Task::Bench {
            bench: Bench::Log { args },
        } => bench_run("log-bench", &args),
        Task::Bench {
            bench: Bench::Http { args },
        } => bench_run("http-load", &args),
        Task::Bench {
            bench: Bench::Compare { args },
        } => {
            // mq-compare starts the `sluice` beside it: build that first, same profile.
            let mut cargo = command::cargo();
            cargo.args(["build", "--release", "-p", "sluice", "--bin", "sluice"]);
            command::run(&mut cargo).and_then(|()| bench_run("mq-compare", &args))
        }
        Task::Bench {
            bench: Bench::Scale { args },
        } => {
            let mut cargo = command::cargo();
            cargo.args(["build", "--release", "-p", "sluice", "--bin", "sluice"]);
            command::run(&mut cargo).and_then(|()| bench_run("scale-bench", &args))
        }
        Task::Sim { args } => sim::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask: {message}");
            ExitCode::FAILURE
        }
    }
}

fn bench_run(binary: &str, args: &[String]) -> Result<(), String> {
    let mut cargo = command::cargo();
    cargo.args([
        "run",
        "--release",
        "-p",
        "sluice-benches",
        "--bin",
        binary,
        "--",
    ]);
    cargo.args(args);
    command::run(&mut cargo)
}
