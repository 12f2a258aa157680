//! Runs the node emulator against a cluster until Ctrl-C, for `make demo`
//! and for exploring by hand next to `sluice-e2e-cluster`.
//!
//! usage: sluice-node-emulator --kubeconfig FILE --root DIR [--program NAME=PATH]...

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;

use sluice_e2e::node::{self, Config};

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let (kubeconfig, config) = match parse_args() {
        Ok(parsed) => parsed,
        Err(message) => {
            eprintln!("sluice-node-emulator: {message}");
            eprintln!(
                "usage: sluice-node-emulator --kubeconfig FILE --root DIR [--program NAME=PATH]..."
            );
            return ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("cannot start the tokio runtime");
    let result = runtime.block_on(async {
        let client = node::client(&kubeconfig).await?;
        tokio::select! {
            result = node::run(client, config) => result,
            _ = tokio::signal::ctrl_c() => Ok(()),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sluice-node-emulator: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn parse_args() -> Result<(PathBuf, Config), String> {
    let mut args = std::env::args().skip(1);
    let (mut kubeconfig, mut root, mut programs) = (None, None, HashMap::new());
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--kubeconfig" => kubeconfig = Some(PathBuf::from(value()?)),
            "--root" => root = Some(PathBuf::from(value()?)),
            "--program" => {
                let pair = value()?;
                let (name, path) = pair
                    .split_once('=')
                    .ok_or(format!("--program {pair}: expected NAME=PATH"))?;
                programs.insert(name.to_string(), PathBuf::from(path));
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    let kubeconfig = kubeconfig.ok_or("--kubeconfig is required")?;
    let root = root.ok_or("--root is required")?;
    Ok((kubeconfig, Config { root, programs }))
}
