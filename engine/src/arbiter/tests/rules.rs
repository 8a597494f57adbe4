//! The compare-and-set rules, on [`Registers`] without sockets.

use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use super::w;
use crate::arbiter::{Registers, WitnessStore};
use crate::wire::{Cas, CasReply, Ping, Register, Witness};

fn registers() -> (tempfile::TempDir, Registers) {
    let dir = tempfile::tempdir().unwrap();
    let r = Registers::new(WitnessStore::open(dir.path()).unwrap());
    (dir, r)
}

fn register(r: &Registers, member: &str, state: Witness) -> CasReply {
    r.register(&Register {
        mirror: "M".into(),
        member: member.into(),
        state,
    })
}

fn cas(r: &Registers, expect: Witness, new: Witness, lost: Option<&str>) -> CasReply {
    r.cas(
        &Cas {
            mirror: "M".into(),
            member: "m".into(),
            expect,
            new,
            require_lost: lost.map(str::to_string),
        },
        Instant::now(),
    )
}

fn ping(r: &Registers, member: &str, conn: u64, qos_ms: u32, now: Instant) {
    r.ping(
        conn,
        &Ping {
            mirror: "M".into(),
            member: member.into(),
            qos_ms,
        },
        now,
    );
}

#[test]
fn without_state_every_cas_is_refused_until_the_primary_registers() {
    let (_d, r) = registers();
    let c = cas(&r, w(1, "a", true), w(1, "a", false), None);
    assert!(!c.ok);
    assert_eq!(c.state, None);
    assert_eq!(
        c.reason,
        "arbiter has no state for mirror M; waiting for the primary to register"
    );
    // Only the primary named in the state registers.
    let c = register(&r, "b", w(1, "a", true));
    assert!(!c.ok);
    assert!(
        c.reason.contains("only the primary registers"),
        "{}",
        c.reason
    );
    assert!(register(&r, "a", w(1, "a", true)).ok);
    // Repeating the same registration is harmless; another one is refused.
    assert!(register(&r, "a", w(1, "a", true)).ok);
    let c = register(&r, "a", w(2, "a", true));
    assert!(!c.ok);
    assert_eq!(c.state, Some(w(1, "a", true)));
    assert!(cas(&r, w(1, "a", true), w(1, "a", false), None).ok);
}

#[test]
fn cas_compares_the_whole_state_and_returns_it() {
    let (_d, r) = registers();
    register(&r, "a", w(4, "a", true));
    let c = cas(&r, w(4, "b", true), w(5, "b", false), None);
    assert!(!c.ok);
    assert_eq!(c.state, Some(w(4, "a", true)));
    assert_eq!(
        c.reason,
        "state is epoch 4 primary a (backup active), expected epoch 4 primary b (backup active)"
    );
    let c = cas(&r, w(4, "a", false), w(4, "a", true), None);
    assert!(!c.ok);
    let c = cas(&r, w(4, "a", true), w(3, "b", false), None);
    assert!(!c.ok);
    assert!(c.reason.contains("epochs never go back"), "{}", c.reason);
    let c = cas(&r, w(4, "a", true), w(5, "", false), None);
    assert!(!c.ok, "an empty primary name is refused");
    let c = cas(&r, w(4, "a", true), w(5, "b", false), None);
    assert!(c.ok, "{}", c.reason);
    assert_eq!(c.state, Some(w(5, "b", false)));
    assert_eq!(r.state("M"), Some(w(5, "b", false)));
    // The old expectation no longer matches.
    assert!(!cas(&r, w(4, "a", true), w(4, "a", false), None).ok);
}

#[test]
fn require_lost_refuses_while_the_member_is_present() {
    let (_d, r) = registers();
    register(&r, "a", w(4, "a", true));
    let takeover = || cas(&r, w(4, "a", true), w(5, "b", false), Some("a"));
    // Connected but never pinged: absent.
    r.open("M", "a", 1);
    assert!(!r.is_present("M", "a"));
    // Pinged: present, the takeover is refused and says why.
    ping(&r, "a", 1, 60_000, Instant::now());
    assert!(r.is_present("M", "a"));
    let c = takeover();
    assert!(!c.ok);
    assert!(
        c.reason
            .starts_with("primary a is still connected to the arbiter"),
        "{}",
        c.reason
    );
    assert_eq!(c.state, Some(w(4, "a", true)));
    // A second connection of the same member keeps it present when the
    // first closes; closing the last makes it absent at once.
    r.open("M", "a", 2);
    ping(&r, "a", 2, 60_000, Instant::now());
    r.close("M", "a", 1);
    assert!(!takeover().ok);
    r.close("M", "a", 2);
    assert!(!r.is_present("M", "a"));
    assert!(takeover().ok);
}

#[test]
fn a_ping_older_than_its_qos_is_absence() {
    let (_d, r) = registers();
    register(&r, "a", w(1, "a", true));
    r.open("M", "a", 1);
    let t0 = Instant::now();
    ping(&r, "a", 1, 200, t0);
    let at = |ms| {
        r.cas(
            &Cas {
                mirror: "M".into(),
                member: "b".into(),
                expect: w(1, "a", true),
                new: w(2, "b", false),
                require_lost: Some("a".into()),
            },
            t0 + Duration::from_millis(ms),
        )
    };
    assert!(!at(199).ok);
    assert!(at(200).ok);
}

/// The two CASes of DESIGN.md §3.2 race from many threads; in every round
/// exactly one wins and the state is the winner's.
#[test]
fn exactly_one_of_takeover_and_go_alone_wins() {
    let (_d, r) = registers();
    let r = Arc::new(r);
    register(&r, "a", w(1, "a", true));
    let mut wins = [0u32; 2];
    for round in 0..200u64 {
        // Alternate the primary between a and b so the state keeps moving.
        let cur = r.state("M").unwrap();
        let (p, b) = if cur.primary == "a" {
            ("a", "b")
        } else {
            ("b", "a")
        };
        let expect = w(cur.epoch, p, true);
        if cur != expect {
            assert!(cas(&r, cur, expect.clone(), None).ok);
        }
        let barrier = Arc::new(Barrier::new(2));
        let requests = [
            (w(expect.epoch + 1, b, false), Some(p.to_string())),
            (w(expect.epoch, p, false), None),
        ];
        let handles: Vec<_> = requests
            .into_iter()
            .map(|(new, lost)| {
                let (r, barrier, expect) = (r.clone(), barrier.clone(), expect.clone());
                thread::spawn(move || {
                    barrier.wait();
                    let c = cas(&r, expect, new.clone(), lost.as_deref());
                    (c, new)
                })
            })
            .collect();
        let results: Vec<(CasReply, Witness)> =
            handles.into_iter().map(|h| h.join().unwrap()).collect();
        let winners: Vec<_> = results.iter().filter(|(c, _)| c.ok).collect();
        assert_eq!(winners.len(), 1, "round {round}: {results:?}");
        assert_eq!(r.state("M").as_ref(), Some(&winners[0].1));
        for (i, (c, _)) in results.iter().enumerate() {
            if c.ok {
                wins[i] += 1;
            } else {
                assert_eq!(
                    c.state.as_ref(),
                    Some(&winners[0].1),
                    "the loser sees the winner"
                );
            }
        }
    }
    assert_eq!(wins.iter().sum::<u32>(), 200);
}

#[test]
fn other_requests_count_as_pings_once_the_qos_is_known() {
    let (_d, r) = registers();
    let t0 = Instant::now();
    r.open("M", "a", 1);
    r.touch("M", "a", 1, t0);
    assert!(!r.is_present("M", "a"), "no QoS yet: a CAS is not a ping");
    ping(&r, "a", 1, 60_000, t0);
    assert!(r.is_present("M", "a"));
    // A ping with a short QoS, then a CAS later on the same connection.
    ping(&r, "a", 1, 100, t0);
    r.touch("M", "a", 1, t0 + Duration::from_millis(90));
    register(&r, "a", w(1, "a", true));
    let c = r.cas(
        &Cas {
            mirror: "M".into(),
            member: "b".into(),
            expect: w(1, "a", true),
            new: w(2, "b", false),
            require_lost: Some("a".into()),
        },
        t0 + Duration::from_millis(150),
    );
    assert!(!c.ok, "the touch at 90 ms keeps a present until 190 ms");
}
