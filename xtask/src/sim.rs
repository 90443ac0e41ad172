//! `cargo xtask sim`: builds the simulation under `--cfg madsim` in its own target dir
//! (`target-madsim`, so the std build's cache is untouched) and runs its binary.
//! `--seeds N` runs seeds 0..N over all cores; `--seed S` replays one seed with its trace.

use crate::command;

/// Seeds `cargo xtask test` runs (about 2 to 3 minutes at 12 to 16 seeds/s on a loaded
/// 2-core machine since the sim runs the HTTP service layer; docs/simulation.md).
const CI_SEEDS: &str = "2000";

/// The simulation step of `cargo xtask test`: the sim crate's tests, then a seed sweep.
pub fn ci() -> Result<(), String> {
    let mut cargo = madsim_cargo();
    cargo.args(["test", "--profile", "sim", "-p", "sluice-sim"]);
    command::run(&mut cargo)?;
    run(&["--seeds".to_string(), CI_SEEDS.to_string()])
}

fn madsim_cargo() -> std::process::Command {
    let mut cargo = command::cargo();
    cargo.env("RUSTFLAGS", "--cfg madsim").env(
        "CARGO_TARGET_DIR",
        command::workspace_root().join("target-madsim"),
    );
    cargo
}

pub fn run(args: &[String]) -> Result<(), String> {
    let valid = matches!(
        args.iter().map(String::as_str).collect::<Vec<_>>().as_slice(),
        ["--seed" | "--seeds", number] if number.parse::<u64>().is_ok()
    );
    if !valid {
        return Err("usage: cargo xtask sim --seeds N | --seed S".to_string());
    }
    let mut cargo = madsim_cargo();
    cargo
        // Quiet, so `--seed S` prints only the trace: two runs give byte-identical text.
        .args([
            "run",
            "--quiet",
            "--profile",
            "sim",
            "-p",
            "sluice-sim",
            "--bin",
            "sluice-sim",
            "--",
        ])
        .args(args);
    command::run(&mut cargo)
}
