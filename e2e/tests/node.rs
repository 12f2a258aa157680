//! The node emulator plays scheduler, kubelet and CSI driver well enough for
//! real Jobs to run: PVCs bind to directories, Pods run as local processes
//! with their volumes and Secrets, exit codes and termination messages reach
//! the Pod status, snapshots and restores copy data, deadlines and deletion
//! stop processes.
//!
//! One cluster serves every step; each step is a named function.

use std::collections::HashMap;
use std::fs;
use std::path::PathBuf;
use std::time::Duration;

use sluice_e2e::{Cluster, NodeEmulator};

const NS: &str = "e2e-node";

#[test]
fn node_emulator_runs_pods_and_serves_volumes() {
    let cluster = Cluster::start();
    // `env` stands in for the mover image's entrypoint, so the Pod's args
    // (a shell command) run through the mapping the mover will use.
    let programs = HashMap::from([("sluice-mover".to_string(), PathBuf::from("/usr/bin/env"))]);
    let node = NodeEmulator::start(&cluster, programs);
    cluster.kubectl(&["create", "namespace", NS]);
    cluster.wait_for(
        "the default ServiceAccount",
        Duration::from_secs(30),
        || {
            cluster
                .try_kubectl(&["get", "serviceaccount", "default", "-n", NS])
                .is_ok()
        },
    );

    node_is_ready(&cluster);
    claims_bind_to_directories(&cluster, &node);
    job_pod_runs_with_volume_and_secret(&cluster, &node);
    failed_container_reports_exit_code_and_message(&cluster);
    image_entrypoint_runs_its_stand_in_program(&cluster);
    snapshot_and_restore_copy_the_volume(&cluster, &node);
    active_deadline_stops_the_pod(&cluster);
    deleted_pod_is_stopped_and_removed(&cluster);
    deleted_claim_releases_and_removes_its_volume(&cluster, &node);
}

fn get(cluster: &Cluster, args: &[&str], jsonpath: &str) -> String {
    let mut all = vec!["get"];
    all.extend_from_slice(args);
    let output = format!("jsonpath={jsonpath}");
    all.extend(["-n", NS, "-o", &output]);
    cluster.try_kubectl(&all).unwrap_or_default()
}

fn wait_value(cluster: &Cluster, args: &[&str], jsonpath: &str, want: &str) {
    let mut last = String::new();
    let what = format!("{} {jsonpath} == {want}", args.join(" "));
    cluster.wait_for(&what, Duration::from_secs(60), || {
        last = get(cluster, args, jsonpath);
        last == want
    });
}

fn node_is_ready(cluster: &Cluster) {
    let ready = cluster.kubectl(&[
        "get",
        "node",
        "sluice-e2e-node",
        "-o",
        "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
    ]);
    assert_eq!(ready, "True");
}

fn claims_bind_to_directories(cluster: &Cluster, node: &NodeEmulator) {
    cluster.apply(
        "apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data, namespace: e2e-node}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 1Gi}}
",
    );
    wait_value(cluster, &["pvc", "data"], "{.status.phase}", "Bound");
    assert_eq!(
        get(cluster, &["pvc", "data"], "{.spec.storageClassName}"),
        "sluice-e2e"
    );
    let dir = node
        .claim_dir(NS, "data")
        .expect("bound claim has a directory");
    assert!(dir.is_dir(), "{} is not a directory", dir.display());
    fs::write(dir.join("in.txt"), "from the volume\n").unwrap();
}

fn job_pod_runs_with_volume_and_secret(cluster: &Cluster, node: &NodeEmulator) {
    cluster.apply(
        "apiVersion: v1
kind: Secret
metadata: {name: repo, namespace: e2e-node}
stringData: {RESTIC_PASSWORD: s3cret}
---
apiVersion: batch/v1
kind: Job
metadata: {name: writer, namespace: e2e-node}
spec:
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: main
        image: example.invalid/busybox:1
        command: [sh, -c, 'cat /data/in.txt > /data/out.txt; echo \"$RESTIC_PASSWORD $(POD)\" >> /data/out.txt; printf done > /dev/termination-log']
        envFrom: [{secretRef: {name: repo}}]
        env:
        - name: POD
          valueFrom: {fieldRef: {fieldPath: metadata.name}}
        volumeMounts: [{name: data, mountPath: /data}]
      volumes: [{name: data, persistentVolumeClaim: {claimName: data}}]
",
    );
    wait_value(cluster, &["job", "writer"], "{.status.succeeded}", "1");
    let pod = get(
        cluster,
        &["pods", "-l", "batch.kubernetes.io/job-name=writer"],
        "{.items[0].metadata.name}",
    );
    assert_eq!(get(cluster, &["pod", &pod], "{.status.phase}"), "Succeeded");
    assert_eq!(
        get(
            cluster,
            &["pod", &pod],
            "{.status.containerStatuses[0].state.terminated.message}"
        ),
        "done"
    );
    let out = fs::read_to_string(node.claim_dir(NS, "data").unwrap().join("out.txt")).unwrap();
    assert_eq!(out, format!("from the volume\ns3cret {pod}\n"));
}

fn failed_container_reports_exit_code_and_message(cluster: &Cluster) {
    cluster.apply(
        "apiVersion: v1
kind: Pod
metadata: {name: failing, namespace: e2e-node}
spec:
  restartPolicy: Never
  containers:
  - name: main
    image: example.invalid/busybox:1
    command: [sh, -c, 'echo last words; exit 3']
    terminationMessagePolicy: FallbackToLogsOnError
",
    );
    wait_value(cluster, &["pod", "failing"], "{.status.phase}", "Failed");
    let state = "{.status.containerStatuses[0].state.terminated";
    assert_eq!(
        get(cluster, &["pod", "failing"], &format!("{state}.exitCode}}")),
        "3"
    );
    assert_eq!(
        get(cluster, &["pod", "failing"], &format!("{state}.message}}")),
        "last words"
    );
}

fn snapshot_and_restore_copy_the_volume(cluster: &Cluster, node: &NodeEmulator) {
    cluster.apply(
        "apiVersion: snapshot.storage.k8s.io/v1
kind: VolumeSnapshot
metadata: {name: snap, namespace: e2e-node}
spec:
  source: {persistentVolumeClaimName: data}
",
    );
    wait_value(
        cluster,
        &["volumesnapshot", "snap"],
        "{.status.readyToUse}",
        "true",
    );
    assert_eq!(
        get(
            cluster,
            &["volumesnapshot", "snap"],
            "{.status.restoreSize}"
        ),
        "1073741824"
    );
    // Changes after the snapshot must not show in the restore.
    fs::write(
        node.claim_dir(NS, "data").unwrap().join("in.txt"),
        "changed later",
    )
    .unwrap();
    cluster.apply(
        "apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: restored, namespace: e2e-node}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 1Gi}}
  dataSource: {apiGroup: snapshot.storage.k8s.io, kind: VolumeSnapshot, name: snap}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: clone, namespace: e2e-node}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 1Gi}}
  dataSource: {kind: PersistentVolumeClaim, name: data}
",
    );
    wait_value(cluster, &["pvc", "restored"], "{.status.phase}", "Bound");
    wait_value(cluster, &["pvc", "clone"], "{.status.phase}", "Bound");
    let restored = node.claim_dir(NS, "restored").unwrap();
    assert_eq!(
        fs::read_to_string(restored.join("in.txt")).unwrap(),
        "from the volume\n"
    );
    let clone = node.claim_dir(NS, "clone").unwrap();
    assert_eq!(
        fs::read_to_string(clone.join("in.txt")).unwrap(),
        "changed later"
    );

    // Deleting the snapshot deletes its content and copy (policy Delete).
    let content = get(
        cluster,
        &["volumesnapshot", "snap"],
        "{.status.boundVolumeSnapshotContentName}",
    );
    cluster.kubectl(&["delete", "volumesnapshot", "snap", "-n", NS]);
    cluster.wait_for(
        "the VolumeSnapshotContent to be deleted",
        Duration::from_secs(30),
        || {
            cluster
                .try_kubectl(&["get", "volumesnapshotcontent", &content])
                .is_err()
        },
    );
}

fn active_deadline_stops_the_pod(cluster: &Cluster) {
    cluster.apply(
        "apiVersion: v1
kind: Pod
metadata: {name: slow, namespace: e2e-node}
spec:
  restartPolicy: Never
  activeDeadlineSeconds: 2
  terminationGracePeriodSeconds: 1
  containers:
  - {name: main, image: example.invalid/busybox:1, command: [sleep, '600']}
",
    );
    wait_value(
        cluster,
        &["pod", "slow"],
        "{.status.reason}",
        "DeadlineExceeded",
    );
    assert_eq!(get(cluster, &["pod", "slow"], "{.status.phase}"), "Failed");
}

fn deleted_pod_is_stopped_and_removed(cluster: &Cluster) {
    cluster.apply(
        "apiVersion: v1
kind: Pod
metadata: {name: doomed, namespace: e2e-node}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - {name: main, image: example.invalid/busybox:1, command: [sleep, '600']}
",
    );
    wait_value(cluster, &["pod", "doomed"], "{.status.phase}", "Running");
    cluster.kubectl(&[
        "delete",
        "pod",
        "doomed",
        "-n",
        NS,
        "--wait=true",
        "--timeout=30s",
    ]);
    assert!(
        cluster
            .try_kubectl(&["get", "pod", "doomed", "-n", NS])
            .is_err()
    );
}

fn deleted_claim_releases_and_removes_its_volume(cluster: &Cluster, node: &NodeEmulator) {
    let dir = node.claim_dir(NS, "clone").unwrap();
    let volume = get(cluster, &["pvc", "clone"], "{.spec.volumeName}");
    cluster.kubectl(&[
        "delete",
        "pvc",
        "clone",
        "-n",
        NS,
        "--wait=true",
        "--timeout=30s",
    ]);
    cluster.wait_for(
        "the released PersistentVolume to be deleted",
        Duration::from_secs(60),
        || cluster.try_kubectl(&["get", "pv", &volume]).is_err(),
    );
    assert!(
        !dir.exists(),
        "{} was not removed with its volume",
        dir.display()
    );
}

fn image_entrypoint_runs_its_stand_in_program(cluster: &Cluster) {
    cluster.apply(
        "apiVersion: v1
kind: Pod
metadata: {name: mover, namespace: e2e-node}
spec:
  restartPolicy: Never
  containers:
  - name: mover
    image: ghcr.io/sluice-dev/sluice-mover:dev
    args: [sh, -c, 'printf \"entrypoint $0\" > /dev/termination-log']
",
    );
    wait_value(cluster, &["pod", "mover"], "{.status.phase}", "Succeeded");
    assert_eq!(
        get(
            cluster,
            &["pod", "mover"],
            "{.status.containerStatuses[0].state.terminated.message}"
        ),
        "entrypoint sh"
    );
}
