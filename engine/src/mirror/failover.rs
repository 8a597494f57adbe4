//! The failover logic of one failover member as a pure state machine:
//! events in, commands out. No sockets, no clocks (time arrives in
//! [`Event::Tick`]), so every rule is unit-tested on its exact commands.
//!
//! ## The rules (DESIGN.md §3.2)
//!
//! The arbiter is a witness register holding `(epoch, primary,
//! backup_active)`, changed only by compare-and-set. Becoming primary
//! always goes through a successful arbiter write first (when an arbiter
//! is configured), so two members can never both hold an epoch.
//!
//! | situation | arbiter reachable | what this member does |
//! |---|---|---|
//! | starting; witness names me | yes | CAS to epoch+1 naming me, then primary |
//! | starting; witness names the peer | yes | backup of the peer |
//! | starting; arbiter has no state | yes | primary if the peer agrees (peer down: first start only, by `Register`) |
//! | starting, no arbiter configured | – | primary only if the peer is connected and behind (or primary: then backup) |
//! | backup lost the primary, was active | yes | CAS epoch+1 naming me, `require_lost = primary`; retry while the arbiter still sees the primary |
//! | backup lost the primary, not active | – | stay backup (cannot prove it has every commit) |
//! | backup lost the primary, no arbiter configured | – | stay backup (only a handoff or an operator promotes it) |
//! | primary lost the active backup | yes | pause commits, CAS `backup_active = false`, resume alone |
//! | primary lost the active backup | no (configured) | trouble: no commits until the backup or the arbiter returns |
//! | primary lost the active backup, no arbiter configured | – | pause; go on alone after 2 x QoS |
//! | primary alone (no active backup) | lease expired | pause commits until the arbiter confirms again |
//! | any CAS or witness shows a newer epoch | – | fenced: stop committing, start over as a starting member |
//!
//! Exactly one of "backup takes over" (expects `backup_active = true`,
//! requires the primary absent) and "primary goes on alone" (expects
//! `backup_active = true`) can succeed: both expect the same state and the
//! first one changes it.

use std::time::Duration;

/// The pause reason while a switchover hands over.
pub const SWITCHOVER: &str = "switchover: handing over to the backup";

/// The arbiter's register for one mirror.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Witness {
    pub epoch: u64,
    pub primary: String,
    pub backup_active: bool,
}

/// A member's place in the mirror as far as this state machine knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// Does not know who is primary yet; serves no writes.
    Starting,
    Primary,
    Backup {
        primary: String,
    },
    /// Shut down after a handoff or on request.
    Stopped,
}

/// What the peer said about itself in its handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    pub epoch: u64,
    pub is_primary: bool,
    /// (epoch, journal end) of the peer's history.
    pub last: (u64, u64),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The connection to the other failover member is up.
    PeerConnected(PeerInfo),
    /// The other failover member's connection closed, or it was silent for
    /// the QoS timeout.
    PeerLost,
    /// (primary) the backup has acknowledged everything up to our end.
    BackupCaughtUp,
    /// (primary) the backup fell too far behind to wait for.
    BackupFellBehind,
    /// (backup) the primary says whether we are its active backup.
    ActiveNotice {
        active: bool,
    },
    /// The arbiter's register, from a ping sent at `sent_ms` (None: the
    /// arbiter has no state for this mirror).
    Arbiter {
        state: Option<Witness>,
        sent_ms: u64,
    },
    ArbiterLost,
    /// The answer to our last `Cas` or `Register`.
    CasDone {
        ok: bool,
        state: Option<Witness>,
    },
    Tick {
        now_ms: u64,
    },
    /// (backup) the old primary handed over: we are primary at `epoch`.
    Handoff {
        epoch: u64,
    },
    /// (primary) graceful stop; `backup_has_all`: the backup acknowledged
    /// everything we wrote, and commits are paused.
    Shutdown {
        backup_has_all: bool,
    },
    /// An operator asks this member to become primary (`redoubt failover`).
    OperatorFailover,
    /// (primary) planned switchover: hand over to the synced backup and
    /// follow it; commits are paused and the backup has everything.
    Switchover,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Take writes at `epoch` (journal an epoch mark first).
    BecomePrimary {
        epoch: u64,
    },
    /// Follow `primary`'s journal; refuse writes.
    BecomeBackup {
        primary: String,
    },
    /// Forget the current role (fenced, or the primary is unknown).
    BecomeStarting,
    /// Commits wait for the backup's acknowledgement (true) or not.
    SetSync(bool),
    PauseCommits(&'static str),
    ResumeCommits,
    Cas {
        expect: Witness,
        new: Witness,
        require_lost: Option<String>,
    },
    Register(Witness),
    /// Tell the backup whether it is active (in heartbeats).
    MarkBackupActive(bool),
    SendHandoff {
        epoch: u64,
    },
    Exit,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub me: String,
    /// The other failover member, if the mirror has two.
    pub peer: Option<String>,
    pub has_arbiter: bool,
    pub qos: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pending {
    None,
    /// Waiting for a CAS answer; what to do on success.
    Cas(OnSuccess),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OnSuccess {
    BecomePrimary(u64),
    GoAlone,
    BackupActive,
    Handoff(u64),
    /// Hand over and stay on as backup (switchover).
    HandoffAndFollow(u64),
    Reregistered,
}

pub struct Failover {
    cfg: Config,
    role: Role,
    /// The newest epoch this member knows of.
    epoch: u64,
    /// The newest epoch this member's own data records (persisted): a
    /// member that lost its data has less than the arbiter's.
    data_epoch: u64,
    warned_lost_data: bool,
    /// Last journal position (epoch, end) of our own history.
    last: (u64, u64),
    witness: Option<Witness>,
    arbiter_up: bool,
    peer: Option<PeerInfo>,
    /// (primary) commits wait for the backup.
    sync: bool,
    /// (backup) the primary told us we are active.
    active: bool,
    paused: Option<&'static str>,
    pending: Pending,
    /// (primary alone) commits allowed until this time without new
    /// arbiter contact.
    lease_until: u64,
    /// (no arbiter) go on alone at this time.
    alone_at: Option<u64>,
    /// (backup) retry the takeover CAS at this time.
    retry_at: Option<u64>,
    now: u64,
}

impl Failover {
    /// A member that just started, with its persisted epoch and the
    /// (epoch, end) of its journal.
    pub fn new(cfg: Config, epoch: u64, last: (u64, u64)) -> Failover {
        Failover {
            cfg,
            role: Role::Starting,
            epoch,
            data_epoch: epoch,
            warned_lost_data: false,
            last,
            witness: None,
            arbiter_up: false,
            peer: None,
            sync: false,
            active: false,
            paused: None,
            pending: Pending::None,
            lease_until: 0,
            alone_at: None,
            retry_at: None,
            now: 0,
        }
    }

    pub fn role(&self) -> &Role {
        &self.role
    }

    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    pub fn is_sync(&self) -> bool {
        self.sync
    }

    pub fn paused(&self) -> Option<&'static str> {
        self.paused
    }

    /// Whether the other failover member is connected and says it is primary.
    pub fn peer_is_primary(&self) -> bool {
        self.peer.as_ref().is_some_and(|p| p.is_primary)
    }

    pub fn is_active_backup(&self) -> bool {
        self.active && matches!(self.role, Role::Backup { .. })
    }

    /// Our journal grew (the runtime reports it so a restart compares right).
    pub fn set_last(&mut self, last: (u64, u64)) {
        self.last = last;
    }

    fn qos_ms(&self) -> u64 {
        self.cfg.qos.as_millis() as u64
    }

    pub fn handle(&mut self, event: Event) -> Vec<Command> {
        let mut out = Vec::new();
        match event {
            Event::Tick { now_ms } => {
                self.now = now_ms;
                self.on_tick(&mut out);
            }
            Event::Arbiter { state, sent_ms } => {
                self.arbiter_up = true;
                self.on_witness(state, sent_ms, &mut out);
            }
            Event::ArbiterLost => {
                self.arbiter_up = false;
                if self.pending != Pending::None {
                    self.pending = Pending::None;
                }
            }
            Event::CasDone { ok, state } => self.on_cas(ok, state, &mut out),
            Event::PeerConnected(info) => {
                self.peer = Some(info);
                self.on_peer_connected(&mut out);
            }
            Event::PeerLost => {
                self.peer = None;
                self.on_peer_lost(&mut out);
            }
            Event::BackupCaughtUp => self.on_backup_caught_up(&mut out),
            Event::BackupFellBehind => {
                if self.role == Role::Primary && self.sync {
                    self.lose_backup(&mut out);
                }
            }
            Event::ActiveNotice { active } => {
                if matches!(self.role, Role::Backup { .. }) {
                    self.active = active;
                }
            }
            Event::Handoff { epoch } => {
                if matches!(self.role, Role::Backup { .. }) && epoch > self.epoch {
                    self.become_primary(epoch, &mut out);
                }
            }
            Event::Shutdown { backup_has_all } => self.on_shutdown(backup_has_all, &mut out),
            Event::OperatorFailover => self.on_operator_failover(&mut out),
            Event::Switchover => self.on_switchover(&mut out),
        }
        out
    }

    fn become_primary(&mut self, epoch: u64, out: &mut Vec<Command>) {
        self.epoch = epoch;
        self.data_epoch = epoch;
        self.role = Role::Primary;
        self.sync = false;
        self.active = false;
        self.paused = None;
        self.retry_at = None;
        self.alone_at = None;
        self.lease_until = self.now + self.qos_ms() / 2;
        self.witness = Some(Witness {
            epoch,
            primary: self.cfg.me.clone(),
            backup_active: false,
        });
        out.push(Command::BecomePrimary { epoch });
    }

    fn become_backup(&mut self, primary: String, epoch: u64, out: &mut Vec<Command>) {
        self.epoch = self.epoch.max(epoch);
        self.sync = false;
        self.paused = None;
        self.active = false;
        self.retry_at = None;
        if self.role
            != (Role::Backup {
                primary: primary.clone(),
            })
        {
            self.role = Role::Backup {
                primary: primary.clone(),
            };
            out.push(Command::BecomeBackup { primary });
        }
    }

    /// A newer epoch exists: this member must not commit another byte.
    fn fence(&mut self, out: &mut Vec<Command>) {
        self.sync = false;
        self.active = false;
        self.paused = Some("fenced: a newer epoch exists");
        self.pending = Pending::None;
        if self.role != Role::Starting {
            self.role = Role::Starting;
            out.push(Command::PauseCommits("fenced: a newer epoch exists"));
            out.push(Command::BecomeStarting);
        }
    }

    fn pause(&mut self, why: &'static str, out: &mut Vec<Command>) {
        if self.paused != Some(why) {
            self.paused = Some(why);
            out.push(Command::PauseCommits(why));
        }
    }

    fn resume(&mut self, out: &mut Vec<Command>) {
        if self.paused.is_some() {
            self.paused = None;
            out.push(Command::ResumeCommits);
        }
    }

    fn cas(
        &mut self,
        new: Witness,
        require_lost: Option<String>,
        then: OnSuccess,
        out: &mut Vec<Command>,
    ) {
        let Some(expect) = self.witness.clone() else {
            return;
        };
        if self.pending != Pending::None || !self.arbiter_up {
            return;
        }
        self.pending = Pending::Cas(then);
        out.push(Command::Cas {
            expect,
            new,
            require_lost,
        });
    }

    fn me(&self) -> String {
        self.cfg.me.clone()
    }

    /// The register as this primary knows it.
    fn witness_of_mine(&self) -> Option<Witness> {
        self.witness
            .clone()
            .filter(|w| w.epoch == self.epoch && w.primary == self.cfg.me)
    }

    // ---- starting ----

    /// Decides the role of a starting member from what it knows.
    fn decide_start(&mut self, out: &mut Vec<Command>) {
        if self.role != Role::Starting || self.pending != Pending::None {
            return;
        }
        // Following a primary is always safe: a backup commits nothing.
        if let Some(p) = self
            .peer
            .clone()
            .filter(|p| p.is_primary && p.epoch >= self.epoch)
        {
            let name = self.cfg.peer.clone().expect("peer connected");
            self.become_backup(name, p.epoch, out);
            return;
        }
        if self.cfg.has_arbiter {
            if !self.arbiter_up {
                return;
            }
            match self.witness.clone() {
                Some(w) if w.primary == self.cfg.me && self.data_epoch < w.epoch => {
                    // The witness names us for an epoch we do not remember:
                    // this member lost its data (or runs on the wrong
                    // folder). Leading would make the mirror forget what
                    // was acknowledged; wait for the peer or an operator.
                    if std::mem::replace(&mut self.warned_lost_data, true) {
                        return;
                    }
                    tracing::error!(
                        our_epoch = self.data_epoch,
                        witness = w.epoch,
                        "the arbiter names this member primary of an epoch it has no record of; not leading"
                    );
                }
                Some(w) if w.primary == self.cfg.me => {
                    // Nobody took over since our tenure: start a new one.
                    let next = w.epoch.max(self.epoch) + 1;
                    let new = Witness {
                        epoch: next,
                        primary: self.me(),
                        backup_active: false,
                    };
                    self.cas(new, None, OnSuccess::BecomePrimary(next), out);
                }
                Some(w) => self.become_backup(w.primary.clone(), w.epoch, out),
                None => {
                    // The arbiter lost its state (or the mirror is new).
                    if self.peer_agrees_i_lead() {
                        let next = self.epoch + 1;
                        self.pending = Pending::Cas(OnSuccess::BecomePrimary(next));
                        out.push(Command::Register(Witness {
                            epoch: next,
                            primary: self.me(),
                            backup_active: false,
                        }));
                    }
                }
            }
        } else {
            match self.peer.clone() {
                Some(_) if self.peer_agrees_i_lead() => {
                    let next = self.epoch.max(self.peer.as_ref().map_or(0, |p| p.epoch)) + 1;
                    self.become_primary(next, out);
                }
                None if self.cfg.peer.is_none() => {
                    // A mirror of one failover member: nobody to disagree.
                    self.become_primary(self.epoch + 1, out);
                }
                _ => {}
            }
        }
    }

    /// With the peer connected and not primary: the one with the newer
    /// history leads (ties: the smaller name). With no peer configured, or
    /// (arbiter case) the peer unreachable on a brand-new mirror: yes.
    fn peer_agrees_i_lead(&self) -> bool {
        match (&self.peer, &self.cfg.peer) {
            (Some(p), Some(name)) => {
                !p.is_primary
                    && (self.last > p.last || (self.last == p.last && self.cfg.me < *name))
            }
            (None, None) | (Some(_), None) => true,
            // The other member is not reachable: we cannot know it is not
            // ahead of us. Wait (an operator can `failover` to us).
            (None, Some(_)) => false,
        }
    }

    // ---- events ----

    fn on_tick(&mut self, out: &mut Vec<Command>) {
        match self.role {
            Role::Primary => {
                // A go-alone request that got no answer (or none was sent
                // because another request was pending): ask again.
                if self.paused == Some("backup lost; asking the arbiter to run alone")
                    && self.pending == Pending::None
                {
                    self.lose_backup(out);
                }
                if let Some(at) = self.alone_at {
                    if self.now >= at {
                        self.alone_at = None;
                        self.sync = false;
                        out.push(Command::SetSync(false));
                        self.resume(out);
                    }
                }
                if self.cfg.has_arbiter && !self.sync && self.now > self.lease_until {
                    self.pause(
                        "no arbiter contact while running without an active backup",
                        out,
                    );
                }
            }
            Role::Backup { .. } => {
                if self.retry_at.is_some_and(|at| self.now >= at) {
                    self.retry_at = None;
                    if self.peer.is_none() && self.active {
                        self.try_takeover(out);
                    }
                }
            }
            Role::Starting => self.decide_start(out),
            Role::Stopped => {}
        }
    }

    fn on_witness(&mut self, state: Option<Witness>, sent_ms: u64, out: &mut Vec<Command>) {
        if let Some(w) = &state {
            if w.epoch > self.epoch {
                if w.primary == self.cfg.me && matches!(self.role, Role::Backup { .. }) {
                    // Our takeover CAS went through but its answer was lost.
                    self.pending = Pending::None;
                    self.become_primary(w.epoch, out);
                    return;
                }
                if self.role == Role::Primary {
                    self.fence(out);
                }
                self.epoch = w.epoch;
                if let Role::Backup { primary } = &self.role {
                    if *primary != w.primary {
                        let p = w.primary.clone();
                        self.become_backup(p, w.epoch, out);
                    }
                }
            }
        }
        if state.is_some() || self.role != Role::Primary {
            self.witness = state.clone();
        }
        match self.role {
            Role::Primary => {
                let mine = state
                    .as_ref()
                    .is_some_and(|w| w.epoch == self.epoch && w.primary == self.cfg.me);
                let peer_not_newer = match (&self.peer, &self.cfg.peer) {
                    (Some(p), _) => p.epoch <= self.epoch && !p.is_primary,
                    (None, None) => true,
                    (None, Some(_)) => false,
                };
                if state.is_none() && self.pending == Pending::None && peer_not_newer {
                    // The arbiter restarted without its state: give it ours.
                    if let Some(w) = self.witness_of_mine() {
                        self.pending = Pending::Cas(OnSuccess::Reregistered);
                        out.push(Command::Register(w));
                    }
                }
                if mine {
                    self.lease_until = self.lease_until.max(sent_ms + self.qos_ms() / 2);
                    if self.paused
                        == Some("no arbiter contact while running without an active backup")
                    {
                        self.resume(out);
                    }
                    if self.paused == Some("isolated: lost the backup and the arbiter") {
                        self.lose_backup(out);
                    }
                }
            }
            Role::Starting => self.decide_start(out),
            Role::Backup { ref primary } => {
                // The arbiter's word is as good as the primary's heartbeat:
                // the primary marks its backup active there only after that
                // backup acknowledged everything, and from then on every
                // commit waits for it. (The heartbeat saying so may never
                // come if the primary dies right after.)
                if let Some(w) = &state {
                    if w.epoch == self.epoch && w.primary == *primary {
                        self.active = w.backup_active;
                    }
                }
            }
            Role::Stopped => {}
        }
    }

    fn on_cas(&mut self, ok: bool, state: Option<Witness>, out: &mut Vec<Command>) {
        let Pending::Cas(then) = std::mem::replace(&mut self.pending, Pending::None) else {
            return;
        };
        if let Some(w) = state.clone() {
            self.witness = Some(w);
        }
        if ok {
            match then {
                OnSuccess::BecomePrimary(epoch) => self.become_primary(epoch, out),
                OnSuccess::GoAlone => {
                    self.sync = false;
                    self.lease_until = self.now + self.qos_ms() / 2;
                    out.push(Command::SetSync(false));
                    out.push(Command::MarkBackupActive(false));
                    self.resume(out);
                }
                OnSuccess::BackupActive => out.push(Command::MarkBackupActive(true)),
                OnSuccess::Reregistered => {}
                OnSuccess::Handoff(epoch) => {
                    self.role = Role::Stopped;
                    out.push(Command::SendHandoff { epoch });
                    out.push(Command::Exit);
                }
                OnSuccess::HandoffAndFollow(epoch) => {
                    self.role = Role::Starting;
                    self.sync = false;
                    self.epoch = epoch;
                    self.paused = None;
                    out.push(Command::SendHandoff { epoch });
                    out.push(Command::BecomeStarting);
                }
            }
            return;
        }
        // Refused: a newer epoch fences us; otherwise retry as the role says.
        let newer = state.as_ref().is_some_and(|w| w.epoch > self.epoch);
        match (then, &self.role) {
            (_, Role::Primary) if newer => self.fence(out),
            (OnSuccess::BecomePrimary(_), Role::Backup { .. }) => {
                if let Some(w) = state.filter(|w| w.epoch > self.epoch) {
                    let p = w.primary.clone();
                    if p == self.cfg.me {
                        self.become_primary(w.epoch, out);
                    } else {
                        self.become_backup(p, w.epoch, out);
                    }
                } else if self.witness.as_ref().is_some_and(|w| !w.backup_active) {
                    // The primary went on alone first: we are not active.
                    self.active = false;
                } else {
                    // The arbiter still sees the primary: try again shortly.
                    self.retry_at = Some(self.now + (self.qos_ms() / 8).max(1));
                }
            }
            (OnSuccess::BecomePrimary(_), Role::Starting) => self.decide_start(out),
            (OnSuccess::HandoffAndFollow(_), Role::Primary) => self.resume(out),
            // Refused without a newer epoch (e.g. the arbiter lost its
            // state): the next tick asks again.
            (OnSuccess::GoAlone, Role::Primary) => {}
            _ => {}
        }
    }

    fn on_peer_connected(&mut self, out: &mut Vec<Command>) {
        let info = self.peer.clone().expect("just set");
        match self.role.clone() {
            Role::Starting => self.decide_start(out),
            Role::Primary => {
                if info.is_primary && info.epoch > self.epoch {
                    self.fence(out);
                }
            }
            Role::Backup { primary } => {
                if info.is_primary && self.cfg.peer.as_deref() == Some(primary.as_str()) {
                    self.retry_at = None;
                }
            }
            Role::Stopped => {}
        }
    }

    fn on_peer_lost(&mut self, out: &mut Vec<Command>) {
        match self.role {
            Role::Primary if self.sync => self.lose_backup(out),
            Role::Backup { .. } if self.active && self.cfg.has_arbiter => self.try_takeover(out),
            _ => {}
        }
    }

    /// (backup) the primary is gone and we were active: ask the arbiter.
    fn try_takeover(&mut self, out: &mut Vec<Command>) {
        let Role::Backup { primary } = self.role.clone() else {
            return;
        };
        if !self.arbiter_up {
            return;
        }
        // Only a backup the arbiter itself counts as active may take over:
        // the primary marks it so only after it acknowledged everything,
        // and the primary's go-alone clears it first. (A heartbeat saying
        // "active" may be stale.)
        let witnessed = self
            .witness
            .as_ref()
            .is_some_and(|w| w.backup_active && w.primary == primary && w.epoch == self.epoch);
        if !witnessed {
            self.active = false;
            return;
        }
        let next = self.epoch + 1;
        let new = Witness {
            epoch: next,
            primary: self.me(),
            backup_active: false,
        };
        let before = out.len();
        self.cas(new, Some(primary), OnSuccess::BecomePrimary(next), out);
        if out.len() == before {
            self.retry_at = Some(self.now + (self.qos_ms() / 8).max(1));
        }
    }

    /// (primary) the active backup is gone or too far behind.
    fn lose_backup(&mut self, out: &mut Vec<Command>) {
        if self.cfg.has_arbiter {
            if self.arbiter_up {
                self.pause("backup lost; asking the arbiter to run alone", out);
                let new = Witness {
                    epoch: self.epoch,
                    primary: self.me(),
                    backup_active: false,
                };
                self.cas(new, None, OnSuccess::GoAlone, out);
            } else {
                self.pause("isolated: lost the backup and the arbiter", out);
            }
        } else {
            self.pause("backup lost; going on alone after 2 x QoS", out);
            if self.alone_at.is_none() {
                self.alone_at = Some(self.now + 2 * self.qos_ms());
            }
        }
    }

    fn on_backup_caught_up(&mut self, out: &mut Vec<Command>) {
        if self.role != Role::Primary {
            return;
        }
        self.alone_at = None;
        if !self.sync {
            // Commits wait for the backup from now on, before the arbiter
            // may let it take over.
            self.sync = true;
            out.push(Command::SetSync(true));
        }
        if matches!(
            self.paused,
            Some("isolated: lost the backup and the arbiter")
                | Some("backup lost; going on alone after 2 x QoS")
        ) {
            self.resume(out);
        }
        if self.cfg.has_arbiter {
            let active_at_arbiter = self.witness.as_ref().is_some_and(|w| w.backup_active);
            if !active_at_arbiter {
                let new = Witness {
                    epoch: self.epoch,
                    primary: self.me(),
                    backup_active: true,
                };
                self.cas(new, None, OnSuccess::BackupActive, out);
            }
        } else {
            out.push(Command::MarkBackupActive(true));
        }
    }

    fn on_shutdown(&mut self, backup_has_all: bool, out: &mut Vec<Command>) {
        if self.role != Role::Primary || !self.sync || !backup_has_all {
            self.role = Role::Stopped;
            out.push(Command::Exit);
            return;
        }
        let peer = self.cfg.peer.clone().expect("a synced backup exists");
        let next = self.epoch + 1;
        if self.cfg.has_arbiter && self.arbiter_up {
            let new = Witness {
                epoch: next,
                primary: peer,
                backup_active: false,
            };
            let before = out.len();
            self.cas(new, None, OnSuccess::Handoff(next), out);
            if out.len() == before {
                self.role = Role::Stopped;
                out.push(Command::Exit);
            }
        } else if self.cfg.has_arbiter {
            // Without the arbiter the backup could not be made primary safely.
            self.role = Role::Stopped;
            out.push(Command::Exit);
        } else {
            self.role = Role::Stopped;
            out.push(Command::SendHandoff { epoch: next });
            out.push(Command::Exit);
        }
    }

    fn on_switchover(&mut self, out: &mut Vec<Command>) {
        if self.role != Role::Primary || !self.sync {
            return;
        }
        let Some(peer) = self.cfg.peer.clone() else {
            return;
        };
        let next = self.epoch + 1;
        // The runtime paused commits and drained them to the backup; the
        // pause is ours now: lifted if the handover cannot happen.
        self.paused = Some(SWITCHOVER);
        if self.cfg.has_arbiter {
            let new = Witness {
                epoch: next,
                primary: peer,
                backup_active: false,
            };
            let before = out.len();
            self.cas(new, None, OnSuccess::HandoffAndFollow(next), out);
            if out.len() == before {
                self.resume(out);
            }
        } else {
            self.role = Role::Starting;
            self.sync = false;
            self.epoch = next;
            out.push(Command::SendHandoff { epoch: next });
            out.push(Command::BecomeStarting);
        }
    }

    fn on_operator_failover(&mut self, out: &mut Vec<Command>) {
        if self.role == Role::Primary {
            return;
        }
        let next = self.epoch.max(self.witness.as_ref().map_or(0, |w| w.epoch)) + 1;
        if self.cfg.has_arbiter {
            let lost = match &self.role {
                Role::Backup { primary } => Some(primary.clone()),
                _ => self.witness.as_ref().map(|w| w.primary.clone()),
            };
            let new = Witness {
                epoch: next,
                primary: self.me(),
                backup_active: false,
            };
            self.cas(new, lost, OnSuccess::BecomePrimary(next), out);
        } else {
            self.become_primary(next, out);
        }
    }
}

#[cfg(test)]
mod tests;
