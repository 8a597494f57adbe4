//! Advisory locks on keys, as IRIS `LOCK`: a lock on a node also covers its
//! subtree, so two owners conflict when one's key is the other's ancestor or
//! the same node. Locks count: an owner may take the same lock several
//! times and releases it as often. A session's locks go when it does.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

#[derive(Default)]
pub struct LockTable {
    held: Mutex<HashMap<(String, Vec<u8>), Held>>,
    released: Condvar,
}

struct Held {
    owner: u64,
    count: u32,
}

impl LockTable {
    /// Takes the lock for `owner`, waiting up to `timeout`; false on timeout.
    pub fn lock(&self, owner: u64, db: &str, key: &[u8], timeout: Duration) -> bool {
        // A timeout too large to add to the clock means "wait forever".
        let deadline = Instant::now().checked_add(timeout);
        let mut held = self.held.lock();
        loop {
            let conflict = held.iter().any(|((d, k), h)| {
                h.owner != owner && d == db && (k.starts_with(key) || key.starts_with(k))
            });
            if !conflict {
                held.entry((db.to_string(), key.to_vec()))
                    .and_modify(|h| h.count += 1)
                    .or_insert(Held { owner, count: 1 });
                return true;
            }
            match deadline {
                Some(d) => {
                    if self.released.wait_until(&mut held, d).timed_out() {
                        return false;
                    }
                }
                None => self.released.wait(&mut held),
            }
        }
    }

    /// Releases one count of `owner`'s lock; false if it held none.
    pub fn unlock(&self, owner: u64, db: &str, key: &[u8]) -> bool {
        let mut held = self.held.lock();
        let k = (db.to_string(), key.to_vec());
        let Some(h) = held.get_mut(&k).filter(|h| h.owner == owner) else {
            return false;
        };
        h.count -= 1;
        if h.count == 0 {
            held.remove(&k);
            self.released.notify_all();
        }
        true
    }

    /// Releases every lock of `owner`.
    pub fn release_all(&self, owner: u64) {
        let mut held = self.held.lock();
        let before = held.len();
        held.retain(|_, h| h.owner != owner);
        if held.len() != before {
            self.released.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    const NOW: Duration = Duration::from_millis(0);

    #[test]
    fn ancestors_and_descendants_conflict_siblings_do_not() {
        let t = LockTable::default();
        assert!(t.lock(1, "DB", b"X\0\x01", NOW));
        assert!(!t.lock(2, "DB", b"X\0", NOW), "ancestor of a held lock");
        assert!(
            !t.lock(2, "DB", b"X\0\x01\x05", NOW),
            "descendant of a held lock"
        );
        assert!(t.lock(2, "DB", b"X\0\x02", NOW), "sibling");
        assert!(t.lock(2, "OTHER", b"X\0", NOW), "other database");
        assert!(
            t.lock(1, "DB", b"X\0\x01", NOW),
            "same owner takes it again"
        );
        assert!(t.unlock(1, "DB", b"X\0\x01"));
        assert!(!t.lock(3, "DB", b"X\0\x01", NOW), "still held once");
        assert!(t.unlock(1, "DB", b"X\0\x01"));
        assert!(t.lock(3, "DB", b"X\0\x01", NOW));
        assert!(!t.unlock(1, "DB", b"X\0\x01"), "not the owner");
    }

    #[test]
    fn a_waiter_gets_the_lock_when_the_holder_goes() {
        let t = Arc::new(LockTable::default());
        assert!(t.lock(1, "DB", b"K", NOW));
        let t2 = t.clone();
        let waiter = std::thread::spawn(move || t2.lock(2, "DB", b"K", Duration::from_secs(10)));
        std::thread::sleep(Duration::from_millis(50));
        t.release_all(1);
        assert!(waiter.join().unwrap());
        assert!(
            !t.lock(1, "DB", b"K", Duration::from_millis(20)),
            "times out"
        );
    }
}
