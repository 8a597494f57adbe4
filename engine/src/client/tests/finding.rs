//! Finding the primary.

use std::time::Duration;

use super::fake::{dead_address, plain_reply, welcome, Fake};
use crate::client::{Client, ClientError, ClientOptions, Target};
use crate::wire::{MemberRole, Message, Refuse, RefuseCode};
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

#[test]
fn finds_the_primary_among_several_addresses() {
    let backup = Fake::start(|_| welcome("b", MemberRole::Backup, None), plain_reply);
    let asyn = Fake::start(|_| welcome("c", MemberRole::Async, None), plain_reply);
    let primary = Fake::primary("a");
    let addrs = [
        backup.addr.clone(),
        dead_address(),
        asyn.addr.clone(),
        primary.addr.clone(),
    ];
    let mut c = Client::connect(&addrs, opts()).unwrap();
    assert_eq!(c.server(), Some(primary.addr.as_str()));
    assert_eq!(c.welcome().unwrap().member, "a");
    c.set("DB", &key(), &Value::Int(1)).unwrap();
    assert_eq!(primary.count(), 1);
    assert_eq!(backup.count() + asyn.count(), 0);
    // The Hello said who we are.
    let h = primary.hellos.lock()[0].clone();
    assert_eq!(h.role, crate::wire::PeerRole::Client);
    assert_eq!(h.from, "redoubt-client");
}

#[test]
fn follows_the_primary_named_by_a_backup() {
    let primary = Fake::primary("a");
    let p = primary.addr.clone();
    let backup = Fake::start(
        move |_| welcome("b", MemberRole::Backup, Some(&p)),
        plain_reply,
    );
    // Only the backup is configured.
    let c = Client::connect(std::slice::from_ref(&backup.addr), opts()).unwrap();
    assert_eq!(c.server(), Some(primary.addr.as_str()));
}

#[test]
fn target_any_keeps_a_backup_and_its_read_only_error() {
    let backup = Fake::start(
        |_| welcome("b", MemberRole::Backup, Some("10.9.9.9:1")),
        |req| {
            if req.op.is_write() {
                super::outcomes::read_only(req, Some("10.9.9.9:1"))
            } else {
                plain_reply(req)
            }
        },
    );
    let mut c = Client::connect(
        std::slice::from_ref(&backup.addr),
        ClientOptions {
            target: Target::Any,
            ..opts()
        },
    )
    .unwrap();
    assert_eq!(c.get("DB", &key()).unwrap(), None);
    match c.set("DB", &key(), &Value::Int(1)) {
        Err(ClientError::Remote(e)) => {
            assert_eq!(e.code, crate::wire::ErrorCode::ReadOnly);
            assert!(
                e.to_string().contains("the primary is at 10.9.9.9:1"),
                "{e}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(backup.count(), 2, "no retry elsewhere");
}

#[test]
fn a_refusal_is_reported_with_its_reason() {
    let other = Fake::start(
        |h| {
            Message::Refuse(Refuse {
                code: RefuseCode::WrongMirror,
                reason: format!("this is mirror N, not {}", h.mirror),
            })
        },
        plain_reply,
    );
    let dead = dead_address();
    let err = Client::connect(
        &[other.addr.clone(), dead.clone()],
        ClientOptions {
            mirror: Some("M".into()),
            ..opts()
        },
    )
    .err()
    .unwrap();
    let ClientError::NoPrimary { tried } = &err else {
        panic!("{err:?}");
    };
    assert_eq!(tried.len(), 2);
    assert_eq!(tried[0].0, other.addr);
    assert_eq!(
        tried[0].1,
        "refused (wrong mirror): this is mirror N, not M"
    );
    assert_eq!(tried[1].0, dead);
    assert!(tried[1].1.starts_with("cannot connect"), "{}", tried[1].1);
    assert!(err.to_string().starts_with("no primary found: "), "{err}");
}

#[test]
fn no_primary_names_every_member_and_its_role() {
    let b = Fake::start(|_| welcome("b", MemberRole::Backup, None), plain_reply);
    let t = Fake::start(|_| welcome("a", MemberRole::Trouble, None), plain_reply);
    let err = Client::connect(&[b.addr.clone(), t.addr.clone()], opts())
        .err()
        .unwrap();
    let msg = err.to_string();
    assert!(msg.contains("member b is backup at epoch 3"), "{msg}");
    assert!(msg.contains("member a is trouble at epoch 3"), "{msg}");
    assert!(matches!(
        Client::connect(&[], opts()),
        Err(ClientError::NoPrimary { tried }) if tried.is_empty()
    ));
}

#[test]
fn a_member_of_another_mirror_is_skipped() {
    let other = Fake::start(
        |_| {
            Message::Welcome(crate::wire::Welcome {
                mirror: "N".into(),
                member: "z".into(),
                role: MemberRole::Primary,
                epoch: 1,
                primary: None,
            })
        },
        plain_reply,
    );
    let right = Fake::primary("a");
    let c = Client::connect(
        &[other.addr.clone(), right.addr.clone()],
        ClientOptions {
            mirror: Some("M".into()),
            ..opts()
        },
    )
    .unwrap();
    assert_eq!(c.server(), Some(right.addr.as_str()));
    assert_eq!(other.hellos.lock()[0].mirror, "M");
}

#[test]
fn primary_wait_keeps_looking_during_a_failover() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let promoted = Arc::new(AtomicBool::new(false));
    let p = promoted.clone();
    let b = Fake::start(
        move |_| {
            let role = if p.load(Ordering::SeqCst) {
                MemberRole::Primary
            } else {
                MemberRole::Backup
            };
            welcome("b", role, None)
        },
        plain_reply,
    );
    let flip = promoted.clone();
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(150));
        flip.store(true, Ordering::SeqCst);
    });
    let c = Client::connect(
        std::slice::from_ref(&b.addr),
        ClientOptions {
            primary_wait: Duration::from_secs(5),
            ..opts()
        },
    )
    .unwrap();
    assert_eq!(c.welcome().unwrap().role, MemberRole::Primary);
    t.join().unwrap();
}
