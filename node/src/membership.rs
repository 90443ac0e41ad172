//! Cluster membership changes, node by node: add a node's replicas to every partition's
//! group, remove them, or move them from one node to another (online migration), while
//! the partitions keep serving.
//!
//! Each partition changes on its own, at its leader, one step at a time
//! (`Engine::change_membership`, forwarded there like any partition request):
//!
//! - **add** node `n`: `n` joins as a learner, copies the log, and once it holds
//!   everything committed it is promoted to voter;
//! - **move** from `a` to `b`: `b` joins as a learner and catches up, then one joint
//!   change promotes `b` and removes `a` (raft-rs joint consensus: while joint, every
//!   decision needs a majority of the old voters and of the new, so no moment exists in
//!   which two disjoint majorities could decide);
//! - **remove** `n`: `n` leaves the group.
//!
//! A node that leads a partition it must leave hands the lead over first
//! (`Engine::transfer_lead`). Every step is re-read from the leader before the next, so a
//! change cut short (a failover, a timeout, a restart of the caller) is finished by
//! running it again. A partition that does not get there within
//! [`MEMBERSHIP_PARTITION_MS_MAX`] fails the change, which names it.

use sluice_core::engine::membership::{MembershipStep, Refusal};
use sluice_core::engine::types::EngineError;

use crate::requests::{ChangeMembership, PartitionMembership, ReadMembership, TransferLead};
use crate::{Host, NodeError, NodeShard};

/// Longest one partition's part of a change may take (a learner copying a long log
/// included) before the change fails.
pub const MEMBERSHIP_PARTITION_MS_MAX: u64 = 120_000;
/// Pause between two looks at a partition whose change cannot go on yet (no leader, a
/// learner still catching up, another change under way).
pub const MEMBERSHIP_RETRY_MS: u64 = 100;

/// A change of which nodes hold the partitions' replicas.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ClusterChange {
    /// Every partition gets a voting replica on this node.
    AddNode(u64),
    /// No partition keeps a replica on this node.
    RemoveNode(u64),
    /// Every partition's replica on `from` moves to `to`.
    Move { from: u64, to: u64 },
}

impl ClusterChange {
    /// The node that gains replicas and the node that loses them.
    fn ends(self) -> (Option<u64>, Option<u64>) {
        match self {
            ClusterChange::AddNode(id) => (Some(id), None),
            ClusterChange::RemoveNode(id) => (None, Some(id)),
            ClusterChange::Move { from, to } => (Some(to), Some(from)),
        }
    }
}

/// What to do next for one partition, from its leader's view.
#[derive(Debug, PartialEq, Eq)]
enum Next {
    Done,
    /// Wait and look again.
    Wait,
    Transfer(u64),
    Change(Vec<MembershipStep>),
}

fn next_step(view: &PartitionMembership, gain: Option<u64>, lose: Option<u64>) -> Next {
    let membership = &view.membership;
    if !view.at_leader || membership.joint() {
        return Next::Wait;
    }
    let gained = gain.is_none_or(|id| membership.voters.contains(&id));
    let lost = lose.is_none_or(|id| !membership.holds(id));
    if gained && lost {
        return Next::Done;
    }
    if let Some(id) = gain.filter(|id| !membership.holds(*id)) {
        return Next::Change(vec![MembershipStep::AddLearner(id)]);
    }
    let promote = gain.filter(|id| membership.learners.contains(id));
    if promote.is_some_and(|id| !view.caught_up.contains(&id)) {
        return Next::Wait;
    }
    let remove = lose.filter(|id| membership.holds(*id));
    if let Some(leaving) = remove.filter(|id| view.leader == Some(*id)) {
        // Hand the lead to a voter that stays: the gaining node once it votes, else any.
        let successor = membership
            .voters
            .iter()
            .copied()
            .filter(|id| *id != leaving)
            .max_by_key(|id| Some(*id) == gain);
        return match successor {
            Some(id) => Next::Transfer(id),
            None => Next::Wait,
        };
    }
    let mut steps = Vec::new();
    steps.extend(promote.map(MembershipStep::Promote));
    steps.extend(remove.map(MembershipStep::Remove));
    Next::Change(steps)
}

/// Whether a failed step is worth another look (a failover, a change under way, a
/// learner behind, a leader that must hand over first).
fn retriable(error: &NodeError) -> bool {
    matches!(
        error,
        NodeError::Unavailable(_)
            | NodeError::Engine(
                EngineError::NotLeader { .. }
                    | EngineError::Busy
                    | EngineError::MembershipBusy
                    | EngineError::InvalidMembership(Refusal::Behind | Refusal::RemoveLeader)
            )
    )
}

impl<H: Host> NodeShard<H> {
    /// Every partition's configuration, read at its leader (a partition whose leader
    /// cannot be asked answers from this node's replica, marked as such).
    pub(crate) async fn membership_views(&self) -> Vec<Result<PartitionMembership, NodeError>> {
        let mut out = Vec::new();
        for partition in 0..self.config().partition_count {
            let read = match self.call(ReadMembership { partition }).await {
                Ok(view) => Ok(view),
                Err(_) => self.call_local(ReadMembership { partition }).await,
            };
            out.push(read);
        }
        out
    }

    /// Every partition's configuration as this node's replica holds it.
    pub(crate) async fn local_membership_views(
        &self,
    ) -> Vec<Result<PartitionMembership, NodeError>> {
        let mut out = Vec::new();
        for partition in 0..self.config().partition_count {
            out.push(self.call_local(ReadMembership { partition }).await);
        }
        out
    }

    /// Applies `change` to every partition in turn (see the module documentation) and
    /// answers every partition's configuration afterwards.
    pub(crate) async fn run_cluster_change(
        &self,
        change: ClusterChange,
    ) -> Result<Vec<PartitionMembership>, NodeError> {
        let nodes = self.host().cluster_nodes();
        let (gain, lose) = change.ends();
        let refuse = |why| Err(NodeError::Engine(EngineError::InvalidMembership(why)));
        if [gain, lose].iter().flatten().any(|id| !nodes.contains(id)) {
            return refuse(Refusal::UnknownNode);
        }
        if gain.is_some() && gain == lose {
            return refuse(Refusal::SameNode);
        }
        let mut views = Vec::new();
        for partition in 0..self.config().partition_count {
            views.push(self.change_partition(partition, gain, lose).await?);
        }
        Ok(views)
    }

    async fn change_partition(
        &self,
        partition: u32,
        gain: Option<u64>,
        lose: Option<u64>,
    ) -> Result<PartitionMembership, NodeError> {
        let deadline = self.host().now_ms() + MEMBERSHIP_PARTITION_MS_MAX;
        let mut last_error = None;
        while self.host().now_ms() < deadline && !self.host().stopping() {
            let view = match self.call(ReadMembership { partition }).await {
                Ok(view) => view,
                Err(error) if retriable(&error) => {
                    last_error = Some(error);
                    self.host().sleep_ms(MEMBERSHIP_RETRY_MS).await;
                    continue;
                }
                Err(error) => return Err(error),
            };
            let outcome = match next_step(&view, gain, lose) {
                Next::Done => return Ok(view),
                Next::Wait => Ok(()),
                Next::Transfer(to) => self.call(TransferLead { partition, to }).await.map(|_| ()),
                Next::Change(steps) => self
                    .call(ChangeMembership { partition, steps })
                    .await
                    .map(|_| ()),
            };
            match outcome {
                // A change applied: look again at once for the next step.
                Ok(()) if matches!(next_step(&view, gain, lose), Next::Change(_)) => continue,
                Ok(()) => {}
                Err(error) if retriable(&error) => last_error = Some(error),
                Err(error) => return Err(error),
            }
            self.host().sleep_ms(MEMBERSHIP_RETRY_MS).await;
        }
        Err(last_error.unwrap_or(NodeError::Unavailable(
            "a partition's membership change did not finish in time",
        )))
    }
}

#[cfg(test)]
mod tests {
    use sluice_core::engine::membership::Membership;

    use super::*;

    fn view(
        leader: u64,
        voters: &[u64],
        learners: &[u64],
        caught_up: &[u64],
    ) -> PartitionMembership {
        PartitionMembership {
            partition: 0,
            leader: Some(leader),
            at_leader: true,
            membership: Membership {
                voters: voters.to_vec(),
                learners: learners.to_vec(),
                outgoing: Vec::new(),
            },
            caught_up: caught_up.to_vec(),
            lag: Vec::new(),
        }
    }

    #[test]
    fn a_move_adds_a_learner_waits_for_it_then_swaps_in_one_joint_step() {
        let (gain, lose) = ClusterChange::Move { from: 1, to: 4 }.ends();
        assert_eq!(
            next_step(&view(2, &[1, 2, 3], &[], &[]), gain, lose),
            Next::Change(vec![MembershipStep::AddLearner(4)])
        );
        assert_eq!(
            next_step(&view(2, &[1, 2, 3], &[4], &[]), gain, lose),
            Next::Wait
        );
        assert_eq!(
            next_step(&view(2, &[1, 2, 3], &[4], &[4]), gain, lose),
            Next::Change(vec![MembershipStep::Promote(4), MembershipStep::Remove(1)])
        );
        // The leaving node leads: it hands over first, to a voter that stays.
        assert_eq!(
            next_step(&view(1, &[1, 2, 3], &[4], &[4]), gain, lose),
            Next::Transfer(3)
        );
        assert_eq!(
            next_step(&view(2, &[2, 3, 4], &[], &[]), gain, lose),
            Next::Done
        );
        let mut joint = view(2, &[2, 3, 4], &[], &[]);
        joint.membership.outgoing = vec![1, 2, 3];
        assert_eq!(next_step(&joint, gain, lose), Next::Wait);
    }

    #[test]
    fn add_and_remove_take_one_side_each() {
        let (gain, lose) = ClusterChange::AddNode(4).ends();
        assert_eq!(
            next_step(&view(1, &[1, 2, 3], &[4], &[4]), gain, lose),
            Next::Change(vec![MembershipStep::Promote(4)])
        );
        assert_eq!(
            next_step(&view(1, &[1, 2, 3, 4], &[], &[]), gain, lose),
            Next::Done
        );
        let (gain, lose) = ClusterChange::RemoveNode(3).ends();
        assert_eq!(
            next_step(&view(1, &[1, 2, 3], &[], &[]), gain, lose),
            Next::Change(vec![MembershipStep::Remove(3)])
        );
        assert_eq!(
            next_step(&view(3, &[1, 2, 3], &[], &[]), gain, lose),
            Next::Transfer(2)
        );
        assert_eq!(
            next_step(&view(1, &[1, 2], &[], &[]), gain, lose),
            Next::Done
        );
        let mut follower_view = view(1, &[1, 2, 3], &[], &[]);
        follower_view.at_leader = false;
        assert_eq!(next_step(&follower_view, gain, lose), Next::Wait);
    }
}
