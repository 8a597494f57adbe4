//! Scenario `failover`: how long writes stop when the primary dies (kill -9)
//! or freezes (SIGSTOP), measured by a writer retrying continuously, from
//! the signal to the first write acknowledged by the new primary. The
//! kill -9 rounds are interleaved with the same measurement on etcd (three
//! members on loopback, default timings, kill -9 of the leader).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use redoubt_engine::client::{Client, ClientOptions, Target};
use redoubt_engine::{Key, Subscript, Value};

use super::{Ctx, Part, Scenario};
use crate::hub::{self, Mirror};
use crate::peers::etcd::{self, Etcd};
use crate::report::Report;
use crate::workload::{self, median};

pub const SCENARIO: Scenario = Scenario {
    name: "failover",
    about:
        "kill -9 / SIGSTOP of the primary to the first acknowledged write on the new one, vs etcd",
    parts: &[
        Part {
            name: "kill",
            run: kill,
        },
        Part {
            name: "freeze",
            run: freeze,
        },
    ],
};

/// The QoS of the benchmark mirror: how long a silent peer is waited for
/// (the default is 8000 ms; a frozen primary costs about this long).
const QOS_MS: u64 = 2000;

/// The writers' limit on connecting and on waiting for one answer (ours
/// and etcd's alike): a request stuck on a dead or frozen server is given
/// up after this and retried elsewhere.
const REQUEST_TIMEOUT: Duration = Duration::from_millis(250);

/// Pause after a failed attempt before the next.
const RETRY_PAUSE: Duration = Duration::from_millis(5);

/// Longest wait for the first write after a fault, or for recovery.
const PATIENCE: Duration = Duration::from_secs(60);

/// An acknowledged write: when it was sent, when its answer came, and
/// which member (index) answered.
#[derive(Clone, Copy)]
struct Ack {
    sent: Instant,
    acked: Instant,
    member: usize,
}

/// A thread writing in a loop (while not paused): each attempt returns the
/// index of the member that acknowledged it, or `None` (then it retries
/// after [`RETRY_PAUSE`]).
struct Writer {
    stop: Arc<AtomicBool>,
    paused: Arc<AtomicBool>,
    acks: Arc<Mutex<Vec<Ack>>>,
    failures: Arc<AtomicU64>,
    handle: Option<JoinHandle<()>>,
}

impl Writer {
    fn start(mut attempt: impl FnMut(u64) -> Option<usize> + Send + 'static) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let paused = Arc::new(AtomicBool::new(true));
        let acks: Arc<Mutex<Vec<Ack>>> = Arc::default();
        let failures = Arc::new(AtomicU64::new(0));
        let handle = {
            let (stop, paused, acks, failures) =
                (stop.clone(), paused.clone(), acks.clone(), failures.clone());
            std::thread::spawn(move || {
                let mut seq = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    if paused.load(Ordering::SeqCst) {
                        std::thread::sleep(Duration::from_millis(5));
                        continue;
                    }
                    let sent = Instant::now();
                    match attempt(seq) {
                        Some(member) => {
                            let acked = Instant::now();
                            acks.lock().expect("ack log").push(Ack {
                                sent,
                                acked,
                                member,
                            });
                            seq += 1;
                        }
                        None => {
                            failures.fetch_add(1, Ordering::Relaxed);
                            std::thread::sleep(RETRY_PAUSE);
                        }
                    }
                }
            })
        };
        Writer {
            stop,
            paused,
            acks,
            failures,
            handle: Some(handle),
        }
    }

    fn pause(&self, on: bool) {
        self.paused.store(on, Ordering::SeqCst);
    }

    /// The first acknowledgement of a write sent at or after `since` by a
    /// member other than `not`.
    fn first_ack(&self, since: Instant, not: usize, what: &str) -> Result<Ack> {
        let t0 = Instant::now();
        let mut from = 0;
        loop {
            {
                let acks = self.acks.lock().expect("ack log");
                if let Some(a) = acks[from..]
                    .iter()
                    .find(|a| a.sent >= since && a.member != not)
                {
                    return Ok(*a);
                }
                from = acks.len();
            }
            if t0.elapsed() > PATIENCE {
                bail!(
                    "{what}: no write acknowledged within {PATIENCE:?} ({} failed attempts so far)",
                    self.failures.load(Ordering::Relaxed)
                );
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// A writer of ours: `SET ^F(seq)` (100-byte value) through one client
/// with the primary as target, retried continuously; the member is the
/// index of the address the client is connected to.
fn our_writer(m: &Mirror) -> Writer {
    let addrs = m.addrs();
    let opts = ClientOptions {
        name: "failover-writer".into(),
        target: Target::Primary,
        // No waiting inside the client: the writer retries by itself.
        primary_wait: Duration::ZERO,
        connect_timeout: REQUEST_TIMEOUT,
        io_timeout: REQUEST_TIMEOUT,
        ..ClientOptions::default()
    };
    let value = Value::Bytes(workload::value());
    let mut client: Option<Client> = None;
    Writer::start(move |seq| {
        if client.is_none() {
            client = Client::connect(&addrs, opts.clone()).ok();
        }
        let c = client.as_mut()?;
        let key = Key::new("F", vec![Subscript::Int(seq as i64)]).expect("valid key");
        // On failure the client drops its connection and finds the
        // primary again on the next call.
        c.set(hub::DB, &key, &value).ok()?;
        let server = c.server()?;
        addrs.iter().position(|a| a == server)
    })
}

/// An etcd writer: a put of a 100-byte value through the JSON gateway,
/// moving to the next member after a failure.
fn etcd_writer(e: &Etcd) -> Writer {
    let eps = e.endpoints();
    let value = workload::value();
    let mut at = 0usize;
    Writer::start(
        move |_| match etcd::put(eps[at], b"bench", &value, REQUEST_TIMEOUT) {
            Ok(()) => Some(at),
            Err(_) => {
                at = (at + 1) % eps.len();
                None
            }
        },
    )
}

fn member_index(name: &str) -> usize {
    hub::MEMBERS
        .iter()
        .position(|m| *m == name)
        .expect("a failover member")
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn list(v: &[f64]) -> String {
    v.iter()
        .map(|x| format!("{:.0}", x))
        .collect::<Vec<_>>()
        .join(", ")
}

fn max(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::NAN, f64::max)
}

// ---- (a) kill -9, next to etcd ----

fn kill(ctx: &Ctx, report: &mut Report) -> Result<()> {
    let rounds = ctx.pick(10, 3);
    report.section(format!(
        "Failover after kill -9: from the signal to the first acknowledged write on the new \
         primary (etcd: leader), a writer retrying continuously; {rounds} rounds each, interleaved"
    ));
    ctx.progress(format!(
        "starting the mirror (a, b, arbiter; QoS {QOS_MS} ms)"
    ));
    let mut mirror = Mirror::start(ctx, "failover", QOS_MS)?;
    let ours_w = our_writer(&mirror);
    let mut peer = match etcd::unavailable() {
        Some(why) => {
            ctx.progress(format!("skipping etcd: {why}"));
            report.section_note(format!("etcd skipped: {why}"));
            None
        }
        None => {
            ctx.progress("starting etcd (three members, default timings)");
            let e = Etcd::start(ctx)?;
            let w = etcd_writer(&e);
            Some((e, w))
        }
    };
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for round in 1..=rounds {
        // Ours: the writer is writing to the primary when it dies.
        ours_w.pause(false);
        let primary = mirror
            .cluster
            .primary()
            .with_context(|| format!("no primary before round {round}\n{}", mirror.logs()))?;
        let victim = member_index(&primary);
        ours_w.first_ack(Instant::now(), usize::MAX, "before the kill")?;
        let t0 = Instant::now();
        mirror.cluster.kill(&primary)?;
        let dead = Instant::now();
        let ack = ours_w
            .first_ack(dead, victim, "after kill -9 of the primary")
            .with_context(|| mirror.logs())?;
        let took = ms(ack.acked - t0);
        ours.push(took);
        // The writer goes on while the killed member rejoins.
        mirror.cluster.start_one(&primary)?;
        let back = mirror.wait_synced(PATIENCE)?;
        ours_w.pause(true);
        ctx.progress(format!(
            "round {round}: redoubt {took:.0} ms (killed {primary}, new primary {}; \
             {primary} back as active backup {:.1} s after its restart)",
            hub::MEMBERS[ack.member],
            back.as_secs_f64()
        ));
        if let Some((e, w)) = &mut peer {
            w.pause(false);
            let leader = e.leader()?;
            w.first_ack(Instant::now(), usize::MAX, "etcd before the kill")?;
            let t0 = Instant::now();
            e.kill(leader)?;
            let dead = Instant::now();
            let ack = w.first_ack(dead, leader, "etcd after kill -9 of the leader")?;
            w.pause(true);
            let took = ms(ack.acked - t0);
            theirs.push(took);
            e.restart(leader)?;
            e.wait_healthy(PATIENCE)?;
            ctx.progress(format!(
                "round {round}: etcd {took:.0} ms (killed e{}, put acknowledged by e{})",
                leader + 1,
                ack.member + 1
            ));
        }
    }
    drop(ours_w);
    let (om, ox) = (median(&ours), max(&ours));
    let name = format!("kill -9 to first acknowledged write, median of {rounds}");
    let name_max = format!("kill -9 to first acknowledged write, worst of {rounds}");
    if theirs.is_empty() {
        report.figure(&name, om, "ms");
        report.figure(&name_max, ox, "ms");
    } else {
        report.compare(&name, om, "ms", etcd::NAME, median(&theirs));
        report.compare(&name_max, ox, "ms", etcd::NAME, max(&theirs));
    }
    report.figure("QoS of the mirror", QOS_MS as f64, "ms");
    report.section_note(format!("redoubt rounds (ms): {}", list(&ours)));
    if !theirs.is_empty() {
        report.section_note(format!("etcd rounds (ms): {}", list(&theirs)));
    }
    report.section_note(format!(
        "redoubt: members a, b (failover) + arbiter, `redoubt` processes; the writer SETs ^F(n) \
         through one Client (Target::Primary, connect/io timeout {} ms, retry every {} ms)",
        REQUEST_TIMEOUT.as_millis(),
        RETRY_PAUSE.as_millis()
    ));
    if !theirs.is_empty() {
        report.section_note(
            "etcd: 3 members, default heartbeat 100 ms / election timeout 1000 ms; leader from \
             `etcdctl endpoint status`; the writer POSTs /v3/kv/put (JSON gateway), same timeouts, \
             next member after a failure",
        );
    }
    report.section_note(
        "after each round the killed process is restarted and the next round waits until it \
         is back (ours: an active backup again, the writer still writing; etcd: all members \
         agree on a leader); each system's writer is paused during the other's rounds",
    );
    report.note(format!(
        "target median kill -9 to first write <= 1 s (got {om:.0} ms): {}",
        if om <= 1000.0 { "MET" } else { "MISSED" }
    ));
    if !theirs.is_empty() {
        let r = om / median(&theirs);
        report.note(format!(
            "target kill -9 failover below etcd's (got {r:.2}x etcd's median): {}",
            if r < 1.0 { "MET" } else { "MISSED" }
        ));
    } else {
        report.note("target kill -9 failover below etcd's: NOT MEASURED (no etcd)");
    }
    Ok(())
}

// ---- (b) SIGSTOP ----

fn freeze(ctx: &Ctx, report: &mut Report) -> Result<()> {
    let rounds = ctx.pick(10, 3);
    report.section(format!(
        "Failover after SIGSTOP: from freezing the primary to the first acknowledged write on \
         the new primary, a writer retrying continuously; QoS {QOS_MS} ms; {rounds} rounds"
    ));
    ctx.progress(format!(
        "starting the mirror (a, b, arbiter; QoS {QOS_MS} ms)"
    ));
    let mirror = Mirror::start(ctx, "freeze", QOS_MS)?;
    let w = our_writer(&mirror);
    w.pause(false);
    let mut took_all = Vec::new();
    for round in 1..=rounds {
        let primary = mirror
            .cluster
            .primary()
            .with_context(|| format!("no primary before round {round}\n{}", mirror.logs()))?;
        let victim = member_index(&primary);
        w.first_ack(Instant::now(), usize::MAX, "before the freeze")?;
        let t0 = Instant::now();
        mirror.cluster.freeze(&primary)?;
        let frozen = Instant::now();
        let ack = w.first_ack(frozen, victim, "after SIGSTOP of the primary");
        // The writer goes on while the thawed member rejoins.
        mirror.cluster.thaw(&primary)?;
        let ack = ack.with_context(|| mirror.logs())?;
        let took = ms(ack.acked - t0);
        took_all.push(took);
        let back = mirror.wait_synced(PATIENCE)?;
        ctx.progress(format!(
            "round {round}: {took:.0} ms (froze {primary}, new primary {}; {primary} back as \
             active backup {:.1} s after SIGCONT)",
            hub::MEMBERS[ack.member],
            back.as_secs_f64()
        ));
    }
    drop(w);
    let m = median(&took_all);
    report.figure(
        &format!("SIGSTOP to first acknowledged write, median of {rounds}"),
        m,
        "ms",
    );
    report.figure(
        &format!("SIGSTOP to first acknowledged write, worst of {rounds}"),
        max(&took_all),
        "ms",
    );
    report.figure("QoS of the mirror", QOS_MS as f64, "ms");
    report.figure("median minus QoS", m - QOS_MS as f64, "ms");
    report.section_note(format!("rounds (ms): {}", list(&took_all)));
    report.section_note(format!(
        "QoS {QOS_MS} ms set in the members' configuration (the default is 8000 ms); the frozen \
         primary is thawed (SIGCONT) after the first write and rejoins as backup"
    ));
    report.note(format!(
        "target median SIGSTOP to first write <= QoS + 1 s = {} ms (got {m:.0} ms): {}",
        QOS_MS + 1000,
        if m <= (QOS_MS + 1000) as f64 {
            "MET"
        } else {
            "MISSED"
        }
    ));
    Ok(())
}
