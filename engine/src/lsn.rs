//! Journal positions.

use std::fmt;

/// A journal position: a byte offset in the stream of journal records,
/// counted from the first record ever written by the mirror. Segment file
/// headers are not part of this space, so the same position names the same
/// record on every member, whatever its segment boundaries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Lsn(pub u64);

impl Lsn {
    pub const ZERO: Lsn = Lsn(0);

    pub fn offset(self, bytes: u64) -> Lsn {
        Lsn(self.0 + bytes)
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}
