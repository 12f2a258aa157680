//! `kubectl sluice` against the real cluster: `status`, `sync --wait`, `snapshots`, `ls`,
//! `dump` (from this machine and `--in-cluster`, through a browse Pod) and `unlock` on a source backed up through a VolumeSnapshot; `doctor` on that
//! healthy source and on broken ones (wrong password, missing Secret, missing ServiceAccount,
//! a VolumeSnapshotClass that does not exist); and `migrate volsync` output the API server
//! accepts. (`restore` runs in `populator.rs`, beside the populator it drives.)

mod scenario;

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use scenario::{SYNC, source, write_sample};
use serde_json::Value;
use sluice_e2e::Stack;

#[test]
fn kubectl_sluice_verbs() {
    let stack = Stack::start();
    std::thread::scope(|scope| {
        scope.spawn(|| browsing_syncing_and_unlocking_a_source(&stack));
        scope.spawn(|| doctor_names_what_is_broken_and_how_to_fix_it(&stack));
        scope.spawn(|| migrated_volsync_manifests_are_accepted(&stack));
    });
}

/// `kubectl-sluice` (the workspace's build) with `args` in `ns`.
fn plugin(stack: &Stack, ns: &str, args: &[&str]) -> Output {
    Command::new(sluice_e2e::stack::workspace_binary("kubectl-sluice"))
        .args(args)
        .args(["-n", ns, "--kubeconfig"])
        .arg(stack.cluster.kubeconfig())
        .output()
        .expect("kubectl-sluice runs")
}

/// Runs the plugin, asserts exit code `code`, returns stdout.
fn plugin_exit(stack: &Stack, ns: &str, args: &[&str], code: i32) -> String {
    let out = plugin(stack, ns, args);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(
        out.status.code(),
        Some(code),
        "kubectl sluice {}: stdout {stdout} stderr {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// The findings of `doctor -o json` for `object`, as `check -> (verdict, detail)`.
fn findings(reports: &Value, object: &str) -> Vec<(String, String, String)> {
    reports
        .as_array()
        .expect("a list of reports")
        .iter()
        .find(|r| r["object"] == object)
        .unwrap_or_else(|| panic!("no report of {object}: {reports}"))["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["check"].as_str().unwrap().to_string(),
                f["verdict"].as_str().unwrap().to_string(),
                f["detail"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn finding(found: &[(String, String, String)], check: &str) -> (String, String) {
    found
        .iter()
        .find(|(c, _, _)| c == check)
        .map(|(_, v, d)| (v.clone(), d.clone()))
        .unwrap_or_else(|| panic!("no {check} finding in {found:?}"))
}

/// What Argo CD's health check makes of the live `object` in `ns`: (status, message).
fn argocd_health(stack: &Stack, ns: &str, kind: &str, name: &str) -> (String, String) {
    let live = json(&stack.cluster.kubectl(&[
        "get",
        &format!("{}.sluice.dev/{name}", kind.to_lowercase()),
        "-n",
        ns,
        "-o",
        "json",
    ]));
    sluice_e2e::argocd::kind_health(kind, &live)
}

/// Lock files in the repository, by restic's own count.
fn locks(stack: &Stack, bucket: &str) -> usize {
    stack
        .run_restic(bucket, &["list", "locks", "--no-lock"])
        .lines()
        .count()
}

fn browsing_syncing_and_unlocking_a_source(stack: &Stack) {
    let ns = "plugin-verbs";
    let bucket = format!("{ns}/repo");
    stack.namespace(ns);
    stack.repository_secret(ns, "repo", &bucket, None);
    let dir = stack.claim(ns, "data");
    write_sample(&dir, "verbs");
    stack.cluster.apply(&source(ns, "data", "Snapshot", ""));
    let object = "replicationsource/data";
    stack.wait_field(ns, object, "{.status.lastManualSync}", SYNC, |v| v == "one");
    let first = stack.get(ns, object, "{.status.lastSync.snapshotID}");

    // status: the source is Ready with its last snapshot.
    let rows = json(&plugin_exit(stack, ns, &["status", "-o", "json"], 0));
    let row = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "data")
        .unwrap_or_else(|| panic!("no row of data: {rows}"));
    assert_eq!(row["state"], "Ready", "{row}");
    assert_eq!(row["snapshot"], &first[..8], "{row}");
    let (health, message) = argocd_health(stack, ns, "ReplicationSource", "data");
    assert_eq!(health, "Healthy", "{message}");
    assert!(message.starts_with("SyncSucceeded: "), "{message}");
    let text = plugin_exit(stack, ns, &["status"], 0);
    assert!(
        text.contains("data") && text.contains("SyncSucceeded") && text.contains(&first[..8]),
        "{text}"
    );

    // sync --wait: a second backup, followed to its result.
    std::fs::write(dir.join("generation.txt"), "verbs, second").unwrap();
    let outcome = json(&plugin_exit(
        stack,
        ns,
        &["sync", "data", "--wait", "--timeout", "5m", "-o", "json"],
        0,
    ));
    assert_eq!(outcome["succeeded"], true, "{outcome}");
    let second = outcome["snapshotId"].as_str().unwrap().to_string();
    assert_ne!(second, first, "{outcome}");
    assert_eq!(
        stack.get(ns, object, "{.status.lastSync.snapshotID}"),
        second
    );

    // snapshots: both, as restic lists them.
    let snapshots = json(&plugin_exit(
        stack,
        ns,
        &["snapshots", "data", "-o", "json"],
        0,
    ));
    let ids: Vec<&str> = snapshots
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [first.as_str(), second.as_str()], "{snapshots}");
    let restic_ids = stack.run_restic(&bucket, &["snapshots", "--json", "--no-lock"]);
    assert!(restic_ids.contains(&first) && restic_ids.contains(&second));

    // ls and dump: the tree and one file's bytes, without a restore.
    let listing = plugin_exit(stack, ns, &["ls", "data", &first[..8], "/nested/deeper"], 0);
    assert!(listing.contains("big.bin"), "{listing}");
    let entries = json(&plugin_exit(
        stack,
        ns,
        &["ls", "data", "latest", "-o", "json"],
        0,
    ));
    let paths: Vec<&str> = entries
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    for want in ["/generation.txt", "/link", "/nested/file-49.txt"] {
        assert!(
            paths.iter().any(|p| p.ends_with(want)),
            "{want} in {paths:?}"
        );
    }
    let big = std::fs::read(dir.join("nested/deeper/big.bin")).unwrap();
    let dumps_big = |extra: &[&str]| {
        let mut args = vec!["dump", "data", "latest", "/nested/deeper/big.bin"];
        args.extend(extra);
        let out = plugin(stack, ns, &args);
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "dump {extra:?}: {said}");
        assert!(
            out.stdout == big,
            "dump {extra:?} gave {} bytes that differ from the file's {}",
            out.stdout.len(),
            big.len()
        );
    };
    dumps_big(&[]);
    let old = plugin(stack, ns, &["dump", "data", &first, "/generation.txt"]);
    assert_eq!(String::from_utf8_lossy(&old.stdout), "verbs");
    let out = plugin(stack, ns, &["dump", "data", "latest", "/nope"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not in the snapshot"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The same through a browse Pod in the namespace, as for a repository only the cluster
    // reaches: the listing equals this machine's, the file's bytes arrive whole through the
    // Pod's log, the mover's error comes back as the plugin's, and no Pod stays.
    let listed_in_pod = json(&plugin_exit(
        stack,
        ns,
        &["ls", "data", "latest", "-o", "json", "--in-cluster"],
        0,
    ));
    assert_eq!(
        listed_in_pod, entries,
        "the browse Pod lists what this machine lists"
    );
    dumps_big(&["--in-cluster"]);
    let out = plugin(
        stack,
        ns,
        &["dump", "data", "latest", "/nope", "--in-cluster"],
    );
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(
        said.contains("not in the snapshot") && said.contains("browse Pod"),
        "{said}"
    );
    assert!(out.stdout.is_empty(), "a failed dump printed data");
    stack.cluster.wait_for(
        "the browse Pods to be deleted",
        Duration::from_secs(60),
        || {
            stack
                .cluster
                .kubectl(&[
                    "get",
                    "pods",
                    "-n",
                    ns,
                    "-l",
                    "app.kubernetes.io/component=browse",
                    "-o",
                    "name",
                ])
                .trim()
                .is_empty()
        },
    );

    // unlock: a live holder's lock stays unless --all; a dead one's goes.
    let mut holder = stack
        .restic(&bucket)
        .args(["backup", "--stdin", "--stdin-filename", "held"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("restic starts");
    stack
        .cluster
        .wait_for("restic to take its lock", Duration::from_secs(60), || {
            locks(stack, &bucket) == 1
        });
    let said = plugin_exit(stack, ns, &["unlock", "data"], 0);
    assert!(
        said.contains("removed 0 lock(s)") && said.contains("still held"),
        "{said}"
    );
    assert_eq!(locks(stack, &bucket), 1);
    holder.kill().unwrap();
    holder.wait().unwrap();
    // Same host, dead pid: stale.
    let said = plugin_exit(stack, ns, &["unlock", "data"], 0);
    assert!(said.contains("removed 1 lock(s)"), "{said}");
    assert_eq!(locks(stack, &bucket), 0);

    // doctor on the healthy source: nothing fails, and the snapshot class is the driver's.
    let reports = json(&plugin_exit(
        stack,
        ns,
        &["doctor", "data", "-o", "json"],
        0,
    ));
    let found = findings(&reports, &format!("ReplicationSource {ns}/data"));
    for (check, verdict, detail) in &found {
        assert_eq!(verdict, "ok", "{check}: {detail}");
    }
    assert!(
        finding(&found, "snapshot-class")
            .1
            .contains("default VolumeSnapshotClass")
    );
    assert!(finding(&found, "repository").1.contains("2 snapshot(s)"));
    let cluster = findings(&reports, "cluster");
    assert_eq!(finding(&cluster, "clock").0, "ok");
    let (verdict, detail) = finding(&cluster, "operator");
    assert_eq!(verdict, "ok", "{detail}");
    assert!(detail.contains("leads in"), "{detail}");

    // Paused: Argo CD shows it Suspended once the operator has seen the change.
    scenario::merge_patch(stack, ns, object, r#"{"spec":{"paused":true}}"#);
    let generation = stack.get(ns, object, "{.metadata.generation}");
    stack.wait_field(ns, object, "{.status.observedGeneration}", SYNC, |v| {
        v == generation
    });
    let (health, message) = argocd_health(stack, ns, "ReplicationSource", "data");
    assert_eq!(health, "Suspended", "{message}");
    let rows = json(&plugin_exit(stack, ns, &["status", "-o", "json"], 0));
    assert_eq!(rows[0]["state"], "Paused", "{rows}");
}

fn doctor_names_what_is_broken_and_how_to_fix_it(stack: &Stack) {
    let ns = "plugin-doctor";
    let bucket = format!("{ns}/repo");
    stack.namespace(ns);
    stack.run_restic(&bucket, &["init"]);
    stack.repository_secret(ns, "repo", &bucket, Some("not-the-password"));
    stack.claim(ns, "data");
    stack.cluster.apply(&source(ns, "data", "Direct", ""));
    stack.cluster.apply(&format!(
        "apiVersion: sluice.dev/v1alpha1
kind: ReplicationSource
metadata: {{name: orphan, namespace: {ns}}}
spec:
  sourcePVC: data
  trigger: {{manual: one}}
  restic:
    repository: missing
    copyMethod: Snapshot
    volumeSnapshotClassName: nope
    moverServiceAccount: ghost
"
    ));
    stack.wait_field(
        ns,
        "replicationsource/data",
        "{.status.conditions[?(@.type==\"Stalled\")].reason}",
        SYNC,
        |v| v == "WrongPassword",
    );

    let (health, message) = argocd_health(stack, ns, "ReplicationSource", "data");
    assert_eq!(health, "Degraded", "{message}");
    assert!(message.starts_with("WrongPassword: "), "{message}");

    let out = plugin(stack, ns, &["doctor", "-o", "json"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let reports = json(&String::from_utf8_lossy(&out.stdout));
    let data = findings(&reports, &format!("ReplicationSource {ns}/data"));
    let (verdict, detail) = finding(&data, "repository");
    assert_eq!(verdict, "fail", "{detail}");
    assert!(detail.contains("no key"), "{detail}");
    let (verdict, detail) = finding(&data, "last-result");
    assert_eq!(verdict, "fail");
    assert!(detail.starts_with("WrongPassword"), "{detail}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("not-the-password"));

    let orphan = findings(&reports, &format!("ReplicationSource {ns}/orphan"));
    let (verdict, detail) = finding(&orphan, "secret");
    assert_eq!(verdict, "fail");
    assert!(detail.contains("missing not found"), "{detail}");
    assert_eq!(finding(&orphan, "repository").0, "warn");
    let (verdict, detail) = finding(&orphan, "snapshot-class");
    assert_eq!(verdict, "fail");
    assert!(
        detail.contains("nope") && detail.contains("does not exist"),
        "{detail}"
    );
    let (verdict, detail) = finding(&orphan, "rbac");
    assert_eq!(verdict, "fail");
    assert!(detail.contains("ghost"), "{detail}");

    // The text form: one line per check, each failure with its fix.
    let out = plugin(stack, ns, &["doctor", "data"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("FAIL repository"), "{text}");
    assert!(
        text.contains("fix: put the repository's password"),
        "{text}"
    );
}

fn migrated_volsync_manifests_are_accepted(stack: &Stack) {
    let ns = "plugin-migrate";
    stack.namespace(ns);
    let volsync = format!(
        "apiVersion: volsync.backube/v1alpha1
kind: ReplicationSource
metadata: {{name: app, namespace: {ns}}}
spec:
  sourcePVC: app-data
  trigger: {{schedule: \"0 * * * *\"}}
  restic:
    repository: app-restic
    copyMethod: Snapshot
    pruneIntervalDays: 7
    retain: {{hourly: 24, daily: 7}}
    cacheCapacity: 2Gi
---
apiVersion: volsync.backube/v1alpha1
kind: ReplicationDestination
metadata: {{name: app-restore, namespace: {ns}}}
spec:
  trigger: {{manual: restore-once}}
  restic:
    repository: app-restic
    copyMethod: Direct
    capacity: 2Gi
    accessModes: [ReadWriteOnce]
"
    );
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), volsync).unwrap();
    let out = Command::new(sluice_e2e::stack::workspace_binary("kubectl-sluice"))
        .args(["migrate", "volsync"])
        .arg(file.path())
        .output()
        .unwrap();
    let converted = String::from_utf8_lossy(&out.stdout).into_owned();
    let notes = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{notes}");
    assert!(
        notes.contains("cacheCapacity"),
        "the dropped field is named: {notes}"
    );
    assert!(converted.contains("sluice.dev/v1alpha1"), "{converted}");
    let converted_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(converted_file.path(), &converted).unwrap();
    let applied = stack.cluster.kubectl(&[
        "apply",
        "--dry-run=server",
        "-f",
        converted_file.path().to_str().unwrap(),
    ]);
    assert!(
        applied.contains("replicationsource.sluice.dev/app created (server dry run)")
            && applied
                .contains("replicationdestination.sluice.dev/app-restore created (server dry run)"),
        "{applied}"
    );
}
