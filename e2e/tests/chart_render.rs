//! The Helm chart (`charts/sluice`) without a cluster: `helm lint`, `helm template` with each
//! optional part on and off, and the comparison with the kustomize install (`config/default`):
//! both must render the same RBAC, Deployment, Service and CRDs, so a user picks either and gets
//! the same operator, and the chart with the end-to-end values must render the Deployment of
//! `config/e2e`. The chart's copies of `config/monitoring` files must equal the originals.
//! `e2e/tests/chart.rs` installs the chart on the real cluster.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use sluice_e2e::stack::CHART_E2E_VALUES;
use sluice_testkit::Tool;
use sluice_testkit::process::succeed;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn chart_dir() -> PathBuf {
    root().join("charts/sluice")
}

/// `helm template sluice charts/sluice -n sluice-system` with `--set` arguments, as objects.
fn helm_template(sets: &[&str]) -> Vec<Value> {
    let mut command = Command::new(Tool::Helm.path());
    command
        .args(["template", "sluice"])
        .arg(chart_dir())
        .args(["--namespace", "sluice-system"]);
    for set in sets {
        command.args(["--set", set]);
    }
    documents(&succeed(command))
}

/// `kubectl kustomize DIR` of a directory under `config/`, as objects.
fn kustomize(dir: &str) -> Vec<Value> {
    let mut command = Command::new(Tool::Kubectl.path());
    command
        .arg("kustomize")
        .arg(root().join("config").join(dir));
    documents(&succeed(command))
}

fn documents(yaml: &str) -> Vec<Value> {
    serde_saphyr::from_multiple::<Value>(yaml)
        .unwrap_or_else(|e| panic!("rendered YAML does not parse: {e}\n{yaml}"))
        .into_iter()
        .filter(|doc| !doc.is_null())
        .collect()
}

fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| {
            let present: Vec<String> = objects
                .iter()
                .map(|o| format!("{}/{}", o["kind"], o["metadata"]["name"]))
                .collect();
            panic!("no {kind} {name} among {present:?}")
        })
}

fn kinds(objects: &[Value]) -> Vec<String> {
    let mut kinds: Vec<String> = objects
        .iter()
        .map(|o| o["kind"].as_str().unwrap_or_default().to_owned())
        .collect();
    kinds.sort();
    kinds
}

/// Every label of `subset` is on `superset` with the same value.
fn assert_labels_within(subset: &Value, superset: &Value, what: &str) {
    for (key, value) in subset.as_object().into_iter().flatten() {
        assert_eq!(
            &superset[key], value,
            "{what}: the chart drops or changes the kustomize label {key}"
        );
    }
}

#[test]
fn helm_lint_passes_strict() {
    let mut command = Command::new(Tool::Helm.path());
    command.args(["lint", "--strict"]).arg(chart_dir());
    let out = succeed(command);
    assert!(
        out.contains("1 chart(s) linted, 0 chart(s) failed"),
        "{out}"
    );
}

#[test]
fn chart_and_kustomize_render_the_same_operator() {
    let chart = helm_template(&[]);
    let kustomize = kustomize("default");

    for (kind, name) in [
        ("ClusterRole", "sluice-operator"),
        ("Role", "sluice-leader-election"),
    ] {
        assert_eq!(
            find(&chart, kind, name)["rules"],
            find(&kustomize, kind, name)["rules"],
            "{kind} {name}: the chart's rules differ from config/rbac"
        );
    }
    for (kind, name) in [
        ("ClusterRoleBinding", "sluice-operator"),
        ("RoleBinding", "sluice-leader-election"),
    ] {
        let (c, k) = (find(&chart, kind, name), find(&kustomize, kind, name));
        assert_eq!(c["roleRef"], k["roleRef"], "{kind} {name}");
        assert_eq!(c["subjects"], k["subjects"], "{kind} {name}");
    }
    let (c, k) = (
        find(&chart, "ServiceAccount", "sluice-operator"),
        find(&kustomize, "ServiceAccount", "sluice-operator"),
    );
    assert_eq!(c["metadata"]["namespace"], k["metadata"]["namespace"]);

    let (c, k) = (
        find(&chart, "Deployment", "sluice-operator"),
        find(&kustomize, "Deployment", "sluice-operator"),
    );
    assert_eq!(c["metadata"]["namespace"], k["metadata"]["namespace"]);
    assert_eq!(c["spec"]["replicas"], k["spec"]["replicas"]);
    assert_eq!(
        c["spec"]["template"]["spec"], k["spec"]["template"]["spec"],
        "the Deployment's Pod spec differs between charts/sluice (default values) and config/manager"
    );
    assert_labels_within(
        &k["spec"]["template"]["metadata"]["labels"],
        &c["spec"]["template"]["metadata"]["labels"],
        "Deployment Pod labels",
    );
    // The chart's selector is its Pod labels' subset, so it selects its own Pods only.
    assert_labels_within(
        &c["spec"]["selector"]["matchLabels"],
        &c["spec"]["template"]["metadata"]["labels"],
        "the chart's selector",
    );

    let (c, k) = (
        find(&chart, "Service", "sluice-operator-metrics"),
        find(&kustomize, "Service", "sluice-operator-metrics"),
    );
    assert_eq!(c["spec"]["ports"], k["spec"]["ports"]);
    assert_eq!(
        c["spec"]["selector"],
        find(&chart, "Deployment", "sluice-operator")["spec"]["selector"]["matchLabels"],
        "the metrics Service selects what the Deployment selects"
    );

    for name in [
        "replicationsources.sluice.dev",
        "replicationdestinations.sluice.dev",
    ] {
        let (c, k) = (
            find(&chart, "CustomResourceDefinition", name),
            find(&kustomize, "CustomResourceDefinition", name),
        );
        assert_eq!(c["spec"], k["spec"], "CRD {name}");
        assert_eq!(
            c["metadata"]["annotations"]["helm.sh/resource-policy"], "keep",
            "CRD {name} survives helm uninstall"
        );
    }

    // The same objects, less the Namespace (Helm's --create-namespace makes it; the README
    // says to label it for the restricted Pod Security Standard).
    let mut expected = kinds(&kustomize);
    expected.retain(|kind| kind != "Namespace");
    assert_eq!(kinds(&chart), expected);
}

#[test]
fn chart_with_the_e2e_values_renders_the_e2e_overlays_operator() {
    let pod_spec = |objects: &[Value]| {
        let mut spec =
            find(objects, "Deployment", "sluice-operator")["spec"]["template"]["spec"].clone();
        // The overlay's patch puts its variables first; the order means nothing to the Pod.
        let env = spec["containers"][0]["env"]
            .as_array_mut()
            .expect("the operator has env");
        env.sort_by_key(|var| var["name"].as_str().unwrap_or_default().to_owned());
        spec
    };
    assert_eq!(
        pod_spec(&helm_template(CHART_E2E_VALUES)),
        pod_spec(&kustomize("e2e")),
        "the chart with Stack's CHART_E2E_VALUES and config/e2e render different operator Pods: \
         keep the two in step (e2e/tests/chart.rs installs the chart with those values)"
    );
}

#[test]
fn optional_parts_render_only_when_enabled_and_carry_config_monitoring() {
    let off = kinds(&helm_template(&[]));
    for kind in ["ServiceMonitor", "PrometheusRule", "ConfigMap"] {
        assert!(!off.contains(&kind.to_owned()), "{kind} is off by default");
    }
    let on = helm_template(&[
        "metrics.serviceMonitor.enabled=true",
        "monitoring.prometheusRule.enabled=true",
        "monitoring.dashboards.enabled=true",
    ]);
    let monitor = find(&on, "ServiceMonitor", "sluice-operator");
    assert_eq!(monitor["spec"]["endpoints"][0]["port"], "http-metrics");
    assert_labels_within(
        &monitor["spec"]["selector"]["matchLabels"],
        &find(&on, "Service", "sluice-operator-metrics")["metadata"]["labels"],
        "the ServiceMonitor selects the metrics Service by its labels",
    );

    let rules: Value = serde_saphyr::from_str(
        &std::fs::read_to_string(root().join("config/monitoring/sluice-alerts.rules.yaml"))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        find(&on, "PrometheusRule", "sluice-alerts")["spec"],
        rules,
        "the PrometheusRule carries config/monitoring/sluice-alerts.rules.yaml"
    );

    let dashboard = find(&on, "ConfigMap", "sluice-dashboard");
    assert_eq!(dashboard["metadata"]["labels"]["grafana_dashboard"], "1");
    let shipped: Value =
        serde_json::from_str(dashboard["data"]["sluice.json"].as_str().unwrap()).unwrap();
    let original: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("config/monitoring/sluice-dashboard.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(shipped, original);

    let no_crds = kinds(&helm_template(&["manageCRDs=false"]));
    assert!(!no_crds.contains(&"CustomResourceDefinition".to_owned()));
}

#[test]
fn values_reach_the_operator() {
    let objects = helm_template(&[
        "image.repository=registry.example/sluice",
        "image.tag=1.2.3",
        "replicaCount=2",
        "mover.image=registry.example/mover:9",
        "mover.resources.requests.cpu=100m",
        "mover.podSecurityContext.runAsUser=1000",
        "priorityClassName=system-cluster-critical",
        "imagePullSecrets[0].name=pull",
        "nodeSelector.disk=ssd",
        "repositories.maxConcurrentJobs=8",
        "repositories.probeInterval=1m",
        "repositories.probeIntervalMax=30m",
    ]);
    let deployment = find(&objects, "Deployment", "sluice-operator");
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    assert_eq!(container["image"], "registry.example/sluice:1.2.3");
    assert_eq!(deployment["spec"]["replicas"], 2);
    assert_eq!(pod["priorityClassName"], "system-cluster-critical");
    assert_eq!(pod["imagePullSecrets"][0]["name"], "pull");
    assert_eq!(pod["nodeSelector"]["disk"], "ssd");
    let env = |name: &str| -> String {
        container["env"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == name)
            .and_then(|e| e["value"].as_str())
            .unwrap_or_else(|| panic!("no {name} in the operator's env: {}", container["env"]))
            .to_owned()
    };
    assert_eq!(env("SLUICE_MOVER_IMAGE"), "registry.example/mover:9");
    // The operator parses these as JSON (operator/src/main.rs).
    let resources: Value = serde_json::from_str(&env("SLUICE_MOVER_RESOURCES")).unwrap();
    assert_eq!(resources["requests"]["cpu"], "100m");
    let security: Value = serde_json::from_str(&env("SLUICE_MOVER_POD_SECURITY_CONTEXT")).unwrap();
    assert_eq!(security["runAsUser"], 1000);
    // The operator reads these as its flags' environment (operator/src/main.rs).
    assert_eq!(env("SLUICE_MAX_CONCURRENT_JOBS"), "8");
    assert_eq!(env("SLUICE_PROBE_INTERVAL"), "1m");
    assert_eq!(env("SLUICE_PROBE_INTERVAL_MAX"), "30m");

    let chart: Value =
        serde_saphyr::from_str(&std::fs::read_to_string(chart_dir().join("Chart.yaml")).unwrap())
            .unwrap();
    assert_eq!(
        chart["appVersion"],
        env!("CARGO_PKG_VERSION"),
        "Chart.yaml's appVersion (the default image tag) is the workspace version, the tag `make image` gives"
    );
    assert_eq!(chart["version"], env!("CARGO_PKG_VERSION"));

    let pinned = helm_template(&["image.digest=sha256:0123abcd"]);
    assert_eq!(
        find(&pinned, "Deployment", "sluice-operator")["spec"]["template"]["spec"]["containers"][0]
            ["image"],
        "localhost/sluice@sha256:0123abcd",
        "a digest wins over the tag"
    );
}

#[test]
fn the_charts_copies_of_config_monitoring_are_current() {
    for (original, copy) in [
        (
            "config/monitoring/sluice-dashboard.json",
            "charts/sluice/files/sluice-dashboard.json",
        ),
        (
            "config/monitoring/sluice-alerts.rules.yaml",
            "charts/sluice/files/sluice-alerts.rules.yaml",
        ),
    ] {
        let read = |path: &str| {
            std::fs::read_to_string(root().join(path))
                .unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
        };
        assert!(
            read(original) == read(copy),
            "{copy} differs from {original}: run `cp {original} {copy}` (Helm reads only files inside the chart)"
        );
    }
}
