//! `cargo xtask sim`: builds the simulation under `--cfg madsim` in its own target dir
//! (`target-madsim`, so the std build's cache is untouched) and runs its binary.
//! `--seeds N` runs seeds 0..N over all cores; `--seed S` replays one seed with its trace.
//! `--bug NAME --seeds N` runs seeds with one deliberate bug on (`sluice_core::bugs`) and
//! reports how many the checker caught; `--bugs-ci [N]` does so for every bug and fails
//! unless each is caught (docs/simulation.md, "The checker can fail"). `--cluster` (with
//! `--nodes 3|5` to fix the node count) in front runs the cluster simulation instead, whose
//! `--bugs-ci` sweeps the Raft bugs.

use crate::command;

/// Seeds of the single node `cargo xtask test` runs: 325 s at 9.2 seeds/s on the 2-core
/// machine in the run of 2026-12-05 (5.4 seeds/s with builds beside it), so that the
/// simulation step (its tests, these seeds, the cluster seeds, `--bugs-ci`; 1,055 s in
/// that run) stays under half of the 45 minutes CI may take (docs/simulation.md).
const CI_SEEDS: &str = "3000";
/// Seeds of the three- and five-node cluster simulation `cargo xtask test` runs: 80.5 s
/// at 0.5 seeds/s in the same run (0.3 seeds/s with builds beside it). Seeds 14, 18, 20
/// and 28 among them found engine and sim bugs (docs/simulation.md, "The cluster
/// simulation").
const CI_CLUSTER_SEEDS: &str = "40";

/// The simulation step of `cargo xtask test`: the sim crate's tests, the Raft cluster's
/// chaos tests (the Raft bugs caught, a seed sweep), a seed sweep of the unmodified code
/// on one node and one of the cluster simulation, then the proof that the checker can
/// fail: each deliberate bug of `Bug::CAUGHT` must be caught within the binary's bounded
/// number of seeds (`--bugs-ci`).
pub fn ci() -> Result<(), String> {
    let mut cargo = madsim_cargo();
    cargo.args(["test", "--profile", "sim", "-p", "sluice-sim"]);
    command::run(&mut cargo)?;
    // The Raft cluster's chaos under the madsim cfg: each `Bug::RAFT` caught within 200
    // seeds, and 20000 seeds of the unmodified code (about 80 s on the 2-core machine).
    let mut cargo = madsim_cargo();
    cargo.args([
        "test",
        "--profile",
        "sim",
        "-p",
        "sluice-core",
        "--test",
        "replication",
    ]);
    command::run(&mut cargo)?;
    run(&["--seeds".to_string(), CI_SEEDS.to_string()])?;
    run(&[
        "--cluster".to_string(),
        "--seeds".to_string(),
        CI_CLUSTER_SEEDS.to_string(),
    ])?;
    run(&["--bugs-ci".to_string()])
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
    let number = |text: &str| text.parse::<u64>().is_ok();
    let mut rest: Vec<&str> = args.iter().map(String::as_str).collect();
    // `--cluster [--nodes 3|5]` in front picks the cluster simulation.
    if rest.first() == Some(&"--cluster") {
        rest.remove(0);
        if rest.first() == Some(&"--nodes") {
            if !matches!(rest.get(1), Some(&"3" | &"5")) {
                return Err(usage());
            }
            rest.drain(..2);
        }
    }
    let valid = match rest.as_slice() {
        ["--seed" | "--seeds", count] => number(count),
        ["--bug", _, "--seed" | "--seeds", count] => number(count),
        ["--bugs-ci"] => true,
        ["--bugs-ci", count] => number(count),
        _ => false,
    };
    if !valid {
        return Err(usage());
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

fn usage() -> String {
    "usage: cargo xtask sim [--cluster [--nodes 3|5]] (--seeds N | --seed S \
     | --bug NAME (--seeds N | --seed S) | --bugs-ci [N])"
        .to_string()
}
