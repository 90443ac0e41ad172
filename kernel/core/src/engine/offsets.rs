//! Committed consumer offsets: where each consumer group (a Kafka classic group, named by
//! the node layer's key of tenant and group id) is to resume reading each queue's
//! partition, as `Command::CommitOffsets` records fold into the state. They live on the
//! partition the group's key hashes to (the node layer's rule), are replicated and kept
//! in snapshots (format 6) like every other command, and are read back at the serving
//! leader. What a group's members are and which generation they are in is the node
//! layer's leader-only state, not this.
//!
//! Bounds: `COMMITTED_GROUPS_MAX` groups, `COMMITTED_OFFSETS_PER_GROUP_MAX` offsets a
//! group and `COMMITTED_OFFSETS_MAX` in all, `COMMITTED_METADATA_BYTES_MAX` bytes of
//! metadata in all; a commit past them is refused before it is logged
//! (`InvalidConfig("committed offsets")`), and apply ignores what a forged log would add
//! beyond them. A queue's offsets go when the queue is deleted.

use std::collections::BTreeMap;

use super::command::{Command, CommittedOffset};
use super::types::{EngineError, QueueId};
use super::{Engine, Entry};
use crate::limits::{
    COMMITTED_GROUPS_MAX, COMMITTED_METADATA_BYTES_MAX, COMMITTED_OFFSETS_MAX,
    COMMITTED_OFFSETS_PER_GROUP_MAX, COMMIT_GROUP_BYTES_MAX, COMMIT_RECORD_BYTES_MAX,
    OFFSETS_PER_COMMIT_MAX, OFFSET_METADATA_BYTES_MAX,
};
use crate::storage::Storage;

/// One group's offsets: (queue, partition) to (offset, metadata).
type GroupOffsets = BTreeMap<(QueueId, u32), (u64, String)>;

/// Every group's committed offsets on one partition, with the totals the bounds check.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CommittedOffsets {
    /// Group key, then (queue, partition), then (offset, metadata).
    groups: BTreeMap<String, GroupOffsets>,
    offset_count: usize,
    metadata_bytes: usize,
}

impl CommittedOffsets {
    /// Whether `offsets` of `group` fit the bounds once applied (replacing entries it
    /// already has).
    fn fits(&self, group: &str, offsets: &[CommittedOffset]) -> bool {
        let existing = self.groups.get(group);
        if existing.is_none() && !offsets.is_empty() && self.groups.len() >= COMMITTED_GROUPS_MAX {
            return false;
        }
        let mut added = BTreeMap::new();
        for (queue, partition, _, metadata) in offsets {
            let old = existing.and_then(|entries| entries.get(&(*queue, *partition)));
            added.insert((*queue, *partition), (old.is_none(), old, metadata.len()));
        }
        let new_count = added.values().filter(|(new, _, _)| *new).count();
        let old_bytes: usize = added
            .values()
            .filter_map(|(_, old, _)| old.map(|(_, metadata)| metadata.len()))
            .sum();
        let new_bytes: usize = added.values().map(|(_, _, bytes)| *bytes).sum();
        let group_count = existing.map_or(0, BTreeMap::len) + new_count;
        group_count <= COMMITTED_OFFSETS_PER_GROUP_MAX
            && self.offset_count + new_count <= COMMITTED_OFFSETS_MAX
            && self.metadata_bytes - old_bytes.min(self.metadata_bytes) + new_bytes
                <= COMMITTED_METADATA_BYTES_MAX
    }

    /// Applies a commit: all of it when it fits the bounds, otherwise none (only a
    /// forged log holds one that does not: the engine refuses it before logging).
    /// Offsets of queues the partition does not hold are dropped.
    pub(crate) fn apply(
        &mut self,
        group: &str,
        offsets: &[CommittedOffset],
        exists: impl Fn(QueueId) -> bool,
    ) {
        let kept: Vec<&CommittedOffset> = offsets.iter().filter(|o| exists(o.0)).collect();
        if kept.is_empty() {
            return;
        }
        let kept_owned: Vec<CommittedOffset> = kept.iter().map(|o| (*o).clone()).collect();
        if !self.fits(group, &kept_owned) {
            return;
        }
        let entries = self.groups.entry(group.to_string()).or_default();
        for (queue, partition, offset, metadata) in kept_owned {
            self.metadata_bytes += metadata.len();
            match entries.insert((queue, partition), (offset, metadata)) {
                Some((_, old)) => self.metadata_bytes -= old.len(),
                None => self.offset_count += 1,
            }
        }
        self.check_totals();
    }

    /// Forgets every group's offsets of a deleted queue (and groups left without any).
    pub(crate) fn remove_queue(&mut self, queue: QueueId) {
        for entries in self.groups.values_mut() {
            let gone: Vec<(QueueId, u32)> = entries
                .range((queue, 0)..=(queue, u32::MAX))
                .map(|(key, _)| *key)
                .collect();
            for key in gone {
                let (_, metadata) = entries.remove(&key).expect("listed just now");
                self.offset_count -= 1;
                self.metadata_bytes -= metadata.len();
            }
        }
        self.groups.retain(|_, entries| !entries.is_empty());
        self.check_totals();
    }

    /// The group's committed offsets, ordered by queue and partition.
    pub fn of(&self, group: &str) -> Vec<CommittedOffset> {
        self.groups.get(group).map_or_else(Vec::new, |entries| {
            entries
                .iter()
                .map(|((queue, partition), (offset, metadata))| {
                    (*queue, *partition, *offset, metadata.clone())
                })
                .collect()
        })
    }

    /// Every group, in key order, with its offsets (a snapshot's).
    pub(crate) fn all(&self) -> impl Iterator<Item = (&String, Vec<CommittedOffset>)> + '_ {
        self.groups.keys().map(|group| (group, self.of(group)))
    }

    pub fn group_count(&self) -> usize {
        self.groups.len()
    }

    /// The totals agree with the entries (O(n): debug builds only).
    fn check_totals(&self) {
        debug_assert_eq!(
            self.offset_count,
            self.groups.values().map(BTreeMap::len).sum::<usize>()
        );
        debug_assert_eq!(
            self.metadata_bytes,
            self.groups
                .values()
                .flat_map(BTreeMap::values)
                .map(|(_, metadata)| metadata.len())
                .sum::<usize>()
        );
        assert!(
            self.groups.len() <= COMMITTED_GROUPS_MAX,
            "groups are bounded"
        );
    }
}

/// Checks a commit's own bounds (not the state's).
fn validate_commit(group: &str, offsets: &[CommittedOffset]) -> Result<(), EngineError> {
    if group.is_empty() || group.len() > COMMIT_GROUP_BYTES_MAX {
        return Err(EngineError::InvalidName);
    }
    if offsets.is_empty() {
        return Err(EngineError::EmptyBatch);
    }
    if offsets.len() > OFFSETS_PER_COMMIT_MAX {
        return Err(EngineError::BatchTooLarge {
            count: u32::try_from(offsets.len()).unwrap_or(u32::MAX),
            limit: u32::try_from(OFFSETS_PER_COMMIT_MAX).expect("small"),
        });
    }
    let mut bytes = group.len();
    for (_, _, _, metadata) in offsets {
        if metadata.len() > OFFSET_METADATA_BYTES_MAX {
            return Err(EngineError::InvalidConfig("offset metadata"));
        }
        bytes += 20 + metadata.len();
    }
    if bytes > COMMIT_RECORD_BYTES_MAX {
        return Err(EngineError::BatchBytesTooLarge {
            bytes: bytes as u64,
            limit: COMMIT_RECORD_BYTES_MAX as u64,
        });
    }
    Ok(())
}

impl<S: Storage + Clone> Engine<S> {
    /// Commits `group`'s offsets durably (answers once committed, on every replica
    /// alike). Refused whole: a queue the partition does not hold (`QueueNotFound`), a
    /// metadata string over `OFFSET_METADATA_BYTES_MAX` (`InvalidConfig("offset
    /// metadata")`), past the state's bounds (`InvalidConfig("committed offsets")`).
    pub async fn commit_offsets(
        &self,
        group: &str,
        offsets: Vec<CommittedOffset>,
        now: u64,
    ) -> Result<(), EngineError> {
        validate_commit(group, &offsets)?;
        {
            let state = self.state.borrow();
            if offsets.iter().any(|o| !state.queues.contains_key(&o.0)) {
                return Err(EngineError::QueueNotFound);
            }
            if !state.committed.fits(group, &offsets) {
                return Err(EngineError::InvalidConfig("committed offsets"));
            }
        }
        let command = Command::CommitOffsets {
            group: group.to_string(),
            offsets,
        };
        self.commit(vec![Entry::plain(command)], now).await
    }

    /// `group`'s committed offsets, read at the serving leader (everything committed
    /// before the call is in it).
    pub async fn committed_offsets(
        &self,
        group: &str,
    ) -> Result<Vec<CommittedOffset>, EngineError> {
        self.confirm_leadership().await?;
        Ok(self.state.borrow().committed.of(group))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offset(queue: u32, partition: u32, at: u64, metadata: &str) -> CommittedOffset {
        (QueueId(queue), partition, at, metadata.to_string())
    }

    /// Applies commits to an empty map where queues 1 and 2 exist; answers group "g"'s.
    fn check(commits: &[(&str, Vec<CommittedOffset>)]) -> (CommittedOffsets, Vec<CommittedOffset>) {
        let mut committed = CommittedOffsets::default();
        for (group, offsets) in commits {
            committed.apply(group, offsets, |queue| queue.0 == 1 || queue.0 == 2);
        }
        let of_g = committed.of("g");
        (committed, of_g)
    }

    #[test]
    fn later_commits_replace_earlier_and_unknown_queues_are_dropped() {
        // Goal: a commit replaces the same queue and partition's offset, keeps others,
        // and skips queues the partition does not hold; deleting a queue drops its
        // offsets and empty groups. Method: fold commits, read the group back.
        let (mut committed, got) = check(&[
            ("g", vec![offset(1, 0, 5, "a"), offset(1, 1, 7, "")]),
            ("g", vec![offset(1, 0, 9, "bb"), offset(3, 0, 1, "")]),
            ("h", vec![offset(2, 0, 1, "")]),
        ]);
        assert_eq!(got, vec![offset(1, 0, 9, "bb"), offset(1, 1, 7, "")]);
        assert_eq!(committed.metadata_bytes, 2);
        assert_eq!(committed.group_count(), 2);
        committed.remove_queue(QueueId(2));
        assert_eq!(committed.group_count(), 1, "h had only queue 2");
        committed.remove_queue(QueueId(1));
        assert_eq!(committed, CommittedOffsets::default());
    }

    #[test]
    fn a_commit_past_a_group_bound_is_ignored_whole() {
        // Goal: apply never grows a group past its bound, and takes all or nothing.
        let many: Vec<CommittedOffset> = (0..=COMMITTED_OFFSETS_PER_GROUP_MAX as u32)
            .map(|p| offset(1, p, 1, ""))
            .collect();
        let (_, got) = check(&[("g", vec![offset(2, 0, 3, "")]), ("g", many)]);
        assert_eq!(got, vec![offset(2, 0, 3, "")]);
    }
}
