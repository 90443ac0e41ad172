//! Kafka classic consumer groups: who is in a group, in which generation, and what the
//! leader assigned each member (JoinGroup, SyncGroup, Heartbeat, LeaveGroup), and the
//! generation check of an offset commit.
//!
//! A group (key: the tenant's project id, `/`, the group id) belongs to partition
//! `xxh3(key) % partition_count` ([`group_partition`]); its membership is leader-only
//! state of that partition's owning shard, like leases (docs/engine.md, D4): not logged,
//! lost on a restart or a change of leader (the state is dropped when the partition's
//! Raft term moves), after which clients simply rejoin. Every call runs on that shard as
//! a partition request (`crate::requests`), so a cluster forwards it to the partition's
//! leader like any other. Committed offsets are durable instead: engine commands on the
//! same partition (`sluice_core::engine::offsets`).
//!
//! The protocol, as Kafka's group coordinator runs it, reduced:
//! - A join of a new member, or of the leader, or with changed metadata starts a
//!   rebalance (`Preparing`): every member must join again. The joins wait until every
//!   known member has, or until the rebalance deadline (the largest rebalance timeout of
//!   the members, cut to [`JOIN_WAIT_MS_MAX`]); members that did not rejoin by then are
//!   removed. Completing bumps the generation, picks the protocol every member supports
//!   (in the leader's order of preference) and answers the leader every member's
//!   metadata (`AwaitingSync`).
//! - The leader's SyncGroup stores the assignments (`Stable`); the other members' syncs
//!   wait for it (at most [`SYNC_WAIT_MS_MAX`]) and answer their own.
//! - Heartbeats answer `RebalanceInProgress` while a rebalance waits for joins, so the
//!   members rejoin.
//! - Sessions: every call of a member moves its deadline to now plus its session
//!   timeout. Members whose deadline passed are removed at the next call on the group
//!   (no background task; a member inside a waiting call is not expired), which starts a
//!   rebalance.
//!
//! Not kept: static membership (`group.instance.id` is accepted and ignored), the
//! initial rebalance delay (a join to an empty group completes at once), KIP-848.
//!
//! Time is the host's (queue time), passed in; waits use the host's timer. Bounds:
//! [`GROUPS_PER_PARTITION_MAX`], [`MEMBERS_PER_GROUP_MAX`],
//! [`MEMBER_METADATA_BYTES_MAX`], [`GROUP_METADATA_BYTES_MAX`],
//! [`GROUP_ASSIGNMENT_BYTES_MAX`], the waits under the forwarding timeout.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::task::{Poll, Waker};

use serde::{Deserialize, Serialize};

use crate::forward::FORWARD_TIMEOUT_MS;

mod group;

pub use group::Group;

/// Groups with members one partition's leader keeps.
pub const GROUPS_PER_PARTITION_MAX: usize = 10_000;
/// Members one group may have (Kafka's `GROUP_MAX_SIZE_REACHED` beyond).
pub const MEMBERS_PER_GROUP_MAX: usize = 1_000;
/// Bytes of one member's protocol names and metadata.
pub const MEMBER_METADATA_BYTES_MAX: usize = 64 * 1024;
/// Bytes of all members' protocol metadata in one group: the leader's JoinGroup answer
/// carries it, so it stays well inside a forwarded answer.
pub const GROUP_METADATA_BYTES_MAX: usize = 2 << 20;
/// Bytes of all assignments the leader's SyncGroup hands out.
pub const GROUP_ASSIGNMENT_BYTES_MAX: usize = 2 << 20;
/// The longest a rebalance waits for members to rejoin, whatever their rebalance
/// timeout: a JoinGroup forwarded to the partition's leader is answered within the
/// forwarding timeout.
pub const JOIN_WAIT_MS_MAX: u64 = 8_000;
/// The longest a SyncGroup waits for the leader's assignment.
pub const SYNC_WAIT_MS_MAX: u64 = 8_000;
/// Session timeouts a member may ask (Kafka's broker defaults).
pub const SESSION_TIMEOUT_MS_MIN: u64 = 6_000;
pub const SESSION_TIMEOUT_MS_MAX: u64 = 1_800_000;
/// Bytes of a group's key (tenant and group id).
pub const GROUP_KEY_BYTES_MAX: usize = sluice_core::limits::COMMIT_GROUP_BYTES_MAX;
/// Wakers one partition keeps for waiting calls; past it they are all woken (a waiting
/// call looks at the state again and waits anew), so the list never grows unbounded.
const WAITERS_MAX: usize = 4 * MEMBERS_PER_GROUP_MAX;

const _: () = assert!(JOIN_WAIT_MS_MAX < FORWARD_TIMEOUT_MS);
const _: () = assert!(SYNC_WAIT_MS_MAX < FORWARD_TIMEOUT_MS);
const _: () =
    assert!(GROUP_METADATA_BYTES_MAX < sluice_core::limits::CLUSTER_FRAME_BYTES_MAX as usize / 4);
const _: () =
    assert!(GROUP_ASSIGNMENT_BYTES_MAX < sluice_core::limits::CLUSTER_FRAME_BYTES_MAX as usize / 4);

/// The partition a group's key belongs to.
pub fn group_partition(key: &str, partition_count: u32) -> u32 {
    let hash = xxhash_rust::xxh3::xxh3_64(key.as_bytes());
    u32::try_from(hash % u64::from(partition_count)).expect("below a u32")
}

/// A group's key: the tenant's project id and the group id.
pub fn group_key(tenant: &str, group: &str) -> String {
    format!("{tenant}/{group}")
}

/// Why a group call was refused (each a Kafka error code, mapped by the adapter).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum GroupError {
    UnknownMember,
    IllegalGeneration,
    RebalanceInProgress,
    /// No protocol type, no protocols, another protocol type than the group's, or no
    /// protocol every member supports.
    InconsistentProtocol,
    InvalidSessionTimeout,
    /// [`MEMBERS_PER_GROUP_MAX`].
    GroupFull,
    /// [`GROUPS_PER_PARTITION_MAX`]: retriable, groups go as their members leave.
    TooManyGroups,
    /// A metadata or assignment bound.
    TooLarge,
    /// An empty or overlong group id.
    InvalidGroupId,
}

/// A JoinGroup.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Join {
    /// Empty for a new member.
    pub member_id: String,
    pub client_id: String,
    pub session_timeout_ms: u64,
    pub rebalance_timeout_ms: u64,
    pub protocol_type: String,
    /// Protocol names and their metadata, in the member's order of preference.
    pub protocols: Vec<(String, Vec<u8>)>,
}

/// A completed join.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Joined {
    pub generation: i32,
    pub protocol_type: String,
    pub protocol_name: String,
    pub leader: String,
    pub member_id: String,
    /// For the leader, every member with its metadata of the chosen protocol; empty for
    /// the others.
    pub members: Vec<(String, Vec<u8>)>,
}

/// A group as DescribeGroups shows it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupView {
    /// Kafka's state name: `Empty`, `PreparingRebalance`, `CompletingRebalance`,
    /// `Stable`, or `Dead` for a group without members.
    pub state: String,
    pub protocol_type: String,
    pub protocol_name: String,
    /// Member id, client id, metadata of the chosen protocol, assignment.
    pub members: Vec<(String, String, Vec<u8>, Vec<u8>)>,
}

/// The groups of one partition, as its leader keeps them.
#[derive(Default)]
struct PartitionGroups {
    /// The Raft term they were built in: a new term (a change of leader) starts empty.
    term: u64,
    groups: HashMap<String, Group>,
    next_member: u64,
}

/// Every partition's groups on one shard, and the wakers of calls waiting on them.
#[derive(Default)]
pub struct Coordinator {
    partitions: RefCell<HashMap<u32, PartitionGroups>>,
    changes: Cell<u64>,
    waiters: RefCell<Vec<Waker>>,
}

impl Coordinator {
    /// Runs `f` on the partition's groups, dropped first if the term moved.
    fn with<T>(&self, partition: u32, term: u64, f: impl FnOnce(&mut PartitionGroups) -> T) -> T {
        let mut partitions = self.partitions.borrow_mut();
        let groups = partitions.entry(partition).or_default();
        if groups.term != term {
            *groups = PartitionGroups {
                term,
                ..PartitionGroups::default()
            };
        }
        f(groups)
    }

    fn notify(&self) {
        self.changes.set(self.changes.get() + 1);
        for waker in self.waiters.borrow_mut().drain(..) {
            waker.wake();
        }
    }

    /// Resolves once any group of the shard changed after `seen`.
    async fn changed(&self, seen: u64) {
        std::future::poll_fn(|context| {
            if self.changes.get() != seen {
                return Poll::Ready(());
            }
            let mut waiters = self.waiters.borrow_mut();
            if waiters.len() >= WAITERS_MAX {
                for waker in waiters.drain(..) {
                    waker.wake();
                }
            }
            waiters.push(context.waker().clone());
            Poll::Pending
        })
        .await
    }

    /// Runs `f` on `key`'s group (which exists only with members), removing it once it
    /// has none, and wakes the waiting calls.
    fn on_group<T>(
        &self,
        partition: u32,
        term: u64,
        key: &str,
        f: impl FnOnce(Option<&mut Group>) -> T,
    ) -> T {
        let (answer, changed) = self.with(partition, term, |groups| {
            let before = groups.groups.get(key).map(|group| group.version);
            let answer = f(groups.groups.get_mut(key));
            if groups.groups.get(key).is_some_and(|g| g.members.is_empty()) {
                groups.groups.remove(key);
            }
            let after = groups.groups.get(key).map(|group| group.version);
            (answer, before != after)
        });
        if changed {
            self.notify();
        }
        answer
    }

    /// Marks a member as inside a waiting call (or no longer).
    fn set_waiting(&self, partition: u32, term: u64, key: &str, member_id: &str, on: bool) {
        self.with(partition, term, |groups| {
            let member = groups
                .groups
                .get_mut(key)
                .and_then(|group| group.members.get_mut(member_id));
            if let Some(member) = member {
                member.waiting = if on {
                    member.waiting + 1
                } else {
                    member.waiting.saturating_sub(1)
                };
            }
        });
    }

    /// Waits, bounded by `wait_ms` and the host's timer, until `outcome` answers for the
    /// member's group (`None`: keep waiting). A group that vanished is `UnknownMember`;
    /// at the bound the answer is `at_bound`.
    #[allow(clippy::too_many_arguments)]
    async fn wait_for<T, S: Future<Output = ()>>(
        &self,
        (partition, term): (u32, u64),
        key: &str,
        member_id: &str,
        wait_ms: u64,
        clock: &impl Fn() -> u64,
        sleep: impl Fn(u64) -> S,
        outcome: impl Fn(&mut Group, u64) -> Option<Result<T, GroupError>>,
        at_bound: GroupError,
    ) -> Result<T, GroupError> {
        let end_ms = clock().saturating_add(wait_ms);
        self.set_waiting(partition, term, key, member_id, true);
        // Bounded: each round waits for a change or for time, and `end_ms` ends it.
        let answer = loop {
            let now_ms = clock();
            let look = self.on_group(partition, term, key, |group| match group {
                None => (Some(Err(GroupError::UnknownMember)), u64::MAX),
                Some(group) => {
                    group.expire(now_ms);
                    group.try_complete(now_ms);
                    (outcome(group, now_ms), group.next_deadline_ms())
                }
            });
            match look {
                (Some(answer), _) => break answer,
                _ if now_ms >= end_ms => break Err(at_bound),
                (None, next_ms) => {
                    let seen = self.changes.get();
                    let until = end_ms.min(next_ms.max(now_ms + 1));
                    futures_lite::future::or(self.changed(seen), sleep(until - now_ms)).await;
                }
            }
        };
        self.set_waiting(partition, term, key, member_id, false);
        answer
    }

    /// A JoinGroup on `partition` (led here, in Raft term `term`): answers once the
    /// rebalance it is part of completed, at most [`JOIN_WAIT_MS_MAX`] later.
    pub async fn join<S: Future<Output = ()>>(
        &self,
        (partition, term): (u32, u64),
        key: &str,
        join: Join,
        clock: impl Fn() -> u64,
        sleep: impl Fn(u64) -> S,
    ) -> Result<Joined, GroupError> {
        if key.is_empty() || key.len() > GROUP_KEY_BYTES_MAX {
            return Err(GroupError::InvalidGroupId);
        }
        let now_ms = clock();
        let first = self.with(partition, term, |groups| {
            if !groups.groups.contains_key(key) && groups.groups.len() >= GROUPS_PER_PARTITION_MAX {
                return Err(GroupError::TooManyGroups);
            }
            let next = &mut groups.next_member;
            let group = groups
                .groups
                .entry(key.to_string())
                .or_insert_with(|| Group::new(&join.protocol_type));
            let new_id = || {
                *next += 1;
                format!("{}-{term}-{next}", join.client_id)
            };
            let generation = group.generation;
            let result = group.join(&join, new_id, now_ms);
            if group.members.is_empty() {
                groups.groups.remove(key);
            }
            result.map(|(member_id, answer)| (member_id, answer, generation))
        });
        self.notify();
        let (member_id, answer, generation) = first?;
        if let Some(answer) = answer {
            return Ok(answer);
        }
        let outcome = |group: &mut Group, _now| group.join_outcome(&member_id, generation);
        let bound = JOIN_WAIT_MS_MAX.saturating_add(1);
        let place = (partition, term);
        self.wait_for(
            place,
            key,
            &member_id,
            bound,
            &clock,
            sleep,
            outcome,
            GroupError::RebalanceInProgress,
        )
        .await
    }

    /// A SyncGroup: the member's assignment, waiting for the leader's at most
    /// [`SYNC_WAIT_MS_MAX`].
    #[allow(clippy::too_many_arguments)]
    pub async fn sync<S: Future<Output = ()>>(
        &self,
        place: (u32, u64),
        key: &str,
        member_id: &str,
        generation: i32,
        assignments: Vec<(String, Vec<u8>)>,
        clock: impl Fn() -> u64,
        sleep: impl Fn(u64) -> S,
    ) -> Result<Vec<u8>, GroupError> {
        let now_ms = clock();
        let first = self.on_group(place.0, place.1, key, |group| match group {
            None => Err(GroupError::UnknownMember),
            Some(group) => group.sync(member_id, generation, &assignments, now_ms),
        })?;
        if let Some(assignment) = first {
            return Ok(assignment);
        }
        let outcome = |group: &mut Group, _now| group.sync_outcome(member_id, generation);
        self.wait_for(
            place,
            key,
            member_id,
            SYNC_WAIT_MS_MAX,
            &clock,
            sleep,
            outcome,
            GroupError::RebalanceInProgress,
        )
        .await
    }

    /// Runs a call that does not wait on `key`'s group; a group without members answers
    /// `UnknownMember`.
    pub fn call<T>(
        &self,
        (partition, term): (u32, u64),
        key: &str,
        f: impl FnOnce(&mut Group) -> Result<T, GroupError>,
    ) -> Result<T, GroupError> {
        self.on_group(partition, term, key, |group| match group {
            None => Err(GroupError::UnknownMember),
            Some(group) => f(group),
        })
    }

    /// The group as DescribeGroups shows it (`Dead` without members).
    pub fn describe(&self, (partition, term): (u32, u64), key: &str, now_ms: u64) -> GroupView {
        self.on_group(partition, term, key, |group| match group {
            None => GroupView {
                state: "Dead".to_string(),
                ..GroupView::default()
            },
            Some(group) => {
                group.expire(now_ms);
                group.try_complete(now_ms);
                group.view()
            }
        })
    }

    /// The partition's groups whose key starts with `prefix`: key, protocol type, state.
    pub fn list(
        &self,
        (partition, term): (u32, u64),
        prefix: &str,
    ) -> Vec<(String, String, String)> {
        self.with(partition, term, |groups| {
            let mut listed: Vec<(String, String, String)> = groups
                .groups
                .iter()
                .filter(|(key, _)| key.starts_with(prefix))
                .map(|(key, group)| {
                    let state = group.phase.name().to_string();
                    (key.clone(), group.protocol_type.clone(), state)
                })
                .collect();
            listed.sort();
            listed
        })
    }
}

#[cfg(test)]
mod tests;
