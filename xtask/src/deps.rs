//! The dependency check: `sluice-core` must not pull in a runtime, driver or server
//! framework (docs/style.md §1; docs/ARCHITECTURE.md, Layers).

use crate::command;

/// Crates (and their `-suffixed` companions, such as `tokio-util`) the core must never reach.
pub const FORBIDDEN: &[&str] = &["glommio", "tokio", "madsim", "hyper", "async-std", "smol"];

/// Runs `cargo tree` over the core's normal and build dependencies for every target
/// platform and fails naming each forbidden crate found.
pub fn check_core() -> Result<(), String> {
    let mut cargo = command::cargo();
    cargo.args([
        "tree",
        "-p",
        "sluice-core",
        "-e",
        "normal,build",
        "--prefix",
        "none",
        "--target",
        "all",
    ]);
    let tree = command::output(&mut cargo)?;
    let offenders = forbidden_in(&tree);
    if offenders.is_empty() {
        println!("sluice-core depends on none of: {}", FORBIDDEN.join(", "));
        return Ok(());
    }
    Err(format!(
        "sluice-core depends on forbidden crate(s): {}",
        offenders.join(", ")
    ))
}

/// The forbidden crates named in `cargo tree --prefix none` output, each once.
fn forbidden_in(tree: &str) -> Vec<String> {
    let mut offenders: Vec<String> = Vec::new();
    for line in tree.lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let name = name.replace('_', "-");
        let forbidden = FORBIDDEN
            .iter()
            .any(|crate_name| name == *crate_name || name.starts_with(&format!("{crate_name}-")));
        if forbidden && !offenders.contains(&name) {
            offenders.push(name);
        }
    }
    offenders
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(tree: &str, expected: &[&str]) {
        assert_eq!(forbidden_in(tree), expected, "tree:\n{tree}");
    }

    #[test]
    fn finds_forbidden_crates_and_their_companions() {
        // Goal: the check catches what it must and nothing else. Method: feed it
        // `cargo tree --prefix none` lines by hand.
        check(
            "sluice-core v0.1.0 (/x)\nzerocopy v0.8.1\nrand v0.8.5\n",
            &[],
        );
        check(
            "sluice-core v0.1.0 (/x)\ntokio v1.0.0\ntokio v1.0.0 (*)\n",
            &["tokio"],
        );
        check(
            "madsim-tokio v0.2.0\nasync_std v1.0.0\nhyperloglog v1.0.0\nglommio v0.9.0\n",
            &["madsim-tokio", "async-std", "glommio"],
        );
        check("smoltcp v0.1.0\nsmol v2.0.0\n\n", &["smol"]);
    }
}
