//! Scenario `engine`: one member's storage against the embedded engines a
//! Rust user would otherwise pick (SQLite in WAL mode with
//! `synchronous=FULL`, redb with immediate durability), same workload, same
//! run. Parts: durable commits, bulk load, reads, recovery.

mod bulk;
mod commits;
mod reads;
mod recovery;
#[cfg(test)]
mod tests;

use std::time::Duration;

use anyhow::Result;

use super::{Ctx, Part, Scenario};
use crate::peers::{Redb, Sqlite};
use crate::redoubt::Redoubt;
use crate::report::Report;
use crate::store::Store;
use crate::workload::{median, MIB};
use bulk::{Commits, Order};

pub const SCENARIO: Scenario = Scenario {
    name: "engine",
    about: "durable commits, bulk load, reads and recovery of one member vs SQLite and redb",
    parts: &[
        Part {
            name: "commits",
            run: durable_commits,
        },
        Part {
            name: "bulk",
            run: bulk_load,
        },
        Part {
            name: "reads",
            run: reads,
        },
        Part {
            name: "recovery",
            run: recovery,
        },
    ],
};

/// Pass or fail of a target, as a line of the report.
fn target(report: &mut Report, what: &str, met: bool) {
    report.note(format!(
        "target {what}: {}",
        if met { "MET" } else { "MISSED" }
    ));
}

// ---- 1. durable commits ----

fn durable_commits(ctx: &Ctx, report: &mut Report) -> Result<()> {
    let reps = ctx.pick(3, 1);
    let secs = ctx.pick(3.0, 0.5);
    report.section(format!(
        "Durable commits: one SET per commit, 16-byte keys, 100-byte values, fresh store per run; \
         median of {reps} run(s) x {secs} s per point"
    ));
    for threads in [1usize, 4, 16, 64] {
        let (mut ours, mut sqlite, mut redb) = (Vec::new(), Vec::new(), Vec::new());
        for rep in 0..reps {
            // Interleaved, so a noisy moment hits every store alike.
            let d = Duration::from_secs_f64(secs);
            let seed = (threads * 1000 + rep) as u64;
            ours.push(commits::run::<Redoubt>(ctx, threads, d, seed)?);
            sqlite.push(commits::run::<Sqlite>(ctx, threads, d, seed)?);
            redb.push(commits::run::<Redb>(ctx, threads, d, seed)?);
        }
        let (ours, sqlite, redb) = (
            commits::median_run(&ours),
            commits::median_run(&sqlite),
            commits::median_run(&redb),
        );
        let who = if threads == 1 {
            "committer"
        } else {
            "committers"
        };
        let (o, s, r) = (&ours, &sqlite, &redb);
        for (name, unit, ours_v, sqlite_v, redb_v) in [
            (
                "commits/s",
                "commits/s",
                o.commits_per_s,
                s.commits_per_s,
                r.commits_per_s,
            ),
            ("p50 commit latency", "ms", o.p50_ms, s.p50_ms, r.p50_ms),
            ("p99 commit latency", "ms", o.p99_ms, s.p99_ms, r.p99_ms),
        ] {
            let name = format!("{name}, {threads} {who}");
            report.compare(&name, ours_v, unit, Sqlite::NAME, sqlite_v);
            report.compare(&name, ours_v, unit, Redb::NAME, redb_v);
        }
        let syncs = ours.syncs_per_commit.unwrap_or(f64::NAN);
        report.figure(
            &format!("journal fsyncs per commit, {threads} {who}"),
            syncs,
            "fsyncs",
        );
        ctx.progress(format!(
            "commits, {threads} threads: redoubt {:.0}/s, sqlite {:.0}/s, redb {:.0}/s",
            ours.commits_per_s, sqlite.commits_per_s, redb.commits_per_s
        ));
        if threads == 16 {
            let ratio = ours.commits_per_s / sqlite.commits_per_s.max(redb.commits_per_s);
            let what =
                format!("commits/s at 16 committers >= 2x the better peer (got {ratio:.2}x)");
            target(report, &what, ratio >= 2.0);
        }
    }
    Ok(())
}

// ---- 2. bulk load ----

fn bulk_load(ctx: &Ctx, report: &mut Report) -> Result<()> {
    let pool: u64 = ctx.pick(64 << 20, 4 << 20);
    // 116 bytes of key + value per row: 4x the pool in raw data.
    let rows: u64 = (4 * pool).div_ceil(116).div_ceil(1000) * 1000;
    let reps = ctx.pick(3, 1);
    report.section(format!(
        "Bulk load: one thread, 1,000 SETs per transaction, {rows} rows ({:.0} MiB of keys + values) \
         with a {:.0} MiB pool/cache in every store; the run of median rate of {reps}, stores \
         interleaved",
        (rows * 116) as f64 / MIB,
        pool as f64 / MIB
    ));
    for order in [Order::Sequential, Order::Random] {
        let (mut o, mut p, mut r, mut s) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let sync = Commits::Synchronous;
        for _ in 0..reps {
            o.push(bulk::run::<Redoubt>(ctx, order, sync, rows, pool)?);
            p.push(bulk::run::<Redoubt>(
                ctx,
                order,
                Commits::Pipelined,
                rows,
                pool,
            )?);
            r.push(bulk::run::<Redb>(ctx, order, sync, rows, pool)?);
            s.push(bulk::run::<Sqlite>(ctx, order, sync, rows, pool)?);
        }
        let label = order.label();
        ctx.progress(format!(
            "bulk {label}, every run: redoubt {}, redoubt pipelined {}, redb {}, sqlite {}",
            bulk::rates(&o),
            bulk::rates(&p),
            bulk::rates(&r),
            bulk::rates(&s)
        ));
        let (ours, pipelined, redb, sqlite) = (
            bulk::median_run(o),
            bulk::median_run(p),
            bulk::median_run(r),
            bulk::median_run(s),
        );
        let name = format!("{label} SETs/s");
        report.compare(
            &name,
            ours.sets_per_s,
            "SETs/s",
            Redb::NAME,
            redb.sets_per_s,
        );
        report.compare(
            &name,
            ours.sets_per_s,
            "SETs/s",
            Sqlite::NAME,
            sqlite.sets_per_s,
        );
        report.compare(
            &format!("{label} SETs/s, pipelined commits"),
            pipelined.sets_per_s,
            "SETs/s",
            Redb::NAME,
            redb.sets_per_s,
        );
        let resident = ours
            .max_resident_bytes
            .max(pipelined.max_resident_bytes)
            .unwrap_or(0) as f64
            / MIB;
        let bound = ours.pool_bound_bytes.unwrap_or(0) as f64 / MIB;
        report.figure(
            &format!("{label}: max resident pool (bound {bound:.0} MiB)"),
            resident,
            "MiB",
        );
        let files = format!("{label}: files after load");
        report.compare(
            &files,
            ours.file_bytes as f64 / MIB,
            "MiB",
            Redb::NAME,
            redb.file_bytes as f64 / MIB,
        );
        report.compare(
            &files,
            ours.file_bytes as f64 / MIB,
            "MiB",
            Sqlite::NAME,
            sqlite.file_bytes as f64 / MIB,
        );
        if let (Some(o), Some(r), Some(s)) = (
            ours.peak_rss_bytes.max(pipelined.peak_rss_bytes),
            redb.peak_rss_bytes,
            sqlite.peak_rss_bytes,
        ) {
            let name = format!("{label}: process peak RSS during load");
            report.compare(&name, o as f64 / MIB, "MiB", Redb::NAME, r as f64 / MIB);
            report.compare(&name, o as f64 / MIB, "MiB", Sqlite::NAME, s as f64 / MIB);
        }
        if let (Some(o), Some(r), Some(s)) = (
            ours.written_per_row,
            redb.written_per_row,
            sqlite.written_per_row,
        ) {
            let name = format!("{label}: bytes written per SET");
            report.compare(&name, o, "bytes", Redb::NAME, r);
            report.compare(&name, o, "bytes", Sqlite::NAME, s);
        }
        report.figure(
            &format!("{label}: clean shutdown after load"),
            ours.close.as_secs_f64(),
            "s",
        );
        ctx.progress(format!(
            "bulk {label}: redoubt {:.0}/s (pipelined {:.0}/s), redb {:.0}/s, sqlite {:.0}/s",
            ours.sets_per_s, pipelined.sets_per_s, redb.sets_per_s, sqlite.sets_per_s
        ));
        let floor = match order {
            Order::Sequential => 1_000_000.0,
            Order::Random => 200_000.0,
        };
        target(
            report,
            &format!(
                "bulk {label} >= {floor:.0} SETs/s and ahead of redb (got {:.0}/s, {:.2}x redb)",
                ours.sets_per_s,
                ours.sets_per_s / redb.sets_per_s
            ),
            ours.sets_per_s >= floor && ours.sets_per_s > redb.sets_per_s,
        );
        target(
            report,
            &format!(
                "bulk {label} with pipelined commits >= {floor:.0} SETs/s and ahead of redb \
                 (got {:.0}/s, {:.2}x redb)",
                pipelined.sets_per_s,
                pipelined.sets_per_s / redb.sets_per_s
            ),
            pipelined.sets_per_s >= floor && pipelined.sets_per_s > redb.sets_per_s,
        );
        target(
            report,
            &format!("bulk {label} pool within its bound (max {resident:.1} of {bound:.0} MiB)"),
            resident <= bound,
        );
    }
    report.section_note(
        "pipelined commits (ours only; the peers' commits cannot return before they are durable): \
         the loader builds transaction N+1 while N syncs and waits for N before committing N+1, \
         so at most one transaction is unacknowledged; timed until the last is durable",
    );
    report.section_note(
        "resident pool = engine.resident_pages() x 8 KiB, sampled after every transaction \
         (the larger of both ways of committing)",
    );
    report.section_note(
        "process peak RSS: VmHWM of the bench process, reset (after mimalloc gave its free \
         memory back) before each store is created, read after its last commit; the largest of \
         the runs (ours: of both ways of committing). It counts everything the process holds: \
         the pool, the journal's buffers, the allocator's overhead, the binary",
    );
    report.section_note("files after load: after a clean shutdown (ours includes the journal)");
    report.section_note(
        "bytes written per SET: bytes passed to write system calls during the load / rows",
    );
    Ok(())
}

// ---- 3. reads ----

fn reads(ctx: &Ctx, report: &mut Report) -> Result<()> {
    let rows = ctx.pick(500_000, 100_000);
    let reps = 3;
    let secs = ctx.pick(2.0, 0.4);
    let cache: u64 = 256 << 20;
    report.section(format!(
        "Reads from cache: {rows} rows loaded with random keys, GETs of random loaded keys for {secs} s, \
         full ordered scans; median of {reps} runs"
    ));
    let ours = reads::load::<Redoubt>(ctx, rows, cache)?;
    let sqlite = reads::load::<Sqlite>(ctx, rows, cache)?;
    let redb = reads::load::<Redb>(ctx, rows, cache)?;
    let d = Duration::from_secs_f64(secs);
    for threads in [1usize, 2] {
        let (mut o, mut s, mut r) = (Vec::new(), Vec::new(), Vec::new());
        let mut owned = Vec::new();
        for _ in 0..reps {
            o.push(ours.gets(threads, d, false)?);
            s.push(sqlite.gets(threads, d, false)?);
            r.push(redb.gets(threads, d, false)?);
            if threads == 1 {
                owned.push(ours.gets(threads, d, true)?);
            }
        }
        let name = format!(
            "point GETs/s, {threads} thread{}",
            if threads == 1 { "" } else { "s" }
        );
        report.compare(&name, median(&o), "GETs/s", Sqlite::NAME, median(&s));
        report.compare(&name, median(&o), "GETs/s", Redb::NAME, median(&r));
        ctx.progress(format!(
            "{name}: redoubt {:.0}, sqlite {:.0}, redb {:.0}",
            median(&o),
            median(&s),
            median(&r)
        ));
        if threads == 1 {
            report.figure(
                "point GETs/s, 1 thread, owned Value (Session::get)",
                median(&owned),
                "GETs/s",
            );
            target(
                report,
                &format!(
                    "point GETs/s on one thread >= 1,000,000 (got {:.0})",
                    median(&o)
                ),
                median(&o) >= 1e6,
            );
        }
    }
    let (mut o, mut s, mut r) = (Vec::new(), Vec::new(), Vec::new());
    let mut owned = Vec::new();
    for _ in 0..reps {
        o.push(ours.scan(false)?);
        s.push(sqlite.scan(false)?);
        r.push(redb.scan(false)?);
        owned.push(ours.scan(true)?);
    }
    report.compare(
        "ordered scan rows/s, 1 thread",
        median(&o),
        "rows/s",
        Sqlite::NAME,
        median(&s),
    );
    report.compare(
        "ordered scan rows/s, 1 thread",
        median(&o),
        "rows/s",
        Redb::NAME,
        median(&r),
    );
    report.figure(
        "ordered scan rows/s, 1 thread, owned Key and Value (Session::scan)",
        median(&owned),
        "rows/s",
    );
    report.section_note(
        "GETs: ours Session::get_with (the value borrowed in place, as the peers hand theirs out), \
         and Session::get (an owned Value) where it says so; scans: ours Session::scan_rows (each \
         row's encoded key and value borrowed, as the peers hand theirs out), and Session::scan (a \
         decoded Key and an owned Value per row) where it says so",
    );
    ctx.progress(format!(
        "scan: redoubt {:.0}, sqlite {:.0}, redb {:.0} rows/s",
        median(&o),
        median(&s),
        median(&r)
    ));
    ours.close()?;
    sqlite.close()?;
    redb.close()?;
    Ok(())
}

// ---- 4. recovery ----

fn recovery(ctx: &Ctx, report: &mut Report) -> Result<()> {
    let bytes: u64 = ctx.pick(1 << 30, 64 << 20);
    let key_space = ctx.pick(500_000, 100_000);
    report.section(format!(
        "Recovery: {:.0} MiB of journal since the last checkpoint (SETs in 1,000-SET transactions over \
         {key_space} keys), crash, reopen; one run",
        bytes as f64 / MIB
    ));
    let r = recovery::run(ctx, bytes, key_space)?;
    let secs = r.open.as_secs_f64();
    let mib = r.replayed_bytes as f64 / MIB;
    report.figure("journal replayed", mib, "MiB");
    report.figure("records replayed", r.records as f64, "records");
    report.figure("recovery time (Engine::open)", secs, "s");
    report.figure("recovery throughput", mib / secs, "MiB/s");
    report.figure(
        "recovery throughput (records)",
        r.records as f64 / secs,
        "records/s",
    );
    report.figure(
        "journal read + decode alone",
        mib / r.read_only.as_secs_f64(),
        "MiB/s",
    );
    report.figure(
        "writing that journal (1,000 SETs/txn)",
        r.write_sets_per_s,
        "SETs/s",
    );
    report.section_note(
        "recovery time = WIJ check + journal open/validation + replay + rollback of open transactions + final flush",
    );
    ctx.progress(format!("recovery: {mib:.0} MiB in {secs:.2} s"));
    Ok(())
}
