//! The PrometheusRule ships the same rules that `promtool test rules` checks.

use serde_json::Value;

fn yaml(path: &str) -> Value {
    let full = format!("{}/../config/monitoring/{path}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("reading {full}: {e}"));
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("parsing {full}: {e}"))
}

#[test]
fn prometheus_rule_wraps_the_tested_rules_file() {
    let rules = yaml("sluice-alerts.rules.yaml");
    let wrapped = yaml("prometheusrule.yaml");
    assert_eq!(wrapped["kind"], "PrometheusRule");
    assert_eq!(
        wrapped["spec"], rules,
        "config/monitoring/prometheusrule.yaml differs from sluice-alerts.rules.yaml"
    );
}

#[test]
fn alerts_use_metrics_the_operator_exports() {
    let exported = sluice_operator::metrics::Metrics::default();
    let object = sluice_operator::metrics::ObjectLabels {
        kind: "ReplicationSource".into(),
        namespace: "apps".into(),
        name: "db".into(),
    };
    exported.sync_failed(&object, 1.0, "WrongPassword");
    exported.prune_state(&object, Some(1.0), 86_400);
    let text = exported.encode();
    for metric in [
        "sluice_volume_out_of_sync{",
        "sluice_sync_failures_total{",
        "sluice_prune_last_timestamp_seconds{",
        "sluice_prune_interval_seconds{",
    ] {
        assert!(text.contains(metric), "{metric} not exported:\n{text}");
    }
}

#[test]
fn promtool_unit_tests_of_the_alert_rules_pass() {
    let dir = format!("{}/../config/monitoring", env!("CARGO_MANIFEST_DIR"));
    let output = std::process::Command::new("promtool")
        .args(["test", "rules", "sluice-alerts.test.yaml"])
        .current_dir(&dir)
        .output()
        .unwrap_or_else(|e| {
            panic!("promtool not found ({e}): apt-get install prometheus (Debian's package ships promtool)")
        });
    assert!(
        output.status.success(),
        "promtool test rules failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
