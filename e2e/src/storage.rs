//! Storage on the real node: the CSI test driver (`e2e/csi-driver`, the one
//! stand-in), the real snapshot-controller and csi-snapshotter sidecar of
//! external-snapshotter with the VolumeSnapshot CRDs of the same release,
//! and the classes a user would find: a default StorageClass, a
//! `WaitForFirstConsumer` one, and a default VolumeSnapshotClass.
//!
//! The driver registers with the kubelet through its plugin-registration
//! socket, so every volume a Pod uses is mounted by the kubelet through CSI
//! node calls. It provisions PVCs itself (external-provisioner is not
//! served by the module proxy here): empty, cloned from a PVC, restored from
//! a VolumeSnapshot, and Block volumes on loop devices.

use std::fs;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use sluice_testkit::process::Daemon;
use sluice_testkit::tools::Tool;

use crate::cluster::Cluster;
use crate::node::{NODE_NAME, Node};

/// The CSI driver's name, the provisioner of its StorageClasses.
pub const DRIVER: &str = "e2e.sluice.dev";
/// The default StorageClass (volumes bind at once).
pub const STORAGE_CLASS: &str = "sluice-e2e";
/// A StorageClass whose volumes bind when their first Pod is scheduled.
pub const WAIT_FOR_CONSUMER_CLASS: &str = "sluice-e2e-wait";
/// The default VolumeSnapshotClass.
pub const SNAPSHOT_CLASS: &str = "sluice-e2e";

/// The running storage stack.
pub struct Storage {
    // Stopped in this order by Drop.
    snapshot_controller: Option<Daemon>,
    snapshotter: Option<Daemon>,
    driver: Option<Daemon>,
    volumes: PathBuf,
}

impl Storage {
    /// Installs the VolumeSnapshot CRDs, starts the driver, the sidecar and
    /// the controller, creates the classes, and returns once the kubelet
    /// has registered the driver.
    pub fn start(cluster: &Cluster, node: &Node) -> Storage {
        let binaries = [
            Tool::CsiDriver,
            Tool::CsiSnapshotter,
            Tool::SnapshotController,
        ]
        .map(Tool::path);
        install_snapshot_crds(cluster);
        let root = node.root().join("storage");
        fs::create_dir_all(&root)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", root.display()));
        let socket = node
            .kubelet_dir()
            .join("plugins")
            .join(DRIVER)
            .join("csi.sock");
        let kubeconfig = cluster.kubeconfig();

        let mut command = Command::new(&binaries[0]);
        command
            .arg(format!("-name={DRIVER}"))
            .arg(format!("-root={}", root.display()))
            .arg(format!("-csi-socket={}", socket.display()))
            .arg(format!(
                "-registration-dir={}",
                node.kubelet_dir().join("plugins_registry").display()
            ))
            .arg(format!("-node={NODE_NAME}"))
            .arg(format!("-kubeconfig={}", kubeconfig.display()));
        let driver = Daemon::spawn("csi-driver", command, &node.root().join("csi-driver.log"));
        let mut storage = Storage {
            snapshot_controller: None,
            snapshotter: None,
            driver: Some(driver),
            volumes: root.join("volumes"),
        };

        let mut command = Command::new(&binaries[1]);
        command
            .arg(format!("--csi-address={}", socket.display()))
            .arg(format!("--kubeconfig={}", kubeconfig.display()))
            .arg("--leader-election=false")
            .arg("--timeout=60s")
            .arg("--v=2");
        storage.snapshotter = Some(Daemon::spawn(
            "csi-snapshotter",
            command,
            &node.root().join("csi-snapshotter.log"),
        ));
        let mut command = Command::new(&binaries[2]);
        command
            .arg(format!("--kubeconfig={}", kubeconfig.display()))
            .arg("--leader-election=false")
            .arg("--v=2");
        storage.snapshot_controller = Some(Daemon::spawn(
            "snapshot-controller",
            command,
            &node.root().join("snapshot-controller.log"),
        ));

        cluster.apply(&classes());
        let driver = storage.driver.as_mut().expect("started");
        driver.wait_ready(
            "registered with the kubelet",
            Duration::from_secs(60),
            || {
                cluster
                    .try_kubectl(&[
                        "get",
                        "csinode",
                        NODE_NAME,
                        "-o",
                        "jsonpath={.spec.drivers[*].name}",
                    ])
                    .is_ok_and(|drivers| drivers.split_whitespace().any(|d| d == DRIVER))
            },
        );
        storage
    }

    /// The directory holding the data of Filesystem PVC `namespace/claim`
    /// once it is bound to a volume of the driver (None before).
    pub fn claim_dir(&self, cluster: &Cluster, namespace: &str, claim: &str) -> Option<PathBuf> {
        let dir = self.volumes.join(volume_handle(cluster, namespace, claim)?);
        dir.is_dir().then_some(dir)
    }

    /// The image file behind Block-mode PVC `namespace/claim` once bound.
    pub fn claim_image(&self, cluster: &Cluster, namespace: &str, claim: &str) -> Option<PathBuf> {
        let handle = volume_handle(cluster, namespace, claim)?;
        let image = self.volumes.join(format!("{handle}.img"));
        image.is_file().then_some(image)
    }

    /// The driver's log, for diagnosing a failed test.
    pub fn driver_log(&self, lines: usize) -> String {
        self.driver
            .as_ref()
            .map(|d| d.log_tail(lines))
            .unwrap_or_default()
    }
}

impl Drop for Storage {
    fn drop(&mut self) {
        drop(self.snapshot_controller.take());
        drop(self.snapshotter.take());
        drop(self.driver.take());
    }
}

/// The CSI volume handle of the PV bound to PVC `namespace/claim`.
fn volume_handle(cluster: &Cluster, namespace: &str, claim: &str) -> Option<String> {
    let volume = cluster
        .try_kubectl(&[
            "get",
            "pvc",
            claim,
            "-n",
            namespace,
            "-o",
            "jsonpath={.spec.volumeName}",
        ])
        .ok()
        .filter(|v| !v.is_empty())?;
    cluster
        .try_kubectl(&[
            "get",
            "pv",
            &volume,
            "-o",
            "jsonpath={.spec.csi.volumeHandle}",
        ])
        .ok()
        .filter(|h| !h.is_empty())
}

/// Installs the VolumeSnapshot CRDs of the pinned external-snapshotter
/// release and waits until they are established; also for tests that run a
/// control plane without a node but watch VolumeSnapshots.
pub fn install_snapshot_crds(cluster: &Cluster) {
    let dir = Tool::SnapshotCrds.path();
    let mut names = Vec::new();
    for kind in [
        "volumesnapshotclasses",
        "volumesnapshotcontents",
        "volumesnapshots",
    ] {
        let file = dir.join(format!("snapshot.storage.k8s.io_{kind}.yaml"));
        let manifest = fs::read_to_string(&file).unwrap_or_else(|e| {
            panic!(
                "cannot read {}: {e} (run e2e/tools.sh snapshotter)",
                file.display()
            )
        });
        cluster.apply(&manifest);
        names.push(format!("{kind}.snapshot.storage.k8s.io"));
    }
    cluster.wait_established(&names.iter().map(String::as_str).collect::<Vec<_>>());
}

fn classes() -> String {
    format!(
        "apiVersion: storage.k8s.io/v1
kind: CSIDriver
metadata: {{name: {DRIVER}}}
spec:
  attachRequired: false
  podInfoOnMount: false
  # The kubelet makes each volume writable for the Pod's fsGroup, as for a
  # block-storage driver's ext4 volume.
  fsGroupPolicy: File
  volumeLifecycleModes: [Persistent]
---
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: {STORAGE_CLASS}
  annotations: {{storageclass.kubernetes.io/is-default-class: \"true\"}}
provisioner: {DRIVER}
reclaimPolicy: Delete
volumeBindingMode: Immediate
---
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata: {{name: {WAIT_FOR_CONSUMER_CLASS}}}
provisioner: {DRIVER}
reclaimPolicy: Delete
volumeBindingMode: WaitForFirstConsumer
---
apiVersion: snapshot.storage.k8s.io/v1
kind: VolumeSnapshotClass
metadata:
  name: {SNAPSHOT_CLASS}
  annotations: {{snapshot.storage.kubernetes.io/is-default-class: \"true\"}}
driver: {DRIVER}
deletionPolicy: Delete
"
    )
}
