//! Starting and stopping the peers: each in a fresh data directory under the data parent
//! (a real disk), on 127.0.0.1 and free ports, stopped by the pids this tool started
//! (never by name) and its directory removed afterwards. Missing binaries are installed
//! from Debian's packages with `apt-get`.
//!
//! Durability settings, each making a confirm wait for an fsync:
//! - PostgreSQL: `fsync = on`, `synchronous_commit = on`, `wal_sync_method = fdatasync`.
//! - Redis: `appendonly yes`, `appendfsync always`, no RDB snapshots.
//! - RabbitMQ: quorum queues (the driver declares them) fsync their log before a confirm.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::args::System;

/// Seconds a peer may take to accept connections.
const START_WAIT_S: u64 = 120;
/// Seconds a peer may take to stop before it is killed.
const STOP_WAIT_S: u64 = 60;
/// `statfs` magic of tmpfs.
const TMPFS_MAGIC: i64 = 0x0102_1994;
/// Debian's policy hook; exit 101 keeps package scripts from starting daemons.
const POLICY_RC_D: &str = "/usr/sbin/policy-rc.d";

/// A process this tool started, and how to stop it.
struct Stoppable {
    name: &'static str,
    pid: i32,
    signal: i32,
    /// Set when the process is our child (reaped with wait).
    child: Option<Child>,
}

/// A running peer: its processes (stopped in reverse start order) and data directory.
pub struct PeerProcess {
    processes: Vec<Stoppable>,
    dir: PathBuf,
    pub port: u16,
}

impl PeerProcess {
    fn new(dir: PathBuf) -> PeerProcess {
        PeerProcess {
            processes: Vec::new(),
            dir,
            port: 0,
        }
    }

    fn spawn(
        &mut self,
        name: &'static str,
        command: &mut Command,
        signal: i32,
    ) -> Result<(), String> {
        let child = command
            .stdin(Stdio::null())
            .spawn()
            .map_err(|e| format!("starting {name} ({:?}): {e}", command.get_program()))?;
        self.processes.push(Stoppable {
            name,
            pid: i32::try_from(child.id()).expect("pid fits i32"),
            signal,
            child: Some(child),
        });
        Ok(())
    }

    /// The early exit of a started process, as an error.
    fn check_alive(&mut self) -> Result<(), String> {
        for process in &mut self.processes {
            if let Some(child) = &mut process.child {
                if let Ok(Some(status)) = child.try_wait() {
                    return Err(format!(
                        "{} exited early ({status}); see the logs in {}",
                        process.name,
                        self.dir.display()
                    ));
                }
            }
        }
        Ok(())
    }

    fn wait_port(&mut self, port: u16) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(START_WAIT_S);
        // Bounded by the deadline.
        loop {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(());
            }
            self.check_alive()?;
            if Instant::now() >= deadline {
                return Err(format!(
                    "port {port} did not open within {START_WAIT_S} s; see the logs in {}",
                    self.dir.display()
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for PeerProcess {
    fn drop(&mut self) {
        // Bounded by the process list.
        while let Some(mut process) = self.processes.pop() {
            stop(&mut process);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn stop(process: &mut Stoppable) {
    let alive = |process: &mut Stoppable| match &mut process.child {
        Some(child) => matches!(child.try_wait(), Ok(None)),
        None => {
            // SAFETY: signal 0 only checks that the pid exists.
            let result = unsafe { libc::kill(process.pid, 0) };
            result == 0
        }
    };
    if !alive(process) {
        return;
    }
    // SAFETY: a process this tool started (our child, or the pid its pid file named).
    unsafe { libc::kill(process.pid, process.signal) };
    let deadline = Instant::now() + Duration::from_secs(STOP_WAIT_S);
    // Bounded by the deadline.
    while alive(process) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    if alive(process) {
        eprintln!(
            "mq-compare: {} (pid {}) did not stop; killing it",
            process.name, process.pid
        );
        // SAFETY: as above.
        unsafe { libc::kill(process.pid, libc::SIGKILL) };
    }
    if let Some(child) = &mut process.child {
        let _ = child.wait();
    }
}

fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .map_err(|e| format!("free port: {e}"))
}

/// A fresh directory `parent/mq-compare-NAME-PID-NANOS`, readable by other users (the
/// PostgreSQL server runs as `postgres`), after checking that `parent` is not tmpfs.
fn fresh_dir(parent: &Path, name: &str) -> Result<PathBuf, String> {
    let text = parent
        .to_str()
        .ok_or_else(|| format!("{}: not UTF-8", parent.display()))?;
    let c_path = std::ffi::CString::new(text).map_err(|_| "data parent has a NUL byte")?;
    // SAFETY: statfs writes into the zeroed struct we own; the path is NUL-terminated.
    let mut stat: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(c_path.as_ptr(), &mut stat) } != 0 {
        return Err(format!(
            "{}: {}",
            parent.display(),
            std::io::Error::last_os_error()
        ));
    }
    // `f_type`'s integer type differs between architectures (i64 on x86-64).
    #[allow(clippy::useless_conversion)]
    let file_system = i64::from(stat.f_type);
    if file_system == TMPFS_MAGIC {
        return Err(format!(
            "{} is tmpfs: fsync there costs nothing; give --data-parent on a real disk",
            parent.display()
        ));
    }
    let dir = parent.join(format!(
        "mq-compare-{name}-{}-{}",
        std::process::id(),
        sluice_benches::dms::unix_now().as_nanos()
    ));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    Ok(dir)
}

fn log_file(dir: &Path, name: &str) -> Result<std::fs::File, String> {
    let path = dir.join(name);
    std::fs::File::create(&path).map_err(|e| format!("{}: {e}", path.display()))
}

/// The newest installed PostgreSQL's `bin` directory.
fn postgres_bin() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            bin.join("postgres").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

fn on_path(binary: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(binary).is_file()))
}

const RABBITMQ_SERVER: &str = "/usr/lib/rabbitmq/bin/rabbitmq-server";

/// The Debian package of a peer, if its binaries are missing.
fn missing_package(system: System) -> Option<&'static str> {
    match system {
        System::Sluice | System::SluiceKafka => None,
        System::Postgres => postgres_bin().is_none().then_some("postgresql"),
        System::Redis => (!on_path("redis-server")).then_some("redis-server"),
        System::Rabbitmq => {
            let present = Path::new(RABBITMQ_SERVER).exists() && on_path("epmd");
            (!present).then_some("rabbitmq-server")
        }
    }
}

/// Installs the Debian packages of the peers whose binaries are missing. Package scripts
/// must not start the daemons on their default ports: without a policy hook, one that
/// forbids it is in place during the install.
pub fn ensure_installed(systems: &[System], no_install: bool) -> Result<(), String> {
    let mut packages: Vec<&str> = systems.iter().filter_map(|s| missing_package(*s)).collect();
    packages.dedup();
    if packages.is_empty() {
        return Ok(());
    }
    if no_install {
        return Err(format!(
            "missing Debian packages (--no-install): {}",
            packages.join(" ")
        ));
    }
    let hook_added = !Path::new(POLICY_RC_D).exists();
    if hook_added {
        std::fs::write(
            POLICY_RC_D,
            "#!/bin/sh\n# mq-compare: no daemons during its install\nexit 101\n",
        )
        .and_then(|()| {
            std::fs::set_permissions(POLICY_RC_D, std::fs::Permissions::from_mode(0o755))
        })
        .map_err(|e| format!("{POLICY_RC_D}: {e}"))?;
    }
    let install = |packages: &[&str]| {
        eprintln!("mq-compare: apt-get install -y {}", packages.join(" "));
        Command::new("apt-get")
            .args(["install", "-y", "-q"])
            .args(packages)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    };
    let mut installed = install(&packages);
    if !installed {
        eprintln!("mq-compare: apt-get update, then again");
        let _ = Command::new("apt-get")
            .args(["update", "-q"])
            .stdout(Stdio::null())
            .status();
        installed = install(&packages);
    }
    if hook_added {
        let _ = std::fs::remove_file(POLICY_RC_D);
    }
    if !installed {
        return Err(format!("apt-get install {} failed", packages.join(" ")));
    }
    match systems.iter().find_map(|s| missing_package(*s)) {
        Some(package) => Err(format!(
            "{package} installed but its binaries are still missing"
        )),
        None => Ok(()),
    }
}

/// The uid and gid of a user.
fn user_ids(name: &str) -> Result<(u32, u32), String> {
    let c_name = std::ffi::CString::new(name).expect("no NUL");
    // SAFETY: getpwnam returns null or a pointer to static storage, read at once.
    let entry = unsafe { libc::getpwnam(c_name.as_ptr()) };
    if entry.is_null() {
        return Err(format!(
            "no user {name:?} (the postgresql package creates it)"
        ));
    }
    // SAFETY: non-null, see above.
    Ok(unsafe { ((*entry).pw_uid, (*entry).pw_gid) })
}

/// PostgreSQL: `initdb` (trust on loopback) and `postgres` as the `postgres` user, when
/// run as root (the server refuses to run as root).
pub fn start_postgres(parent: &Path) -> Result<PeerProcess, String> {
    let bin = postgres_bin().ok_or("no PostgreSQL under /usr/lib/postgresql")?;
    let dir = fresh_dir(parent, "postgres")?;
    let mut peer = PeerProcess::new(dir.clone());
    let data = dir.join("data");
    // SAFETY: geteuid has no preconditions.
    let ids = if unsafe { libc::geteuid() } == 0 {
        let (uid, gid) = user_ids("postgres")?;
        std::os::unix::fs::chown(&dir, Some(uid), Some(gid))
            .map_err(|e| format!("chown {}: {e}", dir.display()))?;
        Some((uid, gid))
    } else {
        None
    };
    let as_user = |command: &mut Command| {
        if let Some((uid, gid)) = ids {
            command.uid(uid).gid(gid).env("HOME", &dir);
        }
    };
    let mut initdb = Command::new(bin.join("initdb"));
    initdb
        .arg("-D")
        .arg(&data)
        .args(["-U", "postgres", "-A", "trust", "--no-instructions"])
        .stdout(log_file(&dir, "initdb.log")?)
        .stderr(log_file(&dir, "initdb.err")?);
    as_user(&mut initdb);
    let status = initdb.status().map_err(|e| format!("initdb: {e}"))?;
    if !status.success() {
        return Err(format!("initdb failed ({status}); see {}", dir.display()));
    }
    peer.port = free_port()?;
    let settings = [
        "listen_addresses=127.0.0.1".to_string(),
        format!("unix_socket_directories={}", dir.display()),
        "fsync=on".to_string(),
        "synchronous_commit=on".to_string(),
        "full_page_writes=on".to_string(),
        "wal_sync_method=fdatasync".to_string(),
        "max_connections=100".to_string(),
        "shared_buffers=256MB".to_string(),
    ];
    let mut postgres = Command::new(bin.join("postgres"));
    postgres
        .arg("-D")
        .arg(&data)
        .arg("-p")
        .arg(peer.port.to_string());
    for setting in &settings {
        postgres.arg("-c").arg(setting);
    }
    postgres
        .stdout(Stdio::null())
        .stderr(log_file(&dir, "postgres.log")?);
    as_user(&mut postgres);
    // SIGINT: PostgreSQL's fast shutdown.
    peer.spawn("postgres", &mut postgres, libc::SIGINT)?;
    let port = peer.port;
    peer.wait_port(port)?;
    Ok(peer)
}

/// Redis with the AOF fsynced on every write (`appendfsync always`), no snapshots.
pub fn start_redis(parent: &Path) -> Result<PeerProcess, String> {
    let dir = fresh_dir(parent, "redis")?;
    let mut peer = PeerProcess::new(dir.clone());
    peer.port = free_port()?;
    let config = format!(
        "bind 127.0.0.1\nport {}\nprotected-mode yes\ndaemonize no\ndir {}\n\
         appendonly yes\nappendfsync always\nsave \"\"\nlogfile {}\n",
        peer.port,
        dir.display(),
        dir.join("redis.log").display()
    );
    let config_path = dir.join("redis.conf");
    std::fs::write(&config_path, config).map_err(|e| format!("{}: {e}", config_path.display()))?;
    let mut redis = Command::new("redis-server");
    redis
        .arg(&config_path)
        .stdout(Stdio::null())
        .stderr(log_file(&dir, "redis.err")?);
    peer.spawn("redis-server", &mut redis, libc::SIGTERM)?;
    let port = peer.port;
    peer.wait_port(port)?;
    Ok(peer)
}

/// RabbitMQ with its own epmd on a free loopback port, node and distribution ports free,
/// no plugins; quorum queues are declared by the driver.
pub fn start_rabbitmq(parent: &Path) -> Result<PeerProcess, String> {
    let dir = fresh_dir(parent, "rabbitmq")?;
    let mut peer = PeerProcess::new(dir.clone());
    peer.port = free_port()?;
    let epmd_port = free_port()?.to_string();
    let dist_port = free_port()?.to_string();
    let write = |name: &str, text: String| {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))
    };
    write("enabled_plugins", "[].\n".to_string())?;
    write(
        "rabbitmq.conf",
        format!(
            "listeners.tcp.1 = 127.0.0.1:{}\nloopback_users.guest = true\n",
            peer.port
        ),
    )?;
    let mut epmd = Command::new("epmd");
    epmd.args(["-address", "127.0.0.1", "-port", &epmd_port])
        .stdout(log_file(&dir, "epmd.log")?)
        .stderr(Stdio::null());
    peer.spawn("epmd", &mut epmd, libc::SIGTERM)?;
    let pid_file = dir.join("beam.pid");
    let mut rabbit = Command::new(RABBITMQ_SERVER);
    rabbit
        .env("HOME", &dir)
        .env("ERL_EPMD_ADDRESS", "127.0.0.1")
        .env("ERL_EPMD_PORT", &epmd_port)
        .env(
            "RABBITMQ_NODENAME",
            format!("mqcompare{}@localhost", peer.port),
        )
        .env("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
        .env("RABBITMQ_NODE_PORT", peer.port.to_string())
        .env("RABBITMQ_DIST_PORT", &dist_port)
        .env("RABBITMQ_MNESIA_BASE", dir.join("mnesia"))
        .env("RABBITMQ_LOG_BASE", dir.join("log"))
        .env("RABBITMQ_CONFIG_FILE", dir.join("rabbitmq.conf"))
        .env("RABBITMQ_ENABLED_PLUGINS_FILE", dir.join("enabled_plugins"))
        .env("RABBITMQ_PID_FILE", &pid_file)
        .env(
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS",
            "-kernel inet_dist_use_interface {127,0,0,1}",
        )
        .stdout(log_file(&dir, "stdout.log")?)
        .stderr(log_file(&dir, "stderr.log")?);
    peer.spawn("rabbitmq-server", &mut rabbit, libc::SIGTERM)?;
    let port = peer.port;
    peer.wait_port(port)?;
    // The Erlang VM may run under the script's pid or as its own: stop it by its pid
    // file first (SIGTERM is its orderly shutdown), then the script, then epmd.
    let beam_pid = std::fs::read_to_string(&pid_file)
        .ok()
        .and_then(|text| text.trim().parse::<i32>().ok());
    if let Some(pid) = beam_pid.filter(|pid| *pid != peer.processes.last().map_or(0, |p| p.pid)) {
        peer.processes.push(Stoppable {
            name: "rabbitmq beam",
            pid,
            signal: libc::SIGTERM,
            child: None,
        });
    }
    Ok(peer)
}

/// Package versions, for the report.
pub fn version(system: System) -> String {
    let package = match system {
        System::Sluice | System::SluiceKafka => return String::new(),
        System::Postgres => {
            return postgres_bin()
                .and_then(|bin| {
                    Command::new(bin.join("postgres"))
                        .arg("--version")
                        .output()
                        .ok()
                })
                .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_string())
                .unwrap_or_default()
        }
        System::Redis => "redis-server",
        System::Rabbitmq => "rabbitmq-server",
    };
    Command::new("dpkg-query")
        .args(["-W", "-f", "${Version}", package])
        .output()
        .map(|out| format!("{package} {}", String::from_utf8_lossy(&out.stdout).trim()))
        .unwrap_or_default()
}
