//! The local control plane is the real thing: the API server validates and
//! stores objects and the controller-manager's Job controller makes Pods.
//! (The real node and its storage have `node.rs`.)
//!
//! One cluster serves every step (starting one costs tens of seconds on two
//! cores); each step is a named function so a failure says which behaviour
//! broke.

use std::net::TcpStream;
use std::time::{Duration, Instant};

use sluice_e2e::Cluster;

#[test]
fn local_control_plane_behaves_like_a_cluster() {
    let started = Instant::now();
    let cluster = Cluster::start();
    eprintln!("cluster started in {:.1}s", started.elapsed().as_secs_f64());

    api_server_is_ready(&cluster);
    namespaces_can_be_created(&cluster);
    job_controller_creates_the_pod_of_a_job(&cluster);

    let port: u16 = cluster
        .server_url()
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let dir = cluster.dir().to_path_buf();
    drop(cluster);
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "kube-apiserver still listens on {port} after the cluster was dropped"
    );
    assert!(!dir.exists(), "{} was not removed", dir.display());
}

fn api_server_is_ready(cluster: &Cluster) {
    assert_eq!(cluster.kubectl(&["get", "--raw", "/readyz"]).trim(), "ok");
    let version = cluster.kubectl(&["version", "-o", "json"]);
    assert!(
        version.contains("\"gitVersion\": \"v1.34."),
        "unexpected versions: {version}"
    );
}

fn namespaces_can_be_created(cluster: &Cluster) {
    cluster.kubectl(&["create", "namespace", "e2e-ns"]);
    let phase = cluster.kubectl(&[
        "get",
        "namespace",
        "e2e-ns",
        "-o",
        "jsonpath={.status.phase}",
    ]);
    assert_eq!(phase, "Active");
    // The controller-manager's service-account controller fills it in.
    cluster.wait_for(
        "the default ServiceAccount in e2e-ns",
        Duration::from_secs(30),
        || {
            cluster
                .try_kubectl(&["get", "serviceaccount", "default", "-n", "e2e-ns"])
                .is_ok()
        },
    );
}

fn job_controller_creates_the_pod_of_a_job(cluster: &Cluster) {
    cluster.apply(
        "apiVersion: batch/v1
kind: Job
metadata:
  name: hello
  namespace: e2e-ns
spec:
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: hello
        image: example.invalid/hello:1
        command: [\"true\"]
",
    );
    let mut pods = String::new();
    cluster.wait_for("the Job controller to create the Pod of Job e2e-ns/hello", Duration::from_secs(60), || {
        pods = cluster.kubectl(&[
            "get",
            "pods",
            "-n",
            "e2e-ns",
            "-l",
            "batch.kubernetes.io/job-name=hello",
            "-o",
            "jsonpath={range .items[*]}{.metadata.ownerReferences[0].kind}/{.metadata.ownerReferences[0].name}{\"\\n\"}{end}",
        ]);
        !pods.is_empty()
    });
    assert_eq!(pods.trim(), "Job/hello");
    // No node and no scheduler run here: the Pod waits for them.
    let node = cluster.kubectl(&[
        "get",
        "pods",
        "-n",
        "e2e-ns",
        "-o",
        "jsonpath={.items[0].spec.nodeName}",
    ]);
    assert_eq!(node, "");
}
