//! Model-based tests: random operations on a tree and on a `BTreeMap`,
//! compared after every step, with a tiny buffer pool so pages are evicted
//! and re-read, and with flushes and re-opens in between.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use proptest::prelude::*;

use super::node::Meta;
use super::*;
use crate::storage::sim::SimFs;
use crate::storage::{OpenMode, Vfs};
use crate::wij::PAGE_SIZE;

fn file() -> Arc<dyn VfsFile> {
    SimFs::new()
        .open(Path::new("/db/t.rdb"), OpenMode::CreateIfMissing)
        .unwrap()
}

/// Writes what the tree has dirty straight to its file (no WIJ here).
fn flush(tree: &mut Tree) {
    let super::Flush { pages, meta, .. } = tree.take_flush(0, 0);
    let f = tree.pager().file().clone();
    for p in pages {
        f.write_all_at(&p.node.encode(p.page, p.lsn), p.page * PAGE_SIZE as u64)
            .unwrap();
    }
    f.write_all_at(&meta.encode(0), 0).unwrap();
    tree.pager().flushed();
}

fn reopen(tree: Tree, cache: usize) -> Tree {
    let f = tree.pager().file().clone();
    let mut buf = vec![0; PAGE_SIZE];
    f.read_exact_at(&mut buf, 0).unwrap();
    Tree::open(f, cache, Meta::decode(&buf).unwrap()).unwrap()
}

fn key(i: u32) -> Vec<u8> {
    // Varying lengths exercise the split heuristics.
    let mut k = format!("k{:08}", i).into_bytes();
    k.extend(std::iter::repeat_n(b'x', (i % 7 * 40) as usize));
    k
}

fn compare(tree: &Tree, model: &BTreeMap<Vec<u8>, Vec<u8>>) {
    let mut c = tree.seek(b"").unwrap();
    let mut it = model.iter();
    loop {
        match (c.key(), it.next()) {
            (None, None) => break,
            (Some(k), Some((mk, mv))) => {
                assert_eq!(k, mk.as_slice());
                assert_eq!(&tree.value(c.cell().unwrap()).unwrap(), mv);
            }
            (got, want) => panic!("tree has {got:?}, model has {want:?}"),
        }
        c.advance(tree).unwrap();
    }
    let check = tree.check().unwrap();
    assert_eq!(check.entries, model.len() as u64);
    tree.pager().check_probes();
}

#[derive(Debug, Clone)]
enum Op {
    Put(u32, usize),
    Delete(u32),
    DeleteRange(u32, u32),
    /// Puts keys `a..b` in ascending order (right-edge splits).
    PutRange(u32, u32, usize),
    Flush,
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u32..400, prop_oneof![8 => 0usize..120, 1 => 1000usize..3000, 1 => 5000usize..40000])
            .prop_map(|(k, n)| Op::Put(k, n)),
        3 => (0u32..400).prop_map(Op::Delete),
        1 => (0u32..400, 0u32..60).prop_map(|(a, n)| Op::DeleteRange(a, a + n)),
        1 => (0u32..400, 0u32..150, 0usize..300).prop_map(|(a, n, v)| Op::PutRange(a, a + n, v)),
        1 => Just(Op::Flush),
        1 => Just(Op::Reopen),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn tree_matches_a_btreemap(ops in prop::collection::vec(op(), 1..300)) {
        let mut tree = Tree::create(file(), 16, 1, "T");
        let mut model = BTreeMap::new();
        for (step, op) in ops.into_iter().enumerate() {
            let lsn = step as u64 + 1;
            match op {
                Op::Put(k, n) => {
                    // A write as sessions do it: find (the value before),
                    // then put where it was found.
                    let v: Vec<u8> = (0..n).map(|i| (i as u32 ^ k) as u8).collect();
                    let found = tree.find(&key(k)).unwrap();
                    prop_assert_eq!(&found.before, &model.get(&key(k)).cloned());
                    tree.put_found(found, &key(k), &v, lsn).unwrap();
                    model.insert(key(k), v);
                }
                Op::Delete(k) => {
                    prop_assert_eq!(tree.delete(&key(k), lsn).unwrap(), model.remove(&key(k)).is_some());
                }
                Op::DeleteRange(a, b) => {
                    for k in a..b {
                        let found = tree.find(&key(k)).unwrap();
                        prop_assert_eq!(&found.before, &model.get(&key(k)).cloned());
                        tree.delete_found(found, &key(k), lsn).unwrap();
                        model.remove(&key(k));
                    }
                }
                Op::PutRange(a, b, n) => {
                    // In key order: later keys reuse the route of earlier
                    // ones, across splits (see `Route`).
                    for k in a..b {
                        let v = vec![k as u8; n];
                        let found = tree.find(&key(k)).unwrap();
                        tree.put_found(found, &key(k), &v, lsn).unwrap();
                        model.insert(key(k), v);
                    }
                }
                Op::Flush => flush(&mut tree),
                Op::Reopen => {
                    flush(&mut tree);
                    tree = reopen(tree, 16);
                }
            }
            compare(&tree, &model);
        }
    }
}

#[test]
fn last_before_and_seek_agree_with_the_model() {
    let mut tree = Tree::create(file(), 64, 1, "T");
    let mut model = BTreeMap::new();
    for i in (0..3000u32).step_by(3) {
        tree.put(&key(i), b"v", 1).unwrap();
        model.insert(key(i), b"v".to_vec());
    }
    for probe in 0..3003u32 {
        let k = key(probe);
        let want = model.range(..k.clone()).next_back().map(|(k, _)| k.clone());
        assert_eq!(tree.read_last_before(&k).unwrap(), want);
        let want = model.range(k.clone()..).next().map(|(k, _)| k.clone());
        assert_eq!(tree.seek(&k).unwrap().key().map(<[u8]>::to_vec), want);
    }
    assert_eq!(tree.read_last_before(b"").unwrap(), None);
}

#[test]
fn an_ascending_load_fills_its_pages() {
    let mut tree = Tree::create(file(), 64, 1, "T");
    let mut model = BTreeMap::new();
    let mut bytes = 0;
    for i in 0..20_000u32 {
        let k = format!("k{i:08}").into_bytes();
        bytes += 2 + k.len() + 5 + 100;
        tree.put(&k, &[i as u8; 100], 1).unwrap();
        model.insert(k, vec![i as u8; 100]);
    }
    let check = tree.check().unwrap();
    let fill = bytes as f64 / (check.leaves as f64 * page::BODY_SIZE as f64);
    assert!(fill > 0.95, "leaves are {:.0}% full", fill * 100.0);
    // Inserts in the middle afterwards still split evenly and stay correct.
    for i in (0..20_000u32).step_by(7) {
        let k = format!("k{i:08}a").into_bytes();
        tree.put(&k, b"mid", 2).unwrap();
        model.insert(k, b"mid".to_vec());
    }
    compare(&tree, &model);
}

/// A leaf's cell buffer stays about a page: the pool counts pages, so a
/// leaf holding twice that would double the memory behind its bound.
#[test]
fn leaves_hold_about_a_page_of_memory() {
    // An ascending load: every leaf filled by appends, then left behind;
    // the key that does not fit starts the next leaf.
    let mut tree = Tree::create(file(), 4096, 1, "T");
    for i in 0..20_000u32 {
        let value = vec![1; 100 + (i % 64) as usize];
        tree.put(format!("k{i:08}").as_bytes(), &value, 1).unwrap();
    }
    let most = tree.pager().largest_leaf_buffer();
    assert!(
        most <= PAGE_SIZE,
        "an ascending load left a leaf of {most} bytes"
    );
    // A random load: a leaf that overflows grows by its last cell only.
    // Cells of varying size, so a last one passes the buffer's capacity
    // and not only the page body.
    let mut tree = Tree::create(file(), 4096, 1, "T");
    let mut x = 1u64;
    for _ in 0..20_000u32 {
        x = next_random(x);
        let value = vec![1; 100 + (x >> 58) as usize];
        tree.put(format!("k{:016x}", x >> 8).as_bytes(), &value, 1)
            .unwrap();
    }
    let most = tree.pager().largest_leaf_buffer();
    let largest_cell = 4 + 17 + 1 + 163;
    assert!(
        most <= page::BODY_SIZE + largest_cell,
        "a random load left a leaf of {most} bytes"
    );
}

/// The next number of a 64-bit linear congruential sequence (Knuth's
/// MMIX constants): random enough to scatter keys, with no dependency.
fn next_random(x: u64) -> u64 {
    x.wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407)
}

/// The pool's bound is on memory, not on a count of pages: a decoded
/// leaf takes more than its 8 KiB (its indexes, room for the next cell),
/// so a pool of 64 pages' worth holds fewer than 64 pages, and what its
/// nodes allocated stays within 64 x 8 KiB.
#[test]
fn the_pool_holds_its_bound_in_bytes() {
    let mut tree = Tree::create(file(), 64, 1, "T");
    let mut x = 7u64;
    for i in 0..20_000u32 {
        x = next_random(x);
        tree.put(format!("k{:016x}", x >> 8).as_bytes(), &[3; 100], 1)
            .unwrap();
        if i % 250 == 249 {
            flush(&mut tree);
            tree.check().unwrap(); // also recounts the pool's memory
            let (memory, bound) = tree.pager().memory_and_bound();
            assert_eq!(bound, 64 * PAGE_SIZE);
            assert!(memory <= bound, "{memory} bytes in a pool of {bound}");
        }
    }
    assert!(tree.check().unwrap().leaves > 4 * 64);
    let pages = tree.pager().resident_tree_pages();
    assert!(
        (40..64).contains(&pages),
        "{pages} leaves and branches resident in 64 pages' worth of memory"
    );
}

/// Deleting most keys leaves leaves nearly empty; each merges with a
/// sibling, so the tree shrinks with its data, and stays correct through
/// more deletes and inserts.
#[test]
fn nearly_empty_leaves_merge_with_a_sibling() {
    let mut tree = Tree::create(file(), 4096, 1, "T");
    let mut model = BTreeMap::new();
    for i in 0..20_000u32 {
        tree.put(&key(i), &[i as u8; 100], 1).unwrap();
        model.insert(key(i), vec![i as u8; 100]);
    }
    let full = tree.check().unwrap().leaves;
    // Nine keys in ten go, spread over every leaf: none empties.
    for i in (0..20_000u32).filter(|i| i % 10 != 0) {
        assert!(tree.delete(&key(i), 2).unwrap());
        model.remove(&key(i));
    }
    let check = tree.check().unwrap();
    assert_eq!(check.entries, 2_000);
    assert!(
        check.leaves * 3 < full,
        "{} leaves hold a tenth of the {full} leaves' keys",
        check.leaves
    );
    compare(&tree, &model);
    // Through a flush and a reopen, and inserts that split again.
    reopen_and_put_again(tree, model, (0..20_000u32).step_by(3).map(key));
}

/// Flushes and reopens a thinned-out `tree`, puts `keys` again, and checks
/// it against `model`.
fn reopen_and_put_again(
    mut tree: Tree,
    mut model: BTreeMap<Vec<u8>, Vec<u8>>,
    keys: impl Iterator<Item = Vec<u8>>,
) {
    flush(&mut tree);
    let mut tree = reopen(tree, 64);
    for k in keys {
        tree.put(&k, b"again", 3).unwrap();
        model.insert(k, b"again".to_vec());
    }
    tree.check().unwrap();
    compare(&tree, &model);
}

/// Long keys make branches of a few dozen cells; deleting most keys
/// merges leaves, which thins their branches, which merge too (and a root
/// left with one child gives way to it).
#[test]
fn nearly_empty_branches_merge_with_a_sibling() {
    let long = |i: u32| format!("{i:0>200}").into_bytes();
    let mut tree = Tree::create(file(), 4096, 1, "T");
    let mut model = BTreeMap::new();
    for i in 0..30_000u32 {
        tree.put(&long(i), &i.to_le_bytes(), 1).unwrap();
        model.insert(long(i), i.to_le_bytes().to_vec());
    }
    let full = tree.check().unwrap();
    assert!(full.branches > 20, "{full:?}");
    for i in (0..30_000u32).filter(|i| i % 50 != 0) {
        assert!(tree.delete(&long(i), 2).unwrap());
        model.remove(&long(i));
    }
    let thin = tree.check().unwrap();
    assert_eq!(thin.entries, 600);
    assert!(
        thin.branches * 5 < full.branches,
        "{} branches left of {}",
        thin.branches,
        full.branches
    );
    assert!(thin.depth < full.depth, "{thin:?} after {full:?}");
    compare(&tree, &model);
    reopen_and_put_again(tree, model, (0..30_000u32).step_by(7).map(long));
}

#[test]
fn freed_pages_are_reused_after_a_kill() {
    let mut tree = Tree::create(file(), 256, 1, "T");
    for i in 0..5000 {
        tree.put(&key(i), &[7; 100], 1).unwrap();
    }
    let grown = tree.meta().page_count;
    for i in 0..5000 {
        assert!(tree.delete(&key(i), 2).unwrap());
    }
    assert_eq!(tree.check().unwrap().entries, 0);
    for i in 0..5000 {
        tree.put(&key(i), &[8; 100], 3).unwrap();
    }
    assert_eq!(
        tree.meta().page_count,
        grown,
        "the second load reuses freed pages"
    );
    tree.check().unwrap();
}

#[test]
fn a_long_free_list_is_not_rewritten_by_each_cycle() {
    // 3,000 values of two overflow pages each, killed: over 6,000 free
    // pages, over 200 free-list pages of 30 (`TRUNK_FILL` in tests).
    let mut tree = Tree::create(file(), 256, 1, "T");
    let big = vec![9u8; 12_000];
    for i in 0..3000 {
        tree.put(&key(i), &big, 1).unwrap();
    }
    flush(&mut tree);
    for i in 0..3000 {
        assert!(tree.delete(&key(i), 2).unwrap());
    }
    let free_list_pages = |f: &super::Flush| {
        f.pages
            .iter()
            .filter(|p| matches!(*p.node, Node::FreeList { .. }))
            .count()
    };
    let f = tree.take_flush(0, 0);
    let written = free_list_pages(&f);
    write_flush(&tree, f);
    let trunks = tree.free.trunks().count();
    assert!(trunks >= 200, "{trunks} free-list pages");
    assert_eq!(written, trunks, "the KILL's frees are listed once");
    // Small loads: each takes a few pages from the head of the list.
    let mut model = BTreeMap::new();
    for round in 0..10u32 {
        for i in 0..40 {
            let k = key(10_000 + round * 40 + i);
            tree.put(&k, &[round as u8; 100], 3).unwrap();
            model.insert(k, vec![round as u8; 100]);
        }
        let f = tree.take_flush(0, 0);
        let written = free_list_pages(&f);
        assert!(
            written <= 2,
            "round {round}: {written} of {} free-list pages written",
            tree.free.trunks().count()
        );
        write_flush(&tree, f);
        compare(&tree, &model);
    }
    let free = tree.check().unwrap().free_pages;
    assert!(free > 6000, "{free} pages free");
    let tree = reopen(tree, 64);
    compare(&tree, &model);
    assert_eq!(tree.check().unwrap().free_pages, free);
}

#[test]
fn a_corrupt_page_is_reported_not_read() {
    let mut tree = Tree::create(file(), 16, 1, "T");
    for i in 0..2000 {
        tree.put(&key(i), &[1; 50], 1).unwrap();
    }
    flush(&mut tree);
    let tree = reopen(tree, 16);
    let f = tree.pager().file().clone();
    let mut byte = [0u8];
    let off = 3 * PAGE_SIZE as u64 + 100;
    f.read_exact_at(&mut byte, off).unwrap();
    f.write_all_at(&[byte[0] ^ 1], off).unwrap();
    let err = (0..2000)
        .find_map(|i| tree.get(&key(i)).err())
        .expect("some read reaches page 3");
    assert!(
        err.to_string()
            .contains("page 3 is corrupt: checksum mismatch"),
        "{err}"
    );
}

#[test]
fn a_route_is_not_reused_after_pages_left_the_tree() {
    // A route remembers the child indexes on the way to its leaf. Emptying
    // the leaves to its left unlinks them and shifts those indexes (and
    // collapses the root), with deletes that take no route: a write
    // through the old route would then split into the wrong places.
    let mut tree = Tree::create(file(), 256, 1, "T");
    let mut model = BTreeMap::new();
    let k = |i: u32, j: u32| format!("k{i:08}-{j:04}").into_bytes();
    for i in 0..2000 {
        tree.put(&k(i, 0), &[1; 100], 1).unwrap();
        model.insert(k(i, 0), vec![1; 100]);
    }
    let found = tree.find(&k(1500, 0)).unwrap();
    tree.put_found(found, &k(1500, 0), &[2; 100], 2).unwrap();
    model.insert(k(1500, 0), vec![2; 100]);
    for i in 0..1490 {
        assert!(tree.delete(&k(i, 0), 3).unwrap());
        model.remove(&k(i, 0));
    }
    for j in 1..400 {
        let found = tree.find(&k(1500, j)).unwrap();
        tree.put_found(found, &k(1500, j), &[3; 100], 4).unwrap();
        model.insert(k(1500, j), vec![3; 100]);
    }
    compare(&tree, &model);
}

/// The pages of a flush that go through the write image journal: those the
/// tree on disk uses.
fn journaled(flush: &super::Flush) -> Vec<(u64, &'static str)> {
    flush
        .pages
        .iter()
        .filter(|p| p.page < flush.fresh_from && !flush.direct.contains(&p.page))
        .map(|p| {
            let kind = match &*p.node {
                Node::Leaf(_) => "leaf",
                Node::Branch { .. } => "branch",
                Node::Overflow { .. } => "overflow",
                Node::FreeList { .. } => "free list",
            };
            (p.page, kind)
        })
        .collect()
}

/// Writes a flush's pages and meta page to the tree's file.
fn write_flush(tree: &Tree, flush: super::Flush) {
    let f = tree.pager().file().clone();
    for p in &flush.pages {
        f.write_all_at(&p.node.encode(p.page, p.lsn), p.page * PAGE_SIZE as u64)
            .unwrap();
    }
    f.write_all_at(&flush.meta.encode(0), 0).unwrap();
    tree.pager().flushed();
}

#[test]
fn changed_leaves_move_to_pages_the_next_flush_writes_directly() {
    let mut tree = Tree::create(file(), 4096, 1, "T");
    let mut model = BTreeMap::new();
    for i in 0..3000 {
        tree.put(&key(i), &[1; 100], 1).unwrap();
        model.insert(key(i), vec![1; 100]);
    }
    flush(&mut tree);
    let mut x = 7u32;
    for round in 0..20u8 {
        // Updates spread over every leaf, then a flush: only branches go
        // through the WIJ, and the file stops growing once the pages
        // freed by one round are reused by the next.
        for _ in 0..300 {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            let k = key(x % 3000);
            tree.put(&k, &[round; 100], 2).unwrap();
            model.insert(k, vec![round; 100]);
        }
        let f = tree.take_flush(0, 0);
        let through_wij = journaled(&f);
        assert!(
            through_wij.iter().all(|(_, kind)| *kind == "branch"),
            "round {round}: {through_wij:?}"
        );
        let leaves = f.pages.iter().filter(|p| matches!(*p.node, Node::Leaf(_)));
        assert!(leaves.count() > 20, "round {round}: leaves were written");
        write_flush(&tree, f);
        compare(&tree, &model);
    }
    // Every leaf moves in every round: the file holds the tree, as many
    // free pages, and the free list's own pages.
    let check = tree.check().unwrap();
    let used = check.leaves + check.branches + 1;
    let trunks = tree.free.trunks().count() as u64;
    assert!(
        tree.meta().page_count <= used * 2 + trunks,
        "{} pages for {used} in use and {trunks} free-list pages",
        tree.meta().page_count
    );
    let tree = reopen(tree, 64);
    compare(&tree, &model);
    assert_eq!(tree.check().unwrap().free_pages, check.free_pages);
}

#[test]
fn pages_freed_after_a_flush_wait_for_the_next_one() {
    let mut tree = Tree::create(file(), 4096, 1, "T");
    for i in 0..2000 {
        tree.put(&key(i), &[1; 100], 1).unwrap();
    }
    flush(&mut tree);
    let grown = tree.meta().page_count;
    // The tree on disk uses the pages these deletes free: a load before
    // the next flush may not write them directly, so it grows the file.
    for i in 0..1000 {
        assert!(tree.delete(&key(i), 2).unwrap());
    }
    let freed = tree.check().unwrap().free_pages;
    assert!(freed > 10, "{freed} pages freed");
    for i in 5000..5400 {
        tree.put(&key(i), &[2; 100], 3).unwrap();
    }
    assert!(tree.meta().page_count > grown);
    let f = tree.take_flush(0, 0);
    assert!(journaled(&f).iter().all(|(_, kind)| *kind == "branch"));
    write_flush(&tree, f);
    // After it, they are reused.
    let before = tree.meta().page_count;
    for i in 6000..6400 {
        tree.put(&key(i), &[3; 100], 4).unwrap();
    }
    assert_eq!(tree.meta().page_count, before);
    let f = tree.take_flush(0, 0);
    assert!(journaled(&f).iter().all(|(_, kind)| *kind == "branch"));
    write_flush(&tree, f);
    tree.check().unwrap();
    let tree = reopen(tree, 64);
    tree.check().unwrap();
}

#[test]
fn a_damaged_free_list_is_reported_at_open() {
    let mut tree = Tree::create(file(), 256, 1, "T");
    for i in 0..2000 {
        tree.put(&key(i), &[1; 100], 1).unwrap();
    }
    flush(&mut tree);
    for i in 0..1500 {
        tree.delete(&key(i), 2).unwrap();
    }
    flush(&mut tree);
    let head = tree.meta().free_head;
    assert_ne!(head, 0);
    let f = tree.pager().file().clone();
    let mut buf = vec![0; PAGE_SIZE];
    f.read_exact_at(&mut buf, 0).unwrap();
    let list = |pages: Vec<u64>| Node::FreeList { next: 0, pages };
    let cases = [
        (
            list(vec![3, 1 << 40]),
            format!("corrupt at page {head}: free list names page 1099511627776"),
        ),
        // Allocation would hand it out twice.
        (list(vec![3, 5, 3]), "free list names page 3 twice".into()),
        (list(vec![head, 3]), "names its own page as free".into()),
        (Node::empty_leaf(), "expected a free-list page".into()),
    ];
    for (page, want) in cases {
        f.write_all_at(&page.encode(head, 2), head * PAGE_SIZE as u64)
            .unwrap();
        let err = Tree::open(f.clone(), 64, Meta::decode(&buf).unwrap())
            .err()
            .expect("refused");
        assert!(err.to_string().contains(&want), "{err}");
    }
}

#[test]
fn pages_freed_while_their_images_are_in_flight_still_count_in_memory() {
    // A cycle holds the images it writes; a page freed meanwhile leaves
    // the pool's slots, but its image stays in memory until the cycle
    // ends, and the pool's bound must see it. Values in overflow chains:
    // their pages are freed where they are, without moving first.
    let mut tree = Tree::create(file(), 4096, 1, "T");
    for i in 0..3000 {
        tree.put(&key(i), &vec![1; 100 + 3000 * (i % 2) as usize], 1)
            .unwrap();
    }
    let f = tree.take_flush(0, 0);
    assert!(f.pages.len() > 50, "{} pages in flight", f.pages.len());
    let images: usize = f.pages.iter().map(|d| d.node.memory()).sum();
    for i in 0..3000 {
        assert!(tree.delete(&key(i), 2).unwrap());
    }
    let in_flight = images / crate::wij::PAGE_SIZE;
    assert!(
        tree.pager().resident() >= in_flight,
        "{} pages' worth resident with {in_flight} pages' worth of images in flight",
        tree.pager().resident()
    );
    write_flush(&tree, f);
    tree.check().unwrap();
}

/// A new key whose leaf is resident but clean waits in the insert buffer
/// (in the leaf, it would cost the next flush a page write of its own);
/// one whose leaf is dirty, or whose leaf the previous write went to (keys
/// in order), goes into the leaf.
#[test]
fn a_new_key_for_a_clean_resident_leaf_waits_in_the_buffer() {
    let k = |i: u32| format!("k{i:08}").into_bytes();
    let mut tree = Tree::create(file(), 64, 1, "T");
    tree.enable_insert_buffer(64 << 10, 16 << 10);
    let mut model = BTreeMap::new();
    for i in 0..8000 {
        tree.put(&k(2 * i), &[1; 100], 1).unwrap();
        model.insert(k(2 * i), vec![1; 100]);
    }
    flush(&mut tree);
    assert!(
        tree.meta().page_count > 64,
        "the tree is larger than its pool"
    );
    let mut set = |tree: &mut Tree, key: Vec<u8>| {
        let found = tree.find(&key).unwrap();
        tree.put_found(found, &key, &[2; 100], 2).unwrap();
        model.insert(key.clone(), vec![2; 100]);
        tree.is_buffered(&key)
    };
    // Leaf of k(200) resident and clean: the new key waits.
    tree.get(&k(200)).unwrap();
    assert!(set(&mut tree, k(201)), "a clean leaf's new key is buffered");
    // The next new key of the same leaf follows a write there: in order.
    assert!(
        !set(&mut tree, k(203)),
        "a key after one in its leaf goes in"
    );
    // The leaf is dirty now: another new key goes in, even after a write
    // elsewhere (to a leaf that is clean or not resident).
    assert!(set(&mut tree, k(4001)));
    assert!(!set(&mut tree, k(205)), "a dirty leaf's new key goes in");
    // A flush leaves it clean again: after a write elsewhere, its new
    // keys wait again.
    flush(&mut tree);
    tree.get(&k(200)).unwrap();
    assert!(set(&mut tree, k(9001)));
    assert!(set(&mut tree, k(207)));
    assert_eq!(tree.buffered(), 4);
    tree.merge(usize::MAX, usize::MAX).unwrap();
    assert_eq!(tree.buffered(), 0);
    compare(&tree, &model);
}
