//! containerd, the node's container runtime, with a root, state directory
//! and socket of its own under the node's directory, so a test never
//! touches a system containerd.
//!
//! Debian's containerd 1.6 has the CRI plugin built in; the kubelet talks to
//! it over the socket. Two settings are needed on these machines:
//! `restrict_oom_score_adj` (the session's root lacks CAP_SYS_RESOURCE, so
//! runc cannot set the negative score the kubelet asks for sandboxes), and
//! network namespaces under the state directory, so they are unmounted with
//! the rest of the node. `device_ownership_from_security_context` gives a
//! non-root container its Block volume's device, as production clusters
//! configure it.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use sluice_testkit::process::Daemon;

use crate::host::CRI_NAMESPACE;

/// A running containerd.
#[derive(Debug)]
pub struct Containerd {
    daemon: Daemon,
    socket: PathBuf,
}

impl Containerd {
    /// Starts containerd under `dir`, in the cgroup whose `cgroup.procs` is
    /// `cgroup_procs` (its shims inherit it, so the node's teardown finds
    /// them), with `sandbox_image` as the pod sandbox and the CNI
    /// configuration in `cni_dir`.
    pub fn start(
        dir: &Path,
        cgroup_procs: &Path,
        sandbox_image: &str,
        cni_dir: &Path,
    ) -> Containerd {
        fs::create_dir_all(dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        let socket = dir.join("containerd.sock");
        let config = dir.join("config.toml");
        fs::write(&config, config_toml(dir, &socket, sandbox_image, cni_dir))
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", config.display()));
        let mut command = Command::new("containerd");
        command.arg("--config").arg(&config);
        // Opened before the fork: between fork and exec only write(2) runs.
        let procs = fs::OpenOptions::new()
            .write(true)
            .open(cgroup_procs)
            .unwrap_or_else(|e| panic!("cannot open {}: {e}", cgroup_procs.display()));
        let fd = std::os::fd::AsRawFd::as_raw_fd(&procs);
        // SAFETY: write(2) of a static buffer to an open descriptor is
        // async-signal-safe; "0" moves the writing process into the cgroup.
        unsafe {
            use std::os::unix::process::CommandExt;
            command.pre_exec(move || {
                if libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut daemon = Daemon::spawn("containerd", command, &dir.join("containerd.log"));
        drop(procs);
        let probe_socket = socket.clone();
        daemon.wait_ready("serving its socket", Duration::from_secs(60), || {
            ctr(&probe_socket)
                .arg("version")
                .output()
                .is_ok_and(|o| o.status.success())
        });
        Containerd { daemon, socket }
    }

    /// The CRI socket, for the kubelet.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// A `ctr` command against this containerd in the CRI namespace.
    pub fn ctr(&self) -> Command {
        ctr(&self.socket)
    }

    /// Imports an OCI image archive (its name comes from the archive's
    /// `io.containerd.image.name` annotation) and unpacks it for the CRI
    /// plugin, as a pull would.
    pub fn import(&self, archive: &Path) {
        let output = self
            .ctr()
            .args(["images", "import"])
            .arg(archive)
            .output()
            .unwrap_or_else(|e| panic!("cannot run ctr: {e}"));
        assert!(
            output.status.success(),
            "ctr images import {} failed: {}",
            archive.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }

    /// The last `lines` lines of containerd's log.
    pub fn log_tail(&self, lines: usize) -> String {
        self.daemon.log_tail(lines)
    }
}

fn ctr(socket: &Path) -> Command {
    let mut command = Command::new("ctr");
    command
        .arg("--address")
        .arg(socket)
        .args(["--namespace", CRI_NAMESPACE]);
    command
}

fn config_toml(dir: &Path, socket: &Path, sandbox_image: &str, cni_dir: &Path) -> String {
    let d = dir.display();
    format!(
        r#"version = 2
root = "{d}/root"
state = "{d}/state"
disabled_plugins = [
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
]

[grpc]
  address = "{socket}"

[plugins."io.containerd.internal.v1.opt"]
  path = "{d}/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{sandbox_image}"
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  device_ownership_from_security_context = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "{d}/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{cni}"
"#,
        socket = socket.display(),
        cni = cni_dir.display(),
    )
}
