//! The local control plane is the real thing: the API server validates and
//! stores objects, the controller-manager's Job controller makes Pods, and
//! the VolumeSnapshot API is installed.
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
    volume_snapshot_api_is_established_and_validates(&cluster);

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
    // No scheduler runs here: the Pod waits for the node emulator.
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

fn volume_snapshot_api_is_established_and_validates(cluster: &Cluster) {
    for crd in [
        "volumesnapshots",
        "volumesnapshotcontents",
        "volumesnapshotclasses",
    ] {
        let established = cluster.kubectl(&[
            "get",
            "crd",
            &format!("{crd}.snapshot.storage.k8s.io"),
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Established\")].status}",
        ]);
        assert_eq!(established, "True", "{crd} is not established");
    }
    cluster.apply(
        "apiVersion: snapshot.storage.k8s.io/v1
kind: VolumeSnapshotClass
metadata:
  name: e2e
driver: e2e.sluice.dev
deletionPolicy: Delete
---
apiVersion: snapshot.storage.k8s.io/v1
kind: VolumeSnapshot
metadata:
  name: snap
  namespace: e2e-ns
spec:
  volumeSnapshotClassName: e2e
  source:
    persistentVolumeClaimName: data
",
    );
    let source = cluster.kubectl(&[
        "get",
        "vs",
        "snap",
        "-n",
        "e2e-ns",
        "-o",
        "jsonpath={.spec.source.persistentVolumeClaimName}",
    ]);
    assert_eq!(source, "data");

    // The schema is enforced: a source is immutable.
    let changed = cluster.try_kubectl(&[
        "patch",
        "volumesnapshot",
        "snap",
        "-n",
        "e2e-ns",
        "--type=merge",
        "-p",
        "{\"spec\":{\"source\":{\"persistentVolumeClaimName\":\"other\"}}}",
    ]);
    let error = changed.expect_err("changing a VolumeSnapshot's source was accepted");
    assert!(error.contains("immutable"), "unexpected error: {error}");
}
