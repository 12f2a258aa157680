//! The Argo CD health checks in config/argocd, run as Argo CD runs them: each kind's
//! `health.lua` with Lua 5.1 (Argo CD's gopher-lua speaks 5.1), `obj` set to each input of
//! the kind's `health_test.yaml`, the status and message compared with what the file expects.

use std::path::Path;

use serde_json::Value;
use sluice_e2e::argocd::{customizations, health};

fn yaml(path: &Path) -> Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn every_health_test_case_gets_the_status_and_message_it_expects() {
    let mut cases = 0;
    for kind in ["ReplicationSource", "ReplicationDestination"] {
        let dir = customizations().join(kind);
        let tests = yaml(&dir.join("health_test.yaml"));
        let tests = tests["tests"]
            .as_array()
            .expect("health_test.yaml lists tests");
        assert!(!tests.is_empty(), "{kind} has no health tests");
        for test in tests {
            let input = dir.join(test["inputPath"].as_str().unwrap());
            let expected = (
                test["healthStatus"]["status"].as_str().unwrap().to_string(),
                test["healthStatus"]["message"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            );
            let got = health(&dir.join("health.lua"), &yaml(&input));
            assert_eq!(got, expected, "{kind} {}", input.display());
            cases += 1;
        }
    }
    assert_eq!(cases, 10, "every case ran");
}

#[test]
fn every_testdata_file_is_a_case() {
    for kind in ["ReplicationSource", "ReplicationDestination"] {
        let dir = customizations().join(kind);
        let listed = std::fs::read_to_string(dir.join("health_test.yaml")).unwrap();
        for entry in std::fs::read_dir(dir.join("testdata")).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            assert!(
                listed.contains(&format!("testdata/{name}")),
                "{kind}/testdata/{name} is not in health_test.yaml"
            );
        }
    }
}
