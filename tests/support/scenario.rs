//! Client-library scenarios run as child processes (a Python or Node.js script that checks
//! every answer itself): the pinned venv's Python, and running a scenario within a bound,
//! its output collected.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::mpsc;
use std::time::Duration;

/// A whole scenario finishes well within this; past it the test fails, never hangs.
pub const SCENARIO_TIMEOUT: Duration = Duration::from_secs(240);

pub fn python() -> PathBuf {
    match std::env::var_os("SLUICE_PYTHON") {
        Some(python) => PathBuf::from(python),
        None => panic!(
            "SLUICE_PYTHON is not set. Run this test via `cargo xtask test`, which creates the \
             pinned Python venv (target/py-venv) and sets SLUICE_PYTHON"
        ),
    }
}

/// Runs a command to its end within the scenario bound; panics with its output unless it
/// exits 0. Returns its stdout lines.
pub fn run(mut command: Command) -> Vec<String> {
    let mut child = command.spawn().expect("the client runtime starts");
    let (stdout, stderr) = collect_output(&mut child);
    let status = wait_bounded(&mut child);
    let out = stdout.recv().unwrap_or_default();
    let err = stderr.recv().unwrap_or_default();
    assert!(
        status == Some(0),
        "scenario failed (exit {status:?})\n--- stdout\n{out}\n--- stderr\n{err}"
    );
    out.lines().map(str::to_string).collect()
}

pub fn collect_output(child: &mut Child) -> (mpsc::Receiver<String>, mpsc::Receiver<String>) {
    let reader = |mut pipe: Box<dyn Read + Send>| {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            let _ = tx.send(text);
        });
        rx
    };
    (
        reader(Box::new(child.stdout.take().expect("piped"))),
        reader(Box::new(child.stderr.take().expect("piped"))),
    )
}

/// The exit code, or `None` when it had to be killed at the bound (or died by a signal).
pub fn wait_bounded(child: &mut Child) -> Option<i32> {
    let pid = i32::try_from(child.id()).expect("pid fits");
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        if done_rx.recv_timeout(SCENARIO_TIMEOUT).is_err() {
            // SAFETY: signalling our own child process.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    });
    let status = child.wait().expect("reaped");
    let _ = done_tx.send(());
    let _ = watchdog.join();
    status.code()
}
