//! `redoubt`: one binary for every role and every operator action.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use redoubt_engine::{Engine, EngineOptions};
use redoubt_hub::shell::{command, exec};
use redoubt_hub::{demo, load};

#[derive(Parser)]
#[command(
    name = "redoubt",
    version,
    about = "A mirrored database engine and disaster-recovery hub"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Walk through what the engine does, on a temporary data directory:
    /// globals, transactions, and a kill -9 with recovery.
    Demo,
    /// Run commands on a data directory opened in this process (no server).
    Local {
        /// The member's data directory (created if missing).
        #[arg(long)]
        data: PathBuf,
        /// The database to work in (created if missing).
        #[arg(long, default_value = "USER")]
        db: String,
        /// A command to run; repeat for several. Without -c, reads commands
        /// from standard input, one per line.
        #[arg(short = 'c', long = "command")]
        commands: Vec<String>,
    },
    /// Recover a data directory if needed and verify every database's
    /// structure.
    Check {
        #[arg(long)]
        data: PathBuf,
    },
    /// A write load that prints every acknowledged commit (for crash tests).
    #[command(hide = true)]
    WriteLoad {
        #[arg(long)]
        data: PathBuf,
        #[arg(long, default_value_t = 4)]
        threads: u32,
        #[arg(long, default_value_t = u64::MAX / 4)]
        commits: u64,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("REDOUBT_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Demo => demo::run(),
        Cmd::Local { data, db, commands } => local(data, &db, commands),
        Cmd::Check { data } => check(data),
        Cmd::WriteLoad {
            data,
            threads,
            commits,
        } => load::run_writers(&data, threads, commits),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn local(data: PathBuf, db: &str, commands: Vec<String>) -> Result<()> {
    let (engine, _) = Engine::open(&data, EngineOptions::default())
        .with_context(|| format!("open data directory {}", data.display()))?;
    if !engine.database_names().iter().any(|d| d == db) {
        engine.create_database(db)?;
    }
    let mut session = engine.session();
    let mut failed = false;
    let mut run_line = |line: &str| {
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            return;
        }
        match command::parse(line)
            .map_err(anyhow::Error::from)
            .and_then(|c| exec::run(&mut session, db, &c).map_err(anyhow::Error::from))
        {
            Ok(lines) => lines.iter().for_each(|l| println!("{l}")),
            Err(e) => {
                eprintln!("error: {e}");
                failed = true;
            }
        }
    };
    if commands.is_empty() {
        let stdin = std::io::stdin();
        let interactive = stdin.is_terminal();
        loop {
            if interactive {
                print!("{db}> ");
                std::io::stdout().flush()?;
            }
            let mut line = String::new();
            if stdin.lock().read_line(&mut line)? == 0 {
                break;
            }
            run_line(&line);
        }
    } else {
        for c in &commands {
            run_line(c);
        }
    }
    drop(session);
    engine.close()?;
    if failed {
        anyhow::bail!("some commands failed");
    }
    Ok(())
}

fn check(data: PathBuf) -> Result<()> {
    let (engine, report) = Engine::open(&data, EngineOptions::default())
        .with_context(|| format!("open data directory {}", data.display()))?;
    println!(
        "recovery: write image journal {:?}, {} page(s) restored, {} journal record(s) replayed from {} to {}, {} torn journal byte(s) dropped, {} transaction(s) rolled back",
        report.wij.expect("set by recovery"),
        report.restored_pages,
        report.records_replayed,
        report.replay_from,
        report.replay_to,
        report.journal_dropped_bytes,
        report.rolled_back.len()
    );
    println!(
        "{:<16} {:>10} {:>8} {:>9} {:>9} {:>6} {:>6}",
        "DATABASE", "NODES", "LEAVES", "BRANCHES", "OVERFLOW", "FREE", "DEPTH"
    );
    for (name, c) in engine.check()? {
        println!(
            "{:<16} {:>10} {:>8} {:>9} {:>9} {:>6} {:>6}",
            name, c.entries, c.leaves, c.branches, c.overflow_pages, c.free_pages, c.depth
        );
    }
    engine.close()?;
    Ok(())
}
