//! The checker can fail: each deliberate Raft bug (`Bug::RAFT`, compiled only under
//! `--cfg madsim`) turned on alone is caught by `chaos` within `SEEDS` seeds, and the
//! unmodified code passes the same kind of sweep.
//!
//! A seed is caught when a check panics; the bug is set on this thread (`bugs::set`),
//! which is where the engines of a run live. Seeds alternate three and five replicas.

use std::panic::{catch_unwind, AssertUnwindSafe};

use sluice_core::bugs::{self, Bug};

use super::chaos::{chaos, membership_chaos};

/// Seeds each bug gets (the bound).
const SEEDS: u64 = 200;
/// Steps of one run.
const STEPS: u32 = 300;
/// Seeds the unmodified code runs in the sweep: about 40 s in the sim profile on the
/// 2-core machine (docs/simulation.md).
const CLEAN_SEEDS: u64 = 20_000;
/// Seeds of the membership chaos (five replicas, three of them the first group) the
/// unmodified code runs: about 25 s in the sim profile (20,000 pass, checked by hand).
const MEMBERSHIP_SEEDS: u64 = 2_000;

/// Three replicas for even seeds, five for odd ones.
fn size(seed: u64) -> u64 {
    3 + 2 * (seed % 2)
}

/// The first seed of `0..SEEDS` whose run panics with `bug` on, and the panic's message.
fn first_catch(bug: Bug) -> Option<(u64, String)> {
    let quiet = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let mut found = None;
    for seed in 0..SEEDS {
        bugs::set(&[bug]);
        let outcome = catch_unwind(AssertUnwindSafe(|| chaos(seed, size(seed), STEPS)));
        bugs::set(&[]);
        if let Err(panic) = outcome {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            found = Some((seed, message));
            break;
        }
    }
    std::panic::set_hook(quiet);
    found
}

#[test]
fn every_raft_bug_is_caught_within_200_seeds() {
    let mut missed = Vec::new();
    for bug in Bug::RAFT {
        match first_catch(bug) {
            Some((seed, message)) => println!("{}: caught at seed {seed}: {message}", bug.name()),
            None => {
                println!("{}: NOT CAUGHT in seeds 0..{SEEDS}", bug.name());
                missed.push(bug.name());
            }
        }
    }
    assert!(missed.is_empty(), "not caught: {missed:?}");
}

#[test]
fn the_unmodified_code_passes_a_sweep() {
    bugs::set(&[]);
    for seed in 0..CLEAN_SEEDS {
        chaos(seed, size(seed), STEPS);
    }
}

#[test]
fn the_unmodified_code_passes_a_membership_sweep() {
    bugs::set(&[]);
    let (mut changes, mut moves) = (0, 0);
    for seed in 0..MEMBERSHIP_SEEDS {
        let (c, m) = membership_chaos(seed, STEPS);
        changes += c;
        moves += m;
    }
    println!("{MEMBERSHIP_SEEDS} seeds: {changes} membership changes, {moves} of them moves");
}
