//! One group's membership state machine (joins, syncs, heartbeats, leaves, session
//! expiry), with time passed in; the rules are listed in the parent module.

use super::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Phase {
    /// Waiting for every member to join, until `deadline_ms`.
    Preparing {
        deadline_ms: u64,
    },
    /// Joined; waiting for the leader's assignment.
    AwaitingSync,
    Stable,
}

impl Phase {
    pub(super) fn name(self) -> &'static str {
        match self {
            Phase::Preparing { .. } => "PreparingRebalance",
            Phase::AwaitingSync => "CompletingRebalance",
            Phase::Stable => "Stable",
        }
    }
}

#[derive(Clone, Debug)]
pub(super) struct Member {
    client_id: String,
    session_timeout_ms: u64,
    rebalance_timeout_ms: u64,
    protocols: Vec<(String, Vec<u8>)>,
    deadline_ms: u64,
    /// Joined the rebalance under way (or the last one).
    joined: bool,
    /// Calls of this member waiting now: not expired meanwhile.
    pub(super) waiting: u32,
    assignment: Vec<u8>,
}

impl Member {
    fn metadata_bytes(&self) -> usize {
        protocols_bytes(&self.protocols)
    }

    fn metadata_of(&self, protocol: &str) -> Vec<u8> {
        self.protocols
            .iter()
            .find(|(name, _)| name == protocol)
            .map(|(_, metadata)| metadata.clone())
            .unwrap_or_default()
    }

    fn supports(&self, protocol: &str) -> bool {
        self.protocols.iter().any(|(name, _)| name == protocol)
    }
}

pub(super) fn protocols_bytes(protocols: &[(String, Vec<u8>)]) -> usize {
    protocols
        .iter()
        .map(|(name, metadata)| name.len() + metadata.len())
        .sum()
}

/// One group's membership. A group exists while it has members.
#[derive(Clone, Debug)]
pub struct Group {
    pub(super) protocol_type: String,
    protocol_name: String,
    pub(super) generation: i32,
    leader: String,
    pub(super) members: BTreeMap<String, Member>,
    pub(super) phase: Phase,
    /// Moves on every change a waiting call may be waiting for (members, phase,
    /// assignments), so that only those wake the waiting calls.
    pub(super) version: u64,
}

impl Group {
    pub(super) fn new(protocol_type: &str) -> Group {
        Group {
            protocol_type: protocol_type.to_string(),
            protocol_name: String::new(),
            generation: 0,
            leader: String::new(),
            members: BTreeMap::new(),
            phase: Phase::Stable,
            version: 0,
        }
    }

    pub fn generation(&self) -> i32 {
        self.generation
    }

    pub fn member_count(&self) -> usize {
        self.members.len()
    }

    /// Removes the members whose session ended (not those inside a waiting call, nor,
    /// while a rebalance waits, those that joined it); answers whether any went.
    pub fn expire(&mut self, now_ms: u64) -> bool {
        let preparing = matches!(self.phase, Phase::Preparing { .. });
        let before = self.members.len();
        self.members.retain(|_, member| {
            member.deadline_ms > now_ms || member.waiting > 0 || (preparing && member.joined)
        });
        let gone = self.members.len() < before;
        if gone {
            self.version += 1;
            self.after_departure(now_ms);
        }
        gone
    }

    /// After members left: a rebalance for those that stay.
    fn after_departure(&mut self, now_ms: u64) {
        if self.members.is_empty() {
            self.leader.clear();
            return;
        }
        match self.phase {
            Phase::Stable | Phase::AwaitingSync => self.begin_rebalance(now_ms),
            Phase::Preparing { .. } => {
                self.try_complete(now_ms);
            }
        }
    }

    fn begin_rebalance(&mut self, now_ms: u64) {
        self.version += 1;
        let timeout_ms = self
            .members
            .values()
            .map(|member| member.rebalance_timeout_ms)
            .max()
            .unwrap_or(0)
            .min(JOIN_WAIT_MS_MAX);
        self.phase = Phase::Preparing {
            deadline_ms: now_ms.saturating_add(timeout_ms),
        };
        for member in self.members.values_mut() {
            member.joined = false;
            member.assignment.clear();
        }
    }

    /// Completes a rebalance once every member joined or its deadline passed; answers
    /// whether it did.
    pub(super) fn try_complete(&mut self, now_ms: u64) -> bool {
        let Phase::Preparing { deadline_ms } = self.phase else {
            return false;
        };
        let all = self.members.values().all(|member| member.joined);
        if !all && now_ms < deadline_ms {
            return false;
        }
        self.version += 1;
        self.members.retain(|_, member| member.joined);
        if self.members.is_empty() {
            self.leader.clear();
            self.phase = Phase::Stable;
            return true;
        }
        if !self.members.contains_key(&self.leader) {
            self.leader = self.members.keys().next().expect("not empty").clone();
        }
        let leader = &self.members[&self.leader];
        let chosen = leader
            .protocols
            .iter()
            .map(|(name, _)| name)
            .find(|name| self.members.values().all(|member| member.supports(name)));
        // A join is refused unless it shares a protocol with every member, so there is
        // always one.
        self.protocol_name = chosen.expect("the members share a protocol").clone();
        self.generation = self.generation.wrapping_add(1).max(1);
        for member in self.members.values_mut() {
            member.deadline_ms = now_ms.saturating_add(member.session_timeout_ms);
        }
        self.phase = Phase::AwaitingSync;
        true
    }

    fn joined_answer(&self, member_id: &str) -> Joined {
        let members = if member_id == self.leader {
            self.members
                .iter()
                .map(|(id, member)| (id.clone(), member.metadata_of(&self.protocol_name)))
                .collect()
        } else {
            Vec::new()
        };
        Joined {
            generation: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            leader: self.leader.clone(),
            member_id: member_id.to_string(),
            members,
        }
    }

    /// The first step of a join: validates, adds or updates the member, and starts or
    /// completes a rebalance. Answers the member id and, when the member need not wait,
    /// its answer.
    pub fn join(
        &mut self,
        join: &Join,
        new_member_id: impl FnOnce() -> String,
        now_ms: u64,
    ) -> Result<(String, Option<Joined>), GroupError> {
        self.expire(now_ms);
        let session = join.session_timeout_ms;
        if !(SESSION_TIMEOUT_MS_MIN..=SESSION_TIMEOUT_MS_MAX).contains(&session) {
            return Err(GroupError::InvalidSessionTimeout);
        }
        let me = join.member_id.as_str();
        let others = || self.members.iter().filter(move |(other, _)| *other != me);
        let shares = join
            .protocols
            .iter()
            .any(|(name, _)| others().all(|(_, member)| member.supports(name)));
        let same_type = self.members.is_empty() || join.protocol_type == self.protocol_type;
        if join.protocol_type.is_empty() || join.protocols.is_empty() || !same_type || !shares {
            return Err(GroupError::InconsistentProtocol);
        }
        let bytes = protocols_bytes(&join.protocols);
        let others_bytes: usize = others().map(|(_, member)| member.metadata_bytes()).sum();
        if bytes > MEMBER_METADATA_BYTES_MAX || others_bytes + bytes > GROUP_METADATA_BYTES_MAX {
            return Err(GroupError::TooLarge);
        }
        let member_id = if join.member_id.is_empty() {
            if self.members.len() >= MEMBERS_PER_GROUP_MAX {
                return Err(GroupError::GroupFull);
            }
            new_member_id()
        } else if self.members.contains_key(&join.member_id) {
            join.member_id.clone()
        } else {
            return Err(GroupError::UnknownMember);
        };
        if self.members.is_empty() {
            self.protocol_type = join.protocol_type.clone();
        }
        let deadline_ms = now_ms.saturating_add(session);
        self.version += 1;
        let previous = self.members.insert(
            member_id.clone(),
            Member {
                client_id: join.client_id.clone(),
                session_timeout_ms: session,
                rebalance_timeout_ms: join.rebalance_timeout_ms,
                protocols: join.protocols.clone(),
                deadline_ms,
                joined: true,
                waiting: 0,
                assignment: Vec::new(),
            },
        );
        let settled = matches!(self.phase, Phase::Stable | Phase::AwaitingSync);
        match previous {
            // A follower rejoining with what it had: nothing changes (Kafka's rule).
            Some(old) if settled && old.protocols == join.protocols && member_id != self.leader => {
                let member = self.members.get_mut(&member_id).expect("inserted");
                member.assignment = old.assignment;
                return Ok((member_id.clone(), Some(self.joined_answer(&member_id))));
            }
            _ => {}
        }
        if settled {
            self.begin_rebalance(now_ms);
            self.members.get_mut(&member_id).expect("inserted").joined = true;
        }
        self.try_complete(now_ms);
        Ok((member_id, None))
    }

    /// Whether a join that started waiting at `generation` is answered now, and how.
    pub(super) fn join_outcome(
        &self,
        member_id: &str,
        generation: i32,
    ) -> Option<Result<Joined, GroupError>> {
        if !self.members.contains_key(member_id) {
            return Some(Err(GroupError::UnknownMember));
        }
        (self.generation != generation).then(|| Ok(self.joined_answer(member_id)))
    }

    /// A member's call: it exists and its session moves on.
    fn touch(&mut self, member_id: &str, now_ms: u64) -> Result<(), GroupError> {
        self.expire(now_ms);
        let member = self
            .members
            .get_mut(member_id)
            .ok_or(GroupError::UnknownMember)?;
        member.deadline_ms = now_ms.saturating_add(member.session_timeout_ms);
        Ok(())
    }

    /// A heartbeat.
    pub fn heartbeat(
        &mut self,
        member_id: &str,
        generation: i32,
        now_ms: u64,
    ) -> Result<(), GroupError> {
        self.touch_in_generation(member_id, generation, now_ms)?;
        match self.phase {
            Phase::Preparing { .. } => Err(GroupError::RebalanceInProgress),
            Phase::AwaitingSync | Phase::Stable => Ok(()),
        }
    }

    /// A call of `member_id` in `generation`: the member exists (its session is renewed)
    /// and the generation is the group's.
    fn touch_in_generation(
        &mut self,
        member_id: &str,
        generation: i32,
        now_ms: u64,
    ) -> Result<(), GroupError> {
        self.touch(member_id, now_ms)?;
        if generation != self.generation {
            return Err(GroupError::IllegalGeneration);
        }
        Ok(())
    }

    /// The first step of a sync: the leader's assignments are stored; answers the
    /// member's assignment when it is known, `None` when it must wait for the leader.
    pub fn sync(
        &mut self,
        member_id: &str,
        generation: i32,
        assignments: &[(String, Vec<u8>)],
        now_ms: u64,
    ) -> Result<Option<Vec<u8>>, GroupError> {
        self.touch_in_generation(member_id, generation, now_ms)?;
        match self.phase {
            Phase::Preparing { .. } => return Err(GroupError::RebalanceInProgress),
            Phase::AwaitingSync if member_id == self.leader => {
                let bytes: usize = assignments.iter().map(|(_, a)| a.len()).sum();
                if bytes > GROUP_ASSIGNMENT_BYTES_MAX {
                    return Err(GroupError::TooLarge);
                }
                for (id, assignment) in assignments {
                    if let Some(member) = self.members.get_mut(id) {
                        member.assignment = assignment.clone();
                    }
                }
                self.phase = Phase::Stable;
                self.version += 1;
            }
            Phase::AwaitingSync => return Ok(None),
            Phase::Stable => {}
        }
        Ok(Some(self.members[member_id].assignment.clone()))
    }

    /// Whether a sync waiting in `generation` is answered now, and how.
    pub(super) fn sync_outcome(
        &self,
        member_id: &str,
        generation: i32,
    ) -> Option<Result<Vec<u8>, GroupError>> {
        let Some(member) = self.members.get(member_id) else {
            return Some(Err(GroupError::UnknownMember));
        };
        if self.generation != generation || matches!(self.phase, Phase::Preparing { .. }) {
            return Some(Err(GroupError::RebalanceInProgress));
        }
        (self.phase == Phase::Stable).then(|| Ok(member.assignment.clone()))
    }

    /// A member leaves.
    pub fn leave(&mut self, member_id: &str, now_ms: u64) -> Result<(), GroupError> {
        self.expire(now_ms);
        self.members
            .remove(member_id)
            .ok_or(GroupError::UnknownMember)?;
        self.version += 1;
        self.after_departure(now_ms);
        Ok(())
    }

    /// An offset commit's check: a member of this generation, with no rebalance under
    /// way.
    pub fn check_commit(
        &mut self,
        member_id: &str,
        generation: i32,
        now_ms: u64,
    ) -> Result<(), GroupError> {
        self.touch_in_generation(member_id, generation, now_ms)?;
        match self.phase {
            Phase::Stable => Ok(()),
            Phase::Preparing { .. } | Phase::AwaitingSync => Err(GroupError::RebalanceInProgress),
        }
    }

    pub(super) fn view(&self) -> GroupView {
        GroupView {
            state: self.phase.name().to_string(),
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            members: self
                .members
                .iter()
                .map(|(id, member)| {
                    (
                        id.clone(),
                        member.client_id.clone(),
                        member.metadata_of(&self.protocol_name),
                        member.assignment.clone(),
                    )
                })
                .collect(),
        }
    }

    /// When a waiting call must look again even if nothing changes: the rebalance
    /// deadline, or the next session to end.
    pub(super) fn next_deadline_ms(&self) -> u64 {
        let sessions = self.members.values().map(|member| member.deadline_ms);
        match self.phase {
            Phase::Preparing { deadline_ms } => deadline_ms,
            Phase::AwaitingSync | Phase::Stable => sessions.min().unwrap_or(u64::MAX),
        }
    }
}
