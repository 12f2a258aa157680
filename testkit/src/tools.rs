//! Where the real component binaries are.
//!
//! `e2e/tools.sh` builds them at pinned versions into `~/.cache/sluice/bin`;
//! an environment variable can point at another build, and restic alone may
//! fall back to the distribution's package, which is older but compatible.

use std::env;
use std::path::{Path, PathBuf};

/// A component binary the tests run for real.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tool {
    /// The restic CLI: the oracle for the repository format.
    Restic,
    /// The MinIO server: the S3 endpoint for object-storage tests.
    Minio,
    /// The etcd server behind kube-apiserver.
    Etcd,
    /// The Kubernetes API server.
    KubeApiserver,
    /// kube-controller-manager: the real Job controller and garbage collector.
    KubeControllerManager,
    /// kubectl at the API server's version.
    Kubectl,
    /// The real node's kubelet.
    Kubelet,
    /// kube-scheduler, which places Pods on the node.
    KubeScheduler,
    /// kube-proxy, which makes Service IPs (the `kubernetes` Service) work.
    KubeProxy,
    /// The CSI snapshot controller of external-snapshotter.
    SnapshotController,
    /// The csi-snapshotter sidecar of external-snapshotter.
    CsiSnapshotter,
    /// The directory of VolumeSnapshot CRDs from the same external-snapshotter release.
    SnapshotCrds,
    /// Sluice's CSI test driver (`e2e/csi-driver`).
    CsiDriver,
    /// Helm, which lints, renders and installs `charts/sluice`.
    Helm,
    /// crane, which pushes the image archive to a registry (the README's install steps).
    Crane,
    /// The distribution registry, the local registry crane pushes to in tests.
    Registry,
}

impl Tool {
    /// The binary's file name under the cache and on PATH.
    pub fn binary_name(self) -> &'static str {
        match self {
            Tool::Restic => "restic",
            Tool::Minio => "minio",
            Tool::Etcd => "etcd",
            Tool::KubeApiserver => "kube-apiserver",
            Tool::KubeControllerManager => "kube-controller-manager",
            Tool::Kubectl => "kubectl",
            Tool::Kubelet => "kubelet",
            Tool::KubeScheduler => "kube-scheduler",
            Tool::KubeProxy => "kube-proxy",
            Tool::SnapshotController => "snapshot-controller",
            Tool::CsiSnapshotter => "csi-snapshotter",
            Tool::SnapshotCrds => "snapshot-crds",
            Tool::CsiDriver => "sluice-csi-driver",
            Tool::Helm => "helm",
            Tool::Crane => "crane",
            Tool::Registry => "registry",
        }
    }

    /// The variable that overrides where the binary is, e.g. `SLUICE_KUBECTL`.
    pub fn env_var(self) -> &'static str {
        match self {
            Tool::Restic => "SLUICE_RESTIC",
            Tool::Minio => "SLUICE_MINIO",
            Tool::Etcd => "SLUICE_ETCD",
            Tool::KubeApiserver => "SLUICE_KUBE_APISERVER",
            Tool::KubeControllerManager => "SLUICE_KUBE_CONTROLLER_MANAGER",
            Tool::Kubectl => "SLUICE_KUBECTL",
            Tool::Kubelet => "SLUICE_KUBELET",
            Tool::KubeScheduler => "SLUICE_KUBE_SCHEDULER",
            Tool::KubeProxy => "SLUICE_KUBE_PROXY",
            Tool::SnapshotController => "SLUICE_SNAPSHOT_CONTROLLER",
            Tool::CsiSnapshotter => "SLUICE_CSI_SNAPSHOTTER",
            Tool::SnapshotCrds => "SLUICE_SNAPSHOT_CRDS",
            Tool::CsiDriver => "SLUICE_CSI_DRIVER",
            Tool::Helm => "SLUICE_HELM",
            Tool::Crane => "SLUICE_CRANE",
            Tool::Registry => "SLUICE_REGISTRY",
        }
    }

    /// The `e2e/tools.sh` argument that builds this binary.
    pub fn component(self) -> &'static str {
        match self {
            Tool::Restic => "restic",
            Tool::Minio => "minio",
            Tool::Etcd => "etcd",
            Tool::KubeApiserver
            | Tool::KubeControllerManager
            | Tool::Kubectl
            | Tool::Kubelet
            | Tool::KubeScheduler
            | Tool::KubeProxy => "kube",
            Tool::SnapshotController | Tool::CsiSnapshotter | Tool::SnapshotCrds => "snapshotter",
            Tool::CsiDriver => "csi-driver",
            Tool::Helm => "helm",
            Tool::Crane => "crane",
            Tool::Registry => "registry",
        }
    }

    /// The binary to run: `$SLUICE_<NAME>`, else `~/.cache/sluice/bin/<name>`,
    /// else (restic only) `restic` on PATH. Panics with the command that
    /// builds it when none exists, so a test fails saying what to do.
    pub fn path(self) -> PathBuf {
        self.find()
            .unwrap_or_else(|| panic!("{}", self.missing_message()))
    }

    fn find(self) -> Option<PathBuf> {
        if let Some(path) = env::var_os(self.env_var()) {
            let path = PathBuf::from(path);
            if !is_executable(&path) {
                panic!(
                    "{} points at {}, which is not an executable file: fix the variable or unset it",
                    self.env_var(),
                    path.display()
                );
            }
            return Some(path);
        }
        let cached = cache_bin_dir().join(self.binary_name());
        if is_executable(&cached) {
            return Some(cached);
        }
        // Debian's restic is older but reads and writes the same format; the
        // other components' distribution packages are too old to use.
        if self == Tool::Restic {
            return find_on_path(self.binary_name());
        }
        None
    }

    fn missing_message(self) -> String {
        let mut message = format!(
            "{} not found: run e2e/tools.sh {} (or set {})",
            self.binary_name(),
            self.component(),
            self.env_var()
        );
        if self == Tool::Restic {
            message.push_str(" or apt-get install restic");
        }
        message
    }
}

/// `~/.cache/sluice/bin`, where `e2e/tools.sh` puts what it builds; the
/// `SLUICE_CACHE` variable moves the cache as it does for the script.
pub fn cache_bin_dir() -> PathBuf {
    let cache = match env::var_os("SLUICE_CACHE") {
        Some(dir) => PathBuf::from(dir),
        None => {
            let home = env::var_os("HOME").expect("HOME is not set: set it or SLUICE_CACHE");
            PathBuf::from(home).join(".cache/sluice")
        }
    };
    cache.join("bin")
}

/// The first executable `name` in a directory of `PATH`.
pub(crate) fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = env::var_os("PATH")?;
    env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

/// An executable file, or (for [`Tool::SnapshotCrds`]) a directory.
fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .map(|m| m.is_dir() || (m.is_file() && m.permissions().mode() & 0o111 != 0))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_message_names_the_build_command() {
        assert_eq!(
            Tool::KubeControllerManager.missing_message(),
            "kube-controller-manager not found: run e2e/tools.sh kube (or set SLUICE_KUBE_CONTROLLER_MANAGER)"
        );
        assert!(
            Tool::Restic
                .missing_message()
                .ends_with("or apt-get install restic")
        );
    }
}
