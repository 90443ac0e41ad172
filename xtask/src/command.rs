//! Running child processes from the workspace root, with errors that name the command.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// The workspace root: the parent of this crate's directory.
pub fn workspace_root() -> PathBuf {
    let manifest_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}

/// `cargo` through the rustup proxy on PATH (so `+nightly` works), run from the root.
pub fn cargo() -> Command {
    let mut cargo = Command::new("cargo");
    cargo.current_dir(workspace_root());
    cargo
}

/// The command line as a reader would type it, for messages.
pub fn describe(command: &Command) -> String {
    let mut line = command.get_program().to_string_lossy().into_owned();
    for arg in command.get_args() {
        line.push(' ');
        line.push_str(&arg.to_string_lossy());
    }
    line
}

/// Runs with inherited stdio; an error unless it exits 0.
pub fn run(command: &mut Command) -> Result<(), String> {
    let line = describe(command);
    println!("$ {line}");
    let status = command
        .status()
        .map_err(|error| format!("could not start `{line}`: {error}"))?;
    exit_result(&line, status)
}

/// Runs with inherited stdout and its stderr copied line by line except the lines
/// `quiet` selects; an error unless it exits 0.
pub fn run_quieted(command: &mut Command, quiet: fn(&[u8]) -> bool) -> Result<(), String> {
    let line = describe(command);
    println!("$ {line}");
    let mut child = command
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|error| format!("could not start `{line}`: {error}"))?;
    let stderr = child.stderr.take().expect("stderr is piped");
    let mut err = std::io::stderr().lock();
    // Bounded by the child's output: ends when the child closes stderr.
    for text in BufReader::new(stderr).split(b'\n') {
        let text = text.map_err(|error| format!("reading `{line}`: {error}"))?;
        if !quiet(&text) {
            // A closed stderr must not hide the child's exit status.
            let _ = err.write_all(&text).and_then(|()| err.write_all(b"\n"));
        }
    }
    let status = child
        .wait()
        .map_err(|error| format!("waiting for `{line}`: {error}"))?;
    exit_result(&line, status)
}

/// Runs with stderr inherited and stdout echoed line by line to `on_line` after being
/// printed; an error unless it exits 0.
pub fn run_tee(command: &mut Command, on_line: &mut dyn FnMut(&str)) -> Result<(), String> {
    let line = describe(command);
    println!("$ {line}");
    let mut child = command
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|error| format!("could not start `{line}`: {error}"))?;
    let stdout = child.stdout.take().expect("stdout is piped");
    // Bounded by the child's output: ends when the child closes stdout.
    for text in BufReader::new(stdout).split(b'\n') {
        let text = text.map_err(|error| format!("reading `{line}`: {error}"))?;
        let text = String::from_utf8_lossy(&text);
        println!("{text}");
        on_line(&text);
    }
    let status = child
        .wait()
        .map_err(|error| format!("waiting for `{line}`: {error}"))?;
    exit_result(&line, status)
}

/// Runs with captured stdout (stderr inherited); its stdout unless it fails.
pub fn output(command: &mut Command) -> Result<String, String> {
    let line = describe(command);
    println!("$ {line}");
    let output = command
        .stderr(Stdio::inherit())
        .output()
        .map_err(|error| format!("could not start `{line}`: {error}"))?;
    if !output.status.success() {
        return Err(format!("`{line}` failed ({})", output.status));
    }
    String::from_utf8(output.stdout).map_err(|error| format!("`{line}` printed non-UTF-8: {error}"))
}

/// True when the command starts and exits 0; its output is discarded.
pub fn succeeds(command: &mut Command) -> bool {
    command
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// Ok when the command exited 0, else an error naming it and its status.
fn exit_result(line: &str, status: std::process::ExitStatus) -> Result<(), String> {
    if status.success() {
        Ok(())
    } else {
        Err(format!("`{line}` failed ({status})"))
    }
}
