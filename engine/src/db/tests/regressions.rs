//! Regressions found in review: each once failed.

use std::path::Path;
use std::time::Duration;

use super::*;
use crate::storage::sim::CrashFate;

/// Two open transactions change the same node; recovery must undo them
/// newest first, leaving the committed value.
#[test]
fn open_txns_undone_in_reverse_journal_order() {
    let fs = SimFs::new();
    let e = open(&fs);
    let mut s0 = e.session();
    s0.set(DB, &k("^A(1)"), &v("0")).unwrap(); // acknowledged
    let mut s1 = e.session();
    let mut s2 = e.session();
    s1.tstart().unwrap(); // T1, lower id
    s2.tstart().unwrap(); // T2
    s1.set(DB, &k("^A(1)"), &v("1")).unwrap(); // before 0
    s2.set(DB, &k("^A(1)"), &v("2")).unwrap(); // before 1
    e.journal().flush().unwrap();
    fs.crash_now();
    std::mem::forget(s1);
    std::mem::forget(s2);
    drop(s0);
    drop(e);
    let img = fs.crash_image_with(CrashFate::DropAll);
    let e = open(&img);
    assert_eq!(
        e.session().get(DB, &k("^A(1)")).unwrap(),
        Some(v("0")),
        "neither transaction committed"
    );
}

/// A crash while a database file is being created must not stop the
/// engine from opening (the creation was never acknowledged).
#[test]
fn crash_during_create_database() {
    let mut failures = Vec::new();
    for seed in 0..64 {
        let fs = SimFs::new();
        let e = open(&fs);
        fs.crash_at_sync(1); // the new file's sync
        let r = e.create_database("NEW");
        assert!(r.is_err());
        drop(e);
        let img = fs.crash_image(seed);
        if let Err(err) = Engine::open(Path::new("/data"), sim_opts(&img)) {
            failures.push(format!("seed {seed}: {err}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures, e.g. {}",
        failures.len(),
        failures[0]
    );
}

/// A LOCK with a very long timeout.
#[test]
fn lock_with_huge_timeout() {
    let fs = SimFs::new();
    let e = open(&fs);
    let s = e.session();
    assert!(s.lock(DB, &k("^L(1)"), Duration::MAX).unwrap());
}

/// After a failed flush cycle the store is poisoned, but reads go on; they
/// must not silently lose acknowledged data.
#[test]
fn reads_after_failed_cycle() {
    let fs = SimFs::new();
    let e = open(&fs);
    let mut s = e.session();
    for i in 0..20 {
        s.set(DB, &k(&format!("^A({i})")), &v("\"x\"")).unwrap();
    }
    e.checkpoint().unwrap();
    let big = format!("\"{}\"", "y".repeat(200));
    for i in 0..2000 {
        s.set(DB, &k(&format!("^B({i})")), &v(&big)).unwrap();
    }
    // every SET above is acknowledged (journal durable)
    fs.fail_next_sync();
    let _ = e.checkpoint();
    let _ = e.poisoned();
    // read everything back through a small pool
    let mut missing = 0;
    let mut errors = 0;
    for i in 0..2000 {
        match s.get(DB, &k(&format!("^B({i})"))) {
            Ok(Some(_)) => {}
            Ok(None) => missing += 1,
            Err(_) => errors += 1,
        }
    }
    assert_eq!((missing, errors), (0, 0), "poisoned: {:?}", e.poisoned());
}

/// Same, with updates: a reader silently sees the value from before an
/// acknowledged SET.
#[test]
fn stale_reads_after_failed_cycle() {
    let fs = SimFs::new();
    let e = open(&fs);
    let mut s = e.session();
    let big = |c: &str| v(&format!("\"{}\"", c.repeat(200)));
    for i in 0..2000 {
        s.set(DB, &k(&format!("^A({i})")), &big("x")).unwrap();
    }
    e.checkpoint().unwrap();
    for i in 0..60 {
        s.set(DB, &k(&format!("^A({i})")), &big("z")).unwrap(); // acknowledged
    }
    fs.fail_next_sync();
    assert!(e.checkpoint().is_err());
    for i in 100..2000 {
        let _ = s.get(DB, &k(&format!("^A({i})"))); // push pages out of the pool
    }
    let stale: Vec<i32> = (0..60)
        .filter(|i| s.get(DB, &k(&format!("^A({i})"))).unwrap() == Some(big("x")))
        .collect();
    assert!(
        stale.is_empty(),
        "acknowledged updates invisible: {stale:?}"
    );
}

/// A KILL of a large subtree dirties every page under one write lock with
/// no flush cycle: the pool grows past its bound.
#[test]
fn kill_exceeds_pool_bound() {
    let fs = SimFs::new();
    let e = open(&fs);
    let mut s = e.session();
    let big = v(&format!("\"{}\"", "x".repeat(200)));
    for i in 0..3000 {
        s.set(DB, &k(&format!("^A({i})")), &big).unwrap();
    }
    e.checkpoint().unwrap();
    s.kill(DB, &k("^A")).unwrap();
    let resident = e.resident_pages();
    assert!(
        resident <= 2 * 24,
        "{resident} pages resident with a pool of 24"
    );
}

/// A follower applying records while its write daemon flushes: the flush
/// took a tree's lock and then the applier's, the applier the other way
/// round, and the two could wait for each other forever.
#[test]
fn applying_while_the_daemon_flushes_does_not_deadlock() {
    let primary_fs = SimFs::new();
    // It keeps its journal for the follower (as a follower's floor would).
    let popts = crate::EngineOptions {
        journal_keep_bytes: u64::MAX,
        ..sim_opts(&primary_fs)
    };
    let (p, _) = Engine::open(Path::new("/data"), popts).unwrap();
    p.create_database(DB).unwrap();
    let mut s = p.session();
    for i in 0..4000 {
        s.set(
            DB,
            &k(&format!("^A({i})")),
            &v(&format!("\"{}\"", "x".repeat(100))),
        )
        .unwrap();
    }
    let end = p.journal().durable_lsn();
    let follower_fs = SimFs::new();
    let opts = crate::EngineOptions {
        mirrored: true,
        flush_interval: Some(Duration::from_millis(1)),
        ..sim_opts(&follower_fs)
    };
    let (f, _) = Engine::open(Path::new("/data"), opts).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        replicate(&p, &f, end, |_| {});
        tx.send(f.applied_lsn()).unwrap();
    });
    let applied = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("applying stalled: a lock-order deadlock");
    assert_eq!(applied, end);
}

/// A session closed while commits were paused could not roll its
/// transaction back then; its changes stayed, visible, until a restart.
/// Now the engine rolls it back when commits resume.
#[test]
fn a_session_closed_while_commits_are_paused_is_rolled_back_when_they_resume() {
    let fs = SimFs::new();
    let e = open_pausable(&fs);
    let mut s0 = e.session();
    s0.set(DB, &k("^A"), &v("0")).unwrap();
    let mut s = e.session();
    assert!(s.lock(DB, &k("^A"), Duration::ZERO).unwrap());
    s.tstart().unwrap();
    s.set(DB, &k("^A"), &v("1")).unwrap();
    s.set(DB, &k("^B"), &v("1")).unwrap();
    e.pause_commits("test");
    drop(s);
    assert_eq!(
        s0.get(DB, &k("^A")).unwrap(),
        Some(v("1")),
        "not undone yet"
    );
    // Its lock stays held until it is undone: nobody builds on what will be.
    assert!(!s0.lock(DB, &k("^A"), Duration::ZERO).unwrap());
    e.resume_commits();
    assert!(s0.lock(DB, &k("^A"), Duration::ZERO).unwrap());
    assert_eq!(s0.get(DB, &k("^A")).unwrap(), Some(v("0")));
    assert_eq!(s0.get(DB, &k("^B")).unwrap(), None);
    assert!(e.inner.open_txns.lock().is_empty());
    assert!(e.inner.orphans.lock().is_empty());
}

/// ... unless this member is demoted first: then the new primary rolls it
/// back, and this member must not undo it again later with stale
/// before-images.
#[test]
fn a_paused_orphan_is_dropped_when_the_member_is_demoted() {
    let fs = SimFs::new();
    let e = open_pausable(&fs);
    let mut s = e.session();
    assert!(s.lock(DB, &k("^A"), Duration::ZERO).unwrap());
    s.tstart().unwrap();
    s.set(DB, &k("^A"), &v("1")).unwrap();
    e.pause_commits("test");
    drop(s);
    assert_eq!(e.inner.orphans.lock().len(), 1);
    e.set_read_only(None);
    assert!(e.session().lock(DB, &k("^A"), Duration::ZERO).unwrap());
    // Promoted again later (after following the new primary).
    e.become_primary(2).unwrap();
    e.resume_commits();
    assert!(e.inner.orphans.lock().is_empty());
    assert!(e.inner.open_txns.lock().is_empty());
    let s0 = e.session();
    assert_eq!(
        s0.get(DB, &k("^A")).unwrap(),
        Some(v("1")),
        "left for the new primary"
    );
}

/// An engine whose writes wait 20 ms while commits are paused.
fn open_pausable(fs: &SimFs) -> Engine {
    open_with(EngineOptions {
        pause_timeout: Duration::from_millis(20),
        ..sim_opts(fs)
    })
}

/// A write on a read-only member is refused as such before anything else
/// is looked at, a missing database included: the client follows that
/// answer to the primary (which may have the database).
#[test]
fn a_read_only_member_refuses_a_write_to_any_database_as_read_only() {
    let fs = SimFs::new();
    let e = open(&fs);
    e.set_read_only(Some("elsewhere".into()));
    let mut s = e.session();
    for db in [DB, "MISSING"] {
        let err = s.set(db, &k("^A"), &v("1")).unwrap_err();
        assert!(
            matches!(err, crate::EngineError::ReadOnly { .. }),
            "{db}: {err}"
        );
    }
}
