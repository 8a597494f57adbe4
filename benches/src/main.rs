//! The benchmark runner: one command for every scenario.
//!
//! ```text
//! cargo run --release -p redoubt-benches -- SCENARIO [--quick] [--json FILE] [--part PART]...
//! ```
//!
//! See `benches/README.md` for what each figure means.

mod hub;
mod peers;
mod redoubt;
mod report;
mod scenarios;
mod store;
mod workload;

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};

/// Every store in a run shares one allocator: mimalloc, as the `redoubt`
/// binary uses (`README.md`, "Allocator").
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use clap::builder::PossibleValuesParser;
use clap::Parser;

use report::Report;
use scenarios::Ctx;

#[derive(Parser)]
#[command(about = "Runs a redoubt benchmark scenario and prints its figures")]
struct Cli {
    /// The scenario to run.
    #[arg(value_parser = PossibleValuesParser::new(scenarios::ALL.iter().map(|s| s.name)))]
    scenario: String,
    /// Small sizes: the whole scenario finishes in under a minute.
    #[arg(long)]
    quick: bool,
    /// Also write the figures as JSON to this file.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Run only these parts of the scenario (repeatable; default: all).
    #[arg(long = "part", value_name = "PART")]
    parts: Vec<String>,
    /// Folder for the stores' scratch files (default: the system temp
    /// folder). Must be on a real disk, not tmpfs.
    #[arg(long, value_name = "DIR")]
    scratch: Option<PathBuf>,
}

fn main() -> Result<()> {
    // As the `redoubt` binary runs (`redoubt_hub::allocator`).
    #[cfg(feature = "mimalloc")]
    redoubt_hub::allocator::tune_mimalloc();
    let cli = Cli::parse();
    let scenario = scenarios::find(&cli.scenario).context("unknown scenario")?;
    let ctx = Ctx {
        quick: cli.quick,
        scratch: cli.scratch.unwrap_or_else(std::env::temp_dir),
        started: Instant::now(),
    };
    for p in &cli.parts {
        if !scenario.parts.iter().any(|q| q.name == p) {
            let known: Vec<&str> = scenario.parts.iter().map(|q| q.name).collect();
            bail!(
                "scenario {} has no part {p:?} (parts: {})",
                scenario.name,
                known.join(", ")
            );
        }
    }
    let mode = if ctx.quick { "quick" } else { "full" };
    eprintln!("scenario {} ({mode}): {}", scenario.name, scenario.about);
    let mut report = Report::new(scenario.name);
    for part in scenario.parts {
        if cli.parts.is_empty() || cli.parts.iter().any(|p| p == part.name) {
            ctx.progress(format!("part {}", part.name));
            (part.run)(&ctx, &mut report)
                .with_context(|| format!("scenario {}, part {}", scenario.name, part.name))?;
        }
    }
    report.note(format!(
        "scenario {} ({mode}) took {:.1} s on {} CPUs",
        scenario.name,
        ctx.started.elapsed().as_secs_f64(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    ));
    print!("{}", report.table());
    if let Some(path) = &cli.json {
        report.write_json(path)?;
        eprintln!("figures written to {}", path.display());
    }
    Ok(())
}
