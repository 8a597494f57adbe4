//! proptest generators for wire messages.

use proptest::prelude::*;

use crate::model::{Key, Subscript, Value};
use crate::wire::*;

fn text() -> impl Strategy<Value = String> {
    prop_oneof![3 => "[a-z0-9:.\\-]{0,12}", 1 => any::<String>()]
}

fn opt_text() -> impl Strategy<Value = Option<String>> {
    proptest::option::of(text())
}

fn subscript() -> impl Strategy<Value = Subscript> {
    prop_oneof![
        any::<i64>().prop_map(Subscript::Int),
        any::<f64>()
            .prop_filter("finite", |x| x.is_finite())
            .prop_map(|x| Subscript::from_f64(x).expect("finite")),
        any::<String>().prop_map(Subscript::Str),
    ]
}

pub fn key() -> impl Strategy<Value = Key> {
    (
        "[A-Za-z%][A-Za-z0-9]{0,8}",
        prop::collection::vec(subscript(), 0..4),
    )
        .prop_map(|(global, subs)| Key::new(&global, subs).expect("valid name"))
}

pub fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        any::<String>().prop_map(Value::Str),
        any::<i64>().prop_map(Value::Int),
        any::<f64>().prop_map(Value::Float),
        prop::collection::vec(any::<u8>(), 0..16).prop_map(Value::Bytes),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop::collection::vec(inner, 0..4).prop_map(Value::List)
    })
}

fn db() -> impl Strategy<Value = String> {
    prop_oneof!["DB", "[A-Z][A-Za-z0-9_]{0,6}"]
}

pub fn client_op() -> impl Strategy<Value = ClientOp> {
    prop_oneof![
        (db(), key()).prop_map(|(db, key)| ClientOp::Get { db, key }),
        (db(), key(), value()).prop_map(|(db, key, value)| ClientOp::Set { db, key, value }),
        (db(), key()).prop_map(|(db, key)| ClientOp::Kill { db, key }),
        (db(), key()).prop_map(|(db, key)| ClientOp::ZKill { db, key }),
        (db(), key()).prop_map(|(db, key)| ClientOp::Data { db, key }),
        (db(), key(), any::<bool>()).prop_map(|(db, key, backward)| ClientOp::Order {
            db,
            key,
            backward
        }),
        (db(), key(), any::<bool>()).prop_map(|(db, key, backward)| ClientOp::Query {
            db,
            key,
            backward
        }),
        (db(), key(), any::<i64>()).prop_map(|(db, key, by)| ClientOp::Increment { db, key, by }),
        Just(ClientOp::TStart),
        Just(ClientOp::TCommit),
        any::<bool>().prop_map(|innermost_only| ClientOp::TRollback { innermost_only }),
        (db(), key(), any::<u64>()).prop_map(|(db, key, timeout_ms)| ClientOp::Lock {
            db,
            key,
            timeout_ms
        }),
        (db(), key()).prop_map(|(db, key)| ClientOp::Unlock { db, key }),
        (db(), key(), any::<u32>()).prop_map(|(db, key, limit)| ClientOp::Scan { db, key, limit }),
    ]
}

pub fn reply() -> impl Strategy<Value = Reply> {
    prop_oneof![
        Just(Reply::Done),
        proptest::option::of(value()).prop_map(Reply::Value),
        any::<i64>().prop_map(Reply::Int),
        any::<bool>().prop_map(Reply::Bool),
        any::<u8>().prop_map(Reply::Data),
        proptest::option::of(subscript()).prop_map(Reply::Subscript),
        proptest::option::of(key()).prop_map(Reply::Key),
        any::<u32>().prop_map(Reply::Level),
        prop::collection::vec((key(), value()), 0..4).prop_map(Reply::Rows),
    ]
}

pub fn remote_error() -> impl Strategy<Value = RemoteError> {
    (prop::sample::select(ErrorCode::ALL), text(), opt_text()).prop_map(
        |(code, message, primary)| RemoteError {
            code,
            message,
            primary,
        },
    )
}

pub fn witness() -> impl Strategy<Value = Witness> {
    (any::<u64>(), text(), any::<bool>()).prop_map(|(epoch, primary, backup_active)| Witness {
        epoch,
        primary,
        backup_active,
    })
}

fn handshake() -> impl Strategy<Value = Message> {
    prop_oneof![
        (
            any::<u16>(),
            text(),
            text(),
            prop::sample::select(PeerRole::ALL),
            prop::collection::vec(any::<u8>(), 0..8)
        )
            .prop_map(|(protocol, mirror, from, role, auth)| {
                Message::Hello(Hello {
                    protocol,
                    mirror,
                    from,
                    role,
                    auth,
                })
            }),
        (
            text(),
            text(),
            prop::sample::select(MemberRole::ALL),
            any::<u64>(),
            opt_text()
        )
            .prop_map(|(mirror, member, role, epoch, primary)| {
                Message::Welcome(Welcome {
                    mirror,
                    member,
                    role,
                    epoch,
                    primary,
                })
            }),
        (prop::sample::select(RefuseCode::ALL), text())
            .prop_map(|(code, reason)| Message::Refuse(Refuse { code, reason })),
    ]
}

fn client() -> impl Strategy<Value = Message> {
    prop_oneof![
        (any::<u64>(), client_op()).prop_map(|(id, op)| Message::Request(Request { id, op })),
        (
            any::<u64>(),
            prop_oneof![reply().prop_map(Ok), remote_error().prop_map(Err)]
        )
            .prop_map(|(id, result)| Message::Response(Response { id, result })),
    ]
}

fn replication() -> impl Strategy<Value = Message> {
    let u = any::<u64>;
    prop_oneof![
        (u(), u(), any::<u32>()).prop_map(|(epoch, lsn, crc)| Message::StreamFrom(StreamFrom {
            epoch,
            lsn,
            crc
        })),
        (u(), prop::collection::vec(any::<u8>(), 0..64))
            .prop_map(|(start, bytes)| Message::Journal(JournalChunk { start, bytes })),
        (u(), u(), u()).prop_map(|(received, durable, applied)| Message::Ack(Ack {
            received,
            durable,
            applied
        })),
        (u(), u(), u(), u(), any::<bool>()).prop_map(|(epoch, end, durable, time_us, active)| {
            Message::Heartbeat(Heartbeat {
                epoch,
                end,
                durable,
                time_us,
                active,
            })
        }),
        (u(), u()).prop_map(|(epoch, end)| Message::Handoff(Handoff { epoch, end })),
        prop::collection::vec((u(), u()), 0..6)
            .prop_map(|epochs| Message::History(History { epochs })),
        (u(), text()).prop_map(|(common, reason)| Message::Diverged(Diverged { common, reason })),
        text().prop_map(|reason| Message::SeedNeeded(SeedNeeded { reason })),
        Just(Message::Status),
        Just(Message::SeedRequest),
        (
            (u(), any::<u32>(), u()),
            prop::collection::vec((u(), u()), 0..4),
            prop::collection::vec((any::<u32>(), text(), u()), 0..4)
        )
            .prop_map(|((journal_start, prev_crc, journal_end), epochs, dbs)| {
                Message::SeedStart(crate::wire::SeedStart {
                    journal_start,
                    prev_crc,
                    journal_end,
                    epochs,
                    databases: dbs
                        .into_iter()
                        .map(|(file_id, name, pages)| crate::wire::SeedDatabase {
                            file_id,
                            name,
                            pages,
                        })
                        .collect(),
                })
            }),
        (any::<u32>(), u(), prop::collection::vec(any::<u8>(), 0..64)).prop_map(
            |(file_id, first, bytes)| Message::SeedPages(crate::wire::SeedPages {
                file_id,
                first,
                bytes
            })
        ),
        (u(), u()).prop_map(
            |(pages, journal_bytes)| Message::SeedDone(crate::wire::SeedDone {
                pages,
                journal_bytes
            })
        ),
        text().prop_map(|json| Message::StatusReply(StatusReply { json })),
        (any::<u64>(), any::<bool>(), any::<u64>()).prop_map(|(epoch, primary, end)| {
            Message::PeerState(crate::wire::PeerState {
                epoch,
                primary,
                end,
            })
        }),
    ]
}

fn arbiter() -> impl Strategy<Value = Message> {
    prop_oneof![
        (text(), text(), witness()).prop_map(|(mirror, member, state)| Message::Register(
            Register {
                mirror,
                member,
                state
            }
        )),
        (text(), text(), witness(), witness(), opt_text()).prop_map(
            |(mirror, member, expect, new, require_lost)| Message::Cas(Cas {
                mirror,
                member,
                expect,
                new,
                require_lost,
            })
        ),
        (any::<bool>(), proptest::option::of(witness()), text())
            .prop_map(|(ok, state, reason)| Message::CasReply(CasReply { ok, state, reason })),
        (text(), text(), any::<u32>()).prop_map(|(mirror, member, qos_ms)| Message::Ping(Ping {
            mirror,
            member,
            qos_ms
        })),
        proptest::option::of(witness()).prop_map(|state| Message::Pong(Pong { state })),
    ]
}

/// Any message.
pub fn message() -> impl Strategy<Value = Message> {
    prop_oneof![handshake(), client(), replication(), arbiter()]
}
