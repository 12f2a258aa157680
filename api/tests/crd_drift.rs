//! The committed `config/crd/` must be exactly what crdgen writes from the current types.

use std::path::PathBuf;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;
use sluice_api::{
    ReplicationDestination, ReplicationSource,
    crd_yaml::{CHART_CRD_DIR, REGENERATE_COMMAND, crd_files, kustomization},
};

fn crd_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../config/crd")
}

fn committed(name: &str) -> String {
    let path = crd_dir().join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|err| {
        panic!(
            "cannot read {}: {err}; run {REGENERATE_COMMAND}",
            path.display()
        )
    })
}

#[test]
fn committed_crds_match_crdgen_output() {
    for (name, generated) in crd_files() {
        assert!(
            committed(name) == generated,
            "config/crd/{name} differs from the sluice-api types; run {REGENERATE_COMMAND} and commit the result"
        );
    }
    assert!(
        committed("kustomization.yaml") == kustomization(),
        "config/crd/kustomization.yaml is stale; run {REGENERATE_COMMAND}"
    );
}

#[test]
fn the_charts_crds_match_crdgen_output_and_nothing_else() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(CHART_CRD_DIR);
    for (name, generated) in crd_files() {
        let committed = std::fs::read_to_string(dir.join(name)).unwrap_or_else(|err| {
            panic!("cannot read {CHART_CRD_DIR}/{name}: {err}; run {REGENERATE_COMMAND}")
        });
        assert!(
            committed == generated,
            "{CHART_CRD_DIR}/{name} differs from the sluice-api types; run {REGENERATE_COMMAND} and commit the result"
        );
    }
    let mut present: Vec<String> = std::fs::read_dir(&dir)
        .expect("the chart's CRD directory exists")
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    present.sort();
    let mut expected: Vec<String> = crd_files().into_iter().map(|(n, _)| n.to_owned()).collect();
    expected.sort();
    assert_eq!(
        present, expected,
        "{CHART_CRD_DIR} holds files crdgen does not write; remove them"
    );
}

#[test]
fn config_crd_holds_no_stray_files() {
    let mut expected: Vec<String> = crd_files().into_iter().map(|(n, _)| n.to_owned()).collect();
    expected.push("kustomization.yaml".to_owned());
    expected.sort();
    let mut present: Vec<String> = std::fs::read_dir(crd_dir())
        .expect("config/crd exists")
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    present.sort();
    assert_eq!(
        present, expected,
        "config/crd/ holds files crdgen does not write; remove them"
    );
}

#[test]
fn rendered_yaml_parses_back_to_the_same_crd() {
    let expected = [ReplicationSource::crd(), ReplicationDestination::crd()];
    for ((name, yaml), crd) in crd_files().into_iter().zip(expected) {
        let parsed: CustomResourceDefinition = serde_saphyr::from_str(&yaml)
            .unwrap_or_else(|err| panic!("{name} does not parse back: {err}"));
        assert_eq!(
            serde_json::to_value(&parsed).unwrap(),
            serde_json::to_value(&crd).unwrap(),
            "{name}: YAML rendering changed the CRD"
        );
    }
}

#[test]
fn crdgen_output_is_deterministic() {
    assert_eq!(crd_files(), crd_files());
}
