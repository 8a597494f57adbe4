//! Every failover rule, driven by events and checked on the exact commands.

use std::time::Duration;

use super::*;

const QOS: u64 = 8000;

fn cfg(me: &str, peer: Option<&str>, has_arbiter: bool) -> Config {
    Config {
        me: me.into(),
        peer: peer.map(Into::into),
        has_arbiter,
        qos: Duration::from_millis(QOS),
    }
}

fn w(epoch: u64, primary: &str, backup_active: bool) -> Witness {
    Witness {
        epoch,
        primary: primary.into(),
        backup_active,
    }
}

fn arb(state: Option<Witness>) -> Event {
    Event::Arbiter { state, sent_ms: 0 }
}

fn peer(epoch: u64, is_primary: bool, last: (u64, u64)) -> Event {
    Event::PeerConnected(PeerInfo {
        epoch,
        is_primary,
        last,
    })
}

/// `a` as primary at epoch 3 with an active backup `b`, via the arbiter.
fn synced_primary() -> Failover {
    let mut f = Failover::new(cfg("a", Some("b"), true), 2, (2, 100));
    f.handle(arb(Some(w(2, "a", false))));
    f.handle(Event::CasDone {
        ok: true,
        state: Some(w(3, "a", false)),
    });
    f.handle(peer(3, false, (3, 100)));
    f.handle(Event::BackupCaughtUp);
    f.handle(Event::CasDone {
        ok: true,
        state: Some(w(3, "a", true)),
    });
    assert!(f.is_sync());
    f
}

/// `b` as the active backup of `a` at epoch 3.
fn active_backup() -> Failover {
    let mut f = Failover::new(cfg("b", Some("a"), true), 3, (3, 100));
    f.handle(arb(Some(w(3, "a", true))));
    f.handle(peer(3, true, (3, 100)));
    f.handle(Event::ActiveNotice { active: true });
    assert!(f.is_active_backup());
    f
}

#[test]
fn a_starting_member_the_witness_names_takes_a_new_epoch_before_leading() {
    let mut f = Failover::new(cfg("a", Some("b"), true), 2, (2, 100));
    assert_eq!(
        f.handle(arb(Some(w(2, "a", true)))),
        vec![Command::Cas {
            expect: w(2, "a", true),
            new: w(3, "a", false),
            require_lost: None
        }]
    );
    assert_eq!(
        f.role(),
        &Role::Starting,
        "not primary before the arbiter agrees"
    );
    assert_eq!(
        f.handle(Event::CasDone {
            ok: true,
            state: Some(w(3, "a", false))
        }),
        vec![Command::BecomePrimary { epoch: 3 }]
    );
}

#[test]
fn a_restarted_former_primary_follows_the_newer_primary() {
    let mut f = Failover::new(cfg("a", Some("b"), true), 3, (3, 500));
    assert_eq!(
        f.handle(arb(Some(w(4, "b", false)))),
        vec![Command::BecomeBackup {
            primary: "b".into()
        }]
    );
    assert_eq!(f.epoch(), 4);
}

#[test]
fn a_new_mirror_registers_its_first_primary_at_the_arbiter() {
    let mut f = Failover::new(cfg("a", Some("b"), true), 0, (0, 0));
    assert_eq!(
        f.handle(arb(None)),
        vec![],
        "with the peer unreachable nobody can know who is ahead"
    );
    assert_eq!(
        f.handle(peer(0, false, (0, 0))),
        vec![Command::Register(w(1, "a", false))],
        "equal histories: the smaller name leads"
    );
    assert_eq!(
        f.handle(Event::CasDone {
            ok: true,
            state: Some(w(1, "a", false))
        }),
        vec![Command::BecomePrimary { epoch: 1 }]
    );
    // The other member waits, then follows.
    let mut g = Failover::new(cfg("b", Some("a"), true), 0, (0, 0));
    g.handle(arb(None));
    assert_eq!(g.handle(peer(0, false, (0, 0))), vec![]);
    assert_eq!(
        g.handle(peer(1, true, (1, 0))),
        vec![Command::BecomeBackup {
            primary: "a".into()
        }]
    );
}

#[test]
fn a_member_that_lost_its_data_does_not_lead_even_if_the_witness_names_it() {
    let mut f = Failover::new(cfg("a", Some("b"), true), 0, (0, 0));
    assert_eq!(f.handle(arb(Some(w(5, "a", false)))), vec![]);
    assert_eq!(f.role(), &Role::Starting);
    // Its peer, primary at a newer epoch, is followed.
    assert_eq!(
        f.handle(peer(6, true, (6, 900))),
        vec![Command::BecomeBackup {
            primary: "b".into()
        }]
    );
}

#[test]
fn a_backup_with_a_stale_active_flag_does_not_take_over_against_the_witness() {
    let mut f = active_backup();
    // The primary went on alone: the arbiter says no active backup ...
    f.handle(arb(Some(w(3, "a", false))));
    // ... and a heartbeat sent before that arrives late.
    f.handle(Event::ActiveNotice { active: true });
    assert_eq!(
        f.handle(Event::PeerLost),
        vec![],
        "no takeover against an inactive witness"
    );
}

#[test]
fn a_go_alone_request_without_an_answer_is_asked_again() {
    let mut f = synced_primary();
    f.handle(Event::PeerLost);
    f.handle(Event::ArbiterLost); // the answer is lost with the connection
    assert_eq!(
        f.handle(Event::Tick { now_ms: 10 }),
        vec![Command::PauseCommits(
            "isolated: lost the backup and the arbiter"
        )]
    );
    let out = f.handle(arb(Some(w(3, "a", true))));
    assert!(
        out.iter()
            .any(|c| matches!(c, Command::Cas { new, .. } if !new.backup_active)),
        "{out:?}"
    );
    // Or, with the arbiter back but nothing pending, on the next tick.
    let mut g = synced_primary();
    g.handle(Event::PeerLost);
    g.handle(Event::CasDone {
        ok: false,
        state: None,
    });
    let out = g.handle(Event::Tick { now_ms: 20 });
    assert!(matches!(out.as_slice(), [Command::Cas { .. }]), "{out:?}");
}

#[test]
fn a_switchover_that_cannot_start_lifts_its_pause() {
    let mut f = synced_primary();
    f.handle(Event::ArbiterLost);
    assert_eq!(f.handle(Event::Switchover), vec![Command::ResumeCommits]);
    let mut g = synced_primary();
    g.handle(Event::Switchover);
    assert_eq!(
        g.handle(Event::CasDone {
            ok: false,
            state: Some(w(3, "a", true))
        }),
        vec![Command::ResumeCommits]
    );
}

#[test]
fn a_primary_re_registers_only_when_its_peer_is_not_newer() {
    let mut f = synced_primary();
    f.handle(Event::PeerLost);
    f.handle(Event::CasDone {
        ok: true,
        state: Some(w(3, "a", false)),
    });
    assert_eq!(
        f.handle(arb(None)),
        vec![],
        "peer unreachable: it may have taken over"
    );
}

#[test]
fn an_arbiter_without_state_and_a_peer_ahead_means_wait() {
    let mut f = Failover::new(cfg("a", Some("b"), true), 2, (2, 100));
    f.handle(arb(None));
    assert_eq!(f.handle(peer(2, false, (2, 300))), vec![]);
    assert_eq!(f.role(), &Role::Starting);
}

#[test]
fn without_an_arbiter_the_member_with_the_newer_history_leads() {
    let mut a = Failover::new(cfg("a", Some("b"), false), 2, (2, 300));
    assert_eq!(
        a.handle(Event::Tick { now_ms: 10 }),
        vec![],
        "peer unknown: wait"
    );
    assert_eq!(
        a.handle(peer(2, false, (2, 100))),
        vec![Command::BecomePrimary { epoch: 3 }]
    );
    let mut b = Failover::new(cfg("b", Some("a"), false), 2, (2, 100));
    assert_eq!(b.handle(peer(2, false, (2, 300))), vec![]);
    assert_eq!(
        b.handle(peer(3, true, (3, 300))),
        vec![Command::BecomeBackup {
            primary: "a".into()
        }]
    );
}

#[test]
fn a_single_member_mirror_leads_by_itself() {
    let mut f = Failover::new(cfg("solo", None, false), 0, (0, 0));
    assert_eq!(
        f.handle(Event::Tick { now_ms: 1 }),
        vec![Command::BecomePrimary { epoch: 1 }]
    );
}

#[test]
fn a_caught_up_backup_makes_commits_synchronous_before_the_arbiter_marks_it_active() {
    let mut f = Failover::new(cfg("a", Some("b"), true), 2, (2, 100));
    f.handle(arb(Some(w(2, "a", false))));
    f.handle(Event::CasDone {
        ok: true,
        state: Some(w(3, "a", false)),
    });
    f.handle(peer(3, false, (3, 50)));
    assert_eq!(
        f.handle(Event::BackupCaughtUp),
        vec![
            Command::SetSync(true),
            Command::Cas {
                expect: w(3, "a", false),
                new: w(3, "a", true),
                require_lost: None
            }
        ]
    );
    assert_eq!(
        f.handle(Event::CasDone {
            ok: true,
            state: Some(w(3, "a", true))
        }),
        vec![Command::MarkBackupActive(true)]
    );
}

#[test]
fn a_primary_that_loses_its_active_backup_pauses_until_the_arbiter_lets_it_go_on_alone() {
    let mut f = synced_primary();
    assert_eq!(
        f.handle(Event::PeerLost),
        vec![
            Command::PauseCommits("backup lost; asking the arbiter to run alone"),
            Command::Cas {
                expect: w(3, "a", true),
                new: w(3, "a", false),
                require_lost: None
            }
        ]
    );
    assert_eq!(
        f.handle(Event::CasDone {
            ok: true,
            state: Some(w(3, "a", false))
        }),
        vec![
            Command::SetSync(false),
            Command::MarkBackupActive(false),
            Command::ResumeCommits
        ]
    );
}

#[test]
fn a_primary_whose_go_alone_loses_to_a_takeover_is_fenced() {
    let mut f = synced_primary();
    f.handle(Event::PeerLost);
    assert_eq!(
        f.handle(Event::CasDone {
            ok: false,
            state: Some(w(4, "b", false))
        }),
        vec![
            Command::PauseCommits("fenced: a newer epoch exists"),
            Command::BecomeStarting
        ]
    );
    assert_eq!(f.role(), &Role::Starting);
    // It then follows the new primary.
    assert_eq!(
        f.handle(arb(Some(w(4, "b", false)))),
        vec![Command::BecomeBackup {
            primary: "b".into()
        }]
    );
}

#[test]
fn an_isolated_primary_stops_committing_until_a_peer_returns() {
    let mut f = synced_primary();
    f.handle(Event::ArbiterLost);
    assert_eq!(
        f.handle(Event::PeerLost),
        vec![Command::PauseCommits(
            "isolated: lost the backup and the arbiter"
        )]
    );
    assert_eq!(
        f.handle(Event::Tick { now_ms: 100 * QOS }),
        vec![],
        "no timeout ends it"
    );
    assert_eq!(
        f.paused(),
        Some("isolated: lost the backup and the arbiter")
    );
    // The backup returns and catches up: go on, synchronously.
    f.handle(peer(3, false, (3, 100)));
    let out = f.handle(Event::BackupCaughtUp);
    assert!(out.contains(&Command::ResumeCommits), "{out:?}");
    assert!(f.is_sync());
}

#[test]
fn an_isolated_primary_asks_the_arbiter_when_it_returns() {
    let mut f = synced_primary();
    f.handle(Event::ArbiterLost);
    f.handle(Event::PeerLost);
    let out = f.handle(arb(Some(w(3, "a", true))));
    assert!(
        out.contains(&Command::Cas {
            expect: w(3, "a", true),
            new: w(3, "a", false),
            require_lost: None
        }),
        "{out:?}"
    );
}

#[test]
fn without_an_arbiter_a_primary_goes_on_alone_after_twice_the_qos() {
    let mut f = Failover::new(cfg("a", Some("b"), false), 2, (2, 300));
    f.handle(peer(2, false, (2, 100)));
    f.handle(Event::BackupCaughtUp);
    f.handle(Event::Tick { now_ms: 1000 });
    assert_eq!(
        f.handle(Event::PeerLost),
        vec![Command::PauseCommits(
            "backup lost; going on alone after 2 x QoS"
        )]
    );
    assert_eq!(
        f.handle(Event::Tick {
            now_ms: 1000 + 2 * QOS - 1
        }),
        vec![]
    );
    assert_eq!(
        f.handle(Event::Tick {
            now_ms: 1000 + 2 * QOS
        }),
        vec![Command::SetSync(false), Command::ResumeCommits]
    );
}

#[test]
fn an_active_backup_that_loses_the_primary_takes_over_only_through_the_arbiter() {
    let mut f = active_backup();
    assert_eq!(
        f.handle(Event::PeerLost),
        vec![Command::Cas {
            expect: w(3, "a", true),
            new: w(4, "b", false),
            require_lost: Some("a".into())
        }]
    );
    assert_eq!(
        f.role(),
        &Role::Backup {
            primary: "a".into()
        }
    );
    assert_eq!(
        f.handle(Event::CasDone {
            ok: true,
            state: Some(w(4, "b", false))
        }),
        vec![Command::BecomePrimary { epoch: 4 }]
    );
}

#[test]
fn a_takeover_refused_while_the_arbiter_still_sees_the_primary_is_retried() {
    let mut f = active_backup();
    f.handle(Event::Tick { now_ms: 0 });
    f.handle(Event::PeerLost);
    assert_eq!(
        f.handle(Event::CasDone {
            ok: false,
            state: Some(w(3, "a", true))
        }),
        vec![]
    );
    assert_eq!(
        f.handle(Event::Tick {
            now_ms: QOS / 8 - 1
        }),
        vec![]
    );
    let out = f.handle(Event::Tick { now_ms: QOS / 8 });
    assert!(matches!(out.as_slice(), [Command::Cas { .. }]), "{out:?}");
}

#[test]
fn a_backup_that_was_not_active_never_takes_over() {
    let mut f = active_backup();
    f.handle(Event::ActiveNotice { active: false });
    assert_eq!(f.handle(Event::PeerLost), vec![]);
    assert_eq!(f.handle(Event::Tick { now_ms: 10 * QOS }), vec![]);
    // Nor without an arbiter configured, even if active.
    let mut g = Failover::new(cfg("b", Some("a"), false), 3, (3, 100));
    g.handle(peer(3, true, (3, 100)));
    g.handle(Event::ActiveNotice { active: true });
    assert_eq!(g.handle(Event::PeerLost), vec![]);
    assert_eq!(g.handle(Event::Tick { now_ms: 10 * QOS }), vec![]);
}

#[test]
fn when_the_primary_went_on_alone_first_the_backup_stops_trying() {
    let mut f = active_backup();
    f.handle(Event::PeerLost);
    assert_eq!(
        f.handle(Event::CasDone {
            ok: false,
            state: Some(w(3, "a", false))
        }),
        vec![]
    );
    assert!(!f.is_active_backup());
    assert_eq!(f.handle(Event::Tick { now_ms: 10 * QOS }), vec![]);
}

/// The arbiter's rule, to run both members' CASes against one register.
fn apply(reg: &mut Witness, present: &[&str], cmd: &Command) -> (bool, Witness) {
    let Command::Cas {
        expect,
        new,
        require_lost,
    } = cmd
    else {
        panic!("not a CAS: {cmd:?}")
    };
    let ok = reg == expect
        && require_lost
            .as_ref()
            .is_none_or(|m| !present.contains(&m.as_str()));
    if ok {
        *reg = new.clone();
    }
    (ok, reg.clone())
}

#[test]
fn exactly_one_of_takeover_and_go_alone_wins_whichever_comes_first() {
    for primary_first in [true, false] {
        let mut p = synced_primary();
        let mut b = active_backup();
        let mut reg = w(3, "a", true);
        // A partition between the two; both still reach the arbiter, which
        // has lost sight of... nobody: each sees the other as present.
        let pc = p.handle(Event::PeerLost).pop().unwrap();
        let bc = b.handle(Event::PeerLost).pop().unwrap();
        let present = ["a", "b"];
        let order = if primary_first {
            [(&pc, true), (&bc, false)]
        } else {
            [(&bc, false), (&pc, true)]
        };
        for (cmd, is_primary) in order {
            let (ok, state) = apply(&mut reg, &present, cmd);
            let target = if is_primary { &mut p } else { &mut b };
            target.handle(Event::CasDone {
                ok,
                state: Some(state),
            });
        }
        let primaries = [&p, &b]
            .iter()
            .filter(|f| f.role() == &Role::Primary && f.paused().is_none())
            .count();
        assert_eq!(primaries, 1, "primary_first={primary_first}");
        assert_eq!(
            p.role(),
            &Role::Primary,
            "the arbiter still saw the primary"
        );
    }
    // When the primary is really gone (absent at the arbiter), the backup wins.
    let mut p = synced_primary();
    let mut b = active_backup();
    let mut reg = w(3, "a", true);
    let bc = b.handle(Event::PeerLost).pop().unwrap();
    let (ok, state) = apply(&mut reg, &["b"], &bc);
    assert_eq!(
        b.handle(Event::CasDone {
            ok,
            state: Some(state)
        }),
        vec![Command::BecomePrimary { epoch: 4 }]
    );
    // The old primary wakes up (SIGCONT) and tries to go on alone: fenced.
    let pc = p.handle(Event::PeerLost).pop().unwrap();
    let (ok, state) = apply(&mut reg, &["a", "b"], &pc);
    assert!(!ok);
    let out = p.handle(Event::CasDone {
        ok,
        state: Some(state),
    });
    assert!(out.contains(&Command::BecomeStarting), "{out:?}");
}

#[test]
fn a_primary_that_sees_a_newer_epoch_anywhere_is_fenced() {
    let mut f = synced_primary();
    let out = f.handle(arb(Some(w(5, "b", false))));
    assert_eq!(
        out[..2],
        [
            Command::PauseCommits("fenced: a newer epoch exists"),
            Command::BecomeStarting
        ]
    );
    let mut g = synced_primary();
    let out = g.handle(peer(6, true, (6, 0)));
    assert!(out.contains(&Command::BecomeStarting));
}

#[test]
fn stale_epochs_are_ignored() {
    let mut f = active_backup();
    assert_eq!(
        f.handle(Event::Handoff { epoch: 3 }),
        vec![],
        "not newer than ours"
    );
    let mut p = synced_primary();
    assert_eq!(
        p.handle(peer(2, true, (2, 0))),
        vec![],
        "an old primary does not fence us"
    );
    assert_eq!(p.role(), &Role::Primary);
}

#[test]
fn a_primary_alone_pauses_when_its_arbiter_lease_runs_out() {
    let mut f = synced_primary();
    f.handle(Event::PeerLost);
    f.handle(Event::CasDone {
        ok: true,
        state: Some(w(3, "a", false)),
    });
    f.handle(Event::Arbiter {
        state: Some(w(3, "a", false)),
        sent_ms: 1000,
    });
    assert_eq!(
        f.handle(Event::Tick {
            now_ms: 1000 + QOS / 2
        }),
        vec![]
    );
    assert_eq!(
        f.handle(Event::Tick {
            now_ms: 1001 + QOS / 2
        }),
        vec![Command::PauseCommits(
            "no arbiter contact while running without an active backup"
        )]
    );
    assert_eq!(
        f.handle(Event::Arbiter {
            state: Some(w(3, "a", false)),
            sent_ms: 1002 + QOS / 2
        }),
        vec![Command::ResumeCommits]
    );
}

#[test]
fn a_graceful_stop_hands_over_to_a_synced_backup() {
    let mut f = synced_primary();
    assert_eq!(
        f.handle(Event::Shutdown {
            backup_has_all: true
        }),
        vec![Command::Cas {
            expect: w(3, "a", true),
            new: w(4, "b", false),
            require_lost: None
        }]
    );
    assert_eq!(
        f.handle(Event::CasDone {
            ok: true,
            state: Some(w(4, "b", false))
        }),
        vec![Command::SendHandoff { epoch: 4 }, Command::Exit]
    );
    let mut b = active_backup();
    assert_eq!(
        b.handle(Event::Handoff { epoch: 4 }),
        vec![Command::BecomePrimary { epoch: 4 }]
    );
    // Without a synced backup a stop is just a stop.
    let mut g = synced_primary();
    g.handle(Event::PeerLost);
    g.handle(Event::CasDone {
        ok: true,
        state: Some(w(3, "a", false)),
    });
    assert_eq!(
        g.handle(Event::Shutdown {
            backup_has_all: false
        }),
        vec![Command::Exit]
    );
}

#[test]
fn an_operator_failover_requires_the_old_primary_gone_at_the_arbiter() {
    let mut f = active_backup();
    f.handle(Event::ActiveNotice { active: false });
    f.handle(Event::PeerLost);
    assert_eq!(
        f.handle(Event::OperatorFailover),
        vec![Command::Cas {
            expect: w(3, "a", true),
            new: w(4, "b", false),
            require_lost: Some("a".into())
        }]
    );
    assert_eq!(
        f.handle(Event::CasDone {
            ok: true,
            state: Some(w(4, "b", false))
        }),
        vec![Command::BecomePrimary { epoch: 4 }]
    );
}

#[test]
fn a_primary_re_registers_with_an_arbiter_that_lost_its_state() {
    let mut f = synced_primary();
    assert_eq!(
        f.handle(arb(None)),
        vec![Command::Register(w(3, "a", true))]
    );
}

#[test]
fn a_switchover_hands_over_and_follows() {
    let mut f = synced_primary();
    assert_eq!(
        f.handle(Event::Switchover),
        vec![Command::Cas {
            expect: w(3, "a", true),
            new: w(4, "b", false),
            require_lost: None
        }]
    );
    assert_eq!(
        f.handle(Event::CasDone {
            ok: true,
            state: Some(w(4, "b", false))
        }),
        vec![Command::SendHandoff { epoch: 4 }, Command::BecomeStarting]
    );
    // Then it follows the new primary the witness names.
    assert_eq!(
        f.handle(arb(Some(w(4, "b", false)))),
        vec![Command::BecomeBackup {
            primary: "b".into()
        }]
    );
    // Without a synced backup there is no switchover.
    let mut g = synced_primary();
    g.handle(Event::PeerLost);
    g.handle(Event::CasDone {
        ok: true,
        state: Some(w(3, "a", false)),
    });
    assert_eq!(g.handle(Event::Switchover), vec![]);
}

#[test]
fn a_backup_counts_itself_active_when_the_arbiter_says_so() {
    let mut f = Failover::new(cfg("b", Some("a"), true), 3, (3, 100));
    f.handle(arb(Some(w(3, "a", false))));
    f.handle(peer(3, true, (3, 100)));
    assert!(!f.is_active_backup());
    // The primary marked us active at the arbiter, then died before its
    // heartbeat could say so: we still take over.
    f.handle(arb(Some(w(3, "a", true))));
    assert!(f.is_active_backup());
    assert!(matches!(
        f.handle(Event::PeerLost).as_slice(),
        [Command::Cas { .. }]
    ));
}
