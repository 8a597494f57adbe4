//! The arbiter service over TCP.

use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use super::w;
use crate::arbiter::{serve, ArbiterError, ArbiterHandle, ArbiterLink, ArbiterOptions};
use crate::wire::{recv, send, FrameLimits, Hello, MemberRole, Message, PeerRole, RefuseCode};

const T: Duration = Duration::from_secs(5);

fn start(dir: &Path) -> ArbiterHandle {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    serve(l, dir, ArbiterOptions::default()).unwrap()
}

fn link(a: &ArbiterHandle, member: &str) -> ArbiterLink {
    ArbiterLink::connect(&a.local_addr().to_string(), "M", member, T).unwrap()
}

/// Polls `f` until true or `within` passes.
fn eventually(within: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + within;
    while Instant::now() < end {
        if f() {
            return true;
        }
        thread::sleep(Duration::from_millis(2));
    }
    f()
}

#[test]
fn handshake_welcomes_members_and_refuses_others() {
    let dir = tempfile::tempdir().unwrap();
    let a = start(dir.path());
    let l = link(&a, "a");
    assert_eq!(l.welcome().role, MemberRole::Arbiter);
    assert_eq!(l.welcome().epoch, 0);
    let addr = a.local_addr().to_string();
    let refused = |mirror: &str, member: &str| match ArbiterLink::connect(&addr, mirror, member, T)
    {
        Err(ArbiterError::Refused { code, reason }) => (code, reason),
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("accepted"),
    };
    assert_eq!(refused("../etc", "a").0, RefuseCode::WrongMirror);
    assert_eq!(refused("M", "").0, RefuseCode::UnknownMember);
    // A client, and another protocol version.
    for hello in [
        Hello::new("M", "app", PeerRole::Client),
        Hello {
            protocol: 99,
            ..Hello::new("M", "a", PeerRole::Member)
        },
    ] {
        let mut s = TcpStream::connect(a.local_addr()).unwrap();
        send(&mut s, &Message::Hello(hello)).unwrap();
        match recv(&mut s, FrameLimits::CLIENT).unwrap() {
            Message::Refuse(r) => assert!(
                r.reason.contains("members only") || r.reason.contains("version 99"),
                "{}",
                r.reason
            ),
            other => panic!("{other:?}"),
        }
    }
    a.shutdown();
}

#[test]
fn state_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let a = start(dir.path());
    let mut l = link(&a, "a");
    assert!(l.register(&w(3, "a", true)).unwrap().ok);
    let c = l.cas(&w(3, "a", true), &w(3, "a", false), None).unwrap();
    assert!(c.ok, "{}", c.reason);
    drop(l);
    a.shutdown();

    let a = start(dir.path());
    assert_eq!(a.state("M"), Some(w(3, "a", false)));
    let mut l = link(&a, "b");
    assert_eq!(l.welcome().epoch, 3);
    assert_eq!(l.ping(T).unwrap(), Some(w(3, "a", false)));
    let c = l
        .cas(&w(3, "a", false), &w(4, "b", false), Some("a"))
        .unwrap();
    assert!(c.ok, "{}", c.reason);
}

#[test]
fn restart_without_state_refuses_until_the_primary_registers() {
    let dir = tempfile::tempdir().unwrap();
    let a = start(dir.path());
    let mut l = link(&a, "a");
    assert!(l.register(&w(5, "a", true)).unwrap().ok);
    drop(l);
    a.shutdown();

    let empty = tempfile::tempdir().unwrap();
    let a = start(empty.path());
    let mut b = link(&a, "b");
    assert_eq!(b.ping(T).unwrap(), None);
    let c = b
        .cas(&w(5, "a", true), &w(6, "b", false), Some("a"))
        .unwrap();
    assert!(!c.ok);
    assert!(c.reason.contains("waiting for the primary to register"));
    assert!(
        !b.register(&w(5, "a", true)).unwrap().ok,
        "only the primary registers"
    );
    let mut p = link(&a, "a");
    assert!(p.register(&w(5, "a", true)).unwrap().ok);
    assert!(
        b.cas(&w(5, "a", true), &w(6, "b", false), Some("a"))
            .unwrap()
            .ok
    );
}

#[test]
fn a_closed_connection_is_absence_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let a = start(dir.path());
    let mut p = link(&a, "a");
    assert!(p.register(&w(1, "a", true)).unwrap().ok);
    p.ping(Duration::from_secs(60)).unwrap();
    assert!(a.is_present("M", "a"));
    let mut b = link(&a, "b");
    let c = b
        .cas(&w(1, "a", true), &w(2, "b", false), Some("a"))
        .unwrap();
    assert!(!c.ok);
    assert!(
        c.reason.contains("primary a is still connected"),
        "{}",
        c.reason
    );
    let closed = Instant::now();
    drop(p);
    assert!(eventually(Duration::from_secs(1), || !a.is_present("M", "a")));
    // Nowhere near the 60 s QoS.
    assert!(closed.elapsed() < Duration::from_secs(1));
    assert!(
        b.cas(&w(1, "a", true), &w(2, "b", false), Some("a"))
            .unwrap()
            .ok
    );
}

#[test]
fn ping_silence_past_the_qos_is_absence() {
    let dir = tempfile::tempdir().unwrap();
    let a = start(dir.path());
    let qos = Duration::from_millis(200);
    let mut p = link(&a, "a");
    assert!(p.register(&w(1, "a", true)).unwrap().ok);
    // Pinging every QoS/4 keeps it present.
    for _ in 0..8 {
        p.ping(qos).unwrap();
        assert!(a.is_present("M", "a"));
        thread::sleep(qos / 4);
    }
    // A frozen member: connection open, no pings.
    p.ping(qos).unwrap();
    let frozen = Instant::now();
    assert!(eventually(Duration::from_secs(2), || !a.is_present("M", "a")));
    assert!(frozen.elapsed() >= qos / 2, "absent only after the QoS");
    let mut b = link(&a, "b");
    assert!(
        b.cas(&w(1, "a", true), &w(2, "b", false), Some("a"))
            .unwrap()
            .ok
    );
    // The arbiter closes a connection silent for its QoS: the frozen
    // member's next ping fails and it must reconnect (and then learns the
    // new state from the Pong).
    thread::sleep(qos * 2);
    assert!(p.ping(qos).is_err());
    let mut p = link(&a, "a");
    assert_eq!(p.ping(qos).unwrap(), Some(w(2, "b", false)));
}

/// The competing CASes of a partition, each over its own connection, over
/// many rounds: exactly one wins each time.
#[test]
fn exactly_one_competing_cas_wins_over_sockets() {
    let dir = tempfile::tempdir().unwrap();
    let a = start(dir.path());
    let addr = a.local_addr().to_string();
    let mut admin = link(&a, "a");
    assert!(admin.register(&w(1, "a", true)).unwrap().ok);
    drop(admin);
    for round in 0..100u64 {
        let cur = a.state("M").unwrap();
        let (p, b) = if cur.primary == "a" {
            ("a", "b")
        } else {
            ("b", "a")
        };
        let expect = w(cur.epoch, p, true);
        if cur != expect {
            let mut l = ArbiterLink::connect(&addr, "M", p, T).unwrap();
            assert!(l.cas(&cur, &expect, None).unwrap().ok);
        }
        let barrier = Arc::new(Barrier::new(2));
        let jobs = [
            (b, w(expect.epoch + 1, b, false), Some(p.to_string())),
            (p, w(expect.epoch, p, false), None),
        ];
        let handles: Vec<_> = jobs
            .into_iter()
            .map(|(me, new, lost)| {
                let mut l = ArbiterLink::connect(&addr, "M", me, T).unwrap();
                let (barrier, expect) = (barrier.clone(), expect.clone());
                thread::spawn(move || {
                    barrier.wait();
                    let c = l.cas(&expect, &new, lost.as_deref()).unwrap();
                    (c.ok, new)
                })
            })
            .collect();
        let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let winners: Vec<_> = results.iter().filter(|(ok, _)| *ok).collect();
        assert_eq!(winners.len(), 1, "round {round}: {results:?}");
        assert_eq!(a.state("M").as_ref(), Some(&winners[0].1));
    }
}

#[test]
fn shutdown_closes_member_connections() {
    let dir = tempfile::tempdir().unwrap();
    let a = start(dir.path());
    let mut p = link(&a, "a");
    p.ping(Duration::from_secs(60)).unwrap();
    a.shutdown();
    assert!(p.ping(Duration::from_secs(60)).is_err());
}
