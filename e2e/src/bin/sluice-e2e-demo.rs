//! `make demo`: Sluice's main job end to end on the local cluster. It starts
//! MinIO, the control plane and a real node (containerd, kubelet,
//! kube-proxy, CSI snapshots), installs Sluice from the image built from
//! this tree (the operator runs as its Deployment's Pod, movers as Jobs),
//! backs a PVC of sample data up with an hourly
//! ReplicationSource whose manual trigger fires at once, restores the latest
//! snapshot into a new PVC with a ReplicationDestination, compares the two
//! volumes, and keeps everything up until Ctrl-C so the user can explore.
//!
//! usage: sluice-e2e-demo [--exit]
//!
//! `--exit` (or `SLUICE_DEMO_EXIT=1`) stops everything after the comparison
//! instead of waiting, for CI. The exit status is 0 when the restored volume
//! equals the source, 1 when it differs, 130 when interrupted before the end.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::{Command, ExitCode};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

use sluice_e2e::signals::StopSignals;
use sluice_e2e::{Stack, stack::PASSWORD};
use sluice_testkit::{MinIo, Tool};

const NAMESPACE: &str = "demo";
const SECRET: &str = "restic-repo";
const SOURCE_PVC: &str = "app-data";
const SOURCE: &str = "app-data";
const DESTINATION: &str = "app-data-restore";
const BUCKET: &str = "sluice-demo/app-data";
const STEPS: usize = 6;
/// Long enough for a mover Job on a loaded 2-core machine.
const SYNC_TIMEOUT: Duration = Duration::from_secs(180);

/// Set by the first SIGINT or SIGTERM.
static STOP: AtomicBool = AtomicBool::new(false);
/// Set once the demo is done and only waits for Ctrl-C.
static DONE: AtomicBool = AtomicBool::new(false);

/// The demo was interrupted before it reached its end.
struct Interrupted;

fn main() -> ExitCode {
    let exit_at_end = match parse_args() {
        Ok(exit) => exit,
        Err(message) => {
            eprintln!("sluice-e2e-demo: {message}");
            eprintln!("usage: sluice-e2e-demo [--exit]   (or SLUICE_DEMO_EXIT=1)");
            return ExitCode::from(2);
        }
    };
    let signals = StopSignals::block();
    let main_thread = thread::current();
    thread::spawn(move || wait_for_signals(signals, main_thread));

    step(
        1,
        "MinIO, control plane, a real node with CSI snapshots; the Sluice image; kubectl apply -k config/e2e",
    );
    let started = Instant::now();
    let stack = Stack::start();
    detail(&format!(
        "ready in {:.0}s; operator Pod {} holds the leader Lease",
        started.elapsed().as_secs_f64(),
        stack.leader().unwrap_or_default()
    ));

    let identical = match demo(&stack) {
        Ok(identical) => identical,
        Err(Interrupted) => {
            eprintln!("stopping: MinIO, the control plane and the node, with their data");
            drop(stack);
            return ExitCode::from(130);
        }
    };
    explore(&stack);
    if exit_at_end {
        println!("\nexiting (--exit): stopping everything and deleting its data");
    } else {
        println!("\nCtrl-C stops everything and deletes its data.");
        DONE.store(true, Ordering::SeqCst);
        while !stopping() {
            thread::park();
        }
        eprintln!("stopping...");
    }
    drop(stack);
    if identical {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Steps 2 to 6; returns whether the restored volume equals the source.
fn demo(stack: &Stack) -> Result<bool, Interrupted> {
    check_stop()?;
    step(
        2,
        &format!(
            "namespace {NAMESPACE}, Secret {SECRET} (repository {}), PVC {SOURCE_PVC} with sample data",
            stack.minio.repository(BUCKET)
        ),
    );
    stack.namespace(NAMESPACE);
    stack.repository_secret(NAMESPACE, SECRET, BUCKET, None);
    let source_dir = stack.claim(NAMESPACE, SOURCE_PVC);
    write_sample_data(&source_dir);
    detail(&summary(&source_dir));

    check_stop()?;
    step(
        3,
        &format!(
            "ReplicationSource {SOURCE}: schedule @hourly, manual trigger demo-1 backs it up now"
        ),
    );
    stack.cluster.apply(&format!(
        "apiVersion: sluice.dev/v1alpha1
kind: ReplicationSource
metadata: {{name: {SOURCE}, namespace: {NAMESPACE}}}
spec:
  sourcePVC: {SOURCE_PVC}
  trigger: {{schedule: \"@hourly\", manual: demo-1}}
  restic:
    repository: {SECRET}
    copyMethod: Snapshot
    retain: {{hourly: 24, daily: 7}}
"
    ));
    let source = format!("replicationsource/{SOURCE}");
    let started = Instant::now();
    let mover_log = stack.wait_mover_log(NAMESPACE, MOVER_SELECTOR, SYNC_TIMEOUT);
    check_stop()?;
    wait_field(stack, &source, "{.status.lastManualSync}", "demo-1")?;
    let snapshot = stack.get(NAMESPACE, &source, "{.status.lastSync.snapshotID}");
    detail(&format!(
        "backed up in {:.0}s: snapshot {}; next scheduled sync {}",
        started.elapsed().as_secs_f64(),
        short(&snapshot),
        stack.get(NAMESPACE, &source, "{.status.nextSyncTime}")
    ));
    detail(&format!("the mover's log ({}):", mover_logs_command()));
    for line in mover_log.lines() {
        detail(&format!("  {line}"));
    }
    detail("restic snapshots (the restic CLI reading the repository Sluice wrote):");
    for line in stack.run_restic(BUCKET, &["snapshots"]).lines() {
        detail(&format!("  {line}"));
    }

    check_stop()?;
    step(
        4,
        &format!(
            "ReplicationDestination {DESTINATION}: the latest snapshot into a new PVC (manual trigger restore-1)"
        ),
    );
    stack.cluster.apply(&format!(
        "apiVersion: sluice.dev/v1alpha1
kind: ReplicationDestination
metadata: {{name: {DESTINATION}, namespace: {NAMESPACE}}}
spec:
  trigger: {{manual: restore-1}}
  restic:
    repository: {SECRET}
    copyMethod: Direct
    capacity: 1Gi
    accessModes: [ReadWriteOnce]
"
    ));
    let destination = format!("replicationdestination/{DESTINATION}");
    let started = Instant::now();
    wait_field(stack, &destination, "{.status.lastManualSync}", "restore-1")?;
    let restored_pvc = stack.get(NAMESPACE, &destination, "{.status.latestImage.name}");
    detail(&format!(
        "restored snapshot {} into PVC {restored_pvc} in {:.0}s",
        short(&stack.get(NAMESPACE, &destination, "{.status.restoredSnapshot.id}")),
        started.elapsed().as_secs_f64()
    ));
    let restored_dir = stack.wait_claim_dir(NAMESPACE, &restored_pvc);

    check_stop()?;
    step(
        5,
        &format!("kubectl get replicationsources,replicationdestinations -n {NAMESPACE}"),
    );
    print!(
        "{}",
        stack.cluster.kubectl(&[
            "get",
            "replicationsources,replicationdestinations",
            "-n",
            NAMESPACE,
        ])
    );

    step(6, "the source and the restored volume");
    let width = SOURCE_PVC.len().max(restored_pvc.len());
    println!(
        "    {SOURCE_PVC:width$}  {}\n    {restored_pvc:width$}  {}",
        summary(&source_dir),
        summary(&restored_dir)
    );
    let diff = Command::new("diff")
        .args(["-r", "--no-dereference"])
        .arg(&source_dir)
        .arg(&restored_dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run diff: {e}; install diffutils"));
    let identical = diff.status.success();
    if identical {
        detail("diff -r --no-dereference: identical (contents, names and the symlink)");
    } else {
        detail("diff -r --no-dereference: THE VOLUMES DIFFER");
        print!("{}", String::from_utf8_lossy(&diff.stdout));
        eprint!("{}", String::from_utf8_lossy(&diff.stderr));
    }
    Ok(identical)
}

/// How to look around while the demo keeps everything up.
fn explore(stack: &Stack) {
    let source = format!("replicationsource/{SOURCE}");
    println!("\nExplore (in another shell):");
    println!(
        "  export KUBECONFIG={}",
        stack.cluster.kubeconfig().display()
    );
    println!(
        "  kubectl get replicationsources,replicationdestinations,pvc,volumesnapshots,jobs -n {NAMESPACE}"
    );
    println!("  kubectl describe {source} -n {NAMESPACE}");
    println!(
        "  kubectl patch {source} -n {NAMESPACE} --type=merge -p '{{\"spec\":{{\"trigger\":{{\"manual\":\"demo-2\"}}}}}}'   # back up again"
    );
    let credentials: String = stack
        .minio
        .env()
        .iter()
        .map(|(key, value)| format!(" {key}={value}"))
        .collect();
    println!(
        "  env RESTIC_REPOSITORY={} RESTIC_PASSWORD={PASSWORD}{credentials} {} snapshots",
        stack.minio.repository(BUCKET),
        Tool::Restic.path().display()
    );
    println!(
        "  {} -f   # the mover of the next sync, while it runs",
        mover_logs_command()
    );
    println!("  kubectl logs -n sluice-system deploy/sluice-operator   # the operator");
    println!(
        "  volumes: {}/storage/volumes   node logs: {}",
        stack.node.root().display(),
        stack.node.root().display()
    );
    println!(
        "  MinIO: {} (access key {}, secret key {})",
        stack.minio.endpoint(),
        MinIo::ACCESS_KEY,
        MinIo::SECRET_KEY
    );
}

/// The demo's mover Pods: they carry the mover component label and the
/// source's name.
const MOVER_SELECTOR: &str =
    "app.kubernetes.io/component=mover,sluice.dev/replication-source=app-data";

/// How a user reads the mover's log.
fn mover_logs_command() -> String {
    format!("kubectl logs -n {NAMESPACE} -l {MOVER_SELECTOR}")
}

/// Polls `jsonpath` of `object` in the demo namespace until it equals
/// `expected`, returning early when the user stops the demo.
fn wait_field(
    stack: &Stack,
    object: &str,
    jsonpath: &str,
    expected: &str,
) -> Result<(), Interrupted> {
    let deadline = Instant::now() + SYNC_TIMEOUT;
    loop {
        check_stop()?;
        let value = stack.get(NAMESPACE, object, jsonpath);
        if value == expected {
            return Ok(());
        }
        if Instant::now() > deadline {
            panic!(
                "timed out after {SYNC_TIMEOUT:?} waiting for {object} {jsonpath} to be {expected:?} (last {value:?})\n{}",
                stack.diagnose(NAMESPACE, object)
            );
        }
        thread::sleep(Duration::from_millis(250));
    }
}

/// A few hundred small text files in nested directories, four 512 KiB
/// binary files, an empty directory and a symlink: about 2.5 MiB.
fn write_sample_data(root: &Path) {
    let write = |relative: &str, data: &[u8]| {
        let path = root.join(relative);
        fs::create_dir_all(path.parent().expect("relative paths have a parent"))
            .and_then(|()| fs::write(&path, data))
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    };
    for chapter in 0..10 {
        for page in 0..30 {
            let line = format!("chapter {chapter}, page {page}: the quick brown fox\n");
            write(
                &format!("docs/chapter-{chapter:02}/page-{page:03}.txt"),
                line.repeat(1 + (chapter * 30 + page) % 40).as_bytes(),
            );
        }
    }
    // Incompressible, deterministic bytes, so the backup has real data to
    // chunk and upload.
    for photo in 0..4 {
        let bytes = sluice_testkit::data::random_bytes(photo, 512 * 1024);
        write(&format!("images/photo-{photo}.jpg"), &bytes);
    }
    write(
        "config.yaml",
        b"replicas: 3\nlog-level: info\nfeatures: [search, export]\n",
    );
    let empty = root.join("cache");
    fs::create_dir_all(&empty).unwrap_or_else(|e| panic!("cannot create {}: {e}", empty.display()));
    let link = root.join("latest");
    symlink("docs/chapter-09/page-029.txt", &link)
        .unwrap_or_else(|e| panic!("cannot create symlink {}: {e}", link.display()));
}

/// Files, symlinks, directories and bytes under `root`, on one line.
fn summary(root: &Path) -> String {
    #[derive(Default)]
    struct Count {
        files: u64,
        symlinks: u64,
        directories: u64,
        bytes: u64,
    }
    fn walk(dir: &Path, count: &mut Count) {
        let entries =
            fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
        for entry in entries {
            let entry = entry.unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
            let path = entry.path();
            let metadata = fs::symlink_metadata(&path)
                .unwrap_or_else(|e| panic!("cannot stat {}: {e}", path.display()));
            if metadata.is_dir() {
                count.directories += 1;
                walk(&path, count);
            } else if metadata.is_symlink() {
                count.symlinks += 1;
            } else {
                count.files += 1;
                count.bytes += metadata.len();
            }
        }
    }
    let mut count = Count::default();
    walk(root, &mut count);
    format!(
        "{} files, {} symlink, {} directories, {} bytes ({:.1} MiB)",
        count.files,
        count.symlinks,
        count.directories,
        count.bytes,
        count.bytes as f64 / (1024.0 * 1024.0)
    )
}

/// The first 8 characters of a snapshot id, as restic prints them.
fn short(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}

fn step(number: usize, title: &str) {
    println!("\n==> [{number}/{STEPS}] {title}");
}

fn detail(line: &str) {
    println!("    {line}");
}

fn stopping() -> bool {
    STOP.load(Ordering::SeqCst)
}

fn check_stop() -> Result<(), Interrupted> {
    if stopping() { Err(Interrupted) } else { Ok(()) }
}

/// The first signal asks the main thread to stop cleanly; a second one
/// exits at once (the components die with the process, their temporary
/// directories stay).
fn wait_for_signals(signals: StopSignals, main_thread: Thread) {
    loop {
        signals.wait();
        if STOP.swap(true, Ordering::SeqCst) {
            eprintln!("second signal: exiting now");
            std::process::exit(130);
        }
        if !DONE.load(Ordering::SeqCst) {
            eprintln!("stopping after the current step (Ctrl-C again to exit at once)");
        }
        main_thread.unpark();
    }
}

fn parse_args() -> Result<bool, String> {
    let mut exit = std::env::var("SLUICE_DEMO_EXIT").is_ok_and(|v| !v.is_empty() && v != "0");
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--exit" => exit = true,
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(exit)
}
