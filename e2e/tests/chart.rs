//! Sluice installed with its Helm chart instead of kustomize, and seen through the tools
//! users already watch their clusters with:
//! - `helm install charts/sluice` on the real cluster; a backup and a restore run, mover Jobs
//!   carry the operator's own image and the chart's mover defaults;
//! - Argo CD's health checks (`config/argocd`) give Healthy, Progressing, Degraded and
//!   Suspended for real objects in those states; the objects are saved under
//!   `$CARGO_TARGET_TMPDIR/argocd-captured` (the source of the checks' `testdata/`);
//! - `kubectl sluice` (status, sync --wait, snapshots, ls, dump) on those objects;
//! - a real Prometheus scrapes the operator, and every query of the Grafana dashboard
//!   (`config/monitoring/sluice-dashboard.json`) returns series.
//!
//! `chart_render.rs` checks the chart without a cluster.

mod scenario;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use scenario::{SYNC, assert_same_tree, destination, source, write_sample};
use serde_json::Value;
use sluice_e2e::prometheus::Prometheus;
use sluice_e2e::stack::{SYSTEM_NAMESPACE, workspace_binary};
use sluice_e2e::{Stack, argocd};

/// The memory limit the chart gives every mover (`mover.resources`) in this test.
const MOVER_MEMORY: &str = "300Mi";

#[test]
fn installed_with_the_chart() {
    let stack = Stack::start_without_sluice();
    stack.install_with_chart(&[&format!("mover.resources.limits.memory={MOVER_MEMORY}")]);
    let captured = std::thread::scope(|scope| {
        let runs = [
            scope.spawn(|| backup_and_restore(&stack)),
            scope.spawn(|| wrong_password(&stack)),
            scope.spawn(|| copy_that_never_binds(&stack)),
            scope.spawn(|| paused(&stack)),
            scope.spawn(|| restore_without_a_snapshot(&stack)),
        ];
        runs.into_iter()
            .flat_map(|run| run.join().expect("scenario passed"))
            .collect::<Vec<_>>()
    });
    argo_cd_health_of_the_objects(&captured);
    let prometheus = scrape_the_operator(&stack);
    // A second backup, by `kubectl sluice sync --wait`, while Prometheus watches.
    kubectl_sluice_verbs(&stack);
    every_dashboard_query_returns_series(&prometheus);
}

/// An object as `kubectl get -o json` shows it, named for the Argo CD test data.
struct Captured {
    case: &'static str,
    object: Value,
}

impl Captured {
    fn kind(&self) -> &str {
        self.object["kind"].as_str().expect("objects have a kind")
    }
}

fn capture(stack: &Stack, ns: &str, object: &str, case: &'static str) -> Captured {
    let json = stack
        .cluster
        .kubectl(&["get", object, "-n", ns, "-o", "json"]);
    Captured {
        case,
        object: serde_json::from_str(&json).expect("kubectl prints JSON"),
    }
}

/// The resource version of `ns`'s Job collection: a watch from it replays every Job created
/// later, even one the operator has deleted since.
fn jobs_version(stack: &Stack, ns: &str) -> String {
    let list = stack.cluster.kubectl(&[
        "get",
        "--raw",
        &format!("/apis/batch/v1/namespaces/{ns}/jobs"),
    ]);
    let list: Value = serde_json::from_str(&list).expect("the API server answers JSON");
    list["metadata"]["resourceVersion"]
        .as_str()
        .expect("a list has a resourceVersion")
        .to_owned()
}

/// The first Job created in `ns` since `version`, as the API server recorded it.
fn first_job_since(stack: &Stack, ns: &str, version: &str) -> Value {
    let events = stack.cluster.kubectl(&[
        "get",
        "--raw",
        &format!(
            "/apis/batch/v1/namespaces/{ns}/jobs?watch=1&resourceVersion={version}&timeoutSeconds=2"
        ),
    ]);
    events
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find(|event| event["type"] == "ADDED")
        .map(|event| event["object"].clone())
        .unwrap_or_else(|| panic!("no Job was created in {ns} since {version}: {events}"))
}

fn backup_and_restore(stack: &Stack) -> Vec<Captured> {
    let ns = "chart";
    stack.namespace(ns);
    stack.repository_secret(ns, "repo", "chart/repo", None);
    let data = stack.claim(ns, "data");
    write_sample(&data, "chart");
    let jobs = jobs_version(stack, ns);
    stack.cluster.apply(&source(ns, "data", "Direct", ""));
    let object = "replicationsource/data";
    stack.wait_field(ns, object, "{.status.lastManualSync}", SYNC, |v| v == "one");
    assert_eq!(stack.condition(ns, object, "Ready"), "True/SyncSucceeded");
    let snapshot = stack.get(ns, object, "{.status.lastSync.snapshotID}");
    let listed = stack.run_restic("chart/repo", &["snapshots", "--json"]);
    assert!(
        listed.contains(&snapshot),
        "restic lists {snapshot}: {listed}"
    );
    let job = first_job_since(stack, ns, &jobs);
    let mover = &job["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        mover["image"], "localhost/sluice:e2e",
        "the mover runs the operator's own image: the chart sets no SLUICE_MOVER_IMAGE"
    );
    assert_eq!(
        mover["resources"]["limits"]["memory"], MOVER_MEMORY,
        "the chart's mover.resources apply to a source that sets none"
    );
    let healthy_source = capture(stack, ns, object, "healthy");

    stack
        .cluster
        .apply(&destination(ns, "restored", "Direct", ""));
    let restored = "replicationdestination/restored";
    stack.wait_field(ns, restored, "{.status.lastManualSync}", SYNC, |v| {
        v == "one"
    });
    assert_eq!(stack.condition(ns, restored, "Ready"), "True/SyncSucceeded");
    let claim = stack.get(ns, restored, "{.status.latestImage.name}");
    assert_same_tree(&data, &stack.wait_claim_dir(ns, &claim));
    vec![healthy_source, capture(stack, ns, restored, "healthy")]
}

fn wrong_password(stack: &Stack) -> Vec<Captured> {
    let ns = "chart-wrong-password";
    stack.namespace(ns);
    stack.run_restic("chart-wrong-password/repo", &["init"]);
    stack.repository_secret(ns, "repo", "chart-wrong-password/repo", Some("not-it"));
    write_sample(&stack.claim(ns, "data"), "wrong");
    stack.cluster.apply(&source(ns, "data", "Direct", ""));
    let object = "replicationsource/data";
    let reason = "{.status.conditions[?(@.type==\"Ready\")].reason}";
    stack.wait_field(ns, object, reason, SYNC, |v| v == "WrongPassword");
    vec![capture(stack, ns, object, "wrong-password")]
}

fn copy_that_never_binds(stack: &Stack) -> Vec<Captured> {
    let ns = "chart-unbound";
    stack.namespace(ns);
    stack.repository_secret(ns, "repo", "chart-unbound/repo", None);
    stack.claim(ns, "data");
    let extra = "    storageClassName: no-such-class\n";
    stack.cluster.apply(&source(ns, "data", "Clone", extra));
    let object = "replicationsource/data";
    let reason = "{.status.conditions[?(@.type==\"Reconciling\")].reason}";
    stack.wait_field(ns, object, reason, SYNC, |v| v == "WaitingForPVC");
    vec![capture(stack, ns, object, "waiting-for-pvc")]
}

fn paused(stack: &Stack) -> Vec<Captured> {
    let ns = "chart-paused";
    stack.namespace(ns);
    stack.repository_secret(ns, "repo", "chart-paused/repo", None);
    stack.claim(ns, "data");
    stack.cluster.apply(
        &source(ns, "data", "Direct", "")
            .replace("  sourcePVC: data\n", "  sourcePVC: data\n  paused: true\n"),
    );
    let object = "replicationsource/data";
    let reason = "{.status.conditions[?(@.type==\"Reconciling\")].reason}";
    stack.wait_field(ns, object, reason, SYNC, |v| v == "Paused");
    vec![capture(stack, ns, object, "paused")]
}

fn restore_without_a_snapshot(stack: &Stack) -> Vec<Captured> {
    let ns = "chart-nothing";
    stack.namespace(ns);
    stack.repository_secret(ns, "repo", "chart-nothing/repo", None);
    stack.run_restic("chart-nothing/repo", &["init"]);
    stack.cluster.apply(&destination(ns, "empty", "Direct", ""));
    let object = "replicationdestination/empty";
    let reason = "{.status.conditions[?(@.type==\"Ready\")].reason}";
    stack.wait_field(ns, object, reason, SYNC, |v| v == "NoSnapshot");
    vec![capture(stack, ns, object, "no-snapshot")]
}

/// The health each captured case must give, and a word its message must contain.
fn expected_health(case: &str) -> (&'static str, &'static str) {
    match case {
        "healthy" => ("Healthy", "SyncSucceeded"),
        "wrong-password" => ("Degraded", "WrongPassword"),
        "waiting-for-pvc" => ("Progressing", "WaitingForPVC"),
        "paused" => ("Suspended", "paused"),
        "no-snapshot" => ("Degraded", "NoSnapshot"),
        "spec-not-observed" => ("Progressing", "observe generation"),
        other => panic!("no expected health for {other}"),
    }
}

fn argo_cd_health_of_the_objects(captured: &[Captured]) {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("argocd-captured");
    std::fs::create_dir_all(&dir).unwrap();
    let mut checked = Vec::new();
    for capture in captured {
        let mut cases = vec![(capture.case, capture.object.clone())];
        if capture.case == "healthy" {
            // The same object just after its spec changed: the API server has raised
            // metadata.generation, the operator has not observed it yet.
            let mut edited = capture.object.clone();
            let generation = edited["metadata"]["generation"]
                .as_i64()
                .expect("generation");
            edited["metadata"]["generation"] = Value::from(generation + 1);
            cases.push(("spec-not-observed", edited));
        }
        for (case, object) in cases {
            let kind = capture.kind();
            let file = dir.join(format!("{kind}-{case}.json"));
            std::fs::write(&file, serde_json::to_string_pretty(&object).unwrap()).unwrap();
            let health = argocd::health(kind, &object);
            let (status, word) = expected_health(case);
            assert_eq!(
                health.status,
                status,
                "{kind} {case} ({}): {health:?}",
                file.display()
            );
            assert!(
                health.message.contains(word),
                "{kind} {case}: the message names {word}: {health:?}"
            );
            checked.push(format!(
                "{kind} {case}: {} ({})",
                health.status, health.message
            ));
        }
    }
    eprintln!(
        "Argo CD health of the captured objects:\n  {}",
        checked.join("\n  ")
    );
}

/// Every panel's queries, with the dashboard's variables as Grafana fills them for "All".
fn dashboard_queries() -> Vec<(String, String)> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../config/monitoring/sluice-dashboard.json");
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let mut queries = Vec::new();
    for panel in dashboard["panels"]
        .as_array()
        .expect("the dashboard has panels")
    {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"]
                .as_str()
                .expect("every target has a PromQL expr")
                .replace("$namespace", ".*")
                .replace("$__rate_interval", "1m");
            queries.push((panel["title"].as_str().unwrap().to_owned(), expr));
        }
    }
    assert!(queries.len() >= 8, "{queries:?}");
    queries
}

fn scrape_the_operator(stack: &Stack) -> Prometheus {
    let leader = stack.leader().expect("an operator holds the Lease");
    let ip = stack.get(
        SYSTEM_NAMESPACE,
        &format!("pod/{leader}"),
        "{.status.podIP}",
    );
    let target: SocketAddr = format!("{ip}:8080").parse().expect("a Pod address");
    let prometheus = Prometheus::start(target);
    let up = prometheus.wait_for_series("up{job=\"sluice\"} == 1", Duration::from_secs(30));
    assert!(
        !up.is_empty(),
        "Prometheus scrapes the operator at {target}"
    );
    prometheus
}

fn every_dashboard_query_returns_series(prometheus: &Prometheus) {
    for (title, expr) in dashboard_queries() {
        let series = prometheus.wait_for_series(&expr, Duration::from_secs(30));
        assert!(
            !series.is_empty(),
            "dashboard panel {title:?}: no series for {expr}"
        );
    }
    let added = prometheus.query(
        "sum(increase(sluice_sync_bytes_added_total{namespace=\"chart\",name=\"data\"}[1m]))",
    );
    let value: f64 = added[0]["value"][1].as_str().unwrap().parse().unwrap();
    assert!(
        value > 0.0,
        "the second backup's bytes show in the window: {added:?}"
    );
}

/// `kubectl sluice` with the test cluster's kubeconfig: exit code, stdout, stderr.
fn plugin(stack: &Stack, args: &[&str]) -> (i32, String, String) {
    let output = std::process::Command::new(workspace_binary("kubectl-sluice"))
        .arg("--kubeconfig")
        .arg(stack.cluster.kubeconfig())
        .args(args)
        .output()
        .expect("kubectl-sluice runs");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn plugin_ok(stack: &Stack, args: &[&str]) -> String {
    let (code, out, err) = plugin(stack, args);
    assert_eq!(code, 0, "kubectl sluice {}: {err}{out}", args.join(" "));
    out
}

/// `kubectl sluice` against the objects the scenarios left: status, a manual sync followed to
/// its end, the repository's snapshots, a listing and one file, and a failing sync's exit code.
fn kubectl_sluice_verbs(stack: &Stack) {
    let rows: Value =
        serde_json::from_str(&plugin_ok(stack, &["status", "-n", "chart", "-o", "json"])).unwrap();
    let source = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["kind"] == "ReplicationSource" && r["name"] == "data")
        .unwrap_or_else(|| panic!("status lists chart/data: {rows}"));
    assert_eq!(source["state"], "Ready", "{source}");
    assert!(source["bytesAdded"].as_u64().unwrap() > 0, "{source}");
    let all = plugin_ok(stack, &["status", "-A"]);
    assert!(all.starts_with("NAMESPACE"), "{all}");
    for word in [
        "chart-wrong-password",
        "WrongPassword",
        "chart-paused",
        "Paused",
        "WaitingForPVC",
    ] {
        assert!(all.contains(word), "status -A names {word}:\n{all}");
    }
    assert!(
        !all.contains("\x1b["),
        "no colour when stdout is not a terminal:\n{all}"
    );

    write_sample(&stack.wait_claim_dir("chart", "data"), "chart, second");
    let outcome: Value = serde_json::from_str(&plugin_ok(
        stack,
        &[
            "sync",
            "data",
            "-n",
            "chart",
            "--wait",
            "--timeout",
            "3m",
            "-o",
            "json",
        ],
    ))
    .unwrap();
    assert_eq!(outcome["succeeded"], true, "{outcome}");
    let snapshot = outcome["snapshotId"]
        .as_str()
        .expect("a snapshot id")
        .to_owned();
    assert_eq!(
        stack.get(
            "chart",
            "replicationsource/data",
            "{.status.lastSync.snapshotID}"
        ),
        snapshot
    );

    let listed: Value = serde_json::from_str(&plugin_ok(
        stack,
        &["snapshots", "data", "-n", "chart", "-o", "json"],
    ))
    .unwrap();
    let ids: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    let restic: Value = serde_json::from_str(&stack.run_restic(
        "chart/repo",
        &["snapshots", "--json", "--host", "chart-data"],
    ))
    .unwrap();
    let mut restic_ids: Vec<&str> = restic
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    let mut sorted = ids.clone();
    sorted.sort();
    restic_ids.sort();
    assert_eq!(
        sorted, restic_ids,
        "kubectl sluice snapshots lists what restic lists for the source's host"
    );
    assert!(ids.contains(&snapshot.as_str()));

    let files = plugin_ok(stack, &["ls", "data", "latest", "/nested", "-n", "chart"]);
    assert!(files.lines().any(|l| l == "/nested/file-1.txt"), "{files}");
    let content = plugin_ok(
        stack,
        &[
            "dump",
            "data",
            &snapshot[..8],
            "/generation.txt",
            "-n",
            "chart",
        ],
    );
    assert_eq!(content, "chart, second");

    let (code, out, err) = plugin(
        stack,
        &[
            "sync",
            "data",
            "-n",
            "chart-wrong-password",
            "--wait",
            "--timeout",
            "3m",
        ],
    );
    assert_eq!(code, 1, "a failing sync exits 1: {out}{err}");
    assert!(out.contains("WrongPassword"), "{out}{err}");
    let (code, _, err) = plugin(stack, &["status", "-o", "xml"]);
    assert_eq!(code, 2, "a usage error exits 2: {err}");
}
