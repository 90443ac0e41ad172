//! TEMPORARY stand-in for the log's terms and truncation (replaced by the real ones).
use super::{AppendError, Appended, Log, LogError};
use crate::record::RecordInput;
use crate::storage::Storage;
use crate::types::Offset;

impl<S: Storage> Log<S> {
    pub fn append_with_term(
        &self,
        term: u64,
        records: &[RecordInput<'_>],
    ) -> Result<Appended, AppendError> {
        let appended = self.append(records)?;
        let mut terms = self.term_stub.borrow_mut();
        if terms.last_key_value().map(|(_, t)| *t) != Some(term) {
            terms.insert(appended.first_offset.0, term);
        }
        Ok(appended)
    }

    pub fn term_at(&self, offset: Offset) -> Option<u64> {
        if offset < self.start_offset() || offset >= self.next_offset() {
            return None;
        }
        Some(
            self.term_stub
                .borrow()
                .range(..=offset.0)
                .next_back()
                .map_or(0, |(_, t)| *t),
        )
    }

    pub fn last_term(&self) -> u64 {
        self.term_stub.borrow().last_key_value().map_or(0, |(_, t)| *t)
    }

    pub async fn truncate_from(&self, offset: Offset) -> Result<(), LogError> {
        assert_eq!(offset, self.next_offset(), "stub truncates nothing");
        Ok(())
    }
}
