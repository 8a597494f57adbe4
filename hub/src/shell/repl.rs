//! The read-eval-print loop shared by `redoubt local` and `redoubt shell`.

use std::io::{BufRead, IsTerminal, Write};

use anyhow::Result;

use super::{command, exec};

/// Runs `commands`, or (if empty) lines from stdin with a prompt when it
/// is a terminal. Errors are printed and counted; returns whether any
/// command failed.
pub fn run(g: &mut dyn exec::Globals, db: &str, commands: &[String], prompt: &str) -> Result<bool> {
    let mut failed = false;
    let mut one = |line: &str| {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            return;
        }
        let result = command::parse(line)
            .map_err(anyhow::Error::from)
            .and_then(|c| exec::run(g, db, &c));
        match result {
            Ok(lines) => lines.iter().for_each(|l| println!("{l}")),
            Err(e) => {
                eprintln!("error: {e:#}");
                failed = true;
            }
        }
    };
    if !commands.is_empty() {
        commands.iter().for_each(|c| one(c));
        return Ok(failed);
    }
    let stdin = std::io::stdin();
    let interactive = stdin.is_terminal();
    loop {
        if interactive {
            print!("{prompt}> ");
            std::io::stdout().flush()?;
        }
        let mut line = String::new();
        if stdin.lock().read_line(&mut line)? == 0 {
            break;
        }
        one(&line);
    }
    Ok(failed)
}
