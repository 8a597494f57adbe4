//! Every message survives encode → frame → read → decode.

use std::collections::BTreeSet;
use std::io::Cursor;

use proptest::prelude::*;

use super::strategies;
use crate::model::{Key, Subscript, Value};
use crate::wire::*;

/// Sends `m` through a byte buffer and reads it back.
fn through_frame(m: &Message) -> Message {
    let mut buf = Vec::new();
    send(&mut buf, m).expect("send to a Vec");
    let mut r = Cursor::new(buf);
    let back = recv(&mut r, FrameLimits::MEMBER).expect("recv");
    assert_eq!(r.position() as usize, r.get_ref().len(), "frame used up");
    back
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn every_message_round_trips(m in strategies::message()) {
        let back = through_frame(&m);
        // Byte equality of the re-encoding shows nothing was lost; Debug
        // equality also compares floats by what they print (NaN, -0.0).
        prop_assert_eq!(back.encode(), m.encode());
        prop_assert_eq!(format!("{back:?}"), format!("{m:?}"));
    }

    #[test]
    fn decoding_a_prefix_of_a_payload_is_malformed(m in strategies::message(), cut in any::<prop::sample::Index>()) {
        let (kind, payload) = m.encode();
        prop_assume!(!payload.is_empty());
        let n = cut.index(payload.len());
        match Message::decode(kind, &payload[..n]) {
            Err(WireError::Malformed { kind: k, .. }) => prop_assert_eq!(k, kind),
            other => prop_assert!(false, "prefix {n} of {}: {other:?}", payload.len()),
        }
    }

    #[test]
    fn trailing_bytes_are_malformed(m in strategies::message(), extra in prop::collection::vec(any::<u8>(), 1..8)) {
        let (kind, mut payload) = m.encode();
        payload.extend_from_slice(&extra);
        let is_malformed = matches!(Message::decode(kind, &payload), Err(WireError::Malformed { .. }));
        prop_assert!(is_malformed);
    }
}

/// One message of each kind.
fn one_of_each() -> Vec<Message> {
    let key = Key::new("x", vec![Subscript::Int(1)]).unwrap();
    let w = Witness {
        epoch: 4,
        primary: "a".into(),
        backup_active: true,
    };
    vec![
        Message::Hello(Hello::new("M", "a", PeerRole::Member)),
        Message::Welcome(Welcome {
            mirror: "M".into(),
            member: "b".into(),
            role: MemberRole::Backup,
            epoch: 3,
            primary: Some("127.0.0.1:1".into()),
        }),
        Message::Refuse(Refuse {
            code: RefuseCode::WrongMirror,
            reason: "no".into(),
        }),
        Message::Request(Request {
            id: 1,
            op: ClientOp::Get {
                db: "DB".into(),
                key: key.clone(),
            },
        }),
        Message::Response(Response {
            id: 1,
            result: Ok(Reply::Rows(vec![(key, Value::from("v"))])),
        }),
        Message::StreamFrom(StreamFrom {
            epoch: 1,
            lsn: 2,
            crc: 3,
        }),
        Message::Journal(JournalChunk {
            start: 9,
            bytes: vec![1, 2, 3],
        }),
        Message::Ack(Ack {
            received: 3,
            durable: 2,
            applied: 1,
        }),
        Message::Heartbeat(Heartbeat {
            epoch: 1,
            end: 2,
            durable: 2,
            time_us: 5,
            active: true,
        }),
        Message::Handoff(Handoff { epoch: 2, end: 7 }),
        Message::History(History {
            epochs: vec![(1, 0), (2, 100)],
        }),
        Message::Diverged(Diverged {
            common: 5,
            reason: "r".into(),
        }),
        Message::SeedNeeded(SeedNeeded { reason: "r".into() }),
        Message::Status,
        Message::SeedRequest,
        Message::SeedStart(crate::wire::SeedStart {
            journal_start: 10,
            prev_crc: 7,
            journal_end: 99,
            epochs: vec![(1, 0)],
            databases: vec![crate::wire::SeedDatabase {
                file_id: 1,
                name: "DB".into(),
                pages: 4,
            }],
        }),
        Message::SeedPages(crate::wire::SeedPages {
            file_id: 1,
            first: 2,
            bytes: vec![1, 2, 3],
        }),
        Message::SeedDone(crate::wire::SeedDone {
            pages: 4,
            journal_bytes: 89,
        }),
        Message::StatusReply(StatusReply { json: "{}".into() }),
        Message::PeerState(crate::wire::PeerState {
            epoch: 3,
            primary: true,
            end: 12345,
        }),
        Message::Register(Register {
            mirror: "M".into(),
            member: "a".into(),
            state: w.clone(),
        }),
        Message::Cas(Cas {
            mirror: "M".into(),
            member: "b".into(),
            expect: w.clone(),
            new: Witness {
                epoch: 5,
                primary: "b".into(),
                backup_active: false,
            },
            require_lost: Some("a".into()),
        }),
        Message::CasReply(CasReply {
            ok: false,
            state: Some(w.clone()),
            reason: "no".into(),
        }),
        Message::Ping(Ping {
            mirror: "M".into(),
            member: "a".into(),
            qos_ms: 8000,
        }),
        Message::Pong(Pong { state: Some(w) }),
    ]
}

#[test]
fn every_kind_has_a_message_and_a_name() {
    let samples = one_of_each();
    let kinds: BTreeSet<u8> = samples.iter().map(Message::kind).collect();
    let all: BTreeSet<u8> = kind::ALL.iter().copied().collect();
    assert_eq!(kinds, all);
    assert_eq!(kinds.len(), samples.len(), "kinds are distinct");
    for m in &samples {
        assert_eq!(kind_name(m.kind()), Some(m.name()));
        assert_eq!(&through_frame(m), m);
    }
    assert_eq!(kind_name(0), None);
}

/// Pins the frame and field layout documented in `frame` and `codec`.
#[test]
fn ping_frame_bytes_match_the_diagram() {
    let m = Message::Ping(Ping {
        mirror: "M".into(),
        member: "ab".into(),
        qos_ms: 0x0102_0304,
    });
    let frame = m.to_frame().unwrap();
    let payload: Vec<u8> = [&[1, 0, 0, 0][..], b"M", &[2, 0, 0, 0], b"ab", &[4, 3, 2, 1]].concat();
    let mut crc_input = vec![kind::PING, payload.len() as u8, 0, 0, 0];
    crc_input.extend_from_slice(&payload);
    let crc = crc32c::crc32c(&crc_input);
    let mut expected = vec![0x44, 0x52, 1, 51, payload.len() as u8, 0, 0, 0];
    expected.extend_from_slice(&crc.to_le_bytes());
    expected.extend_from_slice(&payload);
    assert_eq!(frame, expected);
}

/// Keys and values travel as the engine's own encodings.
#[test]
fn keys_and_values_are_their_engine_encodings() {
    let key: Key = "^P(42,\"email\")".parse().unwrap();
    let value = Value::List(vec![Value::from("Ada"), Value::Int(36)]);
    let m = Message::Request(Request {
        id: 7,
        op: ClientOp::Set {
            db: "DB".into(),
            key: key.clone(),
            value: value.clone(),
        },
    });
    let (_, payload) = m.encode();
    let k = key.encode();
    let v = value.encode();
    let mut expected = vec![7, 0, 0, 0, 0, 0, 0, 0, 2, 2, 0, 0, 0, b'D', b'B'];
    expected.extend_from_slice(&(k.len() as u32).to_le_bytes());
    expected.extend_from_slice(&k);
    expected.extend_from_slice(&(v.len() as u32).to_le_bytes());
    expected.extend_from_slice(&v);
    assert_eq!(payload, expected);
}

#[test]
fn display_of_ops_and_errors_reads_well() {
    let op = ClientOp::Set {
        db: "DB".into(),
        key: "^x(1)".parse().unwrap(),
        value: Value::Int(1),
    };
    assert_eq!(op.to_string(), "set ^x(1) in DB");
    assert!(op.is_write());
    assert!(!ClientOp::Get {
        db: "DB".into(),
        key: "^x".parse().unwrap()
    }
    .is_write());
    let e = RemoteError {
        code: ErrorCode::ReadOnly,
        message: "member b is a backup".into(),
        primary: Some("10.0.0.1:7000".into()),
    };
    assert_eq!(
        e.to_string(),
        "read-only: member b is a backup (the primary is at 10.0.0.1:7000)"
    );
}
