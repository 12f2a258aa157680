//! The manifests in `config/` against a real kube-apiserver (from `e2e/tools.sh kube etcd`):
//! the kustomization renders, the CRDs install, everything passes server-side dry run, and each
//! invalid sample is rejected with the message it states.

use std::{
    path::{Path, PathBuf},
    process::Output,
};

use sluice_e2e::cluster::Cluster;

fn config() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../config")
}

fn kubectl(cluster: &Cluster, args: &[&str]) -> Output {
    cluster
        .kubectl_command()
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run kubectl: {e}"))
}

fn kubectl_ok(cluster: &Cluster, args: &[&str]) -> (String, String) {
    let output = kubectl(cluster, args);
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        output.status.success(),
        "kubectl {} failed: {stderr}",
        args.join(" ")
    );
    (stdout, stderr)
}

fn path(p: &Path) -> &str {
    p.to_str().expect("config paths are UTF-8")
}

#[test]
fn config_manifests_against_a_real_apiserver() {
    let cluster = Cluster::start();

    // The kustomization renders, with every namespaced object in sluice-system.
    let (rendered, _) = kubectl_ok(&cluster, &["kustomize", path(&config().join("default"))]);
    let documents: Vec<serde_json::Value> =
        serde_saphyr::from_multiple(&rendered).expect("kustomize output is YAML");
    let mut kinds: Vec<&str> = documents
        .iter()
        .map(|d| d["kind"].as_str().unwrap())
        .collect();
    kinds.sort();
    assert_eq!(
        kinds,
        [
            "ClusterRole",
            "ClusterRoleBinding",
            "CustomResourceDefinition",
            "CustomResourceDefinition",
            "Deployment",
            "Namespace",
            "Role",
            "RoleBinding",
            "Service",
            "ServiceAccount",
        ]
    );
    for document in &documents {
        let kind = document["kind"].as_str().unwrap();
        let cluster_scoped = [
            "Namespace",
            "CustomResourceDefinition",
            "ClusterRole",
            "ClusterRoleBinding",
        ];
        if !cluster_scoped.contains(&kind) {
            assert_eq!(document["metadata"]["namespace"], "sluice-system", "{kind}");
        }
    }

    // The CRDs install for real and become established: the API server accepts the schema, its
    // CEL rules compile and the printer columns are valid.
    kubectl_ok(
        &cluster,
        &["apply", "--server-side", "-k", path(&config().join("crd"))],
    );
    for crd in [
        "replicationsources.sluice.dev",
        "replicationdestinations.sluice.dev",
    ] {
        let jsonpath = r#"-o=jsonpath={.status.conditions[?(@.type=="Established")].status}"#;
        cluster.wait_for(
            &format!("{crd} established"),
            std::time::Duration::from_secs(60),
            || {
                cluster
                    .try_kubectl(&["get", "crd", crd, jsonpath])
                    .is_ok_and(|s| s == "True")
            },
        );
    }

    // The rest of the install passes server-side dry run. The namespace must exist for that,
    // and enforces the restricted Pod Security Standard, which the Deployment must meet
    // without a warning.
    kubectl_ok(
        &cluster,
        &[
            "apply",
            "--server-side",
            "-f",
            path(&config().join("default/namespace.yaml")),
        ],
    );
    let (_, warnings) = kubectl_ok(
        &cluster,
        &[
            "apply",
            "--server-side",
            "--dry-run=server",
            "-k",
            path(&config().join("default")),
        ],
    );
    assert!(
        !warnings.contains("PodSecurity"),
        "the operator Deployment is not restricted: {warnings}"
    );

    // Every sample passes server-side dry run.
    for sample in [
        "repository_secret.yaml",
        "replicationsource.yaml",
        "replicationdestination.yaml",
        "volume_populator.yaml",
    ] {
        let file = config().join("samples").join(sample);
        kubectl_ok(
            &cluster,
            &[
                "apply",
                "--server-side",
                "--dry-run=server",
                "-n",
                "default",
                "-f",
                path(&file),
            ],
        );
    }

    // Every invalid sample is rejected with the message its first line states.
    let mut invalid: Vec<PathBuf> = std::fs::read_dir(config().join("samples/invalid"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    invalid.sort();
    for file in invalid {
        let text = std::fs::read_to_string(&file).unwrap();
        let expected = text
            .lines()
            .next()
            .unwrap()
            .strip_prefix("# expect: ")
            .unwrap();
        let output = kubectl(
            &cluster,
            &[
                "apply",
                "--server-side",
                "--dry-run=server",
                "-n",
                "default",
                "-f",
                path(&file),
            ],
        );
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{} was accepted", file.display());
        assert!(
            stderr.contains(expected),
            "{} was rejected, but not with {expected:?}: {stderr}",
            file.display()
        );
    }
}
