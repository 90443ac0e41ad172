//! Membership of a partition's Raft group: adding a replica as a learner, promoting it,
//! moving the group onto other nodes with joint consensus, removing a replica.
//!
//! A change is proposed by the serving leader and answered once applied there. Changes
//! run one at a time: while a change is pending, or the group is in a joint
//! configuration, another is refused as [`EngineError::MembershipBusy`] (retriable).
//! Several steps at once (say, promote node 4 and remove node 1: a move) enter a joint
//! configuration in which every decision needs a majority of the old voters and of the
//! new; raft-rs leaves it automatically once the entering entry is applied, and if that
//! leader loses the lead first, the next leader leaves it on its first Raft tick
//! (`Engine::leave_joint_if_stuck`). The answer waits for the group to be out of
//! the joint configuration again.
//!
//! Rules, checked against the leader's view before anything is proposed:
//! - a new replica joins as a learner (it copies the log, takes no part in votes) and
//!   becomes a voter only once it holds everything committed, so adding it never costs
//!   the group its quorum while it catches up;
//! - the leader never removes itself: hand the lead over first ([`Engine::transfer_lead`]);
//! - a change never leaves the group without a voter.
//!
//! A replica joining an existing group starts with the group's *initial* voters as its
//! configuration (the voters every replica was created with) and an empty log; the
//! leader then sends the log from its start, and applying its membership entries leads it
//! through every configuration the group went through, up to the current one.

use std::collections::BTreeSet;

use raft::prelude::{ConfChangeSingle, ConfChangeTransition, ConfChangeType, ConfChangeV2};
use raft::StateRole;

use super::replication::Proposal;
use super::types::EngineError;
use super::Engine;
use crate::storage::Storage;
use crate::types::Offset;

/// One step of a membership change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum MembershipStep {
    /// Add a replica that copies the log but does not vote.
    AddLearner(u64),
    /// Make a learner that holds everything committed a voter.
    Promote(u64),
    /// Remove a voter or a learner (never the leader itself).
    Remove(u64),
}

/// Why a membership change was refused before it was proposed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Refusal {
    NoSteps,
    ZeroId,
    Repeated,
    AlreadyMember,
    NotLearner,
    Behind,
    RemoveLeader,
    NotMember,
    NoVoters,
    /// The node layer: the node is not one of the cluster's (`--peers`), or there is no
    /// cluster.
    UnknownNode,
    /// The node layer: a move from a node to itself.
    SameNode,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Refusal::NoSteps => "a change needs at least one step",
            Refusal::ZeroId => "replica id 0 is not a replica",
            Refusal::Repeated => "a change names each replica at most once",
            Refusal::AlreadyMember => "the replica is already in the group",
            Refusal::NotLearner => "only a learner can be promoted",
            Refusal::Behind => "the learner does not hold the committed log yet",
            Refusal::RemoveLeader => "the leader cannot remove itself; transfer the lead first",
            Refusal::NotMember => "the replica is not in the group",
            Refusal::NoVoters => "a change cannot remove every voter",
            Refusal::UnknownNode => "the node is not one of the cluster's nodes (--peers)",
            Refusal::SameNode => "a move needs two different nodes",
        })
    }
}

/// A group's configuration as one replica sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Membership {
    /// The voters (in a joint configuration: the incoming ones).
    pub voters: Vec<u64>,
    /// Replicas that copy the log without voting.
    pub learners: Vec<u64>,
    /// In a joint configuration, the outgoing voters; empty otherwise.
    pub outgoing: Vec<u64>,
}

impl Membership {
    /// Whether `id` holds a replica of the group in this configuration.
    pub fn holds(&self, id: u64) -> bool {
        self.voters.contains(&id) || self.learners.contains(&id) || self.outgoing.contains(&id)
    }

    /// Whether the configuration is joint (a move is under way).
    pub fn joint(&self) -> bool {
        !self.outgoing.is_empty()
    }
}

impl<S: Storage + Clone> Engine<S> {
    /// The group's configuration as this replica applied it.
    pub fn membership(&self) -> Membership {
        let conf = self.replica.node.borrow().raft.prs().conf().to_conf_state();
        let sorted = |mut ids: Vec<u64>| {
            ids.sort_unstable();
            ids.dedup();
            ids
        };
        let mut learners = conf.learners.clone();
        learners.extend_from_slice(&conf.learners_next);
        Membership {
            voters: sorted(conf.voters.clone()),
            learners: sorted(learners),
            outgoing: sorted(conf.voters_outgoing.clone()),
        }
    }

    /// At the leader: whether replica `id` holds every entry committed so far and
    /// answered within the last election timeout (so promoting it costs no availability).
    pub fn caught_up(&self, id: u64) -> bool {
        let node = self.replica.node.borrow();
        let raft = &node.raft;
        raft.state == StateRole::Leader
            && raft.prs().get(id).is_some_and(|progress| {
                progress.recent_active && progress.matched >= raft.raft_log.committed
            })
    }

    /// At the leader: each replica of the configuration (voters and learners, this one
    /// included) with how many log entries it lacks of the leader's last; empty elsewhere.
    pub fn replica_lag(&self) -> Vec<(u64, u64)> {
        let node = self.replica.node.borrow();
        let raft = &node.raft;
        if raft.state != StateRole::Leader {
            return Vec::new();
        }
        let last = raft.raft_log.last_index();
        let mut lag: Vec<(u64, u64)> = raft
            .prs()
            .iter()
            .map(|(id, progress)| (*id, last.saturating_sub(progress.matched)))
            .collect();
        lag.sort_unstable();
        lag
    }

    /// Proposes `steps` as one change and waits until it is applied here and the group is
    /// out of any joint configuration. Only the serving leader takes changes; see the
    /// module documentation for the rules.
    pub async fn change_membership(
        &self,
        steps: &[MembershipStep],
    ) -> Result<Membership, EngineError> {
        if let Some(error) = self.replica.failed.borrow().clone() {
            return Err(error);
        }
        if !self.replica.serving.get() {
            return Err(self.replica.not_leader());
        }
        self.check_steps(steps)?;
        let change = conf_change(steps);
        let proposal = {
            let mut node = self.replica.node.borrow_mut();
            let before = node.raft.raft_log.last_index();
            if node.propose_conf_change(Vec::new(), change).is_err() {
                return Err(self.replica.not_leader());
            }
            let last_index = node.raft.raft_log.last_index();
            if last_index == before {
                return Err(self.replica.not_leader());
            }
            Proposal {
                first: Offset(last_index - 1),
                last_index,
                term: node.raft.term,
                generation: self.replica.generation.get(),
            }
        };
        self.wait_until(&proposal, || {
            if let Err(error) = self.applied_outcome(&proposal)? {
                return Some(Err(error));
            }
            // Entered: wait until the joint configuration (if any) is left again.
            (!self.membership().joint()).then_some(Ok(()))
        })
        .await?;
        Ok(self.membership())
    }

    fn check_steps(&self, steps: &[MembershipStep]) -> Result<(), EngineError> {
        let invalid = |why: Refusal| Err(EngineError::InvalidMembership(why));
        if steps.is_empty() {
            return invalid(Refusal::NoSteps);
        }
        let current = self.membership();
        {
            let node = self.replica.node.borrow();
            if current.joint() || node.raft.has_pending_conf() {
                return Err(EngineError::MembershipBusy);
            }
        }
        let mut touched = BTreeSet::new();
        let mut voters: BTreeSet<u64> = current.voters.iter().copied().collect();
        for step in steps {
            let id = match *step {
                MembershipStep::AddLearner(id)
                | MembershipStep::Promote(id)
                | MembershipStep::Remove(id) => id,
            };
            if id == 0 {
                return invalid(Refusal::ZeroId);
            }
            if !touched.insert(id) {
                return invalid(Refusal::Repeated);
            }
            match *step {
                MembershipStep::AddLearner(_) if current.holds(id) => {
                    return invalid(Refusal::AlreadyMember);
                }
                MembershipStep::AddLearner(_) => {}
                MembershipStep::Promote(_) if !current.learners.contains(&id) => {
                    return invalid(Refusal::NotLearner);
                }
                MembershipStep::Promote(_) if !self.caught_up(id) => {
                    return invalid(Refusal::Behind);
                }
                MembershipStep::Promote(_) => {
                    voters.insert(id);
                }
                MembershipStep::Remove(_) if id == self.replica.id => {
                    return invalid(Refusal::RemoveLeader);
                }
                MembershipStep::Remove(_) if !current.holds(id) => {
                    return invalid(Refusal::NotMember);
                }
                MembershipStep::Remove(_) => {
                    voters.remove(&id);
                }
            }
        }
        if voters.is_empty() {
            return invalid(Refusal::NoVoters);
        }
        Ok(())
    }

    /// Leaves a joint configuration whose automatic exit was lost with its leader: the
    /// serving leader proposes the empty change once nothing else is pending. Called on
    /// every Raft tick; answers whether it proposed.
    pub(super) fn leave_joint_if_stuck(&self) -> bool {
        if !self.replica.serving.get() || !self.membership().joint() {
            return false;
        }
        let mut node = self.replica.node.borrow_mut();
        if node.raft.has_pending_conf() {
            return false;
        }
        node.propose_conf_change(Vec::new(), ConfChangeV2::default())
            .is_ok()
    }
}

/// The raft-rs change for `steps`: one step is a simple change, several enter a joint
/// configuration that raft-rs leaves by itself.
fn conf_change(steps: &[MembershipStep]) -> ConfChangeV2 {
    let mut change = ConfChangeV2::default();
    let singles: Vec<ConfChangeSingle> = steps
        .iter()
        .map(|step| {
            let (kind, id) = match *step {
                MembershipStep::AddLearner(id) => (ConfChangeType::AddLearnerNode, id),
                MembershipStep::Promote(id) => (ConfChangeType::AddNode, id),
                MembershipStep::Remove(id) => (ConfChangeType::RemoveNode, id),
            };
            let mut single = ConfChangeSingle::default();
            single.set_change_type(kind);
            single.node_id = id;
            single
        })
        .collect();
    change.set_changes(singles.into());
    change.set_transition(ConfChangeTransition::Auto);
    change
}
