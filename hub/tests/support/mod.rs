//! Shared pieces of the end-to-end tests: a fault-injecting proxy, a write
//! load that records what was acknowledged, and the checks.

#![allow(dead_code)]

pub mod proxy;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use redoubt_engine::client::{Client, ClientError, ClientOptions, Target};
use redoubt_engine::model::{Key, Subscript, Value};
use redoubt_engine::wire::{ClientOp, ErrorCode, Reply};
use redoubt_hub::cluster::LocalCluster;

pub const DB: &str = "USER";

fn key(thread: u32, seq: u64) -> Key {
    Key::new(
        "W",
        vec![Subscript::Int(thread as i64), Subscript::Int(seq as i64)],
    )
    .unwrap()
}

fn value(thread: u32, seq: u64) -> Value {
    Value::Str(format!("{thread}:{seq}"))
}

/// What the writers saw.
#[derive(Default, Debug)]
pub struct Outcomes {
    /// Keys whose SET was acknowledged.
    pub acked: Vec<(u32, u64)>,
    /// Keys whose outcome is unknown (may or may not be there).
    pub unknown: Vec<(u32, u64)>,
    /// Writes refused without being executed (read-only, trouble, ...).
    pub refused: u64,
}

/// Client threads writing `^W(thread, seq)` until stopped.
pub struct Load {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    pub outcomes: Arc<Mutex<Outcomes>>,
}

/// Transactions per pipeline of the pipelined load, and SETs in each.
const PIPELINED_TXNS: u64 = 4;
const PIPELINED_SETS: u64 = 5;

impl Load {
    pub fn start(addrs: Vec<String>, threads: u32) -> Load {
        Load::spawn(addrs, threads, false)
    }

    /// Client threads sending transactions of `^W(thread, seq)` SETs in
    /// pipelines ([`Client::pipeline`]): each transaction after the first
    /// is sent before the commit of the one before is answered. A
    /// transaction is acknowledged when its `TCOMMIT` is answered `Ok`
    /// and every op in it succeeded.
    pub fn start_pipelined(addrs: Vec<String>, threads: u32) -> Load {
        Load::spawn(addrs, threads, true)
    }

    fn spawn(addrs: Vec<String>, threads: u32, pipelined: bool) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let outcomes: Arc<Mutex<Outcomes>> = Arc::default();
        let handles = (0..threads)
            .map(|t| {
                let (stop, outcomes, addrs) = (stop.clone(), outcomes.clone(), addrs.clone());
                std::thread::spawn(move || {
                    let opts = ClientOptions {
                        name: format!("load-{t}"),
                        target: Target::Primary,
                        primary_wait: Duration::from_secs(20),
                        io_timeout: Duration::from_secs(20),
                        connect_timeout: Duration::from_secs(1),
                        ..ClientOptions::default()
                    };
                    let mut client: Option<Client> = None;
                    let mut seq = 0u64;
                    while !stop.load(Ordering::SeqCst) {
                        let c = match client.as_mut() {
                            Some(c) => c,
                            None => match Client::connect(&addrs, opts.clone()) {
                                Ok(c) => client.insert(c),
                                Err(_) => {
                                    std::thread::sleep(Duration::from_millis(50));
                                    continue;
                                }
                            },
                        };
                        if pipelined {
                            let ok = pipelined_round(c, t, seq, &mut outcomes.lock().unwrap());
                            if !ok {
                                client = None;
                            }
                            seq += PIPELINED_TXNS * PIPELINED_SETS;
                            continue;
                        }
                        let r = c.set(DB, &key(t, seq), &value(t, seq));
                        let mut o = outcomes.lock().unwrap();
                        match r {
                            Ok(()) => o.acked.push((t, seq)),
                            Err(ClientError::Remote(e)) if e.code == ErrorCode::OutcomeUnknown => {
                                o.unknown.push((t, seq));
                                client = None;
                            }
                            Err(ClientError::Remote(_)) | Err(ClientError::NoPrimary { .. }) => {
                                o.refused += 1;
                                // Not executed: the same key may be retried.
                                continue;
                            }
                            Err(_) => {
                                o.unknown.push((t, seq));
                                client = None;
                            }
                        }
                        seq += 1;
                    }
                })
            })
            .collect();
        Load {
            stop,
            threads: handles,
            outcomes,
        }
    }

    pub fn stop(self) -> Outcomes {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads {
            t.join().unwrap();
        }
        Arc::try_unwrap(self.outcomes)
            .unwrap()
            .into_inner()
            .unwrap()
    }
}

/// One pipeline of [`PIPELINED_TXNS`] transactions from key `seq` on;
/// false if the connection broke (the client reconnects).
fn pipelined_round(c: &mut Client, t: u32, seq: u64, o: &mut Outcomes) -> bool {
    let mut ops = Vec::new();
    for n in 0..PIPELINED_TXNS * PIPELINED_SETS {
        if n % PIPELINED_SETS == 0 {
            ops.push(ClientOp::TStart);
        }
        ops.push(ClientOp::Set {
            db: DB.into(),
            key: key(t, seq + n),
            value: value(t, seq + n),
        });
        if n % PIPELINED_SETS == PIPELINED_SETS - 1 {
            ops.push(ClientOp::TCommit);
        }
    }
    let (answered, broke) = match c.pipeline(&ops) {
        Ok(a) => (a, false),
        Err(e) => (e.answered, true),
    };
    let per_txn = (PIPELINED_SETS + 2) as usize;
    for txn in 0..PIPELINED_TXNS {
        let keys = (0..PIPELINED_SETS).map(|i| (t, seq + txn * PIPELINED_SETS + i));
        let answers = answered.iter().skip(txn as usize * per_txn).take(per_txn);
        if answers.len() < per_txn {
            // Not all answered: it may or may not have committed.
            o.unknown.extend(keys);
        } else if answers.clone().all(Result::is_ok) {
            // All answered, the last (the TCOMMIT) with Level(0) as the
            // op sequence implies: acknowledged.
            let committed = answers.clone().next_back() == Some(&Ok(Reply::Level(0)));
            assert!(
                committed,
                "a TCOMMIT that ended no transaction: {answers:?}"
            );
            o.acked.extend(keys);
        } else if answers.clone().any(Result::is_ok) {
            // Partly refused (a failover in the middle): whatever ran may
            // have committed.
            o.unknown.extend(keys);
        } else {
            o.refused += 1;
        }
    }
    // A refusal (read-only after a failover): reconnecting finds the
    // new primary.
    !broke && answered.iter().all(Result::is_ok)
}

/// Every `^W` node on one member, read there.
pub fn contents(addr: &str) -> BTreeMap<String, String> {
    let opts = ClientOptions {
        target: Target::Any,
        ..ClientOptions::default()
    };
    let mut c = Client::connect(&[addr.to_string()], opts).expect("connect to read");
    c.scan(DB, &Key::new("W", vec![]).unwrap(), 10_000_000)
        .expect("scan")
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Waits until every running member has the same durable and applied
/// position as the primary.
pub fn converge(c: &LocalCluster, members: &[&str]) {
    c.wait_until(Duration::from_secs(30), "members converging", |c| {
        let Some(p) = c.primary() else { return false };
        let Ok(ps) = c.status(&p) else { return false };
        members.iter().all(|m| {
            c.status(m).is_ok_and(|s| {
                s.journal_durable == ps.journal_durable && s.applied == ps.journal_durable
            })
        })
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", logs(c, members)));
}

pub fn logs(c: &LocalCluster, members: &[&str]) -> String {
    members
        .iter()
        .map(|m| format!("--- {m} ---\n{}", c.log_tail(m, 15)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The invariants: no acknowledged write lost on any member, every copy
/// equal, one history of epochs shared by all.
pub fn check(c: &LocalCluster, members: &[&str], o: &Outcomes) {
    converge(c, members);
    let copies: Vec<(String, BTreeMap<String, String>)> = members
        .iter()
        .map(|m| (m.to_string(), contents(&c.addr(m))))
        .collect();
    let (first, data) = &copies[0];
    for (t, seq) in &o.acked {
        let k = key(*t, *seq).to_string();
        assert_eq!(
            data.get(&k),
            Some(&value(*t, *seq).to_string()),
            "acknowledged write {k} is missing on {first}\n{}",
            logs(c, members)
        );
    }
    for (m, d) in &copies[1..] {
        assert!(
            d == data,
            "{m} differs from {first}: {} vs {} nodes",
            d.len(),
            data.len()
        );
    }
    let histories: Vec<Vec<(u64, u64)>> = members
        .iter()
        .map(|m| c.status(m).unwrap().epochs)
        .collect();
    for h in &histories[1..] {
        assert_eq!(h, &histories[0], "members disagree on the epoch history");
    }
    assert!(
        histories[0]
            .windows(2)
            .all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1),
        "epochs must rise along the journal, each once: {:?}",
        histories[0]
    );
    assert!(!o.acked.is_empty(), "the load got nothing acknowledged");
}
