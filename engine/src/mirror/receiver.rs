//! The receiving side of journal streaming (backup and async members):
//! connect to the primary, ask for the journal from our end, make each
//! chunk durable in our own journal (byte for byte the primary's), then
//! acknowledge; an apply thread dejournals behind it.

use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use super::failover::Event;
use super::member::{Msg, Shared, Upstream};
use crate::journal::{Journal, Record};
use crate::wire::{self, Ack, FrameLimits, Hello, MemberRole, Message, PeerRole, StreamFrom};
use crate::Lsn;

/// A running follower thread.
pub(crate) struct Following {
    pub primary: String,
    stop: Arc<AtomicBool>,
    /// The current stream's socket, to cut a blocked read short.
    socket: Arc<parking_lot::Mutex<Option<TcpStream>>>,
    handle: JoinHandle<()>,
}

impl Following {
    /// Stops following; returns once everything received is applied. A
    /// read blocked on a frozen primary is cut short, not waited out.
    pub fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(s) = self.socket.lock().take() {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
        let _ = self.handle.join();
    }

    pub fn finished(&self) -> bool {
        self.handle.is_finished()
    }
}

pub(crate) fn follow(shared: Arc<Shared>, primary: String) -> Following {
    let stop = Arc::new(AtomicBool::new(false));
    let socket: Arc<parking_lot::Mutex<Option<TcpStream>>> = Arc::default();
    let handle = {
        let (shared, primary, stop, socket) = (
            shared.clone(),
            primary.clone(),
            stop.clone(),
            socket.clone(),
        );
        let span = tracing::info_span!("follow", primary = %primary);
        std::thread::Builder::new()
            .name("redoubt-follow".into())
            .spawn(move || {
                let _g = span.enter();
                // Async members hand back to the driver to find the primary
                // again; a backup keeps trying its primary.
                let once = shared.view.lock().role == MemberRole::Async;
                while !stop.load(Ordering::SeqCst) && !shared.stopping() {
                    if let Err(e) = follow_once(&shared, &primary, &stop, &socket) {
                        tracing::info!(error = %e, "stream from the primary ended");
                    }
                    if once {
                        return;
                    }
                    // Asking again soon will not help a member that needs
                    // a seed; an operator has to restart it.
                    let pause = if shared.needs_seed.lock().is_some() {
                        Duration::from_secs(5)
                    } else {
                        Duration::from_millis(100)
                    };
                    std::thread::sleep(pause);
                }
            })
            .expect("spawn follower")
    };
    Following {
        primary,
        stop,
        socket,
        handle,
    }
}

/// Asks every failover member which one is primary.
pub(crate) fn find_primary(shared: &Shared) -> Option<String> {
    for m in shared
        .cfg
        .members
        .iter()
        .filter(|m| m.kind == super::MemberKind::Failover)
    {
        let Ok(mut s) = connect(shared, &m.addr) else {
            continue;
        };
        if let Ok(w) = handshake(shared, &mut s) {
            if w.role == MemberRole::Primary {
                return Some(w.member);
            }
        }
    }
    None
}

pub(crate) fn connect(shared: &Shared, addr: &str) -> std::io::Result<TcpStream> {
    connect_to(addr, shared.qos())
}

/// A member-to-member connection with the mirror's QoS as its timeouts.
pub(crate) fn connect_to(addr: &str, qos: Duration) -> std::io::Result<TcpStream> {
    use std::net::ToSocketAddrs;
    let sa = addr
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| std::io::Error::other(format!("{addr} resolves to nothing")))?;
    let s = TcpStream::connect_timeout(&sa, qos.min(Duration::from_secs(2)))?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(qos))?;
    s.set_write_timeout(Some(qos))?;
    Ok(s)
}

pub(crate) fn handshake(shared: &Shared, s: &mut TcpStream) -> Result<wire::Welcome, String> {
    wire::send(
        s,
        &Message::Hello(Hello::new(
            &shared.cfg.mirror,
            &shared.cfg.name,
            PeerRole::Member,
        )),
    )
    .map_err(|e| e.to_string())?;
    match wire::recv(s, FrameLimits::default()).map_err(|e| e.to_string())? {
        Message::Welcome(w) => Ok(w),
        Message::Refuse(r) => Err(format!("refused: {}", r.reason)),
        other => Err(format!("expected Welcome, got {}", other.name())),
    }
}

fn follow_once(
    shared: &Arc<Shared>,
    primary: &str,
    stop: &AtomicBool,
    socket: &parking_lot::Mutex<Option<TcpStream>>,
) -> Result<(), String> {
    let addr = shared
        .addr_of(primary)
        .ok_or_else(|| format!("{primary} is not a member"))?;
    let mut s = connect(shared, &addr).map_err(|e| format!("connect to {addr}: {e}"))?;
    *socket.lock() = s.try_clone().ok();
    if stop.load(Ordering::SeqCst) {
        return Ok(());
    }
    let w = handshake(shared, &mut s)?;
    if w.role != MemberRole::Primary {
        return Err(format!("{primary} is {} , not primary", w.role));
    }
    let engine = &shared.engine;
    let journal = engine.journal();
    let end = journal.end_lsn();
    let crc = journal.crc_before(end).map_err(|e| e.to_string())?;
    let epoch = engine.last_log_epoch();
    wire::send(
        &mut s,
        &Message::StreamFrom(StreamFrom {
            epoch,
            lsn: end.0,
            crc,
        }),
    )
    .map_err(|e| e.to_string())?;
    let epochs = engine
        .epoch_history()
        .into_iter()
        .map(|(e, l)| (e, l.0))
        .collect();
    wire::send(&mut s, &Message::History(wire::History { epochs })).map_err(|e| e.to_string())?;
    tracing::info!(from = end.0, "streaming from the primary");

    let (apply_tx, apply_rx) = mpsc::sync_channel::<(Vec<(Lsn, Record)>, Lsn)>(256);
    let applier = {
        let shared = shared.clone();
        std::thread::Builder::new()
            .name("redoubt-apply".into())
            .spawn(move || {
                for (records, end) in apply_rx {
                    // Applied only once durable here (the acker makes it so).
                    let applied = shared
                        .engine
                        .journal()
                        .wait_durable(end)
                        .map_err(crate::EngineError::from)
                        .and_then(|()| shared.engine.apply_received(records, end));
                    if let Err(e) = applied {
                        tracing::error!(error = %e, "applying the primary's journal failed");
                        return;
                    }
                }
            })
            .expect("spawn apply thread")
    };
    let limits = FrameLimits::MEMBER;
    let mut progress = CatchUp::new(end.0);
    let acker = Acker::start(shared, &s, end)?;
    let result = (|| -> Result<Option<wire::Diverged>, String> {
        while !stop.load(Ordering::SeqCst) && !shared.stopping() {
            let msg = wire::recv(&mut s, limits).map_err(|e| e.to_string())?;
            match msg {
                Message::Journal(chunk) => {
                    shared.needs_seed.lock().take();
                    let start = Lsn(chunk.start);
                    let prev = journal.last_crc();
                    let records = Journal::decode_raw(start, prev, &chunk.bytes)
                        .map_err(|e| e.to_string())?;
                    let new_end = journal
                        .append_raw(start, &chunk.bytes)
                        .map_err(|e| e.to_string())?;
                    acker.received(new_end);
                    apply_tx
                        .send((records, new_end))
                        .map_err(|_| "the apply thread stopped".to_string())?;
                    let target = shared
                        .view
                        .lock()
                        .upstream
                        .as_ref()
                        .map_or(0, |u| u.primary_end);
                    progress.report(new_end.0, target);
                }
                Message::Heartbeat(h) => {
                    shared.needs_seed.lock().take();
                    let changed = {
                        let mut v = shared.view.lock();
                        v.upstream = Some(Upstream {
                            primary_end: h.end,
                            primary_time_us: h.time_us,
                        });
                        v.epoch = v.epoch.max(h.epoch);
                        let changed = v.active_backup != h.active;
                        v.active_backup = h.active;
                        changed
                    };
                    if changed {
                        shared.send(Msg::Sm(Event::ActiveNotice { active: h.active }));
                    }
                    acker.heartbeat()?;
                }
                Message::Handoff(h) => {
                    tracing::warn!(epoch = h.epoch, "the primary hands over to us");
                    shared.send(Msg::Sm(Event::Handoff { epoch: h.epoch }));
                }
                Message::History(_) => {}
                Message::Diverged(d) => return Ok(Some(d)),
                Message::SeedNeeded(n) => {
                    tracing::error!(reason = %n.reason, "this member needs a fresh copy: restart it with `redoubt member --reseed`");
                    *shared.needs_seed.lock() = Some(n.reason.clone());
                    return Err(format!("the primary cannot stream to us: {}", n.reason));
                }
                other => return Err(format!("unexpected {} from the primary", other.name())),
            }
        }
        Ok(None)
    })();
    let acked = acker.stop();
    drop(apply_tx);
    let _ = applier.join();
    if let (Ok(None), Err(e)) = (&result, acked) {
        return Err(e);
    }
    match result? {
        None => Ok(()),
        Some(d) => {
            // Our tail was never the mirror's: undo it, then stream again.
            tracing::warn!(common = d.common, reason = %d.reason, "journal diverged from the primary's; rewinding");
            engine
                .rewind_to(Lsn(d.common))
                .map_err(|e| format!("rewind to {}: {e}", d.common))
        }
    }
}

/// Makes what the stream delivered durable and acknowledges it, on its own
/// thread: while one fsync runs, the stream goes on receiving, and the
/// next fsync covers every chunk that arrived meanwhile (group commit on
/// the backup's side, so a busy primary's batches do not queue up behind
/// one fsync each). Also answers the primary's heartbeats.
struct Acker {
    state: Arc<(parking_lot::Mutex<AckState>, parking_lot::Condvar)>,
    handle: JoinHandle<Result<(), String>>,
}

struct AckState {
    received: Lsn,
    heartbeat: bool,
    stop: bool,
}

impl Acker {
    fn start(shared: &Arc<Shared>, s: &TcpStream, from: Lsn) -> Result<Acker, String> {
        let mut w = s.try_clone().map_err(|e| e.to_string())?;
        let state = Arc::new((
            parking_lot::Mutex::new(AckState {
                received: from,
                heartbeat: false,
                stop: false,
            }),
            parking_lot::Condvar::new(),
        ));
        let handle = {
            let (shared, state) = (shared.clone(), state.clone());
            std::thread::Builder::new()
                .name("redoubt-ack".into())
                .spawn(move || {
                    let (m, cv) = &*state;
                    let mut acked = from;
                    loop {
                        let received = {
                            let mut st = m.lock();
                            while !st.stop && st.received <= acked && !st.heartbeat {
                                cv.wait(&mut st);
                            }
                            if st.stop {
                                return Ok(());
                            }
                            st.heartbeat = false;
                            st.received
                        };
                        if received > acked {
                            shared
                                .engine
                                .journal()
                                .wait_durable(received)
                                .map_err(|e| e.to_string())?;
                            acked = received;
                        }
                        ack(&mut w, &shared, received)?;
                    }
                })
                .map_err(|e| e.to_string())?
        };
        Ok(Acker { state, handle })
    }

    /// The stream appended up to `end` (not yet durable).
    fn received(&self, end: Lsn) {
        let (m, cv) = &*self.state;
        m.lock().received = end;
        cv.notify_one();
    }

    /// A heartbeat arrived: acknowledge (even if nothing is new). Fails if
    /// the acker stopped (its socket broke).
    fn heartbeat(&self) -> Result<(), String> {
        if self.handle.is_finished() {
            return Err("acknowledging to the primary failed".into());
        }
        let (m, cv) = &*self.state;
        m.lock().heartbeat = true;
        cv.notify_one();
        Ok(())
    }

    fn stop(self) -> Result<(), String> {
        let (m, cv) = &*self.state;
        m.lock().stop = true;
        cv.notify_one();
        self.handle
            .join()
            .unwrap_or_else(|_| Err("the ack thread panicked".into()))
    }
}

/// Acknowledges what this stream delivered and is durable here (never
/// more: a position past `received` would not be the primary's bytes).
fn ack(s: &mut TcpStream, shared: &Shared, received: Lsn) -> Result<(), String> {
    let j = shared.engine.journal();
    let durable = j.durable_lsn().0.min(received.0);
    wire::send(
        s,
        &Message::Ack(Ack {
            received: received.0,
            durable,
            applied: shared.engine.applied_lsn().0.min(durable),
        }),
    )
    .map_err(|e| e.to_string())
}

/// Logs catch-up progress while a follower is far behind (a new member
/// streaming the whole journal, or one back from a long outage): every two
/// seconds, how much is done, how fast, and how long it may take.
struct CatchUp {
    start: u64,
    t0: std::time::Instant,
    last: std::time::Instant,
}

impl CatchUp {
    const FAR: u64 = 8 << 20;

    fn new(start: u64) -> CatchUp {
        let now = std::time::Instant::now();
        CatchUp {
            start,
            t0: now,
            last: now,
        }
    }

    fn report(&mut self, at: u64, target: u64) {
        if target <= at || target - at < Self::FAR || self.last.elapsed() < Duration::from_secs(2) {
            return;
        }
        self.last = std::time::Instant::now();
        let done = at.saturating_sub(self.start);
        let rate = done as f64 / self.t0.elapsed().as_secs_f64().max(1e-3);
        let left = (target - at) as f64;
        tracing::info!(
            received_mib = at >> 20,
            primary_mib = target >> 20,
            percent = format!("{:.1}", 100.0 * at as f64 / target as f64),
            mib_per_s = format!("{:.1}", rate / (1 << 20) as f64),
            eta_s = format!(
                "{:.0}",
                if rate > 0.0 {
                    left / rate
                } else {
                    f64::INFINITY
                }
            ),
            "catching up with the primary"
        );
    }
}
