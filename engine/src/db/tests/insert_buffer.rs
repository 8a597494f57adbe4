//! The insert buffer against a `BTreeMap` reference: a database several
//! times its pool, loaded in random key order, then random operations
//! that meet buffered keys: point reads, SETs and ZKILLs of buffered keys,
//! reads of ranges (which read the buffer alongside the tree), KILLs of
//! subtrees (which merge first), transactions rolled back over buffered
//! keys, flush cycles while keys are buffered, clean re-opens and
//! crashes. Point reads of recent keys are compared after every step,
//! everything at the end and after each re-open or crash.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;
use crate::db::{Direction, Session};
use crate::model::{self, Subscript};

/// First subscripts used: the preload and the operations draw from these.
const SPACE: i64 = 4000;

/// A key for an operation: any, or one of the keys set lately (most
/// likely still buffered), counted back from the newest.
#[derive(Debug, Clone)]
enum Pick {
    Any(Key),
    Recent(usize),
}

#[derive(Debug, Clone)]
enum Op {
    Set(Pick, Value),
    Get(Pick),
    ZKill(Pick),
    Kill(Key),
    Incr(Pick, i64),
    Order(Key, bool),
    Data(Key),
    Query(Key),
    /// A scan of the key's subtree, or of the whole global.
    Scan(Option<Key>),
    TStart,
    TCommit,
    TRollback,
    /// A flush cycle without merging the buffer first.
    Cycle,
    Reopen,
    Crash(u64),
}

fn key() -> impl Strategy<Value = Key> {
    (0..SPACE, prop::option::weighted(0.2, 0i64..3)).prop_map(|(i, j)| {
        let mut subs = vec![Subscript::Int(i)];
        subs.extend(j.map(Subscript::Int));
        Key::new("A", subs).expect("valid")
    })
}

fn pick() -> impl Strategy<Value = Pick> {
    prop_oneof![
        key().prop_map(Pick::Any),
        (0usize..RECENT).prop_map(Pick::Recent),
    ]
}

/// Keys set lately that are remembered, and read back after every step.
const RECENT: usize = 12;

fn value() -> impl Strategy<Value = Value> {
    prop_oneof![
        20 => "[a-z]{10,60}".prop_map(Value::Str),
        // Too large for a leaf: never buffered, even for a buffered key.
        1 => (2100usize..5000).prop_map(|n| Value::Bytes((0..n).map(|i| (i * 3) as u8).collect())),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        30 => (pick(), value()).prop_map(|(k, v)| Op::Set(k, v)),
        4 => pick().prop_map(Op::Get),
        4 => pick().prop_map(Op::ZKill),
        1 => key().prop_map(Op::Kill),
        2 => (pick(), -3i64..3).prop_map(|(k, by)| Op::Incr(k, by)),
        2 => (key(), any::<bool>()).prop_map(|(k, f)| Op::Order(k, f)),
        1 => key().prop_map(Op::Data),
        1 => key().prop_map(Op::Query),
        1 => prop::option::weighted(0.8, key()).prop_map(Op::Scan),
        2 => Just(Op::TStart),
        2 => Just(Op::TCommit),
        1 => Just(Op::TRollback),
        2 => Just(Op::Cycle),
        1 => Just(Op::Reopen),
        1 => any::<u64>().prop_map(Op::Crash),
    ]
}

/// The reference: encoded key -> value, with the open transaction's undo.
#[derive(Default)]
struct Reference {
    map: BTreeMap<Vec<u8>, Value>,
    /// `Some` while a transaction is open: (key, before) in order.
    undo: Option<Vec<(Vec<u8>, Option<Value>)>>,
}

impl Reference {
    fn put(&mut self, key: Vec<u8>, value: Option<Value>) {
        let before = match value {
            Some(v) => self.map.insert(key.clone(), v),
            None => self.map.remove(&key),
        };
        if let Some(u) = &mut self.undo {
            u.push((key, before));
        }
    }

    fn rollback(&mut self) {
        for (k, before) in self.undo.take().unwrap_or_default().into_iter().rev() {
            match before {
                Some(v) => self.map.insert(k, v),
                None => self.map.remove(&k),
            };
        }
    }

    /// The first key at or after `from` (and before `to`).
    fn first_in(&self, from: &[u8], to: &[u8]) -> Option<&Vec<u8>> {
        self.map
            .range(from.to_vec()..to.to_vec())
            .next()
            .map(|(k, _)| k)
    }
}

fn opts(fs: &SimFs) -> EngineOptions {
    EngineOptions {
        cache_pages: 32,
        ..sim_opts(fs)
    }
}

fn preload(e: &Engine, s: &mut Session, r: &mut Reference, seed: u64) {
    // A random order of most of the space, in transactions of 200.
    let mut x = seed | 1;
    let mut ids: Vec<i64> = (0..SPACE).collect();
    for i in (1..ids.len()).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        ids.swap(i, (x % (i as u64 + 1)) as usize);
    }
    for chunk in ids[..SPACE as usize * 3 / 4].chunks(200) {
        s.tstart().unwrap();
        for &i in chunk {
            let key = Key::new("A", vec![Subscript::Int(i)]).unwrap();
            let value = Value::Str(format!("preloaded {i:>140}"));
            s.set(DB, &key, &value).unwrap();
            r.put(key.encode(), Some(value));
        }
        s.tcommit().unwrap();
        let resident = e.resident_pages();
        assert!(
            resident <= 32,
            "{resident} pages resident with a bound of 32"
        );
    }
}

/// An engine with [`opts`] on `fs`, [`preload`]ed: a session and the
/// reference of what it holds.
fn preloaded(fs: &SimFs, seed: u64) -> (Engine, Session, Reference) {
    let e = open_with(opts(fs));
    let mut s = e.session();
    let mut r = Reference::default();
    preload(&e, &mut s, &mut r, seed);
    (e, s, r)
}

fn same_as_reference(e: &Engine, r: &Reference) {
    // Buffered keys count in the check, and the scans read them.
    for (name, check) in e.check().unwrap() {
        assert_eq!(check.entries, r.map.len() as u64, "{name}: {check:?}");
    }
    let got = contents(e);
    let want: Vec<_> = r.map.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    assert_eq!(got.len(), want.len(), "number of nodes");
    assert!(got == want, "contents differ from the reference");
}

fn is_buffered(e: &Engine, key: &Key) -> bool {
    e.inner
        .db(DB)
        .unwrap()
        .tree
        .read()
        .is_buffered(&key.encode())
}

/// Runs `ops` after a preload; returns how many operations met buffered
/// keys: on one key, that key buffered; over a range, any key.
fn run(seed: u64, ops: Vec<Op>) -> usize {
    let mut fs = SimFs::new();
    let mut e = open_with(opts(&fs));
    let mut s: Session = e.session();
    let mut r = Reference::default();
    preload(&e, &mut s, &mut r, seed);
    let mut met = 0;
    let mut recent: Vec<Key> = Vec::new();
    let resolve = |p: Pick, recent: &Vec<Key>| match p {
        Pick::Recent(n) if !recent.is_empty() => {
            recent[recent.len() - 1 - n % recent.len()].clone()
        }
        Pick::Recent(n) => Key::new("A", vec![Subscript::Int(n as i64)]).unwrap(),
        Pick::Any(k) => k,
    };
    for op in ops {
        match op {
            Op::Set(key, value) => {
                let key = resolve(key, &recent);
                met += usize::from(is_buffered(&e, &key));
                s.set(DB, &key, &value).unwrap();
                r.put(key.encode(), Some(value));
                if !recent.contains(&key) {
                    recent.push(key);
                }
                if recent.len() > RECENT {
                    recent.remove(0);
                }
            }
            Op::Get(key) => {
                let key = resolve(key, &recent);
                met += usize::from(is_buffered(&e, &key));
                assert_eq!(
                    s.get(DB, &key).unwrap(),
                    r.map.get(&key.encode()).cloned(),
                    "GET {key}"
                );
            }
            Op::ZKill(key) => {
                let key = resolve(key, &recent);
                met += usize::from(is_buffered(&e, &key));
                let had = r.map.contains_key(&key.encode());
                assert_eq!(s.zkill(DB, &key).unwrap(), had, "zkill {key}");
                if had {
                    r.put(key.encode(), None);
                }
            }
            Op::Kill(key) => {
                let enc = key.encode();
                let doomed: Vec<_> = r
                    .map
                    .range(enc.clone()..model::subtree_end(&enc))
                    .map(|(k, _)| k.clone())
                    .collect();
                assert_eq!(s.kill(DB, &key).unwrap(), doomed.len() as u64, "kill {key}");
                for k in doomed {
                    r.put(k, None);
                }
            }
            Op::Incr(key, by) => {
                let key = resolve(key, &recent);
                met += usize::from(is_buffered(&e, &key));
                let old = match r.map.get(&key.encode()) {
                    Some(Value::Int(i)) => Some(*i),
                    None => Some(0),
                    Some(_) => None,
                };
                match old {
                    Some(old) => {
                        assert_eq!(s.increment(DB, &key, by).unwrap(), old + by);
                        r.put(key.encode(), Some(Value::Int(old + by)));
                    }
                    None => assert!(s.increment(DB, &key, by).is_err()),
                }
            }
            Op::Order(key, forward) => {
                met += usize::from(buffered(&e) > 0);
                let parent = key.parent().expect("subscripted");
                let (penc, enc) = (parent.encode(), key.encode());
                let dir = if forward {
                    Direction::Forward
                } else {
                    Direction::Backward
                };
                let want = if forward {
                    r.first_in(&model::subtree_end(&enc), &model::subtree_end(&penc))
                        .cloned()
                } else {
                    r.map
                        .range(penc.clone()..enc.clone())
                        .next_back()
                        .map(|(k, _)| k.clone())
                        .filter(|k| k.len() > penc.len())
                };
                let want = want.map(|k| model::decode_subscript_at(&k, penc.len()).unwrap().0);
                assert_eq!(s.order(DB, &key, dir).unwrap(), want, "$ORDER {key}");
            }
            Op::Data(key) => {
                met += usize::from(buffered(&e) > 0);
                let enc = key.encode();
                let value = r.map.contains_key(&enc);
                let mut after = enc.clone();
                after.push(0);
                let children = r.first_in(&after, &model::subtree_end(&enc)).is_some();
                let want = u8::from(value) + 10 * u8::from(children);
                assert_eq!(s.data(DB, &key).unwrap(), want, "$DATA {key}");
            }
            Op::Query(key) => {
                met += usize::from(buffered(&e) > 0);
                let mut after = key.encode();
                after.push(0);
                let want = r
                    .first_in(
                        &after,
                        &model::subtree_end(&model::encode_global_prefix("A")),
                    )
                    .map(|k| Key::decode(k).unwrap());
                assert_eq!(
                    s.query(DB, &key, Direction::Forward).unwrap(),
                    want,
                    "$QUERY {key}"
                );
            }
            Op::Scan(root) => {
                met += usize::from(buffered(&e) > 0);
                let root = root.unwrap_or_else(|| k("^A"));
                let enc = root.encode();
                let want: Vec<_> = r
                    .map
                    .range(enc.clone()..model::subtree_end(&enc))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                let mut got = Vec::new();
                s.scan(DB, &root, |key, value| {
                    got.push((key.encode(), value));
                    true
                })
                .unwrap();
                assert!(
                    got == want,
                    "scan of {root}: {} rows, {} wanted",
                    got.len(),
                    want.len()
                );
            }
            Op::TStart => {
                if r.undo.is_none() {
                    s.tstart().unwrap();
                    r.undo = Some(Vec::new());
                }
            }
            Op::TCommit => {
                if r.undo.take().is_some() {
                    s.tcommit().unwrap();
                }
            }
            Op::TRollback => {
                if r.undo.is_some() {
                    s.trollback(false).unwrap();
                    r.rollback();
                }
            }
            Op::Cycle => {
                e.inner.checkpoint().unwrap();
                // Buffered keys are in no page: recovery must replay them.
                let db = e.inner.db(DB).unwrap();
                let tree = db.tree.read();
                if let Some(oldest) = tree.buffer_oldest() {
                    assert!(
                        tree.meta().redo_from <= oldest,
                        "redo_from past a buffered key"
                    );
                }
            }
            Op::Reopen => {
                drop(s);
                r.rollback();
                e.close().unwrap();
                e = open_with(opts(&fs));
                s = e.session();
                same_as_reference(&e, &r);
            }
            Op::Crash(seed) => {
                fs.crash_now();
                let img = fs.crash_image(seed);
                drop(s);
                drop(e);
                r.rollback();
                fs = img;
                e = open_with(opts(&fs));
                s = e.session();
                same_as_reference(&e, &r);
            }
        }
        for key in &recent {
            assert_eq!(
                s.get(DB, key).unwrap(),
                r.map.get(&key.encode()).cloned(),
                "GET {key}"
            );
        }
    }
    drop(s); // rolls back an open transaction
    r.rollback();
    same_as_reference(&e, &r);
    met
}

fn buffered(e: &Engine) -> usize {
    e.buffered_keys()
}

fn cases() -> u32 {
    if std::env::var("REDOUBT_LONG_TESTS").is_ok() {
        400
    } else {
        24
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), max_shrink_iters: 500, ..ProptestConfig::default() })]
    #[test]
    fn the_insert_buffer_matches_a_btreemap(seed in any::<u64>(), ops in prop::collection::vec(op(), 1..300)) {
        run(seed, ops);
    }
}

#[test]
fn a_random_load_larger_than_the_pool_goes_through_the_buffer() {
    // The preload alone: three quarters of the space in random order, far
    // more than a 32-page pool holds.
    let fs = SimFs::new();
    let (e, s, r) = preloaded(&fs, 7);
    assert!(buffered(&e) > 0, "nothing was buffered");
    // Every key reads back, buffered or not, and the pool kept its bound.
    for (k, v) in &r.map {
        let key = Key::decode(k).unwrap();
        assert_eq!(s.get(DB, &key).unwrap().as_ref(), Some(v));
    }
    assert!(
        e.resident_pages() <= 32,
        "{} pages resident",
        e.resident_pages()
    );
    drop(s);
    let before = buffered(&e);
    same_as_reference(&e, &r);
    assert_eq!(buffered(&e), before, "the scans merged the buffer");
}

#[test]
fn reads_of_ranges_see_buffered_keys_in_a_poisoned_store() {
    // A failed sync poisons the store with keys buffered: they cannot be
    // merged any more (a merge changes pages), yet scans, $ORDER, $DATA
    // and $QUERY still read them, alongside the tree.
    let fs = SimFs::new();
    let (e, mut s, r) = preloaded(&fs, 7);
    let n = buffered(&e);
    assert!(n > 0, "nothing was buffered");
    // A SET that changes nothing, whose commit's sync fails.
    let (k0, v0) = r.map.iter().next().unwrap();
    fs.fail_next_sync();
    let k0 = Key::decode(k0).unwrap();
    assert!(s.set(DB, &k0, v0).is_err());
    let err = s.set(DB, &k0, v0).unwrap_err();
    assert!(err.to_string().contains("poison"), "{err}");
    same_as_reference(&e, &r);
    let mut firsts = 0;
    let mut at = Key::new("A", vec![Subscript::Str(String::new())]).unwrap();
    while let Some(sub) = s.order(DB, &at, Direction::Forward).unwrap() {
        let key = Key::new("A", vec![sub]).unwrap();
        assert_ne!(s.data(DB, &key).unwrap(), 0, "$DATA {key}");
        firsts += 1;
        at = key;
    }
    let want = r
        .map
        .keys()
        .map(|k| Key::decode(k).unwrap().subs[0].clone())
        .collect::<std::collections::BTreeSet<_>>();
    assert_eq!(firsts, want.len(), "$ORDER over the first level");
    let (last, _) = r.map.iter().next_back().unwrap();
    let last = Key::decode(last).unwrap();
    assert_eq!(s.query(DB, &last, Direction::Forward).unwrap(), None);
    assert_eq!(buffered(&e), n, "nothing was merged");
}

#[test]
fn every_operation_sequence_meets_buffered_keys() {
    // The operations above run with keys buffered, not only after merges.
    let ops: Vec<Op> = (0..200)
        .map(|i| {
            // New keys (no preloaded key has a second subscript).
            let key = Key::new(
                "A",
                vec![Subscript::Int((i * 7919) % SPACE), Subscript::Int(5)],
            )
            .unwrap();
            match i % 8 {
                0 | 1 => Op::Set(Pick::Any(key), Value::Str(format!("v{i}"))),
                2 => Op::Get(Pick::Recent(1)),
                3 => Op::ZKill(Pick::Recent(2)),
                4 => Op::Order(key, i % 16 == 4),
                5 => Op::Scan((i % 3 == 0).then_some(key)),
                6 => Op::Data(key),
                _ => Op::Set(Pick::Recent(0), Value::Str(format!("w{i}"))),
            }
        })
        .collect();
    let met = run(11, ops);
    assert!(met > 60, "only {met} operations met buffered keys");
}

#[test]
fn a_large_database_reopened_builds_its_filter_in_the_background_and_buffers_again() {
    let fs = SimFs::new();
    let e = open_with(opts(&fs));
    let mut r = Reference::default();
    // Well past four pools of 32 pages: built in the background at open.
    load_large(&e, &mut r);
    e.close().unwrap();
    // Not from a kept filter (`a_clean_restart_keeps_the_key_filter...`).
    use crate::storage::Vfs;
    fs.remove(&kept_filter(&fs).unwrap()).unwrap();

    let e = open_with(opts(&fs));
    let mut s = e.session();
    let mut i = 0;
    let started = std::time::Instant::now();
    while e.buffered_keys() == 0 {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(60),
            "the buffer never took a key after reopening"
        );
        // New keys (odd halves) scattered over the tree.
        let key = Key::new(
            "B",
            vec![Subscript::Int(i * 7919 % 12_000), Subscript::Int(1)],
        )
        .unwrap();
        s.set(DB, &key, &v("1")).unwrap();
        r.put(key.encode(), Some(v("1")));
        i += 1;
    }
    // No key that existed before the reopen is taken for a new one (it
    // would then be in a leaf and in the buffer, which the check finds).
    s.tstart().unwrap();
    for j in 0..12_000i64 {
        let key = Key::new("B", vec![Subscript::Int(j)]).unwrap();
        s.set(DB, &key, &v("2")).unwrap();
        r.put(key.encode(), Some(v("2")));
    }
    s.tcommit().unwrap();
    e.check().unwrap();
    drop(s);
    let got = contents(&e);
    let want: Vec<_> = r.map.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    assert!(got == want, "contents differ from the reference");
    e.check().unwrap();
}

/// The kept key filter's file, if there is one.
fn kept_filter(fs: &SimFs) -> Option<std::path::PathBuf> {
    use crate::storage::Vfs;
    let listing = fs.list(Path::new("/data/databases")).unwrap();
    listing
        .into_iter()
        .find(|p| p.extension().is_some_and(|e| e == "kf"))
}

/// Loads 12,000 rows (a database of four pools or more, whose filter a
/// reopen builds in the background) into a reference too.
fn load_large(e: &Engine, r: &mut Reference) {
    let mut s = e.session();
    let value = Value::Str("x".repeat(150));
    for chunk in (0..12_000i64).collect::<Vec<_>>().chunks(1000) {
        s.tstart().unwrap();
        for &i in chunk {
            let key = Key::new("B", vec![Subscript::Int(i * 7 % 12_000)]).unwrap();
            s.set(DB, &key, &value).unwrap();
            r.put(key.encode(), Some(value.clone()));
        }
        s.tcommit().unwrap();
    }
}

/// New keys between the loaded ones, then every loaded key again: the
/// new ones may be buffered, the loaded ones never (their leaf holds
/// them: the check finds a key in both). Returns how many new keys were
/// buffered.
fn new_keys_then_old_ones(e: &Engine, r: &mut Reference, tag: i64) -> usize {
    let mut s = e.session();
    for i in 0..200i64 {
        let key = Key::new(
            "B",
            vec![Subscript::Int(i * 7919 % 12_000), Subscript::Int(tag)],
        )
        .unwrap();
        s.set(DB, &key, &v("\"new\"")).unwrap();
        r.put(key.encode(), Some(v("\"new\"")));
    }
    let buffered = e.buffered_keys();
    s.tstart().unwrap();
    for j in 0..12_000i64 {
        let key = Key::new("B", vec![Subscript::Int(j)]).unwrap();
        s.set(DB, &key, &Value::Int(tag)).unwrap();
        r.put(key.encode(), Some(Value::Int(tag)));
    }
    s.tcommit().unwrap();
    e.check().unwrap();
    same_as_reference(e, r);
    buffered
}

/// A clean shutdown keeps each database's key filter, and the next open
/// buffers at once instead of reading every key; a crash since, a damaged
/// file or a resized pool builds it from the keys again.
#[test]
fn a_clean_restart_keeps_the_key_filter_and_anything_else_builds_it() {
    let fs = SimFs::new();
    let mut r = Reference::default();
    let e = open_with(opts(&fs));
    load_large(&e, &mut r);
    e.close().unwrap();
    assert!(kept_filter(&fs).is_some(), "a clean close keeps the filter");

    let (e, report) = Engine::open(Path::new("/data"), opts(&fs)).unwrap();
    assert_eq!(report.key_filters_kept, vec![DB.to_string()]);
    assert_eq!(e.pool_stats().buffering_databases, 1, "buffering at once");
    assert!(kept_filter(&fs).is_none(), "read once, then removed");
    let buffered = new_keys_then_old_ones(&e, &mut r, 1);
    assert!(buffered > 100, "{buffered} of 200 new keys buffered");

    // A crash: the image has no kept filter, and its recovery builds one.
    let image = fs.crash_image(7);
    e.close().unwrap();
    assert!(kept_filter(&image).is_none());
    let (e, report) = Engine::open(Path::new("/data"), opts(&image)).unwrap();
    assert!(report.key_filters_kept.is_empty());
    let mut ri = Reference {
        map: contents(&e).into_iter().collect(),
        ..Reference::default()
    };
    new_keys_then_old_ones(&e, &mut ri, 2);
    drop(e);

    // A damaged file: not used, removed, built.
    let (e, report) = Engine::open(Path::new("/data"), opts(&fs)).unwrap();
    assert_eq!(report.key_filters_kept, vec![DB.to_string()]);
    e.close().unwrap();
    let kept = kept_filter(&fs).unwrap();
    fs.flip_bit(&kept, 100, 3).unwrap();
    let (e, report) = Engine::open(Path::new("/data"), opts(&fs)).unwrap();
    assert!(report.key_filters_kept.is_empty());
    assert!(kept_filter(&fs).is_none());
    new_keys_then_old_ones(&e, &mut r, 3);
    e.close().unwrap();

    // Another pool: another budget, another filter.
    let bigger = EngineOptions {
        cache_pages: 64,
        ..opts(&fs)
    };
    let (e, report) = Engine::open(Path::new("/data"), bigger.clone()).unwrap();
    assert!(report.key_filters_kept.is_empty());
    new_keys_then_old_ones(&e, &mut r, 4);
    // Dropping the last handle closes cleanly too.
    drop(e);
    let (e, report) = Engine::open(Path::new("/data"), bigger).unwrap();
    assert_eq!(report.changes_replayed, 0);
    assert_eq!(report.key_filters_kept, vec![DB.to_string()]);
    same_as_reference(&e, &r);
}

/// A clean shutdown cut at any of its syncs (the last flush, marking the
/// WIJ clean, keeping the filter): the image opens with every key, its
/// filter kept only if the file was whole, and new keys and updates of
/// old ones then land once each.
#[test]
fn a_shutdown_cut_at_any_sync_keeps_a_whole_filter_or_none() {
    let base = SimFs::new();
    let mut r = Reference::default();
    let e = open_with(opts(&base));
    load_large(&e, &mut r);
    // Keys waiting in the buffer at shutdown: the last flush merges them.
    new_keys_then_old_ones(&e, &mut r, 1);
    // The disk as it is, keys still buffered (not as the drop below
    // leaves it, closed cleanly).
    let before_close = base.crash_image_with(crate::storage::sim::CrashFate::KeepAll);
    let copy = || before_close.crash_image_with(crate::storage::sim::CrashFate::KeepAll);
    // Opened from a crash image, the filter is built in the background:
    // the shutdown keeps it once built.
    let open_built = |fs: &SimFs| {
        let (e, _) = Engine::open(Path::new("/data"), opts(fs)).unwrap();
        while e.pool_stats().buffering_databases == 0 {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        e
    };
    let whole = copy();
    let e2 = open_built(&whole);
    let opened = whole.syncs();
    e2.close().unwrap();
    let syncs = whole.syncs() - opened;
    drop(e);
    let mut kept = 0;
    for cut in 1..=syncs + 1 {
        for seed in 0..2 {
            let fs = copy();
            let e = open_built(&fs);
            fs.crash_at_sync(cut);
            let _ = e.close();
            let image = fs.crash_image(seed);
            let (e, report) = Engine::open(Path::new("/data"), opts(&image))
                .unwrap_or_else(|err| panic!("cut {cut} seed {seed}: {err}"));
            kept += report.key_filters_kept.len();
            // The first sync is the last flush's: no file yet.
            assert!(cut > 1 || report.key_filters_kept.is_empty());
            e.check()
                .unwrap_or_else(|err| panic!("cut {cut} seed {seed}: {err}"));
            let mut ri = Reference {
                map: r.map.clone(),
                ..Reference::default()
            };
            same_as_reference(&e, &ri);
            new_keys_then_old_ones(&e, &mut ri, 2);
        }
    }
    // Images cut once the file was whole keep it (a torn one cannot).
    assert!(kept > 0, "no cut kept the filter ({syncs} syncs)");
}

#[test]
fn the_write_daemon_merges_a_buffer_no_one_adds_to() {
    let fs = SimFs::new();
    let e = open_with(EngineOptions {
        flush_interval: Some(std::time::Duration::from_millis(20)),
        ..opts(&fs)
    });
    let mut s = e.session();
    let mut r = Reference::default();
    preload(&e, &mut s, &mut r, 3);
    // The daemon may have merged some already; buffer more and then stop.
    let mut i = 0;
    while e.buffered_keys() == 0 {
        let key = Key::new("A", vec![Subscript::Int(i % SPACE), Subscript::Int(9)]).unwrap();
        s.set(DB, &key, &v("1")).unwrap();
        r.put(key.encode(), Some(v("1")));
        i += 1;
        assert!(i < 10 * SPACE, "nothing was buffered");
    }
    let started = std::time::Instant::now();
    while e.buffered_keys() > 0 {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "an idle buffer was never merged"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    drop(s);
    same_as_reference(&e, &r);
}

#[test]
fn journal_damage_before_the_last_cycle_stops_startup_even_with_keys_buffered() {
    // Buffered keys hold a meta page's redo_from back; the journal is still
    // trusted up to what the cycle made durable (the meta page's stamp),
    // so damage there is corruption, not a torn tail to cut.
    let fs = SimFs::new();
    let mut o = opts(&fs);
    o.journal.segment_bytes = 64 << 20; // one segment: damage is in the last
    o.journal_keep_bytes = 1 << 40;
    let e = open_with(o.clone());
    let mut s = e.session();
    let mut r = Reference::default();
    preload(&e, &mut s, &mut r, 5);
    let mut i = 0;
    while e.buffered_keys() == 0 {
        let key = Key::new("A", vec![Subscript::Int(i % SPACE), Subscript::Int(7)]).unwrap();
        s.set(DB, &key, &v("1")).unwrap();
        i += 1;
    }
    // More records after the oldest buffered one, then a cycle.
    for j in 0..50 {
        let key = Key::new("C", vec![Subscript::Int(j)]).unwrap();
        s.set(DB, &key, &v("2")).unwrap();
    }
    e.inner.checkpoint().unwrap();
    let (redo_from, stamp) = {
        let db = e.inner.db(DB).unwrap();
        let redo = db.tree.read().meta().redo_from;
        (
            redo,
            crate::db::database::read_meta_stamp(&*db.file, &db.path).unwrap(),
        )
    };
    assert!(
        redo_from + 1000 < stamp,
        "redo_from {redo_from}, stamp {stamp}"
    );
    drop(s);
    std::mem::forget(e);
    let seg = Path::new("/data/journal/00000000000000000000.jrn");
    fs.flip_bit(seg, 64 + (redo_from + stamp) / 2, 1).unwrap();
    let err = match Engine::open(Path::new("/data"), o) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("damage the last cycle made durable must stop startup"),
    };
    assert!(err.contains("journal corrupt at lsn"), "{err}");
}

/// A merge that cannot read a leaf (a damaged page) fails, and the keys
/// still waiting for it stay buffered: point reads find every one of them
/// after the failure. (A merge used to take a key out of the buffer before
/// reading its leaf, so that key was unreadable until a restart.)
#[test]
fn a_merge_that_cannot_read_a_leaf_leaves_its_keys_readable() {
    let fs = SimFs::new();
    let (e, s, r) = preloaded(&fs, 3);
    let waiting: Vec<(Key, Value)> = r
        .map
        .iter()
        .map(|(k, v)| (Key::decode(k).unwrap(), v.clone()))
        .filter(|(k, _)| is_buffered(&e, k))
        .collect();
    assert!(!waiting.is_empty(), "nothing was buffered");
    // Damage every page on disk but the meta page: the merge reads leaves
    // that are not resident, and each such read fails its checksum.
    let path = std::path::Path::new("/data/databases/0001-DB.rdb");
    let pages = fs.file_bytes(path).expect("the database file").len() / 8192;
    for page in 1..pages as u64 {
        fs.flip_bit(path, page * 8192 + 100, 2).unwrap();
    }
    let err = e.checkpoint().expect_err("the merge reads a damaged leaf");
    assert!(err.to_string().contains("corrupt"), "{err}");
    for (key, value) in &waiting {
        assert_eq!(
            s.get(DB, key).unwrap().as_ref(),
            Some(value),
            "{key} after the failed merge"
        );
    }
}

/// The pool's figures for status and metrics: within the bound, keys
/// buffered and pages dirty after a load; none of either after a
/// checkpoint (which merges and flushes).
#[test]
fn pool_stats_show_the_bound_the_dirty_pages_and_the_buffered_keys() {
    let fs = SimFs::new();
    let (e, mut s, r) = preloaded(&fs, 5);
    // The load may have ended with a flush: change a few stored keys so
    // some pages are dirty whatever it did.
    let stored = (0..SPACE)
        .map(|i| Key::new("A", vec![Subscript::Int(i)]).unwrap())
        .filter(|k| r.map.contains_key(&k.encode()));
    for key in stored.take(10) {
        s.set(DB, &key, &Value::Int(1)).unwrap();
    }
    let before = e.pool_stats();
    assert_eq!(before.capacity_pages, 32);
    assert!(before.resident_pages <= 32, "{before:?}");
    assert!(before.dirty_pages > 0, "{before:?}");
    assert_eq!(before.buffered_keys, buffered(&e) as u64);
    assert!(before.buffered_keys > 0, "{before:?}");
    e.checkpoint().unwrap();
    let after = e.pool_stats();
    assert_eq!(
        (after.dirty_pages, after.buffered_keys),
        (0, 0),
        "{after:?}"
    );
    assert!(after.resident_pages <= 32, "{after:?}");
}

/// A random load into a pool far smaller than it makes writers merge full
/// buffers and wait for flush cycles; the engine counts both (the
/// operator's view of why writes slow down), and once a checkpoint has
/// merged everything, every key that entered the buffer is counted as
/// merged out of it.
#[test]
fn pool_stats_count_the_writers_stalls_and_the_merged_keys() {
    let fs = SimFs::new();
    let fresh = open_with(opts(&fs)).pool_stats();
    assert_eq!(
        (fresh.merged_keys, fresh.writer_merges, fresh.flush_waits),
        (0, 0, 0),
        "{fresh:?}"
    );
    let fs = SimFs::new();
    let (e, s, _r) = preloaded(&fs, 11);
    let load = e.pool_stats();
    assert!(
        load.writer_merges > 0 && load.writer_merge_us > 0,
        "{load:?}"
    );
    assert!(load.merged_keys > 0, "{load:?}");
    // No write daemon here: the writers run the pool's cycles themselves.
    assert!(load.flush_waits > 0 && load.flush_wait_us > 0, "{load:?}");
    let entered = e.inner.db(DB).unwrap().tree.read().buffer_additions();
    assert_eq!(load.merged_keys + load.buffered_keys, entered, "{load:?}");
    drop(s);
    e.checkpoint().unwrap();
    let after = e.pool_stats();
    assert_eq!(after.buffered_keys, 0, "{after:?}");
    assert_eq!(after.merged_keys, entered, "{after:?}");
    assert_eq!(
        after.writer_merges, load.writer_merges,
        "a checkpoint is not a writer"
    );
}

/// With a write daemon, a committer whose buffer is above the level a
/// writer's merge leaves it at merges it while its commit syncs (here
/// every sync takes 3 ms), and the contents stay the reference's; without
/// a daemon (every other test here) the commit only waits.
#[test]
fn committers_merge_while_their_commit_syncs() {
    let above_low_water = |e: &Engine| e.inner.db(DB).unwrap().tree.read().buffer_above_low_water();
    for flush_interval in [None, Some(std::time::Duration::from_secs(3600))] {
        let fs = SimFs::new();
        let e = open_with(EngineOptions {
            flush_interval,
            ..opts(&fs)
        });
        let mut s = e.session();
        let mut r = Reference::default();
        preload(&e, &mut s, &mut r, 13);
        fs.set_sync_delay(std::time::Duration::from_millis(3));
        // New keys all over the tree until the buffer is just above that
        // level (a SET that fills it merges it below, then more go in).
        s.tstart().unwrap();
        let mut i = 0;
        while !above_low_water(&e) {
            let key = Key::new("A", vec![Subscript::Int(i % SPACE), Subscript::Int(9)]).unwrap();
            s.set(DB, &key, &v("\"new\"")).unwrap();
            r.put(key.encode(), Some(v("\"new\"")));
            i += 1;
            assert!(i < 10 * SPACE, "the buffer never got there");
        }
        let before = e.pool_stats();
        s.tcommit().unwrap();
        let after = e.pool_stats();
        let merged = after.sync_merged_keys - before.sync_merged_keys;
        if flush_interval.is_some() {
            assert!(merged > 0, "{after:?}");
            assert!(!above_low_water(&e), "{after:?}");
        } else {
            assert_eq!(merged, 0, "{after:?}");
            assert!(above_low_water(&e), "{after:?}");
        }
        assert_eq!(after.writer_merges, before.writer_merges, "{after:?}");
        drop(s);
        same_as_reference(&e, &r);
    }
}

/// A follower applying a primary's random-order load lets new keys wait in
/// its own insert buffer, as the primary did, and stays within its pool;
/// it ends with the primary's contents, and a crash image of it taken with
/// keys buffered recovers them from its journal.
#[test]
fn a_follower_buffers_new_keys_as_it_applies_and_recovers_them_after_a_crash() {
    let primary_fs = SimFs::new();
    let p = open_with(EngineOptions {
        journal_keep_bytes: u64::MAX,
        ..opts(&primary_fs)
    });
    let mut ps = p.session();
    let mut r = Reference::default();
    preload(&p, &mut ps, &mut r, 9);
    let end = p.journal().durable_lsn();
    let follower_fs = SimFs::new();
    let (f, _) = Engine::open(
        std::path::Path::new("/data"),
        EngineOptions {
            mirrored: true,
            ..opts(&follower_fs)
        },
    )
    .unwrap();
    let mut most = 0;
    replicate(&p, &f, end, |f| {
        let stats = f.pool_stats();
        assert!(stats.resident_pages <= 32, "{stats:?}");
        most = most.max(stats.buffered_keys);
    });
    assert!(most > 100, "the follower buffered at most {most} keys");
    let at_crash = f.pool_stats().buffered_keys;
    let image = follower_fs.crash_image(9);
    same_as_reference(&f, &r);
    drop(f);
    let recovered = open_with(opts(&image));
    same_as_reference(&recovered, &r);
    assert!(at_crash > 0, "no key was buffered when the image was taken");
}
