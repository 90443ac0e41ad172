//! `sluice-sim`: runs simulation seeds. `--seeds N` runs seeds 0..N in parallel and
//! reports pass/fail and seeds per second; `--seed S` replays one seed and prints its
//! trace (simulated times only, so two runs print byte-identical text). `--bug NAME`
//! before either turns on one deliberate engine bug (`sluice_core::bugs`); `--bugs-ci [N]`
//! runs seeds 0..N with each bug and fails unless the checker catches every one. Use
//! `cargo xtask sim`, which builds this under `--cfg madsim`.

#[cfg(madsim)]
fn main() -> std::process::ExitCode {
    cli::main()
}

#[cfg(not(madsim))]
fn main() {
    eprintln!("sluice-sim needs RUSTFLAGS=\"--cfg madsim\"; run `cargo xtask sim`");
    std::process::exit(2);
}

#[cfg(madsim)]
mod cli;
