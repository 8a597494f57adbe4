//! Pipelined commits (`pending.rs`): acknowledged only by `wait`, synced
//! without anyone waiting, whole or absent after a crash.

use std::time::{Duration, Instant};

use super::*;

/// Polls until the journal is durable at `end`; false after 10 s.
fn becomes_durable(e: &Engine, end: crate::Lsn) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if e.journal().durable_lsn() >= end {
            return true;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    false
}

#[test]
fn a_waited_pipelined_commit_survives_a_crash_and_the_next_open_transaction_does_not() {
    let fs = SimFs::new();
    let e = open(&fs);
    let mut s = e.session();
    s.tstart().unwrap();
    for i in 0..10 {
        s.set(DB, &k(&format!("^A({i})")), &Value::Int(i)).unwrap();
    }
    let pending = s.tcommit_pipelined().unwrap();
    let end = pending.end().expect("the outermost level commits");
    assert_eq!(s.tlevel(), 0);
    // The next transaction runs while the commit is pending.
    s.tstart().unwrap();
    s.set(DB, &k("^B(1)"), &Value::Int(1)).unwrap();
    pending.wait().unwrap();
    assert!(e.journal().durable_lsn() >= end);
    fs.crash_now();
    drop(s);
    drop(e);
    let e = open(&fs.crash_image(3));
    let s = e.session();
    for i in 0..10 {
        assert_eq!(
            s.get(DB, &k(&format!("^A({i})"))).unwrap(),
            Some(Value::Int(i))
        );
    }
    assert_eq!(s.get(DB, &k("^B(1)")).unwrap(), None, "never committed");
}

#[test]
fn a_pipelined_commit_is_synced_without_anyone_waiting() {
    for mirrored in [false, true] {
        let fs = SimFs::new();
        let e = if mirrored {
            member_primary(&fs)
        } else {
            open(&fs)
        };
        let mut s = e.session();
        s.tstart().unwrap();
        s.set(DB, &k("^A(1)"), &Value::Int(1)).unwrap();
        let pending = s.tcommit_pipelined().unwrap();
        let end = pending.end().unwrap();
        // Nobody calls `wait`: the write-ahead thread (alone) or the
        // member's flusher (mirrored) syncs it.
        assert!(
            becomes_durable(&e, end),
            "mirrored {mirrored}: the commit at {end} was never synced (durable {})",
            e.journal().durable_lsn()
        );
        assert!(pending.is_durable_here());
        pending.wait().unwrap();
    }
}

#[test]
fn closing_an_inner_level_commits_nothing_and_waits_for_nothing() {
    let fs = SimFs::new();
    let e = open(&fs);
    let mut s = e.session();
    s.tstart().unwrap();
    s.tstart().unwrap();
    s.set(DB, &k("^A(1)"), &Value::Int(1)).unwrap();
    let inner = s.tcommit_pipelined().unwrap();
    assert_eq!(inner.end(), None);
    assert!(inner.is_durable_here());
    inner.wait().unwrap();
    assert_eq!(s.tlevel(), 1, "the outer level is still open");
    s.trollback(false).unwrap();
    assert_eq!(s.get(DB, &k("^A(1)")).unwrap(), None, "rolled back");
}

#[test]
fn a_failed_sync_fails_the_pending_commit_and_poisons_the_store() {
    let fs = SimFs::new();
    let e = open(&fs);
    let mut s = e.session();
    fs.fail_next_sync();
    s.tstart().unwrap();
    s.set(DB, &k("^A(1)"), &Value::Int(1)).unwrap();
    let pending = s.tcommit_pipelined().unwrap();
    let err = pending.wait().expect_err("its sync failed");
    assert!(err.to_string().contains("sync"), "{err}");
    assert!(s.set(DB, &k("^A(2)"), &Value::Int(2)).is_err(), "poisoned");
}
