//! What goes wrong in production, end to end: a wrong password, a Secret
//! missing keys, a mover killed mid-backup (leaving its lock behind), and
//! object storage going down during a sync, or for longer than a sync rides
//! out, with twenty sources due. Each must end in a clear
//! condition, bounded retries, and a repository `restic check` accepts.

mod scenario;

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use scenario::{OWNED, SYNC, event_reasons, source, trigger, write_sample};
use sluice_e2e::{Stack, host, kstatus, stack::PASSWORD};
use sluice_testkit::MinIo;

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
        scope.spawn(|| an_outage_parks_twenty_sources_without_a_job_storm(stack));
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

/// The Jobs seen in a namespace while the outage lasts: every name, and the
/// most probe Jobs that existed at once.
#[derive(Debug, Default)]
struct JobsSeen {
    names: std::collections::BTreeSet<String>,
    most_probes_at_once: usize,
}

/// Twenty sources of one repository are due while its object store is down
/// for longer than a mover retries. One sync fails and opens the breaker;
/// the others are parked without Jobs; one probe Job at a time, on its
/// backoff (5 s doubling to 20 s in config/e2e), tests the store; when it is
/// back, all twenty catch up, each once.
fn an_outage_parks_twenty_sources_without_a_job_storm(stack: &Stack) {
    let ns = "breaker";
    let bucket = "breaker/repo";
    // A MinIO of its own, so stopping it takes nothing from other scenarios.
    let mut minio = MinIo::start_on(host::bridge_address());
    stack.namespace(ns);
    stack.repository_secret_on(&minio, ns, "repo", bucket, None);
    run_restic(&minio, bucket, &["init"]);
    let names: Vec<String> = (0..20).map(|i| format!("s{i:02}")).collect();
    for name in &names {
        fs::write(stack.claim(ns, name).join("name.txt"), name).unwrap();
    }
    minio.stop();
    let down_at = Instant::now();
    let manifests: Vec<String> = names
        .iter()
        .map(|name| {
            source(ns, name, "Direct", "").replace("sourcePVC: data", &format!("sourcePVC: {name}"))
        })
        .collect();
    stack.cluster.apply(&manifests.join("---\n"));

    let back = std::sync::atomic::AtomicBool::new(false);
    let seen = std::thread::scope(|scope| {
        let sampler = scope.spawn(|| {
            let mut seen = JobsSeen::default();
            while !back.load(std::sync::atomic::Ordering::Relaxed) {
                let listed = stack.cluster.kubectl(&[
                    "get",
                    "jobs",
                    "-n",
                    ns,
                    "-o",
                    "jsonpath={.items[*].metadata.name}",
                ]);
                let probes = listed
                    .split_whitespace()
                    .filter(|n| n.starts_with("sluice-probe-"))
                    .count();
                seen.most_probes_at_once = seen.most_probes_at_once.max(probes);
                seen.names
                    .extend(listed.split_whitespace().map(String::from));
                std::thread::sleep(Duration::from_millis(500));
            }
            seen
        });
        // The first sync rides out the outage for the mover's two minutes, fails, and opens
        // the breaker; then every source is parked.
        let ready = "{.status.conditions[?(@.type==\"Ready\")].reason}";
        let deadline = Instant::now() + Duration::from_secs(360);
        loop {
            let parked = names
                .iter()
                .filter(|name| {
                    stack.get(ns, &format!("replicationsource/{name}"), ready)
                        == "RepositoryUnavailable"
                })
                .count();
            if parked == names.len() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{parked} of 20 sources parked {} s into the outage\n{}",
                down_at.elapsed().as_secs(),
                stack.diagnose(ns, "replicationsource/s00")
            );
            std::thread::sleep(Duration::from_secs(1));
        }
        let message = stack.get(
            ns,
            "replicationsource/s05",
            "{.status.conditions[?(@.type==\"Ready\")].message}",
        );
        assert!(
            message.contains("unreachable since") && message.contains("syncs parked without a Job"),
            "{message}"
        );
        let metrics = stack.metrics();
        assert!(
            metrics
                .lines()
                .any(|l| l.starts_with("sluice_repository_unavailable{")
                    && l.contains("/breaker/repo\"")
                    && l.ends_with(" 1")),
            "{metrics}"
        );
        // Long enough for a few probes to fail (at 5, 15, 35 s after the breaker opened).
        std::thread::sleep(Duration::from_secs(40));
        minio.start_again();
        let restarted = down_at.elapsed();
        for name in &names {
            stack.wait_field(
                ns,
                &format!("replicationsource/{name}"),
                "{.status.lastManualSync}",
                Duration::from_secs(600),
                |v| v == "one",
            );
        }
        back.store(true, std::sync::atomic::Ordering::Relaxed);
        let seen = sampler.join().unwrap();
        eprintln!(
            "outage: MinIO back after {} s; jobs seen: {:?}",
            restarted.as_secs(),
            seen
        );
        seen
    });

    let syncs = seen
        .names
        .iter()
        .filter(|n| n.starts_with("sluice-src-"))
        .count();
    let probes: Vec<&String> = seen
        .names
        .iter()
        .filter(|n| n.starts_with("sluice-probe-"))
        .collect();
    // Twenty catch-up syncs plus the one that failed (and at most one more that had started
    // when the breaker opened): no Job storm.
    assert!(
        syncs <= 22,
        "{syncs} sync Jobs for 20 sources: {:?}",
        seen.names
    );
    assert!(
        seen.most_probes_at_once <= 1,
        "probes ran at once: {seen:?}"
    );
    assert!(
        probes.len() >= 2,
        "the breaker probed while the store was down: {seen:?}"
    );
    // One probe per backoff step: each started at least the first interval after the one before.
    let mut started: Vec<i64> = probes
        .iter()
        .map(|n| n.rsplit('-').next().unwrap().parse().unwrap())
        .collect();
    started.sort();
    for pair in started.windows(2) {
        assert!(
            pair[1] - pair[0] >= 4,
            "probes {} s apart: {probes:?}",
            pair[1] - pair[0]
        );
    }
    let metrics = stack.metrics();
    assert!(
        !metrics
            .lines()
            .any(|l| l.starts_with("sluice_repository_unavailable{")
                && l.contains("/breaker/repo\"")),
        "the breaker closed: {metrics}"
    );
    let reached = metrics.lines().find(|l| {
        l.starts_with("sluice_repository_probes_total{")
            && l.contains("/breaker/repo\"")
            && l.contains("result=\"reached\"")
    });
    assert!(
        reached.is_some_and(|l| l.ends_with(" 1")),
        "one probe reached the store: {metrics}"
    );
    let reasons = event_reasons(stack, ns);
    for reason in ["RepositoryUnavailable", "RepositoryAvailable"] {
        assert!(reasons.contains(reason), "no {reason} event: {reasons}");
    }
    for name in &names {
        assert_eq!(
            stack.condition(ns, &format!("replicationsource/{name}"), "Ready"),
            "True/SyncSucceeded",
            "{name}"
        );
    }
    let snapshots = run_restic(&minio, bucket, &["snapshots", "--json"]);
    assert_eq!(snapshots.matches("\"short_id\"").count(), 20, "{snapshots}");
    run_restic(&minio, bucket, &["check"]);
}

/// restic with `args` on `bucket` of `minio`; its stdout, or a panic with its error.
fn run_restic(minio: &MinIo, bucket: &str, args: &[&str]) -> String {
    let out = minio.restic(bucket, PASSWORD).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "restic {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
