//! The Argo CD health checks in config/argocd, run as Argo CD runs them: each kind's
//! `health.lua` with Lua 5.1 (Argo CD's gopher-lua speaks 5.1), `obj` set to each input of
//! the kind's `health_test.yaml`, the status and message compared with what the file expects.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn customizations() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../config/argocd/resource_customizations/sluice.dev")
}

/// `value` as a Lua table constructor (or scalar); JSON null is Lua nil.
fn lua(value: &Value) -> String {
    match value {
        Value::Null => "nil".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => lua_string(s),
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(lua).collect();
            format!("{{{}}}", items.join(", "))
        }
        Value::Object(fields) => {
            let fields: Vec<String> = fields
                .iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| format!("[{}] = {}", lua_string(k), lua(v)))
                .collect();
            format!("{{{}}}", fields.join(", "))
        }
    }
}

fn lua_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// What `script` says of `object`: (status, message).
fn health(script: &Path, object: &Value) -> (String, String) {
    let run = format!(
        "obj = {}\nlocal hs = dofile({})\nio.write(hs.status, \"\\t\", hs.message or \"\")",
        lua(object),
        lua_string(&script.to_string_lossy())
    );
    let output = Command::new("lua5.1")
        .args(["-e", &run])
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run lua5.1 ({e}): install it (apt-get install lua5.1; .ci/run does)")
        });
    assert!(
        output.status.success(),
        "{} failed: {}",
        script.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).unwrap();
    let (status, message) = text.split_once('\t').unwrap_or((&text, ""));
    (status.to_string(), message.to_string())
}

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
