//! `redoubt member` and `redoubt arbiter`: run a service until SIGTERM or
//! SIGINT. A member stopped that way while primary with an active backup
//! hands over to the backup first (planned failover); `kill -9` is a crash.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use redoubt_engine::arbiter::{self, ArbiterOptions};
use redoubt_engine::mirror::Member;

use crate::config::MemberFile;

fn termination_flag() -> Result<Arc<AtomicBool>> {
    let flag = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, flag.clone()).context("install signal handlers")?;
    }
    Ok(flag)
}

pub fn member(config: &Path, reseed: bool) -> Result<()> {
    let file = MemberFile::load(config)?;
    let cfg = file.to_config().map_err(anyhow::Error::msg)?;
    if reseed {
        match redoubt_engine::mirror::seed::set_aside(&cfg.data_dir)
            .with_context(|| format!("set aside the store in {}", cfg.data_dir.display()))?
        {
            Some(to) => eprintln!(
                "moved the old store to {}; seeding from the primary",
                to.display()
            ),
            None => eprintln!(
                "no store in {}; seeding from the primary",
                cfg.data_dir.display()
            ),
        }
    }
    let stop = termination_flag()?;
    let member = Member::start(cfg).with_context(|| format!("start member {}", file.name))?;
    eprintln!(
        "redoubt member {} of mirror {} listening on {}",
        file.name,
        file.mirror,
        member.local_addr()
    );
    if let Some(addr) = &file.admin {
        let listener =
            TcpListener::bind(addr).with_context(|| format!("admin API: listen on {addr}"))?;
        let source: crate::admin::StatusSource = member.status_source();
        let actions = Some(member.actions());
        let stop = stop.clone();
        std::thread::spawn(move || crate::admin::serve(listener, source, actions, stop));
        eprintln!("admin API on http://{addr}/status");
    }
    while !stop.load(Ordering::SeqCst) && !member.stopped() {
        std::thread::sleep(Duration::from_millis(20));
    }
    member.shutdown(true);
    stop.store(true, Ordering::SeqCst);
    Ok(())
}

pub fn arbiter(listen: &str, data: &PathBuf) -> Result<()> {
    std::fs::create_dir_all(data).with_context(|| format!("create {}", data.display()))?;
    let stop = termination_flag()?;
    let listener = TcpListener::bind(listen).with_context(|| format!("listen on {listen}"))?;
    let handle = arbiter::serve(listener, data, ArbiterOptions::default())
        .with_context(|| format!("start the arbiter on {}", data.display()))?;
    eprintln!("redoubt arbiter listening on {}", handle.local_addr());
    while !stop.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(50));
    }
    handle.shutdown();
    Ok(())
}
