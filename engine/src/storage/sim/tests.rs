use super::*;

fn p(s: &str) -> PathBuf {
    PathBuf::from(s)
}

fn create(fs: &SimFs, path: &str) -> Arc<dyn VfsFile> {
    fs.open(&p(path), OpenMode::CreateIfMissing).unwrap()
}

/// A file `/d/f` whose creation is durable, holding `base` durably.
fn durable_file(fs: &SimFs, base: &[u8]) -> Arc<dyn VfsFile> {
    let f = create(fs, "/d/f");
    f.write_all_at(base, 0).unwrap();
    f.sync().unwrap();
    fs.sync_dir(&p("/d")).unwrap();
    f
}

#[test]
fn vfs_semantics() {
    let fs = SimFs::new();
    let err = fs.open(&p("/d/x"), OpenMode::Existing).err().unwrap();
    assert_eq!(err.kind(), io::ErrorKind::NotFound);
    assert_eq!(
        fs.list(&p("/d")).unwrap_err().kind(),
        io::ErrorKind::NotFound
    );
    fs.create_dir_all(&p("/d/sub")).unwrap();
    assert!(fs.exists(&p("/d")) && fs.exists(&p("/d/sub")));
    assert_eq!(fs.list(&p("/d")).unwrap(), Vec::<PathBuf>::new());

    for name in ["/d/c", "/d/a", "/d/b", "/d/sub/z", "/e/implicit"] {
        create(&fs, name);
    }
    assert_eq!(
        fs.list(&p("/d")).unwrap(),
        vec![p("/d/a"), p("/d/b"), p("/d/c")]
    );
    assert_eq!(fs.list(&p("/e")).unwrap(), vec![p("/e/implicit")]);
    assert_eq!(fs.list(&p("/d/./sub")).unwrap(), vec![p("/d/sub/z")]);
    assert!(fs.exists(&p("/d/a")) && !fs.exists(&p("/d/q")));
    assert_eq!(
        fs.open(&p("/d/sub"), OpenMode::CreateIfMissing)
            .err()
            .unwrap()
            .kind(),
        io::ErrorKind::IsADirectory
    );
    assert_eq!(
        fs.open(&p("/d/a/x"), OpenMode::CreateIfMissing)
            .err()
            .unwrap()
            .kind(),
        io::ErrorKind::NotADirectory
    );

    let f = fs.open(&p("/d/a"), OpenMode::Existing).unwrap();
    f.write_all_at(b"abc", 4).unwrap();
    assert_eq!(f.len().unwrap(), 7);
    let mut buf = [9u8; 10];
    assert_eq!(f.read_at(&mut buf, 0).unwrap(), 7);
    assert_eq!(&buf[..7], b"\0\0\0\0abc");
    assert_eq!(f.read_at(&mut buf, 100).unwrap(), 0);
    f.set_len(5).unwrap();
    assert_eq!(fs.file_bytes(&p("/d/a")).unwrap(), b"\0\0\0\0a");

    fs.remove(&p("/d/a")).unwrap();
    assert!(!fs.exists(&p("/d/a")));
    assert_eq!(
        fs.remove(&p("/d/a")).unwrap_err().kind(),
        io::ErrorKind::NotFound
    );
    // An unlinked file stays usable through its open handle.
    f.write_all_at(b"z", 0).unwrap();
    assert_eq!(f.len().unwrap(), 5);
}

#[test]
fn unsynced_writes_are_lost_when_all_dropped() {
    let fs = SimFs::new();
    let f = durable_file(&fs, b"durable!");
    f.write_all_at(&[7u8; 2000], 4).unwrap();
    f.set_len(10_000).unwrap();
    let image = fs.crash_image_with(CrashFate::DropAll);
    assert_eq!(image.file_bytes(&p("/d/f")).unwrap(), b"durable!");
    assert!(!image.is_crashed());
    assert_eq!(image.syncs(), 0);

    // Some seed drops the single pending write too.
    let fs = SimFs::new();
    let f = durable_file(&fs, b"durable!");
    f.write_all_at(&[7u8; 2000], 4).unwrap();
    let seed = (0..64)
        .find(|&s| fs.crash_image(s).file_bytes(&p("/d/f")).unwrap() == b"durable!")
        .expect("some seed drops the write");
    assert_eq!(
        fs.crash_image(seed).file_bytes(&p("/d/f")).unwrap(),
        b"durable!"
    );
}

#[test]
fn synced_writes_are_kept() {
    let fs = SimFs::new();
    let f = durable_file(&fs, b"one");
    f.write_all_at(b"two", 3).unwrap();
    f.sync().unwrap();
    f.write_all_at(b"three", 6).unwrap();
    for seed in 0..32 {
        let bytes = fs.crash_image(seed).file_bytes(&p("/d/f")).unwrap();
        assert!(
            bytes == b"onetwo" || bytes == b"onetwothree",
            "seed {seed}: {bytes:?}"
        );
    }
    assert_eq!(
        fs.crash_image_with(CrashFate::KeepAll)
            .file_bytes(&p("/d/f"))
            .unwrap(),
        b"onetwothree"
    );
    assert_eq!(fs.durable_bytes(&p("/d/f")).unwrap(), b"onetwo");
}

#[test]
fn torn_writes_mix_sectors() {
    const SECTORS: usize = 8;
    let fs = SimFs::new();
    let f = durable_file(&fs, &[0u8; SECTORS * 512]);
    // Write 1 (all 1s) then write 2 (2s over the middle, unaligned).
    f.write_all_at(&[1u8; SECTORS * 512], 0).unwrap();
    f.write_all_at(&[2u8; 1000], 700).unwrap();

    let mut non_prefix_mix = false;
    let mut outcomes = BTreeSet::new();
    for seed in 0..200 {
        let bytes = fs.crash_image(seed).file_bytes(&p("/d/f")).unwrap();
        assert_eq!(bytes.len(), SECTORS * 512);
        // Each sector comes whole from the durable state or a write, except
        // where the second write starts or ends inside a sector.
        let mut from_first = Vec::new();
        for (s, sector) in bytes.chunks(512).enumerate() {
            for (i, &b) in sector.iter().enumerate() {
                let at = s * 512 + i;
                let allowed: &[u8] = if (700..1700).contains(&at) {
                    &[0, 1, 2]
                } else {
                    &[0, 1]
                };
                assert!(allowed.contains(&b), "seed {seed}: byte {at} = {b}");
            }
            let untouched_by_second = !(1..=3).contains(&s);
            if untouched_by_second {
                assert!(
                    sector.iter().all(|&b| b == sector[0]),
                    "seed {seed}: sector {s} is split"
                );
                from_first.push(sector[0] == 1);
            }
        }
        // A torn first write: some of its sectors kept, not only a prefix.
        let kept: Vec<bool> = from_first.clone();
        if kept.iter().any(|&k| k) && kept.iter().any(|&k| !k) {
            let first_gap = kept.iter().position(|&k| !k).unwrap();
            if kept[first_gap..].iter().any(|&k| k) {
                non_prefix_mix = true;
            }
        }
        outcomes.insert(kept);
    }
    assert!(non_prefix_mix, "torn writes must not be prefixes only");
    assert!(
        outcomes.contains(&vec![false; SECTORS - 3]),
        "some image drops the first write"
    );
    assert!(
        outcomes.contains(&vec![true; SECTORS - 3]),
        "some image keeps the first write"
    );
}

#[test]
fn crash_images_are_deterministic_per_seed() {
    let fs = SimFs::new();
    let f = durable_file(&fs, &[0u8; 4096]);
    for i in 0..20u8 {
        f.write_all_at(&[i; 700], u64::from(i) * 300).unwrap();
    }
    create(&fs, "/d/g").write_all_at(b"new file", 0).unwrap();
    let images: Vec<_> = (0..16)
        .map(|s| {
            let image = fs.crash_image(s);
            (image.file_bytes(&p("/d/f")), image.file_bytes(&p("/d/g")))
        })
        .collect();
    for (s, expected) in images.iter().enumerate() {
        let again = fs.crash_image(s as u64);
        assert_eq!(
            &(again.file_bytes(&p("/d/f")), again.file_bytes(&p("/d/g"))),
            expected
        );
    }
    let distinct: BTreeSet<_> = images.iter().collect();
    assert!(distinct.len() > 8, "seeds should give different images");
}

#[test]
fn crash_at_sync_stops_exactly_at_n() {
    let fs = SimFs::new();
    let f = durable_file(&fs, b"x");
    let before = fs.syncs();
    fs.crash_at_sync(3);
    f.write_all_at(b"a", 0).unwrap();
    f.sync().unwrap();
    fs.sync_dir(&p("/d")).unwrap();
    assert!(!fs.is_crashed());
    f.write_all_at(b"b", 0).unwrap();
    assert!(f.sync().is_err(), "the third sync fails");
    assert!(fs.is_crashed());
    assert_eq!(fs.syncs(), before + 2);
    // The dead process can do nothing.
    assert!(f.write_all_at(b"c", 0).is_err());
    assert!(f.read_at(&mut [0u8; 1], 0).is_err());
    assert!(f.sync().is_err());
    assert!(f.len().is_err());
    assert!(fs.open(&p("/d/f"), OpenMode::Existing).is_err());
    assert!(fs.list(&p("/d")).is_err());
    assert!(fs.remove(&p("/d/f")).is_err());
    assert_eq!(fs.syncs(), before + 2);
    // The failed sync did not happen: "b" is still only pending.
    assert_eq!(
        fs.crash_image_with(CrashFate::DropAll)
            .file_bytes(&p("/d/f"))
            .unwrap(),
        b"a"
    );
    let image = fs.crash_image(1);
    assert!(!image.is_crashed());
    assert!(image.open(&p("/d/f"), OpenMode::Existing).is_ok());

    let fs = SimFs::new();
    let f = durable_file(&fs, b"x");
    fs.crash_now();
    assert!(fs.is_crashed());
    assert!(f.sync().is_err());
}

#[test]
fn names_follow_directory_syncs() {
    let fs = SimFs::new();
    let kept = durable_file(&fs, b"kept");
    drop(kept);
    let fresh = create(&fs, "/d/fresh");
    fresh.write_all_at(b"fresh", 0).unwrap();
    fresh.sync().unwrap();
    fs.remove(&p("/d/f")).unwrap();

    let dropped = fs.crash_image_with(CrashFate::DropAll);
    assert_eq!(
        dropped.list(&p("/d")).unwrap(),
        vec![p("/d/f")],
        "removal undone, creation lost"
    );
    assert_eq!(dropped.file_bytes(&p("/d/f")).unwrap(), b"kept");
    let kept = fs.crash_image_with(CrashFate::KeepAll);
    assert_eq!(kept.list(&p("/d")).unwrap(), vec![p("/d/fresh")]);
    assert_eq!(kept.file_bytes(&p("/d/fresh")).unwrap(), b"fresh");
    let mut seen = BTreeSet::new();
    for seed in 0..32 {
        seen.insert(fs.crash_image(seed).list(&p("/d")).unwrap());
    }
    assert_eq!(
        seen.len(),
        4,
        "each name is decided independently: {seen:?}"
    );

    fs.sync_dir(&p("/d")).unwrap();
    for seed in 0..8 {
        assert_eq!(
            fs.crash_image(seed).list(&p("/d")).unwrap(),
            vec![p("/d/fresh")]
        );
    }
}

#[test]
fn failed_sync_loses_pending_writes_for_good() {
    let fs = SimFs::new();
    let f = durable_file(&fs, b"aaaa");
    f.write_all_at(b"bb", 0).unwrap();
    fs.fail_next_sync();
    assert!(f.sync().is_err());
    assert!(!fs.is_crashed());
    assert_eq!(
        fs.file_bytes(&p("/d/f")).unwrap(),
        b"bbaa",
        "reads still see the write"
    );
    f.sync().unwrap();
    assert_eq!(
        fs.durable_bytes(&p("/d/f")).unwrap(),
        b"aaaa",
        "a later sync does not save it"
    );
}

/// As Linux does with a failed writeback: every handle open at the time
/// hears of it once, at its next sync; a handle opened later does not.
#[test]
fn a_failed_sync_is_reported_to_every_open_handle_once() {
    let fs = SimFs::new();
    let f = durable_file(&fs, b"aaaa");
    let other = fs.open(&p("/d/f"), OpenMode::Existing).unwrap();
    other.write_all_at(b"bb", 0).unwrap();
    fs.fail_next_sync();
    assert!(f.sync().is_err(), "the failing sync");
    let later = fs.open(&p("/d/f"), OpenMode::Existing).unwrap();
    assert!(
        other.sync().is_err(),
        "the other handle's next sync hears of it"
    );
    other.sync().unwrap();
    f.sync().unwrap();
    later.sync().unwrap();
    assert_eq!(fs.durable_bytes(&p("/d/f")).unwrap(), b"aaaa");
}

#[test]
fn corruption_helpers() {
    let fs = SimFs::new();
    let f = durable_file(&fs, &[0u8; 16]);
    fs.flip_bit(&p("/d/f"), 3, 2).unwrap();
    fs.write_raw(&p("/d/f"), 8, b"xy").unwrap();
    let mut buf = [0u8; 16];
    f.read_exact_at(&mut buf, 0).unwrap();
    assert_eq!(buf[3], 4);
    assert_eq!(&buf[8..10], b"xy");
    assert_eq!(fs.durable_bytes(&p("/d/f")).unwrap(), buf);
    assert!(fs.flip_bit(&p("/d/f"), 16, 0).is_err());
    assert!(fs.flip_bit(&p("/d/none"), 0, 0).is_err());
    assert_eq!(fs.file_bytes(&p("/d/none")), None);
}

#[test]
fn dropped_handles_free_unlinked_files() {
    let fs = SimFs::new();
    let f = durable_file(&fs, b"data");
    fs.remove(&p("/d/f")).unwrap();
    fs.sync_dir(&p("/d")).unwrap();
    assert_eq!(fs.state.lock().inodes.len(), 1, "still open");
    drop(f);
    assert_eq!(fs.state.lock().inodes.len(), 0);
}
