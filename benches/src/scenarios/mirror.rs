//! Scenario `mirror`: commits through the client to a mirror whose primary
//! waits for a synchronous backup, both real `redoubt` processes on
//! loopback, next to PostgreSQL 15 with a synchronous standby
//! (`synchronous_commit = on`) doing the same workload in the same run.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use redoubt_engine::client::Client;
use redoubt_engine::wire::ClientOp;
use redoubt_engine::{Key, Subscript, Value};

use super::{Ctx, Part, Scenario};
use crate::hub::{self, Mirror};
use crate::peers::postgres::{self as pg, PgPair};
use crate::report::Report;
use crate::workload::{self, median, percentile_ms, RawKey, SplitMix64};

pub const SCENARIO: Scenario = Scenario {
    name: "mirror",
    about: "commits/s and latency with a synchronous backup on loopback vs PostgreSQL 15 with a synchronous standby",
    parts: &[
        Part {
            name: "commits",
            run: commits,
        },
        Part {
            name: "bulk",
            run: bulk,
        },
    ],
};

/// QoS of the benchmark mirror (no failover happens here; the default).
const QOS_MS: u64 = 8000;

/// One run of one system at one concurrency.
#[derive(Debug, Clone)]
struct Run {
    commits_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    /// Commits that failed (each thread goes on after a failure).
    errors: u64,
    first_error: Option<String>,
}

/// A table row: figure name, unit, our value, the peer's from its run.
type Row = (&'static str, &'static str, f64, fn(&Run) -> f64);

fn median_run(runs: &[Run]) -> Run {
    let m = |f: fn(&Run) -> f64| median(&runs.iter().map(f).collect::<Vec<_>>());
    Run {
        commits_per_s: m(|r| r.commits_per_s),
        p50_ms: m(|r| r.p50_ms),
        p99_ms: m(|r| r.p99_ms),
        errors: runs.iter().map(|r| r.errors).sum(),
        first_error: runs.iter().find_map(|r| r.first_error.clone()),
    }
}

fn commits(ctx: &Ctx, report: &mut Report) -> Result<()> {
    let reps = ctx.pick(3, 1);
    // REDOUBT_BENCH_SECS stretches every point, e.g. to profile one.
    let secs = std::env::var("REDOUBT_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(ctx.pick(3.0, 1.0));
    let d = Duration::from_secs_f64(secs);
    report.section(format!(
        "Mirrored commits: one SET of a random 16-byte key to a 100-byte value per commit, through \
         the client, one connection per thread; primary + synchronous backup + arbiter on loopback; \
         median of {reps} run(s) x {secs} s per point"
    ));
    ctx.progress("starting the mirror (primary, synchronous backup, arbiter)");
    let mirror = Mirror::start(ctx, "mirror", QOS_MS)?;
    let peer = match pg::unavailable() {
        Some(why) => {
            ctx.progress(format!("skipping PostgreSQL: {why}"));
            report.section_note(format!("PostgreSQL skipped: {why}"));
            None
        }
        None => {
            ctx.progress("starting PostgreSQL 15 (primary + synchronous standby)");
            Some(PgPair::start(ctx)?)
        }
    };
    let mut unsynced: Vec<String> = Vec::new();
    for threads in [1usize, 16, 64] {
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        let mut syncs_per_commit: Vec<(f64, f64)> = Vec::new();
        for rep in 0..reps {
            let seed = (threads * 1000 + rep) as u64;
            // Interleaved, so a noisy moment hits both alike.
            let before = primary_commits(&mirror);
            let syncs_before = journal_syncs(&mirror);
            let r = run_ours(&mirror, threads, d, seed)?;
            let after = primary_commits(&mirror);
            if let (Some((p0, b0)), Some((p1, b1)), Some(b), Some(a)) =
                (syncs_before, journal_syncs(&mirror), before, after)
            {
                let commits = a.saturating_sub(b).max(1) as f64;
                syncs_per_commit.push((
                    (p1 - p0) as f64 / commits,
                    (b1.saturating_sub(b0)) as f64 / commits,
                ));
            }
            if let Some(why) = still_synced(&mirror) {
                unsynced.push(format!("after the {threads}-client run: {why}"));
            }
            if let (Some(b), Some(a)) = (before, after) {
                ctx.progress(format!(
                    "  redoubt, {threads} clients: {:.0} commits/s (primary counted {} commits)",
                    r.commits_per_s,
                    a.saturating_sub(b)
                ));
            }
            ours.push(r);
            if let Some(p) = &peer {
                theirs.push(run_postgres(p, threads, d, seed)?);
                if !p.standby_in_sync()? {
                    report.section_note(format!(
                        "PostgreSQL's standby was not in sync after the {threads}-client run"
                    ));
                }
            }
        }
        let o = median_run(&ours);
        if o.errors > 0 {
            unsynced.push(format!(
                "during the {threads}-client runs: {} failed commit(s), first: {}",
                o.errors,
                o.first_error.as_deref().unwrap_or("?")
            ));
        }
        if let Some(t) = theirs.iter().find(|t| t.errors > 0) {
            report.section_note(format!(
                "PostgreSQL: failed commits at {threads} clients, first: {}",
                t.first_error.as_deref().unwrap_or("?")
            ));
        }
        let who = if threads == 1 { "client" } else { "clients" };
        let rows: [Row; 3] = [
            ("commits/s", "commits/s", o.commits_per_s, |r| {
                r.commits_per_s
            }),
            ("p50 commit latency", "ms", o.p50_ms, |r| r.p50_ms),
            ("p99 commit latency", "ms", o.p99_ms, |r| r.p99_ms),
        ];
        let t = (!theirs.is_empty()).then(|| median_run(&theirs));
        for (name, unit, ours_v, theirs_f) in rows {
            let name = format!("{name}, {threads} {who}");
            match &t {
                Some(t) => report.compare(&name, ours_v, unit, pg::NAME, theirs_f(t)),
                None => report.figure(&name, ours_v, unit),
            }
        }
        if !syncs_per_commit.is_empty() {
            let mid = |mut v: Vec<f64>| {
                v.sort_by(f64::total_cmp);
                v[v.len() / 2]
            };
            let (p, b): (Vec<f64>, Vec<f64>) = syncs_per_commit.into_iter().unzip();
            report.figure(
                &format!("journal fsyncs per commit, {threads} {who}: primary"),
                mid(p),
                "fsyncs",
            );
            report.figure(
                &format!("journal fsyncs per commit, {threads} {who}: backup"),
                mid(b),
                "fsyncs",
            );
        }
        ctx.progress(format!(
            "{threads} clients: redoubt {:.0}/s{}",
            o.commits_per_s,
            t.as_ref()
                .map(|t| format!(", postgres {:.0}/s", t.commits_per_s))
                .unwrap_or_default()
        ));
        if threads == 16 {
            match t {
                Some(t) => {
                    let ratio = o.commits_per_s / t.commits_per_s;
                    report.note(format!(
                        "target commits/s at 16 clients >= 2x PostgreSQL with a synchronous standby (got {ratio:.2}x): {}",
                        if ratio >= 2.0 { "MET" } else { "MISSED" }
                    ));
                }
                None => report.note(
                    "target commits/s at 16 clients >= 2x PostgreSQL: NOT MEASURED (no PostgreSQL)",
                ),
            }
        }
    }
    report.section_note(
        "redoubt: two failover members (commits wait for the backup's acknowledgement) and an \
         arbiter, each a `redoubt` process; SET ^B(\"<key>\") in database USER via \
         redoubt_engine::client::Client (Target::Primary)",
    );
    if peer.is_some() {
        report.section_note(
            "postgres: PostgreSQL 15, primary + standby from pg_basebackup, \
             synchronous_standby_names='*', synchronous_commit=on, fsync=on; \
             INSERT INTO kv(k bytea, v bytea) ... ON CONFLICT (k) DO UPDATE, one per transaction \
             (autocommit, prepared), `postgres` crate, one connection per thread",
        );
    }
    if unsynced.is_empty() {
        report.section_note("the backup stayed active and synchronous through every run");
    } else {
        for u in unsynced {
            report.section_note(format!("MIRROR TROUBLE {u}"));
        }
    }
    Ok(())
}

/// The network loads: SETs per transaction, transactions per pipeline
/// when commits are pipelined, and rows loaded (full, quick).
const LOADS: [(usize, usize, (usize, usize)); 2] =
    [(1000, 8, (200_000, 40_000)), (10, 100, (40_000, 10_000))];

/// One client loading random keys in transactions through
/// [`Client::pipeline`]: each transaction sent whole and its commit waited
/// for before the next is sent, then several transactions per pipeline,
/// so the primary runs the next ones while a commit syncs and reaches the
/// backup (and commits that wait together share a sync).
fn bulk(ctx: &Ctx, report: &mut Report) -> Result<()> {
    let reps = ctx.pick(4, 1);
    report.section(format!(
        "Mirrored loads over the network: one client, random 16-byte keys with 100-byte values \
         (the same keys every run, after a first load not counted), each transaction sent in one \
         pipeline (Client::pipeline); primary + synchronous backup + arbiter on loopback; median \
         of {reps} run(s), interleaved"
    ));
    ctx.progress("starting the mirror (primary, synchronous backup, arbiter)");
    let mirror = Mirror::start(ctx, "mirror-bulk", QOS_MS)?;
    for (batch, in_flight, rows) in LOADS {
        let rows = ctx.pick(rows.0, rows.1);
        let load = |per_pipeline| load_over_network(&mirror, rows, batch, per_pipeline, 7_000);
        ctx.progress(format!(
            "  {batch} SETs per transaction: first load (not counted)"
        ));
        load(in_flight)?;
        let (mut one, mut many) = (Vec::new(), Vec::new());
        for rep in 0..reps {
            // Alternating which goes first, so a trend hits both alike.
            if rep % 2 == 0 {
                one.push(load(1)?);
                many.push(load(in_flight)?);
            } else {
                many.push(load(in_flight)?);
                one.push(load(1)?);
            }
            ctx.progress(format!(
                "  {batch} SETs per transaction, run {rep}: one per pipeline {:.0} SETs/s, \
                 {in_flight} per pipeline {:.0} SETs/s",
                one[rep], many[rep]
            ));
        }
        let (o, m) = (median(&one), median(&many));
        let what = format!("{rows} rows, {batch} SETs per transaction");
        report.figure(
            &format!("SETs/s, {what}, each commit answered before the next is sent"),
            o,
            "SETs/s",
        );
        report.figure(
            &format!("SETs/s, {what}, {in_flight} transactions per pipeline"),
            m,
            "SETs/s",
        );
        report.figure(&format!("pipelined / one at a time, {what}"), m / o, "x");
    }
    if let Some(why) = still_synced(&mirror) {
        report.section_note(format!("MIRROR TROUBLE after the loads: {why}"));
    } else {
        report.section_note("the backup stayed active and synchronous through every run");
    }
    Ok(())
}

/// SETs/s of one client loading `rows` random keys in transactions of
/// `batch` SETs, `per_pipeline` transactions per [`Client::pipeline`]
/// call; every commit acknowledged.
fn load_over_network(
    m: &Mirror,
    rows: usize,
    batch: usize,
    per_pipeline: usize,
    seed: u64,
) -> Result<f64> {
    let mut c = Client::connect(&m.addrs(), hub::client_options("bench-load".into()))
        .context("connect to the mirror's primary")?;
    let value = Value::Bytes(workload::value());
    let mut rng = SplitMix64::new(seed);
    let mut ops = Vec::with_capacity(per_pipeline * (batch + 2));
    let start = Instant::now();
    let mut done = 0;
    while done < rows {
        ops.clear();
        for _ in 0..per_pipeline {
            if done >= rows {
                break;
            }
            let n = batch.min(rows - done);
            ops.push(ClientOp::TStart);
            for _ in 0..n {
                ops.push(ClientOp::Set {
                    db: hub::DB.into(),
                    key: key(&workload::random_key(&mut rng)),
                    value: value.clone(),
                });
            }
            ops.push(ClientOp::TCommit);
            done += n;
        }
        for (i, answer) in c.pipeline(&ops)?.into_iter().enumerate() {
            answer.with_context(|| format!("{} in the load", ops[i]))?;
        }
    }
    Ok(workload::rate(rows as u64, start.elapsed()))
}

/// The primary's commit counter, from its status.
fn primary_commits(m: &Mirror) -> Option<u64> {
    let p = m.cluster.primary()?;
    m.cluster.status(&p).ok().map(|s| s.commits)
}

/// Journal fsyncs so far of the primary and of the other failover member.
fn journal_syncs(m: &Mirror) -> Option<(u64, u64)> {
    let p = m.cluster.primary()?;
    let b = hub::MEMBERS.iter().find(|n| **n != p && **n != "arbiter")?;
    let ps = m.cluster.status(&p).ok()?;
    let bs = m.cluster.status(b).ok()?;
    Some((ps.journal_syncs, bs.journal_syncs))
}

/// Why the mirror is not (or no longer) a primary with a synchronous
/// active backup, if it is not.
fn still_synced(m: &Mirror) -> Option<String> {
    match m.wait_synced(Duration::from_secs(2)) {
        Ok(_) => None,
        Err(_) => {
            let st: Vec<String> = hub::MEMBERS
                .iter()
                .map(|n| match m.cluster.status(n) {
                    Ok(s) => format!(
                        "{n}: role {} sync {} active_backup {} paused {:?}",
                        s.role, s.sync, s.active_backup, s.paused
                    ),
                    Err(e) => format!("{n}: {e}"),
                })
                .collect();
            Some(st.join("; "))
        }
    }
}

fn key(raw: &RawKey) -> Key {
    let s = std::str::from_utf8(raw)
        .expect("benchmark keys are ASCII")
        .to_owned();
    Key::new("B", vec![Subscript::Str(s)]).expect("valid global name")
}

fn run_ours(m: &Mirror, threads: usize, d: Duration, seed: u64) -> Result<Run> {
    let addrs = m.addrs();
    let value = Value::Bytes(workload::value());
    drive(
        threads,
        d,
        seed,
        |t| {
            Client::connect(&addrs, hub::client_options(format!("bench-{t}")))
                .context("connect to the mirror's primary")
        },
        |c: &mut Client, k| c.set(hub::DB, &key(k), &value).context("SET on the mirror"),
    )
}

fn run_postgres(p: &PgPair, threads: usize, d: Duration, seed: u64) -> Result<Run> {
    let value = workload::value();
    drive(
        threads,
        d,
        seed,
        |_| {
            let mut c = p.connect()?;
            let stmt = c.prepare(
                "INSERT INTO kv (k, v) VALUES ($1, $2) ON CONFLICT (k) DO UPDATE SET v = EXCLUDED.v",
            )?;
            Ok((c, stmt))
        },
        |(c, stmt), k| {
            c.execute(&*stmt, &[&&k[..], &&value[..]])
                .context("INSERT on PostgreSQL")?;
            Ok(())
        },
    )
}

/// `threads` connections, each committing one random key at a time for
/// `d`; every connection is open before the clock starts.
fn drive<C>(
    threads: usize,
    d: Duration,
    seed: u64,
    connect: impl Fn(usize) -> Result<C> + Sync,
    commit: impl Fn(&mut C, &RawKey) -> Result<()> + Sync,
) -> Result<Run> {
    let stop = AtomicBool::new(false);
    let ready = Barrier::new(threads + 1);
    let (start, results) = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (stop, ready, connect, commit) = (&stop, &ready, &connect, &commit);
                scope.spawn(
                    move || -> Result<(Vec<u64>, Instant, u64, Option<String>)> {
                        let conn = connect(t);
                        ready.wait();
                        let mut conn = conn?;
                        let mut rng = SplitMix64::new(seed ^ ((t as u64 + 1) << 32));
                        let mut lat = Vec::with_capacity(1 << 14);
                        let (mut errors, mut first) = (0u64, None);
                        while !stop.load(Ordering::Relaxed) {
                            let k = workload::random_key(&mut rng);
                            let t0 = Instant::now();
                            match commit(&mut conn, &k) {
                                Ok(()) => lat.push(t0.elapsed().as_nanos() as u64),
                                Err(e) => {
                                    // Counted and reported; the client reconnects.
                                    errors += 1;
                                    first.get_or_insert_with(|| format!("{e:#}"));
                                    std::thread::sleep(Duration::from_millis(10));
                                }
                            }
                        }
                        Ok((lat, Instant::now(), errors, first))
                    },
                )
            })
            .collect();
        ready.wait();
        let start = Instant::now();
        std::thread::sleep(d);
        stop.store(true, Ordering::Relaxed);
        let results: Vec<_> = handles
            .into_iter()
            .map(|h| h.join().expect("client thread panicked"))
            .collect();
        (start, results)
    });
    let mut lat = Vec::new();
    let mut end = start;
    let (mut errors, mut first_error) = (0, None);
    for r in results {
        let (l, finished, e, first) = r?;
        lat.extend(l);
        end = end.max(finished);
        errors += e;
        first_error = first_error.or(first);
    }
    Ok(Run {
        commits_per_s: workload::rate(lat.len() as u64, end - start),
        p50_ms: percentile_ms(&mut lat, 50.0),
        p99_ms: percentile_ms(&mut lat, 99.0),
        errors,
        first_error,
    })
}
