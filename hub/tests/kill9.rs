//! A real process killed with SIGKILL under concurrent write load,
//! restarted, many times: every commit it acknowledged must be there, whole,
//! and a transaction it had not acknowledged whole or absent. Some of the
//! transactions are large enough for the journal to write their records
//! ahead of the commit. A third run scatters new keys over a database
//! larger than its pool, so that crashes find them in the insert buffer
//! (in no page: recovery replays them from the journal).
//! `REDOUBT_LONG_TESTS=1` runs 100 rounds instead of 12.

use std::collections::BTreeMap;
use std::io::BufReader;
use std::process::{Command, Stdio};
use std::time::Duration;

use rand::Rng;
use redoubt_hub::load::{self, LoadShape};

#[test]
fn every_acknowledged_commit_survives_kill_9() {
    kill_9_rounds(LoadShape::default());
}

/// The same with pipelined commits: each acknowledged only after the next
/// transaction is built, by `PendingCommit::wait`.
#[test]
fn every_acknowledged_pipelined_commit_survives_kill_9() {
    kill_9_rounds(LoadShape {
        pipelined: true,
        ..LoadShape::default()
    });
}

/// The same with a key far from the others in every commit, into a
/// database larger than its pool: those keys wait in the insert buffer.
#[test]
fn every_acknowledged_commit_survives_kill_9_with_new_keys_in_the_insert_buffer() {
    kill_9_rounds(LoadShape {
        scatter: true,
        ..LoadShape::default()
    });
}

fn kill_9_rounds(shape: LoadShape) {
    let rounds = if std::env::var("REDOUBT_LONG_TESTS").is_ok() {
        100
    } else {
        12
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("member");
    let mut acked = BTreeMap::new();
    let mut rng = rand::thread_rng();
    let (mut total, mut written_ahead, mut buffered) = (0, 0, 0);
    for round in 0..rounds {
        let mut child = Command::new(env!("CARGO_BIN_EXE_redoubt"))
            .args(["write-load", "--threads", "8", "--data"])
            .arg(&data)
            .args(shape.pipelined.then_some("--pipelined"))
            .args(shape.scatter.then_some("--scatter"))
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut acked = BTreeMap::new();
            let out = load::parse_load_output(BufReader::new(stdout), &mut acked).unwrap();
            (out, acked)
        });
        std::thread::sleep(Duration::from_millis(rng.gen_range(150..700)));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let (out, round_acks) = reader.join().unwrap();
        total += out.acks;
        written_ahead += out.writes_ahead;
        buffered = buffered.max(out.buffered);
        for (t, seq) in round_acks {
            let e = acked.entry(t).or_insert(0);
            *e = (*e).max(seq);
        }
        let (engine, report) = load::open(&data, shape.scatter).unwrap();
        let checked = load::verify(&engine, &acked, shape.scatter)
            .unwrap_or_else(|e| panic!("round {round}: {e:#} (recovery: {report:?})"));
        assert!(checked >= acked.values().map(|m| m + 1).sum::<u64>());
        engine.check().unwrap();
        engine.close().unwrap();
    }
    assert!(total > 0, "the load acknowledged nothing");
    assert!(
        written_ahead > 0,
        "no transaction's records were written ahead: the test does not test it"
    );
    if shape.scatter {
        assert!(
            buffered > 0,
            "no key waited in the insert buffer: the test does not test it"
        );
    }
    println!("{shape:?}: {rounds} kills, {total} acknowledged commits, all present; {written_ahead} writes ahead of commits; at most {buffered} keys buffered at an ack");
}
