//! Bad bytes from the network: random, truncated, bit-flipped, oversize.
//! None may panic; each gets the error that names what is wrong.

use std::io::{self, Cursor, Read};

use proptest::prelude::*;

use super::strategies;
use crate::wire::*;

fn read(bytes: &[u8], limits: FrameLimits) -> Result<Message, WireError> {
    recv(&mut Cursor::new(bytes), limits)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let _ = read(&bytes, FrameLimits::CLIENT);
    }

    #[test]
    fn random_bytes_with_a_valid_header_never_panic(
        kind in prop::sample::select(kind::ALL),
        payload in prop::collection::vec(any::<u8>(), 0..200),
    ) {
        // A correct frame around garbage: only decoding can refuse it.
        let frame = frame::encode_frame(kind, &payload).unwrap();
        match read(&frame, FrameLimits::CLIENT) {
            Ok(m) => {
                // Decoding is strict, so what it accepts re-encodes exactly.
                prop_assert_eq!(m.encode(), (kind, payload));
            }
            Err(WireError::Malformed { kind: k, .. }) => prop_assert_eq!(k, kind),
            Err(e) => prop_assert!(false, "unexpected error {e}"),
        }
    }

    #[test]
    fn truncated_frames_are_eof(m in strategies::message(), cut in any::<prop::sample::Index>()) {
        let frame = m.to_frame().unwrap();
        let n = cut.index(frame.len());
        match read(&frame[..n], FrameLimits::MEMBER) {
            Err(WireError::Closed) => prop_assert_eq!(n, 0),
            Err(WireError::Io(e)) => {
                prop_assert!(n > 0);
                prop_assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
            }
            other => prop_assert!(false, "cut at {n}: {other:?}"),
        }
    }

    #[test]
    fn one_flipped_bit_is_always_caught(m in strategies::message(), at in any::<prop::sample::Index>(), bit in 0u8..8) {
        let mut frame = m.to_frame().unwrap();
        let i = at.index(frame.len());
        frame[i] ^= 1 << bit;
        let r = read(&frame, FrameLimits::MEMBER);
        match i {
            0 | 1 => prop_assert!(matches!(r, Err(WireError::BadMagic { .. })), "{r:?}"),
            2 => prop_assert!(matches!(r, Err(WireError::UnsupportedVersion { got, supported: 1 }) if got != 1), "{r:?}"),
            4..=7 => {
                // A longer length runs past the end or over the limit; a
                // shorter one fails the checksum.
                let ok = matches!(
                    &r,
                    Err(WireError::Checksum { .. } | WireError::Oversize { .. })
                ) || matches!(&r, Err(WireError::Io(e)) if e.kind() == io::ErrorKind::UnexpectedEof);
                prop_assert!(ok, "{r:?}");
            }
            _ => prop_assert!(matches!(r, Err(WireError::Checksum { .. })), "{r:?}"),
        }
    }
}

/// A reader that yields `head` and then fails the test if read again.
struct HeaderOnly {
    head: Vec<u8>,
    pos: usize,
}

impl Read for HeaderOnly {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        assert!(self.pos < self.head.len(), "read past the header");
        let n = buf.len().min(self.head.len() - self.pos);
        buf[..n].copy_from_slice(&self.head[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

fn header_claiming(len: u32) -> Vec<u8> {
    let mut h = vec![0x44, 0x52, 1, kind::JOURNAL];
    h.extend_from_slice(&len.to_le_bytes());
    h.extend_from_slice(&[0; 4]);
    h
}

#[test]
fn oversize_is_refused_from_the_header_alone() {
    for (limits, len) in [
        (FrameLimits::CLIENT, (32 << 20) + 1),
        (FrameLimits::MEMBER, u32::MAX),
        (FrameLimits { max_payload: 0 }, 1),
    ] {
        let mut r = HeaderOnly {
            head: header_claiming(len),
            pos: 0,
        };
        match read_frame(&mut r, limits) {
            Err(e @ WireError::Oversize { .. }) => {
                let msg = e.to_string();
                assert!(msg.contains(&len.to_string()), "{msg}");
                assert!(msg.contains(&limits.max_payload.to_string()), "{msg}");
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn a_frame_at_the_limit_is_accepted() {
    let payload = vec![7u8; 1000];
    let frame = frame::encode_frame(kind::JOURNAL, &payload).unwrap();
    let f = read_frame(&mut Cursor::new(&frame), FrameLimits { max_payload: 1000 }).unwrap();
    assert_eq!(f.payload, payload);
    let e = read_frame(&mut Cursor::new(&frame), FrameLimits { max_payload: 999 }).unwrap_err();
    assert!(matches!(
        e,
        WireError::Oversize {
            len: 1000,
            limit: 999
        }
    ));
}

#[test]
fn a_large_claimed_length_with_few_bytes_is_eof() {
    // Within the limit but the peer sends 3 bytes: no 80 MiB buffer, an EOF.
    let mut bytes = header_claiming(80 << 20);
    bytes.extend_from_slice(&[1, 2, 3]);
    match read_frame(&mut Cursor::new(bytes), FrameLimits::MEMBER) {
        Err(WireError::Io(e)) => {
            assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
            assert!(e.to_string().contains("3 of 83886080"), "{e}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn other_protocols_are_bad_magic() {
    let e = read(b"GET / HTTP/1.1\r\n\r\n", FrameLimits::CLIENT).unwrap_err();
    assert!(matches!(e, WireError::BadMagic { got: 0x4547 }), "{e:?}");
    assert!(e.to_string().contains("does not speak"));
}

#[test]
fn unknown_kinds_and_versions() {
    for k in [0u8, 4, 15, 53, 255] {
        let frame = frame::encode_frame(k, &[]).unwrap();
        assert!(
            matches!(read(&frame, FrameLimits::CLIENT), Err(WireError::UnknownKind(x)) if x == k)
        );
    }
    let mut frame = Message::Status.to_frame().unwrap();
    frame[2] = 2;
    let e = read(&frame, FrameLimits::CLIENT).unwrap_err();
    assert!(matches!(
        e,
        WireError::UnsupportedVersion {
            got: 2,
            supported: 1
        }
    ));
    assert_eq!(
        e.to_string(),
        "frame version 2 is not supported (this build speaks version 1)"
    );
}

#[test]
fn malformed_errors_name_the_message_and_field() {
    // A Hello whose mirror name is not UTF-8.
    let payload = [&[1, 0][..], &[2, 0, 0, 0], &[0xff, 0xfe]].concat();
    let e = Message::decode(kind::HELLO, &payload).unwrap_err();
    assert_eq!(
        e.to_string(),
        "malformed Hello message (kind 1): mirror: not valid UTF-8"
    );
    // A Response with a count of rows that cannot fit.
    let payload = [&[0u8; 8][..], &[0, 8], &u32::MAX.to_le_bytes()].concat();
    let e = Message::decode(kind::RESPONSE, &payload).unwrap_err();
    assert!(e.to_string().contains("cannot fit"), "{e}");
    // A key that is not a key encoding.
    let payload = [
        &[0u8; 8][..],
        &[1, 2, 0, 0, 0],
        b"DB",
        &[1, 0, 0, 0],
        &[0xff],
    ]
    .concat();
    let e = Message::decode(kind::REQUEST, &payload).unwrap_err();
    assert!(e.to_string().contains("key: bad key encoding"), "{e}");
}

#[test]
fn empty_stream_is_closed() {
    assert!(matches!(
        read(&[], FrameLimits::CLIENT),
        Err(WireError::Closed)
    ));
}
