//! Argo CD's health checks for Sluice's kinds (`config/argocd/resource_customizations`), run
//! the way Argo CD runs them: the object as the Lua table `obj`, the script's return value
//! the health. Argo CD embeds a Lua 5.1 interpreter (gopher-lua); the tests run Debian's
//! `lua5.1`, the same language version, so a script that needs anything newer fails here.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

/// What a health check returned: Argo CD's `status` (Healthy, Progressing, Degraded,
/// Suspended, ...) and `message`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Health {
    pub status: String,
    pub message: String,
}

/// The health script of `kind` (`ReplicationSource`, `ReplicationDestination`).
pub fn script(kind: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../config/argocd/resource_customizations/sluice.dev")
        .join(kind)
        .join("health.lua")
}

/// Runs `kind`'s health script on `object` (as `kubectl get -o json` gives it) with lua5.1.
/// Panics when the interpreter is missing or the script fails, naming the object.
pub fn health(kind: &str, object: &Value) -> Health {
    let path = script(kind);
    let body = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let program = format!(
        "obj = {}\nlocal hs = (function()\n{body}\nend)()\nio.write(tostring(hs.status), \"\\n\", tostring(hs.message or \"\"))\n",
        lua_literal(object)
    );
    let mut child = Command::new("lua5.1")
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("lua5.1 not found ({e}): apt-get install lua5.1 (Argo CD's Lua version)")
        });
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(program.as_bytes())
        .expect("lua5.1 reads the program");
    let output = child.wait_with_output().expect("lua5.1 finishes");
    assert!(
        output.status.success(),
        "{} failed on {}: {}",
        path.display(),
        object["metadata"]["name"],
        String::from_utf8_lossy(&output.stderr)
    );
    let out = String::from_utf8_lossy(&output.stdout);
    let (status, message) = out.split_once('\n').unwrap_or((&out, ""));
    Health {
        status: status.to_owned(),
        message: message.to_owned(),
    }
}

/// `value` as a Lua table constructor, as Argo CD converts objects: objects become tables
/// with string keys, arrays 1-based tables, `null` is left out (nil).
fn lua_literal(value: &Value) -> String {
    match value {
        Value::Null => "nil".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => lua_string(s),
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(lua_literal).collect();
            format!("{{{}}}", items.join(", "))
        }
        Value::Object(fields) => {
            let fields: Vec<String> = fields
                .iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| format!("[{}] = {}", lua_string(k), lua_literal(v)))
                .collect();
            format!("{{{}}}", fields.join(", "))
        }
    }
}

/// A Lua string literal: every byte outside printable ASCII, and the quote and backslash,
/// as a decimal escape, so no content can end the literal.
fn lua_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for byte in s.bytes() {
        if (0x20..0x7f).contains(&byte) && byte != b'"' && byte != b'\\' {
            out.push(byte as char);
        } else {
            out.push_str(&format!("\\{byte:03}"));
        }
    }
    out.push('"');
    out
}
