//! Seeding: a copy taken while writes and flush cycles go on, installed in
//! an empty folder, opened as a follower and brought up to date with the
//! journal after the copy, equals the source.

use std::path::Path;

use super::*;
use crate::db::{discard_interrupted_seed, SeedInstall, SeedPlan, SeedSnapshot};
use crate::error::EngineError;
use crate::journal::Journal;
use crate::Lsn;

fn open_at(fs: &SimFs, dir: &str, mirrored: bool) -> Engine {
    // The source keeps its journal: `catch_up` streams it after the copy
    // as a connected follower's floor would keep it.
    let opts = EngineOptions {
        mirrored,
        journal_keep_bytes: u64::MAX,
        ..sim_opts(fs)
    };
    Engine::open(Path::new(dir), opts).expect("open").0
}

/// Makes values big enough that the tree spans many pages.
const PAD: &str = "................................................................";

fn key(i: u64) -> Key {
    k(&format!("^A({i})"))
}

fn begin_install(fs: &SimFs, dir: &str, plan: SeedPlan) -> crate::error::Result<SeedInstall> {
    SeedInstall::begin(
        Arc::new(fs.clone()),
        Path::new(dir),
        sim_opts(fs).journal,
        plan,
    )
}

/// Copies `snap` into `dir` a few pages at a time, calling `between` after
/// every chunk (to write and flush on the source meanwhile).
fn install(fs: &SimFs, dir: &str, snap: &SeedSnapshot, between: impl FnMut()) {
    try_install(fs, dir, snap, between).expect("install");
}

fn try_install(
    fs: &SimFs,
    dir: &str,
    snap: &SeedSnapshot,
    mut between: impl FnMut(),
) -> crate::error::Result<()> {
    let plan = snap.plan().clone();
    let mut inst = begin_install(fs, dir, plan.clone())?;
    for d in &plan.databases {
        let mut at = 0;
        while at < d.pages {
            let n = 3.min(d.pages - at);
            let bytes = snap.read_pages(d.file_id, at, n).expect("read pages");
            inst.pages(d.file_id, at, &bytes)?;
            at += n;
            between();
        }
    }
    let mut at = plan.journal_start;
    while at < plan.journal_end {
        let (bytes, end) = snap.read_journal(at, 4096).expect("read journal");
        inst.journal(at, &bytes)?;
        at = end;
    }
    inst.finish()
}

/// Sends the source's journal after `from` to the follower, as streaming
/// does.
fn catch_up(src: &Engine, dst: &Engine, from: Lsn) {
    let j = src.journal();
    j.flush().unwrap();
    let mut at = from;
    while at < j.durable_lsn() {
        let (bytes, end) = j.read_raw(at, 64 << 10).unwrap();
        let records = Journal::decode_raw(at, dst.journal().last_crc(), &bytes).unwrap();
        let new_end = dst.journal().append_raw(at, &bytes).unwrap();
        assert_eq!(new_end, end);
        dst.journal().wait_durable(new_end).unwrap();
        dst.apply_received(records, new_end).unwrap();
        at = end;
    }
}

#[test]
fn a_copy_taken_under_writes_and_cycles_equals_the_source() {
    let fs = SimFs::new();
    let a = open_at(&fs, "/a", false);
    a.create_database(DB).unwrap();
    let mut s = a.session();
    for i in 0..3000u64 {
        s.set(DB, &key(i), &Value::Str(format!("first {i} {PAD}")))
            .unwrap();
    }
    // A transaction open across the copy: its start is before the copy's
    // cycle, so the journal part must reach back to it.
    let mut open_txn = a.session();
    open_txn.tstart().unwrap();
    open_txn
        .set(DB, &k("^B(1)"), &Value::Str("in flight".into()))
        .unwrap();
    for i in 0..500u64 {
        s.set(DB, &key(i), &Value::Str(format!("second {i}")))
            .unwrap();
    }

    let snap = a.begin_seed().unwrap();
    let at_copy = contents(&a);
    let plan = snap.plan().clone();
    assert!(plan.journal_start <= plan.journal_end);
    assert!(plan.total_pages() > 20, "a copy worth the name: {plan:?}");
    let mut n = 0u64;
    let mut kept_max = 0;
    install(&fs, "/b", &snap, || {
        // Overwrite and add keys all over the tree and flush, so cycles
        // rewrite pages the copy has not read yet, and split some.
        for j in 0..40u64 {
            let i = (n * 97 + j * 31) % 3000;
            s.set(DB, &key(i), &Value::Str(format!("during {n}.{j}")))
                .unwrap();
            s.set(DB, &k(&format!("^A({i},{n})")), &Value::Str(PAD.into()))
                .unwrap();
        }
        s.kill(DB, &key(n % 3000)).unwrap();
        n += 1;
        a.checkpoint().unwrap();
        kept_max = kept_max.max(snap.kept_bytes());
    });
    assert!(
        kept_max > 0,
        "cycles overwrote pages the copy had not read; the test must exercise that"
    );
    drop(snap);

    let b = open_at(&fs, "/b", true);
    b.check().expect("the copy is a valid tree");
    assert_eq!(b.journal().end_lsn(), plan.journal_end);
    assert_eq!(
        b.epoch_history(),
        a.epoch_history()
            .into_iter()
            .filter(|(_, s)| *s < plan.journal_end)
            .collect::<Vec<_>>()
    );
    // Exactly the source as of the copy (the open transaction's change
    // included, still open), nothing from during the copy.
    assert_eq!(contents(&b), at_copy);
    let bs = b.session();
    assert_eq!(
        bs.get(DB, &key(7)).unwrap(),
        Some(Value::Str("second 7".into()))
    );
    assert_eq!(
        bs.get(DB, &key(2999)).unwrap(),
        Some(Value::Str(format!("first 2999 {PAD}")))
    );

    open_txn.tcommit().unwrap();
    s.set(DB, &k("^C(1)"), &Value::Int(1)).unwrap();
    catch_up(&a, &b, plan.journal_end);
    assert_eq!(b.journal().end_lsn(), a.journal().end_lsn());
    assert_eq!(contents(&b), contents(&a));
    assert_eq!(
        bs.get(DB, &k("^B(1)")).unwrap(),
        Some(Value::Str("in flight".into()))
    );
    b.check().unwrap();

    // And again after a restart of the copy (its own cycles and replay).
    drop(bs);
    b.close().unwrap();
    let b = open_at(&fs, "/b", true);
    assert_eq!(contents(&b), contents(&a));
}

#[test]
fn an_interrupted_seed_is_refused_and_discarded_whole() {
    let fs = SimFs::new();
    let a = open_at(&fs, "/a", false);
    a.create_database(DB).unwrap();
    let mut s = a.session();
    for i in 0..200u64 {
        s.set(DB, &key(i), &Value::Int(i as i64)).unwrap();
    }
    let snap = a.begin_seed().unwrap();
    let plan = snap.plan().clone();
    let mut inst = begin_install(&fs, "/b", plan.clone()).unwrap();
    let d = &plan.databases[0];
    inst.pages(d.file_id, 0, &snap.read_pages(d.file_id, 0, 1).unwrap())
        .unwrap();
    drop(inst); // the member died mid-seed

    let err = Engine::open(Path::new("/b"), sim_opts(&fs)).err().unwrap();
    assert!(
        err.to_string()
            .contains("seed into this folder never finished"),
        "{err}"
    );
    discard_interrupted_seed(&fs, Path::new("/b")).unwrap();
    assert!(!crate::db::holds_store(&fs, Path::new("/b")).unwrap());
    drop(snap);
    install(&fs, "/b", &a.begin_seed().unwrap(), || {});
    let b = open_at(&fs, "/b", true);
    assert_eq!(contents(&b), contents(&a));
}

/// A member that dies at any sync of a seed's installation (a crash
/// image of its disk, torn writes and unsynced folder entries included)
/// either opens the whole seed, equal to the source, or is refused as an
/// interrupted seed, and a new seed after discarding it succeeds: never a
/// half-installed member that opens, and never one that cannot be seeded
/// again.
#[test]
fn a_seed_cut_at_any_sync_opens_whole_or_is_refused_and_seeded_again() {
    let fs = SimFs::new();
    let a = open_at(&fs, "/a", false);
    a.create_database(DB).unwrap();
    let mut s = a.session();
    for i in 0..400u64 {
        s.set(DB, &key(i), &Value::Str(format!("{i} {PAD}")))
            .unwrap();
    }
    let want = contents(&a);
    // Each installation streams its own copy (a copy is read once, in
    // order); nothing is written meanwhile, so they are all the same.
    let seed_into = |fs: &SimFs| try_install(fs, "/b", &a.begin_seed().unwrap(), || {});
    // Uncut, to count the installation's syncs.
    let whole = SimFs::new();
    seed_into(&whole).unwrap();
    let syncs = whole.syncs();
    assert!(syncs > 5, "{syncs} syncs");
    let opts = |fs: &SimFs| EngineOptions {
        mirrored: true,
        ..sim_opts(fs)
    };
    let (mut opened, mut refused) = (0, 0);
    for cut in 1..=syncs + 1 {
        for seed in 0..3 {
            let b = SimFs::new();
            b.crash_at_sync(cut);
            let done = seed_into(&b);
            assert_eq!(done.is_ok(), cut > syncs, "cut {cut}");
            b.crash_now();
            let image = b.crash_image(seed);
            let dir = Path::new("/b");
            let e = if crate::db::interrupted_seed(&image, dir) {
                let err = Engine::open(dir, opts(&image)).err().expect("refused");
                assert!(
                    err.to_string()
                        .contains("seed into this folder never finished"),
                    "cut {cut} seed {seed}: {err}"
                );
                refused += 1;
                discard_interrupted_seed(&image, dir).unwrap();
                seed_into(&image).unwrap();
                Engine::open(dir, opts(&image)).unwrap().0
            } else if !crate::db::holds_store(&image, dir).unwrap() {
                // Cut before the marker was durable: as if never begun.
                seed_into(&image).unwrap();
                Engine::open(dir, opts(&image)).unwrap().0
            } else {
                opened += 1;
                Engine::open(dir, opts(&image))
                    .unwrap_or_else(|err| panic!("cut {cut} seed {seed}: {err}"))
                    .0
            };
            assert_eq!(contents(&e), want, "cut {cut} seed {seed}");
        }
    }
    assert!(
        refused > 0 && opened > 0,
        "{refused} refused, {opened} opened"
    );
}

#[test]
fn seeds_go_only_into_empty_folders_and_only_from_a_primary() {
    let fs = SimFs::new();
    let a = open_at(&fs, "/a", false);
    a.create_database(DB).unwrap();
    let snap = a.begin_seed().unwrap();
    let err = begin_install(&fs, "/a", snap.plan().clone()).err().unwrap();
    assert!(err.to_string().contains("already holds a store"), "{err}");

    let f = open_at(&fs, "/f", true);
    assert!(matches!(f.begin_seed(), Err(EngineError::NotPrimary(_))));
}

#[test]
fn damaged_seed_pages_are_refused() {
    let fs = SimFs::new();
    let a = open_at(&fs, "/a", false);
    a.create_database(DB).unwrap();
    a.session().set(DB, &key(1), &Value::Int(1)).unwrap();
    let snap = a.begin_seed().unwrap();
    let plan = snap.plan().clone();
    let mut inst = begin_install(&fs, "/b", plan.clone()).unwrap();
    let d = &plan.databases[0];
    let mut bytes = snap.read_pages(d.file_id, 0, d.pages).unwrap();
    bytes[100] ^= 1;
    let err = inst.pages(d.file_id, 0, &bytes).err().unwrap();
    assert!(err.to_string().contains("page 0"), "{err}");
    // Out of order is refused too.
    let err = inst.pages(d.file_id, 1, &bytes[..8192]).err().unwrap();
    assert!(
        err.to_string().contains("expected whole pages from 0"),
        "{err}"
    );
}

#[test]
fn a_copy_covers_databases_never_written_and_writes_racing_its_cycle() {
    // An empty database beside a busy one: its meta was never stamped by
    // a cycle, yet the copy must open and hold every write.
    let fs = SimFs::new();
    let a = open_at(&fs, "/a", false);
    a.create_database(DB).unwrap();
    a.create_database("EMPTY").unwrap();
    let mut s = a.session();
    for i in 0..500u64 {
        s.set(DB, &key(i), &Value::Str(format!("v {i} {PAD}")))
            .unwrap();
    }
    a.checkpoint().unwrap();
    for i in 0..50u64 {
        s.set(DB, &key(i), &Value::Int(i as i64)).unwrap();
    }
    let snap = a.begin_seed().unwrap();
    assert!(snap.plan().databases.iter().any(|d| d.name == "EMPTY"));
    // Every file was stamped by the copy's cycle, so the journal part
    // starts there, not at the beginning of time.
    assert!(snap.plan().journal_start > Lsn::ZERO, "{:?}", snap.plan());
    install(&fs, "/b", &snap, || {});
    drop(snap);
    let b = open_at(&fs, "/b", true);
    assert_eq!(contents(&b), contents(&a));
    // The empty database exists there and takes the stream's writes.
    s.set("EMPTY", &k("^A(1)"), &Value::Int(7)).unwrap();
    catch_up(&a, &b, b.journal().end_lsn());
    assert_eq!(
        b.session().get("EMPTY", &k("^A(1)")).unwrap(),
        Some(Value::Int(7))
    );
}

#[test]
fn a_copy_stops_when_its_member_stops_being_primary() {
    let fs = SimFs::new();
    let a = open_at(&fs, "/a", false);
    a.create_database(DB).unwrap();
    a.session().set(DB, &key(1), &Value::Int(1)).unwrap();
    let snap = a.begin_seed().unwrap();
    let d = snap.plan().databases[0].clone();
    snap.read_pages(d.file_id, 0, 1).unwrap();
    a.set_read_only(None);
    assert!(matches!(
        snap.read_pages(d.file_id, 1, 1),
        Err(EngineError::NotPrimary(_))
    ));
    assert!(snap.still_primary().is_err());
}
