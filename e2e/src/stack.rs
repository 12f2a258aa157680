//! Sluice installed on the local cluster, the way a user runs it: MinIO, the
//! control plane and the node emulator (running the freshly built
//! `sluice-mover` for mover Pods), `kubectl apply -k config/default`, and the
//! operator as a local process.
//!
//! The operator authenticates with a token of the `sluice-operator`
//! ServiceAccount that `config/rbac` binds, not as cluster admin, so every
//! scenario also proves the shipped RBAC is enough. The Deployment from
//! `config/default` is scaled to zero: the emulator cannot give a Pod an
//! in-cluster API address, and the issue asks for the operator to run as a
//! local process holding the leader Lease.
//!
//! The scenarios in `e2e/tests/` and the `sluice-e2e-demo` binary build on
//! this; nothing here knows a particular scenario.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use tempfile::TempDir;

use crate::cluster::Cluster;
use crate::node::NodeEmulator;
use sluice_testkit::minio::MinIo;
use sluice_testkit::probe::http_get;
use sluice_testkit::process::{Daemon, free_port};

/// The namespace `config/default` installs into.
pub const SYSTEM_NAMESPACE: &str = "sluice-system";
/// The password of repositories made by [`Stack::repository_secret`].
pub const PASSWORD: &str = "e2e-password";

/// MinIO, the control plane, the node emulator and a running, installed
/// Sluice; dropping it stops everything and deletes its data.
pub struct Stack {
    operator: Option<Daemon>,
    operator_kubeconfig: PathBuf,
    http_port: u16,
    // Dropped in field order: the operator above first, the node's Pods
    // before the API server they report to, MinIO last.
    pub node: NodeEmulator,
    pub cluster: Cluster,
    pub minio: MinIo,
    dir: TempDir,
}

impl Stack {
    /// Starts every component, installs Sluice from `config/default` and
    /// starts the operator; returns once it holds the leader Lease.
    pub fn start() -> Stack {
        let mover = workspace_binary("sluice-mover");
        let operator = workspace_binary("sluice-operator");
        let dir = tempfile::Builder::new()
            .prefix("sluice-stack-")
            .tempdir()
            .unwrap_or_else(|e| panic!("cannot create a temporary directory: {e}"));
        let minio = MinIo::start();
        let cluster = Cluster::start();
        let node = NodeEmulator::start(
            &cluster,
            HashMap::from([("sluice-mover".to_string(), mover)]),
        );
        install(&cluster);
        let operator_kubeconfig = dir.path().join("operator.kubeconfig");
        write_service_account_kubeconfig(&cluster, &operator_kubeconfig);
        let mut stack = Stack {
            operator: None,
            operator_kubeconfig,
            http_port: free_port(),
            node,
            cluster,
            minio,
            dir,
        };
        let first = stack.spawn_operator_on(&operator, "operator-1", stack.http_port);
        stack.operator = Some(first);
        stack.wait_for_leader("operator-1");
        stack
    }

    /// Starts one more operator process with `identity`; it waits for the
    /// leader Lease like a second replica would.
    pub fn spawn_operator(&self, binary: &Path, identity: &str) -> Daemon {
        self.spawn_operator_on(binary, identity, free_port())
    }

    /// An operator process with `identity` serving HTTP on `port`.
    fn spawn_operator_on(&self, binary: &Path, identity: &str, port: u16) -> Daemon {
        let mut command = Command::new(binary);
        command
            .args(["run", "--http-addr", &format!("127.0.0.1:{port}")])
            .env("KUBECONFIG", &self.operator_kubeconfig)
            .env("POD_NAMESPACE", SYSTEM_NAMESPACE)
            .env("POD_NAME", identity)
            .env("SLUICE_MOVER_IMAGE", "ghcr.io/sluice-dev/sluice:e2e")
            .env("RUST_LOG", "info,sluice_operator=debug");
        Daemon::spawn(
            identity,
            command,
            &self.dir.path().join(format!("{identity}.log")),
        )
    }

    /// The identity holding the operator's leader Lease, if any.
    pub fn leader(&self) -> Option<String> {
        lease_holder(&self.cluster)
    }

    fn wait_for_leader(&mut self, identity: &str) {
        let operator = self.operator.as_mut().expect("started");
        let cluster = &self.cluster;
        operator.wait_ready(
            "the operator to take the leader Lease",
            Duration::from_secs(60),
            || lease_holder(cluster).is_some_and(|holder| holder == identity),
        );
    }

    /// Kills the operator process (as a node failure would).
    pub fn kill_operator(&mut self) {
        if let Some(mut operator) = self.operator.take() {
            operator.kill();
        }
    }

    /// The operator's `/metrics` page.
    pub fn metrics(&self) -> String {
        self.http("/metrics")
    }

    /// GET `path` from the operator's HTTP server; panics when it fails.
    pub fn http(&self, path: &str) -> String {
        match http_get(self.http_port, path) {
            Some((200, body)) => body,
            other => panic!(
                "GET http://127.0.0.1:{}{path} from the operator failed: {other:?}",
                self.http_port
            ),
        }
    }

    /// The last `lines` lines of the operator's log, for failure messages.
    pub fn operator_log(&self, lines: usize) -> String {
        self.operator
            .as_ref()
            .map(|o| o.log_tail(lines))
            .unwrap_or_default()
    }

    /// Where the operator's log is written, for someone exploring a running
    /// stack (the demo prints it).
    pub fn operator_log_path(&self) -> Option<&Path> {
        self.operator.as_ref().map(Daemon::log_path)
    }

    /// Creates `namespace` and waits for its default ServiceAccount (Pods
    /// cannot be created before it exists).
    pub fn namespace(&self, namespace: &str) {
        self.cluster.kubectl(&["create", "namespace", namespace]);
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
        let mut data = format!(
            "  RESTIC_REPOSITORY: {}\n  RESTIC_PASSWORD: {}\n",
            self.minio.repository(bucket_and_prefix),
            password.unwrap_or(PASSWORD)
        );
        for (key, value) in self.minio.env() {
            data.push_str(&format!("  {key}: {value}\n"));
        }
        self.cluster.apply(&format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}, namespace: {namespace}}}\nstringData:\n{data}"
        ));
    }

    /// A bound PVC `name` in `namespace`, returning its volume directory on
    /// the emulated node for the test to fill.
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
            class = crate::node::STORAGE_CLASS
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
                dir = self.node.claim_dir(namespace, name);
                dir.is_some()
            },
        );
        dir.expect("waited for it")
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
    /// value; the panic names the last value seen and the operator's log.
    pub fn wait_field(
        &self,
        namespace: &str,
        object: &str,
        jsonpath: &str,
        timeout: Duration,
        accept: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let value = self.get(namespace, object, jsonpath);
            if accept(&value) {
                return value;
            }
            if std::time::Instant::now() > deadline {
                panic!(
                    "timed out after {timeout:?} waiting on {namespace}/{object} {jsonpath}; last value {value:?}\n{}",
                    self.diagnose(namespace, object)
                );
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// What a failed wait prints: `object`, the namespace's Jobs, Pods and
    /// volumes with the Pods' container states, the mover logs on the node,
    /// and the operator's log.
    pub fn diagnose(&self, namespace: &str, object: &str) -> String {
        let kubectl = |args: &[&str]| self.cluster.try_kubectl(args).unwrap_or_else(|e| e);
        let mut report = format!(
            "--- {object}:\n{}\n--- objects in {namespace}:\n{}\n--- pod states:\n{}\n",
            kubectl(&["get", object, "-n", namespace, "-o", "yaml"]),
            kubectl(&["get", "jobs,pods,pvc,volumesnapshots", "-n", namespace]),
            kubectl(&[
                "get",
                "pods",
                "-n",
                namespace,
                "-o",
                "jsonpath={range .items[*]}{.metadata.name}: {.status.containerStatuses[*].state}{\"\\n\"}{end}",
            ]),
        );
        let uids = kubectl(&[
            "get",
            "pods",
            "-n",
            namespace,
            "-o",
            "jsonpath={.items[*].metadata.uid}",
        ]);
        for uid in uids.split_whitespace() {
            let log = self.node.root().join("pods").join(uid).join("mover.log");
            if let Ok(text) = fs::read_to_string(&log) {
                let lines: Vec<&str> = text.lines().collect();
                let tail = lines[lines.len().saturating_sub(20)..].join("\n");
                report.push_str(&format!("--- {}:\n{tail}\n", log.display()));
            }
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

/// `kubectl apply -k config/default`, then the Deployment scaled to zero
/// (see the module doc).
fn install(cluster: &Cluster) {
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/default");
    cluster.kubectl(&["apply", "-k", &config.to_string_lossy()]);
    cluster.kubectl(&[
        "scale",
        "deployment/sluice-operator",
        "-n",
        SYSTEM_NAMESPACE,
        "--replicas=0",
    ]);
    cluster.wait_established(&[
        "replicationsources.sluice.dev",
        "replicationdestinations.sluice.dev",
    ]);
}

/// A kubeconfig that authenticates as the `sluice-operator` ServiceAccount.
fn write_service_account_kubeconfig(cluster: &Cluster, path: &Path) {
    let token = cluster.kubectl(&[
        "create",
        "token",
        "sluice-operator",
        "-n",
        SYSTEM_NAMESPACE,
        "--duration=24h",
    ]);
    let config = format!(
        "apiVersion: v1
kind: Config
clusters:
- name: sluice-e2e
  cluster:
    server: {server}
    certificate-authority: {ca}
users:
- name: sluice-operator
  user:
    token: {token}
contexts:
- name: sluice-operator
  context: {{cluster: sluice-e2e, user: sluice-operator, namespace: {SYSTEM_NAMESPACE}}}
current-context: sluice-operator
",
        server = cluster.server_url(),
        ca = cluster.pki().ca_cert.display(),
        token = token.trim(),
    );
    fs::write(path, config).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
}

/// A binary of this workspace, from the directory the running executable
/// was built into (`target/debug` for tests, whose executables sit in
/// `target/debug/deps`). `cargo test --workspace` builds every binary;
/// `make e2e` builds them before the scenarios.
pub fn workspace_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe()
        .unwrap_or_else(|e| panic!("cannot locate the running executable: {e}"));
    let dir = exe.parent().expect("an executable has a directory");
    [dir.join(name), dir.join("..").join(name)]
        .into_iter()
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "{name} not found next to {}: build it first with `cargo build -p sluice-mover -p sluice-operator` (make e2e does)",
                exe.display()
            )
        })
}

fn lease_holder(cluster: &Cluster) -> Option<String> {
    cluster
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
