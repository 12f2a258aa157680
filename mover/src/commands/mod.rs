//! One module per command; `run` dispatches and returns the exit code.

mod backup;
mod init;
mod restore;
mod snapshots;

use anyhow::Result;
use sluice_repo::Repository;
use sluice_repo::lock::{Lock, LockOptions};

use crate::args::{Cli, Command, Global};

/// Runs the command and returns the process exit code.
pub fn run(cli: Cli) -> Result<i32> {
    let g = &cli.global;
    match cli.command {
        Command::Init => init::run(g),
        Command::Backup(a) => backup::run(g, &a),
        Command::Restore(a) => restore::run(g, &a),
        Command::Snapshots(a) => snapshots::run(g, &a),
    }
}

/// Takes the lock a command needs, unless `--no-lock`.
pub fn lock(repo: &Repository, g: &Global, exclusive: bool) -> Result<Option<Lock>> {
    if g.no_lock {
        return Ok(None);
    }
    let mut opts = if exclusive {
        LockOptions::exclusive()
    } else {
        LockOptions::shared()
    };
    opts.retry = g.retry_lock;
    Ok(Some(Lock::acquire(repo, &opts)?))
}
