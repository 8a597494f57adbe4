//! The member runtime: threads around one engine.
//!
//! ```text
//!  listener ──> one thread per connection: client session | follower stream
//!               (we are primary) | peer link (accepted side) | status
//!  driver   ──  owns the failover state machine; every other thread
//!               sends it events; it executes the commands
//!  follower ──  (backup/async) streams the primary's journal, makes it
//!               durable, acknowledges; an apply thread dejournals
//!  arbiter  ──  pings the arbiter, carries CAS requests
//!  peer     ──  heartbeats with the other failover member (the member
//!               with the smaller name connects)
//! ```

use std::collections::BTreeMap;
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::config::{MemberConfig, MemberKind};
use super::failover::{Command, Config as FailoverConfig, Event, Failover, Role, Witness};
use super::status::{FollowerStatus, MemberStatus};
use super::{epoch_file, link_arbiter, link_peer, receiver, seed, serve};
use crate::db::{Engine, EngineOptions};
use crate::journal::JournalOptions;
use crate::wire::MemberRole;
use crate::Lsn;

/// Messages to the driver.
pub(crate) enum Msg {
    Sm(Event),
    /// A follower's stream from us ended; `armed` is the synchronous
    /// commit generation it turned on, if it did.
    StreamEnded {
        follower: String,
        armed: Option<u64>,
    },
    /// The backup acknowledged everything written before its stream turned
    /// synchronous commits on (generation `gen`).
    CaughtUp {
        gen: u64,
    },
    Shutdown {
        graceful: bool,
    },
    /// An operator's `failover --to` this member.
    OperatorFailover {
        reply: Sender<Result<String, String>>,
    },
    /// An operator's `switchover` (to this primary).
    Switchover {
        reply: Sender<Result<String, String>>,
    },
}

#[derive(Debug, Clone)]
pub(crate) struct FollowerView {
    pub durable: u64,
    pub applied: u64,
    pub last_ack: Instant,
}

#[derive(Debug, Clone)]
pub(crate) struct Upstream {
    pub primary_end: u64,
    pub primary_time_us: u64,
}

#[derive(Debug, Clone)]
pub(crate) struct View {
    pub role: MemberRole,
    pub epoch: u64,
    pub primary: Option<String>,
    pub witness: Option<Witness>,
    pub arbiter_up: bool,
    /// (primary) the backup is active: say so in heartbeats.
    pub backup_active: bool,
    /// (backup) the primary says we are its active backup.
    pub active_backup: bool,
    pub followers: BTreeMap<String, FollowerView>,
    pub upstream: Option<Upstream>,
    /// (primary) hand over to the backup at this epoch.
    pub handoff: Option<u64>,
    pub handoff_sent: bool,
}

impl View {
    /// A member in `role` at `epoch` that knows nothing else yet.
    pub fn new(role: MemberRole, epoch: u64) -> View {
        View {
            role,
            epoch,
            primary: None,
            witness: None,
            arbiter_up: false,
            backup_active: false,
            active_backup: false,
            followers: BTreeMap::new(),
            upstream: None,
            handoff: None,
            handoff_sent: false,
        }
    }
}

pub(crate) struct Shared {
    pub cfg: MemberConfig,
    pub engine: Engine,
    pub tx: Mutex<Sender<Msg>>,
    pub view: Mutex<View>,
    pub stop: AtomicBool,
    /// Why the primary cannot stream to this member (it needs a seed:
    /// `--reseed`), while that lasts.
    pub needs_seed: Mutex<Option<String>>,
    pub commits: AtomicU64,
    pub arbiter_tx: Mutex<Option<Sender<link_arbiter::ArbiterCmd>>>,
    /// The origin of the state machine's clock (milliseconds since).
    pub started: Instant,
    /// Numbers peer links, so an old link that dies late does not report
    /// the peer lost while a newer link is up.
    pub peer_gen: AtomicU64,
}

impl Shared {
    pub fn new(cfg: MemberConfig, engine: Engine, view: View, tx: Sender<Msg>) -> Shared {
        Shared {
            view: Mutex::new(view),
            cfg,
            engine,
            tx: Mutex::new(tx),
            stop: AtomicBool::new(false),
            needs_seed: Mutex::new(None),
            commits: AtomicU64::new(0),
            arbiter_tx: Mutex::new(None),
            started: Instant::now(),
            peer_gen: AtomicU64::new(0),
        }
    }

    pub fn send(&self, msg: Msg) {
        let _ = self.tx.lock().send(msg);
    }

    pub fn qos(&self) -> Duration {
        self.cfg.qos
    }

    /// The client address of a member.
    pub fn addr_of(&self, name: &str) -> Option<String> {
        self.cfg.member(name).map(|m| m.addr.clone())
    }

    pub fn primary_addr(&self) -> Option<String> {
        let primary = self.view.lock().primary.clone()?;
        self.addr_of(&primary)
    }

    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    pub fn status(&self) -> MemberStatus {
        let v = self.view.lock().clone();
        let j = self.engine.journal();
        let end = j.end_lsn().0;
        let now_us = crate::db::now_us();
        MemberStatus {
            mirror: self.cfg.mirror.clone(),
            member: self.cfg.name.clone(),
            addr: self.cfg.me().addr.clone(),
            admin: self.cfg.admin.clone(),
            kind: match self.cfg.me().kind {
                MemberKind::Failover => "failover".into(),
                MemberKind::Async => "async".into(),
            },
            role: v.role.to_string(),
            epoch: v.epoch,
            primary: v.primary.clone(),
            journal_end: end,
            journal_durable: j.durable_lsn().0,
            journal_start: j.oldest_lsn().0,
            journal_syncs: j.syncs(),
            pool: self.engine.pool_stats(),
            // A primary applies as it writes; a follower as far as its applier got.
            applied: match self.engine.access() {
                crate::db::Access::Primary { .. } => j.durable_lsn().0,
                crate::db::Access::ReadOnly { .. } => self.engine.applied_lsn().0,
            },
            primary_end: v.upstream.as_ref().map(|u| u.primary_end),
            receive_lag_bytes: v
                .upstream
                .as_ref()
                .map(|u| u.primary_end.saturating_sub(end)),
            receive_lag_secs: v.upstream.as_ref().map(|u| {
                if u.primary_end <= end {
                    0.0
                } else {
                    now_us.saturating_sub(u.primary_time_us) as f64 / 1e6
                }
            }),
            sync: self.engine.is_sync(),
            active_backup: v.active_backup,
            paused: self.engine.paused(),
            arbiter: self.cfg.arbiter.clone(),
            arbiter_connected: v.arbiter_up,
            witness: v.witness.as_ref().map(|w| {
                format!(
                    "epoch {} primary {} ({})",
                    w.epoch,
                    w.primary,
                    if w.backup_active {
                        "backup active"
                    } else {
                        "no active backup"
                    }
                )
            }),
            followers: v
                .followers
                .iter()
                .map(|(name, f)| FollowerStatus {
                    name: name.clone(),
                    durable: f.durable,
                    applied: f.applied,
                    lag_bytes: end.saturating_sub(f.durable),
                    last_ack_secs: f.last_ack.elapsed().as_secs_f64(),
                })
                .collect(),
            commits: self.commits.load(Ordering::Relaxed),
            poisoned: self.engine.poisoned(),
            needs_seed: self.needs_seed.lock().clone(),
            epochs: self
                .engine
                .epoch_history()
                .into_iter()
                .map(|(e, l)| (e, l.0))
                .collect(),
            members: self
                .cfg
                .members
                .iter()
                .map(|m| {
                    let kind = match m.kind {
                        MemberKind::Failover => "failover",
                        MemberKind::Async => "async",
                    };
                    (m.name.clone(), m.addr.clone(), kind.to_string())
                })
                .collect(),
        }
    }
}

/// A running member.
pub struct Member {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
    listen_addr: std::net::SocketAddr,
}

#[derive(Debug, thiserror::Error)]
pub enum MemberError {
    #[error("bad configuration: {0}")]
    Config(String),
    #[error("open the data directory {path}: {source}")]
    Engine {
        path: String,
        #[source]
        source: crate::EngineError,
    },
    #[error("seeding from the primary failed: {0} (the member seeds again at its next start)")]
    Seed(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

/// A member with an empty data folder (new, or it lost its disk) first
/// takes a copy from the primary, if one answers; a seed a crash
/// interrupted is thrown away and taken again.
fn seed_if_empty(cfg: &MemberConfig) -> Result<(), MemberError> {
    let fs = crate::storage::os::OsFs;
    let engine_err = |source| MemberError::Engine {
        path: cfg.data_dir.display().to_string(),
        source,
    };
    if crate::db::interrupted_seed(&fs, &cfg.data_dir) {
        tracing::warn!("discarding a seed that never finished");
        crate::db::discard_interrupted_seed(&fs, &cfg.data_dir).map_err(engine_err)?;
    }
    if crate::db::holds_store(&fs, &cfg.data_dir).map_err(engine_err)? {
        return Ok(());
    }
    match seed::fetch(cfg) {
        Ok(seed::Fetched::NoPrimary) => {
            tracing::info!("no data and no primary answered: starting empty");
            Ok(())
        }
        Ok(seed::Fetched::Seeded { primary, end }) => {
            tracing::info!(%primary, %end, "seeded; streaming from the copy's end");
            Ok(())
        }
        Err(e) => Err(MemberError::Seed(e)),
    }
}

impl Member {
    pub fn start(cfg: MemberConfig) -> Result<Member, MemberError> {
        cfg.validate().map_err(MemberError::Config)?;
        let io = |context: String| move |source| MemberError::Io { context, source };
        std::fs::create_dir_all(&cfg.data_dir)
            .map_err(io(format!("create {}", cfg.data_dir.display())))?;
        seed_if_empty(&cfg)?;
        let opts = EngineOptions {
            cache_pages: cfg.cache_pages,
            journal_keep_bytes: cfg.journal_keep_bytes,
            mirrored: true,
            journal: JournalOptions {
                write_ahead_bytes: cfg.journal_write_ahead_bytes,
                ..JournalOptions::default()
            },
            ..EngineOptions::default()
        };
        let (engine, report) =
            Engine::open(&cfg.data_dir, opts).map_err(|source| MemberError::Engine {
                path: cfg.data_dir.display().to_string(),
                source,
            })?;
        if !report.open_transactions.is_empty() {
            tracing::info!(txns = ?report.open_transactions, "transactions left open for the primary to finish");
        }
        let epoch = epoch_file::read(&cfg.data_dir).map_err(io("read the epoch file".into()))?;
        let listener =
            TcpListener::bind(&cfg.listen).map_err(io(format!("listen on {}", cfg.listen)))?;
        let listen_addr = listener
            .local_addr()
            .map_err(io("listener address".into()))?;
        let (tx, rx) = mpsc::channel();
        let is_failover = cfg.me().kind == MemberKind::Failover;
        let role = if is_failover {
            MemberRole::Starting
        } else {
            MemberRole::Async
        };
        let shared = Arc::new(Shared::new(cfg, engine, View::new(role, epoch), tx));
        let span =
            tracing::info_span!("member", mirror = %shared.cfg.mirror, member = %shared.cfg.name);
        let mut threads = Vec::new();
        let spawn = |name: &str, f: Box<dyn FnOnce() + Send>| {
            let span = span.clone();
            std::thread::Builder::new()
                .name(name.to_string())
                .spawn(move || span.in_scope(f))
                .expect("spawn member thread")
        };
        {
            let s = shared.clone();
            threads.push(spawn(
                "redoubt-listen",
                Box::new(move || serve::accept_loop(s, listener)),
            ));
        }
        if let Some(addr) = shared.cfg.arbiter.clone() {
            let (atx, arx) = mpsc::channel();
            *shared.arbiter_tx.lock() = Some(atx);
            let s = shared.clone();
            threads.push(spawn(
                "redoubt-arbiter",
                Box::new(move || link_arbiter::run(s, addr, arx)),
            ));
        }
        if let Some(peer) = shared.cfg.failover_peer().cloned() {
            if shared.cfg.name < peer.name {
                let s = shared.clone();
                threads.push(spawn(
                    "redoubt-peer",
                    Box::new(move || link_peer::connect_loop(s, peer)),
                ));
            }
        }
        let last = (epoch, shared.engine.journal().end_lsn().0);
        let sm = is_failover.then(|| {
            Failover::new(
                FailoverConfig {
                    me: shared.cfg.name.clone(),
                    peer: shared.cfg.failover_peer().map(|p| p.name.clone()),
                    has_arbiter: shared.cfg.arbiter.is_some(),
                    qos: shared.cfg.qos,
                },
                epoch,
                last,
            )
        });
        {
            let s = shared.clone();
            threads.push(spawn("redoubt-driver", Box::new(move || driver(s, rx, sm))));
        }
        tracing::info!(addr = %listen_addr, epoch, "member started");
        Ok(Member {
            shared,
            threads,
            listen_addr,
        })
    }

    pub fn local_addr(&self) -> std::net::SocketAddr {
        self.listen_addr
    }

    pub fn status(&self) -> MemberStatus {
        self.shared.status()
    }

    /// A function that reads this member's status, for other threads (the
    /// admin API); it keeps working, reporting a stopped member, after
    /// `shutdown`.
    pub fn status_source(&self) -> Arc<dyn Fn() -> MemberStatus + Send + Sync> {
        let shared = self.shared.clone();
        Arc::new(move || shared.status())
    }

    pub fn engine(&self) -> &Engine {
        &self.shared.engine
    }

    /// A handle for other threads (the admin API) to ask for actions.
    pub fn actions(&self) -> Actions {
        Actions {
            shared: self.shared.clone(),
        }
    }

    /// Stops the member. A graceful stop of a primary with an active backup
    /// hands over to it first (planned failover).
    pub fn shutdown(mut self, graceful: bool) {
        self.shared.send(Msg::Shutdown { graceful });
        let deadline = Instant::now() + 2 * self.shared.qos() + Duration::from_secs(1);
        while !self.shared.stopping() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake the listener.
        let _ = TcpStream::connect_timeout(&self.listen_addr, Duration::from_millis(200));
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        tracing::info!("member stopped");
    }

    /// Whether the member has stopped by itself (after a handoff).
    pub fn stopped(&self) -> bool {
        self.shared.stopping()
    }
}

/// Operator actions, usable from other threads.
#[derive(Clone)]
pub struct Actions {
    shared: Arc<Shared>,
}

impl Actions {
    pub fn failover(&self) -> Result<String, String> {
        let (tx, rx) = mpsc::channel();
        self.shared.send(Msg::OperatorFailover { reply: tx });
        rx.recv_timeout(Duration::from_secs(5))
            .map_err(|_| "no answer from the member".to_string())?
    }

    pub fn switchover(&self) -> Result<String, String> {
        let (tx, rx) = mpsc::channel();
        self.shared.send(Msg::Switchover { reply: tx });
        rx.recv_timeout(self.shared.qos() + Duration::from_secs(5))
            .map_err(|_| "no answer from the member".to_string())?
    }
}

/// Whether an operator failover to this member may start, and what it
/// means for data.
fn check_failover(shared: &Shared, sm: Option<&Failover>) -> Result<String, String> {
    let Some(f) = sm else {
        return Err(format!(
            "{} is an async member; promote it instead (a later release)",
            shared.cfg.name
        ));
    };
    if f.role() == &Role::Primary {
        return Err(format!("{} is already the primary", shared.cfg.name));
    }
    if f.peer_is_primary() {
        return Err(
            "the primary is alive and connected to this member; use `redoubt switchover`".into(),
        );
    }
    let peer_primary = shared.view.lock().primary.clone();
    if shared.cfg.arbiter.is_none() && f.is_active_backup() {
        return Ok("taking over as primary (no arbiter: you asserted the primary is down)".into());
    }
    if f.is_active_backup() {
        Ok(
            "taking over: this member was the active backup, so it has every acknowledged write"
                .into(),
        )
    } else {
        Ok(format!(
            "taking over although this member was NOT the active backup: writes the old primary ({}) acknowledged after this member fell behind are lost",
            peer_primary.unwrap_or_else(|| "unknown".into())
        ))
    }
}

/// The driver: owns the failover state machine (failover members) or
/// finds the primary to follow (async members).
fn driver(shared: Arc<Shared>, rx: Receiver<Msg>, mut sm: Option<Failover>) {
    let t0 = shared.started;
    let mut following: Option<receiver::Following> = None;
    let mut next_probe = Instant::now();
    let mut shutdown_at: Option<Instant> = None;
    loop {
        let msg = rx.recv_timeout(Duration::from_millis(20));
        let now_ms = t0.elapsed().as_millis() as u64;
        let mut events = Vec::new();
        match msg {
            Ok(Msg::Sm(e)) => events.push(e),
            Ok(Msg::StreamEnded { follower, armed }) => {
                let peer = shared.cfg.failover_peer().map(|p| p.name.clone());
                if let (true, Some(gen)) = (Some(follower) == peer, armed) {
                    if !sm.as_ref().is_some_and(|f| f.is_sync()) {
                        // A backup that was still catching up: stop waiting
                        // for it (unless a newer stream turned sync on).
                        shared.engine.disarm_sync(gen);
                    }
                }
            }
            Ok(Msg::CaughtUp { gen }) => {
                if shared.engine.sync_gen() == gen {
                    events.push(Event::BackupCaughtUp);
                }
            }
            Ok(Msg::OperatorFailover { reply }) => {
                let answer = check_failover(&shared, sm.as_ref());
                if answer.is_ok() {
                    events.push(Event::OperatorFailover);
                }
                let _ = reply.send(answer);
            }
            Ok(Msg::Switchover { reply }) => {
                let answer = match sm.as_ref() {
                    Some(f) if f.role() == &Role::Primary && f.is_sync() => {
                        shared.engine.pause_commits(super::failover::SWITCHOVER);
                        if wait_backup_has_all(&shared) {
                            let cmds = f_handle(sm.as_mut().expect("checked"), Event::Switchover);
                            let started = cmds.iter().any(|c| matches!(c, Command::Cas { .. } | Command::SendHandoff { .. }));
                            for c in cmds {
                                execute(&shared, sm.as_ref().expect("checked"), c, &mut following);
                            }
                            if started {
                                Ok(format!(
                                    "handing over to {}",
                                    shared.cfg.failover_peer().map_or("the backup", |p| p.name.as_str())
                                ))
                            } else {
                                Err("the arbiter is unreachable or busy; nothing changed".into())
                            }
                        } else {
                            shared.engine.resume_commits();
                            Err("the backup did not acknowledge everything within the QoS timeout; nothing changed".into())
                        }
                    }
                    Some(f) if f.role() == &Role::Primary => Err(
                        "the backup is not active (not connected or still catching up): a switchover now could lose writes; nothing changed"
                            .into(),
                    ),
                    _ => Err(format!(
                        "{} is not the primary; ask the primary ({})",
                        shared.cfg.name,
                        shared.view.lock().primary.clone().unwrap_or_else(|| "unknown".into())
                    )),
                };
                let _ = reply.send(answer);
            }
            Ok(Msg::Shutdown { graceful }) => {
                let primary_synced = sm
                    .as_ref()
                    .is_some_and(|f| f.role() == &Role::Primary && f.is_sync());
                if graceful && primary_synced {
                    shared
                        .engine
                        .pause_commits("stopping: handing over to the backup");
                    let has_all = wait_backup_has_all(&shared);
                    events.push(Event::Shutdown {
                        backup_has_all: has_all,
                    });
                    shutdown_at = Some(Instant::now() + shared.qos());
                } else {
                    shared.stop.store(true, Ordering::SeqCst);
                }
            }
            Err(RecvTimeoutError::Timeout) => events.push(Event::Tick { now_ms }),
            Err(RecvTimeoutError::Disconnected) => return,
        }
        if shutdown_at.is_some_and(|t| Instant::now() > t) {
            shared.stop.store(true, Ordering::SeqCst);
        }
        if shared.stopping() {
            if let Some(f) = following.take() {
                f.stop();
            }
            return;
        }
        match sm.as_mut() {
            Some(f) => {
                for e in events {
                    for c in f.handle(e) {
                        execute(&shared, f, c, &mut following);
                    }
                }
                // A backup whose stream died keeps trying its primary.
                if let (Role::Backup { primary }, None) = (f.role().clone(), following.as_ref()) {
                    following = Some(receiver::follow(shared.clone(), primary));
                }
                let mut v = shared.view.lock();
                v.epoch = v.epoch.max(f.epoch());
                v.role = match f.role() {
                    Role::Primary if f.paused().is_some_and(|p| p.starts_with("isolated")) => {
                        MemberRole::Trouble
                    }
                    Role::Primary => MemberRole::Primary,
                    Role::Backup { .. } => MemberRole::Backup,
                    Role::Starting | Role::Stopped => MemberRole::Starting,
                };
            }
            None => {
                // Async: follow whichever failover member is primary.
                if following.as_ref().is_some_and(|f| f.finished()) {
                    following = None;
                }
                if following.is_none() && Instant::now() >= next_probe {
                    next_probe = Instant::now() + Duration::from_millis(200);
                    if let Some(primary) = receiver::find_primary(&shared) {
                        shared.engine.set_read_only(shared.addr_of(&primary));
                        shared.view.lock().primary = Some(primary.clone());
                        following = Some(receiver::follow(shared.clone(), primary));
                    }
                }
            }
        }
    }
}

/// Raises the persisted epoch to `epoch` if lower; false if it could not.
fn persist_intent(shared: &Shared, epoch: u64) -> bool {
    let current = epoch_file::read(&shared.cfg.data_dir).unwrap_or(0);
    if current >= epoch {
        return true;
    }
    match epoch_file::write(&shared.cfg.data_dir, epoch) {
        Ok(()) => true,
        Err(e) => {
            tracing::error!(error = %e, "cannot persist the epoch; not asking the arbiter");
            false
        }
    }
}

fn f_handle(f: &mut Failover, e: Event) -> Vec<Command> {
    f.handle(e)
}

/// Waits (up to the QoS) until the backup has everything we wrote.
fn wait_backup_has_all(shared: &Shared) -> bool {
    let deadline = Instant::now() + shared.qos();
    loop {
        let end = shared.engine.journal().end_lsn();
        if shared.engine.journal().durable_lsn() >= end && shared.engine.backup_acked_lsn() >= end {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn execute(
    shared: &Arc<Shared>,
    sm: &Failover,
    cmd: Command,
    following: &mut Option<receiver::Following>,
) {
    tracing::debug!(?cmd, "failover command");
    let engine = &shared.engine;
    match cmd {
        Command::BecomePrimary { epoch } => {
            if let Some(f) = following.take() {
                f.stop();
            }
            if let Err(e) = epoch_file::write(&shared.cfg.data_dir, epoch) {
                tracing::error!(error = %e, "cannot persist the epoch; not becoming primary");
                shared.stop.store(true, Ordering::SeqCst);
                return;
            }
            match engine.become_primary(epoch) {
                Ok(rolled_back) => {
                    for db in &shared.cfg.databases {
                        if !engine.database_names().contains(db) {
                            if let Err(e) = engine.create_database(db) {
                                tracing::error!(db, error = %e, "create database");
                            }
                        }
                    }
                    engine.reset_backup_acked(Lsn::ZERO);
                    let mut v = shared.view.lock();
                    v.primary = Some(shared.cfg.name.clone());
                    v.epoch = epoch;
                    v.upstream = None;
                    v.active_backup = false;
                    v.backup_active = false;
                    tracing::warn!(epoch, rolled_back = rolled_back.len(), "became primary");
                }
                Err(e) => {
                    tracing::error!(error = %e, "becoming primary failed; stopping");
                    shared.stop.store(true, Ordering::SeqCst);
                }
            }
        }
        Command::BecomeBackup { primary } => {
            if following.as_ref().is_some_and(|f| f.primary != primary) {
                following.take().expect("checked").stop();
            }
            persist_intent(shared, sm.epoch());
            engine.set_read_only(shared.addr_of(&primary));
            {
                let mut v = shared.view.lock();
                v.primary = Some(primary.clone());
                v.followers.clear();
            }
            if following.is_none() {
                *following = Some(receiver::follow(shared.clone(), primary.clone()));
            }
            tracing::info!(primary, "following as backup");
        }
        Command::BecomeStarting => {
            if let Some(f) = following.take() {
                f.stop();
            }
            engine.set_read_only(None);
            {
                let mut v = shared.view.lock();
                v.primary = None;
                v.handoff = None;
                v.handoff_sent = false;
            }
            tracing::warn!(
                "fenced or without a primary: read-only until the mirror's state is known"
            );
        }
        Command::SetSync(on) => engine.set_sync(on),
        Command::PauseCommits(why) => {
            tracing::warn!(why, "commits paused");
            engine.pause_commits(why);
        }
        Command::ResumeCommits => {
            tracing::info!("commits resumed");
            engine.resume_commits();
        }
        Command::Cas {
            expect,
            new,
            require_lost,
        } => {
            // Remember the epoch we are about to hold before the arbiter
            // can grant it: a crash right after the grant must not leave a
            // member the witness names that thinks it never led (it would
            // refuse to lead, as one that lost its data must).
            if new.primary == shared.cfg.name && !persist_intent(shared, new.epoch) {
                shared.send(Msg::Sm(Event::ArbiterLost));
                return;
            }
            link_arbiter::request(
                shared,
                link_arbiter::ArbiterCmd::Cas {
                    expect,
                    new,
                    require_lost,
                },
            )
        }
        Command::Register(w) => {
            if w.primary == shared.cfg.name && !persist_intent(shared, w.epoch) {
                shared.send(Msg::Sm(Event::ArbiterLost));
                return;
            }
            link_arbiter::request(shared, link_arbiter::ArbiterCmd::Register(w))
        }
        Command::MarkBackupActive(on) => shared.view.lock().backup_active = on,
        Command::SendHandoff { epoch } => {
            shared.view.lock().handoff = Some(epoch);
            let deadline = Instant::now() + shared.qos();
            while !shared.view.lock().handoff_sent && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(2));
            }
            engine.set_read_only(shared.cfg.failover_peer().map(|p| p.addr.clone()));
        }
        Command::Exit => shared.stop.store(true, Ordering::SeqCst),
    }
}
