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

/// A key of `^A` or `^B` (`^A` only when `thinning`), first subscript
/// below `space`.
fn key(rng: &mut StdRng, space: i64, thinning: bool) -> Key {
    let g = if thinning || rng.gen_bool(0.7) {
        "A"
    } else {
        "B"
    };
    let mut subs = vec![Subscript::Int(rng.gen_range(0..space))];
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

/// Runs commit units until the disk dies, on a database that holds
/// `acked` already; returns the states recovery may legally produce: the
/// last acknowledged one, and those the commits not yet acknowledged at the
/// crash would have produced.
///
/// The session is the caller's, dropped only once the disk is dead: a
/// rollback on drop then reaches no image. (Leaking it instead, with
/// `mem::forget`, kept every run's engine and simulated disk alive.) With
/// `pipelined`, transactions commit with `tcommit_pipelined`, and each
/// is acknowledged only when the session waits for it: after the next
/// transaction's changes and commit, or at a SET outside a transaction
/// (whose own sync covers it).
fn workload_after(
    e: &Engine,
    s: &mut crate::db::Session,
    seed: u64,
    units: usize,
    mut acked: State,
    pipelined: bool,
) -> Vec<State> {
    let mut rng = StdRng::seed_from_u64(seed);
    // Seeds from THINNING on mostly kill, in the space of the keys
    // `one_thinning_cut` preloads.
    let thinning = seed >= THINNING;
    let (space, kills) = if thinning { (100, 0.97) } else { (1500, 0.1) };
    // A commit not yet acknowledged, and the state it makes.
    let mut pending: Option<(crate::db::PendingCommit, State)> = None;
    let allowed = |acked: State, pending: Option<(_, State)>, next: Option<State>| {
        let mut states = vec![acked];
        states.extend(pending.map(|(_, s)| s));
        states.extend(next);
        states
    };
    for _ in 0..units {
        // The write daemon's cycles, at points the seed chooses.
        if rng.gen_bool(0.12) && e.checkpoint().is_err() {
            return allowed(acked, pending, None);
        }
        let in_txn = rng.gen_bool(if thinning { 0.8 } else { 0.3 });
        let n = if in_txn { rng.gen_range(1..6) } else { 1 };
        let changes: Vec<Change> = (0..n)
            .map(|_| {
                if rng.gen_bool(kills) {
                    let mut k = key(&mut rng, space, thinning);
                    k.subs.truncate(1);
                    Change::Kill(k)
                } else {
                    Change::Set(key(&mut rng, space, thinning), value(&mut rng))
                }
            })
            .collect();
        let base = pending.as_ref().map_or(&acked, |(_, st)| st).clone();
        let mut next = base.clone();
        for c in &changes {
            apply(&mut next, c);
        }
        let rolled_back = in_txn && rng.gen_bool(0.15);
        let mid_txn_checkpoint = rng.gen_bool(0.2);
        let result = (|| -> crate::error::Result<Option<crate::db::PendingCommit>> {
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
                s.trollback(false).map(|()| None)
            } else if in_txn && pipelined {
                s.tcommit_pipelined().map(Some)
            } else if in_txn {
                s.tcommit().map(|()| None)
            } else {
                Ok(None)
            }
        })();
        if rolled_back {
            next = base;
        }
        match result {
            Ok(Some(commit)) => {
                // The previous commit is acknowledged only now, with this
                // one's sync under way.
                if let Some((previous, state)) = pending.take() {
                    let end = previous.end().expect("an outermost commit");
                    if previous.wait().is_err() {
                        return vec![acked, state, next];
                    }
                    assert!(
                        e.journal().durable_lsn() >= end,
                        "a pipelined commit was acknowledged before it was durable"
                    );
                    acked = state;
                }
                pending = Some((commit, next));
            }
            // A rollback changes nothing; a pending commit stays pending.
            Ok(None) if rolled_back => {}
            // A SET or KILL outside a transaction: durable once it returns,
            // and so is everything before it; unless it changed nothing
            // (a KILL of a missing node journals nothing, syncs nothing).
            Ok(None) => match pending.take() {
                Some((commit, _)) if !commit.is_durable_here() => pending = Some((commit, next)),
                _ => acked = next,
            },
            Err(_) => return allowed(acked, pending, Some(next)),
        }
    }
    match pending {
        Some((commit, state)) => match commit.wait() {
            Ok(()) => vec![state],
            Err(_) => vec![acked, state],
        },
        None => vec![acked],
    }
}

fn one_cut(seed: u64, cut: u64) {
    one_cut_with(seed, cut, false, 0, false);
}

/// With `zero_thread`, the journal's zero-filling thread runs too: its
/// syncs then fall at varying places, so a cut is not reproducible to the
/// sync, but every image must still hold exactly the acknowledged history.
/// `write_ahead_bytes` > 0 lets the journal's write-ahead thread write a
/// transaction's records once that many wait (at varying places too).
/// With `pipelined`, transactions commit with `tcommit_pipelined` (see
/// [`workload_after`]). Returns how many times records were written ahead.
fn one_cut_with(
    seed: u64,
    cut: u64,
    zero_thread: bool,
    write_ahead_bytes: u64,
    pipelined: bool,
) -> u64 {
    let fs = SimFs::new();
    let mut opts = sim_opts(&fs);
    opts.journal.zero_fill_thread = zero_thread;
    opts.journal.write_ahead_bytes = write_ahead_bytes;
    let e = open_with(opts);
    fs.crash_at_sync(cut);
    let mut s = e.session();
    let allowed = workload_after(&e, &mut s, seed, 120, State::new(), pipelined);
    fs.crash_now();
    let written_ahead = e.journal().writes_ahead();
    drop(s);
    drop(e);
    let (e, img) = recover(
        &fs,
        seed,
        cut,
        sim_opts,
        &allowed,
        &format!("zero-filling thread: {zero_thread}"),
    );
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
    written_ahead
}

/// Replay one failing case: `REDOUBT_CRASH_CASE=seed:cut cargo test ...`.
#[test]
fn crash_at_every_sync_keeps_exactly_the_acknowledged_history() {
    if let Ok(case) = std::env::var("REDOUBT_CRASH_CASE") {
        let (seed, cut) = case.split_once(':').expect("seed:cut");
        one_cut(seed.parse().unwrap(), cut.parse().unwrap());
        return;
    }
    let (seeds, cuts) = seeds_and_cuts((8, 130), (40, 300));
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
    let (seeds, cuts) = seeds_and_cuts((3, 60), (20, 200));
    for seed in 0..seeds {
        for cut in (1..=cuts).step_by(2) {
            one_cut_with(1000 + seed, cut, true, 0, false);
        }
    }
}

/// The crash images again with transactions' records written ahead of
/// their commits (`Journal::write_ahead`, here past 100 bytes, so most
/// transactions of the workload do): written and unsynced records of
/// transactions that then commit, roll back, or are cut off.
#[test]
fn crash_images_with_records_written_ahead_keep_the_acknowledged_history() {
    let (seeds, cuts) = seeds_and_cuts((3, 60), (20, 200));
    let mut written_ahead = 0;
    for seed in 0..seeds {
        for cut in (1..=cuts).step_by(2) {
            written_ahead += one_cut_with(2000 + seed, cut, false, 100, false);
        }
    }
    eprintln!("records written ahead {written_ahead} times over the cuts");
    assert!(
        written_ahead > 50,
        "records were written ahead {written_ahead} times: the test does not test it"
    );
}

/// The crash images again with pipelined commits: each transaction's
/// commit is acknowledged only once the next one is under way, and its
/// sync is led by the journal's write-ahead thread (so cuts fall at
/// varying places). Every acknowledged commit survives, and an
/// unacknowledged one is whole or absent.
#[test]
fn crash_images_with_pipelined_commits_keep_the_acknowledged_history() {
    let (seeds, cuts) = seeds_and_cuts((3, 60), (20, 200));
    for seed in 0..seeds {
        for cut in (1..=cuts).step_by(2) {
            one_cut_with(3000 + seed, cut, false, 0, true);
        }
    }
}

/// The crash images again, on a database several times its pool whose
/// leaves are mostly on disk, so that the workload's new keys wait in the
/// insert buffer: cuts fall while keys are buffered, and recovery must
/// replay them from the journal (the test above never buffers: its
/// database fits its pool).
#[test]
fn crash_at_syncs_with_keys_in_the_insert_buffer_keeps_the_acknowledged_history() {
    let (seeds, cuts) = seeds_and_cuts((4, 50), (20, 120));
    let (mut runs, mut buffered) = (0, 0);
    for seed in 0..seeds {
        for cut in 1..=cuts {
            buffered += usize::from(one_buffered_cut(2000 + seed, cut));
            runs += 1;
        }
    }
    assert!(
        buffered * 4 >= runs,
        "only {buffered} of {runs} cuts fell with keys buffered"
    );
}

/// One cut of the test above; whether keys were buffered at the cut.
fn one_buffered_cut(seed: u64, cut: u64) -> bool {
    let fs = SimFs::new();
    let opts = EngineOptions {
        cache_pages: 16,
        ..sim_opts(&fs)
    };
    let e = open_with(opts);
    let mut s = e.session();
    // About 60 pages of ^A(i,"p"), spread over the keys the workload uses.
    let rows = (0..1500i64).map(|i| {
        let key = Key::new("A", vec![Subscript::Int(i), Subscript::Str("p".into())]).unwrap();
        (key, Value::Str(format!("{i:>250}")))
    });
    let preloaded = preload(&mut s, rows, 250);
    e.checkpoint().unwrap();
    fs.crash_at_sync(cut);
    let allowed = workload_after(&e, &mut s, seed, 60, preloaded, false);
    let buffered = e.buffered_keys() > 0;
    let what = format!("keys buffered at the cut: {buffered}");
    let opts = |img: &SimFs| EngineOptions {
        cache_pages: 16,
        ..sim_opts(img)
    };
    crash_and_recover(&fs, (e, s), (seed, cut), opts, &allowed, &what);
    buffered
}

/// Kills the disk now, drops the engine and its session, and checks a
/// crash image (see [`recover`]).
fn crash_and_recover(
    fs: &SimFs,
    (e, s): (Engine, crate::db::Session),
    (seed, cut): (u64, u64),
    opts: impl Fn(&SimFs) -> EngineOptions,
    allowed: &[State],
    what: &str,
) {
    fs.crash_now();
    drop(s);
    drop(e);
    recover(fs, seed, cut, opts, allowed, what);
}

/// Sets `rows`, `per_txn` to a transaction, each committed; the state
/// they make.
fn preload(
    s: &mut crate::db::Session,
    rows: impl Iterator<Item = (Key, Value)>,
    per_txn: usize,
) -> State {
    let mut state = State::new();
    let rows: Vec<(Key, Value)> = rows.collect();
    for chunk in rows.chunks(per_txn) {
        s.tstart().unwrap();
        for (key, value) in chunk {
            s.set(DB, key, value).unwrap();
            state.insert(key.encode(), value.clone());
        }
        s.tcommit().unwrap();
    }
    state
}

/// The first seed of [`workload_after`]'s thinning workload.
const THINNING: u64 = 5000;

/// The crash images again while leaves thin out: a preloaded database
/// of about ten leaves whose keys the workload then mostly kills, so that
/// nearly empty leaves merge with their siblings (`Tree::merge_underfull`)
/// between the cuts.
#[test]
fn crash_images_while_leaves_thin_out_and_merge_keep_the_acknowledged_history() {
    let (seeds, cuts) = seeds_and_cuts((4, 150), (20, 150));
    let mut shrank = 0;
    for seed in THINNING..THINNING + seeds {
        for cut in (1..=cuts).step_by(3) {
            shrank += u64::from(one_thinning_cut(seed, cut));
        }
    }
    assert!(
        shrank > 10,
        "the tree had lost leaves at only {shrank} cuts"
    );
}

/// One cut of the test above; whether the tree had fewer leaves at the
/// cut than after the preload (merged, or, rarely, emptied).
fn one_thinning_cut(seed: u64, cut: u64) -> bool {
    let fs = SimFs::new();
    let e = open_with(sim_opts(&fs));
    let mut s = e.session();
    let rows = (0..100i64).map(|i| {
        let key = Key::new("A", vec![Subscript::Int(i)]).unwrap();
        (key, Value::Str(format!("{i:>700}")))
    });
    let preloaded = preload(&mut s, rows, 100);
    e.checkpoint().unwrap();
    let leaves = |e: &Engine| e.check().unwrap()[0].1.leaves;
    let before = leaves(&e);
    fs.crash_at_sync(cut);
    let allowed = workload_after(&e, &mut s, seed, 150, preloaded, false);
    let shrank = leaves(&e) < before;
    let what = format!("fewer leaves at the cut: {shrank}");
    crash_and_recover(&fs, (e, s), (seed, cut), sim_opts, &allowed, &what);
    shrank
}

/// (seeds, cut points per seed): `short` by default, `long` with
/// `REDOUBT_LONG_TESTS` set.
fn seeds_and_cuts(short: (u64, u64), long: (u64, u64)) -> (u64, u64) {
    if std::env::var("REDOUBT_LONG_TESTS").is_ok() {
        long
    } else {
        short
    }
}

/// Opens a crash image of `fs` (chosen by `seed` and `cut`) with
/// `opts`; checks that it holds one of the `allowed` states and is
/// structurally valid. Returns the engine and the image.
fn recover(
    fs: &SimFs,
    seed: u64,
    cut: u64,
    opts: impl Fn(&SimFs) -> EngineOptions,
    allowed: &[State],
    what: &str,
) -> (Engine, SimFs) {
    let img = fs.crash_image(seed.wrapping_mul(31).wrapping_add(cut));
    let e = open_with(opts(&img));
    let got: State = contents(&e).into_iter().collect();
    assert!(
        allowed.contains(&got),
        "seed {seed} cut {cut} ({what}): recovered {} nodes; acknowledged state has {}{}",
        got.len(),
        allowed[0].len(),
        allowed
            .get(1)
            .map(|s| format!(", in-flight state {}", s.len()))
            .unwrap_or_default()
    );
    e.check()
        .unwrap_or_else(|err| panic!("seed {seed} cut {cut}: {err}"));
    (e, img)
}

/// The crash images again with flush cycles that write dozens of page
/// images through the WIJ, so that each cycle's images span several WIJ
/// stripes (five slots each in tests, see `wij/format.rs`) and are encoded
/// in several batches: a database whose long keys make a tree of a few
/// dozen branch pages, updated at random all over, a few transactions per
/// cycle (the other crash tests' trees have one or two branches, and
/// their cycles fit in one stripe).
#[test]
fn crash_images_of_cycles_spanning_wij_stripes_keep_the_acknowledged_history() {
    wide_cuts(7000, Wide::Update);
}

/// The crash images again while a tree of a few dozen branches loses
/// nine keys in ten: leaves merge, the branches above them thin out and
/// merge too, and the tree loses a level (the thinning test above has a
/// single branch).
#[test]
fn crash_images_while_branches_thin_out_and_merge_keep_the_acknowledged_history() {
    wide_cuts(8000, Wide::Thin);
}

/// The crash images again while the pages a KILL freed are taken back:
/// the preloaded wide tree lost nine rows in ten, so its free list is a
/// chain of five pages (30 free pages each in tests, see `free.rs`);
/// the workload puts the rows back, and each cycle takes pages from the
/// head of the list and lists its own frees in front of what it did not
/// touch.
#[test]
fn crash_images_while_a_long_free_list_is_taken_back_keep_the_acknowledged_history() {
    wide_cuts(9000, Wide::Refill);
}

/// What [`wide_workload`] does to the wide rows.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Wide {
    /// Random updates all over.
    Update,
    /// KILLs of nine rows in ten.
    Thin,
    /// The preload killed nine rows in ten; SETs put them back.
    Refill,
}

/// Every cut of the wide workload ([`wide_workload`]) on a copy of one
/// preloaded database.
fn wide_cuts(first_seed: u64, what: Wide) {
    let base = SimFs::new();
    let e = open_with(wide_opts(&base));
    let rows = (0..WIDE_ROWS).map(|i| (wide_key(i), Value::Int(i)));
    let mut preloaded = preload(&mut e.session(), rows, 400);
    if what == Wide::Refill {
        let mut s = e.session();
        for i in (0..WIDE_ROWS).filter(|i| i % 10 != 0) {
            s.kill(DB, &wide_key(i)).unwrap();
            preloaded.remove(&wide_key(i).encode());
        }
        e.checkpoint().unwrap();
    }
    let before = e.check().unwrap()[0].1.clone();
    if what == Wide::Refill {
        assert!(before.free_pages > 120, "{before:?}");
    } else {
        assert!(before.branches > 15, "{before:?}");
    }
    e.close().unwrap();
    // The closed engine's files, as they are.
    let copy = || base.crash_image_with(crate::storage::sim::CrashFate::KeepAll);
    // Uncut, the workload does what it is for.
    let fs = copy();
    let e = open_with(wide_opts(&fs));
    let opened = fs.syncs();
    wide_workload(&e, &mut e.session(), preloaded.clone(), first_seed, what);
    let syncs = fs.syncs() - opened;
    let after = e.check().unwrap()[0].1.clone();
    match what {
        Wide::Update => {}
        Wide::Thin => assert!(
            after.branches * 3 < before.branches && after.depth < before.depth,
            "{after:?} after {before:?}"
        ),
        Wide::Refill => assert!(
            after.free_pages * 2 < before.free_pages,
            "{after:?} after {before:?}"
        ),
    }
    drop(e);
    // A run syncs about 33 times (three cycles, six commits): every cut,
    // and one past the end.
    let (seeds, _) = seeds_and_cuts((2, 0), (12, 0));
    for seed in first_seed..first_seed + seeds {
        for cut in 1..=syncs + 1 {
            let fs = copy();
            let e = open_with(wide_opts(&fs));
            let mut s = e.session();
            fs.crash_at_sync(cut);
            let allowed = wide_workload(&e, &mut s, preloaded.clone(), seed, what);
            let name = format!("wide keys, {what:?}");
            crash_and_recover(&fs, (e, s), (seed, cut), wide_opts, &allowed, &name);
        }
    }
}

const WIDE_ROWS: i64 = 1200;

/// The key of row `i` of [`wide_workload`]: about a kilobyte, so that a
/// branch page holds eight.
fn wide_key(i: i64) -> Key {
    Key::new("C", vec![Subscript::Str(format!("{i:0>990}"))]).unwrap()
}

fn wide_opts(fs: &SimFs) -> EngineOptions {
    EngineOptions {
        cache_pages: 1024,
        ..sim_opts(fs)
    }
}

/// Three flush cycles of two transactions each over the preloaded wide
/// rows (`acked`), each transaction working on its sixth of the rows:
/// 60 SETs of random rows anywhere ([`Wide::Update`]), or the KILL of
/// nine rows in ten of its sixth ([`Wide::Thin`]), or SETs of them
/// ([`Wide::Refill`]). The states a crash image may hold.
fn wide_workload(
    e: &Engine,
    s: &mut crate::db::Session,
    mut acked: State,
    seed: u64,
    what: Wide,
) -> Vec<State> {
    let mut rng = StdRng::seed_from_u64(seed);
    let region = WIDE_ROWS / 6;
    for txn in 0..6 {
        let mut next = acked.clone();
        let done = (|| -> crate::error::Result<()> {
            s.tstart()?;
            let rows = (txn * region..(txn + 1) * region).filter(|i| i % 10 != 0);
            match what {
                Wide::Thin => {
                    for i in rows {
                        let key = wide_key(i);
                        s.kill(DB, &key)?;
                        next.remove(&key.encode());
                    }
                }
                Wide::Refill => {
                    for i in rows {
                        let key = wide_key(i);
                        let value = Value::Int(rng.gen_range(0..1_000_000));
                        s.set(DB, &key, &value)?;
                        next.insert(key.encode(), value);
                    }
                }
                Wide::Update => {
                    for _ in 0..60 {
                        let key = wide_key(rng.gen_range(0..WIDE_ROWS));
                        let value = Value::Int(rng.gen_range(0..1_000_000));
                        s.set(DB, &key, &value)?;
                        next.insert(key.encode(), value);
                    }
                }
            }
            s.tcommit()
        })();
        match done {
            Ok(()) => acked = next,
            Err(_) => return vec![acked, next],
        }
        if txn % 2 == 1 && e.checkpoint().is_err() {
            break;
        }
    }
    vec![acked]
}
