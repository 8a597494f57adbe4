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

use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::{Condvar, Mutex};

use crate::storage::{OpenMode, Vfs};

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
    /// The segment file: the thread opens it itself, so that a failed
    /// writeback its sync runs into is still reported to the flush
    /// leader's own sync (Linux reports such an error once per open file,
    /// to each open file).
    path: PathBuf,
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
    /// A zero-fill failed: the leader poisons the journal (the failed
    /// sync may have dropped record pages of the same file).
    failed: Option<String>,
}

pub(super) struct Reserver {
    vfs: Arc<dyn Vfs>,
    state: Mutex<State>,
    changed: Condvar,
}

impl Reserver {
    pub(super) fn new(vfs: Arc<dyn Vfs>) -> Reserver {
        Reserver {
            vfs,
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
        }
    }

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
            let result = self
                .vfs
                .open(&job.path, OpenMode::Existing)
                .and_then(|file| {
                    let mut at = job.from;
                    while at < job.from + job.len {
                        let n = (job.from + job.len - at).min(zeros.len() as u64);
                        file.write_all_at(&zeros[..n as usize], at)?;
                        at += n;
                    }
                    file.sync()
                });
            let mut st = self.state.lock();
            st.busy = false;
            match result {
                Ok(()) if st.gen == job.gen => st.done = Some((job.gen, job.from + job.len)),
                Ok(()) => {}
                Err(e) => {
                    let why = format!(
                        "zero-filling {} ahead of the records failed: {e}",
                        job.path.display()
                    );
                    tracing::error!(%why, "journal zero-fill failed");
                    st.failed.get_or_insert(why);
                }
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
    pub(super) fn request(&self, path: &Path, from: u64) {
        let mut st = self.state.lock();
        if st.busy || st.job.is_some() || st.stop || st.failed.is_some() {
            return;
        }
        st.job = Some(Job {
            path: path.to_path_buf(),
            gen: st.gen,
            from,
            len: CHUNK,
        });
        drop(st);
        self.changed.notify_all();
    }

    /// Why a zero-fill failed, if one did.
    pub(super) fn failure(&self) -> Option<String> {
        self.state.lock().failed.clone()
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
