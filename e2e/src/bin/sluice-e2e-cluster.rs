//! Starts the local control plane and MinIO (and, with `--node`, the node
//! emulator) and keeps them up until Ctrl-C, for `make demo` and for
//! exploring by hand.
//!
//! usage: sluice-e2e-cluster [--env-file FILE] [--node [--program NAME=PATH]...]
//!
//! `--env-file FILE` also writes the connection details as shell variable
//! assignments once everything is ready, so a script can wait for the file
//! and source it.

use std::collections::HashMap;
use std::fs;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use sluice_e2e::{Cluster, NodeEmulator};
use sluice_testkit::MinIo;

/// What the command line asks for.
struct Args {
    env_file: Option<PathBuf>,
    node: bool,
    programs: HashMap<String, PathBuf>,
}

fn main() -> ExitCode {
    let Args {
        env_file,
        node,
        programs,
    } = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("sluice-e2e-cluster: {message}");
            eprintln!(
                "usage: sluice-e2e-cluster [--env-file FILE] [--node [--program NAME=PATH]...]"
            );
            return ExitCode::from(2);
        }
    };
    // Block the stop signals before any thread exists so that every thread
    // inherits the mask and sigwait below is the only place they arrive;
    // children unblock them again (see process::Daemon::spawn).
    let stop_signals = stop_signals();
    // SAFETY: called before any other thread is started.
    unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &stop_signals, std::ptr::null_mut()) };

    let started = Instant::now();
    eprintln!(
        "starting MinIO and the control plane (etcd, kube-apiserver, kube-controller-manager)..."
    );
    let minio = MinIo::start();
    let cluster = Cluster::start();
    let node = node.then(|| NodeEmulator::start(&cluster, programs));
    let settings = format!(
        "KUBECONFIG={}\nSLUICE_MINIO_ENDPOINT={}\nAWS_ACCESS_KEY_ID={}\nAWS_SECRET_ACCESS_KEY={}\nAWS_DEFAULT_REGION={}\n",
        cluster.kubeconfig().display(),
        minio.endpoint(),
        MinIo::ACCESS_KEY,
        MinIo::SECRET_KEY,
        MinIo::REGION,
    );
    if let Some(path) = &env_file {
        // Write then rename, so a script polling for the file never reads
        // half of it.
        let partial = path.with_extension("partial");
        if let Err(e) = fs::write(&partial, &settings).and_then(|()| fs::rename(&partial, path)) {
            eprintln!("sluice-e2e-cluster: cannot write {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    }
    println!("ready in {:.1}s", started.elapsed().as_secs_f64());
    println!("kubeconfig:     {}", cluster.kubeconfig().display());
    println!("API server:     {}", cluster.server_url());
    println!(
        "MinIO endpoint: {} (access key {}, secret key {})",
        minio.endpoint(),
        MinIo::ACCESS_KEY,
        MinIo::SECRET_KEY
    );
    println!(
        "logs:           {} and {}",
        cluster.dir().display(),
        minio.log_path().display()
    );
    if let Some(node) = &node {
        println!(
            "node emulator:  volumes, snapshots and pod logs under {}",
            node.root().display()
        );
    }
    println!(
        "\nin another shell:\n  export KUBECONFIG={}\n  kubectl get namespaces",
        cluster.kubeconfig().display()
    );
    println!("\nCtrl-C stops everything and deletes its data.");

    let mut signal = 0;
    // SAFETY: the set is initialised and the signals are blocked.
    unsafe { libc::sigwait(&stop_signals, &mut signal) };
    eprintln!("stopping...");
    drop(node);
    drop(cluster);
    drop(minio);
    if let Some(path) = &env_file {
        let _ = fs::remove_file(path);
    }
    ExitCode::SUCCESS
}

fn parse_args() -> Result<Args, String> {
    let mut args = std::env::args().skip(1);
    let mut parsed = Args {
        env_file: None,
        node: false,
        programs: HashMap::new(),
    };
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--env-file" => {
                parsed.env_file =
                    Some(PathBuf::from(args.next().ok_or("--env-file needs a path")?));
            }
            "--node" => parsed.node = true,
            "--program" => {
                let pair = args.next().ok_or("--program needs NAME=PATH")?;
                let (name, path) = pair
                    .split_once('=')
                    .ok_or(format!("--program {pair}: expected NAME=PATH"))?;
                parsed
                    .programs
                    .insert(name.to_string(), PathBuf::from(path));
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if !parsed.programs.is_empty() && !parsed.node {
        return Err("--program only makes sense with --node".into());
    }
    Ok(parsed)
}

fn stop_signals() -> libc::sigset_t {
    // SAFETY: sigemptyset initialises the set before sigaddset uses it.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        set
    }
}
