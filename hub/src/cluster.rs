//! A mirror of real `redoubt` processes on loopback, in one folder: an
//! arbiter, failover members and async members, each a child process with
//! its own log file. `redoubt demo`, the end-to-end and fault tests and the
//! failover benchmark drive it: start, kill -9, SIGSTOP/SIGCONT, restart,
//! and read each member's status.
//!
//! Traffic can be routed through proxies: `route(from, to, addr)` makes
//! member `from` reach member `to` (or the arbiter) at `addr`.

use std::collections::BTreeMap;
use std::fs;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use redoubt_engine::mirror::MemberStatus;

use crate::cmd::list::status_of;

/// The arbiter's name in routes.
pub const ARBITER: &str = "arbiter";

#[derive(Debug, Clone)]
pub struct MemberPlan {
    pub name: String,
    pub failover: bool,
    /// Where the member listens.
    pub addr: SocketAddr,
    pub admin: SocketAddr,
}

/// What to start, decided before anything starts (so proxies can be put
/// in between).
#[derive(Debug, Clone)]
pub struct Plan {
    pub mirror: String,
    pub qos_ms: u64,
    pub arbiter: Option<SocketAddr>,
    pub members: Vec<MemberPlan>,
    /// (from, to) -> address `from` uses for `to` (member or ARBITER).
    pub routes: BTreeMap<(String, String), SocketAddr>,
    pub databases: Vec<String>,
}

/// A loopback port that is free now, for a process that will bind it
/// later. Ports come from 20000..32000, below Linux's ephemeral range, so
/// sockets bound to port 0 meanwhile (proxies, clients) never take them;
/// each process starts at its own offset, so parallel test binaries rarely
/// meet.
pub fn free_port() -> SocketAddr {
    use std::sync::atomic::{AtomicU32, Ordering};
    const LOW: u32 = 20000;
    const SPAN: u32 = 12000;
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let _ = NEXT.compare_exchange(
        u32::MAX,
        (std::process::id() * 7919) % SPAN,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    loop {
        let port = LOW + NEXT.fetch_add(1, Ordering::SeqCst) % SPAN;
        if let Ok(l) = TcpListener::bind(("127.0.0.1", port as u16)) {
            return l.local_addr().expect("local addr");
        }
    }
}

impl Plan {
    /// `failover` and `asyncs` name the members; an arbiter if `arbiter`.
    pub fn new(failover: &[&str], asyncs: &[&str], arbiter: bool, qos_ms: u64) -> Plan {
        let member = |name: &&str, failover: bool| MemberPlan {
            name: name.to_string(),
            failover,
            addr: free_port(),
            admin: free_port(),
        };
        Plan {
            mirror: "M1".into(),
            qos_ms,
            arbiter: arbiter.then(free_port),
            members: failover
                .iter()
                .map(|n| member(n, true))
                .chain(asyncs.iter().map(|n| member(n, false)))
                .collect(),
            routes: BTreeMap::new(),
            databases: vec!["USER".into()],
        }
    }

    pub fn addr(&self, name: &str) -> SocketAddr {
        if name == ARBITER {
            return self.arbiter.expect("the plan has an arbiter");
        }
        self.members
            .iter()
            .find(|m| m.name == name)
            .expect("a planned member")
            .addr
    }

    /// Member `from` reaches `to` at `via`.
    pub fn route(&mut self, from: &str, to: &str, via: SocketAddr) {
        self.routes.insert((from.into(), to.into()), via);
    }

    fn seen_by(&self, from: &str, to: &str) -> SocketAddr {
        self.routes
            .get(&(from.to_string(), to.to_string()))
            .copied()
            .unwrap_or_else(|| self.addr(to))
    }

    fn config(&self, me: &MemberPlan, data: &Path) -> String {
        let mut t = format!(
            "mirror = \"{}\"\nname = \"{}\"\ndata = \"{}\"\nlisten = \"{}\"\nadmin = \"{}\"\nqos_ms = {}\ndatabases = [{}]\ncache_mb = 128\n",
            self.mirror,
            me.name,
            data.display(),
            me.addr,
            me.admin,
            self.qos_ms,
            self.databases.iter().map(|d| format!("\"{d}\"")).collect::<Vec<_>>().join(", ")
        );
        if self.arbiter.is_some() {
            t.push_str(&format!(
                "arbiter = \"{}\"\n",
                self.seen_by(&me.name, ARBITER)
            ));
        }
        for m in &self.members {
            let addr = if m.name == me.name {
                m.addr
            } else {
                self.seen_by(&me.name, &m.name)
            };
            t.push_str(&format!(
                "\n[[members]]\nname = \"{}\"\naddr = \"{}\"\nkind = \"{}\"\n",
                m.name,
                addr,
                if m.failover { "failover" } else { "async" }
            ));
        }
        t
    }
}

/// The running processes.
pub struct LocalCluster {
    pub plan: Plan,
    pub dir: PathBuf,
    exe: PathBuf,
    procs: BTreeMap<String, Child>,
}

impl LocalCluster {
    /// Writes the configurations into `dir` and starts everything.
    pub fn start(exe: &Path, dir: &Path, plan: Plan) -> Result<LocalCluster> {
        fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        for m in &plan.members {
            let text = plan.config(m, &dir.join(&m.name));
            fs::write(dir.join(format!("{}.toml", m.name)), text)?;
        }
        let mut c = LocalCluster {
            plan,
            dir: dir.to_path_buf(),
            exe: exe.to_path_buf(),
            procs: BTreeMap::new(),
        };
        if c.plan.arbiter.is_some() {
            c.start_one(ARBITER)?;
        }
        let names: Vec<String> = c.plan.members.iter().map(|m| m.name.clone()).collect();
        for n in names {
            c.start_one(&n)?;
        }
        Ok(c)
    }

    /// Starts (or restarts) one process.
    pub fn start_one(&mut self, name: &str) -> Result<()> {
        if let Some(mut old) = self.procs.remove(name) {
            let _ = old.kill();
            let _ = old.wait();
        }
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("{name}.log")))?;
        let mut cmd = Command::new(&self.exe);
        if name == ARBITER {
            let addr = self.plan.arbiter.expect("planned").to_string();
            cmd.args(["arbiter", "--listen", &addr, "--data"])
                .arg(self.dir.join("arbiter"));
        } else {
            cmd.args(["member", "--config"])
                .arg(self.dir.join(format!("{name}.toml")));
        }
        let child = cmd
            .env(
                "REDOUBT_LOG",
                std::env::var("REDOUBT_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("start {name}"))?;
        self.procs.insert(name.to_string(), child);
        Ok(())
    }

    pub fn pid(&self, name: &str) -> Option<u32> {
        self.procs.get(name).map(Child::id)
    }

    fn signal(&self, name: &str, sig: &str) -> Result<()> {
        let pid = self
            .pid(name)
            .with_context(|| format!("{name} is not running"))?;
        let ok = Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()?
            .success();
        if !ok {
            bail!("kill {sig} {name} (pid {pid}) failed");
        }
        Ok(())
    }

    /// kill -9: a crash.
    pub fn kill(&mut self, name: &str) -> Result<()> {
        let mut child = self
            .procs
            .remove(name)
            .with_context(|| format!("{name} is not running"))?;
        child.kill()?;
        child.wait()?;
        Ok(())
    }

    /// SIGTERM and wait: a graceful stop (a primary hands over).
    pub fn stop(&mut self, name: &str, timeout: Duration) -> Result<()> {
        let mut child = self
            .procs
            .remove(name)
            .with_context(|| format!("{name} is not running"))?;
        let pid = child.id().to_string();
        if !Command::new("kill")
            .args(["-TERM", &pid])
            .status()?
            .success()
        {
            child.kill()?;
            child.wait()?;
            bail!("kill -TERM {name} (pid {pid}) failed");
        }
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if child.try_wait()?.is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        child.kill()?;
        child.wait()?;
        bail!("{name} did not stop within {timeout:?}; killed it");
    }

    /// SIGSTOP: the process freezes with its sockets open.
    pub fn freeze(&self, name: &str) -> Result<()> {
        self.signal(name, "-STOP")
    }

    pub fn thaw(&self, name: &str) -> Result<()> {
        self.signal(name, "-CONT")
    }

    pub fn addr(&self, name: &str) -> String {
        self.plan.addr(name).to_string()
    }

    pub fn admin(&self, name: &str) -> SocketAddr {
        self.plan
            .members
            .iter()
            .find(|m| m.name == name)
            .expect("member")
            .admin
    }

    /// Every member's client address.
    pub fn addrs(&self) -> Vec<String> {
        self.plan
            .members
            .iter()
            .map(|m| m.addr.to_string())
            .collect()
    }

    pub fn status(&self, name: &str) -> Result<MemberStatus> {
        status_of(&self.addr(name), Duration::from_millis(500))
    }

    /// The member that says it is primary and takes writes, if exactly one does.
    pub fn primary(&self) -> Option<String> {
        let ps: Vec<String> = self
            .plan
            .members
            .iter()
            .filter(|m| self.procs.contains_key(&m.name))
            .filter(|m| {
                self.status(&m.name)
                    .is_ok_and(|s| s.role == "primary" && s.paused.is_none())
            })
            .map(|m| m.name.clone())
            .collect();
        (ps.len() == 1).then(|| ps[0].clone())
    }

    /// Polls `cond` until it holds or `timeout` passes.
    pub fn wait_until(
        &self,
        timeout: Duration,
        what: &str,
        mut cond: impl FnMut(&Self) -> bool,
    ) -> Result<Duration> {
        let t0 = Instant::now();
        while t0.elapsed() < timeout {
            if cond(self) {
                return Ok(t0.elapsed());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        bail!("{what}: not within {timeout:?}")
    }

    /// The last lines of a process's log, for error messages.
    pub fn log_tail(&self, name: &str, lines: usize) -> String {
        let text = fs::read_to_string(self.dir.join(format!("{name}.log"))).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Stops every process (kill -9).
    pub fn shutdown(&mut self) {
        for (_, mut c) in std::mem::take(&mut self.procs) {
            let _ = Command::new("kill")
                .args(["-CONT", &c.id().to_string()])
                .status();
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        self.shutdown();
    }
}
