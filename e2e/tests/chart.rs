//! The Helm chart on the real cluster, and the Grafana dashboard on a real Prometheus.
//!
//! `helm install` of `charts/sluice` (with the values that match `config/e2e`, which
//! `chart_render.rs` compares) instead of kustomize; one backup into MinIO that restic reads
//! back; one sync that fails; and `helm uninstall`, which removes the operator and, as the
//! chart's `manageCRDs` documents, keeps the CRDs (`helm.sh/resource-policy: keep`) and with them
//! the objects. Meanwhile Debian's Prometheus scrapes the operator's `/metrics` on its Pod
//! address, and every query of `config/monitoring/sluice-dashboard.json`, the panels' and the
//! namespace variable's, must return series for the scenario's objects.

mod scenario;

use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use scenario::{SYNC, assert_same_tree, source, write_sample};
use serde_json::Value;
use sluice_e2e::Stack;
use sluice_e2e::stack::{CHART_RELEASE, SYSTEM_NAMESPACE};
use sluice_testkit::Prometheus;

/// The scenario's namespace, the one the dashboard's `$namespace` selects.
const NS: &str = "chart";
/// The bucket and prefix of its repository on MinIO.
const REPO: &str = "chart/repo";
/// How often Prometheus scrapes the operator; Grafana's `$__rate_interval` follows from it.
const SCRAPE_INTERVAL: Duration = Duration::from_secs(1);
/// The resolution of the range queries: Grafana's `$__interval` on a narrow time range.
const STEP: Duration = Duration::from_secs(1);
const CRDS: [&str; 2] = [
    "replicationsources.sluice.dev",
    "replicationdestinations.sluice.dev",
];

#[test]
fn chart_install_backs_up_and_feeds_every_dashboard_panel() {
    let stack = Stack::start_without_sluice();
    stack.install_chart();
    the_operator_is_helms_release(&stack);
    let leader = stack.leader().expect("an operator Pod holds the Lease");
    let target = stack
        .operator_address(&leader)
        .unwrap_or_else(|e| panic!("the operator's metrics address: {e}"));
    let prometheus = Prometheus::start("sluice", &[target], SCRAPE_INTERVAL);
    let start = unix_now();
    let snapshot = backup_into_minio_is_read_back_by_restic(&stack);
    wrong_password_fails_the_sync(&stack);
    every_dashboard_query_returns_series(&prometheus, start);
    uninstall_removes_the_operator_and_keeps_the_crds(&stack, &snapshot);
}

fn the_operator_is_helms_release(stack: &Stack) {
    let mut status = stack.helm();
    status.args([
        "status",
        CHART_RELEASE,
        "-n",
        SYSTEM_NAMESPACE,
        "-o",
        "json",
    ]);
    let release: Value = serde_json::from_str(&sluice_testkit::process::succeed(status))
        .expect("helm status -o json is JSON");
    assert_eq!(release["info"]["status"], "deployed", "{release}");
    let deployment = "deployment/sluice-operator";
    assert_eq!(
        stack.get(
            SYSTEM_NAMESPACE,
            deployment,
            "{.metadata.labels.app\\.kubernetes\\.io/managed-by}"
        ),
        "Helm"
    );
    assert_eq!(
        stack.get(
            SYSTEM_NAMESPACE,
            deployment,
            "{.spec.template.spec.containers[0].image}"
        ),
        sluice_e2e::images::SLUICE_IMAGE,
        "the chart runs the image the harness imported"
    );
    assert_eq!(stack.http("/readyz").trim(), "ok");
}

/// One manual backup of a PVC into MinIO; returns the snapshot's id.
fn backup_into_minio_is_read_back_by_restic(stack: &Stack) -> String {
    stack.namespace(NS);
    stack.repository_secret(NS, "repo", REPO, None);
    let data = stack.claim(NS, "data");
    write_sample(&data, "chart");
    stack.cluster.apply(&source(NS, "data", "Direct", ""));
    let object = "replicationsource/data";
    stack.wait_field(NS, object, "{.status.lastManualSync}", SYNC, |v| v == "one");
    assert_eq!(stack.condition(NS, object, "Ready"), "True/SyncSucceeded");
    assert_ne!(stack.get(NS, object, "{.status.lastSyncTime}"), "");
    // The first sync of a source also prunes: the dashboard's prune panel reads its time.
    assert_ne!(stack.get(NS, object, "{.status.restic.lastPruned}"), "");
    let snapshot = stack.get(NS, object, "{.status.lastSync.snapshotID}");
    assert_eq!(
        snapshot.len(),
        64,
        "lastSync.snapshotID is a full id: {snapshot:?}"
    );

    let listed: Value = serde_json::from_str(&stack.run_restic(REPO, &["snapshots", "--json"]))
        .expect("restic snapshots --json is JSON");
    let ids: Vec<&str> = listed
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["id"].as_str())
        .collect();
    assert_eq!(ids, [snapshot.as_str()], "restic lists the one snapshot");
    stack.run_restic(REPO, &["check", "--read-data"]);
    let restored = tempfile::tempdir().unwrap();
    let target = restored.path().to_string_lossy().into_owned();
    stack.run_restic(REPO, &["restore", &snapshot, "--target", &target]);
    assert_same_tree(&data, restored.path());
    snapshot
}

/// A second source into the same repository with a wrong password: a failed sync, for the
/// dashboard's failure panels.
fn wrong_password_fails_the_sync(stack: &Stack) {
    stack.repository_secret(NS, "wrong-password", REPO, Some("not-the-password"));
    let manifest = source(NS, "wrong-password", "Direct", "")
        .replace("repository: repo", "repository: wrong-password");
    stack.cluster.apply(&manifest);
    let object = "replicationsource/wrong-password";
    stack.wait_field(
        NS,
        object,
        "{.status.conditions[?(@.type==\"Ready\")].reason}",
        SYNC,
        |v| v == "WrongPassword",
    );
    assert_eq!(stack.condition(NS, object, "Ready"), "False/WrongPassword");
}

fn every_dashboard_query_returns_series(prometheus: &Prometheus, start: f64) {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/monitoring/sluice-dashboard.json");
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display())),
    )
    .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
    let rate_interval = grafana_rate_interval(STEP, SCRAPE_INTERVAL);
    // `increase` and `rate` need two samples in their window: wait for that many scrapes after
    // the failure, the last change the panels show.
    wait_for_samples(
        prometheus,
        &format!("sluice_sync_failures_total{{namespace=\"{NS}\"}}"),
        (rate_interval.as_secs_f64() / SCRAPE_INTERVAL.as_secs_f64()).ceil() as usize + 1,
    );
    let end = unix_now();

    for variable in dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let Some(definition) = variable["definition"].as_str() else {
            continue; // the data source picker
        };
        let (selector, label) = label_values_query(definition);
        let values = prometheus
            .label_values(label, selector)
            .unwrap_or_else(|e| panic!("variable {}: {definition}: {e}", variable["name"]));
        assert!(
            values.contains(&Value::from(NS)),
            "variable {} ({definition}) offers {values:?}, not the scenario's namespace {NS}",
            variable["name"]
        );
    }

    let mut panels = Vec::new();
    collect_panels(&dashboard["panels"], &mut panels);
    assert!(!panels.is_empty(), "{} has no panels", path.display());
    let mut empty = Vec::new();
    for panel in &panels {
        let title = panel["title"].as_str().unwrap_or("(untitled)");
        let targets = panel["targets"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        assert!(!targets.is_empty(), "panel {title:?} has no query");
        for target in targets {
            let expr = target["expr"]
                .as_str()
                .unwrap_or_else(|| panic!("panel {title:?} has a target without expr: {target}"));
            let query = substitute(expr, rate_interval);
            let series = prometheus
                .query_range(&query, start, end, STEP)
                .unwrap_or_else(|e| panic!("panel {title:?}: {query}: {e}"));
            if series.is_empty() {
                empty.push(format!("{title:?}: {query}"));
            }
            check_panel(title, &series);
        }
    }
    assert!(
        empty.is_empty(),
        "dashboard panels whose query returns no series from {start} to {end}:\n{}\n\
         Prometheus log:\n{}",
        empty.join("\n"),
        prometheus.log_tail(20)
    );
}

/// What two panels must show of this scenario beyond having series: the failure's reason, and
/// the failing source out of sync.
fn check_panel(title: &str, series: &[Value]) {
    let of = |name: &'static str| {
        series
            .iter()
            .filter(move |s| s["metric"]["namespace"] == NS && s["metric"]["name"] == name)
    };
    match title {
        "Failed syncs by reason" => assert!(
            of("wrong-password").any(|s| s["metric"]["reason"] == "WrongPassword"),
            "panel {title:?} has no WrongPassword series of {NS}/wrong-password: {series:?}"
        ),
        "Out of sync" => {
            let last = |name: &'static str| -> Vec<String> {
                of(name)
                    .filter_map(|s| {
                        s["values"].as_array()?.last()?[1]
                            .as_str()
                            .map(String::from)
                    })
                    .collect()
            };
            assert_eq!(last("wrong-password"), ["1"], "panel {title:?}: {series:?}");
            assert_eq!(last("data"), ["0"], "panel {title:?}: {series:?}");
        }
        _ => {}
    }
}

/// Waits until Prometheus holds at least `samples` samples of `selector` within the last
/// minute.
fn wait_for_samples(prometheus: &Prometheus, selector: &str, samples: usize) {
    let query = format!("count_over_time({selector}[1m])");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let counted = prometheus
            .query(&query)
            .unwrap_or_else(|e| panic!("{query}: {e}"));
        let most = counted
            .iter()
            .filter_map(|s| s["value"][1].as_str()?.parse::<f64>().ok())
            .fold(0.0, f64::max);
        if most >= samples as f64 {
            return;
        }
        if Instant::now() > deadline {
            panic!(
                "Prometheus did not scrape {samples} samples of {selector} (has {most}); its log:\n{}",
                prometheus.log_tail(20)
            );
        }
        std::thread::sleep(SCRAPE_INTERVAL);
    }
}

/// The dashboard's panels, those inside rows included.
fn collect_panels<'a>(panels: &'a Value, into: &mut Vec<&'a Value>) {
    for panel in panels.as_array().into_iter().flatten() {
        if panel["type"] == "row" {
            collect_panels(&panel["panels"], into);
        } else {
            into.push(panel);
        }
    }
}

/// A panel's query as Grafana sends it with the scenario's namespace selected.
fn substitute(expr: &str, rate_interval: Duration) -> String {
    let window = format!("{}s", rate_interval.as_secs());
    let query = [
        ("${namespace}", NS),
        ("$namespace", NS),
        ("${__rate_interval}", &window),
        ("$__rate_interval", &window),
    ]
    .iter()
    .fold(expr.to_owned(), |query, (variable, value)| {
        query.replace(variable, value)
    });
    assert!(
        !query.contains('$'),
        "a dashboard query uses a variable this test does not set: {expr}"
    );
    query
}

/// Grafana's `$__rate_interval`: the larger of `$__interval` plus the scrape interval and four
/// scrape intervals.
fn grafana_rate_interval(interval: Duration, scrape: Duration) -> Duration {
    (interval + scrape).max(4 * scrape)
}

/// The selector and label of a `label_values(selector, label)` variable query.
fn label_values_query(definition: &str) -> (&str, &str) {
    definition
        .strip_prefix("label_values(")
        .and_then(|rest| rest.strip_suffix(')'))
        .and_then(|args| args.rsplit_once(','))
        .map(|(selector, label)| (selector.trim(), label.trim()))
        .unwrap_or_else(|| panic!("a dashboard variable this test cannot run: {definition}"))
}

fn uninstall_removes_the_operator_and_keeps_the_crds(stack: &Stack, snapshot: &str) {
    let output = stack.uninstall_chart();
    // Helm names what a resource policy kept.
    for crd in CRDS {
        assert!(
            output.contains(crd),
            "helm uninstall does not report keeping {crd}:\n{output}"
        );
    }
    for object in [
        "deployment/sluice-operator",
        "serviceaccount/sluice-operator",
        "service/sluice-operator-metrics",
    ] {
        let found = stack
            .cluster
            .try_kubectl(&["get", object, "-n", SYSTEM_NAMESPACE]);
        assert!(
            found.as_ref().is_err_and(|e| e.contains("NotFound")),
            "{object} is still there after helm uninstall: {found:?}"
        );
    }
    let cluster_role = stack
        .cluster
        .try_kubectl(&["get", "clusterrole/sluice-operator"]);
    assert!(
        cluster_role.as_ref().is_err_and(|e| e.contains("NotFound")),
        "the ClusterRole is still there after helm uninstall: {cluster_role:?}"
    );
    stack.cluster.wait_for(
        "the operator's Pods to go after helm uninstall",
        Duration::from_secs(120),
        || stack.operator_pods().is_empty(),
    );
    for crd in CRDS {
        let policy = stack.cluster.kubectl(&[
            "get",
            "crd",
            crd,
            "-o",
            "jsonpath={.metadata.annotations.helm\\.sh/resource-policy}",
        ]);
        assert_eq!(policy, "keep", "CRD {crd} is kept by its resource policy");
    }
    // The kept CRDs keep the objects, and with them the record of the backups.
    assert_eq!(
        stack.get(
            NS,
            "replicationsource/data",
            "{.status.lastSync.snapshotID}"
        ),
        snapshot
    );
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_secs_f64()
}
