//! The volume populator on the real node: a PVC whose `dataSourceRef` names a
//! ReplicationDestination binds with its snapshot in it (a `WaitForFirstConsumer` class and
//! the Pod that uses it included); deploy-or-restore (`onMissingSnapshot: Empty`) leaves the
//! first deployment's volume empty, with the reason, and a redeployment gets the data; a wrong
//! password, an unreachable repository and one a live process holds locked are never taken
//! for "no snapshot"; deleting the ReplicationDestination mid-population leaves no prime PVC,
//! volume or Job behind; and `kubectl sluice restore` makes a filled PVC of a source's snapshot
//! through it.

mod scenario;

use std::{process::Stdio, time::Duration};

use scenario::{SYNC, assert_same_tree, destination, event_reasons, source, write_sample};
use sluice_e2e::{Stack, images::PAUSE_IMAGE, storage};

/// A mover that cannot reach its repository gives up after about two minutes of retries.
const NETWORK_FAILURE: Duration = Duration::from_secs(300);

#[test]
fn volume_populator_scenarios() {
    let stack = Stack::start();
    std::thread::scope(|scope| {
        scope.spawn(|| a_pvc_naming_a_destination_binds_with_its_snapshot(&stack));
        scope.spawn(|| first_deployment_proceeds_empty_and_a_redeployment_gets_the_data(&stack));
        scope.spawn(|| failures_are_never_taken_for_a_missing_snapshot(&stack));
        scope.spawn(|| deleting_the_destination_mid_population_leaves_nothing_behind(&stack));
        scope.spawn(|| kubectl_sluice_restore_fills_a_new_pvc(&stack));
    });
}

/// A ReplicationDestination with no volume of its own, restoring from repository Secret
/// `secret` only into the PVCs that name it; `extra` is appended to `spec.restic`.
fn populator_destination(ns: &str, name: &str, secret: &str, extra: &str) -> String {
    format!(
        "apiVersion: sluice.dev/v1alpha1
kind: ReplicationDestination
metadata: {{name: {name}, namespace: {ns}}}
spec:
  restic:
    repository: {secret}
    copyMethod: Direct
{extra}"
    )
}

/// A PVC of `class` populated from ReplicationDestination `from`.
fn populated_claim(ns: &str, name: &str, class: &str, from: &str) -> String {
    format!(
        "apiVersion: v1
kind: PersistentVolumeClaim
metadata: {{name: {name}, namespace: {ns}}}
spec:
  accessModes: [ReadWriteOnce]
  storageClassName: {class}
  resources: {{requests: {{storage: 1Gi}}}}
  dataSourceRef: {{apiGroup: sluice.dev, kind: ReplicationDestination, name: {from}}}
"
    )
}

/// A long-running Pod of the application, using PVC `claim`.
fn app_pod(ns: &str, name: &str, claim: &str) -> String {
    format!(
        "apiVersion: v1
kind: Pod
metadata: {{name: {name}, namespace: {ns}}}
spec:
  securityContext:
    runAsNonRoot: true
    runAsUser: 65532
    seccompProfile: {{type: RuntimeDefault}}
  containers:
    - name: app
      image: {PAUSE_IMAGE}
      imagePullPolicy: Never
      securityContext:
        allowPrivilegeEscalation: false
        capabilities: {{drop: [ALL]}}
      volumeMounts: [{{name: data, mountPath: /data}}]
  volumes: [{{name: data, persistentVolumeClaim: {{claimName: {claim}}}}}]
"
    )
}

/// The PVC's `sluice.dev/Populated` condition as `"True/Reason"`.
fn populated(stack: &Stack, ns: &str, claim: &str) -> String {
    stack.condition(ns, &format!("pvc/{claim}"), "sluice.dev/Populated")
}

/// Waits until the PVC's `sluice.dev/Populated` condition reads `expected`.
/// Panics with the condition last seen and its message.
fn wait_populated(stack: &Stack, ns: &str, claim: &str, expected: &str, timeout: Duration) {
    let deadline = std::time::Instant::now() + timeout;
    while populated(stack, ns, claim) != expected {
        if std::time::Instant::now() > deadline {
            panic!(
                "PVC {ns}/{claim} is not sluice.dev/Populated {expected} after {timeout:?}: {:?} {:?}",
                populated(stack, ns, claim),
                stack.get(
                    ns,
                    &format!("pvc/{claim}"),
                    "{.status.conditions[?(@.type==\"sluice.dev/Populated\")].message}",
                )
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn annotation(stack: &Stack, ns: &str, claim: &str, key: &str) -> String {
    let key = key.replace('.', "\\.");
    stack.get(
        ns,
        &format!("pvc/{claim}"),
        &format!("{{.metadata.annotations.{key}}}"),
    )
}

/// What a population made in `ns` and has not removed: prime PVCs and Jobs.
fn leftovers(stack: &Stack, ns: &str) -> String {
    stack.cluster.kubectl(&[
        "get",
        "pvc,jobs",
        "-n",
        ns,
        "-l",
        "sluice.dev/populates",
        "-o",
        "name",
    ])
}

fn wait_no_leftovers(stack: &Stack, ns: &str) {
    stack.cluster.wait_for(
        &format!("the prime PVCs and populate Jobs in {ns} to be removed"),
        Duration::from_secs(60),
        || leftovers(stack, ns).trim().is_empty(),
    );
}

/// Namespace `ns` with repository Secret `repo` and a PVC `data` holding sample data stamped
/// `generation`, backed up once by ReplicationSource `data`: the PVC's directory and the
/// snapshot id.
fn backed_up_source(stack: &Stack, ns: &str, generation: &str) -> (std::path::PathBuf, String) {
    stack.namespace(ns);
    stack.repository_secret(ns, "repo", &format!("{ns}/repo"), None);
    let source_dir = stack.claim(ns, "data");
    write_sample(&source_dir, generation);
    stack.cluster.apply(&source(ns, "data", "Direct", ""));
    let object = "replicationsource/data";
    stack.wait_field(ns, object, "{.status.lastManualSync}", SYNC, |v| v == "one");
    (
        source_dir,
        stack.get(ns, object, "{.status.lastSync.snapshotID}"),
    )
}

fn bound_volume(stack: &Stack, ns: &str, claim: &str) -> String {
    stack.get(ns, &format!("pvc/{claim}"), "{.spec.volumeName}")
}

fn a_pvc_naming_a_destination_binds_with_its_snapshot(stack: &Stack) {
    let ns = "populate";
    let (source_dir, snapshot) = backed_up_source(stack, ns, "populated");
    stack
        .cluster
        .apply(&destination(ns, "restore", "Direct", ""));

    // A class that binds on first use: nothing happens before a Pod is scheduled.
    stack.cluster.apply(&populated_claim(
        ns,
        "app-data",
        storage::WAIT_FOR_CONSUMER_CLASS,
        "restore",
    ));
    wait_populated(
        stack,
        ns,
        "app-data",
        "False/WaitingForFirstConsumer",
        Duration::from_secs(30),
    );
    assert_eq!(bound_volume(stack, ns, "app-data"), "");

    stack.cluster.apply(&app_pod(ns, "app", "app-data"));
    wait_populated(stack, ns, "app-data", "True/SnapshotRestored", SYNC);
    stack.wait_field(ns, "pod/app", "{.status.phase}", SYNC, |v| v == "Running");
    assert_eq!(
        annotation(stack, ns, "app-data", "sluice.dev/restored-snapshot"),
        snapshot,
        "the PVC records the snapshot it holds"
    );
    assert_eq!(
        annotation(stack, ns, "app-data", "sluice.dev/population"),
        "SnapshotRestored"
    );
    let message = stack.get(
        ns,
        "pvc/app-data",
        "{.status.conditions[?(@.type==\"sluice.dev/Populated\")].message}",
    );
    assert!(
        message.starts_with(&format!("restored snapshot {}", &snapshot[..8])),
        "{message}"
    );
    assert_same_tree(&source_dir, &stack.wait_claim_dir(ns, "app-data"));
    wait_no_leftovers(stack, ns);
    let metrics = stack.metrics();
    let counted = r#"sluice_populations_total{namespace="populate",name="app-data",reason="SnapshotRestored"} "#;
    let count = metrics
        .lines()
        .find_map(|l| l.strip_prefix(counted))
        .and_then(|n| n.trim().parse::<f64>().ok());
    // Exactly once: a reconcile that read the PVC from before its own condition write counted
    // the population twice (operator/src/populator.rs reads its own writes since).
    assert_eq!(count, Some(1.0), "{counted} not exactly 1:\n{metrics}");
    let events = event_reasons(stack, ns);
    for reason in [
        "WaitingForFirstConsumer",
        "MoverRunning",
        "SnapshotRestored",
    ] {
        assert!(events.contains(reason), "event {reason} missing: {events}");
    }
}

fn first_deployment_proceeds_empty_and_a_redeployment_gets_the_data(stack: &Stack) {
    let ns = "deploy";
    stack.namespace(ns);
    // The GitOps repository's ReplicationDestination, before any backup: the repository does
    // not exist yet.
    stack.repository_secret(ns, "repo", "deploy/repo", None);
    stack.cluster.apply(&populator_destination(
        ns,
        "app",
        "repo",
        "    onMissingSnapshot: Empty\n",
    ));
    stack
        .cluster
        .apply(&populated_claim(ns, "v1", storage::STORAGE_CLASS, "app"));
    wait_populated(stack, ns, "v1", "True/EmptyNoRepository", SYNC);
    let first = stack.wait_claim_dir(ns, "v1");
    assert_eq!(
        std::fs::read_dir(&first).unwrap().count(),
        0,
        "the first deployment starts empty"
    );
    assert_eq!(
        annotation(stack, ns, "v1", "sluice.dev/restored-snapshot"),
        ""
    );
    // The ReplicationDestination restores nothing by itself: no volume, no Job of its own.
    let rd = "replicationdestination/app";
    assert_eq!(
        stack.condition(ns, rd, "Ready"),
        "True/ServesPopulators",
        "{}",
        stack.diagnose(ns, rd)
    );
    let own = stack.cluster.kubectl(&[
        "get",
        "pvc,jobs",
        "-n",
        ns,
        "-l",
        "sluice.dev/replication-destination=app",
        "-o",
        "name",
    ]);
    assert_eq!(own.trim(), "", "a populator-only destination made {own}");
    // Without a volume of its own it takes no trigger.
    let refused = stack.cluster.try_kubectl(&[
        "patch",
        rd,
        "-n",
        ns,
        "--type=merge",
        "-p",
        r#"{"spec":{"trigger":{"manual":"now"}}}"#,
    ]);
    assert!(
        refused
            .as_ref()
            .is_err_and(|e| e.contains("spec.trigger needs a volume to restore into")),
        "{refused:?}"
    );

    // The application writes; its ReplicationSource backs the volume up.
    write_sample(&first, "deployed");
    stack.cluster.apply(&format!(
        "apiVersion: sluice.dev/v1alpha1
kind: ReplicationSource
metadata: {{name: v1, namespace: {ns}}}
spec:
  sourcePVC: v1
  trigger: {{manual: one}}
  restic: {{repository: repo, copyMethod: Direct}}
"
    ));
    let object = "replicationsource/v1";
    stack.wait_field(ns, object, "{.status.lastManualSync}", SYNC, |v| v == "one");
    let snapshot = stack.get(ns, object, "{.status.lastSync.snapshotID}");

    // After the disaster, the same manifests make a new PVC: it gets the data.
    stack
        .cluster
        .apply(&populated_claim(ns, "v2", storage::STORAGE_CLASS, "app"));
    wait_populated(stack, ns, "v2", "True/SnapshotRestored", SYNC);
    assert_eq!(
        annotation(stack, ns, "v2", "sluice.dev/restored-snapshot"),
        snapshot
    );
    assert_same_tree(&first, &stack.wait_claim_dir(ns, "v2"));

    // The repository exists, but holds nothing of this host: empty, with that reason.
    stack.cluster.apply(&populator_destination(
        ns,
        "other",
        "repo",
        "    onMissingSnapshot: Empty\n    hostname: never-backed-up\n",
    ));
    stack
        .cluster
        .apply(&populated_claim(ns, "v3", storage::STORAGE_CLASS, "other"));
    wait_populated(stack, ns, "v3", "True/EmptyNoSnapshot", SYNC);
    assert_eq!(
        std::fs::read_dir(stack.wait_claim_dir(ns, "v3"))
            .unwrap()
            .count(),
        0
    );
    wait_no_leftovers(stack, ns);
}

fn failures_are_never_taken_for_a_missing_snapshot(stack: &Stack) {
    let ns = "popfail";
    stack.namespace(ns);
    stack.run_restic("popfail/repo", &["init"]);
    stack.repository_secret(ns, "wrong", "popfail/repo", Some("not-the-password"));
    unreachable_secret(stack, ns, "unreachable");
    // A repository with no snapshot at all, which Empty would take for a first deployment,
    // held exclusively by a live restic on the host for longer than the movers' lock wait.
    stack.run_restic("popfail/locked", &["init"]);
    stack.repository_secret(ns, "locked", "popfail/locked", None);
    let holder = ExclusiveLock::hold(stack, "popfail/locked");
    for (name, secret) in [
        ("wrong", "wrong"),
        ("unreachable", "unreachable"),
        ("locked", "locked"),
    ] {
        stack.cluster.apply(&populator_destination(
            ns,
            name,
            secret,
            "    onMissingSnapshot: Empty\n",
        ));
        stack
            .cluster
            .apply(&populated_claim(ns, name, storage::STORAGE_CLASS, name));
    }
    wait_populated(stack, ns, "wrong", "False/WrongPassword", SYNC);
    // The mover waits out config/e2e's 20 s SLUICE_LOCK_WAIT, then names the holder.
    wait_populated(stack, ns, "locked", "False/RepositoryLocked", SYNC);
    let message = stack.get(
        ns,
        "pvc/locked",
        "{.status.conditions[?(@.type==\"sluice.dev/Populated\")].message}",
    );
    assert!(
        message.contains("exclusive lock of") && message.contains(&format!("pid {}", holder.pid())),
        "the condition must name the lock's holder: {message}"
    );
    drop(holder);
    wait_populated(
        stack,
        ns,
        "unreachable",
        "False/NetworkError",
        NETWORK_FAILURE,
    );
    for claim in ["wrong", "unreachable", "locked"] {
        assert_eq!(
            bound_volume(stack, ns, claim),
            "",
            "PVC {claim} must stay pending, never bound to an empty volume"
        );
        assert_eq!(annotation(stack, ns, claim, "sluice.dev/population"), "");
    }
    let events = event_reasons(stack, ns);
    for reason in ["WrongPassword", "NetworkError", "RepositoryLocked"] {
        assert!(events.contains(reason), "event {reason} missing: {events}");
    }
}

/// An exclusive lock held by a live process: restic's `key passwd` on the host takes it, then
/// waits on stdin for the new password (refreshing the lock meanwhile). Dropping this closes
/// stdin; restic then fails on the empty password and removes its lock.
struct ExclusiveLock {
    restic: std::process::Child,
}

impl ExclusiveLock {
    fn hold(stack: &Stack, bucket_and_prefix: &str) -> ExclusiveLock {
        let restic = stack
            .restic(bucket_and_prefix)
            .args(["key", "passwd"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run restic key passwd: {e}"));
        let lock = ExclusiveLock { restic };
        stack.cluster.wait_for(
            &format!("restic key passwd to lock {bucket_and_prefix}"),
            Duration::from_secs(30),
            || {
                let locks = stack.run_restic(bucket_and_prefix, &["list", "locks", "--no-lock"]);
                !locks.trim().is_empty()
            },
        );
        lock
    }

    fn pid(&self) -> u32 {
        self.restic.id()
    }
}

impl Drop for ExclusiveLock {
    fn drop(&mut self) {
        drop(self.restic.stdin.take());
        if !matches!(self.restic.wait(), Ok(status) if !status.success()) {
            eprintln!("restic key passwd did not end as expected after its stdin closed");
        }
    }
}

/// A repository Secret whose endpoint answers nothing: a closed port on the mover Pod's own
/// loopback.
fn unreachable_secret(stack: &Stack, ns: &str, name: &str) {
    let mut data = format!(
        "  RESTIC_REPOSITORY: s3:http://127.0.0.1:9/{ns}/repo\n  RESTIC_PASSWORD: {}\n",
        sluice_e2e::stack::PASSWORD
    );
    for (key, value) in stack.minio.env() {
        data.push_str(&format!("  {key}: {value}\n"));
    }
    stack.cluster.apply(&format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}, namespace: {ns}}}\nstringData:\n{data}"
    ));
}

fn deleting_the_destination_mid_population_leaves_nothing_behind(stack: &Stack) {
    let ns = "popgone";
    stack.namespace(ns);
    unreachable_secret(stack, ns, "repo");
    stack
        .cluster
        .apply(&populator_destination(ns, "doomed", "repo", ""));
    stack.cluster.apply(&populated_claim(
        ns,
        "data",
        storage::STORAGE_CLASS,
        "doomed",
    ));
    // In flight: the Job runs (retrying the endpoint) on the bound prime PVC.
    wait_populated(stack, ns, "data", "False/MoverRunning", SYNC);
    let mut prime_volume = String::new();
    stack.cluster.wait_for("the prime PVC to bind", SYNC, || {
        prime_volume = stack
            .cluster
            .kubectl(&[
                "get",
                "pvc",
                "-n",
                ns,
                "-l",
                "sluice.dev/populates",
                "-o",
                "jsonpath={.items[*].spec.volumeName}",
            ])
            .trim()
            .to_string();
        !prime_volume.is_empty()
    });
    stack
        .cluster
        .kubectl(&["delete", "replicationdestination/doomed", "-n", ns]);
    wait_populated(
        stack,
        ns,
        "data",
        "False/ReplicationDestinationNotFound",
        Duration::from_secs(60),
    );
    wait_no_leftovers(stack, ns);
    stack.cluster.wait_for(
        &format!("the prime's volume {prime_volume} to be deleted"),
        Duration::from_secs(60),
        || {
            stack
                .cluster
                .try_kubectl(&["get", "pv", &prime_volume])
                .is_err()
        },
    );
    assert_eq!(bound_volume(stack, ns, "data"), "");
    let events = event_reasons(stack, ns);
    assert!(
        events.contains("ReplicationDestinationNotFound"),
        "{events}"
    );
}

/// `kubectl-sluice` (the workspace's build) against the stack's cluster, in `ns`.
fn kubectl_sluice(stack: &Stack, ns: &str, args: &[&str]) -> std::process::Output {
    std::process::Command::new(sluice_e2e::stack::workspace_binary("kubectl-sluice"))
        .args(args)
        .args(["-n", ns, "--kubeconfig"])
        .arg(stack.cluster.kubeconfig())
        .output()
        .expect("kubectl-sluice runs")
}

fn kubectl_sluice_restore_fills_a_new_pvc(stack: &Stack) {
    let ns = "plugin";
    let (source_dir, snapshot) = backed_up_source(stack, ns, "plugin");

    let out = kubectl_sluice(
        stack,
        ns,
        &["restore", "data", "--to", "copy", "-o", "json"],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "restore failed: {stdout}{stderr}");
    let outcome: serde_json::Value =
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert_eq!(outcome["filled"], true, "{outcome}");
    assert_eq!(outcome["reason"], "SnapshotRestored", "{outcome}");
    assert_eq!(outcome["snapshotId"], snapshot.as_str(), "{outcome}");
    assert_same_tree(&source_dir, &stack.wait_claim_dir(ns, "copy"));

    // A time before every snapshot: the PVC stays pending, the exit code says it failed.
    let out = kubectl_sluice(
        stack,
        ns,
        &[
            "restore",
            "data",
            "--to",
            "too-old",
            "--as-of",
            "2000-01-01T00:00:00Z",
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("NoSnapshot"), "{stdout}");
    assert_eq!(bound_volume(stack, ns, "too-old"), "");

    // An existing PVC is never touched.
    let out = kubectl_sluice(stack, ns, &["restore", "data", "--to", "copy"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("already exists"), "{stderr}");

    // Deleting the PVC removes the ReplicationDestination made for it.
    stack
        .cluster
        .kubectl(&["delete", "pvc/copy", "-n", ns, "--wait=false"]);
    stack.cluster.wait_for(
        "the restore's ReplicationDestination to go with its PVC",
        Duration::from_secs(60),
        || {
            stack
                .cluster
                .try_kubectl(&["get", "replicationdestination/copy", "-n", ns])
                .is_err()
        },
    );
}
