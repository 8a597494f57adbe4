//! Tuning of mimalloc, the allocator of the `redoubt` binary (and of the
//! benchmarks, which must run as it does).
//!
//! mimalloc gives memory that stayed free for its *purge delay* (1 s by
//! default) back to the OS. With transparent huge pages (which it asks
//! for), each such region touched again is a fresh 2 MiB page that the
//! kernel zeroes first. The engine's pool frees and allocates page buffers
//! all the time under a load larger than the pool, and with the default a
//! key-order load of 2.3M SETs into a 64 MiB pool took 4,352 page faults,
//! 23% of the writing thread's samples; with a 10 s delay, 282. Five
//! paired single-load runs: 4 of 5 faster, +3.6% on average. Memory left
//! free for 10 s still goes back to the OS.

use std::os::raw::{c_int, c_long};

// The lib links mimalloc itself, so that these symbols are there in
// every binary that calls [`tune_mimalloc`], whatever its allocator.
use mimalloc as _;

/// `mi_option_purge_delay` in mimalloc.h (v3, as built by
/// `libmimalloc-sys` 0.1.49, which does not export the constant).
const OPTION_PURGE_DELAY: c_int = 15;
/// mimalloc's default purge delay, in ms.
const DEFAULT_PURGE_DELAY_MS: c_long = 1000;
/// The purge delay `redoubt` runs with, in ms.
pub const PURGE_DELAY_MS: c_long = 10_000;

extern "C" {
    fn mi_option_get(option: c_int) -> c_long;
    fn mi_option_set(option: c_int, value: c_long);
    fn mi_collect(force: bool);
}

/// Gives the memory mimalloc holds free back to the OS now, whatever the
/// purge delay (a benchmark does this between runs, so one run's peak
/// resident memory does not include what an earlier run freed).
pub fn release_free_memory() {
    // SAFETY: mi_collect only walks mimalloc's own heaps; it may be
    // called at any time from any thread.
    unsafe { mi_collect(true) }
}

/// Sets mimalloc's purge delay to [`PURGE_DELAY_MS`], unless the
/// environment (`MIMALLOC_PURGE_DELAY`) chose one. Returns the delay in
/// force. Reading mimalloc's default first also guards the option's
/// number: another option would not read 1000.
pub fn tune_mimalloc() -> c_long {
    // SAFETY: both functions only read or write mimalloc's option table,
    // take the option by value, and are safe to call at any time.
    unsafe {
        let now = mi_option_get(OPTION_PURGE_DELAY);
        if now == DEFAULT_PURGE_DELAY_MS && std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            mi_option_set(OPTION_PURGE_DELAY, PURGE_DELAY_MS);
        }
        mi_option_get(OPTION_PURGE_DELAY)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_purge_delay_is_ten_seconds() {
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            assert_eq!(super::tune_mimalloc(), super::PURGE_DELAY_MS);
        }
    }
}
