//! Runs shell commands and renders their results, on a local engine
//! session or on a remote member through the client.

use std::time::Duration;

use anyhow::Result;
use redoubt_engine::client::Client;
use redoubt_engine::model::{Key, Subscript, Value};
use redoubt_engine::{Direction, Session};

use super::command::Command;

/// What the shell needs of a connection to data: the engine's `Session`
/// in this process, or a `Client` of a member.
pub trait Globals {
    fn set(&mut self, db: &str, k: &Key, v: &Value) -> Result<()>;
    fn get(&mut self, db: &str, k: &Key) -> Result<Option<Value>>;
    fn scan(&mut self, db: &str, k: &Key, each: &mut dyn FnMut(Key, Value)) -> Result<()>;
    fn kill(&mut self, db: &str, k: &Key) -> Result<u64>;
    fn zkill(&mut self, db: &str, k: &Key) -> Result<bool>;
    fn data(&mut self, db: &str, k: &Key) -> Result<u8>;
    fn order(&mut self, db: &str, k: &Key, dir: Direction) -> Result<Option<Subscript>>;
    fn query(&mut self, db: &str, k: &Key, dir: Direction) -> Result<Option<Key>>;
    fn increment(&mut self, db: &str, k: &Key, by: i64) -> Result<i64>;
    fn tstart(&mut self) -> Result<usize>;
    fn tcommit(&mut self) -> Result<usize>;
    fn trollback(&mut self, innermost_only: bool) -> Result<usize>;
    fn lock(&mut self, db: &str, k: &Key, timeout: Duration) -> Result<bool>;
    fn unlock(&mut self, db: &str, k: &Key) -> Result<bool>;
}

impl Globals for Session {
    fn set(&mut self, db: &str, k: &Key, v: &Value) -> Result<()> {
        Ok(Session::set(self, db, k, v)?)
    }
    fn get(&mut self, db: &str, k: &Key) -> Result<Option<Value>> {
        Ok(Session::get(self, db, k)?)
    }
    fn scan(&mut self, db: &str, k: &Key, each: &mut dyn FnMut(Key, Value)) -> Result<()> {
        Session::scan(self, db, k, |k, v| {
            each(k, v);
            true
        })?;
        Ok(())
    }
    fn kill(&mut self, db: &str, k: &Key) -> Result<u64> {
        Ok(Session::kill(self, db, k)?)
    }
    fn zkill(&mut self, db: &str, k: &Key) -> Result<bool> {
        Ok(Session::zkill(self, db, k)?)
    }
    fn data(&mut self, db: &str, k: &Key) -> Result<u8> {
        Ok(Session::data(self, db, k)?)
    }
    fn order(&mut self, db: &str, k: &Key, dir: Direction) -> Result<Option<Subscript>> {
        Ok(Session::order(self, db, k, dir)?)
    }
    fn query(&mut self, db: &str, k: &Key, dir: Direction) -> Result<Option<Key>> {
        Ok(Session::query(self, db, k, dir)?)
    }
    fn increment(&mut self, db: &str, k: &Key, by: i64) -> Result<i64> {
        Ok(Session::increment(self, db, k, by)?)
    }
    fn tstart(&mut self) -> Result<usize> {
        Ok(Session::tstart(self)?)
    }
    fn tcommit(&mut self) -> Result<usize> {
        Session::tcommit(self)?;
        Ok(self.tlevel())
    }
    fn trollback(&mut self, innermost_only: bool) -> Result<usize> {
        Session::trollback(self, innermost_only)?;
        Ok(self.tlevel())
    }
    fn lock(&mut self, db: &str, k: &Key, timeout: Duration) -> Result<bool> {
        Ok(Session::lock(self, db, k, timeout)?)
    }
    fn unlock(&mut self, db: &str, k: &Key) -> Result<bool> {
        Ok(Session::unlock(self, db, k))
    }
}

impl Globals for Client {
    fn set(&mut self, db: &str, k: &Key, v: &Value) -> Result<()> {
        Ok(Client::set(self, db, k, v)?)
    }
    fn get(&mut self, db: &str, k: &Key) -> Result<Option<Value>> {
        Ok(Client::get(self, db, k)?)
    }
    fn scan(&mut self, db: &str, k: &Key, each: &mut dyn FnMut(Key, Value)) -> Result<()> {
        // Page through the subtree.
        const PAGE: u32 = 1000;
        let rows = Client::scan(self, db, k, PAGE)?;
        let full = rows.len() as u32 == PAGE;
        for (key, value) in rows {
            each(key, value);
        }
        if full {
            anyhow::bail!("showing the first {PAGE} nodes only");
        }
        Ok(())
    }
    fn kill(&mut self, db: &str, k: &Key) -> Result<u64> {
        Ok(Client::kill(self, db, k)?)
    }
    fn zkill(&mut self, db: &str, k: &Key) -> Result<bool> {
        Ok(Client::zkill(self, db, k)?)
    }
    fn data(&mut self, db: &str, k: &Key) -> Result<u8> {
        Ok(Client::data(self, db, k)?)
    }
    fn order(&mut self, db: &str, k: &Key, dir: Direction) -> Result<Option<Subscript>> {
        Ok(Client::order(self, db, k, dir)?)
    }
    fn query(&mut self, db: &str, k: &Key, dir: Direction) -> Result<Option<Key>> {
        Ok(Client::query(self, db, k, dir)?)
    }
    fn increment(&mut self, db: &str, k: &Key, by: i64) -> Result<i64> {
        Ok(Client::increment(self, db, k, by)?)
    }
    fn tstart(&mut self) -> Result<usize> {
        Ok(Client::tstart(self)? as usize)
    }
    fn tcommit(&mut self) -> Result<usize> {
        Ok(Client::tcommit(self)? as usize)
    }
    fn trollback(&mut self, innermost_only: bool) -> Result<usize> {
        Ok(Client::trollback(self, innermost_only)? as usize)
    }
    fn lock(&mut self, db: &str, k: &Key, timeout: Duration) -> Result<bool> {
        Ok(Client::lock(self, db, k, timeout)?)
    }
    fn unlock(&mut self, db: &str, k: &Key) -> Result<bool> {
        Ok(Client::unlock(self, db, k)?)
    }
}

/// Runs one command against database `db`; returns the lines to print.
pub fn run(g: &mut dyn Globals, db: &str, cmd: &Command) -> Result<Vec<String>> {
    let level = |n: usize| vec![format!("$TLEVEL={n}")];
    Ok(match cmd {
        Command::Set(k, v) => {
            g.set(db, k, v)?;
            vec![]
        }
        Command::Get(k) => match g.get(db, k)? {
            Some(v) => vec![format!("{k}={v}")],
            None => vec![format!("{k} is undefined")],
        },
        Command::ZWrite(k) => {
            let mut out = Vec::new();
            g.scan(db, k, &mut |key, value| out.push(format!("{key}={value}")))?;
            out
        }
        Command::Kill(k) => vec![format!("{} node(s) killed", g.kill(db, k)?)],
        Command::ZKill(k) => vec![if g.zkill(db, k)? {
            "1 node killed".into()
        } else {
            format!("{k} had no value")
        }],
        Command::Data(k) => vec![g.data(db, k)?.to_string()],
        Command::Order(k, dir) => vec![match g.order(db, k, *dir)? {
            Some(s) => s.to_string(),
            None => "\"\"".into(),
        }],
        Command::Query(k, dir) => vec![match g.query(db, k, *dir)? {
            Some(next) => next.to_string(),
            None => "\"\"".into(),
        }],
        Command::Increment(k, by) => vec![g.increment(db, k, *by)?.to_string()],
        Command::TStart => level(g.tstart()?),
        Command::TCommit => level(g.tcommit()?),
        Command::TRollback { innermost_only } => level(g.trollback(*innermost_only)?),
        Command::Lock(k, timeout) => vec![if g.lock(db, k, *timeout)? {
            format!("locked {k}")
        } else {
            format!("lock {k} timed out after {:.1}s", timeout.as_secs_f64())
        }],
        Command::Unlock(k) => vec![if g.unlock(db, k)? {
            format!("unlocked {k}")
        } else {
            format!("this session holds no lock on {k}")
        }],
    })
}
