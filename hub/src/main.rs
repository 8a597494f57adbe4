//! `redoubt`: one binary for every role and every operator action.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use redoubt_engine::client::{Client, ClientOptions, Target};
use redoubt_engine::{Engine, EngineOptions};
use redoubt_hub::shell::repl;
use redoubt_hub::{demo, load};

/// mimalloc instead of the system allocator: the engine's pool holds its
/// pages in many small allocations, and GETs from cache ran about 15%
/// faster with it (`benches/README.md`, "Allocator").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// Walk through a mirror on this machine: write on the primary, read
    /// on the backup, kill the primary, watch the failover, rejoin.
    Demo {
        /// Walk through one member's storage engine instead: globals,
        /// transactions, and a kill -9 with recovery.
        #[arg(long)]
        engine: bool,
    },
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
    /// Run commands on a mirror over the network: writes go to the primary,
    /// found among the addresses given (and again after a failover).
    Shell {
        /// Member addresses, comma-separated.
        #[arg(long, value_delimiter = ',', required = true)]
        connect: Vec<String>,
        #[arg(long, default_value = "USER")]
        db: String,
        #[arg(short = 'c', long = "command")]
        commands: Vec<String>,
        /// Stay on the first member that answers, whatever its role (to
        /// read a backup or async copy).
        #[arg(long)]
        any: bool,
    },
    /// Run a mirror member from a TOML configuration.
    Member {
        #[arg(long)]
        config: PathBuf,
        /// Move this member's store aside (into `<data>/discarded-<time>/`)
        /// and take a fresh copy from the primary: for a member whose copy
        /// cannot be trusted (its journal differs from the primary's).
        #[arg(long)]
        reseed: bool,
    },
    /// Run the arbiter: the witness that decides failovers, for any number
    /// of mirrors.
    Arbiter {
        #[arg(long, default_value = "0.0.0.0:7700")]
        listen: String,
        #[arg(long)]
        data: PathBuf,
    },
    /// A table of the mirror's members: role, state, epoch, positions, lag.
    List {
        /// One or more member addresses, comma-separated.
        #[arg(long, value_delimiter = ',', required = true)]
        connect: Vec<String>,
        #[arg(long)]
        json: bool,
    },
    /// Planned switchover: the primary hands over to its active backup and
    /// follows it. No acknowledged write is lost; refused (with the reason)
    /// when the backup is not active.
    Switchover {
        #[arg(long, value_delimiter = ',', required = true)]
        connect: Vec<String>,
    },
    /// Manual failover: make MEMBER primary when the primary is gone. Says
    /// what may be lost and asks first unless --yes.
    Failover {
        #[arg(long)]
        to: String,
        #[arg(long, value_delimiter = ',', required = true)]
        connect: Vec<String>,
        #[arg(long)]
        yes: bool,
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
        /// Commit every transaction pipelined, acknowledging each once the
        /// next is built (`Session::tcommit_pipelined`).
        #[arg(long)]
        pipelined: bool,
        /// A 512 KiB pool, and a key far from the others in every commit:
        /// new keys wait in the insert buffer.
        #[arg(long)]
        scatter: bool,
    },
}

fn main() -> ExitCode {
    redoubt_hub::allocator::tune_mimalloc();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("REDOUBT_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Demo { engine: false } => demo::run(),
        Cmd::Demo { engine: true } => demo::engine::run(),
        Cmd::Local { data, db, commands } => local(data, &db, commands),
        Cmd::Check { data } => check(data),
        Cmd::Shell {
            connect,
            db,
            commands,
            any,
        } => shell(&connect, &db, commands, any),
        Cmd::Member { config, reseed } => redoubt_hub::cmd::services::member(&config, reseed),
        Cmd::Arbiter { listen, data } => redoubt_hub::cmd::services::arbiter(&listen, &data),
        Cmd::List { connect, json } => redoubt_hub::cmd::list::run(&connect, json),
        Cmd::Switchover { connect } => redoubt_hub::cmd::actions::switchover(&connect),
        Cmd::Failover { to, connect, yes } => {
            redoubt_hub::cmd::actions::failover(&connect, &to, yes)
        }
        Cmd::WriteLoad {
            data,
            threads,
            commits,
            pipelined,
            scatter,
        } => load::run_writers(
            &data,
            threads,
            commits,
            load::LoadShape { pipelined, scatter },
        ),
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
    let failed = repl::run(&mut session, db, &commands, db)?;
    drop(session);
    engine.close()?;
    if failed {
        anyhow::bail!("some commands failed");
    }
    Ok(())
}

fn shell(connect: &[String], db: &str, commands: Vec<String>, any: bool) -> Result<()> {
    let opts = ClientOptions {
        name: "redoubt-shell".into(),
        target: if any { Target::Any } else { Target::Primary },
        primary_wait: std::time::Duration::from_secs(10),
        ..ClientOptions::default()
    };
    let mut client = Client::connect(connect, opts).context("connect to the mirror")?;
    if let Some(w) = client.welcome() {
        eprintln!(
            "connected to {} ({}, epoch {}) of mirror {}",
            w.member, w.role, w.epoch, w.mirror
        );
    }
    let prompt = client
        .welcome()
        .map(|w| format!("{}:{db}", w.member))
        .unwrap_or_else(|| db.to_string());
    if repl::run(&mut client, db, &commands, &prompt)? {
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
