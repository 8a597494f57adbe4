//! PostgreSQL 15 with a synchronous standby on loopback, the peer of the
//! `mirror` scenario: a primary made with `initdb`, a standby made from it
//! with `pg_basebackup -R`, `synchronous_standby_names = '*'` and
//! `synchronous_commit = on` (a commit returns once the standby has flushed
//! its WAL), `fsync = on`. The server refuses to run as root, so as root
//! every server program runs as the `postgres` user (`runuser`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::scenarios::Ctx;

pub const NAME: &str = "postgres";

/// Where Debian puts the PostgreSQL 15 server programs.
pub const BIN: &str = "/usr/lib/postgresql/15/bin";

/// Why the peer cannot run here, if it cannot.
pub fn unavailable() -> Option<String> {
    let missing: Vec<&str> = ["initdb", "pg_ctl", "pg_basebackup", "postgres"]
        .into_iter()
        .filter(|p| !Path::new(BIN).join(p).exists())
        .collect();
    if !missing.is_empty() {
        return Some(format!(
            "PostgreSQL 15 server programs not found in {BIN} ({}); install them with \
             `apt-get install postgresql-15`",
            missing.join(", ")
        ));
    }
    if is_root()
        && Command::new("id")
            .arg("postgres")
            .output()
            .map_or(true, |o| !o.status.success())
    {
        return Some("running as root and there is no `postgres` user to run the server as".into());
    }
    None
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// A running primary + synchronous standby.
pub struct PgPair {
    primary: PathBuf,
    standby: PathBuf,
    pub port: u16,
    as_postgres: bool,
    // Last: removed after the servers stop (in `drop`).
    dir: tempfile::TempDir,
}

impl PgPair {
    pub fn start(ctx: &Ctx) -> Result<PgPair> {
        let dir = ctx.fresh_dir("postgres")?;
        let as_postgres = is_root();
        if as_postgres {
            run(Command::new("chown").args(["postgres:", &dir.path().to_string_lossy()]))?;
        }
        let port = redoubt_hub::cluster::free_port().port();
        let standby_port = redoubt_hub::cluster::free_port().port();
        let pair = PgPair {
            primary: dir.path().join("primary"),
            standby: dir.path().join("standby"),
            port,
            as_postgres,
            dir,
        };
        let d = pair.dir.path().to_string_lossy().into_owned();
        let primary = pair.primary.to_string_lossy().into_owned();
        let standby = pair.standby.to_string_lossy().into_owned();
        // --no-sync: initdb's own files only; the server fsyncs as usual.
        pair.pg(
            "initdb",
            &[
                "-D",
                &primary,
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
                "--no-instructions",
            ],
        )?;
        let conf = format!(
            "\n# redoubt-benches\nlisten_addresses = '127.0.0.1'\nport = {port}\n\
             unix_socket_directories = '{d}'\nwal_level = replica\nmax_wal_senders = 4\n\
             max_connections = 100\nfsync = on\nsynchronous_commit = on\n\
             synchronous_standby_names = '*'\n"
        );
        pair.append(&pair.primary.join("postgresql.conf"), &conf)?;
        let log = format!("{d}/primary.log");
        pair.pg(
            "pg_ctl",
            &["-D", &primary, "-l", &log, "-w", "-t", "60", "start"],
        )?;
        pair.pg(
            "pg_basebackup",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-U",
                "postgres",
                "-D",
                &standby,
                "-R",
                "-X",
                "stream",
                "-c",
                "fast",
            ],
        )?;
        let log = format!("{d}/standby.log");
        let opts = format!("-p {standby_port} -k {d}");
        pair.pg(
            "pg_ctl",
            &[
                "-D", &standby, "-l", &log, "-o", &opts, "-w", "-t", "60", "start",
            ],
        )?;
        // The first commit waits for the standby: it is in sync after this.
        let mut c = pair.connect()?;
        c.batch_execute("CREATE TABLE kv (k bytea PRIMARY KEY, v bytea NOT NULL)")
            .context("create the table on the primary")?;
        let t0 = Instant::now();
        loop {
            let rows = c.query("SELECT sync_state FROM pg_stat_replication", &[])?;
            let states: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
            if states.iter().any(|s| s == "sync") {
                break;
            }
            if t0.elapsed() > Duration::from_secs(30) {
                bail!(
                    "the standby is not synchronous after 30 s (pg_stat_replication: {states:?})"
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(pair)
    }

    pub fn conninfo(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user=postgres dbname=postgres",
            self.port
        )
    }

    pub fn connect(&self) -> Result<postgres::Client> {
        postgres::Client::connect(&self.conninfo(), postgres::NoTls)
            .with_context(|| format!("connect to PostgreSQL at {}", self.conninfo()))
    }

    /// Whether the standby is still a synchronous standby.
    pub fn standby_in_sync(&self) -> Result<bool> {
        let mut c = self.connect()?;
        let rows = c.query(
            "SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync'",
            &[],
        )?;
        Ok(rows[0].get::<_, i64>(0) == 1)
    }

    /// Runs a PostgreSQL program, as `postgres` when we are root.
    fn pg(&self, prog: &str, args: &[&str]) -> Result<()> {
        let path = Path::new(BIN).join(prog);
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&path);
            c
        } else {
            Command::new(&path)
        };
        cmd.args(args).current_dir(self.dir.path());
        run(&mut cmd).with_context(|| {
            let log = |n: &str| {
                std::fs::read_to_string(self.dir.path().join(n))
                    .map(|t| {
                        let l: Vec<&str> = t.lines().collect();
                        l[l.len().saturating_sub(10)..].join("\n")
                    })
                    .unwrap_or_default()
            };
            format!(
                "{prog} failed\n--- primary.log ---\n{}\n--- standby.log ---\n{}",
                log("primary.log"),
                log("standby.log")
            )
        })
    }

    fn append(&self, file: &Path, text: &str) -> Result<()> {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(file)
            .with_context(|| format!("open {}", file.display()))?;
        f.write_all(text.as_bytes())?;
        Ok(())
    }
}

impl Drop for PgPair {
    fn drop(&mut self) {
        for d in [&self.standby, &self.primary] {
            if d.join("postmaster.pid").exists() {
                let d = d.to_string_lossy().into_owned();
                let _ = self.pg("pg_ctl", &["-D", &d, "-m", "immediate", "-w", "stop"]);
            }
        }
    }
}

/// Runs a command; an error with its output if it fails.
fn run(cmd: &mut Command) -> Result<()> {
    let out = cmd
        .output()
        .with_context(|| format!("run {:?}", cmd.get_program()))?;
    if !out.status.success() {
        bail!(
            "{:?} {:?} failed ({}):\n{}{}",
            cmd.get_program(),
            cmd.get_args().collect::<Vec<_>>(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}
