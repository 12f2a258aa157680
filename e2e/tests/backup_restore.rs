//! Sluice's main job, end to end: install and leader Lease, manual backups
//! with each copy method, restores of the latest, an as-of and a previous
//! snapshot into new PVCs (modes and mtimes kept, so the first backup of the
//! restored PVC reads no file again) and into a VolumeSnapshot, scheduled restore tests
//! that pass and then find a damaged snapshot, a restore that finds no
//! snapshot, a copy that never binds, a standby replica, and cleanup by
//! garbage collection.
//!
//! One [`Stack`] serves every scenario; each has its own namespace and
//! repository, and they run side by side.

mod scenario;

use std::process::Command;
use std::time::Duration;

use scenario::{
    OWNED, SYNC, assert_same_tree, destination, event_reasons, manual_sync, source, write_sample,
};
use sluice_e2e::{Stack, kstatus};

#[test]
fn backup_and_restore_scenarios() {
    let stack = Stack::start();
    install_takes_the_leader_lease(&stack);
    std::thread::scope(|scope| {
        scope.spawn(|| manual_backup_direct_then_restore_latest(&stack));
        scope.spawn(|| clone_and_snapshot_copies_are_removed_after_the_sync(&stack));
        scope.spawn(|| restore_as_of_and_previous_pick_their_snapshots(&stack));
        scope.spawn(|| restore_tests_pass_then_name_the_damaged_snapshot_until_repaired(&stack));
        scope.spawn(|| no_matching_snapshot_fails_instead_of_publishing_an_empty_volume(&stack));
        scope.spawn(|| copy_that_never_binds_says_so(&stack));
    });
    deleting_the_objects_removes_everything_they_made(&stack);
    standby_operator_waits_for_the_lease(&stack);
}

fn install_takes_the_leader_lease(stack: &Stack) {
    let leader = stack.leader().expect("an operator Pod holds the Lease");
    assert_eq!(stack.operator_pods(), std::slice::from_ref(&leader));
    assert_eq!(stack.http("/healthz").trim(), "ok");
    assert_eq!(stack.http("/readyz").trim(), "ok");
    // `kubectl logs` works for the operator's Pod.
    let log = stack.pod_log(sluice_e2e::stack::SYSTEM_NAMESPACE, &leader, 200);
    assert!(
        log.contains("leader Lease acquired"),
        "kubectl logs {leader}:\n{log}"
    );
}

fn manual_backup_direct_then_restore_latest(stack: &Stack) {
    let ns = "direct";
    stack.namespace(ns);
    stack.repository_secret(ns, "repo", "direct/repo", None);
    let source_dir = stack.claim(ns, "data");
    write_sample(&source_dir, "first");
    // No `restic init`: the first backup creates the repository.
    stack.cluster.apply(&source(ns, "data", "Direct", ""));
    let object = "replicationsource/data";
    stack.wait_field(ns, object, "{.status.lastManualSync}", SYNC, |v| v == "one");
    let snapshot = stack.get(ns, object, "{.status.lastSync.snapshotID}");
    assert_eq!(
        snapshot.len(),
        64,
        "lastSync.snapshotID is a full id: {snapshot:?}"
    );
    assert_eq!(stack.condition(ns, object, "Ready"), "True/SyncSucceeded");
    assert_eq!(
        stack.condition(ns, object, "Reconciling"),
        "False/WaitingForManual"
    );
    assert_eq!(
        stack.condition(ns, object, "Stalled"),
        "False/SyncSucceeded"
    );
    assert_eq!(stack.kstatus(ns, object).0, kstatus::Status::Current);
    assert_eq!(
        stack.get(ns, object, "{.status.latestMoverStatus.result}"),
        "Successful"
    );
    assert_ne!(stack.get(ns, object, "{.status.lastSync.bytesAdded}"), "0");
    assert_ne!(stack.get(ns, object, "{.status.lastSyncDuration}"), "");
    let listed = stack.run_restic("direct/repo", &["snapshots", "--json"]);
    assert!(
        listed.contains(&snapshot),
        "restic lists {snapshot}: {listed}"
    );
    stack.run_restic("direct/repo", &["check", "--read-data"]);

    stack
        .cluster
        .apply(&destination(ns, "restored", "Direct", ""));
    let restored = "replicationdestination/restored";
    stack.wait_field(ns, restored, "{.status.lastManualSync}", SYNC, |v| {
        v == "one"
    });
    let image = stack.get(
        ns,
        restored,
        "{.status.latestImage.kind}/{.status.latestImage.name}",
    );
    let (kind, claim) = image.split_once('/').expect("kind/name");
    assert_eq!(kind, "PersistentVolumeClaim");
    assert_same_tree(&source_dir, &stack.wait_claim_dir(ns, claim));
    assert_eq!(
        stack.get(ns, restored, "{.status.restoredSnapshot.id}"),
        snapshot
    );
    assert_eq!(stack.condition(ns, restored, "Ready"), "True/SyncSucceeded");
    assert_same_times_and_modes(&source_dir, &stack.wait_claim_dir(ns, claim));

    // The first backup of the restored PVC under the source's host name reads no unchanged
    // file: the restore marked the volume, so every file whose size and mtime match is taken
    // over from the restored snapshot, its parent, though its inode and ctime are new.
    stack.cluster.apply(&format!(
        "apiVersion: sluice.dev/v1alpha1
kind: ReplicationSource
metadata: {{name: restored-copy, namespace: {ns}}}
spec:
  sourcePVC: {claim}
  trigger: {{manual: one}}
  restic:
    repository: repo
    copyMethod: Direct
    hostname: {ns}-data
"
    ));
    let copy = "replicationsource/restored-copy";
    stack.wait_field(ns, copy, "{.status.lastManualSync}", SYNC, |v| v == "one");
    let counted = |field: &str| {
        let value = stack.get(ns, copy, &format!("{{.status.lastSync.{field}}}"));
        value
            .parse::<u64>()
            .unwrap_or_else(|_| panic!("lastSync.{field} of {copy} is {value:?}"))
    };
    assert_eq!(
        (
            counted("filesNew"),
            counted("filesChanged"),
            counted("filesUnmodified")
        ),
        (0, 0, 52),
        "the first backup after the restore re-read files"
    );
    assert!(
        counted("bytesAdded") * 100 < counted("totalBytes"),
        "the first backup after the restore stored {} of {} bytes",
        counted("bytesAdded"),
        counted("totalBytes")
    );

    let metrics = stack.metrics();
    for family in [
        "sluice_sync_last_success_timestamp_seconds",
        "sluice_sync_duration_seconds_count",
        "sluice_sync_bytes_added_total",
    ] {
        assert!(
            metrics
                .lines()
                .any(|l| l.starts_with(family) && l.contains("namespace=\"direct\"")),
            "{family} for direct/data missing from /metrics:\n{metrics}"
        );
    }
}

fn restore_tests_pass_then_name_the_damaged_snapshot_until_repaired(stack: &Stack) {
    let ns = "verify";
    stack.namespace(ns);
    stack.repository_secret(ns, "repo", "verify/repo", None);
    let source_dir = stack.claim(ns, "data");
    write_sample(&source_dir, "verify");
    let extra = "    verify: {schedule: '* * * * *'}\n";
    stack.cluster.apply(&source(ns, "data", "Clone", extra));
    let object = "replicationsource/data";

    // The first backup is tested at once: every regular file read back.
    stack.wait_field(ns, object, "{.status.lastManualSync}", SYNC, |v| v == "one");
    let snapshot = stack.get(ns, object, "{.status.lastSync.snapshotID}");
    let tested = |field: &str| stack.get(ns, object, &format!("{{.status.verification.{field}}}"));
    assert_eq!(tested("snapshotID"), snapshot);
    assert_eq!(tested("filesMismatched"), "0");
    assert_eq!(
        tested("filesChecked"),
        "52",
        "50 files, generation.txt and big.bin"
    );
    assert!(tested("bytesChecked").parse::<u64>().unwrap() > 3_000_000);
    assert_eq!(
        stack.condition(ns, object, "Degraded"),
        "False/SyncSucceeded"
    );
    let ready = stack.get(
        ns,
        object,
        "{.status.conditions[?(@.type==\"Ready\")].message}",
    );
    assert!(ready.contains("restore test passed: 52 files"), "{ready}");
    // The scratch volume went with the mover's Pod: only the source claim is left, and no
    // volume of the namespace but its own.
    stack.wait_field(ns, OWNED.0, OWNED.1, Duration::from_secs(60), |v| {
        v == "data"
    });
    stack.wait_field(
        ns,
        "pv",
        "{range .items[?(@.spec.claimRef.namespace==\"verify\")]}{.spec.claimRef.name} {end}",
        Duration::from_secs(60),
        |v| v.trim() == "data",
    );

    // A hostile writer flips a byte in the largest pack (a data pack: trees are small). The
    // next backup deduplicates against it, and its restore test finds what it cannot read.
    let packs = stack.minio.data_dir().join("verify/repo/data");
    let pack = std::fs::read_dir(&packs)
        .unwrap()
        .flat_map(|dir| std::fs::read_dir(dir.unwrap().path()).unwrap())
        .map(|entry| entry.unwrap().path())
        .max_by_key(|path| bytes_below(path))
        .expect("a pack");
    let name = pack.file_name().unwrap().to_string_lossy().into_owned();
    let key = format!("repo/data/{}/{name}", &name[..2]);
    let original = stack.minio.get_object("verify", &key);
    let mut damaged = original.clone();
    damaged[100] ^= 0x40;
    stack.minio.put_object("verify", &key, &damaged);
    let after = |time: &str| {
        // The schedule fires each minute: wait for the minute after the last test.
        let last: jiff::Timestamp = time.parse().unwrap();
        let next = last.as_second() / 60 * 60 + 61;
        while jiff::Timestamp::now().as_second() < next {
            std::thread::sleep(Duration::from_millis(250));
        }
    };
    after(&tested("time"));
    let damaged = manual_sync(stack, ns, "data", "two");
    assert_eq!(tested("snapshotID"), damaged);
    assert_ne!(tested("filesMismatched"), "0");
    assert_eq!(
        stack.condition(ns, object, "Degraded"),
        "True/VerificationFailed"
    );
    assert_eq!(
        stack.condition(ns, object, "Ready"),
        "True/SyncSucceeded",
        "the backup itself succeeded; backups go on"
    );
    let degraded = stack.get(
        ns,
        object,
        "{.status.conditions[?(@.type==\"Degraded\")].message}",
    );
    assert!(
        degraded.starts_with(&format!("restore test of snapshot {}", &damaged[..8])),
        "{degraded}"
    );
    let mismatches = tested("mismatches");
    assert!(
        mismatches.contains(&format!("in pack {name}"))
            && mismatches.contains("could not be restored"),
        "the damaged pack is named: {mismatches}"
    );
    assert!(event_reasons(stack, ns).contains("VerificationFailed"));
    let metrics = stack.metrics();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("sluice_verification_files_mismatched")
                && l.contains("namespace=\"verify\"")
                && !l.ends_with(" 0")),
        "the mismatch is exported:\n{metrics}"
    );
    let live: serde_json::Value = serde_json::from_str(
        &stack
            .cluster
            .kubectl(&["get", object, "-n", ns, "-o", "json"]),
    )
    .unwrap();
    let (health, _) = sluice_e2e::argocd::kind_health("ReplicationSource", &live);
    assert_eq!(health, "Degraded", "Argo CD shows the failed restore test");

    // A backup without a due test keeps the verdict; once the pack is back, the next test
    // passes and clears it.
    stack.minio.put_object("verify", &key, &original);
    after(&tested("time"));
    manual_sync(stack, ns, "data", "three");
    assert_eq!(tested("filesMismatched"), "0");
    assert_eq!(
        stack.condition(ns, object, "Degraded"),
        "False/SyncSucceeded"
    );
    stack.run_restic("verify/repo", &["check", "--read-data"]);
}

/// Bytes of the files below `dir`: a MinIO object is a directory of its metadata and parts.
/// Every file, directory and symlink below `expected` has the same permission bits and
/// modification time below `actual` (owners differ: the restricted mover may not chown).
fn assert_same_times_and_modes(expected: &std::path::Path, actual: &std::path::Path) {
    use std::os::unix::fs::MetadataExt as _;
    let mut pending = vec![std::path::PathBuf::new()];
    let mut compared = 0;
    while let Some(rel) = pending.pop() {
        for entry in std::fs::read_dir(expected.join(&rel)).unwrap() {
            let rel = rel.join(entry.unwrap().file_name());
            let want = std::fs::symlink_metadata(expected.join(&rel)).unwrap();
            let got = std::fs::symlink_metadata(actual.join(&rel)).unwrap();
            let shown = rel.display();
            if !want.file_type().is_symlink() {
                assert_eq!(want.mode() & 0o7777, got.mode() & 0o7777, "mode of {shown}");
            }
            assert_eq!(
                (want.mtime(), want.mtime_nsec()),
                (got.mtime(), got.mtime_nsec()),
                "mtime of {shown}"
            );
            if want.is_dir() {
                pending.push(rel);
            }
            compared += 1;
        }
    }
    assert!(compared > 50, "{compared} entries compared");
}

fn bytes_below(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|entry| match entry.metadata() {
                    Ok(meta) if meta.is_dir() => bytes_below(&entry.path()),
                    Ok(meta) => meta.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

fn clone_and_snapshot_copies_are_removed_after_the_sync(stack: &Stack) {
    let ns = "copies";
    stack.namespace(ns);
    stack.repository_secret(ns, "repo", "copies/repo", None);
    let source_dir = stack.claim(ns, "data");
    write_sample(&source_dir, "copies");
    stack.run_restic("copies/repo", &["init"]);
    for (name, method) in [("by-clone", "Clone"), ("by-snapshot", "Snapshot")] {
        stack.cluster.apply(&source(ns, name, method, ""));
    }
    for name in ["by-clone", "by-snapshot"] {
        let object = format!("replicationsource/{name}");
        stack.wait_field(ns, &object, "{.status.lastManualSync}", SYNC, |v| {
            v == "one"
        });
        assert_eq!(stack.condition(ns, &object, "Ready"), "True/SyncSucceeded");
    }
    // Both backed up the same content, from their point-in-time copies.
    let snapshots = stack.run_restic("copies/repo", &["snapshots", "--json"]);
    assert_eq!(snapshots.matches("\"id\"").count(), 2, "{snapshots}");
    let restored = tempfile::tempdir().unwrap();
    let target = restored.path().to_string_lossy().into_owned();
    stack.run_restic("copies/repo", &["restore", "latest", "--target", &target]);
    assert_same_tree(&source_dir, restored.path());
    // The clones, the snapshot and the Jobs are gone; the source claim stays.
    stack.wait_field(ns, OWNED.0, OWNED.1, Duration::from_secs(60), |v| {
        v == "data"
    });
}

fn restore_as_of_and_previous_pick_their_snapshots(stack: &Stack) {
    let ns = "history";
    stack.namespace(ns);
    stack.repository_secret(ns, "repo", "history/repo", None);
    let source_dir = stack.claim(ns, "data");
    let kept = tempfile::tempdir().unwrap();
    let mut times = Vec::new();
    write_sample(&source_dir, "g0");
    stack.cluster.apply(&source(ns, "data", "Direct", ""));
    stack.wait_field(
        ns,
        "replicationsource/data",
        "{.status.lastManualSync}",
        SYNC,
        |v| v == "one",
    );
    for generation in ["g1", "g2", "g3"] {
        // Snapshots in different seconds, so an as-of time names one.
        std::thread::sleep(Duration::from_millis(1100));
        write_sample(&source_dir, generation);
        let copy = kept.path().join(generation);
        let copied = Command::new("cp")
            .arg("-a")
            .arg(&source_dir)
            .arg(&copy)
            .status();
        assert!(copied.unwrap().success());
        manual_sync(stack, ns, "data", generation);
        times.push(stack.get(
            ns,
            "replicationsource/data",
            "{.status.lastSync.snapshotTime}",
        ));
    }
    let restores = [
        (
            "as-of-first",
            format!("    restoreAsOf: \"{}\"\n", times[0]),
            "g1",
            "Direct",
        ),
        (
            "previous-one",
            "    previous: 1\n".to_string(),
            "g2",
            "Direct",
        ),
        ("latest-image", String::new(), "g3", "Snapshot"),
    ];
    for (name, selector, _, copy_method) in &restores {
        stack
            .cluster
            .apply(&destination(ns, name, copy_method, selector));
    }
    for (name, _, generation, _) in &restores {
        let object = format!("replicationdestination/{name}");
        stack.wait_field(ns, &object, "{.status.lastManualSync}", SYNC, |v| {
            v == "one"
        });
        let image = stack.get(
            ns,
            &object,
            "{.status.latestImage.kind}/{.status.latestImage.name}",
        );
        let (kind, image_name) = image.split_once('/').expect("kind/name");
        let restored = if *name == "latest-image" {
            assert_eq!(kind, "VolumeSnapshot", "{name}: latestImage {image}");
            let snapshot = format!("volumesnapshot/{image_name}");
            assert_eq!(stack.get(ns, &snapshot, "{.status.readyToUse}"), "true");
            // Restore the image into a claim, as a user would, and look inside.
            stack.cluster.apply(&format!(
                "apiVersion: v1
kind: PersistentVolumeClaim
metadata: {{name: from-image, namespace: {ns}}}
spec:
  accessModes: [ReadWriteOnce]
  storageClassName: {class}
  dataSource: {{apiGroup: snapshot.storage.k8s.io, kind: VolumeSnapshot, name: {image_name}}}
  resources: {{requests: {{storage: 1Gi}}}}
",
                class = sluice_e2e::storage::STORAGE_CLASS
            ));
            stack.wait_claim_dir(ns, "from-image")
        } else {
            assert_eq!(kind, "PersistentVolumeClaim", "{name}: latestImage {image}");
            stack.wait_claim_dir(ns, image_name)
        };
        assert_same_tree(&kept.path().join(generation), &restored);
    }
}

fn no_matching_snapshot_fails_instead_of_publishing_an_empty_volume(stack: &Stack) {
    let ns = "nothing";
    stack.namespace(ns);
    stack.repository_secret(ns, "repo", "nothing/repo", None);
    stack.run_restic("nothing/repo", &["init"]);
    stack.cluster.apply(&destination(ns, "empty", "Direct", ""));
    let object = "replicationdestination/empty";
    let ready_reason = "{.status.conditions[?(@.type==\"Ready\")].reason}";
    stack.wait_field(ns, object, ready_reason, SYNC, |v| v == "NoSnapshot");
    assert_eq!(stack.condition(ns, object, "Ready"), "False/NoSnapshot");
    assert_eq!(stack.get(ns, object, "{.status.latestImage}"), "");
    assert_eq!(stack.get(ns, object, "{.status.lastManualSync}"), "");
    let events = event_reasons(stack, ns);
    assert!(
        events.contains("NoSnapshot"),
        "no NoSnapshot event: {events}"
    );
}

fn copy_that_never_binds_says_so(stack: &Stack) {
    let ns = "unbound";
    stack.namespace(ns);
    stack.repository_secret(ns, "repo", "unbound/repo", None);
    stack.claim(ns, "data");
    let extra = "    storageClassName: no-such-class\n";
    stack.cluster.apply(&source(ns, "data", "Clone", extra));
    let object = "replicationsource/data";
    let reason = "{.status.conditions[?(@.type==\"Reconciling\")].reason}";
    stack.wait_field(ns, object, reason, SYNC, |v| v == "WaitingForPVC");
    let message = stack.get(
        ns,
        object,
        "{.status.conditions[?(@.type==\"Reconciling\")].message}",
    );
    assert!(message.contains("to be bound"), "{message}");
    let (status, said) = stack.kstatus(ns, object);
    assert_eq!(
        (status, said.as_str()),
        (kstatus::Status::InProgress, message.as_str()),
        "a sync under way is in progress for kstatus, with its stage as the message"
    );
}

fn deleting_the_objects_removes_everything_they_made(stack: &Stack) {
    for ns in ["direct", "history"] {
        stack.cluster.kubectl(&[
            "delete",
            "replicationsources,replicationdestinations",
            "--all",
            "-n",
            ns,
        ]);
    }
    // Left is what the test made itself: the source claims, and the claim
    // restored from the latestImage snapshot.
    let gone = Duration::from_secs(60);
    stack.wait_field("direct", OWNED.0, OWNED.1, gone, |v| v == "data");
    stack.wait_field("history", OWNED.0, OWNED.1, gone, |v| {
        v == "data from-image"
    });
}

fn standby_operator_waits_for_the_lease(stack: &Stack) {
    let leader = stack.leader().expect("an operator Pod holds the Lease");
    stack.scale_operator(2);
    let mut standby = String::new();
    stack.cluster.wait_for(
        "a second operator Pod to run",
        Duration::from_secs(120),
        || {
            let pods = stack.operator_pods();
            match pods.iter().find(|p| **p != leader) {
                Some(pod) => {
                    standby = pod.clone();
                    stack.get(
                        sluice_e2e::stack::SYSTEM_NAMESPACE,
                        &format!("pod/{pod}"),
                        "{.status.phase}",
                    ) == "Running"
                }
                None => false,
            }
        },
    );
    std::thread::sleep(Duration::from_secs(5));
    let log = stack.pod_log(sluice_e2e::stack::SYSTEM_NAMESPACE, &standby, 50);
    assert_eq!(stack.leader().as_deref(), Some(leader.as_str()));
    assert!(
        log.contains("waiting for the leader Lease") && !log.contains("starting controllers"),
        "the standby {standby} must wait while {leader} holds the Lease:\n{log}"
    );
}
