//! The client service over real sockets, against a member whose engine
//! the test controls: commits wait for a "backup" acknowledgement that the
//! test gives (synchronous commits on, no backup), or fail because commits
//! are paused.

use std::io::BufReader;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use super::*;
use crate::client::{Client, ClientError, ClientOptions};
use crate::db::{Engine, EngineOptions};
use crate::mirror::config::{MemberConfig, MemberKind, MemberSpec};
use crate::mirror::member::View;
use crate::model::parse_key;
use crate::wire::MemberRole;
use crate::{Key, Value};

const DB: &str = "DB";

struct Served {
    shared: Arc<Shared>,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

/// A primary serving clients on a free port; writes wait `pause_timeout`
/// while commits are paused.
fn served(pause_timeout: Duration) -> Served {
    let dir = tempfile::tempdir().unwrap();
    let opts = EngineOptions {
        pause_timeout,
        ..EngineOptions::default()
    };
    let (engine, _) = Engine::open(dir.path(), opts).unwrap();
    engine.create_database(DB).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let cfg = MemberConfig {
        mirror: "M".into(),
        name: "a".into(),
        data_dir: dir.path().to_path_buf(),
        listen: addr.to_string(),
        members: vec![MemberSpec {
            name: "a".into(),
            addr: addr.to_string(),
            kind: MemberKind::Failover,
        }],
        arbiter: None,
        qos: Duration::from_secs(1),
        databases: vec![DB.into()],
        cache_pages: 256,
        journal_keep_bytes: 0,
        journal_write_ahead_bytes: 0,
        admin: None,
    };
    let view = View {
        primary: Some("a".into()),
        ..View::new(MemberRole::Primary, 1)
    };
    let shared = Arc::new(Shared::new(cfg, engine, view, mpsc::channel().0));
    let s = shared.clone();
    thread::spawn(move || accept_loop(s, listener));
    Served {
        shared,
        addr,
        _dir: dir,
    }
}

impl Served {
    fn client(&self) -> Client {
        Client::connect(&[self.addr.to_string()], ClientOptions::default()).unwrap()
    }

    fn get(&self, key: &str) -> Option<Value> {
        self.shared.engine.session().get(DB, &k(key)).unwrap()
    }

    /// A connection past the handshake, spoken to frame by frame: the
    /// stream to write to and a reader of it.
    fn raw_client(&self) -> (TcpStream, BufReader<TcpStream>) {
        let mut s = TcpStream::connect(self.addr).unwrap();
        let hello = Hello::new("M", "test", crate::wire::PeerRole::Client);
        wire::send(&mut s, &Message::Hello(hello)).unwrap();
        let mut r = BufReader::new(s.try_clone().unwrap());
        assert!(matches!(
            wire::recv(&mut r, FrameLimits::CLIENT),
            Ok(Message::Welcome(_))
        ));
        (s, r)
    }

    /// Waits (10 s at most) for a rollback to remove `key`.
    fn eventually_absent(&self, key: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.get(key).is_some() {
            assert!(Instant::now() < deadline, "{key} was never rolled back");
            thread::sleep(Duration::from_millis(5));
        }
    }
}

fn k(text: &str) -> Key {
    parse_key(text).unwrap()
}

fn set(key: &str, v: i64) -> ClientOp {
    ClientOp::Set {
        db: DB.into(),
        key: k(key),
        value: Value::Int(v),
    }
}

#[test]
fn a_pipelined_unlock_waits_until_the_commit_before_it_is_acknowledged() {
    let m = served(Duration::from_secs(30));
    // Commits are acknowledged only when the test says the backup has them.
    m.shared.engine.set_sync(true);
    let mut writer = m.client();
    let mut other = m.client();
    assert!(writer.lock(DB, &k("^L"), Duration::ZERO).unwrap());
    let ops = vec![
        ClientOp::TStart,
        set("^W", 1),
        ClientOp::TCommit,
        ClientOp::Unlock {
            db: DB.into(),
            key: k("^L"),
        },
    ];
    let w = thread::spawn(move || writer.pipeline(&ops));
    let o = thread::spawn(move || {
        let got = other.lock(DB, &k("^L"), Duration::from_secs(20)).unwrap();
        (got, other.get(DB, &k("^W")).unwrap())
    });
    thread::sleep(Duration::from_millis(300));
    assert!(
        !o.is_finished(),
        "another client took the lock while the commit made under it was not acknowledged"
    );
    assert!(!w.is_finished(), "the commit was answered unacknowledged");
    while !w.is_finished() {
        let end = m.shared.engine.journal().end_lsn();
        m.shared.engine.backup_acked(end);
        thread::sleep(Duration::from_millis(5));
    }
    let answers = w.join().unwrap().unwrap();
    assert_eq!(answers[2], Ok(Reply::Level(0)));
    assert_eq!(answers[3], Ok(Reply::Bool(true)));
    assert_eq!(o.join().unwrap(), (true, Some(Value::Int(1))));
}

#[test]
fn a_failed_commit_leaves_no_transaction_for_the_next_pipelined_one_to_nest_in() {
    let m = served(Duration::from_millis(100));
    let mut c = m.client();
    c.tstart().unwrap();
    c.call(set("^A", 1)).unwrap();
    m.shared.engine.pause_commits("test");
    let ops = [
        ClientOp::TCommit,
        ClientOp::TStart,
        set("^B", 2),
        ClientOp::TCommit,
    ];
    let e = c
        .pipeline(&ops)
        .expect_err("the member ends the connection after the failed commit");
    // The TCOMMIT's failure is answered; nothing behind it ran.
    assert_eq!(e.answered.len(), 1, "{:?}", e.answered);
    let refused = e.answered[0].as_ref().unwrap_err();
    assert_eq!(refused.code, ErrorCode::Trouble, "{refused:?}");
    assert!(
        matches!(&e.error, ClientError::OutcomeUnknown { op, .. } if op == "tcommit"),
        "{}",
        e.error
    );
    assert_eq!(c.tlevel(), 0);
    m.shared.engine.resume_commits();
    // The session's rollback runs as its connection closes.
    m.eventually_absent("^A");
    assert_eq!(m.get("^B"), None);

    // One at a time: the failed TCOMMIT leaves the client at level 0, and
    // its next call reconnects and runs outside any transaction.
    c.tstart().unwrap();
    c.call(set("^C", 3)).unwrap();
    m.shared.engine.pause_commits("test");
    let e = c.tcommit().unwrap_err();
    assert!(
        matches!(&e, ClientError::Remote(r) if r.code == ErrorCode::Trouble),
        "{e}"
    );
    assert_eq!(c.tlevel(), 0);
    m.shared.engine.resume_commits();
    c.call(set("^D", 4)).unwrap();
    m.eventually_absent("^C");
    assert_eq!(m.get("^D"), Some(Value::Int(4)));
}

#[test]
fn an_outbox_full_of_replies_behind_one_commit_sends_them_all() {
    let m = served(Duration::from_secs(30));
    let mut s = m.shared.engine.session();
    s.tstart().unwrap();
    s.set(DB, &k("^A"), &Value::Int(1)).unwrap();
    let mut outbox = Outbox::default();
    outbox.push(1, Held::Commit(s.tcommit_pipelined().unwrap()));
    for id in 2..=MAX_HELD as u64 {
        outbox.push(id, Held::Ready(Ok(Reply::Done), false));
    }
    assert!(outbox.too_full());
    let sink = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut tx = TcpStream::connect(sink.local_addr().unwrap()).unwrap();
    let (rx, _) = sink.accept().unwrap();
    let reader = thread::spawn(move || {
        let mut r = BufReader::new(rx);
        let mut ids = Vec::new();
        while let Ok(Message::Response(resp)) = wire::recv(&mut r, FrameLimits::CLIENT) {
            ids.push(resp.id);
        }
        ids
    });
    outbox.relieve(&m.shared, &mut tx).unwrap();
    assert!(
        !outbox.holds_any(),
        "{} replies still held",
        outbox.held.len()
    );
    drop(tx);
    let ids = reader.join().unwrap();
    assert_eq!(ids, (1..=MAX_HELD as u64).collect::<Vec<_>>());
}

#[test]
fn a_pipeline_of_large_requests_and_large_answers_does_not_block_both_sides() {
    // The member writes each GET's answer (256 KiB) while it reads no
    // more requests; the client sends requests while it reads no
    // answers. Without a bound on the bytes in flight (128 SETs of
    // 256 KiB here, more than the sockets' buffers hold) each side fills
    // the other's buffers and waits for ever.
    let m = served(Duration::from_secs(30));
    let mut c = m.client();
    let big = Value::Str("x".repeat(256 << 10));
    let mut ops = Vec::new();
    for i in 0..128 {
        let key = k(&format!("^V({i})"));
        ops.push(ClientOp::Set {
            db: DB.into(),
            key: key.clone(),
            value: big.clone(),
        });
        ops.push(ClientOp::Get { db: DB.into(), key });
    }
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || tx.send(c.pipeline(&ops).map(|a| a.len())));
    let answered = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the pipeline is stuck")
        .unwrap();
    assert_eq!(answered, 256);
    assert_eq!(m.get("^V(127)"), Some(big));

    // One large request behind a small one with a large answer: it waits
    // until that answer is in.
    let mut c = m.client();
    let answer = Value::Str("a".repeat(6 << 20));
    c.call(ClientOp::Set {
        db: DB.into(),
        key: k("^G"),
        value: answer.clone(),
    })
    .unwrap();
    let ops = vec![
        ClientOp::Get {
            db: DB.into(),
            key: k("^G"),
        },
        ClientOp::Set {
            db: DB.into(),
            key: k("^S"),
            value: Value::Str("s".repeat(12 << 20)),
        },
    ];
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || tx.send(c.pipeline(&ops)));
    let answers = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the pipeline is stuck")
        .unwrap();
    assert_eq!(answers[0], Ok(Reply::Value(Some(answer))));
    assert_eq!(answers[1], Ok(Reply::Done));
}

#[test]
fn a_client_that_stops_sending_still_gets_the_answer_of_its_last_commit() {
    // The client sends a transaction, shuts down its sending side and
    // reads: the TCOMMIT's answer, held until the commit is acknowledged,
    // must still come.
    let m = served(Duration::from_secs(30));
    m.shared.engine.set_sync(true);
    let (mut s, mut r) = m.raw_client();
    for (id, op) in [
        (1, ClientOp::TStart),
        (2, set("^H", 1)),
        (3, ClientOp::TCommit),
    ] {
        wire::send(&mut s, &Message::Request(crate::wire::Request { id, op })).unwrap();
    }
    s.shutdown(std::net::Shutdown::Write).unwrap();
    // The "backup" acknowledges everything until the answers are in.
    let engine = m.shared.engine.clone();
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop = done.clone();
    let acker = thread::spawn(move || {
        while !stop.load(std::sync::atomic::Ordering::SeqCst) {
            engine.backup_acked(engine.journal().end_lsn());
            thread::sleep(Duration::from_millis(5));
        }
    });
    let mut answers = Vec::new();
    while let Ok(Message::Response(resp)) = wire::recv(&mut r, FrameLimits::CLIENT) {
        answers.push((resp.id, resp.result));
    }
    assert_eq!(
        answers,
        vec![
            (1, Ok(Reply::Level(1))),
            (2, Ok(Reply::Done)),
            (3, Ok(Reply::Level(0)))
        ]
    );
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    acker.join().unwrap();
}

#[test]
fn a_connection_that_breaks_keeps_its_locks_until_its_pending_commit_is_acknowledged() {
    // The client holds a lock, pipelines a transaction under it, then
    // sends garbage: the member ends the connection at once. The lock
    // must not be free while the commit made under it still waits for
    // its acknowledgement.
    let m = served(Duration::from_secs(30));
    m.shared.engine.set_sync(true);
    let (mut s, mut r) = m.raw_client();
    let lock = ClientOp::Lock {
        db: DB.into(),
        key: k("^L"),
        timeout_ms: 0,
    };
    wire::send(
        &mut s,
        &Message::Request(crate::wire::Request { id: 1, op: lock }),
    )
    .unwrap();
    assert!(matches!(
        wire::recv(&mut r, FrameLimits::CLIENT),
        Ok(Message::Response(resp)) if resp.result == Ok(Reply::Bool(true))
    ));
    for (id, op) in [
        (2, ClientOp::TStart),
        (3, set("^W", 1)),
        (4, ClientOp::TCommit),
    ] {
        wire::send(&mut s, &Message::Request(crate::wire::Request { id, op })).unwrap();
    }
    std::io::Write::write_all(&mut s, &[0xff; 64]).unwrap();
    let mut other = m.client();
    let o = thread::spawn(move || other.lock(DB, &k("^L"), Duration::from_secs(20)).unwrap());
    thread::sleep(Duration::from_millis(300));
    assert!(
        !o.is_finished(),
        "the lock was free while the commit made under it was not acknowledged"
    );
    while !o.is_finished() {
        m.shared
            .engine
            .backup_acked(m.shared.engine.journal().end_lsn());
        thread::sleep(Duration::from_millis(5));
    }
    assert!(o.join().unwrap());
    assert_eq!(m.get("^W"), Some(Value::Int(1)));
}
