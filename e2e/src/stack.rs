//! Sluice installed on the local cluster the way a user installs it:
//! MinIO, the control plane, the real node and its storage, the Sluice
//! image imported into the node's containerd, and `kubectl apply -k
//! config/e2e` (config/default pointing at that image), or `helm install`
//! of `charts/sluice` with the same settings. The operator runs
//! as the Deployment's Pod, with in-cluster configuration, its
//! ServiceAccount, the leader Lease and probes; mover Jobs run as Pods of
//! the same image in namespaces that enforce the restricted Pod Security
//! Standard.
//!
//! Everything listens on the test's bridge address (or 127.0.0.1), so the
//! host and Pods reach the same MinIO and API server. The scenarios in
//! `e2e/tests/`, `make demo` and `make cluster` build on this; nothing here
//! knows a particular scenario.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use sluice_testkit::probe::http_get_at;
use sluice_testkit::process::succeed;
use sluice_testkit::{MinIo, Tool};
use tempfile::TempDir;

use crate::cluster::Cluster;
use crate::host::{self, HostLease};
use crate::images;
use crate::kstatus;
use crate::node::Node;
use crate::storage::{self, Storage};

/// The namespace `config/default` installs into.
pub const SYSTEM_NAMESPACE: &str = "sluice-system";
/// The password of repositories made by [`Stack::repository_secret`].
pub const PASSWORD: &str = "e2e-password";
/// The Helm release [`Stack::install_chart`] installs; with this name the chart's objects are
/// named as `config/default`'s.
pub const CHART_RELEASE: &str = "sluice";
/// The `--set` values that make `charts/sluice` install what `config/e2e` does: the image the
/// harness imported into the node (never pulled), the operator's debug log, and frequent probes
/// of an unreachable repository. `e2e/tests/chart_render.rs` checks that both render the same
/// Deployment.
pub const CHART_E2E_VALUES: &[&str] = &[
    "image.tag=e2e",
    "image.pullPolicy=Never",
    // Helm's --set splits at unescaped commas.
    "logLevel=info\\,sluice_operator=debug",
    "repositories.probeInterval=5s",
    "repositories.probeIntervalMax=20s",
    "repositories.lockWait=20s",
];
/// The label that selects the operator's Pods.
const OPERATOR_SELECTOR: &str = "app.kubernetes.io/component=operator";
/// The operator's HTTP port (`/metrics`, `/healthz`, `/readyz`).
const OPERATOR_HTTP_PORT: u16 = 8080;

/// MinIO, the control plane, the real node with its storage, and a running,
/// installed Sluice; dropping it stops everything and removes what it made.
pub struct Stack {
    // Dropped in field order: the node's storage and Pods before the API
    // server they report to, MinIO after them, the host's bridge and
    // chains last.
    pub storage: Storage,
    pub node: Node,
    pub cluster: Cluster,
    pub minio: MinIo,
    images: TempDir,
    _host: HostLease,
}

impl Stack {
    /// Starts every component, installs Sluice from `config/e2e` and waits
    /// until the operator's Pod is ready and holds the leader Lease.
    pub fn start() -> Stack {
        let stack = Stack::start_without_sluice();
        stack.install();
        stack
    }

    /// Everything but Sluice: MinIO, the control plane, the node with the
    /// Sluice image imported, and storage.
    pub fn start_without_sluice() -> Stack {
        let host = HostLease::acquire();
        let address = host::bridge_address();
        let minio = MinIo::start_on(address);
        let cluster = Cluster::start_at(address);
        let images = tempfile::Builder::new()
            .prefix("sluice-images-")
            .tempdir()
            .unwrap_or_else(|e| panic!("cannot create a temporary directory: {e}"));
        let pause = images::pause(images.path());
        let sluice = images::sluice(images.path());
        let node = Node::start(&cluster, images::PAUSE_IMAGE, &[&pause, &sluice]);
        let storage = Storage::start(&cluster, &node);
        Stack {
            storage,
            node,
            cluster,
            minio,
            images,
            _host: host,
        }
    }

    /// `kubectl apply -k config/e2e`, then waits for the operator.
    pub fn install(&self) {
        let overlay = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/e2e");
        self.cluster
            .kubectl(&["apply", "-k", &overlay.to_string_lossy()]);
        self.wait_installed();
    }

    /// The README's Helm install: the namespace created and labelled for the restricted Pod
    /// Security Standard, then `helm install sluice charts/sluice` with
    /// [`CHART_E2E_VALUES`]; waits for the operator as [`Stack::install`] does.
    pub fn install_chart(&self) {
        self.namespace(SYSTEM_NAMESPACE);
        let mut install = self.helm();
        install
            .args(["install", CHART_RELEASE])
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../charts/sluice"))
            .args(["--namespace", SYSTEM_NAMESPACE]);
        for value in CHART_E2E_VALUES {
            install.args(["--set", value]);
        }
        succeed(install);
        self.wait_installed();
    }

    /// `helm uninstall sluice --wait`: returns Helm's output once the release's objects are
    /// deleted.
    pub fn uninstall_chart(&self) -> String {
        let mut uninstall = self.helm();
        uninstall
            .args(["uninstall", CHART_RELEASE, "--wait"])
            .args(["--namespace", SYSTEM_NAMESPACE]);
        succeed(uninstall)
    }

    /// A `helm` command for this cluster's admin kubeconfig, with Helm's cache, configuration
    /// and data under the cluster's directory rather than the user's home.
    pub fn helm(&self) -> Command {
        let mut helm = Command::new(Tool::Helm.path());
        let home = self.cluster.dir().join("helm");
        helm.arg(format!(
            "--kubeconfig={}",
            self.cluster.kubeconfig().display()
        ))
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_DATA_HOME", home.join("data"));
        helm
    }

    /// What either install waits for: the CRDs established and the operator available with
    /// the leader Lease.
    fn wait_installed(&self) {
        self.cluster.wait_established(&[
            "replicationsources.sluice.dev",
            "replicationdestinations.sluice.dev",
        ]);
        self.wait_for_operator();
    }

    /// The Sluice image archive imported into the node.
    pub fn image_archive(&self) -> PathBuf {
        self.images.path().join("sluice.oci.tar")
    }

    /// Waits until the operator Deployment is available and one of its Pods
    /// holds the leader Lease.
    pub fn wait_for_operator(&self) {
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            let available = self.get(
                SYSTEM_NAMESPACE,
                "deployment/sluice-operator",
                "{.status.availableReplicas}",
            );
            if available.parse::<u32>().unwrap_or(0) >= 1 && self.leader().is_some() {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "the operator did not become available and take the leader Lease\n{}",
                    self.diagnose(SYSTEM_NAMESPACE, "deployment/sluice-operator")
                );
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// The identity (Pod name) holding the operator's leader Lease, if any.
    pub fn leader(&self) -> Option<String> {
        self.cluster
            .try_kubectl(&[
                "get",
                "lease",
                "sluice-operator",
                "-n",
                SYSTEM_NAMESPACE,
                "-o",
                "jsonpath={.spec.holderIdentity}",
            ])
            .ok()
            .filter(|holder| !holder.is_empty())
    }

    /// The names of the operator's Pods.
    pub fn operator_pods(&self) -> Vec<String> {
        self.cluster
            .kubectl(&[
                "get",
                "pods",
                "-n",
                SYSTEM_NAMESPACE,
                "-l",
                OPERATOR_SELECTOR,
                "-o",
                "jsonpath={.items[*].metadata.name}",
            ])
            .split_whitespace()
            .map(String::from)
            .collect()
    }

    /// Sets the operator Deployment's replica count.
    pub fn scale_operator(&self, replicas: u32) {
        self.cluster.kubectl(&[
            "scale",
            "deployment/sluice-operator",
            "-n",
            SYSTEM_NAMESPACE,
            &format!("--replicas={replicas}"),
        ]);
    }

    /// The operator's `/metrics` page.
    pub fn metrics(&self) -> String {
        self.http("/metrics")
    }

    /// GET `path` from the leading operator Pod's HTTP server (on its Pod
    /// address); panics when it fails.
    pub fn http(&self, path: &str) -> String {
        let pod = self.leader().expect("an operator holds the Lease");
        match self.pod_http(&pod, path) {
            Ok((200, body)) => body,
            Ok((status, body)) => {
                panic!("GET {path} from operator Pod {pod} answered {status}: {body}")
            }
            Err(e) => panic!("GET {path} from operator Pod {pod} failed: {e}"),
        }
    }

    /// GET `path` from operator Pod `pod`: the status code and body.
    pub fn pod_http(&self, pod: &str, path: &str) -> Result<(u16, String), String> {
        let address = self.operator_address(pod)?;
        http_get_at(address, path).ok_or_else(|| format!("nothing answered on {address}"))
    }

    /// Where operator Pod `pod` serves HTTP (`/metrics`, `/healthz`, `/readyz`): its Pod
    /// address, which the host reaches over the test's bridge.
    pub fn operator_address(&self, pod: &str) -> Result<SocketAddr, String> {
        let ip = self.get(SYSTEM_NAMESPACE, &format!("pod/{pod}"), "{.status.podIP}");
        let ip: IpAddr = ip
            .parse()
            .map_err(|_| format!("Pod {pod} has no address yet ({ip:?})"))?;
        Ok(SocketAddr::new(ip, OPERATOR_HTTP_PORT))
    }

    /// The last `lines` lines of the leading operator Pod's log (`kubectl
    /// logs`), for failure messages.
    pub fn operator_log(&self, lines: usize) -> String {
        match self.leader() {
            Some(pod) => self.pod_log(SYSTEM_NAMESPACE, &pod, lines),
            None => String::from("(no operator holds the Lease)"),
        }
    }

    /// `kubectl logs --tail=LINES` of Pod `namespace/pod`, or its error.
    pub fn pod_log(&self, namespace: &str, pod: &str, lines: usize) -> String {
        self.cluster
            .try_kubectl(&[
                "logs",
                pod,
                "-n",
                namespace,
                "--all-containers",
                &format!("--tail={lines}"),
            ])
            .unwrap_or_else(|e| e)
    }

    /// Waits until a mover Pod matching `selector` (a label selector) in
    /// `namespace` has finished, or `timeout` passes, and returns its log
    /// as `kubectl logs` shows it: the way a user reads a mover's output,
    /// before the operator removes the finished Job.
    pub fn wait_mover_log(&self, namespace: &str, selector: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        let mut log = String::new();
        loop {
            let pods = self
                .cluster
                .try_kubectl(&[
                    "get",
                    "pods",
                    "-n",
                    namespace,
                    "-l",
                    selector,
                    "-o",
                    "jsonpath={range .items[*]}{.metadata.name} {.status.phase}{\"\\n\"}{end}",
                ])
                .unwrap_or_default();
            for line in pods.lines() {
                if let Some((pod, phase)) = line.split_once(' ') {
                    log = self.pod_log(namespace, pod, 40);
                    if phase == "Succeeded" || phase == "Failed" {
                        return log;
                    }
                }
            }
            if Instant::now() > deadline {
                return log;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Creates `namespace`, enforcing the restricted Pod Security Standard
    /// as the namespaces of careful users do, and waits for its default
    /// ServiceAccount (Pods cannot be created before it exists).
    pub fn namespace(&self, namespace: &str) {
        self.cluster.apply(&format!(
            "apiVersion: v1
kind: Namespace
metadata:
  name: {namespace}
  labels: {{pod-security.kubernetes.io/enforce: restricted}}
"
        ));
        self.cluster.wait_for(
            &format!("the default ServiceAccount in {namespace}"),
            Duration::from_secs(30),
            || {
                self.cluster
                    .try_kubectl(&["get", "serviceaccount", "default", "-n", namespace])
                    .is_ok()
            },
        );
    }

    /// A repository Secret `name` in `namespace` for `bucket_and_prefix` on
    /// MinIO, with [`PASSWORD`] unless `password` overrides it.
    pub fn repository_secret(
        &self,
        namespace: &str,
        name: &str,
        bucket_and_prefix: &str,
        password: Option<&str>,
    ) {
        self.repository_secret_on(&self.minio, namespace, name, bucket_and_prefix, password);
    }

    /// [`Stack::repository_secret`] for a MinIO of the test's own (started on
    /// [`host::bridge_address`], so Pods reach it), which it may stop
    /// without taking the stack's away from other scenarios.
    pub fn repository_secret_on(
        &self,
        minio: &MinIo,
        namespace: &str,
        name: &str,
        bucket_and_prefix: &str,
        password: Option<&str>,
    ) {
        let mut data = format!(
            "  RESTIC_REPOSITORY: {}\n  RESTIC_PASSWORD: {}\n",
            minio.repository(bucket_and_prefix),
            password.unwrap_or(PASSWORD)
        );
        for (key, value) in minio.env() {
            data.push_str(&format!("  {key}: {value}\n"));
        }
        self.cluster.apply(&format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}, namespace: {namespace}}}\nstringData:\n{data}"
        ));
    }

    /// A bound 1Gi PVC `name` in `namespace` of the default StorageClass,
    /// returning its volume's directory on the node for the test to fill.
    pub fn claim(&self, namespace: &str, name: &str) -> PathBuf {
        self.cluster.apply(&format!(
            "apiVersion: v1
kind: PersistentVolumeClaim
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  accessModes: [ReadWriteOnce]
  storageClassName: {class}
  resources: {{requests: {{storage: 1Gi}}}}
",
            class = storage::STORAGE_CLASS
        ));
        self.wait_claim_dir(namespace, name)
    }

    /// The volume directory of PVC `namespace/name` once it is bound.
    pub fn wait_claim_dir(&self, namespace: &str, name: &str) -> PathBuf {
        let mut dir = None;
        self.cluster.wait_for(
            &format!("PVC {namespace}/{name} to bind"),
            Duration::from_secs(60),
            || {
                dir = self.storage.claim_dir(&self.cluster, namespace, name);
                dir.is_some()
            },
        );
        dir.expect("waited for it")
    }

    /// The image file behind Block PVC `namespace/name` once it is bound.
    pub fn wait_claim_image(&self, namespace: &str, name: &str) -> PathBuf {
        let mut image = None;
        self.cluster.wait_for(
            &format!("Block PVC {namespace}/{name} to bind"),
            Duration::from_secs(60),
            || {
                image = self.storage.claim_image(&self.cluster, namespace, name);
                image.is_some()
            },
        );
        image.expect("waited for it")
    }

    /// `kubectl get` of one field (a jsonpath) of an object; empty when the
    /// object or the field does not exist.
    pub fn get(&self, namespace: &str, object: &str, jsonpath: &str) -> String {
        self.cluster
            .try_kubectl(&[
                "get",
                object,
                "-n",
                namespace,
                "-o",
                &format!("jsonpath={jsonpath}"),
            ])
            .unwrap_or_default()
    }

    /// Waits until `jsonpath` of `object` satisfies `accept`, returning the
    /// value; the panic names the last value seen and what [`Stack::diagnose`]
    /// finds.
    pub fn wait_field(
        &self,
        namespace: &str,
        object: &str,
        jsonpath: &str,
        timeout: Duration,
        accept: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let value = self.get(namespace, object, jsonpath);
            if accept(&value) {
                return value;
            }
            if Instant::now() > deadline {
                panic!(
                    "timed out after {timeout:?} waiting on {namespace}/{object} {jsonpath}; last value {value:?}\n{}",
                    self.diagnose(namespace, object)
                );
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// What a failed wait prints: `object`, the namespace's Jobs, Pods,
    /// volumes and events, each Pod's container states and log tail
    /// (`kubectl logs`), and the operator's log.
    pub fn diagnose(&self, namespace: &str, object: &str) -> String {
        let kubectl = |args: &[&str]| self.cluster.try_kubectl(args).unwrap_or_else(|e| e);
        let mut report = format!(
            "--- {object}:\n{}\n--- objects in {namespace}:\n{}\n--- events:\n{}\n--- pod states:\n{}\n",
            kubectl(&["get", object, "-n", namespace, "-o", "yaml"]),
            kubectl(&["get", "jobs,pods,pvc,volumesnapshots", "-n", namespace]),
            kubectl(&["get", "events", "-n", namespace, "--sort-by=.lastTimestamp"]),
            kubectl(&[
                "get",
                "pods",
                "-n",
                namespace,
                "-o",
                "jsonpath={range .items[*]}{.metadata.name}: {.status.containerStatuses[*].state}{\"\\n\"}{end}",
            ]),
        );
        let pods = kubectl(&[
            "get",
            "pods",
            "-n",
            namespace,
            "-o",
            "jsonpath={.items[*].metadata.name}",
        ]);
        for pod in pods.split_whitespace() {
            report.push_str(&format!(
                "--- kubectl logs {pod} -n {namespace}:\n{}\n",
                self.pod_log(namespace, pod, 20)
            ));
        }
        report.push_str(&format!("--- operator log:\n{}", self.operator_log(40)));
        report
    }

    /// The condition `kind`'s status and reason of `object`, as
    /// `"True/Reason"`.
    pub fn condition(&self, namespace: &str, object: &str, kind: &str) -> String {
        self.get(
            namespace,
            object,
            &format!(
                "{{.status.conditions[?(@.type==\"{kind}\")].status}}/{{.status.conditions[?(@.type==\"{kind}\")].reason}}"
            ),
        )
    }

    /// What kstatus makes of `object` now, and its message.
    pub fn kstatus(&self, namespace: &str, object: &str) -> (kstatus::Status, String) {
        let json = self
            .cluster
            .kubectl(&["get", object, "-n", namespace, "-o", "json"]);
        let value: serde_json::Value = serde_json::from_str(&json)
            .unwrap_or_else(|e| panic!("kubectl get {object} -o json: {e}: {json}"));
        kstatus::compute(&value)
    }

    /// A `restic` command for `bucket_and_prefix` with [`PASSWORD`].
    pub fn restic(&self, bucket_and_prefix: &str) -> Command {
        self.minio.restic(bucket_and_prefix, PASSWORD)
    }

    /// Runs restic with `args` on `bucket_and_prefix` and returns its stdout;
    /// panics with restic's error when it fails.
    pub fn run_restic(&self, bucket_and_prefix: &str, args: &[&str]) -> String {
        let output = self
            .restic(bucket_and_prefix)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run restic: {e}"));
        assert!(
            output.status.success(),
            "restic {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }
}

/// A binary of this workspace, from the directory the running executable
/// was built into (`target/debug` for tests, whose executables sit in
/// `target/debug/deps`). `make test` and `make e2e` build them before the
/// scenarios.
pub fn workspace_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe()
        .unwrap_or_else(|e| panic!("cannot locate the running executable: {e}"));
    let dir = exe.parent().expect("an executable has a directory");
    [dir.join(name), dir.join("..").join(name)]
        .into_iter()
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "{name} not found next to {}: build it first with `cargo build -p sluice-mover -p sluice-operator -p kubectl-sluice` (make test and make e2e do)",
                exe.display()
            )
        })
}
