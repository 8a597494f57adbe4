//! The witness file: format, corruption, durability.

use std::fs;

use super::w;
use crate::arbiter::state::{decode_file, encode_file};
use crate::arbiter::{ArbiterError, WitnessStore};

#[test]
fn file_round_trips_and_matches_the_diagram() {
    let s = w(0x0102, "ab", true);
    let b = encode_file("M", &s);
    let mut expected = b"RDWITNES".to_vec();
    expected.extend_from_slice(&1u32.to_le_bytes());
    expected.extend_from_slice(&0x0102u64.to_le_bytes());
    expected.push(1);
    expected.extend_from_slice(&[1, 0, b'M', 2, 0, b'a', b'b']);
    let crc = crc32c::crc32c(&expected);
    expected.extend_from_slice(&crc.to_le_bytes());
    assert_eq!(b, expected);
    assert_eq!(decode_file("M", &b), Ok(s));
}

#[test]
fn every_damage_is_detected() {
    let b = encode_file("mirror1", &w(7, "member-a", false));
    for cut in 0..b.len() {
        assert!(decode_file("mirror1", &b[..cut]).is_err(), "cut {cut}");
    }
    for i in 0..b.len() {
        for bit in 0..8 {
            let mut d = b.clone();
            d[i] ^= 1 << bit;
            assert!(decode_file("mirror1", &d).is_err(), "byte {i} bit {bit}");
        }
    }
    let mut longer = b.clone();
    longer.push(0);
    assert!(decode_file("mirror1", &longer).is_err());
    // A valid file under another mirror's name.
    assert_eq!(
        decode_file("mirror2", &b),
        Err("it holds mirror \"mirror1\", not \"mirror2\"".into())
    );
}

#[test]
fn state_survives_reopen_and_temp_files_are_cleaned() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut s = WitnessStore::open(dir.path()).unwrap();
        assert!(s.get("M").is_none());
        s.put("M", w(1, "a", true)).unwrap();
        s.put("M", w(2, "b", false)).unwrap();
        s.put("other", w(9, "x", true)).unwrap();
    }
    // A crash between writing the temp file and the rename.
    fs::write(dir.path().join("M.witness.tmp"), b"half").unwrap();
    let s = WitnessStore::open(dir.path()).unwrap();
    assert_eq!(s.get("M"), Some(&w(2, "b", false)));
    assert_eq!(s.get("other"), Some(&w(9, "x", true)));
    assert!(!dir.path().join("M.witness.tmp").exists());
    let mut names: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["M.witness", "other.witness"]);
}

#[test]
fn a_corrupt_file_stops_the_start_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    WitnessStore::open(dir.path())
        .unwrap()
        .put("M", w(3, "a", true))
        .unwrap();
    let path = dir.path().join("M.witness");
    let mut b = fs::read(&path).unwrap();
    b[14] ^= 0x10;
    fs::write(&path, b).unwrap();
    match WitnessStore::open(dir.path()) {
        Err(e @ ArbiterError::CorruptState { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains("M.witness"), "{msg}");
            assert!(msg.contains("checksum mismatch"), "{msg}");
        }
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("opened a corrupt store"),
    }
}

#[test]
fn a_failed_write_poisons_the_mirror() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = WitnessStore::open(dir.path()).unwrap();
    s.put("M", w(1, "a", true)).unwrap();
    // A directory where the temp file should go makes the write fail.
    fs::create_dir(dir.path().join("M.witness.tmp")).unwrap();
    assert!(matches!(
        s.put("M", w(2, "b", false)),
        Err(ArbiterError::Io { .. })
    ));
    assert_eq!(s.get("M"), Some(&w(1, "a", true)));
    assert!(s.poisoned("M").unwrap().contains("refuses changes"));
    fs::remove_dir(dir.path().join("M.witness.tmp")).unwrap();
    assert!(matches!(
        s.put("M", w(2, "b", false)),
        Err(ArbiterError::Poisoned(_))
    ));
    // Other mirrors are not affected.
    s.put("N", w(1, "a", true)).unwrap();
}
