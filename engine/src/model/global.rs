//! [`GlobalName`]: a global's name, kept inline.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Deref;

use super::key::{validate_global_name, MAX_GLOBAL_NAME};
use super::ModelError;

/// A global's name without the `^`: 1 to 31 ASCII characters (see
/// [`validate_global_name`]). It lives inside the [`Key`](super::Key), so
/// building or decoding a key allocates nothing for it. It reads as a
/// `&str` and compares, orders and hashes like one.
///
/// Invariant: `bytes[..len]` is a valid name (so ASCII, so UTF-8); the
/// rest of `bytes` is zero.
#[derive(Clone, Copy)]
pub struct GlobalName {
    len: u8,
    bytes: [u8; MAX_GLOBAL_NAME],
}

impl GlobalName {
    /// Checks `name` and keeps it.
    pub fn new(name: &str) -> Result<GlobalName, ModelError> {
        validate_global_name(name)?;
        Ok(GlobalName::from_checked(name))
    }

    /// Keeps a name the caller has checked with [`validate_global_name`].
    pub(super) fn from_checked(name: &str) -> GlobalName {
        debug_assert!(validate_global_name(name).is_ok(), "{name:?}");
        let mut bytes = [0; MAX_GLOBAL_NAME];
        bytes[..name.len()].copy_from_slice(name.as_bytes());
        GlobalName {
            len: name.len() as u8,
            bytes,
        }
    }

    pub fn as_str(&self) -> &str {
        let name = &self.bytes[..usize::from(self.len)];
        // Checked ASCII when made; never fails.
        std::str::from_utf8(name).unwrap_or_default()
    }
}

impl Deref for GlobalName {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for GlobalName {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq for GlobalName {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for GlobalName {}

impl PartialEq<str> for GlobalName {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for GlobalName {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl Ord for GlobalName {
    fn cmp(&self, other: &Self) -> Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl PartialOrd for GlobalName {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Hash for GlobalName {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state)
    }
}

impl fmt::Debug for GlobalName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for GlobalName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::GlobalName;

    #[test]
    fn reads_orders_and_rejects_like_a_checked_string() {
        let a = GlobalName::new("Person").unwrap();
        assert_eq!(a.as_str(), "Person");
        assert_eq!(a, "Person");
        assert_eq!(format!("{a} {a:?}"), "Person \"Person\"");
        let longest = "A".repeat(31);
        assert_eq!(GlobalName::new(&longest).unwrap().len(), 31);
        assert!(GlobalName::new(&"A".repeat(32)).is_err());
        assert!(GlobalName::new("").is_err());
        assert!(GlobalName::new("1abc").is_err());
        let mut names: Vec<GlobalName> = ["b", "B", "a.b", "a", "%z"]
            .into_iter()
            .map(|n| GlobalName::new(n).unwrap())
            .collect();
        names.sort();
        let sorted: Vec<&str> = names.iter().map(|n| n.as_str()).collect();
        assert_eq!(sorted, ["%z", "B", "a", "a.b", "b"]);
    }
}
