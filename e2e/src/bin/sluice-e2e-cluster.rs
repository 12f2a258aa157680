//! `make cluster`: the local cluster the scenarios run on, kept up for a
//! person or a script: MinIO, the control plane, the real node with its
//! storage (a default StorageClass and VolumeSnapshotClass of the CSI test
//! driver), and Sluice installed from the image built from this tree.
//!
//! usage: sluice-e2e-cluster [--env-file FILE]
//!
//! Once ready it prints `export` lines for KUBECONFIG, SLUICE_MINIO_ENDPOINT
//! (an address both this host and Pods reach) and the AWS variables, and
//! writes them to FILE (or `$SLUICE_ENV_FILE`), so a script can wait for the
//! file and source it. SIGINT or SIGTERM stops everything and removes what
//! it made, the file included.

use std::fs;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use sluice_e2e::Stack;
use sluice_e2e::signals::StopSignals;
use sluice_testkit::MinIo;

fn main() -> ExitCode {
    let env_file = match parse_args() {
        Ok(file) => file,
        Err(message) => {
            eprintln!("sluice-e2e-cluster: {message}");
            eprintln!("usage: sluice-e2e-cluster [--env-file FILE]   (or SLUICE_ENV_FILE=FILE)");
            return ExitCode::from(2);
        }
    };
    let signals = StopSignals::block();
    let started = Instant::now();
    eprintln!(
        "starting MinIO, the control plane, the node (containerd, kubelet, kube-proxy, kube-scheduler), storage and Sluice..."
    );
    let stack = Stack::start();
    let exports = format!(
        "export KUBECONFIG={}\nexport SLUICE_MINIO_ENDPOINT={}\nexport AWS_ACCESS_KEY_ID={}\nexport AWS_SECRET_ACCESS_KEY={}\nexport AWS_DEFAULT_REGION={}\n",
        stack.cluster.kubeconfig().display(),
        stack.minio.endpoint(),
        MinIo::ACCESS_KEY,
        MinIo::SECRET_KEY,
        MinIo::REGION,
    );
    if let Some(path) = &env_file {
        // Write then rename, so a script polling for the file never reads
        // half of it.
        let partial = path.with_extension("partial");
        if let Err(e) = fs::write(&partial, &exports).and_then(|()| fs::rename(&partial, path)) {
            eprintln!("sluice-e2e-cluster: cannot write {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    }
    println!("ready in {:.0}s", started.elapsed().as_secs_f64());
    print!("{exports}");
    println!(
        "# Sluice {} runs in namespace sluice-system; StorageClass {} and VolumeSnapshotClass {} are the defaults.",
        sluice_e2e::images::SLUICE_IMAGE,
        sluice_e2e::storage::STORAGE_CLASS,
        sluice_e2e::storage::SNAPSHOT_CLASS
    );
    println!(
        "# logs: kubectl logs -n sluice-system deploy/sluice-operator; the node's under {}",
        stack.node.root().display()
    );
    println!("# Ctrl-C (SIGINT) or SIGTERM stops everything and deletes its data.");

    signals.wait();
    eprintln!("stopping...");
    if let Some(path) = &env_file {
        let _ = fs::remove_file(path);
    }
    drop(stack);
    ExitCode::SUCCESS
}

fn parse_args() -> Result<Option<PathBuf>, String> {
    let mut env_file = std::env::var_os("SLUICE_ENV_FILE")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--env-file" => {
                env_file = Some(PathBuf::from(args.next().ok_or("--env-file needs a path")?))
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(env_file)
}
