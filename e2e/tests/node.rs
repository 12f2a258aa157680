//! The real node is the real thing, and leaves nothing behind: the Sluice
//! image runs as uid 65532 on a read-only root; a Pod under the restricted
//! Pod Security Standard mounts a volume the CSI test driver provisioned,
//! through the kubelet; clones, VolumeSnapshots (the real snapshot-controller
//! and csi-snapshotter) and restores copy the data; a Block volume is a loop
//! device in the Pod; `kubectl logs` works; Pods have no route beyond the
//! test's bridge; and stopping the cluster removes the bridge, the iptables
//! chains, the cgroups, the mounts and the loop devices.

mod scenario;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use sluice_e2e::host;
use sluice_e2e::images::{PAUSE_IMAGE, SLUICE_IMAGE};
use sluice_e2e::storage::{STORAGE_CLASS, WAIT_FOR_CONSUMER_CLASS};
use sluice_e2e::{Stack, stack::PASSWORD};
use sluice_testkit::Tool;
use sluice_testkit::tree::{Compare, assert_same_tree};

const NS: &str = "node";
const WAIT: Duration = Duration::from_secs(120);

#[test]
fn real_node_scenarios() {
    let stack = Stack::start_without_sluice();
    stack.namespace(NS);
    image_runs_as_nonroot_with_a_read_only_root_and_no_shell(&stack);
    restricted_pod_writes_to_a_provisioned_volume(&stack);
    clones_snapshots_and_restores_copy_the_data(&stack);
    wait_for_first_consumer_binds_when_the_pod_is_scheduled(&stack);
    block_volume_is_a_loop_device_in_the_pod(&stack);
    pods_have_no_route_beyond_the_bridge(&stack);
    let node_dir = stack.node.root().to_path_buf();
    drop(stack);
    stopping_removes_everything_it_made(&node_dir);
}

fn image_runs_as_nonroot_with_a_read_only_root_and_no_shell(stack: &Stack) {
    let archive = stack.image_archive();
    let size = fs::metadata(&archive).unwrap().len();
    eprintln!(
        "Sluice image archive (debug binaries): {:.1} MiB",
        size as f64 / (1 << 20) as f64
    );
    let containerd = stack.node.containerd();
    let run = |id: &str, args: &[&str]| {
        containerd
            .ctr()
            .args(["run", "--rm", "--read-only", "--cgroup", ""])
            .args([SLUICE_IMAGE, id])
            .args(args)
            .output()
            .unwrap()
    };
    let version = run("version", &["/usr/local/bin/sluice-mover", "version"]);
    let stdout = String::from_utf8_lossy(&version.stdout);
    assert!(
        version.status.success() && stdout.starts_with("sluice-mover 0.1.0"),
        "sluice-mover version in the image: {stdout}{}",
        String::from_utf8_lossy(&version.stderr)
    );
    // The runtime spec containerd gives runc: the image's user, read-only.
    let created = containerd
        .ctr()
        .args([
            "containers",
            "create",
            "--read-only",
            SLUICE_IMAGE,
            "inspect",
        ])
        .output()
        .unwrap();
    assert!(created.status.success(), "{created:?}");
    let info = containerd
        .ctr()
        .args(["containers", "info", "inspect"])
        .output()
        .unwrap();
    let info: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
    assert_eq!(info["Spec"]["process"]["user"]["uid"], 65532, "{info}");
    assert_eq!(info["Spec"]["process"]["user"]["gid"], 65532, "{info}");
    assert_eq!(info["Spec"]["root"]["readonly"], true, "{info}");
    containerd
        .ctr()
        .args(["containers", "rm", "inspect"])
        .output()
        .unwrap();
    let shell = run("shell", &["/bin/sh", "-c", "true"]);
    assert!(!shell.status.success(), "the image must have no shell");
}

/// A Pod of the Sluice image in the restricted namespace.
fn pod(name: &str, command: &[&str], env: &[(&str, &str)], volume: &str) -> String {
    let command = serde_json::to_string(command).unwrap();
    let env: Vec<serde_json::Value> = env
        .iter()
        .map(|(k, v)| serde_json::json!({"name": k, "value": v}))
        .collect();
    format!(
        "apiVersion: v1
kind: Pod
metadata: {{name: {name}, namespace: {NS}}}
spec:
  restartPolicy: Never
  securityContext:
    runAsNonRoot: true
    runAsUser: 65532
    runAsGroup: 65532
    fsGroup: 65532
    seccompProfile: {{type: RuntimeDefault}}
  containers:
    - name: main
      image: {SLUICE_IMAGE}
      imagePullPolicy: Never
      command: {command}
      env: {env}
      securityContext:
        allowPrivilegeEscalation: false
        readOnlyRootFilesystem: true
        capabilities: {{drop: [ALL]}}
{volume}",
        env = serde_json::Value::from(env),
    )
}

fn claim(name: &str, class: &str, extra: &str) -> String {
    format!(
        "apiVersion: v1
kind: PersistentVolumeClaim
metadata: {{name: {name}, namespace: {NS}}}
spec:
  accessModes: [ReadWriteOnce]
  storageClassName: {class}
  resources: {{requests: {{storage: 64Mi}}}}
{extra}"
    )
}

fn wait_pod_phase(stack: &Stack, name: &str, phase: &str) {
    stack.wait_field(NS, &format!("pod/{name}"), "{.status.phase}", WAIT, |p| {
        p == phase
    });
}

fn restricted_pod_writes_to_a_provisioned_volume(stack: &Stack) {
    let dir = stack.claim(NS, "data");
    fs::write(dir.join("from-the-host.txt"), "hello\n").unwrap();
    let mounts = "      volumeMounts: [{name: data, mountPath: /data}]
  volumes: [{name: data, persistentVolumeClaim: {claimName: data}}]
";
    stack.cluster.apply(&pod(
        "writer",
        &["/usr/local/bin/sluice-mover", "init"],
        &[
            ("RESTIC_REPOSITORY", "/data/repo"),
            ("RESTIC_PASSWORD", PASSWORD),
        ],
        mounts,
    ));
    wait_pod_phase(stack, "writer", "Succeeded");
    // The kubelet mounted the driver's volume: the Pod's writes are in it,
    // owned by the Pod's user, and the host's file is still there.
    let config = dir.join("repo/config");
    let meta = fs::metadata(&config).unwrap_or_else(|e| {
        panic!(
            "{} was not written through the mount: {e}\n{}",
            config.display(),
            stack.diagnose(NS, "pod/writer")
        )
    });
    assert_eq!(meta.uid(), 65532);
    assert_eq!(meta.gid(), 65532);
    assert!(dir.join("from-the-host.txt").exists());
    let log = stack.pod_log(NS, "writer", 20);
    assert!(
        log.contains("created restic repository"),
        "kubectl logs writer:\n{log}"
    );
    // restic, the format oracle, opens what the Pod wrote.
    let checked = Command::new(Tool::Restic.path())
        .args(["check", "--no-lock"])
        .env("RESTIC_REPOSITORY", dir.join("repo"))
        .env("RESTIC_PASSWORD", PASSWORD)
        .env("RESTIC_CACHE_DIR", stack.node.root().join("restic-cache"))
        .output()
        .unwrap();
    assert!(checked.status.success(), "restic check: {checked:?}");
    stack
        .cluster
        .kubectl(&["delete", "pod", "writer", "-n", NS]);
}

fn clones_snapshots_and_restores_copy_the_data(stack: &Stack) {
    let source = stack.claim(NS, "original");
    scenario::write_sample(&source, "original");
    stack.cluster.apply(&claim(
        "clone",
        STORAGE_CLASS,
        "  dataSource: {kind: PersistentVolumeClaim, name: original}\n",
    ));
    let clone = stack.wait_claim_dir(NS, "clone");
    assert_same_tree(&source, &clone, Compare::EXACT);

    stack.cluster.apply(&format!(
        "apiVersion: snapshot.storage.k8s.io/v1
kind: VolumeSnapshot
metadata: {{name: snap, namespace: {NS}}}
spec:
  source: {{persistentVolumeClaimName: original}}
"
    ));
    stack.wait_field(
        NS,
        "volumesnapshot/snap",
        "{.status.readyToUse}",
        WAIT,
        |v| v == "true",
    );
    assert_eq!(
        stack.get(NS, "volumesnapshot/snap", "{.status.restoreSize}"),
        "1Gi"
    );
    // A later change to the source is not in the snapshot.
    fs::write(source.join("generation.txt"), "changed after the snapshot").unwrap();
    stack.cluster.apply(&claim(
        "restored",
        STORAGE_CLASS,
        "  dataSource: {apiGroup: snapshot.storage.k8s.io, kind: VolumeSnapshot, name: snap}\n",
    ));
    let restored = stack.wait_claim_dir(NS, "restored");
    assert_eq!(
        fs::read_to_string(restored.join("generation.txt")).unwrap(),
        "original"
    );
    // The schema of the release's CRDs is enforced: a source is immutable.
    let changed = stack.cluster.try_kubectl(&[
        "patch",
        "volumesnapshot",
        "snap",
        "-n",
        NS,
        "--type=merge",
        "-p",
        "{\"spec\":{\"source\":{\"persistentVolumeClaimName\":\"other\"}}}",
    ]);
    let error = changed.expect_err("changing a VolumeSnapshot's source was accepted");
    assert!(error.contains("immutable"), "unexpected error: {error}");
    // Deleting the snapshot deletes its content (deletionPolicy Delete).
    let content = stack.get(
        NS,
        "volumesnapshot/snap",
        "{.status.boundVolumeSnapshotContentName}",
    );
    stack
        .cluster
        .kubectl(&["delete", "volumesnapshot", "snap", "-n", NS]);
    stack
        .cluster
        .wait_for("the snapshot content to go", WAIT, || {
            stack
                .cluster
                .try_kubectl(&["get", "volumesnapshotcontent", &content])
                .is_err()
        });
}

fn wait_for_first_consumer_binds_when_the_pod_is_scheduled(stack: &Stack) {
    stack
        .cluster
        .apply(&claim("late", WAIT_FOR_CONSUMER_CLASS, ""));
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(stack.get(NS, "pvc/late", "{.status.phase}"), "Pending");
    stack.cluster.apply(&pod(
        "consumer",
        &["/usr/local/bin/sluice-mover", "version"],
        &[],
        "      volumeMounts: [{name: data, mountPath: /data}]
  volumes: [{name: data, persistentVolumeClaim: {claimName: late}}]
",
    ));
    wait_pod_phase(stack, "consumer", "Succeeded");
    assert_eq!(stack.get(NS, "pvc/late", "{.status.phase}"), "Bound");
    assert_eq!(
        stack.get(
            NS,
            "pvc/late",
            "{.metadata.annotations.volume\\.kubernetes\\.io/selected-node}"
        ),
        sluice_e2e::node::NODE_NAME
    );
    let log = stack.pod_log(NS, "consumer", 5);
    assert!(
        log.starts_with("sluice-mover 0.1.0"),
        "kubectl logs consumer: {log}"
    );
    // The termination message reaches the API, as the operator reads it.
    assert_eq!(
        stack.get(
            NS,
            "pod/consumer",
            "{.status.containerStatuses[0].state.terminated.exitCode}"
        ),
        "0"
    );
}

fn block_volume_is_a_loop_device_in_the_pod(stack: &Stack) {
    stack
        .cluster
        .apply(&claim("disk", STORAGE_CLASS, "  volumeMode: Block\n"));
    let mut image = None;
    stack.cluster.wait_for("the Block PVC to bind", WAIT, || {
        image = stack.storage.claim_image(&stack.cluster, NS, "disk");
        image.is_some()
    });
    let image = image.unwrap();
    assert_eq!(fs::metadata(&image).unwrap().len(), 64 << 20);
    // The Pod sees the device at its devicePath: a repository path below it
    // fails because the device is not a directory, not because it is
    // missing. (Reading the device as the Pod's user is the Block-mode
    // backup's test.)
    stack.cluster.apply(&pod(
        "block",
        &["/usr/local/bin/sluice-mover", "snapshots"],
        &[
            ("RESTIC_REPOSITORY", "/dev/xvda"),
            ("RESTIC_PASSWORD", PASSWORD),
        ],
        "      volumeDevices: [{name: disk, devicePath: /dev/xvda}]
  volumes: [{name: disk, persistentVolumeClaim: {claimName: disk}}]
",
    ));
    stack.wait_field(NS, "pod/block", "{.status.phase}", WAIT, |p| {
        p == "Succeeded" || p == "Failed"
    });
    let attached = Command::new("losetup")
        .args(["--associated"])
        .arg(&image)
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&attached.stdout).contains("/dev/loop"),
        "{} is not attached to a loop device",
        image.display()
    );
    let log = stack.pod_log(NS, "block", 5);
    assert!(
        log.contains("ot a directory") && !log.contains("No such file"),
        "the Pod does not see its device: {log}"
    );
    stack.cluster.kubectl(&["delete", "pod", "block", "-n", NS]);
    stack.cluster.kubectl(&["delete", "pvc", "disk", "-n", NS]);
    stack
        .cluster
        .wait_for("the Block volume to be deleted", WAIT, || !image.exists());
}

fn pods_have_no_route_beyond_the_bridge(stack: &Stack) {
    // A Pod that stays up (the sandbox program as its container).
    let idle = pod("idle", &["/pause"], &[], "").replace(SLUICE_IMAGE, PAUSE_IMAGE);
    stack.cluster.apply(&idle);
    wait_pod_phase(stack, "idle", "Running");
    let ip = stack.get(NS, "pod/idle", "{.status.podIP}");
    assert!(
        ip.starts_with("10.234.0."),
        "Pod address {ip} is not on the bridge"
    );
    // Every Pod network namespace lives under containerd's state directory.
    let mut namespaces = Vec::new();
    let state = stack.node.root().join("containerd/state");
    find_netns(&state, &mut namespaces);
    assert!(
        !namespaces.is_empty(),
        "no Pod network namespace under {}",
        state.display()
    );
    for netns in namespaces {
        let routes = Command::new("nsenter")
            .arg(format!("--net={}", netns.display()))
            .args(["ip", "-4", "route"])
            .output()
            .unwrap();
        let routes = String::from_utf8_lossy(&routes.stdout);
        assert!(
            !routes.contains("default"),
            "a Pod has a default route: {routes}"
        );
        for line in routes.lines() {
            assert!(
                line.starts_with(host::POD_SUBNET) || line.starts_with(host::SERVICE_SUBNET),
                "a Pod route leads outside the test's networks: {line}"
            );
        }
    }
    assert_eq!(
        fs::read_to_string("/proc/sys/net/ipv4/ip_forward")
            .unwrap()
            .trim(),
        "0",
        "IP forwarding was turned on"
    );
    let nat = Command::new("iptables-save")
        .args(["-t", "nat"])
        .output()
        .unwrap();
    let nat = String::from_utf8_lossy(&nat.stdout);
    assert!(
        !nat.lines()
            .any(|l| l.contains("MASQUERADE") && l.contains("10.234.")),
        "the Pod subnet is masqueraded:\n{nat}"
    );
    stack
        .cluster
        .kubectl(&["delete", "pod", "idle", "-n", NS, "--wait=false"]);
}

fn find_netns(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("cni-"))
        {
            out.push(path);
        } else if entry.file_type().is_ok_and(|t| t.is_dir()) {
            find_netns(&path, out);
        }
    }
}

fn stopping_removes_everything_it_made(node_dir: &Path) {
    assert!(!node_dir.exists(), "{} was not removed", node_dir.display());
    assert!(
        !Path::new("/sys/class/net").join(host::BRIDGE).exists(),
        "the bridge {} remains",
        host::BRIDGE
    );
    assert!(
        !Path::new("/sys/fs/cgroup/pids").join(host::CGROUP).exists(),
        "the cgroup {} remains",
        host::CGROUP
    );
    let rules = Command::new("iptables-save").output().unwrap();
    assert!(
        !String::from_utf8_lossy(&rules.stdout).contains("KUBE-"),
        "KUBE-* iptables chains remain"
    );
    let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(&node_dir.to_string_lossy().into_owned()),
        "mounts below {} remain",
        node_dir.display()
    );
    let loops = Command::new("losetup").arg("--list").output().unwrap();
    assert!(
        !String::from_utf8_lossy(&loops.stdout).contains(&node_dir.to_string_lossy().into_owned()),
        "loop devices of {} remain",
        node_dir.display()
    );
}
