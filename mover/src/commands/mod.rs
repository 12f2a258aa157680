//! One module per command; `run` dispatches and returns the exit code.
//!
//! Each command parses its flags into typed options, opens the repository
//! once ([`crate::repo_open::RepoConfig`]) and calls its core, a function
//! that takes the open repository and those options; `job` calls the same
//! cores on one handle, so a Job derives the key once.

mod backup;
mod browse;
mod check;
mod forget;
mod init;
mod job;
mod prune;
mod repair;
mod restore;
mod snapshots;
mod unlock;

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
        Command::Ls(a) => browse::ls(g, &a),
        Command::Dump(a) => browse::dump(g, &a),
        Command::Job => job::run(g),
        Command::Forget(a) => forget::run(g, &a),
        Command::Prune(a) => prune::run(g, &a),
        Command::Check(a) => check::run(g, &a),
        Command::Unlock(a) => unlock::run(g, &a),
        Command::Version => {
            println!("{}", version_line());
            Ok(0)
        }
        Command::Repair(c) => repair::run(g, &c),
    }
}

/// What `version` prints: which build this is and which repositories it
/// reads, for bug reports and for checking an image's contents.
fn version_line() -> String {
    format!(
        "sluice-mover {} (restic repository format 1 and 2) on {}/{}",
        env!("CARGO_PKG_VERSION"),
        std::env::consts::OS,
        std::env::consts::ARCH
    )
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
    if let Some(hostname) = &g.lock_hostname {
        opts.hostname = hostname.clone();
    }
    Ok(Some(Lock::acquire(repo, &opts)?))
}
