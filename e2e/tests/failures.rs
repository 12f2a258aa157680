//! What goes wrong in production, end to end: a wrong password, a Secret
//! missing keys, a mover killed mid-backup (leaving its lock behind), and
//! object storage going down during a sync. Each must end in a clear
//! condition, bounded retries, and a repository `restic check` accepts.

mod scenario;

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use scenario::{OWNED, SYNC, event_reasons, source, trigger, write_sample};
use sluice_e2e::{Stack, kstatus};

#[test]
fn failure_scenarios() {
    let mut stack = Stack::start();
    std::thread::scope(|scope| {
        let stack = &stack;
        scope.spawn(|| wrong_password_waits_for_a_fix_without_retrying(stack));
        scope.spawn(|| missing_secret_keys_are_reported_before_any_job(stack));
        scope.spawn(|| killed_mover_leaves_a_lock_the_next_sync_clears(stack));
        scope.spawn(|| deleted_mover_pod_leaves_a_lock_the_next_pod_clears_at_once(stack));
        scope.spawn(|| mover_over_its_memory_limit_is_reported_as_oom_killed(stack));
    });
    object_storage_down_during_a_sync_is_retried_until_it_is_back(&mut stack);
}

const READY_REASON: &str = "{.status.conditions[?(@.type==\"Ready\")].reason}";

fn wrong_password_waits_for_a_fix_without_retrying(stack: &Stack) {
    let ns = "wrong-password";
    stack.namespace(ns);
    stack.run_restic("wrong-password/repo", &["init"]);
    stack.repository_secret(ns, "repo", "wrong-password/repo", Some("not-the-password"));
    write_sample(&stack.claim(ns, "data"), "secret");
    stack.cluster.apply(&source(ns, "data", "Direct", ""));
    let object = "replicationsource/data";
    stack.wait_field(ns, object, READY_REASON, SYNC, |v| v == "WrongPassword");
    assert_eq!(stack.condition(ns, object, "Ready"), "False/WrongPassword");
    assert_eq!(
        stack.condition(ns, object, "Degraded"),
        "True/WrongPassword"
    );
    assert_eq!(stack.condition(ns, object, "Stalled"), "True/WrongPassword");
    assert_eq!(
        stack.condition(ns, object, "Reconciling"),
        "False/WrongPassword"
    );
    let (status, message) = stack.kstatus(ns, object);
    assert_eq!(status, kstatus::Status::Failed, "{message}");
    assert!(message.contains("retrying cannot help"), "{message}");
    assert_eq!(
        stack.get(ns, object, "{.status.latestMoverStatus.result}"),
        "Failed"
    );
    let events = event_reasons(stack, ns);
    assert!(
        events.contains("WrongPassword"),
        "no WrongPassword event: {events}"
    );
    // Retrying cannot help: no next sync is planned and no Job starts.
    std::thread::sleep(Duration::from_secs(10));
    assert_eq!(stack.get(ns, object, "{.status.consecutiveFailures}"), "1");
    assert_eq!(stack.get(ns, object, "{.status.nextSyncTime}"), "");
    stack.wait_field(ns, OWNED.0, OWNED.1, Duration::from_secs(30), |v| {
        v == "data"
    });

    // Fixing the Secret is enough: the pending manual sync runs.
    stack.repository_secret(ns, "repo", "wrong-password/repo", None);
    stack.wait_field(ns, object, "{.status.lastManualSync}", SYNC, |v| v == "one");
    assert_eq!(
        stack.get(ns, object, "{.status.lastSync.snapshotID}").len(),
        64
    );
    assert_eq!(stack.condition(ns, object, "Ready"), "True/SyncSucceeded");
    assert_eq!(
        stack.condition(ns, object, "Degraded"),
        "False/SyncSucceeded"
    );
    assert_eq!(
        stack.condition(ns, object, "Stalled"),
        "False/SyncSucceeded"
    );
    assert_eq!(stack.kstatus(ns, object).0, kstatus::Status::Current);
}

fn missing_secret_keys_are_reported_before_any_job(stack: &Stack) {
    let ns = "secret-keys";
    stack.namespace(ns);
    stack.cluster.apply(
        "apiVersion: v1
kind: Secret
metadata: {name: repo, namespace: secret-keys}
stringData: {RESTIC_REPOSITORY: s3:http://127.0.0.1:9/bucket}
",
    );
    stack.claim(ns, "data");
    stack.cluster.apply(&source(ns, "data", "Direct", ""));
    let object = "replicationsource/data";
    stack.wait_field(ns, object, READY_REASON, SYNC, |v| v == "SecretInvalid");
    let message = stack.get(
        ns,
        object,
        "{.status.conditions[?(@.type==\"Ready\")].message}",
    );
    assert!(
        message.contains("RESTIC_PASSWORD"),
        "the message names the key: {message}"
    );
    assert_eq!(stack.condition(ns, object, "Stalled"), "True/SecretInvalid");
    assert_eq!(stack.kstatus(ns, object).0, kstatus::Status::Failed);
    // Every condition describes the spec as it is now.
    let generations = stack.get(
        ns,
        object,
        "{.metadata.generation} {.status.observedGeneration} {.status.conditions[*].observedGeneration}",
    );
    assert_eq!(
        generations, "1 1 1 1 1 1",
        "generation, observed, each condition"
    );
    let jobs = stack
        .cluster
        .kubectl(&["get", "jobs", "-n", ns, "-o", "name"]);
    assert_eq!(jobs.trim(), "", "no Job may start with an invalid Secret");
}

fn killed_mover_leaves_a_lock_the_next_sync_clears(stack: &Stack) {
    let ns = "killed";
    let bucket = "killed/repo";
    stack.namespace(ns);
    stack.repository_secret(ns, "repo", bucket, None);
    stack.run_restic(bucket, &["init"]);
    write_slow_sample(&stack.claim(ns, "data"), "killed");
    stack.cluster.apply(&source(ns, "data", "Direct", ""));

    let locks = stack.minio.data_dir().join(bucket).join("locks");
    let mover = wait_for_mover_holding_lock(&stack.minio.repository(bucket), &locks);
    // SAFETY: plain kill(2) of a process this test found by its environment.
    unsafe { libc::kill(mover, libc::SIGKILL) };
    let object = "replicationsource/data";
    stack.wait_field(ns, object, READY_REASON, SYNC, |v| v == "MoverFailed");
    // The container's real exit: killed by SIGKILL, said as such.
    let message = stack.get(
        ns,
        object,
        "{.status.conditions[?(@.type==\"Ready\")].message}",
    );
    assert!(message.contains("SIGKILL, exit code 137"), "{message}");
    assert_eq!(stack.get(ns, object, "{.status.consecutiveFailures}"), "1");
    assert_ne!(
        stack.get(ns, object, "{.status.nextSyncTime}"),
        "",
        "a retry is planned"
    );
    let left = stack.run_restic(bucket, &["list", "locks", "--no-lock"]);
    assert_eq!(
        left.lines().count(),
        1,
        "the killed mover's lock stays: {left}"
    );

    // The retry (after the first backoff) removes the stale lock and backs up.
    stack.wait_field(ns, object, "{.status.lastManualSync}", SYNC, |v| v == "one");
    assert_eq!(stack.condition(ns, object, "Ready"), "True/SyncSucceeded");
    let left = stack.run_restic(bucket, &["list", "locks", "--no-lock"]);
    assert_eq!(left.trim(), "", "stale lock not removed");
    stack.run_restic(bucket, &["check", "--read-data"]);
}

fn mover_over_its_memory_limit_is_reported_as_oom_killed(stack: &Stack) {
    let ns = "oom";
    stack.namespace(ns);
    stack.repository_secret(ns, "repo", "oom/repo", None);
    stack.run_restic("oom/repo", &["init"]);
    write_slow_sample(&stack.claim(ns, "data"), "oom");
    // Far below what a backup needs: the kernel kills the mover.
    let limit = "    moverResources: {limits: {memory: 12Mi}}\n";
    stack.cluster.apply(&source(ns, "data", "Direct", limit));
    let object = "replicationsource/data";
    stack.wait_field(ns, object, READY_REASON, SYNC, |v| v == "MoverFailed");
    let message = stack.get(
        ns,
        object,
        "{.status.conditions[?(@.type==\"Ready\")].message}",
    );
    assert!(
        message.contains("OOMKilled") && message.contains("moverResources.limits.memory"),
        "the condition names the OOM kill and the fix: {message}"
    );
}

/// Writes the sample tree and 64 MiB of incompressible data to `data`, so
/// that a backup of it is still running when a test stops it.
fn write_slow_sample(data: &Path, generation: &str) {
    write_sample(data, generation);
    for i in 0..4 {
        fs::write(
            data.join(format!("noise-{i}.bin")),
            sluice_testkit::data::random_bytes(i, 16 << 20),
        )
        .unwrap();
    }
}

fn deleted_mover_pod_leaves_a_lock_the_next_pod_clears_at_once(stack: &Stack) {
    let ns = "deleted";
    let bucket = "deleted/repo";
    stack.namespace(ns);
    stack.repository_secret(ns, "repo", bucket, None);
    stack.run_restic(bucket, &["init"]);
    write_slow_sample(&stack.claim(ns, "data"), "deleted");
    // Never pruned: the sync plans a prune, which needs every lock gone.
    stack.cluster.apply(&source(ns, "data", "Direct", ""));
    let object = "replicationsource/data";
    assert_eq!(
        stack.get(ns, object, "{.status.restic.lastPruned}"),
        "",
        "never pruned before"
    );
    let locks = stack.minio.data_dir().join(bucket).join("locks");
    let selector = "app.kubernetes.io/component=mover,sluice.dev/replication-source=data";
    let first = wait_for_mover_pod_holding_lock(stack, ns, selector, &locks);
    stack.cluster.kubectl(&[
        "delete",
        "pod",
        &first,
        "-n",
        ns,
        "--grace-period=0",
        "--force",
    ]);
    // The Job fails, and the retry runs in a new Pod with its own hostname.
    // Its unlock step removes the dead Pod's lock at once (a lock is stale
    // only after 30 minutes otherwise), so its prune runs.
    stack.wait_field(ns, object, "{.status.lastManualSync}", SYNC, |v| v == "one");
    assert_eq!(stack.condition(ns, object, "Ready"), "True/SyncSucceeded");
    let failures = stack.get(ns, object, "{.status.consecutiveFailures}");
    assert!(
        failures.is_empty() || failures == "0",
        "consecutiveFailures {failures}"
    );
    assert_ne!(
        stack.get(ns, object, "{.status.restic.lastPruned}"),
        "",
        "the planned prune did not run"
    );
    let left = stack.run_restic(bucket, &["list", "locks", "--no-lock"]);
    assert_eq!(left.trim(), "", "the deleted Pod's lock was not removed");
    stack.run_restic(bucket, &["check", "--read-data"]);
}

/// The name of the mover Pod matching `selector` in `namespace`, once the
/// repository holds a lock (so the mover is mid-backup).
fn wait_for_mover_pod_holding_lock(
    stack: &Stack,
    namespace: &str,
    selector: &str,
    locks: &Path,
) -> String {
    let deadline = Instant::now() + SYNC;
    loop {
        let has_lock = fs::read_dir(locks).is_ok_and(|mut d| d.next().is_some());
        let pod = stack
            .cluster
            .try_kubectl(&[
                "get",
                "pods",
                "-n",
                namespace,
                "-l",
                selector,
                "-o",
                "jsonpath={.items[?(@.status.phase==\"Running\")].metadata.name}",
            ])
            .unwrap_or_default();
        if has_lock && !pod.is_empty() {
            return pod;
        }
        assert!(
            Instant::now() < deadline,
            "no mover Pod in {namespace} held a lock within {SYNC:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The pid of the `sluice-mover job` process whose repository is
/// `repository` (a URL with this run's MinIO port, so another run's movers
/// on the same machine never match), once it holds a lock.
fn wait_for_mover_holding_lock(repository: &str, locks: &Path) -> i32 {
    let deadline = Instant::now() + SYNC;
    loop {
        let has_lock = fs::read_dir(locks).is_ok_and(|mut d| d.next().is_some());
        if has_lock && let Some(pid) = mover_pid(repository) {
            return pid;
        }
        assert!(
            Instant::now() < deadline,
            "no mover for {repository} held a lock within {SYNC:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn mover_pid(repository: &str) -> Option<i32> {
    fs::read_dir("/proc").ok()?.flatten().find_map(|entry| {
        let pid: i32 = entry.file_name().to_str()?.parse().ok()?;
        let cmdline = fs::read(entry.path().join("cmdline")).ok()?;
        let environ = fs::read(entry.path().join("environ")).ok()?;
        let is_job = cmdline.split(|b| *b == 0).any(|arg| arg == b"job");
        let environ = String::from_utf8_lossy(&environ);
        let found = environ
            .split('\0')
            .find_map(|var| var.strip_prefix("RESTIC_REPOSITORY="))?;
        (is_job && found == repository).then_some(pid)
    })
}

fn object_storage_down_during_a_sync_is_retried_until_it_is_back(stack: &mut Stack) {
    let ns = "outage";
    let bucket = "outage/repo";
    stack.namespace(ns);
    stack.repository_secret(ns, "repo", bucket, None);
    stack.run_restic(bucket, &["init"]);
    write_sample(&stack.claim(ns, "data"), "outage");
    stack.minio.stop();
    stack.cluster.apply(&source(ns, "data", "Direct", ""));
    let object = "replicationsource/data";
    stack.wait_field(
        ns,
        object,
        "{.status.conditions[?(@.type==\"Reconciling\")].reason}",
        SYNC,
        |v| v == "MoverRunning",
    );
    // The mover keeps retrying while MinIO is down...
    std::thread::sleep(Duration::from_secs(8));
    assert_eq!(stack.get(ns, object, "{.status.lastManualSync}"), "");
    stack.minio.start_again();
    // ...and the same sync finishes once it is back.
    stack.wait_field(ns, object, "{.status.lastManualSync}", SYNC, |v| v == "one");
    assert_eq!(stack.condition(ns, object, "Ready"), "True/SyncSucceeded");
    stack.run_restic(bucket, &["check", "--read-data"]);
    trigger(stack, ns, object, "two");
    stack.wait_field(ns, object, "{.status.lastManualSync}", SYNC, |v| v == "two");
}
