//! Random operation sequences on the engine and on a `BTreeMap` reference,
//! compared after every step: sets, kills of subtrees, zkills, increments,
//! nested transactions with partial and full rollbacks, large values,
//! flush cycles, clean re-opens and crashes (synced state only).

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;
use crate::db::Session;
use crate::model::{self, Subscript};

#[derive(Debug, Clone)]
enum Op {
    Set(Key, Value),
    Kill(Key),
    ZKill(Key),
    Incr(Key, i64),
    TStart,
    TCommit,
    TRollback { innermost_only: bool },
    Checkpoint,
    Reopen,
    Crash(u64),
}

fn key() -> impl Strategy<Value = Key> {
    let sub = prop_oneof![
        (-3i64..6).prop_map(Subscript::Int),
        prop::sample::select(vec!["a", "b", "zz"]).prop_map(|s| Subscript::Str(s.into())),
    ];
    (
        prop::sample::select(vec!["A", "B"]),
        prop::collection::vec(sub, 0..3),
    )
        .prop_map(|(g, subs)| Key::new(g, subs).expect("valid"))
}

fn value() -> impl Strategy<Value = Value> {
    prop_oneof![
        6 => any::<i64>().prop_map(Value::Int),
        6 => "[a-z]{0,12}".prop_map(Value::Str),
        1 => (2000usize..30000).prop_map(|n| Value::Bytes((0..n).map(|i| (i * 7) as u8).collect())),
        2 => ("[a-z]{0,5}", any::<i64>())
            .prop_map(|(s, i)| Value::List(vec![Value::Str(s), Value::Int(i)])),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        12 => (key(), value()).prop_map(|(k, v)| Op::Set(k, v)),
        2 => key().prop_map(Op::Kill),
        2 => key().prop_map(Op::ZKill),
        2 => (0i64..4, -5i64..5).prop_map(|(i, by)| Op::Incr(Key::new("C", vec![Subscript::Int(i)]).unwrap(), by)),
        3 => Just(Op::TStart),
        2 => Just(Op::TCommit),
        1 => any::<bool>().prop_map(|innermost_only| Op::TRollback { innermost_only }),
        1 => Just(Op::Checkpoint),
        1 => Just(Op::Reopen),
        1 => any::<u64>().prop_map(Op::Crash),
    ]
}

/// The reference: encoded key -> value, plus an undo log per open level.
#[derive(Default)]
struct Reference {
    map: BTreeMap<Vec<u8>, Value>,
    levels: Vec<usize>,
    undo: Vec<(Vec<u8>, Option<Value>)>,
}

impl Reference {
    fn put(&mut self, key: Vec<u8>, value: Option<Value>) {
        let before = match value {
            Some(v) => self.map.insert(key.clone(), v),
            None => self.map.remove(&key),
        };
        if !self.levels.is_empty() {
            self.undo.push((key, before));
        }
    }
    fn rollback_to(&mut self, mark: usize) {
        while self.undo.len() > mark {
            let (k, before) = self.undo.pop().expect("len checked");
            match before {
                Some(v) => self.map.insert(k, v),
                None => self.map.remove(&k),
            };
        }
    }
    fn rollback_all(&mut self) {
        if let Some(&first) = self.levels.first() {
            self.rollback_to(first);
        }
        self.levels.clear();
        self.undo.clear();
    }
}

fn run(ops: Vec<Op>) {
    let mut fs = SimFs::new();
    let mut e = open(&fs);
    let mut s: Session = e.session();
    let mut r = Reference::default();
    for op in ops {
        match op {
            Op::Set(key, value) => {
                s.set(DB, &key, &value).unwrap();
                r.put(key.encode(), Some(value));
            }
            Op::Kill(key) => {
                let enc = key.encode();
                let end = model::subtree_end(&enc);
                let doomed: Vec<_> = r.map.range(enc..end).map(|(k, _)| k.clone()).collect();
                assert_eq!(s.kill(DB, &key).unwrap(), doomed.len() as u64);
                for k in doomed {
                    r.put(k, None);
                }
            }
            Op::ZKill(key) => {
                let had = r.map.contains_key(&key.encode());
                assert_eq!(s.zkill(DB, &key).unwrap(), had);
                if had {
                    r.put(key.encode(), None);
                }
            }
            Op::Incr(key, by) => {
                let old = match r.map.get(&key.encode()) {
                    Some(Value::Int(i)) => *i,
                    _ => 0,
                };
                assert_eq!(s.increment(DB, &key, by).unwrap(), old + by);
                r.put(key.encode(), Some(Value::Int(old + by)));
            }
            Op::TStart => {
                assert_eq!(s.tstart().unwrap(), r.levels.len() + 1);
                r.levels.push(r.undo.len());
            }
            Op::TCommit => {
                if r.levels.is_empty() {
                    assert!(s.tcommit().is_err());
                } else {
                    s.tcommit().unwrap();
                    r.levels.pop();
                    if r.levels.is_empty() {
                        r.undo.clear();
                    }
                }
            }
            Op::TRollback { innermost_only } => {
                if r.levels.is_empty() {
                    assert!(s.trollback(innermost_only).is_err());
                } else {
                    s.trollback(innermost_only).unwrap();
                    if innermost_only && r.levels.len() > 1 {
                        let mark = r.levels.pop().expect("non-empty");
                        r.rollback_to(mark);
                    } else {
                        r.rollback_all();
                    }
                }
            }
            Op::Checkpoint => e.checkpoint().unwrap(),
            Op::Reopen => {
                drop(s); // rolls back an open transaction
                r.rollback_all();
                e.close().unwrap();
                e = open(&fs);
                s = e.session();
            }
            Op::Crash(seed) => {
                // Everything acknowledged is synced; an open transaction is
                // lost with the process and rolled back by recovery.
                fs.crash_now();
                let img = fs.crash_image(seed);
                drop(s); // its rollback reaches the dead disk, not the image
                drop(e);
                r.rollback_all();
                fs = img;
                e = open(&fs);
                s = e.session();
            }
        }
        let got = contents(&e);
        let want: Vec<_> = r.map.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        assert_eq!(got.len(), want.len(), "number of nodes");
        assert_eq!(got, want);
    }
    drop(s);
    e.check().unwrap();
}

fn cases() -> u32 {
    if std::env::var("REDOUBT_LONG_TESTS").is_ok() {
        20_000
    } else {
        1_000
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), max_shrink_iters: 2000, ..ProptestConfig::default() })]
    #[test]
    fn engine_matches_a_btreemap(ops in prop::collection::vec(op(), 1..60)) {
        run(ops);
    }
}
