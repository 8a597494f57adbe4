//! Crash images: a workload runs on a simulated disk that dies at its N-th
//! sync; the disk then keeps what was durable plus a random keep / drop /
//! tear of every write since each file's last sync. The reopened engine must
//! be structurally valid and hold exactly the acknowledged history: every
//! commit acknowledged before the cut, nothing of a transaction that did not
//! commit, and at most the one commit in flight at the cut.

use std::collections::BTreeMap;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;
use crate::model::{self, Subscript};

type State = BTreeMap<Vec<u8>, Value>;

fn key(rng: &mut StdRng) -> Key {
    let g = if rng.gen_bool(0.7) { "A" } else { "B" };
    let mut subs = vec![Subscript::Int(rng.gen_range(0..1500))];
    if rng.gen_bool(0.3) {
        subs.push(Subscript::Str(format!("f{}", rng.gen_range(0..3))));
    }
    Key::new(g, subs).expect("valid key")
}

fn value(rng: &mut StdRng) -> Value {
    if rng.gen_bool(0.03) {
        Value::Bytes(vec![rng.gen(); rng.gen_range(3000..20000)])
    } else {
        Value::Str("v".repeat(rng.gen_range(1..600)))
    }
}

/// One change inside a commit unit.
enum Change {
    Set(Key, Value),
    Kill(Key),
}

fn apply(state: &mut State, c: &Change) {
    match c {
        Change::Set(k, v) => {
            state.insert(k.encode(), v.clone());
        }
        Change::Kill(k) => {
            let enc = k.encode();
            let end = model::subtree_end(&enc);
            let doomed: Vec<_> = state.range(enc..end).map(|(k, _)| k.clone()).collect();
            for k in doomed {
                state.remove(&k);
            }
        }
    }
}

/// Runs commit units until the disk dies; returns the states recovery may
/// legally produce: the last acknowledged one, and the one the unit in
/// flight at the crash would have produced had it committed.
///
/// The session is the caller's, dropped only once the disk is dead: a
/// rollback on drop then reaches no image. (Leaking it instead, with
/// `mem::forget`, kept every run's engine and simulated disk alive.)
fn workload(e: &Engine, s: &mut crate::db::Session, seed: u64, units: usize) -> Vec<State> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut acked = State::new();
    for _ in 0..units {
        // The write daemon's cycles, at points the seed chooses.
        if rng.gen_bool(0.12) && e.checkpoint().is_err() {
            return vec![acked];
        }
        let in_txn = rng.gen_bool(0.3);
        let n = if in_txn { rng.gen_range(1..6) } else { 1 };
        let changes: Vec<Change> = (0..n)
            .map(|_| {
                if rng.gen_bool(0.1) {
                    let mut k = key(&mut rng);
                    k.subs.truncate(1);
                    Change::Kill(k)
                } else {
                    Change::Set(key(&mut rng), value(&mut rng))
                }
            })
            .collect();
        let mut next = acked.clone();
        for c in &changes {
            apply(&mut next, c);
        }
        let rolled_back = in_txn && rng.gen_bool(0.15);
        let mid_txn_checkpoint = rng.gen_bool(0.2);
        let result = (|| -> crate::error::Result<()> {
            if in_txn {
                s.tstart()?;
            }
            for c in &changes {
                match c {
                    Change::Set(k, v) => s.set(DB, k, v)?,
                    Change::Kill(k) => s.kill(DB, k).map(|_| ())?,
                }
                // A cycle inside a transaction writes uncommitted pages,
                // which recovery must be able to undo.
                if in_txn && mid_txn_checkpoint {
                    e.checkpoint()?;
                }
            }
            if rolled_back {
                s.trollback(false)
            } else if in_txn {
                s.tcommit()
            } else {
                Ok(())
            }
        })();
        if rolled_back {
            next = acked.clone();
        }
        match result {
            Ok(()) => acked = next,
            Err(_) => return vec![acked, next],
        }
    }
    vec![acked]
}

fn one_cut(seed: u64, cut: u64) {
    one_cut_with(seed, cut, false);
}

/// With `zero_thread`, the journal's zero-filling thread runs too: its
/// syncs then fall at varying places, so a cut is not reproducible to the
/// sync, but every image must still hold exactly the acknowledged history.
fn one_cut_with(seed: u64, cut: u64, zero_thread: bool) {
    let fs = SimFs::new();
    let mut opts = sim_opts(&fs);
    opts.journal.zero_fill_thread = zero_thread;
    let e = open_with(opts);
    fs.crash_at_sync(cut);
    let mut s = e.session();
    let allowed = workload(&e, &mut s, seed, 120);
    fs.crash_now();
    drop(s);
    drop(e);
    let img = fs.crash_image(seed.wrapping_mul(31).wrapping_add(cut));
    let e = open(&img);
    let got: State = contents(&e).into_iter().collect();
    assert!(
        allowed.contains(&got),
        "seed {seed} cut {cut} (zero-filling thread: {zero_thread}): recovered {} nodes; acknowledged state has {}{}",
        got.len(),
        allowed[0].len(),
        allowed
            .get(1)
            .map(|s| format!(", in-flight state {}", s.len()))
            .unwrap_or_default()
    );
    e.check()
        .unwrap_or_else(|err| panic!("seed {seed} cut {cut}: {err}"));
    // The recovered engine goes on working and survives a clean restart.
    let mut s = e.session();
    s.set(DB, &k("^C(1)"), &v(r#""after""#)).unwrap();
    drop(s);
    e.close().unwrap();
    let e = open(&img);
    assert_eq!(
        e.session().get(DB, &k("^C(1)")).unwrap(),
        Some(v(r#""after""#))
    );
}

/// Replay one failing case: `REDOUBT_CRASH_CASE=seed:cut cargo test ...`.
#[test]
fn crash_at_every_sync_keeps_exactly_the_acknowledged_history() {
    if let Ok(case) = std::env::var("REDOUBT_CRASH_CASE") {
        let (seed, cut) = case.split_once(':').expect("seed:cut");
        one_cut(seed.parse().unwrap(), cut.parse().unwrap());
        return;
    }
    let (seeds, cuts) = if std::env::var("REDOUBT_LONG_TESTS").is_ok() {
        (40, 300)
    } else {
        (8, 130)
    };
    let mut runs = 0;
    for seed in 0..seeds {
        for cut in 1..=cuts {
            one_cut(seed, cut);
            runs += 1;
        }
    }
    assert!(runs >= 1000, "{runs} cut points");
}

/// The crash images again with the journal's zero-filling thread running
/// (the test above turns it off to cut at exact syncs).
#[test]
fn crash_images_with_the_zero_filling_thread_keep_the_acknowledged_history() {
    let (seeds, cuts) = if std::env::var("REDOUBT_LONG_TESTS").is_ok() {
        (20, 200)
    } else {
        (3, 60)
    };
    for seed in 0..seeds {
        for cut in (1..=cuts).step_by(2) {
            one_cut_with(1000 + seed, cut, true);
        }
    }
}
