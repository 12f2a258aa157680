//! What the scenario tests share: sample data, tree comparison, manifests
//! and manual syncs on a [`Stack`].

#![allow(dead_code)] // Each scenario binary uses its own subset.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use sluice_e2e::Stack;

/// Long enough for a mover Job on a loaded 2-core machine.
pub const SYNC: Duration = Duration::from_secs(120);

/// Writes a small tree: nested directories, 50 small files, a 3 MB file
/// and a symlink, all stamped with `generation`.
pub fn write_sample(dir: &Path, generation: &str) {
    fs::create_dir_all(dir.join("nested/deeper")).unwrap();
    fs::write(dir.join("generation.txt"), generation).unwrap();
    for i in 0..50 {
        fs::write(
            dir.join(format!("nested/file-{i}.txt")),
            format!("{generation} file {i}\n").repeat(i + 1),
        )
        .unwrap();
    }
    let seed = generation.bytes().map(u32::from).sum::<u32>();
    let big: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i.wrapping_mul(7) ^ seed ^ (i >> 12)) as u8)
        .collect();
    fs::write(dir.join("nested/deeper/big.bin"), big).unwrap();
    let link = dir.join("link");
    if fs::symlink_metadata(&link).is_err() {
        std::os::unix::fs::symlink("nested/file-1.txt", link).unwrap();
    }
}

/// Asserts two trees hold the same names, symlinks and contents.
pub fn assert_same_tree(expected: &Path, actual: &Path) {
    let output = Command::new("diff")
        .args(["-r", "--no-dereference"])
        .arg(expected)
        .arg(actual)
        .output()
        .expect("diff runs");
    assert!(
        output.status.success(),
        "{} and {} differ:\n{}{}",
        expected.display(),
        actual.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A ReplicationSource of PVC `data` into the repository Secret `repo`,
/// with a manual trigger `one`; `extra` is appended to `spec.restic`
/// (indented by four spaces).
pub fn source(ns: &str, name: &str, copy_method: &str, extra: &str) -> String {
    format!(
        "apiVersion: sluice.dev/v1alpha1
kind: ReplicationSource
metadata: {{name: {name}, namespace: {ns}}}
spec:
  sourcePVC: data
  trigger: {{manual: one}}
  restic:
    repository: repo
    copyMethod: {copy_method}
    retain: {{last: 10}}
{extra}"
    )
}

/// A ReplicationDestination restoring from the repository Secret `repo`
/// into a new 1Gi claim, with a manual trigger `one`; `extra` is appended
/// to `spec.restic` (indented by four spaces).
pub fn destination(ns: &str, name: &str, copy_method: &str, extra: &str) -> String {
    format!(
        "apiVersion: sluice.dev/v1alpha1
kind: ReplicationDestination
metadata: {{name: {name}, namespace: {ns}}}
spec:
  trigger: {{manual: one}}
  restic:
    repository: repo
    copyMethod: {copy_method}
    capacity: 1Gi
    accessModes: [ReadWriteOnce]
{extra}"
    )
}

/// Applies the JSON merge patch `patch` to `kind/name` in `ns`.
pub fn merge_patch(stack: &Stack, ns: &str, object: &str, patch: &str) {
    stack
        .cluster
        .kubectl(&["patch", object, "-n", ns, "--type=merge", "-p", patch]);
}

/// Sets `spec.trigger.manual` of `kind/name` to `value`.
pub fn trigger(stack: &Stack, ns: &str, object: &str, value: &str) {
    merge_patch(
        stack,
        ns,
        object,
        &format!("{{\"spec\":{{\"trigger\":{{\"manual\":\"{value}\"}}}}}}"),
    );
}

/// Triggers a manual sync of ReplicationSource `name` with `value`, waits
/// for it, and returns the snapshot id it reports.
pub fn manual_sync(stack: &Stack, ns: &str, name: &str, value: &str) -> String {
    let object = format!("replicationsource/{name}");
    trigger(stack, ns, &object, value);
    stack.wait_field(ns, &object, "{.status.lastManualSync}", SYNC, |v| {
        v == value
    });
    stack.get(ns, &object, "{.status.lastSync.snapshotID}")
}

/// The reasons of the events in `ns`, space-separated.
pub fn event_reasons(stack: &Stack, ns: &str) -> String {
    stack.cluster.kubectl(&[
        "get",
        "events.events.k8s.io",
        "-n",
        ns,
        "-o",
        "jsonpath={.items[*].reason}",
    ])
}

/// The names of the PVCs, VolumeSnapshots and Jobs in `ns`, space-separated.
pub const OWNED: (&str, &str) = ("pvc,volumesnapshots,jobs", "{.items[*].metadata.name}");
