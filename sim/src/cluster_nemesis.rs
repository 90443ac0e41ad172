//! The cluster simulation's nemesis (`crate::cluster`): seeded faults while the workload
//! runs, each healing by itself within a few seconds, and all healed at the end:
//!
//! - network partitions over madsim's `NetSim`: a minority (half the time the leader of a
//!   partition) cut off from the rest both ways, or one link clogged in one direction
//!   (asymmetric); clients still reach every node;
//! - message loss (madsim's packet loss rate), duplication and reordering (the nodes'
//!   send shim), drawn per seed (`NetKnobs`);
//! - a partition leader's process killed and restarted (no power loss);
//! - power loss on one node, or on all nodes at once (every disk loses or tears its
//!   unsynced writes; half the time the recovery's reads flip a bit);
//! - a slow node: every packet to or from it delayed;
//! - a disk fault on one replica (EIO on its next sync or ENOSPC on its next write; the
//!   node restarts, as the server reopens the partition), and the seed's random disk
//!   fault rate;
//! - a step of one node's wall clock (its queue time must not follow);
//! - with a spare node: a membership move of every partition's replica from a voter to
//!   the node outside the groups, through the admin API of a random node, while the
//!   workload runs and the other faults go on (`change_membership`).
//!
//! At most a minority of the voters is down at once, except for the power loss of all.

use std::rc::Rc;
use std::time::Duration;

use madsim::net::NetSim;
use madsim::rand::{seq::SliceRandom, thread_rng, Rng};
use sluice_core::storage::{IoErrorKind, IoOp};

use crate::api;
use crate::client::{Ctx, WALL_OFFSET_MS_MAX};
use crate::cluster::{Cluster, Reached};

/// A partition, slow node or downed node heals within this.
const FAULT_MS_MAX: u64 = 5_000;
/// The supervisor's pass: restarts nodes after storage faults.
const SUPERVISE_MS: u64 = 100;
/// Committed terms are checked every this many supervisor passes.
const TERM_CHECK_PASSES: u64 = 10;
/// Runs of a membership move cut short that the end of the run makes, once healed,
/// before it calls the move stuck.
const FINISH_MOVE_RUNS_MAX: u32 = 5;
/// Longest the end of the run waits for a membership move's admin request under way:
/// the node layer gives each partition `MEMBERSHIP_PARTITION_MS_MAX`.
const MOVE_WAIT_MS_MAX: u64 = 600_000;

async fn sleep_ms(ms: u64) {
    madsim::time::sleep(Duration::from_millis(ms)).await;
}

/// Turns the network faults on (the shim's are on while `Cluster::faults`).
pub fn unleash(cluster: &Cluster) {
    cluster.faults.set(true);
    let loss = f64::from(cluster.net.loss_ppm) / 1e6;
    NetSim::current().update_config(|config| config.packet_loss_rate = loss);
}

/// Ends every fault: no loss, every link open, no slow node, every node running.
pub fn heal(cluster: &Cluster) {
    cluster.faults.set(false);
    let net = NetSim::current();
    net.update_config(|config| config.packet_loss_rate = 0.0);
    let nodes: Vec<_> = cluster
        .machines
        .iter()
        .filter_map(|machine| machine.node.get())
        .collect();
    for a in &nodes {
        for b in &nodes {
            if a != b {
                net.unclog_link(*a, *b);
            }
        }
    }
    for machine in &cluster.machines {
        machine.slow_ms.set(0);
        if machine.down.get() {
            cluster.restart(machine.id);
        }
    }
    cluster.note("cluster healed".into());
}

/// Waits (at most `max_ms` of simulated time) until every node runs, every partition has
/// a serving leader and every replica applied the same index, twice in a row a second
/// apart.
pub async fn settle(cluster: &Cluster, max_ms: u64) {
    let mut waited = 0;
    let mut stable = 0;
    while waited < max_ms && stable < 2 {
        sleep_ms(1_000).await;
        waited += 1_000;
        stable = if cluster.settled() { stable + 1 } else { 0 };
    }
    cluster.note(format!("settled after {waited} ms: {}", stable >= 2));
}

/// Restarts nodes whose node layer took a partition out of service, and checks the
/// committed terms, until aborted at the end of the run.
pub async fn supervise(_ctx: Rc<Ctx>, cluster: Rc<Cluster>) {
    let mut passes: u64 = 0;
    // Ends by abort (the run's end).
    loop {
        sleep_ms(SUPERVISE_MS).await;
        passes += 1;
        cluster.restart_faulted();
        if passes.is_multiple_of(TERM_CHECK_PASSES) {
            cluster.check_terms();
        }
    }
}

fn down_count(cluster: &Cluster) -> usize {
    cluster.machines.iter().filter(|m| m.down.get()).count()
}

/// A node that leads some partition now (else any node).
fn some_leader(cluster: &Cluster) -> u64 {
    let partition = thread_rng().gen_range(0..cluster.partitions());
    let ids: Vec<u64> = cluster.machines.iter().map(|m| m.id).collect();
    let any = ids[thread_rng().gen_range(0..ids.len())];
    ids.iter()
        .find_map(|id| cluster.leader_seen_by(*id, partition))
        .filter(|leader| !cluster.machine(*leader).down.get())
        .unwrap_or(any)
}

/// Restarts node `id` after `ms`, unless the run healed everything meanwhile.
fn restart_later(cluster: &Rc<Cluster>, id: u64, ms: u64) {
    let cluster = cluster.clone();
    madsim::task::spawn_local(async move {
        sleep_ms(ms).await;
        if cluster.faults.get() && cluster.machine(id).down.get() {
            cluster.restart(id);
        }
    });
}

/// Clogs `links` (source, destination node ids) for `ms`, then opens them, unless the
/// run healed everything meanwhile.
fn clog_for(cluster: &Rc<Cluster>, links: Vec<(u64, u64)>, ms: u64) {
    let net = NetSim::current();
    let node = |id: u64| cluster.machine(id).node.get().expect("launched");
    for (a, b) in &links {
        net.clog_link(node(*a), node(*b));
    }
    let cluster = cluster.clone();
    madsim::task::spawn_local(async move {
        sleep_ms(ms).await;
        if !cluster.faults.get() {
            return;
        }
        let net = NetSim::current();
        for (a, b) in &links {
            let (a, b) = (
                cluster.machine(*a).node.get(),
                cluster.machine(*b).node.get(),
            );
            if let (Some(a), Some(b)) = (a, b) {
                net.unclog_link(a, b);
            }
        }
    });
}

/// Seeded faults at seeded intervals (up to twice the seed's fault interval) while
/// faults are on.
pub async fn nemesis(ctx: Rc<Ctx>, cluster: Rc<Cluster>) {
    let n = cluster.machines.len();
    let minority = (cluster.initial_voters().len() - 1) / 2;
    let spare = n > cluster.initial_voters().len();
    let ids: Vec<u64> = cluster.machines.iter().map(|m| m.id).collect();
    // Bounded by the run: the healing step turns `faults` off.
    while ctx.faults.get() {
        sleep_ms(thread_rng().gen_range(0..=2 * ctx.knobs.fault_interval_ms)).await;
        if !ctx.faults.get() {
            break;
        }
        let mut rng = thread_rng();
        let roll = rng.gen_range(0..100);
        let lasts = rng.gen_range(200..=FAULT_MS_MAX);
        let node = ids[rng.gen_range(0..n)];
        drop(rng);
        if roll < 15 {
            // A minority cut off both ways; half the time it holds a leader.
            let mut shuffled = ids.clone();
            shuffled.shuffle(&mut thread_rng());
            let size = thread_rng().gen_range(1..=minority);
            let mut side: Vec<u64> = shuffled[..size].to_vec();
            if thread_rng().gen_bool(0.5) {
                let leader = some_leader(&cluster);
                if !side.contains(&leader) {
                    side[0] = leader;
                }
            }
            let links: Vec<(u64, u64)> = side
                .iter()
                .flat_map(|a| {
                    ids.iter()
                        .filter(|b| !side.contains(b))
                        .flat_map(move |b| [(*a, *b), (*b, *a)])
                })
                .collect();
            cluster.note(format!(
                "network partition: {side:?} cut off for {lasts} ms"
            ));
            clog_for(&cluster, links, lasts);
        } else if roll < 25 {
            let to = ids[(ids.iter().position(|id| *id == node).expect("known")
                + thread_rng().gen_range(1..n))
                % n];
            cluster.note(format!("link n{node} -> n{to} clogged for {lasts} ms"));
            clog_for(&cluster, vec![(node, to)], lasts);
        } else if roll < 40 {
            let leader = some_leader(&cluster);
            if down_count(&cluster) < minority && !cluster.machine(leader).down.get() {
                cluster.kill(leader, false);
                restart_later(&cluster, leader, lasts);
            }
        } else if roll < 50 {
            if down_count(&cluster) < minority && !cluster.machine(node).down.get() {
                cluster.kill(node, true);
                flip_recovery_reads(&cluster, node);
                restart_later(&cluster, node, lasts);
            }
        } else if roll < 53 {
            if down_count(&cluster) == 0 {
                cluster.note("power loss on every node".into());
                for id in &ids {
                    cluster.kill(*id, true);
                    flip_recovery_reads(&cluster, *id);
                    restart_later(&cluster, *id, thread_rng().gen_range(0..=1_000));
                }
            }
        } else if roll < 60 {
            if spare {
                change_membership(&ctx, &cluster);
            }
        } else if roll < 68 {
            let ms = thread_rng().gen_range(50..=500);
            cluster.note(format!("n{node} slow: packets +{ms} ms for {lasts} ms"));
            cluster.machine(node).slow_ms.set(ms);
            let cluster = cluster.clone();
            madsim::task::spawn_local(async move {
                sleep_ms(lasts).await;
                cluster.machine(node).slow_ms.set(0);
            });
        } else if roll < 68 + ctx.knobs.eio_percent / 3 {
            let machine = cluster.machine(node);
            let partition = thread_rng().gen_range(0..machine.disks.len());
            let (op, kind) = if thread_rng().gen_bool(0.7) {
                (IoOp::Sync, IoErrorKind::Io)
            } else {
                (IoOp::Write, IoErrorKind::NoSpace)
            };
            machine.disks[partition].fail_next(op, kind);
            cluster.note(format!(
                "n{node} p{partition}: next {op:?} fails with {kind:?}"
            ));
        } else if roll < 68 + ctx.knobs.eio_percent / 3 + ctx.knobs.clock_jump_percent {
            let machine = cluster.machine(node);
            let offset = machine.wall_offset.get();
            let step = thread_rng().gen_range(1_000..=WALL_OFFSET_MS_MAX);
            let step = if thread_rng().gen_bool(0.5) {
                step
            } else {
                -step
            };
            let step = (offset + step).clamp(-WALL_OFFSET_MS_MAX, WALL_OFFSET_MS_MAX) - offset;
            machine.wall_offset.set(offset + step);
            cluster.note(format!(
                "n{node}: wall clock steps {step:+} ms (now {:+} ms from true time)",
                offset + step
            ));
        }
        // Otherwise a quiet interval.
    }
}

/// Half the time, one of the first reads of each disk of node `id` after its crash flips
/// a bit (transient), which lands in the recovery's reads.
fn flip_recovery_reads(cluster: &Cluster, id: u64) {
    if thread_rng().gen_bool(0.5) {
        for disk in &cluster.machine(id).disks {
            disk.flip_read(thread_rng().gen_range(1..=6));
        }
    }
}

/// Moves every partition's replica from a voter to a node outside the groups (the spare,
/// or the node an earlier move emptied), unless a move's request is under way. A move
/// that was cut short (its node killed, an error answered) is asked for again instead:
/// the node layer finishes a change by running it again.
fn change_membership(ctx: &Rc<Ctx>, cluster: &Rc<Cluster>) {
    if cluster.move_running.get() {
        return;
    }
    let change = match cluster.move_pending.get() {
        Some(change) => change,
        None => {
            let voters = cluster.client_nodes();
            let outside: Vec<u64> = cluster
                .machines
                .iter()
                .map(|machine| machine.id)
                .filter(|id| !voters.contains(id))
                .collect();
            let (Some(from), Some(to)) = (
                voters.choose(&mut thread_rng()),
                outside.choose(&mut thread_rng()),
            ) else {
                return;
            };
            (*from, *to)
        }
    };
    cluster.move_pending.set(Some(change));
    cluster.move_running.set(true);
    let (ctx, cluster) = (ctx.clone(), cluster.clone());
    madsim::task::spawn_local(async move {
        ask_move(&ctx, &cluster, change).await;
    });
}

/// `POST /admin/cluster/move` of `change` through a random node; marks the move done
/// when answered 2xx. Ends `Cluster::move_running`.
async fn ask_move(ctx: &Ctx, cluster: &Cluster, (from, to): (u64, u64)) {
    let via = cluster.machines[thread_rng().gen_range(0..cluster.machines.len())].id;
    cluster.counters.borrow_mut().moves_asked += 1;
    cluster.note(format!("membership: move n{from} -> n{to} asked of n{via}"));
    let (parts, body) = api::signed(
        &cluster.admin_credentials(),
        &api::cluster_move(from, to),
        ctx.now(),
    );
    let outcome = match cluster.handle(via, parts, body).await {
        Reached::Served(served) if served.response.status().is_success() => {
            cluster.move_pending.set(None);
            cluster.counters.borrow_mut().moves_done += 1;
            "done".to_string()
        }
        Reached::Served(served) => format!(
            "{}: {}",
            served.response.status(),
            String::from_utf8_lossy(served.response.body())
        ),
        Reached::Lost { .. } => "lost with its node".into(),
        Reached::Refused => "refused".into(),
    };
    cluster.note(format!("membership: move n{from} -> n{to}: {outcome}"));
    cluster.move_running.set(false);
}

/// Once healed: waits for a move's request under way, then asks again for a move cut
/// short until it is done; a move still not done after `FINISH_MOVE_RUNS_MAX` runs is a
/// violation (a change that cannot finish on a healed cluster).
pub async fn finish_membership_change(ctx: &Ctx, cluster: &Cluster) {
    let mut waited = 0;
    while cluster.move_running.get() && waited < MOVE_WAIT_MS_MAX {
        sleep_ms(SUPERVISE_MS).await;
        waited += SUPERVISE_MS;
    }
    for _ in 0..FINISH_MOVE_RUNS_MAX {
        let Some(change) = cluster.move_pending.get() else {
            return;
        };
        if cluster.move_running.get() {
            break;
        }
        cluster.move_running.set(true);
        ask_move(ctx, cluster, change).await;
    }
    if let Some((from, to)) = cluster.move_pending.get() {
        cluster.violations.borrow_mut().push(format!(
            "membership: the move n{from} -> n{to} did not finish on the healed cluster"
        ));
    }
}
