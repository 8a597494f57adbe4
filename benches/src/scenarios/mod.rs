//! The scenarios the runner knows. Adding one: write `scenarios/NAME.rs`
//! with a `pub const SCENARIO: Scenario` made of [`Part`]s, and list it in
//! [`ALL`].

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};

use crate::report::Report;

pub mod engine;
pub mod failover;
pub mod mirror;

pub const ALL: &[Scenario] = &[engine::SCENARIO, mirror::SCENARIO, failover::SCENARIO];

pub struct Scenario {
    /// What the user types: `cargo run --release -p redoubt-benches -- NAME`.
    pub name: &'static str,
    /// One line for `--help`.
    pub about: &'static str,
    /// Run in order; each adds its own section(s) to the report.
    pub parts: &'static [Part],
}

/// A piece of a scenario that can run alone (`--part NAME`).
pub struct Part {
    pub name: &'static str,
    pub run: fn(&Ctx, &mut Report) -> Result<()>,
}

pub fn find(name: &str) -> Option<&'static Scenario> {
    ALL.iter().find(|s| s.name == name)
}

/// What every scenario gets from the runner.
pub struct Ctx {
    /// Smoke-run sizes: the whole scenario in under a minute.
    pub quick: bool,
    /// Where fresh store folders are made (on a real disk: fsync must cost
    /// what it costs).
    pub scratch: PathBuf,
    /// When the scenario started, for progress lines.
    pub started: Instant,
}

impl Ctx {
    /// A fresh empty folder, removed when dropped (kept, and its path
    /// printed, when `REDOUBT_BENCH_KEEP` is set: for reading the logs of
    /// the processes the mirror and failover scenarios start).
    pub fn fresh_dir(&self, label: &str) -> Result<tempfile::TempDir> {
        let keep = std::env::var_os("REDOUBT_BENCH_KEEP").is_some();
        let dir = tempfile::Builder::new()
            .prefix(&format!("redoubt-bench-{label}-"))
            .disable_cleanup(keep)
            .tempdir_in(&self.scratch)
            .with_context(|| format!("make a scratch folder in {}", self.scratch.display()))?;
        if keep {
            self.progress(format!("keeping {}", dir.path().display()));
        }
        Ok(dir)
    }

    /// `full` normally, `quick` with `--quick`.
    pub fn pick<T>(&self, full: T, quick: T) -> T {
        if self.quick {
            quick
        } else {
            full
        }
    }

    /// A progress line on stderr (the table goes to stdout).
    pub fn progress(&self, line: impl AsRef<str>) {
        eprintln!(
            "  [{:6.1} s] {}",
            self.started.elapsed().as_secs_f64(),
            line.as_ref()
        );
    }
}
