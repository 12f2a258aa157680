//! `kubectl sluice`: Sluice's kubectl plugin. It reads and triggers ReplicationSources and
//! ReplicationDestinations through the API server, and opens their repositories from this
//! machine with the repository Secret's values, which it never prints.
//!
//! Verbs live in `status`, `sync`, `restore`, `browse`, `doctor` and `migrate`; `cli` is the command line, `cluster` the API
//! side, `repository` the repository side, `output` the printing they share.

mod browse;
mod cli;
mod cluster;
mod doctor;
mod in_cluster;
mod migrate;
mod output;
mod repository;
mod restore;
mod status;
mod sync;

use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Command, EXIT_FAILED, EXIT_USAGE, MigrateCommand};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let code = if error.use_stderr() { EXIT_USAGE } else { 0 };
            let _ = error.print();
            return ExitCode::from(code);
        }
    };
    let (global, command) = (cli.global, cli.command);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the I/O runtime: {error}");
            return ExitCode::from(EXIT_FAILED);
        }
    };
    match runtime.block_on(run(&global, command)) {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(EXIT_FAILED)
        }
    }
}

async fn run(global: &cli::Global, command: Command) -> anyhow::Result<u8> {
    // Connected per verb: `migrate` reads no cluster and needs no kubeconfig.
    let connect = || cluster::Cluster::connect(global);
    let output = global.output;
    match command {
        Command::Status(args) => status::run(&connect().await?, &args, output).await,
        Command::Sync(args) => sync::run(&connect().await?, &args, output).await,
        Command::Snapshots(args) => browse::snapshots(&connect().await?, &args, output).await,
        Command::Ls(args) => browse::ls(&connect().await?, &args, output).await,
        Command::Dump(args) => browse::dump(&connect().await?, &args).await,
        Command::Restore(args) => restore::run(&connect().await?, &args, output).await,
        Command::Unlock(args) => browse::unlock(&connect().await?, &args).await,
        Command::Doctor(args) => doctor::run(&connect().await?, &args, output).await,
        Command::Migrate(MigrateCommand::Volsync(args)) | Command::ConvertVolsync(args) => {
            migrate::run(&args)
        }
    }
}
