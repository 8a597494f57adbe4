//! The mirror end to end, with real processes: the demo scenario, and
//! faults under write load — kill -9 of the primary, SIGSTOP past the QoS,
//! partitions through proxies, restarts in every order. After each, every
//! acknowledged write is on every member, all copies are equal, and all
//! members share one epoch history.
//!
//! `REDOUBT_LONG_TESTS=1` repeats the fault scenarios many times.

mod support;

use std::time::Duration;

use redoubt_hub::cluster::{LocalCluster, Plan, ARBITER};
use support::proxy::Proxy;
use support::{check, logs, Load};

const QOS_MS: u64 = 1000;
const ALL: [&str; 3] = ["a", "b", "dr"];

fn exe() -> &'static str {
    env!("CARGO_BIN_EXE_redoubt")
}

fn rounds() -> usize {
    if std::env::var("REDOUBT_LONG_TESTS").is_ok() {
        10
    } else {
        1
    }
}

fn start(plan: Plan) -> (tempfile::TempDir, LocalCluster) {
    let keep = std::env::var("REDOUBT_TEST_KEEP").is_ok();
    let dir = tempfile::Builder::new()
        .disable_cleanup(keep)
        .tempdir()
        .unwrap();
    if keep {
        eprintln!("cluster in {}", dir.path().display());
    }
    let c = LocalCluster::start(exe().as_ref(), dir.path(), plan).unwrap();
    c.wait_until(
        Duration::from_secs(20),
        "a primary with an active backup",
        |c| {
            ["a", "b"].iter().any(|m| {
                c.status(m)
                    .is_ok_and(|s| s.role == "backup" && s.active_backup)
            })
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", logs(&c, &ALL)));
    (dir, c)
}

fn pair(c: &LocalCluster) -> (String, String) {
    let p = c.primary().expect("a primary");
    let b = if p == "a" { "b" } else { "a" }.to_string();
    (p, b)
}

fn sleep_ms(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

#[test]
fn the_demo_walkthrough_behaves() {
    let out = std::process::Command::new(exe())
        .arg("demo")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("demo finished: every step behaved"), "{text}");
}

#[test]
fn kill_9_of_the_primary_under_load_loses_nothing() {
    kill_9_of_the_primary_under(|addrs| Load::start(addrs, 4));
}

#[test]
fn kill_9_of_the_primary_under_pipelined_load_loses_nothing() {
    // Each client pipelines four transactions at a time: the primary
    // answers a commit only once it is acknowledged, while it already runs
    // the next transaction. A commit answered before it reached the backup
    // would be lost in the takeover.
    kill_9_of_the_primary_under(|addrs| Load::start_pipelined(addrs, 2));
}

/// Kills the primary with SIGKILL under `load`, waits for the backup to
/// take over, restarts the old primary, and checks that every acknowledged
/// commit is on every member.
fn kill_9_of_the_primary_under(load: impl Fn(Vec<String>) -> Load) {
    for _ in 0..rounds() {
        let (_dir, mut c) = start(Plan::new(&["a", "b"], &["dr"], true, QOS_MS));
        let load = load(c.addrs());
        sleep_ms(800);
        let (p, b) = pair(&c);
        c.kill(&p).unwrap();
        c.wait_until(Duration::from_secs(10), "takeover", |c| {
            c.primary().as_deref() == Some(b.as_str())
        })
        .unwrap_or_else(|e| panic!("{e}\n{}", logs(&c, &ALL)));
        sleep_ms(500);
        c.start_one(&p).unwrap();
        sleep_ms(800);
        let o = load.stop();
        check(&c, &ALL, &o);
    }
}

#[test]
fn a_frozen_primary_never_commits_after_the_takeover() {
    for _ in 0..rounds() {
        let (_dir, c) = start(Plan::new(&["a", "b"], &["dr"], true, QOS_MS));
        let load = Load::start(c.addrs(), 4);
        sleep_ms(500);
        let (p, b) = pair(&c);
        c.freeze(&p).unwrap();
        c.wait_until(
            Duration::from_secs(10),
            "takeover from a frozen primary",
            |c| c.status(&b).is_ok_and(|s| s.role == "primary"),
        )
        .unwrap_or_else(|e| panic!("{e}\n{}", logs(&c, &ALL)));
        sleep_ms(500);
        c.thaw(&p).unwrap();
        c.wait_until(Duration::from_secs(10), "the old primary rejoining", |c| {
            c.status(&p).is_ok_and(|s| s.role == "backup")
        })
        .unwrap_or_else(|e| panic!("{e}\n{}", logs(&c, &ALL)));
        sleep_ms(500);
        let o = load.stop();
        check(&c, &ALL, &o);
    }
}

/// Proxies on every link between the failover members and to the arbiter.
struct Links {
    ab: Proxy,
    ba: Proxy,
    a_arb: Proxy,
    b_arb: Proxy,
}

fn with_links() -> (Plan, Links) {
    let mut plan = Plan::new(&["a", "b"], &["dr"], true, QOS_MS);
    let links = Links {
        ab: Proxy::start(plan.addr("b")),
        ba: Proxy::start(plan.addr("a")),
        a_arb: Proxy::start(plan.addr(ARBITER)),
        b_arb: Proxy::start(plan.addr(ARBITER)),
    };
    plan.route("a", "b", links.ab.addr());
    plan.route("b", "a", links.ba.addr());
    plan.route("a", ARBITER, links.a_arb.addr());
    plan.route("b", ARBITER, links.b_arb.addr());
    (plan, links)
}

impl Links {
    fn between(&self, p: &str) -> (&Proxy, &Proxy, &Proxy) {
        // (primary -> backup, backup -> primary, primary -> arbiter)
        if p == "a" {
            (&self.ab, &self.ba, &self.a_arb)
        } else {
            (&self.ba, &self.ab, &self.b_arb)
        }
    }
}

#[test]
fn partitions_between_primary_backup_and_arbiter() {
    for _ in 0..rounds() {
        // 1. Primary and backup cut apart, both still see the arbiter: the
        // primary goes on alone; the backup catches up after the heal.
        let (plan, links) = with_links();
        let (_dir, c) = start(plan);
        let load = Load::start(c.addrs(), 3);
        sleep_ms(400);
        let (p, b) = pair(&c);
        let (pb, bp, _) = links.between(&p);
        pb.blackhole();
        bp.blackhole();
        sleep_ms(3 * QOS_MS);
        assert_eq!(
            c.primary().as_deref(),
            Some(p.as_str()),
            "the arbiter still saw the primary\n{}",
            logs(&c, &ALL)
        );
        pb.heal();
        bp.heal();
        c.wait_until(Duration::from_secs(10), "the backup active again", |c| {
            c.status(&b).is_ok_and(|s| s.active_backup)
        })
        .unwrap_or_else(|e| panic!("{e}\n{}", logs(&c, &ALL)));
        let o = load.stop();
        check(&c, &ALL, &o);
        drop(c);

        // 2. The primary cut from the arbiter only: nothing changes.
        let (plan, links) = with_links();
        let (_dir, c) = start(plan);
        let load = Load::start(c.addrs(), 3);
        let (p, _) = pair(&c);
        let (_, _, parb) = links.between(&p);
        parb.cut();
        sleep_ms(3 * QOS_MS);
        assert_eq!(
            c.primary().as_deref(),
            Some(p.as_str()),
            "losing only the arbiter changes nothing"
        );
        parb.heal();
        let o = load.stop();
        check(&c, &ALL, &o);
        drop(c);

        // 3. The primary isolated from backup and arbiter: it stops
        // committing; the backup takes over; after the heal the old
        // primary is fenced and rejoins.
        let (plan, links) = with_links();
        let (_dir, c) = start(plan);
        let load = Load::start(c.addrs(), 3);
        sleep_ms(400);
        let (p, b) = pair(&c);
        let (pb, bp, parb) = links.between(&p);
        parb.blackhole();
        pb.blackhole();
        bp.blackhole();
        c.wait_until(
            Duration::from_secs(10),
            "the backup taking over an isolated primary",
            |c| c.status(&b).is_ok_and(|s| s.role == "primary"),
        )
        .unwrap_or_else(|e| panic!("{e}\n{}", logs(&c, &ALL)));
        let old = c.status(&p).unwrap();
        assert!(
            old.role != "primary" || old.paused.is_some(),
            "an isolated primary must not commit: {old:?}"
        );
        sleep_ms(500);
        parb.heal();
        pb.heal();
        bp.heal();
        c.wait_until(Duration::from_secs(15), "the old primary rejoining", |c| {
            c.status(&p).is_ok_and(|s| s.role == "backup")
        })
        .unwrap_or_else(|e| panic!("{e}\n{}", logs(&c, &ALL)));
        let o = load.stop();
        check(&c, &ALL, &o);
    }
}

#[test]
fn members_restart_in_every_order_without_loss() {
    let (_dir, mut c) = start(Plan::new(&["a", "b"], &["dr"], true, QOS_MS));
    let mut total = support::Outcomes::default();
    let orders: [[&str; 3]; 3] = [["a", "b", "dr"], ["b", "dr", "a"], ["dr", "a", "b"]];
    for order in orders {
        let load = Load::start(c.addrs(), 2);
        sleep_ms(600);
        let o = load.stop();
        total.acked.extend(o.acked);
        for m in ALL {
            c.kill(m).unwrap();
        }
        for m in order {
            c.start_one(m).unwrap();
            sleep_ms(150);
        }
        c.wait_until(Duration::from_secs(20), "a primary after restarts", |c| {
            c.primary().is_some()
        })
        .unwrap_or_else(|e| panic!("{e}\n{}", logs(&c, &ALL)));
    }
    check(&c, &ALL, &total);
}

#[test]
fn members_that_lost_their_disks_seed_from_the_primary_under_load() {
    for _ in 0..rounds() {
        let (dir, mut c) = start(Plan::new(&["a", "b"], &["dr"], true, QOS_MS));
        let load = Load::start(c.addrs(), 4);
        sleep_ms(800);
        let (_, backup) = pair(&c);
        // Both followers lose everything, one after the other, while the
        // load goes on: each must come back from a copy of the primary.
        for m in ["dr", backup.as_str()] {
            c.kill(m).unwrap();
            std::fs::remove_dir_all(dir.path().join(m)).unwrap();
            c.start_one(m).unwrap();
            c.wait_until(Duration::from_secs(20), "the member seeded", |_| {
                std::fs::read_to_string(dir.path().join(format!("{m}.log")))
                    .is_ok_and(|l| l.contains("seed complete"))
            })
            .unwrap_or_else(|e| panic!("{e}\n{}", logs(&c, &ALL)));
            sleep_ms(400);
        }
        c.wait_until(Duration::from_secs(20), "the seeded backup active", |c| {
            c.status(&backup)
                .is_ok_and(|s| s.role == "backup" && s.active_backup)
        })
        .unwrap_or_else(|e| panic!("{e}\n{}", logs(&c, &ALL)));
        let o = load.stop();
        check(&c, &ALL, &o);
        // The copies start their journals where the seed did, not at 0.
        for m in ["dr", backup.as_str()] {
            let s = c.status(m).unwrap();
            assert!(
                s.journal_start > 0,
                "{m} holds journal from {}",
                s.journal_start
            );
        }
    }
}

fn redoubt(args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(exe())
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn switchover_swaps_roles_without_loss_and_is_refused_without_an_active_backup() {
    let (_dir, mut c) = start(Plan::new(&["a", "b"], &["dr"], true, QOS_MS));
    let load = Load::start(c.addrs(), 2);
    sleep_ms(500);
    let (p, b) = pair(&c);
    let connect = c.addrs().join(",");
    let (ok, text) = redoubt(&["switchover", "--connect", &connect]);
    assert!(ok, "{text}\n{}", logs(&c, &ALL));
    assert!(text.contains(&format!("{b} is primary")), "{text}");
    c.wait_until(Duration::from_secs(10), "the old primary following", |c| {
        c.status(&p).is_ok_and(|s| s.role == "backup")
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", logs(&c, &ALL)));
    sleep_ms(300);
    let o = load.stop();
    check(&c, &ALL, &o);
    // Now stop the backup: a switchover must be refused, saying why.
    c.kill(&p).unwrap();
    sleep_ms(2 * QOS_MS);
    let (ok, text) = redoubt(&["switchover", "--connect", &connect]);
    assert!(!ok, "a switchover without a backup must be refused: {text}");
    assert!(text.contains("backup"), "{text}");
}

#[test]
fn manual_failover_without_an_arbiter() {
    let (_dir, mut c) = start_no_arbiter();
    let load = Load::start(c.addrs(), 2);
    sleep_ms(500);
    let o = load.stop();
    let (p, b) = pair(&c);
    c.kill(&p).unwrap();
    sleep_ms(3 * QOS_MS);
    assert_eq!(
        c.status(&b).unwrap().role,
        "backup",
        "without an arbiter the backup never takes over by itself"
    );
    let connect = c.addrs().join(",");
    let (ok, text) = redoubt(&["failover", "--to", &b, "--connect", &connect]);
    assert!(
        !ok && text.contains("--yes"),
        "unconfirmed failover must not happen: {text}"
    );
    let (ok, text) = redoubt(&["failover", "--to", &b, "--connect", &connect, "--yes"]);
    assert!(ok, "{text}\n{}", logs(&c, &ALL));
    assert!(text.contains("Nothing is lost"), "{text}");
    c.start_one(&p).unwrap();
    c.wait_until(Duration::from_secs(15), "the old primary rejoining", |c| {
        c.status(&p).is_ok_and(|s| s.role == "backup")
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", logs(&c, &ALL)));
    check(&c, &ALL, &o);
}

fn start_no_arbiter() -> (tempfile::TempDir, LocalCluster) {
    start(Plan::new(&["a", "b"], &["dr"], false, QOS_MS))
}

#[test]
fn handshakes_from_strangers_are_refused_with_the_reason() {
    use redoubt_engine::wire::{self, FrameLimits, Hello, Message, PeerRole, RefuseCode};
    let (_dir, c) = start(Plan::new(&["a", "b"], &[], true, QOS_MS));
    let ask = |mirror: &str, from: &str, role: PeerRole| {
        let mut s = std::net::TcpStream::connect(c.addr("a")).unwrap();
        wire::send(&mut s, &Message::Hello(Hello::new(mirror, from, role))).unwrap();
        wire::recv(&mut s, FrameLimits::default()).unwrap()
    };
    match ask("M1", "mallory", PeerRole::Member) {
        Message::Refuse(r) => {
            assert_eq!(r.code, RefuseCode::UnknownMember);
            assert!(r.reason.contains("mallory"), "{}", r.reason);
        }
        other => panic!("an unknown member was let in: {other:?}"),
    }
    match ask("M2", "app", PeerRole::Client) {
        Message::Refuse(r) => {
            assert_eq!(r.code, RefuseCode::WrongMirror);
            assert!(r.reason.contains("M1"), "{}", r.reason);
        }
        other => panic!("a client of another mirror was let in: {other:?}"),
    }
    let mut hello = Hello::new("M1", "app", PeerRole::Client);
    hello.protocol = 99;
    let mut s = std::net::TcpStream::connect(c.addr("a")).unwrap();
    wire::send(&mut s, &Message::Hello(hello)).unwrap();
    match wire::recv(&mut s, FrameLimits::default()).unwrap() {
        Message::Refuse(r) => assert_eq!(r.code, RefuseCode::VersionMismatch),
        other => panic!("a future protocol was let in: {other:?}"),
    }
    assert!(matches!(
        ask("M1", "app", PeerRole::Client),
        Message::Welcome(_)
    ));
}
