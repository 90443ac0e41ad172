//! Argument handling and reporting for the `sluice-sim` binary (madsim builds only).

use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use sluice_sim::run::{run_seed, Report};

pub fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["--seed", seed] => match seed.parse() {
            Ok(seed) => replay(seed),
            Err(_) => usage(),
        },
        ["--seeds", count] => match count.parse() {
            Ok(count) => many(count),
            Err(_) => usage(),
        },
        _ => usage(),
    }
}

fn usage() -> ExitCode {
    eprintln!("usage: sluice-sim --seed S | --seeds N");
    ExitCode::from(2)
}

fn replay(seed: u64) -> ExitCode {
    let report = run_seed(seed);
    println!("seed {seed}");
    println!("knobs {}", report.knobs);
    print!("{}", report.trace);
    summary(&report);
    for known in &report.known {
        println!("KNOWN {known}");
    }
    for violation in &report.violations {
        println!("VIOLATION {violation}");
    }
    if report.violations.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn summary(report: &Report) {
    println!(
        "seed {}: {} after {} simulated ms, {} events, {} messages, history {:016x}",
        report.seed,
        if report.violations.is_empty() {
            "pass"
        } else {
            "FAIL"
        },
        report.simulated_ms,
        report.events,
        report.messages,
        report.history_hash
    );
}

fn many(count: u64) -> ExitCode {
    let started = std::time::Instant::now();
    let next = AtomicU64::new(0);
    let failed = Mutex::new(Vec::new());
    let known = Mutex::new(Vec::new());
    let threads = std::thread::available_parallelism().map_or(4, |n| n.get());
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                // Bounded by `count`: each pass claims the next seed.
                loop {
                    let seed = next.fetch_add(1, Ordering::Relaxed);
                    if seed >= count {
                        break;
                    }
                    let report = run_seed(seed);
                    if !report.violations.is_empty() {
                        summary(&report);
                        for violation in report.violations.iter().take(5) {
                            println!("  {violation}");
                        }
                        failed.lock().expect("no poisoned lock").push(seed);
                    }
                    if !report.known.is_empty() {
                        known.lock().expect("no poisoned lock").push(seed);
                    }
                }
            });
        }
    });
    let mut failed = failed.into_inner().expect("no poisoned lock");
    failed.sort_unstable();
    let mut known = known.into_inner().expect("no poisoned lock");
    known.sort_unstable();
    if !known.is_empty() {
        let first: Vec<u64> = known.iter().copied().take(10).collect();
        println!(
            "{} seeds hit known bugs (FIXMEs in the checker; not failures), first {first:?}",
            known.len()
        );
    }
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "{} seeds, {} passed, {} failed {:?}; {:.1} s wall, {:.1} seeds/s on {threads} threads",
        count,
        count - failed.len() as u64,
        failed.len(),
        failed,
        seconds,
        count as f64 / seconds
    );
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
