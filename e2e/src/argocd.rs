//! Argo CD's health checks of config/argocd, run as Argo CD runs them: a kind's `health.lua`
//! with Lua 5.1 (Argo CD's gopher-lua speaks 5.1) and `obj` set to the object. The checks'
//! own test cases (`health_test.yaml`) and objects of a live cluster go through the same run.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// `config/argocd/resource_customizations/sluice.dev`, where each kind's `health.lua` is.
pub fn customizations() -> PathBuf {
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
pub fn health(script: &Path, object: &Value) -> (String, String) {
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

/// What Argo CD's health check of `kind` says of `object`: (status, message).
pub fn kind_health(kind: &str, object: &Value) -> (String, String) {
    health(&customizations().join(kind).join("health.lua"), object)
}
