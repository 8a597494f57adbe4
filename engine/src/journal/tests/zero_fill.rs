//! The zero-filling thread (`reserve.rs`): the zeros it writes ahead never
//! land on records, through segment rolls, truncations and crashes.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::{random_record, Env};
use crate::journal::{JournalOptions, Record};
use crate::Lsn;

fn opts(segment_bytes: u64) -> JournalOptions {
    JournalOptions {
        segment_bytes,
        max_batch_bytes: 64 * 1024,
        zero_fill_thread: true,
    }
}

/// Appends `n` random records in durable batches of random sizes.
fn append_batches(j: &crate::journal::Journal, rng: &mut StdRng, n: usize) -> Vec<Record> {
    let mut written = Vec::new();
    while written.len() < n {
        let mut end = Lsn::ZERO;
        for _ in 0..rng.gen_range(1..40) {
            let rec = random_record(rng, 3000);
            end = j.append(&rec).expect("append");
            written.push(rec);
        }
        j.wait_durable(end).expect("durable");
    }
    written
}

fn read_all(j: &crate::journal::Journal) -> Vec<Record> {
    j.read_from(Lsn::ZERO)
        .expect("reader")
        .map(|r| r.expect("record").1)
        .collect()
}

#[test]
fn records_survive_zeroing_ahead_through_rolls_and_reopens() {
    for env in Env::both() {
        let mut rng = StdRng::seed_from_u64(7);
        let mut all = Vec::new();
        for round in 0..3 {
            // Segments of 256 KiB: every few batches a roll, while the
            // thread zeroes a megabyte ahead.
            let (j, report) = env.open(opts(256 * 1024), Lsn::ZERO);
            assert_eq!(
                report.records as usize,
                all.len(),
                "{} round {round}",
                env.name()
            );
            all.extend(append_batches(&j, &mut rng, 400));
            assert_eq!(
                read_all(&j),
                all,
                "{} round {round}: records as written",
                env.name()
            );
            let last = env.last_segment();
            let bytes = env.read_file(&last);
            drop(j);
            // Closed in good order: the reserved zeros are given back.
            assert!(
                env.file_len(&last) <= bytes.len() as u64,
                "{}: the last segment grew at close",
                env.name()
            );
        }
        let (j, _) = env.open(opts(256 * 1024), Lsn::ZERO);
        assert_eq!(read_all(&j), all, "{}: after the last reopen", env.name());
    }
}

#[test]
fn a_crash_keeps_every_durable_record_with_zeros_written_ahead() {
    let env = Env::sim();
    let sim = env.sim.clone().expect("sim");
    let mut rng = StdRng::seed_from_u64(11);
    let (j, _) = env.open(opts(1 << 20), Lsn::ZERO);
    let durable = append_batches(&j, &mut rng, 300);
    // Buffered, never synced: may or may not survive.
    for _ in 0..10 {
        j.append(&random_record(&mut rng, 100)).expect("append");
    }
    for seed in 0..20 {
        let image = sim.crash_image(seed);
        let env2 = Env {
            vfs: std::sync::Arc::new(image.clone()),
            dir: env.dir.clone(),
            sim: Some(image),
            _tmp: None,
        };
        let (j2, report) = env2.open(opts(1 << 20), Lsn::ZERO);
        let got = read_all(&j2);
        assert!(
            got.len() >= durable.len() && got[..durable.len()] == durable[..],
            "crash image {seed}: {} records back, {} were durable (repair: {:?})",
            got.len(),
            durable.len(),
            report.repair
        );
    }
    drop(j);
}

#[test]
fn a_truncate_with_zeros_ahead_leaves_a_clean_end() {
    for env in Env::both() {
        let mut rng = StdRng::seed_from_u64(3);
        let (j, _) = env.open(opts(1 << 20), Lsn::ZERO);
        let first = append_batches(&j, &mut rng, 100);
        let cut = j.durable_lsn();
        append_batches(&j, &mut rng, 100);
        j.truncate(cut).expect("truncate");
        let more = append_batches(&j, &mut rng, 100);
        drop(j);
        let (j, report) = env.open(opts(1 << 20), Lsn::ZERO);
        assert!(
            report.repair.is_none(),
            "{}: {:?}",
            env.name(),
            report.repair
        );
        let mut want = first;
        want.extend(more);
        assert_eq!(read_all(&j), want, "{}", env.name());
    }
}
