//! A real Kubernetes control plane: etcd, kube-apiserver and
//! kube-controller-manager, built by `e2e/tools.sh kube etcd`.
//!
//! [`Cluster::start`] listens on 127.0.0.1 only, for tests that need the API
//! server but no node (API validation, reconcile tests, the operator's scale
//! benchmark). [`Cluster::start_at`] listens on the test bridge's address
//! instead, advertised as the `kubernetes` Service's endpoint, so Pods on the
//! real node ([`crate::node`]) reach it through kube-proxy. Validation, RBAC
//! and the Node authorizer, the Job controller, garbage collection and PV
//! binding are all the real thing.

use std::fs;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use anyhow::Context as _;
use kube::config::{KubeConfigOptions, Kubeconfig};
use sluice_testkit::pki::Pki;
use sluice_testkit::probe::http_get;
use sluice_testkit::process::{Daemon, free_port, free_port_on};
use sluice_testkit::tools::Tool;

use crate::host::{KUBERNETES_SERVICE_IP, SERVICE_SUBNET};

/// A running local control plane; dropping it stops every process and
/// deletes its files.
#[derive(Debug)]
pub struct Cluster {
    // Stopped in this order by Drop: clients of the API server first.
    controller_manager: Option<Daemon>,
    apiserver: Option<Daemon>,
    etcd: Option<Daemon>,
    address: IpAddr,
    apiserver_port: u16,
    kubeconfig: PathBuf,
    pki: Pki,
    dir: TempDir,
}

impl Cluster {
    /// Starts etcd, kube-apiserver and kube-controller-manager on free ports
    /// of 127.0.0.1 and writes an admin kubeconfig. Returns when the API
    /// server is ready and the controllers run.
    pub fn start() -> Cluster {
        Cluster::start_at(IpAddr::V4(Ipv4Addr::LOCALHOST))
    }

    /// Like [`Cluster::start`], with the API server listening on `address`
    /// (an address of this machine, such as the test bridge's) and
    /// advertising it as the `kubernetes` Service's endpoint.
    pub fn start_at(address: IpAddr) -> Cluster {
        // Resolve every binary first, so a missing one fails before anything
        // starts.
        let binaries = [
            Tool::Etcd,
            Tool::KubeApiserver,
            Tool::KubeControllerManager,
            Tool::Kubectl,
        ]
        .map(Tool::path);
        let dir = tempfile::Builder::new()
            .prefix("sluice-cluster-")
            .tempdir()
            .unwrap_or_else(|e| panic!("cannot create a temporary directory for the cluster: {e}"));
        let pki_dir = dir.path().join("pki");
        mkdir(&pki_dir);
        let pki = Pki::generate(&pki_dir, &[address, IpAddr::V4(KUBERNETES_SERVICE_IP)]);
        let apiserver_port = free_port_on(address);
        let kubeconfig = dir.path().join("kubeconfig");
        let server = format!(
            "https://{}",
            std::net::SocketAddr::new(address, apiserver_port)
        );
        write_kubeconfig(&kubeconfig, &server, &pki.admin_cert, &pki.admin_key, &pki);

        let mut cluster = Cluster {
            controller_manager: None,
            apiserver: None,
            etcd: None,
            address,
            apiserver_port,
            kubeconfig,
            pki,
            dir,
        };
        let etcd_port = cluster.start_etcd(&binaries[0]);
        cluster.start_apiserver(&binaries[1], etcd_port);
        cluster.start_controller_manager(&binaries[2]);
        cluster
    }

    fn start_etcd(&mut self, binary: &Path) -> u16 {
        let client_port = free_port();
        let peer_port = free_port();
        let client_url = format!("http://127.0.0.1:{client_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let data = self.dir.path().join("etcd");
        let mut command = Command::new(binary);
        command
            .arg("--name=sluice-e2e")
            .arg(format!("--data-dir={}", data.display()))
            .arg(format!("--listen-client-urls={client_url}"))
            .arg(format!("--advertise-client-urls={client_url}"))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--initial-cluster=sluice-e2e={peer_url}"))
            // Throwaway data: durability only costs time on a shared disk.
            .arg("--unsafe-no-fsync")
            .arg("--log-level=warn");
        let mut etcd = Daemon::spawn("etcd", command, &self.dir.path().join("etcd.log"));
        etcd.wait_ready("healthy", Duration::from_secs(60), || {
            matches!(http_get(client_port, "/health"), Some((200, body)) if body.contains("true"))
        });
        self.etcd = Some(etcd);
        client_port
    }

    fn start_apiserver(&mut self, binary: &Path, etcd_port: u16) {
        let pki = &self.pki;
        let mut command = Command::new(binary);
        command
            .arg(format!("--etcd-servers=http://127.0.0.1:{etcd_port}"))
            .arg(format!("--bind-address={}", self.address))
            .arg(format!("--advertise-address={}", self.address))
            .arg(format!("--secure-port={}", self.apiserver_port))
            .arg(format!("--tls-cert-file={}", pki.server_cert.display()))
            .arg(format!(
                "--tls-private-key-file={}",
                pki.server_key.display()
            ))
            .arg(format!("--client-ca-file={}", pki.ca_cert.display()))
            .arg(format!("--service-cluster-ip-range={SERVICE_SUBNET}"))
            .arg("--service-account-issuer=https://kubernetes.default.svc.cluster.local")
            .arg(format!(
                "--service-account-key-file={}",
                pki.service_account_pub.display()
            ))
            .arg(format!(
                "--service-account-signing-key-file={}",
                pki.service_account_key.display()
            ))
            // Kubelets are authorized as their Node, as in a real cluster.
            .arg("--authorization-mode=Node,RBAC")
            .arg("--enable-admission-plugins=NodeRestriction")
            // What `kubectl logs` and `exec` present to the kubelet.
            .arg(format!(
                "--kubelet-client-certificate={}",
                pki.admin_cert.display()
            ))
            .arg(format!("--kubelet-client-key={}", pki.admin_key.display()))
            .arg("--kubelet-preferred-address-types=InternalIP")
            .arg("--allow-privileged=true")
            .arg("--profiling=false");
        if self.address.is_loopback() {
            // The `kubernetes` Service's endpoints may not be a loopback
            // address, and no Pod could use it anyway.
            command.arg("--endpoint-reconciler-type=none");
        }
        let apiserver = Daemon::spawn(
            "kube-apiserver",
            command,
            &self.dir.path().join("kube-apiserver.log"),
        );
        let apiserver = self.apiserver.insert(apiserver);
        let kubeconfig = self.kubeconfig.clone();
        apiserver.wait_ready("ready", Duration::from_secs(120), || {
            kubectl_output(&kubeconfig, &["get", "--raw", "/readyz"])
                .is_ok_and(|body| body.trim() == "ok")
        });
    }

    fn start_controller_manager(&mut self, binary: &Path) {
        let pki = &self.pki;
        let mut command = Command::new(binary);
        command
            .arg(format!("--kubeconfig={}", self.kubeconfig.display()))
            .arg("--controllers=*")
            .arg("--leader-elect=false")
            .arg("--use-service-account-credentials=true")
            .arg(format!(
                "--service-account-private-key-file={}",
                pki.service_account_key.display()
            ))
            .arg(format!("--root-ca-file={}", pki.ca_cert.display()))
            .arg(format!("--service-cluster-ip-range={SERVICE_SUBNET}"))
            .arg("--cluster-name=sluice-e2e")
            .arg("--bind-address=127.0.0.1")
            .arg(format!("--secure-port={}", free_port()));
        let manager = Daemon::spawn(
            "kube-controller-manager",
            command,
            &self.dir.path().join("kube-controller-manager.log"),
        );
        let manager = self.controller_manager.insert(manager);
        // The service-account controller making `default` in `default` shows
        // the controllers run with working credentials; Pods need that
        // account before they can be created at all.
        let kubeconfig = self.kubeconfig.clone();
        manager.wait_ready("running controllers", Duration::from_secs(120), || {
            kubectl_output(
                &kubeconfig,
                &[
                    "get",
                    "serviceaccount",
                    "default",
                    "--namespace=default",
                    "-o",
                    "name",
                ],
            )
            .is_ok()
        });
    }

    /// Waits until each CustomResourceDefinition in `crds` is Established.
    /// Polls rather than `kubectl wait`, which fails outright when it looks
    /// at a CRD the API server has not given any status yet.
    pub fn wait_established(&self, crds: &[&str]) {
        for crd in crds {
            self.wait_for(
                &format!("CRD {crd} to be Established"),
                Duration::from_secs(60),
                || {
                    self.try_kubectl(&[
                        "get",
                        "crd",
                        crd,
                        "-o",
                        "jsonpath={.status.conditions[?(@.type==\"Established\")].status}",
                    ])
                    .is_ok_and(|status| status == "True")
                },
            );
        }
    }

    /// The admin kubeconfig (client certificate in `system:masters`).
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// The API server's URL, `https://ADDRESS:PORT`.
    pub fn server_url(&self) -> String {
        format!(
            "https://{}",
            std::net::SocketAddr::new(self.address, self.apiserver_port)
        )
    }

    /// The address the API server listens on.
    pub fn address(&self) -> IpAddr {
        self.address
    }

    /// Writes a kubeconfig at `path` that authenticates with the client
    /// certificate `cert`/`key` (signed by this cluster's CA).
    pub fn write_kubeconfig(&self, path: &Path, cert: &Path, key: &Path) {
        write_kubeconfig(path, &self.server_url(), cert, key, &self.pki);
    }

    /// Certificates and keys the cluster was started with.
    pub fn pki(&self) -> &Pki {
        &self.pki
    }

    /// The temporary directory holding data, certificates and logs
    /// (`etcd.log`, `kube-apiserver.log`, `kube-controller-manager.log`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A `kubectl` command with `--kubeconfig` set to the admin kubeconfig.
    pub fn kubectl_command(&self) -> Command {
        kubectl_command(&self.kubeconfig)
    }

    /// Runs kubectl with `args` and returns its stdout, or its stderr as the
    /// error.
    pub fn try_kubectl(&self, args: &[&str]) -> Result<String, String> {
        kubectl_output(&self.kubeconfig, args)
    }

    /// Runs kubectl with `args` and returns its stdout; panics with kubectl's
    /// error when it fails.
    pub fn kubectl(&self, args: &[&str]) -> String {
        self.try_kubectl(args)
            .unwrap_or_else(|e| panic!("kubectl {} failed: {e}", args.join(" ")))
    }

    /// `kubectl apply` of a YAML or JSON manifest (several documents allowed);
    /// panics when the API server rejects it.
    pub fn apply(&self, manifest: &str) -> String {
        let mut child = self
            .kubectl_command()
            .args(["apply", "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run kubectl: {e}"));
        child
            .stdin
            .take()
            .expect("stdin is piped")
            .write_all(manifest.as_bytes())
            .unwrap_or_else(|e| panic!("cannot write the manifest to kubectl: {e}"));
        let output = child
            .wait_with_output()
            .unwrap_or_else(|e| panic!("kubectl apply did not finish: {e}"));
        if !output.status.success() {
            panic!(
                "kubectl apply failed: {}\nmanifest:\n{manifest}",
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Polls `condition` every 200 ms until it returns true; panics naming
    /// `what` after `timeout`.
    pub fn wait_for(&self, what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
        let deadline = Instant::now() + timeout;
        while !condition() {
            if Instant::now() > deadline {
                panic!("timed out after {timeout:?} waiting for {what}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Clients of the API server first, etcd last; each Daemon's drop
        // kills it and, during a panic, prints the tail of its log.
        drop(self.controller_manager.take());
        drop(self.apiserver.take());
        drop(self.etcd.take());
    }
}

fn kubectl_command(kubeconfig: &Path) -> Command {
    let mut command = Command::new(Tool::Kubectl.path());
    command
        .arg(format!("--kubeconfig={}", kubeconfig.display()))
        // kubectl's discovery cache would otherwise go to ~/.kube/cache and
        // mix clusters that reuse a port.
        .env("KUBECACHEDIR", kubeconfig.with_file_name("kube-cache"));
    command
}

fn kubectl_output(kubeconfig: &Path, args: &[&str]) -> Result<String, String> {
    let output = kubectl_command(kubeconfig)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run kubectl: {e}"));
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).trim().to_string())
    }
}

fn write_kubeconfig(path: &Path, server: &str, cert: &Path, key: &Path, pki: &Pki) {
    let config = format!(
        "apiVersion: v1
kind: Config
clusters:
- name: sluice-e2e
  cluster:
    server: {server}
    certificate-authority: {ca}
users:
- name: sluice-e2e
  user:
    client-certificate: {cert}
    client-key: {key}
contexts:
- name: sluice-e2e
  context:
    cluster: sluice-e2e
    user: sluice-e2e
    namespace: default
current-context: sluice-e2e
",
        ca = pki.ca_cert.display(),
        cert = cert.display(),
        key = key.display(),
    );
    fs::write(path, config).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
}

/// A Kubernetes client for the cluster in `kubeconfig`.
pub async fn client(kubeconfig: &Path) -> anyhow::Result<kube::Client> {
    let file = Kubeconfig::read_from(kubeconfig)
        .with_context(|| format!("cannot read kubeconfig {}", kubeconfig.display()))?;
    let config = kube::Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
        .await
        .with_context(|| format!("invalid kubeconfig {}", kubeconfig.display()))?;
    Ok(kube::Client::try_from(config)?)
}

fn mkdir(path: &Path) {
    fs::create_dir_all(path).unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
}
