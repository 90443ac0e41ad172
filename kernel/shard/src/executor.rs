//! Executor start-up: one glommio `LocalExecutor` per core, sized to the locked-memory
//! limit of the machine it runs on. Owns the memlock decision and nothing else; what
//! runs on the executors is the caller's.
//!
//! glommio registers its `io_memory` (default 10 MiB) with each of its three io_uring
//! rings. Without CAP_IPC_LOCK the kernel charges every registration to the user's
//! RLIMIT_MEMLOCK, so each executor needs 3 x io_memory of it; a registration that does
//! not fit is skipped by glommio with a log warning nobody sees, and I/O then silently
//! uses unregistered buffers. With CAP_IPC_LOCK nothing is charged. So at start-up
//! [`ShardStartup::prepare`] raises the soft limit to the hard one (always allowed),
//! keeps the default when the process has CAP_IPC_LOCK or the limit is large enough, and
//! otherwise sizes `io_memory` to fit, printing one line that says which. The measured
//! facts are in `docs/glommio-memlock.md`. Whether an idle executor spins before
//! parking is the caller's choice, passed in explicitly: it trades disk throughput for
//! cross-core message latency (see [`SPIN_BEFORE_PARK_MESSAGING`]).

use std::time::Duration;

use glommio::{LocalExecutorBuilder, Placement};

/// glommio's default `io_memory` per executor.
pub const IO_MEMORY_DEFAULT_BYTES: u64 = 10 << 20;
/// glommio rounds a smaller `io_memory` up to this.
pub const IO_MEMORY_MIN_BYTES: u64 = 64 << 10;
/// Below this soft RLIMIT_MEMLOCK glommio refuses to build an executor.
pub const GLOMMIO_MEMLOCK_MIN_BYTES: u64 = 512 << 10;
/// io_uring rings per glommio executor (main, poll, latency), each registering
/// `io_memory`.
pub const RINGS_PER_EXECUTOR: u64 = 3;
/// Share of the limit the registrations may take; the rest is headroom for other
/// locked memory of the same user (the charge is per user, not per process).
const MEMLOCK_USABLE_PERCENT: u64 = 75;
/// Spinning before parking cuts cross-core channel wake-up from ~120-350 us to ~25-60
/// us on this VM (a 100k round-trip ping-pong over a glommio channel mesh between two
/// cores; see docs/glommio-memlock.md) at the cost of a busy core while idle. It costs the
/// disk, though: with it, io_uring completions of writes and fdatasync are seen late,
/// and log-bench measured 35-40% fewer commits per second (batch 1: ~3,100/s against
/// ~5,000/s without; batch 256: ~420 MB/s against ~620 MB/s). Storage-bound shards
/// should pass `None`; see docs/log-bench.md.
pub const SPIN_BEFORE_PARK_MESSAGING: Duration = Duration::from_micros(100);
/// Linux capability number of CAP_IPC_LOCK.
const CAP_IPC_LOCK: u32 = 14;

/// A resource limit value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    Bytes(u64),
    Unlimited,
}

impl Limit {
    fn from_raw(raw: libc::rlim_t) -> Limit {
        if raw == libc::RLIM_INFINITY {
            Limit::Unlimited
        } else {
            Limit::Bytes(raw)
        }
    }
}

impl std::fmt::Display for Limit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Limit::Bytes(bytes) => write!(f, "{} KiB", bytes / 1024),
            Limit::Unlimited => write!(f, "unlimited"),
        }
    }
}

/// What `prepare` found and did to RLIMIT_MEMLOCK.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemlockFacts {
    pub soft_before: Limit,
    pub hard: Limit,
    /// The soft limit in force after trying to raise it to `hard`.
    pub soft: Limit,
    /// errno of a failed `setrlimit`, if one was tried and failed.
    pub raise_errno: Option<i32>,
    pub cap_ipc_lock: bool,
}

/// Which `io_memory` an executor gets, and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoMemoryChoice {
    /// CAP_IPC_LOCK: registrations are not charged to the limit.
    DefaultCapIpcLock,
    /// The limit holds every executor's registrations at the default size.
    DefaultFits,
    /// Reduced so every executor's registrations fit in the usable share of the limit.
    Reduced,
    /// Even the smallest `io_memory` does not fit: glommio will skip registering and
    /// use plain (unregistered) buffers. Works, slightly slower.
    Unregistered,
    /// Below glommio's minimum: building an executor will fail.
    BelowGlommioMinimum,
}

/// The start-up decision for all shards of this process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShardStartup {
    pub facts: MemlockFacts,
    pub shard_count: u32,
    pub io_memory_bytes: u64,
    pub choice: IoMemoryChoice,
    /// Busy-polling before an idle executor parks; `None` parks at once.
    pub spin_before_park: Option<Duration>,
}

/// Pure decision: `io_memory` per executor for `shard_count` executors under `soft`.
pub fn plan_io_memory(soft: Limit, cap_ipc_lock: bool, shard_count: u32) -> (u64, IoMemoryChoice) {
    assert!(shard_count > 0, "at least one shard");
    let Limit::Bytes(limit) = soft else {
        return (IO_MEMORY_DEFAULT_BYTES, IoMemoryChoice::DefaultFits);
    };
    if limit < GLOMMIO_MEMLOCK_MIN_BYTES {
        return (IO_MEMORY_MIN_BYTES, IoMemoryChoice::BelowGlommioMinimum);
    }
    if cap_ipc_lock {
        return (IO_MEMORY_DEFAULT_BYTES, IoMemoryChoice::DefaultCapIpcLock);
    }
    let usable = u64::try_from(u128::from(limit) * u128::from(MEMLOCK_USABLE_PERCENT) / 100)
        .expect("a share of a u64 fits a u64");
    let per_ring = usable / (RINGS_PER_EXECUTOR * u64::from(shard_count));
    let per_ring = per_ring - per_ring % 4096;
    if per_ring >= IO_MEMORY_DEFAULT_BYTES {
        return (IO_MEMORY_DEFAULT_BYTES, IoMemoryChoice::DefaultFits);
    }
    if per_ring < IO_MEMORY_MIN_BYTES {
        return (IO_MEMORY_MIN_BYTES, IoMemoryChoice::Unregistered);
    }
    let total = per_ring * RINGS_PER_EXECUTOR * u64::from(shard_count);
    assert!(total <= usable, "registrations exceed the usable limit");
    (per_ring, IoMemoryChoice::Reduced)
}

fn get_memlock() -> (Limit, Limit) {
    let mut raw = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    let status = unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut raw) };
    assert_eq!(status, 0, "getrlimit(RLIMIT_MEMLOCK) cannot fail");
    (Limit::from_raw(raw.rlim_cur), Limit::from_raw(raw.rlim_max))
}

/// Raises the soft RLIMIT_MEMLOCK to the hard one (an unprivileged process may).
pub fn raise_memlock() -> MemlockFacts {
    let (soft_before, hard) = get_memlock();
    let mut raise_errno = None;
    if soft_before != hard {
        let raw_hard = match hard {
            Limit::Bytes(bytes) => bytes,
            Limit::Unlimited => libc::RLIM_INFINITY,
        };
        let wanted = libc::rlimit {
            rlim_cur: raw_hard,
            rlim_max: raw_hard,
        };
        // SAFETY: setrlimit reads the struct we own.
        let status = unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &wanted) };
        if status != 0 {
            raise_errno = std::io::Error::last_os_error().raw_os_error();
        }
    }
    let (soft, _) = get_memlock();
    MemlockFacts {
        soft_before,
        hard,
        soft,
        raise_errno,
        cap_ipc_lock: has_cap_ipc_lock(),
    }
}

/// Whether the calling thread's effective capabilities hold CAP_IPC_LOCK (threads
/// spawned later inherit them). False when /proc cannot tell.
pub fn has_cap_ipc_lock() -> bool {
    let status = std::fs::read_to_string("/proc/thread-self/status")
        .or_else(|_| std::fs::read_to_string("/proc/self/status"))
        .unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << CAP_IPC_LOCK) != 0)
}

impl ShardStartup {
    /// Raises the memlock limit, decides `io_memory` for `shard_count` executors and
    /// prints the decision as one line on stderr. Call once per process.
    /// `spin_before_park` is the caller's trade-off between cross-core message latency
    /// and disk throughput (see [`SPIN_BEFORE_PARK_MESSAGING`]).
    pub fn prepare(shard_count: u32, spin_before_park: Option<Duration>) -> ShardStartup {
        let facts = raise_memlock();
        let (io_memory_bytes, choice) = plan_io_memory(facts.soft, facts.cap_ipc_lock, shard_count);
        let startup = ShardStartup {
            facts,
            shard_count,
            io_memory_bytes,
            choice,
            spin_before_park,
        };
        eprintln!("{}", startup.describe());
        startup
    }

    /// The one log line.
    pub fn describe(&self) -> String {
        let facts = &self.facts;
        let raise = match (facts.soft_before == facts.hard, facts.raise_errno) {
            (true, _) => "already at hard".to_string(),
            (false, None) => format!("raised from {}", facts.soft_before),
            (false, Some(errno)) => {
                format!("raise from {} failed, errno {errno}", facts.soft_before)
            }
        };
        let io_memory = self.io_memory_bytes / 1024;
        let shards = self.shard_count;
        let why = match self.choice {
            IoMemoryChoice::DefaultCapIpcLock => {
                "CAP_IPC_LOCK held, io_uring registrations are not charged to the limit".to_string()
            }
            IoMemoryChoice::DefaultFits => {
                format!("{shards} shard(s) x {RINGS_PER_EXECUTOR} rings x default fit in the limit")
            }
            IoMemoryChoice::Reduced => format!(
                "no CAP_IPC_LOCK: reduced so {shards} shard(s) x {RINGS_PER_EXECUTOR} rings fit \
                 in {MEMLOCK_USABLE_PERCENT}% of the limit"
            ),
            IoMemoryChoice::Unregistered => format!(
                "no CAP_IPC_LOCK and the limit is too small for {shards} shard(s): buffers \
                 will not be registered (slower I/O)"
            ),
            IoMemoryChoice::BelowGlommioMinimum => format!(
                "limit is below glommio's minimum of {} KiB: executors will not start",
                GLOMMIO_MEMLOCK_MIN_BYTES / 1024
            ),
        };
        format!(
            "sluice-shard: RLIMIT_MEMLOCK soft {} (hard {}, {raise}); io_memory {io_memory} KiB \
             per shard: {why}",
            facts.soft, facts.hard
        )
    }

    /// The builder for the executor of shard `cpu`, pinned to that core.
    pub fn builder(&self, cpu: usize) -> LocalExecutorBuilder {
        let builder = LocalExecutorBuilder::new(Placement::Fixed(cpu))
            .name(&format!("sluice-shard-{cpu}"))
            .io_memory(usize::try_from(self.io_memory_bytes).expect("io_memory fits usize"));
        match self.spin_before_park {
            Some(spin) => builder.spin_before_park(spin),
            None => builder,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn plan_follows_the_limit() {
        let cases = [
            // (limit, cap, shards) -> (io_memory, choice)
            (
                Limit::Unlimited,
                false,
                2,
                IO_MEMORY_DEFAULT_BYTES,
                IoMemoryChoice::DefaultFits,
            ),
            (
                Limit::Bytes(8 * MIB),
                true,
                2,
                IO_MEMORY_DEFAULT_BYTES,
                IoMemoryChoice::DefaultCapIpcLock,
            ),
            (
                Limit::Bytes(8 * MIB),
                false,
                1,
                2 * MIB,
                IoMemoryChoice::Reduced,
            ),
            (
                Limit::Bytes(8 * MIB),
                false,
                2,
                MIB,
                IoMemoryChoice::Reduced,
            ),
            (
                Limit::Bytes(80 * MIB),
                false,
                2,
                IO_MEMORY_DEFAULT_BYTES,
                IoMemoryChoice::DefaultFits,
            ),
            (
                Limit::Bytes(MIB),
                false,
                8,
                IO_MEMORY_MIN_BYTES,
                IoMemoryChoice::Unregistered,
            ),
            (
                Limit::Bytes(256 << 10),
                true,
                1,
                IO_MEMORY_MIN_BYTES,
                IoMemoryChoice::BelowGlommioMinimum,
            ),
        ];
        for (limit, cap, shards, bytes, choice) in cases {
            let plan = plan_io_memory(limit, cap, shards);
            assert_eq!(plan, (bytes, choice), "{limit} cap {cap} shards {shards}");
        }
    }

    #[test]
    fn reduced_plans_fit_with_headroom() {
        for limit_kib in (512..65536).step_by(509) {
            for shards in 1..=4u32 {
                let limit = limit_kib * 1024;
                let (bytes, choice) = plan_io_memory(Limit::Bytes(limit), false, shards);
                if choice == IoMemoryChoice::Reduced {
                    assert!(bytes * RINGS_PER_EXECUTOR * u64::from(shards) <= limit * 3 / 4);
                    assert_eq!(bytes % 4096, 0);
                }
            }
        }
    }
}
