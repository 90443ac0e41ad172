//! Runs the real `sluice` binary for end-to-end tests: a fresh data directory, port 0,
//! the address read from the server's first stdout line, and signed clients for its
//! tenants. Waits are bounded reads of the process's output, never sleeps.

#![allow(dead_code)] // Each test binary uses a different part of the harness.

pub mod cluster;
pub mod kafka;
pub mod raw;
pub mod scenario;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use sluice_server::client::{Client, Credentials};
use sluice_server::datadir;

/// Start-up (recovery included) must finish within this.
const START_TIMEOUT: Duration = Duration::from_secs(60);

pub struct Server {
    child: Option<Child>,
    pub endpoint: String,
    pub data_dir: PathBuf,
    /// The first start's banner (credentials of the default tenant).
    pub banner: Vec<String>,
}

impl Server {
    /// Starts a server on `data_dir` with `extra` flags (after the defaults). The binary is
    /// this build's `sluice`, or `$SLUICE_SERVER_BIN` when set (to measure another build,
    /// such as a release one, with the same test).
    pub fn start(data_dir: &Path, extra: &[&str]) -> Server {
        Server::start_with_env(data_dir, extra, &[])
    }

    /// As `start`, with `env` added to the server's environment (`SLUICE_<KEY>` settings).
    pub fn start_with_env(data_dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Server {
        let mut command = Command::new(Server::binary());
        command.envs(env.iter().copied());
        command.args(Server::args(data_dir, extra));
        Server::spawn(command, data_dir)
    }

    /// Like [`Server::start`], with the process's umask set to `umask` (octal) first, by
    /// `sh`, which then `exec`s the server.
    pub fn start_with_umask(data_dir: &Path, extra: &[&str], umask: &str) -> Server {
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(format!("umask {umask} && exec \"$0\" \"$@\""))
            .arg(Server::binary())
            .args(Server::args(data_dir, extra));
        Server::spawn(command, data_dir)
    }

    /// This build's `sluice`, or `$SLUICE_SERVER_BIN` when set.
    fn binary() -> std::ffi::OsString {
        std::env::var_os("SLUICE_SERVER_BIN").unwrap_or_else(|| env!("CARGO_BIN_EXE_sluice").into())
    }

    /// The server's arguments: `server`, port 0 on loopback (unless `extra` names an
    /// address), the data directory, `extra`.
    pub fn args(data_dir: &Path, extra: &[&str]) -> Vec<std::ffi::OsString> {
        let mut args: Vec<std::ffi::OsString> = vec!["server".into()];
        if !extra.contains(&"--http-listen") {
            args.extend(["--http-listen".into(), "127.0.0.1:0".into()]);
        }
        args.push("--data-dir".into());
        args.push(data_dir.into());
        args.extend(extra.iter().map(|a| a.into()));
        args
    }

    /// Spawns `command` (a server) and waits for its address on its first stdout line.
    fn spawn(mut command: Command, data_dir: &Path) -> Server {
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = command.spawn().expect("the sluice binary starts");
        let stdout = child.stdout.take().expect("piped");
        let (lines_tx, lines_rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if lines_tx.send(line).is_err() {
                    return;
                }
            }
        });
        let first = lines_rx
            .recv_timeout(START_TIMEOUT)
            .expect("the server prints its address once it listens");
        let endpoint = first
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap_or_else(|| panic!("no address in {first:?}"))
            .to_string();
        let mut banner = vec![first];
        // The first start prints the default tenant's credentials right after.
        while let Ok(line) = lines_rx.recv_timeout(Duration::from_millis(200)) {
            banner.push(line);
        }
        Server {
            child: Some(child),
            endpoint,
            data_dir: data_dir.to_path_buf(),
            banner,
        }
    }

    pub fn pid(&self) -> i32 {
        i32::try_from(self.child.as_ref().expect("running").id()).expect("pid fits")
    }

    /// A client signing as the tenant named `name` (from the data directory).
    pub fn client_for(&self, name: &str) -> Client {
        let tenant = datadir::load_tenants(&self.data_dir)
            .expect("tenants load")
            .into_iter()
            .find(|t| t.name == name)
            .unwrap_or_else(|| panic!("no tenant {name}"));
        Client::new(
            &self.endpoint,
            Credentials {
                project_id: tenant.project_id,
                ak: tenant.ak,
                sk: tenant.sk,
            },
        )
    }

    pub fn client(&self) -> Client {
        self.client_for("default")
    }

    /// Runs the CLI against this server's data directory and returns its stdout.
    pub fn cli(&self, args: &[&str]) -> String {
        let output = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(args)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .output()
            .expect("the CLI runs");
        assert!(
            output.status.success(),
            "sluice {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).expect("utf-8")
    }

    /// SIGKILL: no chance to flush anything.
    pub fn kill(&mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().expect("kill");
        child.wait().expect("reaped");
    }

    /// SIGTERM, then waits for the exit.
    pub fn terminate(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        // SAFETY: signalling our own child process.
        let sent = unsafe { libc::kill(i32::try_from(child.id()).expect("pid"), libc::SIGTERM) };
        assert_eq!(sent, 0, "SIGTERM delivered");
        child.wait().expect("reaped")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The project path prefix of a client.
pub fn base(client: &Client) -> String {
    format!("/v1.0/{}", client.credentials.project_id)
}
