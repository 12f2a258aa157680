//! Starts the local control plane and MinIO and keeps them up until Ctrl-C,
//! for `make demo` and for exploring by hand.
//!
//! `--env-file FILE` also writes the connection details as shell variable
//! assignments once everything is ready, so a script can wait for the file
//! and source it.

use std::fs;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use sluice_e2e::{Cluster, MinIo};

fn main() -> ExitCode {
    let env_file = match parse_args() {
        Ok(env_file) => env_file,
        Err(message) => {
            eprintln!("sluice-e2e-cluster: {message}");
            eprintln!("usage: sluice-e2e-cluster [--env-file FILE]");
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
    println!(
        "\nin another shell:\n  export KUBECONFIG={}\n  kubectl get namespaces",
        cluster.kubeconfig().display()
    );
    println!("\nCtrl-C stops everything and deletes its data.");

    let mut signal = 0;
    // SAFETY: the set is initialised and the signals are blocked.
    unsafe { libc::sigwait(&stop_signals, &mut signal) };
    eprintln!("stopping...");
    drop(cluster);
    drop(minio);
    if let Some(path) = &env_file {
        let _ = fs::remove_file(path);
    }
    ExitCode::SUCCESS
}

fn parse_args() -> Result<Option<PathBuf>, String> {
    let mut args = std::env::args().skip(1);
    let mut env_file = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--env-file" => {
                env_file = Some(PathBuf::from(args.next().ok_or("--env-file needs a path")?));
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(env_file)
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
