use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::format::{Header, SlotHeader, HEADER_BLOCK, HEADER_COPIES, SLOT_SIZE};
use super::*;
use crate::storage::os::OsFs;
use crate::storage::sim::{CrashFate, SimFs};

fn wij_path() -> PathBuf {
    PathBuf::from("/db/wij")
}

fn open(fs: &SimFs) -> Result<Wij, WijError> {
    Wij::open(Arc::new(fs.clone()), &wij_path())
}

/// A page whose bytes depend on everything that names it.
fn page(cycle: u64, index: usize) -> PageImage {
    let file_id = (index % 3) as u32;
    let page_no = (index as u64) * 7 + cycle;
    let mut data = vec![0u8; PAGE_SIZE];
    let mut x = cycle.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (index as u64) << 20;
    for chunk in data.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes());
    }
    // Sealed, as every image the engine hands the WIJ.
    let crc = crc32c::crc32c(&data[4..]);
    data[0..4].copy_from_slice(&crc.to_le_bytes());
    PageImage {
        file_id,
        page_no,
        data,
    }
}

fn cycle_images(cycle: u64, count: usize) -> Vec<PageImage> {
    (0..count).map(|i| page(cycle, i)).collect()
}

#[test]
fn round_trip() {
    let fs = SimFs::new();
    let mut wij = open(&fs).unwrap();
    assert_eq!(wij.state(), WijState::Empty);
    assert_eq!(wij.images().unwrap(), vec![]);
    assert!(fs.exists(&wij_path()));

    let first = cycle_images(1, 3);
    assert_eq!(wij.begin_cycle(&first).unwrap(), 1);
    assert_eq!(wij.state(), WijState::Active { cycle: 1 });
    assert_eq!(wij.images().unwrap(), first);
    drop(wij);

    let mut wij = open(&fs).unwrap();
    assert_eq!(wij.state(), WijState::Active { cycle: 1 });
    assert_eq!(wij.images().unwrap(), first);
    wij.end_cycle().unwrap();
    assert_eq!(wij.state(), WijState::Clean { cycle: 1 });
    let wij = open(&fs).unwrap();
    assert_eq!(wij.state(), WijState::Clean { cycle: 1 });
    assert_eq!(wij.images().unwrap(), first);

    // A cycle larger than one write batch, then a smaller one over it.
    let mut wij = wij;
    let big = cycle_images(2, 300);
    assert_eq!(wij.begin_cycle(&big).unwrap(), 2);
    wij.end_cycle().unwrap();
    let mut wij = open(&fs).unwrap();
    assert_eq!(wij.state(), WijState::Clean { cycle: 2 });
    assert_eq!(wij.images().unwrap(), big);
    let small = cycle_images(3, 2);
    assert_eq!(wij.begin_cycle(&small).unwrap(), 3);
    let scan = open(&fs).unwrap().scan().unwrap();
    assert_eq!(
        scan,
        Scan {
            state: WijState::Active { cycle: 3 },
            images: small,
            skipped: vec![]
        }
    );
    // The next cycle begins from Active (the previous one is done), over
    // any number of stripes, and the two keep their own slots.
    let next = cycle_images(4, 300);
    assert_eq!(wij.begin_cycle(&next).unwrap(), 4);
    assert_eq!(open(&fs).unwrap().images().unwrap(), next);
    let after = cycle_images(5, 1);
    assert_eq!(wij.begin_cycle(&after).unwrap(), 5);
    assert_eq!(open(&fs).unwrap().images().unwrap(), after);
    // An empty cycle is a cycle too.
    wij.end_cycle().unwrap();
    assert_eq!(wij.begin_cycle(&[]).unwrap(), 6);
    assert_eq!(open(&fs).unwrap().images().unwrap(), vec![]);
}

#[test]
fn round_trip_on_real_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wij");
    let images = cycle_images(1, 130);
    let mut wij = Wij::open(Arc::new(OsFs), &path).unwrap();
    assert_eq!(wij.begin_cycle(&images).unwrap(), 1);
    drop(wij);
    let mut wij = Wij::open(Arc::new(OsFs), &path).unwrap();
    assert_eq!(wij.state(), WijState::Active { cycle: 1 });
    assert_eq!(wij.images().unwrap(), images);
    wij.end_cycle().unwrap();
    assert_eq!(
        Wij::open(Arc::new(OsFs), &path).unwrap().state(),
        WijState::Clean { cycle: 1 }
    );
}

#[test]
fn refuses_what_does_not_fit_the_state() {
    let fs = SimFs::new();
    let mut wij = open(&fs).unwrap();
    assert!(matches!(
        wij.end_cycle(),
        Err(WijError::WrongState {
            state: WijState::Empty,
            ..
        })
    ));
    let mut short = page(1, 0);
    short.data.truncate(100);
    let err = wij.begin_cycle(&[page(1, 0), short]).unwrap_err();
    assert!(
        matches!(
            err,
            WijError::BadImageSize {
                index: 1,
                len: 100,
                ..
            }
        ),
        "{err}"
    );
    wij.begin_cycle(&cycle_images(1, 1)).unwrap();
    wij.end_cycle().unwrap();
    let err = wij.end_cycle().unwrap_err();
    assert!(matches!(
        err,
        WijError::WrongState {
            state: WijState::Clean { cycle: 1 },
            ..
        }
    ));
    assert_eq!(
        err.to_string(),
        "WIJ /db/wij: cannot end a cycle: the WIJ is clean after cycle 1"
    );
}

/// The state a crash must leave: the last one reached, or the one the
/// interrupted call was heading for.
#[derive(Debug)]
struct Progress {
    /// `None` until `open` returned (the file may not exist yet).
    reached: Option<WijState>,
    heading_for: WijState,
}

/// Images per cycle, and whether the cycle is marked clean after it (as at
/// a shutdown or after a restore) or the next one begins from `Active`
/// (as the write daemon does). Cycle 3 spans two stripes.
const SCRIPT: [(usize, bool); 5] = [(3, false), (5, true), (140, false), (2, false), (4, true)];

/// Runs open, then every cycle in [`SCRIPT`], until an error.
fn run_script(fs: &SimFs) -> Progress {
    let mut progress = Progress {
        reached: None,
        heading_for: WijState::Empty,
    };
    let Ok(mut wij) = open(fs) else {
        return progress;
    };
    progress.reached = Some(WijState::Empty);
    for (i, &(count, clean)) in SCRIPT.iter().enumerate() {
        let cycle = i as u64 + 1;
        progress.heading_for = WijState::Active { cycle };
        if wij.begin_cycle(&cycle_images(cycle, count)).is_err() {
            return progress;
        }
        progress.reached = Some(WijState::Active { cycle });
        if !clean {
            continue;
        }
        progress.heading_for = WijState::Clean { cycle };
        if wij.end_cycle().is_err() {
            return progress;
        }
        progress.reached = Some(WijState::Clean { cycle });
    }
    progress
}

/// Checks a reopened WIJ against what the interrupted script allows, then
/// finishes any active cycle and runs one more.
fn check_recovered(image: &SimFs, progress: &Progress, what: &str) {
    let mut wij = open(image).unwrap_or_else(|e| panic!("{what}: reopen failed: {e}"));
    let state = wij.state();
    let allowed = [
        progress.reached.unwrap_or(WijState::Empty),
        progress.heading_for,
    ];
    assert!(
        allowed.contains(&state),
        "{what}: state {state}, allowed {allowed:?}"
    );
    let scan = wij
        .scan()
        .unwrap_or_else(|e| panic!("{what}: scan failed: {e}"));
    match state {
        WijState::Empty => assert!(scan.images.is_empty() && scan.skipped.is_empty()),
        // Whatever the crash interrupted (even the next cycle's slots),
        // the cycle the header names has all its images.
        WijState::Active { cycle } | WijState::Clean { cycle } => {
            assert_eq!(
                scan.images,
                cycle_images(cycle, SCRIPT[cycle as usize - 1].0),
                "{what}"
            );
            assert!(scan.skipped.is_empty(), "{what}: {:?}", scan.skipped);
        }
    }
    // The recovered WIJ keeps working: restore, then one more cycle.
    if let WijState::Active { .. } = state {
        wij.end_cycle().unwrap();
    }
    let next = cycle_images(99, 3);
    assert_eq!(wij.begin_cycle(&next).unwrap(), state.cycle() + 1, "{what}");
    wij.end_cycle().unwrap();
    let reopened = open(image).unwrap();
    assert_eq!(
        reopened.state(),
        WijState::Clean {
            cycle: state.cycle() + 1
        }
    );
    assert_eq!(reopened.images().unwrap(), next);
}

#[test]
fn crash_at_every_sync_point() {
    let clean = SimFs::new();
    let progress = run_script(&clean);
    assert_eq!(
        progress.reached,
        Some(WijState::Clean {
            cycle: SCRIPT.len() as u64
        })
    );
    let total = clean.syncs();
    // Open: file sync + directory sync; each cycle: slots + 2 headers, and
    // 2 headers more when it is marked clean.
    let cleaned = SCRIPT.iter().filter(|(_, clean)| *clean).count() as u64;
    assert_eq!(total, 2 + 3 * SCRIPT.len() as u64 + 2 * cleaned);

    let mut from_active = false;
    for n in 1..=total {
        let fs = SimFs::new();
        fs.crash_at_sync(n);
        let progress = run_script(&fs);
        assert!(fs.is_crashed(), "sync {n}");
        assert_eq!(fs.syncs(), n - 1, "the crash is at sync {n} exactly");
        let fates = (0..12)
            .map(CrashFate::Seeded)
            .chain([CrashFate::DropAll, CrashFate::KeepAll]);
        for fate in fates {
            let image = fs.crash_image_with(fate);
            check_recovered(&image, &progress, &format!("crash at sync {n}, {fate:?}"));
        }
        // Crashes while a cycle's slots are written over an Active header.
        from_active |= matches!(
            (progress.reached, progress.heading_for),
            (Some(WijState::Active { cycle }), WijState::Active { cycle: next }) if next == cycle + 1
        );
    }
    assert!(
        from_active,
        "some crash should hit a cycle begun from Active"
    );
}

#[test]
fn an_unfinished_cycle_leaves_the_named_cycle_intact() {
    for clean in [true, false] {
        let fs = SimFs::new();
        let mut wij = open(&fs).unwrap();
        let first = cycle_images(1, 4);
        wij.begin_cycle(&first).unwrap();
        if clean {
            wij.end_cycle().unwrap();
        }
        fs.crash_at_sync(1);
        assert!(wij.begin_cycle(&cycle_images(2, 2)).is_err());

        // Cycle 2's slots written (not synced) in full: they are elsewhere.
        let image = fs.crash_image_with(CrashFate::KeepAll);
        let scan = open(&image).unwrap().scan().unwrap();
        let state = if clean {
            WijState::Clean { cycle: 1 }
        } else {
            WijState::Active { cycle: 1 }
        };
        assert_eq!(
            scan,
            Scan {
                state,
                images: first.clone(),
                skipped: vec![]
            }
        );
    }
}

#[test]
fn a_damaged_slot_of_a_clean_wij_is_skipped() {
    let fs = SimFs::new();
    let mut wij = open(&fs).unwrap();
    let first = cycle_images(1, 4);
    wij.begin_cycle(&first).unwrap();
    wij.end_cycle().unwrap();
    fs.flip_bit(&wij_path(), format::slot_offset(1, 3) + 100, 0)
        .unwrap();
    let scan = open(&fs).unwrap().scan().unwrap();
    assert_eq!(scan.images, first[..3].to_vec());
    assert_eq!(
        scan.skipped,
        vec![SkippedSlot {
            index: 3,
            offset: format::slot_offset(1, 3),
            reason: SkipReason::Damaged
        }]
    );
}

#[test]
fn corrupt_image_in_an_active_wij_is_reported_with_its_index() {
    let fs = SimFs::new();
    let mut wij = open(&fs).unwrap();
    wij.begin_cycle(&cycle_images(1, 4)).unwrap();
    let offset = format::slot_offset(1, 2);
    fs.flip_bit(&wij_path(), offset + 5000, 6).unwrap();
    let err = open(&fs).unwrap().images().unwrap_err();
    match &err {
        WijError::Corrupt {
            part, offset: at, ..
        } => {
            assert_eq!(*part, WijPart::Image(2));
            assert_eq!(*at, offset);
        }
        other => panic!("{other}"),
    }
    assert_eq!(
        err.to_string(),
        format!("WIJ /db/wij: image 2 at offset {offset} is corrupt: checksum mismatch")
    );
}

#[test]
fn slots_no_crash_can_explain_are_corrupt() {
    let fs = SimFs::new();
    let mut wij = open(&fs).unwrap();
    wij.begin_cycle(&cycle_images(1, 3)).unwrap();
    wij.end_cycle().unwrap();
    wij.begin_cycle(&cycle_images(2, 3)).unwrap();
    wij.end_cycle().unwrap();
    drop(wij);

    // Writes a well-formed slot claiming (index, cycle) where image 1 of
    // cycle 2 belongs, and returns what reading the WIJ says.
    let plant = |index: u32, cycle: u64| {
        let mut slot = Vec::new();
        SlotHeader {
            index,
            cycle,
            file_id: 0,
            page_no: 0,
        }
        .encode_into(&[0u8; PAGE_SIZE], &mut slot);
        fs.write_raw(&wij_path(), format::slot_offset(2, 1), &slot)
            .unwrap();
        open(&fs).unwrap().images().unwrap_err()
    };
    // A slot from another cycle (older, or the next one, which writes
    // other stripes), in a Clean WIJ.
    for cycle in [1, 3, 4] {
        let err = plant(1, cycle);
        assert!(
            matches!(
                err,
                WijError::Corrupt {
                    part: WijPart::Image(1),
                    ..
                }
            ),
            "cycle {cycle}: {err}"
        );
    }

    // A slot in the wrong place.
    let err = plant(0, 2);
    assert!(
        err.to_string().contains("slot says it holds image 0"),
        "{err}"
    );
}

fn copy_bytes(fs: &SimFs, copy: usize) -> Vec<u8> {
    let at = HEADER_COPIES[copy] as usize;
    fs.file_bytes(&wij_path()).unwrap()[at..at + HEADER_BLOCK].to_vec()
}

/// A WIJ that is Clean after cycle 1, and the block of the Active(2)
/// header its next update would write.
fn clean_wij_and_next_header() -> (SimFs, Vec<u8>) {
    let fs = SimFs::new();
    let mut wij = open(&fs).unwrap();
    wij.begin_cycle(&cycle_images(1, 2)).unwrap();
    wij.end_cycle().unwrap();
    let now = Header {
        state: WijState::Clean { cycle: 1 },
        image_count: 2,
        seq: 2,
    };
    assert_eq!(
        copy_bytes(&fs, 0),
        now.encode(),
        "the expected header sequence"
    );
    let next = Header {
        state: WijState::Active { cycle: 2 },
        image_count: 2,
        seq: 3,
    };
    (fs, next.encode())
}

#[test]
fn torn_header_writes_never_lose_the_state() {
    // Tear the new header into either copy at every byte (finer than any
    // sector), the other copy holding the old or the new state.
    for (copy, &copy_offset) in HEADER_COPIES.iter().enumerate() {
        for cut in 0..=64 {
            let (fs, next) = clean_wij_and_next_header();
            // The slots of cycle 2 are durable before its header is written.
            {
                let mut slots = Vec::new();
                for (i, image) in cycle_images(2, 2).iter().enumerate() {
                    let head = SlotHeader {
                        index: i as u32,
                        cycle: 2,
                        file_id: image.file_id,
                        page_no: image.page_no,
                    };
                    head.encode_into(&image.data, &mut slots);
                }
                fs.write_raw(&wij_path(), format::slot_offset(2, 0), &slots)
                    .unwrap();
            }
            if copy == 1 {
                // Copy A was written and synced before copy B.
                fs.write_raw(&wij_path(), HEADER_COPIES[0], &next).unwrap();
            }
            fs.write_raw(&wij_path(), copy_offset, &next[..cut])
                .unwrap();
            let wij = open(&fs).unwrap_or_else(|e| panic!("copy {copy}, cut {cut}: {e}"));
            let expected: &[WijState] = if copy == 0 {
                &[WijState::Clean { cycle: 1 }, WijState::Active { cycle: 2 }]
            } else {
                &[WijState::Active { cycle: 2 }]
            };
            assert!(
                expected.contains(&wij.state()),
                "copy {copy}, cut {cut}: {}",
                wij.state()
            );
            let scan = wij.scan().unwrap();
            if wij.state() == (WijState::Active { cycle: 2 }) {
                assert_eq!(scan.images, cycle_images(2, 2));
            } else {
                // Clean(1), its slots untouched by cycle 2's.
                assert_eq!(scan.images, cycle_images(1, 2));
                assert!(scan.skipped.is_empty());
            }
            assert_eq!(
                copy_bytes(&fs, 0),
                copy_bytes(&fs, 1),
                "open repairs the stale copy"
            );
        }
    }
}

#[test]
fn one_rotten_header_copy_is_repaired() {
    for (copy, &copy_offset) in HEADER_COPIES.iter().enumerate() {
        let (fs, _) = clean_wij_and_next_header();
        let good = copy_bytes(&fs, copy);
        fs.flip_bit(&wij_path(), copy_offset + 20, 3).unwrap();
        let wij = open(&fs).unwrap();
        assert_eq!(wij.state(), WijState::Clean { cycle: 1 });
        assert_eq!(copy_bytes(&fs, copy), good);
    }
}

#[test]
fn both_header_copies_lost() {
    let (fs, _) = clean_wij_and_next_header();
    fs.write_raw(&wij_path(), 0, &[0xee; 2 * HEADER_BLOCK])
        .unwrap();
    let err = open(&fs).unwrap_err();
    assert!(
        matches!(
            err,
            WijError::Corrupt {
                part: WijPart::Header,
                offset: 0,
                ..
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string()
            .starts_with("WIJ /db/wij: header at offset 0 is corrupt: no valid header copy"),
        "{err}"
    );

    // Without any slot, nothing is at stake: creation never finished.
    let fs = SimFs::new();
    let file = fs
        .open(&wij_path(), crate::storage::OpenMode::CreateIfMissing)
        .unwrap();
    file.write_all_at(&[0xee; 5000], 0).unwrap();
    let wij = open(&fs).unwrap();
    assert_eq!(wij.state(), WijState::Empty);
    assert_eq!(open(&fs).unwrap().state(), WijState::Empty);
}

#[test]
fn unsupported_version_is_refused() {
    let (fs, _) = clean_wij_and_next_header();
    let mut block = copy_bytes(&fs, 0);
    block[8..12].copy_from_slice(&3u32.to_le_bytes());
    let crc = crc32c::crc32c(&block[0..60]);
    block[60..64].copy_from_slice(&crc.to_le_bytes());
    fs.write_raw(&wij_path(), HEADER_COPIES[1], &block).unwrap();
    let err = open(&fs).unwrap_err();
    assert!(
        matches!(
            err,
            WijError::UnsupportedVersion {
                found: 3,
                offset: 4096,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn failed_sync_poisons() {
    let fs = SimFs::new();
    let mut wij = open(&fs).unwrap();
    fs.fail_next_sync();
    let err = wij.begin_cycle(&cycle_images(1, 2)).unwrap_err();
    assert!(matches!(err, WijError::Io { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("sync images of cycle 1 in WIJ /db/wij"),
        "{err}"
    );
    assert!(matches!(
        wij.begin_cycle(&cycle_images(1, 2)),
        Err(WijError::Poisoned { .. })
    ));
    assert!(matches!(wij.end_cycle(), Err(WijError::Poisoned { .. })));
    assert!(matches!(wij.images(), Err(WijError::Poisoned { .. })));

    // After a restart, the WIJ is in its last durable state.
    let mut wij = open(&fs).unwrap();
    assert_eq!(wij.state(), WijState::Empty);
    assert_eq!(wij.begin_cycle(&cycle_images(1, 2)).unwrap(), 1);
}

#[test]
fn relative_paths_sync_the_current_directory() {
    let fs = SimFs::new();
    let wij = Wij::open(Arc::new(fs.clone()), Path::new("wij")).unwrap();
    assert_eq!(wij.state(), WijState::Empty);
    let image = fs.crash_image_with(CrashFate::DropAll);
    assert!(
        image.file_bytes(Path::new("wij")).is_some(),
        "creation is durable"
    );
    assert_eq!(SLOT_SIZE, 8224);
}

/// A cycle written in parts (as the flush writes a large one, a batch
/// encoded at a time) reads back as one, in order; a cycle dropped before
/// `finish` never happened.
#[test]
fn a_cycle_written_in_parts_reads_back_whole() {
    let fs = SimFs::new();
    let mut wij = open(&fs).unwrap();
    let first = cycle_images(1, 5);
    wij.begin_cycle(&first).unwrap();

    let images = cycle_images(2, 700);
    let mut cycle = wij.start_cycle().unwrap();
    for part in [
        &images[..1],
        &images[1..300],
        &images[300..301],
        &images[301..],
    ] {
        cycle.write(part).unwrap();
    }
    assert_eq!(cycle.finish().unwrap(), 2);
    assert_eq!(wij.images().unwrap(), images);
    let holds_cycle_2 = |wij: Wij| {
        drop(wij);
        let wij = open(&fs).unwrap();
        assert_eq!(wij.state(), WijState::Active { cycle: 2 });
        assert_eq!(wij.images().unwrap(), images);
        wij
    };
    let mut wij = holds_cycle_2(wij);

    let mut cycle = wij.start_cycle().unwrap();
    cycle.write(&cycle_images(3, 40)).unwrap();
    drop(cycle);
    let mut wij = holds_cycle_2(wij);

    // A bad image in a later part is named by its place in the cycle.
    let mut cycle = wij.start_cycle().unwrap();
    cycle.write(&cycle_images(3, 4)).unwrap();
    let mut short = cycle_images(3, 2);
    short[1].data.truncate(100);
    match cycle.write(&short) {
        Err(WijError::BadImageSize {
            index: 5, len: 100, ..
        }) => {}
        other => panic!("expected a bad image at index 5, got {other:?}"),
    }
}
