//! The commit path of a mirror member, whose journal a background thread
//! flushes: committers ask for a flush and sleep once in the gate. Many
//! committers must all be served (sharing syncs), a failed sync must reach
//! every waiter, and a closing engine must strand no one.

use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use super::*;
use crate::error::EngineError;

/// Runs `threads` committers of `each` SETs; returns their results, or
/// panics if they are not all back within 20 s (a lost wake-up).
fn commit_from_threads(e: &Engine, threads: u64, each: u64) -> Vec<Result<(), EngineError>> {
    let (tx, rx) = mpsc::channel();
    for t in 0..threads {
        let (e, tx) = (e.clone(), tx.clone());
        std::thread::spawn(move || {
            let mut s = e.session();
            let mut result = Ok(());
            for i in 0..each {
                let key = k(&format!("^A({t},{i})"));
                if let Err(err) = s.set(DB, &key, &Value::Int(i as i64)) {
                    result = Err(err);
                    break;
                }
            }
            let _ = tx.send(result);
        });
    }
    drop(tx);
    (0..threads)
        .map(|_| {
            rx.recv_timeout(Duration::from_secs(20))
                .expect("every committer returns (no lost wake-up)")
        })
        .collect()
}

#[test]
fn many_committers_are_all_served_and_share_syncs() {
    let fs = SimFs::new();
    let e = member_primary(&fs);
    let syncs0 = e.journal().syncs();
    let results = commit_from_threads(&e, 16, 100);
    assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
    let syncs = e.journal().syncs() - syncs0;
    assert!(
        syncs < 1600,
        "{syncs} syncs for 1,600 commits: group commit shares them"
    );
    // Everything acknowledged is durable: a crash now keeps it all.
    fs.crash_now();
    drop(e);
    let img = fs.crash_image(7);
    let (e, _) = Engine::open(Path::new("/data"), sim_opts(&img)).unwrap();
    let s = e.session();
    for t in 0..16 {
        for i in [0, 99] {
            assert_eq!(
                s.get(DB, &k(&format!("^A({t},{i})"))).unwrap(),
                Some(Value::Int(i))
            );
        }
    }
}

#[test]
fn a_failed_sync_reaches_every_waiting_committer() {
    let fs = SimFs::new();
    let e = member_primary(&fs);
    fs.fail_next_sync();
    let results = commit_from_threads(&e, 8, 50);
    assert!(
        results.iter().any(|r| r.is_err()),
        "a commit after the failed sync fails"
    );
    // The store is poisoned: no commit succeeds any more, and none hangs.
    let results = commit_from_threads(&e, 4, 5);
    assert!(results.iter().all(|r| r.is_err()), "{results:?}");
}

#[test]
fn commits_still_return_after_the_flusher_stopped() {
    let fs = SimFs::new();
    let e = member_primary(&fs);
    let mut s = e.session();
    s.set(DB, &k("^A(1)"), &Value::Int(1)).unwrap();
    // The flusher stops (as it does when the engine closes) while the
    // engine is still open: a commit then syncs its record itself.
    drop(e._daemon.flusher.lock().take());
    assert!(!e.journal().flusher_running());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(s.set(DB, &k("^A(2)"), &Value::Int(2)).is_ok());
    });
    let ok = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the commit returns");
    assert!(ok);
    assert!(e.journal().durable_lsn() >= e.journal().end_lsn());
}
