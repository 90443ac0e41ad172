//! Domain newtypes shared by the kernel. Only plain data; no behaviour beyond ordering.

/// A record's position in a log: 0 for the first record ever appended, +1 per record.
/// Offsets are never reused, even after retention removes the records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Offset(pub u64);

impl std::fmt::Display for Offset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}
