//! Every workload runs on every store at toy sizes: the peers are set up
//! right and the drivers count what they should.

use std::time::{Duration, Instant};

use super::bulk::{self, Commits, Order};
use super::{commits, reads, recovery};
use crate::peers::{Redb, Sqlite};
use crate::redoubt::Redoubt;
use crate::scenarios::Ctx;
use crate::store::Store;

fn ctx() -> Ctx {
    Ctx {
        quick: true,
        scratch: std::env::temp_dir(),
        started: Instant::now(),
    }
}

fn every_workload<S: Store>() {
    let ctx = ctx();
    let c = commits::run::<S>(&ctx, 3, Duration::from_millis(100), 1).unwrap();
    assert!(
        c.commits_per_s > 0.0 && c.p50_ms <= c.p99_ms,
        "{} {c:?}",
        S::NAME
    );

    let b = bulk::run::<S>(&ctx, Order::Random, Commits::Synchronous, 2_500, 1 << 20).unwrap();
    assert!(b.sets_per_s > 0.0 && b.file_bytes > 0, "{} {b:?}", S::NAME);

    let loaded = reads::load::<S>(&ctx, 3_000, 1 << 20).unwrap();
    for owned in [false, true] {
        assert!(loaded.gets(2, Duration::from_millis(50), owned).unwrap() > 0.0);
    }
    for owned in [false, true] {
        assert!(
            loaded.scan(owned).unwrap() > 0.0,
            "scan checks the row count itself"
        );
    }
    loaded.close().unwrap();
}

#[test]
fn redoubt_runs_every_workload() {
    every_workload::<Redoubt>();
}

#[test]
fn sqlite_runs_every_workload() {
    every_workload::<Sqlite>();
}

#[test]
fn redb_runs_every_workload() {
    every_workload::<Redb>();
}

#[test]
fn our_engine_reports_pool_and_fsyncs() {
    let ctx = ctx();
    let c = commits::run::<Redoubt>(&ctx, 2, Duration::from_millis(100), 2).unwrap();
    let syncs = c.syncs_per_commit.expect("the engine counts its fsyncs");
    assert!(syncs > 0.0 && syncs <= 1.5, "{syncs}");
    for commits in [Commits::Synchronous, Commits::Pipelined] {
        let b = bulk::run::<Redoubt>(&ctx, Order::Sequential, commits, 2_000, 1 << 20).unwrap();
        assert!(b.max_resident_bytes.unwrap() > 0);
        assert_eq!(b.pool_bound_bytes, Some(1 << 20));
        assert!(b.sets_per_s > 0.0, "{commits:?} {b:?}");
    }
}

#[test]
fn recovery_replays_what_was_written() {
    let r = recovery::run(&ctx(), 2 << 20, 1_000).unwrap();
    assert!(r.replayed_bytes >= 2 << 20, "{r:?}");
    assert!(r.records > 1_000, "{r:?}");
}
