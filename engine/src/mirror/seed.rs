//! Seeding over the wire (see [`crate::wire::seed`] for the messages and
//! `db/seed.rs` for the copy): the primary serves a copy taken while writes
//! go on; a member that starts with an empty data folder (new, or its disk
//! was lost) fetches one before it opens its store, logging its progress,
//! and then streams from the copy's end like any follower.

use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::config::{MemberConfig, MemberKind};
use super::member::Shared;
use crate::db::{SeedDatabase, SeedInstall, SeedPlan};
use crate::journal::JournalOptions;
use crate::storage::os::OsFs;
use crate::wire::{self, FrameLimits, Hello, MemberRole, Message, PeerRole};
use crate::Lsn;

/// Pages per `SeedPages` message (512 KiB).
const PAGES_PER_MESSAGE: u64 = 64;
/// Journal bytes per chunk.
const JOURNAL_CHUNK: usize = 1 << 20;
/// How long either side waits for the other during a seed (the primary
/// runs a flush cycle before its first answer).
const SEED_TIMEOUT: Duration = Duration::from_secs(120);

/// The primary's side: sends a copy to `name`.
pub(crate) fn serve(shared: Arc<Shared>, mut s: TcpStream, name: String) -> Result<(), String> {
    let send = |s: &mut TcpStream, m: Message| wire::send(s, &m).map_err(|e| e.to_string());
    let _ = s.set_write_timeout(Some(SEED_TIMEOUT));
    let snap = match shared.engine.begin_seed() {
        Ok(snap) => snap,
        Err(e) => {
            send(
                &mut s,
                Message::SeedNeeded(wire::SeedNeeded {
                    reason: format!("{} cannot give out a seed: {e}", shared.cfg.name),
                }),
            )?;
            return Err(e.to_string());
        }
    };
    let plan = snap.plan().clone();
    let t0 = Instant::now();
    tracing::info!(follower = %name, pages = plan.total_pages(), journal_bytes = plan.journal_end.0 - plan.journal_start.0, "sending a seed");
    send(&mut s, Message::SeedStart(to_wire(&plan)))?;
    for d in &plan.databases {
        let mut at = 0;
        while at < d.pages {
            let n = PAGES_PER_MESSAGE.min(d.pages - at);
            let bytes = snap
                .read_pages(d.file_id, at, n)
                .map_err(|e| e.to_string())?;
            send(
                &mut s,
                Message::SeedPages(wire::SeedPages {
                    file_id: d.file_id,
                    first: at,
                    bytes,
                }),
            )?;
            at += n;
        }
    }
    let mut at = plan.journal_start;
    while at < plan.journal_end {
        let (bytes, end) = snap
            .read_journal(at, JOURNAL_CHUNK)
            .map_err(|e| e.to_string())?;
        send(
            &mut s,
            Message::Journal(wire::JournalChunk { start: at.0, bytes }),
        )?;
        at = end;
    }
    let kept = snap.kept_bytes();
    snap.still_primary().map_err(|e| e.to_string())?;
    drop(snap);
    send(
        &mut s,
        Message::SeedDone(wire::SeedDone {
            pages: plan.total_pages(),
            journal_bytes: plan.journal_end.0 - plan.journal_start.0,
        }),
    )?;
    tracing::info!(
        follower = %name,
        mib = plan.total_bytes() >> 20,
        secs = format!("{:.1}", t0.elapsed().as_secs_f64()),
        copy_on_write_kib = kept >> 10,
        "seed sent"
    );
    Ok(())
}

fn to_wire(plan: &SeedPlan) -> wire::SeedStart {
    wire::SeedStart {
        journal_start: plan.journal_start.0,
        prev_crc: plan.prev_crc,
        journal_end: plan.journal_end.0,
        epochs: plan.epochs.iter().map(|(e, s)| (*e, s.0)).collect(),
        databases: plan
            .databases
            .iter()
            .map(|d| wire::SeedDatabase {
                file_id: d.file_id,
                name: d.name.clone(),
                pages: d.pages,
            })
            .collect(),
    }
}

fn from_wire(m: wire::SeedStart) -> SeedPlan {
    SeedPlan {
        journal_start: Lsn(m.journal_start),
        prev_crc: m.prev_crc,
        journal_end: Lsn(m.journal_end),
        epochs: m.epochs.into_iter().map(|(e, s)| (e, Lsn(s))).collect(),
        databases: m
            .databases
            .into_iter()
            .map(|d| SeedDatabase {
                file_id: d.file_id,
                name: d.name,
                pages: d.pages,
            })
            .collect(),
    }
}

/// What [`fetch`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fetched {
    /// No primary answered: the member starts empty (a new mirror, or it
    /// streams the whole journal later).
    NoPrimary,
    /// Seeded from `primary`; the copy's journal ends at `end`.
    Seeded { primary: String, end: Lsn },
}

/// The receiving side, run before the member opens its store in an empty
/// data folder: finds the primary among the failover members and installs
/// its seed.
pub fn fetch(cfg: &MemberConfig) -> Result<Fetched, String> {
    let Some((primary, mut s)) = find_primary(cfg) else {
        return Ok(Fetched::NoPrimary);
    };
    tracing::info!(%primary, "this member has no data: seeding from the primary");
    let _ = s.set_read_timeout(Some(SEED_TIMEOUT));
    wire::send(&mut s, &Message::SeedRequest).map_err(|e| e.to_string())?;
    let recv = |s: &mut TcpStream| wire::recv(s, FrameLimits::MEMBER).map_err(|e| e.to_string());
    let plan = match recv(&mut s)? {
        Message::SeedStart(m) => from_wire(m),
        Message::SeedNeeded(n) => return Err(format!("{primary}: {}", n.reason)),
        other => return Err(format!("expected SeedStart, got {}", other.name())),
    };
    let total = plan.total_bytes();
    let end = plan.journal_end;
    let mut inst = SeedInstall::begin(
        Arc::new(OsFs),
        &cfg.data_dir,
        JournalOptions::default(),
        plan,
    )
    .map_err(|e| e.to_string())?;
    let mut progress = Progress::new(total);
    loop {
        match recv(&mut s)? {
            Message::SeedPages(p) => {
                progress.add(p.bytes.len() as u64);
                inst.pages(p.file_id, p.first, &p.bytes)
                    .map_err(|e| e.to_string())?;
            }
            Message::Journal(c) => {
                progress.add(c.bytes.len() as u64);
                inst.journal(Lsn(c.start), &c.bytes)
                    .map_err(|e| e.to_string())?;
            }
            Message::SeedDone(d) => {
                let expected = inst.plan().total_pages();
                if d.pages != expected {
                    return Err(format!(
                        "the primary says it sent {} pages; the seed lists {expected}",
                        d.pages
                    ));
                }
                break;
            }
            other => return Err(format!("unexpected {} during a seed", other.name())),
        }
    }
    // Before `finish` (which removes the `seeding` marker), so a store
    // that opens always has its epoch file.
    let last_epoch = inst.plan().epochs.last().map_or(0, |(e, _)| *e);
    super::epoch_file::write(&cfg.data_dir, last_epoch)
        .map_err(|e| format!("write the epoch file: {e}"))?;
    inst.finish().map_err(|e| e.to_string())?;
    progress.done();
    Ok(Fetched::Seeded { primary, end })
}

/// Moves this member's store (databases, journal, write image journal,
/// epochs) into `<data>/discarded-<unix seconds>/`, so that the next start
/// seeds from the primary. Nothing is deleted: an operator removes the
/// folder once the new copy is trusted. Returns the folder, or `None` if
/// there was nothing to move.
pub fn set_aside(data_dir: &std::path::Path) -> std::io::Result<Option<std::path::PathBuf>> {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let to = data_dir.join(format!("discarded-{secs}"));
    let mut moved = false;
    for name in [
        "databases",
        "journal",
        "wij",
        "epochs",
        "epoch",
        crate::db::SEEDING_MARKER,
    ] {
        let from = data_dir.join(name);
        if !from.exists() {
            continue;
        }
        std::fs::create_dir_all(&to)?;
        std::fs::rename(&from, to.join(name))?;
        moved = true;
    }
    std::fs::File::open(data_dir)?.sync_all()?;
    Ok(moved.then_some(to))
}

/// Connects to whichever failover member says it is primary.
fn find_primary(cfg: &MemberConfig) -> Option<(String, TcpStream)> {
    for m in cfg
        .members
        .iter()
        .filter(|m| m.kind == MemberKind::Failover && m.name != cfg.name)
    {
        let Ok(mut s) = super::receiver::connect_to(&m.addr, cfg.qos) else {
            continue;
        };
        let hello = Hello::new(&cfg.mirror, &cfg.name, PeerRole::Member);
        if wire::send(&mut s, &Message::Hello(hello)).is_err() {
            continue;
        }
        match wire::recv(&mut s, FrameLimits::default()) {
            Ok(Message::Welcome(w)) if w.role == MemberRole::Primary => return Some((w.member, s)),
            Ok(Message::Refuse(r)) => {
                tracing::warn!(member = %m.name, reason = %r.reason, "refused while looking for the primary")
            }
            _ => {}
        }
    }
    None
}

/// Logs seeding progress every two seconds: done, rate, time left.
struct Progress {
    total: u64,
    done: u64,
    t0: Instant,
    last: Instant,
}

impl Progress {
    fn new(total: u64) -> Progress {
        let now = Instant::now();
        Progress {
            total,
            done: 0,
            t0: now,
            last: now,
        }
    }

    fn rate(&self) -> f64 {
        self.done as f64 / self.t0.elapsed().as_secs_f64().max(1e-3)
    }

    fn add(&mut self, n: u64) {
        self.done += n;
        if self.last.elapsed() < Duration::from_secs(2) {
            return;
        }
        self.last = Instant::now();
        let rate = self.rate();
        tracing::info!(
            received_mib = self.done >> 20,
            total_mib = self.total >> 20,
            percent = format!("{:.1}", 100.0 * self.done as f64 / self.total.max(1) as f64),
            mib_per_s = format!("{:.1}", rate / (1 << 20) as f64),
            eta_s = format!(
                "{:.0}",
                (self.total - self.done.min(self.total)) as f64 / rate.max(1.0)
            ),
            "seeding"
        );
    }

    fn done(&self) {
        tracing::info!(
            mib = format!("{:.1}", self.done as f64 / (1 << 20) as f64),
            secs = format!("{:.1}", self.t0.elapsed().as_secs_f64()),
            mib_per_s = format!("{:.1}", self.rate() / (1 << 20) as f64),
            "seed complete"
        );
    }
}
