//! A real Kubernetes node on this machine: containerd and runc, the kubelet,
//! kube-proxy and kube-scheduler at the control plane's pinned version, CNI
//! bridge networking on the test's bridge, and a pause image built from
//! source as the pod sandbox.
//!
//! Everything lives in one temporary directory (containerd's root and
//! state, the kubelet's root and Pod logs, the CNI configuration and
//! address leases) plus what [`crate::host`] sets up and removes. Dropping
//! the [`Node`] stops the components, kills every container, unmounts what
//! was mounted below the directory and only then deletes it.
//!
//! `real-node-notes.md` in the project's shared notes has the facts this
//! rests on (verified on this kind of machine) and the gotchas.

mod containerd;
mod kubelet;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use sluice_testkit::pki::Usage;
use sluice_testkit::probe::http_get;
use sluice_testkit::process::{Daemon, free_port, free_port_on};
use sluice_testkit::tools::Tool;
use tempfile::TempDir;

pub use containerd::Containerd;

use crate::cluster::Cluster;
use crate::host;
use kubelet::NodeConfig;

/// The node's name (and `kubernetes.io/hostname`).
pub const NODE_NAME: &str = "sluice-e2e-node";

/// A running node; see the module documentation.
pub struct Node {
    // Stopped in this order by Drop.
    scheduler: Option<Daemon>,
    proxy: Option<Daemon>,
    kubelet: Option<Daemon>,
    containerd: Option<Containerd>,
    kubelet_dir: PathBuf,
    dir: Option<TempDir>,
}

impl Node {
    /// Starts containerd, imports `images` (OCI archives; the first is the
    /// pod sandbox image named `sandbox_image`), then the kubelet,
    /// kube-proxy and kube-scheduler against `cluster`, and waits until the
    /// Node is Ready. [`crate::host`] must have made the bridge and cgroups.
    pub fn start(cluster: &Cluster, sandbox_image: &str, images: &[&Path]) -> Node {
        let binaries = [Tool::Kubelet, Tool::KubeProxy, Tool::KubeScheduler].map(Tool::path);
        let dir = tempfile::Builder::new()
            .prefix(host::NODE_DIR_PREFIX)
            .tempdir()
            .unwrap_or_else(|e| panic!("cannot create the node's directory: {e}"));
        let root = dir.path().to_path_buf();
        let kubelet_dir = root.join("kubelet");
        for sub in ["kubelet", "pod-logs", "cni/net.d", "cni/ipam", "pki"] {
            mkdir(&root.join(sub));
        }
        let mut node = Node {
            scheduler: None,
            proxy: None,
            kubelet: None,
            containerd: None,
            kubelet_dir,
            dir: Some(dir),
        };

        let cni_dir = root.join("cni/net.d");
        write(
            &cni_dir.join("10-sluice-e2e.conflist"),
            &kubelet::cni_conflist(
                host::CNI_NETWORK,
                host::BRIDGE,
                host::POD_SUBNET,
                host::bridge_address(),
                host::SERVICE_SUBNET,
                &root.join("cni/ipam"),
            ),
        );
        let cgroup_procs = host::create_cgroups();
        let containerd = Containerd::start(
            &root.join("containerd"),
            &cgroup_procs,
            sandbox_image,
            &cni_dir,
        );
        for image in images {
            containerd.import(image);
        }

        let pki = cluster.pki();
        let address = cluster.address();
        let identity = |name: &str, subject: &str| {
            let credential = pki.issue(name, Usage::Client, subject, &[]);
            let kubeconfig = root.join(format!("pki/{name}.kubeconfig"));
            cluster.write_kubeconfig(&kubeconfig, &credential.cert, &credential.key);
            kubeconfig
        };
        let kubelet_kubeconfig = identity(
            "kubelet",
            &format!("/O=system:nodes/CN=system:node:{NODE_NAME}"),
        );
        let proxy_kubeconfig = identity("kube-proxy", "/CN=system:kube-proxy");
        let scheduler_kubeconfig = identity("kube-scheduler", "/CN=system:kube-scheduler");
        let serving = pki.issue(
            "kubelet-serving",
            Usage::Server,
            "/CN=sluice-e2e-node",
            &[address],
        );
        let runtime_socket = containerd.socket().to_path_buf();
        node.containerd = Some(containerd);
        let resolv_conf = root.join("resolv.conf");
        write(&resolv_conf, "");
        let config = NodeConfig {
            node_name: NODE_NAME,
            address,
            kubelet_port: free_port_on(address),
            kubelet_healthz_port: free_port(),
            proxy_healthz_port: free_port(),
            proxy_metrics_port: free_port(),
            client_ca: &pki.ca_cert,
            serving_cert: &serving.cert,
            serving_key: &serving.key,
            runtime_socket: &runtime_socket,
            cgroup_root: host::CGROUP,
            pod_logs_dir: &root.join("pod-logs"),
            resolv_conf: &resolv_conf,
            pod_subnet: host::POD_SUBNET,
            proxy_kubeconfig: &proxy_kubeconfig,
        };

        let kubelet_config = root.join("kubelet.yaml");
        write(&kubelet_config, &kubelet::kubelet_config(&config));
        let mut command = Command::new(&binaries[0]);
        command
            .arg(format!("--config={}", kubelet_config.display()))
            .arg(format!("--kubeconfig={}", kubelet_kubeconfig.display()))
            .arg(format!("--root-dir={}", node.kubelet_dir.display()))
            .arg(format!("--hostname-override={NODE_NAME}"))
            .arg(format!("--node-ip={address}"))
            .arg("--v=1");
        let mut kubelet = Daemon::spawn("kubelet", command, &root.join("kubelet.log"));
        let healthz = config.kubelet_healthz_port;
        kubelet.wait_ready("healthy", Duration::from_secs(120), || {
            matches!(http_get(healthz, "/healthz"), Some((200, _)))
        });
        node.kubelet = Some(kubelet);

        let proxy_config = root.join("kube-proxy.yaml");
        write(&proxy_config, &kubelet::proxy_config(&config));
        let mut command = Command::new(&binaries[1]);
        command
            .arg(format!("--config={}", proxy_config.display()))
            .arg("--v=1");
        let mut proxy = Daemon::spawn("kube-proxy", command, &root.join("kube-proxy.log"));
        let healthz = config.proxy_healthz_port;
        proxy.wait_ready("healthy", Duration::from_secs(60), || {
            matches!(http_get(healthz, "/healthz"), Some((200, _)))
        });
        node.proxy = Some(proxy);

        let mut command = Command::new(&binaries[2]);
        command
            .arg(format!("--kubeconfig={}", scheduler_kubeconfig.display()))
            .arg(format!(
                "--authentication-kubeconfig={}",
                scheduler_kubeconfig.display()
            ))
            .arg(format!(
                "--authorization-kubeconfig={}",
                scheduler_kubeconfig.display()
            ))
            .arg("--leader-elect=false")
            .arg("--bind-address=127.0.0.1")
            .arg(format!("--secure-port={}", free_port()));
        node.scheduler = Some(Daemon::spawn(
            "kube-scheduler",
            command,
            &root.join("kube-scheduler.log"),
        ));

        node.wait_ready(cluster);
        node
    }

    fn wait_ready(&mut self, cluster: &Cluster) {
        let kubelet = self.kubelet.as_mut().expect("started");
        kubelet.wait_ready("reporting the Node Ready", Duration::from_secs(120), || {
            cluster
                .try_kubectl(&[
                    "get",
                    "node",
                    NODE_NAME,
                    "-o",
                    "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
                ])
                .is_ok_and(|status| status == "True")
        });
    }

    /// The kubelet's root directory (its plugin registration directory
    /// is `plugins_registry/` in it, CSI sockets go to `plugins/`).
    pub fn kubelet_dir(&self) -> &Path {
        &self.kubelet_dir
    }

    /// The node's directory.
    pub fn root(&self) -> &Path {
        self.dir.as_ref().expect("lives until drop").path()
    }

    /// The node's containerd.
    pub fn containerd(&self) -> &Containerd {
        self.containerd.as_ref().expect("lives until drop")
    }

    /// Where a component's log is: `kubelet.log`, `kube-proxy.log`,
    /// `kube-scheduler.log`, `containerd/containerd.log`.
    pub fn log_path(&self, name: &str) -> PathBuf {
        self.root().join(name)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        drop(self.scheduler.take());
        drop(self.proxy.take());
        drop(self.kubelet.take());
        drop(self.containerd.take());
        let Some(dir) = self.dir.take() else {
            return;
        };
        host::release_node(dir.path());
        let left = host::mounts_below(dir.path());
        if left.is_empty() {
            drop(dir);
        } else {
            // Deleting through a mount could delete what it shows.
            let kept = dir.keep();
            eprintln!(
                "warning: {} mounts remain below {}, which is kept: {left:?}",
                left.len(),
                kept.display()
            );
        }
    }
}

fn mkdir(path: &Path) {
    fs::create_dir_all(path).unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
}

fn write(path: &Path, contents: &str) {
    fs::write(path, contents).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
}
