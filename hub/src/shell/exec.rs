//! Runs shell commands on an engine session and renders their results.

use redoubt_engine::{Result, Session};

use super::command::Command;

/// Runs one command against database `db`; returns the lines to print.
pub fn run(session: &mut Session, db: &str, cmd: &Command) -> Result<Vec<String>> {
    Ok(match cmd {
        Command::Set(k, v) => {
            session.set(db, k, v)?;
            vec![]
        }
        Command::Get(k) => match session.get(db, k)? {
            Some(v) => vec![format!("{k}={v}")],
            None => vec![format!("{k} is undefined")],
        },
        Command::ZWrite(k) => {
            let mut out = Vec::new();
            session.scan(db, k, |key, value| {
                out.push(format!("{key}={value}"));
                true
            })?;
            out
        }
        Command::Kill(k) => vec![format!("{} node(s) killed", session.kill(db, k)?)],
        Command::ZKill(k) => vec![if session.zkill(db, k)? {
            "1 node killed".into()
        } else {
            format!("{k} had no value")
        }],
        Command::Data(k) => vec![session.data(db, k)?.to_string()],
        Command::Order(k, dir) => vec![match session.order(db, k, *dir)? {
            Some(s) => s.to_string(),
            None => "\"\"".into(),
        }],
        Command::Query(k, dir) => vec![match session.query(db, k, *dir)? {
            Some(next) => next.to_string(),
            None => "\"\"".into(),
        }],
        Command::Increment(k, by) => vec![session.increment(db, k, *by)?.to_string()],
        Command::TStart => vec![format!("$TLEVEL={}", session.tstart()?)],
        Command::TCommit => {
            session.tcommit()?;
            vec![format!("$TLEVEL={}", session.tlevel())]
        }
        Command::TRollback { innermost_only } => {
            session.trollback(*innermost_only)?;
            vec![format!("$TLEVEL={}", session.tlevel())]
        }
        Command::Lock(k, timeout) => vec![if session.lock(db, k, *timeout)? {
            format!("locked {k}")
        } else {
            format!("lock {k} timed out after {:.1}s", timeout.as_secs_f64())
        }],
        Command::Unlock(k) => vec![if session.unlock(db, k) {
            format!("unlocked {k}")
        } else {
            format!("this session holds no lock on {k}")
        }],
    })
}
