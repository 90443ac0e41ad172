//! Fuzzing through cargo-fuzz: toolchain choice, installing cargo-fuzz, building the
//! targets in `fuzz/` and running them for a bounded time and number of runs.
//!
//! The fuzz crate is its own workspace with its own target directory (`fuzz/target`),
//! because it is built with sanitizer and coverage flags that would invalidate every
//! artifact of the main build.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use crate::{command, seeds};

/// The targets in `fuzz/Cargo.toml`, in the order the smoke run uses.
pub const TARGETS: &[&str] = &[
    "record_decode",
    "segment_scan",
    "index_decode",
    "auth_verify",
    "dms_request",
    "http_service",
    "cluster_frame",
    "kafka_frame",
    "sqs_request",
    "rocketmq_frame",
];
/// Wall-clock bound of each target in `cargo xtask test`.
pub const SMOKE_SECONDS: u64 = 20;
/// Input-count bound of every run, so a run ends even if the clock misbehaves.
const RUNS_MAX: u64 = 50_000_000;
/// Longest input the fuzzer generates: a few batches of a segment.
const INPUT_BYTES_MAX: u64 = 16 * 1024;
/// One input taking this long is reported as a hang.
const INPUT_SECONDS_MAX: u64 = 10;

/// How to invoke cargo so that `-Z` flags (sanitizers, coverage passes) are accepted.
#[derive(Clone, Copy)]
pub enum Toolchain {
    /// `cargo +nightly`: the installed nightly toolchain.
    Nightly,
    /// The default toolchain with `RUSTC_BOOTSTRAP=1`, for machines without nightly.
    StableBootstrap,
}

impl Toolchain {
    pub fn detect() -> Toolchain {
        let mut probe = Command::new("cargo");
        // Without nightly, rustup must say so rather than try to download it.
        probe.env("RUSTUP_AUTO_INSTALL", "0");
        if command::succeeds(probe.args(["+nightly", "--version"])) {
            Toolchain::Nightly
        } else {
            println!("no nightly toolchain: fuzzing with the default one and RUSTC_BOOTSTRAP=1");
            Toolchain::StableBootstrap
        }
    }

    fn cargo(self) -> Command {
        let mut cargo = command::cargo();
        match self {
            Toolchain::Nightly => {
                cargo.arg("+nightly");
            }
            Toolchain::StableBootstrap => {
                cargo.env("RUSTC_BOOTSTRAP", "1");
            }
        }
        // The explicit --target-dir below decides; a developer's variable must not.
        cargo.env_remove("CARGO_TARGET_DIR");
        cargo
    }
}

/// Installs cargo-fuzz from crates.io when `cargo fuzz` is missing.
pub fn ensure_cargo_fuzz(toolchain: Toolchain) -> Result<(), String> {
    if command::succeeds(toolchain.cargo().args(["fuzz", "--version"])) {
        return Ok(());
    }
    println!("cargo-fuzz is missing: installing it from crates.io");
    let started = Instant::now();
    let mut install = command::cargo();
    install.args(["install", "cargo-fuzz", "--locked"]);
    // Installed binaries go to ~/.cargo/bin; their build must not land in the project.
    install.env_remove("CARGO_TARGET_DIR");
    command::run(&mut install)?;
    println!(
        "installed cargo-fuzz in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    if command::succeeds(toolchain.cargo().args(["fuzz", "--version"])) {
        Ok(())
    } else {
        Err("cargo-fuzz was installed but `cargo fuzz --version` still fails".to_string())
    }
}

fn fuzz_dir() -> PathBuf {
    command::workspace_root().join("fuzz")
}

/// Flags shared by build and run so that `run` finds the build up to date.
fn build_flags(cargo: &mut Command) {
    let target_dir = fuzz_dir().join("target");
    // Debug assertions turn on overflow checks: an overflow on hostile input is a bug.
    cargo.args(["--release", "--debug-assertions", "--target-dir"]);
    cargo.arg(target_dir);
}

/// Builds every target in one cargo invocation.
pub fn build_all(toolchain: Toolchain) -> Result<(), String> {
    let mut cargo = toolchain.cargo();
    cargo.args(["fuzz", "build"]);
    build_flags(&mut cargo);
    command::run(&mut cargo)
}

/// Fuzzes `target` for at most `seconds` and [`RUNS_MAX`] inputs, starting from the
/// generated seeds; new inputs go to `fuzz/corpus/<target>` and crashes to
/// `fuzz/artifacts/<target>`.
pub fn run_target(toolchain: Toolchain, target: &str, seconds: u64) -> Result<(), String> {
    check_target(target)?;
    let corpus_dir = fuzz_dir().join("corpus").join(target);
    write_seeds(target, &corpus_dir)?;
    let mut cargo = toolchain.cargo();
    cargo.args(["fuzz", "run"]);
    build_flags(&mut cargo);
    cargo.arg(target).arg(&corpus_dir).arg("--");
    cargo.arg(format!("-max_total_time={seconds}"));
    cargo.arg(format!("-runs={RUNS_MAX}"));
    cargo.arg(format!("-max_len={INPUT_BYTES_MAX}"));
    cargo.arg(format!("-timeout={INPUT_SECONDS_MAX}"));
    cargo.arg("-print_final_stats=1");
    command::run_quieted(&mut cargo, is_progress_line).map_err(|error| {
        format!(
            "fuzz target {target} failed; the failing input is under {}: {error}",
            fuzz_dir().join("artifacts").join(target).display()
        )
    })
}

fn check_target(target: &str) -> Result<(), String> {
    if TARGETS.contains(&target) {
        return Ok(());
    }
    Err(format!(
        "unknown fuzz target `{target}`; targets: {}",
        TARGETS.join(", ")
    ))
}

/// libFuzzer's progress lines (`#1234\tNEW cov: ...`), thousands per run; the start-up,
/// `INITED`, `DONE`, final statistics and any crash report still show.
fn is_progress_line(line: &[u8]) -> bool {
    let Some(rest) = line.strip_prefix(b"#") else {
        return false;
    };
    let digits = rest.iter().take_while(|byte| byte.is_ascii_digit()).count();
    let Some(event) = rest[digits..].strip_prefix(b"\t") else {
        return false;
    };
    digits > 0
        && [&b"NEW "[..], b"REDUCE ", b"pulse "]
            .iter()
            .any(|kind| event.starts_with(kind))
}

fn write_seeds(target: &str, corpus_dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(corpus_dir)
        .map_err(|error| format!("creating {}: {error}", corpus_dir.display()))?;
    for (seed_index, seed) in seeds::for_target(target).iter().enumerate() {
        let path = corpus_dir.join(format!("seed-{seed_index:02}"));
        std::fs::write(&path, seed)
            .map_err(|error| format!("writing {}: {error}", path.display()))?;
    }
    Ok(())
}

/// `cargo xtask fuzz <target> --seconds N`.
pub fn run_one(target: &str, seconds: u64) -> Result<(), String> {
    check_target(target)?;
    let toolchain = Toolchain::detect();
    ensure_cargo_fuzz(toolchain)?;
    run_target(toolchain, target, seconds)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_progress_lines_are_quieted() {
        assert!(is_progress_line(
            b"#1131601\tREDUCE cov: 453 ft: 1266 corp: 239/64Kb"
        ));
        assert!(is_progress_line(b"#8\tNEW    cov: 12 ft: 13 corp: 1/1b"));
        assert!(is_progress_line(
            b"#524288\tpulse  cov: 12 ft: 13 corp: 1/1b"
        ));
        assert!(!is_progress_line(b"#2\tINITED cov: 12 ft: 13 corp: 1/1b"));
        assert!(!is_progress_line(b"#1131601 REDUCE"));
        assert!(!is_progress_line(b"#\tNEW"));
        assert!(!is_progress_line(
            b"==1234== ERROR: libFuzzer: deadly signal"
        ));
        assert!(!is_progress_line(b"Done 4925070 runs in 61 second(s)"));
    }
}
