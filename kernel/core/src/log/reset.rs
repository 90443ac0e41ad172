//! Starting over: replacing the whole log by an empty one whose first record gets a given
//! offset. How a replica installs a Raft snapshot (docs/log.md, "Starting over"); it must
//! not run beside an append, a flush or a truncation (the replica's Ready loop, which
//! alone writes its log, runs it).

use super::files::{remove_if_present, TRUNCATION_NAME};
use super::{Log, LogError};
use crate::segment::{free_name, index_name, parse_name, segment_name, FileKind};
use crate::storage::Storage;
use crate::types::Offset;

impl<S: Storage> Log<S> {
    /// Removes every segment and index file (those this log knows and any other the
    /// storage lists), every recycled file (the new log's offsets may repeat theirs, so
    /// their batches could pass for data) and any truncation record, then makes the log
    /// empty with
    /// `next_offset == start`: the next append creates the segment based at `start`, and
    /// reopening the directory finds a log that starts there. Staged records are
    /// dropped. Not durable as a whole: the caller keeps its own record of what it is
    /// replacing (a crash midway leaves some of the old segments).
    pub async fn reset_to(&self, start: Offset) -> Result<(), LogError> {
        {
            let state = self.state.borrow();
            assert!(!state.flushing, "a log reset beside a flush");
            assert!(!state.truncating, "a log reset beside a truncation");
        }
        let io = |(file, error)| LogError::Io { file, error };
        let listed = self.storage.list().await.map_err(|error| LogError::Io {
            file: ".".to_string(),
            error,
        })?;
        let known: Vec<Offset> = self
            .state
            .borrow()
            .segments
            .iter()
            .map(|s| s.base_offset)
            .collect();
        let listed_free: Vec<Offset> = listed
            .iter()
            .filter_map(|name| parse_name(name).filter(|(_, kind)| *kind == FileKind::Free))
            .map(|(base, _)| base)
            .collect();
        // Bounded by the files listed.
        for base in listed_free {
            remove_if_present(&self.storage, &free_name(base))
                .await
                .map_err(io)?;
        }
        self.state.borrow_mut().free.clear();
        let listed_bases = listed
            .iter()
            .filter_map(|name| parse_name(name).filter(|(_, kind)| *kind != FileKind::Free))
            .map(|(base, _)| base);
        let mut bases: Vec<Offset> = known.into_iter().chain(listed_bases).collect();
        bases.sort_unstable();
        bases.dedup();
        // Bounded by the segments listed.
        for base in bases {
            remove_if_present(&self.storage, &index_name(base))
                .await
                .map_err(io)?;
            remove_if_present(&self.storage, &segment_name(base))
                .await
                .map_err(io)?;
        }
        remove_if_present(&self.storage, TRUNCATION_NAME)
            .await
            .map_err(io)?;
        let mut state = self.state.borrow_mut();
        state.segments.clear();
        state.cache.clear();
        state.next_offset = start;
        state.durable_offset = start;
        state.staged_bytes = 0;
        state.term_before_start = None;
        assert_eq!(
            state.start_offset(),
            start,
            "an empty log starts at its next offset"
        );
        Ok(())
    }
}
