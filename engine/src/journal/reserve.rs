//! Zero-filling the last journal segment ahead of its records on a thread of
//! its own (see [`super::writer::RESERVE_BYTES`] for why the zeros exist).
//!
//! Written by the flush leader alone, the zeros cost a commit now and then a
//! megabyte of extra writing and a file-size change in its sync: a bulk load
//! spent a third of its commit time so. Instead, after a batch leaves less
//! than [`AHEAD`] bytes zeroed, the leader hands the next range to this
//! thread and goes on; a later batch that reaches a range still being
//! zeroed waits for it (the two never write the same bytes at once), and
//! one that finds nothing zeroed ahead zero-fills synchronously as before.
//!
//! Each range is tagged with the segment's *generation*, bumped whenever
//! the last segment changes (a new segment, a truncation), after waiting
//! for the thread to be idle: a range zeroed for an old segment is never
//! counted for a new one.

use std::sync::Arc;

use parking_lot::{Condvar, Mutex};

use crate::storage::VfsFile;

/// Zeros kept ahead of the records, at least.
pub const AHEAD: u64 = 4 << 20;

/// Bytes zeroed (and synced) per range: small, so that a commit's sync
/// never queues behind much of the thread's writing.
const CHUNK: u64 = 1 << 20;

/// Bytes per write call: a write holds the file's lock in the kernel
/// (ext4's inode lock), which the flush's own write of records waits for,
/// spinning; short writes keep that wait short.
const PIECE: usize = 64 << 10;

struct Job {
    file: Arc<dyn VfsFile>,
    gen: u64,
    from: u64,
    len: u64,
}

#[derive(Default)]
struct State {
    job: Option<Job>,
    busy: bool,
    /// `(generation, zeroed and synced up to)` of the last range done.
    done: Option<(u64, u64)>,
    gen: u64,
    stop: bool,
}

#[derive(Default)]
pub(super) struct Reserver {
    state: Mutex<State>,
    changed: Condvar,
}

impl Reserver {
    /// The thread's loop; returns once [`Reserver::stop`] is called.
    pub(super) fn run(&self) {
        let zeros = vec![0u8; PIECE];
        loop {
            let job = {
                let mut st = self.state.lock();
                loop {
                    if st.stop {
                        return;
                    }
                    if let Some(job) = st.job.take() {
                        st.busy = true;
                        break job;
                    }
                    self.changed.wait(&mut st);
                }
            };
            let mut result = Ok(());
            let mut at = job.from;
            while at < job.from + job.len && result.is_ok() {
                let n = (job.from + job.len - at).min(zeros.len() as u64);
                result = job.file.write_all_at(&zeros[..n as usize], at);
                at += n;
            }
            let result = result.and_then(|()| job.file.sync());
            let mut st = self.state.lock();
            st.busy = false;
            match result {
                Ok(()) if st.gen == job.gen => st.done = Some((job.gen, job.from + job.len)),
                Ok(()) => {}
                // The leader zero-fills itself then, and reports a failure.
                Err(e) => tracing::warn!(error = %e, "zero-filling the journal ahead failed"),
            }
            drop(st);
            self.changed.notify_all();
        }
    }

    pub(super) fn stop(&self) {
        self.state.lock().stop = true;
        self.changed.notify_all();
    }

    /// How far the current segment is zeroed, at least `reserved`; waits
    /// for a range being zeroed if `need` lies beyond `reserved`.
    pub(super) fn collect(&self, reserved: u64, need: u64) -> u64 {
        let mut st = self.state.lock();
        loop {
            let have = match st.done {
                Some((gen, upto)) if gen == st.gen => reserved.max(upto),
                _ => reserved,
            };
            if need <= have || st.stop || !(st.busy || st.job.is_some()) {
                return have;
            }
            self.changed.wait(&mut st);
        }
    }

    /// Asks for `[from, from + CHUNK)` of the current segment to be zeroed,
    /// unless a range is being zeroed already.
    pub(super) fn request(&self, file: &Arc<dyn VfsFile>, from: u64) {
        let mut st = self.state.lock();
        if st.busy || st.job.is_some() || st.stop {
            return;
        }
        st.job = Some(Job {
            file: file.clone(),
            gen: st.gen,
            from,
            len: CHUNK,
        });
        drop(st);
        self.changed.notify_all();
    }

    /// The last segment is about to change: waits for the thread to be
    /// idle and forgets what it zeroed.
    pub(super) fn new_generation(&self) {
        let mut st = self.state.lock();
        st.job = None;
        while st.busy {
            self.changed.wait(&mut st);
        }
        st.gen += 1;
        st.done = None;
    }
}
