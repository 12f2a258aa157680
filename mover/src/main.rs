//! `sluice-mover`: a restic-compatible command line over sluice-repo, and
//! the `job` entry point that Sluice's mover Pods run.
//!
//! Flags, environment variables, output shapes and exit codes follow
//! restic's, so people and scripts that know restic know this tool.

mod args;
mod commands;
mod exit;
mod output;
mod progress;
mod repo_open;

use clap::Parser;

fn main() {
    let cli = args::Cli::parse();
    output::init_logging(cli.global.verbose, cli.global.json);
    let termination_log = cli.global.termination_log.clone();
    let code = match commands::run(cli) {
        Ok(code) => code,
        Err(e) => exit::report(&e, termination_log.as_deref()),
    };
    std::process::exit(code);
}
