//! Real `redoubt` processes for the `mirror` and `failover` scenarios: the
//! binary (found next to this runner, built if it is missing or older than
//! the runner) and a mirror of two failover members and an arbiter on
//! loopback, started with `redoubt_hub::cluster`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use redoubt_engine::client::{ClientOptions, Target};
use redoubt_hub::cluster::{LocalCluster, Plan};

use crate::scenarios::Ctx;

/// The database every mirror of the benchmarks serves (the plan's default).
pub const DB: &str = "USER";

/// The two failover members.
pub const MEMBERS: [&str; 2] = ["a", "b"];

/// The `redoubt` binary next to this runner (`target/release/redoubt`),
/// built with cargo first if it is missing or older than the runner.
pub fn redoubt_exe(ctx: &Ctx) -> Result<PathBuf> {
    let runner = std::env::current_exe().context("locate this runner's executable")?;
    let dir = runner
        .parent()
        .context("the runner's executable has no folder")?;
    let exe = dir.join("redoubt");
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let why = match (modified(&exe), modified(&runner)) {
        (None, _) => Some("missing"),
        (Some(e), Some(r)) if e < r => Some("older than this runner"),
        _ => None,
    };
    let Some(why) = why else { return Ok(exe) };
    // Same profile as the runner: target/release/redoubt for a release runner.
    let release = dir.file_name().is_some_and(|n| n == "release");
    let mut args = vec!["build"];
    if release {
        args.push("--release");
    }
    args.extend(["-p", "redoubt-hub", "--bin", "redoubt"]);
    ctx.progress(format!(
        "{} is {why}: building it with `cargo {}`",
        exe.display(),
        args.join(" ")
    ));
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(&cargo)
        .args(&args)
        .current_dir(&root)
        .status()
        .with_context(|| format!("run {} {}", cargo.to_string_lossy(), args.join(" ")))?;
    if !status.success() {
        bail!("`cargo {}` failed ({status})", args.join(" "));
    }
    if !exe.exists() {
        bail!(
            "`cargo {}` succeeded but {} is still missing (was this runner built into another target folder?)",
            args.join(" "),
            exe.display()
        );
    }
    Ok(exe)
}

/// A running mirror: two failover members with a synchronous backup and an
/// arbiter, each a `redoubt` process on loopback, in a scratch folder.
pub struct Mirror {
    // Dropped first: the processes die before their folder goes.
    pub cluster: LocalCluster,
    _dir: tempfile::TempDir,
}

impl Mirror {
    /// Starts the mirror and waits until it has a primary with an active
    /// (synchronous) backup.
    pub fn start(ctx: &Ctx, label: &str, qos_ms: u64) -> Result<Mirror> {
        let exe = redoubt_exe(ctx)?;
        let dir = ctx.fresh_dir(label)?;
        let plan = Plan::new(&MEMBERS, &[], true, qos_ms);
        let cluster = LocalCluster::start(&exe, dir.path(), plan)
            .with_context(|| format!("start a mirror with {}", exe.display()))?;
        let m = Mirror { cluster, _dir: dir };
        m.wait_synced(Duration::from_secs(30))?;
        Ok(m)
    }

    /// The members' client addresses.
    pub fn addrs(&self) -> Vec<String> {
        self.cluster.addrs()
    }

    /// Waits until one member is primary with commits waiting for an
    /// active backup.
    pub fn wait_synced(&self, timeout: Duration) -> Result<Duration> {
        self.cluster
            .wait_until(timeout, "a primary with an active backup", |c| {
                let Some(p) = c.primary() else { return false };
                c.status(&p).is_ok_and(|s| s.sync)
                    && MEMBERS.iter().any(|m| {
                        *m != p
                            && c.status(m)
                                .is_ok_and(|s| s.role == "backup" && s.active_backup)
                    })
            })
            .with_context(|| format!("{}\n{}", self.statuses(), self.logs()))
    }

    /// One line per failover member: role, sync, active backup, pause.
    pub fn statuses(&self) -> String {
        MEMBERS
            .iter()
            .map(|n| match self.cluster.status(n) {
                Ok(s) => format!(
                    "{n}: role {} epoch {} sync {} active_backup {} paused {:?} journal_durable {} witness {:?}",
                    s.role, s.epoch, s.sync, s.active_backup, s.paused, s.journal_durable, s.witness
                ),
                Err(e) => format!("{n}: status unavailable: {e}"),
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The last lines of every process's log, for error messages.
    pub fn logs(&self) -> String {
        MEMBERS
            .iter()
            .chain(std::iter::once(&redoubt_hub::cluster::ARBITER))
            .map(|m| format!("--- {m} ---\n{}", self.cluster.log_tail(m, 15)))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Client options of the benchmark clients: they want the primary.
pub fn client_options(name: String) -> ClientOptions {
    ClientOptions {
        name,
        target: Target::Primary,
        primary_wait: Duration::from_secs(10),
        ..ClientOptions::default()
    }
}
