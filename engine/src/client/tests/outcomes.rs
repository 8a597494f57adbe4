//! What the client retries, and what it reports as unknown or lost.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use super::fake::{ok, plain_reply, welcome, Act, Fake};
use crate::client::{Client, ClientError, ClientOptions};
use crate::wire::{
    ClientOp, ErrorCode, FrameLimits, MemberRole, RemoteError, Reply, Request, Response,
};
use crate::{Key, Value};

fn opts() -> ClientOptions {
    ClientOptions {
        connect_timeout: Duration::from_secs(2),
        io_timeout: Duration::from_secs(5),
        ..ClientOptions::default()
    }
}

fn key() -> Key {
    "^x(1)".parse().unwrap()
}

fn remote(req: &Request, code: ErrorCode, primary: Option<&str>) -> Act {
    Act::Answer(Response {
        id: req.id,
        result: Err(RemoteError {
            code,
            message: format!("this member is not the primary ({code})"),
            primary: primary.map(str::to_string),
        }),
    })
}

pub(super) fn read_only(req: &Request, primary: Option<&str>) -> Act {
    remote(req, ErrorCode::ReadOnly, primary)
}

fn connect(f: &Fake) -> Client {
    Client::connect(std::slice::from_ref(&f.addr), opts()).unwrap()
}

fn is_set(r: &Request) -> bool {
    matches!(r.op, ClientOp::Set { .. })
}

#[test]
fn a_set_whose_answer_is_lost_is_outcome_unknown_and_not_retried() {
    let f = Fake::start(
        |_| welcome("a", MemberRole::Primary, None),
        |req| {
            if is_set(req) {
                Act::Drop
            } else {
                plain_reply(req)
            }
        },
    );
    let mut c = connect(&f);
    match c.set("DB", &key(), &Value::Int(1)) {
        Err(ClientError::OutcomeUnknown { op, reason }) => {
            assert_eq!(op, "set ^x(1) in DB");
            assert!(reason.contains("closed"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    thread::sleep(Duration::from_millis(100));
    let sets = f.requests.lock().iter().filter(|r| is_set(r)).count();
    assert_eq!(sets, 1, "never resent");
    // The next call reconnects.
    assert_eq!(c.get("DB", &key()).unwrap(), None);
    assert_eq!(f.hellos.lock().len(), 2);
}

#[test]
fn a_write_that_times_out_is_outcome_unknown() {
    let f = Fake::start(
        |_| welcome("a", MemberRole::Primary, None),
        |req| {
            Act::Slow(
                Duration::from_millis(500),
                ok(req, Reply::Int(2)).into_response(),
            )
        },
    );
    let mut c = Client::connect(
        std::slice::from_ref(&f.addr),
        ClientOptions {
            io_timeout: Duration::from_millis(100),
            ..opts()
        },
    )
    .unwrap();
    match c.increment("DB", &key(), 1) {
        Err(ClientError::OutcomeUnknown { reason, .. }) => {
            assert!(reason.contains("no answer within 100 ms"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_read_whose_answer_is_lost_is_retried_once() {
    let n = Arc::new(AtomicUsize::new(0));
    let m = n.clone();
    let f = Fake::start(
        |_| welcome("a", MemberRole::Primary, None),
        move |req| {
            if m.fetch_add(1, Ordering::SeqCst) == 0 {
                Act::Drop
            } else {
                ok(req, Reply::Value(Some(Value::Int(7))))
            }
        },
    );
    let mut c = connect(&f);
    assert_eq!(c.get("DB", &key()).unwrap(), Some(Value::Int(7)));
    assert_eq!(f.count(), 2);

    // Lost twice: reported, not retried again.
    let always = Fake::start(|_| welcome("a", MemberRole::Primary, None), |_| Act::Drop);
    let mut c = connect(&always);
    assert!(matches!(c.data("DB", &key()), Err(ClientError::Wire(_))));
    assert_eq!(always.count(), 2);
}

#[test]
fn a_request_that_could_not_be_sent_goes_to_the_new_primary() {
    let p2 = Fake::primary("b");
    let demoted = Arc::new(AtomicBool::new(false));
    let (d, hint) = (demoted.clone(), p2.addr.clone());
    let p1 = Fake::start(
        move |_| {
            if d.load(Ordering::SeqCst) {
                welcome("a", MemberRole::Backup, Some(&hint))
            } else {
                welcome("a", MemberRole::Primary, None)
            }
        },
        plain_reply,
    );
    let mut c = connect(&p1);
    // The old primary goes away between two calls.
    demoted.store(true, Ordering::SeqCst);
    p1.kick();
    thread::sleep(Duration::from_millis(50));
    c.set("DB", &key(), &Value::Int(1)).unwrap();
    assert_eq!(c.server(), Some(p2.addr.as_str()));
    assert_eq!(p1.count(), 0);
    assert_eq!(p2.count(), 1);
}

#[test]
fn a_not_primary_answer_is_followed_once() {
    let p2 = Fake::primary("b");
    let hint = p2.addr.clone();
    let p1 = Fake::start(
        |_| welcome("a", MemberRole::Primary, None),
        move |req| remote(req, ErrorCode::NotPrimary, Some(&hint)),
    );
    let mut c = connect(&p1);
    c.set("DB", &key(), &Value::Int(1)).unwrap();
    assert_eq!((p1.count(), p2.count()), (1, 1));
    assert_eq!(c.server(), Some(p2.addr.as_str()));

    // Two members that each say the other is primary: one retry, then
    // the error.
    let q = Fake::start(
        |_| welcome("q", MemberRole::Primary, None),
        |req| read_only(req, None),
    );
    let mut c = connect(&q);
    match c.set("DB", &key(), &Value::Int(1)) {
        Err(ClientError::Remote(e)) => assert_eq!(e.code, ErrorCode::ReadOnly),
        other => panic!("{other:?}"),
    }
    assert_eq!(q.count(), 2);
}

#[test]
fn a_broken_transaction_is_lost_not_retried() {
    let f = Fake::start(
        |_| welcome("a", MemberRole::Primary, None),
        |req| {
            if is_set(req) {
                Act::Drop
            } else {
                plain_reply(req)
            }
        },
    );
    let mut c = connect(&f);
    assert_eq!(c.tstart().unwrap(), 1);
    match c.set("DB", &key(), &Value::Int(1)) {
        Err(ClientError::TransactionLost {
            level, locks, op, ..
        }) => {
            assert_eq!((level, locks), (1, 0));
            assert_eq!(op, "set ^x(1) in DB");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(c.tlevel(), 0);

    // Broken while idle inside a transaction: the next call is not sent
    // anywhere else.
    assert_eq!(c.tstart().unwrap(), 1);
    f.kick();
    thread::sleep(Duration::from_millis(50));
    let before = f.count();
    assert!(matches!(
        c.get("DB", &key()),
        Err(ClientError::TransactionLost { level: 1, .. })
    ));
    assert_eq!(f.count(), before);
}

#[test]
fn a_lost_commit_answer_is_outcome_unknown() {
    let f = Fake::start(
        |_| welcome("a", MemberRole::Primary, None),
        |req| {
            if req.op == ClientOp::TCommit {
                Act::Drop
            } else {
                plain_reply(req)
            }
        },
    );
    let mut c = connect(&f);
    c.tstart().unwrap();
    c.set("DB", &key(), &Value::Int(1)).unwrap();
    assert!(matches!(
        c.tcommit(),
        Err(ClientError::OutcomeUnknown { op, .. }) if op == "tcommit"
    ));
    assert_eq!(c.tlevel(), 0);
}

#[test]
fn held_locks_make_a_lost_connection_a_lost_session() {
    let f = Fake::start(
        |_| welcome("a", MemberRole::Primary, None),
        |req| {
            if matches!(req.op, ClientOp::Get { .. }) {
                Act::Drop
            } else {
                plain_reply(req)
            }
        },
    );
    let mut c = connect(&f);
    assert!(c.lock("DB", &key(), Duration::from_secs(1)).unwrap());
    assert!(matches!(
        c.get("DB", &key()),
        Err(ClientError::TransactionLost {
            level: 0,
            locks: 1,
            ..
        })
    ));
}

#[test]
fn an_oversize_request_is_refused_before_sending() {
    let f = Fake::primary("a");
    let mut c = Client::connect(
        std::slice::from_ref(&f.addr),
        ClientOptions {
            limits: FrameLimits { max_payload: 200 },
            ..opts()
        },
    )
    .unwrap();
    let big = Value::Bytes(vec![0; 1000]);
    assert!(matches!(
        c.set("DB", &key(), &big),
        Err(ClientError::Wire(crate::wire::WireError::Oversize {
            limit: 200,
            ..
        }))
    ));
    assert_eq!(f.count(), 0);
    c.set("DB", &key(), &Value::Int(1)).unwrap();
    assert_eq!(f.hellos.lock().len(), 1, "same connection");
}

#[test]
fn a_response_to_another_request_makes_a_write_unknown() {
    let f = Fake::start(
        |_| welcome("a", MemberRole::Primary, None),
        |req| {
            Act::Answer(Response {
                id: req.id + 100,
                result: Ok(Reply::Done),
            })
        },
    );
    let mut c = connect(&f);
    match c.set("DB", &key(), &Value::Int(1)) {
        Err(ClientError::OutcomeUnknown { reason, .. }) => {
            assert!(reason.contains("while waiting for"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_reply_of_the_wrong_shape_is_named() {
    let f = Fake::start(
        |_| welcome("a", MemberRole::Primary, None),
        |req| ok(req, Reply::Int(5)),
    );
    let mut c = connect(&f);
    match c.get("DB", &key()) {
        Err(e @ ClientError::UnexpectedReply { .. }) => {
            assert_eq!(
                e.to_string(),
                "get ^x(1) in DB: the member answered with int"
            )
        }
        other => panic!("{other:?}"),
    }
}

impl Act {
    fn into_response(self) -> Response {
        match self {
            Act::Answer(r) | Act::Slow(_, r) => r,
            Act::Drop => panic!("no response"),
        }
    }
}
